//! Metrics and request logs.
//!
//! `claudette-core` and `claudette-http` emit `claudette_*` metrics through the `metrics`
//! facade; this module installs the Prometheus recorder that collects them (once per process:
//! a global recorder can only be set once, and tests build many gateways), adds the gateway's
//! own series, and refreshes the gauges that only a scrape can keep honest (breaker state moves
//! from Open to HalfOpen by the clock, not by an event).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::http::Request;
use claudette_core::metrics::{COST_METRIC, RESPONSE_CACHE_METRIC};
use claudette_core::{BackendRouter, RoutingDecision};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Label, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::KeyHasher;
use parking_lot::{Mutex, RwLock};
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
            let installed = builder.map_err(|e| e.to_string()).and_then(|b| {
                let recorder = b.build_recorder();
                let handle = recorder.handle();
                metrics::set_global_recorder(Cached::new(recorder)).map(|()| handle).map_err(|e| e.to_string())
            });
            let handle = match installed {
                Ok(h) => h,
                Err(e) => {
                    // Another recorder owns the process (an embedding application's): its
                    // exporter serves the metrics, and /metrics says so.
                    tracing::warn!(error = %e, "prometheus recorder not installed; GET /metrics is unavailable");
                    return None;
                }
            };
            describe();
            start_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Histogram samples wait in the recorder, one 8-byte value each, until an upkeep folds them
/// into their buckets. `install_recorder` leaves upkeep to its caller, and `GET /metrics`
/// alone is not enough: a gateway nobody scrapes kept every sample, about 40 bytes per
/// request (RSS grew ~7 MiB per 4 s of saturated load in `bench_gateway`), forever.
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("claudette-metrics".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            flush_all();
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histogram samples are kept until GET /metrics");
    }
}

/// The Prometheus recorder with a cache of the handles it gave out, looked up by the key's
/// precomputed hash.
///
/// `PrometheusRecorder::register_*` turns the key into an owned copy (a new label slice, new
/// strings) before it looks it up, on every call, and every request registers about ten
/// series (router, upstream and gateway). With the cache, a series already seen costs a
/// read-locked hash lookup and a handle clone. Keys are the same bounded set the exporter
/// keeps for its whole life anyway (no idle expiry is configured).
struct Cached {
    inner: PrometheusRecorder,
    counters: Handles<Counter>,
    gauges: Handles<Gauge>,
    histograms: Handles<Histogram>,
}

type Handles<H> = RwLock<HashMap<Key, H, BuildHasherDefault<KeyHasher>>>;

impl Cached {
    fn new(inner: PrometheusRecorder) -> Cached {
        Cached {
            inner,
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
        }
    }

    fn get<H: Clone>(cache: &Handles<H>, key: &Key, register: impl FnOnce() -> H) -> H {
        if let Some(h) = cache.read().get(key) {
            return h.clone();
        }
        let h = register();
        cache.write().entry(key.clone()).or_insert_with(|| h.clone());
        h
    }
}

impl Recorder for Cached {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        local(
            self,
            key,
            |l| &mut l.counters,
            || {
                let shared =
                    Self::get(&self.counters, key, || self.inner.register_counter(&faithful(key), metadata));
                Counter::from_arc(batched(LocalCounter { shared, pending: AtomicU64::new(0) }))
            },
        )
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        local(
            self,
            key,
            |l| &mut l.gauges,
            || {
                let shared =
                    Self::get(&self.gauges, key, || self.inner.register_gauge(&faithful(key), metadata));
                Gauge::from_arc(Arc::new(LocalGauge(shared)))
            },
        )
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        local(
            self,
            key,
            |l| &mut l.histograms,
            || {
                let shared = Self::get(&self.histograms, key, || {
                    self.inner.register_histogram(&faithful(key), metadata)
                });
                Histogram::from_arc(batched(LocalHistogram { shared, pending: Mutex::new(Vec::new()) }))
            },
        )
    }
}

