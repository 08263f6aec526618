//! Runs the example programs a newcomer is told to run, and checks they do what the README says.
//! `cargo test` builds every example of this package before running tests, so the binaries sit
//! next to this test's own executable (`target/<profile>/examples/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        // A filtered run (`cargo test --test run_examples`) does not build examples: build it.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "claudette-examples", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "building example {name} failed");
    }
    assert!(path.exists(), "{} not built", path.display());
    path
}

fn run(name: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(example(name));
    for var in ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OLLAMA_HOST", "QWEN_BASE_URL"] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed: {}\n{stdout}\n{stderr}", out.status);
    stdout
}

#[test]
fn route_local_prints_decisions_failover_and_a_breaker_trip() {
    let out = run("route_local", &[]);
    assert!(out.contains("candidate cheap score"), "{out}");
    assert!(out.contains("attempt   cheap error (overloaded"), "failover is shown: {out}");
    assert!(out.contains("breaker of cheap: open"), "{out}");
    assert!(out.contains("skipped   cheap CircuitOpen"), "{out}");
    assert!(out.contains("Streams are committed at the first token."), "{out}");
}

#[test]
fn all_providers_fails_over_across_four_protocols() {
    let out = run("all_providers", &[]);
    assert!(out.contains("openai    error — overloaded"), "{out}");
    assert!(out.contains("anthropic error — overloaded"), "{out}");
    assert!(out.contains("Answer from gemini: Gemini answers after two failovers."), "{out}");
}

/// The web search example against a fake Anthropic server that searched: the search and its
/// results are shown in their place, the cited source after its sentence, the search in the
/// count and the cost.
#[test]
fn web_search_shows_the_search_its_sources_and_its_cost() {
    use claudette_testkit::{FakeServer, Reply};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeServer::start());
    let url = "https://blog.rust-lang.org/releases/latest";
    fake.push(Reply::json(
        200,
        serde_json::json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "latest rust"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                    {"type": "web_search_result", "url": url, "title": "Rust releases", "encrypted_content": "EqgB"}]},
                {"type": "text", "text": "The latest stable release is Rust 1.91.", "citations": [
                    {"type": "web_search_result_location", "url": url, "title": "Rust releases",
                     "encrypted_index": "Eo8B", "cited_text": "Rust 1.91"}]}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 2000, "output_tokens": 40, "server_tool_use": {"web_search_requests": 1}}}),
    ));
    let out =
        run("web_search", &[("ANTHROPIC_API_KEY", "sk-ant-example"), ("ANTHROPIC_BASE_URL", &fake.url())]);
    assert!(out.contains("<server_tool_use>\n\n<web_search_tool_result>\n"), "{out}");
    assert!(out.contains(&format!("The latest stable release is Rust 1.91. [{url}]")), "{out}");
    // Haiku 4.5: $1 / $5 per million tokens (0.0022), and $10 per 1,000 searches (0.01).
    assert!(out.contains("searches: 1, cost: $0.0122"), "{out}");
    let sent = fake.last_json().unwrap();
    assert_eq!(sent["tools"][0]["type"], "web_search_20250305", "{sent}");
}

#[test]
fn provider_examples_explain_missing_keys_instead_of_failing() {
    for name in ["openai", "anthropic", "gemini", "ollama", "qwen", "web_search"] {
        let mut cmd = Command::new(example(name));
        for var in ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OLLAMA_HOST", "QWEN_BASE_URL"] {
            cmd.env_remove(var);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not set: export"), "{name}: {out:?}");
    }
}
