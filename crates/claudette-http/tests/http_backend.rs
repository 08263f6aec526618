//! `HttpBackend` over real loopback HTTP against `claudette-testkit`, one test per fault row of
//! reliability-spec §3 that belongs to the I/O layer, plus auth, usage, cost and latency.
//!
//! The adapter here is deliberately tiny test scaffolding (an OpenAI-ish chat protocol): these
//! tests are about what the I/O layer does around *any* adapter, not about OpenAI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudette_core::{
    AuthScheme, Backend, BackendError, BackendInfo, BackendSettings, BackendType, ChatRequest, ChatResponse,
    ErrorKind, EventStream, FinishReason, Frame, HttpRequest, HttpResponse, Observation, Phase, Pricing,
    ProviderAdapter, StreamDecoder, StreamEnd, StreamEvent, Timeouts, Usage, UsageSource,
};
use claudette_http::HttpBackend;
use claudette_testkit::{FakeServer, HoldServer, Reply, ResetServer, closed_port_url};
use futures::StreamExt;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Test adapter: POST {base}/chat/completions, `choices[0].message.content`, SSE `data:` chunks
// with `choices[0].delta.content`, `[DONE]` as the end marker, GET {base}/models as the probe.
// ---------------------------------------------------------------------------------------------

const CANARY: &str = "sk-canary-0123456789abcdefXYZ";

struct TestAdapter {
    info: BackendInfo,
    base: String,
    auth: AuthScheme,
    valid: bool,
    /// Replaces the configured first-byte timeout, like an adaptive adapter would.
    first_byte: Option<Duration>,
    observed: Arc<Mutex<Vec<Observation>>>,
    /// Headers added to every request, as an adapter would.
    extra_headers: Vec<(String, String)>,
    /// Offers a token count: POST {base}/count, answered `{"count": N}`.
    counts: bool,
}

impl TestAdapter {
    fn new(name: &str, base: &str) -> Self {
        Self {
            info: BackendInfo {
                name: name.to_owned(),
                provider: "test".to_owned(),
                backend_type: BackendType::SelfHosted,
                model: "fake-model".to_owned(),
                priority: 0,
                pricing: Pricing::new(1.0, 2.0),
                quality: 0.5,
                supports_streaming: true,
                supports_tools: false,
                supports_images: false,
                context_window: None,
                region: None,
                tags: Vec::new(),
                enabled: true,
            },
            base: base.trim_end_matches('/').to_owned(),
            auth: AuthScheme::Bearer,
            valid: true,
            first_byte: None,
            observed: Arc::default(),
            extra_headers: Vec::new(),
            counts: true,
        }
    }
}

fn json_body(body: &[u8]) -> Result<Value, BackendError> {
    serde_json::from_slice(body).map_err(|e| BackendError::malformed(format!("bad JSON: {e}")))
}

fn usage_of(v: &Value) -> Usage {
    match v.get("usage") {
        Some(u) if u.is_object() => Usage::reported(
            u["prompt_tokens"].as_u64().unwrap_or(0) as u32,
            u["completion_tokens"].as_u64().unwrap_or(0) as u32,
        ),
        _ => Usage::default(),
    }
}

impl ProviderAdapter for TestAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }
    fn auth_scheme(&self) -> AuthScheme {
        self.auth.clone()
    }
    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        let messages: Vec<Value> =
            request.messages.iter().map(|m| json!({"role": "user", "content": m.content})).collect();
        let mut http = HttpRequest::post_json(
            format!("{}/chat/completions", self.base),
            &json!({"model": self.info.model, "messages": messages, "stream": stream}),
        )?;
        http.headers.extend(self.extra_headers.iter().cloned());
        Ok(http)
    }
    fn parse_response(
        &self,
        _: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let v = json_body(response.body)?;
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| BackendError::malformed("no choices[0].message.content"))?;
        let mut answer =
            ChatResponse::empty("set-by-adapter", v["model"].as_str().unwrap_or(&self.info.model));
        answer.content = content.to_owned();
        answer.usage = usage_of(&v);
        answer.finish_reason = Some(FinishReason::Stop);
        Ok(answer)
    }
    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        let message = serde_json::from_slice::<Value>(response.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {}", response.status));
        BackendError::from_http(response, message)
    }
    fn stream_decoder(&self, _: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(TestDecoder { usage: Usage::default(), finish: None })
    }
    fn count_tokens_request(&self, request: &ChatRequest) -> Option<Result<HttpRequest, BackendError>> {
        let texts: Vec<&str> = request.messages.iter().map(|m| m.content.as_str()).collect();
        self.counts.then(|| HttpRequest::post_json(format!("{}/count", self.base), &json!({"texts": texts})))
    }
    fn parse_count_tokens(&self, response: &HttpResponse<'_>) -> Result<u32, BackendError> {
        let v = json_body(response.body)?;
        v["count"].as_u64().map(|n| n as u32).ok_or_else(|| BackendError::malformed("no count"))
    }
    fn health_probe(&self) -> Option<HttpRequest> {
        Some(HttpRequest::get(format!("{}/models", self.base)))
    }
    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        let v = json_body(body)?;
        Ok(v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect())
    }
    fn validate(&self) -> Result<(), BackendError> {
        if self.valid { Ok(()) } else { Err(BackendError::config("test adapter says no")) }
    }
    fn timeouts(&self, configured: &Timeouts, _: &ChatRequest) -> Timeouts {
        Timeouts { first_byte: self.first_byte.unwrap_or(configured.first_byte), ..*configured }
    }
    fn observe(&self, observation: &Observation) {
        self.observed.lock().unwrap().push(*observation);
    }
}

