#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The testkit's own tests, over real HTTP with reqwest: if these hold, every other crate's
//! tests see exactly the wire behaviour and faults they script.

use std::time::Duration;

use claudette_testkit::{FakeServer, HoldServer, Received, Reply, ResetServer, closed_port_url};
use futures::StreamExt;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    // No proxy: the fake servers are on 127.0.0.1 and an environment proxy would hide them.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(server: &FakeServer, path: &str, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn get(server: &FakeServer, path: &str) -> reqwest::Response {
    client().get(format!("{}{path}", server.url())).send().await.unwrap()
}

/// Polls until `cond` holds; used to wait for a request to reach the server, never to assert
/// on speed. Gives up after 10 s so a broken server fails the test instead of hanging it.
async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 10 s");
}

/// Serves one reply over real HTTP and returns status, content-type and body text.
async fn fetch(reply: Reply) -> (u16, String, String) {
    let server = FakeServer::start().await;
    server.push(reply);
    let resp = post(&server, "/v1/any", "{}").await;
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

async fn fetch_json(reply: Reply) -> (u16, Value) {
    let (status, ct, body) = fetch(reply).await;
    assert_eq!(ct, "application/json");
    (status, serde_json::from_str(&body).unwrap())
}

/// One parsed SSE frame: the `event:` name (if any) and the `data:` payload.
#[derive(Debug)]
struct Frame {
    event: Option<String>,
    data: String,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("frame {:?} is not JSON: {e}", self.data))
    }
}

fn parse_sse(text: &str) -> Vec<Frame> {
    assert!(text.ends_with("\n\n"), "SSE body must end with a blank line: {text:?}");
    text.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|block| {
            let mut frame = Frame { event: None, data: String::new() };
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    frame.event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    frame.data = d.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            frame
        })
        .collect()
}

async fn fetch_sse(reply: Reply) -> Vec<Frame> {
    let (status, ct, body) = fetch(reply).await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    parse_sse(&body)
}

/// Reads a streamed body chunk by chunk: everything received before the end, and whether the
/// body ended with an error (a cut) rather than cleanly.
async fn read_stream(resp: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(e) => return (body, Some(e)),
        }
    }
    (body, None)
}

fn has_io_kind(err: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == kind) {
            return true;
        }
        source = e.source();
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Server behaviour
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn urls_point_at_the_bound_loopback_port() {
    let server = FakeServer::start().await;
    assert!(server.addr().ip().is_loopback());
    assert_ne!(server.addr().port(), 0);
    assert_eq!(server.url(), format!("http://127.0.0.1:{}", server.addr().port()));
    assert_eq!(server.v1_url(), format!("{}/v1", server.url()));
    assert!(format!("{server:?}").contains("FakeServer"));
}

#[tokio::test]
async fn counts_every_request_and_posts_separately() {
    let server = FakeServer::start().await;
    assert_eq!((server.requests(), server.post_requests()), (0, 0));
    for _ in 0..3 {
        assert_eq!(post(&server, "/v1/chat/completions", "{}").await.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&server, "/v1/models").await.status(), 200);
    }
    let put = client().put(format!("{}/x", server.url())).send().await.unwrap();
    assert_eq!(put.status(), 200, "non-GET methods use the POST script");
    assert_eq!(server.requests(), 6);
    assert_eq!(server.post_requests(), 3);
    assert_eq!(server.received().len(), 6);
}

#[tokio::test]
async fn queue_is_fifo_then_falls_back_to_the_default() {
    let server = FakeServer::start().await;
    // The initial default is an OpenAI "ok".
    let body: Value = post(&server, "/v1/chat/completions", "{}").await.json_value().await;
    assert_eq!(body["choices"][0]["message"]["content"], "ok");

    server.push(Reply::openai_text("first"));
    server.push(Reply::openai_text("second"));
    server.push_n(2, Reply::openai_text("twice"));
    server.set_default(Reply::openai_error(503, "server_error", None, "default"));
    assert_eq!(server.queued(), 4);

    let mut seen = Vec::new();
    for _ in 0..6 {
        let resp = post(&server, "/v1/chat/completions", "{}").await;
        let status = resp.status().as_u16();
        let body = resp.json_value().await;
        let text = body["choices"][0]["message"]["content"]
            .as_str()
            .or_else(|| body["error"]["message"].as_str())
            .unwrap()
            .to_owned();
        seen.push((status, text));
    }
    let expected =
        [(200, "first"), (200, "second"), (200, "twice"), (200, "twice"), (503, "default"), (503, "default")];
    assert_eq!(seen, expected.map(|(s, t)| (s, t.to_owned())));
    assert_eq!(server.queued(), 0);
}

