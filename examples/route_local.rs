//! Routes real HTTP requests across two local OpenAI-compatible servers and prints every
//! routing decision and why. Needs no keys and no network: the servers are Claudette's
//! test-kit fakes, started on 127.0.0.1 by this program.
//!
//! `cheap` costs a tenth of `fast` but answers slowly; halfway through, `cheap` starts failing
//! with 503s, its circuit breaker opens, and traffic fails over to `fast`.
//!
//! Run: `cargo run -p claudette-examples --example route_local`

use std::time::Duration;

use claudette::core::breaker::BreakerState;
use claudette::{BackendRouter, BackendSettings, ChatRequest, Pricing, RouterOptions, StreamEvent};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cheap = FakeServer::start().await;
    let fast = FakeServer::start().await;
    cheap
        .set_default(Reply::openai_text("an answer from the cheap server").delay(Duration::from_millis(120)));
    fast.set_default(Reply::openai_text("an answer from the fast server").delay(Duration::from_millis(10)));

    // Cost matters most, latency second, recent failures third.
    let router = BackendRouter::new(RouterOptions {
        cost_weight: 0.5,
        latency_weight: 0.3,
        availability_weight: 0.2,
        ..RouterOptions::default()
    });
    for (name, server, price) in
        [("cheap", &cheap, Pricing::new(0.0002, 0.0004)), ("fast", &fast, Pricing::new(0.002, 0.004))]
    {
        let settings =
            BackendSettings::new(name).base_url(server.v1_url()).model("fake-model").pricing(price);
        router.register_backend(claudette::openai::backend(&settings)?.shared())?;
    }

    println!("Two fake OpenAI-compatible servers: cheap at {}, fast at {}\n", cheap.url(), fast.url());
    for i in 1..=12 {
        if i == 6 {
            println!("--- cheap starts answering 503 ---");
            cheap.set_default(Reply::openai_error(503, "server_error", None, "overloaded"));
        }
        let request = ChatRequest::prompt(format!("question {i}")).with_max_tokens(64);
        match router.route_request(&request).await {
            Ok(resp) => {
                let d = resp.decision.as_ref();
                println!(
                    "#{i:>2} → {:<5}  {} ms  cost {:.6}  {:?}",
                    resp.backend,
                    resp.latency.as_millis(),
                    resp.cost,
                    resp.content
                );
                if let Some(d) = d {
                    for c in &d.candidates {
                        println!(
                            "      candidate {:<5} score {:.3} = cost {:.2}·w + latency {:.2}·w + failures {:.2}·w",
                            c.backend, c.score, c.cost, c.latency, c.availability
                        );
                    }
                    for s in &d.skipped {
                        println!("      skipped   {:<5} {:?}", s.backend, s.reason);
                    }
                    for a in &d.attempts {
                        let why = a
                            .error
                            .map(|k| format!(" ({k}: {})", a.message.clone().unwrap_or_default()))
                            .unwrap_or_default();
                        println!("      attempt   {:<5} {}{why}", a.backend, a.outcome.as_str());
                    }
                }
            }
            Err(e) => println!("#{i:>2} failed: {e} (after {} attempts)", e.attempts()),
        }
        let state = router.breaker("cheap").map(|b| b.state()).unwrap_or(BreakerState::Closed);
        if state != BreakerState::Closed {
            println!("      breaker of cheap: {state}");
        }
    }

    println!("\nA streamed answer, token by token:");
    fast.set_default(Reply::openai_stream(&[
        "Streams ",
        "are ",
        "committed ",
        "at ",
        "the ",
        "first ",
        "token.",
    ]));
    let mut stream = router.route_stream(&ChatRequest::prompt("stream please")).await?;
    print!("  [{}] ", stream.backend());
    while let Some(ev) = stream.next().await {
        match ev {
            StreamEvent::TextDelta { text } => print!("{text}"),
            StreamEvent::Done { end } => println!("\n  done: {:?}, usage {:?}", end.finish_reason, end.usage),
            StreamEvent::Error { error } => println!("\n  error: {error}"),
            _ => {}
        }
    }

    println!("\nPer-backend figures:");
    for m in router.all_performance_metrics() {
        println!(
            "  {:<5} requests {:>2}  success rate {:.2}  p50 {:.0} ms  p95 {:.0} ms  cost {:.6}",
            m.backend, m.total_requests, m.success_rate, m.latency.p50_ms, m.latency.p95_ms, m.total_cost
        );
    }
    Ok(())
}
