//! Gateway API keys (reliability-spec S-07): kept as SHA-256 digests, compared in constant time.
//!
//! A digest is enough here (no pepper, no slow KDF) because gateway keys are long random
//! strings, not passwords: there is nothing to brute-force, and the digest only spares the
//! process from holding usable keys in memory or in its configuration.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::{ApiError, Flavor, GatewayError};

/// One accepted client key: a name for logs and metrics, the SHA-256 of the key, and the key's
/// own limits (reliability-spec S-10). Limits belong to the entry, never to a presented string.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub name: String,
    pub sha256: [u8; 32],
    /// Requests a minute on the inference endpoints: a bucket of `rpm` requests refilled at
    /// `rpm` a minute (a burst of `rpm`, then `rpm` a minute sustained). Over it: 429 with
    /// `Retry-After`, no upstream call. `None`: no rate limit.
    pub rpm: Option<NonZeroU32>,
    /// Inference requests in flight at once, streams until they end. Over it: 429 with
    /// `Retry-After: 1`, no upstream call. `None`: only the gateway-wide limit applies.
    pub max_concurrent: Option<NonZeroU32>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The digest is not a secret in itself, but nothing about a key belongs in a log.
        f.debug_struct("KeyEntry")
            .field("name", &self.name)
            .field("sha256", &"[REDACTED]")
            .field("rpm", &self.rpm)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

impl KeyEntry {
    /// An entry for a plain-text key; only its digest is kept. No limits.
    pub fn from_plain(name: impl Into<String>, key: &str) -> KeyEntry {
        KeyEntry { name: name.into(), sha256: hash_key(key), rpm: None, max_concurrent: None }
    }

    /// This entry with a requests-per-minute limit ([`rpm`](Self::rpm)).
    #[must_use]
    pub fn with_rpm(mut self, rpm: NonZeroU32) -> KeyEntry {
        self.rpm = Some(rpm);
        self
    }

    /// This entry with a limit on requests in flight ([`max_concurrent`](Self::max_concurrent)).
    #[must_use]
    pub fn with_max_concurrent(mut self, max: NonZeroU32) -> KeyEntry {
        self.max_concurrent = Some(max);
        self
    }

    /// An entry from a hex SHA-256 digest (64 hex digits, either case; a `sha256:` prefix is
    /// accepted), as a configuration file stores it.
    pub fn from_hex(name: impl Into<String>, digest: &str) -> Result<KeyEntry, GatewayError> {
        let name = name.into();
        let digest = digest.trim();
        let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(digest, &mut sha256).map_err(|e| GatewayError::InvalidKeyHash {
            name: name.clone(),
            reason: format!("expected 64 hex digits of a SHA-256 digest ({e})"),
        })?;
        Ok(KeyEntry { name, sha256, rpm: None, max_concurrent: None })
    }
}

