//! One error type for every backend, whose kind tells the router what it may do.
//!
//! The classification follows reliability-spec §2.1 (CB-2 outcome classes) and §2.2 (RT-3
//! retry classes). Providers only decide the [`ErrorKind`]; what that means for retries,
//! failover and the circuit breaker is decided here, once.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong, in the terms a router needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// 429 rate limit (not quota). Carries a retry-after hint when the provider sent one.
    RateLimited,
    /// 5xx, 529, an `overloaded_error` event: the provider is struggling.
    Overloaded,
    /// No answer in time: connect, first byte, idle gap in a stream, or total deadline.
    Timeout,
    /// Connection refused or reset, DNS, TLS: nothing usable came back.
    Transport,
    /// 401/403: the credential is wrong or not allowed here.
    Auth,
    /// 402, or 429 `insufficient_quota` / `enforced_spend_limit_reached`: the account is out
    /// of money until a human acts.
    QuotaExhausted,
    /// The prompt does not fit the model's window.
    ContextOverflow,
    /// The provider refused the content (safety block, content filter).
    ContentPolicy,
    /// 400/413/422 and other caller errors.
    InvalidRequest,
    /// 404: unknown model or endpoint.
    NotFound,
    /// The provider answered 2xx with something we cannot read (bad JSON, wrong shape).
    MalformedResponse,
    /// A stream stopped without the provider's end marker or with an error mid-way.
    StreamInterrupted,
    /// The breaker of this backend (or every backend) refused the call without I/O.
    CircuitOpen,
    /// The backend cannot do this (e.g. streaming, tools).
    Unsupported,
    /// Bad settings for this backend.
    Config,
    /// The caller went away.
    Cancelled,
    /// A bug or an unexpected state on our side.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::Auth => "auth",
            Self::QuotaExhausted => "quota_exhausted",
            Self::ContextOverflow => "context_overflow",
            Self::ContentPolicy => "content_policy",
            Self::InvalidRequest => "invalid_request",
            Self::NotFound => "not_found",
            Self::MalformedResponse => "malformed_response",
            Self::StreamInterrupted => "stream_interrupted",
            Self::CircuitOpen => "circuit_open",
            Self::Unsupported => "unsupported",
            Self::Config => "config",
            Self::Cancelled => "cancelled",
            Self::Internal => "internal",
        }
    }

    /// The default reading of an HTTP status; adapters refine it from the body (a 429 that
    /// says `insufficient_quota` is quota, a 400 that says "context length" is overflow).
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::Auth,
            402 => Self::QuotaExhausted,
            404 => Self::NotFound,
            408 => Self::Timeout,
            // 409 (conflict, e.g. a concurrent-request lock) is retryable per RT-3.
            409 | 500..=599 => Self::Overloaded,
            429 => Self::RateLimited,
            400..=499 => Self::InvalidRequest,
            _ => Self::MalformedResponse,
        }
    }

    /// The breaker's view of an attempt that ended with this error (CB-2).
    pub fn outcome(self) -> Outcome {
        match self {
            Self::RateLimited => Outcome::Throttle,
            Self::Auth => Outcome::Credential,
            Self::QuotaExhausted => Outcome::Quota,
            Self::Overloaded
            | Self::Timeout
            | Self::Transport
            | Self::MalformedResponse
            | Self::StreamInterrupted => Outcome::Failure,
            Self::ContextOverflow
            | Self::ContentPolicy
            | Self::InvalidRequest
            | Self::NotFound
            | Self::CircuitOpen
            | Self::Unsupported
            | Self::Config
            | Self::Cancelled
            | Self::Internal => Outcome::Neutral,
        }
    }

    /// What the router may do next (RT-3, RT-5, FO-2).
    pub fn action(self) -> RetryAction {
        match self {
            Self::RateLimited | Self::Overloaded | Self::Timeout | Self::Transport => RetryAction::Retry,
            // A malformed 2xx body usually means a broken proxy or server build: another
            // backend may well be fine, the same one probably is not.
            Self::MalformedResponse | Self::StreamInterrupted => RetryAction::FailOver,
            // 401/403/quota: never the same credential again, another backend may work.
            Self::Auth | Self::QuotaExhausted => RetryAction::FailOver,
            // Unsupported and CircuitOpen are local: another backend may serve it.
            Self::Unsupported | Self::CircuitOpen => RetryAction::FailOver,
            // 404 model-not-found may fall through to a backend that has the model
            // (wire-protocols (c) #13); it never counts against the breaker.
            Self::NotFound => RetryAction::FailOver,
            Self::ContextOverflow
            | Self::ContentPolicy
            | Self::InvalidRequest
            | Self::Config
            | Self::Cancelled
            | Self::Internal => RetryAction::Stop,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a finished attempt counts for its backend's circuit breaker (reliability-spec CB-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// Not counted: the caller's fault or a local decision.
    Neutral,
    /// 429: skip the backend until the hint, count nothing.
    Throttle,
    /// 401/403: open at once for `auth_open`.
    Credential,
    /// Out of money: open at once for `quota_open`.
    Quota,
}

/// What the router may do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAction {
    /// Transient: fail over first; retry the same backend after back-off when it is the only
    /// one left.
    Retry,
    /// Another backend may succeed; this one must not be tried again for this request.
    FailOver,
    /// Nobody will do better: return the error.
    Stop,
}

