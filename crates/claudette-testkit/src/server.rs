//! [`FakeServer`]: a real HTTP/1.1 server on `127.0.0.1` that answers from a script.
//!
//! Connections are served by our own accept loop (hyper's HTTP/1 connection driver around an
//! axum fallback handler) rather than `axum::serve`, because `axum::serve` detaches one task
//! per connection: aborting it would leave held (`hang`) and slow requests alive after the
//! server is dropped. Here every connection task lives in a `JoinSet` owned by the accept task,
//! so aborting that one task closes the listener and every open connection.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::Reply;

/// One request as the fake server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// HTTP method, upper-case (`"POST"`).
    pub method: String,
    /// Request path without the query string (`"/v1/chat/completions"`).
    pub path: String,
    /// The query string without the `?`, if any (`"alt=sse"`).
    pub query: Option<String>,
    /// Headers in arrival order; names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The complete request body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body parsed as JSON, or `Value::Null` if it is empty or not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Script and bookkeeping shared by the handle and the request handler.
#[derive(Debug)]
struct Shared {
    requests: AtomicUsize,
    post_requests: AtomicUsize,
    /// Replies for every non-GET request, first in first out.
    queue: Mutex<VecDeque<Reply>>,
    /// Served for non-GET requests when `queue` is empty.
    default: Mutex<Reply>,
    /// Replies for GET/HEAD requests, first in first out.
    get_queue: Mutex<VecDeque<Reply>>,
    /// Model ids listed by the built-in model-list GET endpoints.
    models: Mutex<Vec<String>>,
    received: Mutex<Vec<Received>>,
}

/// A fake LLM provider listening on `127.0.0.1:<random port>`.
///
/// Every non-GET request (any path) takes the next [`Reply`] queued with [`FakeServer::push`],
/// or the default reply ([`FakeServer::set_default`], initially `Reply::openai_text("ok")`)
/// when the queue is empty. GET requests take replies queued with [`FakeServer::push_get`];
/// when none is queued they get built-in model lists (see [`FakeServer::push_get`]).
///
/// Requests are counted and recorded the moment they arrive, before any scripted delay, so
/// tests can assert on them while a reply is still pending.
///
/// The server runs on the current tokio runtime until the value is dropped; dropping it closes
/// the listener and every open connection, including requests held by [`Reply::hang`]. On a
/// current-thread runtime (plain `#[tokio::test]`) it only makes progress while the test is
/// awaiting, so drive it with an async client, never a blocking one on the same thread.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Starts a server on `127.0.0.1:0`. Must be called inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// If no local port can be bound, which only happens on a broken test machine; use
    /// [`FakeServer::try_start`] to handle that case.
    // This is test-support code: a test cannot proceed without its fake provider, and a panic
    // with a clear message is the most useful failure there.
    #[allow(clippy::expect_used)]
    pub async fn start() -> FakeServer {
        FakeServer::try_start().await.expect("claudette-testkit: cannot bind a FakeServer on 127.0.0.1:0")
    }

    /// Starts a server on `127.0.0.1:0`, reporting bind errors. Must be called inside a tokio
    /// runtime.
    pub async fn try_start() -> io::Result<FakeServer> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: AtomicUsize::new(0),
            post_requests: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::openai_text("ok")),
            get_queue: Mutex::new(VecDeque::new()),
            models: Mutex::new(vec![crate::shapes::FAKE_MODEL.to_owned()]),
            received: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let task = tokio::spawn(accept_loop(listener, router));
        Ok(FakeServer { addr, shared, task })
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the `base_url` an OpenAI-style client expects.
    pub fn v1_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// Queues a reply for the next non-GET request (any path). Replies are served in order.
    pub fn push(&self, reply: Reply) {
        self.shared.queue.lock().push_back(reply);
    }

    /// Queues `n` copies of a reply.
    pub fn push_n(&self, n: usize, reply: Reply) {
        let mut queue = self.shared.queue.lock();
        queue.extend(std::iter::repeat_n(reply, n));
    }

    /// Sets the reply served to non-GET requests when the queue is empty
    /// (initially `Reply::openai_text("ok")`).
    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock() = reply;
    }

    /// Queues a reply for the next GET request.
    ///
    /// With no GET reply queued, GETs are answered from [`FakeServer::set_models`]:
    /// - a path under `/v1beta/` ending in `/models`: a Gemini list
    ///   `{"models":[{"name":"models/<id>",…}]}`;
    /// - any other path ending in `/models`: an OpenAI list
    ///   `{"object":"list","data":[{"id","object":"model",…}]}` (whose entries also carry
    ///   Anthropic's `type`/`display_name`, so it serves `GET /v1/models` for both);
    /// - a path ending in `/api/tags`: an Ollama tag list `{"models":[{"name","model",…}]}`;
    /// - `/health`, `/healthz`: `{"status":"ok"}`; `/api/version`: `{"version":…}`;
    /// - anything else: 404.
    pub fn push_get(&self, reply: Reply) {
        self.shared.get_queue.lock().push_back(reply);
    }

    /// The model ids listed by the built-in GET endpoints (initially `["fake-model"]`).
    pub fn set_models(&self, models: &[&str]) {
        *self.shared.models.lock() = models.iter().map(|m| (*m).to_owned()).collect();
    }

    /// All requests received so far, counted on arrival (before any delay), any method.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// POST requests received so far.
    pub fn post_requests(&self) -> usize {
        self.shared.post_requests.load(Ordering::SeqCst)
    }

    /// Replies still queued for non-GET requests.
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().len()
    }

    /// Every request received so far, in arrival order. A request is recorded once its body has
    /// been read, before any scripted delay.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().clone()
    }

    /// The body of the most recent request whose body is JSON.
    pub fn last_json(&self) -> Option<Value> {
        let received = self.shared.received.lock();
        received.iter().rev().find_map(|r| serde_json::from_slice(&r.body).ok())
    }
}

