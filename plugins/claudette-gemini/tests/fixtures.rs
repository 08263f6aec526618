//! The Gemini adapter on recorded bytes, without I/O: golden request bodies, transcripts shaped
//! like the Gemini API documentation's examples, safety blocks, every error class, and the
//! stream failures of the reliability spec (F-16 error in a 200 stream, F-17 missing end, F-18
//! splits at every byte, F-19 malformed data).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_core::{
    AuthScheme, BackendError, BackendSettings, BackendType, ChatRequest, ErrorKind, FinishReason, Framing,
    HttpResponse, Message, Method, Outcome, Pricing, ProviderAdapter, RetryAction, ServiceTier, StreamEnd,
    StreamEvent, StreamParser, ToolCall, ToolCallDelta, ToolSpec, Usage, UsageSource,
};
use claudette_gemini::GeminiAdapter;
use claudette_gemini::pricing::{PRICES, known_price};
use claudette_testkit::events::{text_of, without_ids};
use serde_json::{Value, json};

const KEY: &str = "AIzaSyCANARYcanary0123456789abcdefghij";

fn settings() -> BackendSettings {
    BackendSettings::new("gem").model("gemini-2.5-flash").api_key(KEY)
}

fn adapter() -> GeminiAdapter {
    GeminiAdapter::new(&settings()).unwrap()
}

fn ok(body: &[u8]) -> HttpResponse<'_> {
    HttpResponse { status: 200, headers: &[], body }
}

fn body_json(adapter: &GeminiAdapter, request: &ChatRequest) -> Value {
    let http = adapter.build_request(request, false).unwrap();
    serde_json::from_slice(http.body.as_deref().unwrap()).unwrap()
}

fn sse(chunks: &[Value]) -> Vec<u8> {
    // The service separates events with CRLF pairs.
    chunks.iter().map(|c| format!("data: {c}\r\n\r\n")).collect::<String>().into_bytes()
}

/// Framer (SSE) in pieces of `step` bytes, then a fresh decoder; the events and the error that
/// ended the stream, if any.
fn decode(bytes: &[u8], chunk: usize) -> (Vec<StreamEvent>, Option<BackendError>) {
    let parser = StreamParser::for_adapter(&adapter(), &ChatRequest::prompt("x"));
    claudette_testkit::events::decode_split(parser, bytes, chunk)
}

// ---------------------------------------------------------------------------------------------
// Requests

#[test]
fn golden_request_with_system_tools_and_parallel_results() {
    let mut assistant = Message::assistant("Checking both.");
    assistant.tool_calls = vec![
        ToolCall { id: "call_a".into(), name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
        ToolCall { id: "call_b".into(), name: "get_time".into(), arguments: json!({"tz": "Europe/Paris"}) },
    ];
    let mut named_result = Message::tool_result("call_b", "14:05");
    named_result.name = Some("get_time".into());
    let request = ChatRequest {
        max_tokens: Some(256),
        temperature: Some(0.7),
        top_p: Some(0.95),
        stop: vec!["END".into()],
        tools: vec![
            ToolSpec {
                name: "get_weather".into(),
                description: "Weather for a city".into(),
                parameters: json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                    "properties": {"city": {"type": "string"},
                                   "opts": {"type": "object", "additionalProperties": false,
                                            "properties": {"units": {"type": "string", "enum": ["c", "f"]}}}},
                    "required": ["city"], "additionalProperties": false}),
                cache: None,
                strict: false,
            },
            ToolSpec {
                name: "get_time".into(),
                description: String::new(),
                parameters: json!({"type": "object", "properties": {}}),
                cache: None,
                strict: false,
            },
        ],
        ..ChatRequest::new(vec![
            Message::system("You are terse."),
            Message::user("Weather and time in Paris?"),
            assistant,
            Message::tool_result("call_a", "{\"temp_c\": 18}"),
            named_result,
            Message::system("Answer in French."),
        ])
    };
    let a = adapter();
    let http = a.build_request(&request, false).unwrap();
    assert_eq!(http.method, Method::Post);
    assert_eq!(
        http.url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    let body: Value = serde_json::from_slice(http.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
                {"role": "model", "parts": [
                    {"text": "Checking both."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                     "thoughtSignature": "skip_thought_signature_validator"},
                    {"functionCall": {"name": "get_time", "args": {"tz": "Europe/Paris"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
                    {"functionResponse": {"name": "get_time", "response": {"result": "14:05"}}}
                ]}
            ],
            "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]},
            "generationConfig": {"maxOutputTokens": 256, "temperature": 0.7, "topP": 0.95, "stopSequences": ["END"]},
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather for a city",
                 "parameters": {"type": "object",
                    "properties": {"city": {"type": "string"},
                                   "opts": {"type": "object", "properties": {"units": {"type": "string", "enum": ["c", "f"]}}}},
                    "required": ["city"]}},
                {"name": "get_time"}
            ]}]
        })
    );
}

