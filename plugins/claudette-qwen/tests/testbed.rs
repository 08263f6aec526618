//! Conformance against real OpenAI-compatible servers of the testbed (`/work/shared/testbed/`):
//! llama.cpp `llama-server` on 127.0.0.1:39180 and llama-cpp-python on 127.0.0.1:39181, both
//! serving the tiny random-weight model `tiny-llama` (a Qwen2 tokenizer and ChatML template).
//!
//! Every test checks that its server is up first (a short GET of its readiness URL) and
//! prints `skipped: …` and returns when it is not, so the suite runs anywhere.
//!
//! Two properties of the setup shape this file:
//! - All tests run on one shared runtime. `claudette-http` keeps one connection pool per
//!   process; with a runtime per test (`#[tokio::test]`), a pooled keep-alive connection
//!   opened by a finished test's runtime is dead for the next test ("runtime dropped the
//!   dispatch task").
//! - llama-cpp-python interrupts a running stream when another request arrives (its
//!   `interrupt_requests` default) and ends it with a bare `[DONE]`. The tests of this file
//!   take turns ([`turn`]); a stream cut by someone else's request (other test binaries use
//!   the same servers) is retried.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use claudette_core::{
    Backend, BackendSettings, ChatRequest, ErrorKind, EventStream, FinishReason, Registry, StreamEnd,
    StreamEvent, UsageSource,
};
use claudette_qwen::{QwenBackend, backend};
use futures::StreamExt;

#[derive(Debug, Clone, Copy)]
struct Server {
    name: &'static str,
    port: u16,
    /// Readiness URL path (llama-cpp-python has no `/health`).
    ready: &'static str,
    /// Whether it honours `stream_options.include_usage` (llama-cpp-python ignores it).
    stream_usage: bool,
}

const LLAMA_SERVER: Server =
    Server { name: "llama-server", port: 39180, ready: "/health", stream_usage: true };
const LLAMA_CPP_PYTHON: Server =
    Server { name: "llama-cpp-python", port: 39181, ready: "/v1/models", stream_usage: false };
const SERVERS: [Server; 2] = [LLAMA_SERVER, LLAMA_CPP_PYTHON];

impl Server {
    fn base_url(self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// A short, blocking readiness probe: `GET <ready>` answered 200 within a second or two.
    fn is_up(self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let timeouts = Some(Duration::from_secs(2));
        if conn.set_read_timeout(timeouts).is_err() || conn.set_write_timeout(timeouts).is_err() {
            return false;
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.ready, self.port
        );
        if conn.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut status = String::new();
        BufReader::new(conn).read_line(&mut status).is_ok() && status.split_whitespace().nth(1) == Some("200")
    }

    /// Whether to run; prints why not.
    fn check(self) -> bool {
        let up = self.is_up();
        if !up {
            println!(
                "skipped: {} is not up at {} (start the testbed: /work/shared/testbed/start.sh)",
                self.name,
                self.base_url()
            );
        }
        up
    }

    fn settings(self) -> BackendSettings {
        BackendSettings::new(format!("qwen-{}", self.name)).base_url(self.base_url()).model("tiny-llama")
    }

    fn backend(self) -> QwenBackend {
        backend(&self.settings()).unwrap()
    }
}

/// Runs a test body on the runtime shared by this file's tests, one test at a time.
fn turn<F: Future<Output = ()>>(test: F) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static TURN: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    });
    runtime.block_on(async {
        let _turn = TURN.lock().await;
        test.await;
    });
}

/// Greedy, short: the answer ends on the token cap, which is what these tests check.
fn capped(max_tokens: u32) -> ChatRequest {
    ChatRequest::prompt("Say hi").with_max_tokens(max_tokens).with_temperature(0.0)
}

async fn drain(mut stream: EventStream) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    while let Some(event) =
        tokio::time::timeout(Duration::from_secs(60), stream.next()).await.expect("stream stalled")
    {
        events.push(event);
    }
    events
}

fn text_and_end(events: &[StreamEvent]) -> (String, StreamEnd) {
    let mut text = String::new();
    for (i, e) in events.iter().enumerate() {
        match e {
            StreamEvent::TextDelta { text: t } => text.push_str(t),
            StreamEvent::Done { end } => {
                assert_eq!(i, events.len() - 1, "Done is the last event: {events:?}");
                return (text, end.clone());
            }
            StreamEvent::Error { error } => panic!("stream failed: {error}"),
            _ => {}
        }
    }
    panic!("stream ended without Done: {events:?}")
}

