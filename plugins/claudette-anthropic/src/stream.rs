//! The Messages SSE stream as [`StreamEvent`]s.
//!
//! Anthropic names every event (`message_start`, `content_block_start`, `content_block_delta`,
//! `content_block_stop`, `message_delta`, `message_stop`, plus `ping` and `error`) and repeats
//! the name as `type` in the data. The decoder trusts the data's `type` and falls back to the
//! SSE event name, so a server that omits either still decodes.
//!
//! Rules that other gateways got wrong and this one keeps (wire-protocols (c) #1–#3, #6):
//! - usage in `message_delta` is cumulative: it replaces, never adds; input and cache counts
//!   it carries (DashScope sends them only there) override `message_start`'s, unless smaller
//!   (sglang's `input_tokens: 0` there is no real count);
//! - usage is emitted as a [`StreamEvent::Usage`] as soon as it is known, so a stream cut
//!   before `message_stop` can still be billed with reported figures;
//! - an `error` event after HTTP 200 is an error classified like the HTTP status it stands
//!   for (`overloaded_error` = 529), never a quiet end;
//! - a body that ends without `message_stop` is [`ErrorKind::StreamInterrupted`], never `Done`;
//! - unknown event types and delta types are ignored, since Anthropic adds them over time.
//!
//! Blocks of Anthropic's own tools (`server_tool_use`, `web_search_tool_result`,
//! `mcp_tool_use`, …) go on whole, one [`StreamEvent::Native`] each at its
//! `content_block_stop`: a client sends them back unchanged, so a half block is of no use to
//! it. A call's input streams as `input_json_delta`s as a `tool_use`'s does and is put
//! together here; a `compaction` block's text as `compaction_delta`s. A text block's
//! `citations_delta`s are [`StreamEvent::Citation`]s, in their place among its text.
//!
//! The answer's top-level `container` and `context_management` come with `message_start`'s
//! message and with `message_delta` (`delta.container`, the event's `context_management`);
//! each goes on as one [`StreamEvent::NativeField`], its last value, just before `Done`. They
//! are passed on as written, whatever their shape.
//!
//! [`ErrorKind::StreamInterrupted`]: claudette_core::ErrorKind::StreamInterrupted

use std::collections::BTreeMap;

use claudette_core::{
    BackendError, FinishReason, Frame, NativeBlock, StreamDecoder, StreamEnd, StreamEvent, ThinkingSeal,
    ToolCallDelta, Usage, UsageSource,
};
use serde_json::Value;

use crate::error::classify_event;
use crate::wire::{ANSWER_FIELDS, WireUsage, answer_field, finish_reason};

/// What a content block index holds.
#[derive(Debug)]
enum Block {
    Text,
    Thinking,
    ToolUse {
        /// A non-empty `input` sent whole in `content_block_start` (some compatible servers do),
        /// emitted at `content_block_stop` unless `input_json_delta`s arrived meanwhile.
        start_input: Option<String>,
        /// Whether any non-empty argument text went out for this call. Anthropic streams a
        /// call without arguments as one empty `partial_json`, and callers that concatenate
        /// the fragments would be left with `""`, which is not JSON (litellm #5063).
        emitted: bool,
    },
    /// A block of Anthropic's own, held until its stop. Never a [`StreamEvent::ToolCall`]:
    /// Anthropic runs a `server_tool_use` itself, and passing it on as a call would hand the
    /// caller one it never declared.
    Native {
        block: Value,
        /// The `input_json_delta` fragments so far, for a block that streams its input.
        input: Option<String>,
    },
    /// Blocks with nothing more to pass on: a redacted thinking block (its start said it all),
    /// a native block already passed on, a block of no known type.
    Other,
}

/// Native blocks whose input streams as `input_json_delta`s.
const STREAMED_INPUT: &[&str] = &["server_tool_use", "mcp_tool_use"];

/// Costs the finished stream for its model. Given by the adapter, which knows the settings.
pub(crate) type CostFn = Box<dyn Fn(&str, &Usage) -> f64 + Send>;

