//! Anthropic's own top-level fields through `/v1/messages` over real HTTP, in front of test-kit
//! fakes. Claude Code sends `context_management` (context editing); Anthropic SDK users send
//! `container` (the code execution container to work in again), `mcp_servers` (the MCP
//! connector) and `service_tier`. The Anthropic upstream gets them verbatim; another provider
//! serves a request with the knobs (`context_management`, `service_tier`) without them, and
//! never one with MCP servers or a container, which only Anthropic can reach. Anthropic's
//! answer names the container (the client needs its id for the next turn) and the context
//! edits it made: the client gets both where Anthropic writes them, in JSON and in the stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/messages";

/// Claude Code's context editing: clear old tool results past 30k input tokens.
fn context_management() -> Value {
    json!({"edits": [{"type": "clear_tool_uses_20250919",
                      "trigger": {"type": "input_tokens", "value": 30000},
                      "keep": {"type": "tool_uses", "value": 3},
                      "clear_at_least": {"type": "input_tokens", "value": 5000},
                      "exclude_tools": ["web_search"]}]})
}

fn mcp_servers() -> Value {
    json!([{"type": "url", "url": "https://mcp.example/sse", "name": "tickets",
            "tool_configuration": {"enabled": true, "allowed_tools": ["open_ticket"]}}])
}

