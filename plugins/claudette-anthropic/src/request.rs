//! Our [`ChatRequest`] as a Messages API request body.
//!
//! The Messages API differs from the chat shape in three ways that matter here: system text is
//! a top-level field, not a message; tool calls are `tool_use` content blocks of the assistant
//! turn; and tool results are `tool_result` blocks of a *user* turn, which must come first in
//! that turn's content.

use claudette_core::types::{json_f32, normalize_tool_arguments};
use claudette_core::{BackendError, ChatRequest, ErrorKind, Message, Role, ToolChoice, ToolSpec};
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
            [only] if only.get("type").and_then(Value::as_str) == Some("text") => {
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
    t
}

/// Converts the conversation: system text out, turns in.
fn convert_messages(messages: &[Message]) -> Result<(Vec<String>, Vec<Value>), BackendError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for m in messages {
        match m.role {
            Role::System => {
                if !m.content.is_empty() {
                    system.push(m.content.clone());
                }
            }
            Role::User => {
                // Text after tool results joins their turn (after them, as Anthropic requires)
                // instead of making two user turns in a row.
                match turns.last_mut() {
                    Some(t) if t.has_tool_results => t.blocks.push(text_block(&m.content)),
                    _ => turns.push(Turn {
                        role: "user",
                        blocks: vec![text_block(&m.content)],
                        has_tool_results: false,
                    }),
                }
            }
            Role::Assistant => {
                let mut blocks = Vec::with_capacity(1 + m.tool_calls.len());
                // Anthropic rejects empty text blocks; a turn that only calls tools has none.
                if !m.content.is_empty() || m.tool_calls.is_empty() {
                    blocks.push(text_block(&m.content));
                }
                for call in &m.tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        // Anthropic answers anything but an object with a 400 no other backend gives.
                        "input": normalize_tool_arguments(&call.arguments),
                    }));
                }
                turns.push(Turn { role: "assistant", blocks, has_tool_results: false });
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().filter(|id| !id.is_empty()).ok_or_else(|| {
                    BackendError::invalid("a tool result message needs the tool_call_id it answers")
                })?;
                let mut block = json!({ "type": "tool_result", "tool_use_id": id, "content": m.content });
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
    b.insert("max_tokens".into(), request.max_tokens.unwrap_or(default_max_tokens).into());
    b.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        b.insert("system".into(), system.join("\n\n").into());
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
        let tool = ToolSpec { name: "f".into(), description: String::new(), parameters: json!({}) };
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
