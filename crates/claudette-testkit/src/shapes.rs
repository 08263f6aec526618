//! Provider-shaped [`Reply`] constructors: the bodies, SSE frames and NDJSON lines that
//! OpenAI-compatible servers, Anthropic Messages, Ollama `/api/chat` and Gemini
//! `generateContent` really send (see `shared/design/wire-protocols.md` and the samples
//! recorded from real servers under `shared/testbed/samples/`).
//!
//! Token counts are predictable so tests can assert on them: prompts always count
//! [`PROMPT_TOKENS`] tokens; a non-stream text answer counts one completion token per
//! whitespace-separated word; a stream counts one completion token per piece.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::Reply;

/// Prompt token count reported by every shape that does not take explicit usage.
pub const PROMPT_TOKENS: u32 = 10;

/// Model name in OpenAI-, Ollama- and Gemini-shaped bodies.
pub const FAKE_MODEL: &str = "fake-model";

/// Model name in Anthropic-shaped bodies.
pub const CLAUDE_FAKE_MODEL: &str = "claude-fake";

/// Fixed `created` timestamp, so bodies are deterministic apart from their ids.
const CREATED: u64 = 1_700_000_000;

/// Fixed `created_at` for Ollama bodies (RFC 3339, as Ollama sends it).
const OLLAMA_CREATED_AT: &str = "2024-01-01T00:00:00.000000Z";

/// Ollama durations, in nanoseconds like the real server.
const OLLAMA_LOAD_NS: u64 = 1_000_000;
const OLLAMA_PROMPT_EVAL_NS: u64 = 20_000_000;
const OLLAMA_EVAL_NS: u64 = 80_000_000;

/// Ids are unique per constructed reply so tests can tell responses apart.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

fn count(pieces: &[&str]) -> u32 {
    u32::try_from(pieces.len()).unwrap_or(u32::MAX)
}

fn data(value: &Value) -> String {
    format!("data: {value}")
}

fn event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}")
}

fn openai_usage(prompt: u32, completion: u32) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": u64::from(prompt) + u64::from(completion),
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    })
}

/// The fields every `chat.completion.chunk` shares.
struct OpenAiChunks {
    id: String,
}

impl OpenAiChunks {
    fn new() -> OpenAiChunks {
        OpenAiChunks { id: format!("chatcmpl-fake{}", next_id()) }
    }

    fn chunk(&self, delta: Value, finish_reason: Value) -> String {
        data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": FAKE_MODEL,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
            "usage": null
        }))
    }

    fn role(&self) -> String {
        self.chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)
    }

    fn content(&self, piece: &str) -> String {
        self.chunk(json!({"content": piece}), Value::Null)
    }

    fn finish(&self, reason: &str) -> String {
        self.chunk(json!({}), json!(reason))
    }

    fn usage(&self, prompt: u32, completion: u32) -> String {
        data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": FAKE_MODEL,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": openai_usage(prompt, completion)
        }))
    }
}

fn openai_completion(message: Value, finish_reason: &str, prompt: u32, completion: u32) -> Reply {
    Reply::json(
        200,
        json!({
            "id": format!("chatcmpl-fake{}", next_id()),
            "object": "chat.completion",
            "created": CREATED,
            "model": FAKE_MODEL,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
            "usage": openai_usage(prompt, completion),
            "service_tier": "default"
        }),
    )
    .header("x-request-id", "req_fake")
}

fn anthropic_usage(output: u32) -> Value {
    json!({
        "input_tokens": PROMPT_TOKENS,
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0
    })
}

fn anthropic_message_start(id: &str) -> String {
    event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "content": [], "model": CLAUDE_FAKE_MODEL,
            "stop_reason": null, "stop_sequence": null, "usage": anthropic_usage(1)
        }}),
    )
}

fn anthropic_ping() -> String {
    event("ping", &json!({"type": "ping"}))
}

fn anthropic_text_delta(index: usize, piece: &str) -> String {
    event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
    )
}

fn anthropic_block_stop(index: usize) -> String {
    event("content_block_stop", &json!({"type": "content_block_stop", "index": index}))
}

fn anthropic_message_end(stop_reason: &str, output: u32) -> [String; 2] {
    [
        event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                    "usage": anthropic_usage(output)}),
        ),
        event("message_stop", &json!({"type": "message_stop"})),
    ]
}

