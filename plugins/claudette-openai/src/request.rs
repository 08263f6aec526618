//! Building the `POST /chat/completions` body from a [`ChatRequest`].
//!
//! The body is serialised straight from borrowing views of the request (no intermediate
//! `serde_json::Value`, no copy of a message text): this runs for every request.

use std::borrow::Cow;

use claudette_core::{
    BackendError, ChatRequest, DOCUMENT_MEDIA_TYPE, Document, DocumentSource, ErrorKind, ImageSource,
    Message, ReasoningEffort, ResponseFormat, Role, Segment, Thinking, ToolCall, ToolChoice, ToolSpec,
};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// Which body field carries the output cap.
///
/// OpenAI deprecated `max_tokens` in favour of `max_completion_tokens` and its reasoning
/// models reject the old name, while many compatible servers (older vLLM, llama.cpp builds,
/// proxies) only know `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    MaxTokens,
    MaxCompletionTokens,
}

impl MaxTokensField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_tokens",
            Self::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// Everything [`build_body`] needs beyond the request itself.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyOptions {
    /// Model sent when the request names none.
    pub model: String,
    pub max_tokens_field: MaxTokensField,
    /// Send `stream_options: {include_usage: true}` with streamed requests. Without it OpenAI
    /// reports no usage for a stream at all; a few strict servers reject the field.
    pub stream_include_usage: bool,
    /// Send the request's `top_k`. OpenAI's own API has no such parameter and answers an
    /// unknown one with a 400, while the self-hosted servers (vLLM, llama.cpp, SGLang) take it;
    /// the adapter turns it on for self-hosted backends.
    pub send_top_k: bool,
    /// Send PDFs as `file` content parts, as OpenAI's API reads them. Most compatible
    /// servers answer a `file` part with a 400, so for them this is off and a request with a
    /// document is refused ([`ErrorKind::Unsupported`]) before it is sent: the router then
    /// tries another backend rather than failing on the 400. The adapter sets it per backend
    /// (its `documents` setting).
    pub send_documents: bool,
    /// Provider-specific top-level fields merged into every body (a reusing crate's knobs,
    /// e.g. `chat_template_kwargs` for a vLLM Qwen). They override fields set here.
    pub extra: Map<String, Value>,
}

impl BodyOptions {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            max_tokens_field: MaxTokensField::MaxTokens,
            stream_include_usage: true,
            send_top_k: false,
            send_documents: true,
            extra: Map::new(),
        }
    }
}

/// The JSON body of a chat-completions call.
///
/// Routing-only fields of the request (`backend`, `tags`, `metadata`) are never sent.
/// Returns `InvalidRequest` for what the server would reject anyway (a tool result without
/// `tool_call_id`, images on a system or assistant message, a non-finite temperature), so
/// the error names the message at fault, and `Unsupported` for a document this server cannot
/// take (see [`BodyOptions::send_documents`]; Chat Completions takes no file URL, only
/// inline data). A tool result's images and documents travel in a user message after the
/// results ([`ChatRequest::messages_with_tool_media_moved`]): OpenAI takes image and file
/// parts in user messages only ("Image URLs are only allowed for messages with role 'user'").
///
/// The adapter sends [`encode_body`]'s bytes; this `Value` form is for callers that want to
/// inspect or amend a body.
pub fn build_body(options: &BodyOptions, request: &ChatRequest, stream: bool) -> Result<Value, BackendError> {
    let body = Body::new(BodySpec::from(options), request, stream)?;
    serde_json::to_value(&body).map_err(|e| BackendError::internal(format!("encode request: {e}")))
}

/// [`build_body`] as the JSON bytes sent on the wire, serialised without building a `Value`.
pub fn encode_body(
    options: &BodyOptions,
    request: &ChatRequest,
    stream: bool,
) -> Result<Vec<u8>, BackendError> {
    encode(&BodySpec::from(options), request, stream)
}

/// [`BodyOptions`] by reference: what the adapter has at hand without cloning its extras.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodySpec<'a> {
    pub model: &'a str,
    pub max_tokens_field: MaxTokensField,
    pub stream_include_usage: bool,
    pub send_top_k: bool,
    pub send_documents: bool,
    pub extra: &'a Map<String, Value>,
}

impl<'a> From<&'a BodyOptions> for BodySpec<'a> {
    fn from(o: &'a BodyOptions) -> Self {
        Self {
            model: &o.model,
            max_tokens_field: o.max_tokens_field,
            stream_include_usage: o.stream_include_usage,
            send_top_k: o.send_top_k,
            send_documents: o.send_documents,
            extra: &o.extra,
        }
    }
}

