//! Conformance against real OpenAI-compatible servers: llama.cpp's `llama-server` and
//! llama-cpp-python from the claudette testbed (`/work/shared/testbed/`, started with
//! `start.sh llama lcp`), serving a tiny random-weight model as `tiny-llama`.
//!
//! Each test first checks that its server answers (a plain-socket GET with a short timeout,
//! independent of the code under test) and, if not, prints `skipped: …` and returns, so the
//! suite passes on machines without the testbed. Assertions are on structure, finish reasons
//! and usage, and on text only where the testbed documents it (temperature 0, prompt "Say hi").
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, FinishReason, Registry, StreamEvent, Timeouts,
    UsageSource,
};
use claudette_openai::{OpenAiAdapter, OpenAiBackend, OpenAiOptions};
use futures::StreamExt;
use serde_json::json;

const LLAMA: &str = "127.0.0.1:39180";
const LCP: &str = "127.0.0.1:39181";

/// The two servers, with the path that tells they are ready.
const SERVERS: [(&str, &str, &str); 2] =
    [("llama.cpp", LLAMA, "/health"), ("llama-cpp-python", LCP, "/v1/models")];

/// Whether `GET path` on `addr` answers 200 within half a second.
fn ready(addr: &str, path: &str) -> bool {
    let Ok(sock) = addr.parse::<SocketAddr>() else { return false };
    let timeout = Duration::from_millis(500);
    let Ok(mut stream) = TcpStream::connect_timeout(&sock, timeout) else { return false };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// One runtime for every test in this file. The HTTP layer's connection pool is
/// process-wide, and a pooled connection belongs to the runtime that opened it: with a runtime
/// per test (`#[tokio::test]`), a test could pick up a connection whose runtime had already
/// ended with another test, and fail with "dispatch task is gone".
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    })
}

/// Runs the tests of this file one at a time. llama-cpp-python is not safe under concurrent
/// requests: with two in flight, streams end with `[DONE]` but without their content or finish
/// chunk, and an oversized prompt gets an empty 200. That is the server's problem, not ours,
/// but it would make these tests flaky.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `true` if the server is up; otherwise says why the test does nothing.
fn up(name: &str, addr: &str, path: &str) -> bool {
    if ready(addr, path) {
        return true;
    }
    println!(
        "skipped: {name} testbed not running at http://{addr} (start it with /work/shared/testbed/start.sh llama lcp)"
    );
    false
}

fn settings(name: &str, addr: &str) -> BackendSettings {
    BackendSettings::new(name).base_url(format!("http://{addr}/v1")).model("tiny-llama").timeouts(Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_secs(60),
        idle: Duration::from_secs(30),
        total: Duration::from_secs(120),
    })
}

fn say_hi(max_tokens: u32) -> ChatRequest {
    ChatRequest::prompt("Say hi").with_max_tokens(max_tokens).with_temperature(0.0)
}

/// Collects a stream: text, reasoning, and the terminal event.
async fn drain(backend: &OpenAiBackend, request: &ChatRequest) -> (String, Vec<StreamEvent>) {
    let mut stream = backend.send_stream(request).await.expect("stream starts");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let terminal = event.is_terminal();
        events.push(event);
        if terminal {
            break;
        }
    }
    assert!(stream.next().await.is_none(), "nothing follows the terminal event");
    let text = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    (text, events)
}

