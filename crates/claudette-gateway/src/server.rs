//! The accept loop and graceful shutdown.
//!
//! `axum::serve` detaches one task per connection, so after its graceful shutdown times out the
//! stragglers keep running. Here every connection task lives in a `JoinSet` owned by this loop:
//! shutdown closes the listener first (new connections are refused), asks every connection to
//! finish its in-flight request and close, waits up to the grace period, then aborts what is
//! left, so `serve` returning means nothing of the server is still running.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A client must send its request headers within this time (S-10: slow-loris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // SSE events are small; Nagle would hold them back.
                    let _ = stream.set_nodelay(true);
                    // Handlers see the peer address (admin guard, failed-auth limiter) as
                    // axum's `ConnectInfo`, the same extension `into_make_service_with_connect_info` sets.
                    let app = app.clone();
                    let service = TowerToHyperService::new(tower::service_fn(
                        move |mut req: axum::http::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                            tower::ServiceExt::oneshot(app.clone(), req)
                        },
                    ));
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let mut stop = stop_rx.clone();
                    tasks.spawn(async move {
                        tokio::pin!(conn);
                        tokio::select! {
                            // Errors here are client disconnects and protocol errors: nothing to do.
                            _ = conn.as_mut() => {}
                            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and similar: transient. Back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!("a connection task panicked");
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = tasks.len();
    if open > 0 {
        tracing::info!(
            connections = open,
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "draining connections"
        );
    }
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace period over; closing remaining connections"
        );
        tasks.shutdown().await;
    }
    Ok(())
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