/// `key` as the exporter must be given it for its label values to come out as they are.
///
/// The exposition format escapes `\`, `"` and a line feed in a label value as `\\`, `\"` and
/// `\n`. The exporter escapes `"` and line feeds, but takes a backslash followed by another
/// backslash or a `"` as an escape already made: backends named `x\y` and `x\\y` both came
/// out as `x\\y`, two series with one name and label set in one scrape, and `a\"b` lost its
/// backslash. Backend and model names come from configuration and may hold any of these.
/// With every backslash doubled, each one reaches the scrape as `\\`, and the exporter's own
/// escaping of `"` and line feeds does the rest. Runs once per series (handles are cached).
fn faithful(key: &Key) -> Cow<'_, Key> {
    if !key.labels().any(|l| l.value().contains('\\')) {
        return Cow::Borrowed(key);
    }
    let labels: Vec<Label> =
        key.labels().map(|l| Label::new(l.key().to_owned(), l.value().replace('\\', "\\\\"))).collect();
    Cow::Owned(Key::from_parts(key.name_shared(), labels))
}

/// Each serving thread's own copy of the handle cache.
///
/// The shared cache costs, per metric call, a read lock and a clone and drop of the shared
/// handle: four atomic writes to cache lines every serving thread writes, which then move
/// between cores on every request (about ten series each). A thread's own map and its own
/// `Arc` around the shared handle keep those writes on the thread's core; only the recording
/// itself touches shared memory. There is one `Cached` per process (it is the global
/// recorder); should another be built (tests), a thread's map follows the last one it served.
#[derive(Default)]
struct Local {
    /// The address of the `Cached` these handles belong to.
    owner: usize,
    counters: HashMap<Key, Counter, BuildHasherDefault<KeyHasher>>,
    gauges: HashMap<Key, Gauge, BuildHasherDefault<KeyHasher>>,
    histograms: HashMap<Key, Histogram, BuildHasherDefault<KeyHasher>>,
}

thread_local! {
    static LOCAL: ThreadCache = ThreadCache::default();
    /// Set while this thread's [`ThreadCache`] is being destroyed. Constant-initialised and
    /// without a destructor, so it can be read from other thread-locals' destructors.
    static TEARING_DOWN: Cell<bool> = const { Cell::new(false) };
}

/// A thread's [`Local`], marking when the thread ends: its handles are then dropped from a
/// thread-local destructor, where they must not record (see [`ORPHANED`]).
#[derive(Default)]
struct ThreadCache(RefCell<Local>);

impl Drop for ThreadCache {
    fn drop(&mut self) {
        TEARING_DOWN.set(true);
    }
}

fn local<H: Clone>(
    owner: &Cached,
    key: &Key,
    map: impl Fn(&mut Local) -> &mut HashMap<Key, H, BuildHasherDefault<KeyHasher>>,
    make: impl FnOnce() -> H,
) -> H {
    let owner = std::ptr::from_ref(owner) as usize;
    let cached = LOCAL.try_with(|l| {
        let mut l = l.0.try_borrow_mut().ok()?;
        if l.owner != owner {
            *l = Local { owner, ..Local::default() };
        }
        map(&mut l).get(key).cloned()
    });
    if let Ok(Some(h)) = cached {
        return h;
    }
    let h = make();
    // A thread being torn down (no thread-local any more) just goes without the cache.
    let _ = LOCAL.try_with(|l| {
        if let Ok(mut l) = l.0.try_borrow_mut() {
            map(&mut l).insert(key.clone(), h.clone());
        }
    });
    h
}

/// A thread's own gauge handle around the shared one (see [`Local`]). Gauges are set, not
/// summed, so they go straight through.
struct LocalGauge(Gauge);

/// Thread-owned handles that gather what is recorded and hand it to the shared series in
/// batches: at every scrape (so `/metrics` is exact), every upkeep second, when a thread's
/// sample buffer fills, and when the thread ends (its samples then wait for the next scrape or upkeep).
///
/// Recording into the shared series directly writes cache lines that every serving thread
/// writes (the value and the exporter's recency counter), about ten series per request: on
/// two cores, metrics cost about 3 µs of CPU per request (`bench_gateway` against a no-op
/// recorder). A thread's own counter or buffer stays in its core's cache.
trait Flush: Send + Sync {
    fn flush(&self);
}