#[test]
fn non_stream_max_tokens_gives_length_with_reported_usage() {
    let _serial = serial();
    runtime().block_on(async {
        for (name, addr, path) in SERVERS {
            if !up(name, addr, path) {
                continue;
            }
            let backend = claudette_openai::backend(&settings(name, addr)).unwrap();
            let r = backend.send(&say_hi(8)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.finish_reason, Some(FinishReason::Length), "{name}");
            assert!(
                r.content.starts_with("oproject"),
                "{name}: deterministic at temperature 0: {:?}",
                r.content
            );
            assert_eq!(r.model, "tiny-llama", "{name}");
            assert_eq!(r.backend, name);
            assert_eq!(r.usage.source, UsageSource::Reported, "{name}");
            assert_eq!(r.usage.output_tokens, 8, "{name}: max_tokens honoured");
            assert!(
                r.usage.input_tokens > 0 && r.usage.cache_read_tokens <= r.usage.input_tokens,
                "{name}: {:?}",
                r.usage
            );
            assert!(r.id.as_deref().is_some_and(|id| id.starts_with("chatcmpl-")), "{name}: {:?}", r.id);
            assert!(r.cost.abs() < f64::EPSILON, "{name}: an unknown local model is free");
            assert!(r.latency > Duration::ZERO);
        }
    });
}

#[test]
fn stream_matches_non_stream_and_reports_usage_when_the_server_does() {
    let _serial = serial();
    runtime().block_on(async {
        for (name, addr, path) in SERVERS {
            if !up(name, addr, path) {
                continue;
            }
            let backend = claudette_openai::backend(&settings(name, addr)).unwrap();
            let whole = backend.send(&say_hi(12)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let (text, events) = drain(&backend, &say_hi(12)).await;
            assert_eq!(text, whole.content, "{name}: same tokens streamed as returned whole");
            let Some(StreamEvent::Done { end }) = events.last() else {
                panic!("{name}: ends with Done: {events:?}")
            };
            assert_eq!(end.finish_reason, Some(FinishReason::Length), "{name}");
            match name {
                // llama-server honours stream_options.include_usage.
                "llama.cpp" => {
                    assert_eq!(end.usage.source, UsageSource::Reported, "{name}: {:?}", end.usage);
                    assert_eq!(end.usage.output_tokens, 12);
                    assert_eq!(end.usage.input_tokens, whole.usage.input_tokens);
                }
                // llama-cpp-python ignores it: no usage chunk, so the I/O layer estimates.
                _ => {
                    assert_eq!(end.usage.source, UsageSource::Estimated, "{name}: {:?}", end.usage);
                    assert!(end.usage.output_tokens > 0 && end.usage.input_tokens > 0, "{:?}", end.usage);
                }
            }
        }
    });
}

#[test]
fn stream_without_usage_request_still_ends_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let (name, addr, path) = SERVERS[0];
        if !up(name, addr, path) {
            return;
        }
        let backend =
            claudette_openai::backend(&settings(name, addr).extra("stream_include_usage", false)).unwrap();
        let (text, events) = drain(&backend, &say_hi(6)).await;
        assert!(text.starts_with("oproject"), "{text:?}");
        let Some(StreamEvent::Done { end }) = events.last() else { panic!("ends with Done: {events:?}") };
        assert_eq!(end.usage.source, UsageSource::Estimated, "not asked for, so not reported");
    });
}

#[test]
fn stop_sequence_and_logit_bias_give_stop() {
    let _serial = serial();
    runtime().block_on(async {
        for (name, addr, path) in SERVERS {
            if !up(name, addr, path) {
                continue;
            }
            let backend = claudette_openai::backend(&settings(name, addr)).unwrap();
            let mut req = say_hi(32);
            req.stop = vec!["_conn".into()];
            let r = backend.send(&req).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.finish_reason, Some(FinishReason::Stop), "{name}: {:?}", r.content);
            assert_eq!(r.content, "oproject靳", "{name}: documented stop output");

            // `logit_bias` is no ChatRequest field: a wrapping provider adds it through the
            // options' extra body, the same way a Qwen crate adds its knobs.
            let options = OpenAiOptions::openai().extra_body("logit_bias", json!({"151645": 100}));
            let s = settings(name, addr);
            let eos = claudette_http::HttpBackend::new(OpenAiAdapter::with_options(&s, options).unwrap(), &s)
                .unwrap();
            let r = eos.send(&say_hi(32)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.finish_reason, Some(FinishReason::Stop), "{name}: {:?}", r.content);
            let (_, events) = drain(&eos, &say_hi(32)).await;
            let Some(StreamEvent::Done { end }) = events.last() else { panic!("{name}: {events:?}") };
            assert_eq!(end.finish_reason, Some(FinishReason::Stop), "{name}: {events:?}");
        }
    });
}

