//! The streamed answer: body chunks → [`StreamParser`] (framing, decoding, the one-terminal-
//! event contract) → [`StreamEvent`]s, with the timers and the usage/cost bookkeeping added here.
//!
//! A hand-written state machine driven by `futures::stream::unfold`, so the stream owns the
//! response: dropping the stream drops the response, which closes the connection and so
//! cancels the generation upstream (RT-9).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use claudette_core::tokens::estimate_tokens;
use claudette_core::{
    BackendError, EventStream, Observation, Phase, Pricing, ProviderAdapter, StreamEvent, StreamParser,
    Usage, UsageSource,
};
use futures::StreamExt;
use tokio::time::{Instant, timeout_at};

use crate::errors::{Redactor, body_error};
use crate::stats::Recorder;
use crate::transport::Response;

/// Everything a stream needs after `send_stream` has returned.
pub(crate) struct StreamSetup {
    pub(crate) recorder: Recorder,
    pub(crate) redactor: Redactor,
    /// Told how the stream went, at its terminal event.
    pub(crate) observer: Arc<dyn ProviderAdapter>,
    pub(crate) status: u16,
    pub(crate) pricing: Pricing,
    /// The prompt, kept for an input estimate when the provider reports no usage.
    pub(crate) prompt: PromptText,
    pub(crate) started: Instant,
    pub(crate) first_byte_deadline: Instant,
    pub(crate) total_deadline: Instant,
    pub(crate) first_byte: Duration,
    pub(crate) idle: Duration,
    pub(crate) total: Duration,
}

/// A request's message texts, kept for an input estimate at the end of a stream. Estimating
/// up front would tokenise every prompt although most providers report usage.
pub(crate) struct PromptText {
    messages: Vec<String>,
}

impl PromptText {
    pub(crate) fn of(request: &claudette_core::ChatRequest) -> Self {
        Self { messages: request.messages.iter().map(|m| m.content.clone()).collect() }
    }

    /// Same rule as `claudette_core::tokens::estimate_request_tokens`: each message's text
    /// plus ~4 tokens of framing.
    fn estimate(&self) -> u32 {
        self.messages.iter().map(|m| estimate_tokens(m).saturating_add(4)).fold(0u32, u32::saturating_add)
    }
}

/// Which timer ended a wait for the next chunk.
#[derive(Debug, Clone, Copy)]
enum Timer {
    FirstByte,
    Idle,
    Total,
}

struct State {
    setup: StreamSetup,
    /// `None` once the stream has ended: the connection is released at the terminal event,
    /// not when the caller gets around to dropping the stream.
    response: Option<Response>,
    parser: StreamParser,
    pending: VecDeque<StreamEvent>,
    /// The parser's output list, kept so a chunk's events cost no new list.
    decoded: Vec<StreamEvent>,
    /// The terminal event went out.
    finished: bool,
    /// Text, reasoning and tool arguments seen, for the usage estimate.
    output_text: String,
    ttft: Option<Duration>,
}

/// Events one body read is expected to bring at most, for the first sizing of the lists.
const EVENTS_AT_ONCE: usize = 16;

pub(crate) fn event_stream(setup: StreamSetup, response: Response, parser: StreamParser) -> EventStream {
    let state = State {
        setup,
        response: Some(response),
        parser,
        // Sized for a read that brings many events at once (a fast local server, a proxy that
        // buffers): growing both lists from nothing cost a few reallocations per stream.
        pending: VecDeque::with_capacity(EVENTS_AT_ONCE),
        decoded: Vec::with_capacity(EVENTS_AT_ONCE),
        finished: false,
        output_text: String::new(),
        ttft: None,
    };
    // Fused: a caller may poll again after the end and must get `None`, not a panic. The
    // state is boxed because `unfold` moves it into and out of a new future for every event;
    // boxed, each move is of a pointer rather than of the response, parser and setup.
    Box::pin(
        futures::stream::unfold(Box::new(state), |mut state| async move {
            let event = state.next_event().await?;
            Some((event, state))
        })
        .fuse(),
    )
}

