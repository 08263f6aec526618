#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Circuit breaker behaviour, reliability-spec §2.1. Each test is named after the CB item(s) it
//! covers; all timing runs on a `FakeClock` and every test also checks the CB-18 counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use claudette_core::{
    BreakerConfig, BreakerCounters, BreakerState, CircuitBreaker, Clock, ErrorKind, FakeClock, Outcome,
    RejectReason, Rejection,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// Default config without jitter, so open times are exact.
fn exact() -> BreakerConfig {
    BreakerConfig { jitter: 0.0, ..BreakerConfig::default() }
}

fn breaker(config: BreakerConfig) -> (FakeClock, Arc<CircuitBreaker>) {
    let clock = FakeClock::new();
    let b = CircuitBreaker::new("a", config, clock.shared());
    (clock, b)
}

fn record(b: &Arc<CircuitBreaker>, outcome: Outcome) {
    b.acquire().expect("permit").record(outcome, None);
}

fn fail_n(b: &Arc<CircuitBreaker>, n: usize) {
    for _ in 0..n {
        record(b, Outcome::Failure);
    }
}

fn counters(b: &CircuitBreaker) -> BreakerCounters {
    b.snapshot().counters
}

/// Moves the clock to the open deadline and takes the probe.
fn probe_at_deadline(clock: &FakeClock, b: &Arc<CircuitBreaker>) -> claudette_core::Permit {
    let deadline = b.snapshot().retry_at.expect("open");
    clock.set(deadline);
    let p = b.acquire().expect("probe at the deadline");
    assert!(p.is_probe());
    p
}

// ---- CB-1 -----------------------------------------------------------------------------

#[test]
fn cb01_breakers_are_independent_per_backend() {
    let clock = FakeClock::new();
    let a = CircuitBreaker::new("a", exact(), clock.shared());
    let b = CircuitBreaker::new("b", exact(), clock.shared());
    fail_n(&a, 5);
    record(&b, Outcome::Throttle);
    assert_eq!(a.state(), BreakerState::Open);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(a.snapshot().throttled_until, None, "b's throttle must not reach a");
    assert_eq!(b.snapshot().window_failures, 0);
    assert_eq!(counters(&a), BreakerCounters { opened: 1, ..Default::default() });
    assert_eq!(counters(&b), BreakerCounters { throttles: 1, ..Default::default() });
    assert_eq!(a.backend(), "a");
    assert_eq!(b.backend(), "b");
}

// ---- CB-2 -----------------------------------------------------------------------------

#[test]
fn cb02_outcome_classes_count_as_specified() {
    // The classification itself (status → kind → outcome) lives in error.rs; here: each class
    // does what CB-2 says to the breaker.
    assert_eq!(ErrorKind::from_status(503).outcome(), Outcome::Failure);
    assert_eq!(ErrorKind::from_status(529).outcome(), Outcome::Failure);
    assert_eq!(ErrorKind::from_status(429).outcome(), Outcome::Throttle);
    assert_eq!(ErrorKind::from_status(401).outcome(), Outcome::Credential);
    assert_eq!(ErrorKind::from_status(402).outcome(), Outcome::Quota);
    assert_eq!(ErrorKind::from_status(422).outcome(), Outcome::Neutral);
    assert_eq!(ErrorKind::Cancelled.outcome(), Outcome::Neutral);

    let (_clock, b) = breaker(exact());
    record(&b, Outcome::Success);
    record(&b, Outcome::Failure);
    for _ in 0..20 {
        record(&b, Outcome::Neutral);
    }
    let s = b.snapshot();
    assert_eq!((s.window_successes, s.window_failures), (1, 1), "Neutral outcomes are not counted");
    assert_eq!(s.consecutive_failures, 1);
    assert_eq!(s.state, BreakerState::Closed);
    // A dropped, unrecorded permit is Neutral too.
    drop(b.acquire().unwrap());
    assert_eq!(b.snapshot().window_failures, 1);
    assert_eq!(s.counters, BreakerCounters::default());
}

