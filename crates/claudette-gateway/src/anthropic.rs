//! `POST /v1/messages`: Anthropic Messages in and out; and `POST /v1/messages/count_tokens`,
//! which counts a Messages body's input tokens.
//!
//! Content blocks taken: `text`, `tool_use`, `tool_result`, `thinking` and `redacted_thinking`
//! where Anthropic takes them, and `image` blocks in a user message's content, with a
//! `base64` source (JPEG, PNG, GIF or WebP) or a `url` source (`http(s)`; the provider
//! fetches it, the gateway never does); a request with images goes only to backends that take
//! them. Refused with a 400 naming the block: images elsewhere (`system`, inside a
//! `tool_result`, assistant turns: the neutral request has images on user turns only), `file`
//! image sources (Anthropic's Files API, which the gateway cannot read), `cache_control` on an
//! image block (see `image_block`), and other block types (`document`, server tools' blocks).

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use claudette_core::error::scrub_secrets;
use claudette_core::{
    CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, ChatResponse, ErrorKind, FinishReason, ImageSource,
    MAX_CACHE_BREAKPOINTS, Message, ReasoningEffort, ResponseFormat, Role, StreamEvent, Thinking,
    ThinkingBlock, ThinkingSeal, ToolCall, ToolCallDelta, ToolChoice, ToolSpec, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::{
    Fault, ImageFault, Paths, TextOr, base64_image, checked_tool_choice, element_fault, fault, fetched_url,
    image_at, list_fault, parse_located,
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
    tools: Option<Vec<InTool>>,
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
fn output_config(
    config: Option<InOutputConfig>,
) -> Result<(Option<ReasoningEffort>, ResponseFormat), ApiError> {
    let Some(config) = config else { return Ok((None, ResponseFormat::Text)) };
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
    let format = match config.format {
        None => ResponseFormat::Text,
        Some(f) => match (f.r#type.as_str(), f.schema) {
            ("json_schema", Some(schema)) => {
                ResponseFormat::JsonSchema { name: OUTPUT_SCHEMA_NAME.to_owned(), schema, strict: true }
            }
            ("json_schema", None) => {
                return Err(ApiError::invalid("output_config.format.schema: Field required")
                    .with_param("output_config.format.schema"));
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "output_config.format.type: unknown type `{other}`; expected `json_schema`"
                ))
                .with_param("output_config.format.type"));
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

type Content = TextOr<Block>;

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
    source: Option<InImageSource>,
}

/// An image block's `source`, flat like [`Block`]: `base64` (`media_type`, `data`) or `url`.
#[derive(Debug, Deserialize)]
struct InImageSource {
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
    #[serde(default)]
    r#type: Option<String>,
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

/// A tool that failed to parse, named down to its `strict` when that is the field at fault:
/// the whole tool's error would leave the client to guess which flag it sent wrong.
fn tool_fault(path: String, t: &Value) -> Option<Fault> {
    let whole = fault::<InTool>(path.clone(), t)?;
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

/// A breakpoint at the current end of `text`.
fn text_mark(text: &str, ttl: CacheTtl) -> CacheBreakpoint {
    CacheBreakpoint { at: CacheAt::Text(u32::try_from(text.len()).unwrap_or(u32::MAX)), ttl }
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

/// An image block anywhere but directly in a user message's content (`param` names it).
fn misplaced_image(param: String) -> ApiError {
    invalid_at(
        param,
        &"image blocks are accepted in a user message's content only, not in `system`, a \
          `tool_result` or an assistant turn",
    )
}

/// A user turn's `image` block (`param` names it) as the neutral image source.
///
/// A `cache_control` on it is refused: a breakpoint is an offset in the message's text, and
/// the text block that ends where the image stands would take it, so the image would fall
/// outside the prefix the client asked to cache (and a leading image would mark an empty text
/// block, which Anthropic refuses). Marking the text block after the image caches the image
/// too.
fn image_block(b: Block, param: &dyn Fn() -> String) -> Result<ImageSource, ApiError> {
    if b.cache_control.is_some() {
        return Err(invalid_at(
            format!("{}.cache_control", param()),
            &"cache breakpoints on image blocks are not supported by this gateway; put \
              `cache_control` on a text block after the image, whose cached prefix includes it",
        ));
    }
    let at = |field: &str| format!("{}.source{field}", param());
    let Some(source) = b.source else { return Err(required(at(""))) };
    match source.r#type.as_str() {
        "base64" => {
            let media_type = source.media_type.ok_or_else(|| required(at(".media_type")))?;
            let data = source.data.ok_or_else(|| required(at(".data")))?;
            base64_image(&media_type, data).map_err(|why| match why {
                ImageFault::MediaType(_) => invalid_at(at(".media_type"), &why),
                _ => invalid_at(at(".data"), &why),
            })
        }
        "url" => {
            let url = source.url.ok_or_else(|| required(at(".url")))?;
            fetched_url(url, false).map_err(|why| invalid_at(at(".url"), &why))
        }
        "file" => Err(invalid_at(
            at(".type"),
            &"`file` sources name a file uploaded to Anthropic's Files API, which this gateway \
              cannot read; send the image as a `base64` or `url` source",
        )),
        other => Err(invalid_at(
            at(".type"),
            &format!("unknown image source type `{other}`; expected `base64` or `url`"),
        )),
    }
}

/// Text of a system prompt or a tool result: a string, or text blocks joined, with a cache
/// breakpoint at the end of each marked block. `base` names the field, so a refused block is
/// named by its position in it.
fn plain_text(
    content: Option<Content>,
    base: &dyn Fn() -> String,
    marks: &mut CacheMarks,
) -> Result<(String, Vec<CacheBreakpoint>), ApiError> {
    match content {
        None => Ok((String::new(), Vec::new())),
        Some(TextOr::Text(t)) => Ok((t, Vec::new())),
        Some(TextOr::List(blocks)) => {
            let mut out = String::new();
            let mut cache = Vec::new();
            for (j, b) in blocks.into_iter().enumerate() {
                match (b.r#type.as_str(), b.text) {
                    ("text", Some(t)) => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&t);
                        if let Some(ttl) = marks.read(b.cache_control, &|| format!("{}.{j}", base()))? {
                            cache.push(text_mark(&out, ttl));
                        }
                    }
                    ("text", None) => return Err(missing_text(format!("{}.{j}", base()))),
                    ("image", _) => return Err(misplaced_image(format!("{}.{j}", base()))),
                    (other, _) => return Err(unsupported(other, format!("{}.{j}", base()))),
                }
            }
            Ok((out, cache))
        }
    }
}

fn message_fault(path: String, m: &Value) -> Option<Fault> {
    let whole = fault::<InMessage>(path.clone(), m)?;
    let narrower = m.as_object().and_then(|o| {
        let role = o.get("role").and_then(|r| fault::<String>(format!("{path}.role"), r));
        role.or_else(|| {
            let content = o.get("content")?;
            let path = format!("{path}.content");
            if content.is_array() {
                element_fault::<Block>(Paths::Dotted, &path, content)
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
            "stop_sequences" => element_fault::<String>(Paths::Dotted, k, v),
            "tools" => list_fault(Paths::Dotted, k, v, tool_fault),
            "system" if v.is_array() => element_fault::<Block>(Paths::Dotted, k, v),
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
        for (i, t) in self.tools.unwrap_or_default().into_iter().enumerate() {
            if t.r#type.as_deref().is_some_and(|ty| ty != "custom") {
                return Err(ApiError::invalid("only client tools with an `input_schema` are supported")
                    .with_param(format!("tools.{i}.type")));
            }
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
        let (system, cache) = plain_text(self.system, &|| "system".to_owned(), &mut marks)?;
        if !system.is_empty() {
            out.push(Message { cache, ..Message::system(system) });
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
            let mut text = String::new();
            let mut tool_calls = Vec::new();
            let mut thinking = Vec::new();
            let mut cache = Vec::new();
            let mut images = Vec::new();
            let mut had_results = false;
            for (j, b) in blocks.into_iter().enumerate() {
                let param = || format!("messages.{i}.content.{j}");
                match (b.r#type.as_str(), role) {
                    ("text", _) => match b.text {
                        Some(t) => {
                            text.push_str(&t);
                            if let Some(ttl) = marks.read(b.cache_control, &param)? {
                                cache.push(text_mark(&text, ttl));
                            }
                        }
                        None => return Err(missing_text(param())),
                    },
                    ("image", Role::User) => images.push(image_at(&text, image_block(b, &param)?)),
                    ("image", _) => return Err(misplaced_image(param())),
                    ("tool_use", Role::Assistant) => {
                        let (Some(id), Some(name)) = (b.id, b.name) else {
                            return Err(
                                ApiError::invalid("tool_use blocks need `id` and `name`").with_param(param())
                            );
                        };
                        let arguments = b.input.unwrap_or_else(|| Value::Object(serde_json::Map::new()));
                        if let Some(ttl) = marks.read(b.cache_control, &param)? {
                            let at = CacheAt::ToolCall(u32::try_from(tool_calls.len()).unwrap_or(u32::MAX));
                            cache.push(CacheBreakpoint { at, ttl });
                        }
                        tool_calls.push(ToolCall { id, name, arguments });
                    }
                    ("tool_result", Role::User) => {
                        let Some(id) = b.tool_use_id else {
                            return Err(ApiError::invalid("tool_result blocks need `tool_use_id`")
                                .with_param(param()));
                        };
                        let (content, mut cache) =
                            plain_text(b.content, &|| format!("{}.content", param()), &mut marks)?;
                        if let Some(ttl) = marks.read(b.cache_control, &param)? {
                            cache.push(text_mark(&content, ttl));
                        }
                        out.push(Message {
                            is_error: b.is_error.unwrap_or(false),
                            cache,
                            ..Message::tool_result(id, content)
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
                    }
                    ("redacted_thinking", Role::Assistant) => {
                        let Some(data) = b.data else {
                            return Err(ApiError::invalid(format!("{}.data: Field required", param()))
                                .with_param(format!("{}.data", param())));
                        };
                        thinking.push(ThinkingBlock::Redacted { data });
                    }
                    (other, _) => return Err(unsupported(other, param())),
                }
            }
            if role == Role::Assistant || !text.is_empty() || !images.is_empty() || !had_results {
                out.push(Message { tool_calls, thinking, cache, images, ..Message::new(role, text) });
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
        let (output_effort, response_format) = output_config(self.output_config)?;
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
        let request = ChatRequest {
            messages: out,
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

pub(crate) async fn messages(State(st): State<Shared>, request: Request) -> Response {
    let prepared = respond::prepare(&st, EP, request, |bytes| {
        let parsed = parse_body(bytes).map_err(|e| respond::local_error(EP, e))?;
        let stream = parsed.is_stream();
        let (request, model) = parsed.into_chat().map_err(|e| respond::local_error(EP, e))?;
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
    let admitted = match respond::admit(&st, COUNT_EP, request.into_body()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let (mut chat, model) = match parse_body(&admitted.body).and_then(MessagesRequest::into_count) {
        Ok(parsed) => parsed,
        Err(e) => return respond::local_error(COUNT_EP, e),
    };
    if let Err(resp) = limits::check_request(&st, COUNT_EP, &mut chat) {
        return resp;
    }
    if let Err(e) = routing::resolve_model(&st.router, model.as_deref(), &mut chat) {
        return respond::local_error(COUNT_EP, e);
    }
    let selected = st.router.select_with(&chat, &[], overrides).map(|s| s.backend);
    let (backend, counted) = match &selected {
        Ok(backend) => (backend.name(), backend.count_tokens(&chat).await),
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
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Thinking { thinking: &'a str, signature: &'a str },
    RedactedThinking { data: &'a str },
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: Value },
}

/// Anthropic's usage: `input_tokens` *excludes* cache reads and writes; ours includes them.
#[derive(Serialize, Clone, Copy)]
struct OutUsage {
    input_tokens: u32,
    output_tokens: u32,
    cache_creation_input_tokens: u32,
    cache_read_input_tokens: u32,
}

fn out_usage(u: &Usage) -> OutUsage {
    OutUsage {
        input_tokens: u.uncached_input_tokens(),
        output_tokens: u.output_tokens,
        cache_creation_input_tokens: u.cache_write_tokens,
        cache_read_input_tokens: u.cache_read_tokens,
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
    let mut content = Vec::with_capacity(2 + resp.thinking.len() + resp.tool_calls.len());
    if resp.thinking.is_empty() {
        // Another provider's reasoning: readable, but nothing Anthropic would take back.
        if let Some(r) = resp.reasoning.as_deref().filter(|r| !r.is_empty()) {
            content.push(BlockOut::Thinking { thinking: r, signature: "" });
        }
    }
    for t in &resp.thinking {
        content.push(match t {
            ThinkingBlock::Thinking { thinking, signature } => BlockOut::Thinking { thinking, signature },
            ThinkingBlock::Redacted { data } => BlockOut::RedactedThinking { data },
        });
    }
    // An answer with nothing in it is `content: []`, as Anthropic sends it (a stop sequence
    // or a `max_tokens` reached before any text); an empty text block is not.
    if !resp.content.is_empty() {
        content.push(BlockOut::Text { text: &resp.content });
    }
    for c in &resp.tool_calls {
        content.push(BlockOut::ToolUse { id: &c.id, name: &c.name, input: tool_input(&c.arguments) });
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
struct BlockStart<'a> {
    r#type: &'static str,
    index: u32,
    content_block: BlockOut<'a>,
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
}

#[derive(Serialize)]
struct BlockStop {
    r#type: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta<'a> {
    r#type: &'static str,
    delta: StopDelta<'a>,
    usage: OutUsage,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
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
    Text(u32),
    Thinking(u32),
    Tool { call: u32, block: u32 },
}

/// The full Messages event sequence: `message_start` and a `ping`, then per content block
/// `content_block_start` / `_delta`s / `_stop` (text, thinking, tool_use with
/// `input_json_delta`), then `message_delta` with the final usage and `message_stop`. A
/// failure after commit is `event: error` and the stream closes without `message_stop`.
pub(crate) struct AnthropicEncoder {
    id: String,
    model: String,
    started: bool,
    usage: Option<Usage>,
    open: Option<Open>,
    next_block: u32,
    /// The upstream's id for the open tool block, if it sent one.
    open_call_id: Option<String>,
    /// Tool calls whose block was already closed: upstream index and id.
    closed_calls: Vec<(u32, Option<String>)>,
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
            open_call_id: None,
            closed_calls: Vec::new(),
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = self.usage.map(|u| out_usage(&u)).unwrap_or(OutUsage {
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
        });
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
            },
        };
        respond::event_frame(out, "message_start", &start);
        respond::event_frame(out, "ping", &TypeOnly { r#type: "ping" });
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            let index = match open {
                Open::Text(i) | Open::Thinking(i) => i,
                Open::Tool { call, block } => {
                    self.closed_calls.push((call, self.open_call_id.take()));
                    block
                }
            };
            respond::event_frame(
                out,
                "content_block_stop",
                &BlockStop { r#type: "content_block_stop", index },
            );
        }
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: BlockOut<'_>) -> u32 {
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

    /// Whether `delta` belongs to the open tool call at upstream index `call`. The index alone
    /// does not tell: Gemini's OpenAI-compatible stream numbers every parallel call 0, one whole
    /// call per chunk, so a fragment naming another id is another call.
    fn continues(&self, call: u32, delta: &ToolCallDelta) -> bool {
        call == delta.index
            && match (&delta.id, &self.open_call_id) {
                (Some(new), Some(open)) => new == open,
                _ => true,
            }
    }

    /// Whether `delta` is a further fragment of a call whose block is already closed.
    fn was_closed(&self, delta: &ToolCallDelta) -> bool {
        match &delta.id {
            Some(id) => self.closed_calls.iter().any(|(_, closed)| closed.as_ref() == Some(id)),
            None => self.closed_calls.iter().any(|(call, _)| *call == delta.index),
        }
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
            StreamEvent::Usage { usage } => {
                self.usage = Some(usage);
                false
            }
            StreamEvent::TextDelta { text } => {
                self.start(out);
                let index = match self.open {
                    Some(Open::Text(i)) => i,
                    _ => {
                        let i = self.open_block(out, BlockOut::Text { text: "" });
                        self.open = Some(Open::Text(i));
                        i
                    }
                };
                Self::delta(out, index, DeltaOut::TextDelta { text: &text });
                false
            }
            StreamEvent::ReasoningDelta { text } => {
                self.start(out);
                let index = match self.open {
                    Some(Open::Thinking(i)) => i,
                    _ => {
                        let i = self.open_block(out, BlockOut::Thinking { thinking: "", signature: "" });
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
                            _ => self.open_block(out, BlockOut::Thinking { thinking: "", signature: "" }),
                        };
                        self.open = Some(Open::Thinking(index));
                        Self::delta(out, index, DeltaOut::SignatureDelta { signature: &signature });
                    }
                    ThinkingSeal::Redacted(data) => {
                        let index = self.open_block(out, BlockOut::RedactedThinking { data: &data });
                        self.open = Some(Open::Thinking(index));
                    }
                }
                // The block is complete: reasoning that follows is another block.
                self.close(out);
                false
            }
            StreamEvent::ToolCall { delta } => {
                self.start(out);
                let index = match self.open {
                    Some(Open::Tool { call, block }) if self.continues(call, &delta) => block,
                    _ if self.was_closed(&delta) => {
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
                            BlockOut::ToolUse {
                                id: &id,
                                name: &name,
                                input: Value::Object(serde_json::Map::new()),
                            },
                        );
                        self.open = Some(Open::Tool { call: delta.index, block });
                        self.open_call_id = delta.id;
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
                    self.usage = Some(Usage { output_tokens: end.usage.output_tokens, ..u });
                } else {
                    self.usage = Some(end.usage);
                }
                self.start(out);
                self.close(out);
                let tool_use = !self.closed_calls.is_empty();
                let usage = self.usage.map(|u| out_usage(&u)).unwrap_or_else(|| out_usage(&end.usage));
                let (stop_reason, stop_sequence) = stop_reason(end.finish_reason.as_ref(), tool_use);
                let delta = MessageDelta {
                    r#type: "message_delta",
                    delta: StopDelta { stop_reason, stop_sequence },
                    usage,
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
        let document = serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]});
        let e = parse(document).unwrap_err();
        assert!(e.message.contains("document"), "{}", e.message);
        assert_eq!(e.param.as_deref(), Some("messages.0.content.0"));
        let server_tool = serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
        assert!(parse(server_tool).is_err());
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
        cached["cache_control"] = serde_json::json!({"type": "ephemeral"});
        assert_eq!(user(cached).0, "messages.0.content.1.cache_control");
        // Anywhere but directly in a user turn's content.
        let image = b64("image/png", "AAAA");
        let elsewhere = [
            (
                serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [image.clone()]}]}),
                "messages.1.content.0",
            ),
            (
                serde_json::json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": [image.clone()]}]}]}),
                "messages.0.content.0.content.0",
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
}
