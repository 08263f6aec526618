//! What each connection calls for each request: the inference endpoints (and the token count
//! Claude Code calls before each of them) are dispatched here, straight to their handlers;
//! everything else goes through the axum app.
//!
//! Why: on the request path, the axum router and the tower layers around it (path matching,
//! the trace layer's span and response wrapper, the connect-info extension) cost 5-7 µs of
//! CPU per request out of about 32 µs of user time for a gateway answering from memory
//! (`bench_gateway stub-gateway`, measured with and without them). The inference endpoints
//! are where the traffic is, so they skip that stack; the admin and ops endpoints keep it.
//!
//! Both paths run the same code for what matters: [`auth::check_key`] (keys, per-address
//! lockout, per-key limits) when keys are configured, then the same handler. Request logs
//! keep their shape: a DEBUG `request` span with method, path and request id only (no
//! headers, no query string: S-02) and a DEBUG event with status and latency at the end.
//!
//! Every answer of both paths, refusals included, carries the request's id
//! ([`routing::request_id`]) in `x-request-id` (and `request-id` on `/v1/messages…`, where
//! Anthropic's SDKs look), the request log's span names it, and the request is booked under
//! it: a client's complaint, a log line and a ledger row name the same request. The front
//! does that for the requests it dispatches itself; the app does it for the rest with its own
//! outermost layer, [`identify`], so that an app embedded in another axum server (without
//! this front) does it too, and no request has it done twice.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::future::Either;
use http_body::Body as _;
use tracing::Instrument;

use crate::body::{Unread, discard};
use crate::error::{ApiError, Flavor};
use crate::respond::{self, Endpoint, Shared};
use crate::{anthropic, auth, observe, openai, responses, routing, simple};

/// The inference endpoints, which the front dispatches itself.
#[derive(Debug, Clone, Copy)]
enum Inference {
    ChatCompletions,
    Messages,
    CountTokens,
    Responses,
    ApiChat,
}

impl Inference {
    fn of(request: &Request<hyper::body::Incoming>) -> Option<Inference> {
        if request.method() != Method::POST {
            return None;
        }
        match request.uri().path() {
            "/v1/chat/completions" => Some(Inference::ChatCompletions),
            "/v1/messages" => Some(Inference::Messages),
            "/v1/messages/count_tokens" => Some(Inference::CountTokens),
            "/v1/responses" => Some(Inference::Responses),
            "/api/chat" => Some(Inference::ApiChat),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Inference::ChatCompletions => "/v1/chat/completions",
            Inference::Messages => "/v1/messages",
            Inference::CountTokens => "/v1/messages/count_tokens",
            Inference::Responses => "/v1/responses",
            Inference::ApiChat => "/api/chat",
        }
    }

    fn endpoint(self) -> Endpoint {
        let path = self.path();
        Endpoint { label: observe::endpoint_for_path(path), flavor: Flavor::for_path(path) }
    }

    /// Whether answers carry Anthropic's `request-id` too.
    fn is_anthropic(self) -> bool {
        matches!(self, Inference::Messages | Inference::CountTokens)
    }

    /// Refuses what the head alone shows cannot be served, before the body is asked for.
    ///
    /// With `Expect: 100-continue` (curl over 1 KiB, some proxies) the client waits for the
    /// go-ahead, which hyper sends the moment the body is first read: reading an over-limit
    /// body only to drain it would invite the client to upload all of it for a 413.
    /// A compressed body would otherwise reach the JSON parser and come back as a baffling
    /// "not valid JSON" 400; 415 naming the encoding tells the client what to change.
    async fn handle_checked(self, st: Shared, request: Request) -> Response {
        let ep = self.endpoint();
        let expects = expects_continue(request.headers());
        if expects && content_length(request.headers()).is_some_and(|len| len > st.max_body as u64) {
            observe::rejected(ep.label, "body_too_large");
            return respond::local_error(ep, ApiError::body_too_large(st.max_body));
        }
        if let Some(encoding) = unsupported_encoding(request.headers()) {
            observe::rejected(ep.label, "content_encoding");
            let err = ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding '{encoding}' is not supported; send the request body uncompressed."
                ),
            )
            .with_code("unsupported_content_encoding");
            let resp = respond::local_error(ep, err);
            if !expects {
                // Read it (bounded) so the connection can serve the client's next request.
                discard(request.into_body(), st.max_body).await;
            }
            return resp;
        }
        self.handle(st, request).await
    }

    /// The endpoints' futures are held inline, so this future is as large as the largest of
    /// them, and every request's is moved into place whole: the two endpoints whose futures
    /// are larger than the chat endpoints' are boxed (one allocation on their own requests)
    /// rather than make every chat request move their size (measured: about 750 instructions
    /// of copying per request under `callgrind`).
    async fn handle(self, st: Shared, request: Request) -> Response {
        match self {
            Inference::ChatCompletions => openai::chat_completions(State(st), request).await,
            Inference::Messages => anthropic::messages(State(st), request).await,
            Inference::CountTokens => Box::pin(anthropic::count_tokens(State(st), request)).await,
            Inference::Responses => Box::pin(responses::responses(State(st), request)).await,
            Inference::ApiChat => simple::chat(State(st), request).await,
        }
    }
}

