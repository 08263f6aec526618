//! Images in tool results, end to end over real HTTP: the gateway in front of test-kit fake
//! providers, the body each upstream receives asserted in its own wire format.
//!
//! The case that matters most is Claude Code on `/v1/messages`: its Read tool returns an image
//! file as a `tool_result` whose content is an `image` block, and it marks the last block of
//! the last message with `cache_control`, which is then that image. Anthropic must get both
//! back as they were sent. An OpenAI-format upstream takes images in user messages only, so
//! there the images follow the tool results in a user message of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==";

/// An Anthropic base64 PNG `image` block, marked with `cache_control` when given.
fn png_block(cache_control: Option<Value>) -> Value {
    let mut b =
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}});
    if let Some(c) = cache_control {
        b["cache_control"] = c;
    }
    b
}

/// Needs the Anthropic adapter to send tool results' images as `image` blocks of the
/// `tool_result` content and `CacheAt::Image` as `cache_control` on the image block.
#[tokio::test]
async fn claude_codes_image_read_reaches_anthropic_inside_the_tool_result_with_its_mark() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_stream(&["A red ", "pixel."]));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let r = post(&gw.url, "/v1/messages", claude_code_read_loop("shot.png", png_block(Some(eph())))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(anthropic_text(&r.frames()), "A red pixel.");
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": [png_block(Some(eph()))]}]}),
        "{sent}"
    );
    assert_eq!(sent["system"][0]["cache_control"], eph(), "{sent}");
}

/// Needs the Anthropic adapter as above.
#[tokio::test]
async fn marked_images_and_marked_results_reach_anthropic_marked_where_the_client_put_them() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("ok"));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;
    let hour = json!({"type": "ephemeral", "ttl": "1h"});
    let body = json!({
        "model": "claude-fake",
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "compare with"}, png_block(Some(hour.clone()))]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "cache_control": eph(), "content": [
                    {"type": "text", "text": "screen 1:"},
                    png_block(None)]},
                {"type": "text", "text": "same?"}]}
        ]
    });
    let r = post(&gw.url, "/v1/messages", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(
        sent["messages"][0]["content"],
        json!([{"type": "text", "text": "compare with"}, png_block(Some(hour))]),
        "{sent}"
    );
    // The mark on the whole result caches through its last block, the image.
    assert_eq!(
        sent["messages"][2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "screen 1:"}, png_block(Some(eph()))]},
            {"type": "text", "text": "same?"}]),
        "{sent}"
    );
}

/// An upstream that answers with the Chat Completions shape, taking images.
fn openai_upstream(fake: &FakeServer) -> claudette_core::SharedBackend {
    openai(openai_settings("gpt", fake).extra("images", true))
}

/// Needs the OpenAI adapter to move tool results' images to a user message after the
/// results.
#[tokio::test]
async fn tool_result_images_reach_an_openai_upstream_in_a_user_message_after_the_results() {
    let gpt = FakeServer::start().await;
    gpt.set_default(Fake::openai_text("a red pixel"));
    let gw = start(router(vec![openai_upstream(&gpt)])).await;
    let data_url = format!("data:image/png;base64,{PNG}");
    // Claude Code routed to an OpenAI-format backend (unstreamed, to read one JSON answer).
    let mut claude_code = claude_code_read_loop("shot.png", png_block(Some(eph())));
    claude_code["model"] = json!("auto");
    claude_code["stream"] = json!(false);
    let bodies = [
        ("/v1/messages", claude_code, "toolu_01"),
        (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [
                {"role": "user", "content": "What is in shot.png?"},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": [
                    {"type": "image_url", "image_url": {"url": data_url}}]}]}),
            "call_1",
        ),
        (
            "/v1/responses",
            json!({"model": "auto", "input": [
                {"role": "user", "content": "What is in shot.png?"},
                {"type": "function_call", "call_id": "call_2", "name": "Read", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_2", "output": [
                    {"type": "input_image", "image_url": data_url}]}]}),
            "call_2",
        ),
    ];
    for (path, body, call) in bodies {
        let r = post(&gw.url, path, body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(r.text.contains("a red pixel"), "{path}: {}", r.text);
        let sent = gpt.last_json().unwrap();
        let messages = sent["messages"].as_array().unwrap();
        let [.., result, images] = &messages[..] else { panic!("{path}: {sent}") };
        assert_eq!(
            (result["role"].as_str(), result["tool_call_id"].as_str()),
            (Some("tool"), Some(call)),
            "{path}: {sent}"
        );
        assert!(result["content"].as_str().is_some_and(|c| !c.is_empty()), "{path}: {sent}");
        assert_eq!(images["role"], "user", "{path}: {sent}");
        let parts = images["content"].as_array().unwrap();
        assert!(parts[0]["text"].as_str().is_some_and(|t| t.contains(call)), "{path}: {sent}");
        assert_eq!(parts[1], json!({"type": "image_url", "image_url": {"url": data_url}}), "{path}: {sent}");
    }
}
