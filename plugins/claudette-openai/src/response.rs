//! Reading a non-stream chat completion, and the pieces the stream decoder shares with it
//! (usage, finish reasons, content text).
//!
//! Everything is read from a `serde_json::Value` by hand rather than derived: compatible
//! servers send nulls where OpenAI omits fields, numbers where it sends strings, content
//! arrays where it sends text, and extra fields everywhere (`timings`, `provider_specific_fields`).
//! Being lenient per field keeps one odd field from failing a good answer, while a body
//! that is not a chat completion at all still fails with a message naming what is missing.

use claudette_core::{BackendError, ChatResponse, FinishReason, ToolCall, Usage, UsageSource};
use serde_json::Value;

use crate::error::classify_error_value;

/// Maps OpenAI's `finish_reason` to ours; unknown values are kept verbatim.
pub fn map_finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" | "eos" | "end_turn" => FinishReason::Stop,
        "length" | "max_tokens" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Reads an OpenAI `usage` object. `None` when there is none (absent, null, or without
/// either token count), so the caller can mark usage as missing rather than as zero.
///
/// `prompt_tokens` already includes cached tokens and `completion_tokens` reasoning tokens,
/// which is exactly our convention; the splits are clamped to their totals so a server that
/// reports nonsense cannot make us count something twice.
pub fn parse_usage(value: &Value) -> Option<Usage> {
    let obj = value.as_object()?;
    let input = obj.get("prompt_tokens").and_then(count);
    let output = obj.get("completion_tokens").and_then(count);
    if input.is_none() && output.is_none() {
        return None;
    }
    let input = input.unwrap_or(0);
    let output = output.unwrap_or(0);
    let detail =
        |outer: &str, inner: &str| obj.get(outer).and_then(|d| d.get(inner)).and_then(count).unwrap_or(0);
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: detail("prompt_tokens_details", "cached_tokens").min(input),
        cache_write_tokens: 0,
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens").min(output),
        source: UsageSource::Reported,
    })
}

/// A token count: a non-negative integer (or an integral float, which some servers send).
fn count(v: &Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    let f = v.as_f64()?;
    if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= f64::from(u32::MAX) {
        // Exact: the value is integral and in range.
        return Some(f as u32);
    }
    None
}

/// The text of a `content` field: a string, or the `text` parts of a content-part array
/// (some servers answer in the request's multi-part shape). Null and other shapes are empty.
pub fn content_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                other => other.get("text").and_then(Value::as_str),
            })
            .collect(),
        _ => String::new(),
    }
}

/// Reasoning text a server sent beside the answer: `reasoning_content` (vLLM, SGLang, Qwen,
/// DeepSeek) or `reasoning` as a string (newer vLLM, OpenRouter).
pub fn reasoning_text(obj: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// Parses tool-call arguments into the JSON object our [`ToolCall`] carries.
///
/// OpenAI sends a JSON string; an empty string means no arguments. Text that is not JSON is
/// kept as a string value and reported through the returned warning, never dropped: the
/// caller decides what a half-written call is worth.
pub fn parse_arguments(name: &str, raw: Option<&Value>) -> (Value, Option<String>) {
    match raw {
        None | Some(Value::Null) => (Value::Object(serde_json::Map::new()), None),
        Some(Value::String(s)) if s.trim().is_empty() => (Value::Object(serde_json::Map::new()), None),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => (v, None),
            Err(e) => (
                Value::String(s.clone()),
                Some(format!("tool call `{name}`: arguments are not valid JSON ({e}); kept as a string")),
            ),
        },
        // Some compatible servers send the object itself.
        Some(other) => (other.clone(), None),
    }
}

