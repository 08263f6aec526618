//! Images in user messages as the Anthropic adapter sends them, over real HTTP to a fake
//! server: `image` blocks among the text blocks in the client's order, cache breakpoints still
//! on the text they end (a breakpoint where an image stands marks the text before it), the
//! token count made of the same blocks, and images on a message that cannot take them (or a
//! breakpoint on an image that is not there) refused before any call. Images in tool results
//! are in `tool_result_images.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    Backend, BackendSettings, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, ErrorKind, Image, ImageSource,
    Message, StreamEvent,
};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==";
const URL: &str = "https://example.com/cat.jpg";

/// "look " + an inline PNG + "and this" + an image by URL, with breakpoints at `cache`.
fn look(cache: &[(u32, CacheTtl)]) -> Message {
    Message {
        images: vec![
            Image { at: 5, source: ImageSource::Base64 { media_type: "image/png".into(), data: PNG.into() } },
            Image { at: 13, source: ImageSource::Url { url: URL.into() } },
        ],
        cache: cache.iter().map(|&(at, ttl)| CacheBreakpoint { at: CacheAt::Text(at), ttl }).collect(),
        ..Message::user("look and this")
    }
}

fn png() -> Value {
    json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
}

fn url() -> Value {
    json!({"type": "image", "source": {"type": "url", "url": URL}})
}

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

fn cached(t: &str) -> Value {
    json!({"type": "text", "text": t, "cache_control": {"type": "ephemeral"}})
}

fn backend(fake: &FakeServer) -> impl Backend {
    let settings =
        BackendSettings::new("claude").base_url(fake.url()).model("claude-sonnet-4-5").api_key("sk-ant-test");
    claudette_anthropic::backend(&settings).unwrap()
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
    fake.push(Reply::anthropic_text("fine"));
    assert_eq!(backend.send(&request).await.unwrap().content, "fine");
    fake.push(Reply::anthropic_stream(&["fine"]));
    let events: Vec<_> = backend.send_stream(&request).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
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
        json!([cached("look "), png(), cached("and this"), url()])
    );
    // Inside a run of text: cut there, as without images.
    assert_eq!(
        sent(look(&[(9, five), (13, CacheTtl::OneHour)])).await["content"],
        json!([text("look "), png(), cached("and "),
            {"type": "text", "text": "this", "cache_control": {"type": "ephemeral", "ttl": "1h"}}, url()])
    );
    // Two at one image's place: the text before it carries the first, as two at one place of
    // text always did.
    assert_eq!(
        sent(look(&[(5, CacheTtl::OneHour), (5, five)])).await["content"],
        json!([{"type": "text", "text": "look ", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            png(), text("and this"), url()])
    );
    // The same breakpoints without images: the blocks they always made.
    let plain = |cache: &[(u32, CacheTtl)]| Message { images: Vec::new(), ..look(cache) };
    assert_eq!(sent(plain(&[(5, five)])).await["content"], json!([cached("look "), text("and this")]));
    assert_eq!(sent(plain(&[(13, five)])).await["content"], json!([cached("look and this")]));
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
        json!([{"role": "user", "content": [cached("look "), png(), text("and this"), url()]}]),
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
