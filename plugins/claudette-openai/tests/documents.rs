//! PDFs as the OpenAI adapter sends them, over real HTTP to a fake server: a `file` part with
//! the PDF as a `data:` URL at its place among text and images, a tool result's PDF moved to
//! a user message after the results (OpenAI takes file parts in user messages only), and the
//! documents Chat Completions or the server cannot take refused before any call, as
//! `Unsupported`, so the router tries a backend that reads them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use claudette_core::{
    Backend, BackendRouter, BackendSettings, ChatRequest, Document, DocumentSource, ErrorKind, Image,
    ImageSource, Message, RetryAction, RouterOptions,
};
use claudette_testkit::{FakeServer, Reply};
use common::{call, image_part, sent_messages, settings, wire_call};
use serde_json::json;

/// The start of a PDF file, base64.
const PDF: &str = "JVBERi0xLjcKJeLjz9MK";
const PNG: &str = "iVBORw0KGgo=";

fn pdf(at: u32, title: Option<&str>) -> Document {
    Document {
        citations: false,
        at,
        source: DocumentSource::Base64 { data: PDF.into() },
        title: title.map(Into::into),
    }
}

fn pdf_by_url(at: u32) -> Document {
    Document {
        citations: false,
        at,
        source: DocumentSource::Url { url: "https://example.com/report.pdf".into() },
        title: None,
    }
}

/// A backend on the fake server; `documents` is its setting (the fake is no OpenAI host, so
/// it reads no PDFs unless told).
fn backend(fake: &FakeServer, documents: Option<bool>) -> claudette_openai::OpenAiBackend {
    let mut settings = settings(fake);
    if let Some(on) = documents {
        settings = settings.extra("documents", on);
    }
    claudette_openai::backend(&settings).unwrap()
}

fn file_part(filename: &str) -> serde_json::Value {
    json!({"type": "file", "file": {"filename": filename, "file_data": format!("data:application/pdf;base64,{PDF}")}})
}

#[tokio::test]
async fn a_pdf_is_a_file_part_at_its_place_among_text_and_images() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake, Some(true));
    let ask = Message {
        images: vec![Image {
            at: 9,
            source: ImageSource::Base64 { media_type: "image/png".into(), data: PNG.into() },
        }],
        // At one offset an image comes before a document.
        documents: vec![pdf(5, Some("q3 report.pdf")), pdf(9, None)],
        ..Message::user("read and compare")
    };
    let request = ChatRequest::new(vec![Message::system("be brief"), ask, Message::user("thanks")]);
    let expected = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "read "},
            file_part("q3 report.pdf"),
            {"type": "text", "text": "and "},
            image_part(&format!("data:image/png;base64,{PNG}")),
            file_part("document.pdf"),
            {"type": "text", "text": "compare"},
        ]},
        {"role": "user", "content": "thanks"},
    ]);
    for messages in sent_messages(&fake, &backend, &request).await {
        assert_eq!(messages, expected);
    }
    // A document alone (no text) is parts too.
    let only = ChatRequest::new(vec![Message { documents: vec![pdf(0, None)], ..Message::user("") }]);
    for messages in sent_messages(&fake, &backend, &only).await {
        assert_eq!(messages, json!([{"role": "user", "content": [file_part("document.pdf")]}]));
    }
}

