#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The router hands every billed attempt to its `UsageSink` with the figures `analyze_costs`
//! counts: complete answers, finished streams, streams failed after commit, streams the client
//! dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use claudette_core::{
    Backend, BackendError, BackendInfo, BackendRouter, BackendType, ChatRequest, ChatResponse, EventStream,
    GroupBy, Pricing, RouterOptions, StreamEnd, StreamEvent, Usage, UsageOutcome, UsageRecord, UsageSink,
};
use futures::StreamExt;
use parking_lot::Mutex;

/// What a sink kept of one record (owned).
#[derive(Debug, Clone, PartialEq)]
struct Kept {
    request_id: Option<String>,
    backend: String,
    model: String,
    input: u32,
    output: u32,
    cache_read: u32,
    cost: f64,
    outcome: UsageOutcome,
}

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Kept>>);

impl UsageSink for Collect {
    fn record(&self, r: &UsageRecord<'_>) {
        let age = SystemTime::now().duration_since(r.at).unwrap_or_default();
        assert!(age < Duration::from_secs(60), "wall-clock time, not the router's monotonic clock");
        self.0.lock().push(Kept {
            request_id: r.request_id.map(str::to_owned),
            backend: r.backend.to_owned(),
            model: r.model.to_owned(),
            input: r.input_tokens,
            output: r.output_tokens,
            cache_read: r.cache_read_tokens,
            cost: r.cost,
            outcome: r.outcome,
        });
    }
}

/// Answers `send` with usage that has cache reads; streams: text then what the request's last
/// message says (`done`, `error`, or nothing more until dropped).
struct Fixed(BackendInfo);

fn usage() -> Usage {
    Usage { cache_read_tokens: 4, ..Usage::reported(10, 2) }
}

#[async_trait::async_trait]
impl Backend for Fixed {
    fn info(&self) -> &BackendInfo {
        &self.0
    }
    async fn send(&self, _: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let mut r = ChatResponse::empty(self.0.name.clone(), "m");
        r.usage = usage();
        r.cost = 0.5;
        Ok(r)
    }
    async fn send_stream(&self, req: &ChatRequest) -> Result<EventStream, BackendError> {
        let end = match req.messages.last().map(|m| m.content.as_str()) {
            Some("done") => {
                StreamEvent::Done { end: StreamEnd { finish_reason: None, usage: usage(), cost: 0.25 } }
            }
            Some("error") => StreamEvent::Error { error: BackendError::interrupted("cut") },
            _ => {
                return Ok(Box::pin(
                    futures::stream::iter([StreamEvent::text("hi")]).chain(futures::stream::pending()),
                ));
            }
        };
        Ok(Box::pin(futures::stream::iter([StreamEvent::text("hi"), end])))
    }
    async fn health_check(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn available_models(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(Fixed(BackendInfo {
        name: "fixed".to_owned(),
        provider: "test".to_owned(),
        backend_type: BackendType::Cloud,
        model: "m".to_owned(),
        priority: 0,
        pricing: Pricing::new(1000.0, 1000.0),
        quality: 0.5,
        supports_streaming: true,
        supports_tools: false,
        supports_images: false,
        context_window: None,
        region: None,
        tags: Vec::new(),
        enabled: true,
    }))
}

#[tokio::test]
async fn every_billed_attempt_reaches_the_sink_with_the_tracked_figures() {
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(backend()).unwrap();
    let sink = Arc::new(Collect::default());
    router.set_usage_sink(sink.clone()).unwrap();
    assert!(router.set_usage_sink(Arc::new(Collect::default())).is_err(), "a second sink is refused");

    router.route_request(&ChatRequest::prompt("x")).await.unwrap();
    let done: Vec<_> = router.route_stream(&ChatRequest::prompt("done")).await.unwrap().collect().await;
    assert!(matches!(done.last(), Some(StreamEvent::Done { .. })));
    let failed: Vec<_> = router.route_stream(&ChatRequest::prompt("error")).await.unwrap().collect().await;
    assert!(matches!(failed.last(), Some(StreamEvent::Error { .. })));
    let mut abandoned = router.route_stream(&ChatRequest::prompt("hang")).await.unwrap();
    assert!(abandoned.next().await.is_some());
    drop(abandoned);

    let kept = sink.0.lock().clone();
    let outcomes: Vec<_> = kept.iter().map(|k| k.outcome).collect();
    assert_eq!(
        outcomes,
        [UsageOutcome::Success, UsageOutcome::Success, UsageOutcome::Failed, UsageOutcome::Abandoned]
    );
    assert!(kept.iter().all(|k| k.backend == "fixed" && k.model == "m"));
    assert_eq!((kept[0].input, kept[0].output, kept[0].cache_read, kept[0].cost), (10, 2, 4, 0.5));
    assert_eq!((kept[1].cache_read, kept[1].cost), (4, 0.25));
    // The partial streams carry the router's estimates, priced: never free.
    assert!(kept[2].cost > 0.0 && kept[3].cost > 0.0, "{kept:?}");

    let a = router.analyze_costs(Duration::from_secs(3600), GroupBy::Backend);
    assert_eq!(a.total_requests, 4);
    let sum: f64 = kept.iter().map(|k| k.cost).sum();
    assert!((a.total_cost - sum).abs() < 1e-12, "sink {sum} vs tracker {}", a.total_cost);
    let tokens: u64 = kept.iter().map(|k| u64::from(k.input + k.output)).sum();
    assert_eq!(a.total_tokens, tokens);
}

/// Every booking of a request carries its id, so a ledger row can be tied to the request's
/// logs and to the id its client was given: answers, finished streams, streams failed after
/// commit and streams the client dropped. A request without an id books none.
#[tokio::test]
async fn every_booking_carries_the_request_id() {
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(backend()).unwrap();
    let sink = Arc::new(Collect::default());
    router.set_usage_sink(sink.clone()).unwrap();
    let with_id = |text: &str, id: &str| {
        let mut r = ChatRequest::prompt(text);
        r.request_id = Some(id.to_owned());
        r
    };

    router.route_request(&with_id("x", "req-json")).await.unwrap();
    let _: Vec<_> = router.route_stream(&with_id("done", "req-done")).await.unwrap().collect().await;
    let _: Vec<_> = router.route_stream(&with_id("error", "req-failed")).await.unwrap().collect().await;
    let mut abandoned = router.route_stream(&with_id("hang", "req-abandoned")).await.unwrap();
    assert!(abandoned.next().await.is_some());
    drop(abandoned);
    router.route_request(&ChatRequest::prompt("x")).await.unwrap();

    let kept = sink.0.lock().clone();
    let ids: Vec<_> = kept.iter().map(|k| (k.request_id.as_deref(), k.outcome)).collect();
    assert_eq!(
        ids,
        [
            (Some("req-json"), UsageOutcome::Success),
            (Some("req-done"), UsageOutcome::Success),
            (Some("req-failed"), UsageOutcome::Failed),
            (Some("req-abandoned"), UsageOutcome::Abandoned),
            (None, UsageOutcome::Success),
        ]
    );
}
