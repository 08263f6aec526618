//! The per-backend circuit breaker (reliability-spec §2.1, CB-1..CB-20).
//!
//! One [`CircuitBreaker`] guards one backend (CB-1). Every attempt takes a [`Permit`] first and
//! records exactly one [`Outcome`] on it (CB-2); the breaker decides from those outcomes whether
//! the next attempt may go out at all. Refusing costs no I/O: a refused `acquire()` returns a
//! [`Rejection`] carrying the earliest clock time at which the backend could be tried again, so
//! the router can fail over at once or, when every backend is refused, answer with an honest
//! `Retry-After` (CB-20).
//!
//! States:
//!
//! * **Closed**: everything passes (unless a 429 throttled the backend, CB-15). Failures are
//!   counted two ways: a streak of consecutive failures (CB-3) and a failure rate over a bucketed
//!   sliding window (CB-4); either trips the breaker. Outcomes older than the window do not
//!   count (CB-5).
//! * **Open**: every `acquire()` is refused until a deadline (CB-6). The open time doubles with
//!   each open since the last clean period, up to `open_max`, with jitter so that a fleet of
//!   gateways does not probe in lockstep (CB-7). Deadlines only ever move later (CB-8).
//! * **HalfOpen**: entered lazily by the first `acquire()` at or after the deadline, which gets
//!   the probe permit (CB-9). Only `probe_permits` permits are out at a time (CB-10), so a
//!   recovering backend sees one request, not a thundering herd. The probe's success closes the
//!   breaker (CB-11), its failure reopens it for longer (CB-12), and a probe that never reports
//!   cannot wedge the breaker (CB-13, CB-14).
//!
//! There is no background task: every transition happens inside `acquire`, `check` or
//! `record`, driven by the injected [`Clock`] (CB-17), which is read at most once per call
//! (not at all by `acquire`/`check` on a Closed, unthrottled breaker).
//!
//! Performance (CB-19): the whole state is one small struct behind one `parking_lot` mutex; the
//! hot path (`acquire` + `record(Success)` while Closed) does no allocation, no logging and no
//! metric call, and the failure rate is kept as running totals rather than summed per call. Metric keys are built once per breaker; metrics are emitted after the lock is
//! released and only when something noteworthy happened (a transition, a rejection, a probe
//! outcome, a throttle).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::metrics::{Key, Label, Level, Metadata};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize, Serializer};

use crate::clock::Clock;
use crate::error::Outcome;
use crate::types::duration_ms;

/// Tuning of a breaker. The defaults are reliability-spec §2.1's; all are configuration values.
///
/// In configuration files durations are milliseconds under a `_ms` name (`window_ms = 30000`);
/// unknown fields are rejected, so a typo cannot silently leave a default in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Sliding window W for the failure rate (CB-4) and for how far apart the failures of a
    /// streak may be (CB-3).
    #[serde(rename = "window_ms", with = "duration_ms")]
    pub window: Duration,
    /// Number of buckets the window is cut into; an outcome counts for between
    /// `window - window/buckets` and `window`.
    pub buckets: u32,
    /// N: this many consecutive failures, each within `window` of the previous, open the
    /// breaker (CB-3). 0 disables the streak trip.
    pub consecutive_failures: u32,
    /// The failure rate is only judged once the window holds this many successes + failures.
    pub min_calls: u32,
    /// Failure share (0..=1) at or above which the breaker opens (CB-4).
    pub failure_rate: f64,
    /// Open time of the first open since a clean period (CB-7).
    #[serde(rename = "open_base_ms", with = "duration_ms")]
    pub open_base: Duration,
    /// Cap on the doubled open time, before jitter; also the length of Closed time that forgives
    /// one open (CB-7).
    #[serde(rename = "open_max_ms", with = "duration_ms")]
    pub open_max: Duration,
    /// Relative jitter on open times: 0.1 means ×U(0.9, 1.1). Clamped to 0..=1.
    pub jitter: f64,
    /// Permits handed out while HalfOpen (CB-10). At least 1 is always allowed, or the breaker
    /// could never close again.
    pub probe_permits: u32,
    /// Time the router gives a probe before recording it as a Failure (CB-13). The breaker only
    /// carries the value; the router enforces it.
    #[serde(rename = "probe_timeout_ms", with = "duration_ms")]
    pub probe_timeout: Duration,
    /// A probe outstanding longer than this counts as failed: the next `acquire()`/`check()`
    /// reopens the breaker (CB-13), so a lost permit cannot keep a backend out forever.
    #[serde(rename = "half_open_max_wait_ms", with = "duration_ms")]
    pub half_open_max_wait: Duration,
    /// Open time after a 401/403 (CB-16).
    #[serde(rename = "auth_open_ms", with = "duration_ms")]
    pub auth_open: Duration,
    /// Open time after a quota/billing refusal (CB-16).
    #[serde(rename = "quota_open_ms", with = "duration_ms")]
    pub quota_open: Duration,
    /// Throttle time after a 429 without a usable hint (CB-15).
    #[serde(rename = "default_throttle_ms", with = "duration_ms")]
    pub default_throttle: Duration,
    /// Cap on any throttle hint, so a hostile or buggy `Retry-After` cannot park a backend for
    /// days (CB-15).
    #[serde(rename = "max_throttle_ms", with = "duration_ms")]
    pub max_throttle: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            buckets: 10,
            consecutive_failures: 5,
            min_calls: 10,
            failure_rate: 0.5,
            open_base: Duration::from_secs(10),
            open_max: Duration::from_secs(300),
            jitter: 0.1,
            probe_permits: 1,
            probe_timeout: Duration::from_secs(30),
            half_open_max_wait: Duration::from_secs(60),
            auth_open: Duration::from_secs(300),
            quota_open: Duration::from_secs(3600),
            default_throttle: Duration::from_secs(2),
            max_throttle: Duration::from_secs(300),
        }
    }
}

