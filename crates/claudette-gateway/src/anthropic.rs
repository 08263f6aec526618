//! `POST /v1/messages`: Anthropic Messages in and out; and `POST /v1/messages/count_tokens`,
//! which counts a Messages body's input tokens.
//!
//! Content blocks taken: `text`, `tool_use`, `tool_result`, `thinking` and `redacted_thinking`
//! where Anthropic takes them, and `image` and `document` blocks in a user message's content
//! and in a `tool_result`'s content (what Claude Code's Read tool returns for an image file or
//! a PDF). An image has a `base64` source (JPEG, PNG, GIF or WebP) or a `url` source
//! (`http(s)`; the provider fetches it, the gateway never does). A document has a `base64`
//! source of `application/pdf` or a `url` source, and its `title` is kept; a request with
//! images or PDFs goes only to backends that take images. A document with a `text` source is
//! plain text, not a file: it is taken as text where it stood, as a `text` block would be, so
//! every backend can serve it (its `title` is not kept). `cache_control` is taken on every
//! block Anthropic takes it on, images and documents included (a breakpoint after the block
//! itself), and counted against Anthropic's limit of [`MAX_CACHE_BREAKPOINTS`].
//!
//! Refused with a 400 naming the field: images and documents in `system` or an assistant turn
//! (the neutral request has them on user turns and tool results only); `file` sources
//! (Anthropic's Files API, which the gateway cannot read); documents that are not PDFs;
//! `content` document sources (content made to be cited: send its blocks as `text` and
//! `image` blocks); a document's `citations` when enabled (the neutral document cannot ask
//! for them, so no backend would cite it) and its `context` (the neutral document has no
//! place for it, and dropped the model would never read it); and other block types
//! (`search_result`, Anthropic's own blocks outside an assistant turn, any type not listed
//! here).
//!
//! Anthropic's own tools, the server tools Claude Code's WebSearch sends (`web_search_…`,
//! `web_fetch_…`, `code_execution_…`, MCP) and its client tools (`bash_…`, `text_editor_…`,
//! `computer_…`, `memory_…`): a tool with a `type` other than `custom` is kept whole, in its
//! place among the function tools, and the blocks those tools write into an assistant turn
//! ([`NATIVE_BLOCKS`]: `server_tool_use`, `web_search_tool_result`, …) are kept whole in
//! theirs, as are the `citations` of its text blocks. Such a request goes to an Anthropic
//! backend only (the router refuses it, naming why, when there is none); the answer carries
//! those blocks, its text blocks' `citations`, `usage.server_tool_use` and a `pause_turn`
//! stop, in JSON and in the stream, as Anthropic sends them.
//!
//! Anthropic's own top-level fields are carried whole too, their type checked (a 400 names
//! the field): `mcp_servers` (the MCP connector) and `container` (the code execution
//! container to work in) keep the request to Anthropic backends, as their servers and files
//! are there; `context_management` (Claude Code's context editing), `service_tier` and `speed`
//! (fast mode) go to an Anthropic backend and are left out for any other. The client's
//! `anthropic-beta` flags go with them ([`NativeFlag`]). The answer's `container` and
//! `context_management` come back where Anthropic writes them: top-level in JSON; in the
//! stream, the container in the final `message_delta`'s `delta` and the context management
//! beside it.
//!
//! An assistant turn keeps the order of its blocks, in the answer and in a client's turn
//! sent back: Claude thinks between its calls (interleaved thinking), and Anthropic refuses
//! such a turn back in any other order, on every turn after.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use claudette_core::error::scrub_secrets;
use claudette_core::{
    BackendError, Block as TurnBlock, BlockOrder, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest,
    ChatResponse, Dialect, Document, DocumentSource, ErrorKind, FinishReason, Image, ImageSource,
    MAX_CACHE_BREAKPOINTS, Message, NativeBlock, NativeField, NativeFlag, NativeTool, Phase, ReasoningEffort,
    ResponseFormat, Role, ServiceTier, StreamEvent, TextCitations, Thinking, ThinkingBlock, ThinkingSeal,
    ToolCall, ToolCallDelta, ToolCallSlot, ToolCallSlots, ToolChoice, ToolSpec, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::{
    Fault, MediaFault, Paths, TextOr, base64_image, base64_pdf, checked_tool_choice, document_at,
    element_fault, fault, fetched_url, image_at, list_fault, parse_located,
};
use crate::error::{ApiError, Flavor};
use crate::respond::{self, Encoder, Endpoint, Shared};
use crate::{ids, limits, routing};

const EP: Endpoint = Endpoint { label: "messages", flavor: Flavor::Anthropic };

// ---------------------------------------------------------------------------------------------
// Request

#[derive(Debug, Deserialize)]
pub(crate) struct MessagesRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    system: Option<Content>,
    #[serde(default)]
    messages: Option<Vec<InMessage>>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<AnyTool>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    #[serde(default)]
    thinking: Option<InThinking>,
    #[serde(default)]
    output_config: Option<InOutputConfig>,
    // Anthropic's own top-level fields, carried whole (see `native_field`): as JSON, since
    // the gateway checks their type only and Anthropic reads the rest.
    #[serde(default)]
    mcp_servers: Option<Value>,
    #[serde(default)]
    container: Option<Value>,
    #[serde(default)]
    context_management: Option<Value>,
    #[serde(default)]
    service_tier: Option<Value>,
    #[serde(default)]
    inference_geo: Option<Value>,
    /// Fast mode (`"fast"`): the same model, faster, at 6× the price.
    #[serde(default)]
    speed: Option<Value>,
    /// Automatic prompt caching: Anthropic places the breakpoint itself.
    #[serde(default)]
    cache_control: Option<Value>,
    /// The structured-outputs beta's form of `output_config.format`, still sent by clients
    /// built on it.
    #[serde(default)]
    output_format: Option<InFormat>,
}

#[derive(Debug, Deserialize)]
struct InThinking {
    r#type: String,
    #[serde(default)]
    budget_tokens: Option<u32>,
}

/// `output_config`: how much the model spends, and the shape of its answer.
#[derive(Debug, Deserialize)]
struct InOutputConfig {
    #[serde(default)]
    effort: Option<String>,
    #[serde(default)]
    format: Option<InFormat>,
}

#[derive(Debug, Deserialize)]
struct InFormat {
    r#type: String,
    #[serde(default)]
    schema: Option<Value>,
}

/// The levels `output_config.effort` takes (Anthropic has no `none` or `minimal` there).
const OUTPUT_EFFORTS: [ReasoningEffort; 5] = [
    ReasoningEffort::Low,
    ReasoningEffort::Medium,
    ReasoningEffort::High,
    ReasoningEffort::XHigh,
    ReasoningEffort::Max,
];

/// The name the answer's schema goes under: Anthropic's format has none, and OpenAI-format
/// servers require one.
const OUTPUT_SCHEMA_NAME: &str = "output";

/// `output_config` as the effort and the response format it asks for. The format is
/// enforced by Anthropic (constrained decoding), so it is a strict schema here too: a
/// backend that cannot promise it refuses and the router fails over, rather than hand the
/// client's parser prose.
///
/// `output_format` (the structured-outputs beta's name for the format) is the same format:
/// dropped, the client's schema would silently not be enforced. Given with
/// `output_config.format`, it is refused rather than one of the two picked.
fn output_config(
    config: Option<InOutputConfig>,
    output_format: Option<InFormat>,
) -> Result<(Option<ReasoningEffort>, ResponseFormat), ApiError> {
    let config = config.unwrap_or(InOutputConfig { effort: None, format: None });
    let (format, at) = match (config.format, output_format) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "output_format: the answer's format is given twice, here and in `output_config.format`; \
                 send it in `output_config.format` only",
            )
            .with_param("output_format"));
        }
        (Some(f), None) => (Some(f), "output_config.format"),
        (None, Some(f)) => (Some(f), "output_format"),
        (None, None) => (None, ""),
    };
    let effort = match config.effort.as_deref() {
        None => None,
        Some(e) => match OUTPUT_EFFORTS.into_iter().find(|o| o.as_str() == e) {
            Some(effort) => Some(effort),
            None => {
                return Err(ApiError::invalid(format!(
                    "output_config.effort: unknown effort `{e}`; expected `low`, `medium`, `high`, `xhigh` or `max`"
                ))
                .with_param("output_config.effort"));
            }
        },
    };
    let format = match format {
        None => ResponseFormat::Text,
        Some(f) => match (f.r#type.as_str(), f.schema) {
            ("json_schema", Some(schema)) => {
                ResponseFormat::JsonSchema { name: OUTPUT_SCHEMA_NAME.to_owned(), schema, strict: true }
            }
            ("json_schema", None) => return Err(required(format!("{at}.schema"))),
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "{at}.type: unknown type `{other}`; expected `json_schema`"
                ))
                .with_param(format!("{at}.type")));
            }
        },
    };
    Ok((effort, format))
}

/// `cache_control`: `{"type": "ephemeral"}`, optionally with a `ttl`.
#[derive(Debug, Deserialize)]
struct InCache {
    r#type: String,
    #[serde(default)]
    ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InToolChoice {
    r#type: String,
    #[serde(default)]
    name: Option<String>,
    /// At most one `tool_use` block in the answer; a backend that cannot promise it refuses.
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

type Content = TextOr<InBlock>;

/// The types of the blocks Anthropic's own tools write into an assistant turn (server tools'
/// calls and results, MCP connector calls and results, code execution's file uploads, context
/// compaction), as its Messages API lists them. Such a block is the provider's alone: the
/// client shows it and sends it back unchanged (search results are encrypted), so it is
/// carried whole, in its place, to an Anthropic backend only. Any other unknown type is
/// refused, naming it: passed on unread, a block no backend knows would fail upstream instead.
const NATIVE_BLOCKS: [&str; 13] = [
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "advisor_tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "container_upload",
    "compaction",
    "fallback",
];

/// A content block: one of Anthropic's own ([`NATIVE_BLOCKS`]), kept whole, or one the
/// gateway reads, flat.
// Nearly every block is flat: boxing it would cost each one an allocation to save the rare
// native block some bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum InBlock {
    Native(Value),
    Flat(Block),
}

impl InBlock {
    /// The block, or a 400 naming it (`param`) when it is one of Anthropic's own: only an
    /// assistant turn carries those.
    fn flat(self, param: &dyn Fn() -> String) -> Result<Block, ApiError> {
        match self {
            InBlock::Flat(b) => Ok(b),
            InBlock::Native(v) => {
                Err(unsupported(v.get("type").and_then(Value::as_str).unwrap_or(""), param()))
            }
        }
    }
}

impl<'de> Deserialize<'de> for InBlock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(InBlockVisitor)
    }
}

/// Reads a block's entries up to its `type` (clients write it first), then the rest either
/// raw, for one of Anthropic's own blocks, or as the flat [`Block`]: the common block is
/// never buffered whole (see [`TextOr`] for why that matters).
struct InBlockVisitor;

impl<'de> serde::de::Visitor<'de> for InBlockVisitor {
    type Value = InBlock;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a content block object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<InBlock, A::Error> {
        let mut held: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            let is_type = key == "type";
            if is_type && value.as_str().is_some_and(|t| NATIVE_BLOCKS.contains(&t)) {
                let mut raw: serde_json::Map<String, Value> = held.into_iter().collect();
                raw.insert(key, value);
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    raw.insert(k, v);
                }
                return Ok(InBlock::Native(Value::Object(raw)));
            }
            held.push((key, value));
            if is_type {
                break;
            }
        }
        let rest = HeldThenRest { held: held.into_iter(), value: None, rest: map };
        Block::deserialize(serde::de::value::MapAccessDeserializer::new(rest)).map(InBlock::Flat)
    }
}

/// A map's entries already read, then the ones still to come.
struct HeldThenRest<A> {
    held: std::vec::IntoIter<(String, Value)>,
    /// The value of the held key just handed out.
    value: Option<Value>,
    rest: A,
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for HeldThenRest<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::IntoDeserializer;
        match self.held.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => self.rest.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value).map_err(serde::de::Error::custom),
            None => self.rest.next_value_seed(seed),
        }
    }
}

/// A content block, flat: which fields matter depends on `type`.
#[derive(Debug, Deserialize)]
struct Block {
    r#type: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    cache_control: Option<InCache>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    source: Option<InSource>,
    /// A document's name, which the model reads.
    #[serde(default)]
    title: Option<String>,
    /// A document's `context` and `citations`, kept raw: refused when set (see the module
    /// doc). Raw too because a text block sent back carries `citations` of another shape.
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    citations: Option<Value>,
}

/// An image or document block's `source`, flat like [`Block`]: `base64` (`media_type`,
/// `data`), `url`, or a document's `text` (`media_type`, `data`).
#[derive(Debug, Deserialize)]
struct InSource {
    r#type: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    content: Content,
}

#[derive(Debug, Deserialize)]
struct InTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(default)]
    cache_control: Option<InCache>,
    /// Strict tool use: Claude's `input` follows `input_schema` exactly.
    #[serde(default)]
    strict: Option<bool>,
}

/// A tool: the client's own (no `type`, or `custom`), or one Anthropic defines, named by its
/// versioned `type` (`web_search_20250305`, `bash_20250124`, …) and kept whole: the provider
/// knows its schema, and runs it when it is a server tool.
#[derive(Debug)]
enum AnyTool {
    Client(InTool),
    Native(Value),
}

impl<'de> Deserialize<'de> for AnyTool {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(deserializer)?;
        match v.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "custom" => {}
            Some(Value::String(_)) => return Ok(AnyTool::Native(v)),
            Some(other) => {
                let why = String::deserialize(other)
                    .err()
                    .map_or_else(|| "expected a string".into(), |e| e.to_string());
                return Err(serde::de::Error::custom(why));
            }
        }
        InTool::deserialize(v).map(AnyTool::Client).map_err(serde::de::Error::custom)
    }
}

/// A tool that failed to parse, named down to its `strict` when that is the field at fault:
/// the whole tool's error would leave the client to guess which flag it sent wrong.
fn tool_fault(path: String, t: &Value) -> Option<Fault> {
    let whole = fault::<AnyTool>(path.clone(), t)?;
    let strict =
        t.get("strict").filter(|v| !v.is_null()).and_then(|v| fault::<bool>(format!("{path}.strict"), v));
    Some(strict.unwrap_or(whole))
}

/// Reads `cache_control` markers and counts them against Anthropic's limit, so the request
/// that has one too many is refused naming the marker that overflows, before any upstream
/// call (Anthropic's own refusal would come after a fail-over had nowhere better to go).
#[derive(Default)]
struct CacheMarks {
    seen: usize,
}

