//! Gateway overhead benchmark: `cargo xtask bench gateway`
//! (= `cargo run --release -p claudette-gateway --example bench_gateway`).
//!
//! Three processes on 127.0.0.1, so each one's CPU and memory can be read on its own from
//! `/proc/<pid>`:
//!
//! - an **upstream**: a minimal axum server answering `POST /v1/chat/completions` with a
//!   pre-built OpenAI body (JSON, or a 12-frame SSE stream). Not the test kit's recording
//!   server, which stores every request body.
//! - the **gateway**: a [`Gateway`] in front of a one-backend router pointing at the upstream,
//!   with its defaults (metrics recorder installed, no logging subscriber).
//! - a **floor proxy**: forwards bytes between a client connection and its own upstream
//!   connection, framed by Content-Length, with no parsing, JSON, routing or pooling. It is
//!   the ceiling for any proxy making the same upstream hop on this machine, so the gateway's
//!   ratio can be read against what is possible, not only against direct.
//! - this process, the **load generator**: raw HTTP/1.1 over keep-alive connections (no client
//!   library in the measured path), sending the same requests either directly to the upstream
//!   or through the gateway, in the same run. When `wrk` is installed it drives the saturation
//!   phase instead (`BENCH_LOAD=builtin` keeps the built-in one).
//!
//! Measured: saturated throughput (closed loop, fixed number of connections), latency at a
//! fixed 400 requests/s (added latency = gateway − direct, p50 and p99), the gateway's CPU time
//! per request (utime + stime deltas of its process) and its resident memory (VmRSS) under load.
//! Nothing here is asserted: it prints figures. Loopback only, bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Buf, BytesMut};
use claudette_core::{BackendRouter, BackendSettings, RouterOptions};
use claudette_gateway::{Gateway, GatewayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The allocator the `claudette` binary uses, so the figures are the shipped gateway's.
#[global_allocator]
static GLOBAL: claudette_alloc::Allocator = claudette_alloc::Allocator;

const SATURATION_CONNS: usize = 16;
const SATURATION_TIME: Duration = Duration::from_secs(4);
const FIXED_RATE: f64 = 400.0;
const FIXED_TIME: Duration = Duration::from_secs(5);
const FIXED_CONNS: usize = 8;
/// Interleaved direct/gateway rounds per measurement; medians over them are reported.
const ROUNDS: usize = 5;

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("upstream") => child_runtime(None, run_upstream()),
        Some("gateway") => {
            let upstream = std::env::args().nth(2).expect("upstream url");
            let threads = std::env::var("BENCH_GATEWAY_THREADS").ok().and_then(|v| v.parse().ok());
            child_runtime(threads, run_gateway(Some(upstream)));
        }
        Some("floor-proxy") => {
            let port: u16 = std::env::args().nth(2).and_then(|p| p.parse().ok()).expect("upstream port");
            let threads = std::env::var("BENCH_GATEWAY_THREADS").ok().and_then(|v| v.parse().ok());
            child_runtime(threads, run_floor_proxy(([127, 0, 0, 1], port).into()));
        }
        Some("stub-gateway") => {
            let threads = std::env::var("BENCH_GATEWAY_THREADS").ok().and_then(|v| v.parse().ok());
            child_runtime(threads, run_gateway(None));
        }
        // Diagnostics: `load PORT json|sse` saturates one server (e.g. under `perf record`).
        Some("load") => {
            let port: u16 = std::env::args().nth(2).and_then(|p| p.parse().ok()).expect("port");
            let stream = std::env::args().nth(3).as_deref() == Some("sse");
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
            let s = rt.block_on(saturate(([127, 0, 0, 1], port).into(), request_bytes(stream), None, 100.0));
            println!("{:.0} req/s, {} errors", s.rps, s.errors);
        }
        // Diagnostics: `rate PORT json|sse` measures latency at the fixed rate against one server.
        Some("rate") => {
            let port: u16 = std::env::args().nth(2).and_then(|p| p.parse().ok()).expect("port");
            let stream = std::env::args().nth(3).as_deref() == Some("sse");
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
            let (lat, errors) = rt.block_on(fixed_rate(([127, 0, 0, 1], port).into(), request_bytes(stream)));
            println!(
                "p50 {:.0}µs p90 {:.0}µs p99 {:.0}µs, {errors} errors",
                pct(&lat, 0.5),
                pct(&lat, 0.9),
                pct(&lat, 0.99)
            );
        }
        // `pgo-train GATEWAY_BIN`: the training run of a profile-guided build (`cargo xtask
        // pgo`): an instrumented gateway in front of this binary's upstream, under the same
        // JSON and SSE load the benchmark applies; it writes its profile when it exits.
        Some("pgo-train") => {
            let bin = std::env::args().nth(2).map(PathBuf::from).expect("instrumented gateway binary");
            pgo_train(&bin);
        }
        // `pgo-train-serve CLAUDETTE_BIN`: the same training for the `claudette` binary, served
        // from a configuration naming this binary's upstream (`cargo xtask pgo`'s BOLT pass
        // profiles each binary on its own).
        Some("pgo-train-serve") => {
            let bin = std::env::args().nth(2).map(PathBuf::from).expect("instrumented claudette binary");
            pgo_train_serve(&bin);
        }
        _ => orchestrate(),
    }
}

