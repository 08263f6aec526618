//! # claudette-custom-backend
//!
//! The seeds' `CustomBackend` as a third-party Claudette plugin: a provider for a small
//! in-house HTTP API, written against the published `claudette-core` contract, built as a
//! `cdylib` and loaded by a Claudette host at run time (see `README.md` beside this file).
//!
//! The API (the seeds' `callCustomAPI`):
//!
//! - `POST {base_url}/generate` with `{"prompt", "max_tokens", "temperature", "stream",
//!   "system"?}` and `Authorization: Bearer <key>` when a key is configured;
//! - answer `{"content": "...", "tokensInput": 12, "tokensOutput": 5}`;
//! - with `"stream": true`, NDJSON lines `{"delta": "..."}` then
//!   `{"done": true, "tokensInput": 12, "tokensOutput": 5}`;
//! - errors: any non-2xx status with `{"error": "message"}`;
//! - `GET {base_url}/health` answers 2xx when the service is up.
//!
//! Like every Claudette provider the adapter is *sans-IO*: it describes requests and reads
//! bytes. The host sends them on its own runtime with its own timeouts and attaches the key;
//! the plugin never sees the key, never opens a socket and needs no async runtime.

use claudette_core::{
    AuthScheme, BackendError, BackendInfo, BackendSettings, BackendType, ChatRequest, ChatResponse,
    FinishReason, Frame, Framing, HttpRequest, HttpResponse, Pricing, ProviderAdapter, Role, StreamDecoder,
    StreamEnd, StreamEvent, Usage,
};
use serde_json::{Value, json};

/// Provider name backends use: `provider = "custom"`.
pub const PROVIDER: &str = "custom";

/// Model reported when the settings name none (the API serves one model).
pub const DEFAULT_MODEL: &str = "custom-1";

/// `max_tokens` sent when the request sets none (the seeds' default).
pub const DEFAULT_MAX_TOKENS: u32 = 1000;

/// `temperature` sent when the request sets none (the seeds' default).
pub const DEFAULT_TEMPERATURE: f32 = 0.7;

/// The adapter: settings in, request descriptions out, bytes in, answers out.
#[derive(Debug, Clone)]
pub struct CustomAdapter {
    info: BackendInfo,
    generate_url: String,
    health_url: String,
}

impl CustomAdapter {
    /// Reads the settings: `base_url` is required (there is no public default for an in-house
    /// service), `model` defaults to [`DEFAULT_MODEL`], prices default to free, and no
    /// provider-specific settings exist (a typo is an error, not a silent default).
    pub fn new(settings: &BackendSettings) -> Result<Self, BackendError> {
        if settings.base_url.is_none() {
            return Err(BackendError::config(format!(
                "backend `{}`: provider `custom` needs `base_url`",
                settings.name
            )));
        }
        settings.reject_unknown_extra(&[])?;
        let base = settings.parsed_base_url("")?;
        let base = base.as_str().trim_end_matches('/').to_owned();
        let info = BackendInfo {
            name: settings.name.clone(),
            provider: PROVIDER.to_owned(),
            backend_type: BackendType::Cloud,
            model: settings.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            priority: settings.priority,
            pricing: settings.pricing.unwrap_or(Pricing::FREE),
            quality: settings.quality.unwrap_or(0.5),
            supports_streaming: true,
            supports_tools: false,
            supports_images: false,
            context_window: None,
            region: settings.region.clone(),
            tags: settings.tags.clone(),
            enabled: settings.enabled,
        };
        Ok(Self { info, generate_url: format!("{base}/generate"), health_url: format!("{base}/health") })
    }

    /// The API takes one prompt: a single user turn is sent as is; a longer conversation is
    /// sent as a transcript (system text travels apart).
    fn prompt(request: &ChatRequest) -> (String, Option<String>) {
        let system: Vec<&str> =
            request.messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.as_str()).collect();
        let turns: Vec<_> = request.messages.iter().filter(|m| m.role != Role::System).collect();
        let prompt = match turns.as_slice() {
            [only] if only.role == Role::User => only.content.clone(),
            _ => turns
                .iter()
                .map(|m| {
                    let who = match m.role {
                        Role::User => "User",
                        Role::Assistant => "Assistant",
                        Role::Tool => "Tool",
                        Role::System => "System",
                    };
                    format!("{who}: {}", m.content)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let system = if system.is_empty() { None } else { Some(system.join("\n")) };
        (prompt, system)
    }
}

fn tokens(v: &Value, key: &str) -> Option<u32> {
    v.get(key).and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn usage_of(v: &Value) -> Usage {
    match (tokens(v, "tokensInput"), tokens(v, "tokensOutput")) {
        (Some(input), Some(output)) => Usage::reported(input, output),
        _ => Usage::default(),
    }
}

impl ProviderAdapter for CustomAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::Bearer
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        if !request.tools.is_empty() {
            return Err(BackendError::new(
                claudette_core::ErrorKind::Unsupported,
                "provider `custom` does not support tools",
            ));
        }
        let (prompt, system) = Self::prompt(request);
        let temperature = request.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        let mut body = json!({
            "prompt": prompt,
            "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "temperature": claudette_core::types::json_f32("temperature", temperature)?,
            "stream": stream,
        });
        if let Some(system) = system {
            body["system"] = Value::String(system);
        }
        HttpRequest::post_json(&self.generate_url, &body)
    }

    fn parse_response(
        &self,
        _request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let v: Value = serde_json::from_slice(response.body)
            .map_err(|e| BackendError::malformed(format!("custom: response is not JSON: {e}")))?;
        let content = v
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| BackendError::malformed("custom: response has no `content` string"))?;
        let mut answer = ChatResponse::empty(&self.info.name, &self.info.model);
        content.clone_into(&mut answer.content);
        answer.finish_reason = Some(FinishReason::Stop);
        answer.usage = usage_of(&v);
        Ok(answer)
    }

    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        let message = serde_json::from_slice::<Value>(response.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("custom API answered HTTP {}", response.status));
        BackendError::from_http(response, message)
    }

    fn framing(&self) -> Framing {
        Framing::Ndjson
    }

    fn stream_decoder(&self, _request: &ChatRequest) -> Box<dyn StreamDecoder> {
        Box::new(CustomStreamDecoder { done: false })
    }

    fn health_probe(&self) -> Option<HttpRequest> {
        Some(HttpRequest::get(&self.health_url))
    }

    fn parse_models(&self, _body: &[u8]) -> Result<Vec<String>, BackendError> {
        // `/health` lists no models: a 2xx means the one configured model is served.
        Ok(vec![self.info.model.clone()])
    }
}

