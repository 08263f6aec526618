//! `web_search_options` on `/v1/chat/completions` over real HTTP, in front of test-kit fakes:
//! an OpenAI client asking for a searched answer gets one from Claude's web search (the tool
//! goes upstream after the function tools, with the user's location), its citations as
//! OpenAI's `url_citation` annotations (character offsets into the content) in JSON and in
//! the stream, the search in the cost, and a 400 naming `web_search_options` when no backend
//! can search or the options are malformed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use claudette_core::GroupBy;
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/chat/completions";

const ANSWER: &str = "I'll look that up — one moment.The 2024 edition shipped with Rust 1.85 in February 2025. Editions are opt-in per crate.";

fn searched_answer() -> Fake {
    Fake::json(
        200,
        json!({"id": "msg_search", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": searched_blocks(), "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": 120, "output_tokens": 60,
                         "server_tool_use": {"web_search_requests": 1}}}),
    )
}

fn searched_stream() -> Fake {
    Fake::anthropic_stream_blocks(&searched_blocks(), "end_turn")
}

fn annotation(n: u32, start: usize, end: usize) -> Value {
    json!({"type": "url_citation", "url_citation": {"start_index": start, "end_index": end,
           "url": format!("https://news.example/{n}"), "title": format!("News {n}")}})
}

/// The answer's citations in characters: the cited blocks run from 31 to 70 and 70 to 88.
fn annotations() -> Value {
    json!([annotation(1, 31, 70), annotation(2, 70, 88), annotation(1, 70, 88)])
}

fn function(name: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "description": format!("{name} it"),
           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}})
}

/// A question with two function tools, and `web_search_options` when given.
fn question(options: Option<Value>, stream: bool) -> Value {
    let mut body = json!({"model": "auto", "stream": stream,
        "messages": [{"role": "user", "content": "What is new in Rust?"}],
        "tools": [function("lookup"), function("save")]});
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if let Some(options) = options {
        body["web_search_options"] = options;
    }
    body
}

fn in_paris() -> Value {
    json!({"search_context_size": "low", "user_location": {"type": "approximate",
           "approximate": {"city": "Paris", "country": "FR", "region": "Île-de-France", "timezone": "Europe/Paris"}}})
}

/// The tools the upstream got: each one's `type`, or `name` for a function.
fn upstream_tools(claude: &FakeServer) -> (Vec<String>, Value) {
    let sent = claude.last_json().unwrap();
    let tools = sent.get("tools").cloned().unwrap_or(json!([]));
    let kinds = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.get("type").unwrap_or(&t["name"]).as_str().unwrap().to_owned())
        .collect();
    (kinds, tools)
}

/// The chunks of an OpenAI stream, `[DONE]` left out, and whether it ended with `[DONE]`.
fn chunks(r: &Reply) -> (Vec<Value>, bool) {
    let frames = r.frames();
    let done = frames.last().is_some_and(|(_, d)| d == "[DONE]");
    let chunks = frames.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap());
    (chunks.collect(), done)
}