// ------------------------------------------------------------------------------------------
// Children

/// Children exit when the orchestrator's end of their stdin closes, so nothing outlives it.
/// `threads`: tokio worker threads (default: one per core; 0 = a current-thread runtime).
fn child_runtime(threads: Option<usize>, fut: impl std::future::Future<Output = ()>) {
    std::thread::spawn(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        std::process::exit(0);
    });
    let mut builder = match threads {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().expect("runtime").block_on(fut);
}

/// Bodies as OpenAI sends them, members in its order (`json!` would sort the keys, which
/// no OpenAI-compatible server does and which changes what a reader sees first).
fn upstream_bodies() -> (Bytes, Bytes) {
    const HEAD: &str = r#""id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_bench""#;
    let json = concat!(
        r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"fake-model","#,
        r#""choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"#,
        r#""logprobs":null,"finish_reason":"stop"}],"#,
        r#""usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18,"#,
        r#""prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"#,
        r#""system_fingerprint":"fp_bench"}"#
    )
    .to_owned();
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{{HEAD},\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        )
    };
    let mut sse = chunk(r#"{"role":"assistant","content":""}"#, "null");
    for piece in ["Hello", "!", " How", " can", " I", " help", " you", " today?"] {
        sse.push_str(&chunk(&format!(r#"{{"content":"{piece}"}}"#), "null"));
    }
    sse.push_str(&chunk("{}", r#""stop""#));
    sse.push_str(&format!(
        "data: {{{HEAD},\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":8,\"total_tokens\":17}}}}\n\n"
    ));
    sse.push_str("data: [DONE]\n\n");
    (Bytes::from(json), Bytes::from(sse))
}

async fn run_upstream() {
    let (json, sse) = upstream_bodies();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: Bytes| {
            let (json, sse) = (json.clone(), sse.clone());
            async move {
                let stream = body.windows(13).any(|w| w == b"\"stream\":true");
                let (body, ct) = if stream { (sse, "text/event-stream") } else { (json, "application/json") };
                let mut resp: Response = body.into_response();
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                resp
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    println!("PORT {}", listener.local_addr().expect("addr").port());
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.expect("upstream");
}

/// A gateway in front of the upstream over HTTP (the real path), or, with `None`, in front of
/// an in-process stub backend: the gateway's own cost with no upstream I/O at all.
async fn run_gateway(upstream: Option<String>) {
    let router = BackendRouter::new(RouterOptions::default());
    let backend: claudette_core::SharedBackend = match upstream {
        Some(url) => {
            claudette_openai::backend(&BackendSettings::new("upstream").base_url(url).model("fake-model"))
                .expect("backend")
                .shared()
        }
        None => Arc::new(Stub::new()),
    };
    router.register_backend(backend).expect("register");
    // Serving threads as the `claudette` binary runs them: one per core
    // (`BENCH_GATEWAY_WORKERS=0`: on this child's runtime instead).
    let workers = std::env::var("BENCH_GATEWAY_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let options = GatewayOptions { workers, ..GatewayOptions::default() };
    let gateway = Gateway::new(Arc::new(router), options).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
    println!("PORT {}", listener.local_addr().expect("addr").port());
    gateway.serve(listener, std::future::pending()).await.expect("gateway");
}

/// The cheapest possible proxy: each client connection gets its own upstream connection, and
/// every request and answer is forwarded byte for byte, framed by Content-Length and nothing
/// else (no header parsing, no JSON, no routing, no pool). Not a gateway: a floor. Whatever it
/// reaches is the most any proxy that makes the same upstream hop can reach on this machine,
/// because the hop's kernel work (two more loopback sends and reads per request) is the same.
async fn run_floor_proxy(upstream: SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind floor proxy");
    println!("PORT {}", listener.local_addr().expect("addr").port());
    loop {
        let Ok((mut client, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Ok(mut up) = TcpStream::connect(upstream).await else { return };
            let _ = up.set_nodelay(true);
            let (mut from_client, mut from_up) =
                (BytesMut::with_capacity(8192), BytesMut::with_capacity(16384));
            loop {
                let Some(n) = read_message(&mut client, &mut from_client).await else { return };
                if up.write_all(&from_client[..n]).await.is_err() {
                    return;
                }
                from_client.advance(n);
                let Some(n) = read_message(&mut up, &mut from_up).await else { return };
                if client.write_all(&from_up[..n]).await.is_err() {
                    return;
                }
                from_up.advance(n);
            }
        });
    }
}

/// Reads until `buf` holds one whole HTTP/1.1 message framed by Content-Length (or without a
/// body); returns its length.
async fn read_message(sock: &mut TcpStream, buf: &mut BytesMut) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..i]).ok()?;
            let len = head
                .split("\r\n")
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let total = i + 4 + len;
            while buf.len() < total {
                buf.reserve(total - buf.len());
                if !matches!(sock.read_buf(buf).await, Ok(n) if n > 0) {
                    return None;
                }
            }
            return Some(total);
        }
        buf.reserve(8192);
        if !matches!(sock.read_buf(buf).await, Ok(n) if n > 0) {
            return None;
        }
    }
}

/// A backend that answers at once from memory: what the upstream sends, already decoded.
struct Stub {
    info: claudette_core::BackendInfo,
}

impl Stub {
    fn new() -> Stub {
        Stub {
            info: claudette_core::BackendInfo {
                name: "stub".into(),
                provider: "stub".into(),
                backend_type: claudette_core::BackendType::SelfHosted,
                model: "fake-model".into(),
                priority: 0,
                pricing: claudette_core::Pricing::new(0.15, 0.6),
                quality: 0.5,
                supports_streaming: true,
                supports_tools: true,
                supports_images: false,
                context_window: None,
                region: None,
                tags: Vec::new(),
                enabled: true,
            },
        }
    }
}

#[async_trait::async_trait]
impl claudette_core::Backend for Stub {
    fn info(&self) -> &claudette_core::BackendInfo {
        &self.info
    }

    async fn send(
        &self,
        _request: &claudette_core::ChatRequest,
    ) -> Result<claudette_core::ChatResponse, claudette_core::BackendError> {
        let mut r = claudette_core::ChatResponse::empty("stub", "fake-model");
        r.content = "Hello! How can I help you today?".into();
        r.finish_reason = Some(claudette_core::FinishReason::Stop);
        r.usage = claudette_core::Usage::reported(9, 9);
        r.cost = self.info.pricing.cost(&r.usage);
        r.id = Some("chatcmpl-bench".into());
        Ok(r)
    }

    async fn send_stream(
        &self,
        _request: &claudette_core::ChatRequest,
    ) -> Result<claudette_core::EventStream, claudette_core::BackendError> {
        use claudette_core::StreamEvent;
        let mut events: Vec<StreamEvent> = ["Hello", "!", " How", " can", " I", " help", " you", " today?"]
            .into_iter()
            .map(StreamEvent::text)
            .collect();
        let usage = claudette_core::Usage::reported(9, 8);
        events.push(StreamEvent::Done {
            end: claudette_core::StreamEnd {
                finish_reason: Some(claudette_core::FinishReason::Stop),
                usage,
                cost: self.info.pricing.cost(&usage),
            },
        });
        Ok(Box::pin(futures::stream::iter(events)))
    }

    async fn health_check(&self) -> Result<(), claudette_core::BackendError> {
        Ok(())
    }

    async fn available_models(&self) -> Result<Vec<String>, claudette_core::BackendError> {
        Ok(vec!["fake-model".into()])
    }
}

fn spawn_child(args: &[&str]) -> (Child, u16) {
    spawn_from(&std::env::current_exe().expect("current exe"), args)
}

/// The gateway under test: this binary, or `BENCH_GATEWAY_BIN` (the profile-optimised build
/// of this same example that `cargo xtask bench gateway` makes, see `xtask/src/pgo.rs`).
fn gateway_exe() -> Option<PathBuf> {
    std::env::var_os("BENCH_GATEWAY_BIN").map(PathBuf::from)
}

fn spawn_from(exe: &Path, args: &[&str]) -> (Child, u16) {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read port");
    let port =
        line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("child printed its port");
    (child, port)
}

// ------------------------------------------------------------------------------------------
// /proc readings

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (utime + stime) / ticks
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Load generator: raw HTTP/1.1, keep-alive.

fn request_bytes(stream: bool) -> Arc<Vec<u8>> {
    let body = if stream {
        r#"{"model":"auto","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}"#
    } else {
        r#"{"model":"auto","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#
    };
    raw_post("/v1/chat/completions", body)
}

/// The same request in Anthropic's Messages format (PGO training only: the gateway
/// translates it for the OpenAI upstream).
fn anthropic_request_bytes(stream: bool) -> Arc<Vec<u8>> {
    let body = if stream {
        r#"{"model":"auto","max_tokens":16,"messages":[{"role":"user","content":"Say hello"}],"stream":true}"#
    } else {
        r#"{"model":"auto","max_tokens":16,"messages":[{"role":"user","content":"Say hello"}]}"#
    };
    raw_post("/v1/messages", body)
}

fn raw_post(path: &str, body: &str) -> Arc<Vec<u8>> {
    Arc::new(
        format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

struct Conn {
    sock: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let sock = TcpStream::connect(addr).await.expect("connect");
        sock.set_nodelay(true).expect("nodelay");
        Conn { sock, buf: BytesMut::with_capacity(16 * 1024) }
    }

    async fn fill(&mut self) -> bool {
        self.buf.reserve(8 * 1024);
        matches!(self.sock.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Sends one request and reads the whole response. Returns the status and body length.
    async fn call(&mut self, req: &[u8]) -> Option<(u16, usize)> {
        self.sock.write_all(req).await.ok()?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).ok()?.to_ascii_lowercase();
        let status: u16 = head.get(9..12)?.parse().ok()?;
        let length =
            head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        self.buf.advance(head_end);
        let mut body = 0usize;
        if let Some(len) = length {
            while self.buf.len() < len {
                if !self.fill().await {
                    return None;
                }
            }
            self.buf.advance(len);
            body = len;
        } else if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if !self.fill().await {
                        return None;
                    }
                };
                let size_text = std::str::from_utf8(&self.buf[..line_end]).ok()?;
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    if !self.fill().await {
                        return None;
                    }
                }
                self.buf.advance(line_end + 2 + size + 2);
                body += size;
                if size == 0 {
                    break;
                }
            }
        }
        Some((status, body))
    }
}

struct Saturation {
    rps: f64,
    errors: u64,
    cpu_per_req_us: Option<f64>,
    rss_max_kib: Option<u64>,
}

/// The saturating load generator: `wrk` when it is on the PATH (issue 5: an external one
/// when installed), else the built-in closed loop; `BENCH_LOAD=builtin` forces the built-in
/// one (the figures of earlier runs were taken with it). The fixed-rate phase is always the
/// built-in one: `wrk` has no fixed-rate mode.
fn wrk() -> Option<std::path::PathBuf> {
    if std::env::var("BENCH_LOAD").is_ok_and(|v| v == "builtin") {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("wrk")).find(|p| p.is_file())
}

/// Closed loop: `conns` connections each send the next request as soon as the last one
/// completes, for `time`. Samples the watched process's CPU and RSS meanwhile.
async fn saturate(addr: SocketAddr, req: Arc<Vec<u8>>, watch: Option<u32>, ticks: f64) -> Saturation {
    // Warm up: connections, pools, caches.
    let mut warm = Conn::open(addr).await;
    for _ in 0..200 {
        warm.call(&req).await;
    }
    if let Some(wrk) = wrk() {
        return saturate_wrk(&wrk, addr, &req, watch, ticks).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = watch.map(|p| cpu_seconds(p, ticks));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SATURATION_CONNS {
        let (req, stop, done, errors) = (req.clone(), stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            while !stop.load(Ordering::Relaxed) {
                match c.call(&req).await {
                    Some((200, _)) => done.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        c = Conn::open(addr).await;
                        0
                    }
                };
            }
        }));
    }
    let mut rss_max = 0;
    while started.elapsed() < SATURATION_TIME {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(p) = watch {
            rss_max = rss_max.max(rss_kib(p));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let cpu = match (watch, cpu0) {
        (Some(p), Some(c0)) if n > 0 => Some((cpu_seconds(p, ticks) - c0) / n as f64 * 1e6),
        _ => None,
    };
    Saturation {
        rps: n as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
        cpu_per_req_us: cpu,
        rss_max_kib: watch.map(|_| rss_max),
    }
}

/// [`saturate`] with `wrk` (one thread, the same connections and time) sending `req`'s body.
async fn saturate_wrk(
    wrk: &std::path::Path,
    addr: SocketAddr,
    req: &[u8],
    watch: Option<u32>,
    ticks: f64,
) -> Saturation {
    let text = std::str::from_utf8(req).expect("request is text");
    let (_, body) = text.split_once("\r\n\r\n").expect("request has a body");
    let script = std::env::temp_dir().join(format!("claudette-bench-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [[{body}]]\nwrk.headers[\"content-type\"] = \"application/json\"\n"
        ),
    )
    .expect("write the wrk script");
    let cpu0 = watch.map(|p| cpu_seconds(p, ticks));
    let mut child = tokio::process::Command::new(wrk)
        .args(["-t1", &format!("-c{SATURATION_CONNS}"), &format!("-d{}s", SATURATION_TIME.as_secs()), "-s"])
        .arg(&script)
        .arg(format!("http://{addr}/v1/chat/completions"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run wrk");
    let mut rss_max = 0;
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("wrk stdout");
    let read = tokio::spawn(async move { stdout.read_to_string(&mut out).await.map(|_| out) });
    loop {
        tokio::select! {
            status = child.wait() => { status.expect("wrk ran"); break; }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(p) = watch {
                    rss_max = rss_max.max(rss_kib(p));
                }
            }
        }
    }
    let out = read.await.expect("wrk output task").expect("wrk output");
    let _ = std::fs::remove_file(&script);
    // `  69966 requests in 4.00s, 41.01MB read` … `Requests/sec:  17491.69`
    let field =
        |prefix: &str| out.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()));
    let rps: f64 = field("Requests/sec:").and_then(|v| v.parse().ok()).expect("wrk printed Requests/sec");
    let n: f64 = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.parse().ok()))
        .expect("wrk printed its request count");
    let errors = field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let cpu = match (watch, cpu0) {
        (Some(p), Some(c0)) if n > 0.0 => Some((cpu_seconds(p, ticks) - c0) / n * 1e6),
        _ => None,
    };
    Saturation { rps, errors, cpu_per_req_us: cpu, rss_max_kib: watch.map(|_| rss_max) }
}

