//! # Claudette
//!
//! Route LLM requests across providers — OpenAI, Anthropic, Ollama, self-hosted Qwen on
//! vLLM/llama.cpp, Gemini, any OpenAI-compatible server — picking for every request the backend
//! that is best on cost, latency, availability and quality, with circuit breakers, retries,
//! failover, cost tracking and streams that never end silently.
//!
//! This facade re-exports [`claudette_core`] (the contract and the router), [`claudette_http`]
//! (the I/O layer) and one module per provider, each behind a cargo feature of the same name
//! (all on by default). Depend on the provider crates directly if you want fewer dependencies.
//!
//! ```no_run
//! use claudette::{BackendRouter, BackendSettings, ChatRequest, RouterOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let router = BackendRouter::new(RouterOptions::default());
//! let openai = BackendSettings::new("gpt").model("gpt-4o-mini").api_key(std::env::var("OPENAI_API_KEY")?);
//! router.register_backend(claudette::openai::backend(&openai)?.shared())?;
//! let answer = router.route_request(&ChatRequest::prompt("Explain TCP in one line")).await?;
//! println!("{} (from {}, cost {:.6})", answer.content, answer.backend, answer.cost);
//! # Ok(()) }
//! ```
//!
//! ## From a configuration, with plugins
//!
//! [`Claudette::from_config`] (and [`Claudette::from_env`] when `CLAUDETTE_CONFIG` names a file)
//! builds the router a `claudette.toml` describes, exactly as the `claudette` binary does: the
//! providers this build links, plus the run-time plugins (`.so` files) of `server.plugin_dirs`,
//! checked against the `[[server.plugins]]` allow-list and copied to `server.plugin_copy_dir` if
//! set (feature `plugins`, on by default; `claudette::plugin` re-exports `claudette_plugin`).
//! A refused plugin is logged at `warn` and listed in [`Claudette::plugin_report`]; it does not
//! stop the others. With `[cache] enabled = true`, identical requests (per
//! [`ChatRequest::tenant`]) are answered from memory (`claudette-cache`; see
//! `claudette::core::cache`). [`build_router`] and [`registry_for`] are the same steps for a
//! router or registry of your own.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let claudette = claudette::Claudette::from_config("claudette.toml")?;
//! for refused in &claudette.plugin_report().refused {
//!     eprintln!("{refused}"); // names the file and the reason
//! }
//! # Ok(()) }
//! ```

pub use claudette_core as core;
pub use claudette_core::{
    Backend, BackendError, BackendInfo, BackendRouter, BackendSettings, ChatRequest, ChatResponse, ErrorKind,
    Message, Pricing, Registry, RouteError, RoutedStream, RouterOptions, RoutingDecision, StreamEvent,
    ToolChoice, ToolSpec, Usage,
};
pub use claudette_http as http;

mod entry;
mod plugins;
pub use claudette_config::{Config, ConfigError};
pub use entry::Claudette;
pub use plugins::{PluginRefusal, PluginReport, build_router, registry_for, response_cache};

#[cfg(feature = "anthropic")]
pub use claudette_anthropic as anthropic;
#[cfg(feature = "gemini")]
pub use claudette_gemini as gemini;
#[cfg(feature = "ollama")]
pub use claudette_ollama as ollama;
#[cfg(feature = "openai")]
pub use claudette_openai as openai;
/// Run-time provider plugins: the loader [`build_router`] uses, for hosts that load plugins
/// from elsewhere than `server.plugin_dirs`.
#[cfg(feature = "plugins")]
pub use claudette_plugin as plugin;
#[cfg(feature = "qwen")]
pub use claudette_qwen as qwen;

/// Every provider this build enables, by name (`openai`, `anthropic`, ...), ready to build
/// backends from settings tables.
///
/// Provider crates register themselves at link time with `inventory`; a crate that is only a
/// dependency is not linked, so the `pub use` lines above, one per enabled feature, are what
/// makes their registrations visible here.
pub fn registry() -> Result<Registry, claudette_core::RegistryError> {
    Registry::linked()
}

#[cfg(test)]
mod tests {
    #[test]
    fn enabled_providers_are_registered_at_link_time() {
        let r = super::registry().unwrap();
        let names: Vec<&str> = r.providers().map(|f| f.name()).collect();
        #[cfg(feature = "openai")]
        assert!(names.contains(&"openai"), "{names:?}");
        #[cfg(feature = "anthropic")]
        assert!(names.contains(&"anthropic"), "{names:?}");
        #[cfg(feature = "ollama")]
        assert!(names.contains(&"ollama"), "{names:?}");
        #[cfg(feature = "gemini")]
        assert!(names.contains(&"gemini"), "{names:?}");
        #[cfg(feature = "qwen")]
        assert!(names.contains(&"qwen"), "{names:?}");
    }

    #[test]
    #[cfg(feature = "openai")]
    fn registry_builds_from_a_table_and_names_bad_settings() {
        let r = super::registry().unwrap();
        let b = r
            .build_from_value(serde_json::json!({
                "provider": "openai", "name": "local", "model": "m", "base_url": "http://127.0.0.1:9/v1"
            }))
            .unwrap();
        assert_eq!(b.name(), "local");
        assert_eq!(b.info().provider, "openai");
        let e = r
            .build_from_value(
                serde_json::json!({"provider": "openai", "name": "x", "stream_include_usge": true}),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("stream_include_usge"), "{e}");
        let e = r
            .build_from_value(serde_json::json!({"provider": "openai", "name": "x", "priority": "high"}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("provider `openai`") && e.contains("invalid type"), "{e}");
    }

    #[test]
    fn unknown_provider_is_a_clear_error() {
        let r = super::registry().unwrap();
        let e = r
            .build_from_value(serde_json::json!({"provider": "nope", "name": "x"}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown provider `nope`"), "{e}");
    }
}
