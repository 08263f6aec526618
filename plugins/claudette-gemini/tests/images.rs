//! Vision input: a user turn's text and images as `parts` in the client's order (inline base64,
//! URLs as `fileData`), in `generateContent` and `countTokens` alike, and the images Gemini
//! cannot take refused before anything is sent; over real HTTP on 127.0.0.1 against
//! `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, Image, ImageSource, Message, RetryAction, StreamEvent,
};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

fn backend(server: &FakeServer) -> claudette_gemini::GeminiBackend {
    let settings = BackendSettings::new("gemini-vision")
        .model("gemini-2.5-flash")
        .api_key("AIzaSyCANARYvision0123456789abcdefghij")
        .base_url(format!("{}/v1beta", server.url()));
    claudette_gemini::backend(&settings).unwrap()
}

fn base64(at: u32, media_type: &str, data: &str) -> Image {
    Image { at, source: ImageSource::Base64 { media_type: media_type.into(), data: data.into() } }
}

fn url(at: u32, url: &str) -> Image {
    Image { at, source: ImageSource::Url { url: url.into() } }
}

fn user(content: &str, images: Vec<Image>) -> ChatRequest {
    ChatRequest { messages: vec![Message { images, ..Message::user(content) }], ..ChatRequest::default() }
}

fn inline(mime: &str, data: &str) -> Value {
    json!({"inlineData": {"mimeType": mime, "data": data}})
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
    let request = user("What is this? And this one?", vec![base64(13, "image/png", "iVBORw0KGgo=")]);
    b.send(&request).await.unwrap();
    let expected = json!([{"role": "user", "parts": [
        {"text": "What is this?"}, inline("image/png", "iVBORw0KGgo="), {"text": " And this one?"}]}]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);

    // Images first, two at one offset, keep their order; no empty text part around them.
    let request =
        user("Compare.", vec![base64(0, "image/jpeg", "/9j/AAA="), base64(0, "image/webp", "UklGRg==")]);
    b.send(&request).await.unwrap();
    let expected = json!([{"role": "user", "parts": [
        inline("image/jpeg", "/9j/AAA="), inline("image/webp", "UklGRg=="), {"text": "Compare."}]}]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);

    // Streamed the same way.
    let request = user("Describe", vec![base64(8, "image/gif", "R0lGOD=")]);
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
    b.send(&user("Read it", vec![url(7, signed)])).await.unwrap();
    let expected = json!([{"role": "user", "parts": [
        {"text": "Read it"}, {"fileData": {"mimeType": "image/jpeg", "fileUri": signed}}]}]);
    assert_eq!(server.last_json().unwrap()["contents"], expected);
}

#[tokio::test]
async fn images_gemini_cannot_take_are_refused_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let png = || base64(0, "image/png", "iVBORw0KGgo=");
    let cases = [
        ("no type in the path", user("x", vec![url(0, "https://img.example/render?id=7")])),
        ("not an image type", user("x", vec![url(0, "https://img.example/a.svg")])),
        ("not http(s)", user("x", vec![url(0, "ftp://img.example/a.png")])),
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
    ];
    for (why, request) in cases {
        // A URL Gemini cannot take is this provider's limit (another backend may take it); an
        // image outside a user turn is the caller's error, refused alike by every adapter.
        let misplaced = why.starts_with("an assistant") || why.starts_with("a system");
        let kind = if misplaced { ErrorKind::InvalidRequest } else { ErrorKind::Unsupported };
        let e = b.send(&request).await.unwrap_err();
        assert_eq!(e.kind, kind, "{why}: {e}");
        if misplaced {
            assert!(e.message.contains("images can only be sent in a user message"), "{why}: {e}");
        } else {
            assert_eq!(e.kind.action(), RetryAction::FailOver, "{why}: another backend may take it");
            assert!(e.message.contains("gemini"), "{why}: {e}");
        }
        assert_eq!(b.count_tokens(&request).await.unwrap_err().kind, kind, "{why}");
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}
