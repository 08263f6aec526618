//! Vision input on the three client formats, over real HTTP: images in user messages and in
//! tool results reach the router as the neutral `Message::images`, where they stood among the
//! text; images that
//! cannot be carried are the client's 400, naming the field; and a request with images goes
//! only to backends that take them.
//!
//! The backend behind the gateway is a recorder that keeps the neutral request it is handed,
//! so what is asserted is the gateway's own parsing, whatever each provider adapter then
//! makes of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use claudette_core::{
    Backend, BackendError, BackendInfo, BackendRouter, BackendType, ChatRequest, ChatResponse, EventStream,
    Image, ImageSource, Pricing, Role, SharedBackend,
};
use common::*;
use serde_json::{Value, json};

/// Answers every request with "ok" and keeps the last one it was sent.
struct Recorder {
    info: BackendInfo,
    last: Mutex<Option<ChatRequest>>,
}

#[async_trait::async_trait]
impl Backend for Recorder {
    fn info(&self) -> &BackendInfo {
        &self.info
    }
    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        *self.last.lock().unwrap() = Some(request.clone());
        Ok(ChatResponse::empty(self.info.name.clone(), "m"))
    }
    async fn send_stream(&self, _: &ChatRequest) -> Result<EventStream, BackendError> {
        Err(BackendError::internal("not streamed in these tests"))
    }
    async fn health_check(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn available_models(&self) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }
}

fn recorder(supports_images: bool) -> Arc<Recorder> {
    Arc::new(Recorder {
        info: BackendInfo {
            name: "recorder".into(),
            provider: "test".into(),
            backend_type: BackendType::SelfHosted,
            model: "m".into(),
            priority: 0,
            pricing: Pricing::FREE,
            quality: 0.5,
            supports_streaming: true,
            supports_tools: true,
            supports_images,
            context_window: None,
            region: None,
            tags: Vec::new(),
            enabled: true,
        },
        last: Mutex::new(None),
    })
}

async fn gateway(backend: &Arc<Recorder>) -> Running {
    let r = BackendRouter::new(fast_options());
    r.register_backend(backend.clone() as SharedBackend).unwrap();
    start(Arc::new(r)).await
}

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==";
const CAT: &str = "https://example.com/cat.jpg";

/// What each format's body is made of: its path, a user message of `parts`, a tool loop
/// whose result (of call `c1`) is `parts`, and how it writes a text part and an image
/// (base64 PNG or a URL).
struct Format {
    path: &'static str,
    body: fn(Vec<Value>) -> Value,
    tool_loop: fn(Vec<Value>) -> Value,
    text: fn(&str) -> Value,
    png: fn() -> Value,
    url: fn(&str) -> Value,
}

const CHAT: Format = Format {
    path: "/v1/chat/completions",
    body: |parts| json!({"model": "auto", "messages": [{"role": "user", "content": parts}]}),
    tool_loop: |parts| {
        json!({"model": "auto", "messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": parts}]})
    },
    text: |t| json!({"type": "text", "text": t}),
    png: || json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "high"}}),
    url: |u| json!({"type": "image_url", "image_url": {"url": u}}),
};

const MESSAGES: Format = Format {
    path: "/v1/messages",
    body: |parts| json!({"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": parts}]}),
    tool_loop: |parts| {
        json!({"model": "auto", "max_tokens": 16, "messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": parts}]}]})
    },
    text: |t| json!({"type": "text", "text": t}),
    png: || json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}),
    url: |u| json!({"type": "image", "source": {"type": "url", "url": u}}),
};

