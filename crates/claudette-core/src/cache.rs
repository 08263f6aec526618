//! The response cache seam (the seeds' "Intelligent Caching"; reliability-spec S-11, F-36):
//! an identical request is answered from memory, with `cache_hit: true` and no upstream call.
//!
//! Core holds no storage, as for the usage ledger: a [`ResponseCache`] is handed to
//! [`BackendRouter::set_response_cache`](crate::BackendRouter::set_response_cache)
//! (`claudette-cache`'s `MemoryCache` is the one Claudette ships), and the router consults it
//! before it routes.
//!
//! **What makes two requests the same.** A [`CacheKey`] is a SHA-256 over the request's scope
//! and every field of the request that can change the answer: the messages, the model, the
//! forced backend, the tags, every sampling knob, the tools and tool choice, the response
//! format, thinking, effort and stop sequences. Left out are the fields that describe the
//! caller, not the question: [`request_id`](ChatRequest::request_id) and
//! [`metadata`](ChatRequest::metadata). Which backend served an answer is part of the cached
//! answer, not of the key.
//!
//! **Whose answer it is.** The scope, [`ChatRequest::tenant`] (the gateway sets the name of
//! the key that authenticated the request), is the key's mandatory prefix: the same request
//! from two tenants is two entries, and a request without a tenant is in a scope of its own,
//! never shared with a named one. One team is never served another's answer (S-11).
//!
//! **What is stored.** Only complete answers of a successful call: those that ended because
//! the model finished, hit a stop sequence, called tools or reached `max_tokens` (that last
//! one is the complete answer to a request with that limit). Never an error, never an answer
//! that a content filter cut or that ended for a reason Claudette does not know.
//!
//! **Streams** are served from the cache (the stored answer replayed as events) and stored
//! once complete: as the router forwards a stream's events it folds them into the answer a
//! non-streamed call would have returned (the inverse of the replay), and stores that answer
//! when, and only when, the stream ends with `Done` and the answer is one of those above. A
//! stream that ends in an error, is cut, or that the client drops stores nothing (S-11: errors
//! and partial streams are never cached), and neither does one with a tool call no JSON
//! answer could carry (no name, arguments that are not a JSON object). Most chat traffic
//! streams: a cache that stored only JSON answers would never answer a chat UI.
//!
//! A stored stream holds what its events carry, so three fields differ from the JSON answer
//! of the same request: `id` is `None` (no event carries the provider's response id), `model`
//! is the model the stream was billed and shown under (the one asked for, else the backend's;
//! no event names the provider's), and there are no `warnings`. Holding a copy of a stream
//! costs memory while it lasts, so the router assembles at most
//! [`ResponseCache::max_entry_bytes`] of it: past that it stops assembling and stores nothing.
//!
//! **What a hit costs.** Nothing was billed, so a hit books nothing: no usage record in the
//! ledger, nothing in `analyze_costs`, and no backend's breaker, latency or error figures
//! move. The answer says `cost: 0` and `cache_hit: true`; its `usage` is the stored answer's
//! (the tokens it is made of, which a client may count against its context window); its
//! `latency` is the time the lookup took, which is what the caller waited; its routing
//! decision has no candidates and no attempts, and `cache: hit`.
//!
//! Caching answers to requests that sample (a temperature above 0) means every caller gets
//! the first answer drawn: an operator's choice, which is why the cache is off by default.

use std::fmt;
use std::io;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::types::{
    Block, ChatRequest, ChatResponse, FinishReason, Message, NativeField, NativeFlag, ReasoningEffort,
    ResponseFormat, StreamBlockOrder, StreamEnd, StreamEvent, Thinking, ThinkingBlock, ThinkingSeal,
    ToolCall, ToolCallDelta, ToolCallSlots, ToolChoice, ToolSpec, new_tool_call_id, ordered_blocks,
};

/// Stored answers, by [`CacheKey`].
///
/// Both methods run on the request path, inside `route_request`: like a
/// [`UsageSink`](crate::UsageSink), they must not block, do I/O or wait on a lock held across
/// I/O. A cache in another process belongs behind a local one, filled off the request path.
pub trait ResponseCache: Send + Sync + fmt::Debug {
    /// The answer stored under `key`, if any (and not expired).
    fn get(&self, key: &CacheKey) -> Option<ChatResponse>;
    /// Stores `response` under `key`. The router hands over only complete answers, without
    /// their routing decision. A cache may decline (it is full, the answer is too large).
    fn put(&self, key: CacheKey, response: &ChatResponse);

    /// The size past which the router stops assembling a streamed answer for this cache, in
    /// bytes of its text, reasoning, thinking seals and tool calls. A
    /// stream is held in memory while it lasts: assembling an answer the cache would not keep
    /// wastes that memory, once per stream in flight. Default [`MAX_ASSEMBLED_BYTES`].
    fn max_entry_bytes(&self) -> usize {
        MAX_ASSEMBLED_BYTES
    }
}

/// The default [`ResponseCache::max_entry_bytes`]: 4 MiB, eight times the longest answer a
/// model writes today (128k output tokens at about 4 bytes a token): only a runaway stream is
/// left out, and a stream that never ends does not grow its copy without limit.
pub const MAX_ASSEMBLED_BYTES: usize = 4 * 1024 * 1024;

