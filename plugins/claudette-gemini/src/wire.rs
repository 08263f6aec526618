//! Gemini's `GenerateContentResponse`, its error envelope, and what they mean in neutral terms.

use std::time::Duration;

use claudette_core::types::new_tool_call_id;
use claudette_core::{BackendError, ErrorKind, FinishReason, ServiceTier, ToolCall, Usage};
use serde::Deserialize;
use serde_json::Value;

/// One `generateContent` answer, or one `data:` chunk of `streamGenerateContent?alt=sse`
/// (same shape; a chunk carries a piece of the candidate).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
    /// An error object inside a 200 stream.
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate {
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Gemini's words on the finish reason (e.g. what was wrong with a malformed call).
    #[serde(default)]
    pub finish_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Content {
    #[serde(default)]
    pub parts: Option<Vec<Part>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part {
    #[serde(default)]
    pub text: Option<String>,
    /// `true` on thought-summary parts of thinking models: reasoning, not answer.
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(default)]
    pub function_call: Option<FunctionCall>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionCall {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
    #[serde(default)]
    pub block_reason_message: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u32,
    #[serde(default)]
    pub candidates_token_count: u32,
    #[serde(default)]
    pub thoughts_token_count: u32,
    #[serde(default)]
    pub cached_content_token_count: u32,
    #[serde(default)]
    pub tool_use_prompt_token_count: u32,
}

impl UsageMetadata {
    /// Neutral usage. `promptTokenCount` already includes cached tokens (our convention);
    /// prompt tokens of server-side tool use are billed as input, so they are added. Thinking
    /// tokens are billed as output but reported apart (`thoughtsTokenCount` is *not* part of
    /// `candidatesTokenCount`), so output is their sum and reasoning the thinking share.
    pub(crate) fn to_usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_token_count.saturating_add(self.tool_use_prompt_token_count),
            output_tokens: self.candidates_token_count.saturating_add(self.thoughts_token_count),
            cache_read_tokens: self.cached_content_token_count,
            cache_write_tokens: 0,
            reasoning_tokens: self.thoughts_token_count,
            web_search_requests: 0,
            tier: ServiceTier::Standard,
            source: claudette_core::UsageSource::Reported,
        }
    }
}

/// A `countTokens` answer: `{"totalTokens": N, "promptTokensDetails": [...]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CountTokensResponse {
    #[serde(default)]
    pub total_tokens: Option<u32>,
    /// An error object inside a 200 (a proxy).
    #[serde(default)]
    pub error: Option<Value>,
}

impl CountTokensResponse {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, BackendError> {
        serde_json::from_slice(bytes)
            .map_err(|e| BackendError::malformed(format!("gemini: unreadable token count: {e}")))
    }
}

impl GenerateContentResponse {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, BackendError> {
        serde_json::from_slice(bytes)
            .map_err(|e| BackendError::malformed(format!("gemini: unreadable JSON: {e}")))
    }

    pub(crate) fn first_candidate(&self) -> Option<&Candidate> {
        self.candidates.as_ref()?.first()
    }

    pub(crate) fn parts(&self) -> &[Part] {
        self.first_candidate()
            .and_then(|c| c.content.as_ref())
            .and_then(|c| c.parts.as_deref())
            .unwrap_or(&[])
    }

    pub(crate) fn finish_reason(&self) -> Option<&str> {
        self.first_candidate()?.finish_reason.as_deref()
    }

    /// The error a finish reason stands for, if it stands for one (see [`finish_error`]).
    pub(crate) fn finish_error(&self) -> Option<BackendError> {
        let c = self.first_candidate()?;
        finish_error(c.finish_reason.as_deref()?, c.finish_message.as_deref())
    }

    /// `promptFeedback.blockReason` when the prompt itself was blocked and no candidate came:
    /// the whole request was refused.
    pub(crate) fn prompt_block(&self) -> Option<BackendError> {
        let feedback = self.prompt_feedback.as_ref()?;
        let reason = feedback.block_reason.as_deref()?;
        if self.candidates.as_ref().is_some_and(|c| !c.is_empty()) {
            return None;
        }
        let detail = feedback.block_reason_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        Some(
            BackendError::new(
                ErrorKind::ContentPolicy,
                format!("gemini blocked the prompt ({reason}){detail}"),
            )
            .with_code(reason),
        )
    }
}

impl FunctionCall {
    pub(crate) fn to_tool_call(&self) -> ToolCall {
        ToolCall {
            id: self.id.clone().filter(|s| !s.is_empty()).unwrap_or_else(new_tool_call_id),
            name: self.name.clone(),
            arguments: match &self.args {
                Value::Null => serde_json::json!({}),
                v => v.clone(),
            },
        }
    }
}

/// Finish reasons that mean a safety or policy filter stopped the output.
pub(crate) const FILTER_REASONS: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
];

pub(crate) fn is_filter_reason(reason: &str) -> bool {
    FILTER_REASONS.contains(&reason)
}

