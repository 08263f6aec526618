//! Between the client and the router: which backend a `model` means, per-request routing
//! preferences, the request's id, and the `x-claudette-*` headers that explain every routed
//! response.

use std::future::Future;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use claudette_core::{
    BackendRouter, CacheMode, ChatRequest, OptimizationTarget, RouteOverrides, RouterOptions,
    RoutingDecision, Weights,
};

use crate::error::ApiError;

pub(crate) const BACKEND: HeaderName = HeaderName::from_static("x-claudette-backend");
pub(crate) const ATTEMPTS: HeaderName = HeaderName::from_static("x-claudette-attempts");
pub(crate) const COST: HeaderName = HeaderName::from_static("x-claudette-cost");
pub(crate) const COST_ESTIMATED: HeaderName = HeaderName::from_static("x-claudette-cost-estimated");
pub(crate) const DECISION: HeaderName = HeaderName::from_static("x-claudette-decision");
/// What the response cache did (`hit`, `miss`, `bypass`) on answers of a router with a cache;
/// on a request, what it may do (`no-cache`, `no-store`).
pub(crate) const CACHE: HeaderName = HeaderName::from_static("x-claudette-cache");
const ROUTE: HeaderName = HeaderName::from_static("x-claudette-route");
const WEIGHTS: HeaderName = HeaderName::from_static("x-claudette-weights");

/// The request id header: the client's (a proxy's) when it sends a sane one, echoed on every
/// answer; OpenAI's SDKs read it as the request id.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The same id under the name Anthropic's SDKs read (`_request_id`), on `/v1/messages` answers.
pub(crate) const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// The longest client id kept: longer ones are replaced, not cut, so that an id is always
/// either exactly the client's or entirely ours.
const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    /// The id of the request being answered, set around the whole answer (by the front on the
    /// inference endpoints, by the app's own layer, `front::identify`, on the rest), so that
    /// [`request_id_for`] and the request log's span give the one the response carries
    /// without any handler's signature having to pass it along (and without a
    /// request-extension map to allocate).
    static CURRENT_ID: HeaderValue;
}

/// The id of the request with `headers`: the client's own `x-request-id` when it is 1–128
/// visible ASCII characters (operators' proxies set one to follow a request through their
/// logs), else a new one. Anything else is replaced, never echoed: it would go into our
/// logs, the ledger and the answer's headers.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(REQUEST_ID) {
        Some(id) if is_sane_id(id.as_bytes()) => id.clone(),
        _ => new_request_id(),
    }
}

fn is_sane_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    // The id's own buffer becomes the header's bytes, without a copy.
    HeaderValue::from_maybe_shared(Bytes::from(crate::ids::new_id("req_")))
        .unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
}

/// Runs `answer` as the request `id`: what it prepares is booked under that id.
pub(crate) fn with_request_id<F: Future>(id: HeaderValue, answer: F) -> impl Future<Output = F::Output> {
    CURRENT_ID.scope(id, answer)
}

/// Calls `f` with the id of the request being answered, when [`with_request_id`] set one.
pub(crate) fn with_current_id<R>(f: impl FnOnce(&str) -> R) -> Option<R> {
    CURRENT_ID.try_with(|id| id.to_str().ok().map(f)).ok().flatten()
}

/// The id a request being prepared is booked under: the one its answer carries. Outside any
/// [`with_request_id`] (a handler called by neither the front nor the app), the one
/// [`request_id`] finds or makes, so a booking is never without an id.
pub(crate) fn request_id_for(headers: &HeaderMap) -> String {
    with_current_id(str::to_owned)
        .unwrap_or_else(|| request_id(headers).to_str().unwrap_or_default().to_owned())
}

/// Adds the request id to an answer: `x-request-id`, and `request-id` too for `anthropic`.
pub(crate) fn stamp_request_id(headers: &mut HeaderMap, id: HeaderValue, anthropic: bool) {
    if anthropic {
        headers.insert(ANTHROPIC_REQUEST_ID, id.clone());
    }
    headers.insert(REQUEST_ID, id);
}

/// The model name that lets the router choose.
pub(crate) const AUTO: &str = "auto";

/// Applies the client's `model` to `request`.
///
/// - absent, empty or `auto`: the router chooses;
/// - a backend name: that backend is forced;
/// - some backend's configured model: the first such backend (registration order) is forced;
/// - anything else: 404 in the client's envelope, decided locally (F-23).
///
/// A forced backend uses its configured model, so `request.model` stays unset.
pub(crate) fn resolve_model(
    router: &BackendRouter,
    model: Option<&str>,
    request: &mut ChatRequest,
) -> Result<(), ApiError> {
    let Some(model) = model.map(str::trim).filter(|m| !m.is_empty() && *m != AUTO) else {
        return Ok(());
    };
    if router.backend(model).is_some() {
        request.backend = Some(model.to_owned());
        return Ok(());
    }
    for name in router.backend_names() {
        if router.backend(&name).is_some_and(|b| b.info().model == model) {
            request.backend = Some(name);
            return Ok(());
        }
    }
    Err(ApiError::model_not_found(model))
}