fn anthropic_error_message(kind: &str) -> &'static str {
    match kind {
        "overloaded_error" => "Overloaded",
        "rate_limit_error" => "Rate limited",
        "api_error" => "Internal server error",
        _ => "Upstream error",
    }
}

fn ollama_chunk(message: Value) -> Value {
    json!({"model": FAKE_MODEL, "created_at": OLLAMA_CREATED_AT, "message": message, "done": false})
}

fn ollama_final(message: Value, eval_count: u32) -> Value {
    json!({
        "model": FAKE_MODEL,
        "created_at": OLLAMA_CREATED_AT,
        "message": message,
        "done": true,
        "done_reason": "stop",
        "total_duration": OLLAMA_LOAD_NS + OLLAMA_PROMPT_EVAL_NS + OLLAMA_EVAL_NS,
        "load_duration": OLLAMA_LOAD_NS,
        "prompt_eval_count": PROMPT_TOKENS,
        "prompt_eval_duration": OLLAMA_PROMPT_EVAL_NS,
        "eval_count": eval_count,
        "eval_duration": OLLAMA_EVAL_NS
    })
}

fn gemini_usage(candidates: u32) -> Value {
    json!({
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": candidates,
        "totalTokenCount": u64::from(PROMPT_TOKENS) + u64::from(candidates)
    })
}

fn gemini_response(text: &str, finish: bool, candidates: u32, response_id: &str) -> Value {
    let candidate = if finish {
        json!({"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0})
    } else {
        json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0})
    };
    json!({
        "candidates": [candidate],
        "usageMetadata": gemini_usage(candidates),
        "modelVersion": FAKE_MODEL,
        "responseId": response_id
    })
}

/// # OpenAI Chat Completions shapes (also vLLM, llama.cpp, Ollama `/v1`)
impl Reply {
    /// A `chat.completion` answering `text`, `finish_reason: "stop"`, with usage
    /// `{prompt_tokens: 10, completion_tokens: <words in text>, total_tokens}`.
    pub fn openai_text(text: &str) -> Reply {
        Reply::openai_text_usage(text, PROMPT_TOKENS, words(text))
    }

    /// Like [`Reply::openai_text`] with explicit token counts (for cost tests).
    pub fn openai_text_usage(text: &str, prompt: u32, completion: u32) -> Reply {
        openai_completion(
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
            prompt,
            completion,
        )
    }

    /// A `chat.completion` whose message calls one tool: `finish_reason: "tool_calls"`,
    /// `content: null`, and `arguments` as a JSON *string* (as OpenAI sends it).
    pub fn openai_tool_call(id: &str, name: &str, arguments: &str) -> Reply {
        let message = json!({
            "role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]
        });
        openai_completion(message, "tool_calls", PROMPT_TOKENS, 1)
    }

    /// A streamed answer: a role chunk, one content chunk per piece, a finish chunk
    /// (`finish_reason: "stop"`), the usage chunk (`choices: []`, completion tokens = number
    /// of pieces, as with `stream_options.include_usage`), then `data: [DONE]`.
    pub fn openai_stream(pieces: &[&str]) -> Reply {
        let mut frames = openai_stream_frames(pieces);
        frames.push("data: [DONE]".to_owned());
        Reply::sse(frames)
    }

    /// [`Reply::openai_stream`] without the final `data: [DONE]`; the body still ends cleanly.
    /// A client must not report this as a complete answer (F-17).
    pub fn openai_stream_no_done(pieces: &[&str]) -> Reply {
        Reply::sse(openai_stream_frames(pieces))
    }

