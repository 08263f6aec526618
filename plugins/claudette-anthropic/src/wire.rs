//! Pieces of the Messages wire format shared by the response parser and the stream decoder.

use claudette_core::{FinishReason, Usage, UsageSource};
use serde::Deserialize;

/// Anthropic's `usage` object. Every field is optional because compatible servers leave some
/// out (llama.cpp sends no `cache_creation_input_tokens`; DashScope sends input counts only in
/// `message_delta`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

fn sat(v: Option<u64>) -> u32 {
    v.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

impl WireUsage {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Takes every field `later` carries. Anthropic's stream usage is cumulative, so the later
    /// figure replaces the earlier one, it is never added to it. A cumulative count never
    /// shrinks, so the larger figure wins: compatible servers put `input_tokens: 0` in
    /// `message_delta` after the real count in `message_start` (sglang does, by design), and
    /// taking that zero would bill the prompt as free.
    pub fn merge(&mut self, later: &WireUsage) {
        fn newer(earlier: Option<u64>, later: Option<u64>) -> Option<u64> {
            match (earlier, later) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => b.or(a),
            }
        }
        self.input_tokens = newer(self.input_tokens, later.input_tokens);
        self.output_tokens = newer(self.output_tokens, later.output_tokens);
        self.cache_creation_input_tokens =
            newer(self.cache_creation_input_tokens, later.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer(self.cache_read_input_tokens, later.cache_read_input_tokens);
    }

    /// The neutral form. Anthropic's `input_tokens` excludes cache reads and writes; ours is
    /// the whole prompt with the cache counts as subsets, so they are added here, once.
    pub fn to_usage(self) -> Usage {
        if self.is_empty() {
            return Usage::default();
        }
        let write = sat(self.cache_creation_input_tokens);
        let read = sat(self.cache_read_input_tokens);
        Usage {
            input_tokens: sat(self.input_tokens).saturating_add(write).saturating_add(read),
            output_tokens: sat(self.output_tokens),
            cache_read_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: 0,
            source: UsageSource::Reported,
        }
    }
}

/// `stop_reason` in neutral terms, with the `stop_sequence` that matched. A compatible server
/// that says `stop_sequence` without naming it gives a plain stop.
pub(crate) fn finish_reason(stop_reason: &str, stop_sequence: Option<&str>) -> FinishReason {
    match stop_reason {
        "stop_sequence" => match stop_sequence {
            Some(s) => FinishReason::StopSequence(s.to_owned()),
            None => FinishReason::Stop,
        },
        "end_turn" => FinishReason::Stop,
        // `model_context_window_exceeded`: the output was cut by the window, not by max_tokens,
        // but for the caller it is the same truncated answer.
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_counts_join_the_prompt_once() {
        let w = WireUsage {
            input_tokens: Some(10),
            output_tokens: Some(5),
            cache_creation_input_tokens: Some(100),
            cache_read_input_tokens: Some(1000),
        };
        let u = w.to_usage();
        assert_eq!(u.input_tokens, 1110);
        assert_eq!(u.uncached_input_tokens(), 10);
        assert_eq!(u.source, UsageSource::Reported);
        assert_eq!(WireUsage::default().to_usage().source, UsageSource::Missing);
    }

    #[test]
    fn the_matched_stop_sequence_is_kept() {
        assert_eq!(finish_reason("stop_sequence", Some("END")), FinishReason::StopSequence("END".into()));
        assert_eq!(finish_reason("stop_sequence", None), FinishReason::Stop);
        assert_eq!(finish_reason("end_turn", None), FinishReason::Stop);
    }

    #[test]
    fn merge_replaces_never_sums() {
        let mut a = WireUsage { input_tokens: Some(7), output_tokens: Some(1), ..WireUsage::default() };
        a.merge(&WireUsage { output_tokens: Some(30), ..WireUsage::default() });
        a.merge(&WireUsage {
            output_tokens: Some(42),
            cache_read_input_tokens: Some(3),
            ..WireUsage::default()
        });
        assert_eq!(a.output_tokens, Some(42));
        assert_eq!(a.input_tokens, Some(7));
        assert_eq!(a.cache_read_input_tokens, Some(3));
    }
}
