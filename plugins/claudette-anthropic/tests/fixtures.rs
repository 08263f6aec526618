//! The Anthropic adapter on recorded bytes, synchronously: request bodies, real responses from
//! the testbed servers (llama.cpp, LiteLLM), a hand-written full stream, stream faults
//! F-15…F-19 of the reliability spec, every error class and cache pricing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_anthropic::{AnthropicAdapter, DEFAULT_MAX_TOKENS, DEFAULT_MODEL};
use claudette_core::{
    AuthScheme, BackendError, BackendSettings, BackendType, ChatRequest, ErrorKind, FinishReason,
    HttpResponse, Message, Method, Phase, Pricing, ProviderAdapter, RetryAction, StreamEvent, StreamParser,
    ToolCall, ToolCallDelta, ToolSpec, Usage, UsageSource,
};
use claudette_testkit::events::text_of;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn settings() -> BackendSettings {
    BackendSettings::new("claude").api_key("sk-ant-api03-canary-0123456789").model("claude-sonnet-4-5")
}

fn adapter() -> AnthropicAdapter {
    AnthropicAdapter::new(&settings()).unwrap()
}

fn local() -> AnthropicAdapter {
    AnthropicAdapter::new(
        &BackendSettings::new("llama").base_url("http://127.0.0.1:39180").model("tiny-llama"),
    )
    .unwrap()
}

/// The temperature-0 answer of the testbed's tiny model (U+FA03 is a CJK compatibility
/// ideograph, not the look-alike U+7CD6).
const SAMPLE_TEXT: &str = "\u{fa03} Lilly الخارجية jerseys";

fn ok(body: &[u8]) -> HttpResponse<'_> {
    HttpResponse { status: 200, headers: &[], body }
}

/// Runs `bytes` through the framer and the adapter's decoder, pushing `chunk` bytes at a time,
/// exactly as the I/O layer does. Returns the events and the terminal error, if any.
fn decode(a: &AnthropicAdapter, bytes: &[u8], chunk: usize) -> (Vec<StreamEvent>, Option<BackendError>) {
    let parser = StreamParser::for_adapter(a, &ChatRequest::prompt("hi"));
    claudette_testkit::events::decode_split(parser, bytes, chunk)
}

