//! # claudette-ledger
//!
//! A persistent usage and cost ledger: every billed attempt the router books, kept in a SQLite
//! file so that "what did we spend per backend this week" survives restarts, deploys and
//! crashes (the in-memory [`CostTracker`](claudette_core::costs::CostTracker) forgets all of it
//! at exit and keeps 31 days at most).
//!
//! ## Off the request path
//!
//! The gateway's added-latency budget is tight, so [`Ledger`] as a
//! [`UsageSink`] does no I/O and takes no lock held across I/O: [`UsageSink::record`] copies the
//! record and `try_send`s it into a bounded channel. A dedicated writer thread does group
//! commit: it blocks for the first record, drains whatever else is queued (up to
//! [`MAX_BATCH`]), inserts them all in one transaction, commits, and repeats. Under load one
//! commit carries many records; idle, a record is committed as soon as it arrives.
//!
//! When the queue is full (the disk is stuck or far too slow), the record is **dropped and
//! counted** ([`LedgerStats::dropped`], `claudette_ledger_records_total{result="dropped"}`, a
//! warning at the first drop and every 1024th after): blocking, even briefly, would stall every
//! request behind a disk that may never recover, and buffering without bound would trade the
//! ledger for the process. The queue holds [`LedgerOptions::queue_capacity`] records (default
//! 65 536, a few MiB).
//!
//! A transaction that fails (disk full, a lock held past `busy_timeout`) is retried twice after
//! a short pause on the writer thread, then its records are counted as failed
//! ([`LedgerStats::failed`]) and logged (path and SQLite's message; records hold no secrets),
//! and the writer goes on with the next batch. Nothing of this reaches the caller.
//!
//! ## Durability
//!
//! The file is in WAL mode with `synchronous=NORMAL`: a committed transaction is in the WAL
//! (in the OS's page cache at least) before the commit returns, so it **survives a crash or
//! kill of the process**. A power loss or an OS crash may lose the last transactions committed
//! before it (they were not yet fsynced) but never corrupts the file. Graceful shutdown
//! ([`Ledger::close`], [`Ledger::flush`], or dropping the ledger) commits everything queued
//! before it returns. Records that were still in the queue when the process was killed are
//! lost: at most one group commit's worth, normally a few milliseconds of traffic.
//!
//! ## Several replicas
//!
//! Processes on one host may share one file: each has its own writer, SQLite's WAL lets them
//! take turns (`busy_timeout`, transactions begun `IMMEDIATE`), and every one of them answers
//! [`Ledger::analyze`] with the spend of all. Across hosts, give each replica its own file on
//! local disk (SQLite over a network filesystem is not safe) and sum their answers.
//!
//! ## Queries
//!
//! Besides one row per record (`usage`: time, request id, gateway key, backend, model, tokens
//! including cache reads and writes, cost, outcome), the writer keeps hourly totals per backend
//! and model (`usage_hourly`) and per gateway key (`usage_hourly_tenant`) in the same
//! transaction, so [`Ledger::analyze`] reads a few thousand rows whatever the traffic, and
//! answers with the same [`CostAnalysis`] the in-memory tracker gives, over any window up to
//! the retention. Rows and totals older than [`LedgerOptions::retention`] (default 400 days)
//! are deleted by the writer at start-up and about once an hour after.
//!
//! ## Schema versions
//!
//! The file's `PRAGMA user_version` says which schema wrote it. Opening an older file migrates
//! it in place, in one transaction (so replicas opening it at once take turns, and a failed
//! migration leaves it as it was):
//!
//! - **1 → 2** adds the gateway key: a nullable `usage.tenant` column (`NULL`: no key, or
//!   booked before version 2), and `usage_hourly_tenant`, seeded with the file's existing
//!   hourly totals under [`KEY_NOT_RECORDED`]: that spend was booked before the ledger knew
//!   keys, and counting it as [`NO_KEY`] would claim it was served without one. `meta` gets
//!   `tenants_since_ms`, when the file began recording keys.
//!
//! A migrated file is refused by older builds (their schema version is lower), so roll a
//! fleet sharing one file forward, not back. A process of an older build still writing the
//! file when it is migrated books its spend by backend and model, but not by key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use claudette_core::costs::{NO_KEY, sane_cost, window_start};
use claudette_core::{
    CostAnalysis, CostLine, CostSource, CostSourceError, GroupBy, UsageOutcome, UsageRecord, UsageSink,
};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

