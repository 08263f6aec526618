//! The adaptive-timeout rule, driven through `ProviderAdapter::timeouts` / `observe` on a
//! `FakeClock`, and the parsing of its settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use claudette_core::{
    BackendSettings, ChatRequest, ErrorKind, FakeClock, Observation, ProviderAdapter, Timeouts,
};
use claudette_qwen::{AdaptiveConfig, LATENCY_WINDOW, QwenAdapter};
use serde_json::{Value, json};

const BASE: Duration = Duration::from_secs(30);
const MAX: Duration = Duration::from_secs(120);

fn settings(extra: &[(&str, Value)]) -> BackendSettings {
    let mut s = BackendSettings::new("qwen-box");
    for (k, v) in extra {
        s = s.extra(k, v.clone());
    }
    s
}

fn adapter_with(extra: &[(&str, Value)]) -> (QwenAdapter, FakeClock) {
    let clock = FakeClock::new();
    let adapter = QwenAdapter::with_clock(&settings(extra), clock.shared()).unwrap();
    (adapter, clock)
}

fn adapter() -> (QwenAdapter, FakeClock) {
    adapter_with(&[])
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

fn ok(latency: Duration) -> Observation {
    Observation { latency, ttft: None, error: None, stream: false }
}

fn failed(kind: ErrorKind) -> Observation {
    Observation { latency: ms(100), ttft: None, error: Some(kind), stream: false }
}

/// The deadline an ordinary request gets, read through the trait like the I/O layer does.
/// It is the first-byte timeout; the total never drops below it (checked on every read).
fn deadline(adapter: &dyn ProviderAdapter) -> Duration {
    let configured = Timeouts::default();
    let t = adapter.timeouts(&configured, &ChatRequest::prompt("hi"));
    assert_eq!(t.total, configured.total.max(t.first_byte), "{t:?}");
    assert_eq!((t.connect, t.idle), (configured.connect, configured.idle), "{t:?}");
    t.first_byte
}

fn assert_near(got: Duration, want: Duration) {
    let diff = got.abs_diff(want);
    assert!(diff < ms(1), "got {got:?}, want {want:?}");
}

fn async_request() -> ChatRequest {
    let mut r = ChatRequest::prompt("summarise the whole repository");
    r.metadata.insert("async_contribution".into(), json!(true));
    r
}

#[test]
fn without_evidence_the_deadline_is_base_and_the_rest_is_as_configured() {
    let (a, _clock) = adapter();
    let configured = Timeouts {
        connect: ms(1_500),
        first_byte: ms(5_000),
        idle: ms(20_000),
        total: Duration::from_secs(600),
    };
    let t = a.timeouts(&configured, &ChatRequest::prompt("hi"));
    assert_eq!(t, Timeouts { first_byte: BASE, ..configured });

    // A configured total shorter than the deadline would cut every answer short: raised.
    let short = Timeouts { total: ms(2_000), ..configured };
    let t = a.timeouts(&short, &ChatRequest::prompt("hi"));
    assert_eq!(t, Timeouts { first_byte: BASE, total: BASE, ..configured });
}

#[test]
fn deadline_grows_with_observed_latency_bounded_by_base_and_max() {
    // 3 × 5 s = 15 s is below the floor.
    let (a, _c) = adapter();
    for _ in 0..10 {
        a.observe(&ok(secs(5.0)));
    }
    assert_eq!(deadline(&a), BASE);

    // 3 × 20 s.
    let (a, _c) = adapter();
    for _ in 0..10 {
        a.observe(&ok(secs(20.0)));
    }
    assert_near(deadline(&a), secs(60.0));

    // 3 × 60 s = 180 s is above the ceiling.
    let (a, _c) = adapter();
    a.observe(&ok(secs(60.0)));
    assert_eq!(deadline(&a), MAX);

    // A box that gets slower step by step: the deadline never shrinks and stays in bounds.
    let (a, _c) = adapter();
    let mut last = deadline(&a);
    for step in 1..=60 {
        a.observe(&ok(secs(f64::from(step))));
        let now = deadline(&a);
        assert!(now >= last && (BASE..=MAX).contains(&now), "step {step}: {last:?} -> {now:?}");
        last = now;
    }
    assert_eq!(last, MAX);
}

#[test]
fn p95_keeps_rare_slow_answers_covered() {
    let (a, _c) = adapter();
    a.observe(&ok(secs(30.0)));
    a.observe(&ok(secs(30.0)));
    for _ in 0..18 {
        a.observe(&ok(secs(10.0)));
    }
    let snap = a.adaptive().snapshot();
    assert_eq!(snap.samples, 20);
    assert_eq!(snap.p95, Some(secs(30.0)), "rank 19 of 20");
    // The EWMA has nearly forgotten the slow ones; the p95 has not.
    assert!(snap.ewma.unwrap() < secs(11.0), "{snap:?}");
    assert_near(deadline(&a), secs(90.0));
}

#[test]
fn ewma_follows_a_box_that_just_got_slower() {
    let (a, _c) = adapter();
    for _ in 0..100 {
        a.observe(&ok(secs(10.0)));
    }
    for _ in 0..3 {
        a.observe(&ok(secs(30.0)));
    }
    let snap = a.adaptive().snapshot();
    assert_eq!(snap.samples, LATENCY_WINDOW);
    assert_eq!(snap.p95, Some(secs(10.0)), "3 slow samples of 64 do not reach the p95");
    // 10 + 20 × (1 − 0.8³) = 19.76 s.
    assert_near(snap.ewma.unwrap(), secs(19.76));
    assert_near(deadline(&a), secs(3.0 * 19.76));
}

#[test]
fn a_timeout_gives_the_next_call_longer_up_to_max_and_a_success_resets_the_floor() {
    let (a, _c) = adapter_with(&[("consecutive_failures_threshold", json!(10))]);
    let mut expect = 30.0;
    for _ in 0..3 {
        a.observe(&failed(ErrorKind::Timeout));
        expect *= 1.5;
        assert_near(deadline(&a), secs(expect));
    }
    assert_near(deadline(&a), secs(101.25));
    a.observe(&failed(ErrorKind::Timeout));
    assert_eq!(deadline(&a), MAX, "growth stops at max");
    a.observe(&failed(ErrorKind::Timeout));
    assert_eq!(deadline(&a), MAX);
    assert!(a.is_healthy(), "5 failures < threshold 10");

    // The model finally answered, in 20 s: that is better evidence than the guess.
    a.observe(&ok(secs(20.0)));
    assert_eq!(a.adaptive().snapshot().grown, None);
    assert_near(deadline(&a), secs(60.0));
    assert_eq!(a.adaptive().consecutive_failures(), 0);
}

#[test]
fn only_timeouts_grow_the_deadline() {
    let (a, _c) = adapter_with(&[("consecutive_failures_threshold", json!(10))]);
    for kind in [ErrorKind::Overloaded, ErrorKind::Transport, ErrorKind::StreamInterrupted] {
        a.observe(&failed(kind));
        assert_eq!(deadline(&a), BASE, "{kind}");
    }
}

#[test]
fn with_default_settings_a_cold_model_gets_three_chances_then_fails_fast() {
    let (a, _c) = adapter();
    a.observe(&failed(ErrorKind::Timeout));
    assert_near(deadline(&a), secs(45.0));
    a.observe(&failed(ErrorKind::Timeout));
    assert_near(deadline(&a), secs(67.5));
    assert!(a.is_healthy());
    a.observe(&failed(ErrorKind::Timeout));
    assert!(!a.is_healthy(), "3 consecutive failures");
    assert_eq!(deadline(&a), BASE, "a dead box fails fast");
    a.observe(&failed(ErrorKind::Timeout));
    assert_eq!(deadline(&a), BASE, "no growth while unhealthy");
    assert_eq!(a.adaptive().snapshot().grown, None);
}

#[test]
fn consecutive_failures_reset_the_deadline_to_base_until_a_success() {
    let (a, _c) = adapter();
    for _ in 0..5 {
        a.observe(&ok(secs(30.0)));
    }
    assert_near(deadline(&a), secs(90.0));
    a.observe(&failed(ErrorKind::Overloaded));
    a.observe(&failed(ErrorKind::Transport));
    assert!(a.is_healthy());
    assert_near(deadline(&a), secs(90.0));
    a.observe(&failed(ErrorKind::MalformedResponse));
    assert!(!a.is_healthy());
    assert!(!a.adaptive().snapshot().healthy);
    assert_eq!(a.adaptive().consecutive_failures(), 3);
    assert_eq!(deadline(&a), BASE);

    // Back up: what was learned before still applies.
    a.observe(&ok(secs(30.0)));
    assert!(a.is_healthy());
    assert_near(deadline(&a), secs(90.0));
}

#[test]
fn a_success_breaks_the_streak() {
    let (a, _c) = adapter();
    for _ in 0..5 {
        a.observe(&failed(ErrorKind::Transport));
        a.observe(&failed(ErrorKind::Transport));
        a.observe(&ok(secs(1.0)));
    }
    assert!(a.is_healthy());
}

#[test]
fn caller_side_errors_neither_count_nor_break_a_streak() {
    let (a, _c) = adapter();
    a.observe(&failed(ErrorKind::Transport));
    a.observe(&failed(ErrorKind::Overloaded));
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::ContextOverflow,
        ErrorKind::Cancelled,
        ErrorKind::RateLimited,
        ErrorKind::Auth,
        ErrorKind::NotFound,
    ] {
        a.observe(&failed(kind));
        assert_eq!(a.adaptive().consecutive_failures(), 2, "{kind}");
    }
    assert!(a.is_healthy());
    a.observe(&failed(ErrorKind::Timeout));
    assert!(!a.is_healthy());
}

