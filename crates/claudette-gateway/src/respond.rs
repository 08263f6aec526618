//! The steps every inference endpoint shares: admission (concurrency and body limits), the
//! path from a parsed request to a routed answer ([`prepare`], [`answer_json`],
//! [`answer_stream`]), local and routed error responses, JSON responses, and the SSE body that
//! turns a [`RoutedStream`] into a client protocol. An endpoint module contributes only its
//! wire shapes: how its body becomes a [`ChatRequest`], and how an answer is written back.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use claudette_core::error::scrub_secrets;
use claudette_core::{
    BackendError, ChatRequest, ChatResponse, RouteError, RouteOverrides, RoutedStream, RoutingDecision,
    StreamEvent,
};
use futures::Stream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::AppState;
use crate::body::{BodyError, read_body};
use crate::error::{ApiError, Flavor};
use crate::{limits, observe, routing};

/// Idle time after which an SSE stream gets a keep-alive (a comment for OpenAI clients, an
/// `event: ping` for Anthropic ones), so proxies and clients with read timeouts do not cut a
/// stream whose model is thinking.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);

/// Output is flushed to the client once this much is buffered, even if more events are ready.
const FLUSH_AT: usize = 16 * 1024;

/// One inference endpoint: its metrics label and error envelope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint {
    pub(crate) label: &'static str,
    pub(crate) flavor: Flavor,
}

/// An admitted request: a concurrency permit, held until the response (or stream) ends, and
/// its body.
pub(crate) struct Admitted {
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) body: Bytes,
    pub(crate) started: Instant,
}

/// Takes a concurrency permit (fail fast: 503 + `Retry-After: 1` when none is free, so load is
/// shed instead of queued without bound) and reads the body under the size limit.
pub(crate) async fn admit(st: &AppState, ep: Endpoint, body: Body) -> Result<Admitted, Response> {
    let started = Instant::now();
    let Ok(permit) = st.inflight.clone().try_acquire_owned() else {
        observe::rejected(ep.label, "concurrency");
        return Err(local_error(ep, ApiError::overloaded()));
    };
    match read_body(body, st.max_body).await {
        Ok(body) => Ok(Admitted { permit, body, started }),
        Err(BodyError::TooLarge) => {
            observe::rejected(ep.label, "body_too_large");
            Err(local_error(ep, ApiError::body_too_large(st.max_body)))
        }
        Err(BodyError::Read) => Err(local_error(ep, ApiError::invalid("could not read the request body"))),
    }
}

/// Parses a JSON body, answering 400 in the endpoint's envelope when it is not valid.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(ep: Endpoint, body: &'a [u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        local_error(ep, ApiError::invalid(format!("request body is not valid JSON for this endpoint: {e}")))
    })
}

/// An error decided before routing: no upstream call was made.
pub(crate) fn local_error(ep: Endpoint, err: ApiError) -> Response {
    observe::count(ep.label, err.status.as_u16());
    let mut resp = err.into_response(ep.flavor);
    routing::explain_local(resp.headers_mut());
    resp
}

/// A request the router could not serve.
pub(crate) fn routed_error(ep: Endpoint, started: Instant, err: &RouteError) -> Response {
    let api = ApiError::from_backend(&err.error);
    let status = api.status.as_u16();
    tracing::warn!(
        endpoint = ep.label,
        status,
        attempts = err.decision.attempts.len(),
        error = %scrub_secrets(&err.error.to_string()),
        "request failed"
    );
    observe::count(ep.label, status);
    observe::finished(ep.label, started, Some(&err.decision));
    let mut resp = api.into_response(ep.flavor);
    routing::explain(resp.headers_mut(), routing::last_backend(&err.decision), 0.0, false, &err.decision);
    resp
}

/// A request ready for the router: admitted, parsed into the neutral shape, within the
/// request limits, with its routing preferences and its model resolved. `extra` is what the
/// endpoint kept from its own request for the answer (stream flags).
pub(crate) struct Prepared<X> {
    admitted: Admitted,
    request: ChatRequest,
    overrides: RouteOverrides,
    pub(crate) extra: X,
}

