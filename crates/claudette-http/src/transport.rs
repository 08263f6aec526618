//! Upstream HTTP/1.1 connections, pooled, and driven by the task that uses them.
//!
//! A general-purpose client (reqwest, hyper-util's pool) runs every connection in a task of
//! its own and talks to it over channels: a call is a request handed to that task, a response
//! handed back, and every body chunk handed over once more, each hand-over a task wake-up. In
//! a gateway, where the upstream call is most of the work, those wake-ups were most of the
//! cost: measured on 2 cores (`client_cost` example), reqwest spent 32–54 µs of CPU per call,
//! hyper-util's pool 20–28 µs, and a hyper connection polled by the calling task 16–18 µs —
//! a plain socket write and read being 10–13 µs.
//!
//! So here a checked-out connection belongs to the call: the call polls hyper's connection
//! future itself while it waits for the headers and reads the body, and puts the connection
//! back into the pool when the body has been read to its end. A body dropped half-read takes
//! its connection with it, which closes it and so cancels the upstream generation (RT-9).
//!
//! What this deliberately is not: no redirects (S-09), no proxy, no retries except one — a
//! request that a pooled connection could not even start to send (the server had closed it
//! while it sat idle) goes once more on a fresh connection, because nothing reached the
//! provider. No HTTP/2: every provider API speaks HTTP/1.1, and a connection per in-flight
//! call is what the pool gives.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use claudette_core::{BackendError, Phase};
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::errors::hyper_cause;

/// How long an idle pooled connection is kept. Providers close idle keep-alive connections
/// after about 60-120 s; reusing one they already closed costs a failed attempt, so we let go
/// a little earlier than most of them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per origin: enough for a burst to find warm connections, few enough
/// that a past burst does not hold hundreds of sockets open.
const MAX_IDLE_PER_ORIGIN: usize = 256;

pub(crate) type RequestBody = Full<Bytes>;

/// Where a request goes: scheme, host and port (what a pooled connection can be reused for).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) tls: bool,
    /// Host as it is dialled: a name, or an IP literal without brackets.
    pub(crate) host: Arc<str>,
    pub(crate) port: u16,
}

impl Origin {
    /// The origin of an `http` or `https` URL; other schemes and host-less URLs are refused.
    pub(crate) fn of(url: &url::Url) -> Result<Origin, BackendError> {
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(BackendError::config(format!(
                    "unsupported URL scheme `{other}` (only http and https)"
                )));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(BackendError::config("the request URL has no host")),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        Ok(Origin { tls, host: host.into(), port })
    }
}

/// The pools of the process: idle connections per (runtime, origin). A connection's socket is
/// registered with the runtime that opened it and is only ever handed to a call on that same
/// runtime (tests and programs with several runtimes stay correct when one shuts down).
#[derive(Default)]
struct Pools {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
}

type PoolKey = (Option<tokio::runtime::Id>, Origin);

/// hyper's connection future: the connection's I/O happens when it is polled.
type Driver = Pin<Box<http1::Connection<TokioIo<Io>, RequestBody>>>;

struct Idle {
    conn: Conn,
    since: Instant,
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(Pools::default)
}

fn runtime_id() -> Option<tokio::runtime::Id> {
    tokio::runtime::Handle::try_current().ok().map(|h| h.id())
}

impl Pools {
    /// The most recently used live connection to `origin`, if any. Expired and dead ones met
    /// on the way are dropped.
    fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(&(runtime_id(), origin.clone()))?;
        while let Some(mut entry) = list.pop() {
            if entry.since.elapsed() < POOL_IDLE_TIMEOUT && entry.conn.is_alive() {
                return Some(entry.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        // The runtime that opened it, not the one finishing the body: a stream may be read
        // to its end elsewhere.
        let key = (conn.runtime, conn.origin.clone());
        let now = Instant::now();
        let mut idle = self.idle.lock();
        let list = idle.entry(key).or_default();
        // Pushed in time order, so the expired ones are a prefix.
        let expired = list.partition_point(|e| now.duration_since(e.since) >= POOL_IDLE_TIMEOUT);
        list.drain(..expired);
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle { conn, since: now });
        }
    }
}

/// One HTTP/1.1 connection: hyper's request handle and the connection future that does its
/// I/O, which whoever holds the connection must poll.
struct Conn {
    origin: Origin,
    /// The runtime whose reactor the socket is registered with.
    runtime: Option<tokio::runtime::Id>,
    sender: http1::SendRequest<RequestBody>,
    /// `None` once it has completed (the connection is closed); never polled after that.
    driver: Option<Driver>,
}

impl Conn {
    /// Whether an idle connection can take a request: its driver has not ended (the server
    /// did not close it) and hyper says it is ready. Polls the driver once, without waiting.
    fn is_alive(&mut self) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return false;
        };
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        if driver.as_mut().poll(&mut cx).is_ready() {
            self.driver = None;
            return false;
        }
        self.sender.is_ready()
    }

    /// Polls `fut` to completion while also driving the connection. If the connection ends
    /// first, `fut` is still awaited: hyper then fails it with the reason.
    async fn drive<F: std::future::Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        if let Some(driver) = self.driver.as_mut() {
            tokio::select! {
                biased;
                out = &mut fut => return out,
                _ = driver.as_mut() => {}
            }
            self.driver = None;
        }
        fut.await
    }
}

/// A response whose body is read through the connection it came on.
pub(crate) struct Response {
    pub(crate) status: hyper::StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    body: Incoming,
    /// `None` once the body has been read to its end (the connection went back to the pool).
    conn: Option<Conn>,
}