/// The body bytes for `request` (see [`build_body`]).
pub(crate) fn encode(
    spec: &BodySpec<'_>,
    request: &ChatRequest,
    stream: bool,
) -> Result<Vec<u8>, BackendError> {
    let body = Body::new(*spec, request, stream)?;
    // Most of a body is its message texts (and images and documents, megabytes of base64
    // when there are any); start there rather than growing from nothing.
    let texts: usize = request.messages.iter().map(|m| m.content.len() + media_len(m)).sum();
    let mut out = Vec::with_capacity(256 + texts + texts / 8);
    let written =
        if body.is_plain() { body.write_plain(&mut out) } else { serde_json::to_writer(&mut out, &body) };
    written.map_err(|e| BackendError::internal(format!("encode request: {e}")))?;
    Ok(out)
}

/// A checked request, ready to serialise: everything that can be refused has been.
struct Body<'a> {
    spec: BodySpec<'a>,
    model: &'a str,
    request: &'a ChatRequest,
    /// The messages as sent: the request's, with tool results' images and documents moved to
    /// user messages.
    messages: Cow<'a, [Message]>,
    temperature: Option<Number>,
    top_p: Option<Number>,
    /// The request's `top_k` when this server takes it ([`BodyOptions::send_top_k`]).
    top_k: Option<u32>,
    stream: bool,
}

