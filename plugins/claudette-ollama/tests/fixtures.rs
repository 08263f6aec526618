//! The Ollama adapter on recorded bytes, without I/O: golden request bodies, transcripts shaped
//! like the Ollama API documentation, the testbed proxy's recorded answers
//! (`tests/data/`, copied from the testbed's `samples/ollama-proxy/`), and every failure the
//! reliability spec names for streams (F-16 error line, F-17 missing end, F-18 splits at every
//! byte, F-19 malformed line) plus silent prompt truncation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudette_core::{
    AuthScheme, BackendSettings, BackendType, ChatRequest, ErrorKind, FinishReason, Framing, HttpResponse,
    Message, Method, Outcome, Pricing, ProviderAdapter, StreamEvent, StreamParser, ToolCall, ToolSpec,
    UsageSource,
};
use claudette_ollama::{OllamaAdapter, parse_timings, truncation_warning};
use claudette_testkit::events::{text_of, without_ids};
use serde_json::{Value, json};

const TESTBED_CHAT: &[u8] = include_bytes!("data/api_chat.json");
const TESTBED_STREAM: &[u8] = include_bytes!("data/api_chat_stream.ndjson");
const TESTBED_TAGS: &[u8] = include_bytes!("data/api_tags.json");

fn settings() -> BackendSettings {
    BackendSettings::new("local").model("llama3.2")
}

fn adapter() -> OllamaAdapter {
    OllamaAdapter::new(&settings()).unwrap()
}

fn ok(body: &[u8]) -> HttpResponse<'_> {
    HttpResponse { status: 200, headers: &[], body }
}

fn body_json(adapter: &OllamaAdapter, request: &ChatRequest, stream: bool) -> Value {
    let http = adapter.build_request(request, stream).unwrap();
    serde_json::from_slice(http.body.as_deref().unwrap()).unwrap()
}

/// Runs `bytes` through the NDJSON framer in pieces of `step` bytes and a fresh decoder.
/// Returns the events, and the error that ended the stream if any.
fn decode(
    adapter: &OllamaAdapter,
    request: &ChatRequest,
    bytes: &[u8],
    chunk: usize,
) -> (Vec<StreamEvent>, Option<claudette_core::BackendError>) {
    let parser = StreamParser::for_adapter(adapter, request);
    claudette_testkit::events::decode_split(parser, bytes, chunk)
}

fn ndjson(lines: &[Value]) -> Vec<u8> {
    lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes()
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        cache: None,
        strict: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

#[test]
fn golden_request_with_system_tools_and_tool_results() {
    let a = OllamaAdapter::new(&settings().extra("num_ctx", 16384).extra("keep_alive", "10m")).unwrap();
    let mut assistant = Message::assistant("");
    assistant.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: json!({"city": "Paris"}),
    }];
    let request = ChatRequest {
        max_tokens: Some(200),
        temperature: Some(0.5),
        top_p: Some(0.9),
        stop: vec!["</end>".into()],
        tools: vec![weather_tool()],
        ..ChatRequest::new(vec![
            Message::system("You are terse."),
            Message::user("Weather in Paris?"),
            assistant,
            Message::tool_result("call_1", "{\"temp_c\": 18}"),
        ])
    };
    let http = a.build_request(&request, false).unwrap();
    assert_eq!(http.method, Method::Post);
    assert_eq!(http.url, "http://127.0.0.1:11434/api/chat");
    assert!(http.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
    let body: Value = serde_json::from_slice(http.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "{\"temp_c\": 18}", "tool_name": "get_weather"}
            ],
            "stream": false,
            "options": {"num_ctx": 16384, "num_predict": 200, "temperature": 0.5, "top_p": 0.9,
                        "stop": ["</end>"]},
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
            }}],
            "keep_alive": "10m"
        })
    );
}