/// Records one transaction carries at most: bounds the time a commit holds the file's write
/// lock (other replicas wait on it) and the memory of one batch.
pub const MAX_BATCH: usize = 4096;

/// The schema this build writes (`PRAGMA user_version`). A file with a higher version was
/// written by a newer Claudette and is refused rather than misread.
const SCHEMA_VERSION: i64 = 2;

/// The [`GroupBy::Key`] line of spend a file booked before it recorded keys (schema version 1,
/// see the crate docs). Like [`NO_KEY`], not a name a gateway key can have.
pub const KEY_NOT_RECORDED: &str = "(not recorded)";

const HOUR_MS: i64 = 3_600_000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Pauses before the retries of a failed transaction.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];

/// Schema version 1, as first written: a new file is created by it and then migrated like an
/// old one, so both end up the same.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    request_id TEXT,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_at ON usage (at_ms);
CREATE TABLE IF NOT EXISTS usage_hourly (
    hour INTEGER NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    cost REAL NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    PRIMARY KEY (hour, backend, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// Version 1 → 2: the gateway key. The hourly table holds the key's name, or the [`NO_KEY`] /
/// [`KEY_NOT_RECORDED`] label (neither is a valid key name), so the group-by query reads it as
/// it is; its primary key (hour first) serves that query's range on `hour`.
const MIGRATE_V2: &str = "
ALTER TABLE usage ADD COLUMN tenant TEXT;
CREATE TABLE usage_hourly_tenant (
    hour INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    cost REAL NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    PRIMARY KEY (hour, tenant)
) WITHOUT ROWID;
";

/// How a [`Ledger`] keeps its file.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// How long records are kept, and the longest window [`Ledger::analyze`] answers for.
    /// Default 400 days: a year and its same month last year.
    pub retention: Duration,
    /// Records waiting for the writer at most; past it they are dropped and counted.
    pub queue_capacity: usize,
    /// How long a transaction waits for another process's lock on the file before failing.
    pub busy_timeout: Duration,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(400 * 86_400),
            queue_capacity: 65_536,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// What went wrong with the ledger file. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("cannot open the usage ledger at {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create the usage ledger's directory for {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error(
        "the usage ledger at {path} has schema version {found}; this build reads up to {SCHEMA_VERSION} (written by a newer claudette?)"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error(
        "cannot bring the usage ledger at {path} from schema version {from} to {SCHEMA_VERSION} (the file is left as it was): {source}"
    )]
    Migrate { path: PathBuf, from: i64, source: rusqlite::Error },
    #[error("the usage ledger's retention must be at least an hour, got {secs} s")]
    InvalidRetention { secs: u64 },
    #[error("the usage ledger's queue_capacity must be > 0")]
    InvalidQueueCapacity,
    #[error("cannot read the usage ledger at {path}: {source}")]
    Query { path: PathBuf, source: rusqlite::Error },
    #[error("the usage ledger at {path} could not commit what was queued (see the log)")]
    NotCommitted { path: PathBuf },
    #[error("cannot start the writer thread of the usage ledger at {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error("the usage ledger at {path} is closed")]
    Closed { path: PathBuf },
}

/// Counters of what happened to the records handed to a ledger, since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Committed to the file.
    pub written: u64,
    /// Refused at the door: the queue was full, or the ledger was closed.
    pub dropped: u64,
    /// Lost to a transaction that failed even after its retries.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// A record as queued: owned, ready to insert.
