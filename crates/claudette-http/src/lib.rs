//! # claudette-http
//!
//! The one place Claudette does provider I/O. [`HttpBackend`] wraps any sans-IO
//! [`ProviderAdapter`] and implements [`Backend`] for it: it sends what the adapter describes
//! on a shared connection pool, attaches the key, enforces the timeouts, frames and decodes
//! streams, and measures latency and cost.
//!
//! Putting all of that in one crate means one implementation of the things providers get
//! wrong most often (reliability-spec §3): redirects never followed, no retries below the
//! router, a stream that just stops is an error and never a success, a 10 MiB line is an
//! error and not unbounded memory, and the key never reaches a log line or an error message.

mod errors;
mod stats;
mod stream;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use claudette_core::tokens::{estimate_request_tokens, estimate_tokens};
use claudette_core::{
    ApiKey, AuthScheme, Backend, BackendError, BackendInfo, BackendSettings, ChatRequest, ChatResponse,
    ErrorKind, EventStream, HttpRequest, HttpResponse, Method, Observation, Phase, ProviderAdapter,
    StreamParser, Timeouts, UsageSource,
};
use tokio::time::{Instant, timeout_at};

pub use stats::{LatencyStats, METRIC_LATENCY, METRIC_REQUESTS, METRIC_TTFT};

use crate::errors::{Redactor, body_error, loggable_url, redirect_error};
use crate::stats::{Recorder, StatsCell};
use crate::stream::{StreamSetup, event_stream};
use crate::transport::{Origin, Response};

/// Largest 2xx response body read; a larger one is a `MalformedResponse` (no chat answer is
/// that big, an endless body must not exhaust memory).
pub const MAX_RESPONSE_BODY: usize = 32 << 20;

/// Largest error body read before classification; the rest is not needed to classify and is
/// dropped with the connection.
pub const MAX_ERROR_BODY: usize = 64 << 10;

/// A [`Backend`] for any [`ProviderAdapter`], over HTTP.
///
/// Cheap to share (`Arc`), and cheap to create: the connection pool is process-wide, so every
/// backend talking to the same origin shares warm connections (TLS handshakes are the dominant
/// cost of a cold call). See the `transport` module for why the pool is Claudette's own.
pub struct HttpBackend<A: ProviderAdapter> {
    /// Shared with the streams this backend returns, which report to `observe` at their end.
    adapter: Arc<A>,
    /// `None` or empty: no auth header (local servers). Whether that is acceptable is the
    /// adapter's call in `validate`.
    api_key: Option<ApiKey>,
    timeouts: Timeouts,
    recorder: Recorder,
    redactor: Redactor,
    /// The last request URL the adapter built, parsed. An adapter builds the same URL for
    /// every call (base URL + fixed path), and parsing it (IDNA host processing included) was a
    /// visible share of a call's CPU; a different URL simply replaces the entry.
    last_url: parking_lot::Mutex<Option<(String, Arc<Target>)>>,
}

/// A parsed request URL: where to connect, and what to put in the request line and `Host`.
struct Target {
    origin: Origin,
    /// Path and query: the request-target of an HTTP/1.1 request line.
    path: String,
    /// The `Host` header's value: host, and port when the URL names one.
    host: String,
    /// For logs: no query string, no userinfo.
    loggable: String,
}

/// A request ready for the wire. `head` holds the API key: it is written and dropped, never
/// printed (no `Debug`).
struct Prepared {
    target: Arc<Target>,
    head: Vec<u8>,
    body: Vec<u8>,
}

