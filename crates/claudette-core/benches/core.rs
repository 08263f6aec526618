//! Benchmarks of claudette-core's hot paths, one module per component.
//!
//! `cargo bench -p claudette-core --bench core` runs them with divan. Divan reports
//! fastest/median/mean/slowest per sample; CB-19 is stated as a p99, so
//! `CLAUDETTE_P99=1 cargo bench -p claudette-core --bench core` additionally times every single
//! breaker call from 16 threads and prints the percentiles.

fn main() {
    if std::env::var_os("CLAUDETTE_P99").is_some() {
        breaker::print_p99(16, 200_000);
    }
    divan::main();
}

mod breaker {
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    use claudette_core::{BreakerConfig, CircuitBreaker, Outcome, SystemClock};

    fn closed() -> Arc<CircuitBreaker> {
        CircuitBreaker::new("bench", BreakerConfig::default(), SystemClock::shared())
    }

    /// CB-19: `acquire()` + `record(Success)` on one Closed breaker, uncontended and with 16
    /// threads hammering the same backend.
    #[divan::bench(threads = [1, 16])]
    fn acquire_record(bencher: divan::Bencher) {
        let b = closed();
        bencher.bench(|| {
            if let Ok(permit) = b.acquire() {
                permit.record(Outcome::Success, None);
            }
        });
    }

    /// The clock read every breaker call makes once: the floor under the figures above.
    #[divan::bench]
    fn system_clock_now(bencher: divan::Bencher) {
        let clock = SystemClock::shared();
        bencher.bench(|| clock.now());
    }

    /// The router's pre-scoring filter on a Closed breaker.
    #[divan::bench(threads = [1, 16])]
    fn check(bencher: divan::Bencher) {
        let b = closed();
        bencher.bench(|| b.check());
    }

    /// An Open breaker refusing: the path every request takes during an outage (includes the
    /// rejection counter of the `metrics` facade, without a recorder installed).
    #[divan::bench(threads = [1, 16])]
    fn acquire_rejected(bencher: divan::Bencher) {
        let config = BreakerConfig { open_base: Duration::from_secs(3600), ..BreakerConfig::default() };
        let b = CircuitBreaker::new("bench", config, SystemClock::shared());
        for _ in 0..5 {
            if let Ok(permit) = b.acquire() {
                permit.record(Outcome::Failure, None);
            }
        }
        bencher.bench(|| b.acquire().err());
    }

    /// Times each `acquire()` + `record()` pair individually from `threads` threads and prints
    /// p50/p99/p99.9/max. Timer overhead (two `Instant::now()`) is included, so the figures are
    /// an upper bound.
    pub fn print_p99(threads: usize, per_thread: usize) {
        let b = closed();
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (b, barrier) = (Arc::clone(&b), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let mut samples = Vec::with_capacity(per_thread);
                    barrier.wait();
                    for _ in 0..per_thread {
                        let start = Instant::now();
                        if let Ok(permit) = b.acquire() {
                            permit.record(Outcome::Success, None);
                        }
                        samples.push(start.elapsed());
                    }
                    samples
                })
            })
            .collect();
        let mut all: Vec<Duration> = handles.into_iter().filter_map(|h| h.join().ok()).flatten().collect();
        all.sort_unstable();
        let at =
            |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied();
        println!(
            "breaker acquire+record, {threads} threads x {per_thread}: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
            at(0.5).unwrap_or_default(),
            at(0.99).unwrap_or_default(),
            at(0.999).unwrap_or_default(),
            all.last().copied().unwrap_or_default(),
        );
    }
}

mod router {
    use std::sync::Arc;
    use std::time::Duration;

    use claudette_core::{
        Backend, BackendError, BackendInfo, BackendRouter, BackendType, ChatRequest, ChatResponse,
        EventStream, Pricing, RouterOptions,
    };

    /// A backend that is never called: selection does no I/O, so only `info()` and the cost
    /// estimate matter here.
    struct Idle(BackendInfo);

    #[async_trait::async_trait]
    impl Backend for Idle {
        fn info(&self) -> &BackendInfo {
            &self.0
        }
        async fn send(&self, _: &ChatRequest) -> Result<ChatResponse, BackendError> {
            Err(BackendError::internal("bench backend"))
        }
        async fn send_stream(&self, _: &ChatRequest) -> Result<EventStream, BackendError> {
            Err(BackendError::internal("bench backend"))
        }
        async fn health_check(&self) -> Result<(), BackendError> {
            Ok(())
        }
        async fn available_models(&self) -> Result<Vec<String>, BackendError> {
            Ok(Vec::new())
        }
    }

    fn router(n: usize) -> BackendRouter {
        let r = BackendRouter::new(RouterOptions::default());
        for i in 0..n {
            let info = BackendInfo {
                name: format!("backend-{i}"),
                provider: "bench".into(),
                backend_type: BackendType::Cloud,
                model: "m".into(),
                priority: 0,
                pricing: Pricing::new(0.001 * (i as f64 + 1.0), 0.002),
                quality: 0.5,
                supports_streaming: true,
                supports_tools: true,
                supports_images: false,
                context_window: None,
                region: None,
                tags: Vec::new(),
                enabled: true,
            };
            r.register_backend(Arc::new(Idle(info))).ok();
            // Give each backend some latency history so every scoring branch runs.
            if let Some(m) = r.metrics(&format!("backend-{i}")) {
                m.record_success(Duration::from_millis(100 + i as u64), 0.0, 10, 10);
            }
        }
        r
    }

    /// `select_backend` among 2, 10 and 100 backends (goal: < 2 µs for 10).
    #[divan::bench(args = [2, 10, 100])]
    fn select_backend(bencher: divan::Bencher, n: usize) {
        let r = router(n);
        let req = ChatRequest::prompt("Explain the difference between TCP and UDP in two sentences.")
            .with_max_tokens(256);
        bencher.bench(|| r.select_backend(divan::black_box(&req), &[]).map(|b| b.name().len()).ok());
    }
}