/// When, relative to the request, an I/O error happened. A timeout after the body was fully
/// sent means the provider may have accepted (and billed) the request (RT-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Connect,
    /// Sent, no response byte yet: possibly accepted.
    AwaitingResponse,
    /// Headers received, body or stream under way.
    Body,
}

/// The one error type backends return.
///
/// It never contains a secret: adapters build it from status, headers and body, and the body
/// is scrubbed of anything that looks like a key before it is kept (see [`scrub_secrets`]).
#[derive(Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
    /// Backend name, filled in by the backend that produced the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// HTTP status, when the error came from a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The provider's retry hint (`retry-after-ms`, `Retry-After`), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_ms")]
    pub retry_after: Option<Duration>,
    /// `x-should-retry` as the provider sent it: overrides the kind's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_retry: Option<bool>,
    /// Where an I/O error happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The provider's error code (`insufficient_quota`, `overloaded_error`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The raw provider body, scrubbed and truncated to 2 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_body: Option<String>,
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same as Display: the struct holds no secrets, but keep logs one line each.
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = &self.backend {
            write!(f, "backend `{b}`: ")?;
        }
        write!(f, "{}", self.kind)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if let Some(c) = &self.code {
            write!(f, " [{c}]")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(r) = self.retry_after {
            write!(f, " (retry after {} ms)", r.as_millis())?;
        }
        Ok(())
    }
}

const MAX_BODY: usize = 2048;

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            backend: None,
            status: None,
            retry_after: None,
            should_retry: None,
            phase: None,
            code: None,
            provider_body: None,
        }
    }

    pub fn with_backend(mut self, name: impl Into<String>) -> Self {
        self.backend = Some(name.into());
        self
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }
    pub fn with_phase(mut self, p: Phase) -> Self {
        self.phase = Some(p);
        self
    }
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
    pub fn with_should_retry(mut self, v: Option<bool>) -> Self {
        self.should_retry = v;
        self
    }
    /// Keeps the provider's body (scrubbed of key-like tokens, at most 2 KiB).
    pub fn with_provider_body(mut self, body: &[u8]) -> Self {
        if !body.is_empty() {
            let text = String::from_utf8_lossy(body);
            let mut s = scrub_secrets(&text);
            if s.len() > MAX_BODY {
                let mut cut = MAX_BODY;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            self.provider_body = Some(s);
        }
        self
    }

    pub fn outcome(&self) -> Outcome {
        self.kind.outcome()
    }

    /// What the router may do, with `x-should-retry` taken into account.
    pub fn action(&self) -> RetryAction {
        match (self.should_retry, self.kind.action()) {
            (Some(false), RetryAction::Retry) => RetryAction::FailOver,
            (Some(true), RetryAction::Stop) if self.kind.outcome() != Outcome::Neutral => RetryAction::Retry,
            (_, a) => a,
        }
    }

    /// Whether the same backend may be tried again for this request (RT-3: never after 401).
    pub fn may_retry_same(&self) -> bool {
        self.action() == RetryAction::Retry
    }

    pub fn is_possibly_accepted(&self) -> bool {
        self.phase == Some(Phase::AwaitingResponse)
    }

    /// The provider-independent part of reading an error response: kind from the status,
    /// retry hint, `x-should-retry`, and the scrubbed body. Adapters call this, then refine
    /// `kind`, `code` and `message` from the body.
    pub fn from_http(response: &crate::adapter::HttpResponse<'_>, message: impl Into<String>) -> Self {
        let retry_after = parse_retry_after(response.header_pairs(), std::time::SystemTime::now());
        let should_retry = response.header("x-should-retry").and_then(|v| match v.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
        Self::new(ErrorKind::from_status(response.status), message)
            .with_status(response.status)
            .with_retry_after(retry_after)
            .with_should_retry(should_retry)
            .with_provider_body(response.body)
    }

    pub fn transport(message: impl Into<String>, phase: Phase) -> Self {
        Self::new(ErrorKind::Transport, message).with_phase(phase)
    }
    pub fn timeout(message: impl Into<String>, phase: Phase) -> Self {
        Self::new(ErrorKind::Timeout, message).with_phase(phase)
    }
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedResponse, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::StreamInterrupted, message).with_phase(Phase::Body)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// Replaces anything that looks like an API key or bearer token with `[REDACTED]`.
///
/// Providers echo keys in error bodies ("Incorrect API key provided: sk-abc…"), so bodies are
/// scrubbed before they are stored in an error (reliability-spec S-02, S-03).
pub fn scrub_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(|c: char| is_token_char(c)).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let token = &rest[..end];
        if looks_like_secret(token) {
            out.push_str("[REDACTED]");
        } else {
            out.push_str(token);
        }
        rest = &rest[end..];
    }
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

