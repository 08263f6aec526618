//! Shared set-up for the gateway's HTTP tests: fake upstreams, routers, an in-process gateway
//! on 127.0.0.1:0, SSE parsing, and a log capture used by the canary-key test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use claudette_core::{BackendRouter, BackendSettings, Pricing, RouterOptions, SharedBackend, Timeouts};
use claudette_gateway::{Gateway, GatewayOptions};
use claudette_testkit::FakeServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// ------------------------------------------------------------------------------------------
// Log capture: one global subscriber for the whole test binary, writing into a buffer, so the
// canary test can grep everything every test in this binary logged.

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (TRACE for Claudette's crates and tower-http, DEBUG for
/// the rest). Idempotent.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let filter = tracing_subscriber::EnvFilter::new(
            "debug,claudette_gateway=trace,claudette_core=trace,claudette_http=trace,tower_http=trace",
        );
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    });
}

/// Everything logged so far by this test binary.
pub fn logs() -> String {
    LOGS.get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// Backends and routers

pub const UPSTREAM_KEY: &str = "sk-upstream-test-0001";

/// A router whose back-off is short, so retry paths do not slow the suite.
pub fn fast_options() -> RouterOptions {
    let mut o = RouterOptions::default();
    o.retry.base_backoff = Duration::from_millis(5);
    o.retry.max_backoff = Duration::from_millis(20);
    o
}

pub fn openai_settings(name: &str, fake: &FakeServer) -> BackendSettings {
    BackendSettings::new(name).base_url(fake.v1_url()).model("fake-model").api_key(UPSTREAM_KEY)
}

pub fn anthropic_settings(name: &str, fake: &FakeServer) -> BackendSettings {
    BackendSettings::new(name).base_url(fake.url()).model("claude-fake").api_key(UPSTREAM_KEY)
}

pub fn openai(settings: BackendSettings) -> SharedBackend {
    claudette_openai::backend(&settings).expect("openai backend").shared()
}

pub fn anthropic(settings: BackendSettings) -> SharedBackend {
    claudette_anthropic::backend(&settings).expect("anthropic backend").shared()
}

pub fn with_idle(settings: BackendSettings, idle: Duration) -> BackendSettings {
    settings.timeouts(Timeouts { idle, ..Timeouts::default() })
}

pub fn priced(settings: BackendSettings, input_per_1k: f64, output_per_1k: f64) -> BackendSettings {
    settings.pricing(Pricing::new(input_per_1k, output_per_1k))
}

pub fn router(backends: Vec<SharedBackend>) -> Arc<BackendRouter> {
    router_with(backends, fast_options())
}

pub fn router_with(backends: Vec<SharedBackend>, options: RouterOptions) -> Arc<BackendRouter> {
    let r = BackendRouter::new(options);
    for b in backends {
        r.register_backend(b).expect("register");
    }
    Arc::new(r)
}

// ------------------------------------------------------------------------------------------
// The gateway

/// A gateway serving on 127.0.0.1:<random>, stopped (gracefully) when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub url: String,
    pub router: Arc<BackendRouter>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Asks the gateway to shut down and returns its serve task.
    pub fn shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("already shut down")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub async fn start(router: Arc<BackendRouter>) -> Running {
    start_with(router, GatewayOptions::default()).await
}

pub async fn start_with(router: Arc<BackendRouter>, options: GatewayOptions) -> Running {
    capture_logs();
    let gateway = Gateway::new(router.clone(), options).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async move {
        let _ = rx.await;
    }));
    Running { addr, url: format!("http://{addr}"), router, stop: Some(tx), task: Some(task) }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

// ------------------------------------------------------------------------------------------
// Responses

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// SSE frames as (event name, data) pairs; comments dropped.
    pub fn frames(&self) -> Vec<(Option<String>, String)> {
        parse_sse(&self.text)
    }
}

pub async fn post(url: &str, path: &str, body: serde_json::Value) -> Reply {
    post_with(url, path, body, &[]).await
}

pub async fn post_with(url: &str, path: &str, body: serde_json::Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = client()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    collect(req.send().await.expect("send")).await
}

