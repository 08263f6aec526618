//! Operator views: `backends`, `costs`, `config check`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use claudette::core::CostAnalysis;
use claudette_config::redact_url;
use serde_json::{Value, json};

use crate::ConfigArg;
use crate::common::{
    CliError, build_router, build_router_with_plugins, load_config, money, outln, print_out,
};
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct BackendsArgs {
    /// Ask a running gateway (GET URL/v1/backends) instead of checking the configured backends
    /// from this process.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Gateway key for --url (prefer the CLAUDETTE_API_KEY variable).
    #[arg(long, env = "CLAUDETTE_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Configuration file (default: $CLAUDETTE_CONFIG, then ./claudette.toml, then discovery).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CostsArgs {
    /// Base URL of a running `claudette serve`. Repeat it (or list several, comma-separated,
    /// in CLAUDETTE_URL) to add up a fleet of replicas: each books only what it served.
    #[arg(
        long = "url",
        env = "CLAUDETTE_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub urls: Vec<String>,
    /// Gateway key, if the gateways have [[server.keys]] (the same for every --url). Prefer
    /// the environment variable: a command-line argument is visible to other users.
    #[arg(long, env = "CLAUDETTE_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub key: Option<String>,
    /// Window to report: 30m, 24h, 7d, 1w… (at most 31d, or a gateway's [ledger] retention)
    #[arg(long, default_value = "24h", value_name = "SPAN")]
    pub timeframe: String,
    /// Break costs down by backend, by model, or by the gateway key that sent the requests
    /// ("(no key)": requests without one).
    #[arg(long, default_value = "backend", value_parser = ["backend", "model", "key"])]
    pub group_by: String,
    /// Print JSON instead of a table: the gateway's answer, or the fleet's sum (with a
    /// `gateways` list) for several --url.
    #[arg(long)]
    pub json: bool,
}

/// GET `url` + `path` with the key, as JSON. Redirects are not followed (the key must not
/// travel to another host) and errors never echo the key.
pub(crate) async fn get_json(base: &str, path: &str, key: Option<&str>) -> Result<Value, CliError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| CliError::failure(format!("cannot create an HTTP client: {e}")))?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut req = client.get(&url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| {
        CliError::failure(format!("cannot reach the gateway at {}: {}", redact_url(base), without_url(&e)))
    })?;
    let status = resp.status();
    let body =
        resp.bytes().await.map_err(|e| CliError::failure(format!("reading the gateway's answer: {e}")))?;
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        let hint = if status.as_u16() == 401 { " (pass --key or set CLAUDETTE_API_KEY)" } else { "" };
        return Err(CliError::failure(format!("the gateway answered {status}: {message}{hint}")));
    }
    if value.is_null() {
        return Err(CliError::failure(format!("the gateway's answer to {path} is not JSON")));
    }
    Ok(value)
}

