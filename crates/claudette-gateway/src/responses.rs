//! `POST /v1/responses`: OpenAI's Responses API (what Codex CLI, the OpenAI Agents SDK and
//! `client.responses.create()` speak) in front of every backend, stateless.
//!
//! ## Served
//!
//! - `input`: a string (one user message) or a list of items: messages (`user`, `assistant`,
//!   `system`, `developer`; content a string or `input_text` / `output_text` / `refusal`
//!   parts, and in user messages `input_image` and `input_file` parts, carried where they
//!   stood among the text to backends that take images; with or without `"type": "message"`),
//!   `function_call` and `custom_tool_call` items (the assistant's tool calls),
//!   `function_call_output` and `custom_tool_call_output` items (their results; `output` a
//!   string or a list of `input_text`, `input_image` and `input_file` parts, so a tool that
//!   took a screenshot or read a PDF can show it) and `reasoning` items carrying this
//!   gateway's `encrypted_content`, so a
//!   client can run a tool loop by sending the whole conversation each turn. `instructions`
//!   becomes the first system message. An `input_file` is a PDF: `file_data` a
//!   `data:application/pdf;base64,…` URL, or `file_url` an `http(s)` URL the provider fetches
//!   (the gateway never does); its `filename` is kept as the document's title.
//! - `model` (`auto`, a backend name or a backend's model, as on `/v1/chat/completions`),
//!   `max_output_tokens`, `temperature`, `top_p`, `function` and `custom` `tools` and the
//!   `web_search` tool (see below), `tool_choice`, `parallel_tool_calls`, `text.format`
//!   (`text`, `json_object`, `json_schema`), `reasoning.effort`, `metadata` and `user` (kept
//!   for logs and the ledger, never sent upstream), `include`, `stream`.
//! - The answer is a Response object: `reasoning` items when the backend returned reasoning,
//!   a `message` item with the text, one `function_call` (or `custom_tool_call`) item per
//!   tool call, and usage. The items come in the order the backend made them: Claude thinks
//!   between its calls (interleaved thinking), and its answer's order is kept, a `message`
//!   item for each of its text blocks.
//!   An answer cut by `max_output_tokens` is `status: "incomplete"` with
//!   `incomplete_details.reason`, so no client takes it for a whole answer.
//! - Streams are the typed event sequence (`response.created`, `response.in_progress`, per
//!   item `response.output_item.added` … `response.output_item.done`, then
//!   `response.completed` or `response.incomplete`), every event numbered by
//!   `sequence_number`. There is no `[DONE]`: the Responses API has none. A failure after the
//!   stream committed ends it with an `error` event and `response.failed`, never a completion.
//!
//! ## Custom tools
//!
//! GPT-5's `custom` tools take free text instead of JSON arguments, optionally written in a
//! grammar (Codex CLI offers its `apply_patch` so, with a Lark grammar, to GPT-5-family model
//! names). No provider behind the gateway has such tools, but every one has functions, so a
//! custom tool is offered as a function with one required string argument, `input`, its
//! description saying so and quoting the grammar (see `custom_tool`). The call the backend
//! answers with goes back to the client as a `custom_tool_call` item whose `input` is that
//! argument; arguments that are not an object with a string `input` (a model that ignored
//! the schema) give the argument text as it came instead, so the client sees what the model
//! wrote and its tool refuses it, rather than the whole turn failing (see `custom_input`).
//! In a stream the input arrives as JSON fragments of those arguments, which are not the
//! client's text: the call's arguments are held until the call ends, then its input goes out
//! whole as one `response.custom_tool_call_input.delta` and the `….done`. Sent back, a
//! `custom_tool_call` is an assistant tool call with arguments `{"input": …}` and a
//! `custom_tool_call_output` its result, as for functions; `tool_choice` `{"type": "custom",
//! "name": …}` names the tool as a function choice does. A call is told apart from a
//! function's by its name alone, so a custom tool sharing its name with another tool is
//! refused.
//!
//! ## Reasoning
//!
//! Reasoning from a backend (Qwen's `reasoning_content`, Claude's thinking) is the model's own
//! reasoning, not a summary of it, so it goes out as OpenAI sends the raw reasoning of
//! open-weight models: `content: [{"type": "reasoning_text"}]` with an empty `summary`,
//! streamed as `response.reasoning_text.delta`. Calling it a summary would tell the client it
//! may show it to end users as OpenAI's sanitised summaries are shown.
//!
//! Claude's thinking comes in blocks signed by Anthropic (or redacted: encrypted by it), and
//! Anthropic refuses a tool loop with thinking on unless the assistant turn that made the
//! calls comes back starting with its signed blocks. A stateless client can only send back
//! what it was given, and OpenAI's answer for such clients (`store: false`) is the reasoning
//! item's `encrypted_content`, which the client returns unchanged in its next `input`. So:
//!
//! - Each thinking block is a `reasoning` item of its own, in the order the backend made
//!   them: the items then say where each signature ends, as the blocks do, and a stream can
//!   close an item at each seal (`StreamEvent::ThinkingSeal`) without holding anything back.
//!   A signed or redacted block's item carries `encrypted_content` (see [`seal`]): in the
//!   JSON answer, in the stream's `response.output_item.done` and in the final response
//!   object. A redacted block has no text to show, so its item's `content` is empty.
//! - It is given whether or not `include` asks for `reasoning.encrypted_content`. OpenAI
//!   fills it in only when asked because it can also continue from what it stored; this
//!   gateway stores nothing, so the item is the only way a Claude tool loop can go on, and
//!   clients that send back every output item without asking (the Agents SDK by default)
//!   would otherwise break on their second turn. Reasoning without a provider signature
//!   (Qwen's) has nothing to carry and gets none.
//! - In `input`, a `reasoning` item whose `encrypted_content` is ours becomes the thinking of
//!   the assistant turn its following `message` or `function_call` items make (see
//!   `input_item`). Others are dropped: OpenAI's can only be read by OpenAI, and one without
//!   `encrypted_content` has no signature any provider would take.
//! - The reasoning, `message` and call items between two other items are one assistant turn,
//!   which keeps their order (see `AssistantTurn`): Anthropic refuses a turn with thinking
//!   sent back in another order than it made it.
//!
//! ## Web search
//!
//! The hosted `web_search` tool (`web_search_2025_08_26`, and the older `web_search_preview`
//! and `web_search_preview_2025_03_11`) is served by Claude's web search (see
//! [`crate::web_search`]): the tool becomes Claude's, in its place among the function tools,
//! with the `user_location` and `filters.allowed_domains` the client gave, and the request
//! goes to Anthropic backends only. With none that could take it (only OpenAI-format
//! backends, or a `model` naming another one) the request is refused before any upstream
//! call, saying so. `search_context_size` is accepted and not honoured: Claude decides how
//! much of the results it reads, and has no knob for it. `external_web_access: false` (cached
//! results only, no live fetch) is refused: Claude's search always goes out live.
//! `tool_choice` `{"type": "web_search"}` (or a preview type) forces the search.
//!
//! Each search of the answer is a `web_search_call` item in its place among the others, its id
//! `ws_` and the id Anthropic gave the search, `status` `completed`, `failed` when Anthropic
//! answered the search with an error, `incomplete` when no result came;
//! `action: {"type": "search", "query"}`, with the results' URLs as `action.sources` when
//! `include` asks for `web_search_call.action.sources`. The answer's citations of the results
//! are `url_citation` annotations of its `output_text` parts, offsets in characters of the
//! part's text (a part is one of Claude's text blocks, and a citation covers a whole block). A
//! stream has OpenAI's events for them: the call's `response.output_item.added`,
//! `response.web_search_call.in_progress` and `….searching` when Claude has written the query,
//! `….completed` (not for a failed search) and `response.output_item.done` when its results
//! come; a `response.output_text.annotation.added` per citation as its text block ends, before
//! the part's `response.output_text.done`. The part in `response.content_part.done` and the
//! item in `response.output_item.done` carry the annotations, as the final response does.
//! Citations are tracked only in streams of requests that offered the search.
//!
//! `web_search_call` items in `input` (a stateless client sends its earlier output back) are
//! accepted and dropped: Claude's results are encrypted blocks that cannot be rebuilt from the
//! call's query and sources, and the assistant's text after the call, which stays in its turn,
//! carries what the search found on.
//!
//! ## Refused (400 naming the field)
//!
//! The gateway stores nothing, so what points at stored state cannot be served:
//! `previous_response_id`, `conversation`, `background: true` (polled later, so stored),
//! `prompt` (a template stored at OpenAI), `item_reference` input items and `input_image` and
//! `input_file` parts given by `file_id` (a file uploaded to OpenAI). Tools other than
//! `function`, `custom` and the web search, and their call items, are OpenAI's platform:
//! hosted on its servers (`file_search`, `code_interpreter`, `mcp`, `image_generation`, …) or
//! called in formats only its models are trained on (`computer_use_preview`, `local_shell`,
//! `shell`, the hosted `apply_patch`). The providers behind the gateway have none of them, and
//! a request served without them would be answered by a model that believes it has them.
//!
//! `input_audio` content is refused: the neutral request carries text, images and PDFs only.
//! So are images and files anywhere but user messages and tool outputs (in assistant and
//! system turns: the neutral request has none there), and what the providers do not all
//! take: an `image_url` that is neither a base64 `data:` URL of a JPEG, PNG, GIF or WebP
//! image nor an `http(s)` URL (which the provider fetches; the gateway never does), and files
//! other than PDFs (OpenAI reads Word files and spreadsheets; no other provider does).
//!
//! ## Accepted, not honoured
//!
//! - `store` (OpenAI's default is `true`): nothing is stored, and the answer says
//!   `"store": false`; a later `previous_response_id` naming it is refused.
//! - An absent `strict` on a function tool (OpenAI's default here is `true`): the tool is
//!   offered without it. `strict: true` reaches OpenAI and Anthropic, which enforce it.
//! - A custom tool's `format` grammar (`lark` or `regex`): the model is shown it, but no
//!   backend can hold a function's argument to it as OpenAI's constrained decoding does, so
//!   the input follows it as well as the model manages.
//! - `reasoning` items in `input` that are not this gateway's (OpenAI's `encrypted_content`,
//!   or none) are dropped (`input_item` says why).
//! - `detail` on an `input_image` or an `input_file`: it tunes OpenAI's own resizing, and no
//!   other provider has a knob it could become.
//! - `include`: `encrypted_content` is given whether asked for or not (see above),
//!   `web_search_call.action.sources` is honoured (see above), and nothing else it can name
//!   exists here.
//! - `reasoning.summary`, `text.verbosity`, `truncation`, `service_tier`, `prompt_cache_key`
//!   and other unknown fields are ignored, as on `/v1/chat/completions`.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use claudette_core::{
    Block, BlockOrder, ChatRequest, ChatResponse, Document, FinishReason, Image, ImageSource, Message,
    NativeBlock, ResponseFormat, Role, StreamEvent, ThinkingBlock, ThinkingSeal, ToolCall, ToolCallDelta,
    ToolCallSlots, ToolChoice, ToolSpec, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::content::{
    Fault, arguments_text, checked_tool_choice, document_at, fault, image_at, image_url, invalid_value,
    missing, openai_effort, openai_file, parse_arguments, parse_located, tool_strict,
};
use crate::error::{ApiError, Class, Flavor};
use crate::respond::{self, Encoder, Endpoint, Shared};
use crate::web_search::{self, Location, Search, StreamCitations, UrlCitation, url_citations};
use crate::{ids, openai};

const EP: Endpoint = Endpoint { label: "responses", flavor: Flavor::OpenAi };

// ---------------------------------------------------------------------------------------------
// Request

/// The fields read. `input`, `tools` and `tool_choice` stay raw: their items are told apart
/// by `type`, and walking them by hand names the exact item at fault (`input[3].content[1]`).
#[derive(Debug, Deserialize)]
struct ResponsesRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    text: Option<TextConfig>,
    #[serde(default)]
    reasoning: Option<ReasoningConfig>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    include: Option<Vec<String>>,
    /// Read only to refuse them: each names state kept at OpenAI.
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    conversation: Option<Value>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    prompt: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct TextConfig {
    #[serde(default)]
    format: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ReasoningConfig {
    #[serde(default)]
    effort: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

/// What the Response object repeats of the request. OpenAI's SDKs type these fields (the
/// Python `Response` model requires `tools`, `tool_choice` and `parallel_tool_calls`), and
/// agents read some back, so they are echoed as the client sent them, with OpenAI's defaults.
#[derive(Debug, Default, Serialize)]
struct Echo {
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    parallel_tool_calls: bool,
    previous_response_id: Option<String>,
    reasoning: EchoReasoning,
    /// Always false: nothing is stored, whatever the client asked.
    store: bool,
    temperature: Option<f32>,
    text: EchoText,
    tool_choice: Value,
    tools: Vec<Value>,
    top_p: Option<f32>,
    user: Option<String>,
    metadata: Map<String, Value>,
}

#[derive(Debug, Default, Serialize)]
struct EchoReasoning {
    effort: Option<String>,
    summary: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct EchoText {
    format: Value,
}

/// A parsed request: the neutral request, the model the client named, whether to stream,
/// what the answer echoes, what its items depend on, and where the web search tool stood
/// among `tools`.
struct Parsed {
    request: ChatRequest,
    model: Option<String>,
    stream: bool,
    echo: Echo,
    outputs: Outputs,
    web_search: Option<usize>,
}

/// What the answer's items depend on in the request.
#[derive(Debug, Default)]
struct Outputs {
    /// The names of the `custom` tools, offered upstream as functions, whose calls the answer
    /// turns back into `custom_tool_call` items.
    custom: Vec<String>,
    /// The request offered the web search: a stream's citations are tracked (see
    /// [`Citations`]), which ordinary streams have no use for.
    web_search: bool,
    /// `include` asks for `web_search_call.action.sources`.
    sources: bool,
}

/// A refusal of a field that names state kept server-side.
fn stateless(param: &'static str, what: &str) -> ApiError {
    ApiError::invalid(format!(
        "`{param}` {what}, and this gateway is stateless: it stores no responses or conversations \
         (`store` is accepted but not honoured). Send the whole conversation in `input` instead."
    ))
    .with_param(param)
}

/// Removes the string field `key` from an input item; `path` names the item.
fn take_str(item: &mut Map<String, Value>, key: &str, path: &str) -> Result<String, ApiError> {
    match item.remove(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(missing(format!("{path}.{key}"))),
        Some(_) => {
            let param = format!("{path}.{key}");
            Err(ApiError::invalid(format!("Invalid value for '{param}': expected a string."))
                .with_param(param))
        }
    }
}

/// Message content or a tool call's output as the neutral message holds it.
#[derive(Debug, Default)]
struct Parts {
    text: String,
    images: Vec<Image>,
    documents: Vec<Document>,
}

/// Message content or a tool call's output: a string or a list of content parts, as one
/// string (text parts concatenated, as on `/v1/chat/completions`) and the images and PDFs that
/// stood among them. Images and files are taken where the neutral request carries them
/// (`media_taken`): in user messages and tool outputs, not in assistant or system turns.
fn content_parts(content: Option<Value>, path: &str, media_taken: bool) -> Result<Parts, ApiError> {
    let parts = match content {
        None | Some(Value::Null) => return Err(missing(path.to_owned())),
        Some(Value::String(text)) => return Ok(Parts { text, ..Parts::default() }),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "Invalid value for '{path}': expected a string or a list of content parts."
            ))
            .with_param(path.to_owned()));
        }
    };
    let Parts { mut text, mut images, mut documents } = Parts::default();
    for (j, part) in parts.into_iter().enumerate() {
        let at = format!("{path}[{j}]");
        let Value::Object(mut part) = part else {
            return Err(
                ApiError::invalid(format!("Invalid value for '{at}': expected an object.")).with_param(at)
            );
        };
        let kind = take_str(&mut part, "type", &at)?;
        match kind.as_str() {
            "input_text" | "output_text" | "text" => text.push_str(&take_str(&mut part, "text", &at)?),
            // A refusal in an earlier assistant turn is what the model said; dropping it would
            // leave that turn empty.
            "refusal" => text.push_str(&take_str(&mut part, "refusal", &at)?),
            "input_image" | "input_file" if !media_taken => {
                return Err(ApiError::invalid(format!(
                    "`{kind}` content is only accepted in user messages and tool call outputs by this \
                     gateway"
                ))
                .with_param(at));
            }
            "input_image" => images.push(image_at(&text, input_image(&mut part, &at)?)),
            "input_file" => {
                let (source, title) = openai_file(&mut part, &at, true)?;
                documents.push(document_at(&text, source, title));
            }
            "input_audio" => {
                return Err(ApiError::invalid(
                    "`input_audio` content is not supported by this gateway: requests reach every \
                     provider as text, images and PDFs only",
                )
                .with_param(at));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "content parts of type `{other}` are not supported by this gateway; send \
                     `input_text`, `input_image` or `input_file`"
                ))
                .with_param(at));
            }
        }
    }
    Ok(Parts { text, images, documents })
}