#[test]
fn async_contribution_gets_max_when_enabled() {
    let (a, _c) = adapter_with(&[("async_contribution_enabled", json!(true))]);
    let configured = Timeouts { total: Duration::from_secs(60), ..Timeouts::default() };
    let t = a.timeouts(&configured, &async_request());
    assert_eq!((t.first_byte, t.total), (MAX, MAX));
    // A longer configured total is kept.
    let t = a.timeouts(&Timeouts::default(), &async_request());
    assert_eq!((t.first_byte, t.total), (MAX, Timeouts::default().total));
    assert_eq!(deadline(&a), BASE, "ordinary requests are unaffected");

    // Only the JSON value `true` marks a request.
    let mut not_quite = ChatRequest::prompt("x");
    not_quite.metadata.insert("async_contribution".into(), json!("true"));
    assert_eq!(a.timeouts(&Timeouts::default(), &not_quite).first_byte, BASE);

    // Pipeline work waits for the box even when interactive calls fail fast.
    for _ in 0..3 {
        a.observe(&failed(ErrorKind::Timeout));
    }
    assert!(!a.is_healthy());
    assert_eq!(a.timeouts(&Timeouts::default(), &async_request()).first_byte, MAX);

    // Disabled (the default): the flag is ignored.
    let (off, _c) = adapter();
    assert_eq!(off.timeouts(&Timeouts::default(), &async_request()).first_byte, BASE);
}

