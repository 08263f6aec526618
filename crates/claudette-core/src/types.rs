//! Provider-neutral request, response and stream types.
//!
//! Every provider adapter translates from and to these types, so the router, the gateway and
//! the plugin ABI only ever see one shape. They are plain serde types: a `.so` plugin receives
//! them as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decision::RoutingDecision;
use crate::error::BackendError;
pub(crate) use crate::turn::ordered_blocks;
pub use crate::turn::{
    Block, BlockKind, BlockOrder, Dialect, NativeBlock, NativeField, NativeFlag, NativeTool,
    StreamBlockOrder, TextCitations, ToolCallSlot, ToolCallSlots,
};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call, sent back to the model.
    Tool,
}

impl Role {
    /// The role's name on the wire of every provider that names roles this way (OpenAI,
    /// Anthropic's turns, Ollama).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text content. Empty for an assistant turn that only calls tools.
    #[serde(default)]
    pub content: String,
    /// Tool calls made by the assistant in this turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: the id of the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For `Role::Tool`: the name of the tool that produced the result (some providers want it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `Role::Tool`: the call failed and `content` says how (Anthropic's `tool_result`
    /// `is_error`). The model must know a result is a failure, or it builds on it as if the
    /// tool had worked; providers without such a flag get it in the text (see
    /// [`Message::tool_result_text`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// For `Role::Assistant`: the provider's thinking blocks of this turn, as they came.
    /// Anthropic refuses a tool loop with thinking enabled unless the assistant turn that made
    /// the calls is sent back with its signed thinking; other providers get none of it (the
    /// signatures mean nothing to them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thinking: Vec<ThinkingBlock>,
    /// Prompt-cache breakpoints in this message (Anthropic's `cache_control`), in order. Kept
    /// as positions rather than flags because the client's block boundaries are flattened
    /// into `content`: a breakpoint must stay where the client put it (after the static part
    /// of a system prompt, not after the dynamic part), or the cached prefix never matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<CacheBreakpoint>,
    /// For `Role::User` and `Role::Tool`: images shown to the model (vision input: a pasted
    /// screenshot, or a tool that read an image file), in the order the client placed them. Kept beside `content` rather than as content parts, like [`Self::cache`]:
    /// each image remembers where it stood among the client's text blocks
    /// ([`Image::at`]), so text-only requests, the common case, keep one `String` and every
    /// adapter can still put text and images back in the client's order
    /// ([`Message::segments`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// For `Role::User` and `Role::Tool`: PDFs shown to the model (a file the user attached,
    /// or one a tool read: Claude Code's Read tool returns a PDF as a document), placed among
    /// the text like [`Self::images`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<Document>,
    /// For `Role::Assistant`: the order of the turn's blocks, when it is not the usual one
    /// (thinking, then text, then tool calls); empty otherwise. Claude thinks between its tool
    /// calls (interleaved thinking: thinking, call, thinking, call), and Anthropic refuses the
    /// turn sent back in any other order ("thinking blocks in the latest assistant message
    /// cannot be modified"), every turn after, so the order a client sent is kept. See
    /// [`Message::blocks`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<BlockKind>,
    /// For `Role::Assistant`: the provider's own blocks of this turn (server tool calls and
    /// their results), placed by [`Self::order`]. See [`NativeBlock`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native: Vec<NativeBlock>,
    /// For `Role::Assistant`: the citations of the turn's text blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<TextCitations>,
}

/// An image in a user message or a tool result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Image {
    /// Where the image stood: after this many bytes of [`Message::content`] (a char boundary,
    /// at most its length). Images at the same offset keep their order in
    /// [`Message::images`].
    pub at: u32,
    pub source: ImageSource,
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// The bytes themselves, base64 as the client sent them: images run to megabytes, and
    /// every provider that takes inline images takes base64, so they are never decoded.
    Base64 {
        /// `image/jpeg`, `image/png`, `image/gif` or `image/webp` ([`IMAGE_MEDIA_TYPES`]).
        media_type: String,
        data: String,
    },
    /// An `http(s)` URL the provider fetches itself. Providers that cannot fetch refuse it
    /// ([`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)), so the router tries one that
    /// can: the gateway never fetches a client's URL (no requests to addresses a client
    /// chooses).
    Url { url: String },
}

/// The image types every provider with vision accepts inline (Anthropic's list; OpenAI and
/// Gemini take these and more).
pub const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Input tokens an image is counted as in local estimates: about what Anthropic charges for
/// the largest image it does not downscale (1.15 megapixels, ~1,600 tokens) and above
/// OpenAI's high-detail 1024×1024 (765). An estimate that errs high keeps budget checks safe.
pub const IMAGE_TOKEN_ESTIMATE: u32 = 1_600;

/// A PDF in a user message or a tool result. Every provider that reads PDFs reads each page
/// as text and as an image, so a backend takes documents when it takes images
/// ([`BackendInfo::supports_images`](crate::BackendInfo::supports_images)); one that cannot read
/// them refuses them ([`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Document {
    /// Where the document stood, as [`Image::at`]. At one offset, images come first.
    pub at: u32,
    pub source: DocumentSource,
    /// The file's name or title, when the client gave one (OpenAI's `filename`, Anthropic's
    /// `title`): the model sees it, and OpenAI wants a name with inline file data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The answer may cite the document's pages (Anthropic's `citations: {"enabled": true}`;
    /// the citations come back as [`ChatResponse::citations`]). A knob: a provider without
    /// citations reads the document all the same and answers without them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub citations: bool,
}

/// Where a PDF's bytes are ([`DOCUMENT_MEDIA_TYPE`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource {
    /// The PDF, base64 as the client sent it (never decoded, as images).
    Base64 { data: String },
    /// An `http(s)` URL the provider fetches itself, as [`ImageSource::Url`].
    Url { url: String },
}

/// The one document type carried: every provider that reads documents reads PDFs, and other
/// types (Word, spreadsheets) are read differently by each, or not at all.
pub const DOCUMENT_MEDIA_TYPE: &str = "application/pdf";

/// Input tokens a PDF page is counted as in local estimates: Anthropic quotes 1,500 to 3,000
/// a page (its text plus the page as an image). Pages are not counted (that needs the PDF
/// parsed): a base64 PDF is taken as a page per 50 KB, at least one, and a URL's as
/// [`DOCUMENT_URL_PAGES`] pages. High rather than low, as [`IMAGE_TOKEN_ESTIMATE`].
pub const DOCUMENT_PAGE_TOKEN_ESTIMATE: u32 = 3_000;

/// Pages a PDF given by URL is counted as (its size is unknown without fetching it).
pub const DOCUMENT_URL_PAGES: u32 = 10;

impl Document {
    /// This document's input tokens in local estimates ([`DOCUMENT_PAGE_TOKEN_ESTIMATE`]).
    pub fn estimated_tokens(&self) -> u32 {
        let pages = match &self.source {
            DocumentSource::Base64 { data } => {
                u32::try_from((data.len() / 4 * 3).div_ceil(50_000)).unwrap_or(u32::MAX)
            }
            DocumentSource::Url { .. } => DOCUMENT_URL_PAGES,
        };
        pages.max(1).saturating_mul(DOCUMENT_PAGE_TOKEN_ESTIMATE)
    }
}

/// A piece of a message in the client's order: see [`Message::segments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Image(&'a Image),
    Document(&'a Document),
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
            is_error: false,
            thinking: Vec::new(),
            cache: Vec::new(),
            images: Vec::new(),
            documents: Vec::new(),
            order: Vec::new(),
            native: Vec::new(),
            citations: Vec::new(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// A tool result answering the call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(tool_call_id.into()), ..Self::new(Role::Tool, content) }
    }

    /// A failed tool call's result: `content` says what went wrong.
    pub fn tool_error(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { is_error: true, ..Self::tool_result(tool_call_id, content) }
    }

    /// The message's text, images and documents in the client's order: text runs (never
    /// empty) split at each image's [`Image::at`] and each document's [`Document::at`]; at one
    /// offset, images before documents, each kind in its list's order. Text-only messages give
    /// their content as one run (none when it is empty). An offset past the end, or inside a
    /// character, places the item at the next boundary rather than panicking.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        let text = self.content.as_str();
        let mut images = self.images.iter().peekable();
        let mut documents = self.documents.iter().peekable();
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            let image_at = images.peek().map(|i| boundary(text, i.at as usize));
            let document_at = documents.peek().map(|d| boundary(text, d.at as usize));
            if image_at.is_some_and(|at| at <= pos) {
                return images.next().map(Segment::Image);
            }
            if document_at.is_some_and(|at| at <= pos) {
                return documents.next().map(Segment::Document);
            }
            let end = match (image_at, document_at) {
                (Some(i), Some(d)) => i.min(d),
                (Some(at), None) | (None, Some(at)) => at,
                (None, None) if pos < text.len() => text.len(),
                (None, None) => return None,
            };
            let run = &text[pos..end];
            pos = end;
            Some(Segment::Text(run))
        })
    }

    /// What the message shows besides text, for a model told where it went: "1 image",
    /// "2 images and 1 document", "1 document" (empty when none). Providers whose tool results
    /// cannot carry media move it elsewhere and say so in these words.
    pub fn media_summary(&self) -> String {
        match (self.images.len(), self.documents.len()) {
            (0, 0) => String::new(),
            (i, 0) => format!("{i} image{}", plural(i)),
            (0, d) => format!("{d} document{}", plural(d)),
            (i, d) => format!("{i} image{} and {d} document{}", plural(i), plural(d)),
        }
    }

    /// An assistant turn's thinking, text and tool calls as blocks, in [`Self::order`] (or the
    /// usual order when it is empty). The text comes as one block in the usual order; in a
    /// kept order, as the client's blocks. An order that does not match the turn is refused.
    pub fn blocks(&self) -> Result<Vec<Block<'_>>, BackendError> {
        ordered_blocks(&self.order, &self.thinking, &self.content, &self.tool_calls, &self.native)
    }

    /// The citations of the text block that ends `end` bytes into the content (none when it
    /// has none).
    pub fn citations_at(&self, end: usize) -> &[serde_json::Value] {
        citations_at(&self.citations, end)
    }

    /// A tool result's text for a provider whose tool messages have no error flag (OpenAI
    /// Chat Completions, Ollama): a failure is said in the text, `Error: <content>`, as a tool
    /// that reports its own failures would write it. Sent as it came, the model would read the
    /// error message as the tool's output. Any other message's text is its content.
    pub fn tool_result_text(&self) -> std::borrow::Cow<'_, str> {
        match (self.role, self.is_error) {
            (Role::Tool, true) if self.content.is_empty() => "Error".into(),
            (Role::Tool, true) => format!("Error: {}", self.content).into(),
            _ => self.content.as_str().into(),
        }
    }
}

