//! `POST /v1/chat/completions`: OpenAI Chat Completions in and out.
//!
//! Message content is a string or a list of `text`, `image_url` and `file` parts. Images and
//! files are taken on user messages, as OpenAI takes them, and on `tool` messages, which
//! OpenAI refuses but clients written for other providers send (a tool that took a
//! screenshot or read a PDF): Anthropic and Gemini take them in a tool result, and the
//! OpenAI-format adapters move them to a user message after the results. An image is a base64
//! `data:` URL of a JPEG, PNG, GIF or WebP image, or an `http(s)` URL the provider fetches
//! (the gateway never does); `detail` is accepted and dropped. A file is a PDF given inline,
//! `file.file_data` a `data:application/pdf;base64,…` URL, its `filename` kept as the
//! document's title. A request with images or PDFs goes only to backends that take images.
//! Anything else is refused with a 400 naming the part: images and files on system and
//! assistant messages, other URL schemes, other media types (files other than PDFs too), the
//! bare-string `image_url` form, a `file.file_id` (a file uploaded to OpenAI: the gateway has
//! no Files API), and `input_audio` parts.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::response::Response;
use claudette_core::{
    Block, BlockKind, BlockOrder, ChatRequest, ChatResponse, Document, DocumentSource, FinishReason, Image,
    ImageSource, Message, ResponseFormat, Role, StreamBlockOrder, StreamEvent, ThinkingBlock, ThinkingSeal,
    ToolCall, ToolCallDelta, ToolCallSlots, ToolChoice, ToolSpec, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::content::{
    Fault, Paths, TextOr, arguments_text, checked_tool_choice, document_at, element_fault, fault, image_at,
    image_url, invalid_value, list_fault, missing, openai_effort, openai_file, parse_arguments,
    parse_located, tool_strict,
};
use crate::error::{ApiError, Flavor};
use crate::ids;
use crate::respond::{self, Encoder, Endpoint, Shared, json_str, json_uint};
use crate::web_search::{self, Location, Search, StreamCitations, UrlCitation};

const EP: Endpoint = Endpoint { label: "chat_completions", flavor: Flavor::OpenAi };

// ---------------------------------------------------------------------------------------------
// Request

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Option<Vec<InMessage>>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    /// Not OpenAI's, but what clients of self-hosted servers (vLLM, llama.cpp) send.
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    /// Kept raw: only its `type` decides whether the request can be served.
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    logprobs: Option<bool>,
    /// The deprecated form of `tools`: read only to refuse it.
    #[serde(default)]
    functions: Option<Value>,
    /// Output modalities (`["text", "audio"]`) and the voice for audio: read only to refuse
    /// audio output, which no backend behind the gateway writes.
    #[serde(default)]
    modalities: Option<Value>,
    #[serde(default)]
    audio: Option<Value>,
    #[serde(default)]
    reasoning_effort: Option<String>,
    /// Kept raw and read by [`web_search`], which names the field at fault in it.
    #[serde(default)]
    web_search_options: Option<Value>,
}

/// `"auto"`, `"none"`, `"required"`, or `{"type": "function", "function": {"name": …}}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InToolChoice {
    Mode(String),
    Function { r#type: Option<String>, function: InChosenFunction },
}

#[derive(Debug, Deserialize)]
struct InChosenFunction {
    name: String,
}

type Stop = TextOr<String>;

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<InToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    /// LiteLLM's field for the provider's thinking blocks of an assistant turn, sent back as
    /// the client got them (see [`thinking_blocks`]).
    #[serde(default)]
    thinking_blocks: Option<Vec<InThinkingBlock>>,
    /// The order of the turn's blocks, as this gateway gave it in the answer (see
    /// [`block_order`]).
    #[serde(default)]
    block_order: Option<Vec<BlockKind>>,
}

/// One entry of `thinking_blocks`: `{"type": "thinking", "thinking", "signature"}` or
/// `{"type": "redacted_thinking", "data"}`. Loose here, checked by [`thinking_blocks`], so a
/// missing field or an unknown type is named by its path rather than by serde's wording.
#[derive(Debug, Deserialize)]
struct InThinkingBlock {
    r#type: String,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

type Content = TextOr<Part>;

#[derive(Debug, Deserialize)]
struct Part {
    r#type: String,
    #[serde(default)]
    text: Option<String>,
    /// Kept raw and read by [`image_part`], which names what is wrong in it.
    #[serde(default)]
    image_url: Option<Value>,
    /// Kept raw and read by [`file_part`], as `image_url`.
    #[serde(default)]
    file: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct InToolCall {
    id: String,
    #[serde(default)]
    r#type: Option<String>,
    function: InFunctionCall,
}

#[derive(Debug, Deserialize)]
struct InFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InTool {
    #[serde(default)]
    r#type: Option<String>,
    function: InFunction,
}

#[derive(Debug, Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    /// Kept raw and read by [`tool_strict`], which `/v1/responses` shares.
    #[serde(default)]
    strict: Option<Value>,
}

/// A message's text, and the images and PDFs that stood among it.
#[derive(Debug, Default)]
struct Parts {
    text: String,
    images: Vec<Image>,
    documents: Vec<Document>,
}

/// A message's content as the neutral text, images and documents: text parts concatenated,
/// each `image_url` part an image and each `file` part a document at the offset where it
/// stood among them. Images and files are taken where the neutral request carries them
/// (`media_taken`): user and tool messages.
fn content_parts(
    content: Option<Content>,
    media_taken: bool,
    param: impl Fn() -> String,
) -> Result<Parts, ApiError> {
    match content {
        None => Ok(Parts::default()),
        Some(TextOr::Text(text)) => Ok(Parts { text, ..Parts::default() }),
        Some(TextOr::List(parts)) => {
            let Parts { mut text, mut images, mut documents } = Parts::default();
            for (j, p) in parts.into_iter().enumerate() {
                match (p.r#type.as_str(), p.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    // OpenAI refuses it too; reading it as empty would send a turn the client
                    // never wrote, and "parts of type `text` are not supported" would mislead.
                    ("text", None) => return Err(missing(format!("{}[{j}].text", param()))),
                    ("image_url", _) if !media_taken => {
                        return Err(ApiError::invalid(
                            "Image URLs are only allowed for messages with role 'user' or 'tool'.",
                        )
                        .with_param(format!("{}[{j}]", param())));
                    }
                    ("image_url", _) => {
                        let source = image_part(p.image_url, &|| format!("{}[{j}].image_url", param()))?;
                        images.push(image_at(&text, source));
                    }
                    ("file", _) if !media_taken => {
                        return Err(ApiError::invalid(
                            "File content parts are only allowed for messages with role 'user' or 'tool'.",
                        )
                        .with_param(format!("{}[{j}]", param())));
                    }
                    ("file", _) => {
                        let (source, title) = file_part(p.file, &format!("{}[{j}].file", param()))?;
                        documents.push(document_at(&text, source, title));
                    }
                    (other, _) => {
                        return Err(ApiError::invalid(format!(
                            "content parts of type `{other}` are not supported by this gateway; send \
                             text, `image_url` or `file`"
                        ))
                        .with_param(format!("{}[{j}]", param())));
                    }
                }
            }
            Ok(Parts { text, images, documents })
        }
    }
}

/// An `image_url` part's `{"url", "detail"}` (`param` names it). `detail` is accepted and
/// dropped: it tunes OpenAI's own resizing (and so its price), and no other provider has a
/// knob it could become; the image is the same either way. The bare string form some
/// self-hosted servers take is refused, as OpenAI refuses it, rather than guessed at.
fn image_part(v: Option<Value>, param: &dyn Fn() -> String) -> Result<ImageSource, ApiError> {
    let url = match v {
        None | Some(Value::Null) => return Err(missing(param())),
        Some(Value::Object(mut o)) => match o.remove("url") {
            None | Some(Value::Null) => return Err(missing(format!("{}.url", param()))),
            Some(Value::String(url)) => url,
            Some(_) => return Err(invalid_value(format!("{}.url", param()), &"expected a string")),
        },
        Some(_) => return Err(invalid_value(param(), &"expected an object `{\"url\": …}`")),
    };
    image_url(url).map_err(|why| invalid_value(format!("{}.url", param()), &why))
}

/// A `file` part's `{"file_data", "filename"}` (`at` names it) as a PDF and its title.
fn file_part(v: Option<Value>, at: &str) -> Result<(DocumentSource, Option<String>), ApiError> {
    match v {
        None | Some(Value::Null) => Err(missing(at.to_owned())),
        Some(Value::Object(mut file)) => openai_file(&mut file, at, false),
        Some(_) => {
            Err(invalid_value(at.to_owned(), &"expected an object `{\"file_data\": …, \"filename\": …}`"))
        }
    }
}

/// `web_search_options` as the search the client asked for: none when absent or null, a
/// search with OpenAI's defaults for `{}`. Checked field by field against OpenAI's schema, so
/// a mistake is named by its path: read loosely, a misspelt location would quietly search
/// from nowhere. `search_context_size` is checked and not passed on (see
/// [`Search::claude_tool`]).
fn web_search(v: Option<&Value>) -> Result<Option<Search>, ApiError> {
    const AT: &str = "web_search_options";
    let options = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(invalid_value(AT.into(), &"expected an object")),
    };
    match options.get("search_context_size") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if matches!(s.as_str(), "low" | "medium" | "high") => {}
        Some(other) => {
            return Err(invalid_value(
                format!("{AT}.search_context_size"),
                &format_args!("expected `low`, `medium` or `high`, got {other}"),
            ));
        }
    }
    let location = match options.get("user_location") {
        None | Some(Value::Null) => None,
        Some(Value::Object(l)) => Some(user_location(l)?),
        Some(_) => return Err(invalid_value(format!("{AT}.user_location"), &"expected an object")),
    };
    Ok(Some(Search { location, allowed_domains: Vec::new() }))
}

/// `web_search_options.user_location`: `{"type": "approximate", "approximate": {…}}`, both
/// required as OpenAI requires them.
fn user_location(l: &Map<String, Value>) -> Result<Location, ApiError> {
    const AT: &str = "web_search_options.user_location";
    match l.get("type") {
        Some(Value::String(t)) if t == "approximate" => {}
        None | Some(Value::Null) => return Err(missing(format!("{AT}.type"))),
        Some(other) => {
            return Err(invalid_value(
                format!("{AT}.type"),
                &format_args!("expected `approximate`, got {other}"),
            ));
        }
    }
    let approximate = match l.get("approximate") {
        Some(Value::Object(a)) => a,
        None | Some(Value::Null) => return Err(missing(format!("{AT}.approximate"))),
        Some(_) => return Err(invalid_value(format!("{AT}.approximate"), &"expected an object")),
    };
    Location::read(&format!("{AT}.approximate"), approximate)
}