#[test]
fn latency_adaptation_disabled_keeps_base() {
    let (a, _c) = adapter_with(&[
        ("latency_adaptation_enabled", json!(false)),
        ("async_contribution_enabled", json!(true)),
    ]);
    for _ in 0..10 {
        a.observe(&ok(secs(60.0)));
    }
    assert_eq!(deadline(&a), BASE);
    a.observe(&failed(ErrorKind::Timeout));
    assert_eq!(deadline(&a), BASE, "no growth either");
    // Health is still tracked, and async contribution still applies.
    a.observe(&failed(ErrorKind::Timeout));
    a.observe(&failed(ErrorKind::Timeout));
    assert!(!a.is_healthy());
    assert_eq!(a.timeouts(&Timeouts::default(), &async_request()).first_byte, MAX);
}

#[test]
fn learned_latency_is_forgotten_after_ten_health_intervals_without_traffic() {
    let (a, clock) = adapter_with(&[
        ("health_check_interval_ms", json!(1_000)),
        ("consecutive_failures_threshold", json!(5)),
    ]);
    a.observe(&ok(secs(30.0)));
    assert_near(deadline(&a), secs(90.0));
    clock.advance(secs(10.0));
    assert_near(deadline(&a), secs(90.0));
    clock.advance(ms(1));
    assert_eq!(deadline(&a), BASE, "older than 10 × 1 s");
    let snap = a.adaptive().snapshot();
    assert_eq!((snap.samples, snap.ewma, snap.p95), (0, None, None));

    // A grown floor is forgotten the same way.
    a.observe(&failed(ErrorKind::Timeout));
    assert_near(deadline(&a), secs(45.0));
    clock.advance(secs(10.001));
    assert_eq!(deadline(&a), BASE);

    // Only the old samples go: recent ones stay.
    a.observe(&ok(secs(20.0)));
    clock.advance(secs(6.0));
    a.observe(&ok(secs(35.0)));
    clock.advance(secs(6.0));
    let snap = a.adaptive().snapshot();
    assert_eq!((snap.samples, snap.p95), (1, Some(secs(35.0))));
}

#[test]
fn window_is_bounded() {
    let (a, _c) = adapter();
    for i in 0..1_000u64 {
        a.observe(&ok(ms(i)));
    }
    assert_eq!(a.adaptive().snapshot().samples, LATENCY_WINDOW);
}