impl CacheMarks {
    /// The TTL of the marker at `param` (the field holding it), if there is one.
    fn read(
        &mut self,
        mark: Option<InCache>,
        param: &dyn Fn() -> String,
    ) -> Result<Option<CacheTtl>, ApiError> {
        let Some(mark) = mark else { return Ok(None) };
        let name = || format!("{}.cache_control", param());
        if mark.r#type != "ephemeral" {
            return Err(ApiError::invalid(format!(
                "{}.type: unknown cache type `{}`; expected `ephemeral`",
                name(),
                mark.r#type
            ))
            .with_param(format!("{}.type", name())));
        }
        let ttl = match mark.ttl.as_deref() {
            None | Some("5m") => CacheTtl::FiveMinutes,
            Some("1h") => CacheTtl::OneHour,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "{}.ttl: unknown ttl `{other}`; expected `5m` or `1h`",
                    name()
                ))
                .with_param(format!("{}.ttl", name())));
            }
        };
        self.seen += 1;
        if self.seen > MAX_CACHE_BREAKPOINTS {
            return Err(ApiError::invalid(format!(
                "A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided; `{}` is one more",
                name()
            ))
            .with_param(name()));
        }
        Ok(Some(ttl))
    }
}

/// A message's text, images, documents and cache breakpoints as the neutral [`Message`] holds
/// them, built block by block in the client's order.
#[derive(Debug, Default)]
struct Parts {
    text: String,
    images: Vec<Image>,
    documents: Vec<Document>,
    cache: Vec<CacheBreakpoint>,
}

impl Parts {
    /// A text block's text: after a newline in `system` and a tool result (`newline`), whose
    /// blocks are joined so; as it came in a turn, so each block ends where the next starts.
    fn push_text(&mut self, text: &str, newline: bool) {
        if newline && !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(text);
    }

    /// A breakpoint at the current end of the text (a marked text block).
    fn mark_text(&mut self, ttl: CacheTtl) {
        let at = CacheAt::Text(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        self.cache.push(CacheBreakpoint { at, ttl });
    }

    /// A breakpoint after all there is so far (a marked `tool_result` block): after the last
    /// document or image when nothing follows it, since a breakpoint at the text's end stands
    /// before the images and documents there and would leave them out of the prefix the
    /// client asked to cache. At one offset documents go after images
    /// ([`Message::segments`]), so a document there is the last block.
    fn mark_end(&mut self, ttl: CacheTtl) {
        let at_end = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        if self.documents.last().is_some_and(|d| d.at == at_end) {
            self.mark_last_document(ttl);
        } else if self.images.last().is_some_and(|i| i.at == at_end) {
            self.mark_last_image(ttl);
        } else {
            self.mark_text(ttl);
        }
    }

    fn mark_last_image(&mut self, ttl: CacheTtl) {
        let at = CacheAt::Image(u32::try_from(self.images.len().saturating_sub(1)).unwrap_or(u32::MAX));
        self.cache.push(CacheBreakpoint { at, ttl });
    }

    fn mark_last_document(&mut self, ttl: CacheTtl) {
        let at = CacheAt::Document(u32::try_from(self.documents.len().saturating_sub(1)).unwrap_or(u32::MAX));
        self.cache.push(CacheBreakpoint { at, ttl });
    }

    /// An `image` block (`param` names it) at the current end of the text. Its `cache_control`
    /// is a breakpoint after the image itself: Claude Code marks the last block of its last
    /// message, which is the image when a tool just read one.
    fn image(
        &mut self,
        b: Block,
        param: &dyn Fn() -> String,
        marks: &mut CacheMarks,
    ) -> Result<(), ApiError> {
        let source = image_source(b.source, param)?;
        self.images.push(image_at(&self.text, source));
        if let Some(ttl) = marks.read(b.cache_control, param)? {
            self.mark_last_image(ttl);
        }
        Ok(())
    }

    /// A `document` block (`param` names it) at the current end of the text, marked as an
    /// image is. A `text` source is plain text, taken as a text block would be (`newline` as
    /// in [`Self::push_text`]) and marked as one.
    fn document(
        &mut self,
        b: Block,
        param: &dyn Fn() -> String,
        marks: &mut CacheMarks,
        newline: bool,
    ) -> Result<(), ApiError> {
        let citations = match b.citations.as_ref().filter(|c| !c.is_null()) {
            None => false,
            Some(c) => match c.get("enabled") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(on)) => *on,
                Some(_) => {
                    return Err(invalid_at(
                        format!("{}.citations.enabled", param()),
                        &"Input should be a valid boolean",
                    ));
                }
            },
        };
        if b.context.as_ref().is_some_and(|c| !c.is_null() && c.as_str() != Some("")) {
            return Err(invalid_at(
                format!("{}.context", param()),
                &"a document's `context` is not supported by this gateway: no backend would be \
                  shown it; send it as a `text` block beside the document",
            ));
        }
        let source = match document_source(b.source, param)? {
            // A text document is read as text here, and text has no pages to cite.
            DocumentIn::Text(_) if citations => {
                return Err(invalid_at(
                    format!("{}.citations", param()),
                    &"citations are supported on PDF documents (`base64` or `url` sources) only by this \
                      gateway, not on a `text` source; send the text without `citations`",
                ));
            }
            DocumentIn::Text(text) => {
                self.push_text(&text, newline);
                if let Some(ttl) = marks.read(b.cache_control, param)? {
                    self.mark_text(ttl);
                }
                return Ok(());
            }
            DocumentIn::Pdf(source) => source,
        };
        self.documents.push(Document { citations, ..document_at(&self.text, source, b.title) });
        if let Some(ttl) = marks.read(b.cache_control, param)? {
            self.mark_last_document(ttl);
        }
        Ok(())
    }
}

/// Checks the `name` of one of Anthropic's own tools (`tools.{i}`): Claude calls the tool by
/// it, and `tool_choice` names it so.
fn native_tool_name(spec: &Value, i: usize) -> Result<(), ApiError> {
    let param = format!("tools.{i}.name");
    match spec.get("name") {
        None | Some(Value::Null) => Err(required(param)),
        Some(Value::String(n)) if n.is_empty() => {
            Err(invalid_at(param, &"String should have at least 1 character"))
        }
        Some(Value::String(_)) => Ok(()),
        Some(other) => match String::deserialize(other) {
            Err(e) => Err(invalid_at(param, &e)),
            Ok(_) => Ok(()),
        },
    }
}

/// Checks and counts the `cache_control` of one of Anthropic's own tools or blocks (`param`):
/// it stays in the tool or block, which goes whole, but Anthropic counts it against the same
/// limit as every other marker.
fn native_mark(v: &Value, marks: &mut CacheMarks, param: &dyn Fn() -> String) -> Result<(), ApiError> {
    let Some(mark) = v.get("cache_control").filter(|c| !c.is_null()) else { return Ok(()) };
    let mark =
        InCache::deserialize(mark).map_err(|e| invalid_at(format!("{}.cache_control", param()), &e))?;
    marks.read(Some(mark), param).map(drop)
}

/// An assistant text block's `citations` (`param` names the block): where its sentences came
/// from, as Anthropic wrote them (a web search result, a document's page). Sent back with the
/// turn, to Anthropic only; none when absent.
fn text_citations(citations: Option<Value>, param: &dyn Fn() -> String) -> Result<Vec<Value>, ApiError> {
    match citations {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(cited)) => Ok(cited),
        Some(_) => Err(invalid_at(format!("{}.citations", param()), &"Input should be a valid list")),
    }
}

/// The JSON type one of Anthropic's own top-level request fields takes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    List,
    Object,
    Text,
    /// `container`: the id of a container to reuse, or an object naming it and its skills.
    TextOrObject,
}

impl Shape {
    fn fits(self, v: &Value) -> bool {
        match self {
            Shape::List => v.is_array(),
            Shape::Object => v.is_object(),
            Shape::Text => v.is_string(),
            Shape::TextOrObject => v.is_string() || v.is_object(),
        }
    }

    /// Anthropic's wording for a value of another type.
    fn expected(self) -> &'static str {
        match self {
            Shape::List => "Input should be a valid list",
            Shape::Object => "Input should be a valid dictionary",
            Shape::Text => "Input should be a valid string",
            Shape::TextOrObject => "Input should be a valid string (a container id) or a valid dictionary",
        }
    }
}

/// One of Anthropic's own top-level request fields (`name`), when present and not null,
/// carried whole for an Anthropic backend to read: the gateway checks its type only, so a
/// field Anthropic extends still goes through. `required` when another provider cannot serve
/// the request without it; an empty list asks for nothing another provider lacks.
fn native_field(
    out: &mut Vec<NativeField>,
    name: &str,
    value: Option<Value>,
    shape: Shape,
    required: bool,
) -> Result<(), ApiError> {
    let Some(value) = value else { return Ok(()) };
    if !shape.fits(&value) {
        return Err(invalid_at(name.to_owned(), &shape.expected()));
    }
    let required = required && value.as_array().is_none_or(|a| !a.is_empty());
    out.push(NativeField { dialect: Dialect::Anthropic, name: name.to_owned(), value, required });
    Ok(())
}

fn unsupported(kind: &str, param: String) -> ApiError {
    ApiError::invalid(format!("content blocks of type `{kind}` are not supported by this gateway"))
        .with_param(param)
}

/// A text block without its `text`: Anthropic refuses it (`….text: Field required`); taking it
/// as empty would send a turn the client never wrote.
fn missing_text(param: String) -> ApiError {
    required(format!("{param}.text"))
}

/// Anthropic's wording for a required field left out, naming it as the `param`.
fn required(param: String) -> ApiError {
    ApiError::invalid(format!("{param}: Field required")).with_param(param)
}

/// Anthropic's wording for a field of the wrong value, naming it as the `param`.
fn invalid_at(param: String, why: &dyn std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("{param}: {why}")).with_param(param)
}

/// An `image` or `document` block (`kind`) in `system` or an assistant turn (`param` names it).
fn misplaced(kind: &str, param: String) -> ApiError {
    invalid_at(
        param,
        &format!(
            "{kind} blocks are accepted in a user message's content or a `tool_result`'s content \
             only, not in `system` or an assistant turn"
        ),
    )
}

/// A `file` source (at `param`): Anthropic's Files API, which the gateway cannot read.
fn file_source(param: String, kind: &str) -> ApiError {
    invalid_at(
        param,
        &format!(
            "`file` sources name a file uploaded to Anthropic's Files API, which this gateway \
             cannot read; send the {kind} as a `base64` or `url` source"
        ),
    )
}

/// An image block's `source` (the block is `param`) as the neutral image source.
fn image_source(source: Option<InSource>, param: &dyn Fn() -> String) -> Result<ImageSource, ApiError> {
    let at = |field: &str| format!("{}.source{field}", param());
    let Some(source) = source else { return Err(required(at(""))) };
    match source.r#type.as_str() {
        "base64" => {
            let media_type = source.media_type.ok_or_else(|| required(at(".media_type")))?;
            let data = source.data.ok_or_else(|| required(at(".data")))?;
            base64_image(&media_type, data).map_err(|why| media_fault(&at, why))
        }
        "url" => Ok(ImageSource::Url { url: source_url(source.url, &at)? }),
        "file" => Err(file_source(at(".type"), "image")),
        other => Err(invalid_at(
            at(".type"),
            &format!("unknown image source type `{other}`; expected `base64` or `url`"),
        )),
    }
}

/// A fault in a `base64` source's media type or data (`at` names the source's fields).
fn media_fault(at: &dyn Fn(&str) -> String, why: MediaFault) -> ApiError {
    match why {
        MediaFault::ImageType(_) | MediaFault::DocumentType(_) => invalid_at(at(".media_type"), &why),
        _ => invalid_at(at(".data"), &why),
    }
}

/// A `url` source's URL, `http(s)` (`at` names the source's fields).
fn source_url(url: Option<String>, at: &dyn Fn(&str) -> String) -> Result<String, ApiError> {
    let url = url.ok_or_else(|| required(at(".url")))?;
    fetched_url(url, false).map_err(|why| invalid_at(at(".url"), &why))
}

/// What a `document` block holds: a PDF, or plain text (a `text` source).
enum DocumentIn {
    Pdf(DocumentSource),
    Text(String),
}

/// A document block's `source` (the block is `param`).
fn document_source(source: Option<InSource>, param: &dyn Fn() -> String) -> Result<DocumentIn, ApiError> {
    let at = |field: &str| format!("{}.source{field}", param());
    let Some(source) = source else { return Err(required(at(""))) };
    match source.r#type.as_str() {
        "base64" => {
            let media_type = source.media_type.ok_or_else(|| required(at(".media_type")))?;
            let data = source.data.ok_or_else(|| required(at(".data")))?;
            Ok(DocumentIn::Pdf(base64_pdf(&media_type, data).map_err(|why| media_fault(&at, why))?))
        }
        "url" => Ok(DocumentIn::Pdf(DocumentSource::Url { url: source_url(source.url, &at)? })),
        "text" => {
            if let Some(t) = source.media_type.filter(|t| !t.trim().eq_ignore_ascii_case("text/plain")) {
                return Err(invalid_at(
                    at(".media_type"),
                    &format!("unsupported media type `{t}` for a `text` source; expected `text/plain`"),
                ));
            }
            Ok(DocumentIn::Text(source.data.ok_or_else(|| required(at(".data")))?))
        }
        "content" => Err(invalid_at(
            at(".type"),
            &"`content` document sources are not supported by this gateway (they are made to be \
              cited, and the answer has no citations); send their blocks as `text` and `image` blocks",
        )),
        "file" => Err(file_source(at(".type"), "document")),
        other => Err(invalid_at(
            at(".type"),
            &format!("unknown document source type `{other}`; expected `base64`, `url` or `text`"),
        )),
    }
}

/// Text of a system prompt or a tool result: a string, or text blocks joined by newlines, with
/// a cache breakpoint at the end of each marked block. A tool result's image and document
/// blocks (`media`) stand where they stood among its text; `system` takes none. `base` names
/// the field, so a refused block is named by its position in it.
fn block_text(
    content: Option<Content>,
    base: &dyn Fn() -> String,
    marks: &mut CacheMarks,
    media: bool,
) -> Result<Parts, ApiError> {
    let blocks = match content {
        None => return Ok(Parts::default()),
        Some(TextOr::Text(text)) => return Ok(Parts { text, ..Parts::default() }),
        Some(TextOr::List(blocks)) => blocks,
    };
    let mut out = Parts::default();
    for (j, b) in blocks.into_iter().enumerate() {
        let param = || format!("{}.{j}", base());
        let b = b.flat(&param)?;
        match b.r#type.as_str() {
            "text" => {
                let Some(t) = b.text else { return Err(missing_text(param())) };
                out.push_text(&t, true);
                if let Some(ttl) = marks.read(b.cache_control, &param)? {
                    out.mark_text(ttl);
                }
            }
            "image" if media => out.image(b, &param, marks)?,
            "document" if media => out.document(b, &param, marks, true)?,
            kind @ ("image" | "document") => return Err(misplaced(kind, param())),
            other => return Err(unsupported(other, param())),
        }
    }
    Ok(out)
}

