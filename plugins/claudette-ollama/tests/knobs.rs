//! Sampling knobs, the one-call-at-a-time limit and failed tool results, over real HTTP on
//! 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, FinishReason, Message, StreamEvent, ToolCall,
    ToolCallDelta, ToolChoice, ToolSpec, Usage,
};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
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
        strict: false,
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

fn function(q: &str) -> serde_json::Value {
    json!({"function": {"name": "lookup", "arguments": {"q": q}}})
}

/// The last line of an answer: `done: true` with the counts Ollama reports.
fn done_line(message: serde_json::Value) -> serde_json::Value {
    json!({"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z", "message": message,
           "done": true, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 30})
}

/// A non-stream `/api/chat` answer calling `lookup` three times in one turn.
fn three_calls() -> serde_json::Value {
    done_line(json!({"role": "assistant", "content": "",
                     "tool_calls": [function("x"), function("y"), function("z")]}))
}

/// The same calls streamed: the first alone on a line, the other two together on the next,
/// then the `done: true` line.
fn three_calls_streamed() -> Reply {
    let chunk = |calls: Vec<serde_json::Value>| {
        json!({"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z",
               "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false})
    };
    Reply::ndjson(vec![
        chunk(vec![function("x")]),
        chunk(vec![function("y"), function("z")]),
        done_line(json!({"role": "assistant", "content": ""})),
    ])
}

fn one_call_request(parallel_tool_calls: Option<bool>) -> ChatRequest {
    ChatRequest { tools: vec![lookup()], parallel_tool_calls, ..ChatRequest::prompt("look up x, y and z") }
}

#[tokio::test]
async fn one_call_at_a_time_keeps_the_answers_first_call() {
    let server = FakeServer::start().await;
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    server.push(Reply::json(200, three_calls()));
    let r = backend.send(&one_call_request(Some(false))).await.unwrap();
    let calls: Vec<_> = r.tool_calls.iter().map(|c| (c.name.as_str(), c.arguments.clone())).collect();
    assert_eq!(calls, [("lookup", json!({"q": "x"}))]);
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    // Usage is what Ollama reported: the dropped calls were generated.
    assert_eq!(r.usage, Usage::reported(12, 30));
    // The tools were offered as usual: Ollama has no switch to send.
    assert!(server.last_json().unwrap().get("tools").is_some());

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
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let tool_deltas = |events: &[StreamEvent]| -> Vec<ToolCallDelta> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall { delta } => Some(delta.clone()),
                _ => None,
            })
            .collect()
    };
    server.push(three_calls_streamed());
    let events: Vec<StreamEvent> =
        backend.send_stream(&one_call_request(Some(false))).await.unwrap().collect().await;
    let deltas = tool_deltas(&events);
    assert_eq!(deltas.len(), 1, "{events:?}");
    assert_eq!((deltas[0].index, deltas[0].name.as_deref()), (0, Some("lookup")));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&deltas[0].arguments).unwrap(), json!({"q": "x"}));
    match events.last() {
        Some(StreamEvent::Done { end }) => {
            assert_eq!(end.finish_reason, Some(FinishReason::ToolCalls));
            assert_eq!(end.usage, Usage::reported(12, 30));
        }
        other => panic!("{other:?}"),
    }

    for parallel in [None, Some(true)] {
        server.push(three_calls_streamed());
        let events: Vec<StreamEvent> =
            backend.send_stream(&one_call_request(parallel)).await.unwrap().collect().await;
        let indices: Vec<u32> = tool_deltas(&events).iter().map(|d| d.index).collect();
        assert_eq!(indices, [0, 1, 2], "{parallel:?}: {events:?}");
    }
}

#[tokio::test]
async fn a_forced_tool_call_is_still_refused_before_any_request() {
    let server = FakeServer::start().await;
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let request = ChatRequest { tool_choice: ToolChoice::Required, ..one_call_request(Some(false)) };
    let e = backend.send(&request).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert_eq!(server.requests(), 0);
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