const RESPONSES: Format = Format {
    path: "/v1/responses",
    body: |parts| json!({"model": "auto", "input": [{"role": "user", "content": parts}]}),
    tool_loop: |parts| {
        json!({"model": "auto", "input": [
            {"role": "user", "content": "read it"},
            {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": parts}]})
    },
    text: |t| json!({"type": "input_text", "text": t}),
    png: || json!({"type": "input_image", "image_url": format!("data:image/png;base64,{PNG}"), "detail": "auto"}),
    url: |u| json!({"type": "input_image", "image_url": u}),
};

#[tokio::test]
async fn images_reach_the_router_where_they_stood_among_the_text() {
    let backend = recorder(true);
    let gw = gateway(&backend).await;
    for f in [CHAT, MESSAGES, RESPONSES] {
        let parts = vec![(f.text)("look: "), (f.png)(), (f.text)("and "), (f.url)(CAT), (f.text)("?")];
        let r = post(&gw.url, f.path, (f.body)(parts)).await;
        assert_eq!(r.status, 200, "{}: {}", f.path, r.text);
        let sent = backend.last.lock().unwrap().take().unwrap();
        let user = sent.messages.iter().find(|m| m.role == Role::User).unwrap();
        assert_eq!(user.content, "look: and ?", "{}", f.path);
        assert_eq!(
            user.images,
            [
                Image {
                    at: 6,
                    source: ImageSource::Base64 { media_type: "image/png".into(), data: PNG.into() }
                },
                Image { at: 10, source: ImageSource::Url { url: CAT.into() } },
            ],
            "{}",
            f.path
        );
    }
}

#[tokio::test]
async fn tool_result_images_reach_the_router_in_the_tool_message() {
    let backend = recorder(true);
    let gw = gateway(&backend).await;
    for f in [CHAT, MESSAGES, RESPONSES] {
        let r = post(&gw.url, f.path, (f.tool_loop)(vec![(f.text)("shot: "), (f.png)(), (f.url)(CAT)])).await;
        assert_eq!(r.status, 200, "{}: {}", f.path, r.text);
        let sent = backend.last.lock().unwrap().take().unwrap();
        let roles: Vec<Role> = sent.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool], "{}", f.path);
        let tool = &sent.messages[2];
        assert_eq!(
            (tool.content.as_str(), tool.tool_call_id.as_deref()),
            ("shot: ", Some("c1")),
            "{}",
            f.path
        );
        assert_eq!(
            tool.images,
            [
                Image {
                    at: 6,
                    source: ImageSource::Base64 { media_type: "image/png".into(), data: PNG.into() }
                },
                Image { at: 6, source: ImageSource::Url { url: CAT.into() } },
            ],
            "{}",
            f.path
        );
    }
    // Bad images there are named as in a user message.
    let ftp = "ftp://example.com/a.png";
    let chat = (CHAT.tool_loop)(vec![(CHAT.url)(ftp)]);
    assert_eq!(refused(&gw, CHAT.path, chat).await, "messages[2].content[0].image_url.url");
    let messages = (MESSAGES.tool_loop)(vec![(MESSAGES.url)(ftp)]);
    assert_eq!(refused(&gw, MESSAGES.path, messages).await, "messages.2.content.0.content.0.source.url");
    let responses = (RESPONSES.tool_loop)(vec![(RESPONSES.url)(ftp)]);
    assert_eq!(refused(&gw, RESPONSES.path, responses).await, "input[2].output[0].image_url");
    assert!(backend.last.lock().unwrap().is_none(), "nothing refused reached the backend");

    // And the request goes only to backends that take images.
    let blind = recorder(false);
    let gw = gateway(&blind).await;
    for f in [CHAT, MESSAGES, RESPONSES] {
        let r = post(&gw.url, f.path, (f.tool_loop)(vec![(f.url)(CAT)])).await;
        assert_eq!(r.status, 503, "{}: {}", f.path, r.text);
        assert!(blind.last.lock().unwrap().is_none(), "{}", f.path);
    }
}

/// The 400 and the field it names: OpenAI's `error.param`, or the path Anthropic's message
/// starts with.
async fn refused(gw: &Running, path: &str, body: Value) -> String {
    let r = post(&gw.url, path, body).await;
    assert_eq!(r.status, 400, "{path}: {}", r.text);
    let v = r.json();
    if path == "/v1/messages" {
        assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
        let message = v["error"]["message"].as_str().unwrap();
        message.split(':').next().unwrap().to_owned()
    } else {
        assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
        v["error"]["param"].as_str().unwrap_or_else(|| panic!("no param: {}", r.text)).to_owned()
    }
}

#[tokio::test]
async fn images_that_cannot_be_carried_are_refused_naming_the_field() {
    let backend = recorder(true);
    let gw = gateway(&backend).await;
    let bad_urls =
        ["data:image/png,iVBORw0KGgo", "data:image/tiff;base64,SUkqAA==", "ftp://example.com/a.png"];
    for url in bad_urls {
        let chat = json!({"type": "image_url", "image_url": {"url": url}});
        let body = (CHAT.body)(vec![(CHAT.text)("x"), chat]);
        assert_eq!(refused(&gw, CHAT.path, body).await, "messages[0].content[1].image_url.url", "{url}");
        let body = (RESPONSES.body)(vec![(RESPONSES.text)("x"), (RESPONSES.url)(url)]);
        assert_eq!(refused(&gw, RESPONSES.path, body).await, "input[0].content[1].image_url", "{url}");
    }
    let messages = |source: Value| {
        (MESSAGES.body)(vec![(MESSAGES.text)("x"), json!({"type": "image", "source": source})])
    };
    let at = "messages.0.content.1.source";
    let cases = [
        (
            json!({"type": "base64", "media_type": "image/tiff", "data": "SUkqAA=="}),
            format!("{at}.media_type"),
        ),
        (json!({"type": "base64", "media_type": "image/png", "data": "%%%"}), format!("{at}.data")),
        (json!({"type": "url", "url": "ftp://example.com/a.png"}), format!("{at}.url")),
    ];
    for (source, param) in cases {
        assert_eq!(refused(&gw, MESSAGES.path, messages(source)).await, param);
    }

    // Images on an assistant turn.
    let chat = json!({"model": "auto", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [(CHAT.url)(CAT)]},
        {"role": "user", "content": "well?"}]});
    assert_eq!(refused(&gw, CHAT.path, chat).await, "messages[1].content[0]");
    let messages = json!({"model": "auto", "max_tokens": 16, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [(MESSAGES.png)()]},
        {"role": "user", "content": "well?"}]});
    assert_eq!(refused(&gw, MESSAGES.path, messages).await, "messages.1.content.0");
    let responses = json!({"model": "auto", "input": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [(RESPONSES.url)(CAT)]},
        {"role": "user", "content": "well?"}]});
    assert_eq!(refused(&gw, RESPONSES.path, responses).await, "input[1].content[0]");
    // Stored state the gateway cannot read.
    let file = (RESPONSES.body)(vec![json!({"type": "input_image", "file_id": "file-abc"})]);
    assert_eq!(refused(&gw, RESPONSES.path, file).await, "input[0].content[0].file_id");
    assert!(backend.last.lock().unwrap().is_none(), "nothing refused reached the backend");
}

#[tokio::test]
async fn images_go_only_to_backends_that_take_them() {
    let backend = recorder(false);
    let gw = gateway(&backend).await;
    for f in [CHAT, MESSAGES, RESPONSES] {
        let r = post(&gw.url, f.path, (f.body)(vec![(f.text)("what is this?"), (f.url)(CAT)])).await;
        assert_eq!(r.status, 503, "{}: {}", f.path, r.text);
        assert!(r.text.contains("no backend can serve this request"), "{}: {}", f.path, r.text);
        assert!(backend.last.lock().unwrap().is_none(), "{}", f.path);
        // The same request without the image is served.
        let r = post(&gw.url, f.path, (f.body)(vec![(f.text)("what is this?")])).await;
        assert_eq!(r.status, 200, "{}: {}", f.path, r.text);
        assert!(backend.last.lock().unwrap().take().is_some());
    }
}
