#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Spend per gateway key in the ledger: each record's key kept in its row and in the hourly
//! totals `analyze` groups by, and a file written by schema version 1 (before keys) migrated in
//! place on open, its old spend still counted and labelled as booked before keys were.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use claudette_core::costs::NO_KEY;
use claudette_core::{GroupBy, UsageOutcome, UsageRecord, UsageSink};
use claudette_ledger::{KEY_NOT_RECORDED, Ledger, LedgerError, LedgerOptions};

const DAY: Duration = Duration::from_secs(86_400);

fn rec<'a>(tenant: Option<&'a str>, backend: &'a str, cost: f64) -> UsageRecord<'a> {
    UsageRecord {
        at: SystemTime::now(),
        request_id: Some("req-1"),
        tenant,
        backend,
        model: "m",
        input_tokens: 100,
        output_tokens: 20,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost,
        outcome: UsageOutcome::Success,
    }
}

fn open(path: &Path) -> Ledger {
    Ledger::open(path, LedgerOptions::default()).unwrap()
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

#[test]
fn spend_is_grouped_by_key_and_each_row_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let l = open(&path);
        l.record(&rec(Some("team-a"), "openai", 1.0));
        l.record(&rec(Some("team-a"), "claude", 0.5));
        l.record(&rec(Some("team-b"), "openai", 0.25));
        l.record(&rec(None, "openai", 0.125));
        l.flush().unwrap();
    }
    let l = open(&path);
    let by_key = l.analyze(DAY, GroupBy::Key).unwrap();
    assert_eq!(by_key.group_by, GroupBy::Key);
    assert_eq!(by_key.breakdown.keys().collect::<Vec<_>>(), [NO_KEY, "team-a", "team-b"]);
    let a = by_key.breakdown["team-a"];
    assert_eq!((a.requests, a.input_tokens, a.output_tokens), (2, 200, 40));
    assert!((a.cost - 1.5).abs() < 1e-9);
    assert_eq!(by_key.breakdown[NO_KEY].requests, 1);
    let by_backend = l.analyze(DAY, GroupBy::Backend).unwrap();
    assert_eq!(
        (by_key.total_cost, by_key.total_requests, by_key.total_tokens, by_key.observed_secs),
        (by_backend.total_cost, by_backend.total_requests, by_backend.total_tokens, by_backend.observed_secs)
    );
    drop(l);

    let c = rusqlite::Connection::open(&path).unwrap();
    let mut rows: Vec<Option<String>> = c
        .prepare("SELECT tenant FROM usage ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    assert_eq!(rows, [None, Some("team-a".into()), Some("team-a".into()), Some("team-b".into())]);
    assert_eq!(user_version(&path), 2);
}