fn done(events: &[StreamEvent]) -> &claudette_core::StreamEnd {
    match events.last() {
        Some(StreamEvent::Done { end }) => end,
        other => panic!("stream did not end with Done: {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

// ---------------------------------------------------------------- requests

fn conversation() -> ChatRequest {
    let weather = |id: &str| ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: json!({"city": "Paris"}),
    };
    let mut r = ChatRequest::new(vec![
        Message::system("You are terse."),
        Message::user("Weather in Paris and the time?"),
        Message {
            tool_calls: vec![
                weather("toolu_01"),
                // Arguments kept as text by another provider's parser: sent as the object.
                ToolCall { id: "toolu_02".into(), name: "now".into(), arguments: json!("") },
            ],
            ..Message::assistant("Let me check.")
        },
        Message::tool_result("toolu_01", "18°C, cloudy"),
        Message::tool_result("toolu_02", "14:05"),
        Message::system("Answer in French."),
        Message::assistant("18°C and cloudy; it is 14:05."),
        Message::user("And tomorrow?"),
        Message { tool_calls: vec![weather("toolu_03")], ..Message::assistant("") },
        Message::tool_result("toolu_03", "20°C, sunny"),
        Message::user("Be brief."),
    ])
    .with_max_tokens(512)
    .with_temperature(0.7);
    r.top_p = Some(0.9);
    r.stop = vec!["\n\nHuman:".into(), "END".into()];
    r.tools = vec![
        ToolSpec {
            name: "get_weather".into(),
            description: "Current weather for a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            cache: None,
            strict: false,
        },
        ToolSpec { name: "now".into(), parameters: Value::Null, ..ToolSpec::default() },
    ];
    r.metadata.insert("tenant".into(), json!("never sent upstream"));
    r
}

#[test]
fn request_body_matches_golden() {
    let req = adapter().build_request(&conversation(), true).unwrap();
    let body: Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
    let golden: Value = serde_json::from_slice(&fixture("request_golden.json")).unwrap();
    assert_eq!(body, golden, "got:\n{}", serde_json::to_string_pretty(&body).unwrap());
    // Sampling values go out as written, not as their f32 widening (0.699999988…).
    let text = String::from_utf8(req.body.unwrap()).unwrap();
    assert!(text.contains("\"temperature\":0.7,"), "{text}");
}

#[test]
fn claude_gets_temperature_or_top_p_never_both() {
    // Claude Sonnet 4.5 / Haiku 4.5 / Opus 4.1+ answer 400 "`temperature` and `top_p` cannot
    // both be specified for this model. Please use only one." (BerriAI/litellm #15097).
    let body = |a: &AnthropicAdapter, r: &ChatRequest| -> Value {
        serde_json::from_slice(a.build_request(r, false).unwrap().body.as_deref().unwrap()).unwrap()
    };
    let mut both = ChatRequest::prompt("hi").with_temperature(0.3);
    both.top_p = Some(0.8);
    let claude = body(&adapter(), &both);
    assert_eq!(claude["temperature"], json!(0.3));
    assert!(claude.get("top_p").is_none(), "{claude}");
    let mut only_top_p = ChatRequest::prompt("hi");
    only_top_p.top_p = Some(0.8);
    assert_eq!(body(&adapter(), &only_top_p)["top_p"], json!(0.8));
    // A model that is not Claude, behind a compatible server, takes both.
    let llama = body(&local(), &both);
    assert_eq!((llama["temperature"].clone(), llama["top_p"].clone()), (json!(0.3), json!(0.8)));
}

#[test]
fn request_line_and_headers() {
    let s =
        settings().extra("anthropic_beta", json!(["prompt-caching-2024-07-31", "output-128k-2025-02-19"]));
    let a = AnthropicAdapter::new(&s).unwrap();
    let req = a.build_request(&ChatRequest::prompt("hi"), false).unwrap();
    assert_eq!(req.method, Method::Post);
    assert_eq!(req.url, "https://api.anthropic.com/v1/messages");
    let h = |name: &str| req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(h("anthropic-version"), Some("2023-06-01"));
    assert_eq!(h("anthropic-beta"), Some("prompt-caching-2024-07-31,output-128k-2025-02-19"));
    assert_eq!(h("content-type"), Some("application/json"));
    // The adapter never sees the key: the I/O layer attaches it by this scheme.
    assert_eq!(a.auth_scheme(), AuthScheme::Header("x-api-key".into()));
    assert!(req.headers.iter().all(|(_, v)| !v.contains("canary")));
    assert!(!format!("{req:?}").contains("canary"));
}

#[test]
fn request_defaults_and_overrides() {
    let a = adapter();
    let body = |r: &ChatRequest, stream| -> Value {
        serde_json::from_slice(a.build_request(r, stream).unwrap().body.as_deref().unwrap()).unwrap()
    };
    let plain = body(&ChatRequest::prompt("hi"), false);
    assert_eq!(
        plain,
        json!({"model": "claude-sonnet-4-5", "max_tokens": DEFAULT_MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}]})
    );
    let other = body(&ChatRequest::prompt("hi").with_model("claude-3-5-haiku-latest"), true);
    assert_eq!(other["model"], "claude-3-5-haiku-latest");
    assert_eq!(other["stream"], true);

    let v = settings().extra("anthropic_version", "2099-01-01").extra("default_max_tokens", 77);
    let a2 = AnthropicAdapter::new(&v).unwrap();
    let req = a2.build_request(&ChatRequest::prompt("hi"), false).unwrap();
    assert!(req.headers.contains(&("anthropic-version".into(), "2099-01-01".into())));
    let b: Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
    assert_eq!(b["max_tokens"], 77);

    // A request with nothing but system text cannot be sent.
    let err = a.build_request(&ChatRequest::new(vec![Message::system("x")]), false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
}

// ---------------------------------------------------------------- settings

#[test]
fn settings_are_checked() {
    let err = AnthropicAdapter::new(&settings().extra("anthropic_verison", "2023-06-01")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("anthropic_verison"), "{err}");

    let err = AnthropicAdapter::new(&BackendSettings::new("nokey")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("API key"), "{err}");
    let err = AnthropicAdapter::new(&BackendSettings::new("empty").api_key("")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);

    assert_eq!(
        AnthropicAdapter::new(&settings().extra("default_max_tokens", 0)).unwrap_err().kind,
        ErrorKind::Config
    );
    assert_eq!(
        AnthropicAdapter::new(&settings().extra("default_max_tokens", "many")).unwrap_err().kind,
        ErrorKind::Config
    );
    assert_eq!(AnthropicAdapter::new(&settings().base_url("ftp://x")).unwrap_err().kind, ErrorKind::Config);
    assert_eq!(AnthropicAdapter::new(&settings().quality(3.0)).unwrap_err().kind, ErrorKind::Config);
}

#[test]
fn info_defaults() {
    let a = AnthropicAdapter::new(&BackendSettings::new("c").api_key("k")).unwrap();
    let info = a.info();
    assert_eq!(info.provider, "anthropic");
    assert_eq!(info.model, DEFAULT_MODEL);
    assert_eq!(info.backend_type, BackendType::Cloud);
    assert_eq!(info.context_window, Some(200_000));
    assert!(info.supports_streaming && info.supports_tools);
    assert!(close(info.quality, 0.7));
    assert!(close(adapter().info().quality, 0.9));

    // No key needed off api.anthropic.com; loopback is self-hosted; a `/v1` suffix is accepted.
    let l = AnthropicAdapter::new(
        &BackendSettings::new("l").base_url("http://localhost:39180/v1/").model("tiny-llama").quality(0.2),
    )
    .unwrap();
    assert_eq!(l.auth_scheme(), AuthScheme::None);
    assert_eq!(l.info().backend_type, BackendType::SelfHosted);
    assert_eq!(l.info().context_window, None);
    assert!(l.info().pricing.is_free());
    assert!(close(l.info().quality, 0.2));
    assert_eq!(l.messages_url(), "http://localhost:39180/v1/messages");

    let c = AnthropicAdapter::new(
        &BackendSettings::new("c")
            .base_url("https://gateway.example/anthropic")
            .extra("backend_type", "self_hosted")
            .extra("context_window", 32_768),
    )
    .unwrap();
    assert_eq!(c.info().backend_type, BackendType::SelfHosted);
    assert_eq!(c.info().context_window, Some(32_768));
    assert_eq!(c.messages_url(), "https://gateway.example/anthropic/v1/messages");
}

#[test]
fn health_probe_lists_models_for_free() {
    let a = local();
    let probe = a.health_probe().unwrap();
    assert_eq!(probe.method, Method::Get);
    assert_eq!(probe.url, "http://127.0.0.1:39180/v1/models");
    assert!(probe.body.is_none());
    assert!(probe.headers.contains(&("anthropic-version".into(), "2023-06-01".into())));
    assert_eq!(a.parse_models(&fixture("llama_server_models.json")).unwrap(), vec!["tiny-llama".to_string()]);
    let anthropic = br#"{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"},{"type":"model","id":"claude-haiku-4-5-20251001"}],"has_more":false,"first_id":"a","last_id":"b"}"#;
    assert_eq!(
        a.parse_models(anthropic).unwrap(),
        vec!["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]
    );
    assert_eq!(a.parse_models(b"{}").unwrap_err().kind, ErrorKind::MalformedResponse);
    assert_eq!(a.parse_models(b"<html>").unwrap_err().kind, ErrorKind::MalformedResponse);
}

// ---------------------------------------------------------------- non-stream responses

#[test]
fn llama_server_message_sample() {
    let a = local();
    let body = fixture("llama_server_messages.json");
    let r = a.parse_response(&ChatRequest::prompt("Say hi"), &ok(&body)).unwrap();
    assert_eq!(r.content, SAMPLE_TEXT);
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(r.model, "tiny-llama");
    assert_eq!(r.backend, "llama");
    assert_eq!(r.id.as_deref(), Some("chatcmpl-XvtNtrxLgkW8q8ZPfI98f5eMBA8OQ9wA"));
    // input_tokens 1 excludes the 17 cached ones; ours is the whole prompt.
    assert_eq!(
        r.usage,
        Usage { input_tokens: 18, output_tokens: 4, cache_read_tokens: 17, ..Usage::reported(18, 4) }
    );
    assert!(r.tool_calls.is_empty() && r.reasoning.is_none());
    assert_eq!(r.cost, 0.0);
}

#[test]
fn litellm_message_samples() {
    let a = local();
    for (file, model) in
        [("litellm_messages.json", "vllm-tiny"), ("litellm_claude_tiny_messages.json", "claude-tiny")]
    {
        let body = fixture(file);
        let r = a.parse_response(&ChatRequest::prompt("Say hi"), &ok(&body)).unwrap();
        assert_eq!(r.model, model, "{file}");
        assert_eq!(r.content, SAMPLE_TEXT, "{file}");
        assert_eq!(r.finish_reason, Some(FinishReason::Length), "{file}");
        assert_eq!(
            (r.usage.input_tokens, r.usage.cache_read_tokens, r.usage.output_tokens),
            (18, 17, 4),
            "{file}"
        );
        assert_eq!(r.usage.source, UsageSource::Reported);
    }
}

#[test]
fn thinking_and_tool_use_response() {
    let a = adapter();
    let body = fixture("tool_response.json");
    let r = a.parse_response(&ChatRequest::prompt("weather?"), &ok(&body)).unwrap();
    assert_eq!(r.content, "Checking now.");
    assert_eq!(r.reasoning.as_deref(), Some("Need the weather tool."));
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        r.tool_calls,
        vec![ToolCall {
            id: "toolu_01A09q90qw90lq917835lq9".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "San Francisco", "unit": "celsius"}),
        }]
    );
    assert_eq!(r.usage.input_tokens, 2095 + 2000 + 10_000);
    assert_eq!((r.usage.cache_write_tokens, r.usage.cache_read_tokens), (2000, 10_000));
    // Priced at the model that answered (Opus 4.5: $5/$25 per MTok), cache classes at theirs.
    let expect = (2095.0 * 0.005 + 2000.0 * 0.005 * 1.25 + 10_000.0 * 0.005 * 0.1 + 503.0 * 0.025) / 1000.0;
    assert!(close(r.cost, expect), "{} vs {expect}", r.cost);
}

