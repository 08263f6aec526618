//! The plugin side: a `ProviderAdapter` wrapped as an [`FfiAdapter`], every call guarded by
//! `catch_unwind`, and the pieces [`export_plugin!`](crate::export_plugin) expands to.
//!
//! This code is compiled into the plugin (the `.so`), against the plugin's own copy of
//! `claudette-core`. It needs no runtime and does no I/O.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RErr, ROk, ROption, RSlice, RStr, RString, RVec};
use claudette_core::{
    ApiKey, BackendError, BackendSettings, ChatRequest, ErrorKind, Frame, HttpResponse, Observation,
    ProviderAdapter, StreamDecoder, StreamEvent,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::abi::{
    ClaudettePlugin, FfiAdapter, FfiHttpRequest, FfiHttpResponse, FfiPricing, FfiResult, FfiStreamDecoder,
    FfiStreamDecoder_TO, FfiTimeouts,
};
use crate::codec;
use crate::wire::{
    AdapterConfig, PANIC_CODE, encode_error, pricing_to_ffi, request_to_ffi, timeouts_from_ffi,
    timeouts_to_ffi,
};
use crate::{INTERFACE_VERSION, PluginDescriptor};

/// The key a plugin-side adapter is given when the host holds one.
///
/// The real key never crosses the boundary: the host's I/O layer attaches it to each request
/// according to [`ProviderAdapter::auth_scheme`]. Constructors and `validate` only ask *whether*
/// a key is configured (cloud endpoints need one), so the plugin side gets this stand-in. An
/// adapter that wrote its key into a request itself would send this text and be refused by the
/// provider: an auth error, never a leak.
pub const PLACEHOLDER_API_KEY: &str = "claudette-plugin-placeholder-key-the-host-attaches-the-real-one";

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// How every panic message from a plugin starts.
pub(crate) const PANIC_PREFIX: &str = "plugin panicked in";

fn panic_error(what: &str, payload: &(dyn Any + Send)) -> BackendError {
    BackendError::internal(format!("{PANIC_PREFIX} {what}: {}", panic_message(payload))).with_code(PANIC_CODE)
}

/// Runs `f`, turning an error into its JSON and a panic into an internal error, so that no
/// unwind ever reaches an `extern "C"` frame (which would abort the host).
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, BackendError>) -> FfiResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(encode_error(&e)),
        Err(payload) => RErr(encode_error(&panic_error(what, &*payload))),
    }
}

fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<RString, BackendError> {
    serde_json::to_string(value)
        .map(RString::from)
        .map_err(|e| BackendError::internal(format!("plugin could not encode {what}: {e}")))
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, BackendError> {
    serde_json::from_str(text).map_err(|e| {
        BackendError::internal(format!(
            "plugin could not read {what} from the host: {e} (built against another claudette-core schema?)"
        ))
    })
}

thread_local! {
    /// Header strings reused from one response to the next on this thread: `HttpResponse`
    /// wants owned `(String, String)` pairs, and a real response carries a dozen or more
    /// headers, so copying into kept buffers spares two allocations per header per call. The
    /// library is never unloaded (see the crate docs), so the thread-local outlives its code.
    static HEADER_BUF: Cell<Vec<(String, String)>> = const { Cell::new(Vec::new()) };
}

/// Most headers a response may have for their buffers to be kept for the next one.
const KEEP_HEADERS: usize = 64;

/// Runs `f` with the response as the adapter wants it (headers as owned pairs). The header
/// buffers are taken out of the thread-local while in use, so a nested call (none exists) or a
/// panic in `f` only costs fresh allocations, never a borrow error.
fn with_response<T>(response: &FfiHttpResponse<'_>, f: impl FnOnce(&HttpResponse<'_>) -> T) -> T {
    let mut buf = HEADER_BUF.try_with(Cell::take).unwrap_or_default();
    buf.truncate(response.headers.len());
    for (i, h) in response.headers.iter().enumerate() {
        match buf.get_mut(i) {
            Some((name, value)) => {
                name.clear();
                name.push_str(h.name.as_str());
                value.clear();
                value.push_str(h.value.as_str());
            }
            None => buf.push((h.name.as_str().to_owned(), h.value.as_str().to_owned())),
        }
    }
    let out = f(&HttpResponse { status: response.status, headers: &buf, body: response.body.as_slice() });
    if buf.len() <= KEEP_HEADERS {
        let _ = HEADER_BUF.try_with(|cell| cell.set(buf));
    }
    out
}

