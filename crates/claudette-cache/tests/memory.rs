#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `MemoryCache`: answers come back until their time to live, and the bytes they take stay
//! under the bound.

use std::time::Duration;

use claudette_cache::{CacheOptions, MemoryCache, approximate_size};
use claudette_core::{CacheKey, ChatRequest, ChatResponse, FinishReason, ResponseCache, RoutingDecision};

fn key(prompt: &str) -> CacheKey {
    CacheKey::new(None, &ChatRequest::prompt(prompt)).unwrap()
}

fn answer(text: &str) -> ChatResponse {
    ChatResponse {
        content: text.to_owned(),
        finish_reason: Some(FinishReason::Stop),
        ..ChatResponse::empty("b1", "m")
    }
}

#[test]
fn answers_come_back_without_their_decision() {
    let cache = MemoryCache::new(CacheOptions::default());
    assert!(cache.get(&key("a")).is_none());
    let with_decision = ChatResponse { decision: Some(RoutingDecision::default()), ..answer("A") };
    cache.put(key("a"), &with_decision);
    assert_eq!(cache.get(&key("a")), Some(answer("A")));
    assert!(cache.get(&key("b")).is_none());
}

/// moka's clock is std's `Instant` (no mock clock is public), so this waits: a short time to
/// live and a few times that, never a long sleep.
#[test]
fn answers_expire_after_their_time_to_live() {
    let short = MemoryCache::new(CacheOptions { ttl: Duration::from_millis(40), ..CacheOptions::default() });
    short.put(key("a"), &answer("A"));
    std::thread::sleep(Duration::from_millis(150));
    assert!(short.get(&key("a")).is_none(), "served after its time to live");
    short.run_pending_tasks();
    assert_eq!(short.entry_count(), 0);

    // A time to live beyond what moka accepts is cut, not a panic.
    let long = MemoryCache::new(CacheOptions { ttl: Duration::MAX, ..CacheOptions::default() });
    long.put(key("a"), &answer("A"));
    assert!(long.get(&key("a")).is_some());
}

#[test]
fn stored_bytes_stay_under_the_bound() {
    let max_bytes = 64 * 1024;
    let cache = MemoryCache::new(CacheOptions { max_bytes, ..CacheOptions::default() });
    let text = "x".repeat(1024);
    let one = u64::from(approximate_size(&answer(&text)));
    assert!(one > 1024, "{one}");
    for i in 0..200 {
        cache.put(key(&i.to_string()), &answer(&text));
        // Reads, as traffic would make: TinyLFU keeps what is asked for.
        let _ = cache.get(&key(&i.to_string()));
    }
    cache.run_pending_tasks();
    assert!(cache.weighted_size() <= max_bytes, "{} > {max_bytes}", cache.weighted_size());
    assert!(cache.entry_count() > 0 && cache.entry_count() < 200, "{}", cache.entry_count());
    assert_eq!(cache.weighted_size(), cache.entry_count() * one);

    // An answer larger than the whole bound is never kept.
    let huge = answer(&"y".repeat(128 * 1024));
    cache.put(key("huge"), &huge);
    cache.run_pending_tasks();
    assert!(cache.get(&key("huge")).is_none());
}

#[test]
fn sizes_count_what_an_answer_holds() {
    let small = approximate_size(&answer("hi"));
    let big = ChatResponse {
        reasoning: Some("r".repeat(100)),
        tool_calls: vec![claudette_core::ToolCall {
            id: "c1".into(),
            name: "f".into(),
            arguments: serde_json::json!({"q": "z".repeat(200)}),
        }],
        ..answer("hi")
    };
    assert!(approximate_size(&big) >= small + 300, "{small} {}", approximate_size(&big));
}

#[test]
fn debug_shows_counts_not_answers() {
    let cache = MemoryCache::new(CacheOptions::default());
    cache.put(key("a"), &answer("the secret plan"));
    let d = format!("{cache:?}");
    assert!(d.contains("MemoryCache") && !d.contains("secret"), "{d}");
}

/// A stream is assembled for the cache only up to what the cache could keep.
#[test]
fn a_small_cache_asks_for_small_streams() {
    let default = MemoryCache::new(CacheOptions::default());
    assert_eq!(default.max_entry_bytes(), claudette_core::cache::MAX_ASSEMBLED_BYTES);
    let small = MemoryCache::new(CacheOptions { max_bytes: 1024, ..CacheOptions::default() });
    assert_eq!(small.max_entry_bytes(), 1024);
}
