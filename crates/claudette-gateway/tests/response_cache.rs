//! The response cache through the gateway, over real HTTP in front of fake providers that
//! count their calls (reliability-spec S-11, F-36): answers are cached per gateway key, a hit
//! says so and costs nothing, `x-claudette-cache` on a request picks the mode, failures are
//! never cached, a hit asked for as a stream is replayed as valid SSE, and a streamed answer is
//! stored once it completes, for the next caller whether it streams or not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use claudette_gateway::{GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;

const KEY_A: &str = "gw-key-response-cache-team-a";
const KEY_B: &str = "gw-key-response-cache-team-b";

/// A gateway with a cache on an OpenAI-shaped fake answering `cached answer` and an
/// Anthropic-shaped one, with two keys when `keys`.
async fn gateway(keys: bool) -> (FakeServer, FakeServer, Running) {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("cached answer"));
    let claude = FakeServer::start().await;
    claude.set_default(Fake::anthropic_text("claude's answer"));
    let r = router(vec![
        openai(priced(openai_settings("oa", &fake), 1.0, 2.0)),
        anthropic(anthropic_settings("claude", &claude)),
    ]);
    r.set_response_cache(Arc::new(MapCache::default())).unwrap();
    let options = if keys {
        GatewayOptions {
            api_keys: vec![KeyEntry::from_plain("team-a", KEY_A), KeyEntry::from_plain("team-b", KEY_B)],
            ..GatewayOptions::default()
        }
    } else {
        GatewayOptions::default()
    };
    (fake, claude, start_with(r, options).await)
}

fn chat() -> serde_json::Value {
    json!({"model": "oa", "messages": user("what is 2+2?")})
}

