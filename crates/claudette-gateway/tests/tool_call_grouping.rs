//! Which call a streamed tool-call fragment belongs to, as each client format shows it, over
//! real HTTP: every encoder follows one rule (`claudette_core::ToolCallSlots`), so the three
//! formats agree on a stream's calls.
//!
//! The backend behind the gateway streams the neutral events it is given, so the fragments
//! reach the encoders exactly as a provider adapter (or a plugin) could hand them over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use claudette_core::{
    Backend, BackendError, BackendInfo, BackendRouter, BackendType, ChatRequest, ChatResponse, EventStream,
    FinishReason, Pricing, SharedBackend, StreamEnd, StreamEvent, ToolCallDelta, Usage,
};
use common::*;
use serde_json::{Value, json};

/// Streams `events` for every request.
struct Scripted {
    info: BackendInfo,
    events: Vec<StreamEvent>,
}

#[async_trait::async_trait]
impl Backend for Scripted {
    fn info(&self) -> &BackendInfo {
        &self.info
    }
    async fn send(&self, _: &ChatRequest) -> Result<ChatResponse, BackendError> {
        Err(BackendError::internal("only streamed in these tests"))
    }
    async fn send_stream(&self, _: &ChatRequest) -> Result<EventStream, BackendError> {
        Ok(Box::pin(futures::stream::iter(self.events.clone())))
    }
    async fn health_check(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn available_models(&self) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }
}

fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> StreamEvent {
    StreamEvent::ToolCall {
        delta: ToolCallDelta {
            index,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: arguments.into(),
        },
    }
}

async fn gateway(mut events: Vec<StreamEvent>) -> Running {
    events.push(StreamEvent::Done {
        end: StreamEnd {
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Usage::reported(1, 2),
            cost: 0.0,
        },
    });
    let backend = Scripted {
        info: BackendInfo {
            name: "scripted".into(),
            provider: "test".into(),
            backend_type: BackendType::SelfHosted,
            model: "m".into(),
            priority: 0,
            pricing: Pricing::FREE,
            quality: 0.5,
            supports_streaming: true,
            supports_tools: true,
            supports_images: false,
            context_window: None,
            region: None,
            tags: Vec::new(),
            enabled: true,
        },
        events,
    };
    let r = BackendRouter::new(fast_options());
    r.register_backend(Arc::new(backend) as SharedBackend).unwrap();
    start(Arc::new(r)).await
}

/// The `index` of every tool-call delta a Chat Completions stream sent.
async fn chat_indexes(gw: &Running) -> Vec<u64> {
    let body = json!({"model": "auto", "stream": true, "messages": user("go")});
    let reply = post(&gw.url, "/v1/chat/completions", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
        .frames()
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["index"].as_u64())
        .collect()
}

/// The frames of a Messages stream.
async fn messages_frames(gw: &Running) -> Vec<(Option<String>, String)> {
    let body = json!({"model": "auto", "max_tokens": 16, "stream": true, "messages": user("go")});
    let reply = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.frames()
}

/// The names of the `tool_use` blocks a Messages stream started.
fn tool_use_names(frames: &[(Option<String>, String)]) -> Vec<String> {
    event_data(frames, "content_block_start")
        .iter()
        .filter(|b| b["content_block"]["type"] == "tool_use")
        .map(|b| b["content_block"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The (name, arguments) of the function calls in a Responses stream's final response.
async fn responses_calls(gw: &Running) -> Vec<(String, String)> {
    let body = json!({"model": "auto", "stream": true, "input": "go"});
    let reply = post(&gw.url, "/v1/responses", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let done = event_data(&reply.frames(), "response.completed");
    done[0]["response"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .map(|i| (i["name"].as_str().unwrap().to_owned(), i["arguments"].as_str().unwrap().to_owned()))
        .collect()
}

/// A call whose first fragment names no id takes the one a later fragment names; a fragment
/// with yet another id at the same index is then a second call, not more arguments of the
/// first (which would give `{…}{…}`).
#[tokio::test]
async fn a_call_named_late_is_told_from_the_next_call_at_its_index() {
    let gw = gateway(vec![
        call(0, None, Some("f"), r#"{"a":"#),
        call(0, Some("a"), None, "1}"),
        call(0, Some("b"), Some("g"), "{}"),
    ])
    .await;
    assert_eq!(chat_indexes(&gw).await, [0, 0, 1]);
    let frames = messages_frames(&gw).await;
    assert_eq!(tool_use_names(&frames), ["f", "g"]);
    let deltas: Vec<String> = event_data(&frames, "content_block_delta")
        .iter()
        .map(|d| d["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, [r#"{"a":"#, "1}", "{}"]);
    assert_eq!(
        responses_calls(&gw).await,
        [("f".to_owned(), r#"{"a":1}"#.to_owned()), ("g".to_owned(), "{}".to_owned())]
    );
}

/// A fragment that names an id at the index of a closed call that had none belongs to that
/// call, as the other formats show it; the Messages stream cannot reopen its block, and says
/// so instead of starting a third call no other format has.
#[tokio::test]
async fn a_late_id_for_a_closed_call_is_that_call_in_every_format() {
    let gw = gateway(vec![
        call(0, None, Some("f"), "{"),
        call(1, Some("b"), Some("g"), "{}"),
        call(0, Some("a"), None, "}"),
    ])
    .await;
    assert_eq!(chat_indexes(&gw).await, [0, 1, 0]);
    assert_eq!(
        responses_calls(&gw).await,
        [("f".to_owned(), "{}".to_owned()), ("g".to_owned(), "{}".to_owned())]
    );
    let frames = messages_frames(&gw).await;
    assert_eq!(tool_use_names(&frames), ["f", "g"]);
    let (name, data) = frames.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{frames:?}");
    assert!(data.contains("interleaved fragments of several tool calls"), "{data}");
}
