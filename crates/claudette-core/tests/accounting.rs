#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cost accounting and routing decisions at their edges, through the public API: a scripted
//! in-process `Backend`, the router on a `FakeClock`, and tokio's paused time for back-off.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use claudette_core::costs::CostTracker;
use claudette_core::{
    Backend, BackendError, BackendInfo, BackendRouter, BackendType, ChatRequest, ChatResponse, ErrorKind,
    EventStream, FakeClock, GroupBy, Pricing, RetryPolicy, RouterOptions, StreamEnd, StreamEvent, Usage,
};
use futures::StreamExt;
use parking_lot::Mutex;

/// What one call to a [`Scripted`] backend does.
enum Step {
    Answer {
        cost: f64,
        model: &'static str,
    },
    Fail(ErrorKind),
    /// A stream: these events, then (when `hang`) nothing ever again.
    Stream {
        events: Vec<StreamEvent>,
        hang: bool,
    },
}

struct Scripted {
    info: BackendInfo,
    steps: Mutex<VecDeque<Step>>,
    /// Used once the script has run out.
    fallback: fn() -> Step,
}

fn info(name: &str, pricing: Pricing) -> BackendInfo {
    BackendInfo {
        name: name.to_owned(),
        provider: "scripted".to_owned(),
        backend_type: BackendType::Cloud,
        model: "m-configured".to_owned(),
        priority: 0,
        pricing,
        quality: 0.5,
        supports_streaming: true,
        supports_tools: false,
        supports_images: false,
        context_window: None,
        region: None,
        tags: Vec::new(),
        enabled: true,
    }
}

fn scripted(name: &str, pricing: Pricing, steps: Vec<Step>, fallback: fn() -> Step) -> Arc<dyn Backend> {
    Arc::new(Scripted { info: info(name, pricing), steps: Mutex::new(steps.into()), fallback })
}

fn ok_step() -> Step {
    Step::Answer { cost: 0.01, model: "m-configured" }
}

impl Scripted {
    fn next(&self) -> Step {
        self.steps.lock().pop_front().unwrap_or_else(self.fallback)
    }
}

#[async_trait::async_trait]
impl Backend for Scripted {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn send(&self, _: &ChatRequest) -> Result<ChatResponse, BackendError> {
        match self.next() {
            Step::Answer { cost, model } => {
                let mut r = ChatResponse::empty(self.info.name.clone(), model);
                r.content = "hi".to_owned();
                r.usage = Usage::reported(10, 2);
                r.cost = cost;
                Ok(r)
            }
            Step::Fail(kind) => Err(BackendError::new(kind, "scripted failure")),
            Step::Stream { .. } => panic!("not a stream call"),
        }
    }

    async fn send_stream(&self, _: &ChatRequest) -> Result<EventStream, BackendError> {
        match self.next() {
            Step::Stream { events, hang } => {
                let s = futures::stream::iter(events);
                Ok(if hang { Box::pin(s.chain(futures::stream::pending())) } else { Box::pin(s) })
            }
            Step::Fail(kind) => Err(BackendError::new(kind, "scripted failure")),
            Step::Answer { cost, .. } => Ok(Box::pin(futures::stream::iter([
                StreamEvent::text("hi"),
                StreamEvent::Done {
                    end: StreamEnd { finish_reason: None, usage: Usage::reported(10, 2), cost },
                },
            ]))),
        }
    }

    async fn health_check(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn available_models(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![self.info.model.clone()])
    }
}

fn router(clock: &FakeClock, opts: RouterOptions, backends: Vec<Arc<dyn Backend>>) -> BackendRouter {
    let r = BackendRouter::with_clock(opts, clock.shared());
    for b in backends {
        r.register_backend(b).unwrap();
    }
    r
}

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3600);
const MONTH_SECS: f64 = 30.0 * 86_400.0;