impl<A: ProviderAdapter> fmt::Debug for HttpBackend<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.adapter.info();
        f.debug_struct("HttpBackend")
            .field("name", &info.name)
            .field("provider", &info.provider)
            .field("model", &info.model)
            .field("auth", &self.adapter.auth_scheme())
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl<A: ProviderAdapter> HttpBackend<A> {
    /// A backend on the process-wide connection pool.
    ///
    /// Takes the key and timeouts from `settings` and runs `adapter.validate()`. A missing key
    /// is not an error here: local servers need none, and the adapter's `validate` knows
    /// whether its provider does.
    pub fn new(adapter: A, settings: &BackendSettings) -> Result<Self, BackendError> {
        let name = adapter.info().name.clone();
        adapter.validate().map_err(|e| e.with_backend(name.clone()))?;
        let t = settings.timeouts;
        for (what, d) in
            [("connect", t.connect), ("first_byte", t.first_byte), ("idle", t.idle), ("total", t.total)]
        {
            if d.is_zero() {
                return Err(BackendError::config(format!("timeout `{what}` must be greater than zero"))
                    .with_backend(name));
            }
        }
        let api_key = settings.api_key.clone().filter(|k| !k.is_empty());
        Ok(Self {
            adapter: Arc::new(adapter),
            redactor: Redactor::new(api_key.clone()),
            api_key,
            timeouts: t,
            recorder: Recorder::new(name, Arc::new(StatsCell::default())),
            last_url: parking_lot::Mutex::new(None),
        })
    }

    pub fn adapter(&self) -> &A {
        &self.adapter
    }

    /// This backend as a shared trait object, for a router.
    pub fn shared(self) -> Arc<dyn Backend> {
        Arc::new(self)
    }

    /// Latency of the last successful call and time to first token of the last stream.
    pub fn latency_stats(&self) -> LatencyStats {
        self.recorder.stats.snapshot()
    }

    pub fn last_latency(&self) -> Option<Duration> {
        self.latency_stats().last_latency
    }

    pub fn last_ttft(&self) -> Option<Duration> {
        self.latency_stats().last_ttft
    }

    fn backend_name(&self) -> &str {
        &self.recorder.backend
    }

    /// Every error leaves through here: named after this backend, and without its key.
    fn finish_error(&self, error: BackendError) -> BackendError {
        self.redactor.error(error.with_backend(self.backend_name()))
    }

    /// Turns the adapter's description into an HTTP/1.1 request head with the key attached,
    /// written straight into the bytes that go on the wire, and the body.
    ///
    /// The framing headers are ours: an adapter's `host`, `content-length` or
    /// `transfer-encoding` would contradict the request we actually send, so they are left
    /// out. Names and values are checked as `http::HeaderName`/`HeaderValue` would (no CR, LF
    /// or other control bytes: an adapter can never smuggle a second header or request in).
    fn prepare(&self, http: HttpRequest) -> Result<Prepared, BackendError> {
        let target = self.target(&http.url)?;
        let body = http.body.unwrap_or_default();
        let method = match http.method {
            Method::Get => "GET",
            Method::Post => "POST",
        };
        let fields: usize = http.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut head = Vec::with_capacity(96 + target.path.len() + target.host.len() + fields);
        for part in [method, " ", &target.path, " HTTP/1.1\r\nhost: ", &target.host, "\r\n"] {
            head.extend_from_slice(part.as_bytes());
        }
        let scheme = self.adapter.auth_scheme();
        let auth_name = match (&self.api_key, &scheme) {
            (None, _) | (_, AuthScheme::None) => None,
            (Some(_), AuthScheme::Bearer) => Some("authorization"),
            (Some(_), AuthScheme::Header(name)) => Some(name.as_str()),
        };
        for (name, value) in &http.headers {
            if !is_token(name) {
                return Err(BackendError::internal(format!(
                    "the adapter built an invalid header name `{name}`"
                )));
            }
            if !claudette_core::adapter::is_header_value(value) {
                return Err(BackendError::internal(format!(
                    "the adapter built an invalid value for `{name}`"
                )));
            }
            // Ours to set; and the auth header, when we send one, replaces the adapter's.
            if ["host", "content-length", "transfer-encoding"].iter().any(|n| name.eq_ignore_ascii_case(n))
                || auth_name.is_some_and(|a| name.eq_ignore_ascii_case(a))
            {
                continue;
            }
            push_field(&mut head, name, value);
        }
        self.push_auth(&mut head, scheme)?;
        // hyper's rule: a POST always states its length, a GET only when it has a body.
        if http.method == Method::Post || !body.is_empty() {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(body.len().to_string().as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        tracing::debug!(backend = %self.backend_name(), method, url = %target.loggable, "upstream request");
        Ok(Prepared { target, head, body })
    }

    /// `url` parsed, from the one-entry cache when it is the URL of the previous call.
    fn target(&self, url: &str) -> Result<Arc<Target>, BackendError> {
        let mut last = self.last_url.lock();
        if let Some((text, target)) = last.as_ref() {
            if text == url {
                return Ok(target.clone());
            }
        }
        // The URL is not quoted in the errors: it may carry a key in its query string.
        let parsed = url::Url::parse(url)
            .map_err(|e| BackendError::config(format!("the adapter built an invalid request URL: {e}")))?;
        let origin = Origin::of(&parsed)?;
        let path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        // `url` percent-encodes paths and queries, so this holds; checked all the same, as the
        // request line is written from it verbatim.
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BackendError::config("the adapter built an invalid request path"));
        }
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(BackendError::config("the request URL has no host")),
        };
        if !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BackendError::config("the request URL's host is not a valid Host header"));
        }
        let target = Arc::new(Target { origin, path, host, loggable: loggable_url(&parsed) });
        *last = Some((url.to_owned(), target.clone()));
        Ok(target)
    }

    /// The timeouts of one call: the configured ones as the adapter adjusts them (adaptive
    /// self-hosted backends stretch them). A zero the adapter returns keeps the configured
    /// value: a zero deadline would fail every call at once.
    fn call_timeouts(&self, request: &ChatRequest) -> Timeouts {
        let c = self.timeouts;
        let t = self.adapter.timeouts(&c, request);
        let pick = |d: Duration, configured: Duration| if d.is_zero() { configured } else { d };
        Timeouts {
            connect: pick(t.connect, c.connect),
            first_byte: pick(t.first_byte, c.first_byte),
            idle: pick(t.idle, c.idle),
            total: pick(t.total, c.total),
        }
    }

    fn observe(&self, latency: Duration, ttft: Option<Duration>, error: Option<ErrorKind>, stream: bool) {
        self.adapter.observe(&Observation { latency, ttft, error, stream });
    }

    /// Appends the auth header to the request head. The only place the key is exposed: it
    /// goes into the bytes written to the socket and nowhere else (the head is dropped after
    /// the write and has no `Debug`).
    fn push_auth(&self, head: &mut Vec<u8>, scheme: AuthScheme) -> Result<(), BackendError> {
        let Some(key) = &self.api_key else {
            return Ok(());
        };
        let key = key.expose();
        if !claudette_core::adapter::is_header_value(key) {
            return Err(BackendError::config(
                "the API key contains characters not allowed in an HTTP header",
            ));
        }
        match scheme {
            AuthScheme::None => {}
            AuthScheme::Bearer => {
                head.extend_from_slice(b"authorization: Bearer ");
                head.extend_from_slice(key.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            AuthScheme::Header(name) => {
                if !is_token(&name) {
                    return Err(BackendError::internal(format!(
                        "the adapter names an invalid auth header `{name}`"
                    )));
                }
                push_field(head, &name, key);
            }
        }
        Ok(())
    }

    /// Sends and waits for the response headers, until `headers_deadline`.
    async fn execute(
        &self,
        http: HttpRequest,
        connect: Duration,
        headers_deadline: Instant,
        timeout: Duration,
    ) -> Result<Response, BackendError> {
        let Prepared { target, head, body } = self.prepare(http)?;
        match timeout_at(headers_deadline, transport::send(&target.origin, &head, &body, connect)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(BackendError::timeout(
                format!("no response headers within {} ms", timeout.as_millis()),
                Phase::AwaitingResponse,
            )),
        }
    }

    /// The error for a non-2xx response: 3xx is refused outright, the rest is read (at most
    /// [`MAX_ERROR_BODY`], until `deadline`) and classified by the adapter.
    async fn status_error(&self, mut response: Response, deadline: Instant) -> BackendError {
        let status = response.status;
        if (300..400).contains(&status) {
            return redirect_error(status);
        }
        let headers = std::mem::take(&mut response.headers);
        // A body cut short or too slow still classifies by status and headers; so does one in
        // a content coding we do not decode, whose bytes would only be garbage in the message.
        let body = if content_coding(&headers).is_some() {
            Vec::new()
        } else {
            read_body(&mut response, MAX_ERROR_BODY, deadline).await.0
        };
        drop(response);
        let mut error = self.adapter.classify_error(&HttpResponse { status, headers: &headers, body: &body });
        if error.status.is_none() {
            error.status = Some(status);
        }
        error
    }

    /// Sends `http` and reads its whole 2xx body, within the call's timeouts: headers by
    /// `first_byte`, everything by `total`. A non-2xx answer is the adapter's classified error.
    async fn fetch(&self, http: HttpRequest, t: Timeouts, started: Instant) -> Result<Fetched, BackendError> {
        let total_deadline = deadline_after(started, t.total);
        let headers_deadline = total_deadline.min(deadline_after(started, t.first_byte));
        let mut response = self.execute(http, t.connect, headers_deadline, t.first_byte.min(t.total)).await?;
        if !response.is_success() {
            return Err(self.status_error(response, total_deadline).await);
        }
        if let Some(coding) = content_coding(&response.headers) {
            return Err(coded_body(coding));
        }
        let status = response.status;
        if response.content_length.is_some_and(|n| n > MAX_RESPONSE_BODY as u64) {
            return Err(too_large());
        }
        let headers = std::mem::take(&mut response.headers);
        let (body, end) = read_body(&mut response, MAX_RESPONSE_BODY, total_deadline).await;
        drop(response);
        match end {
            BodyEnd::Complete => Ok(Fetched { status, headers, body }),
            BodyEnd::OverCap => Err(too_large()),
            BodyEnd::TimedOut => Err(BackendError::timeout(
                format!("response body not complete within the total timeout of {} ms", t.total.as_millis()),
                Phase::Body,
            )),
            BodyEnd::Failed(e) => Err(e),
        }
    }

    async fn send_inner(
        &self,
        request: &ChatRequest,
        t: Timeouts,
        started: Instant,
    ) -> Result<ChatResponse, BackendError> {
        let http = self.adapter.build_request(request, false)?;
        let Fetched { status, headers, body } = self.fetch(http, t, started).await?;
        let mut answer =
            self.adapter.parse_response(request, &HttpResponse { status, headers: &headers, body: &body })?;
        let latency = started.elapsed();
        answer.backend = self.backend_name().to_owned();
        answer.latency = latency;
        if answer.usage.source == UsageSource::Missing {
            let output = estimate_tokens(&answer.content)
                + answer.reasoning.as_deref().map_or(0, estimate_tokens)
                + answer.tool_calls.iter().map(|c| estimate_tokens(&c.arguments.to_string())).sum::<u32>();
            answer.usage = claudette_core::Usage::estimated(estimate_request_tokens(request), output);
        }
        answer.cost = self.adapter.pricing(Some(&answer.model)).cost(&answer.usage);
        self.recorder.success(status, latency);
        Ok(answer)
    }

    async fn send_stream_inner(
        &self,
        request: &ChatRequest,
        t: Timeouts,
        started: Instant,
    ) -> Result<EventStream, BackendError> {
        let total_deadline = deadline_after(started, t.total);
        let first_byte_deadline = deadline_after(started, t.first_byte);
        let headers_deadline = total_deadline.min(first_byte_deadline);
        let http = self.adapter.build_request(request, true)?;
        let response = self.execute(http, t.connect, headers_deadline, t.first_byte.min(t.total)).await?;
        if !response.is_success() {
            return Err(self.status_error(response, total_deadline).await);
        }
        if let Some(coding) = content_coding(&response.headers) {
            return Err(coded_body(coding));
        }
        let setup = StreamSetup {
            recorder: self.recorder.clone(),
            redactor: self.redactor.clone(),
            observer: self.adapter.clone(),
            status: response.status,
            pricing: self.adapter.pricing(request.model.as_deref()),
            prompt: crate::stream::PromptText::of(request),
            started,
            first_byte_deadline,
            total_deadline,
            first_byte: t.first_byte,
            idle: t.idle,
            total: t.total,
        };
        let parser = StreamParser::new(self.adapter.framing(), self.adapter.stream_decoder(request));
        Ok(event_stream(setup, response, parser))
    }

    async fn count_inner(&self, http: HttpRequest, t: Timeouts) -> Result<u32, BackendError> {
        let Fetched { status, headers, body } = self.fetch(http, t, Instant::now()).await?;
        self.adapter.parse_count_tokens(&HttpResponse { status, headers: &headers, body: &body })
    }

    /// Runs the health probe: headers within `first_byte`, body (if `read`) within `total`.
    async fn probe(&self, probe: HttpRequest) -> Result<Vec<u8>, BackendError> {
        let started = Instant::now();
        let headers_deadline = deadline_after(started, self.timeouts.first_byte);
        let total_deadline = deadline_after(started, self.timeouts.total).max(headers_deadline);
        let mut response =
            self.execute(probe, self.timeouts.connect, headers_deadline, self.timeouts.first_byte).await?;
        if !response.is_success() {
            return Err(self.status_error(response, headers_deadline).await);
        }
        if let Some(coding) = content_coding(&response.headers) {
            return Err(coded_body(coding));
        }
        let (body, end) = read_body(&mut response, MAX_RESPONSE_BODY, total_deadline).await;
        match end {
            BodyEnd::Complete => Ok(body),
            BodyEnd::OverCap => Err(too_large()),
            BodyEnd::TimedOut => Err(BackendError::timeout("model list not complete in time", Phase::Body)),
            BodyEnd::Failed(e) => Err(e),
        }
    }
}

#[async_trait]
impl<A: ProviderAdapter> Backend for HttpBackend<A> {
    fn name(&self) -> &str {
        self.backend_name()
    }

    fn info(&self) -> &BackendInfo {
        self.adapter.info()
    }

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let started = Instant::now();
        let t = self.call_timeouts(request);
        match self.send_inner(request, t, started).await {
            Ok(answer) => {
                self.observe(answer.latency, None, None, false);
                Ok(answer)
            }
            Err(e) => {
                let e = self.finish_error(e);
                self.recorder.failure(&e, false);
                self.observe(started.elapsed(), None, Some(e.kind), false);
                tracing::debug!(backend = %self.backend_name(), error = %e, "upstream call failed");
                Err(e)
            }
        }
    }

    /// The stream reports to the adapter's `observe` when it ends, not when this returns.
    async fn send_stream(&self, request: &ChatRequest) -> Result<EventStream, BackendError> {
        let started = Instant::now();
        let t = self.call_timeouts(request);
        self.send_stream_inner(request, t, started).await.map_err(|e| {
            let e = self.finish_error(e);
            self.recorder.failure(&e, false);
            self.observe(started.elapsed(), None, Some(e.kind), true);
            tracing::debug!(backend = %self.backend_name(), error = %e, "upstream stream failed to start");
            e
        })
    }

    /// The adapter's count call, on the same connection pool, key, timeouts and error
    /// classification as a completion. Deliberately left out of the latency stats, the request
    /// metric and the adapter's `observe`: a count is not a completion, and its speed says
    /// nothing about how fast the backend answers one (an adaptive adapter would learn the
    /// wrong timeouts from it).
    async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, BackendError> {
        let Some(http) = self.adapter.count_tokens_request(request) else {
            return Err(BackendError::new(
                ErrorKind::Unsupported,
                "this backend's provider offers no token count",
            )
            .with_backend(self.backend_name()));
        };
        let counted = match http {
            Ok(http) => self.count_inner(http, self.call_timeouts(request)).await,
            Err(e) => Err(e),
        };
        counted.map_err(|e| {
            let e = self.finish_error(e);
            tracing::debug!(backend = %self.backend_name(), error = %e, "upstream token count failed");
            e
        })
    }

    /// The adapter's probe (a model list, never a completion), with the first-byte timeout
    /// for the headers. No probe means nothing to check: `Ok` without I/O.
    async fn health_check(&self) -> Result<(), BackendError> {
        let Some(probe) = self.adapter.health_probe() else {
            return Ok(());
        };
        let started = Instant::now();
        let deadline = deadline_after(started, self.timeouts.first_byte);
        let response = self
            .execute(probe, self.timeouts.connect, deadline, self.timeouts.first_byte)
            .await
            .map_err(|e| self.finish_error(e))?;
        if response.is_success() {
            // The body is not needed; dropping it closes the connection, which is cheap next
            // to reading a large model list every 30 s.
            return Ok(());
        }
        Err(self.finish_error(self.status_error(response, deadline).await))
    }

    async fn available_models(&self) -> Result<Vec<String>, BackendError> {
        let Some(probe) = self.adapter.health_probe() else {
            return Err(BackendError::new(ErrorKind::Unsupported, "this backend has no model list")
                .with_backend(self.backend_name()));
        };
        let body = self.probe(probe).await.map_err(|e| self.finish_error(e))?;
        self.adapter.parse_models(&body).map_err(|e| self.finish_error(e))
    }

    fn validate_config(&self) -> Result<(), BackendError> {
        self.adapter.validate().map_err(|e| self.finish_error(e))
    }
}

