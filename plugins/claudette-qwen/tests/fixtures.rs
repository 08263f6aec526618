//! Synchronous tests of the Qwen adapter on bytes: that it speaks exactly the OpenAI
//! adapter's protocol (same bodies but the model), keeps reasoning apart from the answer
//! (`reasoning_content`, and inline `<think>` with `split_think_tags`), reads answers recorded
//! from a real llama.cpp server, and reports self-hosted defaults. See
//! `tests/fixtures/README.md` for where each fixture comes from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use claudette_core::{
    AuthScheme, BackendSettings, BackendType, ChatRequest, ChatResponse, ErrorKind, FinishReason,
    HttpRequest, HttpResponse, Message, Method, Outcome, Pricing, ProviderAdapter, RetryAction, StreamEnd,
    StreamEvent, StreamParser, ToolCall, ToolSpec, Usage, UsageSource,
};
use claudette_openai::OpenAiAdapter;
use claudette_qwen::{DEFAULT_MODEL, QwenAdapter};
use serde_json::{Value, json};

fn fixture(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn qwen(settings: &BackendSettings) -> QwenAdapter {
    QwenAdapter::new(settings).unwrap()
}

fn box_settings() -> BackendSettings {
    BackendSettings::new("qwen-box").base_url("http://127.0.0.1:39180/v1").model("tiny-llama")
}

fn thinking_splitter() -> QwenAdapter {
    qwen(&box_settings().extra("split_think_tags", true))
}

fn body_json(req: &HttpRequest) -> Value {
    serde_json::from_slice(req.body.as_deref().unwrap()).unwrap()
}

fn ok<'a>(body: &'a [u8]) -> HttpResponse<'a> {
    HttpResponse { status: 200, headers: &[], body }
}

fn parse(adapter: &QwenAdapter, body: &[u8]) -> ChatResponse {
    adapter.parse_response(&ChatRequest::prompt("Say hi"), &ok(body)).unwrap()
}

/// Runs `bytes`, cut into `chunk`-byte pieces, through the core SSE framer and the adapter's
/// decoder, as the I/O layer does; ends with the decoder's terminal result.
fn transcript(adapter: &QwenAdapter, bytes: &[u8], chunk: usize) -> Vec<StreamEvent> {
    StreamParser::for_adapter(adapter, &ChatRequest::prompt("Say hi")).parse_all(bytes, chunk)
}

/// (reasoning, text, end) of a transcript that must end with exactly one `Done`.
fn split(events: &[StreamEvent]) -> (String, String, StreamEnd) {
    let mut reasoning = String::new();
    let mut text = String::new();
    let mut end = None;
    for (i, e) in events.iter().enumerate() {
        match e {
            StreamEvent::ReasoningDelta { text: t } => reasoning.push_str(t),
            StreamEvent::TextDelta { text: t } => text.push_str(t),
            StreamEvent::Done { end: d } => {
                assert_eq!(i, events.len() - 1, "Done is last: {events:?}");
                end = Some(d.clone());
            }
            StreamEvent::Error { error } => panic!("stream failed: {error}"),
            _ => {}
        }
    }
    (reasoning, text, end.expect("a clean stream ends with Done"))
}

/// Chunk sizes every stream test is run with: single bytes (tags and UTF-8 cut everywhere),
/// odd sizes, and the whole body at once.
const CHUNKS: [usize; 5] = [1, 3, 7, 64, usize::MAX];

// ---------------------------------------------------------------------------------------------
// Same protocol as the OpenAI adapter