/// A tool (function) the model may call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
    /// A prompt-cache breakpoint after this tool's definition (Anthropic's `cache_control` on a
    /// tool): tools come first in the prompt, so this caches every tool up to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheTtl>,
    /// The model's arguments must follow `parameters` exactly (OpenAI's `function.strict`,
    /// Anthropic's `strict` on a tool: constrained decoding, so the caller can act on the
    /// arguments without validating and retrying them). The official SDKs' tool helpers set
    /// it, and a client relying on it would break on arguments that miss a required field.
    /// Gemini and Ollama have no per-tool switch: they get the tool without it, as they get
    /// other knobs they lack, and follow the schema as well as the model manages; refusing
    /// the request there would break those SDKs in front of them. Left out of the JSON form
    /// when off, so stored forms (and cache keys) of requests without it stay as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

/// How long a cached prompt prefix lives (Anthropic's `cache_control.ttl`). The longer one
/// costs more to write (200 % of the input price instead of 125 %), so the client's choice is
/// kept rather than normalised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheTtl {
    /// Anthropic's default.
    #[default]
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

impl CacheTtl {
    /// The wire value of `cache_control.ttl`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FiveMinutes => "5m",
            Self::OneHour => "1h",
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `at` moved forward to a char boundary of `text`, at most its length.
fn boundary(text: &str, at: usize) -> usize {
    (at.min(text.len())..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len())
}

/// Where in a message a cached prefix ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheAt {
    /// After this many bytes of [`Message::content`] (a char boundary, at most its length):
    /// the end of the client's text block there.
    Text(u32),
    /// After the assistant's tool call of this index in [`Message::tool_calls`].
    ToolCall(u32),
    /// After the image of this index in [`Message::images`]: the client marked the image
    /// itself. A mark on the text before it would leave the image outside the cached prefix,
    /// and a screenshot is the largest part of the turn that carries it.
    Image(u32),
    /// After the document of this index in [`Message::documents`], as [`Self::Image`].
    Document(u32),
}

/// One prompt-cache breakpoint (Anthropic allows [`MAX_CACHE_BREAKPOINTS`] per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheBreakpoint {
    pub at: CacheAt,
    #[serde(default)]
    pub ttl: CacheTtl,
}

/// Anthropic refuses a request with more `cache_control` blocks ("A maximum of 4 blocks with
/// cache_control may be provided").
pub const MAX_CACHE_BREAKPOINTS: usize = 4;

/// One thinking block of an assistant turn, as the provider made it. The text is also in
/// [`ChatResponse::reasoning`] for readers; this form is the one that can be sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlock {
    /// Readable reasoning and the provider's signature over it (empty when the provider gave
    /// none: such a block cannot be sent back to Anthropic, which checks the signature).
    Thinking { thinking: String, signature: String },
    /// Reasoning the provider encrypted; only the opaque `data` travels.
    Redacted { data: String },
}

/// What ends a thinking block in a stream (see [`StreamEvent::ThinkingSeal`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThinkingSeal {
    /// The signature over the reasoning streamed since the previous seal; the block ends here.
    Signature(String),
    /// A whole redacted thinking block.
    Redacted(String),
}

/// How much the model may reason before answering. One field for the ways clients ask:
/// Anthropic and Gemini take a token budget, OpenAI-format servers an effort level, and newer
/// Claude models let the model itself decide; each adapter sends the form its provider takes,
/// converting with [`Thinking::budget_tokens`] and [`Thinking::effort`] where the client used
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Thinking {
    /// No reasoning (Anthropic `{"type": "disabled"}`).
    Disabled,
    /// Reason with at most this many tokens (Anthropic `budget_tokens`, Gemini
    /// `thinkingBudget`).
    Budget { budget_tokens: u32 },
    /// OpenAI `reasoning_effort`.
    Effort { effort: ReasoningEffort },
    /// The model decides whether and how much to reason (Anthropic `{"type": "adaptive"}`,
    /// steered by [`ChatRequest::output_effort`]; Gemini's dynamic budget). Kept apart from a
    /// budget or a level because Claude Opus 4.7 and later refuse every other form of thinking,
    /// and a number chosen here would be one the client never asked for.
    Adaptive,
}

/// Effort levels: OpenAI's `reasoning_effort` (`none` … `xhigh`) and Anthropic's
/// `output_config.effort` (`low` … `max`), in one ascending scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    /// `none`: no reasoning, where the model allows it.
    #[serde(rename = "none")]
    Off,
    Minimal,
    Low,
    Medium,
    High,
    /// OpenAI's and Claude Opus 4.7's level above `high`.
    #[serde(rename = "xhigh")]
    XHigh,
    /// Anthropic's top level (no limit on the tokens spent); OpenAI's top is `xhigh`.
    Max,
}

impl ReasoningEffort {
    /// Every level, lowest first.
    pub const ALL: [Self; 7] =
        [Self::Off, Self::Minimal, Self::Low, Self::Medium, Self::High, Self::XHigh, Self::Max];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::XHigh => "xhigh",
            Self::Max => "max",
        }
    }

    /// The effort named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The effort named `s` among OpenAI's `reasoning_effort` levels (`none` … `xhigh`). An
    /// OpenAI-compatible front takes only those: `max` is Anthropic's word, which OpenAI
    /// refuses, so a front that took it would accept what its own protocol does not.
    pub fn parse_openai(s: &str) -> Option<Self> {
        Self::parse(s).filter(|e| *e != Self::Max)
    }
}

impl Thinking {
    /// The token budget to ask a budget-taking provider for; `None` when reasoning is off, and
    /// for [`Adaptive`](Self::Adaptive), which has no fixed budget (see
    /// [`is_enabled`](Self::is_enabled)). Efforts map as Google maps them for Gemini's
    /// OpenAI-compatible endpoint (low 1,024, medium 8,192, high 24,576); `minimal` is
    /// Anthropic's smallest budget, 1,024, and the levels above `high` get Gemini 2.5 Pro's
    /// largest, 32,768.
    pub fn budget_tokens(self) -> Option<u32> {
        match self {
            Self::Disabled | Self::Adaptive | Self::Effort { effort: ReasoningEffort::Off } => None,
            Self::Budget { budget_tokens } => Some(budget_tokens),
            Self::Effort { effort: ReasoningEffort::Minimal | ReasoningEffort::Low } => Some(1024),
            Self::Effort { effort: ReasoningEffort::Medium } => Some(8192),
            Self::Effort { effort: ReasoningEffort::High } => Some(24_576),
            Self::Effort { effort: ReasoningEffort::XHigh | ReasoningEffort::Max } => Some(32_768),
        }
    }

    /// The effort to ask an effort-taking provider for: the inverse of
    /// [`budget_tokens`](Self::budget_tokens), so a level up to `high` survives a trip through
    /// a budget. A budget above `high`'s is still `high`: a number says nothing of the model,
    /// and OpenAI refuses `xhigh` on every model before gpt-5.1-codex-max. `None` for
    /// [`Adaptive`](Self::Adaptive): the model's own choice is no level at all.
    pub fn effort(self) -> Option<ReasoningEffort> {
        Some(match self {
            Self::Adaptive => return None,
            Self::Disabled => ReasoningEffort::Off,
            Self::Effort { effort } => effort,
            Self::Budget { budget_tokens: 0 } => ReasoningEffort::Off,
            Self::Budget { budget_tokens: ..=1024 } => ReasoningEffort::Low,
            Self::Budget { budget_tokens: ..=8192 } => ReasoningEffort::Medium,
            Self::Budget { .. } => ReasoningEffort::High,
        })
    }

    /// Whether the model may reason at all. Not "has a budget": adaptive thinking is on
    /// without one, and a zero budget is off (Gemini's word for it).
    pub fn is_enabled(self) -> bool {
        !matches!(
            self,
            Self::Disabled
                | Self::Effort { effort: ReasoningEffort::Off }
                | Self::Budget { budget_tokens: 0 }
        )
    }
}

impl Message {
    /// `content` cut at its text breakpoints: each piece with the TTL of the breakpoint that
    /// ends it (the last piece, after the last breakpoint, has none and is left out when
    /// empty). An offset past the end or inside a character is the caller's error, named.
    pub fn cache_segments(&self) -> Result<Vec<(&str, Option<CacheTtl>)>, BackendError> {
        let mut out = Vec::with_capacity(self.cache.len() + 1);
        let mut from = 0usize;
        for b in &self.cache {
            let CacheAt::Text(at) = b.at else { continue };
            let at = usize::try_from(at).unwrap_or(usize::MAX);
            if at < from || !self.content.is_char_boundary(at) {
                return Err(BackendError::invalid(format!(
                    "a cache breakpoint at byte {at} does not fall between characters of the {}-byte \
                     message text after the previous one",
                    self.content.len()
                )));
            }
            out.push((&self.content[from..at], Some(b.ttl)));
            from = at;
        }
        if from < self.content.len() || out.is_empty() {
            out.push((&self.content[from..], None));
        }
        Ok(out)
    }

    /// The TTL of a breakpoint after tool call `index`, if there is one.
    pub fn cache_after_call(&self, index: usize) -> Option<CacheTtl> {
        self.cache
            .iter()
            .find(|b| b.at == CacheAt::ToolCall(u32::try_from(index).unwrap_or(u32::MAX)))
            .map(|b| b.ttl)
    }
}

/// Whether, and which, tool the model must call. Clients use a forced call for structured
/// output (the arguments are the answer), so a backend that cannot honour the choice refuses the
/// request ([`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)) rather than answer in
/// text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "name")]
pub enum ToolChoice {
    /// The model decides (every provider's default).
    #[default]
    Auto,
    /// No tool call, even though tools are listed (they may still give the model context).
    None,
    /// At least one call, of any listed tool (OpenAI `required`, Anthropic `any`, Gemini `ANY`).
    Required,
    /// A call of this tool.
    Tool(String),
}

impl ToolChoice {
    pub fn is_auto(&self) -> bool {
        *self == ToolChoice::Auto
    }
}

/// The shape the answer must take. Clients parse such an answer, so a backend that cannot
/// promise the shape refuses the request ([`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported))
/// and the router fails over, rather than hand back prose that breaks the client's parser.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ResponseFormat {
    /// Free text (every provider's default).
    #[default]
    Text,
    /// Some JSON object.
    JsonObject,
    /// JSON valid against `schema` (a JSON Schema); `strict` asks the provider to enforce it.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
        #[serde(default)]
        strict: bool,
    },
}

