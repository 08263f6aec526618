//! Diagnostic: what one upstream call costs through each HTTP client path, measured in this
//! process alone, against `bench_gateway upstream` (start it first; it prints its port).
//!
//! - `client_cost PORT MODE [THREADS]`: 16 tasks call for 3 s; prints CPU per call. MODE is
//!   `raw` (a hand-written HTTP/1.1 exchange: the floor), `reqwest`, `legacy` (hyper-util's
//!   pooled client), `conn` (a hyper connection polled by the calling task, what
//!   `claudette-http` did before it got its own HTTP/1.1 codec) or `backend` (a full
//!   `HttpBackend` with the OpenAI adapter, i.e. today's transport).
//!   THREADS 0 (default) is a current-thread runtime.
//! - `client_cost PORT MODE-lat [THREADS]`: sequential calls 2.5 ms apart; prints latency
//!   percentiles (`raw-lat`, `conn-lat`, `backend-lat`).
//!
//! The figures behind the choice of transport in `claudette-http` come from here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use claudette_core::{BackendSettings, ChatRequest};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

const BODY: &str =
    r#"{"model":"fake-model","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#;

fn main() {
    let port: u16 = std::env::args().nth(1).unwrap().parse().unwrap();
    let mode = std::env::args().nth(2).unwrap();
    let threads: usize = std::env::args().nth(3).and_then(|t| t.parse().ok()).unwrap_or(0);
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap()
    };
    if let Some(m) = mode.strip_suffix("-lat") {
        let m = m.to_owned();
        return rt.block_on(async move { tokio::spawn(latency(port, m)).await.unwrap() });
    }
    rt.block_on(async move {
        let count = Arc::new(AtomicU64::new(0));
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
        let backend = claudette_openai::backend(
            &BackendSettings::new("up").base_url(format!("http://127.0.0.1:{port}/v1")).model("fake-model"),
        )
        .unwrap()
        .shared();
        let reqwest = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().tcp_nodelay(true).build().unwrap();
        let legacy: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let deadline = Instant::now() + Duration::from_secs(3);
        let c0 = cpu();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (count, url, mode, backend, reqwest) =
                (count.clone(), url.clone(), mode.clone(), backend.clone(), reqwest.clone());
            let legacy = legacy.clone();
            tasks.push(tokio::spawn(async move {
                let mut sock = if mode == "raw" {
                    let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    Some(s)
                } else {
                    None
                };
                let req_bytes = format!(
                    "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
                    BODY.len()
                );
                let mut buf = vec![0u8; 16384];
                let mut conn = if mode == "conn" {
                    let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
                    Some((send, Box::pin(conn)))
                } else {
                    None
                };
                let request = ChatRequest::prompt("Say hello");
                while Instant::now() < deadline {
                    match mode.as_str() {
                        "raw" => {
                            let s = sock.as_mut().unwrap();
                            s.write_all(req_bytes.as_bytes()).await.unwrap();
                            // The upstream's answer fits in one read on loopback.
                            let n = s.read(&mut buf).await.unwrap();
                            assert!(n > 0);
                        }
                        "reqwest" => {
                            let r = reqwest
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(BODY)
                                .send()
                                .await
                                .unwrap();
                            let b = r.bytes().await.unwrap();
                            assert!(!b.is_empty());
                        }
                        "backend" => {
                            backend.send(&request).await.unwrap();
                        }
                        "legacy" => {
                            let req = hyper::Request::post(url.as_str())
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                                .unwrap();
                            let r = legacy.request(req).await.unwrap();
                            let b = r.into_body().collect().await.unwrap().to_bytes();
                            assert!(!b.is_empty());
                        }
                        "conn" => {
                            let (send, conn) = conn.as_mut().unwrap();
                            conn_call(send, conn).await;
                        }
                        _ => panic!("mode"),
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = count.load(Ordering::Relaxed);
        let c = cpu() - c0;
        println!("{mode}: {n} calls in 3 s, {:.1} µs CPU per call", c / n as f64 * 1e6);
    });
}

/// Sequential calls 2.5 ms apart (400/s): the latency of one call when nothing else runs.
async fn latency(port: u16, mode: String) {
    let backend = claudette_openai::backend(
        &BackendSettings::new("up").base_url(format!("http://127.0.0.1:{port}/v1")).model("fake-model"),
    )
    .unwrap();
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let req_bytes = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut buf = vec![0u8; 16384];
    let request = ChatRequest::prompt("Say hello");
    let s2 = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s2.set_nodelay(true).unwrap();
    let (mut send, conn) = hyper::client::conn::http1::Builder::new()
        .writev(std::env::var("WRITEV").map(|v| v == "1").unwrap_or(true))
        .handshake(TokioIo::new(s2))
        .await
        .unwrap();
    let mut conn = Box::pin(conn);
    let mut lat = Vec::new();
    for i in 0..1200 {
        tokio::time::sleep(Duration::from_micros(2500)).await;
        let t0 = Instant::now();
        if mode == "raw" {
            sock.write_all(req_bytes.as_bytes()).await.unwrap();
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0);
        } else if mode == "conn" {
            conn_call(&mut send, &mut conn).await;
        } else {
            claudette_core::Backend::send(&backend, &request).await.unwrap();
        }
        if i >= 200 {
            lat.push(t0.elapsed().as_micros() as u64);
        }
    }
    lat.sort_unstable();
    println!(
        "{mode}: p50 {} µs, p90 {} µs, p99 {} µs",
        lat[lat.len() / 2],
        lat[lat.len() * 9 / 10],
        lat[lat.len() * 99 / 100]
    );
}

type HyperConn =
    std::pin::Pin<Box<hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>>>;

/// One call on a hyper connection polled by this task, as `claudette-http` does it.
async fn conn_call(send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, conn: &mut HyperConn) {
    let req = hyper::Request::post("/v1/chat/completions")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let work = async {
        let r = send.send_request(req).await.unwrap();
        r.into_body().collect().await.unwrap().to_bytes()
    };
    tokio::pin!(work);
    tokio::select! {
        biased;
        b = &mut work => assert!(!b.is_empty()),
        _ = conn.as_mut() => panic!("conn closed"),
    };
}
