//! Decoding an OpenAI chat-completions SSE stream into [`StreamEvent`]s.

use std::borrow::Cow;

use claudette_core::error::scrub_secrets;
use claudette_core::{
    BackendError, ErrorKind, FinishReason, Frame, Phase, StreamDecoder, StreamEnd, StreamEvent,
    ToolCallDelta, ToolCallSlots, Usage,
};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;

use crate::error::classify_error_value;
use crate::response::finish_reason_with;
use crate::wire::{
    Args, ErrorField, FunctionWire, Index, MessageText, MessageWire, Obj, Scan, Str, UsageWire, is_plain,
    other_is_default, scan_message_text, scan_stop_reason, scan_usage, seen_once,
};

/// Turns `data:` chunks of a chat-completions stream into events, one decoder per stream.
///
/// - Content, reasoning (`reasoning_content` / `reasoning`) and refusal deltas become
///   `TextDelta` / `ReasoningDelta` as they arrive.
/// - Tool-call fragments are passed through one [`ToolCallDelta`] per fragment, keyed by the
///   provider's `index`; `id` and `name` come once, arguments in pieces to concatenate.
/// - `finish_reason` (with vLLM's and SGLang's `stop_reason` beside it, see
///   [`crate::response::finish_reason_with`]) and the usage chunk (`stream_options.include_usage`; `choices` empty,
///   null or absent, or — LiteLLM — beside an empty delta) are remembered for the end.
/// - `data: [DONE]` emits `Done` at once; nothing after it counts, and `finish` is a no-op.
/// - An error object inside the 200 stream (`{"error":…}`, vLLM's `{"object":"error",…}`,
///   an `event: error` frame) is an error classified like the status it names; a data line
///   that is not JSON is `MalformedResponse`.
/// - A body that ends without `[DONE]` is `StreamInterrupted`: a cut connection must never
///   look like a short, complete answer.
///
/// `Done` carries usage with source `Missing` when the server sent none (llama-cpp-python
/// ignores `include_usage`) and cost 0: the I/O layer estimates usage and prices the stream.
///
/// Each chunk is read first by the strict scanner of [`crate::wire::Scan`] (the common chunk:
/// plain strings, `null`, plain integers), else in one serde pass into the per-field lenient
/// types of [`crate::wire`] (no `Value` tree per chunk); a `Value` is built only for an error
/// object, or for a chunk those types refuse (a repeated key), which then reads exactly as it
/// always did. All three readings agree; the tests compare them on generated chunks.
#[derive(Debug, Default)]
pub struct OpenAiStreamDecoder {
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
    prefix: Prefix,
    shape: Shape,
    calls: CallIndexes,
}

/// The index each tool call gets in the events: the upstream's, unless another call has it.
/// Gemini's OpenAI-compatible stream numbers every parallel call 0 (each whole, with its own
/// id), so an index alone would glue two calls into one with `{…}{…}` for arguments; which
/// fragment is which call is [`ToolCallSlots`]'s rule, and a new call whose upstream index is
/// taken gets the next free one.
#[derive(Debug, Default)]
struct CallIndexes {
    calls: ToolCallSlots,
    /// Each call's index in the events, by its position in `calls`.
    ours: Vec<u32>,
}

impl CallIndexes {
    fn remap(&mut self, events: &mut [StreamEvent]) {
        for ev in events {
            if let StreamEvent::ToolCall { delta } = ev {
                delta.index = self.index_of(delta);
            }
        }
    }

    fn index_of(&mut self, delta: &ToolCallDelta) -> u32 {
        let slot = self.calls.place(delta);
        if let Some(&ours) = self.ours.get(slot.position) {
            return ours;
        }
        let ours = if self.ours.contains(&delta.index) {
            self.ours.iter().max().map_or(0, |m| m.saturating_add(1))
        } else {
            delta.index
        };
        self.ours.push(ours);
        ours
    }
}

/// The start of the last chunk the scanner read, up to its `choices` member, and what
/// reading that start gave.
///
/// Why: within a stream, servers repeat the same members before `choices` in every chunk
/// (OpenAI and vLLM: `id`, `object`, `created`, `model`, `system_fingerprint`), about half a
/// content chunk's bytes. A chunk that starts with the same bytes goes on from there with
/// the same state, and the same bytes read the same way ([`Scan::resume_object`]), so the
/// result is the one a full read gives; the equivalence test checks it on generated streams.
#[derive(Debug, Default)]
struct Prefix {
    /// Empty when there is none.
    text: String,
    seen: u16,
    /// `model`'s place in `text` (it was read without escapes, so it can be borrowed from
    /// the next chunk at the same place).
    model: Option<std::ops::Range<usize>>,
    usage: Option<Usage>,
}

/// The last chunk the scanner read that made exactly one text event, split around that
/// text, with the state the chunk left.
///
/// Why: most chunks of a stream are content deltas that differ from the one before only in
/// their text (OpenAI, vLLM, Ollama and llama.cpp repeat every other byte: ids, timestamps,
/// `"logprobs":null,"finish_reason":null`...). A chunk that is this one's `head`, a plain
/// text and this one's `tail` reads as this one did with the new text: the scanner reads a
/// string value without looking at what it holds (this one's was not a key, a model or an
/// `object`: it was the text of the event), so everything around it reads the same. Such a
/// chunk then costs two comparisons and one scan of its text instead of a full read; the
/// equivalence test checks it against full reads on generated streams.
///
/// OpenAI itself ends every delta chunk with `"obfuscation":"…"`, random characters that pad
/// the chunk to hide the text's length. That value is skipped unread, so it may differ too:
/// a shape learnt from such a chunk keeps its tail without it ([`without_padding`]).
#[derive(Debug, Default)]
struct Shape {
    /// The chunk up to and including the text's opening quote; empty when there is none.
    head: String,
    /// From the text's closing quote to the end, or, when `padded`, to the padding member.
    tail: String,
    /// The chunk ended with a padding member: `,"obfuscation":"<plain text>"}`.
    padded: bool,
    /// Whether the event was a `ReasoningDelta` (else a `TextDelta`).
    reasoning: bool,
    /// What the chunk gave [`OpenAiStreamDecoder::note`] besides its text (its finish reason
    /// was none).
    model: Option<String>,
    usage: Option<Usage>,
}

impl Shape {
    /// The text of `data` when `data` is this shape with a plain, non-empty text in place.
    fn text_of<'d>(&self, data: &'d str) -> Option<&'d str> {
        let data = if self.padded { without_padding(data)? } else { data };
        if self.head.is_empty()
            || data.len() <= self.head.len() + self.tail.len()
            || !data.starts_with(self.head.as_str())
            || !data.ends_with(self.tail.as_str())
        {
            return None;
        }
        data.get(self.head.len()..data.len() - self.tail.len()).filter(|text| is_plain(text))
    }

    /// Remembers `data`, read by the scanner into one event whose text is `text` (borrowed
    /// from `data`, unescaped), and what the chunk gave besides.
    fn learn(&mut self, data: &str, text: &str, reasoning: bool, model: &Str<'_>, usage: Option<Usage>) {
        let Some(start) = (text.as_ptr() as usize).checked_sub(data.as_ptr() as usize) else {
            return;
        };
        let end = start + text.len();
        let quoted = |at: usize| data.as_bytes().get(at) == Some(&b'"');
        let (Some(head), Some(tail)) = (data.get(..start), data.get(end..)) else {
            return;
        };
        if start == 0 || !quoted(start - 1) || !quoted(end) {
            return;
        }
        replace(&mut self.head, head);
        self.padded = without_padding(tail).is_some();
        replace(&mut self.tail, without_padding(tail).unwrap_or(tail));
        self.reasoning = reasoning;
        match model.0.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => replace(self.model.get_or_insert_with(String::new), m),
            None => self.model = None,
        }
        self.usage = usage;
    }
}

/// `text` up to its last member when that member is OpenAI's padding and ends the text:
/// `…,"obfuscation":"<no quote, backslash or control character>"}` gives `…`. The value is
/// skipped by every reader, so two chunks that differ only there read the same.
fn without_padding(text: &str) -> Option<&str> {
    const PAD: &str = ",\"obfuscation\":\"";
    let inner = text.strip_suffix("\"}")?;
    let open = inner.rfind('"')?;
    let (member, value) = inner.split_at(open + 1);
    is_plain(value).then_some(())?;
    member.strip_suffix(PAD)
}