/// Whether a request from this endpoint searches the web: the search is the only tool of a
/// provider's own it ever carries.
fn searches(request: &ChatRequest) -> bool {
    !request.native_tools.is_empty()
}

/// An assistant turn's `thinking_blocks` as the neutral blocks.
///
/// Chat Completions has no field of its own for them, and Anthropic refuses a tool loop with
/// thinking on unless the turn that made the calls comes back with its signed thinking: a
/// client of this endpoint in front of Claude sends them back the way LiteLLM's clients do,
/// or loses thinking for the rest of the loop. Only assistant turns have thinking; on any
/// other the field would be dropped unread, so it is refused instead.
fn thinking_blocks(
    blocks: Option<Vec<InThinkingBlock>>,
    role: Role,
    i: usize,
) -> Result<Vec<ThinkingBlock>, ApiError> {
    let Some(blocks) = blocks.filter(|b| !b.is_empty()) else {
        return Ok(Vec::new());
    };
    if role != Role::Assistant {
        return Err(ApiError::invalid("`thinking_blocks` are only accepted on assistant messages")
            .with_param(format!("messages[{i}].thinking_blocks")));
    }
    let missing = |j: usize, field: &str| missing(format!("messages[{i}].thinking_blocks[{j}].{field}"));
    let mut out = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        out.push(match b.r#type.as_str() {
            // An unsigned block is kept: the Anthropic adapter leaves it out, as it does any
            // reasoning another provider made, and other providers ignore thinking altogether.
            "thinking" => ThinkingBlock::Thinking {
                thinking: b.thinking.ok_or_else(|| missing(j, "thinking"))?,
                signature: b.signature.unwrap_or_default(),
            },
            "redacted_thinking" => {
                ThinkingBlock::Redacted { data: b.data.ok_or_else(|| missing(j, "data"))? }
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown thinking block type `{other}`; expected `thinking` or `redacted_thinking`"
                ))
                .with_param(format!("messages[{i}].thinking_blocks[{j}].type")));
            }
        });
    }
    Ok(out)
}

/// An assistant turn's `block_order` checked against the turn it came with, as
/// [`Message::order`].
///
/// Chat Completions keeps thinking, text and tool calls in three fields, which lose their
/// order; Claude thinks between its calls (interleaved thinking), and Anthropic refuses such a
/// turn sent back in another order than it made it ("thinking blocks in the latest assistant
/// message cannot be modified"), on every turn after. The answer says the order in
/// `block_order` and the client sends it back with the turn, as it does `thinking_blocks`.
/// An order that does not fit the turn is refused here, naming the field, rather than by
/// whichever backend reads it: one that ignores the order would serve the turn, Anthropic
/// would not. The usual order (thinking, text, calls) is kept as none, as adapters keep it.
fn block_order(message: &mut Message, i: usize) -> Result<(), ApiError> {
    if message.order.is_empty() {
        return Ok(());
    }
    let param = || format!("messages[{i}].block_order");
    if message.role != Role::Assistant {
        return Err(
            ApiError::invalid("`block_order` is only accepted on assistant messages").with_param(param())
        );
    }
    let order = match message.blocks() {
        Ok(blocks) => order_of(&blocks),
        Err(e) => return Err(ApiError::invalid(e.message).with_param(param())),
    };
    message.order = order;
    Ok(())
}

/// The order of `blocks` as [`Message::order`] keeps it: none when it is the usual one.
fn order_of(blocks: &[Block<'_>]) -> Vec<BlockKind> {
    let mut order = BlockOrder::default();
    for block in blocks {
        match block {
            Block::Thinking(_) => order.thinking(),
            Block::Text { text, start } => order.text(start + text.len()),
            Block::ToolCall { .. } => order.tool_call(),
            // Another provider's blocks (a server tool's call or results): Chat Completions has
            // no place for them, so they are not sent, and the order does not count them.
            Block::Native(_) => {}
        }
    }
    order.finish()
}

fn message_fault(path: String, m: &Value) -> Option<Fault> {
    let whole = fault::<InMessage>(path.clone(), m)?;
    let narrower = m.as_object().and_then(|o| {
        let field = |k: &str| o.get(k).filter(|v| !v.is_null());
        let at = |k: &str| format!("{path}.{k}");
        field("role")
            .and_then(|v| fault::<String>(at("role"), v))
            .or_else(|| {
                field("content").and_then(|v| {
                    if v.is_array() {
                        element_fault::<Part>(Paths::Bracketed, &at("content"), v)
                    } else {
                        fault::<Content>(at("content"), v)
                    }
                })
            })
            .or_else(|| {
                field("tool_calls")
                    .and_then(|v| element_fault::<InToolCall>(Paths::Bracketed, &at("tool_calls"), v))
            })
            .or_else(|| field("tool_call_id").and_then(|v| fault::<String>(at("tool_call_id"), v)))
            .or_else(|| {
                field("thinking_blocks").and_then(|v| {
                    element_fault::<InThinkingBlock>(Paths::Bracketed, &at("thinking_blocks"), v)
                })
            })
            .or_else(|| {
                field("block_order")
                    .and_then(|v| element_fault::<BlockKind>(Paths::Bracketed, &at("block_order"), v))
            })
            .or_else(|| field("name").and_then(|v| fault::<String>(at("name"), v)))
    });
    Some(narrower.unwrap_or(whole))
}

/// The field at fault in a body that failed to parse, as OpenAI writes paths
/// (`messages[2].content[0]`). `None` when it cannot be told, and the caller says less.
fn locate(v: &Value) -> Option<Fault> {
    let obj = v.as_object()?;
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let top = |k: &'static str| -> Option<Fault> {
        let v = field(k)?;
        match k {
            "model" | "user" | "reasoning_effort" => fault::<String>(k.into(), v),
            "max_tokens" | "max_completion_tokens" | "n" | "top_k" => fault::<u32>(k.into(), v),
            "seed" => fault::<i64>(k.into(), v),
            "temperature" | "top_p" => fault::<f32>(k.into(), v),
            "stream" | "logprobs" | "parallel_tool_calls" => fault::<bool>(k.into(), v),
            "stream_options" => fault::<StreamOptions>(k.into(), v),
            "metadata" => fault::<serde_json::Map<String, Value>>(k.into(), v),
            "tool_choice" => fault::<InToolChoice>(k.into(), v),
            "stop" if v.is_array() => element_fault::<String>(Paths::Bracketed, k, v),
            "stop" => fault::<Stop>(k.into(), v),
            "tools" => element_fault::<InTool>(Paths::Bracketed, k, v),
            _ => None,
        }
    };
    let keys = [
        "model",
        "user",
        "reasoning_effort",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stream",
        "logprobs",
        "parallel_tool_calls",
        "stream_options",
        "metadata",
        "tool_choice",
        "stop",
        "tools",
    ];
    keys.into_iter()
        .find_map(top)
        .or_else(|| list_fault(Paths::Bracketed, "messages", field("messages")?, message_fault))
}

impl CompletionRequest {
    pub(crate) fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub(crate) fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// The provider-neutral request. Fields the gateway cannot honour are refused rather than
    /// silently dropped when dropping them would change the answer (`n > 1`, audio parts);
    /// everything else unknown is ignored.
    pub(crate) fn into_chat(self) -> Result<(ChatRequest, Option<String>), ApiError> {
        let Some(messages) = self.messages else {
            return Err(ApiError::invalid("`messages` is required").with_param("messages"));
        };
        if messages.is_empty() {
            return Err(
                ApiError::invalid("`messages` must contain at least one message").with_param("messages")
            );
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only `n: 1` is supported").with_param("n"));
        }
        // Carried, not dropped: served as free text, `json_schema` (what the SDKs' `parse()`
        // sends) would fail in the client's JSON parser. A backend that cannot promise the
        // shape refuses it and the router fails over.
        let response_format = match self.response_format.as_ref().filter(|f| !f.is_null()) {
            None => ResponseFormat::Text,
            Some(format) => match format.get("type").and_then(Value::as_str) {
                Some("text") => ResponseFormat::Text,
                Some("json_object") => ResponseFormat::JsonObject,
                Some("json_schema") => {
                    let spec = format.get("json_schema");
                    let Some(name) = spec.and_then(|s| s.get("name")).and_then(Value::as_str) else {
                        return Err(ApiError::invalid("`response_format.json_schema.name` is required")
                            .with_param("response_format.json_schema.name"));
                    };
                    ResponseFormat::JsonSchema {
                        name: name.to_owned(),
                        schema: spec
                            .and_then(|s| s.get("schema"))
                            .cloned()
                            .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                        strict: spec.and_then(|s| s.get("strict")).and_then(Value::as_bool).unwrap_or(false),
                    }
                }
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "unknown `response_format` type `{other}`; expected `text`, `json_object` or `json_schema`"
                    ))
                    .with_param("response_format.type"));
                }
                None => {
                    return Err(ApiError::invalid("`response_format` needs a `type`")
                        .with_param("response_format.type"));
                }
            },
        };
        // Served without them, `choices[0].logprobs` is null where the client reads `.content`.
        if self.logprobs == Some(true) {
            return Err(
                ApiError::invalid("`logprobs` are not supported by this gateway").with_param("logprobs")
            );
        }
        // Served as text, an answer asked for as speech leaves the client with no `audio` to
        // play and nothing to say why.
        let audio_out = |m: &Value| m.as_str().is_none_or(|m| m != "text");
        if let Some(Value::Array(asked)) = &self.modalities
            && asked.iter().any(audio_out)
        {
            return Err(ApiError::invalid(
                "audio output is not supported by this gateway; ask for `modalities: [\"text\"]` or leave it out",
            )
            .with_param("modalities"));
        }
        if self.modalities.as_ref().is_some_and(|m| !m.is_null() && !m.is_array()) {
            return Err(invalid_value("modalities".into(), &"expected a list"));
        }
        if self.audio.as_ref().is_some_and(|a| !a.is_null()) {
            return Err(
                ApiError::invalid("audio output is not supported by this gateway").with_param("audio")
            );
        }
        // Dropped, they would leave the model answering without the functions it was offered.
        if self.functions.as_ref().is_some_and(|f| f.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(ApiError::invalid(
                "`functions` (deprecated) is not supported by this gateway; send `tools` instead",
            )
            .with_param("functions"));
        }
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => {
                    return Err(ApiError::invalid(format!("unknown message role `{other}`"))
                        .with_param(format!("messages[{i}].role")));
                }
            };
            let Parts { text: content, images, documents } =
                content_parts(m.content, matches!(role, Role::User | Role::Tool), || {
                    format!("messages[{i}].content")
                })?;
            let mut tool_calls = Vec::new();
            for (j, c) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
                if c.r#type.as_deref().is_some_and(|t| t != "function") {
                    return Err(ApiError::invalid("only `function` tool calls are supported")
                        .with_param(format!("messages[{i}].tool_calls[{j}].type")));
                }
                let raw = c.function.arguments.unwrap_or_default();
                let arguments =
                    parse_arguments(&raw, || format!("messages[{i}].tool_calls[{j}].function.arguments"))?;
                tool_calls.push(ToolCall { id: c.id, name: c.function.name, arguments });
            }
            if role == Role::Tool && m.tool_call_id.is_none() {
                return Err(ApiError::invalid("tool messages need `tool_call_id`")
                    .with_param(format!("messages[{i}].tool_call_id")));
            }
            let thinking = thinking_blocks(m.thinking_blocks, role, i)?;
            let mut message = Message {
                tool_calls,
                tool_call_id: m.tool_call_id,
                name: m.name,
                thinking,
                images,
                documents,
                order: m.block_order.unwrap_or_default(),
                ..Message::new(role, content)
            };
            block_order(&mut message, i)?;
            out.push(message);
        }
        let mut tools = Vec::new();
        for (i, t) in self.tools.unwrap_or_default().into_iter().enumerate() {
            if t.r#type.as_deref().is_some_and(|ty| ty != "function") {
                return Err(ApiError::invalid("only `function` tools are supported")
                    .with_param(format!("tools[{i}].type")));
            }
            tools.push(ToolSpec {
                name: t.function.name,
                description: t.function.description.unwrap_or_default(),
                parameters: t
                    .function
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                cache: None,
                strict: tool_strict(t.function.strict.as_ref(), || format!("tools[{i}].function.strict"))?
                    .unwrap_or(false),
            });
        }
        // After the function tools, as Claude Code puts its own search among its tools.
        let native_tools = match web_search(self.web_search_options.as_ref())? {
            Some(search) => vec![search.claude_tool(tools.len())],
            None => Vec::new(),
        };
        let mut metadata = self.metadata.unwrap_or_default();
        if let Some(user) = self.user {
            metadata.insert("user".into(), Value::String(user));
        }
        let tool_choice = match self.tool_choice {
            None => ToolChoice::Auto,
            Some(InToolChoice::Mode(mode)) => match mode.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                other => {
                    return Err(ApiError::invalid(format!(
                        "unknown tool_choice `{other}`; expected `auto`, `none`, `required` or a function"
                    ))
                    .with_param("tool_choice"));
                }
            },
            Some(InToolChoice::Function { r#type, function }) => {
                if r#type.as_deref().is_some_and(|t| t != "function") {
                    return Err(ApiError::invalid("only `function` tool choices are supported")
                        .with_param("tool_choice.type"));
                }
                ToolChoice::Tool(function.name)
            }
        };
        let thinking =
            self.reasoning_effort.as_deref().map(|e| openai_effort(e, "reasoning_effort")).transpose()?;
        let request = ChatRequest {
            messages: out,
            native_tools,
            native_fields: Vec::new(),
            native_flags: Vec::new(),
            model: None,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed,
            parallel_tool_calls: self.parallel_tool_calls,
            stop: match self.stop {
                None => Vec::new(),
                Some(TextOr::Text(s)) => vec![s],
                Some(TextOr::List(v)) => v,
            },
            tools,
            tool_choice,
            response_format,
            backend: None,
            tags: Vec::new(),
            metadata,
            thinking,
            output_effort: None,
            request_id: None,
            tenant: None,
        };
        checked_tool_choice(&request)?;
        Ok((request, self.model))
    }
}