impl<'a> Body<'a> {
    fn new(spec: BodySpec<'a>, request: &'a ChatRequest, stream: bool) -> Result<Self, BackendError> {
        request.checked_tool_choice()?;
        request.checked_media()?;
        for (index, m) in request.messages.iter().enumerate() {
            if m.role == Role::Tool && m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                return Err(BackendError::invalid(format!(
                    "message {index}: a tool result needs the `tool_call_id` it answers"
                )));
            }
            checked_documents(index, m, spec.send_documents)?;
        }
        Ok(Self {
            spec,
            model: request.model.as_deref().filter(|m| !m.is_empty()).unwrap_or(spec.model),
            request,
            messages: request.messages_with_tool_media_moved(),
            temperature: request.temperature.map(|t| float("temperature", t)).transpose()?,
            top_p: request.top_p.map(|p| float("top_p", p)).transpose()?,
            top_k: request.top_k.filter(|_| spec.send_top_k),
            stream,
        })
    }

    /// `reasoning_effort`, from the request's thinking: an effort as the client gave it, a
    /// token budget as the level [`Thinking::effort`] maps it to. Anthropic's `disabled` is
    /// sent as nothing: it is every non-reasoning model's default, and those models refuse
    /// the field outright; an explicit `none` effort is the client's own word and goes.
    /// Adaptive thinking leaves the amount to the model, steered only by the request's
    /// [`output_effort`](ChatRequest::output_effort): that level, or nothing (the model's
    /// default). Anthropic's `max` is `xhigh`, OpenAI's top level.
    ///
    /// [`Thinking::effort`]: claudette_core::Thinking::effort
    fn reasoning_effort(&self) -> Option<&'static str> {
        let effort = match self.request.thinking? {
            Thinking::Disabled => return None,
            Thinking::Adaptive => self.request.output_effort?,
            t => t.effort()?,
        };
        Some(match effort {
            ReasoningEffort::Max => ReasoningEffort::XHigh.as_str(),
            e => e.as_str(),
        })
    }

    /// Whether this is the common body [`write_plain`](Self::write_plain) writes: text
    /// messages only (no tool calls or results, no images or documents), no tools, no stop,
    /// no seed or `top_k`, no provider extras.
    fn is_plain(&self) -> bool {
        let r = self.request;
        self.spec.extra.is_empty()
            && self.top_k.is_none()
            && r.seed.is_none()
            && self.reasoning_effort().is_none()
            && r.tools.is_empty()
            && r.response_format.is_text()
            && r.stop.is_empty()
            && self.messages.iter().all(|m| {
                m.role != Role::Tool
                    && m.tool_calls.is_empty()
                    && m.images.is_empty()
                    && m.documents.is_empty()
            })
    }

    /// The bytes `serde_json` writes for a [plain](Self::is_plain) body, with the keys and
    /// punctuation as literals and only the values through `serde_json`. Why: the generic
    /// map and key serialisers cost more than the whole body's text for a short prompt, and
    /// this runs for every request; a test compares both writers on generated bodies.
    fn write_plain(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let r = self.request;
        out.extend_from_slice(b"{\"model\":");
        serde_json::to_writer(&mut *out, self.model)?;
        out.extend_from_slice(b",\"messages\":[");
        for (i, m) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"role\":\"");
            out.extend_from_slice(m.role.as_str().as_bytes());
            out.extend_from_slice(b"\",\"content\":");
            serde_json::to_writer(&mut *out, &m.content)?;
            out.push(b'}');
        }
        out.push(b']');
        if let Some(n) = r.max_tokens {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(self.spec.max_tokens_field.as_str().as_bytes());
            out.extend_from_slice(b"\":");
            serde_json::to_writer(&mut *out, &n)?;
        }
        for (key, value) in [(&b",\"temperature\":"[..], &self.temperature), (b",\"top_p\":", &self.top_p)] {
            if let Some(value) = value {
                out.extend_from_slice(key);
                serde_json::to_writer(&mut *out, value)?;
            }
        }
        if self.stream {
            out.extend_from_slice(b",\"stream\":true");
            if self.spec.stream_include_usage {
                out.extend_from_slice(b",\"stream_options\":{\"include_usage\":true}");
            }
        }
        out.push(b'}');
        Ok(())
    }
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let extra = self.spec.extra;
        let request = self.request;
        let mut map = serializer.serialize_map(None)?;
        // Provider extras override the fields set here: a field they name is written once,
        // with their value, at the end.
        entry(&mut map, extra, "model", &self.model)?;
        entry(&mut map, extra, "messages", &Messages(&self.messages))?;
        if let Some(n) = request.max_tokens {
            entry(&mut map, extra, self.spec.max_tokens_field.as_str(), &n)?;
        }
        if let Some(t) = &self.temperature {
            entry(&mut map, extra, "temperature", t)?;
        }
        if let Some(p) = &self.top_p {
            entry(&mut map, extra, "top_p", p)?;
        }
        if let Some(k) = &self.top_k {
            entry(&mut map, extra, "top_k", k)?;
        }
        if let Some(seed) = &request.seed {
            entry(&mut map, extra, "seed", seed)?;
        }
        if let Some(effort) = self.reasoning_effort() {
            entry(&mut map, extra, "reasoning_effort", effort)?;
        }
        if !request.stop.is_empty() {
            entry(&mut map, extra, "stop", &request.stop)?;
        }
        if !request.tools.is_empty() {
            entry(&mut map, extra, "tools", &Tools(&request.tools))?;
            match &request.tool_choice {
                ToolChoice::Auto => {}
                ToolChoice::None => entry(&mut map, extra, "tool_choice", "none")?,
                ToolChoice::Required => entry(&mut map, extra, "tool_choice", "required")?,
                ToolChoice::Tool(name) => {
                    let choice = serde_json::json!({"type": "function", "function": {"name": name}});
                    entry(&mut map, extra, "tool_choice", &choice)?;
                }
            }
            // Only with tools: OpenAI refuses `parallel_tool_calls` in a request without them.
            if let Some(parallel) = &request.parallel_tool_calls {
                entry(&mut map, extra, "parallel_tool_calls", parallel)?;
            }
        }
        match &request.response_format {
            ResponseFormat::Text => {}
            ResponseFormat::JsonObject => {
                entry(&mut map, extra, "response_format", &serde_json::json!({"type": "json_object"}))?;
            }
            ResponseFormat::JsonSchema { name, schema, strict } => {
                let format = serde_json::json!({"type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": strict}});
                entry(&mut map, extra, "response_format", &format)?;
            }
        }
        if self.stream {
            entry(&mut map, extra, "stream", &true)?;
            if self.spec.stream_include_usage {
                entry(&mut map, extra, "stream_options", &IncludeUsage { include_usage: true })?;
            }
        }
        for (k, v) in extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One body field, unless the provider extras set it.
fn entry<M: SerializeMap, T: Serialize + ?Sized>(
    map: &mut M,
    extra: &Map<String, Value>,
    key: &str,
    value: &T,
) -> Result<(), M::Error> {
    if extra.contains_key(key) { Ok(()) } else { map.serialize_entry(key, value) }
}

#[derive(Serialize)]
struct IncludeUsage {
    include_usage: bool,
}

struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for m in self.0 {
            seq.serialize_element(&WireMessage(m))?;
        }
        seq.end()
    }
}