fn looks_like_secret(token: &str) -> bool {
    const PREFIXES: [&str; 6] = ["sk-", "sk_", "key-", "AIza", "xai-", "gsk_"];
    if PREFIXES.iter().any(|p| token.starts_with(p)) && token.len() >= 8 {
        return true;
    }
    // Long opaque tokens with letters and digits mixed: keys, JWTs, bearer tokens.
    token.len() >= 32
        && token.chars().any(|c| c.is_ascii_digit())
        && token.chars().any(|c| c.is_ascii_alphabetic())
        && !token.contains("..")
}

/// Serde helper for `Option<Duration>` as milliseconds.
mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// A provider's retry hint given in seconds, as a `Duration`: `None` when it is not a number
/// of seconds (negative, NaN, infinite), [`Duration::MAX`] when it is longer than a
/// `Duration` holds. Upstream input: `Duration::from_secs_f64` would panic on `1e30`.
pub fn retry_hint_from_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// Parses the retry hint headers: `retry-after-ms` first, then `Retry-After` as seconds or
/// an HTTP date (relative to `now`). Header names are matched case-insensitively.
pub fn parse_retry_after<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let mut ms = None;
    let mut secs = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("retry-after-ms") {
            ms = value.trim().parse::<f64>().ok().and_then(|m| retry_hint_from_secs(m / 1000.0));
        } else if name.eq_ignore_ascii_case("retry-after") {
            let v = value.trim();
            secs = match v.parse::<f64>() {
                Ok(s) => retry_hint_from_secs(s),
                Err(_) => {
                    httpdate::parse_http_date(v).ok().map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
                }
            };
        }
    }
    ms.or(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_cb2_and_rt3() {
        assert_eq!(ErrorKind::Overloaded.outcome(), Outcome::Failure);
        assert_eq!(ErrorKind::RateLimited.outcome(), Outcome::Throttle);
        assert_eq!(ErrorKind::InvalidRequest.outcome(), Outcome::Neutral);
        assert_eq!(ErrorKind::Auth.action(), RetryAction::FailOver);
        assert_eq!(ErrorKind::ContextOverflow.action(), RetryAction::Stop);
        let e = BackendError::new(ErrorKind::Overloaded, "x").with_should_retry(Some(false));
        assert_eq!(e.action(), RetryAction::FailOver);
    }

    #[test]
    fn scrubs_keys_from_bodies() {
        let s = scrub_secrets(r#"{"error":"Incorrect API key provided: sk-proj-abcdef123456. ok"}"#);
        assert!(!s.contains("abcdef123456"), "{s}");
        assert!(s.contains("Incorrect API key provided"));
        let e =
            BackendError::new(ErrorKind::Auth, "bad").with_provider_body(b"token AIzaSyA1234567890abcdef");
        assert!(!format!("{e:?} {}", e.provider_body.clone().unwrap_or_default()).contains("AIzaSyA123"));
    }

    #[test]
    fn retry_after_ms_wins_and_dates_parse() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_retry_after([("Retry-After", "3"), ("retry-after-ms", "1500")], now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after([("retry-after", "2")], now), Some(Duration::from_secs(2)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after([("Retry-After", date.as_str())], now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after([("retry-after", "soon")], now), None);
    }

    #[test]
    fn absurd_retry_hints_saturate_instead_of_panicking() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after([("retry-after", "1e30")], now), Some(Duration::MAX));
        assert_eq!(parse_retry_after([("retry-after-ms", "1e300")], now), Some(Duration::MAX));
        for bad in ["-1", "NaN", "inf"] {
            assert_eq!(parse_retry_after([("retry-after", bad)], now), None, "{bad}");
            assert_eq!(parse_retry_after([("retry-after-ms", bad)], now), None, "{bad}");
        }
    }
}