struct TestDecoder {
    usage: Usage,
    finish: Option<FinishReason>,
}

impl StreamDecoder for TestDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        if frame.data == "[DONE]" {
            return Ok(vec![StreamEvent::Done {
                end: StreamEnd { finish_reason: self.finish.clone(), usage: self.usage, cost: 0.0 },
            }]);
        }
        let v = json_body(frame.data.as_bytes())?;
        if let Some(e) = v.get("error") {
            return Err(BackendError::interrupted(e["message"].as_str().unwrap_or("error event").to_owned()));
        }
        if v["usage"].is_object() {
            self.usage = usage_of(&v);
        }
        if v["choices"][0]["finish_reason"].as_str() == Some("stop") {
            self.finish = Some(FinishReason::Stop);
        }
        match v["choices"][0]["delta"]["content"].as_str() {
            Some(text) if !text.is_empty() => Ok(vec![StreamEvent::text(text)]),
            _ => Ok(Vec::new()),
        }
    }
    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        Err(BackendError::interrupted("stream ended without [DONE]"))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn settings(timeouts: Timeouts) -> BackendSettings {
    BackendSettings::new("test-backend").api_key(CANARY).timeouts(timeouts)
}

fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_secs(5),
        idle: Duration::from_secs(5),
        total: Duration::from_secs(10),
    }
}

fn backend(base: &str) -> HttpBackend<TestAdapter> {
    backend_with(base, quick())
}

fn backend_with(base: &str, timeouts: Timeouts) -> HttpBackend<TestAdapter> {
    HttpBackend::new(TestAdapter::new("test-backend", base), &settings(timeouts)).unwrap()
}

fn hi() -> ChatRequest {
    ChatRequest::prompt("hello there")
}

/// Drains a stream and checks the contract: exactly one terminal event, and it is the last.
async fn drain(mut stream: EventStream) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    let terminals = events.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "exactly one terminal event: {events:?}");
    assert!(events.last().unwrap().is_terminal(), "terminal event is last: {events:?}");
    assert!(stream.next().await.is_none(), "nothing after the end");
    events
}

fn texts(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn terminal_error(events: &[StreamEvent]) -> BackendError {
    match events.last() {
        Some(StreamEvent::Error { error }) => error.clone(),
        other => panic!("expected a terminal error, got {other:?}"),
    }
}

fn done(events: &[StreamEvent]) -> StreamEnd {
    match events.last() {
        Some(StreamEvent::Done { end }) => end.clone(),
        other => panic!("expected Done, got {other:?}"),
    }
}

fn assert_no_canary(text: &str) {
    assert!(!text.contains("canary"), "key leaked: {text}");
}

// ---------------------------------------------------------------------------------------------
// Fault matrix
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn f01_refused_connect_is_transport_connect_error() {
    let b = backend(&closed_port_url().await);
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport, "{err}");
    assert_eq!(err.phase, Some(Phase::Connect));
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
    assert!(err.message.to_lowercase().contains("refused"), "{err}");
    assert!(!err.is_possibly_accepted());

    let err = b.send_stream(&hi()).await.err().unwrap();
    assert_eq!((err.kind, err.phase), (ErrorKind::Transport, Some(Phase::Connect)));
    assert!(b.last_latency().is_none(), "failures do not count as latency samples");
}

#[tokio::test]
async fn f02_hold_server_first_byte_timeout() {
    let hold = HoldServer::start().await;
    let b = backend_with(&hold.url(), Timeouts { first_byte: Duration::from_millis(300), ..quick() });
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert_eq!(err.phase, Some(Phase::AwaitingResponse));
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
    assert!(err.is_possibly_accepted());

    let err = b.send_stream(&hi()).await.err().unwrap();
    assert_eq!((err.kind, err.phase), (ErrorKind::Timeout, Some(Phase::AwaitingResponse)));
    assert!(hold.connections() >= 1);
}

#[tokio::test]
async fn f02_first_byte_timeout_also_covers_the_first_stream_frame() {
    // Headers come at once, then nothing: the first-byte timer still runs until a frame arrives.
    let server = FakeServer::start().await;
    server.push(
        Reply::chunks(
            200,
            "text/event-stream",
            vec![b": keep-alive\n\n".to_vec(), b"data: [DONE]\n\n".to_vec()],
        )
        .gap(Duration::from_secs(3)),
    );
    let b = backend_with(
        &server.v1_url(),
        Timeouts { first_byte: Duration::from_millis(300), idle: Duration::from_secs(5), ..quick() },
    );
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    let err = terminal_error(&events);
    assert_eq!((err.kind, err.phase), (ErrorKind::Timeout, Some(Phase::Body)), "{err}");
    assert!(err.message.contains("first-byte"), "{err}");
}

