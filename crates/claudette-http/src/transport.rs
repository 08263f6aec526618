//! Upstream HTTP/1.1 connections, pooled, driven by the task that uses them, with Claudette's
//! own minimal client codec.
//!
//! A general-purpose client (reqwest, hyper-util's pool) runs every connection in a task of
//! its own and talks to it over channels: a call is a request handed to that task, a response
//! handed back, and every body chunk handed over once more, each hand-over a task wake-up. In
//! a gateway, where the upstream call is most of the work, those wake-ups were most of the
//! cost: measured on 2 cores (`client_cost` example), reqwest spent 32–54 µs of CPU per call,
//! hyper-util's pool 20–28 µs, and a hyper connection polled by the calling task 16–18 µs —
//! a plain socket write and read being 10–13 µs.
//!
//! Even polled by the calling task, hyper's client keeps its dispatcher, its internal
//! request/response channels, a channel hand-over per body frame, `http::Request`/`Uri`/
//! `HeaderMap` building, and timers per call; a flat profile of a saturated gateway put ~15 µs
//! of user CPU per call under `HttpBackend::execute`. A client that only ever sends one POST
//! or GET with a body it already holds, and reads one response, needs little of that. So the
//! codec here is Claudette's own, over the same pooled socket: the request head is written
//! straight from the adapter's parts into one buffer and goes out with the body in one
//! vectored write; the response head is parsed with `httparse`; the body is framed by
//! `Content-Length`, `Transfer-Encoding: chunked` or the connection's end (RFC 9112 §6.3) and
//! handed out as it arrives, as slices of the connection's read buffer. Bytes that came in with
//! the head (most JSON answers; several events of a stream) are taken without arming a timer.
//!
//! Measured on the 2-core machine, same minutes, interleaved, hyper conn → this codec:
//! - saturated gateway (`/tmp/cpusplit.sh`, gateway CPU per request): JSON user 71-80 → 55-62
//!   µs, user+sys 106 → 83-86 µs; SSE user 106-124 → 95-98 µs, user+sys 154-162 → 132-135 µs;
//! - `client_cost PORT backend` (a whole `HttpBackend` call, OpenAI adapter included): 27-34 →
//!   18-21 µs of CPU per call — below a bare hyper connection polled by the calling task
//!   (15-17 µs) plus the adapter; a raw write+read is 9-12 µs;
//! - frame-pointer profile of the saturated JSON gateway: everything under
//!   `HttpBackend::execute` went from ~14 % to ~6.5 % of user samples, the rest of it being the
//!   headers timer, the `writev`/`recv` calls and `httparse`.
//!
//! A checked-out connection belongs to the call: the call reads the response head and the
//! body itself, and puts the connection back into the pool when the body has been read to its
//! end. A body dropped half-read takes its connection with it, which closes it and so cancels
//! the upstream generation (RT-9).
//!
//! What this deliberately is not: no redirects (S-09), no proxy, no retries except one — a
//! request that a pooled connection could not even start to send (the server had closed it
//! while it sat idle) goes once more on a fresh connection, because nothing reached the
//! provider. A pooled connection is looked at before use with one read that does not wait (an
//! end of stream, an error or bytes nobody asked for: it is dropped); one the server closes
//! after that look, while our request is already on its way, fails the call — the provider
//! may have read it, and a POST is never resent (RFC 9112 §9.3.1). A write cut short by a
//! server that answered early (a 413 for a body it will not read) returns that answer. No
//! HTTP/2: every provider API speaks HTTP/1.1, and a connection per in-flight call is what
//! the pool gives. No pipelining, no `Expect: 100-continue` (interim 1xx answers
//! are skipped all the same), no upgrades.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use claudette_core::{BackendError, Phase};
use futures::FutureExt;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long an idle pooled connection is kept. Providers close idle keep-alive connections
/// after about 60-120 s; reusing one they already closed costs a failed attempt, so we let go
/// a little earlier than most of them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per origin: enough for a burst to find warm connections, few enough
/// that a past burst does not hold hundreds of sockets open.
const MAX_IDLE_PER_ORIGIN: usize = 256;

/// Largest response head (status line, headers, and any interim 1xx heads one at a time). No
/// provider sends more than a few KiB; an endless head must not grow memory.
pub(crate) const MAX_HEAD: usize = 64 << 10;

/// Most header fields in a response head (hyper's limit too). Providers send 10-30.
const MAX_HEADERS: usize = 100;

/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 << 10;

/// Most bytes of trailer fields after a chunked body (read and ignored).
const MAX_TRAILERS: usize = 64 << 10;

/// Bytes asked of the socket per read. A streamed event is ~100-300 bytes and a JSON answer a
/// few KiB, so one read nearly always takes everything that has arrived.
const READ_SIZE: usize = 16 << 10;

/// Where a request goes: scheme, host and port (what a pooled connection can be reused for).
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) tls: bool,
    /// Host as it is dialled: a name, or an IP literal without brackets.
    pub(crate) host: Arc<str>,
    pub(crate) port: u16,
    /// A hash of the three fields above, computed once: the pool is looked up on every call.
    hash: u64,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.tls == other.tls && self.port == other.port && self.host == other.host
    }
}

impl Eq for Origin {}

impl Hash for Origin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
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
        Ok(Origin::new(tls, host.into(), port))
    }

    fn new(tls: bool, host: Arc<str>, port: u16) -> Origin {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tls, &*host, port).hash(&mut h);
        Origin { tls, host, port, hash: h.finish() }
    }
}

/// A multiply-rotate hasher (FxHash's) for the pool's keys: they are our own configuration
/// (origins, runtime ids), not attacker-chosen, so SipHash's flooding resistance buys nothing,
/// and an `Origin` hashes as one precomputed `u64`.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// The pools of the process: idle connections per (runtime, origin). A connection's socket is
/// registered with the runtime that opened it and is only ever handed to a call on that same
/// runtime (tests and programs with several runtimes stay correct when one shuts down).
///
/// Two levels, so that a lookup borrows the caller's `Origin` instead of cloning it into a key.
#[derive(Default)]
struct Pools {
    idle: Mutex<FastMap<Option<tokio::runtime::Id>, OriginPools>>,
}

/// One runtime's idle connections, by origin, most recently used last.
type OriginPools = FastMap<Origin, Vec<Idle>>;

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
        let runtime = runtime_id();
        let mut idle = self.idle.lock();
        let list = idle.get_mut(&runtime)?.get_mut(origin)?;
        while let Some(mut entry) = list.pop() {
            if entry.since.elapsed() < POOL_IDLE_TIMEOUT && entry.conn.is_alive() {
                return Some(entry.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        let now = Instant::now();
        let mut idle = self.idle.lock();
        // The runtime that opened it, not the one finishing the body: a stream may be read
        // to its end elsewhere.
        let by_origin = idle.entry(conn.runtime).or_default();
        let list = match by_origin.get_mut(&conn.origin) {
            Some(list) => list,
            None => by_origin.entry(conn.origin.clone()).or_default(),
        };
        // Pushed in time order, so the expired ones are a prefix.
        let expired = list.partition_point(|e| now.duration_since(e.since) >= POOL_IDLE_TIMEOUT);
        list.drain(..expired);
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle { conn, since: now });
        }
    }
}

