//! # claudette-config
//!
//! One `claudette.toml` → a typed, validated [`Config`] → a ready
//! [`BackendRouter`](claudette_core::BackendRouter).
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"          # default; a non-loopback address needs [[server.keys]]
//!
//! [[server.keys]]
//! name = "team-a"
//! key_env = "CLAUDETTE_KEY_TEAM_A"   # read from the environment, hashed at load, never kept
//! rpm = 600                          # optional: requests a minute for this key (429 past it)
//! max_concurrent = 8                 # optional: requests in flight for this key (429 past it)
//!
//! [router]
//! cost_weight = 0.5
//! latency_weight = 0.3
//! availability_weight = 0.2
//! failover_chain = ["openai", "claude"]
//!
//! [ledger]                           # optional: spend kept across restarts (SQLite file)
//! path = "/var/lib/claudette/ledger.db"
//! retention_days = 400
//!
//! [cache]                            # optional: identical requests answered from memory
//! enabled = true                     # default false
//! ttl_secs = 3600
//! max_mib = 64
//!
//! [[backends]]
//! name = "openai"
//! provider = "openai"
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"     # secrets only by reference: `api_key = "sk-…"` is refused
//!
//! [[backends]]
//! name = "claude"
//! provider = "anthropic"
//! api_key_env = "ANTHROPIC_API_KEY"
//! ```
//!
//! Where the configuration comes from ([`Config::load`]): an explicit path, else the file named
//! by `CLAUDETTE_CONFIG`, else `./claudette.toml` when it exists, else the environment alone
//! ([`Config::discover`]: `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY` or
//! `GOOGLE_API_KEY`, `OLLAMA_HOST`). A file without `[[backends]]` also gets the discovered
//! ones, so a file may configure only the server.
//!
//! On top of either, `CLAUDETTE_LISTEN` sets `server.listen` and any
//! `CLAUDETTE__<SECTION>__<KEY>=value` sets one key (`CLAUDETTE__ROUTER__COST_WEIGHT=0.7`,
//! `CLAUDETTE__BACKENDS__OPENAI__MODEL=gpt-4o`). The listen address is, first to last,
//! [`Config::load_with_listen`]'s (`claudette serve --listen`), `CLAUDETTE__SERVER__LISTEN`,
//! `CLAUDETTE_LISTEN`, the file's, `127.0.0.1:8080`.
//!
//! Every problem is a [`ConfigError`] naming the key path and the reason
//! (`backends[1].pricing.input_per_1k: expected a number, found string "cheap"`), plus the
//! environment variable when one set the value. Secrets never appear in errors or in `Debug`.
//!
//! This crate depends on `claudette-core` only; [`Config::build_router`] takes the provider
//! [`Registry`] as an argument (`claudette::registry()` in the facade) so the facade can depend
//! on this crate without a cycle.

mod describe;
mod discover;
mod env;
mod error;
mod load;
mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use claudette_core::{BackendRouter, BackendSettings, Registry, RegistryError, RouterOptions};

pub use claudette_core::base_url::redact_url;
pub use discover::DISCOVERY_VARS;
pub use env::{CONFIG_VAR, EnvSource, LISTEN_VAR, OVERRIDE_PREFIX, ProcessEnv};
pub use error::ConfigError;

/// Name of the file [`Config::load`] looks for in the working directory.
pub const DEFAULT_FILE: &str = "claudette.toml";

/// Default request body limit (reliability-spec S-10).
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default limit on requests served at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1024;
/// Default limit on the messages of one request (S-10).
pub const DEFAULT_MAX_MESSAGES: usize = 1000;
/// Default time in-flight requests get to finish after SIGTERM / Ctrl-C.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default time a client gets to send a request head (S-10).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time `count_tokens` waits for a backend's own count before the estimate.
pub const DEFAULT_COUNT_TOKENS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `[ledger] retention_days`: a year and its same month last year.
pub const DEFAULT_LEDGER_RETENTION_DAYS: u32 = 400;
/// Longest `[ledger] retention_days` accepted (a larger number is a typo).
pub const MAX_LEDGER_RETENTION_DAYS: u32 = 36_500;

