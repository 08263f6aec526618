//! Checking decoded streams: what every provider's fixture and fault suites ask of a list of
//! [`StreamEvent`]s, written once.

use claudette_core::{BackendError, StreamEvent, StreamParser};

/// Runs `bytes` through `parser` `chunk` bytes at a time, exactly as the I/O layer pushes them,
/// and splits off the terminal error: the events before it, and the error if the stream ended
/// in one.
pub fn decode_split(
    parser: StreamParser,
    bytes: &[u8],
    chunk: usize,
) -> (Vec<StreamEvent>, Option<BackendError>) {
    let mut events = parser.parse_all(bytes, chunk);
    match events.pop() {
        Some(StreamEvent::Error { error }) => (events, Some(error)),
        Some(last) => {
            events.push(last);
            (events, None)
        }
        None => (events, None),
    }
}

/// The answer text of a stream: its text deltas, joined.
pub fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The events with every tool-call id replaced by `<id>`: providers that generate ids make
/// them differ from run to run, and everything else must still compare equal.
pub fn without_ids(events: &[StreamEvent]) -> Vec<StreamEvent> {
    events
        .iter()
        .cloned()
        .map(|e| match e {
            StreamEvent::ToolCall { mut delta } => {
                delta.id = delta.id.map(|_| "<id>".into());
                StreamEvent::ToolCall { delta }
            }
            other => other,
        })
        .collect()
}
