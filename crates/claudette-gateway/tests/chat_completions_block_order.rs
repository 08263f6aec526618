//! `/v1/chat/completions` carries an interleaved answer's block order, over real HTTP, in
//! front of a test-kit Anthropic fake. Claude thinks between its tool calls, so one answer is
//! `[thinking, tool_use, thinking, text, tool_use]`, and Anthropic refuses that turn sent back
//! in any other order ("thinking blocks in the latest assistant message cannot be modified").
//! Chat Completions keeps thinking (`thinking_blocks`), text and calls apart; the answer's
//! `block_order` says how they went, and a client that appends the message as it got it (JSON
//! or assembled from the stream) sends the order back, so the turn reaches the upstream as it
//! came. A turn without `block_order` goes as it always has.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

/// The interleaved answer's blocks, as Anthropic sends them. The text has a multi-byte
/// character: `block_order`'s offsets are bytes.
fn interleaved() -> Value {
    json!([
        {"type": "thinking", "thinking": "read the file first", "signature": "SIG1"},
        {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/a"}},
        {"type": "thinking", "thinking": "now the other one", "signature": "SIG2"},
        {"type": "text", "text": "Next — /b."},
        {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "/b"}}
    ])
}

/// The `block_order` of [`interleaved`]: "Next — /b." is 12 bytes.
fn interleaved_order() -> Value {
    json!(["thinking", "tool_call", "thinking", {"text": 12}, "tool_call"])
}

/// The same blocks in the usual order (thinking, text, calls): what the upstream got before
/// `block_order`, and gets from a client that does not send it.
fn usual_order() -> Value {
    let b = interleaved();
    json!([b[0], b[2], b[3], b[1], b[4]])
}

fn interleaved_answer() -> Fake {
    Fake::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": interleaved(), "stop_reason": "tool_use",
               "usage": {"input_tokens": 10, "output_tokens": 40}}),
    )
}

/// The same answer streamed block by block, each block's index its place in the answer.
fn interleaved_stream() -> Fake {
    Fake::anthropic_stream_blocks(&interleaved(), "tool_use")
}