/// What the cache may do for one request ([`RouteOverrides::cache`](crate::RouteOverrides)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CacheMode {
    /// Answer from the cache when it can; store a new complete answer.
    #[default]
    Use,
    /// Skip the lookup (the caller wants a fresh answer), but store the new one: HTTP's
    /// `Cache-Control: no-cache`.
    Refresh,
    /// Neither look up nor store: HTTP's `no-store`.
    Bypass,
}

/// Bumped when what the key covers or how it is encoded changes, so that no two encodings
/// ever share a key space.
const KEY_DOMAIN: &[u8] = b"claudette/response-cache/1\0";

/// The identity of a request for the cache: SHA-256 of its scope and its answer-changing
/// fields (see the [module docs](self)). Its `Debug` shows a prefix only.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `request` asked in `scope` (`None`: the anonymous scope). `None` when the
    /// request cannot be encoded, which serde's output for these types never is; such a
    /// request is simply not cached.
    ///
    /// A request with provider-run tools (web search, code execution) or a required native
    /// field (a container, MCP servers) has no key either: its answer is what the web, a
    /// container or a server held at the time, not a function of the request.
    pub fn new(scope: Option<&str>, request: &ChatRequest) -> Option<CacheKey> {
        if !request.native_tools.is_empty() || request.native_fields.iter().any(|f| f.required) {
            return None;
        }
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        // Tagged and length-prefixed: no scope is a prefix of another's encoding, and a tenant
        // named "" or "anonymous" is not the anonymous scope.
        match scope {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
        // serde_json's maps are sorted (no `preserve_order` in this tree), so tool schemas and
        // arguments written in another key order are the same request.
        serde_json::to_writer(HashWriter(&mut h), &KeyView::of(request)).ok()?;
        Some(CacheKey(h.finalize().into()))
    }

    /// The key of `request` in its own [`tenant`](ChatRequest::tenant)'s scope.
    pub fn of(request: &ChatRequest) -> Option<CacheKey> {
        Self::new(request.tenant.as_deref(), request)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Feeds serde's output straight into the digest: a large conversation is hashed without
/// being copied into a buffer first.
struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The fields of a [`ChatRequest`] that go into its key, borrowed. Every field is written,
/// an unset one as `null` or `[]`, so the encoding is the same whatever the defaults.
#[derive(Serialize)]
struct KeyView<'a> {
    messages: &'a [Message],
    model: &'a Option<String>,
    max_tokens: &'a Option<u32>,
    temperature: &'a Option<f32>,
    top_p: &'a Option<f32>,
    top_k: &'a Option<u32>,
    seed: &'a Option<i64>,
    stop: &'a [String],
    tools: &'a [ToolSpec],
    native_fields: &'a [NativeField],
    /// Left out when empty, so the keys of requests without flags stay what they were.
    #[serde(skip_serializing_if = "<[NativeFlag]>::is_empty")]
    native_flags: &'a [NativeFlag],
    tool_choice: &'a ToolChoice,
    parallel_tool_calls: &'a Option<bool>,
    response_format: &'a ResponseFormat,
    backend: &'a Option<String>,
    tags: &'a [String],
    thinking: &'a Option<Thinking>,
    output_effort: &'a Option<ReasoningEffort>,
}

impl<'a> KeyView<'a> {
    fn of(r: &'a ChatRequest) -> Self {
        // Exhaustive on purpose: a field added to `ChatRequest` does not compile here until it
        // is either in the key or named as one that cannot change the answer. Forgetting one
        // would serve an answer to a question that was not asked.
        let ChatRequest {
            messages,
            model,
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop,
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format,
            backend,
            tags,
            thinking,
            output_effort,
            // A request with any has no key at all (see `CacheKey::new`).
            native_tools: _,
            native_fields,
            // A flag can change the answer (thinking between tool calls, a longer output).
            native_flags,
            // Who asks and how they label it, not what they ask. The tenant is the scope.
            metadata: _,
            request_id: _,
            tenant: _,
        } = r;
        KeyView {
            messages,
            model,
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop,
            tools,
            native_fields,
            native_flags,
            tool_choice,
            parallel_tool_calls,
            response_format,
            backend,
            tags,
            thinking,
            output_effort,
        }
    }
}

/// Whether `response` is a complete answer worth storing (see the [module docs](self)).
///
/// An answer with a provider's own blocks or citations is not: a replay could not carry them
/// (they are whole blocks of one provider's wire), and what they show is the web as it was.
pub fn is_cacheable(response: &ChatResponse) -> bool {
    response.native.is_empty()
        && response.citations.is_empty()
        && response.native_fields.is_empty()
        && matches!(
            response.finish_reason,
            Some(
                FinishReason::Stop
                    | FinishReason::StopSequence(_)
                    | FinishReason::ToolCalls
                    | FinishReason::Length
            )
        )
}

/// A stored answer as the events a stream of it would have carried: its usage first (as a
/// provider's opening event reports it), its reasoning block by block with their seals, its
/// text as one delta, each tool call whole, then `Done` at no cost.
pub(crate) fn replay(response: &ChatResponse) -> Vec<StreamEvent> {
    let mut events = Vec::with_capacity(4 + 2 * response.thinking.len() + response.tool_calls.len());
    events.push(StreamEvent::Usage { usage: response.usage });
    if response.thinking.is_empty() {
        if let Some(r) = response.reasoning.as_ref().filter(|r| !r.is_empty()) {
            events.push(StreamEvent::ReasoningDelta { text: r.clone() });
        }
    }
    for block in response.blocks_for_client() {
        match block {
            Block::Thinking(ThinkingBlock::Thinking { thinking, signature }) => {
                events.push(StreamEvent::ReasoningDelta { text: thinking.clone() });
                if !signature.is_empty() {
                    events
                        .push(StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature(signature.clone()) });
                }
            }
            Block::Thinking(ThinkingBlock::Redacted { data }) => {
                events.push(StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted(data.clone()) });
            }
            Block::Text { text, .. } => {
                events.push(StreamEvent::text(text));
                events.push(StreamEvent::TextEnd);
            }
            // Never stored (`is_cacheable`), so never replayed; passed on should one be.
            Block::Native(block) => events.push(StreamEvent::Native { block: block.clone() }),
            Block::ToolCall { call, index } => events.push(StreamEvent::ToolCall {
                delta: ToolCallDelta {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    id: Some(call.id.clone()),
                    name: Some(call.name.clone()),
                    arguments: call.arguments.to_string(),
                },
            }),
        }
    }
    events.push(StreamEvent::Done {
        end: StreamEnd { finish_reason: response.finish_reason.clone(), usage: response.usage, cost: 0.0 },
    });
    events
}

