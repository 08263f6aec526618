//! Fault rows (reliability-spec F-04, F-06, F-17, F-20, F-21, F-22, F-23, F-27, F-32) and the
//! security items (S-01..S-03, S-07..S-10) over real HTTP, plus graceful shutdown and the
//! canary-key log check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudette_core::{BackendRouter, BackendSettings, BreakerState, FakeClock};
use claudette_gateway::{Gateway, GatewayError, GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

fn oa_chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    format!(
        "data: {}",
        json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    )
}

fn an_event(name: &str, data: serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}")
}

fn an_head() -> Vec<String> {
    vec![
        an_event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_x", "type": "message", "role": "assistant",
                "content": [], "model": "claude-fake", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        an_event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ]
}

fn an_text(t: &str) -> String {
    an_event(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
    )
}

fn last_openai_error(r: &Reply) -> serde_json::Value {
    let frames = r.frames();
    let (_, data) = frames.last().expect("frames");
    let v: serde_json::Value =
        serde_json::from_str(data).unwrap_or_else(|_| panic!("last frame not JSON: {}", r.text));
    assert!(v.get("error").is_some(), "stream must end with an error frame: {}", r.text);
    v
}

fn stream_body(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": user("go"), "stream": true})
}

// ------------------------------------------------------------------------------------------
// F-04: trickle stream, gap > idle timeout.

#[tokio::test]
async fn f04_idle_gap_before_commit_fails_over_invisibly() {
    let slow = FakeServer::start().await;
    let fast = FakeServer::start().await;
    // The role chunk arrives, then silence longer than the idle timeout before any content.
    slow.push(Fake::openai_stream(&["never", "seen"]).gap(Duration::from_millis(800)));
    fast.push(Fake::openai_stream(&["on ", "time"]));
    let r = router(vec![
        openai(with_idle(openai_settings("slow", &slow), Duration::from_millis(250))),
        openai(openai_settings("fast", &fast)),
    ]);
    r.set_failover_chain(["slow", "fast"]).unwrap();
    let gw = start(r).await;
    let resp = post(&gw.url, "/v1/chat/completions", stream_body("auto")).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(openai_text(&resp.frames()), "on time");
    assert!(!resp.text.contains("never"));
    assert!(resp.text.ends_with("data: [DONE]\n\n"));
    assert_eq!(resp.header("x-claudette-backend"), Some("fast"));
    assert_eq!(resp.header("x-claudette-attempts"), Some("2"));
    assert!(resp.header("x-claudette-decision").unwrap().contains("slow:error(timeout)"));
}

