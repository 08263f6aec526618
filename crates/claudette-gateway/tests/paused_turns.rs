//! A turn Anthropic paused (`stop_reason: "pause_turn"`, a long run of server tools such as
//! web searches) over real HTTP, in front of test-kit fakes. An Anthropic-format client sends
//! the turn back itself; an OpenAI-format client cannot, so the gateway does, as Anthropic
//! asks (the turn as it is, after the question), and answers with the whole turn: the text of
//! every part, the citations where they fall in it, the searches and the cost of every call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn message(blocks: Value, stop_reason: &str, searches: u32) -> Fake {
    let usage = json!({"input_tokens": 100, "output_tokens": 10, "server_tool_use": {"web_search_requests": searches}});
    Fake::anthropic_blocks(blocks, stop_reason, usage)
}

/// The searched answer of `tests/common`, paused after the search: its first three blocks,
/// then the rest.
fn paused_then_done() -> (Value, Value) {
    let blocks = searched_blocks();
    let all = blocks.as_array().unwrap();
    (json!(all[..3]), json!(all[3..]))
}

async fn claude_pausing_once() -> (FakeServer, Running, Value) {
    let (first, rest) = paused_then_done();
    let claude = FakeServer::start().await;
    claude.push(message(first.clone(), "pause_turn", 1));
    claude.push(message(rest, "end_turn", 0));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    (claude, gw, first)
}

/// The second call carries the question and the paused turn, whole and verbatim.
fn assert_went_on(claude: &FakeServer, first: &Value) {
    let sent = claude.received();
    assert_eq!(sent.len(), 2);
    let body = sent[1].json();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{body}");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], *first, "{body}");
    assert_eq!(body["tools"], sent[0].json()["tools"]);
}

/// A Chat Completions question asking for a web search.
fn chat_search() -> Value {
    json!({"model": "auto", "messages": user("What is new in Rust?"), "web_search_options": {}})
}

const WHOLE: &str = "I'll look that up — one moment.The 2024 edition shipped with Rust 1.85 in February 2025. \
                     Editions are opt-in per crate.";

#[tokio::test]
async fn chat_completions_get_the_whole_turn_of_a_paused_search() {
    let (claude, gw, first) = claude_pausing_once().await;
    let r = post(&gw.url, "/v1/chat/completions", chat_search()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answer = r.json();
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], WHOLE);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let annotation = &message["annotations"][0]["url_citation"];
    assert_eq!((annotation["start_index"].as_u64(), annotation["end_index"].as_u64()), (Some(31), Some(70)));
    assert_eq!(r.header("x-claudette-attempts"), Some("2"));
    // Both calls, each 100 in / 10 out at $3 / $15 per million, and the one search at $10 per 1,000.
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    let expected = 2.0 * (100.0 * 0.003 + 10.0 * 0.015) / 1000.0 + 0.01;
    assert!((cost - expected).abs() < 1e-9, "{cost} against {expected}");
    assert_eq!(answer["usage"]["prompt_tokens"], 200);
    assert_went_on(&claude, &first);
}

#[tokio::test]
async fn the_responses_api_gets_the_whole_turn_of_a_paused_search() {
    let (claude, gw, first) = claude_pausing_once().await;
    let r = post(
        &gw.url,
        "/v1/responses",
        json!({"model": "auto", "input": "What is new in Rust?", "tools": [{"type": "web_search"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answer = r.json();
    assert_eq!(answer["status"], "completed");
    let kinds: Vec<&str> =
        answer["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "web_search_call", "message", "message", "message"], "{answer}");
    assert_eq!(answer["output"][1]["status"], "completed");
    assert_went_on(&claude, &first);
}

#[tokio::test]
async fn an_anthropic_client_gets_the_pause_and_sends_the_turn_back_itself() {
    let (claude, gw, _) = claude_pausing_once().await;
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"model": "auto", "max_tokens": 1024, "messages": user("What is new in Rust?"),
               "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["stop_reason"], "pause_turn");
    assert_eq!(claude.post_requests(), 1);
}

#[tokio::test]
async fn a_turn_that_keeps_pausing_is_sent_back_three_times_at_most() {
    let (first, _) = paused_then_done();
    let claude = FakeServer::start().await;
    claude.set_default(message(first.clone(), "pause_turn", 1));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post(&gw.url, "/v1/chat/completions", chat_search()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.post_requests(), 4);
    let opening = "I'll look that up — one moment.";
    assert_eq!(r.json()["choices"][0]["message"]["content"], opening.repeat(4));
    // The last call carried the turn so far: four parts, one assistant message.
    let body = claude.received().pop().unwrap().json();
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(body["messages"][1]["content"].as_array().unwrap().len(), 9, "{body}");
}
