//! Reading Anthropic errors: HTTP error responses and `error` events inside a 200 stream.
//!
//! Anthropic sends `{"type":"error","error":{"type","message"},"request_id"}`. Servers that
//! merely speak the Messages protocol do not all follow it: llama.cpp's `/v1/messages` answers
//! with the OpenAI envelope `{"error":{"code","message","type"}}`, proxies sometimes send a bare
//! string. All of them are read here into one [`ErrorBody`] and classified by one function, so
//! an HTTP 529 and an `overloaded_error` event after HTTP 200 can never drift apart.

use claudette_core::error::scrub_secrets;
use claudette_core::{BackendError, ErrorKind, HttpResponse, Phase};
use serde_json::Value;

/// Longest provider message kept in an error.
const MAX_MESSAGE: usize = 500;

/// The parts of an error body that drive classification.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ErrorBody {
    /// `error.type` (`overloaded_error`, `exceed_context_size_error`…).
    pub kind: Option<String>,
    /// `error.code` when it is a string (OpenAI envelope, e.g. `context_length_exceeded`).
    pub code: Option<String>,
    pub message: Option<String>,
    /// `error.details.error_code` (`enforced_spend_limit_reached`).
    pub detail_code: Option<String>,
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// Reads any of the envelopes above. A body that is not JSON keeps its text as the
    /// message, unless it is HTML (Cloudflare's 413 page), which says nothing useful.
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => Self::from_value(&v),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = (!text.is_empty() && !text.starts_with('<')).then(|| text.to_owned());
                Self { message, ..Self::default() }
            }
        }
    }

    pub fn from_value(v: &Value) -> Self {
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let request_id = v.get("request_id").and_then(s);
        match v.get("error") {
            Some(Value::Object(e)) => Self {
                kind: e.get("type").and_then(s),
                code: e.get("code").and_then(s),
                message: e.get("message").and_then(s),
                detail_code: e.get("details").and_then(|d| d.get("error_code")).and_then(s),
                request_id,
            },
            Some(Value::String(m)) => Self { message: Some(m.clone()), request_id, ..Self::default() },
            _ => Self { message: v.get("message").and_then(s), request_id, ..Self::default() },
        }
    }

    /// The provider's message, scrubbed of key-like tokens and cut to a readable length, with
    /// the request id appended (Anthropic support asks for it).
    fn display_message(&self, fallback: impl FnOnce() -> String) -> String {
        let mut m = match &self.message {
            Some(m) if !m.trim().is_empty() => scrub_secrets(m.trim()),
            _ => fallback(),
        };
        if m.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push('…');
        }
        if let Some(id) = &self.request_id {
            m.push_str(&format!(" (request_id {})", scrub_secrets(id)));
        }
        m
    }

    /// The code to keep on the error: the Anthropic type, else the OpenAI-style code.
    fn code(&self) -> Option<&str> {
        self.kind.as_deref().or(self.code.as_deref())
    }
}

/// The error kind for a provider error. `status` is `None` for an `error` event inside a 200
/// stream, which Anthropic documents as the streamed form of the HTTP errors: unknown types
/// there are read like HTTP 529 (transient).
pub(crate) fn kind_for(status: Option<u16>, body: &ErrorBody) -> ErrorKind {
    let ty = body.kind.as_deref().unwrap_or("");
    let code = body.code.as_deref().unwrap_or("");
    let m = body.message.as_deref().unwrap_or("").to_ascii_lowercase();
    let client_error = status.is_none_or(|s| (400..500).contains(&s));

    // Out of money first: Anthropic says so with 402 `billing_error`, with a 429 whose
    // details say `enforced_spend_limit_reached`, and with a 400 "credit balance is too low".
    // Retrying any of them only burns the retry budget.
    if status == Some(402)
        || ty == "billing_error"
        || body.detail_code.as_deref() == Some("enforced_spend_limit_reached")
        || code == "insufficient_quota"
        || (client_error && (m.contains("credit balance") || m.contains("spend limit")))
    {
        return ErrorKind::QuotaExhausted;
    }
    if status == Some(529) || ty == "overloaded_error" {
        return ErrorKind::Overloaded;
    }
    if status == Some(429) || ty == "rate_limit_error" {
        return ErrorKind::RateLimited;
    }
    if matches!(status, Some(401 | 403)) || ty == "authentication_error" || ty == "permission_error" {
        return ErrorKind::Auth;
    }
    if client_error
        && (ty == "exceed_context_size_error"
            || code == "context_length_exceeded"
            || m.contains("prompt is too long")
            || m.contains("context limit")
            || m.contains("context length")
            || m.contains("context size")
            || m.contains("context window"))
    {
        return ErrorKind::ContextOverflow;
    }
    if status == Some(413) || ty == "request_too_large" {
        return ErrorKind::InvalidRequest;
    }
    if client_error && (m.contains("content filtering policy") || m.contains("output blocked")) {
        return ErrorKind::ContentPolicy;
    }
    if status == Some(404) || ty == "not_found_error" {
        return ErrorKind::NotFound;
    }
    match (status, ty) {
        (Some(s), _) => ErrorKind::from_status(s),
        (None, "invalid_request_error") => ErrorKind::InvalidRequest,
        // `api_error`, `timeout_error` and types added later: transient, like a 5xx.
        (None, _) => ErrorKind::Overloaded,
    }
}