/// Every batched handle alive, for [`flush_all`].
static BATCHED: Mutex<Vec<Weak<dyn Flush>>> = Mutex::new(Vec::new());

/// Samples of threads that ended, for [`flush_all`] to hand over. A thread's last samples are
/// dropped with its thread-locals, and recording them there would read the exporter's clock,
/// whose own thread-local may already be gone: that panics, and a panic in a thread-local's
/// destructor aborts the process (`claudette serve` did so on SIGTERM).
static ORPHANED: Mutex<Vec<(Histogram, Vec<f64>)>> = Mutex::new(Vec::new());

fn batched<T: Flush + 'static>(handle: T) -> Arc<T> {
    let handle = Arc::new(handle);
    let as_flush: Arc<dyn Flush> = handle.clone();
    let mut all = BATCHED.lock();
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(&as_flush));
    handle
}

/// Hands every thread's pending counts and samples to the shared series.
fn flush_all() {
    let orphaned = std::mem::take(&mut *ORPHANED.lock());
    for (shared, samples) in orphaned {
        for v in samples {
            shared.record(v);
        }
    }
    let live: Vec<Arc<dyn Flush>> = BATCHED.lock().iter().filter_map(Weak::upgrade).collect();
    for handle in live {
        handle.flush();
    }
}

struct LocalCounter {
    shared: Counter,
    pending: AtomicU64,
}

impl Flush for LocalCounter {
    fn flush(&self) {
        let n = self.pending.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.shared.increment(n);
        }
    }
}

impl CounterFn for LocalCounter {
    fn increment(&self, value: u64) {
        self.pending.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.flush();
        self.shared.absolute(value);
    }
}

impl Drop for LocalCounter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Samples a thread keeps before it hands them over itself.
const SAMPLES_PER_BATCH: usize = 512;

struct LocalHistogram {
    shared: Histogram,
    pending: Mutex<Vec<f64>>,
}

impl LocalHistogram {
    fn hand_over(&self, samples: &[f64]) {
        for &v in samples {
            self.shared.record(v);
        }
    }
}

impl Flush for LocalHistogram {
    fn flush(&self) {
        let samples = std::mem::take(&mut *self.pending.lock());
        self.hand_over(&samples);
    }
}

impl HistogramFn for LocalHistogram {
    fn record(&self, value: f64) {
        let mut pending = self.pending.lock();
        pending.push(value);
        if pending.len() >= SAMPLES_PER_BATCH {
            let samples = std::mem::take(&mut *pending);
            drop(pending);
            self.hand_over(&samples);
        }
    }
}

impl Drop for LocalHistogram {
    fn drop(&mut self) {
        let samples = std::mem::take(self.pending.get_mut());
        if samples.is_empty() {
            return;
        }
        if TEARING_DOWN.get() {
            ORPHANED.lock().push((self.shared.clone(), samples));
        } else {
            self.hand_over(&samples);
        }
    }
}

impl GaugeFn for LocalGauge {
    fn increment(&self, value: f64) {
        self.0.increment(value);
    }
    fn decrement(&self, value: f64) {
        self.0.decrement(value);
    }
    fn set(&self, value: f64) {
        self.0.set(value);
    }
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
    metrics::describe_counter!(
        RESPONSE_CACHE_METRIC,
        "Routed requests by what the response cache did: hit (no upstream call, nothing billed), miss, bypass"
    );
    metrics::describe_gauge!(
        "claudette_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open"
    );
    metrics::describe_gauge!("claudette_gateway_backend_healthy", "1 when the backend can take traffic now");
    metrics::describe_gauge!(
        COST_METRIC,
        "Spend per backend since start, price-table currency (USD for the built-in tables)"
    );
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
    flush_all();
    h.run_upkeep();
    Some(as_counters(h.render()))
}