#[tokio::test]
async fn records_method_path_query_headers_and_body() {
    let server = FakeServer::start().await;
    let resp = client()
        .post(format!("{}/v1beta/models/gemini-x:streamGenerateContent?alt=sse", server.url()))
        .header("Authorization", "Bearer sk-test")
        .header("X-Custom", "Yes")
        .body(r#"{"model":"fake-model","stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = get(&server, "/v1/models").await;

    let received: Vec<Received> = server.received();
    assert_eq!(received.len(), 2);
    let first = &received[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1beta/models/gemini-x:streamGenerateContent");
    assert_eq!(first.query.as_deref(), Some("alt=sse"));
    assert_eq!(first.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(first.header("AUTHORIZATION"), Some("Bearer sk-test"), "lookup is case-insensitive");
    assert!(first.headers.iter().any(|(n, v)| n == "x-custom" && v == "Yes"), "names are lower-case");
    assert_eq!(first.json(), json!({"model": "fake-model", "stream": true}));
    assert_eq!(first.text(), r#"{"model":"fake-model","stream":true}"#);
    assert_eq!(received[1].method, "GET");
    assert!(received[1].body.is_empty());
    assert_eq!(received[1].json(), Value::Null);
    // last_json skips the later GET with an empty body.
    assert_eq!(server.last_json(), Some(json!({"model": "fake-model", "stream": true})));
}

#[tokio::test]
async fn last_json_is_none_without_json_bodies() {
    let server = FakeServer::start().await;
    assert_eq!(server.last_json(), None);
    let _ = post(&server, "/x", "not json").await;
    assert_eq!(server.last_json(), None);
}

#[tokio::test]
async fn reply_headers_are_sent_and_override_defaults() {
    let server = FakeServer::start().await;
    server.push(
        Reply::json(429, json!({"error": "slow"}))
            .header("Retry-After", "7")
            .header("x-ratelimit-reset-requests", "6m0s")
            .header("content-type", "application/problem+json"),
    );
    let resp = post(&server, "/v1/chat/completions", "{}").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["x-ratelimit-reset-requests"], "6m0s");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(resp.headers().get_all("content-type").iter().count(), 1);
}

#[tokio::test]
async fn raw_reply_has_no_content_type() {
    let (status, ct, body) = fetch(Reply::raw(502, "<html>Bad Gateway</html>")).await;
    assert_eq!((status, ct.as_str(), body.as_str()), (502, "", "<html>Bad Gateway</html>"));
    assert_eq!(Reply::raw(502, "x").status(), 502);
}

#[tokio::test]
async fn delay_holds_the_headers_back() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("late").delay(Duration::from_secs(30)));
    server.push(Reply::openai_text("soon").delay(Duration::from_millis(20)));
    let slow = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    let err = slow.expect_err("a 30 s delay must trip a 300 ms timeout");
    assert!(err.is_timeout(), "{err:?}");
    let body = post(&server, "/v1/chat/completions", "{}").await.json_value().await;
    assert_eq!(body["choices"][0]["message"]["content"], "soon");
}

#[tokio::test]
async fn requests_are_counted_and_recorded_before_the_delay() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("late").delay(Duration::from_secs(60)));
    let url = format!("{}/v1/chat/completions", server.url());
    let pending = tokio::spawn(async move { client().post(url).body(r#"{"n":1}"#).send().await });
    wait_until(|| server.requests() == 1).await;
    assert_eq!(server.post_requests(), 1);
    wait_until(|| server.received().len() == 1).await;
    assert_eq!(server.last_json(), Some(json!({"n": 1})));
    assert!(!pending.is_finished(), "the reply is still being delayed");
    pending.abort();
}

#[tokio::test]
async fn sse_frames_arrive_in_order_as_event_stream() {
    let frames: Vec<String> = (0..5).map(|i| format!("data: {{\"n\":{i}}}")).collect();
    let server = FakeServer::start().await;
    server.push(Reply::sse(frames.clone()).gap(Duration::from_millis(10)));
    let resp = post(&server, "/v1/chat/completions", "{}").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (body, err) = read_stream(resp).await;
    assert!(err.is_none(), "a stream without a cut ends cleanly: {err:?}");
    let expected: String = frames.iter().map(|f| format!("{f}\n\n")).collect();
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[tokio::test]
async fn cut_after_k_events_is_an_error_not_a_clean_end() {
    let frames: Vec<String> = (0..5).map(|i| format!("data: {{\"n\":{i}}}")).collect();
    let server = FakeServer::start().await;
    server.push(Reply::sse(frames.clone()).cut_after(2));
    server.push(Reply::sse(frames.clone()).gap(Duration::from_millis(5)).cut_after(3));

    let resp = post(&server, "/v1/chat/completions", "{}").await;
    assert_eq!(resp.status(), 200, "the cut happens after the headers");
    let (body, err) = read_stream(resp).await;
    let err = err.expect("a cut stream must end with an error");
    assert!(err.is_body() || err.is_decode(), "{err:?}");
    assert_eq!(String::from_utf8(body).unwrap(), format!("{}\n\n{}\n\n", frames[0], frames[1]));

    let (body, err) = read_stream(post(&server, "/v1/chat/completions", "{}").await).await;
    assert!(err.is_some());
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("{}\n\n{}\n\n{}\n\n", frames[0], frames[1], frames[2])
    );
}

#[tokio::test]
async fn cut_after_zero_and_beyond_the_end_still_fail() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("never delivered").cut_after(0));
    server.push(Reply::ndjson(vec![json!({"a": 1}), json!({"b": 2})]).cut_after(10));

    let resp = post(&server, "/api/chat", "{}").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.is_err(), "cut_after(0) sends headers only, then aborts");

    let (body, err) = read_stream(post(&server, "/api/chat", "{}").await).await;
    assert!(err.is_some(), "all chunks sent, then an abort instead of a clean end");
    assert_eq!(String::from_utf8(body).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
}