/// Per-request routing preferences from `x-claudette-route` (an optimisation target) or
/// `x-claudette-weights` (`cost=0.5,latency=0.3,availability=0.2,quality=0`; unnamed weights
/// are 0), and what the response cache may do from `x-claudette-cache`: `no-cache` (a fresh
/// answer, stored) or `no-store` (neither looked up nor stored), HTTP's words. Both routing
/// headers at once is ambiguous and refused.
pub(crate) fn overrides(headers: &HeaderMap) -> Result<RouteOverrides, ApiError> {
    let cache = match headers.get(CACHE) {
        None => CacheMode::Use,
        Some(v) => match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Ok("no-cache") => CacheMode::Refresh,
            Ok("no-store") => CacheMode::Bypass,
            _ => return Err(ApiError::invalid("`x-claudette-cache` must be no-cache or no-store")),
        },
    };
    Ok(RouteOverrides { weights: weights(headers)?, cache })
}

fn weights(headers: &HeaderMap) -> Result<Option<Weights>, ApiError> {
    let route = headers.get(ROUTE);
    let weights = headers.get(WEIGHTS);
    match (route, weights) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => {
            Err(ApiError::invalid("send either `x-claudette-route` or `x-claudette-weights`, not both"))
        }
        (Some(v), None) => {
            let target = match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                Ok("cost") => OptimizationTarget::Cost,
                Ok("speed" | "latency") => OptimizationTarget::Speed,
                Ok("quality") => OptimizationTarget::Quality,
                Ok("balanced") => OptimizationTarget::Balanced,
                _ => {
                    return Err(ApiError::invalid(
                        "`x-claudette-route` must be one of cost, speed, quality, balanced",
                    ));
                }
            };
            Ok(Some(RouterOptions::for_target(target).weights()))
        }
        (None, Some(v)) => {
            let text = v.to_str().map_err(|_| ApiError::invalid("`x-claudette-weights` must be ASCII"))?;
            Ok(Some(parse_weights(text)?))
        }
    }
}

fn parse_weights(text: &str) -> Result<Weights, ApiError> {
    let bad = |why: String| {
        ApiError::invalid(format!(
            "invalid `x-claudette-weights` ({why}); expected e.g. cost=0.5,latency=0.3,availability=0.2,quality=0"
        ))
    };
    let mut w = Weights { cost: 0.0, latency: 0.0, availability: 0.0, quality: 0.0 };
    let mut any = false;
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| bad(format!("`{part}` is not name=value")))?;
        let value: f64 =
            value.trim().parse().map_err(|_| bad(format!("`{}` is not a number", value.trim())))?;
        if !value.is_finite() || value < 0.0 {
            return Err(bad(format!("`{}` must be a finite number ≥ 0", name.trim())));
        }
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "cost" => &mut w.cost,
            "latency" | "speed" => &mut w.latency,
            "availability" => &mut w.availability,
            "quality" => &mut w.quality,
            other => return Err(bad(format!("unknown weight `{other}`"))),
        };
        *slot = value;
        any = true;
    }
    if !any {
        return Err(bad("no weights given".into()));
    }
    Ok(w)
}

/// Adds the `x-claudette-*` headers.
pub(crate) fn explain(
    headers: &mut HeaderMap,
    backend: &str,
    cost: f64,
    estimated: bool,
    decision: &RoutingDecision,
) {
    headers.insert(BACKEND, header_value(backend));
    headers.insert(ATTEMPTS, HeaderValue::from(decision.attempts.len()));
    // f64's Display never uses exponent notation: `0.0000125`, not `1.25e-5`.
    let cost = if cost.is_finite() { cost.max(0.0) } else { 0.0 };
    headers.insert(COST, owned_header_value(cost.to_string()));
    if estimated {
        headers.insert(COST_ESTIMATED, HeaderValue::from_static("true"));
    }
    if let Some(cache) = decision.cache {
        headers.insert(CACHE, HeaderValue::from_static(cache.as_str()));
    }
    headers.insert(DECISION, owned_header_value(decision.compact()));
}

/// The backend a failed request last tried, or `none`.
pub(crate) fn last_backend(decision: &RoutingDecision) -> &str {
    decision.attempts.last().map_or("none", |a| a.backend.as_str())
}

/// Headers for a request that never reached the router.
pub(crate) fn explain_local(headers: &mut HeaderMap) {
    headers.insert(BACKEND, HeaderValue::from_static("none"));
    headers.insert(ATTEMPTS, HeaderValue::from_static("0"));
    headers.insert(COST, HeaderValue::from_static("0"));
}