pub async fn get(url: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().get(format!("{url}{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    collect(req.send().await.expect("send")).await
}

pub async fn collect(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    // A stream that ends with an error still yields what arrived; keep it.
    let mut text = Vec::new();
    let mut resp = resp;
    while let Ok(Some(c)) = resp.chunk().await {
        text.extend_from_slice(&c);
    }
    Reply { status, headers, text: String::from_utf8_lossy(&text).into_owned() }
}

pub fn parse_sse(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .filter_map(|frame| {
            let mut event = None;
            let mut data = Vec::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            if event.is_none() && data.is_empty() { None } else { Some((event, data.join("\n"))) }
        })
        .collect()
}

/// The OpenAI chunks' text content, concatenated.
pub fn openai_text(frames: &[(Option<String>, String)]) -> String {
    frames
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// The Anthropic text deltas, concatenated.
pub fn anthropic_text(frames: &[(Option<String>, String)]) -> String {
    frames
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}

pub fn user(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": text}])
}

// ------------------------------------------------------------------------------------------
// Upstream answers the edge tests share.

/// A `chat.completion` whose message is `message` and whose finish reason is `finish`.
pub fn openai_answer(message: serde_json::Value, finish: &str) -> claudette_testkit::Reply {
    claudette_testkit::Reply::json(
        200,
        serde_json::json!({
            "id": "chatcmpl-edge", "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        }),
    )
}

/// One `data:` line of a chat-completions stream.
pub fn openai_chunk(delta: serde_json::Value, finish: serde_json::Value) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-edge", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {chunk}")
}

/// A stream with one tool call (`id`, `name`, then `arguments` in a second fragment) that the
/// upstream ends with `finish_reason: "stop"`, as some OpenAI-compatible servers do.
pub fn tool_call_ending_in_stop(id: &str, name: &str, arguments: &str) -> claudette_testkit::Reply {
    use serde_json::{Value, json};
    claudette_testkit::Reply::sse(vec![
        openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ),
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
            Value::Null,
        ),
        openai_chunk(json!({}), json!("stop")),
        "data: [DONE]".to_owned(),
    ])
}

/// The JSON data of every SSE frame named `name`, in order.
pub fn event_data(frames: &[(Option<String>, String)], name: &str) -> Vec<serde_json::Value> {
    frames
        .iter()
        .filter(|(e, _)| e.as_deref() == Some(name))
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect()
}

/// A response cache that keeps every answer (`MemoryCache` minus eviction and expiry), for
/// tests of what the gateway stores and serves.
#[derive(Debug, Default)]
pub struct MapCache(Mutex<std::collections::HashMap<claudette_core::CacheKey, claudette_core::ChatResponse>>);

impl claudette_core::ResponseCache for MapCache {
    fn get(&self, key: &claudette_core::CacheKey) -> Option<claudette_core::ChatResponse> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn put(&self, key: claudette_core::CacheKey, response: &claudette_core::ChatResponse) {
        self.0.lock().unwrap().insert(key, response.clone());
    }
}

/// Anthropic's `cache_control` marker.
pub fn eph() -> serde_json::Value {
    serde_json::json!({"type": "ephemeral"})
}

/// Claude Code's streamed turn after its Read tool read `file`: the question, the call, and a
/// tool result that is `block` alone (an image or a document, carrying the turn's cache
/// breakpoint as Claude Code puts it on the last block), under a cached system prompt.
pub fn claude_code_read_loop(file: &str, block: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "model": "claude-fake",
        "max_tokens": 256,
        "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": eph()}],
        "tools": [{"name": "Read", "description": "Reads a file",
            "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": format!("What is in {file}?")}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": format!("/w/{file}")}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [block]}]}
        ]
    })
}

/// Claude's fake, to give `answers` in turn, and the gateway in front of it.
pub async fn claude_answering(
    answers: impl IntoIterator<Item = claudette_testkit::Reply>,
) -> (claudette_testkit::FakeServer, Running) {
    let claude = claudette_testkit::FakeServer::start().await;
    for answer in answers {
        claude.push(answer);
    }
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    (claude, gw)
}

/// A gateway with an OpenAI-format backend `gpt`, free (answering "from gpt"), and an
/// Anthropic one `claude` that costs: a request that cares for cost ([`BY_COST`]) goes to the
/// OpenAI one unless only Anthropic can take it.
pub async fn openai_and_claude() -> (claudette_testkit::FakeServer, claudette_testkit::FakeServer, Running) {
    let gpt = claudette_testkit::FakeServer::start().await;
    let claude = claudette_testkit::FakeServer::start().await;
    gpt.set_default(openai_answer(serde_json::json!({"role": "assistant", "content": "from gpt"}), "stop"));
    let gw = start(router(vec![
        openai(priced(openai_settings("gpt", &gpt), 0.0, 0.0)),
        anthropic(priced(anthropic_settings("claude", &claude), 3.0, 15.0)),
    ]))
    .await;
    (gpt, claude, gw)
}

/// Routing weights that choose the cheapest backend.
pub const BY_COST: [(&str, &str); 1] = [("x-claudette-weights", "cost=1")];

/// Anthropic's citation of web search result `n` (`https://news.example/{n}`, "News {n}").
pub fn web_cite(n: u32) -> serde_json::Value {
    serde_json::json!({"type": "web_search_result_location", "url": format!("https://news.example/{n}"),
           "title": format!("News {n}"), "cited_text": format!("quote {n}"), "encrypted_index": format!("EI{n}")})
}

/// A searched answer as Anthropic writes it: text with a multi-byte character (31 characters,
/// 33 bytes), the search and its encrypted results, a block citing result 1, one citing 2 and
/// 1, and an uncited sentence after them (a block of its own in a stream too).
pub fn searched_blocks() -> serde_json::Value {
    serde_json::json!([
        {"type": "text", "text": "I'll look that up — one moment."},
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "rust 2024 edition"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": [
            {"type": "web_search_result", "url": "https://news.example/1", "title": "News 1",
             "encrypted_content": "ENC1", "page_age": "2 days ago"},
            {"type": "web_search_result", "url": "https://news.example/2", "title": "News 2",
             "encrypted_content": "ENC2"}]},
        {"type": "text", "text": "The 2024 edition shipped with Rust 1.85", "citations": [web_cite(1)]},
        {"type": "text", "text": " in February 2025.", "citations": [web_cite(2), web_cite(1)]},
        {"type": "text", "text": " Editions are opt-in per crate."}
    ])
}

/// The frames of a Responses stream as (event name, JSON data), checking what every event
/// must have: the name repeated as `type`, and `sequence_number` counting up from 0; and
/// that the stream is SSE without Chat Completions' `[DONE]`.
pub fn responses_events(r: &Reply) -> Vec<(String, serde_json::Value)> {
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"), "{:?}", r.headers);
    assert!(!r.text.contains("[DONE]"), "the Responses API has no [DONE]: {}", r.text);
    let frames = r.frames();
    let mut out = Vec::with_capacity(frames.len());
    for (i, (name, data)) in frames.into_iter().enumerate() {
        let name = name.unwrap_or_else(|| panic!("frame {i} has no event name: {data}"));
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["type"], name.as_str(), "{data}");
        assert_eq!(v["sequence_number"], i as u64, "sequence numbers count from 0: {}", r.text);
        out.push((name, v));
    }
    out
}