/// Reads a 2xx chat-completions body into a [`ChatResponse`] for `backend`.
///
/// `requested_model` names the answer when the body does not. `cost` and `latency` are left
/// at zero for the caller (the adapter prices by the model in the answer, the I/O layer
/// measures time). A 2xx body that carries an error object instead of choices is returned as
/// that error, classified like an in-stream error; any other non-completion is
/// `MalformedResponse` naming what was missing.
pub fn parse_chat_completion(
    body: &[u8],
    backend: &str,
    requested_model: &str,
) -> Result<ChatResponse, BackendError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        BackendError::malformed(format!("response body is not JSON: {e}")).with_provider_body(body)
    })?;
    if !value.is_object() {
        return Err(BackendError::malformed("response body is not a JSON object").with_provider_body(body));
    }
    let choices = match value.get("choices") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        other => {
            if let Some(err) = classify_error_value(&value) {
                return Err(err);
            }
            let what = match other {
                Some(Value::Array(_)) => "an empty `choices` array",
                _ => "no `choices` array",
            };
            return Err(BackendError::malformed(format!("response has {what}; not a chat completion"))
                .with_provider_body(body));
        }
    };
    // We never ask for n > 1: take choice 0 (by its index when the server numbers them).
    let choice = choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
        .or_else(|| choices.first())
        .ok_or_else(|| BackendError::malformed("response has no choice"))?;
    let message = choice.get("message").filter(|m| m.is_object()).ok_or_else(|| {
        BackendError::malformed("`choices[0]` has no `message` object").with_provider_body(body)
    })?;

    let model =
        value.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(requested_model);
    let mut response = ChatResponse::empty(backend, model);
    response.id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    response.content = content_text(message.get("content"));
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        // A refusal is an answer, not an error: keep it visible as content, and say so.
        if response.content.is_empty() {
            response.content = refusal.to_owned();
        }
        response.warnings.push("the model refused the request (OpenAI `refusal`)".to_owned());
    }
    response.reasoning = reasoning_text(message).map(str::to_owned);
    read_tool_calls(message, &mut response)?;
    response.finish_reason = choice.get("finish_reason").and_then(Value::as_str).map(map_finish_reason);
    if let Some(usage) = value.get("usage").and_then(parse_usage) {
        response.usage = usage;
    }
    Ok(response)
}

fn read_tool_calls(message: &Value, response: &mut ChatResponse) -> Result<(), BackendError> {
    let mut push = |i: usize, id: Option<&str>, function: &Value| -> Result<(), BackendError> {
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| BackendError::malformed(format!("tool call {i} has no function name")))?;
        let (arguments, warning) = parse_arguments(name, function.get("arguments"));
        response.warnings.extend(warning);
        // An id is needed to answer the call; synthesise a stable one if the server sent none.
        let id = id.filter(|s| !s.is_empty()).map_or_else(|| format!("call_{i}"), str::to_owned);
        response.tool_calls.push(ToolCall { id, name: name.to_owned(), arguments });
        Ok(())
    };
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (i, call) in calls.iter().enumerate() {
            let function = call
                .get("function")
                .filter(|f| f.is_object())
                .ok_or_else(|| BackendError::malformed(format!("tool call {i} has no `function` object")))?;
            push(i, call.get("id").and_then(Value::as_str), function)?;
        }
    } else if let Some(function) = message.get("function_call").filter(|f| f.is_object()) {
        // The pre-tools shape, still sent by some older servers.
        push(0, None, function)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_clamps_splits_and_tolerates_nulls() {
        let u = parse_usage(&serde_json::json!({
            "prompt_tokens": 10, "completion_tokens": 5.0,
            "prompt_tokens_details": {"cached_tokens": 50}, "completion_tokens_details": null
        }))
        .unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens),
            (10, 5, 10, 0)
        );
        assert!(parse_usage(&Value::Null).is_none());
        assert!(parse_usage(&serde_json::json!({})).is_none());
    }

    #[test]
    fn content_parts_are_joined() {
        let v = serde_json::json!([{"type":"text","text":"a"},{"type":"text","text":"b"}]);
        assert_eq!(content_text(Some(&v)), "ab");
        assert_eq!(content_text(Some(&Value::Null)), "");
    }
}
