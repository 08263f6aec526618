//! A tool's `strict` as the OpenAI adapter sends it, over real HTTP to a fake server: inside
//! that tool's `function`, to api.openai.com and to self-hosted servers alike (every
//! OpenAI-compatible server we target takes the field), and nowhere when no tool asks for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{Backend, ChatRequest, StreamEvent, ToolSpec};
use claudette_testkit::{FakeServer, Reply};
use common::{backend, settings};
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

/// The body of each request `fake` received, as sent.
fn bodies(fake: &FakeServer) -> Vec<Value> {
    fake.received().iter().map(|r| r.json()).collect()
}

#[tokio::test]
async fn strict_goes_inside_the_function_of_the_tool_that_asked() {
    let fake = FakeServer::start().await;
    for backend_type in ["cloud", "self_hosted"] {
        let settings = settings(&fake).extra("backend_type", backend_type);
        let backend = claudette_openai::backend(&settings).unwrap();
        fake.push(Reply::openai_text("fine"));
        assert_eq!(backend.send(&request(true)).await.unwrap().content, "fine");
        fake.push(Reply::openai_stream(&["fine"]));
        let events: Vec<_> = backend.send_stream(&request(true)).await.unwrap().collect().await;
        assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    }
    let sent = bodies(&fake);
    assert_eq!(sent.len(), 4);
    for body in sent {
        assert_eq!(body["tools"][0]["function"]["strict"], true, "{body}");
        assert!(body["tools"][0].get("strict").is_none(), "{body}");
        assert!(body["tools"][1]["function"].get("strict").is_none(), "{body}");
    }
}

#[tokio::test]
async fn without_strict_no_key_is_written() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    fake.push(Reply::openai_text("fine"));
    backend.send(&request(false)).await.unwrap();
    let body = fake.received()[0].text();
    assert!(!body.contains("strict"), "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["tools"][0],
        json!({"type": "function", "function": {"name": "weather", "description": "Weather of a city",
            "parameters": tool("weather", false).parameters}})
    );
}
