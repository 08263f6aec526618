//! # claudette-anthropic
//!
//! The Anthropic Messages API (`POST {base_url}/v1/messages`) as a Claudette provider, named
//! `anthropic` in the registry. It also drives servers that speak the same protocol: LiteLLM's
//! `/v1/messages`, llama.cpp's `llama-server`, DashScope's Anthropic-compatible endpoint.
//!
//! [`Backend::count_tokens`](claudette_core::Backend::count_tokens) is Anthropic's free
//! `POST {base_url}/v1/messages/count_tokens`, sent the message body's prompt (no `max_tokens`,
//! sampling knobs or `stream`, which that endpoint refuses).
//!
//! The provider is a sans-IO [`AnthropicAdapter`]: request bodies, response parsing, stream
//! decoding and error classification are pure functions, tested on recorded bytes.
//! With the default `http` feature, [`ClaudeBackend`] is that adapter inside
//! `claudette-http`'s `HttpBackend`, and [`backend`] builds one from settings.
//!
//! ## Settings
//!
//! Common keys of [`BackendSettings`] plus these `extra` keys (any other key is an error, so a
//! typo does not silently fall back to a default):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `model` | `claude-haiku-4-5` | model id sent when the request names none |
//! | `base_url` | `https://api.anthropic.com` | API root; a trailing `/v1` is accepted |
//! | `api_key` | – | sent as `x-api-key`; required for `api.anthropic.com` |
//! | `anthropic_version` | `2023-06-01` | `anthropic-version` header |
//! | `anthropic_beta` | – | `anthropic-beta` flags (a string or a list), sent with those the request's tools and fields need and those the client asked for ([`ChatRequest::native_flags`]) |
//! | `default_max_tokens` | 4096 | `max_tokens` when the request sets none (Anthropic requires it) |
//! | `context_window` | 200000 for Claude models | largest prompt + output, for routing |
//! | `backend_type` | `self_hosted` on loopback, else `cloud` | for routing and reports |
//!
//! Prices come from a built-in table (see [`pricing`]) unless `pricing` is set; cache writes
//! are billed at 1.25× and cache reads at 0.1× the input rate, a prompt over 200,000 input
//! tokens at 2× input and 1.5× output, and an answer served in fast mode (`usage.speed`) at 6×.
//!
//! ## Anthropic's own tools
//!
//! The tools Anthropic defines ([`ChatRequest::native_tools`]: web search, web fetch, code
//! execution, computer use, memory, …) go into `tools` as the client wrote them, each where it
//! stood among the function tools, since tools open the cached prompt prefix; `tool_choice`
//! may name one. Those still in beta bring their `anthropic-beta` flag (web fetch
//! `web-fetch-2025-09-10`, code execution `code-execution-2025-05-22` /
//! `code-execution-2025-08-25`, computer use `computer-use-…`, memory
//! `context-management-2025-06-27`); web search needs none. A tool this crate does not know
//! gets no flag: add it with `anthropic_beta`.
//!
//! The blocks Anthropic answers with for them (`server_tool_use`, `web_search_tool_result`,
//! `web_fetch_tool_result`, `code_execution_tool_result`, `mcp_tool_use`, `mcp_tool_result`,
//! and any it adds later) come back whole as [`ChatResponse::native`] blocks in their place,
//! and a stream's as one [`StreamEvent::Native`] each at the block's end (a call's input put
//! together from its fragments). A text block's `citations` are
//! [`ChatResponse::citations`], and [`StreamEvent::Citation`]s in a stream. An assistant
//! turn sends all of them back unchanged. `stop_reason: "pause_turn"` (Anthropic paused a
//! long server-tool turn; the client sends it back to go on) is
//! [`FinishReason::Other`]`("pause_turn")`.
//!
//! The searches (`usage.server_tool_use.web_search_requests`) are
//! [`Usage::web_search_requests`], billed at the price's `web_search_per_1k`
//! ([`Pricing`](claudette_core::Pricing); $10 per 1,000 for Claude models and as the default
//! of a configured `pricing`) on top of the tokens.
//!
//! [`ChatRequest::native_flags`]: claudette_core::ChatRequest::native_flags
//! [`ChatRequest::native_tools`]: claudette_core::ChatRequest::native_tools
//! [`ChatResponse::native`]: claudette_core::ChatResponse::native
//! [`ChatResponse::citations`]: claudette_core::ChatResponse::citations
//! [`ChatResponse::cost`]: claudette_core::ChatResponse::cost
//! [`StreamEvent::Native`]: claudette_core::StreamEvent::Native
//! [`StreamEvent::Citation`]: claudette_core::StreamEvent::Citation
//! [`StreamEnd::cost`]: claudette_core::StreamEnd::cost
//! [`FinishReason::Other`]: claudette_core::FinishReason::Other
//! [`Usage::web_search_requests`]: claudette_core::Usage::web_search_requests
//!
//! ## Anthropic's own fields
//!
//! The request's Anthropic fields ([`ChatRequest::native_fields`]: Claude Code's
//! `context_management`, the code execution `container`, the MCP connector's `mcp_servers`,
//! `service_tier`, …) are top-level keys of the body as the client wrote them; a count sends
//! those its endpoint takes (`context_management`, `mcp_servers`). One named like a key the
//! adapter writes (`model`, `messages`, `stream`, …) is refused, never sent in its place. They
//! bring their flags: `context-management-2025-06-27` (and `compact-2026-01-12` for a
//! compaction edit), `mcp-client-2025-11-20` with an `mcp_toolset` tool else
//! `mcp-client-2025-04-04`, and for a container with `skills` `code-execution-2025-08-25` and
//! `skills-2025-10-02`. The answer's `container` (whose id the next turn names to work in it
//! again) and `context_management` (the edits applied) come back as
//! [`ChatResponse::native_fields`], and as [`StreamEvent::NativeField`]s just before a
//! stream's `Done`.
//!
//! [`ChatRequest::native_fields`]: claudette_core::ChatRequest::native_fields
//! [`ChatResponse::native_fields`]: claudette_core::ChatResponse::native_fields
//! [`StreamEvent::NativeField`]: claudette_core::StreamEvent::NativeField
//!
//! ## Usage accounting
//!
//! Anthropic's `input_tokens` excludes cached tokens. [`claudette_core::Usage::input_tokens`]
//! is the whole prompt, so this provider reports `input + cache_creation + cache_read` there,
//! with `cache_write_tokens = cache_creation` and `cache_read_tokens = cache_read` as subsets.
//! Costs are computed per class, so nothing is billed twice.

