//! # claudette-cache
//!
//! The response cache Claudette ships: [`MemoryCache`], a
//! [`ResponseCache`] in this process's memory, for
//! [`BackendRouter::set_response_cache`](claudette_core::BackendRouter::set_response_cache).
//! What counts as the same request, whose answer it is and what is stored are decided in core
//! (`claudette_core::cache`); this crate only keeps answers, so a shared store (Redis, …) can
//! replace it without touching the router.
//!
//! Bounded twice, because answers vary from a word to a long document: by age (a time to live,
//! so a stale answer is not served forever) and by the bytes the answers take (an entry count
//! would let a few large answers take the whole heap). Past the byte bound, `moka` evicts by
//! TinyLFU: answers asked for often stay, one-off ones go first.

use std::fmt;
use std::time::Duration;

use claudette_core::cache::MAX_ASSEMBLED_BYTES;
use claudette_core::{CacheKey, ChatResponse, ResponseCache, ThinkingBlock};
use moka::sync::Cache;

/// Longest time to live accepted; longer ones are cut to it (`moka` refuses ages past 1,000
/// years, and an answer kept a year is already a choice nobody means to make).
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long answers are kept and how much memory they may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// An answer is served for this long after it was stored, then dropped (at most
    /// [`MAX_TTL`]). Default one hour, the seeds' base TTL.
    pub ttl: Duration,
    /// Approximate bytes all stored answers may take together (see [`approximate_size`]).
    /// Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(3600), max_bytes: 64 * 1024 * 1024 }
    }
}

/// Complete answers in memory, by [`CacheKey`]. Cheap to share (`Arc<MemoryCache>`); `get`
/// and `put` never block on I/O.
pub struct MemoryCache {
    entries: Cache<CacheKey, ChatResponse>,
    options: CacheOptions,
}

impl MemoryCache {
    pub fn new(options: CacheOptions) -> MemoryCache {
        let entries = Cache::builder()
            .max_capacity(options.max_bytes)
            .weigher(|_: &CacheKey, r: &ChatResponse| approximate_size(r))
            .time_to_live(options.ttl.min(MAX_TTL))
            .build();
        MemoryCache { entries, options }
    }

    pub fn options(&self) -> CacheOptions {
        self.options
    }

    /// Answers kept. Approximate: evictions and expiries are applied in batches (see
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Approximate bytes the kept answers take, as [`approximate_size`] counts them.
    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Applies pending evictions and expiries now, so that the counts above are exact (a test,
    /// or a report). The cache does this by itself as it is used.
    pub fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }
}

impl fmt::Debug for MemoryCache {
    // Counts only: the entries are other people's prompts' answers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .field("bytes", &self.entries.weighted_size())
            .field("options", &self.options)
            .finish()
    }
}

impl ResponseCache for MemoryCache {
    fn get(&self, key: &CacheKey) -> Option<ChatResponse> {
        self.entries.get(key)
    }

    fn put(&self, key: CacheKey, response: &ChatResponse) {
        // The router hands answers without their decision; one from elsewhere must not keep
        // its own, which describes another request's routing.
        let mut stored = response.clone();
        stored.decision = None;
        self.entries.insert(key, stored);
    }

    /// The core's bound, or less in a cache smaller than that: an answer larger than the whole
    /// cache would only evict everything else before being evicted itself.
    fn max_entry_bytes(&self) -> usize {
        usize::try_from(self.options.max_bytes).unwrap_or(usize::MAX).min(MAX_ASSEMBLED_BYTES)
    }
}

/// Roughly what a stored answer takes in memory, in bytes: its struct, its strings and its
/// tool-call arguments as JSON text would be, plus the key. An estimate (allocator slack and
/// `moka`'s own bookkeeping are not counted), good enough for a bound in MiB.
pub fn approximate_size(r: &ChatResponse) -> u32 {
    let thinking: usize = r
        .thinking
        .iter()
        .map(|b| match b {
            ThinkingBlock::Thinking { thinking, signature } => thinking.len() + signature.len(),
            ThinkingBlock::Redacted { data } => data.len(),
        })
        .sum();
    let calls: usize =
        r.tool_calls.iter().map(|c| c.id.len() + c.name.len() + json_size(&c.arguments) + 64).sum();
    let bytes = std::mem::size_of::<ChatResponse>()
        + std::mem::size_of::<CacheKey>()
        + r.content.len()
        + r.reasoning.as_ref().map_or(0, String::len)
        + thinking
        + calls
        + r.model.len()
        + r.backend.len()
        + r.id.as_ref().map_or(0, String::len)
        + r.warnings.iter().map(String::len).sum::<usize>();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The length of `v` written as compact JSON, without writing it.
fn json_size(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| json_size(x) + 1).sum::<usize>(),
        Value::Object(o) => 2 + o.iter().map(|(k, x)| k.len() + 4 + json_size(x)).sum::<usize>(),
    }
}
