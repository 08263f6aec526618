//! Conversions between `claudette-core` types and their boundary forms, used by both sides.
// The host-to-core directions are unused in a plugin-only build.
#![cfg_attr(not(feature = "host"), allow(dead_code))]

use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use claudette_core::{BackendError, HttpRequest, LongContext, Pricing, Timeouts};
use serde::{Deserialize, Serialize};

use crate::abi::{FfiHttpRequest, FfiLongContext, FfiPricing, FfiTimeouts};
use crate::codec;

/// `BackendError::code` of an error that stands for a panic caught inside a plugin.
pub const PANIC_CODE: &str = "plugin_panic";

/// The JSON of an error, for the `Err` side of an [`FfiResult`](crate::abi::FfiResult).
pub(crate) fn encode_error(error: &BackendError) -> RString {
    match serde_json::to_string(error) {
        Ok(s) => s.into(),
        // A BackendError always serialises; this keeps the kind and message if it ever fails.
        Err(_) => format!(
            "{{\"kind\":\"internal\",\"message\":{}}}",
            serde_json::Value::String(error.message.clone())
        )
        .into(),
    }
}

/// Reads an error a plugin returned. Text that is not a `BackendError` (a plugin built by hand
/// against this ABI) is kept as the message of an internal error rather than lost.
pub(crate) fn decode_error(text: &str) -> BackendError {
    serde_json::from_str(text).unwrap_or_else(|_| BackendError::internal(format!("plugin error: {text}")))
}

/// An adapter's request description as it leaves the plugin: the head encoded, the body moved.
pub(crate) fn request_to_ffi(request: HttpRequest) -> FfiHttpRequest {
    let head = codec::HeadRef(&request).encode();
    FfiHttpRequest { head: head.into(), body: request.body.map(RVec::from).into() }
}

/// The same on the host. The body is copied out of the plugin's allocation (`RVec::into_vec`
/// copies when the vector comes from another library's allocator, which it always does here).
pub(crate) fn request_from_ffi(request: FfiHttpRequest) -> Result<HttpRequest, BackendError> {
    let codec::Head { method, url, headers } = codec::decode("request head from the plugin", &request.head)?;
    Ok(HttpRequest { method, url, headers, body: request.body.into_option().map(RVec::into_vec) })
}

pub(crate) fn pricing_to_ffi(p: Pricing) -> FfiPricing {
    FfiPricing {
        input_per_1k: p.input_per_1k,
        output_per_1k: p.output_per_1k,
        cache_read_per_1k: p.cache_read_per_1k.into(),
        cache_write_per_1k: p.cache_write_per_1k.into(),
        web_search_per_1k: p.web_search_per_1k.into(),
        long_context: p
            .long_context
            .map(|l| FfiLongContext {
                above_input_tokens: l.above_input_tokens,
                input_factor: l.input_factor,
                output_factor: l.output_factor,
            })
            .into(),
        fast_factor: p.fast_factor.into(),
    }
}

pub(crate) fn pricing_from_ffi(p: FfiPricing) -> Pricing {
    Pricing {
        input_per_1k: p.input_per_1k,
        output_per_1k: p.output_per_1k,
        cache_read_per_1k: p.cache_read_per_1k.into_option(),
        cache_write_per_1k: p.cache_write_per_1k.into_option(),
        web_search_per_1k: p.web_search_per_1k.into_option(),
        long_context: p.long_context.into_option().map(|l| LongContext {
            above_input_tokens: l.above_input_tokens,
            input_factor: l.input_factor,
            output_factor: l.output_factor,
        }),
        fast_factor: p.fast_factor.into_option(),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn timeouts_to_ffi(t: Timeouts) -> FfiTimeouts {
    FfiTimeouts {
        connect_ns: nanos(t.connect),
        first_byte_ns: nanos(t.first_byte),
        idle_ns: nanos(t.idle),
        total_ns: nanos(t.total),
    }
}

pub(crate) fn timeouts_from_ffi(t: FfiTimeouts) -> Timeouts {
    Timeouts {
        connect: Duration::from_nanos(t.connect_ns),
        first_byte: Duration::from_nanos(t.first_byte_ns),
        idle: Duration::from_nanos(t.idle_ns),
        total: Duration::from_nanos(t.total_ns),
    }
}

pub(crate) fn duration_to_ns(d: Duration) -> u64 {
    nanos(d)
}

pub(crate) fn opt_ns(d: Option<Duration>) -> ROption<u64> {
    d.map(nanos).into()
}

/// The config a host passes to `new_adapter`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AdapterConfig {
    /// `BackendSettings::to_plugin_json`: everything but the key.
    pub settings: serde_json::Value,
    /// Whether the host holds a non-empty key for this backend.
    #[serde(default)]
    pub has_api_key: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_with_body_bytes() {
        let r = HttpRequest::post_json("http://h/x", &serde_json::json!({"a": "é"}))
            .unwrap()
            .header("anthropic-version", "2023-06-01");
        assert_eq!(request_from_ffi(request_to_ffi(r.clone())).unwrap(), r);
        let g = HttpRequest::get("http://h/models");
        assert_eq!(request_from_ffi(request_to_ffi(g.clone())).unwrap(), g);
    }

    #[test]
    fn pricing_and_timeouts_round_trip() {
        let p = Pricing::new(0.15, 0.6).with_cache(0.075, 0.1875);
        assert_eq!(pricing_from_ffi(pricing_to_ffi(p)), p);
        let t = Timeouts { idle: Duration::from_micros(1500), ..Timeouts::default() };
        assert_eq!(timeouts_from_ffi(timeouts_to_ffi(t)), t);
    }

    #[test]
    fn errors_round_trip_and_foreign_text_is_kept() {
        let e = BackendError::new(claudette_core::ErrorKind::RateLimited, "slow down")
            .with_status(429)
            .with_retry_after(Some(Duration::from_millis(1500)))
            .with_code("rate_limit_exceeded");
        assert_eq!(decode_error(&encode_error(&e)), e);
        let foreign = decode_error("boom");
        assert_eq!(foreign.kind, claudette_core::ErrorKind::Internal);
        assert!(foreign.message.contains("boom"));
    }
}
