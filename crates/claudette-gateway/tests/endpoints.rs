//! The gateway over real HTTP in front of test-kit fakes: both client protocols, JSON and SSE,
//! the operator endpoints, model resolution, routing preferences and routing headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn assert_routing_headers(r: &Reply, backend: &str, attempts: &str) {
    assert_eq!(r.header("x-claudette-backend"), Some(backend), "{}", r.text);
    assert_eq!(r.header("x-claudette-attempts"), Some(attempts));
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    assert!(cost >= 0.0);
    let decision = r.header("x-claudette-decision").unwrap();
    assert!(decision.contains(&format!("{backend}:ok")), "{decision}");
}

#[tokio::test]
async fn openai_json_round_trip() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text("Hello there friend"));
    let gw = start(router(vec![openai(priced(openai_settings("oa", &fake), 1.0, 2.0))])).await;
    let r = post(
        &gw.url,
        "/v1/chat/completions",
        json!({"model": "auto", "messages": user("hi"), "max_tokens": 20, "temperature": 0.5, "stop": "END"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there friend");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 13);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(v["model"], "fake-model");
    assert_routing_headers(&r, "oa", "1");
    // (10 × 1.0 + 3 × 2.0) / 1000
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    assert!((cost - 0.016).abs() < 1e-9, "{cost}");
    // What went upstream came from the neutral request, not the client's bytes.
    let sent = fake.last_json().unwrap();
    assert_eq!(sent["messages"][0]["content"], "hi");
    assert_eq!(sent["stop"], json!(["END"]));
}

#[tokio::test]
async fn openai_tool_calls_carry_string_arguments() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_tool_call("call_7", "add", r#"{"a":1,"b":2}"#));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let tools = json!([{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]);
    let r = post(
        &gw.url,
        "/v1/chat/completions",
        json!({"model": "oa", "messages": user("1+2"), "tools": tools}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_7");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "add");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"a": 1, "b": 2}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert_eq!(fake.last_json().unwrap()["tools"][0]["function"]["name"], "add");
}

#[tokio::test]
async fn openai_stream_with_usage() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_stream(&["Hel", "lo", "!"]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(
        &gw.url,
        "/v1/chat/completions",
        json!({"model": "auto", "messages": user("hi"), "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    assert_routing_headers(&r, "oa", "1");
    assert_eq!(r.header("x-claudette-cost-estimated"), Some("true"));
    let frames = r.frames();
    assert_eq!(frames.last().unwrap().1, "[DONE]");
    let chunks: Vec<serde_json::Value> =
        frames.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(openai_text(&frames), "Hello!");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null());
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(usage["usage"]["prompt_tokens"], 10);
}

#[tokio::test]
async fn openai_stream_without_usage_has_no_usage_field() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_stream(&["a"]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("hi"), "stream": true})).await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("\"usage\""), "{}", r.text);
    assert!(r.text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn anthropic_json_round_trip_excludes_cache_tokens_from_input() {
    let fake = FakeServer::start().await;
    fake.push(Fake::json(
        200,
        json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-fake",
            "content": [{"type": "text", "text": "Hi from claude"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 4, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 20}
        }),
    ));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"model": "claude-fake", "max_tokens": 100, "system": "be brief", "messages": user("hello")}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0], json!({"type": "text", "text": "Hi from claude"}));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 10, "cache tokens are not input tokens in Anthropic's shape");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 20);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 3);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_routing_headers(&r, "cl", "1");
    let sent = fake.last_json().unwrap();
    assert!(sent["system"].to_string().contains("be brief"));
    assert_eq!(sent["max_tokens"], 100);
}

