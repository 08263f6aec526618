#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! claudette-config: parsing, overrides, discovery, every error with its key path, and that no
//! secret reaches `Debug` or an error message.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use claudette_config::{Config, ConfigError, ConfigSource, hash_key};
use claudette_core::{BreakerState, LongContext, Registry};

// Link the providers so their link-time registrations are visible to `Registry::linked()`.
use claudette_anthropic as _;
use claudette_gemini as _;
use claudette_ollama as _;
use claudette_openai as _;
use claudette_qwen as _;

const OPENAI_CANARY: &str = "sk-canary-openai-7f3a9b1c2d";
const GATEWAY_CANARY: &str = "gw-canary-4c1e8f2a9b7d6e5f";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn registry() -> Registry {
    Registry::linked().unwrap()
}

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_str(toml, &env(vars))
}

/// Loads and builds; returns the error text.
fn error_of(toml: &str, vars: &[(&str, &str)]) -> String {
    match load(toml, vars).and_then(|c| c.build_router(&registry()).map(|_| ())) {
        Ok(()) => panic!("expected an error for:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

const FULL: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 2048
max_concurrency = 7
shutdown_grace_ms = 1500
header_read_timeout_ms = 2500
count_tokens_timeout_ms = 750
plugin_dirs = ["plugins"]

[[server.keys]]
name = "team-a"
key_env = "CLAUDETTE_KEY_TEAM_A"

[[server.keys]]
name = "team-b"
sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

[router]
cost_weight = 0.6
latency_weight = 0.2
availability_weight = 0.1
quality_weight = 0.1
fallback_enabled = false
max_attempts = 4
failover_chain = ["claude", "openai-mini"]

[router.retry]
base_backoff_ms = 100
max_backoff_ms = 2000

[router.breaker]
consecutive_failures = 2
open_base_ms = 1000
open_max_ms = 4000

[[backends]]
name = "openai-mini"
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"
region = "us"
tags = ["general", "cheap"]
priority = 2
stream_include_usage = false
pricing = { input_per_1k = 0.5, output_per_1k = 1.5, cache_read_per_1k = 0.25, web_search_per_1k = 25, fast_factor = 2, long_context = { above_input_tokens = 128000, input_factor = 2, output_factor = 1.5 } }
timeouts = { connect_ms = 1234, total_ms = 9000 }

[[backends]]
name = "claude"
provider = "anthropic"
base_url = "http://127.0.0.1:9/"
quality = 0.9

[[backends]]
provider = "ollama"
model = "llama3.2"
num_ctx = 4096
enabled = false
"#;

fn full_env() -> Vec<(&'static str, &'static str)> {
    vec![("OPENAI_API_KEY", OPENAI_CANARY), ("CLAUDETTE_KEY_TEAM_A", GATEWAY_CANARY)]
}

#[test]
fn parses_every_section() {
    let c = load(FULL, &full_env()).unwrap();
    assert_eq!(c.source, ConfigSource::Text);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:0");
    assert_eq!(c.server.max_body_bytes, 2048);
    assert_eq!(c.server.max_concurrency, 7);
    assert_eq!(c.server.shutdown_grace, Duration::from_millis(1500));
    assert_eq!(c.server.header_read_timeout, Duration::from_millis(2500));
    assert_eq!(c.server.count_tokens_timeout, Duration::from_millis(750));
    assert_eq!(c.server.plugin_dirs, vec![Path::new("plugins").to_owned()]);
    assert_eq!(c.server.keys.len(), 2);
    assert_eq!(c.server.keys[0].sha256, hash_key(GATEWAY_CANARY));
    assert_eq!(c.server.keys[0].key_env.as_deref(), Some("CLAUDETTE_KEY_TEAM_A"));
    assert_eq!(c.server.keys[1].sha256, hash_key("hello"));

    let o = &c.router.options;
    assert_eq!(
        (o.cost_weight, o.latency_weight, o.availability_weight, o.quality_weight),
        (0.6, 0.2, 0.1, 0.1)
    );
    assert!(!o.fallback_enabled);
    assert_eq!(o.max_attempts, 4);
    assert_eq!(o.retry.base_backoff, Duration::from_millis(100));
    assert_eq!(o.retry.max_backoff, Duration::from_secs(2));
    assert_eq!(o.breaker.consecutive_failures, 2);
    assert_eq!(o.breaker.open_base, Duration::from_secs(1));
    assert_eq!(c.router.failover_chain, vec!["claude", "openai-mini"]);

    assert_eq!(c.backends.len(), 3);
    let b = &c.backends[0];
    assert_eq!((b.provider.as_str(), b.name()), ("openai", "openai-mini"));
    assert_eq!(b.settings.api_key.as_ref().map(|k| k.expose()), Some(OPENAI_CANARY));
    assert_eq!(b.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!(b.settings.tags, vec!["general", "cheap"]);
    assert_eq!(b.settings.priority, 2);
    assert_eq!(b.settings.extra.get("stream_include_usage"), Some(&serde_json::json!(false)));
    let p = b.settings.pricing.unwrap();
    assert_eq!(
        (p.input_per_1k, p.output_per_1k, p.cache_read_per_1k, p.cache_write_per_1k, p.web_search_per_1k),
        (0.5, 1.5, Some(0.25), None, Some(25.0))
    );
    let long = LongContext { above_input_tokens: 128_000, input_factor: 2.0, output_factor: 1.5 };
    assert_eq!((p.long_context, p.fast_factor), (Some(long), Some(2.0)));
    assert_eq!(b.settings.timeouts.connect, Duration::from_millis(1234));
    assert_eq!(b.settings.timeouts.total, Duration::from_secs(9));
    assert_eq!(b.settings.timeouts.idle, Duration::from_secs(30), "unset timeouts keep their defaults");
    assert_eq!(c.backends[1].settings.quality, Some(0.9));
    // A backend without a name is named after its provider.
    assert_eq!(c.backends[2].name(), "ollama");
    assert!(!c.backends[2].settings.enabled);
}

#[test]
fn builds_a_router_with_options_and_chain() {
    let c = load(FULL, &full_env()).unwrap();
    let router = c.build_router(&registry()).unwrap();
    assert_eq!(router.backend_names(), vec!["openai-mini", "claude", "ollama"]);
    assert_eq!(router.options().cost_weight, 0.6);
    assert_eq!(router.options().breaker.consecutive_failures, 2);
    let info = router.backend("openai-mini").unwrap().info().clone();
    assert_eq!(info.model, "gpt-4o-mini");
    assert_eq!(info.pricing.input_per_1k, 0.5);
    assert_eq!(router.breaker("claude").unwrap().state(), BreakerState::Closed);
    // The chain puts `claude` first and leaves the others out.
    let pick = router.select(&claudette_core::ChatRequest::prompt("hi"), &[]).unwrap();
    assert_eq!(pick.backend.name(), "claude");
    assert_eq!(pick.decision.candidates.len(), 2);
}

#[test]
fn no_secret_in_debug_or_errors() {
    let c = load(FULL, &full_env()).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(OPENAI_CANARY), "{dbg}");
    assert!(!dbg.contains(GATEWAY_CANARY), "{dbg}");
    assert!(dbg.contains("REDACTED"));
    // A literal secret in the file is refused without being echoed.
    let e = error_of("[[backends]]\nprovider = \"openai\"\napi_key = \"sk-canary-literal-123456\"\n", &[]);
    assert!(!e.contains("sk-canary-literal"), "{e}");
    let e = error_of(
        "[[server.keys]]\nname = \"a\"\nkey = \"gw-canary-literal-1234567\"\n[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n",
        &[],
    );
    assert!(!e.contains("gw-canary-literal"), "{e}");
    // A too-short gateway key is reported by length, never by value.
    let e = error_of(
        "[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n",
        &[("K", "short-canary")],
    );
    assert!(e.contains("server.keys[0].key_env") && !e.contains("short-canary"), "{e}");
}

#[test]
fn environment_overrides_apply_and_are_named() {
    let mut vars = full_env();
    vars.extend([
        ("CLAUDETTE_LISTEN", "127.0.0.1:9123"),
        ("CLAUDETTE__ROUTER__COST_WEIGHT", "0.7"),
        ("CLAUDETTE__ROUTER__MAX_ATTEMPTS", "2"),
        ("CLAUDETTE__ROUTER__RETRY__BASE_BACKOFF_MS", "50"),
        ("CLAUDETTE__BACKENDS__OPENAI_MINI__MODEL", "gpt-4o"),
        ("CLAUDETTE__BACKENDS__2__ENABLED", "true"),
        ("CLAUDETTE__SERVER__MAX_CONCURRENCY", "3"),
    ]);
    let c = load(FULL, &vars).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9123");
    assert_eq!(c.server.max_concurrency, 3);
    assert_eq!(c.router.options.cost_weight, 0.7);
    assert_eq!(c.router.options.max_attempts, 2);
    assert_eq!(c.router.options.retry.base_backoff, Duration::from_millis(50));
    assert_eq!(c.backends[0].settings.model.as_deref(), Some("gpt-4o"));
    assert!(c.backends[2].settings.enabled);
    assert!(c.overrides.contains(&"CLAUDETTE__ROUTER__COST_WEIGHT".to_owned()), "{:?}", c.overrides);
    assert!(c.overrides.contains(&"CLAUDETTE_LISTEN".to_owned()));

    // An empty override counts as unset, like every empty variable: the file's value stays.
    let c = load(
        FULL,
        &[
            full_env(),
            vec![("CLAUDETTE__ROUTER__MAX_ATTEMPTS", ""), ("CLAUDETTE__BACKENDS__CLAUDE__MODEL", "")],
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(c.router.options.max_attempts, load(FULL, &full_env()).unwrap().router.options.max_attempts);
    assert!(c.overrides.is_empty(), "{:?}", c.overrides);

    // A string key stays a string even when the value looks like a number.
    let c = load(FULL, &[full_env(), vec![("CLAUDETTE__BACKENDS__CLAUDE__MODEL", "42")]].concat()).unwrap();
    assert_eq!(c.backends[1].settings.model.as_deref(), Some("42"));
}

#[test]
fn override_errors_name_the_variable() {
    let vars = [full_env(), vec![("CLAUDETTE__ROUTER__MAX_ATTEMPTS", "lots")]].concat();
    let e = load(FULL, &vars).unwrap_err().to_string();
    assert_eq!(
        e,
        "router.max_attempts: expected a whole number ≥ 0, found string \"lots\" \
         (set by environment variable CLAUDETTE__ROUTER__MAX_ATTEMPTS)"
    );
    let vars = [full_env(), vec![("CLAUDETTE__BACKENDS__NOPE__MODEL", "x")]].concat();
    let e = load(FULL, &vars).unwrap_err().to_string();
    assert!(e.starts_with("environment variable CLAUDETTE__BACKENDS__NOPE__MODEL: no backend named"), "{e}");
    let vars = [full_env(), vec![("CLAUDETTE__ROUTER", "x")]].concat();
    let e = load(FULL, &vars).unwrap_err().to_string();
    assert!(e.contains("CLAUDETTE__ROUTER: expected CLAUDETTE__<SECTION>__<KEY>"), "{e}");
    let vars = [full_env(), vec![("CLAUDETTE_LISTEN", "nowhere")]].concat();
    let e = load(FULL, &vars).unwrap_err().to_string();
    assert!(
        e.starts_with("server.listen: expected an address")
            && e.ends_with("(set by environment variable CLAUDETTE_LISTEN)"),
        "{e}"
    );
}

#[test]
fn discovers_backends_from_the_environment() {
    let vars = env(&[
        ("OPENAI_API_KEY", OPENAI_CANARY),
        ("GOOGLE_API_KEY", "g-key"),
        ("OLLAMA_HOST", "127.0.0.1:11999"),
        ("OLLAMA_MODEL", "qwen2.5:7b"),
    ]);
    let c = Config::discover(&vars).unwrap();
    assert_eq!(c.source, ConfigSource::Environment);
    let got: Vec<(&str, &str, Option<&str>)> =
        c.backends.iter().map(|b| (b.name(), b.provider.as_str(), b.settings.model.as_deref())).collect();
    assert_eq!(
        got,
        vec![
            ("openai", "openai", Some("gpt-4o-mini")),
            ("gemini", "gemini", Some("gemini-2.5-flash")),
            ("ollama", "ollama", Some("qwen2.5:7b")),
        ]
    );
    assert_eq!(c.backends[1].api_key_env.as_deref(), Some("GOOGLE_API_KEY"));
    assert_eq!(c.backends[2].settings.base_url.as_deref(), Some("http://127.0.0.1:11999"));
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    let router = c.build_router(&registry()).unwrap();
    assert_eq!(router.backend_names(), vec!["openai", "gemini", "ollama"]);

    // Anthropic alone, with an override applied to the discovered backend.
    let vars = env(&[
        ("ANTHROPIC_API_KEY", "a-key"),
        ("CLAUDETTE__BACKENDS__ANTHROPIC__MODEL", "claude-sonnet-4-5"),
    ]);
    let c = Config::from_env(&vars).unwrap();
    assert_eq!(c.backends.len(), 1);
    assert_eq!(c.backends[0].settings.model.as_deref(), Some("claude-sonnet-4-5"));

    // A file without [[backends]] gets the discovered ones.
    let c = load("[server]\nlisten = \"127.0.0.1:7000\"\n", &[("OPENAI_API_KEY", "k")]).unwrap();
    assert_eq!(c.backends[0].name(), "openai");
    assert_eq!(c.server.listen.port(), 7000);
}

#[test]
fn nothing_to_route_to_is_an_error_that_says_what_to_set() {
    let e = Config::discover(&env(&[])).unwrap_err();
    assert!(matches!(e, ConfigError::NoBackends { .. }));
    let e = e.to_string();
    assert!(e.contains("OPENAI_API_KEY") && e.contains("OLLAMA_HOST"), "{e}");
    let e = load("[server]\n", &[]).unwrap_err().to_string();
    assert!(e.starts_with("no backends configured: the file has no [[backends]]"), "{e}");
}

#[test]
fn load_prefers_explicit_path_then_config_var() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[server]\nplugin_dirs = [\"p\"]\n[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), &env(&[])).unwrap();
    assert_eq!(c.source, ConfigSource::File(path.clone()));
    assert_eq!(c.server.plugin_dirs, vec![dir.path().join("p")], "plugin dirs are relative to the file");
    let c = Config::load(None, &env(&[("CLAUDETTE_CONFIG", path.to_str().unwrap())])).unwrap();
    assert_eq!(c.source, ConfigSource::File(path.clone()));
    let missing = dir.path().join("missing.toml");
    let e = Config::load(Some(&missing), &env(&[])).unwrap_err().to_string();
    assert!(e.starts_with("cannot read config file") && e.contains("missing.toml"), "{e}");
}

/// One row per error the loader or the builder can report: the TOML, the environment, and the
/// exact message (or its start, for messages that list providers).
#[test]
fn every_error_names_its_key_path_and_reason() {
    let ollama = "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n";
    let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    type Case = (String, Vec<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            format!(
                "{ollama}[[backends]]\nname = \"b\"\nprovider = \"ollama\"\nmodel = \"m\"\npricing = {{ input_per_1k = \"cheap\", output_per_1k = 1 }}\n"
            ),
            vec![],
            "backends[1].pricing.input_per_1k: expected a number, found string \"cheap\"",
        ),
        (
            "[[backends]]\nprovider = \"opnai\"\n".into(),
            vec![],
            "backends[0].provider: unknown provider \"opnai\" (known: anthropic, gemini, ollama, openai, qwen",
        ),
        (
            format!(
                "[router]\nfailover_chain = [\"ollama\", \"b\", \"x\"]\n{ollama}[[backends]]\nname = \"b\"\nprovider = \"ollama\"\nmodel = \"m\"\n"
            ),
            vec![],
            "router.failover_chain[2]: no backend named \"x\" (backends: ollama, b)",
        ),
        (
            format!("[router]\nfailover_chain = [\"ollama\", \"ollama\"]\n{ollama}"),
            vec![],
            "router.failover_chain[1]: \"ollama\" is listed twice",
        ),
        (
            "[[backends]]\nprovider = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n".into(),
            vec![],
            "backends[0].api_key_env: environment variable OPENAI_API_KEY is not set",
        ),
        (
            "[[backends]]\nprovider = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n".into(),
            vec![("OPENAI_API_KEY", "")],
            "backends[0].api_key_env: environment variable OPENAI_API_KEY is not set",
        ),
        (
            "[[backends]]\nprovider = \"openai\"\napi_key_env = \"not a var\"\n".into(),
            vec![],
            "backends[0].api_key_env: is not an environment variable name",
        ),
        (
            format!("{ollama}{ollama}"),
            vec![],
            "backends[1].name: \"ollama\" is already the name of backends[0]; backend names must be unique",
        ),
        (
            format!("[router]\ncost_weight = -0.1\n{ollama}"),
            vec![],
            "router.cost_weight: must be a number ≥ 0, found -0.1",
        ),
        (
            format!("[router]\ncost_wieght = 1\n{ollama}"),
            vec![],
            "router.cost_wieght: unknown key (known: optimize_for, cost_weight, latency_weight, availability_weight, \
             quality_weight, fallback_enabled, max_attempts, failover_chain, retry, breaker)",
        ),
        (
            format!("[router]\noptimize_for = \"cheapest\"\n{ollama}"),
            vec![],
            "router.optimize_for: unknown value \"cheapest\" (expected one of cost, speed, quality, balanced)",
        ),
        (format!("[router]\nmax_attempts = 0\n{ollama}"), vec![], "router.max_attempts: must be at least 1"),
        (
            format!("[router.retry]\nbase_backoff_ms = 9000\nmax_backoff_ms = 100\n{ollama}"),
            vec![],
            "router.retry.base_backoff_ms: 9000 ms is more than max_backoff_ms (100 ms)",
        ),
        (
            format!("[router.breaker]\nfailure_rate = 1.5\n{ollama}"),
            vec![],
            "router.breaker.failure_rate: must be within 0..1, found 1.5",
        ),
        (
            format!("[router.breaker]\nwindow = 5\n{ollama}"),
            vec![],
            "router.breaker.window: unknown key (known: window_ms, buckets, consecutive_failures, min_calls, \
             failure_rate, open_base_ms, open_max_ms, jitter, probe_permits, probe_timeout_ms, \
             half_open_max_wait_ms, auth_open_ms, quota_open_ms, default_throttle_ms, max_throttle_ms)",
        ),
        ("[[backends]]\nname = \"x\"\n".into(), vec![], "backends[0].provider: is required"),
        (
            "[[backends]]\nprovider = \"openai\"\napi_key = \"sk-1\"\n".into(),
            vec![],
            "backends[0].api_key: secrets are not allowed in the config file; put the key in an environment \
             variable and set api_key_env = \"VARIABLE\"",
        ),
        (
            "[[backends]]\nname = \"has space\"\nprovider = \"ollama\"\nmodel = \"m\"\n".into(),
            vec![],
            "backends[0].name: \"has space\" must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'",
        ),
        (
            "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\nbase_url = \"ftp://x\"\n".into(),
            vec![],
            "backends[0].base_url: base_url must be http or https, got `ftp`",
        ),
        (
            "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\nquality = 2\n".into(),
            vec![],
            "backends[0].quality: must be within 0..1, found 2",
        ),
        (
            "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\ntimeouts = { connect_ms = 0 }\n".into(),
            vec![],
            "backends[0].timeouts.connect_ms: must be greater than 0",
        ),
        (
            "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\ntimeouts = { conect_ms = 5 }\n".into(),
            vec![],
            "backends[0].timeouts.conect_ms: unknown key (known: connect_ms, first_byte_ms, idle_ms, total_ms)",
        ),
        (
            "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\nnum_ctxx = 5\n".into(),
            vec![],
            "backends[0].num_ctxx: unknown setting for provider \"ollama\" (known: num_ctx, keep_alive)",
        ),
        ("[[backends]]\nprovider = \"ollama\"\n".into(), vec![], "backends[0]: ollama needs `model`"),
        (
            "[[backends]]\nprovider = \"openai\"\n".into(),
            vec![],
            "backends[0]: api.openai.com needs an API key",
        ),
        ("backends = [1]\n".into(), vec![], "backends[0]: expected a table"),
        (
            format!("[server]\nlisten = \"0.0.0.0:8080\"\n{ollama}"),
            vec![],
            "server.listen: 0.0.0.0:8080 is not a loopback address and no [[server.keys]] are configured; add a key, \
             or set allow_unauthenticated_non_loopback = true to serve it without authentication",
        ),
        (
            format!("[server]\nlisten = \"8080\"\n{ollama}"),
            vec![],
            "server.listen: expected an address with a port such as 127.0.0.1:8080, found \"8080\"",
        ),
        (
            format!("[server]\nmax_body_bytes = 0\n{ollama}"),
            vec![],
            "server.max_body_bytes: must be at least 1",
        ),
        (
            format!("[server]\nmax_body_bytes = -5\n{ollama}"),
            vec![],
            "server.max_body_bytes: expected a whole number ≥ 0, found integer `-5`",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nkey = \"k\"\n{ollama}"),
            vec![],
            "server.keys[0].key: a literal key is not allowed in the config file; put the key in an environment \
             variable and set key_env = \"VARIABLE\", or give its sha256",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nsha256 = \"abc\"\n{ollama}"),
            vec![],
            "server.keys[0].sha256: expected 64 hexadecimal digits (a SHA-256 digest)",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\n{ollama}"),
            vec![],
            "server.keys[0].key_env: each key needs key_env = \"VARIABLE\" or sha256 = \"<hex>\"",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n{ollama}"),
            vec![],
            "server.keys[0].key_env: environment variable K is not set",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n{ollama}"),
            vec![("K", "0123456789")],
            "server.keys[0].key_env: the key in K has 10 characters; gateway keys need at least 16",
        ),
        (
            format!(
                "[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n{ollama}"
            ),
            vec![("K", "0123456789abcdef0123")],
            "server.keys[1].name: \"a\" is used twice",
        ),
        (format!("[server]\nmax_messages = 0\n{ollama}"), vec![], "server.max_messages: must be at least 1"),
        (
            format!("[server]\nmax_messages = -3\n{ollama}"),
            vec![],
            "server.max_messages: expected a whole number ≥ 0, found integer `-3`",
        ),
        (
            format!("[server]\nheader_read_timeout_ms = 0\n{ollama}"),
            vec![],
            "server.header_read_timeout_ms: must be at least 1",
        ),
        (
            format!("[server]\nheader_read_timeout_ms = 100000000\n{ollama}"),
            vec![],
            "server.header_read_timeout_ms: 100000000 is more than a day (86400000)",
        ),
        (
            format!("[server]\ncount_tokens_timeout_ms = 0\n{ollama}"),
            vec![],
            "server.count_tokens_timeout_ms: 0 is not between 1 and 600000 (ten minutes)",
        ),
        (
            format!("[server]\ncount_tokens_timeout_ms = 600001\n{ollama}"),
            vec![],
            "server.count_tokens_timeout_ms: 600001 is not between 1 and 600000 (ten minutes)",
        ),
        (
            format!("[server]\nworkers = 5000\n{ollama}"),
            vec![],
            "server.workers: 5000 is more than the 1024 allowed",
        ),
        (
            format!("[server]\nmax_output_tokens = 0\n{ollama}"),
            vec![],
            "server.max_output_tokens: must be at least 1",
        ),
        (
            format!("[server]\nmax_output_tokens = 5000000000\n{ollama}"),
            vec![],
            "server.max_output_tokens: 5000000000 is too large (at most 4294967295)",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nsha256 = \"{hello}\"\nrpm = 0\n{ollama}"),
            vec![],
            "server.keys[0].rpm: must be at least 1",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nsha256 = \"{hello}\"\nrpm = -60\n{ollama}"),
            vec![],
            "server.keys[0].rpm: expected a whole number ≥ 0, found integer `-60`",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nsha256 = \"{hello}\"\nmax_concurrent = 0\n{ollama}"),
            vec![],
            "server.keys[0].max_concurrent: must be at least 1",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nsha256 = \"{hello}\"\nmax_concurrent = \"8\"\n{ollama}"),
            vec![],
            "server.keys[0].max_concurrent: expected a whole number ≥ 0, found string \"8\"",
        ),
        (
            format!("[[server.keys]]\nname = \"a\"\nsha256 = \"{hello}\"\nrpn = 5\n{ollama}"),
            vec![],
            "server.keys[0].rpn: unknown key (known: name, sha256, key_env, rpm, max_concurrent, key)",
        ),
        (
            format!("[sever]\nlisten = \"x\"\n{ollama}"),
            vec![],
            "sever: unknown key (known: server, router, backends, ledger, cache)",
        ),
    ];
    for (toml, vars, want) in cases {
        let got = error_of(&toml, &vars);
        assert!(got.starts_with(want), "for\n{toml}\nwant: {want}\ngot:  {got}");
    }
}

