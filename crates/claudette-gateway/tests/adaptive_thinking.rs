//! Adaptive thinking, effort levels and structured output (`output_config`) carried end to end,
//! over real HTTP in front of test-kit fakes: each upstream gets them in its own words, an
//! OpenAI client's `reasoning_effort` becomes what the Claude model behind the gateway takes,
//! and what no upstream could take is refused, named, before any upstream call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::BackendSettings;
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn claude(fake: &FakeServer, model: &str) -> BackendSettings {
    anthropic_settings("claude", fake).model(model)
}

/// The Anthropic error envelope with `invalid_request_error`; returns its message.
fn invalid_request(r: &Reply) -> String {
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn adaptive_thinking_and_effort_reach_anthropic_as_sent() {
    let fake = FakeServer::start().await;
    fake.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(claude(&fake, "claude-opus-4-7"))])).await;
    let body = json!({"max_tokens": 4096, "thinking": {"type": "adaptive"},
                      "output_config": {"effort": "xhigh"}, "messages": user("hi")});
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = fake.last_json().unwrap();
    assert_eq!(sent["thinking"], json!({"type": "adaptive"}), "{sent}");
    assert_eq!(sent["output_config"], json!({"effort": "xhigh"}), "{sent}");
}

#[tokio::test]
async fn an_openai_clients_effort_is_adaptive_on_new_claude_and_a_budget_on_older() {
    let opus = FakeServer::start().await;
    opus.push(Fake::anthropic_text("ok"));
    opus.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(claude(&opus, "claude-opus-4-7"))])).await;
    let ask = |effort: &str| json!({"messages": user("hi"), "max_tokens": 32000, "reasoning_effort": effort});
    let r = post(&gw.url, "/v1/chat/completions", ask("high")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = opus.last_json().unwrap();
    // Opus 4.7 refuses `enabled` with a budget.
    assert_eq!(sent["thinking"], json!({"type": "adaptive"}), "{sent}");
    assert_eq!(sent["output_config"], json!({"effort": "high"}), "{sent}");
    // OpenAI's xhigh is accepted at the front and kept for a model that has it.
    let r = post(&gw.url, "/v1/chat/completions", ask("xhigh")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(opus.last_json().unwrap()["output_config"], json!({"effort": "xhigh"}));

    let sonnet = FakeServer::start().await;
    sonnet.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(claude(&sonnet, "claude-sonnet-4-5"))])).await;
    let r = post(&gw.url, "/v1/chat/completions", ask("high")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = sonnet.last_json().unwrap();
    assert_eq!(sent["thinking"], json!({"type": "enabled", "budget_tokens": 24_576}), "{sent}");
    assert!(sent.get("output_config").is_none(), "{sent}");
}

#[tokio::test]
async fn a_json_schema_reaches_anthropic_in_output_config_and_openai_as_response_format() {
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}},
                        "required": ["n"], "additionalProperties": false});
    let body = json!({"max_tokens": 256, "messages": user("count"),
                      "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}}});

    let fake = FakeServer::start().await;
    fake.push(Fake::anthropic_text("{\"n\": 3}"));
    let gw = start(router(vec![anthropic(claude(&fake, "claude-sonnet-4-5"))])).await;
    let r = post(&gw.url, "/v1/messages", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = fake.last_json().unwrap();
    assert_eq!(
        sent["output_config"],
        json!({"effort": "low", "format": {"type": "json_schema", "schema": schema}}),
        "{sent}"
    );

    // An OpenAI-format backend enforces the same schema its own way.
    let oa = FakeServer::start().await;
    oa.push(Fake::openai_text("{\"n\": 3}"));
    let gw = start(router(vec![openai(openai_settings("oa", &oa))])).await;
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = oa.last_json().unwrap();
    assert_eq!(
        sent["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}}),
        "{sent}"
    );
    // Without adaptive thinking an effort says nothing to an OpenAI-format server.
    assert!(sent.get("reasoning_effort").is_none(), "{sent}");
}

#[tokio::test]
async fn what_no_upstream_takes_is_refused_naming_the_field() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![anthropic(claude(&fake, "claude-opus-4-7"))])).await;
    let with = |extra: Value| {
        let mut body = json!({"max_tokens": 64, "messages": user("hi")});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, field, words) in [
        (
            json!({"output_config": {"effort": "extreme"}}),
            "output_config.effort",
            "`low`, `medium`, `high`, `xhigh` or `max`",
        ),
        // OpenAI's words are not Anthropic's.
        (json!({"output_config": {"effort": "minimal"}}), "output_config.effort", "unknown effort `minimal`"),
        (
            json!({"output_config": {"format": {"type": "json_object"}}}),
            "output_config.format.type",
            "`json_schema`",
        ),
        (
            json!({"output_config": {"format": {"type": "json_schema"}}}),
            "output_config.format.schema",
            "Field required",
        ),
        (json!({"output_config": {"effort": 3}}), "output_config", "expected a string"),
        (json!({"max_tokens": 0}), "max_tokens", "greater than or equal to 1"),
        (json!({"thinking": {"type": "sometimes"}}), "thinking.type", "`adaptive`"),
    ] {
        let r = post(&gw.url, "/v1/messages", with(extra.clone())).await;
        let message = invalid_request(&r);
        assert!(message.starts_with(field), "{extra}: {message}");
        assert!(message.contains(words), "{extra}: {message}");
    }
    assert_eq!(fake.requests(), 0);

    // The OpenAI front takes OpenAI's levels only, and says which.
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("hi"), "reasoning_effort": "max"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "reasoning_effort", "{}", r.text);
    assert!(r.text.contains("`xhigh`"), "{}", r.text);
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn adaptive_thinking_reaches_an_openai_format_server_as_its_effort() {
    let oa = FakeServer::start().await;
    for _ in 0..3 {
        oa.push(Fake::openai_text("ok"));
    }
    let gw = start(router(vec![openai(openai_settings("oa", &oa))])).await;
    let ask = |output_config: Value| {
        json!({"max_tokens": 256, "thinking": {"type": "adaptive"}, "output_config": output_config,
               "messages": user("hi")})
    };
    let r = post(&gw.url, "/v1/messages", ask(json!({"effort": "medium"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(oa.last_json().unwrap()["reasoning_effort"], "medium");
    // Anthropic's top level is OpenAI's.
    let r = post(&gw.url, "/v1/messages", ask(json!({"effort": "max"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(oa.last_json().unwrap()["reasoning_effort"], "xhigh");
    // Without an effort the model keeps its own default.
    let r = post(&gw.url, "/v1/messages", ask(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = oa.last_json().unwrap();
    assert!(sent.get("reasoning_effort").is_none(), "{sent}");
}
