//! Claude searching the web through the router: Anthropic's `web_search` server tool, the
//! blocks Claude answers with, the sources it cites, and the searches in the cost. Only an
//! Anthropic backend can take such a request: the router skips any other (`other_dialect`).
//! Run: `ANTHROPIC_API_KEY=sk-ant-… cargo run -p claudette-examples --example web_search`
//! (`ANTHROPIC_BASE_URL` points it elsewhere, e.g. at a Claudette gateway.)

use claudette::core::{Block, Dialect, NativeTool};
use claudette::{BackendRouter, BackendSettings, ChatRequest, RouterOptions};
use claudette_examples::env_or_explain;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(key) = env_or_explain("ANTHROPIC_API_KEY", "Anthropic") else { return Ok(()) };
    let router = BackendRouter::new(RouterOptions::default());
    let mut settings = BackendSettings::new("claude").model("claude-haiku-4-5").api_key(key);
    if let Some(url) = std::env::var("ANTHROPIC_BASE_URL").ok().filter(|u| !u.is_empty()) {
        settings = settings.base_url(url);
    }
    router.register_backend(claudette::anthropic::backend(&settings)?.shared())?;

    // The tool as Anthropic defines it, carried whole; `at` is its place among `tools`.
    let search = NativeTool {
        dialect: Dialect::Anthropic,
        at: 0,
        spec: serde_json::json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 2}),
    };
    let request = ChatRequest {
        native_tools: vec![search],
        ..ChatRequest::prompt("What is the latest stable Rust release? Cite your source.")
            .with_max_tokens(800)
    };
    let answer = router.route_request(&request).await?;

    // The answer's blocks in Claude's order: the search and its results are Anthropic's own
    // blocks (send them back unchanged in a next turn); text carries its citations.
    for block in answer.blocks_for_client() {
        match block {
            Block::Text { text, start } => {
                print!("{text}");
                for citation in answer.citations_at(start + text.len()) {
                    if let Some(url) = citation.get("url").and_then(|u| u.as_str()) {
                        print!(" [{url}]");
                    }
                }
            }
            Block::Native(native) => println!("\n<{}>", native.kind()),
            _ => {}
        }
    }
    println!(
        "\nsearches: {}, cost: ${:.4} (tokens and searches), decision: {}",
        answer.usage.web_search_requests,
        answer.cost,
        answer.decision.as_ref().map(|d| d.compact()).unwrap_or_default()
    );
    Ok(())
}
