//! Why a request went where it went: the explanation every routed response carries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// The router's account of one request: who was considered, how they scored, and every
/// attempt made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingDecision {
    /// Backends considered for the first attempt, best first.
    pub candidates: Vec<CandidateScore>,
    /// Backends left out before scoring, and why.
    pub skipped: Vec<Skipped>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// What the response cache did for this request; `None` when the router has no cache.
    /// A hit has no candidates and no attempts: no backend was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStatus>,
}

/// What the response cache did for one request (see [`crate::cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Answered from the cache: no upstream call, nothing billed.
    Hit,
    /// Routed to a backend: not in the cache, or the caller asked for a fresh answer
    /// ([`CacheMode::Refresh`](crate::cache::CacheMode::Refresh)). A complete answer is stored.
    Miss,
    /// The caller asked that the cache be left alone
    /// ([`CacheMode::Bypass`](crate::cache::CacheMode::Bypass)): neither looked up nor stored.
    Bypass,
}

impl CacheStatus {
    /// The stable lowercase name (`hit`, `miss`, `bypass`): header values and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

impl RoutingDecision {
    /// The backend of the last successful attempt.
    pub fn chosen(&self) -> Option<&str> {
        self.attempts.iter().rev().find(|a| a.outcome == AttemptOutcome::Success).map(|a| a.backend.as_str())
    }

    /// One line for a header or a log: `b1=0.31,b2=0.52;b1:error(overloaded),b2:ok`. With a
    /// response cache, a third part says what it did: `…;b2:ok;cache:miss`, and a hit, which
    /// has neither candidates nor attempts, is `;;cache:hit`.
    pub fn compact(&self) -> String {
        use std::fmt::Write as _;
        // Written in place (this is on every response's header path); writing to a String
        // cannot fail, so the `fmt::Result`s are ignored.
        let mut s = String::with_capacity(24 * (self.candidates.len() + self.attempts.len()) + 1);
        for (i, c) in self.candidates.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&c.backend);
            s.push('=');
            push_milli(&mut s, c.score);
        }
        s.push(';');
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&a.backend);
            match (&a.outcome, a.error) {
                (AttemptOutcome::Success, _) => s.push_str(":ok"),
                (o, Some(k)) => {
                    let _ = write!(s, ":{}({k})", o.as_str());
                }
                (o, None) => {
                    s.push(':');
                    s.push_str(o.as_str());
                }
            }
        }
        if let Some(cache) = self.cache {
            s.push_str(";cache:");
            s.push_str(cache.as_str());
        }
        s
    }
}

/// Appends `{:.3}` of `x`. A score (finite, not negative, not huge) is written as the integer
/// `x·1000` rounded: this runs for every candidate of every response, and the float
/// formatter cost more than the rest of the header. The product can differ from the exact
/// value only by a rounding error far below 10⁻⁶ at these magnitudes, so it rounds the same
/// way unless it lies that close to a half: then, and for anything else, `{:.3}` writes it.
fn push_milli(s: &mut String, x: f64) {
    use std::fmt::Write as _;
    let y = x * 1000.0;
    if x.is_sign_positive() && y < 1e9 && ((y - y.floor()) - 0.5).abs() > 1e-6 {
        // In range: 0 ≤ y < 10⁹, so the cast is exact after rounding.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = y.round() as u64;
        let _ = write!(s, "{}.{:03}", n / 1000, n % 1000);
        return;
    }
    let _ = write!(s, "{x:.3}");
}

/// One candidate's score, factor by factor. Each factor is normalised to 0..1 where lower is
/// better; `score` is their weighted sum (the seeds' formula, plus quality).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    pub backend: String,
    pub score: f64,
    pub cost: f64,
    pub latency: f64,
    pub availability: f64,
    pub quality: f64,
    /// Estimated cost of this request on this backend, in price-table currency.
    pub estimated_cost: f64,
}

