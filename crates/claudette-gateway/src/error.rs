//! Errors: the gateway's own ([`GatewayError`]) and what clients see ([`ApiError`]), in the
//! envelope of the endpoint they called.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use claudette_core::error::scrub_secrets;
use claudette_core::{BackendError, ErrorKind};
use serde::Serialize;

/// Why the gateway could not be built or could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A non-loopback listen address with no keys, and that was not explicitly allowed (S-08).
    #[error(
        "refusing to listen on {addr} without gateway API keys: anyone who can reach it could spend \
         your provider credit; configure gateway keys, listen on 127.0.0.1, or explicitly allow \
         unauthenticated non-loopback access"
    )]
    UnauthenticatedNonLoopback { addr: SocketAddr },
    /// An option out of range.
    #[error("invalid gateway option `{option}`: {reason}")]
    InvalidOption { option: &'static str, reason: String },
    /// A configured key digest that is not a SHA-256 hex digest.
    #[error("invalid API key digest for `{name}`: {reason}")]
    InvalidKeyHash { name: String, reason: String },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("gateway server error: {0}")]
    Io(#[from] std::io::Error),
}

/// How an endpoint's protocol names a request field the gateway caps: in the message text,
/// and as the error's `param`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CappedField {
    pub(crate) text: &'static str,
    pub(crate) param: &'static str,
}

/// Which envelope an endpoint's errors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `{"error":{"message","type","param","code"}}`
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`
    Anthropic,
    /// `{"error":"message"}` (the seeds' `/api/chat`)
    Simple,
}

impl Flavor {
    pub(crate) fn for_path(path: &str) -> Flavor {
        if path.starts_with("/v1/messages") {
            Flavor::Anthropic
        } else if path.starts_with("/api/") {
            Flavor::Simple
        } else {
            Flavor::OpenAi
        }
    }
}

/// Broad error classes, each with its OpenAI `type` and Anthropic `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    TooLarge,
    RateLimit,
    Overloaded,
    Timeout,
    Api,
}

impl Class {
    fn openai_type(self) -> &'static str {
        match self {
            Class::InvalidRequest | Class::NotFound | Class::TooLarge | Class::Authentication => {
                "invalid_request_error"
            }
            Class::Permission => "permission_error",
            Class::RateLimit => "rate_limit_error",
            Class::Overloaded | Class::Timeout | Class::Api => "server_error",
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            Class::InvalidRequest => "invalid_request_error",
            Class::Authentication => "authentication_error",
            Class::Permission => "permission_error",
            Class::NotFound => "not_found_error",
            Class::TooLarge => "request_too_large",
            Class::RateLimit => "rate_limit_error",
            Class::Overloaded => "overloaded_error",
            Class::Timeout => "timeout_error",
            Class::Api => "api_error",
        }
    }

    fn for_status(status: u16) -> Class {
        match status {
            401 => Class::Authentication,
            403 => Class::Permission,
            404 => Class::NotFound,
            413 => Class::TooLarge,
            429 => Class::RateLimit,
            503 | 529 => Class::Overloaded,
            504 => Class::Timeout,
            400..=499 => Class::InvalidRequest,
            _ => Class::Api,
        }
    }
}

