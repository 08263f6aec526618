//! Anthropic's server tools (web search, web fetch, code execution, the MCP connector) over
//! real HTTP against `claudette-testkit`'s fake Anthropic server.
//!
//! Claude Code's WebSearch sends `{"type": "web_search_20250305", "name": "web_search"}` among
//! its tools and gets back blocks Anthropic ran itself (`server_tool_use`,
//! `web_search_tool_result` with encrypted results), text blocks with `citations`, the
//! searches in `usage.server_tool_use`, and sometimes `stop_reason: "pause_turn"`. All of it
//! must reach the client as Anthropic wrote it, go back upstream unchanged in the next turn,
//! and be billed.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{block_start, delta, event, stop, tool};

use claudette_anthropic::ClaudeBackend;
use claudette_core::{
    Backend, BackendSettings, Block, BlockKind, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest,
    ChatResponse, Dialect, ErrorKind, FinishReason, Message, NativeBlock, NativeFlag, NativeTool, Pricing,
    StreamBlockOrder, StreamEvent, TextCitations, ToolChoice, Usage,
};
use claudette_testkit::shapes::{CLAUDE_FAKE_MODEL, PROMPT_TOKENS};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

fn settings(server: &FakeServer) -> BackendSettings {
    common::claude_settings("claude-search", server)
}

fn backend(server: &FakeServer) -> ClaudeBackend {
    claudette_anthropic::backend(&settings(server)).unwrap()
}

fn native(at: u32, spec: Value) -> NativeTool {
    NativeTool { dialect: Dialect::Anthropic, at, spec }
}

fn web_search_tool() -> Value {
    json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 8})
}

fn citation() -> Value {
    json!({"type": "web_search_result_location", "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
           "title": "Claude Shannon - Wikipedia", "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm",
           "cited_text": "Claude Elwood Shannon (April 30, 1916 – February 24, 2001) was an American mathematician"})
}

/// A web search answer as Anthropic's documentation shows it: Claude says it will search, the
/// search and its encrypted results, then the answer in text blocks, the cited one with its
/// citations.
fn search_blocks() -> Value {
    json!([
        {"type": "text", "text": "I'll search for when Claude Shannon was born."},
        {"type": "server_tool_use", "id": "srvtoolu_01WYG3ziw53XMcoyKL4XcZmE", "name": "web_search",
         "input": {"query": "claude shannon birth date"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01WYG3ziw53XMcoyKL4XcZmE",
         "content": [
            {"type": "web_search_result", "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
             "title": "Claude Shannon - Wikipedia",
             "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y",
             "page_age": "April 30, 2025"},
            {"type": "web_search_result", "url": "https://www.britannica.com/biography/Claude-Shannon",
             "title": "Claude Shannon | Britannica", "encrypted_content": "Ep4CCioIARgBIiQ0ZDlmNzQ3", "page_age": null}
         ]},
        {"type": "text", "text": "Based on the search results, "},
        {"type": "text", "text": "Claude Shannon was born on April 30, 1916", "citations": [citation()]},
        {"type": "text", "text": ", in Petoskey, Michigan."},
    ])
}

/// The usage the test kit's stream reports for `blocks`, as a JSON answer carries it.
fn usage_of(blocks: &Value, searches: u32) -> Value {
    json!({"input_tokens": PROMPT_TOKENS, "output_tokens": blocks.as_array().unwrap().len(),
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
           "server_tool_use": {"web_search_requests": searches}})
}

fn json_answer(blocks: &Value, stop_reason: &str, searches: u32) -> Reply {
    Reply::json(
        200,
        json!({"id": "msg_search", "type": "message", "role": "assistant", "model": CLAUDE_FAKE_MODEL,
               "content": blocks, "stop_reason": stop_reason, "stop_sequence": null,
               "usage": usage_of(blocks, searches)}),
    )
}

fn search_request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        messages,
        native_tools: vec![native(0, web_search_tool())],
        max_tokens: Some(1024),
        ..ChatRequest::default()
    }
}

