//! [`PluginAdapter`]: a plugin's adapter seen from the host as a plain `ProviderAdapter`.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use abi_stable::std_types::{RBox, RErr, ROk, RResult, RSlice, RStr, RString, RVec};
use claudette_core::{
    AuthScheme, BackendError, BackendInfo, ChatRequest, ChatResponse, Frame, Framing, HttpRequest,
    HttpResponse, Observation, Pricing, ProviderAdapter, StreamDecoder, StreamEvent, Timeouts,
};
use serde::de::DeserializeOwned;

use crate::abi::{FfiAdapter_TO, FfiHeader, FfiHttpResponse, FfiStreamDecoder_TO};
use crate::codec::{self, Wire};
use crate::wire::{
    decode_error, duration_to_ns, opt_ns, pricing_from_ffi, request_from_ffi, timeouts_from_ffi,
    timeouts_to_ffi,
};

/// Which plugin an adapter comes from, for messages.
#[derive(Debug)]
pub(crate) struct Source {
    pub path: std::path::PathBuf,
    pub provider: String,
}

/// A provider adapter living in a loaded plugin.
///
/// It implements [`ProviderAdapter`], so `claudette_http::HttpBackend<PluginAdapter>` drives
/// it exactly like a linked adapter: the same client, timeouts, key handling, stream framing,
/// metrics and cost. Requests, answers and stream events cross the boundary in a compact
/// binary form, bodies and headers as borrowed bytes; `info`, `auth_scheme` and `framing` are
/// fixed per adapter, read once as JSON.
///
/// Methods whose trait signature cannot fail (`pricing`, `timeouts`, `observe`, `health_probe`,
/// `stream_decoder`) fall back to a safe answer when the plugin errs or panics, and log it.
/// Every other method forwards, defaults included (the token count too), so a provider loaded
/// from a plugin behaves as the same provider linked in.
pub struct PluginAdapter {
    inner: FfiAdapter_TO<'static, RBox<()>>,
    info: BackendInfo,
    auth: AuthScheme,
    framing: Framing,
    source: Arc<Source>,
}

impl fmt::Debug for PluginAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginAdapter")
            .field("plugin", &self.source.path)
            .field("provider", &self.source.provider)
            .field("backend", &self.info.name)
            .finish_non_exhaustive()
    }
}

/// A plugin's answer as a `Result`, its error read back with kind and message intact.
fn result<T>(answer: RResult<T, RString>) -> Result<T, BackendError> {
    match answer {
        ROk(value) => Ok(value),
        RErr(e) => Err(decode_error(&e)),
    }
}

fn json<T: DeserializeOwned>(what: &str, answer: RResult<RString, RString>) -> Result<T, BackendError> {
    result(answer).and_then(|text| {
        serde_json::from_str(&text)
            .map_err(|e| BackendError::internal(format!("plugin returned unreadable {what}: {e}")))
    })
}

/// A binary answer from the plugin, read and then freed (by the plugin's allocator).
fn binary<T: Wire>(what: &'static str, answer: RResult<RVec<u8>, RString>) -> Result<T, BackendError> {
    result(answer).and_then(|bytes| codec::decode(what, &bytes))
}

