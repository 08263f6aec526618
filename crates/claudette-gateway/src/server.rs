//! The accept loop and graceful shutdown.
//!
//! `axum::serve` detaches one task per connection, so after its graceful shutdown times out the
//! stragglers keep running. Here every connection task lives in a `JoinSet` owned by this loop:
//! shutdown closes the listener first (new connections are refused), asks every connection to
//! finish its in-flight request and close, waits up to the grace period, then aborts what is
//! left, so `serve` returning means nothing of the server is still running.
//!
//! A connection whose last answer left a request body unread is closed the way nginx's
//! `lingering_close` does it; see [`linger`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::body::Unread;
use crate::front::Front;

/// Serves `listener` until `shutdown`, then drains for up to `limits.grace`.
///
/// With `workers` = 0, connections run on the caller's runtime. Otherwise on `workers`
/// threads with a single-threaded runtime each, connections dealt round-robin: a request
/// then runs start to end on one thread, upstream call included (the HTTP layer keeps one
/// connection pool per runtime). A work-stealing runtime moves tasks between threads and
/// wakes idle ones to look for work; measured on 2 cores, that cost the gateway ~20 % more
/// CPU per request at low load (`perf stat` over `bench_gateway rate`) with no gain at
/// saturation. The accept loop stays on the caller's runtime.
pub(crate) async fn serve(
    listener: TcpListener,
    front: Front,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnLimits,
    workers: usize,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut local = Connections::new(front.clone(), stop_rx.clone(), limits.header_read);
    let mut pool = Vec::with_capacity(workers);
    for i in 0..workers {
        pool.push(Worker::start(i, front.clone(), stop_rx.clone(), limits)?);
    }
    let mut next = 0usize;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // SSE events are small; Nagle would hold them back.
                    let _ = stream.set_nodelay(true);
                    let handed = if pool.is_empty() {
                        Some(stream)
                    } else {
                        next = (next + 1) % pool.len();
                        pool[next].hand(stream, peer)
                    };
                    // No workers, or the chosen one is gone: serve it here.
                    if let Some(stream) = handed {
                        local.spawn(stream, peer);
                    }
                }
                Err(e) => {
                    // Out of file descriptors and similar: transient. Back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = local.reap_one(), if !local.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = local.len();
    if open > 0 || !pool.is_empty() {
        tracing::info!(
            connections_here = open,
            workers = pool.len(),
            grace_ms = u64::try_from(limits.grace.as_millis()).unwrap_or(u64::MAX),
            "draining connections"
        );
    }
    local.drain(limits.grace).await;
    for worker in pool {
        worker.finished().await;
    }
    Ok(())
}

/// The time limits every connection is served under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// For a request head, counted from the end of the previous answer (S-10).
    pub(crate) header_read: Duration,
    /// For in-flight requests after shutdown was asked for.
    pub(crate) grace: Duration,
}

/// The connections of one runtime: every task is owned here, so a drain really ends them.
struct Connections {
    tasks: JoinSet<()>,
    stop: watch::Receiver<bool>,
    builder: hyper::server::conn::http1::Builder,
    front: Front,
}

impl Connections {
    /// The one kind of answer that carries no request id: hyper's own, to a request head it
    /// cannot parse, written before any service is called. 400 for a malformed request line
    /// or header, 414 for a URI over 65,534 bytes, 431 for a head larger than the read buffer
    /// (`max_buf_size`, about 400 KiB by default) or with more than `max_headers` (100)
    /// headers. hyper 1.x builds that answer from the status alone (`Server::on_error`): a
    /// status line, `connection: close`, `content-length: 0` and `date`, no body; its
    /// `http1::Builder` has no option or hook to add headers or a body. The client's own id could not be echoed
    /// anyway: it is in the head that failed to parse. Answering 431 here instead would take
    /// a larger buffer plus a head-size check in the front on every request (work on the hot
    /// path for the rare oversized head), and a head over the larger buffer would still get
    /// hyper's answer; a 400 or 414 can only come from hyper. So these go out as hyper writes
    /// them, and [`linger`] makes sure the client reads them rather than a reset.
    fn new(front: Front, stop: watch::Receiver<bool>, header_read: Duration) -> Connections {
        let mut builder = hyper::server::conn::http1::Builder::new();
        // `writev(false)`: hyper copies head and body into one buffer and writes it whole.
        // Gateway answers are small (a JSON body, a few SSE events at a time); one flat write
        // measured 1-3 µs of CPU cheaper per request than hyper's queue of slices.
        builder.timer(TokioTimer::new()).header_read_timeout(header_read).keep_alive(true).writev(false);
        Connections { tasks: JoinSet::new(), stop, builder, front }
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn spawn(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Handlers see the peer address (admin guard, failed-auth limiter) as axum's
        // `ConnectInfo`, the same extension `into_make_service_with_connect_info` sets.
        let front = self.front.clone();
        let unread = Unread::default();
        let watch = unread.clone();
        let service = hyper::service::service_fn(move |req| front.call(req, peer, &watch));
        let mut conn = self.builder.serve_connection(TokioIo::new(stream), service);
        let mut stop = self.stop.clone();
        self.tasks.spawn(async move {
            let served = tokio::select! {
                served = &mut conn => served,
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                    (&mut conn).await
                }
            };
            // Other errors are client disconnects and a head that timed out (the slow loris
            // gets no answer, so no lingering either): nothing to deliver.
            let answered_unread = unread.get() || served.as_ref().is_err_and(hyper::Error::is_parse);
            if answered_unread {
                linger(conn.into_parts().io.into_inner()).await;
            }
        });
    }

