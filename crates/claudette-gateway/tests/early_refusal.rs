//! Refusals decided before the request body is read (401, 429, 503, 413, hyper's own 431) reach
//! the client over real sockets, instead of a "connection reset by peer" that SDKs report as
//! a network error and retry, hiding the real cause.
//!
//! Each test is a raw client on 127.0.0.1 that behaves like a real one: the official Python
//! SDKs (httpx) write the whole body before reading anything, some clients stall mid-upload.
//! The old server closed its socket with upload data unread, so the kernel answered with a
//! reset and the client's next write failed (EPIPE here; other systems also drop the answer
//! already received). On Linux a client that only reads still gets the answer before the
//! reset, so each test uploads past the refusal, as those clients do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use claudette_gateway::{GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GW_KEY: &str = "cgw-early-right-7b20";
const WRONG_KEY: &str = "cgw-early-wrong-31c9";
/// The body the clients announce and (try to) upload: far more than hyper reads on its own.
const UPLOAD: usize = 5_000_000;
const CHUNK: usize = 64 * 1024;

/// A request head for `path` announcing `len` body bytes, with `extra` header lines.
fn head(path: &str, len: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n{extra}\r\n"
    )
}

fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}\r\n")
}

/// Reads to the end of the connection. A reset (or any read error) is a failure: the client
/// would not have seen a complete answer.
async fn read_all(s: &mut TcpStream) -> Result<String, String> {
    let mut got = Vec::new();
    match tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await {
        Err(_) => Err(format!("no end of answer within 20 s; got {:?}", String::from_utf8_lossy(&got))),
        Ok(Err(e)) => Err(format!("read failed ({e}) after {:?}", String::from_utf8_lossy(&got))),
        Ok(Ok(_)) => Ok(String::from_utf8_lossy(&got).into_owned()),
    }
}

/// A write-first client (httpx, requests): the head, then the whole announced body in chunks
/// with a pause after each, and only then the answer.
async fn upload_then_read(addr: std::net::SocketAddr, head: &str, len: usize) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.map_err(|e| format!("head not sent: {e}"))?;
    let chunk = vec![b'x'; CHUNK];
    let mut sent = 0;
    while sent < len {
        let n = CHUNK.min(len - sent);
        s.write_all(&chunk[..n]).await.map_err(|e| format!("upload failed after {sent} bytes: {e}"))?;
        sent += n;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    read_all(&mut s).await
}

