//! Splitting Qwen3's inline `<think>…</think>` block out of the answer text.
//!
//! Servers started without a reasoning parser (vLLM without `--reasoning-parser`, llama.cpp
//! with `--reasoning-format none`, SGLang without `--reasoning-parser`) pass Qwen3's thinking
//! through as ordinary content. With the setting `split_think_tags` the block is moved to
//! where reasoning belongs (`ReasoningDelta`, `ChatResponse::reasoning`), so callers get the
//! same shape as from a server that splits it itself. This works on the events and the
//! parsed response the OpenAI decoder produces; nothing of the wire decoding is redone here.
//!
//! Only a block that *opens* the answer counts (leading whitespace allowed): a `<think>`
//! later in the text is the model writing about tags (code, HTML) and stays content. Templates
//! that put the opening tag in the prompt (the model then emits only `</think>`) are not
//! recognised: telling them apart from an answer that merely mentions `</think>` would mean
//! holding back the whole answer. Use the server's reasoning parser for those.

use claudette_core::{BackendError, ChatResponse, Frame, StreamDecoder, StreamEvent};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing but whitespace and maybe part of `<think>` seen yet.
    Start,
    Thinking,
    /// Just after `</think>`: whitespace is dropped until the answer starts.
    AfterThink,
    /// Plain content from here on.
    Content,
}

/// An incremental `<think>` splitter over text arriving in arbitrary pieces (tags may be cut
/// anywhere, even inside a multi-byte character's neighbours).
#[derive(Debug, Clone)]
pub struct ThinkSplitter {
    phase: Phase,
    /// Text held back because it may be the start of a tag, or whitespace that may turn out
    /// to be the edge of the thinking block.
    pending: String,
    /// Whether reasoning text has been emitted (leading whitespace of the block is dropped).
    thinking_started: bool,
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl ThinkSplitter {
    pub fn new() -> Self {
        Self { phase: Phase::Start, pending: String::new(), thinking_started: false }
    }

    /// Feeds a piece of content; appends the events it settles to `out`.
    pub fn push(&mut self, text: &str, out: &mut Vec<StreamEvent>) {
        self.pending.push_str(text);
        loop {
            match self.phase {
                Phase::Start => {
                    let trimmed = self.pending.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.pending = rest.to_owned();
                        self.phase = Phase::Thinking;
                    } else if OPEN.starts_with(trimmed) {
                        // Whitespace, or a prefix of the tag: wait for more.
                        return;
                    } else {
                        self.phase = Phase::Content;
                        emit_text(std::mem::take(&mut self.pending), out);
                        return;
                    }
                }
                Phase::Thinking => {
                    if !self.thinking_started {
                        let start = self.pending.len() - self.pending.trim_start().len();
                        self.pending.drain(..start);
                    }
                    match self.pending.find(CLOSE) {
                        Some(at) => {
                            let rest = self.pending.split_off(at + CLOSE.len());
                            self.pending.truncate(self.pending[..at].trim_end().len());
                            let thought = std::mem::replace(&mut self.pending, rest);
                            self.emit_reasoning(thought, out);
                            self.phase = Phase::AfterThink;
                        }
                        None => {
                            // Hold back a possible start of `</think>` and trailing whitespace
                            // (it may be the block's last and is then dropped).
                            let tag_start = self.pending.len() - partial_suffix(&self.pending, CLOSE);
                            let ready = self.pending[..tag_start].trim_end().len();
                            let tail = self.pending.split_off(ready);
                            let thought = std::mem::replace(&mut self.pending, tail);
                            self.emit_reasoning(thought, out);
                            return;
                        }
                    }
                }
                Phase::AfterThink => {
                    let answer = self.pending.trim_start();
                    if answer.is_empty() {
                        self.pending.clear();
                        return;
                    }
                    let answer = answer.to_owned();
                    self.pending.clear();
                    self.phase = Phase::Content;
                    emit_text(answer, out);
                    return;
                }
                Phase::Content => {
                    emit_text(std::mem::take(&mut self.pending), out);
                    return;
                }
            }
        }
    }

    fn emit_reasoning(&mut self, text: String, out: &mut Vec<StreamEvent>) {
        if !text.is_empty() {
            self.thinking_started = true;
            out.push(StreamEvent::ReasoningDelta { text });
        }
    }

    /// End of the text: what was held back is released (a stream cut inside the thinking
    /// block leaves it all as reasoning; a lone `<thi` is content).
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let rest = std::mem::take(&mut self.pending);
        match self.phase {
            Phase::Thinking => {
                let end = rest.trim_end().len();
                let mut rest = rest;
                rest.truncate(end);
                self.emit_reasoning(rest, out);
            }
            Phase::AfterThink => {}
            Phase::Start | Phase::Content => emit_text(rest, out),
        }
        self.phase = Phase::Content;
    }
}