/// Decoder for one Anthropic stream.
pub struct AnthropicStreamDecoder {
    model: String,
    cost: CostFn,
    blocks: BTreeMap<u32, Block>,
    usage: WireUsage,
    finish: Option<FinishReason>,
    /// The last non-null value of each of [`ANSWER_FIELDS`].
    fields: [Option<Value>; ANSWER_FIELDS.len()],
    /// `Done` or an error was returned; later input is ignored.
    ended: bool,
    /// Web searches whose results came, counted as they come: the stream reports its count
    /// only at its end, and a stream cut after a search has still paid for it.
    searches: u32,
}

impl std::fmt::Debug for AnthropicStreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicStreamDecoder")
            .field("model", &self.model)
            .field("blocks", &self.blocks.len())
            .field("usage", &self.usage)
            .field("finish", &self.finish)
            .field("fields", &self.fields)
            .field("ended", &self.ended)
            .finish()
    }
}

fn index_of(v: &Value) -> Result<u32, BackendError> {
    v.get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| BackendError::malformed("content block event without a valid `index`"))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str()
}

impl AnthropicStreamDecoder {
    pub(crate) fn new(model: String, cost: CostFn) -> Self {
        Self {
            model,
            cost,
            blocks: BTreeMap::new(),
            usage: WireUsage::default(),
            finish: None,
            fields: Default::default(),
            ended: false,
            searches: 0,
        }
    }

