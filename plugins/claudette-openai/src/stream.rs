//! Decoding an OpenAI chat-completions SSE stream into [`StreamEvent`]s.

use claudette_core::error::scrub_secrets;
use claudette_core::{
    BackendError, ErrorKind, FinishReason, Frame, Phase, StreamDecoder, StreamEnd, StreamEvent,
    ToolCallDelta, Usage,
};
use serde_json::Value;

use crate::error::classify_error_value;
use crate::response::{content_text, map_finish_reason, parse_usage, reasoning_text};

/// Turns `data:` chunks of a chat-completions stream into events, one decoder per stream.
///
/// - Content, reasoning (`reasoning_content` / `reasoning`) and refusal deltas become
///   `TextDelta` / `ReasoningDelta` as they arrive.
/// - Tool-call fragments are passed through one [`ToolCallDelta`] per fragment, keyed by the
///   provider's `index`; `id` and `name` come once, arguments in pieces to concatenate.
/// - `finish_reason` and the usage chunk (`stream_options.include_usage`; `choices` empty,
///   null or absent, or — LiteLLM — beside an empty delta) are remembered for the end.
/// - `data: [DONE]` emits `Done` at once; nothing after it counts, and `finish` is a no-op.
/// - An error object inside the 200 stream (`{"error":…}`, vLLM's `{"object":"error",…}`,
///   an `event: error` frame) is an error classified like the status it names; a data line
///   that is not JSON is `MalformedResponse`.
/// - A body that ends without `[DONE]` is `StreamInterrupted`: a cut connection must never
///   look like a short, complete answer.
///
/// `Done` carries usage with source `Missing` when the server sent none (llama-cpp-python
/// ignores `include_usage`) and cost 0: the I/O layer estimates usage and prices the stream.
#[derive(Debug, Default)]
pub struct OpenAiStreamDecoder {
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
}

impl OpenAiStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The model the chunks name (the one that answered), once a chunk has named it.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Usage reported so far (the usage chunk arrives just before `[DONE]`).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether `[DONE]` has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn end(&self) -> StreamEvent {
        StreamEvent::Done {
            end: StreamEnd {
                finish_reason: self.finish_reason.clone(),
                usage: self.usage.unwrap_or_default(),
                cost: 0.0,
            },
        }
    }

    fn chunk(&mut self, value: &Value, out: &mut Vec<StreamEvent>) {
        if let Some(model) = value.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            if self.model.as_deref() != Some(model) {
                self.model = Some(model.to_owned());
            }
        }
        if let Some(choices) = value.get("choices").and_then(Value::as_array) {
            // We never ask for n > 1; a server that numbers choices gets only choice 0 read.
            for choice in
                choices.iter().filter(|c| c.get("index").and_then(Value::as_u64).is_none_or(|i| i == 0))
            {
                if let Some(delta) = choice.get("delta").filter(|d| d.is_object()) {
                    delta_events(delta, out);
                }
                if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                    self.finish_reason = Some(map_finish_reason(reason));
                }
            }
        }
        if let Some(usage) = value.get("usage").and_then(parse_usage) {
            self.usage = Some(usage);
        }
    }
}

fn delta_events(delta: &Value, out: &mut Vec<StreamEvent>) {
    if let Some(text) = reasoning_text(delta) {
        out.push(StreamEvent::ReasoningDelta { text: text.to_owned() });
    }
    let text = content_text(delta.get("content"));
    if !text.is_empty() {
        out.push(StreamEvent::TextDelta { text });
    }
    // A streamed refusal is the answer text of a refusing model.
    if let Some(refusal) = delta.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        out.push(StreamEvent::TextDelta { text: refusal.to_owned() });
    }
    if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
        for (position, call) in calls.iter().enumerate() {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            push_tool_delta(index, call.get("id"), call.get("function"), out);
        }
    } else if let Some(function) = delta.get("function_call") {
        push_tool_delta(0, None, Some(function), out);
    }
}

fn push_tool_delta(index: u32, id: Option<&Value>, function: Option<&Value>, out: &mut Vec<StreamEvent>) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let id = text(id);
    let name = text(function.and_then(|f| f.get("name")));
    let arguments = match function.and_then(|f| f.get("arguments")) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        // Some servers send the whole arguments object at once.
        Some(other) => other.to_string(),
    };
    if id.is_some() || name.is_some() || !arguments.is_empty() {
        out.push(StreamEvent::ToolCall { delta: ToolCallDelta { index, id, name, arguments } });
    }
}

/// The first `max` bytes of `text`, scrubbed, for error messages about bad data.
fn snippet(text: &str, max: usize) -> String {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = scrub_secrets(&text[..cut]);
    if cut < text.len() {
        s.push('…');
    }
    s
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        if self.done {
            return Ok(Vec::new());
        }
        let data = frame.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(vec![self.end()]);
        }
        let is_error_event = frame.event.as_deref() == Some("error");
        if data.is_empty() && !is_error_event {
            return Ok(Vec::new());
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) if is_error_event => {
                return Err(BackendError::new(
                    ErrorKind::Overloaded,
                    format!("error event: {}", snippet(data, 200)),
                )
                .with_phase(Phase::Body));
            }
            Err(e) => {
                return Err(BackendError::malformed(format!(
                    "stream data is not JSON ({e}): `{}`",
                    snippet(data, 120)
                ))
                .with_phase(Phase::Body));
            }
        };
        if let Some(err) = classify_error_value(&value) {
            return Err(err.with_phase(Phase::Body));
        }
        if is_error_event {
            return Err(BackendError::new(
                ErrorKind::Overloaded,
                format!("error event: {}", snippet(data, 200)),
            )
            .with_phase(Phase::Body));
        }
        if !value.is_object() {
            return Err(BackendError::malformed(format!(
                "stream chunk is not a JSON object: `{}`",
                snippet(data, 120)
            ))
            .with_phase(Phase::Body));
        }
        let mut out = Vec::new();
        self.chunk(&value, &mut out);
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        if self.done {
            return Ok(Vec::new());
        }
        let after = match &self.finish_reason {
            Some(r) => format!(" (after finish_reason `{}`)", r.as_str()),
            None => String::new(),
        };
        Err(BackendError::interrupted(format!("stream ended without [DONE]{after}")))
    }
}
