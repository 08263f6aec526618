//! [`GeminiAdapter`]: Gemini's `generateContent` as pure functions.

use claudette_core::base_url::endpoint_url;
use claudette_core::error::scrub_secrets;
use claudette_core::types::{json_f32, normalize_tool_arguments};
use claudette_core::{
    AuthScheme, BackendError, BackendInfo, BackendSettings, BackendType, ChatRequest, ChatResponse,
    DOCUMENT_MEDIA_TYPE, DocumentSource, ErrorKind, Framing, HttpRequest, HttpResponse, IMAGE_MEDIA_TYPES,
    ImageSource, Message, Pricing, ProviderAdapter, ResponseFormat, Role, Segment, StreamDecoder, Thinking,
    ToolChoice,
};
use serde_json::{Map, Value, json};

use crate::pricing::{context_window, price_for};
use crate::stream::GeminiStreamDecoder;
use crate::wire::{self, CountTokensResponse, ErrorBody, GenerateContentResponse};

/// Provider name in registries and `BackendInfo::provider`.
pub const PROVIDER: &str = "gemini";
/// The Gemini API (Google AI Studio keys). Vertex AI uses another host and OAuth, not this.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// The header the key travels in. Never the `?key=` query parameter: URLs end up in proxy
/// logs, traces and error messages, headers marked sensitive do not.
pub const API_KEY_HEADER: &str = "x-goog-api-key";

/// Provider-specific settings (`BackendSettings::extra`) this adapter reads.
///
/// - `thought_signature_placeholder` (bool, default `true`): see
///   [`GeminiAdapter::request_body`].
pub const KNOWN_SETTINGS: &[&str] = &["thought_signature_placeholder"];

/// The value Google documents for replaying function calls whose real thought signature is
/// unknown (history written by another model or another gateway).
pub const THOUGHT_SIGNATURE_PLACEHOLDER: &str = "skip_thought_signature_validator";

/// `thinkingBudget` for "the model decides how much to think" (Gemini's dynamic thinking).
const DYNAMIC_THINKING_BUDGET: i64 = -1;

/// The Gemini API's `generateContent` / `streamGenerateContent?alt=sse`, sans I/O.
#[derive(Debug, Clone)]
pub struct GeminiAdapter {
    info: BackendInfo,
    /// The API root; its query, if any, is kept on every call.
    base: url::Url,
    pricing_override: Option<Pricing>,
    signature_placeholder: bool,
    has_key: bool,
}