#[test]
fn history_written_by_another_provider_is_normalised() {
    // An OpenAI-compatible backend left its arguments as a JSON string; the tool result names
    // its tool explicitly and answers a call id Ollama never saw.
    let mut assistant = Message::assistant("");
    assistant.tool_calls =
        vec![ToolCall { id: "call_x".into(), name: "lookup".into(), arguments: json!("{\"q\": \"rust\"}") }];
    let mut result = Message::tool_result("call_elsewhere", "found");
    result.name = Some("lookup".into());
    let body = body_json(&adapter(), &ChatRequest::new(vec![Message::user("q"), assistant, result]), false);
    assert_eq!(body["messages"][1]["tool_calls"][0]["function"]["arguments"], json!({"q": "rust"}));
    assert_eq!(body["messages"][2], json!({"role": "tool", "content": "found", "tool_name": "lookup"}));
    // A result whose call cannot be found is still sent, without a name (older servers ignore it).
    let body = body_json(&adapter(), &ChatRequest::new(vec![Message::tool_result("nope", "x")]), false);
    assert_eq!(body["messages"][0], json!({"role": "tool", "content": "x"}));
}

#[test]
fn num_ctx_and_stream_are_always_explicit() {
    let a = adapter();
    let plain = ChatRequest::prompt("hi");
    let non_stream = body_json(&a, &plain, false);
    assert_eq!(non_stream["stream"], json!(false));
    assert_eq!(non_stream["options"], json!({"num_ctx": 8192}));
    assert!(non_stream.get("keep_alive").is_none());
    let stream = body_json(&a, &plain, true);
    assert_eq!(stream["stream"], json!(true));
    assert_eq!(stream["options"]["num_ctx"], json!(8192));
    // The request's model override wins.
    assert_eq!(body_json(&a, &plain.clone().with_model("qwen3:4b"), false)["model"], json!("qwen3:4b"));
}

#[test]
fn base_url_with_path_and_trailing_slash() {
    let a = OllamaAdapter::new(&settings().base_url("https://gpu.example.com/ollama/")).unwrap();
    assert_eq!(
        a.build_request(&ChatRequest::prompt("x"), true).unwrap().url,
        "https://gpu.example.com/ollama/api/chat"
    );
    assert_eq!(a.health_probe().unwrap().url, "https://gpu.example.com/ollama/api/tags");
    assert_eq!(a.health_probe().unwrap().method, Method::Get);
}

#[test]
fn settings_rules() {
    let a = adapter();
    assert_eq!(a.auth_scheme(), AuthScheme::None);
    assert_eq!(a.info().backend_type, BackendType::SelfHosted);
    assert_eq!(a.info().provider, "ollama");
    assert_eq!(a.info().pricing, Pricing::FREE);
    assert_eq!(a.info().context_window, Some(8192));
    assert_eq!(a.framing(), Framing::Ndjson);
    // A key (Ollama behind an authenticating proxy) goes as a bearer token.
    assert_eq!(
        OllamaAdapter::new(&settings().api_key("proxy-token")).unwrap().auth_scheme(),
        AuthScheme::Bearer
    );
    // Charge-back prices override the free default.
    let priced = OllamaAdapter::new(&settings().pricing(Pricing::new(0.0001, 0.0002))).unwrap();
    assert_eq!(priced.pricing(Some("anything")), Pricing::new(0.0001, 0.0002));
    // Errors are typed config errors.
    for bad in [
        BackendSettings::new("x"),
        settings().extra("num_ctxx", 4096),
        settings().extra("num_ctx", 0),
        settings().extra("num_ctx", "big"),
        settings().extra("keep_alive", json!({"m": 5})),
        settings().base_url("ftp://host"),
    ] {
        let err = OllamaAdapter::new(&bad).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config, "{err}");
    }
    assert_eq!(OllamaAdapter::new(&settings().extra("keep_alive", 300)).unwrap().num_ctx(), 8192);
}

// ---------------------------------------------------------------------------------------------
// Non-stream answers

/// The `/api/chat` example of the Ollama API docs.
#[test]
fn docs_transcript_non_stream() {
    let body = br#"{"model":"llama3.2","created_at":"2023-12-12T14:13:43.416799Z","message":{"role":"assistant","content":"Hello! How are you today?"},"done":true,"done_reason":"stop","total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000}"#;
    let request = ChatRequest::prompt("why is the sky blue?");
    let r = adapter().parse_response(&request, &ok(body)).unwrap();
    assert_eq!(r.content, "Hello! How are you today?");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        (r.usage.input_tokens, r.usage.output_tokens, r.usage.source),
        (26, 298, UsageSource::Reported)
    );
    assert_eq!(r.model, "llama3.2");
    assert_eq!(r.backend, "local");
    assert_eq!(r.cost, 0.0);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(r.reasoning.is_none() && r.tool_calls.is_empty());

    let t = parse_timings(body).unwrap();
    assert_eq!(t.load, Some(Duration::from_nanos(2_154_458)));
    assert_eq!(t.total, Some(Duration::from_nanos(5_191_566_416)));
    assert_eq!((t.prompt_eval_count, t.eval_count), (Some(26), Some(298)));
    let tps = t.tokens_per_second().unwrap();
    assert!((tps - 298.0 / 4.799_921).abs() < 1e-6, "{tps}");
}

