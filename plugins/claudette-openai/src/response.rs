//! Reading a non-stream chat completion, and the pieces the stream decoder shares with it
//! (usage, finish reasons, content text).
//!
//! Compatible servers send nulls where OpenAI omits fields, numbers where it sends strings,
//! content arrays where it sends text, and extra fields everywhere (`timings`,
//! `provider_specific_fields`). Being lenient per field keeps one odd field from failing a
//! good answer, while a body that is not a chat completion at all still fails with a message
//! naming what is missing. The body is read into the borrowing, per-field lenient types of
//! [`crate::wire`] (no `Value` tree: this runs on every answer) — the common body by the strict
//! scanner [`crate::wire::Scan`], anything it is unsure of by serde; only the rare paths (an
//! error object instead of choices, a body those types refuse) build a `serde_json::Value`.

use std::borrow::Cow;

use claudette_core::{BackendError, ChatResponse, FinishReason, ServiceTier, ToolCall, Usage, UsageSource};
use serde::Deserialize as _;
use serde_json::Value;

use crate::error::classify_error_value;
use crate::wire::{
    Args, Arr, CompletionWire, Content, FunctionWire, Index, MessageChoice, MessageWire, Obj, Scan, Str,
    UsageWire, scan_message, scan_stop_reason, scan_usage, seen_once,
};

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

/// A choice's `finish_reason` with the non-standard `stop_reason` vLLM and SGLang send beside
/// it: the stop string that ended the answer (else a token id, or `null`). A `stop` that names
/// its string is [`FinishReason::StopSequence`], so an Anthropic client of a self-hosted model
/// learns which of its `stop_sequences` matched, as it would from Anthropic; OpenAI's plain
/// `stop` (no such field) stays [`FinishReason::Stop`].
pub(crate) fn finish_reason_with(reason: &str, stop_reason: Option<&str>) -> FinishReason {
    match (map_finish_reason(reason), stop_reason) {
        (FinishReason::Stop, Some(matched)) if !matched.is_empty() => {
            FinishReason::StopSequence(matched.to_owned())
        }
        (reason, _) => reason,
    }
}

/// Reads an OpenAI `usage` object. `None` when there is none (absent, null, or without
/// either token count), so the caller can mark usage as missing rather than as zero.
///
/// `prompt_tokens` already includes cached tokens and `completion_tokens` reasoning tokens,
/// which is exactly our convention; the splits are clamped to their totals so a server that
/// reports nonsense cannot make us count something twice.
pub fn parse_usage(value: &Value) -> Option<Usage> {
    Obj::<UsageWire>::deserialize(value).ok()?.0?.to_usage()
}

impl UsageWire {
    /// See [`parse_usage`].
    pub(crate) fn to_usage(&self) -> Option<Usage> {
        let (input, output) = (self.prompt_tokens.0, self.completion_tokens.0);
        if input.is_none() && output.is_none() {
            return None;
        }
        let input = input.unwrap_or(0);
        let output = output.unwrap_or(0);
        let cached = self.prompt_tokens_details.0.as_ref().and_then(|d| d.cached_tokens.0).unwrap_or(0);
        let reasoning =
            self.completion_tokens_details.0.as_ref().and_then(|d| d.reasoning_tokens.0).unwrap_or(0);
        Some(Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cached.min(input),
            cache_write_tokens: 0,
            reasoning_tokens: reasoning.min(output),
            web_search_requests: 0,
            tier: ServiceTier::Standard,
            source: UsageSource::Reported,
        })
    }
}

/// The text of a `content` field: a string, or the `text` parts of a content-part array
/// (some servers answer in the request's multi-part shape). Null and other shapes are empty.
pub fn content_text(value: Option<&Value>) -> String {
    value.map(|v| Content::deserialize(v).unwrap_or_default()).unwrap_or_default().into_text()
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
    arguments_value(name, Args::from_value(raw))
}

