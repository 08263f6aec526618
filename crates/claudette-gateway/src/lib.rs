//! # claudette-gateway
//!
//! Claudette as a server. Point the official OpenAI or Anthropic SDK at it, change nothing but
//! the base URL, and every request is routed, failed over, metered and explained by a
//! [`BackendRouter`].
//!
//! ## Endpoints
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI Chat Completions: JSON, or SSE `chat.completion.chunk`s with `stream_options.include_usage`; tools; `web_search_options` served by Claude's web search, its citations as `url_citation` annotations; errors in OpenAI's `{"error":{message,type,param,code}}` |
//! | `POST /v1/responses` | OpenAI Responses, stateless: JSON or the typed SSE events (`response.created` … `response.completed`); function tools and tool loops sent whole in `input`; stored state (`previous_response_id`, `conversation`, `background`), built-in tools other than web search (served by Claude's, as `web_search_call` items and `url_citation` annotations), `input_image`/`input_file` by `file_id` and audio input refused with 400; images (data: or http(s) URL) and PDFs (`input_file` with `file_data` as a data: URL, or `file_url`) in user input and function call outputs accepted; `store` accepted but not honoured |
//! | `POST /v1/messages` | Anthropic Messages: JSON, or the full SSE event sequence (`message_start` … `message_stop`, `ping`s); tools; errors in Anthropic's `{"type":"error","error":{type,message}}` |
//! | `POST /v1/messages/count_tokens` | Anthropic's token count (`?beta=true` too): `{"input_tokens": N}` for a Messages body without `max_tokens`, from the backend a message would be routed to when its provider counts (Anthropic, Gemini), else the gateway's estimate; `x-claudette-token-count: exact\|estimated` says which. A failed upstream count gives the estimate, never an error; no cost, no breaker change |
//! | `POST /api/chat` | the seeds' integration: `{"message": "…"}` → `{"response": "…"}`, errors `{"error": "…"}` |
//! | `GET /v1/models` | `auto`, every backend name and every backend's configured model (OpenAI list shape, with Anthropic's fields too) |
//! | `GET /health` | liveness; always open, even when keys are configured |
//! | `GET /ready` | 200 when at least one backend can take traffic now, else 503 |
//! | `GET /metrics` | Prometheus text: the router's `claudette_*` metrics plus the gateway's own |
//! | `GET /v1/backends` | per backend: health, breaker snapshot, performance figures |
//! | `GET /v1/costs?timeframe=24h&group_by=backend` | spend, grouped, with a monthly projection: from [`GatewayOptions::cost_source`] (a persistent ledger) when set, else what this process has seen |
//!
//! ## Choosing a backend
//!
//! `model: "auto"` (or no model) lets the router choose. A model equal to a backend name forces
//! that backend; a model equal to some backend's configured model forces the first such backend.
//! Any other model is answered locally with 404 in the client's envelope, with no upstream call
//! (reliability-spec F-23): passing an unknown model through would only buy a failed attempt
//! and a breaker-neutral 404 from a provider.
//!
//! Per-request preferences come in a header: `x-claudette-route: cost|speed|quality|balanced`,
//! or explicit weights `x-claudette-weights: cost=0.5,latency=0.3,availability=0.2,quality=0`
//! (unnamed weights are 0).
//!
//! Every routed response — JSON or SSE, success or error — carries `x-claudette-backend`,
//! `x-claudette-attempts`, `x-claudette-cost` and `x-claudette-decision`
//! ([`RoutingDecision::compact`](claudette_core::RoutingDecision::compact)). Headers precede
//! an SSE body, so for streams `x-claudette-cost` is the router's pre-call estimate and
//! `x-claudette-cost-estimated: true` says so.
//!
//! ## Honest streams
//!
//! The router commits a stream at its first content event (RT-7): failures before it fail over
//! invisibly, and a stream that cannot be opened anywhere becomes a normal HTTP error response.
//! A failure after commit ends the stream with a terminal error in the client's protocol
//! (OpenAI `data: {"error":…}` without `[DONE]`; Anthropic `event: error` without
//! `message_stop`) — never a clean end. A client that disconnects drops the response body, which
//! drops the routed stream and with it the upstream request (RT-9).
//!
//! ## Metrics
//!
//! `GET /metrics` renders everything recorded through the `metrics` facade in this process
//! (the router's and the HTTP layer's `claudette_*` series: requests, latency and TTFT
//! histograms, breaker transitions, tokens, cost) plus the gateway's own:
//! `claudette_gateway_requests_total{endpoint,status}`,
//! `claudette_gateway_request_duration_seconds{endpoint}` (streams until their end),
//! `claudette_gateway_attempts{endpoint}`, `claudette_gateway_failovers_total{endpoint}`,
//! `claudette_gateway_stream_errors_total{endpoint,kind}`,
//! `claudette_gateway_client_disconnects_total{endpoint}`,
//! `claudette_gateway_rejected_total{endpoint,reason}`, and per backend, refreshed at each
//! scrape, `claudette_breaker_state` (0 closed, 1 half-open, 2 open),
//! `claudette_gateway_backend_healthy`, `claudette_gateway_backend_cost` and
//! `claudette_gateway_backend_tokens{direction}`. The Prometheus recorder is installed once per
//! process by the first [`Gateway::new`]; if the embedding program installed another recorder
//! first, `/metrics` answers 503 and that recorder's exporter has the figures.
//!
//! ## Security
//!
//! - Gateway keys ([`KeyEntry`]) are kept only as SHA-256 digests and compared with
//!   `subtle`'s constant-time equality; `Authorization: Bearer <key>` and `x-api-key: <key>`
//!   are accepted. The 401 body is generic and never echoes what was presented.
//! - [`Gateway::new`] refuses a non-loopback listen address without keys unless
//!   [`GatewayOptions::allow_unauthenticated_non_loopback`] is set (S-08).
//! - Client credentials are never forwarded: the router builds upstream requests from backend
//!   settings only, and upstream base URLs come only from configuration — request bodies are
//!   parsed into provider-neutral types and unknown fields are ignored (S-09). The one client
//!   header that reaches an upstream is `anthropic-beta`, as checked flag names for an
//!   Anthropic backend (`oauth-…` flags, which describe the client's own credential, dropped).
//! - Request bodies are capped ([`GatewayOptions::max_body_bytes`], 413 before any upstream
//!   call), in-flight inference requests are capped ([`GatewayOptions::max_concurrency`], a
//!   fail-fast 503 with `Retry-After: 1` rather than an unbounded queue), and request logs carry
//!   method, path, status and latency only — never headers or query strings (S-02, S-10).
//! - An answer given without reading the request body (401, 429, 503, 413 for an announced
//!   size) carries `Connection: close`; the gateway then reads and discards what the client
//!   still uploads, for at most 10 s, before closing, so a client that uploads everything
//!   before reading gets that answer and not a "connection reset" its SDK would retry.
//! - Each key may have its own limits on the inference endpoints (S-10):
//!   [`KeyEntry::rpm`] (requests a minute) and [`KeyEntry::max_concurrent`] (requests in flight,
//!   streams until they end). Over either, the client gets 429 with `Retry-After` in its own
//!   envelope (`rate_limit_error`), decided before the body is read, with no upstream call: 429
//!   and not 503 because the client, not the gateway, is over its share. Limits belong to the
//!   configured entry, never to the presented string, and logs name the entry, never the key.
//! - Request shapes are capped before routing: [`GatewayOptions::max_messages`] (default 1000)
//!   and [`GatewayOptions::max_output_tokens`] (default none). Over either: 400 naming the field
//!   and the limit, no upstream call. A `max_tokens` above the cap is refused rather than
//!   clamped; a request without one is sent with the cap. Refusals count in
//!   `claudette_gateway_rejected_total{reason}` (`key_rate`, `key_concurrency`,
//!   `too_many_messages`, `max_tokens`).
//!
//! ## Use
//!
//! ```no_run
//! # async fn demo(router: std::sync::Arc<claudette_core::BackendRouter>) -> Result<(), claudette_gateway::GatewayError> {
//! use claudette_gateway::{Gateway, GatewayOptions, KeyEntry};
//!
//! let options = GatewayOptions {
//!     api_keys: vec![KeyEntry::from_plain("ci", "cl-3b9f0c…")],
//!     ..GatewayOptions::default()
//! };
//! Gateway::new(router, options)?.run().await // until SIGTERM or Ctrl-C, then drains
//! # }
//! ```
//!
//! [`Gateway::app`] gives the `axum::Router` for in-process use; [`Gateway::serve`] serves it on
//! a listener you bound, until a shutdown future of your choosing resolves.

