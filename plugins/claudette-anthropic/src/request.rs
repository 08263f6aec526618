//! Our [`ChatRequest`] as a Messages API request body.
//!
//! The Messages API differs from the chat shape in three ways that matter here: system text is
//! a top-level field, not a message; tool calls are `tool_use` content blocks of the assistant
//! turn; and tool results are `tool_result` blocks of a *user* turn, which must come first in
//! that turn's content.

use claudette_core::types::{json_f32, normalize_tool_arguments};
use claudette_core::{
    BackendError, CacheTtl, ChatRequest, ErrorKind, Message, Role, Thinking, ThinkingBlock, ToolChoice,
    ToolSpec,
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
    /// The wire form: a plain string for a single text block (the common case, and what every
    /// compatible server accepts), else the block list.
    fn into_value(self) -> Value {
        let content = match self.blocks.as_slice() {
            [] => Value::String(String::new()),
            [only]
                if only.get("type").and_then(Value::as_str) == Some("text")
                    && only.get("cache_control").is_none() =>
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

/// A message's text as blocks cut at its cache breakpoints, each ending block marked; no
/// blocks for empty text. Anthropic refuses empty text blocks, so a breakpoint that would
/// end one (two at the same place) marks the block before it instead.
fn text_blocks(m: &Message) -> Result<Vec<Value>, BackendError> {
    let mut blocks: Vec<Value> = Vec::new();
    for (text, ttl) in m.cache_segments()? {
        if !text.is_empty() {
            blocks.push(text_block(text));
        }
        if let (Some(ttl), Some(last)) = (ttl, blocks.last_mut()) {
            if last.get("cache_control").is_none() {
                last["cache_control"] = cache_control(ttl);
            }
        }
    }
    Ok(blocks)
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
        blocks.extend(text_blocks(m)?);
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
                let mut text = text_blocks(m)?;
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
                let mut blocks = Vec::with_capacity(1 + m.thinking.len() + m.tool_calls.len());
                // Thinking first, as Anthropic made it. An unsigned block is another
                // provider's reasoning, which Anthropic would refuse for its missing signature.
                for t in &m.thinking {
                    match t {
                        ThinkingBlock::Thinking { thinking, signature } if !signature.is_empty() => blocks
                            .push(
                                json!({ "type": "thinking", "thinking": thinking, "signature": signature }),
                            ),
                        ThinkingBlock::Thinking { .. } => {}
                        ThinkingBlock::Redacted { data } => {
                            blocks.push(json!({ "type": "redacted_thinking", "data": data }))
                        }
                    }
                }
                let text = text_blocks(m)?;
                // Anthropic rejects empty text blocks; a turn that only calls tools has none.
                if text.is_empty() && m.tool_calls.is_empty() && blocks.is_empty() {
                    blocks.push(text_block(&m.content));
                }
                blocks.extend(text);
                for (i, call) in m.tool_calls.iter().enumerate() {
                    let mut block = json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        // Anthropic answers anything but an object with a 400 no other backend gives.
                        "input": normalize_tool_arguments(&call.arguments),
                    });
                    if let Some(ttl) = m.cache_after_call(i) {
                        block["cache_control"] = cache_control(ttl);
                    }
                    blocks.push(block);
                }
                turns.push(Turn { role: "assistant", blocks, has_tool_results: false });
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().filter(|id| !id.is_empty()).ok_or_else(|| {
                    BackendError::invalid("a tool result message needs the tool_call_id it answers")
                })?;
                let content = if m.cache.is_empty() {
                    Value::String(m.content.clone())
                } else {
                    Value::Array(text_blocks(m)?)
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

fn is_claude(model: &str) -> bool {
    model.to_ascii_lowercase().contains("claude")
}

fn is_tool_result(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_result")
}

/// The request body for `request` against `model`.
pub(crate) fn body(
    request: &ChatRequest,
    model: &str,
    default_max_tokens: u32,
    stream: bool,
) -> Result<Value, BackendError> {
    // The Messages API has no response format; prose where the client expects JSON would break
    // its parser, so another backend gets the request.
    if !request.response_format.is_text() {
        return Err(BackendError::new(
            ErrorKind::Unsupported,
            "Anthropic's Messages API cannot promise a response_format (JSON output)",
        ));
    }
    let (system, messages) = convert_messages(&request.messages)?;
    if messages.is_empty() {
        return Err(BackendError::invalid("the request has no user or assistant message"));
    }
    let mut b = Map::new();
    b.insert("model".into(), model.into());
    // Required by Anthropic (optional elsewhere): without a caller value, the configured default.
    let max_tokens = request.max_tokens.unwrap_or(default_max_tokens);
    b.insert("max_tokens".into(), max_tokens.into());
    b.insert("messages".into(), Value::Array(messages));
    if let Some(system) = system_value(&system)? {
        b.insert("system".into(), system);
    }
    if let Some(thinking) = request.thinking {
        b.insert("thinking".into(), thinking_value(thinking, max_tokens));
    }
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
    let tool_choice = request.checked_tool_choice()?;
    if !request.tools.is_empty() {
        b.insert("tools".into(), Value::Array(request.tools.iter().map(tool_spec).collect()));
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
    if stream {
        b.insert("stream".into(), true.into());
    }
    Ok(Value::Object(b))
}

/// Anthropic's smallest `budget_tokens`.
const MIN_THINKING_BUDGET: u32 = 1024;

/// The `thinking` parameter. A client's own budget goes as it is (Anthropic judges it); one
/// derived from an OpenAI effort level is kept under `max_tokens`, which Anthropic requires,
/// and where no budget of at least Anthropic's minimum fits, thinking stays off rather than
/// the request failing on a number the client never wrote.
fn thinking_value(thinking: Thinking, max_tokens: u32) -> Value {
    let budget = match thinking {
        Thinking::Effort { .. } => thinking
            .budget_tokens()
            .map(|b| b.min(max_tokens.saturating_sub(1)))
            .filter(|b| *b >= MIN_THINKING_BUDGET),
        _ => thinking.budget_tokens(),
    };
    match budget {
        Some(budget_tokens) => json!({ "type": "enabled", "budget_tokens": budget_tokens }),
        None => json!({ "type": "disabled" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudette_core::ToolCall;

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
        let tool =
            ToolSpec { name: "f".into(), description: String::new(), parameters: json!({}), cache: None };
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
    fn tool_results_need_an_id() {
        let err = convert_messages(&[Message::new(Role::Tool, "x")]).unwrap_err();
        assert_eq!(err.kind, claudette_core::ErrorKind::InvalidRequest);
    }
}
