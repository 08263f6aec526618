//! Images in user messages as the OpenAI adapter sends them, over real HTTP to a fake server:
//! `content` as parts in the client's order (text, `image_url` with a `data:` URL or the
//! client's URL), the string form kept for every message without images, a tool result's
//! images moved to a user message after the results (OpenAI takes image parts in user
//! messages only), images on a system or assistant message refused before any call, and a
//! text-only model of OpenAI's left out of the routing of an image request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use claudette_core::{
    Backend, BackendRouter, BackendSettings, ChatRequest, ErrorKind, Image, ImageSource, Message,
    RouterOptions, SkipReason,
};
use claudette_testkit::{FakeServer, Reply};
use common::{backend, call, image_part, sent_messages, wire_call};
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
    let expected = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "look "},
            image_part(&format!("data:image/png;base64,{PNG}")),
            {"type": "text", "text": "and this"},
            image_part("https://example.com/cat.jpg"),
        ]},
        {"role": "assistant", "content": "a cat"},
        {"role": "user", "content": "thanks"},
    ]);
    for messages in sent_messages(&fake, &backend, &request).await {
        assert_eq!(messages, expected);
    }
    assert_eq!(fake.requests(), 2);
    // The image-only message (no text at all) is parts too, and the whole body is what the
    // `Value` builder makes.
    let only = ChatRequest::new(vec![Message {
        images: vec![Image { at: 0, source: ImageSource::Url { url: "https://example.com/a.png".into() } }],
        ..Message::user("")
    }]);
    fake.push(Reply::openai_text("ok"));
    backend.send(&only).await.unwrap();
    let body = fake.received()[2].json();
    assert_eq!(body["messages"][0]["content"], json!([image_part("https://example.com/a.png")]));
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
async fn images_on_a_system_or_assistant_message_are_refused_before_any_call() {
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

/// A tool loop whose tool results carry screenshots: OpenAI refuses image parts in a `tool`
/// message ("Image URLs are only allowed for messages with role 'user'"), so each run of
/// results is sent as it is, text only, and its images follow in one user message that says
/// which call each came from; a result that was only images says where they went.
#[tokio::test]
async fn a_tool_results_images_follow_the_results_in_a_user_message() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    let inline =
        Image { at: 0, source: ImageSource::Base64 { media_type: "image/png".into(), data: PNG.into() } };
    let by_url = Image { at: 0, source: ImageSource::Url { url: "https://example.com/zoom.jpg".into() } };
    let request = ChatRequest::new(vec![
        Message::user("what is on my screen?"),
        Message {
            tool_calls: vec![call("c1", "screenshot"), call("c2", "read_notes")],
            ..Message::assistant("")
        },
        Message { images: vec![inline.clone(), by_url.clone()], ..Message::tool_result("c1", "") },
        Message::tool_result("c2", "no notes"),
        Message::assistant("a cat"),
        Message::user("zoom in"),
        Message { tool_calls: vec![call("c3", "zoom")], ..Message::assistant("") },
        Message { images: vec![by_url], ..Message::tool_result("c3", "zoomed 2x") },
    ]);
    let data_url = format!("data:image/png;base64,{PNG}");
    let expected = json!([
        {"role": "user", "content": "what is on my screen?"},
        {"role": "assistant", "content": null,
         "tool_calls": [wire_call("c1", "screenshot"), wire_call("c2", "read_notes")]},
        {"role": "tool", "tool_call_id": "c1", "content": "(the result is 2 images, in the next user message)"},
        {"role": "tool", "tool_call_id": "c2", "content": "no notes"},
        {"role": "user", "content": [
            {"type": "text", "text": "The result of tool call c1 included 2 images:"},
            image_part(&data_url),
            image_part("https://example.com/zoom.jpg"),
        ]},
        {"role": "assistant", "content": "a cat"},
        {"role": "user", "content": "zoom in"},
        {"role": "assistant", "content": null, "tool_calls": [wire_call("c3", "zoom")]},
        {"role": "tool", "tool_call_id": "c3", "content": "zoomed 2x"},
        {"role": "user", "content": [
            {"type": "text", "text": "The result of tool call c3 included 1 image:"},
            image_part("https://example.com/zoom.jpg"),
        ]},
    ]);
    // `sent_messages` checks that the `Value` builder sends the same.
    for messages in sent_messages(&fake, &backend, &request).await {
        assert_eq!(messages, expected);
    }
    assert_eq!(fake.requests(), 2);
}

/// OpenAI's text-only models (`gpt-3.5-turbo`, `o3-mini`) answer an image with a 400: the
/// router must send an image request to a backend whose model reads images, even a dearer
/// one, and never call the text-only one.
#[tokio::test]
async fn an_image_request_is_not_routed_to_a_text_only_openai_model() {
    let (cheap, vision) = (FakeServer::start().await, FakeServer::start().await);
    let openai = |name: &str, fake: &FakeServer, model: &str| -> Arc<dyn Backend> {
        let settings = BackendSettings::new(name).base_url(fake.v1_url()).model(model).api_key("sk-test");
        Arc::new(claudette_openai::backend(&settings).unwrap())
    };
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(openai("text", &cheap, "gpt-3.5-turbo-0125")).unwrap();
    router.register_backend(openai("vision", &vision, "gpt-4o")).unwrap();
    vision.push(Reply::openai_text("a cat"));
    let answer = router.route_request(&ChatRequest::new(vec![look()])).await.unwrap();
    assert_eq!(answer.content, "a cat");
    assert_eq!((cheap.requests(), vision.requests()), (0, 1));
    let decision = router.select(&ChatRequest::new(vec![look()]), &[]).unwrap().decision;
    let skipped = decision.skipped.iter().find(|s| s.backend == "text").unwrap();
    assert_eq!(skipped.reason, SkipReason::NoImages, "{skipped:?}");
}