#[tokio::test]
async fn chunks_can_split_frames_and_utf8() {
    let text = "data: {\"content\":\"靳\"}\n\n".as_bytes().to_vec();
    // Split inside the three-byte character and inside the frame.
    let split = text.iter().position(|&b| b >= 0x80).unwrap() + 1;
    let (head, tail) = text.split_at(split);
    let reply = Reply::chunks(200, "text/event-stream", vec![head.to_vec(), tail.to_vec()]);
    assert_eq!(reply.body_chunks(), vec![head.to_vec(), tail.to_vec()]);
    let (status, ct, body) = fetch(reply.gap(Duration::from_millis(5))).await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    assert_eq!(body.as_bytes(), text.as_slice());
}

#[tokio::test]
async fn ndjson_has_its_content_type_and_one_json_value_per_line() {
    let server = FakeServer::start().await;
    server.push(Reply::ndjson(vec![json!({"a": 1}), json!({"b": "two"})]));
    let resp = post(&server, "/api/chat", "{}").await;
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let body = resp.text().await.unwrap();
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, vec![json!({"a": 1}), json!({"b": "two"})]);
    assert!(body.ends_with('\n'));
}

#[tokio::test]
async fn hang_holds_one_request_without_blocking_others_and_drop_closes_it() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("never").hang());
    server.push(Reply::openai_text("served"));
    let url = format!("{}/v1/chat/completions", server.url());
    let hung = tokio::spawn({
        let url = url.clone();
        async move { client().post(url).body("{}").send().await }
    });
    wait_until(|| server.requests() == 1).await;

    // A second request (a new connection) is answered while the first is held.
    let body = post(&server, "/v1/chat/completions", "{}").await.json_value().await;
    assert_eq!(body["choices"][0]["message"]["content"], "served");
    assert!(!hung.is_finished());

    drop(server);
    let outcome = hung.await.unwrap();
    assert!(outcome.is_err(), "dropping the server must close the held connection: {outcome:?}");
    // The listener closed before the held connection did, so new connections are refused.
    let after = client().post(&url).body("{}").send().await;
    assert!(after.expect_err("server is gone").is_connect());
}