#[tokio::test]
async fn f04_idle_gap_after_commit_ends_with_an_error_in_the_clients_protocol() {
    let slow = FakeServer::start().await;
    let spare = FakeServer::start().await;
    let first = format!(
        "{}\n\n{}\n\n",
        oa_chunk(json!({"role": "assistant", "content": ""}), None),
        oa_chunk(json!({"content": "partial"}), None)
    );
    let rest = format!("{}\n\ndata: [DONE]\n\n", oa_chunk(json!({"content": "late"}), None));
    slow.push(
        Fake::chunks(200, "text/event-stream", vec![first.into_bytes(), rest.into_bytes()])
            .gap(Duration::from_millis(800)),
    );
    let r = router(vec![
        openai(with_idle(openai_settings("slow", &slow), Duration::from_millis(250))),
        openai(openai_settings("spare", &spare)),
    ]);
    r.set_failover_chain(["slow", "spare"]).unwrap();
    let gw = start(r).await;
    let resp = post(&gw.url, "/v1/chat/completions", stream_body("auto")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(openai_text(&resp.frames()), "partial");
    assert!(!resp.text.contains("data: [DONE]"), "{}", resp.text);
    let err = last_openai_error(&resp);
    assert_eq!(err["error"]["code"], "timeout", "{err}");
    assert_eq!(spare.post_requests(), 0, "no failover after commit (RT-8)");
}

// ------------------------------------------------------------------------------------------
// F-06: upstream cut after k events.

#[tokio::test]
async fn f06_cut_after_k_events_gives_k_events_and_an_error() {
    let cut = FakeServer::start().await;
    let spare = FakeServer::start().await;
    // message_start, content_block_start, ping, "a", "b" — then the connection is aborted.
    cut.push(Fake::anthropic_stream(&["a", "b", "c", "d"]).cut_after(5));
    let oa_cut = FakeServer::start().await;
    // role, "x", "y" — then aborted.
    oa_cut.push(Fake::openai_stream(&["x", "y", "z"]).cut_after(3));
    let r = router(vec![
        anthropic(anthropic_settings("cut", &cut)),
        openai(openai_settings("oa-cut", &oa_cut)),
        openai(openai_settings("spare", &spare)),
    ]);
    r.set_failover_chain(["cut", "oa-cut", "spare"]).unwrap();
    let gw = start(r).await;

    let resp = post(
        &gw.url,
        "/v1/messages",
        json!({"model": "auto", "max_tokens": 10, "messages": user("go"), "stream": true}),
    )
    .await;
    assert_eq!(resp.status, 200);
    let frames = resp.frames();
    assert_eq!(anthropic_text(&frames), "ab");
    let (name, data) = frames.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{}", resp.text);
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string());
    assert!(frames.iter().all(|(n, _)| n.as_deref() != Some("message_stop")));

    let resp = post(&gw.url, "/v1/chat/completions", stream_body("oa-cut")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(openai_text(&resp.frames()), "xy");
    assert!(!resp.text.contains("data: [DONE]"));
    assert_eq!(last_openai_error(&resp)["error"]["code"], "stream_interrupted");
    assert_eq!(spare.post_requests(), 0);
}

// ------------------------------------------------------------------------------------------
// F-17: a stream that ends without its end marker.

#[tokio::test]
async fn f17_missing_end_marker_is_an_error_not_a_success() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_stream_no_done(&["a", "b"]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let resp = post(&gw.url, "/v1/chat/completions", stream_body("auto")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(openai_text(&resp.frames()), "ab");
    assert!(!resp.text.contains("data: [DONE]"));
    last_openai_error(&resp);
}

#[tokio::test]
async fn f17_anthropic_stream_without_message_stop() {
    let fake = FakeServer::start().await;
    let mut frames = an_head();
    frames.push(an_text("c"));
    frames.push(an_event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    fake.push(Fake::sse(frames));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;
    let resp =
        post(&gw.url, "/v1/messages", json!({"max_tokens": 5, "messages": user("go"), "stream": true})).await;
    assert_eq!(resp.status, 200);
    let frames = resp.frames();
    assert_eq!(anthropic_text(&frames), "c");
    assert_eq!(frames.last().unwrap().0.as_deref(), Some("error"), "{}", resp.text);
    assert!(frames.iter().all(|(n, _)| n.as_deref() != Some("message_stop")));
}

// ------------------------------------------------------------------------------------------
// F-20: a 10 MiB SSE line.

#[tokio::test]
async fn f20_huge_upstream_line_is_a_client_visible_error() {
    let fake = FakeServer::start().await;
    let huge = format!("data: {}", "x".repeat(10 << 20));
    // Before commit: nothing reached the client, so it gets an HTTP error.
    fake.push(Fake::sse(vec![huge.clone()]));
    // After commit: content, then the huge line.
    fake.push(Fake::sse(vec![oa_chunk(json!({"role": "assistant", "content": "ok"}), None), huge]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let resp = post(&gw.url, "/v1/chat/completions", stream_body("auto")).await;
    assert!(resp.status >= 500, "{} {}", resp.status, resp.text);
    assert!(resp.json()["error"]["message"].is_string());
    let resp = post(&gw.url, "/v1/chat/completions", stream_body("auto")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(openai_text(&resp.frames()), "ok");
    assert!(resp.text.len() < 1 << 20, "the huge line is never relayed");
    last_openai_error(&resp);
}

// ------------------------------------------------------------------------------------------
// F-21: request body over the limit.

#[tokio::test]
async fn f21_oversized_bodies_get_413_before_any_upstream_call() {
    let fake = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &fake))]);
    let gw = start(r.clone()).await;
    let big = "y".repeat(11 << 20);
    let body = json!({"model": "auto", "messages": user(&big)}).to_string();
    let resp = collect(
        client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 413, "{}", resp.text);
    assert_eq!(resp.json()["error"]["code"], "request_too_large");
    // Chunked, no length announced: the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.into_bytes().chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let resp = collect(
        client()
            .post(format!("{}/v1/messages", gw.url))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["error"]["type"], "request_too_large");
    assert_eq!(fake.requests(), 0);
    assert_eq!(r.analyze_costs(Duration::from_secs(3600), Default::default()).total_requests, 0);
}

// ------------------------------------------------------------------------------------------
// F-22: client disconnect mid-stream.

/// A one-connection OpenAI-style upstream that sends a role and a content chunk, then one
/// more chunk every 10 s, and reports when the gateway closes the connection.
async fn slow_upstream() -> (String, oneshot::Receiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        // Headers, then the announced body.
        let header_end = loop {
            let n = sock.read(&mut tmp).await.unwrap();
            assert!(n > 0, "gateway closed before sending a request");
            buf.extend_from_slice(&tmp[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        while buf.len() < header_end + len {
            let n = sock.read(&mut tmp).await.unwrap();
            buf.extend_from_slice(&tmp[..n]);
        }
        let chunk = |s: String| format!("{:x}\r\n{s}\r\n", s.len());
        let first = format!(
            "{}\n\n{}\n\n",
            oa_chunk(json!({"role": "assistant", "content": ""}), None),
            oa_chunk(json!({"content": "first"}), None)
        );
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(format!("{head}{}", chunk(first)).as_bytes()).await.unwrap();
        loop {
            tokio::select! {
                n = sock.read(&mut tmp) => {
                    if matches!(n, Ok(0) | Err(_)) {
                        let _ = tx.send(Instant::now());
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(10)) => {
                    let more = format!("{}\n\n", oa_chunk(json!({"content": "more"}), None));
                    if sock.write_all(chunk(more).as_bytes()).await.is_err() {
                        let _ = tx.send(Instant::now());
                        return;
                    }
                }
            }
        }
    });
    (url, rx)
}

#[tokio::test]
async fn f22_client_disconnect_cancels_upstream_and_leaves_the_breaker_alone() {
    let (url, closed) = slow_upstream().await;
    let other = FakeServer::start().await;
    let r = router(vec![
        openai(BackendSettings::new("slow").base_url(url).model("fake-model").api_key(UPSTREAM_KEY)),
        openai(openai_settings("other", &other)),
    ]);
    let before = r.breaker("slow").unwrap().snapshot();
    // One permit: the second request below only passes if the abandoned stream released it.
    let gw = start_with(r.clone(), GatewayOptions { max_concurrency: 1, ..GatewayOptions::default() }).await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .body(stream_body("slow").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("first") {
        let c = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&c));
    }
    let dropped = Instant::now();
    drop(resp);
    let closed_at = tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .expect("upstream still open 3 s after the client left (RT-9 wants ≤ 1 s)")
        .unwrap();
    println!("upstream closed {:?} after the client left", closed_at.saturating_duration_since(dropped));

    let after = r.breaker("slow").unwrap().snapshot();
    assert_eq!(after.state, BreakerState::Closed);
    assert_eq!(after.consecutive_failures, 0);
    assert_eq!(after.window_failures, before.window_failures);
    assert_eq!(after.counters, before.counters);
    assert_eq!(r.performance_metrics("slow").unwrap().failures, 0);

    let next = post(&gw.url, "/v1/chat/completions", json!({"model": "other", "messages": user("x")})).await;
    assert_eq!(next.status, 200, "{}", next.text);
}

// ------------------------------------------------------------------------------------------
// F-23: bad client input is answered locally.

#[tokio::test]
async fn f23_bad_client_input_never_reaches_upstream() {
    let fake = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &fake))]);
    let before = r.breaker("oa").unwrap().snapshot();
    let gw = start(r.clone()).await;
    let raw = |path: &'static str, body: &'static str| {
        let url = format!("{}{path}", gw.url);
        async move {
            collect(
                client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let malformed = raw("/v1/chat/completions", "{\"messages\": [").await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["type"], "invalid_request_error");
    assert_eq!(malformed.header("x-claudette-attempts"), Some("0"));
    let malformed = raw("/v1/messages", "not json").await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["type"], "invalid_request_error");
    let missing = post(&gw.url, "/v1/chat/completions", json!({"model": "auto"})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"]["param"], "messages");
    let missing = post(&gw.url, "/v1/messages", json!({"model": "auto", "max_tokens": 5})).await;
    assert_eq!(missing.status, 400);
    let unknown =
        post(&gw.url, "/v1/chat/completions", json!({"model": "no-such-model", "messages": user("x")})).await;
    assert_eq!(unknown.status, 404);
    let wrong_type = post(&gw.url, "/v1/chat/completions", json!({"messages": "hello"})).await;
    assert_eq!(wrong_type.status, 400);
    assert_eq!(fake.requests(), 0);
    let after = r.breaker("oa").unwrap().snapshot();
    assert_eq!((after.state, after.counters), (before.state, before.counters));
}

// ------------------------------------------------------------------------------------------
// F-27: redirects are not followed.

#[tokio::test]
async fn f27_upstream_redirect_to_metadata_address_is_not_followed() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::raw(307, "").header("location", "http://169.254.169.254/latest/meta-data/"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let resp = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
    assert_eq!(resp.status, 502, "{}", resp.text);
    assert!(resp.header("location").is_none());
    assert!(resp.json()["error"]["message"].as_str().unwrap().contains("redirect"), "{}", resp.text);
    assert!(fake.received().iter().all(|r| r.path == "/v1/chat/completions"));
}

// ------------------------------------------------------------------------------------------
// F-32: every backend open → immediate 503 + Retry-After; every backend throttled → 429.

#[tokio::test]
async fn f32_all_backends_open_answers_503_with_retry_after_at_once() {
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    for f in [&a, &b] {
        f.set_default(Fake::openai_error(500, "server_error", None, "down"));
    }
    let clock = FakeClock::new();
    let r = Arc::new(BackendRouter::with_clock(fast_options(), clock.shared()));
    r.register_backend(openai(openai_settings("f32-a", &a))).unwrap();
    r.register_backend(openai(openai_settings("f32-b", &b))).unwrap();
    for _ in 0..10 {
        let open = ["f32-a", "f32-b"].iter().all(|n| r.breaker(n).unwrap().state() == BreakerState::Open);
        if open {
            break;
        }
        let _ = r.route_request(&claudette_core::ChatRequest::prompt("x")).await;
    }
    assert!(["f32-a", "f32-b"].iter().all(|n| r.breaker(n).unwrap().state() == BreakerState::Open));
    let gw = start(r.clone()).await;
    let upstream = a.requests() + b.requests();
    let resp = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
    assert_eq!(resp.status, 503, "{}", resp.text);
    let retry: u64 = resp.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=12).contains(&retry), "retry-after {retry}");
    assert_eq!(resp.json()["error"]["code"], "circuit_open");
    assert_eq!(resp.header("x-claudette-attempts"), Some("0"));
    let resp = post(&gw.url, "/v1/messages", json!({"max_tokens": 5, "messages": user("x")})).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"]["type"], "overloaded_error");
    assert!(resp.header("retry-after").is_some());
    assert_eq!(a.requests() + b.requests(), upstream, "no upstream traffic while everything is open");
    assert_eq!(get(&gw.url, "/ready", &[]).await.status, 503);
    let metrics = get(&gw.url, "/metrics", &[]).await.text;
    assert!(metrics.contains(r#"claudette_breaker_state{backend="f32-a"} 2"#), "{metrics}");
}

#[tokio::test]
async fn f32_all_backends_throttled_answers_429_with_retry_after() {
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    for f in [&a, &b] {
        f.set_default(
            Fake::openai_error(429, "requests", Some("rate_limit_exceeded"), "slow down")
                .header("retry-after", "30"),
        );
    }
    let clock = FakeClock::new();
    let mut options = fast_options();
    options.retry.max_hint = Duration::from_secs(1); // a 30 s hint is not slept on
    let r = Arc::new(BackendRouter::with_clock(options, clock.shared()));
    r.register_backend(anthropic(anthropic_settings("t-a", &a))).unwrap();
    r.register_backend(openai(openai_settings("t-b", &b))).unwrap();
    let gw = start(r).await;
    let first = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
    assert_eq!(first.status, 429, "{}", first.text);
    assert_eq!(first.header("retry-after"), Some("30"));
    let upstream = a.requests() + b.requests();
    let resp = post(&gw.url, "/v1/messages", json!({"max_tokens": 5, "messages": user("x")})).await;
    assert_eq!(resp.status, 429, "{}", resp.text);
    assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
    assert_eq!(resp.header("retry-after"), Some("30"));
    assert_eq!(a.requests() + b.requests(), upstream);
}

#[tokio::test]
async fn an_absurd_upstream_retry_after_is_capped_not_a_panic() {
    let a = FakeServer::start().await;
    a.set_default(
        Fake::openai_error(429, "requests", Some("rate_limit_exceeded"), "slow down")
            .header("retry-after", "1e30"),
    );
    let gw = start(router(vec![openai(openai_settings("oa", &a))])).await;
    for _ in 0..2 {
        let resp = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
        assert_eq!(resp.status, 429, "{}", resp.text);
        // The breaker holds a throttle for at most `max_throttle` (300 s by default).
        assert_eq!(resp.header("retry-after"), Some("300"));
    }
    assert_eq!(a.requests(), 1, "the second request is refused without an upstream call");
}

// ------------------------------------------------------------------------------------------
// Security: authentication (S-07), exposure (S-08), credentials never forwarded (S-08).

const GW_KEY: &str = "cgw-canary-right-4d1f";
const WRONG_KEY: &str = "cgw-canary-wrong-9e2a";

#[tokio::test]
async fn auth_requires_a_configured_key_on_everything_but_health() {
    let oa = FakeServer::start().await;
    let cl = FakeServer::start().await;
    cl.set_default(Fake::anthropic_text("hi"));
    let r = router(vec![openai(openai_settings("oa", &oa)), anthropic(anthropic_settings("cl", &cl))]);
    let options =
        GatewayOptions { api_keys: vec![KeyEntry::from_plain("team", GW_KEY)], ..GatewayOptions::default() };
    let gw = start_with(r, options).await;
    let chat = json!({"model": "oa", "messages": user("x")});

    let none = post(&gw.url, "/v1/chat/completions", chat.clone()).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "invalid_api_key");
    let wrong = post_with(
        &gw.url,
        "/v1/chat/completions",
        chat.clone(),
        &[("authorization", &format!("Bearer {WRONG_KEY}"))],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.text.contains(WRONG_KEY) && !wrong.text.contains("canary"), "{}", wrong.text);
    let wrong = post_with(
        &gw.url,
        "/v1/messages",
        json!({"max_tokens": 5, "messages": user("x")}),
        &[("x-api-key", WRONG_KEY)],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["type"], "authentication_error");
    assert!(!wrong.text.contains("canary"));
    let simple = post(&gw.url, "/api/chat", json!({"message": "x"})).await;
    assert_eq!(simple.status, 401);
    assert!(simple.json()["error"].is_string());

    let ok =
        post_with(&gw.url, "/v1/chat/completions", chat, &[("authorization", &format!("Bearer {GW_KEY}"))])
            .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let ok = post_with(
        &gw.url,
        "/v1/messages",
        json!({"model": "cl", "max_tokens": 5, "messages": user("x")}),
        &[("x-api-key", GW_KEY)],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    assert_eq!(get(&gw.url, "/health", &[]).await.status, 200);
    for path in ["/ready", "/metrics", "/v1/models", "/v1/backends", "/v1/costs"] {
        assert_eq!(get(&gw.url, path, &[]).await.status, 401, "{path}");
        assert_eq!(get(&gw.url, path, &[("x-api-key", GW_KEY)]).await.status, 200, "{path}");
    }

    // Upstreams saw the backends' own credentials, never the client's.
    let oa_req = &oa.received()[0];
    assert_eq!(oa_req.header("authorization"), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
    let cl_req = &cl.received()[0];
    assert_eq!(cl_req.header("x-api-key"), Some(UPSTREAM_KEY));
    for req in oa.received().iter().chain(cl.received().iter()) {
        for (name, value) in &req.headers {
            assert!(!value.contains(GW_KEY), "client key forwarded upstream in `{name}`");
        }
        assert!(!req.text().contains(GW_KEY));
    }
}

#[tokio::test]
async fn non_loopback_without_keys_is_refused_at_build_and_at_serve() {
    let r = router(Vec::new());
    let open = GatewayOptions { listen: "0.0.0.0:8080".parse().unwrap(), ..GatewayOptions::default() };
    assert!(matches!(Gateway::new(r.clone(), open), Err(GatewayError::UnauthenticatedNonLoopback { .. })));
    // A listener bound elsewhere is checked too.
    let gateway = Gateway::new(r, GatewayOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = gateway.serve(listener, std::future::pending()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn concurrency_limit_sheds_load_with_503_and_retry_after() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text("slow").delay(Duration::from_millis(600)));
    let r = router(vec![openai(openai_settings("oa", &fake))]);
    let gw = start_with(r, GatewayOptions { max_concurrency: 1, ..GatewayOptions::default() }).await;
    let url = gw.url.clone();
    let first =
        tokio::spawn(async move { post(&url, "/v1/chat/completions", json!({"messages": user("x")})).await });
    while fake.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shed = post(&gw.url, "/v1/chat/completions", json!({"messages": user("y")})).await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.json()["error"]["code"], "overloaded");
    assert_eq!(get(&gw.url, "/health", &[]).await.status, 200, "operator endpoints are not limited");
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(fake.post_requests(), 1);
}

// ------------------------------------------------------------------------------------------
// Graceful shutdown.

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    graceful_shutdown_with(0).await;
}

#[tokio::test]
async fn graceful_shutdown_with_serving_threads_finishes_in_flight_requests() {
    graceful_shutdown_with(2).await;
}

async fn graceful_shutdown_with(workers: usize) {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text("finished anyway").delay(Duration::from_millis(400)));
    let options = GatewayOptions { workers, ..GatewayOptions::default() };
    let mut gw = start_with(router(vec![openai(openai_settings("oa", &fake))]), options).await;
    let url = gw.url.clone();
    let in_flight =
        tokio::spawn(async move { post(&url, "/v1/chat/completions", json!({"messages": user("x")})).await });
    while fake.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let serve = gw.shutdown();
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(gw.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(refused, "new connections must be refused once shutdown began");
    let resp = in_flight.await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["choices"][0]["message"]["content"], "finished anyway");
    serve.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait_for_stuck_requests() {
    shutdown_grace_with(0).await;
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait_with_serving_threads_too() {
    shutdown_grace_with(2).await;
}

async fn shutdown_grace_with(workers: usize) {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text("never").hang());
    let options =
        GatewayOptions { shutdown_grace: Duration::from_millis(200), workers, ..GatewayOptions::default() };
    let mut gw = start_with(router(vec![openai(openai_settings("oa", &fake))]), options).await;
    let url = gw.url.clone();
    let stuck = tokio::spawn(async move {
        client()
            .post(format!("{url}/v1/chat/completions"))
            .body(json!({"messages": user("x")}).to_string())
            .send()
            .await
    });
    while fake.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let serve = gw.shutdown();
    tokio::time::timeout(Duration::from_secs(10), serve)
        .await
        .expect("serve returns after the grace period")
        .unwrap()
        .unwrap();
    assert!(stuck.await.unwrap().is_err(), "the stuck request's connection was closed");
}

// ------------------------------------------------------------------------------------------
// Canary keys never reach logs or error bodies (S-02, S-03).

#[tokio::test]
async fn canary_keys_never_appear_in_logs_or_bodies() {
    capture_logs();
    const UP_KEY: &str = "up-canary-77c1";
    let fake = FakeServer::start().await;
    // The provider echoes the key it was given, as real ones do.
    fake.set_default(Fake::openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        &format!("Incorrect API key provided: {UP_KEY}. You can find your API key at ..."),
    ));
    // One backend per request below: a 401 opens a breaker, and each path should meet the echo.
    let r = router(
        (0..4)
            .map(|i| {
                openai(
                    BackendSettings::new(format!("leaky{i}"))
                        .base_url(fake.v1_url())
                        .model("fake-model")
                        .api_key(UP_KEY),
                )
            })
            .collect(),
    );
    let options =
        GatewayOptions { api_keys: vec![KeyEntry::from_plain("team", GW_KEY)], ..GatewayOptions::default() };
    let gw = start_with(r.clone(), options.clone()).await;
    let mut bodies = Vec::new();
    for (i, (path, mut body)) in [
        ("/v1/chat/completions", json!({"messages": user("x")})),
        ("/v1/chat/completions", json!({"messages": user("x"), "stream": true})),
        ("/v1/messages", json!({"max_tokens": 5, "messages": user("x")})),
        ("/api/chat", json!({"message": "x"})),
    ]
    .into_iter()
    .enumerate()
    {
        body["model"] = json!(format!("leaky{i}"));
        let wrong =
            post_with(&gw.url, path, body.clone(), &[("authorization", &format!("Bearer {WRONG_KEY}"))])
                .await;
        assert_eq!(wrong.status, 401);
        let right = post_with(&gw.url, path, body, &[("x-api-key", GW_KEY)]).await;
        assert_eq!(right.status, 502, "upstream auth failure is the gateway's problem: {}", right.text);
        bodies.push(wrong.text);
        bodies.push(format!("{:?} {}", right.headers, right.text));
    }
    assert_eq!(fake.post_requests(), 4, "every path met the echoing upstream");
    for path in ["/v1/backends", "/metrics", "/v1/costs", "/v1/models"] {
        bodies.push(get(&gw.url, path, &[("x-api-key", GW_KEY)]).await.text);
    }
    bodies.push(format!("{options:?} {:?}", r.backend("leaky0")));
    for b in &bodies {
        assert!(!b.contains("canary"), "a key leaked into a response: {b}");
    }
    let logs = logs();
    if std::env::var_os("CLAUDETTE_SHOW_LOGS").is_some() {
        println!("{logs}");
    }
    assert!(logs.contains("request failed"), "the capture works: {logs}");
    for needle in [GW_KEY, WRONG_KEY, UP_KEY, "canary"] {
        assert!(!logs.contains(needle), "`{needle}` leaked into the logs:\n{logs}");
    }
}