fn conversation() -> ChatRequest {
    let mut assistant = Message::assistant("");
    assistant.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "read_file".into(),
        arguments: json!({"path": "src/lib.rs"}),
    }];
    let mut req = ChatRequest::new(vec![
        Message::system("You are a careful Rust reviewer."),
        Message::user("Review src/lib.rs"),
        assistant,
        Message::tool_result("call_1", "pub fn answer() -> u32 { 42 }"),
    ])
    .with_max_tokens(512)
    .with_temperature(0.3);
    req.top_p = Some(0.8);
    req.stop = vec!["<|im_end|>".into()];
    req.tools = vec![ToolSpec {
        name: "read_file".into(),
        description: "Read a file of the repository".into(),
        parameters: json!({"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}),
        cache: None,
        strict: false,
    }];
    req.tags = vec!["code".into()];
    req.metadata.insert("async_contribution".into(), json!(true));
    req
}

#[test]
fn request_is_the_openai_adapters_except_the_model() {
    for extra in [None, Some(false)] {
        let mut common = BackendSettings::new("x").base_url("http://gpu-box.lan:8000/v1");
        if let Some(usage) = extra {
            common = common.extra("stream_include_usage", usage);
        }
        let openai = OpenAiAdapter::new(&common).unwrap();
        let qwen = qwen(&common);
        for request in [conversation(), ChatRequest::prompt("hi")] {
            for stream in [false, true] {
                let a = openai.build_request(&request, stream).unwrap();
                let b = qwen.build_request(&request, stream).unwrap();
                assert_eq!((a.method, &a.url, &a.headers), (b.method, &b.url, &b.headers));
                let (mut a, mut b) = (body_json(&a), body_json(&b));
                assert_eq!(a["model"], "gpt-4o-mini");
                assert_eq!(b["model"], DEFAULT_MODEL);
                a.as_object_mut().unwrap().remove("model");
                b.as_object_mut().unwrap().remove("model");
                assert_eq!(a, b, "stream={stream} stream_include_usage={extra:?}");
                assert_eq!(b.get("stream_options").is_some(), stream && extra != Some(false));
            }
        }
    }
    // A request naming its model sends that model, byte for byte the same body.
    let common = BackendSettings::new("x").base_url("http://gpu-box.lan:8000/v1");
    let req = conversation().with_model("Qwen/Qwen3-8B");
    assert_eq!(
        OpenAiAdapter::new(&common).unwrap().build_request(&req, true).unwrap().body,
        qwen(&common).build_request(&req, true).unwrap().body
    );
}

#[test]
fn body_never_carries_routing_fields_or_metadata() {
    let http = qwen(&box_settings()).build_request(&conversation(), false).unwrap();
    let body = body_json(&http);
    for field in ["metadata", "tags", "backend", "async_contribution"] {
        assert!(body.get(field).is_none(), "{field} in {body}");
    }
    assert_eq!(http.method, Method::Post);
    assert_eq!(http.url, "http://127.0.0.1:39180/v1/chat/completions");
}

#[test]
fn enable_thinking_goes_to_the_chat_template() {
    for on in [true, false] {
        let adapter = qwen(&box_settings().extra("enable_thinking", on));
        let body = body_json(&adapter.build_request(&ChatRequest::prompt("hi"), true).unwrap());
        assert_eq!(body["chat_template_kwargs"], json!({"enable_thinking": on}));
    }
    let body = body_json(&qwen(&box_settings()).build_request(&ChatRequest::prompt("hi"), false).unwrap());
    assert!(body.get("chat_template_kwargs").is_none(), "unset sends nothing: {body}");
}

// ---------------------------------------------------------------------------------------------
// Reasoning kept apart

const VLLM_REASONING: &str = "\nThe user wants a greeting. Keep it short.\n";
const VLLM_ANSWER: &str = "\n\nHello! How can I help?";

#[test]
fn vllm_reasoning_content_is_kept_apart_non_stream() {
    for adapter in [qwen(&box_settings()), thinking_splitter()] {
        let r = parse(&adapter, &fixture("shaped/vllm_reasoning.json"));
        assert_eq!(r.reasoning.as_deref(), Some(VLLM_REASONING));
        assert_eq!(r.content, VLLM_ANSWER);
        assert_eq!(r.model, "Qwen/Qwen3-8B-AWQ");
        assert_eq!(r.finish_reason, Some(FinishReason::Stop));
        assert_eq!(r.usage, Usage::reported(12, 28));
        assert_eq!(r.backend, "qwen-box");
        assert_eq!(r.cost, 0.0);
    }
}

#[test]
fn vllm_reasoning_content_is_kept_apart_in_streams() {
    let bytes = fixture("shaped/vllm_reasoning_stream.sse");
    for adapter in [qwen(&box_settings()), thinking_splitter()] {
        for chunk in CHUNKS {
            let events = transcript(&adapter, &bytes, chunk);
            let (reasoning, text, end) = split(&events);
            assert_eq!((reasoning.as_str(), text.as_str()), (VLLM_REASONING, VLLM_ANSWER), "chunk {chunk}");
            assert_eq!(end.finish_reason, Some(FinishReason::Stop));
            assert_eq!(end.usage, Usage::reported(12, 28));
            // Reasoning streams first, and never leaks into the answer.
            let first_text = events.iter().position(|e| matches!(e, StreamEvent::TextDelta { .. })).unwrap();
            assert!(events[first_text..].iter().all(|e| !matches!(e, StreamEvent::ReasoningDelta { .. })));
            assert!(!text.contains("greeting"));
        }
    }
}

const INLINE_THOUGHT: &str = "The user wants a greeting.";
const INLINE_ANSWER: &str = "Hello! No <think> here.";

#[test]
fn inline_think_block_is_split_when_asked() {
    let body = fixture("shaped/think_inline.json");
    let r = parse(&thinking_splitter(), &body);
    assert_eq!(r.reasoning.as_deref(), Some(INLINE_THOUGHT));
    assert_eq!(r.content, INLINE_ANSWER);
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));

    // Off (the default): the server's content, untouched.
    let r = parse(&qwen(&box_settings()), &body);
    assert_eq!(r.reasoning, None);
    assert!(
        r.content.starts_with("<think>\nThe user") && r.content.ends_with(INLINE_ANSWER),
        "{}",
        r.content
    );
}

