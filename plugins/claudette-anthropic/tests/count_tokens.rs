//! Anthropic's `POST /v1/messages/count_tokens`: the request the adapter describes (the message
//! body's prompt, none of what the endpoint refuses), how the answer is read, and the call over
//! real HTTP against `claudette-testkit`'s fake server.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_anthropic::AnthropicAdapter;
use claudette_core::{
    Backend, BackendSettings, CacheTtl, ChatRequest, ErrorKind, HttpResponse, Message, Method,
    ProviderAdapter, ReasoningEffort, ResponseFormat, Thinking, ToolCall, ToolChoice, ToolSpec,
};
use claudette_testkit::{FakeServer, Reply};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-api03-canary-count-0123456789";

fn settings(base: &str) -> BackendSettings {
    BackendSettings::new("claude-count")
        .base_url(base)
        .api_key(KEY)
        .model("claude-sonnet-4-5")
        .extra("anthropic_beta", "some-beta-2025-01-01")
}

/// A conversation with everything the prompt can hold: system, tools, a tool loop, a cache
/// breakpoint, thinking, an output schema, and the knobs a count must not carry.
fn full_request() -> ChatRequest {
    let tool = ToolSpec {
        name: "read".into(),
        description: "reads a file".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        cache: Some(CacheTtl::FiveMinutes),
        strict: false,
    };
    ChatRequest {
        messages: vec![
            Message::system("You are terse."),
            Message::user("read a"),
            Message {
                tool_calls: vec![ToolCall {
                    id: "toolu_1".into(),
                    name: "read".into(),
                    arguments: json!({"path": "a"}),
                }],
                ..Message::assistant("")
            },
            Message::tool_result("toolu_1", "contents of a"),
        ],
        tools: vec![tool],
        tool_choice: ToolChoice::Auto,
        parallel_tool_calls: Some(false),
        max_tokens: Some(2000),
        temperature: Some(0.2),
        top_k: Some(3),
        stop: vec!["END".into()],
        thinking: Some(Thinking::Budget { budget_tokens: 1024 }),
        output_effort: Some(ReasoningEffort::High),
        response_format: ResponseFormat::JsonSchema {
            name: "out".into(),
            schema: json!({"type": "object"}),
            strict: true,
        },
        ..ChatRequest::default()
    }
}

fn json_of(body: &Option<Vec<u8>>) -> Value {
    serde_json::from_slice(body.as_deref().unwrap()).unwrap()
}

#[test]
fn the_count_request_is_the_message_prompt_without_what_the_endpoint_refuses() {
    let a = AnthropicAdapter::new(&settings("https://api.anthropic.com/v1")).unwrap();
    let request = full_request();
    let count = a.count_tokens_request(&request).expect("Anthropic counts").unwrap();
    assert_eq!(count.method, Method::Post);
    assert_eq!(count.url, "https://api.anthropic.com/v1/messages/count_tokens");
    let header = |name: &str| count.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(header("anthropic-beta"), Some("some-beta-2025-01-01"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert!(count.headers.iter().all(|(_, v)| !v.contains("canary")), "the key is the I/O layer's");

    let counted = json_of(&count.body);
    let mut sent = json_of(&a.build_request(&request, false).unwrap().body);
    // Exactly the message body's prompt fields, converted by the same code…
    for field in ["model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"] {
        assert!(counted.get(field).is_some(), "`{field}` missing: {counted}");
        assert_eq!(counted[field], sent[field], "`{field}` differs from the message body");
    }
    // …and nothing else: count_tokens answers 400 to generation fields.
    for field in ["max_tokens", "temperature", "top_k", "stop_sequences", "stream"] {
        assert!(counted.get(field).is_none(), "`{field}` sent: {counted}");
        sent.as_object_mut().unwrap().remove(field);
    }
    assert_eq!(counted, sent);

    // A request for JSON without a schema cannot be sent as a message, but can be counted.
    let json_mode = ChatRequest { response_format: ResponseFormat::JsonObject, ..ChatRequest::prompt("x") };
    assert_eq!(a.build_request(&json_mode, false).unwrap_err().kind, ErrorKind::Unsupported);
    let counted = json_of(&a.count_tokens_request(&json_mode).unwrap().unwrap().body);
    assert_eq!(
        counted,
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]})
    );

    // What the client got wrong is still an error, before any call.
    let err = a.count_tokens_request(&ChatRequest::default()).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    // A request's own model is the one counted.
    let other = ChatRequest::prompt("x").with_model("claude-opus-4-7");
    assert_eq!(json_of(&a.count_tokens_request(&other).unwrap().unwrap().body)["model"], "claude-opus-4-7");
}

#[test]
fn the_count_answer_is_read_from_input_tokens() {
    let a = AnthropicAdapter::new(&settings("https://api.anthropic.com")).unwrap();
    let ok = |body: &'static [u8]| a.parse_count_tokens(&HttpResponse { status: 200, headers: &[], body });
    assert_eq!(ok(br#"{"input_tokens": 2095}"#).unwrap(), 2095);
    assert_eq!(ok(br#"{"input_tokens": 0, "context_management": null}"#).unwrap(), 0);
    for bad in
        [&br#"{"tokens": 1}"#[..], b"{\"input_tokens\": -1}", b"{\"input_tokens\": 1e99}", b"not json", b""]
    {
        let err = ok(bad).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedResponse, "{}", String::from_utf8_lossy(bad));
        assert_eq!(err.backend.as_deref(), Some("claude-count"));
    }
    // An error wrapped in a 200 is that error.
    let err =
        ok(br#"{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded, "{err}");
}

#[tokio::test]
async fn the_backend_counts_over_http_with_its_key_and_headers() {
    let server = FakeServer::start().await;
    server.push(Reply::json(200, json!({"input_tokens": 321})));
    server.push(Reply::anthropic_error(401, "authentication_error", &format!("invalid x-api-key {KEY}")));
    server.push(Reply::anthropic_error(429, "rate_limit_error", "slow down").header("retry-after", "7"));
    let b = claudette_anthropic::backend(&settings(&server.url())).unwrap();

    assert_eq!(b.count_tokens(&full_request()).await.unwrap(), 321);
    let up = &server.received()[0];
    assert_eq!((up.method.as_str(), up.path.as_str()), ("POST", "/v1/messages/count_tokens"));
    assert_eq!(up.header("x-api-key"), Some(KEY));
    assert_eq!(up.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(up.header("anthropic-beta"), Some("some-beta-2025-01-01"));
    assert!(up.json().get("max_tokens").is_none(), "{}", up.text());

    let err = b.count_tokens(&full_request()).await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(401)));
    let shown = format!("{err} {err:?} {}", err.provider_body.clone().unwrap_or_default());
    assert!(!shown.contains("canary"), "{shown}");
    let err = b.count_tokens(&full_request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(7)));
}