#[tokio::test]
async fn dropping_the_server_aborts_a_slow_stream() {
    let server = FakeServer::start().await;
    server.push(Reply::sse(vec!["data: 1".into(), "data: 2".into()]).gap(Duration::from_secs(60)));
    let resp = post(&server, "/v1/chat/completions", "{}").await;
    let reading = tokio::spawn(read_stream(resp));
    drop(server);
    let (body, err) = reading.await.unwrap();
    assert!(err.is_some(), "a stream interrupted by the drop must not end cleanly");
    assert!(body.len() <= "data: 1\n\n".len());
}

// ---------------------------------------------------------------------------------------------
// GET endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn model_lists_for_each_provider_default_and_custom() {
    let server = FakeServer::start().await;
    let openai = get(&server, "/v1/models").await.json_value().await;
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["data"][0]["id"], "fake-model");
    assert_eq!(openai["data"][0]["object"], "model");

    server.set_models(&["a", "b"]);
    let openai = get(&server, "/v1/models").await.json_value().await;
    let ids: Vec<&str> =
        openai["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    let tags = get(&server, "/api/tags").await.json_value().await;
    let names: Vec<&str> =
        tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(tags["models"][0]["model"], "a");
    let gemini = get(&server, "/v1beta/models").await.json_value().await;
    let names: Vec<&str> =
        gemini["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["models/a", "models/b"]);
    assert!(
        gemini["models"][0]["supportedGenerationMethods"]
            .as_array()
            .unwrap()
            .contains(&json!("generateContent"))
    );

    assert_eq!(get(&server, "/health").await.status(), 200);
    assert_eq!(get(&server, "/nothing/here").await.status(), 404);
    assert_eq!(server.post_requests(), 0);
    assert_eq!(server.requests(), 6);
}

#[tokio::test]
async fn scripted_get_replies_come_first_and_do_not_touch_the_post_queue() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_text("post"));
    server.push_get(Reply::openai_error(401, "invalid_request_error", Some("invalid_api_key"), "bad key"));
    let resp = get(&server, "/v1/models").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(get(&server, "/v1/models").await.status(), 200, "back to the built-in list");
    assert_eq!(server.queued(), 1);
}

// ---------------------------------------------------------------------------------------------
// Transport faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn closed_port_is_refused() {
    let url = closed_port_url().await;
    assert!(url.starts_with("http://127.0.0.1:"));
    let err = client().get(&url).send().await.expect_err("nothing listens there");
    assert!(err.is_connect(), "{err:?}");
    assert!(has_io_kind(&err, std::io::ErrorKind::ConnectionRefused), "{err:?}");
}

#[tokio::test]
async fn hold_server_accepts_and_never_answers() {
    let hold = HoldServer::start().await;
    assert!(hold.url().starts_with("http://127.0.0.1:"));
    let err = client()
        .post(hold.url())
        .body("{}")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("no answer ever comes");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(hold.connections(), 1);

    // Dropping the server closes held connections: a waiting client sees an error, not a hang.
    let url = hold.url();
    let waiting = tokio::spawn(async move { client().post(url).body("{}").send().await });
    wait_until(|| hold.connections() == 2).await;
    drop(hold);
    let outcome = waiting.await.unwrap();
    let err = outcome.expect_err("connection closed without a response");
    assert!(!err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn reset_server_resets_before_any_response_byte() {
    let reset = ResetServer::start().await;
    assert!(reset.url().starts_with("http://127.0.0.1:"));
    let err = client()
        .post(format!("{}/v1/chat/completions", reset.url()))
        .body(r#"{"model":"m"}"#)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect_err("the connection is reset");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.status().is_none(), "no status line was ever sent: {err:?}");
    assert!(has_io_kind(&err, std::io::ErrorKind::ConnectionReset), "expected a reset: {err:?}");
    assert_eq!(reset.connections(), 1);
}

// ---------------------------------------------------------------------------------------------
// Shapes: OpenAI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openai_text_is_a_chat_completion() {
    let (status, body) = fetch_json(Reply::openai_text("hello there world")).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "fake-model");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "hello there world");
    assert_eq!(body["usage"]["prompt_tokens"], 10);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["usage"]["total_tokens"], 13);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn openai_text_usage_reports_the_given_counts() {
    let (_, body) = fetch_json(Reply::openai_text_usage("x", 1200, 345)).await;
    assert_eq!(body["choices"][0]["message"]["content"], "x");
    assert_eq!(body["usage"]["prompt_tokens"], 1200);
    assert_eq!(body["usage"]["completion_tokens"], 345);
    assert_eq!(body["usage"]["total_tokens"], 1545);
}

