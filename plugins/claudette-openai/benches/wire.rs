//! The OpenAI wire code on the hot path of every OpenAI-compatible request: encoding a chat
//! request, reading a completion, decoding a stream.
//!
//! `cargo bench -p claudette-openai --bench wire` runs them with divan. The inputs are the
//! shapes a real exchange has (a short conversation with one tool, an answer of a few hundred
//! characters with newlines, a 12-frame stream ending in a usage chunk and `[DONE]`), built
//! once outside the timed loop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{
    BackendSettings, ChatRequest, Frame, Framing, Message, ProviderAdapter, StreamDecoder, StreamParser,
    ToolSpec,
};
use claudette_openai::{OpenAiAdapter, OpenAiStreamDecoder, parse_chat_completion};
use serde_json::json;

fn main() {
    divan::main();
}

const ANSWER: &str = "Paris is the capital of France.\n\nIt sits on the Seine in the north of the \
    country and has been the seat of government for most of the last millennium. The city \
    proper has about 2.1 million inhabitants; the metropolitan area about 12 million.\n\n\
    - Famous for: the Eiffel Tower, the Louvre, Notre-Dame\n- Airports: CDG, Orly\n\
    Anything else you would like to know about it?";

fn request() -> ChatRequest {
    let mut req = ChatRequest::new(vec![
        Message::system(
            "You are a concise assistant. Answer in plain English, cite no sources, and use a \
             tool when the user asks for live data such as the weather.",
        ),
        Message::user("What is the capital of France, and what is it known for?"),
        Message::assistant(ANSWER),
        Message::user("And the weather there right now?"),
    ])
    .with_max_tokens(512)
    .with_temperature(0.7);
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        cache: None,
        strict: false,
    }];
    req
}

fn adapter() -> OpenAiAdapter {
    OpenAiAdapter::new(
        &BackendSettings::new("bench").base_url("http://127.0.0.1:8000/v1").model("gpt-4o-mini"),
    )
    .expect("adapter")
}

/// `build_request`: the body encoding plus the URL and headers, as the I/O layer calls it.
#[divan::bench(args = [false, true])]
fn build_request(bencher: divan::Bencher, stream: bool) {
    let adapter = adapter();
    let req = request();
    bencher.bench(|| adapter.build_request(divan::black_box(&req), stream).map(|r| r.body.map(|b| b.len())));
}

/// `parse_chat_completion` of a typical non-stream answer (extra fields included, as servers
/// send them).
#[divan::bench]
fn parse_response(bencher: divan::Bencher) {
    let body = json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1_741_570_283,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 1117, "completion_tokens": 86, "total_tokens": 1203,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    })
    .to_string()
    .into_bytes();
    bencher.bench(|| {
        parse_chat_completion(divan::black_box(&body), "bench", "gpt-4o-mini").map(|r| r.content.len())
    });
}

/// Twelve frames: a role chunk, eight content chunks, a finish chunk, the usage chunk
/// (`include_usage`: empty choice list), then `[DONE]`.
fn stream_frames() -> Vec<Frame> {
    let head = |delta: serde_json::Value, finish: serde_json::Value| {
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
            "created": 1_741_570_283, "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_06737a9306",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        })
        .to_string()
    };
    let mut data = vec![head(json!({"role": "assistant", "content": "", "refusal": null}), json!(null))];
    let words: Vec<&str> = ANSWER.split_inclusive(' ').collect();
    for i in 0..8 {
        let piece = words[i * words.len() / 8..(i + 1) * words.len() / 8].concat();
        data.push(head(json!({ "content": piece }), json!(null)));
    }
    data.push(head(json!({}), json!("stop")));
    data.push(
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
            "created": 1_741_570_283, "model": "gpt-4o-mini-2024-07-18", "choices": [],
            "usage": {"prompt_tokens": 1117, "completion_tokens": 86, "total_tokens": 1203,
                "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 0}}
        })
        .to_string(),
    );
    data.push("[DONE]".to_owned());
    assert_eq!(data.len(), 12);
    data.into_iter().map(|data| Frame { event: None, data }).collect()
}

/// One stream's frames through a fresh decoder, as the I/O layer feeds them.
#[divan::bench]
fn decode_stream(bencher: divan::Bencher) {
    let frames = stream_frames();
    bencher.bench(|| {
        let mut decoder = OpenAiStreamDecoder::new();
        let mut events = 0;
        for frame in divan::black_box(&frames) {
            events += decoder.decode(frame).map_or(0, |e| e.len());
        }
        events
    });
}

/// [`decode_stream`] through `decode_into` with one event list for the whole stream, as
/// [`StreamParser`] calls the decoder: no list allocated per frame.
#[divan::bench]
fn decode_stream_into(bencher: divan::Bencher) {
    let frames = stream_frames();
    bencher.bench(|| {
        let mut decoder = OpenAiStreamDecoder::new();
        let mut events = Vec::new();
        for frame in divan::black_box(&frames) {
            let _ = decoder.decode_into(frame, &mut events);
        }
        events.len()
    });
}

/// The same stream as body bytes through a [`StreamParser`] (framer, decoder, the stream
/// contract), in one piece as a small upstream answer arrives: what the gateway pays per
/// streamed request.
#[divan::bench]
fn parse_stream(bencher: divan::Bencher) {
    let body: String = stream_frames().iter().map(|f| format!("data: {}\n\n", f.data)).collect();
    bencher.bench(|| {
        let parser = StreamParser::new(Framing::Sse, Box::new(OpenAiStreamDecoder::new()));
        parser.parse_all(divan::black_box(body.as_bytes()), body.len()).len()
    });
}

/// The floor under `decode_stream`: serde_json only tokenizing each frame (`IgnoredAny`), no
/// field read. What is above it is the decoder's own cost.
#[divan::bench]
fn floor_ignored_any(bencher: divan::Bencher) {
    let frames = stream_frames();
    bencher.bench(|| {
        let mut n = 0;
        for frame in divan::black_box(&frames) {
            n += usize::from(serde_json::from_str::<serde::de::IgnoredAny>(&frame.data).is_ok());
        }
        n
    });
}
