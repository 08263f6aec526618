//! Per-backend performance and health figures, kept by the router.
//!
//! Plain structs for library users ([`PerformanceMetrics`], [`HealthStatus`], the seeds'
//! `getPerformanceMetrics()` / `getHealthStatus()`), and the same figures pushed to the
//! `metrics` facade so any exporter (Prometheus in the gateway) sees them without owning a
//! registry here.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::breaker::BreakerState;
use crate::error::ErrorKind;

/// How many recent latencies the percentiles are computed over.
pub const LATENCY_WINDOW: usize = 512;
/// How many recent outcomes the availability factor looks at.
const OUTCOME_WINDOW: usize = 100;
/// Weight of the newest sample in the latency EWMA used for scoring.
const EWMA_ALPHA: f64 = 0.2;

/// Spend per backend since start (`{backend}`), in the price table's currency (USD for the
/// built-in tables). It only grows, so it is a counter, `_total` by Prometheus convention;
/// but the facade's counters count whole numbers, so it is recorded as a gauge that is only
/// ever incremented. An exporter should expose it as a counter: the gateway's does, and an
/// OpenMetrics parser refuses a gauge whose name ends in `_total`.
pub const COST_METRIC: &str = "claudette_cost_usd_total";

/// Routed requests by what the response cache did (`{result}`: `hit`, `miss`, `bypass`;
/// see [`CacheStatus`](crate::CacheStatus)). Counted only by a router that has a cache.
pub const RESPONSE_CACHE_METRIC: &str = "claudette_response_cache_total";

/// Latency summary over the bounded window, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: usize,
    pub avg_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl LatencySummary {
    fn from_window(w: &VecDeque<f64>) -> Self {
        if w.is_empty() {
            return Self::default();
        }
        let mut v: Vec<f64> = w.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let idx = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v.get(idx).copied().unwrap_or_default()
        };
        Self {
            samples: v.len(),
            avg_ms: v.iter().sum::<f64>() / v.len() as f64,
            min_ms: v.first().copied().unwrap_or_default(),
            max_ms: v.last().copied().unwrap_or_default(),
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
        }
    }
}

/// The seeds' `PerformanceMetrics`, extended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PerformanceMetrics {
    pub backend: String,
    pub total_requests: u64,
    pub successes: u64,
    pub failures: u64,
    /// Failures by error kind (`overloaded`, `timeout`...).
    pub failures_by_kind: BTreeMap<String, u64>,
    /// successes / (successes + failures), 1.0 before any request.
    pub success_rate: f64,
    pub latency: LatencySummary,
    /// Time to first token of streams.
    pub ttft: LatencySummary,
    pub total_cost: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The seeds' `HealthStatus`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthStatus {
    pub backend: String,
    /// Can take traffic now (breaker closed or probing, not throttled).
    pub healthy: bool,
    pub consecutive_failures: u32,
    #[serde(with = "opt_rfc3339")]
    pub last_successful_request: Option<SystemTime>,
    pub circuit_breaker_state: BreakerState,
    /// Milliseconds until the backend may be tried again, when it may not now.
    pub retry_in_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: u64,
    successes: u64,
    failures: u64,
    failures_by_kind: BTreeMap<ErrorKind, u64>,
    latencies: VecDeque<f64>,
    ttfts: VecDeque<f64>,
    ewma_ms: Option<f64>,
    recent: VecDeque<bool>,
    recent_failures: usize,
    consecutive_failures: u32,
    last_success: Option<SystemTime>,
    total_cost: f64,
    input_tokens: u64,
    output_tokens: u64,
}

/// Figures of one backend. Cheap to update; one short lock per event.
#[derive(Debug)]
pub struct BackendMetrics {
    name: String,
    inner: Mutex<Inner>,
    keys: Keys,
}

