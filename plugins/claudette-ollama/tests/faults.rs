//! The Ollama backend over real HTTP on 127.0.0.1, against `claudette-testkit`'s fake server:
//! round trips, streams, and the failures a stream or a server can produce.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_core::{
    Backend, BackendRouter, BackendSettings, ChatRequest, ErrorKind, FinishReason, Outcome, Registry,
    RetryAction, RouterOptions, StreamEvent, Timeouts, UsageSource,
};
use claudette_testkit::events::text_of;
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

fn settings(server: &FakeServer) -> BackendSettings {
    BackendSettings::new("ollama-test").model("llama3.2").base_url(server.url())
}

async fn collect(backend: &claudette_ollama::OllamaBackend, request: &ChatRequest) -> Vec<StreamEvent> {
    let stream = backend.send_stream(request).await.unwrap();
    stream.collect().await
}

#[tokio::test]
async fn non_stream_round_trip() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_text("hello from the fake"));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let request = ChatRequest::prompt("hi").with_max_tokens(32);
    let answer = backend.send(&request).await.unwrap();
    assert_eq!(answer.content, "hello from the fake");
    assert_eq!(answer.finish_reason, Some(FinishReason::Stop));
    assert_eq!(answer.usage.source, UsageSource::Reported);
    assert_eq!(answer.usage.output_tokens, 4);
    assert_eq!(answer.backend, "ollama-test");
    assert_eq!(answer.cost, 0.0);

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/api/chat");
    assert_eq!(received[0].header("authorization"), None);
    let body = received[0].json();
    assert_eq!(body["stream"], json!(false));
    assert_eq!(body["options"], json!({"num_ctx": 8192, "num_predict": 32}));
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
}

#[tokio::test]
async fn tool_call_round_trip() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_tool_call("get_weather", json!({"city": "Oslo"})));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let answer = backend.send(&ChatRequest::prompt("weather in Oslo?")).await.unwrap();
    assert_eq!(answer.tool_calls.len(), 1);
    assert_eq!(answer.tool_calls[0].name, "get_weather");
    assert_eq!(answer.tool_calls[0].arguments, json!({"city": "Oslo"}));
    assert!(answer.tool_calls[0].id.starts_with("call_"));
    assert_eq!(answer.finish_reason, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn stream_round_trip() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_stream(&["Hel", "lo, ", "wörld 涌现"]));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let events = collect(&backend, &ChatRequest::prompt("hi")).await;
    assert_eq!(text_of(&events), "Hello, wörld 涌现");
    let Some(StreamEvent::Done { end }) = events.last() else { panic!("{events:?}") };
    assert_eq!(end.finish_reason, Some(FinishReason::Stop));
    assert_eq!(end.usage.source, UsageSource::Reported);
    assert_eq!(end.usage.output_tokens, 3);
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
    let body = server.last_json().unwrap();
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["options"]["num_ctx"], json!(8192));
    assert_eq!(server.received()[0].header("accept"), Some("application/x-ndjson"));
}

#[tokio::test]
async fn stream_split_into_single_bytes_f18() {
    let server = FakeServer::start().await;
    let whole = Reply::ollama_stream(&["é", "涌现", " ok"]).body_bytes();
    server.push(Reply::chunks(200, "application/x-ndjson", whole.iter().map(|b| vec![*b]).collect()));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let events = collect(&backend, &ChatRequest::prompt("hi")).await;
    assert_eq!(text_of(&events), "é涌现 ok");
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
}

#[tokio::test]
async fn model_not_pulled_is_not_found_and_neutral_f38() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_error(404, "model \"llama3.2\" not found, try pulling it first"));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let err = backend.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.outcome(), Outcome::Neutral);
    assert_eq!(err.status, Some(404));
    assert_eq!(err.backend.as_deref(), Some("ollama-test"));
    // The same through the stream entry point: an `Err` before any event.
    server.push(Reply::ollama_error(404, "model \"llama3.2\" not found, try pulling it first"));
    let err = backend.send_stream(&ChatRequest::prompt("hi")).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn server_errors_classify() {
    let server = FakeServer::start().await;
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    for (reply, kind) in [
        (Reply::ollama_error(500, "llama runner process has terminated"), ErrorKind::Overloaded),
        (Reply::ollama_error(400, "invalid message format"), ErrorKind::InvalidRequest),
        (Reply::ollama_error(503, "server busy, please try again"), ErrorKind::Overloaded),
        (Reply::raw(502, "<html>Bad Gateway</html>"), ErrorKind::Overloaded),
    ] {
        server.push(reply);
        let err = backend.send(&ChatRequest::prompt("hi")).await.unwrap_err();
        assert_eq!(err.kind, kind, "{err}");
    }
}

/// Ollama answers a request with tools for a model whose template has none with
/// `400 {"error":"<model> does not support tools"}` (ollama/ollama #5793, #14795). The request
/// is fine; this backend cannot serve it, so the router must try one that can.
#[tokio::test]
async fn model_without_tool_support_fails_over() {
    let weak = FakeServer::start().await;
    let strong = FakeServer::start().await;
    weak.push(Reply::ollama_error(400, "registry.ollama.ai/library/gemma3:4b does not support tools"));
    strong.push(Reply::ollama_tool_call("get_weather", json!({"city": "Oslo"})));
    let mut request = ChatRequest::prompt("weather in Oslo?");
    request.tools = vec![claudette_core::ToolSpec {
        name: "get_weather".into(),
        description: "Current weather".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        cache: None,
        strict: false,
    }];

    let router = BackendRouter::new(RouterOptions::default());
    let weak_backend = BackendSettings::new("weak").model("gemma3:4b").base_url(weak.url());
    let strong_backend = BackendSettings::new("strong").model("qwen3").base_url(strong.url());
    router.register_backend(claudette_ollama::backend(&weak_backend).unwrap().shared()).unwrap();
    router.register_backend(claudette_ollama::backend(&strong_backend).unwrap().shared()).unwrap();
    router.set_failover_chain(["weak", "strong"]).unwrap();
    let answer = router.route_request(&request).await.unwrap();
    assert_eq!(answer.backend, "strong");
    assert_eq!(answer.tool_calls[0].name, "get_weather");
    assert_eq!(weak.post_requests(), 1);

    // The error itself: the backend lacks a capability, which is not the server failing.
    weak.push(Reply::ollama_error(400, "registry.ollama.ai/library/gemma3:4b does not support tools"));
    let err = claudette_ollama::backend(&weak_backend).unwrap().send(&request).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    assert_eq!(err.outcome(), Outcome::Neutral);
    assert_eq!(err.action(), RetryAction::FailOver);
    assert_eq!(err.status, Some(400));
}

