//! `POST /v1/messages` at the edges of the Messages API, over real HTTP in front of test-kit
//! fakes: what official SDKs send that needs more than the happy path, and answers whose
//! upstream shape does not map one to one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn tools() -> Value {
    json!([{"name": "add", "description": "adds", "input_schema": {"type": "object"}}])
}

/// The Anthropic error envelope with `invalid_request_error`; returns its message.
fn invalid_request(r: &Reply) -> String {
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["type"], "error", "{}", r.text);
    assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn stop_reason_is_tool_use_exactly_when_the_answer_calls_tools() {
    let fake = FakeServer::start().await;
    // Some OpenAI-compatible servers end a tool-calling turn with plain "stop".
    fake.push(openai_answer(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":1}"}}]}),
        "stop",
    ));
    // And a broken one may claim "tool_calls" while calling none.
    fake.push(openai_answer(json!({"role": "assistant", "content": "no tools needed"}), "tool_calls"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let body = json!({"max_tokens": 50, "messages": user("add"), "tools": tools()});

    let called = post(&gw.url, "/v1/messages", body.clone()).await;
    assert_eq!(called.status, 200, "{}", called.text);
    let v = called.json();
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["input"], json!({"a": 1}));
    assert_eq!(v["stop_reason"], "tool_use", "a client runs tools only on tool_use");

    let text = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(text.status, 200, "{}", text.text);
    let v = text.json();
    assert_eq!(v["content"], json!([{"type": "text", "text": "no tools needed"}]));
    assert_eq!(
        v["stop_reason"], "end_turn",
        "tool_use without a tool_use block would leave a client waiting"
    );
}