/// Facade keys of the per-success series, built once per backend: the macros with a
/// `name.clone()` label allocated labels and strings on every event. Keys, not handles, so
/// each event goes to the recorder installed at that moment (as with the macros).
#[derive(Debug)]
struct Keys {
    success: ::metrics::Key,
    latency: ::metrics::Key,
    tokens_input: ::metrics::Key,
    tokens_output: ::metrics::Key,
    cost: ::metrics::Key,
    ttft: ::metrics::Key,
}

impl Keys {
    fn new(backend: &str) -> Self {
        use ::metrics::{Key, Label};
        let b = || Label::new("backend", backend.to_owned());
        let with = |name: &'static str, k: &'static str, v: &'static str| {
            Key::from_parts(name, vec![b(), Label::new(k, v)])
        };
        Self {
            success: with("claudette_requests_total", "outcome", "success"),
            latency: Key::from_parts("claudette_request_latency_seconds", vec![b()]),
            tokens_input: with("claudette_tokens_total", "direction", "input"),
            tokens_output: with("claudette_tokens_total", "direction", "output"),
            cost: Key::from_parts(COST_METRIC, vec![b()]),
            ttft: Key::from_parts("claudette_ttft_seconds", vec![b()]),
        }
    }
}

static METADATA: ::metrics::Metadata<'static> =
    ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

fn push_bounded(w: &mut VecDeque<f64>, v: f64) {
    if w.len() == LATENCY_WINDOW {
        w.pop_front();
    }
    w.push_back(v);
}

impl BackendMetrics {
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self { keys: Keys::new(&name), name, inner: Mutex::new(Inner::default()) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn push_outcome(inner: &mut Inner, ok: bool) {
        if inner.recent.len() == OUTCOME_WINDOW && inner.recent.pop_front() == Some(false) {
            inner.recent_failures -= 1;
        }
        inner.recent.push_back(ok);
        if !ok {
            inner.recent_failures += 1;
        }
    }

    /// A successful attempt. A cost that is not a finite number ≥ 0 counts as 0, so one bad
    /// figure cannot make `total_cost` and the exported counter NaN for good.
    pub fn record_success(&self, latency: Duration, cost: f64, input_tokens: u32, output_tokens: u32) {
        let cost = crate::costs::sane_cost(cost);
        let ms = latency.as_secs_f64() * 1000.0;
        {
            let mut i = self.inner.lock();
            i.requests += 1;
            i.successes += 1;
            i.consecutive_failures = 0;
            i.last_success = Some(SystemTime::now());
            i.total_cost += cost;
            i.input_tokens += u64::from(input_tokens);
            i.output_tokens += u64::from(output_tokens);
            push_bounded(&mut i.latencies, ms);
            i.ewma_ms = Some(match i.ewma_ms {
                Some(e) => e + EWMA_ALPHA * (ms - e),
                None => ms,
            });
            Self::push_outcome(&mut i, true);
        }
        let k = &self.keys;
        ::metrics::with_recorder(|r| {
            r.register_counter(&k.success, &METADATA).increment(1);
            r.register_histogram(&k.latency, &METADATA).record(latency.as_secs_f64());
            r.register_counter(&k.tokens_input, &METADATA).increment(u64::from(input_tokens));
            r.register_counter(&k.tokens_output, &METADATA).increment(u64::from(output_tokens));
            r.register_gauge(&k.cost, &METADATA).increment(cost);
        });
    }

    /// Cost and tokens of an attempt that failed after it produced billable output (a stream
    /// cut mid-way is still billed).
    pub fn record_partial_cost(&self, cost: f64, input_tokens: u32, output_tokens: u32) {
        let cost = crate::costs::sane_cost(cost);
        {
            let mut i = self.inner.lock();
            i.total_cost += cost;
            i.input_tokens += u64::from(input_tokens);
            i.output_tokens += u64::from(output_tokens);
        }
        let k = &self.keys;
        ::metrics::with_recorder(|r| {
            r.register_counter(&k.tokens_input, &METADATA).increment(u64::from(input_tokens));
            r.register_counter(&k.tokens_output, &METADATA).increment(u64::from(output_tokens));
            r.register_gauge(&k.cost, &METADATA).increment(cost);
        });
    }

    /// A failed attempt. Caller errors (neutral outcomes) are counted as requests but do not
    /// hurt availability.
    pub fn record_failure(&self, kind: ErrorKind) {
        let counts_against = kind.outcome() != crate::error::Outcome::Neutral;
        {
            let mut i = self.inner.lock();
            i.requests += 1;
            *i.failures_by_kind.entry(kind).or_default() += 1;
            if counts_against {
                i.failures += 1;
                i.consecutive_failures += 1;
                Self::push_outcome(&mut i, false);
            }
        }
        metrics::counter!("claudette_requests_total", "backend" => self.name.clone(), "outcome" => kind.as_str())
            .increment(1);
    }

    /// Time to the first content event of a stream.
    pub fn record_ttft(&self, ttft: Duration) {
        push_bounded(&mut self.inner.lock().ttfts, ttft.as_secs_f64() * 1000.0);
        ::metrics::with_recorder(|r| {
            r.register_histogram(&self.keys.ttft, &METADATA).record(ttft.as_secs_f64())
        });
    }

    /// Smoothed latency for scoring, if any request finished yet.
    pub fn latency_ewma(&self) -> Option<Duration> {
        self.inner.lock().ewma_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0))
    }

    /// Inputs of the router's score: smoothed latency and the recent failure ratio, in one lock.
    pub fn score_inputs(&self) -> (Option<f64>, f64) {
        let i = self.inner.lock();
        let ratio = if i.recent.is_empty() { 0.0 } else { i.recent_failures as f64 / i.recent.len() as f64 };
        (i.ewma_ms, ratio)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.inner.lock().consecutive_failures
    }

    pub fn last_success(&self) -> Option<SystemTime> {
        self.inner.lock().last_success
    }

    pub fn performance(&self) -> PerformanceMetrics {
        let i = self.inner.lock();
        let judged = i.successes + i.failures;
        PerformanceMetrics {
            backend: self.name.clone(),
            total_requests: i.requests,
            successes: i.successes,
            failures: i.failures,
            failures_by_kind: i.failures_by_kind.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect(),
            success_rate: if judged == 0 { 1.0 } else { i.successes as f64 / judged as f64 },
            latency: LatencySummary::from_window(&i.latencies),
            ttft: LatencySummary::from_window(&i.ttfts),
            total_cost: i.total_cost,
            input_tokens: i.input_tokens,
            output_tokens: i.output_tokens,
        }
    }
}

