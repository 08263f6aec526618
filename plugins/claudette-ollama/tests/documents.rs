//! PDFs, which Ollama's `/api/chat` cannot take (text and images only): refused before anything
//! is sent, as `Unsupported` so the router tries another backend, in a user message and a tool
//! result alike; over real HTTP on 127.0.0.1 against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{Backend, ChatRequest, Document, DocumentSource, ErrorKind, Message, RetryAction};
use claudette_testkit::FakeServer;
use common::{backend, call};

#[tokio::test]
async fn documents_are_refused_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let pdf = |source| vec![Document { citations: false, at: 0, source, title: Some("spec.pdf".into()) }];
    let inline = || pdf(DocumentSource::Base64 { data: "JVBERi0xLjcK".into() });
    let by_url = || pdf(DocumentSource::Url { url: "https://docs.example/spec.pdf".into() });
    let in_tool = ChatRequest::new(vec![
        Message::user("read it"),
        Message { tool_calls: vec![call("c1", "Read")], ..Message::assistant("") },
        Message { documents: inline(), ..Message::tool_result("c1", "") },
    ]);
    let cases = [
        (
            "inline, in a user message",
            0,
            ChatRequest::new(vec![Message { documents: inline(), ..Message::user("read") }]),
        ),
        (
            "by URL, in a user message",
            0,
            ChatRequest::new(vec![Message { documents: by_url(), ..Message::user("read") }]),
        ),
        ("in a tool result", 2, in_tool),
    ];
    for (why, index, request) in cases {
        for e in [b.send(&request).await.unwrap_err(), b.send_stream(&request).await.err().unwrap()] {
            assert_eq!(e.kind, ErrorKind::Unsupported, "{why}: {e}");
            assert_eq!(e.kind.action(), RetryAction::FailOver, "{why}: another backend may take it");
            assert!(
                e.message.contains(&format!("message {index}: ollama takes no PDF documents")),
                "{why}: {e}"
            );
        }
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}
