//! The binary encoding of the values that cross the boundary on every call: the chat request,
//! the HTTP request an adapter describes, the answer and stream events.
//!
//! Why not JSON, which everything else at the boundary uses: JSON of the request and of the
//! answer alone cost about 4 µs per call (issue 4 item 6 measured it; the target for the whole
//! plugin overhead is under 5 µs), most of it escaping and unescaping strings and matching
//! field names. This format is a plain length-prefixed dump: strings are copied, never
//! scanned, floats travel as their bits (exact, where JSON needed `float_roundtrip` and
//! kept durations in whole milliseconds), and the field order is the schema.
//!
//! Why not a binary serde format (bincode, postcard): the `claudette-core` types use
//! `skip_serializing_if` and hold `serde_json::Value`s, which only self-describing formats
//! can read back. Free-form JSON (tool schemas, tool-call arguments, request metadata, a
//! routing decision, an error inside a stream event) is carried here as JSON text: it is
//! rare on the hot path and has no fixed shape to dump.
//!
//! Both sides compile this same module (the plugin against its own copy of `claudette-core`),
//! so they agree as long as [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) does. Every encoder
//! destructures its struct or variant without `..` and every decoder builds it with a struct
//! literal (`wire_struct!` and `wire_enum!` generate both from one list of fields), so a field
//! added to a `claudette-core` type fails to compile here until the format follows it; such a
//! change must bump `SCHEMA_VERSION`. Decoding never panics and never trusts a length:
//! truncated, oversized or trailing input is an error naming what was being read.
//!
//! Layout: integers little-endian, `bool` one byte (0 or 1), `f32`/`f64` their IEEE bits,
//! strings and byte vectors a `u32` length then the bytes (strings UTF-8, checked on read),
//! `Option` a tag byte (0 none, 1 some) then the value, `Vec` a `u32` count then the items,
//! enums a tag byte (then the variant's fields).
// The host-side decoders are unused in a plugin-only build, and the other way round.
#![cfg_attr(not(feature = "host"), allow(dead_code))]

use std::time::Duration;

use claudette_core::{
    BackendError, BlockKind, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, ChatResponse, Dialect,
    Document, DocumentSource, FinishReason, HttpRequest, Image, ImageSource, Message, Method, NativeBlock,
    NativeField, NativeFlag, NativeTool, ReasoningEffort, ResponseFormat, Role, RoutingDecision, ServiceTier,
    StreamEnd, StreamEvent, TextCitations, Thinking, ThinkingBlock, ThinkingSeal, ToolCall, ToolCallDelta,
    ToolChoice, ToolSpec, Usage, UsageSource,
};

/// A decoding failure: the boxed error keeps every reader's `Result` one pointer wide. With
/// `BackendError` itself (a dozen fields) as the error type, moving results up the nested
/// readers made decoding a short request twice as slow (measured); so did leaving the small
/// readers un-inlined, hence the `#[inline]`s.
pub(crate) struct Bad(Box<BackendError>);

/// A value with a binary form at the boundary.
pub(crate) trait Wire: Sized {
    /// Appends the encoding of `self` to `out`.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads one value from the front of `r`.
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad>;
}

/// The encoding of `value`, in a buffer sized for a typical value of its kind.
pub(crate) fn encode<T: Wire>(value: &T, size_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint);
    value.put(&mut out);
    out
}

/// Reads a whole `T` from `bytes`; anything left over is an error (the two sides disagree on
/// the format, which the version checks should have caught).
pub(crate) fn decode<T: Wire>(what: &'static str, bytes: &[u8]) -> Result<T, BackendError> {
    let mut r = Reader { bytes, what };
    let value = T::get(&mut r).map_err(|Bad(e)| *e)?;
    if !r.bytes.is_empty() {
        return Err(*r.error(format_args!("{} unexpected trailing bytes", r.bytes.len())).0);
    }
    Ok(value)
}