/// $1 an hour, spent at every half hour for a day, is $720 a month. Asked at hh:59 for the
/// last hour, the hourly buckets hold two payments (hh-1:30 and hh:30): the projection must
/// divide by the ~2 h those buckets span, not by the 1 h asked for (which said $1440).
#[test]
fn projection_divides_by_the_span_the_buckets_cover() {
    let clock = FakeClock::new();
    let t = CostTracker::new(clock.shared());
    for h in 0..=20 {
        clock.set(HOUR * h + HOUR / 2);
        t.record("a", "m", 1.0, 10, 10);
    }
    clock.set(HOUR * 20 + Duration::from_secs(59 * 60));
    let a = t.analyze(HOUR, GroupBy::Backend);
    let p = a.projected_monthly_cost.unwrap();
    assert!((p - 720.0).abs() / 720.0 < 0.1, "projection {p} for a $720/month rate ({a:?})");
    // The projection is always the covered span's rate.
    assert!((p - a.total_cost * MONTH_SECS / a.observed_secs as f64).abs() < 1e-6);
    assert!(a.observed_secs >= 3600, "the span summed is at least the window asked for");

    // A whole-day window is unaffected by the widening when the process is younger.
    let d = t.analyze(DAY, GroupBy::Backend);
    assert_eq!(d.total_requests, 21);
    assert_eq!(d.observed_secs, 20 * 3600 + 59 * 60);
}

/// One NaN or negative cost (a NaN price through the library API, a buggy backend) must not
/// turn every later total into NaN, nor subtract spend.
#[tokio::test]
async fn a_nan_or_negative_cost_does_not_poison_totals() {
    let clock = FakeClock::new();
    let steps = vec![
        Step::Answer { cost: f64::NAN, model: "m-configured" },
        Step::Answer { cost: -5.0, model: "m-configured" },
        Step::Answer { cost: 1.0, model: "m-configured" },
    ];
    let r =
        router(&clock, RouterOptions::default(), vec![scripted("a", Pricing::new(1.0, 1.0), steps, ok_step)]);
    for _ in 0..3 {
        r.route_request(&ChatRequest::prompt("x")).await.unwrap();
    }
    let a = r.analyze_costs(DAY, GroupBy::Backend);
    assert_eq!(a.total_requests, 3);
    assert!((a.total_cost - 1.0).abs() < 1e-9, "{}", a.total_cost);
    let m = r.performance_metrics("a").unwrap();
    assert!((m.total_cost - 1.0).abs() < 1e-9, "{}", m.total_cost);
}

/// A backend whose price is infinite (or NaN) is the most expensive candidate, not the
/// cheapest: its cost factor is 1, it comes after a finite price that also scores 1, and the
/// others are still compared with each other.
#[test]
fn an_infinite_or_nan_price_never_wins_on_cost() {
    let clock = FakeClock::new();
    let opts = RouterOptions {
        cost_weight: 1.0,
        latency_weight: 0.0,
        availability_weight: 0.0,
        quality_weight: 0.0,
        ..RouterOptions::default()
    };
    let r = router(
        &clock,
        opts,
        vec![
            scripted("inf", Pricing::new(f64::INFINITY, 1.0), vec![], ok_step),
            scripted("nan", Pricing::new(f64::NAN, 1.0), vec![], ok_step),
            scripted("dear", Pricing::new(2.0, 2.0), vec![], ok_step),
            scripted("cheap", Pricing::new(1.0, 1.0), vec![], ok_step),
        ],
    );
    let sel = r.select(&ChatRequest::prompt("hello there"), &[]).unwrap();
    let order: Vec<&str> = sel.decision.candidates.iter().map(|c| c.backend.as_str()).collect();
    assert_eq!(order, ["cheap", "dear", "inf", "nan"], "{:?}", sel.decision.candidates);
    let cheap = &sel.decision.candidates[0];
    assert!(cheap.cost > 0.0 && cheap.cost < 1.0, "still compared with `dear`: {cheap:?}");
    assert!(sel.decision.candidates.iter().all(|c| c.score.is_finite()));
}

