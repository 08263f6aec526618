//! `/v1/costs` from a persistent ledger: spend booked through one gateway is answered by the
//! next one on the same file, after the first is gone, over real HTTP in front of a fake
//! provider; and windows past the in-memory 31 days are allowed up to the ledger's retention.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use claudette_core::GroupBy;
use claudette_gateway::GatewayOptions;
use claudette_ledger::{Ledger, LedgerOptions};
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::json;

/// A router on `fake` whose billed attempts go to `ledger`, and a gateway that reads spend from it.
async fn gateway_with_ledger(fake: &FakeServer, ledger: &Arc<Ledger>) -> Running {
    let r = router(vec![openai(priced(openai_settings("booked", fake), 1.0, 2.0))]);
    r.set_usage_sink(ledger.clone()).unwrap();
    start_with(r, GatewayOptions { cost_source: Some(ledger.clone()), ..GatewayOptions::default() }).await
}

#[tokio::test]
async fn spend_survives_the_gateway_and_is_answered_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let options = LedgerOptions { retention: Duration::from_secs(90 * 86_400), ..LedgerOptions::default() };
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("hi"));

    let ledger = Arc::new(Ledger::open(&path, options.clone()).unwrap());
    let mut first = gateway_with_ledger(&fake, &ledger).await;
    for _ in 0..3 {
        let r = post(&first.url, "/v1/chat/completions", json!({"messages": user("x")})).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    fake.push(Fake::openai_stream(&["Hel", "lo"]));
    let s = post(&first.url, "/v1/chat/completions", json!({"messages": user("x"), "stream": true})).await;
    assert_eq!(s.status, 200, "{}", s.text);
    let seen = first.router.analyze_costs(Duration::from_secs(3600), GroupBy::Backend);
    assert_eq!(seen.total_requests, 4);
    // Stop as `claudette serve` does: the server, then the ledger (committing what is queued).
    first.shutdown().await.unwrap().unwrap();
    ledger.close();
    drop(first);
    drop(ledger);

    let ledger = Arc::new(Ledger::open(&path, options).unwrap());
    let second = gateway_with_ledger(&fake, &ledger).await;
    assert_eq!(second.router.analyze_costs(Duration::from_secs(3600), GroupBy::Backend).total_requests, 0);
    let costs = get(&second.url, "/v1/costs?timeframe=24h&group_by=backend", &[]).await;
    assert_eq!(costs.status, 200, "{}", costs.text);
    let c = costs.json();
    assert_eq!(c["total_requests"], 4, "{}", costs.text);
    assert_eq!(c["breakdown"]["booked"]["requests"], 4, "{}", costs.text);
    assert!(
        (c["total_cost"].as_f64().unwrap() - seen.total_cost).abs() < 1e-12,
        "{} vs {seen:?}",
        costs.text
    );
    assert_eq!(c["total_tokens"], seen.total_tokens);
    let by_model = get(&second.url, "/v1/costs?group_by=model", &[]).await.json();
    assert_eq!(by_model["breakdown"]["fake-model"]["requests"], 4, "{by_model}");

    // Past the in-memory 31 days, up to the ledger's 90.
    let long = get(&second.url, "/v1/costs?timeframe=60d", &[]).await;
    assert_eq!((long.status, long.json()["total_requests"].as_u64()), (200, Some(4)), "{}", long.text);
    let too_long = get(&second.url, "/v1/costs?timeframe=91d", &[]).await;
    assert_eq!(too_long.status, 400, "{}", too_long.text);
    assert!(
        too_long.json()["error"]["message"].as_str().unwrap().contains("at most 90d"),
        "{}",
        too_long.text
    );
}
