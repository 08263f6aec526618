//! One streamed question to Anthropic's Messages API.
//! Run: `ANTHROPIC_API_KEY=sk-ant-… cargo run -p claudette-examples --example anthropic`

use claudette::BackendSettings;
use claudette_examples::{ask_streaming, env_or_explain};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(key) = env_or_explain("ANTHROPIC_API_KEY", "Anthropic") else { return Ok(()) };
    let settings = BackendSettings::new("claude").model("claude-haiku-4-5").api_key(key);
    ask_streaming(
        claudette::anthropic::backend(&settings)?.shared(),
        "Explain TCP slow start in two sentences.",
    )
    .await
}
