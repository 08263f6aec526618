//! Reliability-spec S-10 over real HTTP: per-key rate and concurrency limits (429 with
//! `Retry-After` in each protocol's envelope, no upstream call) and the request-shape caps
//! (`max_messages`, `max_output_tokens`: 400, no upstream call).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use claudette_gateway::{GatewayOptions, KeyEntry};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;

const METERED_KEY: &str = "gw-metered-canary-5c1e0b7f";
const FREE_KEY: &str = "gw-free-canary-a93d22c4";

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn bearer(key: &str) -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {key}"))]
}

async fn post_as(url: &str, path: &str, body: serde_json::Value, key: &str) -> Reply {
    let [(name, value)] = bearer(key);
    post_with(url, path, body, &[(name, &value)]).await
}

fn retry_after(r: &Reply) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After not whole seconds ({e}): {:?}", r.headers))
}

fn oa_chunk(text: &str) -> String {
    format!(
        "data: {}",
        json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]})
    )
}

#[tokio::test]
async fn a_key_over_its_rpm_gets_429_with_retry_after_in_each_protocol_and_no_upstream_call() {
    let fake = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &fake))]);
    let options = GatewayOptions {
        api_keys: vec![
            KeyEntry::from_plain("metered", METERED_KEY).with_rpm(nz(1)),
            KeyEntry::from_plain("free", FREE_KEY),
        ],
        ..GatewayOptions::default()
    };
    let gw = start_with(r, options).await;

    let first = post_as(&gw.url, "/v1/chat/completions", json!({"messages": user("x")}), METERED_KEY).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(fake.post_requests(), 1);

    // OpenAI envelope.
    let oa = post_as(&gw.url, "/v1/chat/completions", json!({"messages": user("x")}), METERED_KEY).await;
    assert_eq!(oa.status, 429, "{}", oa.text);
    assert_eq!(oa.json()["error"]["type"], "rate_limit_error");
    assert_eq!(oa.json()["error"]["code"], "rate_limit_exceeded");
    assert!(oa.json()["error"]["message"].as_str().unwrap().contains("1 requests per minute"), "{}", oa.text);
    // A bucket of 1 refilled once a minute: the next request is allowed within 60 s, rounded up.
    let wait = retry_after(&oa);
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(oa.header("x-claudette-backend"), Some("none"));
    assert_eq!(oa.header("x-claudette-attempts"), Some("0"));

    // Anthropic envelope.
    let an =
        post_as(&gw.url, "/v1/messages", json!({"max_tokens": 5, "messages": user("x")}), METERED_KEY).await;
    assert_eq!(an.status, 429, "{}", an.text);
    assert_eq!(an.json()["type"], "error");
    assert_eq!(an.json()["error"]["type"], "rate_limit_error");
    assert!((1..=60).contains(&retry_after(&an)));

    // The simple envelope.
    let simple = post_as(&gw.url, "/api/chat", json!({"message": "x"}), METERED_KEY).await;
    assert_eq!(simple.status, 429, "{}", simple.text);
    assert!(simple.json()["error"].as_str().unwrap().contains("requests per minute"), "{}", simple.text);
    assert!((1..=60).contains(&retry_after(&simple)));

    assert_eq!(fake.post_requests(), 1, "refused requests never reach the upstream");

    // The limit is the metered key's own: another key is served, and the metered key can still
    // list models (the limits cover the inference endpoints only).
    let free = post_as(&gw.url, "/v1/chat/completions", json!({"messages": user("x")}), FREE_KEY).await;
    assert_eq!(free.status, 200, "{}", free.text);
    assert_eq!(fake.post_requests(), 2);
    let [(n, v)] = bearer(METERED_KEY);
    assert_eq!(get(&gw.url, "/v1/models", &[(n, &v)]).await.status, 200);

    // Neither key appears in any answer or in the logs.
    for reply in [&oa, &an, &simple] {
        let all = format!("{:?} {}", reply.headers, reply.text);
        assert!(!all.contains("canary"), "{all}");
    }
    let logs = logs();
    assert!(!logs.contains(METERED_KEY) && !logs.contains(FREE_KEY), "a key leaked into the logs");
}