/// `to = from`, in `to`'s allocation.
fn replace(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

impl OpenAiStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The model the chunks name (the one that answered), once a chunk has named it.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Usage reported so far (the usage chunk arrives just before `[DONE]`).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether `[DONE]` has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn end(&self) -> StreamEvent {
        StreamEvent::Done {
            end: StreamEnd {
                finish_reason: self.finish_reason.clone(),
                usage: self.usage.unwrap_or_default(),
                cost: 0.0,
            },
        }
    }

    /// A chunk read without error: its effects on the stream's state.
    fn note(&mut self, model: Str<'_>, finish: Option<Finish<'_>>, usage: Option<Usage>) {
        if let Some(model) = model.non_empty() {
            if self.model.as_deref() != Some(&*model) {
                self.model = Some(model.into_owned());
            }
        }
        if let Some(finish) = finish {
            self.finish_reason = Some(finish_reason_with(&finish.reason, finish.stop.as_deref()));
        }
        if let Some(usage) = usage {
            self.usage = Some(usage);
        }
    }

    /// A chunk read by the general reader without error: its effects, and its events
    /// appended to `out`.
    fn apply(&mut self, mut chunk: ChunkRead<'_>, out: &mut Vec<StreamEvent>) {
        self.note(chunk.model, chunk.finish_reason, chunk.usage);
        out.append(&mut chunk.events);
    }

    /// A parsed `data:` line: an error object is an error, an `event: error` frame is one
    /// whatever it holds, anything but an object is malformed, and a chunk yields its events.
    /// `value` is the line as a `Value` when the caller already built one.
    fn read(
        &mut self,
        chunk: Option<ChunkRead<'_>>,
        value: Option<&Value>,
        data: &str,
        is_error_event: bool,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        if chunk.as_ref().is_some_and(ChunkRead::looks_like_error) {
            // The rare path: an error object, classified from a `Value` like any other.
            let parsed;
            let value = match value {
                Some(v) => v,
                None => {
                    parsed = serde_json::from_str::<Value>(data)
                        .map_err(|e| unreadable(data, &e, is_error_event))?;
                    &parsed
                }
            };
            if let Some(err) = classify_error_value(value) {
                return Err(err.with_phase(Phase::Body));
            }
        }
        if is_error_event {
            return Err(error_event(data));
        }
        let Some(chunk) = chunk else {
            return Err(BackendError::malformed(format!(
                "stream chunk is not a JSON object: `{}`",
                snippet(data, 120)
            ))
            .with_phase(Phase::Body));
        };
        self.apply(chunk, out);
        Ok(())
    }
}

/// A choice's `finish_reason`, and the `stop_reason` the same choice sent beside it (vLLM,
/// SGLang): read together, so a later choice-0 entry replaces both.
#[derive(Debug)]
pub(crate) struct Finish<'a> {
    reason: Cow<'a, str>,
    stop: Option<Cow<'a, str>>,
}

/// One stream chunk read in a single pass, straight into what the decoder needs: the events
/// of choice 0 in order, the last finish reason, the usage, the model, and whether the object
/// is an error object. Nothing is applied to the decoder's state until the whole chunk has
/// been read and found not to be an error.
///
/// Hand-written rather than derived (the per-field leaves of [`crate::wire`] are reused):
/// this runs on every chunk of every stream, and the derived `Completion<DeltaChoice>` paid
/// for a `Vec` of choices, a boxed delta and several moves of large structs per chunk. The
/// semantics are those of the derived types, field by field, including that a repeated known
/// key is refused (the caller then re-reads the chunk from a `Value`, last key wins).
#[derive(Debug, Default)]
pub(crate) struct ChunkRead<'a> {
    model: Str<'a>,
    events: Vec<StreamEvent>,
    finish_reason: Option<Finish<'a>>,
    usage: Option<Usage>,
    error: bool,
    object_is_error: bool,
    type_is_error: bool,
    detail: bool,
}

impl ChunkRead<'_> {
    /// Whether [`crate::error_fields`] would read this object as an error: an `error` object
    /// or string, `object`/`type` `"error"` (vLLM, SGLang), or a `detail` (FastAPI).
    fn looks_like_error(&self) -> bool {
        self.error || self.object_is_error || self.type_is_error || self.detail
    }
}

/// A top-level chunk: `None` when the JSON value is not an object.
#[derive(Default)]
pub(crate) struct TopChunk<'a>(pub Option<ChunkRead<'a>>);

#[derive(Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChunkKey {
    Id,
    Model,
    Choices,
    Usage,
    Error,
    Object,
    #[serde(rename = "type")]
    Type,
    Detail,
    #[serde(other)]
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChoiceKey {
    Index,
    Delta,
    FinishReason,
    StopReason,
    #[serde(other)]
    Other,
}

/// Refuses a second occurrence of a known key, as a derived struct does.
fn once<E: de::Error>(seen: &mut u16, bit: u16, name: &'static str) -> Result<(), E> {
    if *seen & bit != 0 {
        return Err(E::duplicate_field(name));
    }
    *seen |= bit;
    Ok(())
}

impl<'de: 'a, 'a> Deserialize<'de> for TopChunk<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TopChunk<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut r = ChunkRead::default();
                let mut seen = 0u16;
                while let Some(key) = map.next_key::<ChunkKey>()? {
                    match key {
                        ChunkKey::Id => {
                            once(&mut seen, 1, "id")?;
                            // Read as the derived `Completion` read it (a number is parsed,
                            // so an out-of-range one is an error, as it was).
                            map.next_value::<Str<'_>>()?;
                        }
                        ChunkKey::Model => {
                            once(&mut seen, 2, "model")?;
                            r.model = map.next_value()?;
                        }
                        ChunkKey::Choices => {
                            once(&mut seen, 4, "choices")?;
                            map.next_value_seed(Choices {
                                events: &mut r.events,
                                finish: &mut r.finish_reason,
                            })?;
                        }
                        ChunkKey::Usage => {
                            once(&mut seen, 8, "usage")?;
                            r.usage =
                                map.next_value::<Obj<UsageWire>>()?.0.as_ref().and_then(UsageWire::to_usage);
                        }
                        ChunkKey::Error => {
                            once(&mut seen, 16, "error")?;
                            r.error = map.next_value::<ErrorField>()?.0;
                        }
                        ChunkKey::Object => {
                            once(&mut seen, 32, "object")?;
                            r.object_is_error = map.next_value::<Str<'_>>()?.0.as_deref() == Some("error");
                        }
                        ChunkKey::Type => {
                            once(&mut seen, 64, "type")?;
                            r.type_is_error = map.next_value::<Str<'_>>()?.0.as_deref() == Some("error");
                        }
                        ChunkKey::Detail => {
                            once(&mut seen, 128, "detail")?;
                            map.next_value::<IgnoredAny>()?;
                            r.detail = true;
                        }
                        ChunkKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(TopChunk(Some(r)))
            }
            other_is_default!(bool, i64, u64, f64, str, unit, seq);
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// The `choices` array, each choice read and turned into events in place (no `Vec` of
/// choices): anything but an array carries nothing, and so does an element that is not an
/// object.
struct Choices<'o, 'a> {
    events: &'o mut Vec<StreamEvent>,
    finish: &'o mut Option<Finish<'a>>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Choices<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Choices<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Choice { events: &mut *self.events, finish: &mut *self.finish })?
            .is_some()
        {}
        Ok(())
    }
    other_is_default!(bool, i64, u64, f64, str, unit, map);
}

/// One choice: read whole (its `index` may come after its `delta`), then, if it is choice 0
/// (or unnumbered), its delta's events are appended and its finish reason kept.
struct Choice<'o, 'a> {
    events: &'o mut Vec<StreamEvent>,
    finish: &'o mut Option<Finish<'a>>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Choice<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Choice<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut index = Index::default();
        let mut delta: Obj<MessageWire<'a>> = Obj::default();
        let mut finish: Str<'a> = Str::default();
        let mut stop: Str<'a> = Str::default();
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<ChoiceKey>()? {
            match key {
                ChoiceKey::Index => {
                    once(&mut seen, 1, "index")?;
                    index = map.next_value()?;
                }
                ChoiceKey::Delta => {
                    once(&mut seen, 2, "delta")?;
                    delta = map.next_value()?;
                }
                ChoiceKey::FinishReason => {
                    once(&mut seen, 4, "finish_reason")?;
                    finish = map.next_value()?;
                }
                ChoiceKey::StopReason => {
                    once(&mut seen, 8, "stop_reason")?;
                    stop = map.next_value()?;
                }
                ChoiceKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // We never ask for n > 1; a server that numbers choices gets only choice 0 read.
        if index.0.is_none_or(|i| i == 0) {
            if let Some(mut delta) = delta.0 {
                delta_events(&mut delta, self.events);
            }
            if let Some(reason) = finish.0 {
                *self.finish = Some(Finish { reason, stop: stop.0 });
            }
        }
        Ok(())
    }
    other_is_default!(bool, i64, u64, f64, str, unit, seq);
}

/// What the scanner keeps of a chunk besides its events (which it appends straight to the
/// caller's list, so a plain content chunk costs no allocation but its event's text). No
/// error flags: the scanner leaves anything that may be an error object to serde.
#[derive(Debug, Default)]
struct ScannedChunk<'a> {
    model: Str<'a>,
    finish_reason: Option<Finish<'a>>,
    usage: Option<Usage>,
    lone: Lone<'a>,
}

/// The texts the events of a chunk's choice-0 deltas were made of, as far as [`Shape`]
/// needs them: none, one read without unescaping, or anything else.
#[derive(Debug, Default, Clone, Copy)]
enum Lone<'a> {
    #[default]
    None,
    /// The text and whether it was reasoning.
    One(&'a str, bool),
    Many,
}