impl BreakerConfig {
    /// The nominal open time for the `k`-th open (k ≥ 1): `min(open_base·2^(k−1), open_max)`,
    /// before jitter (CB-7).
    pub fn nominal_open(&self, k: u32) -> Duration {
        let base = nanos(self.open_base);
        let shift = k.saturating_sub(1).min(63);
        let doubled = base.saturating_mul(1u64 << shift);
        Duration::from_nanos(doubled.min(nanos(self.open_max)))
    }

    /// [`Self::nominal_open`] times a uniform factor in `1 ± jitter`.
    fn jittered_open(&self, k: u32) -> Duration {
        let nominal = self.nominal_open(k);
        let jitter = if self.jitter.is_finite() { self.jitter.clamp(0.0, 1.0) } else { 0.0 };
        if jitter == 0.0 {
            return nominal;
        }
        let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
        // `as` saturates on overflow and maps NaN to 0; factor is within 0..=2 anyway.
        Duration::from_nanos((nanos(nominal) as f64 * factor) as u64)
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of the `claudette_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `acquire()` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Open after failures (CB-6).
    Open,
    /// HalfOpen and every probe permit is taken (CB-10).
    ProbeInFlight,
    /// A 429 asked us to stay away until `retry_at` (CB-15).
    Throttled,
    /// Open after a 401/403: a human probably has to fix the key (CB-16).
    Credential,
    /// Open after a quota/billing refusal (CB-16).
    Quota,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::ProbeInFlight => "probe_in_flight",
            Self::Throttled => "throttled",
            Self::Credential => "credential",
            Self::Quota => "quota",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused `acquire()`: no I/O happened and no attempt was used (CB-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    /// Clock time (same origin as the breaker's [`Clock`]) from which the backend may accept
    /// again: the later of the open deadline and the throttle deadline. For
    /// [`RejectReason::ProbeInFlight`] it is the time by which the probe must have reported.
    /// The router takes the earliest over all backends for `Retry-After` (CB-20).
    pub retry_at: Duration,
}

impl Rejection {
    /// Time left until `retry_at`, zero if it has passed.
    pub fn retry_in(&self, now: Duration) -> Duration {
        self.retry_at.saturating_sub(now)
    }
}

/// Lifetime counters of one breaker (CB-18). The same events are also emitted through the
/// `metrics` facade; these exist so that tests and the admin API can read them without a
/// recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BreakerCounters {
    /// Transitions into Open (from Closed or HalfOpen).
    pub opened: u64,
    /// Transitions Open → HalfOpen.
    pub half_opened: u64,
    /// Transitions into Closed (probe success or manual reset).
    pub closed: u64,
    /// Refused `acquire()` calls. `check()` does not count.
    pub rejections: u64,
    pub probe_successes: u64,
    /// Probe Failure, Credential or Quota outcomes, and probes given up after
    /// `half_open_max_wait`.
    pub probe_failures: u64,
    /// Throttle outcomes recorded.
    pub throttles: u64,
}

/// A consistent view of a breaker at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    /// Current streak of failures (CB-3).
    pub consecutive_failures: u32,
    /// k of CB-7: opens since the last clean period, with the Closed-time decay applied.
    pub opens: u32,
    /// The open deadline, while Open (may already have passed: the next `acquire()` probes).
    #[serde(serialize_with = "opt_ms")]
    pub retry_at: Option<Duration>,
    /// The throttle deadline, while it lies in the future.
    #[serde(serialize_with = "opt_ms")]
    pub throttled_until: Option<Duration>,
    /// Probe permits currently out.
    pub probes_in_flight: u32,
    /// Successes and failures inside the sliding window.
    pub window_successes: u32,
    pub window_failures: u32,
    pub counters: BreakerCounters,
}

fn opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration_ms::serialize(d, s),
        None => s.serialize_none(),
    }
}

/// Why the breaker is Open; decides the [`RejectReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenCause {
    Failures,
    Credential,
    Quota,
}

impl OpenCause {
    fn reason(self) -> RejectReason {
        match self {
            Self::Failures => RejectReason::Open,
            Self::Credential => RejectReason::Credential,
            Self::Quota => RejectReason::Quota,
        }
    }
}

/// Successes and failures seen during one slice of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    successes: u32,
    failures: u32,
}

/// Everything that changes, behind the one mutex.
#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// Bumped on every state change and reset. A permit remembers the generation it was issued
    /// in; outcomes of permits from an earlier generation no longer steer the state (a probe
    /// that was given up on, a request that was in flight when the breaker opened).
    generation: u64,
    cause: OpenCause,
    /// Open deadline; meaningful while Open.
    open_until: Duration,
    /// Throttle deadline; not throttled once `now >= throttled_until`.
    throttled_until: Duration,
    /// k of CB-7, without the decay of the current Closed period (see `opens_at`).
    opens: u32,
    /// Start of the current Closed period, for the decay of k.
    closed_since: Duration,
    consecutive: u32,
    last_failure_at: Duration,
    probes_out: u32,
    /// When the outstanding probes went from 0 to 1 (CB-13).
    probe_since: Duration,
    /// Ring of window slices; slot `epoch % len` holds slice `epoch` (time / bucket length).
    buckets: Box<[Bucket]>,
    /// Newest slice the ring has been advanced to; slices older than `head - len` are cleared.
    head: u64,
    /// Running totals over the ring, so judging the rate does not sum the buckets.
    window_successes: u32,
    window_failures: u32,
    counters: BreakerCounters,
}