#[test]
fn cb02_cb03_neutral_outcomes_do_not_break_a_failure_streak() {
    let (_clock, b) = breaker(exact());
    for _ in 0..4 {
        record(&b, Outcome::Failure);
        record(&b, Outcome::Neutral);
    }
    assert_eq!(b.snapshot().consecutive_failures, 4);
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(counters(&b).opened, 1);
}

// ---- CB-3 -----------------------------------------------------------------------------

#[test]
fn cb03_five_consecutive_failures_open() {
    let (clock, b) = breaker(exact());
    for i in 0..4 {
        record(&b, Outcome::Failure);
        clock.advance(S(29)); // each within W of the previous
        assert_eq!(b.state(), BreakerState::Closed, "still closed after {} failures", i + 1);
    }
    assert_eq!(b.snapshot().consecutive_failures, 4);
    record(&b, Outcome::Failure);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open, "opens on the 5th failure");
    assert_eq!(s.opens, 1);
    assert_eq!(s.retry_at, Some(clock.now() + S(10)));
    assert_eq!(s.counters, BreakerCounters { opened: 1, ..Default::default() });
}

#[test]
fn cb03_success_resets_the_streak() {
    let (_clock, b) = breaker(exact());
    fail_n(&b, 4);
    record(&b, Outcome::Success);
    assert_eq!(b.snapshot().consecutive_failures, 0);
    fail_n(&b, 4);
    assert_eq!(b.state(), BreakerState::Closed);
    // 8 failures + 1 success in the window is ≥ 50 % but below min_calls (10).
    assert_eq!(b.snapshot().window_failures, 8);
    assert_eq!(counters(&b).opened, 0);
}

#[test]
fn cb03_failures_further_apart_than_w_are_not_a_streak() {
    let (clock, b) = breaker(exact());
    for _ in 0..6 {
        record(&b, Outcome::Failure);
        clock.advance(S(31));
    }
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!(s.consecutive_failures, 1);
    assert_eq!(s.counters.opened, 0);
}

// ---- CB-4 -----------------------------------------------------------------------------

#[test]
fn cb04_failure_rate_over_min_calls_opens() {
    let (clock, b) = breaker(exact());
    // Alternate: never two failures in a row, so only the rate can trip.
    for _ in 0..4 {
        record(&b, Outcome::Failure);
        record(&b, Outcome::Success);
        clock.advance(S(1));
    }
    record(&b, Outcome::Failure); // 9 calls, 5 failures: below min_calls
    assert_eq!(b.state(), BreakerState::Closed);
    record(&b, Outcome::Success); // 10 calls, 50 % failures
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert_eq!(s.counters, BreakerCounters { opened: 1, ..Default::default() });
}

#[test]
fn cb04_rate_below_threshold_stays_closed() {
    let (_clock, b) = breaker(exact());
    use Outcome::{Failure as F, Success as K};
    // 40 % failures, never two in a row.
    for _ in 0..3 {
        for o in [F, K, K, F, K, K, F, K, F, K] {
            record(&b, o);
        }
    }
    let s = b.snapshot();
    assert_eq!((s.window_failures, s.window_successes), (12, 18));
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!(s.counters.opened, 0);
}

// ---- CB-5 -----------------------------------------------------------------------------

#[test]
fn cb05_outcomes_older_than_w_decay() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 4);
    clock.advance(S(30) + S(1));
    record(&b, Outcome::Failure);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!(s.consecutive_failures, 1);
    assert_eq!(s.window_failures, 1, "the four old failures left the window");
    assert_eq!(s.counters.opened, 0);
}

#[test]
fn cb05_rate_window_forgets_old_calls() {
    let (clock, b) = breaker(BreakerConfig { consecutive_failures: 0, ..exact() });
    for _ in 0..9 {
        record(&b, Outcome::Failure);
    }
    clock.advance(S(31));
    record(&b, Outcome::Failure);
    assert_eq!(b.snapshot().window_failures, 1);
    assert_eq!(b.state(), BreakerState::Closed, "9 stale + 1 fresh failure is not 10 calls");
    assert_eq!(counters(&b).opened, 0);
}

