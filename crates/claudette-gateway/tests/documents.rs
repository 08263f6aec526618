//! PDFs on the three client formats, end to end over real HTTP: the gateway in front of
//! test-kit fake providers, the body each upstream receives asserted in its own wire format.
//!
//! The case that matters most is Claude Code on `/v1/messages`: its Read tool returns a PDF
//! as a `tool_result` whose content is a `document` block, and it marks the last block of the
//! last message with `cache_control`, which is then that document. Anthropic must get both
//! back as they were sent. OpenAI clients send a PDF as a `file` part (Chat Completions) or an
//! `input_file` (Responses), which reach OpenAI as a `file` part. A PDF no backend can read is
//! refused cleanly, and what cannot be carried is the client's 400 naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::{DOCUMENT_PAGE_TOKEN_ESTIMATE, DOCUMENT_URL_PAGES};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

/// The start of a PDF file, base64.
const PDF: &str = "JVBERi0xLjcKJeLjz9MKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK";
const REPORT: &str = "https://example.com/report.pdf";

fn pdf_url() -> String {
    format!("data:application/pdf;base64,{PDF}")
}

/// An Anthropic base64 PDF `document` block, marked with `cache_control` when given.
fn pdf_block(cache_control: Option<Value>) -> Value {
    let mut b = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}});
    if let Some(c) = cache_control {
        b["cache_control"] = c;
    }
    b
}

#[tokio::test]
async fn claude_codes_pdf_read_reaches_anthropic_inside_the_tool_result_with_its_mark() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_stream(&["A two-page ", "spec."]));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post(&gw.url, "/v1/messages", claude_code_read_loop("spec.pdf", pdf_block(Some(eph())))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(anthropic_text(&r.frames()), "A two-page spec.");
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": [pdf_block(Some(eph()))]}]}),
        "{sent}"
    );
    assert_eq!(sent["system"][0]["cache_control"], eph(), "{sent}");
}

