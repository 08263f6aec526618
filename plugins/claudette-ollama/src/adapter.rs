//! [`OllamaAdapter`]: Ollama's native `/api/chat` as pure functions.

use claudette_core::error::scrub_secrets;
use claudette_core::types::{estimate_tokens_from_len, json_f32, normalize_tool_arguments};
use claudette_core::{
    AuthScheme, BackendError, BackendInfo, BackendSettings, BackendType, ChatRequest, ChatResponse,
    ErrorKind, Framing, HttpRequest, HttpResponse, ImageSource, Message, Pricing, ProviderAdapter,
    ResponseFormat, Role, StreamDecoder, ToolChoice,
};
use serde_json::{Map, Value, json};

use crate::stream::OllamaStreamDecoder;
use crate::wire::{self, ChatChunk};

/// Provider name in registries and `BackendInfo::provider`.
pub const PROVIDER: &str = "ollama";
/// Where a local Ollama listens by default.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";
/// Context window asked for when the settings name none.
///
/// Always sent: without `options.num_ctx` the server uses its own default (2048 or 4096
/// tokens depending on the version) and cuts longer prompts *silently* (ollama/ollama #4967).
pub const DEFAULT_NUM_CTX: u32 = 8192;

/// Provider-specific settings (`BackendSettings::extra`) this adapter reads.
///
/// - `num_ctx` (integer, default [`DEFAULT_NUM_CTX`]): context window sent as
///   `options.num_ctx` on every request; also reported as the backend's context window.
/// - `keep_alive` (string such as `"10m"`, or seconds as a number): how long the server keeps
///   the model loaded after the request; omitted when unset (server default, 5 minutes).
pub const KNOWN_SETTINGS: &[&str] = &["num_ctx", "keep_alive"];

/// Ollama's `/api/chat` wire protocol, sans I/O.
///
/// No authentication by default (a local server has none); when the settings carry a key it
/// is sent as a bearer token, for Ollama behind an authenticating reverse proxy. Prices default
/// to zero ([`Pricing::FREE`]: the hardware is already paid for) and can be overridden in the
/// settings for internal charge-back.
#[derive(Debug, Clone)]
pub struct OllamaAdapter {
    info: BackendInfo,
    chat_url: String,
    tags_url: String,
    num_ctx: u32,
    keep_alive: Option<Value>,
    bearer: bool,
}