/// [`parse_arguments`] of the typed field, taking it by value (an object is moved, not cloned).
pub(crate) fn arguments_value(name: &str, raw: Args<'_>) -> (Value, Option<String>) {
    match raw {
        Args::Absent => (Value::Object(serde_json::Map::new()), None),
        Args::Text(s) if s.trim().is_empty() => (Value::Object(serde_json::Map::new()), None),
        Args::Text(s) => match serde_json::from_str::<Value>(&s) {
            Ok(v) => (v, None),
            Err(e) => {
                let warning =
                    format!("tool call `{name}`: arguments are not valid JSON ({e}); kept as a string");
                (Value::String(s.into_owned()), Some(warning))
            }
        },
        // Some compatible servers send the object itself.
        Args::Json(v) => (v, None),
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
    // The common answer is read by the scanner; anything it is unsure of, by serde.
    if let Some(completion) = std::str::from_utf8(body).ok().and_then(scan_completion) {
        return read_completion(completion, body, backend, requested_model);
    }
    parse_general(body, backend, requested_model)
}

/// [`parse_chat_completion`] by the serde reader alone (the scanner's fallback and, in
/// tests, its reference).
fn parse_general(body: &[u8], backend: &str, requested_model: &str) -> Result<ChatResponse, BackendError> {
    match serde_json::from_slice::<Obj<CompletionWire<'_>>>(body) {
        Ok(Obj(Some(completion))) => read_completion(completion, body, backend, requested_model),
        Ok(Obj(None)) => Err(not_an_object(body)),
        Err(_) => {
            // Not JSON (the `Value` parser's message says why, as it always did), or JSON the
            // typed pass refuses: a repeated key, of which a `Value` keeps the last.
            let value: Value = serde_json::from_slice(body).map_err(|e| not_json(body, &e))?;
            match Obj::<CompletionWire<'_>>::deserialize(&value) {
                Ok(Obj(Some(completion))) => read_completion(completion, body, backend, requested_model),
                Ok(Obj(None)) => Err(not_an_object(body)),
                Err(e) => Err(BackendError::malformed(format!("response body cannot be read: {e}"))
                    .with_provider_body(body)),
            }
        }
    }
}

/// The common completion read by [`Scan`] without `serde_json`: `None` when it holds anything
/// the scanner is not sure of (see [`Scan`]; tool calls, an error object, a repeated key…),
/// and then the serde reader reads it. The same `CompletionWire` as serde's otherwise.
fn scan_completion(text: &str) -> Option<CompletionWire<'_>> {
    let mut s = Scan::new(text);
    let mut c = CompletionWire::default();
    let mut seen = 0u16;
    s.object(|s, key| {
        match key {
            "id" => {
                seen_once(&mut seen, 1)?;
                c.id = Str(s.text_or_null()?);
            }
            "model" => {
                seen_once(&mut seen, 2)?;
                c.model = Str(s.text_or_null()?);
            }
            "choices" => {
                seen_once(&mut seen, 4)?;
                if !s.null() {
                    let mut choices = Vec::with_capacity(1);
                    s.array(|s| {
                        choices.push(Obj(Some(scan_choice(s)?)));
                        Some(())
                    })?;
                    c.choices = Arr(Some(choices));
                }
            }
            "usage" => {
                seen_once(&mut seen, 8)?;
                c.usage = scan_usage(s)?;
            }
            "error" => {
                seen_once(&mut seen, 16)?;
                if !s.null() {
                    return None;
                }
            }
            "object" => {
                seen_once(&mut seen, 32)?;
                c.object = Str(s.text_or_null()?);
            }
            "type" => {
                seen_once(&mut seen, 64)?;
                c.kind = Str(s.text_or_null()?);
            }
            "detail" => return None,
            _ => s.skip()?,
        }
        Some(())
    })?;
    s.end()?;
    Some(c)
}