/// Series that only grow but hold fractions, which the `metrics` facade can only record as
/// gauges (its counters count whole numbers).
const FLOAT_COUNTERS: [&str; 1] = [COST_METRIC];

/// `text` with each of [`FLOAT_COUNTERS`] typed as the counter it is: a `_total` name is
/// reserved for counters, and OpenMetrics parsers refuse a gauge that has one.
fn as_counters(mut text: String) -> String {
    for name in FLOAT_COUNTERS {
        let gauge = format!("# TYPE {name} gauge\n");
        if let Some(at) = text.find(&gauge) {
            text.replace_range(at..at + gauge.len(), &format!("# TYPE {name} counter\n"));
        }
    }
    text
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
        "/v1/responses" => "responses",
        "/v1/messages/count_tokens" => "count_tokens",
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

/// The keys every successful request of an inference endpoint records, built at compile time:
/// the macros build a label vector and look its strings up on every call.
struct EndpointKeys {
    ok: Key,
    duration: Key,
    attempts: Key,
}

macro_rules! endpoint_keys {
    ($endpoint:literal) => {{
        const E: &[Label] = &[Label::from_static_parts("endpoint", $endpoint)];
        const OK: &[Label] =
            &[Label::from_static_parts("endpoint", $endpoint), Label::from_static_parts("status", "200")];
        EndpointKeys {
            ok: Key::from_static_parts(REQUESTS, OK),
            duration: Key::from_static_parts(DURATION, E),
            attempts: Key::from_static_parts(ATTEMPTS, E),
        }
    }};
}

static CHAT_COMPLETIONS: EndpointKeys = endpoint_keys!("chat_completions");
static MESSAGES: EndpointKeys = endpoint_keys!("messages");
static RESPONSES: EndpointKeys = endpoint_keys!("responses");
static API_CHAT: EndpointKeys = endpoint_keys!("api_chat");
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

fn keys(endpoint: &str) -> Option<&'static EndpointKeys> {
    match endpoint {
        "chat_completions" => Some(&CHAT_COMPLETIONS),
        "messages" => Some(&MESSAGES),
        "responses" => Some(&RESPONSES),
        "api_chat" => Some(&API_CHAT),
        _ => None,
    }
}

/// Counts one response.
pub(crate) fn count(endpoint: &'static str, status: u16) {
    if let (200, Some(k)) = (status, keys(endpoint)) {
        metrics::with_recorder(|r| r.register_counter(&k.ok, &METADATA).increment(1));
        return;
    }
    metrics::counter!(REQUESTS, "endpoint" => endpoint, "status" => status_label(status)).increment(1);
}

/// Counts a request refused by a gateway limit (`reason`: `body_too_large`, `concurrency`).
pub(crate) fn rejected(endpoint: &'static str, reason: &'static str) {
    metrics::counter!(REJECTED, "endpoint" => endpoint, "reason" => reason).increment(1);
}

/// Duration, attempts and failovers of a finished routed request.
pub(crate) fn finished(endpoint: &'static str, started: Instant, decision: Option<&RoutingDecision>) {
    let seconds = started.elapsed().as_secs_f64();
    let attempts = decision.map(|d| d.attempts.len() as f64);
    match keys(endpoint) {
        Some(k) => metrics::with_recorder(|r| {
            r.register_histogram(&k.duration, &METADATA).record(seconds);
            if let Some(n) = attempts {
                r.register_histogram(&k.attempts, &METADATA).record(n);
            }
        }),
        None => {
            metrics::histogram!(DURATION, "endpoint" => endpoint).record(seconds);
            if let Some(n) = attempts {
                metrics::histogram!(ATTEMPTS, "endpoint" => endpoint).record(n);
            }
        }
    }
    if let Some(d) = decision {
        let moves = d.attempts.windows(2).filter(|w| w[0].backend != w[1].backend).count();
        if moves > 0 {
            metrics::counter!(FAILOVERS, "endpoint" => endpoint).increment(moves as u64);
        }
    }
}