/// A client that sends the head and a large part of the body at once, then stalls for a
/// moment (the server answers and closes meanwhile, with much of that part still unread in its
/// socket) and then sends the rest before reading.
async fn upload_with_a_pause(addr: std::net::SocketAddr, head: &str, len: usize) -> Result<String, String> {
    let part = len.min(1 << 20);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = head.as_bytes().to_vec();
    req.resize(req.len() + part, b'x');
    s.write_all(&req).await.map_err(|e| format!("head and first part not sent: {e}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest = vec![b'x'; len - part];
    for (i, c) in rest.chunks(CHUNK).enumerate() {
        s.write_all(c).await.map_err(|e| format!("upload failed after {} bytes: {e}", part + i * CHUNK))?;
    }
    read_all(&mut s).await
}

/// The status line, the headers (lowercased) and the JSON body of a complete answer; panics,
/// naming what is wrong, when the answer is cut short or not JSON.
fn parse(answer: &str) -> (String, String, serde_json::Value) {
    let (head, body) =
        answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete head: {answer:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let headers = headers.to_ascii_lowercase();
    let len: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap_or_else(|| panic!("no content-length: {answer:?}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len, "answer cut short or followed by more: {answer:?}");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:?}"));
    (status.to_owned(), headers, json)
}

async fn keyed(options: GatewayOptions) -> (FakeServer, Running) {
    let fake = FakeServer::start().await;
    fake.set_default(openai_answer(json!({"role": "assistant", "content": "ok"}), "stop"));
    let options = GatewayOptions { api_keys: vec![KeyEntry::from_plain("team", GW_KEY)], ..options };
    let gw = start_with(router(vec![openai(openai_settings("oa", &fake))]), options).await;
    (fake, gw)
}

/// The headline case: a wrong key with a 5 MB upload. The client writes all of it and then
/// reads a complete 401 in its SDK's envelope, marked as the connection's last.
#[tokio::test]
async fn a_wrong_key_reaches_a_client_that_uploads_everything_before_reading() {
    let (fake, gw) = keyed(GatewayOptions::default()).await;
    let h = head("/v1/chat/completions", UPLOAD, &bearer(WRONG_KEY));
    let answer = upload_then_read(gw.addr, &h, UPLOAD).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, headers, body) = parse(&answer);
    assert!(status.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(headers.contains("connection: close"), "the body was not read: {answer:?}");
    assert_eq!(body["error"]["code"], "invalid_api_key", "{answer:?}");
    assert!(!answer.contains(WRONG_KEY));
    assert_eq!(fake.requests(), 0);
}

/// The same refusal on the Anthropic path, for a client that stalls after part of the body
/// and then sends the rest.
#[tokio::test]
async fn a_wrong_key_reaches_a_client_that_pauses_mid_upload() {
    let (_fake, gw) = keyed(GatewayOptions::default()).await;
    let h = head("/v1/messages", UPLOAD, &format!("x-api-key: {WRONG_KEY}\r\n"));
    let answer = upload_with_a_pause(gw.addr, &h, UPLOAD).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, _, body) = parse(&answer);
    assert!(status.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert_eq!(body["error"]["type"], "authentication_error", "{answer:?}");
}

/// A body announced far over the limit is refused without reading it, and the 413 still
/// reaches a client that uploads all of it first.
#[tokio::test]
async fn an_announced_oversized_body_gets_its_413_not_a_reset() {
    let (fake, gw) = keyed(GatewayOptions { max_body_bytes: 1 << 20, ..GatewayOptions::default() }).await;
    let h = head("/v1/chat/completions", UPLOAD, &bearer(GW_KEY));
    let answer = upload_then_read(gw.addr, &h, UPLOAD).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, headers, body) = parse(&answer);
    assert!(status.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(headers.contains("connection: close"), "{answer:?}");
    assert_eq!(body["error"]["code"], "request_too_large", "{answer:?}");

    let h = head("/api/chat", UPLOAD, &bearer(GW_KEY));
    let answer = upload_with_a_pause(gw.addr, &h, UPLOAD).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, _, body) = parse(&answer);
    assert!(status.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(body["error"].is_string(), "{answer:?}");

    // Slightly over the limit: read and thrown away before the 413, so that answer is not the
    // connection's last and the next request on it is served.
    let len = (1 << 20) + 10;
    let mut req = head("/v1/chat/completions", len, &bearer(GW_KEY)).into_bytes();
    req.resize(req.len() + len, b'x');
    req.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    let answer = read_all(&mut s).await.unwrap_or_else(|e| panic!("{e}"));
    let (first, second) =
        answer.split_once("HTTP/1.1 200").unwrap_or_else(|| panic!("no second answer: {answer:?}"));
    let (status, headers, _) = parse(first);
    assert!(status.starts_with("HTTP/1.1 413") && !headers.contains("connection: close"), "{answer:?}");
    assert!(second.contains(r#"{"status":"ok"}"#), "{answer:?}");
    assert_eq!(fake.requests(), 0);
}

/// Load shedding (503) and a key's own limit (429) are decided before the body too.
#[tokio::test]
async fn limit_refusals_reach_uploading_clients() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_text("slow").delay(Duration::from_millis(1500)));
    let options = GatewayOptions {
        api_keys: vec![
            KeyEntry::from_plain("team", GW_KEY),
            KeyEntry::from_plain("metered", WRONG_KEY).with_rpm(NonZeroU32::new(1).unwrap()),
        ],
        max_concurrency: 1,
        ..GatewayOptions::default()
    };
    let gw = start_with(router(vec![openai(openai_settings("oa", &fake))]), options).await;

    // The metered key spends its one request a minute on a refusal-free request.
    let first = post_with(
        &gw.url,
        "/v1/chat/completions",
        json!({"messages": user("x")}),
        &[("authorization", &format!("Bearer {WRONG_KEY}"))],
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let h = head("/v1/chat/completions", UPLOAD, &bearer(WRONG_KEY));
    let answer = upload_then_read(gw.addr, &h, UPLOAD).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, headers, body) = parse(&answer);
    assert!(status.starts_with("HTTP/1.1 429"), "{answer:?}");
    assert!(headers.contains("retry-after:"), "{answer:?}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{answer:?}");

    // One slow request holds the only slot; the next one is shed while it uploads.
    fake.push(Fake::openai_text("slow").delay(Duration::from_millis(1500)));
    let url = gw.url.clone();
    let slow = tokio::spawn(async move {
        post_with(
            &url,
            "/v1/chat/completions",
            json!({"messages": user("x")}),
            &[("authorization", &format!("Bearer {GW_KEY}"))],
        )
        .await
    });
    while fake.requests() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let h = head("/v1/messages", UPLOAD, &format!("x-api-key: {GW_KEY}\r\n"));
    let answer = upload_with_a_pause(gw.addr, &h, UPLOAD).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, _, body) = parse(&answer);
    assert!(status.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{answer:?}");
    assert_eq!(slow.await.unwrap().status, 200);
}

/// A head over hyper's size limit gets hyper's own 431, which has no body: hyper writes it
/// itself and has no hook to replace it. The client, still sending its head when hyper gave
/// up, reads that answer instead of failing on a reset.
#[tokio::test]
async fn an_oversized_head_gets_431_not_a_reset() {
    let (_fake, gw) = keyed(GatewayOptions::default()).await;
    let start = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-padding: ";
    let padding = "p".repeat(UPLOAD - start.len());
    let answer = upload_then_read(gw.addr, start, padding.len()).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

/// Lingering is bounded: a refused client that keeps trickling its upload is cut off after
/// the linger time (a reset then is deliberate), and one that goes quiet is closed sooner.
#[tokio::test]
async fn a_refused_client_cannot_hold_its_connection_open() {
    let (_fake, gw) = keyed(GatewayOptions::default()).await;
    let h = head("/v1/chat/completions", UPLOAD, &bearer(WRONG_KEY));

    let mut trickle = TcpStream::connect(gw.addr).await.unwrap();
    trickle.write_all(h.as_bytes()).await.unwrap();
    let start = Instant::now();
    let cut = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if trickle.write_all(b"x").await.is_err() {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the gateway never closed a trickling client");
    };
    assert!(cut >= Duration::from_secs(5), "cut off after {cut:?}: too soon for a slow uploader");

    // Quiet after part of its body: the server reads what came, then closes cleanly (its
    // answer and end of stream arrive, no reset) without waiting for the rest.
    let mut quiet = TcpStream::connect(gw.addr).await.unwrap();
    quiet.write_all(h.as_bytes()).await.unwrap();
    quiet.write_all(&vec![b'x'; 100_000]).await.unwrap();
    let answer = read_all(&mut quiet).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    // The first write to a socket the server has closed draws a reset; the next one fails.
    // Each probe follows 2.5 s of silence, so a probe reaching a server still lingering (a
    // loaded machine) cannot keep it from closing for quiet (2 s) before the next one; the
    // 10 s bound on all lingering would close it only after the last probe.
    let quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let _ = quiet.write_all(b"x").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if quiet.write_all(b"x").await.is_err() {
            break;
        }
        let kept = quiet_since.elapsed();
        assert!(kept < Duration::from_secs(7), "a quiet client was kept open for {kept:?}");
    }
}
