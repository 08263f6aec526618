//! A tool's `strict` as the Anthropic adapter sends it, over real HTTP to a fake server: on
//! that tool, beside its `input_schema`, with no beta header (strict tool use is generally
//! available), in message and token-count bodies alike, and nowhere when no tool asks for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{Backend, ChatRequest, ToolSpec};
use claudette_testkit::{FakeServer, Reply};
use common::{backend, send_and_stream};
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

#[tokio::test]
async fn strict_goes_on_the_tool_that_asked() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    send_and_stream(&backend, &fake, &request(true), &["fine"]).await;
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
