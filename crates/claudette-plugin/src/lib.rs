//! # claudette-plugin
//!
//! Run-time provider plugins: a Claudette provider compiled as a `cdylib` (`.so`, `.dylib`,
//! `.dll`) and loaded by a running host from a directory it was told about.
//!
//! A plugin exports a *sans-IO* [`ProviderAdapter`](claudette_core::ProviderAdapter): pure
//! functions that describe HTTP calls and read responses and stream frames. The host wraps it
//! in [`PluginAdapter`] and drives it with the same `claudette_http::HttpBackend` as a linked
//! provider, so every call of a plugin provider goes through the host's one tokio runtime,
//! connection pool, timeouts, key handling, stream framing, metrics and cost accounting. The
//! plugin needs no runtime: a `cdylib` carries its own copy of tokio, which cannot do I/O on the
//! host's reactor, so a plugin that did its own I/O would fail at its first `await`.
//!
//! This is the only crate of the workspace that imports `abi_stable` (0.11). Provider crates
//! use it through [`export_plugin!`]; hosts through [`load_dir_into`] and friends. If
//! abi_stable has to be replaced (it is no longer maintained), only this crate changes.
//!
//! ## Writing a plugin
//!
//! A plugin crate implements `ProviderAdapter` for its provider (see `claudette-core`'s
//! `adapter` module; `examples/custom-backend` is a complete one), then exports it:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # or build with `cargo rustc --crate-type cdylib`
//!
//! [dependencies]
//! claudette-core = "0.1"
//! claudette-plugin = { version = "0.1", default-features = false }   # no host side, no I/O
//! ```
//!
//! ```ignore
//! claudette_plugin::export_plugin!(
//!     name = "custom",                       // the `provider = "…"` of backend settings
//!     description = "My custom LLM API",
//!     ctor = my_crate::CustomAdapter::new,  // fn(&BackendSettings) -> Result<A, BackendError>
//! );
//! ```
//!
//! Rules for plugin code:
//!
//! - No I/O, no `tokio::spawn`, no `sleep`: describe requests ([`claudette_core::HttpRequest`])
//!   and read the bytes the host hands back. Time, if needed, comes from `std::time`.
//! - The constructor receives every setting **except the API key**; if the host holds a key the
//!   settings carry [`PLACEHOLDER_API_KEY`] instead, so "a key is required here" checks work.
//!   The host attaches the real key as [`auth_scheme`](claudette_core::ProviderAdapter::auth_scheme)
//!   says. Never put a key into a URL or body yourself.
//! - Panics are caught inside the plugin (in every exported function and method) and reach the
//!   host as errors; keep the default `panic = "unwind"`, since with `panic = "abort"` a panic
//!   ends the host.
//!
//! ## Building and shipping
//!
//! ```sh
//! cargo rustc -p my-plugin --lib --release --crate-type cdylib
//! sha256sum target/release/libmy_plugin.so     # for the host's allow-list
//! ```
//!
//! A plugin must be built with the same `claudette-plugin` minor release (and so the same
//! abi_stable 0.11 ABI), the same [`ABI_VERSION`] and the same [`SCHEMA_VERSION`] as the host;
//! anything else is refused at load time with an error naming the file. The Rust compiler
//! version does not have to match: only `#[repr(C)]` types, JSON and this crate's own
//! length-prefixed binary encoding cross the boundary, never a Rust layout. In this
//! repository `cargo xtask plugins` builds every provider crate and the example into
//! `target/plugins/` and prints each file's size and SHA-256.
//!
//! Ship the `.so` file; the operator copies it into a plugin directory owned by the service
//! user (or root), not writable by anyone else, and lists it in the allow-list with its hash.
//!
//! ## Loading (host side, feature `host`, on by default)
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use claudette_core::Registry;
//! use claudette_plugin::{LoadOptions, load_dir_into};
//!
//! let mut registry = Registry::linked()?;
//! let options = LoadOptions::default()
//!     .allow("libclaudette_custom_backend.so", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
//!     .copy_to("/run/claudette/plugins");
//! let report = load_dir_into(&mut registry, "/etc/claudette/plugins", &options);
//! for refused in &report.errors {
//!     eprintln!("{refused}");   // each names the file and the reason; the host goes on
//! }
//! # Ok(()) }
//! ```
//!
//! Loading is opt-in: nothing is loaded unless a directory or file is named. Each file is
//! checked, then opened, then registered; a refused file never stops the others:
//!
//! 1. **Before opening** (reliability-spec S-13, F-34): the plugin directory and the file are
//!    not symlinks; the file, the directory and every parent directory are owned by this
//!    process's user or root and not group- or world-writable (a root-owned sticky directory
//!    such as `/tmp` is accepted *above* the plugin directory); with an allow-list, the file
//!    name must be listed and its SHA-256 must match. With [`LoadOptions::copy_to`] the file is
//!    first copied into a private `0700` directory and the *copy* is hashed and loaded, so it
//!    cannot be swapped between the check and the load.
//! 2. **Opening** (F-33): abi_stable checks its ABI header, the interface version (this
//!    crate's version: same major, and in `0.x` a plugin minor not older than the host's) and
//!    the full type layout of the root module; then [`ABI_VERSION`] and the descriptor's
//!    [`SCHEMA_VERSION`] are compared.
//! 3. **Registering**: a provider name already taken, by a linked crate or another plugin, is
//!    refused with the file, the name and the first origin named. The name comes from the
//!    plugin's descriptor, which is plugin code, so it is known only after step 2; when
//!    loading into a registry ([`load_dir_into`], [`RegistryPluginExt::load_file`]) the name
//!    is checked as soon as the descriptor returns, before anything of the plugin is built. A
//!    file byte-for-byte identical to one whose descriptor already declared a taken name (a
//!    copy of the same plugin) is refused from that declaration, before it is opened.
//!
//! A constructor error or panic surfaces when a backend of that provider is built, as a
//! `BackendError` naming the plugin file; other backends are unaffected.
//!
//! ## Threat model (reliability-spec S-12)
//!
//! A plugin is trusted code. These checks stop *mistakes* (a stale build, a file dropped in
//! the wrong place, a tampered file when an allow-list is used); they are not a sandbox:
//!
//! - Opening a library runs its ELF/Mach-O initialisers **before** any abi_stable check can
//!   run; the layout checks prevent undefined behaviour from ABI mismatches, not malicious
//!   code. That is why everything in step 1 happens on metadata and bytes only, before opening.
//! - A loaded plugin has the full rights of the process, including every API key the host
//!   holds in memory, even though none is ever passed to it.
//! - Libraries are never unloaded (abi_stable leaks them on purpose); reloading a plugin means
//!   restarting the process.
//!
//! Untrusted provider code needs process isolation (a future WASM tier), not this crate.
//!
//! ## The interface
//!
//! The root module [`ClaudettePlugin`] (a prefix type, so later releases can append fields)
//! holds [`ABI_VERSION`], a `descriptor` function returning [`PluginDescriptor`] as JSON, and
//! `new_adapter`, which returns an [`FfiAdapter`] trait object mirroring `ProviderAdapter`.
//! What crosses on every call (the chat request, the HTTP request the adapter describes, the
//! answer, stream events) is a compact length-prefixed binary encoding of the `claudette-core`
//! types, written in this crate (strings copied, never escaped; floats and durations exact);
//! bodies and response headers are borrowed slices; prices, timeouts and observations small
//! `repr(C)` structs. What crosses once per adapter or only on failure (settings, backend
//! info, errors, model lists, the descriptor) is JSON of the serde types.
//! [`FfiStreamDecoder`] mirrors `StreamDecoder`.
//!
//! The cost, measured by `benches/ffi.rs` (`cargo xtask bench plugins`) on a 2-core machine for
//! the OpenAI adapter: about 2 µs added per non-streaming request and 0.25 µs per stream event.
//! ABI version 1, which sent everything as JSON, added 8 µs and 0.9 µs (a JSON round trip of
//! the request and the answer alone is 4 µs). Next to a provider call of hundreds of
//! milliseconds, noise. The host encodes the request for each call that needs it (a few
//! copies) and the plugin decodes a given encoding once, because one call hands the same
//! request to `timeouts`, `build_request` and `parse_response`.

