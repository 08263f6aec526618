//! Built-in Anthropic prices and quality defaults.
//!
//! Prices are USD per 1,000 tokens. Anthropic bills a 5-minute cache write at 1.25× the base
//! input rate and a cache read at 0.1× (wire-protocols, Anthropic Messages), so the table only
//! holds input and output rates and derives the cache rates: a table that repeats them invites
//! the "cache tokens priced as input" bug other gateways shipped (litellm #9812, #11789).
//!
//! Lookup is by longest prefix, so dated ids (`claude-sonnet-4-5-20250929`) and aliases
//! (`claude-sonnet-4-5`) share an entry, and `claude-opus-4-5` beats `claude-opus-4`.

use claudette_core::{LongContext, Pricing};

/// Cache write (5-minute TTL) multiplier on the base input rate.
pub const CACHE_WRITE_MULTIPLIER: f64 = 1.25;
/// Cache read multiplier on the base input rate.
pub const CACHE_READ_MULTIPLIER: f64 = 0.1;

/// `(model id prefix, input per 1K, output per 1K)`.
const TABLE: &[(&str, f64, f64)] = &[
    ("claude-3-opus", 0.015, 0.075),
    ("claude-3-sonnet", 0.003, 0.015),
    ("claude-3-haiku", 0.000_25, 0.001_25),
    ("claude-3-5-sonnet", 0.003, 0.015),
    ("claude-3-7-sonnet", 0.003, 0.015),
    ("claude-3-5-haiku", 0.000_8, 0.004),
    ("claude-sonnet-4", 0.003, 0.015),
    ("claude-sonnet-4-5", 0.003, 0.015),
    ("claude-opus-4", 0.015, 0.075),
    ("claude-opus-4-5", 0.005, 0.025),
    // Opus 4.6 and later kept the 4.5 price cut; without these rows the `claude-opus-4`
    // prefix would price them at three times what Anthropic bills.
    ("claude-opus-4-6", 0.005, 0.025),
    ("claude-opus-4-7", 0.005, 0.025),
    ("claude-opus-4-8", 0.005, 0.025),
    ("claude-haiku-4-5", 0.001, 0.005),
];

/// USD per 1,000 web searches (the `web_search` server tool), billed on top of the tokens.
pub const WEB_SEARCH_PER_1K: f64 = 10.0;

/// Anthropic's long-context pricing: a prompt of more than 200,000 input tokens (cache reads
/// and writes included), which only the million-token context (`context-1m-…`) allows, is
/// billed at 2× every input rate and 1.5× the output rate. A model limited to 200,000 tokens
/// never reaches it, so every Claude price carries it.
pub const LONG_CONTEXT: LongContext =
    LongContext { above_input_tokens: 200_000, input_factor: 2.0, output_factor: 1.5 };

/// Fast mode (`speed: "fast"`, answered with `usage.speed: "fast"`) bills every token at 6×,
/// on top of long-context pricing.
pub const FAST_FACTOR: f64 = 6.0;

/// An Anthropic price from base input and output rates, cache rates derived, searches, long
/// prompts and fast mode at Anthropic's rates.
pub fn anthropic_pricing(input_per_1k: f64, output_per_1k: f64) -> Pricing {
    Pricing::new(input_per_1k, output_per_1k)
        .with_cache(input_per_1k * CACHE_READ_MULTIPLIER, input_per_1k * CACHE_WRITE_MULTIPLIER)
        .with_web_search(WEB_SEARCH_PER_1K)
        .with_long_context(LONG_CONTEXT)
        .with_fast_factor(FAST_FACTOR)
}

/// The part of a model id that names the Claude model: gateways prefix it
/// (`anthropic/claude-…`, Bedrock's `us.anthropic.claude-…`).
fn claude_part(model: &str) -> Option<&str> {
    model.find("claude-").map(|i| &model[i..])
}

/// Built-in price of `model`, if the table knows it.
pub fn lookup(model: &str) -> Option<Pricing> {
    let id = claude_part(model)?;
    TABLE
        .iter()
        .filter(|(prefix, _, _)| id.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|&(_, input, output)| anthropic_pricing(input, output))
}

