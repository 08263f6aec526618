//! What the Gemini adapter's image and document tests share: one backend on the fake server,
//! the request pieces and wire parts they build, and the round that checks one request's
//! `contents` in `generateContent`, its stream and `countTokens` alike.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest, Image, ImageSource, StreamEvent, ToolCall};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

pub fn backend(server: &FakeServer) -> claudette_gemini::GeminiBackend {
    let settings = BackendSettings::new("gemini-vision")
        .model("gemini-2.5-flash")
        .api_key("AIzaSyCANARYvision0123456789abcdefghij")
        .base_url(format!("{}/v1beta", server.url()));
    claudette_gemini::backend(&settings).unwrap()
}

pub fn base64_image(at: u32, media_type: &str, data: &str) -> Image {
    Image { at, source: ImageSource::Base64 { media_type: media_type.into(), data: data.into() } }
}

pub fn url_image(at: u32, url: &str) -> Image {
    Image { at, source: ImageSource::Url { url: url.into() } }
}

/// A call to `name` with no arguments, its id `call-{name}`.
pub fn call(name: &str) -> ToolCall {
    ToolCall { id: format!("call-{name}"), name: name.into(), arguments: json!({}) }
}

/// The `functionResponse` part answering `name`.
pub fn answer(name: &str, response: Value) -> Value {
    json!({"functionResponse": {"name": name, "response": response}})
}

/// An `inlineData` part.
pub fn inline(mime: &str, data: &str) -> Value {
    json!({"inlineData": {"mimeType": mime, "data": data}})
}

/// A `fileData` part: a URL Gemini fetches itself.
pub fn file_data(mime: &str, uri: &str) -> Value {
    json!({"fileData": {"mimeType": mime, "fileUri": uri}})
}

/// Sends `request` whole, streamed and counted, and checks each carried `contents`: a message,
/// its stream and its count must never disagree on what was asked.
pub async fn assert_contents(server: &FakeServer, request: &ChatRequest, expected: &Value) {
    let b = backend(server);
    server.push(Reply::gemini_text("a report"));
    server.push(Reply::gemini_stream(&["a ", "report"]));
    server.push(Reply::json(200, json!({"totalTokens": 3300})));
    assert_eq!(b.send(request).await.unwrap().content, "a report");
    assert_eq!(&server.last_json().unwrap()["contents"], expected);
    let events: Vec<StreamEvent> = b.send_stream(request).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
    assert_eq!(&server.last_json().unwrap()["contents"], expected);
    assert_eq!(b.count_tokens(request).await.unwrap(), 3300);
    assert_eq!(&server.last_json().unwrap()["generateContentRequest"]["contents"], expected);
}
