//! Interleaved thinking over real HTTP, in front of a test-kit Anthropic fake: Claude thinks
//! between its tool calls, so one answer is `[thinking, tool_use, thinking, text, tool_use]`,
//! and Anthropic refuses that turn sent back in any other order ("thinking blocks in the latest
//! assistant message cannot be modified") on every turn after. The client gets the blocks in
//! the upstream's order, and its tool loop's turn reaches the upstream in that order again:
//! from `/v1/messages` (JSON and stream) and `/v1/responses`, whose blocks and items keep their
//! places, and from `/v1/chat/completions`, which keeps thinking (`thinking_blocks`), text and
//! calls apart and carries the order in the answer's `block_order`: a client that appends the
//! message as it got it (JSON or assembled from the stream) sends the order back. A Chat
//! Completions turn without `block_order` goes as it always has.
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
/// `block_order`, and gets from a Chat Completions client that does not send it.
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

const QUESTION: &str = "read /a and /b";

/// The client formats a tool loop can come in. Each asks the same question with thinking on
/// and the same `read` tool, so one upstream answer serves every test.
#[derive(Clone, Copy)]
enum Api {
    Messages,
    Responses,
    ChatCompletions,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Messages => "/v1/messages",
            Api::Responses => "/v1/responses",
            Api::ChatCompletions => "/v1/chat/completions",
        }
    }

    /// A request for this conversation, with thinking turned on the way each format's clients
    /// turn it on: adaptive thinking on Messages, a reasoning effort on the OpenAI formats.
    fn body(self, conversation: Vec<Value>) -> Value {
        let parameters = json!({"type": "object", "properties": {"path": {"type": "string"}}});
        match self {
            Api::Messages => json!({"model": "claude-fake", "max_tokens": 16000,
                "thinking": {"type": "adaptive"},
                "tools": [{"name": "read", "input_schema": parameters}], "messages": conversation}),
            Api::Responses => json!({"model": "claude-fake", "reasoning": {"effort": "medium"},
                "tools": [{"type": "function", "name": "read", "parameters": parameters}],
                "input": conversation}),
            Api::ChatCompletions => json!({"model": "claude-fake", "max_tokens": 16000,
                "reasoning_effort": "medium",
                "tools": [{"type": "function", "function": {"name": "read", "parameters": parameters}}],
                "messages": conversation}),
        }
    }

    /// The first request: the question alone.
    fn question(self) -> Value {
        self.body(vec![json!({"role": "user", "content": QUESTION})])
    }

    /// The tool loop's next request: the question, the answer as the client got it (the
    /// Messages content, the Responses output items, the Chat Completions message), then
    /// both tools' results.
    fn tool_loop(self, answer: Value) -> Value {
        let mut conversation = vec![json!({"role": "user", "content": QUESTION})];
        match self {
            Api::Messages => conversation.extend([
                json!({"role": "assistant", "content": answer}),
                json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "B"}
                ]}),
            ]),
            Api::Responses => {
                conversation.extend(answer.as_array().unwrap().iter().cloned());
                conversation.extend([
                    json!({"type": "function_call_output", "call_id": "toolu_1", "output": "A"}),
                    json!({"type": "function_call_output", "call_id": "toolu_2", "output": "B"}),
                ]);
            }
            Api::ChatCompletions => conversation.extend([
                answer,
                json!({"role": "tool", "tool_call_id": "toolu_1", "content": "A"}),
                json!({"role": "tool", "tool_call_id": "toolu_2", "content": "B"}),
            ]),
        }
        self.body(conversation)
    }

    async fn post(self, gw: &Running, body: Value) -> Reply {
        post(&gw.url, self.path(), body).await
    }
}

/// What the upstream got in its last request.
struct Sent {
    /// The assistant turn's blocks, in the order they reached the upstream.
    turn: Value,
    /// The thinking setting it was asked with.
    thinking: Value,
}

fn sent_turn(claude: &FakeServer) -> Sent {
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["messages"][1]["role"], "assistant", "{sent}");
    Sent { turn: sent["messages"][1]["content"].clone(), thinking: sent["thinking"].clone() }
}

// ------------------------------------------------------------------------------------------
// /v1/messages and /v1/responses: the blocks and items keep their places.

