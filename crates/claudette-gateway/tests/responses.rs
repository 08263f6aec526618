//! `POST /v1/responses` over real HTTP, in front of test-kit fakes: the Response object, the
//! conversation as it reaches the provider, the typed event stream, the refusals of what a
//! stateless router cannot do, and the gateway's guarantees (failover before the first token,
//! an honest end after it, keys, limits, metrics) on this endpoint too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::num::NonZeroU32;

use claudette_gateway::{GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/responses";

fn add_tool() -> Value {
    json!([{"type": "function", "name": "add", "description": "adds two numbers",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
            "strict": true}])
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The OpenAI error envelope with status 400 and `invalid_request_error`; returns `param`.
fn refused(r: &Reply) -> String {
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text);
    v["error"]["param"].as_str().unwrap_or_else(|| panic!("no param: {}", r.text)).to_owned()
}

#[tokio::test]
async fn a_text_answer_is_a_response_object_and_instructions_lead_upstream() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text("Hello there"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let body = json!({
        "model": "auto", "input": "hi", "instructions": "be brief", "max_output_tokens": 50,
        "temperature": 0.5, "metadata": {"team": "a"}, "store": true, "user": "u-1",
        "service_tier": "flex", "include": ["reasoning.encrypted_content"]
    });
    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-backend"), Some("oa"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert_eq!(v["object"], "response");
    assert!(v["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "fake-model");
    assert!(v["error"].is_null() && v["incomplete_details"].is_null(), "{v}");
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{v}");
    assert_eq!(output[0]["type"], "message");
    assert!(output[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(output[0]["status"], "completed");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(
        output[0]["content"],
        json!([{"type": "output_text", "text": "Hello there", "annotations": [], "logprobs": []}])
    );
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["usage"]["output_tokens"], 2);
    assert_eq!(v["usage"]["total_tokens"], 12);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
    // The echoed request, with OpenAI's defaults; `store` says what happened, not what was asked.
    assert_eq!(v["store"], false);
    assert_eq!(v["instructions"], "be brief");
    assert_eq!(v["max_output_tokens"], 50);
    assert_eq!(v["temperature"], 0.5);
    assert_eq!(v["metadata"], json!({"team": "a"}));
    assert_eq!(v["user"], "u-1");
    assert_eq!(v["tools"], json!([]));
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(v["parallel_tool_calls"], true);
    assert_eq!(v["text"], json!({"format": {"type": "text"}}));

    let up = fake.last_json().unwrap();
    assert_eq!(
        up["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]),
        "{up}"
    );
    assert_eq!(up["max_tokens"], 50);
    assert_eq!(up["temperature"], 0.5);
    assert!(up.get("metadata").is_none() && up.get("user").is_none() && up.get("store").is_none(), "{up}");
}

#[tokio::test]
async fn a_tool_loop_round_trips_through_function_call_items() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_tool_call("call_1", "add", r#"{"a":1,"b":2}"#));
    fake.push(Fake::openai_text("The sum is 3."));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;

    let first = json!({"input": [{"role": "user", "content": "add 1 and 2"}], "tools": add_tool(),
                       "tool_choice": "required", "parallel_tool_calls": false});
    let r = post(&gw.url, PATH, first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["status"], "completed");
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["tools"], add_tool());
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "no empty message beside the call: {v}");
    let call = &output[0];
    assert_eq!(call["type"], "function_call");
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(call["call_id"], "call_1");
    assert_eq!(call["name"], "add");
    assert_eq!(call["status"], "completed");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"a": 1, "b": 2}));
    let up = fake.last_json().unwrap();
    assert_eq!(up["tools"][0]["function"]["name"], "add", "{up}");
    assert_eq!(up["tools"][0]["function"]["parameters"], add_tool()[0]["parameters"]);
    assert_eq!(up["tool_choice"], "required");
    assert_eq!(up["parallel_tool_calls"], false);

    // The next turn, as the SDKs build it: the input so far, the output items as they came
    // (a reasoning item among them), and the tool's result.
    let second = json!({
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add 1 and 2"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            call,
            {"type": "function_call_output", "call_id": "call_1", "output": "3"}
        ],
        "tools": add_tool()
    });
    let r = post(&gw.url, PATH, second).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["output"][0]["content"][0]["text"], "The sum is 3.");
    let up = fake.last_json().unwrap();
    let messages = up["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{up}");
    assert_eq!(messages[0], json!({"role": "user", "content": "add 1 and 2"}));
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(messages[1]["tool_calls"][0]["function"]["name"], "add");
    let sent: Value =
        serde_json::from_str(messages[1]["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
            .unwrap();
    assert_eq!(sent, json!({"a": 1, "b": 2}));
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], "call_1");
    assert_eq!(messages[2]["content"], "3");
}

