//! The official `openai` and `anthropic` Python SDKs as clients of an in-process gateway:
//! Chat Completions and Messages, and the `openai` SDK's Responses API
//! (`client.responses.create()`, JSON and streaming, and its `responses.stream()` helper).
//!
//! A virtualenv is created under the workspace's `target/` (and reused) with both SDKs
//! installed from PyPI. Without Python, venv, pip or network the test prints why and passes:
//! it proves compatibility where it can run and must not break builds where it cannot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use claudette_core::BackendRouter;
use claudette_gateway::{GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;
use tokio::process::Command;

const KEY: &str = "gw-sdk-test-key";
const RESPONSES_KEY: &str = "gw-responses-sdk-key";

fn venv_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("claudette-gateway-pyenv")
}

async fn run(cmd: &mut Command, limit: Duration) -> Result<std::process::Output, String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}

/// The venv's python with both SDKs importable, or why not.
async fn sdk_python() -> Result<PathBuf, String> {
    let dir = venv_dir();
    let python = dir.join("bin").join("python");
    let check = |p: &Path| {
        let mut c = Command::new(p);
        c.args(["-c", "import openai, anthropic; print(openai.__version__, anthropic.__version__)"]);
        c
    };
    if python.exists() {
        if let Ok(out) = run(&mut check(&python), Duration::from_secs(60)).await {
            if out.status.success() {
                println!("python SDKs (reused venv): {}", String::from_utf8_lossy(&out.stdout).trim());
                return Ok(python);
            }
        }
    }
    let out = run(Command::new("python3").args(["-m", "venv"]).arg(&dir), Duration::from_secs(120))
        .await
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !out.status.success() {
        return Err(format!("python3 -m venv failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let out = run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "openai",
            "anthropic",
        ]),
        Duration::from_secs(600),
    )
    .await
    .map_err(|e| format!("pip install: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install openai anthropic failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let out = run(&mut check(&python), Duration::from_secs(60)).await?;
    if !out.status.success() {
        return Err(format!("SDKs not importable: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    println!("python SDKs: {}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(python)
}

async fn script(python: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(name);
    let out =
        run(Command::new(python).arg(&path).args(args), Duration::from_secs(120)).await.expect("run script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// One fake per scenario, each always giving the same answer, so scenario order does not
/// matter.
/// The usage of a searched answer: one search.
fn searched_usage() -> serde_json::Value {
    json!({"input_tokens": 10, "output_tokens": 4, "server_tool_use": {"web_search_requests": 1}})
}

async fn fake(reply: Fake) -> FakeServer {
    let f = FakeServer::start().await;
    f.set_default(reply);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_against_the_gateway() {
    let python = match sdk_python().await {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED official SDK test: {why}");
            return;
        }
    };

    let oa_json = fake(Fake::openai_text("Hello from the gateway")).await;
    let oa_stream = fake(Fake::openai_stream(&["Hel", "lo", "!"])).await;
    let oa_tool = fake(Fake::openai_tool_call("call_1", "add", r#"{"a":1,"b":2}"#)).await;
    let oa_cut = fake(Fake::openai_stream(&["par", "tial", "never"]).cut_after(3)).await;
    let oa_tool_stream = fake(Fake::openai_stream_tool_call("call_2", "add", &["{\"a\":", "1}"])).await;
    let cl_json = fake(Fake::anthropic_text("Hi from claude")).await;
    let cl_stream = fake(Fake::anthropic_stream(&["Str", "eam", "ed"])).await;
    let cl_cut = fake(Fake::anthropic_stream_error_after(&["so ", "far"], "overloaded_error")).await;
    let cl_count = fake(Fake::json(200, json!({"input_tokens": 4321}))).await;
    // Claude thinking between its calls, then answering the turn that sent them back.
    let interleaved = json!([
        {"type": "thinking", "thinking": "read /a first", "signature": "SIG1"},
        {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/a"}},
        {"type": "thinking", "thinking": "now /b", "signature": "SIG2"},
        {"type": "text", "text": "Next: /b."},
        {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "/b"}},
    ]);
    // A web search answer: Claude searches, gets encrypted results, and cites one.
    let search = json!([
        {"type": "text", "text": "I'll search."},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "claude shannon born"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
            {"type": "web_search_result", "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
             "title": "Claude Shannon", "encrypted_content": "EqgfCioIARgB", "page_age": "April 30, 2025"}]},
        {"type": "text", "text": "He was born on April 30, 1916.", "citations": [
            {"type": "web_search_result_location", "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
             "title": "Claude Shannon", "encrypted_index": "Eo8BCioIAhgB", "cited_text": "born April 30, 1916"}]},
    ]);
    let cl_search = FakeServer::start().await;
    cl_search.push(Fake::anthropic_stream_blocks(&search, "end_turn"));
    cl_search.push(Fake::anthropic_blocks(search.clone(), "end_turn", searched_usage()));
    cl_search.set_default(Fake::anthropic_text("In Petoskey, Michigan."));
    let cl_fast = fake(Fake::anthropic_blocks(
        json!([{"type": "text", "text": "Fast."}]),
        "end_turn",
        json!({"input_tokens": 1000, "output_tokens": 1000, "speed": "fast"}),
    ))
    .await;
    // The same search answered to an OpenAI-format client (`web_search_options`).
    let cl_oa_search = FakeServer::start().await;
    cl_oa_search.push(Fake::anthropic_stream_blocks(&search, "end_turn"));
    cl_oa_search.set_default(Fake::anthropic_blocks(search.clone(), "end_turn", searched_usage()));
    let cl_interleaved = FakeServer::start().await;
    cl_interleaved.push(Fake::anthropic_stream_blocks(&interleaved, "tool_use"));
    cl_interleaved.set_default(Fake::anthropic_text("both read"));
    let r = router(vec![
        openai(openai_settings("oa-json", &oa_json)),
        openai(openai_settings("oa-stream", &oa_stream)),
        openai(openai_settings("oa-tool", &oa_tool)),
        openai(openai_settings("oa-cut", &oa_cut)),
        openai(openai_settings("oa-tool-stream", &oa_tool_stream)),
        anthropic(anthropic_settings("cl-json", &cl_json)),
        anthropic(anthropic_settings("cl-stream", &cl_stream)),
        anthropic(anthropic_settings("cl-cut", &cl_cut)),
        anthropic(anthropic_settings("cl-count", &cl_count)),
        anthropic(anthropic_settings("cl-interleaved", &cl_interleaved)),
        anthropic(anthropic_settings("cl-search", &cl_search)),
        anthropic(anthropic_settings("cl-fast", &cl_fast)),
        anthropic(anthropic_settings("cl-oa-search", &cl_oa_search)),
    ]);
    let options =
        GatewayOptions { api_keys: vec![KeyEntry::from_plain("sdk", KEY)], ..GatewayOptions::default() };
    let gw = start_with(r, options).await;

    let throttled_fake =
        fake(Fake::anthropic_error(429, "rate_limit_error", "slow down").header("retry-after", "30")).await;
    let mut throttled_options = fast_options();
    throttled_options.retry.max_hint = Duration::from_secs(1);
    let throttled_router = BackendRouter::new(throttled_options);
    throttled_router.register_backend(anthropic(anthropic_settings("busy", &throttled_fake))).unwrap();
    let throttled = start(Arc::new(throttled_router)).await;

    let o = script(&python, "openai_client.py", &[&gw.url, KEY]).await;
    println!("openai SDK: {o}");
    assert_eq!(o["json"]["content"], "Hello from the gateway");
    assert_eq!(o["json"]["prompt_tokens"], 10);
    assert_eq!(o["json"]["cached_tokens"], 0);
    assert_eq!(o["json"]["backend"], "oa-json");
    assert_eq!(o["json"]["attempts"], "1");
    assert_eq!(o["stream"], json!({"text": "Hello!", "finish": "stop", "completion_tokens": 3}));
    assert_eq!(o["tool"], json!({"name": "add", "arguments": {"a": 1, "b": 2}}));
    assert_eq!(o["not_found"]["status"], 404);
    assert_eq!(o["not_found"]["code"], "model_not_found");
    assert_eq!(o["cut"]["text"], "partial");
    assert_eq!(o["auth"]["status"], 401);
    assert_eq!(
        o["interleaved"],
        json!({"block_order": ["thinking", "tool_call", "thinking", {"text": 9}, "tool_call"],
               "thinking_blocks": 2, "calls": ["read", "read"], "again": "both read"})
    );
    assert_eq!(
        o["search"],
        json!({"content": "I'll search.He was born on April 30, 1916.",
               "cited": [{"url": "https://en.wikipedia.org/wiki/Claude_Shannon", "title": "Claude Shannon",
                          "text": "He was born on April 30, 1916."}]})
    );
    for up in cl_oa_search.received() {
        assert_eq!(
            up.json()["tools"],
            json!([{"type": "web_search_20250305", "name": "web_search",
                    "user_location": {"type": "approximate", "city": "Petoskey", "country": "US"}}])
        );
    }
    let sent = cl_interleaved.received();
    assert_eq!(sent.len(), 2);
    let body = sent[1].json();
    let turn: Vec<&str> = body["messages"][1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(turn, ["thinking", "tool_use", "thinking", "text", "tool_use"], "in Claude's order");

    let a = script(&python, "anthropic_client.py", &[&gw.url, KEY, &throttled.url]).await;
    println!("anthropic SDK: {a}");
    assert_eq!(a["json"], json!({"text": "Hi from claude", "input_tokens": 10, "output_tokens": 3}));
    assert_eq!(a["stream"]["text"], "Streamed");
    assert_eq!(a["stream"]["stop_reason"], "end_turn");
    assert_eq!(a["stream"]["input_tokens"], 10);
    assert_eq!(a["stream"]["output_tokens"], 3);
    assert_eq!(a["tool"], json!({"name": "add", "input": {"a": 1}, "stop_reason": "tool_use"}));
    assert_eq!(a["cut"]["text"], "so far");
    assert_eq!(a["not_found"]["status"], 404);
    assert_eq!(
        a["count"],
        json!({"input_tokens": 4321, "beta_input_tokens": 4321, "how": "exact", "backend": "cl-count"})
    );
    let counts = cl_count.received();
    assert_eq!(counts.len(), 2, "the plain and the beta count each asked upstream");
    assert!(counts.iter().all(|up| up.query.is_none()), "the gateway's own call has no `?beta=true`");
    for up in &counts {
        assert_eq!(up.path, "/v1/messages/count_tokens");
        let body = up.json();
        assert_eq!((body["model"].as_str(), body.get("max_tokens")), (Some("claude-fake"), None), "{body}");
        assert_eq!(body["tools"][0]["name"], "add");
    }
    assert_eq!(a["throttled"], json!([[429, "30"], [429, "30"]]));
    assert_eq!(
        a["search"],
        json!({"kinds": ["server_tool_use", "web_search_tool_result"],
               "text": "I'll search.He was born on April 30, 1916.",
               "cited": ["https://en.wikipedia.org/wiki/Claude_Shannon"], "query": ["claude shannon born"],
               "results": ["https://en.wikipedia.org/wiki/Claude_Shannon"], "searches": 1,
               "stop_reason": "end_turn", "again": "In Petoskey, Michigan."})
    );
    let sent = cl_search.received();
    assert_eq!(sent.len(), 3);
    let body = sent[2].json();
    assert_eq!(body["tools"][0], json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 3}));
    let turn = &body["messages"][1]["content"];
    assert_eq!(turn[1], search[1], "the search call goes back as Claude made it: {turn}");
    assert_eq!(turn[2], search[2], "the encrypted results go back unchanged: {turn}");
    assert_eq!(turn[3]["citations"], search[3]["citations"], "{turn}");
    assert_eq!(throttled_fake.post_requests(), 1, "the second throttled call never left the gateway");
    // Priced like a Sonnet ($3 / $15 per million), at 6x.
    assert_eq!((&a["fast"]["text"], &a["fast"]["speed"]), (&json!("Fast."), &json!("fast")), "{a}");
    let cost: f64 = a["fast"]["cost"].as_str().unwrap().parse().unwrap();
    assert!((cost - 0.108).abs() < 1e-9, "{cost}");
    let up = cl_fast.received().pop().unwrap();
    assert_eq!(up.header("anthropic-beta"), Some("fast-mode-2026-02-01,context-1m-2025-08-07"));
    assert_eq!(up.json()["speed"], "fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_speaks_responses_to_the_gateway() {
    let python = match sdk_python().await {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED official SDK Responses test: {why}");
            return;
        }
    };

    let json_fake = fake(Fake::openai_text("Hello from the gateway")).await;
    let stream = fake(Fake::openai_stream(&["Hel", "lo", "!"])).await;
    let tool = fake(Fake::openai_tool_call("call_1", "add", r#"{"a":1,"b":2}"#)).await;
    let tool_stream = fake(Fake::openai_stream_tool_call("call_2", "add", &["{\"a\":1,", "\"b\":2}"])).await;
    let cut = fake(Fake::openai_stream(&["par", "tial", "never"]).cut_after(3)).await;
    // A searched answer (`tests/common`), as JSON first and then streamed.
    let blocks = searched_blocks();
    let cl_search = FakeServer::start().await;
    cl_search.push(Fake::anthropic_blocks(blocks.clone(), "end_turn", searched_usage()));
    cl_search.push(Fake::anthropic_stream_blocks(&blocks, "end_turn"));
    let r = router(vec![
        openai(openai_settings("oa-json", &json_fake)),
        openai(openai_settings("oa-stream", &stream)),
        openai(openai_settings("oa-tool", &tool)),
        openai(openai_settings("oa-tool-stream", &tool_stream)),
        openai(openai_settings("oa-cut", &cut)),
        anthropic(anthropic_settings("cl-search", &cl_search)),
    ]);
    let options = GatewayOptions {
        api_keys: vec![KeyEntry::from_plain("sdk", RESPONSES_KEY)],
        ..GatewayOptions::default()
    };
    let gw = start_with(r, options).await;

    let o = script(&python, "responses_client.py", &[&gw.url, RESPONSES_KEY]).await;
    println!("openai SDK, Responses: {o}");
    assert_eq!(
        o["json"],
        json!({"text": "Hello from the gateway", "id_prefix": "resp_", "instructions": "be brief",
               "input_tokens": 10, "cached_tokens": 0, "backend": "oa-json"})
    );
    assert_eq!(
        o["stream"],
        json!({"text": "Hello!", "output_text": "Hello!", "first": "response.created",
               "last": "response.completed", "output_tokens": 3})
    );
    assert_eq!(o["stream_helper"], "Hello!");
    assert_eq!(
        o["tool"],
        json!({"name": "add", "call_id": "call_1", "arguments": {"a": 1, "b": 2}, "next": "Hello from the gateway"})
    );
    assert_eq!(o["tool_stream"], json!({"a": 1, "b": 2}));
    assert_eq!(
        o["cut"],
        json!({"text": "partial", "tail": ["error", "response.failed"], "completed": false,
               "code": "stream_interrupted", "failed_status": "failed"})
    );
    assert_eq!(o["stateful"], json!({"status": 400, "param": "previous_response_id"}));
    let cited = |n: u32, text: &str| json!({"url": format!("https://news.example/{n}"), "text": text});
    assert_eq!(
        o["search"],
        json!({"calls": [{"status": "completed", "query": "rust 2024 edition",
                          "sources": ["https://news.example/1", "https://news.example/2"]}],
               "text": "I'll look that up — one moment.The 2024 edition shipped with Rust 1.85 in February 2025. \
                        Editions are opt-in per crate.",
               "cited": [cited(1, "The 2024 edition shipped with Rust 1.85"), cited(2, " in February 2025."),
                         cited(1, " in February 2025.")],
               "events": ["response.web_search_call.in_progress", "response.web_search_call.searching",
                          "response.web_search_call.completed", "response.output_text.annotation.added",
                          "response.output_text.annotation.added", "response.output_text.annotation.added"]})
    );
    for up in cl_search.received() {
        assert_eq!(
            up.json()["tools"],
            json!([{"type": "web_search_20250305", "name": "web_search",
                    "user_location": {"type": "approximate", "city": "Paris"}}])
        );
    }

    // The second tool turn reached the provider as a tool loop.
    let up = json_fake.last_json().unwrap();
    let messages = up["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{up}");
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(messages[2], json!({"role": "tool", "tool_call_id": "call_1", "content": "3"}));
}
