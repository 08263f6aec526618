//! # claudette-qwen
//!
//! Self-hosted Qwen on OpenAI-compatible servers (vLLM, llama.cpp `llama-server`, SGLang,
//! llama-cpp-python) as a Claudette provider: the seeds' `AdaptiveQwenBackend`.
//!
//! The wire protocol is not reimplemented here: [`QwenAdapter`] wraps
//! [`claudette_openai::OpenAiAdapter`] (built with provider `qwen` and self-hosted defaults)
//! and adds what a self-hosted box needs on top:
//!
//! - **Adaptive timeouts** ([`AdaptiveTimeout`]): the deadline for an answer to start (the
//!   first-byte timeout; for a non-stream call, the whole answer) follows observed latency,
//!   `clamp(timeout_multiplier × max(p95, EWMA), base_timeout, max_timeout)`, grows ×1.5
//!   after a timeout so a cold model gets a chance, drops back to `base_timeout` after
//!   `consecutive_failures_threshold` failures in a row (reported by
//!   [`QwenAdapter::is_healthy`]) so a dead box fails fast, forgets what it learned after
//!   `10 × health_check_interval` without traffic, and gives `max_timeout` to requests marked
//!   `"async_contribution": true` when `async_contribution_enabled`. The full rule is on
//!   [`AdaptiveTimeout`]; the settings on [`AdaptiveConfig`]. The I/O layer asks for the
//!   deadline through [`ProviderAdapter::timeouts`](claudette_core::ProviderAdapter::timeouts)
//!   and reports each call through
//!   [`ProviderAdapter::observe`](claudette_core::ProviderAdapter::observe); the adapter
//!   itself stays sans-IO (no runtime, no sleeping, time from an injected clock).
//! - **Reasoning kept apart**: vLLM/SGLang reasoning builds send `reasoning_content`, which
//!   the OpenAI decoder already turns into `ReasoningDelta` / `ChatResponse::reasoning`.
//!   Servers without a reasoning parser leave Qwen3's `<think>…</think>` inline; the setting
//!   `split_think_tags` moves it out ([`think`]).
//! - Self-hosted defaults: base URL `http://127.0.0.1:8000/v1` (vLLM's), model
//!   `Qwen/Qwen2.5-Coder-7B-Instruct-AWQ`, no key required, free unless `pricing` is set,
//!   `backend_type` self-hosted.
//!
//! With the default `http` feature, [`QwenBackend`] is the adapter driven by
//! `claudette-http`, and the crate registers a factory under the provider name `qwen`.
//!
//! ```no_run
//! # #[cfg(feature = "http")]
//! # fn demo() -> Result<(), claudette_core::BackendError> {
//! use claudette_core::BackendSettings;
//!
//! let settings = BackendSettings::new("qwen-coder")
//!     .base_url("http://gpu-box.lan:8000/v1")
//!     .extra("base_timeout_ms", 30_000)
//!     .extra("max_timeout_ms", 120_000)
//!     .extra("async_contribution_enabled", true);
//! let backend = claudette_qwen::backend(&settings)?;
//! assert!(backend.adapter().is_healthy());
//! # Ok(()) }
//! ```

mod adapter;
pub mod adaptive;
pub mod think;

pub use adapter::{DEFAULT_BASE_URL, DEFAULT_MODEL, PROVIDER, QWEN_KEYS, QwenAdapter};
pub use adaptive::{
    ADAPTIVE_KEYS, ASYNC_CONTRIBUTION_KEY, AdaptiveConfig, AdaptiveSnapshot, AdaptiveTimeout, EWMA_ALPHA,
    LATENCY_WINDOW, STALE_AFTER_INTERVALS, TIMEOUT_GROWTH,
};
pub use think::{ThinkSplitter, ThinkTagDecoder, split_think};

#[cfg(feature = "http")]
claudette_http::http_provider! {
    /// Self-hosted Qwen over HTTP: [`QwenAdapter`] driven by `claudette-http`.
    pub type QwenBackend = QwenAdapter;
    /// Builds a [`QwenBackend`] from settings (all optional but `name`; see [`QwenAdapter`]
    /// for the `extra` keys), checking them first.
    pub fn backend;
    register(
        PROVIDER,
        "self-hosted Qwen on an OpenAI-compatible server (vLLM, llama.cpp, SGLang) with adaptive timeouts",
    );
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
    name = PROVIDER,
    description =
        "self-hosted Qwen on an OpenAI-compatible server (vLLM, llama.cpp, SGLang) with adaptive timeouts",
    ctor = QwenAdapter::new,
);
