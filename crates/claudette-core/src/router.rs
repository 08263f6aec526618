//! `BackendRouter`: picks a backend per request, retries, fails over, and streams honestly.
//!
//! One request (architecture.md "One request through the router"):
//! 1. candidates: enabled backends that can serve the request (forced backend, tags, tools);
//! 2. skip backends whose breaker is open or that are throttled, without I/O;
//! 3. score the rest (cost, latency, availability, quality, each 0..1, weighted) and order
//!    them — or follow the failover chain when one is set;
//! 4. take a breaker permit, call, classify the outcome, record it;
//! 5. fail over, retry the same backend after back-off, or stop, by error class, within the
//!    attempt limit and the retry budget (reliability-spec §2.2, §2.3).
//!
//! Streams are committed at their first content event (RT-7): until then a failure fails
//! over invisibly; after it, a failure becomes the stream's terminal `Error` event.
//!
//! With a [`ResponseCache`] set, a request is looked up before step 1; a hit is answered
//! without any of the steps (see [`crate::cache`]).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;

use crate::backend::{EventStream, SharedBackend};
use crate::breaker::{BreakerConfig, CircuitBreaker, Permit, RejectReason, Rejection};
use crate::budget::RetryBudget;
use crate::cache::{self, CacheKey, CacheMode, ResponseCache};
use crate::clock::{Clock, SystemClock};
use crate::costs::{Attribution, CostAnalysis, CostTracker, GroupBy, UsageOutcome, UsageSink};
use crate::decision::{
    Attempt, AttemptOutcome, CacheStatus, CandidateScore, RoutingDecision, SkipReason, Skipped,
};
use crate::error::{BackendError, ErrorKind, Outcome, RetryAction};
use crate::metrics::{BackendMetrics, HealthStatus, PerformanceMetrics};
use crate::types::{ChatRequest, ChatResponse, StreamEvent, Usage, UsageSource, estimate_tokens_from_len};

/// Routing weights and reliability settings. Weights need not sum to 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RouterOptions {
    pub cost_weight: f64,
    pub latency_weight: f64,
    pub availability_weight: f64,
    pub quality_weight: f64,
    /// Fail over to other backends. Off: only the selected backend is tried (with retries).
    pub fallback_enabled: bool,
    /// Attempts per request across the whole chain (RT-2). Breaker rejections are not attempts.
    pub max_attempts: u32,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
}

impl Default for RouterOptions {
    /// The seeds' defaults: cost 0.4, latency 0.4, availability 0.2, fallback on.
    fn default() -> Self {
        Self {
            cost_weight: 0.4,
            latency_weight: 0.4,
            availability_weight: 0.2,
            quality_weight: 0.0,
            fallback_enabled: true,
            max_attempts: 3,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

impl RouterOptions {
    /// Weights for an optimisation target (the seeds' `optimizationTarget`).
    pub fn for_target(target: OptimizationTarget) -> Self {
        let (c, l, a, q) = match target {
            OptimizationTarget::Cost => (0.7, 0.1, 0.15, 0.05),
            OptimizationTarget::Speed => (0.1, 0.7, 0.15, 0.05),
            OptimizationTarget::Quality => (0.1, 0.1, 0.2, 0.6),
            OptimizationTarget::Balanced => (0.3, 0.3, 0.2, 0.2),
        };
        Self {
            cost_weight: c,
            latency_weight: l,
            availability_weight: a,
            quality_weight: q,
            ..Self::default()
        }
    }

    /// Replaces the four weights, keeping the reliability settings.
    pub fn with_weights(mut self, w: Weights) -> Self {
        self.cost_weight = w.cost;
        self.latency_weight = w.latency;
        self.availability_weight = w.availability;
        self.quality_weight = w.quality;
        self
    }

    pub fn weights(&self) -> Weights {
        Weights {
            cost: self.cost_weight,
            latency: self.latency_weight,
            availability: self.availability_weight,
            quality: self.quality_weight,
        }
    }
}

/// What to optimise for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizationTarget {
    Cost,
    Speed,
    Quality,
    Balanced,
}

/// The four scoring weights, on their own (per-request overrides).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Weights {
    pub cost: f64,
    pub latency: f64,
    pub availability: f64,
    pub quality: f64,
}

/// Back-off, deadlines and the retry budget (reliability-spec RT-2, RT-4, RT-6).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Back-off n = U(0, min(max_backoff, base_backoff·2^n)).
    #[serde(with = "crate::types::duration_ms", rename = "base_backoff_ms")]
    pub base_backoff: Duration,
    #[serde(with = "crate::types::duration_ms", rename = "max_backoff_ms")]
    pub max_backoff: Duration,
    /// Server hints longer than this are not slept on (fail over or return the error).
    #[serde(with = "crate::types::duration_ms", rename = "max_hint_ms")]
    pub max_hint: Duration,
    /// Retry a timeout or reset that happened after the request was sent (it may have been
    /// accepted and billed). Default true, as the providers' SDKs do (RT-3).
    pub retry_possibly_accepted: bool,
    /// Whole-request deadline for non-stream requests.
    #[serde(with = "crate::types::duration_ms", rename = "request_deadline_ms")]
    pub request_deadline: Duration,
    /// Deadline to the first content event of a stream.
    #[serde(with = "crate::types::duration_ms", rename = "first_token_deadline_ms")]
    pub first_token_deadline: Duration,
    /// Budget: retries in the window ≤ max(budget_min, budget_ratio × requests in the window).
    pub budget_ratio: f64,
    pub budget_min: u32,
    #[serde(with = "crate::types::duration_ms", rename = "budget_window_ms")]
    pub budget_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_hint: Duration::from_secs(60),
            retry_possibly_accepted: true,
            request_deadline: Duration::from_secs(600),
            first_token_deadline: Duration::from_secs(60),
            budget_ratio: 0.2,
            budget_min: 100,
            budget_window: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter back-off before same-backend retry `n` (0-based), honouring a server hint.
    pub fn backoff(&self, n: u32, hint: Option<Duration>) -> Duration {
        let cap =
            self.base_backoff.saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX)).min(self.max_backoff);
        let jittered = cap.mul_f64(fastrand::f64());
        match hint {
            Some(h) => h.max(jittered),
            None => jittered,
        }
    }
}

/// One registered backend with its breaker and figures.
#[derive(Debug)]
struct Entry {
    backend: SharedBackend,
    breaker: Arc<CircuitBreaker>,
    metrics: Arc<BackendMetrics>,
    order: usize,
}

