//! Images in tool results (a Read of a screenshot), and cache breakpoints on images, as the
//! Anthropic adapter sends them over real HTTP to a fake server: each `tool_result` holds its
//! `text` and `image` blocks in the client's order (no empty text beside an image, the error
//! flag kept), a breakpoint on an image puts `cache_control` on that image's block, and the
//! message, the stream and the token count all send the same blocks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{Backend, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, Image, Message, ToolCall};
use claudette_testkit::{FakeServer, Reply};
use common::{assert_sent_streamed_and_counted, backend, cached, png, png_at, text, url_image, url_image_at};
use serde_json::{Value, json};

const URL: &str = "https://example.com/screen.png";

fn url_at(at: u32) -> Image {
    url_image_at(at, URL)
}

fn on_image(index: u32, ttl: CacheTtl) -> CacheBreakpoint {
    CacheBreakpoint { at: CacheAt::Image(index), ttl }
}

fn url() -> Value {
    url_image(URL)
}

/// A Claude Code-like loop: the user shows a screenshot (its image marked for the cache), three
/// Reads run (one returns only a screenshot, marked twice; one fails with text around two
/// images and no breakpoint; one has breakpoints on its text and on its image), and the user
/// asks on. Four breakpoints, the one-hour ones first, as Anthropic requires.
fn request() -> ChatRequest {
    let read =
        |id: &str| ToolCall { id: id.into(), name: "Read".into(), arguments: json!({"file_path": "s.png"}) };
    ChatRequest::new(vec![
        Message::system("be brief"),
        Message {
            images: vec![url_at(13)],
            cache: vec![on_image(0, CacheTtl::OneHour)],
            ..Message::user("compare with ")
        },
        Message {
            tool_calls: vec![read("toolu_1"), read("toolu_2"), read("toolu_3")],
            ..Message::assistant("")
        },
        Message {
            images: vec![png_at(0)],
            cache: vec![on_image(0, CacheTtl::OneHour), on_image(0, CacheTtl::FiveMinutes)],
            ..Message::tool_result("toolu_1", "")
        },
        Message {
            images: vec![url_at(0), png_at(9)],
            ..Message::tool_error("toolu_2", "cropped: too large")
        },
        Message {
            images: vec![png_at(8)],
            cache: vec![
                CacheBreakpoint { at: CacheAt::Text(8), ttl: CacheTtl::OneHour },
                on_image(0, CacheTtl::FiveMinutes),
            ],
            ..Message::tool_result("toolu_3", "page 2: ")
        },
        Message::user("what changed?"),
    ])
}

fn expected_messages() -> Value {
    let read = json!({"file_path": "s.png"});
    json!([
        {"role": "user", "content": [text("compare with "), cached(url(), Some("1h"))]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": read},
            {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": read},
            {"type": "tool_use", "id": "toolu_3", "name": "Read", "input": read},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [cached(png(), Some("1h"))]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                "content": [url(), text("cropped: "), png(), text("too large")]},
            {"type": "tool_result", "tool_use_id": "toolu_3",
                "content": [cached(text("page 2: "), Some("1h")), cached(png(), None)]},
            text("what changed?"),
        ]},
    ])
}

#[tokio::test]
async fn tool_result_images_and_image_breakpoints_are_sent_streamed_and_counted_as_blocks() {
    let answer = ["the button", " moved"];
    assert_sent_streamed_and_counted(&request(), &answer, 3100, "be brief", &expected_messages()).await;
}

/// A text-only result stays the plain string every compatible server takes; a marked image the
/// user adds after it is a block of the same turn, carrying its mark.
#[tokio::test]
async fn a_marked_user_image_after_a_plain_tool_result_carries_the_mark() {
    let fake = FakeServer::start().await;
    fake.push(Reply::anthropic_text("ok"));
    let request = ChatRequest::new(vec![
        Message::user("q"),
        Message {
            tool_calls: vec![ToolCall { id: "toolu_1".into(), name: "f".into(), arguments: json!({}) }],
            ..Message::assistant("")
        },
        Message::tool_result("toolu_1", "42"),
        Message {
            images: vec![png_at(0)],
            cache: vec![on_image(0, CacheTtl::FiveMinutes)],
            ..Message::user("")
        },
    ]);
    backend(&fake).send(&request).await.unwrap();
    assert_eq!(
        fake.received()[0].json()["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
            cached(png(), None),
        ]})
    );
}