#[tokio::test]
async fn a_key_at_its_concurrency_limit_gets_429_while_another_key_gets_through() {
    let fake = FakeServer::start().await;
    // The first request: a stream that sends one content chunk, then waits 30 s per chunk, so
    // it stays open for as long as the test holds it.
    fake.push(
        Fake::sse(vec![oa_chunk("a"), oa_chunk("b"), "data: [DONE]".to_owned()]).gap(Duration::from_secs(30)),
    );
    let r = router(vec![openai(openai_settings("oa", &fake))]);
    let options = GatewayOptions {
        api_keys: vec![
            KeyEntry::from_plain("single", METERED_KEY).with_max_concurrent(nz(1)),
            KeyEntry::from_plain("other", FREE_KEY).with_max_concurrent(nz(1)),
        ],
        ..GatewayOptions::default()
    };
    let gw = start_with(r, options).await;

    let [(n, v)] = bearer(METERED_KEY);
    let mut held = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header(n, v)
        .header("content-type", "application/json")
        .body(json!({"messages": user("x"), "stream": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let first = held.chunk().await.unwrap().expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("\"content\":\"a\""), "{first:?}");
    assert_eq!(fake.post_requests(), 1);

    // The same key, while its stream is open: 429 in each envelope, no upstream call.
    let oa = post_as(&gw.url, "/v1/chat/completions", json!({"messages": user("y")}), METERED_KEY).await;
    assert_eq!(oa.status, 429, "{}", oa.text);
    assert_eq!(oa.json()["error"]["type"], "rate_limit_error");
    assert_eq!(oa.json()["error"]["code"], "concurrency_limit_exceeded");
    assert_eq!(retry_after(&oa), 1);
    let an =
        post_as(&gw.url, "/v1/messages", json!({"max_tokens": 5, "messages": user("y")}), METERED_KEY).await;
    assert_eq!(an.status, 429, "{}", an.text);
    assert_eq!(an.json()["error"]["type"], "rate_limit_error");
    assert_eq!(retry_after(&an), 1);
    assert_eq!(fake.post_requests(), 1, "refused requests never reach the upstream");

    // Another key has its own slots.
    let other = post_as(&gw.url, "/v1/chat/completions", json!({"messages": user("z")}), FREE_KEY).await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(fake.post_requests(), 2);

    // The stream ends (the client leaves): the slot is free again. The gateway learns of the
    // disconnect asynchronously, so poll for it, with a bound far above what it takes.
    drop(held);
    let mut again = None;
    for _ in 0..200 {
        let r = post_as(&gw.url, "/v1/chat/completions", json!({"messages": user("w")}), METERED_KEY).await;
        if r.status != 429 {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = again.expect("the slot was never released");
    assert_eq!(again.status, 200, "{}", again.text);
}

#[tokio::test]
async fn too_many_messages_and_max_tokens_above_the_cap_get_400_with_no_upstream_call() {
    let fake = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &fake))]);
    let options =
        GatewayOptions { max_messages: 3, max_output_tokens: Some(100), ..GatewayOptions::default() };
    let gw = start_with(r, options).await;
    let four = json!([
        {"role": "system", "content": "s"}, {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}
    ]);

    let many = post(&gw.url, "/v1/chat/completions", json!({"messages": four})).await;
    assert_eq!(many.status, 400, "{}", many.text);
    assert_eq!(many.json()["error"]["type"], "invalid_request_error");
    assert_eq!(many.json()["error"]["param"], "messages");
    assert_eq!(many.json()["error"]["code"], "too_many_messages");
    assert!(many.json()["error"]["message"].as_str().unwrap().contains("at most 3"), "{}", many.text);

    // Anthropic: the system prompt counts as a message.
    let an_many = post(
        &gw.url,
        "/v1/messages",
        json!({"max_tokens": 10, "system": "s", "messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}
        ]}),
    )
    .await;
    assert_eq!(an_many.status, 400, "{}", an_many.text);
    assert_eq!(an_many.json()["error"]["type"], "invalid_request_error");

    let oa_big =
        post(&gw.url, "/v1/chat/completions", json!({"messages": user("x"), "max_completion_tokens": 5000}))
            .await;
    assert_eq!(oa_big.status, 400, "{}", oa_big.text);
    assert_eq!(oa_big.json()["error"]["param"], "max_tokens");
    let msg = oa_big.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("5000") && msg.contains("cap of 100"), "{msg}");

    let an_big = post(&gw.url, "/v1/messages", json!({"max_tokens": 101, "messages": user("x")})).await;
    assert_eq!(an_big.status, 400, "{}", an_big.text);
    assert_eq!(an_big.json()["type"], "error");
    assert!(
        an_big.json()["error"]["message"].as_str().unwrap().contains("`max_tokens` is 101"),
        "{}",
        an_big.text
    );

    let simple_big = post(&gw.url, "/api/chat", json!({"message": "x", "max_tokens": 1000})).await;
    assert_eq!(simple_big.status, 400, "{}", simple_big.text);
    assert!(simple_big.json()["error"].as_str().unwrap().contains("cap of 100"), "{}", simple_big.text);

    assert_eq!(fake.post_requests(), 0, "refused requests never reach the upstream");

    // At the limits: served, as asked.
    let three = json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]);
    let ok = post(&gw.url, "/v1/chat/completions", json!({"messages": three, "max_tokens": 100})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(fake.last_json().unwrap()["max_tokens"], 100);
    // No max_tokens while a cap is set: the cap is sent.
    let unset = post(&gw.url, "/api/chat", json!({"message": "x"})).await;
    assert_eq!(unset.status, 200, "{}", unset.text);
    assert_eq!(fake.last_json().unwrap()["max_tokens"], 100);
    let small = post(&gw.url, "/v1/messages", json!({"max_tokens": 7, "messages": user("x")})).await;
    assert_eq!(small.status, 200, "{}", small.text);
    assert_eq!(fake.last_json().unwrap()["max_tokens"], 7);
    assert_eq!(fake.post_requests(), 3);
}

/// A wrong method on an inference path is answered 405 without spending the key's rate: the
/// next real request still gets through.
#[tokio::test]
async fn a_wrong_method_does_not_spend_the_keys_rate() {
    let fake = FakeServer::start().await;
    let r = router(vec![openai(openai_settings("oa", &fake))]);
    let options = GatewayOptions {
        api_keys: vec![KeyEntry::from_plain("metered", METERED_KEY).with_rpm(nz(1))],
        ..GatewayOptions::default()
    };
    let gw = start_with(r, options).await;
    let [(name, value)] = bearer(METERED_KEY);
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"] {
        assert_eq!(get(&gw.url, path, &[(name, &value)]).await.status, 405, "{path}");
    }
    let first = post_as(&gw.url, "/v1/chat/completions", json!({"messages": user("x")}), METERED_KEY).await;
    assert_eq!(first.status, 200, "{}", first.text);
}
