//! The binary interface between a Claudette host and a plugin `.so`.
//!
//! Everything here is `#[repr(C)]` and derives [`StableAbi`], so abi_stable can compare the
//! host's and the plugin's layouts when the library is loaded and refuse a mismatch before any
//! call is made. The interface is deliberately thin: requests, responses, stream events,
//! settings and errors cross as JSON of the `claudette-core` serde types, bodies as byte slices,
//! and only the values read on every call (prices, timeouts, observations, stream frames) have
//! dedicated `repr(C)` shapes. Growing the model is then a serde change (new optional fields),
//! not an ABI break; growing the interface is appending a field to a prefix type.
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

/// Version of the calling convention *above* abi_stable's layout check: what the JSON strings
/// mean, which errors are encoded how. Bumped when a change keeps every layout but changes
/// meaning; a plugin reporting another value is refused (reliability-spec F-33).
pub const ABI_VERSION: u32 = 1;

/// Version of the `claudette-core` data model the JSON at the boundary follows (request,
/// response, event, error and settings shapes). Bumped when a serde change is not backwards
/// compatible; a plugin built against another schema is refused (F-33).
pub const SCHEMA_VERSION: u32 = 1;

/// The field type of [`ClaudettePlugin::abi_version`]. It is `u64` only under the test feature
/// that simulates a plugin built against a release of this crate with another layout.
#[cfg(not(feature = "__test-layout-change"))]
pub type AbiVersionField = u32;
#[cfg(feature = "__test-layout-change")]
pub type AbiVersionField = u64;

/// A call a plugin adapter describes (the plugin never performs I/O).
///
/// `head_json` is `{"method": "Post", "url": "…", "headers": [["name", "value"], …]}`; the body
/// travels as bytes so a large prompt is not re-encoded as a JSON array of numbers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHttpRequest {
    pub head_json: RString,
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

/// One provider's adapter inside a plugin: `claudette_core::ProviderAdapter` with JSON and bytes
/// at the boundary. Plugin authors never implement it: [`export_plugin!`](crate::export_plugin)
/// wraps their `ProviderAdapter`, catching panics in every method.
#[sabi_trait]
pub trait FfiAdapter: Send + Sync {
    /// JSON of `BackendInfo`.
    fn info(&self) -> FfiResult<RString>;

    /// JSON of `AuthScheme`.
    fn auth_scheme(&self) -> FfiResult<RString>;

    /// JSON of `Framing`.
    fn framing(&self) -> FfiResult<RString>;

    /// `request_json` is a `ChatRequest`.
    fn build_request(&self, request_json: RStr<'_>, stream: bool) -> FfiResult<FfiHttpRequest>;

    /// Returns JSON of `ChatResponse`.
    fn parse_response(&self, request_json: RStr<'_>, response: FfiHttpResponse<'_>) -> FfiResult<RString>;

    /// Always an error: returns JSON of the `BackendError` (a panic becomes an internal one).
    fn classify_error(&self, response: FfiHttpResponse<'_>) -> RString;

    /// A decoder for one stream of `request_json`.
    fn stream_decoder(&self, request_json: RStr<'_>) -> FfiResult<FfiStreamDecoder_TO<'static, RBox<()>>>;

    fn health_probe(&self) -> FfiResult<ROption<FfiHttpRequest>>;

    /// Returns a JSON array of model ids.
    fn parse_models(&self, body: RSlice<'_, u8>) -> FfiResult<RString>;

    fn pricing(&self, model: ROption<RStr<'_>>) -> FfiResult<FfiPricing>;

    fn validate(&self) -> FfiResult<()>;

    fn timeouts(&self, configured: FfiTimeouts, request_json: RStr<'_>) -> FfiResult<FfiTimeouts>;

    /// `error_kind` is the serde name of an `ErrorKind` (`"rate_limited"`), `None` on success.
    #[sabi(last_prefix_field)]
    fn observe(
        &self,
        latency_ns: u64,
        ttft_ns: ROption<u64>,
        error_kind: ROption<RStr<'_>>,
        stream: bool,
    ) -> FfiResult<()>;
}

/// A stream decoder inside a plugin (`claudette_core::StreamDecoder`). Frames cross as their two
/// strings; events come back as a JSON array of `StreamEvent`.
#[sabi_trait]
pub trait FfiStreamDecoder: Send {
    fn decode(&mut self, event: ROption<RStr<'_>>, data: RStr<'_>) -> FfiResult<RString>;

    #[sabi(last_prefix_field)]
    fn finish(&mut self) -> FfiResult<RString>;
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