#[test]
fn key_limits_and_request_caps_parse_and_default_to_off() {
    let c = load(
        "[server]\nmax_messages = 50\nmax_output_tokens = 4096\n\
         [[server.keys]]\nname = \"metered\"\nkey_env = \"K\"\nrpm = 600\nmax_concurrent = 8\n\
         [[server.keys]]\nname = \"open\"\nsha256 = \"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"\n\
         [[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n",
        &[("K", GATEWAY_CANARY)],
    )
    .unwrap();
    assert_eq!(c.server.max_messages, 50);
    assert_eq!(c.server.max_output_tokens.map(|n| n.get()), Some(4096));
    let metered = &c.server.keys[0];
    assert_eq!((metered.rpm.map(|n| n.get()), metered.max_concurrent.map(|n| n.get())), (Some(600), Some(8)));
    let open = &c.server.keys[1];
    assert_eq!((open.rpm, open.max_concurrent), (None, None));
    let debug = format!("{:?}", c.server);
    assert!(debug.contains("600") && !debug.contains(GATEWAY_CANARY), "{debug}");

    // Defaults: 1000 messages, no max_tokens cap.
    let d = load("[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n", &[]).unwrap();
    assert_eq!(d.server.max_messages, 1000);
    assert_eq!(d.server.max_output_tokens, None);

    // Environment overrides reach them like any other key.
    let o = load(
        "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n",
        &[("CLAUDETTE__SERVER__MAX_OUTPUT_TOKENS", "256"), ("CLAUDETTE__SERVER__MAX_MESSAGES", "9")],
    )
    .unwrap();
    assert_eq!((o.server.max_messages, o.server.max_output_tokens.map(|n| n.get())), (9, Some(256)));
}

#[test]
fn workers_default_to_one_per_core_and_can_be_set() {
    let d = load("[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n", &[]).unwrap();
    assert_eq!(d.server.workers, None);
    assert_eq!(d.server.header_read_timeout, Duration::from_secs(30));
    assert_eq!(d.server.count_tokens_timeout, Duration::from_secs(5));
    let c = load("[server]\nworkers = 0\n[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n", &[]).unwrap();
    assert_eq!(c.server.workers, Some(0));
    let o =
        load("[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n", &[("CLAUDETTE__SERVER__WORKERS", "3")])
            .unwrap();
    assert_eq!(o.server.workers, Some(3));
}

#[test]
fn syntax_errors_give_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\nmax_concurrency = = 3\n").unwrap();
    let e = Config::from_file(&path, &env(&[])).unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*line, *column), (3, 19), "{e}");
    assert!(e.to_string().starts_with(&format!("{}:3:19: invalid TOML", path.display())), "{e}");
}

