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
}

impl RoutingDecision {
    /// The backend of the last successful attempt.
    pub fn chosen(&self) -> Option<&str> {
        self.attempts.iter().rev().find(|a| a.outcome == AttemptOutcome::Success).map(|a| a.backend.as_str())
    }

    /// One line for a header or a log: `b1=0.31,b2=0.52;b1:error(overloaded),b2:ok`.
    pub fn compact(&self) -> String {
        use std::fmt::Write as _;
        // Written in place (this is on every response's header path); writing to a String
        // cannot fail, so the `fmt::Result`s are ignored.
        let mut s = String::with_capacity(24 * (self.candidates.len() + self.attempts.len()) + 1);
        for (i, c) in self.candidates.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{}={:.3}", c.backend, c.score);
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
        s
    }
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
