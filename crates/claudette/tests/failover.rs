//! Router behaviour under real faults, over real HTTP on 127.0.0.1: the OpenAI provider in
//! front of test-kit fake servers. Each test names the reliability-spec row it covers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use claudette::core::breaker::BreakerState;
use claudette::core::{
    AttemptOutcome, BackendRouter, BackendSettings, ChatRequest, ErrorKind, FakeClock, Pricing, RetryPolicy,
    RouterOptions, SkipReason, StreamEvent, Timeouts,
};
use claudette_testkit::{FakeServer, HoldServer, Reply, ResetServer, closed_port_url};
use futures::StreamExt;

const CANARY: &str = "sk-canary-7f3a9c1e5b2d4f6a8c0e";

fn settings(name: &str, base_url: &str) -> BackendSettings {
    BackendSettings::new(name)
        .base_url(base_url)
        .model("fake-model")
        .api_key(CANARY)
        .pricing(Pricing::new(0.001, 0.002))
        .timeouts(Timeouts {
            connect: Duration::from_millis(500),
            first_byte: Duration::from_millis(700),
            idle: Duration::from_millis(700),
            total: Duration::from_secs(10),
        })
}

fn options() -> RouterOptions {
    RouterOptions {
        retry: RetryPolicy {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        ..RouterOptions::default()
    }
}

/// A router over `backends` (name, base_url), tried in that order.
fn router(clock: &FakeClock, backends: &[(&str, String)]) -> BackendRouter {
    router_with(clock, options(), backends)
}

fn router_with(clock: &FakeClock, opts: RouterOptions, backends: &[(&str, String)]) -> BackendRouter {
    let r = BackendRouter::with_clock(opts, clock.shared());
    for (name, url) in backends {
        r.register_backend(claudette_openai::backend(&settings(name, url)).unwrap().shared()).unwrap();
    }
    r.set_failover_chain(backends.iter().map(|(n, _)| *n)).unwrap();
    r
}

fn req() -> ChatRequest {
    ChatRequest::prompt("hello").with_max_tokens(16)
}

async fn collect(mut s: claudette::core::RoutedStream) -> (String, Vec<StreamEvent>) {
    let mut text = String::new();
    let mut events = Vec::new();
    while let Some(ev) = s.next().await {
        if let StreamEvent::TextDelta { text: t } = &ev {
            text.push_str(t);
        }
        events.push(ev);
    }
    (text, events)
}

#[tokio::test]
async fn f01_refused_port_fails_over_at_once_and_five_open_the_breaker() {
    let clock = FakeClock::new();
    let b = FakeServer::start().await;
    let dead = format!("{}/v1", closed_port_url().await);
    let r = router(&clock, &[("a", dead), ("b", b.v1_url())]);
    for i in 0..5 {
        let resp = r.route_request(&req()).await.unwrap();
        assert_eq!(resp.backend, "b");
        let d = resp.decision.unwrap();
        assert_eq!(d.attempts.len(), 2, "request {i}: {:?}", d.attempts);
        assert_eq!(d.attempts[0].error, Some(ErrorKind::Transport));
        assert_eq!(d.attempts[0].backoff, Duration::ZERO, "failover needs no sleep (RT-5)");
    }
    assert_eq!(r.breaker("a").unwrap().state(), BreakerState::Open);
    let d = r.route_request(&req()).await.unwrap().decision.unwrap();
    assert_eq!(d.attempts.len(), 1, "open backend is skipped without an attempt");
    assert!(d.skipped.iter().any(|s| s.backend == "a" && matches!(s.reason, SkipReason::CircuitOpen { .. })));
    assert_eq!(b.post_requests(), 6);
}

#[tokio::test]
async fn f02_silent_backend_times_out_to_first_byte_and_fails_over() {
    let clock = FakeClock::new();
    let hold = HoldServer::start().await;
    let b = FakeServer::start().await;
    let r = router(&clock, &[("a", format!("{}/v1", hold.url())), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    let d = resp.decision.unwrap();
    assert_eq!(d.attempts[0].error, Some(ErrorKind::Timeout));
    assert!(hold.connections() >= 1);
    assert_eq!(r.breaker("a").unwrap().snapshot().consecutive_failures, 1, "timeout counts as Failure");
}

#[tokio::test]
async fn f05_reset_before_headers_fails_over() {
    let clock = FakeClock::new();
    let reset = ResetServer::start().await;
    let b = FakeServer::start().await;
    let r = router(&clock, &[("a", format!("{}/v1", reset.url())), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    let kind = resp.decision.unwrap().attempts[0].error.unwrap();
    assert!(matches!(kind, ErrorKind::Transport | ErrorKind::StreamInterrupted), "{kind:?}");
    assert_eq!(r.breaker("a").unwrap().snapshot().consecutive_failures, 1);
}

#[tokio::test]
async fn f06_cut_after_k_events_gives_k_events_then_error_and_no_retry() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    // role chunk + 3 content chunks, then the connection is cut.
    a.push(Reply::openai_stream(&["one ", "two ", "three ", "four"]).cut_after(4));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let s = r.route_stream(&req()).await.unwrap();
    assert_eq!(s.backend(), "a");
    let (text, events) = collect(s).await;
    assert_eq!(text, "one two three ", "exactly the upstream's first events, once (RT-8)");
    let last = events.last().unwrap();
    assert!(matches!(last, StreamEvent::Error { .. }), "{last:?}");
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
    assert_eq!(b.requests(), 0, "no failover after commit (RT-7)");
    assert_eq!(a.post_requests(), 1, "no retry after commit");
}

#[tokio::test]
async fn f07_rate_limited_backend_is_skipped_for_its_hint_without_sleep_or_failure() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(
        Reply::openai_error(429, "rate_limit_exceeded", Some("rate_limit_exceeded"), "slow down")
            .header("retry-after", "2"),
    );
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    let d = resp.decision.unwrap();
    assert_eq!(d.attempts[0].error, Some(ErrorKind::RateLimited));
    assert_eq!(d.attempts[1].backoff, Duration::ZERO);
    let snap = r.breaker("a").unwrap().snapshot();
    assert_eq!(snap.consecutive_failures, 0, "a throttle is not a Failure (CB-15)");
    // Still skipped 1.9 s later, back after 2 s.
    clock.advance(Duration::from_millis(1900));
    let d = r.route_request(&req()).await.unwrap().decision.unwrap();
    assert!(d.skipped.iter().any(|s| s.backend == "a" && matches!(s.reason, SkipReason::Throttled { .. })));
    clock.advance(Duration::from_millis(200));
    assert_eq!(r.route_request(&req()).await.unwrap().backend, "a");
    assert_eq!(a.post_requests(), 2);
}

#[tokio::test]
async fn f08_later_shorter_retry_after_never_shrinks_the_deadline() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    let r = Arc::new(router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]));
    // Two requests in flight on A at once: the first answer says 30 s, the second 1 s.
    a.push(
        Reply::openai_error(429, "rate_limit_exceeded", None, "slow")
            .header("retry-after", "30")
            .delay(Duration::from_millis(50)),
    );
    a.push(
        Reply::openai_error(429, "rate_limit_exceeded", None, "slow")
            .header("retry-after", "1")
            .delay(Duration::from_millis(250)),
    );
    let (r1, r2) = (req(), req());
    let (x, y) = tokio::join!(r.route_request(&r1), r.route_request(&r2));
    assert_eq!(x.unwrap().backend, "b");
    assert_eq!(y.unwrap().backend, "b");
    assert_eq!(a.post_requests(), 2);
    clock.advance(Duration::from_secs(5));
    assert_eq!(r.route_request(&req()).await.unwrap().backend, "b", "A must stay skipped for 30 s (CB-8)");
    clock.advance(Duration::from_secs(26));
    assert_eq!(r.route_request(&req()).await.unwrap().backend, "a");
}

