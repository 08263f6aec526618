//! Shared bits of the runnable examples (`cargo run -p claudette-examples --example <name>`).

use std::io::Write;

use claudette::core::SharedBackend;
use claudette::{BackendRouter, ChatRequest, RouterOptions, StreamEvent};
use futures::StreamExt;

/// Reads an environment variable, or explains how to set it and returns `None`.
pub fn env_or_explain(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            eprintln!("{var} is not set: export {var}=… to run this example against {what}.");
            None
        }
    }
}

/// Asks `backend` one question through a router, streaming the answer to stdout, and prints
/// usage, cost and the routing account.
pub async fn ask_streaming(backend: SharedBackend, prompt: &str) -> anyhow::Result<()> {
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(backend)?;
    let mut stream = router.route_stream(&ChatRequest::prompt(prompt).with_max_tokens(200)).await?;
    print!("[{}] ", stream.backend());
    while let Some(ev) = stream.next().await {
        match ev {
            StreamEvent::TextDelta { text } => {
                print!("{text}");
                std::io::stdout().flush().ok();
            }
            StreamEvent::Done { end } => {
                println!("\nfinish: {:?}, usage: {:?}, cost: {:.6}", end.finish_reason, end.usage, end.cost)
            }
            StreamEvent::Error { error } => println!("\nerror: {error}"),
            _ => {}
        }
    }
    println!("decision: {}", stream.decision().compact());
    Ok(())
}
