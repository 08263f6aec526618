//! `strict` on function tools, over real HTTP in front of test-kit fakes: what the official SDKs'
//! tool helpers send (`function.strict` on `/v1/chat/completions`, a tool's `strict` on
//! `/v1/messages`) reaches the providers that enforce it, on the tool that asked for it, and a
//! request without it is sent upstream as before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": false})
}

/// Two Chat Completions tools, the first with `strict` as given (left out when `None`), the
/// second without.
fn chat_tools(strict: Option<Value>) -> Value {
    let mut first = json!({"name": "weather", "description": "Weather of a city", "parameters": schema()});
    if let Some(s) = strict {
        first["strict"] = s;
    }
    json!([{"type": "function", "function": first},
           {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}}])
}

/// The same two tools as the Messages API writes them.
fn messages_tools(strict: Option<Value>) -> Value {
    let mut first = json!({"name": "weather", "description": "Weather of a city", "input_schema": schema()});
    if let Some(s) = strict {
        first["strict"] = s;
    }
    json!([first, {"name": "time", "input_schema": {"type": "object"}}])
}

/// A gateway over an OpenAI-shaped fake (`oa`) and an Anthropic-shaped one (`claude`); a
/// request's `model` names the backend.
async fn gateway() -> (FakeServer, FakeServer, Running) {
    let oa = FakeServer::start().await;
    oa.set_default(Fake::openai_text("fine"));
    let claude = FakeServer::start().await;
    claude.set_default(Fake::anthropic_text("fine"));
    let r =
        router(vec![openai(openai_settings("oa", &oa)), anthropic(anthropic_settings("claude", &claude))]);
    (oa, claude, start(r).await)
}

fn chat(model: &str, tools: Value) -> Value {
    json!({"model": model, "messages": user("weather in Oslo?"), "tools": tools})
}

fn messages(model: &str, tools: Value) -> Value {
    json!({"model": model, "max_tokens": 64, "messages": user("weather in Oslo?"), "tools": tools})
}

/// The last request body `fake` received, as sent.
fn last_body(fake: &FakeServer) -> Vec<u8> {
    fake.received().last().expect("an upstream request").body.clone()
}

#[tokio::test]
async fn a_strict_tool_reaches_openai_and_anthropic_on_that_tool_alone() {
    let (oa, claude, gw) = gateway().await;
    let body = |path: &str, model: &str| match path {
        "/v1/messages" => messages(model, messages_tools(Some(json!(true)))),
        _ => chat(model, chat_tools(Some(json!(true)))),
    };
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let body = |model: &str| body(path, model);
        for stream in [false, true] {
            if stream {
                oa.push(Fake::openai_stream(&["fine"]));
                claude.push(Fake::anthropic_stream(&["fine"]));
            }
            let mut b = body("oa");
            b["stream"] = json!(stream);
            let r = post(&gw.url, path, b).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            let sent = oa.last_json().unwrap();
            assert_eq!(sent["tools"][0]["function"]["strict"], true, "{path}: {sent}");
            assert!(sent["tools"][1]["function"].get("strict").is_none(), "{path}: {sent}");
            assert!(sent["tools"][0].get("strict").is_none(), "inside `function` only: {sent}");

            let mut b = body("claude");
            b["stream"] = json!(stream);
            let r = post(&gw.url, path, b).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            let sent = claude.last_json().unwrap();
            assert_eq!(sent["tools"][0]["strict"], true, "{path}: {sent}");
            assert_eq!(sent["tools"][0]["input_schema"], schema(), "{path}: {sent}");
            assert!(sent["tools"][1].get("strict").is_none(), "{path}: {sent}");
        }
    }
}