#[tokio::test]
async fn s07_repeated_failed_auth_from_one_address_is_refused_for_a_while() {
    let oa = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &oa))]);
    let options =
        GatewayOptions { api_keys: vec![KeyEntry::from_plain("team", GW_KEY)], ..GatewayOptions::default() };
    let gw = start_with(r, options).await;
    let chat = json!({"model": "oa", "messages": user("x")});
    let bearer = |k: &str| format!("Bearer {k}");
    for i in 0..20 {
        let wrong = post_with(
            &gw.url,
            "/v1/chat/completions",
            chat.clone(),
            &[("authorization", &bearer(WRONG_KEY))],
        )
        .await;
        assert_eq!(wrong.status, 401, "attempt {i}");
    }
    // The 21st try from this address is refused before the key is even looked at, even a right one.
    let blocked =
        post_with(&gw.url, "/v1/chat/completions", chat.clone(), &[("authorization", &bearer(GW_KEY))]).await;
    assert_eq!(blocked.status, 429, "{}", blocked.text);
    assert_eq!(blocked.json()["error"]["code"], "too_many_auth_failures");
    let wait: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(!blocked.text.contains("canary"));
    assert_eq!(oa.requests(), 0, "no upstream call for refused clients");
    assert_eq!(get(&gw.url, "/health", &[]).await.status, 200, "liveness stays open");
}