#[test]
fn minimal_request_and_placeholder_switch() {
    let a = adapter();
    assert_eq!(
        body_json(&a, &ChatRequest::prompt("hi")),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
    let off = GeminiAdapter::new(&settings().extra("thought_signature_placeholder", false)).unwrap();
    let mut assistant = Message::assistant("");
    assistant.tool_calls = vec![ToolCall { id: "c".into(), name: "f".into(), arguments: json!({}) }];
    let body = body_json(&off, &ChatRequest::new(vec![Message::user("x"), assistant]));
    assert_eq!(
        body["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]})
    );
}

#[test]
fn key_goes_in_a_header_never_in_the_url() {
    let a = adapter();
    assert_eq!(a.auth_scheme(), AuthScheme::Header("x-goog-api-key".into()));
    for stream in [false, true] {
        let http = a.build_request(&ChatRequest::prompt("hi"), stream).unwrap();
        assert!(!http.url.contains("key="), "{}", http.url);
        assert!(!http.url.contains(KEY));
        assert!(!http.headers.iter().any(|(_, v)| v.contains(KEY)));
        assert!(!format!("{http:?}").contains(KEY));
    }
    let probe = a.health_probe().unwrap();
    assert_eq!(
        (probe.method, probe.url.as_str()),
        (Method::Get, "https://generativelanguage.googleapis.com/v1beta/models")
    );
    assert!(!format!("{a:?}").contains(KEY));
}

#[test]
fn urls_and_model_overrides() {
    let a = GeminiAdapter::new(&settings().base_url("http://127.0.0.1:9/v1beta/")).unwrap();
    let stream = a.build_request(&ChatRequest::prompt("hi"), true).unwrap();
    assert_eq!(stream.url, "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    let over =
        a.build_request(&ChatRequest::prompt("hi").with_model("models/gemini-2.5-pro"), false).unwrap();
    assert_eq!(over.url, "http://127.0.0.1:9/v1beta/models/gemini-2.5-pro:generateContent");
    // A request cannot steer the keyed call to another path or add a query.
    for bad in ["../files", "gemini-2.5-pro:countTokens?x=", "a/b", "gemini 2", ""] {
        let err = a.build_request(&ChatRequest::prompt("hi").with_model(bad), false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{bad}");
    }
}

#[test]
fn string_arguments_from_another_provider_become_objects() {
    let mut assistant = Message::assistant("");
    assistant.tool_calls =
        vec![ToolCall { id: "call_x".into(), name: "lookup".into(), arguments: json!("{\"q\": \"rust\"}") }];
    let body = body_json(&adapter(), &ChatRequest::new(vec![Message::user("q"), assistant]));
    assert_eq!(
        body["contents"][1]["parts"][0]["functionCall"],
        json!({"name": "lookup", "args": {"q": "rust"}})
    );
}

#[test]
fn tool_result_without_a_name_is_invalid() {
    let err = adapter()
        .build_request(
            &ChatRequest::new(vec![Message::user("x"), Message::tool_result("call_unknown", "42")]),
            false,
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
}

#[test]
fn non_finite_sampling_is_invalid() {
    let err =
        adapter().build_request(&ChatRequest::prompt("x").with_temperature(f32::NAN), false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
}

#[test]
fn settings_rules() {
    let a = adapter();
    assert_eq!(a.info().provider, "gemini");
    assert_eq!(a.info().backend_type, BackendType::Cloud);
    assert_eq!(a.framing(), Framing::Sse);
    assert_eq!(a.info().context_window, Some(1_048_576));
    assert!(a.validate().is_ok());
    let no_key = GeminiAdapter::new(&BackendSettings::new("g").model("gemini-2.5-flash")).unwrap();
    assert_eq!(no_key.validate().unwrap_err().kind, ErrorKind::Config);
    for bad in [
        BackendSettings::new("g").api_key(KEY),
        settings().extra("thinking", true),
        settings().model("gemini/../x"),
        settings().base_url("gopher://x"),
    ] {
        assert_eq!(GeminiAdapter::new(&bad).unwrap_err().kind, ErrorKind::Config);
    }
    // `models/` prefix in settings is accepted.
    assert_eq!(
        GeminiAdapter::new(&settings().model("models/gemini-2.0-flash")).unwrap().info().model,
        "gemini-2.0-flash"
    );
}

// ---------------------------------------------------------------------------------------------
// Non-stream answers

/// The text-generation example of the API reference.
#[test]
fn docs_transcript_text() {
    let body = json!({
        "candidates": [{
            "content": {"parts": [{"text": "AI learns patterns from data "}, {"text": "to make predictions."}], "role": "model"},
            "finishReason": "STOP", "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 215, "totalTokenCount": 223,
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}]},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"
    })
    .to_string();
    let r = adapter().parse_response(&ChatRequest::prompt("Explain AI"), &ok(body.as_bytes())).unwrap();
    assert_eq!(r.content, "AI learns patterns from data to make predictions.");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert_eq!(r.usage, Usage::reported(8, 215));
    assert_eq!(r.model, "gemini-2.5-flash");
    assert_eq!(r.id.as_deref(), Some("mAitaLmkHPPlz7IPvtfUqQ4"));
    assert_eq!(r.backend, "gem");
    let expected = (8.0 * 0.0003 + 215.0 * 0.0025) / 1000.0;
    assert!((r.cost - expected).abs() < 1e-12, "{} vs {expected}", r.cost);
}

#[test]
fn thinking_cache_and_usage_split() {
    let body = json!({
        "candidates": [{"content": {"parts": [
            {"text": "**Weighing options**\nThe user asks...", "thought": true},
            {"text": "42."}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 3, "thoughtsTokenCount": 97,
                          "cachedContentTokenCount": 600, "totalTokenCount": 1100},
        "modelVersion": "gemini-2.5-pro"
    })
    .to_string();
    let r = adapter().parse_response(&ChatRequest::prompt("?"), &ok(body.as_bytes())).unwrap();
    assert_eq!(r.content, "42.");
    assert_eq!(r.reasoning.as_deref(), Some("**Weighing options**\nThe user asks..."));
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 1000,
            output_tokens: 100,
            cache_read_tokens: 600,
            cache_write_tokens: 0,
            reasoning_tokens: 97,
            web_search_requests: 0,
            tier: ServiceTier::Standard,
            source: UsageSource::Reported
        }
    );
    // Priced at the answering model (2.5 pro), cache reads at a quarter of input.
    let expected = (400.0 * 0.00125 + 600.0 * 0.00125 / 4.0 + 100.0 * 0.01) / 1000.0;
    assert!((r.cost - expected).abs() < 1e-12, "{} vs {expected}", r.cost);
}

#[test]
fn function_calls_get_ids_and_tool_calls_finish() {
    let body = json!({
        "candidates": [{"content": {"parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiIBVKhc7oA"},
            {"functionCall": {"name": "get_time", "args": {}}},
            {"functionCall": {"id": "fc-server-1", "name": "noop"}}], "role": "model"},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 20, "totalTokenCount": 70}
    })
    .to_string();
    let r = adapter().parse_response(&ChatRequest::prompt("?"), &ok(body.as_bytes())).unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(r.tool_calls.len(), 3);
    assert_eq!(r.tool_calls[0].name, "get_weather");
    assert_eq!(r.tool_calls[0].arguments, json!({"city": "Paris"}));
    assert!(r.tool_calls[0].id.starts_with("call_"));
    assert_ne!(r.tool_calls[0].id, r.tool_calls[1].id);
    assert_eq!(r.tool_calls[2].id, "fc-server-1");
    assert_eq!(r.tool_calls[2].arguments, json!({}));
    // No modelVersion: the configured model.
    assert_eq!(r.model, "gemini-2.5-flash");
}

#[test]
fn other_finish_reasons() {
    for (reason, expected) in
        [("MAX_TOKENS", FinishReason::Length), ("OTHER", FinishReason::Other("OTHER".into()))]
    {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "partial"}], "role": "model"},
                                          "finishReason": reason}]})
        .to_string();
        let r = adapter().parse_response(&ChatRequest::prompt("?"), &ok(body.as_bytes())).unwrap();
        assert_eq!(r.finish_reason, Some(expected));
        // No usageMetadata: left `Missing` for the I/O layer to estimate, never passed off as reported.
        assert_eq!(r.usage.source, UsageSource::Missing);
    }
}

