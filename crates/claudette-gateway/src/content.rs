//! What the client protocols' request parsing shares: fields sent as either a string or a
//! list (OpenAI's message `content` and `stop`, Anthropic's `system` and message `content`),
//! the tool-choice check, naming the field at fault in a body that does not parse, and the
//! OpenAI forms both OpenAI protocols (Chat Completions, Responses) use: tool-call arguments
//! as JSON text, and the reasoning effort levels.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use claudette_core::{ChatRequest, ReasoningEffort, Thinking};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::Value;

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

/// A field of a request body that failed to parse: its path, in the client protocol's
/// notation, and serde's reason.
pub(crate) type Fault = (String, serde_json::Error);

/// How a protocol writes the path of a list element: Anthropic `messages.2`, OpenAI
/// `messages[2]`. Errors name fields the way the client's own SDK documentation does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Paths {
    Dotted,
    Bracketed,
}

impl Paths {
    pub(crate) fn element(self, path: &str, i: usize) -> String {
        match self {
            Paths::Dotted => format!("{path}.{i}"),
            Paths::Bracketed => format!("{path}[{i}]"),
        }
    }
}

/// Parses a request body. Only when that fails on a body that is valid JSON is it read again,
/// by `locate`, to name the field at fault: serde's own message gives a line and column, which
/// tells a client that built the body as an object nothing. `located` words the error the way
/// the client's protocol does.
pub(crate) fn parse_located<T: DeserializeOwned>(
    bytes: &[u8],
    locate: impl Fn(&Value) -> Option<Fault>,
    located: impl Fn(String, serde_json::Error) -> ApiError,
) -> Result<T, ApiError> {
    let err = match serde_json::from_slice::<T>(bytes) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let found = if err.is_data() {
        serde_json::from_slice::<Value>(bytes).ok().and_then(|v| locate(&v))
    } else {
        None
    };
    Err(match found {
        Some((path, inner)) => located(path, inner),
        None => ApiError::invalid(format!("request body is not valid JSON for this endpoint: {err}")),
    })
}

/// Why `v` is not a `T`, at `path`; `None` when it is one.
pub(crate) fn fault<'a, T: Deserialize<'a>>(path: String, v: &'a Value) -> Option<Fault> {
    T::deserialize(v).err().map(|e| (path, e))
}

/// The first element of the list `v` at fault by `item_fault`, named by its position: in a
/// long conversation the path must point at the one bad entry, not at the array.
pub(crate) fn list_fault(
    paths: Paths,
    path: &str,
    v: &Value,
    item_fault: impl Fn(String, &Value) -> Option<Fault>,
) -> Option<Fault> {
    match v.as_array() {
        Some(items) => {
            items.iter().enumerate().find_map(|(i, item)| item_fault(paths.element(path, i), item))
        }
        None => fault::<Vec<Value>>(path.to_owned(), v),
    }
}

/// [`list_fault`] for a list of `T`.
pub(crate) fn element_fault<T: for<'a> Deserialize<'a>>(
    paths: Paths,
    path: &str,
    v: &Value,
) -> Option<Fault> {
    list_fault(paths, path, v, |path, item| fault::<T>(path, item))
}

/// Tool-call arguments as OpenAI sends them: a JSON string. A string value is an adapter's
/// unparsed text and goes out verbatim.
pub(crate) fn arguments_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Tool-call arguments a client sent as JSON text, as the object `ToolCall::arguments` holds;
/// blank text is `{}` (some clients send `""` for a call without parameters).
pub(crate) fn parse_arguments(raw: &str, param: impl FnOnce() -> String) -> Result<Value, ApiError> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(raw).map_err(|e| {
        ApiError::invalid(format!("tool call arguments are not valid JSON: {e}")).with_param(param())
    })
}

/// An OpenAI reasoning effort (`reasoning_effort`, the Responses API's `reasoning.effort`)
/// named at `param`: one of OpenAI's own levels, or a 400 listing them.
pub(crate) fn openai_effort(e: &str, param: &'static str) -> Result<Thinking, ApiError> {
    match ReasoningEffort::parse_openai(e) {
        Some(effort) => Ok(Thinking::Effort { effort }),
        None => Err(ApiError::invalid(format!(
            "unknown {param} `{e}`; expected `none`, `minimal`, `low`, `medium`, `high` or `xhigh`"
        ))
        .with_param(param)),
    }
}

/// A function tool's `strict` at `param`: `None` when absent or null (each endpoint has its
/// own default), else the flag, or a 400 naming `param` for anything but a boolean — read as
/// `false`, the client's strict tool would be offered as a loose one and its arguments
/// trusted to a schema nothing enforced.
pub(crate) fn tool_strict(
    v: Option<&Value>,
    param: impl FnOnce() -> String,
) -> Result<Option<bool>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            let param = param();
            Err(match fault::<bool>(param.clone(), other) {
                Some((path, inner)) => invalid_value(path, &inner),
                None => invalid_value(param, &"expected a boolean"),
            })
        }
    }
}

/// OpenAI's wording for a field of the wrong type or value, naming it as the `param`.
pub(crate) fn invalid_value(path: String, why: &dyn std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Invalid value for '{path}': {why}.")).with_param(path)
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