/// The request handler every connection shares: the gateway's state and its axum app for
/// everything else.
#[derive(Clone)]
pub(crate) struct Front {
    st: Shared,
    app: Router,
}

impl Front {
    pub(crate) fn new(st: Shared, app: Router) -> Front {
        Front { st, app }
    }

    /// Answers `request` from `peer`. `unread` is the connection's: an answer that leaves the
    /// request's body unread is marked as the connection's last.
    pub(crate) fn call(
        &self,
        request: Request<hyper::body::Incoming>,
        peer: SocketAddr,
        unread: &Unread,
    ) -> impl Future<Output = Result<Response, Infallible>> + Send + use<> {
        let inference = Inference::of(&request);
        let mut request = unread.watch(request);
        let unread = unread.clone();
        let Some(endpoint) = inference else {
            // The app identifies the request itself ([`identify`]).
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = tower::ServiceExt::oneshot(self.app.clone(), request);
            return Either::Right(async move {
                let Ok(response) = app.await;
                Ok(last_if_unread(response, &unread))
            });
        };
        let id = routing::request_id(request.headers());
        let st = self.st.clone();
        let span = tracing::debug_span!(
            "request",
            method = "POST",
            path = endpoint.path(),
            request_id = id.to_str().unwrap_or_default()
        );
        // The scope's own copy of the id shares its bytes with the one stamped on the answer.
        let scoped = id.clone();
        let answer = async move {
            let started = Instant::now();
            let mut response = if st.keys.is_empty() {
                endpoint.handle_checked(st, request).await
            } else {
                let next = st.clone();
                auth::check_key(&st, Some(peer), request, |r| endpoint.handle_checked(next, r)).await
            };
            tracing::debug!(
                status = response.status().as_u16(),
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                "finished processing request"
            );
            routing::stamp_request_id(response.headers_mut(), id, endpoint.is_anthropic());
            Ok(last_if_unread(response, &unread))
        };
        Either::Left(routing::with_request_id(scoped, answer).instrument(span))
    }
}

/// The app's outermost layer: what the front does around the requests it dispatches itself,
/// for the app's requests. Gives the request its id, runs the rest of the app as that id (the
/// request log's span, [`observe::PathSpan`], and any booking name it), puts a JSON body on a
/// bare 405, and stamps the id on the answer. Here rather than in the front so that an app
/// embedded in another axum server, without the front, answers the same.
pub(crate) async fn identify(request: Request, next: Next) -> Response {
    let id = routing::request_id(request.headers());
    let path = request.uri().path();
    let (flavor, label) = (Flavor::for_path(path), observe::endpoint_for_path(path));
    let method = request.method().clone();
    let response = routing::with_request_id(id.clone(), next.run(request)).await;
    let mut response = with_405_body(response, &method, flavor, label);
    routing::stamp_request_id(response.headers_mut(), id, matches!(flavor, Flavor::Anthropic));
    response
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The first content coding other than `identity`, if any (shortened for the message).
fn unsupported_encoding(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
        .map(|c| String::from_utf8_lossy(c.get(..40).unwrap_or(c)).into_owned())
}

/// Marks `resp` as the connection's last when the request's body was left unread: what is
/// left of it would otherwise be parsed as the next request, and the client learns from the
/// header, not from a closed socket, that it must not send another one here.
fn last_if_unread(mut resp: Response, unread: &Unread) -> Response {
    if unread.get() {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// axum answers a known path with the wrong method by an empty 405; SDKs and proxies then
/// report a body-less error. Here it gets the path's JSON envelope, keeping `Allow`.
/// No CORS: preflight `OPTIONS` gets this 405 too, since browsers must not hold gateway keys.
fn with_405_body(response: Response, method: &Method, flavor: Flavor, label: &'static str) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || response.body().size_hint().exact() != Some(0) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let allowed = allow.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
    observe::count(label, 405);
    let mut resp = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {method} is not allowed on this path; allowed: {allowed}."),
    )
    .with_code("method_not_allowed")
    .into_response(flavor);
    if let Some(allow) = allow {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    resp
}