/// A backend left out of a request, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub backend: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum SkipReason {
    Disabled,
    Excluded,
    /// Breaker open (or half-open with its probe taken) until `retry_in`.
    CircuitOpen {
        #[serde(with = "crate::types::duration_ms")]
        retry_in: Duration,
    },
    /// Rate limited until `retry_in`.
    Throttled {
        #[serde(with = "crate::types::duration_ms")]
        retry_in: Duration,
    },
    MissingTags,
    NoStreaming,
    NoTools,
    /// The request has images or documents (PDFs, read as page images) and the backend takes
    /// no images.
    NoImages,
    /// The request carries another provider's own tools or blocks (Anthropic's web search,
    /// say), which this backend's provider cannot take.
    OtherDialect,
    /// Already failed in this request.
    AlreadyFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Success,
    Error,
    /// A stream that failed after content reached the caller.
    FailedAfterCommit,
    Cancelled,
}

impl AttemptOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "ok",
            Self::Error => "error",
            Self::FailedAfterCommit => "failed_after_commit",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One call to one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub backend: String,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(with = "crate::types::duration_ms")]
    pub latency: Duration,
    /// Time slept before this attempt (back-off or a retry-after hint).
    #[serde(with = "crate::types::duration_ms")]
    pub backoff: Duration,
    /// Whether this attempt was the half-open probe of its breaker.
    #[serde(default)]
    pub probe: bool,
}

impl Attempt {
    /// A finished attempt: a success when `error` is `None`.
    pub fn new(
        backend: &str,
        error: Option<&crate::error::BackendError>,
        latency: Duration,
        backoff: Duration,
        probe: bool,
    ) -> Self {
        Self {
            backend: backend.to_owned(),
            outcome: if error.is_some() { AttemptOutcome::Error } else { AttemptOutcome::Success },
            error: error.map(|e| e.kind),
            message: error.map(|e| e.message.clone()),
            latency,
            backoff,
            probe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_outcome_is_a_third_part_only_with_a_cache() {
        let mut d = RoutingDecision {
            attempts: vec![Attempt::new("b1", None, Duration::ZERO, Duration::ZERO, false)],
            ..RoutingDecision::default()
        };
        assert_eq!(d.compact(), ";b1:ok");
        assert!(serde_json::to_value(&d).unwrap().get("cache").is_none());
        d.cache = Some(CacheStatus::Miss);
        assert_eq!(d.compact(), ";b1:ok;cache:miss");
        let hit = RoutingDecision { cache: Some(CacheStatus::Hit), ..RoutingDecision::default() };
        assert_eq!(hit.compact(), ";;cache:hit");
        let v = serde_json::to_value(&hit).unwrap();
        assert_eq!(v["cache"], "hit");
        assert_eq!(serde_json::from_value::<RoutingDecision>(v).unwrap(), hit);
    }

    /// The hand-written `{:.3}` writes what the formatter writes: on halves and near-halves
    /// (where the product's rounding could differ), on the edges of its range, and on a few
    /// hundred thousand pseudo-random scores.
    #[test]
    fn scores_are_written_as_the_formatter_writes_them() {
        let mut values = vec![
            0.0,
            -0.0,
            0.0005,
            0.0015,
            0.0025,
            1.0005,
            0.1235,
            0.9995,
            0.9994999,
            1.0,
            2.5,
            0.000_499_999,
            999_999.999_5,
            999_999.999_4,
            1e6,
            1e7,
            -0.4,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..300_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            values.push(match i % 4 {
                0 => unit,
                1 => unit * 3.0,
                // Thousandths and halves of them, as weights like 0.25 give.
                2 => (state % 4000) as f64 / 2000.0,
                _ => (state % 100_000) as f64 / 1000.0 + 0.0005,
            });
        }
        for x in values {
            let mut s = String::new();
            push_milli(&mut s, x);
            assert_eq!(s, format!("{x:.3}"), "{x:e}");
        }
    }
}
