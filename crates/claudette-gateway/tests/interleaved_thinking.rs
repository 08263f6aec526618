//! Interleaved thinking over real HTTP, in front of a test-kit Anthropic fake: Claude thinks
//! between its tool calls, so one answer is `[thinking, tool_use, thinking, text, tool_use]`,
//! and Anthropic refuses that turn sent back in any other order ("thinking blocks in the latest
//! assistant message cannot be modified") on every turn after. The client gets the blocks in
//! the upstream's order, and its tool loop's turn reaches the upstream in that order again:
//! from `/v1/messages` (JSON and stream) and `/v1/responses`. `/v1/chat/completions` carries
//! the order in `block_order` (tests/chat_completions_block_order.rs); here, that its answer
//! is whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

/// The interleaved answer's blocks, as Anthropic sends them.
fn interleaved() -> Value {
    json!([
        {"type": "thinking", "thinking": "read the file first", "signature": "SIG1"},
        {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/a"}},
        {"type": "thinking", "thinking": "now the other one", "signature": "SIG2"},
        {"type": "text", "text": "Reading the second file."},
        {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "/b"}}
    ])
}

fn interleaved_answer() -> Fake {
    Fake::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": interleaved(), "stop_reason": "tool_use",
               "usage": {"input_tokens": 10, "output_tokens": 40}}),
    )
}

/// The same answer streamed, block by block in its order.
fn interleaved_stream() -> Fake {
    Fake::anthropic_stream_blocks(&interleaved(), "tool_use")
}

fn tools() -> Value {
    json!([{"name": "read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}])
}

/// A Messages request with adaptive thinking, for this conversation.
fn messages_body(messages: Value) -> Value {
    json!({"model": "claude-fake", "max_tokens": 16000, "thinking": {"type": "adaptive"},
           "tools": tools(), "messages": messages})
}

/// The tool loop's next request: the assistant turn as the client got it, then both results.
fn tool_loop(assistant: Value) -> Value {
    messages_body(json!([
        {"role": "user", "content": "read /a and /b"},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "B"}
        ]}
    ]))
}

/// The assistant turn the upstream got in the last request, and its thinking setting.
fn sent_turn(claude: &FakeServer) -> (Value, Value) {
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["messages"][1]["role"], "assistant", "{sent}");
    (sent["messages"][1]["content"].clone(), sent["thinking"].clone())
}

fn gateway_in_front_of(claude: &FakeServer) -> impl Future<Output = Running> {
    start(router(vec![anthropic(anthropic_settings("claude", claude))]))
}

