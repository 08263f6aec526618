//! The sans-IO provider contract.
//!
//! A provider is written as a [`ProviderAdapter`]: pure functions from our types to HTTP
//! request descriptions and from response bytes back to our types. It never opens a socket,
//! never sleeps and never spawns. That makes every provider testable on recorded bytes, lets
//! one I/O layer (`claudette-http`) own timeouts, retries-off, metrics and secrets for all of
//! them, and lets an adapter cross a `.so` boundary as JSON and bytes (a cdylib carries its own
//! tokio, which cannot do I/O on the host's runtime).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BackendError, ErrorKind};
use crate::settings::{BackendInfo, Pricing, Timeouts};
use crate::types::{ChatRequest, ChatResponse, StreamEvent};

/// HTTP method of a provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    Get,
    Post,
}

/// How the I/O layer attaches the backend's API key. The adapter never sees the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// No key (local servers).
    None,
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key as the value of this header (`x-api-key`, `x-goog-api-key`).
    Header(String),
}

/// Whether `value` can be sent as an HTTP header value: visible ASCII, space and tab (what
/// `http::HeaderValue::from_str` accepts). Shared so that configuration can refuse, at start,
/// a key the HTTP client would refuse on every request.
pub fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// A provider call, described but not performed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers other than authentication.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> Self {
        Self { method: Method::Get, url: url.into(), headers: Vec::new(), body: None }
    }
    /// A POST with a JSON body.
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Result<Self, BackendError> {
        let body =
            serde_json::to_vec(body).map_err(|e| BackendError::internal(format!("encode request: {e}")))?;
        Ok(Self {
            method: Method::Post,
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body),
        })
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The parts of an HTTP response an adapter looks at.
#[derive(Debug, Clone, Copy)]
pub struct HttpResponse<'a> {
    pub status: u16,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl HttpResponse<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// How a provider frames its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Framing {
    /// `text/event-stream`: `event:` and `data:` lines, blank line between events.
    Sse,
    /// One JSON object per line (Ollama).
    Ndjson,
}

/// One unit of a stream: an SSE event (name and joined data lines) or an NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub event: Option<String>,
    pub data: String,
}

/// Turns a provider's stream frames into [`StreamEvent`]s. Stateful (it joins tool-call
/// fragments, remembers usage and the finish reason), one per stream.
pub trait StreamDecoder: Send {
    /// Decodes one frame. Returns the events it yields, possibly none (pings, role-only
    /// chunks). A frame the decoder cannot read is an error; so is an error frame.
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError>;

    /// [`decode`](Self::decode), appending to `out` instead of returning a new list. The
    /// stream path calls this once per frame; a decoder that overrides it costs no list
    /// allocation per frame. On an error, what was appended before it is kept.
    fn decode_into(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        out.extend(self.decode(frame)?);
        Ok(())
    }

    /// The body ended. Returns the closing `Done` if the provider's end marker was seen (or
    /// the decoder can prove the stream was complete), else an error: a stream that just
    /// stops is never a success.
    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError>;
}

