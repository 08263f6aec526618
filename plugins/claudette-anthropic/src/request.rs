//! Our [`ChatRequest`] as a Messages API request body.
//!
//! The Messages API differs from the chat shape in three ways that matter here: system text is
//! a top-level field, not a message; tool calls are `tool_use` content blocks of the assistant
//! turn; and tool results are `tool_result` blocks of a *user* turn, which must come first in
//! that turn's content.

use claudette_core::types::{json_f32, normalize_tool_arguments};
use claudette_core::{
    BackendError, Block, CacheAt, CacheTtl, ChatRequest, DOCUMENT_MEDIA_TYPE, Dialect, Document,
    DocumentSource, ErrorKind, Image, ImageSource, Message, NativeBlock, NativeField, NativeTool,
    ReasoningEffort, ResponseFormat, Role, Segment, Thinking, ThinkingBlock, ToolCall, ToolChoice, ToolSpec,
};
use serde_json::{Map, Value, json};

/// One Messages API turn under construction.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
    /// Whether the turn holds tool results (a following tool result or user text joins it).
    has_tool_results: bool,
}

impl Turn {
    /// The wire form: a plain string for a single text block with nothing but its text (the
    /// common case, and what every compatible server accepts), else the block list.
    fn into_value(self) -> Value {
        let content = match self.blocks.as_slice() {
            [] => Value::String(String::new()),
            [only]
                if only.get("type").and_then(Value::as_str) == Some("text")
                    && only.as_object().is_some_and(|o| o.len() == 2) =>
            {
                only.get("text").cloned().unwrap_or_else(|| Value::String(String::new()))
            }
            _ => Value::Array(self.blocks),
        };
        json!({ "role": self.role, "content": content })
    }
}

fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

fn cache_control(ttl: CacheTtl) -> Value {
    match ttl {
        // The default, sent as clients write it: compatible servers may not know `ttl`.
        CacheTtl::FiveMinutes => json!({ "type": "ephemeral" }),
        CacheTtl::OneHour => json!({ "type": "ephemeral", "ttl": ttl.as_str() }),
    }
}

fn image_block(image: &Image) -> Value {
    let source = match &image.source {
        ImageSource::Base64 { media_type, data } => {
            json!({ "type": "base64", "media_type": media_type, "data": data })
        }
        ImageSource::Url { url } => json!({ "type": "url", "url": url }),
    };
    json!({ "type": "image", "source": source })
}

/// A PDF as a `document` block, its title kept: the model reads it, and Claude Code's Read of
/// a PDF names the file there.
fn document_block(document: &Document) -> Value {
    let source = match &document.source {
        DocumentSource::Base64 { data } => {
            json!({ "type": "base64", "media_type": DOCUMENT_MEDIA_TYPE, "data": data })
        }
        DocumentSource::Url { url } => json!({ "type": "url", "url": url }),
    };
    let mut block = json!({ "type": "document", "source": source });
    if let Some(title) = &document.title {
        block["title"] = Value::String(title.clone());
    }
    if document.citations {
        block["citations"] = json!({ "enabled": true });
    }
    block
}

/// A message's text, images and documents as blocks in the client's order, the text cut at
/// its cache breakpoints and at its images and documents; no blocks for empty text without
/// either (so never an empty text block beside an image, which Anthropic would refuse).
///
/// A text breakpoint marks the block that ends where it stands. At one offset the text ending
/// there comes first, then the breakpoints there, then the images there, then the documents:
/// so a text breakpoint at an image's or a document's position marks the text before it,
/// never the image or the document; the client marks an image with [`CacheAt::Image`] and a
/// document with [`CacheAt::Document`], which put `cache_control` on that block (the first
/// such breakpoint wins, as on text). Anthropic refuses empty text blocks, so a text
/// breakpoint with no text of its own (a second one at the same place) marks the block before
/// it instead, and one before every block (at offset 0) marks none.
fn content_blocks(m: &Message) -> Result<Vec<Value>, BackendError> {
    range_blocks(m, &text_marks(m)?, 0..m.content.len())
}

/// Each text breakpoint of `m` as its byte offset (checked by `cache_segments`: the pieces'
/// lengths so far) and TTL.
fn text_marks(m: &Message) -> Result<Vec<(usize, CacheTtl)>, BackendError> {
    let mut marks = Vec::new();
    let mut end = 0;
    for (text, ttl) in m.cache_segments()? {
        end += text.len();
        if let Some(ttl) = ttl {
            marks.push((end, ttl));
        }
    }
    Ok(marks)
}

/// [`content_blocks`] of the bytes `range` of `m`'s text: one text block of an assistant turn
/// whose blocks keep their order, which holds the breakpoints that end inside it (one at its
/// start ends the block before it) and the images and documents placed in it (one at its end
/// goes with the next range, unless the text ends there). `marks` are [`text_marks`] of `m`.
fn range_blocks(
    m: &Message,
    marks: &[(usize, CacheTtl)],
    range: std::ops::Range<usize>,
) -> Result<Vec<Value>, BackendError> {
    let mut blocks: Vec<Value> =
        Vec::with_capacity(1 + (m.images.len() + m.documents.len()) * 2 + marks.len());
    let mut marks = marks.iter().copied().filter(|&(at, _)| range.start < at && at <= range.end).peekable();
    // Offsets are of the whole text, as breakpoints and images count them.
    let mut pos = 0;
    let (mut image_index, mut document_index) = (0u32, 0u32);
    for segment in m.segments() {
        let at = match segment {
            Segment::Text(run) => {
                let (start, end) = (pos.max(range.start), (pos + run.len()).min(range.end));
                pos += run.len();
                if start >= end {
                    continue;
                }
                let run = m.content.get(start..end).ok_or_else(|| {
                    BackendError::invalid(format!(
                        "a text block from byte {} to {} does not fall between characters of the \
                         {}-byte message text",
                        range.start,
                        range.end,
                        m.content.len()
                    ))
                })?;
                let mut from = 0;
                while let Some((at, ttl)) = marks.next_if(|(at, _)| *at <= end) {
                    let cut = at.saturating_sub(start).max(from);
                    if cut > from {
                        blocks.push(text_block(&run[from..cut]));
                    }
                    from = cut;
                    mark_last(&mut blocks, ttl);
                }
                if from < run.len() {
                    blocks.push(text_block(&run[from..]));
                }
                continue;
            }
            Segment::Image(_) => CacheAt::Image(next_index(&mut image_index)),
            Segment::Document(_) => CacheAt::Document(next_index(&mut document_index)),
        };
        if pos < range.start || (pos >= range.end && range.end < m.content.len()) {
            continue;
        }
        while let Some((_, ttl)) = marks.next_if(|(at, _)| *at <= pos) {
            mark_last(&mut blocks, ttl);
        }
        blocks.push(match segment {
            Segment::Image(image) => image_block(image),
            Segment::Document(document) => document_block(document),
            Segment::Text(_) => continue,
        });
        if let Some(b) = m.cache.iter().find(|b| b.at == at) {
            mark_last(&mut blocks, b.ttl);
        }
    }
    for (_, ttl) in marks {
        mark_last(&mut blocks, ttl);
    }
    Ok(blocks)
}

/// The index in its list of the item `count` counts, counting it: [`Message::segments`] yields
/// every image and document once, each kind in its list's order, so the count so far is the
/// index its breakpoints name.
fn next_index(count: &mut u32) -> u32 {
    let index = *count;
    *count = count.saturating_add(1);
    index
}

/// Puts a breakpoint on the last block, unless it has one (the first breakpoint there wins).
fn mark_last(blocks: &mut [Value], ttl: CacheTtl) {
    if let Some(last) = blocks.last_mut()
        && last.get("cache_control").is_none()
    {
        last["cache_control"] = cache_control(ttl);
    }
}

