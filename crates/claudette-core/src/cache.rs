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
//! that a content filter cut or that ended for a reason Claudette does not know. Streams are
//! served from the cache (the stored answer replayed as events) but not stored: the router
//! forwards stream events as they come and keeps no assembled answer to store.
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
    ChatRequest, ChatResponse, FinishReason, Message, ReasoningEffort, ResponseFormat, StreamEnd,
    StreamEvent, Thinking, ThinkingBlock, ThinkingSeal, ToolCallDelta, ToolChoice, ToolSpec,
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
}

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
    pub fn new(scope: Option<&str>, request: &ChatRequest) -> Option<CacheKey> {
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
pub fn is_cacheable(response: &ChatResponse) -> bool {
    matches!(
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
    for block in &response.thinking {
        match block {
            ThinkingBlock::Thinking { thinking, signature } => {
                events.push(StreamEvent::ReasoningDelta { text: thinking.clone() });
                if !signature.is_empty() {
                    events
                        .push(StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature(signature.clone()) });
                }
            }
            ThinkingBlock::Redacted { data } => {
                events.push(StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted(data.clone()) });
            }
        }
    }
    if !response.content.is_empty() {
        events.push(StreamEvent::text(response.content.clone()));
    }
    for (i, call) in response.tool_calls.iter().enumerate() {
        events.push(StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: call.arguments.to_string(),
            },
        });
    }
    events.push(StreamEvent::Done {
        end: StreamEnd { finish_reason: response.finish_reason.clone(), usage: response.usage, cost: 0.0 },
    });
    events
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::{ToolCall, Usage};

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
            ChatRequest { tools: vec![tool], tool_choice: ToolChoice::Required, ..base.clone() },
            ChatRequest { parallel_tool_calls: Some(false), ..base.clone() },
            ChatRequest { response_format: ResponseFormat::JsonObject, ..base.clone() },
            ChatRequest { tags: vec!["eu".into()], ..base.clone() },
            ChatRequest { thinking: Some(Thinking::Adaptive), ..base.clone() },
            ChatRequest { output_effort: Some(ReasoningEffort::Low), ..base.clone() },
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
}
