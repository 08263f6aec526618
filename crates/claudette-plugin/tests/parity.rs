//! Same behaviour both ways (issue 4 item 5): every provider built by `cargo xtask plugins`
//! is loaded from its `.so` and compared with the same provider linked into this binary.
//!
//! - `recorded_*`: each provider's own recorded fixture files (read in place from the provider
//!   crates' `tests/` directories) and the test kit's wire shapes go through both adapters:
//!   response parsing, error classification, model lists and stream decoding (at several
//!   chunk sizes) must give identical results.
//! - `requests_*`: request building, health probes, prices, timeouts and metadata agree.
//! - `routed_*`: real HTTP on 127.0.0.1 through a `BackendRouter`, non-streaming and
//!   streaming: the same answers, the same event sequences, the same bytes on the wire, and
//!   the key on the wire although the plugin never received it.
//! - `*_token_count*`: the count call (Anthropic's and Gemini's) is built, read and sent
//!   identically, its errors keep their kind, and a provider without one stays without one
//!   (so the gateway estimates for it exactly as it does linked in).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use claudette_core::{
    BackendError, BackendRouter, BackendSettings, ChatRequest, ChatResponse, HttpResponse, Message,
    Observation, ProviderAdapter, Registry, RouterOptions, SharedBackend, StreamEvent, StreamParser,
    Timeouts, ToolSpec,
};
use claudette_plugin::{LoadOptions, LoadedPlugin, PluginAdapter, RegistryPluginExt, load_dir};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

const KEY: &str = "sk-parity-0123456789abcdef";

/// The plugins, loaded once per test binary.
fn plugins() -> &'static BTreeMap<String, LoadedPlugin> {
    static LOADED: OnceLock<BTreeMap<String, LoadedPlugin>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let (loaded, errors) = load_dir(common::xtask_plugins(), &LoadOptions::default());
        assert!(errors.is_empty(), "{errors:?}");
        loaded.into_iter().map(|p| (p.name().to_owned(), p)).collect()
    })
}

fn plugin_adapter(provider: &str, settings: &BackendSettings) -> PluginAdapter {
    plugins()[provider].new_adapter(settings).unwrap()
}

/// The linked adapter of `provider`.
fn linked_adapter(provider: &str, s: &BackendSettings) -> Box<dyn ProviderAdapter> {
    match provider {
        "openai" => Box::new(claudette_openai::OpenAiAdapter::new(s).unwrap()),
        "anthropic" => Box::new(claudette_anthropic::AnthropicAdapter::new(s).unwrap()),
        "ollama" => Box::new(claudette_ollama::OllamaAdapter::new(s).unwrap()),
        "gemini" => Box::new(claudette_gemini::GeminiAdapter::new(s).unwrap()),
        "qwen" => Box::new(claudette_qwen::QwenAdapter::new(s).unwrap()),
        "custom" => Box::new(claudette_custom_backend::CustomAdapter::new(s).unwrap()),
        other => panic!("no linked adapter for {other}"),
    }
}

/// Settings of `provider` against `base` (a fake server URL, or a placeholder).
fn settings(provider: &str, base: &str) -> BackendSettings {
    let s = BackendSettings::new(format!("{provider}-parity")).api_key(KEY);
    match provider {
        "openai" => s.base_url(format!("{base}/v1")).model("gpt-4o-mini"),
        "anthropic" => s.base_url(base).model("claude-3-5-haiku-latest"),
        "ollama" => s.base_url(base).model("llama3.2"),
        "gemini" => s.base_url(format!("{base}/v1beta")).model("gemini-2.0-flash"),
        "qwen" => s.base_url(format!("{base}/v1")).model("Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"),
        "custom" => s.base_url(base),
        other => panic!("no settings for {other}"),
    }
}

const PROVIDERS: [&str; 6] = ["openai", "anthropic", "ollama", "gemini", "qwen", "custom"];