#[test]
fn thinking_and_tool_calls_non_stream() {
    let body = json!({
        "model": "qwen3", "created_at": "2025-05-29T09:35:33Z",
        "message": {"role": "assistant", "content": "", "thinking": "The user wants the weather; call the tool.",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_server_7", "function": {"index": 1, "name": "get_weather", "arguments": {"city": "Oslo"}}}
            ]},
        "done": true, "done_reason": "stop", "prompt_eval_count": 120, "eval_count": 40
    })
    .to_string();
    let r = adapter().parse_response(&ChatRequest::prompt("weather?"), &ok(body.as_bytes())).unwrap();
    assert_eq!(r.reasoning.as_deref(), Some("The user wants the weather; call the tool."));
    assert_eq!(r.content, "");
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(r.tool_calls.len(), 2);
    assert!(r.tool_calls[0].id.starts_with("call_"), "{}", r.tool_calls[0].id);
    assert_eq!(r.tool_calls[0].arguments, json!({"city": "Paris"}));
    assert_eq!(r.tool_calls[1].id, "call_server_7");
    assert_ne!(r.tool_calls[0].id, r.tool_calls[1].id);
}

#[test]
fn testbed_proxy_non_stream_sample() {
    let r = adapter().parse_response(&ChatRequest::prompt("Say hi"), &ok(TESTBED_CHAT)).unwrap();
    assert_eq!(r.content, "oproject靳_connectorent");
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens, r.usage.source), (20, 4, UsageSource::Reported));
    assert_eq!(r.model, "tiny-llama");
    // The proxy sends no load_duration.
    assert_eq!(parse_timings(TESTBED_CHAT).unwrap().load, None);
}

#[test]
fn other_done_reasons_and_missing_counts() {
    let body =
        br#"{"model":"m","message":{"role":"assistant","content":"x"},"done":true,"done_reason":"load"}"#;
    let r = adapter().parse_response(&ChatRequest::prompt("hello there"), &ok(body)).unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Other("load".into())));
    assert_eq!(r.usage.source, UsageSource::Estimated);
    assert_eq!(r.usage.input_tokens, ChatRequest::prompt("hello there").estimated_input_tokens());
    // `prompt_eval_count` omitted (whole prompt cached on older servers): the output count is
    // still the server's, the record is marked estimated.
    let body = br#"{"model":"m","message":{"role":"assistant","content":"x"},"done":true,"done_reason":"stop","eval_count":7}"#;
    let r = adapter().parse_response(&ChatRequest::prompt("hi"), &ok(body)).unwrap();
    assert_eq!((r.usage.output_tokens, r.usage.source), (7, UsageSource::Estimated));
}