/// Folds a stream's events into the [`ChatResponse`] a non-streamed call would have returned,
/// for the cache: the inverse of [`replay`] (for every answer a replay can carry: see
/// [`finish`](Self::finish)).
///
/// Fed one event at a time as the stream passes, at the cost of appending to a few strings;
/// nothing is parsed or copied whole until the stream ends.
#[derive(Debug)]
pub(crate) struct Assembler {
    content: String,
    /// Every reasoning delta, in order: the answer's `reasoning`.
    reasoning: String,
    /// Where in `reasoning` the thinking block being streamed began: a seal ends the block
    /// made of the reasoning since the previous one.
    block_start: usize,
    thinking: Vec<ThinkingBlock>,
    /// Which call each fragment belongs to.
    slots: ToolCallSlots,
    /// The calls by position in `slots`.
    calls: Vec<PartialCall>,
    /// The blocks' order, as the events came.
    order: StreamBlockOrder,
    /// Bytes kept so far, against `limit`.
    bytes: usize,
    limit: usize,
}

/// A tool call as its fragments arrive.
#[derive(Debug)]
struct PartialCall {
    index: u32,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

impl Assembler {
    /// An assembler that gives up past `limit` bytes (see [`ResponseCache::max_entry_bytes`]).
    pub(crate) fn new(limit: usize) -> Assembler {
        Assembler {
            content: String::new(),
            reasoning: String::new(),
            block_start: 0,
            thinking: Vec::new(),
            slots: ToolCallSlots::new(),
            calls: Vec::new(),
            order: StreamBlockOrder::default(),
            bytes: 0,
            limit,
        }
    }

    /// Adds one event. `false` when the answer has outgrown the limit: the caller drops the
    /// assembler, and the stream is not stored.
    ///
    /// Usage is taken from `Done` (the whole stream's figure), never from a mid-stream `Usage`
    /// event; the terminal events themselves are [`finish`](Self::finish)'s.
    pub(crate) fn push(&mut self, ev: &StreamEvent) -> bool {
        let added = match ev {
            StreamEvent::TextDelta { text } => {
                self.content.push_str(text);
                self.order.text(text);
                text.len()
            }
            StreamEvent::ReasoningDelta { text } => {
                self.order.reasoning(text);
                self.reasoning.push_str(text);
                text.len()
            }
            StreamEvent::ThinkingSeal { seal } => self.seal(seal),
            StreamEvent::TextEnd => {
                self.order.text_end();
                0
            }
            StreamEvent::ToolCall { delta } => self.tool_call(delta),
            // Not stored, as `is_cacheable` says.
            StreamEvent::Native { .. } | StreamEvent::Citation { .. } | StreamEvent::NativeField { .. } => {
                return false;
            }
            StreamEvent::Usage { .. } | StreamEvent::Done { .. } | StreamEvent::Error { .. } => 0,
        };
        self.bytes = self.bytes.saturating_add(added);
        self.bytes <= self.limit
    }

    /// Ends the thinking block being streamed, as the Anthropic encoder a client reads it
    /// through does: a signature seals the reasoning since the previous seal (even none); a
    /// redacted block is a block of its own, after any unsigned reasoning before it.
    fn seal(&mut self, seal: &ThinkingSeal) -> usize {
        self.order.seal(seal);
        match seal {
            ThinkingSeal::Signature(signature) => self.end_block(signature.clone()),
            ThinkingSeal::Redacted(data) => {
                let unsigned = self.end_unsigned_block();
                self.thinking.push(ThinkingBlock::Redacted { data: data.clone() });
                unsigned + data.len()
            }
        }
    }