/// Ids that providers without call ids get from a process-wide counter (`call_<n>`) differ
/// between the two copies of `claudette-core`; everything else must be identical.
fn normalize_id(id: &mut String) {
    if id.strip_prefix("call_").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())) {
        *id = "call_N".into();
    }
}

fn normalize_response(mut r: ChatResponse) -> ChatResponse {
    for call in &mut r.tool_calls {
        normalize_id(&mut call.id);
    }
    r
}

fn normalize_events(mut events: Vec<StreamEvent>) -> Vec<StreamEvent> {
    for e in &mut events {
        if let StreamEvent::ToolCall { delta } = e {
            if let Some(id) = &mut delta.id {
                normalize_id(id);
            }
        }
    }
    events
}

// ---------------------------------------------------------------------------------------------
// Recorded bytes through both adapters.

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The provider crates' own fixture files, by path (not copied).
fn recorded_files(provider: &str) -> Vec<PathBuf> {
    let root = common::workspace_root();
    let dirs: &[&str] = match provider {
        "openai" => &["plugins/claudette-openai/tests/fixtures"],
        "anthropic" => &["plugins/claudette-anthropic/tests/fixtures"],
        "ollama" => &["plugins/claudette-ollama/tests/data"],
        "qwen" => &["plugins/claudette-qwen/tests/fixtures", "plugins/claudette-openai/tests/fixtures"],
        _ => &[],
    };
    dirs.iter()
        .flat_map(|d| files_under(&root.join(d)))
        .filter(|p| {
            !matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "txt"))
                || p.ends_with("err_no_key.txt")
        })
        .collect()
}

