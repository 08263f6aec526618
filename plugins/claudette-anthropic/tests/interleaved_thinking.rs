//! Interleaved thinking over real HTTP against `claudette-testkit`'s fake Anthropic server.
//!
//! Claude thinks between its tool calls, so one answer can be `[thinking, tool_use,
//! redacted_thinking, thinking, text, tool_use]`. Sent back in any other order, Anthropic
//! refuses every later request of the loop with a 400 ("`thinking` or `redacted_thinking`
//! blocks in the latest assistant message cannot be modified"): the answer keeps its order,
//! the turn built from it goes back in that order, and a stream hands the blocks on as they
//! came.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{block_start, delta, event, stop, tool};

use claudette_anthropic::ClaudeBackend;
use claudette_core::{
    Backend, BackendSettings, Block, ChatRequest, ChatResponse, Message, ReasoningEffort, StreamEvent,
    Thinking, ThinkingBlock, ThinkingSeal, ToolCallDelta,
};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

const MODEL: &str = "claude-opus-4-8";

fn backend(server: &FakeServer) -> ClaudeBackend {
    let settings = BackendSettings::new("claude-interleaved")
        .base_url(server.url())
        .api_key("sk-ant-api03-canary-interleaved-0123456789")
        .model(MODEL);
    claudette_anthropic::backend(&settings).unwrap()
}

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        messages,
        tools: vec![tool("get_weather"), tool("now")],
        max_tokens: Some(4096),
        thinking: Some(Thinking::Effort { effort: ReasoningEffort::High }),
        ..ChatRequest::default()
    }
}

/// Claude's answer as Anthropic sends it, in the shape the adapter sends blocks back in.
fn interleaved_content() -> Value {
    json!([
        {"type": "thinking", "thinking": "The weather first.", "signature": "sig-1"},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "redacted_thinking", "data": "opaque-redacted"},
        {"type": "thinking", "thinking": "Now the time.", "signature": "sig-2"},
        {"type": "text", "text": "And the time:"},
        {"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}},
    ])
}

/// Each block of an answer as `kind:what`, in its order.
fn shape(r: &ChatResponse) -> Vec<String> {
    r.blocks()
        .unwrap()
        .iter()
        .map(|b| match b {
            Block::Thinking(ThinkingBlock::Thinking { signature, .. }) => format!("thinking:{signature}"),
            Block::Thinking(ThinkingBlock::Redacted { data }) => format!("redacted:{data}"),
            Block::Text { text, .. } => format!("text:{text}"),
            Block::ToolCall { call, .. } => format!("call:{}", call.id),
            Block::Native(n) => format!("native:{}", n.kind()),
        })
        .collect()
}

#[tokio::test]
async fn an_interleaved_answer_goes_back_in_the_order_it_came() {
    let server = FakeServer::start().await;
    server.push(Reply::json(
        200,
        json!({"id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
               "content": interleaved_content(), "stop_reason": "tool_use",
               "usage": {"input_tokens": 20, "output_tokens": 40}}),
    ));
    let b = backend(&server);
    let question = Message::user("Weather in Paris, and the time?");
    let r = b.send(&request(vec![question.clone()])).await.unwrap();
    assert_eq!(
        shape(&r),
        [
            "thinking:sig-1",
            "call:toolu_01",
            "redacted:opaque-redacted",
            "thinking:sig-2",
            "text:And the time:",
            "call:toolu_02"
        ]
    );

    // The client sends the turn back with both results, as the neutral message carries it.
    server.set_default(Reply::anthropic_text("18°C, and it is 14:05."));
    let turn = Message {
        thinking: r.thinking.clone(),
        tool_calls: r.tool_calls.clone(),
        order: r.order.clone(),
        ..Message::assistant(r.content.clone())
    };
    let messages = vec![
        question,
        turn,
        Message::tool_result("toolu_01", "18°C"),
        Message::tool_result("toolu_02", "14:05"),
    ];
    b.send(&request(messages.clone())).await.unwrap();
    let body = server.received().last().unwrap().json();
    assert_eq!(body["messages"][1]["content"], interleaved_content(), "{body}");
    // The turn starts with Claude's signed thinking: thinking stays on for the loop.
    assert_eq!(body["thinking"], json!({"type": "adaptive"}), "{body}");

    // A stream and a count send the same turn.
    server.push(Reply::anthropic_stream(&["18°C"]));
    let events: Vec<_> = b.send_stream(&request(messages.clone())).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    assert_eq!(server.received().last().unwrap().json()["messages"][1]["content"], interleaved_content());
    server.push(Reply::json(200, json!({"input_tokens": 64})));
    assert_eq!(b.count_tokens(&request(messages)).await.unwrap(), 64);
    assert_eq!(server.received().last().unwrap().json()["messages"][1]["content"], interleaved_content());
}