/// An `ErrorKind` from its serde name, as `observe` receives it: by name because `ErrorKind`
/// is `#[non_exhaustive]`, so no tag table here could be checked for completeness by the
/// compiler. Parsed without building a JSON value (this is on every failed call's path).
fn error_kind_named(name: &str) -> Result<ErrorKind, BackendError> {
    let name_de = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name);
    ErrorKind::deserialize(name_de)
        .map_err(|e| BackendError::internal(format!("plugin could not read error kind `{name}`: {e}")))
}

/// Largest request encoding whose buffer is kept for the next request's.
const KEEP_REQUEST_BYTES: usize = 64 << 10;

/// A provider adapter as the plugin exports it.
#[derive(Debug)]
pub struct GuestAdapter<A> {
    inner: A,
    /// The last request read, by its encoding: one call makes the host send the same request
    /// three times (`timeouts`, `build_request`, `parse_response`), and comparing bytes is
    /// cheaper than decoding them again (a long conversation is many strings to allocate).
    last_request: Mutex<Option<(Vec<u8>, Arc<ChatRequest>)>>,
}

impl<A> GuestAdapter<A> {
    fn new(inner: A) -> Self {
        Self { inner, last_request: Mutex::new(None) }
    }

    fn request(&self, bytes: RSlice<'_, u8>) -> Result<Arc<ChatRequest>, BackendError> {
        let bytes = bytes.as_slice();
        let cached = |slot: &Option<(Vec<u8>, Arc<ChatRequest>)>| {
            slot.as_ref().filter(|(seen, _)| seen.as_slice() == bytes).map(|(_, r)| Arc::clone(r))
        };
        if let Some(hit) = self.last_request.lock().ok().and_then(|slot| cached(&slot)) {
            return Ok(hit);
        }
        let request: Arc<ChatRequest> = Arc::new(codec::decode("chat request from the host", bytes)?);
        if let Ok(mut slot) = self.last_request.lock() {
            let request = Arc::clone(&request);
            match slot.as_mut() {
                // The key's buffer is reused unless a long conversation made it large.
                Some((seen, cached)) if seen.capacity() <= KEEP_REQUEST_BYTES => {
                    seen.clear();
                    seen.extend_from_slice(bytes);
                    *cached = request;
                }
                _ => *slot = Some((bytes.to_vec(), request)),
            }
        }
        Ok(request)
    }
}

impl<A: ProviderAdapter> FfiAdapter for GuestAdapter<A> {
    fn info(&self) -> FfiResult<RString> {
        guard("info", || to_json("backend info", self.inner.info()))
    }

    fn auth_scheme(&self) -> FfiResult<RString> {
        guard("auth_scheme", || to_json("auth scheme", &self.inner.auth_scheme()))
    }

    fn framing(&self) -> FfiResult<RString> {
        guard("framing", || to_json("framing", &self.inner.framing()))
    }

    fn build_request(&self, request: RSlice<'_, u8>, stream: bool) -> FfiResult<FfiHttpRequest> {
        guard("build_request", || {
            let request = self.request(request)?;
            Ok(request_to_ffi(self.inner.build_request(&request, stream)?))
        })
    }

    fn parse_response(&self, request: RSlice<'_, u8>, response: FfiHttpResponse<'_>) -> FfiResult<RVec<u8>> {
        guard("parse_response", || {
            let request = self.request(request)?;
            let answer = with_response(&response, |http| self.inner.parse_response(&request, http))?;
            Ok(codec::encode(&answer, 256 + answer.content.len()).into())
        })
    }

    fn classify_error(&self, response: FfiHttpResponse<'_>) -> RString {
        let classified =
            guard("classify_error", || Ok(with_response(&response, |http| self.inner.classify_error(http))));
        match classified {
            ROk(error) => encode_error(&error),
            RErr(error_json) => error_json,
        }
    }

