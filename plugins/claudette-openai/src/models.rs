//! What we know about OpenAI models without asking: prices, a quality guess, the context
//! window, whether the model is a reasoning model that wants `max_completion_tokens`, and
//! whether it takes images.
//!
//! Matching is by longest prefix at a name boundary, so a dated snapshot
//! (`gpt-4o-2024-08-06`) finds its family (`gpt-4o`) while `gpt-4o-mini-2024-07-18` finds
//! `gpt-4o-mini`, and `gpt-4.5-preview` finds nothing rather than `gpt-4`'s price. Pricing a
//! model we do not know as free (plus a debug log) is deliberate: a wrong price is worse than
//! an obvious zero, and `pricing` in the settings overrides the table.

use claudette_core::Pricing;

/// One row of a model table. Tables are `'static` slices so a crate that reuses this adapter
/// for another OpenAI-compatible provider can pass its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelEntry {
    /// Model name or family; matches itself and `prefix-…` / `prefix:…` (dated snapshots).
    pub prefix: &'static str,
    pub pricing: Pricing,
    /// The router's quality factor, 0..1.
    pub quality: f64,
    pub context_window: Option<u32>,
    /// Reasoning models (o-series) reject `max_tokens` and want `max_completion_tokens`.
    pub reasoning: bool,
    /// Whether the model takes image input. OpenAI answers an image sent to a text-only model
    /// (`gpt-3.5-turbo`, `o3-mini`) with a 400; knowing it here lets the router send image
    /// requests elsewhere instead (`BackendInfo::supports_images`).
    pub images: bool,
}

impl ModelEntry {
    /// This entry for a model that reads text only.
    pub const fn text_only(self) -> Self {
        Self { images: false, ..self }
    }
}

/// Prices in USD per 1,000 tokens: input, output, cached input. OpenAI bills no separate
/// cache-write rate, so cache writes fall back to the input rate.
const fn price(input: f64, output: f64, cached: Option<f64>) -> Pricing {
    Pricing {
        input_per_1k: input,
        output_per_1k: output,
        cache_read_per_1k: cached,
        cache_write_per_1k: None,
        web_search_per_1k: None,
        long_context: None,
        fast_factor: None,
    }
}

const fn entry(prefix: &'static str, pricing: Pricing, quality: f64, window: u32) -> ModelEntry {
    ModelEntry { prefix, pricing, quality, context_window: Some(window), reasoning: false, images: true }
}

const fn reasoning(prefix: &'static str, pricing: Pricing, quality: f64, window: u32) -> ModelEntry {
    ModelEntry { prefix, pricing, quality, context_window: Some(window), reasoning: true, images: true }
}

/// OpenAI's public list prices (standard tier), per 1K tokens.
///
/// Snapshots whose price differs from their family are listed on their own (the first
/// `gpt-4o-2024-05-13` cost twice today's `gpt-4o`; the `gpt-4-…-preview` snapshots are
/// GPT-4 Turbo, not GPT-4), and so are those that differ in taking images: vision came to
/// GPT-4 Turbo only with `gpt-4-turbo-2024-04-09` (and the `vision-preview` snapshots), so
/// `gpt-4-turbo-preview`, an alias of `gpt-4-0125-preview`, reads text only; `o1` takes
/// images, `o1-preview` and `o1-mini` do not.
pub const OPENAI_MODELS: &[ModelEntry] = &[
    entry("gpt-4o", price(0.0025, 0.01, Some(0.00125)), 0.9, 128_000),
    entry("gpt-4o-2024-05-13", price(0.005, 0.015, None), 0.9, 128_000),
    entry("chatgpt-4o-latest", price(0.005, 0.015, None), 0.9, 128_000),
    entry("gpt-4o-mini", price(0.00015, 0.0006, Some(0.000075)), 0.75, 128_000),
    entry("gpt-4.1", price(0.002, 0.008, Some(0.0005)), 0.9, 1_047_576),
    entry("gpt-4.1-mini", price(0.0004, 0.0016, Some(0.0001)), 0.8, 1_047_576),
    entry("gpt-4.1-nano", price(0.0001, 0.0004, Some(0.000025)), 0.65, 1_047_576),
    entry("gpt-4-turbo", price(0.01, 0.03, None), 0.9, 128_000),
    entry("gpt-4-turbo-preview", price(0.01, 0.03, None), 0.9, 128_000).text_only(),
    entry("gpt-4-1106", price(0.01, 0.03, None), 0.9, 128_000).text_only(),
    entry("gpt-4-1106-vision-preview", price(0.01, 0.03, None), 0.9, 128_000),
    entry("gpt-4-0125", price(0.01, 0.03, None), 0.9, 128_000).text_only(),
    entry("gpt-4-vision-preview", price(0.01, 0.03, None), 0.9, 128_000),
    entry("gpt-4", price(0.03, 0.06, None), 0.85, 8_192).text_only(),
    entry("gpt-4-32k", price(0.06, 0.12, None), 0.85, 32_768).text_only(),
    entry("gpt-3.5-turbo", price(0.0005, 0.0015, None), 0.6, 16_385).text_only(),
    reasoning("o1", price(0.015, 0.06, Some(0.0075)), 0.95, 200_000),
    reasoning("o1-preview", price(0.015, 0.06, Some(0.0075)), 0.95, 128_000).text_only(),
    reasoning("o1-mini", price(0.0011, 0.0044, Some(0.00055)), 0.8, 128_000).text_only(),
    reasoning("o3", price(0.002, 0.008, Some(0.0005)), 0.95, 200_000),
    reasoning("o3-mini", price(0.0011, 0.0044, Some(0.00055)), 0.85, 200_000).text_only(),
    reasoning("o4-mini", price(0.0011, 0.0044, Some(0.000275)), 0.85, 200_000),
];

/// The entry for `model` in `table`: the longest prefix that matches at a name boundary.
///
/// A provider prefix as LiteLLM or OpenRouter write it (`openai/gpt-4o`) is ignored.
pub fn lookup_model<'t>(table: &'t [ModelEntry], model: &str) -> Option<&'t ModelEntry> {
    let model = model.trim();
    let model = model.rsplit_once('/').map_or(model, |(_, m)| m);
    table.iter().filter(|e| matches_prefix(model, e.prefix)).max_by_key(|e| e.prefix.len())
}

fn matches_prefix(model: &str, prefix: &str) -> bool {
    match model.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => rest.starts_with('-') || rest.starts_with(':'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_respect_name_boundaries() {
        assert!(matches_prefix("gpt-4", "gpt-4"));
        assert!(matches_prefix("gpt-4-0613", "gpt-4"));
        assert!(!matches_prefix("gpt-4o", "gpt-4"));
        assert!(!matches_prefix("gpt-4.5-preview", "gpt-4"));
        assert!(!matches_prefix("o1", "o1-mini"));
    }

    #[test]
    fn table_prefixes_are_unique() {
        for (i, a) in OPENAI_MODELS.iter().enumerate() {
            for b in &OPENAI_MODELS[i + 1..] {
                assert_ne!(a.prefix, b.prefix);
            }
        }
    }
}
