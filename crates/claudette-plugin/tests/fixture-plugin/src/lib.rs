//! A plugin for claudette-plugin's tests: a tiny echo provider whose every misbehaviour is
//! switchable, so the host's refusals and panic containment can be tested on a real `.so`.
//!
//! Protocol: `POST {base_url}/echo` with `{"prompt"}`, answer `{"text"}`; stream lines
//! `{"text"}` then `{"end": true}` (NDJSON); token count `POST {base_url}/count` with
//! `{"prompt"}`, answer `{"tokens"}`.
//!
//! Run-time switches (settings `extra` and prompts): `fail_ctor` / `panic_ctor` settings make
//! the constructor fail or panic; a prompt `panic` makes `build_request` and
//! `count_tokens_request` panic; a prompt `no count` makes `count_tokens_request` say the
//! provider has no count call, a prompt `uncountable` makes it fail; a stream line
//! `{"panic": true}` makes the decoder panic; an error body `panic` makes `classify_error`
//! panic, a count body `panic` `parse_count_tokens`; model `panic` makes `pricing` panic.
//! Build-time switches are the cargo features.
#![allow(clippy::panic)] // panicking on request is this crate's purpose

use claudette_core::{
    AuthScheme, BackendError, BackendInfo, BackendSettings, BackendType, ChatRequest, ChatResponse,
    ErrorKind, FinishReason, Frame, Framing, HttpRequest, HttpResponse, Pricing, ProviderAdapter,
    StreamDecoder, StreamEnd, StreamEvent, Usage,
};
use serde_json::{Value, json};

pub const PROVIDER: &str = "fixture";

#[derive(Debug)]
pub struct FixtureAdapter {
    info: BackendInfo,
    url: String,
    count_url: String,
}

fn prompt_of(request: &ChatRequest) -> String {
    request.messages.last().map(|m| m.content.clone()).unwrap_or_default()
}

impl FixtureAdapter {
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        if settings.extra_as::<bool>("panic_ctor")? == Some(true) {
            panic!("fixture constructor exploded");
        }
        if settings.extra_as::<bool>("fail_ctor")? == Some(true) {
            return Err(BackendError::config("fixture constructor refuses these settings"));
        }
        let base = settings.base_url.clone().unwrap_or_else(|| "http://127.0.0.1:9".into());
        Ok(Self {
            info: BackendInfo {
                name: settings.name.clone(),
                provider: PROVIDER.into(),
                backend_type: BackendType::SelfHosted,
                model: settings.model.clone().unwrap_or_else(|| "echo".into()),
                priority: settings.priority,
                pricing: settings.pricing.unwrap_or(Pricing::new(0.001, 0.002)),
                quality: settings.quality.unwrap_or(0.5),
                supports_streaming: true,
                supports_tools: false,
                supports_images: false,
                context_window: Some(4096),
                region: None,
                tags: settings.tags.clone(),
                enabled: settings.enabled,
            },
            url: format!("{}/echo", base.trim_end_matches('/')),
            count_url: format!("{}/count", base.trim_end_matches('/')),
        })
    }
}

impl ProviderAdapter for FixtureAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }
    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::Header("x-fixture-key".into())
    }
    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        let prompt = prompt_of(request);
        if prompt == "panic" {
            panic!("fixture build_request exploded");
        }
        HttpRequest::post_json(&self.url, &json!({"prompt": prompt, "stream": stream}))
    }
    fn parse_response(
        &self,
        _request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let v: Value =
            serde_json::from_slice(response.body).map_err(|e| BackendError::malformed(e.to_string()))?;
        let mut answer = ChatResponse::empty(&self.info.name, &self.info.model);
        answer.content = v["text"].as_str().ok_or_else(|| BackendError::malformed("no text"))?.to_owned();
        answer.finish_reason = Some(FinishReason::Stop);
        answer.usage = Usage::reported(1, 1);
        Ok(answer)
    }
    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        if response.body == b"panic" {
            panic!("fixture classify_error exploded");
        }
        BackendError::from_http(response, String::from_utf8_lossy(response.body))
    }
    fn framing(&self) -> Framing {
        Framing::Ndjson
    }
    fn stream_decoder(&self, _request: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(FixtureDecoder { ended: false })
    }
    fn health_probe(&self) -> Option<HttpRequest> {
        None
    }
    fn parse_models(&self, _body: &[u8]) -> Result<Vec<String>, BackendError> {
        Ok(vec![self.info.model.clone()])
    }
    fn count_tokens_request(&self, request: &ChatRequest) -> Option<Result<HttpRequest, BackendError>> {
        match prompt_of(request).as_str() {
            "panic" => panic!("fixture count_tokens_request exploded"),
            "no count" => None,
            "uncountable" => {
                Some(Err(BackendError::new(ErrorKind::ContextOverflow, "fixture cannot count this")
                    .with_code("too_long")))
            }
            prompt => Some(HttpRequest::post_json(&self.count_url, &json!({"prompt": prompt}))),
        }
    }
    fn parse_count_tokens(&self, response: &HttpResponse<'_>) -> Result<u32, BackendError> {
        if response.body == b"panic" {
            panic!("fixture parse_count_tokens exploded");
        }
        let v: Value = serde_json::from_slice(response.body).map_err(|e| {
            BackendError::malformed(format!("fixture count: {e}")).with_status(response.status)
        })?;
        v["tokens"].as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
            BackendError::malformed("fixture count without `tokens`").with_provider_body(response.body)
        })
    }
    fn pricing(&self, model: Option<&str>) -> Pricing {
        if model == Some("panic") {
            panic!("fixture pricing exploded");
        }
        self.info.pricing
    }
}

struct FixtureDecoder {
    ended: bool,
}

impl StreamDecoder for FixtureDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        let v: Value =
            serde_json::from_str(&frame.data).map_err(|e| BackendError::malformed(e.to_string()))?;
        if v["panic"] == true {
            panic!("fixture decoder exploded");
        }
        if v["end"] == true {
            self.ended = true;
            return Ok(vec![StreamEvent::Done {
                end: StreamEnd {
                    finish_reason: Some(FinishReason::Stop),
                    usage: Usage::reported(1, 1),
                    cost: 0.0,
                },
            }]);
        }
        Ok(vec![StreamEvent::text(v["text"].as_str().unwrap_or_default())])
    }
    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        if self.ended { Ok(Vec::new()) } else { Err(BackendError::interrupted("fixture: no end line")) }
    }
}

/// The name the descriptor reports; panics under `descriptor-panic`.
#[cfg(not(feature = "no-export"))]
fn name() -> &'static str {
    if cfg!(feature = "descriptor-panic") {
        panic!("fixture descriptor exploded");
    }
    PROVIDER
}

#[cfg(not(feature = "no-export"))]
claudette_plugin::export_plugin!(
    name = name(),
    description = if cfg!(feature = "other-build") {
        "claudette-plugin test fixture, another build"
    } else {
        "claudette-plugin test fixture"
    },
    ctor = FixtureAdapter::new,
    __abi_version = claudette_plugin::ABI_VERSION + u32::from(cfg!(feature = "abi-bump")),
    __schema_version = claudette_plugin::SCHEMA_VERSION + u32::from(cfg!(feature = "schema-bump"))
        - u32::from(cfg!(feature = "schema-previous")),
);

/// Under `no-export`: a library with an ordinary C symbol and no root module.
#[cfg(feature = "no-export")]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn claudette_fixture_without_root_module() -> u32 {
    7
}