impl GeminiAdapter {
    /// Checks the settings and builds the adapter. `model` is required.
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        settings.reject_unknown_extra(KNOWN_SETTINGS)?;
        let model = settings
            .model
            .as_deref()
            .map(strip_models_prefix)
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                BackendError::config(format!("backend `{}`: gemini needs `model`", settings.name))
            })?
            .to_owned();
        check_model_name(&model)
            .map_err(|e| BackendError::config(format!("backend `{}`: {}", settings.name, e.message)))?;
        let base = settings.parsed_base_url(DEFAULT_BASE_URL)?;
        if settings.pricing.is_none() && crate::pricing::known_price(&model).is_none() {
            tracing::warn!(
                backend = %settings.name, model = %model,
                "no built-in price for this Gemini model; costs are estimated at the most expensive table \
                 entry until `pricing` is set"
            );
        }
        let pricing = settings.pricing.unwrap_or_else(|| price_for(&model));
        let context_window = context_window(&model);
        let info = BackendInfo {
            name: settings.name.clone(),
            provider: PROVIDER.to_owned(),
            backend_type: BackendType::Cloud,
            model,
            priority: settings.priority,
            pricing,
            quality: settings.quality.unwrap_or(0.5),
            supports_streaming: true,
            supports_tools: true,
            supports_images: true,
            context_window,
            region: settings.region.clone(),
            tags: settings.tags.clone(),
            enabled: settings.enabled,
        };
        Ok(Self {
            info,
            base,
            pricing_override: settings.pricing,
            signature_placeholder: settings
                .extra_as::<bool>("thought_signature_placeholder")?
                .unwrap_or(true),
            has_key: settings.api_key.as_ref().is_some_and(|k| !k.is_empty()),
        })
    }

    /// The model a request goes to (its override, else the configured one), checked.
    fn model_for<'a>(&'a self, request: &'a ChatRequest) -> Result<&'a str, BackendError> {
        let model = request.model.as_deref().map_or(self.info.model.as_str(), strip_models_prefix);
        check_model_name(model)?;
        Ok(model)
    }

    /// The `generateContent` JSON body for `request`.
    ///
    /// - System messages become `systemInstruction` (Gemini has no system role in `contents`).
    /// - A user turn's text, images and documents become its `parts` in the client's order
    ///   (see [`user_parts`]); images and documents on a system or assistant message are
    ///   refused ([`ChatRequest::checked_media`]).
    /// - Assistant turns become role `model` with `functionCall` parts; tool results become
    ///   `functionResponse` parts of a `user` turn, named after the call they answer (Gemini
    ///   matches results by function name). Consecutive turns of one role are merged, so the
    ///   results of parallel calls travel together as Gemini expects.
    /// - A tool result's images and documents (a screenshot the tool took, a PDF it read) go
    ///   as parts of that same `user` turn, after all of its `functionResponse` parts (see
    ///   [`close_results`]).
    /// - When `thought_signature_placeholder` is on (default), the first `functionCall` of each
    ///   replayed model turn carries [`THOUGHT_SIGNATURE_PLACEHOLDER`]. Gemini 3 rejects (400)
    ///   replayed function calls without a thought signature; Claudette's neutral history
    ///   cannot carry the real one (it would have to ride in the tool-call id, which other
    ///   providers limit to 40 characters), so the documented placeholder is sent instead.
    pub fn request_body(&self, request: &ChatRequest) -> Result<Value, BackendError> {
        let mut body = self.prompt(request)?;
        let config = generation_config(request)?;
        if !config.is_empty() {
            body.insert("generationConfig".into(), Value::Object(config));
        }
        Ok(Value::Object(body))
    }

    /// The `countTokens` body for `request` against `model`: a `generateContentRequest` with
    /// the same `contents`, `systemInstruction`, `tools` and `toolConfig` as
    /// [`request_body`](Self::request_body) (tools count, and the bare `contents` form would
    /// leave them and the system prompt out), naming the model as Google requires there.
    /// No `generationConfig`: it adds no input tokens.
    pub fn count_body(&self, request: &ChatRequest, model: &str) -> Result<Value, BackendError> {
        let mut inner = Map::new();
        inner.insert("model".into(), json!(format!("models/{model}")));
        inner.extend(self.prompt(request)?);
        Ok(json!({ "generateContentRequest": inner }))
    }

    /// What the model reads: `contents`, `systemInstruction`, `tools`, `toolConfig`; the same
    /// for a completion and a count.
    fn prompt(&self, request: &ChatRequest) -> Result<Map<String, Value>, BackendError> {
        let mut system: Vec<Value> = Vec::new();
        let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
        request.checked_media()?;
        // The tool results of the current run, and those of them that carry images or documents.
        let mut results = 0usize;
        let mut with_media: Vec<(&str, &Message)> = Vec::new();
        for (i, m) in request.messages.iter().enumerate() {
            if m.role != Role::Tool && results > 0 {
                close_results(&mut contents, results, &with_media)?;
                (results, with_media) = (0, Vec::new());
            }
            let (role, parts) = match m.role {
                Role::System => {
                    if !m.content.is_empty() {
                        system.push(json!({"text": m.content}));
                    }
                    continue;
                }
                Role::User => ("user", user_parts(m)?),
                Role::Assistant => ("model", self.model_parts(m)),
                Role::Tool => {
                    let name = tool_name(m, &request.messages[..i])?;
                    results += 1;
                    if !m.images.is_empty() || !m.documents.is_empty() {
                        with_media.push((name, m));
                    }
                    ("user", vec![function_response(m, name)])
                }
            };
            if parts.is_empty() {
                continue;
            }
            match contents.last_mut() {
                Some((last_role, last_parts)) if *last_role == role => last_parts.extend(parts),
                _ => contents.push((role, parts)),
            }
        }
        if results > 0 {
            close_results(&mut contents, results, &with_media)?;
        }
        if contents.is_empty() {
            return Err(BackendError::invalid("gemini: the request has no user or assistant content"));
        }
        let contents: Vec<Value> =
            contents.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
        let mut body = Map::new();
        body.insert("contents".into(), Value::Array(contents));
        if !system.is_empty() {
            body.insert("systemInstruction".into(), json!({"parts": system}));
        }
        // `parallel_tool_calls: false` has no switch here; it is held on the answer instead
        // (`parse_response`, `stream_decoder`), so the prompt is the same either way.
        let tool_choice = request.checked_tool_choice()?;
        if !request.tools.is_empty() {
            let declarations: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    let mut d = Map::new();
                    d.insert("name".into(), json!(t.name));
                    if !t.description.is_empty() {
                        d.insert("description".into(), json!(t.description));
                    }
                    if let Some(p) = gemini_schema(&t.parameters) {
                        d.insert("parameters".into(), p);
                    }
                    Value::Object(d)
                })
                .collect();
            body.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
            let config = match tool_choice {
                ToolChoice::Auto => None,
                ToolChoice::None => Some(json!({"mode": "NONE"})),
                ToolChoice::Required => Some(json!({"mode": "ANY"})),
                ToolChoice::Tool(name) => Some(json!({"mode": "ANY", "allowedFunctionNames": [name]})),
            };
            if let Some(config) = config {
                body.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
            }
        }
        Ok(body)
    }

    fn model_parts(&self, m: &Message) -> Vec<Value> {
        let mut parts: Vec<Value> = text_part(&m.content).into_iter().collect();
        for (i, call) in m.tool_calls.iter().enumerate() {
            let mut part = Map::new();
            part.insert(
                "functionCall".into(),
                json!({"name": call.name, "args": normalize_tool_arguments(&call.arguments)}),
            );
            if i == 0 && self.signature_placeholder {
                part.insert("thoughtSignature".into(), json!(THOUGHT_SIGNATURE_PLACEHOLDER));
            }
            parts.push(Value::Object(part));
        }
        parts
    }

    fn count_url(&self, model: &str) -> String {
        endpoint_url(&self.base, &format!("models/{model}:countTokens"), &[])
    }

    fn url(&self, model: &str, stream: bool) -> String {
        if stream {
            endpoint_url(&self.base, &format!("models/{model}:streamGenerateContent"), &[("alt", "sse")])
        } else {
            endpoint_url(&self.base, &format!("models/{model}:generateContent"), &[])
        }
    }
}