/// Default of `[cache] ttl_secs`: an hour, the seeds' base time to live.
pub const DEFAULT_CACHE_TTL_SECS: u64 = 3600;
/// Longest `[cache] ttl_secs` accepted: a year (a larger number is a typo).
pub const MAX_CACHE_TTL_SECS: u64 = 365 * 86_400;
/// Default of `[cache] max_mib`.
pub const DEFAULT_CACHE_MAX_MIB: u64 = 64;
/// Largest `[cache] max_mib` accepted: 1 TiB (a larger number is a typo).
pub const MAX_CACHE_MAX_MIB: u64 = 1024 * 1024;

/// Shortest gateway key accepted from `key_env` (S-07 asks for ≥ 128 random bits).
pub const MIN_GATEWAY_KEY_LEN: usize = 16;

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from.
    pub source: ConfigSource,
    pub server: ServerConfig,
    pub router: RouterConfig,
    /// `[ledger]`: where usage and cost records are kept across restarts. `None` (no section):
    /// spend is kept in memory only, as long as the process runs.
    pub ledger: Option<LedgerConfig>,
    /// `[cache]`: the response cache. Off unless the section says `enabled = true`.
    pub cache: CacheConfig,
    pub backends: Vec<BackendConfig>,
    /// Names of the environment variables whose values took effect (never the values): one
    /// that a later variable or `--listen` set again is not listed.
    pub overrides: Vec<String>,
}

/// Where a [`Config`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A TOML file.
    File(PathBuf),
    /// TOML text handed in directly.
    Text,
    /// No file: backends discovered from the environment.
    Environment,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Text => f.write_str("inline TOML"),
            Self::Environment => f.write_str("environment (no config file)"),
        }
    }
}

/// `[server]`: how the gateway listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Default `127.0.0.1:8080`. Port 0 picks a free port (the gateway prints the real one).
    pub listen: SocketAddr,
    /// Serve a non-loopback address without gateway keys (off: refused at load, S-08).
    pub allow_unauthenticated_non_loopback: bool,
    /// Serve `/metrics`, `/v1/backends` and `/v1/costs` to non-loopback clients too (off:
    /// loopback only, S-08).
    pub admin_from_any: bool,
    pub max_body_bytes: usize,
    pub max_concurrency: usize,
    /// Messages one request may carry (`max_messages`, default 1000): past it, 400.
    pub max_messages: usize,
    /// Cap on a request's `max_tokens` (`max_output_tokens`, default none): a request asking
    /// for more is refused with 400, one asking for nothing gets the cap.
    pub max_output_tokens: Option<NonZeroU32>,
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's head, counted from when its connection
    /// opened or was answered (`header_read_timeout_ms`, default 30 000; S-10 slow-loris
    /// protection). Keep-alive connections idle that long are closed too, so behind a load
    /// balancer set it above the balancer's idle timeout.
    pub header_read_timeout: Duration,
    /// How long `/v1/messages/count_tokens` waits for a backend's own count before it answers
    /// with the estimate (`count_tokens_timeout_ms`, default 5 000, at most 600 000).
    pub count_tokens_timeout: Duration,
    /// Serving threads (`workers`). `None` (the default): one per core. `Some(0)`: connections
    /// run on the process's main runtime.
    pub workers: Option<usize>,
    /// Directories to load provider plugins from, resolved against the config file's directory.
    /// Empty (the default): no plugin is ever loaded.
    pub plugin_dirs: Vec<PathBuf>,
    /// A private directory plugins are copied into before they are hashed and loaded, so the
    /// checked bytes are the bytes that run (reliability-spec S-13).
    pub plugin_copy_dir: Option<PathBuf>,
    /// `[[server.plugins]]`: the allow-list. When not empty, only these files load, and only
    /// with this content hash.
    pub plugin_allow: Vec<PluginAllow>,
    /// Gateway keys, as hashes only.
    pub keys: Vec<GatewayKey>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allow_unauthenticated_non_loopback: false,
            admin_from_any: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_messages: DEFAULT_MAX_MESSAGES,
            max_output_tokens: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            count_tokens_timeout: DEFAULT_COUNT_TOKENS_TIMEOUT,
            workers: None,
            plugin_dirs: Vec::new(),
            plugin_copy_dir: None,
            plugin_allow: Vec::new(),
            keys: Vec::new(),
        }
    }
}