/// Open loop at a fixed rate over a few connections; latency of each request from send to
/// the end of its response, in microseconds, sorted.
async fn fixed_rate(addr: SocketAddr, req: Arc<Vec<u8>>) -> (Vec<f64>, u64) {
    let mut warm = Conn::open(addr).await;
    for _ in 0..200 {
        warm.call(&req).await;
    }
    let interval = Duration::from_secs_f64(1.0 / FIXED_RATE);
    let total = (FIXED_RATE * FIXED_TIME.as_secs_f64()) as usize;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for k in 0..FIXED_CONNS {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = k;
            while i < total {
                tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap_or(u32::MAX)).await;
                let t0 = Instant::now();
                match c.call(&req).await {
                    Some((200, _)) => lat.push(t0.elapsed().as_secs_f64() * 1e6),
                    _ => {
                        errors += 1;
                        c = Conn::open(addr).await;
                    }
                }
                i += FIXED_CONNS;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    all.sort_by(f64::total_cmp);
    (all, errors)
}

/// The fixed-rate figures of a row: (direct, gateway) p50 of the round with the median added
/// p50, the same for p99, and (direct, gateway) errors over all rounds.
struct Latency {
    p50: (f64, f64),
    p99: (f64, f64),
    errors: (u64, u64),
}

/// Smallest and largest.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Rows of (label, saturation, the median round's direct req/s, added p50 in µs).
fn print_against_direct(rows: &[(&str, Saturation, f64, f64)]) {
    for (label, s, direct, added_p50) in rows {
        println!(
            "{:<6} {:>14.0} req/s = {:.1}% of direct   CPU/req {:.1}µs   added p50 at {FIXED_RATE} req/s {:.0}µs",
            label,
            s.rps,
            s.rps / direct * 100.0,
            s.cpu_per_req_us.unwrap_or(f64::NAN),
            added_p50
        );
    }
}

fn pgo_train(bin: &Path) {
    let (mut upstream, up_port) = spawn_child(&["upstream"]);
    let (mut gateway, gw_port) = spawn_from(bin, &["gateway", &format!("http://127.0.0.1:{up_port}/v1")]);
    training_load(([127, 0, 0, 1], gw_port).into());
    // End of stdin: the gateway exits through `exit`, which writes the profile.
    drop(gateway.stdin.take());
    let status = gateway.wait().expect("gateway exit");
    assert!(status.success(), "instrumented gateway ended with {status}");
    let _ = upstream.kill();
    let _ = upstream.wait();
}

fn pgo_train_serve(bin: &Path) {
    let (mut upstream, up_port) = spawn_child(&["upstream"]);
    let dir = std::env::temp_dir().join(format!("claudette-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("training directory");
    let config = dir.join("claudette.toml");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[backends]]\nname = \"upstream\"\nprovider = \"openai\"\n\
         model = \"fake-model\"\nbase_url = \"http://127.0.0.1:{up_port}/v1\"\n"
    );
    std::fs::write(&config, toml).expect("training configuration");
    let mut serve = Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn claudette serve");
    let mut reader = BufReader::new(serve.stdout.take().expect("stdout"));
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("read serve's stdout") > 0,
            "serve exited before listening"
        );
        if let Some(addr) = line.trim().strip_prefix("listening on http://") {
            break addr.parse().expect("serve printed its address");
        }
    };
    training_load(addr);
    // SIGTERM: a graceful shutdown returns from `main`, and the exit writes the profile.
    let pid = serve.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let status = serve.wait().expect("serve exit");
    assert!(status.success(), "instrumented claudette ended with {status}");
    let _ = upstream.kill();
    let _ = upstream.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The benchmark's JSON and SSE load (saturated, then at the fixed rate) and Anthropic-format