#[tokio::test]
async fn f09_long_retry_after_on_single_backend_returns_429_without_sleeping() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    a.push(Reply::openai_error(429, "rate_limit_exceeded", None, "slow").header("retry-after", "120"));
    let r = router(&clock, &[("a", a.v1_url())]);
    let started = std::time::Instant::now();
    let err = r.route_request(&req()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(60), "must not sleep on a 120 s hint");
    assert_eq!(err.error.kind, ErrorKind::RateLimited);
    assert_eq!(err.error.status, Some(429));
    assert_eq!(err.error.retry_after, Some(Duration::from_secs(120)), "Retry-After passed through");
    assert_eq!(a.post_requests(), 1);
}

#[tokio::test]
async fn an_absurd_retry_after_is_a_capped_throttle_not_a_panic() {
    let clock = FakeClock::new();
    clock.advance(Duration::from_secs(3600));
    let a = FakeServer::start().await;
    a.push(Reply::openai_error(429, "rate_limit_exceeded", None, "slow").header("retry-after", "1e30"));
    let r = router(&clock, &[("a", a.v1_url())]);
    let err = r.route_request(&req()).await.unwrap_err();
    assert_eq!(err.error.kind, ErrorKind::RateLimited);
    assert_eq!(err.error.retry_after, Some(Duration::from_secs(300)), "capped at max_throttle");
    let again = r.route_request(&req()).await.unwrap_err();
    assert_eq!(again.attempts(), 0, "the backend stays throttled");
    assert_eq!(a.post_requests(), 1);
}