/// The assistant turn a client sends back for `r`.
fn turn_of(r: &ChatResponse) -> Message {
    Message {
        native: r.native.clone(),
        citations: r.citations.clone(),
        order: r.order.clone(),
        tool_calls: r.tool_calls.clone(),
        thinking: r.thinking.clone(),
        ..Message::assistant(r.content.clone())
    }
}

/// Each block of an answer as `kind:what`, in its order.
fn shape(r: &ChatResponse) -> Vec<String> {
    r.blocks()
        .unwrap()
        .iter()
        .map(|b| match b {
            Block::Text { text, start } => {
                let cited = r.citations_at(start + text.len()).len();
                if cited > 0 { format!("text:{text} [{cited} cited]") } else { format!("text:{text}") }
            }
            Block::Native(n) => format!("native:{}", n.kind()),
            Block::ToolCall { call, .. } => format!("call:{}", call.id),
            Block::Thinking(_) => "thinking".into(),
        })
        .collect()
}

/// Puts a stream together as a client would: text and natives in their order (the core's
/// [`StreamBlockOrder`]), each citation on the text block the text after it extends.
fn assemble(events: &[StreamEvent]) -> ChatResponse {
    let mut r = ChatResponse::empty("claude-search", "");
    let mut order = StreamBlockOrder::default();
    // Citations waiting for the text they cite, and citations placed: (a byte of their block).
    let (mut waiting, mut placed) = (Vec::new(), Vec::<(usize, Value)>::new());
    for e in events {
        match e {
            StreamEvent::TextDelta { text } => {
                placed.extend(waiting.drain(..).map(|c| (r.content.len(), c)));
                r.content.push_str(text);
                order.text(text);
            }
            StreamEvent::Citation { citation } => waiting.push(citation.clone()),
            StreamEvent::TextEnd => order.text_end(),
            StreamEvent::Native { block } => {
                order.native();
                r.native.push(block.clone());
            }
            StreamEvent::Done { end } => {
                r.finish_reason = end.finish_reason.clone();
                r.usage = end.usage;
                r.cost = end.cost;
            }
            StreamEvent::Usage { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    placed.extend(waiting.drain(..).map(|c| (r.content.len().saturating_sub(1), c)));
    r.order = order.finish(false);
    let ends: Vec<usize> = r
        .order
        .iter()
        .filter_map(|k| match k {
            BlockKind::Text(end) => Some(*end as usize),
            _ => None,
        })
        .chain([r.content.len()])
        .collect();
    for (byte, citation) in placed {
        let end = ends.iter().copied().find(|end| *end > byte).unwrap();
        match r.citations.last_mut() {
            Some(last) if last.end as usize == end => last.citations.push(citation),
            _ => r.citations.push(TextCitations { end: end as u32, citations: vec![citation] }),
        }
    }
    r
}

async fn stream(b: &ClaudeBackend, request: &ChatRequest) -> Vec<StreamEvent> {
    b.send_stream(request).await.unwrap().collect().await
}

/// Anthropic's tools go among the function tools where the client put them (tools open the
/// cached prompt prefix), `tool_choice` may name one, and a turn with a search goes back
/// whole: its blocks unchanged and in order, its text blocks with their citations — also when
/// a cache breakpoint cuts the cited block.
#[tokio::test]
async fn native_tools_keep_their_place_and_a_searched_turn_goes_back_whole() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    server.push(json_answer(&search_blocks(), "end_turn", 1));
    let question = Message::user("When was Claude Shannon born?");
    let answer = b.send(&search_request(vec![question.clone()])).await.unwrap();

    let code = json!({"type": "code_execution_20250825", "name": "code_execution"});
    let fetch = json!({"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 3});
    let request = ChatRequest {
        messages: vec![question, turn_of(&answer), Message::user("And where did he die?")],
        tools: vec![tool("lookup"), tool("save")],
        // Out of order and past the end on purpose: the place is what counts.
        native_tools: vec![native(1, web_search_tool()), native(0, code.clone()), native(9, fetch.clone())],
        tool_choice: ToolChoice::Tool("web_search".into()),
        max_tokens: Some(1024),
        ..ChatRequest::default()
    };
    server.set_default(Reply::anthropic_text("In Medford, Massachusetts."));
    b.send(&request).await.unwrap();
    let body = server.received().last().unwrap().json();
    let names: Vec<&str> =
        body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["code_execution", "lookup", "web_search", "save", "web_fetch"], "{body}");
    assert_eq!(body["tools"][0], code);
    assert_eq!(body["tools"][2], web_search_tool());
    assert_eq!(body["tools"][4], fetch);
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "web_search"}));
    assert_eq!(body["messages"][1], json!({"role": "assistant", "content": search_blocks()}), "{body}");

    // A count sends the same prompt.
    server.push(Reply::json(200, json!({"input_tokens": 321})));
    assert_eq!(b.count_tokens(&request).await.unwrap(), 321);
    let counted = server.received().last().unwrap().json();
    assert_eq!(counted["tools"], body["tools"]);
    assert_eq!(counted["messages"], body["messages"]);

    // A breakpoint inside the cited block cuts it in two: the citations go on the last piece.
    let cited_start = answer.content.find("Claude Shannon was born on").unwrap();
    let mut turn = turn_of(&answer);
    turn.cache =
        vec![CacheBreakpoint { at: CacheAt::Text((cited_start + 6) as u32), ttl: CacheTtl::FiveMinutes }];
    let request = ChatRequest { messages: vec![Message::user("q"), turn, Message::user("more")], ..request };
    b.send(&request).await.unwrap();
    let body = server.received().last().unwrap().json();
    let content = &body["messages"][1]["content"];
    assert_eq!(
        content[4],
        json!({"type": "text", "text": "Claude", "cache_control": {"type": "ephemeral"}}),
        "{content}"
    );
    assert_eq!(
        content[5],
        json!({"type": "text", "text": " Shannon was born on April 30, 1916", "citations": [citation()]})
    );
    assert_eq!(content[6], search_blocks()[5]);
}

