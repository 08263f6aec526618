//! An assistant turn's shape: the order of its blocks (thinking, text, tool calls, a
//! provider's own blocks), and which call each streamed tool-call fragment belongs to. Every reader of a turn (the adapters, the
//! gateway's encoders and parsers, the response cache) asks here, so a turn read from a
//! stream, from a JSON answer or from a client's next request is the same turn.

use serde::{Deserialize, Serialize};

use crate::error::BackendError;
#[cfg(doc)]
use crate::types::{CacheAt, ChatResponse, Message};
use crate::types::{ThinkingBlock, ThinkingSeal, ToolCall, ToolCallDelta};

/// The kind of one block of an assistant turn, in [`Message::order`] and
/// [`ChatResponse::order`]: each entry stands for the next item of its kind, so the list says
/// where each item goes without repeating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// The next thinking block.
    Thinking,
    /// The text from where the previous text block ended up to this byte offset of the
    /// content (a char boundary).
    Text(u32),
    /// The next tool call.
    ToolCall,
    /// The next of the turn's [`NativeBlock`]s.
    Native,
}

/// The wire dialect a [`NativeBlock`] or [`NativeTool`] is written in: the provider that
/// defined it, and the only kind of backend that can take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Anthropic's Messages API.
    Anthropic,
}

impl Dialect {
    /// The [`BackendInfo::provider`](crate::BackendInfo::provider) of the backends that speak
    /// it.
    pub fn provider(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
        }
    }
}

/// A block of an assistant turn that only its provider understands, carried whole and
/// unread: Anthropic's server tools (`server_tool_use`, `web_search_tool_result`,
/// `web_fetch_tool_result`, `code_execution_tool_result`, `mcp_tool_use`, …). The provider
/// ran these tools itself; the client shows the results and must send them back, unchanged
/// (search results are encrypted), in its next turn. There is nothing to translate them to
/// on another provider, so a request carrying one goes only to a backend of its
/// [`Dialect`], and every other reader passes it by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeBlock {
    pub dialect: Dialect,
    /// The block as the provider's wire has it, `type` and all.
    pub block: serde_json::Value,
}

impl NativeBlock {
    pub fn anthropic(block: serde_json::Value) -> NativeBlock {
        NativeBlock { dialect: Dialect::Anthropic, block }
    }

    /// The block's `type`, or "" when it has none.
    pub fn kind(&self) -> &str {
        self.block.get("type").and_then(|t| t.as_str()).unwrap_or("")
    }
}

/// A tool the provider defines (Anthropic's `web_search_20250305`, `web_fetch_20250910`,
/// `code_execution_20250825`, and its client tools such as `bash_20250124` or
/// `memory_20250818`): the client names it by its versioned `type` and the provider knows
/// its schema and, for a server tool, runs it. Carried whole, like a [`NativeBlock`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeTool {
    pub dialect: Dialect,
    /// Where it stood among the request's tools: before the function tool at this index of
    /// [`ChatRequest::tools`](crate::ChatRequest::tools) (their count: after all of them).
    /// Tools are the start of the prompt, so their order is part of a cached prefix.
    pub at: u32,
    /// The definition as the client sent it, `type`, `name` and options.
    pub spec: serde_json::Value,
}

/// A top-level field of a request or an answer in a provider's own terms, carried whole:
/// Anthropic's `context_management` (Claude Code's context editing), `container` (the code
/// execution container a conversation works in, asked for by id and named in the answer),
/// `mcp_servers` (the MCP connector), `service_tier`.
///
/// Its `Debug` hides every value under a key that names a credential (`mcp_servers` carry
/// each server's `authorization_token`), so a request printed in a log never shows one.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeField {
    pub dialect: Dialect,
    pub name: String,
    pub value: serde_json::Value,
    /// In a request: another provider may not take it without the field (an MCP server, a
    /// container holding the conversation's files), so it goes only to a backend of the
    /// dialect. Otherwise (context editing, a service tier) another provider is sent the
    /// request without it, as it is sent other knobs it lacks. Unused in an answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

