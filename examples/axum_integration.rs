//! The seeds' Express integration, in axum: `POST /api/chat {"message": "…"}` →
//! `{"response": "…"}`, answered by whichever backend Claudette picks.
//!
//! ```text
//! cargo run -p claudette-examples --example axum_integration
//! curl -s localhost:3000/api/chat -H 'content-type: application/json' -d '{"message":"Explain TCP"}'
//! ```
//!
//! Backends come from the environment (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`,
//! `OLLAMA_HOST`, or a file named by `CLAUDETTE_CONFIG`). With none of them set, the example
//! starts two of Claudette's test-kit fake providers on 127.0.0.1 and routes to those, so it
//! runs on any machine; it says so when it does. `PORT` changes the port (default 3000).
//!
//! For an OpenAI- or Anthropic-compatible server with auth, metrics and streaming, run
//! `claudette serve` instead: it serves this same `/api/chat` route too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use claudette::{Claudette, Config, ConfigError, ErrorKind};
use claudette_testkit::{FakeServer, Reply};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct ChatBody {
    message: String,
}

/// `app.post('/api/chat', …)`.
async fn chat(
    State(claudette): State<Arc<Claudette>>,
    Json(body): Json<ChatBody>,
) -> (StatusCode, Json<Value>) {
    match claudette.optimize(body.message).await {
        Ok(response) => (StatusCode::OK, Json(json!({ "response": response.content }))),
        Err(e) => {
            // The seeds answered every failure with 500; a caller can do better knowing whether
            // the request itself was wrong or the providers failed.
            let status = match e.error.kind {
                ErrorKind::InvalidRequest | ErrorKind::ContextOverflow => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            (status, Json(json!({ "error": e.to_string() })))
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Kept alive for as long as the server runs, when used.
    let mut fakes: Vec<FakeServer> = Vec::new();
    let claudette = match Claudette::from_env() {
        Ok(c) => c,
        Err(ConfigError::NoBackends { .. }) => {
            let fast = FakeServer::start().await;
            let cheap = FakeServer::start().await;
            fast.set_default(Reply::openai_text("Hello from the fast fake provider."));
            cheap.set_default(Reply::openai_text("Hello from the cheap fake provider."));
            println!("No provider keys in the environment: routing to two FAKE providers on 127.0.0.1");
            println!("(claudette-testkit; no real API calls). Set OPENAI_API_KEY etc. for real ones.\n");
            let toml = format!(
                r#"
[[backends]]
name = "fast"
provider = "openai"
model = "fake-model"
base_url = "{}"
pricing = {{ input_per_1k = 0.002, output_per_1k = 0.004 }}

[[backends]]
name = "cheap"
provider = "openai"
model = "fake-model"
base_url = "{}"
pricing = {{ input_per_1k = 0.0002, output_per_1k = 0.0004 }}
"#,
                fast.v1_url(),
                cheap.v1_url()
            );
            fakes.extend([fast, cheap]);
            Claudette::with_config(Config::from_toml_str(&toml, &HashMap::<String, String>::new())?)?
        }
        Err(e) => return Err(e.into()),
    };
    println!("Backends: {}", claudette.router().backend_names().join(", "));

    let app = Router::new().route("/api/chat", post(chat)).with_state(Arc::new(claudette));
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("Listening on http://{addr}");
    println!(
        "Try: curl -s http://{addr}/api/chat -H 'content-type: application/json' -d '{{\"message\":\"Explain TCP\"}}'"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    drop(fakes);
    Ok(())
}
