//! `claudette demo`: a self-contained simulation of routing, failover and circuit breaking.
//!
//! Three fake providers from `claudette-testkit` run on 127.0.0.1, each speaking a real wire
//! protocol (Ollama NDJSON, OpenAI Chat Completions, Anthropic Messages) with its own price
//! and speed. A real gateway serves them on 127.0.0.1:0 and the demo talks to it over HTTP
//! exactly as an SDK would, reading the `x-claudette-*` headers to show why each request went
//! where it went. The script: normal traffic; the free local model starts failing (failover,
//! then its breaker opens and it is skipped without a call); it recovers (the breaker's probe
//! succeeds and closes it); a per-request "speed" preference; a streamed answer; the cost
//! breakdown from `/v1/costs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use claudette_config::Config;
use claudette_gateway::{Gateway, GatewayOptions};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::{CliError, build_router, money, outln, print_out};
use crate::inspect::{get_json, render_costs};
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {}

const BANNER: &str = "SIMULATION — fake providers on 127.0.0.1, no real API calls";

/// How long the flaky backend's breaker stays open: long enough to see it skipped, short enough
/// for a demo.
const OPEN_MS: u64 = 1500;

struct Fakes {
    local: FakeServer,
    budget: FakeServer,
    premium: FakeServer,
}

const LOCAL_ANSWER: &str = "A circuit breaker stops calling a failing backend for a while so it can recover.";
const BUDGET_ANSWER: &str =
    "Circuit breakers stop sending traffic to a failing service until it has had time to recover.";
const PREMIUM_ANSWER: &str = "A circuit breaker trips after repeated failures, rejects calls without trying them while open, then lets one probe through to decide whether to close again.";

fn healthy(f: &Fakes) {
    f.local.set_default(Reply::ollama_text(LOCAL_ANSWER).delay(Duration::from_millis(30)));
    f.budget.set_default(Reply::openai_text(BUDGET_ANSWER).delay(Duration::from_millis(250)));
    f.premium.set_default(Reply::anthropic_text(PREMIUM_ANSWER).delay(Duration::from_millis(60)));
}