/// The unread part of an encoding, and what it is the encoding of (for error messages).
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    #[cold]
    fn error(&self, detail: std::fmt::Arguments<'_>) -> Bad {
        Bad(Box::new(BackendError::internal(format!(
            "unreadable {} at the plugin boundary: {detail} (plugin and host built against other schemas?)",
            self.what
        ))))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if n > self.bytes.len() {
            return Err(self.error(format_args!("{n} bytes needed, {} left", self.bytes.len())));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline]
    fn tag(&mut self) -> Result<u8, Bad> {
        Ok(self.array::<1>()?[0])
    }

    #[cold]
    fn bad_tag<T>(&self, tag: u8, of: &str) -> Result<T, Bad> {
        Err(self.error(format_args!("unknown {of} tag {tag}")))
    }

    /// A length or count, checked against what is left (every item takes at least one byte),
    /// so a corrupt length can never make the reader reserve memory it has no bytes for.
    #[inline]
    fn len(&mut self) -> Result<usize, Bad> {
        let n = usize::try_from(u32::from_le_bytes(self.array()?)).unwrap_or(usize::MAX);
        if n > self.bytes.len() {
            return Err(self.error(format_args!("length {n} but {} bytes left", self.bytes.len())));
        }
        Ok(n)
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, Bad> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|e| self.error(format_args!("a string is not UTF-8: {e}")))
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Bad> {
        let text = self.str()?;
        serde_json::from_str(text).map_err(|e| self.error(format_args!("embedded JSON: {e}")))
    }
}

fn put_len(n: usize, out: &mut Vec<u8>) {
    // Nothing that crosses the boundary comes near 4 GiB: the gateway and the HTTP layer cap
    // request and response bodies far below that. A saturated length would make the reader
    // fail on the bytes that follow rather than allocate for them.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(s: &str, out: &mut Vec<u8>) {
    put_len(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

/// Free-form JSON as text. Serialising a `serde_json::Value` (or a derived type) to a
/// `Vec` cannot fail; should it ever, `null` keeps the stream readable and the decoder of
/// the typed value reports it.
fn put_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let at = out.len();
    put_len(0, out);
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(at + 4);
        out.extend_from_slice(b"null");
    }
    let n = out.len() - at - 4;
    out[at..at + 4].copy_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

macro_rules! wire_le {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            #[inline]
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
                Ok(<$t>::from_le_bytes(r.array()?))
            }
        }
    )*};
}
wire_le!(u16, u32, u64, i64, f32, f64);

/// `Wire` as JSON text (see the module docs: free-form values, or ones rare on the hot path).
macro_rules! wire_json {
    ($(#[$attr:meta])* $t:ty) => {
        $(#[$attr])*
        impl Wire for $t {
            #[inline]
            fn put(&self, out: &mut Vec<u8>) {
                put_json(self, out);
            }
            #[inline]
            fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
                r.json()
            }
        }
    };
}

impl Wire for bool {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        match r.tag()? {
            0 => Ok(false),
            1 => Ok(true),
            t => r.bad_tag(t, "bool"),
        }
    }
}

impl Wire for String {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        put_str(self, out);
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        r.str().map(str::to_owned)
    }
}

impl<T: Wire> Wire for Option<T> {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.put(out);
            }
        }
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        match r.tag()? {
            0 => Ok(None),
            1 => T::get(r).map(Some),
            t => r.bad_tag(t, "option"),
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        put_len(self.len(), out);
        for item in self {
            item.put(out);
        }
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        let n = r.len()?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(T::get(r)?);
        }
        Ok(items)
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        Ok((A::get(r)?, B::get(r)?))
    }
}

impl Wire for Duration {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        self.as_secs().put(out);
        self.subsec_nanos().put(out);
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        let secs = u64::get(r)?;
        let nanos = u32::get(r)?;
        if nanos >= 1_000_000_000 {
            return Err(r.error(format_args!("a duration with {nanos} nanoseconds")));
        }
        Ok(Duration::new(secs, nanos))
    }
}

wire_json!(serde_json::Value);