/// The front half every inference endpoint shares. `neutral` turns the body into the neutral
/// request, the model or backend the client named (if any), and the endpoint's `extra`; it
/// answers in the endpoint's envelope itself when the body is not acceptable. Every refusal
/// here happens before any upstream call.
pub(crate) async fn prepare<X>(
    st: &AppState,
    ep: Endpoint,
    request: axum::extract::Request,
    neutral: impl FnOnce(&[u8]) -> Result<(ChatRequest, Option<String>, X), Response>,
) -> Result<Prepared<X>, Response> {
    // The request itself rather than a `HeaderMap` extractor, which clones every header.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let admitted = admit(st, ep, body).await?;
    let (mut request, target, extra) = neutral(&admitted.body)?;
    // The id the answer carries (the front's), so the bookings of this request name it.
    request.request_id = Some(routing::request_id_for(headers));
    // Whose request it is: cached answers are never shared between keys (S-11).
    request.tenant = crate::auth::tenant(st);
    limits::check_request(st, ep, &mut request)?;
    let overrides = routing::overrides(headers).map_err(|e| local_error(ep, e))?;
    routing::resolve_model(&st.router, target.as_deref(), &mut request).map_err(|e| local_error(ep, e))?;
    Ok(Prepared { admitted, request, overrides, extra })
}

/// Routes a prepared request and answers with `body(answer)` as JSON.
pub(crate) async fn answer_json<X>(
    st: &AppState,
    ep: Endpoint,
    p: Prepared<X>,
    body: impl FnOnce(&ChatResponse) -> Vec<u8>,
) -> Response {
    match st.router.route_request_with(&p.request, p.overrides).await {
        Ok(resp) => {
            let resp = match ep.flavor {
                // Anthropic's clients send a paused turn back themselves.
                Flavor::Anthropic => resp,
                Flavor::OpenAi | Flavor::Simple => go_on(st, &p, resp).await,
            };
            let bytes = body(&resp);
            json_ok(ep, p.admitted.started, bytes, &resp.backend, resp.cost, resp.decision.as_ref())
        }
        Err(e) => routed_error(ep, p.admitted.started, &e),
    }
}

/// The most times a paused turn is sent back for a client that cannot: Anthropic pauses a
/// server-tool turn after about ten tool iterations, so each continuation is a long turn of
/// its own.
const MAX_CONTINUATIONS: usize = 3;

/// The whole turn, for a client whose protocol has no paused answer to send back (OpenAI's
/// formats, the seeds' `/api/chat`): a turn Anthropic paused ([`ChatResponse::is_paused`],
/// a long web search) is sent back as it is, as Anthropic asks, and the answers that go on
/// with it join it. Served paused, the client would take half an answer for a whole one. A
/// continuation that fails leaves the answer as far as it got (logged); it is already paid.
async fn go_on<X>(st: &AppState, p: &Prepared<X>, mut resp: ChatResponse) -> ChatResponse {
    let mut request = None;
    let asked = p.request.messages.len();
    for _ in 0..MAX_CONTINUATIONS {
        if !resp.is_paused() {
            break;
        }
        // The question, then the turn so far, whole.
        let next = request.get_or_insert_with(|| p.request.clone());
        next.messages.truncate(asked);
        next.messages.push(resp.to_turn());
        match st.router.route_request_with(next, p.overrides).await {
            Ok(more) => resp = resp.continued_by(more),
            Err(e) => {
                let error = scrub_secrets(&e.error.to_string());
                tracing::warn!(backend = %resp.backend, %error, "a paused turn could not go on");
                break;
            }
        }
    }
    resp
}

/// Routes a prepared request as a stream and answers with SSE from `encoder(model)`, where
/// `model` is the one the stream reports: the request's override, else the serving backend's.
pub(crate) async fn answer_stream<X, E: Encoder>(
    st: &AppState,
    ep: Endpoint,
    p: Prepared<X>,
    encoder: impl FnOnce(String) -> E,
) -> Response {
    match st.router.route_stream_with(&p.request, p.overrides).await {
        Ok(s) => {
            let model = p
                .request
                .model
                .clone()
                .or_else(|| st.router.backend(s.backend()).map(|b| b.info().model.clone()))
                .unwrap_or_else(|| s.backend().to_owned());
            sse_ok(ep, p.admitted, s, encoder(model))
        }
        Err(e) => routed_error(ep, p.admitted.started, &e),
    }
}

/// Headers of a successful answer: its content headers, the routing explanation (with
/// `x-claudette-cache` when there is a cache) and the request id the front adds (two on
/// `/v1/messages`).
const ANSWER_HEADERS: usize = 12;

/// A successful JSON answer with its routing headers.
pub(crate) fn json_ok(
    ep: Endpoint,
    started: Instant,
    body: Vec<u8>,
    backend: &str,
    cost: f64,
    decision: Option<&RoutingDecision>,
) -> Response {
    observe::count(ep.label, 200);
    observe::finished(ep.label, started, decision);
    let mut resp = Response::new(Body::from(body));
    // Room for every header written here: the default map grows on the sixth.
    *resp.headers_mut() = HeaderMap::with_capacity(ANSWER_HEADERS);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let empty = RoutingDecision::default();
    routing::explain(h, backend, cost, false, decision.unwrap_or(&empty));
    resp
}