thread_local! {
    /// The buffer requests are encoded into on this thread, kept between calls.
    static REQUEST_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Largest request buffer kept for the next call (a long conversation's is dropped).
const KEEP_REQUEST_BYTES: usize = 64 << 10;

/// Runs `f` with the binary form of `request`, encoded afresh for each call that needs it:
/// encoding is a few copies, cheaper than keeping a clone of the request to recognise it by,
/// and the plugin side recognises a repeat by its bytes and decodes it only once. The buffer
/// is taken out of the thread-local while in use, so re-entry can only cost an allocation.
fn with_request<T>(request: &ChatRequest, f: impl FnOnce(RSlice<'_, u8>) -> T) -> T {
    let mut buf = REQUEST_BUF.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    request.put(&mut buf);
    let out = f(RSlice::from_slice(&buf));
    if buf.capacity() <= KEEP_REQUEST_BYTES {
        let _ = REQUEST_BUF.try_with(|cell| cell.set(buf));
    }
    out
}

/// Runs `f` with `response` as the plugin reads it: everything borrowed, headers included.
fn with_response<T>(response: &HttpResponse<'_>, f: impl FnOnce(FfiHttpResponse<'_>) -> T) -> T {
    let headers: Vec<FfiHeader<'_>> = response
        .headers
        .iter()
        .map(|(k, v)| FfiHeader { name: RStr::from(k.as_str()), value: RStr::from(v.as_str()) })
        .collect();
    f(FfiHttpResponse {
        status: response.status,
        headers: RSlice::from_slice(&headers),
        body: RSlice::from_slice(response.body),
    })
}

impl PluginAdapter {
    pub(crate) fn new(
        inner: FfiAdapter_TO<'static, RBox<()>>,
        source: Arc<Source>,
    ) -> Result<Self, BackendError> {
        let info: BackendInfo = json("backend info", inner.info())?;
        let auth: AuthScheme = json("auth scheme", inner.auth_scheme())?;
        let framing: Framing = json("framing", inner.framing())?;
        Ok(Self { inner, info, auth, framing, source })
    }

    /// The plugin file this adapter lives in.
    pub fn plugin_path(&self) -> &std::path::Path {
        &self.source.path
    }

    fn warn(&self, what: &str, error: &BackendError) {
        tracing::warn!(
            plugin = %self.source.path.display(),
            provider = %self.source.provider,
            backend = %self.info.name,
            "plugin {what} failed: {error}; using the default"
        );
    }
}

impl ProviderAdapter for PluginAdapter {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn auth_scheme(&self) -> AuthScheme {
        self.auth.clone()
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> Result<HttpRequest, BackendError> {
        result(with_request(request, |r| self.inner.build_request(r, stream))).and_then(request_from_ffi)
    }

    fn parse_response(
        &self,
        request: &ChatRequest,
        response: &HttpResponse<'_>,
    ) -> Result<ChatResponse, BackendError> {
        let answer =
            with_response(response, |ffi| with_request(request, |r| self.inner.parse_response(r, ffi)));
        binary("response from the plugin", answer)
    }

    fn classify_error(&self, response: &HttpResponse<'_>) -> BackendError {
        decode_error(&with_response(response, |ffi| self.inner.classify_error(ffi)))
    }

    fn framing(&self) -> Framing {
        self.framing
    }

    fn stream_decoder(&self, request: &ChatRequest) -> Box<dyn StreamDecoder> {
        match result(with_request(request, |r| self.inner.stream_decoder(r))) {
            Ok(inner) => Box::new(PluginStreamDecoder { inner }),
            // The trait cannot fail here; the stream fails at its first frame instead.
            Err(error) => Box::new(FailedDecoder { error }),
        }
    }

    fn health_probe(&self) -> Option<HttpRequest> {
        let probe = result(self.inner.health_probe())
            .and_then(|probe| probe.into_option().map(request_from_ffi).transpose());
        probe.unwrap_or_else(|e| {
            self.warn("health_probe", &e);
            None
        })
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<String>, BackendError> {
        json("model list", self.inner.parse_models(RSlice::from_slice(body)))
    }

    /// `None` only when the plugin's adapter says it has no count call, so the gateway
    /// estimates exactly when it would for the provider linked in; a plugin that fails or
    /// panics here makes the count fail, with the plugin's error.
    fn count_tokens_request(&self, request: &ChatRequest) -> Option<Result<HttpRequest, BackendError>> {
        match result(with_request(request, |r| self.inner.count_tokens_request(r))) {
            Ok(count) => count.into_option().map(request_from_ffi),
            Err(e) => Some(Err(e)),
        }
    }

    fn parse_count_tokens(&self, response: &HttpResponse<'_>) -> Result<u32, BackendError> {
        result(with_response(response, |ffi| self.inner.parse_count_tokens(ffi)))
    }

    fn pricing(&self, model: Option<&str>) -> Pricing {
        match self.inner.pricing(model.map(RStr::from).into()) {
            ROk(p) => pricing_from_ffi(p),
            RErr(e) => {
                self.warn("pricing", &decode_error(&e));
                self.info.pricing
            }
        }
    }

    fn validate(&self) -> Result<(), BackendError> {
        result(self.inner.validate())
    }

    fn timeouts(&self, configured: &Timeouts, request: &ChatRequest) -> Timeouts {
        match with_request(request, |r| self.inner.timeouts(timeouts_to_ffi(*configured), r)) {
            ROk(t) => timeouts_from_ffi(t),
            RErr(e) => {
                self.warn("timeouts", &decode_error(&e));
                *configured
            }
        }
    }

    fn observe(&self, observation: &Observation) {
        let kind = observation.error.map(|k| k.as_str());
        let result = self.inner.observe(
            duration_to_ns(observation.latency),
            opt_ns(observation.ttft),
            kind.map(RStr::from).into(),
            observation.stream,
        );
        if let RErr(e) = result {
            self.warn("observe", &decode_error(&e));
        }
    }
}

/// A plugin's stream decoder, seen from the host.
struct PluginStreamDecoder {
    inner: FfiStreamDecoder_TO<'static, RBox<()>>,
}

impl StreamDecoder for PluginStreamDecoder {
    fn decode(&mut self, frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        let event = frame.event.as_deref().map(RStr::from).into();
        binary("stream events from the plugin", self.inner.decode(event, RStr::from(frame.data.as_str())))
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        binary("stream events from the plugin", self.inner.finish())
    }
}

/// Stands in for a decoder the plugin could not make: fails the stream at once.
struct FailedDecoder {
    error: BackendError,
}

impl StreamDecoder for FailedDecoder {
    fn decode(&mut self, _frame: &Frame) -> Result<Vec<StreamEvent>, BackendError> {
        Err(self.error.clone())
    }
    fn finish(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        Err(self.error.clone())
    }
}