#[tokio::test]
async fn error_line_in_a_200_stream_f16() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_stream_error_after(&["partial ", "answer"]));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let events = collect(&backend, &ChatRequest::prompt("hi")).await;
    assert_eq!(text_of(&events), "partial answer");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::Overloaded);
    assert_eq!(error.outcome(), Outcome::Failure);
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Done { .. })));
}

#[tokio::test]
async fn stream_without_final_line_is_an_error_f17() {
    let server = FakeServer::start().await;
    let lines = vec![
        json!({"model": "llama3.2", "message": {"role": "assistant", "content": "looks "}, "done": false}),
        json!({"model": "llama3.2", "message": {"role": "assistant", "content": "complete"}, "done": false}),
    ];
    server.push(Reply::ndjson(lines));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let events = collect(&backend, &ChatRequest::prompt("hi")).await;
    assert_eq!(text_of(&events), "looks complete");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::StreamInterrupted);
}

#[tokio::test]
async fn connection_cut_mid_stream_is_an_error() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_stream(&["one ", "two ", "three"]).cut_after(2));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let events = collect(&backend, &ChatRequest::prompt("hi")).await;
    assert_eq!(text_of(&events), "one two ");
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })), "{events:?}");
}

#[tokio::test]
async fn malformed_line_is_an_error_f19() {
    let server = FakeServer::start().await;
    server.push(Reply::chunks(
        200,
        "application/x-ndjson",
        vec![
            b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"done\":false}\n"
                .to_vec(),
            b"{\"model\":\"m\",\"message\":{\"content\":\"tru\n".to_vec(),
        ],
    ));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let events = collect(&backend, &ChatRequest::prompt("hi")).await;
    assert_eq!(text_of(&events), "ok");
    let Some(StreamEvent::Error { error }) = events.last() else { panic!("{events:?}") };
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
}

#[tokio::test]
async fn truncation_warning_reaches_the_caller() {
    let server = FakeServer::start().await;
    server.push(Reply::json(
        200,
        json!({"model": "llama3.2", "message": {"role": "assistant", "content": "summary"}, "done": true,
               "done_reason": "stop", "prompt_eval_count": 8192, "eval_count": 3}),
    ));
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    let answer = backend.send(&ChatRequest::prompt("lorem ipsum ".repeat(4_000))).await.unwrap();
    assert_eq!(answer.warnings.len(), 1, "{:?}", answer.warnings);
    assert!(answer.warnings[0].contains("num_ctx"));
}

#[tokio::test]
async fn health_check_and_model_list_use_api_tags() {
    let server = FakeServer::start().await;
    server.set_models(&["llama3.2:latest", "qwen3:4b"]);
    let backend = claudette_ollama::backend(&settings(&server)).unwrap();
    backend.health_check().await.unwrap();
    assert_eq!(backend.available_models().await.unwrap(), vec!["llama3.2:latest", "qwen3:4b"]);
    let received = server.received();
    assert!(received.iter().all(|r| r.method == "GET" && r.path == "/api/tags"), "{received:?}");
    // No completion was spent on health.
    assert_eq!(server.post_requests(), 0);
}

#[tokio::test]
async fn bearer_key_for_a_proxied_server() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_text("ok"));
    let backend = claudette_ollama::backend(&settings(&server).api_key("proxy-secret-123")).unwrap();
    backend.send(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(server.received()[0].header("authorization"), Some("Bearer proxy-secret-123"));
}

#[tokio::test]
async fn slow_first_byte_times_out() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_text("late").delay(Duration::from_secs(5)));
    let timeouts = Timeouts { first_byte: Duration::from_millis(300), ..Timeouts::default() };
    let backend = claudette_ollama::backend(&settings(&server).timeouts(timeouts)).unwrap();
    let err = backend.send(&ChatRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
}

#[tokio::test]
async fn registered_at_link_time() {
    let server = FakeServer::start().await;
    server.push(Reply::ollama_text("via the registry"));
    let registry = Registry::linked().unwrap();
    assert!(registry.get("ollama").is_some());
    let backend = registry
        .build_from_value(
            json!({"provider": "ollama", "name": "reg", "model": "llama3.2", "base_url": server.url(),
                                 "num_ctx": 4096}),
        )
        .unwrap();
    assert_eq!(backend.info().context_window, Some(4096));
    assert_eq!(backend.send(&ChatRequest::prompt("hi")).await.unwrap().content, "via the registry");
    assert_eq!(server.last_json().unwrap()["options"]["num_ctx"], json!(4096));
    // A typo in a provider setting is a config error, not a silent default.
    let err = registry
        .build_from_value(json!({"provider": "ollama", "name": "reg", "model": "m", "num_ctxx": 4096}))
        .err()
        .unwrap();
    assert!(err.to_string().contains("num_ctxx"), "{err}");
}
