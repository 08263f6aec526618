//! `ClaudeBackend` over real HTTP on 127.0.0.1 against `claudette-testkit`'s fake Anthropic
//! server: round trips, the headers Anthropic requires, status and stream faults, and the
//! key staying out of every error.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_anthropic::ClaudeBackend;
use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, FinishReason, Registry, RetryAction, StreamEvent,
    Timeouts, UsageSource,
};
use claudette_testkit::events::text_of;
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

const KEY: &str = "sk-ant-api03-canary-key-0123456789";

fn settings(server: &FakeServer) -> BackendSettings {
    BackendSettings::new("claude-test")
        .base_url(server.url())
        .api_key(KEY)
        .model("claude-sonnet-4-5")
        .timeouts(Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(10),
            total: Duration::from_secs(20),
        })
}

fn backend(server: &FakeServer) -> ClaudeBackend {
    claudette_anthropic::backend(&settings(server)).unwrap()
}

async fn collect(b: &ClaudeBackend, req: &ChatRequest) -> Vec<StreamEvent> {
    let stream = b.send_stream(req).await.unwrap();
    stream.collect().await
}

#[tokio::test]
async fn non_stream_round_trip_with_required_headers() {
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_text("Bonjour tout le monde"));
    let b = backend(&server);
    let r = b
        .send(&ChatRequest::new(vec![
            claudette_core::Message::system("Be nice."),
            claudette_core::Message::user("Say hi"),
        ]))
        .await
        .unwrap();
    assert_eq!(r.content, "Bonjour tout le monde");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert_eq!(r.backend, "claude-test");
    assert_eq!(r.model, "claude-fake");
    assert!(r.id.as_deref().is_some_and(|id| id.starts_with("msg_fake")));
    assert_eq!(r.usage.source, UsageSource::Reported);
    assert_eq!(r.usage.output_tokens, 4);
    assert!(r.cost > 0.0, "an unknown claude-* model is priced like its family, never free");

    let got = server.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/messages"));
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("authorization"), None, "Anthropic takes the key in x-api-key only");
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "Be nice.",
            "messages": [{"role": "user", "content": "Say hi"}]
        })
    );
}

#[tokio::test]
async fn stream_round_trip() {
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_stream(&["Hel", "lo", " wörld"]));
    let b = backend(&server);
    let events = collect(&b, &ChatRequest::prompt("hi")).await;
    assert_eq!(text_of(&events), "Hello wörld");
    assert!(
        matches!(events.first(), Some(StreamEvent::Usage { .. })),
        "usage first, for billing: {events:?}"
    );
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::Stop));
    assert_eq!(end.usage.output_tokens, 3, "cumulative usage, not summed with message_start's");
    assert_eq!(end.usage.source, UsageSource::Reported);
    assert!(end.cost > 0.0);
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);

    let req = &server.received()[0];
    assert_eq!(req.json()["stream"], true);
    assert_eq!(req.header("accept"), Some("text/event-stream"));
    assert_eq!(req.header("x-api-key"), Some(KEY));
}

#[tokio::test]
async fn tool_use_round_trips() {
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_tool_use("toolu_9", "lookup", json!({"q": "rust"})));
    server.push(Reply::anthropic_stream_tool_use("toolu_10", "lookup", &["{\"q\": ", "\"ru", "st\"}"]));
    let b = backend(&server);

    let r = b.send(&ChatRequest::prompt("search")).await.unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].arguments, json!({"q": "rust"}));

    let events = collect(&b, &ChatRequest::prompt("search")).await;
    let deltas: Vec<_> = events
        .iter()
        .filter_map(|e| if let StreamEvent::ToolCall { delta } = e { Some(delta) } else { None })
        .collect();
    assert_eq!(deltas[0].id.as_deref(), Some("toolu_10"));
    assert_eq!(deltas[0].name.as_deref(), Some("lookup"));
    let args: String = deltas.iter().map(|d| d.arguments.as_str()).collect();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&args).unwrap(), json!({"q": "rust"}));
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn overloaded_529_is_transient() {
    let server = FakeServer::start().await;
    server.push_n(2, Reply::anthropic_error(529, "overloaded_error", "Overloaded"));
    let b = backend(&server);
    for stream in [false, true] {
        let e = if stream {
            b.send_stream(&ChatRequest::prompt("x")).await.err().unwrap()
        } else {
            b.send(&ChatRequest::prompt("x")).await.unwrap_err()
        };
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.status, Some(529));
        assert_eq!(e.code.as_deref(), Some("overloaded_error"));
        assert_eq!(e.backend.as_deref(), Some("claude-test"));
        assert_eq!(e.action(), RetryAction::Retry);
        assert!(e.message.contains("req_fake"), "request id kept for support: {e}");
    }
}