/// The beta flags a request's tools need join the configured ones, each once, on the message
/// and the count alike; a request without such tools carries the configured ones only.
#[tokio::test]
async fn the_beta_header_carries_what_the_tools_need_with_the_configured_flags() {
    let server = FakeServer::start().await;
    let configured = json!(["interleaved-thinking-2025-05-14", "code-execution-2025-08-25"]);
    let b = claudette_anthropic::backend(&settings(&server).extra("anthropic_beta", configured)).unwrap();
    let tools = vec![
        native(0, json!({"type": "web_fetch_20250910", "name": "web_fetch"})),
        native(0, json!({"type": "code_execution_20250825", "name": "code_execution"})),
        native(0, web_search_tool()),
        native(
            0,
            json!({"type": "computer_20250124", "name": "computer", "display_width_px": 1024,
                         "display_height_px": 768}),
        ),
    ];
    // Anthropic's tools alone still make a `tools` list.
    let request = ChatRequest { native_tools: tools, ..ChatRequest::prompt("Fetch https://example.com") };
    server.set_default(Reply::anthropic_text("Done."));
    b.send(&request).await.unwrap();
    let received = server.received();
    let sent = received.last().unwrap();
    assert_eq!(
        sent.header("anthropic-beta"),
        Some(
            "interleaved-thinking-2025-05-14,code-execution-2025-08-25,web-fetch-2025-09-10,computer-use-2025-01-24"
        )
    );
    assert_eq!(sent.json()["tools"].as_array().unwrap().len(), 4, "{}", sent.json());

    server.push(Reply::json(200, json!({"input_tokens": 12})));
    b.count_tokens(&request).await.unwrap();
    assert_eq!(server.received().last().unwrap().header("anthropic-beta"), sent.header("anthropic-beta"));

    b.send(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(
        server.received().last().unwrap().header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14,code-execution-2025-08-25")
    );
    // Without configured flags, only what the tools need; web search needs none.
    let plain = backend(&server);
    plain.send(&search_request(vec![Message::user("news?")])).await.unwrap();
    assert_eq!(server.received().last().unwrap().header("anthropic-beta"), None);

    // The client's own flags come last, each once, on the message and the count alike.
    let flag = |f: &str| NativeFlag { dialect: Dialect::Anthropic, flag: f.into() };
    let asked = ChatRequest {
        native_flags: vec![flag("context-1m-2025-08-07"), flag("web-fetch-2025-09-10")],
        ..request.clone()
    };
    b.send(&asked).await.unwrap();
    let with_client_flags = "interleaved-thinking-2025-05-14,code-execution-2025-08-25,web-fetch-2025-09-10,\
                             computer-use-2025-01-24,context-1m-2025-08-07";
    assert_eq!(server.received().last().unwrap().header("anthropic-beta"), Some(with_client_flags));
    server.push(Reply::json(200, json!({"input_tokens": 12})));
    b.count_tokens(&asked).await.unwrap();
    assert_eq!(server.received().last().unwrap().header("anthropic-beta"), Some(with_client_flags));
}

/// One web search, answered as JSON and as a stream: the same text, the same Anthropic blocks
/// in the same places, the same citations and usage (the search counted).
#[tokio::test]
async fn a_web_search_answer_reads_the_same_from_json_and_from_a_stream() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let request = search_request(vec![Message::user("When was Claude Shannon born?")]);
    server.push(json_answer(&search_blocks(), "end_turn", 1));
    let r = b.send(&request).await.unwrap();

    let text = |s: &str| format!("text:{s}");
    assert_eq!(
        shape(&r),
        [
            text("I'll search for when Claude Shannon was born."),
            "native:server_tool_use".into(),
            "native:web_search_tool_result".into(),
            text("Based on the search results, "),
            text("Claude Shannon was born on April 30, 1916 [1 cited]"),
            text(", in Petoskey, Michigan."),
        ]
    );
    let blocks = search_blocks();
    assert_eq!(
        r.native,
        [NativeBlock::anthropic(blocks[1].clone()), NativeBlock::anthropic(blocks[2].clone())]
    );
    let cited_end = r.content.find(", in Petoskey").unwrap();
    assert_eq!(r.citations, [TextCitations { end: cited_end as u32, citations: vec![citation()] }]);
    assert!(r.tool_calls.is_empty(), "a search Anthropic ran is no call for the client");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    let output = blocks.as_array().unwrap().len() as u32;
    assert_eq!(r.usage, Usage { web_search_requests: 1, ..Usage::reported(PROMPT_TOKENS, output) });

    server.push(Reply::anthropic_stream_blocks(&blocks, "end_turn"));
    let events = stream(&b, &request).await;
    let s = assemble(&events);
    assert_eq!(s.content, r.content);
    assert_eq!(s.native, r.native);
    assert_eq!(s.usage, r.usage);
    assert_eq!(s.finish_reason, r.finish_reason);
    // Each citation comes before the text it cites.
    let cited = events.iter().position(|e| matches!(e, StreamEvent::Citation { .. })).unwrap();
    assert_eq!(events[cited + 1], StreamEvent::text("Claude Shannon was born on April 30, 1916"));
    // Each text block ends where it ended upstream, so the stream holds the same blocks as
    // the JSON answer, the citation on its own block.
    assert_eq!(events.iter().filter(|e| **e == StreamEvent::TextEnd).count(), 4);
    assert_eq!(s.order, r.order);
    assert_eq!(s.citations, r.citations);
}