#[test]
fn cb05_window_slides_bucket_by_bucket() {
    // 30 s in ten 3 s slices: a failure every 3 s keeps exactly ten in the window.
    let (clock, b) = breaker(BreakerConfig { consecutive_failures: 0, min_calls: 1000, ..exact() });
    for k in 0..20u32 {
        clock.set(S(3 * u64::from(k)) + MS(1500));
        record(&b, Outcome::Failure);
        assert_eq!(b.snapshot().window_failures, (k + 1).min(10), "at slice {k}");
    }
    record(&b, Outcome::Success);
    clock.advance(S(12)); // four slices on: the four oldest failures leave
    let s = b.snapshot();
    assert_eq!((s.window_failures, s.window_successes), (6, 1));
    clock.advance(S(18)); // the slice of the last calls leaves too
    let s = b.snapshot();
    assert_eq!((s.window_failures, s.window_successes), (0, 0));
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!(s.counters, BreakerCounters::default());
}

// ---- CB-6, CB-20 building block -------------------------------------------------------

#[test]
fn cb06_open_rejects_without_a_permit_and_counts_rejections() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    let opened_at = clock.now();
    for i in 1..=3u64 {
        clock.advance(S(1));
        let rej = b.acquire().unwrap_err();
        assert_eq!(rej, Rejection { reason: RejectReason::Open, retry_at: opened_at + S(10) });
        assert_eq!(rej.retry_in(clock.now()), S(10 - i));
        assert_eq!(b.check(), Err(rej));
        assert_eq!(counters(&b).rejections, i, "check() does not count rejections");
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(counters(&b), BreakerCounters { opened: 1, rejections: 3, ..Default::default() });
}

#[test]
fn cb20_rejection_carries_the_earliest_time_the_backend_can_accept() {
    let (clock, b) = breaker(exact());
    let in_flight = b.acquire().unwrap();
    fail_n(&b, 5); // open until 10 s
    assert_eq!(b.acquire().unwrap_err().retry_at, S(10));
    // A 429 reported by a request that was still in flight pushes availability past the open
    // deadline: the rejection names the later of the two.
    in_flight.record(Outcome::Throttle, Some(S(25)));
    let rej = b.acquire().unwrap_err();
    assert_eq!(rej, Rejection { reason: RejectReason::Open, retry_at: S(25) });
    clock.set(S(20));
    assert_eq!(rej.retry_in(clock.now()), S(5));
    assert_eq!(b.acquire().unwrap_err(), Rejection { reason: RejectReason::Throttled, retry_at: S(25) });
    assert_eq!(rej.retry_in(S(30)), Duration::ZERO);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 1, rejections: 3, throttles: 1, ..Default::default() }
    );
}

// ---- CB-7 -----------------------------------------------------------------------------

#[test]
fn cb07_open_times_double_to_max() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    let mut seen = Vec::new();
    for k in 1..=7u32 {
        let now = clock.now();
        let s = b.snapshot();
        assert_eq!(s.opens, k);
        seen.push((s.retry_at.unwrap() - now).as_secs());
        // Probe and fail: reopen with k + 1 (CB-12).
        probe_at_deadline(&clock, &b).record(Outcome::Failure, None);
    }
    assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 8, half_opened: 7, probe_failures: 7, ..Default::default() }
    );
}

#[test]
fn cb07_open_times_are_jittered_within_ten_percent() {
    let clock = FakeClock::new();
    let mut distinct = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let b = CircuitBreaker::new("a", BreakerConfig::default(), clock.shared());
        fail_n(&b, 5);
        let mut expect = [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0].into_iter();
        for _ in 0..3 {
            let open = b.snapshot().retry_at.unwrap() - clock.now();
            let nominal = expect.next().unwrap();
            let secs = open.as_secs_f64();
            assert!(secs >= nominal * 0.9 - 1e-9 && secs <= nominal * 1.1 + 1e-9, "{secs} vs {nominal}");
            distinct.insert(open.as_millis());
            probe_at_deadline(&clock, &b).record(Outcome::Failure, None);
        }
        assert_eq!(counters(&b).opened, 4);
    }
    assert!(distinct.len() > 10, "jitter varies the open time");
}