// ---------------------------------------------------------------------------------------------
// Handler

pub(crate) async fn chat_completions(State(st): State<Shared>, request: Request) -> Response {
    let prepared = respond::prepare(&st, EP, request, |bytes| {
        let parsed: CompletionRequest =
            parse_located(bytes, locate, |path, inner| invalid_value(path, &inner))
                .map_err(|e| respond::local_error(EP, e))?;
        let (stream, include_usage) = (parsed.is_stream(), parsed.include_usage());
        let (mut request, model) = parsed.into_chat().map_err(|e| respond::local_error(EP, e))?;
        let searched = searches(&request);
        if searched {
            let asked = "`web_search_options`";
            let param = "web_search_options".into();
            web_search::refuse_unservable(&st.router, model.as_deref(), &mut request, asked, param)
                .map_err(|e| respond::local_error(EP, e))?;
        }
        Ok((request, model, (stream, include_usage, searched)))
    })
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let (stream, include_usage, searched) = prepared.extra;
    if stream {
        respond::answer_stream(&st, EP, prepared, |model| {
            OpenAiEncoder::new(model, include_usage).citing(searched)
        })
        .await
    } else {
        respond::answer_json(&st, EP, prepared, completion_body).await
    }
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: OutUsage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    /// The web search results the answer cites, where it cites them; only on an answer that
    /// has some, so every other answer is the bytes it always was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<OutAnnotation<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    /// The reasoning again, as the provider's signed blocks: what a client sends back on the
    /// assistant turn of a tool loop (see [`thinking_blocks`]). Only Anthropic makes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thinking_blocks: Vec<OutThinking<'a>>,
    /// The order of the turn's blocks, when it is not the usual one: what the client sends
    /// back on the turn with `thinking_blocks` (see [`block_order`]). Text offsets are byte
    /// offsets into `content`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    block_order: Vec<BlockKind>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
}

/// A thinking block in LiteLLM's `thinking_blocks` shape, the de-facto convention of
/// OpenAI-compatible gateways in front of Claude (and Anthropic's own block shape), so
/// clients written against LiteLLM send it back unchanged.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutThinking<'a> {
    Thinking { thinking: &'a str, signature: &'a str },
    RedactedThinking { data: &'a str },
}

impl<'a> From<&'a ThinkingBlock> for OutThinking<'a> {
    fn from(b: &'a ThinkingBlock) -> Self {
        match b {
            ThinkingBlock::Thinking { thinking, signature } => OutThinking::Thinking { thinking, signature },
            ThinkingBlock::Redacted { data } => OutThinking::RedactedThinking { data },
        }
    }
}

impl OutThinking<'_> {
    /// The bytes `serde_json` writes for it (checked by a test): answers and stream chunks
    /// that carry one are otherwise written by hand.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            OutThinking::Thinking { thinking, signature } => {
                out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":");
                json_str(out, thinking);
                out.extend_from_slice(b",\"signature\":");
                json_str(out, signature);
            }
            OutThinking::RedactedThinking { data } => {
                out.extend_from_slice(b"{\"type\":\"redacted_thinking\",\"data\":");
                json_str(out, data);
            }
        }
        out.push(b'}');
    }
}

/// OpenAI's `url_citation` annotation: a search result the text from `start_index` to
/// `end_index` (characters, not bytes) cites.
#[derive(Serialize)]
struct OutAnnotation<'a> {
    r#type: &'static str,
    url_citation: OutUrlCitation<'a>,
}

#[derive(Serialize)]
struct OutUrlCitation<'a> {
    start_index: usize,
    end_index: usize,
    url: &'a str,
    title: &'a str,
}

impl<'a> From<&'a UrlCitation> for OutAnnotation<'a> {
    fn from(c: &'a UrlCitation) -> Self {
        OutAnnotation {
            r#type: "url_citation",
            url_citation: OutUrlCitation {
                start_index: c.start,
                end_index: c.end,
                url: &c.url,
                title: &c.title,
            },
        }
    }
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    r#type: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: Cow<'a, str>,
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u32,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u32,
}

/// [`out_usage`] as JSON, the bytes `serde_json` writes for it (checked by a test): on every
/// answer, and the derived serializer spends most of its time on the seven keys.
fn usage_json(out: &mut Vec<u8>, u: &Usage) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    json_uint(out, u.input_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    json_uint(out, u.output_tokens);
    out.extend_from_slice(b",\"total_tokens\":");
    json_uint(out, u.total_tokens());
    out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
    json_uint(out, u.cache_read_tokens);
    out.extend_from_slice(b"},\"completion_tokens_details\":{\"reasoning_tokens\":");
    json_uint(out, u.reasoning_tokens);
    out.extend_from_slice(b"}}");
}

/// `order` as JSON, the bytes `serde_json` writes for it (checked by a test), for the
/// hand-written answer.
fn block_order_json(out: &mut Vec<u8>, order: &[BlockKind]) {
    out.push(b'[');
    for (k, kind) in order.iter().filter(|k| **k != BlockKind::Native).enumerate() {
        if k > 0 {
            out.push(b',');
        }
        match kind {
            BlockKind::Thinking => out.extend_from_slice(b"\"thinking\""),
            BlockKind::Text(end) => {
                out.extend_from_slice(b"{\"text\":");
                json_uint(out, *end);
                out.push(b'}');
            }
            BlockKind::ToolCall => out.extend_from_slice(b"\"tool_call\""),
            BlockKind::Native => {}
        }
    }
    out.push(b']');
}

/// The answer's `block_order`: its order as the client gets its blocks, none when that is the
/// usual one (or when the adapter's order does not fit the answer, which then goes out in the
/// usual order, as every endpoint sends it).
fn answer_order(resp: &ChatResponse) -> Vec<BlockKind> {
    if resp.order.is_empty() { Vec::new() } else { order_of(&resp.blocks_for_client()) }
}

/// OpenAI's usage: `prompt_tokens` includes cached tokens, as ours does.
fn out_usage(u: &Usage) -> OutUsage {
    OutUsage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total_tokens(),
        prompt_tokens_details: PromptDetails { cached_tokens: u.cache_read_tokens },
        completion_tokens_details: CompletionDetails { reasoning_tokens: u.reasoning_tokens },
    }
}

/// OpenAI's `finish_reason` for how the answer ended, given whether it carries tool calls.
///
/// Always one of OpenAI's own values: typed SDKs parse it as an enum (the .NET library throws
/// "Unknown ChatFinishReason value" on anything else), so a provider's own word (Gemini's
/// `MALFORMED_FUNCTION_CALL`, a server's `abort`) is a plain `stop`. Clients run tools when
/// `finish_reason` is `tool_calls`, and some OpenAI-compatible servers end a tool-calling turn
/// with `stop` (a broken one may claim `tool_calls` with none), so between those two the
/// answer's content decides. A cut-off (`length`) or filtered answer keeps its reason.
pub(crate) fn finish_reason(f: Option<&FinishReason>, tool_calls: bool) -> &'static str {
    let reason = match f {
        None | Some(FinishReason::Stop | FinishReason::StopSequence(_)) => "stop",
        Some(FinishReason::Length) => "length",
        Some(FinishReason::ToolCalls) => "tool_calls",
        Some(FinishReason::ContentFilter) => "content_filter",
        Some(FinishReason::Other(s)) => match s.as_str() {
            "max_tokens" | "length" | "model_context_window_exceeded" => "length",
            "tool_use" | "tool_calls" | "function_call" => "tool_calls",
            "refusal" | "content_filter" => "content_filter",
            _ => "stop",
        },
    };
    match (reason, tool_calls) {
        ("stop", true) => "tool_calls",
        ("tool_calls", false) => "stop",
        (r, _) => r,
    }
}