/// One HTTP/1.1 connection and the bytes read from it that nobody has consumed yet.
struct Conn {
    origin: Origin,
    /// The runtime whose reactor the socket is registered with.
    runtime: Option<tokio::runtime::Id>,
    io: Io,
    /// Read but not yet consumed. Empty whenever the connection is idle in the pool.
    buf: BytesMut,
}

/// Why a request could not be written, and how much of it had left.
struct WriteFailure {
    written: usize,
    error: io::Error,
}

/// What one step of writing a request came to.
enum Wrote {
    Bytes(io::Result<usize>),
    /// The server sent a final error answer while the request was still being written.
    Refused,
}

/// Whether `buf` starts with the complete head of a final error answer (4xx, 5xx): the
/// server does not want the rest of the request. Interim (1xx) and other early answers let
/// the write go on, as RFC 9112 §9.5 has it.
fn refused(mut buf: &[u8]) -> bool {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match (response.parse(buf), response.code) {
            // An interim answer: the final one follows it.
            (Ok(httparse::Status::Complete(len)), Some(100..=199)) => buf = &buf[len..],
            (Ok(httparse::Status::Complete(_)), Some(code)) => return code >= 400,
            _ => return false,
        }
    }
}

impl WriteFailure {
    /// Nothing written: the provider cannot have seen the request. Anything written: it may
    /// have, and acted on it (RT-3 "possibly accepted").
    fn into_error(self) -> BackendError {
        if self.written == 0 {
            BackendError::transport(
                format!("connection failed before the request was sent: {}", self.error),
                Phase::Connect,
            )
        } else {
            BackendError::transport(
                format!("connection failed while sending the request: {}", self.error),
                Phase::AwaitingResponse,
            )
        }
    }
}

impl Conn {
    fn new(origin: &Origin, io: Io) -> Conn {
        Conn { origin: origin.clone(), runtime: runtime_id(), io, buf: BytesMut::with_capacity(READ_SIZE) }
    }

    /// Whether an idle connection can take a request: the server has neither closed it nor
    /// sent anything unasked. Looks at the socket once, without waiting (and, on a plain
    /// socket the reactor has seen nothing on, without a system call).
    fn is_alive(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        // Ready means end of stream, an error, or bytes nobody asked for: all fatal.
        Pin::new(&mut self.io).poll_read(&mut cx, &mut probe).is_pending()
    }

    /// Reads whatever has arrived (at least one byte, or 0 at the end of the stream).
    async fn read_more(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            // Reclaims the space of consumed bytes when no handed-out chunk still uses it.
            self.buf.reserve(READ_SIZE);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Writes the request head and body, vectored, and flushes (TLS buffers).
    ///
    /// While a write waits (the server is not reading), the connection is watched for an
    /// answer (RFC 9112 §9.5): a server refusing a large body may answer and then neither
    /// read nor close, and the write would otherwise wait for the caller's deadline. A final
    /// error answer ends the write; its bytes stay buffered for [`Self::early_answer`].
    async fn write_request(&mut self, head: &[u8], body: &[u8]) -> Result<(), WriteFailure> {
        let total = head.len() + body.len();
        let mut written = 0;
        while written < total {
            match std::future::poll_fn(|cx| self.poll_write_step(cx, head, body, written)).await {
                Wrote::Bytes(Ok(0)) => {
                    return Err(WriteFailure { written, error: io::ErrorKind::WriteZero.into() });
                }
                Wrote::Bytes(Ok(n)) => written += n,
                Wrote::Bytes(Err(error)) => return Err(WriteFailure { written, error }),
                Wrote::Refused => {
                    let error = io::Error::other("the server answered before it read the whole request");
                    return Err(WriteFailure { written, error });
                }
            }
        }
        self.io.flush().await.map_err(|error| WriteFailure { written, error })
    }

    /// One write of what is left of the request; when it has to wait, reads what the server
    /// sends meanwhile and reports a final error answer whose head is complete.
    fn poll_write_step(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        body: &[u8],
        written: usize,
    ) -> Poll<Wrote> {
        let wrote = if written < head.len() {
            let parts = [io::IoSlice::new(&head[written..]), io::IoSlice::new(body)];
            Pin::new(&mut self.io).poll_write_vectored(cx, &parts)
        } else {
            Pin::new(&mut self.io).poll_write(cx, &body[written - head.len()..])
        };
        if let Poll::Ready(result) = wrote {
            return Poll::Ready(Wrote::Bytes(result));
        }
        while self.buf.len() < MAX_HEAD {
            if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
                self.buf.reserve(READ_SIZE);
            }
            match std::pin::pin!(self.io.read_buf(&mut self.buf)).poll(cx) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    if refused(&self.buf) {
                        return Poll::Ready(Wrote::Refused);
                    }
                }
                // The end of the stream or an error: the write fails on its own. Pending: the
                // read's waker is registered beside the write's.
                _ => break,
            }
        }
        Poll::Pending
    }

    /// After the request could not be written to its end: the answer the server had already
    /// sent, if its whole head is here, else the write's error. A server that refuses a
    /// large body answers (413, 401…) and closes without reading the rest, and our write
    /// then fails with a reset; its answer is the one to report (RFC 9112 §9.5: a client
    /// watches for a response while it sends), not a transport error that would read as
    /// "possibly accepted". Never waits; the connection goes with the answer.
    fn early_answer(self, failure: WriteFailure) -> Result<Response, BackendError> {
        if failure.written == 0 {
            return Err(failure.into_error());
        }
        match self.read_response().now_or_never() {
            Some(Ok(mut response)) => {
                response.reusable = false;
                Ok(response)
            }
            _ => Err(failure.into_error()),
        }
    }

    /// Reads the response head (skipping interim 1xx answers) and hands the connection to the
    /// response, whose body it then carries.
    async fn read_response(mut self) -> Result<Response, BackendError> {
        // How much of the buffer is known to hold no end of head: a head trickled in a byte
        // at a time is then scanned once, not parsed again from its start on every read.
        let mut scanned = 0;
        loop {
            // The first bytes are always parsed, so a server that is not speaking HTTP is named
            // at once, not when the headers deadline runs out.
            let first = scanned == 0 && !self.buf.is_empty();
            if first || self.buf.len() >= MAX_HEAD || head_complete(&self.buf, scanned) {
                let mut slots =
                    [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut []);
                let outcome = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut parsed,
                    &self.buf,
                    &mut slots,
                ) {
                    Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
                        Err(malformed_head(&format!("response head larger than {MAX_HEAD} bytes")))
                    }
                    Ok(httparse::Status::Complete(len)) => match parsed.code {
                        Some(101) => Err(malformed_head(
                            "the server switched protocols (101), which was never asked for",
                        )),
                        Some(code) if (100..200).contains(&code) => Ok((len, None)),
                        _ => interpret(&parsed).map(|head| (len, Some(head))),
                    },
                    Ok(httparse::Status::Partial) if self.buf.len() >= MAX_HEAD => {
                        Err(malformed_head(&format!("response head larger than {MAX_HEAD} bytes")))
                    }
                    Ok(httparse::Status::Partial) => Ok((0, None)),
                    Err(httparse::Error::TooManyHeaders) => {
                        Err(malformed_head(&format!("more than {MAX_HEADERS} header fields in the response")))
                    }
                    Err(e) => Err(malformed_head(&format!("invalid response head: {e}"))),
                };
                match outcome? {
                    (len, Some(head)) => {
                        self.buf.advance(len);
                        return Ok(Response::new(head, self));
                    }
                    // An interim answer: the real one follows.
                    (len, None) if len > 0 => {
                        self.buf.advance(len);
                        scanned = 0;
                        continue;
                    }
                    _ => {}
                }
            }
            scanned = self.buf.len();
            match self.read_more().await {
                Ok(0) => {
                    return Err(BackendError::transport(
                        "connection closed before the response headers",
                        Phase::AwaitingResponse,
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(BackendError::transport(
                        format!("connection failed before the response headers: {e}"),
                        Phase::AwaitingResponse,
                    ));
                }
            }
        }
    }
}

