//! [`AnthropicAdapter`]: the Messages API as a sans-IO [`ProviderAdapter`].

use claudette_core::base_url::endpoint_url;
use claudette_core::{
    AuthScheme, BackendError, BackendInfo, BackendSettings, BackendType, ChatRequest, ChatResponse, Dialect,
    HttpRequest, HttpResponse, Pricing, ProviderAdapter, StreamDecoder, Usage,
};
use serde::Deserialize;
use serde_json::Value;

use crate::pricing;
use crate::stream::AnthropicStreamDecoder;
use crate::{error, request, response};

/// Provider name in the registry and in [`BackendInfo::provider`].
pub const PROVIDER: &str = "anthropic";
/// Anthropic's API root. Requests go to `{base}/v1/messages`.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Model used when the settings name none: the current small model, cheap enough to be a
/// sensible default for a router that optimises cost.
pub const DEFAULT_MODEL: &str = "claude-haiku-4-5";
/// The API version every Messages request must name.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when a request sets none (Anthropic requires the field).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Provider-specific keys this adapter reads from [`BackendSettings::extra`]. Anything else
/// there is a typo and rejected.
pub const EXTRA_KEYS: &[&str] =
    &["anthropic_version", "anthropic_beta", "default_max_tokens", "context_window", "backend_type"];

/// `anthropic_beta` takes one flag or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Beta {
    One(String),
    Many(Vec<String>),
}

/// The Anthropic Messages API (or a server that speaks it: llama.cpp, LiteLLM, DashScope) as
/// pure functions. Built from [`BackendSettings`]; see the crate docs for the keys it reads.
#[derive(Debug, Clone)]
pub struct AnthropicAdapter {
    info: BackendInfo,
    /// Base URL whose path has no trailing slash or `/v1`; its query, if any, is kept on
    /// every call.
    base: url::Url,
    /// `{base}/v1/messages`, joined once rather than per request.
    messages_url: String,
    /// `{base}/v1/messages/count_tokens`.
    count_url: String,
    /// Whether this is Anthropic's own API (a key is required, unknown models are Claude).
    official: bool,
    has_key: bool,
    version: String,
    /// The configured `anthropic_beta` flags, each once, in their order.
    beta: Vec<String>,
    default_max_tokens: u32,
    pricing_override: Option<Pricing>,
}