fn tool_spec(tool: &ToolSpec) -> Value {
    // Anthropic requires an object schema; a tool without parameters still needs one.
    let schema = match &tool.parameters {
        Value::Object(m) if !m.is_empty() => tool.parameters.clone(),
        _ => json!({ "type": "object", "properties": {} }),
    };
    let mut t = json!({ "name": tool.name, "input_schema": schema });
    if !tool.description.is_empty() {
        t["description"] = Value::String(tool.description.clone());
    }
    if let Some(ttl) = tool.cache {
        t["cache_control"] = cache_control(ttl);
    }
    // Generally available, no beta header (as `output_config.format`); only when set, so
    // compatible servers that predate strict tool use get the tool as before.
    if tool.strict {
        t["strict"] = Value::Bool(true);
    }
    t
}

/// The system prompt: a string, unless a cache breakpoint needs it cut into blocks.
fn system_value(system: &[&Message]) -> Result<Option<Value>, BackendError> {
    if system.iter().all(|m| m.cache.is_empty()) {
        let texts: Vec<&str> = system.iter().map(|m| m.content.as_str()).filter(|t| !t.is_empty()).collect();
        return Ok((!texts.is_empty()).then(|| Value::String(texts.join("\n\n"))));
    }
    let mut blocks = Vec::new();
    for m in system {
        blocks.extend(content_blocks(m)?);
    }
    Ok((!blocks.is_empty()).then_some(Value::Array(blocks)))
}

/// Converts the conversation: system messages out, turns in.
fn convert_messages(messages: &[Message]) -> Result<(Vec<&Message>, Vec<Value>), BackendError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for m in messages {
        match m.role {
            Role::System => system.push(m),
            Role::User => {
                let mut text = content_blocks(m)?;
                if text.is_empty() {
                    text.push(text_block(&m.content));
                }
                // Text after tool results joins their turn (after them, as Anthropic requires)
                // instead of making two user turns in a row.
                match turns.last_mut() {
                    Some(t) if t.has_tool_results => t.blocks.extend(text),
                    _ => turns.push(Turn { role: "user", blocks: text, has_tool_results: false }),
                }
            }
            Role::Assistant => {
                // In the turn's own order: Anthropic refuses a turn with thinking whose blocks
                // come back in another order than it sent them (interleaved thinking).
                let marks = text_marks(m)?;
                let order = m.blocks()?;
                let mut blocks = Vec::with_capacity(order.len());
                let mut cited = 0;
                for block in order {
                    match block {
                        Block::Thinking(t) => blocks.extend(thinking_block(t)),
                        Block::Text { text, start } => {
                            let end = start + text.len();
                            let mut pieces = range_blocks(m, &marks, start..end)?;
                            let citations = m.citations_at(end);
                            // Cut by breakpoints, the block's citations go on its last piece
                            // of text (Anthropic checks none against the piece's text).
                            let last_text = pieces.iter_mut().rev().find(|b| b["type"] == "text");
                            if let (false, Some(piece)) = (citations.is_empty(), last_text) {
                                piece["citations"] = Value::Array(citations.to_vec());
                                cited += 1;
                            }
                            blocks.extend(pieces);
                        }
                        Block::ToolCall { call, index } => blocks.push(tool_use_block(m, call, index)),
                        Block::Native(n) => blocks.push(anthropic_block(n)?.clone()),
                    }
                }
                let citing = m.citations.iter().filter(|c| !c.citations.is_empty()).count();
                if cited != citing {
                    return Err(BackendError::invalid(format!(
                        "an assistant turn has citations for {citing} text block(s), but {cited} of its text \
                         blocks end where they say (at bytes {})",
                        m.citations.iter().map(|c| c.end.to_string()).collect::<Vec<_>>().join(", ")
                    )));
                }
                // Anthropic rejects empty text blocks, and a turn that only calls tools needs
                // none; a turn with nothing at all goes as empty text.
                if blocks.is_empty() {
                    blocks.push(text_block(""));
                }
                turns.push(Turn { role: "assistant", blocks, has_tool_results: false });
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().filter(|id| !id.is_empty()).ok_or_else(|| {
                    BackendError::invalid("a tool result message needs the tool_call_id it answers")
                })?;
                // A string, unless a breakpoint, an image or a document needs blocks
                // (`tool_result` content takes `text`, `image` and `document` blocks, as a user
                // turn's does).
                let content = if m.cache.is_empty() && m.images.is_empty() && m.documents.is_empty() {
                    Value::String(m.content.clone())
                } else {
                    Value::Array(content_blocks(m)?)
                };
                let mut block = json!({ "type": "tool_result", "tool_use_id": id, "content": content });
                if m.is_error {
                    block["is_error"] = Value::Bool(true);
                }
                match turns.last_mut() {
                    // Results of parallel calls go in one user turn, as Anthropic expects.
                    Some(t) if t.has_tool_results && t.blocks.iter().all(is_tool_result) => {
                        t.blocks.push(block)
                    }
                    _ => turns.push(Turn { role: "user", blocks: vec![block], has_tool_results: true }),
                }
            }
        }
    }
    Ok((system, turns.into_iter().map(Turn::into_value).collect()))
}

/// Call `index` of assistant message `m` as a `tool_use` block, with the breakpoint after it.
fn tool_use_block(m: &Message, call: &ToolCall, index: usize) -> Value {
    let mut block = json!({
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        // Anthropic answers anything but an object with a 400 no other backend gives.
        "input": normalize_tool_arguments(&call.arguments),
    });
    if let Some(ttl) = m.cache_after_call(index) {
        block["cache_control"] = cache_control(ttl);
    }
    block
}

/// A thinking block as sent back, or `None` for an unsigned one: that is another provider's
/// reasoning (or an OpenAI-format client's echo), which Anthropic would refuse for its missing
/// signature.
fn thinking_block(t: &ThinkingBlock) -> Option<Value> {
    match t {
        ThinkingBlock::Thinking { thinking, signature } if is_sendable(t) => {
            Some(json!({ "type": "thinking", "thinking": thinking, "signature": signature }))
        }
        ThinkingBlock::Thinking { .. } => None,
        ThinkingBlock::Redacted { data } => Some(json!({ "type": "redacted_thinking", "data": data })),
    }
}

/// Whether [`thinking_block`] sends `t`.
fn is_sendable(t: &ThinkingBlock) -> bool {
    match t {
        ThinkingBlock::Thinking { signature, .. } => !signature.is_empty(),
        ThinkingBlock::Redacted { .. } => true,
    }
}

/// Whether the request continues a tool loop whose assistant turn will not start with a signed
/// thinking block, which Anthropic refuses while thinking is on ("a final `assistant` message
/// must start with a thinking block (preceeding the lastmost set of `tool_use` and
/// `tool_result` blocks)").
///
/// A tool loop is one assistant turn to Anthropic: it opens after the last user text and runs
/// through every call and result up to the end, and only its first assistant message must lead
/// with thinking. Later messages of the loop need none: without interleaved thinking Claude
/// thinks once at the start of a turn, so checking the last assistant message would turn off
/// thinking for Claude's own well-formed loops. User text after the results (which joins their
/// wire turn) opens a new turn, for which Anthropic drops earlier thinking and asks for none.
fn tool_turn_lacks_thinking(messages: &[Message]) -> bool {
    let turn_start = messages.iter().rposition(|m| m.role == Role::User).map_or(0, |i| i + 1);
    let mut turn = messages.iter().skip(turn_start).filter(|m| m.role != Role::System);
    let ends_in_results = turn.clone().next_back().is_some_and(|m| m.role == Role::Tool);
    ends_in_results && turn.find(|m| m.role == Role::Assistant).is_some_and(|m| !leads_with_thinking(m))
}