/// The test kit's wire shapes of `provider` (what a fake server would send), as named bodies.
fn testkit_bodies(provider: &str) -> Vec<(String, Vec<u8>)> {
    let replies: Vec<(&str, Reply)> = match provider {
        "openai" | "qwen" => vec![
            ("text", Reply::openai_text_usage("Hello there", 9, 2)),
            ("tool", Reply::openai_tool_call("call_abc", "get_weather", "{\"city\":\"Paris\"}")),
            ("stream.sse", Reply::openai_stream(&["Hel", "lo", " wörld"])),
            ("stream_tool.sse", Reply::openai_stream_tool_call("call_x", "f", &["{\"a\"", ":1}"])),
            ("stream_cut.sse", Reply::openai_stream_no_done(&["a", "b"])),
            ("stream_error.sse", Reply::openai_stream_error_after(&["a"])),
            (
                "err_quota",
                Reply::openai_error(429, "insufficient_quota", Some("insufficient_quota"), "pay up"),
            ),
            ("malformed", Reply::malformed_json()),
        ],
        "anthropic" => vec![
            ("text", Reply::anthropic_text("Hello there")),
            ("tool", Reply::anthropic_tool_use("toolu_1", "get_weather", json!({"city": "Paris"}))),
            ("stream.sse", Reply::anthropic_stream(&["Hel", "lo", " wörld"])),
            ("stream_tool.sse", Reply::anthropic_stream_tool_use("toolu_2", "f", &["{\"a\"", ":1}"])),
            ("stream_overloaded.sse", Reply::anthropic_stream_error_first("overloaded_error")),
            ("stream_error_after.sse", Reply::anthropic_stream_error_after(&["a"], "api_error")),
            ("err_overloaded", Reply::anthropic_error(529, "overloaded_error", "busy")),
        ],
        "ollama" => vec![
            ("text", Reply::ollama_text("Hello there")),
            ("tool", Reply::ollama_tool_call("get_weather", json!({"city": "Paris"}))),
            ("stream.ndjson", Reply::ollama_stream(&["Hel", "lo", " wörld"])),
            ("stream_error.ndjson", Reply::ollama_stream_error_after(&["a"])),
            ("err_missing", Reply::ollama_error(404, "model 'x' not found, try pulling it first")),
        ],
        "gemini" => vec![
            ("text", Reply::gemini_text("Hello there")),
            ("stream.sse", Reply::gemini_stream(&["Hel", "lo", " wörld"])),
            ("stream_empty.sse", Reply::gemini_stream(&[])),
            ("err_quota", Reply::gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric")),
        ],
        "custom" => vec![
            (
                "text",
                Reply::json(200, json!({"content": "Hello there", "tokensInput": 4, "tokensOutput": 2})),
            ),
            (
                "stream.ndjson",
                Reply::ndjson(vec![
                    json!({"delta": "Hel"}),
                    json!({"delta": "lo"}),
                    json!({"done": true, "tokensInput": 4, "tokensOutput": 2}),
                ]),
            ),
            ("stream_cut.ndjson", Reply::ndjson(vec![json!({"delta": "Hel"})])),
            ("err", Reply::json(503, json!({"error": "maintenance"}))),
        ],
        other => panic!("no shapes for {other}"),
    };
    replies.into_iter().map(|(name, r)| (name.to_owned(), r.body_bytes())).collect()
}

fn requests() -> Vec<ChatRequest> {
    let tool = ToolSpec {
        name: "get_weather".into(),
        description: "Weather of a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        cache: None,
        strict: false,
    };
    let mut with_tools = ChatRequest::new(vec![
        Message::system("You are terse."),
        Message::user("Weather in Paris?"),
        Message {
            tool_calls: vec![claudette_core::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }],
            ..Message::assistant("")
        },
        Message { name: Some("get_weather".into()), ..Message::tool_result("call_1", "{\"temp\": 21}") },
        Message { name: Some("get_weather".into()), ..Message::tool_error("call_2", "city unknown") },
    ]);
    with_tools.tools = vec![tool.clone()];
    with_tools.parallel_tool_calls = Some(true);
    // Strict on one tool and not the other: the flag crosses per tool, and the providers that
    // take it write it on that tool alone.
    let mut strict_tools = with_tools.clone();
    strict_tools.tools =
        vec![ToolSpec { strict: true, ..tool.clone() }, ToolSpec { name: "get_time".into(), ..tool }];
    let mut sampled = ChatRequest::prompt("Say hi").with_max_tokens(32).with_temperature(0.7);
    sampled.top_p = Some(0.9);
    sampled.stop = vec!["\n\n".into()];
    sampled.top_k = Some(20);
    sampled.seed = Some(7);
    let mut metadata = ChatRequest::prompt("background job");
    metadata.metadata.insert("async_contribution".into(), json!(true));
    vec![
        ChatRequest::prompt("Hello, wörld"),
        ChatRequest::new(vec![
            Message::system("Be brief."),
            Message::user("a"),
            Message::assistant("b"),
            Message::user("c"),
        ]),
        with_tools,
        strict_tools,
        sampled,
        ChatRequest::prompt("override").with_model("some-other-model"),
        metadata,
    ]
}

/// Every recorded body through both adapters, as a response of several statuses and as a
/// stream at several chunk sizes.
///
/// Returns how many bodies parsed as an answer and how many streams ended in `Done` (on the
/// plugin side), so each test can check it compared successes and not only failures.
fn compare_bodies(provider: &str, s: &BackendSettings, bodies: &[(String, Vec<u8>)]) -> (usize, usize) {
    let linked = linked_adapter(provider, s);
    let plugin = plugin_adapter(provider, s);
    let request = ChatRequest::prompt("recorded");
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("retry-after".to_owned(), "7".to_owned()),
        ("x-should-retry".to_owned(), "true".to_owned()),
    ];
    let (mut answers, mut streams) = (0, 0);
    for (name, body) in bodies {
        let ctx = format!("{provider}: {name}");
        for status in [200u16, 400, 401, 404, 413, 429, 500, 529] {
            let response = HttpResponse { status, headers: &headers, body };
            if status == 200 {
                let a = linked.parse_response(&request, &response).map(normalize_response);
                let b = plugin.parse_response(&request, &response).map(normalize_response);
                answers += usize::from(b.is_ok());
                assert_eq!(a, b, "{ctx}: parse_response");
                assert_eq!(linked.parse_models(body), plugin.parse_models(body), "{ctx}: parse_models");
            } else {
                assert_eq!(
                    linked.classify_error(&response),
                    plugin.classify_error(&response),
                    "{ctx}: {status}"
                );
            }
        }
        for chunk in [1, 13, body.len().max(1)] {
            let a = StreamParser::for_adapter(linked.as_ref(), &request).parse_all(body, chunk);
            let b = StreamParser::for_adapter(&plugin, &request).parse_all(body, chunk);
            streams += usize::from(chunk == 1 && matches!(b.last(), Some(StreamEvent::Done { .. })));
            assert_eq!(normalize_events(a), normalize_events(b), "{ctx}: stream in {chunk}-byte chunks");
        }
    }
    (answers, streams)
}