mod anthropic;
mod auth;
mod body;
mod content;
mod error;
mod front;
mod ids;
mod limits;
mod observe;
mod openai;
mod ops;
mod respond;
mod responses;
mod routing;
mod server;
mod simple;
mod web_search;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use claudette_core::{BackendRouter, CostSource};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use auth::{KeyEntry, hash_key};
pub use error::GatewayError;

/// How the gateway listens and protects itself. A plain struct: configuration files are parsed
/// elsewhere (`claudette-config`) and mapped onto it.
#[derive(Clone)]
pub struct GatewayOptions {
    /// Address [`Gateway::run`] binds. Default `127.0.0.1:8080`: loopback unless asked otherwise.
    pub listen: SocketAddr,
    /// Accepted client keys. Empty: no authentication (allowed on loopback only, unless
    /// [`allow_unauthenticated_non_loopback`](Self::allow_unauthenticated_non_loopback)).
    pub api_keys: Vec<KeyEntry>,
    /// Permit a non-loopback listen address without keys (S-08). Off by default.
    pub allow_unauthenticated_non_loopback: bool,
    /// Largest request body accepted, in bytes. Default 10 MiB (axum's own default is 2 MB,
    /// too small for long conversations).
    pub max_body_bytes: usize,
    /// Inference requests (`/v1/chat/completions`, `/v1/responses`, `/v1/messages`, `/api/chat`,
    /// and token counts) in flight at once, streams included until they end. Past it: 503 with
    /// `Retry-After: 1`.
    /// Per-key limits are on [`KeyEntry`] ([`rpm`](KeyEntry::rpm),
    /// [`max_concurrent`](KeyEntry::max_concurrent)).
    pub max_concurrency: usize,
    /// Messages one request may carry, counted as sent upstream (a system prompt and each tool
    /// result count). Past it: 400 naming `messages`, no upstream call. Default 1000.
    pub max_messages: usize,
    /// Cap on a request's `max_tokens` (`max_completion_tokens`). `None` (the default): no cap.
    /// A request asking for more is refused with 400 naming the field and the cap, never
    /// clamped (a silently shortened answer is a wrong answer); a request without `max_tokens`
    /// is sent with the cap as its `max_tokens`.
    pub max_output_tokens: Option<u32>,
    /// After shutdown is asked for: how long in-flight requests may take to finish before
    /// their connections are closed.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's head (method, path, headers), counted
    /// from when the connection opened or answered its previous request (S-10: slow-loris
    /// protection; it also closes keep-alive connections idle that long). A connection over
    /// it is closed without an answer. A slow body is not cut by it. Default 30 s; more than
    /// a day is refused.
    pub header_read_timeout: Duration,
    /// How long `POST /v1/messages/count_tokens` waits for the backend's own count before it
    /// answers with the gateway's estimate. Clients count before they send (Claude Code does,
    /// before each request), so a provider whose count endpoint hangs would hold every request
    /// up to the backend's own timeouts. Default 5 s; zero or more than ten minutes is
    /// refused.
    pub count_tokens_timeout: Duration,
    /// Serve the admin endpoints (`/metrics`, `/v1/backends`, `/v1/costs`) to non-loopback
    /// clients too (S-08). Off by default: spend and fleet health are operator data.
    pub admin_from_any: bool,
    /// Serving threads, each with a single-threaded runtime; connections are dealt to them
    /// round-robin and a request runs start to end on one thread. 0 (the default for a
    /// library): connections run on the runtime that calls [`Gateway::serve`]. The
    /// `claudette` binary uses one per core.
    pub workers: usize,
    /// Where `GET /v1/costs` reads spend from: a persistent ledger (`claudette-ledger`), which
    /// also allows windows up to its retention. `None` (the default): the router's in-memory
    /// figures, since this process started, 31 days at most.
    pub cost_source: Option<Arc<dyn CostSource>>,
}