/// `generationConfig`: output length, sampling, thinking and the answer's format.
fn generation_config(request: &ChatRequest) -> Result<Map<String, Value>, BackendError> {
    let mut config = Map::new();
    if let Some(n) = request.max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = request.temperature {
        config.insert("temperature".into(), json_f32("temperature", t)?);
    }
    if let Some(p) = request.top_p {
        config.insert("topP".into(), json_f32("top_p", p)?);
    }
    if let Some(k) = request.top_k {
        config.insert("topK".into(), json!(k));
    }
    // Gemini's seed is an int32; a wider one cannot be sent as given, and a seed is best
    // effort anyway, so it is left out rather than changed into another.
    if let Some(seed) = request.seed.and_then(|s| i32::try_from(s).ok()) {
        config.insert("seed".into(), json!(seed));
    }
    if !request.stop.is_empty() {
        config.insert("stopSequences".into(), json!(request.stop));
    }
    // A budget, with the thought summaries that become the answer's reasoning; adaptive
    // thinking is Gemini's dynamic budget, -1 (the model decides). Turning thinking off is
    // left to the model's default: Gemini 2.5 Pro refuses a zero budget, so sending one
    // would fail a request that asked for less, not more.
    let budget = match request.thinking {
        Some(Thinking::Adaptive) => Some(DYNAMIC_THINKING_BUDGET),
        t => t.and_then(Thinking::budget_tokens).map(i64::from),
    };
    if let Some(budget) = budget {
        config.insert("thinkingConfig".into(), json!({"thinkingBudget": budget, "includeThoughts": true}));
    }
    match &request.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            config.insert("responseMimeType".into(), json!("application/json"));
            // The same OpenAPI subset as tool parameters; a schema with nothing left of it
            // still gets JSON.
            if let Some(schema) = gemini_schema(schema) {
                config.insert("responseSchema".into(), schema);
            }
        }
    }
    Ok(config)
}

/// A text part, or none for empty text: Gemini refuses `{"text": ""}` with a 400 ("required
/// oneof field 'data' must have one initialized field"), and an empty message (a blank system
/// prompt, an assistant turn that produced nothing) adds nothing the model could read anyway.
fn text_part(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "text": text }))
}

/// A user turn's `parts`: its text runs, images and documents in the order the client placed
/// them, since "the text before the image" and "the text after it" are different prompts.
/// Base64 goes inline (`inlineData`); a URL goes as `fileData`, which the Gemini API fetches
/// itself (public and signed http(s) URLs, per Google's "external URLs" input method), see
/// [`url_image_part`].
fn user_parts(m: &Message) -> Result<Vec<Value>, BackendError> {
    m.segments().map(segment_part).collect()
}

