//! The [`OpenAiAdapter`]: settings in, [`ProviderAdapter`] out.

use std::net::IpAddr;

use claudette_core::{
    AuthScheme, BackendError, BackendInfo, BackendSettings, BackendType, ChatRequest, ChatResponse,
    HttpRequest, HttpResponse, Method, Pricing, ProviderAdapter, StreamDecoder,
};
use serde_json::{Map, Value};
use url::{Host, Url};

use crate::error::classify_openai_error;
use crate::models::{ModelEntry, OPENAI_MODELS, lookup_model};
use crate::request::{BodyOptions, BodySpec, MaxTokensField, encode};
use crate::response::parse_chat_completion;
use crate::stream::OpenAiStreamDecoder;

/// Provider-specific settings this adapter reads from [`BackendSettings::extra`].
pub const EXTRA_KEYS: [&str; 7] = [
    "stream_include_usage",
    "organization",
    "context_window",
    "backend_type",
    "max_tokens_field",
    "images",
    "documents",
];

/// What makes an OpenAI-compatible provider *this* provider: its name, defaults, model table,
/// the hosts that need a key, and the settings and body fields it adds.
///
/// [`OpenAiOptions::openai`] is OpenAI itself. A crate for another OpenAI-compatible provider
/// (self-hosted Qwen on vLLM, say) starts from it, changes what differs and calls
/// [`OpenAiAdapter::with_options`], reusing the whole wire implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiOptions {
    /// `BackendInfo::provider`, e.g. `openai`.
    pub provider: String,
    pub default_base_url: String,
    /// Model used when the settings name none; `None` makes `model` required.
    pub default_model: Option<String>,
    /// Prices, quality and context windows by model name.
    pub models: &'static [ModelEntry],
    /// Hosts that refuse anonymous calls: a backend pointing at one without a key is a
    /// configuration error, reported before the first request.
    pub key_required_hosts: Vec<String>,
    /// Additional `extra` keys the wrapping crate reads itself (not rejected here).
    pub extra_keys: Vec<String>,
    /// Top-level fields added to every request body.
    pub extra_body: Map<String, Value>,
    /// Whether the provider's models take images, unless a backend's `images` setting says
    /// otherwise: the router sends image requests only to backends that do. A model the
    /// table marks text-only ([`ModelEntry::images`]) takes none either way; a model it does
    /// not know (a custom or self-hosted one) follows this.
    pub images: bool,
    /// Hosts whose Chat Completions read PDFs as `file` content parts. Only OpenAI's own API
    /// is known to: vLLM, SGLang, llama.cpp and most proxies answer a `file` part with a 400
    /// ("Unsupported chat content part type"), which the router cannot fail over from, so a
    /// backend elsewhere refuses documents before sending ([`ErrorKind::Unsupported`]) and the
    /// router tries another; its `documents` setting says otherwise for a server that reads
    /// them.
    ///
    /// [`ErrorKind::Unsupported`]: claudette_core::ErrorKind::Unsupported
    pub document_hosts: Vec<String>,
}

impl OpenAiOptions {
    /// OpenAI's own API: `https://api.openai.com/v1`, `gpt-4o-mini` by default, OpenAI prices.
    pub fn openai() -> Self {
        Self {
            provider: "openai".into(),
            default_base_url: "https://api.openai.com/v1".into(),
            default_model: Some("gpt-4o-mini".into()),
            models: OPENAI_MODELS,
            key_required_hosts: vec!["api.openai.com".into()],
            extra_keys: Vec::new(),
            extra_body: Map::new(),
            images: true,
            document_hosts: vec!["api.openai.com".into()],
        }
    }

    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into();
        self
    }
    pub fn default_base_url(mut self, url: impl Into<String>) -> Self {
        self.default_base_url = url.into();
        self
    }
    pub fn default_model(mut self, model: Option<String>) -> Self {
        self.default_model = model;
        self
    }
    pub fn models(mut self, table: &'static [ModelEntry]) -> Self {
        self.models = table;
        self
    }
    pub fn key_required_hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.key_required_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }
    pub fn allow_extra<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.extra_keys.extend(keys.into_iter().map(Into::into));
        self
    }
    pub fn extra_body(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra_body.insert(key.into(), value.into());
        self
    }
    pub fn images(mut self, on: bool) -> Self {
        self.images = on;
        self
    }
    pub fn document_hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.document_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        Self::openai()
    }
}