#[tokio::test]
async fn s08_admin_endpoints_answer_loopback_clients_only_by_default() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;

    let oa = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &oa))]);
    let remote: std::net::SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let local: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let call = |app: axum::Router, path: &'static str, peer: std::net::SocketAddr| async move {
        let mut req = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        app.oneshot(req).await.unwrap().status().as_u16()
    };

    let gw = claudette_gateway::Gateway::new(r.clone(), GatewayOptions::default()).unwrap();
    for path in ["/metrics", "/v1/backends", "/v1/costs"] {
        assert_eq!(call(gw.app(), path, remote).await, 403, "{path} from a remote client");
        assert_eq!(call(gw.app(), path, local).await, 200, "{path} from loopback");
    }
    // Inference and the model list are not admin routes.
    assert_eq!(call(gw.app(), "/v1/models", remote).await, 200);
    // Embedded in a server that records no peer, nobody can be told to be local: refused,
    // with the way out in the answer.
    let unknown = |app: axum::Router| async move {
        let req = axum::http::Request::get("/v1/costs").body(axum::body::Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, body) = unknown(gw.app()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("into_make_service_with_connect_info"), "{body}");
    assert_eq!(call(gw.app(), "/v1/models", local).await, 200);

    let open = GatewayOptions { admin_from_any: true, ..GatewayOptions::default() };
    let gw = claudette_gateway::Gateway::new(r, open).unwrap();
    assert_eq!(call(gw.app(), "/v1/costs", remote).await, 200, "admin_from_any opens them");
    assert_eq!(unknown(gw.app()).await.0, 200, "to servers that record no peer too");

    // Served for real, the peer is recorded: a loopback client over TCP gets through.
    let served = start(router(vec![openai(openai_settings("oa2", &oa))])).await;
    assert_eq!(get(&served.url, "/v1/backends", &[]).await.status, 200);
}