#[test]
fn non_stream_answer_ends_on_the_token_cap() {
    turn(async {
        for server in SERVERS {
            if !server.check() {
                continue;
            }
            let b = server.backend();
            let r = b.send(&capped(6)).await.unwrap_or_else(|e| panic!("{}: {e}", server.name));
            assert!(!r.content.is_empty(), "{}: {r:?}", server.name);
            assert_eq!(r.finish_reason, Some(FinishReason::Length), "{}", server.name);
            assert_eq!(r.usage.source, UsageSource::Reported, "{}", server.name);
            assert_eq!(r.usage.output_tokens, 6, "{}", server.name);
            assert!(r.usage.input_tokens > 0, "{}", server.name);
            assert_eq!((r.backend.as_str(), r.model.as_str()), (b.name(), "tiny-llama"));
            assert_eq!(r.cost, 0.0, "self-hosted is free");
            assert_eq!(r.reasoning, None);
            assert!(r.latency > Duration::ZERO);
            assert_eq!(b.info().provider, "qwen");
            // The I/O layer reported the call; a fast box keeps the base deadline.
            let adaptive = b.adapter().adaptive().snapshot();
            assert_eq!((adaptive.samples, adaptive.timeout), (1, Duration::from_secs(30)));
        }
    });
}

#[test]
fn one_token_cap_is_length_with_one_output_token() {
    turn(async {
        for server in SERVERS {
            if !server.check() {
                continue;
            }
            let r = server.backend().send(&capped(1)).await.unwrap();
            assert_eq!(
                (r.finish_reason, r.usage.output_tokens),
                (Some(FinishReason::Length), 1),
                "{}",
                server.name
            );
        }
    });
}

#[test]
fn stream_answer_ends_with_done_and_usage() {
    turn(async {
        for server in SERVERS {
            if !server.check() {
                continue;
            }
            let b = server.backend();
            let mut attempts = 0;
            let (events, text, end) = loop {
                attempts += 1;
                let stream =
                    b.send_stream(&capped(6)).await.unwrap_or_else(|e| panic!("{}: {e}", server.name));
                let events = drain(stream).await;
                let (text, end) = text_and_end(&events);
                // llama-cpp-python's answer to a concurrent request: a bare `[DONE]`.
                if text.is_empty() && end.finish_reason.is_none() && !server.stream_usage && attempts < 5 {
                    println!("{}: stream interrupted by another client's request; retrying", server.name);
                    tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
                    continue;
                }
                break (events, text, end);
            };
            assert!(!text.is_empty(), "{}: {events:?}", server.name);
            assert!(
                events.iter().filter(|e| matches!(e, StreamEvent::TextDelta { .. })).count() > 1,
                "streamed in pieces"
            );
            assert_eq!(end.finish_reason, Some(FinishReason::Length), "{}", server.name);
            if server.stream_usage {
                assert_eq!(
                    (end.usage.source, end.usage.output_tokens),
                    (UsageSource::Reported, 6),
                    "{}",
                    server.name
                );
            } else {
                // No usage from the server: the I/O layer estimates, and says so.
                assert_eq!(end.usage.source, UsageSource::Estimated, "{}", server.name);
            }
            assert_eq!(end.cost, 0.0);
        }
    });
}

#[test]
fn health_check_and_model_list() {
    turn(async {
        for server in SERVERS {
            if !server.check() {
                continue;
            }
            let b = server.backend();
            b.health_check().await.unwrap_or_else(|e| panic!("{}: {e}", server.name));
            let models = b.available_models().await.unwrap();
            assert!(models.iter().any(|m| m == "tiny-llama"), "{}: {models:?}", server.name);
        }
    });
}

#[test]
fn qwen_specific_body_fields_are_accepted() {
    turn(async {
        // `chat_template_kwargs` is what Qwen3 templates read `enable_thinking` from; servers
        // that do not use it must still take the request.
        for server in SERVERS {
            if !server.check() {
                continue;
            }
            let settings = server.settings().extra("enable_thinking", false).extra("split_think_tags", true);
            let r = backend(&settings)
                .unwrap()
                .send(&capped(3))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", server.name));
            assert_eq!(r.finish_reason, Some(FinishReason::Length), "{}", server.name);
        }
    });
}

#[test]
fn the_linked_registry_builds_qwen_backends() {
    turn(async {
        let registry = Registry::linked().unwrap();
        let factory = registry.get("qwen").expect("registered at link time");
        assert!(factory.description().contains("Qwen"));
        let settings = LLAMA_SERVER.settings();
        let built = registry.build("qwen", &settings).unwrap();
        assert_eq!((built.info().provider.as_str(), built.name()), ("qwen", "qwen-llama-server"));
        if !LLAMA_SERVER.check() {
            return;
        }
        let r = built.send(&capped(2)).await.unwrap();
        assert_eq!(r.usage.output_tokens, 2);
    });
}

#[test]
fn a_server_that_is_down_is_a_transport_error() {
    turn(async {
        let url = format!("{}/v1", claudette_testkit::closed_port_url().await);
        let settings = BackendSettings::new("qwen-down").base_url(url);
        let b = backend(&settings).unwrap();
        let e = b.send(&capped(2)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transport, "{e}");
        assert_eq!(e.backend.as_deref(), Some("qwen-down"));
    });
}