/// `finishReason` in neutral terms. Gemini says `STOP` also when the turn ended in function
/// calls, so a stop with calls is [`FinishReason::ToolCalls`], what callers check to run tools.
/// Values without a neutral equivalent (`LANGUAGE`, `OTHER`...) are kept verbatim; one that
/// is an error ([`finish_error`]) never gets here.
pub(crate) fn finish_reason(reason: &str, has_tool_calls: bool) -> FinishReason {
    match reason {
        "STOP" if has_tool_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        r if is_filter_reason(r) => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// The error a finish reason stands for: `MALFORMED_FUNCTION_CALL` means the model set out to
/// call a tool and wrote a call Gemini could not parse, so the answer it ends is missing the
/// call the model meant; handed back as a success, it is an empty answer the client takes as
/// the model's last word. [`ErrorKind::Unsupported`]: the router fails over (another model may
/// well call the tool), and the breaker does not count it, since the server is healthy and one
/// client's hard tool schema must not take the backend away from everyone else.
pub(crate) fn finish_error(reason: &str, message: Option<&str>) -> Option<BackendError> {
    (reason == "MALFORMED_FUNCTION_CALL").then(|| {
        let detail =
            message.map(|m| format!(": {}", m.chars().take(300).collect::<String>())).unwrap_or_default();
        BackendError::new(
            ErrorKind::Unsupported,
            format!("gemini wrote a tool call it could not parse (finishReason {reason}){detail}"),
        )
        .with_code(reason)
    })
}

/// The error for a candidate a filter stopped before it produced anything: there is no answer
/// to return, and retrying the same content will not help (non-retryable).
pub(crate) fn blocked_output(reason: &str) -> BackendError {
    BackendError::new(ErrorKind::ContentPolicy, format!("gemini blocked the answer (finishReason {reason})"))
        .with_code(reason)
}

/// Google's error envelope, `{"error":{code, message, status, details}}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub details: Vec<Value>,
}

impl ErrorBody {
    /// Reads `{"error":{...}}`, also when wrapped in an array (`[{"error":{...}}]`, what the
    /// non-SSE stream endpoint sends).
    pub(crate) fn from_json(v: &Value) -> Option<Self> {
        let v = match v {
            Value::Array(items) => items.first()?,
            other => other,
        };
        let err = v.get("error")?;
        match err {
            Value::Object(_) => serde_json::from_value(err.clone()).ok(),
            Value::String(s) => Some(Self { message: Some(s.clone()), ..Self::default() }),
            _ => None,
        }
    }

    /// `RetryInfo.retryDelay` ("30s", "36.429760048s"), Google's retry hint.
    pub(crate) fn retry_delay(&self) -> Option<Duration> {
        self.details.iter().find_map(|d| {
            let delay = d.get("retryDelay")?.as_str()?;
            let secs: f64 = delay.trim().strip_suffix('s')?.parse().ok()?;
            claudette_core::error::retry_hint_from_secs(secs)
        })
    }

    /// `ErrorInfo.reason` (`API_KEY_INVALID`, `RATE_LIMIT_EXCEEDED`...), when present.
    pub(crate) fn reason(&self) -> Option<&str> {
        self.details.iter().find_map(|d| d.get("reason")?.as_str())
    }

    /// The quota names the 429 is about: `QuotaFailure.violations[].quotaId` and
    /// `ErrorInfo.metadata.quota_limit`.
    pub(crate) fn quota_ids(&self) -> Vec<&str> {
        let mut ids = Vec::new();
        for d in &self.details {
            if let Some(violations) = d.get("violations").and_then(Value::as_array) {
                ids.extend(violations.iter().filter_map(|v| v.get("quotaId")?.as_str()));
            }
            if let Some(limit) = d.get("metadata").and_then(|m| m.get("quota_limit")).and_then(Value::as_str)
            {
                ids.push(limit);
            }
        }
        ids
    }

    /// Whether a `RESOURCE_EXHAUSTED` means the money or the day's quota is gone (no retry
    /// helps until a human acts or the day ends) rather than a per-minute rate limit.
    ///
    /// The rule, most specific first:
    /// 1. A violated quota whose id names a day (`GenerateRequestsPerDayPerProjectPerModel-FreeTier`,
    ///    `...PerDay...`): it resets at midnight Pacific time, not in the `retryDelay` Google
    ///    still attaches (UKGovernmentBEIS/inspect_ai #5526: retried for hours).
    /// 2. The message says prepaid credits are depleted, or that the limit is `0` (the tier
    ///    has no access to the model at all; retrying never helps).
    /// 3. The message names a per-day limit ("... requests per day ...").
    ///
    /// What is deliberately **not** a sign: "You exceeded your current quota, please check your
    /// plan and billing details". Google sends that sentence on *every* free-tier 429,
    /// per-minute limits included (diegosouzapw/OmniRoute #9504), so matching "quota" or
    /// "billing" would turn every transient rate limit into a long cooldown. With no quota
    /// detail at all, a 429 is a rate limit.
    pub(crate) fn is_quota_exhausted(&self) -> bool {
        if self.quota_ids().iter().any(|id| {
            let id = id.to_ascii_lowercase();
            id.contains("perday") || id.contains("per_day") || id.contains("daily")
        }) {
            return true;
        }
        let m = self.message.as_deref().unwrap_or("").to_ascii_lowercase();
        m.contains("credits are depleted")
            || m.contains("limit: 0,")
            || m.contains("limit: 0\n")
            || m.ends_with("limit: 0")
            || m.contains("per day")
    }
}

/// Classifies a Gemini error from its HTTP status (or `error.code` in a stream) and envelope.
///
/// - 429 / `RESOURCE_EXHAUSTED` → [`ErrorKind::RateLimited`], or [`ErrorKind::QuotaExhausted`]
///   by [`ErrorBody::is_quota_exhausted`].
/// - 400 `INVALID_ARGUMENT` → [`ErrorKind::InvalidRequest`]; [`ErrorKind::ContextOverflow`] when
///   the message says the input token count exceeds the maximum; [`ErrorKind::Auth`] when the
///   key is invalid (Google answers a bad key with **400** `API_KEY_INVALID`, not 401).
/// - 400 `FAILED_PRECONDITION` about the caller's location (the API is not offered in that
///   region, or not on the free tier there) → [`ErrorKind::Auth`]: this credential cannot be
///   used from here, another backend can serve the request.
/// - 401 `UNAUTHENTICATED` / 403 `PERMISSION_DENIED` → [`ErrorKind::Auth`].
/// - 404 `NOT_FOUND` → [`ErrorKind::NotFound`].
/// - 500 `INTERNAL`, 503 `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED` → [`ErrorKind::Overloaded`].
pub(crate) fn classify(status: u16, body: Option<&ErrorBody>) -> (ErrorKind, Option<String>) {
    let grpc = body.and_then(|b| b.status.as_deref()).unwrap_or("");
    let message = body.and_then(|b| b.message.as_deref()).unwrap_or("").to_ascii_lowercase();
    let reason = body.and_then(ErrorBody::reason);
    let code = reason.or(if grpc.is_empty() { None } else { Some(grpc) }).map(str::to_owned);
    let kind = if reason == Some("API_KEY_INVALID") || message.contains("api key not valid") {
        ErrorKind::Auth
    } else if status == 429 || grpc == "RESOURCE_EXHAUSTED" {
        if body.is_some_and(ErrorBody::is_quota_exhausted) {
            ErrorKind::QuotaExhausted
        } else {
            ErrorKind::RateLimited
        }
    } else if grpc == "UNAUTHENTICATED"
        || grpc == "PERMISSION_DENIED"
        || (grpc == "FAILED_PRECONDITION" && message.contains("location"))
    {
        ErrorKind::Auth
    } else if (status == 400 || grpc == "INVALID_ARGUMENT")
        && message.contains("token")
        && (message.contains("exceed") || message.contains("too long"))
    {
        ErrorKind::ContextOverflow
    } else if grpc == "NOT_FOUND" {
        ErrorKind::NotFound
    } else if matches!(grpc, "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED") {
        ErrorKind::Overloaded
    } else if grpc == "INVALID_ARGUMENT" || grpc == "FAILED_PRECONDITION" {
        ErrorKind::InvalidRequest
    } else {
        ErrorKind::from_status(status)
    };
    (kind, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> ErrorBody {
        ErrorBody::from_json(&v).unwrap()
    }

    #[test]
    fn retry_delay_parses_fractional_seconds() {
        let b = body(serde_json::json!({"error":{"code":429,"details":[
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"36.5s"}]}}));
        assert_eq!(b.retry_delay(), Some(Duration::from_millis(36_500)));
        let absurd = body(serde_json::json!({"error":{"code":429,"details":[
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1e30s"}]}}));
        assert_eq!(absurd.retry_delay(), Some(Duration::MAX), "saturates, no panic");
    }

    #[test]
    fn per_minute_quota_with_billing_sentence_is_a_rate_limit() {
        let b = body(serde_json::json!({"error":{"code":429,"status":"RESOURCE_EXHAUSTED",
            "message":"You exceeded your current quota, please check your plan and billing details.",
            "details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[
                {"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]}]}}));
        assert!(!b.is_quota_exhausted());
        assert_eq!(classify(429, Some(&b)).0, ErrorKind::RateLimited);
    }

    #[test]
    fn per_day_quota_is_exhausted() {
        let b = body(serde_json::json!({"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota",
            "details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[
                {"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}));
        assert_eq!(classify(429, Some(&b)).0, ErrorKind::QuotaExhausted);
        let credits = body(serde_json::json!({"error":{"code":429,"status":"RESOURCE_EXHAUSTED",
            "message":"Your prepayment credits are depleted. Please go to AI Studio to manage your billing."}}));
        assert_eq!(classify(429, Some(&credits)).0, ErrorKind::QuotaExhausted);
    }
}