/// Whether the first block [`convert_messages`] sends for `m` is thinking. An interleaved turn
/// may hold signed thinking after text or a call, which does not make it start with thinking.
/// A turn whose order is refused fails the request anyway.
fn leads_with_thinking(m: &Message) -> bool {
    let Ok(blocks) = m.blocks() else { return false };
    let first = blocks.iter().find(|b| !matches!(b, Block::Thinking(t) if !is_sendable(t)));
    matches!(first, Some(Block::Thinking(_)))
}

fn is_claude(model: &str) -> bool {
    model.to_ascii_lowercase().contains("claude")
}

fn is_tool_result(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_result")
}

/// What a body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Message {
        stream: bool,
    },
    /// `/v1/messages/count_tokens`, which takes the prompt's fields only (`model`, `messages`,
    /// `system`, `tools`, `tool_choice`, `thinking`, `output_config`, and the native fields of
    /// [`COUNT_FIELDS`]) and refuses the rest.
    Count,
}

/// The request body for `request` against `model`.
pub(crate) fn body(
    request: &ChatRequest,
    model: &str,
    default_max_tokens: u32,
    stream: bool,
) -> Result<Value, BackendError> {
    build(request, model, default_max_tokens, Purpose::Message { stream })
}

/// The `/v1/messages/count_tokens` body for `request` against `model`: the message body's
/// prompt, converted by the same code, so the count is of what a message request would send.
pub(crate) fn count_body(
    request: &ChatRequest,
    model: &str,
    default_max_tokens: u32,
) -> Result<Value, BackendError> {
    build(request, model, default_max_tokens, Purpose::Count)
}

fn build(
    request: &ChatRequest,
    model: &str,
    default_max_tokens: u32,
    purpose: Purpose,
) -> Result<Value, BackendError> {
    let message = matches!(purpose, Purpose::Message { .. });
    // A schema goes in `output_config.format`; the Messages API has no schemaless JSON mode,
    // and prose where the client expects JSON would break its parser, so another backend gets
    // such a request. A count has no answer to shape: it is counted without one.
    let format = match &request.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonSchema { schema, .. } => Some(json!({ "type": "json_schema", "schema": schema })),
        ResponseFormat::JsonObject if !message => None,
        ResponseFormat::JsonObject => {
            return Err(BackendError::new(
                ErrorKind::Unsupported,
                "Anthropic's Messages API cannot promise a response_format of JSON without a schema",
            ));
        }
    };
    request.checked_media()?;
    let (system, messages) = convert_messages(&request.messages)?;
    if messages.is_empty() {
        return Err(BackendError::invalid("the request has no user or assistant message"));
    }
    let mut b = Map::new();
    b.insert("model".into(), model.into());
    // Required by Anthropic (optional elsewhere): without a caller value, the configured default.
    // A count refuses it, but a derived thinking budget is still kept under it, as sent.
    let max_tokens = request.max_tokens.unwrap_or(default_max_tokens);
    if message {
        b.insert("max_tokens".into(), max_tokens.into());
    }
    b.insert("messages".into(), Value::Array(messages));
    if let Some(system) = system_value(&system)? {
        b.insert("system".into(), system);
    }
    let mut derived_effort = None;
    if let Some(thinking) = request.thinking {
        let (mut value, effort) = thinking_value(thinking, model, max_tokens);
        // An OpenAI-format client (chat `reasoning_effort`, Responses `reasoning.effort`) has no
        // way to send Claude's signatures back, so its tool loops always lack the thinking
        // Anthropic requires: thinking goes off for this request rather than every such loop
        // failing with a 400 no other Claude backend gets past. The effort stays, as Anthropic
        // takes it without thinking and it still governs the text and the tool calls.
        if value != thinking_disabled() && tool_turn_lacks_thinking(&request.messages) {
            tracing::debug!(
                %model,
                "thinking disabled for this request: its tool loop has no signed thinking block to start with"
            );
            value = thinking_disabled();
        }
        b.insert("thinking".into(), value);
        derived_effort = effort;
    }
    // The client's own effort wins over one derived from its reasoning_effort.
    let effort = request.output_effort.and_then(effort_name).or(derived_effort);
    let mut output_config = Map::new();
    if let Some(effort) = effort {
        output_config.insert("effort".into(), effort.into());
    }
    if let Some(format) = format {
        output_config.insert("format".into(), format);
    }
    if !output_config.is_empty() {
        b.insert("output_config".into(), Value::Object(output_config));
    }
    if message {
        sampling(request, model, &mut b)?;
    }
    let tool_choice = request.checked_tool_choice()?;
    if let Some(tools) = tools_value(request)? {
        b.insert("tools".into(), tools);
        let mut choice = match tool_choice {
            ToolChoice::Auto => None,
            ToolChoice::None => Some(json!({"type": "none"})),
            ToolChoice::Required => Some(json!({"type": "any"})),
            ToolChoice::Tool(name) => Some(json!({"type": "tool", "name": name})),
        };
        // Only a tool choice object carries the limit; `none` takes no options (and makes no
        // calls at all), so there it is left out.
        if request.parallel_tool_calls == Some(false) && *tool_choice != ToolChoice::None {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
        if let Some(choice) = choice {
            b.insert("tool_choice".into(), choice);
        }
    }
    if purpose == (Purpose::Message { stream: true }) {
        b.insert("stream".into(), true.into());
    }
    add_native_fields(request, purpose, &mut b)?;
    Ok(Value::Object(b))
}

/// The top-level keys this adapter writes from the request's own fields. A native field of
/// one of these names would silently replace what the router chose (the model, the
/// conversation, the stream), so such a request is refused rather than sent either way.
const OWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "tools",
    "tool_choice",
    "thinking",
    "stream",
    "metadata",
    "output_config",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
];

/// The native fields `/v1/messages/count_tokens` takes besides the prompt (the parameters of
/// the SDKs' `count_tokens`). The rest (`container`, `service_tier`, …) it refuses, and they
/// do not change the count.
const COUNT_FIELDS: &[&str] = &["context_management", "mcp_servers", "cache_control", "speed"];

/// The request's Anthropic fields, each a top-level key as the client wrote it (a count gets
/// those it takes). A name the adapter writes, or one given twice, is refused with the name.
fn add_native_fields(
    request: &ChatRequest,
    purpose: Purpose,
    b: &mut Map<String, Value>,
) -> Result<(), BackendError> {
    let mut seen: Vec<&str> = Vec::with_capacity(request.native_fields.len());
    for field in &request.native_fields {
        let Some(value) = anthropic_field(field) else { continue };
        let name = field.name.as_str();
        if OWN_FIELDS.contains(&name) {
            return Err(BackendError::invalid(format!(
                "the Anthropic field `{name}` is one the adapter writes from the request itself; it cannot \
                 be given as a native field"
            )));
        }
        if seen.contains(&name) {
            return Err(BackendError::invalid(format!("the Anthropic field `{name}` is given twice")));
        }
        seen.push(name);
        if purpose == Purpose::Count && !COUNT_FIELDS.contains(&name) {
            continue;
        }
        b.insert(name.to_owned(), value.clone());
    }
    Ok(())
}

/// A native field's value, if it is Anthropic's; another provider's field is that provider's
/// knob, sent to its backends only.
fn anthropic_field(field: &NativeField) -> Option<&Value> {
    match field.dialect {
        Dialect::Anthropic => Some(&field.value),
    }
}

/// The request's Anthropic field `name`, if it has one.
fn native_field<'a>(request: &'a ChatRequest, name: &str) -> Option<&'a Value> {
    request.native_fields.iter().filter(|f| f.name == name).find_map(anthropic_field)
}