#[test]
fn malformed_non_stream_body() {
    let err =
        adapter().parse_response(&ChatRequest::prompt("x"), &ok(b"<html>proxy error</html>")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    // An error object in a 200 body is an error, not an empty answer.
    let err = adapter()
        .parse_response(&ChatRequest::prompt("x"), &ok(br#"{"error":"model 'nope' not found"}"#))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

// ---------------------------------------------------------------------------------------------
// Silent truncation

/// A prompt of about `tokens` estimated tokens.
fn long_request(tokens: usize) -> ChatRequest {
    ChatRequest::prompt("word ".repeat(tokens * 4 / 5))
}

fn final_body(prompt_eval_count: u32) -> Vec<u8> {
    json!({"model": "llama3.2", "message": {"role": "assistant", "content": "ok"}, "done": true,
           "done_reason": "stop", "load_duration": 1_500_000_000u64, "prompt_eval_count": prompt_eval_count, "eval_count": 2})
    .to_string()
    .into_bytes()
}

#[test]
fn truncated_prompt_is_flagged_and_counted() {
    let recorder = TestRecorder::default();
    let request = long_request(20_000);
    let estimate = request.estimated_input_tokens();
    assert!(estimate > 19_000, "{estimate}");
    let r = metrics::with_local_recorder(&recorder, || {
        adapter().parse_response(&request, &ok(&final_body(8_000))).unwrap()
    });
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains("truncated") && r.warnings[0].contains("num_ctx 8192"),
        "{}",
        r.warnings[0]
    );
    // Usage stays what the server reported: it is what it processed.
    assert_eq!(r.usage.input_tokens, 8_000);
    assert_eq!(recorder.counter("claudette_ollama_truncation_total{backend=local}"), 1);
    // The load time is recorded in its own histogram, in seconds.
    assert_eq!(recorder.histogram("claudette_ollama_load_seconds{backend=local}"), vec![1.5]);
}

#[test]
fn prompt_filling_the_window_is_flagged() {
    let recorder = TestRecorder::default();
    let r = metrics::with_local_recorder(&recorder, || {
        adapter().parse_response(&long_request(9_000), &ok(&final_body(8192))).unwrap()
    });
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(recorder.counter("claudette_ollama_truncation_total{backend=local}"), 1);
}

#[test]
fn no_warning_for_normal_or_cached_prompts() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        // Counts agree.
        let r = adapter().parse_response(&long_request(2_000), &ok(&final_body(2_050))).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        // A follow-up turn whose history came from the KV cache: far short of the estimate,
        // but the prompt is nowhere near the window.
        let r = adapter().parse_response(&long_request(1_500), &ok(&final_body(12))).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        // A short prompt: a small gap is noise.
        let r = adapter()
            .parse_response(&ChatRequest::prompt("hi there, how are you"), &ok(&final_body(1)))
            .unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    });
    assert_eq!(recorder.counter("claudette_ollama_truncation_total{backend=local}"), 0);
}

#[test]
fn truncation_rule_edges() {
    // The rule documented on `truncation_warning`.
    assert!(truncation_warning(10_000, 4_999, 8192).is_some());
    assert!(truncation_warning(10_000, 5_000, 8192).is_none());
    // A larger window keeps the same prompt from being suspicious: it fits.
    assert!(truncation_warning(10_000, 4_000, 32_768).is_none());
    assert!(truncation_warning(70, 20, 64).is_some()); // gap 50 > 32, estimate >= num_ctx / 2
    assert!(truncation_warning(60, 29, 64).is_none()); // gap 31: noise
}

#[test]
fn truncation_in_a_stream_is_counted() {
    let recorder = TestRecorder::default();
    let request = long_request(20_000);
    let bytes = ndjson(&[
        json!({"model": "m", "message": {"role": "assistant", "content": "ok"}, "done": false}),
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
               "load_duration": 250_000_000u64, "prompt_eval_count": 8192, "eval_count": 1}),
    ]);
    let (events, err) = metrics::with_local_recorder(&recorder, || decode(&adapter(), &request, &bytes, 7));
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
    assert_eq!(recorder.counter("claudette_ollama_truncation_total{backend=local}"), 1);
    assert_eq!(recorder.histogram("claudette_ollama_load_seconds{backend=local}"), vec![0.25]);
}

// ---------------------------------------------------------------------------------------------
// Streams

/// A streamed answer shaped like the Ollama docs' example, with thinking and a tool call.
fn docs_stream() -> Vec<u8> {
    ndjson(&[
        json!({"model": "qwen3", "created_at": "2025-05-29T09:35:33.1Z",
               "message": {"role": "assistant", "content": "", "thinking": "Let me "}, "done": false}),
        json!({"model": "qwen3", "created_at": "2025-05-29T09:35:33.2Z",
               "message": {"role": "assistant", "content": "", "thinking": "check."}, "done": false}),
        json!({"model": "qwen3", "created_at": "2025-05-29T09:35:33.3Z",
               "message": {"role": "assistant", "content": "The sky is "}, "done": false}),
        json!({"model": "qwen3", "created_at": "2025-05-29T09:35:33.4Z",
               "message": {"role": "assistant", "content": "blue — 涌现 ✓"}, "done": false}),
        json!({"model": "qwen3", "created_at": "2025-05-29T09:35:33.5Z",
               "message": {"role": "assistant", "content": "", "tool_calls": [
                   {"function": {"name": "get_weather", "arguments": {"city": "Paris", "units": "c"}}}]}, "done": false}),
        json!({"model": "qwen3", "created_at": "2025-05-29T09:35:33.6Z",
               "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
               "total_duration": 4_883_583_458u64, "load_duration": 1_334_875u64, "prompt_eval_count": 26,
               "prompt_eval_duration": 342_546_000u64, "eval_count": 282, "eval_duration": 4_535_599_000u64}),
    ])
}