/// `Wire` for a struct: its fields in the order listed, each with its own `Wire`. The encoder
/// destructures without `..` and the decoder builds a struct literal, so the list must name
/// every field (a field added to the type fails to compile here until it is listed); struct
/// literal fields are evaluated in the order written, so the decoder reads in list order.
macro_rules! wire_struct {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        impl Wire for $ty {
            #[inline]
            fn put(&self, out: &mut Vec<u8>) {
                let $ty { $($field),+ } = self;
                $($field.put(out);)+
            }
            #[inline]
            fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
                Ok($ty { $($field: Wire::get(r)?),+ })
            }
        }
    };
}

/// `Wire` for an enum: a tag byte, then the variant's named fields (if any) in the order
/// listed. The encoder's `match` is exhaustive and names every field without `..`, so a variant
/// or field added to the type fails to compile here until it is listed; a tag given twice is an
/// unreachable pattern in the decoder (denied by `-D warnings`).
macro_rules! wire_enum {
    ($ty:ident, $what:literal, { $($variant:ident $({ $($field:ident),+ })? = $tag:literal),+ $(,)? }) => {
        impl Wire for $ty {
            #[inline]
            fn put(&self, out: &mut Vec<u8>) {
                match self {
                    $($ty::$variant $({ $($field),+ })? => {
                        out.push($tag);
                        $($($field.put(out);)+)?
                    })+
                }
            }
            #[inline]
            fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
                match r.tag()? {
                    $($tag => Ok($ty::$variant $({ $($field: Wire::get(r)?),+ })?),)+
                    t => r.bad_tag(t, $what),
                }
            }
        }
    };
}

/// Request metadata: usually empty, and then just an empty string instead of `{}`.
impl Wire for serde_json::Map<String, serde_json::Value> {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        if self.is_empty() { put_len(0, out) } else { put_json(self, out) }
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        if r.bytes.get(..4) == Some(&[0, 0, 0, 0]) {
            r.take(4)?;
            return Ok(serde_json::Map::new());
        }
        r.json()
    }
}

wire_enum!(Role, "role", { System = 0, User = 1, Assistant = 2, Tool = 3 });
wire_enum!(Method, "HTTP method", { Get = 0, Post = 1 });
wire_enum!(UsageSource, "usage source", { Reported = 0, Estimated = 1, Missing = 2 });

impl Wire for FinishReason {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            FinishReason::Stop => out.push(0),
            FinishReason::Length => out.push(1),
            FinishReason::ToolCalls => out.push(2),
            FinishReason::ContentFilter => out.push(3),
            FinishReason::Other(s) => {
                out.push(4);
                put_str(s, out);
            }
            FinishReason::StopSequence(s) => {
                out.push(5);
                put_str(s, out);
            }
        }
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        match r.tag()? {
            0 => Ok(FinishReason::Stop),
            1 => Ok(FinishReason::Length),
            2 => Ok(FinishReason::ToolCalls),
            3 => Ok(FinishReason::ContentFilter),
            4 => String::get(r).map(FinishReason::Other),
            5 => String::get(r).map(FinishReason::StopSequence),
            t => r.bad_tag(t, "finish reason"),
        }
    }
}

wire_struct!(ToolCall { id, name, arguments });

wire_enum!(CacheTtl, "cache TTL", { FiveMinutes = 0, OneHour = 1 });

/// Tuple variants, which `wire_enum!` does not take.
macro_rules! wire_tuple_enum {
    ($ty:ident, $what:literal, { $($variant:ident($inner:ty) = $tag:literal),+ $(,)? }) => {
        impl Wire for $ty {
            #[inline]
            fn put(&self, out: &mut Vec<u8>) {
                match self {
                    $($ty::$variant(v) => {
                        out.push($tag);
                        v.put(out);
                    })+
                }
            }
            #[inline]
            fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
                match r.tag()? {
                    $($tag => <$inner as Wire>::get(r).map($ty::$variant),)+
                    t => r.bad_tag(t, $what),
                }
            }
        }
    };
}

