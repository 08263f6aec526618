//! A non-stream Messages response as a [`ChatResponse`].

use claudette_core::{
    BackendError, BlockOrder, ChatResponse, NativeBlock, TextCitations, ThinkingBlock, ToolCall,
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::classify_event;
use crate::wire::{ANSWER_FIELDS, WireUsage, answer_field, finish_reason};

#[derive(Debug, Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A 2xx body as JSON; an error wrapped in a 200 (a proxy may do that) is still an error,
/// classified like a stream's.
fn json_answer(body: &[u8]) -> Result<Value, BackendError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        BackendError::malformed(format!("response is not JSON: {e}")).with_provider_body(body)
    })?;
    if value.get("type").and_then(Value::as_str) == Some("error")
        || value.get("error").is_some_and(|e| !e.is_null())
    {
        return Err(classify_event(&value, &String::from_utf8_lossy(body)));
    }
    Ok(value)
}

/// Parses a 2xx `/v1/messages/count_tokens` body: `{"input_tokens": N}`.
pub(crate) fn parse_count(body: &[u8]) -> Result<u32, BackendError> {
    let value = json_answer(body)?;
    value.get("input_tokens").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
        BackendError::malformed("token count has no `input_tokens` count").with_provider_body(body)
    })
}

/// Parses a 2xx body. `requested_model` names the answer when the body does not.
pub(crate) fn parse(body: &[u8], backend: &str, requested_model: &str) -> Result<ChatResponse, BackendError> {
    let value = json_answer(body)?;
    if value.get("content").is_none() {
        return Err(BackendError::malformed("response has no `content` array").with_provider_body(body));
    }
    let native_fields = ANSWER_FIELDS.iter().filter_map(|name| answer_field(name, value.get(name))).collect();
    let msg: WireMessage = serde_json::from_value(value).map_err(|e| {
        BackendError::malformed(format!("unexpected response shape: {e}")).with_provider_body(body)
    })?;
    if msg.kind.as_deref().is_some_and(|k| k != "message") {
        return Err(BackendError::malformed(format!(
            "unexpected response type `{}`",
            msg.kind.unwrap_or_default()
        ))
        .with_provider_body(body));
    }

    let mut out = ChatResponse::empty(backend, msg.model.unwrap_or_else(|| requested_model.to_owned()));
    out.id = msg.id;
    out.native_fields = native_fields;
    let mut reasoning = String::new();
    // Claude thinks between its calls (interleaved thinking), and the turn must go back in the
    // order it came, which the three lists alone no longer tell.
    let mut order = BlockOrder::default();
    for block in &msg.content {
        let str_field = |k: &str| block.get(k).and_then(Value::as_str);
        match str_field("type") {
            Some("text") => {
                out.content.push_str(str_field("text").unwrap_or_default());
                order.text(out.content.len());
                if let Some(cited) =
                    block.get("citations").and_then(Value::as_array).filter(|c| !c.is_empty())
                {
                    add_citations(&mut out.citations, out.content.len(), cited);
                }
            }
            Some("thinking") => {
                let thinking = str_field("thinking").unwrap_or_default();
                reasoning.push_str(thinking);
                order.thinking();
                out.thinking.push(ThinkingBlock::Thinking {
                    thinking: thinking.to_owned(),
                    signature: str_field("signature").unwrap_or_default().to_owned(),
                });
            }
            Some("redacted_thinking") => {
                if let Some(data) = str_field("data") {
                    order.thinking();
                    out.thinking.push(ThinkingBlock::Redacted { data: data.to_owned() });
                }
            }
            Some("tool_use") => {
                let (Some(id), Some(name)) = (str_field("id"), str_field("name")) else {
                    return Err(
                        BackendError::malformed("tool_use block without id or name").with_provider_body(body)
                    );
                };
                let arguments = match block.get("input") {
                    Some(v @ Value::Object(_)) => v.clone(),
                    // Anthropic always sends an object; a compatible server that sends the JSON
                    // text instead still means the same call.
                    Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => {
                            return Err(BackendError::malformed(format!(
                                "tool `{name}` input is not an object"
                            ))
                            .with_provider_body(body));
                        }
                    },
                    None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
                    Some(_) => {
                        return Err(BackendError::malformed(format!("tool `{name}` input is not an object"))
                            .with_provider_body(body));
                    }
                };
                order.tool_call();
                out.tool_calls.push(ToolCall { id: id.to_owned(), name: name.to_owned(), arguments });
            }
            // Blocks of Anthropic's own tools (`server_tool_use`, `web_search_tool_result`,
            // `mcp_tool_use`, …) and any it adds later: the client shows them and sends them back
            // unchanged (search results are encrypted), so they go whole, in their place.
            Some(_) => {
                order.native();
                out.native.push(NativeBlock::anthropic(block.clone()));
            }
            // No type: nothing anyone could send back.
            None => {}
        }
    }
    if !reasoning.is_empty() {
        out.reasoning = Some(reasoning);
    }
    out.order = order.finish();
    out.finish_reason = msg.stop_reason.as_deref().map(|r| finish_reason(r, msg.stop_sequence.as_deref()));
    out.usage = msg.usage.unwrap_or_default().to_usage();
    Ok(out)
}