/// A piece of a message as a part: text, an image or a document.
fn segment_part(segment: Segment<'_>) -> Result<Value, BackendError> {
    match segment {
        Segment::Text(text) => Ok(json!({ "text": text })),
        Segment::Image(image) => image_part(&image.source),
        Segment::Document(document) => document_part(&document.source),
    }
}

/// A PDF as a part: base64 inline, a URL as `fileData` (Gemini reads PDFs natively, each page's
/// text and image). The type is always [`DOCUMENT_MEDIA_TYPE`], so unlike an image's URL
/// nothing needs telling from the path. The title has no place in Gemini's parts and is left
/// out.
fn document_part(source: &DocumentSource) -> Result<Value, BackendError> {
    match source {
        DocumentSource::Base64 { data } => {
            Ok(json!({"inlineData": {"mimeType": DOCUMENT_MEDIA_TYPE, "data": data}}))
        }
        DocumentSource::Url { url } if http_url(url).is_some() => {
            Ok(json!({"fileData": {"mimeType": DOCUMENT_MEDIA_TYPE, "fileUri": url}}))
        }
        DocumentSource::Url { .. } => Err(BackendError::new(
            ErrorKind::Unsupported,
            "gemini fetches document URLs over http(s) only; this document's URL is not one",
        )),
    }
}

/// `url` parsed, when it is an http(s) URL: the only ones Gemini fetches.
fn http_url(url: &str) -> Option<url::Url> {
    url::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"))
}

/// An image as a part: base64 inline (`inlineData`), a URL as `fileData` ([`url_image_part`]).
fn image_part(source: &ImageSource) -> Result<Value, BackendError> {
    match source {
        ImageSource::Base64 { media_type, data } => {
            Ok(json!({"inlineData": {"mimeType": media_type, "data": data}}))
        }
        ImageSource::Url { url } => url_image_part(url),
    }
}