impl State {
    async fn next_event(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(self.emit(event));
            }
            if self.finished {
                return None;
            }
            self.pump().await;
        }
    }

    /// Waits for the next body chunk (or the end, or a timer) and queues what it yields.
    /// What has already been read goes through without arming a timer.
    async fn pump(&mut self) {
        let Some(response) = self.response.as_mut() else {
            // Unreachable by construction (the response goes away only with `finished`), but
            // a stream must end in a terminal event whatever happens.
            self.queue_error(BackendError::internal("stream polled after its response was released"));
            return;
        };
        let piece = match response.buffered() {
            Some(piece) => piece,
            None => {
                let (deadline, timer) = self.next_deadline();
                let Some(response) = self.response.as_mut() else {
                    return;
                };
                match timeout_at(deadline, response.chunk()).await {
                    Ok(piece) => piece,
                    Err(_elapsed) => {
                        self.queue_error(self.timeout_error(timer));
                        return;
                    }
                }
            }
        };
        match piece {
            Ok(Some(bytes)) => {
                self.parser.push(&bytes, &mut self.decoded);
                self.pending.extend(self.decoded.drain(..));
            }
            Ok(None) => {
                self.parser.finish(&mut self.decoded);
                self.pending.extend(self.decoded.drain(..));
            }
            Err(e) => self.queue_error(body_error(&e, true)),
        }
    }

    fn next_deadline(&self) -> (Instant, Timer) {
        let mut best = (self.setup.total_deadline, Timer::Total);
        let idle = crate::deadline_after(Instant::now(), self.setup.idle);
        if idle < best.0 {
            best = (idle, Timer::Idle);
        }
        if !self.parser.has_seen_frame() && self.setup.first_byte_deadline < best.0 {
            best = (self.setup.first_byte_deadline, Timer::FirstByte);
        }
        best
    }

    fn timeout_error(&self, timer: Timer) -> BackendError {
        let message = match timer {
            Timer::FirstByte => format!(
                "no stream event within the first-byte timeout of {} ms",
                self.setup.first_byte.as_millis()
            ),
            Timer::Idle => format!("no stream data for {} ms (idle timeout)", self.setup.idle.as_millis()),
            Timer::Total => {
                format!("stream exceeded the total timeout of {} ms", self.setup.total.as_millis())
            }
        };
        BackendError::timeout(message, Phase::Body)
    }

    fn queue_error(&mut self, error: BackendError) {
        let mut events = Vec::new();
        self.parser.fail(error, &mut events);
        self.pending.extend(events);
    }

    /// Bookkeeping on the way out: usage, cost, backend name, metrics.
    fn emit(&mut self, event: StreamEvent) -> StreamEvent {
        match event {
            StreamEvent::TextDelta { ref text } | StreamEvent::ReasoningDelta { ref text } => {
                self.output_text.push_str(text);
                self.first_content();
                event
            }
            StreamEvent::ToolCall { ref delta } => {
                self.output_text.push_str(&delta.arguments);
                self.first_content();
                event
            }
            StreamEvent::ThinkingSeal { .. } | StreamEvent::Native { .. } | StreamEvent::Citation { .. } => {
                self.first_content();
                event
            }
            StreamEvent::Usage { .. } | StreamEvent::NativeField { .. } | StreamEvent::TextEnd => event,
            StreamEvent::Done { mut end } => {
                if end.usage.source == UsageSource::Missing {
                    end.usage =
                        Usage::estimated(self.setup.prompt.estimate(), estimate_tokens(&self.output_text));
                }
                end.cost = self.setup.pricing.cost(&end.usage);
                self.finish(None);
                StreamEvent::Done { end }
            }
            StreamEvent::Error { error } => {
                let error =
                    self.setup.redactor.error(error.with_backend(self.setup.recorder.backend.clone()));
                self.finish(Some(&error));
                tracing::debug!(backend = %self.setup.recorder.backend, error = %error, "upstream stream failed");
                StreamEvent::Error { error }
            }
        }
    }

    fn first_content(&mut self) {
        if self.ttft.is_none() {
            let ttft = self.setup.started.elapsed();
            self.ttft = Some(ttft);
            self.setup.recorder.ttft(ttft);
        }
    }

    /// The terminal event is going out: release the connection, record the outcome.
    fn finish(&mut self, error: Option<&BackendError>) {
        self.finished = true;
        self.pending.clear();
        // A body already read to its end gives its connection back to the pool; otherwise
        // dropping it closes the connection (an abandoned generation must stop upstream).
        if let Some(mut response) = self.response.take() {
            response.try_finish();
        }
        let latency = self.setup.started.elapsed();
        match error {
            None => self.setup.recorder.success(self.setup.status, latency),
            Some(e) => self.setup.recorder.failure(e, true),
        }
        self.setup.observer.observe(&Observation {
            latency,
            ttft: self.ttft,
            error: error.map(|e| e.kind),
            stream: true,
        });
    }
}