wire_tuple_enum!(CacheAt, "cache position", { Text(u32) = 0, ToolCall(u32) = 1, Image(u32) = 2, Document(u32) = 3 });
wire_tuple_enum!(ThinkingSeal, "thinking seal", { Signature(String) = 0, Redacted(String) = 1 });
wire_struct!(CacheBreakpoint { at, ttl });

impl Wire for BlockKind {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            BlockKind::Thinking => out.push(0),
            BlockKind::Text(end) => {
                out.push(1);
                end.put(out);
            }
            BlockKind::ToolCall => out.push(2),
            BlockKind::Native => out.push(3),
        }
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        match r.tag()? {
            0 => Ok(BlockKind::Thinking),
            1 => u32::get(r).map(BlockKind::Text),
            2 => Ok(BlockKind::ToolCall),
            3 => Ok(BlockKind::Native),
            t => r.bad_tag(t, "block kind"),
        }
    }
}
wire_enum!(ThinkingBlock, "thinking block", {
    Thinking { thinking, signature } = 0,
    Redacted { data } = 1,
});
wire_enum!(ReasoningEffort, "reasoning effort", {
    Off = 0,
    Minimal = 1,
    Low = 2,
    Medium = 3,
    High = 4,
    XHigh = 5,
    Max = 6,
});
wire_enum!(Thinking, "thinking", {
    Disabled = 0,
    Budget { budget_tokens } = 1,
    Effort { effort } = 2,
    Adaptive = 3,
});

wire_struct!(ToolSpec { name, description, parameters, cache, strict });

impl Wire for ToolChoice {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            ToolChoice::Auto => out.push(0),
            ToolChoice::None => out.push(1),
            ToolChoice::Required => out.push(2),
            ToolChoice::Tool(name) => {
                out.push(3);
                put_str(name, out);
            }
        }
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        match r.tag()? {
            0 => Ok(ToolChoice::Auto),
            1 => Ok(ToolChoice::None),
            2 => Ok(ToolChoice::Required),
            3 => String::get(r).map(ToolChoice::Tool),
            t => r.bad_tag(t, "tool choice"),
        }
    }
}

impl Wire for ResponseFormat {
    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            ResponseFormat::Text => out.push(0),
            ResponseFormat::JsonObject => out.push(1),
            ResponseFormat::JsonSchema { name, schema, strict } => {
                out.push(2);
                name.put(out);
                schema.put(out);
                strict.put(out);
            }
        }
    }
    #[inline]
    fn get(r: &mut Reader<'_>) -> Result<Self, Bad> {
        match r.tag()? {
            0 => Ok(ResponseFormat::Text),
            1 => Ok(ResponseFormat::JsonObject),
            2 => Ok(ResponseFormat::JsonSchema {
                name: <String as Wire>::get(r)?,
                schema: <serde_json::Value as Wire>::get(r)?,
                strict: <bool as Wire>::get(r)?,
            }),
            t => r.bad_tag(t, "response format"),
        }
    }
}

wire_enum!(ImageSource, "image source", {
    Base64 { media_type, data } = 0,
    Url { url } = 1,
});
wire_struct!(Image { at, source });
wire_enum!(DocumentSource, "document source", {
    Base64 { data } = 0,
    Url { url } = 1,
});
wire_struct!(Document { at, source, title, citations });
wire_enum!(Dialect, "dialect", { Anthropic = 0 });
wire_enum!(ServiceTier, "service tier", { Standard = 0, Fast = 1 });
wire_struct!(NativeBlock { dialect, block });
wire_struct!(NativeTool { dialect, at, spec });
wire_struct!(TextCitations { end, citations });
wire_struct!(NativeField { dialect, name, value, required });
wire_struct!(NativeFlag { dialect, flag });
wire_struct!(Message {
    role,
    content,
    tool_calls,
    tool_call_id,
    name,
    is_error,
    thinking,
    cache,
    images,
    documents,
    order,
    native,
    citations
});

