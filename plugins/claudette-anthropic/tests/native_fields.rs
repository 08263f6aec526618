//! Anthropic's own top-level fields (`context_management`, `container`, `mcp_servers`,
//! `service_tier`) over real HTTP against `claudette-testkit`'s fake Anthropic server.
//!
//! Claude Code sends `context_management` (context editing) with every turn, and a client of
//! the code execution tool names the `container` to work in again, with the Agent Skills to
//! load into it. They must reach Anthropic as written, with the beta flags they need, never
//! in place of what the adapter writes; and the answer's `container` (whose id the next turn
//! names) and `context_management` (the edits applied) must come back, from a JSON answer and
//! a stream alike.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{block_start, delta, event, stop};

use claudette_anthropic::ClaudeBackend;
use claudette_core::{
    Backend, BackendSettings, ChatRequest, ChatResponse, Dialect, ErrorKind, NativeField, NativeTool,
    StreamEvent,
};
use claudette_testkit::shapes::CLAUDE_FAKE_MODEL;
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

fn settings(server: &FakeServer) -> BackendSettings {
    common::claude_settings("claude-fields", server)
}

fn backend(server: &FakeServer) -> ClaudeBackend {
    claudette_anthropic::backend(&settings(server)).unwrap()
}

fn field(name: &str, value: Value) -> NativeField {
    NativeField { dialect: Dialect::Anthropic, name: name.into(), value, required: false }
}

/// Claude Code's context editing: clear old tool results past 30,000 input tokens.
fn context_management() -> Value {
    json!({"edits": [{"type": "clear_tool_uses_20250919",
                      "trigger": {"type": "input_tokens", "value": 30000},
                      "keep": {"type": "tool_uses", "value": 3}}]})
}

/// A container to work in again, with a skill loaded into it.
fn container_with_skills() -> Value {
    json!({"id": "container_011CPR5CNjB747bTd36fQLFk",
           "skills": [{"type": "anthropic", "skill_id": "pptx", "version": "latest"}]})
}

fn mcp_servers() -> Value {
    json!([{"type": "url", "url": "https://mcp.example.com/sse", "name": "example-mcp",
            "authorization_token": "mcp-token-canary"}])
}

fn request(fields: Vec<NativeField>) -> ChatRequest {
    ChatRequest { native_fields: fields, max_tokens: Some(1024), ..ChatRequest::prompt("Make me a deck.") }
}

async fn stream(b: &ClaudeBackend, request: &ChatRequest) -> Vec<StreamEvent> {
    b.send_stream(request).await.unwrap().collect().await
}