#[test]
fn docs_stream_decodes_in_order() {
    let (events, err) =
        decode(&adapter(), &ChatRequest::prompt("why is the sky blue?"), &docs_stream(), usize::MAX);
    assert!(err.is_none(), "{err:?}");
    let expected = vec![
        StreamEvent::ReasoningDelta { text: "Let me ".into() },
        StreamEvent::ReasoningDelta { text: "check.".into() },
        StreamEvent::text("The sky is "),
        StreamEvent::text("blue — 涌现 ✓"),
        StreamEvent::ToolCall {
            delta: claudette_core::ToolCallDelta {
                index: 0,
                id: Some("<id>".into()),
                name: Some("get_weather".into()),
                arguments: r#"{"city":"Paris","units":"c"}"#.into(),
            },
        },
        StreamEvent::Done {
            end: claudette_core::StreamEnd {
                finish_reason: Some(FinishReason::ToolCalls),
                usage: claudette_core::Usage::reported(26, 282),
                cost: 0.0,
            },
        },
    ];
    assert_eq!(without_ids(&events), expected);
    let StreamEvent::ToolCall { delta } = &events[4] else { panic!() };
    assert!(delta.id.as_deref().unwrap().starts_with("call_"));
}

#[test]
fn split_at_every_byte_is_identical_f18() {
    let a = adapter();
    let request = ChatRequest::prompt("why is the sky blue?");
    let (whole, err) = decode(&a, &request, &docs_stream(), usize::MAX);
    assert!(err.is_none());
    for step in [1, 2, 3, 5, 13] {
        let (split, err) = decode(&a, &request, &docs_stream(), step);
        assert!(err.is_none(), "step {step}: {err:?}");
        assert_eq!(without_ids(&split), without_ids(&whole), "step {step}");
    }
    // The testbed's recorded stream too (multi-byte `靳` arrives escaped there; the text also
    // goes through CRLF line ends here).
    let crlf: Vec<u8> =
        String::from_utf8(TESTBED_STREAM.to_vec()).unwrap().replace('\n', "\r\n").into_bytes();
    let (whole, _) = decode(&a, &request, TESTBED_STREAM, usize::MAX);
    let (split, _) = decode(&a, &request, &crlf, 1);
    assert_eq!(split, whole);
}

#[test]
fn testbed_proxy_stream_sample() {
    // `response` instead of `message.content`, a `null` first line, and two `done: true` lines.
    let request = ChatRequest::prompt("Say hi");
    let (events, err) = decode(&adapter(), &request, TESTBED_STREAM, usize::MAX);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text_of(&events), "oproject靳_connector");
    let dones: Vec<_> = events.iter().filter(|e| matches!(e, StreamEvent::Done { .. })).collect();
    assert_eq!(dones.len(), 1, "the duplicate done line must be ignored");
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    // The first final line wins.
    assert_eq!(end.finish_reason, Some(FinishReason::Length));
    // The proxy reports no counts in its stream: estimated, never passed off as reported.
    assert_eq!(end.usage.source, UsageSource::Estimated);
    assert_eq!(end.usage.input_tokens, request.estimated_input_tokens());
    assert!(end.usage.output_tokens > 0);
}

#[test]
fn error_line_after_content_f16() {
    let bytes = ndjson(&[
        json!({"model": "m", "message": {"role": "assistant", "content": "Hel"}, "done": false}),
        json!({"model": "m", "message": {"role": "assistant", "content": "lo"}, "done": false}),
        json!({"error": "an error was encountered while running the model: unexpected EOF"}),
        json!({"model": "m", "message": {"role": "assistant", "content": "never"}, "done": false}),
    ]);
    let (events, err) = decode(&adapter(), &ChatRequest::prompt("x"), &bytes, 3);
    assert_eq!(text_of(&events), "Hello");
    let err = err.expect("an error line ends the stream");
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert_eq!(err.outcome(), Outcome::Failure);
    assert_eq!(err.backend.as_deref(), Some("local"));
    assert!(err.message.contains("unexpected EOF"), "{err}");
}