#[tokio::test]
async fn f10_quota_exhausted_is_not_retried_opens_the_breaker_and_fails_over() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(Reply::openai_error(
        429,
        "insufficient_quota",
        Some("insufficient_quota"),
        "You exceeded your current quota",
    ));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    assert_eq!(resp.decision.unwrap().attempts[0].error, Some(ErrorKind::QuotaExhausted));
    assert_eq!(r.breaker("a").unwrap().state(), BreakerState::Open, "quota opens at once (CB-16)");
    r.route_request(&req()).await.unwrap();
    assert_eq!(a.post_requests(), 1);

    // Single backend: no retry at all.
    let c = FakeServer::start().await;
    c.push(Reply::openai_error(429, "insufficient_quota", Some("insufficient_quota"), "quota"));
    let solo = router(&clock, &[("c", c.v1_url())]);
    assert_eq!(solo.route_request(&req()).await.unwrap_err().error.kind, ErrorKind::QuotaExhausted);
    assert_eq!(c.post_requests(), 1);
}

#[tokio::test]
async fn f11_overloaded_529_is_a_failure_and_fails_over() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(Reply::openai_error(529, "overloaded_error", None, "Overloaded"));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    assert_eq!(resp.decision.unwrap().attempts[0].error, Some(ErrorKind::Overloaded));
    assert_eq!(r.breaker("a").unwrap().snapshot().consecutive_failures, 1);
}