/// The longest [`GatewayOptions::count_tokens_timeout`] accepted.
const MAX_COUNT_TOKENS_TIMEOUT: Duration = Duration::from_secs(600);

/// The longest [`GatewayOptions::header_read_timeout`] accepted.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: Vec::new(),
            allow_unauthenticated_non_loopback: false,
            max_body_bytes: 10 * 1024 * 1024,
            max_concurrency: 1024,
            max_messages: 1000,
            max_output_tokens: None,
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            count_tokens_timeout: Duration::from_secs(5),
            admin_from_any: false,
            workers: 0,
            cost_source: None,
        }
    }
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("listen", &self.listen)
            .field("api_keys", &self.api_keys)
            .field("allow_unauthenticated_non_loopback", &self.allow_unauthenticated_non_loopback)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_messages", &self.max_messages)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("count_tokens_timeout", &self.count_tokens_timeout)
            .field("admin_from_any", &self.admin_from_any)
            .field("workers", &self.workers)
            .field("cost_source", &self.cost_source)
            .finish()
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    pub(crate) router: Arc<BackendRouter>,
    pub(crate) keys: Arc<[KeyEntry]>,
    /// Parallel to `keys`: each key's limiter, `None` for a key without limits.
    pub(crate) key_limits: Box<[Option<Arc<limits::KeyLimiter>>]>,
    pub(crate) shape: limits::Shape,
    pub(crate) inflight: Arc<Semaphore>,
    pub(crate) max_body: usize,
    pub(crate) admin_from_any: bool,
    pub(crate) auth_failures: auth::FailedAuth,
    pub(crate) cost_source: Option<Arc<dyn CostSource>>,
    pub(crate) count_tokens_timeout: Duration,
}