/// A provider's wire protocol, as pure functions. See the module docs for why.
pub trait ProviderAdapter: Send + Sync + 'static {
    /// What the backend says about itself (name, provider, model, prices, capabilities).
    fn info(&self) -> &BackendInfo;

    /// How the key goes on the wire.
    fn auth_scheme(&self) -> AuthScheme;

    /// The HTTP call for a chat request. `stream` asks for a streamed answer.
    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError>;

    /// Reads a 2xx non-stream response.
    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError>;

    /// Classifies a non-2xx response (status, headers such as `retry-after`, body).
    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError;

    /// Stream framing this provider uses.
    fn framing(&self) -> Framing {
        Framing::Sse
    }

    /// A fresh decoder for one stream.
    fn stream_decoder(&self, request: &ChatRequest) -> Box<dyn StreamDecoder>;

    /// A call that tells whether the backend is up without costing tokens (a model list,
    /// never a completion: health checks that burn tokens are a known money sink).
    fn health_probe(&self) -> Option<HttpRequest>;

    /// Reads the health probe's 2xx body as a list of model ids.
    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError>;

    /// The call that counts `request`'s input tokens without generating (Anthropic's
    /// `/v1/messages/count_tokens`, Gemini's `:countTokens`), built from the same conversion
    /// as [`build_request`](Self::build_request) so that what is counted is what would be
    /// sent. `None` (the default): the provider offers no such call. A non-2xx answer is
    /// classified by [`classify_error`](Self::classify_error), as for a completion.
    fn count_tokens_request(&self, request: &ChatRequest) -> Option<Result<HttpRequest, BackendError>> {
        let _ = request;
        None
    }

    /// Reads the 2xx answer to [`count_tokens_request`](Self::count_tokens_request)'s call as
    /// the number of input tokens.
    fn parse_count_tokens(&self, response: &HttpResponse<'_>) -> Result<u32, BackendError> {
        let _ = response;
        Err(BackendError::new(ErrorKind::Unsupported, "this provider offers no token count"))
    }

    /// Prices of `model` (or of the configured model).
    fn pricing(&self, model: Option<&str>) -> Pricing {
        let _ = model;
        self.info().pricing
    }

    /// Checks settings without I/O (base_url shape, model present...).
    fn validate(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Timeouts for the next call. Most providers use the configured ones; adaptive
    /// providers (self-hosted Qwen) stretch them from what [`observe`](Self::observe) taught
    /// them, so a slow but healthy GPU box is not cut off at a cloud-sized deadline.
    fn timeouts(&self, configured: &Timeouts, request: &ChatRequest) -> Timeouts {
        let _ = request;
        *configured
    }

    /// Told how each call went (by the I/O layer), for adapters that adapt.
    fn observe(&self, observation: &Observation) {
        let _ = observation;
    }
}

/// How one call went, as seen by the I/O layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Whole call (non-stream) or time to the terminal event (stream).
    pub latency: Duration,
    /// Time to first content event, for streams.
    pub ttft: Option<Duration>,
    /// The error kind, `None` on success.
    pub error: Option<ErrorKind>,
    pub stream: bool,
}

/// A boxed adapter is an adapter, so `HttpBackend<Box<dyn ProviderAdapter>>` serves adapters
/// chosen at run time (a registry lookup, a plugin) through the same I/O path as linked ones.
/// Every method forwards, defaults included, so an adapter's overrides are never lost.
impl ProviderAdapter for Box<dyn ProviderAdapter> {
    fn info(&self) -> &BackendInfo {
        (**self).info()
    }
    fn auth_scheme(&self) -> AuthScheme {
        (**self).auth_scheme()
    }
    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        (**self).build_request(request, stream)
    }
    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        (**self).parse_response(request, response)
    }
    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        (**self).classify_error(response)
    }
    fn framing(&self) -> Framing {
        (**self).framing()
    }
    fn stream_decoder(&self, request: &ChatRequest) -> Box<dyn StreamDecoder> {
        (**self).stream_decoder(request)
    }
    fn health_probe(&self) -> Option<HttpRequest> {
        (**self).health_probe()
    }
    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        (**self).parse_models(body)
    }
    fn count_tokens_request(&self, request: &ChatRequest) -> Option<Result<HttpRequest, BackendError>> {
        (**self).count_tokens_request(request)
    }
    fn parse_count_tokens(&self, response: &HttpResponse<'_>) -> Result<u32, BackendError> {
        (**self).parse_count_tokens(response)
    }
    fn pricing(&self, model: Option<&str>) -> Pricing {
        (**self).pricing(model)
    }
    fn validate(&self) -> Result<(), BackendError> {
        (**self).validate()
    }
    fn timeouts(&self, configured: &Timeouts, request: &ChatRequest) -> Timeouts {
        (**self).timeouts(configured, request)
    }
    fn observe(&self, observation: &Observation) {
        (**self).observe(observation)
    }
}