#[test]
fn cb07_k_decays_by_one_per_open_max_of_closed_time() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5); // k = 1
    probe_at_deadline(&clock, &b).record(Outcome::Failure, None); // k = 2
    probe_at_deadline(&clock, &b).record(Outcome::Failure, None); // k = 3
    probe_at_deadline(&clock, &b).record(Outcome::Success, None); // closed, k kept
    assert_eq!(b.snapshot().opens, 3);
    clock.advance(S(299));
    assert_eq!(b.snapshot().opens, 3);
    clock.advance(S(1));
    assert_eq!(b.snapshot().opens, 2);
    clock.advance(S(300));
    assert_eq!(b.snapshot().opens, 1);
    fail_n(&b, 5); // k = 2
    let s = b.snapshot();
    assert_eq!(s.opens, 2);
    assert_eq!(s.retry_at.unwrap() - clock.now(), S(20));
    assert_eq!(
        s.counters,
        BreakerCounters {
            opened: 4,
            half_opened: 3,
            closed: 1,
            probe_successes: 1,
            probe_failures: 2,
            ..Default::default()
        }
    );
}

// ---- CB-8 -----------------------------------------------------------------------------

#[test]
fn cb08_deadlines_never_shrink() {
    // litellm#40130 / F-08: a later, shorter Retry-After must not shorten a longer one.
    let (clock, b) = breaker(exact());
    let first = b.acquire().unwrap();
    let second = b.acquire().unwrap();
    first.record(Outcome::Throttle, Some(S(30)));
    second.record(Outcome::Throttle, Some(S(1)));
    assert_eq!(b.snapshot().throttled_until, Some(S(30)));
    clock.advance(S(2));
    assert_eq!(b.acquire().unwrap_err(), Rejection { reason: RejectReason::Throttled, retry_at: S(30) });

    // Open deadlines too: a 401 (300 s), then a quota refusal (3600 s), then another 401 that
    // would end sooner: the deadline and the reason of the longest stay.
    let (clock, c) = breaker(exact());
    let (p1, p2) = (c.acquire().unwrap(), c.acquire().unwrap());
    c.acquire().unwrap().record(Outcome::Credential, None);
    assert_eq!(c.snapshot().retry_at, Some(S(300)));
    p1.record(Outcome::Quota, None);
    assert_eq!(c.snapshot().retry_at, Some(S(3600)));
    clock.advance(S(1));
    p2.record(Outcome::Credential, None);
    assert_eq!(c.acquire().unwrap_err(), Rejection { reason: RejectReason::Quota, retry_at: S(3600) });
    assert_eq!(counters(&c), BreakerCounters { opened: 1, rejections: 1, ..Default::default() });
    assert_eq!(counters(&b), BreakerCounters { rejections: 1, throttles: 2, ..Default::default() });
}

#[test]
fn cb08_successful_probe_and_reset_clear_deadlines() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    probe_at_deadline(&clock, &b).record(Outcome::Success, None);
    let s = b.snapshot();
    assert_eq!((s.state, s.retry_at, s.throttled_until), (BreakerState::Closed, None, None));

    let p = b.acquire().unwrap();
    b.acquire().unwrap().record(Outcome::Quota, None);
    p.record(Outcome::Throttle, Some(S(100)));
    assert!(b.snapshot().retry_at.is_some() && b.snapshot().throttled_until.is_some());
    b.reset();
    let s = b.snapshot();
    assert_eq!((s.state, s.retry_at, s.throttled_until, s.opens), (BreakerState::Closed, None, None, 0));
    // After a reset a shorter throttle applies as given.
    b.acquire().unwrap().record(Outcome::Throttle, Some(S(1)));
    assert_eq!(b.snapshot().throttled_until, Some(clock.now() + S(1)));
    assert_eq!(
        s.counters,
        BreakerCounters {
            opened: 2,
            half_opened: 1,
            closed: 2,
            probe_successes: 1,
            throttles: 1,
            ..Default::default()
        }
    );
}

// ---- CB-9 -----------------------------------------------------------------------------

#[test]
fn cb09_first_acquire_at_the_deadline_gets_the_probe_lazily() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    clock.set(S(10) - MS(1));
    assert_eq!(b.acquire().unwrap_err().reason, RejectReason::Open);
    clock.set(S(10));
    // Time passing alone changes nothing: no background timer, and check() does not move it.
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.check(), Ok(()));
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(counters(&b).half_opened, 0);
    let probe = b.acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.snapshot().probes_in_flight, 1);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 1, half_opened: 1, rejections: 1, ..Default::default() }
    );
    drop(probe);
}