/// The gateway: a [`BackendRouter`] behind OpenAI- and Anthropic-compatible HTTP endpoints.
pub struct Gateway {
    options: GatewayOptions,
    state: Arc<AppState>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Gateway {
    /// Checks the options and prepares the gateway. Installs the process-wide Prometheus
    /// recorder on first use (later gateways share it).
    ///
    /// Fails with [`GatewayError::UnauthenticatedNonLoopback`] when `listen` is not a loopback
    /// address, no keys are configured and that was not explicitly allowed.
    pub fn new(router: Arc<BackendRouter>, options: GatewayOptions) -> Result<Gateway, GatewayError> {
        check_exposure(options.listen, &options)?;
        if options.max_body_bytes == 0 {
            return Err(GatewayError::InvalidOption {
                option: "max_body_bytes",
                reason: "must be > 0".into(),
            });
        }
        if options.max_concurrency == 0 {
            return Err(GatewayError::InvalidOption {
                option: "max_concurrency",
                reason: "must be > 0".into(),
            });
        }
        // Past a day it is a typo, and a deadline far enough out overflows `Instant` (a panic
        // at the first connection).
        if options.header_read_timeout.is_zero() || options.header_read_timeout > MAX_HEADER_READ_TIMEOUT {
            return Err(GatewayError::InvalidOption {
                option: "header_read_timeout",
                reason: "must be > 0 and at most a day".into(),
            });
        }
        if options.count_tokens_timeout.is_zero() || options.count_tokens_timeout > MAX_COUNT_TOKENS_TIMEOUT {
            return Err(GatewayError::InvalidOption {
                option: "count_tokens_timeout",
                reason: "must be > 0 and at most ten minutes".into(),
            });
        }
        if options.max_messages == 0 {
            return Err(GatewayError::InvalidOption { option: "max_messages", reason: "must be > 0".into() });
        }
        if options.max_output_tokens == Some(0) {
            return Err(GatewayError::InvalidOption {
                option: "max_output_tokens",
                reason: "must be > 0 (or None for no cap)".into(),
            });
        }
        // Semaphore permits are bounded by usize::MAX >> 3.
        let permits = options.max_concurrency.min(Semaphore::MAX_PERMITS);
        observe::init();
        let state = Arc::new(AppState {
            router,
            keys: options.api_keys.clone().into(),
            key_limits: options.api_keys.iter().map(limits::KeyLimiter::for_key).collect(),
            shape: limits::Shape {
                max_messages: options.max_messages,
                max_output_tokens: options.max_output_tokens,
            },
            inflight: Arc::new(Semaphore::new(permits)),
            max_body: options.max_body_bytes,
            admin_from_any: options.admin_from_any,
            auth_failures: auth::FailedAuth::default(),
            cost_source: options.cost_source.clone(),
            count_tokens_timeout: options.count_tokens_timeout,
        });
        Ok(Gateway { options, state })
    }

    /// The options this gateway was built with.
    pub fn options(&self) -> &GatewayOptions {
        &self.options
    }

    /// The router behind the gateway.
    pub fn router(&self) -> &Arc<BackendRouter> {
        &self.state.router
    }

    /// The HTTP application, for in-process tests and for embedding into a larger axum app.
    ///
    /// It answers as [`serve`](Self::serve) does, request ids included: every answer carries
    /// `x-request-id` (and `request-id` on `/v1/messages…`), and its request log and bookings
    /// name the same id. What it cannot see is the connection: serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, or the admin endpoints cannot
    /// tell a loopback client from a remote one (they then serve both) and failed
    /// authentications are not limited per address.
    pub fn app(&self) -> Router {
        let st = self.state.clone();
        let inference = Router::new()
            .route("/v1/chat/completions", post(openai::chat_completions))
            .route("/v1/responses", post(responses::responses))
            .route("/v1/messages", post(anthropic::messages))
            .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
            .route("/api/chat", post(simple::chat));
        let admin = Router::new()
            .route("/metrics", get(ops::metrics))
            .route("/v1/backends", get(ops::backends))
            .route("/v1/costs", get(ops::costs))
            .route_layer(axum::middleware::from_fn_with_state(st.clone(), auth::admin_guard));
        let ops =
            Router::new().route("/v1/models", get(ops::models)).route("/ready", get(ops::ready)).merge(admin);
        let mut protected = inference.merge(ops);
        if !st.keys.is_empty() {
            protected =
                protected.route_layer(axum::middleware::from_fn_with_state(st.clone(), auth::require_key));
        }
        protected
            .route("/health", get(ops::health))
            .fallback(ops::not_found)
            .layer(DefaultBodyLimit::max(st.max_body))
            .layer(observe::trace_layer())
            // Outermost: the request log's span (made by the trace layer) names the id.
            .layer(axum::middleware::from_fn(front::identify))
            .with_state(st)
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting (new connections
    /// are refused), lets in-flight requests finish for up to
    /// [`shutdown_grace`](GatewayOptions::shutdown_grace), closes what is left and returns.
    ///
    /// The listener's own address is checked like [`GatewayOptions::listen`]: a non-loopback
    /// listener without keys is refused unless explicitly allowed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        if let Err(e) = check_exposure(addr, &self.options) {
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()));
        }
        let front = front::Front::new(self.state.clone(), self.app());
        let limits = server::ConnLimits {
            header_read: self.options.header_read_timeout,
            grace: self.options.shutdown_grace,
        };
        server::serve(listener, front, shutdown, limits, self.options.workers).await
    }

    /// Binds [`GatewayOptions::listen`] and serves until SIGTERM or Ctrl-C, then shuts down
    /// gracefully. `Ok(())` after a clean shutdown, so a binary can exit 0.
    pub async fn run(self) -> Result<(), GatewayError> {
        let addr = self.options.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| GatewayError::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        tracing::info!(address = %local, backends = self.state.router.backend_names().len(), "claudette gateway listening");
        self.serve(listener, server::termination_signal()).await?;
        tracing::info!("claudette gateway stopped");
        Ok(())
    }
}