impl ResponseFormat {
    pub fn is_text(&self) -> bool {
        *self == ResponseFormat::Text
    }
}

/// A complete tool call. `arguments` is always a JSON *object* here, whatever the provider sent
/// (OpenAI sends a string, Ollama an object): normalising once spares every caller the guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// Tool-call arguments as the JSON object [`ToolCall::arguments`] promises, whatever came: an
/// object stays, a string holding a JSON object is parsed, `null` or blank text is `{}`, and
/// anything else is kept under `"value"` rather than dropped.
///
/// One function for every adapter: providers that want an object on the wire (Anthropic
/// `tool_use.input`, Ollama) must not each guess differently what to do with the raw text an
/// OpenAI-compatible server left in a history, or one backend would reject a conversation the
/// others accept.
pub fn normalize_tool_arguments(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(_) => v.clone(),
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::String(s) if s.trim().is_empty() => Value::Object(serde_json::Map::new()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(o @ Value::Object(_)) => o,
            _ => serde_json::json!({ "value": s }),
        },
        other => serde_json::json!({ "value": other }),
    }
}

/// A chat request, independent of any provider.
///
/// Build one with [`ChatRequest::prompt`] for the seeds' one-shot shape, or
/// [`ChatRequest::new`] with a full conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// Model override. `None` uses the backend's configured model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sample from the `k` most likely tokens only (Anthropic, Gemini, Ollama, and vLLM /
    /// llama.cpp / SGLang behind the OpenAI protocol). Best effort, like every sampling knob:
    /// a provider without it is sent the request without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Seed for sampling, for answers that repeat (OpenAI, Gemini, Ollama, vLLM). Best effort:
    /// no provider promises determinism, and one without a seed (Anthropic) is sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Tools the provider defines (web search, code execution, …), placed among `tools`. A
    /// request with any goes only to a backend of their [`Dialect`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native_tools: Vec<NativeTool>,
    /// Top-level fields in a provider's own terms; see [`NativeField`]. Each is sent to a
    /// backend of its dialect only; a [`required`](NativeField::required) one keeps the
    /// request to such backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native_fields: Vec<NativeField>,
    /// Provider features asked for outside the body; see [`NativeFlag`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native_flags: Vec<NativeFlag>,
    /// Meaningful only with `tools`; `Auto` is sent as no choice at all.
    #[serde(default, skip_serializing_if = "ToolChoice::is_auto")]
    pub tool_choice: ToolChoice,
    /// Whether the model may call several tools in one turn (`None`: the provider's default,
    /// which allows it). `Some(false)` is a limit the client relies on (it runs one call per
    /// turn), so a backend whose provider has no such switch keeps the answer's first call and
    /// drops the others ([`ChatResponse::keep_first_tool_call`], [`FirstToolCallOnly`]) rather
    /// than hand the client two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "ResponseFormat::is_text")]
    pub response_format: ResponseFormat,
    /// Forces one backend by name (the seeds' `request.backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Restricts candidates to backends carrying all of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free-form metadata carried through to logs and the ledger (never sent upstream).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Extended thinking / reasoning (`None`: the provider's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// How many tokens the model should spend on the whole answer, thinking included when it is
    /// on (Anthropic's `output_config.effort`; `None`: the provider's default). Best effort,
    /// like the sampling knobs: Anthropic takes it as it is, OpenAI-format servers as
    /// `reasoning_effort` when thinking is [`Thinking::Adaptive`] (their only say in how much
    /// the model spends), and a provider with no such knob is sent the request without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_effort: Option<ReasoningEffort>,
    /// The caller's id for this request (the gateway's `x-request-id`), booked with every
    /// usage record so a ledger row can be traced to its request. Never sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who is asking (the gateway sets the name of the key that authenticated the request).
    /// Responses are cached per tenant (reliability-spec S-11): the same request from two
    /// tenants never shares an answer, and `None` is a scope of its own ("anonymous"), never
    /// shared with a named one. Never sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        Self { messages, ..Self::default() }
    }

    /// The seeds' `{ prompt }` shorthand: one user message.
    pub fn prompt(prompt: impl Into<String>) -> Self {
        Self::new(vec![Message::user(prompt)])
    }

    /// Refuses images and documents anywhere but a user message or a tool result
    /// ([`Message::images`], [`Message::documents`]), and cache breakpoints after an image or a
    /// document that is not there: an adapter that dropped them would have the model answer
    /// about what it never saw, or cache less than the client asked. Every adapter asks here,
    /// so each provider refuses the same requests with the same words; it is the caller's
    /// error, so the router does not try another backend.
    pub fn checked_media(&self) -> Result<(), BackendError> {
        for (index, m) in self.messages.iter().enumerate() {
            let placed = matches!(m.role, Role::User | Role::Tool);
            for (what, n) in [("images", m.images.len()), ("documents", m.documents.len())] {
                if n > 0 && !placed {
                    return Err(BackendError::invalid(format!(
                        "message {index}: {what} can only be sent in a user message or a tool result, not in \
                         a `{}` one",
                        m.role.as_str()
                    )));
                }
            }
            for b in &m.cache {
                let (what, i, n) = match b.at {
                    CacheAt::Image(i) => ("image", i, m.images.len()),
                    CacheAt::Document(i) => ("document", i, m.documents.len()),
                    _ => continue,
                };
                if i as usize >= n {
                    return Err(BackendError::invalid(format!(
                        "message {index}: a cache breakpoint after {what} {i}, but the message has {n} {what}(s)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The conversation for a provider whose tool messages take text only (OpenAI Chat
    /// Completions, Ollama): the images and documents of each run of tool results move to one
    /// user message after the run, each tool's introduced by the call it came from. Tool
    /// messages must follow their assistant turn without a break, so they cannot go between
    /// them; and a model that never sees the screenshot its tool took answers blind. A tool
    /// result left with no text says where its media went. Borrowed, without a copy, when no
    /// tool result has any (the common case).
    pub fn messages_with_tool_media_moved(&self) -> std::borrow::Cow<'_, [Message]> {
        let has_media = |m: &Message| !m.images.is_empty() || !m.documents.is_empty();
        if !self.messages.iter().any(|m| m.role == Role::Tool && has_media(m)) {
            return std::borrow::Cow::Borrowed(&self.messages);
        }
        let mut out = Vec::with_capacity(self.messages.len() + 1);
        let mut moved: Option<Message> = None;
        for m in &self.messages {
            if m.role != Role::Tool
                && let Some(media) = moved.take()
            {
                out.push(media);
            }
            if m.role != Role::Tool || !has_media(m) {
                out.push(m.clone());
                continue;
            }
            let id = m.tool_call_id.as_deref().unwrap_or_default();
            let user = moved.get_or_insert_with(|| Message::user(String::new()));
            if !user.content.is_empty() {
                user.content.push('\n');
            }
            let what = m.media_summary();
            let _ = write!(user.content, "The result of tool call {id} included {what}:");
            let at = u32::try_from(user.content.len()).unwrap_or(u32::MAX);
            for segment in m.segments() {
                match segment {
                    Segment::Text(_) => {}
                    Segment::Image(i) => user.images.push(Image { at, ..i.clone() }),
                    Segment::Document(d) => user.documents.push(Document { at, ..d.clone() }),
                }
            }
            let mut text_only = Message { images: Vec::new(), documents: Vec::new(), ..m.clone() };
            text_only.cache.retain(|b| !matches!(b.at, CacheAt::Image(_) | CacheAt::Document(_)));
            if text_only.content.is_empty() {
                text_only.content = format!("(the result is {what}, in the next user message)");
            }
            out.push(text_only);
        }
        out.extend(moved);
        std::borrow::Cow::Owned(out)
    }

    /// The tool choice, once it is known to be satisfiable: a forced call needs tools, and a
    /// named one must be among them. Every adapter asks here, so each provider refuses the same
    /// requests with the same words (the caller's error: another backend would refuse it too).
    /// A provider's own tools count, by their `name` (forcing Claude Code's web search is
    /// `{"type": "tool", "name": "web_search"}`).
    pub fn checked_tool_choice(&self) -> Result<&ToolChoice, BackendError> {
        let native_name = |name: &str| {
            self.native_tools.iter().any(|t| t.spec.get("name").and_then(|n| n.as_str()) == Some(name))
        };
        match &self.tool_choice {
            ToolChoice::Required if self.tools.is_empty() && self.native_tools.is_empty() => {
                Err(BackendError::invalid("tool_choice `required` needs at least one tool"))
            }
            ToolChoice::Tool(name) if !self.tools.iter().any(|t| &t.name == name) && !native_name(name) => {
                Err(BackendError::invalid(format!(
                    "tool_choice names the tool `{name}`, which is not among the request's tools"
                )))
            }
            choice => Ok(choice),
        }
    }

    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    pub fn with_backend(mut self, name: impl Into<String>) -> Self {
        self.backend = Some(name.into());
        self
    }
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// All text the request sends, for token estimates: messages, and also tool definitions,
    /// tool-call arguments and thinking, which providers bill as input and which are often
    /// most of a coding agent's prompt (a message-text-only figure told Claude Code it had room
    /// it had not, and underestimated the cost of tool-heavy requests).
    pub fn prompt_chars(&self) -> usize {
        let tools: usize =
            self.tools.iter().map(|t| t.name.len() + t.description.len() + json_len(&t.parameters)).sum();
        let turns: usize = self
            .messages
            .iter()
            .map(|m| {
                let calls: usize =
                    m.tool_calls.iter().map(|c| c.name.len() + c.id.len() + json_len(&c.arguments)).sum();
                let thinking: usize = m
                    .thinking
                    .iter()
                    .map(|t| match t {
                        ThinkingBlock::Thinking { thinking, .. } => thinking.len(),
                        ThinkingBlock::Redacted { data } => data.len(),
                    })
                    .sum();
                m.content.len() + 4 + calls + thinking
            })
            .sum();
        let documents: usize =
            self.messages.iter().flat_map(|m| &m.documents).map(|d| d.estimated_tokens() as usize * 4).sum();
        tools + turns + self.image_count() * IMAGE_TOKEN_ESTIMATE as usize * 4 + documents
    }

    /// How many images the request's messages carry.
    pub fn image_count(&self) -> usize {
        self.messages.iter().map(|m| m.images.len()).sum()
    }

    /// Whether any message carries an image or a document: only backends that take images
    /// are tried ([`Document`]).
    pub fn has_media(&self) -> bool {
        self.messages.iter().any(|m| !m.images.is_empty() || !m.documents.is_empty())
    }

    /// The dialect of the request's provider-defined tools and blocks
    /// ([`Self::native_tools`], [`Message::native`]), when it has any: only a backend of that
    /// dialect can take it. A request mixing two dialects is refused, naming both.
    pub fn native_dialect(&self) -> Result<Option<Dialect>, BackendError> {
        let tools = self.native_tools.iter().map(|t| t.dialect);
        let blocks = self.messages.iter().flat_map(|m| m.native.iter().map(|b| b.dialect));
        let fields = self.native_fields.iter().filter(|f| f.required).map(|f| f.dialect);
        let mut found: Option<Dialect> = None;
        for d in tools.chain(blocks).chain(fields) {
            match found {
                Some(f) if f != d => {
                    return Err(BackendError::invalid(format!(
                        "the request mixes {} and {} tools or blocks; no provider takes both",
                        f.provider(),
                        d.provider()
                    )));
                }
                _ => found = Some(d),
            }
        }
        Ok(found)
    }

    /// How many prompt-cache breakpoints the request carries, across tools and messages.
    pub fn cache_breakpoints(&self) -> usize {
        self.tools.iter().filter(|t| t.cache.is_some()).count()
            + self.messages.iter().map(|m| m.cache.len()).sum::<usize>()
    }

    /// Cheap prompt-token estimate (about 4 bytes a token) used for scoring and for usage the
    /// provider did not report. Never billed as if it were reported: see [`UsageSource`].
    pub fn estimated_input_tokens(&self) -> u32 {
        estimate_tokens_from_len(self.prompt_chars())
    }
}

/// The length of `v` as compact JSON, counted without building the text: estimates run for
/// every candidate backend of every request.
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    match v {
        // A string is an adapter's unparsed arguments, sent as they are.
        serde_json::Value::String(s) => s.len(),
        v => serde_json::to_writer(&mut n, v).map_or(0, |()| n.0),
    }
}

/// Rough token count for `len` bytes of text (4 bytes a token, at least 1 for non-empty text).
pub fn estimate_tokens_from_len(len: usize) -> u32 {
    if len == 0 { 0 } else { u32::try_from(len.div_ceil(4)).unwrap_or(u32::MAX) }
}

/// A fresh tool-call id, `call_<n>`, for providers whose tool calls carry none (Ollama's native
/// API, Gemini). Callers need an id to answer a call, and the same conversation may later be
/// replayed to another provider that rejects duplicate ids (Anthropic refuses repeated
/// `tool_use` ids), so `n` never repeats within a process and starts from the clock so two runs
/// rarely hand out the same ids.
pub fn new_tool_call_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .unwrap_or_default()
    });
    format!("call_{}", seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// A sampling parameter (`temperature`, `top_p`) as the JSON number a person would write:
/// `0.7`, not the `0.699999988079071` a plain `f32` to `f64` widening gives, so servers that
/// check ranges or log requests see what was configured. NaN and infinities are a typed
/// invalid-request error naming the parameter.
pub fn json_f32(name: &str, x: f32) -> Result<serde_json::Value, BackendError> {
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    serde_json::Number::from_f64(shortest)
        .map(serde_json::Value::Number)
        .ok_or_else(|| BackendError::invalid(format!("`{name}` must be a finite number, got {x}")))
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// One of the request's stop sequences ended the answer, and the provider said which
    /// (Anthropic's `stop_sequence`). The sequence is not part of the answer text. A provider
    /// that does not say which (OpenAI's `stop` covers both) gives [`FinishReason::Stop`].
    StopSequence(String),
    /// A provider value with no neutral equivalent, kept verbatim.
    Other(String),
}

impl FinishReason {
    pub fn as_str(&self) -> &str {
        match self {
            // OpenAI's word for both ends: clients of that protocol know no other.
            Self::Stop | Self::StopSequence(_) => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::Other(s) => s,
        }
    }

    /// The stop sequence that ended the answer, when the provider said which.
    pub fn stop_sequence(&self) -> Option<&str> {
        match self {
            Self::StopSequence(s) => Some(s),
            _ => None,
        }
    }
}

/// Where a usage figure came from. Billing and dashboards must be able to tell a provider's
/// count from our guess (LiteLLM priced guesses as facts for years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The provider reported these counts.
    Reported,
    /// We estimated them (the provider sent none, e.g. an interrupted stream).
    Estimated,
    /// Nothing known.
    #[default]
    Missing,
}

/// Token usage, normalised across providers.
///
/// `input_tokens` is the *whole* prompt, cache reads and writes included (OpenAI's convention;
/// Anthropic's `input_tokens` excludes them and is summed up by its adapter). `output_tokens`
/// includes `reasoning_tokens`. The splits are subsets, so nothing is ever counted twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(default)]
    pub cache_read_tokens: u32,
    #[serde(default)]
    pub cache_write_tokens: u32,
    #[serde(default)]
    pub reasoning_tokens: u32,
    /// Web searches the provider ran for the answer (Anthropic's
    /// `server_tool_use.web_search_requests`), billed per search on top of the tokens.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub web_search_requests: u32,
    /// The tier that served the answer, which scales every token's price.
    #[serde(default, skip_serializing_if = "ServiceTier::is_standard")]
    pub tier: ServiceTier,
    #[serde(default)]
    pub source: UsageSource,
}

/// The tier of service that answered, as the provider reports it: a provider's fast lane
/// (Anthropic's fast mode, `usage.speed: "fast"`) bills every token at
/// [`Pricing::fast_factor`](crate::Pricing::fast_factor) times its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    #[default]
    Standard,
    Fast,
}

