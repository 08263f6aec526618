//! # claudette-ollama
//!
//! Ollama's native `POST /api/chat` as a Claudette provider: a sans-IO [`OllamaAdapter`], its
//! NDJSON [`OllamaStreamDecoder`], and (feature `http`, on by default) a ready
//! [`OllamaBackend`] plus link-time registration under the provider name `"ollama"`.
//!
//! Why the native API and not Ollama's OpenAI-compatible `/v1`: `/v1` ignores `options.num_ctx`
//! (esengine/DeepSeek-Reasonix PR #10245), so prompts longer than the server's default window
//! are cut without an error. Here `num_ctx` is sent on every request and the answer's
//! `prompt_eval_count` is checked for signs of truncation (see [`truncation_warning`]).
//!
//! ```no_run
//! # fn main() -> Result<(), claudette_core::BackendError> {
//! use claudette_core::BackendSettings;
//!
//! let settings = BackendSettings::new("local-llama").model("llama3.2").extra("num_ctx", 16384);
//! let backend = claudette_ollama::backend(&settings)?;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! Metrics (through the `metrics` facade, visible to whatever exporter the host installs):
//! - `claudette_ollama_load_seconds{backend}`: histogram of model load times, kept apart from
//!   request latency so a cold start does not poison latency averages.
//! - `claudette_ollama_truncation_total{backend}`: answers whose prompt looks silently
//!   truncated.

mod adapter;
mod stream;
mod wire;

pub use adapter::{DEFAULT_BASE_URL, DEFAULT_NUM_CTX, KNOWN_SETTINGS, OllamaAdapter, PROVIDER};
pub use stream::OllamaStreamDecoder;
pub use wire::{OllamaTimings, TRUNCATION_MIN_GAP, parse_timings, truncation_warning};

#[cfg(feature = "http")]
claudette_http::http_provider! {
    /// An Ollama backend over HTTP.
    pub type OllamaBackend = OllamaAdapter;
    /// Builds an Ollama backend from its settings (`model` required; `base_url` defaults to
    /// [`DEFAULT_BASE_URL`]; extra settings in [`KNOWN_SETTINGS`]).
    pub fn backend;
    register("ollama", "Ollama native /api/chat (NDJSON streaming, num_ctx always sent)");
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
    description = "Ollama native /api/chat (NDJSON streaming, num_ctx always sent)",
    ctor = OllamaAdapter::new
);