    /// Keeps the answer fields `at` holds (null is no value: an earlier one stays).
    fn take_fields<'v>(&mut self, at: impl Fn(&'static str) -> Option<&'v Value>) {
        for (slot, name) in self.fields.iter_mut().zip(ANSWER_FIELDS) {
            if let Some(v) = at(name).filter(|v| !v.is_null()) {
                *slot = Some(v.clone());
            }
        }
    }

    fn usage_event(&self) -> StreamEvent {
        StreamEvent::Usage { usage: self.usage() }
    }

    /// The usage so far: the upstream's figures, with at least the searches whose results
    /// came (a compatible server may report none).
    fn usage(&self) -> Usage {
        let mut usage = self.usage.to_usage();
        usage.web_search_requests = usage.web_search_requests.max(self.searches);
        usage
    }

    fn take_usage(&mut self, v: Option<&Value>) -> Result<bool, BackendError> {
        let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(false) };
        let u: WireUsage = serde_json::from_value(v.clone())
            .map_err(|e| BackendError::malformed(format!("stream usage has an unexpected shape: {e}")))?;
        if u.is_empty() {
            return Ok(false);
        }
        self.usage.merge(&u);
        Ok(true)
    }

    fn tool_delta(index: u32, id: Option<String>, name: Option<String>, arguments: String) -> StreamEvent {
        StreamEvent::ToolCall { delta: ToolCallDelta { index, id, name, arguments } }
    }

    /// Ends the block at `index`. A tool block emits the whole `input` it received at its
    /// start, or `{}` for a call without arguments, if no fragments carried them: the
    /// concatenated fragments must be JSON. A native block goes on whole, once.
    fn close_block(&mut self, index: u32, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        match self.blocks.get_mut(&index) {
            Some(Block::ToolUse { start_input, emitted }) if !*emitted => {
                *emitted = true;
                let args = start_input.take().unwrap_or_else(|| "{}".to_owned());
                out.push(Self::tool_delta(index, None, None, args));
            }
            // The next text is a block of its own, as in a JSON answer. Once: a block the
            // stream's end closes again is not ended twice.
            Some(slot @ Block::Text) => {
                *slot = Block::Other;
                out.push(StreamEvent::TextEnd);
            }
            Some(slot @ Block::Native { .. }) => {
                if let Block::Native { block, input } = std::mem::replace(slot, Block::Other) {
                    // A search that ran (its results are a list; an error is an object) is
                    // billed: said at once, for the bill of a stream cut before its end.
                    let searched = block.get("type").and_then(Value::as_str)
                        == Some("web_search_tool_result")
                        && block.get("content").is_some_and(Value::is_array);
                    out.push(StreamEvent::Native {
                        block: NativeBlock::anthropic(whole(index, block, input)?),
                    });
                    if searched {
                        self.searches = self.searches.saturating_add(1);
                        out.push(self.usage_event());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_event(&mut self, kind: &str, v: &Value, raw: &str) -> Result<Vec<StreamEvent>, BackendError> {
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let msg = v.get("message").unwrap_or(&Value::Null);
                if let Some(m) = str_at(msg, &["model"]).filter(|m| !m.is_empty()) {
                    self.model = m.to_owned();
                }
                self.take_fields(|name| msg.get(name));
                if self.take_usage(msg.get("usage"))? {
                    out.push(self.usage_event());
                }
            }
            "content_block_start" => {
                let index = index_of(v)?;
                let cb = v.get("content_block").unwrap_or(&Value::Null);
                let block = match str_at(cb, &["type"]) {
                    Some("text") => {
                        if let Some(t) = str_at(cb, &["text"]).filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::text(t));
                        }
                        Block::Text
                    }
                    Some("thinking") => {
                        if let Some(t) = str_at(cb, &["thinking"]).filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::ReasoningDelta { text: t.to_owned() });
                        }
                        Block::Thinking
                    }
                    Some("redacted_thinking") => {
                        if let Some(data) = str_at(cb, &["data"]) {
                            out.push(StreamEvent::ThinkingSeal {
                                seal: ThinkingSeal::Redacted(data.to_owned()),
                            });
                        }
                        Block::Other
                    }
                    Some("tool_use") => {
                        let (Some(id), Some(name)) = (str_at(cb, &["id"]), str_at(cb, &["name"])) else {
                            return Err(BackendError::malformed("tool_use block start without id or name"));
                        };
                        out.push(Self::tool_delta(
                            index,
                            Some(id.to_owned()),
                            Some(name.to_owned()),
                            String::new(),
                        ));
                        let start_input = match cb.get("input") {
                            Some(Value::Object(m)) if !m.is_empty() => {
                                Some(Value::Object(m.clone()).to_string())
                            }
                            _ => None,
                        };
                        Block::ToolUse { start_input, emitted: false }
                    }
                    Some(kind) => Block::Native {
                        block: cb.clone(),
                        input: STREAMED_INPUT.contains(&kind).then(String::new),
                    },
                    None => Block::Other,
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let index = index_of(v)?;
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match str_at(delta, &["type"]) {
                    Some("text_delta") => {
                        if let Some(t) = str_at(delta, &["text"]).filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::text(t));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = str_at(delta, &["thinking"]).filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::ReasoningDelta { text: t.to_owned() });
                        }
                    }
                    Some("input_json_delta") => {
                        // Anthropic opens with an empty fragment; it carries nothing.
                        let fragment = str_at(delta, &["partial_json"]).filter(|p| !p.is_empty());
                        match (self.blocks.get_mut(&index), fragment) {
                            (Some(Block::ToolUse { emitted, .. }), Some(p)) => {
                                *emitted = true;
                                out.push(Self::tool_delta(index, None, None, p.to_owned()));
                            }
                            (Some(Block::Native { input: Some(buffer), .. }), Some(p)) => buffer.push_str(p),
                            _ => {}
                        }
                    }
                    // A citation of the text block being streamed, before the text it cites.
                    Some("citations_delta") => {
                        if let (Some(Block::Text), Some(citation)) =
                            (self.blocks.get(&index), delta.get("citation").filter(|c| !c.is_null()))
                        {
                            out.push(StreamEvent::Citation { citation: citation.clone() });
                        }
                    }
                    // A compaction block's summary, in pieces like text.
                    Some("compaction_delta") => {
                        if let (Some(Block::Native { block, .. }), Some(more)) =
                            (self.blocks.get_mut(&index), str_at(delta, &["content"]))
                        {
                            if block.get("type").and_then(Value::as_str) == Some("compaction") {
                                let so_far = block.get("content").and_then(Value::as_str).unwrap_or_default();
                                block["content"] = Value::String(format!("{so_far}{more}"));
                            }
                        }
                    }
                    // The thinking block's signature, sent once just before its stop; a client
                    // must send it back with the block.
                    Some("signature_delta") => {
                        if let (Some(Block::Thinking), Some(sig)) =
                            (self.blocks.get(&index), str_at(delta, &["signature"]).filter(|s| !s.is_empty()))
                        {
                            out.push(StreamEvent::ThinkingSeal {
                                seal: ThinkingSeal::Signature(sig.to_owned()),
                            });
                        }
                    }
                    // Future types, and any delta of a native block not named above.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = index_of(v)?;
                self.close_block(index, &mut out)?;
            }
            "message_delta" => {
                if let Some(r) = str_at(v, &["delta", "stop_reason"]) {
                    self.finish = Some(finish_reason(r, str_at(v, &["delta", "stop_sequence"])));
                }
                // Anthropic puts `container` in the delta and `context_management` beside it;
                // either is taken from either place.
                let delta = v.get("delta");
                self.take_fields(|name| delta.and_then(|d| d.get(name)).or_else(|| v.get(name)));
                if self.take_usage(v.get("usage"))? {
                    out.push(self.usage_event());
                }
            }
            "message_stop" => {
                let open: Vec<u32> = self.blocks.keys().copied().collect();
                for i in open {
                    self.close_block(i, &mut out)?;
                }
                for (slot, name) in self.fields.iter_mut().zip(ANSWER_FIELDS) {
                    if let Some(field) = answer_field(name, slot.take().as_ref()) {
                        out.push(StreamEvent::NativeField { field });
                    }
                }
                let usage = self.usage();
                let cost = if usage.source == UsageSource::Reported {
                    (self.cost)(&self.model, &usage)
                } else {
                    0.0
                };
                out.push(StreamEvent::Done {
                    end: StreamEnd { finish_reason: self.finish.clone(), usage, cost },
                });
                self.ended = true;
            }
            "error" => {
                self.ended = true;
                return Err(classify_event(v, raw));
            }
            // `ping` keep-alives and event types added after this was written.
            _ => {}
        }
        Ok(out)
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        if self.ended {
            return Ok(Vec::new());
        }
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let parsed = serde_json::from_str::<Value>(data);
        let name = frame.event.as_deref();
        let v = match parsed {
            Ok(v) => v,
            // An event we do not know may carry anything; one we rely on must be JSON.
            Err(_) if name.is_some_and(|n| !KNOWN.contains(&n)) => return Ok(Vec::new()),
            Err(e) => {
                self.ended = true;
                return Err(BackendError::malformed(format!(
                    "stream event `{}` is not JSON: {e}",
                    name.unwrap_or("(unnamed)")
                ))
                .with_provider_body(data.as_bytes()));
            }
        };
        // `{"error": …}` without a type is the OpenAI envelope some compatible servers use.
        let kind = match v.get("type").and_then(Value::as_str) {
            Some(t) => t,
            None if v.get("error").is_some() => "error",
            None => name.unwrap_or(""),
        };
        let kind = if name == Some("error") { "error" } else { kind };
        let result = self.on_event(kind, &v, data);
        if result.is_err() {
            self.ended = true;
        }
        result
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        if self.ended {
            return Ok(Vec::new());
        }
        self.ended = true;
        Err(BackendError::interrupted("the stream ended before `message_stop`"))
    }
}

/// A native block as it ends: a block that streams its input gets the fragments' JSON as
/// `input` (the start's, or `{}`, when none came). Fragments that are not JSON (the stream
/// was cut or mangled inside the input) are an error: a block sent back with a guessed input
/// would be refused, or worse, taken.
fn whole(index: u32, mut block: Value, input: Option<String>) -> Result<Value, BackendError> {
    let Some(fragments) = input else { return Ok(block) };
    let parsed = if fragments.trim().is_empty() {
        match block.get("input") {
            Some(v) if !v.is_null() => return Ok(block),
            _ => Value::Object(serde_json::Map::new()),
        }
    } else {
        serde_json::from_str::<Value>(&fragments).map_err(|e| {
            let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
            BackendError::malformed(format!(
                "the input of the `{kind}` block at index {index} is not JSON ({e}): the stream was cut or \
                 mangled inside it"
            ))
        })?
    };
    block["input"] = parsed;
    Ok(block)
}

/// Event names the decoder acts on.
const KNOWN: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
];