fn without_url(e: &reqwest::Error) -> String {
    // reqwest's message names the URL, which we already print; keep the cause.
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" for url ({u})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

pub(crate) async fn backends(args: BackendsArgs) -> Result<(), CliError> {
    let (report, checks) = match &args.url {
        Some(url) => (get_json(url, "/v1/backends", args.key.as_deref()).await?, None),
        None => {
            let config = load_config(args.config.as_deref())?;
            let router = build_router(&config)?;
            // Each probe timed on its own so the table can show how long it took; the result
            // feeds the breaker as the router's own health checks do.
            let probes = router.backend_names().into_iter().filter_map(|name| {
                let backend = router.backend(&name)?;
                let breaker = router.breaker(&name);
                Some(async move {
                    let started = Instant::now();
                    let r = backend.health_check().await;
                    if let Some(b) = breaker {
                        b.record_health_check(r.is_ok());
                    }
                    (name, r.map(|()| started.elapsed()).map_err(|e| e.message))
                })
            });
            let checks: Vec<(String, Result<Duration, String>)> = futures::future::join_all(probes).await;
            let backends: Vec<Value> = router
                .backend_names()
                .into_iter()
                .filter_map(|name| {
                    let info = router.backend(&name)?.info().clone();
                    Some(json!({
                        "name": name,
                        "info": info,
                        "health": router.health_status(&name),
                        "breaker": router.breaker(&name).map(|b| b.snapshot()),
                        "metrics": router.performance_metrics(&name),
                    }))
                })
                .collect();
            (json!({ "backends": backends }), Some(checks))
        }
    };
    if args.json {
        let mut out = report;
        if let (Some(checks), Value::Object(m)) = (&checks, &mut out) {
            let c: Vec<Value> = checks
                .iter()
                .map(|(n, r)| match r {
                    Ok(d) => json!({"backend": n, "ok": true, "latency_ms": d.as_millis()}),
                    Err(e) => json!({"backend": n, "ok": false, "error": e}),
                })
                .collect();
            m.insert("health_checks".into(), Value::Array(c));
        }
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default())?;
        return Ok(());
    }
    let mut t = Table::new([
        "BACKEND", "PROVIDER", "MODEL", "HEALTH", "BREAKER", "P50", "P95", "SUCCESS", "REQUESTS", "COST",
    ]);
    let mut down = 0;
    for b in report.get("backends").and_then(Value::as_array).into_iter().flatten() {
        let name = b.get("name").and_then(Value::as_str).unwrap_or("?");
        let s = |p: &str| b.pointer(p).and_then(Value::as_str).unwrap_or("-").to_owned();
        let f = |p: &str| b.pointer(p).and_then(Value::as_f64);
        let enabled = b.pointer("/info/enabled").and_then(Value::as_bool).unwrap_or(true);
        let health = match checks.as_ref().and_then(|c| c.iter().find(|(n, _)| n == name)) {
            Some((_, Ok(d))) => format!("ok ({} ms)", d.as_millis()),
            Some((_, Err(e))) => {
                down += 1;
                format!("down: {}", truncate(e, 60))
            }
            None => match (
                b.pointer("/health/healthy").and_then(Value::as_bool),
                b.pointer("/health/retry_in_ms"),
            ) {
                (Some(true), _) => "healthy".into(),
                (Some(false), Some(Value::Number(ms))) => {
                    down += 1;
                    format!("unavailable (retry in {ms} ms)")
                }
                (Some(false), _) => {
                    down += 1;
                    "unavailable".into()
                }
                (None, _) => "-".into(),
            },
        };
        let health = if enabled { health } else { format!("disabled; {health}") };
        let samples = b.pointer("/metrics/latency/samples").and_then(Value::as_u64).unwrap_or(0);
        let ms = |p: &str| {
            if samples == 0 { "-".to_owned() } else { f(p).map_or("-".into(), |v| format!("{v:.0} ms")) }
        };
        let requests = b.pointer("/metrics/total_requests").and_then(Value::as_u64).unwrap_or(0);
        t.row([
            name.to_owned(),
            s("/info/provider"),
            s("/info/model"),
            health,
            s("/breaker/state").replace('_', "-"),
            ms("/metrics/latency/p50_ms"),
            ms("/metrics/latency/p95_ms"),
            if requests == 0 {
                "-".into()
            } else {
                f("/metrics/success_rate").map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
            },
            requests.to_string(),
            f("/metrics/total_cost").map_or("-".into(), money),
        ]);
    }
    print_out(&t.render())?;
    if checks.is_some() {
        outln!(
            "(health probed from this process; latency, success and cost columns fill in under traffic — use --url for a running gateway)"
        )?;
    }
    if down > 0 {
        return Err(CliError::failure(format!("{down} backend(s) are not healthy")));
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

pub(crate) async fn costs(args: CostsArgs) -> Result<(), CliError> {
    // Encoded: a timeframe is free text, and `1h&group_by=model` must reach the gateway as one
    // (invalid) timeframe it can name in its error, not as a second parameter.
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("timeframe", &args.timeframe)
        .append_pair("group_by", &args.group_by)
        .finish();
    let path = format!("/v1/costs?{query}");
    let urls: Vec<&str> = args.urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()).collect();
    let Some(first) = urls.first() else {
        return Err(CliError::failure("--url: give at least one gateway URL"));
    };
    for (i, url) in urls.iter().enumerate() {
        if urls[..i].iter().any(|u| u.trim_end_matches('/') == url.trim_end_matches('/')) {
            return Err(CliError::failure(format!(
                "--url {} is given twice: its spend would be counted twice",
                redact_url(url)
            )));
        }
    }
    let key = args.key.as_deref();
    let answers = futures::future::try_join_all(urls.iter().map(|url| get_json(url, &path, key))).await?;
    let (v, footer) = if let [one] = answers.as_slice() {
        (one.clone(), format!("(spend booked by the gateway at {})", redact_url(first)))
    } else {
        let merged = merge_costs(&urls, answers)?;
        let names: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
        let footer = format!("(the sum over {} gateways: {})", names.len(), names.join(", "));
        let mut v = serde_json::to_value(&merged).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("gateways".into(), json!(names));
        }
        (v, footer)
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())?;
        return Ok(());
    }
    print_out(&render_costs(&v, &args.group_by))?;
    outln!("{footer}")?;
    Ok(())
}