wire_struct!(ChatRequest {
    messages,
    model,
    max_tokens,
    temperature,
    top_p,
    top_k,
    seed,
    stop,
    tools,
    native_tools,
    native_fields,
    native_flags,
    tool_choice,
    parallel_tool_calls,
    response_format,
    backend,
    tags,
    metadata,
    thinking,
    output_effort,
    request_id,
    tenant
});

wire_struct!(Usage {
    input_tokens,
    output_tokens,
    cache_read_tokens,
    cache_write_tokens,
    reasoning_tokens,
    web_search_requests,
    tier,
    source
});

wire_json!(
    /// Filled by the router, never by an adapter, so in practice always `None` here; kept (as
    /// JSON) so the encoding loses nothing.
    RoutingDecision
);

wire_struct!(ChatResponse {
    content,
    reasoning,
    thinking,
    tool_calls,
    order,
    native,
    citations,
    native_fields,
    finish_reason,
    usage,
    model,
    backend,
    id,
    latency,
    cost,
    cache_hit,
    warnings,
    decision
});

wire_struct!(ToolCallDelta { index, id, name, arguments });

wire_struct!(StreamEnd { finish_reason, usage, cost });

wire_json!(
    /// An error ends a stream at most once, so it goes as JSON: `BackendError`'s kind enum is
    /// `#[non_exhaustive]` and its serde form is already the boundary's error encoding.
    BackendError
);

wire_enum!(StreamEvent, "stream event", {
    TextDelta { text } = 0,
    ReasoningDelta { text } = 1,
    ToolCall { delta } = 2,
    Usage { usage } = 3,
    Done { end } = 4,
    Error { error } = 5,
    ThinkingSeal { seal } = 6,
    Native { block } = 7,
    Citation { citation } = 8,
    NativeField { field } = 9,
    TextEnd = 10,
});

/// The head of an [`HttpRequest`] (method, URL, headers); the body crosses as its own bytes.
pub(crate) struct HeadRef<'a>(pub &'a HttpRequest);

impl HeadRef<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let HttpRequest { method, url, headers, body: _ } = self.0;
        let size = 1 + 4 + url.len() + 4 + headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        method.put(&mut out);
        put_str(url, &mut out);
        headers.put(&mut out);
        out
    }
}

/// A decoded head: everything of an [`HttpRequest`] but the body.
#[derive(Debug, PartialEq)]
pub(crate) struct Head {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

wire_struct!(Head { method, url, headers });

#[cfg(test)]
mod tests {
    use claudette_core::{Attempt, ErrorKind};
    use serde_json::json;

    use super::*;

    fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(value: &T) {
        let bytes = encode(value, 0);
        assert_eq!(&decode::<T>("test value", &bytes).unwrap(), value);
        // Every truncation is an error, never a panic or a different value.
        for cut in 0..bytes.len() {
            assert!(decode::<T>("test value", &bytes[..cut]).is_err(), "cut at {cut} of {}", bytes.len());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let e = decode::<T>("test value", &longer).unwrap_err();
        assert!(e.message.contains("trailing"), "{e}");
    }

    fn full_request() -> ChatRequest {
        let mut metadata = serde_json::Map::new();
        metadata.insert("team".into(), json!("search"));
        metadata.insert("n".into(), json!(3));
        ChatRequest {
            messages: vec![
                Message {
                    cache: vec![
                        CacheBreakpoint { at: CacheAt::Text(5), ttl: CacheTtl::OneHour },
                        CacheBreakpoint { at: CacheAt::Text(8), ttl: CacheTtl::FiveMinutes },
                    ],
                    ..Message::system("be brief")
                },
                Message::user("héllo \"quoted\" \n\u{1F600}"),
                Message {
                    images: vec![
                        Image {
                            at: 0,
                            source: ImageSource::Base64 {
                                media_type: "image/png".into(),
                                data: "iVBORw0K".into(),
                            },
                        },
                        Image {
                            at: 4,
                            source: ImageSource::Url { url: "https://example.com/cat.jpg".into() },
                        },
                    ],
                    documents: vec![
                        Document {
                            citations: false,
                            at: 2,
                            source: DocumentSource::Base64 { data: "JVBERi0x".into() },
                            title: None,
                        },
                        Document {
                            citations: false,
                            at: 13,
                            source: DocumentSource::Url { url: "https://example.com/a.pdf".into() },
                            title: Some("a.pdf".into()),
                        },
                    ],
                    cache: vec![
                        CacheBreakpoint { at: CacheAt::Image(1), ttl: CacheTtl::FiveMinutes },
                        CacheBreakpoint { at: CacheAt::Document(1), ttl: CacheTtl::OneHour },
                    ],
                    ..Message::user("what is this?")
                },
                Message {
                    thinking: vec![
                        ThinkingBlock::Thinking { thinking: "hmm".into(), signature: "sig==".into() },
                        ThinkingBlock::Redacted { data: "opaque".into() },
                    ],
                    cache: vec![CacheBreakpoint { at: CacheAt::ToolCall(0), ttl: CacheTtl::FiveMinutes }],
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "lookup".into(),
                        arguments: json!({"q": "x", "deep": {"a": [1, 2.5, null]}}),
                    }],
                    order: vec![
                        BlockKind::Thinking,
                        BlockKind::ToolCall,
                        BlockKind::Text(0),
                        BlockKind::Thinking,
                        BlockKind::Native,
                    ],
                    native: vec![NativeBlock::anthropic(
                        json!({"type": "server_tool_use", "id": "srvtoolu_1"}),
                    )],
                    citations: vec![TextCitations { end: 0, citations: vec![json!({"url": "https://x"})] }],
                    ..Message::assistant("")
                },
                Message { name: Some("lookup".into()), ..Message::tool_result("call_1", "{\"ok\":true}") },
                Message::tool_error("call_2", "timed out"),
            ],
            model: Some("gpt-4o-mini".into()),
            max_tokens: Some(256),
            temperature: Some(0.3),
            top_p: Some(f32::MIN_POSITIVE),
            top_k: Some(40),
            seed: Some(i64::MIN),
            stop: vec!["\n\n".into(), "END".into()],
            tools: vec![ToolSpec {
                name: "lookup".into(),
                description: "looks things up".into(),
                parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
                cache: Some(CacheTtl::OneHour),
                strict: true,
            }],
            native_tools: vec![NativeTool {
                dialect: Dialect::Anthropic,
                at: 1,
                spec: json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 3}),
            }],
            native_fields: vec![NativeField {
                dialect: Dialect::Anthropic,
                name: "container".into(),
                value: json!("container_011CZ"),
                required: true,
            }],
            native_flags: vec![NativeFlag {
                dialect: Dialect::Anthropic,
                flag: "context-1m-2025-08-07".into(),
            }],
            tool_choice: ToolChoice::Tool("lookup".into()),
            parallel_tool_calls: Some(false),
            response_format: ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema: json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
                strict: true,
            },
            backend: Some("b1".into()),
            tags: vec!["eu".into()],
            metadata,
            thinking: Some(Thinking::Budget { budget_tokens: 2048 }),
            output_effort: Some(ReasoningEffort::XHigh),
            request_id: Some("req_42".into()),
            tenant: Some("team-a".into()),
        }
    }

    #[test]
    fn requests_round_trip_full_and_empty() {
        round_trip(&full_request());
        round_trip(&ChatRequest::prompt(""));
        round_trip(&ChatRequest::default());
        for tool_choice in [ToolChoice::None, ToolChoice::Required] {
            round_trip(&ChatRequest { tool_choice, ..ChatRequest::prompt("x") });
        }
        round_trip(&ChatRequest { response_format: ResponseFormat::JsonObject, ..ChatRequest::prompt("x") });
        round_trip(&ChatRequest {
            parallel_tool_calls: Some(true),
            seed: Some(0),
            ..ChatRequest::prompt("x")
        });
        for effort in ReasoningEffort::ALL {
            round_trip(&ChatRequest {
                thinking: Some(Thinking::Effort { effort }),
                ..ChatRequest::prompt("x")
            });
            round_trip(&ChatRequest {
                thinking: Some(Thinking::Adaptive),
                output_effort: Some(effort),
                ..ChatRequest::prompt("x")
            });
        }
        round_trip(&ChatRequest { thinking: Some(Thinking::Disabled), ..ChatRequest::prompt("x") });
        // The tags older plugins wrote keep their meaning.
        for (thinking, tag) in [
            (Thinking::Disabled, 0),
            (Thinking::Budget { budget_tokens: 0 }, 1),
            (Thinking::Effort { effort: ReasoningEffort::High }, 2),
            (Thinking::Adaptive, 3),
        ] {
            assert_eq!(encode(&thinking, 0)[0], tag, "{thinking:?}");
        }
        assert_eq!(
            ReasoningEffort::ALL.map(|e| encode(&e, 0)),
            [[0], [1], [2], [3], [4], [5], [6]].map(|t| t.to_vec())
        );
        // Every new field is carried: a request that differs only there decodes differently.
        let full = full_request();
        let decoded: ChatRequest = decode("r", &encode(&full, 0)).unwrap();
        assert_eq!(
            (decoded.top_k, decoded.seed, decoded.parallel_tool_calls, decoded.messages[5].is_error),
            (Some(40), Some(i64::MIN), Some(false), true)
        );
        assert_eq!(decoded.thinking, Some(Thinking::Budget { budget_tokens: 2048 }));
        assert_eq!(decoded.output_effort, Some(ReasoningEffort::XHigh));
        assert_eq!(decoded.tools[0].cache, Some(CacheTtl::OneHour));
        assert!(decoded.tools[0].strict);
        assert_eq!(decoded.messages[0].cache.len(), 2);
        assert_eq!(decoded.messages[3].thinking.len(), 2);
        assert_eq!(decoded.messages[3].cache[0].at, CacheAt::ToolCall(0));
        assert_eq!(decoded.messages[2].images, full.messages[2].images);
        assert_eq!(decoded.messages[2].cache[0].at, CacheAt::Image(1));
        assert_eq!(decoded.messages[2].cache[1].at, CacheAt::Document(1));
        assert_eq!(decoded.messages[2].documents, full.messages[2].documents);
        assert_eq!(decoded.messages[3].order, full.messages[3].order);
    }

    #[test]
    fn responses_round_trip_with_exact_floats_and_durations() {
        let mut r = ChatResponse::empty("b", "m");
        round_trip(&r);
        r.content = "answer ✓".into();
        r.reasoning = Some("thought".into());
        r.thinking = vec![
            ThinkingBlock::Thinking { thinking: "thought".into(), signature: "EqQB".into() },
            ThinkingBlock::Redacted { data: "xyz".into() },
        ];
        r.tool_calls = vec![ToolCall { id: "c".into(), name: "f".into(), arguments: json!({}) }];
        r.order = vec![BlockKind::Thinking, BlockKind::ToolCall, BlockKind::Thinking];
        r.finish_reason = Some(FinishReason::Other("eos_token".into()));
        r.usage = Usage {
            input_tokens: 31,
            output_tokens: 42,
            cache_read_tokens: 7,
            cache_write_tokens: 1,
            reasoning_tokens: 5,
            web_search_requests: 2,
            tier: ServiceTier::Fast,
            source: UsageSource::Estimated,
        };
        r.native_fields = vec![NativeField {
            dialect: Dialect::Anthropic,
            name: "context_management".into(),
            value: json!({"applied_edits": []}),
            required: false,
        }];
        r.native = vec![NativeBlock::anthropic(json!({"type": "web_search_tool_result", "content": []}))];
        r.citations =
            vec![TextCitations { end: 8, citations: vec![json!({"type": "web_search_result_location"})] }];
        r.id = Some("chatcmpl-1".into());
        // JSON kept whole milliseconds and needed `float_roundtrip`; bits are exact.
        r.latency = Duration::new(1, 234_567_891);
        r.cost = 0.000_029_849_999_999_999_994;
        r.cache_hit = true;
        r.warnings = vec!["truncated".into()];
        r.decision = Some(RoutingDecision {
            attempts: vec![Attempt::new("b", None, Duration::from_millis(12), Duration::ZERO, false)],
            ..RoutingDecision::default()
        });
        round_trip(&r);
        for finish in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
            FinishReason::StopSequence("\n\nHuman:".into()),
        ] {
            round_trip(&Some(finish));
        }
    }

    #[test]
    fn every_stream_event_round_trips() {
        let events = vec![
            StreamEvent::text("a"),
            StreamEvent::ReasoningDelta { text: "r".into() },
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature("EqQB==".into()) },
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted("opaque".into()) },
            StreamEvent::Native {
                block: NativeBlock::anthropic(json!({"type": "server_tool_use", "input": {}})),
            },
            StreamEvent::Citation {
                citation: json!({"type": "web_search_result_location", "url": "https://x"}),
            },
            StreamEvent::NativeField {
                field: NativeField {
                    dialect: Dialect::Anthropic,
                    name: "container".into(),
                    value: json!({"id": "container_1", "expires_at": "2026-11-24T06:00:00Z"}),
                    required: false,
                },
            },
            StreamEvent::ToolCall {
                delta: ToolCallDelta {
                    index: 2,
                    id: Some("c".into()),
                    name: None,
                    arguments: "{\"q\"".into(),
                },
            },
            StreamEvent::Usage { usage: Usage::reported(1, 2) },
            StreamEvent::Done {
                end: StreamEnd {
                    finish_reason: Some(FinishReason::Stop),
                    usage: Usage::default(),
                    cost: 0.1,
                },
            },
            StreamEvent::Done {
                end: StreamEnd {
                    finish_reason: Some(FinishReason::StopSequence("END".into())),
                    usage: Usage::reported(3, 4),
                    cost: 0.0,
                },
            },
            StreamEvent::Error {
                error: BackendError::new(ErrorKind::StreamInterrupted, "cut")
                    .with_status(502)
                    .with_retry_after(Some(Duration::from_millis(1500)))
                    .with_code("upstream"),
            },
        ];
        round_trip(&events);
        round_trip(&Vec::<StreamEvent>::new());
    }

    #[test]
    fn heads_round_trip() {
        let http = HttpRequest::post_json("https://api.example/v1/chat", &json!({"a": 1}))
            .unwrap()
            .header("anthropic-version", "2023-06-01");
        let bytes = HeadRef(&http).encode();
        let head: Head = decode("head", &bytes).unwrap();
        assert_eq!(
            (head.method, head.url.as_str(), &head.headers),
            (http.method, http.url.as_str(), &http.headers)
        );
        round_trip(&Head { method: Method::Get, url: String::new(), headers: Vec::new() });
    }

    #[test]
    fn corrupt_input_is_an_error_naming_what_was_read() {
        // A count far beyond the input must not reserve memory for it.
        let e = decode::<Vec<String>>("the chat request", &[0xff, 0xff, 0xff, 0x7f]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("the chat request") && e.message.contains("length"), "{e}");
        // Not UTF-8.
        let e = decode::<String>("s", &[2, 0, 0, 0, 0xc3, 0x28]).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
        // Unknown enum tags.
        assert!(decode::<Role>("r", &[9]).unwrap_err().message.contains("role tag 9"));
        assert!(decode::<bool>("b", &[2]).is_err());
        assert!(decode::<Option<u32>>("o", &[7, 0, 0, 0, 0]).is_err());
        assert!(decode::<Duration>("d", &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0xca, 0x9a, 0x3b]).is_err());
        // Embedded JSON that is not JSON.
        let mut bytes = Vec::new();
        put_str("{not json", &mut bytes);
        assert!(decode::<serde_json::Value>("v", &bytes).unwrap_err().message.contains("embedded JSON"));
    }
}