#[test]
fn inline_think_block_is_split_in_streams_wherever_the_bytes_are_cut() {
    let bytes = fixture("shaped/think_inline_stream.sse");
    for chunk in CHUNKS {
        let events = transcript(&thinking_splitter(), &bytes, chunk);
        let (reasoning, text, end) = split(&events);
        assert_eq!((reasoning.as_str(), text.as_str()), (INLINE_THOUGHT, INLINE_ANSWER), "chunk {chunk}");
        assert_eq!(end.finish_reason, Some(FinishReason::Stop));
        assert_eq!(end.usage, Usage::reported(12, 16));
        // Streamed as it comes, not held to the end: several reasoning and text deltas.
        let count = |f: fn(&StreamEvent) -> bool| events.iter().filter(|e| f(e)).count();
        assert!(count(|e| matches!(e, StreamEvent::ReasoningDelta { .. })) > 1, "{events:?}");
        assert!(count(|e| matches!(e, StreamEvent::TextDelta { .. })) > 1, "{events:?}");
    }
    // Off: the tags are content.
    let (reasoning, text, _) = split(&transcript(&qwen(&box_settings()), &bytes, usize::MAX));
    assert!(reasoning.is_empty());
    assert!(text.starts_with("<think>\nThe user"), "{text}");
}

#[test]
fn a_stream_cut_inside_the_think_block_is_still_an_error() {
    let bytes = fixture("shaped/think_inline_stream.sse");
    let text = String::from_utf8(bytes).unwrap();
    let cut = text.find("</think>").unwrap();
    let cut = text[..cut].rfind("\n\n").unwrap() + 2;
    let events = transcript(&thinking_splitter(), &text.as_bytes()[..cut], usize::MAX);
    match events.last().unwrap() {
        StreamEvent::Error { error } => assert_eq!(error.kind, ErrorKind::StreamInterrupted),
        other => panic!("a cut stream must end in an error, got {other:?}"),
    }
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Done { .. })));
}

// ---------------------------------------------------------------------------------------------
// Answers the engine aborted

