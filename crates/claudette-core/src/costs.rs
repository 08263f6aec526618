//! What this process has spent, per backend, model and gateway key, and what the month will
//! cost at this rate (the seeds' `analyzeCosts`).
//!
//! Kept as hourly aggregates (not per-request rows) so memory stays bounded however long the
//! process runs: for each of the last 31 days' hours, one bucket per (backend, model) pair and
//! one per gateway key that spent in it, so 31 × 24 × (pairs + keys) buckets at most. Keys are
//! counted beside the pairs, not crossed with them: a key's bucket does not multiply by every
//! backend and model it reached. The gateway's keys are the configured ones, so their number is
//! bounded too; a library caller that sets [`ChatRequest::tenant`](crate::ChatRequest::tenant)
//! from unbounded input (a user id per request) grows the tracker with it. A persistent ledger
//! that survives restarts is a separate concern; this answers "what did we spend since
//! start-up".
//!
//! That persistent ledger lives outside core (`claudette-ledger`), behind two small seams
//! defined here so core holds no storage code: a [`UsageSink`] the router hands every billed
//! attempt to (the same figures this tracker counts), and a [`CostSource`] the gateway asks
//! instead of the router when there is one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::types::Usage;

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
    /// By the gateway key that authenticated the request ([`ChatRequest::tenant`]), so an
    /// operator can answer "what did team A spend". Requests without one (a gateway without
    /// keys, a library caller) are the [`NO_KEY`] line.
    ///
    /// [`ChatRequest::tenant`]: crate::ChatRequest::tenant
    Key,
}

impl GroupBy {
    /// The stable lowercase name used in URLs and JSON (`backend`, `model`, `key`).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Backend => "backend",
            GroupBy::Model => "model",
            GroupBy::Key => "key",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "backend" => Some(GroupBy::Backend),
            "model" => Some(GroupBy::Model),
            "key" => Some(GroupBy::Key),
            _ => None,
        }
    }
}

/// The [`GroupBy::Key`] line of spend that no gateway key authenticated. Gateway key names are
/// 1 to 64 of `A-Z a-z 0-9 - _ .` (claudette-config checks them), so no key can be named
/// this; a library caller setting [`ChatRequest::tenant`](crate::ChatRequest::tenant) itself
/// should not use it either.
pub const NO_KEY: &str = "(no key)";

/// Whose request a billed attempt served, carried with each booking: borrowed from the
/// request (or from what a stream kept of it), so booking copies nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attribution<'a> {
    /// [`ChatRequest::request_id`](crate::ChatRequest::request_id).
    pub request_id: Option<&'a str>,
    /// [`ChatRequest::tenant`](crate::ChatRequest::tenant).
    pub tenant: Option<&'a str>,
}

impl<'a> Attribution<'a> {
    pub fn of(request: &'a crate::ChatRequest) -> Self {
        Self { request_id: request.request_id.as_deref(), tenant: request.tenant.as_deref() }
    }
}

/// The answer to "what did we spend". Deserializable so that a client of several gateways
/// (a fleet of replicas, each with its own ledger) can read their answers and
/// [`merge`](Self::merge) them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// How a billed attempt ended. Every one of them is billed by the provider, so every one is
/// booked; the outcome tells an auditor which figures are reported and which estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageOutcome {
    /// A complete answer, or a stream that reached its `Done`: the provider's figures.
    Success,
    /// A stream that failed after it committed: estimated figures up to the failure.
    Failed,
    /// A stream the client dropped before its end: estimated figures up to then.
    Abandoned,
}

impl UsageOutcome {
    /// The stable lowercase name stored and shown (`success`, `failed`, `abandoned`).
    pub fn as_str(self) -> &'static str {
        match self {
            UsageOutcome::Success => "success",
            UsageOutcome::Failed => "failed",
            UsageOutcome::Abandoned => "abandoned",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(UsageOutcome::Success),
            "failed" => Some(UsageOutcome::Failed),
            "abandoned" => Some(UsageOutcome::Abandoned),
            _ => None,
        }
    }
}