/// A Chat Completions request with thinking on, for this conversation.
fn completion_body(messages: Value) -> Value {
    let tools = json!([{"type": "function", "function": {"name": "read",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]);
    json!({"model": "claude-fake", "max_tokens": 16000, "reasoning_effort": "medium",
           "tools": tools, "messages": messages})
}

/// The tool loop's next request: the assistant message as given, then both results.
fn tool_loop(assistant: Value) -> Value {
    completion_body(json!([
        {"role": "user", "content": "read /a and /b"},
        assistant,
        {"role": "tool", "tool_call_id": "toolu_1", "content": "A"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "B"}
    ]))
}

/// The assistant turn the upstream got in its last request.
fn sent_turn(claude: &FakeServer) -> Value {
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["messages"][1]["role"], "assistant", "{sent}");
    sent["messages"][1]["content"].clone()
}

fn gateway_in_front_of(claude: &FakeServer) -> impl Future<Output = Running> {
    start(router(vec![anthropic(anthropic_settings("claude", claude))]))
}

#[tokio::test]
async fn a_json_answer_says_its_block_order_and_the_turn_goes_back_upstream_in_it() {
    let claude = FakeServer::start().await;
    claude.push(interleaved_answer());
    let gw = gateway_in_front_of(&claude).await;

    let r = post(&gw.url, "/v1/chat/completions", completion_body(user("read /a and /b"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = r.json()["choices"][0]["message"].clone();
    assert_eq!(message["block_order"], interleaved_order(), "{message}");
    // The rest as before: one content string, the thinking blocks and the calls.
    let blocks = interleaved();
    assert_eq!(message["content"], "Next — /b.", "{message}");
    assert_eq!(message["thinking_blocks"], json!([blocks[0], blocks[2]]), "{message}");
    let ids: Vec<&str> =
        message["tool_calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["toolu_1", "toolu_2"], "{message}");

    // A client that drops the field sends the turn as it always did: the usual order.
    let mut without = message.clone();
    without.as_object_mut().unwrap().remove("block_order");
    claude.push(Fake::anthropic_text("A and B"));
    let r = post(&gw.url, "/v1/chat/completions", tool_loop(without)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sent_turn(&claude), usual_order());

    // One that appends the message as it got it sends the turn in the order Claude made it.
    claude.push(Fake::anthropic_text("A and B"));
    let r = post(&gw.url, "/v1/chat/completions", tool_loop(message)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "A and B");
    assert_eq!(sent_turn(&claude), interleaved());
}

/// The assistant message a client assembles from the chunks, as the SDKs' accumulators do:
/// content and argument fragments concatenated, calls by `index`, list fields appended.
fn assemble(frames: &[(Option<String>, String)]) -> Value {
    let mut message = json!({"role": "assistant", "content": ""});
    let mut content = String::new();
    let mut thinking_blocks = Vec::new();
    let mut calls: Vec<Value> = Vec::new();
    for (_, data) in frames.iter().filter(|(_, d)| d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).unwrap();
        let Some(delta) = chunk["choices"].get(0).map(|c| &c["delta"]) else { continue };
        for (key, value) in delta.as_object().unwrap() {
            match key.as_str() {
                "role" | "reasoning_content" => {}
                "content" => content.push_str(value.as_str().unwrap()),
                "thinking_blocks" => thinking_blocks.extend(value.as_array().unwrap().iter().cloned()),
                "tool_calls" => {
                    for call in value.as_array().unwrap() {
                        let i = call["index"].as_u64().unwrap() as usize;
                        if i == calls.len() {
                            calls.push(json!({"id": call["id"], "type": "function",
                                              "function": {"name": call["function"]["name"], "arguments": ""}}));
                        }
                        let arguments = format!(
                            "{}{}",
                            calls[i]["function"]["arguments"].as_str().unwrap(),
                            call["function"]["arguments"].as_str().unwrap()
                        );
                        calls[i]["function"]["arguments"] = json!(arguments);
                    }
                }
                // Unknown fields are kept as they come (openai-python's `accumulate_delta`,
                // openai-node's `Object.assign`).
                _ => {
                    assert!(message.get(key).is_none(), "{key} came twice");
                    message[key] = value.clone();
                }
            }
        }
    }
    message["content"] = json!(content);
    message["thinking_blocks"] = json!(thinking_blocks);
    message["tool_calls"] = json!(calls);
    message
}

#[tokio::test]
async fn a_stream_says_its_block_order_and_the_turn_goes_back_upstream_in_it() {
    let claude = FakeServer::start().await;
    claude.push(interleaved_stream());
    claude.push(Fake::anthropic_text("A and B"));
    let gw = gateway_in_front_of(&claude).await;

    let mut body = completion_body(user("read /a and /b"));
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let frames = r.frames();
    // One chunk of its own, with the sealed thinking blocks, right before the finish chunk,
    // which is as it was. Each list field comes once: openai-python's accumulator raises on a
    // list field that comes twice without `index`es, and openai-node's keeps the last one.
    let chunks: Vec<Value> =
        frames.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let at = chunks.iter().position(|c| c["choices"][0]["delta"].get("block_order").is_some()).unwrap();
    let delta = &chunks[at]["choices"][0]["delta"];
    assert_eq!(delta["block_order"], interleaved_order());
    assert_eq!(delta["thinking_blocks"].as_array().unwrap().len(), 2, "{delta}");
    assert_eq!(delta.as_object().unwrap().len(), 2, "{delta}");
    let lists = chunks.iter().filter(|c| c["choices"][0]["delta"].get("thinking_blocks").is_some()).count();
    assert_eq!(lists, 1, "thinking_blocks come once");
    assert!(chunks[at]["choices"][0]["finish_reason"].is_null());
    assert_eq!(chunks[at + 1]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[at + 1]["choices"][0]["finish_reason"], "tool_calls");

    let message = assemble(&frames);
    assert_eq!(message["content"], "Next — /b.", "{message}");
    assert_eq!(message["block_order"], interleaved_order(), "{message}");
    let r = post(&gw.url, "/v1/chat/completions", tool_loop(message)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sent_turn(&claude), interleaved());
}

#[tokio::test]
async fn a_block_order_that_does_not_fit_its_turn_is_refused_before_any_upstream_call() {
    let claude = FakeServer::start().await;
    claude.push(interleaved_answer());
    let gw = gateway_in_front_of(&claude).await;
    let r = post(&gw.url, "/v1/chat/completions", completion_body(user("read /a and /b"))).await;
    let mut message = r.json()["choices"][0]["message"].clone();
    // One call too many.
    message["block_order"] =
        json!(["thinking", "tool_call", "thinking", {"text": 12}, "tool_call", "tool_call"]);
    let asked = claude.post_requests();

    let r = post(&gw.url, "/v1/chat/completions", tool_loop(message.clone())).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let error = &r.json()["error"];
    assert_eq!(error["param"], "messages[1].block_order", "{error}");
    assert!(error["message"].as_str().unwrap().contains("tool calls"), "{error}");
    // Not an order at all: named where it is wrong.
    message["block_order"] = json!(["thinking", {"text": "twelve"}]);
    let r = post(&gw.url, "/v1/chat/completions", tool_loop(message)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "messages[1].block_order[1]", "{}", r.text);
    assert_eq!(claude.post_requests(), asked);
}