/// Splits a byte stream into [`Frame`]s, sans-IO: push bytes as they arrive, take frames out.
///
/// Written here rather than taken from `eventsource-stream` because the same code must run on
/// bytes inside a plugin and because it enforces a line cap (reliability-spec F-20: a 10 MiB
/// line must end in an error, not in unbounded memory). Handles `\n`, `\r\n` and `\r` line
/// ends, frames and UTF-8 sequences split across chunks at any byte (F-18), comments, and
/// multi-line `data:`.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    max_line: usize,
    /// The unfinished last line of the input so far (empty whenever a push ended on a line
    /// end, which is the common case: lines are then read straight from the pushed bytes).
    buf: Vec<u8>,
    /// Scan position in `buf` (bytes before it hold no line end).
    scanned: usize,
    event: Option<String>,
    data: Option<String>,
    /// A dispatched frame's `data` handed back by [`StreamParser`] once decoded, reused for
    /// the next frame's data so a stream costs one buffer rather than one per frame.
    spare: Option<String>,
    last_was_cr: bool,
    /// Nothing read yet: a leading byte-order mark is still to be dropped.
    at_start: bool,
}

/// A UTF-8 byte-order mark. The SSE spec has one at the start of a stream ignored; left in, it
/// turns the first field name into `\u{feff}data` and the first event is lost (or the first
/// NDJSON line fails to parse).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Default longest line accepted in a stream.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

impl Framer {
    pub fn new(framing: Framing) -> Self {
        Self::with_max_line(framing, DEFAULT_MAX_LINE)
    }

    pub fn with_max_line(framing: Framing, max_line: usize) -> Self {
        Self {
            framing,
            max_line,
            buf: Vec::new(),
            scanned: 0,
            event: None,
            data: None,
            spare: None,
            last_was_cr: false,
            at_start: true,
        }
    }