impl<'a> Lone<'a> {
    /// Counts in the texts [`text_events`] makes events of from `delta`, chosen the same way.
    fn add(&mut self, delta: &MessageText<'a>) {
        let non_empty = |t: &&Cow<'a, str>| !t.is_empty();
        let reasoning = delta.reasoning_content.as_ref().or(delta.reasoning.as_ref()).filter(non_empty);
        let content = delta.content.as_ref().filter(non_empty);
        let refusal = delta.refusal.as_ref().filter(non_empty);
        let made = [(reasoning, true), (content, false), (refusal, false)];
        let mut made = made.into_iter().filter_map(|(t, r)| t.map(|t| (t, r)));
        *self = match (made.next(), made.next(), *self) {
            (None, _, was) => was,
            (Some((Cow::Borrowed(text), reasoning)), None, Lone::None) => Lone::One(text, reasoning),
            _ => Lone::Many,
        };
    }
}

/// The common chunk read by [`Scan`] without `serde_json`, its events appended to `out`;
/// `None` when the chunk holds anything the scanner is not sure of (an escape, a float where
/// a number is read, tool calls, an error object, a repeated key, invalid text…), and then
/// the caller drops what was appended and [`TopChunk`] reads the chunk. Same result as
/// [`TopChunk`] on everything it accepts: checked by the equivalence tests.
///
/// A chunk that starts like the last one up to `choices` goes on from there (see [`Prefix`]);
/// otherwise a chunk read that far becomes the new `prefix`.
fn scan_chunk_into<'a>(
    data: &'a str,
    prefix: &mut Prefix,
    out: &mut Vec<StreamEvent>,
) -> Option<ScannedChunk<'a>> {
    let mut r = ScannedChunk::default();
    let mut seen = 0u16;
    let resume = match &prefix.model {
        _ if prefix.text.is_empty() || !data.starts_with(prefix.text.as_str()) => None,
        None => Some(prefix.text.len()),
        Some(range) => data.get(range.clone()).map(|model| {
            r.model = Str(Some(Cow::Borrowed(model)));
            prefix.text.len()
        }),
    };
    if resume.is_some() {
        seen = prefix.seen;
        r.usage = prefix.usage;
    }
    // The state just before `choices`, when the chunk was read from its start.
    let mut before_choices = None;
    let mut field = |s: &mut Scan<'a>, key: &'a str| -> Option<()> {
        match key {
            "id" => {
                seen_once(&mut seen, 1)?;
                // Never read: checked as the string (or null) serde would accept, not kept.
                s.skip_text_or_null()?;
            }
            "model" => {
                seen_once(&mut seen, 2)?;
                r.model = Str(s.text_or_null()?);
            }
            "choices" => {
                if resume.is_none() && seen & 4 == 0 {
                    before_choices = Some((s.member_start(), seen, place_in(data, &r.model), r.usage));
                }
                seen_once(&mut seen, 4)?;
                if !s.null() {
                    s.array(|s| scan_choice(s, out, &mut r.finish_reason, &mut r.lone))?;
                }
            }
            "usage" => {
                seen_once(&mut seen, 8)?;
                r.usage = scan_usage(s)?.0.as_ref().and_then(UsageWire::to_usage);
            }
            // Error objects take the general path.
            "error" => {
                seen_once(&mut seen, 64)?;
                if !s.null() {
                    return None;
                }
            }
            "object" | "type" => {
                seen_once(&mut seen, if key == "object" { 16 } else { 32 })?;
                if s.text_or_null()?.as_deref() == Some("error") {
                    return None;
                }
            }
            "detail" => return None,
            _ => s.skip()?,
        }
        Some(())
    };
    let read = match resume {
        Some(at) => Scan::resume_object(data, at, &mut field),
        None => {
            let mut s = Scan::new(data);
            s.object(&mut field).map(|()| s)
        }
    };
    // Kept even if the rest of the chunk is not the scanner's: its start was.
    if let Some((at, seen, Some(model), usage)) = before_choices {
        if let Some(text) = data.get(..at).filter(|t| t.len() > 1) {
            prefix.text.clear();
            prefix.text.push_str(text);
            (prefix.seen, prefix.model, prefix.usage) = (seen, model, usage);
        }
    }
    read?.end()?;
    Some(r)
}

/// Where a borrowed `model` lies in `data`: `Some(None)` for none, `None` for a model that
/// was unescaped into its own string (it cannot be borrowed from the next chunk).
fn place_in(data: &str, model: &Str<'_>) -> Option<Option<std::ops::Range<usize>>> {
    match &model.0 {
        None => Some(None),
        Some(Cow::Borrowed(m)) => {
            let start = (m.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
            Some(Some(start..start + m.len()))
        }
        Some(Cow::Owned(_)) => None,
    }
}

/// [`scan_chunk_into`] in the shape the general reader gives, so that tests compare the two
/// readers field by field.
#[cfg(test)]
fn scan_chunk(data: &str) -> Option<ChunkRead<'_>> {
    let mut events = Vec::new();
    let c = scan_chunk_into(data, &mut Prefix::default(), &mut events)?;
    Some(ChunkRead {
        model: c.model,
        events,
        finish_reason: c.finish_reason,
        usage: c.usage,
        ..ChunkRead::default()
    })
}

fn scan_choice<'a>(
    s: &mut Scan<'a>,
    events: &mut Vec<StreamEvent>,
    finish: &mut Option<Finish<'a>>,
    lone: &mut Lone<'a>,
) -> Option<()> {
    let (mut index, mut delta, mut reason, mut stop, mut seen) = (None, None, None, None, 0u16);
    s.object(|s, key| {
        match key {
            "index" => {
                seen_once(&mut seen, 1)?;
                index = s.uint_or_null()?;
            }
            "delta" => {
                seen_once(&mut seen, 2)?;
                if !s.null() {
                    delta = Some(scan_message_text(s)?);
                }
            }
            "finish_reason" => {
                seen_once(&mut seen, 4)?;
                reason = s.text_or_null()?;
            }
            "stop_reason" => {
                seen_once(&mut seen, 8)?;
                stop = scan_stop_reason(s)?;
            }
            _ => s.skip()?,
        }
        Some(())
    })?;
    if index.is_none_or(|i| i == 0) {
        if let Some(delta) = delta {
            lone.add(&delta);
            text_events(delta, events);
        }
        if let Some(reason) = reason {
            *finish = Some(Finish { reason, stop });
        }
    }
    Some(())
}

/// The events [`delta_events`] makes of the same delta, in its order: reasoning
/// (`reasoning_content`, else `reasoning`, if not empty), content, refusal.
fn text_events(delta: MessageText<'_>, out: &mut Vec<StreamEvent>) {
    let non_empty = |t: &Cow<'_, str>| !t.is_empty();
    if let Some(text) = delta.reasoning_content.or(delta.reasoning).filter(non_empty) {
        out.push(StreamEvent::ReasoningDelta { text: text.into_owned() });
    }
    if let Some(text) = delta.content.filter(non_empty) {
        out.push(StreamEvent::TextDelta { text: text.into_owned() });
    }
    // A streamed refusal is the answer text of a refusing model.
    if let Some(text) = delta.refusal.filter(non_empty) {
        out.push(StreamEvent::TextDelta { text: text.into_owned() });
    }
}

fn delta_events(delta: &mut MessageWire<'_>, out: &mut Vec<StreamEvent>) {
    if let Some(text) = delta.take_reasoning() {
        out.push(StreamEvent::ReasoningDelta { text: text.into_owned() });
    }
    let text = std::mem::take(&mut delta.content).into_text();
    if !text.is_empty() {
        out.push(StreamEvent::TextDelta { text });
    }
    // A streamed refusal is the answer text of a refusing model.
    if let Some(refusal) = std::mem::take(&mut delta.refusal).non_empty() {
        out.push(StreamEvent::TextDelta { text: refusal.into_owned() });
    }
    if let Some(calls) = delta.tool_calls.0.take() {
        for (position, call) in calls.into_iter().enumerate() {
            // A fragment that is not an object carries nothing.
            let Some(call) = call.0 else { continue };
            let index = call
                .index
                .0
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            push_tool_delta(index, call.id, call.function.0, out);
        }
    } else if let Some(function) = delta.function_call.0.take() {
        push_tool_delta(0, Str::default(), Some(*function), out);
    }
}

fn push_tool_delta(index: u32, id: Str<'_>, function: Option<FunctionWire<'_>>, out: &mut Vec<StreamEvent>) {
    let id = id.non_empty().map(Cow::into_owned);
    let (name, arguments) = match function {
        Some(f) => (f.name.non_empty().map(Cow::into_owned), f.arguments),
        None => (None, Args::Absent),
    };
    let arguments = match arguments {
        Args::Text(s) => s.into_owned(),
        Args::Absent => String::new(),
        // Some servers send the whole arguments object at once.
        Args::Json(v) => v.to_string(),
    };
    if id.is_some() || name.is_some() || !arguments.is_empty() {
        out.push(StreamEvent::ToolCall { delta: ToolCallDelta { index, id, name, arguments } });
    }
}