impl OllamaAdapter {
    /// Checks the settings and builds the adapter. A model is required: Ollama has no default.
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        settings.reject_unknown_extra(KNOWN_SETTINGS)?;
        let model = settings.model.clone().filter(|m| !m.trim().is_empty()).ok_or_else(|| {
            BackendError::config(format!("backend `{}`: ollama needs `model`", settings.name))
        })?;
        let num_ctx = settings.extra_as::<u32>("num_ctx")?.unwrap_or(DEFAULT_NUM_CTX);
        if num_ctx == 0 {
            return Err(BackendError::config(format!(
                "backend `{}`: `num_ctx` must be positive",
                settings.name
            )));
        }
        let keep_alive = match settings.extra.get("keep_alive") {
            None | Some(Value::Null) => None,
            Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
            Some(other) => {
                return Err(BackendError::config(format!(
                    "backend `{}`: `keep_alive` must be a duration string such as \"10m\" or a number of seconds, \
                     got {other}",
                    settings.name
                )));
            }
        };
        let base = settings.parsed_base_url(DEFAULT_BASE_URL)?;
        let base = base.as_str().trim_end_matches('/').to_owned();
        let info = BackendInfo {
            name: settings.name.clone(),
            provider: PROVIDER.to_owned(),
            backend_type: BackendType::SelfHosted,
            model,
            priority: settings.priority,
            pricing: settings.pricing.unwrap_or(Pricing::FREE),
            quality: settings.quality.unwrap_or(0.5),
            supports_streaming: true,
            supports_tools: true,
            supports_images: true,
            context_window: Some(num_ctx),
            region: settings.region.clone(),
            tags: settings.tags.clone(),
            enabled: settings.enabled,
        };
        Ok(Self {
            info,
            chat_url: format!("{base}/api/chat"),
            tags_url: format!("{base}/api/tags"),
            num_ctx,
            keep_alive,
            bearer: settings.api_key.as_ref().is_some_and(|k| !k.is_empty()),
        })
    }

    /// The `num_ctx` sent with every request.
    pub fn num_ctx(&self) -> u32 {
        self.num_ctx
    }

    /// The `/api/chat` JSON body for `request`.
    pub fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Value, BackendError> {
        let model = request.model.as_deref().unwrap_or(&self.info.model);
        request.checked_media()?;
        // Ollama's chat API reads text and images only (no PDF input), and a document dropped
        // would have the model answer about what it never saw: refused, so the router tries a
        // backend that reads it.
        if let Some(i) = request.messages.iter().position(|m| !m.documents.is_empty()) {
            return Err(BackendError::new(
                ErrorKind::Unsupported,
                format!(
                    "message {i}: ollama takes no PDF documents (its chat API reads text and images only)"
                ),
            ));
        }
        // A tool result's images go in a user message after the results: Ollama accepts
        // `images` on any message, but where the model sees them is up to its chat template
        // or renderer, and many vision models' templates have no tool role or place images
        // in user turns only; the model would answer about a screenshot it never saw.
        let sent = request.messages_with_tool_media_moved();
        let messages = sent
            .iter()
            .enumerate()
            .map(|(i, m)| message_json(m, &sent[..i]))
            .collect::<Result<Vec<Value>, BackendError>>()?;
        let mut options = Map::new();
        options.insert("num_ctx".into(), json!(self.num_ctx));
        if let Some(n) = request.max_tokens {
            options.insert("num_predict".into(), json!(n));
        }
        if let Some(t) = request.temperature {
            options.insert("temperature".into(), json_f32("temperature", t)?);
        }
        if let Some(p) = request.top_p {
            options.insert("top_p".into(), json_f32("top_p", p)?);
        }
        if let Some(k) = request.top_k {
            options.insert("top_k".into(), json!(k));
        }
        if let Some(seed) = request.seed {
            options.insert("seed".into(), json!(seed));
        }
        if !request.stop.is_empty() {
            options.insert("stop".into(), json!(request.stop));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert("messages".into(), Value::Array(messages));
        // Explicit both ways: the server streams unless told otherwise.
        body.insert("stream".into(), json!(stream));
        body.insert("options".into(), Value::Object(options));
        // Ollama's chat API has no tool choice: "none" is honoured by not offering the tools,
        // a forced call cannot be, so another backend gets the request.
        let offer_tools = match request.checked_tool_choice()? {
            ToolChoice::Auto => true,
            ToolChoice::None => false,
            ToolChoice::Required | ToolChoice::Tool(_) => {
                return Err(BackendError::new(
                    ErrorKind::Unsupported,
                    "Ollama cannot force a tool call (tool_choice `required` or a named tool)",
                ));
            }
        };
        // Nor can it limit an answer to one call (`parallel_tool_calls: false`): that is held
        // on the answer instead (`parse_response`, `stream_decoder`).
        if offer_tools && !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters
                    }})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        // Ollama's `format`: "json", or a JSON Schema the output is constrained to.
        match &request.response_format {
            ResponseFormat::Text => {}
            ResponseFormat::JsonObject => {
                body.insert("format".into(), json!("json"));
            }
            ResponseFormat::JsonSchema { schema, .. } => {
                body.insert("format".into(), schema.clone());
            }
        }
        if let Some(k) = &self.keep_alive {
            body.insert("keep_alive".into(), k.clone());
        }
        Ok(Value::Object(body))
    }

    pub(crate) fn backend_name(&self) -> &str {
        &self.info.name
    }
}

/// One message in Ollama's shape. `earlier` are the messages before it, searched for the name
/// of the tool a `tool` message answers (Ollama matches results by `tool_name`, not by id).
fn message_json(m: &Message, earlier: &[Message]) -> Result<Value, BackendError> {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = Map::new();
    out.insert("role".into(), json!(role));
    // No error flag on a tool message: a failure is said in the text.
    out.insert("content".into(), json!(m.tool_result_text()));
    if m.role == Role::Assistant && !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| json!({"function": {"name": c.name, "arguments": normalize_tool_arguments(&c.arguments)}}))
            .collect();
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    if m.role == Role::Tool {
        if let Some(name) = tool_name(m, earlier) {
            out.insert("tool_name".into(), json!(name));
        }
    }
    if !m.images.is_empty() {
        out.insert("images".into(), images_json(m)?);
    }
    Ok(Value::Object(out))
}