/// `start + d`, saturating far in the future instead of overflowing (a configured
/// `u64::MAX` ms must not panic).
pub(crate) fn deadline_after(start: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start
        .checked_add(d.min(FAR))
        .or_else(|| start.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(start)
}

fn too_large() -> BackendError {
    BackendError::malformed(format!(
        "response body larger than {} bytes; refusing to buffer more",
        MAX_RESPONSE_BODY
    ))
}

/// The first content coding (RFC 9110 §8.4) applied to a response body, `identity` aside.
/// No request asks for one, but a request without `Accept-Encoding` accepts any (§12.5.3),
/// and nothing here decodes them: such a body must fail as compressed, not reach the adapter
/// as binary "JSON" or a stream of garbage lines.
fn content_coding(headers: &[(String, String)]) -> Option<&str> {
    headers
        .iter()
        .filter(|(name, _)| name == "content-encoding")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
}

fn coded_body(coding: &str) -> BackendError {
    // The coding is the server's text: quoted only when it is a short token.
    let named = if coding.len() <= 32 && is_token(coding) { format!("`{coding}` ") } else { String::new() };
    BackendError::malformed(format!(
        "upstream sent a body in the {named}content coding, which was not asked for and is not decoded"
    ))
    .with_phase(Phase::Body)
}

/// An RFC 9110 `token`: what a header field name may be.
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn push_field(head: &mut Vec<u8>, name: &str, value: &str) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value.as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// A whole 2xx answer.
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// How reading a body ended.
#[derive(Debug)]
enum BodyEnd {
    Complete,
    /// More than the cap arrived; the bytes up to the cap are kept.
    OverCap,
    TimedOut,
    Failed(BackendError),
}

/// Reads at most `cap` bytes of body until `deadline`. Returns what arrived either way, so an
/// error body cut short can still be classified.
///
/// What already arrived with the headers (most JSON answers) is taken without a timer; one
/// timer then covers the rest of the body, not one per read.
async fn read_body(response: &mut Response, cap: usize, deadline: Instant) -> (Vec<u8>, BodyEnd) {
    let declared = response.content_length.map_or(0, |n| usize::try_from(n).unwrap_or(cap));
    let mut body = Vec::with_capacity(declared.min(cap));
    while let Some(piece) = response.buffered() {
        if let Some(end) = take_piece(&mut body, cap, piece) {
            return (body, end);
        }
    }
    let rest = async {
        loop {
            if let Some(end) = take_piece(&mut body, cap, response.chunk().await) {
                return end;
            }
        }
    };
    let end = timeout_at(deadline, rest).await.unwrap_or(BodyEnd::TimedOut);
    (body, end)
}

/// Adds one piece of body; `Some` when the body has ended (or must end here).
fn take_piece(
    body: &mut Vec<u8>,
    cap: usize,
    piece: Result<Option<Bytes>, transport::BodyError>,
) -> Option<BodyEnd> {
    match piece {
        Ok(Some(chunk)) => {
            let room = cap - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                return Some(BodyEnd::OverCap);
            }
            body.extend_from_slice(&chunk);
            None
        }
        Ok(None) => Some(BodyEnd::Complete),
        Err(e) => Some(BodyEnd::Failed(body_error(&e, false))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_do_not_overflow() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now);
        assert_eq!(deadline_after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
    }

    #[test]
    fn backend_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<HttpBackend<Box<dyn ProviderAdapter>>>();
    }
}

