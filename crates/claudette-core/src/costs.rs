//! What this process has spent, per backend and model, and what the month will cost at this
//! rate (the seeds' `analyzeCosts`).
//!
//! Kept as hourly aggregates (not per-request rows) so memory stays bounded however long the
//! process runs: 31 days × backends × models buckets at most. A persistent ledger that survives
//! restarts is a separate concern; this answers "what did we spend since start-up".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

const BUCKET: Duration = Duration::from_secs(3600);
/// How far back spend is kept: buckets older than this are dropped (once there are many), and
/// no analysis reaches further back. A window asked for beyond it would count only the part
/// still kept, yet span (and project over) all of it; the gateway refuses such a window.
pub const MAX_TIMEFRAME: Duration = Duration::from_secs(31 * 24 * 3600);
const RETENTION: Duration = MAX_TIMEFRAME;
const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    pub cost: f64,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl CostLine {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
    fn add(&mut self, o: &CostLine) {
        self.cost += o.cost;
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
    }
}

/// How to break costs down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    #[default]
    Backend,
    Model,
}

/// The answer to "what did we spend".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostAnalysis {
    /// The window asked for, in seconds.
    pub timeframe_secs: u64,
    /// The span the figures cover, in seconds: the window widened at its start to a whole hour
    /// (spend is kept per hour, so a bucket is counted whole or not at all), but never before
    /// start-up. It can exceed `timeframe_secs` by up to an hour; the projection divides by it,
    /// so a widened window does not inflate the monthly figure.
    pub observed_secs: u64,
    pub group_by: GroupBy,
    pub total_cost: f64,
    pub total_requests: u64,
    pub total_tokens: u64,
    pub breakdown: BTreeMap<String, CostLine>,
    /// `total_cost` scaled from the observed span to 30 days. `None` until a minute of data.
    pub projected_monthly_cost: Option<f64>,
}

/// Hourly cost aggregates by (backend, model).
#[derive(Debug)]
pub struct CostTracker {
    clock: Arc<dyn Clock>,
    started: Duration,
    buckets: Mutex<HashMap<(u64, String, String), CostLine>>,
}

impl CostTracker {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let started = clock.now();
        Self { clock, started, buckets: Mutex::new(HashMap::new()) }
    }

    /// Records one billed attempt. A cost that is not a finite number ≥ 0 (a NaN or negative
    /// price, a buggy plugin) counts as 0: one NaN would otherwise turn its hour's total, and
    /// every total and projection over it, into NaN for the whole retention period.
    pub fn record(&self, backend: &str, model: &str, cost: f64, input_tokens: u32, output_tokens: u32) {
        let now = self.clock.now();
        let hour = now.as_secs() / BUCKET.as_secs();
        let line = CostLine {
            cost: sane_cost(cost),
            requests: 1,
            input_tokens: u64::from(input_tokens),
            output_tokens: u64::from(output_tokens),
        };
        let mut b = self.buckets.lock();
        b.entry((hour, backend.to_owned(), model.to_owned())).or_default().add(&line);
        let oldest = now.saturating_sub(RETENTION).as_secs() / BUCKET.as_secs();
        if b.len() > 4096 {
            b.retain(|(h, _, _), _| *h >= oldest);
        }
    }

    /// Costs over the last `timeframe` (widened to whole hours, see
    /// [`CostAnalysis::observed_secs`]), grouped, with a monthly projection.
    ///
    /// A `timeframe` beyond [`MAX_TIMEFRAME`] covers only that much: older spend may already
    /// be dropped, and which of it is depends on how many buckets there were. So that the
    /// totals and the projection agree, the figures then cover the last [`MAX_TIMEFRAME`]
    /// and `observed_secs` says so.
    pub fn analyze(&self, timeframe: Duration, group_by: GroupBy) -> CostAnalysis {
        let now = self.clock.now();
        let from = now.saturating_sub(timeframe.min(MAX_TIMEFRAME)).as_secs() / BUCKET.as_secs();
        let window_start = Duration::from_secs(from.saturating_mul(BUCKET.as_secs())).max(self.started);
        let mut breakdown: BTreeMap<String, CostLine> = BTreeMap::new();
        let mut total = CostLine::default();
        for ((hour, backend, model), line) in self.buckets.lock().iter() {
            if *hour < from {
                continue;
            }
            let key = match group_by {
                GroupBy::Backend => backend,
                GroupBy::Model => model,
            };
            breakdown.entry(key.clone()).or_default().add(line);
            total.add(line);
        }
        // The span the summed buckets cover, not `timeframe`: dividing a bucket-widened total
        // by the narrower requested window overstated the projection by up to 2× for `1h`.
        let observed = now.saturating_sub(window_start);
        let projected = (observed >= Duration::from_secs(60))
            .then(|| total.cost * (MONTH.as_secs_f64() / observed.as_secs_f64()));
        CostAnalysis {
            timeframe_secs: timeframe.as_secs(),
            observed_secs: observed.as_secs(),
            group_by,
            total_cost: total.cost,
            total_requests: total.requests,
            total_tokens: total.tokens(),
            breakdown,
            projected_monthly_cost: projected,
        }
    }
}

