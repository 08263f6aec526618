//! Operator endpoints: models, health, readiness, metrics, backends, costs.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use claudette_core::costs::MAX_TIMEFRAME;
use claudette_core::{
    BackendInfo, BreakerSnapshot, GroupBy, HealthStatus, PerformanceMetrics, parse_timeframe,
};
use serde::Serialize;

use crate::error::{ApiError, Flavor};
use crate::observe;
use crate::respond::Shared;
use crate::routing::AUTO;

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode response: {e}"))
            .into_response(Flavor::OpenAi),
    }
}

#[derive(Serialize)]
struct Status<'a> {
    status: &'a str,
}

/// Liveness: the process answers. Open even when keys are configured, for load balancers.
pub(crate) async fn health() -> Response {
    json(StatusCode::OK, &Status { status: "ok" })
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
    healthy_backends: usize,
    backends: usize,
}

/// Readiness: 200 when at least one backend can take traffic now (breaker closed or probing,
/// not throttled, enabled), else 503, so a load balancer sends traffic elsewhere.
pub(crate) async fn ready(State(st): State<Shared>) -> Response {
    let statuses = st.router.health_statuses();
    let healthy = statuses.iter().filter(|h| h.healthy).count();
    let (code, status) = if healthy > 0 {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    observe::count("ready", code.as_u16());
    json(code, &Ready { status, healthy_backends: healthy, backends: statuses.len() })
}

/// Prometheus text exposition.
pub(crate) async fn metrics(State(st): State<Shared>) -> Response {
    match observe::render(&st.router) {
        Some(text) => {
            let mut resp = (StatusCode::OK, text).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics unavailable: another metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
    has_more: bool,
    first_id: Option<String>,
    last_id: Option<String>,
}

/// One model, with OpenAI's fields (`object`, `created`, `owned_by`) and Anthropic's
/// (`type`, `display_name`, `created_at`), so both SDKs' `models.list()` read it.
#[derive(Serialize)]
struct ModelEntry {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: String,
    r#type: &'static str,
    display_name: String,
    created_at: &'static str,
}

fn model_entry(id: String, owned_by: String, display_name: String) -> ModelEntry {
    ModelEntry {
        id,
        object: "model",
        created: 0,
        owned_by,
        r#type: "model",
        display_name,
        created_at: "1970-01-01T00:00:00Z",
    }
}

/// `auto`, every backend name, and every backend's configured model (each id once). These are
/// exactly the `model` values the inference endpoints accept; upstream model lists are not
/// fetched (that would cost a provider call per listing and offer models no backend is
/// configured for).
pub(crate) async fn models(State(st): State<Shared>) -> Response {
    let mut data = vec![model_entry(AUTO.into(), "claudette".into(), "auto (router's choice)".into())];
    let mut seen = std::collections::HashSet::from([AUTO.to_owned()]);
    let mut configured = Vec::new();
    for name in st.router.backend_names() {
        let Some(b) = st.router.backend(&name) else { continue };
        let info = b.info();
        if seen.insert(name.clone()) {
            data.push(model_entry(
                name.clone(),
                "claudette".into(),
                format!("backend {name} ({})", info.model),
            ));
        }
        configured.push((info.model.clone(), info.provider.clone()));
    }
    for (model, provider) in configured {
        if seen.insert(model.clone()) {
            data.push(model_entry(model.clone(), provider, model));
        }
    }
    let first_id = data.first().map(|m| m.id.clone());
    let last_id = data.last().map(|m| m.id.clone());
    observe::count("models", 200);
    json(StatusCode::OK, &ModelList { object: "list", data, has_more: false, first_id, last_id })
}

#[derive(Serialize)]
struct BackendReport {
    name: String,
    info: BackendInfo,
    health: Option<HealthStatus>,
    breaker: Option<BreakerSnapshot>,
    metrics: Option<PerformanceMetrics>,
}

#[derive(Serialize)]
struct Backends {
    backends: Vec<BackendReport>,
}

/// Per backend: settings summary, health, breaker snapshot and performance figures.
pub(crate) async fn backends(State(st): State<Shared>) -> Response {
    let router = &st.router;
    let backends = router
        .backend_names()
        .into_iter()
        .filter_map(|name| {
            let info = router.backend(&name)?.info().clone();
            Some(BackendReport {
                health: router.health_status(&name),
                breaker: router.breaker(&name).map(|b| b.snapshot()),
                metrics: router.performance_metrics(&name),
                info,
                name,
            })
        })
        .collect();
    observe::count("backends", 200);
    json(StatusCode::OK, &Backends { backends })
}

/// `?timeframe=24h&group_by=backend|model|key`: spend from the cost source (a persistent
/// ledger) when there is one, else what this process has seen. The longest window is the
/// source's retention, or the in-memory 31 days. `key` is the gateway key that authenticated
/// each request ([`claudette_core::costs::NO_KEY`] for requests without one).
pub(crate) async fn costs(State(st): State<Shared>, uri: Uri) -> Response {
    let max_timeframe = st.cost_source.as_ref().map_or(MAX_TIMEFRAME, |s| s.max_timeframe());
    let mut timeframe = Duration::from_secs(24 * 3600);
    let mut group_by = GroupBy::Backend;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "timeframe" => match parse_timeframe(&v) {
                Some(d) if !d.is_zero() && d <= max_timeframe => timeframe = d,
                // Spend older than that is not kept: a longer window would under-count.
                Some(d) if !d.is_zero() => {
                    observe::count("costs", 400);
                    return ApiError::invalid(format!(
                        "`timeframe` must be at most {}d ({}h): spend is kept that long",
                        max_timeframe.as_secs() / 86_400,
                        max_timeframe.as_secs() / 3600
                    ))
                    .with_param("timeframe")
                    .into_response(Flavor::OpenAi);
                }
                _ => {
                    observe::count("costs", 400);
                    return ApiError::invalid("`timeframe` must look like 30m, 24h, 7d or 1w")
                        .with_param("timeframe")
                        .into_response(Flavor::OpenAi);
                }
            },
            // `groupBy` is the seeds' spelling (`analyzeCosts({ groupBy })`).
            "group_by" | "groupBy" => match GroupBy::parse(&v) {
                Some(g) => group_by = g,
                None => {
                    observe::count("costs", 400);
                    return ApiError::invalid("`group_by` must be `backend`, `model` or `key`")
                        .with_param("group_by")
                        .into_response(Flavor::OpenAi);
                }
            },
            _ => {}
        }
    }
    let Some(source) = st.cost_source.clone() else {
        observe::count("costs", 200);
        return json(StatusCode::OK, &st.router.analyze_costs(timeframe, group_by));
    };
    // A ledger reads its file: off the serving thread, which other connections share.
    match tokio::task::spawn_blocking(move || source.analyze_costs(timeframe, group_by)).await {
        Ok(Ok(analysis)) => {
            observe::count("costs", 200);
            json(StatusCode::OK, &analysis)
        }
        failed => {
            // The full reason (which may name a file path) goes to the operator's log only.
            match failed {
                Ok(Err(e)) => tracing::error!(error = %e, "/v1/costs: the cost source failed"),
                Err(e) => tracing::error!(error = %e, "/v1/costs: the cost source's task failed"),
                Ok(Ok(_)) => {}
            }
            observe::count("costs", 503);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the cost ledger cannot be read now; see the gateway log",
            )
            .into_response(Flavor::OpenAi)
        }
    }
}

/// Unknown paths: 404 in the envelope the path suggests.
pub(crate) async fn not_found(uri: Uri) -> Response {
    observe::count("other", 404);
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {}", uri.path()))
        .with_code("unknown_url")
        .into_response(Flavor::for_path(uri.path()))
}