#[tokio::test]
async fn json_schema_format_reaches_the_provider_and_is_echoed() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text(r#"{"answer":4}"#));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let format = json!({"type": "json_schema", "name": "answer", "strict": true,
                        "schema": {"type": "object", "properties": {"answer": {"type": "integer"}},
                                   "required": ["answer"], "additionalProperties": false}});
    let body = json!({"input": "2+2?", "text": {"format": format}, "reasoning": {"effort": "low"}});
    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["text"]["format"], format);
    assert_eq!(v["reasoning"], json!({"effort": "low", "summary": null}));
    assert_eq!(v["output"][0]["content"][0]["text"], r#"{"answer":4}"#);
    let up = fake.last_json().unwrap();
    assert_eq!(up["response_format"]["type"], "json_schema", "{up}");
    assert_eq!(up["response_format"]["json_schema"]["name"], "answer");
    assert_eq!(up["response_format"]["json_schema"]["strict"], true);
    assert_eq!(up["response_format"]["json_schema"]["schema"], format["schema"]);
    assert_eq!(up["reasoning_effort"], "low");
}

#[tokio::test]
async fn an_answer_cut_by_max_output_tokens_is_incomplete() {
    let fake = FakeServer::start().await;
    fake.push(openai_answer(json!({"role": "assistant", "content": "The answer is"}), "length"));
    fake.push(Fake::sse(vec![
        openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        openai_chunk(json!({"content": "The answer"}), Value::Null),
        openai_chunk(json!({}), json!("length")),
        "data: [DONE]".to_owned(),
    ]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;

    let r = post(&gw.url, PATH, json!({"input": "why?", "max_output_tokens": 3})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(v["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(v["output"][0]["status"], "incomplete");
    assert_eq!(v["output"][0]["content"][0]["text"], "The answer is");

    let r = post(&gw.url, PATH, json!({"input": "why?", "max_output_tokens": 3, "stream": true})).await;
    let ev = responses_events(&r);
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "response.incomplete", "{}", r.text);
    assert!(!names(&ev).contains(&"response.completed"));
    assert_eq!(data["response"]["status"], "incomplete");
    assert_eq!(data["response"]["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(data["response"]["output"][0]["status"], "incomplete");
    assert_eq!(data["response"]["output"][0]["content"][0]["text"], "The answer");
}

#[tokio::test]
async fn a_stream_is_the_typed_event_sequence_in_order() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_stream(&["Hel", "lo"]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(&gw.url, PATH, json!({"model": "oa", "input": "hi", "stream": true})).await;
    let ev = responses_events(&r);
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{}",
        r.text
    );
    let created = &ev[0].1["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert!(created["usage"].is_null());
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"));

    let added = &ev[2].1;
    assert_eq!(added["output_index"], 0);
    assert_eq!(added["item"]["type"], "message");
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["content"], json!([]));
    let item_id = added["item"]["id"].as_str().unwrap();
    assert_eq!(
        ev[3].1["part"],
        json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []})
    );
    for (delta, text) in ev[4..6].iter().zip(["Hel", "lo"]) {
        let d = &delta.1;
        assert_eq!(
            (d["item_id"].as_str(), d["output_index"].as_u64(), d["content_index"].as_u64()),
            (Some(item_id), Some(0), Some(0))
        );
        assert_eq!(d["delta"], text);
        assert_eq!(d["logprobs"], json!([]));
    }
    assert_eq!(ev[6].1["text"], "Hello");
    assert_eq!(ev[7].1["part"]["text"], "Hello");
    assert_eq!(ev[8].1["item"]["status"], "completed");
    assert_eq!(ev[8].1["item"]["content"][0]["text"], "Hello");

    let done = &ev[9].1["response"];
    assert_eq!(done["id"], id, "one response id across the stream");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["id"], item_id);
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["input_tokens"], 10);
    assert_eq!(done["usage"]["output_tokens"], 2);
    assert_eq!(done["usage"]["total_tokens"], 12);
    assert_eq!(done["store"], false);
}

#[tokio::test]
async fn a_streamed_tool_call_is_a_function_call_item_with_argument_deltas() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_stream_tool_call("call_2", "add", &["{\"a\":", "1}"]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let r = post(&gw.url, PATH, json!({"input": "add", "tools": add_tool(), "stream": true})).await;
    let ev = responses_events(&r);
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{}",
        r.text
    );
    let item = &ev[2].1["item"];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["call_id"], "call_2");
    assert_eq!(item["name"], "add");
    assert_eq!(item["arguments"], "");
    assert_eq!(item["status"], "in_progress");
    let item_id = item["id"].as_str().unwrap();
    assert!(ev[3..5].iter().all(|(_, d)| d["item_id"] == item_id && d["output_index"] == 0));
    assert_eq!(ev[5].1["arguments"], "{\"a\":1}");
    assert_eq!(ev[6].1["item"]["arguments"], "{\"a\":1}");
    assert_eq!(ev[6].1["item"]["status"], "completed");
    let done = &ev[7].1["response"];
    assert_eq!(done["output"].as_array().unwrap().len(), 1, "{done}");
    assert_eq!(done["output"][0]["call_id"], "call_2");
}

