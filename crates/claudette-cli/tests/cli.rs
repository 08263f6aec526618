#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real `claudette` binary, spawned as a process, against test-kit fake providers on
//! 127.0.0.1: `config check`, `serve` (real HTTP through it, then SIGTERM → exit 0), `chat`
//! (tokens reach stdout as they arrive), `batch` (order, per-line errors, resume), `backends`,
//! `costs` and `demo`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use claudette_testkit::{FakeServer, Reply};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BACKEND_CANARY: &str = "sk-canary-cli-backend-5e1d9c";
const GATEWAY_KEY: &str = "gw-canary-cli-0a9b8c7d6e5f4a3b";

/// Safety net only: no test asserts on speed, but none may hang the suite either.
const LIMIT: Duration = Duration::from_secs(90);

fn claudette(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_claudette"));
    // A clean environment: no provider keys, no CLAUDETTE_* from the developer's shell, and a
    // working directory without a claudette.toml.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TEST_BACKEND_KEY", BACKEND_CANARY)
        .env("TEST_GATEWAY_KEY", GATEWAY_KEY)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(mut cmd: Command) -> Output {
    let out = tokio::time::timeout(LIMIT, cmd.output()).await.expect("claudette did not finish").unwrap();
    checked(out)
}

/// [`run`] for a command whose stdout was redirected: `Command::output` would replace it by a
/// pipe.
async fn run_spawned(mut cmd: Command) -> Output {
    let child = cmd.spawn().unwrap();
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("claudette did not finish")
        .unwrap();
    checked(out)
}

fn checked(out: std::process::Output) -> Output {
    let o = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for text in [&o.stdout, &o.stderr] {
        assert!(!text.contains(BACKEND_CANARY) && !text.contains(GATEWAY_KEY), "a key was printed:\n{text}");
        assert!(!text.contains("panicked"), "claudette panicked:\n{text}");
    }
    o
}

/// A config with one OpenAI-compatible backend `fake` at `server`, and optionally more TOML.
fn write_config(dir: &Path, server: &FakeServer, extra: &str) -> PathBuf {
    let path = dir.join("claudette.test.toml");
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 5000

[router.retry]
base_backoff_ms = 10
max_backoff_ms = 50

[[backends]]
name = "fake"
provider = "openai"
model = "fake-model"
base_url = "{}"
api_key_env = "TEST_BACKEND_KEY"
pricing = {{ input_per_1k = 0.001, output_per_1k = 0.002 }}
{extra}"#,
        server.v1_url()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// `{"model":"auto"}` and one user message to a gateway's `/v1/chat/completions`, with `key`
/// when one is given.
async fn say_hi(base: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

/// SIGTERM to a `serve` and its exit status, which must be 0.
async fn stop(child: &mut Child) {
    sigterm(child);
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_accepts_a_valid_file_and_prints_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let path = write_config(dir.path(), &fake, "");
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("config OK: "), "{}", o.stdout);
    assert!(o.stdout.contains("fake") && o.stdout.contains("$TEST_BACKEND_KEY (set)"), "{}", o.stdout);
    assert_eq!(fake.requests(), 0, "config check makes no calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_fails_with_key_path_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n[[backends]]\nname = \"b\"\nprovider = \"ollama\"\n\
         model = \"m\"\npricing = { input_per_1k = \"cheap\", output_per_1k = 1 }\n",
    )
    .unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr,
        "claudette: error: invalid configuration: backends[1].pricing.input_per_1k: expected a number, \
         found string \"cheap\"\n"
    );

    // An unknown provider, found only when backends are built.
    std::fs::write(&path, "[[backends]]\nprovider = \"opnai\"\n").unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("backends[0].provider: unknown provider \"opnai\" (known: "), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);

    // CLAUDETTE_CONFIG names the file; an override's error names the variable.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n").unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check"]).env("CLAUDETTE_CONFIG", &good).env("CLAUDETTE__ROUTER__COST_WEIGHT", "-1");
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("router.cost_weight: must be a number ≥ 0, found -1 (set by environment variable CLAUDETTE__ROUTER__COST_WEIGHT)"),
        "{}",
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_config_passes_config_check_with_its_variables_set() {
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/claudette.toml");
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check", "--config"])
        .arg(&sample)
        .env("OPENAI_API_KEY", BACKEND_CANARY)
        .env("ANTHROPIC_API_KEY", BACKEND_CANARY)
        .env("GEMINI_API_KEY", BACKEND_CANARY)
        .env("CLAUDETTE_KEY_TEAM_A", GATEWAY_KEY);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    for name in ["openai", "claude", "gemini", "local", "qwen"] {
        assert!(o.stdout.contains(name), "{name} missing from\n{}", o.stdout);
    }
}

/// Reads the child's stdout until `listening on http://ADDR`, returning ADDR.
async fn listening_address(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                return addr.to_owned();
            }
        }
        panic!("serve exited before printing its address");
    };
    tokio::time::timeout(LIMIT, find).await.expect("no `listening on` line")
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("child already reaped").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_routes_real_http_and_exits_0_on_sigterm_after_draining() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_text("served through the gateway"));
    let path = write_config(
        dir.path(),
        &fake,
        "[[server.keys]]\nname = \"tests\"\nkey_env = \"TEST_GATEWAY_KEY\"\n",
    );
    let mut cmd = claudette(dir.path());
    cmd.arg("serve").arg("--config").arg(&path);
    let mut child = cmd.spawn().unwrap();
    let addr = listening_address(&mut child).await;
    let base = format!("http://{addr}");
    let http = client();
    let body = r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#;

    // Without the key: 401, and no upstream call.
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(fake.post_requests(), 0);

    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-claudette-backend"], "fake");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "served through the gateway");
    assert_eq!(fake.post_requests(), 1);
    // The gateway used the backend's key upstream, never the client's.
    let upstream = fake.received().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(upstream.header("authorization"), Some(format!("Bearer {BACKEND_CANARY}").as_str()));

    // `costs` and `backends --url` read this gateway.
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url", &base, "--timeframe", "1h"]).env("CLAUDETTE_API_KEY", GATEWAY_KEY);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.lines().any(|l| l.starts_with("fake ") && l.contains(" 1 ")), "{}", o.stdout);
    assert!(o.stdout.contains("TOTAL"), "{}", o.stdout);
    // The timeframe is encoded into the query: one that smuggles in a parameter reaches the
    // gateway whole and is refused as a timeframe (it was read as `1h` plus `group_by=model`).
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url", &base, "--timeframe", "1h&group_by=model"])
        .env("CLAUDETTE_API_KEY", GATEWAY_KEY);
    let o = run(cmd).await;
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("400") && o.stderr.contains("timeframe"), "{}", o.stderr);
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url", &base]);
    let o = run(cmd).await;
    assert_eq!(o.code, 1, "no key: the gateway refuses");
    assert!(o.stderr.contains("401") && o.stderr.contains("--key"), "{}", o.stderr);
    let mut cmd = claudette(dir.path());
    cmd.args(["backends", "--url", &base, "--key", GATEWAY_KEY]);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.lines().any(|l| l.starts_with("fake ") && l.contains("healthy") && l.contains("closed")),
        "{}",
        o.stdout
    );

    // A slow request in flight when SIGTERM arrives still completes; then the process exits 0.
    fake.push(Reply::openai_text("finished during shutdown").delay(Duration::from_millis(800)));
    let slow = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/v1/chat/completions");
        async move {
            http.post(url)
                .bearer_auth(GATEWAY_KEY)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    });
    // Wait until the upstream has the request, so it is really in flight.
    tokio::time::timeout(LIMIT, async {
        while fake.post_requests() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    sigterm(&child);
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "finished during shutdown");
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("backend fake: openai, model fake-model"), "{stderr}");
    assert!(stderr.contains("shutting down") && stderr.contains("stopped"), "{stderr}");
    assert!(!stderr.contains(BACKEND_CANARY) && !stderr.contains(GATEWAY_KEY), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_closes_connections_whose_head_outlasts_header_read_timeout_ms() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let path = write_config(dir.path(), &fake, "");
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, toml.replace("shutdown_grace_ms = 5000", "header_read_timeout_ms = 300")).unwrap();
    let mut cmd = claudette(dir.path());
    cmd.arg("serve").arg("--config").arg(&path);
    let mut child = cmd.spawn().unwrap();
    let addr = listening_address(&mut child).await;
    let mut loris = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let sent = std::time::Instant::now();
    loris.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n").await.unwrap();
    let mut answer = Vec::new();
    // Well under the 30 s default, so the configured value is the one that acted.
    tokio::time::timeout(Duration::from_secs(10), loris.read_to_end(&mut answer))
        .await
        .expect("the gateway must close the connection once header_read_timeout_ms is over")
        .ok();
    let waited = sent.elapsed();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(waited >= Duration::from_millis(300), "closed after {waited:?}, before the timeout");
    stop(&mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_bad_config_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let path = write_config(dir.path(), &fake, "");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("127.0.0.1:0", "0.0.0.0:0"))
        .unwrap();
    let mut cmd = claudette(dir.path());
    cmd.arg("serve").arg("--config").arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("server.listen: 0.0.0.0:0 is not a loopback address"), "{}", o.stderr);
    assert_eq!(o.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_the_answer_and_reports_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_stream(&["Hel", "lo ", "world"]));
    let path = write_config(dir.path(), &fake, "");
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "say hello", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "Hello world\n");
    assert!(o.stderr.starts_with("[fake · 10 in / 3 out tokens · $0.000016 · 1 attempt]"), "{}", o.stderr);
    let sent = fake.last_json().unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["messages"][0]["content"], "say hello");

    // --json: the whole response with its routing decision.
    fake.set_default(Reply::openai_text("a json answer"));
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--json", "--backend", "fake", "--max-tokens", "7", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["content"], "a json answer");
    assert_eq!(v["backend"], "fake");
    assert_eq!(v["decision"]["attempts"][0]["outcome"], "success");
    assert_eq!(fake.last_json().unwrap()["max_tokens"], 7);

    // Usage errors exit 2 with one line; upstream failures exit 1 with one line.
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--backend", "nope", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 2);
    assert_eq!(o.stderr, "claudette: error: no backend named \"nope\" (configured: fake)\n");
    fake.set_default(Reply::openai_error(400, "invalid_request_error", None, "bad prompt"));
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.starts_with("claudette: error: backend `fake`: ") && o.stderr.contains("bad prompt"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
}