/// One billed attempt, as handed to a [`UsageSink`]. Borrowed, so a router without a sink
/// builds nothing and one with a sink copies only what the sink keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageRecord<'a> {
    /// Wall-clock time of the booking: a ledger outlives the process, so the router's
    /// monotonic clock (whose origin is start-up) means nothing to it.
    pub at: SystemTime,
    /// The request's [`ChatRequest::request_id`](crate::ChatRequest::request_id) (the
    /// gateway's `x-request-id`), so a ledger row can be tied to a client's complaint and to
    /// the request's log lines; `None` for a request that had none (a library caller's).
    pub request_id: Option<&'a str>,
    /// The request's [`ChatRequest::tenant`](crate::ChatRequest::tenant): the name of the
    /// gateway key that authenticated it, so spend can be told per key; `None` without one.
    pub tenant: Option<&'a str>,
    pub backend: &'a str,
    pub model: &'a str,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cache_read_tokens: u32,
    pub cache_write_tokens: u32,
    /// Already sanitised as the tracker counts it: a finite number ≥ 0.
    pub cost: f64,
    pub outcome: UsageOutcome,
}

/// Where the router books each billed attempt besides its in-memory [`CostTracker`] (a
/// persistent ledger, an exporter).
///
/// `record` runs on the request path, inside the router's bookkeeping and sometimes inside a
/// stream's `poll_next` or `Drop`: it must not block, do I/O or wait on a lock held across
/// I/O. Hand the record to another thread and return.
pub trait UsageSink: Send + Sync + fmt::Debug {
    fn record(&self, record: &UsageRecord<'_>);
}

/// Why a [`CostSource`] could not answer (its own typed error, boxed: core knows no storage).
pub type CostSourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something that answers "what did we spend" instead of the router's in-memory tracker,
/// typically over a longer history (a persistent ledger).
///
/// `analyze_costs` may do blocking I/O: async callers run it off their executor
/// (`spawn_blocking`).
pub trait CostSource: Send + Sync + fmt::Debug {
    /// The longest window this source answers for in full: older spend may be pruned.
    fn max_timeframe(&self) -> Duration;

    /// The same shape and semantics as [`CostTracker::analyze`]: hour-widened windows, the
    /// span actually covered in `observed_secs`, the projection over that span.
    fn analyze_costs(&self, timeframe: Duration, group_by: GroupBy) -> Result<CostAnalysis, CostSourceError>;
}

/// Hourly cost aggregates by (backend, model) and by gateway key, plus the optional
/// [`UsageSink`] every booking is also handed to.
#[derive(Debug)]
pub struct CostTracker {
    clock: Arc<dyn Clock>,
    started: Duration,
    buckets: Mutex<Buckets>,
    /// Set at most once: one lock-free load per booking, and no record is split between two
    /// sinks by a swap mid-flight.
    sink: OnceLock<Arc<dyn UsageSink>>,
}

impl CostTracker {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let started = clock.now();
        Self { clock, started, buckets: Mutex::new(Buckets::default()), sink: OnceLock::new() }
    }

    /// Hands every later booking to `sink` as well. Once only: `Err` gives the sink back when
    /// one is already set.
    pub fn set_sink(&self, sink: Arc<dyn UsageSink>) -> Result<(), Arc<dyn UsageSink>> {
        self.sink.set(sink)
    }

    /// Whether bookings are handed to a sink: a caller that must keep something only the
    /// sink reads (a stream keeping its request id until it ends) keeps nothing without one.
    pub fn has_sink(&self) -> bool {
        self.sink.get().is_some()
    }

    /// Books one billed attempt of the request `by`: counts it here (as
    /// [`record`](Self::record) does, under the request's key) and hands the same figures,
    /// with the request id, the key, the cache tokens and the outcome, to the sink if there
    /// is one.
    pub fn book(
        &self,
        by: Attribution<'_>,
        backend: &str,
        model: &str,
        cost: f64,
        usage: &Usage,
        outcome: UsageOutcome,
    ) {
        self.count(by.tenant, backend, model, cost, usage.input_tokens, usage.output_tokens);
        if let Some(sink) = self.sink.get() {
            sink.record(&UsageRecord {
                at: SystemTime::now(),
                request_id: by.request_id,
                tenant: by.tenant,
                backend,
                model,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cache_read_tokens,
                cache_write_tokens: usage.cache_write_tokens,
                cost: sane_cost(cost),
                outcome,
            });
        }
    }

