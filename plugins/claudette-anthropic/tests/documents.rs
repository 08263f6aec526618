//! PDFs (a file the user attached, one Claude Code's Read returns) as the Anthropic adapter
//! sends them over real HTTP to a fake server: each is a `document` block where the client put
//! it among the text and images, base64 with `application/pdf` or a URL, its title kept; in a
//! `tool_result`, a block list; a breakpoint on a document puts `cache_control` on its block;
//! and the message, the stream and the token count all send the same blocks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{
    Backend, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, Document, DocumentSource, Message, ToolCall,
};
use claudette_testkit::{FakeServer, Reply};
use common::{assert_sent_streamed_and_counted, backend, cached, text, url_image, url_image_at};
use serde_json::{Value, json};

/// The first bytes of a PDF (`%PDF-1.4`), base64: the adapter never decodes it.
const PDF: &str = "JVBERi0xLjQK";
const PDF_URL: &str = "https://example.com/spec.pdf";
const PNG_URL: &str = "https://example.com/chart.png";

fn pdf_at(at: u32, title: Option<&str>) -> Document {
    Document {
        citations: false,
        at,
        source: DocumentSource::Base64 { data: PDF.into() },
        title: title.map(Into::into),
    }
}

fn url_at(at: u32) -> Document {
    Document { citations: false, at, source: DocumentSource::Url { url: PDF_URL.into() }, title: None }
}

fn on_document(index: u32, ttl: CacheTtl) -> CacheBreakpoint {
    CacheBreakpoint { at: CacheAt::Document(index), ttl }
}

fn pdf(title: Option<&str>) -> Value {
    let mut block = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}});
    if let Some(title) = title {
        block["title"] = json!(title);
    }
    block
}

fn url() -> Value {
    json!({"type": "document", "source": {"type": "url", "url": PDF_URL}})
}

/// The user attaches a titled PDF and a chart before "and", and a PDF by URL at the end; two
/// Reads run (one returns only a PDF, marked twice: the first mark wins; one fails with text
/// around a PDF by URL, unmarked, and a breakpoint on its text); the user asks on.
fn request() -> ChatRequest {
    let read = |id: &str| ToolCall {
        id: id.into(),
        name: "Read".into(),
        arguments: json!({"file_path": "spec.pdf"}),
    };
    let question = "compare  and ";
    ChatRequest::new(vec![
        Message::system("be brief"),
        Message {
            images: vec![url_image_at(8, PNG_URL)],
            documents: vec![pdf_at(8, Some("report.pdf")), url_at(question.len() as u32)],
            ..Message::user(question)
        },
        Message { tool_calls: vec![read("toolu_1"), read("toolu_2")], ..Message::assistant("") },
        Message {
            documents: vec![pdf_at(0, None)],
            cache: vec![on_document(0, CacheTtl::OneHour), on_document(0, CacheTtl::FiveMinutes)],
            ..Message::tool_result("toolu_1", "")
        },
        Message {
            documents: vec![url_at(12)],
            cache: vec![CacheBreakpoint { at: CacheAt::Text(12), ttl: CacheTtl::FiveMinutes }],
            ..Message::tool_error("toolu_2", "page 3 of 9:truncated")
        },
        Message::user("what changed?"),
    ])
}

fn expected_messages() -> Value {
    let read = json!({"file_path": "spec.pdf"});
    json!([
        {"role": "user", "content": [
            text("compare "),
            url_image(PNG_URL),
            pdf(Some("report.pdf")),
            text(" and "),
            url(),
        ]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": read},
            {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": read},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [cached(pdf(None), Some("1h"))]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                "content": [cached(text("page 3 of 9:"), None), url(), text("truncated")]},
            text("what changed?"),
        ]},
    ])
}

#[tokio::test]
async fn documents_and_document_breakpoints_are_sent_streamed_and_counted_as_blocks() {
    let answer = ["section 2", " changed"];
    assert_sent_streamed_and_counted(&request(), &answer, 9100, "be brief", &expected_messages()).await;
}

/// A PDF alone in a user turn is a block list of one document, never the plain-string form a
/// lone text block takes.
#[tokio::test]
async fn a_lone_user_pdf_is_one_document_block() {
    let fake = FakeServer::start().await;
    fake.push(Reply::anthropic_text("ok"));
    let request =
        ChatRequest::new(vec![Message { documents: vec![pdf_at(0, Some("a.pdf"))], ..Message::user("") }]);
    backend(&fake).send(&request).await.unwrap();
    assert_eq!(
        fake.received()[0].json()["messages"],
        json!([{"role": "user", "content": [pdf(Some("a.pdf"))]}])
    );
}