/// Listener and connection tasks, in this order so that, when the accept task is aborted, the
/// listener closes before the connections do: once a client sees its connection drop, new
/// connections are already refused.
struct Connections {
    listener: TcpListener,
    tasks: JoinSet<()>,
}

async fn accept_loop(listener: TcpListener, router: Router) {
    let mut conns = Connections { listener, tasks: JoinSet::new() };
    loop {
        tokio::select! {
            accepted = conns.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Frames and SSE events are small; do not let Nagle hold them back.
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(router.clone());
                    conns.tasks.spawn(async move {
                        // Errors here are client disconnects and scripted cuts; nothing to do.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Accept errors (e.g. out of file descriptors) are transient: back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.tasks.join_next(), if !conns.tasks.is_empty() => {}
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let is_get = parts.method == Method::GET || parts.method == Method::HEAD;

    // Count and pick the reply on arrival, so counting is exact and the n-th request gets the
    // n-th queued reply even when bodies arrive out of order.
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if parts.method == Method::POST {
        shared.post_requests.fetch_add(1, Ordering::SeqCst);
    }
    let reply = if is_get {
        shared.get_queue.lock().pop_front()
    } else {
        let next = shared.queue.lock().pop_front();
        Some(next.unwrap_or_else(|| shared.default.lock().clone()))
    };
    let reply = match reply {
        Some(reply) => reply,
        None => builtin_get(parts.uri.path(), &shared.models.lock()),
    };

    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("cannot read request body: {e}")).into_response(),
    };
    shared.received.lock().push(Received {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    });

    if reply.hang {
        // Held until the server is dropped, which aborts this connection's task.
        std::future::pending::<()>().await;
    }
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    respond(reply)
}

fn respond(reply: Reply) -> Response {
    let Ok(status) = StatusCode::from_u16(reply.status) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("testkit: invalid scripted status {}", reply.status),
        )
            .into_response();
    };
    let body = if reply.is_streamed() {
        Body::from_stream(body_stream(reply.chunks.clone(), reply.gap, reply.cut_after))
    } else {
        Body::from(reply.chunks.concat())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in &reply.headers {
        let (Ok(name), Ok(value)) =
            (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str()))
        else {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("testkit: invalid scripted header {name:?}"))
                .into_response();
        };
        response.headers_mut().append(name, value);
    }
    response
}

