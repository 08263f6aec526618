//! The binary interface between a Claudette host and a plugin `.so`.
//!
//! Everything here is `#[repr(C)]` and derives [`StableAbi`], so abi_stable can compare the
//! host's and the plugin's layouts when the library is loaded and refuse a mismatch before any
//! call is made. The interface is deliberately thin. What crosses on every call (the chat
//! request, the HTTP request the adapter describes, the answer, stream events) is a byte
//! string in the compact binary form of the `codec` module; bodies and response headers are
//! borrowed byte slices and strings; prices, timeouts and observations are small `repr(C)`
//! structs. What crosses once per adapter or on error paths (settings, backend info, errors,
//! model lists, the descriptor) is JSON of the `claudette-core` serde types. Growing the
//! interface is appending a field to a prefix type; changing the data model is a
//! [`SCHEMA_VERSION`] bump.
//!
//! `unsafe_code` is allowed in this module only because abi_stable's derive and `sabi_trait`
//! macros expand to `unsafe` blocks and `unsafe impl`s; nothing here is written unsafe by hand.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)] // abi_stable's generated names: `ClaudettePlugin_Ref`, `FfiAdapter_TO`
#![allow(non_local_definitions)] // `sabi_trait` expands to impls inside a `const` block

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

/// Version of the calling convention *above* abi_stable's layout check: what the byte and JSON
/// strings mean, which errors are encoded how. Bumped when a change keeps every layout but
/// changes meaning; a plugin reporting another value is refused (reliability-spec F-33).
///
/// History: 1, everything as JSON; 2, the per-call values (chat request, HTTP request head,
/// answer, stream events) in the binary form of the `codec` module, to cut the per-request
/// overhead from about 8 µs to about 2 µs (issue 4 item 6).
pub const ABI_VERSION: u32 = 2;

/// Version of the `claudette-core` data model the boundary encodings follow (request,
/// response, event, error and settings shapes, in JSON and in the binary per-call form).
/// Bumped when a field or variant is added to or removed from a type that crosses, or a serde
/// change is not backwards compatible; a plugin built against another schema is refused
/// (F-33). The binary form does not compile until it covers every field, so a core change
/// cannot slip through without touching this crate.
///
/// History: 1, the first; 2, `ChatRequest::tool_choice` and `ChatRequest::response_format`;
/// 3, `ChatRequest::{top_k, seed, parallel_tool_calls}`, `Message::is_error` and
/// `FinishReason::StopSequence`; 4, prompt caching (`Message::cache`, `ToolSpec::cache`) and
/// thinking (`ChatRequest::thinking`, `Message::thinking`, `ChatResponse::thinking`,
/// `StreamEvent::ThinkingSeal`); 5, `ChatRequest::request_id`, adaptive thinking
/// (`Thinking::Adaptive`), the `xhigh` and `max` effort levels, `ChatRequest::output_effort`
/// and `ChatRequest::tenant`; 6, the token count (`ProviderAdapter::count_tokens_request` and
/// `parse_count_tokens`, crossing as [`FfiAdapter::count_tokens_request`] and
/// [`FfiAdapter::parse_count_tokens`]). A schema-5 plugin has neither method, so its provider
/// would answer every count with the gateway's estimate where the same provider linked in
/// answers the exact one: it is refused, to be rebuilt, rather than loaded quietly worse (by
/// abi_stable's layout check already, see `FfiAdapter`; this number is the second line); 7,
/// `ToolSpec::strict`. A schema-6 plugin would read the flag's byte as the start of the next
/// tool or field, so it is refused rather than left to fail a request's decoding (or offer a
/// strict tool without the flag); 8, images in user messages (`Message::images`); 9, images in
/// tool results, documents (`Message::documents`, `CacheAt::Document`), cache breakpoints on
/// images (`CacheAt::Image`) and the order of an assistant
/// turn's blocks (`Message::order`, `ChatResponse::order`): a schema-8 plugin would refuse
/// the new position, or read the order's bytes as the next field; 10, a provider's own tools
/// and blocks (`ChatRequest::native_tools`, `Message::native`, `ChatResponse::native`,
/// `BlockKind::Native`, `StreamEvent::Native`), text citations and `Usage::web_search_requests`;
/// 11, a provider's own top-level fields (`ChatRequest::native_fields`,
/// `ChatResponse::native_fields`, `StreamEvent::NativeField`); 12, `Document::citations`; 13, `StreamEvent::TextEnd`; 14, `ChatRequest::native_flags` and `Usage::tier`.
pub const SCHEMA_VERSION: u32 = 14;