/// Decodes the NDJSON stream: `{"delta"}` lines, then one `{"done": true}` line.
#[derive(Debug)]
pub struct CustomStreamDecoder {
    done: bool,
}

impl StreamDecoder for CustomStreamDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        let v: Value = serde_json::from_str(&frame.data)
            .map_err(|e| BackendError::malformed(format!("custom: stream line is not JSON: {e}")))?;
        if let Some(error) = v.get("error").and_then(Value::as_str) {
            return Err(BackendError::interrupted(format!("custom: error in stream: {error}")));
        }
        let mut events = Vec::new();
        if let Some(delta) = v.get("delta").and_then(Value::as_str).filter(|d| !d.is_empty()) {
            events.push(StreamEvent::text(delta));
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            events.push(StreamEvent::Done {
                end: StreamEnd { finish_reason: Some(FinishReason::Stop), usage: usage_of(&v), cost: 0.0 },
            });
        }
        Ok(events)
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(BackendError::interrupted("custom: stream ended before the `done` line"))
        }
    }
}

// The plugin's one line of glue: exports `CustomAdapter` under the provider name `custom`.
claudette_plugin::export_plugin!(
    name = PROVIDER,
    description = "The seeds' CustomBackend: POST /generate {prompt} -> {content} (example plugin)",
    ctor = CustomAdapter::new,
);

#[cfg(test)]
mod tests {
    use claudette_core::{ErrorKind, Message, StreamParser};

    use super::*;

    fn adapter() -> CustomAdapter {
        CustomAdapter::new(&BackendSettings::new("c").base_url("http://127.0.0.1:9/api/")).unwrap()
    }

    #[test]
    fn request_body_is_the_seeds_shape() {
        let r = adapter().build_request(&ChatRequest::prompt("hi").with_max_tokens(5), false).unwrap();
        assert_eq!(r.url, "http://127.0.0.1:9/api/generate");
        let body: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, json!({"prompt": "hi", "max_tokens": 5, "temperature": 0.7, "stream": false}));
    }

    #[test]
    fn conversations_become_a_transcript_with_system_apart() {
        let req = ChatRequest::new(vec![
            Message::system("be brief"),
            Message::user("a"),
            Message::assistant("b"),
            Message::user("c"),
        ]);
        let r = adapter().build_request(&req, true).unwrap();
        let body: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["prompt"], "User: a\nAssistant: b\nUser: c");
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn base_url_is_required_and_unknown_settings_refused() {
        assert_eq!(CustomAdapter::new(&BackendSettings::new("c")).unwrap_err().kind, ErrorKind::Config);
        let typo = BackendSettings::new("c").base_url("http://h").extra("temprature", 1);
        assert_eq!(CustomAdapter::new(&typo).unwrap_err().kind, ErrorKind::Config);
    }

    #[test]
    fn answers_errors_and_streams_decode() {
        let a = adapter();
        let ok = br#"{"content":"hello","tokensInput":3,"tokensOutput":1}"#;
        let r = a
            .parse_response(&ChatRequest::prompt("x"), &HttpResponse { status: 200, headers: &[], body: ok })
            .unwrap();
        assert_eq!((r.content.as_str(), r.usage), ("hello", Usage::reported(3, 1)));

        let e = a.classify_error(&HttpResponse { status: 429, headers: &[], body: br#"{"error":"slow"}"# });
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::RateLimited, "slow"));

        let body = b"{\"delta\":\"he\"}\n{\"delta\":\"llo\"}\n{\"done\":true,\"tokensInput\":3,\"tokensOutput\":2}\n";
        let events = StreamParser::for_adapter(&a, &ChatRequest::prompt("x")).parse_all(body, 7);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0], StreamEvent::text("he"));
        assert!(matches!(&events[2], StreamEvent::Done { end } if end.usage == Usage::reported(3, 2)));

        let cut =
            StreamParser::for_adapter(&a, &ChatRequest::prompt("x")).parse_all(b"{\"delta\":\"he\"}\n", 64);
        assert!(
            matches!(cut.last(), Some(StreamEvent::Error { error }) if error.kind == ErrorKind::StreamInterrupted)
        );
    }
}