impl ServiceTier {
    pub fn is_standard(&self) -> bool {
        *self == ServiceTier::Standard
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Usage {
    pub fn reported(input: u32, output: u32) -> Self {
        Self { input_tokens: input, output_tokens: output, source: UsageSource::Reported, ..Self::default() }
    }
    pub fn estimated(input: u32, output: u32) -> Self {
        Self { input_tokens: input, output_tokens: output, source: UsageSource::Estimated, ..Self::default() }
    }
    pub fn total_tokens(&self) -> u32 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
    /// Prompt tokens billed at the plain input rate.
    pub fn uncached_input_tokens(&self) -> u32 {
        self.input_tokens.saturating_sub(self.cache_read_tokens).saturating_sub(self.cache_write_tokens)
    }
}

/// One complete answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub content: String,
    /// Reasoning text the provider returned apart from the answer (Qwen `reasoning_content`,
    /// Anthropic thinking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// The reasoning as the provider's blocks, with their signatures (Anthropic), for a
    /// client to send back in its next turn. Empty when the provider has no such blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thinking: Vec<ThinkingBlock>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The order of the answer's blocks when it is not the usual one; see [`Message::order`],
    /// which a client's next turn carries it back in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<BlockKind>,
    /// The provider's own blocks of the answer (server tool calls and their results), placed
    /// by [`Self::order`]; see [`NativeBlock`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native: Vec<NativeBlock>,
    /// The citations of the answer's text blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<TextCitations>,
    /// Top-level fields of the provider's answer in its own terms (Anthropic's `container`,
    /// `context_management`); see [`NativeField`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub native_fields: Vec<NativeField>,
    pub finish_reason: Option<FinishReason>,
    pub usage: Usage,
    /// Model the provider says answered.
    pub model: String,
    /// Backend that answered (set by the backend, kept by the router).
    pub backend: String,
    /// Provider's response id, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Wall time of the successful attempt.
    #[serde(with = "duration_ms")]
    pub latency: Duration,
    /// Cost of this answer in the price table's currency (built-in tables: USD).
    pub cost: f64,
    /// Whether the answer came from a cache.
    #[serde(default)]
    pub cache_hit: bool,
    /// Non-fatal problems the caller should know about (e.g. a prompt the server truncated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why this backend: candidates with their scores and every attempt. Filled by the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<RoutingDecision>,
}

impl ChatResponse {
    /// An empty response for `backend`, for adapters to fill in.
    pub fn empty(backend: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            content: String::new(),
            reasoning: None,
            thinking: Vec::new(),
            tool_calls: Vec::new(),
            order: Vec::new(),
            native: Vec::new(),
            citations: Vec::new(),
            native_fields: Vec::new(),
            finish_reason: None,
            usage: Usage::default(),
            model: model.into(),
            backend: backend.into(),
            id: None,
            latency: Duration::ZERO,
            cost: 0.0,
            cache_hit: false,
            warnings: Vec::new(),
            decision: None,
        }
    }

    /// Holds the answer to `parallel_tool_calls: false` (at most one tool call, OpenAI's
    /// contract) for a provider with no switch for it (Gemini, Ollama): the first call is kept
    /// and the others are dropped. The model asks for them again on its next turn, once it has
    /// seen the first one's result, which is how a client that runs one call per turn works
    /// anyway; refusing the request instead would leave such clients (Codex CLI sends the flag
    /// on every request) with no backend at all. The finish reason stays `ToolCalls`, and usage
    /// and cost stay what the provider reported: the dropped calls were generated and billed.
    /// Returns how many calls were dropped (logged at debug, as a count only).
    pub fn keep_first_tool_call(&mut self) -> usize {
        let dropped = self.tool_calls.len().saturating_sub(1);
        if dropped > 0 {
            self.tool_calls.truncate(1);
            let mut seen = 0;
            self.order.retain(|k| {
                seen += usize::from(*k == BlockKind::ToolCall);
                *k != BlockKind::ToolCall || seen == 1
            });
            log_dropped_tool_calls(&self.backend, dropped);
        }
        dropped
    }