#[tokio::test]
async fn streamed_tool_calls_finished_with_stop_end_in_tool_use() {
    let fake = FakeServer::start().await;
    fake.push(tool_call_ending_in_stop("call_2", "add", "{\"a\":2}"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"max_tokens": 50, "messages": user("add"), "tools": tools(), "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let frames = r.frames();
    let starts = event_data(&frames, "content_block_start");
    assert_eq!(starts.len(), 1, "{}", r.text);
    assert_eq!(starts[0]["index"], 0);
    assert_eq!(starts[0]["content_block"]["type"], "tool_use");
    let delta = event_data(&frames, "message_delta");
    assert_eq!(delta[0]["delta"]["stop_reason"], "tool_use", "{}", r.text);
    assert_eq!(frames.last().unwrap().0.as_deref(), Some("message_stop"));
}

#[tokio::test]
async fn parallel_calls_sharing_an_upstream_index_stay_separate_blocks() {
    let fake = FakeServer::start().await;
    // Gemini's OpenAI-compatible stream: each parallel call whole in its own chunk, all index 0.
    let call = |id: &str, city: &str| {
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                                   "function": {"name": "weather", "arguments": format!("{{\"city\":\"{city}\"}}")}}]}),
            Value::Null,
        )
    };
    let stream = Fake::sse(vec![
        openai_chunk(json!({"role": "assistant"}), Value::Null),
        call("call_a", "Oslo"),
        call("call_b", "Lima"),
        openai_chunk(json!({}), json!("tool_calls")),
        "data: [DONE]".to_owned(),
    ]);
    fake.push(stream.clone());
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(
        &gw.url,
        "/v1/messages",
        json!({"max_tokens": 50, "messages": user("weather in Oslo and Lima"), "tools": tools(), "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let frames = r.frames();
    assert!(event_data(&frames, "error").is_empty(), "{}", r.text);
    let starts = event_data(&frames, "content_block_start");
    let ids: Vec<&str> = starts.iter().map(|s| s["content_block"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["call_a", "call_b"], "{}", r.text);
    assert_eq!((starts[0]["index"].as_u64(), starts[1]["index"].as_u64()), (Some(0), Some(1)));
    for (i, city) in [(0, "Oslo"), (1, "Lima")] {
        let input: String = event_data(&frames, "content_block_delta")
            .iter()
            .filter(|d| d["index"] == i)
            .map(|d| d["delta"]["partial_json"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&input).unwrap(), json!({"city": city}), "{}", r.text);
    }
    assert_eq!(event_data(&frames, "content_block_stop").len(), 2);
    assert_eq!(event_data(&frames, "message_delta")[0]["delta"]["stop_reason"], "tool_use");

    // An OpenAI client gets the calls at indexes of their own too: its SDK merges by index.
    fake.push(stream);
    let body = json!({"messages": user("weather in Oslo and Lima"), "tools": [{"type": "function",
        "function": {"name": "weather", "parameters": {"type": "object"}}}], "stream": true});
    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let calls: Vec<(u64, String)> = r
        .frames()
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .flat_map(|v| v["choices"][0]["delta"]["tool_calls"].as_array().cloned().unwrap_or_default())
        .map(|c| (c["index"].as_u64().unwrap(), c["id"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(calls, [(0, "call_a".to_owned()), (1, "call_b".to_owned())], "{}", r.text);
}

#[tokio::test]
async fn tool_choice_reaches_the_upstream_in_its_own_protocol() {
    let oa = FakeServer::start().await;
    oa.set_default(Fake::openai_tool_call("call_1", "add", "{}"));
    let an = FakeServer::start().await;
    an.set_default(Fake::anthropic_tool_use("toolu_1", "add", json!({})));
    let body = |choice: Value| json!({"max_tokens": 50, "messages": user("add"), "tools": tools(), "tool_choice": choice});
    // The forced choices are the structured-output idiom: the client reads `content[0].input`.
    let cases = [
        (json!({"type": "auto"}), None, None),
        (json!({"type": "none"}), Some(json!("none")), Some(json!({"type": "none"}))),
        (json!({"type": "any"}), Some(json!("required")), Some(json!({"type": "any"}))),
        (
            json!({"type": "tool", "name": "add"}),
            Some(json!({"type": "function", "function": {"name": "add"}})),
            Some(json!({"type": "tool", "name": "add"})),
        ),
    ];
    for (fake, to_openai) in [(&oa, true), (&an, false)] {
        let backend = if to_openai {
            openai(openai_settings("up", fake))
        } else {
            anthropic(anthropic_settings("up", fake))
        };
        let gw = start(router(vec![backend])).await;
        for (choice, openai_form, anthropic_form) in &cases {
            let r = post(&gw.url, "/v1/messages", body(choice.clone())).await;
            assert_eq!(r.status, 200, "{choice}: {}", r.text);
            let v = r.json();
            assert_eq!(
                (v["stop_reason"].as_str(), v["content"][0]["type"].as_str()),
                (Some("tool_use"), Some("tool_use"))
            );
            let sent = fake.last_json().unwrap();
            let expected = if to_openai { openai_form } else { anthropic_form };
            assert_eq!(sent.get("tool_choice"), expected.as_ref(), "{choice} to {sent}");
            // "none" still offers the tools: the model may need them to read earlier tool turns.
            assert_eq!(sent["tools"].as_array().map(Vec::len), Some(1), "{choice}: {sent}");
        }
    }
}

#[tokio::test]
async fn tool_choices_no_backend_could_honour_are_refused_by_name() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("a text answer"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let cases = [
        (
            json!({"max_tokens": 50, "messages": user("add"), "tools": tools(), "tool_choice": {"type": "tool", "name": "mul"}}),
            "`mul`",
        ),
        (
            json!({"max_tokens": 50, "messages": user("add"), "tool_choice": {"type": "any"}}),
            "at least one tool",
        ),
        (
            json!({"max_tokens": 50, "messages": user("add"), "tools": tools(), "tool_choice": {"type": "tool"}}),
            "tool_choice.name",
        ),
        (
            json!({"max_tokens": 50, "messages": user("add"), "tools": tools(), "tool_choice": {"type": "sometimes"}}),
            "tool_choice.type",
        ),
    ];
    for (body, says) in cases {
        let r = post(&gw.url, "/v1/messages", body).await;
        let message = invalid_request(&r);
        assert!(message.contains(says), "{says}: {message}");
    }
    assert_eq!(fake.requests(), 0, "refused before any upstream call");
}

#[tokio::test]
async fn text_blocks_without_text_are_refused_by_position() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("x"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let cases = [
        (
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "fine"}, {"type": "text"}]}]}),
            "messages.0.content.1.text",
        ),
        (
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text"}]}]}]}),
            "messages.0.content.0.content.0.text",
        ),
        (
            json!({"max_tokens": 5, "system": [{"type": "text", "text": "a"}, {"type": "text"}],
                   "messages": user("x")}),
            "system.1.text",
        ),
    ];
    for (body, path) in cases {
        let r = post(&gw.url, "/v1/messages", body).await;
        let message = invalid_request(&r);
        assert!(message.starts_with(path), "{path}: {message}");
    }
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn bodies_of_the_wrong_shape_are_refused_naming_the_field() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let cases = [
        (json!({"max_tokens": "5", "messages": user("x")}), "max_tokens: "),
        (json!({"max_tokens": 5, "temperature": "hot", "messages": user("x")}), "temperature: "),
        (json!({"max_tokens": 5, "stop_sequences": ["END", 7], "messages": user("x")}), "stop_sequences.1: "),
        (json!({"max_tokens": 5, "messages": [{"role": "user"}]}), "messages.0: missing field `content`"),
        (
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}, {"role": 2, "content": "y"}]}),
            "messages.1.role: ",
        ),
        (
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]}),
            "messages.0.content.1: missing field `type`",
        ),
        (json!({"max_tokens": 5, "messages": [{"role": "user", "content": 5}]}), "messages.0.content: "),
        (json!({"max_tokens": 5, "messages": user("x"), "tools": [{"input_schema": {}}]}), "tools.0: "),
        (json!({"max_tokens": 5, "messages": user("x"), "tool_choice": "auto"}), "tool_choice: "),
        (json!({"max_tokens": 5, "messages": {"role": "user"}}), "messages: "),
    ];
    for (body, prefix) in cases {
        let r = post(&gw.url, "/v1/messages", body.clone()).await;
        let message = invalid_request(&r);
        assert!(message.starts_with(prefix), "{body}: {message}");
    }
    // Bytes that are not JSON at all still say so.
    let r = collect(
        client()
            .post(format!("{}/v1/messages", gw.url))
            .header("content-type", "application/json")
            .body("{\"max_tokens\": 5,")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(invalid_request(&r).contains("not valid JSON"));
    assert_eq!(fake.requests(), 0);
}