/// The request reached the provider; what came back is not HTTP we can read.
/// Whether `buf` holds a blank line (`\n\n` or `\n\r\n`, the end of a head as httparse reads
/// it), looking only at what follows the first `from` bytes (and the two before, where a
/// marker split across reads begins).
fn head_complete(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(2).min(buf.len());
    let tail = &buf[start..];
    tail.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && matches!(&tail[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

fn malformed_head(what: &str) -> BackendError {
    BackendError::malformed(format!("malformed response: {what}")).with_phase(Phase::AwaitingResponse)
}

/// A parsed response head: what the caller sees, and how its body is framed.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    content_length: Option<u64>,
    body: Body,
    /// The connection may carry another request once this body is read (keep-alive).
    reusable: bool,
}

/// Status, headers (names lower-cased), framing and keep-alive of a final (non-1xx) head.
fn interpret(parsed: &httparse::Response<'_, '_>) -> Result<Head, BackendError> {
    let status = parsed.code.unwrap_or(0);
    let http10 = parsed.version == Some(0);
    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive = false;
    for field in parsed.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                // `n` or the list form `n, n`; differing values are refused (RFC 9112 §6.3:
                // the framing is unknowable, and guessing is how responses get spliced).
                for part in field.value.split(|&b| b == b',') {
                    let n = decimal(part.trim_ascii()).ok_or_else(|| {
                        malformed_head(&format!(
                            "invalid Content-Length `{}`",
                            String::from_utf8_lossy(field.value)
                        ))
                    })?;
                    if content_length.is_some_and(|m| m != n) {
                        return Err(malformed_head("conflicting Content-Length values"));
                    }
                    content_length = Some(n);
                }
            }
            "transfer-encoding" => {
                transfer_encoding = true;
                // Only the final coding frames the body; this field's last one is the final
                // one so far.
                chunked = field
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            "connection" => {
                for token in field.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            _ => {}
        }
        headers.push((name, String::from_utf8_lossy(field.value).into_owned()));
    }
    // RFC 9112 §6.3, in order. Transfer-Encoding overrides Content-Length; a response that
    // sends both may be an attempt at response splitting, so its connection is not reused.
    let body = if status == 204 || status == 304 {
        Body::Done
    } else if transfer_encoding {
        if chunked { Body::Chunked(Chunk::Size) } else { Body::UntilClose }
    } else {
        match content_length {
            Some(n) => Body::Length(n),
            None => Body::UntilClose,
        }
    };
    // An HTTP/1.0 message with Transfer-Encoding has faulty framing and its connection is
    // closed after it (RFC 9112 §6.1). A 204 or 304 that announces a body (a non-zero
    // Content-Length on a 204, Transfer-Encoding on either) has none by its status, but a
    // server that sent one may still be writing it: left on the connection, it would be
    // read as the head of the next answer.
    let announces_body = transfer_encoding || (status == 204 && content_length.is_some_and(|n| n > 0));
    let reusable = !(close
        || (http10 && (!keep_alive || transfer_encoding))
        || matches!(body, Body::UntilClose)
        || (transfer_encoding && content_length.is_some())
        || (matches!(body, Body::Done) && announces_body));
    let content_length = if matches!(body, Body::Length(_)) { content_length } else { None };
    Ok(Head { status, headers, content_length, body, reusable })
}

/// A non-empty run of ASCII digits as a number, `None` otherwise (no sign, no overflow).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(d - b'0')) } else { None }
    })
}

/// Where a response body stands.
#[derive(Debug)]
enum Body {
    /// `Content-Length` framing: this many bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Neither length nor chunked: the body ends when the server closes the connection.
    UntilClose,
    /// Read to its end.
    Done,
    /// Failed; every later read gives the same error.
    Failed(BodyError),
}

/// Where a chunked body stands (RFC 9112 §7.1).
#[derive(Debug)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes still to come.
    Data(u64),
    /// After a chunk's data: expecting its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines (ignored) up to an empty line; bytes seen so far.
    Trailers(usize),
}

/// Why a body could not be read to its end.
#[derive(Debug, Clone)]
pub(crate) enum BodyError {
    /// The connection failed or ended early.
    Transport(String),
    /// The body's framing is not valid HTTP/1.1.
    Malformed(String),
}

/// What the bytes already read give, without reading more.
enum Step {
    Data(Bytes),
    End,
    NeedMore,
}

/// A response whose body is read through the connection it came on.
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Header fields in order, names lower-cased, values as (lossy) UTF-8.
    pub(crate) headers: Vec<(String, String)>,
    /// The declared body length, when the body is framed by it.
    pub(crate) content_length: Option<u64>,
    body: Body,
    reusable: bool,
    /// `None` once the body has ended (the connection went back to the pool or was closed)
    /// or failed.
    conn: Option<Conn>,
}

