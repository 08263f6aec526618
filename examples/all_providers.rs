//! Routes across OpenAI, Anthropic, Gemini and Ollama with failover, each speaking its own
//! wire protocol. A provider whose key (or host) is in the environment is used for real; the
//! others are replaced by a local fake server speaking that provider's protocol, so the
//! program runs anywhere. The fakes are scripted to fail in provider-typical ways (OpenAI 503,
//! Anthropic `overloaded_error` inside a 200 stream) so you can watch the failover happen.
//!
//! Run: `cargo run -p claudette-examples --example all_providers`

use claudette::{BackendRouter, BackendSettings, ChatRequest, RouterOptions, StreamEvent};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let router = BackendRouter::new(RouterOptions::default());
    let mut fakes = Vec::new(); // keep the fake servers alive

    let openai = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => BackendSettings::new("openai").model("gpt-4o-mini").api_key(key),
        Err(_) => {
            let f = FakeServer::start().await;
            f.set_default(Reply::openai_error(503, "server_error", None, "The server is overloaded"));
            let s =
                BackendSettings::new("openai").model("gpt-4o-mini").base_url(f.v1_url()).api_key("sk-fake");
            fakes.push(("openai", f));
            s
        }
    };
    let anthropic = match std::env::var("ANTHROPIC_API_KEY") {
        Ok(key) => BackendSettings::new("anthropic").model("claude-haiku-4-5").api_key(key),
        Err(_) => {
            let f = FakeServer::start().await;
            f.set_default(Reply::anthropic_stream_error_first("overloaded_error"));
            let s = BackendSettings::new("anthropic")
                .model("claude-haiku-4-5")
                .base_url(f.url())
                .api_key("sk-ant-fake");
            fakes.push(("anthropic", f));
            s
        }
    };
    let gemini = match std::env::var("GEMINI_API_KEY") {
        Ok(key) => BackendSettings::new("gemini").model("gemini-2.5-flash").api_key(key),
        Err(_) => {
            let f = FakeServer::start().await;
            f.set_default(Reply::gemini_stream(&["Gemini ", "answers ", "after ", "two ", "failovers."]));
            let s = BackendSettings::new("gemini")
                .model("gemini-2.5-flash")
                .base_url(format!("{}/v1beta", f.url()))
                .api_key("fake-gemini-key");
            fakes.push(("gemini", f));
            s
        }
    };
    let ollama = match std::env::var("OLLAMA_HOST") {
        Ok(host) => BackendSettings::new("ollama").model("llama3.2").base_url(host),
        Err(_) => {
            let f = FakeServer::start().await;
            f.set_default(Reply::ollama_stream(&["Ollama ", "is ", "the ", "last ", "resort."]));
            let s = BackendSettings::new("ollama").model("llama3.2").base_url(f.url());
            fakes.push(("ollama", f));
            s
        }
    };
    for (name, _) in &fakes {
        println!("{name}: no credentials in the environment, using a local fake speaking its protocol");
    }

    router.register_backend(claudette::openai::backend(&openai)?.shared())?;
    router.register_backend(claudette::anthropic::backend(&anthropic)?.shared())?;
    router.register_backend(claudette::gemini::backend(&gemini)?.shared())?;
    router.register_backend(claudette::ollama::backend(&ollama)?.shared())?;
    router.set_failover_chain(["openai", "anthropic", "gemini", "ollama"])?;

    let mut stream =
        router.route_stream(&ChatRequest::prompt("Say hello in five words.").with_max_tokens(50)).await?;
    println!("\nAttempts before the first token (invisible to the caller):");
    for a in &stream.decision().attempts {
        let why =
            a.error.map(|k| format!(" — {k}: {}", a.message.clone().unwrap_or_default())).unwrap_or_default();
        println!("  {:<9} {}{why}", a.backend, a.outcome.as_str());
    }
    print!("\nAnswer from {}: ", stream.backend());
    while let Some(ev) = stream.next().await {
        match ev {
            StreamEvent::TextDelta { text } => print!("{text}"),
            StreamEvent::Done { end } => println!("\n  usage {:?}, cost {:.6}", end.usage, end.cost),
            StreamEvent::Error { error } => println!("\n  stream failed after its first token: {error}"),
            _ => {}
        }
    }
    println!("\nBackend health:");
    for h in router.health_statuses() {
        println!(
            "  {:<9} healthy={} breaker={} consecutive_failures={}",
            h.backend, h.healthy, h.circuit_breaker_state, h.consecutive_failures
        );
    }
    Ok(())
}