    fn stream_decoder(&self, request: RSlice<'_, u8>) -> FfiResult<FfiStreamDecoder_TO<'static, RBox<()>>> {
        guard("stream_decoder", || {
            let request = self.request(request)?;
            let decoder = GuestDecoder {
                inner: self.inner.stream_decoder(&request),
                poisoned: false,
                frame: Frame { event: None, data: String::new() },
            };
            Ok(FfiStreamDecoder_TO::from_value(decoder, TD_Opaque))
        })
    }

    fn health_probe(&self) -> FfiResult<ROption<FfiHttpRequest>> {
        guard("health_probe", || Ok(self.inner.health_probe().map(request_to_ffi).into()))
    }

    fn parse_models(&self, body: RSlice<'_, u8>) -> FfiResult<RString> {
        guard("parse_models", || to_json("the model list", &self.inner.parse_models(body.as_slice())?))
    }

    fn pricing(&self, model: ROption<RStr<'_>>) -> FfiResult<FfiPricing> {
        guard("pricing", || {
            Ok(pricing_to_ffi(self.inner.pricing(model.into_option().as_ref().map(RStr::as_str))))
        })
    }

    fn validate(&self) -> FfiResult<()> {
        guard("validate", || self.inner.validate())
    }

    fn timeouts(&self, configured: FfiTimeouts, request: RSlice<'_, u8>) -> FfiResult<FfiTimeouts> {
        guard("timeouts", || {
            let request = self.request(request)?;
            Ok(timeouts_to_ffi(self.inner.timeouts(&timeouts_from_ffi(configured), &request)))
        })
    }

    fn observe(
        &self,
        latency_ns: u64,
        ttft_ns: ROption<u64>,
        error_kind: ROption<RStr<'_>>,
        stream: bool,
    ) -> FfiResult<()> {
        guard("observe", || {
            let error = error_kind.into_option().map(|kind| error_kind_named(kind.as_str())).transpose()?;
            self.inner.observe(&Observation {
                latency: std::time::Duration::from_nanos(latency_ns),
                ttft: ttft_ns.into_option().map(std::time::Duration::from_nanos),
                error,
                stream,
            });
            Ok(())
        })
    }

    fn count_tokens_request(&self, request: RSlice<'_, u8>) -> FfiResult<ROption<FfiHttpRequest>> {
        guard("count_tokens_request", || {
            let request = self.request(request)?;
            let count = self.inner.count_tokens_request(&request).transpose()?;
            Ok(count.map(request_to_ffi).into())
        })
    }

    fn parse_count_tokens(&self, response: FfiHttpResponse<'_>) -> FfiResult<u32> {
        guard("parse_count_tokens", || with_response(&response, |http| self.inner.parse_count_tokens(http)))
    }
}

/// A stream decoder as the plugin exports it. After a panic its state is unknown, so every
/// later call fails instead of decoding from a half-updated state.
struct GuestDecoder {
    inner: Box<dyn StreamDecoder>,
    poisoned: bool,
    /// The frame handed to the decoder, refilled for each one so its strings' buffers are
    /// reused across a stream's hundreds of frames.
    frame: Frame,
}

impl GuestDecoder {
    fn run(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut dyn StreamDecoder, &Frame) -> Result<Vec<StreamEvent>, BackendError>,
    ) -> FfiResult<RVec<u8>> {
        if self.poisoned {
            return RErr(encode_error(
                &BackendError::internal("plugin stream decoder is unusable after an earlier panic")
                    .with_code(PANIC_CODE),
            ));
        }
        let (inner, frame) = (&mut *self.inner, &self.frame);
        match catch_unwind(AssertUnwindSafe(|| {
            f(inner, frame).map(|events| {
                let size = events
                    .iter()
                    .map(|e| if let StreamEvent::TextDelta { text } = e { 8 + text.len() } else { 64 });
                codec::encode(&events, 4 + size.sum::<usize>())
            })
        })) {
            Ok(Ok(bytes)) => ROk(bytes.into()),
            Ok(Err(e)) => RErr(encode_error(&e)),
            Err(payload) => {
                self.poisoned = true;
                RErr(encode_error(&panic_error(what, &*payload)))
            }
        }
    }
}

impl FfiStreamDecoder for GuestDecoder {
    fn decode(&mut self, event: ROption<RStr<'_>>, data: RStr<'_>) -> FfiResult<RVec<u8>> {
        match (event.into_option(), &mut self.frame.event) {
            (None, slot) => *slot = None,
            (Some(name), Some(slot)) => {
                slot.clear();
                slot.push_str(name.as_str());
            }
            (Some(name), slot) => *slot = Some(name.as_str().to_owned()),
        }
        self.frame.data.clear();
        self.frame.data.push_str(data.as_str());
        self.run("decode", |d, frame| d.decode(frame))
    }