/// An `input_image` part (`at` names it): its `image_url`, a base64 `data:` URL or an
/// `http(s)` URL. `detail` is accepted and dropped: it tunes OpenAI's own resizing (and so
/// its price), and no other provider has a knob it could become. A `file_id` names a file
/// uploaded to OpenAI, which this stateless gateway cannot read.
fn input_image(part: &mut Map<String, Value>, at: &str) -> Result<ImageSource, ApiError> {
    if part.get("file_id").is_some_and(|v| !v.is_null()) {
        let param = format!("{at}.file_id");
        return Err(ApiError::invalid(format!(
            "`{param}` names a file stored at OpenAI, and this gateway is stateless: it can read no \
             stored files. Send the image as `image_url` (a base64 `data:` URL or an `https://` URL)."
        ))
        .with_param(param));
    }
    let url = take_str(part, "image_url", at)?;
    image_url(url).map_err(|why| invalid_value(format!("{at}.image_url"), &why))
}

/// The assistant turn being read from `input`. One answer is several items (its reasoning,
/// messages and calls, in the order the backend made them, see [`response_body`]), and a run
/// of them between two other items is one assistant message, which keeps their order
/// ([`Message::order`]): Claude thinks between its calls (interleaved thinking), and
/// Anthropic refuses the turn back in any other order than it made it.
#[derive(Debug, Default)]
struct AssistantTurn {
    /// Thinking blocks from `reasoning` items, waiting for the turn's next message or call.
    waiting: Vec<ThinkingBlock>,
    /// The turn so far and the order of its blocks, until another item ends it.
    open: Option<(Message, BlockOrder)>,
}

impl AssistantTurn {
    /// The turn (started if need be) and its order, with the waiting thinking blocks added:
    /// they go before what comes next.
    fn next(&mut self) -> (&mut Message, &mut BlockOrder) {
        let (turn, order) = self.open.get_or_insert_with(|| (Message::assistant(""), BlockOrder::default()));
        for block in self.waiting.drain(..) {
            turn.thinking.push(block);
            order.thinking();
        }
        (turn, order)
    }

    /// Ends the turn before another item (or at the end of `input`), appending it to the
    /// conversation with its order. Reasoning still waiting belongs to no turn the client
    /// sent and is dropped.
    fn end(&mut self, out: &mut Vec<Message>) {
        self.waiting.clear();
        if let Some((turn, order)) = self.open.take() {
            out.push(Message { order: order.finish(), ..turn });
        }
    }
}

/// Appends `input[i]` to the conversation.
///
/// A `reasoning` item sealed by this gateway (see [`seal`]) holds one of the provider's
/// thinking blocks: it waits in `turn` for the assistant turn's next `message` or
/// `function_call` item and goes before it, as Anthropic made it. Any other item in between
/// (a user, system or tool message) means the client left that turn out, and the blocks,
/// which belong to no other turn, are dropped. Other reasoning items are dropped too:
/// OpenAI's `encrypted_content` only OpenAI can read, and an item without any carries no
/// signature (which Claude checks, and which no other provider takes); providers other than
/// Claude ignore earlier reasoning anyway.
fn input_item(
    i: usize,
    item: Value,
    out: &mut Vec<Message>,
    turn: &mut AssistantTurn,
) -> Result<(), ApiError> {
    let path = format!("input[{i}]");
    let Value::Object(mut item) = item else {
        return Err(
            ApiError::invalid(format!("Invalid value for '{path}': expected an object.")).with_param(path)
        );
    };
    let kind = match item.remove("type") {
        None | Some(Value::Null) => "message".to_owned(),
        Some(Value::String(kind)) => kind,
        Some(_) => {
            let param = format!("{path}.type");
            return Err(ApiError::invalid(format!("Invalid value for '{param}': expected a string."))
                .with_param(param));
        }
    };
    match kind.as_str() {
        "message" => {
            let role = match take_str(&mut item, "role", &path)?.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "system" | "developer" => Role::System,
                other => {
                    return Err(ApiError::invalid(format!(
                        "unknown message role `{other}`; expected `user`, `assistant`, `system` or `developer`"
                    ))
                    .with_param(format!("{path}.role")));
                }
            };
            let Parts { text: content, images, documents } =
                content_parts(item.remove("content"), &format!("{path}.content"), role == Role::User)?;
            if role == Role::Assistant {
                // One text block of the turn, joined to the others as a message's parts are.
                let (m, order) = turn.next();
                m.content.push_str(&content);
                order.text(m.content.len());
            } else {
                turn.end(out);
                out.push(Message { images, documents, ..Message::new(role, content) });
            }
        }
        "function_call" | "custom_tool_call" => {
            let id = take_str(&mut item, "call_id", &path)?;
            let name = take_str(&mut item, "name", &path)?;
            // A custom tool is offered upstream as a function taking its text as `input`
            // (see `custom_tool`), so its earlier calls go back as calls of that function.
            let arguments = if kind == "function_call" {
                let raw = take_str(&mut item, "arguments", &path)?;
                parse_arguments(&raw, || format!("{path}.arguments"))?
            } else {
                serde_json::json!({ CUSTOM_INPUT: take_str(&mut item, "input", &path)? })
            };
            // The calls of one answer are items of their own: one assistant turn upstream
            // (Anthropic wants all of a turn's calls in one message, followed by all their
            // results).
            let (m, order) = turn.next();
            m.tool_calls.push(ToolCall { id, name, arguments });
            order.tool_call();
        }
        "function_call_output" | "custom_tool_call_output" => {
            turn.end(out);
            let call_id = take_str(&mut item, "call_id", &path)?;
            let Parts { text: output, images, documents } =
                content_parts(item.remove("output"), &format!("{path}.output"), true)?;
            // The tool's name, for providers whose results carry it (Gemini).
            let name = out
                .iter()
                .rev()
                .flat_map(|m| m.tool_calls.iter())
                .find(|c| c.id == call_id)
                .map(|c| c.name.clone());
            out.push(Message { name, images, documents, ..Message::tool_result(call_id, output) });
        }
        "reasoning" => turn.waiting.extend(unseal(&mut item, &path)?),
        // A search of an earlier answer (see `web_search_call`): checked, then dropped. It
        // does not end the assistant turn: the text after it is the same answer's.
        "web_search_call" => web_search_call(&mut item, &path)?,
        "item_reference" => {
            return Err(ApiError::invalid(
                "`item_reference` items name items stored at the server, and this gateway is \
                 stateless; send the item itself",
            )
            .with_param(path));
        }
        other => {
            return Err(ApiError::invalid(format!(
                "input items of type `{other}` are not supported by this gateway: it carries \
                 messages, `function_call`, `custom_tool_call` and their `…_output` items, and \
                 takes `web_search_call` items (OpenAI's other platform tools are not available \
                 behind it)"
            ))
            .with_param(format!("{path}.type")));
        }
    }
    Ok(())
}

/// A `web_search_call` input item (`path` names it), checked as OpenAI's SDKs type it: an
/// `id`, a `status` and, when given, an `action` with a `type`.
///
/// The item is dropped, not sent on. Claude's search results are encrypted blocks that only
/// the search itself produces; the item's query and sources cannot rebuild them, and a
/// `server_tool_use` without its results is refused by Anthropic. The answer's text after the
/// search, which stays in the turn, carries on what the search found.
fn web_search_call(item: &mut Map<String, Value>, path: &str) -> Result<(), ApiError> {
    take_str(item, "id", path)?;
    take_str(item, "status", path)?;
    match item.get("action") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(action)) if action.get("type").is_some_and(Value::is_string) => Ok(()),
        Some(_) => Err(invalid_value(format!("{path}.action"), &"expected an object with a string `type`")),
    }
}

/// What starts every `encrypted_content` this gateway writes: it tells ours from OpenAI's
/// (Fernet tokens, `gAAAAA…`), which are dropped as before.
const SEAL_PREFIX: &str = "claudette:";

/// The format after [`SEAL_PREFIX`]. A version this build cannot read (from a newer gateway)
/// is refused by name rather than taken for another provider's and dropped, which would
/// silently cost the turn its thinking.
const SEAL_V1: &str = "1:";

/// One thinking block as `encrypted_content` holds it: Anthropic's own block shape, so the
/// JSON reads as what it is to whoever decodes it. The shape is this file's, not
/// [`ThinkingBlock`]'s serde form, so that a change in the core type cannot change what
/// clients hold between turns; [`SEAL_V1`] says which shape a value has.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Sealed<'a> {
    Thinking { thinking: Cow<'a, str>, signature: Cow<'a, str> },
    RedactedThinking { data: Cow<'a, str> },
}

impl<'a> From<&'a ThinkingBlock> for Sealed<'a> {
    fn from(block: &'a ThinkingBlock) -> Self {
        match block {
            ThinkingBlock::Thinking { thinking, signature } => {
                Sealed::Thinking { thinking: thinking.into(), signature: signature.into() }
            }
            ThinkingBlock::Redacted { data } => Sealed::RedactedThinking { data: data.into() },
        }
    }
}

impl Sealed<'_> {
    fn into_block(self) -> ThinkingBlock {
        match self {
            Sealed::Thinking { thinking, signature } => {
                ThinkingBlock::Thinking { thinking: thinking.into_owned(), signature: signature.into_owned() }
            }
            Sealed::RedactedThinking { data } => ThinkingBlock::Redacted { data: data.into_owned() },
        }
    }
}

/// A thinking block as `encrypted_content`: [`SEAL_PREFIX`], [`SEAL_V1`], then standard
/// base64 of the block as compact JSON ([`Sealed`]).
///
/// Whole, text included, although the item's `content` shows the text: clients do not send
/// `content` back (Codex leaves `reasoning_text` out of the items it returns). Base64 because
/// the value is opaque by contract, as OpenAI's is: one run of plain characters that no
/// client is tempted to parse or edit. Not encrypted: a stateless gateway has no key it could
/// keep across restarts and instances, the text is the client's already, and the integrity
/// that matters is Anthropic's, which checks the signature and refuses an edited block.
fn seal(block: &Sealed<'_>) -> String {
    // Serialising strings cannot fail.
    let json = serde_json::to_vec(block).unwrap_or_default();
    let mut out = String::with_capacity(SEAL_PREFIX.len() + SEAL_V1.len() + json.len().div_ceil(3) * 4);
    out.push_str(SEAL_PREFIX);
    out.push_str(SEAL_V1);
    BASE64.encode_string(&json, &mut out);
    out
}

/// The thinking block in a reasoning item's `encrypted_content` (`path` names the item):
/// `None` when it has none or the value is not ours.
fn unseal(item: &mut Map<String, Value>, path: &str) -> Result<Option<ThinkingBlock>, ApiError> {
    if item.get("encrypted_content").is_none_or(Value::is_null) {
        return Ok(None);
    }
    let value = take_str(item, "encrypted_content", path)?;
    let Some(versioned) = value.strip_prefix(SEAL_PREFIX) else { return Ok(None) };
    let why = match versioned.strip_prefix(SEAL_V1) {
        Some(payload) => {
            let block =
                BASE64.decode(payload).ok().and_then(|json| serde_json::from_slice::<Sealed>(&json).ok());
            match block {
                Some(block) => return Ok(Some(block.into_block())),
                None => "it is corrupt",
            }
        }
        None => "it was written by a version of this gateway that this one cannot read",
    };
    let param = format!("{path}.encrypted_content");
    Err(ApiError::invalid(format!(
        "Invalid value for '{param}': {why}. Send reasoning items back exactly as this gateway \
         returned them, or leave them out."
    ))
    .with_param(param))
}

/// The one argument of the function a custom tool is offered as: the tool's free text.
const CUSTOM_INPUT: &str = "input";

/// A tool of the request.
enum Tool {
    Function(ToolSpec),
    /// A `custom` tool, as the function it is offered as.
    Custom(ToolSpec),
    WebSearch(Search),
}

/// The types of OpenAI's hosted web search tool: the current one, its dated version, and the
/// preview's (which clients written for it still send).
const WEB_SEARCH_TYPES: [&str; 4] =
    ["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"];

/// The name Claude's web search tool has, which a forced choice names
/// ([`Search::claude_tool`]).
const WEB_SEARCH_NAME: &str = "web_search";