/// Turns stream events into one client protocol's SSE frames.
pub(crate) trait Encoder: Send + Unpin + 'static {
    /// Appends the frames for `ev` to `out`. Returns true when the stream is over (a terminal
    /// event, or one the protocol cannot carry, which the encoder reported as an error).
    fn event(&mut self, ev: StreamEvent, out: &mut Vec<u8>) -> bool;
    /// Appends a keep-alive frame.
    fn keepalive(&mut self, out: &mut Vec<u8>);
}

/// A committed stream as an SSE response: status 200, routing headers (cost estimated), body.
pub(crate) fn sse_ok<E: Encoder>(
    ep: Endpoint,
    admitted: Admitted,
    stream: RoutedStream,
    encoder: E,
) -> Response {
    observe::count(ep.label, 200);
    let mut resp = Response::new(Body::empty());
    *resp.headers_mut() = HeaderMap::with_capacity(ANSWER_HEADERS);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // A replayed answer costs exactly nothing; a live one's cost is known only at its end.
    let replay = stream.is_cache_hit();
    stream.with_decision(|decision| {
        let backend = stream.backend();
        let estimate =
            decision.candidates.iter().find(|c| c.backend == backend).map_or(0.0, |c| c.estimated_cost);
        routing::explain(h, backend, estimate, !replay, decision);
    });
    let body = SseBody {
        stream,
        encoder,
        keepalive: None,
        last_write: tokio::time::Instant::now(),
        finished: false,
        endpoint: ep.label,
        started: admitted.started,
        _permit: admitted.permit,
    };
    *resp.body_mut() = Body::from_stream(body);
    resp
}

/// The SSE body. Dropping it (the client went away) drops the routed stream, which cancels the
/// upstream request (RT-9) and leaves the breaker untouched.
struct SseBody<E> {
    stream: RoutedStream,
    encoder: E,
    /// Created the first time the stream waits, so streams that never wait cost no timer.
    keepalive: Option<Pin<Box<Sleep>>>,
    /// Tokio's clock, like the timer's.
    last_write: tokio::time::Instant,
    finished: bool,
    endpoint: &'static str,
    started: Instant,
    _permit: OwnedSemaphorePermit,
}

impl<E: Encoder> SseBody<E> {
    fn finish(&mut self) {
        self.finished = true;
        let (endpoint, started) = (self.endpoint, self.started);
        self.stream.with_decision(|d| observe::finished(endpoint, started, Some(d)));
    }

    /// Whether a keep-alive is due; registers the timer's waker otherwise.
    fn keepalive_due(&mut self, cx: &mut Context<'_>) -> bool {
        let last_write = self.last_write;
        let timer =
            self.keepalive.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(last_write + KEEPALIVE)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = last_write + KEEPALIVE;
            let now = tokio::time::Instant::now();
            if now >= due {
                timer.as_mut().reset(now + KEEPALIVE);
                // Register the waker for the next one.
                let _ = timer.as_mut().poll(cx);
                return true;
            }
            // Data went out since the timer was set: wait for the rest of the idle period.
            timer.as_mut().reset(due);
        }
    }
}

impl<E: Encoder> Stream for SseBody<E> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        // A Vec, not a BytesMut: serde_json writes many small slices, and Vec's io::Write is
        // the cheapest sink for them; Bytes::from(Vec) takes it without a copy. Room for a
        // dozen events: a read that brings many (a fast server) then costs no reallocation.
        let mut out = Vec::with_capacity(4096);
        // Coalesce events that are already available into one write.
        loop {
            match Pin::new(&mut this.stream).poll_next(cx) {
                Poll::Ready(Some(ev)) => {
                    if let StreamEvent::Error { error } = &ev {
                        note_stream_error(this.endpoint, this.stream.backend(), error);
                    }
                    if this.encoder.event(ev, &mut out) {
                        this.finish();
                        break;
                    }
                    if out.len() >= FLUSH_AT {
                        break;
                    }
                }
                Poll::Ready(None) => {
                    // The router guarantees a terminal event; never end a stream silently anyway.
                    let error = BackendError::interrupted("stream ended without a terminal event")
                        .with_backend(this.stream.backend());
                    note_stream_error(this.endpoint, this.stream.backend(), &error);
                    this.encoder.event(StreamEvent::Error { error }, &mut out);
                    this.finish();
                    break;
                }
                Poll::Pending => {
                    if out.is_empty() {
                        if !this.keepalive_due(cx) {
                            return Poll::Pending;
                        }
                        this.encoder.keepalive(&mut out);
                    }
                    break;
                }
            }
        }
        this.last_write = tokio::time::Instant::now();
        Poll::Ready(Some(Ok(Bytes::from(out))))
    }
}