#[tokio::test]
async fn anthropic_stream_full_event_sequence() {
    let fake = FakeServer::start().await;
    fake.push(Fake::anthropic_stream(&["Hel", "lo"]));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"model": "auto", "max_tokens": 50, "messages": user("hi"), "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_routing_headers(&r, "cl", "1");
    let frames = r.frames();
    let names: Vec<&str> = frames.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &frames {
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], name.as_deref().unwrap(), "each event's data names its type");
    }
    assert_eq!(anthropic_text(&frames), "Hello");
    let start: serde_json::Value = serde_json::from_str(&frames[0].1).unwrap();
    assert_eq!(start["message"]["usage"]["input_tokens"], 10);
    assert_eq!(start["message"]["model"], "claude-fake");
    let delta: serde_json::Value = serde_json::from_str(&frames[6].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn anthropic_client_in_front_of_an_openai_tool_stream() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_stream_tool_call("call_9", "add", &["{\"a\":", "1}"]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let tools = json!([{"name": "add", "description": "adds", "input_schema": {"type": "object"}}]);
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"model": "auto", "max_tokens": 50, "messages": user("add"), "tools": tools, "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let frames = r.frames();
    let start = frames.iter().find(|(e, _)| e.as_deref() == Some("content_block_start")).unwrap();
    let start: serde_json::Value = serde_json::from_str(&start.1).unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["id"], "call_9");
    assert_eq!(start["content_block"]["name"], "add");
    let json_text: String = frames
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .map(|v| {
            assert_eq!(v["delta"]["type"], "input_json_delta");
            v["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json_text).unwrap(), json!({"a": 1}));
    let delta = frames.iter().find(|(e, _)| e.as_deref() == Some("message_delta")).unwrap();
    assert!(delta.1.contains("\"stop_reason\":\"tool_use\""));
    assert_eq!(frames.last().unwrap().0.as_deref(), Some("message_stop"));
    // The upstream got the tool in OpenAI's shape.
    assert_eq!(fake.last_json().unwrap()["tools"][0]["function"]["name"], "add");
}

#[tokio::test]
async fn openai_client_in_front_of_an_anthropic_tool_use() {
    let fake = FakeServer::start().await;
    fake.push(Fake::anthropic_tool_use("toolu_1", "add", json!({"a": 1})));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;
    let messages = json!([
        {"role": "user", "content": "add"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_0", "type": "function", "function": {"name": "add", "arguments": "{\"a\":0}"}}]},
        {"role": "tool", "tool_call_id": "toolu_0", "content": "0"}
    ]);
    let tools = json!([{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]);
    let r =
        post(&gw.url, "/v1/chat/completions", json!({"model": "cl", "messages": messages, "tools": tools}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], r#"{"a":1}"#);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // The conversation reached Anthropic as tool_use / tool_result blocks.
    let sent = fake.last_json().unwrap().to_string();
    assert!(sent.contains("tool_result") && sent.contains("toolu_0"), "{sent}");
}

#[tokio::test]
async fn openai_tool_choice_reaches_an_anthropic_upstream_or_is_refused_by_name() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::anthropic_tool_use("toolu_1", "add", json!({"a": 1})));
    let gw = start(router(vec![anthropic(anthropic_settings("cl", &fake))])).await;
    let tools = json!([{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]);
    let body = |choice: Value| json!({"messages": [{"role": "user", "content": "add"}], "tools": tools, "tool_choice": choice});
    let cases = [
        (json!("auto"), None),
        (json!("none"), Some(json!({"type": "none"}))),
        (json!("required"), Some(json!({"type": "any"}))),
        (
            json!({"type": "function", "function": {"name": "add"}}),
            Some(json!({"type": "tool", "name": "add"})),
        ),
    ];
    for (choice, anthropic_form) in cases {
        let r = post(&gw.url, "/v1/chat/completions", body(choice.clone())).await;
        assert_eq!(r.status, 200, "{choice}: {}", r.text);
        assert_eq!(fake.last_json().unwrap().get("tool_choice"), anthropic_form.as_ref(), "{choice}");
    }
    let sent = fake.requests();
    for (choice, says) in [
        (json!("sometimes"), "`sometimes`"),
        (json!({"type": "function", "function": {"name": "mul"}}), "`mul`"),
    ] {
        let r = post(&gw.url, "/v1/chat/completions", body(choice)).await;
        assert_eq!(r.status, 400, "{}", r.text);
        let v = r.json();
        assert_eq!(v["error"]["param"], "tool_choice", "{}", r.text);
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{}", r.text);
    }
    assert_eq!(fake.requests(), sent, "refused before any upstream call");
}

#[tokio::test]
async fn api_chat_is_the_seeds_integration() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text("seeded answer"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(&gw.url, "/api/chat", json!({"message": "hello"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["response"], "seeded answer");
    assert_eq!(r.json()["backend"], "oa");
    assert_routing_headers(&r, "oa", "1");
    let bad = post(&gw.url, "/api/chat", json!({"msg": "hello"})).await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("message"));
    let unknown = post(&gw.url, "/api/chat", json!({"message": "x", "backend": "nope"})).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
    assert_eq!(fake.post_requests(), 1);
}

#[tokio::test]
async fn models_lists_auto_backends_and_their_models() {
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    let gw =
        start(router(vec![openai(openai_settings("oa", &a)), anthropic(anthropic_settings("cl", &b))])).await;
    let r = get(&gw.url, "/v1/models", &[]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["auto", "oa", "cl", "fake-model", "claude-fake"]);
    assert!(v["data"].as_array().unwrap().iter().all(|m| m["object"] == "model" && m["type"] == "model"));
    assert_eq!(a.requests() + b.requests(), 0, "listing models costs no upstream call");
}

#[tokio::test]
async fn a_model_name_picks_its_backend_and_unknown_models_are_404_locally() {
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.set_default(Fake::openai_text("from a"));
    b.set_default(Fake::anthropic_text("from b"));
    let gw =
        start(router(vec![openai(openai_settings("oa", &a)), anthropic(anthropic_settings("cl", &b))])).await;
    let by_name = post(&gw.url, "/v1/chat/completions", json!({"model": "cl", "messages": user("x")})).await;
    assert_eq!(by_name.json()["choices"][0]["message"]["content"], "from b");
    let by_model =
        post(&gw.url, "/v1/chat/completions", json!({"model": "claude-fake", "messages": user("x")})).await;
    assert_eq!(by_model.header("x-claudette-backend"), Some("cl"));
    let by_model =
        post(&gw.url, "/v1/messages", json!({"model": "fake-model", "max_tokens": 5, "messages": user("x")}))
            .await;
    assert_eq!(by_model.json()["content"][0]["text"], "from a");
    let before = a.requests() + b.requests();
    let unknown =
        post(&gw.url, "/v1/chat/completions", json!({"model": "gpt-nope", "messages": user("x")})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "model_not_found");
    assert_eq!(unknown.json()["error"]["param"], "model");
    let unknown =
        post(&gw.url, "/v1/messages", json!({"model": "gpt-nope", "max_tokens": 5, "messages": user("x")}))
            .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["type"], "error");
    assert_eq!(unknown.json()["error"]["type"], "not_found_error");
    assert_eq!(a.requests() + b.requests(), before);
}

#[tokio::test]
async fn routing_preferences_come_from_headers() {
    let cheap = FakeServer::start().await;
    let dear = FakeServer::start().await;
    let gw = start(router(vec![
        openai(priced(openai_settings("dear", &dear), 10.0, 30.0).quality(0.95)),
        openai(priced(openai_settings("cheap", &cheap), 0.1, 0.2).quality(0.3)),
    ]))
    .await;
    let body = json!({"messages": user("x")});
    let r = post_with(&gw.url, "/v1/chat/completions", body.clone(), &[("x-claudette-route", "cost")]).await;
    assert_eq!(r.header("x-claudette-backend"), Some("cheap"));
    let r = post_with(&gw.url, "/v1/chat/completions", body.clone(), &[("x-claudette-weights", "quality=1")])
        .await;
    assert_eq!(r.header("x-claudette-backend"), Some("dear"));
    let decision = r.header("x-claudette-decision").unwrap();
    assert!(decision.starts_with("dear="), "{decision}");
    let bad = post_with(&gw.url, "/v1/chat/completions", body, &[("x-claudette-weights", "price=1")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("price"));
}

#[tokio::test]
async fn health_ready_backends_costs_and_metrics() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![openai(priced(openai_settings("oa", &fake), 1.0, 1.0))])).await;
    let health = get(&gw.url, "/health", &[]).await;
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));
    let ready = get(&gw.url, "/ready", &[]).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["healthy_backends"], 1);

    let r = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
    assert_eq!(r.status, 200);

    let backends = get(&gw.url, "/v1/backends", &[]).await;
    assert_eq!(backends.status, 200);
    let b = &backends.json()["backends"][0];
    assert_eq!(b["name"], "oa");
    assert_eq!(b["info"]["model"], "fake-model");
    assert_eq!(b["health"]["healthy"], true);
    assert_eq!(b["breaker"]["state"], "closed");
    assert_eq!(b["metrics"]["successes"], 1);
    assert!(!backends.text.contains(UPSTREAM_KEY));

    let costs = get(&gw.url, "/v1/costs?timeframe=24h&group_by=backend", &[]).await;
    assert_eq!(costs.status, 200, "{}", costs.text);
    let c = costs.json();
    assert_eq!(c["total_requests"], 1);
    assert_eq!(c["breakdown"]["oa"]["requests"], 1);
    assert!(c["total_cost"].as_f64().unwrap() > 0.0);
    let by_model = get(&gw.url, "/v1/costs?group_by=model", &[]).await;
    assert!(by_model.json()["breakdown"].get("fake-model").is_some(), "{}", by_model.text);
    assert_eq!(get(&gw.url, "/v1/costs?timeframe=soon", &[]).await.status, 400);
    assert_eq!(get(&gw.url, "/v1/costs?group_by=planet", &[]).await.status, 400);
    let seeds_spelling = get(&gw.url, "/v1/costs?groupBy=model", &[]).await.json();
    assert_eq!(seeds_spelling["group_by"], "model");
    assert_eq!(seeds_spelling["breakdown"], by_model.json()["breakdown"]);

    let metrics = get(&gw.url, "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text;
    assert!(
        text.contains(r#"claudette_gateway_requests_total{endpoint="chat_completions",status="200"}"#),
        "{text}"
    );
    assert!(text.contains("claudette_gateway_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("claudette_gateway_attempts_bucket"), "{text}");
    assert!(text.contains(r#"claudette_breaker_state{backend="oa"} 0"#), "{text}");
    assert!(text.contains(r#"claudette_gateway_backend_healthy{backend="oa"} 1"#), "{text}");
    assert!(text.contains(r#"claudette_gateway_backend_tokens{backend="oa",direction="input"}"#), "{text}");
    assert!(text.contains("claudette_requests_total"), "the router's own metrics are exported too");

    let missing = get(&gw.url, "/v2/nothing", &[]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]["message"].is_string());
}

#[tokio::test]
async fn failover_is_explained_in_headers() {
    let bad = FakeServer::start().await;
    let good = FakeServer::start().await;
    bad.set_default(Fake::openai_error(500, "server_error", None, "boom"));
    good.set_default(Fake::openai_text("saved"));
    let r = router(vec![
        openai(openai_settings("bad", &bad).priority(0)),
        openai(openai_settings("good", &good).priority(1)),
    ]);
    r.set_failover_chain(["bad", "good"]).unwrap();
    let gw = start(r).await;
    let resp = post(&gw.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.header("x-claudette-backend"), Some("good"));
    assert_eq!(resp.header("x-claudette-attempts"), Some("2"));
    let decision = resp.header("x-claudette-decision").unwrap();
    assert!(decision.contains("bad:error(overloaded)") && decision.contains("good:ok"), "{decision}");
    let metrics = get(&gw.url, "/metrics", &[]).await.text;
    assert!(metrics.contains("claudette_gateway_failovers_total"), "{metrics}");
}
