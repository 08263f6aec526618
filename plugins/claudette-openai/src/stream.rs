//! Decoding an OpenAI chat-completions SSE stream into [`StreamEvent`]s.

use std::borrow::Cow;

use claudette_core::error::scrub_secrets;
use claudette_core::{
    BackendError, ErrorKind, FinishReason, Frame, Phase, StreamDecoder, StreamEnd, StreamEvent,
    ToolCallDelta, Usage,
};
use serde::Deserialize as _;
use serde_json::Value;

use crate::error::classify_error_value;
use crate::response::map_finish_reason;
use crate::wire::{Args, ChunkWire, Completion, FunctionWire, MessageWire, Obj, Str, UsageWire};

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
///
/// Each chunk is read into the borrowing, per-field lenient types of [`crate::wire`] (no
/// `Value` tree per chunk); a `Value` is built only for an error object, or for a chunk those
/// types refuse (a repeated key), which then reads exactly as it always did.
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

    fn chunk(&mut self, chunk: ChunkWire<'_>, out: &mut Vec<StreamEvent>) {
        if let Some(model) = chunk.model.non_empty() {
            if self.model.as_deref() != Some(&*model) {
                self.model = Some(model.into_owned());
            }
        }
        if let Some(choices) = chunk.choices.0 {
            // We never ask for n > 1; a server that numbers choices gets only choice 0 read.
            for choice in choices.into_iter().filter_map(|c| c.0).filter(|c| c.index.0.is_none_or(|i| i == 0))
            {
                if let Some(mut delta) = choice.delta.0 {
                    delta_events(&mut delta, out);
                }
                if let Some(reason) = choice.finish_reason.0 {
                    self.finish_reason = Some(map_finish_reason(&reason));
                }
            }
        }
        if let Some(usage) = chunk.usage.0.as_ref().and_then(UsageWire::to_usage) {
            self.usage = Some(usage);
        }
    }

    /// A parsed `data:` line: an error object is an error, an `event: error` frame is one
    /// whatever it holds, anything but an object is malformed, and a chunk yields its events.
    /// `value` is the line as a `Value` when the caller already built one.
    fn read(
        &mut self,
        chunk: Obj<ChunkWire<'_>>,
        value: Option<&Value>,
        data: &str,
        is_error_event: bool,
    ) -> Result<Vec<StreamEvent>, BackendError> {
        if chunk.0.as_ref().is_some_and(Completion::looks_like_error) {
            // The rare path: an error object, classified from a `Value` like any other.
            let parsed;
            let value = match value {
                Some(v) => v,
                None => {
                    parsed = serde_json::from_str::<Value>(data)
                        .map_err(|e| unreadable(data, &e, is_error_event))?;
                    &parsed
                }
            };
            if let Some(err) = classify_error_value(value) {
                return Err(err.with_phase(Phase::Body));
            }
        }
        if is_error_event {
            return Err(error_event(data));
        }
        let Some(chunk) = chunk.0 else {
            return Err(BackendError::malformed(format!(
                "stream chunk is not a JSON object: `{}`",
                snippet(data, 120)
            ))
            .with_phase(Phase::Body));
        };
        let mut out = Vec::new();
        self.chunk(chunk, &mut out);
        Ok(out)
    }
}

fn delta_events(delta: &mut MessageWire<'_>, out: &mut Vec<StreamEvent>) {
    if let Some(text) = delta.take_reasoning() {
        out.push(StreamEvent::ReasoningDelta { text: text.into_owned() });
    }
    let text = std::mem::take(&mut delta.content).into_text();
    if !text.is_empty() {
        out.push(StreamEvent::TextDelta { text });
    }
    // A streamed refusal is the answer text of a refusing model.
    if let Some(refusal) = std::mem::take(&mut delta.refusal).non_empty() {
        out.push(StreamEvent::TextDelta { text: refusal.into_owned() });
    }
    if let Some(calls) = delta.tool_calls.0.take() {
        for (position, call) in calls.into_iter().enumerate() {
            // A fragment that is not an object carries nothing.
            let Some(call) = call.0 else { continue };
            let index = call
                .index
                .0
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            push_tool_delta(index, call.id, call.function.0, out);
        }
    } else if let Some(function) = delta.function_call.0.take() {
        push_tool_delta(0, Str::default(), Some(*function), out);
    }
}