/// `tools[i]` as the neutral request offers it.
fn tool_spec(i: usize, tool: &Value) -> Result<Tool, ApiError> {
    let path = format!("tools[{i}]");
    let Some(obj) = tool.as_object() else {
        return Err(
            ApiError::invalid(format!("Invalid value for '{path}': expected an object.")).with_param(path)
        );
    };
    let custom = match obj.get("type").and_then(Value::as_str) {
        Some("function") => false,
        Some("custom") => true,
        Some(kind) if WEB_SEARCH_TYPES.contains(&kind) => {
            return web_search_tool(&path, obj).map(Tool::WebSearch);
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`{other}` tools are part of OpenAI's platform (run on its servers, or called in \
                 a format only its models produce); the providers behind this gateway have no \
                 such tool, so only `function`, `custom` and `web_search` tools are supported"
            ))
            .with_param(format!("{path}.type")));
        }
        None => return Err(missing(format!("{path}.type"))),
    };
    let Some(name) = obj.get("name").and_then(Value::as_str) else {
        return Err(missing(format!("{path}.name")));
    };
    let description = obj.get("description").and_then(Value::as_str).unwrap_or_default();
    if custom {
        return Ok(Tool::Custom(custom_tool(&path, obj, name, description)?));
    }
    // OpenAI's own default here is `true`; an absent `strict` is taken as `false` (nothing
    // sent), because a strict tool whose schema a backend cannot take strictly (an optional
    // property, no `additionalProperties: false`) is refused there, and the client asked for
    // nothing. Clients that want it say so: the Agents SDK does, Codex says `false`.
    let strict = tool_strict(obj.get("strict"), || format!("{path}.strict"))?.unwrap_or(false);
    let spec = ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        strict,
        parameters: obj
            .get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        ..ToolSpec::default()
    };
    Ok(Tool::Function(spec))
}

/// A web search tool (`path` names it) as the search Claude is asked for. Fields it has no
/// use for are not read, as elsewhere; those it reads are checked and named when wrong.
fn web_search_tool(path: &str, tool: &Map<String, Value>) -> Result<Search, ApiError> {
    let field = |key: &str| tool.get(key).filter(|v| !v.is_null());
    if let Some(size) = field("search_context_size") {
        // Claude decides how much of the results it reads: checked, not honoured.
        if !matches!(size.as_str(), Some("low" | "medium" | "high")) {
            let param = format!("{path}.search_context_size");
            return Err(invalid_value(param, &"expected `low`, `medium` or `high`"));
        }
    }
    match field("external_web_access") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return Err(ApiError::invalid(
                "`external_web_access: false` asks for cached results only, and the web search \
                 behind this gateway (Claude's) always searches the live web; leave it out or set \
                 it to `true`",
            )
            .with_param(format!("{path}.external_web_access")));
        }
        Some(_) => return Err(invalid_value(format!("{path}.external_web_access"), &"expected a boolean")),
    }
    let location = match field("user_location") {
        None => None,
        Some(Value::Object(l)) => Some(user_location(&format!("{path}.user_location"), l)?),
        Some(_) => return Err(invalid_value(format!("{path}.user_location"), &"expected an object")),
    };
    let allowed_domains = match field("filters") {
        None => Vec::new(),
        Some(Value::Object(filters)) => allowed_domains(&format!("{path}.filters"), filters)?,
        Some(_) => return Err(invalid_value(format!("{path}.filters"), &"expected an object")),
    };
    Ok(Search { location, allowed_domains })
}

/// A web search tool's `user_location` (`path` names it): `{"type": "approximate"}` and the
/// optional `city`, `region`, `country` and `timezone` strings.
fn user_location(path: &str, location: &Map<String, Value>) -> Result<Location, ApiError> {
    match location.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "approximate" => {}
        Some(_) => return Err(invalid_value(format!("{path}.type"), &"expected `approximate`")),
    }
    Location::read(path, location)
}

/// A web search tool's `filters.allowed_domains` (`path` names the filters): a list of
/// domains, or none.
fn allowed_domains(path: &str, filters: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let param = format!("{path}.allowed_domains");
    match filters.get("allowed_domains") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(domains)) => domains
            .iter()
            .enumerate()
            .map(|(k, d)| match d {
                Value::String(d) => Ok(d.clone()),
                _ => Err(invalid_value(format!("{param}[{k}]"), &"expected a string")),
            })
            .collect(),
        Some(_) => Err(invalid_value(param, &"expected a list of domains")),
    }
}

/// A `custom` tool as a function every provider can offer: one required string argument,
/// [`CUSTOM_INPUT`], carrying the tool's free text.
///
/// The description gets one sentence saying where the text goes, because a custom tool's own
/// description speaks of free text (Codex's `apply_patch` says not to wrap the patch in JSON),
/// and then, for a `grammar` format, the grammar's whole definition: OpenAI holds the text to
/// the grammar as it decodes, no other provider can, so the model is told instead, and a
/// model shown a summary would write what it guesses the grammar is. Nothing checks the
/// text against it (the module doc lists it as accepted, not honoured).
fn custom_tool(
    path: &str,
    tool: &Map<String, Value>,
    name: &str,
    description: &str,
) -> Result<ToolSpec, ApiError> {
    let rule = match tool.get("format").filter(|f| !f.is_null()) {
        None => None,
        Some(format) => match format.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("grammar") => {
                let field = |key: &str| {
                    format
                        .get(key)
                        .and_then(Value::as_str)
                        .ok_or_else(|| missing(format!("{path}.format.{key}")))
                };
                let how = match field("syntax")? {
                    "lark" => "follow this Lark grammar",
                    "regex" => "match this regular expression",
                    other => {
                        return Err(ApiError::invalid(format!(
                            "unknown custom tool grammar syntax `{other}`; expected `lark` or `regex`"
                        ))
                        .with_param(format!("{path}.format.syntax")));
                    }
                };
                Some((how, field("definition")?))
            }
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "unknown custom tool format type `{other}`; expected `text` or `grammar`"
                ))
                .with_param(format!("{path}.format.type")));
            }
            None => return Err(missing(format!("{path}.format.type"))),
        },
    };
    let mut text = String::with_capacity(description.len() + 96 + rule.map_or(0, |(_, d)| d.len()));
    text.push_str(description);
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str("This tool takes free text: pass all of it as the string argument `input`.");
    if let Some((how, definition)) = rule {
        text.push_str(" The text must ");
        text.push_str(how);
        text.push_str(":\n");
        text.push_str(definition);
    }
    Ok(ToolSpec {
        name: name.to_owned(),
        description: text,
        parameters: serde_json::json!({
            "type": "object",
            "properties": { CUSTOM_INPUT: {"type": "string"} },
            "required": [CUSTOM_INPUT],
        }),
        ..ToolSpec::default()
    })
}

/// `"auto"`, `"none"`, `"required"`, `{"type": "function", "name": …}`, `{"type": "custom",
/// "name": …}` (the function a custom tool is offered as) or `{"type": "web_search"}` (or
/// another of [`WEB_SEARCH_TYPES`]: the web search tool, by the name Claude's has; `search`
/// says whether the request offers it).
fn tool_choice(choice: Option<&Value>, search: bool) -> Result<ToolChoice, ApiError> {
    match choice {
        None => Ok(ToolChoice::Auto),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(ApiError::invalid(format!(
                "unknown tool_choice `{other}`; expected `auto`, `none`, `required` or a function"
            ))
            .with_param("tool_choice")),
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(ToolChoice::Tool(name.to_owned())),
                None => Err(missing("tool_choice.name".into())),
            },
            // Claude's tool is named, and a function of that name would be forced instead.
            Some(kind) if WEB_SEARCH_TYPES.contains(&kind) => {
                if search {
                    Ok(ToolChoice::Tool(WEB_SEARCH_NAME.to_owned()))
                } else {
                    Err(ApiError::invalid(format!(
                        "tool_choice `{kind}` forces the web search, and `tools` has no web search tool"
                    ))
                    .with_param("tool_choice"))
                }
            }
            Some(other) => Err(ApiError::invalid(format!(
                "tool_choice of type `{other}` is not supported by this gateway; send `auto`, \
                 `none`, `required`, {{\"type\": \"function\" (or \"custom\"), \"name\": …}} or \
                 {{\"type\": \"web_search\"}}"
            ))
            .with_param("tool_choice.type")),
            None => Err(missing("tool_choice.type".into())),
        },
        Some(_) => Err(ApiError::invalid("Invalid value for 'tool_choice': expected a string or an object.")
            .with_param("tool_choice")),
    }
}

/// `text.format`. Carried, not dropped: served as free text, a `json_schema` answer (what the
/// SDKs' `responses.parse()` asks for) would fail in the client's JSON parser.
fn response_format(format: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    let Some(format) = format else { return Ok(ResponseFormat::Text) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let Some(name) = format.get("name").and_then(Value::as_str) else {
                return Err(missing("text.format.name".into()));
            };
            Ok(ResponseFormat::JsonSchema {
                name: name.to_owned(),
                schema: format
                    .get("schema")
                    .filter(|s| !s.is_null())
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                strict: format.get("strict").and_then(Value::as_bool).unwrap_or(false),
            })
        }
        Some(other) => Err(ApiError::invalid(format!(
            "unknown `text.format` type `{other}`; expected `text`, `json_object` or `json_schema`"
        ))
        .with_param("text.format.type")),
        None => Err(missing("text.format.type".into())),
    }
}

/// The field at fault in a body that failed to parse. The raw fields cannot fail.
fn locate(v: &Value) -> Option<Fault> {
    let obj = v.as_object()?;
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let top = |k: &'static str| -> Option<Fault> {
        let v = field(k)?;
        match k {
            "model" | "instructions" | "user" | "previous_response_id" => fault::<String>(k.into(), v),
            "max_output_tokens" => fault::<u32>(k.into(), v),
            "temperature" | "top_p" => fault::<f32>(k.into(), v),
            "parallel_tool_calls" | "stream" | "background" => fault::<bool>(k.into(), v),
            "metadata" => fault::<Map<String, Value>>(k.into(), v),
            "tools" => fault::<Vec<Value>>(k.into(), v),
            "include" => fault::<Vec<String>>(k.into(), v),
            "text" => fault::<TextConfig>(k.into(), v),
            "reasoning" => match v.as_object() {
                Some(r) => ["effort", "summary"].into_iter().find_map(|s| {
                    let inner = r.get(s).filter(|x| !x.is_null())?;
                    fault::<String>(format!("reasoning.{s}"), inner)
                }),
                None => fault::<ReasoningConfig>(k.into(), v),
            },
            _ => None,
        }
    };
    [
        "model",
        "instructions",
        "user",
        "previous_response_id",
        "max_output_tokens",
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "stream",
        "background",
        "metadata",
        "tools",
        "include",
        "text",
        "reasoning",
    ]
    .into_iter()
    .find_map(top)
}