impl Response {
    fn new(head: Head, conn: Conn) -> Response {
        Response {
            status: head.status,
            headers: head.headers,
            content_length: head.content_length,
            body: head.body,
            reusable: head.reusable,
            conn: Some(conn),
        }
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The next piece of body, `None` at its end: as soon as a read brings data, never
    /// waiting for more (streamed events must not be held back). At the end the connection
    /// goes back to the pool; an error closes it. What an error means (a cut stream, a failed
    /// call) is the caller's to say.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            if let Some(ready) = self.buffered() {
                return ready;
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.fail(BodyError::Transport("the connection is gone".into())));
            };
            match conn.read_more().await {
                Ok(0) => {
                    let error = match &self.body {
                        Body::UntilClose => {
                            // The server's close is this body's end; the connection goes with it.
                            self.body = Body::Done;
                            self.conn = None;
                            return Ok(None);
                        }
                        Body::Length(n) => {
                            format!("connection closed with {n} bytes of the body still to come")
                        }
                        _ => "connection closed in the middle of a chunked body".to_owned(),
                    };
                    return Err(self.fail(BodyError::Transport(error)));
                }
                Ok(_) => {}
                Err(e) => return Err(self.fail(BodyError::Transport(e.to_string()))),
            }
        }
    }

    /// The next piece of body if it can be had without reading the socket: data already
    /// read, or the end. `None` when a read is needed. Lets callers skip arming a timer for
    /// what is already here.
    pub(crate) fn buffered(&mut self) -> Option<Result<Option<Bytes>, BodyError>> {
        match self.step() {
            Ok(Step::NeedMore) => None,
            Ok(Step::End) => {
                self.release();
                Some(Ok(None))
            }
            Ok(Step::Data(first)) => {
                // Chunked framing cuts a read into pieces; what is already here goes out as one.
                let mut joined: Option<BytesMut> = None;
                while let Ok(Step::Data(more)) = self.step() {
                    joined
                        .get_or_insert_with(|| {
                            let mut b = BytesMut::with_capacity(first.len() + more.len() * 2);
                            b.extend_from_slice(&first);
                            b
                        })
                        .extend_from_slice(&more);
                }
                // A step that failed or ended left its state behind for the next call.
                Some(Ok(Some(joined.map_or(first, BytesMut::freeze))))
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Whether the whole body has already arrived: a stream that saw its terminal event can
    /// then give its connection back instead of closing it. Never waits.
    pub(crate) fn try_finish(&mut self) -> bool {
        if self.conn.is_none() {
            return matches!(self.body, Body::Done);
        }
        // Bytes after the end of the answer, an error, or a body still open: not reusable.
        matches!(self.chunk().now_or_never(), Some(Ok(None)))
    }

    fn fail(&mut self, error: BodyError) -> BodyError {
        self.conn = None;
        self.body = Body::Failed(error.clone());
        error
    }

    /// The connection goes back to the pool if it may carry another request and holds
    /// nothing beyond this response; otherwise it is closed.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buf.is_empty() {
                pools().checkin(conn);
            }
        }
    }

    /// Consumes buffered bytes by the body's framing, up to the next piece of data, the end,
    /// or the point where more must be read. A framing error fails the body.
    fn step(&mut self) -> Result<Step, BodyError> {
        let Some(conn) = self.conn.as_mut() else {
            return match &self.body {
                Body::Done => Ok(Step::End),
                Body::Failed(e) => Err(e.clone()),
                // Unreachable: the connection goes only with the end or a failure.
                _ => Err(BodyError::Transport("the connection is gone".into())),
            };
        };
        frame(&mut self.body, &mut conn.buf).map_err(|e| self.fail(e))
    }
}

/// The body's framing applied to the buffered bytes (see [`Response::step`]).
fn frame(body: &mut Body, buf: &mut BytesMut) -> Result<Step, BodyError> {
    loop {
        match body {
            Body::Done => return Ok(Step::End),
            Body::Failed(e) => return Err(e.clone()),
            Body::Length(0) => *body = Body::Done,
            Body::Length(left) => return Ok(take(buf, left)),
            Body::UntilClose if buf.is_empty() => return Ok(Step::NeedMore),
            Body::UntilClose => return Ok(Step::Data(buf.split().freeze())),
            Body::Chunked(Chunk::Data(0)) => *body = Body::Chunked(Chunk::DataEnd),
            Body::Chunked(Chunk::Data(left)) => return Ok(take(buf, left)),
            Body::Chunked(Chunk::Size) => {
                let Some(line) = line(buf, MAX_CHUNK_LINE) else {
                    return Ok(Step::NeedMore);
                };
                let size = chunk_size(&line?)?;
                *body = Body::Chunked(if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) });
            }
            Body::Chunked(Chunk::DataEnd) => match buf.first() {
                None => return Ok(Step::NeedMore),
                Some(b'\n') => {
                    buf.advance(1);
                    *body = Body::Chunked(Chunk::Size);
                }
                Some(b'\r') if buf.len() < 2 => return Ok(Step::NeedMore),
                Some(b'\r') if buf[1] == b'\n' => {
                    buf.advance(2);
                    *body = Body::Chunked(Chunk::Size);
                }
                Some(_) => {
                    return Err(BodyError::Malformed("chunk data longer than its declared size".into()));
                }
            },
            Body::Chunked(Chunk::Trailers(seen)) => {
                let before = buf.len();
                let Some(line) = line(buf, MAX_TRAILERS.saturating_sub(*seen)) else {
                    return Ok(Step::NeedMore);
                };
                match line {
                    Ok(line) if line.is_empty() => *body = Body::Done,
                    Ok(_) => *seen += before - buf.len(),
                    Err(_) => {
                        return Err(BodyError::Malformed(format!(
                            "trailer fields larger than {MAX_TRAILERS} bytes"
                        )));
                    }
                }
            }
        }
    }
}

/// Up to `left` bytes of data from the buffer, counted off.
fn take(buf: &mut BytesMut, left: &mut u64) -> Step {
    if buf.is_empty() {
        return Step::NeedMore;
    }
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    Step::Data(buf.split_to(n).freeze())
}

/// The next line (without its CRLF or bare LF) taken off the buffer; `None` when it has not
/// all arrived yet; an error when it is longer than `max` bytes.
fn line(buf: &mut BytesMut, max: usize) -> Option<Result<Bytes, BodyError>> {
    match buf.iter().take(max.saturating_add(1)).position(|&b| b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1).freeze();
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Some(Ok(line))
        }
        None if buf.len() > max => {
            Some(Err(BodyError::Malformed(format!("chunk-size line longer than {max} bytes"))))
        }
        None => None,
    }
}