// ---- CB-10 ----------------------------------------------------------------------------

#[test]
fn cb10_exactly_one_probe_of_100_concurrent() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    clock.set(b.snapshot().retry_at.unwrap());
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (b, barrier) = (Arc::clone(&b), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                // Keep the permit so the probe stays out while the others try.
                b.acquire()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let probes: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(probes.len(), 1);
    assert!(probes[0].is_probe());
    let rejected: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(rejected.len(), 99);
    assert!(rejected.iter().all(|r| r.reason == RejectReason::ProbeInFlight));
    // The others are told when the probe must have reported (probe_timeout).
    assert!(rejected.iter().all(|r| r.retry_at == S(10) + S(30)));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 1, half_opened: 1, rejections: 99, ..Default::default() }
    );
}

#[test]
fn cb10_probe_permits_bound_outstanding_probes() {
    let (clock, b) = breaker(BreakerConfig { probe_permits: 2, ..exact() });
    fail_n(&b, 5);
    clock.set(S(10));
    let p1 = b.acquire().unwrap();
    let p2 = b.acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    assert_eq!(b.acquire().unwrap_err().reason, RejectReason::ProbeInFlight);
    assert_eq!(b.check().unwrap_err().reason, RejectReason::ProbeInFlight);
    p1.record(Outcome::Success, None);
    assert_eq!(b.state(), BreakerState::Closed);
    // The second probe's late answer belongs to a finished half-open period: ignored.
    p2.record(Outcome::Failure, None);
    assert_eq!(b.snapshot().window_failures, 0);
    assert_eq!(
        counters(&b),
        BreakerCounters {
            opened: 1,
            half_opened: 1,
            closed: 1,
            rejections: 1,
            probe_successes: 1,
            ..Default::default()
        }
    );
}

// ---- CB-11 ----------------------------------------------------------------------------

#[test]
fn cb11_probe_success_closes_clears_window_keeps_k() {
    let (clock, b) = breaker(exact());
    record(&b, Outcome::Success);
    fail_n(&b, 5);
    probe_at_deadline(&clock, &b).record(Outcome::Success, None);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!((s.window_successes, s.window_failures, s.consecutive_failures), (0, 0, 0));
    assert_eq!(s.opens, 1, "k is kept");
    assert_eq!(
        s.counters,
        BreakerCounters { opened: 1, half_opened: 1, closed: 1, probe_successes: 1, ..Default::default() }
    );
    // A flapping backend gets a longer open next time.
    fail_n(&b, 5);
    assert_eq!(b.snapshot().retry_at.unwrap() - clock.now(), S(20));
}

// ---- CB-12 ----------------------------------------------------------------------------

#[test]
fn cb12_probe_failure_reopens_with_k_plus_one() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    probe_at_deadline(&clock, &b).record(Outcome::Failure, None);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert_eq!(s.opens, 2);
    assert_eq!(s.retry_at, Some(S(10) + S(20)));
    assert_eq!(b.acquire().unwrap_err().reason, RejectReason::Open);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 2, half_opened: 1, rejections: 1, probe_failures: 1, ..Default::default() }
    );
}

// ---- CB-13 ----------------------------------------------------------------------------

#[test]
fn cb13_stuck_probe_reopens_after_half_open_max_wait() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    let stuck = probe_at_deadline(&clock, &b);
    assert_eq!(b.config().probe_timeout, S(30), "exposed for the router");
    clock.advance(S(60));
    assert_eq!(b.acquire().unwrap_err().reason, RejectReason::ProbeInFlight, "not yet: 60 s exactly");
    clock.advance(MS(1));
    let rej = b.acquire().unwrap_err();
    assert_eq!(rej.reason, RejectReason::Open);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert_eq!(s.opens, 2);
    assert_eq!(s.retry_at, Some(clock.now() + S(20)));
    // The stuck probe's eventual answer is stale and changes nothing.
    stuck.record(Outcome::Success, None);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 2, half_opened: 1, rejections: 2, probe_failures: 1, ..Default::default() }
    );
}