#[tokio::test]
async fn f04_idle_gap_ends_stream_with_timeout_error() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_stream(&["a", "b", "c"]).gap(Duration::from_secs(2)));
    let b = backend_with(&server.v1_url(), Timeouts { idle: Duration::from_millis(300), ..quick() });
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    let err = terminal_error(&events);
    assert_eq!((err.kind, err.phase), (ErrorKind::Timeout, Some(Phase::Body)), "{err}");
    assert!(err.message.contains("idle"), "{err}");
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
}

#[tokio::test]
async fn f04_total_timeout_bounds_a_trickling_stream() {
    // Every gap is shorter than the idle timeout; only the total deadline can end it.
    let server = FakeServer::start().await;
    let pieces: Vec<String> = (0..40).map(|i| format!("t{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    server.push(Reply::openai_stream(&refs).gap(Duration::from_millis(100)));
    let b = backend_with(
        &server.v1_url(),
        Timeouts { idle: Duration::from_secs(3), total: Duration::from_millis(700), ..quick() },
    );
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    let err = terminal_error(&events);
    assert_eq!((err.kind, err.phase), (ErrorKind::Timeout, Some(Phase::Body)), "{err}");
    assert!(err.message.contains("total"), "{err}");
    assert!(texts(&events).len() < pieces.len());
}

#[tokio::test]
async fn f05_reset_before_headers() {
    let reset = ResetServer::start().await;
    let b = backend(&reset.url());
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport, "{err}");
    assert_eq!(err.phase, Some(Phase::AwaitingResponse), "{err}");
    assert!(err.is_possibly_accepted());
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
    assert!(reset.connections() >= 1);
}

#[tokio::test]
async fn f06_cut_after_k_events_yields_k_then_error() {
    let server = FakeServer::start().await;
    // Frames: role, "a", "b", "c", finish, usage, [DONE]; cut after the role frame and 2 pieces.
    server.push(Reply::openai_stream(&["a", "b", "c"]).cut_after(3));
    let b = backend(&server.v1_url());
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    assert_eq!(texts(&events), ["a", "b"]);
    assert_eq!(events.len(), 3, "{events:?}");
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::StreamInterrupted, "{err}");
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
    assert!(b.last_latency().is_none(), "an interrupted stream is no latency sample");
    assert!(b.last_ttft().is_some(), "content did arrive");
}

#[tokio::test]
async fn f16_error_frame_after_tokens_is_terminal_error() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_stream_error_after(&["x", "y"]));
    let b = backend(&server.v1_url());
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    assert_eq!(texts(&events), ["x", "y"]);
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::StreamInterrupted);
    assert!(err.message.contains("upstream failed"), "{err}");
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
}

#[tokio::test]
async fn f17_no_done_is_error_not_success() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_stream_no_done(&["all", " of", " it"]));
    let b = backend(&server.v1_url());
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    assert_eq!(texts(&events).concat(), "all of it");
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Done { .. })));
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::StreamInterrupted, "{err}");
}

#[tokio::test]
async fn f18_split_chunks_same_output() {
    let reply = Reply::openai_stream(&["héllo", " 涌现", " wörld\u{1F600}"]);
    let whole = reply.body_bytes();
    let server = FakeServer::start().await;
    server.push(reply);
    server.push(Reply::chunks(200, "text/event-stream", whole.chunks(1).map(<[u8]>::to_vec).collect()));
    let b = backend(&server.v1_url());
    let unsplit = drain(b.send_stream(&hi()).await.unwrap()).await;
    let split = drain(b.send_stream(&hi()).await.unwrap()).await;
    assert_eq!(texts(&unsplit).concat(), "héllo 涌现 wörld\u{1F600}");
    assert_eq!(split, unsplit);
    assert!(matches!(split.last(), Some(StreamEvent::Done { .. })));
}

#[tokio::test]
async fn f19_malformed_json_is_error_no_panic() {
    let server = FakeServer::start().await;
    server.push(Reply::malformed_json());
    server.push(Reply::sse(vec![
        r#"data: {"choices":[{"delta":{"content":"ok"}}]}"#.to_owned(),
        r#"data: {"choices":[{"delta":{"content":"#.to_owned(),
        "data: [DONE]".to_owned(),
    ]));
    let b = backend(&server.v1_url());
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    assert_eq!(err.backend.as_deref(), Some("test-backend"));

    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    assert_eq!(texts(&events), ["ok"]);
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
}