/// `--web-search` gives Claude its web search: the request goes to the Anthropic backend (the
/// cheaper OpenAI one cannot search), each search is noted on stderr as it runs, the cited
/// pages follow the answer on stdout, and the search is counted in the summary line. Without
/// an Anthropic backend it is an error that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_can_search_the_web_and_lists_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    let gpt = FakeServer::start().await;
    let claude = FakeServer::start().await;
    let cite = json!({"type": "web_search_result_location", "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
                      "title": "Claude Shannon", "encrypted_index": "EI", "cited_text": "born April 30, 1916"});
    let blocks = json!([
        {"type": "text", "text": "I'll search."},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "claude shannon born"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
            {"type": "web_search_result", "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
             "title": "Claude Shannon", "encrypted_content": "ENC"}]},
        {"type": "text", "text": "He was born on April 30, 1916.", "citations": [cite.clone(), cite]}
    ]);
    claude.set_default(Reply::anthropic_stream_blocks(&blocks, "end_turn"));
    let claude_backend = format!(
        "\n[[backends]]\nname = \"claude\"\nprovider = \"anthropic\"\nmodel = \"claude-fake\"\nbase_url = \"{}\"\n\
         api_key_env = \"TEST_BACKEND_KEY\"\n",
        claude.url()
    );
    let path = write_config(dir.path(), &gpt, &claude_backend);
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "When was Claude Shannon born?", "--web-search", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "I'll search.He was born on April 30, 1916.\n\nSources:\n\
         [1] Claude Shannon <https://en.wikipedia.org/wiki/Claude_Shannon>\n"
    );
    assert!(o.stderr.contains("[searching the web: claude shannon born]"), "{}", o.stderr);
    assert!(o.stderr.contains("[claude · ") && o.stderr.contains(" · 1 search · "), "{}", o.stderr);
    assert_eq!(gpt.post_requests(), 0);
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["tools"], json!([{"type": "web_search_20250305", "name": "web_search"}]));

    // Only the OpenAI backend: refused, naming the provider it needs.
    let only_gpt = write_config(dir.path(), &gpt, "");
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "news?", "--web-search", "--config"]).arg(&only_gpt);
    let o = run(cmd).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("provider `anthropic`"), "{}", o.stderr);
    assert_eq!(gpt.post_requests(), 0);
}