async fn chat_as(gw: &Running, key: &str, extra: &[(&str, &str)]) -> Reply {
    let auth = format!("Bearer {key}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    post_with(&gw.url, "/v1/chat/completions", chat(), &headers).await
}

/// F-36: the same request from two keys is two upstream calls; the same key again is none,
/// and its answer is the first one, free, with its own request id.
#[tokio::test]
async fn answers_are_cached_per_gateway_key() {
    let (fake, _claude, gw) = gateway(true).await;
    let a = chat_as(&gw, KEY_A, &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-claudette-cache"), Some("miss"));
    let b = chat_as(&gw, KEY_B, &[]).await;
    assert_eq!(b.header("x-claudette-cache"), Some("miss"), "another key's answer must not be served");
    assert_eq!(fake.post_requests(), 2);

    let again = chat_as(&gw, KEY_A, &[]).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(fake.post_requests(), 2, "answered without an upstream call");
    assert_eq!(again.header("x-claudette-cache"), Some("hit"));
    assert_eq!(again.header("x-claudette-cost"), Some("0"));
    assert_eq!(again.header("x-claudette-attempts"), Some("0"));
    assert_eq!(again.header("x-claudette-backend"), Some("oa"));
    assert_eq!(again.header("x-claudette-decision"), Some(";;cache:hit"));
    assert!(again.header("x-claudette-cost-estimated").is_none());
    let (first, hit) = (a.json(), again.json());
    assert_eq!(hit["choices"], first["choices"]);
    assert_eq!(hit["choices"][0]["message"]["content"], "cached answer");
    assert_eq!(hit["usage"], first["usage"]);
    let (id_a, id_hit) = (a.header("x-request-id").unwrap(), again.header("x-request-id").unwrap());
    assert_ne!(id_a, id_hit, "a hit is its own request");
    assert_ne!(a.header("x-claudette-cost"), Some("0"), "the miss was billed");
}

#[tokio::test]
async fn the_request_header_picks_refresh_or_bypass() {
    let (fake, _claude, gw) = gateway(false).await;
    let first = post(&gw.url, "/v1/chat/completions", chat()).await;
    assert_eq!(first.header("x-claudette-cache"), Some("miss"));

    fake.set_default(Fake::openai_text("a newer answer"));
    let bypass =
        post_with(&gw.url, "/v1/chat/completions", chat(), &[("x-claudette-cache", "no-store")]).await;
    assert_eq!((fake.post_requests(), bypass.header("x-claudette-cache")), (2, Some("bypass")));
    assert_eq!(bypass.json()["choices"][0]["message"]["content"], "a newer answer");
    let cached = post(&gw.url, "/v1/chat/completions", chat()).await;
    assert_eq!(cached.json()["choices"][0]["message"]["content"], "cached answer", "no-store stored nothing");
    assert_eq!(fake.post_requests(), 2);

    let fresh =
        post_with(&gw.url, "/v1/chat/completions", chat(), &[("x-claudette-cache", "no-cache")]).await;
    assert_eq!((fake.post_requests(), fresh.header("x-claudette-cache")), (3, Some("miss")));
    let now = post(&gw.url, "/v1/chat/completions", chat()).await;
    assert_eq!(now.header("x-claudette-cache"), Some("hit"));
    assert_eq!(
        now.json()["choices"][0]["message"]["content"],
        "a newer answer",
        "no-cache stored the fresh one"
    );

    let bad = post_with(&gw.url, "/v1/chat/completions", chat(), &[("x-claudette-cache", "sometimes")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("x-claudette-cache"), "{}", bad.text);
    assert_eq!(fake.post_requests(), 3);
}

#[tokio::test]
async fn a_failed_upstream_is_not_cached() {
    let (fake, _claude, gw) = gateway(false).await;
    fake.push(Fake::openai_error(400, "invalid_request_error", None, "nope"));
    let failed = post(&gw.url, "/v1/chat/completions", chat()).await;
    assert_eq!(failed.status, 400, "{}", failed.text);
    assert_eq!(failed.header("x-claudette-cache"), Some("miss"));
    let ok = post(&gw.url, "/v1/chat/completions", chat()).await;
    assert_eq!((ok.status, ok.header("x-claudette-cache")), (200, Some("miss")));
    assert_eq!(fake.post_requests(), 2);
}

/// A stored answer asked for as a stream: valid SSE in the client's protocol, the text whole,
/// the protocol's end, no upstream call, and an exact cost of 0.
#[tokio::test]
async fn a_hit_streams_as_valid_sse() {
    let (fake, claude, gw) = gateway(false).await;
    post(&gw.url, "/v1/chat/completions", chat()).await;
    let mut streamed = chat();
    streamed["stream"] = json!(true);
    let s = post(&gw.url, "/v1/chat/completions", streamed).await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(fake.post_requests(), 1);
    assert!(s.header("content-type").unwrap().starts_with("text/event-stream"));
    assert_eq!((s.header("x-claudette-cache"), s.header("x-claudette-cost")), (Some("hit"), Some("0")));
    assert!(s.header("x-claudette-cost-estimated").is_none());
    let frames = s.frames();
    assert_eq!(openai_text(&frames), "cached answer");
    assert_eq!(frames.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let finish: Vec<_> = frames
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["finish_reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(finish, ["stop"]);

    // The same through the Anthropic protocol, from an answer Claude made.
    let messages = json!({"model": "claude", "max_tokens": 64, "messages": user("hello")});
    let first = post(&gw.url, "/v1/messages", messages.clone()).await;
    assert_eq!((first.status, first.header("x-claudette-cache")), (200, Some("miss")));
    let mut streamed = messages;
    streamed["stream"] = json!(true);
    let s = post(&gw.url, "/v1/messages", streamed).await;
    assert_eq!((s.status, s.header("x-claudette-cache")), (200, Some("hit")), "{}", s.text);
    assert_eq!(claude.post_requests(), 1);
    let frames = s.frames();
    let names: Vec<_> = frames.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert!(names.contains(&"message_delta"), "{names:?}");
    assert_eq!(anthropic_text(&frames), "claude's answer");
}

fn streamed(mut body: serde_json::Value) -> serde_json::Value {
    body["stream"] = json!(true);
    body
}

/// S-11 for chat UIs, which stream: a stream through `/v1/chat/completions` that completes is
/// stored, and the same request after it, as JSON or as a stream, is a hit with the same text
/// and usage and no upstream call.
#[tokio::test]
async fn a_streamed_answer_is_stored() {
    let (fake, _claude, gw) = gateway(false).await;
    fake.push(Fake::openai_stream(&["streamed ", "answer"]));
    let mut with_usage = streamed(chat());
    with_usage["stream_options"] = json!({"include_usage": true});
    let s = post(&gw.url, "/v1/chat/completions", with_usage).await;
    assert_eq!((s.status, s.header("x-claudette-cache")), (200, Some("miss")), "{}", s.text);
    let frames = s.frames();
    assert_eq!(openai_text(&frames), "streamed answer");
    let streamed_usage = frames
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
        .expect("a usage chunk");

    let json = post(&gw.url, "/v1/chat/completions", chat()).await;
    assert_eq!((json.status, json.header("x-claudette-cache")), (200, Some("hit")), "{}", json.text);
    assert_eq!(fake.post_requests(), 1, "answered from the stored stream");
    let body = json.json();
    assert_eq!(body["choices"][0]["message"]["content"], "streamed answer");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"], streamed_usage);
    assert_eq!(json.header("x-claudette-cost"), Some("0"));

    let again = post(&gw.url, "/v1/chat/completions", streamed(chat())).await;
    assert_eq!(again.header("x-claudette-cache"), Some("hit"));
    assert_eq!(openai_text(&again.frames()), "streamed answer");
    assert_eq!(fake.post_requests(), 1);
}

/// The same through `/v1/messages`: a streamed text answer and a streamed tool call are
/// answered from the cache as JSON, as Claude's own JSON answer would carry them.
#[tokio::test]
async fn a_streamed_messages_answer_is_stored() {
    let (_fake, claude, gw) = gateway(false).await;
    claude.push(Fake::anthropic_stream(&["claude's ", "streamed answer"]));
    let messages = json!({"model": "claude", "max_tokens": 64, "messages": user("hello")});
    let s = post(&gw.url, "/v1/messages", streamed(messages.clone())).await;
    assert_eq!((s.status, s.header("x-claudette-cache")), (200, Some("miss")), "{}", s.text);
    assert_eq!(anthropic_text(&s.frames()), "claude's streamed answer");
    let json = post(&gw.url, "/v1/messages", messages).await;
    assert_eq!((json.status, json.header("x-claudette-cache")), (200, Some("hit")), "{}", json.text);
    assert_eq!(claude.post_requests(), 1);
    let body = json.json();
    assert_eq!(body["content"], json!([{"type": "text", "text": "claude's streamed answer"}]));
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["output_tokens"], 2, "the stream's usage");

    claude.push(Fake::anthropic_stream_tool_use("toolu_1", "weather", &["{\"city\": ", "\"Paris\"}"]));
    let tools = json!({
        "model": "claude", "max_tokens": 64, "messages": user("weather in Paris?"),
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
    });
    let s = post(&gw.url, "/v1/messages", streamed(tools.clone())).await;
    assert_eq!((s.status, s.header("x-claudette-cache")), (200, Some("miss")), "{}", s.text);
    let json = post(&gw.url, "/v1/messages", tools).await;
    assert_eq!((json.status, json.header("x-claudette-cache")), (200, Some("hit")), "{}", json.text);
    assert_eq!(claude.post_requests(), 2);
    let body = json.json();
    assert_eq!(
        body["content"],
        json!([{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(body["stop_reason"], "tool_use");
}

/// S-11: a stream that fails after its first content stores nothing; the next one, which
/// completes, is the one stored.
#[tokio::test]
async fn a_failed_stream_is_not_stored() {
    let (fake, _claude, gw) = gateway(false).await;
    fake.push(Fake::openai_stream_error_after(&["half an "]));
    fake.push(Fake::openai_stream(&["whole ", "answer"]));
    let failed = post(&gw.url, "/v1/chat/completions", streamed(chat())).await;
    assert_eq!(failed.status, 200, "{}", failed.text);
    assert!(failed.text.contains("upstream failed"), "{}", failed.text);
    let whole = post(&gw.url, "/v1/chat/completions", streamed(chat())).await;
    assert_eq!(whole.header("x-claudette-cache"), Some("miss"), "the failed stream was stored");
    assert_eq!(openai_text(&whole.frames()), "whole answer");
    let json = post(&gw.url, "/v1/chat/completions", chat()).await;
    assert_eq!(json.header("x-claudette-cache"), Some("hit"));
    assert_eq!(json.json()["choices"][0]["message"]["content"], "whole answer");
    assert_eq!(fake.post_requests(), 2);
}

#[tokio::test]
async fn without_a_cache_answers_say_nothing_about_one() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("hi"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    for _ in 0..2 {
        let r = post(&gw.url, "/v1/chat/completions", chat()).await;
        assert_eq!(r.status, 200);
        assert!(r.header("x-claudette-cache").is_none());
        assert!(!r.header("x-claudette-decision").unwrap().contains("cache"));
    }
    assert_eq!(fake.post_requests(), 2);
}

#[tokio::test]
async fn hits_and_misses_are_counted_for_prometheus() {
    let (_fake, _claude, gw) = gateway(false).await;
    post(&gw.url, "/v1/chat/completions", chat()).await;
    post(&gw.url, "/v1/chat/completions", chat()).await;
    let text = get(&gw.url, "/metrics", &[]).await.text;
    assert!(text.contains("# TYPE claudette_response_cache_total counter"), "{text}");
    for result in ["hit", "miss"] {
        let series = format!("claudette_response_cache_total{{result=\"{result}\"}} ");
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series} in {text}"))
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 1.0, "{series}{n}");
    }
}