#[tokio::test]
async fn a_messages_answer_keeps_its_block_order_and_goes_back_upstream_in_it() {
    let claude = FakeServer::start().await;
    claude.push(interleaved_answer());
    claude.push(Fake::anthropic_text("A and B"));
    let gw = gateway_in_front_of(&claude).await;

    let r =
        post(&gw.url, "/v1/messages", messages_body(json!([{"role": "user", "content": "read /a and /b"}])))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answer = r.json();
    assert_eq!(answer["content"], interleaved(), "{answer}");
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");

    // Claude Code sends the turn back as it got it, with the tools' results.
    let r = post(&gw.url, "/v1/messages", tool_loop(answer["content"].clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (turn, thinking) = sent_turn(&claude);
    assert_eq!(turn, interleaved(), "{turn}");
    assert_eq!(thinking["type"], "adaptive", "{thinking}");
}

#[tokio::test]
async fn a_messages_stream_keeps_its_block_order_and_goes_back_upstream_in_it() {
    let claude = FakeServer::start().await;
    claude.push(interleaved_stream());
    claude.push(Fake::anthropic_text("A and B"));
    let gw = gateway_in_front_of(&claude).await;

    let mut body = messages_body(json!([{"role": "user", "content": "read /a and /b"}]));
    body["stream"] = json!(true);
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The blocks as a client assembles them from the events.
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial_json = String::new();
    for (_, data) in r.frames() {
        let ev: Value = serde_json::from_str(&data).unwrap();
        let index = ev["index"].as_u64().map(|i| i as usize);
        match ev["type"].as_str().unwrap() {
            "content_block_start" => {
                assert_eq!(index, Some(blocks.len()), "{ev}");
                blocks.push(ev["content_block"].clone());
            }
            "content_block_delta" => {
                let block = &mut blocks[index.unwrap()];
                let delta = &ev["delta"];
                match delta["type"].as_str().unwrap() {
                    "thinking_delta" => {
                        block["thinking"] = json!(format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        ))
                    }
                    "signature_delta" => block["signature"] = delta["signature"].clone(),
                    "text_delta" => {
                        block["text"] = json!(format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        ))
                    }
                    "input_json_delta" => partial_json.push_str(delta["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let block = &mut blocks[index.unwrap()];
                if block["type"] == "tool_use" {
                    block["input"] = serde_json::from_str(&std::mem::take(&mut partial_json)).unwrap();
                }
            }
            _ => {}
        }
    }
    assert_eq!(Value::Array(blocks.clone()), interleaved(), "{}", r.text);

    let r = post(&gw.url, "/v1/messages", tool_loop(Value::Array(blocks))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (turn, _) = sent_turn(&claude);
    assert_eq!(turn, interleaved(), "{turn}");
}

#[tokio::test]
async fn a_responses_answer_keeps_its_item_order_and_goes_back_upstream_in_it() {
    let claude = FakeServer::start().await;
    claude.push(interleaved_answer());
    claude.push(Fake::anthropic_text("A and B"));
    let gw = gateway_in_front_of(&claude).await;
    let tools = json!([{"type": "function", "name": "read",
                        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]);

    let question = json!({"role": "user", "content": "read /a and /b"});
    let body = json!({"model": "claude-fake", "reasoning": {"effort": "medium"}, "tools": tools,
                      "input": [question]});
    let r = post(&gw.url, "/v1/responses", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let output = r.json()["output"].as_array().unwrap().clone();
    let shape: Vec<(&str, &str)> = output
        .iter()
        .map(|item| {
            let what = match item["type"].as_str().unwrap() {
                "reasoning" => item["content"][0]["text"].as_str().unwrap(),
                "message" => item["content"][0]["text"].as_str().unwrap(),
                _ => item["call_id"].as_str().unwrap(),
            };
            (item["type"].as_str().unwrap(), what)
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("reasoning", "read the file first"),
            ("function_call", "toolu_1"),
            ("reasoning", "now the other one"),
            ("message", "Reading the second file."),
            ("function_call", "toolu_2"),
        ]
    );

    // The Agents SDK sends every output item back, then the calls' outputs.
    let mut input = vec![question];
    input.extend(output);
    input.push(json!({"type": "function_call_output", "call_id": "toolu_1", "output": "A"}));
    input.push(json!({"type": "function_call_output", "call_id": "toolu_2", "output": "B"}));
    let body = json!({"model": "claude-fake", "reasoning": {"effort": "medium"}, "tools": tools,
                      "input": input});
    let r = post(&gw.url, "/v1/responses", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (turn, thinking) = sent_turn(&claude);
    assert_eq!(turn, interleaved(), "{turn}");
    assert_eq!(thinking["type"], "enabled", "{thinking}");
}

/// Chat Completions keeps thinking in a separate `thinking_blocks` list (the order goes in
/// `block_order`, see tests/chat_completions_block_order.rs); an interleaved answer comes whole.
#[tokio::test]
async fn a_chat_completions_answer_of_an_interleaved_turn_is_whole() {
    let claude = FakeServer::start().await;
    claude.push(interleaved_answer());
    let gw = gateway_in_front_of(&claude).await;
    let tools = json!([{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]);
    let body = json!({"model": "claude-fake", "max_tokens": 16000, "reasoning_effort": "medium",
                      "tools": tools, "messages": user("read /a and /b")});
    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = &r.json()["choices"][0]["message"];
    let blocks = interleaved();
    assert_eq!(message["thinking_blocks"], json!([blocks[0], blocks[2]]), "{message}");
    assert_eq!(message["content"], "Reading the second file.", "{message}");
    let ids: Vec<&str> =
        message["tool_calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["toolu_1", "toolu_2"], "{message}");
}
