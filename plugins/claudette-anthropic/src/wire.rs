//! Pieces of the Messages wire format shared by the response parser and the stream decoder.

use claudette_core::{Dialect, FinishReason, NativeField, ServiceTier, Usage, UsageSource};
use serde::Deserialize;
use serde_json::Value;

/// The top-level fields of an answer a client needs back as Anthropic wrote them, in the
/// order they are passed on: `container` (the code execution container, whose id the next
/// turn names to work in it again) and `context_management` (the context edits Anthropic
/// applied).
pub(crate) const ANSWER_FIELDS: [&str; 2] = ["container", "context_management"];

/// `value` as the answer's field `name`, unless it is null (Anthropic writes `container:
/// null` when no container was used).
pub(crate) fn answer_field(name: &str, value: Option<&Value>) -> Option<NativeField> {
    let value = value.filter(|v| !v.is_null())?;
    Some(NativeField {
        dialect: Dialect::Anthropic,
        name: name.to_owned(),
        value: value.clone(),
        required: false,
    })
}

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
    /// What the server tools Anthropic ran cost beyond tokens (`null` from some compatible
    /// servers).
    #[serde(default)]
    pub server_tool_use: Option<WireServerToolUse>,
    /// Which speed served the answer: fast mode (`speed: "fast"` asked) bills every token at
    /// 6×, and Anthropic may serve such a request at standard speed instead.
    #[serde(default)]
    pub speed: Option<Speed>,
}

/// `usage.speed`. Any value but `fast` is billed at the standard rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Speed {
    Fast,
    #[serde(other)]
    Standard,
}

/// `usage.server_tool_use`: Anthropic bills each web search (web fetches are free).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct WireServerToolUse {
    #[serde(default)]
    pub web_search_requests: Option<u64>,
}

fn sat(v: Option<u64>) -> u32 {
    v.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

impl WireUsage {
    /// No count at all (an empty `server_tool_use` counts nothing either).
    pub fn is_empty(&self) -> bool {
        self.input_tokens.is_none()
            && self.output_tokens.is_none()
            && self.cache_creation_input_tokens.is_none()
            && self.cache_read_input_tokens.is_none()
            && self.web_search_requests().is_none()
    }

    fn web_search_requests(&self) -> Option<u64> {
        self.server_tool_use.and_then(|s| s.web_search_requests)
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
        let searches = newer(self.web_search_requests(), later.web_search_requests());
        self.server_tool_use = searches.map(|n| WireServerToolUse { web_search_requests: Some(n) });
        self.speed = later.speed.or(self.speed);
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
            web_search_requests: sat(self.web_search_requests()),
            tier: if self.speed == Some(Speed::Fast) { ServiceTier::Fast } else { ServiceTier::Standard },
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
            server_tool_use: None,
            speed: None,
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

    /// A server tool's long turn that Anthropic paused is no error and no usual stop: the
    /// client sends the turn back as it is to let Claude go on.
    #[test]
    fn pause_turn_and_refusal_keep_their_meaning() {
        assert_eq!(finish_reason("pause_turn", None), FinishReason::Other("pause_turn".into()));
        assert_eq!(finish_reason("refusal", None), FinishReason::ContentFilter);
    }

    #[test]
    fn web_searches_are_counted_and_merged_like_tokens() {
        let parse = |v: serde_json::Value| serde_json::from_value::<WireUsage>(v).unwrap();
        let mut u = parse(serde_json::json!({"input_tokens": 9, "server_tool_use": null}));
        assert_eq!(u.to_usage().web_search_requests, 0);
        u.merge(&parse(
            serde_json::json!({"output_tokens": 3, "server_tool_use": {"web_search_requests": 2}}),
        ));
        u.merge(&parse(serde_json::json!({"output_tokens": 4})));
        assert_eq!(u.to_usage().web_search_requests, 2);
        assert_eq!(u.to_usage().input_tokens, 9);
        let only = parse(serde_json::json!({"server_tool_use": {"web_search_requests": 1}}));
        assert!(!only.is_empty());
        assert!(parse(serde_json::json!({"server_tool_use": {}})).is_empty());
    }

    #[test]
    fn fast_mode_is_read_from_either_usage_of_a_stream() {
        let parse = |v: serde_json::Value| serde_json::from_value::<WireUsage>(v).unwrap();
        assert!(
            parse(serde_json::json!({"input_tokens": 9, "speed": "fast"})).to_usage().tier
                == ServiceTier::Fast
        );
        assert_eq!(
            parse(serde_json::json!({"input_tokens": 9, "speed": "standard"})).to_usage().tier,
            ServiceTier::Standard
        );
        assert_eq!(
            parse(serde_json::json!({"input_tokens": 9, "speed": "turbo"})).to_usage().tier,
            ServiceTier::Standard
        );
        let mut u = parse(serde_json::json!({"input_tokens": 9, "speed": "fast"}));
        u.merge(&parse(serde_json::json!({"output_tokens": 4})));
        assert!(u.to_usage().tier == ServiceTier::Fast, "a later usage without `speed` keeps it");
        let mut u = parse(serde_json::json!({"input_tokens": 9}));
        u.merge(&parse(serde_json::json!({"output_tokens": 4, "speed": "fast"})));
        assert!(u.to_usage().tier == ServiceTier::Fast);
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