/// OpenAI chat completions as a sans-IO [`ProviderAdapter`].
///
/// Works for any OpenAI-compatible server (llama.cpp `llama-server`, llama-cpp-python, vLLM,
/// SGLang, LiteLLM): point `base_url` at its `/v1`. Settings read from `extra`:
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `stream_include_usage` | bool | `true` | send `stream_options.include_usage`; switch off for servers that reject it |
/// | `organization` | string | none | `OpenAI-Organization` header |
/// | `context_window` | u32 | model table | the model's window, for routing |
/// | `backend_type` | `cloud` / `self_hosted` | self-hosted for loopback and private hosts | |
/// | `max_tokens_field` | `max_tokens` / `max_completion_tokens` | `max_tokens`, `max_completion_tokens` for o-series | which field carries `max_tokens` |
/// | `images` | bool | the model table's word, else the provider's ([`OpenAiOptions::images`]) | whether the model takes images; `false` keeps image requests away from a text-only model on a self-hosted server |
/// | `documents` | bool | `images`, on a host of [`OpenAiOptions::document_hosts`] (OpenAI's own API) only | whether the server reads PDFs as `file` parts; when not, a request with a document is refused before sending (`Unsupported`) and the router tries another backend |
///
/// Unknown keys are a configuration error (a typo must not silently become a default).
///
/// A request's `top_k` is sent only to self-hosted backends (`backend_type`, guessed from the
/// host): vLLM, llama.cpp and SGLang take it, OpenAI's API refuses parameters it does not know,
/// and a sampling knob is not worth a failed request. `seed` and `parallel_tool_calls` (the
/// latter only with tools) are OpenAI's own and always sent. A failed tool result (which this
/// protocol cannot flag) is sent as `Error: <content>`.
#[derive(Debug, Clone)]
pub struct OpenAiAdapter {
    info: BackendInfo,
    options: OpenAiOptions,
    base_url: Url,
    /// `{base_url}/chat/completions`, joined once rather than per request.
    chat_url: String,
    has_key: bool,
    organization: Option<String>,
    stream_include_usage: bool,
    /// Explicit setting; `None` picks per model (see [`MaxTokensField`]).
    max_tokens_field: Option<MaxTokensField>,
    /// Whether PDFs are sent as `file` parts (`documents`, see [`OpenAiOptions::document_hosts`]).
    documents: bool,
    pricing_override: Option<Pricing>,
    /// The table entry of the configured model, looked up once: nearly every request and
    /// answer names that model, and a lookup walks the whole table.
    own_entry: Option<ModelEntry>,
}

