//! One streamed question to a self-hosted Qwen on vLLM / llama.cpp / SGLang, with adaptive
//! timeouts. Run: `QWEN_BASE_URL=http://127.0.0.1:8000/v1 QWEN_MODEL=Qwen/Qwen2.5-7B-Instruct cargo run -p claudette-examples --example qwen`
//! (the testbed's llama.cpp server works too: QWEN_BASE_URL=http://127.0.0.1:39180/v1 QWEN_MODEL=tiny-llama).

use claudette::BackendSettings;
use claudette_examples::{ask_streaming, env_or_explain};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(url) = env_or_explain("QWEN_BASE_URL", "a self-hosted OpenAI-compatible server") else {
        return Ok(());
    };
    let model = std::env::var("QWEN_MODEL").unwrap_or_else(|_| "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ".into());
    let mut settings =
        BackendSettings::new("qwen").base_url(url).model(model).extra("base_timeout_ms", 30_000);
    if let Ok(key) = std::env::var("QWEN_API_KEY") {
        settings = settings.api_key(key);
    }
    ask_streaming(claudette::qwen::backend(&settings)?.shared(), "Explain TCP slow start in two sentences.")
        .await
}
