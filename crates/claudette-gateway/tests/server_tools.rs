//! Anthropic's server tools through `/v1/messages` over real HTTP, in front of test-kit fakes:
//! Claude Code's WebSearch sends `{"type": "web_search_20250305", "name": "web_search"}` among
//! its function tools and gets back blocks Anthropic wrote itself (`server_tool_use`,
//! `web_search_tool_result`), text blocks with `citations`, `usage.server_tool_use` and at
//! times `stop_reason: "pause_turn"`; its next turn sends those blocks back unchanged (the
//! results are encrypted). The upstream gets the tool in its place and the turn verbatim; the
//! client gets everything back, in JSON and in the stream alike; and a request that only
//! Anthropic can serve goes to an Anthropic backend, or is refused naming why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/messages";

fn web_search() -> Value {
    json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 8})
}

fn function_tool(name: &str) -> Value {
    json!({"name": name, "description": format!("{name} a file"),
           "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}})
}

fn searched_answer(stop_reason: &str) -> Fake {
    Fake::json(
        200,
        json!({"id": "msg_search", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": searched_blocks(), "stop_reason": stop_reason, "stop_sequence": null,
               "usage": {"input_tokens": 120, "output_tokens": 60,
                         "server_tool_use": {"web_search_requests": 1}}}),
    )
}

/// Claude Code's request: its function tools with the web search among them, the question,
/// and `history` after it (the turns that came before, in Claude Code's words).
fn claude_code_request(history: Vec<Value>, stream: bool) -> Value {
    let mut messages = vec![json!({"role": "user", "content": "What is new in Rust?"})];
    messages.extend(history);
    json!({"model": "auto", "max_tokens": 1024, "stream": stream,
           "system": [{"type": "text", "text": "You are Claude Code."}],
           "tools": [function_tool("Read"), web_search(), function_tool("Edit")],
           "messages": messages})
}

/// The tool loop's next request: the question, the searched turn as the client got it, and
/// the user's next word (after a `pause_turn`, Claude Code sends the turn back to go on).
fn next_turn(turn: Value) -> Value {
    claude_code_request(
        vec![json!({"role": "assistant", "content": turn}), json!({"role": "user", "content": "And 2027?"})],
        false,
    )
}

/// What the upstream got: its tools' types or names in order, and the searched turn.
fn sent(claude: &FakeServer) -> (Vec<String>, Value, Value) {
    let sent = claude.last_json().unwrap();
    let tools = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.get("type").unwrap_or(&t["name"]).as_str().unwrap().to_owned())
        .collect();
    (tools, sent["tools"][1].clone(), sent["messages"][1].clone())
}

/// The message a client assembles from a Messages stream, as the official SDKs do
/// (`accumulate_event`): each block from its start, text and citations appended, a tool
/// call's input from its `input_json_delta`s; `stop_reason` and usage from `message_delta`.
fn assemble(frames: &[(Option<String>, String)]) -> Value {
    let mut message = Value::Null;
    let mut inputs: Vec<String> = Vec::new();
    for (_, data) in frames {
        let ev: Value = serde_json::from_str(data).unwrap();
        let index = ev["index"].as_u64().map(|i| usize::try_from(i).unwrap());
        match ev["type"].as_str().unwrap() {
            "message_start" => message = ev["message"].clone(),
            "content_block_start" => {
                let blocks = message["content"].as_array_mut().unwrap();
                assert_eq!(index, Some(blocks.len()), "{ev}");
                blocks.push(ev["content_block"].clone());
                inputs.push(String::new());
            }
            "content_block_delta" => {
                let index = index.unwrap();
                let block = &mut message["content"][index];
                let delta = &ev["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text =
                            format!("{}{}", block["text"].as_str().unwrap(), delta["text"].as_str().unwrap());
                        block["text"] = json!(text);
                    }
                    "citations_delta" => {
                        if block.get("citations").is_none_or(Value::is_null) {
                            block["citations"] = json!([]);
                        }
                        block["citations"].as_array_mut().unwrap().push(delta["citation"].clone());
                    }
                    "input_json_delta" => inputs[index].push_str(delta["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let index = index.unwrap();
                if !inputs[index].is_empty() {
                    message["content"][index]["input"] = serde_json::from_str(&inputs[index]).unwrap();
                }
            }
            "message_delta" => {
                message["stop_reason"] = ev["delta"]["stop_reason"].clone();
                message["stop_sequence"] = ev["delta"]["stop_sequence"].clone();
                message["usage"]["output_tokens"] = ev["usage"]["output_tokens"].clone();
                if let Some(s) = ev["usage"].get("server_tool_use") {
                    message["usage"]["server_tool_use"] = s.clone();
                }
            }
            _ => {}
        }
    }
    message
}

#[tokio::test]
async fn a_web_search_answer_comes_back_whole_and_its_turn_goes_back_upstream_verbatim() {
    let (claude, gw) =
        claude_answering([searched_answer("pause_turn"), Fake::anthropic_text("Not yet known.")]).await;

    let r = post(&gw.url, PATH, claude_code_request(Vec::new(), false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (tools, search, _) = sent(&claude);
    assert_eq!(tools, ["Read", "web_search_20250305", "Edit"]);
    assert_eq!(search, web_search());
    let answer = r.json();
    assert_eq!(answer["content"], searched_blocks(), "{answer}");
    assert_eq!(answer["stop_reason"], "pause_turn", "{answer}");
    assert_eq!(answer["usage"]["server_tool_use"], json!({"web_search_requests": 1}), "{answer}");

    let r = post(&gw.url, PATH, next_turn(answer["content"].clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (tools, _, turn) = sent(&claude);
    assert_eq!(tools, ["Read", "web_search_20250305", "Edit"]);
    assert_eq!(turn, json!({"role": "assistant", "content": searched_blocks()}));
    // An ordinary answer has none of it.
    let plain = r.json();
    assert_eq!(plain["content"], json!([{"type": "text", "text": "Not yet known."}]), "{plain}");
    assert!(plain["usage"].get("server_tool_use").is_none(), "{plain}");
    assert!(!r.text.contains("citations"), "{}", r.text);
}

#[tokio::test]
async fn a_streamed_web_search_answer_assembles_to_the_json_answer_and_goes_back_verbatim() {
    let (claude, gw) = claude_answering([
        searched_answer("pause_turn"),
        Fake::anthropic_stream_blocks(&searched_blocks(), "pause_turn"),
        Fake::anthropic_text("Not yet known."),
    ])
    .await;
    let json_answer = post(&gw.url, PATH, claude_code_request(Vec::new(), false)).await.json();

    let r = post(&gw.url, PATH, claude_code_request(Vec::new(), true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (tools, search, _) = sent(&claude);
    assert_eq!(
        (tools, search),
        (vec!["Read".into(), "web_search_20250305".into(), "Edit".into()], web_search())
    );
    let frames = r.frames();
    let streamed = assemble(&frames);
    assert_eq!(streamed["content"], searched_blocks(), "{}", r.text);
    for field in ["content", "stop_reason", "stop_sequence", "role", "type"] {
        assert_eq!(streamed[field], json_answer[field], "{field}: {}", r.text);
    }
    assert_eq!(streamed["usage"]["server_tool_use"], json!({"web_search_requests": 1}), "{}", r.text);
    // Anthropic's own wire shape: the search's input in one `input_json_delta`, the results
    // whole in their start, a cited block opened with `citations: []`.
    let starts = event_data(&frames, "content_block_start");
    assert_eq!(starts[1]["content_block"]["input"], json!({}), "{}", r.text);
    assert_eq!(starts[2]["content_block"], searched_blocks()[2], "{}", r.text);
    assert_eq!(starts[3]["content_block"], json!({"type": "text", "text": "", "citations": []}));

    let r = post(&gw.url, PATH, next_turn(streamed["content"].clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, _, turn) = sent(&claude);
    assert_eq!(turn, json!({"role": "assistant", "content": searched_blocks()}));
}

#[tokio::test]
async fn a_web_search_goes_to_the_anthropic_backend_beside_an_openai_one() {
    let (gpt, claude, gw) = openai_and_claude().await;
    let mut plain = claude_code_request(Vec::new(), false);
    plain["tools"] = json!([function_tool("Read")]);
    let r = post_with(&gw.url, PATH, plain, &BY_COST).await;
    assert_eq!((r.status, r.json()["content"][0]["text"].clone()), (200, json!("from gpt")), "{}", r.text);

    claude.push(searched_answer("end_turn"));
    let r = post_with(&gw.url, PATH, claude_code_request(Vec::new(), false), &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["content"], searched_blocks(), "{}", r.text);
    assert_eq!((gpt.post_requests(), claude.post_requests()), (1, 1));

    // A turn carrying the search's blocks back needs Anthropic too, tools or not.
    claude.push(Fake::anthropic_text("Not yet known."));
    let mut next = next_turn(searched_blocks());
    next["tools"] = json!([function_tool("Read")]);
    let r = post_with(&gw.url, PATH, next, &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((gpt.post_requests(), claude.post_requests()), (1, 2));
}

#[tokio::test]
async fn a_web_search_without_an_anthropic_backend_is_refused_naming_why() {
    let gpt = FakeServer::start().await;
    gpt.set_default(openai_answer(json!({"role": "assistant", "content": "from gpt"}), "stop"));
    let gw = start(router(vec![openai(openai_settings("gpt", &gpt))])).await;
    let mut history_only = next_turn(searched_blocks());
    history_only["tools"] = json!([function_tool("Read")]);
    for (body, stream) in [
        (claude_code_request(Vec::new(), false), false),
        (claude_code_request(Vec::new(), true), true),
        (history_only, false),
    ] {
        let r = post(&gw.url, PATH, body).await;
        assert_eq!(r.status, 400, "stream {stream}: {}", r.text);
        let e = r.json();
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("provider `anthropic`") && message.contains("web search"), "{message}");
    }
    assert_eq!(gpt.post_requests(), 0);
}