    /// Records one billed attempt, of no gateway key (the [`NO_KEY`] line). A cost that is not
    /// a finite number ≥ 0 (a NaN or negative price, a buggy plugin) counts as 0: one NaN
    /// would otherwise turn its hour's total, and every total and projection over it, into NaN
    /// for the whole retention period.
    pub fn record(&self, backend: &str, model: &str, cost: f64, input_tokens: u32, output_tokens: u32) {
        self.count(None, backend, model, cost, input_tokens, output_tokens);
    }

    /// [`record`](Self::record) for `tenant` (the gateway key; `None`: the [`NO_KEY`] line).
    fn count(
        &self,
        tenant: Option<&str>,
        backend: &str,
        model: &str,
        cost: f64,
        input_tokens: u32,
        output_tokens: u32,
    ) {
        let now = self.clock.now();
        let hour = now.as_secs() / BUCKET.as_secs();
        let line = CostLine {
            cost: sane_cost(cost),
            requests: 1,
            input_tokens: u64::from(input_tokens),
            output_tokens: u64::from(output_tokens),
        };
        let mut b = self.buckets.lock();
        b.prune(hour, now);
        b.hours.entry(hour).or_default().add(tenant, backend, model, &line);
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
        let (from, window_start) = window_start(now, timeframe.min(MAX_TIMEFRAME));
        let observed = now.saturating_sub(window_start.max(self.started));
        let buckets = self.buckets.lock();
        let hours = || buckets.hours.range(from..).map(|(_, h)| h);
        let lines: Box<dyn Iterator<Item = (&str, CostLine)> + '_> = match group_by {
            GroupBy::Backend => Box::new(hours().flat_map(|h| {
                h.routes
                    .iter()
                    .flat_map(|(backend, models)| models.values().map(move |l| (backend.as_str(), *l)))
            })),
            GroupBy::Model => Box::new(hours().flat_map(|h| {
                h.routes.values().flat_map(|models| models.iter().map(|(model, l)| (model.as_str(), *l)))
            })),
            GroupBy::Key => Box::new(hours().flat_map(|h| {
                let unkeyed = (h.no_key.requests > 0).then_some((NO_KEY, h.no_key));
                h.keys.iter().map(|(k, l)| (k.as_str(), *l)).chain(unkeyed)
            })),
        };
        CostAnalysis::from_lines(timeframe, observed, group_by, lines)
    }
}

/// The tracker's aggregates, per hour (a `BTreeMap`: the current hour is its last entry, and
/// a window is a range).
#[derive(Debug, Default)]
struct Buckets {
    hours: BTreeMap<u64, Hour>,
    /// The hour of the last booking: buckets are pruned when it changes.
    hour: u64,
}

/// One hour's spend, counted twice: once per (backend, model) and once per key, so that
/// neither grouping multiplies the other's buckets. Nested by name, so that a booking finds
/// its lines by `&str` and copies no name once they exist (a booking is on every request).
#[derive(Debug, Default)]
struct Hour {
    /// Backend → model → spend.
    routes: HashMap<String, HashMap<String, CostLine>>,
    /// Gateway key → spend.
    keys: HashMap<String, CostLine>,
    /// Spend of requests without a key (the [`NO_KEY`] line), apart: most deployments have no
    /// keys, and this needs no lookup.
    no_key: CostLine,
}

impl Hour {
    fn add(&mut self, tenant: Option<&str>, backend: &str, model: &str, line: &CostLine) {
        let models = match self.routes.get_mut(backend) {
            Some(m) => m,
            None => self.routes.entry(backend.to_owned()).or_default(),
        };
        match models.get_mut(model) {
            Some(l) => l.add(line),
            None => {
                models.insert(model.to_owned(), *line);
            }
        }
        let Some(tenant) = tenant else {
            self.no_key.add(line);
            return;
        };
        match self.keys.get_mut(tenant) {
            Some(l) => l.add(line),
            None => {
                self.keys.insert(tenant.to_owned(), *line);
            }
        }
    }
}

impl Buckets {
    /// Drops buckets older than the retention, once per hour (at the first booking of a new
    /// hour): what they hold is out of every window, and scanning on every booking would cost
    /// each request a pass over a month of buckets.
    fn prune(&mut self, hour: u64, now: Duration) {
        if hour == self.hour {
            return;
        }
        self.hour = hour;
        let oldest = now.saturating_sub(RETENTION).as_secs() / BUCKET.as_secs();
        self.hours = self.hours.split_off(&oldest);
    }
}