fn message_fault(path: String, m: &Value) -> Option<Fault> {
    let whole = fault::<InMessage>(path.clone(), m)?;
    let narrower = m.as_object().and_then(|o| {
        let role = o.get("role").and_then(|r| fault::<String>(format!("{path}.role"), r));
        role.or_else(|| {
            let content = o.get("content")?;
            let path = format!("{path}.content");
            if content.is_array() {
                element_fault::<InBlock>(Paths::Dotted, &path, content)
            } else {
                fault::<Content>(path, content)
            }
        })
    });
    Some(narrower.unwrap_or(whole))
}

/// The field at fault in a body that failed to parse, as Anthropic writes paths
/// (`messages.2.content.0`). `None` when it cannot be told, and the caller says less.
fn locate(v: &Value) -> Option<Fault> {
    let obj = v.as_object()?;
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let top = |k: &'static str| -> Option<Fault> {
        let v = field(k)?;
        match k {
            "model" => fault::<String>(k.into(), v),
            "max_tokens" | "top_k" => fault::<u32>(k.into(), v),
            "temperature" | "top_p" => fault::<f32>(k.into(), v),
            "stream" => fault::<bool>(k.into(), v),
            "metadata" => fault::<serde_json::Map<String, Value>>(k.into(), v),
            "tool_choice" => fault::<InToolChoice>(k.into(), v),
            "thinking" => fault::<InThinking>(k.into(), v),
            "output_config" => fault::<InOutputConfig>(k.into(), v),
            "output_format" => fault::<InFormat>(k.into(), v),
            "stop_sequences" => element_fault::<String>(Paths::Dotted, k, v),
            "tools" => list_fault(Paths::Dotted, k, v, tool_fault),
            "system" if v.is_array() => element_fault::<InBlock>(Paths::Dotted, k, v),
            "system" => fault::<Content>(k.into(), v),
            _ => None,
        }
    };
    let keys = [
        "model",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "metadata",
        "tool_choice",
        "thinking",
        "output_config",
        "output_format",
        "stop_sequences",
        "tools",
        "system",
    ];
    keys.into_iter()
        .find_map(top)
        .or_else(|| list_fault(Paths::Dotted, "messages", field("messages")?, message_fault))
}

/// Anthropic's `stop_reason` for how the answer ended, given whether it carries tool calls,
/// and the `stop_sequence` that matched when the reason is `stop_sequence`.
///
/// Clients run tools when, and only when, `stop_reason` is `tool_use`; some OpenAI-compatible
/// servers finish a tool-calling turn with plain `stop` (and a broken one may claim
/// `tool_calls` with none), so the reason follows the content rather than the upstream's word.
///
/// `stop_sequence` is reported only when the upstream named the sequence (Anthropic does).
/// An OpenAI-compatible upstream's `stop` covers a stop sequence and a natural end alike, and
/// the matched text is not in the answer, so nothing tells them apart: that is `end_turn`,
/// as the upstream's own word would be read, rather than a guess.
fn stop_reason(f: Option<&FinishReason>, tool_use: bool) -> (&str, Option<&str>) {
    let sequence = f.and_then(FinishReason::stop_sequence);
    match (upstream_stop_reason(f), tool_use) {
        ("end_turn" | "stop_sequence", true) => ("tool_use", None),
        ("tool_use", false) => ("end_turn", None),
        ("stop_sequence", false) if sequence.is_none() => ("end_turn", None),
        (r, _) => (r, sequence),
    }
}

impl MessagesRequest {
    pub(crate) fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The provider-neutral request. A user turn's `tool_result` blocks become tool messages
    /// (before the turn's text, as Anthropic orders them); thinking blocks of earlier turns are
    /// kept with their signatures on the assistant message (Anthropic needs them back in a
    /// tool loop; other providers are sent none), and `cache_control` markers become
    /// breakpoints at the same places.
    pub(crate) fn into_chat(self) -> Result<(ChatRequest, Option<String>), ApiError> {
        let max_tokens = match self.max_tokens {
            None => return Err(ApiError::invalid("max_tokens: Field required").with_param("max_tokens")),
            // Anthropic refuses it; another backend would answer with nothing at all.
            Some(0) => {
                return Err(ApiError::invalid("max_tokens: Input should be greater than or equal to 1")
                    .with_param("max_tokens"));
            }
            Some(n) => n,
        };
        self.into_neutral(Some(max_tokens))
    }

    /// The request a token count is about: as [`into_chat`](Self::into_chat), but a count
    /// has no answer, so `max_tokens` is neither required nor kept.
    fn into_count(self) -> Result<(ChatRequest, Option<String>), ApiError> {
        self.into_neutral(None)
    }

    fn into_neutral(self, max_tokens: Option<u32>) -> Result<(ChatRequest, Option<String>), ApiError> {
        let Some(messages) = self.messages else {
            return Err(ApiError::invalid("messages: Field required").with_param("messages"));
        };
        if messages.is_empty() {
            return Err(
                ApiError::invalid("messages: at least one message is required").with_param("messages")
            );
        }
        let mut marks = CacheMarks::default();
        // Tools come first in Anthropic's prompt, so their markers are counted first.
        let mut tools = Vec::new();
        let mut native_tools = Vec::new();
        for (i, t) in self.tools.unwrap_or_default().into_iter().enumerate() {
            let t = match t {
                AnyTool::Client(t) => t,
                AnyTool::Native(spec) => {
                    native_tool_name(&spec, i)?;
                    native_mark(&spec, &mut marks, &|| format!("tools.{i}"))?;
                    let at = u32::try_from(tools.len()).unwrap_or(u32::MAX);
                    native_tools.push(NativeTool { dialect: Dialect::Anthropic, at, spec });
                    continue;
                }
            };
            tools.push(ToolSpec {
                name: t.name,
                description: t.description.unwrap_or_default(),
                parameters: t
                    .input_schema
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                cache: marks.read(t.cache_control, &|| format!("tools.{i}"))?,
                strict: t.strict.unwrap_or(false),
            });
        }
        let mut out = Vec::with_capacity(messages.len() + 1);
        let system = block_text(self.system, &|| "system".to_owned(), &mut marks, false)?;
        if !system.text.is_empty() {
            out.push(Message { cache: system.cache, ..Message::system(system.text) });
        }
        for (i, m) in messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::invalid(format!("unknown message role `{other}`"))
                        .with_param(format!("messages.{i}.role")));
                }
            };
            let blocks = match m.content {
                TextOr::Text(t) => {
                    out.push(Message::new(role, t));
                    continue;
                }
                TextOr::List(b) => b,
            };
            let mut parts = Parts::default();
            let mut tool_calls = Vec::new();
            let mut thinking = Vec::new();
            // Claude thinks between its calls (interleaved thinking), and Anthropic refuses the
            // turn back in any other order than it made it.
            let mut order = BlockOrder::default();
            let (mut native, mut citations) = (Vec::new(), Vec::new());
            let mut had_results = false;
            for (j, b) in blocks.into_iter().enumerate() {
                let param = || format!("messages.{i}.content.{j}");
                let b = match b {
                    // Anthropic's own tools' blocks, in their place, for Anthropic to read.
                    InBlock::Native(block) if role == Role::Assistant => {
                        native_mark(&block, &mut marks, &param)?;
                        native.push(NativeBlock::anthropic(block));
                        order.native();
                        continue;
                    }
                    other => other.flat(&param)?,
                };
                match (b.r#type.as_str(), role) {
                    ("text", _) => match b.text {
                        Some(t) => {
                            // Joined as they came, so each block ends where the next starts.
                            parts.text.push_str(&t);
                            order.text(parts.text.len());
                            if role == Role::Assistant {
                                let cited = text_citations(b.citations, &param)?;
                                // An empty block is no block of the turn; nothing of it is cited.
                                if !cited.is_empty() && !t.is_empty() {
                                    let end = u32::try_from(parts.text.len()).unwrap_or(u32::MAX);
                                    citations.push(TextCitations { end, citations: cited });
                                }
                            }
                            if let Some(ttl) = marks.read(b.cache_control, &param)? {
                                parts.mark_text(ttl);
                            }
                        }
                        None => return Err(missing_text(param())),
                    },
                    ("image", Role::User) => parts.image(b, &param, &mut marks)?,
                    ("document", Role::User) => parts.document(b, &param, &mut marks, false)?,
                    (kind @ ("image" | "document"), _) => return Err(misplaced(kind, param())),
                    ("tool_use", Role::Assistant) => {
                        let (Some(id), Some(name)) = (b.id, b.name) else {
                            return Err(
                                ApiError::invalid("tool_use blocks need `id` and `name`").with_param(param())
                            );
                        };
                        let arguments = b.input.unwrap_or_else(|| Value::Object(serde_json::Map::new()));
                        if let Some(ttl) = marks.read(b.cache_control, &param)? {
                            let at = CacheAt::ToolCall(u32::try_from(tool_calls.len()).unwrap_or(u32::MAX));
                            parts.cache.push(CacheBreakpoint { at, ttl });
                        }
                        tool_calls.push(ToolCall { id, name, arguments });
                        order.tool_call();
                    }
                    ("tool_result", Role::User) => {
                        let Some(id) = b.tool_use_id else {
                            return Err(ApiError::invalid("tool_result blocks need `tool_use_id`")
                                .with_param(param()));
                        };
                        let mut result =
                            block_text(b.content, &|| format!("{}.content", param()), &mut marks, true)?;
                        if let Some(ttl) = marks.read(b.cache_control, &param)? {
                            result.mark_end(ttl);
                        }
                        out.push(Message {
                            is_error: b.is_error.unwrap_or(false),
                            cache: result.cache,
                            images: result.images,
                            documents: result.documents,
                            ..Message::tool_result(id, result.text)
                        });
                        had_results = true;
                    }
                    ("thinking", Role::Assistant) => {
                        let Some(t) = b.thinking else {
                            return Err(ApiError::invalid(format!("{}.thinking: Field required", param()))
                                .with_param(format!("{}.thinking", param())));
                        };
                        // Anthropic checks the signature; an unsigned block (one this gateway
                        // made from another provider's reasoning) is still the client's history.
                        thinking.push(ThinkingBlock::Thinking {
                            thinking: t,
                            signature: b.signature.unwrap_or_default(),
                        });
                        order.thinking();
                    }
                    ("redacted_thinking", Role::Assistant) => {
                        let Some(data) = b.data else {
                            return Err(ApiError::invalid(format!("{}.data: Field required", param()))
                                .with_param(format!("{}.data", param())));
                        };
                        thinking.push(ThinkingBlock::Redacted { data });
                        order.thinking();
                    }
                    (other, _) => return Err(unsupported(other, param())),
                }
            }
            let has_media = !parts.images.is_empty() || !parts.documents.is_empty();
            if role == Role::Assistant || !parts.text.is_empty() || has_media || !had_results {
                let Parts { text, images, documents, cache } = parts;
                // Only an assistant turn has blocks whose order the neutral message keeps.
                let order = if role == Role::Assistant { order.finish() } else { Vec::new() };
                out.push(Message {
                    tool_calls,
                    thinking,
                    cache,
                    images,
                    documents,
                    order,
                    native,
                    citations,
                    ..Message::new(role, text)
                });
            }
        }
        let thinking = match self.thinking {
            None => None,
            Some(t) => Some(match (t.r#type.as_str(), t.budget_tokens) {
                ("enabled", Some(budget_tokens)) => Thinking::Budget { budget_tokens },
                ("enabled", None) => {
                    return Err(ApiError::invalid("thinking.budget_tokens: Field required")
                        .with_param("thinking.budget_tokens"));
                }
                ("adaptive", _) => Thinking::Adaptive,
                ("disabled", _) => Thinking::Disabled,
                (other, _) => {
                    return Err(ApiError::invalid(format!(
                        "thinking.type: unknown type `{other}`; expected `enabled`, `adaptive` or `disabled`"
                    ))
                    .with_param("thinking.type"));
                }
            }),
        };
        let (output_effort, response_format) = output_config(self.output_config, self.output_format)?;
        let parallel_tool_calls =
            self.tool_choice.as_ref().and_then(|c| c.disable_parallel_tool_use).map(|disable| !disable);
        let tool_choice = match self.tool_choice {
            None => ToolChoice::Auto,
            Some(choice) => match (choice.r#type.as_str(), choice.name) {
                ("auto", _) => ToolChoice::Auto,
                ("none", _) => ToolChoice::None,
                ("any", _) => ToolChoice::Required,
                ("tool", Some(name)) => ToolChoice::Tool(name),
                ("tool", None) => {
                    return Err(
                        ApiError::invalid("tool_choice.name: Field required").with_param("tool_choice.name")
                    );
                }
                (other, _) => {
                    return Err(ApiError::invalid(format!(
                        "tool_choice.type: unknown type `{other}`; expected `auto`, `any`, `tool` or `none`"
                    ))
                    .with_param("tool_choice.type"));
                }
            },
        };
        let mut native_fields = Vec::new();
        // Another provider cannot reach the MCP servers, nor the container that holds the
        // conversation's files: such a request goes to Anthropic or nowhere.
        native_field(&mut native_fields, "mcp_servers", self.mcp_servers, Shape::List, true)?;
        native_field(&mut native_fields, "container", self.container, Shape::TextOrObject, true)?;
        // Claude Code's context editing and the service tier are knobs: another provider is
        // sent the request without them, as it is sent other knobs it lacks.
        native_field(
            &mut native_fields,
            "context_management",
            self.context_management,
            Shape::Object,
            false,
        )?;
        native_field(&mut native_fields, "service_tier", self.service_tier, Shape::Text, false)?;
        // Where the model may run (data residency): another provider's region is not the
        // client's to give away.
        native_field(&mut native_fields, "inference_geo", self.inference_geo, Shape::Text, true)?;
        // Other providers cache prompts on their own.
        native_field(&mut native_fields, "cache_control", self.cache_control, Shape::Object, false)?;
        // Claude Code's `/fast`: a speed another provider's model goes without, as it goes
        // without other knobs it lacks. Billed at the fast rate only when Anthropic says it
        // served the answer fast (`usage.speed`).
        native_field(&mut native_fields, "speed", self.speed, Shape::Text, false)?;
        let request = ChatRequest {
            messages: out,
            native_tools,
            native_fields,
            native_flags: Vec::new(),
            model: None,
            max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: None,
            stop: self.stop_sequences.unwrap_or_default(),
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format,
            backend: None,
            tags: Vec::new(),
            metadata: self.metadata.unwrap_or_default(),
            thinking,
            output_effort,
            request_id: None,
            tenant: None,
        };
        checked_tool_choice(&request)?;
        Ok((request, self.model))
    }
}

// ---------------------------------------------------------------------------------------------
// Handler

/// A Messages body, or the error naming the field at fault as Anthropic does.
fn parse_body(bytes: &[u8]) -> Result<MessagesRequest, ApiError> {
    parse_located(bytes, locate, |path, inner| ApiError::invalid(format!("{path}: {inner}")).with_param(path))
}