impl Inner {
    /// The generation, if a permit can be granted without looking at the time: Closed and no
    /// throttle deadline set (an expired one is cleared by the next slow-path call).
    fn fast_generation(&self) -> Option<u64> {
        (self.state == BreakerState::Closed && self.throttled_until == Duration::ZERO)
            .then_some(self.generation)
    }

    /// Advances the ring to slice `epoch`, clearing the slices that left the window (CB-5),
    /// and returns the slot of the current slice. A clock that went backwards keeps writing
    /// into the newest slice.
    fn advance(&mut self, epoch: u64) -> usize {
        let len = self.buckets.len() as u64;
        if epoch > self.head {
            if epoch - self.head >= len {
                self.clear_window(epoch);
            } else {
                for e in self.head + 1..=epoch {
                    if let Some(b) = self.buckets.get_mut((e % len) as usize) {
                        self.window_successes = self.window_successes.saturating_sub(b.successes);
                        self.window_failures = self.window_failures.saturating_sub(b.failures);
                        *b = Bucket::default();
                    }
                }
                self.head = epoch;
            }
        }
        (self.head % len.max(1)) as usize
    }

    fn clear_window(&mut self, epoch: u64) {
        self.buckets.fill(Bucket::default());
        self.window_successes = 0;
        self.window_failures = 0;
        self.head = epoch;
    }