// ------------------------------------------------------------------------------------------
// Serving threads.

#[tokio::test]
async fn serving_threads_answer_json_and_streams_on_many_connections() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("from a worker"));
    let options = GatewayOptions { workers: 2, ..GatewayOptions::default() };
    let gw = start_with(router(vec![openai(openai_settings("oa", &fake))]), options).await;
    // Separate clients, so connections are dealt to both threads.
    let mut calls = Vec::new();
    for _ in 0..6 {
        let url = gw.url.clone();
        calls.push(tokio::spawn(async move {
            let c = client();
            let r = c
                .post(format!("{url}/v1/chat/completions"))
                .body(json!({"messages": user("x")}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-claudette-backend"], "oa");
            let v = collect(r).await.json();
            v["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), "from a worker");
    }
    fake.push(Fake::openai_stream(&["str", "eamed"]));
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x"), "stream": true})).await;
    assert_eq!(r.status, 200);
    let frames = r.frames();
    assert_eq!(openai_text(&frames), "streamed");
    assert_eq!(frames.last().map(|f| f.1.as_str()), Some("[DONE]"));
}

/// `serve` dispatches the inference endpoints itself; `Gateway::app()`, for embedding, routes
/// them through axum. Both must authenticate the same way and answer the same thing.
#[tokio::test]
async fn the_embeddable_app_authenticates_inference_like_the_server() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;

    let oa = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &oa))]);
    let options =
        GatewayOptions { api_keys: vec![KeyEntry::from_plain("team", GW_KEY)], ..GatewayOptions::default() };
    let gw = claudette_gateway::Gateway::new(r, options).unwrap();
    let chat = json!({"model": "oa", "messages": user("x")}).to_string();
    let call = |key: Option<&'static str>| {
        let app = gw.app();
        let chat = chat.clone();
        async move {
            let mut req =
                axum::http::Request::post("/v1/chat/completions").header("content-type", "application/json");
            if let Some(k) = key {
                req = req.header("authorization", format!("Bearer {k}"));
            }
            let mut req = req.body(axum::body::Body::from(chat)).unwrap();
            req.extensions_mut()
                .insert(ConnectInfo("127.0.0.1:40000".parse::<std::net::SocketAddr>().unwrap()));
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let backend = resp.headers().get("x-claudette-backend").map(|v| v.to_str().unwrap().to_owned());
            (status, backend)
        }
    };
    assert_eq!(call(None).await.0, 401);
    assert_eq!(call(Some("wrong")).await.0, 401);
    assert_eq!(oa.requests(), 0, "no upstream call for refused clients");
    assert_eq!(call(Some(GW_KEY)).await, (200, Some("oa".to_owned())));
    assert_eq!(oa.requests(), 1);
}

