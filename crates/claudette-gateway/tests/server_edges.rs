//! The HTTP front as real clients meet it, over real sockets: `Expect: 100-continue`,
//! compressed request bodies, and wrong methods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use claudette_testkit::FakeServer;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY: &str = r#"{"model":"auto","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

/// Everything the server sends within `wait` (or until it closes).
async fn read_for(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let end = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until a complete head has arrived (or `wait` is over).
async fn read_head(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    let end = tokio::time::Instant::now() + wait;
    while !out.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout_at(end, s.read(&mut byte)).await {
            Ok(Ok(1)) => out.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body_of(response: &str) -> serde_json::Value {
    let (_, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no body: {response:?}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response:?}"))
}

async fn gateway() -> (FakeServer, Running) {
    let fake = FakeServer::start().await;
    fake.set_default(openai_answer(json!({"role": "assistant", "content": "ok"}), "stop"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    (fake, gw)
}

/// curl sends `Expect: 100-continue` and waits for the go-ahead before a large body. A body
/// announced over the limit must get its 413 at once, instead of a `100 Continue` that has the
/// client upload megabytes only for them to be thrown away. (The 5 s bound only tells "answered"
/// from "waiting for a body that will never be refused before it is sent".)
#[tokio::test]
async fn expect_continue_over_the_limit_is_refused_before_the_body_is_sent() {
    let (fake, gw) = gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 20000000\r\nExpect: 100-continue\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let got = read_for(&mut s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");
    assert!(!got.contains("100 Continue"), "{got:?}");
    assert_eq!(body_of(&got)["error"]["code"], "request_too_large", "{got:?}");
    assert_eq!(fake.post_requests(), 0);
}

/// Within the limit, the go-ahead comes and the request is served.
#[tokio::test]
async fn expect_continue_within_the_limit_gets_the_go_ahead() {
    let (_fake, gw) = gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        BODY.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let interim = read_head(&mut s, Duration::from_secs(5)).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    s.write_all(BODY.as_bytes()).await.unwrap();
    let got = read_for(&mut s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
}

/// A compressed body is refused with 415 naming the coding, in the endpoint's envelope, and
/// the connection stays usable; not a JSON parse error about bytes the client never wrote.
#[tokio::test]
async fn compressed_request_bodies_are_refused_with_415() {
    let (fake, gw) = gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let gz: &[u8] =
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\xae\x05\x00\x43\xbf\xa6\xa3\x02\x00\x00\x00";
    let mut req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    req.extend_from_slice(gz);
    req.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let got = read_for(&mut s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 415"), "{got:?}");
    let (first, second) =
        got.split_once("HTTP/1.1 200").unwrap_or_else(|| panic!("no second answer: {got:?}"));
    let body = body_of(first);
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("gzip"), "{body}");
    assert!(second.contains(r#"{"status":"ok"}"#), "{got:?}");
    assert_eq!(fake.post_requests(), 0);

    // `identity` is no coding at all.
    let ok = post_with(
        &gw.url,
        "/v1/chat/completions",
        json!({"messages": user("hi")}),
        &[("content-encoding", "identity")],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

/// A wrong method on a known path is a JSON 405 in the path's envelope with `Allow`, not an
/// empty body. CORS preflights get the same: the gateway does not serve browsers.
#[tokio::test]
async fn wrong_methods_get_a_json_405_with_allow() {
    let (_fake, gw) = gateway().await;
    let c = client();

    let r = collect(c.get(format!("{}/v1/chat/completions", gw.url)).send().await.unwrap()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{}", r.text);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("GET"), "{}", r.text);

    let r = collect(
        c.request(reqwest::Method::OPTIONS, format!("{}/v1/messages", gw.url))
            .header("origin", "http://example.com")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json()["type"], "error", "{}", r.text);

    let r = collect(c.post(format!("{}/v1/models", gw.url)).send().await.unwrap()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET,HEAD"));
    assert_eq!(r.json()["error"]["code"], "method_not_allowed", "{}", r.text);
}