/// Citations of the text block that ends `end` bytes into the answer's text. A cited block
/// without text of its own ends where the one before it does, so the two share the place.
pub(crate) fn add_citations(all: &mut Vec<TextCitations>, end: usize, cited: &[Value]) {
    let end = u32::try_from(end).unwrap_or(u32::MAX);
    match all.last_mut() {
        Some(last) if last.end == end => last.citations.extend_from_slice(cited),
        _ => all.push(TextCitations { end, citations: cited.to_vec() }),
    }
}

#[cfg(test)]
mod tests {
    use claudette_core::{Block, BlockKind};
    use serde_json::json;

    use super::*;

    fn answer(content: Value) -> ChatResponse {
        let body = json!({"type": "message", "model": "claude-opus-4-8", "content": content,
                          "stop_reason": "tool_use"});
        parse(body.to_string().as_bytes(), "claude", "claude-opus-4-8").unwrap()
    }

    /// Interleaved thinking: the order the blocks came in is kept, an empty text block takes
    /// no place in it, a server tool block takes its own, and the usual order is kept as none.
    #[test]
    fn the_order_of_an_answers_blocks_is_kept() {
        let r = answer(json!([
            {"type": "thinking", "thinking": "plan", "signature": "s1"},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": ""},
            {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
            {"type": "text", "text": "Found"},
            {"type": "text", "text": " it."},
            {"type": "tool_use", "id": "c2", "name": "f", "input": {}},
        ]));
        let (th, tc, tx, nat) =
            (BlockKind::Thinking, BlockKind::ToolCall, BlockKind::Text, BlockKind::Native);
        assert_eq!(r.order, [th, tc, th, nat, tx(5), tx(9), tc]);
        let kinds: Vec<String> = r
            .blocks()
            .unwrap()
            .iter()
            .map(|b| match b {
                Block::Thinking(ThinkingBlock::Thinking { thinking, .. }) => thinking.clone(),
                Block::Thinking(ThinkingBlock::Redacted { data }) => data.clone(),
                Block::Text { text, .. } => (*text).to_owned(),
                Block::ToolCall { call, .. } => call.id.clone(),
                Block::Native(n) => n.kind().to_owned(),
            })
            .collect();
        assert_eq!(kinds, ["plan", "c1", "opaque", "server_tool_use", "Found", " it.", "c2"]);

        let usual = answer(json!([
            {"type": "thinking", "thinking": "plan", "signature": "s1"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
            {"type": "tool_use", "id": "c2", "name": "f", "input": {}},
        ]));
        assert!(usual.order.is_empty(), "{:?}", usual.order);
    }
}