fn check_counts(provider: &str, (answers, streams): (usize, usize), min_answers: usize, min_streams: usize) {
    assert!(answers >= min_answers, "{provider}: only {answers} bodies parsed as answers");
    assert!(streams >= min_streams, "{provider}: only {streams} streams ended cleanly");
}

fn recorded_and_shaped(provider: &str) -> Vec<(String, Vec<u8>)> {
    let mut bodies: Vec<(String, Vec<u8>)> = recorded_files(provider)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    bodies.extend(testkit_bodies(provider));
    bodies
}

#[test]
fn recorded_openai_fixtures_decode_identically_through_the_plugin() {
    let bodies = recorded_and_shaped("openai");
    assert!(bodies.len() > 25, "the OpenAI fixture files were found: {}", bodies.len());
    check_counts(
        "openai",
        compare_bodies("openai", &settings("openai", "http://127.0.0.1:9"), &bodies),
        5,
        8,
    );
}

#[test]
fn recorded_anthropic_fixtures_decode_identically_through_the_plugin() {
    let bodies = recorded_and_shaped("anthropic");
    assert!(bodies.len() > 12, "the Anthropic fixture files were found: {}", bodies.len());
    check_counts(
        "anthropic",
        compare_bodies("anthropic", &settings("anthropic", "http://127.0.0.1:9"), &bodies),
        5,
        5,
    );
}

#[test]
fn recorded_ollama_fixtures_decode_identically_through_the_plugin() {
    let bodies = recorded_and_shaped("ollama");
    assert!(bodies.len() > 5, "the Ollama fixture files were found: {}", bodies.len());
    check_counts(
        "ollama",
        compare_bodies("ollama", &settings("ollama", "http://127.0.0.1:9"), &bodies),
        3,
        2,
    );
}

#[test]
fn recorded_gemini_shapes_decode_identically_through_the_plugin() {
    let counts =
        compare_bodies("gemini", &settings("gemini", "http://127.0.0.1:9"), &recorded_and_shaped("gemini"));
    check_counts("gemini", counts, 1, 2);
}

#[test]
fn recorded_qwen_fixtures_decode_identically_through_the_plugin_with_and_without_think_splitting() {
    let bodies = recorded_and_shaped("qwen");
    assert!(bodies.len() > 30, "the Qwen and OpenAI fixture files were found: {}", bodies.len());
    check_counts("qwen", compare_bodies("qwen", &settings("qwen", "http://127.0.0.1:9"), &bodies), 8, 10);
    let split = settings("qwen", "http://127.0.0.1:9").extra("split_think_tags", true);
    check_counts("qwen", compare_bodies("qwen", &split, &bodies), 8, 10);
}

#[test]
fn recorded_custom_backend_shapes_decode_identically_through_the_plugin() {
    let counts =
        compare_bodies("custom", &settings("custom", "http://127.0.0.1:9"), &recorded_and_shaped("custom"));
    check_counts("custom", counts, 1, 1);
}

// ---------------------------------------------------------------------------------------------
// Requests, metadata, prices, timeouts.