fn scan_choice<'a>(s: &mut Scan<'a>) -> Option<MessageChoice<'a>> {
    let mut choice = MessageChoice::default();
    let mut seen = 0u16;
    s.object(|s, key| {
        match key {
            "index" => {
                seen_once(&mut seen, 1)?;
                choice.index = Index(s.uint_or_null()?);
            }
            "message" => {
                seen_once(&mut seen, 2)?;
                if !s.null() {
                    choice.message = Obj(Some(Box::new(scan_message(s)?)));
                }
            }
            "finish_reason" => {
                seen_once(&mut seen, 4)?;
                choice.finish_reason = Str(s.text_or_null()?);
            }
            "stop_reason" => {
                seen_once(&mut seen, 8)?;
                choice.stop_reason = Str(scan_stop_reason(s)?);
            }
            _ => s.skip()?,
        }
        Some(())
    })?;
    Some(choice)
}

fn not_json(body: &[u8], e: &serde_json::Error) -> BackendError {
    BackendError::malformed(format!("response body is not JSON: {e}")).with_provider_body(body)
}

fn not_an_object(body: &[u8]) -> BackendError {
    BackendError::malformed("response body is not a JSON object").with_provider_body(body)
}

fn read_completion(
    completion: CompletionWire<'_>,
    body: &[u8],
    backend: &str,
    requested_model: &str,
) -> Result<ChatResponse, BackendError> {
    let mut choices = match completion.choices.0 {
        Some(c) if !c.is_empty() => c,
        other => {
            // The rare path: an error object in a 2xx body. Its classification reads a `Value`.
            let value: Value = serde_json::from_slice(body).map_err(|e| not_json(body, &e))?;
            if let Some(err) = classify_error_value(&value) {
                return Err(err);
            }
            let what = match other {
                Some(_) => "an empty `choices` array",
                None => "no `choices` array",
            };
            return Err(BackendError::malformed(format!("response has {what}; not a chat completion"))
                .with_provider_body(body));
        }
    };
    // We never ask for n > 1: take choice 0 (by its index when the server numbers them).
    let at = choices.iter().position(|c| c.0.as_ref().is_some_and(|c| c.index.0 == Some(0))).unwrap_or(0);
    let choice = choices.swap_remove(at).0.unwrap_or_default();
    let mut message = choice.message.0.ok_or_else(|| {
        BackendError::malformed("`choices[0]` has no `message` object").with_provider_body(body)
    })?;

    let model = completion.model.non_empty();
    let mut response = ChatResponse::empty(backend, model.as_deref().unwrap_or(requested_model));
    response.id = completion.id.0.map(Cow::into_owned);
    response.content = std::mem::take(&mut message.content).into_text();
    if let Some(refusal) = message.refusal.0.take().filter(|r| !r.is_empty()) {
        // A refusal is an answer, not an error: keep it visible as content, and say so.
        if response.content.is_empty() {
            response.content = refusal.into_owned();
        }
        response.warnings.push("the model refused the request (OpenAI `refusal`)".to_owned());
    }
    response.reasoning = message.take_reasoning().map(Cow::into_owned);
    read_tool_calls(*message, &mut response)?;
    let stop_reason = choice.stop_reason.0.as_deref();
    response.finish_reason = choice.finish_reason.0.as_deref().map(|r| finish_reason_with(r, stop_reason));
    if let Some(usage) = completion.usage.0.as_ref().and_then(UsageWire::to_usage) {
        response.usage = usage;
    }
    Ok(response)
}

