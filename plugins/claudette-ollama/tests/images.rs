//! Vision input: a user message's base64 images in `/api/chat`'s `images`, in the client's
//! order beside the whole text, a tool result's images in a user message after the results,
//! and the images Ollama cannot take refused before anything is sent; over real HTTP on
//! 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{
    Backend, ChatRequest, ErrorKind, Image, ImageSource, Message, RetryAction, StreamEvent,
};
use claudette_testkit::{FakeServer, Reply};
use common::{backend, call};
use futures::StreamExt;
use serde_json::{Value, json};

fn base64(at: u32, media_type: &str, data: &str) -> Image {
    Image { at, source: ImageSource::Base64 { media_type: media_type.into(), data: data.into() } }
}

fn user(content: &str, images: Vec<Image>) -> ChatRequest {
    ChatRequest { messages: vec![Message { images, ..Message::user(content) }], ..ChatRequest::default() }
}

/// Sends `request` whole, then streamed, and checks that each carried `expected` as its
/// `messages`.
async fn assert_sent_and_streamed(
    server: &FakeServer,
    b: &impl Backend,
    request: &ChatRequest,
    expected: &Value,
) {
    b.send(request).await.unwrap();
    assert_eq!(&server.last_json().unwrap()["messages"], expected);
    let events: Vec<StreamEvent> = b.send_stream(request).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    assert_eq!(&server.last_json().unwrap()["messages"], expected);
}

#[tokio::test]
async fn base64_images_go_in_the_messages_images_in_order() {
    let server = FakeServer::start().await;
    server.push_n(2, Reply::ollama_text("a cat"));
    server.push(Reply::ollama_stream(&["a ", "cat"]));
    let b = backend(&server);

    // Text alone: no `images` field, as before.
    b.send(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(server.last_json().unwrap()["messages"], json!([{"role": "user", "content": "hi"}]));

    // Text, an image, more text, an image: the text whole, the images in order (bare base64).
    let request = user(
        "What is this? And this one?",
        vec![base64(13, "image/png", "iVBORw0KGgo="), base64(27, "image/jpeg", "/9j/AAA=")],
    );
    let expected = json!([{"role": "user", "content": "What is this? And this one?",
                           "images": ["iVBORw0KGgo=", "/9j/AAA="]}]);
    // Streamed the same way.
    assert_sent_and_streamed(&server, &b, &request, &expected).await;
}

#[tokio::test]
async fn images_ollama_cannot_take_are_refused_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let png = || base64(0, "image/png", "iVBORw0KGgo=");
    let by_url = Image { at: 0, source: ImageSource::Url { url: "https://img.example/a.png".into() } };
    let cases = [
        ("a URL", user("x", vec![png(), by_url])),
        (
            "an assistant message",
            ChatRequest {
                messages: vec![
                    Message::user("draw"),
                    Message { images: vec![png()], ..Message::assistant("here") },
                    Message::user("again"),
                ],
                ..ChatRequest::default()
            },
        ),
        (
            "a system message",
            ChatRequest {
                messages: vec![
                    Message { images: vec![png()], ..Message::system("be brief") },
                    Message::user("hi"),
                ],
                ..ChatRequest::default()
            },
        ),
        (
            "a URL in a tool result",
            ChatRequest {
                messages: vec![
                    Message::user("look"),
                    Message {
                        images: vec![Image {
                            at: 0,
                            source: ImageSource::Url { url: "https://img.example/b.png".into() },
                        }],
                        name: Some("camera".into()),
                        ..Message::tool_result("c1", "ok")
                    },
                ],
                ..ChatRequest::default()
            },
        ),
    ];
    for (why, request) in cases {
        // A URL is Ollama's limit (another backend may take it); an image outside a user
        // message is the caller's error, refused alike by every adapter.
        let e = b.send(&request).await.unwrap_err();
        if why.contains("URL") {
            assert_eq!(e.kind, ErrorKind::Unsupported, "{why}: {e}");
            assert_eq!(e.kind.action(), RetryAction::FailOver, "{why}: another backend may take it");
            assert!(e.message.contains("ollama"), "{why}: {e}");
        } else {
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{why}: {e}");
            assert!(
                e.message.contains("images can only be sent in a user message or a tool result"),
                "{why}: {e}"
            );
        }
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}

/// A tool loop whose results carry screenshots. Ollama accepts `images` on a `tool` message,
/// but where the model sees them is up to its chat template, and many vision models' templates
/// place images in user turns only: the results go as text, and their images follow in one
/// user message that says which call each came from (a result that was only images says where
/// they went).
#[tokio::test]
async fn a_tool_results_images_follow_the_results_in_a_user_message() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_text("a cat"));
    server.push(Reply::ollama_stream(&["a ", "cat"]));
    let b = backend(&server);
    let request = ChatRequest {
        messages: vec![
            Message::user("what is on my screen?"),
            Message {
                tool_calls: vec![call("c1", "screenshot"), call("c2", "read_notes")],
                ..Message::assistant("")
            },
            Message {
                images: vec![base64(0, "image/png", "iVBORw0KGgo="), base64(0, "image/jpeg", "/9j/AAA=")],
                ..Message::tool_result("c1", "")
            },
            Message::tool_result("c2", "no notes"),
        ],
        ..ChatRequest::default()
    };
    let expected = json!([
        {"role": "user", "content": "what is on my screen?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "screenshot", "arguments": {}}},
            {"function": {"name": "read_notes", "arguments": {}}},
        ]},
        {"role": "tool", "content": "(the result is 2 images, in the next user message)", "tool_name": "screenshot"},
        {"role": "tool", "content": "no notes", "tool_name": "read_notes"},
        {"role": "user", "content": "The result of tool call c1 included 2 images:",
         "images": ["iVBORw0KGgo=", "/9j/AAA="]},
    ]);
    assert_sent_and_streamed(&server, &b, &request, &expected).await;
}
