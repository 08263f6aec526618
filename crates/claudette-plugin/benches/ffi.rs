//! What a run-time plugin costs per call: the OpenAI adapter linked into this binary against
//! the same adapter loaded from its `.so` (issue 4 item 6; targets: under 5 µs added per
//! request, under 1 µs per stream event).
//!
//! `cargo xtask bench plugins` (or `cargo bench -p claudette-plugin --bench ffi`). The plugins
//! are built first with `cargo xtask plugins --release` into `target/plugins-bench/`, so both
//! sides are optimised. Speed is measured on demand here, never asserted in a test.
//!
//! - `request_path`: everything `HttpBackend` asks the adapter for one non-streaming call
//!   (timeouts, build_request, parse_response, pricing, observe) — the per-request figure.
//! - `build_request`, `parse_response`: the two big ones alone.
//!
//! Every iteration of `request_path` and `build_request` sends a request never seen before
//! (the plugin side decodes a request once and recognises its repeats by their bytes).
//! - `stream_200_events`: decoding a recorded-shape stream of 200 content events plus the
//!   end marker, framing included; divide the difference by 200 for the per-event figure.
//! - `json_floor`: one JSON round trip of the request and of the answer, no plugin: what
//!   ABI version 1, which sent both as JSON, paid per request for that alone (the binary
//!   encoding of ABI 2 exists because this was most of the overhead).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use claudette_core::{
    BackendSettings, ChatRequest, HttpResponse, Message, Observation, ProviderAdapter, StreamParser, Timeouts,
};
use claudette_plugin::{LoadOptions, load_file};
use divan::Bencher;

fn main() {
    divan::main();
}

fn settings() -> BackendSettings {
    BackendSettings::new("bench").api_key("sk-bench-0123456789").model("gpt-4o-mini")
}

fn plugin_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    target.join("plugins-bench")
}

fn adapter(which: &str) -> &'static dyn ProviderAdapter {
    static LINKED: OnceLock<claudette_openai::OpenAiAdapter> = OnceLock::new();
    static PLUGIN: OnceLock<claudette_plugin::PluginAdapter> = OnceLock::new();
    match which {
        "linked" => LINKED.get_or_init(|| claudette_openai::OpenAiAdapter::new(&settings()).unwrap()),
        "plugin" => PLUGIN.get_or_init(|| {
            let dir = plugin_dir();
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .args(["run", "--quiet", "-p", "xtask", "--", "plugins", "--release", "--out"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "cargo xtask plugins --release failed");
            let file = dir.join(format!(
                "{}claudette_openai{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            ));
            load_file(&file, &LoadOptions::default()).unwrap().new_adapter(&settings()).unwrap()
        }),
        other => panic!("unknown adapter {other}"),
    }
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("You are a concise assistant."),
        Message::user("Summarise the plot of Hamlet in two sentences."),
    ])
    .with_max_tokens(256)
    .with_temperature(0.3)
}

/// A request no call has seen yet, as in production: the plugin adapter caches the last
/// request's encoding, and a benchmark repeating one request would only measure cache hits.
fn fresh_request() -> ChatRequest {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut r = request();
    r.messages[1].content =
        format!("Summarise the plot of Hamlet in two sentences. ({})", N.fetch_add(1, Ordering::Relaxed));
    r
}

/// A typical chat completion body.
fn completion() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Prince Hamlet seeks revenge on his uncle Claudius, who murdered Hamlet's father to seize the throne. His hesitation and feigned madness lead to a tragic chain of deaths, including his own.", "refusal": null},
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": {"prompt_tokens": 31, "completion_tokens": 42, "total_tokens": 73,
                  "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
        "system_fingerprint": "fp_bench"
    }))
    .unwrap()
}

/// 200 content chunks, a finish chunk with usage, and `[DONE]`.
fn stream_body() -> Vec<u8> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut body = String::new();
    for i in 0..200 {
        body.push_str(&chunk(serde_json::json!({"content": format!("tok{i} ")}), serde_json::Value::Null));
    }
    body.push_str(&chunk(serde_json::json!({}), serde_json::json!("stop")));
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

const ADAPTERS: [&str; 2] = ["linked", "plugin"];

#[divan::bench(args = ADAPTERS)]
fn request_path(bencher: Bencher, which: &str) {
    let a = adapter(which);
    let body = completion();
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let configured = Timeouts::default();
    let observation =
        Observation { latency: Duration::from_millis(420), ttft: None, error: None, stream: false };
    bencher.with_inputs(fresh_request).bench_local_refs(|req| {
        let t = a.timeouts(&configured, black_box(&*req));
        let http = a.build_request(black_box(&*req), false).unwrap();
        let answer = a
            .parse_response(req, &HttpResponse { status: 200, headers: &headers, body: black_box(&body) })
            .unwrap();
        let price = a.pricing(Some(&answer.model));
        a.observe(&observation);
        (t, http, answer, price)
    });
}

#[divan::bench(args = ADAPTERS)]
fn build_request(bencher: Bencher, which: &str) {
    let a = adapter(which);
    bencher
        .with_inputs(fresh_request)
        .bench_local_refs(|req| a.build_request(black_box(&*req), false).unwrap());
}

#[divan::bench(args = ADAPTERS)]
fn parse_response(bencher: Bencher, which: &str) {
    let a = adapter(which);
    let req = request();
    let body = completion();
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    bencher.bench(|| {
        a.parse_response(&req, &HttpResponse { status: 200, headers: &headers, body: black_box(&body) })
            .unwrap()
    });
}

#[divan::bench(args = ADAPTERS)]
fn stream_200_events(bencher: Bencher, which: &str) {
    let a = adapter(which);
    let req = request();
    let body = stream_body();
    bencher.bench(|| {
        let events = StreamParser::for_adapter(a, &req).parse_all(black_box(&body), body.len());
        assert_eq!(events.len(), 201);
        events
    });
}

/// What a JSON boundary costs at the least: encoding and decoding the request and the answer
/// once each, with no plugin involved. ABI 1 paid this on every request; kept as the yardstick
/// the binary encoding is measured against.
#[divan::bench]
fn json_floor(bencher: Bencher) {
    let a = adapter("linked");
    let req = request();
    let body = completion();
    let answer = a.parse_response(&req, &HttpResponse { status: 200, headers: &[], body: &body }).unwrap();
    bencher.bench(|| {
        let r: ChatRequest = serde_json::from_str(&serde_json::to_string(black_box(&req)).unwrap()).unwrap();
        let c: claudette_core::ChatResponse =
            serde_json::from_str(&serde_json::to_string(black_box(&answer)).unwrap()).unwrap();
        (r, c)
    });
}
