//! Typed, borrowing views of what an OpenAI-compatible server sends back, read without a
//! `serde_json::Value` tree.
//!
//! Compatible servers disagree on shapes: nulls where OpenAI omits a field, floats where it
//! sends integers, content arrays where it sends text, tool-call arguments as an object where
//! it sends a string, and extra fields everywhere (`timings`, `provider_specific_fields`).
//! Plain derived structs would fail a whole good answer on one odd field. So the leaves here
//! are small lenient types, each reading *any* JSON value and keeping it only if it has the
//! expected shape, exactly as the `Value` accessors did (`as_str`, `as_u64`, `as_array`,
//! "is an object"): a wrong-typed field reads as absent, never as an error. Unknown fields
//! are skipped without being built.
//!
//! Fields that are never read are skipped by the parser without being decoded, so a broken
//! string in one of them (invalid UTF-8, a lone surrogate escape in `timings`, say) no longer
//! fails an answer whose read fields are fine; the text as a whole must still be JSON.
//!
//! Strings borrow from the input when they hold no escapes (`Cow::Borrowed`), so the common
//! chunk costs no allocation until its text becomes an owned event.
//!
//! Every type reads the same from a `serde_json::Value` (`&Value` is a deserializer too):
//! the callers re-read from a `Value` the rare input that the typed pass refuses, a repeated
//! key (a derived struct rejects it, a `Value` keeps the last one), so such input is handled
//! exactly as before.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Visitor methods that read a JSON value of another shape as the type's default ("absent"),
/// consuming it. One arm per kind of value `serde_json` (from text or from a `Value`) reports.
macro_rules! other_is_default {
    ($($kind:ident),* $(,)?) => { $( other_is_default!(@ $kind); )* };
    (@ bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok(Default::default()) }
    };
    (@ i64) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok(Default::default()) }
    };
    (@ u64) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok(Default::default()) }
    };
    (@ f64) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok(Default::default()) }
    };
    (@ str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok(Default::default()) }
    };
    (@ unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok(Default::default()) }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> { Ok(Default::default()) }
    };
    (@ seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_seq(seq)?;
            Ok(Default::default())
        }
    };
    (@ map) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_map(map)?;
            Ok(Default::default())
        }
    };
}

pub(crate) use other_is_default;

/// A string field; any other value (null, number, object, …) reads as `None`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Str<'a>(pub Option<Cow<'a, str>>);

impl<'a> Str<'a> {
    /// The text if it is not empty (servers send `""` where they mean "nothing").
    pub fn non_empty(self) -> Option<Cow<'a, str>> {
        self.0.filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Owned(s))))
            }
            other_is_default!(bool, i64, u64, f64, unit, seq, map);
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// An object read as `T`; any other value reads as `None` (`Value::get` on a non-object).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
            }
            other_is_default!(bool, i64, u64, f64, str, unit, seq);
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// An array of `T`; any other value reads as `None` (`Value::as_array`). Elements must be
/// lenient themselves (`Obj<…>`), so one odd element does not fail the array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Arr<T>(pub Option<Vec<T>>);

impl<T> Default for Arr<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Arr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Arr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Bounded: a size hint is the peer's claim, not a promise.
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Arr(Some(items)))
            }
            other_is_default!(bool, i64, u64, f64, str, unit, map);
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A non-negative integer (`Value::as_u64`: floats, even integral ones, are not indices).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Index(pub Option<u64>);

impl<'de> Deserialize<'de> for Index {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Index;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Index(Some(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Index(u64::try_from(n).ok()))
            }
            other_is_default!(bool, f64, str, unit, seq, map);
        }
        deserializer.deserialize_any(V)
    }
}