/// Schema version 1 exactly as the first ledger wrote it.
const V1: &str = "
CREATE TABLE usage (
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
CREATE INDEX usage_at ON usage (at_ms);
CREATE TABLE usage_hourly (
    hour INTEGER NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    cost REAL NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    PRIMARY KEY (hour, backend, model)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
PRAGMA journal_mode = WAL;
PRAGMA user_version = 1;
";

/// A version-1 file with two hours of spend, as the version-1 writer left it: rows and their
/// hourly totals.
fn write_v1(path: &Path, now_ms: i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(V1).unwrap();
    c.execute("INSERT INTO meta (key, value) VALUES ('created_ms', ?1)", [now_ms - 3 * 3_600_000]).unwrap();
    for (at_ms, backend, cost) in [
        (now_ms - 2 * 3_600_000, "openai", 2.0),
        (now_ms - 3_600_000, "openai", 1.0),
        (now_ms - 3_600_000, "claude", 0.5),
    ] {
        c.execute(
            "INSERT INTO usage (at_ms, request_id, backend, model, input_tokens, output_tokens,
                 cache_read_tokens, cache_write_tokens, cost, outcome)
             VALUES (?1, 'old', ?2, 'm', 10, 5, 0, 0, ?3, 'success')",
            rusqlite::params![at_ms, backend, cost],
        )
        .unwrap();
        c.execute(
            "INSERT INTO usage_hourly (hour, backend, model, cost, requests, input_tokens, output_tokens)
             VALUES (?1, ?2, 'm', ?3, 1, 10, 5)
             ON CONFLICT (hour, backend, model) DO UPDATE SET cost = cost + excluded.cost,
                 requests = requests + 1, input_tokens = input_tokens + 10, output_tokens = output_tokens + 5",
            rusqlite::params![at_ms.div_euclid(3_600_000), backend, cost],
        )
        .unwrap();
    }
}

/// A file written before keys were recorded opens, is migrated in place, keeps every figure,
/// shows its old spend as [`KEY_NOT_RECORDED`] (not as spend without a key), and takes new
/// records with their keys; opening it again migrates nothing twice.
#[test]
fn a_version_1_file_is_migrated_in_place_and_keeps_its_spend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    write_v1(&path, now_ms);
    assert_eq!(user_version(&path), 1);

    let l = open(&path);
    assert_eq!(user_version(&path), 2);
    let by_backend = l.analyze(DAY, GroupBy::Backend).unwrap();
    assert_eq!(by_backend.total_requests, 3);
    assert!((by_backend.breakdown["openai"].cost - 3.0).abs() < 1e-9);
    let by_key = l.analyze(DAY, GroupBy::Key).unwrap();
    assert_eq!(by_key.breakdown.keys().collect::<Vec<_>>(), [KEY_NOT_RECORDED]);
    let old = by_key.breakdown[KEY_NOT_RECORDED];
    assert_eq!((old.requests, old.input_tokens, old.output_tokens), (3, 30, 15));
    assert!((old.cost - 3.5).abs() < 1e-9);
    // The migration keeps when the ledger began: the projection spans the old spend too.
    assert_eq!(by_key.observed_secs, by_backend.observed_secs);
    assert!(by_key.observed_secs >= 3 * 3600 - 1, "{}", by_key.observed_secs);

    l.record(&rec(Some("team-a"), "openai", 0.25));
    l.record(&rec(None, "openai", 0.125));
    l.flush().unwrap();
    drop(l);

    let l = open(&path);
    let by_key = l.analyze(DAY, GroupBy::Key).unwrap();
    assert_eq!(by_key.breakdown.keys().collect::<Vec<_>>(), [NO_KEY, KEY_NOT_RECORDED, "team-a"]);
    assert_eq!(by_key.breakdown[KEY_NOT_RECORDED].requests, 3, "the old spend was counted twice");
    assert_eq!(by_key.total_requests, 5);
    assert_eq!(l.analyze(DAY, GroupBy::Backend).unwrap().total_requests, 5);
    drop(l);

    let c = rusqlite::Connection::open(&path).unwrap();
    let tenants: Vec<(String, Option<String>)> = c
        .prepare("SELECT request_id, tenant FROM usage ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tenants.iter().filter(|(id, t)| id == "old" && t.is_none()).count(), 3, "{tenants:?}");
    assert!(tenants.contains(&("req-1".into(), Some("team-a".into()))), "{tenants:?}");
    let since: i64 =
        c.query_row("SELECT value FROM meta WHERE key = 'tenants_since_ms'", [], |r| r.get(0)).unwrap();
    assert!(since >= now_ms, "{since} < {now_ms}");
}

/// A migration that cannot finish leaves the file as it was, readable by the build that wrote
/// it, and says which file and versions.
#[test]
fn a_failed_migration_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    write_v1(&path, 0);
    // In the way of the migration: a table of the name version 2 creates.
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE usage_hourly_tenant (x)").unwrap();
    let err = Ledger::open(&path, LedgerOptions::default()).unwrap_err();
    assert!(matches!(err, LedgerError::Migrate { from: 1, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("v1.db") && text.contains("from schema version 1 to 2"), "{text}");
    assert_eq!(user_version(&path), 1);
    let c = rusqlite::Connection::open(&path).unwrap();
    let columns: i64 = c
        .query_row("SELECT count(*) FROM pragma_table_info('usage') WHERE name = 'tenant'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(columns, 0, "the column was added by a migration that failed");
}