fn read_tool_calls(message: MessageWire<'_>, response: &mut ChatResponse) -> Result<(), BackendError> {
    if let Some(calls) = &message.tool_calls.0 {
        response.tool_calls.reserve(calls.len());
    }
    let mut push =
        |i: usize, id: Option<Cow<'_, str>>, function: FunctionWire<'_>| -> Result<(), BackendError> {
            let name = function
                .name
                .non_empty()
                .ok_or_else(|| BackendError::malformed(format!("tool call {i} has no function name")))?;
            let (arguments, warning) = arguments_value(&name, function.arguments);
            response.warnings.extend(warning);
            // An id is needed to answer the call; synthesise a stable one if the server sent none.
            let id = id.filter(|s| !s.is_empty()).map_or_else(|| format!("call_{i}"), Cow::into_owned);
            response.tool_calls.push(ToolCall { id, name: name.into_owned(), arguments });
            Ok(())
        };
    if let Some(calls) = message.tool_calls.0 {
        for (i, call) in calls.into_iter().enumerate() {
            let call = call.0.unwrap_or_default();
            let function = call
                .function
                .0
                .ok_or_else(|| BackendError::malformed(format!("tool call {i} has no `function` object")))?;
            push(i, call.id.0, function)?;
        }
    } else if let Some(function) = message.function_call.0 {
        // The pre-tools shape, still sent by some older servers.
        push(0, None, *function)?;
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
    fn a_repeated_key_reads_like_a_value_last_one_wins() {
        let body = br#"{"model":"a","model":"b","choices":[{"index":0,"message":{"content":"x"}}]}"#;
        let r = parse_chat_completion(body, "be", "req").unwrap();
        assert_eq!((r.model.as_str(), r.content.as_str()), ("b", "x"));
    }

    /// The scanner's reading of a completion against serde's, on generated bodies of every
    /// shape (the stream test's chunks with `delta` renamed `message`).
    #[test]
    fn scanned_completion_matches_the_serde_reader() {
        let mut rng = crate::stream::tests::Rng(0x2545_F491_4F6C_DD1D, false);
        let mut fast = 0;
        for case in 0..4000 {
            rng.1 = case % 2 == 0;
            let body = crate::stream::tests::chunk(&mut rng).replace("\"delta\"", "\"message\"");
            let mut body = body.into_bytes();
            if rng.below(20) == 0 {
                body.truncate(rng.below(body.len() + 1));
            }
            fast += usize::from(std::str::from_utf8(&body).ok().and_then(scan_completion).is_some());
            assert_eq!(
                parse_chat_completion(&body, "be", "req"),
                parse_general(&body, "be", "req"),
                "case {case}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        assert!((400..3600).contains(&fast), "{fast} of 4000 bodies read by the scanner");
    }

    /// Several thousand random edits of real completions: whatever the scanner accepts is
    /// JSON (the `Value` parser agrees, but for a number beyond `f64` in a field nobody reads,
    /// which serde's typed reader skips by its grammar too), and the answer or error is the
    /// serde reader's.
    #[test]
    fn mutated_real_completions_read_as_serde_reads_them() {
        let real = [
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!\nHow can I help?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#,
            r#"{"choices":[{"finish_reason":"length","index":0,"message":{"content":"4","reasoning_content":"2+2","role":"assistant"}}],"created":1,"model":"qwen","object":"chat.completion","usage":{"completion_tokens":1,"prompt_tokens":5,"total_tokens":6},"id":"x","timings":{"prompt_ms":1.5,"predicted_per_second":-3e2}}"#,
        ];
        let mut rng = crate::stream::tests::Rng(0x94D0_49BB_1331_11EB, false);
        let mut accepted = 0;
        for case in 0..4000 {
            let mut body = real[case % real.len()].to_owned();
            for _ in 0..1 + rng.below(3) {
                crate::stream::tests::mutate(&mut rng, &mut body);
            }
            if scan_completion(&body).is_some() {
                accepted += 1;
                if let Err(e) = serde_json::from_str::<Value>(&body) {
                    assert!(e.to_string().contains("number out of range"), "accepted non-JSON {body:?}: {e}");
                }
            }
            assert_eq!(
                parse_chat_completion(body.as_bytes(), "be", "req"),
                parse_general(body.as_bytes(), "be", "req"),
                "case {case}: {body:?}"
            );
        }
        assert!(accepted > 200 && accepted < 4000, "{accepted} of 4000 mutants accepted");
    }

    #[test]
    fn content_parts_are_joined() {
        let v = serde_json::json!([{"type":"text","text":"a"},{"type":"text","text":"b"}]);
        assert_eq!(content_text(Some(&v)), "ab");
        assert_eq!(content_text(Some(&Value::Null)), "");
    }
}
