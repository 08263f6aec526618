//! Claude's signed thinking through `POST /v1/chat/completions`, over real HTTP in front of a
//! test-kit Anthropic fake: the blocks reach an OpenAI-format client as LiteLLM's
//! `thinking_blocks` (in the answer and in the stream), and come back upstream at the head of
//! the assistant turn of a tool loop, which Anthropic requires with thinking on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}])
}

fn anthropic_event(value: Value) -> String {
    format!("event: {}\ndata: {value}", value["type"].as_str().unwrap())
}

/// The blocks the fakes think with: a signed block, a redacted one.
fn blocks() -> Value {
    json!([
        {"type": "thinking", "thinking": "need the \"file\"\n", "signature": "SIG+/1=="},
        {"type": "redacted_thinking", "data": "OPAQUE"}
    ])
}

/// An Anthropic answer that thought (signed and redacted) and then called a tool.
fn thought_then_called() -> Fake {
    let mut content = blocks().as_array().unwrap().clone();
    content.push(json!({"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}));
    Fake::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": content, "stop_reason": "tool_use",
               "usage": {"input_tokens": 5, "output_tokens": 20}}),
    )
}

/// The same turn streamed, with the signed block's text in two fragments and a second
/// signed block after the redacted one.
fn thought_then_called_streamed() -> Fake {
    let delta = |index: u32, delta: Value| {
        anthropic_event(json!({"type": "content_block_delta", "index": index, "delta": delta}))
    };
    let start = |index: u32, block: Value| {
        anthropic_event(json!({"type": "content_block_start", "index": index, "content_block": block}))
    };
    let stop = |index: u32| anthropic_event(json!({"type": "content_block_stop", "index": index}));
    Fake::sse(vec![
        anthropic_event(json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude-fake", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 5, "output_tokens": 1}}})),
        start(0, json!({"type": "thinking", "thinking": ""})),
        delta(0, json!({"type": "thinking_delta", "thinking": "need the \"file"})),
        delta(0, json!({"type": "thinking_delta", "thinking": "\"\n"})),
        delta(0, json!({"type": "signature_delta", "signature": "SIG+/1=="})),
        stop(0),
        start(1, json!({"type": "redacted_thinking", "data": "OPAQUE"})),
        stop(1),
        start(2, json!({"type": "thinking", "thinking": ""})),
        delta(2, json!({"type": "thinking_delta", "thinking": "then read it"})),
        delta(2, json!({"type": "signature_delta", "signature": "SIG2"})),
        stop(2),
        start(3, json!({"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}})),
        delta(3, json!({"type": "input_json_delta", "partial_json": "{\"path\": \"/x\"}"})),
        stop(3),
        anthropic_event(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                               "usage": {"output_tokens": 20}})),
        anthropic_event(json!({"type": "message_stop"})),
    ])
}

/// The conversation after the tool ran: the assistant turn as the client got it, then the
/// tool's result.
fn tool_loop(assistant: Value) -> Value {
    json!({"max_tokens": 16000, "reasoning_effort": "medium", "tools": tools(), "messages": [
        {"role": "user", "content": "read /x"},
        assistant,
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"}
    ]})
}

/// What the Anthropic upstream got as the assistant turn of the loop, and whether thinking
/// stayed on.
fn sent_turn(claude: &FakeServer) -> (Value, Value) {
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["messages"][1]["role"], "assistant", "{sent}");
    (sent["messages"][1]["content"].clone(), sent["thinking"].clone())
}

fn gateway_in_front_of(claude: &FakeServer) -> impl Future<Output = Running> {
    start(router(vec![anthropic(anthropic_settings("claude", claude))]))
}

#[tokio::test]
async fn a_json_answer_carries_the_signed_blocks_and_they_go_back_upstream() {
    let claude = FakeServer::start().await;
    claude.push(thought_then_called());
    claude.push(Fake::anthropic_text("the answer is 42"));
    let gw = gateway_in_front_of(&claude).await;
    let first = json!({"max_tokens": 16000, "reasoning_effort": "medium", "tools": tools(),
                       "messages": user("read /x")});
    let r = post(&gw.url, "/v1/chat/completions", first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = r.json()["choices"][0]["message"].clone();
    assert_eq!(message["reasoning_content"], "need the \"file\"\n", "{message}");
    assert_eq!(message["thinking_blocks"], blocks(), "{message}");
    assert_eq!(message["tool_calls"][0]["id"], "toolu_1", "{message}");

    // The client sends the assistant message back as it got it (as openai-python's
    // `message.model_dump()` does), with the tool's result.
    let r = post(&gw.url, "/v1/chat/completions", tool_loop(message)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (turn, thinking) = sent_turn(&claude);
    assert_eq!(
        turn,
        json!([
            blocks()[0],
            blocks()[1],
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}
        ]),
        "{turn}"
    );
    assert_eq!(thinking["type"], "enabled", "{thinking}");
}

#[tokio::test]
async fn a_text_answer_carries_its_blocks_and_one_without_thinking_has_none() {
    let claude = FakeServer::start().await;
    claude.push(Fake::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": [blocks()[0], {"type": "text", "text": "Paris"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 5, "output_tokens": 20}}),
    ));
    claude.push(Fake::anthropic_text("Paris"));
    let gw = gateway_in_front_of(&claude).await;
    let body = json!({"max_tokens": 16000, "reasoning_effort": "medium", "messages": user("capital?")});
    let r = post(&gw.url, "/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = r.json()["choices"][0]["message"].clone();
    assert_eq!(message["content"], "Paris", "{message}");
    assert_eq!(message["thinking_blocks"], json!([blocks()[0]]), "{message}");

    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = r.json()["choices"][0]["message"].clone();
    assert!(message.get("thinking_blocks").is_none(), "{message}");
}

#[tokio::test]
async fn a_stream_carries_its_whole_blocks_in_one_chunk_before_the_finish() {
    let claude = FakeServer::start().await;
    claude.push(thought_then_called_streamed());
    claude.push(Fake::anthropic_text("the answer is 42"));
    let gw = gateway_in_front_of(&claude).await;
    let first = json!({"max_tokens": 16000, "reasoning_effort": "medium", "tools": tools(),
                       "messages": user("read /x"), "stream": true});
    let r = post(&gw.url, "/v1/chat/completions", first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let deltas: Vec<Value> = r
        .frames()
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"].clone())
        .collect();
    let reasoning: String = deltas.iter().filter_map(|d| d["reasoning_content"].as_str()).collect();
    assert_eq!(reasoning, "need the \"file\"\nthen read it", "{}", r.text);
    // Every block whole, in one delta of their own right before the finish chunk: a list
    // field that came twice would make openai-python's stream accumulator raise (it merges
    // list entries by `index`), and openai-node's would keep only the last one.
    let lists: Vec<usize> = deltas
        .iter()
        .enumerate()
        .filter(|(_, d)| d.get("thinking_blocks").is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(lists.len(), 1, "{}", r.text);
    let at = lists[0];
    assert_eq!(deltas[at].as_object().unwrap().len(), 1, "{}", r.text);
    assert_eq!(deltas[at + 1], json!({}), "the finish chunk follows: {}", r.text);
    let entries = deltas[at]["thinking_blocks"].as_array().unwrap().clone();
    let second = json!({"type": "thinking", "thinking": "then read it", "signature": "SIG2"});
    assert_eq!(entries, [blocks()[0].clone(), blocks()[1].clone(), second.clone()], "{}", r.text);

    // Kept as they came and sent back, they reach the upstream in order.
    let assistant = json!({"role": "assistant", "content": null, "thinking_blocks": entries,
        "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "read", "arguments": "{\"path\": \"/x\"}"}}]});
    let r = post(&gw.url, "/v1/chat/completions", tool_loop(assistant)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (turn, _) = sent_turn(&claude);
    assert_eq!(turn.as_array().unwrap()[..3], [blocks()[0].clone(), blocks()[1].clone(), second], "{turn}");
    assert_eq!(turn[3]["type"], "tool_use", "{turn}");
}

/// A client that keeps the blocks itself (LiteLLM's SDK, an agent framework) sends them with
/// the calls they led to; the turn reaches Claude starting with them, and thinking stays on.
#[tokio::test]
async fn blocks_sent_with_tool_calls_start_the_assistant_turn_upstream() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("the answer is 42"));
    let gw = gateway_in_front_of(&claude).await;
    let assistant = json!({"role": "assistant", "content": "Reading it.", "thinking_blocks": blocks(),
        "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "read", "arguments": "{\"path\": \"/x\"}"}}]});
    let r = post(&gw.url, "/v1/chat/completions", tool_loop(assistant)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (turn, thinking) = sent_turn(&claude);
    assert_eq!(
        turn,
        json!([
            blocks()[0],
            blocks()[1],
            {"type": "text", "text": "Reading it."},
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}
        ]),
        "{turn}"
    );
    assert_eq!(thinking["type"], "enabled", "{thinking}");
}

