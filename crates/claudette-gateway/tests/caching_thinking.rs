//! Prompt caching (`cache_control`) and extended thinking carried end to end, over real HTTP
//! in front of test-kit fakes: breakpoints stay where the client put them, thinking blocks
//! and their signatures reach the client and go back upstream, and the thinking knobs reach
//! each upstream in its own words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn sse(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}")
}

#[tokio::test]
async fn cache_breakpoints_reach_anthropic_where_the_client_put_them() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let body = json!({
        "max_tokens": 50,
        "system": [
            {"type": "text", "text": "BIG STATIC PROMPT", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "today is Monday"}
        ],
        "tools": [{"name": "read", "input_schema": {"type": "object"}, "cache_control": eph()}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "read /x"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}, "cache_control": eph()}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "contents", "cache_control": eph()},
                {"type": "text", "text": "summarise"}]}
        ]
    });
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["system"],
        json!([
            {"type": "text", "text": "BIG STATIC PROMPT", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "\ntoday is Monday"}
        ]),
        "{sent}"
    );
    assert_eq!(sent["tools"][0]["cache_control"], eph(), "{sent}");
    assert_eq!(sent["messages"][1]["content"][0]["cache_control"], eph(), "{sent}");
    assert_eq!(
        sent["messages"][2]["content"][0]["content"],
        json!([{"type": "text", "text": "contents", "cache_control": eph()}]),
        "{sent}"
    );
    assert_eq!(sent["messages"][2]["content"][1], json!({"type": "text", "text": "summarise"}));
}

#[tokio::test]
async fn a_fifth_breakpoint_is_refused_naming_it_before_any_upstream_call() {
    let claude = FakeServer::start().await;
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let marked = |t: &str| json!({"type": "text", "text": t, "cache_control": eph()});
    let body = json!({
        "max_tokens": 50,
        "system": [marked("a"), marked("b")],
        "messages": [{"role": "user", "content": [marked("c"), marked("d"), marked("e")]}]
    });
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert!(v["error"]["message"].as_str().unwrap().contains("messages.0.content.2.cache_control"), "{v}");
    assert_eq!(claude.requests(), 0);
}

/// An Anthropic answer that thought (signed and redacted) and then called a tool.
fn thought_then_called() -> Fake {
    Fake::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": [
                   {"type": "thinking", "thinking": "need the file", "signature": "SIG1"},
                   {"type": "redacted_thinking", "data": "OPAQUE"},
                   {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}],
               "stop_reason": "tool_use",
               "usage": {"input_tokens": 5, "output_tokens": 20,
                         "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000}}),
    )
}

#[tokio::test]
async fn thinking_round_trips_through_a_tool_loop() {
    let claude = FakeServer::start().await;
    claude.push(thought_then_called());
    claude.push(Fake::anthropic_text("done"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let tools = json!([{"name": "read", "input_schema": {"type": "object"}}]);
    let thinking = json!({"type": "enabled", "budget_tokens": 2048});
    let first = json!({"max_tokens": 4096, "thinking": thinking, "tools": tools,
                       "messages": user("read /x")});
    let r = post(&gw.url, "/v1/messages", first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.last_json().unwrap()["thinking"], thinking);
    let v = r.json();
    assert_eq!(
        v["content"].as_array().unwrap()[..2],
        [
            json!({"type": "thinking", "thinking": "need the file", "signature": "SIG1"}),
            json!({"type": "redacted_thinking", "data": "OPAQUE"})
        ],
        "{v}"
    );
    assert_eq!(
        (
            &v["usage"]["input_tokens"],
            &v["usage"]["cache_creation_input_tokens"],
            &v["usage"]["cache_read_input_tokens"]
        ),
        (&json!(5), &json!(100), &json!(1000)),
        "{v}"
    );

    // The client sends the turn back as it got it, with the tool's result.
    let second = json!({"max_tokens": 4096, "thinking": thinking, "tools": tools, "messages": [
        {"role": "user", "content": "read /x"},
        {"role": "assistant", "content": v["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]}
    ]});
    let r = post(&gw.url, "/v1/messages", second).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "need the file", "signature": "SIG1"},
            {"type": "redacted_thinking", "data": "OPAQUE"},
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}
        ]),
        "{sent}"
    );
}

