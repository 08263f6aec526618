//! One streamed question to OpenAI (or any OpenAI-compatible server via OPENAI_BASE_URL).
//! Run: `OPENAI_API_KEY=sk-… cargo run -p claudette-examples --example openai`

use claudette::BackendSettings;
use claudette_examples::{ask_streaming, env_or_explain};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(key) = env_or_explain("OPENAI_API_KEY", "OpenAI") else { return Ok(()) };
    let mut settings = BackendSettings::new("openai").model("gpt-4o-mini").api_key(key);
    if let Ok(url) = std::env::var("OPENAI_BASE_URL") {
        settings = settings.base_url(url);
    }
    ask_streaming(claudette::openai::backend(&settings)?.shared(), "Explain TCP slow start in two sentences.")
        .await
}