impl OpenAiAdapter {
    /// An adapter for OpenAI (or a compatible server at `base_url`).
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        Self::with_options(settings, OpenAiOptions::openai())
    }

    /// An adapter for an OpenAI-compatible provider described by `options`.
    ///
    /// Fails with a `Config` error naming the backend for a bad `base_url`, an unknown or
    /// mistyped `extra` key, a missing model (when `options` has no default) or a quality
    /// outside 0..1. Whether a key is needed is checked by [`ProviderAdapter::validate`].
    pub fn with_options(settings: &BackendSettings, options: OpenAiOptions) -> Result<Self, BackendError> {
        let name = &settings.name;
        let known: Vec<&str> =
            EXTRA_KEYS.iter().copied().chain(options.extra_keys.iter().map(String::as_str)).collect();
        settings.reject_unknown_extra(&known)?;
        let base_url = settings.parsed_base_url(&options.default_base_url)?;
        let model = settings
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .or_else(|| options.default_model.clone())
            .ok_or_else(|| BackendError::config(format!("backend `{name}`: `model` is required")))?;
        let stream_include_usage = settings.extra_as::<bool>("stream_include_usage")?.unwrap_or(true);
        let organization = settings.extra_as::<String>("organization")?.filter(|o| !o.trim().is_empty());
        let max_tokens_field = settings.extra_as::<MaxTokensField>("max_tokens_field")?;
        let explicit_images = settings.extra_as::<bool>("images")?;
        let backend_type = match settings.extra_as::<BackendType>("backend_type")? {
            Some(t) => t,
            None if is_local_host(&base_url) => BackendType::SelfHosted,
            None => BackendType::Cloud,
        };
        let entry = lookup_model(options.models, &model);
        // The backend's own word wins (a proxy that serves `gpt-4` with vision, or a
        // deployment known to refuse images); else the provider's default, narrowed by the
        // table, so a text-only OpenAI model is skipped for an image request rather than
        // answering it with a 400.
        let images = explicit_images.unwrap_or_else(|| options.images && entry.is_none_or(|e| e.images));
        // OpenAI reads a PDF as its text and an image of each page, on vision models only.
        let documents = settings.extra_as::<bool>("documents")?.unwrap_or_else(|| {
            let host = base_url.host_str().unwrap_or_default();
            images && options.document_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        });
        let context_window = match settings.extra_as::<u32>("context_window")? {
            Some(0) => {
                return Err(BackendError::config(format!(
                    "backend `{name}`: `context_window` must be positive"
                )));
            }
            Some(w) => Some(w),
            None => entry.and_then(|e| e.context_window),
        };
        let quality = match settings.quality {
            Some(q) if !(0.0..=1.0).contains(&q) => {
                return Err(BackendError::config(format!(
                    "backend `{name}`: `quality` must be within 0..1, got {q}"
                )));
            }
            Some(q) => q,
            None => entry.map_or(0.5, |e| e.quality),
        };
        if let Some(p) = &settings.pricing {
            let rates =
                [Some(p.input_per_1k), Some(p.output_per_1k), p.cache_read_per_1k, p.cache_write_per_1k];
            if rates.into_iter().flatten().any(|r| !r.is_finite() || r < 0.0) {
                return Err(BackendError::config(format!(
                    "backend `{name}`: prices must be finite and not negative"
                )));
            }
        }
        let pricing = match settings.pricing {
            Some(p) => p,
            None => table_pricing(options.models, &model).unwrap_or(Pricing::FREE),
        };
        let info = BackendInfo {
            name: name.clone(),
            provider: options.provider.clone(),
            backend_type,
            model,
            priority: settings.priority,
            pricing,
            quality,
            supports_streaming: true,
            supports_tools: true,
            supports_images: images,
            context_window,
            region: settings.region.clone(),
            tags: settings.tags.clone(),
            enabled: settings.enabled,
        };
        let chat_url = endpoint(&base_url, "chat/completions");
        Ok(Self {
            info,
            options,
            base_url,
            chat_url,
            has_key: settings.api_key.as_ref().is_some_and(|k| !k.is_empty()),
            organization,
            stream_include_usage,
            max_tokens_field,
            documents,
            pricing_override: settings.pricing,
            own_entry: entry.copied(),
        })
    }

    /// The table entry for `model`.
    fn entry(&self, model: &str) -> Option<ModelEntry> {
        if model == self.info.model {
            return self.own_entry;
        }
        lookup_model(self.options.models, model).copied()
    }

    /// The options this adapter was built with.
    pub fn options(&self) -> &OpenAiOptions {
        &self.options
    }

    /// The validated base URL (e.g. `https://api.openai.com/v1`).
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// `{base_url}/{path}`, keeping a query string the base URL may carry.
    pub fn endpoint(&self, path: &str) -> String {
        endpoint(&self.base_url, path)
    }

    /// The body options for `request` (model, output-cap field, usage in streams, extras).
    pub fn body_options(&self, request: &ChatRequest) -> BodyOptions {
        let spec = self.body_spec(request);
        BodyOptions {
            model: spec.model.to_owned(),
            max_tokens_field: spec.max_tokens_field,
            stream_include_usage: spec.stream_include_usage,
            send_top_k: spec.send_top_k,
            send_documents: spec.send_documents,
            extra: spec.extra.clone(),
        }
    }

    /// [`Self::body_options`] by reference, for the per-request path.
    fn body_spec(&self, request: &ChatRequest) -> BodySpec<'_> {
        let model = request.model.as_deref().filter(|m| !m.is_empty()).unwrap_or(&self.info.model);
        let max_tokens_field = self.max_tokens_field.unwrap_or_else(|| {
            if self.entry(model).is_some_and(|e| e.reasoning) {
                MaxTokensField::MaxCompletionTokens
            } else {
                MaxTokensField::MaxTokens
            }
        });
        BodySpec {
            model: &self.info.model,
            max_tokens_field,
            stream_include_usage: self.stream_include_usage,
            // The servers one runs oneself take `top_k`; a cloud API (OpenAI's first) may
            // refuse a parameter it does not know, so a best-effort knob is not risked there.
            send_top_k: self.info.backend_type == BackendType::SelfHosted,
            send_documents: self.documents,
            extra: &self.options.extra_body,
        }
    }

    fn with_common_headers(&self, mut request: HttpRequest) -> HttpRequest {
        if let Some(org) = &self.organization {
            request = request.header("OpenAI-Organization", org.clone());
        }
        request
    }
}