#[test]
fn vllm_engine_abort_is_an_error_not_a_short_answer() {
    let bytes = fixture("shaped/vllm_abort_stream.sse");
    for adapter in [qwen(&box_settings()), thinking_splitter()] {
        for chunk in CHUNKS {
            let events = transcript(&adapter, &bytes, chunk);
            let text = claudette_testkit::events::text_of(&events);
            // What arrived is passed on; the end says it is incomplete.
            assert_eq!(text, "The capital of France is", "chunk {chunk}");
            assert!(
                !events.iter().any(|e| matches!(e, StreamEvent::Done { .. })),
                "chunk {chunk}: {events:?}"
            );
            let Some(StreamEvent::Error { error }) = events.last() else {
                panic!("chunk {chunk}: an aborted stream must end in an error, got {events:?}")
            };
            assert_eq!(error.kind, ErrorKind::Overloaded, "{error}");
            assert_eq!(error.outcome(), Outcome::Failure);
            // (The backend's name is added where the stream is driven: see tests/http.rs.)
            assert!(error.message.contains("abort"), "{error}");
        }
    }
    let body = fixture("shaped/vllm_abort.json");
    for adapter in [qwen(&box_settings()), thinking_splitter()] {
        let e = adapter.parse_response(&ChatRequest::prompt("Say hi"), &ok(&body)).unwrap_err();
        assert_eq!((e.kind, e.status, e.code.as_deref()), (ErrorKind::Overloaded, Some(200), Some("abort")));
        assert_eq!(e.backend.as_deref(), Some("qwen-box"));
    }
}

// ---------------------------------------------------------------------------------------------
// Recorded from llama.cpp

#[test]
fn recorded_llama_server_answers_parse() {
    let adapter = qwen(&box_settings());
    let r = parse(&adapter, &fixture("llama-server/chat.json"));
    assert_eq!(r.content, "oproject靳_connectorent крови涌现-trash konnte");
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens, r.usage.cache_read_tokens), (20, 8, 19));
    assert_eq!(r.usage.source, UsageSource::Reported);
    assert_eq!((r.model.as_str(), r.reasoning.as_deref()), ("tiny-llama", None));

    // The stream was generated greedily from the same prompt: the same text, in pieces.
    let bytes = fixture("llama-server/chat_stream.sse");
    for chunk in CHUNKS {
        let events = transcript(&adapter, &bytes, chunk);
        let (reasoning, text, end) = split(&events);
        assert_eq!((reasoning.as_str(), text.as_str()), ("", r.content.as_str()), "chunk {chunk}");
        assert_eq!(end.finish_reason, Some(FinishReason::Length));
        assert_eq!((end.usage.input_tokens, end.usage.output_tokens), (20, 8));
    }
}

#[test]
fn errors_are_classified_by_the_openai_rules_and_name_the_backend() {
    let adapter = qwen(&box_settings());
    // vLLM's error shape for a prompt over `--max-model-len`.
    let body = br#"{"object":"error","message":"This model's maximum context length is 32768 tokens. However, you requested 40000 tokens in the messages. Please reduce the length of the messages.","type":"BadRequestError","param":null,"code":400}"#;
    let e = adapter.classify_error(&HttpResponse { status: 400, headers: &[], body });
    assert_eq!(e.kind, ErrorKind::ContextOverflow, "{e}");
    assert_eq!(e.backend.as_deref(), Some("qwen-box"));
    let e = adapter.classify_error(&HttpResponse { status: 503, headers: &[], body: b"Service Unavailable" });
    assert_eq!(e.kind, ErrorKind::Overloaded);
}

/// A server started without tool calling refuses a request with tools in words the OpenAI
/// reading takes for a caller error (vLLM: stop routing) or a server failure (llama.cpp: a
/// breaker failure on every tool request). Another backend can serve it.
#[test]
fn a_server_without_tool_calling_is_unsupported_and_fails_over() {
    let adapter = qwen(&box_settings());
    let vllm = br#"{"object":"error","message":"\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set","type":"BadRequestError","param":null,"code":400}"#;
    let llama_cpp =
        br#"{"error":{"code":500,"message":"tools param requires --jinja flag","type":"server_error"}}"#;
    let llama_cpp_old =
        br#"{"error":{"code":500,"message":"Unsupported param: tools","type":"server_error"}}"#;
    for (status, body) in [(400, &vllm[..]), (500, &llama_cpp[..]), (500, &llama_cpp_old[..])] {
        let e = adapter.classify_error(&HttpResponse { status, headers: &[], body });
        assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
        assert_eq!(e.outcome(), Outcome::Neutral, "{e}");
        assert_eq!(e.action(), RetryAction::FailOver, "{e}");
        assert_eq!((e.status, e.backend.as_deref()), (Some(status), Some("qwen-box")));
    }
}