#[tokio::test]
async fn reasoning_text_is_a_reasoning_item_before_the_message() {
    let fake = FakeServer::start().await;
    fake.push(openai_answer(
        json!({"role": "assistant", "content": "4", "reasoning_content": "2 and 2 make 4"}),
        "stop",
    ));
    fake.push(Fake::sse(vec![
        openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        openai_chunk(json!({"reasoning_content": "2 and 2"}), Value::Null),
        openai_chunk(json!({"reasoning_content": " make 4"}), Value::Null),
        openai_chunk(json!({"content": "4"}), Value::Null),
        openai_chunk(json!({}), json!("stop")),
        "data: [DONE]".to_owned(),
    ]));
    let gw = start(router(vec![openai(openai_settings("qwen", &fake))])).await;

    let v = post(&gw.url, PATH, json!({"input": "2+2?"})).await.json();
    assert_eq!(v["output"][0]["type"], "reasoning", "{v}");
    assert!(v["output"][0]["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(v["output"][0]["summary"], json!([]));
    assert_eq!(v["output"][0]["content"], json!([{"type": "reasoning_text", "text": "2 and 2 make 4"}]));
    assert_eq!(v["output"][1]["content"][0]["text"], "4");

    let r = post(&gw.url, PATH, json!({"input": "2+2?", "stream": true})).await;
    let ev = responses_events(&r);
    assert_eq!(
        names(&ev)[2..],
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{}",
        r.text
    );
    assert_eq!(ev[3].1["part"], json!({"type": "reasoning_text", "text": ""}));
    assert_eq!(ev[6].1["text"], "2 and 2 make 4");
    assert_eq!(ev[9].1["output_index"], 1);
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "2 and 2 make 4");
    assert_eq!(done["output"][1]["content"][0]["text"], "4");
}

#[tokio::test]
async fn what_a_stateless_router_cannot_do_is_refused_before_any_upstream_call() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("never"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let cases = [
        (json!({"input": "x", "previous_response_id": "resp_123"}), "previous_response_id"),
        (json!({"input": "x", "conversation": "conv_123"}), "conversation"),
        (json!({"input": "x", "background": true}), "background"),
        (json!({"input": "x", "prompt": {"id": "pmpt_1"}}), "prompt"),
        // Served by Claude's web search, which this fleet has no backend for.
        (json!({"input": "x", "tools": [{"type": "web_search"}]}), "tools[0]"),
        (
            json!({"input": "x", "tools": [add_tool()[0].clone(), {"type": "code_interpreter", "container": {"type": "auto"}}]}),
            "tools[1].type",
        ),
        (
            json!({"input": [{"role": "user", "content": [
                {"type": "input_text", "text": "what is this?"},
                {"type": "input_image", "file_id": "file-1"}]}]}),
            "input[0].content[1].file_id",
        ),
        (json!({"input": [{"type": "item_reference", "id": "msg_1"}]}), "input[0]"),
        (
            json!({"input": [{"type": "file_search_call", "id": "fs_1", "status": "completed"}]}),
            "input[0].type",
        ),
        (
            json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}]}),
            "input[0].arguments",
        ),
        (json!({"input": "x", "tool_choice": {"type": "function", "name": "add"}}), "tool_choice"),
        (json!({"input": "x", "reasoning": {"effort": "max"}}), "reasoning.effort"),
        (json!({"input": "x", "max_output_tokens": "many"}), "max_output_tokens"),
        (json!({"model": "auto"}), "input"),
    ];
    for (body, param) in cases {
        let r = post(&gw.url, PATH, body.clone()).await;
        assert_eq!(refused(&r), param, "{body}: {}", r.text);
    }
    let msg = post(&gw.url, PATH, json!({"input": "x", "previous_response_id": "resp_1"})).await.json();
    assert!(msg["error"]["message"].as_str().unwrap().contains("stateless"), "{msg}");
    let msg = post(&gw.url, PATH, json!({"input": "x", "tools": [{"type": "file_search"}]})).await.json();
    assert!(msg["error"]["message"].as_str().unwrap().contains("file_search"), "{msg}");
    let msg = post(&gw.url, PATH, json!({"input": "x", "tools": [{"type": "web_search"}]})).await.json();
    let msg = msg["error"]["message"].as_str().unwrap();
    assert!(msg.contains("web search") && msg.contains("`anthropic`"), "{msg}");
    assert_eq!(fake.post_requests(), 0);
    // An unknown model is the same local 404 as on chat completions.
    let r = post(&gw.url, PATH, json!({"model": "gpt-nope", "input": "x"})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(fake.post_requests(), 0);
}