/// One fleet-wide answer from each replica's `/v1/costs`. A replica whose answer cannot be
/// read or added is an error naming it: a total that silently left one out would be wrong.
fn merge_costs(urls: &[&str], answers: Vec<Value>) -> Result<CostAnalysis, CliError> {
    let mut merged: Option<CostAnalysis> = None;
    for (url, v) in urls.iter().zip(answers) {
        let a: CostAnalysis = serde_json::from_value(v).map_err(|e| {
            CliError::failure(format!(
                "the gateway at {} answered /v1/costs in a shape this claudette does not read: {e}",
                redact_url(url)
            ))
        })?;
        match merged.as_mut() {
            None => merged = Some(a),
            Some(m) => m.merge(&a).map_err(|e| {
                CliError::failure(format!("the answer of the gateway at {} {e}", redact_url(url)))
            })?,
        }
    }
    merged.ok_or_else(|| CliError::failure("--url: give at least one gateway URL"))
}

/// The `/v1/costs` answer as a table with totals and the projection.
pub(crate) fn render_costs(v: &Value, group_by: &str) -> String {
    let total = v.get("total_cost").and_then(Value::as_f64).unwrap_or(0.0);
    // A bare "KEY" column reads like an API key: it holds gateway key names.
    let header = if group_by == "key" { "GATEWAY KEY".to_owned() } else { group_by.to_uppercase() };
    let mut t = Table::new([header, "REQUESTS".into(), "TOKENS".into(), "COST".into(), "SHARE".into()]);
    let mut lines: Vec<(&String, &Value)> =
        v.get("breakdown").and_then(Value::as_object).map(|m| m.iter().collect()).unwrap_or_default();
    lines.sort_by(|a, b| {
        let c = |x: &Value| x.get("cost").and_then(Value::as_f64).unwrap_or(0.0);
        c(b.1).total_cmp(&c(a.1))
    });
    for (name, line) in lines {
        let n = |k: &str| line.get(k).and_then(Value::as_u64).unwrap_or(0);
        let cost = line.get("cost").and_then(Value::as_f64).unwrap_or(0.0);
        let share = if total > 0.0 { format!("{:.1}%", cost / total * 100.0) } else { "-".into() };
        t.row([
            name.clone(),
            n("requests").to_string(),
            (n("input_tokens") + n("output_tokens")).to_string(),
            money(cost),
            share,
        ]);
    }
    let requests = v.get("total_requests").and_then(Value::as_u64).unwrap_or(0);
    let tokens = v.get("total_tokens").and_then(Value::as_u64).unwrap_or(0);
    t.row(["TOTAL".to_owned(), requests.to_string(), tokens.to_string(), money(total), String::new()]);
    let mut out = t.render();
    let secs = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    out.push_str(&format!(
        "window: last {}, of which {} observed\n",
        human_secs(secs("timeframe_secs")),
        human_secs(secs("observed_secs"))
    ));
    match v.get("projected_monthly_cost").and_then(Value::as_f64) {
        Some(p) => out.push_str(&format!("projected monthly cost at this rate: {}\n", money(p))),
        None => out.push_str("projected monthly cost: needs at least a minute of data\n"),
    }
    out
}