impl AnthropicAdapter {
    /// Reads and checks `settings`: unknown extra keys, the base URL, a key for the official
    /// API. Every problem is a [`claudette_core::ErrorKind::Config`] error naming the backend.
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        settings.reject_unknown_extra(EXTRA_KEYS)?;
        let name = &settings.name;
        let url = settings.parsed_base_url(DEFAULT_BASE_URL)?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let official = host == "api.anthropic.com";
        // `host_str` keeps the brackets of an IPv6 literal.
        let loopback = host == "localhost"
            || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());

        // The Anthropic SDKs take the root as base URL while the OpenAI ones take `…/v1`; accept
        // both rather than post to `/v1/v1/messages`.
        let mut base = url.clone();
        let path = url.path().trim_end_matches('/');
        base.set_path(path.strip_suffix("/v1").unwrap_or(path));
        let messages_url = endpoint_url(&base, "v1/messages", &[]);
        let count_url = endpoint_url(&base, "v1/messages/count_tokens", &[]);

        let model =
            settings.model.clone().filter(|m| !m.trim().is_empty()).unwrap_or_else(|| DEFAULT_MODEL.into());
        let version = settings
            .extra_as::<String>("anthropic_version")?
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.into());
        let beta = match settings.extra_as::<Beta>("anthropic_beta")? {
            None => Vec::new(),
            Some(Beta::One(b)) => vec![b],
            Some(Beta::Many(list)) => list,
        };
        let beta = merge_betas(beta.iter().map(String::as_str), []);
        let default_max_tokens =
            settings.extra_as::<u32>("default_max_tokens")?.unwrap_or(DEFAULT_MAX_TOKENS);
        if default_max_tokens == 0 {
            return Err(BackendError::config(format!(
                "backend `{name}`: default_max_tokens must be at least 1"
            )));
        }
        let context_window =
            settings.extra_as::<u32>("context_window")?.or_else(|| pricing::default_context_window(&model));
        let backend_type = settings.extra_as::<BackendType>("backend_type")?.unwrap_or(if loopback {
            BackendType::SelfHosted
        } else {
            BackendType::Cloud
        });
        let pricing_override = settings.pricing.map(pricing::with_anthropic_defaults);
        let price = pricing_override.unwrap_or_else(|| pricing::for_model(&model, official));
        if pricing_override.is_none() && pricing::lookup(&model).is_none() && !price.is_free() {
            tracing::warn!(backend = %name, %model, "no built-in price for this model; using its family's highest; set `pricing` to override");
        }
        let quality = settings.quality.unwrap_or_else(|| pricing::default_quality(&model));
        if !(0.0..=1.0).contains(&quality) {
            return Err(BackendError::config(format!(
                "backend `{name}`: quality must be within 0..1, got {quality}"
            )));
        }

        let adapter = Self {
            info: BackendInfo {
                name: name.clone(),
                provider: PROVIDER.into(),
                backend_type,
                model,
                priority: settings.priority,
                pricing: price,
                quality,
                supports_streaming: true,
                supports_tools: true,
                supports_images: true,
                context_window,
                region: settings.region.clone(),
                tags: settings.tags.clone(),
                enabled: settings.enabled,
            },
            base,
            messages_url,
            count_url,
            official,
            has_key: settings.api_key.as_ref().is_some_and(|k| !k.is_empty()),
            version,
            beta,
            default_max_tokens,
            pricing_override,
        };
        adapter.validate()?;
        Ok(adapter)
    }

    /// The Messages endpoint.
    pub fn messages_url(&self) -> String {
        self.messages_url.clone()
    }

    /// Headers every call carries (the key is added by the I/O layer, never here): the
    /// configured beta flags, plus those the request's Anthropic tools and fields need (web
    /// fetch, code execution, context editing, …), so a client that names such a tool need not
    /// know which backend takes it or configure each one, plus those the client asked for
    /// itself ([`ChatRequest::native_flags`]: Claude Code's `anthropic-beta` header).
    fn with_headers(&self, mut req: HttpRequest, request: Option<&ChatRequest>) -> HttpRequest {
        req = req.header("anthropic-version", self.version.as_str());
        let needed = request.map(request::betas).unwrap_or_default();
        let asked = request.into_iter().flat_map(|r| &r.native_flags);
        let asked = asked.filter(|f| f.dialect == Dialect::Anthropic).map(|f| f.flag.as_str());
        let beta = merge_betas(self.beta.iter().map(String::as_str), needed.into_iter().chain(asked));
        if !beta.is_empty() {
            req = req.header("anthropic-beta", beta.join(",").as_str());
        }
        req
    }

    fn model_for<'a>(&'a self, request: &'a ChatRequest) -> &'a str {
        request.model.as_deref().filter(|m| !m.is_empty()).unwrap_or(&self.info.model)
    }

    fn price_of(&self, model: &str) -> Pricing {
        PriceBook::of(self).price(model)
    }
}

