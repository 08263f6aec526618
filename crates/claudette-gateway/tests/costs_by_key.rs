//! `/v1/costs?group_by=key`: spend per gateway key, over real HTTP in front of a fake provider.
//! Every way an attempt is billed (a complete answer, a finished stream, a stream failed after
//! it committed, a stream the client dropped) is booked to the key that sent it, in memory and
//! in a ledger that the next gateway on the same file answers from; requests without a key
//! are one line of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudette_core::costs::NO_KEY;
use claudette_core::{CostAnalysis, GroupBy};
use claudette_gateway::{GatewayOptions, KeyEntry};
use claudette_ledger::{Ledger, LedgerOptions};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const KEY_A: &str = "gw-costs-team-a-5b0c9e1f2a3d4c5b";
const KEY_B: &str = "gw-costs-team-b-8e7d6c5b4a392817";

fn keyed(cost_source: Option<Arc<Ledger>>) -> GatewayOptions {
    GatewayOptions {
        api_keys: vec![KeyEntry::from_plain("team-a", KEY_A), KeyEntry::from_plain("team-b", KEY_B)],
        cost_source: cost_source.map(|l| l as _),
        ..GatewayOptions::default()
    }
}

fn priced_router(fake: &FakeServer) -> Arc<claudette_core::BackendRouter> {
    router(vec![openai(priced(openai_settings("booked", fake), 1.0, 2.0))])
}

fn bearer(key: Option<&str>) -> Option<String> {
    key.map(|k| format!("Bearer {k}"))
}

async fn chat(url: &str, key: Option<&str>, stream: bool) -> Reply {
    let auth = bearer(key);
    let headers: Vec<(&str, &str)> = auth.iter().map(|v| ("authorization", v.as_str())).collect();
    post_with(url, "/v1/chat/completions", json!({"messages": user("x"), "stream": stream}), &headers).await
}

async fn get_costs(url: &str, query: &str, key: Option<&str>) -> Reply {
    let auth = bearer(key);
    let headers: Vec<(&str, &str)> = auth.iter().map(|v| ("authorization", v.as_str())).collect();
    get(url, &format!("/v1/costs?{query}"), &headers).await
}

