#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `[ledger]`: the persistent usage ledger's file and retention, from the file or the
//! environment, with errors that name the key.

use std::collections::HashMap;
use std::time::Duration;

use claudette_config::{Config, ConfigError};

const BACKEND: &str = "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n";

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::from_toml_str(&format!("{toml}\n{BACKEND}"), &env)
}

#[test]
fn no_section_means_no_ledger() {
    assert_eq!(load("", &[]).unwrap().ledger, None);
}

#[test]
fn the_section_sets_path_and_retention_and_a_relative_path_follows_the_file() {
    let c = load("[ledger]\npath = \"/var/lib/claudette/l.db\"\nretention_days = 30\n", &[]).unwrap();
    let l = c.ledger.unwrap();
    assert_eq!(l.path, std::path::Path::new("/var/lib/claudette/l.db"));
    assert_eq!((l.retention_days, l.retention()), (30, Duration::from_secs(30 * 86_400)));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claudette.toml");
    std::fs::write(&file, format!("[ledger]\npath = \"data/ledger.db\"\n{BACKEND}")).unwrap();
    let l = Config::from_file(&file, &HashMap::<String, String>::new()).unwrap().ledger.unwrap();
    assert_eq!(l.path, dir.path().join("data/ledger.db"));
    assert_eq!(l.retention_days, 400, "the default");
}

#[test]
fn the_environment_can_set_up_the_ledger_without_a_section() {
    let c = load(
        "",
        &[("CLAUDETTE__LEDGER__PATH", "/tmp/ledger-42.db"), ("CLAUDETTE__LEDGER__RETENTION_DAYS", "90")],
    )
    .unwrap();
    let l = c.ledger.unwrap();
    assert_eq!(l.path, std::path::Path::new("/tmp/ledger-42.db"));
    assert_eq!(l.retention_days, 90);
    assert!(c.overrides.contains(&"CLAUDETTE__LEDGER__PATH".to_owned()), "{:?}", c.overrides);
    // A path that looks like a number stays a path.
    assert_eq!(
        load("", &[("CLAUDETTE__LEDGER__PATH", "2024")]).unwrap().ledger.unwrap().path.to_str(),
        Some("2024")
    );
}

/// TOML, environment variables, the key the error must name.
type Case = (&'static str, &'static [(&'static str, &'static str)], &'static str);

#[test]
fn bad_values_name_the_key() {
    let cases: [Case; 5] = [
        ("[ledger]\nretention_days = 10\n", &[], "ledger.path"),
        ("[ledger]\npath = \"\"\n", &[], "ledger.path"),
        ("[ledger]\npath = \"l.db\"\nretention_days = 0\n", &[], "ledger.retention_days"),
        ("[ledger]\npath = \"l.db\"\nretention_days = 99999999999\n", &[], "ledger.retention_days"),
        (
            "[ledger]\npath = \"l.db\"\n",
            &[("CLAUDETTE__LEDGER__RETENTION_DAYS", "0")],
            "ledger.retention_days",
        ),
    ];
    for (toml, vars, key) in cases {
        let err = load(toml, vars).unwrap_err();
        assert_eq!(err.key(), Some(key), "{toml}: {err}");
    }
    let err = load("[ledger]\npath = \"l.db\"\n", &[("CLAUDETTE__LEDGER__RETENTION_DAYS", "0")]).unwrap_err();
    assert!(err.to_string().contains("CLAUDETTE__LEDGER__RETENTION_DAYS"), "{err}");
    let err = load("[ledger]\npath = \"l.db\"\nretention = 3\n", &[]).unwrap_err();
    assert!(err.to_string().contains("retention"), "{err}");
    let err = load("[ledger]\npath = 3\n", &[]).unwrap_err();
    assert!(err.to_string().contains("ledger.path"), "{err}");
}