/// The error a cut body ends with; hyper aborts the chunked response when it sees it.
fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "claudette-testkit: scripted cut_after")
}

struct BodyState {
    chunks: std::vec::IntoIter<Bytes>,
    /// Chunks still allowed before the end (or the cut).
    remaining: usize,
    cut: bool,
    gap: Option<Duration>,
    started: bool,
    finished: bool,
}

/// The body of a streamed reply: the chunks with `gap` between them, ending cleanly or, with a
/// cut, with an error after `cut_after` chunks.
fn body_stream(
    chunks: Vec<Bytes>,
    gap: Option<Duration>,
    cut_after: Option<usize>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let remaining = cut_after.map_or(chunks.len(), |k| k.min(chunks.len()));
    let state = BodyState {
        chunks: chunks.into_iter(),
        remaining,
        cut: cut_after.is_some(),
        gap,
        started: false,
        finished: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        let has_next = st.remaining > 0;
        if !has_next && !st.cut {
            return None;
        }
        if let (true, Some(gap)) = (st.started, st.gap) {
            tokio::time::sleep(gap).await;
        }
        st.started = true;
        if has_next {
            if let Some(chunk) = st.chunks.next() {
                st.remaining -= 1;
                return Some((Ok(chunk), st));
            }
        }
        st.finished = true;
        // Return Pending once before failing: hyper flushes what it has buffered (the headers
        // and the chunks already sent) while the body is pending, so the client really
        // receives the first `k` chunks before the connection is aborted.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((Err(cut_error()), st))
    })
}

/// The answer to an unscripted GET.
fn builtin_get(path: &str, models: &[String]) -> Reply {
    let trimmed = path.trim_end_matches('/');
    if trimmed.ends_with("/models") && trimmed.contains("/v1beta/") {
        let list: Vec<Value> = models
            .iter()
            .map(|m| {
                json!({
                    "name": format!("models/{m}"),
                    "version": "001",
                    "displayName": m,
                    "inputTokenLimit": 1_048_576,
                    "outputTokenLimit": 8192,
                    "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]
                })
            })
            .collect();
        Reply::json(200, json!({"models": list}))
    } else if trimmed.ends_with("/models") {
        let list: Vec<Value> = models
            .iter()
            .map(|m| {
                json!({
                    "id": m, "object": "model", "created": 1_700_000_000, "owned_by": "claudette-testkit",
                    "type": "model", "display_name": m, "created_at": "2024-01-01T00:00:00Z"
                })
            })
            .collect();
        Reply::json(
            200,
            json!({"object": "list", "data": list, "has_more": false,
                   "first_id": models.first(), "last_id": models.last()}),
        )
    } else if trimmed.ends_with("/api/tags") {
        let list: Vec<Value> = models
            .iter()
            .map(|m| {
                json!({
                    "name": m, "model": m, "modified_at": "2024-01-01T00:00:00Z", "size": 0,
                    "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    "details": {"format": "gguf", "family": "fake", "families": ["fake"],
                                "parameter_size": "1B", "quantization_level": "Q4_0"}
                })
            })
            .collect();
        Reply::json(200, json!({"models": list}))
    } else if trimmed.ends_with("/health") || trimmed.ends_with("/healthz") {
        Reply::json(200, json!({"status": "ok"}))
    } else if trimmed.ends_with("/api/version") {
        Reply::json(200, json!({"version": "0.0.0-claudette-testkit"}))
    } else {
        Reply::json(
            404,
            json!({"error": {"message": format!("no scripted GET reply for {path}"),
                                          "type": "invalid_request_error", "param": null, "code": null}}),
        )
    }
}