/// An error as a client sees it: status, class, message, and the optional OpenAI `code` and
/// `param` and a `Retry-After` in whole seconds.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) class: Class,
    pub(crate) message: Cow<'static, str>,
    pub(crate) code: Option<Cow<'static, str>>,
    pub(crate) param: Option<Cow<'static, str>>,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            status,
            class: Class::for_status(status.as_u16()),
            message: message.into(),
            code: None,
            param: None,
            retry_after: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub(crate) fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> ApiError {
        self.code = Some(code.into());
        self
    }

    /// The generic 401: never says which part was wrong, never echoes what was presented.
    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing API key. Send a gateway key as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
        )
        .with_code("invalid_api_key")
    }

    /// Too many failed authentications from this address (S-07). Says nothing about keys.
    pub(crate) fn too_many_auth_failures(wait: std::time::Duration) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed authentication attempts from this address; try again later.",
        )
        .with_code("too_many_auth_failures");
        e.retry_after = Some(ceil_secs(wait));
        e
    }

    /// The client's gateway key is over its requests-per-minute limit (S-10). 429, not 503: the
    /// client, not the gateway, is over its share. Names the limit, never the key.
    pub(crate) fn key_rate_limited(rpm: u32, wait: std::time::Duration) -> ApiError {
        let secs = ceil_secs(wait).max(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("This gateway key is over its limit of {rpm} requests per minute; retry in {secs} s."),
        )
        .with_code("rate_limit_exceeded");
        e.retry_after = Some(secs);
        e
    }

    /// The client's gateway key has its maximum of requests in flight (S-10). A slot frees when
    /// one of them (a stream: when it ends) finishes; `Retry-After: 1` like the global limit.
    pub(crate) fn key_concurrency_limited(max: u32) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "This gateway key already has its maximum of {max} requests in flight; retry when one \
                 has finished."
            ),
        )
        .with_code("concurrency_limit_exceeded");
        e.retry_after = Some(1);
        e
    }

    /// More messages than the gateway accepts in one request (S-10).
    pub(crate) fn too_many_messages(count: usize, max: usize, param: &'static str) -> ApiError {
        ApiError::invalid(format!(
            "The conversation has {count} messages (system prompt and tool results included); this \
             gateway accepts at most {max}."
        ))
        .with_param(param)
        .with_code("too_many_messages")
    }

    /// An output-token limit above the gateway's cap (S-10), `field` as the client's protocol
    /// names it. Refused, never clamped: a silently shortened answer would look complete to a
    /// client that asked for more.
    pub(crate) fn max_tokens_over_cap(requested: u32, cap: u32, field: CappedField) -> ApiError {
        ApiError::invalid(format!(
            "{} is {requested}, above this gateway's cap of {cap}; ask for at most {cap}.",
            field.text
        ))
        .with_param(field.param)
        .with_code("max_tokens_above_cap")
    }

    /// An admin endpoint asked for by a non-loopback client (S-08).
    pub(crate) fn admin_loopback_only() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Admin endpoints are served to loopback clients only (set server.admin_from_any to change this).",
        )
        .with_code("admin_loopback_only")
    }

    /// An admin endpoint reached through a server that does not record client addresses, so
    /// no loopback client can be told apart from a remote one.
    pub(crate) fn admin_peer_unknown() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Admin endpoints are served to loopback clients only, and this server does not record \
             client addresses: serve the app with `into_make_service_with_connect_info::<SocketAddr>()` \
             (or set server.admin_from_any).",
        )
        .with_code("admin_loopback_only")
    }

    pub(crate) fn model_not_found(model: &str) -> ApiError {
        // The model name is the client's own input, but clip it: it lands in logs too.
        let shown: String = model.chars().take(200).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "The model `{shown}` does not exist on this gateway. Use `auto`, a backend name, or a \
                 backend's model (see GET /v1/models)."
            ),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub(crate) fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body exceeds the gateway's limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    pub(crate) fn overloaded() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway is at its limit of concurrent requests; retry shortly.",
        )
        .with_code("overloaded");
        e.retry_after = Some(1);
        e
    }

    /// What the client sees for a routed failure.
    ///
    /// Status: the error's own HTTP status when it has a client-meaningful one, else one per
    /// kind. Upstream 401/403 and quota refusals are the gateway operator's problem, not the
    /// client's: they become 502/503 with a generic message (a client must never conclude
    /// that *its* key is wrong, and the provider's text may describe our credential). Upstream
    /// statuses outside 4xx/5xx (an unfollowed redirect, F-27) are never passed on.
    pub(crate) fn from_backend(e: &BackendError) -> ApiError {
        let by_kind = status_for_kind(e.kind);
        let status = match (e.kind, e.status) {
            (ErrorKind::Auth | ErrorKind::QuotaExhausted, _) => by_kind,
            (_, Some(401 | 403 | 407)) => StatusCode::BAD_GATEWAY,
            (_, Some(s)) if (400..=599).contains(&s) => StatusCode::from_u16(s).unwrap_or(by_kind),
            _ => by_kind,
        };
        let backend = e.backend.as_deref().unwrap_or("?");
        let message: Cow<'static, str> = match e.kind {
            ErrorKind::Auth => format!(
                "Upstream authentication failed for backend `{backend}`; the gateway's provider \
                 credentials need attention."
            )
            .into(),
            ErrorKind::QuotaExhausted => {
                format!("Upstream quota or billing limit reached for backend `{backend}`.").into()
            }
            _ => scrub_secrets(&e.to_string()).into(),
        };
        let code: Cow<'static, str> = match (&e.code, e.kind) {
            (_, ErrorKind::Auth) => "upstream_auth_failed".into(),
            (Some(c), _) => scrub_secrets(c).into(),
            (None, k) => k.as_str().into(),
        };
        let mut class = Class::for_status(status.as_u16());
        if e.kind == ErrorKind::Overloaded && status.is_server_error() {
            class = Class::Overloaded;
        }
        ApiError {
            status,
            class,
            message,
            code: Some(code),
            param: None,
            retry_after: e.retry_after.map(ceil_secs),
        }
    }

    /// The body in `flavor`'s envelope.
    pub(crate) fn body(&self, flavor: Flavor) -> Vec<u8> {
        let r = match flavor {
            Flavor::OpenAi => serde_json::to_vec(&OpenAiEnvelope {
                error: OpenAiError {
                    message: &self.message,
                    r#type: self.class.openai_type(),
                    param: self.param.as_deref(),
                    code: self.code.as_deref(),
                },
            }),
            Flavor::Anthropic => serde_json::to_vec(&AnthropicEnvelope {
                r#type: "error",
                error: AnthropicError { r#type: self.class.anthropic_type(), message: &self.message },
            }),
            Flavor::Simple => serde_json::to_vec(&SimpleEnvelope { error: &self.message }),
        };
        r.unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec())
    }

    pub(crate) fn into_response(self, flavor: Flavor) -> Response {
        let mut resp = (self.status, self.body(flavor)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Whole seconds, rounded up: a client that waits `Retry-After` must not come back early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    // Saturating: a provider's absurd hint arrives here as `Duration::MAX`.
    if d.subsec_nanos() > 0 { s.saturating_add(1) } else { s }
}

fn status_for_kind(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::CircuitOpen | ErrorKind::QuotaExhausted => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::InvalidRequest
        | ErrorKind::ContextOverflow
        | ErrorKind::ContentPolicy
        | ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Auth
        | ErrorKind::Overloaded
        | ErrorKind::Transport
        | ErrorKind::MalformedResponse
        | ErrorKind::StreamInterrupted => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Serialize)]
