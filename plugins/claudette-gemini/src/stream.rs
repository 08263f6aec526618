//! [`GeminiStreamDecoder`]: `streamGenerateContent?alt=sse` chunks to [`StreamEvent`]s.

use claudette_core::types::FirstToolCallOnly;
use claudette_core::{
    BackendError, ChatRequest, Frame, HttpResponse, StreamDecoder, StreamEnd, StreamEvent, ToolCallDelta,
    Usage,
};
use serde_json::Value;

use crate::adapter::classify_body;
use crate::wire::{self, GenerateContentResponse, UsageMetadata};

/// Decodes one Gemini stream.
///
/// Each SSE `data:` line is a whole `GenerateContentResponse` holding the next piece of the
/// candidate: text parts become text deltas (reasoning deltas for `thought: true` parts),
/// `functionCall` parts become one complete [`StreamEvent::ToolCall`] each (Gemini sends calls
/// whole), `usageMetadata` is remembered (the last one is the total).
///
/// Gemini sends no end marker: the last chunk carries a `finishReason` and the body ends. So
/// [`StreamDecoder::finish`] yields `Done` only if a `finishReason` was seen; a body that ends
/// without one was cut (reliability-spec F-17). An error object in the stream, a blocked prompt
/// (`promptFeedback.blockReason`) and a filter stop before any answer (thoughts are none) are
/// errors.
///
/// Gemini has no switch for `parallel_tool_calls: false`: with
/// [`first_tool_call_only`](Self::first_tool_call_only), the calls after the first are dropped
/// from the stream ([`FirstToolCallOnly`]).
#[derive(Debug)]
pub struct GeminiStreamDecoder {
    backend: String,
    finish_reason: Option<String>,
    usage: Option<UsageMetadata>,
    next_tool_index: u32,
    saw_tool_calls: bool,
    saw_output: bool,
    one_call: Option<FirstToolCallOnly>,
}

impl GeminiStreamDecoder {
    pub fn new(backend: &str) -> Self {
        Self {
            backend: backend.to_owned(),
            finish_reason: None,
            usage: None,
            next_tool_index: 0,
            saw_tool_calls: false,
            saw_output: false,
            one_call: None,
        }
    }

    /// Holds the stream to one tool call when `request` asks for that.
    #[must_use]
    pub fn first_tool_call_only(mut self, request: &ChatRequest) -> Self {
        self.one_call = FirstToolCallOnly::for_request(request, &self.backend);
        self
    }

    /// Every batch of events leaves through here.
    fn out(&mut self, mut events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        if let Some(filter) = &mut self.one_call {
            filter.retain(&mut events);
        }
        events
    }

    fn fail(&self, e: BackendError) -> BackendError {
        e.with_backend(&self.backend)
    }
}

impl StreamDecoder for GeminiStreamDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            self.fail(BackendError::malformed(format!("gemini: unreadable stream chunk: {e}")))
        })?;
        if value.get("error").is_some() {
            let body = data.as_bytes();
            return Err(self.fail(classify_body(&HttpResponse { status: 200, headers: &[], body })));
        }
        let chunk: GenerateContentResponse = serde_json::from_value(value).map_err(|e| {
            self.fail(BackendError::malformed(format!("gemini: unexpected stream chunk: {e}")))
        })?;
        if let Some(blocked) = chunk.prompt_block() {
            return Err(self.fail(blocked));
        }
        if let Some(u) = chunk.usage_metadata {
            self.usage = Some(u);
        }
        let mut events = Vec::new();
        // Reasoning alone is no answer: a filter stop after thoughts only is still a block.
        let mut answered = false;
        for part in chunk.parts() {
            if let Some(call) = &part.function_call {
                let call = call.to_tool_call();
                let arguments = serde_json::to_string(&call.arguments)
                    .map_err(|e| self.fail(BackendError::internal(format!("encode tool arguments: {e}"))))?;
                events.push(StreamEvent::ToolCall {
                    delta: ToolCallDelta {
                        index: self.next_tool_index,
                        id: Some(call.id),
                        name: Some(call.name),
                        arguments,
                    },
                });
                self.next_tool_index += 1;
                self.saw_tool_calls = true;
                answered = true;
            } else if let Some(text) = part.text.as_ref().filter(|t| !t.is_empty()) {
                events.push(if part.thought == Some(true) {
                    StreamEvent::ReasoningDelta { text: text.clone() }
                } else {
                    answered = true;
                    StreamEvent::TextDelta { text: text.clone() }
                });
            }
        }
        self.saw_output |= answered;
        if let Some(e) = chunk.finish_error() {
            return Err(self.fail(e));
        }
        if let Some(reason) = chunk.finish_reason() {
            if wire::is_filter_reason(reason) && !self.saw_output {
                return Err(self.fail(wire::blocked_output(reason)));
            }
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(self.out(events))
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        let Some(reason) = self.finish_reason.take() else {
            return Err(self.fail(BackendError::interrupted(
                "gemini: stream ended before a chunk with a finishReason (cut short)",
            )));
        };
        // No usageMetadata at all: `Missing`, and the I/O layer estimates it.
        let usage = self.usage.map_or_else(Usage::default, UsageMetadata::to_usage);
        let finish_reason = Some(wire::finish_reason(&reason, self.saw_tool_calls));
        Ok(self.out(vec![StreamEvent::Done { end: StreamEnd { finish_reason, usage, cost: 0.0 } }]))
    }
}
