//! The one place a configuration becomes a provider registry and a router: the providers this
//! build links plus the run-time plugins of `server.plugin_dirs`. [`Claudette::from_config`]
//! and the `claudette` binary both go through [`build_router`], so a library user and the
//! gateway load the same plugins with the same checks from the same configuration.
//!
//! [`Claudette::from_config`]: crate::Claudette::from_config

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use claudette_cache::{CacheOptions, MemoryCache};
use claudette_config::{Config, ConfigError};
use claudette_core::{BackendRouter, Registry};

/// What loading the configured plugin directories did. Empty when the configuration names
/// none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginReport {
    /// Provider names registered from plugins, in `plugin_dirs` order, then file-name order.
    pub loaded: Vec<String>,
    /// Every file (or whole directory) that was not loaded, with the reason.
    pub refused: Vec<PluginRefusal>,
}

impl PluginReport {
    /// Whether everything the configuration named loaded.
    pub fn is_clean(&self) -> bool {
        self.refused.is_empty()
    }
}

/// One refused plugin file, or a plugin directory that loaded nothing (it failed the ownership
/// and permission checks, could not be read, or this build has no plugin support).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginRefusal {
    /// The file refused, or the directory when the directory itself was refused.
    pub path: PathBuf,
    /// The whole message, naming the file and the reason (what is logged and what the CLI
    /// prints).
    pub message: String,
}

impl fmt::Display for PluginRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Builds the router `config` describes, with the providers of [`registry_for`] and, when
/// `[cache] enabled`, its response cache, and says which plugins loaded and which were refused.
///
/// A refused plugin does not fail the build: the linked providers and the other plugins still
/// work. A backend whose provider exists nowhere (neither linked nor loaded, for instance
/// because its plugin was refused) fails it with `backends[i].provider: unknown provider "…"
/// (known: …)`.
pub fn build_router(config: &Config) -> Result<(Arc<BackendRouter>, PluginReport), ConfigError> {
    let (registry, report) = registry_for(config)?;
    let router = config.build_router(&registry)?;
    // Here rather than in each host, so that `Claudette::from_config` and `claudette serve`
    // cache alike.
    if let Some(cache) = response_cache(config) {
        router.set_response_cache(cache).map_err(|e| ConfigError::invalid("cache", e.message))?;
    }
    Ok((router, report))
}

/// The response cache `[cache]` asks for: a [`MemoryCache`] with its time to live and size,
/// or `None` when the cache is not enabled.
pub fn response_cache(config: &Config) -> Option<Arc<MemoryCache>> {
    let c = &config.cache;
    c.enabled.then(|| Arc::new(MemoryCache::new(CacheOptions { ttl: c.ttl(), max_bytes: c.max_bytes() })))
}

/// Every provider this build links (see [`registry`](crate::registry)) plus, with the
/// `plugins` feature (on by default), the plugins found in `config.server.plugin_dirs`, loaded
/// with the allow-list of `[[server.plugins]]` and the private copy directory
/// `server.plugin_copy_dir` (see `claudette_plugin`'s docs for every check).
///
/// Each refusal is logged at `warn`, naming the file and the reason, and listed in the report;
/// only a broken link-time registry (two linked crates claiming one provider name) is an error.
/// Without the `plugins` feature, each configured directory is refused with a message saying
/// so: a configuration that names plugins never silently gets none.
pub fn registry_for(config: &Config) -> Result<(Registry, PluginReport), ConfigError> {
    #[cfg_attr(not(feature = "plugins"), allow(unused_mut))]
    let mut registry = crate::registry().map_err(|e| ConfigError::invalid("providers", e.to_string()))?;
    let mut report = PluginReport::default();
    if config.server.plugin_dirs.is_empty() {
        return Ok((registry, report));
    }
    #[cfg(feature = "plugins")]
    load(&mut registry, config, &mut report);
    #[cfg(not(feature = "plugins"))]
    for dir in &config.server.plugin_dirs {
        let message = format!(
            "plugin directory {}: not loaded: this build has no plugin support (cargo feature `plugins` of the `claudette` crate)",
            dir.display()
        );
        tracing::warn!(plugin = %dir.display(), "{message}");
        report.refused.push(PluginRefusal { path: dir.clone(), message });
    }
    Ok((registry, report))
}

#[cfg(feature = "plugins")]
fn load(registry: &mut Registry, config: &Config, report: &mut PluginReport) {
    let s = &config.server;
    let mut options = claudette_plugin::LoadOptions::default();
    for a in &s.plugin_allow {
        options = options.allow(a.file.clone(), a.sha256.clone());
    }
    if let Some(dir) = &s.plugin_copy_dir {
        options = options.copy_to(dir.clone());
    }
    for dir in &s.plugin_dirs {
        // `load_dir_into` logs every refusal at warn (file and reason) and every load at info.
        let loaded = claudette_plugin::load_dir_into(registry, dir, &options);
        report.loaded.extend(loaded.loaded);
        report.refused.extend(
            loaded
                .errors
                .iter()
                .map(|e| PluginRefusal { path: e.path().to_path_buf(), message: e.to_string() }),
        );
    }
}

#[cfg(test)]
mod tests {
    use claudette_config::ProcessEnv;

    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml, &ProcessEnv).unwrap()
    }

    const LINKED: &str = "[[backends]]\nname = \"gpt\"\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";

    #[test]
    #[cfg(feature = "openai")]
    fn no_plugin_dirs_no_report() {
        let (router, report) = build_router(&config(LINKED)).unwrap();
        assert_eq!(report, PluginReport::default());
        assert!(report.is_clean());
        assert_eq!(router.backend_names(), vec!["gpt"]);
    }

    #[test]
    #[cfg(feature = "plugins")]
    fn a_missing_plugin_dir_is_reported_not_fatal() {
        let dir = std::env::temp_dir().join(format!("claudette-no-such-plugins-{}", std::process::id()));
        let toml = format!("[server]\nplugin_dirs = [\"{}\"]\n{LINKED}", dir.display());
        let (registry, report) = registry_for(&config(&toml)).unwrap();
        assert!(report.loaded.is_empty());
        assert_eq!(report.refused.len(), 1, "{report:?}");
        assert_eq!(report.refused[0].path, dir);
        assert!(report.refused[0].message.contains(&dir.display().to_string()), "{}", report.refused[0]);
        assert!(registry.providers().any(|p| p.name() == "openai"), "linked providers are still there");
    }

    #[test]
    #[cfg(not(feature = "plugins"))]
    fn without_the_feature_named_dirs_are_reported_not_ignored() {
        let toml = format!("[server]\nplugin_dirs = [\"/opt/plugins\"]\n{LINKED}");
        let (_, report) = registry_for(&config(&toml)).unwrap();
        assert_eq!(report.refused.len(), 1, "{report:?}");
        assert_eq!(report.refused[0].path, PathBuf::from("/opt/plugins"));
        assert!(report.refused[0].message.contains("cargo feature `plugins`"), "{}", report.refused[0]);
    }
}