#[test]
fn requests_info_prices_and_timeouts_agree_for_every_provider() {
    for provider in PROVIDERS {
        let s = settings(provider, "http://127.0.0.1:9");
        let linked = linked_adapter(provider, &s);
        let plugin = plugin_adapter(provider, &s);
        assert_eq!(linked.info(), plugin.info(), "{provider}");
        assert_eq!(linked.auth_scheme(), plugin.auth_scheme(), "{provider}");
        assert_eq!(linked.framing(), plugin.framing(), "{provider}");
        assert_eq!(linked.health_probe(), plugin.health_probe(), "{provider}");
        assert_eq!(linked.validate(), plugin.validate(), "{provider}");
        for model in
            [None, Some(s.model.as_deref().unwrap_or("x")), Some("gpt-4o"), Some("claude-3-opus-latest")]
        {
            assert_eq!(linked.pricing(model), plugin.pricing(model), "{provider} {model:?}");
        }
        let configured = Timeouts { first_byte: Duration::from_millis(1500), ..Timeouts::default() };
        for (i, request) in requests().iter().enumerate() {
            for stream in [false, true] {
                assert_eq!(
                    linked.build_request(request, stream),
                    plugin.build_request(request, stream),
                    "{provider}: request {i}, stream {stream}"
                );
            }
            assert_eq!(
                linked.timeouts(&configured, request),
                plugin.timeouts(&configured, request),
                "{provider} {i}"
            );
        }
    }
}

#[test]
fn requests_the_key_decides_validation_on_the_host_side_only() {
    // api.openai.com needs a key: without one both refuse, with one both accept, and the
    // plugin only ever saw a placeholder.
    for (provider, with_key) in [("openai", true), ("openai", false), ("gemini", true), ("gemini", false)] {
        let mut s = BackendSettings::new("k").model("m");
        if with_key {
            s = s.api_key(KEY);
        }
        let linked = linked_adapter(provider, &s);
        let plugin = plugin_adapter(provider, &s);
        assert_eq!(linked.validate().is_ok(), with_key, "{provider}");
        assert_eq!(linked.validate(), plugin.validate(), "{provider} with key: {with_key}");
    }
}

#[test]
fn requests_adaptive_timeouts_learn_the_same_through_observe() {
    // Qwen stretches its deadline from what `observe` reports: the plugin's copy must learn
    // exactly what the linked one learns.
    let s =
        settings("qwen", "http://127.0.0.1:9").extra("base_timeout_ms", 1000).extra("max_timeout_ms", 60_000);
    let linked = linked_adapter("qwen", &s);
    let plugin = plugin_adapter("qwen", &s);
    let request = ChatRequest::prompt("x");
    let configured = Timeouts::default();
    let before = plugin.timeouts(&configured, &request);
    for ms in [4000u64, 5000, 6000, 5500, 4500] {
        let o = Observation {
            latency: Duration::from_millis(ms),
            ttft: Some(Duration::from_millis(ms / 2)),
            error: None,
            stream: true,
        };
        linked.observe(&o);
        plugin.observe(&o);
    }
    let timeout = Observation {
        latency: Duration::from_secs(9),
        ttft: None,
        error: Some(claudette_core::ErrorKind::Timeout),
        stream: false,
    };
    linked.observe(&timeout);
    plugin.observe(&timeout);
    let after = plugin.timeouts(&configured, &request);
    assert_eq!(linked.timeouts(&configured, &request), after);
    assert_ne!(before, after, "the observations changed the deadline (so equality above means something)");
}

// ---------------------------------------------------------------------------------------------
// Real HTTP through a router.

/// The linked backend and the plugin backend (through the registry, as a host builds it) of
/// one provider, both against `server`, in one router.
fn router_pair(provider: &str, server: &FakeServer) -> (BackendRouter, String, String) {
    let mut registry = Registry::empty();
    let name = registry.load_file(plugins()[provider].path(), &LoadOptions::default()).unwrap();
    assert_eq!(name, provider);
    let base = settings(provider, &server.url());
    let linked_settings = BackendSettings { name: format!("{provider}-linked"), ..base.clone() };
    let plugin_settings = BackendSettings { name: format!("{provider}-plugin"), ..base };
    let linked: SharedBackend =
        claudette_http::HttpBackend::new(linked_adapter(provider, &linked_settings), &linked_settings)
            .unwrap()
            .shared();
    let plugin = registry.build(provider, &plugin_settings).unwrap();
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(linked).unwrap();
    router.register_backend(plugin).unwrap();
    (router, linked_settings.name, plugin_settings.name)
}