#[test]
fn cb13_check_also_gives_up_on_a_stuck_probe() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    let _stuck = probe_at_deadline(&clock, &b);
    clock.advance(S(61));
    assert_eq!(b.check().unwrap_err().reason, RejectReason::Open);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 2, half_opened: 1, probe_failures: 1, ..Default::default() }
    );
}

// ---- CB-14 ----------------------------------------------------------------------------

#[test]
fn cb14_dropped_probe_permit_is_returned() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    let probe = probe_at_deadline(&clock, &b);
    assert_eq!(b.acquire().unwrap_err().reason, RejectReason::ProbeInFlight);
    drop(probe);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.snapshot().probes_in_flight, 0);
    let again = b.acquire().unwrap();
    assert!(again.is_probe());
    // A Neutral outcome (e.g. the client's 400) returns the probe the same way.
    again.record(Outcome::Neutral, None);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(b.acquire().unwrap().is_probe());
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 1, half_opened: 1, rejections: 1, ..Default::default() }
    );
}

#[test]
fn cb14_probe_permit_is_returned_when_its_thread_panics() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    clock.set(S(10));
    let b2 = Arc::clone(&b);
    let joined = thread::spawn(move || {
        let _probe = b2.acquire().unwrap();
        panic!("attempt panicked");
    })
    .join();
    assert!(joined.is_err());
    assert!(b.acquire().unwrap().is_probe(), "the panicking attempt's probe came back");
    assert_eq!(counters(&b), BreakerCounters { opened: 1, half_opened: 1, ..Default::default() });
}

// ---- CB-15 ----------------------------------------------------------------------------

#[test]
fn cb15_throttle_skips_until_hint_without_counting_a_failure() {
    let (clock, b) = breaker(exact());
    b.acquire().unwrap().record(Outcome::Throttle, Some(S(2)));
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!((s.window_failures, s.consecutive_failures), (0, 0));
    assert_eq!(b.acquire().unwrap_err(), Rejection { reason: RejectReason::Throttled, retry_at: S(2) });
    assert_eq!(b.check().unwrap_err().reason, RejectReason::Throttled);
    clock.advance(S(2));
    let p = b.acquire().unwrap();
    assert!(!p.is_probe(), "a throttle needs no probe");
    p.record(Outcome::Success, None);
    assert_eq!(counters(&b), BreakerCounters { rejections: 1, throttles: 1, ..Default::default() });
}

#[test]
fn cb15_throttle_default_and_cap() {
    let (clock, b) = breaker(exact());
    b.acquire().unwrap().record(Outcome::Throttle, None);
    assert_eq!(b.snapshot().throttled_until, Some(S(2)), "2 s without a hint");
    clock.advance(S(3));
    b.acquire().unwrap().record(Outcome::Throttle, Some(S(86_400)));
    assert_eq!(b.snapshot().throttled_until, Some(S(3) + S(300)), "capped at max_throttle");
    // Many throttles never trip the breaker.
    clock.advance(S(400));
    for _ in 0..20 {
        b.acquire().unwrap().record(Outcome::Throttle, Some(Duration::ZERO));
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(counters(&b), BreakerCounters { throttles: 22, ..Default::default() });
}

#[test]
fn cb15_throttled_probe_returns_its_permit() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    probe_at_deadline(&clock, &b).record(Outcome::Throttle, Some(S(5)));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.acquire().unwrap_err(), Rejection { reason: RejectReason::Throttled, retry_at: S(15) });
    clock.set(S(15));
    assert!(b.acquire().unwrap().is_probe());
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 1, half_opened: 1, rejections: 1, throttles: 1, ..Default::default() }
    );
}

// ---- CB-16 ----------------------------------------------------------------------------

#[test]
fn cb16_credential_opens_at_once_for_auth_open() {
    let (clock, b) = breaker(exact());
    record(&b, Outcome::Credential);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert_eq!(s.retry_at, Some(S(300)));
    assert_eq!(s.opens, 0, "not a failure open: k unchanged");
    assert_eq!(b.acquire().unwrap_err(), Rejection { reason: RejectReason::Credential, retry_at: S(300) });
    clock.set(S(300));
    // The probe after a credential open re-checks the key.
    b.acquire().unwrap().record(Outcome::Credential, None);
    assert_eq!(b.snapshot().retry_at, Some(S(600)));
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 2, half_opened: 1, rejections: 1, probe_failures: 1, ..Default::default() }
    );
}

