//! [`Reply`]: one scripted HTTP response, plus the faults that can be layered on it.
//!
//! A reply is pure data (status, headers, body chunks, timing and fault knobs). The server in
//! [`crate::server`] turns it into a real HTTP/1.1 response; the provider-shaped constructors
//! (`openai_*`, `anthropic_*`, `ollama_*`, `gemini_*`) live in [`crate::shapes`].

use std::time::Duration;

use bytes::Bytes;

/// One scripted response of a [`FakeServer`](crate::FakeServer).
///
/// Build it with a constructor ([`Reply::raw`], [`Reply::json`], [`Reply::sse`],
/// [`Reply::ndjson`], [`Reply::chunks`] or a provider shape such as [`Reply::openai_stream`]),
/// then add faults with the chained modifiers ([`Reply::delay`], [`Reply::gap`],
/// [`Reply::cut_after`], [`Reply::hang`], [`Reply::header`]).
///
/// Replies are `Clone` so one value can be queued several times ([`FakeServer::push_n`]) or
/// served as the default for every unscripted request.
///
/// [`FakeServer::push_n`]: crate::FakeServer::push_n
#[derive(Clone, Debug)]
pub struct Reply {
    pub(crate) status: u16,
    /// Response headers in insertion order. Names are stored lower-case.
    pub(crate) headers: Vec<(String, String)>,
    /// Body pieces. A streamed reply writes each piece as its own HTTP chunk.
    pub(crate) chunks: Vec<Bytes>,
    /// Whether the body is written as a chunked stream (SSE, NDJSON, [`Reply::chunks`]) rather
    /// than one buffered body with a `content-length`.
    pub(crate) streamed: bool,
    pub(crate) delay: Option<Duration>,
    pub(crate) gap: Option<Duration>,
    pub(crate) cut_after: Option<usize>,
    pub(crate) hang: bool,
}

impl Reply {
    fn with_body(status: u16, streamed: bool, chunks: Vec<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            chunks,
            streamed,
            delay: None,
            gap: None,
            cut_after: None,
            hang: false,
        }
    }

    /// A response with the given status and body bytes, and no `content-type` header, for
    /// exercising clients against bodies they do not expect (HTML error pages, empty 502s…).
    pub fn raw(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::with_body(status, false, vec![Bytes::from(body.into())])
    }

    /// A JSON response (`content-type: application/json`).
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply::with_body(status, false, vec![Bytes::from(value.to_string())])
            .header("content-type", "application/json")
    }

    /// A `200 text/event-stream` response with one SSE frame per body chunk.
    ///
    /// Each string is a complete frame *without* its terminating blank line, for example
    /// `"data: {...}"` or `"event: ping\ndata: {}"`; `"\n\n"` is appended to every frame.
    /// [`Reply::cut_after`] and [`Reply::gap`] count and separate whole frames.
    pub fn sse(frames: Vec<String>) -> Reply {
        let chunks = frames.into_iter().map(|f| Bytes::from(f + "\n\n")).collect();
        Reply::with_body(200, true, chunks)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
    }

    /// A `200 application/x-ndjson` response (Ollama's streaming format) with one JSON line per
    /// body chunk.
    pub fn ndjson(lines: Vec<serde_json::Value>) -> Reply {
        let chunks = lines.into_iter().map(|v| Bytes::from(v.to_string() + "\n")).collect();
        Reply::with_body(200, true, chunks).header("content-type", "application/x-ndjson")
    }

    /// A streamed response made of arbitrary byte chunks, written one HTTP chunk each. Use it to
    /// split an SSE frame, a JSON line or a multi-byte UTF-8 character across reads.
    pub fn chunks(status: u16, content_type: &str, chunks: Vec<Vec<u8>>) -> Reply {
        let chunks = chunks.into_iter().map(Bytes::from).collect();
        Reply::with_body(status, true, chunks).header("content-type", content_type)
    }

    /// Sets a response header, replacing any header of the same (case-insensitive) name, so
    /// `.header("content-type", ..)` overrides a constructor's default.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Sleeps this long before sending the status line and headers (a slow first byte).
    #[must_use]
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    /// Sleeps this long between body chunks (SSE frames, NDJSON lines), i.e. a slow or stalled
    /// stream. Setting a gap makes the body chunked even for single-chunk replies.
    #[must_use]
    pub fn gap(mut self, d: Duration) -> Reply {
        self.gap = Some(d);
        self
    }

    /// Sends the first `k` chunks (frames, lines), then aborts the connection mid-body.
    ///
    /// The body is chunked, so the client sees an *error* (an incomplete chunked message), never
    /// a clean end of stream: this is an upstream cut, not a short answer. If `k` is at least
    /// the number of chunks, every chunk is sent and the connection is still aborted instead of
    /// finishing the body. `cut_after(0)` sends the headers only.
    #[must_use]
    pub fn cut_after(mut self, k: usize) -> Reply {
        self.cut_after = Some(k);
        self
    }

    /// Never answers: the request is held (no status line, no headers) until the server is
    /// dropped, which closes the connection. Other requests are served normally meanwhile.
    #[must_use]
    pub fn hang(mut self) -> Reply {
        self.hang = true;
        self
    }

    /// The HTTP status this reply is sent with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The value of a response header set on this reply, if any (case-insensitive name).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The whole body as it would be sent (all chunks concatenated, ignoring faults). Handy for
    /// feeding the exact wire bytes of a shape into a sans-IO decoder without any HTTP.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// The body chunks as they are written to the wire, one entry per HTTP chunk.
    pub fn body_chunks(&self) -> Vec<Vec<u8>> {
        self.chunks.iter().map(|c| c.to_vec()).collect()
    }

    /// The body parsed as one JSON value (`None` for streams, malformed or non-JSON bodies).
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body_bytes()).ok()
    }

    /// Whether the body is chunked on the wire (streams, or any reply with a gap or a cut).
    pub(crate) fn is_streamed(&self) -> bool {
        self.streamed || self.gap.is_some() || self.cut_after.is_some()
    }
}
