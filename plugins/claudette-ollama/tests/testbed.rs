//! Against the protocol testbed's Ollama endpoint (ollama-openai-proxy in front of llama.cpp,
//! model `tiny-llama`; see the testbed README). Skipped, with the reason printed, when nothing
//! answers there. `CLAUDETTE_TESTBED_OLLAMA` overrides the URL (default
//! `http://127.0.0.1:39183`).
//!
//! The proxy is not a real Ollama: its non-stream `/api/chat` and `/api/tags` match Ollama's,
//! its stream sends `/api/generate`-style `response` fields and a duplicate final line, and it
//! reports no counts in streams. The assertions are on structure, finish reasons and counts;
//! the only text checked is the temperature-0 prefix the README documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, FinishReason, StreamEvent, Timeouts, UsageSource,
};
use claudette_ollama::OllamaBackend;
use futures::StreamExt;

const MODEL: &str = "tiny-llama";

/// The backend, or `None` (with the reason printed) when the testbed is not running.
async fn testbed() -> Option<OllamaBackend> {
    let url =
        std::env::var("CLAUDETTE_TESTBED_OLLAMA").unwrap_or_else(|_| "http://127.0.0.1:39183".to_owned());
    let timeouts = Timeouts {
        connect: Duration::from_millis(500),
        first_byte: Duration::from_secs(30),
        idle: Duration::from_secs(30),
        total: Duration::from_secs(60),
    };
    let settings = BackendSettings::new("testbed-ollama").model(MODEL).base_url(&url).timeouts(timeouts);
    let backend = claudette_ollama::backend(&settings).unwrap();
    match backend.health_check().await {
        Ok(()) => Some(backend),
        Err(e) if matches!(e.kind, ErrorKind::Transport | ErrorKind::Timeout) => {
            println!(
                "skipped: the testbed's Ollama endpoint does not answer at {url} ({e}); start it with the testbed's start.sh ollama"
            );
            None
        }
        Err(e) => panic!("the testbed answered the health probe with an error: {e}"),
    }
}

#[tokio::test]
async fn health_check_lists_the_model() {
    let Some(backend) = testbed().await else { return };
    let models = backend.available_models().await.unwrap();
    assert!(models.iter().any(|m| m == MODEL), "{models:?}");
}

#[tokio::test]
async fn non_stream_chat() {
    let Some(backend) = testbed().await else { return };
    let request = ChatRequest::prompt("Say hi").with_max_tokens(8).with_temperature(0.0);
    let answer = backend.send(&request).await.unwrap();
    // Deterministic at temperature 0 on every testbed server (README).
    assert!(answer.content.starts_with("oproject"), "{:?}", answer.content);
    // max_tokens is always reached by the random model.
    assert_eq!(answer.finish_reason, Some(FinishReason::Length));
    assert_eq!(answer.usage.source, UsageSource::Reported);
    assert!(answer.usage.input_tokens > 0);
    assert_eq!(answer.usage.output_tokens, 8);
    assert_eq!(answer.model, MODEL);
    assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
}

#[tokio::test]
async fn stream_chat_through_the_proxy_quirks() {
    let Some(backend) = testbed().await else { return };
    let request = ChatRequest::prompt("Say hi").with_max_tokens(4).with_temperature(0.0);
    let events: Vec<StreamEvent> = backend.send_stream(&request).await.unwrap().collect().await;
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(text.starts_with("oproject"), "{text:?}");
    // One terminal event despite the proxy's two final lines, and the first one's reason.
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1, "{events:?}");
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::Length));
    // The proxy's stream reports no counts: the usage is an estimate, and says so.
    assert_eq!(end.usage.source, UsageSource::Estimated);
}