/// `[ledger]`: the persistent usage and cost ledger (`claudette-ledger`), a SQLite file.
///
/// ```toml
/// [ledger]
/// path = "/var/lib/claudette/ledger.db"  # relative: against the config file's directory
/// retention_days = 400                    # default; also the longest /v1/costs window
/// ```
///
/// Several gateway processes on one host may share the file; on several hosts, give each its
/// own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// The SQLite file; created (with its directory) on first use.
    pub path: PathBuf,
    /// Records older than this many days are deleted (default
    /// [`DEFAULT_LEDGER_RETENTION_DAYS`], at most [`MAX_LEDGER_RETENTION_DAYS`]).
    pub retention_days: u32,
}

impl LedgerConfig {
    /// [`retention_days`](Self::retention_days) as a duration.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// `[cache]`: identical requests answered from memory (`claudette-cache`), per gateway key.
///
/// ```toml
/// [cache]
/// enabled = true     # default false
/// ttl_secs = 3600    # default; an answer is served this long after it was stored
/// max_mib = 64       # default; memory all stored answers may take together
/// ```
///
/// Off by default: with it on, every caller of the same key asking the same question gets the
/// first answer drawn, whatever the temperature, which is the operator's choice to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Seconds an answer is served after it was stored (1 to [`MAX_CACHE_TTL_SECS`]).
    pub ttl_secs: u64,
    /// MiB all stored answers may take together (1 to [`MAX_CACHE_MAX_MIB`]).
    pub max_mib: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: false, ttl_secs: DEFAULT_CACHE_TTL_SECS, max_mib: DEFAULT_CACHE_MAX_MIB }
    }
}

impl CacheConfig {
    /// [`ttl_secs`](Self::ttl_secs) as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    /// [`max_mib`](Self::max_mib) in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_mib.saturating_mul(1024 * 1024)
    }
}

/// One gateway key: a name (for logs and metrics), the SHA-256 of the key, and the key's own
/// limits. The key itself is never stored: a `key_env` value is hashed the moment it is read.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayKey {
    pub name: String,
    pub sha256: [u8; 32],
    /// The variable the key was read from, if it was not given as a hash.
    pub key_env: Option<String>,
    /// `rpm`: requests a minute this key may send to the inference endpoints. `None`: no limit.
    pub rpm: Option<NonZeroU32>,
    /// `max_concurrent`: requests this key may have in flight (streams until they end).
    pub max_concurrent: Option<NonZeroU32>,
}

impl GatewayKey {
    /// The hash as 64 lower-case hex digits.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash of a random key is not a secret, but there is no reason to print it whole.
        let hex = self.sha256_hex();
        f.debug_struct("GatewayKey")
            .field("name", &self.name)
            .field("sha256", &format!("{}…", &hex[..8]))
            .field("key_env", &self.key_env)
            .field("rpm", &self.rpm)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

/// One allow-listed plugin file: its file name (no directory) and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginAllow {
    pub file: String,
    /// 64 lower-case hex digits.
    pub sha256: String,
}

/// SHA-256 of a gateway key, as the gateway compares it.
pub fn hash_key(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// `[router]`: weights, reliability settings and the failover chain.
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    pub options: RouterOptions,
    /// Ordered chain; empty means score order over all backends.
    pub failover_chain: Vec<String>,
}

/// One `[[backends]]` entry.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Provider name in the registry (`openai`, `anthropic`, a plugin's name…).
    pub provider: String,
    /// Settings handed to the provider, with the key already read from `api_key_env` (the key
    /// type never prints).
    pub settings: BackendSettings,
    /// The variable the key came from.
    pub api_key_env: Option<String>,
}

impl BackendConfig {
    pub fn name(&self) -> &str {
        &self.settings.name
    }
}

impl Config {
    /// The configuration a server or CLI uses: `explicit` if given, else the file named by
    /// `CLAUDETTE_CONFIG`, else `./claudette.toml` if it exists, else [`Config::discover`].
    pub fn load(explicit: Option<&Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Self::load_with_listen(explicit, env, None)
    }