/// One message in OpenAI's shape. Tool results were checked for their `tool_call_id` by
/// [`Body::new`].
struct WireMessage<'a>(&'a Message);

impl Serialize for WireMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", m.role.as_str())?;
        match m.role {
            Role::Assistant if !m.tool_calls.is_empty() => {
                // OpenAI's shape for a turn that only calls tools is `content: null`.
                let content = Some(m.content.as_str()).filter(|c| !c.is_empty());
                map.serialize_entry("content", &content)?;
                map.serialize_entry("tool_calls", &ToolCalls(&m.tool_calls))?;
            }
            Role::Tool => {
                map.serialize_entry("tool_call_id", m.tool_call_id.as_deref().unwrap_or_default())?;
                // No error flag in this protocol: a failure is said in the text.
                map.serialize_entry("content", &m.tool_result_text())?;
            }
            // Only a user message has images or documents here ([`Body::new`] refused them on
            // system and assistant messages, and moved tool results' into user messages); a
            // message without any keeps the string form, byte for byte what it was before.
            Role::User if !m.images.is_empty() || !m.documents.is_empty() => {
                map.serialize_entry("content", &Parts(m))?
            }
            _ => map.serialize_entry("content", &m.content)?,
        }
        map.end()
    }
}

/// A user message's text, images and documents as content parts, in the client's order.
struct Parts<'a>(&'a Message);

impl Serialize for Parts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.segments().map(Part))
    }
}

/// `{"type":"text","text":…}`, `{"type":"image_url","image_url":{"url":…}}` or
/// `{"type":"file","file":{"filename":…,"file_data":"data:application/pdf;base64,…"}}`.
struct Part<'a>(Segment<'a>);

impl Serialize for Part<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match self.0 {
            Segment::Text(text) => {
                map.serialize_entry("type", "text")?;
                map.serialize_entry("text", text)?;
            }
            Segment::Image(image) => {
                map.serialize_entry("type", "image_url")?;
                map.serialize_entry("image_url", &ImageUrl(&image.source))?;
            }
            Segment::Document(document) => {
                map.serialize_entry("type", "file")?;
                map.serialize_entry("file", &File(document))?;
            }
        }
        map.end()
    }
}

/// A `data:` URL of base64 bytes of a media type, written straight into the JSON string (no
/// copy of megabytes of base64 into an intermediate `String`).
struct DataUrl<'a>(&'a str, &'a str);

impl Serialize for DataUrl<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("data:{};base64,{}", self.0, self.1))
    }
}

/// The `image_url` object: an inline image as a [`DataUrl`], a URL as it is.
struct ImageUrl<'a>(&'a ImageSource);

impl Serialize for ImageUrl<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            ImageSource::Base64 { media_type, data } => {
                map.serialize_entry("url", &DataUrl(media_type, data))?
            }
            ImageSource::Url { url } => map.serialize_entry("url", url)?,
        }
        map.end()
    }
}

/// The `file` object of a PDF: OpenAI wants a file name with inline data, so a document the
/// client gave no title is `document.pdf`. Only inline data reaches here
/// ([`checked_documents`] refused URLs).
struct File<'a>(&'a Document);

impl Serialize for File<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let DocumentSource::Base64 { data } = &self.0.source else {
            return Err(serde::ser::Error::custom("a document URL reached the body"));
        };
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("filename", self.0.title.as_deref().unwrap_or("document.pdf"))?;
        map.serialize_entry("file_data", &DataUrl(DOCUMENT_MEDIA_TYPE, data))?;
        map.end()
    }
}

/// Refuses, [`ErrorKind::Unsupported`] so the router tries another backend, the documents of
/// message `index` this server cannot take: any, when it reads no `file` parts
/// ([`BodyOptions::send_documents`]); one by URL anywhere, since Chat Completions takes a PDF
/// as inline data or an uploaded file's id only (`file_url` is the Responses API's), and the
/// gateway never fetches a client's URL.
fn checked_documents(index: usize, m: &Message, send_documents: bool) -> Result<(), BackendError> {
    let by_url = |d: &Document| matches!(d.source, DocumentSource::Url { .. });
    let why = if m.documents.is_empty() {
        return Ok(());
    } else if !send_documents {
        "this server is not known to read PDF documents (OpenAI `file` parts); set `documents = true` on \
         the backend if it does"
    } else if m.documents.iter().any(by_url) {
        "OpenAI Chat Completions takes no file URL: send the PDF document as base64 data"
    } else {
        return Ok(());
    };
    Err(BackendError::new(ErrorKind::Unsupported, format!("message {index}: {why}")))
}