// ---------------------------------------------------------------------------------------------
// Safety

#[test]
fn prompt_blocked_entirely_is_a_content_policy_error() {
    // vercel/ai #4235's body.
    let body = br#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":12559,"totalTokenCount":12559},"modelVersion":"gemini-1.5-flash-002"}"#;
    let err = adapter().parse_response(&ChatRequest::prompt("?"), &ok(body)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContentPolicy);
    assert_eq!(err.code.as_deref(), Some("PROHIBITED_CONTENT"));
    assert_eq!(err.action(), RetryAction::Stop);
    assert_eq!(err.outcome(), Outcome::Neutral);
}

#[test]
fn safety_stop_without_content_is_a_content_policy_error() {
    for reason in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    ] {
        let body = json!({"candidates": [{"content": {"parts": [], "role": "model"}, "finishReason": reason, "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]}]})
        .to_string();
        let err = adapter().parse_response(&ChatRequest::prompt("?"), &ok(body.as_bytes())).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ContentPolicy, "{reason}");
        assert_eq!(err.code.as_deref(), Some(reason));
        assert!(!err.may_retry_same());
    }
    // No `content` at all, as the service sends it for a blocked candidate.
    let err = adapter()
        .parse_response(
            &ChatRequest::prompt("?"),
            &ok(br#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContentPolicy);
}

#[test]
fn safety_stop_after_content_keeps_the_content() {
    let body = json!({"candidates": [{"content": {"parts": [{"text": "The first half"}], "role": "model"},
                                      "finishReason": "SAFETY"}],
                      "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3}})
    .to_string();
    let r = adapter().parse_response(&ChatRequest::prompt("?"), &ok(body.as_bytes())).unwrap();
    assert_eq!(r.content, "The first half");
    assert_eq!(r.finish_reason, Some(FinishReason::ContentFilter));
}

#[test]
fn answer_without_candidates_is_malformed() {
    let err =
        adapter().parse_response(&ChatRequest::prompt("?"), &ok(br#"{"usageMetadata":{}}"#)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    let err = adapter().parse_response(&ChatRequest::prompt("?"), &ok(b"<html>")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
}

// ---------------------------------------------------------------------------------------------
// Streams

fn chunk(parts: Value, finish: Option<&str>, usage: Value) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash",
           "responseId": "Ypz2aKqzM5v"})
}

/// The streaming example of the API docs, with a thought part, multi-byte text and a call.
fn docs_stream() -> Vec<u8> {
    sse(&[
        chunk(
            json!([{"text": "Considering the fox", "thought": true}]),
            None,
            json!({"promptTokenCount": 8, "totalTokenCount": 8, "thoughtsTokenCount": 12}),
        ),
        chunk(
            json!([{"text": "The quick brown"}]),
            None,
            json!({"promptTokenCount": 8, "totalTokenCount": 8}),
        ),
        chunk(
            json!([{"text": " fox — 涌现 ✓"}]),
            None,
            json!({"promptTokenCount": 8, "candidatesTokenCount": 6}),
        ),
        chunk(
            json!([{"functionCall": {"name": "jump", "args": {"over": "dog"}}}]),
            Some("STOP"),
            json!({"promptTokenCount": 8, "candidatesTokenCount": 12, "thoughtsTokenCount": 12, "totalTokenCount": 32}),
        ),
    ])
}

#[test]
fn docs_stream_decodes_in_order() {
    let (events, err) = decode(&docs_stream(), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    let expected = vec![
        StreamEvent::ReasoningDelta { text: "Considering the fox".into() },
        StreamEvent::text("The quick brown"),
        StreamEvent::text(" fox — 涌现 ✓"),
        StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index: 0,
                id: Some("<id>".into()),
                name: Some("jump".into()),
                arguments: r#"{"over":"dog"}"#.into(),
            },
        },
        StreamEvent::Done {
            end: StreamEnd {
                finish_reason: Some(FinishReason::ToolCalls),
                usage: Usage { reasoning_tokens: 12, ..Usage::reported(8, 24) },
                cost: 0.0,
            },
        },
    ];
    assert_eq!(without_ids(&events), expected);
}

#[test]
fn split_at_every_byte_is_identical_f18() {
    let (whole, err) = decode(&docs_stream(), usize::MAX);
    assert!(err.is_none());
    for step in [1, 2, 3, 7] {
        let (split, err) = decode(&docs_stream(), step);
        assert!(err.is_none(), "step {step}: {err:?}");
        assert_eq!(without_ids(&split), without_ids(&whole), "step {step}");
    }
}

#[test]
fn stream_length_and_usage_from_the_last_chunk() {
    let bytes = sse(&[
        chunk(json!([{"text": "a"}]), None, json!({"promptTokenCount": 4, "candidatesTokenCount": 1})),
        chunk(
            json!([{"text": "b"}]),
            Some("MAX_TOKENS"),
            json!({"promptTokenCount": 4, "candidatesTokenCount": 2}),
        ),
    ]);
    let (events, err) = decode(&bytes, 5);
    assert!(err.is_none());
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::Length));
    assert_eq!(end.usage, Usage::reported(4, 2));
}

#[test]
fn stream_without_finish_reason_is_interrupted_f17() {
    let bytes = sse(&[
        chunk(json!([{"text": "looks "}]), None, json!({"promptTokenCount": 4})),
        chunk(json!([{"text": "complete"}]), None, json!({"promptTokenCount": 4})),
    ]);
    let (events, err) = decode(&bytes, usize::MAX);
    assert_eq!(text_of(&events), "looks complete");
    assert!(!events.iter().any(StreamEvent::is_terminal));
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::StreamInterrupted);
    assert_eq!(err.backend.as_deref(), Some("gem"));
    let (_, err) = decode(b"", 1);
    assert_eq!(err.unwrap().kind, ErrorKind::StreamInterrupted);
}

#[test]
fn error_object_in_a_200_stream_f16() {
    let mut bytes = sse(&[chunk(json!([{"text": "partial"}]), None, json!({"promptTokenCount": 4}))]);
    bytes.extend(sse(&[
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                                        "status": "UNAVAILABLE"}}),
    ]));
    let (events, err) = decode(&bytes, 3);
    assert_eq!(text_of(&events), "partial");
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert_eq!(err.outcome(), Outcome::Failure);
    assert_eq!(err.status, Some(503));
    assert!(err.message.contains("overloaded"), "{err}");
    // A rate limit inside the stream keeps its class and hint.
    let bytes =
        sse(&[json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]}})]);
    let (_, err) = decode(&bytes, usize::MAX);
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(17)));
}

