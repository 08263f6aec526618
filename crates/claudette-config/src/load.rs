//! The loading pipeline: TOML (or discovery) → raw tree → overrides → typed sections →
//! validated [`Config`].
//!
//! Everything works on one `serde_json::Value` tree so that the file, discovery and the
//! overrides meet in the same shape, and `serde_path_to_error` can name the key of any type
//! error. Checks that serde cannot express (ranges, references between sections, secrets)
//! follow, each with its key path.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use claudette_core::{ApiKey, BackendSettings, LongContext, Pricing, RouterOptions, Timeouts};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::describe::from_value;
use crate::discover;
use crate::env::{EnvSource, Origins, apply_overrides};
use crate::error::ConfigError;
use crate::raw::{BACKEND_KEYS, RawBackend, RawCache, RawFile, RawKey, RawLedger, RawRouter, RawServer};
use crate::{
    BackendConfig, CacheConfig, Config, ConfigSource, DEFAULT_LEDGER_RETENTION_DAYS, DISCOVERY_VARS,
    GatewayKey, LedgerConfig, MAX_CACHE_MAX_MIB, MAX_CACHE_TTL_SECS, MAX_LEDGER_RETENTION_DAYS,
    MIN_GATEWAY_KEY_LEN, PluginAllow, RouterConfig, ServerConfig, hash_key,
};

pub(crate) fn from_toml(
    text: &str,
    path: Option<&Path>,
    base: &Path,
    env: &dyn EnvSource,
    listen: Option<&str>,
) -> Result<Config, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, path, &e))?;
    for (key, value) in &table {
        reject_non_finite(value, key)?;
    }
    let root = serde_json::to_value(table)
        .map_err(|e| ConfigError::invalid("", format!("unsupported value in the file: {e}")))?;
    let source = path.map_or(ConfigSource::Text, |p| ConfigSource::File(p.to_owned()));
    finish(root, source, base, env, listen)
}

/// TOML has `nan` and `inf`, JSON does not: `serde_json` turns them into `null`, which an
/// optional number reads as "not set", so `cost_weight = nan` would silently keep the default.
fn reject_non_finite(value: &toml::Value, key: &str) -> Result<(), ConfigError> {
    match value {
        toml::Value::Float(f) if !f.is_finite() => {
            Err(ConfigError::invalid(key, format!("must be a finite number, found {f}")))
        }
        toml::Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| reject_non_finite(v, &format!("{key}[{i}]")))
        }
        toml::Value::Table(t) => t.iter().try_for_each(|(k, v)| reject_non_finite(v, &format!("{key}.{k}"))),
        _ => Ok(()),
    }
}

pub(crate) fn discovered(env: &dyn EnvSource, listen: Option<&str>) -> Result<Config, ConfigError> {
    finish(Value::Object(serde_json::Map::new()), ConfigSource::Environment, Path::new(""), env, listen)
}

/// Upper bound for `server.workers`.
const MAX_WORKERS: u64 = 1024;
/// Upper bound for `router.breaker.buckets`.
const MAX_BREAKER_BUCKETS: u32 = 1000;

fn syntax_error(text: &str, path: Option<&Path>, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let column = text.get(line_start..offset).map_or(1, |s| s.chars().count() + 1);
    ConfigError::Syntax {
        path: path.map_or_else(|| "<inline>".into(), Path::to_owned),
        line,
        column,
        message: e.message().trim().to_owned(),
    }
}

/// Error context: knows which keys an environment variable set.
struct Ctx {
    origins: Origins,
}

impl Ctx {
    fn tag(&self, e: ConfigError) -> ConfigError {
        match e {
            ConfigError::Invalid { key, reason, origin: None } => {
                let origin = self.origins.of(&key);
                ConfigError::Invalid { key, reason, origin }
            }
            other => other,
        }
    }
    fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        self.tag(ConfigError::invalid(key, reason))
    }
}

