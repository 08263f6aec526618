#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The router's response cache (reliability-spec S-11, F-36): hits answer without any upstream
//! call and book nothing, only complete answers are stored, each tenant has its own entries,
//! the per-request modes do what they say, and streams are replayed but never stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use claudette_core::{
    Backend, BackendError, BackendInfo, BackendRouter, BackendType, CacheKey, CacheMode, CacheStatus,
    ChatRequest, ChatResponse, EventStream, FinishReason, GroupBy, Pricing, ResponseCache, RouteOverrides,
    RouterOptions, StreamEnd, StreamEvent, Usage, UsageRecord, UsageSink,
};
use futures::StreamExt;
use parking_lot::Mutex;

/// A cache as `MemoryCache` behaves, minus eviction.
#[derive(Debug, Default)]
struct MapCache(Mutex<HashMap<CacheKey, ChatResponse>>);

impl ResponseCache for MapCache {
    fn get(&self, key: &CacheKey) -> Option<ChatResponse> {
        self.0.lock().get(key).cloned()
    }
    fn put(&self, key: CacheKey, response: &ChatResponse) {
        self.0.lock().insert(key, response.clone());
    }
}

#[derive(Debug, Default)]
struct CountSink(AtomicUsize);

impl UsageSink for CountSink {
    fn record(&self, _: &UsageRecord<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers `answer <n>` (n counts calls), or what the prompt asks for: `fail` is an error,
/// `filtered` a content-filtered answer, `long` one cut by `max_tokens`.
struct Counting {
    info: BackendInfo,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Backend for Counting {
    fn info(&self) -> &BackendInfo {
        &self.info
    }
    async fn send(&self, req: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let finish = match req.messages.last().map(|m| m.content.as_str()) {
            Some("fail") => return Err(BackendError::invalid("no")),
            Some("filtered") => FinishReason::ContentFilter,
            Some("long") => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        Ok(ChatResponse {
            content: format!("answer {n}"),
            finish_reason: Some(finish),
            usage: Usage::reported(10, 2),
            cost: 0.5,
            ..ChatResponse::empty(self.info.name.clone(), "m")
        })
    }
    async fn send_stream(&self, _: &ChatRequest) -> Result<EventStream, BackendError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let end =
            StreamEnd { finish_reason: Some(FinishReason::Stop), usage: Usage::reported(10, 2), cost: 0.25 };
        Ok(Box::pin(futures::stream::iter([
            StreamEvent::text(format!("streamed {n}")),
            StreamEvent::Done { end },
        ])))
    }
    async fn health_check(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn available_models(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }
}

struct Setup {
    router: BackendRouter,
    backend: Arc<Counting>,
    sink: Arc<CountSink>,
}

impl Setup {
    fn calls(&self) -> usize {
        self.backend.calls.load(Ordering::SeqCst)
    }
}

fn setup() -> Setup {
    let backend = Arc::new(Counting {
        info: BackendInfo {
            name: "b1".to_owned(),
            provider: "test".to_owned(),
            backend_type: BackendType::Cloud,
            model: "m".to_owned(),
            priority: 0,
            pricing: Pricing::new(1.0, 1.0),
            quality: 0.5,
            supports_streaming: true,
            supports_tools: false,
            context_window: None,
            region: None,
            tags: Vec::new(),
            enabled: true,
        },
        calls: AtomicUsize::new(0),
    });
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(backend.clone()).unwrap();
    router.set_response_cache(Arc::new(MapCache::default())).unwrap();
    let sink = Arc::new(CountSink::default());
    router.set_usage_sink(sink.clone()).unwrap();
    Setup { router, backend, sink }
}

fn mode(cache: CacheMode) -> RouteOverrides {
    RouteOverrides { cache, ..RouteOverrides::default() }
}

#[tokio::test]
async fn a_hit_is_answered_without_a_call_and_bills_nothing() {
    let s = setup();
    assert!(s.router.set_response_cache(Arc::new(MapCache::default())).is_err(), "once only");
    let req = ChatRequest { request_id: Some("r1".into()), ..ChatRequest::prompt("hi") };
    let first = s.router.route_request(&req).await.unwrap();
    assert!(!first.cache_hit);
    assert_eq!(first.decision.as_ref().unwrap().cache, Some(CacheStatus::Miss));

    let before = SystemTime::now();
    // Another id: the caller's label, not the question.
    let again = ChatRequest { request_id: Some("r2".into()), ..req.clone() };
    let hit = s.router.route_request(&again).await.unwrap();
    assert_eq!(s.calls(), 1, "no upstream call");
    assert!(hit.cache_hit);
    assert_eq!((hit.content.as_str(), hit.backend.as_str()), ("answer 1", "b1"));
    assert_eq!(hit.cost, 0.0);
    assert_eq!(hit.usage, first.usage, "the answer's own tokens");
    assert!(hit.latency < SystemTime::now().duration_since(before).unwrap() + Duration::from_millis(1));
    let d = hit.decision.unwrap();
    assert_eq!(d.cache, Some(CacheStatus::Hit));
    assert!(d.attempts.is_empty() && d.candidates.is_empty(), "{d:?}");
    assert_eq!(d.compact(), ";;cache:hit");

    // Booked once: the ledger, the tracker and the backend's figures saw one request.
    assert_eq!(s.sink.0.load(Ordering::SeqCst), 1);
    let costs = s.router.analyze_costs(Duration::from_secs(3600), GroupBy::Backend);
    assert_eq!((costs.total_requests, costs.total_cost), (1, 0.5));
    let p = s.router.performance_metrics("b1").unwrap();
    assert_eq!((p.total_requests, p.successes), (1, 1));
}

#[tokio::test]
async fn only_complete_answers_are_stored() {
    let s = setup();
    for _ in 0..2 {
        assert!(s.router.route_request(&ChatRequest::prompt("fail")).await.is_err());
    }
    assert_eq!(s.calls(), 2, "an error is not cached");
    let e = s.router.route_request(&ChatRequest::prompt("fail")).await.unwrap_err();
    assert_eq!(e.decision.cache, Some(CacheStatus::Miss));

    s.router.route_request(&ChatRequest::prompt("filtered")).await.unwrap();
    s.router.route_request(&ChatRequest::prompt("filtered")).await.unwrap();
    assert_eq!(s.calls(), 5, "a filtered answer is not cached");

    s.router.route_request(&ChatRequest::prompt("long")).await.unwrap();
    let hit = s.router.route_request(&ChatRequest::prompt("long")).await.unwrap();
    assert_eq!(s.calls(), 6, "an answer cut by max_tokens is the whole answer to that request");
    assert_eq!(hit.finish_reason, Some(FinishReason::Length));
}

/// F-36: the same request from two tenants is two entries; neither sees the other's answer,
/// and the anonymous scope is a third.
#[tokio::test]
async fn each_tenant_has_its_own_answers() {
    let s = setup();
    let as_tenant =
        |t: Option<&str>| ChatRequest { tenant: t.map(str::to_owned), ..ChatRequest::prompt("hi") };
    let a = s.router.route_request(&as_tenant(Some("team-a"))).await.unwrap();
    let b = s.router.route_request(&as_tenant(Some("team-b"))).await.unwrap();
    let anon = s.router.route_request(&as_tenant(None)).await.unwrap();
    assert_eq!(s.calls(), 3);
    assert!(!a.cache_hit && !b.cache_hit && !anon.cache_hit);
    let a2 = s.router.route_request(&as_tenant(Some("team-a"))).await.unwrap();
    let anon2 = s.router.route_request(&as_tenant(None)).await.unwrap();
    assert_eq!(s.calls(), 3);
    assert_eq!((a2.content.as_str(), anon2.content.as_str()), ("answer 1", "answer 3"));
}

#[tokio::test]
async fn refresh_skips_the_lookup_and_bypass_leaves_the_cache_alone() {
    let s = setup();
    let req = ChatRequest::prompt("hi");
    s.router.route_request(&req).await.unwrap();
    let fresh = s.router.route_request_with(&req, mode(CacheMode::Refresh)).await.unwrap();
    assert_eq!((s.calls(), fresh.content.as_str(), fresh.cache_hit), (2, "answer 2", false));
    assert_eq!(fresh.decision.unwrap().cache, Some(CacheStatus::Miss));
    // The fresh answer replaced the old one.
    assert_eq!(s.router.route_request(&req).await.unwrap().content, "answer 2");

    let bypassed = s.router.route_request_with(&req, mode(CacheMode::Bypass)).await.unwrap();
    assert_eq!((s.calls(), bypassed.content.as_str()), (3, "answer 3"));
    assert_eq!(bypassed.decision.unwrap().cache, Some(CacheStatus::Bypass));
    assert_eq!(s.router.route_request(&req).await.unwrap().content, "answer 2", "not stored");

    let other = ChatRequest::prompt("other");
    s.router.route_request_with(&other, mode(CacheMode::Bypass)).await.unwrap();
    assert!(!s.router.route_request(&other).await.unwrap().cache_hit);
    assert_eq!(s.calls(), 5);
}

#[tokio::test]
async fn a_hit_streams_as_a_replay_and_a_stream_is_not_stored() {
    let s = setup();
    let req = ChatRequest::prompt("hi");
    s.router.route_request(&req).await.unwrap();
    let stream = s.router.route_stream(&req).await.unwrap();
    assert!(stream.is_cache_hit());
    assert_eq!(stream.backend(), "b1");
    assert_eq!(stream.decision().cache, Some(CacheStatus::Hit));
    let events: Vec<StreamEvent> = stream.collect().await;
    assert_eq!(s.calls(), 1);
    assert_eq!(events[0], StreamEvent::Usage { usage: Usage::reported(10, 2) });
    assert_eq!(events[1], StreamEvent::text("answer 1"));
    match events.last() {
        Some(StreamEvent::Done { end }) => {
            assert_eq!((end.cost, end.finish_reason.clone()), (0.0, Some(FinishReason::Stop)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.sink.0.load(Ordering::SeqCst), 1, "a replay books nothing");

    let streamed = ChatRequest::prompt("streamed");
    let live = s.router.route_stream(&streamed).await.unwrap();
    assert!(!live.is_cache_hit());
    assert_eq!(live.decision().cache, Some(CacheStatus::Miss));
    let events: Vec<StreamEvent> = live.collect().await;
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
    let after = s.router.route_request(&streamed).await.unwrap();
    assert!(!after.cache_hit, "a streamed answer is not stored");
    assert_eq!(s.calls(), 3);
}

#[tokio::test]
async fn without_a_cache_nothing_changes() {
    let router = BackendRouter::new(RouterOptions::default());
    let s = setup();
    router.register_backend(s.backend.clone()).unwrap();
    assert!(!router.has_response_cache());
    let r = router.route_request(&ChatRequest::prompt("hi")).await.unwrap();
    let again = router.route_request(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(s.calls(), 2);
    assert!(!again.cache_hit);
    assert_eq!(r.decision.unwrap().cache, None);
    assert!(!again.decision.unwrap().compact().contains("cache"));
}