#[tokio::test]
async fn streamed_thinking_keeps_its_signature_and_cache_usage() {
    let claude = FakeServer::start().await;
    let usage = json!({"input_tokens": 5, "output_tokens": 1,
                       "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000});
    claude.push(Fake::sse(vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "model": "claude-fake", "content": [], "stop_reason": null,
                "usage": usage}}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ),
        sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta", "signature": "SIG1"}}),
        ),
        sse("content_block_stop", &json!({"type": "content_block_stop", "index": 0})),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "redacted_thinking", "data": "OPAQUE"}}),
        ),
        sse("content_block_stop", &json!({"type": "content_block_stop", "index": 1})),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        ),
        sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        sse("content_block_stop", &json!({"type": "content_block_stop", "index": 2})),
        sse(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 9}}),
        ),
        sse("message_stop", &json!({"type": "message_stop"})),
    ]));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let body = json!({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1024},
                      "messages": user("hi"), "stream": true});
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let frames = r.frames();
    let start = event_data(&frames, "message_start");
    assert_eq!(start[0]["message"]["usage"]["cache_read_input_tokens"], 1000, "{}", r.text);
    assert_eq!(start[0]["message"]["usage"]["cache_creation_input_tokens"], 100, "{}", r.text);
    let blocks = event_data(&frames, "content_block_start");
    assert_eq!(blocks[0]["content_block"]["type"], "thinking", "{}", r.text);
    assert_eq!(
        blocks[1]["content_block"],
        json!({"type": "redacted_thinking", "data": "OPAQUE"}),
        "{}",
        r.text
    );
    assert_eq!(blocks[2]["content_block"]["type"], "text", "{}", r.text);
    let deltas = event_data(&frames, "content_block_delta");
    assert_eq!(
        deltas[1],
        json!({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "SIG1"}}),
        "{}",
        r.text
    );
    let end = event_data(&frames, "message_delta");
    assert_eq!(end[0]["usage"]["cache_read_input_tokens"], 1000, "{}", r.text);
    assert_eq!(end[0]["usage"]["output_tokens"], 9, "{}", r.text);
}

#[tokio::test]
async fn thinking_knobs_reach_each_upstream_in_its_own_words() {
    // An OpenAI-format client's effort becomes Anthropic's budget…
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let body = json!({"messages": user("hi"), "max_tokens": 16000, "reasoning_effort": "medium"});
    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.last_json().unwrap()["thinking"], json!({"type": "enabled", "budget_tokens": 8192}));

    // …and an Anthropic client's budget an OpenAI-format server's effort.
    let oa = FakeServer::start().await;
    oa.push(Fake::openai_text("ok"));
    oa.push(Fake::openai_text("ok"));
    let gw = start(router(vec![openai(openai_settings("oa", &oa))])).await;
    let body = json!({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2000},
                      "messages": user("hi")});
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(oa.last_json().unwrap()["reasoning_effort"], "medium");
    let r =
        post(&gw.url, "/v1/chat/completions", json!({"messages": user("hi"), "reasoning_effort": "high"}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(oa.last_json().unwrap()["reasoning_effort"], "high");

    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("hi"), "reasoning_effort": "max"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "reasoning_effort", "{}", r.text);
}

#[tokio::test]
async fn openai_cached_tokens_reach_chat_completions_clients() {
    let oa = FakeServer::start().await;
    oa.push(Fake::json(
        200,
        json!({"id": "c1", "object": "chat.completion", "model": "gpt-fake",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1200, "completion_tokens": 3, "total_tokens": 1203,
                         "prompt_tokens_details": {"cached_tokens": 1024}}}),
    ));
    let gw = start(router(vec![openai(openai_settings("oa", &oa))])).await;
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("hi")})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["usage"]["prompt_tokens_details"]["cached_tokens"], 1024, "{}", r.text);
}
