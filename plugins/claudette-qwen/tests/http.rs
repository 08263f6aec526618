//! The adaptive hooks through the real I/O path: a `QwenBackend` (claudette-http) against a
//! scripted OpenAI-compatible server on 127.0.0.1. The I/O layer must ask the adapter for each
//! call's deadline and report each call back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_core::{Backend, BackendSettings, ChatRequest, ErrorKind, EventStream, StreamEvent, Timeouts};
use claudette_qwen::{QwenBackend, backend};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

/// Configured timeouts far above the adaptive ones, so a timeout seen here is the adapter's.
fn generous() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(30),
        idle: Duration::from_secs(30),
        total: Duration::from_secs(60),
    }
}

fn qwen_on(server: &FakeServer, extra: &[(&str, Value)]) -> QwenBackend {
    let mut settings =
        BackendSettings::new("qwen-fake").base_url(server.v1_url()).model("m").timeouts(generous());
    for (k, v) in extra {
        settings = settings.extra(k, v.clone());
    }
    backend(&settings).unwrap()
}

async fn drain(mut stream: EventStream) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e);
    }
    events
}

fn async_request() -> ChatRequest {
    let mut r = ChatRequest::prompt("index the repository");
    r.metadata.insert("async_contribution".into(), json!(true));
    r
}

#[tokio::test]
async fn the_adaptive_deadline_is_the_one_enforced_and_a_timeout_grows_it() {
    let server = FakeServer::start().await;
    let b = qwen_on(&server, &[("base_timeout_ms", json!(300)), ("max_timeout_ms", json!(5_000))]);
    server.push(Reply::openai_text("too late").delay(Duration::from_secs(2)));
    let e = b.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    // With the configured 30 s first-byte timeout this call would have succeeded.
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    let snap = b.adapter().adaptive().snapshot();
    assert_eq!((snap.consecutive_failures, snap.grown), (1, Some(Duration::from_millis(450))));
}

#[tokio::test]
async fn async_contribution_gets_the_max_deadline_end_to_end() {
    let server = FakeServer::start().await;
    let b = qwen_on(
        &server,
        &[
            ("base_timeout_ms", json!(300)),
            ("max_timeout_ms", json!(10_000)),
            ("async_contribution_enabled", json!(true)),
        ],
    );
    // Interactive first: an async call's latency is learned like any other (see the crate
    // docs: the observation does not say which request it was).
    server.push(Reply::openai_text("slow interactive answer").delay(Duration::from_secs(1)));
    let e = b.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    server.push(Reply::openai_text("slow pipeline work").delay(Duration::from_secs(1)));
    let r = b.send(&async_request()).await.unwrap();
    assert_eq!(r.content, "slow pipeline work");
}

#[tokio::test]
async fn every_call_is_reported_to_the_adapter() {
    let server = FakeServer::start().await;
    let b = qwen_on(&server, &[]);
    let adaptive = b.adapter().adaptive();

    server.push(Reply::openai_text("hello"));
    b.send(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(adaptive.snapshot().samples, 1);

    // A stream reports when it ends.
    server.push(Reply::openai_stream(&["Hel", "lo"]));
    let events = drain(b.send_stream(&ChatRequest::prompt("hi")).await.unwrap()).await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    assert_eq!(adaptive.snapshot().samples, 2);

    // Failures, of the server's making, in a row: unhealthy.
    server.push(Reply::openai_error(500, "server_error", None, "CUDA out of memory"));
    assert_eq!(b.send(&ChatRequest::prompt("hi")).await.unwrap_err().kind, ErrorKind::Overloaded);
    server.push(Reply::openai_stream_no_done(&["a"]));
    let events = drain(b.send_stream(&ChatRequest::prompt("hi")).await.unwrap()).await;
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })), "{events:?}");
    assert_eq!(adaptive.consecutive_failures(), 2);
    assert!(b.adapter().is_healthy());
    server.push(Reply::openai_error(503, "server_error", None, "loading model"));
    let failed = b.send_stream(&ChatRequest::prompt("hi")).await;
    assert_eq!(failed.err().map(|e| e.kind), Some(ErrorKind::Overloaded));
    assert!(!b.adapter().is_healthy());

    // A caller error does not change the verdict; the next answer does.
    server.push(Reply::openai_error(400, "invalid_request_error", None, "bad temperature"));
    assert_eq!(b.send(&ChatRequest::prompt("hi")).await.unwrap_err().kind, ErrorKind::InvalidRequest);
    assert!(!b.adapter().is_healthy());
    server.push(Reply::openai_text("back"));
    b.send(&ChatRequest::prompt("hi")).await.unwrap();
    assert!(b.adapter().is_healthy());
    assert_eq!(adaptive.snapshot().samples, 3);
}

#[tokio::test]
async fn a_stream_that_keeps_flowing_outlives_the_deadline() {
    // The deadline bounds the wait for the answer to start, not a stream producing tokens.
    let server = FakeServer::start().await;
    let b = qwen_on(&server, &[("base_timeout_ms", json!(300)), ("max_timeout_ms", json!(600))]);
    server.push(Reply::openai_stream(&["a", "b", "c", "d", "e", "f"]).gap(Duration::from_millis(150)));
    let events = drain(b.send_stream(&ChatRequest::prompt("hi")).await.unwrap()).await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "abcdef");
}

/// vLLM's engine abort (vllm-project/vllm #57082) over HTTP: a 200 stream with
/// `finish_reason: "abort"` and `[DONE]` ends in an error, and counts as the box failing.
#[tokio::test]
async fn an_engine_abort_is_an_error_and_a_failure_of_the_box() {
    let server = FakeServer::start().await;
    let b = qwen_on(&server, &[]);
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {chunk}")
    };
    server.push(Reply::sse(vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "half an"}), Value::Null),
        chunk(json!({"content": ""}), json!("abort")),
        "data: [DONE]".to_owned(),
    ]));
    let events = drain(b.send_stream(&ChatRequest::prompt("hi")).await.unwrap()).await;
    assert_eq!(events.first(), Some(&StreamEvent::text("half an")), "{events:?}");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::Overloaded, "{error}");
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Done { .. })), "{events:?}");
    assert_eq!(b.adapter().adaptive().consecutive_failures(), 1);

    server.push(Reply::json(
        200,
        json!({"id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "half an"},
                            "finish_reason": "abort"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
    ));
    let e = b.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded, "{e}");
    assert_eq!(b.adapter().adaptive().consecutive_failures(), 2);
}
