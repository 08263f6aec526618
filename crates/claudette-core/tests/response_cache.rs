#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The router's response cache (reliability-spec S-11, F-36): hits answer without any upstream
//! call and book nothing, only complete answers are stored, each tenant has its own entries,
//! the per-request modes do what they say, and streams are replayed, and stored only when they
//! complete.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use claudette_core::{
    AttemptOutcome, Backend, BackendError, BackendInfo, BackendRouter, BackendType, CacheKey, CacheMode,
    CacheStatus, ChatRequest, ChatResponse, EventStream, FinishReason, GroupBy, Pricing, ResponseCache,
    RouteOverrides, RouterOptions, StreamEnd, StreamEvent, ThinkingBlock, ThinkingSeal, ToolCall,
    ToolCallDelta, Usage, UsageRecord, UsageSink,
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
/// `filtered` a content-filtered answer, `long` one cut by `max_tokens`. Streams `streamed <n>`,
/// or, the first time a prompt is streamed, what [`stream_of`] makes of it.
struct Counting {
    info: BackendInfo,
    calls: AtomicUsize,
    /// Streams asked for, by prompt: a prompt asking for a broken stream gets one only the
    /// first time.
    streams: Mutex<HashMap<String, usize>>,
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
    async fn send_stream(&self, req: &ChatRequest) -> Result<EventStream, BackendError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let prompt = req.messages.last().map_or("", |m| m.content.as_str());
        let mut streams = self.streams.lock();
        let seen = streams.entry(prompt.to_owned()).or_default();
        *seen += 1;
        stream_of(if *seen == 1 { prompt } else { "" }, n)
    }
    async fn health_check(&self) -> Result<(), BackendError> {
        Ok(())
    }
    async fn available_models(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }
}

fn done(finish_reason: FinishReason) -> StreamEvent {
    StreamEvent::Done {
        end: StreamEnd { finish_reason: Some(finish_reason), usage: Usage::reported(10, 2), cost: 0.25 },
    }
}

fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> StreamEvent {
    StreamEvent::ToolCall {
        delta: ToolCallDelta {
            index,
            id: id.map(str::to_owned),
            name: name.map(str::to_owned),
            arguments: arguments.to_owned(),
        },
    }
}

/// The stream a prompt asks for: `refused` fails before any content, `fail-late` after some,
/// `cut` ends without a terminal event, `hang` never ends, `filtered` is content-filtered,
/// `tools` calls two tools in interleaved fragments, `think` reasons in a signed block;
/// anything else is `streamed <n>` in two pieces.
fn stream_of(prompt: &str, n: usize) -> Result<EventStream, BackendError> {
    let usage = StreamEvent::Usage { usage: Usage::reported(10, 0) };
    let events: Vec<StreamEvent> = match prompt {
        "refused" => return Err(BackendError::invalid("no")),
        "fail-late" => vec![
            StreamEvent::text("half an ans"),
            StreamEvent::Error { error: BackendError::interrupted("connection reset") },
        ],
        "cut" => vec![StreamEvent::text("half an ans")],
        "hang" => {
            let head = futures::stream::iter([usage, StreamEvent::text("half an ans")]);
            return Ok(Box::pin(head.chain(futures::stream::pending())));
        }
        "filtered" => vec![StreamEvent::text("I can"), done(FinishReason::ContentFilter)],
        "tools" => vec![
            usage,
            StreamEvent::text("Checking."),
            call(0, Some("call_w"), Some("weather"), ""),
            call(1, Some("call_t"), Some("time"), "{\"tz\""),
            call(0, None, None, "{\"ci"),
            call(0, None, None, "ty\": \"Par"),
            call(1, None, None, ": \"CET\"}"),
            call(0, None, None, "is\", \"days\": [1, 2]}"),
            done(FinishReason::ToolCalls),
        ],
        "think" => vec![
            usage,
            StreamEvent::ReasoningDelta { text: "Two and ".into() },
            StreamEvent::ReasoningDelta { text: "two.".into() },
            StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature("sig-abc".into()) },
            StreamEvent::text("4"),
            done(FinishReason::Stop),
        ],
        _ => vec![
            usage,
            StreamEvent::text("streamed "),
            StreamEvent::text(n.to_string()),
            done(FinishReason::Stop),
        ],
    };
    Ok(Box::pin(futures::stream::iter(events)))
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
            supports_images: false,
            context_window: None,
            region: None,
            tags: Vec::new(),
            enabled: true,
        },
        calls: AtomicUsize::new(0),
        streams: Mutex::default(),
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
async fn a_hit_streams_as_a_replay() {
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
}