#[tokio::test]
async fn openai_stream_has_role_content_finish_usage_and_done() {
    let frames = fetch_sse(Reply::openai_stream(&["Hel", "lo", "!"])).await;
    assert_eq!(frames.len(), 1 + 3 + 1 + 1 + 1);
    assert!(frames.iter().all(|f| f.event.is_none()), "OpenAI frames have no event names");
    let chunks: Vec<Value> = frames[..6].iter().map(Frame::json).collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"], "one id per stream");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    let text: String =
        chunks[1..4].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, "Hello!");
    assert!(chunks[1..4].iter().all(|c| c["choices"][0]["finish_reason"].is_null() && c["usage"].is_null()));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["prompt_tokens"], 10);
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    assert_eq!(chunks[5]["usage"]["total_tokens"], 13);
    assert_eq!(frames[6].data, "[DONE]");
}

#[tokio::test]
async fn openai_stream_no_done_ends_cleanly_without_done() {
    let server = FakeServer::start().await;
    server.push(Reply::openai_stream_no_done(&["a", "b"]));
    let (body, err) = read_stream(post(&server, "/v1/chat/completions", "{}").await).await;
    assert!(err.is_none(), "the body itself ends cleanly");
    let frames = parse_sse(&String::from_utf8(body).unwrap());
    assert_eq!(frames.len(), 5);
    assert!(frames.iter().all(|f| f.data != "[DONE]"));
    assert_eq!(frames[4].json()["choices"], json!([]));
}

#[tokio::test]
async fn openai_error_has_the_documented_shape() {
    let (status, body) = fetch_json(Reply::openai_error(
        400,
        "invalid_request_error",
        Some("context_length_exceeded"),
        "too long",
    ))
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {"message": "too long", "type": "invalid_request_error", "param": null,
                         "code": "context_length_exceeded"}})
    );
    let (status, body) = fetch_json(Reply::openai_error(500, "server_error", None, "boom")).await;
    assert_eq!((status, &body["error"]["code"]), (500, &Value::Null));
}

#[tokio::test]
async fn openai_stream_error_after_sends_content_then_an_error_frame() {
    let frames = fetch_sse(Reply::openai_stream_error_after(&["par", "tial"])).await;
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0].json()["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(frames[1].json()["choices"][0]["delta"]["content"], "par");
    assert_eq!(frames[2].json()["choices"][0]["delta"]["content"], "tial");
    assert_eq!(frames[3].json(), json!({"error": {"message": "upstream failed", "type": "server_error"}}));
}

#[tokio::test]
async fn malformed_json_is_a_truncated_200() {
    let (status, ct, body) = fetch(Reply::malformed_json()).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert!(body.starts_with('{'));
    assert!(serde_json::from_str::<Value>(&body).is_err());
    assert!(Reply::malformed_json().body_json().is_none());
}

