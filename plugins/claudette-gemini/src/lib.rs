//! # claudette-gemini
//!
//! Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`, and the free
//! `countTokens` behind [`Backend::count_tokens`](claudette_core::Backend::count_tokens)) as a
//! Claudette provider: a sans-IO [`GeminiAdapter`], its SSE [`GeminiStreamDecoder`], a built-in price
//! table ([`pricing`]), and (feature `http`, on by default) a ready [`GeminiBackend`] plus
//! link-time registration under the provider name `"gemini"`.
//!
//! The key travels in the `x-goog-api-key` header, never in the `?key=` query string Google's
//! examples use: URLs end up in access logs, traces and error messages.
//!
//! ```no_run
//! # fn main() -> Result<(), claudette_core::BackendError> {
//! use claudette_core::BackendSettings;
//!
//! let settings = BackendSettings::new("gemini-flash").model("gemini-2.5-flash").api_key("AIza...");
//! let backend = claudette_gemini::backend(&settings)?;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```

mod adapter;
pub mod pricing;
mod stream;
mod wire;

pub use adapter::{
    API_KEY_HEADER, DEFAULT_BASE_URL, GeminiAdapter, KNOWN_SETTINGS, PROVIDER, THOUGHT_SIGNATURE_PLACEHOLDER,
};
pub use stream::GeminiStreamDecoder;

#[cfg(feature = "http")]
claudette_http::http_provider! {
    /// A Gemini backend over HTTP.
    pub type GeminiBackend = GeminiAdapter;
    /// Builds a Gemini backend from its settings (`model` and `api_key` required; `base_url`
    /// defaults to [`DEFAULT_BASE_URL`]).
    pub fn backend;
    register("gemini", "Google Gemini API generateContent (key in x-goog-api-key)");
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
    description = "Google Gemini API generateContent (key in x-goog-api-key)",
    ctor = GeminiAdapter::new
);
