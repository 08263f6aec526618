//! [`Claudette`]: the seeds' one-line entry point (`new Claudette()`, `claudette.optimize(…)`).

use std::path::Path;
use std::sync::Arc;

use claudette_config::{Config, ConfigError, ProcessEnv};
use claudette_core::{BackendRouter, ChatRequest, ChatResponse, RouteError};

use crate::PluginReport;

/// A ready router built from configuration, with the seeds' small API on top.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // Backends from OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, OLLAMA_HOST…
/// // (or the file named by CLAUDETTE_CONFIG).
/// let claudette = claudette::Claudette::from_env()?;
/// let answer = claudette.optimize("Explain TCP in one line").await?;
/// println!("{} (from {}, ${:.6})", answer.content, answer.backend, answer.cost);
/// # Ok(()) }
/// ```
///
/// Everything else (streams, batches, health, costs) is on [`Claudette::router`].
///
/// A configuration's `server.plugin_dirs` are loaded as the `claudette` binary loads them
/// (feature `plugins`, on by default); [`Claudette::plugin_report`] says which plugins loaded
/// and which were refused.
#[derive(Debug, Clone)]
pub struct Claudette {
    router: Arc<BackendRouter>,
    plugins: Arc<PluginReport>,
}

impl Claudette {
    /// Wraps a router you built yourself (no plugins were loaded on its behalf).
    pub fn new(router: Arc<BackendRouter>) -> Self {
        Self { router, plugins: Arc::default() }
    }

    /// From the environment: the file named by `CLAUDETTE_CONFIG` if set, else backends
    /// discovered from `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY` /
    /// `GOOGLE_API_KEY` and `OLLAMA_HOST`, with `CLAUDETTE__…` overrides applied. Providers are
    /// the ones this build links (the facade's cargo features), plus the plugins of the file's
    /// `server.plugin_dirs` (see [`Claudette::from_config`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::with_config(Config::from_env(&ProcessEnv)?)
    }

    /// From a `claudette.toml` (plus environment overrides), with the plugins of its
    /// `server.plugin_dirs`.
    ///
    /// A refused plugin does not fail the load: it is logged at `warn` (file and reason) and
    /// listed in [`Claudette::plugin_report`], and the linked providers and the other plugins
    /// still work. A backend whose provider is neither linked nor loaded fails the load with
    /// `backends[i].provider: unknown provider "…" (known: …)`.
    pub fn from_config(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::with_config(Config::from_file(path.as_ref(), &ProcessEnv)?)
    }

    /// From an already loaded configuration, plugins included (see [`Claudette::from_config`]).
    pub fn with_config(config: Config) -> Result<Self, ConfigError> {
        let (router, plugins) = crate::build_router(&config)?;
        Ok(Self { router, plugins: Arc::new(plugins) })
    }

    /// Which plugins the configuration's `server.plugin_dirs` loaded and which were refused
    /// (each with the file and the reason). Empty if it names no plugin directory.
    pub fn plugin_report(&self) -> &PluginReport {
        &self.plugins
    }

    /// Routes one prompt to the best backend, with retries and failover (the seeds'
    /// `optimize(message)`). The response says which backend answered, what it cost and why it
    /// was chosen (`response.decision`).
    pub async fn optimize(&self, prompt: impl Into<String>) -> Result<ChatResponse, RouteError> {
        self.router.route_request(&ChatRequest::prompt(prompt)).await
    }

    /// The router: `route_request`, `route_stream`, `process_batch`, `health_statuses`,
    /// `analyze_costs`…
    pub fn router(&self) -> &Arc<BackendRouter> {
        &self.router
    }
}

#[cfg(test)]
mod tests {
    use claudette_testkit::{FakeServer, Reply};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_config_routes_a_prompt_over_real_http() {
        let fake = FakeServer::start().await;
        fake.set_default(Reply::openai_text("hello from the fake"));
        let path = std::env::temp_dir().join(format!("claudette-entry-{}.toml", std::process::id()));
        let toml = format!(
            "[[backends]]\nname = \"fake\"\nprovider = \"openai\"\nmodel = \"fake-model\"\nbase_url = \"{}\"\n",
            fake.v1_url()
        );
        std::fs::write(&path, toml).unwrap();
        let claudette = Claudette::from_config(&path);
        let _ = std::fs::remove_file(&path);
        let claudette = claudette.unwrap();
        let answer = claudette.optimize("hi").await.unwrap();
        assert_eq!(answer.content, "hello from the fake");
        assert_eq!(answer.backend, "fake");
        assert_eq!(answer.decision.and_then(|d| d.chosen().map(str::to_owned)).as_deref(), Some("fake"));
        assert_eq!(fake.post_requests(), 1);
        assert_eq!(claudette.router().backend_names(), vec!["fake"]);
        assert_eq!(claudette.plugin_report(), &crate::PluginReport::default());
    }

    /// `[cache] enabled`: the second identical prompt is answered from memory, free, without
    /// reaching the provider; without the section every prompt reaches it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_config_caches_when_the_file_says_so() {
        let fake = FakeServer::start().await;
        fake.set_default(Reply::openai_text("hello from the fake"));
        let backend = format!(
            "[[backends]]\nname = \"fake\"\nprovider = \"openai\"\nmodel = \"fake-model\"\nbase_url = \"{}\"\n",
            fake.v1_url()
        );
        let load = |cache: &str| {
            let config =
                Config::from_toml_str(&format!("{cache}\n{backend}"), &std::collections::HashMap::new());
            Claudette::with_config(config.unwrap()).unwrap()
        };
        let cached = load("[cache]\nenabled = true\nttl_secs = 60\n");
        assert!(cached.router().has_response_cache());
        let first = cached.optimize("hi").await.unwrap();
        let second = cached.optimize("hi").await.unwrap();
        assert_eq!(fake.post_requests(), 1);
        assert!(!first.cache_hit && second.cache_hit);
        assert_eq!((second.content.as_str(), second.cost), ("hello from the fake", 0.0));

        let plain = load("");
        assert!(!plain.router().has_response_cache());
        plain.optimize("hi").await.unwrap();
        plain.optimize("hi").await.unwrap();
        assert_eq!(fake.post_requests(), 3);
    }

    #[test]
    fn from_config_reports_the_key_path() {
        let e = Claudette::from_config("/nonexistent/claudette.toml").unwrap_err().to_string();
        assert!(e.starts_with("cannot read config file /nonexistent/claudette.toml"), "{e}");
    }
}
