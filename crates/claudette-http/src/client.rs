//! The process-wide HTTP clients.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use claudette_core::BackendError;
use parking_lot::Mutex;

/// How long an idle pooled connection is kept. Providers close idle keep-alive connections
/// after about 60-120 s; reusing one they already closed costs a failed request, so we let go
/// a little earlier than most of them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Pools per (tokio runtime, connect timeout). A pooled connection is driven by a task on the
/// runtime that opened it; handed to another runtime after the first one shut down, it fails
/// with "dispatch task is gone". A process normally has one runtime, so this is one pool per
/// timeout; tests (a runtime each) and programs embedding several runtimes stay correct.
type PoolKey = (Option<tokio::runtime::Id>, Duration);

static CLIENTS: OnceLock<Mutex<HashMap<PoolKey, reqwest::Client>>> = OnceLock::new();

/// The shared client for `connect_timeout`.
///
/// One client per connect timeout for the whole process, so every backend with the same
/// timeout shares one connection pool (TLS handshakes are the dominant cost of a cold call,
/// and a pool per backend would multiply them). A `reqwest::Client` is a cheap handle to the
/// pool, so the clone returned here is the same pool.
///
/// The client is built for a gateway that holds every provider key:
/// - redirects are **disabled** (reliability-spec S-09, F-27): a provider never redirects an
///   API call, and following a `Location` could carry the request, and with a same-host
///   redirect its `Authorization`, to a metadata address;
/// - no retries of its own (RT-1): the router owns the single retry loop;
/// - no system proxy (`HTTP_PROXY` and friends are ignored): where provider traffic goes is
///   the configuration's decision, not the environment's;
/// - `TCP_NODELAY`, because streamed tokens are small writes that must not wait for Nagle.
///
/// Errors only when the TLS stack cannot be initialised, which makes every HTTPS call
/// impossible anyway; it is reported as a configuration error instead of a panic.
pub fn shared_client(connect_timeout: Duration) -> Result<reqwest::Client, BackendError> {
    let key = (tokio::runtime::Handle::try_current().ok().map(|h| h.id()), connect_timeout);
    let clients = CLIENTS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut clients = clients.lock();
    if let Some(client) = clients.get(&key) {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .map_err(|e| BackendError::config(format!("cannot build the HTTP client: {}", e.without_url())))?;
    clients.insert(key, client.clone());
    Ok(client)
}