#[test]
fn cb16_quota_opens_at_once_for_quota_open() {
    let (_clock, b) = breaker(exact());
    record(&b, Outcome::Quota);
    assert_eq!(b.acquire().unwrap_err(), Rejection { reason: RejectReason::Quota, retry_at: S(3600) });
    assert_eq!(counters(&b), BreakerCounters { opened: 1, rejections: 1, ..Default::default() });
}

/// Captures WARN events as `message field=value ...` lines.
#[derive(Clone, Default)]
struct WarnCapture(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for WarnCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut line = String::new();
            event.record(&mut Line(&mut line));
            self.0.lock().unwrap().push(line);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn cb16_credential_and_quota_are_logged_once_with_the_backend_name() {
    let capture = WarnCapture::default();
    let clock = FakeClock::new();
    let b = CircuitBreaker::new("openai-prod", exact(), clock.shared());
    tracing::subscriber::with_default(capture.clone(), || {
        // Three requests in flight all get 401: one open, one log line, and none per rejection.
        let permits: Vec<_> = (0..3).map(|_| b.acquire().unwrap()).collect();
        for p in permits {
            p.record(Outcome::Credential, None);
        }
        b.acquire().unwrap_err();
        b.reset();
        let permits: Vec<_> = (0..2).map(|_| b.acquire().unwrap()).collect();
        for p in permits {
            p.record(Outcome::Quota, None);
        }
        b.acquire().unwrap_err();
    });
    let lines = capture.0.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("backend=openai-prod") && lines[0].contains("credential"), "{lines:?}");
    assert!(lines[0].contains("open_for_s=300"), "{lines:?}");
    assert!(lines[1].contains("backend=openai-prod") && lines[1].contains("quota"), "{lines:?}");
    assert_eq!(counters(&b), BreakerCounters { opened: 2, closed: 1, rejections: 2, ..Default::default() });
}

// ---- CB-17 ----------------------------------------------------------------------------

#[test]
fn cb17_only_the_injected_clock_moves_the_breaker() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    // Real time passing does nothing: the fake clock stands still.
    thread::sleep(MS(20));
    assert_eq!(b.acquire().unwrap_err().retry_at, S(10));
    // A clock that goes backwards (it never should) cannot wrap or panic anything.
    clock.set(Duration::ZERO);
    assert_eq!(b.acquire().unwrap_err().retry_in(clock.now()), S(10));
    let (clock, c) = breaker(exact());
    clock.set(S(100));
    fail_n(&c, 3);
    clock.set(S(1));
    fail_n(&c, 2);
    assert_eq!(c.state(), BreakerState::Open);
    assert_eq!(counters(&b), BreakerCounters { opened: 1, rejections: 2, ..Default::default() });
}

// ---- CB-18 metrics facade -------------------------------------------------------------