fn check_exposure(addr: SocketAddr, options: &GatewayOptions) -> Result<(), GatewayError> {
    if !addr.ip().is_loopback() && options.api_keys.is_empty() && !options.allow_unauthenticated_non_loopback
    {
        return Err(GatewayError::UnauthenticatedNonLoopback { addr });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let o = GatewayOptions::default();
        assert!(o.listen.ip().is_loopback());
        assert_eq!(o.max_body_bytes, 10 * 1024 * 1024);
        assert!(o.api_keys.is_empty());
        assert!(!o.allow_unauthenticated_non_loopback);
    }

    #[test]
    fn non_loopback_without_keys_is_refused() {
        let router = Arc::new(BackendRouter::default());
        let open = GatewayOptions { listen: "0.0.0.0:8080".parse().unwrap(), ..GatewayOptions::default() };
        let err = Gateway::new(router.clone(), open.clone()).unwrap_err();
        assert!(matches!(err, GatewayError::UnauthenticatedNonLoopback { .. }), "{err}");
        let keyed =
            GatewayOptions { api_keys: vec![KeyEntry::from_plain("k", "secret-key")], ..open.clone() };
        assert!(Gateway::new(router.clone(), keyed).is_ok());
        let allowed = GatewayOptions { allow_unauthenticated_non_loopback: true, ..open };
        assert!(Gateway::new(router, allowed).is_ok());
    }

    #[test]
    fn zero_limits_are_refused() {
        let router = Arc::new(BackendRouter::default());
        for (options, name) in [
            (GatewayOptions { max_messages: 0, ..GatewayOptions::default() }, "max_messages"),
            (GatewayOptions { max_output_tokens: Some(0), ..GatewayOptions::default() }, "max_output_tokens"),
        ] {
            match Gateway::new(router.clone(), options) {
                Err(GatewayError::InvalidOption { option, .. }) => assert_eq!(option, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        let capped =
            GatewayOptions { max_output_tokens: Some(1), max_messages: 1, ..GatewayOptions::default() };
        assert!(Gateway::new(router, capped).is_ok());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let o = GatewayOptions {
            api_keys: vec![KeyEntry::from_plain("team", "canary-debug-key-123")],
            ..GatewayOptions::default()
        };
        let text = format!("{o:?}");
        assert!(text.contains("team"));
        assert!(!text.contains("canary-debug-key-123"));
        assert!(!text.contains(&hex::encode(hash_key("canary-debug-key-123"))));
    }
}
