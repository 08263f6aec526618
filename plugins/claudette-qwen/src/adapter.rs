//! The [`QwenAdapter`]: the OpenAI adapter under another name, with self-hosted defaults,
//! adaptive timeouts and optional `<think>` splitting.

use std::sync::Arc;

use claudette_core::{
    AuthScheme, BackendError, BackendInfo, BackendSettings, ChatRequest, ChatResponse, Clock, Framing,
    HttpRequest, HttpResponse, Observation, Pricing, ProviderAdapter, StreamDecoder, SystemClock, Timeouts,
};
use claudette_openai::{OpenAiAdapter, OpenAiOptions};
use serde_json::{Value, json};

use crate::adaptive::{ADAPTIVE_KEYS, AdaptiveConfig, AdaptiveTimeout};
use crate::think::{ThinkTagDecoder, split_response};

/// Provider name under which this crate registers and which its backends report.
pub const PROVIDER: &str = "qwen";

/// vLLM's default address (`vllm serve` listens on port 8000 and serves `/v1`).
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8000/v1";

/// The seeds' model: Qwen2.5-Coder 7B, AWQ-quantised to fit a single consumer GPU.
pub const DEFAULT_MODEL: &str = "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ";

/// `extra` keys this crate reads itself, beside [`ADAPTIVE_KEYS`]. The OpenAI adapter's own
/// keys ([`claudette_openai::EXTRA_KEYS`]) are accepted too and handled by it.
pub const QWEN_KEYS: [&str; 2] = ["split_think_tags", "enable_thinking"];

/// Self-hosted Qwen (vLLM, llama.cpp `llama-server`, SGLang, llama-cpp-python: any
/// OpenAI-compatible server) as a sans-IO [`ProviderAdapter`].
///
/// The wire protocol is entirely [`OpenAiAdapter`]'s, built with [`OpenAiOptions`] for
/// provider `qwen`, base URL [`DEFAULT_BASE_URL`], model [`DEFAULT_MODEL`], no key required,
/// no price table (free unless `pricing` is set: the box is already paid for). Every
/// [`ProviderAdapter`] method delegates to it except:
///
/// - [`timeouts`](ProviderAdapter::timeouts) and [`observe`](ProviderAdapter::observe), which
///   run the [`AdaptiveTimeout`] rule;
/// - `parse_response` and `stream_decoder`, which additionally split a leading `<think>` block
///   out of the content when `split_think_tags` is on.
///
/// The OpenAI adapter's `images` defaults to `false` here: the default model reads text only,
/// and the router keeps image requests away from it (`images = true` for a Qwen-VL model).
///
/// `backend_type` defaults to `self_hosted` whatever the host (the seeds' Qwen box lives at a
/// public domain); set `backend_type = "cloud"` for a hosted Qwen API.
///
/// Settings read from `extra`, besides [`ADAPTIVE_KEYS`] (see [`AdaptiveConfig`]) and the
/// OpenAI adapter's keys (`stream_include_usage`, `context_window`, `max_tokens_field`, …):
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `split_think_tags` | bool | `false` | move a leading `<think>…</think>` in the content to reasoning |
/// | `enable_thinking` | bool | unset | send `chat_template_kwargs.enable_thinking` (Qwen3 templates on vLLM, SGLang, llama.cpp) |
///
/// Unknown keys are a configuration error naming the key.
#[derive(Debug)]
pub struct QwenAdapter {
    inner: OpenAiAdapter,
    adaptive: AdaptiveTimeout,
    split_think_tags: bool,
}