#[test]
fn malformed_chunk_f19() {
    let mut bytes = sse(&[chunk(json!([{"text": "ok"}]), None, json!({}))]);
    bytes.extend_from_slice(b"data: {\"candidates\": [{\"content\": \r\n\r\n");
    let (events, err) = decode(&bytes, 2);
    assert_eq!(text_of(&events), "ok");
    assert_eq!(err.unwrap().kind, ErrorKind::MalformedResponse);
    // Valid JSON of the wrong shape too.
    let (_, err) = decode(b"data: {\"candidates\": 7}\n\n", 64);
    assert_eq!(err.unwrap().kind, ErrorKind::MalformedResponse);
}

#[test]
fn safety_blocks_in_a_stream() {
    // Filter stop before any output: a content-policy error, not an empty success.
    let bytes = sse(&[json!({"candidates": [{"finishReason": "SAFETY", "index": 0}],
                             "usageMetadata": {"promptTokenCount": 9}})]);
    let (events, err) = decode(&bytes, usize::MAX);
    assert!(events.is_empty());
    assert_eq!(err.unwrap().kind, ErrorKind::ContentPolicy);
    // The prompt itself blocked.
    let bytes = sse(&[
        json!({"promptFeedback": {"blockReason": "BLOCKLIST"}, "usageMetadata": {"promptTokenCount": 9}}),
    ]);
    let (_, err) = decode(&bytes, usize::MAX);
    let err = err.unwrap();
    assert_eq!((err.kind, err.code.as_deref()), (ErrorKind::ContentPolicy, Some("BLOCKLIST")));
    // A filter stop after some text: the text stands, the finish says why it stopped.
    let bytes = sse(&[
        chunk(json!([{"text": "Once upon"}]), None, json!({"promptTokenCount": 9})),
        chunk(json!([]), Some("RECITATION"), json!({"promptTokenCount": 9, "candidatesTokenCount": 2})),
    ]);
    let (events, err) = decode(&bytes, usize::MAX);
    assert!(err.is_none());
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::ContentFilter));
}

