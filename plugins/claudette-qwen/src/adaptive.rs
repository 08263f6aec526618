//! Adaptive timeouts for a self-hosted model server: the seeds' `AdaptiveQwenBackend`
//! settings, turned into an explicit, testable rule.
//!
//! A cloud API answers in seconds or not at all; a self-hosted GPU box answers in whatever
//! time its queue, its quantisation and a possibly cold model allow. One fixed deadline is
//! wrong for it both ways: cloud-sized, it cuts off a healthy but busy box; generous, it
//! waits minutes on a dead one. So the deadline follows what the box has been doing. The rule
//! is documented on [`AdaptiveTimeout`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claudette_core::{
    BackendError, BackendSettings, ChatRequest, Clock, ErrorKind, Observation, Outcome, Timeouts,
};
use parking_lot::Mutex;
use serde_json::Value;

/// Weight of the newest sample in the latency EWMA.
pub const EWMA_ALPHA: f64 = 0.2;

/// How many recent successful latencies the p95 is taken over.
pub const LATENCY_WINDOW: usize = 64;

/// Factor a timeout grows by after a call timed out (a cold model gets a longer chance).
pub const TIMEOUT_GROWTH: f64 = 1.5;

/// What is learned is forgotten after this many health-check intervals without new evidence.
pub const STALE_AFTER_INTERVALS: u32 = 10;

/// Metadata key that marks a request as long pipeline work (see
/// [`AdaptiveConfig::async_contribution_enabled`]). Only the JSON value `true` counts.
pub const ASYNC_CONTRIBUTION_KEY: &str = "async_contribution";

/// The `extra` settings read by [`AdaptiveConfig::from_settings`].
pub const ADAPTIVE_KEYS: [&str; 7] = [
    "base_timeout_ms",
    "max_timeout_ms",
    "timeout_multiplier",
    "health_check_interval_ms",
    "consecutive_failures_threshold",
    "async_contribution_enabled",
    "latency_adaptation_enabled",
];

/// The seeds' `AdaptiveBackendSettings`, checked.
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `base_timeout_ms` | integer | 30000 | lower bound of the deadline, and the deadline when nothing is known or the box is unhealthy |
/// | `max_timeout_ms` | integer | 120000 | upper bound of the deadline; the deadline of async-contribution requests |
/// | `timeout_multiplier` | number ≥ 1 | 3.0 | deadline = multiplier × typical latency |
/// | `health_check_interval_ms` | integer | 30000 | how often a host should probe; ×10 is how long learned latency stays valid |
/// | `consecutive_failures_threshold` | integer ≥ 1 | 3 | failures in a row that make the backend unhealthy |
/// | `async_contribution_enabled` | bool | false | give requests marked `"async_contribution": true` the max deadline |
/// | `latency_adaptation_enabled` | bool | true | `false` pins the deadline at `base_timeout_ms` |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    pub base_timeout: Duration,
    pub max_timeout: Duration,
    pub timeout_multiplier: f64,
    pub health_check_interval: Duration,
    pub consecutive_failures_threshold: u32,
    pub async_contribution_enabled: bool,
    pub latency_adaptation_enabled: bool,
}

impl Default for AdaptiveConfig {
    /// The seeds' defaults.
    fn default() -> Self {
        Self {
            base_timeout: Duration::from_millis(30_000),
            max_timeout: Duration::from_millis(120_000),
            timeout_multiplier: 3.0,
            health_check_interval: Duration::from_millis(30_000),
            consecutive_failures_threshold: 3,
            async_contribution_enabled: false,
            latency_adaptation_enabled: true,
        }
    }
}