#[derive(Debug)]
struct Row {
    at_ms: i64,
    request_id: Option<String>,
    tenant: Option<String>,
    backend: String,
    model: String,
    input_tokens: u32,
    output_tokens: u32,
    cache_read_tokens: u32,
    cache_write_tokens: u32,
    cost: f64,
    outcome: UsageOutcome,
}

impl Row {
    fn from_record(r: &UsageRecord<'_>) -> Self {
        Row {
            at_ms: unix_ms(r.at),
            request_id: r.request_id.map(str::to_owned),
            tenant: r.tenant.map(str::to_owned),
            backend: r.backend.to_owned(),
            model: r.model.to_owned(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cache_read_tokens: r.cache_read_tokens,
            cache_write_tokens: r.cache_write_tokens,
            cost: sane_cost(r.cost),
            outcome: r.outcome,
        }
    }
}

enum Msg {
    Record(Row),
    /// Commit everything queued before this, then answer whether it was committed.
    Flush(mpsc::Sender<bool>),
    /// Commit everything queued before this and stop.
    Close,
}

/// The persistent ledger: a [`UsageSink`] for the router and a [`CostSource`] for `/v1/costs`.
/// Share it as `Arc<Ledger>`; dropping the last handle closes it (see [`Ledger::close`]).
pub struct Ledger {
    path: PathBuf,
    retention: Duration,
    tx: SyncSender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Queries get their own connection: in WAL mode readers never wait for the writer.
    reader: Mutex<Connection>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creating it and its directory if needed) the ledger at `path` and starts its
    /// writer thread. Every problem with the file shows here, as a typed error naming it,
    /// rather than as lost records later.
    pub fn open(path: impl AsRef<Path>, options: LedgerOptions) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        if options.retention < Duration::from_secs(3600) {
            return Err(LedgerError::InvalidRetention { secs: options.retention.as_secs() });
        }
        if options.queue_capacity == 0 {
            return Err(LedgerError::InvalidQueueCapacity);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| LedgerError::CreateDir { path: path.clone(), source })?;
        }
        let mut writer = connect(&path, &options)?;
        init_schema(&mut writer, &path)?;
        let reader = connect(&path, &options)?;
        reader.pragma_update(None, "query_only", true).map_err(|source| open_error(&path, source))?;

        let (tx, rx) = mpsc::sync_channel(options.queue_capacity);
        let counters = Arc::new(Counters::default());
        let w = Writer {
            conn: writer,
            path: path.clone(),
            retention: options.retention,
            counters: counters.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("claudette-ledger".to_owned())
            .spawn(move || w.run(rx))
            .map_err(|source| LedgerError::Spawn { path: path.clone(), source })?;
        Ok(Ledger {
            path,
            retention: options.retention,
            tx,
            writer: Mutex::new(Some(handle)),
            reader: Mutex::new(reader),
            counters,
        })
    }

    /// The file this ledger writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long records are kept; also the longest window [`analyze`](Self::analyze) answers.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Waits until everything queued before this call is committed. Blocks (waits for the
    /// disk): not for the request path.
    pub fn flush(&self) -> Result<(), LedgerError> {
        let (ack, done) = mpsc::channel();
        self.tx.send(Msg::Flush(ack)).map_err(|_| self.closed())?;
        match done.recv() {
            Ok(true) => Ok(()),
            Ok(false) => Err(LedgerError::NotCommitted { path: self.path.clone() }),
            Err(_) => Err(self.closed()),
        }
    }

    /// Commits everything queued and stops the writer. Records handed over afterwards are
    /// dropped and counted. Idempotent; dropping the ledger does the same.
    pub fn close(&self) {
        let handle = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            // Waits for room in a full queue: the writer is draining it.
            let _ = self.tx.send(Msg::Close);
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "usage ledger: the writer thread panicked");
            }
        }
    }

    /// What was spent over the last `timeframe` (capped at the retention), grouped, with the
    /// monthly projection: the same shape and rules as the in-memory tracker, over the records
    /// of every process writing this file.
    pub fn analyze(&self, timeframe: Duration, group_by: GroupBy) -> Result<CostAnalysis, LedgerError> {
        self.analyze_at(SystemTime::now(), timeframe, group_by)
    }

    /// [`analyze`](Self::analyze) as if it were `now` (tests, and reports "as of" a time).
    ///
    /// The covered span starts at the window's first whole hour, or when the ledger began
    /// (its creation, or its oldest record if older) if that is later, so a young ledger does
    /// not project a month from a day's spend spread over a week.
    pub fn analyze_at(
        &self,
        now: SystemTime,
        timeframe: Duration,
        group_by: GroupBy,
    ) -> Result<CostAnalysis, LedgerError> {
        let now_since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (from_hour, start) = window_start(now_since_epoch, timeframe.min(self.retention));
        let (table, column) = match group_by {
            GroupBy::Backend => ("usage_hourly", "backend"),
            GroupBy::Model => ("usage_hourly", "model"),
            GroupBy::Key => ("usage_hourly_tenant", "tenant"),
        };
        let query_error = |source| LedgerError::Query { path: self.path.clone(), source };
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let now_ms = unix_ms(now);
        let began_ms: i64 = conn
            .query_row(
                "SELECT min(ifnull((SELECT value FROM meta WHERE key = 'created_ms'), ?1),
                            ifnull((SELECT min(at_ms) FROM usage), ?1))",
                [now_ms],
                |r| r.get(0),
            )
            .map_err(query_error)?;
        let began = Duration::from_millis(u64::try_from(began_ms).unwrap_or(0));
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {column}, sum(cost), sum(requests), sum(input_tokens), sum(output_tokens)
                 FROM {table} WHERE hour >= ?1 GROUP BY {column}"
            ))
            .map_err(query_error)?;
        let rows = stmt
            .query_map([i64::try_from(from_hour).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    CostLine {
                        cost: r.get(1)?,
                        requests: count(r.get(2)?),
                        input_tokens: count(r.get(3)?),
                        output_tokens: count(r.get(4)?),
                    },
                ))
            })
            .map_err(query_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_error)?;
        let observed = now_since_epoch.saturating_sub(start.max(began));
        Ok(CostAnalysis::from_lines(
            timeframe,
            observed,
            group_by,
            rows.iter().map(|(k, l)| (k.as_str(), *l)),
        ))
    }

    fn closed(&self) -> LedgerError {
        LedgerError::Closed { path: self.path.clone() }
    }

    fn drop_record(&self, why: &'static str) {
        let before = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("claudette_ledger_records_total", "result" => "dropped").increment(1);
        if before % 1024 == 0 {
            tracing::warn!(
                path = %self.path.display(),
                dropped = before + 1,
                why,
                "usage ledger: a usage record was dropped"
            );
        }
    }
}