async fn costs(url: &str, query: &str, key: Option<&str>) -> Value {
    let r = get_costs(url, query, key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// team-a: two answers and a finished stream. team-b: an answer, a stream that fails after
/// its first content, and a stream it walks away from. Returns once all six are booked.
async fn traffic(fake: &FakeServer, gw: &Running) {
    fake.set_default(Fake::openai_text("hi"));
    for _ in 0..2 {
        assert_eq!(chat(&gw.url, Some(KEY_A), false).await.status, 200);
    }
    fake.push(Fake::openai_stream(&["Hel", "lo"]));
    let done = chat(&gw.url, Some(KEY_A), true).await;
    assert!(done.text.contains("[DONE]"), "{}", done.text);

    assert_eq!(chat(&gw.url, Some(KEY_B), false).await.status, 200);
    fake.push(Fake::openai_stream_error_after(&["par"]));
    let failed = chat(&gw.url, Some(KEY_B), true).await;
    assert!(failed.text.contains("upstream failed"), "{}", failed.text);

    // Content at once, then nothing for a long time: the client leaves after the first words.
    fake.push(
        Fake::sse(vec![
            openai_chunk(json!({"role": "assistant", "content": "first words"}), Value::Null),
            openai_chunk(json!({"content": " never read"}), Value::Null),
        ])
        .gap(Duration::from_secs(30)),
    );
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(KEY_B)
        .header("content-type", "application/json")
        .body(json!({"messages": user("x"), "stream": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("first words") {
        let c = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&c));
    }
    drop(resp);
    // The gateway notices the closed connection asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.router.analyze_costs(Duration::from_secs(3600), GroupBy::Backend).total_requests < 6 {
        assert!(Instant::now() < deadline, "the abandoned stream was never booked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn line(c: &Value, key: &str) -> (u64, f64) {
    let l = &c["breakdown"][key];
    (l["requests"].as_u64().unwrap_or(0), l["cost"].as_f64().unwrap_or(0.0))
}

/// The answer's lines add up to its totals, which are the by-backend totals.
fn assert_consistent(by_key: &Value, by_backend: &Value) {
    let lines = by_key["breakdown"].as_object().unwrap();
    let cost: f64 = lines.values().map(|l| l["cost"].as_f64().unwrap()).sum();
    let requests: u64 = lines.values().map(|l| l["requests"].as_u64().unwrap()).sum();
    assert!((cost - by_key["total_cost"].as_f64().unwrap()).abs() < 1e-12, "{by_key}");
    assert_eq!(requests, by_key["total_requests"].as_u64().unwrap(), "{by_key}");
    for field in ["total_requests", "total_tokens"] {
        assert_eq!(by_key[field], by_backend[field], "{field}: {by_key} vs {by_backend}");
    }
    assert!(
        (by_key["total_cost"].as_f64().unwrap() - by_backend["total_cost"].as_f64().unwrap()).abs() < 1e-12
    );
}

#[tokio::test]
async fn each_key_sees_its_requests_and_spend_in_memory() {
    let fake = FakeServer::start().await;
    let gw = start_with(priced_router(&fake), keyed(None)).await;
    traffic(&fake, &gw).await;

    let by_key = costs(&gw.url, "timeframe=1h&group_by=key", Some(KEY_A)).await;
    assert_eq!(by_key["group_by"], "key", "{by_key}");
    assert_eq!(by_key["breakdown"].as_object().unwrap().len(), 2, "{by_key}");
    let (a_requests, a_cost) = line(&by_key, "team-a");
    let (b_requests, b_cost) = line(&by_key, "team-b");
    assert_eq!((a_requests, b_requests), (3, 3), "{by_key}");
    assert!(a_cost > 0.0 && b_cost > 0.0, "{by_key}");
    assert_consistent(&by_key, &costs(&gw.url, "timeframe=1h", Some(KEY_B)).await);

    // The seeds' spelling, and a 400 that lists every grouping.
    let seeds = costs(&gw.url, "groupBy=key", Some(KEY_B)).await;
    assert_eq!(seeds["breakdown"], by_key["breakdown"]);
    let bad = get_costs(&gw.url, "group_by=team", Some(KEY_A)).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(
        bad.json()["error"]["message"],
        "`group_by` must be `backend`, `model` or `key`",
        "{}",
        bad.text
    );
}

#[tokio::test]
async fn spend_per_key_survives_the_gateway_in_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let fake = FakeServer::start().await;

    let ledger = Arc::new(Ledger::open(&path, LedgerOptions::default()).unwrap());
    let r = priced_router(&fake);
    r.set_usage_sink(ledger.clone()).unwrap();
    let mut first = start_with(r, keyed(Some(ledger.clone()))).await;
    traffic(&fake, &first).await;
    let seen: CostAnalysis = first.router.analyze_costs(Duration::from_secs(3600), GroupBy::Key);
    first.shutdown().await.unwrap().unwrap();
    ledger.close();
    drop(first);
    drop(ledger);

    let ledger = Arc::new(Ledger::open(&path, LedgerOptions::default()).unwrap());
    let r = priced_router(&fake);
    r.set_usage_sink(ledger.clone()).unwrap();
    let second = start_with(r, keyed(Some(ledger.clone()))).await;
    let by_key = costs(&second.url, "timeframe=24h&group_by=key", Some(KEY_B)).await;
    let booked: CostAnalysis = serde_json::from_value(by_key.clone()).unwrap();
    assert_eq!(booked.breakdown.keys().collect::<Vec<_>>(), ["team-a", "team-b"], "{by_key}");
    for (key, line) in &seen.breakdown {
        let kept = booked.breakdown[key];
        assert_eq!(
            (kept.requests, kept.input_tokens, kept.output_tokens),
            (line.requests, line.input_tokens, line.output_tokens),
            "{key}: {by_key}"
        );
        assert!((kept.cost - line.cost).abs() < 1e-12, "{key}: {} vs {}", kept.cost, line.cost);
    }
    assert_eq!(line(&by_key, "team-a").0, 3);
    assert_consistent(&by_key, &costs(&second.url, "timeframe=24h", Some(KEY_A)).await);
}

#[tokio::test]
async fn without_keys_spend_is_the_no_key_line() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("hi"));
    let gw = start(priced_router(&fake)).await;
    assert_eq!(chat(&gw.url, None, false).await.status, 200);
    fake.push(Fake::openai_stream(&["a", "b"]));
    assert_eq!(chat(&gw.url, None, true).await.status, 200);

    let by_key = costs(&gw.url, "group_by=key", None).await;
    assert_eq!(by_key["breakdown"].as_object().unwrap().keys().collect::<Vec<_>>(), [NO_KEY], "{by_key}");
    assert_eq!(NO_KEY, "(no key)");
    let (requests, cost) = line(&by_key, NO_KEY);
    assert_eq!(requests, 2, "{by_key}");
    assert!(cost > 0.0, "{by_key}");
    assert_consistent(&by_key, &costs(&gw.url, "", None).await);
}