    /// Closes reasoning streamed since the last seal as a block signed `signature`; the bytes
    /// it adds (the block keeps its own copy of the text, as a stored answer does).
    fn end_block(&mut self, signature: String) -> usize {
        let thinking = self.reasoning.get(self.block_start..).unwrap_or_default().to_owned();
        self.block_start = self.reasoning.len();
        let added = thinking.len() + signature.len();
        self.thinking.push(ThinkingBlock::Thinking { thinking, signature });
        added
    }

    /// Closes reasoning streamed since the last seal, if any, as a block without a signature.
    fn end_unsigned_block(&mut self) -> usize {
        if self.block_start < self.reasoning.len() { self.end_block(String::new()) } else { 0 }
    }

    /// Adds a fragment to its call, grouped as the gateway's encoders show it to a streaming
    /// client ([`ToolCallSlots`]).
    fn tool_call(&mut self, delta: &ToolCallDelta) -> usize {
        let slot = self.slots.place(delta);
        if slot.starts {
            self.order.tool_call();
            let call = PartialCall { index: delta.index, id: None, name: None, arguments: String::new() };
            self.calls.push(call);
        }
        let Some(call) = self.calls.get_mut(slot.position) else { return 0 };
        let mut added = delta.arguments.len();
        if let Some(id) = delta.id.as_ref().filter(|_| slot.names) {
            added += id.len();
            call.id = Some(id.clone());
        }
        if call.name.is_none() {
            if let Some(name) = &delta.name {
                added += name.len();
                call.name = Some(name.clone());
            }
        }
        call.arguments.push_str(&delta.arguments);
        added
    }

    /// The answer of a stream that ended with `end`, from `backend`, billed under `model`;
    /// `latency` and `decision` are the caller's to set. `None` when the events do not make an
    /// answer a JSON caller could have been given: a tool call without a name, or whose
    /// arguments are not a JSON object (JSON answers carry those as errors or warnings,
    /// which a stored answer cannot).
    ///
    /// Inverse to [`replay`] for an answer whose `reasoning` is its thinking blocks' text
    /// joined (as adapters build it) and whose blocks, but perhaps the last, are signed: a
    /// replay marks only where a signed block ends. Reasoning with no seal at all is
    /// reasoning without blocks (Qwen's `reasoning_content`).
    pub(crate) fn finish(mut self, end: &StreamEnd, backend: &str, model: &str) -> Option<ChatResponse> {
        if !self.thinking.is_empty() {
            // Reasoning after the last seal is a block of its own, unsigned.
            self.end_unsigned_block();
        }
        // The calls in the order of their indexes, as a JSON answer lists them; two at one index
        // in the order they came. The order of blocks counts calls as they came, so it is kept
        // only when that is the same order. Reasoning no seal ended is an unsigned block here.
        let mut order = self.order.finish(true);
        if !self.calls.is_sorted_by_key(|c| c.index) {
            order.clear();
        }
        self.calls.sort_by_key(|c| c.index);
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        for call in self.calls {
            let arguments = if call.arguments.trim().is_empty() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                match serde_json::from_str(&call.arguments) {
                    Ok(v @ serde_json::Value::Object(_)) => v,
                    _ => return None,
                }
            };
            tool_calls.push(ToolCall {
                // As JSON answers without an id get one (Ollama, Gemini): a caller needs it to
                // answer the call.
                id: call.id.filter(|id| !id.is_empty()).unwrap_or_else(new_tool_call_id),
                name: call.name.filter(|n| !n.is_empty())?,
                arguments,
            });
        }
        if ordered_blocks(&order, &self.thinking, &self.content, &tool_calls, &[]).is_err() {
            order.clear();
        }
        Some(ChatResponse {
            content: self.content,
            reasoning: Some(self.reasoning).filter(|r| !r.is_empty()),
            thinking: self.thinking,
            tool_calls,
            order,
            finish_reason: end.finish_reason.clone(),
            usage: end.usage,
            cost: end.cost,
            ..ChatResponse::empty(backend, model)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::types::{BlockKind, BlockOrder, Usage};

    fn key(scope: Option<&str>, r: &ChatRequest) -> CacheKey {
        CacheKey::new(scope, r).unwrap()
    }

    #[test]
    fn the_scope_is_part_of_every_key() {
        let r = ChatRequest::prompt("hi");
        let anon = key(None, &r);
        assert_eq!(anon, key(None, &r.clone()));
        assert_ne!(anon, key(Some("team-a"), &r));
        assert_ne!(anon, key(Some(""), &r), "an empty tenant name is not the anonymous scope");
        assert_ne!(anon, key(Some("anonymous"), &r));
        assert_ne!(key(Some("team-a"), &r), key(Some("team-b"), &r));
        // Length-prefixed: moving a byte between scope and prompt is another key.
        assert_ne!(key(Some("ab"), &ChatRequest::prompt("c")), key(Some("a"), &ChatRequest::prompt("bc")));
        let tenanted = ChatRequest { tenant: Some("team-a".into()), ..r.clone() };
        assert_eq!(CacheKey::of(&tenanted), Some(key(Some("team-a"), &r)));
    }

    #[test]
    fn only_who_asks_is_left_out_of_the_key() {
        let base = ChatRequest::prompt("hi");
        let k = key(None, &base);
        let mut metadata = serde_json::Map::new();
        metadata.insert("user".into(), json!("u1"));
        let labelled = ChatRequest { request_id: Some("req_1".into()), metadata, ..base.clone() };
        assert_eq!(key(None, &labelled), k);

        let tool = ToolSpec { name: "f".into(), parameters: json!({}), ..ToolSpec::default() };
        let changed = [
            ChatRequest::prompt("hi!"),
            base.clone().with_model("m2"),
            base.clone().with_backend("b1"),
            base.clone().with_max_tokens(5),
            base.clone().with_temperature(0.0),
            ChatRequest { top_p: Some(0.5), ..base.clone() },
            ChatRequest { top_k: Some(5), ..base.clone() },
            ChatRequest { seed: Some(1), ..base.clone() },
            ChatRequest { stop: vec!["x".into()], ..base.clone() },
            ChatRequest { tools: vec![tool.clone()], ..base.clone() },
            ChatRequest { tools: vec![ToolSpec { strict: true, ..tool.clone() }], ..base.clone() },
            ChatRequest { tools: vec![tool], tool_choice: ToolChoice::Required, ..base.clone() },
            ChatRequest { parallel_tool_calls: Some(false), ..base.clone() },
            ChatRequest { response_format: ResponseFormat::JsonObject, ..base.clone() },
            ChatRequest { tags: vec!["eu".into()], ..base.clone() },
            ChatRequest { thinking: Some(Thinking::Adaptive), ..base.clone() },
            ChatRequest { output_effort: Some(ReasoningEffort::Low), ..base.clone() },
            ChatRequest {
                native_flags: vec![NativeFlag {
                    dialect: crate::Dialect::Anthropic,
                    flag: "interleaved-thinking-2025-05-14".into(),
                }],
                ..base.clone()
            },
            ChatRequest { messages: vec![Message::system("s"), Message::user("hi")], ..base.clone() },
        ];
        let mut seen = std::collections::HashSet::from([k]);
        for r in &changed {
            assert!(seen.insert(key(None, r)), "{r:?} shares a key");
        }
    }

    #[test]
    fn json_key_order_does_not_matter() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"type":"object","properties":{"q":{}}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"properties":{"q":{}},"type":"object"}"#).unwrap();
        let with = |parameters| ChatRequest {
            tools: vec![ToolSpec { name: "f".into(), parameters, ..ToolSpec::default() }],
            ..ChatRequest::prompt("x")
        };
        assert_eq!(key(None, &with(a)), key(None, &with(b)));
    }