/// Classifies a non-2xx response. Starts from the provider-independent reading (status kind,
/// `retry-after`, `x-should-retry`, scrubbed body) and refines it from the body.
pub(crate) fn classify_http(response: &HttpResponse<'_>, backend: &str) -> BackendError {
    let mut body = ErrorBody::parse(response.body);
    if body.request_id.is_none() {
        body.request_id = response.header("request-id").map(str::to_owned);
    }
    let status = response.status;
    let message = body.display_message(|| format!("HTTP {status} without an error message"));
    let mut err = BackendError::from_http(response, message).with_backend(backend);
    err.kind = kind_for(Some(status), &body);
    if let Some(code) = body.code() {
        err = err.with_code(code);
    }
    err
}

/// Classifies an error object received with HTTP 200: an `error` event in a stream, or an
/// error envelope a proxy returned as a 200 body.
pub(crate) fn classify_event(data: &Value, raw: &str) -> BackendError {
    let body = ErrorBody::from_value(data);
    let message = body.display_message(|| "error event in the stream".to_owned());
    let mut err = BackendError::new(kind_for(None, &body), message)
        .with_phase(Phase::Body)
        .with_provider_body(raw.as_bytes());
    if let Some(code) = body.code() {
        err = err.with_code(code);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(ty: &str, msg: &str) -> ErrorBody {
        ErrorBody { kind: Some(ty.into()), message: Some(msg.into()), ..ErrorBody::default() }
    }

    #[test]
    fn stream_error_types_map_like_their_http_status() {
        assert_eq!(kind_for(None, &body("overloaded_error", "Overloaded")), ErrorKind::Overloaded);
        assert_eq!(kind_for(None, &body("rate_limit_error", "slow")), ErrorKind::RateLimited);
        assert_eq!(kind_for(None, &body("api_error", "boom")), ErrorKind::Overloaded);
        assert_eq!(kind_for(None, &body("brand_new_error", "?")), ErrorKind::Overloaded);
        assert_eq!(kind_for(None, &body("invalid_request_error", "bad")), ErrorKind::InvalidRequest);
        assert_eq!(kind_for(None, &body("billing_error", "pay")), ErrorKind::QuotaExhausted);
    }

    #[test]
    fn context_words_do_not_turn_server_errors_into_overflow() {
        assert_eq!(kind_for(Some(500), &body("api_error", "context length bug")), ErrorKind::Overloaded);
        assert_eq!(
            kind_for(Some(400), &body("invalid_request_error", "prompt is too long: 210000 tokens > 200000")),
            ErrorKind::ContextOverflow
        );
    }

    #[test]
    fn plain_text_and_html_bodies() {
        assert_eq!(
            ErrorBody::parse(b"upstream connect error").message.as_deref(),
            Some("upstream connect error")
        );
        assert_eq!(ErrorBody::parse(b"<html><body>413</body></html>").message, None);
        assert_eq!(ErrorBody::parse(br#"{"error":"plain"}"#).message.as_deref(), Some("plain"));
    }
}