fn emit_text(text: String, out: &mut Vec<StreamEvent>) {
    if !text.is_empty() {
        out.push(StreamEvent::TextDelta { text });
    }
}

/// Length of the longest proper suffix of `text` that is a prefix of `tag` (bytes; the tags
/// are ASCII, so the cut is always on a character boundary).
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len()).rev().find(|&n| text.ends_with(&tag[..n])).unwrap_or(0)
}

/// Splits a complete answer: `(reasoning, content)`; `reasoning` is `None` when the text does
/// not open with a think block. The same state machine as for streams, so both agree.
pub fn split_think(text: &str) -> (Option<String>, String) {
    let mut splitter = ThinkSplitter::new();
    let mut events = Vec::new();
    splitter.push(text, &mut events);
    splitter.finish(&mut events);
    let mut reasoning: Option<String> = None;
    let mut content = String::new();
    for event in events {
        match event {
            StreamEvent::ReasoningDelta { text } => reasoning.get_or_insert_with(String::new).push_str(&text),
            StreamEvent::TextDelta { text } => content.push_str(&text),
            _ => {}
        }
    }
    (reasoning, content)
}

/// Moves a leading think block of `response.content` into `response.reasoning` (appended
/// after reasoning the server already split, if any).
pub fn split_response(response: &mut ChatResponse) {
    let (thinking, content) = split_think(&response.content);
    if let Some(thinking) = thinking {
        response.content = content;
        match &mut response.reasoning {
            Some(r) => r.push_str(&thinking),
            None => response.reasoning = Some(thinking),
        }
    }
}

/// A [`StreamDecoder`] that runs another decoder's text deltas through a [`ThinkSplitter`].
/// Everything else (reasoning the server split, tool calls, usage, the end) passes through;
/// held-back text is released before the closing `Done`.
pub struct ThinkTagDecoder {
    inner: Box<dyn StreamDecoder>,
    splitter: ThinkSplitter,
}

impl std::fmt::Debug for ThinkTagDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThinkTagDecoder").field("splitter", &self.splitter).finish_non_exhaustive()
    }
}

impl ThinkTagDecoder {
    pub fn new(inner: Box<dyn StreamDecoder>) -> Self {
        Self { inner, splitter: ThinkSplitter::new() }
    }

    fn split(&mut self, events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            match event {
                StreamEvent::TextDelta { text } => self.splitter.push(&text, &mut out),
                done @ StreamEvent::Done { .. } => {
                    self.splitter.finish(&mut out);
                    out.push(done);
                }
                other => out.push(other),
            }
        }
        out
    }
}

impl StreamDecoder for ThinkTagDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        let events = self.inner.decode(frame)?;
        Ok(self.split(events))
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        let events = self.inner.finish()?;
        Ok(self.split(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> (String, String) {
        let mut s = ThinkSplitter::new();
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, &mut out);
        }
        s.finish(&mut out);
        let mut reasoning = String::new();
        let mut text = String::new();
        for e in out {
            match e {
                StreamEvent::ReasoningDelta { text: t } => reasoning.push_str(&t),
                StreamEvent::TextDelta { text: t } => text.push_str(&t),
                _ => unreachable!(),
            }
        }
        (reasoning, text)
    }

    #[test]
    fn whole_block_is_split() {
        assert_eq!(
            run(&["<think>\nplan\n more \n</think>\n\nAnswer"]),
            ("plan\n more".into(), "Answer".into())
        );
        // Qwen3 with thinking off still emits an empty block.
        assert_eq!(run(&["<think>\n\n</think>\n\n", "Answer"]), (String::new(), "Answer".into()));
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let whole = "  <think>\n héllo <b> \n 思考 \n</think>\n\nthe <think> answer</think>";
        let expect = run(&[whole]);
        assert_eq!(expect, ("héllo <b> \n 思考".into(), "the <think> answer</think>".into()));
        let chars: Vec<(usize, char)> = whole.char_indices().collect();
        for (i, _) in &chars {
            for (j, _) in chars.iter().filter(|(j, _)| j >= i) {
                let parts = [&whole[..*i], &whole[*i..*j], &whole[*j..]];
                assert_eq!(run(&parts), expect, "split at {i}/{j}");
            }
        }
    }

    #[test]
    fn text_without_a_leading_block_is_untouched() {
        assert_eq!(run(&["  Hello <think>x</think>"]), (String::new(), "  Hello <think>x</think>".into()));
        assert_eq!(run(&["<thi"]), (String::new(), "<thi".into()));
        assert_eq!(run(&["<thinking>"]), (String::new(), "<thinking>".into()));
        assert_eq!(run(&[""]), (String::new(), String::new()));
    }

    #[test]
    fn cut_inside_the_block_is_reasoning() {
        assert_eq!(run(&["<think>still thinking</thi"]), ("still thinking</thi".into(), String::new()));
        assert_eq!(run(&["<think> still ", "thinking "]), ("still thinking".into(), String::new()));
    }
}