async fn stream_all(s: &Setup, req: &ChatRequest) -> Vec<StreamEvent> {
    s.router.route_stream(req).await.unwrap().collect().await
}

fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// S-11: a stream that completes is stored as the answer a JSON call would have got, and
/// answers the same request after it, streamed or not, with no upstream call and nothing
/// booked.
#[tokio::test]
async fn a_completed_stream_is_stored() {
    let s = setup();
    let req = ChatRequest::prompt("hi");
    let live = s.router.route_stream(&req).await.unwrap();
    assert!(!live.is_cache_hit());
    assert_eq!(live.decision().cache, Some(CacheStatus::Miss));
    let events: Vec<StreamEvent> = live.collect().await;
    assert_eq!(text_of(&events), "streamed 1");
    assert_eq!((s.calls(), s.sink.0.load(Ordering::SeqCst)), (1, 1));

    let json = s.router.route_request(&req).await.unwrap();
    assert_eq!(s.calls(), 1, "answered from the stored stream");
    assert!(json.cache_hit);
    assert_eq!(
        (json.content.as_str(), json.backend.as_str(), json.model.as_str()),
        ("streamed 1", "b1", "m")
    );
    assert_eq!(json.usage, Usage::reported(10, 2), "the stream's final usage");
    assert_eq!((json.finish_reason, json.cost), (Some(FinishReason::Stop), 0.0));

    let again = s.router.route_stream(&req).await.unwrap();
    assert!(again.is_cache_hit());
    let replayed: Vec<StreamEvent> = again.collect().await;
    assert_eq!(s.calls(), 1);
    assert_eq!(text_of(&replayed), "streamed 1");
    match replayed.last() {
        Some(StreamEvent::Done { end }) => assert_eq!(end.usage, Usage::reported(10, 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.sink.0.load(Ordering::SeqCst), 1, "hits book nothing");

    // Refresh stores the new stream over the old answer; bypass stores nothing.
    s.router.route_stream_with(&req, mode(CacheMode::Refresh)).await.unwrap().collect::<Vec<_>>().await;
    assert_eq!(s.router.route_request(&req).await.unwrap().content, "streamed 2");
    let other = ChatRequest::prompt("other");
    s.router.route_stream_with(&other, mode(CacheMode::Bypass)).await.unwrap().collect::<Vec<_>>().await;
    assert!(!s.router.route_request(&other).await.unwrap().cache_hit, "no-store stored the stream");
}

/// S-11: errors and partial streams are never cached. A stream refused before any content,
/// one that fails after it committed, one cut without an end, one the caller drops, and one a
/// content filter ended each leave nothing: the same request streamed again goes upstream,
/// and that stream, which completes, is the one stored.
#[tokio::test]
async fn failed_cut_abandoned_and_filtered_streams_store_nothing() {
    let s = setup();
    let mut calls = 0;
    for prompt in ["refused", "fail-late", "cut", "hang", "filtered"] {
        let req = ChatRequest::prompt(prompt);
        match prompt {
            "refused" => assert!(s.router.route_stream(&req).await.is_err()),
            "hang" => {
                // The caller reads some of the answer and goes away.
                let mut stream = s.router.route_stream(&req).await.unwrap();
                assert_eq!(stream.next().await, Some(StreamEvent::Usage { usage: Usage::reported(10, 0) }));
                assert_eq!(stream.next().await, Some(StreamEvent::text("half an ans")));
                drop(stream);
            }
            _ => {
                let mut stream = s.router.route_stream(&req).await.unwrap();
                let mut events = Vec::new();
                while let Some(ev) = stream.next().await {
                    events.push(ev);
                }
                let outcome = stream.decision().attempts.last().map(|a| a.outcome);
                if prompt == "filtered" {
                    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })), "{events:?}");
                } else {
                    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })), "{prompt}: {events:?}");
                    assert_eq!(outcome, Some(AttemptOutcome::FailedAfterCommit), "{prompt}");
                }
            }
        }
        calls += 1;
        assert_eq!(s.calls(), calls);

        let again = s.router.route_stream(&req).await.unwrap();
        assert!(!again.is_cache_hit(), "{prompt}: a broken stream was stored");
        let events: Vec<StreamEvent> = again.collect().await;
        calls += 1;
        assert_eq!(text_of(&events), format!("streamed {calls}"), "{prompt}");
        let stored = s.router.route_request(&req).await.unwrap();
        assert!(stored.cache_hit, "{prompt}: the complete stream was not stored");
        assert_eq!(stored.content, format!("streamed {calls}"), "{prompt}");
        assert_eq!(s.calls(), calls);
    }
}