    /// [`Config::load`] with `server.listen` given on the command line (`claudette serve
    /// --listen`): it wins over `CLAUDETTE__SERVER__LISTEN`, which wins over
    /// `CLAUDETTE_LISTEN`, which wins over the file. Set before validation, so a non-loopback
    /// address still needs `[[server.keys]]`, and an error about it names `--listen`.
    pub fn load_with_listen(
        explicit: Option<&Path>,
        env: &dyn EnvSource,
        listen: Option<&str>,
    ) -> Result<Self, ConfigError> {
        if let Some(p) = explicit {
            return Self::read_file(p, env, listen);
        }
        if let Some(p) = env.var(CONFIG_VAR) {
            return Self::read_file(Path::new(&p), env, listen);
        }
        let local = Path::new(DEFAULT_FILE);
        // `exists`, not `is_file`: a `claudette.toml` that cannot be read (a directory, no
        // permission) is an error naming it, not a silent fall-back to discovery.
        if local.exists() {
            return Self::read_file(local, env, listen);
        }
        load::discovered(env, listen)
    }

    /// What a library uses (`Claudette::from_env()`): the file named by `CLAUDETTE_CONFIG` if
    /// set, else [`Config::discover`]. Unlike [`Config::load`] it never reads the working
    /// directory, which a library has no business doing.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        match env.var(CONFIG_VAR) {
            Some(p) => Self::from_file(Path::new(&p), env),
            None => Self::discover(env),
        }
    }

    /// Reads and validates a TOML file, with environment overrides applied.
    pub fn from_file(path: &Path, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Self::read_file(path, env, None)
    }

    fn read_file(path: &Path, env: &dyn EnvSource, listen: Option<&str>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        load::from_toml(&text, Some(path), &base, env, listen)
    }

    /// Parses TOML text. Relative `plugin_dirs` are resolved against the working directory.
    pub fn from_toml_str(text: &str, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        load::from_toml(text, None, Path::new(""), env, None)
    }

    /// No file: backends from the usual environment variables (see [`DISCOVERY_VARS`]),
    /// default server and router settings, then the overrides.
    pub fn discover(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        load::discovered(env, None)
    }

    /// Builds every backend with `registry` (which checks each one's provider settings),
    /// registers them in a new router with the configured options, and sets the failover chain.
    ///
    /// Errors name the backend's key path: `backends[0].provider: unknown provider "opnai"
    /// (known: anthropic, gemini, …)`, `backends[2]: unknown setting `num_ctxx` …`.
    pub fn build_router(&self, registry: &Registry) -> Result<Arc<BackendRouter>, ConfigError> {
        let router = BackendRouter::new(self.router.options.clone());
        for (i, b) in self.backends.iter().enumerate() {
            let backend = registry.build(&b.provider, &b.settings).map_err(|e| match e {
                RegistryError::UnknownProvider { name, known } => ConfigError::invalid(
                    format!("backends[{i}].provider"),
                    format!("unknown provider \"{name}\" (known: {known})"),
                ),
                RegistryError::Backend(be) => {
                    let message = strip_backend_prefix(&be.message, b.name());
                    // "unknown setting `x` (known here: …)" is about one key: name it.
                    match message.strip_prefix("unknown setting `").and_then(|r| r.split_once('`')) {
                        Some((setting, rest)) => ConfigError::invalid(
                            format!("backends[{i}].{setting}"),
                            format!(
                                "unknown setting for provider \"{}\"{}",
                                b.provider,
                                rest.replace("(known here: ", "(known: ")
                            ),
                        ),
                        None => ConfigError::invalid(format!("backends[{i}]"), message),
                    }
                }
                other => ConfigError::invalid(format!("backends[{i}]"), other.to_string()),
            })?;
            router
                .register_backend(backend)
                .map_err(|e| ConfigError::invalid(format!("backends[{i}].name"), e.message))?;
        }
        if !self.router.failover_chain.is_empty() {
            router
                .set_failover_chain(self.router.failover_chain.iter().cloned())
                .map_err(|e| ConfigError::invalid("router.failover_chain", e.message))?;
        }
        Ok(Arc::new(router))
    }
}

/// Provider errors start with "backend `x`: "; the key path already says which backend.
fn strip_backend_prefix(message: &str, name: &str) -> String {
    let prefix = format!("backend `{name}`: ");
    message.strip_prefix(&prefix).unwrap_or(message).to_owned()
}