#[tokio::test]
async fn without_strict_the_upstream_body_is_unchanged() {
    let (oa, claude, gw) = gateway().await;
    for (model, fake) in [("oa", &oa), ("claude", &claude)] {
        // Absent, null and false are one request, and none of them writes the key.
        let mut bodies = Vec::new();
        for strict in [None, Some(Value::Null), Some(json!(false))] {
            let r = post(&gw.url, "/v1/chat/completions", chat(model, chat_tools(strict.clone()))).await;
            assert_eq!(r.status, 200, "{model} {strict:?}: {}", r.text);
            bodies.push(last_body(fake));
            let r = post(&gw.url, "/v1/messages", messages(model, messages_tools(strict.clone()))).await;
            assert_eq!(r.status, 200, "{model} {strict:?}: {}", r.text);
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{model}: the bytes differ");
        let sent: Value = serde_json::from_slice(&bodies[0]).unwrap();
        let text = String::from_utf8(bodies[0].clone()).unwrap();
        assert!(!text.contains("strict"), "{model}: {text}");
        // The tool as it was sent before `strict` was carried.
        if model == "oa" {
            assert_eq!(
                sent["tools"][0],
                json!({"type": "function", "function": {"name": "weather",
                    "description": "Weather of a city", "parameters": schema()}})
            );
        } else {
            assert_eq!(
                sent["tools"][0],
                json!({"name": "weather", "description": "Weather of a city", "input_schema": schema()})
            );
        }
        let via_messages = String::from_utf8(last_body(fake)).unwrap();
        assert!(!via_messages.contains("strict"), "{model}: {via_messages}");
    }
}

#[tokio::test]
async fn a_strict_that_is_not_a_boolean_is_refused_naming_it() {
    let (oa, claude, gw) = gateway().await;
    for bad in [json!("true"), json!(1), json!({})] {
        let mut tools = chat_tools(None);
        tools[1]["function"]["strict"] = bad.clone();
        let r = post(&gw.url, "/v1/chat/completions", chat("oa", tools)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        let e = r.json()["error"].clone();
        assert_eq!(e["type"], "invalid_request_error", "{e}");
        assert_eq!(e["param"], "tools[1].function.strict", "{e}");
        assert!(e["message"].as_str().unwrap().contains("'tools[1].function.strict'"), "{e}");
        assert!(e["message"].as_str().unwrap().contains("boolean"), "{e}");

        let mut tools = messages_tools(None);
        tools[1]["strict"] = bad.clone();
        let r = post(&gw.url, "/v1/messages", messages("claude", tools)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        let v = r.json();
        assert_eq!(
            (&v["type"], &v["error"]["type"]),
            (&json!("error"), &json!("invalid_request_error")),
            "{v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("tools.1.strict: "), "{message}");
        assert!(message.contains("boolean"), "{message}");
    }
    assert_eq!((oa.post_requests(), claude.post_requests()), (0, 0));
}

/// Arguments that follow the schema and arguments that may not are different answers: a
/// loose tool's cached answer is not served to the strict one.
#[tokio::test]
async fn strict_and_loose_tools_are_cached_apart() {
    let oa = FakeServer::start().await;
    oa.set_default(Fake::openai_text("fine"));
    let r = router(vec![openai(openai_settings("oa", &oa))]);
    r.set_response_cache(Arc::new(MapCache::default())).unwrap();
    let gw = start(r).await;
    let mut seen = Vec::new();
    for strict in [None, Some(json!(true)), Some(json!(true)), Some(json!(false))] {
        let r = post(&gw.url, "/v1/chat/completions", chat("oa", chat_tools(strict))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.push(r.header("x-claudette-cache").unwrap().to_owned());
    }
    assert_eq!(seen, ["miss", "miss", "hit", "hit"]);
    assert_eq!(oa.post_requests(), 2);
}

/// `/v1/responses` writes a function tool flat (`strict` beside `name`). The Agents SDK sends
/// `strict: true`; an absent one (OpenAI's default there is `true`) is sent as no constraint,
/// and a non-boolean is refused naming it.
#[tokio::test]
async fn the_responses_api_carries_strict_when_asked_and_refuses_a_non_boolean() {
    let (oa, claude, gw) = gateway().await;
    let tools = |strict: Option<Value>| {
        let mut first = json!({"type": "function", "name": "weather", "parameters": schema()});
        if let Some(s) = strict {
            first["strict"] = s;
        }
        json!([first, {"type": "function", "name": "time", "parameters": {"type": "object"}}])
    };
    let body = |model: &str, strict: Option<Value>| json!({"model": model, "input": "weather in Oslo?", "tools": tools(strict)});

    let r = post(&gw.url, "/v1/responses", body("oa", Some(json!(true)))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = oa.last_json().unwrap();
    assert_eq!(sent["tools"][0]["function"]["strict"], true, "{sent}");
    assert!(sent["tools"][1]["function"].get("strict").is_none(), "{sent}");
    let r = post(&gw.url, "/v1/responses", body("claude", Some(json!(true)))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.last_json().unwrap()["tools"][0]["strict"], true);

    for strict in [None, Some(json!(false))] {
        let r = post(&gw.url, "/v1/responses", body("oa", strict.clone())).await;
        assert_eq!(r.status, 200, "{strict:?}: {}", r.text);
        let text = String::from_utf8(last_body(&oa)).unwrap();
        assert!(!text.contains("strict"), "{strict:?}: {text}");
    }

    let before = oa.post_requests();
    let r = post(&gw.url, "/v1/responses", body("oa", Some(json!("yes")))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "tools[0].strict");
    assert_eq!(oa.post_requests(), before);
}