#[tokio::test]
async fn attached_pdfs_reach_anthropic_where_they_stood_with_their_titles() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let mut titled = pdf_block(Some(json!({"type": "ephemeral", "ttl": "1h"})));
    titled["title"] = json!("spec.pdf");
    let body = json!({"model": "claude-fake", "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        titled.clone(),
        {"type": "text", "text": "with"},
        {"type": "document", "source": {"type": "url", "url": REPORT}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": " and these notes"}}]}]});
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["messages"][0]["content"],
        json!([
            {"type": "text", "text": "compare"},
            titled,
            {"type": "text", "text": "with"},
            {"type": "document", "source": {"type": "url", "url": REPORT}},
            {"type": "text", "text": " and these notes"}]),
        "{sent}"
    );
}

/// A PDF may ask for citations: Anthropic gets the flag on the document, and the answer's
/// page citations come back on its text, in JSON and in a stream. Another provider reads the
/// PDF all the same and answers without them.
#[tokio::test]
async fn a_pdf_asking_for_citations_gets_its_pages_cited() {
    let citation = json!({"type": "page_location", "cited_text": "Revenue grew 12 %.", "document_index": 0,
                          "document_title": "report.pdf", "start_page_number": 2, "end_page_number": 3});
    let answer = json!([
        {"type": "text", "text": "According to the report, "},
        {"type": "text", "text": "revenue grew 12 %.", "citations": [citation]},
    ]);
    let claude = FakeServer::start().await;
    claude.push(Fake::json(
        200,
        json!({"id": "msg_c", "type": "message", "role": "assistant", "model": "claude-fake",
        "content": answer, "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 3000, "output_tokens": 12}}),
    ));
    claude.push(Fake::anthropic_stream_blocks(&answer, "end_turn"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let mut cited = pdf_block(None);
    cited["title"] = json!("report.pdf");
    cited["citations"] = json!({"enabled": true});
    let body = |stream: bool| {
        json!({"model": "auto", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": [
            cited.clone(), {"type": "text", "text": "How did revenue change?"}]}]})
    };

    let r = post(&gw.url, "/v1/messages", body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.last_json().unwrap()["messages"][0]["content"][0], cited);
    assert_eq!(r.json()["content"], answer, "{}", r.text);

    let r = post(&gw.url, "/v1/messages", body(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let deltas = event_data(&r.frames(), "content_block_delta");
    let cites: Vec<&Value> = deltas.iter().filter_map(|d| d["delta"].get("citation")).collect();
    assert_eq!(cites, [&citation], "{}", r.text);
    assert_eq!(anthropic_text(&r.frames()), "According to the report, revenue grew 12 %.");

    // OpenAI reads the PDF without the flag.
    let gpt = FakeServer::start().await;
    gpt.push(openai_answer(json!({"role": "assistant", "content": "Up 12 %."}), "stop"));
    let gw = start(router(vec![openai_reading_pdfs(&gpt)])).await;
    let r = post(&gw.url, "/v1/messages", body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = gpt.last_json().unwrap();
    assert_eq!(sent["messages"][0]["content"][0]["type"], "file", "{sent}");
}

/// An upstream that reads PDFs as Chat Completions `file` parts, as OpenAI's own API does.
fn openai_reading_pdfs(fake: &FakeServer) -> claudette_core::SharedBackend {
    openai(openai_settings("gpt", fake).extra("images", true).extra("documents", true))
}

#[tokio::test]
async fn openai_clients_pdfs_reach_openai_as_file_parts() {
    let gpt = FakeServer::start().await;
    gpt.set_default(Fake::openai_text("a spec"));
    let gw = start(router(vec![openai_reading_pdfs(&gpt)])).await;
    let file = json!({"type": "file", "file": {"filename": "spec.pdf", "file_data": pdf_url()}});
    let bodies = [
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"}, file.clone()]}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "auto", "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "what is this?"},
                {"type": "input_file", "filename": "spec.pdf", "file_data": pdf_url()}]}]}),
        ),
    ];
    for (path, body) in bodies {
        let r = post(&gw.url, path, body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(r.text.contains("a spec"), "{path}: {}", r.text);
        let sent = gpt.last_json().unwrap();
        assert_eq!(
            sent["messages"][0]["content"],
            json!([{"type": "text", "text": "what is this?"}, file]),
            "{path}: {sent}"
        );
    }
    // A Claude Code tool loop routed there: the PDF follows the results in a user message.
    let mut claude_code = claude_code_read_loop("spec.pdf", pdf_block(Some(eph())));
    claude_code["model"] = json!("auto");
    claude_code["stream"] = json!(false);
    let r = post(&gw.url, "/v1/messages", claude_code).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = gpt.last_json().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    let [.., result, moved] = &messages[..] else { panic!("{sent}") };
    assert_eq!(result["role"], "tool", "{sent}");
    assert_eq!(moved["role"], "user", "{sent}");
    assert_eq!(moved["content"][1]["type"], "file", "{sent}");
    assert_eq!(moved["content"][1]["file"]["file_data"], pdf_url(), "{sent}");
}

