//! Thinking in a tool loop, over real HTTP against `claudette-testkit`'s fake Anthropic server.
//!
//! Anthropic answers 400 "a final `assistant` message must start with a thinking block" to a
//! thinking request whose open tool loop does not start with Claude's signed thinking. An
//! OpenAI-format client (`reasoning_effort`, Responses `reasoning.effort`) can never send that
//! signature back, so such a loop goes up with thinking off; a loop that carries it, and a
//! conversation that ends with user text, keep thinking on.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_anthropic::ClaudeBackend;
use claudette_core::{
    Backend, BackendSettings, ChatRequest, Message, ReasoningEffort, Thinking, ThinkingBlock, ToolCall,
    ToolSpec,
};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

fn backend(server: &FakeServer, model: &str) -> ClaudeBackend {
    let settings = BackendSettings::new("claude-thinking")
        .base_url(server.url())
        .api_key("sk-ant-api03-canary-thinking-0123456789")
        .model(model);
    claudette_anthropic::backend(&settings).unwrap()
}

/// The assistant turn that asked for the weather, with `thinking` as the client sent it back.
fn weather_call(thinking: Vec<ThinkingBlock>) -> Message {
    Message {
        tool_calls: vec![ToolCall {
            id: "toolu_01".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        }],
        thinking,
        ..Message::assistant("Let me check.")
    }
}

/// A conversation of `messages` with the weather tool, asking for `thinking`.
fn request(messages: Vec<Message>, thinking: Thinking) -> ChatRequest {
    ChatRequest {
        messages,
        tools: vec![ToolSpec {
            name: "get_weather".into(),
            description: "Current weather for a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            cache: None,
            strict: false,
        }],
        max_tokens: Some(4096),
        thinking: Some(thinking),
        ..ChatRequest::default()
    }
}

/// The tool loop as an OpenAI-format client sends it: its reasoning comes back (if at all)
/// without Claude's signature.
fn unsigned_loop() -> Vec<Message> {
    vec![
        Message::system("You are terse."),
        Message::user("Weather in Paris?"),
        weather_call(vec![ThinkingBlock::Thinking {
            thinking: "The user wants the weather.".into(),
            signature: String::new(),
        }]),
        Message::tool_result("toolu_01", "18°C, cloudy"),
    ]
}

const SIGNED: &str = "EqQBCkYIBxgCKkD-signed-by-anthropic";

fn signed_loop() -> Vec<Message> {
    let mut messages = unsigned_loop();
    messages[2] = weather_call(vec![ThinkingBlock::Thinking {
        thinking: "The user wants the weather.".into(),
        signature: SIGNED.into(),
    }]);
    messages
}

fn effort(effort: ReasoningEffort) -> Thinking {
    Thinking::Effort { effort }
}

/// What the fake server received as the last request's body.
fn sent(server: &FakeServer) -> Value {
    server.received().last().unwrap().json()
}

#[tokio::test]
async fn a_tool_loop_without_a_signature_goes_up_without_thinking() {
    let server = FakeServer::start().await;
    server.set_default(Reply::anthropic_text("18°C and cloudy."));

    // reasoning_effort from an OpenAI client, on a model that takes adaptive thinking and effort.
    let b = backend(&server, "claude-opus-4-7");
    let r = b.send(&request(unsigned_loop(), effort(ReasoningEffort::High))).await.unwrap();
    assert_eq!(r.content, "18°C and cloudy.");
    let body = sent(&server);
    assert_eq!(body["thinking"], json!({"type": "disabled"}), "{body}");
    // The effort still governs the answer and the calls; Anthropic takes it without thinking.
    assert_eq!(body["output_config"], json!({"effort": "high"}), "{body}");
    // The unsigned block is not sent; the turn starts with the text Anthropic would have refused.
    assert_eq!(body["messages"][1]["content"][0], json!({"type": "text", "text": "Let me check."}));

    // The same over a stream, and with a budget on a model that takes budgets.
    server.push(Reply::anthropic_stream(&["18°C"]));
    let b = backend(&server, "claude-sonnet-4-5");
    let req = request(unsigned_loop(), Thinking::Budget { budget_tokens: 2048 });
    let events: Vec<_> = b.send_stream(&req).await.unwrap().collect().await;
    assert!(events.last().is_some_and(|e| e.is_terminal()), "{events:?}");
    let body = sent(&server);
    assert_eq!(body["stream"], true);
    assert_eq!(body["thinking"], json!({"type": "disabled"}), "{body}");

    // A count is of what the message would send.
    server.push(Reply::json(200, json!({"input_tokens": 42})));
    assert_eq!(b.count_tokens(&req).await.unwrap(), 42);
    let counted = sent(&server);
    assert_eq!(server.received().last().unwrap().path, "/v1/messages/count_tokens");
    assert_eq!(counted["thinking"], json!({"type": "disabled"}), "{counted}");
}

#[tokio::test]
async fn a_tool_loop_with_its_signed_thinking_keeps_thinking_on() {
    let server = FakeServer::start().await;
    server.set_default(Reply::anthropic_text("18°C and cloudy."));

    let b = backend(&server, "claude-sonnet-4-5");
    b.send(&request(signed_loop(), Thinking::Budget { budget_tokens: 2048 })).await.unwrap();
    let body = sent(&server);
    assert_eq!(body["thinking"], json!({"type": "enabled", "budget_tokens": 2048}), "{body}");
    let turn = &body["messages"][1]["content"];
    assert_eq!(
        turn[0],
        json!({"type": "thinking", "thinking": "The user wants the weather.", "signature": SIGNED})
    );
    assert_eq!(turn[1]["type"], "text");
    assert_eq!(turn[2]["type"], "tool_use");

    let b = backend(&server, "claude-opus-4-7");
    b.send(&request(signed_loop(), effort(ReasoningEffort::Medium))).await.unwrap();
    let body = sent(&server);
    assert_eq!(body["thinking"], json!({"type": "adaptive"}), "{body}");
    assert_eq!(body["output_config"], json!({"effort": "medium"}));
    assert_eq!(body["messages"][1]["content"][0]["signature"], SIGNED);
}

#[tokio::test]
async fn a_conversation_ending_with_user_text_keeps_thinking_on() {
    let server = FakeServer::start().await;
    server.set_default(Reply::anthropic_text("Sunny."));
    let b = backend(&server, "claude-opus-4-7");

    // The earlier loop was closed by Claude's answer; a new user turn asks for no old thinking.
    let mut messages = unsigned_loop();
    messages.push(Message::assistant("18°C and cloudy."));
    messages.push(Message::user("And tomorrow?"));
    b.send(&request(messages, effort(ReasoningEffort::High))).await.unwrap();
    let body = sent(&server);
    assert_eq!(body["thinking"], json!({"type": "adaptive"}), "{body}");
    assert_eq!(body["output_config"], json!({"effort": "high"}));

    // User text right after the results (sent in their wire turn) opens a new turn too.
    let mut messages = unsigned_loop();
    messages.push(Message::user("Be brief."));
    b.send(&request(messages, effort(ReasoningEffort::High))).await.unwrap();
    let body = sent(&server);
    assert_eq!(body["thinking"], json!({"type": "adaptive"}), "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 3, "{body}");
}
