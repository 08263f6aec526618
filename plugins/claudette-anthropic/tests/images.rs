//! Images in user messages as the Anthropic adapter sends them, over real HTTP to a fake
//! server: `image` blocks among the text blocks in the client's order, cache breakpoints still
//! on the text they end (a breakpoint where an image stands marks the text before it), the
//! token count made of the same blocks, and images on a message that cannot take them (or a
//! breakpoint on an image that is not there) refused before any call. Images in tool results
//! are in `tool_result_images.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{Backend, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, ErrorKind, Message};
use claudette_testkit::{FakeServer, Reply};
use common::{backend, cached, png, png_at, send_and_stream, text, url_image, url_image_at};
use serde_json::{Value, json};

const URL: &str = "https://example.com/cat.jpg";

/// "look " + an inline PNG + "and this" + an image by URL, with breakpoints at `cache`.
fn look(cache: &[(u32, CacheTtl)]) -> Message {
    Message {
        images: vec![png_at(5), url_image_at(13, URL)],
        cache: cache.iter().map(|&(at, ttl)| CacheBreakpoint { at: CacheAt::Text(at), ttl }).collect(),
        ..Message::user("look and this")
    }
}

fn url() -> Value {
    url_image(URL)
}

/// A text block with the default breakpoint on it.
fn cached_text(t: &str) -> Value {
    cached(text(t), None)
}

/// The `messages` of the one request `user` is sent in (after a system prompt, before an
/// answer and a text-only follow-up).
async fn sent(user: Message) -> Value {
    let fake = FakeServer::start().await;
    fake.push(Reply::anthropic_text("fine"));
    let request = ChatRequest::new(vec![
        Message::system("be brief"),
        user,
        Message::assistant("a cat"),
        Message::user("thanks"),
    ]);
    backend(&fake).send(&request).await.unwrap();
    let body = fake.received()[0].json();
    assert_eq!(body["system"], "be brief", "{body}");
    assert_eq!(
        body["messages"].as_array().map(|m| &m[1..]).unwrap(),
        [json!({"role": "assistant", "content": "a cat"}), json!({"role": "user", "content": "thanks"})]
    );
    body["messages"][0].clone()
}

#[tokio::test]
async fn images_are_blocks_in_the_clients_order_sent_and_streamed() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    let request = ChatRequest::new(vec![look(&[])]);
    send_and_stream(&backend, &fake, &request, &["fine"]).await;
    for up in fake.received() {
        assert_eq!(
            up.json()["messages"],
            json!([{"role": "user", "content": [text("look "), png(), text("and this"), url()]}]),
            "{}",
            up.text()
        );
    }
    // Other messages keep their form, text-only ones their plain string.
    assert_eq!(sent(look(&[])).await["content"], json!([text("look "), png(), text("and this"), url()]));
    assert_eq!(sent(Message::user("hi")).await, json!({"role": "user", "content": "hi"}));
}

#[tokio::test]
async fn a_breakpoint_where_an_image_stands_marks_the_text_before_it() {
    let five = CacheTtl::FiveMinutes;
    // At both images: the text each one follows, never the image.
    assert_eq!(
        sent(look(&[(5, five), (13, five)])).await["content"],
        json!([cached_text("look "), png(), cached_text("and this"), url()])
    );
    // Inside a run of text: cut there, as without images.
    assert_eq!(
        sent(look(&[(9, five), (13, CacheTtl::OneHour)])).await["content"],
        json!([text("look "), png(), cached_text("and "), cached(text("this"), Some("1h")), url()])
    );
    // Two at one image's place: the text before it carries the first, as two at one place of
    // text always did.
    assert_eq!(
        sent(look(&[(5, CacheTtl::OneHour), (5, five)])).await["content"],
        json!([cached(text("look "), Some("1h")), png(), text("and this"), url()])
    );
    // The same breakpoints without images: the blocks they always made.
    let plain = |cache: &[(u32, CacheTtl)]| Message { images: Vec::new(), ..look(cache) };
    assert_eq!(sent(plain(&[(5, five)])).await["content"], json!([cached_text("look "), text("and this")]));
    assert_eq!(sent(plain(&[(13, five)])).await["content"], json!([cached_text("look and this")]));
}

#[tokio::test]
async fn the_token_count_counts_the_images() {
    let fake = FakeServer::start().await;
    fake.push(Reply::json(200, json!({"input_tokens": 1700})));
    let request = ChatRequest::new(vec![look(&[(5, CacheTtl::FiveMinutes)])]);
    assert_eq!(backend(&fake).count_tokens(&request).await.unwrap(), 1700);
    let up = &fake.received()[0];
    assert_eq!(up.path, "/v1/messages/count_tokens");
    assert_eq!(
        up.json()["messages"],
        json!([{"role": "user", "content": [cached_text("look "), png(), text("and this"), url()]}]),
        "{}",
        up.text()
    );
}

#[tokio::test]
async fn images_where_they_cannot_go_are_refused_before_any_call() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake);
    let images = look(&[]).images;
    let messages = || {
        vec![
            Message::user("q"),
            Message::assistant("a"),
            Message::system("s"),
            Message::tool_result("t1", "r"),
        ]
    };
    let mut requests = Vec::new();
    for at in [1, 2] {
        let mut messages = messages();
        messages[at].images = images.clone();
        requests.push((ChatRequest::new(messages), format!("message {at}: images")));
    }
    // A breakpoint after an image the message does not have (two images: indexes 0 and 1).
    for at in [0, 3] {
        let mut messages = messages();
        messages[at].images = images.clone();
        messages[at].cache = vec![CacheBreakpoint { at: CacheAt::Image(2), ttl: CacheTtl::FiveMinutes }];
        requests
            .push((ChatRequest::new(messages), format!("message {at}: a cache breakpoint after image 2")));
    }
    for (request, says) in requests {
        let err = backend.send(&request).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");
        assert!(err.to_string().contains(&says), "{err}");
        assert_eq!(backend.count_tokens(&request).await.unwrap_err().kind, ErrorKind::InvalidRequest);
    }
    assert!(fake.received().is_empty());
}