fn text_then_error() -> Step {
    Step::Stream {
        events: vec![
            StreamEvent::text("x".repeat(400)),
            StreamEvent::Error { error: BackendError::interrupted("connection reset") },
        ],
        hang: false,
    }
}

/// A stream cut after content is billed by the provider for the prompt and what it generated;
/// the router must book that (estimated) spend, not nothing.
#[tokio::test]
async fn a_stream_failing_after_commit_books_its_spend() {
    let clock = FakeClock::new();
    let r = router(
        &clock,
        RouterOptions::default(),
        vec![scripted("a", Pricing::new(1.0, 1.0), vec![text_then_error()], ok_step)],
    );
    let mut s = r.route_stream(&ChatRequest::prompt("hello")).await.unwrap();
    while let Some(ev) = s.next().await {
        if ev.is_terminal() {
            assert!(matches!(ev, StreamEvent::Error { .. }));
        }
    }
    let a = r.analyze_costs(DAY, GroupBy::Backend);
    assert_eq!(a.total_requests, 1);
    // ~100 output tokens of 400 bytes plus a few prompt tokens, at $1 per 1k.
    assert!(a.total_cost >= 0.1, "{a:?}");
    let m = r.performance_metrics("a").unwrap();
    assert!(m.output_tokens >= 100 && m.total_cost >= 0.1, "{m:?}");
}

/// A client that walks away from a committed stream still leaves a bill behind.
#[tokio::test]
async fn an_abandoned_stream_books_its_spend() {
    let clock = FakeClock::new();
    let hang = Step::Stream {
        events: vec![
            StreamEvent::Usage { usage: Usage::reported(1000, 0) },
            StreamEvent::text("y".repeat(40)),
        ],
        hang: true,
    };
    let r = router(
        &clock,
        RouterOptions::default(),
        vec![scripted("a", Pricing::new(1.0, 1.0), vec![hang], ok_step)],
    );
    let mut s = r.route_stream(&ChatRequest::prompt("hello")).await.unwrap();
    assert!(s.next().await.is_some());
    drop(s);
    let a = r.analyze_costs(DAY, GroupBy::Backend);
    assert_eq!(a.total_requests, 1);
    // The reported 1000 prompt tokens alone are $1.
    assert!(a.total_cost >= 1.0, "{a:?}");
    assert_eq!(a.total_tokens, 1000 + 10);
}

/// `group_by=model` books one model under one name whether or not the request streamed
/// (the provider's answer may name a dated snapshot; a stream's end names none).
#[tokio::test]
async fn streamed_and_plain_requests_share_a_model_line() {
    let clock = FakeClock::new();
    let steps = vec![Step::Answer { cost: 0.5, model: "m-configured-2024-08-06" }];
    let r =
        router(&clock, RouterOptions::default(), vec![scripted("a", Pricing::new(1.0, 1.0), steps, ok_step)]);
    r.route_request(&ChatRequest::prompt("x")).await.unwrap();
    let mut s = r.route_stream(&ChatRequest::prompt("x")).await.unwrap();
    while s.next().await.is_some() {}
    let a = r.analyze_costs(DAY, GroupBy::Model);
    assert_eq!(a.breakdown.keys().collect::<Vec<_>>(), ["m-configured"], "{a:?}");
    assert_eq!(a.breakdown["m-configured"].requests, 2);
}

/// A request whose only backend failed for good (401: never the same credential again) makes
/// no retry, so it must not spend the process-wide retry budget: here the budget allows one
/// retry, and a later request that needs it must still get it.
#[tokio::test(start_paused = true)]
async fn a_request_with_nobody_left_to_try_spends_no_retry_budget() {
    let clock = FakeClock::new();
    let opts = RouterOptions {
        retry: RetryPolicy {
            budget_min: 1,
            budget_ratio: 0.0,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
        ..RouterOptions::default()
    };
    let r = router(
        &clock,
        opts,
        vec![
            scripted("locked", Pricing::FREE, vec![], || Step::Fail(ErrorKind::Auth)),
            scripted("flaky", Pricing::FREE, vec![Step::Fail(ErrorKind::Overloaded)], ok_step),
        ],
    );
    let e = r.route_request(&ChatRequest::prompt("x").with_backend("locked")).await.unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::Auth);
    assert_eq!(e.attempts(), 1);
    let ok = r.route_request(&ChatRequest::prompt("x").with_backend("flaky")).await;
    let ok = ok.unwrap_or_else(|e| panic!("the retry was denied: {e} ({:?})", e.decision));
    assert_eq!(ok.decision.unwrap().attempts.len(), 2);
}