/// Each search is billed on top of the tokens, $10 per 1,000 unless the configured `pricing`
/// says otherwise, for a JSON answer and a stream alike, by the HTTP backend itself (the
/// cost the router, the ledger and `x-claudette-cost` see).
#[tokio::test]
async fn searches_are_billed_on_top_of_the_tokens() {
    let server = FakeServer::start().await;
    let blocks = search_blocks();
    let output = blocks.as_array().unwrap().len() as f64;
    // `claude-fake` is priced as a Sonnet: $3 / $15 per million tokens.
    let tokens = (f64::from(PROMPT_TOKENS) * 0.003 + output * 0.015) / 1000.0;
    let request = search_request(vec![Message::user("q")]);
    let configured = Pricing::new(0.003, 0.015).with_web_search(25.0);
    for (settings, per_search) in [(settings(&server), 0.01), (settings(&server).pricing(configured), 0.025)]
    {
        let b = claudette_anthropic::backend(&settings).unwrap();
        server.push(json_answer(&blocks, "end_turn", 3));
        let r = b.send(&request).await.unwrap();
        assert_eq!(r.usage.web_search_requests, 3);
        assert!(
            (r.cost - (tokens + 3.0 * per_search)).abs() < 1e-12,
            "{} vs {}",
            r.cost,
            tokens + 3.0 * per_search
        );

        server.push(Reply::anthropic_stream_blocks(&blocks, "end_turn"));
        let events = stream(&b, &request).await;
        let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
        assert_eq!(end.usage.web_search_requests, 1);
        assert!((end.cost - (tokens + per_search)).abs() < 1e-12, "{} vs {}", end.cost, tokens + per_search);
    }
}