/// SHA-256 of a key, as [`KeyEntry`] stores it.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key the client presented: `Authorization: Bearer <key>` (scheme case-insensitive) and
/// `x-api-key: <key>` are both candidates, as the OpenAI and Anthropic SDKs use one each.
fn candidates(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    let bearer = headers.get_all(axum::http::header::AUTHORIZATION).into_iter().filter_map(|v| {
        let v = v.as_bytes();
        let scheme = v.get(..7)?;
        scheme.eq_ignore_ascii_case(b"bearer ").then(|| trim(v.get(7..).unwrap_or_default()))
    });
    let api_key = headers.get_all("x-api-key").into_iter().map(|v| trim(v.as_bytes()));
    bearer.chain(api_key).filter(|k| !k.is_empty())
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// The index of the entry matching a presented key, if any. Every presented key is compared
/// with every entry, always, with constant-time equality: timing tells nothing about which
/// entry (or how much of one) matched.
pub(crate) fn authorize(keys: &[KeyEntry], headers: &HeaderMap) -> Option<usize> {
    let mut found = None;
    for presented in candidates(headers) {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        for (i, entry) in keys.iter().enumerate() {
            let equal: bool = entry.sha256.ct_eq(&digest).into();
            if equal && found.is_none() {
                found = Some(i);
            }
        }
    }
    found
}

/// Failed authentications per client address allowed in one window before that address is
/// refused outright until the window ends (S-07): guessing keys must be slow.
const FAILED_AUTH_LIMIT: u32 = 20;
const FAILED_AUTH_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; past it, expired windows are swept.
const FAILED_AUTH_TRACKED: usize = 10_000;

/// Failed-authentication counters per client IP, in fixed windows.
#[derive(Debug, Default)]
pub(crate) struct FailedAuth {
    windows: parking_lot::Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAuth {
    /// When `ip` is blocked: how long until it may try again.
    fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let w = self.windows.lock();
        let (start, count) = w.get(&ip)?;
        let left = FAILED_AUTH_WINDOW.checked_sub(now.duration_since(*start))?;
        (*count >= FAILED_AUTH_LIMIT).then_some(left)
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut w = self.windows.lock();
        if w.len() >= FAILED_AUTH_TRACKED {
            w.retain(|_, (start, _)| now.duration_since(*start) < FAILED_AUTH_WINDOW);
        }
        let entry = w.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILED_AUTH_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

fn peer(request: &Request) -> Option<SocketAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

tokio::task_local! {
    /// The index in `AppState::keys` of the key that authenticated the request being answered,
    /// set by [`check_key`] around everything it runs, so that [`tenant`] can name the key
    /// without any handler's signature passing it along (and without a request-extension map
    /// to allocate).
    static KEY: usize;
}

/// The name of the key that authenticated the request being answered: the tenant its answers
/// are cached for (reliability-spec S-11). `None` without gateway keys.
pub(crate) fn tenant(st: &AppState) -> Option<String> {
    KEY.try_with(|i| *i).ok().and_then(|i| st.keys.get(i)).map(|k| k.name.clone())
}

/// Middleware in front of everything but `/health` when keys are configured.
pub(crate) async fn require_key(State(st): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let client = peer(&request);
    check_key(&st, client, request, |r| next.run(r)).await
}

/// Authenticates `request` (from `client`, when known) and runs `next` with it, under the
/// key's own limits; or answers 401 / 429 in the path's envelope. The one implementation
/// behind both the axum middleware and the connection front's direct dispatch.
pub(crate) async fn check_key<F, Fut>(
    st: &AppState,
    client: Option<SocketAddr>,
    request: Request,
    next: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let flavor = Flavor::for_path(request.uri().path());
    let ip = client.map(|p| p.ip());
    let now = Instant::now();
    if let Some(wait) = ip.and_then(|ip| st.auth_failures.blocked_for(ip, now)) {
        tracing::debug!("rejected: too many failed authentications from this address");
        crate::observe::count(crate::observe::endpoint_for_path(request.uri().path()), 429);
        return ApiError::too_many_auth_failures(wait).into_response(flavor);
    }
    match authorize(&st.keys, request.headers()) {
        Some(i) => {
            if let Some(entry) = st.keys.get(i) {
                tracing::trace!(key = %entry.name, "gateway key accepted");
            }
            // The key's own limits (S-10); a key without any has no limiter and skips them.
            if let Some(Some(limiter)) = st.key_limits.get(i) {
                return KEY.scope(i, crate::limits::enforce(limiter, request, next)).await;
            }
            KEY.scope(i, next(request)).await
        }
        None => {
            if let Some(ip) = ip {
                st.auth_failures.record_failure(ip, now);
            }
            tracing::debug!(path = %request.uri().path(), "rejected: missing or invalid gateway API key");
            crate::observe::count(crate::observe::endpoint_for_path(request.uri().path()), 401);
            ApiError::unauthorized().into_response(flavor)
        }
    }
}

/// Admin endpoints answer loopback clients only unless `admin_from_any` (S-08).
///
/// A request without a known peer (the app embedded in a server that does not record it, such
/// as a plain `axum::serve(listener, app)`) is refused too: spend, backends and metrics are
/// what S-08 keeps from remote clients, and an embedder who forgot the connect info would
/// otherwise serve them to anyone who can reach the port. The answer says how to fix it.
pub(crate) async fn admin_guard(State(st): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if st.admin_from_any {
        return next.run(request).await;
    }
    let refused = match peer(&request) {
        Some(p) if p.ip().is_loopback() => None,
        Some(_) => Some(ApiError::admin_loopback_only()),
        None => Some(ApiError::admin_peer_unknown()),
    };
    match refused {
        None => next.run(request).await,
        Some(e) => {
            crate::observe::count(crate::observe::endpoint_for_path(request.uri().path()), 403);
            e.into_response(Flavor::for_path(request.uri().path()))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hashes_are_sha256() {
        assert_eq!(
            hex::encode(hash_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_entries_round_trip() {
        let plain = KeyEntry::from_plain("a", "abc");
        let hexed = KeyEntry::from_hex(
            "a",
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        )
        .unwrap();
        assert_eq!(plain, hexed);
        assert!(KeyEntry::from_hex("bad", "abc").is_err());
        assert!(KeyEntry::from_hex("bad", &"zz".repeat(32)).is_err());
    }

    #[test]
    fn bearer_and_x_api_key_are_accepted() {
        let keys = vec![KeyEntry::from_plain("one", "k-one"), KeyEntry::from_plain("two", "k-two")];
        fn authorize<'a>(keys: &'a [KeyEntry], h: &HeaderMap) -> Option<&'a KeyEntry> {
            super::authorize(keys, h).map(|i| &keys[i])
        }
        assert_eq!(
            authorize(&keys, &headers(&[("authorization", "Bearer k-two")])).map(|e| e.name.as_str()),
            Some("two")
        );
        assert_eq!(
            authorize(&keys, &headers(&[("authorization", "bearer  k-one ")])).map(|e| e.name.as_str()),
            Some("one")
        );
        assert_eq!(
            authorize(&keys, &headers(&[("x-api-key", "k-one")])).map(|e| e.name.as_str()),
            Some("one")
        );
        assert!(authorize(&keys, &headers(&[("authorization", "Basic k-one")])).is_none());
        assert!(authorize(&keys, &headers(&[("authorization", "Bearer k-on")])).is_none());
        assert!(authorize(&keys, &headers(&[("x-api-key", "")])).is_none());
        assert!(authorize(&keys, &HeaderMap::new()).is_none());
        // A wrong bearer does not hide a right x-api-key.
        let both = headers(&[("authorization", "Bearer nope"), ("x-api-key", "k-two")]);
        assert_eq!(authorize(&keys, &both).map(|e| e.name.as_str()), Some("two"));
    }
}