impl std::fmt::Debug for NativeField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeField")
            .field("dialect", &self.dialect)
            .field("name", &self.name)
            .field("value", &redacted(&self.value))
            .field("required", &self.required)
            .finish()
    }
}

/// A feature the client asked its provider for by the provider's own name, outside the body:
/// Anthropic's `anthropic-beta` flags (`context-1m-2025-08-07` for a million-token prompt,
/// `interleaved-thinking-2025-05-14` for thinking between tool calls, …), which Claude Code
/// sends on every request. A backend of the dialect sends them with those it derives from the
/// request and those its configuration names; another provider is sent the request without
/// them, as it is sent other knobs it lacks: a flag turns on a feature of one provider's
/// models, it does not change what is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeFlag {
    pub dialect: Dialect,
    pub flag: String,
}

/// `value` with every entry under a credential-like key replaced.
fn redacted(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn secret(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        ["token", "secret", "password", "authorization", "api_key", "apikey", "credential"]
            .iter()
            .any(|s| k.contains(s))
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if secret(k) { Value::String("REDACTED".into()) } else { redacted(v) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// The citations of one text block of a turn (Anthropic's `citations`: where a sentence of
/// the answer came from, a web search result or a document's page), as the provider wrote
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextCitations {
    /// The block: the one that ends this many bytes into the turn's text.
    pub end: u32,
    pub citations: Vec<serde_json::Value>,
}

/// One block of an assistant turn, in its order: see [`Message::blocks`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Block<'a> {
    Thinking(&'a ThinkingBlock),
    /// Never empty. `start` is its byte offset in the content, which cache breakpoints
    /// ([`CacheAt::Text`]) count in.
    Text {
        text: &'a str,
        start: usize,
    },
    /// The call and its index in the turn's tool calls ([`CacheAt::ToolCall`] counts in it).
    ToolCall {
        call: &'a ToolCall,
        index: usize,
    },
    Native(&'a NativeBlock),
}

/// A turn's blocks in `order`, or the usual order when it is empty. An order that does not
/// account for every item exactly once is refused, naming what is wrong: sent on, it would
/// drop or repeat part of the turn.
pub(crate) fn ordered_blocks<'a>(
    order: &[BlockKind],
    thinking: &'a [ThinkingBlock],
    content: &'a str,
    calls: &'a [ToolCall],
    native: &'a [NativeBlock],
) -> Result<Vec<Block<'a>>, BackendError> {
    let mut blocks = Vec::with_capacity(thinking.len() + 1 + calls.len() + native.len());
    if order.is_empty() {
        // Native blocks have no usual place: a turn with any keeps an order.
        if !native.is_empty() {
            return Err(BackendError::invalid(format!(
                "the order of an assistant turn's blocks is missing, and the turn has {} provider block(s) \
                 it must place",
                native.len()
            )));
        }
        blocks.extend(thinking.iter().map(Block::Thinking));
        if !content.is_empty() {
            blocks.push(Block::Text { text: content, start: 0 });
        }
        blocks.extend(calls.iter().enumerate().map(|(index, call)| Block::ToolCall { call, index }));
        return Ok(blocks);
    }
    let (mut next_thinking, mut next_call, mut next_native, mut text_end) = (0usize, 0usize, 0usize, 0usize);
    let bad =
        |what: String| Err(BackendError::invalid(format!("the order of an assistant turn's blocks {what}")));
    for kind in order {
        match *kind {
            BlockKind::Thinking => match thinking.get(next_thinking) {
                Some(t) => {
                    blocks.push(Block::Thinking(t));
                    next_thinking += 1;
                }
                None => return bad(format!("names more than the turn's {} thinking blocks", thinking.len())),
            },
            BlockKind::ToolCall => match calls.get(next_call) {
                Some(call) => {
                    blocks.push(Block::ToolCall { call, index: next_call });
                    next_call += 1;
                }
                None => return bad(format!("names more than the turn's {} tool calls", calls.len())),
            },
            BlockKind::Native => match native.get(next_native) {
                Some(block) => {
                    blocks.push(Block::Native(block));
                    next_native += 1;
                }
                None => return bad(format!("names more than the turn's {} provider blocks", native.len())),
            },
            BlockKind::Text(end) => {
                let end = usize::try_from(end).unwrap_or(usize::MAX);
                match content.get(text_end..end) {
                    Some("") => {}
                    Some(text) => blocks.push(Block::Text { text, start: text_end }),
                    None => {
                        return bad(format!(
                            "puts a text block's end at byte {end}, which does not fall between characters of \
                             the {}-byte text after byte {text_end}",
                            content.len()
                        ));
                    }
                }
                text_end = end;
            }
        }
    }
    if next_thinking != thinking.len()
        || next_call != calls.len()
        || next_native != native.len()
        || text_end != content.len()
    {
        return bad(format!(
            "accounts for {next_thinking} of {} thinking blocks, {next_call} of {} tool calls, {next_native} of {} \
             provider blocks and {text_end} of {} bytes of text",
            thinking.len(),
            calls.len(),
            native.len(),
            content.len()
        ));
    }
    Ok(blocks)
}

/// Writes down a turn's block order as a client's or provider's blocks are read, for
/// [`Message::order`] and [`ChatResponse::order`].
#[derive(Debug, Default, Clone)]
pub struct BlockOrder {
    order: Vec<BlockKind>,
}

impl BlockOrder {
    pub fn thinking(&mut self) {
        self.order.push(BlockKind::Thinking);
    }
    /// A text block that ends `end` bytes into the turn's text (its length once the block's
    /// text is appended). An empty one is not written down.
    pub fn text(&mut self, end: usize) {
        let end = u32::try_from(end).unwrap_or(u32::MAX);
        let last_end = self.order.iter().rev().find_map(|k| match k {
            BlockKind::Text(e) => Some(*e),
            _ => None,
        });
        if last_end.unwrap_or(0) != end {
            self.order.push(BlockKind::Text(end));
        }
    }
    pub fn tool_call(&mut self) {
        self.order.push(BlockKind::ToolCall);
    }
    pub fn native(&mut self) {
        self.order.push(BlockKind::Native);
    }
    /// The order to keep: empty when it is the usual one (thinking, then one text block, then
    /// the tool calls, and no provider blocks), so the common turn carries nothing extra.
    pub fn finish(self) -> Vec<BlockKind> {
        let kinds = self.order.iter();
        let thinking = kinds.clone().take_while(|k| **k == BlockKind::Thinking).count();
        let rest = &self.order[thinking..];
        let rest = match rest.first() {
            Some(BlockKind::Text(_)) => &rest[1..],
            _ => rest,
        };
        if rest.iter().all(|k| *k == BlockKind::ToolCall) { Vec::new() } else { self.order }
    }
}

/// A streamed answer's block order, written down from its events as they pass: the order a
/// client that assembles the answer from the stream would see. A block is written down where
/// it begins: a thinking block at its first reasoning (or at its seal, when it had none), text
/// at the next block of another kind, a tool call at its first fragment (the caller says when
/// a fragment starts a new call). There is no order without a sealed thinking block: only
/// Anthropic's signed thinking needs one.
///
/// The response cache assembles stored answers with it, and `/v1/chat/completions` streams
/// its `block_order` from it, so both read the same stream the same way.
#[derive(Debug, Default, Clone)]
pub struct StreamBlockOrder {
    began: Vec<Began>,
    /// Bytes of text streamed so far.
    text_len: usize,
    /// Text has come since the last block of another kind began.
    text_open: bool,
    /// The thinking block being streamed (its place in `began`), until a seal ends it.
    open: Option<usize>,
    /// A seal or a provider block has come: the order matters.
    sealed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Began {
    /// `sealed`: a seal ended it.
    Thinking {
        sealed: bool,
    },
    /// A text block ending this many bytes into the text.
    Text(usize),
    ToolCall,
    Native,
}

impl StreamBlockOrder {
    pub fn text(&mut self, text: &str) {
        self.text_len += text.len();
        self.text_open |= !text.is_empty();
    }

    pub fn reasoning(&mut self, text: &str) {
        if self.open.is_none() && !text.is_empty() {
            self.begin_thinking();
        }
    }

    /// A signature ends the block being streamed (one begins here if none is); a redacted
    /// block is one of its own, and reasoning before it that no signature ended stays
    /// unsealed.
    pub fn seal(&mut self, seal: &ThinkingSeal) {
        if matches!(seal, ThinkingSeal::Redacted(_)) {
            self.open = None;
        }
        if self.open.is_none() {
            self.begin_thinking();
        }
        if let Some(Began::Thinking { sealed }) = self.open.take().and_then(|k| self.began.get_mut(k)) {
            *sealed = true;
        }
        self.sealed = true;
    }

    /// The provider ended the text block being streamed ([`StreamEvent::TextEnd`](crate::StreamEvent::TextEnd)).
    pub fn text_end(&mut self) {
        self.end_text();
    }

    /// A fragment that starts a new tool call.
    pub fn tool_call(&mut self) {
        self.end_text();
        self.began.push(Began::ToolCall);
    }

    /// A provider's block, whole.
    pub fn native(&mut self) {
        self.end_text();
        self.open = None;
        self.began.push(Began::Native);
        self.sealed = true;
    }

    fn begin_thinking(&mut self) {
        self.end_text();
        self.open = Some(self.began.len());
        self.began.push(Began::Thinking { sealed: false });
    }

    fn end_text(&mut self) {
        if std::mem::take(&mut self.text_open) {
            self.began.push(Began::Text(self.text_len));
        }
    }

    /// The order to keep: empty without a sealed or provider block, or when it is the usual
    /// one.
    /// `unsealed`: reasoning that no seal ended counts as a block (the cache keeps it as an
    /// unsigned block; a client that only gets sealed blocks back has no such block).
    pub fn finish(&mut self, unsealed: bool) -> Vec<BlockKind> {
        if !self.sealed {
            return Vec::new();
        }
        self.end_text();
        let mut order = BlockOrder::default();
        for began in &self.began {
            match *began {
                Began::Thinking { sealed } if sealed || unsealed => order.thinking(),
                Began::Thinking { .. } => {}
                Began::Text(end) => order.text(end),
                Began::ToolCall => order.tool_call(),
                Began::Native => order.native(),
            }
        }
        order.finish()
    }
}

/// Which call each streamed tool-call fragment belongs to, and the calls' positions (0, 1, 2…
/// in the order they first appeared): the one rule for every reader of a stream, so that a
/// client streaming an answer in any format and one served it later from the response cache
/// see the same calls.
///
/// Neither the index nor the id tells alone. Upstream indexes are not positions (Anthropic's
/// count every content block, so a call after text is 1) and need not be unique: Gemini's
/// OpenAI-compatible stream numbers every parallel call 0, each whole with its own id, and
/// gluing those would give `{…}{…}` for arguments. OpenAI, on the other hand, names the id
/// only in a call's first fragment. So a fragment belongs to the call last seen at its index,
/// unless it names an id and that call has another: then it starts a new call. A call first
/// seen without an id takes the first id a later fragment names, so a further new id at that
/// index is again a new call rather than more of this one.
#[derive(Debug, Clone, Default)]
pub struct ToolCallSlots {
    /// Per position: the upstream index and the id, if one was named yet.
    calls: Vec<(u32, Option<String>)>,
}

/// Where [`ToolCallSlots::place`] put a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolCallSlot {
    /// The call's position among the stream's calls.
    pub position: usize,
    /// The fragment starts the call: nothing of it came before.
    pub starts: bool,
    /// The fragment's id became the call's (its first fragment to name one): a reader that
    /// counts what it keeps counts it once.
    pub names: bool,
}

impl ToolCallSlots {
    pub fn new() -> ToolCallSlots {
        ToolCallSlots::default()
    }

    /// The call `delta` belongs to, recording it if it starts one or names its id.
    pub fn place(&mut self, delta: &ToolCallDelta) -> ToolCallSlot {
        let last = self.calls.iter().rposition(|(index, _)| *index == delta.index);
        if let Some((position, (_, id))) = last.and_then(|p| Some((p, self.calls.get_mut(p)?))) {
            match (&delta.id, id.as_ref()) {
                (Some(new), Some(known)) if new != known => {}
                (Some(new), None) => {
                    *id = Some(new.clone());
                    return ToolCallSlot { position, starts: false, names: true };
                }
                _ => return ToolCallSlot { position, starts: false, names: false },
            }
        }
        self.calls.push((delta.index, delta.id.clone()));
        ToolCallSlot { position: self.calls.len() - 1, starts: true, names: delta.id.is_some() }
    }

    /// How many calls the stream has had so far.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The upstream index of the call at `position`.
    pub fn upstream_index(&self, position: usize) -> Option<u32> {
        self.calls.get(position).map(|(index, _)| *index)
    }

    /// The id of the call at `position`, if a fragment named one.
    pub fn id(&self, position: usize) -> Option<&str> {
        self.calls.get(position).and_then(|(_, id)| id.as_deref())
    }
}

#[cfg(test)]
mod tool_call_slots_tests {
    use super::*;

    fn frag(index: u32, id: Option<&str>) -> ToolCallDelta {
        ToolCallDelta { index, id: id.map(Into::into), name: None, arguments: String::new() }
    }

    /// (position, starts, names) of each fragment, placed in order.
    fn placed(frags: &[(u32, Option<&str>)]) -> Vec<(usize, bool, bool)> {
        let mut slots = ToolCallSlots::new();
        frags
            .iter()
            .map(|&(index, id)| {
                let s = slots.place(&frag(index, id));
                (s.position, s.starts, s.names)
            })
            .collect()
    }

    #[test]
    fn openai_fragments_follow_their_index_and_positions_count_calls_only() {
        // Anthropic-style indexes: text was block 0, so the calls are 1 and 2.
        let got = placed(&[(1, Some("a")), (1, None), (2, Some("b")), (2, None), (1, None)]);
        assert_eq!(
            got,
            [(0, true, true), (0, false, false), (1, true, true), (1, false, false), (0, false, false)]
        );
    }

    #[test]
    fn a_new_id_at_a_used_index_is_a_new_call() {
        // Gemini's OpenAI-compatible stream: every call whole, every call at index 0.
        let got = placed(&[(0, Some("a")), (0, Some("b")), (0, Some("c")), (0, None), (0, Some("c"))]);
        assert_eq!(
            got,
            [(0, true, true), (1, true, true), (2, true, true), (2, false, false), (2, false, false)]
        );
    }

    #[test]
    fn a_call_without_an_id_takes_the_first_one_named_later() {
        let mut slots = ToolCallSlots::new();
        assert_eq!(slots.place(&frag(0, None)), ToolCallSlot { position: 0, starts: true, names: false });
        assert_eq!(slots.id(0), None);
        assert_eq!(
            slots.place(&frag(0, Some("a"))),
            ToolCallSlot { position: 0, starts: false, names: true }
        );
        assert_eq!(slots.id(0), Some("a"));
        // Now that it has one, another id at its index is another call.
        assert_eq!(slots.place(&frag(0, Some("b"))), ToolCallSlot { position: 1, starts: true, names: true });
        assert_eq!((slots.len(), slots.upstream_index(1), slots.id(1)), (2, Some(0), Some("b")));
        assert_eq!((slots.upstream_index(2), slots.id(2)), (None, None));
    }

    #[test]
    fn a_fragment_goes_to_the_latest_call_at_its_index() {
        // The first call at index 0 named `a`, a later one at 0 named `b`: an id-less fragment
        // at 0 is `b`'s, and `a` named again starts a call (it is not the latest at 0).
        let got = placed(&[(0, Some("a")), (0, Some("b")), (0, None), (0, Some("a"))]);
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 1, 2]);
        assert!(ToolCallSlots::new().is_empty());
    }
}