#[tokio::test]
async fn f20_huge_line_is_capped() {
    // 4 MiB of one `data:` line with no line end, in 64 KiB chunks: must end in an error once
    // the 1 MiB line cap is passed, without buffering the rest.
    let mut chunks = vec![b"data: ".to_vec()];
    chunks.extend(std::iter::repeat_n(vec![b'a'; 64 << 10], 64));
    let server = FakeServer::start().await;
    server.push(Reply::chunks(200, "text/event-stream", chunks));
    let b = backend(&server.v1_url());
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    assert_eq!(events.len(), 1);
    let err = terminal_error(&events);
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    assert!(err.message.contains("longer than"), "{err}");
}

#[tokio::test]
async fn f24_unresolvable_host() {
    let b = backend("http://backend.invalid");
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport, "{err}");
    assert_eq!(err.phase, Some(Phase::Connect), "{err}");
    assert!(err.message.contains("dns"), "{err}");
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
}

#[tokio::test]
async fn f27_redirect_not_followed() {
    let server = FakeServer::start().await;
    // Loopback stands in for the metadata address, so that even a regression that follows the
    // redirect sends nothing off this machine.
    let location = format!("http://user:{CANARY}@127.0.0.1:9/latest/meta-data/");
    server.push(Reply::raw(307, "").header("location", &location));
    server.push(Reply::raw(302, "").header("location", &format!("{}/chat/completions", server.v1_url())));
    let b = backend(&server.v1_url());
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport, "{err}");
    assert_eq!(err.status, Some(307));
    assert!(err.message.contains("redirect"), "{err}");
    let shown = format!("{err} {err:?} {:?}", err.provider_body);
    assert!(!shown.contains("meta-data"), "{shown}");
    assert_no_canary(&shown);

    // Even a same-host redirect (which would carry the key) is not followed.
    let err = b.send_stream(&hi()).await.err().unwrap();
    assert_eq!((err.kind, err.status), (ErrorKind::Transport, Some(302)));
    assert_eq!(server.requests(), 2, "one request per call, no redirect hop");
}

// ---------------------------------------------------------------------------------------------
// Auth, secrets, classification
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bearer_auth_is_sent_and_key_never_printed() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("hi"));
    server.push(Reply::openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        &format!("Incorrect API key provided: {CANARY}."),
    ));
    let b = backend(&server.v1_url());
    b.send(&hi()).await.unwrap();
    let received = server.received();
    assert_eq!(received[0].header("authorization"), Some(format!("Bearer {CANARY}").as_str()));
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/v1/chat/completions");

    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.status, Some(401));
    assert_no_canary(&format!("{err} {err:?} {}", err.provider_body.clone().unwrap_or_default()));
    assert_no_canary(&serde_json::to_string(&err).unwrap());
    let dbg = format!("{b:?}");
    assert_no_canary(&dbg);
    assert!(dbg.contains("REDACTED"), "{dbg}");
}

#[tokio::test]
async fn named_header_auth_and_no_key_means_no_header() {
    let server = FakeServer::start().await;
    let mut adapter = TestAdapter::new("hdr", &server.v1_url());
    adapter.auth = AuthScheme::Header("x-api-key".to_owned());
    let b = HttpBackend::new(adapter, &settings(quick())).unwrap();
    b.send(&hi()).await.unwrap();

    // A local server: no key configured, so no auth header at all.
    let local = HttpBackend::new(
        TestAdapter::new("local", &server.v1_url()),
        &BackendSettings::new("local").timeouts(quick()),
    )
    .unwrap();
    local.send(&hi()).await.unwrap();

    let received = server.received();
    assert_eq!(received[0].header("x-api-key"), Some(CANARY));
    assert_eq!(received[0].header("authorization"), None);
    assert_eq!(received[1].header("authorization"), None);
    assert_eq!(received[1].header("x-api-key"), None);
}