/// About the bytes a message's images and documents take in a body (sizing the output buffer
/// only).
fn media_len(m: &Message) -> usize {
    let images: usize = m
        .images
        .iter()
        .map(|i| match &i.source {
            ImageSource::Base64 { media_type, data } => 64 + media_type.len() + data.len(),
            ImageSource::Url { url } => 64 + url.len(),
        })
        .sum();
    let documents: usize = m
        .documents
        .iter()
        .map(|d| match &d.source {
            DocumentSource::Base64 { data } => 96 + d.title.as_ref().map_or(0, String::len) + data.len(),
            DocumentSource::Url { url } => 64 + url.len(),
        })
        .sum();
    images + documents
}

/// A role as OpenAI names it.
struct ToolCalls<'a>(&'a [ToolCall]);

impl Serialize for ToolCalls<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|call| WireToolCall {
            id: &call.id,
            kind: "function",
            function: WireFunctionCall { name: &call.name, arguments: Arguments(&call.arguments) },
        }))
    }
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: Arguments<'a>,
}

/// OpenAI wants the arguments as a JSON *string*. A string here is arguments we could not
/// parse when they came in: sent back verbatim rather than double-encoded. Anything else is
/// written as its compact JSON text, straight into the string (no intermediate `String`).
struct Arguments<'a>(&'a Value);

impl Serialize for Arguments<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::String(raw) => serializer.serialize_str(raw),
            other => serializer.collect_str(other),
        }
    }
}

struct Tools<'a>(&'a [ToolSpec]);

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|tool| WireTool {
            kind: "function",
            function: WireFunction {
                name: &tool.name,
                description: &tool.description,
                parameters: &tool.parameters,
                strict: tool.strict,
            },
        }))
    }
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    parameters: &'a Value,
    /// Written only when set, so a body without it is byte for byte what it was. Every
    /// OpenAI-compatible server we send to takes the field (SGLang reads it, vLLM and
    /// llama.cpp ignore fields they do not know), unlike `top_k` on api.openai.com.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    strict: bool,
}

