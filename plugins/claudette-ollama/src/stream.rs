//! [`OllamaStreamDecoder`]: NDJSON `/api/chat` lines to [`StreamEvent`]s.

use claudette_core::types::{FirstToolCallOnly, estimate_tokens_from_len};
use claudette_core::{
    BackendError, ChatRequest, Frame, StreamDecoder, StreamEnd, StreamEvent, ToolCallDelta,
};

use crate::adapter::{check_truncation, record_load, stream_error};
use crate::wire::{self, ChatChunk};

/// Decodes one Ollama stream.
///
/// - A chunk line `{message:{content, thinking?, tool_calls?}, done:false}` yields a reasoning
///   delta, a text delta and one [`StreamEvent::ToolCall`] per call. Ollama sends tool calls
///   whole, so each delta carries the id, the name and the complete arguments JSON text.
/// - The first `done: true` line yields `Done` with the reported usage. Anything after it is
///   ignored: the testbed's ollama-openai-proxy sends a second `done: true` line.
/// - An `{"error": "..."}` line, even after HTTP 200, is an error.
/// - A body that ends before `done: true` is [`ErrorKind::StreamInterrupted`]
///   (reliability-spec F-17): a cut stream never passes for a short answer.
/// - Ollama has no switch for `parallel_tool_calls: false`: with
///   [`first_tool_call_only`](Self::first_tool_call_only), the calls after the first are
///   dropped from the stream ([`FirstToolCallOnly`]).
///
/// [`ErrorKind::StreamInterrupted`]: claudette_core::ErrorKind::StreamInterrupted
#[derive(Debug)]
pub struct OllamaStreamDecoder {
    backend: String,
    estimated_input: u32,
    num_ctx: u32,
    next_tool_index: u32,
    saw_tool_calls: bool,
    output_bytes: usize,
    done: bool,
    one_call: Option<FirstToolCallOnly>,
}

impl OllamaStreamDecoder {
    /// A decoder for one stream of `backend`, whose request was estimated at
    /// `estimated_input` prompt tokens and sent with `num_ctx`.
    pub fn new(backend: &str, estimated_input: u32, num_ctx: u32) -> Self {
        Self {
            backend: backend.to_owned(),
            estimated_input,
            num_ctx,
            next_tool_index: 0,
            saw_tool_calls: false,
            output_bytes: 0,
            done: false,
            one_call: None,
        }
    }

    /// Holds the stream to one tool call when `request` asks for that.
    #[must_use]
    pub fn first_tool_call_only(mut self, request: &ChatRequest) -> Self {
        self.one_call = FirstToolCallOnly::for_request(request, &self.backend);
        self
    }
}

impl StreamDecoder for OllamaStreamDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        if self.done {
            return Ok(Vec::new());
        }
        let chunk = ChatChunk::parse(frame.data.as_bytes())?;
        if let Some(text) = chunk.error_text() {
            return Err(stream_error(&text).with_backend(&self.backend));
        }
        let mut events = Vec::new();
        let thinking = chunk.thinking();
        if !thinking.is_empty() {
            self.output_bytes += thinking.len();
            events.push(StreamEvent::ReasoningDelta { text: thinking.to_owned() });
        }
        let text = chunk.text();
        if !text.is_empty() {
            self.output_bytes += text.len();
            events.push(StreamEvent::TextDelta { text: text.to_owned() });
        }
        for call in chunk.tool_calls() {
            let call = call.to_tool_call();
            let arguments = serde_json::to_string(&call.arguments)
                .map_err(|e| BackendError::internal(format!("encode tool arguments: {e}")))?;
            self.output_bytes += arguments.len();
            self.saw_tool_calls = true;
            events.push(StreamEvent::ToolCall {
                delta: ToolCallDelta {
                    index: self.next_tool_index,
                    id: Some(call.id),
                    name: Some(call.name),
                    arguments,
                },
            });
            self.next_tool_index += 1;
        }
        if chunk.done {
            self.done = true;
            record_load(&self.backend, &chunk.timings());
            if let Some(w) =
                check_truncation(&self.backend, self.estimated_input, chunk.prompt_eval_count, self.num_ctx)
            {
                tracing::warn!(backend = %self.backend, "{w}");
            }
            let usage = chunk.usage(self.estimated_input, estimate_tokens_from_len(self.output_bytes));
            let finish_reason = wire::finish_reason(chunk.done_reason.as_deref(), self.saw_tool_calls);
            events.push(StreamEvent::Done { end: StreamEnd { finish_reason, usage, cost: 0.0 } });
        }
        if let Some(filter) = &mut self.one_call {
            filter.retain(&mut events);
        }
        Ok(events)
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        if self.done {
            // `Done` already went out with the `done: true` line.
            return Ok(Vec::new());
        }
        Err(BackendError::interrupted("ollama: stream ended before the final `done: true` line")
            .with_backend(&self.backend))
    }
}
