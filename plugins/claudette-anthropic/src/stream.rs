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
//! [`ErrorKind::StreamInterrupted`]: claudette_core::ErrorKind::StreamInterrupted

use std::collections::BTreeMap;

use claudette_core::{
    BackendError, FinishReason, Frame, Pricing, StreamDecoder, StreamEnd, StreamEvent, ThinkingSeal,
    ToolCallDelta, UsageSource,
};
use serde_json::Value;

use crate::error::classify_event;
use crate::wire::{WireUsage, finish_reason};

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
    /// Blocks whose deltas are not ours to pass on: `server_tool_use` (web search, code
    /// execution) streams its query as `input_json_delta` too, but Anthropic runs that tool
    /// itself; forwarding it would hand the caller a call it never declared.
    Other,
}

/// Prices the finished stream. Given by the adapter, which knows the settings.
pub(crate) type PriceFn = Box<dyn Fn(&str) -> Pricing + Send>;

/// Decoder for one Anthropic stream.
pub struct AnthropicStreamDecoder {
    model: String,
    price: PriceFn,
    blocks: BTreeMap<u32, Block>,
    usage: WireUsage,
    finish: Option<FinishReason>,
    /// `Done` or an error was returned; later input is ignored.
    ended: bool,
}

impl std::fmt::Debug for AnthropicStreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicStreamDecoder")
            .field("model", &self.model)
            .field("blocks", &self.blocks.len())
            .field("usage", &self.usage)
            .field("finish", &self.finish)
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
    pub(crate) fn new(model: String, price: PriceFn) -> Self {
        Self {
            model,
            price,
            blocks: BTreeMap::new(),
            usage: WireUsage::default(),
            finish: None,
            ended: false,
        }
    }

    fn usage_event(&self) -> StreamEvent {
        StreamEvent::Usage { usage: self.usage.to_usage() }
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

    /// Emits the whole `input` a tool block received at its start, or `{}` for a call without
    /// arguments, if no fragments carried them: the concatenated fragments must be JSON.
    fn close_block(&mut self, index: u32, out: &mut Vec<StreamEvent>) {
        if let Some(Block::ToolUse { start_input, emitted }) = self.blocks.get_mut(&index) {
            if !*emitted {
                *emitted = true;
                let args = start_input.take().unwrap_or_else(|| "{}".to_owned());
                out.push(Self::tool_delta(index, None, None, args));
            }
        }
    }

    fn on_event(&mut self, kind: &str, v: &Value, raw: &str) -> Result<Vec<StreamEvent>, BackendError> {
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let msg = v.get("message").unwrap_or(&Value::Null);
                if let Some(m) = str_at(msg, &["model"]).filter(|m| !m.is_empty()) {
                    self.model = m.to_owned();
                }
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
                    _ => Block::Other,
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
                        if let (Some(Block::ToolUse { emitted, .. }), Some(p)) = (
                            self.blocks.get_mut(&index),
                            str_at(delta, &["partial_json"]).filter(|p| !p.is_empty()),
                        ) {
                            *emitted = true;
                            out.push(Self::tool_delta(index, None, None, p.to_owned()));
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
                    // citations_delta, future types.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = index_of(v)?;
                self.close_block(index, &mut out);
            }
            "message_delta" => {
                if let Some(r) = str_at(v, &["delta", "stop_reason"]) {
                    self.finish = Some(finish_reason(r, str_at(v, &["delta", "stop_sequence"])));
                }
                if self.take_usage(v.get("usage"))? {
                    out.push(self.usage_event());
                }
            }
            "message_stop" => {
                let open: Vec<u32> = self.blocks.keys().copied().collect();
                for i in open {
                    self.close_block(i, &mut out);
                }
                let usage = self.usage.to_usage();
                let cost = if usage.source == UsageSource::Reported {
                    (self.price)(&self.model).cost(&usage)
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