impl UsageSink for Ledger {
    /// Copies the record into the queue and returns: never blocks, never does I/O.
    fn record(&self, record: &UsageRecord<'_>) {
        match self.tx.try_send(Msg::Record(Row::from_record(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.drop_record("queue full: the writer is behind"),
            Err(TrySendError::Disconnected(_)) => self.drop_record("ledger closed"),
        }
    }
}

impl CostSource for Ledger {
    fn max_timeframe(&self) -> Duration {
        self.retention
    }

    fn analyze_costs(&self, timeframe: Duration, group_by: GroupBy) -> Result<CostAnalysis, CostSourceError> {
        Ok(self.analyze(timeframe, group_by)?)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.close();
    }
}

fn count(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn open_error(path: &Path, source: rusqlite::Error) -> LedgerError {
    LedgerError::Open { path: path.to_path_buf(), source }
}

/// One connection to the file, in WAL mode with `synchronous=NORMAL`.
fn connect(path: &Path, options: &LedgerOptions) -> Result<Connection, LedgerError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(options.busy_timeout).map_err(|e| open_error(path, e))?;
    // Touches the file: a directory or an unreadable file fails here, not at the first write.
    let mode: String =
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| open_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(
            path,
            rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode}, WAL is needed")),
        ));
    }
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// Creates the schema in a new file, or migrates an older one (see the crate docs).
fn init_schema(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    // IMMEDIATE, and the version read inside: two processes creating or migrating the file at
    // once take turns instead of failing on a lock upgrade, and the second finds the work done
    // rather than adding a column twice.
    let tx =
        conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| open_error(path, e))?;
    let found: i64 =
        tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| open_error(path, e))?;
    if found > SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema { path: path.to_path_buf(), found });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    migrate(&tx, found).and_then(|()| tx.commit()).map_err(|source| match found {
        // A new file: nothing to migrate, the file could not be set up.
        0 => open_error(path, source),
        from => LedgerError::Migrate { path: path.to_path_buf(), from, source },
    })
}