#[test]
fn hooks_survive_boxing() {
    // A registry hands out `Box<dyn ProviderAdapter>`; the adaptive hooks must still run.
    let clock = FakeClock::new();
    let boxed: Box<dyn ProviderAdapter> =
        Box::new(QwenAdapter::with_clock(&settings(&[]), clock.shared()).unwrap());
    boxed.observe(&ok(secs(25.0)));
    assert_near(deadline(&boxed), secs(75.0));
}

#[test]
fn adapter_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<QwenAdapter>();
}

// ---------------------------------------------------------------------------------------------
// Settings

fn config_error(extra: &[(&str, Value)]) -> String {
    let err = QwenAdapter::new(&settings(extra)).expect_err("settings must be rejected");
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(err.message.contains("qwen-box"), "names the backend: {err}");
    err.message
}

#[test]
fn defaults_are_the_seeds() {
    let c = AdaptiveConfig::from_settings(&settings(&[])).unwrap();
    assert_eq!(c, AdaptiveConfig::default());
    assert_eq!(
        (c.base_timeout, c.max_timeout, c.timeout_multiplier, c.health_check_interval),
        (ms(30_000), ms(120_000), 3.0, ms(30_000))
    );
    assert_eq!(
        (c.consecutive_failures_threshold, c.async_contribution_enabled, c.latency_adaptation_enabled),
        (3, false, true)
    );
}

#[test]
fn every_setting_is_read() {
    let (a, _c) = adapter_with(&[
        ("base_timeout_ms", json!(1_000)),
        ("max_timeout_ms", json!(9_000)),
        ("timeout_multiplier", json!(2.5)),
        ("health_check_interval_ms", json!(500)),
        ("consecutive_failures_threshold", json!(7)),
        ("async_contribution_enabled", json!(true)),
        ("latency_adaptation_enabled", json!(false)),
    ]);
    assert_eq!(
        *a.adaptive().config(),
        AdaptiveConfig {
            base_timeout: ms(1_000),
            max_timeout: ms(9_000),
            timeout_multiplier: 2.5,
            health_check_interval: ms(500),
            consecutive_failures_threshold: 7,
            async_contribution_enabled: true,
            latency_adaptation_enabled: false,
        }
    );
    // The multiplier is the one configured: 2.5 × 2 s.
    let (a, _c) = adapter_with(&[("base_timeout_ms", json!(1_000)), ("timeout_multiplier", json!(2.5))]);
    a.observe(&ok(secs(2.0)));
    assert_near(deadline(&a), secs(5.0));
}

#[test]
fn settings_errors_name_the_key() {
    let cases: &[(&[(&str, Value)], &str)] = &[
        (&[("base_timeout_ms", json!("30s"))], "base_timeout_ms"),
        (&[("base_timeout_ms", json!(-1))], "base_timeout_ms"),
        (&[("base_timeout_ms", json!(0))], "base_timeout_ms"),
        (&[("max_timeout_ms", json!(1_000))], "max_timeout_ms"),
        (&[("max_timeout_ms", json!(null))], "max_timeout_ms"),
        (&[("timeout_multiplier", json!(0.5))], "timeout_multiplier"),
        (&[("timeout_multiplier", json!("3"))], "timeout_multiplier"),
        (&[("health_check_interval_ms", json!(0))], "health_check_interval_ms"),
        (&[("consecutive_failures_threshold", json!(0))], "consecutive_failures_threshold"),
        (&[("consecutive_failures_threshold", json!(2.5))], "consecutive_failures_threshold"),
        (&[("async_contribution_enabled", json!("yes"))], "async_contribution_enabled"),
        (&[("latency_adaptation_enabled", json!(1))], "latency_adaptation_enabled"),
        (&[("split_think_tags", json!("on"))], "split_think_tags"),
        (&[("enable_thinking", json!(0))], "enable_thinking"),
        // A typo is an error naming the typo, not a silent default.
        (&[("base_timout_ms", json!(1_000))], "base_timout_ms"),
        // The OpenAI adapter's keys are still checked by it.
        (&[("stream_include_usage", json!("no"))], "stream_include_usage"),
    ];
    for (extra, key) in cases {
        let message = config_error(extra);
        assert!(message.contains(&format!("`{key}`")), "{extra:?}: {message}");
    }
}

#[test]
fn a_typo_error_lists_the_known_keys() {
    let message = config_error(&[("max_timout_ms", json!(1))]);
    for key in ["max_timeout_ms", "split_think_tags", "stream_include_usage"] {
        assert!(message.contains(key), "{message}");
    }
}