fn container() -> Value {
    json!({"id": "container_011CPR5CNjB747bTd36fQLFk", "skills": [
        {"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]})
}

/// Claude Code's request after a Read: its system prompt and tools, the call and its result,
/// `extra` merged in at the top level.
fn claude_code_request(extra: Value, stream: bool) -> Value {
    let mut body = json!({
        "model": "auto", "max_tokens": 1024, "stream": stream,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": eph()}],
        "tools": [{"name": "Read", "description": "Reads a file",
                   "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": "What is in notes.txt?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/w/notes.txt"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "milk"}]}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// [`common::openai_and_claude`], Claude answering "from claude".
async fn openai_and_claude() -> (FakeServer, FakeServer, Running) {
    let (gpt, claude, gw) = common::openai_and_claude().await;
    claude.set_default(Fake::anthropic_text("from claude"));
    (gpt, claude, gw)
}

async fn openai_only() -> (FakeServer, Running) {
    let gpt = FakeServer::start().await;
    gpt.set_default(openai_answer(json!({"role": "assistant", "content": "from gpt"}), "stop"));
    let gw = start(router(vec![openai(openai_settings("gpt", &gpt))])).await;
    (gpt, gw)
}

// ------------------------------------------------------------------------------------------
// Requests

#[tokio::test]
async fn claude_codes_context_management_reaches_anthropic_verbatim_and_is_left_out_for_openai() {
    let knobs = json!({"context_management": context_management(), "service_tier": "auto"});
    let (claude, gw) =
        claude_answering([Fake::anthropic_stream(&["Milk."]), Fake::anthropic_text("Milk.")]).await;
    for stream in [true, false] {
        let r = post(&gw.url, PATH, claude_code_request(knobs.clone(), stream)).await;
        assert_eq!(r.status, 200, "stream {stream}: {}", r.text);
        let sent = claude.last_json().unwrap();
        assert_eq!(sent["context_management"], context_management(), "stream {stream}: {sent}");
        assert_eq!(sent["service_tier"], "auto", "stream {stream}: {sent}");
    }

    // Another provider serves it without them.
    let (gpt, gw) = openai_only().await;
    let r = post(&gw.url, PATH, claude_code_request(knobs, false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["content"][0]["text"], "from gpt", "{}", r.text);
    let sent = gpt.last_json().unwrap();
    assert!(sent.get("context_management").is_none() && sent.get("service_tier").is_none(), "{sent}");
}

#[tokio::test]
async fn a_container_or_mcp_servers_without_an_anthropic_backend_is_refused_naming_the_provider() {
    let (gpt, gw) = openai_only().await;
    for extra in [
        json!({"container": container()}),
        json!({"container": "container_011CPR5CNjB747bTd36fQLFk"}),
        json!({"mcp_servers": mcp_servers()}),
        json!({"mcp_servers": mcp_servers(), "context_management": context_management()}),
    ] {
        for stream in [false, true] {
            let r = post(&gw.url, PATH, claude_code_request(extra.clone(), stream)).await;
            assert_eq!(r.status, 400, "{extra} stream {stream}: {}", r.text);
            let e = r.json();
            assert_eq!(e["type"], "error", "{e}");
            assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
            let message = e["error"]["message"].as_str().unwrap();
            assert!(message.contains("provider `anthropic`"), "{message}");
        }
    }
    assert_eq!(gpt.post_requests(), 0);

    // A field of the wrong type is the client's error, named, before any routing.
    let r = post(&gw.url, PATH, claude_code_request(json!({"mcp_servers": mcp_servers()[0]}), false)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let e = r.json();
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().starts_with("mcp_servers: "), "{e}");
}

#[tokio::test]
async fn a_container_or_mcp_servers_goes_to_the_anthropic_backend_beside_an_openai_one() {
    let (gpt, claude, gw) = openai_and_claude().await;
    // The knobs alone do not keep a request from the cheaper provider.
    let knobs = json!({"context_management": context_management(), "service_tier": "auto"});
    let r = post_with(&gw.url, PATH, claude_code_request(knobs, false), &BY_COST).await;
    assert_eq!((r.status, r.json()["content"][0]["text"].clone()), (200, json!("from gpt")), "{}", r.text);
    assert_eq!((gpt.post_requests(), claude.post_requests()), (1, 0));

    let mut sent = 0;
    for extra in [
        json!({"container": container()}),
        json!({"container": "container_011CPR5CNjB747bTd36fQLFk"}),
        json!({"mcp_servers": mcp_servers(), "context_management": context_management()}),
    ] {
        for stream in [false, true] {
            if stream {
                claude.push(Fake::anthropic_stream(&["from ", "claude"]));
            }
            let r = post_with(&gw.url, PATH, claude_code_request(extra.clone(), stream), &BY_COST).await;
            assert_eq!(r.status, 200, "{extra} stream {stream}: {}", r.text);
            sent += 1;
            assert_eq!((gpt.post_requests(), claude.post_requests()), (1, sent), "{extra} stream {stream}");
        }
    }
}

#[tokio::test]
async fn a_container_and_mcp_servers_reach_anthropic_verbatim() {
    let (claude, gw) =
        claude_answering([Fake::anthropic_text("Done."), Fake::anthropic_stream(&["Done."])]).await;
    let extra = json!({"container": container(), "mcp_servers": mcp_servers()});
    for stream in [false, true] {
        let r = post(&gw.url, PATH, claude_code_request(extra.clone(), stream)).await;
        assert_eq!(r.status, 200, "stream {stream}: {}", r.text);
        let sent = claude.last_json().unwrap();
        assert_eq!(sent["container"], container(), "stream {stream}: {sent}");
        assert_eq!(sent["mcp_servers"], mcp_servers(), "stream {stream}: {sent}");
    }
    // A container named by its id alone goes as it came.
    claude.push(Fake::anthropic_text("Done."));
    let r = post(&gw.url, PATH, claude_code_request(json!({"container": "container_01"}), false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(claude.last_json().unwrap()["container"], "container_01");
}

// ------------------------------------------------------------------------------------------
// Answers

/// The container the code ran in, as Anthropic names it in its answer.
fn answered_container() -> Value {
    json!({"id": "container_011CPR5CNjB747bTd36fQLFk", "expires_at": "2026-05-01T12:30:00Z", "skills": []})
}

/// What context editing did to the prompt, as Anthropic reports it.
fn applied_edits() -> Value {
    json!({"applied_edits": [{"type": "clear_tool_uses_20250919", "cleared_tool_uses": 8,
                              "cleared_input_tokens": 50000}]})
}

fn usage() -> Value {
    json!({"input_tokens": 40, "output_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

fn sse(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}")
}

/// A streamed answer as Anthropic streams one with a container and context editing: both are
/// `null` in `message_start`, and come in the final `message_delta`, the container in its
/// `delta` and the edits beside it.
fn streamed_answer() -> Fake {
    Fake::sse(vec![
        sse(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_ce", "type": "message", "role": "assistant",
                   "model": "claude-fake", "content": [], "stop_reason": null, "stop_sequence": null,
                   "usage": {"input_tokens": 40, "output_tokens": 1}, "container": null,
                   "context_management": null}}),
        ),
        sse(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse("ping", json!({"type": "ping"})),
        sse(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Milk."}}),
        ),
        sse("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        sse(
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "end_turn", "stop_sequence": null, "container": answered_container()},
                   "usage": {"output_tokens": 6}, "context_management": applied_edits()}),
        ),
        sse("message_stop", json!({"type": "message_stop"})),
    ])
}

#[tokio::test]
async fn an_answers_container_and_context_management_reach_the_client_in_json() {
    let answer = json!({"id": "msg_ce", "type": "message", "role": "assistant", "model": "claude-fake",
        "content": [{"type": "text", "text": "Milk."}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": usage(), "container": answered_container(), "context_management": applied_edits()});
    let (_claude, gw) =
        claude_answering([Fake::json(200, answer.clone()), Fake::anthropic_text("Milk.")]).await;
    let extra = json!({"container": "container_011CPR5CNjB747bTd36fQLFk", "context_management": context_management()});
    let r = post(&gw.url, PATH, claude_code_request(extra, false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = r.json();
    assert_eq!(got["container"], answered_container(), "{got}");
    assert_eq!(got["context_management"], applied_edits(), "{got}");
    assert_eq!(got["content"], answer["content"], "{got}");
    // Where Anthropic writes them: after `usage`, at the top level.
    let keys: Vec<&str> = got.as_object().unwrap().keys().map(String::as_str).collect();
    let at = |k: &str| r.text.find(&format!("\"{k}\":")).unwrap();
    assert!(at("usage") < at("container") && at("container") < at("context_management"), "{keys:?}");

    // An answer without them is as it always was.
    let r = post(&gw.url, PATH, claude_code_request(json!({}), false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("container") && !r.text.contains("context_management"), "{}", r.text);
}

#[tokio::test]
async fn an_answers_container_and_context_management_reach_the_client_in_the_stream() {
    let (_claude, gw) = claude_answering([streamed_answer(), Fake::anthropic_stream(&["Milk."])]).await;
    let extra = json!({"container": "container_011CPR5CNjB747bTd36fQLFk", "context_management": context_management()});
    let r = post(&gw.url, PATH, claude_code_request(extra, true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let frames = r.frames();
    assert_eq!(anthropic_text(&frames), "Milk.", "{}", r.text);
    let deltas = event_data(&frames, "message_delta");
    assert_eq!(deltas.len(), 1, "{}", r.text);
    let last = &deltas[0];
    assert_eq!(last["delta"]["stop_reason"], "end_turn", "{last}");
    assert_eq!(last["delta"]["container"], answered_container(), "{last}");
    assert_eq!(last["context_management"], applied_edits(), "{last}");
    // Not content: the stream has its one text block and ends as it always does.
    assert_eq!(event_data(&frames, "content_block_start").len(), 1, "{}", r.text);
    assert_eq!(frames.last().unwrap().0.as_deref(), Some("message_stop"), "{}", r.text);

    // A stream without them is as it always was.
    let r = post(&gw.url, PATH, claude_code_request(json!({}), true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("container") && !r.text.contains("context_management"), "{}", r.text);
}

/// The structured-outputs beta's `output_format` is the answer's format: it reaches Anthropic
/// as `output_config.format` and an OpenAI-format backend as a strict `json_schema`, rather
/// than being dropped (the client's parser would get prose). A malformed one is a 400 naming
/// it; `inference_geo` keeps the request to Anthropic, `cache_control` (automatic caching)
/// does not.
#[tokio::test]
async fn the_betas_output_format_residency_and_automatic_caching() {
    let schema = json!({"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]});
    let format = json!({"output_format": {"type": "json_schema", "schema": schema}});
    let (claude, gw) = claude_answering([Fake::anthropic_text("{\"item\":\"milk\"}")]).await;
    let r = post(&gw.url, PATH, claude_code_request(format.clone(), false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["output_config"]["format"]["schema"], schema, "{sent}");
    assert!(sent.get("output_format").is_none(), "{sent}");

    let (gpt, gw) = openai_only().await;
    let r = post(&gw.url, PATH, claude_code_request(format, false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = gpt.last_json().unwrap();
    assert_eq!(sent["response_format"]["type"], "json_schema", "{sent}");
    assert_eq!(sent["response_format"]["json_schema"]["schema"], schema, "{sent}");

    let bad =
        post(&gw.url, PATH, claude_code_request(json!({"output_format": {"schema": schema}}), false)).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("output_format"), "{}", bad.text);

    // Automatic caching is a knob OpenAI goes without; residency is not.
    let r = post(&gw.url, PATH, claude_code_request(json!({"cache_control": eph()}), false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(&gw.url, PATH, claude_code_request(json!({"inference_geo": "us"}), false)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("provider `anthropic`"), "{}", r.text);

    let (claude, gw) = claude_answering([Fake::anthropic_text("ok")]).await;
    let both = json!({"inference_geo": "us", "cache_control": eph()});
    let r = post(&gw.url, PATH, claude_code_request(both, false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!((&sent["inference_geo"], &sent["cache_control"]), (&json!("us"), &eph()), "{sent}");
}