impl AdaptiveConfig {
    /// Reads the keys of [`ADAPTIVE_KEYS`] from `settings.extra`, defaults for absent ones.
    ///
    /// Does not reject other keys (the adapter decides which keys exist). Every error is a
    /// `Config` error naming the backend and the key at fault.
    pub fn from_settings(settings: &BackendSettings) -> Result<Self, BackendError> {
        let d = Self::default();
        let ms = |key: &str, default: Duration| -> Result<Duration, BackendError> {
            Ok(settings.extra_as::<u64>(key)?.map_or(default, Duration::from_millis))
        };
        let config = Self {
            base_timeout: ms("base_timeout_ms", d.base_timeout)?,
            max_timeout: ms("max_timeout_ms", d.max_timeout)?,
            timeout_multiplier: settings
                .extra_as::<f64>("timeout_multiplier")?
                .unwrap_or(d.timeout_multiplier),
            health_check_interval: ms("health_check_interval_ms", d.health_check_interval)?,
            consecutive_failures_threshold: settings
                .extra_as::<u32>("consecutive_failures_threshold")?
                .unwrap_or(d.consecutive_failures_threshold),
            async_contribution_enabled: settings
                .extra_as::<bool>("async_contribution_enabled")?
                .unwrap_or(d.async_contribution_enabled),
            latency_adaptation_enabled: settings
                .extra_as::<bool>("latency_adaptation_enabled")?
                .unwrap_or(d.latency_adaptation_enabled),
        };
        config.check().map_err(|e| BackendError::config(format!("backend `{}`: {e}", settings.name)))?;
        Ok(config)
    }

    /// The invariants the rule relies on; the message names the setting at fault.
    pub fn check(&self) -> Result<(), String> {
        if self.base_timeout.is_zero() {
            return Err("setting `base_timeout_ms` must be greater than zero".into());
        }
        if self.max_timeout < self.base_timeout {
            return Err(format!(
                "setting `max_timeout_ms` ({} ms) must not be below `base_timeout_ms` ({} ms)",
                self.max_timeout.as_millis(),
                self.base_timeout.as_millis()
            ));
        }
        // Below 1 the deadline would sit under the latency the box usually needs.
        if !self.timeout_multiplier.is_finite() || self.timeout_multiplier < 1.0 {
            return Err(format!(
                "setting `timeout_multiplier` must be a finite number of at least 1, got {}",
                self.timeout_multiplier
            ));
        }
        if self.health_check_interval.is_zero() {
            return Err("setting `health_check_interval_ms` must be greater than zero".into());
        }
        if self.consecutive_failures_threshold == 0 {
            return Err("setting `consecutive_failures_threshold` must be at least 1".into());
        }
        Ok(())
    }

    /// How long learned latency and a grown deadline stay valid without new evidence.
    pub fn stale_after(&self) -> Duration {
        self.health_check_interval.saturating_mul(STALE_AFTER_INTERVALS)
    }
}

/// A point-in-time view of what the adapter has learned, for metrics, logs and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveSnapshot {
    /// The deadline an ordinary request would get now.
    pub timeout: Duration,
    /// EWMA of recent successful latencies, if any are still valid.
    pub ewma: Option<Duration>,
    /// p95 of the valid samples in the window.
    pub p95: Option<Duration>,
    /// Valid samples in the window.
    pub samples: usize,
    /// The floor raised by recent timeouts, if any.
    pub grown: Option<Duration>,
    pub consecutive_failures: u32,
    pub healthy: bool,
}

