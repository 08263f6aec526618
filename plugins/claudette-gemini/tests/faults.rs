//! The Gemini backend over real HTTP on 127.0.0.1, against `claudette-testkit`'s fake server:
//! round trips, the key's path (a header, never the URL, never an error), streams and their
//! failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, FinishReason, Outcome, Registry, StreamEvent,
    UsageSource,
};
use claudette_testkit::events::text_of;
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

const KEY: &str = "AIzaSyCANARYkey0123456789abcdefghijklm";

fn settings(server: &FakeServer) -> BackendSettings {
    BackendSettings::new("gemini-test")
        .model("gemini-2.5-flash")
        .api_key(KEY)
        .base_url(format!("{}/v1beta", server.url()))
}

/// Every trace of the key a request leaves: URL, query, and headers other than the one it
/// belongs in.
fn assert_key_only_in_header(server: &FakeServer) {
    for r in server.received() {
        assert_eq!(r.header("x-goog-api-key"), Some(KEY), "{} {}", r.method, r.path);
        assert!(!r.path.contains("AIza"), "{}", r.path);
        assert!(
            r.query.as_deref().is_none_or(|q| !q.contains("key") && !q.contains("AIza")),
            "{:?}",
            r.query
        );
        assert_eq!(r.header("authorization"), None);
        let elsewhere =
            r.headers.iter().filter(|(n, _)| n != "x-goog-api-key").any(|(_, v)| v.contains("AIza"));
        assert!(!elsewhere, "{:?}", r.headers);
        assert!(!r.text().contains("AIza"));
    }
}

#[tokio::test]
async fn non_stream_round_trip() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_text("hello from the fake gemini"));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let answer = backend.send(&ChatRequest::prompt("hi").with_max_tokens(64)).await.unwrap();
    assert_eq!(answer.content, "hello from the fake gemini");
    assert_eq!(answer.finish_reason, Some(FinishReason::Stop));
    assert_eq!(answer.usage.source, UsageSource::Reported);
    assert_eq!(answer.usage.output_tokens, 5);
    assert!(answer.cost > 0.0);
    assert_eq!(answer.backend, "gemini-test");

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(received[0].query, None);
    assert_eq!(
        received[0].json(),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 64}})
    );
    assert_key_only_in_header(&server);
}

#[tokio::test]
async fn stream_round_trip() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_stream(&["The quick", " brown fox", " — 涌现"]));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let events: Vec<StreamEvent> =
        backend.send_stream(&ChatRequest::prompt("hi")).await.unwrap().collect().await;
    assert_eq!(text_of(&events), "The quick brown fox — 涌现");
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::Stop));
    assert_eq!(end.usage.source, UsageSource::Reported);
    assert_eq!(end.usage.output_tokens, 3);
    assert!(end.cost > 0.0);

    let received = server.received();
    assert_eq!(received[0].path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(received[0].query.as_deref(), Some("alt=sse"));
    assert_key_only_in_header(&server);
}

#[tokio::test]
async fn stream_split_into_single_bytes_f18() {
    let server = FakeServer::start().await;
    let whole = Reply::gemini_stream(&["é", "涌现", " ok"]).body_bytes();
    server.push(Reply::chunks(200, "text/event-stream", whole.iter().map(|b| vec![*b]).collect()));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let events: Vec<StreamEvent> =
        backend.send_stream(&ChatRequest::prompt("hi")).await.unwrap().collect().await;
    assert_eq!(text_of(&events), "é涌现 ok");
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
}

#[tokio::test]
async fn key_never_in_errors() {
    let server = FakeServer::start().await;
    // A body that echoes the key back.
    server.push(Reply::json(
        400,
        json!({"error": {"code": 400, "message": format!("API key not valid: {KEY}"), "status": "INVALID_ARGUMENT",
                         "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}),
    ));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let err = backend.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.outcome(), Outcome::Credential);
    let shown = format!("{err} {err:?} {}", serde_json::to_string(&err).unwrap());
    assert!(!shown.contains("CANARY"), "{shown}");
    assert!(!format!("{backend:?}").contains("CANARY"));
    // Nor in a transport error naming where it tried to connect.
    let dead = BackendSettings::new("dead")
        .model("gemini-2.5-flash")
        .api_key(KEY)
        .base_url("http://127.0.0.1:1/v1beta");
    let err = claudette_gemini::backend(&dead).unwrap().send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport);
    assert!(!format!("{err} {err:?}").contains("CANARY"));
}

#[tokio::test]
async fn rate_limit_carries_the_retry_delay() {
    let server = FakeServer::start().await;
    server.push(Reply::json(
        429,
        json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]}}),
    ));
    server.push(Reply::gemini_error(429, "RESOURCE_EXHAUSTED", "Your prepayment credits are depleted."));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let err = backend.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(30)));
    let err = backend.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::QuotaExhausted);
}

