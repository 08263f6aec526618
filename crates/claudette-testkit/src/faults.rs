//! Transport faults below HTTP: a refused port (F-01), a listener that accepts and never
//! answers (F-02), and one that resets the connection before any response byte (F-05).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Binds an ephemeral port on `127.0.0.1`, the failure message for when even that fails.
const BIND_FAILED: &str = "claudette-testkit: cannot bind 127.0.0.1:0";

// Test-support code: a fault server that cannot bind leaves the test nothing to test, so a
// panic with a clear message is the most useful failure.
#[allow(clippy::expect_used)]
async fn bind_local() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await.expect(BIND_FAILED);
    let addr = listener.local_addr().expect(BIND_FAILED);
    (listener, addr)
}

/// `http://127.0.0.1:PORT` for a port nothing listens on, so connecting is refused (F-01).
///
/// The port is obtained by binding an ephemeral port and closing the listener at once; the
/// kernel does not hand the same ephemeral port out again right away, so it stays closed for
/// the duration of a test.
pub async fn closed_port_url() -> String {
    let (listener, addr) = bind_local().await;
    drop(listener);
    format!("http://{addr}")
}

/// Accepts TCP connections and never reads or answers them (F-02): a client waits for the first
/// byte until its own timeout fires. Dropping the server closes the listener and every held
/// connection.
#[derive(Debug)]
pub struct HoldServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HoldServer {
    /// Starts listening on `127.0.0.1:0`. Must be called inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// If no local port can be bound.
    pub async fn start() -> HoldServer {
        let (listener, addr) = bind_local().await;
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            // Held streams are never read or written; they close when the task is aborted.
            let mut held: Vec<TcpStream> = Vec::new();
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        HoldServer { addr, connections, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HoldServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts TCP connections, reads the request head, then resets the connection (RST via
/// `SO_LINGER 0`) before sending any response byte (F-05). Dropping it stops listening.
#[derive(Debug)]
pub struct ResetServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ResetServer {
    /// Starts listening on `127.0.0.1:0`. Must be called inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// If no local port can be bound.
    pub async fn start() -> ResetServer {
        let (listener, addr) = bind_local().await;
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            tasks.spawn(reset_after_head(stream));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
        });
        ResetServer { addr, connections, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ResetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Upper bound on the request head we wait for; a larger head is reset just the same.
const MAX_HEAD: usize = 64 * 1024;

async fn reset_after_head(mut stream: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    // Wait for the whole request head so the client is past "sending" and waiting for the
    // response when the reset arrives, which is the failure F-05 describes.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    // SO_LINGER 0 makes close() send RST instead of FIN. Zero linger never blocks on close.
    let _ = stream.set_zero_linger();
    drop(stream);
}