/// A user message's images as Ollama's `images`: bare base64 strings, in the client's order.
///
/// Ollama's message has no positions for them: its text stays whole in `content` and the model
/// sees the images beside it, so a prompt that put text between two images loses where each
/// stood (their order is kept). A URL is refused, [`ErrorKind::Unsupported`], because Ollama
/// takes image bytes only and the gateway never fetches a client's URL: the router tries a
/// backend that can take the request as it is. (Images on system and assistant messages are
/// refused before, by [`ChatRequest::checked_media`], and a tool result's have been moved to
/// a user message.)
fn images_json(m: &Message) -> Result<Value, BackendError> {
    m.images
        .iter()
        .map(|image| match &image.source {
            ImageSource::Base64 { data, .. } => Ok(json!(data)),
            ImageSource::Url { .. } => Err(BackendError::new(
                ErrorKind::Unsupported,
                "ollama takes images as base64 only, not by URL",
            )),
        })
        .collect()
}

fn tool_name<'a>(m: &'a Message, earlier: &'a [Message]) -> Option<&'a str> {
    if let Some(n) = m.name.as_deref() {
        return Some(n);
    }
    let id = m.tool_call_id.as_deref()?;
    earlier.iter().rev().flat_map(|e| e.tool_calls.iter()).find(|c| c.id == id).map(|c| c.name.as_str())
}

/// Reads an `{"error": "..."}` body or line and classifies it.
///
/// - "model ... not found" (404, or a stream line) → [`ErrorKind::NotFound`]: the model is not
///   pulled on this server. Neutral for the breaker (F-38): the server is healthy and another
///   backend may have the model.
/// - 400 "… does not support tools" (also `thinking`, `chat`): the model on this server lacks a
///   capability the request needs (ollama/ollama #5793, #14795) → [`ErrorKind::Unsupported`],
///   so the router fails over to a backend that has it instead of returning a 400 that no
///   caller can fix, and the breaker does not count it.
/// - other 400s → [`ErrorKind::InvalidRequest`].
/// - 500 → [`ErrorKind::Overloaded`] (runner crashed, out of memory while loading: transient
///   as far as the router can tell).
/// - anything else by status ([`BackendError::from_http`]): 401/403 from an authenticating
///   proxy, 503 when the server's queue is full (`OLLAMA_MAX_QUEUE`), 429...
pub(crate) fn classify(response: &HttpResponse<'_>) -> BackendError {
    let text = ChatChunk::parse(response.body).ok().and_then(|c| c.error_text()).unwrap_or_else(|| {
        let raw = String::from_utf8_lossy(response.body);
        let raw = raw.trim();
        if raw.is_empty() { format!("HTTP {}", response.status) } else { raw.chars().take(300).collect() }
    });
    let message = format!("ollama: {}", scrub_secrets(&text));
    let mut err = BackendError::from_http(response, message);
    err.kind = if mentions_not_found(&text) {
        ErrorKind::NotFound
    } else {
        match response.status {
            400 if lacks_capability(&text) => ErrorKind::Unsupported,
            400 => ErrorKind::InvalidRequest,
            500 => ErrorKind::Overloaded,
            s => ErrorKind::from_status(s),
        }
    };
    err
}

/// The kind of an `{"error": ...}` line inside a 200 stream: model not found, else a server
/// failure (the runner died, ran out of memory...), which counts against the breaker.
pub(crate) fn stream_error(text: &str) -> BackendError {
    let kind = if mentions_not_found(text) { ErrorKind::NotFound } else { ErrorKind::Overloaded };
    BackendError::new(kind, format!("ollama: error in stream: {}", scrub_secrets(text)))
}

fn mentions_not_found(text: &str) -> bool {
    text.to_ascii_lowercase().contains("not found")
}

