//! The gateway's limits on what one client may ask of it (reliability-spec S-10), beyond the
//! global body and concurrency limits of [`respond::admit`](crate::respond::admit):
//!
//! - **per key**: a request rate ([`KeyEntry::rpm`]) and a number of requests in flight
//!   ([`KeyEntry::max_concurrent`]; a stream counts until it ends). Over either: 429 with
//!   `Retry-After` in the client's envelope, before the body is read and with no upstream call.
//! - **per request**: how many messages ([`GatewayOptions::max_messages`]) and how large a
//!   `max_tokens` ([`GatewayOptions::max_output_tokens`]). Over either: 400 naming the field.
//!
//! The per-key checks run in the authentication middleware, the moment the key is known, and
//! only for the inference endpoints: the limits protect upstream capacity and spend, while
//! `/v1/models` (which SDKs poll) and the admin endpoints cost nothing upstream. A key without
//! limits has no [`KeyLimiter`] at all, so its requests pay one `Option` check: no lock, no
//! allocation, no clock read.
//!
//! Limiters live in a slice parallel to the configured keys, one per [`KeyEntry`], so a limit
//! belongs to a key's identity (its entry) and never to the presented string.
//!
//! [`KeyEntry`]: crate::KeyEntry
//! [`KeyEntry::rpm`]: crate::KeyEntry::rpm
//! [`KeyEntry::max_concurrent`]: crate::KeyEntry::max_concurrent
//! [`GatewayOptions::max_messages`]: crate::GatewayOptions::max_messages
//! [`GatewayOptions::max_output_tokens`]: crate::GatewayOptions::max_output_tokens

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use claudette_core::ChatRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body::{Frame, SizeHint};

use crate::auth::KeyEntry;
use crate::error::{ApiError, CappedField, Flavor};
use crate::observe;
use crate::respond::{self, Endpoint};

// ---------------------------------------------------------------------------------------------
// Per key

/// The limits of one gateway key and their state.
pub(crate) struct KeyLimiter {
    /// The key's configured name, for logs (never the key).
    name: String,
    rate: Option<Rate>,
    concurrency: Option<Concurrency>,
}

impl std::fmt::Debug for KeyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimiter")
            .field("name", &self.name)
            .field("rpm", &self.rate.as_ref().map(|r| r.rpm))
            .field("max_concurrent", &self.concurrency.as_ref().map(|c| c.max))
            .finish()
    }
}

/// GCRA (governor) with a bucket of `rpm` requests refilled continuously at `rpm` a minute: a
/// key may send up to `rpm` requests at once and `rpm` a minute sustained. Checking is one
/// compare-and-swap on an atomic, never a lock.
struct Rate {
    rpm: NonZeroU32,
    limiter: DefaultDirectRateLimiter,
}

/// Requests in flight for one key: an atomic counter, released by [`Slot`]'s `Drop`.
struct Concurrency {
    max: u32,
    in_flight: AtomicU32,
}

impl KeyLimiter {
    /// The limiter for `entry`, or `None` when the key has no limits (its requests then skip
    /// this module entirely).
    pub(crate) fn for_key(entry: &KeyEntry) -> Option<Arc<KeyLimiter>> {
        if entry.rpm.is_none() && entry.max_concurrent.is_none() {
            return None;
        }
        Some(Arc::new(KeyLimiter {
            name: entry.name.clone(),
            rate: entry.rpm.map(|rpm| Rate { rpm, limiter: RateLimiter::direct(Quota::per_minute(rpm)) }),
            concurrency: entry
                .max_concurrent
                .map(|max| Concurrency { max: max.get(), in_flight: AtomicU32::new(0) }),
        }))
    }

    /// Takes a concurrency slot if the key has a concurrency limit. `Err(max)` when all are taken.
    fn acquire(self: &Arc<Self>) -> Result<Option<Slot>, u32> {
        let Some(c) = &self.concurrency else {
            return Ok(None);
        };
        c.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < c.max).then_some(n + 1))
            .map(|_| Some(Slot(self.clone())))
            .map_err(|_| c.max)
    }

    /// Spends one request of the key's rate, if it has one. `Err` with the limit and the wait
    /// until the next request would be allowed; a refused request spends nothing.
    fn spend(&self) -> Result<(), (u32, std::time::Duration)> {
        let Some(r) = &self.rate else {
            return Ok(());
        };
        r.limiter
            .check()
            .map_err(|not_until| (r.rpm.get(), not_until.wait_time_from(DefaultClock::default().now())))
    }
}

