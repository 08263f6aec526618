//! What both client protocols' request parsing shares: fields sent as either a string or a
//! list (OpenAI's message `content` and `stop`, Anthropic's `system` and message `content`),
//! and the tool-choice check.

use std::fmt;
use std::marker::PhantomData;

use claudette_core::ChatRequest;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::error::ApiError;

/// `"text"` or `[item, …]`.
///
/// A visitor rather than `#[serde(untagged)]`: an untagged enum buffers the whole value and
/// then retries it against each variant, which was a measurable share of parsing every
/// request. The error names both accepted shapes.
#[derive(Debug)]
pub(crate) enum TextOr<T> {
    Text(String),
    List(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = TextOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The hint comes from the client: cap what it may make us reserve.
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TextOr::List(items))
            }
        }

        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A 400 naming `tool_choice` when no backend could honour it (a tool that is not offered, a
/// forced call with no tools), before any backend is tried.
pub(crate) fn checked_tool_choice(request: &ChatRequest) -> Result<(), ApiError> {
    request
        .checked_tool_choice()
        .map(drop)
        .map_err(|e| ApiError::invalid(e.message).with_param("tool_choice"))
}

#[cfg(test)]
mod tests {
    use super::TextOr;

    #[test]
    fn a_string_or_a_list_and_nothing_else() {
        let t: TextOr<String> = serde_json::from_str(r#""a\nb""#).unwrap();
        assert!(matches!(t, TextOr::Text(s) if s == "a\nb"));
        let l: TextOr<String> = serde_json::from_str(r#"["x","y"]"#).unwrap();
        assert!(matches!(l, TextOr::List(v) if v == ["x", "y"]));
        let empty: TextOr<String> = serde_json::from_str("[]").unwrap();
        assert!(matches!(empty, TextOr::List(v) if v.is_empty()));
        for bad in ["1", "{}", "null", "true", r#"[1]"#] {
            let err = serde_json::from_str::<TextOr<String>>(bad).unwrap_err().to_string();
            assert!(err.contains("string"), "{bad}: {err}");
        }
    }
}