/// A token count: a non-negative integer (clamped to `u32::MAX`), or an integral float in
/// range, which some servers send. Anything else reads as `None`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count(pub Option<u32>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Count(Some(u32::try_from(n).unwrap_or(u32::MAX))))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Count(u64::try_from(n).ok().map(|n| u32::try_from(n).unwrap_or(u32::MAX))))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
                if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= f64::from(u32::MAX) {
                    // Exact: the value is integral and in range.
                    return Ok(Count(Some(f as u32)));
                }
                Ok(Count(None))
            }
            other_is_default!(bool, str, unit, seq, map);
        }
        deserializer.deserialize_any(V)
    }
}

/// Whether a field is there at all, whatever its value (even `null`): FastAPI's `detail`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// An `error` field that makes its object an error: an object or a string (not `null`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorField(pub bool);

impl<'de> Deserialize<'de> for ErrorField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ErrorField(true))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_map(map)?;
                Ok(ErrorField(true))
            }
            other_is_default!(bool, i64, u64, f64, unit, seq);
        }
        deserializer.deserialize_any(V)
    }
}

/// A `content` field: text, or an array of content parts (some servers answer in the
/// request's multi-part shape), of which string parts and the `text` of object parts count.
/// `null` and other shapes are empty.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) enum Content<'a> {
    #[default]
    Empty,
    Text(Cow<'a, str>),
    Parts(Vec<Str<'a>>),
}

impl Content<'_> {
    pub fn into_text(self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Text(text) => text.into_owned(),
            Self::Parts(parts) => parts.iter().filter_map(|p| p.0.as_deref()).collect(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::new();
                while let Some(Part(text)) = seq.next_element()? {
                    parts.push(text);
                }
                Ok(Content::Parts(parts))
            }
            other_is_default!(bool, i64, u64, f64, unit, map);
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// One content part: a string, or an object whose `text` is a string.
#[derive(Default)]
struct Part<'a>(Str<'a>);

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct TextPart<'a> {
    #[serde(borrow)]
    text: Str<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Part<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Part<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Part(Str(Some(Cow::Borrowed(s)))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Part(Str(Some(Cow::Owned(s.to_owned())))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Part(Str(Some(Cow::Owned(s)))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                TextPart::deserialize(MapAccessDeserializer::new(map)).map(|p| Part(p.text))
            }
            other_is_default!(bool, i64, u64, f64, unit, seq);
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// Tool-call `arguments`: OpenAI's JSON text, absent/`null`, or — some compatible servers —
/// the JSON value itself, which is kept as a `Value` (the rare case; the field only).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) enum Args<'a> {
    #[default]
    Absent,
    Text(Cow<'a, str>),
    Json(Value),
}

impl<'a> Args<'a> {
    /// The same view of a field already held as a `Value`.
    pub fn from_value(value: Option<&'a Value>) -> Self {
        match value {
            None | Some(Value::Null) => Self::Absent,
            Some(Value::String(s)) => Self::Text(Cow::Borrowed(s)),
            Some(other) => Self::Json(other.clone()),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Args<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Args<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Args::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Args::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Args::Text(Cow::Owned(s)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Args::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Args::Absent)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Args::Json(Value::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Args::Json(Value::from(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Args::Json(Value::from(n)))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Ok(Args::Json(Value::from(n)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Args::Json)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Args::Json)
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A chat completion (`C` = [`MessageChoice`]) or one stream chunk (`C` = [`DeltaChoice`]).
/// The `error`, `object`, `type` and `detail` fields only say whether the object is an error
/// object (see [`Completion::looks_like_error`]).
#[derive(Debug, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Completion<'a, C> {
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub model: Str<'a>,
    pub choices: Arr<Obj<C>>,
    pub usage: Obj<UsageWire>,
    pub error: ErrorField,
    #[serde(borrow)]
    pub object: Str<'a>,
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    pub detail: Present,
}

/// A non-stream chat completion.
pub(crate) type CompletionWire<'a> = Completion<'a, MessageChoice<'a>>;
/// One `data:` chunk of a chat-completions stream, read the derived way: the stream decoder
/// reads chunks in one hand-written pass (`stream::TopChunk`); this is kept as the reference
/// its equivalence test compares against.
#[cfg(test)]
pub(crate) type ChunkWire<'a> = Completion<'a, DeltaChoice<'a>>;

impl<C> Default for Completion<'_, C> {
    fn default() -> Self {
        Self {
            id: Str::default(),
            model: Str::default(),
            choices: Arr::default(),
            usage: Obj::default(),
            error: ErrorField::default(),
            object: Str::default(),
            kind: Str::default(),
            detail: Present::default(),
        }
    }
}

#[cfg(test)]
impl<C> Completion<'_, C> {
    /// Whether [`crate::error_fields`] would read this object as an error: an `error` object
    /// or string, `object`/`type` `"error"` (vLLM, SGLang), or a `detail` (FastAPI).
    pub fn looks_like_error(&self) -> bool {
        self.error.0
            || self.object.0.as_deref() == Some("error")
            || self.kind.0.as_deref() == Some("error")
            || self.detail.0
    }
}

/// A completion's choice. (Two choice types rather than one with both `message` and
/// `delta`: each is moved around per chunk, and half of it would always be empty.)
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct MessageChoice<'a> {
    pub index: Index,
    #[serde(borrow)]
    pub message: Obj<Box<MessageWire<'a>>>,
    #[serde(borrow)]
    pub finish_reason: Str<'a>,
    /// vLLM's and SGLang's: see [`crate::response::finish_reason_with`].
    #[serde(borrow)]
    pub stop_reason: Str<'a>,
}

/// A stream chunk's choice (the derived reference, see [`ChunkWire`]).
#[cfg(test)]
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct DeltaChoice<'a> {
    pub index: Index,
    /// Boxed, as is `message`: a choice is moved several times on its way out of the
    /// parser, and the message is most of its size.
    #[serde(borrow)]
    pub delta: Obj<Box<MessageWire<'a>>>,
    #[serde(borrow)]
    pub finish_reason: Str<'a>,
    #[serde(borrow)]
    pub stop_reason: Str<'a>,
}

/// A completion's `message` or a chunk's `delta`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct MessageWire<'a> {
    #[serde(borrow)]
    pub content: Content<'a>,
    #[serde(borrow)]
    pub reasoning_content: Str<'a>,
    #[serde(borrow)]
    pub reasoning: Str<'a>,
    #[serde(borrow)]
    pub refusal: Str<'a>,
    #[serde(borrow)]
    pub tool_calls: Arr<Obj<ToolCallWire<'a>>>,
    /// The pre-tools shape, still sent by some older servers.
    #[serde(borrow)]
    pub function_call: Obj<Box<FunctionWire<'a>>>,
}

impl<'a> MessageWire<'a> {
    /// Reasoning text sent beside the answer: `reasoning_content` (vLLM, SGLang, Qwen,
    /// DeepSeek) or else `reasoning` (newer vLLM, OpenRouter), whichever is a string first;
    /// `None` when that is empty.
    pub fn take_reasoning(&mut self) -> Option<Cow<'a, str>> {
        self.reasoning_content.0.take().or_else(|| self.reasoning.0.take()).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct ToolCallWire<'a> {
    pub index: Index,
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub function: Obj<FunctionWire<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct FunctionWire<'a> {
    #[serde(borrow)]
    pub name: Str<'a>,
    #[serde(borrow)]
    pub arguments: Args<'a>,
}

/// An OpenAI `usage` object (see [`crate::parse_usage`] for what is read and why).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct UsageWire {
    pub prompt_tokens: Count,
    pub completion_tokens: Count,
    pub prompt_tokens_details: Obj<PromptDetails>,
    pub completion_tokens_details: Obj<CompletionDetails>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct PromptDetails {
    pub cached_tokens: Count,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct CompletionDetails {
    pub reasoning_tokens: Count,
}

/// A strict scanner over JSON text for the common case only, used before `serde_json` on
/// the hottest path (every stream chunk): it reads plain strings, `null`, non-negative
/// integers and containers, and answers `None` — "not sure, use `serde_json`" — on anything
/// else: an escape or a control character in a string, a number whose value is wanted but is
/// not a plain integer, an invalid or too deep text. So what it accepts is valid JSON that
/// `serde_json` reads the same way, and everything else takes the general path unchanged.
///
/// Why: a chunk is ~20 short strings, and `serde_json`'s per-token machinery (visitor
/// dispatch, key identification, `Option` wrapping) cost more than the bytes; this reads a
/// typical chunk in about half the time (see `benches/wire.rs`). The per-token readers
/// (`peek`, `eat`, `str`, `separator`, `plain_len`) are `#[inline]`: called from many places,
/// they were kept out of line, and inlining them into the readers cut `decode_stream` by
/// about a tenth.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
    /// Where the member being read by [`object`](Self::object) starts (just after the `{` or
    /// `,` before its key), for [`resume_object`](Self::resume_object).
    member_start: usize,
}

/// Whether `s` is a JSON string's contents that need no unescaping: no `"`, `\\` or control
/// character, so the quoted text reads back as `s` itself.
pub(crate) fn is_plain(s: &str) -> bool {
    plain_len(s.as_bytes()) == s.len()
}

/// The length of the start of `s` that holds no `"`, `\\` or control character, eight bytes
/// at a time (the same bit trick as `serde_json`'s own string scan).
#[inline]
fn plain_len(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        // A byte below 0x20: `v - 0x20` borrows into its high bit, which `v` lacks.
        let found = zero(v ^ (ONES * u64::from(b'"')))
            | zero(v ^ (ONES * u64::from(b'\\')))
            | (v.wrapping_sub(ONES * 0x20) & !v & HIGH);
        if found != 0 {
            // Bits above the first hit may be false; the lowest is exact.
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + s[i..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(s.len() - i)
}

/// What a one-character escape (the byte after the `\\`) stands for; `None` for `\\u` (left to
/// `serde_json`, which knows surrogates) and for anything that is not an escape.
fn unescape(b: u8) -> Option<char> {
    Some(match b {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}

/// Deeper than this, the scanner leaves the text to `serde_json` (whose limit is 128).
const SCAN_MAX_DEPTH: u32 = 64;

impl<'a> Scan<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0, depth: 0, member_start: 0 }
    }

    /// Where the member whose key was last passed to an [`object`](Self::object) callback
    /// starts: read at the start of the callback, before any nested object.
    pub fn member_start(&self) -> usize {
        self.member_start
    }

    /// Continues reading a top-level object at `at`, a [`member_start`](Self::member_start)
    /// an earlier scan reported in a text whose bytes up to `at` were the same: the scan
    /// then reads exactly as if it had read those bytes itself, because no reader looks past
    /// the `,` that ends a member. `field` sees the members from there on.
    pub fn resume_object(
        text: &'a str,
        at: usize,
        field: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<Self> {
        let mut s = Self { text, pos: at, depth: 1, member_start: at };
        s.members(field)?;
        s.depth -= 1;
        Some(s)
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        let s = self.bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(self.pos) {
            self.pos += 1;
        }
        s.get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Only whitespace left.
    pub fn end(&mut self) -> Option<()> {
        (self.peek().is_none()).then_some(())
    }

    /// A string without escapes or control characters, borrowed.
    #[inline]
    pub fn str(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.pos;
        let rest = self.bytes().get(start..)?;
        let len = plain_len(rest);
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        // Both ends are at ASCII quotes, so at character boundaries.
        self.text.get(start..start + len)
    }

    /// A string, borrowed when it has no escapes; the one-character escapes (`\n`, `\"`…)
    /// are read, a `\u` escape or a control character is not (`None`).
    pub fn text(&mut self) -> Option<Cow<'a, str>> {
        if !self.eat(b'"') {
            return None;
        }
        let s = self.bytes();
        let start = self.pos;
        let mut i = start + plain_len(s.get(start..)?);
        if s.get(i) == Some(&b'"') {
            self.pos = i + 1;
            return self.text.get(start..i).map(Cow::Borrowed);
        }
        // Built as text from the pieces between escapes: each piece starts and ends at an
        // ASCII byte of the (valid) input, so no UTF-8 check is needed.
        let mut owned = String::with_capacity(i - start + 16);
        let mut from = start;
        loop {
            match s.get(i)? {
                b'"' => break,
                b'\\' => {
                    owned.push_str(self.text.get(from..i)?);
                    owned.push(unescape(*s.get(i + 1)?)?);
                    i += 2;
                    from = i;
                }
                _ => return None,
            }
            i += plain_len(s.get(i..)?);
        }
        owned.push_str(self.text.get(from..i)?);
        self.pos = i + 1;
        Some(Cow::Owned(owned))
    }

    /// Skips a string that [`text`](Self::text) would read, without building it: for fields
    /// that are checked but never kept (`id`, `system_fingerprint`…), so an escape in one
    /// costs no allocation. Accepts and refuses exactly what `text` does.
    pub fn skip_text(&mut self) -> Option<()> {
        if !self.eat(b'"') {
            return None;
        }
        let s = self.bytes();
        let mut i = self.pos;
        loop {
            i += plain_len(s.get(i..)?);
            match s.get(i)? {
                b'"' => break,
                b'\\' => {
                    unescape(*s.get(i + 1)?)?;
                    i += 2;
                }
                _ => return None,
            }
        }
        self.pos = i + 1;
        Some(())
    }

    /// A string [`skip_text`](Self::skip_text) accepts, or `null`; anything else is `None`.
    pub fn skip_text_or_null(&mut self) -> Option<()> {
        match self.peek()? {
            b'n' => self.literal(b"null"),
            _ => self.skip_text(),
        }
    }

    /// `null`, consumed; `false` (nothing consumed) if the next value is something else.
    pub fn null(&mut self) -> bool {
        let hit = self.peek() == Some(b'n') && self.bytes()[self.pos..].starts_with(b"null");
        if hit {
            self.pos += 4;
        }
        hit
    }

    /// A string, or `null` as `Some(None)`; anything else is `None`, i.e. not sure.
    pub fn text_or_null(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            _ => self.text().map(Some),
        }
    }

    /// A non-negative integer without fraction or exponent that fits a `u64`, or `null`.
    pub fn uint_or_null(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let s = self.bytes();
        let start = self.pos;
        let mut n: u64 = 0;
        let mut i = start;
        while let Some(&b) = s.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            i += 1;
        }
        let digits = i - start;
        // No digits, a leading zero, or a fraction / exponent follows: not ours.
        if digits == 0 || (digits > 1 && s[start] == b'0') || matches!(s.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.pos = i;
        Some(Some(n))
    }

    /// Reads an object, calling `field` with each key, positioned at its value, which
    /// `field` must consume.
    pub fn object(&mut self, field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        self.enter()?;
        if !self.eat(b'}') {
            self.members(field)?;
        }
        self.depth -= 1;
        Some(())
    }

    /// The members of an object from the next key to the closing `}`, consumed.
    fn members(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        loop {
            let start = self.pos;
            let key = self.str()?;
            if !self.eat(b':') {
                return None;
            }
            self.member_start = start;
            field(self, key)?;
            if self.separator(b'}')? {
                return Some(());
            }
        }
    }

    /// Reads an array, calling `element` positioned at each element, which it must consume.
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'[') {
            return None;
        }
        self.enter()?;
        if !self.eat(b']') {
            loop {
                element(self)?;
                if self.separator(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// After a member or element: `,` (`Some(false)`, more follows) or the container's
    /// `close` (`Some(true)`), consumed; anything else is `None`. One whitespace peek for
    /// both, as this runs after every value.
    #[inline]
    fn separator(&mut self, close: u8) -> Option<bool> {
        let b = self.peek()?;
        if b != b',' && b != close {
            return None;
        }
        self.pos += 1;
        Some(b == close)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= SCAN_MAX_DEPTH).then_some(())
    }

    /// Skips any value, checking that it is valid JSON (as `serde_json` checks a value it
    /// ignores: numbers by their grammar, not their range).
    pub fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_text(),
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.array(Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.bytes()[self.pos..].starts_with(word) {
            return None;
        }
        self.pos += word.len();
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let s = self.bytes();
        let mut i = self.pos;
        let digits = |i: &mut usize| {
            let start = *i;
            while s.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - start
        };
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        let first = *s.get(i)?;
        let n = digits(&mut i);
        if n == 0 || (first == b'0' && n > 1) {
            return None;
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        self.pos = i;
        Some(())
    }
}

/// `None` the second time a key is seen (the scanner leaves repeated keys to serde).
pub(crate) fn seen_once(seen: &mut u16, bit: u16) -> Option<()> {
    let first = *seen & bit == 0;
    *seen |= bit;
    first.then_some(())
}

/// A choice's `stop_reason` (vLLM, SGLang) as [`Str`] reads it: the stop string, or `None`
/// for `null` and a token id. Other values (a negative or fractional number, anything
/// else) are left to serde (`None`): a number beyond `f64` is an error there, not "absent".
pub(crate) fn scan_stop_reason<'a>(s: &mut Scan<'a>) -> Option<Option<Cow<'a, str>>> {
    match s.peek()? {
        b'"' => s.text().map(Some),
        _ => s.uint_or_null().map(|_| None),
    }
}

/// The text fields of a `message` or `delta`, borrowed from the input: what the scanner
/// reads of one (tool calls are left to serde). The stream path turns these into events
/// without building a [`MessageWire`], which matters on every chunk.
#[derive(Debug, Default)]
pub(crate) struct MessageText<'a> {
    pub content: Option<Cow<'a, str>>,
    pub reasoning_content: Option<Cow<'a, str>>,
    pub reasoning: Option<Cow<'a, str>>,
    pub refusal: Option<Cow<'a, str>>,
}

/// A `message` or `delta` object of text fields; `None` for tool calls, a repeated key or
/// anything else the scanner leaves to serde.
pub(crate) fn scan_message_text<'a>(s: &mut Scan<'a>) -> Option<MessageText<'a>> {
    let mut m = MessageText::default();
    let mut seen = 0u16;
    s.object(|s, key| {
        match key {
            "content" => {
                seen_once(&mut seen, 1)?;
                m.content = s.text_or_null()?;
            }
            "reasoning_content" => {
                seen_once(&mut seen, 2)?;
                m.reasoning_content = s.text_or_null()?;
            }
            "reasoning" => {
                seen_once(&mut seen, 4)?;
                m.reasoning = s.text_or_null()?;
            }
            "refusal" => {
                seen_once(&mut seen, 8)?;
                m.refusal = s.text_or_null()?;
            }
            // Tool calls take the general path.
            "tool_calls" | "function_call" => {
                if !s.null() {
                    return None;
                }
                seen_once(&mut seen, if key == "tool_calls" { 16 } else { 32 })?;
            }
            _ => s.skip()?,
        }
        Some(())
    })?;
    Some(m)
}

/// [`scan_message_text`] as the [`MessageWire`] serde would have built.
pub(crate) fn scan_message<'a>(s: &mut Scan<'a>) -> Option<MessageWire<'a>> {
    let m = scan_message_text(s)?;
    Some(MessageWire {
        content: m.content.map_or(Content::Empty, Content::Text),
        reasoning_content: Str(m.reasoning_content),
        reasoning: Str(m.reasoning),
        refusal: Str(m.refusal),
        ..MessageWire::default()
    })
}

