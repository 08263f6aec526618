//! What the Ollama adapter's image and document tests share: one vision backend on the fake
//! server and the tool calls their loops make.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{BackendSettings, ToolCall};
use claudette_testkit::FakeServer;
use serde_json::json;

pub fn backend(server: &FakeServer) -> claudette_ollama::OllamaBackend {
    claudette_ollama::backend(&BackendSettings::new("ollama-vision").model("llava").base_url(server.url()))
        .unwrap()
}

/// A call to `name` with no arguments.
pub fn call(id: &str, name: &str) -> ToolCall {
    ToolCall { id: id.into(), name: name.into(), arguments: json!({}) }
}