impl ResponsesRequest {
    /// The provider-neutral request. What a stateless router cannot do is refused, never
    /// dropped; unknown fields are ignored.
    fn into_chat(self) -> Result<Parsed, ApiError> {
        if self.previous_response_id.is_some() {
            return Err(stateless("previous_response_id", "names a response stored at the server"));
        }
        if self.conversation.is_some() {
            return Err(stateless("conversation", "names a conversation stored at the server"));
        }
        if self.background == Some(true) {
            return Err(stateless("background", "asks for a response stored at the server to be polled"));
        }
        if self.prompt.is_some() {
            return Err(ApiError::invalid(
                "`prompt` names a prompt template stored at OpenAI, which this gateway cannot \
                 read; send its text as `instructions` and `input`",
            )
            .with_param("prompt"));
        }
        let mut messages = Vec::new();
        if let Some(instructions) = &self.instructions {
            messages.push(Message::system(instructions.clone()));
        }
        match self.input {
            None => return Err(missing("input".into())),
            Some(Value::String(text)) => messages.push(Message::user(text)),
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(
                        ApiError::invalid("`input` must contain at least one item").with_param("input")
                    );
                }
                messages.reserve(items.len());
                let mut turn = AssistantTurn::default();
                for (i, item) in items.into_iter().enumerate() {
                    input_item(i, item, &mut messages, &mut turn)?;
                }
                turn.end(&mut messages);
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "Invalid value for 'input': expected a string or a list of input items.",
                )
                .with_param("input"));
            }
        }
        let raw_tools = self.tools.unwrap_or_default();
        let mut tools: Vec<ToolSpec> = Vec::with_capacity(raw_tools.len());
        let mut custom = Vec::new();
        // The web search tool: where it stood in `tools`, and as Claude's tool.
        let mut search = None;
        let offers_search = raw_tools.iter().any(|t| {
            t.get("type").and_then(Value::as_str).is_some_and(|kind| WEB_SEARCH_TYPES.contains(&kind))
        });
        for (i, raw) in raw_tools.iter().enumerate() {
            let (spec, is_custom) = match tool_spec(i, raw)? {
                Tool::Function(spec) => (spec, false),
                Tool::Custom(spec) => (spec, true),
                Tool::WebSearch(s) => {
                    if let Some((first, _)) = search {
                        return Err(ApiError::invalid(format!(
                            "tools[{i}] is a second web search tool (tools[{first}] is one); offer it once"
                        ))
                        .with_param(format!("tools[{i}].type")));
                    }
                    // Before the function tool that comes next, as the client placed it.
                    search = Some((i, s.claude_tool(tools.len())));
                    continue;
                }
            };
            if offers_search && spec.name == WEB_SEARCH_NAME {
                // Claude's search tool has this name, and Anthropic refuses two tools of one name.
                let param = format!("tools[{i}].name");
                return Err(ApiError::invalid(format!(
                    "Invalid value for '{param}': `{WEB_SEARCH_NAME}` is the name of the web search \
                     tool this gateway serves (Claude's), which the request also offers; name this \
                     tool otherwise"
                ))
                .with_param(param));
            }
            // The answer tells a custom tool's call from a function's by name alone.
            let clash = tools.iter().position(|t| t.name == spec.name);
            if let Some(j) = clash.filter(|_| is_custom || custom.contains(&spec.name)) {
                let param = format!("tools[{i}].name");
                return Err(ApiError::invalid(format!(
                    "Invalid value for '{param}': `{}` is also the name of tools[{j}]; a `custom` \
                     tool is offered to the model as a function, so its name must differ from \
                     every other tool's",
                    spec.name
                ))
                .with_param(param));
            }
            if is_custom {
                custom.push(spec.name.clone());
            }
            tools.push(spec);
        }
        let choice = tool_choice(self.tool_choice.as_ref(), search.is_some())?;
        let format_value = self.text.and_then(|t| t.format).filter(|f| !f.is_null());
        let response_format = response_format(format_value.as_ref())?;
        let (effort, summary) = self.reasoning.map(|r| (r.effort, r.summary)).unwrap_or_default();
        let thinking = effort.as_deref().map(|e| openai_effort(e, "reasoning.effort")).transpose()?;
        let echo_metadata = self.metadata.unwrap_or_default();
        let mut metadata = echo_metadata.clone();
        if let Some(user) = &self.user {
            metadata.insert("user".into(), Value::String(user.clone()));
        }
        let sources = self.include.iter().flatten().any(|i| i == "web_search_call.action.sources");
        let (web_search, native_tools) = match search {
            Some((i, tool)) => (Some(i), vec![tool]),
            None => (None, Vec::new()),
        };
        let request = ChatRequest {
            messages,
            max_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            parallel_tool_calls: self.parallel_tool_calls,
            tools,
            native_tools,
            tool_choice: choice,
            response_format,
            metadata,
            thinking,
            ..ChatRequest::default()
        };
        checked_tool_choice(&request)?;
        let echo = Echo {
            instructions: self.instructions,
            max_output_tokens: self.max_output_tokens,
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
            previous_response_id: None,
            reasoning: EchoReasoning { effort, summary },
            store: false,
            temperature: self.temperature,
            text: EchoText { format: format_value.unwrap_or_else(|| serde_json::json!({"type": "text"})) },
            tool_choice: self.tool_choice.unwrap_or_else(|| Value::String("auto".into())),
            tools: raw_tools,
            top_p: self.top_p,
            user: self.user,
            metadata: echo_metadata,
        };
        let outputs = Outputs { custom, web_search: web_search.is_some(), sources };
        Ok(Parsed {
            request,
            model: self.model,
            stream: self.stream.unwrap_or(false),
            echo,
            outputs,
            web_search,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Handler

pub(crate) async fn responses(State(st): State<Shared>, request: Request) -> Response {
    let prepared = respond::prepare(&st, EP, request, |bytes| {
        let parsed: ResponsesRequest = parse_located(bytes, locate, |path, inner| {
            ApiError::invalid(format!("Invalid value for '{path}': {inner}.")).with_param(path)
        })
        .map_err(|e| respond::local_error(EP, e))?;
        let Parsed { mut request, model, stream, echo, outputs, web_search } =
            parsed.into_chat().map_err(|e| respond::local_error(EP, e))?;
        if let Some(tool) = web_search {
            let param = format!("tools[{tool}]");
            let asked = format!("the web search tool at `{param}`");
            web_search::refuse_unservable(&st.router, model.as_deref(), &mut request, &asked, param)
                .map_err(|e| respond::local_error(EP, e))?;
        }
        Ok((request, model, (stream, echo, outputs)))
    })
    .await;
    let mut prepared = match prepared {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let stream = prepared.extra.0;
    let echo = std::mem::take(&mut prepared.extra.1);
    let outputs = std::mem::take(&mut prepared.extra.2);
    if stream {
        respond::answer_stream(&st, EP, prepared, |model| ResponsesEncoder::new(model, echo, outputs)).await
    } else {
        respond::answer_json(&st, EP, prepared, |resp| response_body(resp, &echo, &outputs)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Response

/// An output item, for the JSON answer (borrowing the answer) and the stream (owning what
/// arrived).
struct Item<'a> {
    id: String,
    status: &'static str,
    kind: Kind<'a>,
    /// A message's `url_citation` annotations, offsets in characters of its text.
    annotations: Vec<UrlCitation>,
}

impl<'a> Item<'a> {
    fn new(id: String, status: &'static str, kind: Kind<'a>) -> Item<'a> {
        Item { id, status, kind, annotations: Vec::new() }
    }
}

enum Kind<'a> {
    /// Reasoning text, and the thinking block's `encrypted_content` once the provider sealed
    /// it (see [`seal`]).
    Reasoning {
        text: Cow<'a, str>,
        sealed: Option<String>,
    },
    Message(Cow<'a, str>),
    /// A `function_call` item, or with `custom` a `custom_tool_call` item, whose `arguments`
    /// are then its `input`: in a stream, the backend's argument text while the call is open,
    /// its input once closed (see [`custom_input_of`]).
    Call {
        call_id: Cow<'a, str>,
        name: Cow<'a, str>,
        arguments: Cow<'a, str>,
        custom: bool,
    },
    /// A `web_search_call` item: Claude's `server_tool_use` and what its results said.
    /// Owned in a JSON answer too: searches are few, and a stream needs them owned.
    Search {
        /// The search's id, which its results name (`tool_use_id`).
        call_id: String,
        query: Option<String>,
        outcome: Searched,
        /// The results' URLs, when `include` asks for them.
        sources: Vec<String>,
    },
}

/// What came of a search.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Searched {
    /// No results (yet).
    Pending,
    Done,
    /// Anthropic's `web_search_tool_result_error`.
    Failed,
}

impl Searched {
    /// The item's `status` once it is closed.
    fn status(self) -> &'static str {
        match self {
            Searched::Pending => "incomplete",
            Searched::Done => "completed",
            Searched::Failed => "failed",
        }
    }
}

impl Item<'_> {
    /// The item on the wire: whole, or as `response.output_item.added` announces it (no
    /// content yet, empty arguments).
    fn wire(&self, whole: bool) -> WireItem<'_> {
        let id = self.id.as_str();
        let status = self.status;
        match &self.kind {
            Kind::Reasoning { sealed, .. } => WireItem::Reasoning {
                id,
                summary: [],
                content: self.part().filter(|_| whole).into_iter().collect(),
                encrypted_content: sealed.as_deref().filter(|_| whole),
                status,
            },
            Kind::Message(_) => WireItem::Message {
                id,
                status,
                role: "assistant",
                content: self.part().filter(|_| whole).into_iter().collect(),
            },
            Kind::Call { call_id, name, arguments, custom: false } => WireItem::FunctionCall {
                id,
                call_id,
                name,
                arguments: if whole { arguments } else { "" },
                status,
            },
            Kind::Call { call_id, name, arguments, custom: true } => WireItem::CustomToolCall {
                id,
                call_id,
                name,
                input: if whole { arguments } else { "" },
                status,
            },
            Kind::Search { query, sources, .. } => WireItem::WebSearchCall {
                id,
                status,
                action: WireAction::Search {
                    query: query.as_deref(),
                    sources: (whole && !sources.is_empty()).then_some(Sources(sources)),
                },
            },
        }
    }

    /// The text part of a message or reasoning item, as far as it has arrived. A sealed
    /// block without text (a redacted one) has none: there is nothing to show.
    fn part(&self) -> Option<WirePart<'_>> {
        match &self.kind {
            Kind::Message(text) => {
                Some(WirePart::OutputText { text, annotations: Annotations(&self.annotations), logprobs: [] })
            }
            Kind::Reasoning { text, sealed } if !text.is_empty() || sealed.is_none() => {
                Some(WirePart::ReasoningText { text })
            }
            Kind::Reasoning { .. } | Kind::Call { .. } | Kind::Search { .. } => None,
        }
    }
}

impl Serialize for Item<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.wire(true).serialize(s)
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireItem<'a> {
    Reasoning {
        id: &'a str,
        summary: [(); 0],
        content: Vec<WirePart<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<&'a str>,
        status: &'a str,
    },
    Message {
        id: &'a str,
        status: &'a str,
        role: &'static str,
        content: Vec<WirePart<'a>>,
    },
    FunctionCall {
        id: &'a str,
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
        status: &'a str,
    },
    CustomToolCall {
        id: &'a str,
        call_id: &'a str,
        name: &'a str,
        input: &'a str,
        status: &'a str,
    },
    WebSearchCall {
        id: &'a str,
        status: &'a str,
        action: WireAction<'a>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireAction<'a> {
    Search {
        #[serde(skip_serializing_if = "Option::is_none")]
        query: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sources: Option<Sources<'a>>,
    },
}

/// A search's `sources`: `{"type": "url", "url": …}` each.
struct Sources<'a>(&'a [String]);

impl Serialize for Sources<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Source<'a> {
            r#type: &'static str,
            url: &'a str,
        }
        s.collect_seq(self.0.iter().map(|url| Source { r#type: "url", url }))
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart<'a> {
    OutputText { text: &'a str, annotations: Annotations<'a>, logprobs: [(); 0] },
    ReasoningText { text: &'a str },
}

/// An `output_text` part's `annotations`: `url_citation`s.
#[derive(Clone, Copy)]
struct Annotations<'a>(&'a [UrlCitation]);

impl Serialize for Annotations<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(WireAnnotation::from))
    }
}

#[derive(Serialize)]
struct WireAnnotation<'a> {
    r#type: &'static str,
    start_index: usize,
    end_index: usize,
    url: &'a str,
    title: &'a str,
}

impl<'a> From<&'a UrlCitation> for WireAnnotation<'a> {
    fn from(c: &'a UrlCitation) -> Self {
        WireAnnotation {
            r#type: "url_citation",
            start_index: c.start,
            end_index: c.end,
            url: &c.url,
            title: &c.title,
        }
    }
}

#[derive(Serialize)]
struct WireResponse<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: Option<WireError<'a>>,
    incomplete_details: Option<Incomplete>,
    model: &'a str,
    output: &'a [Item<'a>],
    usage: Option<WireUsage>,
    #[serde(flatten)]
    echo: &'a Echo,
}

#[derive(Serialize)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Serialize)]
struct WireError<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct WireUsage {
    input_tokens: u32,
    input_tokens_details: InputDetails,
    output_tokens: u32,
    output_tokens_details: OutputDetails,
    total_tokens: u32,
}

#[derive(Serialize)]
struct InputDetails {
    cached_tokens: u32,
    cache_write_tokens: u32,
}

#[derive(Serialize)]
struct OutputDetails {
    reasoning_tokens: u32,
}

/// OpenAI's usage: `input_tokens` includes cached tokens and `output_tokens` reasoning
/// tokens, as ours do.
fn wire_usage(u: &Usage) -> WireUsage {
    WireUsage {
        input_tokens: u.input_tokens,
        input_tokens_details: InputDetails {
            cached_tokens: u.cache_read_tokens,
            cache_write_tokens: u.cache_write_tokens,
        },
        output_tokens: u.output_tokens,
        output_tokens_details: OutputDetails { reasoning_tokens: u.reasoning_tokens },
        total_tokens: u.total_tokens(),
    }
}

/// The response's `status` and `incomplete_details.reason` for how the answer ended. A cut or
/// filtered answer is `incomplete`: clients (and Codex) treat `completed` as the whole answer.
fn outcome(finish: Option<&FinishReason>, tool_calls: bool) -> (&'static str, Option<Incomplete>) {
    match openai::finish_reason(finish, tool_calls) {
        "length" => ("incomplete", Some(Incomplete { reason: "max_output_tokens" })),
        "content_filter" => ("incomplete", Some(Incomplete { reason: "content_filter" })),
        _ => ("completed", None),
    }
}

/// A thinking block as a reasoning item's content: its text and, when the provider signed or
/// redacted it, the block sealed for the client to send back. `None` for an empty block
/// without a signature, which has nothing to show or send.
fn block_kind(block: &ThinkingBlock) -> Option<Kind<'_>> {
    let (text, signed) = match block {
        ThinkingBlock::Thinking { thinking, signature } => (thinking.as_str(), !signature.is_empty()),
        ThinkingBlock::Redacted { .. } => ("", true),
    };
    let sealed = signed.then(|| seal(&Sealed::from(block)));
    (!text.is_empty() || sealed.is_some()).then_some(Kind::Reasoning { text: Cow::Borrowed(text), sealed })
}

/// A custom tool's input from the arguments of the function call it was offered as (see
/// `custom_tool`): the [`CUSTOM_INPUT`] string, or else the arguments as text, as the backend
/// sent them (a model that ignored the schema). Never refused: the client's tool sees what the
/// model wrote and can say what is wrong with it, where a refusal would cost the whole turn.
/// No arguments at all (`{}`, or nothing streamed) is an empty input, in a JSON answer and in
/// a stream alike.
fn custom_input(arguments: &Value) -> Cow<'_, str> {
    match arguments {
        Value::Object(o) if o.is_empty() => Cow::Borrowed(""),
        Value::Object(o) => match o.get(CUSTOM_INPUT) {
            Some(Value::String(input)) => Cow::Borrowed(input),
            _ => arguments_text(arguments),
        },
        // Arguments an adapter kept as text (not valid JSON, or JSON it did not parse).
        Value::String(raw) => custom_input_of(raw).map_or(Cow::Borrowed(raw), Cow::Owned),
        other => arguments_text(other),
    }
}

/// The [`CUSTOM_INPUT`] string of argument text, when it is a JSON object that has one; empty
/// for an empty object (no input, as [`custom_input`] reads `{}`).
fn custom_input_of(raw: &str) -> Option<String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(o)) if o.is_empty() => Some(String::new()),
        Ok(Value::Object(mut o)) => match o.remove(CUSTOM_INPUT) {
            Some(Value::String(input)) => Some(input),
            _ => None,
        },
        _ => None,
    }
}

/// Claude's `server_tool_use` of its web search as a `web_search_call` item, still
/// `in_progress`: its id is `ws_` and the search's, so the item is the same in a stream and a
/// JSON answer. `None` for any other block.
fn search_call(block: &NativeBlock) -> Option<Item<'static>> {
    let b = &block.block;
    if block.kind() != "server_tool_use" || b.get("name").and_then(Value::as_str) != Some(WEB_SEARCH_NAME) {
        return None;
    }
    let call_id = b.get("id").and_then(Value::as_str).unwrap_or_default();
    let id = if call_id.is_empty() { ids::new_id("ws_") } else { format!("ws_{call_id}") };
    let query = b.pointer("/input/query").and_then(Value::as_str).map(str::to_owned);
    let kind =
        Kind::Search { call_id: call_id.to_owned(), query, outcome: Searched::Pending, sources: Vec::new() };
    Some(Item::new(id, "in_progress", kind))
}

/// A search's results (`web_search_tool_result`): the search they answer, what came of it and,
/// when `sources` asks, the results' URLs. `None` for any other block.
fn search_result(block: &NativeBlock, sources: bool) -> Option<(&str, Searched, Vec<String>)> {
    if block.kind() != "web_search_tool_result" {
        return None;
    }
    let call_id = block.block.get("tool_use_id").and_then(Value::as_str)?;
    // Results are a list; an error (`web_search_tool_result_error`) is an object.
    match block.block.get("content") {
        Some(Value::Array(results)) => {
            let urls = results.iter().filter_map(|r| r.get("url").and_then(Value::as_str));
            let urls = if sources { urls.map(str::to_owned).collect() } else { Vec::new() };
            Some((call_id, Searched::Done, urls))
        }
        _ => Some((call_id, Searched::Failed, Vec::new())),
    }
}