/// The same answer streamed: each block's events come on in wire order, so the thinking
/// before a call, the call, the thinking after it and the text after that stay apart.
#[tokio::test]
async fn a_streamed_interleaved_answer_keeps_its_order() {
    let server = FakeServer::start().await;
    let thinking = |text: &str| delta_value("thinking_delta", "thinking", text);
    server.push(Reply::sse(vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_02", "type": "message",
                   "role": "assistant", "model": MODEL, "content": [],
                   "usage": {"input_tokens": 20, "output_tokens": 1}}}),
        ),
        block_start(0, json!({"type": "thinking", "thinking": "", "signature": ""})),
        delta(0, thinking("The weather first.")),
        delta(0, delta_value("signature_delta", "signature", "sig-1")),
        stop(0),
        block_start(1, json!({"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}})),
        delta(1, delta_value("input_json_delta", "partial_json", "{\"city\": \"Paris\"}")),
        stop(1),
        block_start(2, json!({"type": "redacted_thinking", "data": "opaque-redacted"})),
        stop(2),
        block_start(3, json!({"type": "thinking", "thinking": "", "signature": ""})),
        delta(3, thinking("Now the time.")),
        delta(3, delta_value("signature_delta", "signature", "sig-2")),
        stop(3),
        block_start(4, json!({"type": "text", "text": ""})),
        delta(4, delta_value("text_delta", "text", "And the time:")),
        stop(4),
        block_start(5, json!({"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}})),
        delta(5, delta_value("input_json_delta", "partial_json", "")),
        stop(5),
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                   "usage": {"output_tokens": 40}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]));
    let b = backend(&server);
    let events: Vec<StreamEvent> = b
        .send_stream(&request(vec![Message::user("Weather in Paris, and the time?")]))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    let content: Vec<StreamEvent> = events.into_iter().filter(StreamEvent::is_content).collect();
    let call = |index, id: Option<&str>, name: Option<&str>, arguments: &str| StreamEvent::ToolCall {
        delta: ToolCallDelta {
            index,
            id: id.map(str::to_owned),
            name: name.map(str::to_owned),
            arguments: arguments.into(),
        },
    };
    let reasoning = |text: &str| StreamEvent::ReasoningDelta { text: text.into() };
    let signed = |sig: &str| StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature(sig.into()) };
    assert_eq!(
        content,
        [
            reasoning("The weather first."),
            signed("sig-1"),
            call(1, Some("toolu_01"), Some("get_weather"), ""),
            call(1, None, None, "{\"city\": \"Paris\"}"),
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted("opaque-redacted".into()) },
            reasoning("Now the time."),
            signed("sig-2"),
            StreamEvent::text("And the time:"),
            call(5, Some("toolu_02"), Some("now"), ""),
            call(5, None, None, "{}"),
        ]
    );
}

fn delta_value(kind: &str, field: &str, value: &str) -> Value {
    let mut d = json!({ "type": kind });
    d[field] = Value::String(value.into());
    d
}