    #[test]
    fn keys_print_a_prefix_only() {
        let d = format!("{:?}", key(None, &ChatRequest::prompt("x")));
        assert!(d.starts_with("CacheKey(") && d.ends_with("…)") && d.len() < 30, "{d}");
    }

    #[test]
    fn only_complete_answers_are_cacheable() {
        let with =
            |f: Option<FinishReason>| ChatResponse { finish_reason: f, ..ChatResponse::empty("b", "m") };
        for ok in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::StopSequence("E".into()),
        ] {
            assert!(is_cacheable(&with(Some(ok))));
        }
        for no in [None, Some(FinishReason::ContentFilter), Some(FinishReason::Other("refusal".into()))] {
            assert!(!is_cacheable(&with(no.clone())), "{no:?}");
        }
    }

    #[test]
    fn a_replay_carries_the_whole_answer_at_no_cost() {
        let r = ChatResponse {
            content: "Hello".into(),
            reasoning: Some("hmm".into()),
            thinking: vec![
                ThinkingBlock::Thinking { thinking: "hmm".into(), signature: "sig".into() },
                ThinkingBlock::Redacted { data: "opaque".into() },
            ],
            tool_calls: vec![ToolCall { id: "c1".into(), name: "f".into(), arguments: json!({"a": 1}) }],
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Usage::reported(10, 3),
            cost: 0.5,
            ..ChatResponse::empty("b", "m")
        };
        let events = replay(&r);
        assert_eq!(
            events,
            vec![
                StreamEvent::Usage { usage: Usage::reported(10, 3) },
                StreamEvent::ReasoningDelta { text: "hmm".into() },
                StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature("sig".into()) },
                StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted("opaque".into()) },
                StreamEvent::text("Hello"),
                StreamEvent::TextEnd,
                StreamEvent::ToolCall {
                    delta: ToolCallDelta {
                        index: 0,
                        id: Some("c1".into()),
                        name: Some("f".into()),
                        arguments: r#"{"a":1}"#.into()
                    }
                },
                StreamEvent::Done {
                    end: StreamEnd {
                        finish_reason: Some(FinishReason::ToolCalls),
                        usage: Usage::reported(10, 3),
                        cost: 0.0
                    }
                },
            ]
        );
        // Reasoning without blocks (Qwen's `reasoning_content`) is one delta.
        let plain = ChatResponse { thinking: Vec::new(), tool_calls: Vec::new(), ..r };
        assert_eq!(replay(&plain)[1], StreamEvent::ReasoningDelta { text: "hmm".into() });
    }

    /// The whole stream, as a client would: `None` unless it ends with `Done`.
    fn assemble(events: &[StreamEvent]) -> Option<ChatResponse> {
        let mut a = Assembler::new(MAX_ASSEMBLED_BYTES);
        for ev in events {
            match ev {
                StreamEvent::Done { end } => return a.finish(end, "b", "m"),
                StreamEvent::Error { .. } => return None,
                ev => assert!(a.push(ev)),
            }
        }
        None
    }

    /// The fields a replay carries: all but the provider's id, the cost (a replay is free),
    /// and what describes the call rather than the answer.
    fn cacheable(r: &ChatResponse) -> ChatResponse {
        ChatResponse { id: None, cost: 0.0, latency: Duration::ZERO, warnings: Vec::new(), ..r.clone() }
    }

    fn done(finish_reason: FinishReason, usage: Usage) -> StreamEvent {
        StreamEvent::Done { end: StreamEnd { finish_reason: Some(finish_reason), usage, cost: 0.25 } }
    }

    fn delta(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: arguments.to_owned(),
            },
        }
    }

    /// A random answer of the shapes a replay can carry (see [`Assembler::finish`]).
    fn random_answer(rng: &mut fastrand::Rng) -> ChatResponse {
        let word = |rng: &mut fastrand::Rng| -> String {
            let words = ["", "a", "héllo", "世界 ", "{\"x\"", "\n", "two words"];
            (0..rng.usize(0..4)).map(|_| words[rng.usize(..words.len())]).collect()
        };
        let mut thinking = Vec::new();
        for _ in 0..rng.usize(0..4) {
            thinking.push(if rng.bool() {
                ThinkingBlock::Thinking { thinking: word(rng), signature: format!("sig{}", rng.u32(..)) }
            } else {
                ThinkingBlock::Redacted { data: format!("opaque{}", rng.u32(..)) }
            });
        }
        if rng.bool() && !thinking.is_empty() {
            // The last block may be unsigned, if it has text (else nothing marks it).
            thinking.push(ThinkingBlock::Thinking {
                thinking: format!("tail{}", word(rng)),
                signature: String::new(),
            });
        }
        let joined: String = thinking
            .iter()
            .filter_map(|b| match b {
                ThinkingBlock::Thinking { thinking, .. } => Some(thinking.as_str()),
                ThinkingBlock::Redacted { .. } => None,
            })
            .collect();
        let reasoning = if thinking.is_empty() { Some(word(rng)) } else { Some(joined) };
        let tool_calls: Vec<ToolCall> = (0..rng.usize(0..3))
            .map(|i| ToolCall {
                id: format!("call_{i}"),
                name: format!("tool{i}"),
                arguments: if rng.bool() { json!({}) } else { json!({"q": word(rng), "n": [i, 1.5, null]}) },
            })
            .collect();
        let finish = [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::StopSequence("E".into()),
        ];
        let content = word(rng);
        let order = if thinking.is_empty() || rng.bool() {
            Vec::new()
        } else {
            random_order(rng, thinking.len(), &content, &tool_calls)
        };
        ChatResponse {
            content,
            reasoning: reasoning.filter(|r| !r.is_empty()),
            thinking,
            tool_calls,
            order,
            finish_reason: Some(finish[rng.usize(..finish.len())].clone()),
            usage: Usage {
                reasoning_tokens: rng.u32(..5),
                ..Usage::reported(rng.u32(..1000), rng.u32(..1000))
            },
            cost: 0.5,
            id: Some("resp_1".into()),
            ..ChatResponse::empty("b", "m")
        }
    }

    /// A random order of a turn's blocks a stream can carry: thinking blocks and calls in any
    /// order, the text in up to two blocks, never two text blocks in a row (a stream has no
    /// edge between them).
    fn random_order(
        rng: &mut fastrand::Rng,
        thinking: usize,
        content: &str,
        calls: &[ToolCall],
    ) -> Vec<BlockKind> {
        let mut items: Vec<BlockKind> = std::iter::repeat_n(BlockKind::Thinking, thinking)
            .chain(std::iter::repeat_n(BlockKind::ToolCall, calls.len()))
            .collect();
        rng.shuffle(&mut items);
        // Where the text may be cut in two: a char boundary strictly inside it.
        let cut = (1..content.len()).filter(|&i| content.is_char_boundary(i)).nth(rng.usize(..3));
        let mut gaps: Vec<usize> = (0..=items.len()).collect();
        rng.shuffle(&mut gaps);
        let mut texts: Vec<(usize, u32)> = match (content.is_empty(), cut) {
            (true, _) => Vec::new(),
            (false, Some(cut)) if gaps.len() > 1 => {
                let (a, b) = (gaps[0].min(gaps[1]), gaps[0].max(gaps[1]));
                vec![(a, cut as u32), (b, content.len() as u32)]
            }
            (false, _) => vec![(gaps[0], content.len() as u32)],
        };
        let mut order = BlockOrder::default();
        for (i, kind) in items.iter().chain(std::iter::once(&BlockKind::ToolCall)).enumerate() {
            if let Some(&(_, end)) = texts.first().filter(|(gap, _)| *gap == i) {
                order.text(end as usize);
                texts.remove(0);
            }
            match kind {
                _ if i == items.len() => {}
                BlockKind::Thinking => order.thinking(),
                _ => order.tool_call(),
            }
        }
        order.finish()
    }

    /// The events of `events` as a provider might have cut them: text, reasoning and tool-call
    /// arguments in random pieces, the calls' fragments interleaved (unless the answer keeps
    /// an order of its blocks, which a stream carries only for calls that come one by one).
    fn split(events: &[StreamEvent], rng: &mut fastrand::Rng, interleave: bool) -> Vec<StreamEvent> {
        fn pieces(s: &str, rng: &mut fastrand::Rng) -> Vec<String> {
            let mut out = Vec::new();
            let mut rest = s;
            while !rest.is_empty() {
                let mut at = rng.usize(1..=rest.len());
                while !rest.is_char_boundary(at) {
                    at += 1;
                }
                let (head, tail) = rest.split_at(at);
                out.push(head.to_owned());
                rest = tail;
            }
            out
        }
        let mut out = Vec::new();
        let mut calls: Vec<std::collections::VecDeque<StreamEvent>> = Vec::new();
        for ev in events {
            match ev {
                StreamEvent::TextDelta { text } => {
                    out.extend(pieces(text, rng).into_iter().map(StreamEvent::text))
                }
                StreamEvent::ReasoningDelta { text } if !text.is_empty() => {
                    out.extend(pieces(text, rng).into_iter().map(|text| StreamEvent::ReasoningDelta { text }))
                }
                StreamEvent::ToolCall { delta: d } => {
                    // The id and name first, alone; the arguments after, in pieces.
                    let mut frags: std::collections::VecDeque<StreamEvent> =
                        [delta(d.index, d.id.as_deref(), d.name.as_deref(), "")].into();
                    frags.extend(pieces(&d.arguments, rng).iter().map(|a| delta(d.index, None, None, a)));
                    if interleave {
                        calls.push(frags);
                    } else {
                        out.extend(frags);
                    }
                }
                StreamEvent::Done { .. } => {
                    while calls.iter().any(|c| !c.is_empty()) {
                        let open: Vec<usize> = (0..calls.len()).filter(|&i| !calls[i].is_empty()).collect();
                        let i = open[rng.usize(..open.len())];
                        out.extend(calls[i].pop_front());
                    }
                    out.push(ev.clone());
                }
                other => out.push(other.clone()),
            }
        }
        out
    }

    /// Claude's interleaved thinking (think, call, think, say, call) comes back from the cache
    /// in the order it was made, as a stream and as an answer: sent back in another order,
    /// Anthropic refuses the client's next turn.
    #[test]
    fn an_interleaved_answer_keeps_its_block_order() {
        let signed = |t: &str| ThinkingBlock::Thinking { thinking: t.into(), signature: format!("sig-{t}") };
        let call = |id: &str| ToolCall { id: id.into(), name: "f".into(), arguments: json!({"id": id}) };
        let r = ChatResponse {
            content: "Now the second.".into(),
            reasoning: Some("firstsecond".into()),
            thinking: vec![signed("first"), signed("second")],
            tool_calls: vec![call("c1"), call("c2")],
            order: vec![
                BlockKind::Thinking,
                BlockKind::ToolCall,
                BlockKind::Thinking,
                BlockKind::Text(15),
                BlockKind::ToolCall,
            ],
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Usage::reported(10, 3),
            ..ChatResponse::empty("b", "m")
        };
        let events = replay(&r);
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                StreamEvent::ReasoningDelta { text } => format!("think:{text}"),
                StreamEvent::ThinkingSeal { .. } => "seal".into(),
                StreamEvent::TextDelta { text } => format!("text:{text}"),
                StreamEvent::TextEnd => "text_end".into(),
                StreamEvent::ToolCall { delta } => format!("call:{}", delta.id.as_deref().unwrap_or("")),
                StreamEvent::Native { .. }
                | StreamEvent::Citation { .. }
                | StreamEvent::NativeField { .. } => "native".into(),
                StreamEvent::Usage { .. } => "usage".into(),
                StreamEvent::Done { .. } => "done".into(),
                StreamEvent::Error { .. } => "error".into(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "usage",
                "think:first",
                "seal",
                "call:c1",
                "think:second",
                "seal",
                "text:Now the second.",
                "text_end",
                "call:c2",
                "done"
            ]
        );
        let back = assemble(&events).unwrap();
        assert_eq!(back.order, r.order);
        assert_eq!(cacheable(&back), cacheable(&r));
    }

    #[test]
    fn assembling_a_replay_gives_the_answer_back() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut kept_orders = 0;
        for _ in 0..2000 {
            let r = random_answer(&mut rng);
            kept_orders += usize::from(!r.order.is_empty());
            let events = replay(&r);
            assert_eq!(assemble(&events).as_ref().map(cacheable), Some(cacheable(&r)), "{events:?}");
            // However a provider cut the same events.
            let cut = split(&events, &mut rng, r.order.is_empty());
            let back = assemble(&cut).unwrap();
            assert_eq!(cacheable(&back), cacheable(&r), "{cut:?}");
            // And the answer a stream assembles replays as the same stream.
            assert_eq!(replay(&back), events);
        }
        assert!(kept_orders > 200, "only {kept_orders} answers with a kept order");
    }

    #[test]
    fn a_stream_assembles_into_its_json_answer() {
        let events = [
            StreamEvent::Usage { usage: Usage::reported(12, 0) },
            StreamEvent::ReasoningDelta { text: "Let me ".into() },
            StreamEvent::ReasoningDelta { text: "think.".into() },
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature("sig-1".into()) },
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted("opaque".into()) },
            StreamEvent::text("Calling "),
            StreamEvent::text("two tools."),
            // Two calls interleaved by index, their arguments split mid-token.
            delta(1, Some("call_b"), Some("time"), ""),
            delta(0, Some("call_a"), Some("weather"), "{\"ci"),
            delta(1, None, None, "{\"tz\":\"UTC\"}"),
            delta(0, None, None, "ty\":\"Par"),
            delta(0, None, None, "is\"}"),
            done(FinishReason::ToolCalls, Usage::reported(12, 30)),
        ];
        let r = assemble(&events).unwrap();
        assert_eq!(r.content, "Calling two tools.");
        assert_eq!(r.reasoning.as_deref(), Some("Let me think."));
        assert_eq!(
            r.thinking,
            [
                ThinkingBlock::Thinking { thinking: "Let me think.".into(), signature: "sig-1".into() },
                ThinkingBlock::Redacted { data: "opaque".into() },
            ]
        );
        assert_eq!(
            r.tool_calls,
            [
                ToolCall { id: "call_a".into(), name: "weather".into(), arguments: json!({"city": "Paris"}) },
                ToolCall { id: "call_b".into(), name: "time".into(), arguments: json!({"tz": "UTC"}) },
            ]
        );
        assert_eq!(r.usage, Usage::reported(12, 30), "the whole stream's figure, from Done");
        assert_eq!((r.finish_reason, r.cost), (Some(FinishReason::ToolCalls), 0.25));
        assert_eq!((r.backend.as_str(), r.model.as_str(), r.id), ("b", "m", None));
    }

    #[test]
    fn odd_streams_assemble_as_the_gateway_shows_them_or_not_at_all() {
        // Reasoning without seals is reasoning without blocks.
        let plain = assemble(&[
            StreamEvent::ReasoningDelta { text: "hmm".into() },
            StreamEvent::text("ok"),
            done(FinishReason::Stop, Usage::reported(1, 1)),
        ])
        .unwrap();
        assert_eq!((plain.reasoning.as_deref(), plain.thinking.len()), (Some("hmm"), 0));

        // A signature with no reasoning before it still ends a block; reasoning after the last
        // seal is an unsigned block; reasoning before a redacted block is one too.
        let blocks = assemble(&[
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature("s0".into()) },
            StreamEvent::ReasoningDelta { text: "a".into() },
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted("r".into()) },
            StreamEvent::ReasoningDelta { text: "b".into() },
            done(FinishReason::Stop, Usage::reported(1, 1)),
        ])
        .unwrap();
        let unsigned = |t: &str| ThinkingBlock::Thinking { thinking: t.into(), signature: String::new() };
        assert_eq!(
            blocks.thinking,
            [
                ThinkingBlock::Thinking { thinking: String::new(), signature: "s0".into() },
                unsigned("a"),
                ThinkingBlock::Redacted { data: "r".into() },
                unsigned("b"),
            ]
        );
        assert_eq!(blocks.reasoning.as_deref(), Some("ab"));

        // Servers that number every parallel call 0: a new id is a new call. A call without an
        // id gets one; without arguments, `{}`.
        let calls = assemble(&[
            delta(0, Some("x"), Some("f"), "{\"a\":1}"),
            delta(0, Some("y"), Some("g"), ""),
            delta(3, None, Some("h"), " "),
            done(FinishReason::ToolCalls, Usage::reported(1, 1)),
        ])
        .unwrap();
        let got: Vec<_> = calls.tool_calls.iter().map(|c| (c.name.as_str(), c.arguments.clone())).collect();
        assert_eq!(got, [("f", json!({"a": 1})), ("g", json!({})), ("h", json!({}))]);
        assert_eq!((calls.tool_calls[0].id.as_str(), calls.tool_calls[1].id.as_str()), ("x", "y"));
        assert!(calls.tool_calls[2].id.starts_with("call_"));

        // What a JSON answer could not be: no answer to store.
        for broken in [
            [delta(0, Some("x"), None, "{}"), done(FinishReason::ToolCalls, Usage::default())],
            [delta(0, Some("x"), Some("f"), "{\"a\": tru"), done(FinishReason::ToolCalls, Usage::default())],
            [delta(0, Some("x"), Some("f"), "[1]"), done(FinishReason::ToolCalls, Usage::default())],
        ] {
            assert_eq!(assemble(&broken), None, "{broken:?}");
        }
        // A stream that did not end, or ended in an error.
        assert_eq!(assemble(&[StreamEvent::text("half")]), None);
        let failed = StreamEvent::Error { error: crate::BackendError::interrupted("cut") };
        assert_eq!(assemble(&[StreamEvent::text("half"), failed]), None);
    }

    #[test]
    fn assembly_stops_past_the_limit() {
        let mut a = Assembler::new(10);
        assert!(a.push(&StreamEvent::text("12345")));
        assert!(a.push(&StreamEvent::ReasoningDelta { text: "12345".into() }), "exactly at the limit");
        assert!(!a.push(&StreamEvent::text("x")));
        // Tool calls and seals count too.
        let mut a = Assembler::new(10);
        assert!(a.push(&delta(0, Some("id"), Some("name"), "{}")));
        assert!(!a.push(&StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted("data".into()) }));
    }
}