#[tokio::test]
async fn a_failure_before_the_first_token_fails_over_invisibly() {
    let bad = FakeServer::start().await;
    let good = FakeServer::start().await;
    bad.set_default(Fake::openai_error(500, "server_error", None, "boom"));
    good.set_default(Fake::openai_stream(&["saved"]));
    let r = router(vec![openai(openai_settings("bad", &bad)), openai(openai_settings("good", &good))]);
    r.set_failover_chain(["bad", "good"]).unwrap();
    let gw = start(r).await;
    let resp = post(&gw.url, PATH, json!({"input": "x", "stream": true})).await;
    let ev = responses_events(&resp);
    assert_eq!(resp.header("x-claudette-backend"), Some("good"));
    assert_eq!(resp.header("x-claudette-attempts"), Some("2"));
    assert!(!resp.text.contains("boom"), "{}", resp.text);
    assert!(!names(&ev).contains(&"error"));
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(data["response"]["output"][0]["content"][0]["text"], "saved");
}

#[tokio::test]
async fn a_failure_after_commit_ends_with_error_and_response_failed() {
    let cut = FakeServer::start().await;
    let spare = FakeServer::start().await;
    // role, "par", "tial" — then the connection is aborted.
    cut.push(Fake::openai_stream(&["par", "tial", "never"]).cut_after(3));
    let r = router(vec![openai(openai_settings("cut", &cut)), openai(openai_settings("spare", &spare))]);
    r.set_failover_chain(["cut", "spare"]).unwrap();
    let gw = start(r).await;
    let resp = post(&gw.url, PATH, json!({"input": "x", "stream": true})).await;
    let ev = responses_events(&resp);
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "partial");
    let n = names(&ev);
    assert_eq!(n[n.len() - 2..], ["error", "response.failed"], "{}", resp.text);
    assert!(!n.contains(&"response.completed") && !n.contains(&"response.output_item.done"), "{}", resp.text);
    let error = &ev[ev.len() - 2].1;
    assert_eq!(error["code"], "stream_interrupted", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error.as_object().unwrap().contains_key("param"));
    let failed = &ev.last().unwrap().1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
    assert_eq!(failed["output"][0]["status"], "incomplete");
    assert_eq!(failed["output"][0]["content"][0]["text"], "partial");
    assert_eq!(spare.post_requests(), 0, "no failover after commit");
}