/// The request's tools in the client's order: each of Anthropic's own tools before the
/// function tool it stood before. Tools open the prompt, so their order is part of every
/// cached prefix after them. `None` without tools of either kind.
fn tools_value(request: &ChatRequest) -> Result<Option<Value>, BackendError> {
    if request.tools.is_empty() && request.native_tools.is_empty() {
        return Ok(None);
    }
    let mut native: Vec<(usize, &Value)> = Vec::with_capacity(request.native_tools.len());
    for (i, tool) in request.native_tools.iter().enumerate() {
        let spec = anthropic_tool(tool)?;
        if spec.get("type").and_then(Value::as_str).is_none() {
            return Err(BackendError::invalid(format!(
                "Anthropic tool {i} (`{}`) has no `type`: the API names its own tools by their versioned type",
                tool_name(tool).unwrap_or("unnamed")
            )));
        }
        native.push((usize::try_from(tool.at).unwrap_or(usize::MAX).min(request.tools.len()), spec));
    }
    // Stable: tools at one place keep the order the client wrote them in.
    native.sort_by_key(|(at, _)| *at);
    let mut native = native.into_iter().peekable();
    let mut tools = Vec::with_capacity(request.tools.len() + request.native_tools.len());
    for (i, tool) in request.tools.iter().enumerate() {
        while let Some((_, spec)) = native.next_if(|(at, _)| *at == i) {
            tools.push(spec.clone());
        }
        tools.push(tool_spec(tool));
    }
    tools.extend(native.map(|(_, spec)| spec.clone()));
    Ok(Some(Value::Array(tools)))
}

fn tool_name(tool: &NativeTool) -> Option<&str> {
    tool.spec.get("name").and_then(Value::as_str)
}

/// A native tool's definition, if Anthropic defined it; the router sends a request with
/// another provider's tools to that provider only, so one here is a routing bug, not the
/// client's.
fn anthropic_tool(tool: &NativeTool) -> Result<&Value, BackendError> {
    match tool.dialect {
        Dialect::Anthropic => Ok(&tool.spec),
    }
}

/// A native block of an assistant turn, if Anthropic wrote it (see [`anthropic_tool`]).
fn anthropic_block(block: &NativeBlock) -> Result<&Value, BackendError> {
    match block.dialect {
        Dialect::Anthropic => Ok(&block.block),
    }
}

/// The MCP connector's flag when the tools name its servers through `mcp_toolset`; the
/// earlier (deprecated) flag takes servers configured in `mcp_servers` alone.
const MCP_CLIENT: &str = "mcp-client-2025-11-20";
const MCP_CLIENT_LEGACY: &str = "mcp-client-2025-04-04";

/// The `anthropic-beta` flags the request's Anthropic tools and fields need: those still in
/// beta (their documentation names the flag). Web search and the text editor and bash tools
/// of Claude 4 need none, nor do a container named by id and a service tier; anything not
/// listed here gets none, and the `anthropic_beta` setting can add it.
pub(crate) fn betas(request: &ChatRequest) -> Vec<&'static str> {
    let mut flags = Vec::new();
    let mut add = |flag: &'static str| {
        if !flags.contains(&flag) {
            flags.push(flag);
        }
    };
    let mut toolset = false;
    for tool in &request.native_tools {
        let Ok(spec) = anthropic_tool(tool) else { continue };
        let kind = spec.get("type").and_then(Value::as_str).unwrap_or_default();
        toolset |= kind == "mcp_toolset";
        add(match kind {
            "web_fetch_20250910" => "web-fetch-2025-09-10",
            "code_execution_20250522" => "code-execution-2025-05-22",
            "code_execution_20250825" => "code-execution-2025-08-25",
            "computer_20241022" => "computer-use-2024-10-22",
            "computer_20250124" => "computer-use-2025-01-24",
            "computer_20251124" => "computer-use-2025-11-24",
            "memory_20250818" => "context-management-2025-06-27",
            "mcp_toolset" => MCP_CLIENT,
            _ => continue,
        });
    }
    if let Some(config) = native_field(request, "context_management") {
        add("context-management-2025-06-27");
        // Server-side compaction is an edit of its own, with its own flag.
        let edits = config.get("edits").and_then(Value::as_array).into_iter().flatten();
        if edits.filter_map(|e| e.get("type").and_then(Value::as_str)).any(|t| t == "compact_20260112") {
            add("compact-2026-01-12");
        }
    }
    if native_field(request, "mcp_servers").is_some() {
        add(if toolset { MCP_CLIENT } else { MCP_CLIENT_LEGACY });
    }
    // Agent Skills load into the code execution container, and need both flags.
    if native_field(request, "container").and_then(|c| c.get("skills")).is_some_and(|s| !s.is_null()) {
        add("code-execution-2025-08-25");
        add("skills-2025-10-02");
    }
    flags
}

/// The sampling knobs and stop sequences of a message body.
fn sampling(request: &ChatRequest, model: &str, b: &mut Map<String, Value>) -> Result<(), BackendError> {
    if let Some(t) = request.temperature {
        b.insert("temperature".into(), json_f32("temperature", t)?);
    }
    // Claude models since Opus 4.1 (Sonnet 4.5, Haiku 4.5, …) answer 400 "`temperature` and
    // `top_p` cannot both be specified for this model", a refusal no retry or fail-over to
    // another Claude backend gets past; Anthropic's own advice for every model is to set one,
    // not both. Temperature is the one callers mean; other models behind a compatible server
    // take both.
    let top_p = request.top_p.filter(|_| request.temperature.is_none() || !is_claude(model));
    if let Some(p) = top_p {
        b.insert("top_p".into(), json_f32("top_p", p)?);
    }
    if let Some(k) = request.top_k {
        b.insert("top_k".into(), k.into());
    }
    // No `seed`: the Messages API has none, and a seed only ever asks for best effort.
    if !request.stop.is_empty() {
        b.insert("stop_sequences".into(), json!(request.stop));
    }
    Ok(())
}

/// Anthropic's smallest `budget_tokens`.
const MIN_THINKING_BUDGET: u32 = 1024;

/// A Claude model's generation as `(major, minor)`, read from its id: `claude-opus-4-6`,
/// `claude-sonnet-4-20250514` (4.0: eight digits are a date), `claude-3-7-sonnet-latest`,
/// `anthropic.claude-opus-4-6-v1` (Bedrock), `claude-opus-4-6@…` (Vertex),
/// `anthropic/claude-opus-4.6`. `None` when the id names no Claude version.
fn claude_version(model: &str) -> Option<(u32, u32)> {
    let model = model.to_ascii_lowercase();
    let (_, rest) = model.split_once("claude-")?;
    let number = |s: &str| (1..=2).contains(&s.len()).then(|| s.parse::<u32>().ok()).flatten();
    let mut parts = rest.split(['-', '.', '@', ':', '/', '_']).skip_while(|p| number(p).is_none());
    let major = number(parts.next()?)?;
    let minor = parts.next().and_then(number).unwrap_or(0);
    Some((major, minor))
}

/// What a model takes for thinking, by its id (Anthropic offers no way to ask): adaptive
/// thinking since Claude Opus and Sonnet 4.6 and in Mythos, and `xhigh` effort since Opus 4.7.
/// A model it cannot place (an older Claude, another model behind a compatible server) gets
/// the budgets every thinking model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkingSupport {
    Budget,
    Adaptive { xhigh: bool },
}

fn thinking_support(model: &str) -> ThinkingSupport {
    if model.to_ascii_lowercase().contains("claude-mythos") {
        return ThinkingSupport::Adaptive { xhigh: true };
    }
    match claude_version(model) {
        Some(v) if v >= (4, 6) => ThinkingSupport::Adaptive { xhigh: v >= (4, 7) },
        _ => ThinkingSupport::Budget,
    }
}