/// A `data:` line that is not JSON: malformed, or in an `event: error` frame that error.
fn unreadable(data: &str, e: &serde_json::Error, is_error_event: bool) -> BackendError {
    if is_error_event {
        return error_event(data);
    }
    BackendError::malformed(format!("stream data is not JSON ({e}): `{}`", snippet(data, 120)))
        .with_phase(Phase::Body)
}

/// An `event: error` frame whose data is no error object we can classify.
fn error_event(data: &str) -> BackendError {
    BackendError::new(ErrorKind::Overloaded, format!("error event: {}", snippet(data, 200)))
        .with_phase(Phase::Body)
}

/// The first `max` bytes of `text`, scrubbed, for error messages about bad data.
fn snippet(text: &str, max: usize) -> String {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = scrub_secrets(&text[..cut]);
    if cut < text.len() {
        s.push('…');
    }
    s
}

impl OpenAiStreamDecoder {
    /// [`StreamDecoder::decode_into`] before tool-call indexes are made unique.
    fn decode_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        if self.done {
            return Ok(());
        }
        let data = frame.data.trim();
        if data == "[DONE]" {
            self.done = true;
            if crate::error::is_abort(self.finish_reason.as_ref()) {
                return Err(crate::error::aborted());
            }
            out.push(self.end());
            return Ok(());
        }
        let is_error_event = frame.event.as_deref() == Some("error");
        if data.is_empty() && !is_error_event {
            return Ok(());
        }
        if !is_error_event {
            if let Some(text) = self.shape.text_of(data) {
                let text = text.to_owned();
                out.push(if self.shape.reasoning {
                    StreamEvent::ReasoningDelta { text }
                } else {
                    StreamEvent::TextDelta { text }
                });
                let shape = &self.shape;
                if let Some(model) = &shape.model {
                    if self.model.as_ref() != Some(model) {
                        self.model = Some(model.clone());
                    }
                }
                if shape.usage.is_some() {
                    self.usage = shape.usage;
                }
                return Ok(());
            }
            let before = out.len();
            if let Some(chunk) = scan_chunk_into(data, &mut self.prefix, out) {
                if let (Lone::One(text, reasoning), None) = (chunk.lone, &chunk.finish_reason) {
                    if out.len() == before + 1 {
                        self.shape.learn(data, text, reasoning, &chunk.model, chunk.usage);
                    }
                }
                self.note(chunk.model, chunk.finish_reason, chunk.usage);
                return Ok(());
            }
            // Not the scanner's to read: what it appended goes, the general reader starts over.
            out.truncate(before);
        }
        match serde_json::from_str::<TopChunk<'_>>(data) {
            Ok(chunk) => self.read(chunk.0, None, data, is_error_event, out),
            Err(_) => {
                // Not JSON, or JSON the typed pass refuses (a repeated key, of which a `Value`
                // keeps the last): the `Value` parser decides, with its message.
                let value: Value =
                    serde_json::from_str(data).map_err(|e| unreadable(data, &e, is_error_event))?;
                let chunk = TopChunk::deserialize(&value).map_err(|e| {
                    BackendError::malformed(format!(
                        "stream chunk cannot be read ({e}): `{}`",
                        snippet(data, 120)
                    ))
                    .with_phase(Phase::Body)
                })?;
                self.read(chunk.0, Some(&value), data, is_error_event, out)
            }
        }
    }
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        let mut out = Vec::new();
        self.decode_into(frame, &mut out)?;
        Ok(out)
    }

    /// Appends a frame's events to `out`; a frame that is an error appends nothing.
    fn decode_into(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let start = out.len();
        let read = self.decode_frame(frame, out);
        self.calls.remap(&mut out[start..]);
        read
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        if self.done {
            return Ok(Vec::new());
        }
        let after = match &self.finish_reason {
            Some(r) => format!(" (after finish_reason `{}`)", r.as_str()),
            None => String::new(),
        };
        Err(BackendError::interrupted(format!("stream ended without [DONE]{after}")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{ChunkWire, Completion};

    fn frame(data: &str) -> Frame {
        Frame { event: None, data: data.to_owned() }
    }

    #[test]
    fn a_repeated_key_reads_like_a_value_last_one_wins() {
        let mut d = OpenAiStreamDecoder::new();
        let events = d
            .decode(&frame(
                r#"{"model":"a","model":"b","choices":[{"index":0,"delta":{"content":"x","content":"y"}}]}"#,
            ))
            .unwrap();
        assert_eq!(events, vec![StreamEvent::text("y")]);
        assert_eq!(d.model(), Some("b"));
    }

    /// (index, id, arguments) of each tool-call event the chunks give.
    fn calls(chunks: &[&str]) -> Vec<(u32, Option<String>, String)> {
        let mut d = OpenAiStreamDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.decode_into(&frame(c), &mut out).unwrap();
        }
        out.into_iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall { delta } => Some((delta.index, delta.id, delta.arguments)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn parallel_calls_sharing_an_upstream_index_get_their_own() {
        let call = |id: &str, args: &str| {
            format!(
                r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"{id}","type":"function","function":{{"name":"w","arguments":"{args}"}}}}]}}}}]}}"#
            )
        };
        // Gemini's OpenAI-compatible stream: every call whole, every call at index 0.
        let gemini = [call("a", "{}"), call("b", "{}"), call("c", "{}")];
        let got = calls(&gemini.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(got.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1, 2]);
        // OpenAI's own: ids once, then id-less fragments at each call's index; unchanged.
        let frag = |i: u32, args: &str| {
            format!(
                r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{i},"function":{{"arguments":"{args}"}}}}]}}}}]}}"#
            )
        };
        let openai = [
            call("a", ""),
            frag(0, "{}"),
            call("b", "").replace(r#""index":0,"id""#, r#""index":1,"id""#),
            frag(1, "{}"),
        ];
        let got = calls(&openai.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(got.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 0, 1, 1]);
        // A repeated id at its own index is the same call.
        let again = [call("a", ""), call("a", "{}")];
        assert_eq!(
            calls(&again.iter().map(String::as_str).collect::<Vec<_>>())
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>(),
            [0, 0]
        );
    }

    #[test]
    fn odd_shapes_in_a_delta_are_skipped_not_fatal() {
        let mut d = OpenAiStreamDecoder::new();
        let events = d
            .decode(&frame(
                r#"{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"a\nb"},7],"refusal":3,
                "tool_calls":[5,{"index":2,"id":"c","function":{"name":"f","arguments":{"b":1,"a":[1]}}}]},
                "finish_reason":null}],"usage":{"prompt_tokens":2.0,"completion_tokens":"3"}}"#,
            ))
            .unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::text("a\nb"),
                StreamEvent::ToolCall {
                    delta: ToolCallDelta {
                        index: 2,
                        id: Some("c".into()),
                        name: Some("f".into()),
                        arguments: r#"{"a":[1],"b":1}"#.into(),
                    },
                },
            ]
        );
        let usage = d.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (2, 0));
    }

    #[test]
    fn choice_index_after_its_delta_still_selects_the_choice() {
        let mut d = OpenAiStreamDecoder::new();
        let events = d
            .decode(&frame(
                r#"{"choices":[{"delta":{"content":"no"},"index":1,"finish_reason":"length"},
                {"delta":{"content":"yes","reasoning":"r"},"finish_reason":"stop","index":0}]}"#,
            ))
            .unwrap();
        assert_eq!(events, vec![StreamEvent::ReasoningDelta { text: "r".into() }, StreamEvent::text("yes")]);
        assert_eq!(d.finish_reason, Some(FinishReason::Stop));
    }

    /// The scanner reads the common chunk shapes itself (the general reader is the fallback,
    /// not the rule): a role chunk, a content chunk, a finish chunk and a usage chunk, as
    /// OpenAI and vLLM send them.
    #[test]
    fn scanner_reads_the_common_chunks() {
        for data in [
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[{"delta":{"content":" How"},"finish_reason":null,"index":0,"logprobs":null}],"created":1700000000,"id":"c","model":"m","object":"chat.completion.chunk"}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        ] {
            assert!(scan_chunk(data).is_some(), "{data}");
        }
        let chunk = scan_chunk(r#"{"model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}"#).unwrap();
        assert_eq!(chunk.events, vec![StreamEvent::text("hi")]);
        let chunk = scan_chunk(r#"{"choices":[{"delta":{"content":"a\n\"b\"\\/\/\t"}}]}"#).unwrap();
        assert_eq!(chunk.events, vec![StreamEvent::text("a\n\"b\"\\//\t")]);
        // `\u` escapes, floats where a count is read, tool calls, repeated keys, bad text: the
        // general reader's.
        for data in [
            r#"{"choices":[{"index":0,"delta":{"content":"\u00e9"}}]}"#,
            r#"{"usage":{"prompt_tokens":9.0}}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[]}}]}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"a":1,}"#,
        ] {
            assert!(scan_chunk(data).is_none(), "{data}");
        }
    }

    /// `decode_into` appends after what the list already holds, and a frame that fails
    /// appends nothing, even when the scanner had read some of its events before leaving it
    /// to the general reader; a frame the general reader then accepts has its events once.
    #[test]
    fn decode_into_appends_only_what_a_frame_yields() {
        let mut d = OpenAiStreamDecoder::new();
        let mut out = vec![StreamEvent::text("before")];
        d.decode_into(&frame(r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#), &mut out).unwrap();
        assert_eq!(out, vec![StreamEvent::text("before"), StreamEvent::text("a")]);
        // Content read by the scanner, then an error object: the frame is an error, no event.
        let err = d
            .decode_into(
                &frame(r#"{"choices":[{"index":0,"delta":{"content":"lost"}}],"error":{"message":"overloaded","type":"server_error","code":503}}"#),
                &mut out,
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded, "{err:?}");
        assert_eq!(out.len(), 2);
        // Content read by the scanner, then a `\u` escape it leaves to serde: one event.
        d.decode_into(
            &frame(r#"{"choices":[{"index":0,"delta":{"content":"b"}}],"model":"\u006d"}"#),
            &mut out,
        )
        .unwrap();
        assert_eq!(out[2..], [StreamEvent::text("b")]);
        assert_eq!(d.model(), Some("m"));
        // Not JSON after a scanned prefix: an error, nothing appended.
        assert!(d.decode_into(&frame(r#"{"choices":[{"delta":{"content":"c"}}],"#), &mut out).is_err());
        assert!(d.decode_into(&Frame { event: Some("error".into()), data: "{}".into() }, &mut out).is_err());
        assert_eq!(out.len(), 3);
        d.decode_into(&frame("[DONE]"), &mut out).unwrap();
        assert!(out[3].is_terminal());
        d.decode_into(&frame(r#"{"choices":[{"delta":{"content":"late"}}]}"#), &mut out).unwrap();
        assert_eq!(out.len(), 4, "nothing counts after [DONE]");
    }

    /// `decode_into` over a stream, one list for all frames, gives what `decode` gives frame
    /// by frame (on generated streams of every shape, errors included).
    #[test]
    fn decode_into_matches_decode() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D, false);
        for stream in 0..300 {
            rng.1 = stream % 2 == 0;
            let (mut a, mut b) = (OpenAiStreamDecoder::new(), OpenAiStreamDecoder::new());
            let (mut all, mut each) = (Vec::new(), Vec::new());
            for _ in 0..8 {
                let mut data = if rng.below(12) == 0 { "[DONE]".to_owned() } else { chunk(&mut rng) };
                if rng.below(4) == 0 {
                    mutate(&mut rng, &mut data);
                }
                let f = frame(&data);
                let into = a.decode_into(&f, &mut all);
                match b.decode(&f) {
                    Ok(events) => {
                        assert!(into.is_ok(), "stream {stream}: {data:?}");
                        each.extend(events);
                    }
                    Err(e) => assert_eq!(into.unwrap_err(), e, "stream {stream}: {data:?}"),
                }
                assert_eq!(all, each, "stream {stream}: {data:?}");
            }
        }
    }

    /// The scanner's `delta` reader and [`text_events`] make the same events as serde's
    /// `MessageWire` and [`delta_events`] on every delta the scanner accepts (generated
    /// deltas, plain and odd, some of them mutated).
    #[test]
    fn scanned_delta_matches_the_serde_reader() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15, true);
        let mut read = 0;
        for case in 0..3000 {
            rng.1 = case % 2 == 0;
            let mut data = delta(&mut rng);
            if rng.below(3) == 0 {
                mutate(&mut rng, &mut data);
            }
            let mut light = Scan::new(&data);
            let Some(light) = scan_message_text(&mut light).filter(|_| light.end().is_some()) else {
                continue;
            };
            let mut full: MessageWire<'_> = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("scanner read what serde refuses ({e}): {data:?}"));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            text_events(light, &mut a);
            delta_events(&mut full, &mut b);
            assert_eq!(a, b, "{data:?}");
            read += 1;
        }
        assert!(read > 500, "{read} deltas read");
        // Reasoning: `reasoning_content` first, even empty (then there is none).
        let mut s = Scan::new(r#"{"reasoning_content":"","reasoning":"r","content":"c","refusal":"no"}"#);
        let mut out = Vec::new();
        text_events(scan_message_text(&mut s).unwrap(), &mut out);
        assert_eq!(out, vec![StreamEvent::text("c"), StreamEvent::text("no")]);
    }

    /// The decoder as it was before chunks were read in one hand-written pass: the derived
    /// `Completion<DeltaChoice>` types, then the same state changes. The reference for
    /// [`hand_written_chunk_reader_matches_the_derived_one`].
    #[derive(Default)]
    struct Reference {
        finish_reason: Option<FinishReason>,
        usage: Option<Usage>,
        model: Option<String>,
        done: bool,
    }

    impl Reference {
        fn chunk(&mut self, chunk: ChunkWire<'_>, out: &mut Vec<StreamEvent>) {
            if let Some(model) = chunk.model.non_empty() {
                if self.model.as_deref() != Some(&*model) {
                    self.model = Some(model.into_owned());
                }
            }
            if let Some(choices) = chunk.choices.0 {
                for choice in
                    choices.into_iter().filter_map(|c| c.0).filter(|c| c.index.0.is_none_or(|i| i == 0))
                {
                    if let Some(mut delta) = choice.delta.0 {
                        delta_events(&mut delta, out);
                    }
                    if let Some(reason) = choice.finish_reason.0 {
                        self.finish_reason =
                            Some(finish_reason_with(&reason, choice.stop_reason.0.as_deref()));
                    }
                }
            }
            if let Some(usage) = chunk.usage.0.as_ref().and_then(UsageWire::to_usage) {
                self.usage = Some(usage);
            }
        }

        fn read(
            &mut self,
            chunk: Obj<ChunkWire<'_>>,
            value: Option<&Value>,
            data: &str,
            is_error_event: bool,
        ) -> Result<Vec<StreamEvent>, BackendError> {
            if chunk.0.as_ref().is_some_and(Completion::looks_like_error) {
                let parsed;
                let value = match value {
                    Some(v) => v,
                    None => {
                        parsed = serde_json::from_str::<Value>(data)
                            .map_err(|e| unreadable(data, &e, is_error_event))?;
                        &parsed
                    }
                };
                if let Some(err) = classify_error_value(value) {
                    return Err(err.with_phase(Phase::Body));
                }
            }
            if is_error_event {
                return Err(error_event(data));
            }
            let Some(chunk) = chunk.0 else {
                return Err(BackendError::malformed(format!(
                    "stream chunk is not a JSON object: `{}`",
                    snippet(data, 120)
                ))
                .with_phase(Phase::Body));
            };
            let mut out = Vec::new();
            self.chunk(chunk, &mut out);
            Ok(out)
        }

        fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
            if self.done {
                return Ok(Vec::new());
            }
            let data = frame.data.trim();
            if data == "[DONE]" {
                self.done = true;
                return Ok(Vec::new());
            }
            let is_error_event = frame.event.as_deref() == Some("error");
            if data.is_empty() && !is_error_event {
                return Ok(Vec::new());
            }
            match serde_json::from_str::<Obj<ChunkWire<'_>>>(data) {
                Ok(chunk) => self.read(chunk, None, data, is_error_event),
                Err(_) => {
                    let value: Value =
                        serde_json::from_str(data).map_err(|e| unreadable(data, &e, is_error_event))?;
                    let chunk = Obj::<ChunkWire<'_>>::deserialize(&value).map_err(|e| {
                        BackendError::malformed(format!(
                            "stream chunk cannot be read ({e}): `{}`",
                            snippet(data, 120)
                        ))
                        .with_phase(Phase::Body)
                    })?;
                    self.read(chunk, Some(&value), data, is_error_event)
                }
            }
        }
    }

    /// xorshift64*: a fixed-seed generator, so a failure names an input that can be replayed.
    /// `plain`: generate the common shape only (likely values, no escapes, no error or tool
    /// fields, no repeated keys), which the scanner reads itself.
    pub(crate) struct Rng(pub u64, pub bool);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// Any JSON value, small, of every kind.
    fn any_value(rng: &mut Rng, depth: u32) -> String {
        match rng.below(if depth > 2 { 7 } else { 9 }) {
            0 => "null".into(),
            1 => rng.pick(&["true", "false"]).into(),
            2 => rng
                .pick(&[
                    "0",
                    "1",
                    "-1",
                    "2.0",
                    "0.5",
                    "1e3",
                    "4294967296",
                    "-0",
                    "1e400",
                    "18446744073709551616",
                    "01",
                ])
                .into(),
            3 | 4 => rng
                .pick(&[r#""""#, r#""stop""#, r#""error""#, r#""a\nb""#, r#""\u00e9x""#, r#""héllo""#])
                .into(),
            5 | 6 => rng.pick(&["[]", "{}", r#"{"x":[1,{"y":null}]}"#]).into(),
            7 => format!("[{},{}]", any_value(rng, depth + 1), any_value(rng, depth + 1)),
            _ => format!(r#"{{"k":{},"text":{}}}"#, any_value(rng, depth + 1), any_value(rng, depth + 1)),
        }
    }

    /// Makes one field's likely value.
    type Gen = dyn Fn(&mut Rng) -> String;

    /// An object of some of `fields` (each with a likely value or any value), in a random
    /// order, now and then with a key twice and an unknown key.
    fn object(rng: &mut Rng, fields: &[(&str, &Gen)]) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (key, likely) in fields {
            if rng.1 && ["error", "detail", "type", "tool_calls", "function_call"].contains(key) {
                continue;
            }
            if rng.below(3) > 0 {
                let value = if rng.1 || rng.below(5) > 0 { likely(rng) } else { any_value(rng, 1) };
                parts.push(format!(r#""{key}":{value}"#));
            }
        }
        if rng.below(4) == 0 {
            let extra =
                if rng.1 { r#"{"x":[1,-2.5e3,true,{"y":null}]}"#.to_owned() } else { any_value(rng, 0) };
            parts.push(format!(r#""extra":{extra}"#));
        }
        if !rng.1 && rng.below(12) == 0 && !parts.is_empty() {
            let again = parts[rng.below(parts.len())].clone();
            parts.push(again);
        }
        for i in (1..parts.len()).rev() {
            parts.swap(i, rng.below(i + 1));
        }
        format!("{{{}}}", parts.join(","))
    }

    fn text(rng: &mut Rng) -> String {
        if rng.1 {
            return rng.pick(&[r#""""#, r#""Hello""#, r#"" wörld""#, "null", r#""a\n\"b\"\\c\/""#]).into();
        }
        rng.pick(&[r#""""#, r#""Hello""#, r#"" wörld""#, r#""a\"b\\n""#, r#""\ud83d\ude00""#]).into()
    }

    fn function(rng: &mut Rng) -> String {
        object(
            rng,
            &[
                ("name", &|r: &mut Rng| r.pick(&[r#""get_weather""#, r#""""#]).into()),
                ("arguments", &|r: &mut Rng| {
                    r.pick(&[r#""{\"city\":""#, r#""""#, r#"{"a":1}"#, "null"]).into()
                }),
            ],
        )
    }

    fn delta(rng: &mut Rng) -> String {
        object(
            rng,
            &[
                ("role", &|_: &mut Rng| r#""assistant""#.into()),
                ("content", &|r: &mut Rng| {
                    if r.below(6) == 0 {
                        format!(r#"[{{"type":"text","text":{}}},{}]"#, text(r), text(r))
                    } else {
                        text(r)
                    }
                }),
                ("reasoning_content", &text),
                ("reasoning", &text),
                ("refusal", &text),
                ("tool_calls", &|r: &mut Rng| {
                    let call = |r: &mut Rng| {
                        object(
                            r,
                            &[
                                ("index", &|r: &mut Rng| r.pick(&["0", "1", "-2"]).into()),
                                ("id", &|r: &mut Rng| r.pick(&[r#""call_1""#, r#""""#]).into()),
                                ("type", &|_: &mut Rng| r#""function""#.into()),
                                ("function", &function),
                            ],
                        )
                    };
                    format!("[{},{}]", call(r), if r.below(2) == 0 { call(r) } else { any_value(r, 1) })
                }),
                ("function_call", &function),
            ],
        )
    }

    fn choice(rng: &mut Rng) -> String {
        object(
            rng,
            &[
                ("index", &|r: &mut Rng| r.pick(&["0", "0", "1", "0.0", r#""0""#, "-1"]).into()),
                ("delta", &delta),
                ("logprobs", &|_: &mut Rng| "null".into()),
                ("finish_reason", &|r: &mut Rng| {
                    r.pick(&["null", r#""stop""#, r#""tool_calls""#, r#""""#, r#""weird""#]).into()
                }),
                // vLLM's and SGLang's: the matched stop string, a stop token's id, or null.
                ("stop_reason", &|r: &mut Rng| {
                    r.pick(&["null", r#""Observation:""#, r#""""#, "128001", r#""a\nb""#, r#""\u00e9""#])
                        .into()
                }),
            ],
        )
    }

    pub(crate) fn chunk(rng: &mut Rng) -> String {
        object(
            rng,
            &[
                ("id", &|_: &mut Rng| r#""chatcmpl-1""#.into()),
                ("object", &|r: &mut Rng| r.pick(&[r#""chat.completion.chunk""#, r#""error""#]).into()),
                ("created", &|_: &mut Rng| "1700000000".into()),
                ("model", &|r: &mut Rng| r.pick(&[r#""m-1""#, r#""m-2""#, r#""""#]).into()),
                ("choices", &|r: &mut Rng| {
                    let n = r.below(4);
                    let items: Vec<String> =
                        (0..n).map(|_| if r.below(8) == 0 { any_value(r, 1) } else { choice(r) }).collect();
                    format!("[{}]", items.join(","))
                }),
                ("usage", &|r: &mut Rng| {
                    object(
                        r,
                        &[
                            ("prompt_tokens", &|r: &mut Rng| r.pick(&["9", "9.0", "-1", "null"]).into()),
                            ("completion_tokens", &|r: &mut Rng| r.pick(&["8", "8.5", "1e2"]).into()),
                            ("prompt_tokens_details", &|r: &mut Rng| {
                                format!(r#"{{"cached_tokens":{}}}"#, r.pick(&["3", "99"]))
                            }),
                            ("completion_tokens_details", &|_: &mut Rng| r#"{"reasoning_tokens":2}"#.into()),
                        ],
                    )
                }),
                ("error", &|r: &mut Rng| {
                    r.pick(&[
                        r#"{"message":"overloaded","type":"server_error","code":503}"#,
                        r#""boom""#,
                        "null",
                    ])
                    .into()
                }),
                ("type", &|r: &mut Rng| r.pick(&[r#""error""#, r#""chunk""#]).into()),
                ("detail", &|r: &mut Rng| r.pick(&[r#""Not Found""#, "null"]).into()),
            ],
        )
    }

    /// The hand-written one-pass chunk reader against the derived reference, on generated
    /// chunks of every shape (wrong types, repeated keys, keys in any order, escapes, error
    /// objects, `event: error` frames, text cut short or spoiled): the same events, the same
    /// errors, the same state after each frame.
    #[test]
    fn hand_written_chunk_reader_matches_the_derived_one() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15, false);
        let (mut compared, mut fast) = (0, 0);
        for stream in 0..1000 {
            let (mut new, mut old) = (OpenAiStreamDecoder::new(), Reference::default());
            rng.1 = stream % 2 == 0;
            for _ in 0..6 {
                let mut data = match rng.below(30) {
                    0 => "[DONE]".to_owned(),
                    1 => any_value(&mut rng, 0),
                    _ => chunk(&mut rng),
                };
                let mut at = rng.below(data.len() + 1);
                while !data.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.below(20) {
                    0 => data.truncate(at),
                    1 => data.insert_str(at, rng.pick(&["x", ",", "}", "\""])),
                    _ => {}
                }
                let event = (rng.below(15) == 0).then(|| "error".to_owned());
                let f = Frame { event, data };
                fast += usize::from(f.event.is_none() && scan_chunk(f.data.trim()).is_some());
                let (a, b) = (new.decode(&f), old.decode(&f));
                let b = match (&a, b) {
                    // The reference does not build the `Done` event (it is not under test).
                    (Ok(a), Ok(b)) if a.iter().any(StreamEvent::is_terminal) => {
                        Ok(b.into_iter().chain(a.iter().filter(|e| e.is_terminal()).cloned()).collect())
                    }
                    (_, b) => b,
                };
                assert_eq!(a, b, "stream {stream}: {f:?}");
                assert_eq!(
                    (&new.model, new.usage, &new.finish_reason, new.done),
                    (&old.model, old.usage, &old.finish_reason, old.done),
                    "stream {stream}: {f:?}"
                );
                compared += 1;
            }
        }
        assert_eq!(compared, 6000);
        // Both paths are exercised: the scanner's and the general one it leaves to.
        assert!((600..5400).contains(&fast), "{fast} of {compared} frames read by the scanner");
    }

    /// Real chunks, as OpenAI, vLLM and llama.cpp send them: the seeds of the mutation test.
    const REAL_CHUNKS: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"choices":[{"delta":{"content":" How"},"finish_reason":null,"index":0,"logprobs":null}],"created":1700000000,"id":"c","model":"m","object":"chat.completion.chunk"}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"id":"chatcmpl-v","object":"chat.completion.chunk","created":1,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":"Observation:"}]}"#,
        r#"{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"reasoning_content":"think\n\"q\""}}],"created":1,"id":"x","model":"qwen","object":"chat.completion.chunk","timings":{"prompt_n":1,"predicted_per_second":-12.5e-3}}"#,
        r#"{ "id" : "c" , "choices" : [ { "index" : 0 , "delta" : { "content" : "é ü\t/" } } ] , "x" : [ true , false , null , -0 , 0.5 , [ ] , { } ] }"#,
    ];

    /// What a mutation puts in: JSON's structural bytes, number bytes, escapes, control
    /// characters, whitespace JSON does not allow, and a multi-byte character.
    const SPECIAL: &[&str] = &[
        "\"",
        "\\",
        ",",
        ":",
        "{",
        "}",
        "[",
        "]",
        "0",
        "1",
        "-",
        "+",
        ".",
        "e",
        "E",
        "n",
        "u",
        " ",
        "\t",
        "\n",
        "\r",
        "\u{b}",
        "\u{c}",
        "\u{0}",
        "\u{1f}",
        "\u{7f}",
        "\u{a0}",
        "é",
        "\\u",
        "\\ud800",
        "null",
        "01",
        "1e400",
        "18446744073709551616",
        "4294967296",
        "-1",
        "\"content\":\"x\",",
        "\"id\":1,",
    ];

    /// One random edit of `data`, at a character boundary: a byte or character replaced,
    /// something inserted or deleted, a piece repeated, or the text cut short.
    pub(crate) fn mutate(rng: &mut Rng, data: &mut String) {
        let mut at = rng.below(data.len() + 1);
        while !data.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + 1 + rng.below(8)).min(data.len());
        while !data.is_char_boundary(end) {
            end += 1;
        }
        match rng.below(6) {
            0 => data.insert_str(at, rng.pick(SPECIAL)),
            1 if at < data.len() => {
                data.replace_range(at..end.max(at + 1).min(data.len()), rng.pick(SPECIAL))
            }
            2 => data.replace_range(at..end, ""),
            3 => {
                let piece = data[at..end].to_owned();
                data.insert_str(end, &piece);
            }
            4 if rng.below(4) == 0 => data.truncate(at),
            _ => {
                // Flip one ASCII byte to another ASCII byte (keeps the text UTF-8).
                if let Some(b) = data.as_bytes().get(at).copied().filter(u8::is_ascii) {
                    let flipped = (b ^ (1 << rng.below(7))) as char;
                    data.replace_range(at..at + 1, flipped.encode_utf8(&mut [0; 4]));
                }
            }
        }
    }

    /// The scanner's contract, checked on one text: whatever it accepts is JSON that the
    /// serde reader reads to the very same chunk, and that the `Value` parser accepts too
    /// (but for a number beyond `f64` in a field nobody reads: serde's typed reader skips
    /// those by their grammar, as the scanner does, so the two readers still agree).
    fn scanner_contract(data: &str) -> bool {
        let Some(scanned) = scan_chunk(data) else { return false };
        match serde_json::from_str::<Value>(data) {
            Ok(value) => assert!(value.is_object(), "{data:?}"),
            Err(e) => assert!(
                e.to_string().contains("number out of range"),
                "scanner accepted non-JSON {data:?}: {e}"
            ),
        }
        let serde = serde_json::from_str::<TopChunk<'_>>(data)
            .unwrap_or_else(|e| panic!("scanner accepted what serde refuses {data:?}: {e}"))
            .0
            .unwrap_or_else(|| panic!("scanner accepted a non-object {data:?}"));
        assert_eq!(format!("{scanned:?}"), format!("{serde:?}"), "{data:?}");
        true
    }

    /// The start of a chunk up to where `choices` comes: `{`, then generated members before
    /// it (ids, model, usage, …, some odd), each followed by `,`.
    fn leading_members(rng: &mut Rng) -> String {
        let head = object(
            rng,
            &[
                ("id", &|r: &mut Rng| r.pick(&[r#""chatcmpl-1""#, r#""a\"b""#, "null"]).into()),
                ("object", &|r: &mut Rng| r.pick(&[r#""chat.completion.chunk""#, r#""error""#]).into()),
                ("created", &|_: &mut Rng| "1700000000".into()),
                ("model", &|r: &mut Rng| {
                    r.pick(&[r#""m-1""#, r#""m\u002d2""#, r#""a\nb""#, r#""""#, "null"]).into()
                }),
                ("system_fingerprint", &|_: &mut Rng| r#""fp_1""#.into()),
                ("usage", &|r: &mut Rng| {
                    r.pick(&[
                        r#"{"prompt_tokens":9,"completion_tokens":8}"#,
                        "null",
                        r#"{"prompt_tokens":1.5}"#,
                    ])
                    .into()
                }),
                ("error", &|_: &mut Rng| "null".into()),
            ],
        );
        // `{…}` → `{…,` (or `{`).
        match head.strip_suffix('}') {
            Some("{") | None => "{".to_owned(),
            Some(open) => format!("{open},"),
        }
    }

    /// `memo` (which remembers what it read) and `whole` (which forgets it before every
    /// chunk) read `data` to the same events, errors and state.
    fn reads_as_if_read_whole(
        memo: &mut OpenAiStreamDecoder,
        whole: &mut OpenAiStreamDecoder,
        data: &str,
        stream: usize,
    ) {
        let f = frame(data);
        (whole.prefix, whole.shape) = (Prefix::default(), Shape::default());
        let (a, b) = (memo.decode(&f), whole.decode(&f));
        assert_eq!(a, b, "stream {stream}: {data}");
        assert_eq!(
            (&memo.model, memo.usage, &memo.finish_reason, memo.done),
            (&whole.model, whole.usage, &whole.finish_reason, whole.done),
            "stream {stream}: {data}"
        );
    }

    /// A chunk that starts like the last one up to `choices` goes on from the remembered
    /// state ([`Prefix`]): on generated streams whose chunks share their leading members (some
    /// chunks mutated anywhere, the shared part included), every frame gives the same events,
    /// errors and state as a decoder that reads every chunk whole.
    #[test]
    fn a_chunk_starting_like_the_last_reads_as_if_read_whole() {
        let mut rng = Rng(0x0F1E_2D3C_4B5A_6978, true);
        let mut resumed = 0;
        for stream in 0..500 {
            rng.1 = stream % 3 != 0;
            let head = leading_members(&mut rng);
            let (mut memo, mut whole) = (OpenAiStreamDecoder::new(), OpenAiStreamDecoder::new());
            for _ in 0..8 {
                let choices = (0..rng.below(3)).map(|_| choice(&mut rng)).collect::<Vec<_>>().join(",");
                let tail = match rng.below(4) {
                    0 => r#","usage":{"prompt_tokens":3,"completion_tokens":4}"#,
                    1 => r#","choices":[]"#,
                    _ => "",
                };
                let mut data = format!(r#"{head}"choices":[{choices}]{tail}}}"#);
                if rng.below(5) == 0 {
                    mutate(&mut rng, &mut data);
                }
                resumed += usize::from(!memo.prefix.text.is_empty() && data.starts_with(&memo.prefix.text));
                reads_as_if_read_whole(&mut memo, &mut whole, &data, stream);
            }
        }
        assert!(resumed > 800, "only {resumed} chunks went on from a remembered start");
    }

    /// A chunk that is the last one-text chunk with another text in place reads as that
    /// one did ([`Shape`]): on generated streams whose chunks share everything but their text
    /// (texts plain, escaped, empty or null; one text or several; some chunks of other
    /// shapes, some mutated anywhere), every frame gives the same events, errors and state as
    /// a decoder that reads every chunk whole.
    #[test]
    fn a_chunk_shaped_like_the_last_reads_as_if_read_whole() {
        let mut rng = Rng(0x7A3B_19C4_D2E8_5F61, true);
        let mut shaped = 0;
        for stream in 0..500 {
            rng.1 = stream % 3 != 0;
            // Half the streams start as a real server's chunks do.
            let top = match stream % 2 {
                0 => r#"{"id":"c-1","object":"chat.completion.chunk","model":"m-1","#.to_owned(),
                _ => leading_members(&mut rng),
            };
            let index = rng.pick(&["", r#""index":0,"#, r#""index":1,"#, r#""index":null,"#]);
            let before = rng.pick(&["", r#""role":"assistant","#, r#""content":"x","#]);
            let key = rng.pick(&["content", "content", "reasoning_content", "reasoning", "refusal"]);
            let after = rng.pick(&["", r#","refusal":null"#, r#","content":"y""#, r#","tool_calls":null"#]);
            let rest = rng.pick(&[
                r#","logprobs":null,"finish_reason":null"#,
                r#","finish_reason":"stop""#,
                r#","finish_reason":null,"stop_reason":null"#,
                r#","finish_reason":null,"stop_reason":"END""#,
                r#","finish_reason":"stop","stop_reason":"END""#,
                "",
            ]);
            let end =
                rng.pick(&["", r#","usage":null"#, r#","model":"m-3""#, r#","usage":{"prompt_tokens":1}"#]);
            // OpenAI's padding ends a chunk with a value that changes every time, in half the
            // streams.
            let padded = stream % 2 == 1;
            let (mut memo, mut whole) = (OpenAiStreamDecoder::new(), OpenAiStreamDecoder::new());
            for _ in 0..10 {
                let padding = match padded {
                    // Plain values, escaped ones, broken ones (a raw quote, a raw control
                    // character, an unknown escape) and one that hides a second member.
                    true => format!(
                        r#","obfuscation":"{}""#,
                        rng.pick(&[
                            "",
                            "aB3",
                            "Zz9Qw_x",
                            r#"q\"r"#,
                            r#"\n"#,
                            r#"q"r"#,
                            "\n",
                            r#"\q"#,
                            "\u{1}",
                            "}",
                            r#"x","obfuscation":"y"#,
                        ])
                    ),
                    false => String::new(),
                };
                let value = match rng.below(8) {
                    0 => text(&mut rng),
                    1 => rng.pick(&[r#""""#, "null", r#""tab\there""#, r#""\u00e9t\u00e9""#]).into(),
                    _ => {
                        format!(r#""{}""#, rng.pick(&["Hello", " world", "!", " wörld", "é", " 1 + 1", "x"]))
                    }
                };
                // Between chunks of the shape, now and then another that changes the state
                // a shaped chunk gives (its model, its usage), or any chunk at all.
                let mut data = if rng.below(6) == 0 {
                    match rng.below(3) {
                        0 => r#"{"model":"m-9","choices":[]}"#.to_owned(),
                        1 => r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#.to_owned(),
                        _ => chunk(&mut rng),
                    }
                } else {
                    format!(
                        r#"{top}"choices":[{{{index}"delta":{{{before}"{key}":{value}{after}}}{rest}}}]{end}{padding}}}"#
                    )
                };
                if rng.below(6) == 0 {
                    mutate(&mut rng, &mut data);
                }
                shaped += usize::from(memo.shape.text_of(data.trim()).is_some());
                reads_as_if_read_whole(&mut memo, &mut whole, &data, stream);
            }
        }
        assert!(shaped > 200, "only {shaped} chunks were read from a remembered shape");
    }

    /// Content deltas in the member orders real servers use are read from the remembered
    /// shape from the second one on: OpenAI/vLLM (`choices` after the ids), llama.cpp
    /// (`choices` first, ids after) and OpenAI's padded chunks.
    #[test]
    fn real_servers_content_deltas_are_read_from_the_shape() {
        let openai = |t: &str| {
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp","choices":[{{"index":0,"delta":{{"content":"{t}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )
        };
        let llama_cpp = |t: &str| {
            format!(
                r#"{{"choices":[{{"finish_reason":null,"index":0,"delta":{{"content":"{t}"}}}}],"created":1,"id":"chatcmpl-2","model":"qwen","system_fingerprint":"b1","object":"chat.completion.chunk"}}"#
            )
        };
        // OpenAI's own chunks end with a padding member of random characters.
        let padded = |t: &str| {
            let chunk = openai(t);
            let pad = "x".repeat(t.len() % 7);
            format!(r#"{},"obfuscation":"{pad}Qz"}}"#, &chunk[..chunk.len() - 1])
        };
        for shape in [&openai as &dyn Fn(&str) -> String, &llama_cpp, &padded] {
            let mut d = OpenAiStreamDecoder::new();
            let mut hits = Vec::new();
            let mut events = Vec::new();
            for t in ["Hel", "lo", " wörld"] {
                let data = shape(t);
                hits.push(d.shape.text_of(&data).is_some());
                events.extend(d.decode(&frame(&data)).unwrap());
            }
            assert_eq!(hits, [false, true, true]);
            assert_eq!(events, ["Hel", "lo", " wörld"].map(StreamEvent::text));
        }
    }

    /// Several thousand random edits of real chunks: every text the scanner accepts obeys
    /// its contract, and the decoder (scanner first) agrees with the derived reference on
    /// every frame, accepted or not.
    #[test]
    fn mutated_real_chunks_never_break_the_scanner_contract() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03, false);
        let (mut accepted, mut total) = (0, 0);
        for case in 0..6000 {
            let mut data = REAL_CHUNKS[case % REAL_CHUNKS.len()].to_owned();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut data);
            }
            accepted += usize::from(scanner_contract(&data));
            total += 1;
            let f = frame(&data);
            let (mut new, mut old) = (OpenAiStreamDecoder::new(), Reference::default());
            let (a, b) = (new.decode(&f), old.decode(&f));
            if a.as_ref().is_ok_and(|a| a.iter().any(StreamEvent::is_terminal)) {
                continue;
            }
            assert_eq!(a, b, "case {case}: {data:?}");
            assert_eq!(
                (&new.model, new.usage, &new.finish_reason),
                (&old.model, old.usage, &old.finish_reason),
                "case {case}: {data:?}"
            );
        }
        // Some edits keep the text readable (a changed letter in a string, added spaces…).
        assert!(accepted > 300 && accepted < total, "{accepted} of {total} mutants accepted");
    }

    /// Hand-picked texts that are not JSON, or JSON the scanner must leave to serde: each is
    /// refused by the scanner; the valid ones still decode through the general reader.
    #[test]
    fn adversarial_texts_are_refused_by_the_scanner() {
        let deep_ok = format!("{{\"x\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        let deep_bad = format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let refused: Vec<String> = [
            // Not JSON.
            "{\"choices\":[{\"delta\":{\"content\":\"a\u{1}b\"}}]}",
            "{\"model\":\"a\nb\"}",
            "{\"x\":\"\u{7}\"}",
            r#"{"id":"x",}"#,
            r#"{"x":[1,]}"#,
            r#"{"x":[,1]}"#,
            r#"{,"x":1}"#,
            r#"{"x" 1}"#,
            r#"{"x":1 "y":2}"#,
            r#"{"x":1}}"#,
            r#"{"x":1}{}"#,
            r#"{"x":1}x"#,
            r#"{"x":01}"#,
            r#"{"x":-01}"#,
            r#"{"x":-}"#,
            r#"{"x":1.}"#,
            r#"{"x":.5}"#,
            r#"{"x":+1}"#,
            r#"{"x":1e}"#,
            r#"{"x":1e+}"#,
            r#"{"x":0x1}"#,
            r#"{"x":Infinity}"#,
            r#"{"x":NaN}"#,
            r#"{"x":tru}"#,
            r#"{"x":nul}"#,
            r#"{"x":nulll}"#,
            r#"{"x":truefalse}"#,
            r#"{"x":'a'}"#,
            r#"{"x":"\a"}"#,
            r#"{"x":"\"}"#,
            r#"{x:1}"#,
            "{\u{b}\"id\":\"x\"}",
            "{\"id\":\u{c}\"x\"}",
            "{\"id\":\u{a0}\"x\"}",
            "\u{feff}{\"id\":\"x\"}",
            r#"{"choices":[{"index":0 1}]}"#,
            r#"{"model":"m""#,
            r#"{"model":"m"#,
            r#"{"model""#,
            "{",
            "",
            "[]",
            "null",
            &deep_bad,
            // JSON, but not the scanner's to read.
            r#"{"choices":[{"index":01}]}"#,
            r#"{"choices":[{"index":-0,"delta":{"content":"x"}}]}"#,
            r#"{"choices":[{"index":1e0,"delta":{"content":"x"}}]}"#,
            r#"{"choices":[{"index":0.0,"delta":{"content":"x"}}]}"#,
            r#"{"choices":[{"index":18446744073709551616,"delta":{"content":"x"}}]}"#,
            r#"{"usage":{"prompt_tokens":1E2}}"#,
            r#"{"usage":{"prompt_tokens":-0}}"#,
            r#"{"mod\u0065l":"m"}"#,
            r#"{"model":"\u006d"}"#,
            r#"{"x":"\ud800"}"#,
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[{"index":0,"index":1}]}"#,
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}}"#,
            r#"{"error":{"message":"x"}}"#,
            r#"{"detail":null}"#,
            r#"{"type":"error"}"#,
            r#"{"object":"error"}"#,
            r#"{"choices":{"index":0}}"#,
            r#"{"choices":[1]}"#,
            r#"{"usage":[]}"#,
            &deep_ok,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for data in &refused {
            assert!(scan_chunk(data).is_none(), "{data:?}");
            // Whatever the general reader makes of it, the decoder and the reference agree.
            let f = frame(data);
            let (a, b) = (OpenAiStreamDecoder::new().decode(&f), Reference::default().decode(&f));
            if !a.as_ref().is_ok_and(|a| a.iter().any(StreamEvent::is_terminal)) {
                assert_eq!(a, b, "{data:?}");
            }
        }
        // The edges it does read, read as serde reads them.
        for data in [
            r#"{"usage":{"prompt_tokens":4294967296,"completion_tokens":18446744073709551615}}"#,
            r#"{"usage":{"prompt_tokens":0,"completion_tokens":null,"prompt_tokens_details":null}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\/\b\f\n\r\t\"\\"}}],"x":-0.0e-0}"#,
            "{\"model\":\"\u{7f}é\u{10ffff}\",\"x\":[1e400]}",
            "{\r\n\t \"model\" :\"m\"\n}",
            r#"{"":"","x":{"":{"":[]}}}"#,
        ] {
            assert!(scanner_contract(data), "{data:?}");
        }
    }
}