impl<E> Drop for SseBody<E> {
    fn drop(&mut self) {
        if !self.finished {
            metrics::counter!(observe::CLIENT_DISCONNECTS, "endpoint" => self.endpoint).increment(1);
            observe::finished(self.endpoint, self.started, Some(&self.stream.decision()));
            tracing::debug!(
                endpoint = self.endpoint,
                backend = self.stream.backend(),
                "client left mid-stream; upstream cancelled"
            );
        }
    }
}

fn note_stream_error(endpoint: &'static str, backend: &str, error: &BackendError) {
    metrics::counter!(observe::STREAM_ERRORS, "endpoint" => endpoint, "kind" => error.kind.as_str())
        .increment(1);
    tracing::warn!(endpoint, backend, error = %scrub_secrets(&error.to_string()), "stream failed after commit");
}

/// Appends `data: <json>\n\n`.
pub(crate) fn data_frame<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    json_into(out, value);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <json>\n\n`.
pub(crate) fn event_frame<T: serde::Serialize>(out: &mut Vec<u8>, name: &str, value: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    json_into(out, value);
    out.extend_from_slice(b"\n\n");
}

/// Appends `s` as a JSON string literal, quoted and escaped.
///
/// `serde_json` escapes only `"`, `\\` and control characters, so a string without them is
/// written as it is; that check is one pass the compiler vectorises, where `serde_json` looks
/// every byte up in a table (most strings of an answer, and all of its keys, need no escape).
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    let escape = s.bytes().fold(false, |any, b| any | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escape {
        json_into(out, &s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Appends `n` in decimal, as `serde_json` writes it.
pub(crate) fn json_uint(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn json_into<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing plain structs into memory cannot fail; if it ever did, send valid JSON.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"{}");
    }
}

/// Shared state for a handler.
pub(crate) type Shared = Arc<AppState>;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use claudette_core::{
        Backend, BackendError, BackendInfo, BackendRouter, BackendType, ChatRequest, ChatResponse,
        EventStream, Pricing, StreamEvent,
    };
    use futures::StreamExt;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::openai::OpenAiEncoder;

    /// Sends one text event, then nothing, ever.
    struct Silent {
        info: BackendInfo,
    }

    #[async_trait::async_trait]
    impl Backend for Silent {
        fn info(&self) -> &BackendInfo {
            &self.info
        }
        async fn send(&self, _: &ChatRequest) -> Result<ChatResponse, BackendError> {
            Err(BackendError::internal("stream only"))
        }
        async fn send_stream(&self, _: &ChatRequest) -> Result<EventStream, BackendError> {
            Ok(Box::pin(
                futures::stream::iter(vec![StreamEvent::text("a")]).chain(futures::stream::pending()),
            ))
        }
        async fn health_check(&self) -> Result<(), BackendError> {
            Ok(())
        }
        async fn available_models(&self) -> Result<Vec<String>, BackendError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_streams_get_keepalives() {
        let router = BackendRouter::default();
        let info = BackendInfo {
            name: "silent".into(),
            provider: "test".into(),
            backend_type: BackendType::SelfHosted,
            model: "m".into(),
            priority: 0,
            pricing: Pricing::FREE,
            quality: 0.5,
            supports_streaming: true,
            supports_tools: false,
            supports_images: false,
            context_window: None,
            region: None,
            tags: Vec::new(),
            enabled: true,
        };
        router.register_backend(Arc::new(Silent { info })).unwrap();
        let stream = router.route_stream(&ChatRequest::prompt("x")).await.unwrap();
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let mut body = SseBody {
            stream,
            encoder: OpenAiEncoder::new("m".into(), false),
            keepalive: None,
            last_write: tokio::time::Instant::now(),
            finished: false,
            endpoint: "test",
            started: Instant::now(),
            _permit: permit,
        };
        let first = body.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("\"content\":\"a\""));
        let before = tokio::time::Instant::now();
        for _ in 0..2 {
            let ping = tokio::time::timeout(KEEPALIVE * 2, body.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(&ping[..], b": keep-alive\n\n");
        }
        let waited = tokio::time::Instant::now() - before;
        assert!(waited >= KEEPALIVE * 2 && waited < KEEPALIVE * 3, "{waited:?}");
    }
}