pub mod abi;
mod codec;
mod guest;
#[cfg(feature = "host")]
mod host;
mod wire;

pub use abi::{
    ABI_VERSION, ClaudettePlugin, ClaudettePlugin_Ref, FfiAdapter, FfiAdapter_TO, FfiHttpRequest,
    FfiHttpResponse, FfiLongContext, FfiPricing, FfiResult, FfiStreamDecoder, FfiStreamDecoder_TO,
    FfiTimeouts, SCHEMA_VERSION,
};
#[doc(hidden)]
pub use guest::__private;
pub use guest::{GuestAdapter, PLACEHOLDER_API_KEY};
#[cfg(feature = "host")]
pub use host::{
    LoadOptions, LoadReport, LoadedPlugin, PLUGIN_EXTENSIONS, PluginAdapter, PluginError, RegistryPluginExt,
    load_dir, load_dir_into, load_file, register_all, sha256_hex,
};
pub use wire::PANIC_CODE;

use serde::{Deserialize, Serialize};

/// Version of this crate, which abi_stable compares as the plugin interface version.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin says about itself, returned as JSON by its `descriptor` function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginDescriptor {
    /// Provider name backends use (`provider = "openai"`).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The plugin crate's own version.
    pub plugin_version: String,
    /// [`SCHEMA_VERSION`] the plugin was built with.
    pub schema_version: u32,
    /// `claudette-plugin` version the plugin was built with.
    #[serde(default)]
    pub interface_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_symbol_is_abi_stables() {
        assert_eq!(__private::LIB_HEADER_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