// ---------------------------------------------------------------------------------------------
// Errors

fn classify(status: u16, headers: &[(String, String)], body: Value) -> BackendError {
    let bytes = body.to_string().into_bytes();
    adapter().classify_error(&HttpResponse { status, headers, body: &bytes })
}

fn envelope(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

#[test]
fn rate_limit_with_retry_info() {
    // A per-minute free-tier limit (RooCodeInc/Roo-Code #3883's body): transient, even though
    // the message talks about quota and billing.
    let err = classify(
        429,
        &[],
        envelope(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For more information on this \
             error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
                     "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
                     "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "250000"}]},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}
            ]),
        ),
    );
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(26)));
    assert_eq!(err.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(err.status, Some(429));
    assert_eq!(err.backend.as_deref(), Some("gem"));
    // No RetryInfo: the headers' hint.
    let err = classify(
        429,
        &[("retry-after".into(), "3".into())],
        envelope(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", json!([])),
    );
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
}

#[test]
fn spent_quota_is_quota_exhausted() {
    // A per-day quota (UKGovernmentBEIS/inspect_ai #5526): the retryDelay is dropped, it is
    // the per-minute window's and would bring traffic back far too early.
    let daily = classify(
        429,
        &[],
        envelope(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: \
             generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 20, model: gemini-2.5-flash",
            json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                     "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "20"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"}
            ]),
        ),
    );
    assert_eq!(daily.kind, ErrorKind::QuotaExhausted);
    assert_eq!(daily.retry_after, None);
    assert_eq!(daily.action(), RetryAction::FailOver);
    // Prepaid credits gone.
    let credits = classify(
        429,
        &[],
        envelope(
            429,
            "RESOURCE_EXHAUSTED",
            "Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing.",
            json!([]),
        ),
    );
    assert_eq!(credits.kind, ErrorKind::QuotaExhausted);
    // A model the tier has no access to at all (limit 0).
    let zero = classify(
        429,
        &[],
        envelope(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro",
            json!([]),
        ),
    );
    assert_eq!(zero.kind, ErrorKind::QuotaExhausted);
    // Vertex-style ErrorInfo naming a per-day limit.
    let info = classify(
        429,
        &[],
        envelope(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Requests'.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                    "metadata": {"quota_limit": "Gemini25ProRequestsPerDay"}}]),
        ),
    );
    assert_eq!(info.kind, ErrorKind::QuotaExhausted);
    assert_eq!(info.code.as_deref(), Some("RATE_LIMIT_EXCEEDED"));
}