    fn count(&mut self, epoch: u64, success: bool) {
        let slot = self.advance(epoch);
        if let Some(b) = self.buckets.get_mut(slot) {
            if success {
                b.successes = b.successes.saturating_add(1);
                self.window_successes = self.window_successes.saturating_add(1);
            } else {
                b.failures = b.failures.saturating_add(1);
                self.window_failures = self.window_failures.saturating_add(1);
            }
        }
    }
}

/// What happened inside the lock that must be reported once it is released.
#[derive(Debug, Default)]
struct Effects {
    transition: Option<BreakerState>,
    rejected: bool,
    probe: Option<bool>,
    throttled: bool,
    /// A Credential/Quota open to log, with its duration.
    log: Option<(OpenCause, Duration)>,
}

/// Metric keys, built once per breaker so that emitting a metric never allocates.
#[derive(Debug)]
struct Meters {
    to_closed: Key,
    to_open: Key,
    to_half_open: Key,
    rejections: Key,
    state: Key,
    probe_success: Key,
    probe_failure: Key,
    throttles: Key,
}

impl Meters {
    fn new(backend: &str) -> Self {
        let b = || Label::new("backend", backend.to_owned());
        let transition = |to: &'static str| {
            Key::from_parts("claudette_breaker_transitions_total", vec![b(), Label::new("to", to)])
        };
        let probe = |result: &'static str| {
            Key::from_parts("claudette_breaker_probes_total", vec![b(), Label::new("result", result)])
        };
        Self {
            to_closed: transition("closed"),
            to_open: transition("open"),
            to_half_open: transition("half_open"),
            rejections: Key::from_parts("claudette_breaker_rejections_total", vec![b()]),
            state: Key::from_parts("claudette_breaker_state", vec![b()]),
            probe_success: probe("success"),
            probe_failure: probe("failure"),
            throttles: Key::from_parts("claudette_breaker_throttles_total", vec![b()]),
        }
    }
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

