//! Latency capture: the `metrics` facade for dashboards, a per-backend snapshot for routing.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata};
use parking_lot::Mutex;

/// Whole-call latency of successful calls, in seconds, labelled `backend`.
pub const METRIC_LATENCY: &str = "claudette_upstream_latency_seconds";
/// Time from the start of a streamed call to its first content event, labelled `backend`.
pub const METRIC_TTFT: &str = "claudette_upstream_ttft_seconds";
/// Finished upstream calls, labelled `backend` and `status`: the HTTP status for calls that
/// got one and ended there (`200`, `429`...), else the error kind (`timeout`, `transport`,
/// `stream_interrupted`, `malformed_response`...). Counted once per call, when it ends.
pub const METRIC_REQUESTS: &str = "claudette_upstream_requests_total";

/// What a backend measured about its own speed, for the router's latency score.
///
/// Only successful calls are recorded: a timed-out call's "latency" is its timeout, which
/// says nothing about how fast the backend answers when it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyStats {
    /// Whole-call time of the last successful call (send to last body byte or `Done`).
    pub last_latency: Option<Duration>,
    /// Time to the first content event of the last stream that produced one.
    pub last_ttft: Option<Duration>,
    /// Successful calls recorded.
    pub successes: u64,
}

/// Shared between a backend and the streams it returns, which outlive the `send_stream` call.
#[derive(Debug, Default)]
pub(crate) struct StatsCell(Mutex<LatencyStats>);

impl StatsCell {
    pub(crate) fn snapshot(&self) -> LatencyStats {
        *self.0.lock()
    }
}

/// Records the end of a call in the metrics facade and, for successes, in `stats`.
///
/// The metric keys of the common events are built once per backend: emitting through the
/// macros with a `backend.clone()` label allocated a label vector and strings per event.
/// Keys (not handles) are kept, and resolved against the recorder installed at emit time,
/// so a recorder installed after the backend was built still gets every event.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    pub(crate) backend: String,
    pub(crate) stats: Arc<StatsCell>,
    keys: Arc<Keys>,
}

#[derive(Debug)]
struct Keys {
    latency: Key,
    ttft: Key,
    /// `METRIC_REQUESTS` with `status="200"`, the status of nearly every success.
    requests_200: Key,
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Recorder {
    pub(crate) fn new(backend: String, stats: Arc<StatsCell>) -> Self {
        let b = || Label::new("backend", backend.clone());
        let keys = Keys {
            latency: Key::from_parts(METRIC_LATENCY, vec![b()]),
            ttft: Key::from_parts(METRIC_TTFT, vec![b()]),
            requests_200: Key::from_parts(METRIC_REQUESTS, vec![b(), Label::new("status", "200")]),
        };
        Self { backend, stats, keys: Arc::new(keys) }
    }

    pub(crate) fn success(&self, status: u16, latency: Duration) {
        {
            let mut s = self.stats.0.lock();
            s.last_latency = Some(latency);
            s.successes = s.successes.saturating_add(1);
        }
        let keys = &*self.keys;
        metrics::with_recorder(|r| {
            r.register_histogram(&keys.latency, &METADATA).record(latency.as_secs_f64());
            if status == 200 {
                r.register_counter(&keys.requests_200, &METADATA).increment(1);
            }
        });
        if status != 200 {
            self.count(status.to_string());
        }
    }

    pub(crate) fn failure(&self, error: &claudette_core::BackendError, after_2xx: bool) {
        let label = match error.status {
            Some(s) if !after_2xx => s.to_string(),
            _ => error.kind.as_str().to_owned(),
        };
        self.count(label);
    }

    pub(crate) fn ttft(&self, ttft: Duration) {
        self.stats.0.lock().last_ttft = Some(ttft);
        metrics::with_recorder(|r| {
            r.register_histogram(&self.keys.ttft, &METADATA).record(ttft.as_secs_f64())
        });
    }

    fn count(&self, status: String) {
        metrics::counter!(METRIC_REQUESTS, "backend" => self.backend.clone(), "status" => status)
            .increment(1);
    }
}