/// The `web_search_call` item among `items` of the search `call_id`, by its output index.
fn search_item(items: &[Item<'_>], call_id: &str) -> Option<usize> {
    items.iter().rposition(|i| matches!(&i.kind, Kind::Search { call_id: c, .. } if c == call_id))
}

/// Records a search's results on its item; its `status` says what came of it.
fn searched(item: &mut Item<'_>, result: Searched, urls: Vec<String>) {
    if let Kind::Search { outcome, sources, .. } = &mut item.kind {
        *outcome = result;
        *sources = urls;
        item.status = result.status();
    }
}

/// A citation of the text block that starts `from` characters into the answer's text, with
/// the offsets counted in the block's own text (its `output_text` part).
fn in_part(citation: &UrlCitation, from: usize) -> UrlCitation {
    UrlCitation {
        start: citation.start.saturating_sub(from),
        end: citation.end.saturating_sub(from),
        ..citation.clone()
    }
}

fn response_body(resp: &ChatResponse, echo: &Echo, outputs: &Outputs) -> Vec<u8> {
    response_body_at(resp, echo, outputs, ids::unix_now())
}

fn response_body_at(resp: &ChatResponse, echo: &Echo, outputs: &Outputs, created_at: u64) -> Vec<u8> {
    let custom = &outputs.custom;
    let (status, incomplete) = outcome(resp.finish_reason.as_ref(), !resp.tool_calls.is_empty());
    let blocks = resp.blocks_for_client();
    let mut output = Vec::with_capacity(2 + blocks.len());
    let reasoning = |kind| Item::new(ids::new_id("rs_"), "completed", kind);
    let message = |text| Item::new(ids::new_id("msg_"), "completed", Kind::Message(text));
    // The citations of search results, placed in the parts of the text blocks they cite (each
    // block a message item). Characters are counted only as far as there are citations.
    let citations = url_citations(resp);
    let mut cited = citations.iter().peekable();
    let mut chars = 0;
    if resp.thinking.is_empty() {
        if let Some(text) = resp.reasoning.as_deref().filter(|r| !r.is_empty()) {
            output.push(reasoning(Kind::Reasoning { text: Cow::Borrowed(text), sealed: None }));
        }
    }
    // Items in the order of the answer's blocks: a reasoning item per thinking block (their
    // text is the answer's `reasoning`, block by block), a message per text block, an item
    // per call. The client sends them back in that order, which `input_item` keeps.
    for block in blocks {
        match block {
            Block::Thinking(block) => output.extend(block_kind(block).map(reasoning)),
            Block::Text { text, .. } => {
                let mut item = message(Cow::Borrowed(text));
                if cited.peek().is_some() {
                    let from = chars;
                    chars += text.chars().count();
                    while let Some(c) = cited.next_if(|c| c.start < chars) {
                        item.annotations.push(in_part(c, from));
                    }
                }
                output.push(item);
            }
            // A search is an item where Claude ran it; its results say how it went. Other
            // server tool blocks have no item of their kind in the Responses API.
            Block::Native(block) => {
                if let Some(mut item) = search_call(block) {
                    // Until its results say otherwise.
                    item.status = Searched::Pending.status();
                    output.push(item);
                } else if let Some((call_id, result, urls)) = search_result(block, outputs.sources) {
                    if let Some(item) = search_item(&output, call_id).and_then(|i| output.get_mut(i)) {
                        searched(item, result, urls);
                    }
                }
            }
            Block::ToolCall { call, .. } => {
                let is_custom = custom.contains(&call.name);
                output.push(Item::new(
                    ids::new_id(if is_custom { CUSTOM_CALL_PREFIX } else { "fc_" }),
                    "completed",
                    Kind::Call {
                        call_id: Cow::Borrowed(&call.id),
                        name: Cow::Borrowed(&call.name),
                        arguments: if is_custom {
                            custom_input(&call.arguments)
                        } else {
                            arguments_text(&call.arguments)
                        },
                        custom: is_custom,
                    },
                ));
            }
        }
    }
    // An answer with neither text nor calls still has its (empty) message: clients look for
    // the assistant's message, not for an empty list.
    if resp.content.is_empty() && resp.tool_calls.is_empty() {
        output.push(message(Cow::Borrowed("")));
    }
    // The item being written when the answer was cut is the incomplete one.
    if let (Some(_), Some(last)) = (&incomplete, output.last_mut()) {
        last.status = "incomplete";
    }
    let id = ids::new_id("resp_");
    let body = WireResponse {
        id: &id,
        object: "response",
        created_at,
        status,
        background: false,
        error: None,
        incomplete_details: incomplete,
        model: &resp.model,
        output: &output,
        usage: Some(wire_usage(&resp.usage)),
        echo,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// What a `custom_tool_call` item's id starts with, as OpenAI's do.
const CUSTOM_CALL_PREFIX: &str = "ctc_";

// ---------------------------------------------------------------------------------------------
// Stream

#[derive(Serialize)]
struct ResponseEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    response: WireResponse<'a>,
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    output_index: usize,
    item: WireItem<'a>,
}

#[derive(Serialize)]
struct PartEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    part: WirePart<'a>,
}

/// `response.output_text.delta` (with `content_index` and `logprobs`),
/// `response.reasoning_text.delta` (with `content_index`),
/// `response.function_call_arguments.delta` and `response.custom_tool_call_input.delta`
/// (neither).
#[derive(Serialize)]
struct DeltaEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

/// `response.output_text.done` and `response.reasoning_text.done`.
#[derive(Serialize)]
struct TextDoneEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

/// `response.function_call_arguments.done` (with `arguments`) and
/// `response.custom_tool_call_input.done` (with `input`).
#[derive(Serialize)]
struct CallDoneEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
}

/// `response.output_text.annotation.added`.
#[derive(Serialize)]
struct AnnotationEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    annotation_index: usize,
    annotation: WireAnnotation<'a>,
}

/// `response.web_search_call.in_progress`, `….searching` and `….completed`.
#[derive(Serialize)]
struct SearchEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    output_index: usize,
    item_id: &'a str,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    r#type: &'static str,
    sequence_number: u64,
    code: Option<&'a str>,
    message: &'a str,
    param: Option<&'a str>,
}

/// The Responses event sequence. Items are written one after another, as OpenAI writes
/// them: an item is closed (its `.done` events) when the next one starts or the answer ends.
///
/// Tool calls arrive from every adapter one after another; should a server interleave two,
/// a fragment of a call already closed still goes out as a delta of that call, and the final
/// response carries its whole arguments.
///
/// A call is a custom tool's when the name it starts with is one (every adapter names a call
/// in its first fragment); its arguments are held, not streamed, and its input goes out
/// whole when it closes (the module doc says why).
///
/// A web search is an item from Claude's `server_tool_use` to its results (both come whole,
/// one after the other). The citations of its results are placed as the text blocks they
/// cite end, with [`Citations`], only when the request offered the search.
struct ResponsesEncoder {
    echo: Echo,
    outputs: Outputs,
    cites: Option<Citations>,
    id: String,
    created_at: u64,
    model: String,
    /// The next event's `sequence_number`.
    seq: u64,
    started: bool,
    items: Vec<Item<'static>>,
    /// The item being written, by its output index.
    open: Option<usize>,
    /// The calls so far.
    calls: ToolCallSlots,
    /// Each call's output index, by its position in `calls`.
    call_items: Vec<usize>,
}

/// A stream's citations of search results, placed on the message items of the text blocks
/// they cite.
#[derive(Debug, Default)]
struct Citations {
    tracker: StreamCitations,
    /// Characters of answer text so far.
    chars: usize,
    /// Each message item's output index and where its text starts, in characters of the
    /// answer's text: where a citation starts says whose it is (it covers a whole block).
    parts: Vec<(usize, usize)>,
}

impl Citations {
    /// A piece of the text of the message item at output `index`.
    fn text(&mut self, index: usize, text: &str) {
        if self.parts.last().map(|&(i, _)| i) != Some(index) {
            self.parts.push((index, self.chars));
        }
        self.chars += text.chars().count();
        self.tracker.text(text);
    }
}

impl ResponsesEncoder {
    fn new(model: String, echo: Echo, outputs: Outputs) -> ResponsesEncoder {
        ResponsesEncoder {
            echo,
            cites: outputs.web_search.then(Citations::default),
            outputs,
            id: ids::new_id("resp_"),
            created_at: ids::unix_now(),
            model,
            seq: 0,
            started: false,
            items: Vec::new(),
            open: None,
            calls: ToolCallSlots::new(),
            call_items: Vec::new(),
        }
    }

    fn bump(&mut self) -> u64 {
        next(&mut self.seq)
    }