/// Anthropic pauses a long server-tool turn with `pause_turn`: no error and no usual stop, and
/// the paused turn goes back as it came so Claude goes on.
#[tokio::test]
async fn a_paused_turn_passes_and_goes_back_as_it_came() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let paused = json!([
        {"type": "text", "text": "Let me search."},
        {"type": "server_tool_use", "id": "srvtoolu_02", "name": "web_search", "input": {"query": "shannon"}},
    ]);
    let question = Message::user("When was Claude Shannon born?");
    server.push(json_answer(&paused, "pause_turn", 1));
    let r = b.send(&search_request(vec![question.clone()])).await.unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Other("pause_turn".into())));
    assert_eq!(shape(&r), ["text:Let me search.", "native:server_tool_use"]);

    server.push(Reply::anthropic_stream_blocks(&paused, "pause_turn"));
    let s = assemble(&stream(&b, &search_request(vec![question.clone()])).await);
    assert_eq!(s.finish_reason, r.finish_reason);
    assert_eq!(s.native, r.native);
    assert_eq!(s.order, r.order);

    server.set_default(Reply::anthropic_text("Born April 30, 1916."));
    b.send(&search_request(vec![question, turn_of(&r)])).await.unwrap();
    let body = server.received().last().unwrap().json();
    assert_eq!(body["messages"][1], json!({"role": "assistant", "content": paused}), "{body}");
}

fn message_start() -> String {
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
               "model": CLAUDE_FAKE_MODEL, "content": [], "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )
}