/// `{base}/{path}`, keeping a query string the base URL may carry.
fn endpoint(base: &Url, path: &str) -> String {
    claudette_core::base_url::endpoint_url(base, path, &[])
}

/// Prices of `model` from `table`, if the table knows it.
fn table_pricing(table: &[ModelEntry], model: &str) -> Option<Pricing> {
    lookup_model(table, model).map(|e| e.pricing)
}

/// Loopback, private, link-local and unique-local addresses, and `localhost`: a server on
/// our own hardware. Anything else (including private DNS names we cannot resolve here)
/// counts as cloud unless `backend_type` says otherwise.
fn is_local_host(url: &Url) -> bool {
    let ip = match url.host() {
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            return d == "localhost" || d.ends_with(".localhost");
        }
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        None => return false,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link local fe80::/10
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    }
}

impl ProviderAdapter for OpenAiAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn auth_scheme(&self) -> AuthScheme {
        if self.has_key { AuthScheme::Bearer } else { AuthScheme::None }
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        let body = encode(&self.body_spec(request), request, stream)?;
        let accept = if stream { "text/event-stream" } else { "application/json" };
        // `HttpRequest::post_json` takes a `Value`; the body is already JSON bytes, so the
        // same request (content type, then accept) is built here.
        let http = HttpRequest {
            method: Method::Post,
            url: self.chat_url.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), accept.into()),
            ],
            body: Some(body),
        };
        Ok(self.with_common_headers(http))
    }

    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let requested = request.model.as_deref().filter(|m| !m.is_empty()).unwrap_or(&self.info.model);
        let mut parsed = parse_chat_completion(response.body, &self.info.name, requested)
            .map_err(|e| e.with_backend(&self.info.name))?;
        if crate::error::is_abort(parsed.finish_reason.as_ref()) {
            return Err(crate::error::aborted().with_status(response.status).with_backend(&self.info.name));
        }
        parsed.cost = self.pricing(Some(&parsed.model)).cost(&parsed.usage);
        Ok(parsed)
    }

    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        classify_openai_error(response).with_backend(&self.info.name)
    }

    fn stream_decoder(&self, _request: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::new())
    }

    fn health_probe(&self) -> Option<HttpRequest> {
        Some(self.with_common_headers(
            HttpRequest::get(self.endpoint("models")).header("accept", "application/json"),
        ))
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        parse_model_list(body).map_err(|e| e.with_backend(&self.info.name))
    }

    /// Prices for `model`: the settings' override if any, else the table entry of the model
    /// that answered, else that of the configured model, else free (logged at debug: an
    /// unknown model is typically a self-hosted one, and a guessed price would be worse).
    fn pricing(&self, model: Option<&str>) -> Pricing {
        if let Some(p) = self.pricing_override {
            return p;
        }
        if let Some(e) = model.and_then(|m| self.entry(m)) {
            return e.pricing;
        }
        if let Some(e) = self.own_entry {
            return e.pricing;
        }
        tracing::debug!(
            backend = %self.info.name,
            model = model.unwrap_or(&self.info.model),
            "no price known for this model; counting it as free (set `pricing` to override)"
        );
        Pricing::FREE
    }

    fn validate(&self) -> Result<(), BackendError> {
        let host = self.base_url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.has_key && self.options.key_required_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            return Err(BackendError::config(format!(
                "backend `{}`: {host} needs an API key (set `api_key` or `api_key_env`)",
                self.info.name
            )));
        }
        Ok(())
    }
}