/// Spans carry method, path and request id only: no headers (keys), no query string
/// (`?key=`) (S-02). The id is the one the answer carries, set around the app by
/// `front::identify`, so a log line can be matched to the answer a client reports; the
/// front's own span for the inference endpoints has the same fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PathSpan;

impl<B> MakeSpan<B> for PathSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let span = |id: &str| {
            tracing::debug_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = id
            )
        };
        crate::routing::with_current_id(span).unwrap_or_else(|| span(""))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (Cached, PrometheusHandle) {
        let inner = PrometheusBuilder::new().build_recorder();
        let handle = inner.handle();
        (Cached::new(inner), handle)
    }

    fn count(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Each thread records through its own cached handle; every recording still lands in the
    /// one shared series, and a second recorder never gets the first one's handles.
    ///
    /// The threads are joined, not scoped: a scope ends when the threads' closures return,
    /// before their thread-locals are destroyed, so a scrape right after it can run while a
    /// thread is still handing its last samples over (they reach the next scrape). That made
    /// this test fail now and then under load; `join` waits for the whole thread.
    #[test]
    fn per_thread_handles_record_into_the_shared_series() {
        let (a, ha) = recorder();
        let (b, hb) = recorder();
        let (a, b) = (Arc::new(a), Arc::new(b));
        let key = Key::from_parts("hits_total", vec![Label::new("endpoint", "x")]);
        let hist = Key::from_name("took_seconds");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (a, b, key, hist) = (a.clone(), b.clone(), key.clone(), hist.clone());
                std::thread::spawn(move || {
                    let meta = Metadata::new("t", metrics::Level::INFO, None);
                    for _ in 0..250 {
                        a.register_counter(&key, &meta).increment(1);
                        a.register_histogram(&hist, &meta).record(0.5);
                        // Interleaved with another recorder on the same thread.
                        b.register_counter(&key, &meta).increment(2);
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        a.register_gauge(&Key::from_name("level"), &meta).set(3.0);
        // Threads that ended handed over what they held; a live thread's pending counts and
        // samples are handed over by the scrape's flush.
        a.register_counter(&key, &meta).increment(5);
        a.register_histogram(&hist, &meta).record(0.25);
        assert!(!ha.render().contains("hits_total{endpoint=\"x\"} 1005"));
        flush_all();
        ha.run_upkeep();
        let (ta, tb) = (ha.render(), hb.render());
        assert_eq!(count(&ta, r#"hits_total{endpoint="x"}"#), Some(1005.0), "{ta}");
        assert_eq!(count(&ta, "took_seconds_count"), Some(1001.0), "{ta}");
        assert_eq!(count(&ta, "level"), Some(3.0), "{ta}");
        assert_eq!(count(&tb, r#"hits_total{endpoint="x"}"#), Some(2000.0), "{tb}");
        assert!(!tb.contains("took_seconds"), "{tb}");
    }

    /// A thread that handed samples over while it ran, then ends. The hand-over reads the
    /// exporter's clock, whose thread-local is then set up after this thread's handle cache
    /// and so destroyed before it: the cache's last samples must not be recorded from its
    /// destructor (that panics, and a panic there aborts the process, which is how
    /// `claudette serve` once ended on SIGTERM). They reach the series at the next flush.
    #[test]
    fn a_thread_that_ends_after_a_hand_over_keeps_its_last_samples() {
        let (a, ha) = recorder();
        let a = Arc::new(a);
        let hist = Key::from_name("ending_seconds");
        let samples = SAMPLES_PER_BATCH + 10;
        let thread = {
            let (a, hist) = (a.clone(), hist.clone());
            std::thread::spawn(move || {
                let meta = Metadata::new("t", metrics::Level::INFO, None);
                for _ in 0..samples {
                    a.register_histogram(&hist, &meta).record(0.5);
                }
            })
        };
        // `join` returns once the thread is gone, its thread-locals destroyed.
        assert!(thread.join().is_ok());
        flush_all();
        ha.run_upkeep();
        let text = ha.render();
        assert_eq!(count(&text, "ending_seconds_count"), Some(samples as f64), "{text}");
    }
}