#[test]
fn health_check_and_model_list() {
    let _serial = serial();
    runtime().block_on(async {
        for (name, addr, path) in SERVERS {
            if !up(name, addr, path) {
                continue;
            }
            let backend = claudette_openai::backend(&settings(name, addr)).unwrap();
            backend.health_check().await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let models = backend.available_models().await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(models, vec!["tiny-llama".to_owned()], "{name}");
        }
    });
}

#[test]
fn prompt_over_the_window_is_context_overflow() {
    let _serial = serial();
    runtime().block_on(async {
        // ~5,000 tokens against a 4,096-token slot.
        let long = "hello world ".repeat(2600);
        for (name, addr, path) in SERVERS {
            if !up(name, addr, path) {
                continue;
            }
            let backend = claudette_openai::backend(&settings(name, addr)).unwrap();
            let req = ChatRequest::prompt(long.clone()).with_max_tokens(2);
            let err = backend.send(&req).await.expect_err("the prompt does not fit");
            assert_eq!(err.kind, ErrorKind::ContextOverflow, "{name}: {err}");
            assert_eq!(err.status, Some(400), "{name}");
            assert_eq!(err.backend.as_deref(), Some(name));
            let err = match backend.send_stream(&req).await {
                Err(e) => e,
                Ok(stream) => {
                    // A server may only notice after the headers: then the stream's error event.
                    let events: Vec<_> = stream.collect().await;
                    match events.last() {
                        Some(StreamEvent::Error { error }) => error.clone(),
                        other => panic!("{name}: expected an error, got {other:?}"),
                    }
                }
            };
            // llama-cpp-python answers an oversized streamed prompt with 200 and an empty body:
            // nothing tells it from a cut connection, so it must be an interrupted stream, never
            // a success.
            let expected = if name == "llama-cpp-python" {
                ErrorKind::StreamInterrupted
            } else {
                ErrorKind::ContextOverflow
            };
            assert_eq!(err.kind, expected, "{name} (stream): {err}");
        }
    });
}

#[test]
fn readiness_check_says_no_for_a_closed_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    assert!(!ready(&addr, "/health"));
    assert!(!up("nothing", &addr, "/health"));
}

#[test]
fn closed_port_is_a_transport_error() {
    let _serial = serial();
    runtime().block_on(async {
        // Not the testbed: a port nobody listens on (F-01); needs no server.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let backend = claudette_openai::backend(&settings("gone", &addr)).unwrap();
        let err = backend.send(&say_hi(1)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transport, "{err}");
        assert_eq!(backend.health_check().await.unwrap_err().kind, ErrorKind::Transport);
    });
}

#[test]
fn registered_at_link_time_as_openai() {
    let _serial = serial();
    runtime().block_on(async {
        let registry = Registry::linked().unwrap();
        assert!(registry.get("openai").is_some());
        let backend = registry
            .build_from_value(json!({
                "provider": "openai", "name": "tb", "model": "tiny-llama",
                "base_url": format!("http://{LLAMA}/v1"), "stream_include_usage": false
            }))
            .unwrap();
        assert_eq!(backend.info().provider, "openai");
        assert_eq!(backend.name(), "tb");
        let typo =
            registry.build_from_value(json!({"provider": "openai", "name": "x", "stream_usage": true}));
        assert!(typo.unwrap_err().to_string().contains("stream_usage"));
        let no_key = registry.build_from_value(json!({"provider": "openai", "name": "nokey"}));
        assert!(no_key.unwrap_err().to_string().contains("api.openai.com"));
        let (name, addr, path) = SERVERS[0];
        if up(name, addr, path) {
            let r = backend.send(&say_hi(3)).await.unwrap();
            assert_eq!(r.backend, "tb");
        }
    });
}