/// One of a key's concurrency slots, held by the response body until the response (a stream:
/// its last event, or the client leaving) is done.
struct Slot(Arc<KeyLimiter>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(c) = &self.0.concurrency {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The inference endpoint a path is, if it is one.
fn inference_endpoint(path: &str) -> Option<Endpoint> {
    let label = match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/responses" => "responses",
        "/v1/messages" => "messages",
        "/api/chat" => "api_chat",
        _ => return None,
    };
    Some(Endpoint { label, flavor: Flavor::for_path(path) })
}

/// Applies `limiter` (the limits of the key this request authenticated with) and runs the rest
/// of the stack. The concurrency slot is taken before the rate is spent, so a request refused
/// for concurrency does not use up the key's rate.
pub(crate) async fn enforce<F, Fut>(limiter: &Arc<KeyLimiter>, request: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    // Only a POST is an inference call: another method on the same path gets its 405 without
    // spending the key's rate or a concurrency slot.
    let ep = match inference_endpoint(request.uri().path()) {
        Some(ep) if request.method() == axum::http::Method::POST => ep,
        _ => return next(request).await,
    };
    let slot = match limiter.acquire() {
        Ok(slot) => slot,
        Err(max) => {
            tracing::debug!(key = %limiter.name, endpoint = ep.label, "rejected: key at its concurrency limit");
            observe::rejected(ep.label, "key_concurrency");
            return respond::local_error(ep, ApiError::key_concurrency_limited(max));
        }
    };
    if let Err((rpm, wait)) = limiter.spend() {
        drop(slot);
        tracing::debug!(key = %limiter.name, endpoint = ep.label, "rejected: key over its rate limit");
        observe::rejected(ep.label, "key_rate");
        return respond::local_error(ep, ApiError::key_rate_limited(rpm, wait));
    }
    let response = next(request).await;
    match slot {
        None => response,
        Some(slot) => response.map(|inner| Body::new(Held { inner, _slot: slot })),
    }
}

/// A response body that holds a concurrency slot until it is dropped: after its last frame
/// was written, or when the client went away.
struct Held {
    inner: Body,
    _slot: Slot,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------------------------
// Per request

/// Caps on a request's shape, from [`GatewayOptions`](crate::GatewayOptions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) max_messages: usize,
    pub(crate) max_output_tokens: Option<u32>,
}

/// Checks a parsed request against the caps, once per inference endpoint, before routing.
///
/// - more than `max_messages` messages in the provider-neutral request (what is sent upstream:
///   a system prompt and each tool result count): 400 `messages`;
/// - `max_tokens` above `max_output_tokens`: 400 `max_tokens`. Refused, not clamped: a clamped
///   answer would stop early with `finish_reason: length` although the client asked for room;
/// - no `max_tokens` while a cap is set: the cap becomes the request's `max_tokens`. The client
///   left the length to the server, a provider default may be far above the cap (the cap
///   would otherwise bind only clients that ask politely), and a cut answer still says so
///   with its finish reason.
pub(crate) fn check_request(
    st: &crate::AppState,
    ep: Endpoint,
    request: &mut ChatRequest,
) -> Result<(), Response> {
    apply_shape(st.shape, ep, request).map_err(|(reason, e)| {
        observe::rejected(ep.label, reason);
        respond::local_error(ep, e)
    })
}

/// The fields the caps apply to, as `ep`'s protocol names them: the conversation, and the
/// output-token limit.
fn capped_fields(ep: Endpoint) -> (&'static str, CappedField) {
    match (ep.label, ep.flavor) {
        ("responses", _) => {
            ("input", CappedField { text: "`max_output_tokens`", param: "max_output_tokens" })
        }
        (_, Flavor::OpenAi) => (
            "messages",
            CappedField { text: "`max_completion_tokens` (or `max_tokens`)", param: "max_tokens" },
        ),
        (_, Flavor::Anthropic | Flavor::Simple) => {
            ("messages", CappedField { text: "`max_tokens`", param: "max_tokens" })
        }
    }
}

fn apply_shape(
    shape: Shape,
    ep: Endpoint,
    request: &mut ChatRequest,
) -> Result<(), (&'static str, ApiError)> {
    let (messages, max_tokens) = capped_fields(ep);
    let count = request.messages.len();
    if count > shape.max_messages {
        return Err(("too_many_messages", ApiError::too_many_messages(count, shape.max_messages, messages)));
    }
    if let Some(cap) = shape.max_output_tokens {
        match request.max_tokens {
            Some(asked) if asked > cap => {
                return Err(("max_tokens", ApiError::max_tokens_over_cap(asked, cap, max_tokens)));
            }
            Some(_) => {}
            None => request.max_tokens = Some(cap),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use claudette_core::Message;

    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn keys_without_limits_get_no_limiter() {
        assert!(KeyLimiter::for_key(&KeyEntry::from_plain("a", "k")).is_none());
        assert!(KeyLimiter::for_key(&KeyEntry::from_plain("a", "k").with_rpm(nz(5))).is_some());
        assert!(KeyLimiter::for_key(&KeyEntry::from_plain("a", "k").with_max_concurrent(nz(5))).is_some());
    }

    #[test]
    fn slots_are_counted_and_released_on_drop() {
        let l = KeyLimiter::for_key(&KeyEntry::from_plain("a", "k").with_max_concurrent(nz(2))).unwrap();
        let one = l.acquire().unwrap().unwrap();
        let two = l.acquire().unwrap().unwrap();
        assert_eq!(l.acquire().err(), Some(2));
        drop(one);
        let three = l.acquire().unwrap().unwrap();
        assert!(l.acquire().is_err());
        drop((two, three));
        assert_eq!(l.concurrency.as_ref().unwrap().in_flight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn rate_allows_a_burst_of_rpm_then_refuses_with_a_wait() {
        // 2 a minute: a new request every 30 s after the burst of 2.
        let l = KeyLimiter::for_key(&KeyEntry::from_plain("a", "k").with_rpm(nz(2))).unwrap();
        assert!(l.spend().is_ok());
        assert!(l.spend().is_ok());
        let (rpm, wait) = l.spend().unwrap_err();
        assert_eq!(rpm, 2);
        assert!(wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(30), "{wait:?}");
        // Unlimited concurrency on a rate-only key takes no slot.
        assert!(l.acquire().unwrap().is_none());
    }

    #[test]
    fn shape_caps_refuse_and_fill() {
        let shape = Shape { max_messages: 2, max_output_tokens: Some(100) };
        let mut three = ChatRequest {
            messages: vec![Message::system("s"), Message::user("a"), Message::user("b")],
            ..ChatRequest::prompt("x")
        };
        let (reason, e) = apply_shape(shape, ep("chat_completions", Flavor::OpenAi), &mut three).unwrap_err();
        assert_eq!(
            (reason, e.status.as_u16(), e.param.as_deref()),
            ("too_many_messages", 400, Some("messages"))
        );
        assert!(e.message.contains('3') && e.message.contains('2'), "{}", e.message);

        let mut big = ChatRequest::prompt("x").with_max_tokens(101);
        let (reason, e) = apply_shape(shape, ep("messages", Flavor::Anthropic), &mut big).unwrap_err();
        assert_eq!((reason, e.param.as_deref()), ("max_tokens", Some("max_tokens")));
        assert!(e.message.contains("101") && e.message.contains("100"), "{}", e.message);
        assert_eq!(big.max_tokens, Some(101), "a refused request is not changed");

        let mut at_cap = ChatRequest::prompt("x").with_max_tokens(100);
        apply_shape(shape, ep("api_chat", Flavor::Simple), &mut at_cap).unwrap();
        assert_eq!(at_cap.max_tokens, Some(100));
        let mut unset = ChatRequest::prompt("x");
        apply_shape(shape, ep("api_chat", Flavor::Simple), &mut unset).unwrap();
        assert_eq!(unset.max_tokens, Some(100), "no max_tokens: the cap applies");

        let uncapped = Shape { max_messages: 2, max_output_tokens: None };
        let mut free = ChatRequest::prompt("x");
        apply_shape(uncapped, ep("api_chat", Flavor::Simple), &mut free).unwrap();
        assert_eq!(free.max_tokens, None);

        // The Responses API names its own fields.
        let responses = ep("responses", Flavor::OpenAi);
        let (_, e) = apply_shape(shape, responses, &mut three).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        let (_, e) = apply_shape(shape, responses, &mut big).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_output_tokens"));
        assert!(e.message.starts_with("`max_output_tokens` is 101"), "{}", e.message);
    }

    fn ep(label: &'static str, flavor: Flavor) -> Endpoint {
        Endpoint { label, flavor }
    }
}
