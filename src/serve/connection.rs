//! One connection: served by hyper until it ends, closed if it sends no request in
//! time, drained on shutdown; its I/O holds its place under the cap.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::WriteTimeout;
use crate::error::BoxError;

/// Serves one connection until it ends, is closed by the first-request deadline, or
/// finishes after a graceful shutdown.
pub(super) async fn serve_connection<S, B>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: Held,
    peer: SocketAddr,
    service: S,
    first_request_timeout: Option<Duration>,
    shutdown: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let _open = crate::metrics::connection_open();
    let requested = Arc::new(Notify::new());
    let service = PerConnection {
        inner: TowerToHyperService::new(service),
        peer,
        requested: requested.clone(),
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let first_request = requested.notified();
    tokio::pin!(first_request);
    // `sleep` takes a duration too long to add to now as "never".
    let deadline = tokio::time::sleep(first_request_timeout.unwrap_or(Duration::MAX));
    tokio::pin!(deadline);
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let mut waiting = first_request_timeout.is_some();
    let mut draining = false;
    loop {
        tokio::select! {
            // A request that came counts before the deadline, and the deadline before
            // whatever else ended the connection meanwhile.
            biased;
            () = &mut first_request, if waiting => waiting = false,
            () = &mut deadline, if waiting => {
                crate::metrics::connection_timed_out("first_request");
                tracing::debug!(%peer, "connection closed: no request before the deadline");
                return;
            }
            result = connection.as_mut() => {
                if let Err(error) = result {
                    crate::metrics::connection_error(&*error);
                    tracing::debug!(%peer, %error, "connection closed with an error");
                }
                return;
            }
            () = &mut cancelled, if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The service of one connection: the client's address goes into each request, and the
/// first request stops the first-request deadline.
struct PerConnection<S> {
    inner: TowerToHyperService<S>,
    peer: SocketAddr,
    requested: Arc<Notify>,
}

impl<S> hyper::service::Service<Request<Incoming>> for PerConnection<S>
where
    TowerToHyperService<S>: hyper::service::Service<Request<Incoming>>,
{
    type Response =
        <TowerToHyperService<S> as hyper::service::Service<Request<Incoming>>>::Response;
    type Error = <TowerToHyperService<S> as hyper::service::Service<Request<Incoming>>>::Error;
    type Future = <TowerToHyperService<S> as hyper::service::Service<Request<Incoming>>>::Future;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        self.requested.notify_one();
        self.inner.call(request)
    }
}

/// An accepted connection with its place under the cap, which is given back when the
/// socket is closed (also after an upgrade, which moves the connection elsewhere).
pub(super) struct Held {
    pub(super) io: WriteTimeout<TcpStream>,
    pub(super) _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