    /// A streamed tool call: a role chunk, a chunk announcing `tool_calls[0]` with its `id`,
    /// `type` and `function.name`, one chunk per `arguments` fragment (index 0, no id or name),
    /// a finish chunk (`finish_reason: "tool_calls"`), the usage chunk and `data: [DONE]`.
    pub fn openai_stream_tool_call(id: &str, name: &str, argument_fragments: &[&str]) -> Reply {
        let c = OpenAiChunks::new();
        let mut frames = vec![c.role()];
        frames.push(c.chunk(
            json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                                    "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for fragment in argument_fragments {
            frames.push(c.chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}),
                Value::Null,
            ));
        }
        frames.push(c.finish("tool_calls"));
        frames.push(c.usage(PROMPT_TOKENS, count(argument_fragments)));
        frames.push("data: [DONE]".to_owned());
        Reply::sse(frames)
    }

    /// An OpenAI error: `{"error": {"message", "type": kind, "param": null, "code"}}` with the
    /// given status. Add `retry-after` etc. with [`Reply::header`].
    pub fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Reply {
        Reply::json(status, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
            .header("x-request-id", "req_fake")
    }

    /// HTTP 200, a role chunk and one content chunk per piece, then an in-stream error frame
    /// `data: {"error":{"message":"upstream failed","type":"server_error"}}` and the end of the
    /// body, as OpenAI-compatible servers report failures after the status line (F-16).
    pub fn openai_stream_error_after(pieces: &[&str]) -> Reply {
        let c = OpenAiChunks::new();
        let mut frames = vec![c.role()];
        frames.extend(pieces.iter().map(|p| c.content(p)));
        frames.push(data(&json!({"error": {"message": "upstream failed", "type": "server_error"}})));
        Reply::sse(frames)
    }

    /// HTTP 200 `application/json` whose body is a truncated `chat.completion` object.
    pub fn malformed_json() -> Reply {
        Reply::raw(
            200,
            r#"{"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","content":"trunc"#,
        )
        .header("content-type", "application/json")
    }
}

fn openai_stream_frames(pieces: &[&str]) -> Vec<String> {
    let c = OpenAiChunks::new();
    let mut frames = vec![c.role()];
    frames.extend(pieces.iter().map(|p| c.content(p)));
    frames.push(c.finish("stop"));
    frames.push(c.usage(PROMPT_TOKENS, count(pieces)));
    frames
}

/// # Anthropic Messages shapes (`POST /v1/messages`)
impl Reply {
    /// A `message` with one text block, `stop_reason: "end_turn"` and usage
    /// `{input_tokens: 10, output_tokens: <words>, cache_creation_input_tokens: 0,
    /// cache_read_input_tokens: 0}`.
    pub fn anthropic_text(text: &str) -> Reply {
        anthropic_message(json!([{"type": "text", "text": text}]), "end_turn", words(text))
    }

    /// A `message` with these content `blocks`, `stop_reason` and `usage` (Anthropic's whole
    /// `usage` object: server tool counts, `speed`, …), for answers the other shapes do not
    /// write (server tools and citations, a paused turn, fast mode).
    pub fn anthropic_blocks(blocks: Value, stop_reason: &str, usage: Value) -> Reply {
        Reply::json(
            200,
            json!({"id": format!("msg_fake{}", next_id()), "type": "message", "role": "assistant",
                   "content": blocks, "model": CLAUDE_FAKE_MODEL, "stop_reason": stop_reason,
                   "stop_sequence": null, "usage": usage}),
        )
        .header("request-id", "req_fake")
    }

    /// A `message` with one `tool_use` block (`input` is a JSON *object*) and
    /// `stop_reason: "tool_use"`.
    pub fn anthropic_tool_use(id: &str, name: &str, input: Value) -> Reply {
        anthropic_message(
            json!([{"type": "tool_use", "id": id, "name": name, "input": input}]),
            "tool_use",
            1,
        )
    }

    /// A streamed answer with named events, in Anthropic's order: `message_start`,
    /// `content_block_start` (text), `ping`, one `content_block_delta` (`text_delta`) per
    /// piece, `content_block_stop`, `message_delta` (`stop_reason: "end_turn"`, cumulative
    /// usage with `output_tokens` = number of pieces), `message_stop`.
    pub fn anthropic_stream(pieces: &[&str]) -> Reply {
        let mut frames = anthropic_stream_head();
        frames.extend(pieces.iter().map(|p| anthropic_text_delta(0, p)));
        frames.push(anthropic_block_stop(0));
        frames.extend(anthropic_message_end("end_turn", count(pieces)));
        Reply::sse(frames)
    }

