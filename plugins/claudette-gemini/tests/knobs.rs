//! Sampling knobs, the one-call-at-a-time limit and failed tool results, over real HTTP on
//! 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, ErrorKind, Message, ToolCall, ToolSpec};
use claudette_testkit::{FakeServer, Reply};
use serde_json::json;

fn settings(server: &FakeServer) -> BackendSettings {
    BackendSettings::new("gemini-test")
        .model("gemini-2.5-flash")
        .api_key("AIzaSyCANARYkey0123456789abcdefghijklm")
        .base_url(format!("{}/v1beta", server.url()))
}

fn lookup() -> ToolSpec {
    ToolSpec {
        name: "lookup".into(),
        description: String::new(),
        parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        cache: None,
    }
}

#[tokio::test]
async fn top_k_and_seed_go_in_the_generation_config() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_text("ok"));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let request = ChatRequest { top_k: Some(40), seed: Some(-3), ..ChatRequest::prompt("hi") };
    backend.send(&request).await.unwrap();
    let config = &server.last_json().unwrap()["generationConfig"];
    assert_eq!((config["topK"].as_u64(), config["seed"].as_i64()), (Some(40), Some(-3)), "{config}");

    // Gemini's seed is an int32: a wider one is not sent (rather than another seed).
    server.push(Reply::gemini_text("ok"));
    let wide = ChatRequest { seed: Some(i64::from(i32::MAX) + 1), ..ChatRequest::prompt("hi") };
    backend.send(&wide).await.unwrap();
    assert!(server.last_json().unwrap().get("generationConfig").is_none());
}

#[tokio::test]
async fn one_call_at_a_time_is_refused_before_any_request() {
    let server = FakeServer::start().await;
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let request = ChatRequest {
        tools: vec![lookup()],
        parallel_tool_calls: Some(false),
        ..ChatRequest::prompt("look it up")
    };
    let e = backend.send(&request).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert!(e.message.contains("parallel_tool_calls"), "{e}");
    assert_eq!(server.requests(), 0);
    // With no tools, or no calls allowed, there is nothing to limit.
    server.push(Reply::gemini_text("ok"));
    backend
        .send(&ChatRequest { parallel_tool_calls: Some(false), ..ChatRequest::prompt("x") })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_tool_result_is_sent_as_an_error() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_text("sorry"));
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    let call = |id: &str| ToolCall { id: id.into(), name: "lookup".into(), arguments: json!({"q": "x"}) };
    let request = ChatRequest {
        tools: vec![lookup()],
        ..ChatRequest::new(vec![
            Message::user("look up x and y"),
            Message { tool_calls: vec![call("c1"), call("c2")], ..Message::assistant("") },
            Message::tool_error("c1", "backend timed out"),
            Message::tool_result("c2", "{\"hits\": 3}"),
        ])
    };
    backend.send(&request).await.unwrap();
    let parts = &server.last_json().unwrap()["contents"][2]["parts"];
    assert_eq!(parts[0]["functionResponse"]["response"], json!({"error": "backend timed out"}));
    assert_eq!(parts[1]["functionResponse"]["response"], json!({"hits": 3}));
}

#[tokio::test]
async fn a_thinking_budget_goes_in_the_thinking_config() {
    use claudette_core::{ReasoningEffort, Thinking};
    let server = FakeServer::start().await;
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    for (thinking, budget) in [
        (Thinking::Budget { budget_tokens: 2048 }, 2048),
        (Thinking::Effort { effort: ReasoningEffort::High }, 24_576),
    ] {
        server.push(Reply::gemini_text("ok"));
        let request = ChatRequest { thinking: Some(thinking), ..ChatRequest::prompt("hi") };
        backend.send(&request).await.unwrap();
        let config = &server.last_json().unwrap()["generationConfig"];
        assert_eq!(config["thinkingConfig"], json!({"thinkingBudget": budget, "includeThoughts": true}));
    }
    // Off is the model's default, not a zero budget some models refuse.
    server.push(Reply::gemini_text("ok"));
    backend
        .send(&ChatRequest { thinking: Some(Thinking::Disabled), ..ChatRequest::prompt("hi") })
        .await
        .unwrap();
    assert!(server.last_json().unwrap().get("generationConfig").is_none());
}