fn bump(key: &Key) {
    ::metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(1));
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The circuit breaker of one backend. Shared as `Arc<CircuitBreaker>`; `Send + Sync`.
pub struct CircuitBreaker {
    backend: String,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    /// Length of one window bucket in nanoseconds (≥ 1).
    bucket_nanos: u64,
    probe_permits: u32,
    meters: Meters,
    /// Hint, written at the end of each locked section: the breaker was left Closed and
    /// unthrottled, so `acquire`/`check` should try the clock-free fast path first. Otherwise
    /// they read the clock before locking and lock once. Correctness never depends on it: the
    /// fast path re-checks under the lock.
    fast: AtomicBool,
    inner: Mutex<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("CircuitBreaker");
        d.field("backend", &self.backend);
        // try_lock: formatting must never block or deadlock, e.g. from a panic message.
        match self.inner.try_lock() {
            Some(g) => d.field("state", &g.state).field("opens", &g.opens),
            None => d.field("state", &"<locked>"),
        };
        d.field("config", &self.config).finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A Closed breaker for `backend`. Sets the state gauge to 0.
    pub fn new(backend: impl Into<String>, config: BreakerConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        let backend = backend.into();
        let buckets = config.buckets.max(1);
        let bucket_nanos = (nanos(config.window) / u64::from(buckets)).max(1);
        let now = clock.now();
        let meters = Meters::new(&backend);
        ::metrics::with_recorder(|r| r.register_gauge(&meters.state, &METADATA).set(0.0));
        Arc::new(Self {
            bucket_nanos,
            probe_permits: config.probe_permits.max(1),
            meters,
            fast: AtomicBool::new(true),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                generation: 0,
                cause: OpenCause::Failures,
                open_until: Duration::ZERO,
                throttled_until: Duration::ZERO,
                opens: 0,
                closed_since: now,
                consecutive: 0,
                last_failure_at: Duration::ZERO,
                probes_out: 0,
                probe_since: Duration::ZERO,
                buckets: vec![Bucket::default(); buckets as usize].into_boxed_slice(),
                head: nanos(now) / bucket_nanos,
                window_successes: 0,
                window_failures: 0,
                counters: BreakerCounters::default(),
            }),
            backend,
            config,
            clock,
        })
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks to make one attempt. `Ok` carries the permit on which the attempt's outcome must be
    /// recorded (or which is dropped, CB-14); `Err` means: do not call this backend now.
    ///
    /// Open past its deadline becomes HalfOpen here and this call gets the probe (CB-9); a probe
    /// outstanding longer than `half_open_max_wait` is given up on first (CB-13).
    pub fn acquire(self: &Arc<Self>) -> Result<Permit, Rejection> {
        // Fast path: Closed and not throttled needs no clock (the clock read is a large part
        // of the cost of a breaker call on some machines).
        if self.fast.load(Ordering::Relaxed) {
            if let Some(generation) = self.inner.lock().fast_generation() {
                return Ok(Permit { breaker: Arc::clone(self), generation, probe: false, done: false });
            }
        }
        let now = self.clock.now();
        let mut fx = Effects::default();
        let result = {
            let mut g = self.inner.lock();
            let result = match self.admit(&mut g, now, true, &mut fx) {
                Ok(probe) => Ok((probe, g.generation)),
                Err(rejection) => {
                    g.counters.rejections += 1;
                    fx.rejected = true;
                    Err(rejection)
                }
            };
            self.settle(&g);
            result
        };
        self.emit(&fx);
        result.map(|(probe, generation)| Permit { breaker: Arc::clone(self), generation, probe, done: false })
    }

    /// Would `acquire()` succeed now? Takes no permit, counts no rejection and never moves Open
    /// to HalfOpen, so the router can filter candidates before scoring without disturbing
    /// anything. HalfOpen with a free probe permit (or Open past its deadline) answers `Ok`.
    ///
    /// The one state change it may make is CB-13's: a probe outstanding longer than
    /// `half_open_max_wait` is given up on and the breaker reopens, exactly as the next
    /// `acquire()` would do; otherwise `check` would keep answering "probe in flight" for a
    /// probe that will never report.
    pub fn check(&self) -> Result<(), Rejection> {
        if self.fast.load(Ordering::Relaxed) && self.inner.lock().fast_generation().is_some() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut fx = Effects::default();
        let result = {
            let mut g = self.inner.lock();
            let result = self.admit(&mut g, now, false, &mut fx).map(|_| ());
            self.settle(&g);
            result
        };
        self.emit(&fx);
        result
    }

    /// The current state, as last materialised: an Open breaker past its deadline still reads
    /// Open until an `acquire()` moves it to HalfOpen (CB-9, no background timer).
    pub fn state(&self) -> BreakerState {
        self.inner.lock().state
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = self.clock.now();
        let mut g = self.inner.lock();
        g.advance(self.epoch(now));
        let (window_successes, window_failures) = (g.window_successes, g.window_failures);
        BreakerSnapshot {
            state: g.state,
            consecutive_failures: g.consecutive,
            opens: self.opens_at(&g, now),
            retry_at: (g.state == BreakerState::Open).then_some(g.open_until),
            throttled_until: (g.throttled_until > now).then_some(g.throttled_until),
            probes_in_flight: g.probes_out,
            window_successes,
            window_failures,
            counters: g.counters.clone(),
        }
    }

    /// Manual reset (admin action): Closed, window and streak cleared, open and throttle
    /// deadlines cleared (the CB-8 exception), k back to 0 — an operator who resets a breaker
    /// says the backend is fixed. Permits issued before the reset no longer steer the state.
    pub fn reset(&self) {
        let now = self.clock.now();
        let mut fx = Effects::default();
        {
            let mut g = self.inner.lock();
            self.close(&mut g, now, &mut fx);
            g.opens = 0;
            self.settle(&g);
        }
        self.emit(&fx);
    }

    /// An active health check's result (FO-3). A passing check on an Open backend moves its
    /// deadline to now, so the next `acquire()` may probe; it never closes the breaker itself,
    /// because a listing endpoint answering says little about completions. Failing checks do
    /// nothing here (the health checker decides eligibility).
    pub fn record_health_check(&self, ok: bool) {
        if !ok {
            return;
        }
        let now = self.clock.now();
        let mut g = self.inner.lock();
        if g.state == BreakerState::Open && g.open_until > now {
            g.open_until = now;
        }
    }

    // ---- internals; all run with the lock held ------------------------------------------

    /// Updates the fast-path hint from the state about to be unlocked.
    fn settle(&self, g: &Inner) {
        let fast = g.fast_generation().is_some();
        if self.fast.load(Ordering::Relaxed) != fast {
            self.fast.store(fast, Ordering::Relaxed);
        }
    }

    /// The admission decision shared by `acquire` (`take = true`) and `check`.
    /// `Ok(true)` means the (would-be) permit is a probe.
    fn admit(&self, g: &mut Inner, now: Duration, take: bool, fx: &mut Effects) -> Result<bool, Rejection> {
        self.reap_stuck_probe(g, now, fx);
        if g.throttled_until != Duration::ZERO && now >= g.throttled_until {
            // Expired: forget it, so the clock-free fast path applies again.
            g.throttled_until = Duration::ZERO;
        }
        let throttled = now < g.throttled_until;
        let throttle = Rejection { reason: RejectReason::Throttled, retry_at: g.throttled_until };
        match g.state {
            BreakerState::Closed => {
                if throttled {
                    return Err(throttle);
                }
                Ok(false)
            }
            BreakerState::Open => {
                if now < g.open_until {
                    // The earliest time it could accept is after both deadlines (CB-20).
                    let retry_at = g.open_until.max(g.throttled_until);
                    return Err(Rejection { reason: g.cause.reason(), retry_at });
                }
                if throttled {
                    return Err(throttle);
                }
                if take {
                    self.set_state(g, BreakerState::HalfOpen, fx);
                    g.counters.half_opened += 1;
                    take_probe(g, now);
                }
                Ok(true)
            }
            BreakerState::HalfOpen => {
                if throttled {
                    return Err(throttle);
                }
                if g.probes_out >= self.probe_permits {
                    return Err(Rejection {
                        reason: RejectReason::ProbeInFlight,
                        retry_at: self.probe_due(g),
                    });
                }
                if take {
                    take_probe(g, now);
                }
                Ok(true)
            }
        }
    }

    /// The time by which an outstanding probe should have reported: the router's probe
    /// timeout, or at the latest the point where CB-13 gives up on it.
    fn probe_due(&self, g: &Inner) -> Duration {
        let wait = self.config.probe_timeout.min(self.config.half_open_max_wait);
        g.probe_since.saturating_add(wait)
    }

    /// CB-13: a probe outstanding for longer than `half_open_max_wait` counts as failed.
    fn reap_stuck_probe(&self, g: &mut Inner, now: Duration, fx: &mut Effects) {
        if g.state == BreakerState::HalfOpen
            && g.probes_out > 0
            && now.saturating_sub(g.probe_since) > self.config.half_open_max_wait
        {
            g.counters.probe_failures += 1;
            fx.probe = Some(false);
            self.trip(g, now, fx);
        }
    }

    fn record(&self, generation: u64, probe: bool, outcome: Outcome, retry_after: Option<Duration>) {
        let now = self.clock.now();
        let mut fx = Effects::default();
        {
            let mut g = self.inner.lock();
            let current = generation == g.generation;
            let live_probe = probe && current && g.state == BreakerState::HalfOpen;
            let counts = current && g.state == BreakerState::Closed;
            match outcome {
                Outcome::Neutral => {
                    if live_probe {
                        release_probe(&mut g);
                    }
                }
                Outcome::Success => {
                    if live_probe {
                        g.counters.probe_successes += 1;
                        fx.probe = Some(true);
                        self.close(&mut g, now, &mut fx);
                    } else if counts {
                        g.consecutive = 0;
                        g.count(self.epoch(now), true);
                        self.check_rate(&mut g, now, &mut fx);
                    }
                }
                Outcome::Failure => {
                    if live_probe {
                        g.counters.probe_failures += 1;
                        fx.probe = Some(false);
                        self.trip(&mut g, now, &mut fx);
                    } else if counts {
                        g.count(self.epoch(now), false);
                        let in_streak =
                            g.consecutive > 0 && now.saturating_sub(g.last_failure_at) <= self.config.window;
                        g.consecutive = if in_streak { g.consecutive.saturating_add(1) } else { 1 };
                        g.last_failure_at = now;
                        let n = self.config.consecutive_failures;
                        if n > 0 && g.consecutive >= n {
                            self.trip(&mut g, now, &mut fx);
                        } else {
                            self.check_rate(&mut g, now, &mut fx);
                        }
                    }
                }
                Outcome::Throttle => {
                    // CB-15: not a Failure, needs no probe. A throttled probe has proven
                    // nothing either way, so its permit goes back.
                    let hint =
                        retry_after.unwrap_or(self.config.default_throttle).min(self.config.max_throttle);
                    let until = now.saturating_add(hint);
                    g.throttled_until = g.throttled_until.max(until); // CB-8
                    g.counters.throttles += 1;
                    fx.throttled = true;
                    if live_probe {
                        release_probe(&mut g);
                    }
                }
                Outcome::Credential | Outcome::Quota => {
                    // CB-16: a fact about the account, whichever permit reports it.
                    let (cause, open_for) = if outcome == Outcome::Credential {
                        (OpenCause::Credential, self.config.auth_open)
                    } else {
                        (OpenCause::Quota, self.config.quota_open)
                    };
                    if live_probe {
                        g.counters.probe_failures += 1;
                        fx.probe = Some(false);
                    }
                    self.open_until(&mut g, now, now.saturating_add(open_for), cause, &mut fx);
                    if fx.log.is_some() {
                        fx.log = Some((cause, open_for));
                    }
                }
            }
            self.settle(&g);
        }
        self.emit(&fx);
    }

    fn release_probe_of(&self, generation: u64) {
        let mut g = self.inner.lock();
        if generation == g.generation && g.state == BreakerState::HalfOpen {
            release_probe(&mut g);
        }
    }

    /// CB-4: enough calls in the window and too many of them failed.
    fn check_rate(&self, g: &mut Inner, now: Duration, fx: &mut Effects) {
        let (s, f) = (g.window_successes, g.window_failures);
        let total = s.saturating_add(f);
        if total > 0
            && total >= self.config.min_calls
            && f64::from(f) / f64::from(total) >= self.config.failure_rate
        {
            self.trip(g, now, fx);
        }
    }

    /// Open after failures with k + 1 (CB-3, CB-4, CB-12, CB-13).
    fn trip(&self, g: &mut Inner, now: Duration, fx: &mut Effects) {
        self.apply_decay(g, now);
        g.opens = g.opens.saturating_add(1);
        let open_for = self.config.jittered_open(g.opens);
        self.open_until(g, now, now.saturating_add(open_for), OpenCause::Failures, fx);
    }

    /// Open (or stay Open) until at least `deadline`. CB-8: the deadline only moves later; the
    /// cause follows whichever deadline wins. Sets `fx.log` when a Credential/Quota cause is
    /// new, so each such open is logged once, not once per rejected request.
    fn open_until(
        &self,
        g: &mut Inner,
        now: Duration,
        deadline: Duration,
        cause: OpenCause,
        fx: &mut Effects,
    ) {
        let was_open = g.state == BreakerState::Open;
        let previous_cause = g.cause;
        if !was_open {
            self.apply_decay(g, now);
            // A stale deadline from an earlier open is in the past; max() below is harmless.
        }
        if !was_open || deadline >= g.open_until {
            g.cause = cause;
        }
        g.open_until = g.open_until.max(deadline);
        if !was_open {
            self.set_state(g, BreakerState::Open, fx);
            g.counters.opened += 1;
        }
        g.consecutive = 0;
        if cause != OpenCause::Failures && g.cause == cause && (!was_open || previous_cause != cause) {
            fx.log = Some((cause, Duration::ZERO));
        }
    }

    /// Probe success or manual reset: Closed with a clean window (CB-11). k is kept (the
    /// caller of a reset zeroes it).
    fn close(&self, g: &mut Inner, now: Duration, fx: &mut Effects) {
        if g.state != BreakerState::Closed {
            self.set_state(g, BreakerState::Closed, fx);
            g.counters.closed += 1;
        } else {
            g.generation = g.generation.wrapping_add(1);
        }
        g.open_until = Duration::ZERO;
        g.throttled_until = Duration::ZERO;
        g.cause = OpenCause::Failures;
        g.closed_since = now;
        g.consecutive = 0;
        g.last_failure_at = Duration::ZERO;
        g.clear_window(self.epoch(now));
    }

    fn set_state(&self, g: &mut Inner, to: BreakerState, fx: &mut Effects) {
        g.state = to;
        g.generation = g.generation.wrapping_add(1);
        g.probes_out = 0;
        g.probe_since = Duration::ZERO;
        fx.transition = Some(to);
    }

    /// Leaving Closed: fold the Closed time into k (CB-7: −1 per `open_max` of Closed time).
    fn apply_decay(&self, g: &mut Inner, now: Duration) {
        if g.state == BreakerState::Closed {
            g.opens = self.opens_at(g, now);
            g.closed_since = now;
        }
    }

    fn opens_at(&self, g: &Inner, now: Duration) -> u32 {
        if g.state != BreakerState::Closed {
            return g.opens;
        }
        let period = nanos(self.config.open_max);
        if period == 0 {
            return g.opens;
        }
        let steps = nanos(now.saturating_sub(g.closed_since)) / period;
        g.opens.saturating_sub(u32::try_from(steps).unwrap_or(u32::MAX))
    }

    fn epoch(&self, now: Duration) -> u64 {
        nanos(now) / self.bucket_nanos
    }

    /// Reports what happened, after the lock is released.
    fn emit(&self, fx: &Effects) {
        if let Some(to) = fx.transition {
            let key = match to {
                BreakerState::Closed => &self.meters.to_closed,
                BreakerState::Open => &self.meters.to_open,
                BreakerState::HalfOpen => &self.meters.to_half_open,
            };
            bump(key);
            ::metrics::with_recorder(|r| {
                r.register_gauge(&self.meters.state, &METADATA).set(to.gauge_value())
            });
            tracing::debug!(backend = %self.backend, state = to.as_str(), "circuit breaker transition");
        }
        if fx.rejected {
            bump(&self.meters.rejections);
        }
        match fx.probe {
            Some(true) => bump(&self.meters.probe_success),
            Some(false) => bump(&self.meters.probe_failure),
            None => {}
        }
        if fx.throttled {
            bump(&self.meters.throttles);
        }
        // CB-16: once per open, with the backend's name and never anything credential-bearing.
        match fx.log {
            Some((OpenCause::Credential, open_for)) => tracing::warn!(
                backend = %self.backend,
                open_for_s = open_for.as_secs(),
                "backend rejected its credential (401/403); circuit open"
            ),
            Some((OpenCause::Quota, open_for)) => tracing::warn!(
                backend = %self.backend,
                open_for_s = open_for.as_secs(),
                "backend reports quota or billing exhausted; circuit open"
            ),
            _ => {}
        }
    }
}