    /// A streamed `tool_use` block: `message_start`, `content_block_start` (`tool_use` with
    /// empty `input`), one `input_json_delta` per `partial_json` fragment,
    /// `content_block_stop`, `message_delta` (`stop_reason: "tool_use"`), `message_stop`.
    pub fn anthropic_stream_tool_use(id: &str, name: &str, partial_json: &[&str]) -> Reply {
        let mut frames = vec![
            anthropic_message_start(&format!("msg_fake{}", next_id())),
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
            ),
        ];
        frames.extend(partial_json.iter().map(|p| {
            event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": p}}),
            )
        }));
        frames.push(anthropic_block_stop(0));
        frames.extend(anthropic_message_end("tool_use", count(partial_json)));
        Reply::sse(frames)
    }

    /// A Messages answer's `content` blocks, streamed as Anthropic streams them, in their
    /// order: a `thinking` block as `thinking_delta` then `signature_delta`, a
    /// `redacted_thinking` block whole in its `content_block_start`, `text` as one
    /// `text_delta`, `tool_use` as one `input_json_delta` of its `input`; then `message_delta`
    /// with `stop_reason` and `message_stop`. For answers whose shape matters (Claude's
    /// interleaved thinking: thinking, tool_use, thinking, text, tool_use).
    ///
    /// Server tools stream as Anthropic streams them too: `server_tool_use` and `mcp_tool_use`
    /// like `tool_use` (empty `input`, then one `input_json_delta`), a text block with
    /// `citations` as a start with `citations: []`, one `citations_delta` per citation, then
    /// its text; any other block (`web_search_tool_result`, …) whole in its start. When the
    /// answer searched the web, `message_delta`'s usage counts the searches
    /// (`server_tool_use.web_search_requests`).
    pub fn anthropic_stream_blocks(blocks: &Value, stop_reason: &str) -> Reply {
        let mut frames = vec![anthropic_message_start(&format!("msg_fake{}", next_id()))];
        let empty = Vec::new();
        for (index, block) in blocks.as_array().unwrap_or(&empty).iter().enumerate() {
            let (start, deltas) = match block["type"].as_str().unwrap_or_default() {
                "thinking" => (
                    json!({"type": "thinking", "thinking": ""}),
                    vec![
                        json!({"type": "thinking_delta", "thinking": block["thinking"]}),
                        json!({"type": "signature_delta", "signature": block["signature"]}),
                    ],
                ),
                "text" if block.get("citations").is_some_and(Value::is_array) => {
                    let citations = block["citations"].as_array().into_iter().flatten();
                    let mut deltas: Vec<Value> =
                        citations.map(|c| json!({"type": "citations_delta", "citation": c})).collect();
                    deltas.push(json!({"type": "text_delta", "text": block["text"]}));
                    (json!({"type": "text", "text": "", "citations": []}), deltas)
                }
                "text" => (
                    json!({"type": "text", "text": ""}),
                    vec![json!({"type": "text_delta", "text": block["text"]})],
                ),
                kind @ ("tool_use" | "server_tool_use" | "mcp_tool_use") => {
                    let mut start = block.clone();
                    start["input"] = json!({});
                    if kind == "tool_use" {
                        start = json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}});
                    }
                    (
                        start,
                        vec![json!({"type": "input_json_delta", "partial_json": block["input"].to_string()})],
                    )
                }
                _ => (block.clone(), Vec::new()),
            };
            frames.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": start}),
            ));
            frames.extend(deltas.into_iter().map(|delta| {
                event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                )
            }));
            frames.push(anthropic_block_stop(index));
        }
        let output = u32::try_from(blocks.as_array().map_or(0, Vec::len)).unwrap_or(u32::MAX);
        let mut end = anthropic_message_end(stop_reason, output);
        let searches = blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "server_tool_use" && b["name"] == "web_search")
            .count();
        if searches > 0 {
            let mut usage = anthropic_usage(output);
            usage["server_tool_use"] = json!({"web_search_requests": searches});
            end[0] = event(
                "message_delta",
                &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                        "usage": usage}),
            );
        }
        frames.extend(end);
        Reply::sse(frames)
    }

    /// An Anthropic error: `{"type":"error","error":{"type": kind,"message"},"request_id":"req_fake"}`.
    pub fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}),
        )
        .header("request-id", "req_fake")
    }

    /// HTTP 200 whose first and only event is `event: error` of the given kind (normally
    /// `overloaded_error`): the overload that arrives after the status line (F-15).
    pub fn anthropic_stream_error_first(kind: &str) -> Reply {
        Reply::sse(vec![anthropic_error_event(kind)])
    }

    /// HTTP 200, `message_start`, a text block with one delta per piece, then `event: error`
    /// of the given kind and the end of the body: a failure after content was emitted (F-16).
    pub fn anthropic_stream_error_after(pieces: &[&str], kind: &str) -> Reply {
        let mut frames = anthropic_stream_head();
        frames.extend(pieces.iter().map(|p| anthropic_text_delta(0, p)));
        frames.push(anthropic_error_event(kind));
        Reply::sse(frames)
    }
}