/// The outcome of [`BackendRouter::select`]: the best backend and how every candidate scored.
#[derive(Debug, Clone)]
pub struct Selection {
    pub backend: SharedBackend,
    pub decision: RoutingDecision,
}

/// Routes requests across backends. Cheap to share (`Arc<BackendRouter>`); all methods take
/// `&self`.
#[derive(Debug)]
pub struct BackendRouter {
    entries: RwLock<Vec<Arc<Entry>>>,
    chain: RwLock<Option<Vec<String>>>,
    options: RwLock<RouterOptions>,
    clock: Arc<dyn Clock>,
    budget: RetryBudget,
    costs: Arc<CostTracker>,
    /// Set at most once, like the usage sink: one lock-free load per request.
    cache: OnceLock<Arc<dyn ResponseCache>>,
}

impl Default for BackendRouter {
    fn default() -> Self {
        Self::new(RouterOptions::default())
    }
}

/// Per-request overrides of the router's options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteOverrides {
    pub weights: Option<Weights>,
    /// What the response cache may do for this request (without a cache: nothing to do).
    pub cache: CacheMode,
}

impl BackendRouter {
    pub fn new(options: RouterOptions) -> Self {
        Self::with_clock(options, SystemClock::shared())
    }

    /// A router on an injected clock (tests use [`FakeClock`](crate::clock::FakeClock)).
    pub fn with_clock(options: RouterOptions, clock: Arc<dyn Clock>) -> Self {
        let budget = RetryBudget::new(&options.retry, clock.clone());
        Self {
            entries: RwLock::new(Vec::new()),
            chain: RwLock::new(None),
            options: RwLock::new(options),
            costs: Arc::new(CostTracker::new(clock.clone())),
            clock,
            budget,
            cache: OnceLock::new(),
        }
    }

    pub fn options(&self) -> RouterOptions {
        self.options.read().clone()
    }

    /// Changes the weights (the seeds' `setPreferences`).
    pub fn set_weights(&self, w: Weights) {
        let mut o = self.options.write();
        *o = o.clone().with_weights(w);
    }

    /// Adds a backend. Names must be unique.
    pub fn register_backend(&self, backend: SharedBackend) -> Result<(), BackendError> {
        let name = backend.name().to_owned();
        let mut entries = self.entries.write();
        if entries.iter().any(|e| e.backend.name() == name) {
            return Err(BackendError::config(format!("backend `{name}` is already registered")));
        }
        let cfg = self.options.read().breaker.clone();
        let order = entries.len();
        entries.push(Arc::new(Entry {
            breaker: CircuitBreaker::new(name.clone(), cfg, self.clock.clone()),
            metrics: Arc::new(BackendMetrics::new(name)),
            backend,
            order,
        }));
        Ok(())
    }

    /// Names of registered backends, in registration order.
    pub fn backend_names(&self) -> Vec<String> {
        self.entries.read().iter().map(|e| e.backend.name().to_owned()).collect()
    }

    pub fn backend(&self, name: &str) -> Option<SharedBackend> {
        self.entry(name).map(|e| e.backend.clone())
    }

    pub fn breaker(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.entry(name).map(|e| e.breaker.clone())
    }

    pub fn metrics(&self, name: &str) -> Option<Arc<BackendMetrics>> {
        self.entry(name).map(|e| e.metrics.clone())
    }

