//! Metrics and request logs.
//!
//! `claudette-core` and `claudette-http` emit `claudette_*` metrics through the `metrics`
//! facade; this module installs the Prometheus recorder that collects them (once per process:
//! a global recorder can only be set once, and tests build many gateways), adds the gateway's
//! own series, and refreshes the gauges that only a scrape can keep honest (breaker state moves
//! from Open to HalfOpen by the clock, not by an event).

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Instant;

use axum::http::Request;
use claudette_core::{BackendRouter, RoutingDecision};
use metrics::SharedString;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnFailure, DefaultOnRequest, DefaultOnResponse, MakeSpan, TraceLayer};
use tracing::{Level, Span};

pub(crate) const REQUESTS: &str = "claudette_gateway_requests_total";
pub(crate) const DURATION: &str = "claudette_gateway_request_duration_seconds";
pub(crate) const ATTEMPTS: &str = "claudette_gateway_attempts";
pub(crate) const FAILOVERS: &str = "claudette_gateway_failovers_total";
pub(crate) const STREAM_ERRORS: &str = "claudette_gateway_stream_errors_total";
pub(crate) const CLIENT_DISCONNECTS: &str = "claudette_gateway_client_disconnects_total";
pub(crate) const REJECTED: &str = "claudette_gateway_rejected_total";

const LATENCY_BUCKETS: [f64; 17] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const ATTEMPT_BUCKETS: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 8.0];

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder if nobody has installed one yet. Idempotent.
pub(crate) fn init() {
    let _ = handle();
}

fn handle() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(ATTEMPTS.into()), &ATTEMPT_BUCKETS));
            let handle = match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(h)) => h,
                Ok(Err(e)) | Err(e) => {
                    // Another recorder owns the process (an embedding application's): its
                    // exporter serves the metrics, and /metrics says so.
                    tracing::warn!(error = %e, "prometheus recorder not installed; GET /metrics is unavailable");
                    return None;
                }
            };
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "Gateway requests by endpoint and HTTP status");
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Gateway request duration, streams until their end"
    );
    metrics::describe_histogram!(ATTEMPTS, "Upstream attempts per routed request");
    metrics::describe_counter!(FAILOVERS, "Attempts that moved to another backend");
    metrics::describe_counter!(STREAM_ERRORS, "Streams that ended with a terminal error after commit");
    metrics::describe_counter!(CLIENT_DISCONNECTS, "Streams the client abandoned before their end");
    metrics::describe_counter!(REJECTED, "Requests refused by the gateway's own limits");
    metrics::describe_gauge!(
        "claudette_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open"
    );
    metrics::describe_gauge!("claudette_gateway_backend_healthy", "1 when the backend can take traffic now");
    metrics::describe_gauge!(
        "claudette_gateway_backend_cost",
        "Spend per backend since start, price-table currency"
    );
    metrics::describe_gauge!(
        "claudette_gateway_backend_tokens",
        "Tokens per backend since start, by direction"
    );
}

/// The Prometheus text exposition, after refreshing per-backend gauges. `None` when another
/// recorder owns the process.
pub(crate) fn render(router: &BackendRouter) -> Option<String> {
    let h = handle()?;
    for health in router.health_statuses() {
        let name = health.backend;
        metrics::gauge!("claudette_breaker_state", "backend" => name.clone())
            .set(health.circuit_breaker_state.gauge_value());
        metrics::gauge!("claudette_gateway_backend_healthy", "backend" => name.clone())
            .set(if health.healthy { 1.0 } else { 0.0 });
        if let Some(p) = router.performance_metrics(&name) {
            metrics::gauge!("claudette_gateway_backend_cost", "backend" => name.clone()).set(p.total_cost);
            metrics::gauge!("claudette_gateway_backend_tokens", "backend" => name.clone(), "direction" => "input")
                .set(p.input_tokens as f64);
            metrics::gauge!("claudette_gateway_backend_tokens", "backend" => name, "direction" => "output")
                .set(p.output_tokens as f64);
        }
    }
    h.run_upkeep();
    Some(h.render())
}

fn status_label(status: u16) -> SharedString {
    let s: &'static str = match status {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return SharedString::from(Cow::Owned(other.to_string())),
    };
    SharedString::const_str(s)
}

/// Endpoint label for a path (auth rejections happen before routing picks a handler).
pub(crate) fn endpoint_for_path(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/messages" => "messages",
        "/api/chat" => "api_chat",
        "/v1/models" => "models",
        "/v1/backends" => "backends",
        "/v1/costs" => "costs",
        "/metrics" => "metrics",
        "/ready" => "ready",
        "/health" => "health",
        _ => "other",
    }
}

/// Counts one response.
pub(crate) fn count(endpoint: &'static str, status: u16) {
    metrics::counter!(REQUESTS, "endpoint" => endpoint, "status" => status_label(status)).increment(1);
}

/// Counts a request refused by a gateway limit (`reason`: `body_too_large`, `concurrency`).
pub(crate) fn rejected(endpoint: &'static str, reason: &'static str) {
    metrics::counter!(REJECTED, "endpoint" => endpoint, "reason" => reason).increment(1);
}

/// Duration, attempts and failovers of a finished routed request.
pub(crate) fn finished(endpoint: &'static str, started: Instant, decision: Option<&RoutingDecision>) {
    metrics::histogram!(DURATION, "endpoint" => endpoint).record(started.elapsed().as_secs_f64());
    if let Some(d) = decision {
        metrics::histogram!(ATTEMPTS, "endpoint" => endpoint).record(d.attempts.len() as f64);
        let moves = d.attempts.windows(2).filter(|w| w[0].backend != w[1].backend).count();
        if moves > 0 {
            metrics::counter!(FAILOVERS, "endpoint" => endpoint).increment(moves as u64);
        }
    }
}

/// Spans carry method and path only: no headers (keys), no query string (`?key=`) (S-02).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PathSpan;

impl<B> MakeSpan<B> for PathSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
    }
}

pub(crate) type GatewayTrace = TraceLayer<SharedClassifier<ServerErrorsAsFailures>, PathSpan>;

/// Request logs at DEBUG: start, then status and latency. Response failures (5xx) at DEBUG too:
/// routed failures are logged once, with their reason, by the handlers.
pub(crate) fn trace_layer() -> GatewayTrace {
    TraceLayer::new_for_http()
        .make_span_with(PathSpan)
        .on_request(DefaultOnRequest::new().level(Level::DEBUG))
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
}