/// Tokens reach stdout while the upstream stream is still open: the first piece is printed
/// although the rest is held back by a 30 s gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_prints_tokens_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let frames = Reply::openai_stream(&["First", " second"]).body_chunks();
    // Role + "First" in one chunk, the rest 30 s later.
    let first: Vec<u8> = frames[..2].concat();
    let rest: Vec<u8> = frames[2..].concat();
    fake.set_default(Reply::chunks(200, "text/event-stream", vec![first, rest]).gap(Duration::from_secs(30)));
    let path = write_config(dir.path(), &fake, "");
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--config"]).arg(&path);
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 64];
        while !seen.contains("First") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "stdout closed before the first token");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("the first token was not printed while the stream was open");
    assert_eq!(seen, "First", "nothing after the first token can have arrived yet");
    child.kill().await.unwrap();
}

fn batch_lines() -> String {
    [
        r#"{"id": "a", "prompt": "one"}"#,
        r#"{"id": "b", "prompt": "two", "max_tokens": 5}"#,
        r#"{"id": "c", "prompt": "three", "backend": "broken"}"#,
        "",
        r#"{"id": 4, "messages": [{"role": "user", "content": "four"}]}"#,
        r#"{"prompt": "five", "system": "be brief"}"#,
    ]
    .join("\n")
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_keeps_order_records_errors_and_resumes_without_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let good = FakeServer::start().await;
    let broken = FakeServer::start().await;
    // The first request is the slowest, so completions come back out of order.
    good.push(Reply::openai_text("answer").delay(Duration::from_millis(300)));
    good.set_default(Reply::openai_text("answer"));
    broken.set_default(Reply::openai_error(400, "invalid_request_error", None, "this backend refuses"));
    let extra = format!(
        "[[backends]]\nname = \"broken\"\nprovider = \"openai\"\nmodel = \"fake-model\"\nbase_url = \"{}\"\n\
         [router]\nfailover_chain = [\"fake\"]\n",
        broken.v1_url()
    );
    let config = write_config(dir.path(), &good, &extra);
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, batch_lines()).unwrap();
    let batch = || {
        let mut cmd = claudette(dir.path());
        cmd.arg("batch")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .args(["--concurrency", "3", "--config"])
            .arg(&config);
        cmd
    };

    let o = run(batch()).await;
    assert_eq!(o.code, 1, "a failed line makes the batch exit 1: {}", o.stderr);
    assert!(o.stderr.contains("1 of 5 line(s) failed"), "{}", o.stderr);
    let out = read_jsonl(&output);
    let lines: Vec<u64> = out.iter().map(|v| v["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![1, 2, 3, 5, 6], "input order, blank line skipped");
    let ids: Vec<Value> = out.iter().map(|v| v.get("id").cloned().unwrap_or(Value::Null)).collect();
    assert_eq!(ids, vec!["a".into(), "b".into(), "c".into(), 4.into(), Value::Null]);
    let oks: Vec<bool> = out.iter().map(|v| v["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, vec![true, true, false, true, true]);
    assert_eq!(out[0]["response"]["content"], "answer");
    assert_eq!(out[0]["response"]["backend"], "fake");
    assert_eq!(out[2]["error"]["kind"], "invalid_request");
    assert_eq!(out[2]["error"]["backend"], "broken");
    assert_eq!(out[2]["error"]["attempts"], 1);
    assert_eq!(good.post_requests(), 4);
    assert_eq!(broken.post_requests(), 1);
    let sent: Vec<Value> = good.received().iter().filter(|r| r.method == "POST").map(|r| r.json()).collect();
    assert!(sent.iter().any(|b| b["max_tokens"] == 5 && b["messages"][0]["content"] == "two"));
    assert!(
        sent.iter().any(|b| b["messages"][0]["role"] == "system" && b["messages"][1]["content"] == "five")
    );

    // Re-run: only the failed line is sent again.
    broken.set_default(Reply::openai_text("fixed"));
    let o = run(batch()).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("1 answered now, 4 resumed, 0 failed"), "{}", o.stderr);
    assert_eq!(good.post_requests(), 4, "done lines are not repeated");
    assert_eq!(broken.post_requests(), 2);
    let out = read_jsonl(&output);
    assert!(out.iter().all(|v| v["ok"] == true));
    assert_eq!(out[2]["response"]["content"], "fixed");
    assert_eq!(out.iter().map(|v| v["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 5, 6]);

    // A third run has nothing to do; an edited line is sent again.
    let o = run(batch()).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(good.post_requests() + broken.post_requests(), 6);
    std::fs::write(&input, batch_lines().replace("\"two\"", "\"TWO\"")).unwrap();
    let o = run(batch()).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(good.post_requests(), 5);
    assert_eq!(good.last_json().unwrap()["messages"][0]["content"], "TWO");
    assert!(!dir.path().join("out.jsonl.partial").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_records_invalid_input_lines() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let config = write_config(dir.path(), &fake, "");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, "{\"prompt\": \"ok\"}\nnot json\n{\"id\": 3}\n").unwrap();
    let mut cmd = claudette(dir.path());
    cmd.arg("batch").arg(&input).arg("-o").arg(&output).arg("--config").arg(&config);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    let out = read_jsonl(&output);
    assert_eq!(out.len(), 3);
    assert_eq!(out[1]["error"]["kind"], "invalid_input");
    assert!(out[1]["error"]["message"].as_str().unwrap().starts_with("not JSON"));
    assert_eq!(out[2]["id"], 3);
    assert_eq!(out[2]["error"]["message"], "expected \"prompt\" or \"messages\"");
    assert_eq!(fake.post_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_probes_health_from_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeServer::start().await;
    let down_url = claudette_testkit::closed_port_url().await;
    let extra = format!(
        "[[backends]]\nname = \"gone\"\nprovider = \"openai\"\nmodel = \"fake-model\"\nbase_url = \"{down_url}/v1\"\n"
    );
    let config = write_config(dir.path(), &up, &extra);
    let mut cmd = claudette(dir.path());
    cmd.args(["backends", "--config"]).arg(&config);
    let o = run(cmd).await;
    assert_eq!(o.code, 1, "one backend is down: {}", o.stdout);
    assert!(o.stdout.lines().any(|l| l.starts_with("fake ") && l.contains(" ok (")), "{}", o.stdout);
    assert!(o.stdout.lines().any(|l| l.starts_with("gone ") && l.contains("down: ")), "{}", o.stdout);
    assert_eq!(o.stderr, "claudette: error: 1 backend(s) are not healthy\n");
    assert_eq!(up.post_requests(), 0, "health probes never call a completion");
    assert!(up.requests() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_reports_an_unreachable_gateway_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url", &claudette_testkit::closed_port_url().await]);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.starts_with("claudette: error: cannot reach the gateway at http://127.0.0.1:"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1);
}

/// `/v1/costs` as a replica answers it (the shape `CostAnalysis` serialises to).
fn replica_costs(group_by: &str, observed: u64, lines: &[(&str, f64, u64)], projected: Option<f64>) -> Value {
    let breakdown: serde_json::Map<String, Value> = lines
        .iter()
        .map(|(k, cost, n)| {
            (
                (*k).to_owned(),
                json!({"cost": cost, "requests": n, "input_tokens": 10 * n, "output_tokens": 5 * n}),
            )
        })
        .collect();
    json!({
        "timeframe_secs": 86400, "observed_secs": observed, "group_by": group_by,
        "total_cost": lines.iter().map(|l| l.1).sum::<f64>(),
        "total_requests": lines.iter().map(|l| l.2).sum::<u64>(),
        "total_tokens": lines.iter().map(|l| 15 * l.2).sum::<u64>(),
        "breakdown": breakdown, "projected_monthly_cost": projected
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_adds_up_a_fleet_of_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (FakeServer::start().await, FakeServer::start().await);
    a.push_get(Reply::json(200, replica_costs("backend", 86_400, &[("openai", 3.0, 3)], Some(90.0))));
    b.push_get(Reply::json(
        200,
        replica_costs("backend", 3600, &[("openai", 1.0, 1), ("claude", 0.5, 2)], Some(1080.0)),
    ));
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url", &a.url(), "--url", &b.url()]);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let row = |name: &str| o.stdout.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
    assert!(row("openai").contains(" 4 ") && row("openai").contains("$4.00"), "{}", o.stdout);
    assert!(row("claude").contains(" 2 "), "{}", o.stdout);
    assert!(row("TOTAL").contains(" 6 ") && row("TOTAL").contains("$4.50"), "{}", o.stdout);
    // Each replica's projection over its own span, added: not $4.50 spread over the day.
    assert!(o.stdout.contains("$1170.00"), "{}", o.stdout);
    assert!(
        o.stdout.contains(&format!("(the sum over 2 gateways: {}, {})", a.url(), b.url())),
        "{}",
        o.stdout
    );
    assert!(
        a.received()
            .iter()
            .all(|r| r.path == "/v1/costs" && r.query.as_deref() == Some("timeframe=24h&group_by=backend"))
    );

    // --json: the same shape as one gateway's, plus the list of gateways; via CLAUDETTE_URL.
    a.push_get(Reply::json(200, replica_costs("backend", 86_400, &[("openai", 3.0, 3)], Some(90.0))));
    b.push_get(Reply::json(200, replica_costs("backend", 30, &[("claude", 0.5, 2)], None)));
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--json"]).env("CLAUDETTE_URL", format!("{},{}", a.url(), b.url()));
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["total_requests"], 5);
    assert_eq!(v["projected_monthly_cost"], 90.0, "a replica under a minute old projects nothing");
    assert_eq!(v["gateways"], json!([a.url(), b.url()]));

    // Answers that do not add up, and a replica counted twice, are errors naming the replica.
    a.push_get(Reply::json(200, replica_costs("backend", 86_400, &[], None)));
    b.push_get(Reply::json(200, replica_costs("model", 86_400, &[], None)));
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url", &a.url(), "--url", &b.url()]);
    let o = run(cmd).await;
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains(&b.url()) && o.stderr.contains("grouped by Model"), "{}", o.stderr);
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url", &a.url(), "--url", &format!("{}/", a.url())]);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is given twice"), "{}", o.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_simulation_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = claudette(dir.path());
    cmd.arg("demo");
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("SIMULATION — fake providers on 127.0.0.1, no real API calls"));
    assert!(o.stdout.contains("attempts: local:error(overloaded) → budget:ok"), "{}", o.stdout);
    assert!(o.stdout.contains("breaker of `local`: OPEN"), "{}", o.stdout);
    assert!(o.stdout.contains("skipped: local (breaker open)"), "{}", o.stdout);
    assert!(o.stdout.contains("`local` received 0 call(s) while open"), "{}", o.stdout);
    assert!(o.stdout.contains("breaker of `local`: CLOSED"), "{}", o.stdout);
    assert!(o.stdout.contains("→ premium"), "{}", o.stdout);
    assert!(o.stdout.contains("Streams are committed at the first token.  [done]"), "{}", o.stdout);
    assert!(o.stdout.contains("TOTAL"), "{}", o.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_config_and_no_keys_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi"]);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("no backends configured") && o.stderr.contains("OPENAI_API_KEY"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1);
    // A ./claudette.toml in the working directory is picked up.
    std::fs::write(dir.path().join("claudette.toml"), "[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n")
        .unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check"]);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("config OK: claudette.toml"), "{}", o.stdout);

    // One that cannot be read is an error naming it, not a fall-back to discovery.
    std::fs::remove_file(dir.path().join("claudette.toml")).unwrap();
    std::fs::create_dir(dir.path().join("claudette.toml")).unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check"]).env("OPENAI_API_KEY", "sk-discovered-but-not-wanted");
    let o = run(cmd).await;
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("claudette.toml"), "{}", o.stderr);
}

/// A three-line batch (`-j 1`) against a fake that answers two lines and holds the third
/// forever, then answers "after resume": the output path and the command that runs it.
async fn stuck_batch(dir: &Path) -> (FakeServer, PathBuf, impl Fn() -> Command + use<>) {
    let fake = FakeServer::start().await;
    fake.push_n(2, Reply::openai_text("quick"));
    fake.push(Reply::openai_text("never").hang());
    fake.set_default(Reply::openai_text("after resume"));
    let config = write_config(dir, &fake, "");
    let input = dir.join("in.jsonl");
    let output = dir.join("out.jsonl");
    std::fs::write(&input, "{\"prompt\": \"1\"}\n{\"prompt\": \"2\"}\n{\"prompt\": \"3\"}\n").unwrap();
    let (dir, out) = (dir.to_owned(), output.clone());
    let batch = move || {
        let mut cmd = claudette(&dir);
        cmd.arg("batch").arg(&input).arg("-o").arg(&out).args(["-j", "1", "--config"]).arg(&config);
        cmd
    };
    (fake, output, batch)
}

/// Returns once the batch is stuck on its third request, which the fake holds.
async fn fake_holds_the_third_request(fake: &FakeServer) {
    tokio::time::timeout(LIMIT, async {
        while fake.post_requests() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_interrupted_keeps_answers_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, output, batch) = stuck_batch(dir.path()).await;
    let child = batch().spawn().unwrap();
    fake_holds_the_third_request(&fake).await;
    sigterm(&child);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted; answers so far are in"), "{stderr}");
    let kept = read_jsonl(&output);
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|v| v["ok"] == true && v["response"]["content"] == "quick"));

    let o = run(batch()).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(fake.post_requests(), 4, "only the interrupted line is sent again");
    let out = read_jsonl(&output);
    assert_eq!(out.iter().map(|v| v["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(out[2]["response"]["content"], "after resume");
}

/// Builds `examples/custom-backend` as a cdylib the way `cargo xtask plugins` does (same
/// command, so the build cache is shared) and returns the library's path.
fn build_custom_plugin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "rustc",
            "--quiet",
            "-p",
            "claudette-custom-backend",
            "--lib",
            "--crate-type",
            "cdylib",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo rustc");
    assert!(out.status.success(), "building the example plugin failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "claudette_custom_backend")
        .flat_map(|v| v["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.to_string_lossy().ends_with(std::env::consts::DLL_SUFFIX))
        .expect("no cdylib artifact reported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_dirs_load_an_allow_listed_plugin_provider() {
    let built = tokio::task::spawn_blocking(build_custom_plugin).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let file =
        format!("{}claudette_custom_backend{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    std::fs::copy(&built, plugins.join(&file)).unwrap();
    let sha = {
        use sha2::Digest;
        let bytes = std::fs::read(plugins.join(&file)).unwrap();
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let api = FakeServer::start().await;
    api.set_default(Reply::json(
        200,
        serde_json::json!({"content": "from the plugin", "tokensInput": 3, "tokensOutput": 4}),
    ));
    let config = dir.path().join("claudette.toml");
    let toml = format!(
        "[server]\nplugin_dirs = [\"plugins\"]\nplugin_copy_dir = \"run\"\n\
         [[server.plugins]]\nfile = \"{file}\"\nsha256 = \"{sha}\"\n\
         [[backends]]\nname = \"inhouse\"\nprovider = \"custom\"\nbase_url = \"{}\"\napi_key_env = \"TEST_BACKEND_KEY\"\n",
        api.url()
    );
    std::fs::write(&config, &toml).unwrap();

    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check"]);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("(allow-list of 1); providers loaded: custom"), "{}", o.stdout);
    assert!(o.stdout.lines().any(|l| l.starts_with("inhouse ") && l.contains("custom")), "{}", o.stdout);

    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--json"]);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["content"], "from the plugin");
    assert_eq!(v["backend"], "inhouse");
    let sent = api.received().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(sent.path, "/generate");
    // The host attached the key; the plugin never saw it.
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {BACKEND_CANARY}").as_str()));

    // A wrong hash: the file is refused before it is opened, and the backend cannot be built.
    std::fs::write(&config, toml.replace(&sha, &"0".repeat(64))).unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check"]);
    let o = run(cmd).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("backends[0].provider: unknown provider \"custom\""), "{}", o.stderr);
}

/// A pipe whose reader is already gone: every write fails with EPIPE, as behind
/// `claudette … | head -c1` once `head` has exited.
fn closed_pipe() -> Stdio {
    let (writer, reader) = tokio::net::unix::pipe::pipe().unwrap();
    drop(reader);
    Stdio::from(writer.into_blocking_fd().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_exit_quietly_when_stdout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let path = write_config(dir.path(), &fake, "");

    // Streaming: the first token cannot be written, and the rest of the answer is an hour
    // away. The command must stop there (dropping the upstream stream), not wait for it.
    let frames = Reply::openai_stream(&["First", " second"]).body_chunks();
    let first: Vec<u8> = frames[..2].concat();
    let rest: Vec<u8> = frames[2..].concat();
    fake.set_default(
        Reply::chunks(200, "text/event-stream", vec![first, rest]).gap(Duration::from_secs(3600)),
    );
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--config"]).arg(&path).stdout(closed_pipe());
    let o = run_spawned(cmd).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "a closed stdout ends chat quietly");

    fake.set_default(Reply::openai_text("a json answer"));
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--json", "--config"]).arg(&path).stdout(closed_pipe());
    let o = run_spawned(cmd).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "chat --json");

    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check", "--config"]).arg(&path).stdout(closed_pipe());
    let o = run_spawned(cmd).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "config check");

    let mut cmd = claudette(dir.path());
    cmd.arg("demo").stdout(closed_pipe());
    let o = run_spawned(cmd).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "demo");
}

/// A stdout that refuses the answer (a full disk) is a failure, not a silent success.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_fails_when_the_answer_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_stream(&["Hel", "lo"]));
    let path = write_config(dir.path(), &fake, "");
    for json in [false, true] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let mut cmd = claudette(dir.path());
        cmd.args(["chat", "hi", "--config"]).arg(&path).stdout(full);
        if json {
            fake.set_default(Reply::openai_text("Hello"));
            cmd.arg("--json");
        }
        let o = run_spawned(cmd).await;
        assert_eq!(o.code, 1, "--json {json}: {}", o.stderr);
        assert_eq!(
            o.stderr, "claudette: error: cannot write to stdout: No space left on device (os error 28)\n",
            "--json {json}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_puts_the_route_summary_on_its_own_line_after_reasoning() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let mut chunks = Reply::openai_stream(&[]).body_chunks();
    let reasoning = serde_json::json!({
        "id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
        "choices": [{"index": 0, "delta": {"reasoning_content": "thinking"}, "finish_reason": null}]
    });
    chunks.insert(1, format!("data: {reasoning}\n\n").into_bytes());
    fake.set_default(Reply::chunks(200, "text/event-stream", chunks));
    let path = write_config(dir.path(), &fake, "");
    let mut cmd = claudette(dir.path());
    cmd.args(["chat", "hi", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "");
    assert!(o.stderr.starts_with("thinking\n[fake · "), "{}", o.stderr);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_refuses_an_output_path_that_would_overwrite_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let config = write_config(dir.path(), &fake, "");
    let input = dir.path().join("in.jsonl");
    let original = "{\"id\": \"a\", \"prompt\": \"one\"}\n";
    std::fs::write(&input, original).unwrap();
    std::os::unix::fs::symlink(&input, dir.path().join("link.jsonl")).unwrap();
    std::fs::create_dir(dir.path().join("results")).unwrap();
    for (output, why) in [
        ("in.jsonl", "the input itself"),
        ("./in.jsonl", "the input by another spelling"),
        ("link.jsonl", "a symlink to the input"),
        ("in", "its .partial is the input"),
        ("results", "a directory"),
    ] {
        let input = if why.contains(".partial") {
            let p = dir.path().join("in.partial");
            std::fs::write(&p, original).unwrap();
            p
        } else {
            input.clone()
        };
        let mut cmd = claudette(dir.path());
        cmd.arg("batch").arg(&input).args(["-o", output, "--config"]).arg(&config);
        let o = run(cmd).await;
        assert_eq!(o.code, 2, "{why}: {}", o.stderr);
        assert!(o.stderr.starts_with(&format!("claudette: error: -o {output} ")), "{why}: {}", o.stderr);
        assert_eq!(std::fs::read_to_string(&input).unwrap(), original, "{why}: the input is untouched");
        assert_eq!(fake.post_requests(), 0, "{why}: nothing is sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_records_a_non_utf8_line_and_reads_bom_and_crlf_input() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_text("answer"));
    let config = write_config(dir.path(), &fake, "");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let mut bytes = b"\xEF\xBB\xBF{\"id\": \"a\", \"prompt\": \"one\"}\r\n".to_vec();
    bytes.extend_from_slice(b"{\"id\": \"b\", \"prompt\": \"caf\xE9\"}\r\n\r\n");
    // The last line has no newline.
    bytes.extend_from_slice(b"{\"id\": \"d\", \"prompt\": \"four\"}");
    std::fs::write(&input, &bytes).unwrap();
    let batch = || {
        let mut cmd = claudette(dir.path());
        cmd.arg("batch").arg(&input).arg("-o").arg(&output).arg("--config").arg(&config);
        cmd
    };
    let o = run(batch()).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("1 of 3 line(s) failed"), "{}", o.stderr);
    let out = read_jsonl(&output);
    assert_eq!(out.iter().map(|v| v["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(out.iter().map(|v| v["ok"].as_bool().unwrap()).collect::<Vec<_>>(), vec![true, false, true]);
    assert_eq!(out[0]["id"], "a", "the byte order mark is not part of the first line");
    assert_eq!(out[1]["error"]["kind"], "invalid_input");
    assert_eq!(out[1]["error"]["message"], "not UTF-8: invalid byte at column 27");
    assert_eq!(out[2]["id"], "d");
    // Lines run concurrently, so in any order.
    let mut prompts: Vec<String> = fake
        .received()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.json()["messages"][0]["content"].as_str().unwrap().to_owned())
        .collect();
    prompts.sort();
    assert_eq!(prompts, ["four", "one"]);

    // A re-run recognises the CRLF lines it answered.
    let o = run(batch()).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("0 answered now, 2 resumed, 1 failed"), "{}", o.stderr);
    assert_eq!(fake.post_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_resumes_from_the_partial_output_of_a_killed_run() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, output, batch) = stuck_batch(dir.path()).await;
    let partial = dir.path().join("out.jsonl.partial");
    let mut child = batch().spawn().unwrap();
    fake_holds_the_third_request(&fake).await;
    // No chance to clean up: SIGKILL, as an OOM kill or a power loss would do.
    child.kill().await.unwrap();
    assert!(!output.exists());
    assert_eq!(std::fs::read_to_string(&partial).unwrap().lines().count(), 2);
    // A crash in the middle of a write: the last line cut inside a multi-byte character.
    let mut f = std::fs::OpenOptions::new().append(true).open(&partial).unwrap();
    std::io::Write::write_all(&mut f, b"{\"line\":3,\"ok\":true,\"response\":{\"content\":\"caf\xC3")
        .unwrap();
    drop(f);

    let o = run(batch()).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("1 answered now, 2 resumed, 0 failed"), "{}", o.stderr);
    assert_eq!(fake.post_requests(), 4, "only the line that had no answer is sent again");
    let out = read_jsonl(&output);
    assert_eq!(out.iter().map(|v| v["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    let answers: Vec<&str> = out.iter().map(|v| v["response"]["content"].as_str().unwrap()).collect();
    assert_eq!(answers, ["quick", "quick", "after resume"]);
    assert!(!partial.exists());
}

/// A daemon started with stderr closed (`claudette serve 2>&-`) serves and stops like any other:
/// its start-up lines and shutdown notes must not kill it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_with_stderr_closed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_text("served anyway"));
    let path = write_config(dir.path(), &fake, "");
    let mut cmd = claudette(dir.path());
    cmd.arg("serve").arg("--config").arg(&path).stderr(closed_pipe());
    let mut child = cmd.spawn().unwrap();
    let addr = listening_address(&mut child).await;
    let r = say_hi(&format!("http://{addr}"), None).await;
    assert_eq!(r.status(), 200);
    sigterm(&child);
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "a closed stderr killed serve");
}

const URL_SECRET: &str = "url-canary-3b7e1f9a";

/// A backend's base_url can carry a key (`?api-key=` for Azure-style gateways, `?key=`, a
/// password): `config check` shows the URL with every such value as `***`, and an invalid
/// one quoted in an error is hidden the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_hides_secrets_in_base_urls() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let path = write_config(dir.path(), &fake, "");
    let with_key = format!("{}?api-version=2024-06-01&api-key={URL_SECRET}", fake.v1_url());
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace(&fake.v1_url(), &with_key))
        .unwrap();
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check", "--config"]).arg(&path);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let shown = format!("{}?api-version=***&api-key=***", fake.v1_url());
    assert!(o.stdout.contains(&shown), "{}", o.stdout);
    assert!(!o.stdout.contains(URL_SECRET) && !o.stderr.contains(URL_SECRET), "{}{}", o.stdout, o.stderr);

    // Set by an override, and not a valid URL (the port is out of range): the error quotes it.
    let mut cmd = claudette(dir.path());
    cmd.args(["config", "check", "--config"]).arg(&path).env(
        "CLAUDETTE__BACKENDS__FAKE__BASE_URL",
        format!("https://user:{URL_SECRET}@proxy.example:99999/v1"),
    );
    let o = run(cmd).await;
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("https://user:***@proxy.example:99999/v1"), "{}", o.stderr);
    assert!(!o.stdout.contains(URL_SECRET) && !o.stderr.contains(URL_SECRET), "{}{}", o.stdout, o.stderr);
    assert_eq!(fake.requests(), 0, "config check makes no calls");
}

/// `serve --listen` wins over both variables, and `CLAUDETTE__SERVER__LISTEN` over
/// `CLAUDETTE_LISTEN`: each loser names an address that is taken, so serving there would fail.
/// The start-up lines list only the variables that took effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listens_where_the_flag_then_the_full_variable_says() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    let taken = [
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let [file_addr, env_addr] = taken.each_ref().map(|l| l.local_addr().unwrap().to_string());
    let path = write_config(dir.path(), &fake, "");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("127.0.0.1:0", &file_addr))
        .unwrap();

    let serve = |flag: Option<&str>, full: &str| {
        let mut cmd = claudette(dir.path());
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .env("CLAUDETTE_LISTEN", &env_addr)
            .env("CLAUDETTE__SERVER__LISTEN", full);
        if let Some(addr) = flag {
            cmd.args(["--listen", addr]);
        }
        cmd
    };
    for (flag, full, listed) in [
        (Some("127.0.0.1:0"), env_addr.as_str(), None),
        (None, "127.0.0.1:0", Some("overridden by environment: CLAUDETTE__SERVER__LISTEN\n")),
    ] {
        let mut child = serve(flag, full).spawn().unwrap();
        let addr = listening_address(&mut child).await;
        assert!(addr.starts_with("127.0.0.1:") && addr != file_addr && addr != env_addr, "{addr}");
        sigterm(&child);
        let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
        let o = checked(out);
        assert_eq!(o.code, 0, "{}", o.stderr);
        match listed {
            Some(line) => assert!(o.stderr.contains(line), "{}", o.stderr),
            None => assert!(!o.stderr.contains("overridden by environment"), "{}", o.stderr),
        }
    }

    // The flag's address is checked like the file's, and the error names the flag.
    let o = run(serve(Some("0.0.0.0:0"), &env_addr)).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("server.listen: 0.0.0.0:0 is not a loopback address")
            && o.stderr.contains("(set by --listen)"),
        "{}",
        o.stderr
    );
    drop(taken);
}

/// `serve` with a `[ledger]` books spend to its file and reads it back after a restart:
/// `/v1/costs` (and `claudette costs`) of the second process show the first one's requests,
/// which its own memory never saw. The relative path follows the config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_spend_in_its_ledger_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_text("booked"));
    let path = write_config(dir.path(), &fake, "\n[ledger]\npath = \"spend/ledger.db\"\n");
    let serve = || {
        let mut cmd = claudette(dir.path());
        cmd.arg("serve").arg("--config").arg(&path);
        cmd.spawn().unwrap()
    };

    let mut first = serve();
    let addr = listening_address(&mut first).await;
    for _ in 0..2 {
        let r = say_hi(&format!("http://{addr}"), None).await;
        assert_eq!(r.status(), 200);
    }
    stop(&mut first).await;
    assert!(dir.path().join("spend/ledger.db").is_file(), "the ledger is not beside the config");

    let mut second = serve();
    let addr = listening_address(&mut second).await;
    let costs = client().get(format!("http://{addr}/v1/costs?timeframe=24h")).send().await.unwrap();
    let costs: Value = serde_json::from_str(&costs.text().await.unwrap()).unwrap();
    assert_eq!(costs["total_requests"], 2, "{costs}");
    assert!(costs["total_cost"].as_f64().unwrap() > 0.0, "{costs}");
    let mut cmd = claudette(dir.path());
    cmd.args(["costs", "--url"]).arg(format!("http://{addr}"));
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("fake"), "{}", o.stdout);
    stop(&mut second).await;
}

/// `serve` with `[cache] enabled = true`: the same request twice reaches the provider once,
/// and the second answer says it came from the cache, free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_a_repeated_request_from_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_text("remembered"));
    let path = write_config(dir.path(), &fake, "\n[cache]\nenabled = true\nttl_secs = 600\nmax_mib = 4\n");
    let mut cmd = claudette(dir.path());
    cmd.arg("serve").arg("--config").arg(&path);
    let mut child = cmd.spawn().unwrap();
    let addr = listening_address(&mut child).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = say_hi(&format!("http://{addr}"), None).await;
        assert_eq!(r.status(), 200);
        let header = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        seen.push((header("x-claudette-cache"), header("x-claudette-cost")));
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "remembered");
    }
    assert_eq!(fake.post_requests(), 1, "the second request reached the provider");
    assert_eq!(seen[0].0.as_deref(), Some("miss"));
    assert_eq!((seen[1].0.as_deref(), seen[1].1.as_deref()), (Some("hit"), Some("0")));
    stop(&mut child).await;
}