    /// Feeds bytes; appends complete frames to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), BackendError> {
        self.push_with(bytes, &mut |frame| {
            out.push(frame);
            None
        })
    }

    /// Feeds bytes; hands each complete frame to `sink` as soon as it is complete. The sink
    /// may hand the frame's data buffer back, and the next frame's data is read into it: a
    /// body of many frames then costs one buffer, not one per frame.
    pub fn push_with(
        &mut self,
        bytes: &[u8],
        sink: &mut dyn FnMut(Frame) -> Option<String>,
    ) -> Result<(), BackendError> {
        if self.at_start {
            if self.buf.is_empty() && bytes.len() >= BOM.len() {
                self.at_start = false;
                return self.push_with(bytes.strip_prefix(BOM).unwrap_or(bytes), sink);
            }
            // The first bytes arrive in pieces shorter than a BOM: hold them until it is told.
            let mut head = std::mem::take(&mut self.buf);
            head.extend_from_slice(bytes);
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                self.buf = head;
                return Ok(());
            }
            self.at_start = false;
            return self.push_with(head.strip_prefix(BOM).unwrap_or(&head), sink);
        }
        if self.buf.is_empty() {
            // No unfinished line: read the lines in place, keep only the unfinished tail.
            let start = self.lines(bytes, 0, sink)?;
            self.buf.extend_from_slice(&bytes[start..]);
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(bytes);
            let read = self.lines(&buf, self.scanned, sink);
            // Put the buffer back (its allocation is reused) even when a line was bad.
            let start = match read {
                Ok(start) => start,
                Err(e) => {
                    self.buf = buf;
                    return Err(e);
                }
            };
            buf.drain(..start);
            self.buf = buf;
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.max_line {
            return Err(BackendError::malformed(format!(
                "stream line longer than {} bytes; refusing to buffer more",
                self.max_line
            )));
        }
        Ok(())
    }

    /// Reads the complete lines of `input` (which starts at a line start; no line end before
    /// `from`) and returns where the unfinished last line starts.
    fn lines(
        &mut self,
        input: &[u8],
        from: usize,
        sink: &mut dyn FnMut(Frame) -> Option<String>,
    ) -> Result<usize, BackendError> {
        // One UTF-8 check for all the complete lines instead of one per line (a stream's
        // chunk holds a dozen short lines; the per-call cost was most of the check). Invalid
        // text goes line by line, so the lines before the bad one are still delivered.
        if let Some(end) = memchr::memrchr2(b'\n', b'\r', &input[from..]) {
            if let Ok(text) = std::str::from_utf8(&input[..from + end + 1]) {
                return self.lines_with(input, from, sink, |start, end| {
                    text.get(start..end).ok_or_else(|| BackendError::internal("line end inside a character"))
                });
            }
        }
        self.lines_with(input, from, sink, |start, end| {
            std::str::from_utf8(&input[start..end])
                .map_err(|_| BackendError::malformed("stream line is not valid UTF-8"))
        })
    }

    /// [`lines`](Self::lines), taking each line's text from `text(start, end)`.
    fn lines_with<'t>(
        &mut self,
        input: &[u8],
        from: usize,
        sink: &mut dyn FnMut(Frame) -> Option<String>,
        text: impl Fn(usize, usize) -> Result<&'t str, BackendError>,
    ) -> Result<usize, BackendError> {
        let mut start = 0;
        let mut i = from;
        loop {
            // A blank line (the end of every SSE event) is found without a search.
            let at = match input.get(i) {
                Some(b'\n' | b'\r') => 0,
                Some(_) => match memchr::memchr2(b'\n', b'\r', &input[i..]) {
                    Some(at) => at,
                    None => break,
                },
                None => break,
            };
            i += at;
            let b = input[i];
            if b == b'\n' && self.last_was_cr && i == start {
                // The `\n` of a `\r\n` pair whose `\r` ended the previous line.
                self.last_was_cr = false;
                start = i + 1;
                i += 1;
                continue;
            }
            self.last_was_cr = b == b'\r';
            let line = text(start, i)?;
            self.line(line, sink);
            start = i + 1;
            i += 1;
        }
        if start < input.len() {
            // The unfinished line has bytes, so the last byte seen was no line end.
            self.last_was_cr = false;
        }
        Ok(start)
    }

    /// End of input: flushes a last line without a line end and a pending event.
    pub fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), BackendError> {
        self.finish_with(&mut |frame| {
            out.push(frame);
            None
        })
    }

    /// [`finish`](Self::finish), handing frames to `sink` as [`push_with`](Self::push_with) does.
    pub fn finish_with(&mut self, sink: &mut dyn FnMut(Frame) -> Option<String>) -> Result<(), BackendError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = std::str::from_utf8(&rest)
                .map_err(|_| BackendError::malformed("stream ended inside a UTF-8 sequence"))?;
            self.line(line, sink);
        }
        self.scanned = 0;
        if self.framing == Framing::Sse {
            self.dispatch(sink);
        }
        Ok(())
    }

    /// Hands back a decoded frame's data buffer for reuse.
    fn recycle(&mut self, mut data: String) {
        if self.spare.as_ref().is_none_or(|s| s.capacity() < data.capacity()) {
            data.clear();
            self.spare = Some(data);
        }
    }

    /// An owned copy of `text`, in the spare buffer when there is one.
    fn owned(&mut self, text: &str) -> String {
        match self.spare.take() {
            Some(mut s) => {
                s.push_str(text);
                s
            }
            None => text.to_owned(),
        }
    }

    fn line(&mut self, line: &str, sink: &mut dyn FnMut(Frame) -> Option<String>) {
        match self.framing {
            Framing::Ndjson => {
                if !line.trim().is_empty() {
                    let data = self.owned(line);
                    self.deliver(Frame { event: None, data }, sink);
                }
            }
            Framing::Sse => {
                if line.is_empty() {
                    self.dispatch(sink);
                    return;
                }
                if line.starts_with(':') {
                    return;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => self.event = Some(value.to_owned()),
                    "data" => match &mut self.data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => self.data = Some(self.owned(value)),
                    },
                    _ => {}
                }
            }
        }
    }

    fn dispatch(&mut self, sink: &mut dyn FnMut(Frame) -> Option<String>) {
        let event = self.event.take();
        if let Some(data) = self.data.take() {
            self.deliver(Frame { event, data }, sink);
        }
    }

    fn deliver(&mut self, frame: Frame, sink: &mut dyn FnMut(Frame) -> Option<String>) {
        if let Some(data) = sink(frame) {
            self.recycle(data);
        }
    }
}

