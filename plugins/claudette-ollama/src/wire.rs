//! Ollama's `/api/chat` response shapes, its timings, and the silent-truncation check.
//!
//! One lenient shape serves the non-stream body, every NDJSON stream line and the error line:
//! all fields are optional because the stream's chunk lines, its final line and the testbed's
//! `ollama-openai-proxy` (which sends `/api/generate`-style `response` fields) each carry a
//! different subset.

use std::time::Duration;

use claudette_core::types::{new_tool_call_id, normalize_tool_arguments};
use claudette_core::{BackendError, FinishReason, ToolCall, Usage};
use serde::{Deserialize, Serialize};

/// One `/api/chat` object: the whole non-stream answer, or one NDJSON line of a stream.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatChunk {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub message: Option<WireMessage>,
    /// `/api/generate`'s answer field. Real `/api/chat` never sends it; the testbed's
    /// ollama-openai-proxy streams it instead of `message.content` (and sends `null` in its first
    /// line), so it is read as a fallback.
    #[serde(default)]
    pub response: Option<String>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub done_reason: Option<String>,
    #[serde(default)]
    pub total_duration: Option<u64>,
    #[serde(default)]
    pub load_duration: Option<u64>,
    #[serde(default)]
    pub prompt_eval_count: Option<u32>,
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    #[serde(default)]
    pub eval_count: Option<u32>,
    #[serde(default)]
    pub eval_duration: Option<u64>,
    /// `{"error": "..."}`: an error body, or an error line inside a 200 stream.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireToolCall {
    /// Recent Ollama versions send an id; older ones do not, and then one is generated.
    #[serde(default)]
    pub id: Option<String>,
    pub function: WireFunction,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireFunction {
    pub name: String,
    /// A JSON *object* (unlike OpenAI's string). A string is accepted too, for proxies that
    /// forward OpenAI's shape.
    #[serde(default)]
    pub arguments: serde_json::Value,
}

impl ChatChunk {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, BackendError> {
        serde_json::from_slice(bytes)
            .map_err(|e| BackendError::malformed(format!("ollama: unreadable JSON: {e}")))
    }

    /// The error text of an `{"error": ...}` object, if this is one.
    pub(crate) fn error_text(&self) -> Option<String> {
        match self.error.as_ref()? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            v @ serde_json::Value::Object(o) => {
                Some(o.get("message").and_then(|m| m.as_str()).map_or_else(|| v.to_string(), str::to_owned))
            }
            other => Some(other.to_string()),
        }
    }

    /// Answer text: `message.content`, else the proxy's `response`.
    pub(crate) fn text(&self) -> &str {
        match self.message.as_ref().and_then(|m| m.content.as_deref()) {
            Some(t) if !t.is_empty() => t,
            _ => self.response.as_deref().unwrap_or(""),
        }
    }

    pub(crate) fn thinking(&self) -> &str {
        self.message.as_ref().and_then(|m| m.thinking.as_deref()).unwrap_or("")
    }

    pub(crate) fn tool_calls(&self) -> &[WireToolCall] {
        self.message.as_ref().and_then(|m| m.tool_calls.as_deref()).unwrap_or(&[])
    }

    pub(crate) fn timings(&self) -> OllamaTimings {
        OllamaTimings {
            total: self.total_duration.map(Duration::from_nanos),
            load: self.load_duration.map(Duration::from_nanos),
            prompt_eval: self.prompt_eval_duration.map(Duration::from_nanos),
            eval: self.eval_duration.map(Duration::from_nanos),
            prompt_eval_count: self.prompt_eval_count,
            eval_count: self.eval_count,
        }
    }

    /// Usage of a final object. Both counts present: reported. Only `eval_count` (older
    /// servers omit `prompt_eval_count` when the whole prompt came from the KV cache): the
    /// prompt side is our estimate, so the record is marked estimated. Neither (the testbed
    /// proxy's stream): estimated from the request and the text seen.
    pub(crate) fn usage(&self, estimated_input: u32, estimated_output: u32) -> Usage {
        match (self.prompt_eval_count, self.eval_count) {
            (Some(p), Some(e)) => Usage::reported(p, e),
            (None, Some(e)) => Usage::estimated(estimated_input, e),
            (Some(p), None) => Usage::estimated(p, estimated_output),
            (None, None) => Usage::estimated(estimated_input, estimated_output),
        }
    }
}

impl WireToolCall {
    /// The neutral tool call: arguments as a JSON object, an id generated when none came.
    pub(crate) fn to_tool_call(&self) -> ToolCall {
        ToolCall {
            id: self.id.clone().filter(|s| !s.is_empty()).unwrap_or_else(new_tool_call_id),
            name: self.function.name.clone(),
            arguments: normalize_tool_arguments(&self.function.arguments),
        }
    }
}

/// `done_reason` in neutral terms. Ollama says `stop` also when the turn ended in tool calls,
/// so a stop with tool calls is reported as [`FinishReason::ToolCalls`], which is what callers
/// (and OpenAI-shaped clients of the gateway) check to run the tools.
pub(crate) fn finish_reason(done_reason: Option<&str>, has_tool_calls: bool) -> Option<FinishReason> {
    match done_reason? {
        "stop" if has_tool_calls => Some(FinishReason::ToolCalls),
        "stop" => Some(FinishReason::Stop),
        "length" => Some(FinishReason::Length),
        other => Some(FinishReason::Other(other.to_owned())),
    }
}