/// An `f32` as the JSON number a person would write: `0.7`, not `0.699999988079071` (what a
/// plain `f32 as f64` widening gives). Servers that validate ranges or log requests see
/// exactly what was configured.
fn float(name: &str, x: f32) -> Result<Number, BackendError> {
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    Number::from_f64(shortest)
        .ok_or_else(|| BackendError::invalid(format!("`{name}` must be a finite number, got {x}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_keep_their_decimal_form() {
        assert_eq!(float("t", 0.7).unwrap().to_string(), "0.7");
        assert_eq!(float("t", 1.0).unwrap().to_string(), "1.0");
        assert!(float("t", f32::NAN).is_err());
    }

    /// The hand-written common body is byte for byte what `serde_json` writes, on generated
    /// requests: roles, texts that need escapes, several messages, each optional field.
    #[test]
    fn the_plain_body_is_the_bytes_serde_writes() {
        let texts = ["hi", "", "a \"quote\" and \\ back", "line\nbreak\ttab\u{1}", "wörld ✓", "</script>"];
        let roles = [Role::System, Role::User, Role::Assistant];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut plain = 0;
        for case in 0..2000 {
            let mut request = ChatRequest::prompt(texts[next(texts.len())]);
            request.messages.clear();
            for _ in 0..=next(3) {
                let mut m = Message::user(texts[next(texts.len())]);
                m.role = roles[next(roles.len())];
                request.messages.push(m);
            }
            if next(2) == 0 {
                request.max_tokens = Some(u32::try_from(next(100_000)).unwrap());
            }
            if next(2) == 0 {
                request = request.with_temperature([0.0, 0.7, 1.0, 0.123_456_7][next(4)]);
            }
            if next(3) == 0 {
                request.top_p = Some([0.9, 1.0, 0.05][next(3)]);
            }
            if next(4) == 0 {
                request.model = Some(texts[next(texts.len())].to_owned());
            }
            let mut options = BodyOptions::new(["m", "gpt-4o-mini", "a\"b"][next(3)]);
            options.max_tokens_field =
                if next(2) == 0 { MaxTokensField::MaxTokens } else { MaxTokensField::MaxCompletionTokens };
            options.stream_include_usage = next(2) == 0;
            let stream = next(2) == 0;
            let body = Body::new(BodySpec::from(&options), &request, stream).unwrap();
            assert!(body.is_plain(), "case {case}");
            let mut hand = Vec::new();
            body.write_plain(&mut hand).unwrap();
            assert_eq!(
                String::from_utf8(hand).unwrap(),
                serde_json::to_string(&body).unwrap(),
                "case {case}"
            );
            plain += 1;
        }
        assert_eq!(plain, 2000);
        // What it does not write goes to serde.
        let mut tools = ChatRequest::prompt("x");
        tools.stop = vec!["END".into()];
        let options = BodyOptions::new("m");
        assert!(!Body::new(BodySpec::from(&options), &tools, false).unwrap().is_plain());
    }

    #[test]
    fn seed_parallel_calls_top_k_and_failed_results() {
        let tool = ToolSpec {
            name: "f".into(),
            description: String::new(),
            parameters: serde_json::json!({}),
            cache: None,
            strict: false,
        };
        let mut request = ChatRequest::new(vec![
            Message::user("q"),
            Message {
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: serde_json::json!({}),
                }],
                ..Message::assistant("")
            },
            Message::tool_error("c1", "boom"),
        ]);
        request.seed = Some(42);
        request.top_k = Some(20);
        request.parallel_tool_calls = Some(false);
        let mut options = BodyOptions::new("m");
        let cloud = build_body(&options, &request, false).unwrap();
        assert_eq!(cloud["seed"], 42);
        assert!(cloud.get("top_k").is_none(), "api.openai.com refuses unknown parameters: {cloud}");
        assert!(cloud.get("parallel_tool_calls").is_none(), "only with tools: {cloud}");
        assert_eq!(cloud["messages"][2]["content"], "Error: boom");
        options.send_top_k = true;
        request.tools = vec![tool];
        let local = build_body(&options, &request, false).unwrap();
        assert_eq!(
            (local["top_k"].as_u64(), local["parallel_tool_calls"].as_bool()),
            (Some(20), Some(false))
        );
        // A seed alone leaves the hand-written path, which does not write it.
        let seeded = ChatRequest { seed: Some(1), ..ChatRequest::prompt("x") };
        let bytes = encode_body(&BodyOptions::new("m"), &seeded, false).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["seed"], 1);
    }

    #[test]
    fn reasoning_effort_follows_each_form_of_thinking() {
        use ReasoningEffort::*;
        let sent = |thinking, output_effort| {
            let request = ChatRequest { thinking, output_effort, ..ChatRequest::prompt("x") };
            let body = build_body(&BodyOptions::new("m"), &request, false).unwrap();
            // Whatever is sent, the bytes on the wire say the same.
            let bytes = encode_body(&BodyOptions::new("m"), &request, false).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), body);
            body.get("reasoning_effort").and_then(Value::as_str).map(str::to_owned)
        };
        let effort = |effort| Some(Thinking::Effort { effort });
        assert_eq!(sent(Some(Thinking::Adaptive), Some(Medium)).as_deref(), Some("medium"));
        assert_eq!(sent(Some(Thinking::Adaptive), Some(Max)).as_deref(), Some("xhigh"));
        // Adaptive without an effort is the model's own default: nothing to send.
        assert_eq!(sent(Some(Thinking::Adaptive), None), None);
        assert_eq!(sent(effort(XHigh), None).as_deref(), Some("xhigh"));
        assert_eq!(sent(effort(Max), None).as_deref(), Some("xhigh"));
        // An output effort alone does not turn reasoning on (a plain model refuses the field).
        assert_eq!(sent(None, Some(High)), None);
        assert_eq!(
            sent(Some(Thinking::Budget { budget_tokens: 2000 }), Some(Low)).as_deref(),
            Some("medium")
        );
    }

    #[test]
    fn extras_override_a_field_once_and_bytes_match_the_value() {
        let mut options = BodyOptions::new("m");
        options.extra.insert("temperature".into(), serde_json::json!(0.1));
        options.extra.insert("chat_template_kwargs".into(), serde_json::json!({"enable_thinking": false}));
        let request = ChatRequest::prompt("hi \"there\"\n").with_temperature(0.7);
        let bytes = encode_body(&options, &request, true).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(text.matches("\"temperature\"").count(), 1, "{text}");
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed["temperature"], serde_json::json!(0.1));
        assert_eq!(parsed["messages"][0]["content"], "hi \"there\"\n");
        assert_eq!(parsed, build_body(&options, &request, true).unwrap());
    }
}