/// A `…_tokens_details` value of which one count is read: `Some(None)` for `null`, and
/// a missing count reads as absent (`Count(None)`), as serde's defaults have it.
fn details_count(
    s: &mut Scan<'_>,
    wanted: &str,
    count: impl Fn(&mut Scan<'_>) -> Option<Count>,
) -> Option<Option<Count>> {
    if s.null() {
        return Some(None);
    }
    let (mut found, mut once) = (Count::default(), 0u16);
    s.object(|s, key| {
        if key == wanted {
            seen_once(&mut once, 1)?;
            found = count(s)?;
            return Some(());
        }
        s.skip()
    })?;
    Some(Some(found))
}

/// A `usage` value: `null`, or an object of plain counts.
pub(crate) fn scan_usage(s: &mut Scan<'_>) -> Option<Obj<UsageWire>> {
    if s.null() {
        return Some(Obj(None));
    }
    let count =
        |s: &mut Scan<'_>| s.uint_or_null().map(|n| Count(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX))));
    let mut u = UsageWire::default();
    let mut seen = 0u16;
    s.object(|s, key| {
        match key {
            "prompt_tokens" => {
                seen_once(&mut seen, 1)?;
                u.prompt_tokens = count(s)?;
            }
            "completion_tokens" => {
                seen_once(&mut seen, 2)?;
                u.completion_tokens = count(s)?;
            }
            "prompt_tokens_details" => {
                seen_once(&mut seen, 4)?;
                if let Some(cached_tokens) = details_count(s, "cached_tokens", count)? {
                    u.prompt_tokens_details = Obj(Some(PromptDetails { cached_tokens }));
                }
            }
            "completion_tokens_details" => {
                seen_once(&mut seen, 8)?;
                if let Some(reasoning_tokens) = details_count(s, "reasoning_tokens", count)? {
                    u.completion_tokens_details = Obj(Some(CompletionDetails { reasoning_tokens }));
                }
            }
            _ => s.skip()?,
        }
        Some(())
    })?;
    Some(Obj(Some(u)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wrong_shapes_read_as_absent() {
        let c: Obj<ChunkWire<'_>> = serde_json::from_str(
            r#"{"id":7,"model":null,"choices":{"a":1},"usage":[1],"error":null,"detail":null,
                "object":"chat.completion","extra":{"deep":[1,{"x":"y"}]}}"#,
        )
        .unwrap();
        let c = c.0.unwrap();
        assert_eq!((&c.id, &c.model), (&Str(None), &Str(None)));
        assert!(c.choices.0.is_none() && c.usage.0.is_none());
        assert!(!c.error.0 && c.detail.0, "`detail: null` is present, `error: null` is not");
        assert!(c.looks_like_error());
        let top: Obj<CompletionWire<'_>> = serde_json::from_str("[1,2]").unwrap();
        assert!(top.0.is_none());
    }

    /// `skip_text` accepts exactly what `text` reads, and stops at the same place; both
    /// refuse what is not a plain JSON string (unterminated, `\\u`, unknown escapes,
    /// control characters) so that the caller leaves it to serde.
    #[test]
    fn skip_text_accepts_what_text_reads() {
        let cases = [
            (r#""""#, true),
            (r#""plain text, longer than eight bytes""#, true),
            (r#""a\nb\"c\\d\/e\bf\fg\rh\ti""#, true),
            (r#""é ü 😀 \n""#, true),
            (r#"  "spaced""#, true),
            (r#""\u0065""#, false),
            (r#""\x""#, false),
            (r#""trailing\"#, false),
            (r#""trailing\""#, false),
            (r#""unterminated"#, false),
            ("\"tab\there\"", false),
            ("\"nl\nhere\"", false),
            ("\"\u{1f}\"", false),
            ("null", false),
            ("7", false),
            ("", false),
        ];
        for (json, ok) in cases {
            let text = json.to_owned() + ",";
            let (mut a, mut b) = (Scan::new(&text), Scan::new(&text));
            let read = a.text();
            assert_eq!(read.is_some(), ok, "text {json:?}");
            assert_eq!(b.skip_text().is_some(), ok, "skip_text {json:?}");
            if ok {
                assert_eq!(a.pos, b.pos, "{json:?}");
                assert_eq!(a.peek(), Some(b','));
                let value: String = serde_json::from_str(json).unwrap();
                assert_eq!(read.unwrap(), value, "{json:?}");
            }
        }
        let mut s = Scan::new(" null,");
        assert_eq!(s.skip_text_or_null(), Some(()));
        assert_eq!(s.peek(), Some(b','));
        for refused in ["nul", "nulx", "true", "0", "[]", "{}", ""] {
            assert_eq!(Scan::new(refused).skip_text_or_null(), None, "{refused:?}");
        }
    }

    /// Members and elements are separated by one `,` and closed by their own bracket,
    /// whitespace allowed around either; anything else is refused.
    #[test]
    fn separators_between_members_and_elements() {
        let skips = |t: &str| {
            let mut s = Scan::new(t);
            s.skip().and_then(|()| s.end()).is_some()
        };
        for ok in
            [r#"{"a":1,"b":[1 , 2 ,3 ]}"#, "[ ]", "{ }", " [ [ ] , { } ] ", r#"{"a" : { "b" : null } }"#]
        {
            assert!(skips(ok), "{ok:?}");
            serde_json::from_str::<Value>(ok).unwrap();
        }
        for bad in [
            r#"{"a":1,}"#,
            "[1,]",
            "[1;2]",
            "[1}",
            r#"{"a":1]"#,
            r#"{"a":1 "b":2}"#,
            "[1 2]",
            "[1,,2]",
            "[1",
            r#"{"a":1"#,
            r#"{"a":1,"#,
        ] {
            assert!(!skips(bad), "{bad:?}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let s: Str<'_> = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(s.0, Some(Cow::Borrowed("plain"))));
        let s: Str<'_> = serde_json::from_str(r#""a\nb""#).unwrap();
        assert!(matches!(s.0, Some(Cow::Owned(ref o)) if o == "a\nb"));
    }

    #[test]
    fn numbers_like_the_value_accessors() {
        let count = |j: &str| serde_json::from_str::<Count>(j).unwrap().0;
        assert_eq!(count("5"), Some(5));
        assert_eq!(count("5.0"), Some(5));
        assert_eq!(count("5.5"), None);
        assert_eq!(count("-1"), None);
        assert_eq!(count("1e20"), None);
        assert_eq!(count("99999999999"), Some(u32::MAX));
        assert_eq!(count("\"5\""), None);
        let index = |j: &str| serde_json::from_str::<Index>(j).unwrap().0;
        assert_eq!((index("0"), index("0.0"), index("-1"), index("null")), (Some(0), None, None, None));
    }

    #[test]
    fn reads_the_same_from_a_value() {
        let v = json!({"choices":[{"index":0,"message":{"content":[{"type":"text","text":"a"},"b",3],
            "tool_calls":[{"id":"c","function":{"name":"f","arguments":{"x":1}}}]}}]});
        let c = Obj::<CompletionWire<'_>>::deserialize(&v).unwrap().0.unwrap();
        let mut choices = c.choices.0.unwrap();
        let message = choices.remove(0).0.unwrap().message.0.unwrap();
        assert_eq!(message.content.into_text(), "ab");
        let call = message.tool_calls.0.unwrap().remove(0).0.unwrap();
        assert_eq!(call.function.0.unwrap().arguments, Args::Json(json!({"x":1})));
    }
}