#[tokio::test]
async fn rate_limit_429_carries_the_hint() {
    let server = FakeServer::start().await;
    server.push(
        Reply::anthropic_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
        .header("retry-after", "3"),
    );
    let e = backend(&server).send(&ChatRequest::prompt("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(e.status, Some(429));
}

#[tokio::test]
async fn spend_limit_429_is_quota_not_rate() {
    let server = FakeServer::start().await;
    server.push(Reply::json(
        429,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached your specified API usage limits.",
               "details": {"error_code": "enforced_spend_limit_reached"}}}),
    ));
    let e = backend(&server).send(&ChatRequest::prompt("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::QuotaExhausted);
    assert_eq!(e.action(), RetryAction::FailOver);
}

#[tokio::test]
async fn overloaded_event_after_200_f15() {
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_stream_error_first("overloaded_error"));
    let events = collect(&backend(&server), &ChatRequest::prompt("x")).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let StreamEvent::Error { error } = &events[0] else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::Overloaded);
    assert_eq!(error.backend.as_deref(), Some("claude-test"));
}

#[tokio::test]
async fn error_event_after_content_f16() {
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_stream_error_after(&["par", "tial"], "api_error"));
    let events = collect(&backend(&server), &ChatRequest::prompt("x")).await;
    assert_eq!(text_of(&events), "partial");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::Overloaded);
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Done { .. })));
}

#[tokio::test]
async fn cut_stream_is_an_error_with_usage_f17() {
    let server = FakeServer::start().await;
    // message_start, block start, ping, two deltas: then the connection closes.
    server.push(Reply::anthropic_stream(&["one ", "two ", "three"]).cut_after(5));
    let events = collect(&backend(&server), &ChatRequest::prompt("x")).await;
    assert_eq!(text_of(&events), "one two ");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::StreamInterrupted);
    let usage =
        events.iter().find_map(|e| if let StreamEvent::Usage { usage } = e { Some(*usage) } else { None });
    assert_eq!(usage.map(|u| (u.input_tokens, u.source)), Some((10, UsageSource::Reported)));
}

#[tokio::test]
async fn key_never_in_error_text() {
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_error(401, "authentication_error", &format!("invalid x-api-key: {KEY}")));
    server.push(Reply::raw(500, format!("proxy error for key {KEY}")));
    let b = backend(&server);
    for _ in 0..2 {
        let e = b.send(&ChatRequest::prompt("x")).await.unwrap_err();
        let all = format!("{e} {e:?} {} {:?} {b:?}", serde_json::to_string(&e).unwrap(), e.provider_body);
        assert!(!all.contains("canary-key-0123456789"), "{all}");
    }
    assert_eq!(server.received()[0].header("x-api-key"), Some(KEY), "the key did go on the wire");
}

#[tokio::test]
async fn malformed_2xx_body() {
    let server = FakeServer::start().await;
    server.push(Reply::raw(200, "{\"type\":\"message\",\"content\":[{\"type\":\"text\""));
    let e = backend(&server).send(&ChatRequest::prompt("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::MalformedResponse);
}

#[tokio::test]
async fn health_and_models_use_the_free_list_endpoint() {
    let server = FakeServer::start().await;
    server.set_models(&["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]);
    let b = backend(&server);
    b.health_check().await.unwrap();
    assert_eq!(
        b.available_models().await.unwrap(),
        vec!["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]
    );
    let got = server.received();
    assert_eq!(server.post_requests(), 0, "health checks never call the completion endpoint");
    for r in &got {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/v1/models"));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("x-api-key"), Some(KEY));
    }
}

#[tokio::test]
async fn linked_registry_builds_anthropic() {
    let registry = Registry::linked().unwrap();
    assert!(registry.get("anthropic").is_some());
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_text("via registry"));
    let b = registry
        .build_from_value(json!({
            "provider": "anthropic", "name": "reg", "base_url": server.url(), "api_key": KEY,
            "anthropic_beta": "token-efficient-tools-2025-02-19"
        }))
        .unwrap();
    assert_eq!(b.info().provider, "anthropic");
    assert_eq!(b.send(&ChatRequest::prompt("x")).await.unwrap().content, "via registry");
    assert_eq!(server.received()[0].header("anthropic-beta"), Some("token-efficient-tools-2025-02-19"));

    // The official API without a key, and a typo'd setting, are refused before any I/O.
    let no_key = registry.build_from_value(json!({"provider": "anthropic", "name": "x"})).err().unwrap();
    assert!(no_key.to_string().contains("API key"), "{no_key}");
    let typo = registry
        .build_from_value(
            json!({"provider": "anthropic", "name": "x", "api_key": KEY, "default_max_token": 5}),
        )
        .err()
        .unwrap();
    assert!(typo.to_string().contains("default_max_token"), "{typo}");
}