fn completion_body(resp: &ChatResponse) -> Vec<u8> {
    completion_body_at(resp, ids::unix_now())
}

/// The answer written by hand when it has no tool calls and cites no search results (nearly
/// every answer), else by `serde_json` from the [`Completion`] structs; the same bytes either
/// way (checked by a test).
fn completion_body_at(resp: &ChatResponse, created: u64) -> Vec<u8> {
    let id = match &resp.id {
        Some(id) => std::borrow::Cow::Borrowed(id.as_str()),
        None => std::borrow::Cow::Owned(ids::new_id("chatcmpl-")),
    };
    // Sized for the whole body up front (the envelope is ~350 bytes): `to_vec` starts small
    // and reallocates as it grows.
    let text = resp.content.len() + resp.reasoning.as_ref().map_or(0, String::len);
    let mut out = Vec::with_capacity(512 + text + text / 8);
    let block_order = answer_order(resp);
    // Nothing to place, and no allocation, on an answer without citations.
    let citations = web_search::url_citations(resp);
    if resp.tool_calls.is_empty() && citations.is_empty() {
        out.extend_from_slice(b"{\"id\":");
        json_str(&mut out, &id);
        out.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
        json_uint(&mut out, created);
        out.extend_from_slice(b",\"model\":");
        json_str(&mut out, &resp.model);
        out.extend_from_slice(b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        json_str(&mut out, &resp.content);
        out.extend_from_slice(b",\"refusal\":null");
        if let Some(reasoning) = &resp.reasoning {
            out.extend_from_slice(b",\"reasoning_content\":");
            json_str(&mut out, reasoning);
        }
        if !resp.thinking.is_empty() {
            out.extend_from_slice(b",\"thinking_blocks\":[");
            for (k, block) in resp.thinking.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                OutThinking::from(block).write(&mut out);
            }
            out.push(b']');
        }
        if !block_order.is_empty() {
            out.extend_from_slice(b",\"block_order\":");
            block_order_json(&mut out, &block_order);
        }
        out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":");
        json_str(&mut out, finish_reason(resp.finish_reason.as_ref(), false));
        out.extend_from_slice(b"}],\"usage\":");
        usage_json(&mut out, &resp.usage);
        out.push(b'}');
        return out;
    }
    let content = if resp.content.is_empty() && !resp.tool_calls.is_empty() {
        None
    } else {
        Some(resp.content.as_str())
    };
    let body = Completion {
        id: &id,
        object: "chat.completion",
        created,
        model: &resp.model,
        choices: [Choice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content,
                refusal: None,
                annotations: citations.iter().map(OutAnnotation::from).collect(),
                reasoning_content: resp.reasoning.as_deref(),
                thinking_blocks: resp.thinking.iter().map(OutThinking::from).collect(),
                block_order,
                tool_calls: resp
                    .tool_calls
                    .iter()
                    .map(|c| OutToolCall {
                        id: &c.id,
                        r#type: "function",
                        function: OutFunction { name: &c.name, arguments: arguments_text(&c.arguments) },
                    })
                    .collect(),
            },
            logprobs: None,
            finish_reason: finish_reason(resp.finish_reason.as_ref(), !resp.tool_calls.is_empty()),
        }],
        usage: out_usage(&resp.usage),
    };
    match serde_json::to_writer(&mut out, &body) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Stream

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// Present (as `null` or the figures) only when the client asked for usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<OutUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a [OutAnnotation<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_blocks: Option<&'a [OutThinking<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_order: Option<&'a [BlockKind]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    function: ToolDeltaFunction<'a>,
}

#[derive(Serialize)]
struct ToolDeltaFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct StreamError<'a> {
    error: crate::error::OpenAiError<'a>,
}

/// `chat.completion.chunk`s: a role chunk first, content deltas, a finish chunk, the usage chunk
/// when asked for, then `data: [DONE]`. A failure after commit is `data: {"error":…}` and the
/// stream closes without `[DONE]`, so no client mistakes it for a complete answer.
///
/// Reasoning streams as `reasoning_content` deltas. Claude's signed thinking blocks (their
/// full text and signature, and whole redacted blocks) come in one chunk right before the
/// finish chunk, `{"thinking_blocks": [...]}`, with `"block_order": [...]` beside them when
/// the answer's blocks were not in the usual order (thinking between tool calls; see
/// [`block_order`]). The client keeps them and sends them back on the assistant turn, which
/// Anthropic requires in a tool loop with thinking on. Once, whole, and in a chunk of their
/// own: the SDKs' stream accumulators keep an unknown delta field the first time it comes
/// (openai-python's `accumulate_delta` sets a new key as it is; openai-node's
/// `Object.assign`s it onto the message), but openai-python raises on a list that comes again
/// without `index`es in its entries, and openai-node keeps only the last one; a client that
/// stops reading at the finish reason has read them by then, and the finish chunk stays as it
/// always was. (LiteLLM streams one entry per text fragment instead, as they come; a client
/// that concatenates entries gets the same blocks from either.)
///
/// A searched answer's citations ([`Self::citing`]) come the way OpenAI's search models send
/// them, and for the same reasons once: `{"annotations": [...]}` in a chunk of their own
/// before the finish chunk (and before the thinking blocks' chunk).
pub(crate) struct OpenAiEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    /// `data: {"id":…,"model":…,"choices":[{"index":0,"delta":`: what every chunk of this
    /// stream starts with, serialized once. Text deltas, nearly every event of a stream, are
    /// this, the delta, and [`Self::tail`]; the same bytes the serde structs would write.
    head: Vec<u8>,
    /// Where `,"choices":` starts in `head`: the usage chunk has no choice.
    envelope: usize,
    /// The tool calls sent so far: a call's position here is the `index` the client sees, as
    /// the SDKs accumulate deltas positionally (openai-python's `tool_calls[index]` on a
    /// one-call list raises at index 1 and appends every argument fragment as a call of its
    /// own), and upstream indexes are not 0, 1, 2… among the calls.
    calls: ToolCallSlots,
    /// The reasoning streamed since the last thinking seal: the text of the block a
    /// signature ends. Empty, and never allocated, in streams without reasoning.
    thinking: String,
    /// The blocks sealed so far, for the client's `thinking_blocks` at the end.
    sealed: Vec<ThinkingBlock>,
    order: StreamBlockOrder,
    /// The citations of search results so far, placed in the text as it streams; only when
    /// the request searched, so other streams do no work for them.
    citations: Option<StreamCitations>,
}

impl OpenAiEncoder {
    pub(crate) fn new(model: String, include_usage: bool) -> OpenAiEncoder {
        let id = ids::new_id("chatcmpl-");
        let created = ids::unix_now();
        let mut head = Vec::with_capacity(96 + id.len() + model.len());
        head.extend_from_slice(b"data: {\"id\":");
        json_str(&mut head, &id);
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        head.extend_from_slice(created.to_string().as_bytes());
        head.extend_from_slice(b",\"model\":");
        json_str(&mut head, &model);
        let envelope = head.len();
        head.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        OpenAiEncoder {
            id,
            created,
            model,
            include_usage,
            started: false,
            head,
            envelope,
            calls: ToolCallSlots::new(),
            thinking: String::new(),
            sealed: Vec::new(),
            order: StreamBlockOrder::default(),
            citations: None,
        }
    }

    /// Sends the answer's citations of web search results as `annotations`, when `searched`
    /// (the request asked for a search).
    pub(crate) fn citing(mut self, searched: bool) -> OpenAiEncoder {
        self.citations = searched.then(StreamCitations::default);
        self
    }

    /// The client's index for this fragment's call: its position among the calls.
    fn call_index(&mut self, delta: &ToolCallDelta) -> u32 {
        let slot = self.calls.place(delta);
        if slot.starts {
            self.order.tool_call();
        }
        u32::try_from(slot.position).unwrap_or(u32::MAX)
    }

    /// The chunk that ends the choice: an empty delta and the finish reason.
    fn finish_chunk(&self, out: &mut Vec<u8>, reason: &str) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"{},\"logprobs\":null,\"finish_reason\":");
        json_str(out, reason);
        out.extend_from_slice(if self.include_usage { b"}],\"usage\":null}\n\n" } else { b"}]}\n\n" });
    }

    /// The usage chunk (`stream_options.include_usage`): no choice, the figures.
    fn usage_chunk(&self, out: &mut Vec<u8>, usage: &Usage) {
        out.extend_from_slice(self.head.get(..self.envelope).unwrap_or_default());
        out.extend_from_slice(b",\"choices\":[],\"usage\":");
        usage_json(out, usage);
        out.extend_from_slice(b"}\n\n");
    }

    /// What follows the delta of a chunk that does not finish the stream.
    fn tail(&self) -> &'static [u8] {
        if self.include_usage {
            b",\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        } else {
            b",\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        }
    }

    /// A chunk whose delta is `{<field>"text"}`, `field` being e.g. `"content":`.
    fn text_chunk(&self, out: &mut Vec<u8>, field: &[u8], text: &str) {
        out.extend_from_slice(&self.head);
        out.push(b'{');
        out.extend_from_slice(field);
        json_str(out, text);
        out.push(b'}');
        out.extend_from_slice(self.tail());
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish: Option<&str>) {
        let choices = [ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }];
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: self.include_usage.then_some(None),
        };
        respond::data_frame(out, &chunk);
    }
}