#[tokio::test]
async fn keys_limits_and_metrics_apply_to_the_endpoint() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("ok"));
    let key = "gw-responses-key-0001";
    let options = GatewayOptions {
        api_keys: vec![KeyEntry::from_plain("team", key).with_rpm(NonZeroU32::new(3).unwrap())],
        max_body_bytes: 4096,
        ..GatewayOptions::default()
    };
    let gw = start_with(router(vec![openai(openai_settings("oa", &fake))]), options).await;
    let body = json!({"input": "x"});

    let anon = post(&gw.url, PATH, body.clone()).await;
    assert_eq!(anon.status, 401, "{}", anon.text);
    assert_eq!(anon.json()["error"]["code"], "invalid_api_key");
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str())];
    let wrong_method = get(&gw.url, PATH, &headers).await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text);
    assert_eq!(wrong_method.json()["error"]["code"], "method_not_allowed");
    let big = json!({"input": "x".repeat(8192)});
    let too_big = post_with(&gw.url, PATH, big, &headers).await;
    assert_eq!(too_big.status, 413, "{}", too_big.text);
    assert!(too_big.json()["error"]["message"].is_string());
    assert_eq!(fake.post_requests(), 0);

    // The 413 spent one of the three a minute; the 405 none (only a POST is a call).
    for _ in 0..2 {
        let ok = post_with(&gw.url, PATH, body.clone(), &headers).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
    }
    let limited = post_with(&gw.url, PATH, body, &headers).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.json()["error"]["type"], "rate_limit_error");
    assert_eq!(fake.post_requests(), 2);

    let metrics = get(&gw.url, "/metrics", &headers).await.text;
    assert!(
        metrics.contains(r#"claudette_gateway_requests_total{endpoint="responses",status="401"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"claudette_gateway_requests_total{endpoint="responses",status="405"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"claudette_gateway_requests_total{endpoint="responses",status="200"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"endpoint="responses",reason="key_rate""#), "{metrics}");
}

// ------------------------------------------------------------------------------------------
// Claude's signed thinking through a stateless tool loop (`encrypted_content`).

fn read_tool() -> Value {
    json!([{"type": "function", "name": "read", "parameters": {"type": "object"}}])
}

/// The thinking blocks of `thought_then_called`, as Anthropic must get them back.
fn thinking_blocks() -> [Value; 2] {
    [
        json!({"type": "thinking", "thinking": "need the file", "signature": "SIG1"}),
        json!({"type": "redacted_thinking", "data": "OPAQUE"}),
    ]
}

/// An Anthropic answer that thought (a signed block, a redacted one), then called `read`.
fn thought_then_called() -> Fake {
    let [signed, redacted] = thinking_blocks();
    Fake::json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": [signed, redacted,
                           {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}],
               "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 20}}),
    )
}

/// The same answer streamed, as Anthropic streams it.
fn thought_then_called_stream() -> Fake {
    let block = |index: u32, kind: &str, body: Value| {
        let mut frames = vec![(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": body}),
        )];
        if kind != "redacted_thinking" {
            frames.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": match kind {
                    "thinking" => json!({"type": "thinking_delta", "thinking": "need the file"}),
                    _ => json!({"type": "input_json_delta", "partial_json": "{\"path\":\"/x\"}"}),
                }}),
            ));
        }
        if kind == "thinking" {
            frames.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "signature_delta", "signature": "SIG1"}}),
            ));
        }
        frames.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        frames
    };
    let mut frames = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
               "role": "assistant", "model": "claude-fake", "content": [], "stop_reason": null,
               "usage": {"input_tokens": 5, "output_tokens": 1}}}),
    )];
    frames.extend(block(0, "thinking", json!({"type": "thinking", "thinking": ""})));
    frames.extend(block(1, "redacted_thinking", thinking_blocks()[1].clone()));
    frames.extend(block(
        2,
        "tool_use",
        json!({"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}),
    ));
    frames.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
    ));
    frames.push(("message_stop", json!({"type": "message_stop"})));
    Fake::sse(frames.into_iter().map(|(name, data)| format!("event: {name}\ndata: {data}")).collect())
}

/// Checks the reasoning items of `thought_then_called`: one per block, each sealed.
fn check_sealed(output: &[Value]) {
    assert_eq!(output.len(), 3, "{output:?}");
    for item in &output[..2] {
        assert_eq!(item["type"], "reasoning", "{item}");
        assert!(item["id"].as_str().unwrap().starts_with("rs_"), "{item}");
        assert_eq!(item["summary"], json!([]));
        assert_eq!(item["status"], "completed");
        let sealed = item["encrypted_content"].as_str().unwrap_or_else(|| panic!("not sealed: {item}"));
        assert!(sealed.starts_with("claudette:1:"), "{sealed}");
    }
    assert_eq!(output[0]["content"], json!([{"type": "reasoning_text", "text": "need the file"}]));
    assert_eq!(output[1]["content"], json!([]), "a redacted block has no text");
    assert_eq!(output[2]["type"], "function_call");
    assert_eq!(output[2]["call_id"], "toolu_1");
}

