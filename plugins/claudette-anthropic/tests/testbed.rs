//! Conformance against a server nobody on the team wrote: llama.cpp's `llama-server` and its
//! Anthropic-compatible `/v1/messages` (the testbed in `shared/testbed`, model `tiny-llama`,
//! any key). Skipped with a `skipped: …` line when the server does not answer its readiness URL.
//!
//! Quirks of this server that the assertions allow for (testbed README): ids start with
//! `chatcmpl-`, no `ping` events, errors use the OpenAI envelope, a stop sequence ends the turn
//! with `end_turn` (plus `stop_sequence`).
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_anthropic::ClaudeBackend;
use claudette_core::{
    Backend, BackendSettings, BackendType, ChatRequest, ErrorKind, FinishReason, Message, StreamEvent,
    ToolCall, ToolSpec, UsageSource,
};
use futures::StreamExt;
use serde_json::json;

const BASE: &str = "http://127.0.0.1:39180";

/// The backend, or `None` (after printing why) when the testbed is not running.
async fn testbed(test: &str) -> Option<ClaudeBackend> {
    let client = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().unwrap();
    let up = matches!(client.get(format!("{BASE}/health")).send().await, Ok(r) if r.status().is_success());
    if !up {
        println!(
            "skipped: {test}: llama-server is not answering {BASE}/health (start shared/testbed/start.sh llama)"
        );
        return None;
    }
    let s = BackendSettings::new("llama-anthropic").base_url(BASE).api_key("any-key").model("tiny-llama");
    Some(claudette_anthropic::backend(&s).unwrap())
}

fn say_hi() -> ChatRequest {
    ChatRequest::prompt("Say hi").with_temperature(0.0).with_max_tokens(8)
}

#[tokio::test]
async fn non_stream_answer_and_usage() {
    let Some(b) = testbed("non_stream_answer_and_usage").await else { return };
    assert_eq!(b.info().backend_type, BackendType::SelfHosted);
    let r = b.send(&say_hi()).await.unwrap();
    assert!(!r.content.is_empty());
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(r.model, "tiny-llama");
    assert_eq!(r.usage.source, UsageSource::Reported);
    assert_eq!(r.usage.output_tokens, 8);
    // llama.cpp reports prompt-cache hits as cache reads; they are part of the prompt.
    assert!(r.usage.input_tokens >= r.usage.cache_read_tokens && r.usage.input_tokens > 0);
    assert_eq!(r.cost, 0.0, "a local model is free unless priced in settings");
}

#[tokio::test]
async fn stop_sequence_ends_the_turn() {
    let Some(b) = testbed("stop_sequence_ends_the_turn").await else { return };
    let mut req = say_hi();
    req.stop = vec!["_conn".into()];
    let r = b.send(&req).await.unwrap();
    assert_eq!(r.content, "oproject靳");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
}

#[tokio::test]
async fn stream_matches_non_stream() {
    let Some(b) = testbed("stream_matches_non_stream").await else { return };
    let whole = b.send(&say_hi()).await.unwrap();
    let events: Vec<StreamEvent> = b.send_stream(&say_hi()).await.unwrap().collect().await;
    assert!(matches!(events.first(), Some(StreamEvent::Usage { .. })), "{events:?}");
    let text: String = events
        .iter()
        .filter_map(|e| if let StreamEvent::TextDelta { text } = e { Some(text.as_str()) } else { None })
        .collect();
    assert_eq!(text, whole.content, "temperature 0 is deterministic on this server");
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::Length));
    assert_eq!(end.usage.output_tokens, 8);
    assert_eq!(end.usage.source, UsageSource::Reported);
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
}

#[tokio::test]
async fn tool_history_is_accepted() {
    // The server cannot be made to call a tool (random weights), but it must accept the
    // shapes we send for a tool conversation: tool_use blocks, merged tool_result turns.
    let Some(b) = testbed("tool_history_is_accepted").await else { return };
    let mut req = ChatRequest::new(vec![
        Message::system("Be brief."),
        Message::user("Weather in Paris and the time?"),
        Message {
            tool_calls: vec![
                ToolCall {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"}),
                },
                ToolCall { id: "toolu_2".into(), name: "now".into(), arguments: json!({}) },
            ],
            ..Message::assistant("Checking.")
        },
        Message::tool_result("toolu_1", "18°C"),
        Message::tool_result("toolu_2", "14:05"),
        Message::user("Summarise."),
    ])
    .with_max_tokens(4)
    .with_temperature(0.0);
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Weather".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        cache: None,
        strict: false,
    }];
    let r = b.send(&req).await.unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
}

#[tokio::test]
async fn prompt_over_the_window_is_context_overflow() {
    let Some(b) = testbed("prompt_over_the_window_is_context_overflow").await else { return };
    let long = "lorem ipsum dolor sit amet ".repeat(2500);
    let e = b.send(&ChatRequest::prompt(long).with_max_tokens(4)).await.unwrap_err();
    // llama.cpp answers 400 with the OpenAI envelope and `exceed_context_size_error`.
    assert_eq!(e.kind, ErrorKind::ContextOverflow, "{e}");
    assert_eq!(e.status, Some(400));
}

#[tokio::test]
async fn models_and_health() {
    let Some(b) = testbed("models_and_health").await else { return };
    b.health_check().await.unwrap();
    assert!(b.available_models().await.unwrap().iter().any(|m| m == "tiny-llama"));
}