impl ProviderAdapter for AnthropicAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn auth_scheme(&self) -> AuthScheme {
        if self.has_key { AuthScheme::Header("x-api-key".into()) } else { AuthScheme::None }
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        let body = request::body(request, self.model_for(request), self.default_max_tokens, stream)?;
        let req = HttpRequest::post_json(self.messages_url(), &body)?
            .header("accept", if stream { "text/event-stream" } else { "application/json" });
        Ok(self.with_headers(req, Some(request)))
    }

    /// Anthropic's free `POST /v1/messages/count_tokens`, with the message body's prompt and
    /// the same version and beta headers.
    fn count_tokens_request(&self, request: &ChatRequest) -> Option<Result<HttpRequest, BackendError>> {
        let built = request::count_body(request, self.model_for(request), self.default_max_tokens)
            .and_then(|body| HttpRequest::post_json(self.count_url.as_str(), &body))
            .map(|req| self.with_headers(req.header("accept", "application/json"), Some(request)));
        Some(built)
    }

    /// `{"input_tokens": N}`.
    fn parse_count_tokens(&self, response: &HttpResponse<'_>) -> Result<u32, BackendError> {
        response::parse_count(response.body)
            .map_err(|e| e.with_backend(self.info.name.as_str()).with_status(response.status))
    }

    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let mut out = response::parse(response.body, &self.info.name, self.model_for(request))
            .map_err(|e| e.with_backend(self.info.name.as_str()).with_status(response.status))?;
        out.cost = PriceBook::of(self).cost(&out.model, &out.usage);
        Ok(out)
    }

    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        error::classify_http(response, &self.info.name)
    }

    fn stream_decoder(&self, request: &ChatRequest) -> Box<dyn StreamDecoder> {
        let book = PriceBook::of(self);
        Box::new(AnthropicStreamDecoder::new(
            self.model_for(request).to_owned(),
            Box::new(move |model: &str, usage: &Usage| book.cost(model, usage)),
        ))
    }

    fn health_probe(&self) -> Option<HttpRequest> {
        Some(self.with_headers(HttpRequest::get(endpoint_url(&self.base, "v1/models", &[])), None))
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            BackendError::malformed(format!("model list is not JSON: {e}")).with_provider_body(body)
        })?;
        let data = v.get("data").and_then(Value::as_array).ok_or_else(|| {
            BackendError::malformed("model list has no `data` array").with_provider_body(body)
        })?;
        Ok(data.iter().filter_map(|m| m.get("id").and_then(Value::as_str)).map(str::to_owned).collect())
    }

    fn pricing(&self, model: Option<&str>) -> Pricing {
        self.price_of(model.unwrap_or(&self.info.model))
    }

    fn validate(&self) -> Result<(), BackendError> {
        if self.official && !self.has_key {
            return Err(BackendError::config(format!(
                "backend `{}`: api.anthropic.com needs an API key (set api_key)",
                self.info.name
            )));
        }
        Ok(())
    }
}

/// `configured` then `needed`, each flag once, blanks and the spaces around commas dropped
/// (a configured flag may itself be a comma-separated list).
fn merge_betas<'a>(
    configured: impl IntoIterator<Item = &'a str>,
    needed: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for flag in configured.into_iter().chain(needed).flat_map(|f| f.split(',')).map(str::trim) {
        if !flag.is_empty() && !all.iter().any(|f| f == flag) {
            all.push(flag.to_owned());
        }
    }
    all
}

/// What pricing a model needs, detached from the adapter so a stream decoder can own it.
#[derive(Debug, Clone)]
struct PriceBook {
    overridden: Option<Pricing>,
    configured_model: String,
    configured: Pricing,
    official: bool,
}

impl PriceBook {
    fn of(a: &AnthropicAdapter) -> Self {
        Self {
            overridden: a.pricing_override,
            configured_model: a.info.model.clone(),
            configured: a.info.pricing,
            official: a.official,
        }
    }

    /// What `usage` cost on `model`: its tokens, and the web searches Anthropic bills apart
    /// (the price's `web_search_per_1k`).
    fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.price(model).cost(usage)
    }

    /// The settings' `pricing` wins for every model of this backend; else the model's table
    /// price (a request may name another model than the configured one).
    fn price(&self, model: &str) -> Pricing {
        match self.overridden {
            Some(p) => p,
            None if model == self.configured_model => self.configured,
            None => pricing::for_model(model, self.official),
        }
    }
}