/// What makes two answers the same answer (not who gave it or how long it took).
fn answer_of(
    r: ChatResponse,
) -> (String, Option<String>, Vec<claudette_core::ToolCall>, String, String, u64, String) {
    let r = normalize_response(r);
    (
        r.content,
        r.reasoning,
        r.tool_calls,
        format!("{:?}", r.finish_reason),
        format!("{:?} {}", r.usage, r.model),
        r.cost.to_bits(),
        format!("{:?} {:?}", r.id, r.warnings),
    )
}

async fn collect(router: &BackendRouter, request: &ChatRequest) -> Vec<StreamEvent> {
    let mut stream = router.route_stream(request).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    normalize_events(events)
}

/// Checks that the two requests the server received are the same bytes, and that the key is
/// on the wire (the host attached it) but not in the body.
fn same_wire(provider: &str, server: &FakeServer) {
    let received = server.received();
    let posts: Vec<_> = received.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 2, "{provider}");
    let (a, b) = (posts[0], posts[1]);
    assert_eq!((&a.path, &a.query, &a.body), (&b.path, &b.query, &b.body), "{provider}");
    let mut ha = a.headers.clone();
    let mut hb = b.headers.clone();
    ha.sort();
    hb.sort();
    assert_eq!(ha, hb, "{provider}: headers");
    assert!(
        b.headers.iter().any(|(_, v)| v.contains(KEY)),
        "{provider}: the host attached the real key to the plugin's request"
    );
    assert!(!b.text().contains(KEY) && !b.text().contains("placeholder"), "{provider}: no key in the body");
}