    /// The answer's thinking, text and tool calls as blocks, in [`Self::order`]: see
    /// [`Message::blocks`].
    pub fn blocks(&self) -> Result<Vec<Block<'_>>, BackendError> {
        ordered_blocks(&self.order, &self.thinking, &self.content, &self.tool_calls, &self.native)
    }

    /// Whether the provider paused the turn before its end (Anthropic's `pause_turn`: a long
    /// turn of its server tools, such as many web searches). The turn goes on when it is sent
    /// back as it is ([`Self::to_turn`]) in the next request.
    pub fn is_paused(&self) -> bool {
        matches!(&self.finish_reason, Some(FinishReason::Other(r)) if r == "pause_turn")
    }

    /// The answer as the assistant turn a client sends back: its blocks, their order and
    /// citations, as the provider wrote them.
    pub fn to_turn(&self) -> Message {
        Message {
            tool_calls: self.tool_calls.clone(),
            thinking: self.thinking.clone(),
            order: self.order.clone(),
            native: self.native.clone(),
            citations: self.citations.clone(),
            ..Message::assistant(self.content.clone())
        }
    }

    /// This answer, then `next`: the provider's answer to this one sent back as its turn
    /// after a pause ([`Self::is_paused`]), which goes on with the same turn. One answer, as if
    /// the turn had not paused: the blocks of both in order (text offsets, citations and the
    /// block order of `next` moved past this answer's text), the usage, cost and latency of
    /// both calls added up, and `next`'s stop, model and backend. The decision keeps every
    /// attempt of both.
    pub fn continued_by(mut self, next: ChatResponse) -> ChatResponse {
        let shift = u32::try_from(self.content.len()).unwrap_or(u32::MAX);
        let mut order = turn_order(&self);
        order.extend(turn_order(&next).into_iter().map(|k| match k {
            BlockKind::Text(end) => BlockKind::Text(end.saturating_add(shift)),
            k => k,
        }));
        self.order = order;
        self.content.push_str(&next.content);
        self.thinking.extend(next.thinking);
        self.tool_calls.extend(next.tool_calls);
        self.native.extend(next.native);
        self.citations.extend(
            next.citations.into_iter().map(|c| TextCitations { end: c.end.saturating_add(shift), ..c }),
        );
        self.native_fields.extend(next.native_fields);
        self.reasoning = match (self.reasoning.take(), next.reasoning) {
            (Some(a), Some(b)) => Some(a + &b),
            (a, b) => a.or(b),
        };
        let (a, b) = (self.usage, next.usage);
        self.usage = Usage {
            input_tokens: a.input_tokens.saturating_add(b.input_tokens),
            output_tokens: a.output_tokens.saturating_add(b.output_tokens),
            cache_read_tokens: a.cache_read_tokens.saturating_add(b.cache_read_tokens),
            cache_write_tokens: a.cache_write_tokens.saturating_add(b.cache_write_tokens),
            reasoning_tokens: a.reasoning_tokens.saturating_add(b.reasoning_tokens),
            web_search_requests: a.web_search_requests.saturating_add(b.web_search_requests),
            // Informational once the calls are priced: fast if either call was.
            tier: if b.tier.is_standard() { a.tier } else { b.tier },
            source: if a.source == b.source { a.source } else { UsageSource::Estimated },
        };
        self.cost += next.cost;
        self.latency += next.latency;
        self.finish_reason = next.finish_reason;
        self.model = next.model;
        self.backend = next.backend;
        self.cache_hit = false;
        self.warnings.extend(next.warnings);
        self.decision = match (self.decision.take(), next.decision) {
            (Some(mut first), Some(then)) => {
                first.attempts.extend(then.attempts);
                Some(first)
            }
            (a, b) => a.or(b),
        };
        self
    }

    /// The citations of the text block that ends `end` bytes into the content.
    pub fn citations_at(&self, end: usize) -> &[serde_json::Value] {
        citations_at(&self.citations, end)
    }

    /// The answer's blocks to hand to a client: in [`Self::order`], or in the usual order
    /// (logged) when an adapter gave an order that does not match them. Every item is still
    /// there (provider blocks, which have no usual place, last); refusing an answer already
    /// paid for would be worse than the usual order.
    pub fn blocks_for_client(&self) -> Vec<Block<'_>> {
        self.blocks().unwrap_or_else(|e| {
            tracing::warn!(backend = %self.backend, error = %e, "answer sent in the usual block order");
            let mut blocks =
                ordered_blocks(&[], &self.thinking, &self.content, &self.tool_calls, &[]).unwrap_or_default();
            blocks.extend(self.native.iter().map(Block::Native));
            blocks
        })
    }
}

/// An answer's block order spelt out, the usual one included, so that it still holds with
/// another answer's blocks after it.
fn turn_order(resp: &ChatResponse) -> Vec<BlockKind> {
    if !resp.order.is_empty() {
        return resp.order.clone();
    }
    resp.blocks_for_client()
        .iter()
        .map(|b| match b {
            Block::Thinking(_) => BlockKind::Thinking,
            Block::Text { text, start } => {
                BlockKind::Text(u32::try_from(start + text.len()).unwrap_or(u32::MAX))
            }
            Block::ToolCall { .. } => BlockKind::ToolCall,
            Block::Native(_) => BlockKind::Native,
        })
        .collect()
}

fn citations_at(all: &[TextCitations], end: usize) -> &[serde_json::Value] {
    all.iter().find(|c| c.end as usize == end).map(|c| c.citations.as_slice()).unwrap_or_default()
}

/// A fragment of a tool call in a stream. OpenAI sends the id and name once and the
/// arguments as string fragments keyed by `index`; Anthropic sends `input_json_delta`s; Ollama
/// sends the whole call at once (one delta with everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A fragment of the JSON arguments text; concatenate per `index`.
    #[serde(default)]
    pub arguments: String,
}

/// How a stream ended cleanly: the provider's terminal marker was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEnd {
    pub finish_reason: Option<FinishReason>,
    /// Usage for the whole stream, with its source.
    pub usage: Usage,
    /// Cost of the stream, filled in by the backend from `usage`.
    #[serde(default)]
    pub cost: f64,
}

/// One event of a streamed answer. Every provider yields this same sequence:
/// zero or more content deltas, then exactly one of `Done` (the provider's end marker arrived)
/// or `Error` (anything else: a cut connection, an error event, malformed data). A stream that
/// stops without either is a bug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A piece of answer text.
    TextDelta { text: String },
    /// The text block being streamed ends here: text after it is a block of its own. Sent by
    /// a provider whose answers are blocks (Anthropic), so a client that gets blocks back gets
    /// the same ones from a stream as from a JSON answer (a cited sentence is a block of its
    /// own between uncited ones), and sends back the turn as the provider wrote it. Readers
    /// without blocks pass it by.
    TextEnd,
    /// A piece of reasoning text, kept apart from the answer.
    ReasoningDelta { text: String },
    /// The end of a thinking block: its signature, or a whole redacted block. A client sends
    /// these back in its next turn (Anthropic requires them in a tool loop with thinking on).
    ThinkingSeal { seal: ThinkingSeal },
    /// A piece of a tool call.
    ToolCall { delta: ToolCallDelta },
    /// A provider's own block, whole (a server tool's call or result); see [`NativeBlock`].
    Native { block: NativeBlock },
    /// A citation of the text being streamed (Anthropic's `citations_delta`): it belongs to
    /// the text block the next text extends, or the last one when none follows.
    Citation { citation: serde_json::Value },
    /// A top-level field of the answer in the provider's own terms (Anthropic's `container`
    /// or `context_management`, which come with the stream's end); see [`NativeField`]. Not
    /// content: it may come after the answer's last block.
    NativeField { field: NativeField },
    /// Usage seen mid-stream (Anthropic `message_start`); the final figure is in `Done`.
    Usage { usage: Usage },
    /// Clean end.
    Done { end: StreamEnd },
    /// Terminal failure. Nothing follows it.
    Error { error: BackendError },
}

impl StreamEvent {
    pub fn text(t: impl Into<String>) -> Self {
        Self::TextDelta { text: t.into() }
    }

    /// Content-bearing events commit a routed stream (reliability-spec RT-7): once one has
    /// reached the caller, the router may no longer retry or fail over.
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            Self::TextDelta { .. }
                | Self::ReasoningDelta { .. }
                | Self::ThinkingSeal { .. }
                | Self::ToolCall { .. }
                | Self::Native { .. }
                | Self::Citation { .. }
        )
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Error { .. })
    }
}

/// The stream side of [`ChatResponse::keep_first_tool_call`]: drops the events of every tool
/// call after the first one a stream shows (calls are told apart by their
/// [`ToolCallDelta::index`], since one call may arrive in several deltas), so a provider with no
/// `parallel_tool_calls` switch still gives a `parallel_tool_calls: false` client one call.
/// Every other event passes untouched, the final usage included (the dropped calls were
/// generated and billed). A decoder runs each batch of events it yields through
/// [`retain`](Self::retain); the count of dropped calls is logged at debug when the clean end
/// passes.
#[derive(Debug, Clone)]
pub struct FirstToolCallOnly {
    backend: String,
    /// Index of the call being kept, once one was seen.
    first: Option<u32>,
    /// Indices of the calls dropped so far (a handful at most, so a list, not a set).
    dropped: Vec<u32>,
}

impl FirstToolCallOnly {
    /// The filter a stream of `backend` needs for `request`: one when the request allows at
    /// most one tool call (`parallel_tool_calls: false`), none otherwise.
    pub fn for_request(request: &ChatRequest, backend: &str) -> Option<Self> {
        (request.parallel_tool_calls == Some(false)).then(|| Self {
            backend: backend.to_owned(),
            first: None,
            dropped: Vec::new(),
        })
    }

    /// Removes from `events` the tool-call events of every call but the first.
    pub fn retain(&mut self, events: &mut Vec<StreamEvent>) {
        events.retain(|event| match event {
            StreamEvent::ToolCall { delta } => match self.first {
                None => {
                    self.first = Some(delta.index);
                    true
                }
                Some(first) if first == delta.index => true,
                Some(_) => {
                    if !self.dropped.contains(&delta.index) {
                        self.dropped.push(delta.index);
                    }
                    false
                }
            },
            StreamEvent::Done { .. } => {
                if !self.dropped.is_empty() {
                    log_dropped_tool_calls(&self.backend, self.dropped.len());
                }
                true
            }
            _ => true,
        });
    }

    /// How many calls were dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.len()
    }
}

/// One log line for both paths, with the count only: tool names and arguments are the
/// caller's content.
fn log_dropped_tool_calls(backend: &str, dropped: usize) {
    tracing::debug!(
        backend = %backend,
        dropped,
        "parallel_tool_calls is false: kept the answer's first tool call, dropped the others"
    );
}