#[tokio::test]
async fn f11_single_backend_transient_error_is_retried_after_backoff() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    a.push(Reply::openai_error(503, "server_error", None, "busy"));
    let r = router(&clock, &[("a", a.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    let d = resp.decision.unwrap();
    assert_eq!(d.attempts.len(), 2, "FO-1: the only backend is retried");
    assert_eq!(d.attempts[1].outcome, AttemptOutcome::Success);
    assert_eq!(a.post_requests(), 2);
}

#[tokio::test]
async fn deadlines_of_duration_max_mean_no_deadline_not_a_panic() {
    let clock = FakeClock::new();
    // A clock past zero, as a real one is: now + Duration::MAX would overflow.
    clock.advance(Duration::from_secs(3600));
    let a = FakeServer::start().await;
    a.push(Reply::openai_error(503, "server_error", None, "busy"));
    a.push(Reply::openai_error(503, "server_error", None, "busy"));
    let mut opts = options();
    opts.retry.request_deadline = Duration::MAX;
    opts.retry.first_token_deadline = Duration::MAX;
    let r = router_with(&clock, opts, &[("a", a.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.decision.unwrap().attempts.len(), 3, "retried after back-off, within the deadline");
    a.push(Reply::openai_error(503, "server_error", None, "busy"));
    a.push(Reply::openai_stream(&["no ", "deadline"]));
    let (text, _) = collect(r.route_stream(&req()).await.unwrap()).await;
    assert_eq!(text, "no deadline");
}

#[tokio::test]
async fn f12_five_500s_open_the_breaker_and_the_sixth_never_reaches_a() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.set_default(Reply::openai_error(500, "server_error", None, "boom"));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(2));
        assert_eq!(r.route_request(&req()).await.unwrap().backend, "b");
    }
    assert_eq!(r.breaker("a").unwrap().state(), BreakerState::Open);
    assert_eq!(a.post_requests(), 5);
    assert_eq!(r.route_request(&req()).await.unwrap().backend, "b");
    assert_eq!(a.post_requests(), 5, "the 6th request never reaches A");
    let h = r.health_status("a").unwrap();
    assert!(!h.healthy);
    assert_eq!(h.consecutive_failures, 5);
    let m = r.performance_metrics("a").unwrap();
    assert_eq!(m.failures, 5);
    assert_eq!(m.failures_by_kind.get("overloaded"), Some(&5));
}

#[tokio::test]
async fn f13_exactly_one_probe_reaches_a_when_its_open_time_ends() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    for _ in 0..5 {
        a.push(Reply::openai_error(500, "server_error", None, "boom"));
    }
    // The probe is slow, so every other request arrives while it is outstanding.
    a.set_default(Reply::openai_text("probe ok").delay(Duration::from_millis(300)));
    let r = Arc::new(router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]));
    for _ in 0..5 {
        r.route_request(&req()).await.unwrap();
    }
    assert_eq!(r.breaker("a").unwrap().state(), BreakerState::Open);
    clock.advance(Duration::from_secs(12)); // open_base 10 s ± 10 %
    let reqs: Vec<_> = (0..100)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.route_request(&req()).await.unwrap().backend })
        })
        .collect();
    let mut on_a = 0;
    for h in reqs {
        if h.await.unwrap() == "a" {
            on_a += 1;
        }
    }
    assert_eq!(on_a, 1, "exactly one request is the probe");
    assert_eq!(a.post_requests(), 6, "A saw 5 failures + 1 probe");
    assert_eq!(r.breaker("a").unwrap().state(), BreakerState::Closed, "probe success closes (CB-11)");
}

#[tokio::test]
async fn f15_error_as_first_stream_event_fails_over_before_commit() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(Reply::sse(vec![r#"data: {"error":{"message":"Overloaded","type":"overloaded_error"}}"#.into()]));
    b.push(Reply::openai_stream(&["from ", "b"]));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let s = r.route_stream(&req()).await.unwrap();
    assert_eq!(s.backend(), "b");
    let d = s.decision();
    assert_eq!(d.attempts.len(), 2);
    let (text, events) = collect(s).await;
    assert_eq!(text, "from b", "client sees only B's output");
    assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
    assert_eq!(r.breaker("a").unwrap().snapshot().consecutive_failures, 1);
}

#[tokio::test]
async fn f16_error_after_content_ends_with_error_event_and_counts_a_failure() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(Reply::openai_stream_error_after(&["partial ", "answer"]));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let s = r.route_stream(&req()).await.unwrap();
    let (text, events) = collect(s).await;
    assert_eq!(text, "partial answer");
    assert!(matches!(events.last(), Some(StreamEvent::Error { .. })));
    assert_eq!(b.requests(), 0);
    assert_eq!(
        r.breaker("a").unwrap().snapshot().consecutive_failures,
        1,
        "mid-stream error is a Failure (CB-2)"
    );
    assert_eq!(r.performance_metrics("a").unwrap().failures_by_kind.get("overloaded"), Some(&1));
}

#[tokio::test]
async fn f17_stream_without_done_is_an_error_not_a_success() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    a.push(Reply::openai_stream_no_done(&["short ", "answer"]));
    let r = router(&clock, &[("a", a.v1_url())]);
    let (text, events) = collect(r.route_stream(&req()).await.unwrap()).await;
    assert_eq!(text, "short answer");
    match events.last() {
        Some(StreamEvent::Error { error }) => assert_eq!(error.kind, ErrorKind::StreamInterrupted),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn f18_one_byte_chunks_give_identical_output() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let whole = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"héllo 涌现\"},\"finish_reason\":null}]}\n\n\
                 data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
                 data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n\
                 data: [DONE]\n\n";
    a.push(Reply::chunks(200, "text/event-stream", vec![whole.as_bytes().to_vec()]));
    a.push(Reply::chunks(200, "text/event-stream", whole.as_bytes().chunks(1).map(<[u8]>::to_vec).collect()));
    let r = router(&clock, &[("a", a.v1_url())]);
    let (t1, e1) = collect(r.route_stream(&req()).await.unwrap()).await;
    let (t2, e2) = collect(r.route_stream(&req()).await.unwrap()).await;
    assert_eq!(t1, "héllo 涌现");
    assert_eq!(e1, e2);
    assert_eq!(t1, t2);
}

#[tokio::test]
async fn f19_malformed_json_is_a_failure_that_fails_over_without_panic() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(Reply::malformed_json());
    a.push(Reply::sse(vec![
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}".into(),
        "data: {not json".into(),
    ]));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    assert_eq!(resp.decision.unwrap().attempts[0].error, Some(ErrorKind::MalformedResponse));
    // After content: the malformed line becomes the terminal error event.
    let (text, events) = collect(r.route_stream(&req()).await.unwrap()).await;
    assert_eq!(text, "x");
    match events.last() {
        Some(StreamEvent::Error { error }) => assert_eq!(error.kind, ErrorKind::MalformedResponse),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn f23_bad_client_requests_are_answered_locally() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let r = router(&clock, &[("a", a.v1_url())]);
    let e = r.route_request(&ChatRequest::default()).await.unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::InvalidRequest);
    assert_eq!(e.error.status, Some(400));
    let e = r.route_request(&req().with_backend("nope")).await.unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::NotFound);
    assert_eq!(a.requests(), 0, "no upstream call");
    assert_eq!(r.breaker("a").unwrap().snapshot().consecutive_failures, 0);
}