#[test]
fn plugin_settings_resolve_against_the_file_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let hash = "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824";
    std::fs::write(
        &path,
        format!(
            "[server]\nplugin_dirs = [\"plugins\", \"/opt/p\"]\nplugin_copy_dir = \"run\"\n\
             [[server.plugins]]\nfile = \"libx.so\"\nsha256 = \"{hash}\"\n\
             [[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n"
        ),
    )
    .unwrap();
    let c = Config::from_file(&path, &env(&[])).unwrap();
    assert_eq!(c.server.plugin_dirs, vec![dir.path().join("plugins"), Path::new("/opt/p").to_owned()]);
    assert_eq!(c.server.plugin_copy_dir, Some(dir.path().join("run")));
    assert_eq!(c.server.plugin_allow.len(), 1);
    assert_eq!(c.server.plugin_allow[0].file, "libx.so");
    assert_eq!(c.server.plugin_allow[0].sha256, hash.to_lowercase());

    let ollama = "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n";
    let e = error_of(&format!("[[server.plugins]]\nfile = \"../x.so\"\nsha256 = \"{hash}\"\n{ollama}"), &[]);
    assert_eq!(e, "server.plugins[0].file: \"../x.so\" must be a file name without a directory");
    let e = error_of(&format!("[[server.plugins]]\nfile = \"x.so\"\nsha256 = \"12\"\n{ollama}"), &[]);
    assert_eq!(e, "server.plugins[0].sha256: expected 64 hexadecimal digits (a SHA-256 digest)");
    let e = error_of(&format!("[[server.plugins]]\nfile = \"x.so\"\n{ollama}"), &[]);
    assert_eq!(e, "server.plugins[0].sha256: is required");
}