fn human_secs(s: u64) -> String {
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{:.1}h", s as f64 / 3600.0),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

pub(crate) fn config_check(args: ConfigArg) -> Result<(), CliError> {
    let config = load_config(args.config.as_deref())?;
    let (router, plugins) = build_router_with_plugins(&config)?;
    outln!("config OK: {}", config.source)?;
    let s = &config.server;
    outln!(
        "server: listen {}, body limit {} bytes, {} concurrent requests, {} messages a request, \
         max_tokens {}, shutdown grace {} ms, header read timeout {} ms, token count timeout {} ms, {}",
        s.listen,
        s.max_body_bytes,
        s.max_concurrency,
        s.max_messages,
        s.max_output_tokens.map_or_else(|| "uncapped".to_owned(), |n| format!("capped at {n}")),
        s.shutdown_grace.as_millis(),
        s.header_read_timeout.as_millis(),
        s.count_tokens_timeout.as_millis(),
        match s.workers {
            None => "a serving thread per core".to_owned(),
            Some(0) => "served on the main runtime".to_owned(),
            Some(n) => format!("{n} serving threads"),
        }
    )?;
    if s.keys.is_empty() {
        outln!(
            "gateway keys: none (loopback only{})",
            if s.allow_unauthenticated_non_loopback { ", or explicitly allowed" } else { "" }
        )?;
    } else {
        let names: Vec<String> = s
            .keys
            .iter()
            .map(|k| {
                let mut limits = String::new();
                if let Some(n) = k.rpm {
                    limits.push_str(&format!(", {n} rpm"));
                }
                if let Some(n) = k.max_concurrent {
                    limits.push_str(&format!(", {n} concurrent"));
                }
                match &k.key_env {
                    Some(v) => format!("{} (from {v}{limits})", k.name),
                    None => format!("{} (sha256{limits})", k.name),
                }
            })
            .collect();
        outln!("gateway keys: {}", names.join(", "))?;
    }
    if !s.plugin_dirs.is_empty() {
        outln!(
            "plugin dirs: {} ({}); providers loaded: {}",
            s.plugin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            if s.plugin_allow.is_empty() {
                "no allow-list".to_owned()
            } else {
                format!("allow-list of {}", s.plugin_allow.len())
            },
            if plugins.loaded.is_empty() { "none".to_owned() } else { plugins.loaded.join(", ") }
        )?;
        for refused in &plugins.refused {
            outln!("plugin refused: {refused}")?;
        }
    }
    let o = &config.router.options;
    outln!(
        "router: weights cost {} latency {} availability {} quality {}; fallback {}; up to {} attempts{}",
        o.cost_weight,
        o.latency_weight,
        o.availability_weight,
        o.quality_weight,
        if o.fallback_enabled { "on" } else { "off" },
        o.max_attempts,
        if config.router.failover_chain.is_empty() {
            String::new()
        } else {
            format!("; failover chain {}", config.router.failover_chain.join(" → "))
        }
    )?;
    let mut t =
        Table::new(["BACKEND", "PROVIDER", "MODEL", "PRICE IN/OUT PER 1K", "KEY", "ENABLED", "BASE URL"]);
    for b in &config.backends {
        let Some(built) = router.backend(b.name()) else { continue };
        let info = built.info();
        t.row([
            b.name().to_owned(),
            b.provider.clone(),
            info.model.clone(),
            format!("{} / {}", money(info.pricing.input_per_1k), money(info.pricing.output_per_1k)),
            b.api_key_env.as_ref().map_or("-".to_owned(), |v| format!("${v} (set)")),
            if info.enabled { "yes".into() } else { "no".into() },
            b.settings.base_url.as_deref().map_or_else(|| "(provider default)".into(), redact_url),
        ]);
    }
    print_out(&t.render())?;
    if !config.overrides.is_empty() {
        outln!("overridden by environment: {}", config.overrides.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_render_sorted_with_share_and_projection() {
        let v = json!({
            "timeframe_secs": 86400, "observed_secs": 125, "group_by": "backend",
            "total_cost": 0.004, "total_requests": 3, "total_tokens": 60,
            "breakdown": {
                "a": {"cost": 0.001, "requests": 1, "input_tokens": 10, "output_tokens": 10},
                "b": {"cost": 0.003, "requests": 2, "input_tokens": 20, "output_tokens": 20}
            },
            "projected_monthly_cost": 82.9
        });
        let text = render_costs(&v, "backend");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("b ") && lines[1].contains("75.0%"), "{text}");
        assert!(lines[3].starts_with("TOTAL"), "{text}");
        assert!(text.contains("last 1d, of which 2m 5s observed"), "{text}");
        assert!(text.contains("$82.90"), "{text}");
        let by_key = render_costs(&v, "key");
        assert!(by_key.lines().next().unwrap().starts_with("GATEWAY KEY "), "{by_key}");
    }
}