#[tokio::test]
async fn malformed_thinking_blocks_are_refused_naming_the_entry() {
    let claude = FakeServer::start().await;
    let gw = gateway_in_front_of(&claude).await;
    let with = |role: &str, blocks: Value| {
        json!({"messages": [
            {"role": "user", "content": "read /x"},
            {"role": role, "content": "ok", "thinking_blocks": blocks}
        ]})
    };
    let cases = [
        ("assistant", json!([blocks()[0], 7]), "messages[1].thinking_blocks[1]"),
        (
            "assistant",
            json!([{"type": "thinking", "thinking": 3, "signature": "s"}]),
            "messages[1].thinking_blocks[0]",
        ),
        ("assistant", json!([{"thinking": "t", "signature": "s"}]), "messages[1].thinking_blocks[0]"),
        ("assistant", json!("SIG"), "messages[1].thinking_blocks"),
        (
            "assistant",
            json!([{"type": "thinking", "signature": "s"}]),
            "messages[1].thinking_blocks[0].thinking",
        ),
        (
            "assistant",
            json!([blocks()[0], {"type": "redacted_thinking"}]),
            "messages[1].thinking_blocks[1].data",
        ),
        ("assistant", json!([{"type": "reasoning", "summary": "t"}]), "messages[1].thinking_blocks[0].type"),
        ("user", blocks(), "messages[1].thinking_blocks"),
    ];
    for (role, blocks, param) in cases {
        let r = post(&gw.url, "/v1/chat/completions", with(role, blocks.clone())).await;
        assert_eq!(r.status, 400, "{blocks}: {}", r.text);
        let v = r.json();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
        assert_eq!(v["error"]["param"], param, "{blocks}: {}", r.text);
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text);
    }
    assert_eq!(claude.requests(), 0);
}
