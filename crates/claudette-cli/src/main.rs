//! `claudette`: the command-line face of Claudette.
//!
//! Every command loads the same configuration (see `claudette config check --help`) and either
//! serves it (`serve`), uses it in-process (`chat`, `batch`, `backends`), or talks to a running
//! gateway (`costs`). `demo` needs nothing at all: it runs fake providers on 127.0.0.1.
//!
//! Exit codes: 0 success, 1 failure (bad config, failed request, failed batch lines), 2 wrong
//! usage, 130 interrupted. Errors are one line on stderr; never a panic or a debug dump. A
//! reader of stdout that goes away (`claudette chat … | head -c1`) ends the command with 0 and
//! no message: it stopped reading on purpose.

mod batch;
mod chat;
mod common;
mod demo;
mod inspect;
mod serve;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::common::CliError;

/// mimalloc instead of glibc malloc: the gateway allocates many small, short-lived objects per
/// request (headers, JSON values, strings) on several threads, and glibc's malloc/free showed
/// as about 12 % of the gateway's CPU in `perf`. Plugins are unaffected: abi_stable values that
/// cross the boundary are freed by the side that allocated them.
#[global_allocator]
static GLOBAL: claudette_alloc::Allocator = claudette_alloc::Allocator;

const CONFIG_HELP: &str = "\
Configuration is read from --config, else the file named by CLAUDETTE_CONFIG, else ./claudette.toml,
else backends are discovered from OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY / GOOGLE_API_KEY
and OLLAMA_HOST. CLAUDETTE_LISTEN sets server.listen; CLAUDETTE__<SECTION>__<KEY>=value overrides one
key (CLAUDETTE__ROUTER__COST_WEIGHT=0.7, CLAUDETTE__BACKENDS__OPENAI__MODEL=gpt-4o). The listen address
is, first to last: `serve --listen`, CLAUDETTE__SERVER__LISTEN, CLAUDETTE_LISTEN, the file's.";

/// Route LLM requests across providers by cost, latency, availability and quality.
#[derive(Debug, Parser)]
#[command(name = "claudette", version, about, after_help = CONFIG_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the OpenAI- and Anthropic-compatible gateway until SIGTERM or Ctrl-C.
    ///
    /// Prints `listening on http://ADDR` on stdout once it accepts connections (with
    /// `listen = "127.0.0.1:0"` that is the port the system picked). On SIGTERM or Ctrl-C it
    /// stops accepting, lets in-flight requests finish for server.shutdown_grace_ms, and exits 0.
    #[command(after_help = CONFIG_HELP)]
    Serve(serve::ServeArgs),
    /// Send one prompt and stream the answer to stdout as it arrives.
    ///
    /// The routing summary (backend, tokens, cost, attempts) goes to stderr, so stdout holds
    /// only the answer.
    #[command(after_help = CONFIG_HELP)]
    Chat(chat::ChatArgs),
    /// Run a JSONL file of prompts with bounded concurrency; results in input order.
    ///
    /// Each input line is `{"id": …, "prompt": "…"}` (optional `system`, `max_tokens`,
    /// `temperature`, `model`, `backend`) or a full request `{"id": …, "messages": […], …}`.
    /// Each output line is `{"line": N, "id": …, "ok": true, "response": {…}}` or
    /// `{"line": N, "id": …, "ok": false, "error": {…}}`. Re-running with the same output file
    /// skips lines already answered (same line, same input), so an interrupted or partly failed
    /// batch resumes where it stopped. Exits 1 if any line failed.
    #[command(after_help = CONFIG_HELP)]
    Batch(batch::BatchArgs),
    /// Check every backend's health and show its breaker, latency, success rate and cost.
    ///
    /// Without --url: builds the configured backends in this process and runs each one's free
    /// health probe (a model list, never a completion). With --url: asks a running gateway
    /// (GET /v1/backends), whose figures cover the traffic it has served.
    #[command(after_help = CONFIG_HELP)]
    Backends(inspect::BackendsArgs),
    /// Show what a running gateway (or several) has spent, grouped by backend, model or
    /// gateway key, with a monthly projection.
    ///
    /// Asks the gateway at --url (GET /v1/costs); repeat --url to add up several replicas.
    /// With a [ledger] in its configuration the figures survive restarts; without one they
    /// are what that gateway process has seen since it started.
    Costs(inspect::CostsArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A self-contained simulation of routing, failover and circuit breaking (no keys needed).
    ///
    /// Fake providers with different prices, speeds and failure patterns run behind a real
    /// gateway on 127.0.0.1; the demo sends traffic through it and shows routing decisions,
    /// failovers, a circuit breaker opening and recovering, and a cost breakdown. No real API
    /// calls, no network.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration without starting anything; exit 1 with the key path and the
    /// reason when it is invalid. Prints the backends, never a key.
    #[command(after_help = CONFIG_HELP)]
    Check(ConfigArg),
}

/// `--config FILE`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArg {
    /// Configuration file (default: $CLAUDETTE_CONFIG, then ./claudette.toml, then discovery).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::init_logging(matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return CliError::failure(format!("cannot start the async runtime: {e}")).report(),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Chat(a) => chat::run(a).await,
            Command::Batch(a) => batch::run(a).await,
            Command::Backends(a) => inspect::backends(a).await,
            Command::Costs(a) => inspect::costs(a).await,
            Command::Config(ConfigCommand::Check(a)) => inspect::config_check(a),
            Command::Demo(a) => demo::run(a).await,
        }
    });
    // Do not wait for stray blocking tasks (stdin readers, resolvers) after the answer is out.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
