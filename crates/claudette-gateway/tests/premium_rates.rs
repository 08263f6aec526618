//! Anthropic's premium rates through `/v1/messages` over real HTTP, in front of test-kit fakes.
//! Claude Code's `/fast` sends `speed: "fast"` with the `fast-mode-…` flag: Anthropic gets
//! both, and an answer it says it served fast (`usage.speed`) is billed at 6× and tells the
//! client so. A prompt over 200,000 input tokens (the million-token context's
//! `context-1m-…` flag) is billed at 2× input and 1.5× output, cache reads counted in; both
//! premiums stack. Another provider serves `speed` without it, at its own price.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/messages";

/// `claude-fake` is priced like a Sonnet: $3 / $15 per million, cache reads $0.30.
const INPUT: f64 = 0.003;
const OUTPUT: f64 = 0.015;
const CACHE_READ: f64 = 0.0003;

fn fast_request(stream: bool) -> Value {
    json!({"model": "auto", "max_tokens": 4096, "stream": stream, "speed": "fast",
           "messages": [{"role": "user", "content": "Refactor this module"}]})
}

const FAST_FLAG: [(&str, &str); 1] = [("anthropic-beta", "fast-mode-2026-02-01")];

fn answer(usage: Value) -> Fake {
    Fake::anthropic_blocks(json!([{"type": "text", "text": "Done."}]), "end_turn", usage)
}

/// A stream whose `message_start` says fast mode and whose `message_delta` has the final
/// output count only, as Anthropic sends them.
fn fast_stream(input: u32, output: u32) -> Fake {
    let frame = |event: &str, data: Value| format!("event: {event}\ndata: {data}");
    Fake::sse(vec![
        frame(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant",
                   "model": "claude-fake", "content": [], "stop_reason": null, "stop_sequence": null,
                   "usage": {"input_tokens": input, "output_tokens": 1, "speed": "fast"}}}),
        ),
        frame(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        frame(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Done."}}),
        ),
        frame("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        frame(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"output_tokens": output}}),
        ),
        frame("message_stop", json!({"type": "message_stop"})),
    ])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn fast_mode_reaches_anthropic_and_its_answer_is_billed_at_six_times() {
    let claude = FakeServer::start().await;
    claude.push(answer(json!({"input_tokens": 1000, "output_tokens": 2000, "speed": "fast"})));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post_with(&gw.url, PATH, fast_request(false), &FAST_FLAG).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let up = claude.received().pop().unwrap();
    assert_eq!(up.json()["speed"], "fast");
    assert_eq!(up.header("anthropic-beta"), Some("fast-mode-2026-02-01"));
    assert_eq!(r.json()["usage"]["speed"], "fast", "{}", r.text);
    let expected = (1000.0 * INPUT + 2000.0 * OUTPUT) / 1000.0 * 6.0;
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    assert!(close(cost, expected), "{cost} against {expected}");
    assert!(close(gw.router.performance_metrics("claude").unwrap().total_cost, expected));

    // Served at standard speed after all (Anthropic may): the standard price, no `speed`.
    claude.push(answer(json!({"input_tokens": 1000, "output_tokens": 2000, "speed": "standard"})));
    let r = post_with(&gw.url, PATH, fast_request(false), &FAST_FLAG).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["usage"].get("speed").is_none(), "{}", r.text);
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    assert!(close(cost, expected / 6.0), "{cost}");
}

#[tokio::test]
async fn a_fast_stream_is_billed_at_six_times_and_says_so() {
    let claude = FakeServer::start().await;
    claude.push(fast_stream(1000, 2000));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post_with(&gw.url, PATH, fast_request(true), &FAST_FLAG).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.received().pop().unwrap().json()["speed"], "fast");
    let frames = r.frames();
    let data = |event: &str| -> Value {
        let (_, d) = frames.iter().find(|(e, _)| e.as_deref() == Some(event)).unwrap();
        serde_json::from_str(d).unwrap()
    };
    assert_eq!(data("message_start")["message"]["usage"]["speed"], "fast", "{}", r.text);
    assert_eq!(data("message_delta")["usage"]["speed"], "fast", "{}", r.text);
    let expected = (1000.0 * INPUT + 2000.0 * OUTPUT) / 1000.0 * 6.0;
    let booked = gw.router.performance_metrics("claude").unwrap().total_cost;
    assert!(close(booked, expected), "{booked} against {expected}");
}

#[tokio::test]
async fn a_prompt_over_200k_tokens_is_billed_at_the_long_context_rates_and_stacks_with_fast_mode() {
    let claude = FakeServer::start().await;
    // 150,000 fresh and 60,000 cached: 210,000 input tokens in all.
    let long = json!({"input_tokens": 150_000, "cache_read_input_tokens": 60_000,
                      "cache_creation_input_tokens": 0, "output_tokens": 1000});
    claude.push(answer(long.clone()));
    let mut fast_long = long.clone();
    fast_long["speed"] = json!("fast");
    claude.push(answer(fast_long));
    // Exactly at the threshold: the plain rates.
    claude.push(answer(json!({"input_tokens": 200_000, "output_tokens": 1000})));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let flags = [("anthropic-beta", "context-1m-2025-08-07,fast-mode-2026-02-01")];
    let body = json!({"model": "auto", "max_tokens": 4096, "messages": [{"role": "user", "content": "A long read"}]});

    let long_cost = ((150_000.0 * INPUT + 60_000.0 * CACHE_READ) * 2.0 + 1000.0 * OUTPUT * 1.5) / 1000.0;
    let mut fast_body = body.clone();
    fast_body["speed"] = json!("fast");
    for (body, expected) in [
        (body.clone(), long_cost),
        (fast_body, long_cost * 6.0),
        (body, (200_000.0 * INPUT + 1000.0 * OUTPUT) / 1000.0),
    ] {
        let r = post_with(&gw.url, PATH, body, &flags).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
        assert!(close(cost, expected), "{cost} against {expected}");
        assert_eq!(
            claude.received().pop().unwrap().header("anthropic-beta"),
            Some("context-1m-2025-08-07,fast-mode-2026-02-01")
        );
    }
}

#[tokio::test]
async fn another_provider_serves_a_fast_request_without_speed_at_its_own_price() {
    let gpt = FakeServer::start().await;
    gpt.set_default(Fake::openai_text_usage("from gpt", 1000, 2000));
    let gw = start(router(vec![openai(priced(openai_settings("gpt", &gpt), 0.001, 0.002))])).await;
    let r = post_with(&gw.url, PATH, fast_request(false), &FAST_FLAG).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(gpt.last_json().unwrap().get("speed").is_none());
    assert!(r.json()["usage"].get("speed").is_none(), "{}", r.text);
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    assert!(close(cost, (1000.0 * 0.001 + 2000.0 * 0.002) / 1000.0), "{cost}");
}