#[test]
fn optimize_for_presets_weights_and_explicit_weights_win() {
    let c = load(
        "[router]\noptimize_for = \"speed\"\ncost_weight = 0.25\n[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.router.options.latency_weight, 0.7);
    assert_eq!(c.router.options.cost_weight, 0.25);
}

#[test]
fn sample_config_is_accepted_when_its_variables_are_set() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/claudette.toml");
    let vars = env(&[
        ("OPENAI_API_KEY", "sk-test"),
        ("ANTHROPIC_API_KEY", "ak-test"),
        ("GEMINI_API_KEY", "g-test"),
        ("CLAUDETTE_KEY_TEAM_A", "gw-0123456789abcdef01234567"),
    ]);
    let c = Config::from_file(&path, &vars).unwrap();
    assert_eq!(c.backends.len(), 5);
    assert_eq!(c.server.keys[0].rpm.map(|n| n.get()), Some(600));
    assert_eq!(c.server.keys[0].max_concurrent.map(|n| n.get()), Some(8));
    assert_eq!(c.server.max_messages, 1000);
    let router = c.build_router(&registry()).unwrap();
    assert_eq!(router.backend_names(), vec!["openai", "claude", "gemini", "local", "qwen"]);
    // Without the variables, the first missing one is named.
    let e = Config::from_file(&path, &env(&[])).unwrap_err().to_string();
    assert_eq!(e, "server.keys[0].key_env: environment variable CLAUDETTE_KEY_TEAM_A is not set");
}