/// The field type of [`ClaudettePlugin::abi_version`]. It is `u64` only under the test feature
/// that simulates a plugin built against a release of this crate with another layout.
#[cfg(not(feature = "__test-layout-change"))]
pub type AbiVersionField = u32;
#[cfg(feature = "__test-layout-change")]
pub type AbiVersionField = u64;

/// A call a plugin adapter describes (the plugin never performs I/O).
///
/// `head` is the binary form of method, URL and headers; the body travels apart, as the bytes
/// the adapter produced (moved into the `RVec`, not copied, on the plugin side).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHttpRequest {
    pub head: RVec<u8>,
    pub body: ROption<RVec<u8>>,
}

/// One response header, borrowed from the host.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiHeader<'a> {
    pub name: RStr<'a>,
    pub value: RStr<'a>,
}

/// A response handed to a plugin adapter: status, headers and body, all borrowed from the host
/// (no JSON: a real response carries a dozen headers and this is on every call's path).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiHttpResponse<'a> {
    pub status: u16,
    pub headers: RSlice<'a, FfiHeader<'a>>,
    pub body: RSlice<'a, u8>,
}

/// [`claudette_core::Pricing`] without JSON: it is read on every call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct FfiPricing {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
    pub cache_read_per_1k: ROption<f64>,
    pub cache_write_per_1k: ROption<f64>,
    pub web_search_per_1k: ROption<f64>,
    pub long_context: ROption<FfiLongContext>,
    pub fast_factor: ROption<f64>,
}

/// [`claudette_core::LongContext`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct FfiLongContext {
    pub above_input_tokens: u32,
    pub input_factor: f64,
    pub output_factor: f64,
}

/// [`claudette_core::Timeouts`] in nanoseconds, without JSON: asked for on every call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfiTimeouts {
    pub connect_ns: u64,
    pub first_byte_ns: u64,
    pub idle_ns: u64,
    pub total_ns: u64,
}

/// Result of a call into a plugin. `Err` holds the JSON of a `claudette_core::BackendError`;
/// a panic inside the plugin arrives as an `Internal` error with code
/// [`PANIC_CODE`](crate::PANIC_CODE), never as an unwind.
pub type FfiResult<T> = RResult<T, RString>;

/// One provider's adapter inside a plugin: `claudette_core::ProviderAdapter` with binary
/// encodings, JSON and borrowed bytes at the boundary. Plugin authors never implement it: [`export_plugin!`](crate::export_plugin)
/// wraps their `ProviderAdapter`, catching panics in every method.
#[sabi_trait]
pub trait FfiAdapter: Send + Sync {
    /// JSON of `BackendInfo`.
    fn info(&self) -> FfiResult<RString>;

    /// JSON of `AuthScheme`.
    fn auth_scheme(&self) -> FfiResult<RString>;

    /// JSON of `Framing`.
    fn framing(&self) -> FfiResult<RString>;

