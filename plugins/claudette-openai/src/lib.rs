//! # claudette-openai
//!
//! OpenAI chat completions as a Claudette provider, for OpenAI itself and for any
//! OpenAI-compatible server: llama.cpp's `llama-server`, llama-cpp-python, vLLM, SGLang,
//! LiteLLM. Point `base_url` at the server's `/v1`.
//!
//! The crate is a sans-IO [`OpenAiAdapter`] (request bodies, response and stream decoding,
//! error classification, prices) plus, with the default `http` feature, [`OpenAiBackend`]:
//! that adapter driven by `claudette-http`'s shared client, and a link-time registration under
//! the provider name `openai`. Without `http` nothing here does I/O, so the same code can be
//! built into a cdylib plugin.
//!
//! The wire pieces are public so another crate can speak this protocol with its own provider
//! name, defaults and price table: [`OpenAiAdapter::with_options`] with [`OpenAiOptions`], or
//! the functions directly ([`build_body`] or [`encode_body`], [`parse_chat_completion`], [`OpenAiStreamDecoder`],
//! [`classify_openai_error`], [`parse_model_list`]).
//!
//! ```no_run
//! # #[cfg(feature = "http")]
//! # fn demo() -> Result<(), claudette_core::BackendError> {
//! use claudette_core::BackendSettings;
//!
//! let settings = BackendSettings::new("local-llama")
//!     .base_url("http://127.0.0.1:39180/v1")
//!     .model("tiny-llama");
//! let backend = claudette_openai::backend(&settings)?;
//! # let _ = backend; Ok(()) }
//! ```

mod adapter;
mod error;
mod models;
mod request;
mod response;
mod stream;
mod wire;

pub use adapter::{EXTRA_KEYS, OpenAiAdapter, OpenAiOptions, parse_model_list};
pub use error::{ErrorFields, classify_error_value, classify_openai_error, error_fields, refine_kind};
pub use models::{ModelEntry, OPENAI_MODELS, lookup_model};
pub use request::{BodyOptions, MaxTokensField, build_body, encode_body};
pub use response::{
    content_text, map_finish_reason, parse_arguments, parse_chat_completion, parse_usage, reasoning_text,
};
pub use stream::OpenAiStreamDecoder;

/// Provider name under which this crate registers.
pub const PROVIDER: &str = "openai";

#[cfg(feature = "http")]
claudette_http::http_provider! {
    /// OpenAI (or a compatible server) as an async [`claudette_core::Backend`].
    pub type OpenAiBackend = OpenAiAdapter;
    /// Builds an [`OpenAiBackend`] from settings, checking them first (including that
    /// `api.openai.com` gets a key).
    pub fn backend;
    register(PROVIDER, "OpenAI chat completions, or any OpenAI-compatible server");
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
    description = "OpenAI chat completions, or any OpenAI-compatible server",
    ctor = OpenAiAdapter::new,
);