    /// Sets the ordered failover chain (the seeds' `setFailoverChain`). Attempts then follow
    /// this order (first eligible backend first) and backends not named are not used. An empty
    /// chain goes back to score order over all backends.
    pub fn set_failover_chain<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        chain: I,
    ) -> Result<(), BackendError> {
        let chain: Vec<String> = chain.into_iter().map(Into::into).collect();
        for name in &chain {
            if self.entry(name).is_none() {
                return Err(BackendError::config(format!("failover chain names unknown backend `{name}`")));
            }
        }
        *self.chain.write() = if chain.is_empty() { None } else { Some(chain) };
        Ok(())
    }

    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries.read().iter().find(|e| e.backend.name() == name).cloned()
    }

    /// The seeds' `getHealthStatus()` for one backend.
    pub fn health_status(&self, name: &str) -> Option<HealthStatus> {
        self.entry(name).map(|e| self.health_of(&e))
    }

    /// Health of every backend, in registration order.
    pub fn health_statuses(&self) -> Vec<HealthStatus> {
        let entries = self.entries.read().clone();
        entries.iter().map(|e| self.health_of(e)).collect()
    }

    fn health_of(&self, e: &Entry) -> HealthStatus {
        let check = e.breaker.check();
        HealthStatus {
            backend: e.backend.name().to_owned(),
            healthy: check.is_ok() && e.backend.info().enabled,
            // Since the last success (the breaker's own streak restarts when it opens).
            consecutive_failures: e.metrics.consecutive_failures(),
            last_successful_request: e.metrics.last_success(),
            circuit_breaker_state: e.breaker.state(),
            retry_in_ms: check
                .err()
                .map(|r| u64::try_from(r.retry_in(self.clock.now()).as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// The seeds' `getPerformanceMetrics()` for one backend.
    pub fn performance_metrics(&self, name: &str) -> Option<PerformanceMetrics> {
        self.entry(name).map(|e| e.metrics.performance())
    }

    pub fn all_performance_metrics(&self) -> Vec<PerformanceMetrics> {
        self.entries.read().iter().map(|e| e.metrics.performance()).collect()
    }

    /// What this router has spent over `timeframe`, grouped, with a monthly projection (the
    /// seeds' `analyzeCosts`). Counts what this process has seen since it started.
    pub fn analyze_costs(&self, timeframe: Duration, group_by: GroupBy) -> CostAnalysis {
        self.costs.analyze(timeframe, group_by)
    }

    /// Hands every billed attempt from now on to `sink` too (a persistent ledger), with the
    /// figures [`analyze_costs`](Self::analyze_costs) counts. A setter on a shared router rather
    /// than an option, because routers are built from configuration before the ledger is
    /// opened; once only, so no record is split between two sinks. `record` runs on the request
    /// path: the sink must not block (see [`UsageSink`]).
    pub fn set_usage_sink(&self, sink: Arc<dyn UsageSink>) -> Result<(), BackendError> {
        self.costs.set_sink(sink).map_err(|_| BackendError::config("this router already has a usage sink"))
    }

    /// Answers identical requests from `cache` from now on, and stores complete answers in it
    /// (see [`crate::cache`]: what is the same request, what is stored, what a hit costs). A
    /// setter for the same reason as [`set_usage_sink`](Self::set_usage_sink), and once only:
    /// a second cache would split the entries between two stores. `get` and `put` run on the
    /// request path: the cache must not block.
    pub fn set_response_cache(&self, cache: Arc<dyn ResponseCache>) -> Result<(), BackendError> {
        self.cache.set(cache).map_err(|_| BackendError::config("this router already has a response cache"))
    }

    /// Whether a response cache is set.
    pub fn has_response_cache(&self) -> bool {
        self.cache.get().is_some()
    }

    /// Consults the cache for `request` as `mode` allows, counting the outcome.
    fn look_up(&self, request: &ChatRequest, mode: CacheMode) -> Lookup {
        let Some(cache) = self.cache.get() else { return Lookup::Off };
        let key = match mode {
            CacheMode::Bypass => None,
            CacheMode::Use | CacheMode::Refresh => CacheKey::of(request),
        };
        let Some(key) = key else {
            count_cache(CacheStatus::Bypass);
            return Lookup::Bypass;
        };
        if mode == CacheMode::Use {
            let started = self.clock.now();
            if let Some(mut resp) = cache.get(&key) {
                resp.cache_hit = true;
                // Nothing was billed for this answer (nothing is booked either).
                resp.cost = 0.0;
                // What the caller waited, not what the first caller did.
                resp.latency = self.clock.now().saturating_sub(started);
                resp.decision =
                    Some(RoutingDecision { cache: Some(CacheStatus::Hit), ..RoutingDecision::default() });
                count_cache(CacheStatus::Hit);
                return Lookup::Hit(Box::new(resp));
            }
        }
        count_cache(CacheStatus::Miss);
        Lookup::Miss(key)
    }

    /// Routes many requests with at most `concurrency` in flight, returning one result per
    /// request in input order (the seeds' `processBatch`). One failure never fails the batch.
    pub async fn process_batch(
        &self,
        requests: &[ChatRequest],
        concurrency: usize,
    ) -> Vec<Result<ChatResponse, RouteError>> {
        futures::stream::iter(requests.iter().map(|r| self.route_request(r)))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// Runs every backend's free health probe once and feeds the breakers (FO-3: a passing
    /// check on an open backend only moves its deadline to now; it never closes it).
    pub async fn run_health_checks(&self) -> Vec<(String, Result<(), BackendError>)> {
        let entries = self.entries.read().clone();
        let checks = entries.iter().map(|e| async move {
            let r = e.backend.health_check().await;
            e.breaker.record_health_check(r.is_ok());
            (e.backend.name().to_owned(), r)
        });
        futures::future::join_all(checks).await
    }

    /// Picks the best backend for `request`, leaving out `exclude` (the seeds'
    /// `selectBackend`). Does no I/O and takes no breaker permit.
    pub fn select_backend(
        &self,
        request: &ChatRequest,
        exclude: &[&str],
    ) -> Result<SharedBackend, BackendError> {
        self.select_inner(request, exclude, RouteOverrides::default(), false).map(|s| s.backend)
    }

    /// Like [`select_backend`](Self::select_backend), with every candidate's score.
    pub fn select(&self, request: &ChatRequest, exclude: &[&str]) -> Result<Selection, BackendError> {
        self.select_inner(request, exclude, RouteOverrides::default(), true)
    }

    /// Like [`select`](Self::select), under a request's own overrides (its weights): the
    /// backend [`route_request_with`](Self::route_request_with) would try first, for callers
    /// that ask a backend something other than a completion (a token count) and must ask the
    /// one the completion would go to.
    pub fn select_with(
        &self,
        request: &ChatRequest,
        exclude: &[&str],
        overrides: RouteOverrides,
    ) -> Result<Selection, BackendError> {
        self.select_inner(request, exclude, overrides, true)
    }

    fn select_inner(
        &self,
        request: &ChatRequest,
        exclude: &[&str],
        overrides: RouteOverrides,
        explain: bool,
    ) -> Result<Selection, BackendError> {
        let excluded: HashSet<&str> = exclude.iter().copied().collect();
        let plan = self.plan(request, &excluded, false, overrides, explain)?;
        let first = plan.order.first().cloned().ok_or_else(|| plan.unavailable_error(self.clock.now()))?;
        Ok(Selection { backend: first.backend.clone(), decision: plan.decision })
    }

    /// Candidates in attempt order, with scores and skip reasons when `explain` is set (the
    /// explanation costs a `String` per candidate, which a bare selection does not need).
    fn plan(
        &self,
        request: &ChatRequest,
        excluded: &HashSet<&str>,
        stream: bool,
        overrides: RouteOverrides,
        explain: bool,
    ) -> Result<Plan, BackendError> {
        let dialect = request.native_dialect()?;
        let (mut considered, mut other_dialect) = (0usize, 0usize);
        let entries = self.entries.read();
        let mut decision = RoutingDecision::default();
        let mut earliest: Option<Rejection> = None;
        let mut eligible: Vec<Arc<Entry>> = Vec::with_capacity(entries.len());

        if let Some(forced) = request.backend.as_deref() {
            if !entries.iter().any(|e| e.backend.name() == forced) {
                return Err(BackendError::new(ErrorKind::NotFound, format!("unknown backend `{forced}`"))
                    .with_status(404));
            }
        }
        let chain_guard = self.chain.read();
        let chain = chain_guard.as_ref().filter(|_| request.backend.is_none());

        for e in entries.iter() {
            let info = e.backend.info();
            let name = info.name.as_str();
            // Not a candidate at all: another backend is forced, or outside the chain.
            if request.backend.as_deref().is_some_and(|f| f != name)
                || chain.is_some_and(|c| !c.iter().any(|n| n == name))
            {
                continue;
            }
            let skip = if !info.enabled {
                Some(SkipReason::Disabled)
            } else if excluded.contains(name) {
                Some(SkipReason::Excluded)
            } else if !request.tags.iter().all(|t| info.tags.contains(t)) {
                Some(SkipReason::MissingTags)
            } else if stream && !info.supports_streaming {
                Some(SkipReason::NoStreaming)
            } else if !request.tools.is_empty() && !info.supports_tools {
                Some(SkipReason::NoTools)
            } else if !info.supports_images && request.has_media() {
                Some(SkipReason::NoImages)
            } else if dialect.is_some_and(|d| info.provider != d.provider()) {
                Some(SkipReason::OtherDialect)
            } else if let Err(rej) = e.breaker.check() {
                if earliest.is_none_or(|x| rej.retry_at < x.retry_at) {
                    earliest = Some(rej);
                }
                Some(rejection_reason(rej, self.clock.now()))
            } else {
                None
            };
            considered += 1;
            other_dialect += usize::from(skip == Some(SkipReason::OtherDialect));
            match skip {
                Some(reason) if explain => {
                    decision.skipped.push(Skipped { backend: name.to_owned(), reason })
                }
                Some(_) => {}
                None => eligible.push(e.clone()),
            }
        }
        drop(entries);
        if let Some(d) = dialect.filter(|_| considered > 0 && other_dialect == considered) {
            // Waiting or retrying cannot help: say which provider the request needs.
            return Err(BackendError::invalid(format!(
                "the request carries {0}'s own tools, blocks or fields (server tools such as web search, \
                 a code execution container, MCP servers), and no candidate backend is of provider `{0}`",
                d.provider()
            )));
        }

        let weights = overrides.weights.unwrap_or_else(|| self.options.read().weights());
        let factors = score(&eligible, request, weights);
        let mut scored: Vec<(Arc<Entry>, Factors)> = eligible.into_iter().zip(factors).collect();
        scored.sort_by(|(ea, a), (eb, b)| {
            a.score
                .total_cmp(&b.score)
                // An unknown or infinite price loses a tie with the dearest known one.
                .then((!a.estimated_cost.is_finite()).cmp(&!b.estimated_cost.is_finite()))
                .then(ea.backend.info().priority.cmp(&eb.backend.info().priority))
                .then(ea.order.cmp(&eb.order))
        });
        if let Some(chain) = chain {
            scored
                .sort_by_key(|(e, _)| chain.iter().position(|n| n == e.backend.name()).unwrap_or(usize::MAX));
        }
        if explain {
            decision.candidates = scored.iter().map(|(e, f)| f.explain(e.backend.name())).collect();
        }
        let order = scored.into_iter().map(|(e, _)| e).collect();
        Ok(Plan { order, decision, earliest })
    }

    /// Routes one request with retries and failover (the seeds' `routeRequest`).
    pub async fn route_request(&self, request: &ChatRequest) -> Result<ChatResponse, RouteError> {
        self.route_request_with(request, RouteOverrides::default()).await
    }

    pub async fn route_request_with(
        &self,
        request: &ChatRequest,
        overrides: RouteOverrides,
    ) -> Result<ChatResponse, RouteError> {
        let (status, store) = match self.look_up(request, overrides.cache) {
            Lookup::Hit(resp) => return Ok(*resp),
            lookup => lookup.route(),
        };
        let mut run = self.start(request, false, overrides, status)?;
        loop {
            let (entry, permit, backoff) = match self.next_attempt(&mut run, request, false).await {
                Ok(x) => x,
                Err(e) => return Err(run.fail(e)),
            };
            let started = self.clock.now();
            let call = entry.backend.send(request);
            let result = if permit.is_probe() {
                let probe_timeout = entry.breaker.config().probe_timeout;
                match tokio::time::timeout(probe_timeout, call).await {
                    Ok(r) => r,
                    Err(_) => Err(BackendError::timeout(
                        "half-open probe exceeded probe_timeout",
                        crate::error::Phase::AwaitingResponse,
                    )
                    .with_backend(entry.backend.name())),
                }
            } else {
                call.await
            };
            let latency = self.clock.now().saturating_sub(started);
            let probe = permit.is_probe();
            match result {
                Ok(mut resp) => {
                    permit.record(Outcome::Success, None);
                    entry.metrics.record_success(
                        latency,
                        resp.cost,
                        resp.usage.input_tokens,
                        resp.usage.output_tokens,
                    );
                    self.costs.book(
                        Attribution::of(request),
                        entry.backend.name(),
                        billed_model(request, &entry),
                        resp.cost,
                        &resp.usage,
                        UsageOutcome::Success,
                    );
                    run.decision.attempts.push(Attempt::new(
                        entry.backend.name(),
                        None,
                        latency,
                        backoff,
                        probe,
                    ));
                    // Stored before the decision is attached: a hit gets its own.
                    if let (Some(key), Some(c)) = (store, self.cache.get()) {
                        if cache::is_cacheable(&resp) {
                            c.put(key, &resp);
                        }
                    }
                    resp.decision = Some(run.decision);
                    return Ok(resp);
                }
                Err(err) => self.attempt_failed(&mut run, entry, permit, err, latency, backoff),
            }
        }
    }

    /// Routes a streamed request. Returns once the stream is committed (its first content
    /// event arrived) or once every attempt failed before committing. After commit, a failure
    /// becomes the stream's terminal `Error` event — never a silent end, never a second
    /// backend's output spliced in (RT-7, RT-8).
    ///
    /// A cached answer is replayed as a stream. A streamed answer is stored once it completes
    /// (it ends with `Done` and is cacheable), as the JSON answer would have been; one that
    /// errs, is cut or is dropped by the caller stores nothing (see [`crate::cache`]).
    pub async fn route_stream(&self, request: &ChatRequest) -> Result<RoutedStream, RouteError> {
        self.route_stream_with(request, RouteOverrides::default()).await
    }

    pub async fn route_stream_with(
        &self,
        request: &ChatRequest,
        overrides: RouteOverrides,
    ) -> Result<RoutedStream, RouteError> {
        let (status, store) = match self.look_up(request, overrides.cache) {
            Lookup::Hit(resp) => return Ok(RoutedStream::replay(*resp)),
            lookup => lookup.route(),
        };
        let mut run = self.start(request, true, overrides, status)?;
        let first_token_deadline = self.options.read().retry.first_token_deadline;
        loop {
            let (entry, permit, backoff) = match self.next_attempt(&mut run, request, true).await {
                Ok(x) => x,
                Err(e) => return Err(run.fail(e)),
            };
            let started = self.clock.now();
            let wait = if permit.is_probe() {
                entry.breaker.config().probe_timeout.min(first_token_deadline)
            } else {
                first_token_deadline
            };
            let opened = tokio::time::timeout(wait, open_until_content(&*entry.backend, request)).await;
            let opened = match opened {
                Ok(r) => r,
                Err(_) => Err(BackendError::timeout(
                    "no content before the first-token deadline",
                    crate::error::Phase::AwaitingResponse,
                )),
            };
            let latency = self.clock.now().saturating_sub(started);
            let probe = permit.is_probe();
            match opened {
                Ok((buffered, rest)) => {
                    entry.metrics.record_ttft(latency);
                    // CB-11: the first content event is a success for the breaker. A regular
                    // permit is held until the stream ends so a mid-stream failure still
                    // counts (CB-2); a probe closes the breaker now.
                    let permit = if probe {
                        permit.record(Outcome::Success, None);
                        None
                    } else {
                        Some(permit)
                    };
                    run.decision.attempts.push(Attempt::new(
                        entry.backend.name(),
                        None,
                        latency,
                        backoff,
                        probe,
                    ));
                    let decision = Arc::new(Mutex::new(run.decision));
                    let model = billed_model(request, &entry).to_owned();
                    let mut inner = CommittedStream {
                        buffered: std::collections::VecDeque::with_capacity(buffered.len()),
                        rest,
                        permit,
                        entry,
                        decision,
                        started,
                        clock: self.clock.clone(),
                        // Kept only for a sink: without one nothing reads it, and a stream
                        // costs no copy of it.
                        request_id: if self.costs.has_sink() { request.request_id.clone() } else { None },
                        // Kept with or without a sink: the in-memory tracker counts per key.
                        tenant: request.tenant.clone(),
                        costs: self.costs.clone(),
                        model,
                        finished: false,
                        input_estimate: request.estimated_input_tokens(),
                        usage_seen: None,
                        output_bytes: 0,
                        store: self.storing(store),
                    };
                    // Counted on arrival: what the backend generated is billed whether or not
                    // the caller reads it before going away.
                    for ev in buffered {
                        inner.observe(&ev);
                        inner.buffered.push_back(ev);
                    }
                    return Ok(RoutedStream {
                        backend: inner.entry.backend.name().to_owned(),
                        decision: inner.decision.clone(),
                        inner: Events::Live(Box::pin(inner)),
                    });
                }
                Err(err) => self.attempt_failed(&mut run, entry, permit, err, latency, backoff),
            }
        }
    }

    /// What a committed stream needs to store its answer under `key`: nothing without a key
    /// (no cache, or caching bypassed), so that such a stream does no work for the cache.
    fn storing(&self, key: Option<CacheKey>) -> Option<Box<Storing>> {
        let key = key?;
        let cache = self.cache.get()?.clone();
        let answer = cache::Assembler::new(cache.max_entry_bytes());
        Some(Box::new(Storing { key, cache, answer }))
    }

    /// Bookkeeping of a failed attempt (breaker, metrics, decision), then what to do next.
    fn attempt_failed(
        &self,
        run: &mut Run,
        entry: Arc<Entry>,
        permit: Permit,
        err: BackendError,
        latency: Duration,
        backoff: Duration,
    ) {
        let mut err = ensure_backend(err, entry.backend.name());
        let probe = permit.is_probe();
        permit.record(err.outcome(), err.retry_after);
        // The hint the caller sees is when this backend is tried again: the breaker holds a
        // throttle for at most `max_throttle`, however long the provider asked for.
        err.retry_after = err.retry_after.map(|h| h.min(entry.breaker.config().max_throttle));
        entry.metrics.record_failure(err.kind);
        run.decision.attempts.push(Attempt::new(entry.backend.name(), Some(&err), latency, backoff, probe));
        run.after_error(entry, err, &self.options.read().retry);
    }

    /// A run of `request`, whose decision records what the cache did (`cache`).
    fn start(
        &self,
        request: &ChatRequest,
        stream: bool,
        overrides: RouteOverrides,
        cache: Option<CacheStatus>,
    ) -> Result<Run, RouteError> {
        let refused = RoutingDecision { cache, ..RoutingDecision::default() };
        if request.messages.is_empty() {
            return Err(RouteError::new(
                BackendError::invalid("request has no messages").with_status(400),
                refused,
            ));
        }
        self.budget.record_request();
        let plan = self
            .plan(request, &HashSet::new(), stream, overrides, true)
            .map_err(|e| RouteError::new(e, refused))?;
        let opts = self.options.read();
        let deadline = if stream { opts.retry.first_token_deadline } else { opts.retry.request_deadline };
        Ok(Run {
            decision: RoutingDecision { cache, ..plan.decision.clone() },
            plan: Some(plan),
            tried: HashSet::new(),
            last_error: None,
            retry_same: None,
            same_retries: 0,
            attempts: 0,
            max_attempts: opts.max_attempts.max(1),
            fallback: opts.fallback_enabled,
            deadline: self.clock.now().saturating_add(deadline),
            overrides,
        })
    }

    /// Finds the next backend to call and takes its permit, sleeping first when the only way
    /// forward is retrying the same backend.
    async fn next_attempt(
        &self,
        run: &mut Run,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<(Arc<Entry>, Permit, Duration), BackendError> {
        if run.attempts >= run.max_attempts {
            return Err(run.take_last_error("no attempts left"));
        }
        // First attempt uses the plan made at start; later ones re-plan (breakers moved).
        let plan = match run.plan.take() {
            Some(p) => p,
            None => {
                let tried: HashSet<&str> = run.tried.iter().map(String::as_str).collect();
                self.plan(request, &tried, stream, run.overrides, true)?
            }
        };
        let mut earliest = plan.earliest;
        let candidates: Vec<Arc<Entry>> = if run.attempts > 0 && !run.fallback {
            Vec::new()
        } else {
            plan.order.into_iter().filter(|e| !run.tried.contains(e.backend.name())).collect()
        };
        // Spend a retry only when there is someone to retry with: otherwise every request to
        // a forced backend that failed for good (401, quota) would take a token without
        // retrying, and an outage of that one backend would drain the process-wide budget
        // and deny real retries elsewhere.
        if run.attempts > 0
            && (!candidates.is_empty() || run.retry_same.is_some())
            && !self.budget.try_retry()
        {
            metrics::counter!("claudette_retry_budget_exhausted_total").increment(1);
            return Err(run.take_last_error("retry budget exhausted"));
        }
        for entry in candidates {
            match entry.breaker.acquire() {
                Ok(permit) => {
                    run.attempts += 1;
                    return Ok((entry, permit, Duration::ZERO));
                }
                Err(rej) => {
                    // A rejection is not an attempt (CB-6, FO-2).
                    if earliest.is_none_or(|x| rej.retry_at < x.retry_at) {
                        earliest = Some(rej);
                    }
                    run.decision.skipped.push(Skipped {
                        backend: entry.backend.name().to_owned(),
                        reason: rejection_reason(rej, self.clock.now()),
                    });
                }
            }
        }
        // Nobody new is eligible. Retry the same backend after back-off if the last error allows.
        if let Some((entry, hint)) = run.retry_same.take() {
            let policy = self.options.read().retry.clone();
            let delay = policy.backoff(run.same_retries, hint);
            let now = self.clock.now();
            let too_long = hint.is_some_and(|h| h > policy.max_hint);
            if !too_long && now.saturating_add(delay).saturating_add(Duration::from_secs(1)) <= run.deadline {
                tokio::time::sleep(delay).await;
                run.same_retries += 1;
                if let Ok(permit) = entry.breaker.acquire() {
                    run.attempts += 1;
                    return Ok((entry, permit, delay));
                }
            }
        }
        if let Some(err) = run.last_error.take() {
            return Err(err);
        }
        // Nothing was ever attempted: every backend is unavailable (CB-20). Answer at once
        // with the earliest time one may come back.
        Err(Plan::unavailable(earliest, self.clock.now()))
    }
}

/// Opens a backend stream and reads until the first content event, buffering what came
/// before it. A terminal event before any content settles the attempt.
async fn open_until_content(
    backend: &dyn crate::backend::Backend,
    request: &ChatRequest,
) -> Result<(Vec<StreamEvent>, EventStream), BackendError> {
    let mut stream = backend.send_stream(request).await?;
    let mut buffered = Vec::new();
    loop {
        match stream.next().await {
            Some(StreamEvent::Error { error }) => return Err(error),
            Some(ev @ StreamEvent::Done { .. }) => {
                // A complete, empty answer: nothing to fail over from.
                buffered.push(ev);
                return Ok((buffered, Box::pin(futures::stream::empty())));
            }
            Some(ev) => {
                let content = ev.is_content();
                buffered.push(ev);
                if content {
                    return Ok((buffered, stream));
                }
            }
            None => return Err(BackendError::interrupted("stream ended before any event")),
        }
    }
}

/// What the cache said about one request.
enum Lookup {
    /// No cache.
    Off,
    /// The stored answer, ready to return (boxed: the other outcomes are a few bytes).
    Hit(Box<ChatResponse>),
    /// Not found (or not looked up, [`CacheMode::Refresh`]): route, and store a complete answer
    /// under this key.
    Miss(CacheKey),
    /// Neither looked up nor stored.
    Bypass,
}

impl Lookup {
    /// For a request that is routed: the status its decision records, and where to store
    /// its answer.
    fn route(self) -> (Option<CacheStatus>, Option<CacheKey>) {
        match self {
            Lookup::Off => (None, None),
            Lookup::Bypass => (Some(CacheStatus::Bypass), None),
            Lookup::Miss(key) => (Some(CacheStatus::Miss), Some(key)),
            Lookup::Hit(_) => (Some(CacheStatus::Hit), None),
        }
    }
}

fn count_cache(status: CacheStatus) {
    metrics::counter!(crate::metrics::RESPONSE_CACHE_METRIC, "result" => status.as_str()).increment(1);
}

/// The model spend is booked under: the one asked for, else the backend's configured one.
/// Not the provider's answer (`gpt-4o-2024-08-06` for `gpt-4o`): a stream's end carries no
/// model, so booking the answer's name split one model into two lines of `group_by=model`
/// depending on whether the requests streamed.
fn billed_model<'a>(request: &'a ChatRequest, entry: &'a Entry) -> &'a str {
    request.model.as_deref().unwrap_or(&entry.backend.info().model)
}

fn ensure_backend(mut err: BackendError, name: &str) -> BackendError {
    if err.backend.is_none() {
        err.backend = Some(name.to_owned());
    }
    err
}

fn rejection_reason(rej: Rejection, now: Duration) -> SkipReason {
    let retry_in = rej.retry_in(now);
    match rej.reason {
        RejectReason::Throttled => SkipReason::Throttled { retry_in },
        _ => SkipReason::CircuitOpen { retry_in },
    }
}

/// Scores eligible entries. Each factor is normalised to 0..1, lower is better:
/// - cost: this request's estimated cost over the most expensive candidate's (the seeds
///   divided by a fixed €0.01, which saturates for any premium model);
/// - latency: smoothed latency over the slowest candidate's; 0.5 for a backend with no data
///   yet, so it is neither shunned nor blindly preferred;
/// - availability: failure ratio of the last 100 judged attempts;
/// - quality: 1 − the backend's quality (0..1, higher is better).
///
/// Odd prices never win: an infinite or NaN estimate (a price set to `inf` or NaN through the
/// library API or a plugin) is the worst cost, 1, and is left out of the maximum the others
/// are divided by; a negative one counts as free. Left alone, `inf / inf` is a NaN score, and
/// the NaN x86 produces is negative, which `total_cmp` sorts before every real score: the
/// priciest backend would be tried first while every other one got cost 0. A NaN score (NaN
/// quality or weights) sorts last for the same reason.
fn score(entries: &[Arc<Entry>], request: &ChatRequest, w: Weights) -> Vec<Factors> {
    let mut out: Vec<Factors> = entries
        .iter()
        .map(|e| {
            let (lat, fail) = e.metrics.score_inputs();
            let quality = e.backend.info().quality;
            Factors {
                score: 0.0,
                cost: 0.0,
                latency: lat.unwrap_or(-1.0),
                availability: fail,
                quality: if quality.is_nan() { 1.0 } else { 1.0 - quality.clamp(0.0, 1.0) },
                estimated_cost: e.backend.estimate_cost(request),
            }
        })
        .collect();
    let max_cost = out.iter().map(|f| f.estimated_cost).filter(|c| c.is_finite()).fold(0.0, f64::max);
    let max_lat = out.iter().map(|f| f.latency).fold(0.0, f64::max);
    for f in &mut out {
        f.cost = if !f.estimated_cost.is_finite() {
            1.0
        } else if max_cost > 0.0 {
            f.estimated_cost.max(0.0) / max_cost
        } else {
            0.0
        };
        f.latency = if f.latency < 0.0 {
            0.5
        } else if max_lat > 0.0 {
            f.latency / max_lat
        } else {
            0.0
        };
        f.score =
            f.cost * w.cost + f.latency * w.latency + f.availability * w.availability + f.quality * w.quality;
        if f.score.is_nan() {
            f.score = f64::INFINITY;
        }
    }
    out
}

/// One candidate's normalised factors (see [`score`]).
#[derive(Debug, Clone, Copy)]
struct Factors {
    score: f64,
    cost: f64,
    /// Raw EWMA in ms (negative: no data) until normalised.
    latency: f64,
    availability: f64,
    quality: f64,
    estimated_cost: f64,
}

impl Factors {
    fn explain(&self, backend: &str) -> CandidateScore {
        CandidateScore {
            backend: backend.to_owned(),
            score: self.score,
            cost: self.cost,
            latency: self.latency,
            availability: self.availability,
            quality: self.quality,
            estimated_cost: self.estimated_cost,
        }
    }
}

struct Plan {
    order: Vec<Arc<Entry>>,
    decision: RoutingDecision,
    earliest: Option<Rejection>,
}

impl Plan {
    fn unavailable_error(&self, now: Duration) -> BackendError {
        Self::unavailable(self.earliest, now)
    }

    /// CB-20: every backend open or throttled → 503 (429 if all throttled) with the earliest
    /// retry time; no backend at all → 503 without a hint.
    fn unavailable(earliest: Option<Rejection>, now: Duration) -> BackendError {
        match earliest {
            Some(r) => {
                let throttled = r.reason == RejectReason::Throttled;
                let wait = r.retry_in(now);
                BackendError::new(
                    if throttled { ErrorKind::RateLimited } else { ErrorKind::CircuitOpen },
                    format!("no backend available; earliest retry in {} ms", wait.as_millis()),
                )
                .with_status(if throttled { 429 } else { 503 })
                .with_retry_after(Some(wait))
            }
            None => BackendError::new(ErrorKind::CircuitOpen, "no backend can serve this request")
                .with_status(503),
        }
    }
}

/// State of one routed request.
struct Run {
    plan: Option<Plan>,
    decision: RoutingDecision,
    tried: HashSet<String>,
    last_error: Option<BackendError>,
    /// The backend to retry after back-off when nobody else is left, and its hint.
    retry_same: Option<(Arc<Entry>, Option<Duration>)>,
    same_retries: u32,
    attempts: u32,
    max_attempts: u32,
    fallback: bool,
    deadline: Duration,
    overrides: RouteOverrides,
}

impl Run {
    fn after_error(&mut self, entry: Arc<Entry>, err: BackendError, policy: &RetryPolicy) {
        let name = entry.backend.name().to_owned();
        let mut action = err.action();
        if err.is_possibly_accepted() && !policy.retry_possibly_accepted && action == RetryAction::Retry {
            action = RetryAction::Stop;
        }
        match action {
            RetryAction::Stop => {
                self.attempts = self.max_attempts;
                self.retry_same = None;
            }
            RetryAction::FailOver => {
                self.retry_same = None;
            }
            RetryAction::Retry => {
                self.retry_same = Some((entry, err.retry_after));
            }
        }
        self.tried.insert(name);
        self.last_error = Some(err);
    }

    fn take_last_error(&mut self, why: &str) -> BackendError {
        self.last_error.take().unwrap_or_else(|| BackendError::internal(format!("{why} before any attempt")))
    }

    fn fail(self, error: BackendError) -> RouteError {
        RouteError::new(error, self.decision)
    }
}

/// A request that could not be served, with the routing account of what was tried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct RouteError {
    pub error: BackendError,
    /// Boxed: errors travel by value through every `?`, the account rarely needs to.
    pub decision: Box<RoutingDecision>,
}

impl RouteError {
    pub fn new(error: BackendError, decision: RoutingDecision) -> Self {
        Self { error, decision: Box::new(decision) }
    }
    pub fn attempts(&self) -> usize {
        self.decision.attempts.len()
    }
}

/// A committed stream: the chosen backend's events, ending in exactly one `Done` or `Error`.
/// Dropping it cancels the upstream call.
pub struct RoutedStream {
    backend: String,
    decision: Arc<Mutex<RoutingDecision>>,
    inner: Events,
}

/// Where a routed stream's events come from.
enum Events {
    /// A backend's stream.
    Live(Pin<Box<CommittedStream>>),
    /// A cached answer, replayed: no backend, nothing to settle.
    Replay(std::vec::IntoIter<StreamEvent>),
}

impl std::fmt::Debug for RoutedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedStream").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl RoutedStream {
    /// A cached answer as a stream (see [`cache::replay`]). Its backend is the one that made
    /// the answer.
    fn replay(resp: ChatResponse) -> RoutedStream {
        RoutedStream {
            inner: Events::Replay(cache::replay(&resp).into_iter()),
            decision: Arc::new(Mutex::new(resp.decision.unwrap_or_default())),
            backend: resp.backend,
        }
    }

    /// Whether the stream replays a cached answer.
    pub fn is_cache_hit(&self) -> bool {
        matches!(self.inner, Events::Replay(_))
    }

    /// Backend serving the stream.
    pub fn backend(&self) -> &str {
        &self.backend
    }
    /// The routing account so far (the last attempt's outcome is final once the stream ended).
    pub fn decision(&self) -> RoutingDecision {
        self.decision.lock().clone()
    }
    /// Reads the routing account in place, without the copy [`RoutedStream::decision`] makes
    /// (the gateway reads it twice per stream: for the headers and at the end). `read` runs
    /// under the stream's lock: keep it short, and do not call back into this stream.
    pub fn with_decision<R>(&self, read: impl FnOnce(&RoutingDecision) -> R) -> R {
        read(&self.decision.lock())
    }
}

impl Stream for RoutedStream {
    type Item = StreamEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        match &mut self.inner {
            Events::Live(inner) => inner.as_mut().poll_next(cx),
            Events::Replay(events) => Poll::Ready(events.next()),
        }
    }
}

struct CommittedStream {
    buffered: std::collections::VecDeque<StreamEvent>,
    rest: EventStream,
    permit: Option<Permit>,
    entry: Arc<Entry>,
    decision: Arc<Mutex<RoutingDecision>>,
    started: Duration,
    clock: Arc<dyn Clock>,
    costs: Arc<CostTracker>,
    /// The request's id, for the usage sink (`None` without a sink).
    request_id: Option<String>,
    /// The request's tenant (gateway key), for the tracker's per-key spend and the sink.
    tenant: Option<String>,
    model: String,
    finished: bool,
    /// Prompt tokens by the cheap estimate, for a stream that ends before reporting usage.
    input_estimate: u32,
    /// The latest mid-stream usage (Anthropic's `message_start` / `message_delta`).
    usage_seen: Option<Usage>,
    /// Bytes of text, reasoning and tool arguments received from the backend.
    output_bytes: usize,
    /// The answer being assembled for the response cache; `None` when it is not to be stored
    /// (no cache, caching bypassed, or the answer outgrew what the cache keeps).
    store: Option<Box<Storing>>,
}

/// A stream's answer on its way into the cache: stored under `key` if the stream completes.
struct Storing {
    key: CacheKey,
    cache: Arc<dyn ResponseCache>,
    answer: cache::Assembler,
}

impl CommittedStream {
    fn attribution(&self) -> Attribution<'_> {
        Attribution { request_id: self.request_id.as_deref(), tenant: self.tenant.as_deref() }
    }

    /// Notes what an event adds to the bill, for a stream that ends without a `Done`, and to
    /// the answer being assembled for the cache.
    fn observe(&mut self, ev: &StreamEvent) {
        if let Some(store) = &mut self.store {
            if !store.answer.push(ev) {
                // Larger than the cache keeps: stop holding a copy.
                self.store = None;
            }
        }
        match ev {
            StreamEvent::TextDelta { text } | StreamEvent::ReasoningDelta { text } => {
                self.output_bytes = self.output_bytes.saturating_add(text.len());
            }
            StreamEvent::ToolCall { delta } => {
                self.output_bytes = self.output_bytes.saturating_add(delta.arguments.len());
            }
            StreamEvent::Usage { usage } => self.usage_seen = Some(*usage),
            StreamEvent::ThinkingSeal { .. }
            | StreamEvent::Native { .. }
            | StreamEvent::Citation { .. }
            | StreamEvent::NativeField { .. }
            | StreamEvent::TextEnd
            | StreamEvent::Done { .. }
            | StreamEvent::Error { .. } => {}
        }
    }

    /// At the stream's terminal event: stores the assembled answer when the stream completed
    /// (`Done`) with a cacheable answer. After an `Error` the partial answer is dropped, and a
    /// stream dropped before its end never gets here (S-11: partial streams are never cached).
    fn store_answer(&mut self, ev: &StreamEvent) {
        let Some(store) = self.store.take() else { return };
        let StreamEvent::Done { end } = ev else { return };
        let Storing { key, cache, answer } = *store;
        let Some(mut resp) = answer.finish(end, self.entry.backend.name(), &self.model) else { return };
        resp.latency = self.clock.now().saturating_sub(self.started);
        if cache::is_cacheable(&resp) {
            cache.put(key, &resp);
        }
    }

    /// Books the spend of a stream that failed or was dropped after it committed: the
    /// provider bills the prompt and every token generated until then, so leaving it out made
    /// `analyze_costs` and `total_cost` under-report exactly the streams that went wrong.
    /// The figures are estimates: mid-stream usage when the provider sent some, else the
    /// prompt estimate, and the output received so far.
    fn record_partial(&self, outcome: UsageOutcome) {
        let output = estimate_tokens_from_len(self.output_bytes);
        let usage = match self.usage_seen {
            Some(u) => Usage {
                input_tokens: if u.input_tokens > 0 { u.input_tokens } else { self.input_estimate },
                output_tokens: u.output_tokens.max(output),
                source: UsageSource::Estimated,
                ..u
            },
            None => Usage::estimated(self.input_estimate, output),
        };
        let cost = self.entry.backend.info().pricing.cost(&usage);
        self.entry.metrics.record_partial_cost(cost, usage.input_tokens, usage.output_tokens);
        self.costs.book(self.attribution(), self.entry.backend.name(), &self.model, cost, &usage, outcome);
    }

    fn settle(&mut self, ev: &StreamEvent) {
        let latency = self.clock.now().saturating_sub(self.started);
        match ev {
            StreamEvent::Done { end } => {
                if let Some(p) = self.permit.take() {
                    p.record(Outcome::Success, None);
                }
                self.entry.metrics.record_success(
                    latency,
                    end.cost,
                    end.usage.input_tokens,
                    end.usage.output_tokens,
                );
                self.costs.book(
                    self.attribution(),
                    self.entry.backend.name(),
                    &self.model,
                    end.cost,
                    &end.usage,
                    UsageOutcome::Success,
                );
            }
            StreamEvent::Error { error } => {
                if let Some(p) = self.permit.take() {
                    p.record(error.outcome(), error.retry_after);
                }
                self.entry.metrics.record_failure(error.kind);
                self.record_partial(UsageOutcome::Failed);
                let mut d = self.decision.lock();
                if let Some(a) = d.attempts.last_mut() {
                    a.outcome = AttemptOutcome::FailedAfterCommit;
                    a.error = Some(error.kind);
                    a.message = Some(error.message.clone());
                }
            }
            _ => {}
        }
        if let Some(a) = self.decision.lock().attempts.last_mut() {
            a.latency = latency;
        }
    }
}

impl Stream for CommittedStream {
    type Item = StreamEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let ev = if let Some(ev) = self.buffered.pop_front() {
            ev
        } else {
            match self.rest.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(ev)) => {
                    self.observe(&ev);
                    ev
                }
                // The backend contract says a terminal event always comes; enforce it here too.
                Poll::Ready(None) => StreamEvent::Error {
                    error: BackendError::interrupted("stream ended without a terminal event")
                        .with_backend(self.entry.backend.name()),
                },
            }
        };
        if ev.is_terminal() {
            self.finished = true;
            let ev = match ev {
                StreamEvent::Error { error } => {
                    StreamEvent::Error { error: ensure_backend(error, self.entry.backend.name()) }
                }
                other => other,
            };
            self.settle(&ev);
            self.store_answer(&ev);
            return Poll::Ready(Some(ev));
        }
        Poll::Ready(Some(ev))
    }
}

impl Drop for CommittedStream {
    fn drop(&mut self) {
        if !self.finished {
            // Client went away: cancelled, neutral for the breaker (permit dropped unrecorded),
            // but what was generated so far is billed.
            if let Some(a) = self.decision.lock().attempts.last_mut() {
                a.outcome = AttemptOutcome::Cancelled;
            }
            self.record_partial(UsageOutcome::Abandoned);
        }
    }
}