/// requests at the fixed rate, against a gateway being profiled.
fn training_load(via: SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        for (label, stream) in [("JSON", false), ("SSE", true)] {
            let req = request_bytes(stream);
            let s = saturate(via, req.clone(), None, 100.0).await;
            let (lat, errors) = fixed_rate(via, req).await;
            println!(
                "training {label}: {:.0} req/s saturated, {} requests at {FIXED_RATE} req/s, {} errors",
                s.rps,
                lat.len(),
                s.errors + errors
            );
            assert_eq!(s.errors + errors, 0, "the gateway failed requests during training");
        }
        // Anthropic-format clients take the same path but for their own parsing and encoding.
        for (label, stream) in [("Anthropic JSON", false), ("Anthropic SSE", true)] {
            let (lat, errors) = fixed_rate(via, anthropic_request_bytes(stream)).await;
            println!("training {label}: {} requests at {FIXED_RATE} req/s, {errors} errors", lat.len());
            assert_eq!(errors, 0, "the gateway failed requests during training");
        }
    });
}

fn orchestrate() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (mut upstream, up_port) = spawn_child(&["upstream"]);
    let up_url = format!("http://127.0.0.1:{up_port}/v1");
    let gateway_bin = gateway_exe().unwrap_or_else(|| std::env::current_exe().expect("current exe"));
    let (mut gateway, gw_port) = spawn_from(&gateway_bin, &["gateway", &up_url]);
    let (mut stub, stub_port) = spawn_from(&gateway_bin, &["stub-gateway"]);
    // With a profile-optimised gateway, the plain build of the same code is measured beside it.
    let mut plain = gateway_exe().map(|_| spawn_child(&["gateway", &up_url]));
    let (mut floor, floor_port) = spawn_child(&["floor-proxy", &up_port.to_string()]);
    let direct: SocketAddr = ([127, 0, 0, 1], up_port).into();
    let via: SocketAddr = ([127, 0, 0, 1], gw_port).into();
    let via_stub: SocketAddr = ([127, 0, 0, 1], stub_port).into();
    let via_floor: SocketAddr = ([127, 0, 0, 1], floor_port).into();
    let ticks = clock_ticks();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "claudette gateway benchmark — {cores} cores, loopback; upstream pid {}, gateway pid {}",
        upstream.id(),
        gateway.id()
    );
    match gateway_exe() {
        Some(_) => println!(
            "gateway: the optimised release build ({}), {}; upstream, floor proxy and load: the plain release build",
            std::env::var("BENCH_GATEWAY_BUILD").unwrap_or_else(|_| "PGO".into()),
            gateway_bin.display()
        ),
        None => println!("gateway, upstream, floor proxy and load: the plain release build (no PGO)"),
    }
    let load = match wrk() {
        Some(path) => format!("wrk ({}, one thread)", path.display()),
        None => "the built-in generator (raw HTTP/1.1, keep-alive)".to_owned(),
    };
    println!(
        "saturation: {SATURATION_CONNS} connections × {}s by {load}; fixed rate: {FIXED_RATE} req/s × {}s over {FIXED_CONNS} connections; \
         {ROUNDS} interleaved rounds each, medians shown\n",
        SATURATION_TIME.as_secs(),
        FIXED_TIME.as_secs()
    );

    rt.block_on(async {
        let rss_idle = rss_kib(gateway.id());
        let mut rows = Vec::new();
        let mut stub_rows = Vec::new();
        let mut floor_rows = Vec::new();
        let mut plain_rows = Vec::new();
        let mut spreads = Vec::new();
        for (label, stream) in [("JSON", false), ("SSE", true)] {
            let req = request_bytes(stream);
            // Sanity: both paths answer 200 with a body.
            let mut probe = Conn::open(via).await;
            let (status, len) = probe.call(&req).await.expect("gateway answers");
            assert_eq!(status, 200, "gateway answered {status}");
            assert!(len > 0);

            // Direct and gateway alternate, ROUNDS times each: on a shared 2-core machine a
            // single pair swings by ±15 %, and the host's slow and fast phases last minutes.
            // Each figure of the row is the median over the rounds of that figure (the
            // throughput columns are the round with the median ratio), and the ranges are
            // printed below it.
            let mut sat = Vec::new();
            let mut lat = Vec::new();
            for _ in 0..ROUNDS {
                let d = saturate(direct, req.clone(), Some(upstream.id()), ticks).await;
                let g = saturate(via, req.clone(), Some(gateway.id()), ticks).await;
                sat.push((d, g));
            }
            for _ in 0..ROUNDS {
                let (dl, de) = fixed_rate(direct, req.clone()).await;
                let (gl, ge) = fixed_rate(via, req.clone()).await;
                lat.push((dl, de, gl, ge));
            }
            let ratio = |(d, g): &(Saturation, Saturation)| g.rps / d.rps;
            let added = |l: &(Vec<f64>, u64, Vec<f64>, u64), p: f64| pct(&l.2, p) - pct(&l.0, p);
            spreads.push((
                label,
                range(sat.iter().map(|x| ratio(x) * 100.0)),
                range(lat.iter().map(|l| added(l, 0.5))),
                range(lat.iter().map(|l| added(l, 0.99))),
            ));
            // RSS is the peak over every round, not the median round's.
            let rss_peak = sat.iter().filter_map(|(_, g)| g.rss_max_kib).max();
            sat.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
            let (d, mut g) = sat.swap_remove(ROUNDS / 2);
            g.rss_max_kib = rss_peak;
            // The round with the median added p50 gives the p50 columns, and the round with
            // the median added p99 the p99 columns: a round's p99 is not its p50's.
            let median_round = |p: f64| {
                let mut order: Vec<usize> = (0..lat.len()).collect();
                order.sort_by(|&a, &b| added(&lat[a], p).total_cmp(&added(&lat[b], p)));
                order[ROUNDS / 2]
            };
            let (r50, r99) = (median_round(0.5), median_round(0.99));
            let latency = Latency {
                p50: (pct(&lat[r50].0, 0.5), pct(&lat[r50].2, 0.5)),
                p99: (pct(&lat[r99].0, 0.99), pct(&lat[r99].2, 0.99)),
                errors: (lat.iter().map(|l| l.1).sum(), lat.iter().map(|l| l.3).sum()),
            };
            let dl = &lat[r50].0;
            let s = saturate(via_stub, req.clone(), Some(stub.id()), ticks).await;
            let (sl, _) = fixed_rate(via_stub, req.clone()).await;
            stub_rows.push((label, s, sl));
            let f = saturate(via_floor, req.clone(), Some(floor.id()), ticks).await;
            let (fl, _) = fixed_rate(via_floor, req.clone()).await;
            floor_rows.push((label, f, d.rps, pct(&fl, 0.5) - pct(dl, 0.5)));
            if let Some((child, port)) = &plain {
                let addr: SocketAddr = ([127, 0, 0, 1], *port).into();
                let p = saturate(addr, req.clone(), Some(child.id()), ticks).await;
                let (pl, _) = fixed_rate(addr, req.clone()).await;
                plain_rows.push((label, p, d.rps, pct(&pl, 0.5) - pct(dl, 0.5)));
            }
            rows.push((label, d, g, latency));
        }

        println!("{:<6} {:>14} {:>14} {:>8}   {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}   {:>11} {:>11}",
            "", "direct req/s", "gateway req/s", "ratio", "p50 dir", "p50 gw", "added", "p99 dir", "p99 gw", "added", "gw CPU/req", "upstr CPU/req");
        let mut rss_max = 0;
        for (label, d, g, l) in &rows {
            let ((p50d, p50g), (p99d, p99g)) = (l.p50, l.p99);
            println!(
                "{:<6} {:>14.0} {:>14.0} {:>7.1}%   {:>7.0}µs {:>7.0}µs {:>7.0}µs   {:>7.0}µs {:>7.0}µs {:>7.0}µs   {:>9.1}µs {:>9.1}µs",
                label,
                d.rps,
                g.rps,
                g.rps / d.rps * 100.0,
                p50d,
                p50g,
                p50g - p50d,
                p99d,
                p99g,
                p99g - p99d,
                g.cpu_per_req_us.unwrap_or(f64::NAN),
                d.cpu_per_req_us.unwrap_or(f64::NAN),
            );
            let (de, ge) = l.errors;
            if d.errors + g.errors + de + ge > 0 {
                println!("       errors: direct {} / {}, gateway {} / {}", d.errors, de, g.errors, ge);
            }
            rss_max = rss_max.max(g.rss_max_kib.unwrap_or(0));
        }
        for (label, ratio, p50, p99) in &spreads {
            println!(
                "{label:<6} over {ROUNDS} interleaved rounds: ratio {:.1}–{:.1}%, added p50 {:.0}–{:.0}µs, added p99 {:.0}–{:.0}µs",
                ratio.0, ratio.1, p50.0, p50.1, p99.0, p99.1
            );
        }
        println!("\nthe gateway alone, in front of an in-process stub backend (no upstream HTTP client, no upstream hop):");
        for (label, s, sl) in &stub_rows {
            println!(
                "{:<6} {:>14.0} req/s   p50 {:.0}µs  p99 {:.0}µs   CPU/req {:.1}µs   RSS max {:.1} MiB",
                label,
                s.rps,
                pct(sl, 0.5),
                pct(sl, 0.99),
                s.cpu_per_req_us.unwrap_or(f64::NAN),
                s.rss_max_kib.unwrap_or(0) as f64 / 1024.0
            );
        }
        println!(
            "\nthe ceiling: a proxy that only forwards bytes (Content-Length framing, one upstream connection per client \
             connection, no parsing, no JSON, no routing), the same upstream hop:"
        );
        print_against_direct(&floor_rows);
        if !plain_rows.is_empty() {
            println!("\nthe same gateway from the plain release build (no PGO), against the median round's direct figure:");
            print_against_direct(&plain_rows);
        }
        let rss_after = rss_kib(gateway.id());
        println!(
            "\ngateway RSS: {:.1} MiB idle, {:.1} MiB max under load, {:.1} MiB after",
            rss_idle as f64 / 1024.0,
            rss_max as f64 / 1024.0,
            rss_after as f64 / 1024.0
        );
        println!(
            "goals (issue 5): JSON ≥ 45 % and SSE ≥ 30 % of direct throughput; added p50 ≤ 150 µs, p99 ≤ 500 µs at 400 req/s; RSS ≤ 25 MiB"
        );
    });

    for child in [&mut gateway, &mut stub, &mut floor, &mut upstream]
        .into_iter()
        .chain(plain.as_mut().map(|p| &mut p.0))
    {
        let _ = child.kill();
        let _ = child.wait();
    }
}