/// Ollama's capability check (`"<model> does not support tools"`, `… thinking`, `… chat`):
/// the request is fine, this model cannot serve it.
fn lacks_capability(text: &str) -> bool {
    text.to_ascii_lowercase().contains("does not support")
}

/// Attaches the truncation warning and counts it. Shared by the non-stream path and the
/// stream decoder so both apply one rule.
pub(crate) fn check_truncation(
    backend: &str,
    estimated: u32,
    evaluated: Option<u32>,
    num_ctx: u32,
) -> Option<String> {
    let warning = wire::truncation_warning(estimated, evaluated?, num_ctx)?;
    metrics::counter!("claudette_ollama_truncation_total", "backend" => backend.to_owned()).increment(1);
    Some(warning)
}

/// Records a model load time apart from request latency (a cold start is not steady state).
pub(crate) fn record_load(backend: &str, timings: &wire::OllamaTimings) {
    if let Some(load) = timings.load {
        metrics::histogram!("claudette_ollama_load_seconds", "backend" => backend.to_owned())
            .record(load.as_secs_f64());
    }
}

impl ProviderAdapter for OllamaAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn auth_scheme(&self) -> AuthScheme {
        if self.bearer { AuthScheme::Bearer } else { AuthScheme::None }
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        let req = HttpRequest::post_json(&self.chat_url, &self.request_body(request, stream)?)?;
        Ok(if stream {
            req.header("accept", "application/x-ndjson")
        } else {
            req.header("accept", "application/json")
        })
    }

    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let chunk = ChatChunk::parse(response.body)?;
        if let Some(text) = chunk.error_text() {
            return Err(stream_error(&text).with_status(response.status));
        }
        let model = chunk
            .model
            .clone()
            .unwrap_or_else(|| request.model.clone().unwrap_or_else(|| self.info.model.clone()));
        let mut out = ChatResponse::empty(&self.info.name, model);
        out.content = chunk.text().to_owned();
        let thinking = chunk.thinking();
        if !thinking.is_empty() {
            out.reasoning = Some(thinking.to_owned());
        }
        out.tool_calls = chunk.tool_calls().iter().map(wire::WireToolCall::to_tool_call).collect();
        out.finish_reason = wire::finish_reason(chunk.done_reason.as_deref(), !out.tool_calls.is_empty());
        if request.parallel_tool_calls == Some(false) {
            out.keep_first_tool_call();
        }
        let estimated_input = request.estimated_input_tokens();
        out.usage = chunk.usage(estimated_input, estimate_tokens_from_len(out.content.len()));
        out.cost = self.pricing(request.model.as_deref()).cost(&out.usage);
        let timings = chunk.timings();
        record_load(&self.info.name, &timings);
        if let Some(w) =
            check_truncation(&self.info.name, estimated_input, chunk.prompt_eval_count, self.num_ctx)
        {
            tracing::warn!(backend = %self.info.name, "{w}");
            out.warnings.push(w);
        }
        Ok(out)
    }

    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        classify(response).with_backend(&self.info.name)
    }

    fn framing(&self) -> Framing {
        Framing::Ndjson
    }

    fn stream_decoder(&self, request: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(
            OllamaStreamDecoder::new(self.backend_name(), request.estimated_input_tokens(), self.num_ctx)
                .first_tool_call_only(request),
        )
    }

    fn health_probe(&self) -> Option<HttpRequest> {
        Some(HttpRequest::get(&self.tags_url).header("accept", "application/json"))
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        #[derive(serde::Deserialize)]
        struct Tags {
            models: Vec<Tag>,
        }
        #[derive(serde::Deserialize)]
        struct Tag {
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            model: Option<String>,
        }
        let tags: Tags = serde_json::from_slice(body)
            .map_err(|e| BackendError::malformed(format!("ollama: unreadable /api/tags answer: {e}")))?;
        Ok(tags.models.into_iter().filter_map(|t| t.name.or(t.model)).collect())
    }

    fn pricing(&self, _model: Option<&str>) -> Pricing {
        // One price for whatever this server runs: the settings' override, else free.
        self.info.pricing
    }
}