/// Serde helper: a `Duration` as whole milliseconds.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A paused search turn and the answer that goes on with it make one answer: the second's
    /// text blocks, citations and order after the first's, both calls' usage and cost, the
    /// second's stop. Sent back, the paused answer is the same turn.
    #[test]
    fn a_paused_turn_and_its_continuation_are_one_answer() {
        let native = |kind: &str| NativeBlock::anthropic(serde_json::json!({"type": kind}));
        let mut first = ChatResponse::empty("claude", "m");
        first.content = "Looking é.".into(); // 11 bytes
        first.native = vec![native("server_tool_use"), native("web_search_tool_result")];
        first.order = vec![BlockKind::Text(11), BlockKind::Native, BlockKind::Native];
        first.finish_reason = Some(FinishReason::Other("pause_turn".into()));
        first.usage = Usage { web_search_requests: 1, ..Usage::reported(100, 10) };
        first.cost = 0.5;
        assert!(first.is_paused());
        let turn = first.to_turn();
        assert_eq!((turn.role, turn.content.as_str(), turn.native.len()), (Role::Assistant, "Looking é.", 2));
        assert_eq!(turn.blocks().unwrap().len(), 3);

        let mut next = ChatResponse::empty("claude", "m2");
        next.content = "Found it.".into();
        next.citations = vec![TextCitations { end: 9, citations: vec![serde_json::json!({"url": "u"})] }];
        next.finish_reason = Some(FinishReason::Stop);
        next.usage = Usage::reported(150, 20);
        next.cost = 0.25;
        let both = first.continued_by(next);
        assert!(!both.is_paused());
        assert_eq!(both.content, "Looking é.Found it.");
        assert_eq!(
            both.order,
            [BlockKind::Text(11), BlockKind::Native, BlockKind::Native, BlockKind::Text(20)]
        );
        assert_eq!(both.citations_at(20), [serde_json::json!({"url": "u"})]);
        assert_eq!(both.blocks().unwrap().len(), 4);
        assert_eq!(
            (both.usage.input_tokens, both.usage.output_tokens, both.usage.web_search_requests),
            (250, 30, 1)
        );
        assert!((both.cost - 0.75).abs() < 1e-12);
        assert_eq!((both.model.as_str(), both.finish_reason), ("m2", Some(FinishReason::Stop)));
    }

    fn url_image(at: u32, url: &str) -> Image {
        Image { at, source: ImageSource::Url { url: url.into() } }
    }

    #[test]
    fn an_assistant_turn_keeps_the_order_of_its_blocks_and_a_wrong_order_is_refused() {
        let call = |id: &str| ToolCall { id: id.into(), name: "f".into(), arguments: serde_json::json!({}) };
        let think = |t: &str| ThinkingBlock::Thinking { thinking: t.into(), signature: "s".into() };
        let turn = |order: Vec<BlockKind>| Message {
            thinking: vec![think("a"), think("b")],
            tool_calls: vec![call("c1"), call("c2")],
            order,
            ..Message::assistant("héllo")
        };
        let shape = |m: &Message| -> Vec<String> {
            m.blocks()
                .unwrap()
                .iter()
                .map(|b| match b {
                    Block::Thinking(ThinkingBlock::Thinking { thinking, .. }) => format!("think {thinking}"),
                    Block::Thinking(_) => "redacted".into(),
                    Block::Text { text, start } => format!("text {text}@{start}"),
                    Block::ToolCall { call, index } => format!("call {}#{index}", call.id),
                    Block::Native(n) => format!("native {}", n.kind()),
                })
                .collect()
        };
        assert_eq!(shape(&turn(vec![])), ["think a", "think b", "text héllo@0", "call c1#0", "call c2#1"]);
        let (th, tc, tx) = (BlockKind::Thinking, BlockKind::ToolCall, BlockKind::Text);
        let interleaved = turn(vec![th, tc, th, tx(3), tx(6), tc]);
        assert_eq!(
            shape(&interleaved),
            ["think a", "call c1#0", "think b", "text hé@0", "text llo@3", "call c2#1"]
        );

        for (order, says) in [
            (vec![th, th, th, tx(6), tc, tc], "more than the turn's 2 thinking"),
            (vec![th, th, tx(6), tc, tc, tc], "more than the turn's 2 tool calls"),
            (vec![th, th, tx(2), tx(6), tc, tc], "byte 2, which does not fall between"),
            (vec![th, th, tx(3), tc, tc], "3 of 6 bytes of text"),
            (vec![th, tx(6), tc, tc], "1 of 2 thinking blocks"),
        ] {
            let e = turn(order).blocks().unwrap_err();
            assert!(e.message.contains(says), "{says}: {e}");
        }

        // Written down as blocks are read; the usual order is not kept.
        let record = |steps: &[BlockKind]| {
            let mut o = BlockOrder::default();
            for s in steps {
                match s {
                    BlockKind::Thinking => o.thinking(),
                    BlockKind::Text(end) => o.text(*end as usize),
                    BlockKind::ToolCall => o.tool_call(),
                    BlockKind::Native => o.native(),
                }
            }
            o.finish()
        };
        assert!(record(&[th, th, tx(6), tc, tc]).is_empty());
        assert!(record(&[tx(6), tc]).is_empty());
        assert!(record(&[th, tx(0), tx(6), tx(6), tc]).is_empty(), "empty text blocks are not kept");
        assert_eq!(record(&[th, tc, th]), [th, tc, th]);
        assert_eq!(record(&[tx(2), th]), [tx(2), th]);

        // A truncated answer drops the calls' places too.
        let mut r = ChatResponse {
            thinking: vec![think("a"), think("b")],
            tool_calls: vec![call("c1"), call("c2")],
            order: vec![th, tc, th, tc],
            ..ChatResponse::empty("b", "m")
        };
        assert_eq!(r.keep_first_tool_call(), 1);
        assert_eq!(r.order, [th, tc, th]);
        assert_eq!(r.blocks().unwrap().len(), 3);
    }

    #[test]
    fn provider_blocks_are_placed_by_the_order_and_a_turn_with_any_keeps_one() {
        let (tx, nat) = (BlockKind::Text, BlockKind::Native);
        let search =
            NativeBlock::anthropic(serde_json::json!({"type": "server_tool_use", "id": "srvtoolu_1"}));
        let results = NativeBlock::anthropic(serde_json::json!({"type": "web_search_tool_result"}));
        let turn = Message {
            native: vec![search.clone(), results.clone()],
            order: vec![tx(4), nat, nat, tx(10)],
            citations: vec![TextCitations { end: 10, citations: vec![serde_json::json!({"url": "u"})] }],
            ..Message::assistant("Let mesaid")
        };
        let kinds: Vec<String> = turn
            .blocks()
            .unwrap()
            .iter()
            .map(|b| match b {
                Block::Text { text, .. } => text.to_string(),
                Block::Native(n) => n.kind().to_owned(),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(kinds, ["Let ", "server_tool_use", "web_search_tool_result", "mesaid"]);
        assert_eq!(turn.citations_at(10), [serde_json::json!({"url": "u"})]);
        assert!(turn.citations_at(4).is_empty());

        // Too few or too many places, or none at all, is refused, naming the provider blocks.
        for order in [vec![tx(4), nat, tx(10)], vec![tx(4), nat, nat, nat, tx(10)], vec![]] {
            let e = Message { order, ..turn.clone() }.blocks().unwrap_err();
            assert!(e.message.contains("provider block"), "{e}");
        }
        // Written down from events or blocks, an order with a provider block is always kept.
        let mut o = BlockOrder::default();
        o.native();
        o.text(3);
        assert_eq!(o.finish(), [nat, tx(3)]);
        let mut s = StreamBlockOrder::default();
        s.text("abc");
        s.native();
        s.text("de");
        assert_eq!(s.finish(false), [tx(3), nat, tx(5)]);
        // A provider that ends its text blocks keeps them apart in a stream too.
        let mut s = StreamBlockOrder::default();
        s.text("ab");
        s.text_end();
        s.text_end();
        s.text("cd");
        s.native();
        assert_eq!(s.finish(false), [tx(2), tx(4), nat]);

        // An answer whose order does not fit still gives every block to the client.
        let r = ChatResponse { native: vec![search], content: "hi".into(), ..ChatResponse::empty("b", "m") };
        assert!(r.blocks().is_err());
        assert!(matches!(r.blocks_for_client()[..], [Block::Text { .. }, Block::Native(_)]));
    }

    #[test]
    fn native_dialect_is_the_requests_and_answers_with_native_parts_are_not_cached() {
        let mut r = ChatRequest::prompt("what is new?");
        assert_eq!(r.native_dialect().unwrap(), None);
        let key = crate::CacheKey::of(&r);
        assert!(key.is_some());
        r.native_tools.push(NativeTool {
            dialect: Dialect::Anthropic,
            at: 0,
            spec: serde_json::json!({"type": "web_search_20250305", "name": "web_search"}),
        });
        assert_eq!(r.native_dialect().unwrap(), Some(Dialect::Anthropic));
        assert!(crate::CacheKey::of(&r).is_none(), "a web search is not a function of the request");
        r.native_tools.clear();
        r.messages.insert(
            0,
            Message {
                native: vec![NativeBlock::anthropic(serde_json::json!({"type": "web_search_tool_result"}))],
                order: vec![BlockKind::Native],
                ..Message::assistant("")
            },
        );
        assert_eq!(r.native_dialect().unwrap(), Some(Dialect::Anthropic));
        assert_ne!(crate::CacheKey::of(&r), key, "the history's blocks are part of the key");

        // A native field keeps the request to its dialect only when another provider cannot
        // do without it; an optional one is part of the key, a required one leaves none.
        let field = |name: &str, required: bool| NativeField {
            dialect: Dialect::Anthropic,
            name: name.into(),
            value: serde_json::json!({}),
            required,
        };
        let mut plain = ChatRequest::prompt("what is new?");
        plain.native_fields.push(field("context_management", false));
        assert_eq!(plain.native_dialect().unwrap(), None);
        assert!(crate::CacheKey::of(&plain).is_some_and(|k| Some(k) != key));
        plain.native_fields.push(field("mcp_servers", true));
        assert_eq!(plain.native_dialect().unwrap(), Some(Dialect::Anthropic));
        assert!(crate::CacheKey::of(&plain).is_none());

        // An MCP server's token never shows in a printed request.
        plain.native_fields[1].value = serde_json::json!([{"type": "url", "url": "https://mcp.example/sse",
            "name": "docs", "authorization_token": "sk-canary-mcp-0123456789"}]);
        let shown = format!("{plain:?}");
        assert!(
            !shown.contains("canary") && shown.contains("REDACTED") && shown.contains("mcp.example"),
            "{shown}"
        );

        let answer =
            ChatResponse { finish_reason: Some(FinishReason::Stop), ..ChatResponse::empty("b", "m") };
        assert!(crate::cache::is_cacheable(&answer));
        let cited = ChatResponse {
            citations: vec![TextCitations { end: 0, citations: vec![serde_json::json!({})] }],
            ..answer.clone()
        };
        assert!(!crate::cache::is_cacheable(&cited));
        let native = ChatResponse { native: vec![NativeBlock::anthropic(serde_json::json!({}))], ..answer };
        assert!(!crate::cache::is_cacheable(&native));
    }

    #[test]
    fn images_are_taken_in_user_and_tool_messages_only_and_image_marks_must_name_one() {
        let with_images = |m: Message| Message { images: vec![url_image(0, "https://x/a.png")], ..m };
        let ok = ChatRequest::new(vec![
            with_images(Message::user("look")),
            Message { tool_calls: vec![], ..Message::assistant("") },
            with_images(Message::tool_result("c1", "")),
        ]);
        ok.checked_media().unwrap();
        for m in [Message::system("s"), Message::assistant("a")] {
            let e = ChatRequest::new(vec![with_images(m)]).checked_media().unwrap_err();
            assert!(e.message.contains("images can only be sent in a user message or a tool result"), "{e}");
        }
        let mark = |i| CacheBreakpoint { at: CacheAt::Image(i), ttl: CacheTtl::FiveMinutes };
        let marked =
            |i| ChatRequest::new(vec![Message { cache: vec![mark(i)], ..with_images(Message::user("x")) }]);
        marked(0).checked_media().unwrap();
        let doc = Document {
            citations: false,
            at: 0,
            source: DocumentSource::Base64 { data: "JVBE".into() },
            title: None,
        };
        let e = ChatRequest::new(vec![Message { documents: vec![doc.clone()], ..Message::assistant("a") }])
            .checked_media()
            .unwrap_err();
        assert!(e.message.contains("documents can only be sent in a user message or a tool result"), "{e}");
        let doc_mark = |i| CacheBreakpoint { at: CacheAt::Document(i), ttl: CacheTtl::FiveMinutes };
        let with_doc = |i| Message {
            documents: vec![doc.clone()],
            cache: vec![doc_mark(i)],
            ..Message::tool_result("c", "")
        };
        ChatRequest::new(vec![with_doc(0)]).checked_media().unwrap();
        let e = ChatRequest::new(vec![with_doc(3)]).checked_media().unwrap_err();
        assert!(e.message.contains("after document 3, but the message has 1 document(s)"), "{e}");
        let e = marked(1).checked_media().unwrap_err();
        assert!(e.message.contains("after image 1, but the message has 1 image"), "{e}");
    }

    #[test]
    fn tool_result_images_move_to_one_user_message_after_the_run() {
        let plain = ChatRequest::prompt("hi");
        assert!(matches!(plain.messages_with_tool_media_moved(), std::borrow::Cow::Borrowed(_)));

        let call =
            |id: &str| ToolCall { id: id.into(), name: "shot".into(), arguments: serde_json::json!({}) };
        let request = ChatRequest::new(vec![
            Message::user("take two screenshots"),
            Message { tool_calls: vec![call("c1"), call("c2"), call("c3")], ..Message::assistant("") },
            Message {
                images: vec![url_image(0, "https://x/1.png"), url_image(4, "https://x/2.png")],
                cache: vec![
                    CacheBreakpoint { at: CacheAt::Image(1), ttl: CacheTtl::FiveMinutes },
                    CacheBreakpoint { at: CacheAt::Text(4), ttl: CacheTtl::FiveMinutes },
                ],
                ..Message::tool_result("c1", "done")
            },
            Message::tool_result("c2", "no image"),
            Message {
                images: vec![url_image(0, "https://x/3.png")],
                documents: vec![Document {
                    citations: false,
                    at: 0,
                    source: DocumentSource::Url { url: "https://x/report.pdf".into() },
                    title: Some("report.pdf".into()),
                }],
                cache: vec![CacheBreakpoint { at: CacheAt::Document(0), ttl: CacheTtl::FiveMinutes }],
                ..Message::tool_result("c3", "")
            },
            Message::assistant("both taken"),
        ]);
        let moved = request.messages_with_tool_media_moved();
        let roles: Vec<Role> = moved.iter().map(|m| m.role).collect();
        use Role::*;
        assert_eq!(roles, [User, Assistant, Tool, Tool, Tool, User, Assistant]);
        assert!(moved[2..5].iter().all(|m| m.images.is_empty() && m.documents.is_empty()));
        assert!(moved[4].cache.is_empty());
        assert_eq!(moved[2].content, "done");
        assert_eq!(moved[2].cache, [CacheBreakpoint { at: CacheAt::Text(4), ttl: CacheTtl::FiveMinutes }]);
        assert_eq!(moved[4].content, "(the result is 1 image and 1 document, in the next user message)");
        let user = &moved[5];
        assert_eq!(user.documents[0].title.as_deref(), Some("report.pdf"));
        let order: Vec<String> = user
            .segments()
            .map(|s| match s {
                Segment::Text(t) => t.to_owned(),
                Segment::Image(Image { source: ImageSource::Url { url }, .. }) => url.clone(),
                Segment::Document(Document { source: DocumentSource::Url { url }, .. }) => url.clone(),
                Segment::Image(_) | Segment::Document(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            order,
            [
                "The result of tool call c1 included 2 images:",
                "https://x/1.png",
                "https://x/2.png",
                "\nThe result of tool call c3 included 1 image and 1 document:",
                "https://x/3.png",
                "https://x/report.pdf",
            ]
        );
        // A conversation ending in the results carries their images too.
        let ending = ChatRequest::new(request.messages[..5].to_vec());
        assert_eq!(ending.messages_with_tool_media_moved().last().unwrap().images.len(), 3);
    }

    #[test]
    fn segments_put_text_and_images_back_in_the_clients_order() {
        let image = |at: u32, url: &str| Image { at, source: ImageSource::Url { url: url.into() } };
        let text_of = |m: &Message| {
            m.segments()
                .map(|s| match s {
                    Segment::Text(t) => format!("[{t}]"),
                    Segment::Image(Image { source: ImageSource::Url { url }, .. }) => format!("<{url}>"),
                    Segment::Image(_) => "<b64>".into(),
                    Segment::Document(Document { source: DocumentSource::Url { url }, .. }) => {
                        format!("{{{url}}}")
                    }
                    Segment::Document(_) => "{pdf}".into(),
                })
                .collect::<String>()
        };
        let m = |content: &str, images: Vec<Image>| Message { images, ..Message::user(content) };
        assert_eq!(text_of(&m("hello", vec![])), "[hello]");
        assert_eq!(text_of(&m("", vec![])), "");
        assert_eq!(text_of(&m("", vec![image(0, "a")])), "<a>");
        assert_eq!(
            text_of(&m("ab", vec![image(0, "x"), image(1, "y"), image(1, "z"), image(2, "w")])),
            "<x>[a]<y><z>[b]<w>"
        );
        // Past the end, or inside a character: the next boundary, never a panic.
        assert_eq!(text_of(&m("é!", vec![image(1, "in"), image(99, "end")])), "[é]<in>[!]<end>");
        // Documents stand among them; images first at one offset.
        let doc = |at: u32, url: &str| Document {
            citations: false,
            at,
            source: DocumentSource::Url { url: url.into() },
            title: None,
        };
        let with_docs = |content: &str, images: Vec<Image>, documents: Vec<Document>| Message {
            images,
            documents,
            ..Message::user(content)
        };
        assert_eq!(
            text_of(&with_docs(
                "ab",
                vec![image(1, "y"), image(2, "w")],
                vec![doc(0, "p"), doc(1, "q"), doc(9, "r")]
            )),
            "{p}[a]<y>{q}[b]<w>{r}"
        );
        assert_eq!(text_of(&with_docs("", vec![], vec![doc(0, "p")])), "{p}");
        // Images count in estimates.
        let r = ChatRequest {
            messages: vec![m("hi", vec![image(0, "a"), image(2, "b")])],
            ..ChatRequest::default()
        };
        assert_eq!(r.image_count(), 2);
        assert!(r.estimated_input_tokens() >= 2 * IMAGE_TOKEN_ESTIMATE);
        assert!(crate::tokens::estimate_request_tokens(&r) >= 2 * IMAGE_TOKEN_ESTIMATE);
        // Documents too: a page per 50 KB of PDF, ten for a URL.
        let pdf = |data: &str| Document {
            citations: false,
            at: 0,
            source: DocumentSource::Base64 { data: data.into() },
            title: None,
        };
        assert_eq!(pdf("JVBERi0=").estimated_tokens(), DOCUMENT_PAGE_TOKEN_ESTIMATE);
        assert_eq!(pdf(&"A".repeat(200_000)).estimated_tokens(), 3 * DOCUMENT_PAGE_TOKEN_ESTIMATE);
        assert_eq!(doc(0, "u").estimated_tokens(), DOCUMENT_URL_PAGES * DOCUMENT_PAGE_TOKEN_ESTIMATE);
        let r = ChatRequest {
            messages: vec![with_docs("hi", vec![], vec![doc(0, "u")])],
            ..ChatRequest::default()
        };
        assert!(r.has_media());
        assert!(r.estimated_input_tokens() >= DOCUMENT_URL_PAGES * DOCUMENT_PAGE_TOKEN_ESTIMATE);
        assert!(!ChatRequest::prompt("x").has_media());
        // Text-only messages serialise as before.
        assert!(!serde_json::to_string(&Message::user("x")).unwrap().contains("images"));
        assert!(!serde_json::to_string(&Message::user("x")).unwrap().contains("documents"));
    }

    #[test]
    fn prompt_shorthand_is_one_user_message() {
        let r = ChatRequest::prompt("hi");
        assert_eq!(r.messages, vec![Message::user("hi")]);
    }

    #[test]
    fn tool_choice_serde_and_checks() {
        let tool = ToolSpec {
            name: "f".into(),
            description: String::new(),
            parameters: serde_json::json!({}),
            cache: None,
            strict: false,
        };
        let with =
            |tool_choice| ChatRequest { tools: vec![tool.clone()], tool_choice, ..ChatRequest::prompt("x") };
        // Auto is the absence of a choice, on the wire and in JSON.
        assert!(serde_json::to_value(ChatRequest::prompt("x")).unwrap().get("tool_choice").is_none());
        let named = with(ToolChoice::Tool("f".into()));
        let v = serde_json::to_value(&named).unwrap();
        assert_eq!(v["tool_choice"], serde_json::json!({"type": "tool", "name": "f"}));
        assert_eq!(serde_json::from_value::<ChatRequest>(v).unwrap(), named);
        assert_eq!(
            serde_json::to_value(ToolChoice::Required).unwrap(),
            serde_json::json!({"type": "required"})
        );

        assert_eq!(named.checked_tool_choice().unwrap(), &ToolChoice::Tool("f".into()));
        assert_eq!(with(ToolChoice::Required).checked_tool_choice().unwrap(), &ToolChoice::Required);
        let e = with(ToolChoice::Tool("g".into())).checked_tool_choice().unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidRequest);
        assert!(e.message.contains("`g`"), "{e}");
        let bare = ChatRequest { tool_choice: ToolChoice::Required, ..ChatRequest::prompt("x") };
        assert_eq!(bare.checked_tool_choice().unwrap_err().kind, crate::ErrorKind::InvalidRequest);
        // "No call" with no tools is already true.
        let none = ChatRequest { tool_choice: ToolChoice::None, ..ChatRequest::prompt("x") };
        assert_eq!(none.checked_tool_choice().unwrap(), &ToolChoice::None);
    }

    #[test]
    fn tool_strict_is_written_only_when_set() {
        let plain = ToolSpec { name: "f".into(), parameters: serde_json::json!({}), ..ToolSpec::default() };
        let v = serde_json::to_value(&plain).unwrap();
        assert_eq!(v, serde_json::json!({"name": "f", "description": "", "parameters": {}}));
        assert_eq!(serde_json::from_value::<ToolSpec>(v).unwrap(), plain);
        let strict = ToolSpec { strict: true, ..plain };
        let v = serde_json::to_value(&strict).unwrap();
        assert_eq!(v["strict"], true);
        assert_eq!(serde_json::from_value::<ToolSpec>(v).unwrap(), strict);
    }

    #[test]
    fn response_format_is_absent_when_text_and_tagged_otherwise() {
        assert!(serde_json::to_value(ChatRequest::prompt("x")).unwrap().get("response_format").is_none());
        let r = ChatRequest {
            response_format: ResponseFormat::JsonSchema {
                name: "a".into(),
                schema: serde_json::json!({"type": "object"}),
                strict: true,
            },
            ..ChatRequest::prompt("x")
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["response_format"],
            serde_json::json!({"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": true})
        );
        assert_eq!(serde_json::from_value::<ChatRequest>(v).unwrap(), r);
    }

    #[test]
    fn usage_splits_are_subsets() {
        let u = Usage {
            input_tokens: 100,
            cache_read_tokens: 60,
            cache_write_tokens: 10,
            ..Usage::reported(100, 5)
        };
        assert_eq!(u.uncached_input_tokens(), 30);
        assert_eq!(u.total_tokens(), 105);
    }

    #[test]
    fn sampling_floats_keep_their_decimal_form() {
        assert_eq!(json_f32("t", 0.7).unwrap().to_string(), "0.7");
        assert_eq!(json_f32("t", 1.0).unwrap().to_string(), "1.0");
        assert!(json_f32("t", f32::NAN).is_err());
    }

    #[test]
    fn tool_arguments_normalise_to_objects() {
        use serde_json::json;
        assert_eq!(normalize_tool_arguments(&json!({"a": 1})), json!({"a": 1}));
        assert_eq!(normalize_tool_arguments(&json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(normalize_tool_arguments(&json!(" ")), json!({}));
        assert_eq!(normalize_tool_arguments(&serde_json::Value::Null), json!({}));
        assert_eq!(normalize_tool_arguments(&json!("{\"a\": tru")), json!({"value": "{\"a\": tru"}));
        assert_eq!(normalize_tool_arguments(&json!([1])), json!({"value": [1]}));
    }

    #[test]
    fn tool_call_ids_are_unique() {
        let a = new_tool_call_id();
        let b = new_tool_call_id();
        assert!(a.starts_with("call_") && b.starts_with("call_"));
        assert_ne!(a, b);
    }

    #[test]
    fn new_knobs_are_absent_unless_set_and_round_trip() {
        let plain = serde_json::to_value(ChatRequest::prompt("x")).unwrap();
        for key in ["top_k", "seed", "parallel_tool_calls"] {
            assert!(plain.get(key).is_none(), "{key} in {plain}");
        }
        assert!(plain["messages"][0].get("is_error").is_none());
        let r = ChatRequest {
            top_k: Some(40),
            seed: Some(-7),
            parallel_tool_calls: Some(false),
            messages: vec![Message::tool_error("c1", "no such file")],
            ..ChatRequest::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!((v["top_k"].as_u64(), v["seed"].as_i64()), (Some(40), Some(-7)));
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(v["messages"][0]["is_error"], true);
        assert_eq!(serde_json::from_value::<ChatRequest>(v).unwrap(), r);
    }

    #[test]
    fn a_failed_tool_result_says_so_in_text_only_where_asked() {
        assert_eq!(Message::tool_error("c", "boom").tool_result_text(), "Error: boom");
        assert_eq!(Message::tool_error("c", "").tool_result_text(), "Error");
        assert_eq!(Message::tool_result("c", "42").tool_result_text(), "42");
        // The flag means nothing outside a tool result.
        let odd = Message { is_error: true, ..Message::user("hi") };
        assert_eq!(odd.tool_result_text(), "hi");
    }

    #[test]
    fn a_matched_stop_sequence_is_stop_to_openai_clients() {
        let f = FinishReason::StopSequence("END".into());
        assert_eq!(f.as_str(), "stop");
        assert_eq!(f.stop_sequence(), Some("END"));
        assert_eq!(FinishReason::Stop.stop_sequence(), None);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v, serde_json::json!({"stop_sequence": "END"}));
        assert_eq!(serde_json::from_value::<FinishReason>(v).unwrap(), f);
    }

    #[test]
    fn thinking_forms_convert_honestly() {
        use ReasoningEffort::*;
        let effort = |effort| Thinking::Effort { effort };
        // Wire names, both ways, for every level.
        for e in ReasoningEffort::ALL {
            assert_eq!(ReasoningEffort::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), serde_json::json!(e.as_str()));
        }
        assert_eq!(ReasoningEffort::parse("extreme"), None);
        assert_eq!(ReasoningEffort::parse_openai("xhigh"), Some(XHigh));
        assert_eq!((ReasoningEffort::parse("max"), ReasoningEffort::parse_openai("max")), (Some(Max), None));
        assert_eq!(
            serde_json::to_value(Thinking::Adaptive).unwrap(),
            serde_json::json!({"type": "adaptive"})
        );
        let r = ChatRequest {
            thinking: Some(Thinking::Adaptive),
            output_effort: Some(XHigh),
            ..ChatRequest::prompt("x")
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["output_effort"], "xhigh");
        assert_eq!(serde_json::from_value::<ChatRequest>(v).unwrap(), r);
        assert!(serde_json::to_value(ChatRequest::prompt("x")).unwrap().get("output_effort").is_none());

        // Adaptive is on, with neither a budget nor a level of its own.
        assert!(Thinking::Adaptive.is_enabled());
        assert_eq!((Thinking::Adaptive.budget_tokens(), Thinking::Adaptive.effort()), (None, None));
        assert_eq!(effort(XHigh).budget_tokens(), Some(32_768));
        assert_eq!(effort(Max).budget_tokens(), Some(32_768));
        // Levels up to high survive a trip through a budget; above it, a budget reads as high.
        for e in [Low, Medium, High] {
            assert_eq!(
                Thinking::Budget { budget_tokens: effort(e).budget_tokens().unwrap() }.effort(),
                Some(e)
            );
        }
        assert_eq!(Thinking::Budget { budget_tokens: 32_768 }.effort(), Some(High));
        assert_eq!(effort(Max).effort(), Some(Max));
        for off in [Thinking::Disabled, effort(Off), Thinking::Budget { budget_tokens: 0 }] {
            assert!(!off.is_enabled(), "{off:?}");
            assert_eq!(off.effort(), Some(Off));
        }
        assert!(effort(Minimal).is_enabled() && Thinking::Budget { budget_tokens: 1 }.is_enabled());
    }

    fn call(id: &str) -> ToolCall {
        ToolCall { id: id.into(), name: "lookup".into(), arguments: serde_json::json!({"q": id}) }
    }

    #[test]
    fn an_answer_limited_to_one_tool_call_keeps_the_first() {
        let mut r = ChatResponse::empty("b", "m");
        r.tool_calls = vec![call("a"), call("b"), call("c")];
        r.finish_reason = Some(FinishReason::ToolCalls);
        r.usage = Usage::reported(10, 30);
        r.cost = 0.5;
        assert_eq!(r.keep_first_tool_call(), 2);
        assert_eq!(r.tool_calls, vec![call("a")]);
        // What the provider reported stays: the dropped calls were generated and billed.
        assert_eq!(
            (r.finish_reason.clone(), r.usage, r.cost),
            (Some(FinishReason::ToolCalls), Usage::reported(10, 30), 0.5)
        );
        // One call or none: nothing to drop.
        assert_eq!(r.keep_first_tool_call(), 0);
        assert_eq!(r.tool_calls.len(), 1);
        let mut none = ChatResponse::empty("b", "m");
        assert_eq!(none.keep_first_tool_call(), 0);
        assert!(none.tool_calls.is_empty());
    }

    #[test]
    fn a_stream_limited_to_one_tool_call_keeps_every_delta_of_the_first() {
        let delta = |index: u32, arguments: &str| StreamEvent::ToolCall {
            delta: ToolCallDelta { index, id: None, name: None, arguments: arguments.into() },
        };
        let done = StreamEvent::Done {
            end: StreamEnd {
                finish_reason: Some(FinishReason::ToolCalls),
                usage: Usage::reported(10, 30),
                cost: 0.0,
            },
        };
        let only = |parallel| {
            let request = ChatRequest { parallel_tool_calls: parallel, ..ChatRequest::prompt("x") };
            FirstToolCallOnly::for_request(&request, "b")
        };
        assert!(only(None).is_none() && only(Some(true)).is_none());
        let mut filter = only(Some(false)).unwrap();
        // Batches as a decoder yields them: the first call in pieces, interleaved with a second
        // and a third (several deltas each), text around them.
        let mut first = vec![StreamEvent::text("hm"), delta(0, "{\"q\":"), delta(1, "{")];
        filter.retain(&mut first);
        assert_eq!(first, vec![StreamEvent::text("hm"), delta(0, "{\"q\":")]);
        let mut second =
            vec![delta(1, "}"), delta(0, "1}"), delta(2, "{}"), StreamEvent::text("."), done.clone()];
        filter.retain(&mut second);
        assert_eq!(second, vec![delta(0, "1}"), StreamEvent::text("."), done]);
        assert_eq!(filter.dropped(), 2);

        // The first call is the first one seen, whatever its index.
        let mut filter = only(Some(false)).unwrap();
        let mut events = vec![delta(3, "{}"), delta(0, "{}")];
        filter.retain(&mut events);
        assert_eq!(events, vec![delta(3, "{}")]);
        assert_eq!(filter.dropped(), 1);
    }

    #[test]
    fn content_events_commit_streams() {
        assert!(StreamEvent::text("a").is_content());
        assert!(!StreamEvent::Usage { usage: Usage::default() }.is_content());
    }
}