fn message_end() -> [String; 2] {
    [
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                   "usage": {"output_tokens": 30, "server_tool_use": {"web_search_requests": 2}}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
}

/// Anthropic's blocks stream whole, one event each at their stop: a call's input put together
/// from its fragments (or kept from its start, or `{}`), a compaction's text from its deltas,
/// and deltas this decoder does not know on such a block passed by.
#[tokio::test]
async fn native_blocks_stream_whole_at_their_stop() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let mut frames = vec![
        message_start(),
        block_start(
            0,
            json!({"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "echo", "server_name": "tools",
                              "input": {}}),
        ),
        delta(0, json!({"type": "input_json_delta", "partial_json": ""})),
        delta(0, json!({"type": "input_json_delta", "partial_json": "{\"text\": \"he"})),
        delta(0, json!({"type": "input_json_delta", "partial_json": "llo\"}"})),
        stop(0),
        block_start(
            1,
            json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                              "input": {"query": "given at the start"}}),
        ),
        stop(1),
        block_start(2, json!({"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search"})),
        stop(2),
        block_start(
            3,
            json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_2",
                              "content": {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}}),
        ),
        delta(3, json!({"type": "future_delta", "x": 1})),
        stop(3),
        block_start(4, json!({"type": "compaction", "content": ""})),
        delta(4, json!({"type": "compaction_delta", "content": "Earlier: "})),
        delta(4, json!({"type": "compaction_delta", "content": "a search."})),
        stop(4),
        block_start(5, json!({"type": "text", "text": "", "citations": []})),
        delta(5, json!({"type": "citations_delta", "citation": citation()})),
        delta(5, json!({"type": "text_delta", "text": "Born 1916."})),
        delta(5, json!({"type": "future_delta", "x": 1})),
        stop(5),
    ];
    frames.extend(message_end());
    server.push(Reply::sse(frames));
    let events = stream(&b, &search_request(vec![Message::user("q")])).await;
    let (last, content) = events.split_last().unwrap();
    let StreamEvent::Done { end } = last else { panic!("{events:?}") };
    assert_eq!(end.usage.web_search_requests, 2);
    let content: Vec<&StreamEvent> = content.iter().filter(|e| e.is_content()).collect();
    let native = |block: Value| StreamEvent::Native { block: NativeBlock::anthropic(block) };
    assert_eq!(
        content,
        [
            &native(
                json!({"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "echo", "server_name": "tools",
                           "input": {"text": "hello"}})
            ),
            &native(json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                           "input": {"query": "given at the start"}})),
            &native(
                json!({"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search", "input": {}})
            ),
            &native(json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_2",
                           "content": {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}})),
            &native(json!({"type": "compaction", "content": "Earlier: a search."})),
            &StreamEvent::Citation { citation: citation() },
            &StreamEvent::text("Born 1916."),
        ]
    );
}

/// A server tool's input cut or mangled inside the stream is a typed error naming the block,
/// never a block sent on with a guessed input.
#[tokio::test]
async fn a_cut_server_tool_input_is_a_typed_error() {
    let server = FakeServer::start().await;
    let b = backend(&server);
    let mut frames = vec![
        message_start(),
        block_start(0, json!({"type": "text", "text": "Searching."})),
        stop(0),
        block_start(
            1,
            json!({"type": "server_tool_use", "id": "srvtoolu_3", "name": "web_search", "input": {}}),
        ),
        delta(1, json!({"type": "input_json_delta", "partial_json": "{\"query\": \"shann"})),
        stop(1),
    ];
    frames.extend(message_end());
    server.push(Reply::sse(frames));
    let events = stream(&b, &search_request(vec![Message::user("q")])).await;
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::MalformedResponse, "{error}");
    assert!(error.message.contains("server_tool_use") && error.message.contains("index 1"), "{error}");
    assert!(
        !events.iter().any(|e| matches!(e, StreamEvent::Native { .. } | StreamEvent::Done { .. })),
        "{events:?}"
    );
}

/// A search is billed once it ran, not only when the stream's end reports it: a stream cut
/// right after the search results books the search with the tokens (`analyze_costs`), and
/// the usage events say so as soon as the results come.
#[tokio::test]
async fn a_stream_cut_after_a_search_books_the_search() {
    use claudette_core::costs::GroupBy;
    use claudette_core::{BackendRouter, RouterOptions};
    let server = FakeServer::start().await;
    // message_start, then 3 frames for the text, 3 for the search call, 2 for its results.
    server.push(Reply::anthropic_stream_blocks(&search_blocks(), "end_turn").cut_after(9));
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(std::sync::Arc::new(backend(&server))).unwrap();
    let events: Vec<StreamEvent> =
        router.route_stream(&search_request(vec![Message::user("q")])).await.unwrap().collect().await;
    let results = events
        .iter()
        .position(|e| matches!(e, StreamEvent::Native { block } if block.kind() == "web_search_tool_result"));
    let Some(StreamEvent::Usage { usage }) = results.and_then(|i| events.get(i + 1)) else {
        panic!("no usage after the results: {events:?}")
    };
    assert_eq!(usage.web_search_requests, 1);
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })), "{events:?}");
    let booked = router.analyze_costs(std::time::Duration::from_secs(3600), GroupBy::Backend).total_cost;
    assert!(booked >= 0.01, "the search ($0.01) is in the bill: {booked}");
}
