//! vLLM's and SGLang's `stop_reason` beside `finish_reason`, over real HTTP from a fake
//! server: a `stop` that names the stop string it matched is `FinishReason::StopSequence`
//! (so an Anthropic client of a self-hosted model is told `stop_sequence` and which one); a
//! stop token's id, `null`, an empty string or no field at all leave a plain `Stop`.
//!
//! The streams are shaped as vLLM sends them: content chunks the decoder's fast paths
//! remember (same members around a changing text), then a final chunk that differs from them
//! only around `finish_reason`/`stop_reason`; a fast path must not read it as one more text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, FinishReason, StreamEvent};
use claudette_openai::OpenAiBackend;
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

const MODEL: &str = "Qwen/Qwen3-8B";

fn vllm(fake: &FakeServer) -> OpenAiBackend {
    claudette_openai::backend(&BackendSettings::new("vllm").base_url(fake.v1_url()).model(MODEL)).unwrap()
}

fn request() -> ChatRequest {
    let mut r = ChatRequest::prompt("Think, then act.");
    r.stop = vec!["Observation:".into(), "\n\n".into()];
    r
}

/// A vLLM chat completion whose choice ends with `finish` and, when given, `stop_reason`.
fn completion(finish: &str, stop_reason: Option<Value>) -> Reply {
    let mut choice = json!({
        "index": 0,
        "message": {"role": "assistant", "content": "Thought: look it up", "tool_calls": [], "reasoning_content": null},
        "logprobs": null,
        "finish_reason": finish
    });
    if let Some(stop) = stop_reason {
        choice["stop_reason"] = stop;
    }
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-vllm", "object": "chat.completion", "created": 1, "model": MODEL,
            "choices": [choice],
            "usage": {"prompt_tokens": 12, "total_tokens": 17, "completion_tokens": 5, "prompt_tokens_details": null},
            "prompt_logprobs": null
        }),
    )
}

/// A vLLM stream: three content chunks, then the final chunk with `finish` and, when given,
/// `stop_reason` (an empty content delta, as vLLM sends it), then usage and `[DONE]`.
fn stream(finish: &str, stop_reason: Option<&str>) -> Reply {
    let head =
        format!(r#"{{"id":"chatcmpl-vllm","object":"chat.completion.chunk","created":1,"model":"{MODEL}","#);
    let mut frames = vec![format!(
        r#"data: {head}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}"#
    )];
    for text in ["Thought", ":", " look it up"] {
        frames.push(format!(
            r#"data: {head}"choices":[{{"index":0,"delta":{{"content":"{text}"}},"logprobs":null,"finish_reason":null}}]}}"#
        ));
    }
    let stop = stop_reason.map(|s| format!(r#","stop_reason":{s}"#)).unwrap_or_default();
    frames.push(format!(
        r#"data: {head}"choices":[{{"index":0,"delta":{{"content":""}},"logprobs":null,"finish_reason":"{finish}"{stop}}}]}}"#
    ));
    frames.push(format!(
        r#"data: {head}"choices":[],"usage":{{"prompt_tokens":12,"total_tokens":17,"completion_tokens":5}}}}"#
    ));
    frames.push("data: [DONE]".to_owned());
    Reply::sse(frames)
}

async fn finish_of_stream(backend: &OpenAiBackend) -> (String, Option<FinishReason>) {
    let events: Vec<StreamEvent> = backend.send_stream(&request()).await.unwrap().collect().await;
    let text = claudette_testkit::events::text_of(&events);
    match events.last() {
        Some(StreamEvent::Done { end }) => (text, end.finish_reason.clone()),
        other => panic!("stream must end with Done, got {other:?} in {events:?}"),
    }
}

fn matched(s: &str) -> Option<FinishReason> {
    Some(FinishReason::StopSequence(s.to_owned()))
}

#[tokio::test]
async fn a_json_answer_names_the_stop_string_it_matched() {
    let fake = FakeServer::start().await;
    let backend = vllm(&fake);
    let cases = [
        (completion("stop", Some(json!("Observation:"))), matched("Observation:")),
        // Escaped, as JSON has it: read by the general path, same answer.
        (completion("stop", Some(json!("\n\n"))), matched("\n\n")),
        (completion("stop", Some(json!("\u{e9}t\u{e9}"))), matched("\u{e9}t\u{e9}")),
        // A stop token's id, none, or nothing said: a plain stop.
        (completion("stop", Some(json!(128_009))), Some(FinishReason::Stop)),
        (completion("stop", Some(Value::Null)), Some(FinishReason::Stop)),
        (completion("stop", Some(json!(""))), Some(FinishReason::Stop)),
        (completion("stop", None), Some(FinishReason::Stop)),
        // Only a stop is a stop sequence.
        (completion("length", Some(json!("Observation:"))), Some(FinishReason::Length)),
    ];
    for (reply, want) in cases {
        let body = reply.body_json().unwrap();
        fake.push(reply);
        let answer = backend.send(&request()).await.unwrap();
        assert_eq!(answer.content, "Thought: look it up");
        assert_eq!(answer.finish_reason, want, "{body}");
        assert_eq!(
            answer.finish_reason.as_ref().map(FinishReason::as_str),
            want.as_ref().map(|w| w.as_str())
        );
    }
    // What goes upstream is unchanged: the stop list, as OpenAI's `stop`.
    assert_eq!(fake.last_json().unwrap()["stop"], json!(["Observation:", "\n\n"]));
}

#[tokio::test]
async fn a_stream_names_the_stop_string_its_last_chunk_matched() {
    let fake = FakeServer::start().await;
    let backend = vllm(&fake);
    let cases = [
        (stream("stop", Some(r#""Observation:""#)), matched("Observation:")),
        (stream("stop", Some(r#""\n\n""#)), matched("\n\n")),
        (stream("stop", Some(r#""\u00e9t\u00e9""#)), matched("\u{e9}t\u{e9}")),
        (stream("stop", Some("128009")), Some(FinishReason::Stop)),
        (stream("stop", Some("null")), Some(FinishReason::Stop)),
        (stream("stop", Some(r#""""#)), Some(FinishReason::Stop)),
        (stream("stop", None), Some(FinishReason::Stop)),
        (stream("length", Some(r#""Observation:""#)), Some(FinishReason::Length)),
    ];
    for (reply, want) in cases {
        let frames = String::from_utf8(reply.body_bytes()).unwrap();
        fake.push(reply);
        let (text, finish) = finish_of_stream(&backend).await;
        assert_eq!(text, "Thought: look it up", "{frames}");
        assert_eq!(finish, want, "{frames}");
    }

    // A chunk with a `stop_reason` but no finish, then one that finishes without naming a
    // string: the reason and the string are read together, from the chunk that finishes.
    let chunk = |choice: &str| format!(r#"data: {{"id":"c","model":"{MODEL}","choices":[{choice}]}}"#);
    fake.push(Reply::sse(vec![
        chunk(
            r#"{"index":0,"delta":{"content":"Thought"},"finish_reason":null,"stop_reason":"Observation:"}"#,
        ),
        chunk(r#"{"index":0,"delta":{},"finish_reason":"stop","stop_reason":null}"#),
        "data: [DONE]".to_owned(),
    ]));
    let (text, finish) = finish_of_stream(&backend).await;
    assert_eq!((text.as_str(), finish), ("Thought", Some(FinishReason::Stop)));
}