/// Claude Code's Read tool returns a PDF as a document in the tool result: OpenAI takes file
/// parts in user messages only, so it follows the run of results in one.
#[tokio::test]
async fn a_tool_results_pdf_follows_the_results_in_a_user_message() {
    let fake = FakeServer::start().await;
    let backend = backend(&fake, Some(true));
    let request = ChatRequest::new(vec![
        Message::user("summarise both"),
        Message { tool_calls: vec![call("c1", "Read"), call("c2", "Read")], ..Message::assistant("") },
        Message { documents: vec![pdf(0, Some("spec.pdf"))], ..Message::tool_result("c1", "") },
        Message {
            images: vec![Image {
                at: 6,
                source: ImageSource::Url { url: "https://example.com/fig.png".into() },
            }],
            documents: vec![pdf(6, None)],
            ..Message::tool_result("c2", "pages:")
        },
    ]);
    let expected = json!([
        {"role": "user", "content": "summarise both"},
        {"role": "assistant", "content": null, "tool_calls": [wire_call("c1", "Read"), wire_call("c2", "Read")]},
        {"role": "tool", "tool_call_id": "c1", "content": "(the result is 1 document, in the next user message)"},
        {"role": "tool", "tool_call_id": "c2", "content": "pages:"},
        {"role": "user", "content": [
            {"type": "text", "text": "The result of tool call c1 included 1 document:"},
            file_part("spec.pdf"),
            {"type": "text", "text": "\nThe result of tool call c2 included 1 image and 1 document:"},
            image_part("https://example.com/fig.png"),
            file_part("document.pdf"),
        ]},
    ]);
    for messages in sent_messages(&fake, &backend, &request).await {
        assert_eq!(messages, expected);
    }
}

#[tokio::test]
async fn documents_the_server_cannot_take_are_refused_before_any_call() {
    let fake = FakeServer::start().await;
    let refused = |err: claudette_core::BackendError, words: &str| {
        assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
        // Unsupported is local: the router tries another backend.
        assert_eq!(err.action(), RetryAction::FailOver, "{err}");
        assert!(err.to_string().contains(words), "{err}");
    };
    let in_user = ChatRequest::new(vec![Message { documents: vec![pdf(0, None)], ..Message::user("read") }]);
    let by_url = ChatRequest::new(vec![Message { documents: vec![pdf_by_url(4)], ..Message::user("read") }]);
    let tool_url = ChatRequest::new(vec![
        Message::user("read it"),
        Message { tool_calls: vec![call("c1", "Read")], ..Message::assistant("") },
        Message { documents: vec![pdf_by_url(0)], ..Message::tool_result("c1", "") },
    ]);
    // A compatible server (vLLM, llama.cpp) answers a `file` part with a 400: not sent unless
    // the backend says it reads them.
    for backend in [backend(&fake, None), backend(&fake, Some(false))] {
        refused(backend.send(&in_user).await.unwrap_err(), "message 0: this server is not known to read PDF");
        refused(backend.send_stream(&in_user).await.err().unwrap(), "set `documents = true`");
    }
    // Chat Completions takes no file URL, wherever the document stands.
    let backend = backend(&fake, Some(true));
    refused(backend.send(&by_url).await.unwrap_err(), "message 0: OpenAI Chat Completions takes no file URL");
    refused(backend.send_stream(&by_url).await.err().unwrap(), "takes no file URL");
    refused(
        backend.send(&tool_url).await.unwrap_err(),
        "message 2: OpenAI Chat Completions takes no file URL",
    );
    assert!(fake.received().is_empty());
}

/// A compatible server whose model reads images (so the router offers it a PDF request)
/// refuses the PDF before sending, and the router gives the request to OpenAI instead.
#[tokio::test]
async fn a_pdf_request_goes_past_a_server_that_reads_no_pdfs() {
    let (local, openai) = (FakeServer::start().await, FakeServer::start().await);
    let vl =
        BackendSettings::new("local-vl").base_url(local.v1_url()).model("qwen2.5-vl").extra("images", true);
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(Arc::new(claudette_openai::backend(&vl).unwrap())).unwrap();
    router.register_backend(Arc::new(backend(&openai, Some(true)))).unwrap();
    let request = ChatRequest::new(vec![Message { documents: vec![pdf(5, None)], ..Message::user("read ") }]);
    openai.push(Reply::openai_text("a report"));
    let answer = router.route_request(&request).await.unwrap();
    assert_eq!(answer.content, "a report");
    assert_eq!((local.requests(), openai.requests()), (0, 1));
    // The free local server was tried first, and refused without a call.
    let attempts = answer.decision.unwrap().attempts;
    let tried: Vec<_> = attempts.iter().map(|a| (a.backend.as_str(), a.error)).collect();
    assert_eq!(tried, [("local-vl", Some(ErrorKind::Unsupported)), ("oa", None)], "{attempts:?}");
    assert_eq!(openai.received()[0].json()["messages"][0]["content"][1], file_part("document.pdf"));
}