/// vLLM's refusal of a prompt over `--max-model-len` never says "context" (vLLM's input
/// processor; seen as a 400 in OpenBMB/MiniCPM-V #1048).
#[test]
fn vllm_prompt_over_the_model_length_is_a_context_overflow() {
    let body = br#"{"error":{"message":"The decoder prompt (length 40000) is longer than the maximum model length of 32768. Make sure that `max_model_len` is no smaller than the number of text tokens.","type":"BadRequestError","param":null,"code":400}}"#;
    let e = qwen(&box_settings()).classify_error(&HttpResponse { status: 400, headers: &[], body });
    assert_eq!(e.kind, ErrorKind::ContextOverflow, "{e}");
    // The same words in a server failure stay a server failure.
    let e = qwen(&box_settings()).classify_error(&HttpResponse { status: 500, headers: &[], body });
    assert_eq!(e.kind, ErrorKind::Overloaded, "{e}");
}

// ---------------------------------------------------------------------------------------------
// What the backend says about itself

#[test]
fn self_hosted_defaults() {
    let adapter = qwen(&BackendSettings::new("qwen"));
    let info = adapter.info();
    assert_eq!(info.provider, "qwen");
    assert_eq!(info.model, DEFAULT_MODEL);
    assert_eq!(info.backend_type, BackendType::SelfHosted);
    assert_eq!(info.pricing, Pricing::FREE);
    assert!(info.supports_streaming && info.supports_tools);
    assert_eq!(adapter.pricing(Some("anything")), Pricing::FREE);
    assert_eq!(
        adapter.build_request(&ChatRequest::prompt("hi"), false).unwrap().url,
        "http://127.0.0.1:8000/v1/chat/completions"
    );
    // No key needed, and none sent.
    assert!(adapter.validate().is_ok());
    assert_eq!(adapter.auth_scheme(), AuthScheme::None);
    let probe = adapter.health_probe().unwrap();
    assert_eq!((probe.method, probe.url.as_str()), (Method::Get, "http://127.0.0.1:8000/v1/models"));
}

#[test]
fn the_seeds_box_on_a_public_domain_is_still_self_hosted() {
    let adapter =
        qwen(&BackendSettings::new("qwen").base_url("https://tools.flexcon-ai.de/v1").api_key("k-123456"));
    assert_eq!(adapter.info().backend_type, BackendType::SelfHosted);
    assert_eq!(adapter.auth_scheme(), AuthScheme::Bearer);
    // A hosted Qwen API says so.
    let hosted = qwen(
        &BackendSettings::new("q").base_url("https://qwen.example.com/v1").extra("backend_type", "cloud"),
    );
    assert_eq!(hosted.info().backend_type, BackendType::Cloud);
}

#[test]
fn openai_settings_are_delegated() {
    let price = Pricing::new(0.0001, 0.0001);
    let adapter = qwen(
        &box_settings()
            .pricing(price)
            .priority(3)
            .quality(0.7)
            .tags(["code"])
            .extra("context_window", 32_768)
            .extra("max_tokens_field", "max_completion_tokens"),
    );
    let info = adapter.info();
    assert_eq!((info.pricing, info.priority, info.quality), (price, 3, 0.7));
    assert_eq!((info.context_window, info.tags.clone()), (Some(32_768), vec!["code".to_owned()]));
    let body =
        body_json(&adapter.build_request(&ChatRequest::prompt("hi").with_max_tokens(5), false).unwrap());
    assert_eq!(body["max_completion_tokens"], 5);
    let r = parse(&adapter, &fixture("llama-server/chat.json"));
    assert!((r.cost - price.cost(&r.usage)).abs() < 1e-12 && r.cost > 0.0, "{}", r.cost);
}

#[test]
fn model_lists_of_both_shapes_parse() {
    let adapter = qwen(&box_settings());
    let vllm = br#"{"object":"list","data":[{"id":"Qwen/Qwen2.5-Coder-7B-Instruct-AWQ","object":"model","owned_by":"vllm","max_model_len":32768}]}"#;
    assert_eq!(adapter.parse_models(vllm).unwrap(), vec!["Qwen/Qwen2.5-Coder-7B-Instruct-AWQ".to_owned()]);
    assert!(adapter.parse_models(b"not json").is_err());
}
