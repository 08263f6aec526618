//! What the Anthropic adapter's HTTP tests share: one backend on the fake server, the wire
//! blocks the image and document tests expect, and the round those tests make (send, stream,
//! count), so that every test checks the same three calls the same way.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, Image, ImageSource, StreamEvent, ToolSpec};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

/// A 1×1 PNG, base64.
pub const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==";

pub fn backend(fake: &FakeServer) -> impl Backend {
    let settings =
        BackendSettings::new("claude").base_url(fake.url()).model("claude-sonnet-4-5").api_key("sk-ant-test");
    claudette_anthropic::backend(&settings).unwrap()
}

/// [`PNG`] as an image at `at`.
pub fn png_at(at: u32) -> Image {
    Image { at, source: ImageSource::Base64 { media_type: "image/png".into(), data: PNG.into() } }
}

/// The image at `url`, at `at`.
pub fn url_image_at(at: u32, url: &str) -> Image {
    Image { at, source: ImageSource::Url { url: url.into() } }
}

/// [`PNG`]'s `image` block.
pub fn png() -> Value {
    json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
}

/// The `image` block of the image at `url`.
pub fn url_image(url: &str) -> Value {
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

pub fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

/// `block` with the `cache_control` a breakpoint of `ttl` puts on it (`None`: the default
/// five minutes, written without a `ttl`).
pub fn cached(mut block: Value, ttl: Option<&str>) -> Value {
    block["cache_control"] = match ttl {
        None => json!({"type": "ephemeral"}),
        Some(ttl) => json!({"type": "ephemeral", "ttl": ttl}),
    };
    block
}

/// Sends `request` whole (answered with `answer` joined) and streamed (answered in `answer`'s
/// pieces), checking the answer and that the stream ends.
pub async fn send_and_stream(
    backend: &impl Backend,
    fake: &FakeServer,
    request: &ChatRequest,
    answer: &[&str],
) {
    let whole = answer.concat();
    fake.push(Reply::anthropic_text(&whole));
    assert_eq!(backend.send(request).await.unwrap().content, whole);
    fake.push(Reply::anthropic_stream(answer));
    let events: Vec<_> = backend.send_stream(request).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
}

/// Sends, streams and counts `request` on a fresh fake server ([`send_and_stream`], then a
/// count answered with `tokens`), and checks that all three bodies carry `system` and
/// `messages`: a message, its stream and its count must never disagree on what was asked.
pub async fn assert_sent_streamed_and_counted(
    request: &ChatRequest,
    answer: &[&str],
    tokens: u32,
    system: &str,
    messages: &Value,
) {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    send_and_stream(&backend, &fake, request, answer).await;
    fake.push(Reply::json(200, json!({"input_tokens": tokens})));
    assert_eq!(backend.count_tokens(request).await.unwrap(), tokens);

    let received = fake.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/messages", "/v1/messages", "/v1/messages/count_tokens"]);
    for up in &received {
        let body = up.json();
        assert_eq!(body["system"], system, "{body}");
        assert_eq!(&body["messages"], messages, "{}", up.text());
    }
}

/// One SSE frame of Anthropic's stream, for tests that write a stream by hand.
pub fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}")
}

pub fn block_start(index: u32, block: Value) -> String {
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

pub fn delta(index: u32, delta: Value) -> String {
    event("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}))
}

pub fn stop(index: u32) -> String {
    event("content_block_stop", json!({"type": "content_block_stop", "index": index}))
}

/// A function tool taking an empty object.
pub fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: String::new(),
        parameters: json!({"type": "object", "properties": {}}),
        cache: None,
        strict: false,
    }
}

/// Settings of the Claude backend `name` on the fake server, at the fake's model, with a
/// canary key that names it.
pub fn claude_settings(name: &str, fake: &FakeServer) -> BackendSettings {
    BackendSettings::new(name)
        .base_url(fake.url())
        .api_key(format!("sk-ant-api03-canary-{name}-0123456789"))
        .model(claudette_testkit::shapes::CLAUDE_FAKE_MODEL)
}