/// The server-side timings of one Ollama answer (its final object), in [`Duration`]s (the wire
/// carries nanoseconds).
///
/// `load` is kept apart on purpose: a cold start (the model loaded from disk) can take many
/// seconds and is not the backend's steady-state latency. The adapter records it in the
/// `claudette_ollama_load_seconds{backend}` histogram instead of letting it poison latency
/// averages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct OllamaTimings {
    /// `total_duration`: everything the server spent on the request.
    pub total: Option<Duration>,
    /// `load_duration`: loading the model (near zero when it was already in memory).
    pub load: Option<Duration>,
    /// `prompt_eval_duration`: processing the prompt.
    pub prompt_eval: Option<Duration>,
    /// `eval_duration`: generating the answer.
    pub eval: Option<Duration>,
    /// Prompt tokens the server evaluated: lower than the prompt when a cached prefix was
    /// reused, or when the prompt was silently truncated to `num_ctx`.
    pub prompt_eval_count: Option<u32>,
    /// Generated tokens.
    pub eval_count: Option<u32>,
}

impl OllamaTimings {
    /// Generation throughput, `eval_count / eval_duration`, in tokens per second.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let secs = self.eval?.as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        Some(f64::from(self.eval_count?) / secs)
    }
}

/// Reads the timings of an `/api/chat` answer: a non-stream body, or a whole NDJSON stream body
/// (the first `done: true` line is used).
pub fn parse_timings(body: &[u8]) -> Result<OllamaTimings, BackendError> {
    if let Ok(chunk) = serde_json::from_slice::<ChatChunk>(body) {
        return Ok(chunk.timings());
    }
    for line in body.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let chunk = ChatChunk::parse(line)?;
        if chunk.done {
            return Ok(chunk.timings());
        }
    }
    Err(BackendError::malformed("ollama: no final (`done: true`) object to read timings from"))
}

/// Smallest gap, in tokens, between the prompt estimate and `prompt_eval_count` that can count
/// as truncation. Chat templates, tokenizer differences and small cached prefixes move the
/// count by a few dozen tokens; that noise must not raise a warning on short prompts.
pub const TRUNCATION_MIN_GAP: u32 = 32;

/// Whether an answer looks like Ollama silently cut the prompt to `num_ctx`, and if so the
/// warning to attach (ollama/ollama #4967, #3839: the server truncates without an error).
///
/// `estimated` is the request's prompt-token estimate (about 4 bytes a token), `evaluated` the
/// server's `prompt_eval_count`. The answer is flagged when either
/// - `evaluated` fills the window (`evaluated >= num_ctx`): the prompt was at least as long as
///   the window, so the server kept only what fit; or
/// - `evaluated` is under half the estimate **and** more than [`TRUNCATION_MIN_GAP`] tokens
///   short of it **and** the estimate is at least half of `num_ctx`.
///
/// Why the margins: KV-cache reuse also lowers `prompt_eval_count` (a follow-up turn whose
/// history is still cached evaluates only the new message), and the byte-based estimate is
/// rough. The ratio and the absolute gap absorb estimate noise. The last condition is what
/// keeps cache reuse from raising false alarms in ordinary multi-turn chats: truncation needs a
/// prompt longer than `num_ctx`, and a prompt whose estimate is under half the window would need
/// more than two tokens per 4 bytes to get there, which real text does not do. A long prompt
/// that was also largely cached can still be flagged; the warning says so.
pub fn truncation_warning(estimated: u32, evaluated: u32, num_ctx: u32) -> Option<String> {
    let fills_window = num_ctx > 0 && evaluated >= num_ctx;
    let far_short = u64::from(evaluated) * 2 < u64::from(estimated)
        && estimated.saturating_sub(evaluated) > TRUNCATION_MIN_GAP
        && u64::from(estimated) * 2 >= u64::from(num_ctx);
    if !(fills_window || far_short) {
        return None;
    }
    Some(format!(
        "ollama evaluated {evaluated} prompt tokens but about {estimated} were sent with num_ctx {num_ctx}: the \
         prompt was probably truncated silently (raise the backend's `num_ctx` setting or shorten the prompt; a \
         reused KV cache can also lower the count)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_rule() {
        // Plain answer, counts agree.
        assert_eq!(truncation_warning(100, 98, 8192), None);
        // Short prompts: the gap is noise.
        assert_eq!(truncation_warning(40, 10, 8192), None);
        // A cached follow-up turn in a short chat: far short, but nowhere near the window.
        assert_eq!(truncation_warning(1_000, 20, 8192), None);
        // A 20k-token prompt into an 8k window.
        assert!(truncation_warning(20_000, 8_000, 8192).is_some());
        // Exactly the window.
        assert!(truncation_warning(9_000, 8192, 8192).is_some());
        assert!(truncation_warning(100, 2048, 2048).is_some());
    }

    #[test]
    fn throughput_from_timings() {
        let t = OllamaTimings {
            eval: Some(Duration::from_millis(500)),
            eval_count: Some(10),
            ..Default::default()
        };
        assert_eq!(t.tokens_per_second(), Some(20.0));
        assert_eq!(OllamaTimings::default().tokens_per_second(), None);
    }
}