/// Bytes in, [`StreamEvent`]s out, for one stream: a [`Framer`] feeding a [`StreamDecoder`],
/// with the stream contract enforced in one place — exactly one terminal event (`Done` or
/// `Error`), nothing after it, and an `Error` when the body ends without the provider's end
/// marker. Sans-IO: the I/O layer adds timers, tests feed recorded bytes.
pub struct StreamParser {
    framer: Framer,
    decoder: Box<dyn StreamDecoder>,
    terminated: bool,
    seen_frame: bool,
}

impl fmt::Debug for StreamParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamParser").field("terminated", &self.terminated).finish_non_exhaustive()
    }
}

impl StreamParser {
    pub fn new(framing: Framing, decoder: Box<dyn StreamDecoder>) -> Self {
        Self { framer: Framer::new(framing), decoder, terminated: false, seen_frame: false }
    }

    /// A parser for `adapter`'s framing and a fresh decoder for `request`.
    pub fn for_adapter(adapter: &dyn ProviderAdapter, request: &ChatRequest) -> Self {
        Self::new(adapter.framing(), adapter.stream_decoder(request))
    }

    /// Whether the terminal event was produced.
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// Whether any frame arrived yet (the I/O layer's first-byte timer runs until one does).
    pub fn has_seen_frame(&self) -> bool {
        self.seen_frame
    }

    /// Feeds body bytes; appends the events they complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<StreamEvent>) {
        if self.terminated {
            return;
        }
        // Frames completed before a line-cap error are still delivered, in order. Each frame
        // is decoded as soon as it is complete, and its buffer goes back to the framer.
        let (decoder, terminated, seen) = (&mut self.decoder, &mut self.terminated, &mut self.seen_frame);
        let pushed = self
            .framer
            .push_with(bytes, &mut |frame| decode_frame(decoder.as_mut(), terminated, seen, frame, out));
        if let Err(e) = pushed {
            self.fail(e, out);
        }
    }

    /// The body ended: flush the framer, then ask the decoder whether the end marker came.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.terminated {
            return;
        }
        let (decoder, terminated, seen) = (&mut self.decoder, &mut self.terminated, &mut self.seen_frame);
        let flushed = self
            .framer
            .finish_with(&mut |frame| decode_frame(decoder.as_mut(), terminated, seen, frame, out));
        if let Err(e) = flushed {
            self.fail(e, out);
        }
        if self.terminated {
            return;
        }
        match self.decoder.finish() {
            Ok(events) => self.emit(events, out),
            Err(e) => self.fail(e, out),
        }
        if !self.terminated {
            // A decoder returning neither `Done` nor an error breaks its contract; the caller
            // still gets the one terminal event it is promised (F-17).
            self.fail(BackendError::interrupted("stream ended without the provider's end marker"), out);
        }
    }

    /// Ends the stream with `error` unless it already ended.
    pub fn fail(&mut self, error: BackendError, out: &mut Vec<StreamEvent>) {
        if !self.terminated {
            self.terminated = true;
            out.push(StreamEvent::Error { error });
        }
    }

    /// Parses a whole recorded body fed in `chunk`-byte pieces (tests, replays).
    pub fn parse_all(mut self, body: &[u8], chunk: usize) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for piece in body.chunks(chunk.max(1)) {
            self.push(piece, &mut out);
        }
        self.finish(&mut out);
        out
    }

    fn emit(&mut self, events: Vec<StreamEvent>, out: &mut Vec<StreamEvent>) {
        for event in events {
            if self.terminated {
                return;
            }
            self.terminated = event.is_terminal();
            out.push(event);
        }
    }
}