/// Registers a provider at link time: the [`ProviderFactory`](claudette_core::ProviderFactory)
/// that `claudette::registry()` finds, built from the provider's `backend(settings)`
/// constructor. One line per provider crate (which must depend on `inventory`):
///
/// ```ignore
/// claudette_http::register_provider!(PROVIDER, "Ollama native /api/chat", backend);
/// ```
#[macro_export]
macro_rules! register_provider {
    ($name:expr, $description:expr, $backend:path $(,)?) => {
        const _: () = {
            fn __claudette_build(
                settings: &$crate::__private::BackendSettings,
            ) -> ::core::result::Result<$crate::__private::SharedBackend, $crate::__private::BackendError>
            {
                ::core::result::Result::Ok($backend(settings)?.shared())
            }
            ::inventory::submit! {
                $crate::__private::ProviderFactory::new($name, $description, __claudette_build)
            }
        };
    };
}

/// A provider crate's HTTP face, declared once: the backend type (its adapter on
/// [`HttpBackend`]), `pub fn backend(settings)` (the adapter built from the settings, then the
/// shared HTTP layer; errors name the backend), and the link-time registration
/// ([`register_provider!`]). The adapter must have `fn new(&BackendSettings) -> Result<Self,
/// BackendError>`.
///
/// ```ignore
/// #[cfg(feature = "http")]
/// claudette_http::http_provider! {
///     /// An Ollama backend over HTTP.
///     pub type OllamaBackend = OllamaAdapter;
///     /// Builds an Ollama backend from its settings (`model` required).
///     pub fn backend;
///     register(PROVIDER, "Ollama native /api/chat");
/// }
/// ```
#[macro_export]
macro_rules! http_provider {
    (
        $(#[$type_doc:meta])*
        pub type $backend:ident = $adapter:ty;
        $(#[$fn_doc:meta])*
        pub fn backend;
        register($name:expr, $description:expr $(,)?);
    ) => {
        $(#[$type_doc])*
        pub type $backend = $crate::HttpBackend<$adapter>;

        $(#[$fn_doc])*
        pub fn backend(
            settings: &$crate::__private::BackendSettings,
        ) -> ::core::result::Result<$backend, $crate::__private::BackendError> {
            let adapter = <$adapter>::new(settings).map_err(|e| e.with_backend(&settings.name))?;
            $crate::HttpBackend::new(adapter, settings)
        }

        $crate::register_provider!($name, $description, backend);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use claudette_core::{BackendError, BackendSettings, ProviderFactory, SharedBackend};
}