#[tokio::test]
async fn f24_unresolvable_base_url_is_a_clear_connect_failure() {
    let clock = FakeClock::new();
    let b = FakeServer::start().await;
    let r = router(&clock, &[("a", "http://backend.invalid/v1".into()), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    let d = resp.decision.unwrap();
    assert_eq!(d.attempts[0].error, Some(ErrorKind::Transport));
    let solo = router(&clock, &[("a", "http://backend.invalid/v1".into())]);
    let e = solo.route_request(&req()).await.unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::Transport);
    assert!(e.to_string().contains("backend `a`"), "{e}");
}

#[tokio::test]
async fn f26_unauthorized_is_not_retried_fails_over_and_never_leaks_the_key() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.set_default(Reply::openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        &format!("Incorrect API key provided: {CANARY}"),
    ));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "b");
    assert_eq!(a.post_requests(), 1);
    assert_eq!(r.breaker("a").unwrap().state(), BreakerState::Open, "credential opens (CB-16)");
    let text = format!("{:?} {}", resp.decision, serde_json::to_string(&resp).unwrap());
    assert!(!text.contains("canary"), "key leaked: {text}");

    let solo = router(&clock, &[("a", a.v1_url())]);
    let e = solo.route_request(&req()).await.unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::Auth);
    assert_eq!(a.post_requests(), 2, "401 is never retried on the same backend");
    let shown = format!("{e} {e:?} {:?}", e.error.provider_body);
    assert!(!shown.contains("canary"), "key leaked: {shown}");
    assert!(a.received()[0].header("authorization").unwrap().ends_with(CANARY), "key is sent upstream");
}

#[tokio::test]
async fn cb20_all_backends_open_answers_at_once_with_the_earliest_retry() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(Reply::openai_error(429, "rate_limit_exceeded", None, "slow").header("retry-after", "20"));
    b.push(Reply::openai_error(429, "rate_limit_exceeded", None, "slow").header("retry-after", "7"));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let e = r.route_request(&req()).await.unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::RateLimited);
    let e = r.route_request(&req()).await.unwrap_err();
    assert_eq!(e.attempts(), 0, "no upstream traffic");
    assert_eq!(e.error.status, Some(429), "all throttled → 429");
    assert_eq!(e.error.retry_after, Some(Duration::from_secs(7)), "earliest deadline");
    assert_eq!(a.post_requests() + b.post_requests(), 2);
}