#[test]
fn model_not_found_line_in_stream() {
    let bytes = ndjson(&[json!({"error": "model \"llama9\" not found, try pulling it first"})]);
    let (events, err) = decode(&adapter(), &ChatRequest::prompt("x"), &bytes, usize::MAX);
    assert!(events.is_empty());
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.outcome(), Outcome::Neutral);
}

#[test]
fn missing_final_line_is_interrupted_f17() {
    let bytes = ndjson(&[
        json!({"model": "m", "message": {"role": "assistant", "content": "a short"}, "done": false}),
        json!({"model": "m", "message": {"role": "assistant", "content": " answer"}, "done": false}),
    ]);
    let (events, err) = decode(&adapter(), &ChatRequest::prompt("x"), &bytes, usize::MAX);
    assert_eq!(text_of(&events), "a short answer");
    assert!(!events.iter().any(StreamEvent::is_terminal));
    assert_eq!(err.unwrap().kind, ErrorKind::StreamInterrupted);
    // An empty body as well.
    let (events, err) = decode(&adapter(), &ChatRequest::prompt("x"), b"", 1);
    assert!(events.is_empty());
    assert_eq!(err.unwrap().kind, ErrorKind::StreamInterrupted);
}

#[test]
fn malformed_line_f19() {
    let mut bytes =
        ndjson(&[json!({"model": "m", "message": {"role": "assistant", "content": "ok"}, "done": false})]);
    bytes.extend_from_slice(b"{\"model\": \"m\", \"message\": {\"content\": \"tru\n");
    let (events, err) = decode(&adapter(), &ChatRequest::prompt("x"), &bytes, 4);
    assert_eq!(text_of(&events), "ok");
    assert_eq!(err.unwrap().kind, ErrorKind::MalformedResponse);
}