impl Encoder for OpenAiEncoder {
    fn event(&mut self, ev: StreamEvent, out: &mut Vec<u8>) -> bool {
        if !self.started && !matches!(ev, StreamEvent::Error { .. } | StreamEvent::Usage { .. }) {
            self.started = true;
            self.text_chunk(out, b"\"role\":\"assistant\",\"content\":", "");
        }
        match ev {
            StreamEvent::TextDelta { text } => {
                self.text_chunk(out, b"\"content\":", &text);
                self.order.text(&text);
                if let Some(citations) = &mut self.citations {
                    citations.text(&text);
                }
                false
            }
            StreamEvent::ReasoningDelta { text } => {
                self.text_chunk(out, b"\"reasoning_content\":", &text);
                self.thinking.push_str(&text);
                self.order.reasoning(&text);
                false
            }
            StreamEvent::ThinkingSeal { seal } => {
                self.order.seal(&seal);
                let block = match seal {
                    ThinkingSeal::Signature(signature) => {
                        ThinkingBlock::Thinking { thinking: std::mem::take(&mut self.thinking), signature }
                    }
                    // Reasoning streamed before it and never signed cannot be sent back to
                    // Anthropic; it reached the client as `reasoning_content` already.
                    ThinkingSeal::Redacted(data) => {
                        self.thinking.clear();
                        ThinkingBlock::Redacted { data }
                    }
                };
                self.sealed.push(block);
                false
            }
            StreamEvent::ToolCall { delta } => {
                let index = self.call_index(&delta);
                let ToolCallDelta { id, name, arguments, .. } = &delta;
                let tool = ToolDelta {
                    index,
                    id: id.as_deref(),
                    r#type: id.as_ref().map(|_| "function"),
                    function: ToolDeltaFunction { name: name.as_deref(), arguments },
                };
                self.chunk(out, Delta { tool_calls: Some([tool]), ..Delta::default() }, None);
                false
            }
            // Citations of search results become `annotations` at the end; the rest is not
            // sent, as in a JSON answer (see `order_of`).
            StreamEvent::Citation { citation } => {
                if let Some(citations) = &mut self.citations {
                    citations.citation(&citation);
                }
                false
            }
            StreamEvent::Native { .. } | StreamEvent::NativeField { .. } => false,
            // Text blocks count in `block_order` as in a JSON answer.
            StreamEvent::TextEnd => {
                self.order.text_end();
                if let Some(citations) = &mut self.citations {
                    citations.text_end();
                }
                false
            }
            StreamEvent::Usage { .. } => false,
            StreamEvent::Done { end } => {
                // Annotations, and sealed blocks (with their order), each go in one chunk of
                // their own: a list field that arrives twice makes openai-python's stream
                // accumulator raise (it merges list entries by an `index` these have none
                // of), and openai-node's replaces the list with each arrival.
                let order = self.order.finish(false);
                let cited = self.citations.as_mut().map(StreamCitations::finish).unwrap_or_default();
                if !cited.is_empty() {
                    let annotations: Vec<OutAnnotation<'_>> = cited.iter().map(OutAnnotation::from).collect();
                    self.chunk(out, Delta { annotations: Some(&annotations), ..Delta::default() }, None);
                }
                if !self.sealed.is_empty() {
                    let blocks: Vec<OutThinking<'_>> = self.sealed.iter().map(OutThinking::from).collect();
                    let delta = Delta {
                        thinking_blocks: Some(&blocks),
                        block_order: (!order.is_empty()).then_some(&order[..]),
                        ..Delta::default()
                    };
                    self.chunk(out, delta, None);
                }
                self.finish_chunk(out, finish_reason(end.finish_reason.as_ref(), !self.calls.is_empty()));
                if self.include_usage {
                    self.usage_chunk(out, &end.usage);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                true
            }
            StreamEvent::Error { error } => {
                let api = ApiError::from_backend(&error);
                respond::data_frame(out, &StreamError { error: api.openai_error() });
                true
            }
        }
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": keep-alive\n\n");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn templated_chunks_are_the_bytes_serde_writes() {
        for include_usage in [false, true] {
            let enc = super::OpenAiEncoder::new("m\"odel\u{1}é".into(), include_usage);
            for text in ["", "Hello", "a \"quoted\"\n\\ line\u{7}", "日本語 🎉"] {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                enc.text_chunk(&mut fast, b"\"content\":", text);
                enc.chunk(&mut slow, super::Delta { content: Some(text), ..super::Delta::default() }, None);
                assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                enc.text_chunk(&mut fast, b"\"reasoning_content\":", text);
                let delta = super::Delta { reasoning_content: Some(text), ..super::Delta::default() };
                enc.chunk(&mut slow, delta, None);
                assert_eq!(fast, slow);
            }
            for reason in ["stop", "length", "tool_calls", "odd \"reason\""] {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                enc.finish_chunk(&mut fast, reason);
                enc.chunk(&mut slow, super::Delta::default(), Some(reason));
                assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
            }
            for usage in [super::Usage::default(), usage_sample()] {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                enc.usage_chunk(&mut fast, &usage);
                let chunk = super::Chunk {
                    id: &enc.id,
                    object: "chat.completion.chunk",
                    created: enc.created,
                    model: &enc.model,
                    choices: &[],
                    usage: Some(Some(super::out_usage(&usage))),
                };
                super::respond::data_frame(&mut slow, &chunk);
                assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
            }
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            enc.text_chunk(&mut fast, b"\"role\":\"assistant\",\"content\":", "");
            let delta =
                super::Delta { role: Some("assistant"), content: Some(""), ..super::Delta::default() };
            enc.chunk(&mut slow, delta, None);
            assert_eq!(fast, slow);
        }
    }

    fn usage_sample() -> super::Usage {
        super::Usage {
            input_tokens: 4_000_000_000,
            output_tokens: 1_000_000_000,
            cache_read_tokens: 7,
            reasoning_tokens: 12,
            ..super::Usage::default()
        }
    }

    /// The hand-written answer is the bytes the serde structs write, on answers of every
    /// text-only shape (escapes, non-ASCII, reasoning or not, thinking blocks or not, a block
    /// order or not, every finish reason, large usage).
    #[test]
    fn the_written_answer_is_the_bytes_serde_writes() {
        let texts = ["", "Hello! How can I help you today?", "a \"q\"\n\\ \u{1}\u{7f}", "日本語 🎉"];
        let reasons = [
            None,
            Some(FinishReason::Length),
            Some(FinishReason::ContentFilter),
            Some(FinishReason::ToolCalls),
        ];
        let mut ordered = 0;
        for (i, content) in texts.iter().enumerate() {
            for (j, reason) in reasons.iter().enumerate() {
                let mut resp = ChatResponse::empty("b", texts[(i + j) % texts.len()]);
                resp.id = (j % 2 == 0).then(|| format!("chatcmpl-{i}\"{j}"));
                resp.content = (*content).to_owned();
                resp.reasoning = (j > 1).then(|| texts[j % texts.len()].to_owned());
                resp.thinking = match (i + j) % 3 {
                    0 => Vec::new(),
                    1 => vec![ThinkingBlock::Thinking {
                        thinking: texts[j % texts.len()].to_owned(),
                        signature: texts[i].to_owned(),
                    }],
                    _ => vec![
                        ThinkingBlock::Redacted { data: texts[i].to_owned() },
                        ThinkingBlock::Thinking { thinking: (*content).to_owned(), signature: "sig".into() },
                    ],
                };
                // Thinking on both sides of the text: an order of its own.
                if resp.thinking.len() == 2 && !content.is_empty() {
                    let end = u32::try_from(content.len()).unwrap();
                    resp.order = vec![BlockKind::Thinking, BlockKind::Text(end), BlockKind::Thinking];
                    ordered += 1;
                }
                resp.finish_reason = reason.clone();
                resp.usage = if j == 3 { usage_sample() } else { Usage::default() };
                let fast = String::from_utf8(completion_body_at(&resp, 1_700_000_000)).unwrap();
                let fast_value: Value = serde_json::from_str(&fast).unwrap();
                // Byte for byte: the serde writer's bytes for the same value, in the same order.
                let reference = {
                    let body = Completion {
                        id: fast_value["id"].as_str().unwrap(),
                        object: "chat.completion",
                        created: 1_700_000_000,
                        model: &resp.model,
                        choices: [Choice {
                            index: 0,
                            message: OutMessage {
                                role: "assistant",
                                content: Some(&resp.content),
                                refusal: None,
                                annotations: Vec::new(),
                                reasoning_content: resp.reasoning.as_deref(),
                                thinking_blocks: resp.thinking.iter().map(OutThinking::from).collect(),
                                block_order: resp.order.clone(),
                                tool_calls: Vec::new(),
                            },
                            logprobs: None,
                            finish_reason: finish_reason(resp.finish_reason.as_ref(), false),
                        }],
                        usage: out_usage(&resp.usage),
                    };
                    serde_json::to_string(&body).unwrap()
                };
                assert_eq!(fast, reference);
            }
        }
        assert!(ordered > 1);
    }

    use claudette_core::{BackendError, ErrorKind, NativeBlock, StreamEnd, TextCitations};

    use super::*;

    fn cite(url: &str) -> Value {
        serde_json::json!({"type": "web_search_result_location", "url": url, "title": format!("T \"{url}\""),
                           "encrypted_index": "E", "cited_text": "c"})
    }

    /// Claude's searched answer: "Café " (5 characters, 6 bytes), the search, a sentence
    /// citing two results, and an uncited tail.
    fn searched(tool_call: bool) -> ChatResponse {
        let mut resp = ChatResponse::empty("b", "m");
        resp.content = ["Café ", "is open.", " Until 9."].concat();
        resp.native = vec![NativeBlock::anthropic(
            serde_json::json!({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}),
        )];
        resp.order = vec![BlockKind::Text(6), BlockKind::Native, BlockKind::Text(14), BlockKind::Text(23)];
        resp.citations =
            vec![TextCitations { end: 14, citations: vec![cite("https://a"), cite("https://b")] }];
        if tool_call {
            resp.tool_calls =
                vec![ToolCall { id: "c1".into(), name: "f".into(), arguments: serde_json::json!({}) }];
            resp.order.push(BlockKind::ToolCall);
        }
        resp.finish_reason = Some(FinishReason::Length);
        resp
    }

    fn annotation(url: &str, start: usize, end: usize) -> Value {
        serde_json::json!({"type": "url_citation", "url_citation":
            {"start_index": start, "end_index": end, "url": url, "title": format!("T \"{url}\"")}})
    }

    #[test]
    fn an_answer_citing_search_results_annotates_them_in_characters() {
        for tool_call in [false, true] {
            let text = String::from_utf8(completion_body_at(&searched(tool_call), 1)).unwrap();
            let body: Value = serde_json::from_str(&text).unwrap();
            let choice = &body["choices"][0];
            assert_eq!(
                choice["message"]["annotations"],
                serde_json::json!([annotation("https://a", 5, 13), annotation("https://b", 5, 13)]),
                "{text}"
            );
            assert_eq!(choice["message"]["content"], "Café is open. Until 9.", "{text}");
            assert_eq!(choice["finish_reason"], "length", "{text}");
            // OpenAI's place for them, right after `refusal`; no provider block in the answer.
            assert!(text.contains("\"refusal\":null,\"annotations\":[{\"type\":\"url_citation\""), "{text}");
            assert!(!text.contains("server_tool_use"), "{text}");
            assert_eq!(choice["message"].get("tool_calls").is_some(), tool_call, "{text}");
        }
        // Citations of something other than a search result (a document) are not annotations,
        // and an answer with none has no key at all.
        let mut documents = searched(false);
        documents.citations[0].citations =
            vec![serde_json::json!({"type": "char_location", "cited_text": "x"})];
        let text = String::from_utf8(completion_body_at(&documents, 1)).unwrap();
        assert!(!text.contains("annotations"), "{text}");
    }

    #[test]
    fn web_search_options_become_claudes_search_tool_after_the_function_tools() {
        let request = |options: Value| {
            serde_json::json!({"messages": [{"role": "user", "content": "news?"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "web_search_options": options})
        };
        let (r, _) = parse(request(serde_json::json!({
            "search_context_size": "high",
            "user_location": {"type": "approximate",
                              "approximate": {"city": "Paris", "country": "FR", "region": null, "timezone": "Europe/Paris"}}
        })))
        .unwrap();
        assert_eq!(r.native_tools.len(), 1);
        assert_eq!(r.native_tools[0].at, 1);
        assert_eq!(
            r.native_tools[0].spec,
            serde_json::json!({"type": "web_search_20250305", "name": "web_search", "user_location":
                {"type": "approximate", "city": "Paris", "country": "FR", "timezone": "Europe/Paris"}})
        );
        let (r, _) = parse(request(serde_json::json!({}))).unwrap();
        assert_eq!(
            r.native_tools[0].spec,
            serde_json::json!({"type": "web_search_20250305", "name": "web_search"})
        );
        for absent in [Value::Null, serde_json::json!({"user_location": null, "search_context_size": null})] {
            let (r, _) = parse(request(absent.clone())).unwrap();
            assert_eq!(r.native_tools.is_empty(), absent.is_null(), "{absent}");
        }
    }

    #[test]
    fn malformed_web_search_options_are_named_by_path() {
        let at = "web_search_options";
        for (options, param) in [
            (serde_json::json!(true), at.to_owned()),
            (serde_json::json!({"search_context_size": "huge"}), format!("{at}.search_context_size")),
            (serde_json::json!({"search_context_size": 3}), format!("{at}.search_context_size")),
            (serde_json::json!({"user_location": "Paris"}), format!("{at}.user_location")),
            (serde_json::json!({"user_location": {"approximate": {}}}), format!("{at}.user_location.type")),
            (
                serde_json::json!({"user_location": {"type": "exact", "approximate": {}}}),
                format!("{at}.user_location.type"),
            ),
            (
                serde_json::json!({"user_location": {"type": "approximate"}}),
                format!("{at}.user_location.approximate"),
            ),
            (
                serde_json::json!({"user_location": {"type": "approximate", "approximate": []}}),
                format!("{at}.user_location.approximate"),
            ),
            (
                serde_json::json!({"user_location": {"type": "approximate", "approximate": {"country": 33}}}),
                format!("{at}.user_location.approximate.country"),
            ),
        ] {
            let e = parse(serde_json::json!({"messages": [{"role": "user", "content": "x"}], "web_search_options": options}))
                .unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{options}");
            assert_eq!(e.param.as_deref(), Some(param.as_str()), "{options}: {}", e.message);
        }
    }

    fn parse(v: Value) -> Result<(ChatRequest, Option<String>), ApiError> {
        serde_json::from_value::<CompletionRequest>(v).unwrap().into_chat()
    }

    #[test]
    fn requests_map_to_the_neutral_shape() {
        let (r, model) = parse(serde_json::json!({
            "model": "auto",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is "}, {"type": "text", "text": "2+2?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":2,\"b\":2}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "4"}
            ],
            "max_completion_tokens": 50, "max_tokens": 10, "temperature": 0.2, "top_p": 0.9,
            "stop": "END", "stream": true, "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
            "base_url": "http://169.254.169.254/", "user": "u-1"
        }))
        .unwrap();
        assert_eq!(model.as_deref(), Some("auto"));
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1].content, "what is 2+2?");
        assert_eq!(r.messages[2].tool_calls[0].arguments, serde_json::json!({"a": 2, "b": 2}));
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(r.max_tokens, Some(50));
        assert_eq!(r.stop, vec!["END".to_owned()]);
        assert_eq!(r.tools[0].name, "add");
        assert_eq!(r.metadata["user"], "u-1");
        let (r, _) =
            parse(serde_json::json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"]}))
                .unwrap();
        assert_eq!(r.stop.len(), 2);
    }

    #[test]
    fn requests_we_cannot_honour_are_refused() {
        assert_eq!(parse(serde_json::json!({"model": "x"})).unwrap_err().param.as_deref(), Some("messages"));
        assert!(parse(serde_json::json!({"messages": []})).is_err());
        assert!(parse(serde_json::json!({"messages": [{"role": "user", "content": "x"}], "n": 2})).is_err());
        let audio = serde_json::json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]});
        assert_eq!(parse(audio).unwrap_err().param.as_deref(), Some("messages[0].content[0]"));
        assert!(parse(serde_json::json!({"messages": [{"role": "wizard", "content": "x"}]})).is_err());
        let bad_args = serde_json::json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]});
        assert!(parse(bad_args).is_err());
    }

    #[test]
    fn image_parts_are_images_where_they_stood() {
        let (r, _) = parse(serde_json::json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": "héllo "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.gif", "detail": "low"}},
                {"type": "text", "text": "world"}]}]}))
        .unwrap();
        let user = &r.messages[1];
        assert_eq!(user.content, "héllo world");
        let url = |u: &str| ImageSource::Url { url: u.into() };
        let png = ImageSource::Base64 { media_type: "image/png".into(), data: "iVBORw0KGgo=".into() };
        assert_eq!(
            user.images,
            [
                Image { at: 0, source: url("https://example.com/a.png") },
                Image { at: 7, source: png },
                Image { at: 7, source: url("https://example.com/b.gif") },
            ]
        );
        assert!(r.messages[0].images.is_empty());
    }

    const PDF_URL: &str = "data:application/pdf;base64,JVBERi0xLjcK";

    fn file_part(file: Value) -> Value {
        serde_json::json!({"type": "file", "file": file})
    }

    #[test]
    fn file_parts_are_documents_where_they_stood() {
        let (r, _) = parse(serde_json::json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "compare "},
                file_part(serde_json::json!({"file_data": PDF_URL, "filename": "a.pdf"})),
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": "with"},
                file_part(serde_json::json!({"file_data": PDF_URL, "file_id": null}))]},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [
                file_part(serde_json::json!({"file_data": PDF_URL, "filename": "r.pdf"}))]}]}))
        .unwrap();
        let pdf = |at: u32, title: Option<&str>| Document {
            citations: false,
            at,
            source: DocumentSource::Base64 { data: "JVBERi0xLjcK".into() },
            title: title.map(Into::into),
        };
        let user = &r.messages[0];
        assert_eq!(user.content, "compare with");
        assert_eq!(user.documents, [pdf(8, Some("a.pdf")), pdf(12, None)]);
        assert_eq!(user.images.iter().map(|i| i.at).collect::<Vec<_>>(), [8]);
        let tool = &r.messages[2];
        assert_eq!((tool.role, tool.content.as_str()), (Role::Tool, ""));
        assert_eq!(tool.documents, [pdf(0, Some("r.pdf"))]);
        r.checked_media().unwrap();
    }

    #[test]
    fn file_parts_that_cannot_be_carried_are_named() {
        let with = |role: &str, part: Value| {
            let e = parse(serde_json::json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": role, "content": [{"type": "text", "text": "see"}, part]}]}))
            .unwrap_err();
            (e.param.unwrap(), e.message)
        };
        let at = "messages[1].content[1].file";
        let (param, message) = with("user", file_part(serde_json::json!({"file_id": "file-abc"})));
        assert_eq!(param, format!("{at}.file_id"));
        assert!(message.contains("no Files API"), "{message}");
        for (data, why) in [
            ("data:text/plain;base64,aGk=", "only PDFs"),
            (
                "data:application/vnd.openxmlformats-officedocument.wordprocessingml.document;base64,UEs=",
                "only PDFs",
            ),
            ("data:application/pdf;base64,", "base64"),
            ("https://example.com/a.pdf", "data:<media type>;base64,<data>"),
            ("JVBERi0xLjcK", "data:<media type>;base64,<data>"),
        ] {
            let (param, message) = with("user", file_part(serde_json::json!({"file_data": data})));
            assert_eq!(param, format!("{at}.file_data"), "{data}");
            assert!(message.contains(why), "{data}: {message}");
        }
        assert_eq!(
            with("user", file_part(serde_json::json!({"filename": "a.pdf"}))).0,
            format!("{at}.file_data")
        );
        let named = serde_json::json!({"file_data": PDF_URL, "filename": 7});
        assert_eq!(with("user", file_part(named)).0, format!("{at}.filename"));
        assert_eq!(with("user", serde_json::json!({"type": "file"})).0, at);
        assert_eq!(with("user", serde_json::json!({"type": "file", "file": PDF_URL})).0, at);
        // On an assistant or system message.
        let pdf = file_part(serde_json::json!({"file_data": PDF_URL}));
        for role in ["assistant", "system"] {
            let (param, message) = with(role, pdf.clone());
            assert_eq!(param, "messages[1].content[1]", "{role}");
            assert!(message.contains("'user' or 'tool'"), "{message}");
        }
    }

    #[test]
    fn tool_messages_carry_their_image_parts() {
        let (r, _) = parse(serde_json::json!({"messages": [
            {"role": "user", "content": "shoot"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [
                {"type": "text", "text": "taken: "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]}]}))
        .unwrap();
        let tool = &r.messages[2];
        assert_eq!((tool.role, tool.content.as_str()), (Role::Tool, "taken: "));
        let png = ImageSource::Base64 { media_type: "image/png".into(), data: "iVBORw0K".into() };
        assert_eq!(tool.images, [Image { at: 7, source: png }]);
        r.checked_media().unwrap();
        let e = parse(serde_json::json!({"messages": [
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [
                {"type": "image_url", "image_url": {"url": "file:///tmp/a.png"}}]}]}))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].content[0].image_url.url"));
    }

    #[test]
    fn images_that_cannot_be_carried_are_named() {
        let with = |role: &str, part: Value| {
            let e = parse(serde_json::json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": role, "content": [{"type": "text", "text": "see"}, part]}]}))
            .unwrap_err();
            (e.param.unwrap(), e.message)
        };
        let url = |u: &str| serde_json::json!({"type": "image_url", "image_url": {"url": u}});
        let at_url = "messages[1].content[1].image_url.url";
        for (u, why) in [
            ("data:image/png,iVBORw0KGgo", "data:<media type>;base64,<data>"),
            ("data:image/png;base64,", "base64"),
            ("data:image/bmp;base64,Qk0=", "image/bmp"),
            ("ftp://example.com/a.png", "https://"),
            ("a.png", "https://"),
        ] {
            let (param, message) = with("user", url(u));
            assert_eq!(param, at_url, "{u}");
            assert!(message.contains(at_url) && message.contains(why), "{u}: {message}");
        }
        let (param, message) = with("assistant", url("https://example.com/a.png"));
        assert_eq!(param, "messages[1].content[1]");
        assert!(message.contains("role 'user'"), "{message}");
        assert_eq!(with("system", url("https://example.com/a.png")).0, "messages[1].content[1]");
        let bare = serde_json::json!({"type": "image_url", "image_url": "https://example.com/a.png"});
        assert_eq!(with("user", bare).0, "messages[1].content[1].image_url");
        let missing = serde_json::json!({"type": "image_url", "image_url": {"detail": "low"}});
        assert_eq!(with("user", missing).0, at_url);
        assert_eq!(
            with("user", serde_json::json!({"type": "image_url"})).0,
            "messages[1].content[1].image_url"
        );
        let number = serde_json::json!({"type": "image_url", "image_url": {"url": 7}});
        assert_eq!(with("user", number).0, at_url);
    }

    #[test]
    fn thinking_blocks_come_back_on_assistant_turns_only() {
        let turn = |role: &str, blocks: Value| {
            serde_json::json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": role, "content": "x", "thinking_blocks": blocks}]})
        };
        let (r, _) = parse(turn(
            "assistant",
            serde_json::json!([
                {"type": "thinking", "thinking": "t", "signature": "s", "cache_control": null},
                {"type": "thinking", "thinking": "unsigned"},
                {"type": "redacted_thinking", "data": "d"}]),
        ))
        .unwrap();
        assert_eq!(
            r.messages[1].thinking,
            [
                ThinkingBlock::Thinking { thinking: "t".into(), signature: "s".into() },
                ThinkingBlock::Thinking { thinking: "unsigned".into(), signature: String::new() },
                ThinkingBlock::Redacted { data: "d".into() },
            ]
        );
        assert!(parse(turn("assistant", Value::Null)).unwrap().0.messages[1].thinking.is_empty());
        let refused = |role: &str, blocks: Value| parse(turn(role, blocks)).unwrap_err().param.unwrap();
        let redacted = serde_json::json!([{"type": "redacted_thinking", "data": "d"}]);
        assert_eq!(refused("user", redacted), "messages[1].thinking_blocks");
        let cases = [
            (
                serde_json::json!([{"type": "thinking", "signature": "s"}]),
                "messages[1].thinking_blocks[0].thinking",
            ),
            (
                serde_json::json!([{"type": "redacted_thinking", "data": "d"}, {"type": "redacted_thinking"}]),
                "messages[1].thinking_blocks[1].data",
            ),
            (serde_json::json!([{"type": "reasoning", "text": "t"}]), "messages[1].thinking_blocks[0].type"),
        ];
        for (blocks, param) in cases {
            assert_eq!(refused("assistant", blocks), param);
        }
    }

    #[test]
    fn stream_frames_follow_openai() {
        let mut enc = OpenAiEncoder::new("m".into(), true);
        let mut out = Vec::new();
        assert!(!enc.event(StreamEvent::text("Hi"), &mut out));
        assert!(!enc.event(
            StreamEvent::ToolCall {
                delta: ToolCallDelta {
                    index: 0,
                    id: Some("c1".into()),
                    name: Some("f".into()),
                    arguments: "{".into()
                }
            },
            &mut out
        ));
        let end =
            StreamEnd { finish_reason: Some(FinishReason::Stop), usage: Usage::reported(3, 2), cost: 0.0 };
        assert!(enc.event(StreamEvent::Done { end }, &mut out));
        let text = String::from_utf8(out.clone()).unwrap();
        let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
        assert_eq!(frames.len(), 6, "{text}");
        let role: Value = serde_json::from_str(frames[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert!(role["usage"].is_null() && role.as_object().unwrap().contains_key("usage"));
        let tool: Value = serde_json::from_str(frames[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(tool["choices"][0]["delta"]["tool_calls"][0]["type"], "function");
        let finish: Value = serde_json::from_str(frames[3].strip_prefix("data: ").unwrap()).unwrap();
        // The answer called a tool: an upstream `stop` does not say otherwise.
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        let usage: Value = serde_json::from_str(frames[4].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], 5);
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(frames[5], "data: [DONE]");
    }

    #[test]
    fn a_failure_after_commit_is_an_error_frame_without_done() {
        let mut enc = OpenAiEncoder::new("m".into(), false);
        let mut out = Vec::new();
        enc.event(StreamEvent::text("Hi"), &mut out);
        let error = BackendError::new(ErrorKind::StreamInterrupted, "cut").with_backend("b");
        assert!(enc.event(StreamEvent::Error { error }, &mut out));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("[DONE]"));
        let last = text.split("\n\n").filter(|f| !f.is_empty()).last().unwrap();
        let v: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["error"]["code"], "stream_interrupted");
        assert!(!text.contains("\"usage\""));
    }

    use BlockKind::{Text, Thinking as Th, ToolCall as Tc};

    /// An assistant turn of two signed thinking blocks, `content` and two calls, with
    /// `block_order` set to `order` (absent when `None`).
    fn turn_with_order(content: &str, order: Option<Value>) -> Value {
        let mut turn = serde_json::json!({"role": "assistant", "content": content,
            "thinking_blocks": [
                {"type": "thinking", "thinking": "first", "signature": "S1"},
                {"type": "thinking", "thinking": "second", "signature": "S2"}],
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
        if let Some(order) = order {
            turn["block_order"] = order;
        }
        serde_json::json!({"messages": [{"role": "user", "content": "go"}, turn]})
    }

    /// A body as the handler reads it: a value serde refuses is named by [`locate`].
    fn parse_body(v: &Value) -> Result<(ChatRequest, Option<String>), ApiError> {
        parse_located::<CompletionRequest>(v.to_string().as_bytes(), locate, |path, inner| {
            invalid_value(path, &inner)
        })?
        .into_chat()
    }

    #[test]
    fn block_order_comes_back_as_the_turns_order() {
        let order = serde_json::json!(["thinking", "tool_call", "thinking", {"text": 6}, "tool_call"]);
        let (r, _) = parse_body(&turn_with_order("héllo", Some(order))).unwrap();
        let turn = &r.messages[1];
        assert_eq!(turn.order, [Th, Tc, Th, Text(6), Tc]);
        let kinds: Vec<&str> = turn
            .blocks()
            .unwrap()
            .iter()
            .map(|b| match b {
                Block::Thinking(ThinkingBlock::Thinking { thinking, .. }) => thinking.as_str(),
                Block::Thinking(ThinkingBlock::Redacted { .. }) => "redacted",
                Block::Text { text, .. } => text,
                Block::ToolCall { call, .. } => call.id.as_str(),
                Block::Native(n) => n.kind(),
            })
            .collect();
        assert_eq!(kinds, ["first", "c1", "second", "héllo", "c2"]);
        // Without it, absent or empty, and in the usual order: the turn as before, no order.
        let usual = serde_json::json!(["thinking", "thinking", {"text": 6}, "tool_call", "tool_call"]);
        for order in [None, Some(Value::Null), Some(serde_json::json!([])), Some(usual)] {
            let (r, _) = parse_body(&turn_with_order("héllo", order.clone())).unwrap();
            assert!(r.messages[1].order.is_empty(), "{order:?}");
            assert_eq!(r.messages[1].thinking.len(), 2);
        }
    }

    #[test]
    fn a_block_order_that_does_not_fit_its_turn_is_named() {
        let refused = |content: &str, order: Value| {
            let e = parse_body(&turn_with_order(content, Some(order))).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            (e.param.unwrap().into_owned(), e.message.into_owned())
        };
        let at = "messages[1].block_order";
        // Not an order at all.
        assert_eq!(refused("hi", serde_json::json!("thinking")).0, at);
        assert_eq!(refused("hi", serde_json::json!(["thinking", "think"])).0, format!("{at}[1]"));
        assert_eq!(refused("hi", serde_json::json!([{"text": -1}])).0, format!("{at}[0]"));
        // An order, but not this turn's.
        for (order, why) in [
            (
                serde_json::json!(["thinking", "thinking", "thinking", {"text": 2}, "tool_call", "tool_call"]),
                "thinking",
            ),
            (serde_json::json!(["thinking", "tool_call", "thinking", {"text": 2}]), "tool calls"),
            (serde_json::json!(["thinking", "tool_call", "thinking", {"text": 9}, "tool_call"]), "byte 9"),
            (
                serde_json::json!(["thinking", "tool_call", "thinking", {"text": 1}, "tool_call"]),
                "1 of 2 bytes",
            ),
        ] {
            let (param, message) = refused("hi", order.clone());
            assert_eq!(param, at, "{order}");
            assert!(message.contains(why), "{order}: {message}");
        }
        // Inside a character.
        let (param, message) =
            refused("é", serde_json::json!(["thinking", {"text": 1}, "thinking", "tool_call", "tool_call"]));
        assert_eq!(param, at);
        assert!(message.contains("between characters"), "{message}");
        // Only an assistant turn has blocks to order.
        let e = parse_body(&serde_json::json!({"messages": [
            {"role": "user", "content": "hi", "block_order": [{"text": 2}, "thinking"]}]}))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].block_order"));
    }

    fn interleaved_answer(content: &str, order: Vec<BlockKind>) -> ChatResponse {
        let mut resp = ChatResponse::empty("b", "m");
        resp.content = content.into();
        resp.thinking = vec![
            ThinkingBlock::Thinking { thinking: "first".into(), signature: "S1".into() },
            ThinkingBlock::Redacted { data: "R".into() },
        ];
        resp.tool_calls = vec![
            ToolCall { id: "c1".into(), name: "f".into(), arguments: serde_json::json!({}) },
            ToolCall { id: "c2".into(), name: "f".into(), arguments: serde_json::json!({"a": 1}) },
        ];
        resp.order = order;
        resp.finish_reason = Some(FinishReason::ToolCalls);
        resp
    }

    #[test]
    fn an_answer_says_its_block_order_when_it_has_one() {
        let message = |resp: &ChatResponse| {
            let body: Value = serde_json::from_slice(&completion_body_at(resp, 1)).unwrap();
            body["choices"][0]["message"].clone()
        };
        let m = message(&interleaved_answer("日本", vec![Th, Tc, Th, Text(6), Tc]));
        assert_eq!(
            m["block_order"],
            serde_json::json!(["thinking", "tool_call", "thinking", {"text": 6}, "tool_call"])
        );
        assert_eq!(m["content"], "日本");
        assert_eq!(m["thinking_blocks"].as_array().unwrap().len(), 2);
        assert_eq!(m["tool_calls"].as_array().unwrap().len(), 2);
        // Right after `thinking_blocks`, in the bytes (a parsed map is sorted).
        let text = String::from_utf8(completion_body_at(
            &interleaved_answer("日本", vec![Th, Tc, Th, Text(6), Tc]),
            1,
        ))
        .unwrap();
        let at = |k: &str| text.find(k).unwrap();
        assert!(
            at("\"thinking_blocks\"") < at("\"block_order\"") && at("\"block_order\"") < at("\"tool_calls\"")
        );
        // The message sent back as it came is the same turn, in the same order.
        let (r, _) =
            parse_body(&serde_json::json!({"messages": [{"role": "user", "content": "go"}, m]})).unwrap();
        assert_eq!(r.messages[1].order, [Th, Tc, Th, Text(6), Tc]);
        assert_eq!(r.messages[1].thinking, interleaved_answer("", Vec::new()).thinking);

        // The usual order, none, or one that does not fit the answer (sent in the usual order):
        // no field.
        for order in [vec![], vec![Th, Th, Text(6), Tc, Tc], vec![Th, Tc, Text(6)]] {
            let m = message(&interleaved_answer("日本", order.clone()));
            assert!(m.get("block_order").is_none(), "{order:?}: {m}");
        }
        // A text-only answer (written by hand) carries it too.
        let mut text_only = interleaved_answer("ab", vec![Th, Text(1), Th, Text(2)]);
        text_only.tool_calls.clear();
        text_only.finish_reason = Some(FinishReason::Stop);
        let m = message(&text_only);
        assert_eq!(m["block_order"], serde_json::json!(["thinking", {"text": 1}, "thinking", {"text": 2}]));
    }

    #[test]
    fn the_written_block_order_is_the_bytes_serde_writes() {
        for order in [vec![Th], vec![Text(0)], vec![Th, Tc, Th, Text(4_000_000_000), Tc], vec![Tc, Text(7)]] {
            let mut fast = Vec::new();
            block_order_json(&mut fast, &order);
            assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(&order).unwrap());
        }
    }

    /// Every chunk's JSON of an encoded stream, `[DONE]` left out.
    fn encode(events: Vec<StreamEvent>) -> Vec<Value> {
        encode_with(OpenAiEncoder::new("m".into(), true), events)
    }

    fn encode_with(mut enc: OpenAiEncoder, events: Vec<StreamEvent>) -> Vec<Value> {
        let mut out = Vec::new();
        for ev in events {
            enc.event(ev, &mut out);
        }
        String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn call_delta(index: u32, id: Option<&str>, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index,
                id: id.map(Into::into),
                name: id.map(|_| "f".into()),
                arguments: arguments.into(),
            },
        }
    }

    fn signed(signature: &str) -> StreamEvent {
        StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature(signature.into()) }
    }

    fn done() -> StreamEvent {
        StreamEvent::Done {
            end: StreamEnd {
                finish_reason: Some(FinishReason::ToolCalls),
                usage: Usage::reported(1, 2),
                cost: 0.0,
            },
        }
    }

    #[test]
    fn a_searched_stream_sends_its_annotations_once_before_the_finish_chunk() {
        let events = || {
            vec![
                StreamEvent::text("Café "),
                StreamEvent::TextEnd,
                StreamEvent::Native {
                    block: NativeBlock::anthropic(serde_json::json!({"type": "server_tool_use", "id": "s"})),
                },
                StreamEvent::Citation { citation: cite("https://a") },
                StreamEvent::Citation { citation: cite("https://b") },
                StreamEvent::text("is "),
                StreamEvent::text("open."),
                StreamEvent::TextEnd,
                StreamEvent::text(" Until 9."),
                StreamEvent::TextEnd,
                StreamEvent::ReasoningDelta { text: "t".into() },
                signed("S"),
                done(),
            ]
        };
        let chunks = encode_with(OpenAiEncoder::new("m".into(), true).citing(true), events());
        let with = |key: &str| -> Vec<usize> {
            (0..chunks.len()).filter(|&i| chunks[i]["choices"][0]["delta"].get(key).is_some()).collect()
        };
        let at = with("annotations");
        assert_eq!(at.len(), 1, "{chunks:?}");
        let delta = &chunks[at[0]]["choices"][0]["delta"];
        assert_eq!(
            delta,
            &serde_json::json!({"annotations": [annotation("https://a", 5, 13), annotation("https://b", 5, 13)]})
        );
        assert!(chunks[at[0]]["choices"][0]["finish_reason"].is_null());
        // Then the thinking blocks' chunk, then the finish chunk.
        assert_eq!(with("thinking_blocks"), [at[0] + 1]);
        assert_eq!(chunks[at[0] + 2]["choices"][0]["finish_reason"], "stop");
        let text: String =
            chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "Café is open. Until 9.");

        // A request that did not search: nothing placed, nothing sent.
        let plain = encode_with(OpenAiEncoder::new("m".into(), true), events());
        assert!(plain.iter().all(|c| c["choices"][0]["delta"].get("annotations").is_none()));
        assert_eq!(plain.len(), chunks.len() - 1);
        // A search whose answer cites nothing: no chunk either.
        let uncited = encode_with(
            OpenAiEncoder::new("m".into(), false).citing(true),
            vec![StreamEvent::text("hi"), StreamEvent::TextEnd, done()],
        );
        assert!(uncited.iter().all(|c| c["choices"][0]["delta"].get("annotations").is_none()));
    }

    /// The `block_order` deltas of a stream.
    fn streamed_orders(chunks: &[Value]) -> Vec<Value> {
        chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("block_order").cloned()).collect()
    }

    #[test]
    fn a_stream_says_its_block_order_once_before_the_finish_chunk() {
        // Anthropic's interleaved answer as events: thinking, call, thinking, text, call (the
        // upstream numbers its calls 1 and 4, among all its blocks).
        let chunks = encode(vec![
            StreamEvent::Usage { usage: Usage::reported(1, 0) },
            StreamEvent::ReasoningDelta { text: "fir".into() },
            StreamEvent::ReasoningDelta { text: "st".into() },
            signed("S1"),
            call_delta(1, Some("c1"), ""),
            call_delta(1, None, "{}"),
            StreamEvent::ReasoningDelta { text: "second".into() },
            signed("S2"),
            StreamEvent::text("日"),
            StreamEvent::text("本"),
            call_delta(4, Some("c2"), "{\"a\":1}"),
            done(),
        ]);
        let order = serde_json::json!(["thinking", "tool_call", "thinking", {"text": 6}, "tool_call"]);
        assert_eq!(streamed_orders(&chunks), std::slice::from_ref(&order));
        let at = chunks.iter().position(|c| c["choices"][0]["delta"].get("block_order").is_some()).unwrap();
        let own = &chunks[at]["choices"][0];
        // With the sealed blocks, all in this one chunk: a list that arrived twice would make
        // openai-python's accumulator raise.
        let mut keys: Vec<&String> = own["delta"].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["block_order", "thinking_blocks"], "{own}");
        assert_eq!(own["delta"]["thinking_blocks"].as_array().unwrap().len(), 2, "{own}");
        let lists =
            chunks.iter().filter(|c| c["choices"][0]["delta"].get("thinking_blocks").is_some()).count();
        assert_eq!(lists, 1);
        assert!(own["finish_reason"].is_null());
        assert_eq!(chunks[at + 1]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[at + 1]["choices"][0]["delta"], serde_json::json!({}));

        // The message a client assembles from the chunks goes back as the same turn.
        let mut content = String::new();
        let mut thinking_blocks = Vec::new();
        let mut calls: Vec<Value> = Vec::new();
        for c in &chunks {
            let delta = &c["choices"][0]["delta"];
            content.push_str(delta["content"].as_str().unwrap_or_default());
            thinking_blocks.extend(delta["thinking_blocks"].as_array().cloned().unwrap_or_default());
            for t in delta["tool_calls"].as_array().cloned().unwrap_or_default() {
                let i = t["index"].as_u64().unwrap() as usize;
                if i == calls.len() {
                    calls.push(t.clone());
                } else {
                    let args = format!(
                        "{}{}",
                        calls[i]["function"]["arguments"].as_str().unwrap(),
                        t["function"]["arguments"].as_str().unwrap()
                    );
                    calls[i]["function"]["arguments"] = Value::String(args);
                }
            }
        }
        let turn = serde_json::json!({"role": "assistant", "content": content, "thinking_blocks": thinking_blocks,
                                      "tool_calls": calls, "block_order": order});
        let (r, _) =
            parse_body(&serde_json::json!({"messages": [{"role": "user", "content": "go"}, turn]})).unwrap();
        let ids: Vec<String> = r.messages[1]
            .blocks()
            .unwrap()
            .iter()
            .map(|b| match b {
                Block::Thinking(ThinkingBlock::Thinking { thinking, signature }) => {
                    format!("{thinking}/{signature}")
                }
                Block::Thinking(ThinkingBlock::Redacted { data }) => data.clone(),
                Block::Text { text, .. } => (*text).to_owned(),
                Block::ToolCall { call, .. } => call.id.clone(),
                Block::Native(n) => n.kind().to_owned(),
            })
            .collect();
        assert_eq!(ids, ["first/S1", "c1", "second/S2", "日本", "c2"]);
    }

    /// Only sealed thinking is a block the client can send back: reasoning no seal ended has
    /// no place in the order, and a stream with no seal, in the usual order, or cut short has
    /// no order at all.
    #[test]
    fn a_streams_order_counts_only_sealed_thinking() {
        // Text, reasoning a redacted block follows (the client never gets the reasoning as a
        // block), the redacted block, a call, a signature with no reasoning of its own, text.
        let chunks = encode(vec![
            StreamEvent::text("ab"),
            StreamEvent::ReasoningDelta { text: "lost".into() },
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted("R".into()) },
            call_delta(0, Some("c1"), "{}"),
            signed("S"),
            StreamEvent::text("c"),
            StreamEvent::ReasoningDelta { text: "trailing".into() },
            done(),
        ]);
        let blocks: Vec<Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["thinking_blocks"].as_array().cloned())
            .flatten()
            .collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            streamed_orders(&chunks),
            [serde_json::json!([{"text": 2}, "thinking", "tool_call", "thinking", {"text": 3}])]
        );
        // The usual order.
        let usual = encode(vec![
            StreamEvent::ReasoningDelta { text: "t".into() },
            signed("S"),
            StreamEvent::text("hi"),
            call_delta(0, Some("c1"), "{}"),
            call_delta(1, Some("c2"), "{}"),
            done(),
        ]);
        assert!(streamed_orders(&usual).is_empty());
        // Reasoning no provider signed (Qwen, DeepSeek) between text and a call: no thinking
        // blocks, so no order.
        let unsigned = encode(vec![
            StreamEvent::text("hi"),
            StreamEvent::ReasoningDelta { text: "hmm".into() },
            call_delta(0, Some("c1"), "{}"),
            done(),
        ]);
        assert!(streamed_orders(&unsigned).is_empty());
        // A stream that fails has no order either.
        let cut = encode(vec![
            StreamEvent::ReasoningDelta { text: "t".into() },
            signed("S"),
            call_delta(0, Some("c1"), "{}"),
            StreamEvent::ReasoningDelta { text: "u".into() },
            signed("S2"),
            StreamEvent::Error { error: BackendError::new(ErrorKind::StreamInterrupted, "cut") },
        ]);
        assert!(streamed_orders(&cut).is_empty());
    }
}
