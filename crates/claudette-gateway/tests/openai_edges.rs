//! `POST /v1/chat/completions` at the edges of the Chat Completions API, over real HTTP in
//! front of test-kit fakes: what the official SDKs send or parse that needs more than the
//! happy path, and answers whose upstream shape does not map one to one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}])
}

fn anthropic_event(value: Value) -> String {
    format!("event: {}\ndata: {value}", value["type"].as_str().unwrap())
}

/// The JSON chunks of an OpenAI stream, `[DONE]` left out.
fn chunks(r: &Reply) -> Vec<Value> {
    r.frames().iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect()
}

/// Tool-call deltas merged as openai-python's stream helper does (`lib/streaming/_deltas.py`):
/// by position, `acc[index]`, inserting at `index` when it is past the end.
fn accumulate_tool_calls(chunks: &[Value]) -> Vec<Value> {
    let mut acc: Vec<Value> = Vec::new();
    for c in chunks {
        for d in c["choices"][0]["delta"]["tool_calls"].as_array().cloned().unwrap_or_default() {
            let index = usize::try_from(d["index"].as_u64().unwrap()).unwrap();
            match acc.get_mut(index) {
                Some(call) => {
                    let args = d["function"]["arguments"].as_str().unwrap_or_default();
                    let joined = format!("{}{args}", call["function"]["arguments"].as_str().unwrap());
                    call["function"]["arguments"] = json!(joined);
                }
                None => acc.insert(index.min(acc.len()), d),
            }
        }
    }
    acc
}

/// The OpenAI error envelope with `invalid_request_error` and status 400; returns `param`.
fn invalid_param(r: &Reply) -> Value {
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text);
    v["error"]["param"].clone()
}

