//! Accepting connections with bounds a slow or idle client cannot outwait.
//!
//! `axum::serve` gives hyper no timer, so a client that sends a request line
//! and then nothing holds its connection, and a file descriptor, forever.
//! Here every connection has a header read timeout (which also ends idle
//! keep-alive connections, since hyper arms it whenever it waits for a
//! request head), and the number of open connections is capped: past the
//! cap a new connection is closed at once, so evaluations keep their file
//! descriptors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Connection bounds.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a request's headers, and for the next request on an
    /// idle keep-alive connection.
    pub header_read_timeout: Duration,
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
}

/// The most connections the process's file-descriptor limit leaves room
/// for, keeping 64 for policy files, plugins and logs.
pub fn fd_room() -> usize {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| {
            usize::try_from(n).unwrap_or(usize::MAX).saturating_sub(64)
        })
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to
/// `grace` for open requests to finish.
pub(super) async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<arc_swap::ArcSwap<tokio_rustls::TlsAcceptor>>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    on_refused: impl Fn() + Send + 'static,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of descriptors or a connection reset before
                        // accept: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                    on_refused();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(
                    app.clone()
                        .map_request(|req: hyper::Request<Incoming>| req.map(Body::new)),
                );
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .keep_alive(true);
                match &tls {
                    None => {
                        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            let _permit = permit;
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Some(acceptor) => {
                        // The handshake gets the header timeout too: a client
                        // that opens TLS and stalls is cut off like one that
                        // sends half a request line.
                        let acceptor = acceptor.load_full();
                        let watcher = graceful.watcher();
                        let timeout = limits.header_read_timeout;
                        tokio::spawn(async move {
                            let _permit = permit;
                            let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return;
                                }
                            };
                            let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "grace period over; exiting with requests in flight"
        );
    }
}
