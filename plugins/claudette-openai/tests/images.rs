//! Images in user messages as the OpenAI adapter sends them, over real HTTP to a fake server:
//! `content` as parts in the client's order (text, `image_url` with a `data:` URL or the
//! client's URL), the string form kept for every message without images, and images on a
//! message that cannot take them refused before any call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, Image, ImageSource, Message, StreamEvent,
};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==";

/// "look " + an inline PNG + "and this" + an image by URL.
fn look() -> Message {
    Message {
        images: vec![
            Image { at: 5, source: ImageSource::Base64 { media_type: "image/png".into(), data: PNG.into() } },
            Image { at: 13, source: ImageSource::Url { url: "https://example.com/cat.jpg".into() } },
        ],
        ..Message::user("look and this")
    }
}

fn backend(fake: &FakeServer) -> claudette_openai::OpenAiBackend {
    let settings = BackendSettings::new("oa").base_url(fake.v1_url()).model("gpt-4o-mini").api_key("sk-test");
    claudette_openai::backend(&settings).unwrap()
}

#[tokio::test]
async fn a_user_message_with_images_is_sent_as_parts_in_the_clients_order() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    let request = ChatRequest::new(vec![
        Message::system("be brief"),
        look(),
        Message::assistant("a cat"),
        Message::user("thanks"),
    ]);
    fake.push(Reply::openai_text("fine"));
    assert_eq!(backend.send(&request).await.unwrap().content, "fine");
    fake.push(Reply::openai_stream(&["fine"]));
    let events: Vec<_> = backend.send_stream(&request).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");

    let sent = fake.received();
    assert_eq!(sent.len(), 2);
    for up in &sent {
        let body = up.json();
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look "},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}},
                    {"type": "text", "text": "and this"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ]},
                {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "thanks"},
            ]),
            "{}",
            up.text()
        );
    }
    // The image-only message (no text at all) is parts too, and the whole body is what the
    // `Value` builder makes.
    let only = ChatRequest::new(vec![Message {
        images: vec![Image { at: 0, source: ImageSource::Url { url: "https://example.com/a.png".into() } }],
        ..Message::user("")
    }]);
    fake.push(Reply::openai_text("ok"));
    backend.send(&only).await.unwrap();
    let body = fake.received()[2].json();
    assert_eq!(
        body["messages"][0]["content"],
        json!([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])
    );
    let options = claudette_openai::BodyOptions::new("gpt-4o-mini");
    assert_eq!(body, claudette_openai::build_body(&options, &only, false).unwrap());
}

#[tokio::test]
async fn a_text_only_body_is_the_bytes_it_always_was() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    let request = ChatRequest::new(vec![Message::system("be brief"), Message::user("hi \"you\"")]);
    fake.push(Reply::openai_text("fine"));
    backend.send(&request).await.unwrap();
    assert_eq!(
        fake.received()[0].text(),
        r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi \"you\""}]}"#
    );
}

#[tokio::test]
async fn images_on_a_message_that_is_not_the_users_are_refused_before_any_call() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    for at in [1, 2] {
        let mut messages = vec![Message::user("q"), Message::assistant("a"), Message::system("s")];
        messages[at].images = look().images;
        let err = backend.send(&ChatRequest::new(messages)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");
        assert!(err.to_string().contains(&format!("message {at}: images")), "{err}");
    }
    assert!(fake.received().is_empty());
}