#[tokio::test]
async fn streamed_tool_call_indexes_count_calls_not_upstream_blocks() {
    let fake = FakeServer::start().await;
    // Claude's usual tool turn: a text block at index 0, the call at index 1.
    fake.push(Fake::sse(vec![
        anthropic_event(json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-fake",
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}})),
        anthropic_event(json!({"type": "content_block_start", "index": 0,
                               "content_block": {"type": "text", "text": ""}})),
        anthropic_event(json!({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": "Let me check."}})),
        anthropic_event(json!({"type": "content_block_stop", "index": 0})),
        anthropic_event(json!({"type": "content_block_start", "index": 1,
                               "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}})),
        anthropic_event(json!({"type": "content_block_delta", "index": 1,
                               "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})),
        anthropic_event(json!({"type": "content_block_delta", "index": 1,
                               "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}})),
        anthropic_event(json!({"type": "content_block_stop", "index": 1})),
        anthropic_event(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                               "usage": {"output_tokens": 9}})),
        anthropic_event(json!({"type": "message_stop"})),
    ]));
    let gw = start(router(vec![anthropic(anthropic_settings("an", &fake))])).await;
    let body = json!({"messages": user("weather in Oslo?"), "tools": tools(), "stream": true});
    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let chunks = chunks(&r);
    let deltas: Vec<Value> = chunks
        .iter()
        .flat_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!deltas.is_empty(), "{}", r.text);
    assert!(deltas.iter().all(|d| d["index"] == 0), "the only call is call 0: {}", r.text);
    assert_eq!(deltas[0]["id"], "toolu_1");
    assert_eq!(deltas[0]["type"], "function");
    assert_eq!(deltas[0]["function"]["name"], "weather");

    let calls = accumulate_tool_calls(&chunks);
    assert_eq!(calls.len(), 1, "an SDK accumulating by index sees one call: {calls:?}");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Oslo"}));
    assert_eq!(openai_text(&r.frames()), "Let me check.");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(r.frames().last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn finish_reason_follows_the_tool_calls_and_is_always_an_openai_value() {
    let fake = FakeServer::start().await;
    // Some OpenAI-compatible servers end a tool-calling turn with plain "stop".
    fake.push(openai_answer(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}),
        "stop",
    ));
    // A broken one may claim "tool_calls" while calling none.
    fake.push(openai_answer(json!({"role": "assistant", "content": "no tools needed"}), "tool_calls"));
    // And one may use a word of its own, which typed SDKs cannot parse.
    fake.push(openai_answer(json!({"role": "assistant", "content": "cut"}), "abort"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let body = json!({"messages": user("weather?"), "tools": tools()});

    let called = post(&gw.url, "/v1/chat/completions", body.clone()).await;
    assert_eq!(called.status, 200, "{}", called.text);
    let choice = &called.json()["choices"][0];
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!(choice["finish_reason"], "tool_calls", "a client runs tools on tool_calls");

    let text = post(&gw.url, "/v1/chat/completions", body.clone()).await;
    assert_eq!(text.status, 200, "{}", text.text);
    let choice = &text.json()["choices"][0];
    assert_eq!(choice["message"]["content"], "no tools needed");
    assert!(choice["message"].get("tool_calls").is_none(), "{}", text.text);
    assert_eq!(choice["finish_reason"], "stop", "tool_calls with no calls leaves a client nothing to run");

    let odd = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(odd.status, 200, "{}", odd.text);
    assert_eq!(odd.json()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn streamed_tool_calls_finished_with_stop_end_in_tool_calls() {
    let fake = FakeServer::start().await;
    fake.push(tool_call_ending_in_stop("call_2", "weather", "{\"city\":\"Lima\"}"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let body = json!({"messages": user("weather?"), "tools": tools(), "stream": true,
                      "stream_options": {"include_usage": true}});
    let r = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let chunks = chunks(&r);
    let finish: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"].get(0)).filter(|c| !c["finish_reason"].is_null()).collect();
    assert_eq!(finish.len(), 1, "{}", r.text);
    assert_eq!(finish[0]["finish_reason"], "tool_calls", "{}", r.text);
    // The usage chunk still closes the stream, with no choice.
    assert_eq!(chunks.last().unwrap()["choices"], json!([]), "{}", r.text);
    assert_eq!(accumulate_tool_calls(&chunks).len(), 1);
}

#[tokio::test]
async fn requests_whose_answer_we_cannot_shape_are_refused_and_structured_output_is_carried() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("plain words"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let with = |extra: Value| {
        let mut body = json!({"model": "auto", "messages": user("give me JSON")});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let schema = json!({"type": "json_schema", "json_schema": {"name": "City", "strict": true,
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
                   "additionalProperties": false}}});
    let refused = [
        (json!({"response_format": {"type": "yaml"}}), "response_format.type"),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
            "response_format.json_schema.name",
        ),
        (json!({"response_format": {"json_schema": {}}}), "response_format.type"),
        (json!({"logprobs": true, "top_logprobs": 2}), "logprobs"),
        (json!({"functions": [{"name": "f", "parameters": {"type": "object"}}]}), "functions"),
        (
            json!({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}),
            "modalities",
        ),
        (json!({"modalities": "audio"}), "modalities"),
        (json!({"audio": {"voice": "alloy", "format": "mp3"}}), "audio"),
    ];
    for (extra, param) in refused {
        for stream in [false, true] {
            let mut body = with(extra.clone());
            body["stream"] = json!(stream);
            let r = post(&gw.url, "/v1/chat/completions", body).await;
            assert_eq!(invalid_param(&r), param, "{extra}");
        }
    }
    assert_eq!(fake.post_requests(), 0);

    // What asks for nothing beyond plain text is served as before.
    let served = [
        json!({"response_format": {"type": "text"}}),
        json!({"response_format": null, "logprobs": false, "functions": null}),
        json!({"modalities": ["text"], "audio": null}),
        json!({"seed": 7, "parallel_tool_calls": false, "user": "u", "metadata": {"k": "v"}}),
    ];
    for extra in served {
        let r = post(&gw.url, "/v1/chat/completions", with(extra.clone())).await;
        assert_eq!(r.status, 200, "{extra}: {}", r.text);
        assert_eq!(r.json()["choices"][0]["message"]["content"], "plain words");
        assert!(fake.last_json().unwrap().get("response_format").is_none(), "{extra}");
    }

    // Structured output is carried to the backend as its own protocol says it.
    for (format, sent) in
        [(schema.clone(), schema), (json!({"type": "json_object"}), json!({"type": "json_object"}))]
    {
        let r = post(&gw.url, "/v1/chat/completions", with(json!({"response_format": format}))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(fake.last_json().unwrap()["response_format"], sent);
    }
}

/// A backend that cannot promise the shape (Anthropic here) is passed over for one that can.
#[tokio::test]
async fn structured_output_fails_over_to_a_backend_that_can_keep_it() {
    let claude = FakeServer::start().await;
    let oa = FakeServer::start().await;
    oa.set_default(Fake::openai_text("{\"name\":\"Lima\"}"));
    let r =
        router(vec![anthropic(anthropic_settings("claude", &claude)), openai(openai_settings("oa", &oa))]);
    r.set_failover_chain(["claude", "oa"]).unwrap();
    let gw = start(r).await;
    let body = json!({"messages": user("a city"), "response_format": {"type": "json_object"}});
    let resp = post(&gw.url, "/v1/chat/completions", body.clone()).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.header("x-claudette-backend"), Some("oa"));
    assert_eq!(claude.requests(), 0, "refused without a call");
    assert_eq!(oa.last_json().unwrap()["response_format"], json!({"type": "json_object"}));

    // With nobody able to keep it, the client hears why.
    let only = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let resp = post(&only.url, "/v1/chat/completions", body).await;
    assert!(resp.status >= 400, "{}", resp.text);
    assert!(resp.text.contains("response_format"), "{}", resp.text);
    assert_eq!(claude.requests(), 0);
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_names_the_field() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("fine"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let msgs = |m: Value| json!({"messages": [{"role": "system", "content": "be brief"}, m]});
    let cases = [
        (msgs(json!({"role": "user", "content": 5})), "messages[1].content"),
        (msgs(json!({"role": "user", "content": {"type": "text", "text": "x"}})), "messages[1].content"),
        (msgs(json!({"role": "user", "content": [{"text": "x"}]})), "messages[1].content[0]"),
        (msgs(json!({"role": "user", "content": [{"type": "text"}]})), "messages[1].content[0].text"),
        (
            msgs(json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})),
            "messages[1].content[0].image_url.url",
        ),
        (msgs(json!({"role": 1, "content": "x"})), "messages[1].role"),
        (msgs(json!({"content": "x"})), "messages[1]"),
        (
            msgs(json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]})),
            "messages[1].tool_calls[0]",
        ),
        (json!({"messages": user("x"), "temperature": "hot"}), "temperature"),
        (json!({"messages": user("x"), "max_tokens": -1}), "max_tokens"),
        (json!({"messages": user("x"), "max_completion_tokens": 1.5}), "max_completion_tokens"),
        (json!({"messages": user("x"), "stop": ["a", 1]}), "stop[1]"),
        (json!({"messages": user("x"), "tools": [{"type": "function"}]}), "tools[0]"),
        (json!({"messages": user("x"), "stream_options": {"include_usage": "yes"}}), "stream_options"),
        (json!({"messages": "hello"}), "messages"),
    ];
    for (body, param) in cases {
        let r = post(&gw.url, "/v1/chat/completions", body.clone()).await;
        assert_eq!(invalid_param(&r), param, "{body}");
    }
    assert_eq!(fake.post_requests(), 0);

    // What the SDKs send back after a tool call (`content: null`, string arguments, parts
    // arrays, a tool result) is served.
    let r = post(
        &gw.url,
        "/v1/chat/completions",
        json!({"messages": [
            {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": "weather?", "name": "ann"},
            {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]}
        ], "tools": tools(), "tool_choice": "auto", "stop": null, "max_completion_tokens": 20}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
