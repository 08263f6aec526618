//! An Anthropic client of a self-hosted model (vLLM, SGLang) is told which of its
//! `stop_sequences` ended the answer, as Anthropic would tell it: the server's non-standard
//! `stop_reason` beside `finish_reason: "stop"` becomes `stop_reason: "stop_sequence"` and
//! `stop_sequence: "<the string>"`, JSON and stream, over real HTTP in front of a fake vLLM.
//! OpenAI clients keep seeing `stop`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

fn stop_reason_answer(stop_reason: Value) -> Fake {
    Fake::json(
        200,
        json!({
            "id": "chatcmpl-vllm", "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Thought: look"},
                         "logprobs": null, "finish_reason": "stop", "stop_reason": stop_reason}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        }),
    )
}

fn stop_reason_stream(stop_reason: &str) -> Fake {
    let mut with_stop = openai_chunk(json!({"content": ""}), json!("stop"));
    with_stop = with_stop.replace(
        r#""finish_reason":"stop""#,
        &format!(r#""finish_reason":"stop","stop_reason":{stop_reason}"#),
    );
    assert!(with_stop.contains("stop_reason"), "{with_stop}");
    Fake::sse(vec![
        openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        openai_chunk(json!({"content": "Thought"}), Value::Null),
        openai_chunk(json!({"content": ": look"}), Value::Null),
        with_stop,
        "data: [DONE]".to_owned(),
    ])
}

fn messages(stream: bool) -> Value {
    json!({"model": "auto", "max_tokens": 64, "stop_sequences": ["Observation:"], "stream": stream,
           "messages": user("x")})
}

#[tokio::test]
async fn messages_clients_are_told_the_stop_sequence_a_vllm_server_matched() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![openai(openai_settings("vllm", &fake))])).await;

    fake.push(stop_reason_answer(json!("Observation:")));
    let r = post(&gw.url, "/v1/messages", messages(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (&v["stop_reason"], &v["stop_sequence"]),
        (&json!("stop_sequence"), &json!("Observation:")),
        "{v}"
    );
    assert_eq!(fake.last_json().unwrap()["stop"], json!(["Observation:"]));

    // A stop token's id names no string: a plain end of turn.
    fake.push(stop_reason_answer(json!(151_645)));
    let v = post(&gw.url, "/v1/messages", messages(false)).await.json();
    assert_eq!((&v["stop_reason"], &v["stop_sequence"]), (&json!("end_turn"), &Value::Null), "{v}");

    fake.push(stop_reason_stream(r#""Observation:""#));
    let s = post(&gw.url, "/v1/messages", messages(true)).await;
    assert_eq!(s.status, 200, "{}", s.text);
    let frames = s.frames();
    assert_eq!(anthropic_text(&frames), "Thought: look");
    let delta = &event_data(&frames, "message_delta")[0]["delta"];
    assert_eq!(
        (&delta["stop_reason"], &delta["stop_sequence"]),
        (&json!("stop_sequence"), &json!("Observation:")),
        "{delta}"
    );

    // OpenAI clients: `stop`, as before.
    fake.push(stop_reason_answer(json!("Observation:")));
    let o =
        post(&gw.url, "/v1/chat/completions", json!({"messages": user("x"), "stop": ["Observation:"]})).await;
    assert_eq!(o.json()["choices"][0]["finish_reason"], "stop", "{}", o.text);
}