fn take_probe(g: &mut Inner, now: Duration) {
    if g.probes_out == 0 {
        g.probe_since = now;
    }
    g.probes_out += 1;
}

fn release_probe(g: &mut Inner) {
    g.probes_out = g.probes_out.saturating_sub(1);
    if g.probes_out == 0 {
        g.probe_since = Duration::ZERO;
    }
}

/// Leave to make one attempt on a backend. Record its outcome with [`Permit::record`];
/// dropping it unrecorded (cancellation, a dropped future, a panic) counts as Neutral, and a
/// probe permit goes back so that the next `acquire()` can probe (CB-14).
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    generation: u64,
    probe: bool,
    done: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("backend", &self.breaker.backend)
            .field("probe", &self.probe)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Permit {
    /// Whether this is the HalfOpen probe: the router gives it `probe_timeout` (CB-13).
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The breaker this permit belongs to.
    pub fn backend(&self) -> &str {
        &self.breaker.backend
    }

    /// Records the attempt's outcome (CB-2). `retry_after` is the server's hint, used for
    /// [`Outcome::Throttle`] (CB-15; 2 s without one, capped at `max_throttle`).
    pub fn record(mut self, outcome: Outcome, retry_after: Option<Duration>) {
        self.done = true;
        self.breaker.record(self.generation, self.probe, outcome, retry_after);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.release_probe_of(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CircuitBreaker>();
        assert_send_sync::<Permit>();
    }

    #[test]
    fn nominal_open_doubles_and_saturates() {
        let c = BreakerConfig::default();
        let secs: Vec<u64> = (1..=8).map(|k| c.nominal_open(k).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(c.nominal_open(u32::MAX), Duration::from_secs(300));
        assert_eq!(c.nominal_open(0), Duration::from_secs(10));
    }

    #[test]
    fn config_reads_milliseconds_and_rejects_typos() {
        let c: BreakerConfig =
            serde_json::from_str(r#"{"window_ms": 1000, "consecutive_failures": 3}"#).unwrap();
        assert_eq!(c.window, Duration::from_secs(1));
        assert_eq!(c.consecutive_failures, 3);
        assert_eq!(c.open_max, Duration::from_secs(300));
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"windw_ms": 1000}"#).is_err());
    }
}