#[tokio::test]
async fn openai_tool_calls_stream_and_whole() {
    let (_, body) = fetch_json(Reply::openai_tool_call("call_1", "get_weather", r#"{"city":"Oslo"}"#)).await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!((&call["id"], &call["type"]), (&json!("call_1"), &json!("function")));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Oslo"}"#, "arguments is a JSON string");

    let frames =
        fetch_sse(Reply::openai_stream_tool_call("call_1", "get_weather", &["{\"ci", "ty\":\"Oslo\"}"]))
            .await;
    let chunks: Vec<Value> = frames[..frames.len() - 1].iter().map(Frame::json).collect();
    let first = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!((&first["index"], &first["id"]), (&json!(0), &json!("call_1")));
    assert_eq!(first["function"]["name"], "get_weather");
    let args: String = chunks[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"city":"Oslo"}"#);
    assert!(chunks[2]["choices"][0]["delta"]["tool_calls"][0].get("id").is_none());
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(frames.last().unwrap().data, "[DONE]");
}

// ---------------------------------------------------------------------------------------------
// Shapes: Anthropic
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn anthropic_text_is_a_message() {
    let (status, body) = fetch_json(Reply::anthropic_text("hi there")).await;
    assert_eq!(status, 200);
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["content"], json!([{"type": "text", "text": "hi there"}]));
    assert_eq!(body["model"], "claude-fake");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 10, "output_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
}

#[tokio::test]
async fn anthropic_stream_has_named_events_in_order() {
    let frames = fetch_sse(Reply::anthropic_stream(&["Hel", "lo"])).await;
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for f in &frames {
        assert_eq!(f.json()["type"].as_str(), f.event.as_deref(), "data.type matches the event name");
    }
    let start = frames[0].json();
    assert_eq!(start["message"]["role"], "assistant");
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["usage"]["input_tokens"], 10);
    assert_eq!(frames[1].json()["content_block"], json!({"type": "text", "text": ""}));
    let text: String = frames[3..5]
        .iter()
        .map(|f| {
            let d = f.json();
            assert_eq!(d["delta"]["type"], "text_delta");
            assert_eq!(d["index"], 0);
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello");
    let delta = frames[6].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 2);
    assert_eq!(delta["usage"]["input_tokens"], 10);
}

#[tokio::test]
async fn anthropic_error_has_the_documented_shape() {
    let (status, body) = fetch_json(Reply::anthropic_error(529, "overloaded_error", "Overloaded")).await;
    assert_eq!(status, 529);
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
               "request_id": "req_fake"})
    );
}

#[tokio::test]
async fn anthropic_stream_error_first_is_an_error_event_after_200() {
    let frames = fetch_sse(Reply::anthropic_stream_error_first("overloaded_error")).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].event.as_deref(), Some("error"));
    let data = frames[0].json();
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
    assert_eq!(data["error"]["message"], "Overloaded");
}

#[tokio::test]
async fn anthropic_stream_error_after_content() {
    let frames = fetch_sse(Reply::anthropic_stream_error_after(&["par"], "api_error")).await;
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(names, ["message_start", "content_block_start", "ping", "content_block_delta", "error"]);
    assert_eq!(frames[4].json()["error"]["type"], "api_error");
}

#[tokio::test]
async fn anthropic_tool_use_whole_and_streamed() {
    let (_, body) =
        fetch_json(Reply::anthropic_tool_use("toolu_1", "get_weather", json!({"city": "Oslo"}))).await;
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"],
        json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}])
    );

    let frames =
        fetch_sse(Reply::anthropic_stream_tool_use("toolu_1", "get_weather", &["{\"city\":", "\"Oslo\"}"]))
            .await;
    assert_eq!(frames[1].json()["content_block"]["type"], "tool_use");
    assert_eq!(frames[1].json()["content_block"]["name"], "get_weather");
    let json_text: String = frames[2..4]
        .iter()
        .map(|f| {
            let d = f.json();
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), json!({"city": "Oslo"}));
    assert_eq!(frames[5].json()["delta"]["stop_reason"], "tool_use");
    assert_eq!(frames.last().unwrap().event.as_deref(), Some("message_stop"));
}

// ---------------------------------------------------------------------------------------------
// Shapes: Ollama
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ollama_text_is_a_done_chat_response() {
    let (status, body) = fetch_json(Reply::ollama_text("one two three four")).await;
    assert_eq!(status, 200);
    assert_eq!(body["model"], "fake-model");
    assert!(body["created_at"].is_string());
    assert_eq!(body["message"], json!({"role": "assistant", "content": "one two three four"}));
    assert_eq!(body["done"], true);
    assert_eq!(body["done_reason"], "stop");
    assert_eq!(body["prompt_eval_count"], 10);
    assert_eq!(body["eval_count"], 4);
    for field in ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
        assert!(body[field].as_u64().unwrap() >= 1_000_000, "{field} is in nanoseconds");
    }
}

