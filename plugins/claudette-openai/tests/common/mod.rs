//! What the OpenAI adapter's HTTP tests share: one backend on the fake server, the tool calls
//! and wire parts the image and document tests build, and the round that sends one request
//! whole and streamed and checks both bodies against the `Value` builder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, StreamEvent, ToolCall};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

/// The settings of [`backend`], for a test that adds to them.
pub fn settings(fake: &FakeServer) -> BackendSettings {
    BackendSettings::new("oa").base_url(fake.v1_url()).model("gpt-4o-mini").api_key("sk-test")
}

pub fn backend(fake: &FakeServer) -> claudette_openai::OpenAiBackend {
    claudette_openai::backend(&settings(fake)).unwrap()
}

/// A call to `name` with no arguments.
pub fn call(id: &str, name: &str) -> ToolCall {
    ToolCall { id: id.into(), name: name.into(), arguments: json!({}) }
}

/// [`call`] as the assistant message's `tool_calls` carries it.
pub fn wire_call(id: &str, name: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": "{}"}})
}

/// An `image_url` content part.
pub fn image_part(url: &str) -> Value {
    json!({"type": "image_url", "image_url": {"url": url}})
}

/// Sends `request` whole and streamed, checks that the whole body is what the `Value` builder
/// makes (OpenAI's defaults: documents on), and returns the two bodies' `messages`.
pub async fn sent_messages(fake: &FakeServer, backend: &impl Backend, request: &ChatRequest) -> Vec<Value> {
    fake.push(Reply::openai_text("fine"));
    assert_eq!(backend.send(request).await.unwrap().content, "fine");
    fake.push(Reply::openai_stream(&["fine"]));
    let events: Vec<_> = backend.send_stream(request).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    let sent = fake.received();
    let options = claudette_openai::BodyOptions::new("gpt-4o-mini");
    assert_eq!(sent[sent.len() - 2].json(), claudette_openai::build_body(&options, request, false).unwrap());
    sent[sent.len() - 2..].iter().map(|up| up.json()["messages"].clone()).collect()
}