#[tokio::test]
async fn other_error_classes_over_http() {
    let server = FakeServer::start().await;
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    for (reply, kind) in [
        (
            Reply::gemini_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            ErrorKind::Overloaded,
        ),
        (Reply::gemini_error(404, "NOT_FOUND", "models/gemini-2.5-flash is not found"), ErrorKind::NotFound),
        (Reply::gemini_error(403, "PERMISSION_DENIED", "Permission denied"), ErrorKind::Auth),
        (
            Reply::gemini_error(
                400,
                "INVALID_ARGUMENT",
                "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).",
            ),
            ErrorKind::ContextOverflow,
        ),
        (
            Reply::gemini_error(400, "INVALID_ARGUMENT", "Invalid value at 'contents[0]'"),
            ErrorKind::InvalidRequest,
        ),
    ] {
        server.push(reply);
        let err = backend.send(&ChatRequest::prompt("hi")).await.unwrap_err();
        assert_eq!(err.kind, kind, "{err}");
    }
    assert_key_only_in_header(&server);
}

#[tokio::test]
async fn safety_block_over_http() {
    let server = FakeServer::start().await;
    server.push(Reply::json(
        200,
        json!({"promptFeedback": {"blockReason": "SAFETY"},
                                        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}}),
    ));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let err = backend.send(&ChatRequest::prompt("something bad")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContentPolicy);
    assert_eq!(err.code.as_deref(), Some("SAFETY"));
    assert!(!err.may_retry_same());
}

#[tokio::test]
async fn stream_without_finish_reason_is_an_error_f17() {
    let server = FakeServer::start().await;
    let chunk = |t: &str| {
        format!(
            "data: {}",
            json!({"candidates": [{"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}]})
        )
    };
    server.push(Reply::sse(vec![chunk("looks "), chunk("complete")]));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let events: Vec<StreamEvent> =
        backend.send_stream(&ChatRequest::prompt("hi")).await.unwrap().collect().await;
    assert_eq!(text_of(&events), "looks complete");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::StreamInterrupted);
}

#[tokio::test]
async fn error_in_a_200_stream_f16_and_cut_connection() {
    let server = FakeServer::start().await;
    let text = format!(
        "data: {}",
        json!({"candidates": [{"content": {"parts": [{"text": "partial"}], "role": "model"}}]})
    );
    let error = format!(
        "data: {}",
        json!({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}})
    );
    server.push(Reply::sse(vec![text, error]));
    server.push(Reply::gemini_stream(&["one ", "two ", "three"]).cut_after(1));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();

    let events: Vec<StreamEvent> =
        backend.send_stream(&ChatRequest::prompt("hi")).await.unwrap().collect().await;
    assert_eq!(text_of(&events), "partial");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::Overloaded);

    let events: Vec<StreamEvent> =
        backend.send_stream(&ChatRequest::prompt("hi")).await.unwrap().collect().await;
    assert_eq!(text_of(&events), "one ");
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })), "{events:?}");
}

#[tokio::test]
async fn health_check_and_models() {
    let server = FakeServer::start().await;
    server.set_models(&["gemini-2.5-flash", "gemini-2.5-pro"]);
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    backend.health_check().await.unwrap();
    assert_eq!(backend.available_models().await.unwrap(), vec!["gemini-2.5-flash", "gemini-2.5-pro"]);
    assert!(server.received().iter().all(|r| r.method == "GET" && r.path == "/v1beta/models"));
    assert_eq!(server.post_requests(), 0);
    assert_key_only_in_header(&server);
}

#[tokio::test]
async fn registered_at_link_time() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_text("via the registry"));
    let registry = Registry::linked().unwrap();
    assert!(registry.get("gemini").is_some());
    let backend = registry
        .build_from_value(
            json!({"provider": "gemini", "name": "g", "model": "gemini-2.0-flash", "api_key": KEY,
                                 "base_url": format!("{}/v1beta", server.url())}),
        )
        .unwrap();
    assert_eq!(backend.send(&ChatRequest::prompt("hi")).await.unwrap().content, "via the registry");
    assert_eq!(server.received()[0].path, "/v1beta/models/gemini-2.0-flash:generateContent");
    // No key: refused when built, before any request.
    let err = registry
        .build_from_value(json!({"provider": "gemini", "name": "g", "model": "gemini-2.0-flash"}))
        .err()
        .unwrap();
    assert!(err.to_string().contains("api_key"), "{err}");
}
