//! A malformed function call and a base URL with a query string, over real HTTP on 127.0.0.1
//! against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, ErrorKind, Outcome, RetryAction, StreamEvent};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

fn settings(base: String) -> BackendSettings {
    BackendSettings::new("gemini-test")
        .model("gemini-2.5-flash")
        .api_key("AIzaSyCANARYkey0123456789abcdefghijklm")
        .base_url(base)
}

fn malformed() -> serde_json::Value {
    json!({"candidates": [{"content": {"role": "model"}, "finishReason": "MALFORMED_FUNCTION_CALL",
                           "finishMessage": "Malformed function call: print(default_api.lookup(q=))"}],
           "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}})
}

#[tokio::test]
async fn a_malformed_function_call_is_an_error_the_router_fails_over_from() {
    let server = FakeServer::start().await;
    server.push(Reply::json(200, malformed()));
    let backend = claudette_gemini::backend(&settings(format!("{}/v1beta", server.url()))).unwrap();
    let e = backend.send(&ChatRequest::prompt("look it up")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert_eq!(e.code.as_deref(), Some("MALFORMED_FUNCTION_CALL"));
    assert!(e.message.contains("lookup(q=)"), "{e}");
    // Another backend may call the tool; this server is healthy.
    assert_eq!((e.kind.action(), e.kind.outcome()), (RetryAction::FailOver, Outcome::Neutral));

    // In a stream, the same chunk ends it in that error, not in a quiet `Done`.
    server.push(Reply::sse(vec![
        format!(
            "data: {}",
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me"}]}}]})
        ),
        format!("data: {}", malformed()),
    ]));
    let events: Vec<StreamEvent> =
        backend.send_stream(&ChatRequest::prompt("x")).await.unwrap().collect().await;
    match events.last() {
        Some(StreamEvent::Error { error }) => assert_eq!(error.kind, ErrorKind::Unsupported, "{error}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_base_url_query_string_is_kept_on_every_call() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_text("ok"));
    server.push(Reply::gemini_stream(&["o", "k"]));
    let backend = claudette_gemini::backend(&settings(format!("{}/v1beta?tenant=a", server.url()))).unwrap();
    backend.send(&ChatRequest::prompt("hi")).await.unwrap();
    let _: Vec<StreamEvent> = backend.send_stream(&ChatRequest::prompt("hi")).await.unwrap().collect().await;
    let received = server.received();
    assert_eq!(received[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(received[0].query.as_deref(), Some("tenant=a"));
    assert_eq!(received[1].path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(received[1].query.as_deref(), Some("tenant=a&alt=sse"));
}
