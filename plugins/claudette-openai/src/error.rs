//! Reading OpenAI-style errors: HTTP error responses, error objects inside a 200 stream, and
//! error objects in a 200 body.
//!
//! The status gives the default kind ([`BackendError::from_http`]); the body refines it,
//! because the status alone lies in both directions: a 429 may be a rate limit (retry later)
//! or an empty account (fail over, alert), and a 400 may be a context overflow (route to a
//! bigger window) or content policy. Compatible servers disagree on the shape — llama.cpp sends
//! a numeric `code`, LiteLLM a string `"400"`, vLLM a flat `{"object":"error",…}`, FastAPI
//! `{"detail":…}`, llama-cpp-python a plain-text 500 — so every field is optional here.

use claudette_core::error::scrub_secrets;
use claudette_core::{BackendError, ErrorKind, HttpResponse};
use serde_json::Value;

/// The parts of a provider error object we read. All optional: servers differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub message: Option<String>,
    /// `error.type` (`invalid_request_error`, `exceed_context_size_error`…).
    pub kind: Option<String>,
    /// `error.code` as text (`context_length_exceeded`, or a status such as `"400"`).
    pub code: Option<String>,
    pub param: Option<String>,
}

impl ErrorFields {
    /// The HTTP status the error names, when its `code` is a number (llama.cpp, vLLM, LiteLLM).
    pub fn status_hint(&self) -> Option<u16> {
        self.code.as_deref().and_then(|c| c.trim().parse::<u16>().ok()).filter(|s| (100..=599).contains(s))
    }

    /// The provider's symbolic code, when `code` is not just a status number.
    pub fn symbolic_code(&self) -> Option<&str> {
        self.code.as_deref().filter(|c| c.trim().parse::<u16>().is_err())
    }
}

