//! Request fields and answer details carried end to end, over real HTTP in front of test-kit
//! fakes: the matched stop sequence, failed tool results, `top_k` / `seed` / parallel tool
//! calls, and an answer with no content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

/// An Anthropic `message` that ended on the stop sequence `END`.
fn stopped_on_end(text: &str) -> Fake {
    Fake::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": [{"type": "text", "text": text}],
               "stop_reason": "stop_sequence", "stop_sequence": "END",
               "usage": {"input_tokens": 5, "output_tokens": 2}}),
    )
}

fn sse(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}")
}

/// A tool exchange whose result failed.
fn failed_tool_turns() -> Value {
    json!([
        {"role": "user", "content": "read the file"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
             "content": "ENOENT: no such file"}]}
    ])
}

fn read_tool() -> Value {
    json!([{"name": "read", "description": "reads a file", "input_schema": {"type": "object",
            "properties": {"path": {"type": "string"}}}}])
}

#[tokio::test]
async fn the_matched_stop_sequence_reaches_messages_clients() {
    let fake = FakeServer::start().await;
    fake.push(stopped_on_end("Hello"));
    fake.push(stopped_on_end("Hello"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &fake))])).await;
    let body = json!({"max_tokens": 50, "messages": user("hi"), "stop_sequences": ["END"]});

    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
    assert_eq!(v["stop_sequence"], "END", "{v}");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Hello"}]));

    // OpenAI clients know one word for it.
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("hi"), "stop": "END"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop", "{}", r.text);
}

#[tokio::test]
async fn the_matched_stop_sequence_reaches_streaming_messages_clients() {
    let fake = FakeServer::start().await;
    fake.push(Fake::sse(vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "model": "claude-fake", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        sse("content_block_stop", &json!({"type": "content_block_stop", "index": 0})),
        sse(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                    "usage": {"output_tokens": 2}}),
        ),
        sse("message_stop", &json!({"type": "message_stop"})),
    ]));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &fake))])).await;
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"max_tokens": 50, "messages": user("hi"), "stop_sequences": ["END"], "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let delta = event_data(&r.frames(), "message_delta");
    assert_eq!(delta.len(), 1, "{}", r.text);
    assert_eq!(delta[0]["delta"], json!({"stop_reason": "stop_sequence", "stop_sequence": "END"}));
}

#[tokio::test]
async fn an_openai_stop_is_end_turn_without_a_sequence() {
    // `finish_reason: "stop"` does not say whether a stop sequence matched; the gateway does
    // not guess.
    let fake = FakeServer::start().await;
    fake.push(openai_answer(json!({"role": "assistant", "content": "Hello"}), "stop"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"max_tokens": 50, "messages": user("hi"), "stop_sequences": ["END"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!((v["stop_reason"].as_str(), &v["stop_sequence"]), (Some("end_turn"), &Value::Null));
}

#[tokio::test]
async fn an_answer_with_no_content_is_an_empty_content_list() {
    let fake = FakeServer::start().await;
    fake.push(openai_answer(json!({"role": "assistant", "content": ""}), "length"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(&gw.url, "/v1/messages", json!({"max_tokens": 1, "messages": user("hi")})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["content"], json!([]), "{v}");
    assert_eq!(v["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn a_failed_tool_result_stays_a_failure_upstream() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("The file is missing."));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let body = json!({"max_tokens": 50, "messages": failed_tool_turns(), "tools": read_tool()});
    let r = post(&gw.url, "/v1/messages", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "ENOENT: no such file", "is_error": true})
    );

    // An OpenAI-format upstream has no flag: the failure is said in the text.
    let oa = FakeServer::start().await;
    oa.push(Fake::openai_text("The file is missing."));
    let gw = start(router(vec![openai(openai_settings("oa", &oa))])).await;
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = oa.last_json().unwrap();
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert_eq!(sent["messages"][2]["content"], "Error: ENOENT: no such file");
}

#[tokio::test]
async fn messages_top_k_and_one_call_at_a_time_reach_each_upstream() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("ok"));
    let body = json!({"max_tokens": 50, "messages": user("read /x"), "tools": read_tool(), "top_k": 5,
                      "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}});
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post(&gw.url, "/v1/messages", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["top_k"], 5);
    assert_eq!(sent["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));

    // A self-hosted OpenAI-compatible server (the fake is on loopback) takes both.
    let local = FakeServer::start().await;
    local.push(Fake::openai_text("ok"));
    let gw = start(router(vec![openai(openai_settings("local", &local))])).await;
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = local.last_json().unwrap();
    assert_eq!((sent["top_k"].as_u64(), sent["parallel_tool_calls"].as_bool()), (Some(5), Some(false)));
}

#[tokio::test]
async fn chat_completions_seed_top_k_and_parallel_calls_reach_each_upstream() {
    let tools = json!([{"type": "function", "function": {"name": "read", "parameters": {"type": "object",
                        "properties": {"path": {"type": "string"}}}}}]);
    let body = json!({"messages": user("read /x"), "tools": tools, "seed": 1234, "top_k": 7,
                      "parallel_tool_calls": false});

    let local = FakeServer::start().await;
    local.push(Fake::openai_text("ok"));
    let gw = start(router(vec![openai(openai_settings("local", &local))])).await;
    let r = post(&gw.url, "/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = local.last_json().unwrap();
    assert_eq!(sent["seed"], 1234);
    assert_eq!(sent["top_k"], 7);
    assert_eq!(sent["parallel_tool_calls"], false);

    // A cloud API may refuse a parameter it does not know (OpenAI's does): top_k stays home.
    let cloud = FakeServer::start().await;
    cloud.push(Fake::openai_text("ok"));
    let gw =
        start(router(vec![openai(openai_settings("cloud", &cloud).extra("backend_type", "cloud"))])).await;
    let r = post(&gw.url, "/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = cloud.last_json().unwrap();
    assert!(sent.get("top_k").is_none(), "{sent}");
    assert_eq!((sent["seed"].as_i64(), sent["parallel_tool_calls"].as_bool()), (Some(1234), Some(false)));

    // Anthropic has top_k and the one-call limit, and no seed.
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["top_k"], 7);
    assert!(sent.get("seed").is_none(), "{sent}");
    assert_eq!(sent["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
}

#[tokio::test]
async fn a_mistyped_knob_is_named() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("hi"), "seed": "abc"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "seed", "{}", r.text);
    let r =
        post(&gw.url, "/v1/messages", json!({"max_tokens": 5, "messages": user("hi"), "top_k": -1})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json()["error"]["message"].as_str().map(|m| m.starts_with("top_k")),
        Some(true),
        "{}",
        r.text
    );
    assert_eq!(fake.requests(), 0);
}
