//! One streamed question to Google Gemini.
//! Run: `GEMINI_API_KEY=… cargo run -p claudette-examples --example gemini`

use claudette::BackendSettings;
use claudette_examples::{ask_streaming, env_or_explain};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(key) = env_or_explain("GEMINI_API_KEY", "Google Gemini") else { return Ok(()) };
    let settings = BackendSettings::new("gemini").model("gemini-2.5-flash").api_key(key);
    ask_streaming(claudette::gemini::backend(&settings)?.shared(), "Explain TCP slow start in two sentences.")
        .await
}
