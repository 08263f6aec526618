//! Token estimates for usage a provider did not report (an interrupted OpenAI stream without
//! `include_usage`, servers that never send usage). Such counts are always flagged
//! [`UsageSource::Estimated`](crate::types::UsageSource): no local tokenizer matches every
//! provider's, so they are never presented as facts.
//!
//! With the `tokenizer` feature the count comes from tiktoken's `cl100k_base` BPE (exact for
//! GPT-4-era OpenAI models, close for most others), loaded lazily the first time an estimate is
//! needed: ~100 ms and ~25 MiB of tables, which a gateway whose providers always report usage
//! never pays. Without it, 4 bytes a token, the usual rule of thumb for English text.

/// How estimates are made in this build, for logs and docs.
pub const METHOD: &str =
    if cfg!(feature = "tokenizer") { "tiktoken cl100k_base" } else { "4 bytes per token" };

/// Estimated tokens in `text`.
pub fn estimate_tokens(text: &str) -> u32 {
    if text.is_empty() {
        return 0;
    }
    count(text)
}

#[cfg(feature = "tokenizer")]
fn count(text: &str) -> u32 {
    let bpe = tiktoken_rs::cl100k_base_singleton();
    u32::try_from(bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX)
}

#[cfg(not(feature = "tokenizer"))]
fn count(text: &str) -> u32 {
    crate::types::estimate_tokens_from_len(text.len())
}

/// Estimated prompt tokens of a request: every message's text plus a few tokens of framing
/// per message (role markers), as chat templates add.
pub fn estimate_request_tokens(request: &crate::types::ChatRequest) -> u32 {
    request
        .messages
        .iter()
        .map(|m| {
            let images = u32::try_from(m.images.len()).unwrap_or(u32::MAX);
            let documents =
                m.documents.iter().map(crate::types::Document::estimated_tokens).fold(0, u32::saturating_add);
            estimate_tokens(&m.content)
                .saturating_add(4)
                .saturating_add(images.saturating_mul(crate::types::IMAGE_TOKEN_ESTIMATE))
                .saturating_add(documents)
        })
        .fold(0u32, u32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_plausible() {
        assert_eq!(estimate_tokens(""), 0);
        let n = estimate_tokens("Hello world, this is a token count test.");
        assert!((8..=12).contains(&n), "{n} with {METHOD}");
        let r = crate::types::ChatRequest::prompt("Hello world");
        assert!(estimate_request_tokens(&r) >= 5);
    }

    #[cfg(feature = "tokenizer")]
    #[test]
    fn tokenizer_counts_like_tiktoken() {
        // cl100k_base: "Hello world" is two tokens; a byte heuristic would say three.
        assert_eq!(estimate_tokens("Hello world"), 2);
    }
}
