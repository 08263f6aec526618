#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `[cache]`: the response cache's switch, time to live and size, from the file or the
//! environment, with errors that name the key.

use std::collections::HashMap;
use std::time::Duration;

use claudette_config::{CacheConfig, Config, ConfigError};

const BACKEND: &str = "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n";

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::from_toml_str(&format!("{toml}\n{BACKEND}"), &env)
}

#[test]
fn off_unless_enabled_with_an_hour_and_64_mib() {
    let c = load("", &[]).unwrap().cache;
    assert_eq!(c, CacheConfig { enabled: false, ttl_secs: 3600, max_mib: 64 });
    assert_eq!(c, CacheConfig::default());
    // A section that only tunes the bounds does not switch the cache on.
    assert!(!load("[cache]\nttl_secs = 60\n", &[]).unwrap().cache.enabled);
}

#[test]
fn the_section_sets_every_key() {
    let c = load("[cache]\nenabled = true\nttl_secs = 120\nmax_mib = 8\n", &[]).unwrap().cache;
    assert!(c.enabled);
    assert_eq!((c.ttl(), c.max_bytes()), (Duration::from_secs(120), 8 * 1024 * 1024));
}

#[test]
fn the_environment_can_switch_it_on_and_tune_it() {
    let c = load(
        "",
        &[
            ("CLAUDETTE__CACHE__ENABLED", "true"),
            ("CLAUDETTE__CACHE__TTL_SECS", "30"),
            ("CLAUDETTE__CACHE__MAX_MIB", "2"),
        ],
    )
    .unwrap();
    assert_eq!(c.cache, CacheConfig { enabled: true, ttl_secs: 30, max_mib: 2 });
    assert!(c.overrides.contains(&"CLAUDETTE__CACHE__ENABLED".to_owned()), "{:?}", c.overrides);
    let off = load("[cache]\nenabled = true\n", &[("CLAUDETTE__CACHE__ENABLED", "false")]).unwrap();
    assert!(!off.cache.enabled);
}

/// TOML, environment variables, the key the error must name.
type Case = (&'static str, &'static [(&'static str, &'static str)], &'static str);

#[test]
fn bad_values_name_the_key() {
    let cases: [Case; 7] = [
        ("[cache]\nttl_secs = 0\n", &[], "cache.ttl_secs"),
        ("[cache]\nttl_secs = 99999999999\n", &[], "cache.ttl_secs"),
        ("[cache]\nmax_mib = 0\n", &[], "cache.max_mib"),
        ("[cache]\nmax_mib = 99999999999\n", &[], "cache.max_mib"),
        ("[cache]\nenabled = \"yes\"\n", &[], "cache.enabled"),
        ("[cache]\nttl_secs = -5\n", &[], "cache.ttl_secs"),
        ("", &[("CLAUDETTE__CACHE__MAX_MIB", "0")], "cache.max_mib"),
    ];
    for (toml, vars, key) in cases {
        let err = load(toml, vars).unwrap_err();
        assert_eq!(err.key(), Some(key), "{toml}: {err}");
    }
    let err = load("", &[("CLAUDETTE__CACHE__TTL_SECS", "0")]).unwrap_err();
    assert!(err.to_string().contains("CLAUDETTE__CACHE__TTL_SECS"), "{err}");
    let err = load("[cache]\nenabled = true\nttl = 3\n", &[]).unwrap_err();
    assert!(err.to_string().contains("ttl"), "{err}");
}
