//! PDFs: in a user turn as `parts` at their place among text and images (inline base64 as
//! `inlineData`, a URL as `fileData`, both `application/pdf`), a tool result's beside the
//! `functionResponse`s, in `generateContent`, its stream and `countTokens` alike, and a URL
//! Gemini cannot fetch refused before anything is sent; over real HTTP on 127.0.0.1 against
//! `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{Backend, ChatRequest, Document, DocumentSource, ErrorKind, Message, RetryAction};
use claudette_gemini::THOUGHT_SIGNATURE_PLACEHOLDER;
use claudette_testkit::FakeServer;
use common::{answer, assert_contents, backend, base64_image, call, file_data, inline, url_image};
use serde_json::{Value, json};

/// The start of a PDF file, base64.
const PDF: &str = "JVBERi0xLjcKJeLjz9MK";

fn pdf(at: u32) -> Document {
    Document {
        citations: false,
        at,
        source: DocumentSource::Base64 { data: PDF.into() },
        title: Some("spec.pdf".into()),
    }
}

fn pdf_at(at: u32, url: &str) -> Document {
    Document { citations: false, at, source: DocumentSource::Url { url: url.into() }, title: None }
}

fn inline_pdf() -> Value {
    inline("application/pdf", PDF)
}

fn fetched_pdf(url: &str) -> Value {
    file_data("application/pdf", url)
}

#[tokio::test]
async fn documents_go_as_parts_at_their_place_among_text_and_images() {
    let server = FakeServer::start().await;
    let request = ChatRequest::new(vec![
        Message::system("be brief"),
        Message {
            images: vec![base64_image(9, "image/png", "iVBORw0KGgo=")],
            // At one offset an image comes before a document.
            documents: vec![pdf(5), pdf_at(9, "https://docs.example/report.pdf?sig=1")],
            ..Message::user("read and compare")
        },
    ]);
    let expected = json!([{"role": "user", "parts": [
        {"text": "read "},
        inline_pdf(),
        {"text": "and "},
        inline("image/png", "iVBORw0KGgo="),
        fetched_pdf("https://docs.example/report.pdf?sig=1"),
        {"text": "compare"},
    ]}]);
    assert_contents(&server, &request, &expected).await;
}

/// Claude Code's Read tool returns a PDF as a document in the tool result: it goes as a part
/// of the `user` turn that carries the `functionResponse`s, after all of them, named after
/// its function when the turn answers more than one call (with the images of a result that
/// has both, in the result's order).
#[tokio::test]
async fn a_tool_results_documents_go_beside_the_function_responses() {
    let server = FakeServer::start().await;
    let signed = json!(THOUGHT_SIGNATURE_PLACEHOLDER);
    let parallel = ChatRequest::new(vec![
        Message::user("summarise both"),
        Message { tool_calls: vec![call("read_spec"), call("read_scan")], ..Message::assistant("") },
        Message { documents: vec![pdf(0)], ..Message::tool_result("call-read_spec", "") },
        Message {
            images: vec![url_image(0, "https://img.example/p1.png")],
            documents: vec![pdf_at(0, "https://docs.example/scan.pdf")],
            ..Message::tool_result("call-read_scan", "2 pages")
        },
    ]);
    let expected = json!([
        {"role": "user", "parts": [{"text": "summarise both"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "read_spec", "args": {}}, "thoughtSignature": signed},
            {"functionCall": {"name": "read_scan", "args": {}}},
        ]},
        {"role": "user", "parts": [
            answer("read_spec", json!({"result": ""})),
            answer("read_scan", json!({"result": "2 pages"})),
            {"text": "The result of `read_spec` included 1 document:"},
            inline_pdf(),
            {"text": "The result of `read_scan` included 1 image and 1 document:"},
            file_data("image/png", "https://img.example/p1.png"),
            fetched_pdf("https://docs.example/scan.pdf"),
        ]},
    ]);
    assert_contents(&server, &parallel, &expected).await;

    // One call: its document right after its response, unnamed; the user's next words follow.
    let single = ChatRequest::new(vec![
        Message::user("summarise it"),
        Message { tool_calls: vec![call("read_spec")], ..Message::assistant("") },
        Message { documents: vec![pdf(0)], ..Message::tool_result("call-read_spec", "") },
        Message::user("briefly"),
    ]);
    let expected = json!([
        {"role": "user", "parts": [{"text": "summarise it"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "read_spec", "args": {}}, "thoughtSignature": signed},
        ]},
        {"role": "user", "parts": [
            answer("read_spec", json!({"result": ""})),
            inline_pdf(),
            {"text": "briefly"},
        ]},
    ]);
    assert_contents(&server, &single, &expected).await;
}

/// Gemini fetches http(s) URLs only: another scheme is refused before anything is sent, as
/// `Unsupported` so the router tries another backend, in a user turn and a tool result alike.
#[tokio::test]
async fn a_document_url_gemini_cannot_fetch_is_refused_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let ftp = || vec![pdf_at(0, "ftp://files.example/report.pdf")];
    let in_user = ChatRequest::new(vec![Message { documents: ftp(), ..Message::user("read") }]);
    let in_tool = ChatRequest::new(vec![
        Message::user("read it"),
        Message { tool_calls: vec![call("read")], ..Message::assistant("") },
        Message { documents: ftp(), ..Message::tool_result("call-read", "") },
    ]);
    for request in [&in_user, &in_tool] {
        let errors = [
            b.send(request).await.unwrap_err(),
            b.send_stream(request).await.err().unwrap(),
            b.count_tokens(request).await.unwrap_err(),
        ];
        for e in errors {
            assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
            assert_eq!(e.kind.action(), RetryAction::FailOver, "{e}");
            assert!(e.message.contains("gemini fetches document URLs over http(s) only"), "{e}");
        }
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}
