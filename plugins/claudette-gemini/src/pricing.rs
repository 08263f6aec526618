//! Built-in Gemini API prices (USD per 1,000 tokens, paid tier, prompts up to 200k tokens).
//!
//! Looked up by the longest matching prefix, so dated and preview variants
//! (`gemini-2.5-flash-preview-05-20`, `gemini-1.5-pro-002`) get their family's price while
//! `gemini-2.5-flash-lite` does not get `gemini-2.5-flash`'s. Cache reads are priced at a
//! quarter of the input rate (Gemini's cached-token discount is 75%). The settings' `pricing`
//! overrides the table for any model (negotiated rates, long-context tiers).

use claudette_core::Pricing;

const fn price(input_per_1k: f64, output_per_1k: f64) -> Pricing {
    Pricing::new(input_per_1k, output_per_1k).with_cache(input_per_1k / 4.0, input_per_1k)
}

/// `(model prefix, price)`.
pub const PRICES: &[(&str, Pricing)] = &[
    ("gemini-2.5-pro", price(0.00125, 0.01)),
    ("gemini-2.5-flash", price(0.0003, 0.0025)),
    ("gemini-2.5-flash-lite", price(0.0001, 0.0004)),
    ("gemini-2.0-flash", price(0.0001, 0.0004)),
    ("gemini-2.0-flash-lite", price(0.000075, 0.0003)),
    ("gemini-1.5-pro", price(0.00125, 0.005)),
    ("gemini-1.5-flash", price(0.000075, 0.0003)),
    ("gemini-1.5-flash-8b", price(0.0000375, 0.00015)),
];

/// The table's price for `model`, by longest prefix; `None` when no prefix matches.
pub fn known_price(model: &str) -> Option<Pricing> {
    PRICES
        .iter()
        .filter(|(prefix, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, p)| *p)
}

/// The price used for `model`: the table's, or for a model it does not know the most
/// expensive entry's. Over-estimating keeps budgets safe; pricing an unknown model at zero
/// would let it spend without limit (the "model isn't mapped" failure of other gateways).
pub fn price_for(model: &str) -> Pricing {
    known_price(model).unwrap_or(PRICES[0].1)
}

/// The model's context window (prompt plus output tokens), when known: 2,097,152 for the
/// 1.5 Pro family, 1,048,576 for every other model in the table. Reported in `BackendInfo` so a
/// router can send an overflowing prompt to a backend with a larger window.
pub fn context_window(model: &str) -> Option<u32> {
    if model.starts_with("gemini-1.5-pro") { Some(2_097_152) } else { known_price(model).map(|_| 1_048_576) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(known_price("gemini-2.5-flash-lite-preview-06-17"), Some(price(0.0001, 0.0004)));
        assert_eq!(known_price("gemini-2.5-flash-preview-05-20"), Some(price(0.0003, 0.0025)));
        assert_eq!(known_price("gemini-1.5-pro-002"), Some(price(0.00125, 0.005)));
        assert_eq!(known_price("gemma-3-27b-it"), None);
        assert_eq!(price_for("gemini-9-ultra"), price(0.00125, 0.01));
        assert_eq!(context_window("gemini-1.5-pro-002"), Some(2_097_152));
        assert_eq!(context_window("gemini-2.5-flash"), Some(1_048_576));
        assert_eq!(context_window("gemma-3-27b-it"), None);
    }
}
