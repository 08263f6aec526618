//! `claudette chat "prompt"`: one routed request, streamed to the terminal token by token.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use claudette::core::{Dialect, NativeTool};
use claudette::{ChatRequest, Message, RouteError, StreamEvent};
use futures::StreamExt;
use serde_json::Value;

use crate::common::{CliError, build_router, load_config, money, note, outln, stdout_error};

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The prompt. Use `-` to read it from stdin.
    pub prompt: String,
    /// Send to this backend only (by name), instead of letting the router choose.
    #[arg(long, short = 'b', value_name = "NAME")]
    pub backend: Option<String>,
    /// Print the whole response as JSON (content, usage, cost, backend, routing decision)
    /// instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// A system message sent before the prompt.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Cap on the answer's length, in tokens.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[arg(long, value_name = "T")]
    pub temperature: Option<f32>,
    /// Let Claude search the web (Anthropic's `web_search` server tool, billed per search):
    /// the request goes to Anthropic backends only. Each search is noted as it runs, and the
    /// sources the answer cites are listed after it.
    #[arg(long)]
    pub web_search: bool,
    /// Configuration file (default: $CLAUDETTE_CONFIG, then ./claudette.toml, then discovery).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub(crate) async fn run(args: ChatArgs) -> Result<(), CliError> {
    let prompt = if args.prompt == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::failure(format!("cannot read the prompt from stdin: {e}")))?;
        s
    } else {
        args.prompt.clone()
    };
    if prompt.trim().is_empty() {
        return Err(CliError::usage("the prompt is empty"));
    }
    let config = load_config(args.config.as_deref())?;
    let router = build_router(&config)?;
    if let Some(b) = &args.backend {
        if router.backend(b).is_none() {
            return Err(CliError::usage(format!(
                "no backend named \"{b}\" (configured: {})",
                router.backend_names().join(", ")
            )));
        }
    }

    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.clone()));
    }
    messages.push(Message::user(prompt));
    let mut request = ChatRequest::new(messages);
    request.backend = args.backend.clone();
    request.max_tokens = args.max_tokens;
    request.temperature = args.temperature;
    if args.web_search {
        request.native_tools.push(NativeTool {
            dialect: Dialect::Anthropic,
            at: 0,
            spec: serde_json::json!({"type": "web_search_20250305", "name": "web_search"}),
        });
    }

    if args.json {
        let response = router.route_request(&request).await.map_err(route_failure)?;
        let text = serde_json::to_string_pretty(&response)
            .map_err(|e| CliError::failure(format!("cannot encode the response: {e}")))?;
        return outln!("{text}");
    }

    let mut stream = router.route_stream(&request).await.map_err(route_failure)?;
    let mut out = std::io::stdout().lock();
    let mut wrote_text = false;
    let mut in_reasoning = false;
    let mut sources = Sources::default();
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::TextDelta { text } => {
                if in_reasoning {
                    note!();
                    in_reasoning = false;
                }
                // Flush per delta: the point is to see tokens as they arrive. A failed write ends
                // the command and drops the stream, which stops the upstream generation: nobody
                // would read the rest of the answer, so it need not be paid for.
                out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| stdout_error(&e))?;
                wrote_text = true;
            }
            StreamEvent::ReasoningDelta { text } => {
                // Reasoning is not the answer: keep stdout clean for pipes.
                let _ = write!(std::io::stderr(), "{text}");
                in_reasoning = true;
            }
            StreamEvent::ToolCall { delta } => {
                if let Some(name) = delta.name {
                    note!("[tool call: {name}]");
                }
            }
            StreamEvent::Native { block } => {
                if let Some(query) = searched(&block.block) {
                    note!("[searching the web: {query}]");
                }
            }
            StreamEvent::Citation { citation } => sources.cite(&citation),
            StreamEvent::Usage { .. }
            | StreamEvent::ThinkingSeal { .. }
            | StreamEvent::NativeField { .. }
            | StreamEvent::TextEnd => {}
            StreamEvent::Done { end } => {
                if wrote_text {
                    writeln!(out).and_then(|()| out.flush()).map_err(|e| stdout_error(&e))?;
                }
                if in_reasoning {
                    note!();
                }
                sources.write(&mut out).map_err(|e| stdout_error(&e))?;
                let searches = match end.usage.web_search_requests {
                    0 => String::new(),
                    1 => " · 1 search".to_owned(),
                    n => format!(" · {n} searches"),
                };
                let d = stream.decision();
                let attempts = d.attempts.len();
                note!(
                    "[{} · {} in / {} out tokens{}{searches} · {} · {} attempt{}]",
                    stream.backend(),
                    end.usage.input_tokens,
                    end.usage.output_tokens,
                    if end.usage.source == claudette::core::UsageSource::Estimated {
                        " (estimated)"
                    } else {
                        ""
                    },
                    money(end.cost),
                    attempts,
                    if attempts == 1 { "" } else { "s" }
                );
                return Ok(());
            }
            StreamEvent::Error { error } => {
                if wrote_text {
                    let _ = writeln!(out);
                }
                if in_reasoning {
                    note!();
                }
                // Committed streams never fail over: say plainly the answer is incomplete.
                return Err(CliError::failure(format!("the answer was cut off: {error}")));
            }
        }
    }
    Err(CliError::failure("the stream ended without a final event"))
}

/// The query of a web search Claude runs (a `server_tool_use` block of its `web_search`).
fn searched(block: &Value) -> Option<&str> {
    (block.get("type")?.as_str()? == "server_tool_use" && block.get("name")?.as_str()? == "web_search")
        .then(|| block.get("input")?.get("query")?.as_str())
        .flatten()
}

/// The web pages an answer cites, each once, in the order first cited.
#[derive(Default)]
struct Sources(Vec<(String, String)>);

impl Sources {
    fn cite(&mut self, citation: &Value) {
        let Some(url) = citation.get("url").and_then(Value::as_str) else { return };
        if !self.0.iter().any(|(u, _)| u == url) {
            let title = citation.get("title").and_then(Value::as_str).unwrap_or_default();
            self.0.push((url.to_owned(), title.to_owned()));
        }
    }

    /// After the answer, on stdout: they are part of it (where its claims come from).
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nSources:")?;
        for (i, (url, title)) in self.0.iter().enumerate() {
            match title.is_empty() {
                true => writeln!(out, "[{}] {url}", i + 1)?,
                false => writeln!(out, "[{}] {title} <{url}>", i + 1)?,
            }
        }
        out.flush()
    }
}

fn route_failure(e: RouteError) -> CliError {
    let n = e.attempts();
    if n == 0 {
        CliError::failure(e.error.to_string())
    } else {
        CliError::failure(format!("{} (after {n} attempt{})", e.error, if n == 1 { "" } else { "s" }))
    }
}