/// A request with an image goes only to a backend that takes images: one without
/// `supports_images` would answer without seeing it.
#[tokio::test]
async fn an_image_goes_only_to_a_backend_that_takes_images() {
    use claudette_core::{Image, ImageSource, Message, SkipReason};
    let clock = FakeClock::new();
    let text_only = scripted("text", Pricing::new(0.1, 0.1), vec![], ok_step);
    let mut vision = Scripted {
        info: info("vision", Pricing::new(5.0, 5.0)),
        steps: Mutex::new(VecDeque::new()),
        fallback: ok_step,
    };
    vision.info.supports_images = true;
    let r = router(&clock, RouterOptions::default(), vec![text_only, Arc::new(vision)]);
    let image = Image { at: 0, source: ImageSource::Url { url: "https://example.com/a.png".into() } };
    let with_image = ChatRequest {
        messages: vec![Message { images: vec![image], ..Message::user("what is it?") }],
        ..ChatRequest::default()
    };
    let sel = r.select(&with_image, &[]).unwrap();
    assert_eq!(sel.backend.name(), "vision");
    let skipped = sel.decision.skipped.iter().find(|s| s.backend == "text").unwrap();
    assert_eq!(skipped.reason, SkipReason::NoImages, "{skipped:?}");
    // Without the image, the cheap one wins.
    assert_eq!(r.select(&ChatRequest::prompt("hi"), &[]).unwrap().backend.name(), "text");
}

/// A request with a provider's own tools (Anthropic's web search) goes only to a backend of
/// that provider, whatever it costs; with none left, it is refused as the caller's error
/// (nothing to wait for or retry), saying which provider it needs.
#[tokio::test]
async fn a_server_tool_goes_only_to_its_providers_backends() {
    use claudette_core::{Dialect, ErrorKind, NativeTool, SkipReason};
    let clock = FakeClock::new();
    let cheap = scripted("cheap", Pricing::new(0.1, 0.1), vec![], ok_step);
    let mut claude = Scripted {
        info: info("claude", Pricing::new(5.0, 5.0)),
        steps: Mutex::new(VecDeque::new()),
        fallback: ok_step,
    };
    claude.info.provider = "anthropic".into();
    let r = router(&clock, RouterOptions::default(), vec![cheap.clone(), Arc::new(claude)]);
    let search = ChatRequest {
        native_tools: vec![NativeTool {
            dialect: Dialect::Anthropic,
            at: 0,
            spec: serde_json::json!({"type": "web_search_20250305", "name": "web_search"}),
        }],
        ..ChatRequest::prompt("what happened today?")
    };
    let sel = r.select(&search, &[]).unwrap();
    assert_eq!(sel.backend.name(), "claude");
    let skipped = sel.decision.skipped.iter().find(|s| s.backend == "cheap").unwrap();
    assert_eq!(skipped.reason, SkipReason::OtherDialect, "{skipped:?}");
    assert_eq!(r.route_request(&search).await.unwrap().backend, "claude");
    assert_eq!(r.select(&ChatRequest::prompt("hi"), &[]).unwrap().backend.name(), "cheap");

    let only_cheap = router(&clock, RouterOptions::default(), vec![cheap]);
    let e = only_cheap.route_request(&search).await.unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::InvalidRequest, "{e}");
    assert!(e.error.message.contains("provider `anthropic`"), "{e}");
    assert_eq!(e.attempts(), 0);
}
