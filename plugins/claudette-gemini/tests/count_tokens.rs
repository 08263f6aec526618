//! Gemini's `POST models/{model}:countTokens`: the `generateContentRequest` the adapter
//! describes (the same prompt as `generateContent`), how `totalTokens` is read, and the call
//! over real HTTP against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, HttpResponse, Message, Method, ProviderAdapter,
    Thinking, ToolCall, ToolChoice, ToolSpec,
};
use claudette_gemini::GeminiAdapter;
use claudette_testkit::{FakeServer, Reply};
use serde_json::{Value, json};

const KEY: &str = "AIzaSyCANARYcount0123456789abcdefghijk";

fn settings(base: Option<String>) -> BackendSettings {
    let s = BackendSettings::new("gem-count").model("gemini-2.5-flash").api_key(KEY);
    match base {
        Some(b) => s.base_url(b),
        None => s,
    }
}

fn full_request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::system("Be brief."),
            Message::user("weather in Paris?"),
            Message {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "weather".into(),
                    arguments: json!({"city": "Paris"}),
                }],
                ..Message::assistant("")
            },
            Message::tool_result("call_1", "{\"temp\": 21}"),
        ],
        tools: vec![ToolSpec {
            name: "weather".into(),
            description: "current weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            cache: None,
            strict: false,
        }],
        tool_choice: ToolChoice::Required,
        // Held on the answer, not the prompt: counted and sent alike.
        parallel_tool_calls: Some(false),
        max_tokens: Some(500),
        temperature: Some(0.3),
        thinking: Some(Thinking::Budget { budget_tokens: 2048 }),
        ..ChatRequest::default()
    }
}

fn json_of(body: &Option<Vec<u8>>) -> Value {
    serde_json::from_slice(body.as_deref().unwrap()).unwrap()
}

#[test]
fn the_count_request_wraps_the_generate_content_prompt() {
    let a = GeminiAdapter::new(&settings(None)).unwrap();
    let request = full_request();
    let count = a.count_tokens_request(&request).expect("Gemini counts").unwrap();
    assert_eq!(count.method, Method::Post);
    assert_eq!(
        count.url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:countTokens"
    );
    assert!(!count.url.contains("key="), "the key goes in a header, never the URL");
    let counted = json_of(&count.body);
    let inner = &counted["generateContentRequest"];
    assert_eq!(counted.as_object().unwrap().len(), 1, "only generateContentRequest: {counted}");
    assert_eq!(inner["model"], "models/gemini-2.5-flash", "Google requires the model in it");

    // The same prompt as generateContent, converted by the same code.
    let sent = a.request_body(&request).unwrap();
    for field in ["contents", "systemInstruction", "tools", "toolConfig"] {
        assert!(inner.get(field).is_some(), "`{field}` missing: {counted}");
        assert_eq!(inner[field], sent[field], "`{field}` differs from generateContent's");
    }
    assert!(sent.get("generationConfig").is_some());
    assert!(inner.get("generationConfig").is_none(), "output settings add no input tokens: {inner}");
    assert_eq!(json_of(&a.build_request(&request, false).unwrap().body), sent);

    // A request's own model is the one counted; one that could leave the models path is refused.
    let other = ChatRequest::prompt("x").with_model("models/gemini-2.5-pro");
    let count = a.count_tokens_request(&other).unwrap().unwrap();
    assert!(count.url.ends_with("/models/gemini-2.5-pro:countTokens"), "{}", count.url);
    assert_eq!(json_of(&count.body)["generateContentRequest"]["model"], "models/gemini-2.5-pro");
    let escape = ChatRequest::prompt("x").with_model("../files");
    assert_eq!(a.count_tokens_request(&escape).unwrap().unwrap_err().kind, ErrorKind::InvalidRequest);
    assert_eq!(
        a.count_tokens_request(&ChatRequest::default()).unwrap().unwrap_err().kind,
        ErrorKind::InvalidRequest
    );
}

#[test]
fn the_count_answer_is_read_from_total_tokens() {
    let a = GeminiAdapter::new(&settings(None)).unwrap();
    let ok = |body: &'static [u8]| a.parse_count_tokens(&HttpResponse { status: 200, headers: &[], body });
    let documented =
        br#"{"totalTokens": 31, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]}"#;
    assert_eq!(ok(documented).unwrap(), 31);
    for bad in [&br#"{"promptTokensDetails": []}"#[..], b"{\"totalTokens\": \"x\"}", b"<html>", b""] {
        assert_eq!(
            ok(bad).unwrap_err().kind,
            ErrorKind::MalformedResponse,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let err = ok(br#"{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited, "{err}");
}

#[tokio::test]
async fn the_backend_counts_over_http_with_the_key_in_its_header_only() {
    let server = FakeServer::start().await;
    server.push(Reply::json(200, json!({"totalTokens": 57})));
    server.push(Reply::gemini_error(400, "INVALID_ARGUMENT", &format!("API key not valid: {KEY}")));
    let b = claudette_gemini::backend(&settings(Some(format!("{}/v1beta", server.url())))).unwrap();

    assert_eq!(b.count_tokens(&full_request()).await.unwrap(), 57);
    let up = &server.received()[0];
    assert_eq!(
        (up.method.as_str(), up.path.as_str()),
        ("POST", "/v1beta/models/gemini-2.5-flash:countTokens")
    );
    assert_eq!(up.header("x-goog-api-key"), Some(KEY));
    assert_eq!(up.query, None);
    assert!(!up.text().contains("AIza"));
    assert_eq!(up.json()["generateContentRequest"]["contents"][0]["parts"][0]["text"], "weather in Paris?");

    let err = b.count_tokens(&full_request()).await.unwrap_err();
    assert_eq!(err.status, Some(400));
    let shown = format!("{err} {err:?} {}", err.provider_body.clone().unwrap_or_default());
    assert!(!shown.contains("CANARY"), "{shown}");
}