/// Price of a model the table does not know.
///
/// A Claude model (a newer release, say) is priced like the most expensive known member of its
/// family: over-estimating makes the router shy away from a backend, under-estimating makes it
/// spend money it was told to save. Any model on the official API is assumed to be a Claude
/// model. Other models behind an Anthropic-compatible server (llama.cpp, a proxy in front of a
/// local model) cost nothing here unless `pricing` is set.
pub fn fallback(model: &str, official: bool) -> Pricing {
    let m = model.to_ascii_lowercase();
    if m.contains("opus") {
        anthropic_pricing(0.015, 0.075)
    } else if m.contains("haiku") {
        anthropic_pricing(0.001, 0.005)
    } else if m.contains("claude") || official {
        anthropic_pricing(0.003, 0.015)
    } else {
        Pricing::FREE
    }
}

/// Prices for `model`: the table, else the fallback.
pub fn for_model(model: &str, official: bool) -> Pricing {
    lookup(model).unwrap_or_else(|| fallback(model, official))
}

/// A settings override. Its cache rates default to Anthropic's multipliers of its input rate
/// rather than to the input rate itself, because that is how Anthropic bills them, and its
/// search, long-context and fast-mode rates to Anthropic's.
pub fn with_anthropic_defaults(p: Pricing) -> Pricing {
    Pricing {
        cache_read_per_1k: p.cache_read_per_1k.or(Some(p.input_per_1k * CACHE_READ_MULTIPLIER)),
        cache_write_per_1k: p.cache_write_per_1k.or(Some(p.input_per_1k * CACHE_WRITE_MULTIPLIER)),
        web_search_per_1k: p.web_search_per_1k.or(Some(WEB_SEARCH_PER_1K)),
        long_context: p.long_context.or(Some(LONG_CONTEXT)),
        fast_factor: p.fast_factor.or(Some(FAST_FACTOR)),
        ..p
    }
}

/// Default router quality by model family (0..1, higher is better).
pub fn default_quality(model: &str) -> f64 {
    let m = model.to_ascii_lowercase();
    if m.contains("opus") {
        0.95
    } else if m.contains("sonnet") {
        0.9
    } else if m.contains("haiku") {
        0.7
    } else {
        0.5
    }
}

/// Context window of Claude models (all current ones take 200K tokens by default; the 1M
/// window is an opt-in beta). Unknown for other models.
pub fn default_context_window(model: &str) -> Option<u32> {
    claude_part(model).map(|_| 200_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(model: &str) -> (f64, f64) {
        let p = lookup(model).unwrap();
        (p.input_per_1k, p.output_per_1k)
    }

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(io("claude-opus-4-20250514"), (0.015, 0.075));
        assert_eq!(io("claude-opus-4-1-20250805"), (0.015, 0.075));
        assert_eq!(io("claude-opus-4-5-20251101"), (0.005, 0.025));
        assert_eq!(io("claude-3-5-haiku-latest"), (0.0008, 0.004));
        assert_eq!(io("claude-3-haiku-20240307"), (0.00025, 0.00125));
        assert_eq!(io("claude-haiku-4-5"), (0.001, 0.005));
        assert_eq!(io("claude-sonnet-4-5-20250929"), (0.003, 0.015));
        assert_eq!(io("us.anthropic.claude-3-7-sonnet-20250219-v1:0"), (0.003, 0.015));
        assert!(lookup("tiny-llama").is_none());
    }

    #[test]
    fn cache_rates_follow_anthropic_multipliers() {
        let p = lookup("claude-3-5-sonnet-20241022").unwrap();
        assert!((p.cache_write_per_1k.unwrap() - 0.00375).abs() < 1e-12);
        assert!((p.cache_read_per_1k.unwrap() - 0.0003).abs() < 1e-12);
    }

    #[test]
    fn unknown_models_are_priced_conservatively_or_free() {
        assert_eq!(fallback("claude-opus-9", true).input_per_1k, 0.015);
        assert_eq!(fallback("claude-haiku-9", false).input_per_1k, 0.001);
        assert_eq!(fallback("mystery", true).input_per_1k, 0.003);
        assert!(fallback("tiny-llama", false).is_free());
    }

    #[test]
    fn quality_by_family() {
        assert_eq!(default_quality("claude-opus-4-5"), 0.95);
        assert_eq!(default_quality("claude-sonnet-4-5"), 0.9);
        assert_eq!(default_quality("claude-haiku-4-5"), 0.7);
        assert_eq!(default_quality("tiny-llama"), 0.5);
    }
}
