//! The token count across the plugin boundary, on the fixture plugin, whose count call can be
//! made to answer, to be absent, to fail and to panic on request: what the plugin's adapter
//! says is what the host's `PluginAdapter` says, and a loaded backend counts over real HTTP.
//! (`tests/parity.rs` compares the real providers' counts loaded and linked.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{BackendSettings, ChatRequest, ErrorKind, HttpResponse, Method, ProviderAdapter};
use claudette_plugin::{LoadOptions, LoadedPlugin, PANIC_CODE, PluginAdapter, load_file};
use claudette_testkit::{FakeServer, Reply};
use serde_json::json;

const KEY: &str = "sk-count-0123456789abcdef";

fn fixture() -> (tempfile::TempDir, LoadedPlugin) {
    let dir = common::plugin_dir();
    let file = common::install(&common::fixture(""), dir.path(), "libfixture.so");
    let plugin = load_file(&file, &LoadOptions::default()).unwrap();
    (dir, plugin)
}

fn settings(base: &str) -> BackendSettings {
    BackendSettings::new("counted").base_url(base).api_key(KEY)
}

fn adapter(plugin: &LoadedPlugin) -> PluginAdapter {
    plugin.new_adapter(&settings("http://127.0.0.1:9")).unwrap()
}

fn parse(adapter: &PluginAdapter, body: &[u8]) -> Result<u32, claudette_core::BackendError> {
    let headers = [("content-type".to_owned(), "application/json".to_owned())];
    adapter.parse_count_tokens(&HttpResponse { status: 200, headers: &headers, body })
}

#[test]
fn a_count_call_crosses_whole_and_no_count_stays_none() {
    let (_dir, plugin) = fixture();
    let adapter = adapter(&plugin);
    let http = adapter.count_tokens_request(&ChatRequest::prompt("héllo")).unwrap().unwrap();
    assert_eq!((http.method, http.url.as_str()), (Method::Post, "http://127.0.0.1:9/count"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(http.body.as_deref().unwrap()).unwrap(),
        json!({"prompt": "héllo"})
    );
    // The plugin's adapter has no count for this request: `None`, not an error, so the gateway
    // estimates.
    assert_eq!(adapter.count_tokens_request(&ChatRequest::prompt("no count")), None);
}

#[test]
fn count_errors_keep_their_kind_message_and_details() {
    let (_dir, plugin) = fixture();
    let adapter = adapter(&plugin);
    let e = adapter.count_tokens_request(&ChatRequest::prompt("uncountable")).unwrap().unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str(), e.code.as_deref()),
        (ErrorKind::ContextOverflow, "fixture cannot count this", Some("too_long"))
    );

    assert_eq!(parse(&adapter, br#"{"tokens": 42}"#), Ok(42));
    let e = parse(&adapter, br#"{"count": 42}"#).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::MalformedResponse, "fixture count without `tokens`")
    );
    assert_eq!(e.provider_body.as_deref(), Some(r#"{"count": 42}"#));
    let e = parse(&adapter, b"not json").unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::MalformedResponse, Some(200)), "{e}");
    assert!(e.message.starts_with("fixture count: "), "{e}");
}

#[test]
fn count_panics_become_errors() {
    let (_dir, plugin) = fixture();
    let adapter = adapter(&plugin);
    let e = adapter.count_tokens_request(&ChatRequest::prompt("panic")).unwrap().unwrap_err();
    assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Internal, Some(PANIC_CODE)));
    assert!(e.message.contains("fixture count_tokens_request exploded"), "{e}");
    let e = parse(&adapter, b"panic").unwrap_err();
    assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Internal, Some(PANIC_CODE)));
    assert!(e.message.contains("fixture parse_count_tokens exploded"), "{e}");
    // The adapter still counts afterwards.
    assert_eq!(parse(&adapter, br#"{"tokens": 7}"#), Ok(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_backend_counts_over_http() {
    let (_dir, plugin) = fixture();
    let server = FakeServer::start().await;
    let backend = plugin.backend(&settings(&server.url())).unwrap();

    server.push(Reply::json(200, json!({"tokens": 42})));
    assert_eq!(backend.count_tokens(&ChatRequest::prompt("count me")).await, Ok(42));
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/count"));
    assert_eq!(received[0].json(), json!({"prompt": "count me"}));
    // The host attached the key the plugin never saw.
    assert!(
        received[0].headers.iter().any(|(k, v)| k == "x-fixture-key" && v == KEY),
        "{:?}",
        received[0].headers
    );

    // No count: `Unsupported` (what the gateway estimates on) and nothing sent.
    let e = backend.count_tokens(&ChatRequest::prompt("no count")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    // A count the plugin cannot build fails with its error, nothing sent either.
    let e = backend.count_tokens(&ChatRequest::prompt("uncountable")).await.unwrap_err();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::ContextOverflow, "fixture cannot count this"));
    assert_eq!(server.received().len(), 1);

    // An answer the plugin cannot read, and a refusal it classifies.
    server.push(Reply::json(200, json!({"count": 42})));
    let e = backend.count_tokens(&ChatRequest::prompt("count me")).await.unwrap_err();
    assert_eq!((e.kind, e.backend.as_deref()), (ErrorKind::MalformedResponse, Some("counted")), "{e}");
    server.push(Reply::json(429, json!({"error": "slow down"})).header("retry-after", "3"));
    let e = backend.count_tokens(&ChatRequest::prompt("count me")).await.unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)), "{e}");
    assert_eq!(server.received().len(), 3);
}