#[test]
fn stream_tool_calls_are_indexed_and_whole() {
    let bytes = ndjson(&[
        json!({"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "a", "arguments": {"x": 1}}},
            {"function": {"name": "b", "arguments": {}}}]}, "done": false}),
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
               "prompt_eval_count": 10, "eval_count": 5}),
    ]);
    let (events, err) = decode(&adapter(), &ChatRequest::prompt("x"), &bytes, usize::MAX);
    assert!(err.is_none());
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCall { delta } => {
                Some((delta.index, delta.name.clone().unwrap(), delta.arguments.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(calls, vec![(0, "a".into(), r#"{"x":1}"#.into()), (1, "b".into(), "{}".into())]);
}

// ---------------------------------------------------------------------------------------------
// Errors

fn classify(status: u16, headers: &[(String, String)], body: &[u8]) -> claudette_core::BackendError {
    adapter().classify_error(&HttpResponse { status, headers, body })
}

#[test]
fn every_error_class() {
    let not_found = classify(404, &[], br#"{"error":"model 'llama9' not found, try pulling it first"}"#);
    assert_eq!(not_found.kind, ErrorKind::NotFound);
    assert_eq!(
        not_found.outcome(),
        Outcome::Neutral,
        "F-38: a missing model never counts against the breaker"
    );
    assert_eq!(not_found.status, Some(404));
    assert_eq!(not_found.backend.as_deref(), Some("local"));
    assert!(not_found.message.contains("llama9"), "{not_found}");

    let bad = classify(400, &[], br#"{"error":"invalid options: num_ctxx"}"#);
    assert_eq!(bad.kind, ErrorKind::InvalidRequest);

    let crashed = classify(500, &[], br#"{"error":"llama runner process has terminated: signal: killed"}"#);
    assert_eq!(crashed.kind, ErrorKind::Overloaded);
    assert!(crashed.may_retry_same());

    let busy = classify(
        503,
        &[],
        br#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
    );
    assert_eq!(busy.kind, ErrorKind::Overloaded);

    let proxy_auth = classify(401, &[], b"Unauthorized");
    assert_eq!(proxy_auth.kind, ErrorKind::Auth);
    assert!(proxy_auth.message.contains("Unauthorized"));

    let limited = classify(429, &[("Retry-After".into(), "7".into())], br#"{"error":"rate limited"}"#);
    assert_eq!(limited.kind, ErrorKind::RateLimited);
    assert_eq!(limited.retry_after, Some(Duration::from_secs(7)));

    let gateway = classify(502, &[], b"");
    assert_eq!(gateway.kind, ErrorKind::Overloaded);
    assert!(gateway.message.contains("502"), "{gateway}");
}

#[test]
fn keys_echoed_by_a_proxy_are_scrubbed() {
    let err = classify(401, &[], br#"{"error":"invalid token sk-live-abcdef0123456789abcdef"}"#);
    let shown = format!("{err} {err:?} {}", err.provider_body.clone().unwrap_or_default());
    assert!(!shown.contains("abcdef0123456789"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// Health probe

#[test]
fn model_list_from_api_tags() {
    let a = adapter();
    assert_eq!(a.parse_models(TESTBED_TAGS).unwrap(), vec!["tiny-llama".to_owned()]);
    let docs = br#"{"models":[{"name":"deepseek-r1:latest","model":"deepseek-r1:latest","size":4683075271},{"name":"llama3.2:latest","model":"llama3.2:latest"}]}"#;
    assert_eq!(
        a.parse_models(docs).unwrap(),
        vec!["deepseek-r1:latest".to_owned(), "llama3.2:latest".to_owned()]
    );
    assert_eq!(a.parse_models(b"[]").unwrap_err().kind, ErrorKind::MalformedResponse);
}

// ---------------------------------------------------------------------------------------------
// A minimal `metrics` recorder, to see what the adapter records.

#[derive(Default, Clone)]
struct TestRecorder {
    counters: Arc<Mutex<BTreeMap<String, u64>>>,
    histograms: Arc<Mutex<BTreeMap<String, Vec<f64>>>>,
}

impl TestRecorder {
    fn counter(&self, key: &str) -> u64 {
        self.counters.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    fn histogram(&self, key: &str) -> Vec<f64> {
        self.histograms.lock().unwrap().get(key).cloned().unwrap_or_default()
    }
}

fn key_text(key: &metrics::Key) -> String {
    let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

struct Handle {
    key: String,
    rec: TestRecorder,
}

impl metrics::CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self.rec.counters.lock().unwrap().entry(self.key.clone()).or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.rec.counters.lock().unwrap().insert(self.key.clone(), value);
    }
}

impl metrics::HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.rec.histograms.lock().unwrap().entry(self.key.clone()).or_default().push(value);
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(Arc::new(Handle { key: key_text(key), rec: self.clone() }))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(Handle { key: key_text(key), rec: self.clone() }))
    }
}

#[test]
fn tool_choice_none_withholds_the_tools_and_a_forced_call_is_unsupported() {
    use claudette_core::{ErrorKind, ToolChoice};
    let request =
        |tool_choice| ChatRequest { tools: vec![weather_tool()], tool_choice, ..ChatRequest::prompt("hi") };
    let body = |tool_choice| -> Value {
        let http = adapter().build_request(&request(tool_choice), false).unwrap();
        serde_json::from_slice(http.body.as_deref().unwrap()).unwrap()
    };
    assert_eq!(body(ToolChoice::Auto)["tools"][0]["function"]["name"], "get_weather");
    assert!(body(ToolChoice::None).get("tools").is_none());
    // Ollama has no tool choice: a forced call cannot be promised, so the router fails over.
    for forced in [ToolChoice::Required, ToolChoice::Tool("get_weather".into())] {
        let e = adapter().build_request(&request(forced), false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
        assert!(e.message.contains("tool_choice"), "{e}");
    }
}

#[test]
fn response_format_is_ollama_format() {
    use claudette_core::ResponseFormat;
    let body = |response_format| -> Value {
        let http = adapter()
            .build_request(&ChatRequest { response_format, ..ChatRequest::prompt("x") }, false)
            .unwrap();
        serde_json::from_slice(http.body.as_deref().unwrap()).unwrap()
    };
    assert!(body(ResponseFormat::Text).get("format").is_none());
    assert_eq!(body(ResponseFormat::JsonObject)["format"], "json");
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    assert_eq!(
        body(ResponseFormat::JsonSchema { name: "answer".into(), schema: schema.clone(), strict: false })["format"],
        schema
    );
}