/// `output_config.effort` for a level: Anthropic's lowest is `low`, and `none` is no effort
/// to send (thinking is what turns reasoning off).
fn effort_name(effort: ReasoningEffort) -> Option<&'static str> {
    match effort {
        ReasoningEffort::Off => None,
        ReasoningEffort::Minimal => Some(ReasoningEffort::Low.as_str()),
        e => Some(e.as_str()),
    }
}

/// The `thinking` parameter, and the `output_config.effort` it implies.
///
/// The client's own form goes as it is (Anthropic judges it). An OpenAI client's effort
/// level becomes adaptive thinking at that effort on a model that takes it: Claude Opus 4.7
/// refuses budgets, and 4.6 has them deprecated. There `xhigh`, which only Opus 4.7 and later
/// know, is `max` on 4.6 (the level above `high` it has). On an older model the level
/// becomes a budget, kept under `max_tokens` as Anthropic requires; where no budget of at
/// least Anthropic's minimum fits, thinking stays off rather than the request failing on a
/// number the client never wrote.
fn thinking_value(thinking: Thinking, model: &str, max_tokens: u32) -> (Value, Option<&'static str>) {
    let budget = match (thinking, thinking_support(model)) {
        (Thinking::Adaptive, _) => return (json!({ "type": "adaptive" }), None),
        (Thinking::Effort { effort }, ThinkingSupport::Adaptive { xhigh })
            if effort != ReasoningEffort::Off =>
        {
            let effort =
                if effort == ReasoningEffort::XHigh && !xhigh { ReasoningEffort::Max } else { effort };
            return (json!({ "type": "adaptive" }), effort_name(effort));
        }
        (Thinking::Effort { .. }, _) => thinking
            .budget_tokens()
            .map(|b| b.min(max_tokens.saturating_sub(1)))
            .filter(|b| *b >= MIN_THINKING_BUDGET),
        _ => thinking.budget_tokens(),
    };
    let value = match budget {
        Some(budget_tokens) => json!({ "type": "enabled", "budget_tokens": budget_tokens }),
        None => thinking_disabled(),
    };
    (value, None)
}