mod opt_rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&httpdate::fmt_http_date(*t)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_bounded_window() {
        let m = BackendMetrics::new("a");
        for ms in 1..=100u64 {
            m.record_success(Duration::from_millis(ms), 0.001, 10, 5);
        }
        let p = m.performance();
        assert_eq!(p.latency.samples, 100);
        assert!((p.latency.p50_ms - 50.0).abs() < 0.01);
        assert!((p.latency.p99_ms - 99.0).abs() < 0.01);
        assert!((p.latency.min_ms - 1.0).abs() < 0.01);
        assert!((p.total_cost - 0.1).abs() < 1e-9);
        for _ in 0..1000 {
            m.record_success(Duration::from_millis(1), 0.0, 0, 0);
        }
        assert_eq!(m.performance().latency.samples, LATENCY_WINDOW);
    }

    #[test]
    fn neutral_errors_do_not_hurt_availability() {
        let m = BackendMetrics::new("a");
        m.record_failure(ErrorKind::InvalidRequest);
        assert_eq!(m.consecutive_failures(), 0);
        assert_eq!(m.score_inputs().1, 0.0);
        m.record_failure(ErrorKind::Overloaded);
        assert_eq!(m.consecutive_failures(), 1);
        let p = m.performance();
        assert_eq!(p.failures_by_kind.get("overloaded"), Some(&1));
        assert_eq!(p.total_requests, 2);
        assert_eq!(p.success_rate, 0.0);
    }
}
