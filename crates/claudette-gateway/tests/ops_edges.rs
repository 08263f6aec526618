//! The operator endpoints over real HTTP: what `/metrics` exposes when names hold characters
//! the exposition format escapes, `/ready` when no backend can take traffic, and how
//! `/api/chat` refuses a body of the wrong shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;

/// One sample line of the text exposition: metric name, labels (unescaped), value.
type Sample = (String, BTreeMap<String, String>, String);

/// Parses a label set `{k="v",...}` as the exposition format defines it: `\\`, `\"` and `\n`
/// are the only escapes. Panics on anything else, which is itself a format error.
fn labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut out = BTreeMap::new();
    let mut rest = text.strip_prefix('{').unwrap_or_else(|| panic!("no label set: {text}"));
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (out, r);
        }
        let eq = rest.find("=\"").unwrap_or_else(|| panic!("bad label: {rest}"));
        let key = rest[..eq].to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("invalid escape {other:?} in {text}"),
                },
                Some((i, '"')) => break eq + 2 + i + 1,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {text}"),
            }
        };
        assert!(out.insert(key, value).is_none(), "label repeated: {text}");
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn samples(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("bad line: {line}"));
            let name = line[..name_end].to_owned();
            let (labels, rest) = if line[name_end..].starts_with('{') {
                labels(&line[name_end..])
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            (name, labels, rest.trim().to_owned())
        })
        .collect()
}

async fn scrape(url: &str) -> String {
    let m = get(url, "/metrics", &[]).await;
    assert_eq!(m.status, 200, "{}", m.text);
    m.text
}

/// Backend names come from configuration and may hold `\`, `"` or a line feed. Each must come
/// out of `/metrics` as itself: two backends `x\y` and `x\\y` were both exposed as `x\\y`
/// (two series with one identity in a scrape), and `q\"z` lost its backslash.
#[tokio::test]
async fn metrics_label_values_keep_backslashes_quotes_and_newlines() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("hi"));
    let names = ["esc-x\\y", "esc-x\\\\y", "esc-q\\\"z", "esc-n\\\nl", "esc-t\\"];
    let gw = start(router(names.iter().map(|n| openai(openai_settings(n, &fake))).collect())).await;
    for name in names {
        let r = post(&gw.url, "/v1/chat/completions", json!({"model": name, "messages": user("x")})).await;
        assert_eq!(r.status, 200, "{name:?}: {}", r.text);
    }
    let text = scrape(&gw.url).await;
    let all = samples(&text);

    let mut seen = HashMap::new();
    for (name, labels, value) in &all {
        if let Some(first) = seen.insert((name.clone(), labels.clone()), value.clone()) {
            panic!("series exposed twice: {name}{labels:?} ({first} and {value})\n{text}");
        }
    }
    let expected: BTreeSet<&str> = names.into_iter().collect();
    for family in [
        "claudette_breaker_state",
        "claudette_gateway_backend_healthy",
        "claudette_request_latency_seconds_count",
    ] {
        let backends: BTreeSet<&str> = all
            .iter()
            .filter(|(n, _, _)| n == family)
            .filter_map(|(_, l, _)| l.get("backend").map(String::as_str))
            .filter(|b| b.starts_with("esc-"))
            .collect();
        assert_eq!(backends, expected, "{family}\n{text}");
    }
}

/// The seeds send `{"message": "…"}` (or `prompt`); a field of the wrong type is refused with
/// 400 naming it, not with serde's line and column, and nothing reaches the upstream.
#[tokio::test]
async fn api_chat_names_the_field_at_fault() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("fine"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let cases = [
        (json!({"message": 42}), "`message`"),
        (json!({"prompt": ["a"]}), "`prompt`"),
        (json!({"message": "hi", "max_tokens": "many"}), "`max_tokens`"),
        (json!({"message": "hi", "temperature": "hot"}), "`temperature`"),
        (json!({"message": "hi", "model": 5}), "`model`"),
        (json!({"message": "hi", "backend": {"name": "oa"}}), "`backend`"),
        (json!({"message": "a", "prompt": "b"}), "`prompt`"),
    ];
    for (body, names) in cases {
        let r = post(&gw.url, "/api/chat", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(names), "{body}: {error}");
    }
    let not_json =
        collect(client().post(format!("{}/api/chat", gw.url)).body("message=hi").send().await.unwrap()).await;
    assert_eq!(not_json.status, 400);
    assert!(not_json.json()["error"].as_str().unwrap().contains("not valid JSON"), "{}", not_json.text);
    let not_object = post(&gw.url, "/api/chat", json!("hello")).await;
    assert_eq!(not_object.status, 400);
    assert!(not_object.json()["error"].is_string());
    assert_eq!(fake.post_requests(), 0, "every refusal is local");

    let ok = post(&gw.url, "/api/chat", json!({"prompt": "hi", "max_tokens": 5, "temperature": 0.5})).await;
    assert_eq!((ok.status, ok.json()["response"].as_str()), (200, Some("fine")), "{}", ok.text);
}