    /// `request` is the binary form of a `ChatRequest` (as in every method taking one). One
    /// call passes the same request to `timeouts`, `build_request` and `parse_response`; the
    /// plugin side decodes it once.
    fn build_request(&self, request: RSlice<'_, u8>, stream: bool) -> FfiResult<FfiHttpRequest>;

    /// Returns the binary form of the `ChatResponse`.
    fn parse_response(&self, request: RSlice<'_, u8>, response: FfiHttpResponse<'_>) -> FfiResult<RVec<u8>>;

    /// Always an error: returns JSON of the `BackendError` (a panic becomes an internal one).
    fn classify_error(&self, response: FfiHttpResponse<'_>) -> RString;

    /// A decoder for one stream of `request`.
    fn stream_decoder(&self, request: RSlice<'_, u8>) -> FfiResult<FfiStreamDecoder_TO<'static, RBox<()>>>;

    fn health_probe(&self) -> FfiResult<ROption<FfiHttpRequest>>;

    /// Returns a JSON array of model ids.
    fn parse_models(&self, body: RSlice<'_, u8>) -> FfiResult<RString>;

    fn pricing(&self, model: ROption<RStr<'_>>) -> FfiResult<FfiPricing>;

    fn validate(&self) -> FfiResult<()>;

    fn timeouts(&self, configured: FfiTimeouts, request: RSlice<'_, u8>) -> FfiResult<FfiTimeouts>;

    /// `error_kind` is the serde name of an `ErrorKind` (`"rate_limited"`), `None` on success.
    #[sabi(last_prefix_field)]
    fn observe(
        &self,
        latency_ns: u64,
        ttft_ns: ROption<u64>,
        error_kind: ROption<RStr<'_>>,
        stream: bool,
    ) -> FfiResult<()>;

    // Schema 6. Appended after the prefix, as abi_stable wants a trait object grown (the prefix
    // moves only with a major release). A schema-5 plugin, whose vtable lacks these two, is
    // refused by abi_stable's layout check when it is opened, before the schema check: it
    // allows a plugin's vtable longer than the host's, never shorter. The default bodies are
    // abi_stable's fallback should a vtable without them reach the host anyway: "no count",
    // the answer of a provider that has none, never a panic.

    /// The count call for `request` (binary, as in `build_request`). `None`: the provider has
    /// no count call, and the caller estimates; `Err`: it has one but could not build it.
    fn count_tokens_request(&self, request: RSlice<'_, u8>) -> FfiResult<ROption<FfiHttpRequest>> {
        let _ = request;
        RResult::ROk(ROption::RNone)
    }

    /// Reads the 2xx answer to the count call as the number of input tokens.
    fn parse_count_tokens(&self, response: FfiHttpResponse<'_>) -> FfiResult<u32> {
        let _ = response;
        RResult::RErr(crate::wire::encode_error(&claudette_core::BackendError::new(
            claudette_core::ErrorKind::Unsupported,
            "this plugin offers no token count",
        )))
    }
}

/// A stream decoder inside a plugin (`claudette_core::StreamDecoder`). Frames cross as their two
/// strings, borrowed; events come back as the binary form of a `Vec<StreamEvent>`.
#[sabi_trait]
pub trait FfiStreamDecoder: Send {
    fn decode(&mut self, event: ROption<RStr<'_>>, data: RStr<'_>) -> FfiResult<RVec<u8>>;

    #[sabi(last_prefix_field)]
    fn finish(&mut self) -> FfiResult<RVec<u8>>;
}

/// The root module every Claudette plugin exports (through
/// [`export_plugin!`](crate::export_plugin)).
///
/// A prefix type: fields may be appended in later releases (after `new_adapter`), and a host
/// reading a field an older plugin lacks gets `None` instead of reading past the end.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ClaudettePlugin_Ref)))]
#[sabi(missing_field(option))]
pub struct ClaudettePlugin {
    /// [`ABI_VERSION`] the plugin was built with; checked before anything else is called.
    pub abi_version: AbiVersionField,
    /// JSON of [`PluginDescriptor`](crate::PluginDescriptor). `Err` is a plain message.
    pub descriptor: extern "C" fn() -> RResult<RString, RString>,
    /// Builds an adapter from `{"settings": <BackendSettings without api_key>, "has_api_key":
    /// bool}`. `Err` is the JSON of a `BackendError`.
    #[sabi(last_prefix_field)]
    pub new_adapter: extern "C" fn(config_json: RStr<'_>) -> FfiResult<FfiAdapter_TO<'static, RBox<()>>>,
}

impl std::fmt::Debug for ClaudettePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaudettePlugin").field("abi_version", &self.abi_version).finish_non_exhaustive()
    }
}

impl RootModule for ClaudettePlugin_Ref {
    declare_root_module_statics! {ClaudettePlugin_Ref}
    const BASE_NAME: &'static str = "claudette_plugin";
    const NAME: &'static str = "claudette_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