/// The size of a chunk-size line: hex digits, then optional whitespace and `;` extensions
/// (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let invalid =
        || BodyError::Malformed(format!("invalid chunk size line `{}`", String::from_utf8_lossy(line)));
    // 15 hex digits is already an exabyte; more would overflow.
    if digits == 0 || digits > 15 {
        return Err(invalid());
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(invalid());
    }
    line[..digits].iter().try_fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(invalid()),
        };
        Ok((n << 4) | u64::from(v))
    })
}

/// Sends the request (`head`, then `body`) to `origin`, on a pooled connection when there is
/// one, and returns once the response headers are in. The connect timeout covers TCP connect
/// and TLS handshake; the caller bounds the whole wait.
pub(crate) async fn send(
    origin: &Origin,
    head: &[u8],
    body: &[u8],
    connect_timeout: Duration,
) -> Result<Response, BackendError> {
    if let Some(mut conn) = pools().checkout(origin) {
        match conn.write_request(head, body).await {
            Ok(()) => return conn.read_response().await,
            // The idle connection died before any byte of the request left: nothing reached
            // the provider, so a fresh connection may take it. Once written, never again.
            Err(WriteFailure { written: 0, .. }) => {}
            Err(failure) => return conn.early_answer(failure),
        }
    }
    let mut conn = connect(origin, connect_timeout).await?;
    match conn.write_request(head, body).await {
        Ok(()) => conn.read_response().await,
        Err(failure) => conn.early_answer(failure),
    }
}

/// Dials `origin` (TCP, then TLS for https) within `timeout`.
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
    match tokio::time::timeout(timeout, dial).await {
        Ok(io) => Ok(Conn::new(origin, io?)),
        Err(_) => Err(BackendError::timeout(
            format!("connect timed out after {} ms", timeout.as_millis()),
            Phase::Connect,
        )),
    }
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

#[cfg(test)]
mod tests {
    //! The codec over real sockets on 127.0.0.1, against a tiny server that writes scripted raw
    //! bytes, plus the body framing fed every possible split of a chunked body.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use claudette_core::ErrorKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// One scripted answer: byte pieces written one at a time (a short pause between them, so
    /// they usually arrive as separate reads), then the connection is closed if `close`.
    #[derive(Clone)]
    struct Script {
        pieces: Vec<Vec<u8>>,
        close: bool,
    }

    fn whole(bytes: &str) -> Script {
        Script { pieces: vec![bytes.as_bytes().to_vec()], close: false }
    }

    fn split(pieces: &[&str]) -> Script {
        Script { pieces: pieces.iter().map(|p| p.as_bytes().to_vec()).collect(), close: false }
    }

    fn byte_by_byte(bytes: &str) -> Script {
        Script { pieces: bytes.bytes().map(|b| vec![b]).collect(), close: false }
    }

    fn then_close(mut s: Script) -> Script {
        s.close = true;
        s
    }

    /// Answers the n-th request it receives (on whatever connection) with `scripts[n]`.
    struct RawServer {
        origin: Origin,
        connections: Arc<AtomicUsize>,
    }