#[tokio::test]
async fn the_request_framing_is_ours_and_adapter_headers_cannot_inject() {
    let server = FakeServer::start().await;
    let mut adapter = TestAdapter::new("head", &server.v1_url());
    adapter.extra_headers =
        [("x-custom", "1"), ("Content-Length", "999"), ("Authorization", "Bearer other"), ("Host", "evil")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    let b = HttpBackend::new(adapter, &settings(quick())).unwrap();
    b.send(&hi()).await.unwrap();
    let received = server.received();
    let r = &received[0];
    let all = |name: &str| r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count();
    assert_eq!(r.header("x-custom"), Some("1"));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {CANARY}").as_str()));
    assert_eq!(r.header("host"), Some(server.url().trim_start_matches("http://")));
    assert_eq!((all("content-length"), all("authorization"), all("host")), (1, 1, 1), "{:?}", r.headers);

    for (name, value) in [("x-evil", "1\r\nx-injected: 2"), ("bad name", "1"), ("x-nul", "a\0b")] {
        let mut adapter = TestAdapter::new("inject", &server.v1_url());
        adapter.extra_headers = vec![(name.to_owned(), value.to_owned())];
        let err = HttpBackend::new(adapter, &settings(quick())).unwrap().send(&hi()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal, "{err}");
    }
    assert_eq!(server.received().len(), 1, "nothing with an invalid header was sent");
}

#[tokio::test]
async fn non_2xx_is_classified_by_the_adapter_with_retry_hint() {
    let server = FakeServer::start().await;
    server.push(
        Reply::openai_error(429, "requests", Some("rate_limit_exceeded"), "slow down")
            .header("retry-after", "2"),
    );
    server.push(Reply::raw(503, "<html>upstream busy</html>"));
    let b = backend(&server.v1_url());
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(err.message, "slow down");
    assert_eq!(err.backend.as_deref(), Some("test-backend"));

    let err = b.send_stream(&hi()).await.err().unwrap();
    assert_eq!((err.kind, err.status), (ErrorKind::Overloaded, Some(503)));
    assert!(err.provider_body.unwrap().contains("upstream busy"));
}

#[tokio::test]
async fn validate_runs_at_construction_and_zero_timeouts_are_rejected() {
    let mut adapter = TestAdapter::new("picky", "http://127.0.0.1:9");
    adapter.valid = false;
    let err = HttpBackend::new(adapter, &settings(quick())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert_eq!(err.backend.as_deref(), Some("picky"));

    let err = HttpBackend::new(
        TestAdapter::new("zero", "http://127.0.0.1:9"),
        &settings(Timeouts { idle: Duration::ZERO, ..quick() }),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("idle"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Usage, cost, latency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cost_is_computed_from_reported_usage() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text_usage("four words right here", 1000, 500));
    server.push(Reply::openai_stream(&["a", "b", "c"]));
    let b = backend(&server.v1_url());

    let answer = b.send(&hi()).await.unwrap();
    assert_eq!(answer.content, "four words right here");
    assert_eq!(answer.backend, "test-backend");
    assert_eq!(answer.usage, Usage::reported(1000, 500));
    // 1000 × 1.0/1k + 500 × 2.0/1k
    assert!((answer.cost - 2.0).abs() < 1e-9, "{}", answer.cost);

    let end = done(&drain(b.send_stream(&hi()).await.unwrap()).await);
    assert_eq!(end.usage, Usage::reported(10, 3));
    assert!((end.cost - (10.0 * 1.0 + 3.0 * 2.0) / 1000.0).abs() < 1e-12, "{}", end.cost);
    assert_eq!(end.finish_reason, Some(FinishReason::Stop));
}

#[tokio::test]
async fn usage_is_estimated_when_the_provider_reports_none() {
    let server = FakeServer::start().await;
    // 16 bytes of content and no `usage` at all.
    server.push(Reply::json(
        200,
        json!({"model": "fake-model", "choices": [{"message": {"content": "0123456789abcdef"}}]}),
    ));
    server.push(Reply::sse(vec![
        r#"data: {"choices":[{"delta":{"content":"01234567"}}]}"#.to_owned(),
        r#"data: {"choices":[{"delta":{"content":"89abcdef"}}]}"#.to_owned(),
        "data: [DONE]".to_owned(),
    ]));
    let b = backend(&server.v1_url());
    let request = hi();
    // The same estimator the backend uses (a BPE count with the `tokenizer` feature, else
    // 4 bytes a token), so this holds in both builds.
    let input = claudette_core::tokens::estimate_request_tokens(&request);
    let output = claudette_core::tokens::estimate_tokens("0123456789abcdef");
    assert!(input > 0 && output > 0);

    let answer = b.send(&request).await.unwrap();
    assert_eq!(answer.usage, Usage::estimated(input, output));
    assert_eq!(answer.usage.source, UsageSource::Estimated);
    let expected_cost = (f64::from(input) * 1.0 + f64::from(output) * 2.0) / 1000.0;
    assert!((answer.cost - expected_cost).abs() < 1e-12);

    let end = done(&drain(b.send_stream(&request).await.unwrap()).await);
    assert_eq!(end.usage, Usage::estimated(input, output), "stream and non-stream agree");
    assert!(end.cost > 0.0);
}

#[tokio::test]
async fn latency_and_ttft_are_recorded() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("hi").delay(Duration::from_millis(50)));
    server.push(Reply::openai_stream(&["a", "b"]).delay(Duration::from_millis(50)));
    let b = backend(&server.v1_url());
    assert_eq!((b.last_latency(), b.last_ttft()), (None, None));

    let answer = b.send(&hi()).await.unwrap();
    let latency = b.last_latency().unwrap();
    assert_eq!(answer.latency, latency);
    assert!(latency >= Duration::from_millis(50), "{latency:?}");
    assert!(b.last_ttft().is_none(), "non-stream calls have no time to first token");

    drain(b.send_stream(&hi()).await.unwrap()).await;
    let ttft = b.last_ttft().unwrap();
    assert!(ttft >= Duration::from_millis(50), "{ttft:?}");
    assert!(b.last_latency().unwrap() >= ttft);
    assert_eq!(b.latency_stats().successes, 2);
}

// ---------------------------------------------------------------------------------------------
// Health checks and model lists
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_check_uses_get_models_and_never_posts() {
    let server = FakeServer::start().await;
    server.set_models(&["m1", "m2"]);
    let b = backend(&server.v1_url());
    b.health_check().await.unwrap();
    assert_eq!(b.available_models().await.unwrap(), ["m1", "m2"]);

    server.push_get(Reply::openai_error(503, "server_error", None, "down"));
    let err = b.health_check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert_eq!(err.backend.as_deref(), Some("test-backend"));

    assert_eq!(server.post_requests(), 0, "a health check never costs a completion");
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.method == "GET" && r.path == "/v1/models"), "{received:?}");
    assert_eq!(received[0].header("authorization"), Some(format!("Bearer {CANARY}").as_str()));
}