fn anthropic_message(content: Value, stop_reason: &str, output: u32) -> Reply {
    Reply::json(
        200,
        json!({
            "id": format!("msg_fake{}", next_id()),
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": CLAUDE_FAKE_MODEL,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": anthropic_usage(output)
        }),
    )
    .header("request-id", "req_fake")
}

fn anthropic_stream_head() -> Vec<String> {
    vec![
        anthropic_message_start(&format!("msg_fake{}", next_id())),
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        anthropic_ping(),
    ]
}

fn anthropic_error_event(kind: &str) -> String {
    event(
        "error",
        &json!({"type": "error", "error": {"type": kind, "message": anthropic_error_message(kind)},
                "request_id": "req_fake"}),
    )
}

/// # Ollama native shapes (`POST /api/chat`)
impl Reply {
    /// A non-stream `/api/chat` answer: `done: true`, `done_reason: "stop"`,
    /// `prompt_eval_count: 10`, `eval_count: <words>`, durations in nanoseconds.
    pub fn ollama_text(text: &str) -> Reply {
        Reply::json(200, ollama_final(json!({"role": "assistant", "content": text}), words(text)))
    }

    /// A non-stream `/api/chat` answer calling one tool. Ollama sends tool calls whole, with
    /// `arguments` as a JSON *object*.
    pub fn ollama_tool_call(name: &str, arguments: Value) -> Reply {
        let message = json!({"role": "assistant", "content": "",
                             "tool_calls": [{"function": {"name": name, "arguments": arguments}}]});
        Reply::json(200, ollama_final(message, 1))
    }

    /// An NDJSON stream: one `{model, created_at, message: {role: "assistant", content},
    /// done: false}` line per piece, then a final `done: true` line with empty content,
    /// `done_reason: "stop"`, counts (`eval_count` = number of pieces) and durations.
    pub fn ollama_stream(pieces: &[&str]) -> Reply {
        let mut lines: Vec<Value> =
            pieces.iter().map(|p| ollama_chunk(json!({"role": "assistant", "content": p}))).collect();
        lines.push(ollama_final(json!({"role": "assistant", "content": ""}), count(pieces)));
        Reply::ndjson(lines)
    }

    /// An NDJSON stream of one line per piece, then an `{"error": "..."}` line and the end of
    /// the body (no `done: true`): Ollama's in-stream failure (F-16).
    pub fn ollama_stream_error_after(pieces: &[&str]) -> Reply {
        let mut lines: Vec<Value> =
            pieces.iter().map(|p| ollama_chunk(json!({"role": "assistant", "content": p}))).collect();
        lines.push(json!({"error": "upstream failed"}));
        Reply::ndjson(lines)
    }

    /// An Ollama error: `{"error": message}` with the given status.
    pub fn ollama_error(status: u16, message: &str) -> Reply {
        Reply::json(status, json!({"error": message}))
    }
}

/// # Gemini shapes (`:generateContent`, `:streamGenerateContent?alt=sse`)
impl Reply {
    /// A `GenerateContentResponse`: `candidates[0].content.parts[0].text`,
    /// `finishReason: "STOP"`, `usageMetadata {promptTokenCount: 10, candidatesTokenCount:
    /// <words>, totalTokenCount}`.
    pub fn gemini_text(text: &str) -> Reply {
        let id = format!("fake-resp-{}", next_id());
        Reply::json(200, gemini_response(text, true, words(text), &id))
    }

    /// An SSE stream (`streamGenerateContent?alt=sse`) with one `data:` frame per piece; the
    /// last frame carries `finishReason: "STOP"` and the final usage (candidates = number of
    /// pieces). Like the real service, every frame has `usageMetadata` with running counts.
    /// With no pieces, one empty-text frame carries the finish.
    pub fn gemini_stream(pieces: &[&str]) -> Reply {
        let id = format!("fake-resp-{}", next_id());
        let frames = if pieces.is_empty() {
            vec![data(&gemini_response("", true, 0, &id))]
        } else {
            let last = pieces.len() - 1;
            pieces
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let so_far = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    data(&gemini_response(p, i == last, so_far, &id))
                })
                .collect()
        };
        Reply::sse(frames)
    }

    /// A Gemini error: `{"error": {"code": status, "message", "status": status_name}}`, e.g.
    /// `gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")`.
    pub fn gemini_error(status: u16, status_name: &str, message: &str) -> Reply {
        Reply::json(status, json!({"error": {"code": status, "message": message, "status": status_name}}))
    }
}