#[tokio::test]
async fn the_search_goes_upstream_after_the_function_tools_and_a_request_without_it_is_unchanged() {
    let (claude, gw) = claude_answering([searched_answer(), Fake::anthropic_text("Not searched.")]).await;
    let r = post(&gw.url, PATH, question(Some(in_paris()), false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (kinds, tools) = upstream_tools(&claude);
    assert_eq!(kinds, ["lookup", "save", "web_search_20250305"]);
    assert_eq!(
        tools[2],
        json!({"type": "web_search_20250305", "name": "web_search", "user_location": {"type": "approximate",
               "city": "Paris", "region": "Île-de-France", "country": "FR", "timezone": "Europe/Paris"}})
    );

    // Without `web_search_options` (or with it null), only the function tools, and an answer
    // without annotations.
    let mut body = question(None, false);
    body["web_search_options"] = Value::Null;
    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(upstream_tools(&claude).0, ["lookup", "save"]);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Not searched.");
    assert!(!r.text.contains("annotations"), "{}", r.text);
}

#[tokio::test]
async fn a_searched_answer_annotates_its_citations_in_characters() {
    let (claude, gw) = claude_answering([searched_answer()]).await;
    let r = post(&gw.url, PATH, question(Some(json!({})), false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(upstream_tools(&claude).1[2], json!({"type": "web_search_20250305", "name": "web_search"}));
    let answer = r.json();
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], ANSWER, "{answer}");
    assert_eq!(message["annotations"], annotations(), "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    // The offsets are characters of the content a client gets.
    let cited: String = ANSWER.chars().skip(31).take(39).collect();
    assert_eq!(cited, "The 2024 edition shipped with Rust 1.85");
    // Anthropic's own blocks stay out of an OpenAI answer.
    for kind in ["server_tool_use", "web_search_tool_result", "encrypted"] {
        assert!(!r.text.contains(kind), "{kind}: {}", r.text);
    }
}

#[tokio::test]
async fn a_searched_stream_sends_the_annotations_once_before_the_finish_chunk() {
    let (claude, gw) = claude_answering([searched_stream()]).await;
    let r = post(&gw.url, PATH, question(Some(in_paris()), true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(upstream_tools(&claude).0, ["lookup", "save", "web_search_20250305"]);
    let (chunks, done) = chunks(&r);
    assert!(done, "{}", r.text);
    assert_eq!(openai_text(&r.frames()), ANSWER);
    let with: Vec<usize> = (0..chunks.len())
        .filter(|&i| chunks[i]["choices"][0]["delta"].get("annotations").is_some())
        .collect();
    assert_eq!(with.len(), 1, "{}", r.text);
    let at = with[0];
    assert_eq!(chunks[at]["choices"][0]["delta"], json!({"annotations": annotations()}), "{}", r.text);
    assert!(chunks[at]["choices"][0]["finish_reason"].is_null(), "{}", r.text);
    // Then the finish chunk, then the usage chunk (asked for), and nothing else.
    assert_eq!(chunks[at + 1]["choices"][0]["finish_reason"], "stop", "{}", r.text);
    assert_eq!(chunks[at + 1]["choices"][0]["delta"], json!({}), "{}", r.text);
    assert_eq!(chunks[at + 2]["choices"], json!([]), "{}", r.text);
    assert_eq!(chunks.len(), at + 3, "{}", r.text);
    for kind in ["server_tool_use", "web_search_tool_result", "encrypted"] {
        assert!(!r.text.contains(kind), "{kind}: {}", r.text);
    }
}

#[tokio::test]
async fn a_search_goes_to_the_anthropic_backend_beside_a_cheaper_openai_one() {
    let (gpt, claude, gw) = openai_and_claude().await;
    let r = post_with(&gw.url, PATH, question(None, false), &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from gpt", "{}", r.text);

    claude.push(searched_answer());
    let r = post_with(&gw.url, PATH, question(Some(json!({})), false), &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-backend"), Some("claude"));
    assert_eq!(r.json()["choices"][0]["message"]["annotations"], annotations(), "{}", r.text);
    claude.push(searched_stream());
    let r = post_with(&gw.url, PATH, question(Some(json!({})), true), &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-backend"), Some("claude"));
    assert_eq!((gpt.post_requests(), claude.post_requests()), (1, 2));
}

/// Anthropic's $10 per 1,000 searches on top of the tokens: $0.01 for the one search of each
/// answer.
#[tokio::test]
async fn the_cost_counts_the_search() {
    let (_gpt, claude, gw) = openai_and_claude().await;
    claude.push(searched_answer());
    let r = post_with(&gw.url, PATH, question(Some(json!({})), false), &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    // 120 input tokens at $3 and 60 output at $15 per 1,000, and the search.
    let json_cost = 120.0 * 3.0 / 1000.0 + 60.0 * 15.0 / 1000.0 + 0.01;
    assert!((cost - json_cost).abs() < 1e-9, "{cost}");

    claude.push(searched_stream());
    let r = post_with(&gw.url, PATH, question(Some(json!({})), true), &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The test kit's stream: 10 input tokens, one output token a block (six), one search.
    let stream_cost = 10.0 * 3.0 / 1000.0 + 6.0 * 15.0 / 1000.0 + 0.01;
    let mut booked = gw.router.analyze_costs(Duration::from_secs(3600), GroupBy::Backend);
    for _ in 0..200 {
        if booked.total_requests >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        booked = gw.router.analyze_costs(Duration::from_secs(3600), GroupBy::Backend);
    }
    assert_eq!(booked.total_requests, 2, "{booked:?}");
    let claude_cost = booked.breakdown["claude"].cost;
    assert!((claude_cost - (json_cost + stream_cost)).abs() < 1e-9, "{booked:?}");
}

fn assert_refused_for_search(r: &Reply) {
    assert_eq!(r.status, 400, "{}", r.text);
    let e = r.json();
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    assert_eq!(e["error"]["param"], "web_search_options", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`web_search_options`") && message.contains("provider `anthropic`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_search_no_backend_can_run_is_refused_naming_web_search_options() {
    let gpt = FakeServer::start().await;
    gpt.set_default(openai_answer(json!({"role": "assistant", "content": "from gpt"}), "stop"));
    let gw = start(router(vec![openai(openai_settings("gpt", &gpt))])).await;
    for stream in [false, true] {
        let r = post(&gw.url, PATH, question(Some(in_paris()), stream)).await;
        assert_refused_for_search(&r);
    }
    assert_eq!(gpt.post_requests(), 0);
}

#[tokio::test]
async fn a_search_forced_to_an_openai_backend_is_refused_naming_it() {
    let (gpt, claude, gw) = openai_and_claude().await;
    // By backend name, and by the backend's model.
    for (model, stream) in [("gpt", false), ("fake-model", true)] {
        let mut body = question(Some(json!({})), stream);
        body["model"] = json!(model);
        let r = post(&gw.url, PATH, body).await;
        assert_refused_for_search(&r);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("backend `gpt`") && message.contains(model), "{message}");
    }
    assert_eq!((gpt.post_requests(), claude.post_requests()), (0, 0));
    // Forced to Claude, it is served.
    claude.push(searched_answer());
    let mut body = question(Some(json!({})), false);
    body["model"] = json!("claude-fake");
    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["choices"][0]["message"]["annotations"], annotations(), "{}", r.text);
}

#[tokio::test]
async fn malformed_web_search_options_are_refused_naming_the_field() {
    let (claude, gw) = claude_answering([]).await;
    for (options, param) in [
        (json!("yes"), "web_search_options"),
        (json!({"search_context_size": "maximum"}), "web_search_options.search_context_size"),
        (json!({"user_location": ["Paris"]}), "web_search_options.user_location"),
        (
            json!({"user_location": {"type": "precise", "approximate": {}}}),
            "web_search_options.user_location.type",
        ),
        (
            json!({"user_location": {"approximate": {"city": "Paris"}}}),
            "web_search_options.user_location.type",
        ),
        (json!({"user_location": {"type": "approximate"}}), "web_search_options.user_location.approximate"),
        (
            json!({"user_location": {"type": "approximate", "approximate": {"city": ["Paris"]}}}),
            "web_search_options.user_location.approximate.city",
        ),
    ] {
        let r = post(&gw.url, PATH, question(Some(options.clone()), false)).await;
        assert_eq!(r.status, 400, "{options}: {}", r.text);
        let e = r.json();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert_eq!(e["error"]["param"], param, "{options}: {e}");
    }
    assert_eq!(claude.post_requests(), 0);
}