impl Response {
    /// The next chunk of body, `None` at its end. At the end the connection goes back to the
    /// pool; an error leaves it to be dropped with this response. What an error means (a cut
    /// stream, a failed call) is the caller's to say.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, hyper::Error> {
        loop {
            let frame = match self.conn.as_mut() {
                Some(conn) => conn.drive(self.body.frame()).await,
                None => self.body.frame().await,
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                    // Trailers and empty frames carry nothing for us.
                }
                Some(Err(e)) => return Err(e),
                None => {
                    self.release();
                    return Ok(None);
                }
            }
        }
    }

    /// Whether the whole body has already arrived: a stream that saw its terminal event can
    /// then give its connection back instead of closing it. Never waits.
    pub(crate) fn try_finish(&mut self) -> bool {
        if self.conn.is_none() {
            return true;
        }
        // Bytes after the end of the answer, an error, or a body still open: not reusable.
        matches!(self.chunk().now_or_never(), Some(Ok(None)))
    }

    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.driver.is_some() {
                pools().checkin(conn);
            }
        }
    }
}

/// Sends `request` to `origin`, on a pooled connection when there is one, and returns once
/// the response headers are in. The connect timeout covers TCP connect and TLS handshake;
/// the caller bounds the whole wait.
pub(crate) async fn send(
    origin: &Origin,
    request: hyper::Request<RequestBody>,
    connect_timeout: Duration,
) -> Result<Response, BackendError> {
    if let Some(mut conn) = pools().checkout(origin) {
        let attempt = conn.sender.try_send_request(request);
        let attempt = conn
            .drive(attempt)
            .await
            .map_err(|mut e| TryFailure { unsent: e.take_message(), error: before_headers(e.error()) });
        match attempt {
            Ok(response) => return Ok(finish(response, conn)),
            // The idle connection died before any byte of the request left: nothing reached
            // the provider, so a fresh connection may take it.
            Err(TryFailure { unsent: Some(request), .. }) => {
                return send_fresh(origin, request, connect_timeout).await;
            }
            Err(e) => return Err(e.error),
        }
    }
    send_fresh(origin, request, connect_timeout).await
}

async fn send_fresh(
    origin: &Origin,
    request: hyper::Request<RequestBody>,
    connect_timeout: Duration,
) -> Result<Response, BackendError> {
    let mut conn = connect(origin, connect_timeout).await?;
    let sent = conn.sender.send_request(request);
    let response = conn.drive(sent).await.map_err(|e| before_headers(&e))?;
    Ok(finish(response, conn))
}

fn finish(response: hyper::Response<Incoming>, conn: Conn) -> Response {
    let (parts, body) = response.into_parts();
    Response { status: parts.status, headers: parts.headers, body, conn: Some(conn) }
}

struct TryFailure {
    error: BackendError,
    /// The request back, when hyper could not start to send it.
    unsent: Option<hyper::Request<RequestBody>>,
}

/// A failure after the connection was up and before the headers: the provider may have
/// received, and billed, the request (RT-3 "possibly accepted").
fn before_headers(e: &hyper::Error) -> BackendError {
    BackendError::transport(
        format!("connection failed before the response headers: {}", hyper_cause(e)),
        Phase::AwaitingResponse,
    )
}

/// Dials `origin` (TCP, then TLS for https) within `timeout` and hands the connection to hyper.
async fn connect(origin: &Origin, timeout: Duration) -> Result<Conn, BackendError> {
    let dial = async {
        let tcp = dial(origin).await?;
        // Streamed tokens are small writes that must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        if !origin.tls {
            return Ok(Io::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(origin.host.to_string())
            .map_err(|_| BackendError::config(format!("`{}` is not a valid TLS server name", origin.host)))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| BackendError::transport(format!("connect failed: TLS: {e}"), Phase::Connect))?;
        Ok(Io::Tls(Box::new(tls)))
    };
    let io = match tokio::time::timeout(timeout, dial).await {
        Ok(io) => io?,
        Err(_) => {
            return Err(BackendError::timeout(
                format!("connect timed out after {} ms", timeout.as_millis()),
                Phase::Connect,
            ));
        }
    };
    let (sender, driver) = http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(|e| {
        BackendError::transport(format!("connect failed: {}", hyper_cause(&e)), Phase::Connect)
    })?;
    Ok(Conn { origin: origin.clone(), runtime: runtime_id(), sender, driver: Some(Box::pin(driver)) })
}

/// A TCP connection to the first of the host's addresses that accepts, with a DNS failure
/// told apart from a refused connection (one is a configuration problem, the other an outage).
async fn dial(origin: &Origin) -> Result<TcpStream, BackendError> {
    let addrs: Vec<std::net::SocketAddr> = match origin.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![(ip, origin.port).into()],
        Err(_) => tokio::net::lookup_host((&*origin.host, origin.port))
            .await
            .map_err(|e| {
                BackendError::transport(
                    format!("connect failed: dns error: cannot resolve `{}`: {e}", origin.host),
                    Phase::Connect,
                )
            })?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(BackendError::transport(
        match last {
            Some(e) => format!("connect failed: {e}"),
            None => format!("connect failed: dns error: `{}` has no address", origin.host),
        },
        Phase::Connect,
    ))
}

/// rustls with the Mozilla roots (webpki-roots): the same trust on every machine, whatever
/// the system store holds. Certificate verification is never relaxed.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, BackendError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(|e| BackendError::config(format!("cannot initialise TLS: {e}")))
}

/// A plain or TLS socket.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