#[tokio::test]
async fn health_check_without_probe_does_no_io() {
    struct NoProbe(TestAdapter);
    impl ProviderAdapter for NoProbe {
        fn info(&self) -> &BackendInfo {
            self.0.info()
        }
        fn auth_scheme(&self) -> AuthScheme {
            AuthScheme::None
        }
        fn build_request(&self, r: &ChatRequest, s: bool) -> Result<HttpRequest, BackendError> {
            self.0.build_request(r, s)
        }
        fn parse_response(
            &self,
            r: &ChatRequest,
            h: &HttpResponse<'_>,
        ) -> Result<ChatResponse, BackendError> {
            self.0.parse_response(r, h)
        }
        fn classify_error(&self, h: &HttpResponse<'_>) -> BackendError {
            self.0.classify_error(h)
        }
        fn stream_decoder(&self, r: &ChatRequest) -> Box<dyn StreamDecoder> {
            self.0.stream_decoder(r)
        }
        fn health_probe(&self) -> Option<HttpRequest> {
            None
        }
        fn parse_models(&self, b: &[u8]) -> Result<Vec<String>, BackendError> {
            self.0.parse_models(b)
        }
    }
    // Points at a closed port: any I/O would fail.
    let b = HttpBackend::new(NoProbe(TestAdapter::new("np", &closed_port_url().await)), &settings(quick()))
        .unwrap();
    b.health_check().await.unwrap();
    assert_eq!(b.available_models().await.unwrap_err().kind, ErrorKind::Unsupported);
}

// ---------------------------------------------------------------------------------------------
// Dynamic adapters and cancellation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn boxed_dyn_adapter_works_through_shared() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("boxed"));
    let adapter: Box<dyn ProviderAdapter> = Box::new(TestAdapter::new("boxed", &server.v1_url()));
    let shared = HttpBackend::new(adapter, &settings(quick())).unwrap().shared();
    assert_eq!(shared.name(), "boxed");
    let answer = shared.send(&hi()).await.unwrap();
    assert_eq!((answer.content.as_str(), answer.backend.as_str()), ("boxed", "boxed"));
    assert!(
        (shared.estimate_cost(&hi()) - Pricing::new(1.0, 2.0).estimate(hi().estimated_input_tokens(), 256))
            .abs()
            < 1e-12
    );
}

#[tokio::test]
async fn dropping_a_stream_releases_the_connection() {
    // A stream that would take minutes. Dropping it after the first event must not hang, and
    // the backend stays usable (the pool is not wedged by the abandoned response).
    let server = FakeServer::start().await;
    server.push(Reply::openai_stream(&["first", "never"]).gap(Duration::from_secs(60)));
    server.push(Reply::openai_text("next"));
    let b = backend(&server.v1_url());
    let mut stream = b.send_stream(&hi()).await.unwrap();
    // The role frame carries no text; the first content is behind a 60 s gap, so just make
    // sure the stream is live, then drop it.
    let waited = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    assert!(waited.is_err(), "nothing should have arrived yet: {waited:?}");
    drop(stream);
    assert_eq!(b.send(&hi()).await.unwrap().content, "next");
}

// ---------------------------------------------------------------------------------------------
// Adapter hooks: per-call timeouts and observations (adaptive self-hosted backends)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn adapter_timeouts_apply_per_call_and_every_outcome_is_observed() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("slow").delay(Duration::from_secs(3)));
    server.push(Reply::openai_stream(&["a", "b"]));
    server.push(Reply::openai_text("fine"));
    let mut adapter = TestAdapter::new("adaptive", &server.v1_url());
    // Configured: 5 s to first byte. The adapter cuts it to 300 ms for every call.
    adapter.first_byte = Some(Duration::from_millis(300));
    let observed = Arc::clone(&adapter.observed);
    let b = HttpBackend::new(adapter, &settings(quick())).unwrap();

    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!((err.kind, err.phase), (ErrorKind::Timeout, Some(Phase::AwaitingResponse)), "{err}");
    assert!(err.message.contains("300 ms"), "{err}");

    let mut stream = b.send_stream(&hi()).await.unwrap();
    assert_eq!(observed.lock().unwrap().len(), 1, "a stream is observed at its end, not at its start");
    while stream.next().await.is_some() {}
    b.send(&hi()).await.unwrap();

    let seen = observed.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!((seen[0].error, seen[0].stream), (Some(ErrorKind::Timeout), false));
    assert_eq!((seen[1].error, seen[1].stream), (None, true));
    let ttft = seen[1].ttft.expect("a stream with content has a ttft");
    assert!(ttft <= seen[1].latency);
    assert_eq!((seen[2].error, seen[2].stream, seen[2].ttft), (None, false, None));
    assert_eq!(Some(seen[2].latency), b.last_latency());
}