/// [`header_value`] for a `String` built for the header: its buffer becomes the value without
/// a copy when it is clean (always, for names and numbers the configuration allows).
fn owned_header_value(s: String) -> HeaderValue {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        if let Ok(v) = HeaderValue::try_from(s) {
            return v;
        }
        return HeaderValue::from_static("?");
    }
    header_value(&s)
}

/// A header value from arbitrary text: anything but visible ASCII and spaces becomes `?`
/// (`HeaderValue` would accept Latin-1 bytes, which clients decode inconsistently).
fn header_value(s: &str) -> HeaderValue {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        if let Ok(v) = HeaderValue::from_str(s) {
            return v;
        }
    }
    let clean: String = s.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &'static str, value: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, HeaderValue::from_str(value).unwrap());
        m
    }

    #[test]
    fn route_targets_and_weights_parse() {
        assert!(overrides(&HeaderMap::new()).unwrap().weights.is_none());
        let cost = overrides(&h("x-claudette-route", "Cost")).unwrap().weights.unwrap();
        assert_eq!(cost, RouterOptions::for_target(OptimizationTarget::Cost).weights());
        let w =
            overrides(&h("x-claudette-weights", "cost=0.5, latency=0.3,availability=0.2,quality=0")).unwrap();
        assert_eq!(w.weights.unwrap(), Weights { cost: 0.5, latency: 0.3, availability: 0.2, quality: 0.0 });
        let partial = overrides(&h("x-claudette-weights", "quality=1")).unwrap().weights.unwrap();
        assert_eq!(partial, Weights { cost: 0.0, latency: 0.0, availability: 0.0, quality: 1.0 });
        for bad in ["cost", "cost=x", "cost=-1", "price=1", "", "cost=NaN"] {
            assert!(overrides(&h("x-claudette-weights", bad)).is_err(), "{bad}");
        }
        assert!(overrides(&h("x-claudette-route", "cheapest")).is_err());
    }

    #[test]
    fn cache_modes_parse_and_odd_ones_are_refused_by_name() {
        assert_eq!(overrides(&HeaderMap::new()).unwrap().cache, CacheMode::Use);
        assert_eq!(overrides(&h("x-claudette-cache", "no-cache")).unwrap().cache, CacheMode::Refresh);
        assert_eq!(overrides(&h("x-claudette-cache", " No-Store ")).unwrap().cache, CacheMode::Bypass);
        for bad in ["", "hit", "no-cache, no-store", "max-age=0"] {
            let e = overrides(&h("x-claudette-cache", bad)).unwrap_err();
            assert!(e.message.contains("x-claudette-cache"), "{bad}: {}", e.message);
        }
        // Weights and a cache mode together.
        let both = {
            let mut m = h("x-claudette-cache", "no-store");
            m.insert("x-claudette-route", HeaderValue::from_static("cost"));
            overrides(&m).unwrap()
        };
        assert_eq!(both.cache, CacheMode::Bypass);
        assert!(both.weights.is_some());
    }

    #[test]
    fn client_request_ids_are_kept_only_when_sane() {
        let id = |value: &[u8]| {
            let mut m = HeaderMap::new();
            m.insert(REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
            request_id(&m)
        };
        for sane in [&b"abc-123"[..], b"x", b"req_01HZ:trace/span=1;a@b", &[b'a'; 128]] {
            assert_eq!(id(sane).as_bytes(), sane);
        }
        for junk in [&b"two words"[..], b"", b"tab\there", b"caf\xc3\xa9", &[b'a'; 129]] {
            let made = id(junk);
            assert!(made.to_str().unwrap().starts_with("req_cl"), "{junk:?} gave {made:?}");
        }
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert!(a != b && a.to_str().unwrap().starts_with("req_cl"));
    }

    #[tokio::test]
    async fn a_request_is_prepared_under_the_id_its_answer_carries() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("from-client"));
        let scoped =
            with_request_id(HeaderValue::from_static("from-front"), async { request_id_for(&headers) });
        assert_eq!(scoped.await, "from-front");
        // Outside any scope: the client's, else a new one.
        assert_eq!(request_id_for(&headers), "from-client");
        assert!(request_id_for(&HeaderMap::new()).starts_with("req_cl"));
    }

    #[test]
    fn odd_header_text_is_made_safe() {
        assert_eq!(header_value("b1=0.5;b1:ok").to_str().unwrap(), "b1=0.5;b1:ok");
        assert_eq!(header_value("bäckend").to_str().unwrap(), "b?ckend");
        assert_eq!(owned_header_value("b1=0.5;b1:ok".into()).to_str().unwrap(), "b1=0.5;b1:ok");
        assert_eq!(owned_header_value("bäckend".into()).to_str().unwrap(), "b?ckend");
    }
}