fn replies(provider: &str) -> (Reply, Reply) {
    match provider {
        "openai" | "qwen" => {
            (Reply::openai_text_usage("Hello there", 9, 2), Reply::openai_stream(&["Hel", "lo", "!"]))
        }
        "anthropic" => (Reply::anthropic_text("Hello there"), Reply::anthropic_stream(&["Hel", "lo", "!"])),
        "ollama" => (Reply::ollama_text("Hello there"), Reply::ollama_stream(&["Hel", "lo", "!"])),
        "gemini" => (Reply::gemini_text("Hello there"), Reply::gemini_stream(&["Hel", "lo", "!"])),
        "custom" => (
            Reply::json(200, json!({"content": "Hello there", "tokensInput": 4, "tokensOutput": 2})),
            Reply::ndjson(vec![
                json!({"delta": "Hel"}),
                json!({"delta": "lo"}),
                json!({"delta": "!"}),
                json!({"done": true, "tokensInput": 4, "tokensOutput": 3}),
            ]),
        ),
        other => panic!("no replies for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_requests_and_streams_match_the_linked_providers() {
    for provider in PROVIDERS {
        let (text, stream) = replies(provider);

        let server = FakeServer::start().await;
        let (router, linked, plugin) = router_pair(provider, &server);
        server.push_n(2, text);
        let request = ChatRequest::prompt("Say hello");
        let a = router.route_request(&request.clone().with_backend(&linked)).await.unwrap();
        let b = router.route_request(&request.clone().with_backend(&plugin)).await.unwrap();
        assert_eq!((a.backend.as_str(), b.backend.as_str()), (linked.as_str(), plugin.as_str()));
        assert!(!b.content.is_empty(), "{provider}");
        assert_eq!(answer_of(a), answer_of(b), "{provider}: non-streaming");
        same_wire(provider, &server);

        let server = FakeServer::start().await;
        let (router, linked, plugin) = router_pair(provider, &server);
        server.push_n(2, stream);
        let a = collect(&router, &request.clone().with_backend(&linked)).await;
        let b = collect(&router, &request.clone().with_backend(&plugin)).await;
        assert!(matches!(b.last(), Some(StreamEvent::Done { .. })), "{provider}: {b:?}");
        assert!(b.iter().filter(|e| e.is_content()).count() >= 2, "{provider}: {b:?}");
        assert_eq!(a, b, "{provider}: streaming");
        same_wire(provider, &server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_errors_match_the_linked_providers() {
    let cases: Vec<(&str, Reply)> = vec![
        (
            "openai",
            Reply::openai_error(429, "rate_limit_exceeded", Some("rate_limit_exceeded"), "slow down")
                .header("retry-after", "2"),
        ),
        ("anthropic", Reply::anthropic_error(529, "overloaded_error", "Overloaded")),
        ("ollama", Reply::ollama_error(404, "model 'llama3.2' not found, try pulling it first")),
        (
            "gemini",
            Reply::gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
        ),
        (
            "qwen",
            Reply::openai_error(400, "invalid_request_error", None, "maximum context length is 4096 tokens"),
        ),
        ("custom", Reply::json(503, json!({"error": "maintenance"}))),
    ];
    for (provider, reply) in cases {
        let server = FakeServer::start().await;
        let (router, linked, plugin) = router_pair(provider, &server);
        server.push_n(2, reply);
        let request = ChatRequest::prompt("x");
        let a: BackendError = router.backend(&linked).unwrap().send(&request).await.unwrap_err();
        let b: BackendError = router.backend(&plugin).unwrap().send(&request).await.unwrap_err();
        assert_eq!(b.backend.as_deref(), Some(plugin.as_str()));
        assert_eq!(BackendError { backend: None, ..a }, BackendError { backend: None, ..b }, "{provider}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_health_checks_match_the_linked_providers() {
    for provider in PROVIDERS {
        let server = FakeServer::start().await;
        let (router, linked, plugin) = router_pair(provider, &server);
        let a = router.backend(&linked).unwrap().health_check().await;
        let b = router.backend(&plugin).unwrap().health_check().await;
        assert_eq!(a.is_ok(), b.is_ok(), "{provider}: {a:?} vs {b:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Token counts.

/// The providers whose adapters have a count call. Every other one must have none when loaded
/// either: `None` is what makes the gateway estimate.
const COUNTING: [&str; 2] = ["anthropic", "gemini"];

#[test]
fn requests_token_count_calls_agree_for_every_provider() {
    for provider in PROVIDERS {
        let s = settings(provider, "http://127.0.0.1:9");
        let linked = linked_adapter(provider, &s);
        let plugin = plugin_adapter(provider, &s);
        for (i, request) in requests().iter().enumerate() {
            let a = linked.count_tokens_request(request);
            assert_eq!(a.is_some(), COUNTING.contains(&provider), "{provider}: request {i}: {a:?}");
            assert_eq!(a, plugin.count_tokens_request(request), "{provider}: request {i}");
        }
    }
}

/// Count answers in each counting provider's wire shape: the count itself, then bodies every
/// reader must refuse (cut, not JSON, the field missing, out of range, an error object).
fn count_bodies(provider: &str) -> Vec<Vec<u8>> {
    let shaped = match provider {
        "anthropic" => vec![json!({"input_tokens": 42}), json!({"input_tokens": 0})],
        "gemini" => vec![
            json!({"totalTokens": 42, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 42}]}),
            json!({"totalTokens": 0}),
        ],
        _ => Vec::new(),
    };
    let mut bodies: Vec<Vec<u8>> = shaped.iter().map(|v| serde_json::to_vec(v).unwrap()).collect();
    bodies.extend(
        [
            json!({}),
            json!({"input_tokens": -1, "totalTokens": -1}),
            json!({"input_tokens": 5_000_000_000u64, "totalTokens": 5_000_000_000u64}),
            json!({"input_tokens": "42", "totalTokens": "42"}),
            json!({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}),
        ]
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap()),
    );
    bodies.extend([b"".to_vec(), b"{\"input_tokens\": 4".to_vec(), b"not json".to_vec()]);
    bodies
}

#[test]
fn recorded_token_counts_and_their_errors_read_identically_through_the_plugin() {
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    for provider in PROVIDERS {
        let s = settings(provider, "http://127.0.0.1:9");
        let linked = linked_adapter(provider, &s);
        let plugin = plugin_adapter(provider, &s);
        let (mut counts, mut malformed) = (0, 0);
        for body in count_bodies(provider) {
            let ctx = format!("{provider}: {}", String::from_utf8_lossy(&body));
            let response = HttpResponse { status: 200, headers: &headers, body: &body };
            let (a, b) = (linked.parse_count_tokens(&response), plugin.parse_count_tokens(&response));
            assert_eq!(a, b, "{ctx}");
            match b {
                Ok(_) => counts += 1,
                Err(e) if e.kind == claudette_core::ErrorKind::MalformedResponse => malformed += 1,
                Err(e) if !COUNTING.contains(&provider) => {
                    assert_eq!(e.kind, claudette_core::ErrorKind::Unsupported, "{ctx}")
                }
                Err(_) => {}
            }
        }
        if COUNTING.contains(&provider) {
            // Successes and parse errors were compared, not only "unsupported" twice.
            assert_eq!(counts, 2, "{provider}");
            assert!(malformed >= 5, "{provider}: only {malformed} malformed-answer errors");
        } else {
            assert_eq!((counts, malformed), (0, 0), "{provider}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_token_counts_match_the_linked_providers() {
    let request = ChatRequest::new(vec![Message::system("Be brief."), Message::user("How long is this?")]);
    for provider in PROVIDERS {
        let server = FakeServer::start().await;
        let (router, linked, plugin) = router_pair(provider, &server);
        let (linked, plugin) = (router.backend(&linked).unwrap(), router.backend(&plugin).unwrap());
        if !COUNTING.contains(&provider) {
            // No count call, loaded or linked: both say so without I/O, and the gateway estimates.
            for backend in [&linked, &plugin] {
                let e = backend.count_tokens(&request).await.unwrap_err();
                assert_eq!(e.kind, claudette_core::ErrorKind::Unsupported, "{provider}: {e}");
            }
            assert!(server.received().is_empty(), "{provider}");
            continue;
        }
        let [count, malformed] = match provider {
            "anthropic" => [json!({"input_tokens": 42}), json!({"tokens": 42})],
            _ => [json!({"totalTokens": 42}), json!({"total_tokens": 42})],
        };

        server.push_n(2, Reply::json(200, count));
        let a = linked.count_tokens(&request).await;
        let b = plugin.count_tokens(&request).await;
        assert_eq!((a, b), (Ok(42), Ok(42)), "{provider}");
        same_wire(provider, &server);

        // A 2xx the adapter cannot read, and a refusal the adapter classifies.
        let server = FakeServer::start().await;
        let (router, linked, plugin) = router_pair(provider, &server);
        let (linked, plugin) = (router.backend(&linked).unwrap(), router.backend(&plugin).unwrap());
        let refusal = match provider {
            "anthropic" => Reply::anthropic_error(429, "rate_limit_error", "Number of requests exceeded"),
            _ => Reply::gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric"),
        };
        server.push_n(2, Reply::json(200, malformed));
        server.push_n(2, refusal);
        for kind in [claudette_core::ErrorKind::MalformedResponse, claudette_core::ErrorKind::RateLimited] {
            let a = linked.count_tokens(&request).await.unwrap_err();
            let b = plugin.count_tokens(&request).await.unwrap_err();
            assert_eq!((a.kind, b.kind), (kind, kind), "{provider}: {a} / {b}");
            assert_eq!(b.backend.as_deref(), Some(plugin.name()));
            assert_eq!(
                BackendError { backend: None, ..a },
                BackendError { backend: None, ..b },
                "{provider}"
            );
        }
    }
}