/// `listen`: the `--listen` flag, over everything else (see [`apply_overrides`]).
fn finish(
    mut root: Value,
    source: ConfigSource,
    base: &Path,
    env: &dyn EnvSource,
    listen: Option<&str>,
) -> Result<Config, ConfigError> {
    let has_backends = root.get("backends").and_then(Value::as_array).is_some_and(|b| !b.is_empty());
    if !has_backends {
        let found = discover::backends(env);
        if !found.is_empty() {
            if let Value::Object(map) = &mut root {
                map.insert("backends".into(), Value::Array(found));
            }
        }
    }
    let origins = apply_overrides(&mut root, env, listen)?;
    let ctx = Ctx { origins };
    let raw: RawFile = from_value(root, "").map_err(|e| ctx.tag(e))?;

    let server = server(&ctx, raw.server, base, env)?;
    let ledger = raw.ledger.map(|l| ledger(&ctx, l, base)).transpose()?;
    let cache = cache(&ctx, raw.cache.unwrap_or_default())?;
    let backends = raw
        .backends
        .into_iter()
        .enumerate()
        .map(|(i, v)| backend(&ctx, i, v, env))
        .collect::<Result<Vec<_>, _>>()?;
    check_unique_names(&ctx, &backends)?;
    if backends.is_empty() {
        let hint = match source {
            ConfigSource::Environment => format!(
                "no config file was found and none of {} is set; write a claudette.toml with [[backends]] \
                 (see `claudette config check --help`) or export a provider key",
                DISCOVERY_VARS.join(", ")
            ),
            _ => format!("the file has no [[backends]] and none of {} is set", DISCOVERY_VARS.join(", ")),
        };
        return Err(ConfigError::NoBackends { hint });
    }
    let router = router(&ctx, raw.router, &backends)?;
    Ok(Config { source, server, router, ledger, cache, backends, overrides: ctx.origins.vars() })
}

/// `[ledger]`. A section without `path` is refused rather than ignored: whoever wrote it
/// wants spend kept, and would find out only after the restart that lost it.
fn ledger(ctx: &Ctx, raw: RawLedger, base: &Path) -> Result<LedgerConfig, ConfigError> {
    let path = match raw.path {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => {
            return Err(ctx.invalid(
                "ledger.path",
                "missing: name the SQLite file the ledger keeps, e.g. path = \"/var/lib/claudette/ledger.db\"",
            ));
        }
    };
    let path = if path.is_relative() { base.join(path) } else { path };
    let retention_days = match raw.retention_days {
        None => DEFAULT_LEDGER_RETENTION_DAYS,
        Some(0) => return Err(ctx.invalid("ledger.retention_days", "must be at least 1")),
        Some(n) => u32::try_from(n).ok().filter(|d| *d <= MAX_LEDGER_RETENTION_DAYS).ok_or_else(|| {
            ctx.invalid(
                "ledger.retention_days",
                format!("{n} is more than the {MAX_LEDGER_RETENTION_DAYS} allowed"),
            )
        })?,
    };
    Ok(LedgerConfig { path, retention_days })
}

/// `[cache]`. The bounds are checked whether or not it is enabled: a section that is switched
/// on later (by `CLAUDETTE__CACHE__ENABLED=true`) must not then fail on a value written long ago.
fn cache(ctx: &Ctx, raw: RawCache) -> Result<CacheConfig, ConfigError> {
    let mut c = CacheConfig::default();
    c.enabled = raw.enabled.unwrap_or(c.enabled);
    let bounded = |key: &str, n: u64, max: u64| match n {
        0 => Err(ctx.invalid(key, "must be at least 1")),
        n if n > max => Err(ctx.invalid(key, format!("{n} is more than the {max} allowed"))),
        n => Ok(n),
    };
    if let Some(n) = raw.ttl_secs {
        c.ttl_secs = bounded("cache.ttl_secs", n, MAX_CACHE_TTL_SECS)?;
    }
    if let Some(n) = raw.max_mib {
        c.max_mib = bounded("cache.max_mib", n, MAX_CACHE_MAX_MIB)?;
    }
    Ok(c)
}

