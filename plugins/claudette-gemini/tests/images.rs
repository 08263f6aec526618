//! Vision input: a user turn's text and images as `parts` in the client's order (inline base64,
//! URLs as `fileData`), a tool result's images beside its `functionResponse`, in
//! `generateContent` and `countTokens` alike, and the images Gemini cannot take refused before
//! anything is sent; over real HTTP on 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{Backend, ChatRequest, ErrorKind, Image, Message, RetryAction, StreamEvent};
use claudette_gemini::THOUGHT_SIGNATURE_PLACEHOLDER;
use claudette_testkit::{FakeServer, Reply};
use common::{answer, assert_contents, backend, base64_image, call, file_data, inline, url_image};
use futures::StreamExt;
use serde_json::json;

fn user(content: &str, images: Vec<Image>) -> ChatRequest {
    ChatRequest { messages: vec![Message { images, ..Message::user(content) }], ..ChatRequest::default() }
}

#[tokio::test]
async fn text_and_images_go_as_parts_in_the_clients_order() {
    let server = FakeServer::start().await;
    server.push_n(3, Reply::gemini_text("a cat"));
    server.push(Reply::gemini_stream(&["a ", "cat"]));
    server.push(Reply::json(200, json!({"totalTokens": 1300})));
    let b = backend(&server);

    // Text alone: one text part, as before.
    b.send(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(server.last_json().unwrap()["contents"], json!([{"role": "user", "parts": [{"text": "hi"}]}]));

    // Text, an image, more text: three parts, the image between the runs it stood between.
    let request = user("What is this? And this one?", vec![base64_image(13, "image/png", "iVBORw0KGgo=")]);
    b.send(&request).await.unwrap();
    let expected = json!([{"role": "user", "parts": [
        {"text": "What is this?"}, inline("image/png", "iVBORw0KGgo="), {"text": " And this one?"}]}]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);

    // Images first, two at one offset, keep their order; no empty text part around them.
    let request = user(
        "Compare.",
        vec![base64_image(0, "image/jpeg", "/9j/AAA="), base64_image(0, "image/webp", "UklGRg==")],
    );
    b.send(&request).await.unwrap();
    let expected = json!([{"role": "user", "parts": [
        inline("image/jpeg", "/9j/AAA="), inline("image/webp", "UklGRg=="), {"text": "Compare."}]}]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);

    // Streamed the same way.
    let request = user("Describe", vec![base64_image(8, "image/gif", "R0lGOD=")]);
    let events: Vec<StreamEvent> = b.send_stream(&request).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    let expected = json!([{"role": "user", "parts": [{"text": "Describe"}, inline("image/gif", "R0lGOD=")]}]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);

    // And counted with them: the count's prompt is the one sent.
    assert_eq!(b.count_tokens(&request).await.unwrap(), 1300);
    let counted = server.received().last().unwrap().json();
    assert!(server.received().last().unwrap().path.ends_with(":countTokens"));
    assert_eq!(counted["generateContentRequest"]["contents"], expected);
}

#[tokio::test]
async fn an_image_url_goes_as_file_data_with_the_type_its_path_names() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_text("a chart"));
    let b = backend(&server);
    let signed = "https://bucket.example/charts/q3.JPG?X-Amz-Signature=abc&type=.png";
    b.send(&user("Read it", vec![url_image(7, signed)])).await.unwrap();
    let expected = json!([{"role": "user", "parts": [
        {"text": "Read it"}, file_data("image/jpeg", signed)]}]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);
}

