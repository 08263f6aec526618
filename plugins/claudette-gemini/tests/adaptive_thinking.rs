//! Adaptive thinking (the model decides how much to think) reaches Gemini as its dynamic
//! budget, over real HTTP on 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, ReasoningEffort, Thinking};
use claudette_testkit::{FakeServer, Reply};
use serde_json::json;

fn settings(server: &FakeServer) -> BackendSettings {
    BackendSettings::new("gemini-test")
        .model("gemini-2.5-pro")
        .api_key("AIzaSyCANARYkey0123456789abcdefghijklm")
        .base_url(format!("{}/v1beta", server.url()))
}

#[tokio::test]
async fn adaptive_thinking_is_the_dynamic_budget() {
    let server = FakeServer::start().await;
    let backend = claudette_gemini::backend(&settings(&server)).unwrap();
    server.push(Reply::gemini_text("ok"));
    // Gemini has no effort knob: the output effort is left out, the dynamic budget stays.
    let request = ChatRequest {
        thinking: Some(Thinking::Adaptive),
        output_effort: Some(ReasoningEffort::Low),
        ..ChatRequest::prompt("hi")
    };
    backend.send(&request).await.unwrap();
    let config = &server.last_json().unwrap()["generationConfig"];
    assert_eq!(config["thinkingConfig"], json!({"thinkingBudget": -1, "includeThoughts": true}), "{config}");

    // The levels above high are Gemini 2.5 Pro's largest budget.
    server.push(Reply::gemini_text("ok"));
    let request = ChatRequest {
        thinking: Some(Thinking::Effort { effort: ReasoningEffort::Max }),
        ..ChatRequest::prompt("hi")
    };
    backend.send(&request).await.unwrap();
    let config = &server.last_json().unwrap()["generationConfig"];
    assert_eq!(config["thinkingConfig"]["thinkingBudget"], 32_768, "{config}");
}