    fn response_event(
        &mut self,
        out: &mut Vec<u8>,
        name: &'static str,
        status: &'static str,
        incomplete: Option<Incomplete>,
        error: Option<WireError<'_>>,
        usage: Option<&Usage>,
    ) {
        let sequence_number = self.bump();
        let response = WireResponse {
            id: &self.id,
            object: "response",
            created_at: self.created_at,
            status,
            background: false,
            error,
            incomplete_details: incomplete,
            model: &self.model,
            output: &self.items,
            usage: usage.map(wire_usage),
            echo: &self.echo,
        };
        respond::event_frame(out, name, &ResponseEvent { r#type: name, sequence_number, response });
    }

    fn item_event(&mut self, out: &mut Vec<u8>, name: &'static str, index: usize, whole: bool) {
        if let Some(item) = self.items.get(index) {
            let sequence_number = next(&mut self.seq);
            let event =
                ItemEvent { r#type: name, sequence_number, output_index: index, item: item.wire(whole) };
            respond::event_frame(out, name, &event);
        }
    }

    fn part_event(&mut self, out: &mut Vec<u8>, name: &'static str, index: usize) {
        let Some(item) = self.items.get(index) else { return };
        let Some(part) = item.part() else { return };
        let sequence_number = next(&mut self.seq);
        let event = PartEvent {
            r#type: name,
            sequence_number,
            item_id: &item.id,
            output_index: index,
            content_index: 0,
            part,
        };
        respond::event_frame(out, name, &event);
    }

    fn delta_event(&mut self, out: &mut Vec<u8>, index: usize, delta: &str) {
        if let Some(item) = self.items.get(index) {
            delta_frame(&mut self.seq, out, item, index, delta);
        }
    }

    /// Starts an output item, its id made with `prefix`, closing the one before it.
    fn open_item(&mut self, out: &mut Vec<u8>, prefix: &str, kind: Kind<'static>) -> usize {
        self.open_with(out, Item::new(ids::new_id(prefix), "in_progress", kind))
    }

    /// Starts `item`, closing the one before it.
    fn open_with(&mut self, out: &mut Vec<u8>, item: Item<'static>) -> usize {
        self.close(out, "completed");
        let index = self.items.len();
        self.items.push(item);
        self.open = Some(index);
        self.item_event(out, "response.output_item.added", index, false);
        // Items without a text part (calls, redacted blocks) announce none.
        self.part_event(out, "response.content_part.added", index);
        index
    }

    /// Ends the open item, if any, with `status`: its text or arguments whole, then the item.
    /// A search's own status is what its results said.
    fn close(&mut self, out: &mut Vec<u8>, status: &'static str) {
        let Some(index) = self.open.take() else { return };
        if self.cites.is_some() && matches!(self.items.get(index), Some(Item { kind: Kind::Message(_), .. }))
        {
            self.annotate(out);
        }
        let Some(item) = self.items.get_mut(index) else { return };
        item.status = match item.kind {
            Kind::Search { outcome, .. } => outcome.status(),
            _ => status,
        };
        if let Kind::Call { arguments, custom: true, .. } = &mut item.kind {
            if let Some(input) = custom_input_of(arguments) {
                *arguments = Cow::Owned(input);
            }
        }
        let item = &*item;
        let seq = &mut self.seq;
        match &item.kind {
            Kind::Message(text) | Kind::Reasoning { text, .. } => {
                if let Some(part) = item.part() {
                    let message = matches!(item.kind, Kind::Message(_));
                    let name =
                        if message { "response.output_text.done" } else { "response.reasoning_text.done" };
                    let event = TextDoneEvent {
                        r#type: name,
                        sequence_number: next(seq),
                        item_id: &item.id,
                        output_index: index,
                        content_index: 0,
                        text,
                        logprobs: message.then_some([]),
                    };
                    respond::event_frame(out, name, &event);
                    let name = "response.content_part.done";
                    let event = PartEvent {
                        r#type: name,
                        sequence_number: next(seq),
                        item_id: &item.id,
                        output_index: index,
                        content_index: 0,
                        part,
                    };
                    respond::event_frame(out, name, &event);
                }
            }
            Kind::Call { arguments, custom: false, .. } => {
                let name = "response.function_call_arguments.done";
                let event = CallDoneEvent {
                    r#type: name,
                    sequence_number: next(seq),
                    item_id: &item.id,
                    output_index: index,
                    arguments: Some(arguments),
                    input: None,
                };
                respond::event_frame(out, name, &event);
            }
            Kind::Call { arguments: input, custom: true, .. } => {
                // The input whole, as the one delta (see the module doc) and then done.
                if !input.is_empty() {
                    delta_frame(seq, out, item, index, input);
                }
                let name = "response.custom_tool_call_input.done";
                let event = CallDoneEvent {
                    r#type: name,
                    sequence_number: next(seq),
                    item_id: &item.id,
                    output_index: index,
                    arguments: None,
                    input: Some(input),
                };
                respond::event_frame(out, name, &event);
            }
            Kind::Search { outcome: Searched::Done, .. } => {
                search_frame(seq, out, "response.web_search_call.completed", item, index);
            }
            Kind::Search { .. } => {}
        }
        self.item_event(out, "response.output_item.done", index, true);
    }

    /// The citations placed since the last call (those of the text block that just ended,
    /// mostly), each added to its message item with a `response.output_text.annotation.added`.
    /// Offsets count characters of the item's text, which is one text block.
    fn annotate(&mut self, out: &mut Vec<u8>) {
        let Some(cites) = self.cites.as_mut() else { return };
        // `finish` places what it can, and can be asked again as the stream goes on.
        for citation in cites.tracker.finish() {
            let Some(&(index, from)) = cites.parts.iter().rev().find(|&&(_, from)| from == citation.start)
            else {
                continue;
            };
            let Some(item) = self.items.get_mut(index) else { continue };
            let annotation_index = item.annotations.len();
            item.annotations.push(in_part(&citation, from));
            let Some(annotation) = item.annotations.last() else { continue };
            let name = "response.output_text.annotation.added";
            let event = AnnotationEvent {
                r#type: name,
                sequence_number: next(&mut self.seq),
                item_id: &item.id,
                output_index: index,
                content_index: 0,
                annotation_index,
                annotation: WireAnnotation::from(annotation),
            };
            respond::event_frame(out, name, &event);
        }
    }

    /// A block of the provider's own: a search opens its item, its results close it. Other
    /// blocks have no item of their kind in the Responses API.
    fn native(&mut self, out: &mut Vec<u8>, block: &NativeBlock) {
        if let Some(item) = search_call(block) {
            // Claude has written the query; the search runs until its results come.
            let index = self.open_with(out, item);
            for name in ["response.web_search_call.in_progress", "response.web_search_call.searching"] {
                if let Some(item) = self.items.get(index) {
                    search_frame(&mut self.seq, out, name, item, index);
                }
            }
        } else if let Some((call_id, result, urls)) = search_result(block, self.outputs.sources) {
            let Some(index) = search_item(&self.items, call_id) else { return };
            if let Some(item) = self.items.get_mut(index) {
                searched(item, result, urls);
            }
            // Results for a search already closed (something came between) are in the final
            // response only.
            if self.open == Some(index) {
                self.close(out, result.status());
            }
        }
    }

    /// The output index of the call this fragment belongs to, starting the call if it is new.
    fn call_item(&mut self, out: &mut Vec<u8>, delta: &ToolCallDelta) -> usize {
        let slot = self.calls.place(delta);
        if let Some(&index) = self.call_items.get(slot.position) {
            return index;
        }
        let call_id = delta.id.clone().unwrap_or_else(claudette_core::types::new_tool_call_id);
        let name = delta.name.clone().unwrap_or_default();
        let custom = self.outputs.custom.contains(&name);
        let kind = Kind::Call {
            call_id: Cow::Owned(call_id),
            name: Cow::Owned(name),
            arguments: Cow::Owned(String::new()),
            custom,
        };
        let index = self.open_item(out, if custom { CUSTOM_CALL_PREFIX } else { "fc_" }, kind);
        self.call_items.push(index);
        index
    }

    /// The open item if it is a message (`reasoning: false`) or reasoning item, else a new one.
    fn text_item(&mut self, out: &mut Vec<u8>, reasoning: bool) -> usize {
        let open = self.open.filter(|&i| {
            matches!(
                (self.items.get(i).map(|item| &item.kind), reasoning),
                (Some(Kind::Reasoning { .. }), true) | (Some(Kind::Message(_)), false)
            )
        });
        match open {
            Some(i) => i,
            None if reasoning => {
                self.open_item(out, "rs_", Kind::Reasoning { text: Cow::Owned(String::new()), sealed: None })
            }
            None => self.open_item(out, "msg_", Kind::Message(Cow::Owned(String::new()))),
        }
    }

    /// Ends a thinking block: the reasoning item being written gets the block sealed and is
    /// closed, so the next block's reasoning starts an item of its own. A signature with no
    /// reasoning item open (a block whose text was empty) and a redacted block are items of
    /// their own, without text.
    fn end_block(&mut self, out: &mut Vec<u8>, end: ThinkingSeal) {
        let open = self.open.and_then(|i| self.items.get_mut(i));
        match end {
            ThinkingSeal::Signature(signature) => match open {
                Some(Item { kind: Kind::Reasoning { text, sealed }, .. }) => {
                    let block =
                        Sealed::Thinking { thinking: Cow::Borrowed(text), signature: signature.into() };
                    *sealed = Some(seal(&block));
                }
                _ => {
                    let block = Sealed::Thinking { thinking: Cow::Borrowed(""), signature: signature.into() };
                    self.sealed_item(out, &block);
                }
            },
            ThinkingSeal::Redacted(data) => {
                self.sealed_item(out, &Sealed::RedactedThinking { data: data.into() })
            }
        }
        self.close(out, "completed");
    }

    /// Opens a reasoning item holding only a sealed block.
    fn sealed_item(&mut self, out: &mut Vec<u8>, block: &Sealed<'_>) {
        let kind = Kind::Reasoning { text: Cow::Borrowed(""), sealed: Some(seal(block)) };
        self.open_item(out, "rs_", kind);
    }

    fn append(&mut self, index: usize, text: &str) {
        if let Some(item) = self.items.get_mut(index) {
            match &mut item.kind {
                Kind::Message(t) | Kind::Reasoning { text: t, .. } => t.to_mut().push_str(text),
                Kind::Call { arguments, .. } => arguments.to_mut().push_str(text),
                Kind::Search { .. } => {}
            }
        }
    }
}

/// The `response.web_search_call.*` event `name` of the search `item` at output `index`.
fn search_frame(seq: &mut u64, out: &mut Vec<u8>, name: &'static str, item: &Item<'_>, index: usize) {
    let event =
        SearchEvent { r#type: name, sequence_number: next(seq), output_index: index, item_id: &item.id };
    respond::event_frame(out, name, &event);
}

/// The delta event of `item` at output `index`.
fn delta_frame(seq: &mut u64, out: &mut Vec<u8>, item: &Item<'_>, index: usize, delta: &str) {
    let (name, content_index, logprobs) = match item.kind {
        Kind::Message(_) => ("response.output_text.delta", Some(0), Some([])),
        Kind::Reasoning { .. } => ("response.reasoning_text.delta", Some(0), None),
        Kind::Call { custom: false, .. } => ("response.function_call_arguments.delta", None, None),
        Kind::Call { custom: true, .. } => ("response.custom_tool_call_input.delta", None, None),
        // A search has no deltas: it comes whole.
        Kind::Search { .. } => return,
    };
    let sequence_number = next(seq);
    let event = DeltaEvent {
        r#type: name,
        sequence_number,
        item_id: &item.id,
        output_index: index,
        content_index,
        delta,
        logprobs,
    };
    respond::event_frame(out, name, &event);
}

/// Takes the next sequence number.
fn next(seq: &mut u64) -> u64 {
    let n = *seq;
    *seq += 1;
    n
}

impl Encoder for ResponsesEncoder {
    fn event(&mut self, ev: StreamEvent, out: &mut Vec<u8>) -> bool {
        if !self.started {
            self.started = true;
            self.response_event(out, "response.created", "in_progress", None, None, None);
            self.response_event(out, "response.in_progress", "in_progress", None, None, None);
        }
        match ev {
            StreamEvent::TextDelta { text } | StreamEvent::ReasoningDelta { text } if text.is_empty() => {
                false
            }
            StreamEvent::TextDelta { text } => {
                let index = self.text_item(out, false);
                self.append(index, &text);
                self.delta_event(out, index, &text);
                if let Some(cites) = self.cites.as_mut() {
                    cites.text(index, &text);
                }
                false
            }
            StreamEvent::ReasoningDelta { text } => {
                let index = self.text_item(out, true);
                self.append(index, &text);
                self.delta_event(out, index, &text);
                false
            }
            StreamEvent::ThinkingSeal { seal } => {
                self.end_block(out, seal);
                false
            }
            StreamEvent::ToolCall { delta } => {
                let index = self.call_item(out, &delta);
                if let (Some(name), Some(Item { kind: Kind::Call { name: known, .. }, .. })) =
                    (&delta.name, self.items.get_mut(index))
                {
                    if known.is_empty() {
                        *known = Cow::Owned(name.clone());
                    }
                }
                if !delta.arguments.is_empty() {
                    self.append(index, &delta.arguments);
                    // A custom call's fragments are JSON, not its input: held until it closes.
                    let custom = matches!(
                        self.items.get(index),
                        Some(Item { kind: Kind::Call { custom: true, .. }, .. })
                    );
                    if !custom {
                        self.delta_event(out, index, &delta.arguments);
                    }
                }
                false
            }
            StreamEvent::Native { block } => {
                self.native(out, &block);
                false
            }
            StreamEvent::Citation { citation } => {
                if let Some(cites) = self.cites.as_mut() {
                    cites.tracker.citation(&citation);
                }
                false
            }
            StreamEvent::NativeField { .. } => false,
            // A message item per text block, as in a JSON answer.
            StreamEvent::TextEnd => {
                if matches!(
                    self.open.and_then(|i| self.items.get(i)),
                    Some(Item { kind: Kind::Message(_), .. })
                ) {
                    self.close(out, "completed");
                }
                false
            }
            StreamEvent::Usage { .. } => false,
            StreamEvent::Done { end } => {
                let (status, incomplete) = outcome(end.finish_reason.as_ref(), !self.calls.is_empty());
                if self.items.is_empty() {
                    self.text_item(out, false);
                }
                self.close(out, if incomplete.is_some() { "incomplete" } else { "completed" });
                // Citations after the answer's last text belong to its last text block.
                self.annotate(out);
                let name = if incomplete.is_some() { "response.incomplete" } else { "response.completed" };
                self.response_event(out, name, status, incomplete, None, Some(&end.usage));
                true
            }
            StreamEvent::Error { error } => {
                if let Some(item) = self.open.take().and_then(|i| self.items.get_mut(i)) {
                    item.status = "incomplete";
                }
                let api = ApiError::from_backend(&error);
                let name = "error";
                let event = ErrorEvent {
                    r#type: name,
                    sequence_number: self.bump(),
                    code: api.code.as_deref(),
                    message: &api.message,
                    param: api.param.as_deref(),
                };
                respond::event_frame(out, name, &event);
                // `response.error.code` is an enum in OpenAI's SDKs; the precise code is in
                // the `error` event.
                let code = if api.class == Class::RateLimit { "rate_limit_exceeded" } else { "server_error" };
                let failed = WireError { code, message: &api.message };
                self.response_event(out, "response.failed", "failed", None, Some(failed), None);
                true
            }
        }
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": keep-alive\n\n");
    }
}

#[cfg(test)]
mod tests {
    use claudette_core::{BackendError, BlockKind, DocumentSource, ErrorKind, StreamEnd, TextCitations};
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Parsed, ApiError> {
        serde_json::from_value::<ResponsesRequest>(v).unwrap().into_chat()
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCall {
            delta: ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: arguments.into(),
            },
        }
    }

    fn done(finish: FinishReason) -> StreamEvent {
        StreamEvent::Done {
            end: StreamEnd { finish_reason: Some(finish), usage: Usage::reported(3, 2), cost: 0.0 },
        }
    }

    /// Runs `events` through an encoder: each frame's event name and data, after checking the
    /// name is the data's `type` and the sequence numbers count from 0.
    fn encode(events: Vec<StreamEvent>) -> Vec<(String, Value)> {
        encode_custom(Vec::new(), events)
    }

    /// [`encode`] for a request whose `custom` tools are these.
    fn encode_custom(custom: Vec<String>, events: Vec<StreamEvent>) -> Vec<(String, Value)> {
        let mut enc =
            ResponsesEncoder::new("m".into(), Echo::default(), Outputs { custom, ..Outputs::default() });
        let mut out = Vec::new();
        let n = events.len();
        for (i, ev) in events.into_iter().enumerate() {
            assert_eq!(enc.event(ev, &mut out), i + 1 == n, "only the last event ends the stream");
        }
        let text = String::from_utf8(out).unwrap();
        let frames: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (name, data) = f.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                (name, data)
            })
            .collect();
        for (i, (name, data)) in frames.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i as u64, "{text}");
        }
        frames
    }

    fn names(frames: &[(String, Value)]) -> Vec<&str> {
        frames.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn input_images_are_images_where_they_stood() {
        let p = parse(json!({"input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "one"},
                {"type": "input_image", "image_url": "data:image/gif;base64,R0lGODlh", "detail": "auto"},
                {"type": "input_text", "text": "two"},
                {"type": "input_image", "image_url": "https://example.com/x.jpg", "file_id": null}]}]}))
        .unwrap();
        let m = &p.request.messages[0];
        assert_eq!(m.content, "onetwo");
        assert_eq!(
            m.images,
            [
                Image {
                    at: 3,
                    source: ImageSource::Base64 { media_type: "image/gif".into(), data: "R0lGODlh".into() }
                },
                Image { at: 6, source: ImageSource::Url { url: "https://example.com/x.jpg".into() } },
            ]
        );
    }

    #[test]
    fn input_images_that_cannot_be_carried_are_named() {
        let refused = |item: Value| {
            let e = parse(json!({"input": [{"role": "user", "content": "hi"}, item]})).err().unwrap();
            (e.param.unwrap().into_owned(), e.message)
        };
        let user =
            |part: Value| json!({"role": "user", "content": [{"type": "input_text", "text": "see"}, part]});
        let image = |url: &str| json!({"type": "input_image", "image_url": url});
        let at = "input[1].content[1]";
        for (url, why) in [
            ("data:image/png;base64", "data:<media type>;base64,<data>"),
            ("data:text/plain;base64,aGk=", "text/plain"),
            ("javascript:alert(1)", "https://"),
        ] {
            let (param, message) = refused(user(image(url)));
            assert_eq!(param, format!("{at}.image_url"), "{url}");
            assert!(message.contains(why), "{url}: {message}");
        }
        let (param, message) = refused(user(json!({"type": "input_image", "file_id": "file-1"})));
        assert_eq!(param, format!("{at}.file_id"));
        assert!(message.contains("stateless"), "{message}");
        assert_eq!(
            refused(user(json!({"type": "input_image", "detail": "low"}))).0,
            format!("{at}.image_url")
        );
        let assistant = json!({"role": "assistant", "content": [image("https://example.com/a.png")]});
        assert_eq!(refused(assistant).0, "input[1].content[0]");
        assert_eq!(refused(user(json!({"type": "input_file", "file_id": "f"}))).0, format!("{at}.file_id"));
    }

    const PDF_URL: &str = "data:application/pdf;base64,JVBERi0xLjcK";
    const REPORT: &str = "https://example.com/report.pdf";

    #[test]
    fn input_files_are_documents_where_they_stood() {
        let p = parse(json!({"input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "read "},
                {"type": "input_file", "file_data": PDF_URL, "filename": "a.pdf", "detail": "high"},
                {"type": "input_image", "image_url": "https://example.com/x.jpg"},
                {"type": "input_text", "text": "and"},
                {"type": "input_file", "file_url": REPORT, "file_id": null}]},
            {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "done"},
                {"type": "input_file", "file_data": PDF_URL, "filename": "r.pdf"}]}]}))
        .unwrap();
        let pdf = |at: u32, title: Option<&str>| Document {
            citations: false,
            at,
            source: DocumentSource::Base64 { data: "JVBERi0xLjcK".into() },
            title: title.map(Into::into),
        };
        let user = &p.request.messages[0];
        assert_eq!(user.content, "read and");
        assert_eq!(
            user.documents,
            [
                pdf(5, Some("a.pdf")),
                Document {
                    citations: false,
                    at: 8,
                    source: DocumentSource::Url { url: REPORT.into() },
                    title: None
                }
            ]
        );
        assert_eq!(user.images.iter().map(|i| i.at).collect::<Vec<_>>(), [5]);
        let output = &p.request.messages[2];
        assert_eq!((output.role, output.content.as_str()), (Role::Tool, "done"));
        assert_eq!(output.documents, [pdf(4, Some("r.pdf"))]);
        p.request.checked_media().unwrap();
    }

    #[test]
    fn input_files_that_cannot_be_carried_are_named() {
        let refused = |item: Value| {
            let e = parse(json!({"input": [
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}, item]}))
            .err()
            .unwrap();
            (e.param.unwrap().into_owned(), e.message)
        };
        let user =
            |file: Value| json!({"role": "user", "content": [{"type": "input_text", "text": "see"}, file]});
        let output = |file: Value| json!({"type": "function_call_output", "call_id": "c", "output": [file]});
        for (item, at) in
            [(user as fn(Value) -> Value, "input[1].content[1]"), (output, "input[1].output[0]")]
        {
            let (param, message) = refused(item(json!({"type": "input_file", "file_id": "file-abc"})));
            assert_eq!(param, format!("{at}.file_id"));
            assert!(message.contains("no Files API"), "{message}");
            for (data, why) in [
                ("data:text/csv;base64,YSxi", "only PDFs"),
                ("data:application/pdf;base64,%PDF", "base64"),
                (REPORT, "data:<media type>;base64,<data>"),
            ] {
                let (param, message) = refused(item(json!({"type": "input_file", "file_data": data})));
                assert_eq!(param, format!("{at}.file_data"), "{data}");
                assert!(message.contains(why), "{data}: {message}");
            }
            for url in ["ftp://example.com/a.pdf", PDF_URL, "report.pdf"] {
                let (param, message) = refused(item(json!({"type": "input_file", "file_url": url})));
                assert_eq!(param, format!("{at}.file_url"), "{url}");
                assert!(message.contains("https://"), "{url}: {message}");
            }
            let both = json!({"type": "input_file", "file_data": PDF_URL, "file_url": REPORT});
            assert_eq!(refused(item(both)).0, format!("{at}.file_url"));
            assert_eq!(
                refused(item(json!({"type": "input_file", "filename": "a.pdf"}))).0,
                format!("{at}.file_data")
            );
        }
        let assistant =
            json!({"role": "assistant", "content": [{"type": "input_file", "file_data": PDF_URL}]});
        let (param, message) = refused(assistant);
        assert_eq!(param, "input[1].content[0]");
        assert!(message.contains("`input_file` content is only accepted in user messages"), "{message}");
    }

    #[test]
    fn tool_outputs_carry_their_images_where_they_stood() {
        let p = parse(json!({"input": [
            {"role": "user", "content": "shoot"},
            {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
            {"type": "custom_tool_call", "call_id": "c2", "name": "snap", "input": "x"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "before "},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K", "detail": "high"},
                {"type": "input_text", "text": "after"}]},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": [
                {"type": "input_image", "image_url": "https://example.com/s.webp"}]}]}))
        .unwrap();
        let [_, _, shot, snap] = &p.request.messages[..] else { panic!("{:?}", p.request.messages) };
        assert_eq!(
            (shot.role, shot.tool_call_id.as_deref(), shot.name.as_deref()),
            (Role::Tool, Some("c1"), Some("shot"))
        );
        assert_eq!(shot.content, "before after");
        assert_eq!(
            shot.images,
            [Image {
                at: 7,
                source: ImageSource::Base64 { media_type: "image/png".into(), data: "iVBORw0K".into() }
            }]
        );
        assert_eq!((snap.role, snap.content.as_str()), (Role::Tool, ""));
        assert_eq!(
            snap.images,
            [Image { at: 0, source: ImageSource::Url { url: "https://example.com/s.webp".into() } }]
        );
        p.request.checked_media().unwrap();
    }

    #[test]
    fn tool_output_parts_that_cannot_be_carried_are_named() {
        let refused = |part: Value| {
            let e = parse(json!({"input": [
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "x"}, part]}]}))
            .err()
            .unwrap();
            (e.param.unwrap().into_owned(), e.message)
        };
        let at = "input[1].output[1]";
        let (param, message) = refused(json!({"type": "input_audio", "input_audio": {"data": "AAAA"}}));
        assert_eq!(param, at);
        assert!(message.contains("input_audio"), "{message}");
        let (param, message) = refused(json!({"type": "input_video", "url": "https://example.com/v.mp4"}));
        assert_eq!(param, at);
        assert!(message.contains("input_video"), "{message}");
        assert_eq!(
            refused(json!({"type": "input_image", "image_url": "ftp://example.com/a.png"})).0,
            format!("{at}.image_url")
        );
        assert_eq!(
            refused(json!({"type": "input_image", "image_url": "data:image/bmp;base64,Qk0="})).0,
            format!("{at}.image_url")
        );
        assert_eq!(refused(json!({"type": "input_image", "file_id": "file-1"})).0, format!("{at}.file_id"));
        assert_eq!(refused(json!({"type": "input_text"})).0, format!("{at}.text"));
    }

    #[test]
    fn input_items_become_the_neutral_conversation() {
        let p = parse(json!({
            "model": "auto",
            "instructions": "be brief",
            "input": [
                {"role": "developer", "content": "answer in French"},
                {"role": "user", "content": [{"type": "input_text", "text": "what is "}, {"type": "input_text", "text": "2+2?"}]},
                {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "Let me add.", "annotations": []}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "add", "arguments": "{\"a\":2}"},
                {"type": "function_call", "call_id": "c2", "name": "mul", "arguments": ""},
                {"type": "function_call_output", "call_id": "c1", "output": "4"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "0"}]}
            ],
            "tools": [{"type": "function", "name": "add"}, {"type": "function", "name": "mul", "parameters": null}],
            "tool_choice": {"type": "function", "name": "add"},
            "max_output_tokens": 64, "top_p": 0.5, "user": "u-1", "metadata": {"k": "v"},
            "reasoning": {"effort": "high", "summary": "auto"}, "text": {"format": {"type": "json_object"}},
            "stream": true, "store": true, "truncation": "auto"
        }))
        .unwrap();
        let r = &p.request;
        assert_eq!(p.model.as_deref(), Some("auto"));
        assert!(p.stream);
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::System, Role::User, Role::Assistant, Role::Tool, Role::Tool]);
        assert_eq!(r.messages[0].content, "be brief", "instructions come first");
        assert_eq!(r.messages[2].content, "what is 2+2?");
        // The answer's text and both its calls are one assistant turn; the reasoning is gone.
        let turn = &r.messages[3];
        assert_eq!(turn.content, "Let me add.");
        assert_eq!(turn.tool_calls.len(), 2);
        assert_eq!(turn.tool_calls[0].arguments, json!({"a": 2}));
        assert_eq!(turn.tool_calls[1].arguments, json!({}));
        assert_eq!(r.messages[4].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(r.messages[4].name.as_deref(), Some("add"));
        assert_eq!(r.messages[5].content, "0");
        assert_eq!(r.messages[5].name.as_deref(), Some("mul"));
        assert_eq!(r.tools[1].parameters, json!({"type": "object", "properties": {}}));
        assert_eq!(r.tool_choice, ToolChoice::Tool("add".into()));
        assert_eq!(r.max_tokens, Some(64));
        assert_eq!(
            r.thinking,
            Some(claudette_core::Thinking::Effort { effort: claudette_core::ReasoningEffort::High })
        );
        assert_eq!(r.response_format, ResponseFormat::JsonObject);
        assert_eq!(r.metadata["user"], "u-1");
        assert_eq!(
            p.echo.metadata,
            json!({"k": "v"}).as_object().cloned().unwrap(),
            "the echo is the client's"
        );
        assert!(!p.echo.store);
    }

    #[test]
    fn fields_at_fault_are_named() {
        let param = |v: Value| parse(v).err().and_then(|e| e.param).map(|p| p.into_owned());
        assert_eq!(param(json!({"input": []})).as_deref(), Some("input"));
        assert_eq!(param(json!({"input": 3})).as_deref(), Some("input"));
        assert_eq!(
            param(json!({"input": [{"role": "wizard", "content": "x"}]})).as_deref(),
            Some("input[0].role")
        );
        assert_eq!(param(json!({"input": [{"role": "user"}]})).as_deref(), Some("input[0].content"));
        assert_eq!(
            param(json!({"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file", "file_id": "f"}]}]}))
                .as_deref(),
            Some("input[0].output[0].file_id")
        );
        assert_eq!(
            param(json!({"input": "x", "tools": [{"type": "function"}]})).as_deref(),
            Some("tools[0].name")
        );
        assert_eq!(param(json!({"input": "x", "tool_choice": "sometimes"})).as_deref(), Some("tool_choice"));
        assert_eq!(
            param(
                json!({"input": "x", "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}})
            )
            .as_deref(),
            Some("tool_choice.type")
        );
        assert_eq!(
            param(json!({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}))
                .as_deref(),
            Some("text.format.name")
        );
        assert_eq!(
            param(json!({"input": "x", "text": {"format": {"type": "xml"}}})).as_deref(),
            Some("text.format.type")
        );
        assert!(parse(json!({"input": "x", "background": false, "store": true})).is_ok());
        let located = |body: &str| {
            let e = parse_located::<ResponsesRequest>(body.as_bytes(), locate, |p, _| {
                ApiError::invalid("").with_param(p)
            })
            .unwrap_err();
            e.param.map(|p| p.into_owned())
        };
        assert_eq!(
            located(r#"{"input": "x", "reasoning": {"effort": 3}}"#).as_deref(),
            Some("reasoning.effort")
        );
        assert_eq!(located(r#"{"input": "x", "stream": "yes"}"#).as_deref(), Some("stream"));
    }

    #[test]
    fn calls_get_items_of_their_own_in_order() {
        // Claude's tool turn: text at upstream index 0, calls at 1 and 2; a server that numbers
        // every call 0 tells a second call by its new id.
        let frames = encode(vec![
            StreamEvent::text("Checking."),
            call(1, Some("toolu_1"), Some("weather"), ""),
            call(1, None, None, "{\"city\":"),
            call(1, None, None, "\"Oslo\"}"),
            call(1, Some("toolu_2"), Some("time"), "{}"),
            done(FinishReason::ToolCalls),
        ]);
        let added: Vec<&Value> =
            frames.iter().filter(|(n, _)| n == "response.output_item.added").map(|(_, d)| d).collect();
        assert_eq!(added.len(), 3);
        for (i, a) in added.iter().enumerate() {
            assert_eq!(a["output_index"], i);
        }
        assert_eq!(added[1]["item"]["call_id"], "toolu_1");
        assert_eq!(added[2]["item"]["call_id"], "toolu_2");
        let done_items: Vec<&Value> = frames
            .iter()
            .filter(|(n, _)| n == "response.output_item.done")
            .map(|(_, d)| &d["item"])
            .collect();
        assert_eq!(done_items[1]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(done_items[2]["arguments"], "{}");
        // Each item is done before the next one is added.
        let order: Vec<&str> =
            names(&frames).into_iter().filter(|n| n.starts_with("response.output_item")).collect();
        assert_eq!(
            order,
            ["response.output_item.added", "response.output_item.done"].repeat(3),
            "{frames:?}"
        );
        let (last, data) = frames.last().unwrap();
        assert_eq!(last, "response.completed");
        assert_eq!(data["response"]["output"].as_array().unwrap().len(), 3);
        assert_eq!(data["response"]["usage"]["total_tokens"], 5);
    }

    #[test]
    fn a_custom_input_is_the_input_string_or_the_arguments_as_they_came() {
        let input = |v: Value| custom_input(&v).into_owned();
        assert_eq!(input(json!({"input": "a\nb", "extra": 1})), "a\nb");
        assert_eq!(input(json!({"input": 3})), r#"{"input":3}"#);
        // No arguments is no input, as a stream of the same call gives it.
        assert_eq!(input(json!({})), "");
        assert_eq!(custom_input_of("{}").as_deref(), Some(""));
        // Text an adapter kept because it was not JSON, or did not parse.
        assert_eq!(input(json!("*** Begin Patch")), "*** Begin Patch");
        assert_eq!(input(json!(r#"{"input":"x"}"#)), "x");
        assert_eq!(input(json!([1])), "[1]");
        assert_eq!(custom_input_of(r#"{"input":"x"#), None, "a cut call keeps its text");
    }

    #[test]
    fn a_custom_call_streams_its_input_whole_beside_text_and_function_calls() {
        let frames = encode_custom(
            vec!["apply_patch".into()],
            vec![
                StreamEvent::text("Patching."),
                call(1, Some("c1"), Some("apply_patch"), "{\"inp"),
                call(1, None, None, "ut\":\"+x\\n\"}"),
                call(2, Some("c2"), Some("shell"), "{}"),
                done(FinishReason::ToolCalls),
            ],
        );
        let calls: Vec<&str> = names(&frames)
            .into_iter()
            .filter(|n| n.contains("call") || n.starts_with("response.output_item"))
            .collect();
        assert_eq!(
            calls,
            [
                "response.output_item.added",
                "response.output_item.done",
                "response.output_item.added",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ],
            "{frames:?}"
        );
        let output = &frames.last().unwrap().1["response"]["output"];
        assert_eq!(output[1]["type"], "custom_tool_call");
        assert_eq!(output[1]["input"], "+x\n");
        assert_eq!(output[2]["type"], "function_call");
        assert_eq!(output[2]["arguments"], "{}");
    }

    #[test]
    fn an_empty_answer_still_has_its_message() {
        let frames = encode(vec![StreamEvent::text(""), done(FinishReason::Stop)]);
        let response = &frames.last().unwrap().1["response"];
        assert_eq!(response["status"], "completed");
        assert_eq!(response["output"][0]["type"], "message");
        assert_eq!(response["output"][0]["content"][0]["text"], "");
        let mut resp = ChatResponse::empty("b", "m");
        resp.finish_reason = Some(FinishReason::Stop);
        let v: Value =
            serde_json::from_slice(&response_body_at(&resp, &Echo::default(), &Outputs::default(), 1))
                .unwrap();
        assert_eq!(v["output"][0]["content"][0]["text"], "");
        assert_eq!(v["created_at"], 1);
    }

    #[test]
    fn a_failure_before_any_content_still_fails_the_response() {
        let error = BackendError::new(ErrorKind::RateLimited, "slow down").with_backend("b");
        let frames = encode(vec![StreamEvent::Error { error }]);
        assert_eq!(names(&frames), ["response.created", "response.in_progress", "error", "response.failed"]);
        assert_eq!(frames[2].1["code"], "rate_limited");
        let failed = &frames[3].1["response"];
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["error"]["code"], "rate_limit_exceeded");
        assert_eq!(failed["output"], json!([]));
        assert!(failed["usage"].is_null());
    }

    fn signed(thinking: &str, signature: &str) -> ThinkingBlock {
        ThinkingBlock::Thinking { thinking: thinking.into(), signature: signature.into() }
    }

    fn redacted(data: &str) -> ThinkingBlock {
        ThinkingBlock::Redacted { data: data.into() }
    }

    fn sealed(block: &ThinkingBlock) -> String {
        seal(&Sealed::from(block))
    }

    /// What a reasoning item's `encrypted_content` holds.
    fn unsealed(item: &Value) -> Option<ThinkingBlock> {
        let mut item = item.as_object().unwrap().clone();
        unseal(&mut item, "input[0]").unwrap()
    }

    /// A search whose results never came is `incomplete`, in a stream and a JSON answer alike,
    /// and a citation after the answer's last text is that block's, added as the stream ends.
    #[test]
    fn a_search_without_results_is_incomplete_and_a_late_citation_joins_the_last_block() {
        let search = NativeBlock::anthropic(
            json!({"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}}),
        );
        let cite = json!({"type": "web_search_result_location", "url": "https://a", "title": "A"});
        let outputs = Outputs { web_search: true, ..Outputs::default() };
        let mut enc = ResponsesEncoder::new("m".into(), Echo::default(), outputs);
        let mut out = Vec::new();
        for ev in [
            StreamEvent::text("Hé "),
            StreamEvent::TextEnd,
            StreamEvent::Native { block: search.clone() },
            StreamEvent::text("cité"),
            StreamEvent::TextEnd,
            StreamEvent::Citation { citation: cite.clone() },
            done(FinishReason::Stop),
        ] {
            enc.event(ev, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let frames: Vec<Value> = text
            .split("\n\n")
            .filter_map(|f| f.split_once("data: ").map(|(_, d)| serde_json::from_str(d).unwrap()))
            .collect();
        let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert!(!kinds.contains(&"response.web_search_call.completed"), "{text}");
        let [.., added, completed] = &frames[..] else { panic!("{text}") };
        let annotation = json!({"type": "url_citation", "start_index": 0, "end_index": 4, "url": "https://a", "title": "A"});
        assert_eq!(added["type"], "response.output_text.annotation.added");
        assert_eq!(
            (added["output_index"].clone(), added["annotation"].clone()),
            (json!(2), annotation.clone())
        );
        let output = &completed["response"]["output"];
        assert_eq!(
            output[1],
            json!({"type": "web_search_call", "id": "ws_s1", "status": "incomplete",
                                     "action": {"type": "search", "query": "q"}})
        );
        assert_eq!(output[2]["content"][0]["annotations"], json!([annotation]));

        let mut resp = ChatResponse::empty("b", "m");
        resp.content = "Hé cité".into();
        resp.native = vec![search];
        resp.order = vec![BlockKind::Text(4), BlockKind::Native, BlockKind::Text(9)];
        resp.citations = vec![TextCitations { end: 9, citations: vec![cite] }];
        let whole: Value =
            serde_json::from_slice(&response_body_at(&resp, &Echo::default(), &Outputs::default(), 1))
                .unwrap();
        assert_eq!(whole["output"][1], output[1]);
        assert_eq!(whole["output"][2]["content"], output[2]["content"]);
    }

    #[test]
    fn each_thinking_block_is_a_reasoning_item_sealed_alike_in_streams_and_answers() {
        let seal = |s: ThinkingSeal| StreamEvent::ThinkingSeal { seal: s };
        let frames = encode(vec![
            StreamEvent::ReasoningDelta { text: "need ".into() },
            StreamEvent::ReasoningDelta { text: "the file".into() },
            seal(ThinkingSeal::Signature("SIG1".into())),
            seal(ThinkingSeal::Redacted("OPAQUE".into())),
            // A signature over an empty block, then reasoning never signed (Qwen-like).
            seal(ThinkingSeal::Signature("SIG2".into())),
            StreamEvent::ReasoningDelta { text: "unsigned".into() },
            StreamEvent::text("Reading."),
            call(4, Some("toolu_1"), Some("read"), "{}"),
            done(FinishReason::ToolCalls),
        ]);
        let item_names: Vec<&str> = names(&frames)
            .into_iter()
            .filter(|n| n.matches('.').count() == 2 && !n.ends_with(".delta"))
            .collect();
        assert_eq!(
            item_names,
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                // The redacted block and the empty one have no text part.
                "response.output_item.added",
                "response.output_item.done",
                "response.output_item.added",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ],
            "{frames:?}"
        );
        let done: Vec<&Value> = frames
            .iter()
            .filter(|(n, _)| n == "response.output_item.done")
            .map(|(_, d)| &d["item"])
            .collect();
        assert_eq!(unsealed(done[0]), Some(signed("need the file", "SIG1")));
        assert_eq!(done[0]["content"], json!([{"type": "reasoning_text", "text": "need the file"}]));
        assert_eq!(unsealed(done[1]), Some(redacted("OPAQUE")));
        assert_eq!(done[1]["content"], json!([]));
        assert_eq!(unsealed(done[2]), Some(signed("", "SIG2")));
        assert!(done[3].get("encrypted_content").is_none(), "unsigned reasoning has no seal: {}", done[3]);
        // Announced items carry no seal yet: a signature arrives at the end of its block.
        assert!(
            frames
                .iter()
                .all(|(n, d)| n != "response.output_item.added"
                    || d["item"].get("encrypted_content").is_none())
        );
        let streamed = &frames.last().unwrap().1["response"]["output"];
        assert_eq!(streamed.as_array().unwrap()[..4], done[..4].iter().copied().cloned().collect::<Vec<_>>());

        // The same answer whole: the same items but their ids.
        let mut resp = ChatResponse::empty("b", "m");
        resp.reasoning = Some("need the fileunsigned".into());
        resp.thinking = vec![
            signed("need the file", "SIG1"),
            redacted("OPAQUE"),
            signed("", "SIG2"),
            signed("unsigned", ""),
        ];
        resp.content = "Reading.".into();
        resp.tool_calls = vec![ToolCall { id: "toolu_1".into(), name: "read".into(), arguments: json!({}) }];
        resp.finish_reason = Some(FinishReason::ToolCalls);
        let mut whole: Value =
            serde_json::from_slice(&response_body_at(&resp, &Echo::default(), &Outputs::default(), 1))
                .unwrap();
        let mut streamed = streamed.clone();
        for item in whole["output"].as_array_mut().unwrap().iter_mut().chain(streamed.as_array_mut().unwrap())
        {
            item.as_object_mut().unwrap().remove("id");
        }
        assert_eq!(whole["output"], streamed);
    }

    /// Interleaved thinking: the answer's items follow its blocks (a message per text block),
    /// in the JSON answer and the stream alike; sent back after the question, the items make
    /// the same assistant turn, in that order, and the usual order is kept as none.
    #[test]
    fn an_answers_items_follow_its_blocks_and_come_back_as_its_turn() {
        use claudette_core::BlockKind::{Text, Thinking as Th, ToolCall as Tc};
        let read = |id: &str| ToolCall { id: id.into(), name: "read".into(), arguments: json!({"p": 1}) };
        for order in [vec![Th, Tc, Th, Text(3), Th, Text(8), Tc], vec![]] {
            let mut resp = ChatResponse::empty("b", "m");
            resp.thinking = vec![signed("first", "S1"), redacted("R"), signed("then", "S2")];
            resp.content = "Hi there".into();
            resp.tool_calls = vec![read("c1"), read("c2")];
            resp.order = order.clone();
            resp.finish_reason = Some(FinishReason::ToolCalls);
            let blocks = resp.blocks().unwrap();

            let whole: Value =
                serde_json::from_slice(&response_body_at(&resp, &Echo::default(), &Outputs::default(), 1))
                    .unwrap();
            let output = whole["output"].as_array().unwrap().clone();
            let shape: Vec<String> = output
                .iter()
                .map(|item| match item["type"].as_str().unwrap() {
                    "reasoning" => match unsealed(item).unwrap() {
                        ThinkingBlock::Thinking { thinking, .. } => format!("reasoning {thinking}"),
                        ThinkingBlock::Redacted { data } => format!("reasoning {data}"),
                    },
                    "message" => format!("message {}", item["content"][0]["text"].as_str().unwrap()),
                    kind => format!("{kind} {}", item["call_id"].as_str().unwrap()),
                })
                .collect();
            let expected: &[&str] = if order.is_empty() {
                &[
                    "reasoning first",
                    "reasoning R",
                    "reasoning then",
                    "message Hi there",
                    "function_call c1",
                    "function_call c2",
                ]
            } else {
                &[
                    "reasoning first",
                    "function_call c1",
                    "reasoning R",
                    "message Hi ",
                    "reasoning then",
                    "message there",
                    "function_call c2",
                ]
            };
            assert_eq!(shape, expected);

            // Streamed as the blocks come, the same items but their ids.
            let mut events = Vec::new();
            for (k, block) in blocks.iter().enumerate() {
                match block {
                    Block::Thinking(ThinkingBlock::Thinking { thinking, signature }) => {
                        events.push(StreamEvent::ReasoningDelta { text: thinking.clone() });
                        events.push(StreamEvent::ThinkingSeal {
                            seal: ThinkingSeal::Signature(signature.clone()),
                        });
                    }
                    Block::Thinking(ThinkingBlock::Redacted { data }) => {
                        events.push(StreamEvent::ThinkingSeal { seal: ThinkingSeal::Redacted(data.clone()) })
                    }
                    Block::Text { text, .. } => events.push(StreamEvent::text(*text)),
                    Block::ToolCall { call: c, .. } => {
                        events.push(call(k as u32, Some(&c.id), Some(&c.name), "{\"p\":1}"))
                    }
                    Block::Native(b) => events.push(StreamEvent::Native { block: (*b).clone() }),
                }
            }
            events.push(done(FinishReason::ToolCalls));
            let frames = encode(events);
            let mut streamed = frames.last().unwrap().1["response"]["output"].clone();
            let mut without_ids = Value::Array(output.clone());
            for item in without_ids.as_array_mut().unwrap().iter_mut().chain(streamed.as_array_mut().unwrap())
            {
                item.as_object_mut().unwrap().remove("id");
            }
            assert_eq!(streamed, without_ids);

            // Sent back as they came, with the calls' results.
            let mut input = vec![json!({"role": "user", "content": "go"})];
            input.extend(output);
            input.push(json!({"type": "function_call_output", "call_id": "c1", "output": "1"}));
            input.push(json!({"type": "function_call_output", "call_id": "c2", "output": "2"}));
            let p = parse(json!({"input": input})).unwrap();
            let roles: Vec<Role> = p.request.messages.iter().map(|m| m.role).collect();
            assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Tool]);
            let turn = &p.request.messages[1];
            assert_eq!(turn.order, order);
            assert_eq!(turn.blocks().unwrap(), blocks);
        }
    }

    /// The items between two others are one turn, whatever their order: a message after a
    /// call, or a second message, joins the turn rather than start another.
    #[test]
    fn an_assistant_turns_items_are_one_message_in_their_order() {
        let fc = |id: &str| json!({"type": "function_call", "call_id": id, "name": "f", "arguments": "{}"});
        let say = |text: &str| json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]});
        let p = parse(json!({"input": [
            {"role": "user", "content": "go"},
            fc("c1"), say("one "), say("two"), fc("c2"),
            {"type": "function_call_output", "call_id": "c1", "output": "1"},
            {"type": "function_call_output", "call_id": "c2", "output": "2"},
            say("done")
        ]}))
        .unwrap();
        let turns: Vec<(Role, &str)> =
            p.request.messages.iter().map(|m| (m.role, m.content.as_str())).collect();
        assert_eq!(
            turns,
            [
                (Role::User, "go"),
                (Role::Assistant, "one two"),
                (Role::Tool, "1"),
                (Role::Tool, "2"),
                (Role::Assistant, "done")
            ]
        );
        let shape: Vec<String> = p.request.messages[1]
            .blocks()
            .unwrap()
            .iter()
            .map(|b| match b {
                Block::Text { text, .. } => format!("text {text}"),
                Block::ToolCall { call, .. } => format!("call {}", call.id),
                Block::Thinking(_) => "thinking".into(),
                Block::Native(n) => format!("native {}", n.kind()),
            })
            .collect();
        assert_eq!(shape, ["call c1", "text one ", "text two", "call c2"]);
        assert!(p.request.messages[4].order.is_empty());
    }

    #[test]
    fn sealed_reasoning_leads_the_assistant_turn_that_follows_it() {
        let (a, r, b, c) = (signed("a", "SA"), redacted("R"), signed("b", "SB"), signed("c", "SC"));
        let reasoning = |block: &ThinkingBlock| json!({"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": sealed(block)});
        let p = parse(json!({"input": [
            {"role": "user", "content": "go"},
            reasoning(&a),
            reasoning(&r),
            // OpenAI's and none: dropped, as before.
            {"type": "reasoning", "id": "rs_o", "summary": [], "encrypted_content": "gAAAAABopaque"},
            {"type": "reasoning", "id": "rs_n", "summary": [], "content": [{"type": "reasoning_text", "text": "x"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            // Interleaved thinking: a later block of the same turn joins it.
            reasoning(&b),
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "1"},
            {"type": "function_call_output", "call_id": "c2", "output": "2"},
            reasoning(&c),
            {"type": "message", "role": "assistant", "content": "done"},
            // Reasoning whose turn the client left out belongs to nothing after it.
            reasoning(&a),
            {"role": "user", "content": "again"},
            {"type": "function_call", "call_id": "c3", "name": "f", "arguments": "{}"},
            reasoning(&b)
        ]}))
        .unwrap();
        let turns: Vec<(Role, &[ThinkingBlock])> =
            p.request.messages.iter().map(|m| (m.role, m.thinking.as_slice())).collect();
        assert_eq!(
            turns,
            [
                (Role::User, &[][..]),
                (Role::Assistant, &[a, r, b][..]),
                (Role::Tool, &[][..]),
                (Role::Tool, &[][..]),
                (Role::Assistant, &[c][..]),
                (Role::User, &[][..]),
                (Role::Assistant, &[][..]),
            ]
        );
        assert_eq!(p.request.messages[1].tool_calls.len(), 2);
    }

    #[test]
    fn a_seal_that_cannot_be_read_is_refused_naming_it() {
        let param = |encrypted: Value| {
            let v = json!({"input": [
                {"role": "user", "content": "go"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted}
            ]});
            parse(v).err().and_then(|e| e.param).map(|p| p.into_owned())
        };
        let b64 = |s: &str| format!("{SEAL_PREFIX}{SEAL_V1}{}", BASE64.encode(s));
        for bad in [
            json!("claudette:1:%%%not base64%%%"),
            json!(b64("not json")),
            json!(b64(r#"{"type": "thinking", "thinking": "a"}"#)),
            json!(b64(r#"{"type": "pondering"}"#)),
            json!("claudette:9:e30="),
            json!("claudette:"),
            json!(7),
        ] {
            assert_eq!(param(bad.clone()).as_deref(), Some("input[1].encrypted_content"), "{bad}");
        }
        assert_eq!(param(json!(b64(r#"{"type":"redacted_thinking","data":"R"}"#))), None);
        assert_eq!(param(Value::Null), None);
    }
}