/// Writes `toml` to a file in a fresh temp dir and loads it, as `claudette config check` does.
fn load_file(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claudette.toml");
    std::fs::write(&path, toml).unwrap();
    Config::from_file(&path, &env(vars))
}

fn file_error(toml: &str, vars: &[(&str, &str)]) -> String {
    match load_file(toml, vars) {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

const OLLAMA: &str = "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n";

#[test]
fn nan_and_infinity_are_refused_not_read_as_unset() {
    // TOML has nan and inf; they used to become JSON null, read as "not set": the default stayed.
    let e = file_error(&format!("[router]\ncost_weight = nan\n{OLLAMA}"), &[]);
    assert_eq!(e, "router.cost_weight: must be a finite number, found NaN");
    let e = file_error(&format!("{OLLAMA}quality = inf\n"), &[]);
    assert_eq!(e, "backends[0].quality: must be a finite number, found inf");
    let e = file_error(
        &format!("{OLLAMA}pricing = {{ input_per_1k = 1, output_per_1k = 1, cache_read_per_1k = -inf }}\n"),
        &[],
    );
    assert_eq!(e, "backends[0].pricing.cache_read_per_1k: must be a finite number, found -inf");
    let e = file_error(
        &format!("{OLLAMA}pricing = {{ input_per_1k = 1, output_per_1k = 1, web_search_per_1k = -10 }}\n"),
        &[],
    );
    assert_eq!(e, "backends[0].pricing.web_search_per_1k: must be a number ≥ 0, found -10");
    let e = file_error(
        &format!(
            "{OLLAMA}pricing = {{ input_per_1k = 1, output_per_1k = 1, long_context = \
             {{ above_input_tokens = 1, input_factor = -2, output_factor = 1 }} }}\n"
        ),
        &[],
    );
    assert_eq!(e, "backends[0].pricing.long_context.input_factor: must be a number ≥ 0, found -2");
    let e = file_error(&format!("[router.retry]\nbudget_ratio = nan\n{OLLAMA}"), &[]);
    assert_eq!(e, "router.retry.budget_ratio: must be a finite number, found NaN");
    // The same through an override: refused and the variable named, not silently dropped.
    let e = file_error(OLLAMA, &[("CLAUDETTE__ROUTER__COST_WEIGHT", "nan")]);
    assert_eq!(
        e,
        "router.cost_weight: expected a number, found string \"nan\" \
         (set by environment variable CLAUDETTE__ROUTER__COST_WEIGHT)"
    );
    let e = file_error(OLLAMA, &[("CLAUDETTE__BACKENDS__OLLAMA__QUALITY", "inf")]);
    assert!(e.starts_with("backends[0].quality: expected a number, found string \"inf\""), "{e}");
}

#[test]
fn a_secret_given_where_a_variable_name_belongs_is_not_echoed() {
    let canary = "sk-proj-canary-9d8e7f6a5b4c";
    let e = file_error(&format!("[[backends]]\nprovider = \"openai\"\napi_key_env = \"{canary}\"\n"), &[]);
    assert!(e.starts_with("backends[0].api_key_env: is not an environment variable name"), "{e}");
    assert!(!e.contains("canary"), "{e}");
    let e = file_error(&format!("[[server.keys]]\nname = \"a\"\nkey_env = \"{canary}\"\n{OLLAMA}"), &[]);
    assert!(e.starts_with("server.keys[0].key_env: is not an environment variable name"), "{e}");
    assert!(!e.contains("canary"), "{e}");
    let e = file_error(
        "[[backends]]\nprovider = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n",
        &[("OPENAI_API_KEY", "k"), ("CLAUDETTE__BACKENDS__OPENAI__API_KEY_ENV", canary)],
    );
    assert!(e.starts_with("backends[0].api_key_env: is not an environment variable name"), "{e}");
    assert!(!e.contains("canary"), "{e}");
}

#[test]
fn weights_that_add_up_to_zero_or_infinity_are_refused() {
    let zero = "[router]\ncost_weight = 0\nlatency_weight = 0\navailability_weight = 0\nquality_weight = 0\n";
    let e = file_error(&format!("{zero}{OLLAMA}"), &[]);
    assert!(
        e.starts_with(
            "router: cost_weight, latency_weight, availability_weight and quality_weight add up to 0;"
        ),
        "{e}"
    );
    let e = file_error(&format!("[router]\ncost_weight = 1e308\nlatency_weight = 1e308\n{OLLAMA}"), &[]);
    assert!(
        e.starts_with(
            "router: cost_weight, latency_weight, availability_weight and quality_weight add up to inf;"
        ),
        "{e}"
    );
    // Zeroed by overrides: the same.
    let e = file_error(
        &format!("[router]\nquality_weight = 0\n{OLLAMA}"),
        &[
            ("CLAUDETTE__ROUTER__COST_WEIGHT", "0"),
            ("CLAUDETTE__ROUTER__LATENCY_WEIGHT", "0"),
            ("CLAUDETTE__ROUTER__AVAILABILITY_WEIGHT", "0"),
        ],
    );
    assert!(e.starts_with("router: "), "{e}");
    // A failover chain replaces scoring: the weights do not matter there.
    let c = load_file(&format!("{zero}failover_chain = [\"ollama\"]\n{OLLAMA}"), &[]).unwrap();
    assert_eq!(c.router.failover_chain, vec!["ollama"]);
    // One weight is enough.
    let c = load_file(
        &format!("[router]\ncost_weight = 1\nlatency_weight = 0\navailability_weight = 0\n{OLLAMA}"),
        &[],
    )
    .unwrap();
    assert_eq!(c.router.options.cost_weight, 1.0);
}

#[test]
fn keys_no_header_can_carry_are_refused_without_echoing_them() {
    let openai = "[[backends]]\nprovider = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n";
    let e = file_error(openai, &[("OPENAI_API_KEY", "sk-canary-0123456789\n")]);
    assert_eq!(
        e,
        "backends[0].api_key_env: the value of OPENAI_API_KEY contains characters an HTTP header cannot \
         carry (a trailing newline?)"
    );
    // Surrounding spaces are harmless in an outgoing header.
    load_file(openai, &[("OPENAI_API_KEY", "sk-canary-0123456789 ")]).unwrap();

    let gw = format!("[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n{OLLAMA}");
    let e = file_error(&gw, &[("K", "gw-canary-0123456789abcdef\n")]);
    assert!(e.starts_with("server.keys[0].key_env: the key in K contains control characters"), "{e}");
    assert!(!e.contains("canary"), "{e}");
    let e = file_error(&gw, &[("K", " gw-canary-0123456789abcdef")]);
    assert!(e.starts_with("server.keys[0].key_env: the key in K starts or ends with whitespace"), "{e}");
    assert!(!e.contains("canary"), "{e}");
}

#[test]
fn the_same_gateway_key_under_two_names_is_refused() {
    let key = "gw-0123456789abcdef0123";
    let e = file_error(
        &format!(
            "[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n[[server.keys]]\nname = \"b\"\nkey_env = \"K\"\nrpm = 5\n{OLLAMA}"
        ),
        &[("K", key)],
    );
    assert_eq!(
        e,
        "server.keys[1].key_env: is the same key as server.keys[0] (\"a\"); each key must be different"
    );
    let hex: String = hash_key(key).iter().map(|b| format!("{b:02x}")).collect();
    let e = file_error(
        &format!(
            "[[server.keys]]\nname = \"a\"\nkey_env = \"K\"\n[[server.keys]]\nname = \"b\"\nsha256 = \"{hex}\"\n{OLLAMA}"
        ),
        &[("K", key)],
    );
    assert!(e.starts_with("server.keys[1].sha256: is the same key as server.keys[0]"), "{e}");
}

#[test]
fn a_breaker_failure_rate_of_zero_is_refused() {
    // At 0 the rate check (failures / calls ≥ rate) passes after successes too.
    let e = file_error(&format!("[router.breaker]\nfailure_rate = 0.0\n{OLLAMA}"), &[]);
    assert!(e.starts_with("router.breaker.failure_rate: must be greater than 0"), "{e}");
    let c = load_file(&format!("[router.breaker]\nfailure_rate = 1.0\n{OLLAMA}"), &[]).unwrap();
    assert_eq!(c.router.options.breaker.failure_rate, 1.0);
}

#[test]
fn an_override_that_matches_two_backends_is_refused() {
    let two = format!("{OLLAMA}name = \"local-a\"\n{OLLAMA}name = \"local_a\"\n");
    let e = file_error(&two, &[("CLAUDETTE__BACKENDS__LOCAL_A__MODEL", "x")]);
    assert_eq!(
        e,
        "environment variable CLAUDETTE__BACKENDS__LOCAL_A__MODEL: `local_a` matches backends[0] and backends[1] \
         (names are compared ignoring case and '-' versus '_'); select the backend by its number instead"
    );
    let c = load_file(&two, &[("CLAUDETTE__BACKENDS__1__MODEL", "x")]).unwrap();
    assert_eq!(c.backends[1].settings.model.as_deref(), Some("x"));
    assert_eq!(c.backends[0].settings.model.as_deref(), Some("m"));
}

#[test]
fn ollama_host_with_only_a_port_means_this_machine() {
    let c = Config::discover(&env(&[("OLLAMA_HOST", ":11500")])).unwrap();
    assert_eq!(c.backends[0].settings.base_url.as_deref(), Some("http://127.0.0.1:11500"));
}

#[test]
fn a_huge_breaker_bucket_count_is_refused_before_anything_allocates() {
    let e = file_error(&format!("[router.breaker]\nbuckets = 4000000000\n{OLLAMA}"), &[]);
    assert_eq!(e, "router.breaker.buckets: 4000000000 is more than the 1000 allowed");
    let c = load_file(&format!("[router.breaker]\nbuckets = 1000\n{OLLAMA}"), &[]).unwrap();
    assert_eq!(c.router.options.breaker.buckets, 1000);
}

/// The listen address, first to last: `--listen`, `CLAUDETTE__SERVER__LISTEN`,
/// `CLAUDETTE_LISTEN`, the file. A variable another one (or the flag) overrode took no effect,
/// so it is not listed among the overrides, nor blamed for an error it did not cause.
#[test]
fn listen_comes_from_the_flag_then_the_full_variable_then_the_shorthand_then_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claudette.toml");
    std::fs::write(&path, format!("[server]\nlisten = \"127.0.0.1:7001\"\n{OLLAMA}")).unwrap();
    let listen = |vars: &[(&str, &str)], flag: Option<&str>| {
        let c = Config::load_with_listen(Some(&path), &env(vars), flag).unwrap();
        (c.server.listen.to_string(), c.overrides)
    };
    let short = ("CLAUDETTE_LISTEN", "127.0.0.1:7002");
    let full = ("CLAUDETTE__SERVER__LISTEN", "127.0.0.1:7003");
    assert_eq!(listen(&[], None), ("127.0.0.1:7001".into(), vec![]));
    assert_eq!(listen(&[short], None), ("127.0.0.1:7002".into(), vec!["CLAUDETTE_LISTEN".to_owned()]));
    assert_eq!(
        listen(&[full], None),
        ("127.0.0.1:7003".into(), vec!["CLAUDETTE__SERVER__LISTEN".to_owned()])
    );
    assert_eq!(
        listen(&[short, full], None),
        ("127.0.0.1:7003".into(), vec!["CLAUDETTE__SERVER__LISTEN".to_owned()])
    );
    assert_eq!(listen(&[short, full], Some("127.0.0.1:7004")), ("127.0.0.1:7004".into(), vec![]));
    // An empty variable counts as unset: the shorthand then applies.
    assert_eq!(
        listen(&[short, ("CLAUDETTE__SERVER__LISTEN", "")], None),
        ("127.0.0.1:7002".into(), vec!["CLAUDETTE_LISTEN".to_owned()])
    );
    // A bad shorthand the full variable replaced is no error.
    assert_eq!(listen(&[("CLAUDETTE_LISTEN", "nowhere"), full], None).0, "127.0.0.1:7003");

    // The flag's value is checked like the file's, and the error names the flag.
    let e = |vars: &[(&str, &str)], flag: &str| {
        Config::load_with_listen(Some(&path), &env(vars), Some(flag)).unwrap_err().to_string()
    };
    assert_eq!(
        e(&[full], "nowhere"),
        "server.listen: expected an address with a port such as 127.0.0.1:8080, found \"nowhere\" (set by --listen)"
    );
    let open = e(&[], "0.0.0.0:7005");
    assert!(
        open.starts_with("server.listen: 0.0.0.0:7005 is not a loopback address and no [[server.keys]]")
            && open.ends_with("(set by --listen)"),
        "{open}"
    );
    // …and it saves a file whose own address would be refused.
    std::fs::write(&path, format!("[server]\nlisten = \"0.0.0.0:7001\"\n{OLLAMA}")).unwrap();
    assert_eq!(listen(&[], Some("127.0.0.1:0")).0, "127.0.0.1:0");
    // Discovery (no file) takes the flag too.
    let c =
        Config::load_with_listen(None, &env(&[("OLLAMA_HOST", ":11500")]), Some("localhost:7006")).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:7006");
}

/// A base_url that does not parse is quoted in the error: its password and query values are
/// not (some gateways take their key as `?key=` or `?api-key=`).
#[test]
fn a_bad_base_url_is_quoted_without_its_secrets() {
    for url in [
        "https://user:hunter2-secret@proxy.example:99999/v1",
        "https://user:abc/hunter2-secret@proxy.example/v1",
        "https://proxy.example:99999/v1?api-key=hunter2-secret",
    ] {
        let e = file_error(
            &format!("[[backends]]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\n"),
            &[],
        );
        assert!(e.starts_with("backends[0].base_url: base_url `") && e.contains("***"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
    // The same through an override and through discovery.
    let e = file_error(OLLAMA, &[("CLAUDETTE__BACKENDS__OLLAMA__BASE_URL", "http://u:hunter2@h:99999")]);
    assert!(e.contains("u:***@h:99999") && !e.contains("hunter2"), "{e}");
    let e = Config::discover(&env(&[("OLLAMA_HOST", "http://u:hunter2@h:99999")])).unwrap_err().to_string();
    assert!(!e.contains("hunter2"), "{e}");
    // A valid one is kept as written for the requests.
    let url = "https://proxy.example/v1?api-key=hunter2-secret";
    let c = load_file(
        &format!("[[backends]]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.backends[0].settings.base_url.as_deref(), Some(url));
}
