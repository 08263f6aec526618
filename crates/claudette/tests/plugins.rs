//! `Claudette::from_config` loads the plugin directories a configuration names, as the
//! `claudette` binary does: a real `.so` (claudette-plugin's fixture echo provider, built once
//! per test binary with claudette-plugin's own test helpers) routes a real request to a fake
//! server on 127.0.0.1, and a file that is not a library is refused and reported without
//! failing the load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The loader's ownership and mode checks, and the fixture's `.so` name, are Unix notions.
#![cfg(all(unix, feature = "plugins"))]

// The helpers that build claudette-plugin's fixture plugin (`cargo rustc --crate-type cdylib`,
// once per test binary) and lay out private plugin directories.
#[path = "../../claudette-plugin/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use claudette::Claudette;
use claudette_testkit::{FakeServer, Reply};
use serde_json::json;

const FIXTURE_FILE: &str = "libfixture.so";

/// A 0700 temp directory holding `claudette.toml` and a `plugins/` directory with `files`
/// (name, content) in it.
fn layout(files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let root = common::plugin_dir();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for (name, bytes) in files {
        std::fs::write(plugins.join(name), bytes).unwrap();
        common::set_mode(&plugins.join(name), 0o700);
    }
    let config = root.path().join("claudette.toml");
    (root, config)
}

/// The fixture plugin's bytes and SHA-256 (built on first call in this test binary).
fn fixture() -> (Vec<u8>, String) {
    let built = common::fixture("");
    (std::fs::read(&built).unwrap(), claudette::plugin::sha256_hex(&built).unwrap())
}

fn fixture_backend(name: &str, base_url: &str) -> String {
    format!(
        "[[backends]]\nname = \"{name}\"\nprovider = \"fixture\"\nmodel = \"echo\"\nbase_url = \"{base_url}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_config_loads_the_allow_listed_plugin_and_routes_through_it() {
    captured_warnings();
    let (bytes, sha) = tokio::task::spawn_blocking(fixture).await.unwrap();
    // The same library twice; only one name is allow-listed.
    let (root, config) = layout(&[(FIXTURE_FILE, &bytes), ("libunlisted.so", &bytes)]);
    let api = FakeServer::start().await;
    api.set_default(Reply::json(200, json!({"text": "echoed by the plugin"})));
    std::fs::write(
        &config,
        format!(
            "[server]\nplugin_dirs = [\"plugins\"]\nplugin_copy_dir = \"run\"\n\
             [[server.plugins]]\nfile = \"{FIXTURE_FILE}\"\nsha256 = \"{sha}\"\n{}",
            fixture_backend("echo", &api.url())
        ),
    )
    .unwrap();

    let claudette = Claudette::from_config(&config).unwrap();
    let report = claudette.plugin_report();
    assert_eq!(report.loaded, vec!["fixture"]);
    // The config's allow-list was applied...
    assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
    assert_eq!(report.refused[0].path, root.path().join("plugins/libunlisted.so"));
    assert!(report.refused[0].message.contains("not in the plugin allow-list"), "{}", report.refused[0]);
    // ...and so was its copy directory: the loader made it (0700) for the private copy it loaded
    // (and removed once mapped).
    assert!(root.path().join("run").is_dir(), "plugin_copy_dir was not used");

    let answer = claudette.optimize("hello plugin").await.unwrap();
    assert_eq!(answer.content, "echoed by the plugin");
    assert_eq!(answer.backend, "echo");
    assert_eq!(claudette.router().backend("echo").unwrap().info().provider, "fixture");
    let sent = api.received().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(sent.path, "/echo");
    assert_eq!(sent.json()["prompt"], "hello plugin");
    assert_eq!(api.post_requests(), 1);
}

/// A writer the test's tracing subscriber logs into.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The warnings of this whole test binary. A process-wide subscriber, installed by every test
/// before it does anything: a subscriber scoped to one thread misses events when another test
/// thread hits the same callsite first with none installed (tracing caches the callsite's
/// interest), which made the log assertion flaky. Tests find their own lines by their
/// temporary paths.
fn captured_warnings() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        captured
    })
}

/// Runs `f`; returns its result and the warnings logged so far in this binary.
fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
    let captured = captured_warnings();
    let out = f();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_library_file_is_reported_and_the_rest_still_loads() {
    captured_warnings();
    let (bytes, _) = tokio::task::spawn_blocking(fixture).await.unwrap();
    let junk: &[u8] = b"this is not an ELF file\n";
    let (_root, config) = layout(&[(FIXTURE_FILE, &bytes), ("notes.so", junk)]);
    let junk_path = config.parent().unwrap().join("plugins").join("notes.so");
    let api = FakeServer::start().await;
    api.set_default(Reply::json(200, json!({"text": "still here"})));
    // A linked provider next to the plugin one: both must work.
    let linked = FakeServer::start().await;
    linked.set_default(Reply::openai_text("linked too"));
    std::fs::write(
        &config,
        format!(
            "[server]\nplugin_dirs = [\"plugins\"]\n{}\
             [[backends]]\nname = \"gpt\"\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\n\
             [router]\nfailover_chain = [\"echo\", \"gpt\"]\n",
            fixture_backend("echo", &api.url()),
            linked.v1_url()
        ),
    )
    .unwrap();

    let (claudette, log) = with_warnings(|| Claudette::from_config(&config));
    let claudette = claudette.unwrap();
    let report = claudette.plugin_report();
    assert_eq!(report.loaded, vec!["fixture"]);
    assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
    let refused = &report.refused[0];
    assert_eq!(refused.path, junk_path);
    let message = refused.to_string();
    assert!(message.contains(&junk_path.display().to_string()), "names the file: {message}");
    assert!(message.contains("not a loadable library"), "says why: {message}");
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains(&junk_path.display().to_string()) && log.contains("not a loadable library"),
        "{log}"
    );

    let answer = claudette.optimize("hi").await.unwrap();
    assert_eq!((answer.content.as_str(), answer.backend.as_str()), ("still here", "echo"));
    let gpt = claudette.router().backend("gpt").unwrap();
    let direct = gpt.send(&claudette::ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(direct.content, "linked too");
}

#[test]
fn a_backend_whose_plugin_was_refused_fails_with_the_provider_named() {
    captured_warnings();
    let (_root, config) = layout(&[("libfixture.so", b"not a library either")]);
    std::fs::write(
        &config,
        format!("[server]\nplugin_dirs = [\"plugins\"]\n{}", fixture_backend("echo", "http://127.0.0.1:9")),
    )
    .unwrap();
    let e = Claudette::from_config(&config).unwrap_err().to_string();
    assert!(e.contains("backends[0].provider: unknown provider \"fixture\""), "{e}");
    assert!(e.contains("openai"), "lists the providers that exist: {e}");
    // The same configuration without that backend loads, with the file reported.
    std::fs::write(
        &config,
        "[server]\nplugin_dirs = [\"plugins\"]\n\
         [[backends]]\nname = \"gpt\"\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    )
    .unwrap();
    let claudette = Claudette::from_config(&config).unwrap();
    let refused: Vec<&Path> = claudette.plugin_report().refused.iter().map(|r| r.path.as_path()).collect();
    assert_eq!(refused, vec![config.parent().unwrap().join("plugins/libfixture.so")]);
    assert!(claudette.plugin_report().loaded.is_empty());
    assert_eq!(claudette.router().backend_names(), vec!["gpt"]);
}
