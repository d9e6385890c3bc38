//! The accept loop: HTTP/1.1 connections with a cap on how many are open at once,
//! a header-read timeout (a client that opens a connection and sends half a
//! request is dropped, so it cannot hold a slot) and an idle timeout (a kept-alive
//! connection with no traffic is closed). At the cap the loop stops accepting and
//! new connections wait in the kernel's backlog until a slot frees, instead of the
//! process running out of file descriptors. Each request carries the peer's
//! address (for the unauthenticated limiter).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Limits of the accept loop (from [`crate::ApiConfig`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    pub connections_max: usize,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
}

/// Serves `app` until `shutdown` resolves, then lets in-flight requests finish
/// (each connection closes after its current request).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a reset before accept: wait, then go on.
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            connection(stream, peer, app, limits, stopped).await;
            drop(slot);
        });
    }
    let _ = stop.send(true);
    // Every slot back means every connection closed.
    let all = u32::try_from(limits.connections_max.max(1)).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let last_active_ms = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        started,
        last_active_ms: last_active_ms.clone(),
    });
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms.max(1)));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = Duration::from_millis(limits.idle_timeout_ms.max(1));
    let mut closing = false;
    loop {
        let since_active = started.elapsed().saturating_sub(Duration::from_millis(
            last_active_ms.load(Ordering::Relaxed),
        ));
        let check_in = idle
            .saturating_sub(since_active)
            .max(Duration::from_millis(10));
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stopped.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(check_in) => {
                let quiet = started.elapsed().saturating_sub(Duration::from_millis(
                    last_active_ms.load(Ordering::Relaxed),
                ));
                if quiet >= idle {
                    // No bytes either way for the idle timeout: a request in flight
                    // writes its answer, so this is a kept-alive or stalled client.
                    return;
                }
            }
        }
    }
}

/// A stream that notes when bytes last moved, for the idle timeout.
struct Tracked {
    inner: TcpStream,
    started: Instant,
    /// Milliseconds after `started` of the last read or write.
    last_active_ms: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