fn push_tool_delta(index: u32, id: Str<'_>, function: Option<FunctionWire<'_>>, out: &mut Vec<StreamEvent>) {
    let id = id.non_empty().map(Cow::into_owned);
    let (name, arguments) = match function {
        Some(f) => (f.name.non_empty().map(Cow::into_owned), f.arguments),
        None => (None, Args::Absent),
    };
    let arguments = match arguments {
        Args::Text(s) => s.into_owned(),
        Args::Absent => String::new(),
        // Some servers send the whole arguments object at once.
        Args::Json(v) => v.to_string(),
    };
    if id.is_some() || name.is_some() || !arguments.is_empty() {
        out.push(StreamEvent::ToolCall { delta: ToolCallDelta { index, id, name, arguments } });
    }
}

/// A `data:` line that is not JSON: malformed, or in an `event: error` frame that error.
fn unreadable(data: &str, e: &serde_json::Error, is_error_event: bool) -> BackendError {
    if is_error_event {
        return error_event(data);
    }
    BackendError::malformed(format!("stream data is not JSON ({e}): `{}`", snippet(data, 120)))
        .with_phase(Phase::Body)
}

/// An `event: error` frame whose data is no error object we can classify.
fn error_event(data: &str) -> BackendError {
    BackendError::new(ErrorKind::Overloaded, format!("error event: {}", snippet(data, 200)))
        .with_phase(Phase::Body)
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
        match serde_json::from_str::<Obj<ChunkWire<'_>>>(data) {
            Ok(chunk) => self.read(chunk, None, data, is_error_event),
            Err(_) => {
                // Not JSON, or JSON the typed pass refuses (a repeated key, of which a `Value`
                // keeps the last): the `Value` parser decides, with its message.
                let value: Value =
                    serde_json::from_str(data).map_err(|e| unreadable(data, &e, is_error_event))?;
                let chunk = Obj::<ChunkWire<'_>>::deserialize(&value).map_err(|e| {
                    BackendError::malformed(format!(
                        "stream chunk cannot be read ({e}): `{}`",
                        snippet(data, 120)
                    ))
                    .with_phase(Phase::Body)
                })?;
                self.read(chunk, Some(&value), data, is_error_event)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &str) -> Frame {
        Frame { event: None, data: data.to_owned() }
    }

    #[test]
    fn a_repeated_key_reads_like_a_value_last_one_wins() {
        let mut d = OpenAiStreamDecoder::new();
        let events = d
            .decode(&frame(
                r#"{"model":"a","model":"b","choices":[{"index":0,"delta":{"content":"x","content":"y"}}]}"#,
            ))
            .unwrap();
        assert_eq!(events, vec![StreamEvent::text("y")]);
        assert_eq!(d.model(), Some("b"));
    }

    #[test]
    fn odd_shapes_in_a_delta_are_skipped_not_fatal() {
        let mut d = OpenAiStreamDecoder::new();
        let events = d
            .decode(&frame(
                r#"{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"a\nb"},7],"refusal":3,
                "tool_calls":[5,{"index":2,"id":"c","function":{"name":"f","arguments":{"b":1,"a":[1]}}}]},
                "finish_reason":null}],"usage":{"prompt_tokens":2.0,"completion_tokens":"3"}}"#,
            ))
            .unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::text("a\nb"),
                StreamEvent::ToolCall {
                    delta: ToolCallDelta {
                        index: 2,
                        id: Some("c".into()),
                        name: Some("f".into()),
                        arguments: r#"{"a":[1],"b":1}"#.into(),
                    },
                },
            ]
        );
        let usage = d.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (2, 0));
    }
}