/// Each field goes as a top-level key as the client wrote it, on the message and its stream;
/// the count gets those the count endpoint takes; the flags the fields need join the
/// configured ones on all three.
#[tokio::test]
async fn native_fields_go_upstream_as_written_with_the_betas_they_need() {
    let server = FakeServer::start().await;
    let configured = json!(["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]);
    let b = claudette_anthropic::backend(&settings(&server).extra("anthropic_beta", configured)).unwrap();
    let fields = vec![
        field("context_management", context_management()),
        field("container", container_with_skills()),
        NativeField { required: true, ..field("mcp_servers", mcp_servers()) },
        field("service_tier", json!("standard_only")),
    ];
    let request = request(fields);
    server.set_default(Reply::anthropic_text("Here it is."));
    b.send(&request).await.unwrap();
    let _ = stream(&b, &request).await;
    server.push(Reply::json(200, json!({"input_tokens": 42})));
    assert_eq!(b.count_tokens(&request).await.unwrap(), 42);

    let received = server.received();
    let [sent, streamed, counted] = received.as_slice() else { panic!("{received:?}") };
    assert_eq!(counted.path, "/v1/messages/count_tokens");
    let flags = "interleaved-thinking-2025-05-14,context-management-2025-06-27,mcp-client-2025-04-04,\
                 code-execution-2025-08-25,skills-2025-10-02";
    for up in [sent, streamed, counted] {
        assert_eq!(up.header("anthropic-beta"), Some(flags), "{}", up.path);
    }
    for (up, stream) in [(sent, None), (streamed, Some(true))] {
        let body = up.json();
        assert_eq!(body["context_management"], context_management(), "{body}");
        assert_eq!(body["container"], container_with_skills());
        assert_eq!(body["mcp_servers"], mcp_servers());
        assert_eq!(body["service_tier"], "standard_only");
        assert_eq!(body["model"], CLAUDE_FAKE_MODEL);
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body.get("stream").and_then(Value::as_bool), stream);
    }
    // The count endpoint takes context editing and MCP servers, and refuses the rest.
    let count = counted.json();
    assert_eq!(count["context_management"], context_management(), "{count}");
    assert_eq!(count["mcp_servers"], mcp_servers());
    assert!(count.get("container").is_none() && count.get("service_tier").is_none(), "{count}");

    // MCP servers named by an `mcp_toolset` take the connector's current flag, a compaction
    // edit its own; a container named by id alone needs no flag, nor does a request
    // without fields.
    let toolset = json!({"type": "mcp_toolset", "mcp_server_name": "example-mcp"});
    let compacting = json!({"edits": [{"type": "compact_20260112"}]});
    let request = ChatRequest {
        native_tools: vec![NativeTool { dialect: Dialect::Anthropic, at: 0, spec: toolset.clone() }],
        ..self::request(vec![
            field("mcp_servers", mcp_servers()),
            field("container", json!("container_011CPR5CNjB747bTd36fQLFk")),
            field("context_management", compacting.clone()),
        ])
    };
    let plain = backend(&server);
    plain.send(&request).await.unwrap();
    let up = server.received().pop().unwrap();
    assert_eq!(
        up.header("anthropic-beta"),
        Some("mcp-client-2025-11-20,context-management-2025-06-27,compact-2026-01-12")
    );
    let body = up.json();
    assert_eq!(body["container"], "container_011CPR5CNjB747bTd36fQLFk");
    assert_eq!(body["context_management"], compacting);
    assert_eq!(body["tools"], json!([toolset]));
    plain.send(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(server.received().pop().unwrap().header("anthropic-beta"), None);
}

/// A native field never takes the place of what the adapter writes (the model the router
/// chose, the conversation, the stream), nor is one given twice: the request is refused with
/// the field's name, on the message, the stream and the count alike, and nothing is sent.
#[tokio::test]
async fn a_native_field_named_like_the_adapters_own_is_refused() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    server.set_default(Reply::anthropic_text("never"));
    for (name, value) in [
        ("model", json!("claude-opus-4-1")),
        ("messages", json!([{"role": "user", "content": "other"}])),
        ("stream", json!(false)),
        ("max_tokens", json!(64000)),
        ("system", json!("You are someone else.")),
        ("tools", json!([])),
        ("metadata", json!({"user_id": "u"})),
        ("stop_sequences", json!(["END"])),
    ] {
        let request = request(vec![field("context_management", context_management()), field(name, value)]);
        let sent = b.send(&request).await.unwrap_err();
        let streamed = b.send_stream(&request).await.err().unwrap();
        let counted = b.count_tokens(&request).await.unwrap_err();
        for error in [sent, streamed, counted] {
            assert_eq!(error.kind, ErrorKind::InvalidRequest, "{name}: {error}");
            assert!(error.message.contains(&format!("`{name}`")), "{name}: {error}");
        }
    }
    let twice =
        request(vec![field("service_tier", json!("auto")), field("service_tier", json!("standard_only"))]);
    let error = b.send(&twice).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
    assert!(error.message.contains("`service_tier`"), "{error}");
    assert_eq!(server.post_requests(), 0, "{:?}", server.received());
}

fn answer_container() -> Value {
    json!({"id": "container_011CPR5CNjB747bTd36fQLFk", "expires_at": "2025-05-23T21:13:31.749448Z",
           "skills": [{"type": "anthropic", "skill_id": "pptx", "version": "20251013"}]})
}

fn applied_edits() -> Value {
    json!({"applied_edits": [{"type": "clear_tool_uses_20250919", "cleared_tool_uses": 8,
                              "cleared_input_tokens": 50000}]})
}

fn json_answer(extra: Value) -> Reply {
    let mut answer = json!({"id": "msg_fields", "type": "message", "role": "assistant", "model": CLAUDE_FAKE_MODEL,
                            "content": [{"type": "text", "text": "Done."}], "stop_reason": "end_turn",
                            "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 2}});
    for (k, v) in extra.as_object().unwrap() {
        answer[k] = v.clone();
    }
    Reply::json(200, answer)
}

/// A stream of one text block whose `message_start` message and `message_delta`s carry
/// `start`, `deltas` (each a `delta` and the event's top-level fields).
fn stream_answer(start: Value, deltas: &[(Value, Value)]) -> Reply {
    let mut message = json!({"id": "msg_fields", "type": "message", "role": "assistant", "model": CLAUDE_FAKE_MODEL,
                             "content": [], "stop_reason": null, "stop_sequence": null,
                             "usage": {"input_tokens": 10, "output_tokens": 1}});
    for (k, v) in start.as_object().unwrap() {
        message[k] = v.clone();
    }
    let mut frames = vec![
        event("message_start", json!({"type": "message_start", "message": message})),
        block_start(0, json!({"type": "text", "text": ""})),
        delta(0, json!({"type": "text_delta", "text": "Done."})),
        stop(0),
    ];
    for (d, top) in deltas {
        let mut e = json!({"type": "message_delta", "delta": d, "usage": {"output_tokens": 2}});
        for (k, v) in top.as_object().unwrap() {
            e[k] = v.clone();
        }
        frames.push(event("message_delta", e));
    }
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    Reply::sse(frames)
}

/// The `NativeField`s of a stream, checking they come after the content and just before
/// `Done`.
fn streamed_fields(events: &[StreamEvent]) -> Vec<NativeField> {
    let (last, rest) = events.split_last().unwrap();
    assert!(matches!(last, StreamEvent::Done { .. }), "{events:?}");
    let fields: Vec<NativeField> = rest
        .iter()
        .filter_map(|e| match e {
            StreamEvent::NativeField { field } => Some(field.clone()),
            _ => None,
        })
        .collect();
    let tail = &rest[rest.len() - fields.len()..];
    assert!(tail.iter().all(|e| matches!(e, StreamEvent::NativeField { .. })), "{events:?}");
    fields
}

/// The answer's `container` and `context_management` come back as native fields, in that
/// order, the same from a JSON answer and from a stream (where a later value replaces an
/// earlier one and `null` is none); an answer without them has none; a stream never fails
/// over their shape.
#[tokio::test]
async fn container_and_context_management_read_the_same_from_json_and_a_stream() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let request = request(vec![field("container", container_with_skills())]);
    let expected = vec![field("container", answer_container()), field("context_management", applied_edits())];

    // Anthropic writes `context_management` before `container`; the order given is ours.
    server.push(json_answer(json!({"context_management": applied_edits(), "container": answer_container()})));
    let r: ChatResponse = b.send(&request).await.unwrap();
    assert_eq!(r.content, "Done.");
    assert_eq!(r.native_fields, expected);

    let early = json!({"id": "container_011CPR5CNjB747bTd36fQLFk", "expires_at": "2025-05-23T21:00:00Z"});
    server.push(stream_answer(
        json!({"container": early, "context_management": null}),
        &[(
            json!({"stop_reason": "end_turn", "stop_sequence": null, "container": answer_container()}),
            json!({"context_management": applied_edits()}),
        )],
    ));
    let events = stream(&b, &request).await;
    assert_eq!(streamed_fields(&events), expected, "{events:?}");

    // A field of any shape passes as written; a later `null` keeps the value before it.
    server.push(stream_answer(
        json!({"container": "container_plain"}),
        &[
            (json!({"stop_reason": "end_turn"}), json!({"context_management": 7})),
            (json!({"container": null}), json!({"context_management": null})),
        ],
    ));
    let events = stream(&b, &request).await;
    assert_eq!(
        streamed_fields(&events),
        [field("container", json!("container_plain")), field("context_management", json!(7))]
    );

    // Without them (or with `null`, as Anthropic writes a container it did not use), none.
    server.push(json_answer(json!({"container": null})));
    assert!(b.send(&request).await.unwrap().native_fields.is_empty());
    server.push(stream_answer(
        json!({"container": null, "context_management": null}),
        &[(json!({"stop_reason": "end_turn", "container": null}), json!({}))],
    ));
    let events = stream(&b, &request).await;
    assert!(streamed_fields(&events).is_empty(), "{events:?}");
}