/// Learns a deadline from observed latencies. Sans-IO: it is told what happened
/// ([`observe`](Self::observe)) and asked for a deadline ([`timeouts`](Self::timeouts)); time
/// comes from the injected [`Clock`].
///
/// # The rule
///
/// - **Learning.** Each successful call adds its latency (whole call; for a stream, time to
///   its terminal event) to an EWMA (α = [`EWMA_ALPHA`]) and to a window of the last
///   [`LATENCY_WINDOW`] samples.
/// - **Deadline.** `clamp(timeout_multiplier × max(p95(window), ewma), base_timeout,
///   max_timeout)`, or `base_timeout` with no valid sample. The p95 keeps a box with
///   occasional long answers from being cut off at its median; the EWMA lets a box that just
///   got slower (a bigger batch, a longer context) be followed before the p95 moves.
/// - **Growth after a timeout.** A `Timeout` error raises a floor to `1.5 ×` the current
///   deadline (at most `max_timeout`), so a cold model that is still loading gets a longer
///   chance on the next call. The next success clears the floor: its latency is better
///   evidence than the guess.
/// - **Unhealthy.** `consecutive_failures_threshold` failures in a row (errors that count
///   against a circuit breaker: timeout, overload, transport, malformed or cut-off answers)
///   make [`is_healthy`](Self::is_healthy) false and pin the deadline at `base_timeout`
///   until the next success, so a dead box fails fast instead of at an ever-growing
///   deadline. With the defaults a cold model thus gets 30 s, 45 s and 67.5 s before the
///   backend is reported down. Caller-side errors (invalid request, context overflow,
///   cancellation, 429, auth, unknown model) neither count nor break a streak.
/// - **Forgetting.** Samples, the EWMA and a grown floor older than
///   `10 × health_check_interval` are dropped: a box idle that long may have been restarted
///   or given another model, and its old latency says little.
/// - **Async contribution.** With `async_contribution_enabled`, a request whose `metadata`
///   has `"async_contribution": true` (long pipeline work nobody waits on interactively)
///   gets `max_timeout` whatever was learned or the health verdict.
/// - **No adaptation.** With `latency_adaptation_enabled = false` the deadline is always
///   `base_timeout` (async contribution still applies); health is still tracked.
///
/// # Which timeout it sets
///
/// The deadline becomes the call's **first-byte** timeout: the wait for the answer to
/// start. That is where a slow, cold or dead box shows, and for a non-stream call it bounds
/// the whole answer (vLLM, SGLang and llama.cpp send the headers only with the finished
/// body). The **total** timeout stays as configured but is raised to the deadline if it is
/// shorter, so a stream that is producing tokens is never cut off by a deadline learned for
/// time-to-answer; `connect` and `idle` (the longest gap between stream events) stay as
/// configured. A stream's sample is its time to the terminal event, a generous stand-in for
/// its first byte (mixing in time-to-first-token would shorten non-stream deadlines, and
/// [`timeouts`](Self::timeouts) is not told whether the next call streams).
///
/// Known limit: [`Observation`] does not say which request it was, so the latency of async
/// contribution calls also feeds the learned deadline (bounded by `max_timeout` like all).
pub struct AdaptiveTimeout {
    config: AdaptiveConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl fmt::Debug for AdaptiveTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveTimeout")
            .field("config", &self.config)
            .field("now", &self.snapshot())
            .finish()
    }
}

#[derive(Debug, Default)]
struct State {
    /// (when, latency) of recent successes, oldest first.
    window: VecDeque<(Duration, Duration)>,
    /// (value, when last updated).
    ewma: Option<(Duration, Duration)>,
    /// (floor, when set) raised by a timeout.
    grown: Option<(Duration, Duration)>,
    consecutive_failures: u32,
}

