//! Synchronous tests of the OpenAI adapter on recorded bytes: request bodies, responses and
//! streams recorded from real servers (llama.cpp, llama-cpp-python, LiteLLM; see
//! `tests/fixtures/README.md`), OpenAI-shaped transcripts for what the tiny testbed model
//! cannot produce (tool calls, reasoning), and every error class.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use claudette_core::{
    AuthScheme, BackendError, BackendSettings, BackendType, ChatRequest, ErrorKind, FinishReason, Framing,
    HttpResponse, Message, Method, Pricing, ProviderAdapter, RetryAction, StreamDecoder, StreamEvent,
    StreamParser, ToolCall, ToolSpec, Usage, UsageSource,
};
use claudette_openai::{
    MaxTokensField, OPENAI_MODELS, OpenAiAdapter, OpenAiOptions, OpenAiStreamDecoder, classify_openai_error,
    lookup_model, parse_chat_completion,
};
use claudette_testkit::events::text_of;
use serde_json::{Value, json};

const SERVERS: [&str; 3] = ["llama-server", "llama-cpp-python", "litellm"];

/// The recorded non-stream answer (U+FA03 is a CJK compatibility ideograph, not U+7CD6).
const RECORDED_TEXT: &str = "\u{fa03} Lilly \u{627}\u{644}\u{62e}\u{627}\u{631}\u{62c}\u{64a}\u{629} jerseys\u{e40}\u{e23}\u{e37}\u{e48}\u{e2d}\u{e07}(destinationconto\u{5de5}\u{4e1a}";

fn fixture(server: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(server).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn local(name: &str) -> BackendSettings {
    BackendSettings::new(name).base_url("http://127.0.0.1:39180/v1").model("tiny-llama")
}

fn openai(model: &str) -> OpenAiAdapter {
    OpenAiAdapter::new(&BackendSettings::new("oa").api_key("sk-test-0123456789").model(model)).unwrap()
}

fn response<'a>(status: u16, headers: &'a [(String, String)], body: &'a [u8]) -> HttpResponse<'a> {
    HttpResponse { status, headers, body }
}

fn body_json(req: &claudette_core::HttpRequest) -> Value {
    serde_json::from_slice(req.body.as_deref().unwrap()).unwrap()
}

/// Runs `chunks` through the core SSE framer and a fresh decoder, like the I/O layer does:
/// the events in order, ending with `Done` or `Error` (the decoder's terminal result).
fn transcript<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<StreamEvent> {
    let mut parser = StreamParser::new(Framing::Sse, Box::new(OpenAiStreamDecoder::new()));
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk, &mut out);
    }
    parser.finish(&mut out);
    out
}

fn whole(bytes: &[u8]) -> Vec<StreamEvent> {
    transcript([bytes])
}

fn last(events: &[StreamEvent]) -> &StreamEvent {
    events.last().expect("a stream always ends with an event")
}

fn done_end(events: &[StreamEvent]) -> &claudette_core::StreamEnd {
    let done: Vec<_> = events.iter().filter(|e| matches!(e, StreamEvent::Done { .. })).collect();
    assert_eq!(done.len(), 1, "exactly one Done: {events:?}");
    match last(events) {
        StreamEvent::Done { end } => end,
        other => panic!("stream must end with Done, got {other:?}"),
    }
}

fn terminal_error(events: &[StreamEvent]) -> &BackendError {
    assert!(
        !events.iter().any(|e| matches!(e, StreamEvent::Done { .. })),
        "no Done after a failure: {events:?}"
    );
    match last(events) {
        StreamEvent::Error { error } => error,
        other => panic!("stream must end with Error, got {other:?}"),
    }
}

fn sse(chunks: &[Value]) -> String {
    chunks.iter().map(|c| format!("data: {c}\n\n")).collect()
}

// ---------------------------------------------------------------------------------------------
// Request bodies

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        cache: None,
        strict: false,
    }
}

fn conversation() -> ChatRequest {
    let mut assistant = Message::assistant("");
    assistant.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: json!({"city": "Paris"}),
    }];
    let mut req = ChatRequest::new(vec![
        Message::system("Be brief."),
        Message::user("Weather in Paris?"),
        assistant,
        Message::tool_result("call_1", "{\"temp_c\":21}"),
    ])
    .with_max_tokens(64)
    .with_temperature(0.7);
    req.top_p = Some(0.9);
    req.stop = vec!["\n\n".into()];
    req.tools = vec![weather_tool()];
    req.tags = vec!["never-sent".into()];
    req.metadata.insert("trace".into(), json!("never-sent"));
    req
}

#[test]
fn request_body_is_exact_openai_json() {
    let adapter = openai("gpt-4o");
    let http = adapter.build_request(&conversation(), false).unwrap();
    assert_eq!(http.method, Method::Post);
    assert_eq!(http.url, "https://api.openai.com/v1/chat/completions");
    assert_eq!(
        body_json(&http),
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":21}"}
            ],
            "max_tokens": 64,
            "temperature": 0.7,
            "top_p": 0.9,
            "stop": ["\n\n"],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}
            }}]
        })
    );
    // The wire text, not only the parsed value, says 0.7 (no f32 widening noise).
    let raw = String::from_utf8(http.body.clone().unwrap()).unwrap();
    assert!(raw.contains("\"temperature\":0.7,"), "{raw}");
    let header =
        |name: &str| http.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("accept"), Some("application/json"));
    assert_eq!(header("authorization"), None, "the adapter never sees the key");
    assert_eq!(adapter.auth_scheme(), AuthScheme::Bearer);
}

