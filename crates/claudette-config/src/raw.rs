//! The file's shape, as serde sees it. Every table rejects unknown keys (a typo must be an
//! error, not a silently applied default), except a backend's, whose unknown keys are the
//! provider's own settings and are checked by the provider.

use std::path::PathBuf;

use claudette_core::{BreakerConfig, OptimizationTarget};
use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawFile {
    pub server: RawServer,
    pub router: RawRouter,
    /// Kept raw: each is split into common keys and provider keys in `load`.
    pub backends: Vec<serde_json::Value>,
    pub ledger: Option<RawLedger>,
    pub cache: Option<RawCache>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub allow_unauthenticated_non_loopback: bool,
    pub admin_from_any: bool,
    pub max_body_bytes: Option<u64>,
    pub max_concurrency: Option<u64>,
    pub max_messages: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub count_tokens_timeout_ms: Option<u64>,
    pub workers: Option<u64>,
    pub plugin_dirs: Vec<PathBuf>,
    pub plugin_copy_dir: Option<PathBuf>,
    pub plugins: Vec<RawPlugin>,
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLedger {
    pub path: Option<PathBuf>,
    pub retention_days: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCache {
    pub enabled: Option<bool>,
    pub ttl_secs: Option<u64>,
    pub max_mib: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlugin {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub name: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub key_env: Option<String>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub max_concurrent: Option<u64>,
    /// Only here to refuse it with a clear message.
    #[serde(default)]
    pub key: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRouter {
    /// Preset weights (`cost`, `speed`, `quality`, `balanced`); explicit weights override it.
    pub optimize_for: Option<OptimizationTarget>,
    pub cost_weight: Option<f64>,
    pub latency_weight: Option<f64>,
    pub availability_weight: Option<f64>,
    pub quality_weight: Option<f64>,
    pub fallback_enabled: Option<bool>,
    pub max_attempts: Option<u32>,
    pub failover_chain: Vec<String>,
    pub retry: RawRetry,
    pub breaker: Option<BreakerConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub base_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub max_hint_ms: Option<u64>,
    pub retry_possibly_accepted: Option<bool>,
    pub request_deadline_ms: Option<u64>,
    pub first_token_deadline_ms: Option<u64>,
    pub budget_ratio: Option<f64>,
    pub budget_min: Option<u32>,
    pub budget_window_ms: Option<u64>,
}

/// Keys of a `[[backends]]` table that Claudette reads itself; every other key goes to the
/// provider as a provider-specific setting.
pub(crate) const BACKEND_KEYS: &[&str] = &[
    "name",
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "api_key",
    "pricing",
    "timeouts",
    "priority",
    "enabled",
    "region",
    "tags",
    "quality",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    #[serde(default)]
    pub name: Option<String>,
    pub provider: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Only here to refuse it with a clear message.
    #[serde(default)]
    pub api_key: Option<IgnoredAny>,
    #[serde(default)]
    pub pricing: Option<RawPricing>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub quality: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPricing {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
    #[serde(default)]
    pub cache_read_per_1k: Option<f64>,
    #[serde(default)]
    pub cache_write_per_1k: Option<f64>,
    #[serde(default)]
    pub web_search_per_1k: Option<f64>,
    #[serde(default)]
    pub long_context: Option<RawLongContext>,
    #[serde(default)]
    pub fast_factor: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLongContext {
    pub above_input_tokens: u32,
    pub input_factor: f64,
    pub output_factor: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub connect_ms: Option<u64>,
    pub first_byte_ms: Option<u64>,
    pub idle_ms: Option<u64>,
    pub total_ms: Option<u64>,
}