/// Extracts the error from a JSON value if it is an error object, in any of the shapes
/// OpenAI-compatible servers use. `None` means "this is not an error".
pub fn error_fields(value: &Value) -> Option<ErrorFields> {
    let obj = value.as_object()?;
    match obj.get("error") {
        Some(Value::Object(e)) => return Some(fields_of(e)),
        Some(Value::String(s)) => {
            // `{"error": "message"}` (some proxies), with siblings possibly carrying the rest.
            let mut f = fields_of(obj);
            f.message = Some(s.clone());
            return Some(f);
        }
        _ => {}
    }
    if obj.get("object").and_then(Value::as_str) == Some("error")
        || obj.get("type").and_then(Value::as_str) == Some("error")
    {
        // vLLM/SGLang flat shape: {"object":"error","message":…,"type":…,"code":400}.
        return Some(fields_of(obj));
    }
    if let Some(detail) = obj.get("detail") {
        // FastAPI (llama-cpp-python): {"detail": "…"} or {"detail": [{…"msg"…}]}.
        let message = match detail {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Some(ErrorFields { message: Some(message), ..ErrorFields::default() });
    }
    None
}

fn fields_of(map: &serde_json::Map<String, Value>) -> ErrorFields {
    let text = |key: &str| match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    ErrorFields { message: text("message"), kind: text("type"), code: text("code"), param: text("param") }
}

/// Refines a status-derived `kind` with what the error body says.
///
/// `status` is the HTTP status of the response, or the status an in-stream error implies;
/// `None` (or a 2xx) means there is none to go by and the kind comes from the body alone.
pub fn refine_kind(status: Option<u16>, kind: ErrorKind, fields: &ErrorFields) -> ErrorKind {
    let lower = |s: Option<&str>| s.map(str::to_ascii_lowercase).unwrap_or_default();
    let code = lower(fields.symbolic_code());
    let ty = lower(fields.kind.as_deref());
    let message = lower(fields.message.as_deref());
    let is = |names: &[&str]| names.iter().any(|n| code == *n || ty == *n);

    let mut kind = kind;
    if status.is_none_or(|s| (200..300).contains(&s)) {
        // An error object inside a 2xx answer: the server failed while answering, unless the
        // object says the request itself was at fault.
        kind = if is(&CALLER_FAULT) {
            ErrorKind::InvalidRequest
        } else if is(&["not_found_error", "notfounderror"]) {
            ErrorKind::NotFound
        } else {
            ErrorKind::Overloaded
        };
    }
    if is(&[
        "insufficient_quota",
        "enforced_spend_limit_reached",
        "billing_hard_limit_reached",
        "billing_not_active",
    ]) {
        return ErrorKind::QuotaExhausted;
    }
    if status == Some(429) || is(&["rate_limit_exceeded", "rate_limit_error"]) {
        return ErrorKind::RateLimited;
    }
    if is(&[
        "invalid_api_key",
        "authentication_error",
        "permission_error",
        "unsupported_country_region_territory",
    ]) {
        return ErrorKind::Auth;
    }
    // Overflow and policy are caller-side errors: only refine caller-side kinds, so a 429
    // "tokens per minute" message or a 500 mentioning a context is never read as overflow.
    if kind == ErrorKind::InvalidRequest {
        if is(&["context_length_exceeded", "exceed_context_size_error", "string_above_max_length"])
            || mentions_context_overflow(&message)
        {
            return ErrorKind::ContextOverflow;
        }
        if is(&["content_filter", "content_policy_violation"])
            || message.contains("content management policy")
        {
            return ErrorKind::ContentPolicy;
        }
        if is(&["model_not_found"]) || message.contains("invalid model name") {
            return ErrorKind::NotFound;
        }
    }
    kind
}

/// Types and codes that blame the request, not the server.
const CALLER_FAULT: [&str; 8] = [
    "invalid_request_error",
    "badrequesterror",
    "exceed_context_size_error",
    "context_length_exceeded",
    "content_filter",
    "content_policy_violation",
    "model_not_found",
    "string_above_max_length",
];

/// Whether an error message says the prompt did not fit (OpenAI "maximum context length",
/// llama.cpp "exceeds the available context size", LiteLLM `ContextWindowExceededError`).
fn mentions_context_overflow(message: &str) -> bool {
    ["maximum context length", "context length", "context_length_exceeded", "context size", "context window"]
        .iter()
        .any(|needle| message.contains(needle))
        || message.contains("contextwindowexceeded")
}

/// Classifies a non-2xx response from an OpenAI-compatible server.
///
/// Starts from [`BackendError::from_http`] (kind from the status, `retry-after-ms` /
/// `retry-after`, `x-should-retry`, the scrubbed body) and refines kind, code and message from
/// `{"error":{message,type,code,param}}`. Plain-text bodies keep their first line as message.
/// The message is always scrubbed of key-like tokens: OpenAI echoes a wrong key in its 401.
pub fn classify_openai_error(response: &HttpResponse<'_>) -> BackendError {
    let parsed: Option<Value> = serde_json::from_slice(response.body).ok();
    let fields = parsed.as_ref().and_then(error_fields);
    let status = response.status;
    let message = match fields.as_ref().and_then(|f| f.message.as_deref()) {
        Some(m) => scrub_secrets(m),
        None => plain_text_message(status, response.body),
    };
    let mut err = BackendError::from_http(response, message);
    if let Some(f) = &fields {
        err.kind = refine_kind(Some(status), err.kind, f);
        if let Some(code) = f.symbolic_code().or(f.kind.as_deref()) {
            err.code = Some(scrub_secrets(code));
        }
    }
    refine_self_hosted(err)
}

/// The finish reason vLLM and SGLang give an answer the *engine* stopped (shutdown, sleep
/// mode, scale-down, preemption), still with HTTP 200 and, in a stream, still followed by
/// `data: [DONE]` (vllm-project/vllm #57082). Read as OpenAI's words, that is a short,
/// complete answer; it is a cut one.
const ABORT: &str = "abort";

/// Whether `reason` says the server aborted the answer rather than finished it.
pub(crate) fn is_abort(reason: Option<&claudette_core::FinishReason>) -> bool {
    matches!(reason, Some(claudette_core::FinishReason::Other(r)) if r == ABORT)
}

/// The error an aborted answer stands for: the server failed while answering (as for an error
/// object inside a 200 answer), so it counts against the backend and another may be tried.
pub(crate) fn aborted() -> BackendError {
    BackendError::new(
        ErrorKind::Overloaded,
        "the server aborted the answer (finish_reason `abort`: engine shut down, paused or preempted); \
         what arrived is incomplete",
    )
    .with_code(ABORT)
}

/// What self-hosted OpenAI-compatible servers mean by a few messages that their status alone
/// gets wrong:
///
/// - a server started without tool calling refuses a request with tools, while another
///   backend could serve it: vLLM without `--enable-auto-tool-choice --tool-call-parser` says
///   400 `"auto" tool choice requires …`, llama.cpp without `--jinja` says 500 `tools param
///   requires --jinja flag` (older builds: `Unsupported param: tools`). As a 400 it stopped
///   routing, as a 500 it counted against the breaker of a box that serves plain chat fine;
/// - vLLM refuses a prompt over `--max-model-len` with 400 `The decoder prompt (length N) is
///   longer than the maximum model length of M`, which names no "context".
fn refine_self_hosted(mut err: BackendError) -> BackendError {
    let message = err.message.to_ascii_lowercase();
    let lacks_tools =
        ["--enable-auto-tool-choice", "tools param requires --jinja", "unsupported param: tools"]
            .iter()
            .any(|needle| message.contains(needle));
    if lacks_tools {
        err.kind = ErrorKind::Unsupported;
    } else if err.kind == ErrorKind::InvalidRequest && message.contains("maximum model length") {
        err.kind = ErrorKind::ContextOverflow;
    }
    err
}

/// The error an error object inside a 2xx answer (a stream chunk or a body) stands for, or
/// `None` if `value` is not an error object.
///
/// With no HTTP status to go by, the kind comes from the status the error names in its `code`
/// (llama.cpp, vLLM and LiteLLM put one there), refined like a response; otherwise from its
/// type, defaulting to `Overloaded`: the server failed while answering.
pub fn classify_error_value(value: &Value) -> Option<BackendError> {
    let fields = error_fields(value)?;
    let hint = fields.status_hint();
    let base = hint.map_or(ErrorKind::Overloaded, ErrorKind::from_status);
    let kind = refine_kind(hint, base, &fields);
    let message = fields
        .message
        .as_deref()
        .map_or_else(|| "the server sent an error object instead of a completion".to_owned(), scrub_secrets);
    let mut err = BackendError::new(kind, message);
    if let Some(s) = hint {
        err = err.with_status(s);
    }
    if let Some(code) = fields.symbolic_code().or(fields.kind.as_deref()) {
        err = err.with_code(scrub_secrets(code));
    }
    Some(err.with_provider_body(value.to_string().as_bytes()))
}

/// A message for a body that is not a JSON error object: its first line if it is short text,
/// else the status line.
fn plain_text_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if first.is_empty() || first.starts_with('<') || first.starts_with('{') {
        return format!("HTTP {status} {}", status_text(status));
    }
    let mut line = scrub_secrets(first);
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    format!("HTTP {status}: {line}")
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_error_objects() {
        let llama =
            serde_json::json!({"error":{"code":400,"message":"m","type":"exceed_context_size_error"}});
        let f = error_fields(&llama).unwrap();
        assert_eq!(f.status_hint(), Some(400));
        assert_eq!(f.symbolic_code(), None);
        let vllm = serde_json::json!({"object":"error","message":"bad","type":"BadRequestError","code":400});
        assert_eq!(error_fields(&vllm).unwrap().message.as_deref(), Some("bad"));
        let fastapi = serde_json::json!({"detail":"Not authenticated"});
        assert_eq!(error_fields(&fastapi).unwrap().message.as_deref(), Some("Not authenticated"));
        assert!(error_fields(&serde_json::json!({"choices":[]})).is_none());
        assert!(error_fields(&serde_json::json!({"error":null,"choices":[]})).is_none());
    }
}