/// `cost` if it is a finite number ≥ 0, else 0.
pub(crate) fn sane_cost(cost: f64) -> f64 {
    if cost.is_finite() && cost >= 0.0 { cost } else { 0.0 }
}

/// Parses a timeframe such as `24h`, `7d`, `30m`, `90s`, `1w`.
pub fn parse_timeframe(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    #[test]
    fn groups_windows_and_projects() {
        let clock = FakeClock::new();
        let t = CostTracker::new(clock.shared());
        t.record("openai", "gpt-4o", 1.0, 100, 50);
        clock.advance(Duration::from_secs(2 * 3600));
        t.record("claude", "sonnet", 0.5, 10, 5);
        t.record("openai", "gpt-4o-mini", 0.25, 10, 5);
        let all = t.analyze(Duration::from_secs(86_400), GroupBy::Backend);
        assert_eq!(all.total_requests, 3);
        assert!((all.breakdown["openai"].cost - 1.25).abs() < 1e-9);
        assert_eq!(all.total_tokens, 180);
        // 1.75 over 2 h observed → ×360 for a 30-day month.
        assert!((all.projected_monthly_cost.unwrap() - 1.75 * 360.0).abs() < 1e-6);
        let last_hour = t.analyze(Duration::from_secs(3600), GroupBy::Model);
        assert_eq!(last_hour.total_requests, 2);
        assert!(last_hour.breakdown.contains_key("sonnet"));
    }

    /// Spend older than the retention may be dropped once there are many buckets, so a longer
    /// window counted only what was left, over a span that reached back to start-up: its total
    /// and projection were too low, and by how much depended on how many backends and models
    /// there were.
    #[test]
    fn windows_beyond_the_retention_cover_exactly_the_retention() {
        let clock = FakeClock::new();
        let t = CostTracker::new(clock.shared());
        t.record("a", "m", 100.0, 1, 1);
        clock.advance(Duration::from_secs(40 * 86_400));
        // Enough (backend, model) pairs that the next record prunes.
        for i in 0..4100 {
            t.record("a", &format!("m{i}"), 0.001, 1, 1);
        }
        let long = t.analyze(Duration::from_secs(60 * 86_400), GroupBy::Backend);
        let max = t.analyze(MAX_TIMEFRAME, GroupBy::Backend);
        assert_eq!(long.timeframe_secs, 60 * 86_400);
        assert_eq!((long.total_requests, long.observed_secs), (max.total_requests, max.observed_secs));
        assert!(long.observed_secs <= (MAX_TIMEFRAME + BUCKET).as_secs(), "{}", long.observed_secs);
        let expected = long.total_cost * MONTH.as_secs_f64() / long.observed_secs as f64;
        assert!((long.projected_monthly_cost.unwrap() - expected).abs() < 1e-9);
        assert!((long.total_cost - 4.1).abs() < 1e-9, "{}", long.total_cost);
    }

    #[test]
    fn timeframes_parse() {
        assert_eq!(parse_timeframe("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_timeframe("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_timeframe("h"), None);
        assert_eq!(parse_timeframe("5y"), None);
    }
}