/// A minimal `metrics` recorder: one shared atomic per key, rendered as `name{k=v,...}`.
#[derive(Default)]
struct TestRecorder {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl TestRecorder {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let mut labels: Vec<_> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.values.lock().unwrap().entry(name).or_default())
    }
    fn counter(&self, name: &str) -> u64 {
        self.values.lock().unwrap().get(name).map_or(0, |v| v.load(Ordering::SeqCst))
    }
    fn gauge(&self, name: &str) -> f64 {
        assert!(self.values.lock().unwrap().contains_key(name), "{name} was never set");
        f64::from_bits(self.counter(name))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn cb18_metrics_for_transitions_rejections_probes_and_state() {
    let rec = TestRecorder::default();
    let clock = FakeClock::new();
    metrics::with_local_recorder(&rec, || {
        let b = CircuitBreaker::new("m", exact(), clock.shared());
        let other = CircuitBreaker::new("n", exact(), clock.shared());
        assert_eq!(rec.gauge("claudette_breaker_state{backend=m}"), 0.0);
        fail_n(&b, 5);
        assert_eq!(rec.gauge("claudette_breaker_state{backend=m}"), 2.0);
        b.acquire().unwrap_err();
        b.acquire().unwrap_err();
        let probe = probe_at_deadline(&clock, &b);
        assert_eq!(rec.gauge("claudette_breaker_state{backend=m}"), 1.0);
        probe.record(Outcome::Failure, None);
        probe_at_deadline(&clock, &b).record(Outcome::Success, None);
        assert_eq!(rec.gauge("claudette_breaker_state{backend=m}"), 0.0);
        record(&b, Outcome::Throttle);

        assert_eq!(rec.counter("claudette_breaker_transitions_total{backend=m,to=open}"), 2);
        assert_eq!(rec.counter("claudette_breaker_transitions_total{backend=m,to=half_open}"), 2);
        assert_eq!(rec.counter("claudette_breaker_transitions_total{backend=m,to=closed}"), 1);
        assert_eq!(rec.counter("claudette_breaker_rejections_total{backend=m}"), 2);
        assert_eq!(rec.counter("claudette_breaker_probes_total{backend=m,result=success}"), 1);
        assert_eq!(rec.counter("claudette_breaker_probes_total{backend=m,result=failure}"), 1);
        assert_eq!(rec.counter("claudette_breaker_throttles_total{backend=m}"), 1);
        assert_eq!(rec.gauge("claudette_breaker_state{backend=n}"), 0.0);
        assert_eq!(rec.counter("claudette_breaker_transitions_total{backend=n,to=open}"), 0);
        assert_eq!(
            counters(&b),
            BreakerCounters {
                opened: 2,
                half_opened: 2,
                closed: 1,
                rejections: 2,
                probe_successes: 1,
                probe_failures: 1,
                throttles: 1
            }
        );
        assert_eq!(counters(&other), BreakerCounters::default());
    });
}

#[test]
fn cb18_snapshot_serializes_for_the_admin_api() {
    let (_clock, b) = breaker(exact());
    fail_n(&b, 5);
    b.acquire().unwrap_err();
    let v = serde_json::to_value(b.snapshot()).unwrap();
    assert_eq!(v["state"], "open");
    assert_eq!(v["retry_at"], 10_000);
    assert_eq!(v["throttled_until"], serde_json::Value::Null);
    assert_eq!(v["counters"]["opened"], 1);
    assert_eq!(v["counters"]["rejections"], 1);
    assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
}

// ---- FO-3 -----------------------------------------------------------------------------

#[test]
fn fo3_passing_health_check_moves_the_open_deadline_to_now_but_never_closes() {
    let (clock, b) = breaker(exact());
    fail_n(&b, 5);
    clock.advance(S(3));
    b.record_health_check(false);
    assert_eq!(b.snapshot().retry_at, Some(S(10)));
    b.record_health_check(true);
    assert_eq!(b.state(), BreakerState::Open, "a health check never closes the breaker");
    assert_eq!(b.snapshot().retry_at, Some(S(3)));
    let probe = b.acquire().unwrap();
    assert!(probe.is_probe());
    // On a Closed breaker a check changes nothing.
    probe.record(Outcome::Success, None);
    b.record_health_check(true);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(
        counters(&b),
        BreakerCounters { opened: 1, half_opened: 1, closed: 1, probe_successes: 1, ..Default::default() }
    );
}

// ---- stale permits --------------------------------------------------------------------

#[test]
fn cb08_cb03_late_failures_of_requests_in_flight_do_not_extend_an_open() {
    let (_clock, b) = breaker(exact());
    let in_flight: Vec<_> = (0..10).map(|_| b.acquire().unwrap()).collect();
    let mut in_flight = in_flight.into_iter();
    for p in in_flight.by_ref().take(5) {
        p.record(Outcome::Failure, None);
    }
    assert_eq!(b.snapshot().retry_at, Some(S(10)));
    for p in in_flight {
        p.record(Outcome::Failure, None);
    }
    let s = b.snapshot();
    assert_eq!((s.retry_at, s.opens), (Some(S(10)), 1));
    assert_eq!(s.counters, BreakerCounters { opened: 1, ..Default::default() });
}