/// The most `anthropic-beta` flags a request may carry: Claude Code sends about six; far more
/// is a malformed header, refused before it is copied into every upstream call.
const MAX_BETA_FLAGS: usize = 32;

/// The client's `anthropic-beta` flags (the header may come more than once, each a
/// comma-separated list), for an Anthropic backend to send on ([`NativeFlag`]). Without them a
/// Claude Code user behind the gateway loses what the flags turn on: a million-token context
/// (`context-1m-…`, whose prompts Anthropic refuses without it), thinking between tool calls,
/// streamed tool input. `oauth-…` flags are dropped: they declare the client's own credential
/// (a Claude subscription), and the upstream call carries the backend's key instead. A flag
/// that is not a flag name is refused without echoing it (a header can hold anything).
fn beta_flags(headers: &HeaderMap) -> Result<Vec<NativeFlag>, ApiError> {
    let bad = |why: String| {
        Err(ApiError::invalid(format!("anthropic-beta header: {why}")).with_param("anthropic-beta"))
    };
    let mut flags: Vec<NativeFlag> = Vec::new();
    for value in headers.get_all("anthropic-beta") {
        let Ok(value) = value.to_str() else {
            return bad("it is not ASCII text".into());
        };
        for flag in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let name_like = flag.len() <= 64
                && flag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !name_like {
                return bad(format!(
                    "flag {} is not a beta name (letters, digits, '-', '.' and '_', at most 64)",
                    flags.len() + 1
                ));
            }
            if flag.starts_with("oauth-") || flags.iter().any(|f| f.flag == flag) {
                continue;
            }
            if flags.len() == MAX_BETA_FLAGS {
                return bad(format!("more than {MAX_BETA_FLAGS} flags"));
            }
            flags.push(NativeFlag { dialect: Dialect::Anthropic, flag: flag.to_owned() });
        }
    }
    Ok(flags)
}

pub(crate) async fn messages(State(st): State<Shared>, request: Request) -> Response {
    let flags = match beta_flags(request.headers()) {
        Ok(f) => f,
        Err(e) => return respond::local_error(EP, e),
    };
    let prepared = respond::prepare(&st, EP, request, |bytes| {
        let parsed = parse_body(bytes).map_err(|e| respond::local_error(EP, e))?;
        let stream = parsed.is_stream();
        let (mut request, model) = parsed.into_chat().map_err(|e| respond::local_error(EP, e))?;
        request.native_flags = flags;
        Ok((request, model, stream))
    })
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    if prepared.extra {
        respond::answer_stream(&st, EP, prepared, AnthropicEncoder::new).await
    } else {
        respond::answer_json(&st, EP, prepared, message_body).await
    }
}

// ---------------------------------------------------------------------------------------------
// Token count

/// `POST /v1/messages/count_tokens`: its own label, so counts (frequent, free) do not blur the
/// figures of the messages they precede.
const COUNT_EP: Endpoint = Endpoint { label: "count_tokens", flavor: Flavor::Anthropic };

/// Says whether an `input_tokens` came from the backend (`exact`) or from the gateway's own
/// estimate (`estimated`).
const TOKEN_COUNT: HeaderName = HeaderName::from_static("x-claudette-token-count");

/// Answers `{"input_tokens": N}` for a Messages body without `max_tokens`: the count of the
/// backend a message with this body would be routed to, when its provider offers one, else
/// the gateway's estimate. The backend is the one the message would go to, under the same
/// `x-claudette-route` / `x-claudette-weights` headers.
///
/// Clients count before they send (Claude Code decides when to compact on it), and they treat
/// a failed count badly, so no upstream failure makes this fail: any error of the count call
/// (unsupported, refused, down, slow past its timeouts) gives the estimate, flagged in
/// `x-claudette-token-count`. What the client got wrong is still its error, in the same words
/// as on `/v1/messages`: a malformed body, an unknown model, too many messages. The count
/// goes around the router: it books no cost and never touches a breaker, so a backend that
/// cannot count is not taken for one that cannot answer. Picking the backend has no side
/// effects either ([`BackendRouter::select`](claudette_core::BackendRouter::select) takes no
/// breaker permit); one whose breaker is open is not asked, so the estimate is answered then.
pub(crate) async fn count_tokens(State(st): State<Shared>, request: Request) -> Response {
    // The message's routing headers pick the backend the message would go to, so its
    // tokenizer is the one asked; a malformed one is refused as on `/v1/messages`.
    let overrides = match routing::overrides(request.headers()) {
        Ok(o) => o,
        Err(e) => return respond::local_error(COUNT_EP, e),
    };
    // Counted with the flags the message will carry (a million-token prompt is counted only
    // with the flag that allows it).
    let flags = match beta_flags(request.headers()) {
        Ok(f) => f,
        Err(e) => return respond::local_error(COUNT_EP, e),
    };
    let admitted = match respond::admit(&st, COUNT_EP, request.into_body()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let (mut chat, model) = match parse_body(&admitted.body).and_then(MessagesRequest::into_count) {
        Ok(parsed) => parsed,
        Err(e) => return respond::local_error(COUNT_EP, e),
    };
    chat.native_flags = flags;
    if let Err(resp) = limits::check_request(&st, COUNT_EP, &mut chat) {
        return resp;
    }
    if let Err(e) = routing::resolve_model(&st.router, model.as_deref(), &mut chat) {
        return respond::local_error(COUNT_EP, e);
    }
    let selected = st.router.select_with(&chat, &[], overrides).map(|s| s.backend);
    let (backend, counted) = match &selected {
        Ok(backend) => {
            let limit = st.count_tokens_timeout;
            let counted =
                tokio::time::timeout(limit, backend.count_tokens(&chat)).await.unwrap_or_else(|_| {
                    Err(BackendError::timeout(
                        format!("the token count took longer than {} ms", limit.as_millis()),
                        Phase::AwaitingResponse,
                    ))
                });
            (backend.name(), counted)
        }
        Err(e) => ("none", Err(e.clone())),
    };
    let (input_tokens, how) = match counted {
        Ok(n) => (n, "exact"),
        Err(e) => {
            if e.kind == ErrorKind::Unsupported {
                tracing::debug!(backend, "no upstream token count; answering with the estimate");
            } else {
                tracing::warn!(
                    backend,
                    error = %scrub_secrets(&e.to_string()),
                    "upstream token count failed; answering with the estimate"
                );
            }
            (chat.estimated_input_tokens(), "estimated")
        }
    };
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(b"{\"input_tokens\":");
    respond::json_uint(&mut body, input_tokens);
    body.push(b'}');
    let mut resp = respond::json_ok(COUNT_EP, admitted.started, body, backend, 0.0, None);
    resp.headers_mut().insert(TOKEN_COUNT, HeaderValue::from_static(how));
    resp
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    r#type: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<BlockOut<'a>>,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: OutUsage,
    /// Only when the upstream named them (see [`answer_field`]): an answer without is as it
    /// always was.
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_management: Option<&'a Value>,
}

/// One of Anthropic's own top-level answer fields (`container`, `context_management`) as the
/// upstream wrote it, the last when it wrote several. The client needs them back: the
/// container's id to work in the same container next turn, the edits context management made.
fn answer_field<'a>(fields: &'a [NativeField], name: &str) -> Option<&'a Value> {
    fields.iter().rev().find(|f| f.dialect == Dialect::Anthropic && f.name == name).map(|f| &f.value)
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
    /// `citations` only when it has some: an answer without is as it always was.
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "<[Value]>::is_empty")]
        citations: &'a [Value],
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    /// One of Anthropic's own blocks, as the provider wrote it (`type` and all).
    #[serde(untagged)]
    Native(&'a Value),
}

impl<'a> BlockOut<'a> {
    fn text(text: &'a str) -> BlockOut<'a> {
        BlockOut::Text { text, citations: &[] }
    }
}

/// Anthropic's usage: `input_tokens` *excludes* cache reads and writes; ours includes them.
#[derive(Serialize, Clone, Copy)]
struct OutUsage {
    input_tokens: u32,
    output_tokens: u32,
    cache_creation_input_tokens: u32,
    cache_read_input_tokens: u32,
    /// Only when the answer searched the web: an answer without is as it always was.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_tool_use: Option<ServerToolUse>,
    /// Only when fast mode served the answer, which the client pays 6× for.
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<&'static str>,
}

/// What Anthropic's server tools did beyond tokens: each web search is billed.
#[derive(Serialize, Clone, Copy)]
struct ServerToolUse {
    web_search_requests: u32,
}

fn out_usage(u: &Usage) -> OutUsage {
    OutUsage {
        input_tokens: u.uncached_input_tokens(),
        output_tokens: u.output_tokens,
        cache_creation_input_tokens: u.cache_write_tokens,
        cache_read_input_tokens: u.cache_read_tokens,
        server_tool_use: (u.web_search_requests > 0)
            .then_some(ServerToolUse { web_search_requests: u.web_search_requests }),
        speed: (u.tier == ServiceTier::Fast).then_some("fast"),
    }
}

/// The upstream's own reason in Anthropic's words.
fn upstream_stop_reason(f: Option<&FinishReason>) -> &str {
    match f {
        None | Some(FinishReason::Stop) => "end_turn",
        Some(FinishReason::StopSequence(_)) => "stop_sequence",
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Other(s)) => match s.as_str() {
            known @ ("end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "pause_turn" | "refusal") => {
                known
            }
            "length" => "max_tokens",
            "tool_calls" => "tool_use",
            "content_filter" => "refusal",
            _ => "end_turn",
        },
    }
}

/// A tool input as Anthropic sends it: an object. An adapter's unparsed string is parsed if it
/// can be; anything else is wrapped so the client still sees it.
fn tool_input(v: &Value) -> Value {
    match v {
        Value::Object(_) => v.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(o @ Value::Object(_)) => o,
            _ => serde_json::json!({ "_raw": s }),
        },
        other => serde_json::json!({ "_value": other }),
    }
}