    impl RawServer {
        async fn start(scripts: Vec<Script>) -> RawServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let connections = Arc::new(AtomicUsize::new(0));
            let scripts = Arc::new(Mutex::new(scripts.into_iter()));
            let conns = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else { return };
                    sock.set_nodelay(true).unwrap();
                    conns.fetch_add(1, Ordering::SeqCst);
                    let scripts = scripts.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        loop {
                            if !read_request(&mut sock, &mut buf).await {
                                return;
                            }
                            let Some(script) = scripts.lock().next() else { return };
                            for (i, piece) in script.pieces.iter().enumerate() {
                                if i > 0 {
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                                if sock.write_all(piece).await.is_err() {
                                    return;
                                }
                            }
                            if script.close {
                                return;
                            }
                        }
                    });
                }
            });
            RawServer { origin: Origin::new(false, "127.0.0.1".into(), port), connections }
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    /// Reads one request (head, then `content-length` bytes); false at the end of the stream.
    async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        true
    }

    const HEAD: &[u8] = b"POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n";

    /// Sends a request and reads the whole body: (status, headers, body) or the error's text.
    async fn call(server: &RawServer) -> Result<(u16, Vec<(String, String)>, String), BackendError> {
        let mut response = send(&server.origin, HEAD, b"{}", Duration::from_secs(5)).await?;
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), response.chunk()).await.unwrap() {
                Ok(Some(piece)) => body.extend_from_slice(&piece),
                Ok(None) => break,
                Err(e) => return Err(crate::errors::body_error(&e, false)),
            }
        }
        Ok((response.status, response.headers.clone(), String::from_utf8(body).unwrap()))
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
        5;name=value;other=\"quoted; still\"\r\nhello\r\n\
        7 ; ext\r\n, world\r\n\
        A\r\n0123456789\r\n\
        0;last\r\nx-trailer: ignored\r\nanother: also ignored\r\n\r\n";
    const CHUNKED_BODY: &str = "hello, world0123456789";

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers_is_decoded_and_reused() {
        let server = RawServer::start(vec![whole(CHUNKED), whole(CHUNKED)]).await;
        for _ in 0..2 {
            let (status, headers, body) = call(&server).await.unwrap();
            assert_eq!((status, body.as_str()), (200, CHUNKED_BODY));
            assert!(headers.contains(&("transfer-encoding".to_owned(), "chunked".to_owned())), "{headers:?}");
        }
        assert_eq!(server.connections(), 1, "a chunked body read to its end leaves the connection reusable");
    }

    #[tokio::test]
    async fn chunked_and_length_bodies_arriving_byte_by_byte() {
        let length = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
        let server = RawServer::start(vec![byte_by_byte(CHUNKED), byte_by_byte(length), whole(length)]).await;
        assert_eq!(call(&server).await.unwrap().2, CHUNKED_BODY);
        assert_eq!(call(&server).await.unwrap().2, "hello world");
        assert_eq!(call(&server).await.unwrap().2, "hello world");
        assert_eq!(server.connections(), 1);
    }

    /// Every way of cutting a chunked body (and the start of the next answer) in two reads
    /// gives the same body, ends at the same place, and leaves the next answer untouched.
    /// Feeds what `buf` holds through `frame` until it needs more bytes; true once the body
    /// ended.
    fn drain(body: &mut Body, buf: &mut BytesMut, out: &mut Vec<u8>) -> bool {
        loop {
            match frame(body, buf).unwrap() {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::End => return true,
                Step::NeedMore => return false,
            }
        }
    }

    #[test]
    fn chunked_framing_at_every_split_point() {
        let wire = CHUNKED.split_once("\r\n\r\n").unwrap().1.to_owned() + "HTTP/1.1 200 OK";
        let wire = wire.as_bytes();
        for cut in 0..=wire.len() {
            for second_cut in [cut, (cut + 3).min(wire.len())] {
                let mut body = Body::Chunked(Chunk::Size);
                let mut buf = BytesMut::new();
                let mut out = Vec::new();
                let mut ended = false;
                for piece in [&wire[..cut], &wire[cut..second_cut], &wire[second_cut..]] {
                    buf.extend_from_slice(piece);
                    ended |= drain(&mut body, &mut buf, &mut out);
                }
                assert!(ended, "cut at {cut}/{second_cut}");
                assert_eq!(out, CHUNKED_BODY.as_bytes(), "cut at {cut}/{second_cut}");
                assert_eq!(&buf[..], b"HTTP/1.1 200 OK", "cut at {cut}/{second_cut}");
            }
        }
    }

    #[tokio::test]
    async fn content_length_split_across_reads() {
        let server = RawServer::start(vec![
            split(&["HTTP/1.1 200 OK\r\nconte", "nt-length: 10\r\n\r", "\n01234", "5678", "9"]),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        ])
        .await;
        assert_eq!(call(&server).await.unwrap().2, "0123456789");
        assert_eq!(call(&server).await.unwrap().2, "ok");
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn body_read_to_close_is_complete_and_the_connection_not_reused() {
        let until_close =
            then_close(split(&["HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"a\":", "1}"]));
        let server =
            RawServer::start(vec![until_close, whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")])
                .await;
        assert_eq!(call(&server).await.unwrap().2, "{\"a\":1}");
        assert_eq!(call(&server).await.unwrap().2, "ok");
        assert_eq!(server.connections(), 2);
    }

    #[tokio::test]
    async fn connection_close_and_http10_without_keep_alive_are_not_reused() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let server = RawServer::start(vec![
            whole("HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 5\r\n\r\nfirst"),
            whole("HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nsecond"),
            whole("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\nthird"),
            whole(ok),
        ])
        .await;
        // The server keeps every connection open: only our reading of the headers decides.
        assert_eq!(call(&server).await.unwrap().2, "first");
        assert_eq!(call(&server).await.unwrap().2, "second");
        assert_eq!(call(&server).await.unwrap().2, "third");
        assert_eq!(call(&server).await.unwrap().2, "ok");
        assert_eq!(server.connections(), 3, "1.1+close and plain 1.0 are not reused, 1.0+keep-alive is");
    }

    #[tokio::test]
    async fn interim_1xx_answers_are_skipped() {
        let server = RawServer::start(vec![
            split(&[
                "HTTP/1.1 100 Continue\r\n\r\n",
                "HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\n",
                "done",
            ]),
            whole("HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        ])
        .await;
        let (status, headers, body) = call(&server).await.unwrap();
        assert_eq!((status, body.as_str()), (201, "done"));
        assert!(
            !headers.iter().any(|(n, _)| n == "link"),
            "interim headers are not the answer's: {headers:?}"
        );
        let (status, _, body) = call(&server).await.unwrap();
        assert_eq!((status, body.as_str()), (204, ""), "204 has no body whatever the headers say");
        assert_eq!(call(&server).await.unwrap().2, "ok");
        assert_eq!(server.connections(), 2, "a 204 announcing a body does not leave its connection reusable");
    }

    #[tokio::test]
    async fn conflicting_content_length_is_refused_and_equal_repeats_accepted() {
        let server = RawServer::start(vec![
            whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 2, 4\r\n\r\nabcd"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nab"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2, 2\r\n\r\nab"),
        ])
        .await;
        for expected in
            ["conflicting Content-Length", "conflicting Content-Length", "invalid Content-Length `+2`"]
        {
            let err = call(&server).await.unwrap_err();
            assert_eq!((err.kind, err.phase), (ErrorKind::MalformedResponse, Some(Phase::AwaitingResponse)));
            assert!(err.message.contains(expected), "{err}");
        }
        assert_eq!(call(&server).await.unwrap().2, "ab");
    }

    #[tokio::test]
    async fn malformed_chunk_sizes_are_refused() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let server = RawServer::start(vec![
            whole(&format!("{head}zz\r\nhello\r\n0\r\n\r\n")),
            whole(&format!("{head}\r\nhello\r\n0\r\n\r\n")),
            whole(&format!("{head}5 x\r\nhello\r\n0\r\n\r\n")),
            whole(&format!("{head}1000000000000000\r\nhello\r\n")),
            whole(&format!("{head}3\r\nhello\r\n0\r\n\r\n")),
            whole(&format!("{head}{}", "5".repeat(MAX_CHUNK_LINE + 10))),
        ])
        .await;
        for expected in [
            "invalid chunk size line `zz`",
            "invalid chunk size line ``",
            "invalid chunk size line `5 x`",
            "invalid chunk size line `1000000000000000`",
            "chunk data longer than its declared size",
            "chunk-size line longer than",
        ] {
            let err = call(&server).await.unwrap_err();
            assert_eq!((err.kind, err.phase), (ErrorKind::MalformedResponse, Some(Phase::Body)), "{err}");
            assert!(err.message.contains(expected), "{expected}: {err}");
        }
        assert_eq!(server.connections(), 6, "a connection whose body failed is never reused");
    }

    #[tokio::test]
    async fn a_truncated_body_is_an_error_not_a_short_answer() {
        let server = RawServer::start(vec![
            then_close(whole("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123")),
            then_close(whole("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")),
            then_close(whole("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")),
            then_close(whole("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-trailer: 1\r\n")),
            then_close(whole("HTTP/1.1 200 OK\r\ncontent-le")),
        ])
        .await;
        for expected in ["6 bytes of the body still to come", "chunked body", "chunked body", "chunked body"]
        {
            let err = call(&server).await.unwrap_err();
            assert_eq!((err.kind, err.phase), (ErrorKind::Transport, Some(Phase::Body)), "{err}");
            assert!(err.message.contains(expected), "{expected}: {err}");
        }
        let err = call(&server).await.unwrap_err();
        assert_eq!((err.kind, err.phase), (ErrorKind::Transport, Some(Phase::AwaitingResponse)), "{err}");
        assert!(err.message.contains("closed before the response headers"), "{err}");
    }

    #[tokio::test]
    async fn oversized_and_invalid_heads_are_refused() {
        let huge = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n", "a".repeat(MAX_HEAD));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let server = RawServer::start(vec![
            whole(&huge),
            whole(&format!("HTTP/1.1 200 OK\r\n{many}content-length: 0\r\n\r\n")),
            whole("SSH-2.0-OpenSSH_9.6\r\n\r\n"),
            whole("HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n"),
        ])
        .await;
        for expected in
            ["larger than 65536 bytes", "more than 100 header fields", "invalid response head", "101"]
        {
            let err = call(&server).await.unwrap_err();
            assert_eq!((err.kind, err.phase), (ErrorKind::MalformedResponse, Some(Phase::AwaitingResponse)));
            assert!(err.message.contains(expected), "{expected}: {err}");
        }
    }

    /// The head is parsed when it is complete, not on every read; but the first bytes always
    /// are, so a server that does not speak HTTP and keeps the line open is named at once.
    #[tokio::test]
    async fn a_banner_is_refused_at_once_and_a_trickled_head_still_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin::new(false, "127.0.0.1".into(), listener.local_addr().unwrap().port());
        let (done, hold) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_request(&mut sock, &mut Vec::new()).await;
            sock.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
            let _ = hold.await;
            let (mut sock, _) = listener.accept().await.unwrap();
            read_request(&mut sock, &mut Vec::new()).await;
            for b in "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n\r\nok".bytes() {
                sock.write_all(&[b]).await.unwrap();
                sock.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let head = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        let banner =
            tokio::time::timeout(Duration::from_secs(5), send(&origin, head, b"", Duration::from_secs(2)))
                .await
                .expect("answered before any deadline");
        let err = banner.err().expect("a banner is not an HTTP answer");
        assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
        assert!(err.message.contains("invalid response head"), "{err}");
        let _ = done.send(());
        let mut resp = send(&origin, head, b"", Duration::from_secs(2)).await.unwrap();
        assert_eq!(resp.status, 200);
        let mut body = Vec::new();
        while let Some(piece) = resp.chunk().await.unwrap() {
            body.extend_from_slice(&piece);
        }
        assert_eq!(body, b"ok");
    }

    /// SSE: a chunk is handed out as soon as it is read, while the server holds the rest back.
    #[tokio::test]
    async fn a_chunk_is_delivered_before_the_rest_of_the_body_exists() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin::new(false, "127.0.0.1".into(), listener.local_addr().unwrap().port());
        let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_request(&mut sock, &mut Vec::new()).await;
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            sock.write_all(format!("{head}6\r\ndata: \r\n").as_bytes()).await.unwrap();
            let _ = wait.await;
            sock.write_all(b"2\r\nhi\r\n0\r\n\r\n").await.unwrap();
            read_request(&mut sock, &mut Vec::new()).await;
        });
        let mut response = send(&origin, HEAD, b"{}", Duration::from_secs(5)).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), response.chunk()).await;
        assert_eq!(
            &first.expect("the first chunk must not wait for the rest").unwrap().unwrap()[..],
            b"data: "
        );
        go_on.send(()).unwrap();
        assert_eq!(&response.chunk().await.unwrap().unwrap()[..], b"hi");
        assert!(response.chunk().await.unwrap().is_none());
    }

    /// A 204 that announces a body, whose body a broken server writes late (here: only when
    /// the next request comes): the connection must not carry that next request, or those
    /// bytes would be read as its answer.
    #[tokio::test]
    async fn a_204_announcing_a_body_does_not_poison_the_next_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin::new(false, "127.0.0.1".into(), listener.local_addr().unwrap().port());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut n = 0;
                    while read_request(&mut sock, &mut buf).await {
                        let answer: &[u8] = if n == 0 {
                            b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"
                        } else {
                            // The 204's late "body", then what answers this request.
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nWRONGHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        n += 1;
                        if sock.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let server = RawServer { origin, connections: Arc::new(AtomicUsize::new(0)) };
        let (status, _, body) = call(&server).await.unwrap();
        assert_eq!((status, body.as_str()), (204, ""));
        // A fresh connection: its first answer is the 204 again, not a spliced one.
        let (status, _, body) = call(&server).await.unwrap();
        assert_eq!((status, body.as_str()), (204, ""), "the second request went on the 204's connection");
    }

    /// Framing that RFC 9112 calls ambiguous or faulty is read by the rule that wins, and its
    /// connection is never reused: both Content-Length and Transfer-Encoding, chunked in an
    /// HTTP/1.0 answer, a final coding other than chunked, chunked not last.
    #[tokio::test]
    async fn ambiguous_framing_is_read_by_the_rfc_and_never_reused() {
        let ok = || whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let server = RawServer::start(vec![
            // Transfer-Encoding wins over Content-Length (which would cut the body at 3).
            whole("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            ok(),
            whole("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            ok(),
            // HTTP/1.0 with Transfer-Encoding, even with keep-alive: faulty, closed after.
            whole("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            ok(),
            // `gzip, chunked`: framed by chunked (the data is the coded bytes), reusable.
            whole("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            ok(),
            // Chunked not the final coding: the body runs to the close.
            then_close(whole("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n")),
            ok(),
        ])
        .await;
        let expected = [
            ("hello", 1),
            ("ok", 2),
            ("hello", 2),
            ("ok", 3),
            ("hello", 3),
            ("ok", 4),
            ("hello", 4),
            ("ok", 4),
            ("5\r\nhello\r\n0\r\n\r\n", 4),
            ("ok", 5),
        ];
        for (i, (body, connections)) in expected.into_iter().enumerate() {
            assert_eq!(call(&server).await.unwrap().2, body, "answer {i}");
            assert_eq!(server.connections(), connections, "answer {i}");
        }
    }

    /// Heads and lengths that must be refused rather than guessed at, and the tolerated
    /// variants (bare LF line endings, leading zeros) read right.
    #[tokio::test]
    async fn hostile_heads_and_lengths_are_refused() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let server = RawServer::start(vec![
            whole("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551616\r\n\r\n"),
            whole("HTTP/1.1 200 OK\r\ncontent-length:\r\n\r\n"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 2,\r\n\r\nok"),
            whole("HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok"),
            whole("HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok"),
            // An interim answer with a body: what follows it is no head.
            whole("HTTP/1.1 100 Continue\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            whole(&format!("{head}ffffffffffffffffff\r\nhello\r\n")),
            whole(&format!("{head}-5\r\nhello\r\n0\r\n\r\n")),
            whole(&format!("{head}0x5\r\nhello\r\n0\r\n\r\n")),
            whole(&format!("{head}5\r\nhelloX\r\n0\r\n\r\n")),
        ])
        .await;
        for (i, expected) in [
            "invalid Content-Length `-1`",
            "invalid Content-Length `0x10`",
            "invalid Content-Length `18446744073709551616`",
            "invalid Content-Length ``",
            "invalid Content-Length `2,`",
            "invalid response head",
            "invalid response head",
            "invalid response head",
            "invalid chunk size line `ffffffffffffffffff`",
            "invalid chunk size line `-5`",
            "invalid chunk size line `0x5`",
            "chunk data longer than its declared size",
        ]
        .into_iter()
        .enumerate()
        {
            let err = call(&server).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::MalformedResponse, "{i}: {err}");
            assert!(err.message.contains(expected), "{i}: {expected}: {err}");
        }
        assert_eq!(server.connections(), 12, "no connection with refused framing is reused");

        let server = RawServer::start(vec![
            whole("HTTP/1.1 200 OK\ncontent-length: 002\n\nok"),
            whole("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n000002\nok\n0\n\n"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nend"),
        ])
        .await;
        for body in ["ok", "ok", "end"] {
            assert_eq!(call(&server).await.unwrap().2, body);
        }
        assert_eq!(server.connections(), 1);
    }

    /// Bytes past the end of an answer (a server answering twice, or a spliced response) are
    /// never read as the next call's answer: the connection holding them is closed.
    #[tokio::test]
    async fn bytes_after_the_answer_close_the_connection() {
        let server = RawServer::start(vec![
            whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nWRONG"),
            whole("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nWRONG"),
            whole("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nright"),
        ])
        .await;
        assert_eq!(call(&server).await.unwrap().2, "ok");
        assert_eq!(call(&server).await.unwrap().2, "ok");
        assert_eq!(call(&server).await.unwrap().2, "right");
        assert_eq!(server.connections(), 3);
    }

    /// Random splits and random garbage fed to the body framing: never a panic, never more
    /// data out than went in, and a chunked body of random chunk sizes always decodes to
    /// itself, whatever the read boundaries.
    #[test]
    fn chunked_framing_survives_random_input() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
        };
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEF;= \t\r\n\r\n\r\nxZ-+\"\x00\xff";
        for _ in 0..3000 {
            // A valid body of random chunks, then the start of another answer.
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..next(5) {
                let len = 1 + next(40);
                let data: Vec<u8> = (0..len).map(|_| ALPHABET[next(ALPHABET.len())]).collect();
                wire.extend_from_slice(format!("{len:x}").as_bytes());
                if next(3) == 0 {
                    wire.extend_from_slice(b";ext=1");
                }
                wire.extend_from_slice(if next(4) == 0 { b"\n" } else { b"\r\n" });
                wire.extend_from_slice(&data);
                wire.extend_from_slice(b"\r\n");
                expected.extend_from_slice(&data);
            }
            wire.extend_from_slice(b"0\r\n\r\nHTTP/1.1");
            let mut body = Body::Chunked(Chunk::Size);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut ended = false;
            let mut rest = &wire[..];
            while !rest.is_empty() && !ended {
                let (piece, more) = rest.split_at(1 + next(rest.len()).min(20));
                rest = more;
                buf.extend_from_slice(piece);
                ended = drain(&mut body, &mut buf, &mut out);
            }
            assert!(ended);
            assert_eq!(out, expected);
            buf.extend_from_slice(rest);
            assert_eq!(&buf[..], b"HTTP/1.1");

            // Garbage: whatever it yields, no panic and no more bytes out than in.
            let garbage: Vec<u8> = (0..next(60)).map(|_| ALPHABET[next(ALPHABET.len())]).collect();
            let mut body = Body::Chunked(Chunk::Size);
            let mut buf = BytesMut::from(&garbage[..]);
            let mut total = 0;
            while let Ok(Step::Data(d)) = frame(&mut body, &mut buf) {
                total += d.len();
            }
            assert!(total <= garbage.len());
        }
    }

    /// A server refusing a large body answers before reading it and closes: the write fails
    /// with a reset, and the call returns that answer (here a 413), not a transport error.
    #[tokio::test]
    async fn an_answer_sent_before_the_body_was_read_is_the_calls_answer() {
        let server = RawServer::start(vec![whole("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")]).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin::new(false, "127.0.0.1".into(), listener.local_addr().unwrap().port());
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = sock.read(&mut head).await;
            let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!";
            sock.write_all(answer).await.unwrap();
            // Closed with the body unread: the kernel resets the connection.
        });
        // More than loopback's socket buffers hold, so the write cannot finish.
        let body = vec![b'x'; 32 << 20];
        let head = format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", body.len());
        let mut response = send(&origin, head.as_bytes(), &body, Duration::from_secs(5)).await.unwrap();
        assert_eq!(response.status, 413);
        assert_eq!(&response.chunk().await.unwrap().unwrap()[..], b"big!");
        assert!(response.chunk().await.unwrap().is_none());
        assert!(!response.reusable, "a connection whose request was cut is never reused");
        // A later call to another server is unaffected.
        assert_eq!(call(&server).await.unwrap().2, "ok");
    }

    /// A server that answers 413 and then neither reads nor closes: the write must not wait
    /// for the caller's deadline; the answer ends it and is the call's answer. An interim
    /// answer, or a success, sent early lets the write go on.
    #[tokio::test]
    async fn an_early_refusal_ends_a_write_the_server_does_not_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin::new(false, "127.0.0.1".into(), listener.local_addr().unwrap().port());
        let (held_tx, held) = tokio::sync::oneshot::channel::<TcpStream>();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = sock.read(&mut head).await;
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
            sock.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!").await.unwrap();
            // Held open, unread, until the test ends.
            let _ = held_tx.send(sock);
        });
        let body = vec![b'x'; 32 << 20];
        let head = format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", body.len());
        // A hang guard, not a speed check: without the watch this waits forever.
        let sent = tokio::time::timeout(
            Duration::from_secs(60),
            send(&origin, head.as_bytes(), &body, Duration::from_secs(5)),
        );
        let mut response = sent.await.expect("the write waited on a server that answered").unwrap();
        assert_eq!(response.status, 413);
        assert_eq!(&response.chunk().await.unwrap().unwrap()[..], b"big!");
        assert!(!response.reusable, "a connection whose request was cut is never reused");
        drop(held);

        // Only a final error answer stops the write: refused() reads nothing else as one.
        assert!(refused(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"));
        assert!(refused(b"HTTP/1.1 500 Oops\r\n\r\n"));
        assert!(!refused(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!refused(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!refused(b"HTTP/1.1 413 Payload Too La"));
        assert!(!refused(b"SSH-2.0-OpenSSH_9.6\r\n"));
        assert!(refused(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 No\r\ncontent-length: 0\r\n\r\n"));
        assert!(!refused(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 N"));
    }

    #[test]
    fn origins_hash_and_compare_by_their_fields() {
        let a = Origin::new(true, "api.example.com".into(), 443);
        let b = Origin::new(true, String::from("api.example.com").into(), 443);
        let mut pools: FastMap<Origin, u8> = FastMap::default();
        pools.insert(a.clone(), 1);
        assert_eq!(pools.get(&b), Some(&1));
        assert_eq!(pools.get(&Origin::new(false, "api.example.com".into(), 443)), None);
        assert_eq!(pools.get(&Origin::new(true, "api.example.com".into(), 8443)), None);
    }
}