fn server(ctx: &Ctx, raw: RawServer, base: &Path, env: &dyn EnvSource) -> Result<ServerConfig, ConfigError> {
    let mut s = ServerConfig::default();
    if let Some(listen) = raw.listen {
        s.listen = parse_listen(&listen).ok_or_else(|| {
            ctx.invalid(
                "server.listen",
                format!("expected an address with a port such as 127.0.0.1:8080, found \"{listen}\""),
            )
        })?;
    }
    s.allow_unauthenticated_non_loopback = raw.allow_unauthenticated_non_loopback;
    s.admin_from_any = raw.admin_from_any;
    if let Some(n) = raw.max_body_bytes {
        s.max_body_bytes = positive_usize(ctx, "server.max_body_bytes", n)?;
    }
    if let Some(n) = raw.max_concurrency {
        s.max_concurrency = positive_usize(ctx, "server.max_concurrency", n)?;
    }
    if let Some(n) = raw.max_messages {
        s.max_messages = positive_usize(ctx, "server.max_messages", n)?;
    }
    if let Some(n) = raw.max_output_tokens {
        s.max_output_tokens = Some(positive_u32(ctx, "server.max_output_tokens", n)?);
    }
    if let Some(ms) = raw.shutdown_grace_ms {
        s.shutdown_grace = Duration::from_millis(ms);
    }
    if let Some(ms) = raw.header_read_timeout_ms {
        if ms == 0 {
            return Err(ctx.invalid("server.header_read_timeout_ms", "must be at least 1"));
        }
        // Longer is a typo (the gateway refuses it too).
        if ms > 86_400_000 {
            return Err(
                ctx.invalid("server.header_read_timeout_ms", format!("{ms} is more than a day (86400000)"))
            );
        }
        s.header_read_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = raw.count_tokens_timeout_ms {
        if ms == 0 || ms > 600_000 {
            return Err(ctx.invalid(
                "server.count_tokens_timeout_ms",
                format!("{ms} is not between 1 and 600000 (ten minutes)"),
            ));
        }
        s.count_tokens_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = raw.workers {
        // A thread each: a typo like 10000 would start ten thousand of them.
        if n > MAX_WORKERS {
            return Err(ctx.invalid("server.workers", format!("{n} is more than the {MAX_WORKERS} allowed")));
        }
        s.workers = Some(n as usize);
    }
    let resolve = |d: std::path::PathBuf| if d.is_relative() { base.join(d) } else { d };
    s.plugin_dirs = raw.plugin_dirs.into_iter().map(resolve).collect();
    s.plugin_copy_dir = raw.plugin_copy_dir.map(resolve);
    for (i, p) in raw.plugins.into_iter().enumerate() {
        let at = |f: &str| format!("server.plugins[{i}].{f}");
        if p.file.is_empty() || p.file.contains(['/', '\\']) || p.file == "." || p.file == ".." {
            return Err(
                ctx.invalid(at("file"), format!("\"{}\" must be a file name without a directory", p.file))
            );
        }
        let sha256 = parse_sha256(&p.sha256)
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            .ok_or_else(|| ctx.invalid(at("sha256"), "expected 64 hexadecimal digits (a SHA-256 digest)"))?;
        if s.plugin_allow.iter().any(|a| a.file == p.file) {
            return Err(ctx.invalid(at("file"), format!("\"{}\" is listed twice", p.file)));
        }
        s.plugin_allow.push(PluginAllow { file: p.file, sha256 });
    }

    let mut names = HashSet::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let key = gateway_key(ctx, i, k, env)?;
        if !names.insert(key.name.clone()) {
            return Err(
                ctx.invalid(format!("server.keys[{i}].name"), format!("\"{}\" is used twice", key.name))
            );
        }
        // The gateway takes the first entry whose hash matches, so a second entry for the same
        // key would be accepted and yet its name and limits would never apply.
        if let Some(j) = s.keys.iter().position(|o| o.sha256 == key.sha256) {
            let field = if key.key_env.is_some() { "key_env" } else { "sha256" };
            return Err(ctx.invalid(
                format!("server.keys[{i}].{field}"),
                format!(
                    "is the same key as server.keys[{j}] (\"{}\"); each key must be different",
                    s.keys[j].name
                ),
            ));
        }
        s.keys.push(key);
    }
    // S-08: a gateway reachable from other machines must authenticate, unless the operator
    // says in so many words that it need not.
    if !s.listen.ip().is_loopback() && s.keys.is_empty() && !s.allow_unauthenticated_non_loopback {
        return Err(ctx.invalid(
            "server.listen",
            format!(
                "{} is not a loopback address and no [[server.keys]] are configured; add a key, or set \
                 allow_unauthenticated_non_loopback = true to serve it without authentication",
                s.listen
            ),
        ));
    }
    Ok(s)
}

fn parse_listen(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    // `localhost:8080`: resolve, preferring IPv4 like the rest of the defaults.
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.eq_ignore_ascii_case("localhost") {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.into_iter().next()
}

fn positive_usize(ctx: &Ctx, key: &str, n: u64) -> Result<usize, ConfigError> {
    match usize::try_from(n) {
        Ok(0) => Err(ctx.invalid(key, "must be at least 1")),
        Ok(v) => Ok(v),
        Err(_) => Err(ctx.invalid(key, format!("{n} is too large for this machine"))),
    }
}

/// A count that must fit a `u32` and be at least 1.
fn positive_u32(ctx: &Ctx, key: &str, n: u64) -> Result<NonZeroU32, ConfigError> {
    let v =
        u32::try_from(n).map_err(|_| ctx.invalid(key, format!("{n} is too large (at most {})", u32::MAX)))?;
    NonZeroU32::new(v).ok_or_else(|| ctx.invalid(key, "must be at least 1"))
}

fn gateway_key(ctx: &Ctx, i: usize, k: RawKey, env: &dyn EnvSource) -> Result<GatewayKey, ConfigError> {
    let at = |field: &str| format!("server.keys[{i}].{field}");
    if k.key.is_some() {
        return Err(ctx.invalid(
            at("key"),
            "a literal key is not allowed in the config file; put the key in an environment variable and \
             set key_env = \"VARIABLE\", or give its sha256",
        ));
    }
    if k.name.trim().is_empty() {
        return Err(ctx.invalid(at("name"), "must not be empty"));
    }
    let rpm = k.rpm.map(|n| positive_u32(ctx, &at("rpm"), n)).transpose()?;
    let max_concurrent = k.max_concurrent.map(|n| positive_u32(ctx, &at("max_concurrent"), n)).transpose()?;
    match (k.sha256, k.key_env) {
        (Some(_), Some(_)) => Err(ctx.invalid(at("sha256"), "give either sha256 or key_env, not both")),
        (None, None) => {
            Err(ctx.invalid(at("key_env"), "each key needs key_env = \"VARIABLE\" or sha256 = \"<hex>\""))
        }
        (Some(hex), None) => {
            let sha256 = parse_sha256(&hex).ok_or_else(|| {
                ctx.invalid(at("sha256"), "expected 64 hexadecimal digits (a SHA-256 digest)")
            })?;
            Ok(GatewayKey { name: k.name, sha256, key_env: None, rpm, max_concurrent })
        }
        (None, Some(var)) => {
            check_var_name(ctx, &at("key_env"), &var)?;
            // Wrapped at once so the plain key is zeroed when it goes out of scope.
            let secret = SecretString::from(env.var(&var).ok_or_else(|| {
                ctx.invalid(at("key_env"), format!("environment variable {var} is not set"))
            })?);
            let len = secret.expose_secret().chars().count();
            if len < MIN_GATEWAY_KEY_LEN {
                return Err(ctx.invalid(
                    at("key_env"),
                    format!(
                        "the key in {var} has {len} characters; gateway keys need at least {MIN_GATEWAY_KEY_LEN} \
                         (generate one with e.g. `openssl rand -hex 24`)"
                    ),
                ));
            }
            // The gateway trims what a client presents and no client can send a control
            // character, so such a key would be configured yet never match.
            let plain = secret.expose_secret();
            if plain.chars().any(|c| c.is_ascii_control() && c != '\t') {
                return Err(ctx.invalid(
                    at("key_env"),
                    format!(
                        "the key in {var} contains control characters (a trailing newline?), which no client \
                         can send"
                    ),
                ));
            }
            if plain.trim_ascii() != plain {
                return Err(ctx.invalid(
                    at("key_env"),
                    format!(
                        "the key in {var} starts or ends with whitespace, which the gateway strips from what \
                         clients send, so it could never match"
                    ),
                ));
            }
            let sha256 = hash_key(plain);
            Ok(GatewayKey { name: k.name, sha256, key_env: Some(var), rpm, max_concurrent })
        }
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn check_var_name(ctx: &Ctx, key: &str, var: &str) -> Result<(), ConfigError> {
    let mut chars = var.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    // The value is not quoted back: what lands here by mistake is often the secret itself.
    if ok {
        Ok(())
    } else {
        Err(ctx.invalid(
            key,
            "is not an environment variable name (letters, digits and _, not starting with a digit); \
             give the name of the variable that holds the secret, not the secret",
        ))
    }
}

fn backend(ctx: &Ctx, i: usize, value: Value, env: &dyn EnvSource) -> Result<BackendConfig, ConfigError> {
    let at = |field: &str| format!("backends[{i}].{field}");
    let Value::Object(table) = value else {
        return Err(ctx.invalid(format!("backends[{i}]"), "expected a table"));
    };
    let (known, extra): (serde_json::Map<String, Value>, serde_json::Map<String, Value>) =
        table.into_iter().partition(|(k, _)| BACKEND_KEYS.contains(&k.as_str()));
    let raw: RawBackend =
        from_value(Value::Object(known), &format!("backends[{i}]")).map_err(|e| ctx.tag(e))?;

    if raw.api_key.is_some() {
        return Err(ctx.invalid(
            at("api_key"),
            "secrets are not allowed in the config file; put the key in an environment variable and set \
             api_key_env = \"VARIABLE\"",
        ));
    }
    if raw.provider.trim().is_empty() {
        return Err(ctx.invalid(at("provider"), "must not be empty"));
    }
    let name = raw.name.unwrap_or_else(|| raw.provider.clone());
    check_backend_name(ctx, &at("name"), &name)?;

    let mut settings = BackendSettings::new(name);
    if let Some(var) = &raw.api_key_env {
        check_var_name(ctx, &at("api_key_env"), var)?;
        let key: ApiKey = env
            .var(var)
            .ok_or_else(|| ctx.invalid(at("api_key_env"), format!("environment variable {var} is not set")))?
            .into();
        // The HTTP client refuses such a key on every request; say so now, when
        // `config check` can still catch it.
        if !claudette_core::adapter::is_header_value(key.expose()) {
            return Err(ctx.invalid(
                at("api_key_env"),
                format!(
                    "the value of {var} contains characters an HTTP header cannot carry (a trailing newline?)"
                ),
            ));
        }
        settings.api_key = Some(key);
    }
    if let Some(model) = raw.model {
        if model.trim().is_empty() {
            return Err(
                ctx.invalid(at("model"), "must not be empty (leave it out for the provider's default)")
            );
        }
        settings.model = Some(model);
    }
    if let Some(url) = raw.base_url {
        settings.base_url = Some(url);
        settings.parsed_base_url("").map_err(|e| {
            // The message quotes a URL that does not parse with its secrets hidden already.
            ctx.invalid(at("base_url"), strip_prefix(&e.message, &format!("backend `{}`: ", settings.name)))
        })?;
    }
    if let Some(p) = raw.pricing {
        let rates = [
            ("input_per_1k", Some(p.input_per_1k)),
            ("output_per_1k", Some(p.output_per_1k)),
            ("cache_read_per_1k", p.cache_read_per_1k),
            ("cache_write_per_1k", p.cache_write_per_1k),
            ("web_search_per_1k", p.web_search_per_1k),
            ("long_context.input_factor", p.long_context.as_ref().map(|l| l.input_factor)),
            ("long_context.output_factor", p.long_context.as_ref().map(|l| l.output_factor)),
            ("fast_factor", p.fast_factor),
        ];
        for (field, rate) in rates {
            if let Some(r) = rate.filter(|r| !r.is_finite() || *r < 0.0) {
                return Err(
                    ctx.invalid(at(&format!("pricing.{field}")), format!("must be a number ≥ 0, found {r}"))
                );
            }
        }
        settings.pricing = Some(Pricing {
            input_per_1k: p.input_per_1k,
            output_per_1k: p.output_per_1k,
            cache_read_per_1k: p.cache_read_per_1k,
            cache_write_per_1k: p.cache_write_per_1k,
            web_search_per_1k: p.web_search_per_1k,
            long_context: p.long_context.map(|l| LongContext {
                above_input_tokens: l.above_input_tokens,
                input_factor: l.input_factor,
                output_factor: l.output_factor,
            }),
            fast_factor: p.fast_factor,
        });
    }
    let mut t = Timeouts::default();
    for (field, ms, slot) in [
        ("connect_ms", raw.timeouts.connect_ms, &mut t.connect),
        ("first_byte_ms", raw.timeouts.first_byte_ms, &mut t.first_byte),
        ("idle_ms", raw.timeouts.idle_ms, &mut t.idle),
        ("total_ms", raw.timeouts.total_ms, &mut t.total),
    ] {
        match ms {
            Some(0) => return Err(ctx.invalid(at(&format!("timeouts.{field}")), "must be greater than 0")),
            Some(ms) => *slot = Duration::from_millis(ms),
            None => {}
        }
    }
    settings.timeouts = t;
    if let Some(q) = raw.quality {
        if !(0.0..=1.0).contains(&q) {
            return Err(ctx.invalid(at("quality"), format!("must be within 0..1, found {q}")));
        }
        settings.quality = Some(q);
    }
    settings.priority = raw.priority;
    settings.enabled = raw.enabled;
    settings.region = raw.region;
    settings.tags = raw.tags;
    settings.extra = extra;
    Ok(BackendConfig { provider: raw.provider, settings, api_key_env: raw.api_key_env })
}

/// Names appear in headers, metric labels and URLs: keep them to a safe alphabet.
fn check_backend_name(ctx: &Ctx, key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ctx
            .invalid(key, format!("\"{name}\" must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'")))
    }
}

fn check_unique_names(ctx: &Ctx, backends: &[BackendConfig]) -> Result<(), ConfigError> {
    for (i, b) in backends.iter().enumerate() {
        if let Some(j) = backends[..i].iter().position(|o| o.name() == b.name()) {
            return Err(ctx.invalid(
                format!("backends[{i}].name"),
                format!(
                    "\"{}\" is already the name of backends[{j}]; backend names must be unique",
                    b.name()
                ),
            ));
        }
    }
    Ok(())
}

fn router(ctx: &Ctx, raw: RawRouter, backends: &[BackendConfig]) -> Result<RouterConfig, ConfigError> {
    let mut o = match raw.optimize_for {
        Some(t) => RouterOptions::for_target(t),
        None => RouterOptions::default(),
    };
    for (field, value, slot) in [
        ("cost_weight", raw.cost_weight, &mut o.cost_weight),
        ("latency_weight", raw.latency_weight, &mut o.latency_weight),
        ("availability_weight", raw.availability_weight, &mut o.availability_weight),
        ("quality_weight", raw.quality_weight, &mut o.quality_weight),
    ] {
        if let Some(w) = value {
            if !w.is_finite() || w < 0.0 {
                return Err(
                    ctx.invalid(format!("router.{field}"), format!("must be a number ≥ 0, found {w}"))
                );
            }
            *slot = w;
        }
    }
    // All-zero weights make every score 0, so scoring silently stops choosing; an infinite sum
    // makes every score infinite, with the same effect. A failover chain replaces scoring, so
    // there the weights do not matter.
    let sum = o.cost_weight + o.latency_weight + o.availability_weight + o.quality_weight;
    if raw.failover_chain.is_empty() && !(sum.is_finite() && sum > 0.0) {
        return Err(ctx.invalid(
            "router",
            format!(
                "cost_weight, latency_weight, availability_weight and quality_weight add up to {sum}; \
                 they must add up to a finite number greater than 0 (or set a failover_chain)"
            ),
        ));
    }
    if let Some(f) = raw.fallback_enabled {
        o.fallback_enabled = f;
    }
    if let Some(n) = raw.max_attempts {
        if n == 0 {
            return Err(ctx.invalid("router.max_attempts", "must be at least 1"));
        }
        o.max_attempts = n;
    }
    let r = raw.retry;
    let ms = Duration::from_millis;
    let p = &mut o.retry;
    if let Some(v) = r.base_backoff_ms {
        p.base_backoff = ms(v);
    }
    if let Some(v) = r.max_backoff_ms {
        p.max_backoff = ms(v);
    }
    if let Some(v) = r.max_hint_ms {
        p.max_hint = ms(v);
    }
    if let Some(v) = r.retry_possibly_accepted {
        p.retry_possibly_accepted = v;
    }
    if let Some(v) = r.request_deadline_ms {
        p.request_deadline = ms(v);
    }
    if let Some(v) = r.first_token_deadline_ms {
        p.first_token_deadline = ms(v);
    }
    if let Some(v) = r.budget_ratio {
        if !v.is_finite() || v < 0.0 {
            return Err(ctx.invalid("router.retry.budget_ratio", format!("must be a number ≥ 0, found {v}")));
        }
        p.budget_ratio = v;
    }
    if let Some(v) = r.budget_min {
        p.budget_min = v;
    }
    if let Some(v) = r.budget_window_ms {
        p.budget_window = ms(v);
    }
    if p.base_backoff > p.max_backoff {
        return Err(ctx.invalid(
            "router.retry.base_backoff_ms",
            format!(
                "{} ms is more than max_backoff_ms ({} ms)",
                p.base_backoff.as_millis(),
                p.max_backoff.as_millis()
            ),
        ));
    }
    for (field, d) in
        [("request_deadline_ms", p.request_deadline), ("first_token_deadline_ms", p.first_token_deadline)]
    {
        if d.is_zero() {
            return Err(ctx.invalid(format!("router.retry.{field}"), "must be greater than 0"));
        }
    }
    if let Some(b) = raw.breaker {
        if !(0.0..=1.0).contains(&b.failure_rate) {
            return Err(ctx.invalid(
                "router.breaker.failure_rate",
                format!("must be within 0..1, found {}", b.failure_rate),
            ));
        }
        // The breaker opens when failures / calls ≥ failure_rate, also after a success: at 0
        // every backend would open once it had served min_calls requests, failures or not.
        if b.failure_rate == 0.0 {
            return Err(ctx.invalid(
                "router.breaker.failure_rate",
                "must be greater than 0: at 0 the breaker opens after min_calls calls even when none \
                 failed (1 opens it only when every call failed)",
            ));
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            return Err(
                ctx.invalid("router.breaker.jitter", format!("must be within 0..1, found {}", b.jitter))
            );
        }
        if b.buckets == 0 {
            return Err(ctx.invalid("router.breaker.buckets", "must be at least 1"));
        }
        // Every backend's breaker allocates this many counters up front: a typo such as
        // 4000000000 would abort the process on allocation when the router is built.
        if b.buckets > MAX_BREAKER_BUCKETS {
            return Err(ctx.invalid(
                "router.breaker.buckets",
                format!("{} is more than the {MAX_BREAKER_BUCKETS} allowed", b.buckets),
            ));
        }
        if b.window.is_zero() {
            return Err(ctx.invalid("router.breaker.window_ms", "must be greater than 0"));
        }
        if b.open_base > b.open_max {
            return Err(ctx.invalid(
                "router.breaker.open_base_ms",
                format!(
                    "{} ms is more than open_max_ms ({} ms)",
                    b.open_base.as_millis(),
                    b.open_max.as_millis()
                ),
            ));
        }
        o.breaker = b;
    }

    let mut seen = HashSet::new();
    for (i, name) in raw.failover_chain.iter().enumerate() {
        let key = format!("router.failover_chain[{i}]");
        if !backends.iter().any(|b| b.name() == name) {
            let known: Vec<&str> = backends.iter().map(BackendConfig::name).collect();
            return Err(
                ctx.invalid(key, format!("no backend named \"{name}\" (backends: {})", known.join(", ")))
            );
        }
        if !seen.insert(name.as_str()) {
            return Err(ctx.invalid(key, format!("\"{name}\" is listed twice")));
        }
    }
    Ok(RouterConfig { options: o, failover_chain: raw.failover_chain })
}

fn strip_prefix(message: &str, prefix: &str) -> String {
    message.strip_prefix(prefix).unwrap_or(message).to_owned()
}