    /// Waits for one connection to end (pending when there are none).
    async fn reap_one(&mut self) {
        if let Some(Err(e)) = self.tasks.join_next().await {
            if e.is_panic() {
                tracing::error!("a connection task panicked");
            }
        }
    }

    /// After stop was signalled: lets connections finish for up to `grace`, then closes the rest.
    async fn drain(mut self, grace: Duration) {
        let drained =
            tokio::time::timeout(grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                connections = self.tasks.len(),
                "shutdown grace period over; closing remaining connections"
            );
            self.tasks.shutdown().await;
        }
    }
}

/// Lingering in all: 10 s covers uploading a body of the default 10 MiB limit at 10 Mbit/s,
/// the slow end of what API clients have. A client trickling bytes is cut off then, with a
/// reset, deliberately. (Apache and nginx allow 30 s.)
const LINGER_TIME: Duration = Duration::from_secs(10);
/// Lingering without a byte from the client: one that sends nothing for 2 s has finished, is
/// reading the answer, or is gone. (Apache waits 2 s a read, nginx 5 s.)
const LINGER_IDLE: Duration = Duration::from_secs(2);

/// Ends a connection whose last answer left request data unread, like nginx's
/// `lingering_close`.
///
/// When an answer is decided from the head alone (a wrong key, a limit, an announced size
/// over the limit, hyper's own 400/431), the client may still be uploading. Closing a socket
/// with unread data makes the kernel send a reset instead of a clean end: a client that
/// uploads its whole body before reading (the official Python SDKs do) fails on its next
/// write, and some systems throw away the answer already received. The SDKs then report a
/// connection error and retry, hiding a wrong key. So the write side is shut after the answer
/// (the client sees it end), and what the client still sends is read into a small buffer and
/// dropped, never kept, until it stops or [`LINGER_IDLE`] or [`LINGER_TIME`] is reached.
/// There is no byte cap: those bytes arrive whether they are read or not, discarding them
/// costs a copy, and the time bounds it. Lingering connections count as open at shutdown, so
/// the grace period bounds them too.
async fn linger(mut stream: TcpStream) {
    // hyper has shut the write side after a complete answer already, but not after its own
    // error answers. A second shutdown is harmless.
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        let wait = (tokio::time::Instant::now() + LINGER_IDLE).min(deadline);
        match tokio::time::timeout_at(wait, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => {}
            // The client closed, the connection broke, or a bound was reached.
            _ => return,
        }
    }
}

/// A serving thread with its own single-threaded runtime.
struct Worker {
    incoming: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    done: oneshot::Receiver<()>,
}

impl Worker {
    fn start(
        i: usize,
        front: Front,
        stop: watch::Receiver<bool>,
        limits: ConnLimits,
    ) -> std::io::Result<Worker> {
        let (incoming, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
        let (done_tx, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(format!("claudette-worker-{i}")).spawn(move || {
            runtime.block_on(async move {
                let mut stop_signal = stop;
                // This thread's connections wait on a stop signal of their own, passed on from
                // the server's: every wake of a connection polls it, and a `watch` shared by
                // all threads would take a lock that every core writes, on every wake.
                let (local_stop, local_rx) = watch::channel(false);
                let mut conns = Connections::new(front, local_rx, limits.header_read);
                loop {
                    tokio::select! {
                        biased;
                        _ = stop_signal.wait_for(|s| *s) => break,
                        handed = rx.recv() => match handed {
                            // Registered with this thread's reactor from here on.
                            Some((std, peer)) => match TcpStream::from_std(std) {
                                Ok(stream) => conns.spawn(stream, peer),
                                Err(e) => tracing::warn!(error = %e, "cannot adopt a connection"),
                            },
                            None => break,
                        },
                        () = conns.reap_one(), if !conns.is_empty() => {}
                    }
                }
                let _ = local_stop.send(true);
                conns.drain(limits.grace).await;
            });
            let _ = done_tx.send(());
        })?;
        Ok(Worker { incoming, done })
    }

    /// Gives `stream` to this worker; hands it back if the worker is gone.
    fn hand(&self, stream: TcpStream, peer: SocketAddr) -> Option<TcpStream> {
        let std = match stream.into_std() {
            Ok(std) => std,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a worker");
                return None;
            }
        };
        match self.incoming.send((std, peer)) {
            Ok(()) => None,
            Err(mpsc::error::SendError((std, _))) => TcpStream::from_std(std).ok(),
        }
    }

    /// Resolves when the worker's thread has drained and stopped (or died).
    async fn finished(self) {
        drop(self.incoming);
        let _ = self.done.await;
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). If a handler cannot be installed, that signal is
/// simply not awaited (the other still works; the process can always be killed).
pub(crate) async fn termination_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}
