//! A tool's `strict` as the Anthropic adapter sends it, over real HTTP to a fake server: on
//! that tool, beside its `input_schema`, with no beta header (strict tool use is generally
//! available), in message and token-count bodies alike, and nowhere when no tool asks for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, StreamEvent, ToolSpec};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

fn tool(name: &str, strict: bool) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: "Weather of a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "additionalProperties": false}),
        cache: None,
        strict,
    }
}

fn request(strict: bool) -> ChatRequest {
    ChatRequest { tools: vec![tool("weather", strict), tool("time", false)], ..ChatRequest::prompt("Oslo?") }
}

fn backend(fake: &FakeServer) -> impl Backend {
    let settings =
        BackendSettings::new("claude").base_url(fake.url()).model("claude-sonnet-4-5").api_key("sk-ant-test");
    claudette_anthropic::backend(&settings).unwrap()
}

#[tokio::test]
async fn strict_goes_on_the_tool_that_asked() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    fake.push(Reply::anthropic_text("fine"));
    assert_eq!(backend.send(&request(true)).await.unwrap().content, "fine");
    fake.push(Reply::anthropic_stream(&["fine"]));
    let events: Vec<_> = backend.send_stream(&request(true)).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    fake.push(Reply::json(200, json!({"input_tokens": 42})));
    assert_eq!(backend.count_tokens(&request(true)).await.unwrap(), 42);
    let received = fake.received();
    assert_eq!(received.len(), 3);
    for r in &received {
        let body = r.json();
        assert_eq!(body["tools"][0]["strict"], true, "{}: {body}", r.path);
        assert!(body["tools"][1].get("strict").is_none(), "{}: {body}", r.path);
        assert_eq!(r.header("anthropic-beta"), None, "{}", r.path);
    }
}

#[tokio::test]
async fn without_strict_no_key_is_written() {
    let fake = FakeServer::start().await;
    fake.push(Reply::anthropic_text("fine"));
    backend(&fake).send(&request(false)).await.unwrap();
    let body = fake.received()[0].text();
    assert!(!body.contains("strict"), "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["tools"][0],
        json!({"name": "weather", "description": "Weather of a city",
            "input_schema": tool("weather", false).parameters})
    );
}