#[test]
fn stream_body_asks_for_usage_unless_switched_off() {
    let req = ChatRequest::prompt("Say hi").with_max_tokens(8);
    let on = OpenAiAdapter::new(&local("l")).unwrap().build_request(&req, true).unwrap();
    assert_eq!(
        body_json(&on),
        json!({
            "model": "tiny-llama",
            "messages": [{"role": "user", "content": "Say hi"}],
            "max_tokens": 8,
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
    assert!(on.headers.contains(&("accept".into(), "text/event-stream".into())));

    let off = OpenAiAdapter::new(&local("l").extra("stream_include_usage", false)).unwrap();
    let body = body_json(&off.build_request(&req, true).unwrap());
    assert_eq!(body["stream"], json!(true));
    assert!(body.get("stream_options").is_none(), "{body}");
    // Non-stream bodies carry neither field.
    let plain = body_json(&off.build_request(&req, false).unwrap());
    assert!(plain.get("stream").is_none() && plain.get("stream_options").is_none(), "{plain}");
}

#[test]
fn max_tokens_field_setting_and_reasoning_models() {
    let req = ChatRequest::prompt("x").with_max_tokens(5);
    let field = |a: &OpenAiAdapter, r: &ChatRequest| {
        let b = body_json(&a.build_request(r, false).unwrap());
        (b.get("max_tokens").cloned(), b.get("max_completion_tokens").cloned())
    };
    assert_eq!(field(&openai("gpt-4o-mini"), &req), (Some(json!(5)), None));
    // o-series reject `max_tokens`; the table knows, per request model.
    assert_eq!(field(&openai("o3-mini"), &req), (None, Some(json!(5))));
    assert_eq!(field(&openai("gpt-4o"), &req.clone().with_model("o4-mini")), (None, Some(json!(5))));
    let explicit = OpenAiAdapter::new(
        &BackendSettings::new("n")
            .api_key("sk-test-0123456789")
            .extra("max_tokens_field", "max_completion_tokens"),
    )
    .unwrap();
    assert_eq!(field(&explicit, &req), (None, Some(json!(5))));
    let bad = OpenAiAdapter::new(&local("n").extra("max_tokens_field", "max_tokenz")).unwrap_err();
    assert_eq!(bad.kind, ErrorKind::Config);
    assert!(bad.message.contains("max_tokens_field"), "{bad}");
}

#[test]
fn request_model_overrides_the_configured_one() {
    let adapter = OpenAiAdapter::new(&local("l")).unwrap();
    let body =
        body_json(&adapter.build_request(&ChatRequest::prompt("x").with_model("other"), false).unwrap());
    assert_eq!(body["model"], "other");
}

#[test]
fn tool_result_without_call_id_is_rejected_locally() {
    let mut req = ChatRequest::prompt("x");
    req.messages.push(Message::new(claudette_core::Role::Tool, "42"));
    let err = OpenAiAdapter::new(&local("l")).unwrap().build_request(&req, false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(err.message.contains("message 1") && err.message.contains("tool_call_id"), "{err}");
}

#[test]
fn unparsable_arguments_go_back_verbatim_not_double_encoded() {
    let mut assistant = Message::assistant("thinking aloud");
    assistant.tool_calls = vec![ToolCall { id: "c".into(), name: "f".into(), arguments: json!("{\"a\":") }];
    let req = ChatRequest::new(vec![Message::user("x"), assistant]);
    let body = body_json(&OpenAiAdapter::new(&local("l")).unwrap().build_request(&req, false).unwrap());
    assert_eq!(body["messages"][1]["content"], "thinking aloud");
    assert_eq!(body["messages"][1]["tool_calls"][0]["function"]["arguments"], "{\"a\":");
}

#[test]
fn organization_header_and_base_url_with_path_and_query() {
    let adapter = OpenAiAdapter::new(
        &BackendSettings::new("az")
            .api_key("k-0123456789")
            .base_url("https://proxy.example.com/openai/v1/?api-version=2024-10-21")
            .extra("organization", "org-123"),
    )
    .unwrap();
    let http = adapter.build_request(&ChatRequest::prompt("x"), false).unwrap();
    assert_eq!(http.url, "https://proxy.example.com/openai/v1/chat/completions?api-version=2024-10-21");
    assert!(http.headers.contains(&("OpenAI-Organization".into(), "org-123".into())));
    let probe = adapter.health_probe().unwrap();
    assert_eq!(probe.method, Method::Get);
    assert_eq!(probe.url, "https://proxy.example.com/openai/v1/models?api-version=2024-10-21");
    assert!(probe.headers.contains(&("OpenAI-Organization".into(), "org-123".into())));
}

// ---------------------------------------------------------------------------------------------
// Settings and BackendInfo

#[test]
fn settings_defaults_and_info() {
    let a =
        OpenAiAdapter::new(&BackendSettings::new("cloud").api_key("sk-test-0123456789").priority(3)).unwrap();
    let info = a.info();
    assert_eq!(info.name, "cloud");
    assert_eq!(info.provider, "openai");
    assert_eq!(info.model, "gpt-4o-mini");
    assert_eq!(info.backend_type, BackendType::Cloud);
    assert_eq!(info.priority, 3);
    assert_eq!(info.context_window, Some(128_000));
    assert!((info.quality - 0.75).abs() < 1e-9);
    assert!(info.supports_streaming && info.supports_tools && info.enabled);
    assert_eq!(info.pricing, lookup_model(OPENAI_MODELS, "gpt-4o-mini").unwrap().pricing);
    assert_eq!(a.validate(), Ok(()));

    let l = OpenAiAdapter::new(&local("llama").tags(["local"]).quality(0.3).extra("context_window", 4096))
        .unwrap();
    assert_eq!(l.info().backend_type, BackendType::SelfHosted);
    assert_eq!(l.info().context_window, Some(4096));
    assert_eq!(l.info().tags, vec!["local".to_owned()]);
    assert!((l.info().quality - 0.3).abs() < 1e-9);
    assert!(l.info().pricing.is_free());
    assert_eq!(l.auth_scheme(), AuthScheme::None);
    assert_eq!(l.validate(), Ok(()), "a local server needs no key");

    let forced = OpenAiAdapter::new(&local("l").extra("backend_type", "cloud")).unwrap();
    assert_eq!(forced.info().backend_type, BackendType::Cloud);

    assert!((openai("gpt-4").info().quality - 0.85).abs() < 1e-9);
    assert_eq!(openai("gpt-4").info().context_window, Some(8192));
    assert!((openai("my-finetune").info().quality - 0.5).abs() < 1e-9);
    assert_eq!(openai("my-finetune").info().context_window, None);
}

#[test]
fn openai_without_key_is_a_config_error_naming_the_backend() {
    let a = OpenAiAdapter::new(&BackendSettings::new("prod-gpt").model("gpt-4o")).unwrap();
    assert_eq!(a.auth_scheme(), AuthScheme::None);
    let err = a.validate().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("prod-gpt") && err.message.contains("api.openai.com"), "{err}");
    let empty = OpenAiAdapter::new(&BackendSettings::new("e").api_key("")).unwrap();
    assert_eq!(empty.validate().unwrap_err().kind, ErrorKind::Config, "an empty key is no key");
}

#[test]
fn bad_settings_are_config_errors() {
    let err = |s: BackendSettings| OpenAiAdapter::new(&s).unwrap_err();
    let e = err(local("typo").extra("stream_include_usgae", false));
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("stream_include_usgae") && e.message.contains("typo"), "{e}");
    assert_eq!(err(local("t").extra("stream_include_usage", "yes")).kind, ErrorKind::Config);
    assert_eq!(err(local("t").extra("backend_type", "edge")).kind, ErrorKind::Config);
    assert_eq!(err(local("t").extra("context_window", 0)).kind, ErrorKind::Config);
    assert_eq!(err(local("t").base_url("ftp://x")).kind, ErrorKind::Config);
    assert_eq!(err(local("t").base_url("http://user:pw@host/v1")).kind, ErrorKind::Config);
    assert_eq!(err(local("t").quality(1.5)).kind, ErrorKind::Config);
    assert_eq!(err(local("t").pricing(Pricing::new(-1.0, 0.0))).kind, ErrorKind::Config);
    let no_model = OpenAiOptions::openai().provider("qwen").default_model(None);
    let e =
        OpenAiAdapter::with_options(&BackendSettings::new("q").base_url("http://127.0.0.1:1/v1"), no_model)
            .unwrap_err();
    assert!(e.message.contains("`model` is required"), "{e}");
}

#[test]
fn options_make_another_provider() {
    let options = OpenAiOptions::openai()
        .provider("qwen")
        .default_base_url("http://127.0.0.1:8000/v1")
        .default_model(Some("Qwen/Qwen3-8B".into()))
        .models(&[])
        .key_required_hosts(Vec::<String>::new())
        .allow_extra(["adaptive_timeouts"])
        .extra_body("chat_template_kwargs", json!({"enable_thinking": false}));
    let a = OpenAiAdapter::with_options(&BackendSettings::new("q").extra("adaptive_timeouts", true), options)
        .unwrap();
    assert_eq!(a.info().provider, "qwen");
    assert_eq!(a.info().backend_type, BackendType::SelfHosted);
    assert!(a.info().pricing.is_free());
    let body = body_json(&a.build_request(&ChatRequest::prompt("x"), false).unwrap());
    assert_eq!(body["model"], "Qwen/Qwen3-8B");
    assert_eq!(body["chat_template_kwargs"], json!({"enable_thinking": false}));
    assert!(
        a.build_request(&ChatRequest::prompt("x"), false)
            .unwrap()
            .url
            .starts_with("http://127.0.0.1:8000/v1/")
    );
}

// ---------------------------------------------------------------------------------------------
// Non-stream responses

#[test]
fn llama_server_chat_json() {
    let a = OpenAiAdapter::new(&local("llama")).unwrap();
    let body = fixture("llama-server", "chat.json");
    let r = a.parse_response(&ChatRequest::prompt("Say hi"), &response(200, &[], &body)).unwrap();
    assert_eq!(r.content, RECORDED_TEXT);
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(r.model, "tiny-llama");
    assert_eq!(r.backend, "llama");
    assert_eq!(r.id.as_deref(), Some("chatcmpl-eS1QwxgjvNVCHBMKVcBuMPaTiFE9lm5C"));
    assert_eq!(r.usage, Usage { cache_read_tokens: 17, ..Usage::reported(18, 8) });
    assert!(r.warnings.is_empty() && r.tool_calls.is_empty() && r.reasoning.is_none());
    assert!(r.cost.abs() < f64::EPSILON, "local model is free");

    let eos = fixture("llama-server", "chat_force_eos.json");
    let r = a.parse_response(&ChatRequest::prompt("Say hi"), &response(200, &[], &eos)).unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert_eq!(r.content, "");
}

#[test]
fn llama_cpp_python_and_litellm_chat_json() {
    let r = parse_chat_completion(&fixture("llama-cpp-python", "chat.json"), "lcp", "tiny-llama").unwrap();
    assert_eq!(r.usage, Usage::reported(18, 8), "no prompt_tokens_details: no cached tokens");
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    let r = parse_chat_completion(&fixture("litellm", "chat.json"), "litellm", "tiny-llama").unwrap();
    assert_eq!(r.usage, Usage { cache_read_tokens: 17, ..Usage::reported(18, 8) });
    assert!(r.warnings.is_empty(), "refusal: null is no refusal: {:?}", r.warnings);
    assert_eq!(r.content, RECORDED_TEXT);
    // llama-cpp-python echoes whatever model was asked for.
    let r =
        parse_chat_completion(&fixture("llama-cpp-python", "err_unknown_model.json"), "lcp", "tiny").unwrap();
    assert_eq!(r.model, "gpt-4o");
}

#[test]
fn tool_calls_reasoning_refusal_and_missing_usage() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "qwen3",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "reasoning_content": "The user wants weather.",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "noargs", "arguments": ""}},
                {"id": "call_c", "type": "function", "function": {"name": "broken", "arguments": "{\"city\": \"Par"}}
            ]
        }}],
        "usage": null
    });
    let r = parse_chat_completion(body.to_string().as_bytes(), "b", "qwen3").unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(r.reasoning.as_deref(), Some("The user wants weather."));
    assert_eq!(r.content, "");
    assert_eq!(
        r.tool_calls,
        vec![
            ToolCall { id: "call_a".into(), name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
            ToolCall { id: "call_b".into(), name: "noargs".into(), arguments: json!({}) },
            ToolCall { id: "call_c".into(), name: "broken".into(), arguments: json!("{\"city\": \"Par") },
        ]
    );
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("broken"));
    assert_eq!(r.usage.source, UsageSource::Missing);

    let refusal = json!({"model":"gpt-4o","choices":[{"index":0,"finish_reason":"stop",
        "message":{"role":"assistant","content":null,"refusal":"I can't help with that."}}],
        "usage":{"prompt_tokens":5,"completion_tokens":6,"completion_tokens_details":{"reasoning_tokens":2}}});
    let r = parse_chat_completion(refusal.to_string().as_bytes(), "b", "gpt-4o").unwrap();
    assert_eq!(r.content, "I can't help with that.");
    assert!(r.warnings.iter().any(|w| w.contains("refused")), "{:?}", r.warnings);
    assert_eq!(r.usage, Usage { reasoning_tokens: 2, ..Usage::reported(5, 6) });
}

