//! Building the `POST /chat/completions` body from a [`ChatRequest`].

use claudette_core::{BackendError, ChatRequest, Message, Role, ToolCall, ToolSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

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
            extra: Map::new(),
        }
    }
}

/// The JSON body of a chat-completions call.
///
/// Routing-only fields of the request (`backend`, `tags`, `metadata`) are never sent.
/// Returns `InvalidRequest` for what the server would reject anyway (a tool result without
/// `tool_call_id`, a non-finite temperature), so the error names the message at fault.
pub fn build_body(options: &BodyOptions, request: &ChatRequest, stream: bool) -> Result<Value, BackendError> {
    let model = request.model.as_deref().filter(|m| !m.is_empty()).unwrap_or(&options.model);
    let messages = request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| message_json(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_owned()));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(n) = request.max_tokens {
        body.insert(options.max_tokens_field.as_str().into(), Value::from(n));
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), float("temperature", t)?);
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), float("top_p", p)?);
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    if !request.tools.is_empty() {
        body.insert("tools".into(), Value::Array(request.tools.iter().map(tool_json).collect()));
    }
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        if options.stream_include_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    for (k, v) in &options.extra {
        body.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(body))
}

fn message_json(index: usize, m: &Message) -> Result<Value, BackendError> {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = Map::new();
    out.insert("role".into(), Value::String(role.into()));
    match m.role {
        Role::Assistant if !m.tool_calls.is_empty() => {
            // OpenAI's shape for a turn that only calls tools is `content: null`.
            let content = if m.content.is_empty() { Value::Null } else { Value::String(m.content.clone()) };
            out.insert("content".into(), content);
            let calls = m.tool_calls.iter().map(tool_call_json).collect::<Result<Vec<_>, _>>()?;
            out.insert("tool_calls".into(), Value::Array(calls));
        }
        Role::Tool => {
            let id = m.tool_call_id.as_deref().filter(|id| !id.is_empty()).ok_or_else(|| {
                BackendError::invalid(format!(
                    "message {index}: a tool result needs the `tool_call_id` it answers"
                ))
            })?;
            out.insert("tool_call_id".into(), Value::String(id.to_owned()));
            out.insert("content".into(), Value::String(m.content.clone()));
        }
        _ => {
            out.insert("content".into(), Value::String(m.content.clone()));
        }
    }
    Ok(Value::Object(out))
}

fn tool_call_json(call: &ToolCall) -> Result<Value, BackendError> {
    // OpenAI wants the arguments as a JSON *string*. A string here is arguments we could not
    // parse when they came in: send them back verbatim rather than double-encoded.
    let arguments = match &call.arguments {
        Value::String(raw) => raw.clone(),
        other => serde_json::to_string(other)
            .map_err(|e| BackendError::internal(format!("encode tool call arguments: {e}")))?,
    };
    Ok(json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }))
}

fn tool_json(tool: &ToolSpec) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), Value::String(tool.name.clone()));
    if !tool.description.is_empty() {
        function.insert("description".into(), Value::String(tool.description.clone()));
    }
    function.insert("parameters".into(), tool.parameters.clone());
    json!({"type": "function", "function": function})
}

/// An `f32` as the JSON number a person would write: `0.7`, not `0.699999988079071` (what a
/// plain `f32 as f64` widening gives). Servers that validate ranges or log requests see
/// exactly what was configured.
fn float(name: &str, x: f32) -> Result<Value, BackendError> {
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    serde_json::Number::from_f64(shortest)
        .map(Value::Number)
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
}