mod adapter;
mod error;
pub mod pricing;
mod request;
mod response;
mod stream;
mod wire;

pub use adapter::{
    AnthropicAdapter, DEFAULT_ANTHROPIC_VERSION, DEFAULT_BASE_URL, DEFAULT_MAX_TOKENS, DEFAULT_MODEL,
    EXTRA_KEYS, PROVIDER,
};
use claudette_core::{BackendError, BackendSettings};
pub use stream::AnthropicStreamDecoder;

#[cfg(feature = "http")]
claudette_http::http_provider! {
    /// The Anthropic provider as a ready [`claudette_core::Backend`] (the seeds' `ClaudeBackend`).
    pub type ClaudeBackend = AnthropicAdapter;
    /// Builds a [`ClaudeBackend`] from settings, checking them first.
    pub fn backend;
    register("anthropic", "Anthropic Messages API (and compatible servers)");
}

/// Builds the adapter alone, for a sans-IO host (a plugin, or a test on recorded bytes).
pub fn adapter(settings: &BackendSettings) -> Result<AnthropicAdapter, BackendError> {
    AnthropicAdapter::new(settings)
}

// The cdylib plugin build (`cargo xtask plugins`): the sans-IO adapter behind the stable ABI of
// `claudette-plugin`; the host drives it with its own `HttpBackend`.
// A plugin is sans-IO (the host does the I/O), and its exported root-module symbol may exist
// once per binary: linking two crates built with `plugin` fails at link time.
#[cfg(all(feature = "plugin", feature = "http"))]
compile_error!(
    "feature `plugin` is for the sans-IO cdylib build: use `--no-default-features --features plugin` (`cargo xtask plugins`)"
);
#[cfg(feature = "plugin")]
claudette_plugin::export_plugin!(
    name = "anthropic",
    description = "Anthropic Messages API (and compatible servers)",
    ctor = AnthropicAdapter::new
);