pub(crate) async fn run(_args: DemoArgs) -> Result<(), CliError> {
    let started = Instant::now();
    outln!("==================================================================")?;
    outln!("  {BANNER}")?;
    outln!("==================================================================\n")?;

    let fakes = Fakes {
        local: FakeServer::start().await,
        budget: FakeServer::start().await,
        premium: FakeServer::start().await,
    };
    healthy(&fakes);

    // The same claudette.toml an operator would write, pointing at the fakes.
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[router]
cost_weight = 0.5
latency_weight = 0.3
availability_weight = 0.2
max_attempts = 3

[router.retry]
base_backoff_ms = 20
max_backoff_ms = 100

[router.breaker]
consecutive_failures = 3
open_base_ms = {OPEN_MS}
open_max_ms = 10000
jitter = 0.0

[[backends]]
name = "local"
provider = "ollama"
model = "llama3.2"
base_url = "{local}"
quality = 0.5

[[backends]]
name = "budget"
provider = "openai"
model = "gpt-4o-mini"
base_url = "{budget}"
pricing = {{ input_per_1k = 0.00015, output_per_1k = 0.0006 }}
quality = 0.7

[[backends]]
name = "premium"
provider = "anthropic"
model = "claude-sonnet-4-5"
base_url = "{premium}"
pricing = {{ input_per_1k = 0.003, output_per_1k = 0.015 }}
quality = 0.95
"#,
        local = fakes.local.url(),
        budget = fakes.budget.v1_url(),
        premium = fakes.premium.url(),
    );
    let config = Config::from_toml_str(&toml, &HashMap::<String, String>::new())?;
    let router = build_router(&config)?;

    let mut t = Table::new(["BACKEND", "SPEAKS", "PRICE IN/OUT PER 1K", "SPEED", "AT"]);
    t.row(["local", "Ollama /api/chat (NDJSON)", "free (self-hosted)", "~30 ms", fakes.local.url().as_str()]);
    t.row([
        "budget",
        "OpenAI chat completions",
        "$0.00015 / $0.0006",
        "~250 ms",
        fakes.budget.url().as_str(),
    ]);
    t.row(["premium", "Anthropic Messages", "$0.003 / $0.015", "~60 ms", fakes.premium.url().as_str()]);
    outln!("Three fake providers, each speaking its real wire protocol:\n")?;
    print_out(&indent(&t.render()))?;

    let gateway = Gateway::new(
        router.clone(),
        GatewayOptions { listen: config.server.listen, ..GatewayOptions::default() },
    )
    .map_err(|e| CliError::failure(format!("cannot start the gateway: {e}")))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on 127.0.0.1: {e}")))?;
    let addr = listener.local_addr().map_err(|e| CliError::failure(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    let base = format!("http://{addr}");
    outln!(
        "\nA Claudette gateway serves them at {base} (weights: cost 0.5, latency 0.3, availability 0.2)."
    )?;
    outln!("Every request below is a real HTTP call to it, as an OpenAI SDK would make.\n")?;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CliError::failure(format!("cannot create an HTTP client: {e}")))?;
    let mut demo = Demo { client, base, n: 0, failovers: 0 };

    section("1. Normal traffic: the router weighs cost, latency and recent failures")?;
    for _ in 0..4 {
        demo.ask(&[]).await?;
    }

    section("2. `local` starts failing with 503s: invisible failover, then its breaker opens")?;
    fakes.local.set_default(Reply::ollama_error(503, "model is overloaded"));
    for _ in 0..3 {
        demo.ask(&[]).await?;
    }
    demo.show_breakers(&["local"]).await?;
    let before = fakes.local.post_requests();
    for _ in 0..2 {
        demo.ask(&[]).await?;
    }
    outln!(
        "   `local` received {} call(s) while open: the router skips it without I/O.",
        fakes.local.post_requests() - before
    )?;

    section("3. `local` recovers: after the open period one probe is let through and closes the breaker")?;
    healthy(&fakes);
    outln!("   (waiting {OPEN_MS} ms for the open period to pass)")?;
    tokio::time::sleep(Duration::from_millis(OPEN_MS + 100)).await;
    demo.ask(&[]).await?;
    demo.show_breakers(&["local"]).await?;
    demo.ask(&[]).await?;

    section("4. A per-request preference: `x-claudette-route: quality` picks the best model, at a price")?;
    demo.ask(&[("x-claudette-route", "quality")]).await?;
    demo.ask(&[("x-claudette-route", "quality")]).await?;

    section("5. A streamed answer (SSE), token by token, through the same routing")?;
    fakes.local.set_default(
        Reply::ollama_stream(&["Streams ", "are ", "committed ", "at ", "the ", "first ", "token."])
            .gap(Duration::from_millis(40)),
    );
    demo.stream().await?;

    section("6. What it cost (GET /v1/costs), and each backend's figures (GET /v1/backends)")?;
    let costs = get_json(&demo.base, "/v1/costs?timeframe=1h&group_by=backend", None).await?;
    print_out(&indent(&render_costs(&costs, "backend")))?;
    let backends = get_json(&demo.base, "/v1/backends", None).await?;
    let mut t = Table::new(["BACKEND", "BREAKER", "REQUESTS", "SUCCESS", "P50", "COST", "OPENED"]);
    for b in backends.get("backends").and_then(Value::as_array).into_iter().flatten() {
        let f = |p: &str| b.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
        let u = |p: &str| b.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        t.row([
            b.get("name").and_then(Value::as_str).unwrap_or("?").to_owned(),
            b.pointer("/breaker/state").and_then(Value::as_str).unwrap_or("-").replace('_', "-"),
            u("/metrics/total_requests").to_string(),
            format!("{:.0}%", f("/metrics/success_rate") * 100.0),
            format!("{:.0} ms", f("/metrics/latency/p50_ms")),
            money(f("/metrics/total_cost")),
            format!("{}×", u("/breaker/counters/opened")),
        ]);
    }
    outln!()?;
    print_out(&indent(&t.render()))?;

    let _ = stop_tx.send(());
    let _ = server.await;
    outln!(
        "\n{} requests, {} failed over, breaker opened and closed again — in {:.1} s.",
        demo.n,
        demo.failovers,
        started.elapsed().as_secs_f64()
    )?;
    outln!(
        "{BANNER}. For real providers: write a claudette.toml (see `claudette config check --help`) and run `claudette serve`."
    )?;
    Ok(())
}

struct Demo {
    client: reqwest::Client,
    base: String,
    n: usize,
    failovers: usize,
}