/// One frame through the decoder, with the stream contract: nothing after the terminal
/// event, and an error frame is the terminal event. Returns the frame's buffer for reuse.
fn decode_frame(
    decoder: &mut dyn StreamDecoder,
    terminated: &mut bool,
    seen_frame: &mut bool,
    frame: Frame,
    out: &mut Vec<StreamEvent>,
) -> Option<String> {
    *seen_frame = true;
    if *terminated {
        return Some(frame.data);
    }
    let from = out.len();
    let decoded = decoder.decode_into(&frame, out);
    // Keep what came up to and including the first terminal event.
    if let Some(end) = out[from..].iter().position(StreamEvent::is_terminal) {
        out.truncate(from + end + 1);
        *terminated = true;
    }
    if let Err(error) = decoded {
        if !*terminated {
            *terminated = true;
            out.push(StreamEvent::Error { error });
        }
    }
    Some(frame.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framing: Framing, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::new(framing);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out).unwrap();
        }
        f.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn sse_events_with_names_and_multiline_data() {
        let got = frames(Framing::Sse, &[b"event: a\ndata: 1\ndata: 2\n\n: comment\ndata: x\r\n\r\n"]);
        assert_eq!(
            got,
            vec![
                Frame { event: Some("a".into()), data: "1\n2".into() },
                Frame { event: None, data: "x".into() }
            ]
        );
    }

    #[test]
    fn split_at_every_byte_is_identical_f18() {
        let whole = "data: {\"t\":\"héllo 涌现\"}\r\n\r\nevent: e\ndata: [DONE]\n\n".as_bytes();
        let expect = frames(Framing::Sse, &[whole]);
        let split: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(frames(Framing::Sse, &split), expect);
        assert_eq!(expect.len(), 2);
    }

    #[test]
    fn ndjson_lines_and_last_line_without_newline() {
        let got = frames(Framing::Ndjson, &[b"{\"a\":1}\n\n{\"b\"", b":2}"]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].data, "{\"b\":2}");
    }

    /// Text per `data:` line; `[DONE]` ends; `!` is an error frame; ignores the "end"
    /// contract on purpose (returns nothing from `finish`) to prove the parser enforces it.
    struct Lines {
        done: bool,
    }
    impl StreamDecoder for Lines {
        fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
            match frame.data.as_str() {
                "[DONE]" => {
                    self.done = true;
                    Ok(vec![StreamEvent::Done {
                        end: crate::types::StreamEnd {
                            finish_reason: None,
                            usage: Default::default(),
                            cost: 0.0,
                        },
                    }])
                }
                "!" => Err(BackendError::malformed("bang")),
                t => Ok(vec![StreamEvent::text(t)]),
            }
        }
        fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
            Ok(Vec::new())
        }
    }

    fn parse(body: &str, chunk: usize) -> Vec<StreamEvent> {
        StreamParser::new(Framing::Sse, Box::new(Lines { done: false })).parse_all(body.as_bytes(), chunk)
    }

    #[test]
    fn parser_yields_exactly_one_terminal_event() {
        let evs = parse("data: a\n\ndata: [DONE]\n\ndata: late\n\n", 1);
        assert_eq!(evs.len(), 2);
        assert!(matches!(evs[1], StreamEvent::Done { .. }));
        let evs = parse("data: a\n\ndata: !\n\ndata: b\n\n", 3);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert!(
            matches!(&evs[1], StreamEvent::Error { error } if error.kind == crate::error::ErrorKind::MalformedResponse)
        );
        // The decoder forgot to complain about a missing end marker: the parser does (F-17).
        let evs = parse("data: a\n\n", 64);
        assert!(
            matches!(&evs[1], StreamEvent::Error { error } if error.kind == crate::error::ErrorKind::StreamInterrupted)
        );
    }

    /// Appends straight into the output: `a,b` is two texts, `x!` a text then an error,
    /// `end+` a `Done` then a text that must not survive it. Counts the frames it was given.
    struct Appending {
        calls: usize,
    }
    impl StreamDecoder for Appending {
        fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
            let mut out = Vec::new();
            self.decode_into(frame, &mut out).map(|()| out)
        }
        fn decode_into(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
            self.calls += 1;
            match frame.data.as_str() {
                "x!" => {
                    out.push(StreamEvent::text("x"));
                    Err(BackendError::malformed("bang"))
                }
                "end+" => {
                    out.push(StreamEvent::Done {
                        end: crate::types::StreamEnd {
                            finish_reason: None,
                            usage: Default::default(),
                            cost: 0.0,
                        },
                    });
                    out.push(StreamEvent::text("after the end"));
                    Ok(())
                }
                t => {
                    out.extend(t.split(',').map(StreamEvent::text));
                    Ok(())
                }
            }
        }
        fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn decode_into_keeps_the_one_terminal_event_contract() {
        let run = |body: &str, chunk: usize| {
            let mut parser = StreamParser::new(Framing::Sse, Box::new(Appending { calls: 0 }));
            let mut out = Vec::new();
            for piece in body.as_bytes().chunks(chunk) {
                parser.push(piece, &mut out);
            }
            parser.finish(&mut out);
            out
        };
        for chunk in [1, 5, 1000] {
            let evs = run("data: a,b\n\ndata: x!\n\ndata: c\n\n", chunk);
            assert_eq!(evs.len(), 4, "{evs:?}");
            assert_eq!(evs[..3], [StreamEvent::text("a"), StreamEvent::text("b"), StreamEvent::text("x")]);
            assert!(matches!(&evs[3], StreamEvent::Error { error } if error.message.contains("bang")));

            let evs = run("data: a\n\ndata: end+\n\ndata: c\n\n", chunk);
            assert_eq!(evs.len(), 2, "{evs:?}");
            assert!(matches!(evs[1], StreamEvent::Done { .. }));
        }
        // Frames after the terminal event are not decoded at all.
        let mut parser = StreamParser::new(Framing::Sse, Box::new(Appending { calls: 0 }));
        let mut out = Vec::new();
        parser.push(b"data: end+\n\ndata: a\n\ndata: b\n\n", &mut out);
        assert_eq!(out.len(), 1);
        assert!(parser.is_terminated());
    }

    /// Frames of a whole body by the SSE / NDJSON rules, written plainly as the reference
    /// for [`framer_matches_a_plain_reading_at_any_split`].
    fn reference(framing: Framing, body: &str) -> Vec<Frame> {
        let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
        let (mut out, mut event, mut data) = (Vec::new(), None, None::<String>);
        let mut lines: Vec<&str> = normalized.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }
        for line in lines {
            if framing == Framing::Ndjson {
                if !line.trim().is_empty() {
                    out.push(Frame { event: None, data: line.to_owned() });
                }
                continue;
            }
            if line.is_empty() {
                if let Some(data) = data.take() {
                    out.push(Frame { event: event.take(), data });
                }
                event = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) =
                line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "event" => event = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        if let Some(data) = data.take() {
            out.push(Frame { event: event.take(), data });
        }
        out
    }

    /// The framer reads lines in place from the pushed bytes and buffers only an unfinished
    /// one; whatever the split (through `\r\n` pairs, inside UTF-8 sequences), it must frame
    /// exactly as a plain reading of the whole body does.
    #[test]
    fn framer_matches_a_plain_reading_at_any_split() {
        let pieces = [
            "data: ",
            "data:",
            "event: e",
            ": c",
            "id: 1",
            "\n",
            "\r",
            "\r\n",
            "\n\n",
            "héllo 涌",
            "{\"a\":1}",
            "[DONE]",
            " ",
            "x",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for case in 0..2000 {
            let body: String = (0..next(30)).map(|_| pieces[next(pieces.len())]).collect();
            for framing in [Framing::Sse, Framing::Ndjson] {
                let expect = reference(framing, &body);
                let mut f = Framer::new(framing);
                let mut got = Vec::new();
                let bytes = body.as_bytes();
                let mut at = 0;
                while at < bytes.len() {
                    let end = (at + 1 + next(12)).min(bytes.len());
                    f.push(&bytes[at..end], &mut got).unwrap();
                    at = end;
                }
                f.finish(&mut got).unwrap();
                assert_eq!(got, expect, "case {case} {framing:?}: {body:?}");
            }
        }
    }

    /// A stream's frames reuse one data buffer: what a recycled buffer held never leaks into
    /// the next frame.
    #[test]
    fn recycled_buffers_start_empty() {
        let evs = parse("data: a long first line of text\n\ndata: b\n\ndata: [DONE]\n\n", 5);
        assert_eq!(evs[..2], [StreamEvent::text("a long first line of text"), StreamEvent::text("b")]);
    }

    /// Invalid UTF-8 is an error at its line, whatever else the push held: the frames before
    /// it are delivered, as they are when the bytes come one line at a time.
    #[test]
    fn invalid_text_fails_at_its_line_and_not_before() {
        let body: &[u8] = b"data: a\n\ndata: b\n\ndata: \xff\n\ndata: c\n\n";
        let mut whole = Framer::new(Framing::Sse);
        let mut got = Vec::new();
        let err = whole.push(body, &mut got).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::MalformedResponse);
        assert_eq!(got.iter().map(|f| f.data.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let mut by_line = Framer::new(Framing::Sse);
        let mut each = Vec::new();
        let mut failed = None;
        for line in body.split_inclusive(|&b| b == b'\n') {
            if let Err(e) = by_line.push(line, &mut each) {
                failed = Some(e);
                break;
            }
        }
        assert_eq!(failed.map(|e| e.kind), Some(err.kind));
        assert_eq!(each, got);
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped_however_the_bytes_arrive() {
        let body = b"\xEF\xBB\xBFdata: first\n\ndata: second\n\n";
        for split in 0..=body.len() {
            let mut f = Framer::new(Framing::Sse);
            let mut out = Vec::new();
            f.push(&body[..split], &mut out).unwrap();
            f.push(&body[split..], &mut out).unwrap();
            f.finish(&mut out).unwrap();
            let data: Vec<&str> = out.iter().map(|fr| fr.data.as_str()).collect();
            assert_eq!(data, ["first", "second"], "split at {split}");
        }
        // One byte at a time.
        let mut f = Framer::new(Framing::Ndjson);
        let mut out = Vec::new();
        for b in b"\xEF\xBB\xBF{\"a\":1}\n" {
            f.push(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out.iter().map(|fr| fr.data.as_str()).collect::<Vec<_>>(), ["{\"a\":1}"]);
        // Only at the start: later it is content.
        let mut f = Framer::new(Framing::Sse);
        let mut out = Vec::new();
        f.push("data: x\n\ndata: \u{feff}y\n\n".as_bytes(), &mut out).unwrap();
        assert_eq!(out[1].data, "\u{feff}y");
    }

    #[test]
    fn line_cap_is_an_error_f20() {
        let mut f = Framer::with_max_line(Framing::Sse, 16);
        let mut out = Vec::new();
        let err = f.push(&[b'a'; 64], &mut out).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::MalformedResponse);
    }
}
