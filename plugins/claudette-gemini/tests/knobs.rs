//! Sampling knobs, the one-call-at-a-time limit and failed tool results, over real HTTP on
//! 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    Backend, BackendSettings, ChatRequest, FinishReason, Message, StreamEvent, ToolCall, ToolCallDelta,
    ToolSpec,
};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
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
        strict: false,
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

fn function_call(q: &str) -> serde_json::Value {
    json!({"functionCall": {"name": "lookup", "args": {"q": q}}})
}

/// A `generateContent` answer calling `lookup` three times in one turn, as Gemini does when it
/// decides the calls are independent.
fn three_calls() -> serde_json::Value {
    json!({"candidates": [{"content": {"role": "model", "parts": [
               {"text": "Looking."}, function_call("x"), function_call("y"), function_call("z")]},
               "finishReason": "STOP"}],
           "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 30, "totalTokenCount": 42},
           "modelVersion": "gemini-2.5-flash"})
}

/// The same three calls streamed: the first alone in a chunk, the other two together in the
/// last one, which carries the finish and the usage.
fn three_calls_streamed() -> Reply {
    let usage =
        |n: u32| json!({"promptTokenCount": 12, "candidatesTokenCount": n, "totalTokenCount": 12 + n});
    Reply::sse(vec![
        format!(
            "data: {}",
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Looking."}, function_call("x")]}}],
                   "usageMetadata": usage(10)})
        ),
        format!(
            "data: {}",
            json!({"candidates": [{"content": {"role": "model", "parts": [function_call("y"), function_call("z")]},
                                   "finishReason": "STOP"}],
                   "usageMetadata": usage(30)})
        ),
    ])
}

fn one_call_request(parallel_tool_calls: Option<bool>) -> ChatRequest {
    ChatRequest { tools: vec![lookup()], parallel_tool_calls, ..ChatRequest::prompt("look up x, y and z") }
}

/// `(name, arguments)` of each call, in order.
fn calls_of(calls: &[ToolCall]) -> Vec<(String, serde_json::Value)> {
    calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect()
}

#[tokio::test]
async fn one_call_at_a_time_keeps_the_answers_first_call() {
    let server = FakeServer::start().await;
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    server.push(Reply::json(200, three_calls()));
    let r = backend.send(&one_call_request(Some(false))).await.unwrap();
    assert_eq!(calls_of(&r.tool_calls), [("lookup".to_owned(), json!({"q": "x"}))]);
    assert_eq!(r.content, "Looking.");
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    // Usage is what Gemini reported: the dropped calls were generated and billed.
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (12, 30));
    // The tools were offered as usual: Gemini has no switch to send.
    let sent = server.last_json().unwrap();
    assert!(sent.get("tools").is_some() && sent.get("toolConfig").is_none(), "{sent}");

    // Unset or allowed: every call.
    for parallel in [None, Some(true)] {
        server.push(Reply::json(200, three_calls()));
        let r = backend.send(&one_call_request(parallel)).await.unwrap();
        assert_eq!(r.tool_calls.len(), 3, "{parallel:?}");
    }
}

#[tokio::test]
async fn one_call_at_a_time_holds_in_a_stream() {
    let server = FakeServer::start().await;
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    server.push(three_calls_streamed());
    let events: Vec<StreamEvent> =
        backend.send_stream(&one_call_request(Some(false))).await.unwrap().collect().await;
    let deltas: Vec<&ToolCallDelta> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCall { delta } => Some(delta),
            _ => None,
        })
        .collect();
    assert_eq!(deltas.len(), 1, "{events:?}");
    assert_eq!((deltas[0].index, deltas[0].name.as_deref()), (0, Some("lookup")));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&deltas[0].arguments).unwrap(), json!({"q": "x"}));
    assert_eq!(claudette_testkit::events::text_of(&events), "Looking.");
    match events.last() {
        Some(StreamEvent::Done { end }) => {
            assert_eq!(end.finish_reason, Some(FinishReason::ToolCalls));
            assert_eq!((end.usage.input_tokens, end.usage.output_tokens), (12, 30));
        }
        other => panic!("{other:?}"),
    }

    for parallel in [None, Some(true)] {
        server.push(three_calls_streamed());
        let events: Vec<StreamEvent> =
            backend.send_stream(&one_call_request(parallel)).await.unwrap().collect().await;
        let indices: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall { delta } => Some(delta.index),
                _ => None,
            })
            .collect();
        assert_eq!(indices, [0, 1, 2], "{parallel:?}: {events:?}");
    }
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