impl Demo {
    /// One `POST /v1/chat/completions` with `model: "auto"`, explained from the headers.
    async fn ask(&mut self, headers: &[(&str, &str)]) -> Result<(), CliError> {
        self.n += 1;
        let mut req = self.client.post(format!("{}/v1/chat/completions", self.base)).json_body(&json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "What does a circuit breaker do, in one sentence?"}],
            "max_tokens": 64
        }));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp =
            req.send().await.map_err(|e| CliError::failure(format!("request to the gateway failed: {e}")))?;
        let status = resp.status();
        let h = Explained::from_headers(resp.headers());
        let body: Value = resp.json_value().await;
        let pref = headers.iter().map(|(k, v)| format!(" [{k}: {v}]")).collect::<String>();
        if !status.is_success() {
            let msg = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("?");
            outln!("#{:<2} HTTP {status}: {msg}{pref}", self.n)?;
            return Ok(());
        }
        let content = body.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or("");
        outln!("#{:<2} → {:<8} {} attempt(s)  cost {:<10}{pref}", self.n, h.backend, h.attempts, h.cost)?;
        outln!("      \"{}\"", shorten(content, 70))?;
        h.print()?;
        if h.attempts > 1 {
            self.failovers += 1;
        }
        Ok(())
    }

    async fn stream(&mut self) -> Result<(), CliError> {
        self.n += 1;
        let resp = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json_body(&json!({
                "model": "auto", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Tell me about streams."}]
            }))
            .send()
            .await
            .map_err(|e| CliError::failure(format!("request to the gateway failed: {e}")))?;
        let h = Explained::from_headers(resp.headers());
        print_out(&format!("#{:<2} → {:<8} ", self.n, h.backend))?;
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let mut done = false;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| CliError::failure(format!("stream broke: {e}")))?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                for data in frame.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    if data == "[DONE]" {
                        done = true;
                        continue;
                    }
                    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                    if let Some(t) = v.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                        print_out(t)?;
                    }
                }
            }
        }
        outln!("{}", if done { "  [done]" } else { "  [stream ended without [DONE]]" })?;
        h.print()?;
        Ok(())
    }

    async fn show_breakers(&self, names: &[&str]) -> Result<(), CliError> {
        let v = get_json(&self.base, "/v1/backends", None).await?;
        for b in v.get("backends").and_then(Value::as_array).into_iter().flatten() {
            let name = b.get("name").and_then(Value::as_str).unwrap_or("?");
            if !names.contains(&name) {
                continue;
            }
            let state = b.pointer("/breaker/state").and_then(Value::as_str).unwrap_or("?");
            let retry = b.pointer("/health/retry_in_ms").and_then(Value::as_u64);
            let opened = b.pointer("/breaker/counters/opened").and_then(Value::as_u64).unwrap_or(0);
            match retry {
                Some(ms) => outln!(
                    "   breaker of `{name}`: {} (retry in {ms} ms; opened {opened}×)",
                    state.to_uppercase()
                )?,
                None => outln!("   breaker of `{name}`: {} (opened {opened}× so far)", state.to_uppercase())?,
            }
        }
        Ok(())
    }
}

/// The `x-claudette-*` headers of one response.
struct Explained {
    backend: String,
    attempts: u32,
    cost: String,
    /// `b1=0.31,b2=0.52;b1:error(overloaded),b2:ok`
    decision: String,
}

impl Explained {
    fn from_headers(h: &reqwest::header::HeaderMap) -> Self {
        let s = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let cost = s("x-claudette-cost").parse::<f64>().map(money).unwrap_or_else(|_| "-".into());
        Self {
            backend: s("x-claudette-backend"),
            attempts: s("x-claudette-attempts").parse().unwrap_or(0),
            cost,
            decision: s("x-claudette-decision"),
        }
    }

    fn print(&self) -> Result<(), CliError> {
        let (scores, attempts) = self.decision.split_once(';').unwrap_or((self.decision.as_str(), ""));
        let scores: Vec<String> =
            scores.split(',').filter(|s| !s.is_empty()).map(|s| s.replace('=', " ")).collect();
        let considered: Vec<&str> = scores.iter().filter_map(|s| s.split(' ').next()).collect();
        let skipped: Vec<&str> =
            ["local", "budget", "premium"].into_iter().filter(|b| !considered.contains(b)).collect();
        let mut line = format!("      scores (lower wins): {}", scores.join(", "));
        if !skipped.is_empty() {
            line.push_str(&format!("   skipped: {} (breaker open)", skipped.join(", ")));
        }
        outln!("{line}")?;
        if self.attempts > 1 || attempts.contains("error") {
            outln!("      attempts: {}", attempts.replace(',', " → "))?;
        }
        Ok(())
    }
}

fn section(title: &str) -> Result<(), CliError> {
    outln!("\n── {title}")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// JSON bodies without reqwest's `json` feature (kept off to keep the dependency tree small).
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json").body(v.to_string())
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        match self.bytes().await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }
}