/// Brings a file of schema version `found` (0: a new file) to [`SCHEMA_VERSION`], inside `tx`.
fn migrate(tx: &rusqlite::Transaction<'_>, found: i64) -> rusqlite::Result<()> {
    let now_ms = unix_ms(SystemTime::now());
    if found < 1 {
        tx.execute_batch(SCHEMA_V1)?;
        tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_ms', ?1)", [now_ms])?;
    }
    if found < 2 {
        tx.execute_batch(MIGRATE_V2)?;
        tx.execute(
            "INSERT INTO usage_hourly_tenant (hour, tenant, cost, requests, input_tokens, output_tokens)
             SELECT hour, ?1, sum(cost), sum(requests), sum(input_tokens), sum(output_tokens)
             FROM usage_hourly GROUP BY hour",
            [KEY_NOT_RECORDED],
        )?;
        tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('tenants_since_ms', ?1)", [now_ms])?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    path: PathBuf,
    retention: Duration,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        self.prune();
        let mut last_prune = Instant::now();
        let mut batch: Vec<Row> = Vec::with_capacity(64);
        let mut acks: Vec<mpsc::Sender<bool>> = Vec::new();
        // A batch was lost since the last flush was answered: that flush must say so, even
        // when its own batch (after the lost one) committed.
        let mut lost = false;
        loop {
            // Block for the first message; every handle gone (cannot happen while the `Ledger`
            // lives, it holds one) ends the writer like `Close`.
            let mut closing = match rx.recv() {
                Ok(msg) => take(msg, &mut batch, &mut acks),
                Err(_) => true,
            };
            while !closing && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => closing = take(msg, &mut batch, &mut acks),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() && !self.commit(&batch) {
                lost = true;
            }
            batch.clear();
            if !acks.is_empty() {
                for ack in acks.drain(..) {
                    let _ = ack.send(!lost);
                }
                lost = false;
            }
            if closing {
                return;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                self.prune();
                last_prune = Instant::now();
            }
        }
    }

    /// Inserts `batch` in one transaction, retrying a failed one twice; `false` when it was
    /// lost (counted and logged).
    fn commit(&mut self, batch: &[Row]) -> bool {
        let n = batch.len() as u64;
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            match self.insert(batch) {
                Ok(()) => {
                    self.counters.written.fetch_add(n, Ordering::Relaxed);
                    metrics::counter!("claudette_ledger_records_total", "result" => "written").increment(n);
                    return true;
                }
                Err(e) => match pauses.next() {
                    Some(pause) => {
                        tracing::warn!(path = %self.path.display(), error = %e, records = n, "usage ledger: commit failed, retrying");
                        std::thread::sleep(*pause);
                    }
                    None => {
                        self.counters.failed.fetch_add(n, Ordering::Relaxed);
                        metrics::counter!("claudette_ledger_records_total", "result" => "failed")
                            .increment(n);
                        tracing::error!(path = %self.path.display(), error = %e, records = n, "usage ledger: commit failed; these records are lost");
                        return false;
                    }
                },
            }
        }
    }

    fn insert(&mut self, batch: &[Row]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut row_stmt = tx.prepare_cached(
                "INSERT INTO usage (at_ms, request_id, tenant, backend, model, input_tokens, output_tokens,
                     cache_read_tokens, cache_write_tokens, cost, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut hour_stmt = tx.prepare_cached(
                "INSERT INTO usage_hourly (hour, backend, model, cost, requests, input_tokens, output_tokens)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)
                 ON CONFLICT (hour, backend, model) DO UPDATE SET
                     cost = cost + excluded.cost,
                     requests = requests + 1,
                     input_tokens = input_tokens + excluded.input_tokens,
                     output_tokens = output_tokens + excluded.output_tokens",
            )?;
            let mut tenant_stmt = tx.prepare_cached(
                "INSERT INTO usage_hourly_tenant (hour, tenant, cost, requests, input_tokens, output_tokens)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5)
                 ON CONFLICT (hour, tenant) DO UPDATE SET
                     cost = cost + excluded.cost,
                     requests = requests + 1,
                     input_tokens = input_tokens + excluded.input_tokens,
                     output_tokens = output_tokens + excluded.output_tokens",
            )?;
            for r in batch {
                row_stmt.execute(params![
                    r.at_ms,
                    r.request_id,
                    r.tenant,
                    r.backend,
                    r.model,
                    r.input_tokens,
                    r.output_tokens,
                    r.cache_read_tokens,
                    r.cache_write_tokens,
                    r.cost,
                    r.outcome.as_str(),
                ])?;
                let hour = r.at_ms.div_euclid(HOUR_MS);
                hour_stmt.execute(params![
                    hour,
                    r.backend,
                    r.model,
                    r.cost,
                    r.input_tokens,
                    r.output_tokens
                ])?;
                tenant_stmt.execute(params![
                    hour,
                    r.tenant.as_deref().unwrap_or(NO_KEY),
                    r.cost,
                    r.input_tokens,
                    r.output_tokens
                ])?;
            }
        }
        tx.commit()
    }

    /// Deletes what is older than the retention. A failure is logged and tried again at the
    /// next prune: old rows only cost disk, never correctness (queries cap at the retention).
    fn prune(&mut self) {
        let cutoff_ms = unix_ms(SystemTime::now())
            .saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        let result = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).and_then(|tx| {
            let rows = tx.execute("DELETE FROM usage WHERE at_ms < ?1", [cutoff_ms])?;
            // An hour is pruned once wholly older than the cutoff: a window reaching back to
            // the retention still counts its (widened) first hour.
            let hour = cutoff_ms.div_euclid(HOUR_MS);
            tx.execute("DELETE FROM usage_hourly WHERE hour < ?1", [hour])?;
            tx.execute("DELETE FROM usage_hourly_tenant WHERE hour < ?1", [hour])?;
            tx.commit()?;
            Ok(rows)
        });
        match result {
            Ok(0) => {}
            Ok(rows) => {
                tracing::info!(path = %self.path.display(), rows, "usage ledger: pruned records past the retention")
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "usage ledger: cannot prune old records")
            }
        }
    }
}

/// Files one message into the batch; `true` when it asks the writer to stop.
fn take(msg: Msg, batch: &mut Vec<Row>, acks: &mut Vec<mpsc::Sender<bool>>) -> bool {
    match msg {
        Msg::Record(row) => batch.push(row),
        Msg::Flush(ack) => acks.push(ack),
        Msg::Close => return true,
    }
    false
}