// ------------------------------------------------------------------------------------------
// S-10: the header-read timeout.

#[tokio::test]
async fn s10_a_request_head_that_never_ends_is_cut_off_but_a_slow_body_is_not() {
    header_timeout_with(0).await;
}

#[tokio::test]
async fn s10_header_timeout_with_serving_threads_too() {
    header_timeout_with(2).await;
}

/// Reads until the gateway closes the connection; what it sent, and when it closed.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    // Bounded: a gateway that never closes fails the test instead of hanging it.
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the gateway must close the connection")
        .ok();
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

async fn header_timeout_with(workers: usize) {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let fake = FakeServer::start().await;
    let options = GatewayOptions { header_read_timeout: TIMEOUT, workers, ..GatewayOptions::default() };
    let gw = start_with(router(vec![openai(openai_settings("oa", &fake))]), options).await;

    // Slow loris: a head that never ends. The connection is closed, with no answer, once the
    // timeout has passed.
    let mut loris = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let sent = Instant::now();
    loris.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-slow: ").await.unwrap();
    let (answer, closed) = until_closed(&mut loris).await;
    assert_eq!(answer, "", "a timed-out head gets no answer");
    assert!(closed - sent >= TIMEOUT, "closed after {:?}, before the timeout", closed - sent);

    // A keep-alive connection idle for longer than the timeout after its answer is closed too.
    let mut idle = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    let answered = Instant::now();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let (more, closed) = until_closed(&mut idle).await;
    assert_eq!(more, "");
    assert!(closed - answered >= TIMEOUT, "closed after {:?}, before the timeout", closed - answered);

    // The time limit is for the head only: a body that takes longer still gets its answer.
    fake.push(Fake::openai_text("slow body, full answer"));
    let body = json!({"messages": user("x")}).to_string();
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(TIMEOUT * 3).await;
    slow.write_all(body.as_bytes()).await.unwrap();
    let (answer, _) = until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("slow body, full answer"), "{answer}");
}

#[tokio::test]
async fn a_zero_or_endless_header_read_timeout_is_refused() {
    for bad in [Duration::ZERO, Duration::MAX] {
        let options = GatewayOptions { header_read_timeout: bad, ..GatewayOptions::default() };
        let err = Gateway::new(router(vec![]), options).unwrap_err();
        assert!(matches!(err, GatewayError::InvalidOption { option: "header_read_timeout", .. }), "{err}");
    }
}