/// Sends `output` back after the user's turn with the tool's result, and checks the assistant
/// turn Anthropic gets starts with the signed blocks, thinking still on.
async fn continue_the_loop(gw: &str, claude: &FakeServer, output: Vec<Value>) {
    let mut input = vec![json!({"role": "user", "content": "read /x"})];
    input.extend(output);
    input.push(json!({"type": "function_call_output", "call_id": "toolu_1", "output": "42"}));
    let body = json!({"input": input, "tools": read_tool(), "reasoning": {"effort": "high"},
                      "store": false, "include": ["reasoning.encrypted_content"]});
    let r = post(gw, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    let [signed, redacted] = thinking_blocks();
    assert_eq!(sent["messages"][1]["role"], "assistant", "{sent}");
    assert_eq!(
        sent["messages"][1]["content"],
        json!([signed, redacted, {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/x"}}]),
        "{sent}"
    );
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_1", "{sent}");
    assert!(sent["thinking"].is_object() && sent["thinking"]["type"] != "disabled", "{sent}");
}

#[tokio::test]
async fn claudes_signed_thinking_goes_out_sealed_and_leads_the_turn_it_comes_back_on() {
    let claude = FakeServer::start().await;
    claude.push(thought_then_called());
    claude.push(Fake::anthropic_text("The file says 42."));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let first = json!({"input": "read /x", "tools": read_tool(), "reasoning": {"effort": "high"},
                       "store": false, "include": ["reasoning.encrypted_content"]});
    let r = post(&gw.url, PATH, first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut output = r.json()["output"].as_array().unwrap().clone();
    check_sealed(&output);

    // Codex sends reasoning items back without their `reasoning_text` content: the seal is
    // the whole block.
    for item in &mut output[..2] {
        item.as_object_mut().unwrap().remove("content");
    }
    continue_the_loop(&gw.url, &claude, output).await;
}

#[tokio::test]
async fn a_streamed_answer_seals_each_block_in_its_item_done_and_in_the_completed_response() {
    let claude = FakeServer::start().await;
    claude.push(thought_then_called_stream());
    claude.push(Fake::anthropic_text("The file says 42."));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let first = json!({"input": "read /x", "tools": read_tool(), "reasoning": {"effort": "high"},
                       "stream": true});
    let r = post(&gw.url, PATH, first).await;
    let ev = responses_events(&r);
    let done: Vec<Value> =
        ev.iter().filter(|(n, _)| n == "response.output_item.done").map(|(_, d)| d["item"].clone()).collect();
    check_sealed(&done);
    let (last, completed) = ev.last().unwrap();
    assert_eq!(last, "response.completed", "{}", r.text);
    let output = completed["response"]["output"].as_array().unwrap().clone();
    assert_eq!(output, done, "the final response holds the items as they were done");

    // The Agents SDK sends the items back exactly as it got them.
    continue_the_loop(&gw.url, &claude, output).await;
}

#[tokio::test]
async fn a_seal_that_cannot_be_read_is_refused_naming_it_before_any_upstream_call() {
    let claude = FakeServer::start().await;
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    for corrupt in [
        "claudette:1:@@not base64@@",
        // Base64 of `not json`; of a block without its signature; of a version to come.
        "claudette:1:bm90IGpzb24=",
        "claudette:1:eyJ0eXBlIjoidGhpbmtpbmciLCJ0aGlua2luZyI6ImEifQ==",
        "claudette:2:e30=",
    ] {
        let body = json!({"input": [
            {"role": "user", "content": "read /x"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": corrupt},
            {"type": "function_call", "call_id": "toolu_1", "name": "read", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "42"}
        ]});
        let r = post(&gw.url, PATH, body).await;
        assert_eq!(refused(&r), "input[1].encrypted_content", "{corrupt}");
    }
    assert_eq!(claude.requests(), 0);
}