impl QwenAdapter {
    /// An adapter on the system's monotonic clock.
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        Self::with_clock(settings, SystemClock::shared())
    }

    /// An adapter whose time-dependent parts (forgetting stale latency) read `clock`; tests
    /// pass a `FakeClock`.
    pub fn with_clock(settings: &BackendSettings, clock: Arc<dyn Clock>) -> Result<Self, BackendError> {
        // Checked first so a misspelt key is reported as such, not as a missing default.
        let known: Vec<&str> = claudette_openai::EXTRA_KEYS
            .iter()
            .chain(ADAPTIVE_KEYS.iter())
            .chain(QWEN_KEYS.iter())
            .copied()
            .collect();
        settings.reject_unknown_extra(&known)?;
        let adaptive = AdaptiveConfig::from_settings(settings)?;
        let split_think_tags = settings.extra_as::<bool>("split_think_tags")?.unwrap_or(false);
        let enable_thinking = settings.extra_as::<bool>("enable_thinking")?;
        let mut options = Self::options();
        if let Some(on) = enable_thinking {
            options = options.extra_body("chat_template_kwargs", json!({ "enable_thinking": on }));
        }
        // Our default for the OpenAI adapter's `backend_type` (it would guess from the host).
        let inner = if settings.extra.contains_key("backend_type") {
            OpenAiAdapter::with_options(settings, options)?
        } else {
            let mut settings = settings.clone();
            settings.extra.insert("backend_type".into(), Value::String("self_hosted".into()));
            OpenAiAdapter::with_options(&settings, options)?
        };
        Ok(Self { inner, adaptive: AdaptiveTimeout::new(adaptive, clock), split_think_tags })
    }

    /// The OpenAI-protocol options this adapter is built on (without per-backend extras).
    pub fn options() -> OpenAiOptions {
        OpenAiOptions::openai()
            .provider(PROVIDER)
            .default_base_url(DEFAULT_BASE_URL)
            .default_model(Some(DEFAULT_MODEL.to_owned()))
            .models(&[])
            .key_required_hosts(Vec::<String>::new())
            .allow_extra(ADAPTIVE_KEYS.iter().chain(QWEN_KEYS.iter()).copied())
            // The default model reads text only; a Qwen-VL backend sets `images = true`.
            .images(false)
    }

    /// The wrapped OpenAI adapter (endpoint, base URL, body options).
    pub fn inner(&self) -> &OpenAiAdapter {
        &self.inner
    }

    /// The adaptive-timeout state (current deadline, learned latency, health).
    pub fn adaptive(&self) -> &AdaptiveTimeout {
        &self.adaptive
    }

    /// False after `consecutive_failures_threshold` failures in a row, until a success.
    pub fn is_healthy(&self) -> bool {
        self.adaptive.is_healthy()
    }

    pub fn split_think_tags(&self) -> bool {
        self.split_think_tags
    }
}

impl ProviderAdapter for QwenAdapter {
    fn info(&self) -> &BackendInfo {
        self.inner.info()
    }

    fn auth_scheme(&self) -> AuthScheme {
        self.inner.auth_scheme()
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        self.inner.build_request(request, stream)
    }

    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let mut parsed = self.inner.parse_response(request, response)?;
        if self.split_think_tags {
            split_response(&mut parsed);
        }
        Ok(parsed)
    }

    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        self.inner.classify_error(response)
    }

    fn framing(&self) -> Framing {
        self.inner.framing()
    }

    fn stream_decoder(&self, request: &ChatRequest) -> Box<dyn StreamDecoder> {
        let inner = self.inner.stream_decoder(request);
        if self.split_think_tags { Box::new(ThinkTagDecoder::new(inner)) } else { inner }
    }

    fn health_probe(&self) -> Option<HttpRequest> {
        self.inner.health_probe()
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        self.inner.parse_models(body)
    }

    fn pricing(&self, model: Option<&str>) -> Pricing {
        self.inner.pricing(model)
    }

    fn validate(&self) -> Result<(), BackendError> {
        self.inner.validate()
    }

    fn timeouts(&self, configured: &Timeouts, request: &ChatRequest) -> Timeouts {
        self.adaptive.timeouts(configured, request)
    }

    fn observe(&self, observation: &Observation) {
        self.adaptive.observe(observation);
    }
}