fn message_body(resp: &ChatResponse) -> Vec<u8> {
    let id = match &resp.id {
        Some(id) => std::borrow::Cow::Borrowed(id.as_str()),
        None => std::borrow::Cow::Owned(ids::new_id("msg_")),
    };
    let blocks = resp.blocks_for_client();
    let mut content = Vec::with_capacity(1 + blocks.len());
    if resp.thinking.is_empty() {
        // Another provider's reasoning: readable, but nothing Anthropic would take back.
        if let Some(r) = resp.reasoning.as_deref().filter(|r| !r.is_empty()) {
            content.push(BlockOut::Thinking { thinking: r, signature: "" });
        }
    }
    // In the answer's own order, one `text` block per text block: the client sends the turn
    // back as it got it, and Anthropic refuses it in any other order (interleaved thinking).
    // An answer with nothing in it is `content: []`, as Anthropic sends it (a stop sequence
    // or a `max_tokens` reached before any text); blocks never hold empty text.
    for block in blocks {
        content.push(match block {
            TurnBlock::Thinking(ThinkingBlock::Thinking { thinking, signature }) => {
                BlockOut::Thinking { thinking, signature }
            }
            TurnBlock::Thinking(ThinkingBlock::Redacted { data }) => BlockOut::RedactedThinking { data },
            TurnBlock::Text { text, start } => {
                BlockOut::Text { text, citations: resp.citations_at(start + text.len()) }
            }
            TurnBlock::ToolCall { call, .. } => {
                BlockOut::ToolUse { id: &call.id, name: &call.name, input: tool_input(&call.arguments) }
            }
            TurnBlock::Native(native) => BlockOut::Native(&native.block),
        });
    }
    let (reason, sequence) = stop_reason(resp.finish_reason.as_ref(), !resp.tool_calls.is_empty());
    let body = MessageOut {
        id: &id,
        r#type: "message",
        role: "assistant",
        model: &resp.model,
        content,
        stop_reason: Some(reason),
        stop_sequence: sequence,
        usage: out_usage(&resp.usage),
        container: answer_field(&resp.native_fields, "container"),
        context_management: answer_field(&resp.native_fields, "context_management"),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Stream

#[derive(Serialize)]
struct MessageStart<'a> {
    r#type: &'static str,
    message: MessageOut<'a>,
}

#[derive(Serialize)]
struct BlockStart<B> {
    r#type: &'static str,
    index: u32,
    content_block: B,
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    r#type: &'static str,
    index: u32,
    delta: DeltaOut<'a>,
}

/// Variant names are the wire's `type` values (`text_delta`…), hence the shared suffix.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)]
enum DeltaOut<'a> {
    TextDelta { text: &'a str },
    ThinkingDelta { thinking: &'a str },
    SignatureDelta { signature: &'a str },
    InputJsonDelta { partial_json: &'a str },
    CitationsDelta { citation: &'a Value },
}

#[derive(Serialize)]
struct BlockStop {
    r#type: &'static str,
    index: u32,
}

/// Anthropic streams the answer's `container` in `delta`, beside the stop reason, and its
/// `context_management` beside `delta`; neither when the upstream named none.
#[derive(Serialize)]
struct MessageDelta<'a> {
    r#type: &'static str,
    delta: StopDelta<'a>,
    usage: OutUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_management: Option<&'a Value>,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a Value>,
}

#[derive(Serialize)]
struct TypeOnly {
    r#type: &'static str,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    r#type: &'static str,
    error: crate::error::AnthropicError<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// `texted`: text has been written to it, so a citation now is of another block.
    Text {
        block: u32,
        texted: bool,
    },
    Thinking(u32),
    /// `call` is the call's position in [`AnthropicEncoder::calls`].
    Tool {
        call: usize,
        block: u32,
    },
}

/// The full Messages event sequence: `message_start` and a `ping`, then per content block
/// `content_block_start` / `_delta`s / `_stop` (text, with its `citations_delta`s; thinking;
/// tool_use with `input_json_delta`; Anthropic's own blocks as Anthropic streams them), then
/// `message_delta` with the final usage and `message_stop`. A failure after commit is
/// `event: error` and the stream closes without `message_stop`.
pub(crate) struct AnthropicEncoder {
    id: String,
    model: String,
    started: bool,
    usage: Option<Usage>,
    open: Option<Open>,
    next_block: u32,
    /// The tool calls so far. Each call opens a block when it starts, so every call but an
    /// open [`Open::Tool`] has had its block closed.
    calls: ToolCallSlots,
    /// The answer's own top-level fields, held for the final `message_delta`.
    native_fields: Vec<NativeField>,
}

impl AnthropicEncoder {
    pub(crate) fn new(model: String) -> AnthropicEncoder {
        AnthropicEncoder {
            id: ids::new_id("msg_"),
            model,
            started: false,
            usage: None,
            open: None,
            next_block: 0,
            calls: ToolCallSlots::new(),
            native_fields: Vec::new(),
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = out_usage(&self.usage.unwrap_or_default());
        let start = MessageStart {
            r#type: "message_start",
            message: MessageOut {
                id: &self.id,
                r#type: "message",
                role: "assistant",
                model: &self.model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage,
                container: None,
                context_management: None,
            },
        };
        respond::event_frame(out, "message_start", &start);
        respond::event_frame(out, "ping", &TypeOnly { r#type: "ping" });
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            let (Open::Text { block: index, .. } | Open::Thinking(index) | Open::Tool { block: index, .. }) =
                open;
            Self::stop(out, index);
        }
    }

    fn stop(out: &mut Vec<u8>, index: u32) {
        respond::event_frame(out, "content_block_stop", &BlockStop { r#type: "content_block_stop", index });
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: &impl Serialize) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        respond::event_frame(
            out,
            "content_block_start",
            &BlockStart { r#type: "content_block_start", index, content_block: block },
        );
        index
    }

    /// Whether a fragment not of the open call, placed at `slot`, continues a call whose block
    /// is already closed: the call it belongs to, or (should an upstream repeat a call's id at
    /// another index) a closed call that named its id.
    fn was_closed(&self, slot: ToolCallSlot, delta: &ToolCallDelta) -> bool {
        let open = match self.open {
            Some(Open::Tool { call, .. }) => Some(call),
            _ => None,
        };
        let closed_id =
            |p: usize| p != slot.position && Some(p) != open && self.calls.id(p) == delta.id.as_deref();
        !slot.starts || (delta.id.is_some() && (0..self.calls.len()).any(closed_id))
    }

    /// One of Anthropic's own blocks, whole, as Anthropic streams it: a tool call
    /// (`server_tool_use`, `mcp_tool_use`) starts with an empty `input` that one
    /// `input_json_delta` fills, as a `tool_use` does; any other block comes whole in its start.
    fn native(&mut self, out: &mut Vec<u8>, block: &Value) {
        let streams_input =
            matches!(block.get("type").and_then(Value::as_str), Some("server_tool_use" | "mcp_tool_use"));
        let index = match block.as_object().filter(|_| streams_input) {
            Some(fields) => {
                let mut start = fields.clone();
                let input = start.insert("input".to_owned(), Value::Object(serde_json::Map::new()));
                let input = input.map_or_else(|| "{}".to_owned(), |v| v.to_string());
                let index = self.open_block(out, &start);
                Self::delta(out, index, DeltaOut::InputJsonDelta { partial_json: &input });
                index
            }
            None => self.open_block(out, block),
        };
        Self::stop(out, index);
    }

    /// A citation of the text that follows: Anthropic sends a block's citations before its
    /// text, so one after text starts the next text block (opened with `citations: []`, as
    /// Anthropic opens a cited block).
    fn citation(&mut self, out: &mut Vec<u8>, citation: &Value) {
        let index = match self.open {
            Some(Open::Text { block, texted: false }) => block,
            _ => {
                let block =
                    self.open_block(out, &serde_json::json!({"type": "text", "text": "", "citations": []}));
                self.open = Some(Open::Text { block, texted: false });
                block
            }
        };
        Self::delta(out, index, DeltaOut::CitationsDelta { citation });
    }

    fn delta(out: &mut Vec<u8>, index: u32, delta: DeltaOut<'_>) {
        respond::event_frame(
            out,
            "content_block_delta",
            &BlockDelta { r#type: "content_block_delta", index, delta },
        );
    }

    fn error(out: &mut Vec<u8>, api: &ApiError) {
        respond::event_frame(out, "error", &ErrorEvent { r#type: "error", error: api.anthropic_error() });
    }
}

impl Encoder for AnthropicEncoder {
    fn event(&mut self, ev: StreamEvent, out: &mut Vec<u8>) -> bool {
        match ev {
            StreamEvent::NativeField { field } => {
                self.native_fields.push(field);
                false
            }
            // The upstream's text block ended: the next text is a block of its own, as in the
            // JSON answer.
            StreamEvent::TextEnd => {
                if matches!(self.open, Some(Open::Text { .. })) {
                    self.close(out);
                }
                false
            }
            StreamEvent::Native { block } => {
                self.start(out);
                self.native(out, &block.block);
                false
            }
            StreamEvent::Citation { citation } => {
                self.start(out);
                self.citation(out, &citation);
                false
            }
            StreamEvent::Usage { usage } => {
                self.usage = Some(usage);
                false
            }
            StreamEvent::TextDelta { text } => {
                self.start(out);
                let (index, texted) = match self.open {
                    Some(Open::Text { block, texted }) => (block, texted),
                    _ => (self.open_block(out, &BlockOut::text("")), false),
                };
                self.open = Some(Open::Text { block: index, texted: texted || !text.is_empty() });
                Self::delta(out, index, DeltaOut::TextDelta { text: &text });
                false
            }
            StreamEvent::ReasoningDelta { text } => {
                self.start(out);
                let index = match self.open {
                    Some(Open::Thinking(i)) => i,
                    _ => {
                        let i = self.open_block(out, &BlockOut::Thinking { thinking: "", signature: "" });
                        self.open = Some(Open::Thinking(i));
                        i
                    }
                };
                Self::delta(out, index, DeltaOut::ThinkingDelta { thinking: &text });
                false
            }
            StreamEvent::ThinkingSeal { seal } => {
                self.start(out);
                match seal {
                    ThinkingSeal::Signature(signature) => {
                        let index = match self.open {
                            Some(Open::Thinking(i)) => i,
                            // A block whose reasoning was empty still needs its signature.
                            _ => self.open_block(out, &BlockOut::Thinking { thinking: "", signature: "" }),
                        };
                        self.open = Some(Open::Thinking(index));
                        Self::delta(out, index, DeltaOut::SignatureDelta { signature: &signature });
                    }
                    ThinkingSeal::Redacted(data) => {
                        let index = self.open_block(out, &BlockOut::RedactedThinking { data: &data });
                        self.open = Some(Open::Thinking(index));
                    }
                }
                // The block is complete: reasoning that follows is another block.
                self.close(out);
                false
            }
            StreamEvent::ToolCall { delta } => {
                self.start(out);
                let slot = self.calls.place(&delta);
                let index = match self.open {
                    Some(Open::Tool { call, block }) if call == slot.position => block,
                    _ if self.was_closed(slot, &delta) => {
                        // Anthropic's protocol cannot reopen a closed block; say so rather than
                        // hand the client a corrupt tool call.
                        self.close(out);
                        let api = ApiError::new(
                            axum::http::StatusCode::BAD_GATEWAY,
                            "the upstream interleaved fragments of several tool calls, which the Messages \
                             stream format cannot carry; retry without streaming",
                        )
                        .with_code("unsupported_stream_shape");
                        Self::error(out, &api);
                        return true;
                    }
                    _ => {
                        let id = delta.id.clone().unwrap_or_else(|| ids::new_id("toolu_"));
                        let name = delta.name.clone().unwrap_or_default();
                        let block = self.open_block(
                            out,
                            &BlockOut::ToolUse {
                                id: &id,
                                name: &name,
                                input: Value::Object(serde_json::Map::new()),
                            },
                        );
                        self.open = Some(Open::Tool { call: slot.position, block });
                        block
                    }
                };
                if !delta.arguments.is_empty() {
                    Self::delta(out, index, DeltaOut::InputJsonDelta { partial_json: &delta.arguments });
                }
                false
            }
            StreamEvent::Done { end } => {
                if let Some(u) = self.usage.filter(|_| end.usage.input_tokens == 0) {
                    // The final figure lacks the prompt side; keep what message_start reported.
                    let web_search_requests = end.usage.web_search_requests.max(u.web_search_requests);
                    self.usage =
                        Some(Usage { output_tokens: end.usage.output_tokens, web_search_requests, ..u });
                } else {
                    self.usage = Some(end.usage);
                }
                self.start(out);
                self.close(out);
                let tool_use = !self.calls.is_empty();
                let usage = self.usage.map(|u| out_usage(&u)).unwrap_or_else(|| out_usage(&end.usage));
                let (stop_reason, stop_sequence) = stop_reason(end.finish_reason.as_ref(), tool_use);
                let delta = MessageDelta {
                    r#type: "message_delta",
                    delta: StopDelta {
                        stop_reason,
                        stop_sequence,
                        container: answer_field(&self.native_fields, "container"),
                    },
                    usage,
                    context_management: answer_field(&self.native_fields, "context_management"),
                };
                respond::event_frame(out, "message_delta", &delta);
                respond::event_frame(out, "message_stop", &TypeOnly { r#type: "message_stop" });
                true
            }
            StreamEvent::Error { error } => {
                Self::error(out, &ApiError::from_backend(&error));
                true
            }
        }
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) {
        respond::event_frame(out, "ping", &TypeOnly { r#type: "ping" });
    }
}

#[cfg(test)]
mod tests {
    use claudette_core::{BackendError, ErrorKind, Image, StreamEnd};

    use super::*;

    fn parse(v: Value) -> Result<(ChatRequest, Option<String>), ApiError> {
        serde_json::from_value::<MessagesRequest>(v).unwrap().into_chat()
    }

    fn frames(out: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (ev, data) = f.split_once('\n').unwrap();
                (
                    ev.strip_prefix("event: ").unwrap().to_owned(),
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn requests_map_to_the_neutral_shape() {
        let (r, model) = parse(serde_json::json!({
            "model": "claude-fake", "max_tokens": 64,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "add 2 and 2"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 2}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "4"}]},
                    {"type": "text", "text": "thanks"}]}
            ],
            "stop_sequences": ["END"], "temperature": 0.5,
            "tools": [{"name": "add", "description": "adds", "input_schema": {"type": "object"}}]
        }))
        .unwrap();
        assert_eq!(model.as_deref(), Some("claude-fake"));
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, vec![Role::System, Role::User, Role::Assistant, Role::Tool, Role::User]);
        assert_eq!(r.messages[0].content, "be brief");
        assert_eq!(r.messages[2].content, "calling");
        assert_eq!(r.messages[2].tool_calls[0].arguments, serde_json::json!({"a": 2, "b": 2}));
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(r.messages[3].content, "4");
        assert_eq!(r.max_tokens, Some(64));
        assert_eq!(r.stop, vec!["END".to_owned()]);
        assert_eq!(r.tools[0].parameters, serde_json::json!({"type": "object"}));
    }

    #[test]
    fn requests_we_cannot_honour_are_refused() {
        let no_max = parse(serde_json::json!({"messages": [{"role": "user", "content": "x"}]})).unwrap_err();
        assert_eq!(no_max.param.as_deref(), Some("max_tokens"));
        assert!(parse(serde_json::json!({"max_tokens": 5})).is_err());
        let search_result = serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "search_result", "title": "t", "content": []}]}]});
        let e = parse(search_result).unwrap_err();
        assert!(e.message.contains("search_result"), "{}", e.message);
        assert_eq!(e.param.as_deref(), Some("messages.0.content.0"));
    }

    /// A body's error as the handler words it (the field at fault located when serde fails).
    fn refused(body: Value) -> ApiError {
        match parse_body(body.to_string().as_bytes()).and_then(MessagesRequest::into_chat) {
            Ok(_) => panic!("accepted: {body}"),
            Err(e) => e,
        }
    }

    fn web_search() -> Value {
        serde_json::json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 8})
    }

    fn function_tool(name: &str) -> Value {
        serde_json::json!({"name": name, "input_schema": {"type": "object"}})
    }

    /// Claude Code's WebSearch turn as it comes back: text, the search and its (encrypted)
    /// results, then cited text between uncited text.
    fn searched_turn() -> Value {
        serde_json::json!([
            {"type": "text", "text": "Searching."},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "rust 2024"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                {"type": "web_search_result", "url": "https://r.example", "title": "R", "encrypted_content": "E1"}]},
            {"type": "text", "text": "Rust 2024 ", "citations": [
                {"type": "web_search_result_location", "url": "https://r.example", "cited_text": "c", "encrypted_index": "I1"}]},
            {"type": "text", "text": "shipped"},
            {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_2",
                "content": {"type": "code_execution_tool_result_error", "error_code": "unavailable"}}
        ])
    }

    #[test]
    fn anthropics_own_tools_are_kept_whole_in_their_place_among_the_function_tools() {
        let bash = serde_json::json!({"type": "bash_20250124", "name": "bash"});
        let (r, _) =
            parse(serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [function_tool("Read"), web_search(), function_tool("Edit"), bash,
                      {"type": "custom", "name": "Glob", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "web_search"}}))
            .unwrap();
        let names: Vec<&str> = r.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Read", "Edit", "Glob"]);
        let native: Vec<(u32, &Value)> = r.native_tools.iter().map(|t| (t.at, &t.spec)).collect();
        assert_eq!(
            native,
            [(1, &web_search()), (2, &serde_json::json!({"type": "bash_20250124", "name": "bash"}))]
        );
        assert!(r.native_tools.iter().all(|t| t.dialect == Dialect::Anthropic));
        assert_eq!(r.tool_choice, ToolChoice::Tool("web_search".into()));
        // `any` with Anthropic's tools alone may pick one of them.
        let (r, _) =
            parse(serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [web_search()], "tool_choice": {"type": "any"}}))
            .unwrap();
        assert_eq!((r.tools.len(), r.native_tools.len(), r.tool_choice), (0, 1, ToolChoice::Required));
    }

    #[test]
    fn an_assistant_turns_own_blocks_and_citations_are_kept_in_their_place() {
        let turn = searched_turn();
        let (r, _) = parse(serde_json::json!({"max_tokens": 5, "tools": [web_search()], "messages": [
            {"role": "user", "content": "what is new in rust?"},
            {"role": "assistant", "content": turn.clone()},
            {"role": "user", "content": "thanks"}]}))
        .unwrap();
        let m = &r.messages[1];
        assert_eq!(m.content, "Searching.Rust 2024 shipped");
        let native: Vec<&Value> = m.native.iter().map(|n| &n.block).collect();
        assert_eq!(native, [&turn[1], &turn[2], &turn[5]]);
        assert_eq!(
            kinds(&m.blocks().unwrap()),
            [
                "text Searching.",
                "native server_tool_use",
                "native web_search_tool_result",
                "text Rust 2024 ",
                "text shipped",
                "native code_execution_tool_result"
            ]
        );
        assert_eq!(
            m.citations,
            [TextCitations { end: 20, citations: turn[3]["citations"].as_array().unwrap().clone() }]
        );
        assert_eq!(r.native_dialect().unwrap(), Some(Dialect::Anthropic));
    }

    #[test]
    fn anthropics_own_tools_and_blocks_that_cannot_be_carried_are_named() {
        let with_tools = |tools: Value| {
            refused(
                serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": tools}),
            )
        };
        let named = |e: ApiError| {
            assert!(e.message.starts_with(e.param.as_deref().unwrap()), "{}", e.message);
            e.param.unwrap()
        };
        let unnamed = serde_json::json!({"type": "web_search_20250305"});
        let e = with_tools(serde_json::json!([function_tool("Read"), unnamed]));
        assert_eq!(e.message, "tools.1.name: Field required");
        for name in [serde_json::json!(null), serde_json::json!(5), serde_json::json!("")] {
            let tool = serde_json::json!({"type": "web_search_20250305", "name": name});
            assert_eq!(named(with_tools(serde_json::json!([tool]))), "tools.0.name");
        }
        let mut marked = web_search();
        marked["cache_control"] = serde_json::json!({"type": "persistent"});
        assert_eq!(named(with_tools(serde_json::json!([marked]))), "tools.0.cache_control.type");
        // A `type` that is no string is the tool's fault, as before.
        let e = with_tools(serde_json::json!([{"type": 5, "name": "f"}]));
        assert_eq!(e.param.as_deref(), Some("tools.0"), "{}", e.message);
        // tool_choice still names a tool the request has.
        let e = refused(serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [web_search()], "tool_choice": {"type": "tool", "name": "web_fetch"}}));
        assert_eq!(e.param.as_deref(), Some("tool_choice"), "{}", e.message);

        // Their blocks belong in an assistant turn only; unknown types are refused anywhere.
        let result = searched_turn()[2].clone();
        let in_turn = |role: &str, block: Value| {
            refused(serde_json::json!({"max_tokens": 5, "messages": [
                {"role": "user", "content": "x"}, {"role": role, "content": [block]}]}))
        };
        let e = in_turn("user", result.clone());
        assert_eq!(e.param.as_deref(), Some("messages.1.content.0"));
        assert!(e.message.contains("`web_search_tool_result` are not supported"), "{}", e.message);
        let e = in_turn("assistant", serde_json::json!({"type": "mystery_block", "data": "x"}));
        assert_eq!(e.param.as_deref(), Some("messages.1.content.0"));
        assert!(e.message.contains("`mystery_block` are not supported"), "{}", e.message);
        let e = refused(serde_json::json!({"max_tokens": 5, "system": [result.clone()],
            "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("system.0"));
        let e = refused(tool_results(vec![serde_json::json!(
            {"type": "tool_result", "tool_use_id": "t1", "content": [result.clone()]})]));
        assert_eq!(e.param.as_deref(), Some("messages.2.content.0.content.0"));
        let e =
            in_turn("assistant", serde_json::json!({"type": "text", "text": "x", "citations": {"url": "u"}}));
        assert_eq!(named(e), "messages.1.content.0.citations");
        // Their marks count against Anthropic's limit like any other.
        let mut marked = result;
        marked["cache_control"] = eph();
        let mut marked_tool = web_search();
        marked_tool["cache_control"] = eph();
        let e = refused(serde_json::json!({"max_tokens": 5, "tools": [marked_tool],
            "system": [{"type": "text", "text": "s", "cache_control": eph()}],
            "messages": [{"role": "user", "content": "x"},
                {"role": "assistant", "content": [marked.clone(), marked.clone(), marked]}]}));
        assert_eq!(e.param.as_deref(), Some("messages.1.content.2.cache_control"), "{}", e.message);
    }

    #[test]
    fn image_blocks_are_images_where_they_stood() {
        let (r, _) = parse(serde_json::json!({"max_tokens": 5, "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "first"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "done"},
                {"type": "image", "source": {"type": "url", "url": "http://example.com/only.png"}}]}]}))
        .unwrap();
        let first = &r.messages[0];
        assert_eq!(first.content, "firstsecond");
        assert_eq!(
            first.images,
            [
                Image {
                    at: 5,
                    source: ImageSource::Base64 { media_type: "image/jpeg".into(), data: "/9j/4AAQ".into() }
                },
                Image { at: 11, source: ImageSource::Url { url: "https://example.com/cat.webp".into() } },
            ]
        );
        assert_eq!(first.cache, [CacheBreakpoint { at: CacheAt::Text(11), ttl: CacheTtl::FiveMinutes }]);
        // A turn of tool results and an image: the image is a user message of its own.
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::User]);
        let last = &r.messages[3];
        assert_eq!(
            (last.content.as_str(), last.images[0].at, &last.images[0].source),
            ("", 0, &ImageSource::Url { url: "http://example.com/only.png".into() })
        );
    }

    #[test]
    fn images_that_cannot_be_carried_are_named() {
        let user = |block: Value| {
            let e = parse(serde_json::json!({"max_tokens": 5, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "see"}, block]}]}))
            .unwrap_err();
            assert!(e.message.starts_with(e.param.as_deref().unwrap()), "{}", e.message);
            (e.param.unwrap(), e.message)
        };
        let b64 = |media_type: &str, data: &str| serde_json::json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
        let at = "messages.0.content.1.source";
        let (param, message) = user(b64("image/tiff", "AAAA"));
        assert_eq!(param, format!("{at}.media_type"));
        assert!(message.contains("image/tiff"), "{message}");
        assert_eq!(user(b64("image/png", "")).0, format!("{at}.data"));
        assert_eq!(user(b64("image/png", "not base64!")).0, format!("{at}.data"));
        let source = |s: Value| serde_json::json!({"type": "image", "source": s});
        assert_eq!(
            user(source(serde_json::json!({"type": "url", "url": "file:///etc/passwd"}))).0,
            format!("{at}.url")
        );
        assert_eq!(
            user(source(serde_json::json!({"type": "url", "url": "data:image/png;base64,AAAA"}))).0,
            format!("{at}.url")
        );
        assert_eq!(user(source(serde_json::json!({"type": "url"}))).0, format!("{at}.url"));
        assert_eq!(
            user(source(serde_json::json!({"type": "base64", "data": "AAAA"}))).0,
            format!("{at}.media_type")
        );
        assert_eq!(
            user(source(serde_json::json!({"type": "file", "file_id": "file_1"}))).0,
            format!("{at}.type")
        );
        assert_eq!(user(source(serde_json::json!({"type": "text", "data": "x"}))).0, format!("{at}.type"));
        assert_eq!(user(serde_json::json!({"type": "image"})).0, at);
        let mut cached = b64("image/png", "AAAA");
        cached["cache_control"] = serde_json::json!({"type": "persistent"});
        assert_eq!(user(cached).0, "messages.0.content.1.cache_control.type");
        // In `system` or an assistant turn.
        let image = b64("image/png", "AAAA");
        let elsewhere = [
            (
                serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [image.clone()]}]}),
                "messages.1.content.0",
            ),
            (
                serde_json::json!({"max_tokens": 5, "system": [image], "messages": [{"role": "user", "content": "hi"}]}),
                "system.0",
            ),
        ];
        for (body, param) in elsewhere {
            let e = parse(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param));
            assert!(e.message.contains("user message"), "{}", e.message);
        }
    }

    fn eph() -> Value {
        serde_json::json!({"type": "ephemeral"})
    }

    fn png(cache_control: Option<Value>) -> Value {
        let mut b = serde_json::json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}});
        if let Some(c) = cache_control {
            b["cache_control"] = c;
        }
        b
    }

    /// The source `png` sends.
    fn png_source() -> ImageSource {
        ImageSource::Base64 { media_type: "image/png".into(), data: "iVBORw0K".into() }
    }

    fn url_image(url: &str) -> Value {
        serde_json::json!({"type": "image", "source": {"type": "url", "url": url}})
    }

    /// A user turn of tool results answering `t1`, `t2`, … in order, after the call turn.
    fn tool_results(results: Vec<Value>) -> Value {
        let calls: Vec<Value> = (1..=results.len())
            .map(|k| serde_json::json!({"type": "tool_use", "id": format!("t{k}"), "name": "read", "input": {}}))
            .collect();
        serde_json::json!({"max_tokens": 5, "messages": [
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": calls},
            {"role": "user", "content": results}]})
    }

    fn mark(at: CacheAt) -> CacheBreakpoint {
        CacheBreakpoint { at, ttl: CacheTtl::FiveMinutes }
    }

    #[test]
    fn tool_result_images_stand_among_its_text_with_their_cache_marks() {
        let result = |id: &str, content: Value| serde_json::json!({"type": "tool_result", "tool_use_id": id, "content": content});
        let (r, _) = parse(tool_results(vec![
            // Claude Code's Read of an image file, marked as the last block of the last message.
            result("t1", serde_json::json!([png(Some(eph()))])),
            result(
                "t2",
                serde_json::json!([
                    {"type": "text", "text": "a"},
                    png(None),
                    {"type": "text", "text": "b", "cache_control": eph()},
                    url_image("https://example.com/c.png")]),
            ),
        ]))
        .unwrap();
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Tool]);
        let read = &r.messages[2];
        assert_eq!((read.content.as_str(), read.tool_call_id.as_deref()), ("", Some("t1")));
        assert_eq!(read.images, [Image { at: 0, source: png_source() }]);
        assert_eq!(read.cache, [mark(CacheAt::Image(0))]);
        // Text blocks joined by a newline, as before; each image where it stood among them.
        let mixed = &r.messages[3];
        assert_eq!(mixed.content, "a\nb");
        assert_eq!(
            mixed.images,
            [
                Image { at: 1, source: png_source() },
                Image { at: 3, source: ImageSource::Url { url: "https://example.com/c.png".into() } }
            ]
        );
        assert_eq!(mixed.cache, [mark(CacheAt::Text(3))]);
        r.checked_media().unwrap();
    }

    #[test]
    fn a_marked_tool_result_caches_through_its_last_block() {
        let marked = |content: Value| {
            let (r, _) = parse(tool_results(vec![serde_json::json!(
                {"type": "tool_result", "tool_use_id": "t1", "content": content, "cache_control": eph()})]))
            .unwrap();
            r.messages[2].cache.clone()
        };
        assert_eq!(marked(serde_json::json!("text")), [mark(CacheAt::Text(4))]);
        assert_eq!(marked(serde_json::json!([{"type": "text", "text": "text"}])), [mark(CacheAt::Text(4))]);
        // Ending in an image, the mark is after the image, not before it.
        assert_eq!(marked(serde_json::json!([png(None)])), [mark(CacheAt::Image(0))]);
        assert_eq!(
            marked(serde_json::json!([png(None), {"type": "text", "text": "x"}, png(None)])),
            [mark(CacheAt::Image(1))]
        );
        assert_eq!(
            marked(serde_json::json!([png(None), {"type": "text", "text": "x"}])),
            [mark(CacheAt::Text(1))]
        );
        // A marked image in a marked result: both marks, as the client sent them.
        assert_eq!(
            marked(serde_json::json!([png(Some(eph()))])),
            [mark(CacheAt::Image(0)), mark(CacheAt::Image(0))]
        );
    }

    #[test]
    fn a_marked_user_image_is_a_breakpoint_after_it() {
        let (r, _) = parse(serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "see"},
            png(None),
            {"type": "text", "text": "and", "cache_control": eph()},
            png(Some(serde_json::json!({"type": "ephemeral", "ttl": "1h"})))]}]}))
        .unwrap();
        let m = &r.messages[0];
        assert_eq!(m.images.iter().map(|i| i.at).collect::<Vec<_>>(), [3, 6]);
        assert_eq!(
            m.cache,
            [mark(CacheAt::Text(6)), CacheBreakpoint { at: CacheAt::Image(1), ttl: CacheTtl::OneHour }]
        );
    }

    #[test]
    fn image_marks_count_against_the_limit_and_tool_result_images_are_checked() {
        let marked_text = serde_json::json!({"type": "text", "text": "x", "cache_control": eph()});
        let body = serde_json::json!({"max_tokens": 5,
            "system": [marked_text.clone(), marked_text.clone()],
            "messages": [
                {"role": "user", "content": [png(Some(eph()))]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                    png(Some(eph())), png(Some(eph()))]}]}]});
        let e = parse(body).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages.2.content.0.content.1.cache_control"));
        assert!(e.message.contains("A maximum of 4 blocks with cache_control"), "{}", e.message);

        let refused = |content: Value| {
            parse(tool_results(vec![serde_json::json!(
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "x"}, content]})]))
            .unwrap_err()
            .param
            .unwrap()
        };
        let at = "messages.2.content.0.content.1";
        let tiff = serde_json::json!({"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "AAAA"}});
        assert_eq!(refused(tiff), format!("{at}.source.media_type"));
        assert_eq!(refused(url_image("file:///etc/passwd")), format!("{at}.source.url"));
        let mut bad_mark = png(None);
        bad_mark["cache_control"] = serde_json::json!({"type": "ephemeral", "ttl": "2d"});
        assert_eq!(refused(bad_mark), format!("{at}.cache_control.ttl"));
        let search_result = serde_json::json!({"type": "search_result", "title": "t", "content": []});
        assert_eq!(refused(search_result), at);
    }

    const PDF: &str = "JVBERi0xLjcK";

    fn pdf_block(cache_control: Option<Value>) -> Value {
        let mut b = serde_json::json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}});
        if let Some(c) = cache_control {
            b["cache_control"] = c;
        }
        b
    }

    fn pdf(at: u32, title: Option<&str>) -> Document {
        Document {
            citations: false,
            at,
            source: DocumentSource::Base64 { data: PDF.into() },
            title: title.map(Into::into),
        }
    }

    #[test]
    fn document_blocks_stand_among_text_and_images_with_their_marks() {
        let mut titled = pdf_block(None);
        titled["title"] = "spec.pdf".into();
        titled["citations"] = serde_json::json!({"enabled": false});
        let (r, _) = parse(serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "read "},
            titled,
            png(None),
            {"type": "document", "source": {"type": "url", "url": "https://example.com/r.pdf"}, "cache_control": eph()},
            {"type": "text", "text": "and "},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                "title": "notes.txt", "cache_control": eph()}]}]}))
        .unwrap();
        let m = &r.messages[0];
        // A plain-text document is text where it stood.
        assert_eq!(m.content, "read and notes");
        assert_eq!(
            m.documents,
            [
                pdf(5, Some("spec.pdf")),
                Document {
                    citations: false,
                    at: 5,
                    source: DocumentSource::Url { url: "https://example.com/r.pdf".into() },
                    title: None
                },
            ]
        );
        assert_eq!(m.images, [Image { at: 5, source: png_source() }]);
        assert_eq!(m.cache, [mark(CacheAt::Document(1)), mark(CacheAt::Text(14))]);
        r.checked_media().unwrap();
    }

    #[test]
    fn claude_codes_pdf_read_is_a_marked_document_in_the_tool_result() {
        let result = |id: &str, content: Value| serde_json::json!({"type": "tool_result", "tool_use_id": id, "content": content});
        let mut marked_result = result(
            "t2",
            serde_json::json!([{"type": "text", "text": "pages 1-2"}, png(None), pdf_block(None)]),
        );
        marked_result["cache_control"] = eph();
        let (r, _) = parse(tool_results(vec![
            // Claude Code's Read of a PDF, marked as the last block of the last message.
            result("t1", serde_json::json!([pdf_block(Some(eph()))])),
            marked_result,
            result(
                "t3",
                serde_json::json!([
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a"}},
                    {"type": "text", "text": "b"}]),
            ),
        ]))
        .unwrap();
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Tool, Role::Tool]);
        let read = &r.messages[2];
        assert_eq!((read.content.as_str(), read.tool_call_id.as_deref()), ("", Some("t1")));
        assert_eq!(read.documents, [pdf(0, None)]);
        assert_eq!(read.cache, [mark(CacheAt::Document(0))]);
        // A mark on the whole result caches through its last block, the document.
        let pages = &r.messages[3];
        assert_eq!((pages.images.len(), pages.documents.clone()), (1, vec![pdf(9, None)]));
        assert_eq!(pages.cache, [mark(CacheAt::Document(0))]);
        // Text documents join the result's text as its text blocks do.
        assert_eq!(r.messages[4].content, "a\nb");
        assert!(r.messages[4].documents.is_empty());
        r.checked_media().unwrap();
    }

    #[test]
    fn documents_that_cannot_be_carried_are_named() {
        let user = |block: Value| {
            let e = parse(serde_json::json!({"max_tokens": 5, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "see"}, block]}]}))
            .unwrap_err();
            assert!(e.message.starts_with(e.param.as_deref().unwrap()), "{}", e.message);
            (e.param.unwrap(), e.message)
        };
        let document = |source: Value| serde_json::json!({"type": "document", "source": source});
        let at = "messages.0.content.1";
        let (param, message) =
            user(document(serde_json::json!({"type": "base64", "media_type": "text/plain", "data": "aGk="})));
        assert_eq!(param, format!("{at}.source.media_type"));
        assert!(message.contains("only PDFs (`application/pdf`) are taken"), "{message}");
        let cases = [
            (
                serde_json::json!({"type": "base64", "media_type": "application/pdf", "data": "%PDF-1.7"}),
                ".source.data",
            ),
            (serde_json::json!({"type": "base64", "data": PDF}), ".source.media_type"),
            (serde_json::json!({"type": "base64", "media_type": "application/pdf"}), ".source.data"),
            (serde_json::json!({"type": "url", "url": "file:///tmp/a.pdf"}), ".source.url"),
            (serde_json::json!({"type": "url"}), ".source.url"),
            (
                serde_json::json!({"type": "text", "media_type": "text/html", "data": "<p>"}),
                ".source.media_type",
            ),
            (serde_json::json!({"type": "text", "media_type": "text/plain"}), ".source.data"),
            (serde_json::json!({"type": "file", "file_id": "file_1"}), ".source.type"),
            (
                serde_json::json!({"type": "content", "content": [{"type": "text", "text": "x"}]}),
                ".source.type",
            ),
            (serde_json::json!({"type": "pdf"}), ".source.type"),
        ];
        for (source, field) in cases {
            assert_eq!(user(document(source.clone())).0, format!("{at}{field}"), "{source}");
        }
        assert_eq!(user(serde_json::json!({"type": "document"})).0, format!("{at}.source"));
        // Citations: a PDF may ask for them; a text document (read as text) may not, and the
        // flag must be a boolean.
        let mut cited = pdf_block(None);
        cited["citations"] = serde_json::json!({"enabled": true});
        let (r, _) = parse(serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what does it say?"}, cited.clone()]}]}))
        .unwrap();
        assert!(r.messages[0].documents[0].citations);
        cited["citations"] = serde_json::json!({"enabled": "yes"});
        assert_eq!(user(cited).0, format!("{at}.citations.enabled"));
        let text_cited = serde_json::json!({"type": "document", "citations": {"enabled": true},
            "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."}});
        let (param, message) = user(text_cited);
        assert_eq!(param, format!("{at}.citations"));
        assert!(message.contains("PDF documents"), "{message}");
        let mut with_context = pdf_block(None);
        with_context["context"] = "from the 2024 audit".into();
        assert_eq!(user(with_context).0, format!("{at}.context"));
        let mut bad_mark = pdf_block(None);
        bad_mark["cache_control"] = serde_json::json!({"type": "ephemeral", "ttl": "2d"});
        assert_eq!(user(bad_mark).0, format!("{at}.cache_control.ttl"));
        // In `system` or an assistant turn.
        let elsewhere = [
            (
                serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [pdf_block(None)]}]}),
                "messages.1.content.0",
            ),
            (
                serde_json::json!({"max_tokens": 5, "system": [pdf_block(None)], "messages": [{"role": "user", "content": "hi"}]}),
                "system.0",
            ),
        ];
        for (body, param) in elsewhere {
            let e = parse(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param));
            assert!(e.message.contains("document blocks are accepted in a user message"), "{}", e.message);
        }
        // Inside a tool result, named by their place there; marks count against the limit.
        let refused = |content: Value| {
            parse(tool_results(vec![serde_json::json!(
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "x"}, content]})]))
            .unwrap_err()
            .param
            .unwrap()
        };
        let in_result = "messages.2.content.0.content.1";
        let word = document(
            serde_json::json!({"type": "base64", "media_type": "application/msword", "data": "AAAA"}),
        );
        assert_eq!(refused(word), format!("{in_result}.source.media_type"));
        let body = serde_json::json!({"max_tokens": 5,
            "system": [{"type": "text", "text": "x", "cache_control": eph()}],
            "messages": [
                {"role": "user", "content": [pdf_block(Some(eph())), pdf_block(Some(eph()))]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                    pdf_block(Some(eph())), pdf_block(Some(eph()))]}]}]});
        let e = parse(body).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages.2.content.0.content.1.cache_control"));
    }

    #[test]
    fn usage_excludes_cache_tokens() {
        let u = Usage { cache_read_tokens: 60, cache_write_tokens: 10, ..Usage::reported(100, 5) };
        let out = out_usage(&u);
        assert_eq!(
            (out.input_tokens, out.cache_read_input_tokens, out.cache_creation_input_tokens),
            (30, 60, 10)
        );
    }

    #[test]
    fn stream_has_the_full_event_sequence() {
        let mut enc = AnthropicEncoder::new("claude-fake".into());
        let mut out = Vec::new();
        enc.event(StreamEvent::Usage { usage: Usage::reported(12, 1) }, &mut out);
        assert!(out.is_empty(), "message_start waits for content");
        enc.event(StreamEvent::ReasoningDelta { text: "think".into() }, &mut out);
        enc.event(StreamEvent::text("Hel"), &mut out);
        enc.event(StreamEvent::text("lo"), &mut out);
        let call = |id: Option<&str>, args: &str| StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index: 0,
                id: id.map(Into::into),
                name: id.map(|_| "add".into()),
                arguments: args.into(),
            },
        };
        enc.event(call(Some("c1"), ""), &mut out);
        enc.event(call(None, "{\"a\":"), &mut out);
        enc.event(call(None, "1}"), &mut out);
        let end = StreamEnd {
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Usage::reported(12, 7),
            cost: 0.0,
        };
        assert!(enc.event(StreamEvent::Done { end }, &mut out));
        let f = frames(&out);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(f[0].1["message"]["usage"]["input_tokens"], 12);
        assert_eq!(f[2].1["content_block"]["type"], "thinking");
        assert_eq!(f[3].1["delta"]["type"], "thinking_delta");
        assert_eq!(f[6].1["delta"]["text"], "Hel");
        assert_eq!(f[9].1["content_block"]["type"], "tool_use");
        assert_eq!(f[9].1["content_block"]["id"], "c1");
        assert_eq!(f[9].1["index"], 2);
        assert_eq!(f[10].1["delta"]["type"], "input_json_delta");
        assert_eq!(f[13].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(f[13].1["usage"]["output_tokens"], 7);
    }

    fn signed(thinking: &str) -> ThinkingBlock {
        ThinkingBlock::Thinking { thinking: thinking.into(), signature: format!("sig-{thinking}") }
    }

    fn add(id: &str) -> ToolCall {
        ToolCall { id: id.into(), name: "add".into(), arguments: serde_json::json!({"a": 1}) }
    }

    /// The blocks of an assistant message or answer as `type` and what tells them apart.
    fn kinds(blocks: &[TurnBlock<'_>]) -> Vec<String> {
        blocks
            .iter()
            .map(|b| match b {
                TurnBlock::Thinking(ThinkingBlock::Thinking { thinking, .. }) => {
                    format!("thinking {thinking}")
                }
                TurnBlock::Thinking(ThinkingBlock::Redacted { data }) => format!("redacted {data}"),
                TurnBlock::Text { text, .. } => format!("text {text}"),
                TurnBlock::ToolCall { call, .. } => format!("tool_use {}", call.id),
                TurnBlock::Native(n) => format!("native {}", n.kind()),
            })
            .collect()
    }

    /// Interleaved thinking: an assistant turn keeps the order of its blocks, each text block
    /// (joined as they came) ending where it did, and its cache marks where they were; the
    /// usual order is kept as none.
    #[test]
    fn an_assistant_turns_blocks_keep_their_order() {
        let turn = |content: Value| {
            let (r, _) = parse(serde_json::json!({"max_tokens": 64, "messages": [
                {"role": "user", "content": "add"},
                {"role": "assistant", "content": content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "2"},
                                             {"type": "tool_result", "tool_use_id": "t2", "content": "3"}]}
            ]}))
            .unwrap();
            r.messages[1].clone()
        };
        let m = turn(serde_json::json!([
            {"type": "thinking", "thinking": "first", "signature": "s1"},
            {"type": "tool_use", "id": "t1", "name": "add", "input": {}},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "héllo", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": " world"},
            {"type": "thinking", "thinking": "then", "signature": "s2"},
            {"type": "tool_use", "id": "t2", "name": "add", "input": {}}
        ]));
        assert_eq!(m.content, "héllo world");
        assert_eq!(
            kinds(&m.blocks().unwrap()),
            [
                "thinking first",
                "tool_use t1",
                "redacted opaque",
                "text héllo",
                "text  world",
                "thinking then",
                "tool_use t2"
            ]
        );
        assert_eq!(m.cache, [CacheBreakpoint { at: CacheAt::Text(6), ttl: CacheTtl::FiveMinutes }]);

        let usual = turn(serde_json::json!([
            {"type": "thinking", "thinking": "first", "signature": "s1"},
            {"type": "text", "text": ""},
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "t1", "name": "add", "input": {}},
            {"type": "tool_use", "id": "t2", "name": "add", "input": {}}
        ]));
        assert!(usual.order.is_empty(), "{:?}", usual.order);
        assert_eq!(
            kinds(&usual.blocks().unwrap()),
            ["thinking first", "text calling", "tool_use t1", "tool_use t2"]
        );
    }

    /// The answer's `content` follows its blocks, one `text` block per text block; an order
    /// that does not match the answer (an adapter's fault) gives the usual order, not nothing.
    #[test]
    fn an_answers_content_blocks_keep_their_order() {
        use claudette_core::BlockKind::{Text, Thinking as Th, ToolCall as Tc};
        let answer = |order| ChatResponse {
            thinking: vec![signed("a"), ThinkingBlock::Redacted { data: "r".into() }],
            content: "Hi there".into(),
            tool_calls: vec![add("c1"), add("c2")],
            order,
            finish_reason: Some(FinishReason::ToolCalls),
            ..ChatResponse::empty("b", "claude")
        };
        let content = |order| {
            let body: Value = serde_json::from_slice(&message_body(&answer(order))).unwrap();
            assert_eq!(body["stop_reason"], "tool_use", "{body}");
            body["content"].clone()
        };
        let thinking_a = serde_json::json!({"type": "thinking", "thinking": "a", "signature": "sig-a"});
        let redacted = serde_json::json!({"type": "redacted_thinking", "data": "r"});
        let call =
            |id: &str| serde_json::json!({"type": "tool_use", "id": id, "name": "add", "input": {"a": 1}});
        let text = |t: &str| serde_json::json!({"type": "text", "text": t});
        assert_eq!(
            content(vec![Th, Tc, Th, Text(3), Text(8), Tc]),
            serde_json::json!([thinking_a, call("c1"), redacted, text("Hi "), text("there"), call("c2")])
        );
        let usual = serde_json::json!([thinking_a, redacted, text("Hi there"), call("c1"), call("c2")]);
        assert_eq!(content(vec![]), usual);
        assert_eq!(content(vec![Th, Tc, Text(8)]), usual, "an order missing blocks");
    }

    /// The stream writes blocks as their events come, so an interleaved answer's blocks keep
    /// their order and each gets the next index.
    #[test]
    fn an_interleaved_stream_keeps_its_blocks_order_and_indexes() {
        let mut enc = AnthropicEncoder::new("claude".into());
        let mut out = Vec::new();
        let call = |index: u32, id: &str| StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index,
                id: Some(id.into()),
                name: Some("add".into()),
                arguments: "{\"a\":1}".into(),
            },
        };
        let seal = |s: &str| StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature(s.into()) };
        for ev in [
            StreamEvent::ReasoningDelta { text: "first".into() },
            seal("s1"),
            call(1, "c1"),
            StreamEvent::ReasoningDelta { text: "then".into() },
            seal("s2"),
            StreamEvent::text("Hi"),
            call(4, "c2"),
        ] {
            assert!(!enc.event(ev, &mut out));
        }
        let end =
            StreamEnd { finish_reason: Some(FinishReason::ToolCalls), usage: Usage::default(), cost: 0.0 };
        assert!(enc.event(StreamEvent::Done { end }, &mut out));
        let f = frames(&out);
        let starts: Vec<(u64, String)> = f
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| {
                (d["index"].as_u64().unwrap(), d["content_block"]["type"].as_str().unwrap().to_owned())
            })
            .collect();
        let expected = [(0, "thinking"), (1, "tool_use"), (2, "thinking"), (3, "text"), (4, "tool_use")];
        assert_eq!(starts, expected.map(|(i, t)| (i, t.to_owned())));
        assert_blocks_nest(&f);
        let signatures: Vec<&Value> = f
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "signature_delta")
            .map(|(_, d)| &d["index"])
            .collect();
        assert_eq!(signatures, [0, 2]);
        let last = &f[f.len() - 2].1;
        assert_eq!(last["delta"]["stop_reason"], "tool_use", "{last}");
    }

    /// Each block's deltas and stop carry its index, each index is the next, and a block stops
    /// before the next starts.
    fn assert_blocks_nest(f: &[(String, Value)]) {
        let (mut open, mut next) = (None, 0);
        for (name, d) in f {
            match name.as_str() {
                "content_block_start" => {
                    assert!(open.is_none(), "{d} with a block open");
                    assert_eq!(d["index"], next, "{d}");
                    next += 1;
                    open = Some(d["index"].clone());
                }
                "content_block_delta" => assert_eq!(Some(&d["index"]), open.as_ref(), "{d}"),
                "content_block_stop" => assert_eq!(Some(d["index"].clone()), open.take(), "{d}"),
                _ => assert!(open.is_none(), "{name} with a block open"),
            }
        }
    }

    fn search_call() -> Value {
        serde_json::json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
            "input": {"query": "rust 2024"}})
    }

    fn search_results() -> Value {
        serde_json::json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
            "content": [{"type": "web_search_result", "url": "https://r.example", "encrypted_content": "E1"}]})
    }

    fn cite(n: u32) -> Value {
        serde_json::json!({"type": "web_search_result_location", "url": "https://r.example",
            "cited_text": format!("c{n}"), "encrypted_index": format!("I{n}")})
    }

    /// A searched answer's JSON carries Anthropic's blocks verbatim in their place, each text
    /// block with its citations, the searches in usage and the `pause_turn` stop; an answer
    /// without any of these is byte for byte what it was.
    #[test]
    fn an_answer_carries_anthropics_blocks_citations_searches_and_pause_turn() {
        use claudette_core::BlockKind::{Native, Text};
        let answer = ChatResponse {
            content: "Searching.Rust 2024 shipped".into(),
            native: vec![NativeBlock::anthropic(search_call()), NativeBlock::anthropic(search_results())],
            order: vec![Text(10), Native, Native, Text(20), Text(27)],
            citations: vec![TextCitations { end: 20, citations: vec![cite(1), cite(2)] }],
            finish_reason: Some(FinishReason::Other("pause_turn".into())),
            usage: Usage { web_search_requests: 2, ..Usage::reported(10, 5) },
            id: Some("msg_1".into()),
            ..ChatResponse::empty("b", "claude")
        };
        let body: Value = serde_json::from_slice(&message_body(&answer)).unwrap();
        assert_eq!(
            body["content"],
            serde_json::json!([
                {"type": "text", "text": "Searching."},
                search_call(),
                search_results(),
                {"type": "text", "text": "Rust 2024 ", "citations": [cite(1), cite(2)]},
                {"type": "text", "text": "shipped"}
            ])
        );
        assert_eq!(body["stop_reason"], "pause_turn");
        assert_eq!(body["usage"]["server_tool_use"], serde_json::json!({"web_search_requests": 2}));

        let plain = ChatResponse {
            content: "hi".into(),
            finish_reason: Some(FinishReason::Stop),
            usage: Usage::reported(10, 5),
            id: Some("msg_2".into()),
            ..ChatResponse::empty("b", "claude")
        };
        assert_eq!(
            String::from_utf8(message_body(&plain)).unwrap(),
            r#"{"id":"msg_2","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#
        );
    }

    /// Streamed, Anthropic's blocks come as Anthropic streams them (a server tool's call with
    /// its input in one `input_json_delta`, a result whole in its start), citations as
    /// `citations_delta`s of the text block they open, each block at the next index.
    #[test]
    fn a_stream_carries_anthropics_blocks_citations_searches_and_pause_turn() {
        let mut enc = AnthropicEncoder::new("claude".into());
        let mut out = Vec::new();
        let native = |v: Value| StreamEvent::Native { block: NativeBlock::anthropic(v) };
        let citation = |n: u32| StreamEvent::Citation { citation: cite(n) };
        for ev in [
            StreamEvent::text("Searching."),
            native(search_call()),
            native(search_results()),
            citation(1),
            citation(2),
            StreamEvent::text("Rust "),
            StreamEvent::text("2024 "),
            citation(3),
            StreamEvent::text("shipped"),
            native(
                serde_json::json!({"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "f", "server_name": "s", "input": {}}),
            ),
            citation(4),
        ] {
            assert!(!enc.event(ev, &mut out));
        }
        let end = StreamEnd {
            finish_reason: Some(FinishReason::Other("pause_turn".into())),
            usage: Usage { web_search_requests: 1, ..Usage::reported(10, 5) },
            cost: 0.0,
        };
        assert!(enc.event(StreamEvent::Done { end }, &mut out));
        let f = frames(&out);
        assert_blocks_nest(&f);
        let starts: Vec<&Value> =
            f.iter().filter(|(n, _)| n == "content_block_start").map(|(_, d)| &d["content_block"]).collect();
        let mut call_start = search_call();
        call_start["input"] = serde_json::json!({});
        let cited_start = serde_json::json!({"type": "text", "text": "", "citations": []});
        assert_eq!(
            starts,
            [
                &serde_json::json!({"type": "text", "text": ""}),
                &call_start,
                &search_results(),
                &cited_start,
                &cited_start,
                &serde_json::json!({"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "f", "server_name": "s", "input": {}}),
                &cited_start,
            ]
        );
        let deltas: Vec<(u64, &Value)> = f
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| (d["index"].as_u64().unwrap(), &d["delta"]))
            .collect();
        let text = |t: &str| serde_json::json!({"type": "text_delta", "text": t});
        let cited = |n: u32| serde_json::json!({"type": "citations_delta", "citation": cite(n)});
        let input = |j: &str| serde_json::json!({"type": "input_json_delta", "partial_json": j});
        assert_eq!(
            deltas,
            [
                (0, &text("Searching.")),
                (1, &input(r#"{"query":"rust 2024"}"#)),
                (3, &cited(1)),
                (3, &cited(2)),
                (3, &text("Rust ")),
                (3, &text("2024 ")),
                (4, &cited(3)),
                (4, &text("shipped")),
                (5, &input("{}")),
                (6, &cited(4)),
            ]
        );
        let (name, last) = &f[f.len() - 2];
        assert_eq!(name, "message_delta");
        assert_eq!(last["delta"]["stop_reason"], "pause_turn", "{last}");
        assert_eq!(last["usage"]["server_tool_use"]["web_search_requests"], 1, "{last}");
    }

    #[test]
    fn a_failure_after_commit_is_an_error_event_without_message_stop() {
        let mut enc = AnthropicEncoder::new("m".into());
        let mut out = Vec::new();
        enc.event(StreamEvent::text("Hi"), &mut out);
        let error = BackendError::new(ErrorKind::Overloaded, "overloaded").with_backend("b");
        assert!(enc.event(StreamEvent::Error { error }, &mut out));
        let f = frames(&out);
        let (name, data) = f.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data["type"], "error");
        assert_eq!(data["error"]["type"], "overloaded_error");
        assert!(f.iter().all(|(n, _)| n != "message_stop"));
    }

    #[test]
    fn interleaved_tool_fragments_end_in_an_error_not_a_corrupt_call() {
        let mut enc = AnthropicEncoder::new("m".into());
        let mut out = Vec::new();
        let call = |index: u32, id: Option<&str>| StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index,
                id: id.map(Into::into),
                name: Some("f".into()),
                arguments: "{}".into(),
            },
        };
        assert!(!enc.event(call(0, Some("a")), &mut out));
        assert!(!enc.event(call(1, Some("b")), &mut out));
        assert!(enc.event(call(0, None), &mut out));
        assert_eq!(frames(&out).last().unwrap().0, "error");
    }

    fn mcp_server() -> Value {
        serde_json::json!({"type": "url", "url": "https://mcp.example/sse", "name": "tickets"})
    }

    fn clear_tool_uses() -> Value {
        serde_json::json!({"edits": [{"type": "clear_tool_uses_20250919",
            "trigger": {"type": "input_tokens", "value": 30000}, "keep": {"type": "tool_uses", "value": 3}}]})
    }

    fn field(name: &str, value: Value, required: bool) -> NativeField {
        NativeField { dialect: Dialect::Anthropic, name: name.into(), value, required }
    }

    /// `mcp_servers` and `container` keep the request to Anthropic (its servers and files are
    /// there); `context_management` and `service_tier` are knobs another provider goes without.
    #[test]
    fn anthropics_own_top_level_fields_are_carried_whole() {
        let mut body = serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "mcp_servers": [mcp_server()], "container": {"id": "container_1", "skills": []},
            "context_management": clear_tool_uses(), "service_tier": "auto", "speed": "fast"});
        let (r, _) = parse(body.clone()).unwrap();
        assert_eq!(
            r.native_fields,
            [
                field("mcp_servers", serde_json::json!([mcp_server()]), true),
                field("container", serde_json::json!({"id": "container_1", "skills": []}), true),
                field("context_management", clear_tool_uses(), false),
                field("service_tier", serde_json::json!("auto"), false),
                field("speed", serde_json::json!("fast"), false),
            ]
        );
        assert_eq!(r.native_dialect().unwrap(), Some(Dialect::Anthropic));

        // A container named by its id alone; an empty server list asks for nothing.
        body["container"] = serde_json::json!("container_1");
        body["mcp_servers"] = serde_json::json!([]);
        let (r, _) = parse(body.clone()).unwrap();
        assert_eq!(r.native_fields[0], field("mcp_servers", serde_json::json!([]), false));
        assert_eq!(r.native_fields[1], field("container", serde_json::json!("container_1"), true));

        // Null is absent, and an ordinary request has none.
        for name in ["mcp_servers", "container", "context_management", "service_tier", "speed"] {
            body[name] = Value::Null;
        }
        assert!(parse(body).unwrap().0.native_fields.is_empty());
        let (r, _) =
            parse(serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
                .unwrap();
        assert!(r.native_fields.is_empty());
        assert_eq!(r.native_dialect().unwrap(), None);
    }

    /// Data residency keeps a request to Anthropic; automatic caching is a knob others go
    /// without. The structured-outputs beta's `output_format` is the answer's format, as
    /// `output_config.format` is; both at once is refused, naming it.
    #[test]
    fn residency_automatic_caching_and_the_betas_output_format() {
        let base = serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        let with = |extra: Value| {
            let mut b = base.clone();
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            b
        };
        let (r, _) = parse(with(serde_json::json!({"inference_geo": "us", "cache_control": eph()}))).unwrap();
        assert_eq!(
            r.native_fields,
            [field("inference_geo", serde_json::json!("us"), true), field("cache_control", eph(), false)]
        );
        assert_eq!(r.native_dialect().unwrap(), Some(Dialect::Anthropic));

        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let format = serde_json::json!({"type": "json_schema", "schema": schema});
        let (r, _) = parse(with(serde_json::json!({"output_format": format}))).unwrap();
        assert_eq!(
            r.response_format,
            ResponseFormat::JsonSchema {
                name: OUTPUT_SCHEMA_NAME.into(),
                schema: schema.clone(),
                strict: true
            }
        );
        let (via_config, _) = parse(with(serde_json::json!({"output_config": {"format": format}}))).unwrap();
        assert_eq!(via_config.response_format, r.response_format);
        let e =
            parse(with(serde_json::json!({"output_format": format, "output_config": {"format": format}})))
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("output_format"), "{}", e.message);
        let e = parse(with(serde_json::json!({"output_format": {"type": "json_schema"}}))).unwrap_err();
        assert_eq!(e.message, "output_format.schema: Field required");
    }

    #[test]
    fn anthropics_own_top_level_fields_of_the_wrong_type_are_named() {
        for (name, value, why) in [
            ("mcp_servers", mcp_server(), "valid list"),
            ("mcp_servers", serde_json::json!("https://mcp.example/sse"), "valid list"),
            ("container", serde_json::json!(["container_1"]), "container id"),
            ("container", serde_json::json!(7), "container id"),
            ("context_management", serde_json::json!([clear_tool_uses()]), "valid dictionary"),
            ("context_management", serde_json::json!("clear_tool_uses_20250919"), "valid dictionary"),
            ("service_tier", serde_json::json!({"tier": "auto"}), "valid string"),
            ("service_tier", serde_json::json!(true), "valid string"),
        ] {
            let mut body =
                serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
            body[name] = value;
            for e in [refused(body.clone()), count_refused(body)] {
                assert_eq!(e.param.as_deref(), Some(name), "{}", e.message);
                assert!(
                    e.message.starts_with(&format!("{name}: ")) && e.message.contains(why),
                    "{}",
                    e.message
                );
                assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            }
        }
    }

    /// A token count's body, refused as `/v1/messages/count_tokens` refuses it.
    fn count_refused(body: Value) -> ApiError {
        match parse_body(body.to_string().as_bytes()).and_then(MessagesRequest::into_count) {
            Ok(_) => panic!("accepted: {body}"),
            Err(e) => e,
        }
    }

    #[test]
    fn an_answers_container_and_context_management_follow_its_usage() {
        let container = serde_json::json!({"id": "container_1", "expires_at": "2026-01-01T00:00:00Z"});
        let edits = serde_json::json!({"applied_edits": [{"type": "clear_tool_uses_20250919",
            "cleared_tool_uses": 2, "cleared_input_tokens": 9000}]});
        let answer = ChatResponse {
            content: "hi".into(),
            finish_reason: Some(FinishReason::Stop),
            usage: Usage::reported(10, 5),
            id: Some("msg_2".into()),
            native_fields: vec![
                field("container", container.clone(), false),
                field("context_management", edits.clone(), false),
                // A name Anthropic's answer has no place for at the top level: not written.
                field("service_tier", serde_json::json!("standard"), false),
            ],
            ..ChatResponse::empty("b", "claude")
        };
        let body = String::from_utf8(message_body(&answer)).unwrap();
        let usage = r#""usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}"#;
        assert_eq!(
            body,
            format!(
                r#"{{"id":"msg_2","type":"message","role":"assistant","model":"claude","content":[{{"type":"text","text":"hi"}}],"stop_reason":"end_turn","stop_sequence":null,{usage},"container":{container},"context_management":{edits}}}"#
            )
        );

        let mut enc = AnthropicEncoder::new("claude".into());
        let mut out = Vec::new();
        assert!(!enc.event(StreamEvent::text("hi"), &mut out));
        for f in answer.native_fields.clone() {
            assert!(!enc.event(StreamEvent::NativeField { field: f }, &mut out));
        }
        let end =
            StreamEnd { finish_reason: Some(FinishReason::Stop), usage: Usage::reported(10, 5), cost: 0.0 };
        assert!(enc.event(StreamEvent::Done { end }, &mut out));
        let f = frames(&out);
        let (name, last) = &f[f.len() - 2];
        assert_eq!(name, "message_delta");
        assert_eq!(
            last,
            &serde_json::json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null, "container": container},
                "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0},
                "context_management": edits})
        );
        // Not content: nothing else of the stream changed.
        assert_eq!(f.iter().filter(|(n, _)| n == "content_block_start").count(), 1);
        assert!(f[0].1["message"].get("container").is_none(), "{}", f[0].1);

        // Without them, the final `message_delta` is as it always was.
        let mut enc = AnthropicEncoder::new("claude".into());
        let mut out = Vec::new();
        let end =
            StreamEnd { finish_reason: Some(FinishReason::Stop), usage: Usage::reported(10, 5), cost: 0.0 };
        assert!(enc.event(StreamEvent::Done { end }, &mut out));
        let f = frames(&out);
        let (_, last) = &f[f.len() - 2];
        assert_eq!(last["delta"], serde_json::json!({"stop_reason": "end_turn", "stop_sequence": null}));
        assert!(last.get("context_management").is_none(), "{last}");
    }
}