/// Ends a run of `results` tool results in the last (`user`) turn of `contents`: the images
/// and documents of those in `with_media` (each with its function's name) follow all the
/// run's `functionResponse` parts, in each result's order, as parts beside them rather than
/// inside them (nested `functionResponse.parts` is Gemini 3's alone, and takes no `fileData`
/// on the Gemini API). After all of them, because Gemini counts a parallel call turn's
/// answers and has refused a turn whose media stood between them ("the number of function
/// response parts is equal to the number of function call parts"). With more than one result
/// in the run, a text part names the function each group came from, which the position no
/// longer tells.
fn close_results(
    contents: &mut [(&'static str, Vec<Value>)],
    results: usize,
    with_media: &[(&str, &Message)],
) -> Result<(), BackendError> {
    let Some((_, parts)) = contents.last_mut() else { return Ok(()) };
    for (name, m) in with_media {
        if results > 1 {
            let what = m.media_summary();
            parts.push(json!({"text": format!("The result of `{name}` included {what}:")}));
        }
        for media in m.segments().filter(|s| !matches!(s, Segment::Text(_))) {
            parts.push(segment_part(media)?);
        }
    }
    Ok(())
}

/// A URL image as a `fileData` part. `fileData` wants the image's media type and a URL names
/// none, so it is told from the path's extension; a URL whose path does not say
/// (`/image?id=7`) is refused, [`ErrorKind::Unsupported`], so the router tries a backend that
/// reads the type from the response: a guessed type would have Gemini read the bytes as what
/// they are not. Only the path is read: a signed URL's
/// query says nothing about the file.
fn url_image_part(url: &str) -> Result<Value, BackendError> {
    let parsed = http_url(url);
    let media_type = parsed.as_ref().and_then(|u| {
        let name = u.path_segments()?.next_back()?;
        let (_, ext) = name.rsplit_once('.')?;
        let ext = ext.to_ascii_lowercase();
        let subtype = if ext == "jpg" { "jpeg" } else { ext.as_str() };
        IMAGE_MEDIA_TYPES.iter().find(|t| t.strip_prefix("image/") == Some(subtype))
    });
    match media_type {
        Some(mime) => Ok(json!({"fileData": {"mimeType": mime, "fileUri": url}})),
        None if parsed.is_none() => Err(BackendError::new(
            ErrorKind::Unsupported,
            "gemini fetches image URLs over http(s) only; this image's URL is not one",
        )),
        None => Err(BackendError::new(
            ErrorKind::Unsupported,
            "gemini needs an image URL's media type, and this URL's path does not end in .jpg, .jpeg, .png, \
             .gif or .webp: send the image as base64",
        )),
    }
}

/// `models/gemini-2.5-flash` → `gemini-2.5-flash` (the API lists models with the prefix).
pub(crate) fn strip_models_prefix(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// The model name goes into the URL path, and a request may override it: only characters
/// Google's model ids use are accepted, so no override can point the keyed request at another
/// path (`../files`) or smuggle a query string.
fn check_model_name(model: &str) -> Result<(), BackendError> {
    let ok = !model.is_empty()
        && !model.contains("..")
        && model.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok { Ok(()) } else { Err(BackendError::invalid(format!("gemini: invalid model name `{model}`"))) }
}

/// The name of the function a tool result answers: Gemini matches results by name, not id.
fn tool_name<'a>(m: &'a Message, earlier: &'a [Message]) -> Result<&'a str, BackendError> {
    m.name
        .as_deref()
        .or_else(|| {
            let id = m.tool_call_id.as_deref()?;
            earlier.iter().rev().flat_map(|e| e.tool_calls.iter()).find(|c| c.id == id).map(|c| c.name.as_str())
        })
        .ok_or_else(|| {
            BackendError::invalid(
                "gemini: a tool result needs the tool's name (set `name`, or answer a call present in the history)",
            )
        })
}

/// A tool result as a `functionResponse` part. Gemini wants the function *name* and an object
/// `response`: a result that is a JSON object is sent as is, anything else under `"result"`.
/// A failed call's result goes under `"error"`, the key Google documents for "the function
/// call failed" (the model reads the rest of `response` as the function's output).
fn function_response(m: &Message, name: &str) -> Value {
    let parsed = serde_json::from_str::<Value>(&m.content).unwrap_or_else(|_| json!(m.content));
    let response = match parsed {
        _ if m.is_error => json!({ "error": parsed }),
        o @ Value::Object(_) => o,
        other => json!({ "result": other }),
    };
    json!({"functionResponse": {"name": name, "response": response}})
}

/// A JSON Schema made acceptable to `functionDeclarations[].parameters`, which takes an
/// OpenAPI subset: `$schema` and `additionalProperties` (emitted by most schema generators)
/// are rejected with a 400, so they are dropped at every level; an object schema with no
/// properties is rejected too ("properties: should be non-empty for OBJECT type"), so such a
/// tool is declared without parameters.
fn gemini_schema(schema: &Value) -> Option<Value> {
    fn clean(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "$schema" | "additionalProperties"))
                    .map(|(k, v)| (k.clone(), clean(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
            other => other.clone(),
        }
    }
    let cleaned = clean(schema);
    let empty_object = cleaned.get("type").and_then(Value::as_str) == Some("object")
        && cleaned.get("properties").and_then(Value::as_object).is_none_or(Map::is_empty);
    if cleaned.is_null() || empty_object { None } else { Some(cleaned) }
}

/// Classifies a non-2xx response (or, with the stream's `error.code` as status, an error
/// object inside a 200 stream).
pub(crate) fn classify_body(response: &HttpResponse<'_>) -> BackendError {
    let parsed: Option<ErrorBody> =
        serde_json::from_slice::<Value>(response.body).ok().as_ref().and_then(ErrorBody::from_json);
    let text = parsed.as_ref().and_then(|b| b.message.clone()).unwrap_or_else(|| {
        let raw = String::from_utf8_lossy(response.body);
        let raw = raw.trim();
        if raw.is_empty() { format!("HTTP {}", response.status) } else { raw.chars().take(300).collect() }
    });
    // An error object inside a 200 (a stream, or a proxy) classifies by the code it carries.
    let status = if (200..300).contains(&response.status) {
        parsed.as_ref().and_then(|b| b.code).unwrap_or(500)
    } else {
        response.status
    };
    let (kind, code) = wire::classify(status, parsed.as_ref());
    let mut err =
        BackendError::from_http(response, format!("gemini: {}", scrub_secrets(&text))).with_status(status);
    err.kind = kind;
    err.code = code;
    if let Some(delay) = parsed.as_ref().and_then(ErrorBody::retry_delay) {
        err.retry_after = Some(delay);
    }
    if kind == claudette_core::ErrorKind::QuotaExhausted {
        // The delay Google attaches to a spent daily quota is the per-minute window's, not
        // when the quota comes back; passing it on would bring traffic back far too early.
        err.retry_after = None;
    }
    err
}

impl ProviderAdapter for GeminiAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::Header(API_KEY_HEADER.to_owned())
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        let model = self.model_for(request)?;
        let req = HttpRequest::post_json(self.url(model, stream), &self.request_body(request)?)?;
        Ok(if stream { req.header("accept", "text/event-stream") } else { req })
    }

    /// `POST models/{model}:countTokens`, free at Google.
    fn count_tokens_request(&self, request: &ChatRequest) -> Option<Result<HttpRequest, BackendError>> {
        let built = self.model_for(request).and_then(|model| {
            HttpRequest::post_json(self.count_url(model), &self.count_body(request, model)?)
        });
        Some(built)
    }

    /// `{"totalTokens": N, …}`.
    fn parse_count_tokens(&self, response: &HttpResponse<'_>) -> Result<u32, BackendError> {
        let count = CountTokensResponse::parse(response.body)?;
        if count.error.is_some() {
            return Err(classify_body(response));
        }
        count.total_tokens.ok_or_else(|| {
            BackendError::malformed("gemini: token count without `totalTokens`")
                .with_provider_body(response.body)
                .with_status(response.status)
        })
    }

    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let body = GenerateContentResponse::parse(response.body)?;
        if body.error.is_some() {
            return Err(classify_body(response));
        }
        if let Some(blocked) = body.prompt_block() {
            return Err(blocked.with_status(response.status));
        }
        let Some(candidate) = body.first_candidate() else {
            return Err(BackendError::malformed("gemini: answer without candidates or a block reason"));
        };
        let model = body.model_version.clone().unwrap_or_else(|| {
            request.model.as_deref().map_or(self.info.model.clone(), |m| strip_models_prefix(m).to_owned())
        });
        let mut out = ChatResponse::empty(&self.info.name, model);
        out.id = body.response_id.clone();
        let mut reasoning = String::new();
        for part in body.parts() {
            if let Some(call) = &part.function_call {
                out.tool_calls.push(call.to_tool_call());
            } else if let Some(text) = &part.text {
                if part.thought == Some(true) { reasoning.push_str(text) } else { out.content.push_str(text) }
            }
        }
        if !reasoning.is_empty() {
            out.reasoning = Some(reasoning);
        }
        if let Some(e) = body.finish_error() {
            return Err(e.with_status(response.status).with_backend(&self.info.name));
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            if wire::is_filter_reason(reason) && out.content.is_empty() && out.tool_calls.is_empty() {
                return Err(wire::blocked_output(reason).with_status(response.status));
            }
            out.finish_reason = Some(wire::finish_reason(reason, !out.tool_calls.is_empty()));
        }
        if request.parallel_tool_calls == Some(false) {
            out.keep_first_tool_call();
        }
        if let Some(usage) = body.usage_metadata {
            out.usage = usage.to_usage();
        }
        out.cost = self.pricing(Some(&out.model)).cost(&out.usage);
        Ok(out)
    }

    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        classify_body(response).with_backend(&self.info.name)
    }

    fn framing(&self) -> Framing {
        Framing::Sse
    }

    fn stream_decoder(&self, request: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(GeminiStreamDecoder::new(&self.info.name).first_tool_call_only(request))
    }

    fn health_probe(&self) -> Option<HttpRequest> {
        Some(HttpRequest::get(endpoint_url(&self.base, "models", &[])))
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        #[derive(serde::Deserialize)]
        struct Models {
            #[serde(default)]
            models: Vec<Model>,
        }
        #[derive(serde::Deserialize)]
        struct Model {
            name: String,
        }
        let list: Models = serde_json::from_slice(body)
            .map_err(|e| BackendError::malformed(format!("gemini: unreadable model list: {e}")))?;
        Ok(list.models.into_iter().map(|m| strip_models_prefix(&m.name).to_owned()).collect())
    }

    /// The settings' override, else the built-in table by longest model-name prefix.
    fn pricing(&self, model: Option<&str>) -> Pricing {
        if let Some(p) = self.pricing_override {
            return p;
        }
        model.map_or(self.info.pricing, |m| price_for(strip_models_prefix(m)))
    }

    /// A key is required: Gemini has no anonymous access.
    fn validate(&self) -> Result<(), BackendError> {
        if self.has_key {
            Ok(())
        } else {
            Err(BackendError::config(format!("backend `{}`: gemini needs `api_key`", self.info.name)))
        }
    }
}