struct OpenAiEnvelope<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
pub(crate) struct OpenAiError<'a> {
    pub(crate) message: &'a str,
    pub(crate) r#type: &'a str,
    pub(crate) param: Option<&'a str>,
    pub(crate) code: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicEnvelope<'a> {
    r#type: &'static str,
    error: AnthropicError<'a>,
}

#[derive(Serialize)]
pub(crate) struct AnthropicError<'a> {
    pub(crate) r#type: &'a str,
    pub(crate) message: &'a str,
}

#[derive(Serialize)]
struct SimpleEnvelope<'a> {
    error: &'a str,
}

impl ApiError {
    /// The OpenAI in-stream error object (`data: {"error":{…}}`).
    pub(crate) fn openai_error(&self) -> OpenAiError<'_> {
        OpenAiError {
            message: &self.message,
            r#type: self.class.openai_type(),
            param: self.param.as_deref(),
            code: self.code.as_deref(),
        }
    }

    /// The Anthropic in-stream error object (`event: error`).
    pub(crate) fn anthropic_error(&self) -> AnthropicError<'_> {
        AnthropicError { r#type: self.class.anthropic_type(), message: &self.message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: BackendError) -> u16 {
        ApiError::from_backend(&e).status.as_u16()
    }

    #[test]
    fn statuses_follow_kind_and_never_blame_the_client_for_upstream_auth() {
        assert_eq!(status(BackendError::new(ErrorKind::Auth, "bad key").with_status(401)), 502);
        assert_eq!(status(BackendError::new(ErrorKind::QuotaExhausted, "q").with_status(429)), 503);
        assert_eq!(status(BackendError::new(ErrorKind::RateLimited, "r")), 429);
        assert_eq!(status(BackendError::new(ErrorKind::CircuitOpen, "o")), 503);
        assert_eq!(status(BackendError::new(ErrorKind::Timeout, "t")), 504);
        assert_eq!(status(BackendError::new(ErrorKind::ContextOverflow, "c")), 400);
        assert_eq!(status(BackendError::new(ErrorKind::Overloaded, "o").with_status(529)), 529);
        // A redirect is never passed on (F-27).
        assert_eq!(status(BackendError::new(ErrorKind::Transport, "redirect").with_status(307)), 502);
        assert_eq!(status(BackendError::new(ErrorKind::InvalidRequest, "x").with_status(403)), 502);
    }

    #[test]
    fn upstream_auth_messages_are_generic() {
        let e = BackendError::new(ErrorKind::Auth, "Incorrect API key provided: canary-upstream-key")
            .with_backend("b1")
            .with_status(401);
        let api = ApiError::from_backend(&e);
        let body = String::from_utf8(api.body(Flavor::OpenAi)).unwrap();
        assert!(!body.contains("canary"), "{body}");
        assert!(body.contains("b1"));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
        let e = BackendError::new(ErrorKind::CircuitOpen, "open")
            .with_status(503)
            .with_retry_after(Some(Duration::from_millis(9500)));
        assert_eq!(ApiError::from_backend(&e).retry_after, Some(10));
    }

    #[test]
    fn envelopes_have_the_providers_shapes() {
        let e = ApiError::model_not_found("gpt-x");
        let oa: serde_json::Value = serde_json::from_slice(&e.body(Flavor::OpenAi)).unwrap();
        assert_eq!(oa["error"]["type"], "invalid_request_error");
        assert_eq!(oa["error"]["code"], "model_not_found");
        assert_eq!(oa["error"]["param"], "model");
        let an: serde_json::Value = serde_json::from_slice(&e.body(Flavor::Anthropic)).unwrap();
        assert_eq!(an["type"], "error");
        assert_eq!(an["error"]["type"], "not_found_error");
        let simple: serde_json::Value = serde_json::from_slice(&e.body(Flavor::Simple)).unwrap();
        assert!(simple["error"].as_str().unwrap().contains("gpt-x"));
    }
}