    fn finish(&mut self) -> FfiResult<RVec<u8>> {
        self.run("finish", |d, _| d.finish())
    }
}

/// Support for [`export_plugin!`](crate::export_plugin). Not a public API: the macro's
/// expansion is the only caller.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::LibHeader;
    use abi_stable::library::{CheckTypeLayout, RootModuleResult};

    use super::*;

    pub use abi_stable::std_types::{RBox, RResult, RStr, RString};

    pub use crate::abi::{AbiVersionField, ClaudettePlugin_Ref, FfiAdapter_TO};

    /// Body of the exported `descriptor` function. The macro's `name` and `description`
    /// expressions are evaluated inside the guard too.
    pub fn descriptor<'a>(
        name_and_description: impl FnOnce() -> (&'a str, &'a str),
        plugin_version: &str,
        schema_version: u32,
    ) -> RResult<RString, RString> {
        let built = catch_unwind(AssertUnwindSafe(|| {
            let (name, description) = name_and_description();
            serde_json::to_string(&PluginDescriptor {
                name: name.to_owned(),
                description: description.to_owned(),
                plugin_version: plugin_version.to_owned(),
                schema_version,
                interface_version: INTERFACE_VERSION.to_owned(),
            })
        }));
        match built {
            Ok(Ok(json)) => ROk(json.into()),
            Ok(Err(e)) => RErr(format!("cannot encode the descriptor: {e}").into()),
            Err(payload) => RErr(format!("{PANIC_PREFIX} descriptor: {}", panic_message(&*payload)).into()),
        }
    }

    /// Body of the exported `new_adapter` function: rebuilds the settings (with a
    /// [`PLACEHOLDER_API_KEY`] if the host holds a key) and calls the provider's constructor.
    pub fn new_adapter<A, C, F>(config_json: RStr<'_>, ctor: F) -> FfiResult<FfiAdapter_TO<'static, RBox<()>>>
    where
        A: ProviderAdapter,
        C: FnOnce(&BackendSettings) -> Result<A, BackendError>,
        F: FnOnce() -> C,
    {
        guard("new_adapter", || {
            let ctor = ctor();
            let config: AdapterConfig = from_json("the adapter config", config_json.as_str())?;
            let mut settings: BackendSettings = serde_json::from_value(config.settings).map_err(|e| {
                BackendError::config(format!("plugin could not read the backend settings: {e}"))
            })?;
            settings.api_key = config.has_api_key.then(|| ApiKey::new(PLACEHOLDER_API_KEY));
            let adapter = ctor(&settings)?;
            Ok(FfiAdapter_TO::from_value(GuestAdapter::new(adapter), TD_Opaque))
        })
    }

    /// The root module, built once per process by abi_stable's loader.
    pub fn root_module(
        abi_version: AbiVersionField,
        descriptor: extern "C" fn() -> RResult<RString, RString>,
        new_adapter: extern "C" fn(RStr<'_>) -> FfiResult<FfiAdapter_TO<'static, RBox<()>>>,
    ) -> ClaudettePlugin_Ref {
        ClaudettePlugin { abi_version, descriptor, new_adapter }.leak_into_prefix()
    }

    /// Body of the exported root-module loader (catches a panic of `build`).
    pub fn call_root_module_loader(build: fn() -> ClaudettePlugin_Ref) -> RootModuleResult {
        abi_stable::library::__call_root_module_loader(build)
    }

    /// The library header abi_stable looks up by [`ROOT_MODULE_LOADER_NAME`](
    /// abi_stable::library::ROOT_MODULE_LOADER_NAME).
    ///
    /// # Safety
    ///
    /// `loader` must return the result of [`call_root_module_loader`], so that the erased
    /// module it returns really is a [`ClaudettePlugin_Ref`].
    #[allow(unsafe_code)] // the one hand-written `unsafe` of the crate: abi_stable's header constructor
    pub const unsafe fn lib_header(loader: extern "C" fn() -> RootModuleResult) -> LibHeader {
        // SAFETY: forwarded to the caller (see above); the layout of the module is included
        // (`CheckTypeLayout::Yes`), so the host compares it before using the module.
        unsafe { LibHeader::from_constructor::<ClaudettePlugin_Ref>(loader, CheckTypeLayout::Yes) }
    }

    /// The symbol name of the header, as `#[export_name]` needs it: a literal. A test checks it
    /// against abi_stable's [`ROOT_MODULE_LOADER_NAME`](
    /// abi_stable::library::ROOT_MODULE_LOADER_NAME).
    pub const LIB_HEADER_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

    pub use abi_stable::library::RootModuleResult as LoaderResult;
}

/// Exports a provider's adapter from a `cdylib` as a Claudette plugin.
///
/// ```ignore
/// claudette_plugin::export_plugin!(
///     name = "openai",
///     description = "OpenAI chat completions",
///     ctor = claudette_openai::OpenAiAdapter::new,
/// );
/// ```
///
/// - `name`: the provider name backends are configured with (`provider = "openai"`).
/// - `ctor`: `fn(&BackendSettings) -> Result<A, BackendError>` for some
///   `A: claudette_core::ProviderAdapter`. It receives every setting but the key (see
///   [`PLACEHOLDER_API_KEY`](crate::PLACEHOLDER_API_KEY)).
///
/// Invoke it once per library, at module level. It exports the root module abi_stable looks
/// for; every exported function and every adapter and decoder method runs inside
/// `catch_unwind`, so a panic becomes an error on the host side instead of aborting the host
/// (build plugins with the default `panic = "unwind"`). The expansion contains the `unsafe`
/// attribute needed to export a symbol, under a local `#[allow(unsafe_code)]`; a crate with
/// `#![forbid(unsafe_code)]` cannot use it.
#[macro_export]
macro_rules! export_plugin {
    (name = $name:expr, description = $description:expr, ctor = $ctor:expr $(,)?) => {
        $crate::export_plugin!(@export $name, $description, $ctor, $crate::ABI_VERSION, $crate::SCHEMA_VERSION);
    };
    // Test fixtures only: a plugin that claims another ABI or schema version (F-33).
    (
        name = $name:expr, description = $description:expr, ctor = $ctor:expr,
        __abi_version = $abi:expr, __schema_version = $schema:expr $(,)?
    ) => {
        $crate::export_plugin!(@export $name, $description, $ctor, $abi, $schema);
    };
    (@export $name:expr, $description:expr, $ctor:expr, $abi:expr, $schema:expr) => {
        #[allow(unsafe_code)]
        const _: () = {
            use $crate::__private as __cp;

            extern "C" fn __claudette_descriptor() -> __cp::RResult<__cp::RString, __cp::RString> {
                __cp::descriptor(|| ($name, $description), ::core::env!("CARGO_PKG_VERSION"), $schema)
            }

            extern "C" fn __claudette_new_adapter(
                config_json: __cp::RStr<'_>,
            ) -> __cp::RResult<__cp::FfiAdapter_TO<'static, __cp::RBox<()>>, __cp::RString> {
                __cp::new_adapter(config_json, || $ctor)
            }

            fn __claudette_root_module() -> __cp::ClaudettePlugin_Ref {
                __cp::root_module(
                    ($abi) as __cp::AbiVersionField,
                    __claudette_descriptor,
                    __claudette_new_adapter,
                )
            }

            extern "C" fn __claudette_root_module_loader() -> __cp::LoaderResult {
                __cp::call_root_module_loader(__claudette_root_module)
            }

            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static __CLAUDETTE_PLUGIN_LIB_HEADER: __cp::LibHeader =
                // SAFETY: the loader returns `call_root_module_loader`'s result for a
                // `ClaudettePlugin_Ref`, as `lib_header` requires.
                unsafe { __cp::lib_header(__claudette_root_module_loader) };
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_read_by_their_names() {
        for kind in [
            ErrorKind::RateLimited,
            ErrorKind::Overloaded,
            ErrorKind::Timeout,
            ErrorKind::Transport,
            ErrorKind::QuotaExhausted,
            ErrorKind::StreamInterrupted,
            ErrorKind::Internal,
        ] {
            assert_eq!(error_kind_named(kind.as_str()).unwrap(), kind);
        }
        let e = error_kind_named("exploded").unwrap_err();
        assert!(e.message.contains("`exploded`"), "{e}");
    }
}