#[test]
fn bodies_that_are_not_completions() {
    let err = |b: &[u8]| parse_chat_completion(b, "b", "m").unwrap_err();
    let e = err(b"{\"object\":\"list\",\"data\":[]}");
    assert_eq!(e.kind, ErrorKind::MalformedResponse);
    assert!(e.message.contains("choices"), "{e}");
    let e = err(b"{\"choices\":[]}");
    assert!(e.message.contains("empty `choices`"), "{e}");
    let e = err(b"{\"choices\":[{\"index\":0,\"text\":\"legacy\"}]}");
    assert!(e.message.contains("message"), "{e}");
    assert_eq!(err(b"<html>502</html>").kind, ErrorKind::MalformedResponse);
    assert_eq!(err(b"[1,2]").kind, ErrorKind::MalformedResponse);
    assert_eq!(err(b"").kind, ErrorKind::MalformedResponse);
    // An error object with HTTP 200 is that error, not "malformed".
    let e =
        err(br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#);
    assert_eq!(e.kind, ErrorKind::RateLimited);
    let e = err(br#"{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}"#);
    assert_eq!(e.kind, ErrorKind::ContextOverflow);
}

#[test]
fn cost_uses_the_cached_rate_and_the_answering_model() {
    let a = openai("gpt-4o");
    let body = json!({"model":"gpt-4o-2024-08-06","choices":[{"index":0,"finish_reason":"stop",
        "message":{"role":"assistant","content":"ok"}}],
        "usage":{"prompt_tokens":1000,"completion_tokens":100,"prompt_tokens_details":{"cached_tokens":400}}});
    let bytes = body.to_string();
    let r = a.parse_response(&ChatRequest::prompt("x"), &response(200, &[], bytes.as_bytes())).unwrap();
    let expected = 600.0 * 0.0025 / 1000.0 + 400.0 * 0.00125 / 1000.0 + 100.0 * 0.01 / 1000.0;
    assert!((r.cost - expected).abs() < 1e-12, "{} vs {expected}", r.cost);

    // A gpt-4o backend answered by gpt-4o-mini (request override) is priced as mini.
    let mini = body.to_string().replace("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18");
    let r = a.parse_response(&ChatRequest::prompt("x"), &response(200, &[], mini.as_bytes())).unwrap();
    let expected = 600.0 * 0.00015 / 1000.0 + 400.0 * 0.000075 / 1000.0 + 100.0 * 0.0006 / 1000.0;
    assert!((r.cost - expected).abs() < 1e-12, "{} vs {expected}", r.cost);
}

// ---------------------------------------------------------------------------------------------
// Prices

#[test]
fn price_table_longest_prefix_wins() {
    let prefix = |m: &str| lookup_model(OPENAI_MODELS, m).map(|e| e.prefix);
    assert_eq!(prefix("gpt-4o"), Some("gpt-4o"));
    assert_eq!(prefix("gpt-4o-2024-08-06"), Some("gpt-4o"));
    assert_eq!(prefix("gpt-4o-mini"), Some("gpt-4o-mini"));
    assert_eq!(prefix("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
    assert_eq!(prefix("gpt-4o-2024-05-13"), Some("gpt-4o-2024-05-13"));
    assert_eq!(prefix("gpt-4-0613"), Some("gpt-4"));
    assert_eq!(prefix("gpt-4-turbo-2024-04-09"), Some("gpt-4-turbo"));
    assert_eq!(prefix("gpt-4-1106-preview"), Some("gpt-4-1106"));
    assert_eq!(prefix("gpt-4.1-mini-2025-04-14"), Some("gpt-4.1-mini"));
    assert_eq!(prefix("gpt-3.5-turbo-0125"), Some("gpt-3.5-turbo"));
    assert_eq!(prefix("o1-mini-2024-09-12"), Some("o1-mini"));
    assert_eq!(prefix("openai/gpt-4o"), Some("gpt-4o"));
    assert_eq!(prefix("gpt-4.5-preview"), None, "not GPT-4's price");
    assert_eq!(prefix("tiny-llama"), None);

    let p = lookup_model(OPENAI_MODELS, "gpt-4o").unwrap().pricing;
    assert_eq!((p.input_per_1k, p.output_per_1k, p.cache_read_per_1k), (0.0025, 0.01, Some(0.00125)));
    let p = lookup_model(OPENAI_MODELS, "gpt-4o-mini").unwrap().pricing;
    assert_eq!((p.input_per_1k, p.output_per_1k, p.cache_read_per_1k), (0.00015, 0.0006, Some(0.000075)));
    let p = lookup_model(OPENAI_MODELS, "gpt-3.5-turbo").unwrap().pricing;
    assert_eq!((p.input_per_1k, p.output_per_1k), (0.0005, 0.0015));
}

#[test]
fn pricing_override_unknown_models_and_response_model() {
    let a = openai("gpt-4o-mini");
    assert_eq!(a.pricing(None), lookup_model(OPENAI_MODELS, "gpt-4o-mini").unwrap().pricing);
    assert_eq!(a.pricing(Some("gpt-4-0613")), lookup_model(OPENAI_MODELS, "gpt-4").unwrap().pricing);
    // An answering model we do not know: the configured model's price, not free.
    assert_eq!(a.pricing(Some("deployment-7")), a.pricing(None));
    let unknown = OpenAiAdapter::new(&local("l")).unwrap();
    assert_eq!(unknown.pricing(None), Pricing::FREE);
    assert_eq!(unknown.pricing(Some("tiny-llama")), Pricing::FREE);

    let custom = Pricing::new(0.001, 0.002).with_cache(0.0001, 0.001);
    let o = OpenAiAdapter::new(
        &BackendSettings::new("o").api_key("sk-test-0123456789").model("gpt-4o").pricing(custom),
    )
    .unwrap();
    assert_eq!(o.info().pricing, custom);
    assert_eq!(o.pricing(Some("gpt-4")), custom, "the override wins over the table");
    let local_priced = OpenAiAdapter::new(&local("l").pricing(custom)).unwrap();
    assert_eq!(local_priced.pricing(Some("tiny-llama")), custom);
}

// ---------------------------------------------------------------------------------------------
// Streams: recorded transcripts

#[test]
fn recorded_streams_decode_on_all_servers() {
    for server in SERVERS {
        for file in ["chat_stream.sse", "chat_stream_usage.sse"] {
            let events = whole(&fixture(server, file));
            assert_eq!(text_of(&events), "oproject靳_connectorent", "{server}/{file}");
            let end = done_end(&events);
            assert_eq!(end.finish_reason, Some(FinishReason::Length), "{server}/{file}");
            assert_eq!(end.cost, 0.0);
            let expected = match (server, file) {
                ("llama-server" | "litellm", "chat_stream_usage.sse") => {
                    Usage { cache_read_tokens: 19, ..Usage::reported(20, 4) }
                }
                // No include_usage asked, or (llama-cpp-python) asked and ignored.
                _ => Usage::default(),
            };
            assert_eq!(end.usage, expected, "{server}/{file}");
            assert!(
                events.iter().all(|e| matches!(e, StreamEvent::TextDelta { .. } | StreamEvent::Done { .. })),
                "{server}/{file}: {events:?}"
            );
        }
    }
    let events = whole(&fixture("llama-cpp-python", "chat_stream_usage.sse"));
    assert_eq!(done_end(&events).usage.source, UsageSource::Missing);
}

#[test]
fn split_at_every_byte_gives_the_same_transcript_f18() {
    for server in SERVERS {
        for file in ["chat_stream.sse", "chat_stream_usage.sse"] {
            let bytes = fixture(server, file);
            let expected = whole(&bytes);
            assert_eq!(transcript(bytes.chunks(1)), expected, "{server}/{file} one byte at a time");
            for cut in 1..bytes.len() {
                let (a, b) = bytes.split_at(cut);
                // Text deltas may be re-chunked only by the server, never by us: same events.
                assert_eq!(transcript([a, b]), expected, "{server}/{file} split at byte {cut}");
            }
        }
    }
}

#[test]
fn crlf_line_ends_decode_the_same() {
    let bytes = fixture("llama-server", "chat_stream_usage.sse");
    let crlf = String::from_utf8(bytes.clone()).unwrap().replace('\n', "\r\n");
    assert_eq!(whole(crlf.as_bytes()), whole(&bytes));
}

// ---------------------------------------------------------------------------------------------
// Streams: OpenAI-shaped transcripts for tool calls and reasoning

#[test]
fn tool_call_fragments_across_chunks() {
    let chunk = |delta: Value, finish: Value| {
        json!({"id":"chatcmpl-x","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06",
               "choices":[{"index":0,"delta":delta,"finish_reason":finish}],"usage":null})
    };
    let tc = |index: u32, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut function = json!({"arguments": args});
        if let Some(n) = name {
            function["name"] = json!(n);
        }
        let mut call = json!({"index": index, "function": function});
        if let Some(id) = id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        json!({"tool_calls": [call]})
    };
    let text = sse(&[
        chunk(json!({"role":"assistant","content":null,"refusal":null}), Value::Null),
        chunk(tc(0, Some("call_a"), Some("get_weather"), ""), Value::Null),
        chunk(tc(0, None, None, "{\"ci"), Value::Null),
        chunk(tc(1, Some("call_b"), Some("get_time"), "{\"tz\":"), Value::Null),
        chunk(tc(0, None, None, "ty\":\"Paris\"}"), Value::Null),
        chunk(tc(1, None, None, "\"CET\"}"), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        json!({"id":"chatcmpl-x","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[],
               "usage":{"prompt_tokens":80,"completion_tokens":30,"total_tokens":110,
                        "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}),
    ]) + "data: [DONE]\n\n";
    let events = whole(text.as_bytes());
    assert_eq!(transcript(text.as_bytes().chunks(7)), events);
    let deltas: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCall { delta } => Some(delta.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas.len(), 5, "one event per fragment: {deltas:?}");
    assert_eq!((deltas[0].id.as_deref(), deltas[0].name.as_deref()), (Some("call_a"), Some("get_weather")));
    assert_eq!((deltas[2].id.as_deref(), deltas[2].name.as_deref()), (Some("call_b"), Some("get_time")));
    assert!(deltas[1].id.is_none() && deltas[1].name.is_none());
    // Concatenated per index, the fragments are the full argument objects.
    let args =
        |i: u32| deltas.iter().filter(|d| d.index == i).map(|d| d.arguments.as_str()).collect::<String>();
    assert_eq!(serde_json::from_str::<Value>(&args(0)).unwrap(), json!({"city": "Paris"}));
    assert_eq!(serde_json::from_str::<Value>(&args(1)).unwrap(), json!({"tz": "CET"}));
    let end = done_end(&events);
    assert_eq!(end.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(end.usage, Usage::reported(80, 30));
    assert_eq!(text_of(&events), "");
}

#[test]
fn reasoning_content_deltas_stay_apart() {
    let c = |delta: Value| json!({"object":"chat.completion.chunk","choices":[{"index":0,"delta":delta,"finish_reason":null}]});
    let text = sse(&[
        c(json!({"role":"assistant","content":"","reasoning_content":"Let me"})),
        c(json!({"reasoning_content":" think."})),
        c(json!({"reasoning":" (newer vLLM)"})),
        c(json!({"content":"Hi","reasoning_content":null})),
        json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],
               "usage":{"prompt_tokens":9,"completion_tokens":12,"completion_tokens_details":{"reasoning_tokens":10}}}),
    ]) + "data: [DONE]\n\n";
    let events = whole(text.as_bytes());
    assert_eq!(
        events[..4],
        [
            StreamEvent::ReasoningDelta { text: "Let me".into() },
            StreamEvent::ReasoningDelta { text: " think.".into() },
            StreamEvent::ReasoningDelta { text: " (newer vLLM)".into() },
            StreamEvent::text("Hi"),
        ]
    );
    let end = done_end(&events);
    assert_eq!(end.finish_reason, Some(FinishReason::Stop));
    assert_eq!(end.usage, Usage { reasoning_tokens: 10, ..Usage::reported(9, 12) });
}

#[test]
fn vllm_usage_chunk_with_null_or_missing_choices() {
    for usage_chunk in [
        json!({"choices": null, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
        json!({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ] {
        let text = sse(&[
            json!({"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}],"usage":null}),
            usage_chunk,
        ]) + "data: [DONE]\n\n";
        let events = whole(text.as_bytes());
        assert_eq!(done_end(&events).usage, Usage::reported(3, 2));
        assert_eq!(text_of(&events), "ok");
    }
}

#[test]
fn frames_after_done_are_ignored_and_finish_is_a_noop() {
    let mut d = OpenAiStreamDecoder::new();
    let frame = |data: &str| claudette_core::Frame { event: None, data: data.into() };
    assert_eq!(
        d.decode(&frame(r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#)).unwrap(),
        vec![StreamEvent::text("a")]
    );
    let done = d.decode(&frame("[DONE]")).unwrap();
    assert!(matches!(done.as_slice(), [StreamEvent::Done { .. }]), "{done:?}");
    assert!(d.is_done());
    assert_eq!(d.decode(&frame("not even json")).unwrap(), vec![]);
    assert_eq!(d.finish().unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Streams: failures

#[test]
fn error_inside_a_200_stream_f16() {
    let head = fixture("llama-server", "chat_stream.sse");
    let head = String::from_utf8(head).unwrap();
    let head = &head[..head.find("data: {\"choices\":[{\"finish_reason\":\"length\"").unwrap()];
    let cases = [
        (r#"{"error":{"message":"The server is overloaded","type":"server_error"}}"#, ErrorKind::Overloaded),
        (r#"{"error":{"code":500,"message":"slot crashed","type":"server_error"}}"#, ErrorKind::Overloaded),
        (
            r#"{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}"#,
            ErrorKind::InvalidRequest,
        ),
        (
            r#"{"error":{"message":"Rate limit reached","type":"tokens","code":"rate_limit_exceeded"}}"#,
            ErrorKind::RateLimited,
        ),
        (
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
            ErrorKind::QuotaExhausted,
        ),
        (
            r#"{"error":{"code":400,"message":"request exceeds the available context size","type":"exceed_context_size_error"}}"#,
            ErrorKind::ContextOverflow,
        ),
        (
            r#"{"error":{"message":"litellm.APIError: boom","type":null,"param":null,"code":"500"}}"#,
            ErrorKind::Overloaded,
        ),
        (r#"{"error":"upstream closed"}"#, ErrorKind::Overloaded),
    ];
    for (error, kind) in cases {
        let text = format!("{head}data: {error}\n\n");
        let events = whole(text.as_bytes());
        assert_eq!(text_of(&events), "oproject靳_connectorent", "content before the error is kept");
        let err = terminal_error(&events);
        assert_eq!(err.kind, kind, "{error}: {err}");
        assert_eq!(err.phase, Some(claudette_core::Phase::Body));
    }
    // `event: error` frames (some proxies) are errors whatever their data.
    let events = whole(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\nevent: error\ndata: upstream went away\n\n");
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert!(err.message.contains("upstream went away"), "{err}");
}

#[test]
fn stream_without_done_is_interrupted_f17() {
    for server in SERVERS {
        let bytes = String::from_utf8(fixture(server, "chat_stream_usage.sse")).unwrap();
        let cut = &bytes[..bytes.find("data: [DONE]").unwrap()];
        let events = whole(cut.as_bytes());
        assert_eq!(text_of(&events), "oproject靳_connectorent");
        let err = terminal_error(&events);
        assert_eq!(err.kind, ErrorKind::StreamInterrupted, "{server}");
        assert!(err.message.contains("[DONE]"), "{err}");
        assert!(err.message.contains("length"), "says how far it got: {err}");
        // Cut in the middle of a chunk: the partial line is flushed and is not JSON.
        let mid = &bytes[..bytes.find("oproject").unwrap() + 3];
        let err = terminal_error(&whole(mid.as_bytes())).clone();
        assert!(
            matches!(err.kind, ErrorKind::StreamInterrupted | ErrorKind::MalformedResponse),
            "{server}: {err}"
        );
    }
    let err = terminal_error(&whole(b"")).clone();
    assert_eq!(err.kind, ErrorKind::StreamInterrupted, "an empty 200 body is no answer");
}

#[test]
fn malformed_data_line_f19() {
    let text = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"de\n\ndata: [DONE]\n\n";
    let events = whole(text.as_bytes());
    assert_eq!(events[0], StreamEvent::text("a"));
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    assert!(err.message.contains("not JSON"), "{err}");
    for bad in ["data: 42\n\n", "data: \"text\"\n\n", "data: nonsense\n\n"] {
        assert_eq!(terminal_error(&whole(bad.as_bytes())).kind, ErrorKind::MalformedResponse, "{bad}");
    }
    // Keep-alive comments and empty data are not errors.
    let ok = ": ping\n\ndata:\n\ndata: [DONE]\n\n";
    assert_eq!(done_end(&whole(ok.as_bytes())).usage.source, UsageSource::Missing);
}

#[test]
fn malformed_line_never_echoes_a_key() {
    let events = whole(b"data: {\"oops\": \"sk-canary-abcdef0123456789\"\n\n");
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    assert!(!format!("{err} {err:?} {:?}", err.provider_body).contains("sk-canary"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Error responses

fn classify(status: u16, headers: &[(&str, &str)], body: &[u8]) -> BackendError {
    let headers: Vec<(String, String)> =
        headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let a = OpenAiAdapter::new(&local("be")).unwrap();
    a.classify_error(&response(status, &headers, body))
}

#[test]
fn recorded_server_errors() {
    let cases = [
        ("llama-server", "err_context.json", 400, ErrorKind::ContextOverflow),
        ("llama-cpp-python", "err_context.json", 400, ErrorKind::ContextOverflow),
        ("litellm", "err_context.json", 400, ErrorKind::ContextOverflow),
        ("llama-server", "err_malformed.json", 500, ErrorKind::Overloaded),
        ("llama-cpp-python", "err_malformed.json", 500, ErrorKind::Overloaded),
        ("llama-server", "err_missing_messages.json", 400, ErrorKind::InvalidRequest),
        ("litellm", "err_malformed.json", 400, ErrorKind::InvalidRequest),
        ("litellm", "err_unknown_model.json", 400, ErrorKind::NotFound),
        ("litellm", "err_bad_key.json", 400, ErrorKind::InvalidRequest),
        ("litellm", "err_no_key.txt", 500, ErrorKind::Overloaded),
    ];
    for (server, file, status, kind) in cases {
        let err = classify(status, &[], &fixture(server, file));
        assert_eq!(err.kind, kind, "{server}/{file}: {err}");
        assert_eq!(err.status, Some(status));
        assert_eq!(err.backend.as_deref(), Some("be"));
        assert!(err.provider_body.is_some());
    }
    let e = classify(400, &[], &fixture("llama-server", "err_context.json"));
    assert_eq!(
        e.message,
        "request (5019 tokens) exceeds the available context size (4096 tokens), try increasing it"
    );
    assert_eq!(e.code.as_deref(), Some("exceed_context_size_error"));
    let e = classify(400, &[], &fixture("llama-cpp-python", "err_context.json"));
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
    // Plain-text bodies work.
    let e = classify(500, &[], &fixture("llama-cpp-python", "err_malformed.json"));
    assert_eq!(e.message, "HTTP 500: Internal Server Error");
    assert_eq!(e.action(), RetryAction::Retry);
}

#[test]
fn rate_limits_with_retry_hints() {
    let body = br#"{"error":{"message":"Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    let e = classify(429, &[("retry-after-ms", "1500"), ("Retry-After", "2")], body);
    assert_eq!(e.kind, ErrorKind::RateLimited, "'context'-free TPM text stays a rate limit");
    assert_eq!(e.retry_after, Some(Duration::from_millis(1500)), "retry-after-ms wins");
    assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
    let e = classify(429, &[("retry-after", "2")], body);
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    let e = classify(429, &[], b"");
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.message, "HTTP 429 Too Many Requests");
}

#[test]
fn quota_is_not_a_rate_limit_f10() {
    let body = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    let e = classify(429, &[("retry-after", "20")], body);
    assert_eq!(e.kind, ErrorKind::QuotaExhausted);
    assert_eq!(e.action(), RetryAction::FailOver);
    assert_eq!(e.outcome(), claudette_core::Outcome::Quota);
    let spend = br#"{"error":{"message":"spend limit","type":"invalid_request_error","code":"enforced_spend_limit_reached"}}"#;
    assert_eq!(classify(429, &[], spend).kind, ErrorKind::QuotaExhausted);
    assert_eq!(classify(402, &[], b"{}").kind, ErrorKind::QuotaExhausted);
}

#[test]
fn auth_errors_never_echo_the_key_f26() {
    let body = br#"{"error":{"message":"Incorrect API key provided: sk-canary-0123456789abcdefXYZ. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let e = classify(401, &[("x-request-id", "req_1")], body);
    assert_eq!(e.kind, ErrorKind::Auth);
    assert_eq!(e.action(), RetryAction::FailOver);
    assert!(e.message.contains("Incorrect API key provided"), "{e}");
    let everything = format!("{e} {e:?} {} {:?}", serde_json::to_string(&e).unwrap(), e.provider_body);
    assert!(!everything.contains("sk-canary"), "{everything}");
    assert!(!everything.contains("0123456789abcdef"), "{everything}");
    // Plain-text 401 echoing the key.
    let e = classify(401, &[], b"invalid bearer token sk-canary-0123456789abcdefXYZ");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(!format!("{e} {:?}", e.provider_body).contains("sk-canary"), "{e}");
    let e = classify(403, &[], br#"{"error":{"message":"Country, region, or territory not supported","type":"request_forbidden","code":"unsupported_country_region_territory"}}"#);
    assert_eq!(e.kind, ErrorKind::Auth);
    // FastAPI's shape (llama-cpp-python with --api_key).
    let e = classify(401, &[], br#"{"detail":"Invalid API key"}"#);
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Auth, "Invalid API key"));
}

#[test]
fn every_other_error_class() {
    let e = classify(404, &[], br#"{"error":{"message":"The model `gpt-5o` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#);
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.code.as_deref(), Some("model_not_found"));
    let e = classify(400, &[], br#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#);
    assert_eq!(e.kind, ErrorKind::ContextOverflow);
    assert_eq!(e.action(), RetryAction::Stop);
    let e = classify(400, &[], br#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#);
    assert_eq!(e.kind, ErrorKind::ContentPolicy);
    let e = classify(400, &[], br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}"#);
    assert_eq!(e.kind, ErrorKind::ContentPolicy);
    let e = classify(400, &[], br#"{"error":{"message":"'messages' is a required property","type":"invalid_request_error","param":null,"code":null}}"#);
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert_eq!(e.code.as_deref(), Some("invalid_request_error"));
    assert_eq!(
        classify(422, &[], br#"{"detail":[{"loc":["body","messages"],"msg":"field required"}]}"#).kind,
        ErrorKind::InvalidRequest
    );
    for status in [500, 502, 503, 504] {
        let e = classify(status, &[], b"<html><body>Bad Gateway</body></html>");
        assert_eq!(e.kind, ErrorKind::Overloaded, "{status}");
        assert!(e.message.starts_with(&format!("HTTP {status}")), "{e}");
    }
    let e = classify(
        500,
        &[("x-should-retry", "false")],
        br#"{"error":{"message":"boom","type":"server_error"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert_eq!(e.should_retry, Some(false));
    assert_eq!(e.action(), RetryAction::FailOver);
    assert_eq!(e.message, "boom");
    // A 5xx that mentions a context is still the server's failure.
    assert_eq!(
        classify(500, &[], br#"{"error":{"message":"context length bug"}}"#).kind,
        ErrorKind::Overloaded
    );
    assert_eq!(classify(409, &[], b"").kind, ErrorKind::Overloaded);
}

#[test]
fn classify_openai_error_is_usable_without_an_adapter() {
    let headers = vec![("retry-after-ms".to_owned(), "250".to_owned())];
    let e = classify_openai_error(&response(503, &headers, b"{\"error\":{\"message\":\"busy\"}}"));
    assert_eq!(
        (e.kind, e.retry_after, e.message.as_str()),
        (ErrorKind::Overloaded, Some(Duration::from_millis(250)), "busy")
    );
    assert_eq!(e.backend, None);
}

// ---------------------------------------------------------------------------------------------
// Health probe and model lists

#[test]
fn model_lists_of_all_servers() {
    let a = OpenAiAdapter::new(&local("l")).unwrap();
    assert_eq!(a.health_probe().unwrap().url, "http://127.0.0.1:39180/v1/models");
    for server in SERVERS {
        let models = a.parse_models(&fixture(server, "models.json")).unwrap();
        assert!(models.contains(&"tiny-llama".to_owned()), "{server}: {models:?}");
    }
    assert_eq!(
        a.parse_models(&fixture("litellm", "models.json")).unwrap(),
        vec!["tiny-llama", "vllm-tiny", "claude-tiny"]
    );
    // llama.cpp's Ollama-style list alone.
    assert_eq!(a.parse_models(br#"{"models":[{"name":"a"},{"model":"b"}]}"#).unwrap(), vec!["a", "b"]);
    let e = a.parse_models(br#"{"object":"list"}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MalformedResponse);
    assert_eq!(a.parse_models(b"I'm alive!").unwrap_err().kind, ErrorKind::MalformedResponse);
}

#[test]
fn adapter_debug_holds_no_key() {
    let a = OpenAiAdapter::new(&BackendSettings::new("k").api_key("sk-canary-0123456789abcdef")).unwrap();
    let http = a.build_request(&ChatRequest::prompt("x"), true).unwrap();
    let text = format!("{a:?} {http:?} {}", String::from_utf8_lossy(http.body.as_deref().unwrap()));
    assert!(!text.contains("canary"), "{text}");
}

#[test]
fn max_tokens_field_is_public_for_reuse() {
    assert_eq!(MaxTokensField::MaxCompletionTokens.as_str(), "max_completion_tokens");
}

#[test]
fn tool_choice_is_openai_tool_choice() {
    use claudette_core::{ErrorKind, ToolChoice};
    let body = |tool_choice| {
        body_json(
            &openai("gpt-4o").build_request(&ChatRequest { tool_choice, ..conversation() }, false).unwrap(),
        )
    };
    assert!(body(ToolChoice::Auto).get("tool_choice").is_none());
    assert_eq!(body(ToolChoice::None)["tool_choice"], "none");
    assert_eq!(body(ToolChoice::Required)["tool_choice"], "required");
    assert_eq!(
        body(ToolChoice::Tool("get_weather".into()))["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    let unknown = ChatRequest { tool_choice: ToolChoice::Tool("mul".into()), ..conversation() };
    assert_eq!(openai("gpt-4o").build_request(&unknown, false).unwrap_err().kind, ErrorKind::InvalidRequest);
}

#[test]
fn response_format_is_openai_response_format() {
    use claudette_core::ResponseFormat;
    let body = |response_format| {
        body_json(
            &openai("gpt-4o")
                .build_request(&ChatRequest { response_format, ..ChatRequest::prompt("x") }, false)
                .unwrap(),
        )
    };
    assert!(body(ResponseFormat::Text).get("response_format").is_none());
    assert_eq!(body(ResponseFormat::JsonObject)["response_format"], json!({"type": "json_object"}));
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    assert_eq!(
        body(ResponseFormat::JsonSchema { name: "answer".into(), schema: schema.clone(), strict: true })["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}})
    );
}