/// The first hour bucket a window of `timeframe` ending at `now` counts, and when that bucket
/// starts: spend is kept per hour, so a bucket is counted whole or not at all and the window
/// widens at its start to a whole hour. `now` is measured from any origin that is a whole
/// number of hours from the buckets' (the tracker's clock origin, the Unix epoch).
pub fn window_start(now: Duration, timeframe: Duration) -> (u64, Duration) {
    let from = now.saturating_sub(timeframe).as_secs() / BUCKET.as_secs();
    (from, Duration::from_secs(from.saturating_mul(BUCKET.as_secs())))
}

impl CostAnalysis {
    /// Sums `lines` (each keyed by its backend, model or key label, as `group_by` says; a key
    /// may repeat) into an analysis whose figures span `observed`, projected to a 30-day
    /// month. Shared by the in-memory tracker and any [`CostSource`], so both answer alike.
    pub fn from_lines<'a>(
        timeframe: Duration,
        observed: Duration,
        group_by: GroupBy,
        lines: impl IntoIterator<Item = (&'a str, CostLine)>,
    ) -> Self {
        let mut breakdown: BTreeMap<String, CostLine> = BTreeMap::new();
        let mut total = CostLine::default();
        for (key, line) in lines {
            match breakdown.get_mut(key) {
                Some(l) => l.add(&line),
                None => {
                    breakdown.insert(key.to_owned(), line);
                }
            }
            total.add(&line);
        }
        // The span the summed buckets cover, not `timeframe`: dividing a bucket-widened total
        // by the narrower requested window overstated the projection by up to 2× for `1h`.
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

    /// Adds another process's answer for the same window and grouping to this one: a fleet's
    /// spend is the sum of its replicas', each of which books only what it served.
    ///
    /// The projection is the sum of the replicas' own projections, not the summed cost over one
    /// span: replicas started at different times observed different spans, and a replica up
    /// for an hour projects its hour while one up for a week projects its week. A replica with
    /// less than a minute of data has no projection and adds none; only when no replica has
    /// one is the merged projection `None`. `observed_secs` becomes the longest span observed.
    ///
    /// Answers for different windows or groupings do not add up: `Err` names the mismatch.
    pub fn merge(&mut self, other: &CostAnalysis) -> Result<(), String> {
        if other.group_by != self.group_by {
            return Err(format!("grouped by {:?}, not by {:?}", other.group_by, self.group_by));
        }
        if other.timeframe_secs != self.timeframe_secs {
            return Err(format!("covers a {} s window, not {} s", other.timeframe_secs, self.timeframe_secs));
        }
        for (key, line) in &other.breakdown {
            self.breakdown.entry(key.clone()).or_default().add(line);
        }
        self.total_cost += other.total_cost;
        self.total_requests += other.total_requests;
        self.total_tokens += other.total_tokens;
        self.observed_secs = self.observed_secs.max(other.observed_secs);
        self.projected_monthly_cost = match (self.projected_monthly_cost, other.projected_monthly_cost) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

/// `cost` if it is a finite number ≥ 0, else 0. Public so that every consumer of booked
/// figures (a ledger, too) applies the same rule.
pub fn sane_cost(cost: f64) -> f64 {
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
        // Many (backend, model) pairs: how much is kept must not depend on how many there are.
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

    /// Two replicas up for different spans: their projections add, not their costs over the
    /// longer span (which would spread the newer replica's spend over time it did not run).
    #[test]
    fn replicas_merge_line_by_line_and_projection_by_projection() {
        let day = Duration::from_secs(86_400);
        let line = |cost, requests| CostLine { cost, requests, input_tokens: 10, output_tokens: 5 };
        let mut a = CostAnalysis::from_lines(day, day, GroupBy::Backend, [("openai", line(3.0, 3))]);
        let b = CostAnalysis::from_lines(
            day,
            Duration::from_secs(3600),
            GroupBy::Backend,
            [("openai", line(1.0, 1)), ("claude", line(0.5, 2))],
        );
        let fresh = CostAnalysis::from_lines(
            day,
            Duration::from_secs(10),
            GroupBy::Backend,
            [("claude", line(0.1, 1))],
        );
        a.merge(&b).unwrap();
        a.merge(&fresh).unwrap();
        assert!((a.total_cost - 4.6).abs() < 1e-9);
        assert_eq!((a.total_requests, a.total_tokens, a.observed_secs), (7, 60, 86_400));
        assert!((a.breakdown["openai"].cost - 4.0).abs() < 1e-9);
        assert_eq!(a.breakdown["claude"].requests, 3);
        // 3.0 a day → 90; 1.5 an hour → 1080; the 10-second replica projects nothing yet.
        assert!((a.projected_monthly_cost.unwrap() - (90.0 + 1080.0)).abs() < 1e-6);

        let by_model = CostAnalysis::from_lines(day, day, GroupBy::Model, []);
        assert!(a.merge(&by_model).unwrap_err().contains("grouped by Model"));
        let hour = CostAnalysis::from_lines(Duration::from_secs(3600), day, GroupBy::Backend, []);
        assert!(a.merge(&hour).unwrap_err().contains("3600 s window"));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(serde_json::from_value::<CostAnalysis>(json).unwrap(), a);
    }

    /// Spend per gateway key: each key's requests and cost, whatever backend served them, the
    /// keyless ones on their own line, the same totals as by backend, and old hours leaving
    /// the window (and memory) as the pairs' do.
    #[test]
    fn groups_by_key_beside_backend_and_model() {
        let clock = FakeClock::new();
        let t = CostTracker::new(clock.shared());
        let usage = |i, o| Usage { input_tokens: i, output_tokens: o, ..Usage::default() };
        let team = |name| Attribution { request_id: Some("req-1"), tenant: Some(name) };
        t.book(team("team-a"), "openai", "gpt-4o", 1.0, &usage(100, 50), UsageOutcome::Success);
        t.book(Attribution::default(), "openai", "gpt-4o", 0.125, &usage(1, 1), UsageOutcome::Success);
        clock.advance(Duration::from_secs(2 * 3600));
        t.book(team("team-a"), "claude", "sonnet", 0.5, &usage(10, 5), UsageOutcome::Failed);
        t.book(team("team-b"), "claude", "sonnet", 0.25, &usage(10, 5), UsageOutcome::Abandoned);

        let by_key = t.analyze(Duration::from_secs(86_400), GroupBy::Key);
        assert_eq!(by_key.group_by, GroupBy::Key);
        assert_eq!(by_key.breakdown.keys().collect::<Vec<_>>(), [NO_KEY, "team-a", "team-b"]);
        let a = by_key.breakdown["team-a"];
        assert_eq!((a.requests, a.input_tokens, a.output_tokens), (2, 110, 55));
        assert!((a.cost - 1.5).abs() < 1e-9);
        assert_eq!(by_key.breakdown[NO_KEY].requests, 1);
        let by_backend = t.analyze(Duration::from_secs(86_400), GroupBy::Backend);
        assert_eq!(
            (by_key.total_cost, by_key.total_requests, by_key.total_tokens, by_key.projected_monthly_cost),
            (
                by_backend.total_cost,
                by_backend.total_requests,
                by_backend.total_tokens,
                by_backend.projected_monthly_cost
            )
        );
        let last_hour = t.analyze(Duration::from_secs(3600), GroupBy::Key);
        assert_eq!(last_hour.breakdown.keys().collect::<Vec<_>>(), ["team-a", "team-b"]);
        assert_eq!(last_hour.total_requests, 2);

        clock.advance(RETENTION + BUCKET);
        t.book(team("team-c"), "openai", "gpt-4o", 0.0, &usage(1, 1), UsageOutcome::Success);
        let b = t.buckets.lock();
        assert_eq!(b.hours.len(), 1, "hours past the retention are kept");
        drop(b);
        assert_eq!(serde_json::to_value(GroupBy::Key).unwrap(), "key");
        assert_eq!(GroupBy::parse(GroupBy::Key.as_str()), Some(GroupBy::Key));
    }

    #[test]
    fn timeframes_parse() {
        assert_eq!(parse_timeframe("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_timeframe("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_timeframe("h"), None);
        assert_eq!(parse_timeframe("5y"), None);
    }
}
