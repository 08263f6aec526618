//! `POST /v1/messages/count_tokens` over real HTTP, in front of test-kit fakes: the count Claude
//! Code asks for before its requests (and the Anthropic SDKs' `messages.count_tokens`). Exact
//! from a backend that counts, the gateway's estimate from one that does not or fails, never
//! a 5xx for an upstream's failure, and no breaker or cost effect either way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::BreakerState;
use claudette_gateway::{GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/messages/count_tokens";

fn tools() -> Value {
    json!([{
        "name": "read_file",
        "description": "Reads a file from the workspace and returns its text, line numbered.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    }])
}

/// What Claude Code sends: no `max_tokens`, a system prompt, tools.
fn claude_code_body(model: &str) -> Value {
    json!({
        "model": model,
        "system": "You are a coding agent.",
        "messages": [{"role": "user", "content": "What is in src/main.rs?"}],
        "tools": tools(),
    })
}

fn assert_anthropic_error(r: &Reply, status: u16, kind: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert_eq!(v["type"], "error", "{}", r.text);
    assert_eq!(v["error"]["type"], kind, "{}", r.text);
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_anthropic_backend_counts_exactly_and_is_sent_the_prompt_without_max_tokens() {
    let fake = FakeServer::start().await;
    fake.push(Fake::json(200, json!({"input_tokens": 1234})));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;

    let r = post(&gw.url, PATH, claude_code_body("claude-fake")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"input_tokens": 1234}));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-claudette-token-count"), Some("exact"));
    assert_eq!(r.header("x-claudette-backend"), Some("cl"));
    assert!(r.header("request-id").is_some(), "Anthropic's SDKs read `request-id`");

    let got = fake.received();
    assert_eq!(got.len(), 1);
    let up = &got[0];
    assert_eq!((up.method.as_str(), up.path.as_str()), ("POST", PATH));
    assert_eq!(up.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(up.header("anthropic-version"), Some("2023-06-01"));
    let body = up.json();
    assert_eq!(body["model"], "claude-fake");
    assert_eq!(body["system"], "You are a coding agent.");
    assert_eq!(body["messages"], json!([{"role": "user", "content": "What is in src/main.rs?"}]));
    assert_eq!(body["tools"][0]["name"], "read_file");
    for refused in ["max_tokens", "stream", "temperature", "stop_sequences"] {
        assert!(body.get(refused).is_none(), "count_tokens refuses `{refused}`: {body}");
    }

    // The backend's own name as `model` forces it too; `auto` lets the router pick it.
    for model in ["cl", "auto"] {
        fake.push(Fake::json(200, json!({"input_tokens": 5})));
        let r = post(&gw.url, PATH, claude_code_body(model)).await;
        assert_eq!((r.status, r.json()), (200, json!({"input_tokens": 5})), "{model}");
    }
    // Stray generation fields in the body are not passed on.
    let mut with_extras = claude_code_body("cl");
    with_extras["max_tokens"] = json!(100);
    with_extras["temperature"] = json!(0.5);
    fake.push(Fake::json(200, json!({"input_tokens": 77})));
    let r = post(&gw.url, PATH, with_extras).await;
    assert_eq!((r.status, r.json()), (200, json!({"input_tokens": 77})));
    let last = fake.last_json().unwrap();
    assert!(last.get("max_tokens").is_none() && last.get("temperature").is_none(), "{last}");

    // Counting is free: nothing booked, no routed request recorded.
    let perf = gw.router.performance_metrics("cl").unwrap();
    assert_eq!((perf.total_requests, perf.total_cost), (0, 0.0), "{perf:?}");
}

#[tokio::test]
async fn the_beta_query_of_the_sdks_and_claude_code_is_served_the_same() {
    let fake = FakeServer::start().await;
    fake.push(Fake::json(200, json!({"input_tokens": 42})));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;
    let r = post_with(
        &gw.url,
        "/v1/messages/count_tokens?beta=true",
        claude_code_body("claude-fake"),
        &[("anthropic-beta", "token-counting-2024-11-01"), ("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"input_tokens": 42}));
    assert_eq!(r.header("x-claudette-token-count"), Some("exact"));
    let up = &fake.received()[0];
    assert_eq!(up.path, PATH);
    assert_eq!(up.query, None, "the client's query string is not passed on");
    assert_eq!(
        up.header("anthropic-version"),
        Some("2023-06-01"),
        "the backend's version, not the client's header"
    );
    // Its beta flags go on, as with the message it counts for (tests/beta_flags.rs).
    assert_eq!(up.header("anthropic-beta"), Some("token-counting-2024-11-01"));
}

#[tokio::test]
async fn a_backend_that_cannot_count_gets_no_call_and_the_answer_is_estimated() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;

    let r = post(&gw.url, PATH, claude_code_body("oa")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-token-count"), Some("estimated"));
    assert_eq!(r.header("x-claudette-backend"), Some("oa"));
    let with_tools = r.json()["input_tokens"].as_u64().unwrap();
    assert_eq!(fake.requests(), 0, "no upstream call at all");

    // The estimate counts the tool definitions: a coding agent's tools are most of its prompt.
    let mut bare = claude_code_body("oa");
    bare.as_object_mut().unwrap().remove("tools");
    let without = post(&gw.url, PATH, bare).await.json()["input_tokens"].as_u64().unwrap();
    let tool = &tools()[0];
    let tool_bytes = tool["description"].as_str().unwrap().len() + tool["input_schema"].to_string().len();
    assert!(without > 0, "system and messages count");
    assert!(with_tools >= without + tool_bytes as u64 / 4, "tools: {with_tools} vs {without} without");
}

#[tokio::test]
async fn a_failed_upstream_count_is_estimated_and_leaves_the_breaker_alone() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::anthropic_text("still serving"));
    fake.push_n(8, Fake::anthropic_error(500, "api_error", "count is broken"));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;

    for _ in 0..8 {
        let r = post(&gw.url, PATH, claude_code_body("auto")).await;
        assert_eq!(r.status, 200, "never a 5xx for the upstream's failure: {}", r.text);
        assert_eq!(r.header("x-claudette-token-count"), Some("estimated"));
        assert_eq!(r.header("x-claudette-backend"), Some("cl"));
        assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
        assert!(!r.text.contains("count is broken"), "{}", r.text);
    }
    assert_eq!(fake.post_requests(), 8, "each count was asked upstream");
    let breaker = gw.router.breaker("cl").unwrap().snapshot();
    assert_eq!(breaker.state, BreakerState::Closed);
    assert_eq!((breaker.consecutive_failures, breaker.window_failures), (0, 0), "{breaker:?}");

    // And the backend still serves messages.
    let m = post(&gw.url, "/v1/messages", json!({"max_tokens": 10, "messages": user("hi")})).await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(m.header("x-claudette-backend"), Some("cl"));
    assert_eq!(m.json()["content"][0]["text"], "still serving");

    // A malformed count answer and an unreachable backend are estimates too.
    fake.push(Fake::json(200, json!({"tokens": 3})));
    let r = post(&gw.url, PATH, claude_code_body("cl")).await;
    assert_eq!((r.status, r.header("x-claudette-token-count")), (200, Some("estimated")));
    let down =
        router(vec![anthropic(anthropic_settings_at("gone", &claudette_testkit::closed_port_url().await))]);
    let gw_down = start(down).await;
    let r = post(&gw_down.url, PATH, claude_code_body("gone")).await;
    assert_eq!((r.status, r.header("x-claudette-token-count")), (200, Some("estimated")), "{}", r.text);
}

fn anthropic_settings_at(name: &str, base: &str) -> claudette_core::BackendSettings {
    claudette_core::BackendSettings::new(name).base_url(base).model("claude-fake").api_key(UPSTREAM_KEY)
}

#[tokio::test]
async fn with_every_backend_unavailable_the_estimate_names_no_backend() {
    let fake = FakeServer::start().await;
    let mut settings = anthropic_settings("cl", &fake);
    settings.enabled = false;
    let gw = start(router(vec![anthropic(settings)])).await;
    let r = post(&gw.url, PATH, claude_code_body("auto")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-token-count"), Some("estimated"));
    assert_eq!(r.header("x-claudette-backend"), Some("none"));
    assert_eq!(fake.requests(), 0, "a backend the router would not pick is not asked");
}

#[tokio::test]
async fn a_malformed_body_is_a_400_in_anthropic_s_envelope_with_no_upstream_call() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;

    let r = post(&gw.url, PATH, json!({"model": "cl"})).await;
    assert_eq!(assert_anthropic_error(&r, 400, "invalid_request_error"), "messages: Field required");
    let r = post(&gw.url, PATH, json!({"model": "cl", "messages": []})).await;
    assert_anthropic_error(&r, 400, "invalid_request_error");
    let r = post(&gw.url, PATH, json!({"model": "cl", "messages": [{"role": "user", "content": 5}]})).await;
    let message = assert_anthropic_error(&r, 400, "invalid_request_error");
    assert!(message.starts_with("messages.0.content"), "{message}");
    let r = post(&gw.url, PATH, json!({"model": "cl", "messages": user("x"), "tools": [{"name": 1}]})).await;
    assert!(assert_anthropic_error(&r, 400, "invalid_request_error").starts_with("tools.0"));
    let r = post(&gw.url, PATH, json!({"model": 7, "messages": user("x")})).await;
    assert_anthropic_error(&r, 400, "invalid_request_error");
    // Not JSON at all.
    let raw = client()
        .post(format!("{}{PATH}", gw.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_anthropic_error(&collect(raw).await, 400, "invalid_request_error");
    // A model no backend serves: 404, as on /v1/messages.
    let r = post(&gw.url, PATH, claude_code_body("no-such-model")).await;
    assert_anthropic_error(&r, 404, "not_found_error");
    // GET is not a count.
    let r = get(&gw.url, PATH, &[]).await;
    assert_anthropic_error(&r, 405, "invalid_request_error");

    assert_eq!(fake.requests(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn gateway_keys_are_enforced_on_the_count() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::json(200, json!({"input_tokens": 9})));
    let options = GatewayOptions {
        api_keys: vec![KeyEntry::from_plain("cc", "cl-count-key")],
        ..GatewayOptions::default()
    };
    let gw = start_with(router(vec![anthropic(anthropic_settings("cl", &fake))]), options).await;

    let none = post(&gw.url, PATH, claude_code_body("cl")).await;
    assert_anthropic_error(&none, 401, "authentication_error");
    let wrong = post_with(&gw.url, PATH, claude_code_body("cl"), &[("x-api-key", "nope")]).await;
    assert_anthropic_error(&wrong, 401, "authentication_error");
    assert_eq!(fake.requests(), 0);

    let ok = post_with(&gw.url, PATH, claude_code_body("cl"), &[("x-api-key", "cl-count-key")]).await;
    assert_eq!((ok.status, ok.json()), (200, json!({"input_tokens": 9})), "{}", ok.text);
    let bearer =
        post_with(&gw.url, PATH, claude_code_body("cl"), &[("authorization", "Bearer cl-count-key")]).await;
    assert_eq!(bearer.status, 200, "{}", bearer.text);
    // The client's key is never the upstream's.
    assert!(fake.received().iter().all(|r| r.header("x-api-key") == Some(UPSTREAM_KEY)));
}

#[tokio::test]
async fn the_embedded_app_serves_the_count_too() {
    use tower::ServiceExt;

    let fake = FakeServer::start().await;
    fake.push(Fake::json(200, json!({"input_tokens": 31})));
    let r = router(vec![anthropic(anthropic_settings("cl", &fake))]);
    let gw = claudette_gateway::Gateway::new(r, GatewayOptions::default()).unwrap();
    let req = axum::http::Request::post(PATH)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(claude_code_body("cl").to_string()))
        .unwrap();
    let resp = gw.app().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-claudette-token-count"], "exact");
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"input_tokens": 31}));
}

#[tokio::test]
async fn counts_have_their_own_metrics_label() {
    let fake = FakeServer::start().await;
    fake.push(Fake::json(200, json!({"input_tokens": 3})));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;
    assert_eq!(post(&gw.url, PATH, claude_code_body("cl")).await.status, 200);
    let metrics = get(&gw.url, "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains(r#"claudette_gateway_requests_total{endpoint="count_tokens",status="200"}"#),
        "{}",
        metrics.text
    );
}

/// The count asks the backend the message would go to under the same routing headers: with a
/// cheap, plain Claude and a dear, better one, `x-claudette-weights` moves the count as it
/// moves the message. A malformed routing header is the same 400 as on `/v1/messages`.
#[tokio::test]
async fn the_count_follows_the_messages_routing_headers() {
    use claudette_core::Pricing;
    let cheap = FakeServer::start().await;
    cheap.set_default(Fake::json(200, json!({"input_tokens": 11})));
    let dear = FakeServer::start().await;
    dear.set_default(Fake::json(200, json!({"input_tokens": 22})));
    let gw = start(router(vec![
        anthropic(anthropic_settings("cheap", &cheap).pricing(Pricing::new(0.1, 0.1)).quality(0.1)),
        anthropic(anthropic_settings("dear", &dear).pricing(Pricing::new(50.0, 50.0)).quality(1.0)),
    ]))
    .await;
    for (weights, backend, tokens) in [("cost=1", "cheap", 11), ("quality=1", "dear", 22)] {
        let r = post_with(&gw.url, PATH, claude_code_body("auto"), &[("x-claudette-weights", weights)]).await;
        assert_eq!(r.status, 200, "{weights}: {}", r.text);
        assert_eq!(r.header("x-claudette-backend"), Some(backend), "{weights}");
        assert_eq!(r.json(), json!({"input_tokens": tokens}), "{weights}");
        assert_eq!(r.header("x-claudette-token-count"), Some("exact"));
    }
    let r =
        post_with(&gw.url, PATH, claude_code_body("auto"), &[("x-claudette-route", "fastest-please")]).await;
    let message = assert_anthropic_error(&r, 400, "invalid_request_error");
    assert!(message.contains("x-claudette-route"), "{message}");
    assert_eq!(cheap.requests() + dear.requests(), 2, "the refused count asked nobody");
}

/// A count endpoint that hangs does not hold the client for the backend's own timeouts (a
/// first-byte timeout of minutes): past the gateway's count deadline the estimate is answered.
/// The test backend's timeouts are far longer than the deadline, so only the deadline can end it.
#[tokio::test]
async fn a_hanging_upstream_count_is_estimated_at_the_count_deadline() {
    let fake = FakeServer::start().await;
    fake.push(Fake::json(200, json!({"input_tokens": 5})).hang());
    let mut settings = anthropic_settings("cl", &fake);
    settings.timeouts.first_byte = std::time::Duration::from_secs(600);
    settings.timeouts.total = std::time::Duration::from_secs(600);
    let options = GatewayOptions {
        count_tokens_timeout: std::time::Duration::from_millis(300),
        ..GatewayOptions::default()
    };
    let gw = start_with(router(vec![anthropic(settings)]), options).await;

    let r =
        tokio::time::timeout(std::time::Duration::from_secs(60), post(&gw.url, PATH, claude_code_body("cl")))
            .await
            .expect("the count answers at its deadline, not the backend's");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-token-count"), Some("estimated"));
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(fake.post_requests(), 1, "the backend was asked");
}

#[test]
fn the_count_deadline_must_be_positive_and_at_most_ten_minutes() {
    for bad in [std::time::Duration::ZERO, std::time::Duration::from_secs(601)] {
        let options = GatewayOptions { count_tokens_timeout: bad, ..GatewayOptions::default() };
        let e = claudette_gateway::Gateway::new(router(vec![]), options).unwrap_err();
        assert!(e.to_string().contains("count_tokens_timeout"), "{e}");
    }
}