fn thinking_disabled() -> Value {
    json!({ "type": "disabled" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudette_core::{BlockKind, ToolCall};

    #[test]
    fn user_text_after_tool_results_joins_their_turn() {
        let msgs = vec![
            Message::user("q"),
            Message {
                tool_calls: vec![ToolCall {
                    id: "t1".into(),
                    name: "f".into(),
                    arguments: json!("{\"a\":1}"),
                }],
                ..Message::assistant("")
            },
            Message::tool_result("t1", "r1"),
            Message::user("and?"),
        ];
        let (_, turns) = convert_messages(&msgs).unwrap();
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[1]["content"][0]["input"], json!({"a": 1}));
        assert_eq!(turns[2]["content"][0]["type"], "tool_result");
        assert_eq!(turns[2]["content"][1], json!({"type": "text", "text": "and?"}));
    }

    #[test]
    fn knobs_and_failed_results_reach_the_body() {
        let tool = ToolSpec { name: "f".into(), parameters: json!({}), ..ToolSpec::default() };
        let base = ChatRequest {
            messages: vec![
                Message::user("q"),
                Message {
                    tool_calls: vec![ToolCall { id: "t1".into(), name: "f".into(), arguments: json!({}) }],
                    ..Message::assistant("")
                },
                Message::tool_error("t1", "boom"),
            ],
            tools: vec![tool],
            top_k: Some(5),
            seed: Some(1),
            parallel_tool_calls: Some(false),
            ..ChatRequest::default()
        };
        let b = body(&base, "claude-x", 10, false).unwrap();
        assert_eq!(b["top_k"], 5);
        assert!(b.get("seed").is_none(), "{b}");
        assert_eq!(b["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
        assert_eq!(
            b["messages"][2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": true})
        );
        let forced = ChatRequest { tool_choice: ToolChoice::Required, ..base.clone() };
        let b = body(&forced, "claude-x", 10, false).unwrap();
        assert_eq!(b["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
        let none = ChatRequest { tool_choice: ToolChoice::None, ..base.clone() };
        assert_eq!(body(&none, "claude-x", 10, false).unwrap()["tool_choice"], json!({"type": "none"}));
        let allowed = ChatRequest { parallel_tool_calls: Some(true), ..base };
        let b = body(&allowed, "claude-x", 10, false).unwrap();
        assert!(b.get("tool_choice").is_none(), "{b}");
        assert!(b["messages"][2]["content"][0].get("is_error").is_some());
    }

    #[test]
    fn thinking_support_is_read_from_the_model_id() {
        use ThinkingSupport::{Adaptive, Budget};
        for (model, support) in [
            ("claude-opus-4-6", Adaptive { xhigh: false }),
            ("claude-sonnet-4-6", Adaptive { xhigh: false }),
            ("anthropic.claude-opus-4-6-v1:0", Adaptive { xhigh: false }),
            ("claude-opus-4-6@20260205", Adaptive { xhigh: false }),
            ("anthropic/claude-sonnet-4.6", Adaptive { xhigh: false }),
            ("claude-opus-4-7", Adaptive { xhigh: true }),
            ("Claude-Opus-4-7-20260416", Adaptive { xhigh: true }),
            ("claude-haiku-4-8", Adaptive { xhigh: true }),
            ("claude-opus-5", Adaptive { xhigh: true }),
            ("claude-sonnet-5-1-20270101", Adaptive { xhigh: true }),
            ("claude-mythos-preview", Adaptive { xhigh: true }),
            ("us.anthropic.claude-mythos-preview", Adaptive { xhigh: true }),
            ("claude-sonnet-4-5", Budget),
            ("claude-sonnet-4-5-20250929", Budget),
            ("claude-opus-4-1-20250805", Budget),
            // A date is not a minor version: this is 4.0.
            ("claude-sonnet-4-20250514", Budget),
            ("claude-3-7-sonnet-latest", Budget),
            ("claude-instant-1.2", Budget),
            ("claude-fake", Budget),
            ("tiny-llama", Budget),
            ("", Budget),
        ] {
            assert_eq!(thinking_support(model), support, "{model}");
        }
        assert_eq!(claude_version("claude-sonnet-4-20250514"), Some((4, 0)));
        assert_eq!(claude_version("claude-3-5-haiku"), Some((3, 5)));
        assert_eq!(claude_version("gpt-4o"), None);
    }

    #[test]
    fn an_effort_level_is_adaptive_thinking_where_the_model_takes_it() {
        use ReasoningEffort::*;
        let effort = |effort| Thinking::Effort { effort };
        let adaptive = json!({"type": "adaptive"});
        for (e, sent) in [(Minimal, "low"), (Low, "low"), (Medium, "medium"), (High, "high"), (Max, "max")] {
            assert_eq!(thinking_value(effort(e), "claude-opus-4-7", 100), (adaptive.clone(), Some(sent)));
        }
        assert_eq!(thinking_value(effort(XHigh), "claude-opus-4-7", 100), (adaptive.clone(), Some("xhigh")));
        // 4.6 has no xhigh; max is its level above high.
        assert_eq!(thinking_value(effort(XHigh), "claude-opus-4-6", 100), (adaptive.clone(), Some("max")));
        assert_eq!(thinking_value(effort(Off), "claude-opus-4-7", 100), (json!({"type": "disabled"}), None));
        // Older models: budgets, under max_tokens.
        assert_eq!(
            thinking_value(effort(High), "claude-sonnet-4-5", 16_000),
            (json!({"type": "enabled", "budget_tokens": 15_999}), None)
        );
        assert_eq!(
            thinking_value(effort(XHigh), "claude-sonnet-4-5", 64_000),
            (json!({"type": "enabled", "budget_tokens": 32_768}), None)
        );
        // The client's own forms go as they are, whatever the model.
        assert_eq!(thinking_value(Thinking::Adaptive, "claude-sonnet-4-5", 100), (adaptive, None));
        assert_eq!(
            thinking_value(Thinking::Budget { budget_tokens: 2048 }, "claude-opus-4-6", 100),
            (json!({"type": "enabled", "budget_tokens": 2048}), None)
        );
    }

    #[test]
    fn output_config_merges_effort_and_format() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let request = ChatRequest {
            thinking: Some(Thinking::Effort { effort: ReasoningEffort::Low }),
            response_format: ResponseFormat::JsonSchema {
                name: "x".into(),
                schema: schema.clone(),
                strict: true,
            },
            ..ChatRequest::prompt("q")
        };
        let b = body(&request, "claude-opus-4-7", 100, false).unwrap();
        assert_eq!(b["thinking"], json!({"type": "adaptive"}));
        assert_eq!(
            b["output_config"],
            json!({"effort": "low", "format": {"type": "json_schema", "schema": schema}})
        );
        // The client's own effort wins over the one its reasoning level implies.
        let own = ChatRequest { output_effort: Some(ReasoningEffort::Max), ..request.clone() };
        assert_eq!(body(&own, "claude-opus-4-7", 100, false).unwrap()["output_config"]["effort"], "max");
        // An effort without thinking is still the client's word; `none` is none to send.
        let plain = ChatRequest { output_effort: Some(ReasoningEffort::Minimal), ..ChatRequest::prompt("q") };
        let b = body(&plain, "claude-sonnet-4-5", 100, false).unwrap();
        assert_eq!((b.get("thinking"), &b["output_config"]), (None, &json!({"effort": "low"})));
        let off = ChatRequest { output_effort: Some(ReasoningEffort::Off), ..ChatRequest::prompt("q") };
        assert!(body(&off, "claude-opus-4-7", 100, false).unwrap().get("output_config").is_none());
    }

    fn calls(id: &str, thinking: Vec<ThinkingBlock>) -> Message {
        Message {
            tool_calls: vec![ToolCall { id: id.into(), name: "f".into(), arguments: json!({}) }],
            thinking,
            ..Message::assistant("")
        }
    }

    fn signed() -> Vec<ThinkingBlock> {
        vec![ThinkingBlock::Thinking { thinking: "hmm".into(), signature: "sig".into() }]
    }

    /// Call `t1` with the text `abc`, unsigned thinking and then signed thinking, in `order`.
    fn interleaved(order: &[BlockKind]) -> Message {
        let mut thinking =
            vec![ThinkingBlock::Thinking { thinking: "echoed".into(), signature: String::new() }];
        thinking.extend(signed());
        Message { content: "abc".into(), order: order.to_vec(), ..calls("t1", thinking) }
    }

    #[test]
    fn a_tool_loop_without_leading_signed_thinking_is_sent_without_thinking() {
        let (th, tc, tx) = (BlockKind::Thinking, BlockKind::ToolCall, BlockKind::Text);
        let unsigned =
            || vec![ThinkingBlock::Thinking { thinking: "echoed".into(), signature: String::new() }];
        let redacted = || vec![ThinkingBlock::Redacted { data: "opaque".into() }];
        let q = || Message::user("q");
        let result = |id: &str| Message::tool_result(id, "r");
        for (msgs, lacks) in [
            (vec![q(), calls("t1", vec![]), result("t1")], true),
            (vec![q(), calls("t1", unsigned()), result("t1")], true),
            (vec![q(), calls("t1", signed()), result("t1")], false),
            (vec![q(), calls("t1", redacted()), result("t1")], false),
            // Claude thinks once at the start of a turn: later calls of the loop need none…
            (vec![q(), calls("t1", signed()), result("t1"), calls("t2", vec![]), result("t2")], false),
            // …but the turn's first message does, even when a later one has some.
            (vec![q(), calls("t1", vec![]), result("t1"), calls("t2", signed()), result("t2")], true),
            // A system message inside the loop is lifted out; the loop is still open.
            (vec![q(), calls("t1", vec![]), result("t1"), Message::system("s")], true),
            // The loop of an earlier turn is closed by user text, merged into its wire turn or not.
            (vec![q(), calls("t1", vec![]), result("t1"), Message::user("and?")], false),
            (
                vec![
                    q(),
                    calls("t1", vec![]),
                    result("t1"),
                    Message::assistant("done"),
                    Message::user("next"),
                ],
                false,
            ),
            (vec![q()], false),
            // A prefill is not a tool loop.
            (vec![q(), calls("t1", vec![]), result("t1"), Message::assistant("so")], false),
            // Interleaved: signed thinking after the call does not start the turn…
            (vec![q(), interleaved(&[th, tx(3), tc, th]), result("t1")], true),
            // …nor after unsigned thinking, which is not sent, and text…
            (vec![q(), interleaved(&[th, tx(3), th, tc]), result("t1")], true),
            // …but before them it does, even when unsigned thinking came first.
            (vec![q(), interleaved(&[th, th, tc, tx(3)]), result("t1")], false),
        ] {
            assert_eq!(tool_turn_lacks_thinking(&msgs), lacks, "{msgs:?}");
        }

        let loop_without = ChatRequest {
            messages: vec![q(), calls("t1", unsigned()), result("t1")],
            thinking: Some(Thinking::Budget { budget_tokens: 2048 }),
            ..ChatRequest::default()
        };
        let b = body(&loop_without, "claude-sonnet-4-5", 4096, false).unwrap();
        assert_eq!(b["thinking"], json!({"type": "disabled"}));
        assert_eq!(b["messages"][1]["content"][0]["type"], "tool_use", "{b}");
        // An effort level on a model that takes effort: thinking off, the effort kept.
        let effort = ChatRequest {
            thinking: Some(Thinking::Effort { effort: ReasoningEffort::High }),
            ..loop_without.clone()
        };
        let b = body(&effort, "claude-opus-4-7", 4096, false).unwrap();
        assert_eq!(
            (&b["thinking"], &b["output_config"]),
            (&json!({"type": "disabled"}), &json!({"effort": "high"}))
        );
        // The count is of what the message would send.
        assert_eq!(
            count_body(&effort, "claude-opus-4-7", 4096).unwrap()["thinking"],
            json!({"type": "disabled"})
        );

        let loop_with = ChatRequest { messages: vec![q(), calls("t1", signed()), result("t1")], ..effort };
        let b = body(&loop_with, "claude-opus-4-7", 4096, false).unwrap();
        assert_eq!(b["thinking"], json!({"type": "adaptive"}));
        assert_eq!(
            b["messages"][1]["content"][0],
            json!({"type": "thinking", "thinking": "hmm", "signature": "sig"})
        );
    }

    /// Without images the blocks are the ones the text-only rule (kept here as it was) makes,
    /// for every placement of up to three breakpoints; with up to two images anywhere, image
    /// breakpoints add `cache_control` to their image (the first one there wins) and change no
    /// other block, and text breakpoints never mark an image; documents in the images' places,
    /// with the same breakpoints on them, give the same blocks; then the edges of the merged
    /// rule.
    #[test]
    fn content_blocks_keep_the_text_rule_and_place_images() {
        use claudette_core::CacheBreakpoint;
        fn text_only(m: &Message) -> Vec<Value> {
            let mut blocks: Vec<Value> = Vec::new();
            for (text, ttl) in m.cache_segments().unwrap() {
                if !text.is_empty() {
                    blocks.push(text_block(text));
                }
                if let (Some(ttl), Some(last)) = (ttl, blocks.last_mut()) {
                    if last.get("cache_control").is_none() {
                        last["cache_control"] = cache_control(ttl);
                    }
                }
            }
            blocks
        }
        let mark = |at: u32, ttl| CacheBreakpoint { at: CacheAt::Text(at), ttl };
        for content in ["", "a", "abc", "é!"] {
            let offsets: Vec<u32> =
                (0..=content.len()).filter(|&i| content.is_char_boundary(i)).map(|i| i as u32).collect();
            let mut placements = vec![vec![]];
            for &a in &offsets {
                placements.push(vec![a]);
                for &b in offsets.iter().filter(|&&b| b >= a) {
                    placements.push(vec![a, b]);
                    for &c in offsets.iter().filter(|&&c| c >= b) {
                        placements.push(vec![a, b, c]);
                    }
                }
            }
            for at in placements {
                let ttls = [CacheTtl::OneHour, CacheTtl::FiveMinutes, CacheTtl::OneHour];
                let cache = at.iter().zip(ttls).map(|(&a, ttl)| mark(a, ttl)).collect();
                let m = Message { cache, ..Message::user(content) };
                assert_eq!(content_blocks(&m).unwrap(), text_only(&m), "{m:?}");
                for images in image_layouts(&offsets) {
                    let text_marked = Message { images, ..m.clone() };
                    let plain = content_blocks(&text_marked).unwrap();
                    for image_marks in image_mark_sets(text_marked.images.len()) {
                        let mut cache = text_marked.cache.clone();
                        // Image breakpoints anywhere among the text ones: only text ones are ordered.
                        for (i, b) in image_marks.iter().enumerate() {
                            cache.insert((i * 2).min(cache.len()), *b);
                        }
                        let m = Message { cache, ..text_marked.clone() };
                        assert_eq!(
                            content_blocks(&m).unwrap(),
                            with_image_marks(&plain, &image_marks),
                            "{m:?}"
                        );
                        // Documents in the images' places, marked as they were: the same
                        // blocks, each image a document.
                        let documents = as_documents(&m);
                        assert_eq!(
                            content_blocks(&documents).unwrap(),
                            with_image_marks(&plain, &image_marks)
                                .into_iter()
                                .map(|mut b| {
                                    if b["type"] == "image" {
                                        b["type"] = json!("document");
                                    }
                                    b
                                })
                                .collect::<Vec<_>>(),
                            "{documents:?}"
                        );
                    }
                }
            }
        }

        let image = |at| Image { at, source: ImageSource::Url { url: "u".into() } };
        let blocks = |content: &str, images: Vec<Image>, cache: Vec<CacheBreakpoint>| {
            content_blocks(&Message { images, cache, ..Message::user(content) }).unwrap()
        };
        let five = CacheTtl::FiveMinutes;
        let marked = |t: &str| json!({"type": "text", "text": t, "cache_control": {"type": "ephemeral"}});
        let img = image_block(&image(0));
        // An image alone, and a breakpoint before any block: nothing to mark.
        assert_eq!(blocks("", vec![image(0)], vec![]), std::slice::from_ref(&img));
        assert_eq!(blocks("", vec![image(0)], vec![mark(0, five)]), std::slice::from_ref(&img));
        assert_eq!(
            blocks("ab", vec![image(0)], vec![mark(0, five), mark(1, five)]),
            [img.clone(), marked("a"), text_block("b")]
        );
        // At the end, after the last image: the text before it.
        assert_eq!(
            blocks("ab", vec![image(1), image(2)], vec![mark(2, five)]),
            [text_block("a"), img.clone(), marked("b"), img.clone()]
        );
        // A bad breakpoint is refused as before.
        let err = content_blocks(&Message {
            images: vec![image(0)],
            cache: vec![mark(9, five)],
            ..Message::user("ab")
        })
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn tool_results_carry_their_images_as_blocks_and_image_marks_mark_the_image() {
        use claudette_core::CacheBreakpoint;
        let url = |u: &str| Image { at: 0, source: ImageSource::Url { url: u.into() } };
        let png = Image {
            at: 4,
            source: ImageSource::Base64 { media_type: "image/png".into(), data: "iVBO".into() },
        };
        let on_image = |i, ttl| CacheBreakpoint { at: CacheAt::Image(i), ttl };
        let msgs = vec![
            Message::user("shoot"),
            Message {
                tool_calls: ["t1", "t2", "t3"]
                    .map(|id| ToolCall { id: id.into(), name: "read".into(), arguments: json!({}) })
                    .to_vec(),
                ..Message::assistant("")
            },
            // Only an image: no empty text block beside it.
            Message {
                images: vec![url("a")],
                cache: vec![on_image(0, CacheTtl::OneHour), on_image(0, CacheTtl::FiveMinutes)],
                ..Message::tool_result("t1", "")
            },
            // Text and images in the client's order, blocks without any breakpoint; the error
            // flag kept.
            Message { images: vec![url("b"), png.clone()], ..Message::tool_error("t2", "seen; cropped") },
            Message::tool_result("t3", "plain"),
            Message {
                images: vec![png.clone()],
                cache: vec![on_image(0, CacheTtl::FiveMinutes)],
                ..Message::user("and")
            },
        ];
        let (_, turns) = convert_messages(&msgs).unwrap();
        let url_block = |u: &str| json!({"type": "image", "source": {"type": "url", "url": u}});
        let png_block =
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}});
        let marked = |mut b: Value, ttl| {
            b["cache_control"] = cache_control(ttl);
            b
        };
        assert_eq!(
            turns[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1",
                    "content": [marked(url_block("a"), CacheTtl::OneHour)]},
                {"type": "tool_result", "tool_use_id": "t2", "is_error": true,
                    "content": [url_block("b"), text_block("seen"), png_block.clone(), text_block("; cropped")]},
                {"type": "tool_result", "tool_use_id": "t3", "content": "plain"},
                text_block("and"),
                marked(png_block, CacheTtl::FiveMinutes),
            ]})
        );
    }

    /// `m` with a URL document in each image's place and its image breakpoints on them.
    fn as_documents(m: &Message) -> Message {
        use claudette_core::CacheBreakpoint;
        let documents = m
            .images
            .iter()
            .map(|i| {
                let ImageSource::Url { url } = &i.source else { panic!("a URL image: {i:?}") };
                Document {
                    citations: false,
                    at: i.at,
                    source: DocumentSource::Url { url: url.clone() },
                    title: None,
                }
            })
            .collect();
        let cache = m
            .cache
            .iter()
            .map(|b| match b.at {
                CacheAt::Image(k) => CacheBreakpoint { at: CacheAt::Document(k), ..*b },
                _ => *b,
            })
            .collect();
        Message { images: Vec::new(), documents, cache, ..m.clone() }
    }

    /// A user's PDFs and a Read tool's PDF as `document` blocks where the client put them:
    /// base64 with Anthropic's one PDF media type, a URL as a URL, the title when given; at one
    /// offset the image first; a text breakpoint there marks the text, a document breakpoint
    /// its document (the first one wins); a tool result holding only a PDF is a block list.
    #[test]
    fn documents_are_blocks_in_place_and_document_marks_mark_them() {
        use claudette_core::CacheBreakpoint;
        let pdf = |at, title: Option<&str>| Document {
            citations: false,
            at,
            source: DocumentSource::Base64 { data: "JVBERi0x".into() },
            title: title.map(Into::into),
        };
        let url = |at, u: &str| Document {
            citations: false,
            at,
            source: DocumentSource::Url { url: u.into() },
            title: None,
        };
        let mark = |at, ttl| CacheBreakpoint { at, ttl };
        let msgs = vec![
            Message {
                images: vec![Image { at: 5, source: ImageSource::Url { url: "shot".into() } }],
                documents: vec![pdf(5, Some("report.pdf")), url(9, "https://x/a.pdf")],
                cache: vec![
                    mark(CacheAt::Document(1), CacheTtl::OneHour),
                    mark(CacheAt::Text(5), CacheTtl::FiveMinutes),
                    mark(CacheAt::Document(1), CacheTtl::FiveMinutes),
                ],
                ..Message::user("read this")
            },
            Message {
                tool_calls: vec![ToolCall { id: "t1".into(), name: "Read".into(), arguments: json!({}) }],
                ..Message::assistant("")
            },
            Message {
                documents: vec![pdf(0, None)],
                cache: vec![mark(CacheAt::Document(0), CacheTtl::FiveMinutes)],
                ..Message::tool_result("t1", "")
            },
        ];
        let (_, turns) = convert_messages(&msgs).unwrap();
        let marked = |mut b: Value, ttl| {
            b["cache_control"] = cache_control(ttl);
            b
        };
        let base64 = json!({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"});
        assert_eq!(
            turns[0]["content"],
            json!([
                marked(text_block("read "), CacheTtl::FiveMinutes),
                {"type": "image", "source": {"type": "url", "url": "shot"}},
                {"type": "document", "source": base64, "title": "report.pdf"},
                text_block("this"),
                marked(
                    json!({"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}),
                    CacheTtl::OneHour
                ),
            ])
        );
        assert_eq!(
            turns[2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "t1", "content": [
                marked(json!({"type": "document", "source": base64}), CacheTtl::FiveMinutes),
            ]}])
        );
        // Unmarked, a tool result's PDF still needs the block list (a string has no room).
        let plain = Message { cache: vec![], ..msgs[2].clone() };
        let (_, turns) = convert_messages(&[msgs[0].clone(), msgs[1].clone(), plain]).unwrap();
        assert_eq!(turns[2]["content"][0]["content"], json!([{"type": "document", "source": base64}]));
    }

    /// Images named `u0`, `u1`, … in order: none, one, or two at every pair of `offsets`.
    fn image_layouts(offsets: &[u32]) -> Vec<Vec<Image>> {
        let image = |k: usize, at| Image { at, source: ImageSource::Url { url: format!("u{k}") } };
        let mut layouts = vec![vec![]];
        for &a in offsets {
            layouts.push(vec![image(0, a)]);
            for &b in offsets.iter().filter(|&&b| b >= a) {
                layouts.push(vec![image(0, a), image(1, b)]);
            }
        }
        layouts
    }

    /// Image breakpoints for `n` images: none, one on each, two on one (the first one's TTL
    /// wins), one on every image.
    fn image_mark_sets(n: usize) -> Vec<Vec<claudette_core::CacheBreakpoint>> {
        let mark = |k: usize, ttl| claudette_core::CacheBreakpoint { at: CacheAt::Image(k as u32), ttl };
        let mut sets = vec![vec![]];
        for k in 0..n {
            sets.push(vec![mark(k, CacheTtl::OneHour)]);
            sets.push(vec![mark(k, CacheTtl::FiveMinutes), mark(k, CacheTtl::OneHour)]);
        }
        sets.push((0..n).map(|k| mark(k, CacheTtl::FiveMinutes)).collect());
        sets
    }

    /// `plain` (blocks without image breakpoints, where no image is marked) with each image
    /// `u{k}` marked by the first breakpoint after image `k`.
    fn with_image_marks(plain: &[Value], marks: &[claudette_core::CacheBreakpoint]) -> Vec<Value> {
        let mut blocks = plain.to_vec();
        for block in blocks.iter_mut().filter(|b| b["type"] == "image") {
            assert!(block.get("cache_control").is_none(), "a text breakpoint marked an image: {plain:?}");
            let url = block["source"]["url"].as_str().unwrap_or_default().to_owned();
            let first = marks.iter().find(|b| matches!(b.at, CacheAt::Image(k) if url == format!("u{k}")));
            if let Some(b) = first {
                block["cache_control"] = cache_control(b.ttl);
            }
        }
        blocks
    }

    /// Claude's interleaved answer `[thinking, text, call, thinking, text, call]` goes back in
    /// that order, each text block cut at the breakpoints inside it: one at the end of the
    /// first text marks that text, not the next; one inside the second cuts it; one after the
    /// first call marks that call. Unsigned thinking is dropped where it stood.
    #[test]
    fn an_interleaved_turn_goes_back_in_its_order_with_its_breakpoints() {
        use claudette_core::CacheBreakpoint;
        let (th, tc, tx) = (BlockKind::Thinking, BlockKind::ToolCall, BlockKind::Text);
        let think = |t: &str, s: &str| ThinkingBlock::Thinking { thinking: t.into(), signature: s.into() };
        let call = |id: &str| ToolCall { id: id.into(), name: "f".into(), arguments: json!({"n": 1}) };
        let at = |at, ttl| CacheBreakpoint { at, ttl };
        let turn = Message {
            thinking: vec![think("plan", "s1"), think("echoed", ""), think("next", "s2")],
            tool_calls: vec![call("c1"), call("c2")],
            order: vec![th, tx(6), tc, th, th, tx(12), tc],
            cache: vec![
                at(CacheAt::Text(6), CacheTtl::OneHour),
                at(CacheAt::ToolCall(0), CacheTtl::OneHour),
                at(CacheAt::Text(9), CacheTtl::FiveMinutes),
            ],
            ..Message::assistant("First. Then.")
        };
        let (_, turns) = convert_messages(&[Message::user("q"), turn.clone()]).unwrap();
        let marked = |mut b: Value, ttl| {
            b["cache_control"] = cache_control(ttl);
            b
        };
        let tool_use = |id: &str| json!({"type": "tool_use", "id": id, "name": "f", "input": {"n": 1}});
        assert_eq!(
            turns[1]["content"],
            json!([
                {"type": "thinking", "thinking": "plan", "signature": "s1"},
                marked(text_block("First."), CacheTtl::OneHour),
                marked(tool_use("c1"), CacheTtl::OneHour),
                {"type": "thinking", "thinking": "next", "signature": "s2"},
                marked(text_block(" Th"), CacheTtl::FiveMinutes),
                text_block("en."),
                tool_use("c2"),
            ])
        );

        // The same turn without its order: the usual one, as before.
        let (_, usual) = convert_messages(&[Message { order: vec![], ..turn.clone() }]).unwrap();
        let kinds: Vec<&str> =
            usual[0]["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["thinking", "thinking", "text", "text", "text", "tool_use", "tool_use"]);

        // An order that does not match the turn is the caller's error, not a reordered turn.
        let wrong = Message { order: vec![th, tc, th, th, tx(12)], ..turn };
        let e = body(&ChatRequest::new(vec![Message::user("q"), wrong]), "claude-opus-4-8", 100, false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("1 of 2 tool calls"), "{e}");
    }

    /// Citations go on the text block that ends where they say; citations no block ends at,
    /// or an Anthropic tool without its `type`, are the caller's error rather than dropped.
    #[test]
    fn citations_and_native_tools_are_checked() {
        let cited = |end: u32| Message {
            citations: vec![claudette_core::TextCitations { end, citations: vec![json!({"url": "u"})] }],
            ..Message::assistant("Shannon, 1916.")
        };
        let (_, turns) = convert_messages(&[cited(14)]).unwrap();
        assert_eq!(
            turns[0]["content"],
            json!([{"type": "text", "text": "Shannon, 1916.", "citations": [{"url": "u"}]}])
        );
        let e = convert_messages(&[cited(7)]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("at bytes 7"), "{e}");

        let untyped = ChatRequest {
            native_tools: vec![NativeTool {
                dialect: Dialect::Anthropic,
                at: 0,
                spec: json!({"name": "web_search"}),
            }],
            ..ChatRequest::prompt("q")
        };
        let e = body(&untyped, "claude-opus-4-8", 100, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("`web_search`") && e.message.contains("no `type`"), "{e}");
        assert!(betas(&untyped).is_empty());
    }

    #[test]
    fn tool_results_need_an_id() {
        let err = convert_messages(&[Message::new(Role::Tool, "x")]).unwrap_err();
        assert_eq!(err.kind, claudette_core::ErrorKind::InvalidRequest);
    }
}
