//! Process-wide retry budget (reliability-spec RT-6): retries and failovers are allowed while
//! retries in the last window ≤ max(min, ratio × requests in the window). Without it, an
//! all-failing fleet turns every request into `max_attempts` upstream calls exactly when the
//! upstream can least afford it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::router::RetryPolicy;

const BUCKETS: usize = 10;

#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    /// Index of the time slice this bucket holds (now / slice).
    slice: u64,
    requests: u32,
    retries: u32,
}

/// Sliding-window counters of requests and retries.
#[derive(Debug)]
pub struct RetryBudget {
    clock: Arc<dyn Clock>,
    slice: Duration,
    ratio: f64,
    min: u32,
    buckets: Mutex<[Bucket; BUCKETS]>,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy, clock: Arc<dyn Clock>) -> Self {
        let slice = (policy.budget_window / BUCKETS as u32).max(Duration::from_millis(1));
        Self {
            clock,
            slice,
            ratio: policy.budget_ratio,
            min: policy.budget_min,
            buckets: Mutex::new([Bucket::default(); BUCKETS]),
        }
    }

    fn current(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos() / self.slice.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    fn bucket(buckets: &mut [Bucket; BUCKETS], slice: u64) -> &mut Bucket {
        let i = usize::try_from(slice % BUCKETS as u64).unwrap_or(0);
        let b = &mut buckets[i];
        if b.slice != slice {
            *b = Bucket { slice, requests: 0, retries: 0 };
        }
        b
    }

    /// Counts a new request.
    pub fn record_request(&self) {
        let now = self.current();
        let mut b = self.buckets.lock();
        Self::bucket(&mut b, now).requests += 1;
    }

    /// Asks to spend one retry; counts it when granted.
    pub fn try_retry(&self) -> bool {
        let now = self.current();
        let mut buckets = self.buckets.lock();
        let oldest = now.saturating_sub(BUCKETS as u64 - 1);
        let (requests, retries) = buckets
            .iter()
            .filter(|b| b.slice >= oldest && b.slice <= now)
            .fold((0u64, 0u64), |(r, t), b| (r + u64::from(b.requests), t + u64::from(b.retries)));
        let allowed = (self.ratio * requests as f64).max(f64::from(self.min));
        if (retries + 1) as f64 > allowed {
            return false;
        }
        Self::bucket(&mut buckets, now).retries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    #[test]
    fn rt06_budget_caps_retries_and_recovers() {
        let clock = FakeClock::new();
        let policy = RetryPolicy { budget_min: 5, budget_ratio: 0.2, ..RetryPolicy::default() };
        let b = RetryBudget::new(&policy, clock.shared());
        for _ in 0..50 {
            b.record_request();
        }
        // max(5, 0.2 × 50) = 10 retries.
        let granted = (0..100).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 10);
        clock.advance(Duration::from_secs(11));
        b.record_request();
        assert!(b.try_retry(), "window slid past the old retries");
    }
}