/// Tool calls streamed in fragments, two interleaved by index, come back from the cache as
/// the JSON answer carries them: whole, in index order, arguments as objects.
#[tokio::test]
async fn a_streamed_tool_call_is_stored_whole() {
    let s = setup();
    let req = ChatRequest::prompt("tools");
    stream_all(&s, &req).await;
    let expected = vec![
        ToolCall {
            id: "call_w".into(),
            name: "weather".into(),
            arguments: serde_json::json!({"city": "Paris", "days": [1, 2]}),
        },
        ToolCall { id: "call_t".into(), name: "time".into(), arguments: serde_json::json!({"tz": "CET"}) },
    ];
    let json = s.router.route_request(&req).await.unwrap();
    assert!(json.cache_hit);
    assert_eq!(json.tool_calls, expected);
    assert_eq!((json.content.as_str(), json.finish_reason), ("Checking.", Some(FinishReason::ToolCalls)));

    let replayed = stream_all(&s, &req).await;
    let calls: Vec<(u32, Option<String>, Option<String>, serde_json::Value)> = replayed
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCall { delta } => Some((
                delta.index,
                delta.id.clone(),
                delta.name.clone(),
                serde_json::from_str(&delta.arguments).unwrap(),
            )),
            _ => None,
        })
        .collect();
    let want: Vec<_> = expected
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u32, Some(c.id.clone()), Some(c.name.clone()), c.arguments.clone()))
        .collect();
    assert_eq!(calls, want);
    assert_eq!(s.calls(), 1);
}

/// Signed thinking survives the trip: the JSON hit carries the block with its signature, and
/// the streamed hit seals it again, so a client can send it back in a tool loop.
#[tokio::test]
async fn streamed_thinking_is_stored_with_its_signature() {
    let s = setup();
    let req = ChatRequest::prompt("think");
    stream_all(&s, &req).await;
    let json = s.router.route_request(&req).await.unwrap();
    assert!(json.cache_hit);
    assert_eq!(json.reasoning.as_deref(), Some("Two and two."));
    assert_eq!(
        json.thinking,
        [ThinkingBlock::Thinking { thinking: "Two and two.".into(), signature: "sig-abc".into() }]
    );
    assert_eq!(json.content, "4");
    let replayed = stream_all(&s, &req).await;
    assert!(replayed.contains(&StreamEvent::ReasoningDelta { text: "Two and two.".into() }));
    assert!(
        replayed.contains(&StreamEvent::ThinkingSeal { seal: ThinkingSeal::Signature("sig-abc".into()) })
    );
    assert_eq!(s.calls(), 1);
}

/// A cache that keeps small answers only: a stream past its limit is not stored.
#[derive(Debug, Default)]
struct SmallCache(MapCache);

impl ResponseCache for SmallCache {
    fn get(&self, key: &CacheKey) -> Option<ChatResponse> {
        self.0.get(key)
    }
    fn put(&self, key: CacheKey, response: &ChatResponse) {
        self.0.put(key, response);
    }
    fn max_entry_bytes(&self) -> usize {
        "streamed 1".len()
    }
}

#[tokio::test]
async fn a_stream_larger_than_the_cache_keeps_is_not_stored() {
    let s = setup();
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(s.backend.clone()).unwrap();
    router.set_response_cache(Arc::new(SmallCache::default())).unwrap();
    let fits: Vec<StreamEvent> =
        router.route_stream(&ChatRequest::prompt("a")).await.unwrap().collect().await;
    assert_eq!(text_of(&fits), "streamed 1");
    assert!(router.route_request(&ChatRequest::prompt("a")).await.unwrap().cache_hit, "at the limit");
    let big = ChatRequest::prompt("think");
    router.route_stream(&big).await.unwrap().collect::<Vec<_>>().await;
    assert!(!router.route_request(&big).await.unwrap().cache_hit);
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

    // A stream is only forwarded: the same stream again is another call.
    for n in [3, 4] {
        let events: Vec<StreamEvent> =
            router.route_stream(&ChatRequest::prompt("hi")).await.unwrap().collect().await;
        assert_eq!(text_of(&events), format!("streamed {n}"));
    }
    assert_eq!(s.calls(), 4);
}