// ---------------------------------------------------------------------------------------------
// The connection pool: reuse, stale connections, dropped streams, TLS.
// ---------------------------------------------------------------------------------------------

/// A raw HTTP/1.1 server that counts the connections it accepts and answers every request
/// with `body` (JSON or SSE by `content_type`). With `close_after_reply`, it closes each
/// connection right after its answer without saying so (no `connection: close`), like a
/// provider whose keep-alive timeout ran out while the connection sat in our pool.
struct CountingServer {
    addr: std::net::SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingServer {
    async fn start(content_type: &'static str, body: String, close_after_reply: bool) -> CountingServer {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (conns, reqs) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                conns.fetch_add(1, Ordering::SeqCst);
                let (reqs, body) = (reqs.clone(), body.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while read_request(&mut sock, &mut buf).await {
                        reqs.fetch_add(1, Ordering::SeqCst);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if close_after_reply {
                            return;
                        }
                    }
                });
            }
        });
        CountingServer { addr, connections, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn completion_json() -> String {
    json!({"choices": [{"message": {"content": "pooled"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
        .to_string()
}

fn sse_body() -> String {
    let mut s = String::new();
    for piece in ["a", "b", "c"] {
        s.push_str(&format!("data: {}\n\n", json!({"choices": [{"delta": {"content": piece}}]})));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

#[tokio::test]
async fn sequential_calls_reuse_one_connection() {
    let server = CountingServer::start("application/json", completion_json(), false).await;
    let b = backend(&server.url());
    for _ in 0..5 {
        assert_eq!(b.send(&hi()).await.unwrap().content, "pooled");
    }
    assert_eq!(server.requests(), 5);
    assert_eq!(server.connections(), 1, "every call after the first must reuse the pooled connection");
}

#[tokio::test]
async fn a_stream_read_to_its_end_gives_its_connection_back() {
    let server = CountingServer::start("text/event-stream", sse_body(), false).await;
    let b = backend(&server.url());
    for _ in 0..3 {
        let events = drain(b.send_stream(&hi()).await.unwrap()).await;
        assert_eq!(texts(&events), ["a", "b", "c"]);
        done(&events);
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_stream_dropped_early_closes_its_connection() {
    let server = CountingServer::start("text/event-stream", sse_body(), false).await;
    let b = backend(&server.url());
    let mut stream = b.send_stream(&hi()).await.unwrap();
    // Take nothing, drop the stream: the half-read connection must not go back to the pool,
    // or the next call would read the previous answer's leftovers.
    let _ = stream.next().await;
    drop(stream);
    let events = drain(b.send_stream(&hi()).await.unwrap()).await;
    assert_eq!(texts(&events), ["a", "b", "c"]);
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced_without_an_error() {
    let server = CountingServer::start("application/json", completion_json(), true).await;
    let b = backend(&server.url());
    for _ in 0..3 {
        // Give the server's close time to arrive, so the pooled connection is really stale.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(b.send(&hi()).await.unwrap().content, "pooled");
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn https_is_really_tls_and_verified() {
    // A plain-HTTP server behind an https:// URL: the client must attempt a TLS handshake and
    // fail it at connect time, never fall back to plain text.
    let server = FakeServer::start().await;
    let url = server.url().replace("http://", "https://");
    let err = backend(&url).send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport, "{err}");
    assert_eq!(err.phase, Some(Phase::Connect), "{err}");
    assert!(err.message.contains("TLS"), "{err}");
    assert_eq!(server.post_requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// Content codings: none is asked for, none is decoded.
// ---------------------------------------------------------------------------------------------

/// Reads one request (head, then `content-length` bytes of body) from `sock` and drops it from
/// `buf`, which keeps what was read beyond it. False when the client went away.
async fn read_request(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..head_end + len);
    true
}

/// `{"choices":[{"message":{"content":"zipped"}}]}`, gzip-compressed.
const GZIP_JSON: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0x4a, 0xce, 0xc8, 0xcf, 0x4c,
    0x4e, 0x2d, 0x56, 0xb2, 0x8a, 0xae, 0x56, 0xca, 0x4d, 0x2d, 0x2e, 0x4e, 0x4c, 0x4f, 0x55, 0xb2, 0xaa,
    0x56, 0x4a, 0xce, 0xcf, 0x2b, 0x49, 0xcd, 0x2b, 0x51, 0xb2, 0x52, 0xaa, 0xca, 0x2c, 0x28, 0x48, 0x4d,
    0x51, 0xaa, 0xad, 0x8d, 0xad, 0x05, 0x00, 0x97, 0x6d, 0x5d, 0x18, 0x2e, 0x00, 0x00, 0x00,
];

/// A raw HTTP/1.1 server that answers every request, on every connection, with `head` then
/// `body` (a `content-length` for the body is added to the head).
async fn raw_server(head: &'static str, body: &'static [u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_request(&mut sock, &mut buf).await {
                    let mut answer = format!("{head}content-length: {}\r\n\r\n", body.len()).into_bytes();
                    answer.extend_from_slice(body);
                    if sock.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A server may compress a body the client never asked to be compressed (RFC 9110 §12.5.3:
/// no `Accept-Encoding` means any coding is acceptable). The client decodes none, so such a
/// body must fail as what it is, not reach the adapter as binary "JSON" or a stream of
/// garbage lines; and a non-2xx answer is still classified by its status.
#[tokio::test]
async fn a_compressed_body_is_a_clear_error_not_garbage() {
    let gz = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n";
    let b = backend(&raw_server(gz, GZIP_JSON).await);
    let err = b.send(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    assert!(err.message.contains("`gzip` content coding"), "{err}");

    let sse = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nContent-Encoding: GZIP\r\n";
    let b = backend(&raw_server(sse, GZIP_JSON).await);
    let err = b.send_stream(&hi()).await.err().expect("a compressed stream does not start");
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    assert!(err.message.contains("`GZIP` content coding"), "{err}");

    let busy = "HTTP/1.1 429 Too Many Requests\r\ncontent-encoding: br\r\n";
    let err = backend(&raw_server(busy, b"\x1b\x00\xff garbage").await).send(&hi()).await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, Some(429)), "{err}");
    let body = err.provider_body.as_deref().unwrap_or("");
    assert!(!err.message.contains("garbage") && !body.contains("garbage"), "coded bytes as text: {err}");

    // `identity` is no coding at all.
    let plain = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: identity\r\n";
    let json = br#"{"choices":[{"message":{"content":"plain"}}]}"#;
    assert_eq!(backend(&raw_server(plain, json).await).send(&hi()).await.unwrap().content, "plain");
}

// ---------------------------------------------------------------------------------------------
// Token counts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_count_is_the_adapter_s_call_with_the_key_attached_and_never_leaked() {
    let server = FakeServer::start().await;
    server.push(Reply::json(200, json!({"count": 17})));
    server.push(Reply::openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        &format!("Incorrect API key provided: {CANARY}."),
    ));
    server.push(Reply::json(200, json!({"tokens": 3})));
    server.push(Reply::raw(302, "").header("location", &format!("{}/count", server.v1_url())));
    let b = backend(&server.v1_url());

    assert_eq!(b.count_tokens(&hi()).await.unwrap(), 17);
    let received = server.received();
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/v1/count"));
    assert_eq!(received[0].header("authorization"), Some(format!("Bearer {CANARY}").as_str()));
    assert_eq!(received[0].json(), json!({"texts": ["hello there"]}));

    // Errors are classified by the adapter, named after the backend, and keyless.
    let err = b.count_tokens(&hi()).await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(401)));
    assert_eq!(err.backend.as_deref(), Some("test-backend"));
    assert_no_canary(&format!("{err} {err:?} {}", err.provider_body.clone().unwrap_or_default()));
    assert_no_canary(&serde_json::to_string(&err).unwrap());
    let err = b.count_tokens(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    // No redirect is followed for a count either.
    let err = b.count_tokens(&hi()).await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Transport, Some(302)), "{err}");
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn a_token_count_is_not_a_completion_for_the_stats_or_the_adapter() {
    let server = FakeServer::start().await;
    server.push(Reply::json(200, json!({"count": 5})));
    server.push(Reply::raw(503, "busy"));
    let adapter = TestAdapter::new("counting", &server.v1_url());
    let observed = adapter.observed.clone();
    let b = HttpBackend::new(adapter, &settings(quick())).unwrap();
    assert_eq!(b.count_tokens(&hi()).await.unwrap(), 5);
    assert!(b.count_tokens(&hi()).await.is_err());
    assert_eq!(b.latency_stats(), Default::default(), "a count is no completion latency");
    assert!(observed.lock().unwrap().is_empty(), "an adaptive adapter learns nothing from counts");
}

#[tokio::test]
async fn the_token_count_times_out_like_any_call() {
    let hold = HoldServer::start().await;
    let b = backend_with(&hold.url(), Timeouts { first_byte: Duration::from_millis(150), ..quick() });
    let err = b.count_tokens(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn without_a_count_call_the_backend_says_unsupported_and_sends_nothing() {
    let server = FakeServer::start().await;
    let mut adapter = TestAdapter::new("plain", &server.v1_url());
    adapter.counts = false;
    let b = HttpBackend::new(adapter, &settings(quick())).unwrap();
    let err = b.count_tokens(&hi()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert_eq!(err.backend.as_deref(), Some("plain"));
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_boxed_adapter_keeps_its_token_count() {
    let server = FakeServer::start().await;
    server.push(Reply::json(200, json!({"count": 8})));
    let adapter: Box<dyn ProviderAdapter> = Box::new(TestAdapter::new("boxed", &server.v1_url()));
    let shared = HttpBackend::new(adapter, &settings(quick())).unwrap().shared();
    assert_eq!(shared.count_tokens(&hi()).await.unwrap(), 8);
}