#[tokio::test]
async fn images_gemini_cannot_take_are_refused_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let png = || base64_image(0, "image/png", "iVBORw0KGgo=");
    let cases = [
        ("no type in the path", user("x", vec![url_image(0, "https://img.example/render?id=7")])),
        ("not an image type", user("x", vec![url_image(0, "https://img.example/a.svg")])),
        ("not http(s)", user("x", vec![url_image(0, "ftp://img.example/a.png")])),
        (
            "an assistant turn",
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
            "a system prompt",
            ChatRequest {
                messages: vec![
                    Message { images: vec![png()], ..Message::system("be brief") },
                    Message::user("hi"),
                ],
                ..ChatRequest::default()
            },
        ),
        (
            "no type in a tool result's URL",
            ChatRequest {
                messages: vec![
                    Message::user("look"),
                    Message {
                        images: vec![url_image(0, "https://img.example/render?id=7")],
                        name: Some("camera".into()),
                        ..Message::tool_result("c1", "ok")
                    },
                ],
                ..ChatRequest::default()
            },
        ),
    ];
    for (why, request) in cases {
        // A URL Gemini cannot take is this provider's limit (another backend may take it); an
        // image outside a user turn is the caller's error, refused alike by every adapter.
        let misplaced = why.starts_with("an assistant") || why.starts_with("a system");
        let kind = if misplaced { ErrorKind::InvalidRequest } else { ErrorKind::Unsupported };
        let e = b.send(&request).await.unwrap_err();
        assert_eq!(e.kind, kind, "{why}: {e}");
        if misplaced {
            assert!(
                e.message.contains("images can only be sent in a user message or a tool result"),
                "{why}: {e}"
            );
        } else {
            assert_eq!(e.kind.action(), RetryAction::FailOver, "{why}: another backend may take it");
            assert!(e.message.contains("gemini"), "{why}: {e}");
        }
        assert_eq!(b.count_tokens(&request).await.unwrap_err().kind, kind, "{why}");
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}

/// A tool loop whose results carry screenshots: the images go as parts of the `user` turn that
/// carries the `functionResponse`s, after all of them (Gemini matches a parallel call turn's
/// answers part for part), named after their function when the turn answers more than one
/// call; a later user message joins the same turn after them. Counted as sent.
#[tokio::test]
async fn a_tool_results_images_go_beside_the_function_responses() {
    let server = FakeServer::start().await;
    server.push(Reply::gemini_text("a cat"));
    let b = backend(&server);
    let signed = json!(THOUGHT_SIGNATURE_PLACEHOLDER);
    let screenshot =
        || vec![base64_image(0, "image/png", "iVBORw0KGgo="), url_image(0, "https://img.example/zoom.webp")];

    // Two calls answered in one turn: the function responses first, then the images.
    let parallel = ChatRequest {
        messages: vec![
            Message::user("what is on my screen?"),
            Message { tool_calls: vec![call("screenshot"), call("read_notes")], ..Message::assistant("") },
            Message { images: screenshot(), ..Message::tool_result("call-screenshot", "") },
            Message::tool_result("call-read_notes", "no notes"),
        ],
        ..ChatRequest::default()
    };
    b.send(&parallel).await.unwrap();
    let expected = json!([
        {"role": "user", "parts": [{"text": "what is on my screen?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "screenshot", "args": {}}, "thoughtSignature": signed},
            {"functionCall": {"name": "read_notes", "args": {}}},
        ]},
        {"role": "user", "parts": [
            answer("screenshot", json!({"result": ""})),
            answer("read_notes", json!({"result": "no notes"})),
            {"text": "The result of `screenshot` included 2 images:"},
            inline("image/png", "iVBORw0KGgo="),
            file_data("image/webp", "https://img.example/zoom.webp"),
        ]},
    ]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);

    // One call: its images right after its response, unnamed; the user's next words follow.
    let single = ChatRequest {
        messages: vec![
            Message::user("what is on my screen?"),
            Message { tool_calls: vec![call("screenshot")], ..Message::assistant("") },
            Message { images: screenshot(), ..Message::tool_result("call-screenshot", r#"{"size": "1x1"}"#) },
            Message::user("and the colour?"),
        ],
        ..ChatRequest::default()
    };
    let expected = json!([
        {"role": "user", "parts": [{"text": "what is on my screen?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "screenshot", "args": {}}, "thoughtSignature": signed},
        ]},
        {"role": "user", "parts": [
            answer("screenshot", json!({"size": "1x1"})),
            inline("image/png", "iVBORw0KGgo="),
            file_data("image/webp", "https://img.example/zoom.webp"),
            {"text": "and the colour?"},
        ]},
    ]);
    assert_contents(&server, &single, &expected).await;
}