#[test]
fn invalid_requests_and_context_overflow() {
    let bad = classify(
        400,
        &[],
        envelope(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \"foo\"", json!([])),
    );
    assert_eq!(bad.kind, ErrorKind::InvalidRequest);
    assert_eq!(bad.action(), RetryAction::Stop);
    let overflow = classify(
        400,
        &[],
        envelope(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1234567) exceeds the maximum number of tokens allowed (1048576).",
            json!([]),
        ),
    );
    assert_eq!(overflow.kind, ErrorKind::ContextOverflow);
}

#[test]
fn auth_errors_including_the_400_bad_key() {
    // Google answers an invalid key with 400, not 401.
    let bad_key = classify(
        400,
        &[],
        envelope(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
        ),
    );
    assert_eq!(bad_key.kind, ErrorKind::Auth);
    assert_eq!(bad_key.code.as_deref(), Some("API_KEY_INVALID"));
    assert_eq!(bad_key.outcome(), Outcome::Credential);
    let denied = classify(
        403,
        &[],
        envelope(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", json!([])),
    );
    assert_eq!(denied.kind, ErrorKind::Auth);
    let unauth = classify(
        401,
        &[],
        envelope(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", json!([])),
    );
    assert_eq!(unauth.kind, ErrorKind::Auth);
    let region = classify(
        400,
        &[],
        envelope(400, "FAILED_PRECONDITION", "User location is not supported for the API use.", json!([])),
    );
    assert_eq!(region.kind, ErrorKind::Auth);
    assert_eq!(region.action(), RetryAction::FailOver);
}

#[test]
fn not_found_and_server_errors() {
    let nf = classify(
        404,
        &[],
        envelope(
            404,
            "NOT_FOUND",
            "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.",
            json!([]),
        ),
    );
    assert_eq!(nf.kind, ErrorKind::NotFound);
    assert_eq!(nf.outcome(), Outcome::Neutral);
    for (code, status) in [(500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")] {
        let e = classify(code, &[], envelope(code, status, "An internal error has occurred.", json!([])));
        assert_eq!(e.kind, ErrorKind::Overloaded, "{code}");
        assert!(e.may_retry_same());
    }
    // An HTML error page from a front end.
    let bytes = b"<html><body>502 Bad Gateway</body></html>";
    let e = adapter().classify_error(&HttpResponse { status: 502, headers: &[], body: bytes });
    assert_eq!(e.kind, ErrorKind::Overloaded);
    // The array-wrapped envelope of the non-SSE stream endpoint.
    let e = classify(
        429,
        &[],
        json!([{"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}]),
    );
    assert_eq!(e.kind, ErrorKind::RateLimited);
}

#[test]
fn key_echoed_in_an_error_is_scrubbed() {
    let e = classify(
        400,
        &[],
        envelope(400, "INVALID_ARGUMENT", &format!("API key not valid: {KEY}"), json!([])),
    );
    let shown = format!("{e} {e:?} {}", e.provider_body.clone().unwrap_or_default());
    assert!(!shown.contains("CANARY"), "{shown}");
    assert_eq!(e.kind, ErrorKind::Auth);
}

// ---------------------------------------------------------------------------------------------
// Models and prices

#[test]
fn model_list_strips_the_prefix() {
    let body = br#"{"models":[{"name":"models/gemini-2.5-flash","version":"001","displayName":"Gemini 2.5 Flash","inputTokenLimit":1048576,"supportedGenerationMethods":["generateContent","countTokens"]},{"name":"models/embedding-001"}],"nextPageToken":"abc"}"#;
    assert_eq!(adapter().parse_models(body).unwrap(), vec!["gemini-2.5-flash", "embedding-001"]);
    assert_eq!(adapter().parse_models(b"nope").unwrap_err().kind, ErrorKind::MalformedResponse);
}

#[test]
fn price_table_and_overrides() {
    let a = adapter();
    assert_eq!(a.info().pricing.input_per_1k, 0.0003);
    assert_eq!(a.info().pricing.output_per_1k, 0.0025);
    let table = [
        ("gemini-2.5-pro", 0.00125, 0.01),
        ("gemini-2.5-flash", 0.0003, 0.0025),
        ("gemini-2.0-flash", 0.0001, 0.0004),
        ("gemini-1.5-pro", 0.00125, 0.005),
        ("gemini-1.5-flash", 0.000075, 0.0003),
    ];
    for (model, input, output) in table {
        let p = a.pricing(Some(model));
        assert_eq!((p.input_per_1k, p.output_per_1k), (input, output), "{model}");
        assert_eq!(known_price(&format!("{model}-002")), Some(p), "{model}: dated variants share the price");
    }
    assert_eq!(a.pricing(Some("models/gemini-2.0-flash")).input_per_1k, 0.0001);
    assert!(PRICES.len() >= table.len());
    // An unknown model is priced high, never free.
    assert!(!a.pricing(Some("gemini-experimental-9")).is_free());
    // The settings' override applies to every model.
    let custom = GeminiAdapter::new(&settings().pricing(Pricing::new(0.001, 0.002))).unwrap();
    assert_eq!(custom.pricing(Some("gemini-2.5-pro")), Pricing::new(0.001, 0.002));
    assert_eq!(custom.info().pricing, Pricing::new(0.001, 0.002));
}

#[test]
fn tool_choice_is_gemini_function_calling_config() {
    use claudette_core::ToolChoice;
    let tool = ToolSpec {
        name: "add".into(),
        description: String::new(),
        parameters: json!({"type": "object"}),
        cache: None,
        strict: false,
    };
    let body = |tool_choice: ToolChoice| -> Value {
        let request = ChatRequest { tools: vec![tool.clone()], tool_choice, ..ChatRequest::prompt("add") };
        let http = adapter().build_request(&request, false).unwrap();
        serde_json::from_slice(http.body.as_deref().unwrap()).unwrap()
    };
    assert!(body(ToolChoice::Auto).get("toolConfig").is_none());
    let config = |c: ToolChoice| body(c)["toolConfig"]["functionCallingConfig"].clone();
    assert_eq!(config(ToolChoice::None), json!({"mode": "NONE"}));
    assert_eq!(config(ToolChoice::Required), json!({"mode": "ANY"}));
    assert_eq!(
        config(ToolChoice::Tool("add".into())),
        json!({"mode": "ANY", "allowedFunctionNames": ["add"]})
    );
    // A tool that is not offered is the caller's error, not a request Gemini would refuse later.
    let unknown = ChatRequest {
        tools: vec![tool],
        tool_choice: ToolChoice::Tool("mul".into()),
        ..ChatRequest::prompt("x")
    };
    assert_eq!(
        adapter().build_request(&unknown, false).unwrap_err().kind,
        claudette_core::ErrorKind::InvalidRequest
    );
}

#[test]
fn empty_texts_never_become_empty_parts() {
    // Gemini answers `{"text": ""}` anywhere with 400 "required oneof field 'data' must have
    // one initialized field" (router-for-me/CLIProxyAPI #1292, songquanpeng/one-api #2243).
    let request = ChatRequest::new(vec![
        Message::system(""),
        Message::user("Hi"),
        Message::assistant(""),
        Message::user(""),
        Message::user("Still there?"),
    ]);
    assert_eq!(
        body_json(&adapter(), &request),
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}, {"text": "Still there?"}]}]})
    );
    // Nothing left to send is the caller's error, not a request Gemini would refuse later.
    let err = adapter()
        .build_request(&ChatRequest::new(vec![Message::system("Be terse."), Message::user("")]), false)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
}