impl AdaptiveTimeout {
    pub fn new(config: AdaptiveConfig, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock, state: Mutex::new(State::default()) }
    }

    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// Timeouts for the next call of `request`, derived from `configured` (see the rule).
    pub fn timeouts(&self, configured: &Timeouts, request: &ChatRequest) -> Timeouts {
        let deadline =
            if self.is_async_contribution(request) { self.config.max_timeout } else { self.current() };
        Timeouts {
            connect: configured.connect,
            first_byte: deadline,
            idle: configured.idle,
            total: configured.total.max(deadline),
        }
    }

    /// Whether `request` is async-contribution work that gets `max_timeout`.
    pub fn is_async_contribution(&self, request: &ChatRequest) -> bool {
        self.config.async_contribution_enabled
            && request.metadata.get(ASYNC_CONTRIBUTION_KEY).is_some_and(|v| *v == Value::Bool(true))
    }

    /// The deadline an ordinary (not async-contribution) request gets now.
    pub fn current(&self) -> Duration {
        let now = self.clock.now();
        let mut state = self.state.lock();
        self.expire(&mut state, now);
        self.deadline(&state)
    }

    /// Records how a call went.
    pub fn observe(&self, observation: &Observation) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        self.expire(&mut state, now);
        match observation.error {
            None => {
                let latency = observation.latency;
                let ewma = match state.ewma {
                    Some((previous, _)) => {
                        let secs =
                            EWMA_ALPHA * latency.as_secs_f64() + (1.0 - EWMA_ALPHA) * previous.as_secs_f64();
                        Duration::try_from_secs_f64(secs).unwrap_or(latency)
                    }
                    None => latency,
                };
                state.ewma = Some((ewma, now));
                if state.window.len() >= LATENCY_WINDOW {
                    state.window.pop_front();
                }
                state.window.push_back((now, latency));
                state.grown = None;
                if state.consecutive_failures >= self.config.consecutive_failures_threshold {
                    tracing::info!(
                        latency_ms = latency.as_millis(),
                        "self-hosted backend answered again; healthy"
                    );
                }
                state.consecutive_failures = 0;
            }
            Some(kind) if kind.outcome() == Outcome::Failure => {
                let before = self.deadline(&state);
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                let threshold = self.config.consecutive_failures_threshold;
                if state.consecutive_failures >= threshold {
                    state.grown = None;
                    if state.consecutive_failures == threshold {
                        tracing::warn!(
                            failures = threshold,
                            timeout_ms = self.config.base_timeout.as_millis(),
                            "self-hosted backend failing repeatedly; unhealthy, deadline back to base"
                        );
                    }
                } else if kind == ErrorKind::Timeout && self.config.latency_adaptation_enabled {
                    let grown = scale(before, TIMEOUT_GROWTH).min(self.config.max_timeout);
                    tracing::debug!(
                        from_ms = before.as_millis(),
                        to_ms = grown.as_millis(),
                        "call timed out; giving the next one longer"
                    );
                    state.grown = Some((grown, now));
                }
            }
            // Neither the box's fault nor evidence that it works.
            Some(_) => {}
        }
    }

    /// False once `consecutive_failures_threshold` failures happened in a row, until the next
    /// success.
    pub fn is_healthy(&self) -> bool {
        self.state.lock().consecutive_failures < self.config.consecutive_failures_threshold
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.state.lock().consecutive_failures
    }

    /// What is known now (expired evidence already dropped).
    pub fn snapshot(&self) -> AdaptiveSnapshot {
        let now = self.clock.now();
        let mut state = self.state.lock();
        self.expire(&mut state, now);
        AdaptiveSnapshot {
            timeout: self.deadline(&state),
            ewma: state.ewma.map(|(v, _)| v),
            p95: p95(&state.window),
            samples: state.window.len(),
            grown: state.grown.map(|(v, _)| v),
            consecutive_failures: state.consecutive_failures,
            healthy: state.consecutive_failures < self.config.consecutive_failures_threshold,
        }
    }

    /// Drops evidence older than the staleness horizon.
    fn expire(&self, state: &mut State, now: Duration) {
        let horizon = self.config.stale_after();
        let stale = |at: Duration| now.saturating_sub(at) > horizon;
        while state.window.front().is_some_and(|(at, _)| stale(*at)) {
            state.window.pop_front();
        }
        if state.ewma.is_some_and(|(_, at)| stale(at)) {
            state.ewma = None;
        }
        if state.grown.is_some_and(|(_, at)| stale(at)) {
            state.grown = None;
        }
    }

    fn deadline(&self, state: &State) -> Duration {
        let c = &self.config;
        if !c.latency_adaptation_enabled || state.consecutive_failures >= c.consecutive_failures_threshold {
            return c.base_timeout;
        }
        let typical = match (p95(&state.window), state.ewma.map(|(v, _)| v)) {
            (Some(p), Some(e)) => Some(p.max(e)),
            (p, e) => p.or(e),
        };
        let learned = typical.map_or(c.base_timeout, |t| scale(t, c.timeout_multiplier));
        let floor = state.grown.map_or(Duration::ZERO, |(g, _)| g);
        learned.max(floor).clamp(c.base_timeout, c.max_timeout)
    }
}

/// `d × factor`, saturating instead of panicking (`Duration::mul_f64` panics on overflow).
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// Nearest-rank 95th percentile of the window's latencies.
fn p95(window: &VecDeque<(Duration, Duration)>) -> Option<Duration> {
    if window.is_empty() {
        return None;
    }
    let mut latencies: Vec<Duration> = window.iter().map(|(_, l)| *l).collect();
    latencies.sort_unstable();
    // rank = ceil(0.95 n), 1-based; (95 n + 99) / 100 is the same in integers.
    let rank = (latencies.len() * 95).div_ceil(100).max(1);
    latencies.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_nearest_rank() {
        let w = |ms: &[u64]| {
            ms.iter().map(|m| (Duration::ZERO, Duration::from_millis(*m))).collect::<VecDeque<_>>()
        };
        assert_eq!(p95(&w(&[])), None);
        assert_eq!(p95(&w(&[7])), Some(Duration::from_millis(7)));
        // 20 samples: rank 19.
        let mut v: Vec<u64> = (1..=20).collect();
        v.reverse();
        assert_eq!(p95(&w(&v)), Some(Duration::from_millis(19)));
        // 100 samples: rank 95.
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(p95(&w(&v)), Some(Duration::from_millis(95)));
    }

    #[test]
    fn scale_saturates() {
        assert_eq!(scale(Duration::MAX, 3.0), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(2), 1.5), Duration::from_secs(3));
    }
}
