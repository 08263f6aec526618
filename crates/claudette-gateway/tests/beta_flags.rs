//! The client's `anthropic-beta` flags through `/v1/messages` over real HTTP, in front of
//! test-kit fakes. Claude Code sends them on every request (`interleaved-thinking-…`,
//! `fine-grained-tool-streaming-…`, `context-1m-…` when a million-token context is on); an
//! Anthropic upstream gets them with the backend's configured flags and those the request's
//! tools need, each once; another provider serves the request without them; the client's
//! OAuth flag is its own business; a header that is not a list of flag names is refused
//! without echoing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/messages";

fn request(stream: bool) -> Value {
    json!({"model": "auto", "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": "Hello"}]})
}

/// Claude Code's flags, in two header lines as a proxy may fold them, with a repeat and its
/// OAuth flag.
const CLAUDE_CODE: [(&str, &str); 3] = [
    ("anthropic-beta", "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14"),
    ("anthropic-beta", " context-1m-2025-08-07 , interleaved-thinking-2025-05-14"),
    ("anthropic-version", "2023-06-01"),
];

#[tokio::test]
async fn the_clients_flags_reach_anthropic_after_the_backends_own_each_once() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("Hi."));
    claude.push(Fake::anthropic_stream(&["Hi."]));
    let configured = anthropic_settings("claude", &claude).extra("anthropic_beta", "context-1m-2025-08-07");
    let gw = start(router(vec![anthropic(configured)])).await;
    for stream in [false, true] {
        let r = post_with(&gw.url, PATH, request(stream), &CLAUDE_CODE).await;
        assert_eq!(r.status, 200, "stream {stream}: {}", r.text);
        let up = claude.received().pop().unwrap();
        assert_eq!(
            up.header("anthropic-beta"),
            Some("context-1m-2025-08-07,claude-code-20250219,interleaved-thinking-2025-05-14"),
            "stream {stream}"
        );
    }
}

#[tokio::test]
async fn the_flags_join_those_the_requests_tools_need() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("Fetched."));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let mut body = request(false);
    body["tools"] = json!([{"type": "web_fetch_20250910", "name": "web_fetch"}]);
    let flags = [("anthropic-beta", "web-fetch-2025-09-10,fine-grained-tool-streaming-2025-05-14")];
    let r = post_with(&gw.url, PATH, body, &flags).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let up = claude.received().pop().unwrap();
    assert_eq!(
        up.header("anthropic-beta"),
        Some("web-fetch-2025-09-10,fine-grained-tool-streaming-2025-05-14")
    );
}

#[tokio::test]
async fn another_provider_serves_the_request_without_them() {
    let gpt = FakeServer::start().await;
    gpt.set_default(openai_answer(json!({"role": "assistant", "content": "from gpt"}), "stop"));
    let gw = start(router(vec![openai(openai_settings("gpt", &gpt))])).await;
    let r = post_with(&gw.url, PATH, request(false), &CLAUDE_CODE).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["content"][0]["text"], "from gpt");
    let up = gpt.received().pop().unwrap();
    assert_eq!(up.header("anthropic-beta"), None);
    assert!(up.headers.iter().all(|(_, v)| !v.contains("interleaved")), "{:?}", up.headers);
}

#[tokio::test]
async fn only_the_oauth_flag_sends_no_header() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("Hi."));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post_with(&gw.url, PATH, request(false), &[("anthropic-beta", "oauth-2025-04-20")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.received().pop().unwrap().header("anthropic-beta"), None);
}

#[tokio::test]
async fn a_header_that_is_not_a_list_of_flags_is_refused_without_an_upstream_call() {
    let claude = FakeServer::start().await;
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let secret = "sk-ant-api03-canary-do-not-echo";
    let too_many = (0..40).map(|i| format!("flag-{i}")).collect::<Vec<_>>().join(",");
    for (value, why) in [
        (format!("interleaved-thinking-2025-05-14,Bearer {secret}"), "flag 2 is not a beta name"),
        ("a".repeat(65), "flag 1 is not a beta name"),
        (too_many, "more than 32 flags"),
    ] {
        for path in [PATH, "/v1/messages/count_tokens"] {
            let mut body = request(false);
            if path != PATH {
                body.as_object_mut().unwrap().remove("max_tokens");
            }
            let r = post_with(&gw.url, path, body, &[("anthropic-beta", value.as_str())]).await;
            assert_eq!(r.status, 400, "{path} {value}: {}", r.text);
            let e = r.json();
            assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
            let message = e["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("anthropic-beta header: ") && message.contains(why), "{message}");
            assert!(!r.text.contains(secret), "{}", r.text);
        }
    }
    assert_eq!(claude.post_requests(), 0);
}

#[tokio::test]
async fn a_token_count_carries_the_flags_the_message_will() {
    let claude = FakeServer::start().await;
    claude.push(Fake::json(200, json!({"input_tokens": 1_200_000})));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let mut body = request(false);
    body.as_object_mut().unwrap().remove("max_tokens");
    let r = post_with(&gw.url, "/v1/messages/count_tokens", body, &CLAUDE_CODE).await;
    assert_eq!((r.status, r.json()), (200, json!({"input_tokens": 1_200_000})), "{}", r.text);
    let up = claude.received().pop().unwrap();
    assert_eq!(up.path, "/v1/messages/count_tokens");
    assert_eq!(
        up.header("anthropic-beta"),
        Some("claude-code-20250219,interleaved-thinking-2025-05-14,context-1m-2025-08-07")
    );
}