#[test]
fn filter_stop_after_thoughts_only_is_a_block() {
    // Thought summaries streamed, then the answer blocked: reasoning is not an answer, so this
    // is the same content-policy error as the non-stream answer, not an empty success.
    let bytes = sse(&[
        chunk(
            json!([{"text": "Weighing the request", "thought": true}]),
            None,
            json!({"promptTokenCount": 9}),
        ),
        json!({"candidates": [{"finishReason": "SAFETY", "index": 0}],
               "usageMetadata": {"promptTokenCount": 9, "thoughtsTokenCount": 40}}),
    ]);
    let (events, err) = decode(&bytes, usize::MAX);
    assert!(!events.iter().any(StreamEvent::is_terminal), "{events:?}");
    let err = err.unwrap();
    assert_eq!((err.kind, err.code.as_deref()), (ErrorKind::ContentPolicy, Some("SAFETY")));
    // The non-stream form of the same answer, for comparison.
    let body = json!({"candidates": [{"content": {"parts": [{"text": "Weighing", "thought": true}], "role": "model"},
                                      "finishReason": "SAFETY"}]})
    .to_string();
    let err = adapter().parse_response(&ChatRequest::prompt("?"), &ok(body.as_bytes())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContentPolicy);
}

#[test]
fn response_format_is_gemini_json_mode() {
    use claudette_core::ResponseFormat;
    let config = |response_format| -> Value {
        let http = adapter()
            .build_request(&ChatRequest { response_format, ..ChatRequest::prompt("x") }, false)
            .unwrap();
        let body: Value = serde_json::from_slice(http.body.as_deref().unwrap()).unwrap();
        body["generationConfig"].clone()
    };
    assert!(config(ResponseFormat::Text).get("responseMimeType").is_none());
    assert_eq!(config(ResponseFormat::JsonObject)["responseMimeType"], "application/json");
    let schema = json!({"$schema": "x", "type": "object", "properties": {"a": {"type": "integer"}},
                        "additionalProperties": false});
    let c = config(ResponseFormat::JsonSchema { name: "answer".into(), schema, strict: true });
    assert_eq!(c["responseMimeType"], "application/json");
    // Cleaned to the OpenAPI subset Gemini takes, as tool parameters are.
    assert_eq!(c["responseSchema"], json!({"type": "object", "properties": {"a": {"type": "integer"}}}));
}