/// `claudette costs --group-by key` against a `serve` with two keys and a ledger: each key's
/// requests on its own line, under a header that says these are gateway keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_groups_a_serve_s_spend_by_gateway_key() {
    const SECOND_KEY: &str = "gw-second-cli-key-7f6e5d4c3b2a19";
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start().await;
    fake.set_default(Reply::openai_text("booked"));
    let path = write_config(
        dir.path(),
        &fake,
        "[[server.keys]]\nname = \"tests\"\nkey_env = \"TEST_GATEWAY_KEY\"\n\
         [[server.keys]]\nname = \"team-b\"\nkey_env = \"TEST_GATEWAY_KEY_B\"\n\
         [ledger]\npath = \"ledger.db\"\n",
    );
    let mut cmd = claudette(dir.path());
    cmd.env("TEST_GATEWAY_KEY_B", SECOND_KEY).arg("serve").arg("--config").arg(&path);
    let mut child = cmd.spawn().unwrap();
    let base = format!("http://{}", listening_address(&mut child).await);
    for key in [GATEWAY_KEY, GATEWAY_KEY, SECOND_KEY] {
        let r = say_hi(&base, Some(key)).await;
        assert_eq!(r.status(), 200);
    }
    // The ledger commits off the request path: wait for the third record.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = client().get(format!("{base}/v1/costs")).bearer_auth(GATEWAY_KEY).send().await.unwrap();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        if v["total_requests"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the ledger never showed 3 requests: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut cmd = claudette(dir.path());
    cmd.env("CLAUDETTE_API_KEY", GATEWAY_KEY).args(["costs", "--group-by", "key", "--url", &base]);
    let o = run(cmd).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("GATEWAY KEY "), "{}", o.stdout);
    let requests = |name: &str| {
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    assert_eq!(requests("tests").as_deref(), Some("2"), "{}", o.stdout);
    assert_eq!(requests("team-b").as_deref(), Some("1"), "{}", o.stdout);
    assert_eq!(requests("TOTAL").as_deref(), Some("3"), "{}", o.stdout);
    assert!(!o.stdout.contains(SECOND_KEY), "{}", o.stdout);
    stop(&mut child).await;
}