/// Reads a model list: OpenAI's `{"data":[{"id":…}]}`, or llama.cpp's Ollama-style
/// `{"models":[{"name"|"model":…}]}` when there is no `data`.
pub fn parse_model_list(body: &[u8]) -> Result<Vec<String>, BackendError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        BackendError::malformed(format!("model list is not JSON: {e}")).with_provider_body(body)
    })?;
    if let Some(data) = value.get("data").and_then(Value::as_array) {
        return Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .map(str::to_owned)
            .collect());
    }
    if let Some(models) = value.get("models").and_then(Value::as_array) {
        return Ok(models
            .iter()
            .filter_map(|m| m.get("name").or_else(|| m.get("model")).and_then(Value::as_str))
            .map(str::to_owned)
            .collect());
    }
    Err(BackendError::malformed("model list has neither `data` nor `models`").with_provider_body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        let local = |u: &str| is_local_host(&Url::parse(u).unwrap());
        assert!(local("http://127.0.0.1:8080/v1"));
        assert!(local("http://localhost/v1"));
        assert!(local("http://10.1.2.3/v1"));
        assert!(local("http://192.168.0.9/v1"));
        assert!(local("http://[::1]:8000/v1"));
        assert!(local("http://[fd00::1]/v1"));
        assert!(!local("https://api.openai.com/v1"));
        assert!(!local("http://8.8.8.8/v1"));
    }

    fn takes_images(model: &str, images: Option<bool>, options: OpenAiOptions) -> bool {
        let mut settings = BackendSettings::new("b").model(model).api_key("sk-test");
        if let Some(on) = images {
            settings = settings.extra("images", on);
        }
        OpenAiAdapter::with_options(&settings, options).unwrap().info().supports_images
    }

    /// The router sends image requests only to backends that take them, so OpenAI's
    /// text-only models say so (dated snapshots as their family), and an explicit `images`
    /// setting wins over the table either way.
    #[test]
    fn supports_images_follows_the_model_table_unless_the_settings_say() {
        let openai = |model: &str| takes_images(model, None, OpenAiOptions::openai());
        for vision in [
            "gpt-4o",
            "gpt-4o-mini-2024-07-18",
            "gpt-4.1-nano",
            "gpt-4-turbo",
            "gpt-4-turbo-2024-04-09",
            "gpt-4-vision-preview",
            "gpt-4-1106-vision-preview",
            "o1",
            "o1-2024-12-17",
            "o3",
            "o4-mini",
            "openai/gpt-4o",
        ] {
            assert!(openai(vision), "{vision} takes images");
        }
        for text_only in [
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-32k",
            "gpt-4-turbo-preview",
            "gpt-4-1106-preview",
            "gpt-4-0125-preview",
            "o1-mini",
            "o1-preview-2024-09-12",
            "o3-mini",
            "o3-mini-2025-01-31",
        ] {
            assert!(!openai(text_only), "{text_only} reads text only");
        }
        // The settings' word wins over the table.
        assert!(takes_images("gpt-3.5-turbo", Some(true), OpenAiOptions::openai()));
        assert!(!takes_images("gpt-4o", Some(false), OpenAiOptions::openai()));
        // A model the table does not know follows the provider's default.
        assert!(takes_images("tiny-llama", None, OpenAiOptions::openai()));
        assert!(!takes_images("tiny-llama", None, OpenAiOptions::openai().images(false)));
        assert!(takes_images("tiny-llama", Some(true), OpenAiOptions::openai().images(false)));
        // A provider that takes no images by default is not overruled by the table.
        assert!(!takes_images("gpt-4o", None, OpenAiOptions::openai().images(false)));
    }

    /// PDFs go as `file` parts to OpenAI's own API, on its vision models; every other server
    /// (the compatible ones answer a `file` part with a 400) gets them only when its
    /// `documents` setting says it reads them.
    #[test]
    fn documents_are_sent_to_openai_itself_unless_the_settings_say() {
        let sends = |base_url: &str, model: &str, documents: Option<bool>, options: OpenAiOptions| {
            let mut settings = BackendSettings::new("b").base_url(base_url).model(model).api_key("sk-test");
            if let Some(on) = documents {
                settings = settings.extra("documents", on);
            }
            let adapter = OpenAiAdapter::with_options(&settings, options).unwrap();
            adapter.body_options(&ChatRequest::prompt("x")).send_documents
        };
        let openai = OpenAiOptions::openai;
        assert!(sends("https://api.openai.com/v1", "gpt-4o", None, openai()));
        assert!(sends("https://API.openai.com/v1", "gpt-4.1-mini", None, openai()));
        // A text-only model reads no PDF (OpenAI reads each page as an image too).
        assert!(!sends("https://api.openai.com/v1", "gpt-3.5-turbo", None, openai()));
        // A compatible server, local or not, is not assumed to.
        assert!(!sends("http://127.0.0.1:8000/v1", "gpt-4o", None, openai()));
        assert!(!sends("https://proxy.example.com/v1", "gpt-4o", None, openai()));
        assert!(!sends(
            "https://api.openai.com/v1",
            "gpt-4o",
            None,
            openai().document_hosts(Vec::<String>::new())
        ));
        // The settings' word wins either way.
        assert!(sends("https://proxy.example.com/v1", "gpt-4o", Some(true), openai()));
        assert!(!sends("https://api.openai.com/v1", "gpt-4o", Some(false), openai()));
    }
}