/// A load balancer must stop sending traffic once no backend can take it: every breaker open
/// makes `/ready` 503, and `/metrics` says which breaker and why it is unhealthy.
#[tokio::test]
async fn ready_goes_unready_when_every_breaker_is_open() {
    let fake = FakeServer::start().await;
    // A 401 opens the breaker for `auth_open` (minutes), so the state cannot drift mid-test.
    fake.set_default(Fake::openai_error(401, "invalid_request_error", Some("invalid_api_key"), "bad key"));
    let gw = start(router(vec![openai(openai_settings("ready-open", &fake))])).await;
    assert_eq!(get(&gw.url, "/ready", &[]).await.status, 200);
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let ready = get(&gw.url, "/ready", &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.json()["healthy_backends"], 0);
    let text = scrape(&gw.url).await;
    let all = samples(&text);
    let value = |family: &str| {
        all.iter()
            .find(|(n, l, _)| n == family && l.get("backend").map(String::as_str) == Some("ready-open"))
            .map(|(_, _, v)| v.clone())
    };
    assert_eq!(value("claudette_breaker_state").as_deref(), Some("2"), "{text}");
    assert_eq!(value("claudette_gateway_backend_healthy").as_deref(), Some("0"), "{text}");
    assert!(
        all.iter().any(|(n, l, _)| n == "claudette_gateway_requests_total"
            && l.get("endpoint").map(String::as_str) == Some("chat_completions")
            && l.get("status").map(String::as_str) == Some("502")),
        "{text}"
    );
}

/// `# TYPE name kind` of every family in a scrape.
fn types(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// Spend only grows, and a `_total` name is reserved for counters (OpenMetrics parsers refuse a
/// gauge that has one): it was exposed as the gauge `claudette_cost_total`. Now it is the
/// counter `claudette_cost_usd_total`, holding the fractions the spend is made of, and no
/// family named `_total` is a gauge.
#[tokio::test]
async fn spend_is_a_counter_named_with_its_unit() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text_usage("hi", 1000, 500));
    let gw = start(router(vec![openai(priced(openai_settings("spend-ctr", &fake), 0.001, 0.002))])).await;
    for _ in 0..2 {
        let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let text = scrape(&gw.url).await;
    let kinds = types(&text);
    assert_eq!(kinds.get("claudette_cost_usd_total").map(String::as_str), Some("counter"), "{text}");
    assert!(!text.contains("claudette_cost_total"), "{text}");
    for (name, kind) in &kinds {
        assert!(!(name.ends_with("_total") && kind != "counter"), "{name} is a {kind}\n{text}");
    }
    let spent = samples(&text)
        .into_iter()
        .find(|(n, l, _)| {
            n == "claudette_cost_usd_total" && l.get("backend").map(String::as_str) == Some("spend-ctr")
        })
        .map(|(_, _, v)| v.parse::<f64>().unwrap());
    // Two requests of 1000 input tokens at 0.001 and 500 output tokens at 0.002 per 1k.
    assert!(spent.is_some_and(|v| (v - 0.004).abs() < 1e-9), "{spent:?}\n{text}");
}

/// Spend is kept for 31 days: a longer window counted only what was left while its span, and
/// the projection over it, reached further back. It is refused, naming the maximum.
#[tokio::test]
async fn cost_windows_longer_than_kept_are_refused_naming_the_maximum() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("hi"));
    let gw = start(router(vec![openai(priced(openai_settings("spend-window", &fake), 0.001, 0.002))])).await;
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for ok in ["31d", "744h", "1w", "30m"] {
        let r = get(&gw.url, &format!("/v1/costs?timeframe={ok}"), &[]).await;
        assert_eq!(r.status, 200, "{ok}: {}", r.text);
        assert_eq!(r.json()["total_requests"], 1, "{ok}: {}", r.text);
    }
    for long in ["32d", "745h", "5w", "60d", "99999999w"] {
        let r = get(&gw.url, &format!("/v1/costs?timeframe={long}"), &[]).await;
        assert_eq!(r.status, 400, "{long}: {}", r.text);
        let error = &r.json()["error"];
        assert_eq!(error["param"], "timeframe", "{}", r.text);
        assert!(error["message"].as_str().unwrap().contains("at most 31d (744h)"), "{}", r.text);
    }
}
