//! Sampling knobs, the one-call-at-a-time limit and failed tool results, over real HTTP on
//! 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, ErrorKind, Message, ToolCall, ToolSpec};
use claudette_testkit::{FakeServer, Reply};
use serde_json::json;

fn settings(server: &FakeServer) -> BackendSettings {
    BackendSettings::new("ollama-test").model("llama3.2").base_url(server.url())
}

fn lookup() -> ToolSpec {
    ToolSpec {
        name: "lookup".into(),
        description: String::new(),
        parameters: json!({"type": "object"}),
        cache: None,
    }
}

#[tokio::test]
async fn top_k_and_seed_go_in_the_options() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_text("ok"));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let request = ChatRequest { top_k: Some(20), seed: Some(42), ..ChatRequest::prompt("hi") };
    backend.send(&request).await.unwrap();
    let options = &server.last_json().unwrap()["options"];
    assert_eq!((options["top_k"].as_u64(), options["seed"].as_i64()), (Some(20), Some(42)), "{options}");
}

#[tokio::test]
async fn one_call_at_a_time_is_refused_before_any_request() {
    let server = FakeServer::start().await;
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let request = ChatRequest {
        tools: vec![lookup()],
        parallel_tool_calls: Some(false),
        ..ChatRequest::prompt("look it up")
    };
    let e = backend.send(&request).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert_eq!(server.requests(), 0);
    // Allowed, or with no tools, it goes.
    server.push(Reply::ollama_text("ok"));
    backend.send(&ChatRequest { parallel_tool_calls: Some(true), ..request }).await.unwrap();
}

#[tokio::test]
async fn a_failed_tool_result_says_so_in_its_text() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_text("sorry"));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let request = ChatRequest::new(vec![
        Message::user("look up x"),
        Message {
            tool_calls: vec![ToolCall { id: "c1".into(), name: "lookup".into(), arguments: json!({}) }],
            ..Message::assistant("")
        },
        Message::tool_error("c1", "backend timed out"),
    ]);
    backend.send(&request).await.unwrap();
    let sent = &server.last_json().unwrap()["messages"][2];
    assert_eq!(sent["content"], "Error: backend timed out");
    assert_eq!(sent["tool_name"], "lookup");
}