#[test]
fn every_stop_reason_maps() {
    let a = adapter();
    for (reason, want) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("tool_use", FinishReason::ToolCalls),
        ("refusal", FinishReason::ContentFilter),
        ("pause_turn", FinishReason::Other("pause_turn".into())),
    ] {
        let body = json!({"type": "message", "content": [], "stop_reason": reason, "usage": {"input_tokens": 1, "output_tokens": 0}});
        let body = serde_json::to_vec(&body).unwrap();
        let r = a.parse_response(&ChatRequest::prompt("x"), &ok(&body)).unwrap();
        assert_eq!(r.finish_reason, Some(want), "{reason}");
        // No model in the body: named after the model asked for.
        assert_eq!(r.model, "claude-sonnet-4-5");
    }
}

#[test]
fn unreadable_2xx_bodies() {
    let a = adapter();
    let req = ChatRequest::prompt("x");
    assert_eq!(a.parse_response(&req, &ok(b"not json")).unwrap_err().kind, ErrorKind::MalformedResponse);
    assert_eq!(
        a.parse_response(&req, &ok(b"{\"type\":\"message\"}")).unwrap_err().kind,
        ErrorKind::MalformedResponse
    );
    let bad_tool = br#"{"type":"message","content":[{"type":"tool_use","input":{}}]}"#;
    assert_eq!(a.parse_response(&req, &ok(bad_tool)).unwrap_err().kind, ErrorKind::MalformedResponse);
    // An error envelope under HTTP 200 (some proxies) is the error it describes.
    let wrapped = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let e = a.parse_response(&req, &ok(wrapped)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert_eq!(e.code.as_deref(), Some("overloaded_error"));
}

// ---------------------------------------------------------------- streams

#[test]
fn llama_server_stream_sample() {
    let a = local();
    let (events, err) = decode(&a, &fixture("llama_server_messages_stream.sse"), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    // Usage is reported as soon as message_start carries it (a cut stream can still be billed).
    assert_eq!(
        events[0],
        StreamEvent::Usage { usage: Usage { cache_read_tokens: 13, ..Usage::reported(20, 0) } }
    );
    assert_eq!(text_of(&events), "oproject靳_connector");
    let end = done(&events);
    assert_eq!(end.finish_reason, Some(FinishReason::Length));
    assert_eq!(end.usage, Usage { cache_read_tokens: 13, ..Usage::reported(20, 3) });
    assert_eq!(end.cost, 0.0);
}

#[test]
fn litellm_stream_samples_merge_message_delta_usage() {
    let a = local();
    // LiteLLM's own stream: message_start says 0/0, message_delta carries the real input and
    // cache counts (the DashScope pattern). They must replace, not add to, the first figures.
    let (events, err) = decode(&a, &fixture("litellm_messages_stream.sse"), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text_of(&events), "oproject靳_connector");
    assert_eq!(done(&events).usage, Usage { cache_read_tokens: 19, ..Usage::reported(20, 3) });

    let (events, err) = decode(&a, &fixture("litellm_claude_tiny_messages_stream.sse"), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(done(&events).usage, Usage { cache_read_tokens: 19, ..Usage::reported(20, 3) });
}

fn full_stream_expected() -> Vec<StreamEvent> {
    let start_usage =
        Usage { cache_write_tokens: 100, cache_read_tokens: 1000, ..Usage::reported(25 + 100 + 1000, 1) };
    let tool = |id: Option<&str>, name: Option<&str>, args: &str| StreamEvent::ToolCall {
        delta: ToolCallDelta {
            index: 2,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: args.into(),
        },
    };
    vec![
        StreamEvent::Usage { usage: start_usage },
        StreamEvent::ReasoningDelta { text: "The user wants Paris weather. ".into() },
        StreamEvent::ReasoningDelta { text: "Call the tool.".into() },
        // The signature a client must send back with the block.
        StreamEvent::ThinkingSeal {
            seal: claudette_core::ThinkingSeal::Signature(
                "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into(),
            ),
        },
        StreamEvent::text("Je vérifie la météo à "),
        StreamEvent::text("Paris 涌现 🌦"),
        // A citation of the text block, passed on in its place.
        StreamEvent::Citation {
            citation: serde_json::json!({"type": "char_location", "cited_text": "x", "document_index": 0,
                                         "start_char_index": 0, "end_char_index": 1}),
        },
        // The text block's end.
        StreamEvent::TextEnd,
        tool(Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6"), Some("get_weather"), ""),
        tool(None, None, "{\"city\": \"Pa"),
        tool(None, None, "ris\", \"unit\": \"c\"}"),
        StreamEvent::Usage { usage: Usage { output_tokens: 50, ..start_usage } },
        StreamEvent::Usage { usage: Usage { output_tokens: 87, ..start_usage } },
    ]
}

#[test]
fn full_stream_with_thinking_tools_pings_and_unknown_events() {
    let a = adapter();
    let (events, err) = decode(&a, &fixture("full_stream.sse"), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(rest, full_stream_expected().as_slice());
    let StreamEvent::Done { end } = last else { panic!("{last:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::ToolCalls));
    // Cumulative: the last message_delta (87), never 1 + 50 + 87.
    assert_eq!(end.usage.output_tokens, 87);
    assert_eq!(end.usage.input_tokens, 1125);
    // Sonnet 4.5: $3/$15 per MTok; writes 1.25×, reads 0.1× the input rate.
    let expect = (25.0 * 0.003 + 100.0 * 0.003 * 1.25 + 1000.0 * 0.003 * 0.1 + 87.0 * 0.015) / 1000.0;
    assert!(close(end.cost, expect), "{} vs {expect}", end.cost);

    // The fragments join into the call's arguments object.
    let args: String = events
        .iter()
        .filter_map(|e| {
            if let StreamEvent::ToolCall { delta } = e { Some(delta.arguments.as_str()) } else { None }
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "Paris", "unit": "c"}));
}

#[test]
fn split_at_every_byte_is_identical_f18() {
    let a = adapter();
    let bytes = fixture("full_stream.sse");
    let (whole, err) = decode(&a, &bytes, usize::MAX);
    assert!(err.is_none());
    let (split, err) = decode(&a, &bytes, 1);
    assert!(err.is_none(), "{err:?}");
    // Text deltas may not split differently: the decoder works on whole frames.
    assert_eq!(split, whole);
    // CRLF line ends too.
    let crlf = String::from_utf8(bytes).unwrap().replace('\n', "\r\n");
    assert_eq!(decode(&a, crlf.as_bytes(), 1).0, whole);
    for sample in ["llama_server_messages_stream.sse", "litellm_messages_stream.sse"] {
        let b = fixture(sample);
        assert_eq!(decode(&local(), &b, 1), decode(&local(), &b, usize::MAX), "{sample}");
    }
}

#[test]
fn overloaded_error_as_first_event_f15() {
    let a = adapter();
    let sse = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},\"request_id\":\"req_011CSHoEeqs5C35K2UUqR7Fy\"}\n\n";
    let (events, err) = decode(&a, sse, usize::MAX);
    assert!(events.is_empty(), "{events:?}");
    let err = err.unwrap();
    // The same class as HTTP 529: transient, retry/fail over before anything was committed.
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert_eq!(err.action(), RetryAction::Retry);
    assert_eq!(err.code.as_deref(), Some("overloaded_error"));
    assert_eq!(err.phase, Some(Phase::Body));
    assert!(err.message.contains("req_011CSHoEeqs5C35K2UUqR7Fy"), "{err}");
}

#[test]
fn error_after_content_f16() {
    let a = adapter();
    let head = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n\
                event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
                event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n";
    for (tail, kind) in [
        (
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            ErrorKind::Overloaded,
        ),
        (
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n",
            ErrorKind::RateLimited,
        ),
        (
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}\n\n",
            ErrorKind::Overloaded,
        ),
        (
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"bad\"}}\n\n",
            ErrorKind::InvalidRequest,
        ),
        // llama.cpp's OpenAI-style error envelope, with and without an event name.
        (
            "data: {\"error\":{\"code\":500,\"message\":\"slot died\",\"type\":\"server_error\"}}\n\n",
            ErrorKind::Overloaded,
        ),
        (
            "event: error\ndata: {\"error\":{\"code\":400,\"message\":\"request (5019 tokens) exceeds the available context size (4096 tokens)\",\"type\":\"exceed_context_size_error\"}}\n\n",
            ErrorKind::ContextOverflow,
        ),
    ] {
        let sse = format!("{head}{tail}event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n");
        let (events, err) = decode(&a, sse.as_bytes(), usize::MAX);
        assert_eq!(text_of(&events), "Hel", "{tail}");
        assert!(matches!(events[0], StreamEvent::Usage { .. }), "usage before content so it can be billed");
        assert!(!events.iter().any(StreamEvent::is_terminal), "no Done after an error: {events:?}");
        assert_eq!(err.map(|e| e.kind), Some(kind), "{tail}");
    }
}

#[test]
fn stream_without_message_stop_is_interrupted_f17() {
    let a = adapter();
    let bytes = fixture("full_stream.sse");
    let text = String::from_utf8(bytes).unwrap();
    let cut = text.find("event: message_stop").unwrap();
    let (events, err) = decode(&a, &text.as_bytes()[..cut], usize::MAX);
    let err = err.expect("a stream that just stops is never a success");
    assert_eq!(err.kind, ErrorKind::StreamInterrupted);
    assert!(!events.iter().any(StreamEvent::is_terminal));
    // Reported usage reached the caller before the cut, for the ledger (L-5).
    let last_usage = events
        .iter()
        .rev()
        .find_map(|e| if let StreamEvent::Usage { usage } = e { Some(*usage) } else { None });
    assert_eq!(last_usage.map(|u| (u.output_tokens, u.source)), Some((87, UsageSource::Reported)));

    // Cut in the middle of a frame (its data line never came), and an empty body.
    let mid = text.find("event: message_delta").unwrap() + "event: message_delta\n".len();
    let (_, err) = decode(&a, &text.as_bytes()[..mid], usize::MAX);
    assert_eq!(err.map(|e| e.kind), Some(ErrorKind::StreamInterrupted));
    let (events, err) = decode(&a, b"", usize::MAX);
    assert!(events.is_empty());
    assert_eq!(err.map(|e| e.kind), Some(ErrorKind::StreamInterrupted));
}

#[test]
fn malformed_stream_data_f19() {
    let a = adapter();
    for bad in [
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"\n\n",
        "data: not json at all\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":\"many\"}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\"}}\n\n",
    ] {
        let sse = format!("{bad}event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n");
        let (_, err) = decode(&a, sse.as_bytes(), usize::MAX);
        assert_eq!(err.map(|e| e.kind), Some(ErrorKind::MalformedResponse), "{bad}");
    }
    // An event type we do not know may carry anything, JSON or not.
    let sse =
        "event: brand_new\ndata: <<binary>>\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (events, err) = decode(&a, sse.as_bytes(), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(done(&events).usage.source, UsageSource::Missing);
}

#[test]
fn tool_input_sent_whole_in_block_start() {
    // Some compatible servers put the whole input in content_block_start and send no deltas.
    let a = adapter();
    let sse = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{\"x\":1}}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
               event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (events, err) = decode(&a, sse.as_bytes(), usize::MAX);
    assert!(err.is_none());
    let args: String = events
        .iter()
        .filter_map(|e| {
            if let StreamEvent::ToolCall { delta } = e { Some(delta.arguments.as_str()) } else { None }
        })
        .collect();
    assert_eq!(args, "{\"x\":1}");
}

// ---------------------------------------------------------------- errors

struct Case {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    kind: ErrorKind,
    code: Option<&'static str>,
}

fn anthropic_error(ty: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": ty, "message": message}, "request_id": "req_0123"}).to_string()
}

fn case(status: u16, body: String, kind: ErrorKind, code: Option<&'static str>) -> Case {
    Case { status, headers: Vec::new(), body, kind, code }
}

#[test]
fn every_error_class() {
    let a = adapter();
    let spend = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached your specified API usage limits.", "details": {"error_code": "enforced_spend_limit_reached"}}}).to_string();
    let cases = vec![
        case(
            529,
            anthropic_error("overloaded_error", "Overloaded"),
            ErrorKind::Overloaded,
            Some("overloaded_error"),
        ),
        case(529, String::new(), ErrorKind::Overloaded, None),
        case(
            500,
            anthropic_error("api_error", "Internal server error"),
            ErrorKind::Overloaded,
            Some("api_error"),
        ),
        case(
            504,
            anthropic_error("timeout_error", "Request timed out"),
            ErrorKind::Overloaded,
            Some("timeout_error"),
        ),
        case(429, spend, ErrorKind::QuotaExhausted, Some("rate_limit_error")),
        case(
            400,
            anthropic_error(
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API.",
            ),
            ErrorKind::QuotaExhausted,
            Some("invalid_request_error"),
        ),
        case(
            402,
            anthropic_error("billing_error", "Payment required"),
            ErrorKind::QuotaExhausted,
            Some("billing_error"),
        ),
        case(
            401,
            anthropic_error("authentication_error", "invalid x-api-key"),
            ErrorKind::Auth,
            Some("authentication_error"),
        ),
        case(
            403,
            anthropic_error("permission_error", "no access"),
            ErrorKind::Auth,
            Some("permission_error"),
        ),
        case(
            413,
            anthropic_error("request_too_large", "Request exceeds the maximum size"),
            ErrorKind::InvalidRequest,
            Some("request_too_large"),
        ),
        case(
            413,
            "<html><body>413 Request Entity Too Large</body></html>".into(),
            ErrorKind::InvalidRequest,
            None,
        ),
        case(
            400,
            anthropic_error("invalid_request_error", "prompt is too long: 210345 tokens > 200000 maximum"),
            ErrorKind::ContextOverflow,
            Some("invalid_request_error"),
        ),
        case(
            400,
            anthropic_error(
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000",
            ),
            ErrorKind::ContextOverflow,
            Some("invalid_request_error"),
        ),
        case(
            400,
            anthropic_error("invalid_request_error", "messages: roles must alternate"),
            ErrorKind::InvalidRequest,
            Some("invalid_request_error"),
        ),
        case(
            404,
            anthropic_error("not_found_error", "model: claude-9"),
            ErrorKind::NotFound,
            Some("not_found_error"),
        ),
        case(
            409,
            anthropic_error("conflict_error", "conflict"),
            ErrorKind::Overloaded,
            Some("conflict_error"),
        ),
        // Real samples from the testbed.
        case(
            400,
            String::from_utf8(fixture("llama_server_err_context.json")).unwrap(),
            ErrorKind::ContextOverflow,
            Some("exceed_context_size_error"),
        ),
        case(
            400,
            String::from_utf8(fixture("litellm_messages_unknown_model.json")).unwrap(),
            ErrorKind::InvalidRequest,
            Some("invalid_request_error"),
        ),
        case(502, "upstream connect error".into(), ErrorKind::Overloaded, None),
    ];
    for c in cases {
        let resp = HttpResponse { status: c.status, headers: &c.headers, body: c.body.as_bytes() };
        let e = a.classify_error(&resp);
        assert_eq!(e.kind, c.kind, "{} {}", c.status, c.body);
        assert_eq!(e.code.as_deref(), c.code, "{} {}", c.status, c.body);
        assert_eq!(e.status, Some(c.status));
        assert_eq!(e.backend.as_deref(), Some("claude"));
        assert!(!e.message.is_empty());
        assert!(!e.message.contains('<'), "HTML is not a message: {}", e.message);
    }
}

#[test]
fn rate_limit_hint_and_request_id() {
    let a = adapter();
    let headers = vec![
        ("retry-after".to_string(), "7".to_string()),
        ("request-id".to_string(), "req_from_header".to_string()),
        ("anthropic-ratelimit-requests-remaining".to_string(), "0".to_string()),
    ];
    let body = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}}).to_string();
    let e = a.classify_error(&HttpResponse { status: 429, headers: &headers, body: body.as_bytes() });
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert!(e.message.contains("req_from_header"), "{e}");
    assert!(e.message.contains("rate limit"), "{e}");

    // x-should-retry: false turns a transient error into fail-over-only.
    let headers = vec![("x-should-retry".to_string(), "false".to_string())];
    let body = anthropic_error("overloaded_error", "Overloaded");
    let e = a.classify_error(&HttpResponse { status: 529, headers: &headers, body: body.as_bytes() });
    assert_eq!(e.action(), RetryAction::FailOver);
}

#[test]
fn keys_never_reach_error_text() {
    let a = adapter();
    let body = anthropic_error("authentication_error", "invalid x-api-key: sk-ant-api03-canary-0123456789");
    let e = a.classify_error(&HttpResponse { status: 401, headers: &[], body: body.as_bytes() });
    let everything = format!("{e} {e:?} {} {}", e.message, e.provider_body.clone().unwrap_or_default());
    assert!(!everything.contains("canary-0123456789"), "{everything}");
    assert!(everything.contains("invalid x-api-key"));

    let sse = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"bad key sk-ant-api03-canary-0123456789\"}}\n\n";
    let (_, err) = decode(&a, sse, usize::MAX);
    let e = err.unwrap();
    assert_eq!(e.kind, ErrorKind::Auth);
    let everything = format!("{e} {}", e.provider_body.clone().unwrap_or_default());
    assert!(!everything.contains("canary-0123456789"), "{everything}");
}

// ---------------------------------------------------------------- pricing

#[test]
fn cache_pricing() {
    let a = adapter();
    let p = a.pricing(None);
    assert!(close(p.input_per_1k, 0.003) && close(p.output_per_1k, 0.015));
    assert!(close(p.cache_write_per_1k.unwrap(), 0.003 * 1.25));
    assert!(close(p.cache_read_per_1k.unwrap(), 0.003 * 0.1));
    let u = Usage {
        cache_write_tokens: 2000,
        cache_read_tokens: 50_000,
        ..Usage::reported(1000 + 2000 + 50_000, 700)
    };
    let expect = (1000.0 * 0.003 + 2000.0 * 0.00375 + 50_000.0 * 0.0003 + 700.0 * 0.015) / 1000.0;
    assert!(close(p.cost(&u), expect));

    // Other models by longest prefix; the table knows the old and the new Opus prices.
    assert!(close(a.pricing(Some("claude-3-opus-20240229")).input_per_1k, 0.015));
    assert!(close(a.pricing(Some("claude-opus-4-1-20250805")).output_per_1k, 0.075));
    assert!(close(a.pricing(Some("claude-opus-4-5-20251101")).output_per_1k, 0.025));
    assert!(close(a.pricing(Some("claude-3-5-haiku-20241022")).input_per_1k, 0.0008));
    assert!(close(a.pricing(Some("claude-haiku-4-5-20251001")).input_per_1k, 0.001));
    assert!(close(a.pricing(Some("claude-3-haiku-20240307")).output_per_1k, 0.00125));
    assert!(close(a.pricing(Some("claude-3-7-sonnet-latest")).input_per_1k, 0.003));

    // A settings override wins for every model, with Anthropic's cache multipliers unless given.
    let o = AnthropicAdapter::new(&settings().pricing(Pricing::new(0.01, 0.02))).unwrap();
    for m in [None, Some("claude-3-opus-20240229")] {
        let p = o.pricing(m);
        assert!(close(p.input_per_1k, 0.01) && close(p.cache_write_per_1k.unwrap(), 0.0125));
        assert!(close(p.cache_read_per_1k.unwrap(), 0.001));
    }
    let explicit =
        AnthropicAdapter::new(&settings().pricing(Pricing::new(0.01, 0.02).with_cache(0.5, 0.7))).unwrap();
    assert_eq!(explicit.pricing(None).cache_write_per_1k, Some(0.7));
}

#[test]
fn tool_choice_is_anthropic_tool_choice() {
    use claudette_core::{ErrorKind, ToolChoice};
    let body = |tool_choice| -> Value {
        let req = adapter().build_request(&ChatRequest { tool_choice, ..conversation() }, false).unwrap();
        serde_json::from_slice(req.body.as_deref().unwrap()).unwrap()
    };
    assert!(body(ToolChoice::Auto).get("tool_choice").is_none());
    assert_eq!(body(ToolChoice::None)["tool_choice"], json!({"type": "none"}));
    assert_eq!(body(ToolChoice::Required)["tool_choice"], json!({"type": "any"}));
    assert_eq!(body(ToolChoice::Tool("now".into()))["tool_choice"], json!({"type": "tool", "name": "now"}));
    let unknown = ChatRequest { tool_choice: ToolChoice::Tool("mul".into()), ..conversation() };
    assert_eq!(adapter().build_request(&unknown, false).unwrap_err().kind, ErrorKind::InvalidRequest);
}

/// The tool-call fragments of `events`, concatenated per index.
fn tool_args(events: &[StreamEvent]) -> std::collections::BTreeMap<u32, String> {
    let mut calls = std::collections::BTreeMap::<u32, String>::new();
    for e in events {
        if let StreamEvent::ToolCall { delta } = e {
            calls.entry(delta.index).or_default().push_str(&delta.arguments);
        }
    }
    calls
}

#[test]
fn server_tool_use_is_not_a_client_tool_call() {
    // Anthropic's web search stream (docs, "Web search tool" › Streaming): the server tool's
    // query arrives as `input_json_delta` on a `server_tool_use` block, and Anthropic runs it.
    let a = adapter();
    let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
               event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
               event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Searching.\"}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
               event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_xyz789\",\"name\":\"web_search\"}}\n\n\
               event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\":\\\"quantum 2025\\\"}\"}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
               event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"web_search_tool_result\",\"tool_use_id\":\"srvtoolu_xyz789\",\"content\":[{\"type\":\"web_search_result\",\"title\":\"Q\",\"url\":\"https://example.com\"}]}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n\
               event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
               event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"text_delta\",\"text\":\" Found it.\"}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n\
               event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n\
               event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (events, err) = decode(&a, sse.as_bytes(), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text_of(&events), "Searching. Found it.");
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::ToolCall { .. })), "{events:?}");
    assert_eq!(done(&events).finish_reason, Some(FinishReason::Stop));
}