#[tokio::test]
async fn a_messages_answer_keeps_its_block_order_and_goes_back_upstream_in_it() {
    let (claude, gw) = claude_answering([interleaved_answer(), Fake::anthropic_text("A and B")]).await;

    let r = Api::Messages.post(&gw, Api::Messages.question()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answer = r.json();
    assert_eq!(answer["content"], interleaved(), "{answer}");
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");

    // Claude Code sends the turn back as it got it, with the tools' results.
    let r = Api::Messages.post(&gw, Api::Messages.tool_loop(answer["content"].clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let Sent { turn, thinking } = sent_turn(&claude);
    assert_eq!(turn, interleaved(), "{turn}");
    assert_eq!(thinking["type"], "adaptive", "{thinking}");
}

#[tokio::test]
async fn a_messages_stream_keeps_its_block_order_and_goes_back_upstream_in_it() {
    let (claude, gw) = claude_answering([interleaved_stream(), Fake::anthropic_text("A and B")]).await;

    let mut body = Api::Messages.question();
    body["stream"] = json!(true);
    let r = Api::Messages.post(&gw, body).await;
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

    let r = Api::Messages.post(&gw, Api::Messages.tool_loop(Value::Array(blocks))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let Sent { turn, .. } = sent_turn(&claude);
    assert_eq!(turn, interleaved(), "{turn}");
}

#[tokio::test]
async fn a_responses_answer_keeps_its_item_order_and_goes_back_upstream_in_it() {
    let (claude, gw) = claude_answering([interleaved_answer(), Fake::anthropic_text("A and B")]).await;

    let r = Api::Responses.post(&gw, Api::Responses.question()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let output = r.json()["output"].clone();
    let shape: Vec<(&str, &str)> = output
        .as_array()
        .unwrap()
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
            ("message", "Next — /b."),
            ("function_call", "toolu_2"),
        ]
    );

    // The Agents SDK sends every output item back, then the calls' outputs.
    let r = Api::Responses.post(&gw, Api::Responses.tool_loop(output)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let Sent { turn, thinking } = sent_turn(&claude);
    assert_eq!(turn, interleaved(), "{turn}");
    assert_eq!(thinking["type"], "enabled", "{thinking}");
}

// ------------------------------------------------------------------------------------------
// /v1/chat/completions: the order goes in `block_order`.

/// A Chat Completions message holds all of [`interleaved`] but its order: the text as one
/// content string, both thinking blocks and both calls.
fn assert_whole(message: &Value) {
    let blocks = interleaved();
    assert_eq!(message["content"], "Next — /b.", "{message}");
    assert_eq!(message["thinking_blocks"], json!([blocks[0], blocks[2]]), "{message}");
    let ids: Vec<&str> =
        message["tool_calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["toolu_1", "toolu_2"], "{message}");
}

/// Chat Completions keeps thinking in a separate `thinking_blocks` list; an interleaved answer
/// comes whole.
#[tokio::test]
async fn a_chat_completions_answer_of_an_interleaved_turn_is_whole() {
    let (_claude, gw) = claude_answering([interleaved_answer()]).await;
    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.question()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_whole(&r.json()["choices"][0]["message"]);
}

#[tokio::test]
async fn a_json_answer_says_its_block_order_and_the_turn_goes_back_upstream_in_it() {
    let (claude, gw) = claude_answering([interleaved_answer()]).await;

    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.question()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = r.json()["choices"][0]["message"].clone();
    assert_eq!(message["block_order"], interleaved_order(), "{message}");
    // The rest as before: one content string, the thinking blocks and the calls.
    assert_whole(&message);

    // A client that drops the field sends the turn as it always did: the usual order.
    let mut without = message.clone();
    without.as_object_mut().unwrap().remove("block_order");
    claude.push(Fake::anthropic_text("A and B"));
    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.tool_loop(without)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sent_turn(&claude).turn, usual_order());

    // One that appends the message as it got it sends the turn in the order Claude made it.
    claude.push(Fake::anthropic_text("A and B"));
    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.tool_loop(message)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "A and B");
    assert_eq!(sent_turn(&claude).turn, interleaved());
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
    let (claude, gw) = claude_answering([interleaved_stream(), Fake::anthropic_text("A and B")]).await;

    let mut body = Api::ChatCompletions.question();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = Api::ChatCompletions.post(&gw, body).await;
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
    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.tool_loop(message)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sent_turn(&claude).turn, interleaved());
}

#[tokio::test]
async fn a_block_order_that_does_not_fit_its_turn_is_refused_before_any_upstream_call() {
    let (claude, gw) = claude_answering([interleaved_answer()]).await;
    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.question()).await;
    let mut message = r.json()["choices"][0]["message"].clone();
    // One call too many.
    message["block_order"] =
        json!(["thinking", "tool_call", "thinking", {"text": 12}, "tool_call", "tool_call"]);
    let asked = claude.post_requests();

    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.tool_loop(message.clone())).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let error = &r.json()["error"];
    assert_eq!(error["param"], "messages[1].block_order", "{error}");
    assert!(error["message"].as_str().unwrap().contains("tool calls"), "{error}");
    // Not an order at all: named where it is wrong.
    message["block_order"] = json!(["thinking", {"text": "twelve"}]);
    let r = Api::ChatCompletions.post(&gw, Api::ChatCompletions.tool_loop(message)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "messages[1].block_order[1]", "{}", r.text);
    assert_eq!(claude.post_requests(), asked);
}