#[tokio::test]
async fn ollama_stream_is_ndjson_chunks_then_done() {
    let (status, ct, body) = fetch(Reply::ollama_stream(&["He", "llo"])).await;
    assert_eq!((status, ct.as_str()), (200, "application/x-ndjson"));
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (line, piece) in lines.iter().zip(["He", "llo"]) {
        assert_eq!(line["done"], false);
        assert_eq!(line["model"], "fake-model");
        assert!(line["created_at"].is_string());
        assert_eq!(line["message"], json!({"role": "assistant", "content": piece}));
    }
    let last = &lines[2];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!((&last["prompt_eval_count"], &last["eval_count"]), (&json!(10), &json!(2)));
    assert!(last["eval_duration"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn ollama_error_and_in_stream_error() {
    let (status, body) = fetch_json(Reply::ollama_error(404, "model \"x\" not found")).await;
    assert_eq!((status, body), (404, json!({"error": "model \"x\" not found"})));

    let (_, ct, body) = fetch(Reply::ollama_stream_error_after(&["a"])).await;
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1], json!({"error": "upstream failed"}));
}

#[tokio::test]
async fn ollama_tool_call_has_object_arguments() {
    let (_, body) = fetch_json(Reply::ollama_tool_call("get_weather", json!({"city": "Oslo"}))).await;
    assert_eq!(body["done"], true);
    assert_eq!(body["message"]["tool_calls"][0]["function"]["arguments"], json!({"city": "Oslo"}));
}

// ---------------------------------------------------------------------------------------------
// Shapes: Gemini
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_text_is_a_generate_content_response() {
    let (status, body) = fetch_json(Reply::gemini_text("a b c")).await;
    assert_eq!(status, 200);
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["parts"][0]["text"], "a b c");
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(
        body["usageMetadata"],
        json!({"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 13})
    );
}

#[tokio::test]
async fn gemini_stream_finishes_on_the_last_frame() {
    let frames = fetch_sse(Reply::gemini_stream(&["Hel", "lo"])).await;
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f.event.is_none()));
    let (first, last) = (frames[0].json(), frames[1].json());
    assert_eq!(first["candidates"][0]["content"]["parts"][0]["text"], "Hel");
    assert!(first["candidates"][0].get("finishReason").is_none());
    assert_eq!(last["candidates"][0]["content"]["parts"][0]["text"], "lo");
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"],
        json!({"promptTokenCount": 10, "candidatesTokenCount": 2, "totalTokenCount": 12})
    );

    let empty = fetch_sse(Reply::gemini_stream(&[])).await;
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0].json()["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test]
async fn gemini_error_has_code_message_status() {
    let (status, body) = fetch_json(Reply::gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")).await;
    assert_eq!(
        (status, body),
        (429, json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}))
    );
}

// ---------------------------------------------------------------------------------------------
// Reply accessors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn body_bytes_are_exactly_what_goes_on_the_wire() {
    for reply in [Reply::openai_stream(&["a", "b"]), Reply::ollama_stream(&["x"]), Reply::anthropic_text("t")]
    {
        let expected = reply.body_bytes();
        let (_, _, body) = fetch(reply).await;
        assert_eq!(body.as_bytes(), expected.as_slice());
    }
    let reply = Reply::openai_error(429, "requests", None, "x").header("retry-after", "3");
    assert_eq!(reply.header_value("Retry-After"), Some("3"));
    assert_eq!(reply.header_value("content-type"), Some("application/json"));
    assert_eq!(reply.body_json().unwrap()["error"]["message"], "x");
    assert_eq!(reply.status(), 429);
}

/// Small convenience so tests read the body as JSON without enabling reqwest's `json` feature.
trait JsonBody {
    async fn json_value(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_value(self) -> Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
    }
}