#[tokio::test]
async fn a_pdf_url_from_the_responses_api_reaches_anthropic_as_a_url_document() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let body = json!({"model": "claude-fake", "input": [
        {"role": "user", "content": "read it"},
        {"type": "function_call", "call_id": "c1", "name": "fetch", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_file", "file_url": REPORT, "filename": "report.pdf"}]}]});
    let r = post(&gw.url, "/v1/responses", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["messages"][2]["content"][0]["content"],
        json!([{"type": "document", "source": {"type": "url", "url": REPORT}, "title": "report.pdf"}]),
        "{sent}"
    );
}

#[tokio::test]
async fn a_pdf_no_backend_can_read_is_refused_before_any_upstream_call() {
    let messages = json!({"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, pdf_block(None)]}]});
    let chat = json!({"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf_url()}}]}]});
    let bodies = [("/v1/messages", messages), ("/v1/chat/completions", chat)];

    // A text-only backend is never tried: 503, as for an image.
    let text_only = FakeServer::start().await;
    text_only.set_default(Fake::openai_text("never"));
    let gw = start(router(vec![openai(openai_settings("text", &text_only).extra("images", false))])).await;
    for (path, body) in &bodies {
        let r = post(&gw.url, path, body.clone()).await;
        assert_eq!(r.status, 503, "{path}: {}", r.text);
        assert!(r.text.contains("no backend can serve this request"), "{path}: {}", r.text);
    }
    assert!(text_only.received().is_empty());

    // A server that takes images but reads no PDFs (an OpenAI-compatible one; Ollama refuses
    // documents alike) refuses it unsent, as unsupported: the client's 400, saying so.
    let vision = FakeServer::start().await;
    vision.set_default(Fake::openai_text("never"));
    let gw = start(router(vec![openai(openai_settings("vision", &vision).extra("images", true))])).await;
    for (path, body) in &bodies {
        let r = post(&gw.url, path, body.clone()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.text.contains("PDF"), "{path}: {}", r.text);
    }
    assert!(vision.received().is_empty());
}

/// The 400 and the field it names: OpenAI's `error.param`, or the path Anthropic's message
/// starts with.
async fn refused(gw: &Running, path: &str, body: Value) -> String {
    let r = post(&gw.url, path, body).await;
    assert_eq!(r.status, 400, "{path}: {}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    if path == "/v1/messages" {
        let message = v["error"]["message"].as_str().unwrap();
        message.split(':').next().unwrap().to_owned()
    } else {
        v["error"]["param"].as_str().unwrap_or_else(|| panic!("no param: {}", r.text)).to_owned()
    }
}

#[tokio::test]
async fn pdfs_that_cannot_be_carried_are_refused_naming_the_field() {
    let claude = FakeServer::start().await;
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let messages = |block: Value| {
        json!({"model": "auto", "max_tokens": 16, "messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [block]}]}]})
    };
    let at = "messages.2.content.0.content.0";
    let docx = json!({"type": "document", "source": {"type": "base64",
        "media_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "data": "UEsDBA=="}});
    assert_eq!(refused(&gw, "/v1/messages", messages(docx)).await, format!("{at}.source.media_type"));
    let file = json!({"type": "document", "source": {"type": "file", "file_id": "file_011"}});
    assert_eq!(refused(&gw, "/v1/messages", messages(file)).await, format!("{at}.source.type"));
    // A text document is read as text, which has no pages to cite.
    let cited_text = json!({"type": "document", "citations": {"enabled": true},
        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."}});
    assert_eq!(refused(&gw, "/v1/messages", messages(cited_text)).await, format!("{at}.citations"));

    let chat = |file: Value| json!({"model": "auto", "messages": [{"role": "user", "content": [{"type": "file", "file": file}]}]});
    let at = "messages[0].content[0].file";
    assert_eq!(
        refused(&gw, "/v1/chat/completions", chat(json!({"file_id": "file-abc"}))).await,
        format!("{at}.file_id")
    );
    let text = json!({"file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"});
    assert_eq!(refused(&gw, "/v1/chat/completions", chat(text)).await, format!("{at}.file_data"));

    let responses = |file: Value| json!({"model": "auto", "input": [{"role": "user", "content": [file]}]});
    let at = "input[0].content[0]";
    let by_id = json!({"type": "input_file", "file_id": "file-abc"});
    assert_eq!(refused(&gw, "/v1/responses", responses(by_id)).await, format!("{at}.file_id"));
    let ftp = json!({"type": "input_file", "file_url": "ftp://example.com/a.pdf"});
    assert_eq!(refused(&gw, "/v1/responses", responses(ftp)).await, format!("{at}.file_url"));
    assert!(claude.received().is_empty(), "nothing refused reached the backend");
}

#[tokio::test]
async fn token_counts_count_pdfs() {
    // Anthropic counts the document itself.
    let claude = FakeServer::start().await;
    claude.push(Fake::json(200, json!({"input_tokens": 4321})));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let mut body = claude_code_read_loop("spec.pdf", pdf_block(Some(eph())));
    body.as_object_mut().unwrap().retain(|k, _| k != "max_tokens" && k != "stream");
    let r = post(&gw.url, "/v1/messages/count_tokens", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json(), r.header("x-claudette-token-count")),
        (json!({"input_tokens": 4321}), Some("exact"))
    );
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["messages"][2]["content"][0]["content"][0], pdf_block(Some(eph())), "{sent}");

    // A backend that does not count: the estimate counts the PDF as pages.
    let gpt = FakeServer::start().await;
    let gw = start(router(vec![openai_reading_pdfs(&gpt)])).await;
    body["model"] = json!("auto");
    body["messages"][2]["content"][0]["content"] =
        json!([{"type": "document", "source": {"type": "url", "url": REPORT}}]);
    let r = post(&gw.url, "/v1/messages/count_tokens", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-token-count"), Some("estimated"));
    let counted = r.json()["input_tokens"].as_u64().unwrap();
    assert!(counted >= u64::from(DOCUMENT_URL_PAGES * DOCUMENT_PAGE_TOKEN_ESTIMATE), "{counted}");
    assert!(gpt.received().is_empty());
}