#[tokio::test]
async fn stream_failover_before_commit_is_invisible() {
    let clock = FakeClock::new();
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    a.push(Reply::openai_error(503, "server_error", None, "down"));
    b.push(Reply::openai_stream(&["hi ", "there"]));
    let r = router(&clock, &[("a", a.v1_url()), ("b", b.v1_url())]);
    let s = r.route_stream(&req()).await.unwrap();
    assert_eq!(s.backend(), "b");
    let (text, events) = collect(s).await;
    assert_eq!(text, "hi there");
    match events.last() {
        Some(StreamEvent::Done { end }) => {
            assert_eq!(end.usage.source, claudette::core::UsageSource::Reported);
            assert!(end.cost > 0.0);
        }
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn decision_explains_scores_and_cheapest_wins_without_a_chain() {
    let a = FakeServer::start().await;
    let b = FakeServer::start().await;
    let r = BackendRouter::new(RouterOptions {
        cost_weight: 1.0,
        latency_weight: 0.0,
        availability_weight: 0.0,
        ..options()
    });
    r.register_backend(
        claudette_openai::backend(&settings("pricey", &a.v1_url()).pricing(Pricing::new(0.03, 0.06)))
            .unwrap()
            .shared(),
    )
    .unwrap();
    r.register_backend(
        claudette_openai::backend(&settings("cheap", &b.v1_url()).pricing(Pricing::new(0.0001, 0.0002)))
            .unwrap()
            .shared(),
    )
    .unwrap();
    let resp = r.route_request(&req()).await.unwrap();
    assert_eq!(resp.backend, "cheap");
    let d = resp.decision.unwrap();
    assert_eq!(d.candidates[0].backend, "cheap");
    assert!(d.candidates[0].score < d.candidates[1].score);
    assert!((d.candidates[1].cost - 1.0).abs() < 1e-9, "most expensive normalises to 1");
    assert!(d.compact().starts_with("cheap="));
    assert_eq!(r.select_backend(&req(), &["cheap"]).unwrap().name(), "pricey");
    assert_eq!(r.select_backend(&req().with_backend("pricey"), &[]).unwrap().name(), "pricey");
}

/// A backend that cannot promise a forced tool call (Ollama has no tool choice) refuses it
/// before any I/O, and the router hands the request to one that can; its breaker is untouched.
#[tokio::test]
async fn a_forced_tool_call_skips_a_backend_that_cannot_force_one() {
    let ollama = FakeServer::start().await;
    let openai = FakeServer::start().await;
    openai.push(Reply::openai_tool_call("call_1", "add", "{}"));
    let clock = FakeClock::new();
    let r = BackendRouter::with_clock(options(), clock.shared());
    let local = BackendSettings::new("local").base_url(ollama.url()).model("llama3.2");
    r.register_backend(claudette_ollama::backend(&local).unwrap().shared()).unwrap();
    r.register_backend(claudette_openai::backend(&settings("oa", &openai.v1_url())).unwrap().shared())
        .unwrap();
    r.set_failover_chain(["local", "oa"]).unwrap();
    let request = ChatRequest {
        tools: vec![claudette::ToolSpec {
            name: "add".into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
            cache: None,
            strict: false,
        }],
        tool_choice: claudette::ToolChoice::Required,
        ..req()
    };
    let resp = r.route_request(&request).await.unwrap();
    assert_eq!(resp.backend, "oa");
    assert_eq!(resp.tool_calls[0].name, "add");
    assert_eq!(ollama.requests(), 0, "refused without a call");
    assert_eq!(openai.last_json().unwrap()["tool_choice"], "required");
    let first = &resp.decision.as_ref().unwrap().attempts[0];
    assert_eq!((first.backend.as_str(), first.error), ("local", Some(ErrorKind::Unsupported)));
    assert_eq!(r.breaker("local").unwrap().state(), BreakerState::Closed);
}
