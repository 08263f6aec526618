//! One streamed question to a local Ollama (native /api/chat, NDJSON).
//! Run: `OLLAMA_HOST=http://127.0.0.1:11434 OLLAMA_MODEL=llama3.2 cargo run -p claudette-examples --example ollama`

use claudette::BackendSettings;
use claudette_examples::{ask_streaming, env_or_explain};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(host) = env_or_explain("OLLAMA_HOST", "a running Ollama") else { return Ok(()) };
    let model = std::env::var("OLLAMA_MODEL").unwrap_or_else(|_| "llama3.2".into());
    let settings = BackendSettings::new("ollama").base_url(host).model(model);
    ask_streaming(claudette::ollama::backend(&settings)?.shared(), "Explain TCP slow start in two sentences.")
        .await
}
