//! Request ids end to end, over real HTTP in front of a fake provider: every answer carries
//! `x-request-id` (and `request-id` on `/v1/messages`, where Anthropic's SDKs read it) — JSON
//! and SSE, success and error, early refusals and the ops endpoints — and the request's usage
//! is booked under the same id, so a client's complaint, a log line and a ledger row name the
//! same request. A client's sane id is kept; junk is replaced, never echoed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudette_core::{BackendRouter, UsageRecord, UsageSink};
use claudette_gateway::{Gateway, GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;

/// The request ids of the bookings the router made, in order: what a ledger's `request_id`
/// column receives.
#[derive(Debug, Default)]
struct BookedIds(Mutex<Vec<Option<String>>>);

impl UsageSink for BookedIds {
    fn record(&self, r: &UsageRecord<'_>) {
        self.0.lock().unwrap().push(r.request_id.map(str::to_owned));
    }
}

impl BookedIds {
    /// The bookings so far; waits briefly for `n` (a stream books as it ends).
    async fn wait_for(&self, n: usize) -> Vec<Option<String>> {
        for _ in 0..200 {
            let ids = self.0.lock().unwrap().clone();
            if ids.len() >= n {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.0.lock().unwrap().clone()
    }
}

const GW_KEY: &str = "gw-key-request-ids-0001";
const METERED_KEY: &str = "gw-key-request-ids-0002";

/// A router on an OpenAI-shaped fake (answering `hi`) and an Anthropic-shaped one, whose
/// bookings go to the returned sink.
async fn backends() -> (FakeServer, FakeServer, Arc<BackendRouter>, Arc<BookedIds>) {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("hi"));
    let claude = FakeServer::start().await;
    claude.set_default(Fake::anthropic_text("hi"));
    let r =
        router(vec![openai(openai_settings("oa", &fake)), anthropic(anthropic_settings("claude", &claude))]);
    let sink = Arc::new(BookedIds::default());
    r.set_usage_sink(sink.clone()).unwrap();
    (fake, claude, r, sink)
}

/// [`backends`] behind the gateway's own server.
async fn gateway(options: GatewayOptions) -> (FakeServer, FakeServer, Running, Arc<BookedIds>) {
    let (fake, claude, r, sink) = backends().await;
    let gw = start_with(r, options).await;
    (fake, claude, gw, sink)
}

/// [`backends`] behind [`Gateway::app`] served by a plain `axum::serve`, as a program that
/// embeds the gateway's router in its own server does: none of the gateway's server is in
/// front of it. Served until the returned task is aborted.
async fn embedded(
    options: GatewayOptions,
) -> (FakeServer, FakeServer, String, Arc<BookedIds>, tokio::task::JoinHandle<()>) {
    capture_logs();
    let (fake, claude, r, sink) = backends().await;
    let app = Gateway::new(r, options).unwrap().app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    (fake, claude, url, sink, task)
}

/// The first log line that says `what` and names `id`.
fn log_line(what: &str, id: &str) -> String {
    let logs = logs();
    logs.lines()
        .find(|l| l.contains(what) && l.contains(id))
        .unwrap_or_else(|| panic!("no {what:?} log line names {id}"))
        .to_owned()
}

fn chat() -> serde_json::Value {
    json!({"model": "oa", "messages": user("x")})
}

fn id_of(reply: &Reply) -> String {
    reply.header("x-request-id").unwrap_or_else(|| panic!("no x-request-id: {:?}", reply.headers)).to_owned()
}

fn is_ours(id: &str) -> bool {
    id.starts_with("req_") && id.len() > 8 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[tokio::test]
async fn a_client_id_is_echoed_and_the_request_is_booked_under_it() {
    let (_f, _c, gw, sink) = gateway(GatewayOptions::default()).await;
    let id = "client-7f3a:trace/span=1;retry@2";
    let r = post_with(&gw.url, "/v1/chat/completions", chat(), &[("x-request-id", id)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(id_of(&r), id);
    assert!(r.header("request-id").is_none(), "request-id is Anthropic's, for /v1/messages only");
    assert_eq!(sink.wait_for(1).await, [Some(id.to_owned())]);

    // At the longest kept length, too.
    let long = "a".repeat(128);
    let r = post_with(&gw.url, "/v1/chat/completions", chat(), &[("x-request-id", &long)]).await;
    assert_eq!(id_of(&r), long);
    assert_eq!(sink.wait_for(2).await[1].as_deref(), Some(long.as_str()));
}

#[tokio::test]
async fn a_junk_client_id_is_replaced_never_echoed() {
    let (_f, _c, gw, sink) = gateway(GatewayOptions::default()).await;
    let too_long = "b".repeat(129);
    let junk: [&[u8]; 4] = [b"two words", b"tab\there", b"caf\xc3\xa9", too_long.as_bytes()];
    for (n, bad) in junk.iter().enumerate() {
        let value = reqwest::header::HeaderValue::from_bytes(bad).unwrap();
        let resp = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .header("content-type", "application/json")
            .header("x-request-id", value)
            .body(chat().to_string())
            .send()
            .await
            .unwrap();
        let r = collect(resp).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let id = id_of(&r);
        assert!(is_ours(&id), "{bad:?} answered with {id:?}");
        assert_eq!(sink.wait_for(n + 1).await[n].as_deref(), Some(id.as_str()), "{bad:?}");
    }
}

#[tokio::test]
async fn without_a_client_id_a_new_one_is_given_and_booked() {
    let (_f, _c, gw, sink) = gateway(GatewayOptions::default()).await;
    let a = post(&gw.url, "/v1/chat/completions", chat()).await;
    let b = post(&gw.url, "/api/chat", json!({"model": "oa", "message": "x"})).await;
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.text, b.text);
    let (a, b) = (id_of(&a), id_of(&b));
    assert!(is_ours(&a) && is_ours(&b) && a != b, "{a} {b}");
    assert_eq!(sink.wait_for(2).await, [Some(a), Some(b)]);
}

#[tokio::test]
async fn streams_carry_the_id_and_are_booked_under_it() {
    let (fake, claude, gw, sink) = gateway(GatewayOptions::default()).await;
    fake.push(Fake::openai_stream(&["Hel", "lo"]));
    let body = json!({"model": "oa", "messages": user("x"), "stream": true});
    let s = post_with(&gw.url, "/v1/chat/completions", body, &[("x-request-id", "stream-1")]).await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert!(s.header("content-type").unwrap().starts_with("text/event-stream"));
    assert_eq!(openai_text(&s.frames()), "Hello");
    assert_eq!(id_of(&s), "stream-1");

    claude.push(Fake::anthropic_stream(&["Hel", "lo"]));
    let body = json!({"model": "claude", "max_tokens": 16, "messages": user("x"), "stream": true});
    let m = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(anthropic_text(&m.frames()), "Hello");
    let id = id_of(&m);
    assert_eq!(m.header("request-id"), Some(id.as_str()));
    assert_eq!(sink.wait_for(2).await, [Some("stream-1".to_owned()), Some(id)]);
}

#[tokio::test]
async fn messages_answers_carry_both_headers_with_one_id() {
    let (_f, _c, gw, sink) = gateway(GatewayOptions::default()).await;
    let body = json!({"model": "claude", "max_tokens": 16, "messages": user("x")});
    let r = post_with(&gw.url, "/v1/messages", body, &[("x-request-id", "msg-1")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.header("x-request-id"), r.header("request-id")), (Some("msg-1"), Some("msg-1")));
    assert_eq!(sink.wait_for(1).await, [Some("msg-1".to_owned())]);

    // An error in Anthropic's envelope too.
    let bad = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let bad = collect(bad).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let id = id_of(&bad);
    assert!(is_ours(&id));
    assert_eq!(bad.header("request-id"), Some(id.as_str()));
}

#[tokio::test]
async fn errors_and_refusals_carry_the_id() {
    let keys = vec![
        KeyEntry::from_plain("team", GW_KEY),
        KeyEntry::from_plain("metered", METERED_KEY).with_rpm(NonZeroU32::new(1).unwrap()),
    ];
    let options = GatewayOptions { api_keys: keys, max_body_bytes: 4096, ..GatewayOptions::default() };
    let (_f, _c, gw, sink) = gateway(options).await;
    let auth = ("authorization", "Bearer gw-key-request-ids-0001");

    // 401 from the front's own key check, and from the app's (an ops endpoint).
    let r = post_with(&gw.url, "/v1/chat/completions", chat(), &[("x-request-id", "no-key-1")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (401, "no-key-1"), "{}", r.text);
    let r = get(&gw.url, "/v1/models", &[("x-request-id", "no-key-2")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (401, "no-key-2"), "{}", r.text);
    let r = post_with(&gw.url, "/v1/messages", json!({}), &[("x-request-id", "no-key-3")]).await;
    assert_eq!((r.status, r.header("request-id")), (401, Some("no-key-3")), "{}", r.text);

    // 400: a body that is not JSON.
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header(auth.0, auth.1)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let r = collect(resp).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(is_ours(&id_of(&r)));

    // 429: over a key's one request a minute (the first one is answered and booked).
    let metered = ("authorization", "Bearer gw-key-request-ids-0002");
    let r = post_with(&gw.url, "/v1/chat/completions", chat(), &[metered, ("x-request-id", "first")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post_with(&gw.url, "/v1/chat/completions", chat(), &[metered, ("x-request-id", "limited")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (429, "limited"), "{}", r.text);

    // 413 decided from the head, before the body is read.
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header(auth.0, auth.1)
        .header("x-request-id", "too-big")
        .header("expect", "100-continue")
        .header("content-type", "application/json")
        .body(vec![b' '; 8192])
        .send()
        .await
        .unwrap();
    let r = collect(resp).await;
    assert_eq!((r.status, id_of(&r).as_str()), (413, "too-big"), "{}", r.text);

    // The app's endpoints: open, unknown path, wrong method.
    let r = get(&gw.url, "/health", &[("x-request-id", "health-1")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (200, "health-1"));
    let r = get(&gw.url, "/nowhere", &[auth]).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(is_ours(&id_of(&r)));
    let r = get(&gw.url, "/v1/chat/completions", &[auth]).await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert!(is_ours(&id_of(&r)));
    assert!(r.header("request-id").is_none());
    let r = get(&gw.url, "/v1/messages", &[auth]).await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.header("request-id"), Some(id_of(&r).as_str()));

    // Only the one answered request reached a backend and was booked.
    assert_eq!(*sink.0.lock().unwrap(), [Some("first".to_owned())]);
}

#[tokio::test]
async fn the_request_log_span_names_the_id() {
    let (_f, _c, gw, _sink) = gateway(GatewayOptions::default()).await;
    let id = "log-span-5d1c9e";
    let r = post_with(&gw.url, "/v1/chat/completions", chat(), &[("x-request-id", id)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let line = log_line("finished processing request", id);
    assert!(line.contains("request_id"), "{line}");
}

/// The operations endpoints are served by the axum app, whose request log is tower-http's:
/// its lines name the id the answer carries too, so an operator can match a `/metrics` or
/// `/v1/backends` log line to the answer a client reports.
#[tokio::test]
async fn the_request_log_of_an_operations_endpoint_names_the_id() {
    let (_f, _c, gw, _sink) = gateway(GatewayOptions::default()).await;
    let id = "ops-log-2b7e41";
    let r = get(&gw.url, "/metrics", &[("x-request-id", id)]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (200, id), "{}", r.text);
    let line = log_line("finished processing request", id);
    assert!(line.contains("request_id") && line.contains("/metrics"), "{line}");

    // A new id, made by the gateway, is the one logged.
    let r = get(&gw.url, "/v1/models", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let made = id_of(&r);
    assert!(is_ours(&made), "{made}");
    log_line("finished processing request", &made);
}

/// An embedded [`Gateway::app`] stamps, books and logs the request id by itself: refusals,
/// the operations endpoints, an unknown path, a wrong method and the inference endpoints,
/// with `request-id` too on `/v1/messages`.
#[tokio::test]
async fn an_embedded_app_carries_books_and_logs_the_id() {
    let options =
        GatewayOptions { api_keys: vec![KeyEntry::from_plain("team", GW_KEY)], ..GatewayOptions::default() };
    let (_f, _c, url, sink, task) = embedded(options).await;
    let auth = ("authorization", "Bearer gw-key-request-ids-0001");

    let r = get(&url, "/health", &[("x-request-id", "emb-health")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (200, "emb-health"), "{}", r.text);
    let r = get(&url, "/v1/models", &[auth, ("x-request-id", "emb-models")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (200, "emb-models"), "{}", r.text);
    let r = get(&url, "/metrics", &[auth]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(is_ours(&id_of(&r)));

    // Refusals: no key, an unknown path, a wrong method (in the path's JSON envelope).
    let r = get(&url, "/v1/models", &[("x-request-id", "emb-401")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (401, "emb-401"), "{}", r.text);
    let r = post_with(&url, "/v1/messages", json!({}), &[("x-request-id", "emb-401m")]).await;
    assert_eq!((r.status, r.header("request-id")), (401, Some("emb-401m")), "{}", r.text);
    let r = get(&url, "/nowhere", &[auth, ("x-request-id", "emb-404")]).await;
    assert_eq!((r.status, id_of(&r).as_str()), (404, "emb-404"), "{}", r.text);
    let r = get(&url, "/v1/messages", &[auth]).await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{}", r.text);
    assert_eq!(r.header("request-id"), Some(id_of(&r).as_str()));

    // Inference: the id answered is the id booked, the client's or a new one.
    let body = json!({"model": "claude", "max_tokens": 16, "messages": user("x")});
    let r = post_with(&url, "/v1/messages", body, &[auth, ("x-request-id", "emb-msg")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.header("x-request-id"), r.header("request-id")), (Some("emb-msg"), Some("emb-msg")));
    let r = post_with(&url, "/v1/chat/completions", chat(), &[auth]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let made = id_of(&r);
    assert!(is_ours(&made) && r.header("request-id").is_none(), "{made}");
    assert_eq!(sink.wait_for(2).await, [Some("emb-msg".to_owned()), Some(made.clone())]);

    // Its request log names the id too.
    log_line("finished processing request", "emb-health");
    log_line("finished processing request", &made);
    task.abort();
}