#[test]
fn tool_call_without_arguments_streams_an_object() {
    // A tool without parameters: Anthropic sends `input: {}` and one empty `partial_json`.
    let a = adapter();
    let sse = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"now\",\"input\":{}}}\n\n\
               event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
               event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"f\",\"input\":{\"x\":1}}}\n\n\
               event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
               event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n\
               event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (events, err) = decode(&a, sse.as_bytes(), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    let calls = tool_args(&events);
    assert_eq!(calls.get(&0).map(String::as_str), Some("{}"));
    // An input sent whole at the start survives an empty fragment after it.
    assert_eq!(calls.get(&1).map(String::as_str), Some("{\"x\":1}"));
    assert_eq!(done(&events).finish_reason, Some(FinishReason::ToolCalls));
}

#[test]
fn zero_input_in_message_delta_does_not_erase_the_prompt() {
    // sglang's /v1/messages stream: the real count in message_start, `input_tokens: 0` in
    // message_delta (sgl-project/sglang #20830).
    let a = adapter();
    let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":1500,\"cache_read_input_tokens\":200,\"output_tokens\":0}}}\n\n\
               event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
               event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
               event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
               event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":16}}\n\n\
               event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (events, err) = decode(&a, sse.as_bytes(), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    let end = done(&events);
    assert_eq!(end.usage, Usage { cache_read_tokens: 200, ..Usage::reported(1700, 16) });
    let expect = (1500.0 * 0.003 + 200.0 * 0.003 * 0.1 + 16.0 * 0.015) / 1000.0;
    assert!(close(end.cost, expect), "{} vs {expect}", end.cost);
}

#[test]
fn response_format_is_unsupported_so_the_router_fails_over() {
    use claudette_core::{ErrorKind, ResponseFormat};
    let request = ChatRequest { response_format: ResponseFormat::JsonObject, ..conversation() };
    let e = adapter().build_request(&request, false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert!(e.message.contains("response_format"), "{e}");
}
