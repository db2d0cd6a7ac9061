//! One connection: its first request head read here; a plain HTTP/1.1 request for an
//! event stream served here, with nothing of hyper held while the stream lasts; anything
//! else (and every byte read) handed to hyper. Closed if it sends no request in time,
//! drained on shutdown; its I/O holds its place under the cap.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::head::{self, Sniffed};
use super::request;
use super::stream::{self, Ended, Writer};
use crate::WriteTimeout;
use crate::error::BoxError;

/// What every connection of a server shares.
pub(super) struct Settings {
    pub(super) builder: auto::Builder<TokioExecutor>,
    pub(super) first_request_timeout: Option<Duration>,
    pub(super) header_read_timeout: Option<Duration>,
    pub(super) shutdown: CancellationToken,
}

/// Serves one connection until it ends, is closed by the first-request deadline, or
/// finishes after a graceful shutdown.
pub(super) async fn serve_connection<S, B>(
    settings: Arc<Settings>,
    mut io: Held,
    peer: SocketAddr,
    service: S,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let deadline = settings
        .first_request_timeout
        .and_then(|timeout| Instant::now().checked_add(timeout));
    let sniffed = {
        let read = head::read_head(&mut io, settings.header_read_timeout);
        tokio::select! {
            // The deadline before whatever else came meanwhile.
            biased;
            () = sleep_until(deadline), if deadline.is_some() => {
                tracing::debug!(%peer, "connection closed: no request before the deadline");
                return;
            }
            sniffed = read => sniffed,
            // Nothing asked yet: closed at once, as hyper closes an idle connection.
            () = settings.shutdown.cancelled() => return,
        }
    };
    let head = match sniffed {
        Sniffed::Stream(head) => head,
        Sniffed::Hyper(read) => {
            io.rewind = read;
            return Box::pin(with_hyper(&settings, io, peer, service, deadline, None)).await;
        }
        Sniffed::Closed => return,
        Sniffed::TimedOut => {
            tracing::debug!(
                %peer,
                "connection closed with an error: read header from client timeout"
            );
            return;
        }
    };
    let Some(mut request) = Box::pin(request::parse(head.clone())).await else {
        io.rewind = head;
        return Box::pin(with_hyper(&settings, io, peer, service, deadline, None)).await;
    };
    request.extensions_mut().insert(peer);
    let response = match Box::pin(call(service.clone(), request)).await {
        Ok(response) => response,
        Err(error) => {
            // hyper closes the connection without an answer.
            let error: BoxError = error.into();
            tracing::debug!(%peer, %error, "connection closed: the service failed");
            return;
        }
    };
    let (parts, body) = response.into_parts();
    let Some((response_head, keep_alive)) = stream::encode_head(&parts, &body) else {
        // Not an event stream: hyper reads the same head again and writes this answer.
        io.rewind = head;
        let response = Response::from_parts(parts, body);
        return Box::pin(with_hyper(
            &settings,
            io,
            peer,
            service,
            None,
            Some(response),
        ))
        .await;
    };
    // A task of its own, which holds the socket, the body and what is left to write, and
    // nothing of the request or of this task (which ends here).
    tokio::spawn(StreamTask {
        io: Some(io),
        body,
        writer: Writer::new(response_head),
        keep_alive,
        closing: false,
        settings,
        peer,
        service: Some(service),
    });
}

pin_project! {
    /// An event stream that `serve` writes itself, in a task of its own; once it ends,
    /// hyper serves the connection on if it may be kept alive.
    struct StreamTask<S, B> {
        io: Option<Held>,
        #[pin]
        body: B,
        writer: Writer,
        keep_alive: bool,
        // The stream ended and the connection is being shut down.
        closing: bool,
        settings: Arc<Settings>,
        peer: SocketAddr,
        service: Option<S>,
    }
}

impl<S, B> Future for StreamTask<S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(());
        };
        if !*this.closing {
            match std::task::ready!(this.writer.poll(io, this.body.as_mut(), cx)) {
                Ended::Finished(after)
                    if *this.keep_alive && !this.settings.shutdown.is_cancelled() =>
                {
                    let mut io = this.io.take().expect("the connection is here");
                    io.rewind = after;
                    let settings = this.settings.clone();
                    let service = this.service.take().expect("the service is here");
                    let peer = *this.peer;
                    tokio::spawn(async move {
                        with_hyper(&settings, io, peer, service, None, None).await;
                    });
                    return Poll::Ready(());
                }
                Ended::Finished(_) => *this.closing = true,
                Ended::Closed => return Poll::Ready(()),
            }
        }
        // Closed after the last chunk, as hyper closes a connection not kept alive.
        let _ = std::task::ready!(Pin::new(io).poll_shutdown(cx));
        this.io.take();
        Poll::Ready(())
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Calls `service` with `request` as hyper-util's `TowerToHyperService` does.
async fn call<S>(mut service: S, request: Request<Incoming>) -> Result<S::Response, S::Error>
where
    S: Service<Request<Incoming>>,
{
    poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(request).await
}

/// hyper serves the connection (starting with the bytes in `io.rewind`) until it ends,
/// is closed by the first-request deadline (if no request came yet: `deadline`), or
/// finishes after a graceful shutdown. With `prepared`, that is the answer to the first
/// request hyper reads (already answered by the service).
async fn with_hyper<S, B>(
    settings: &Settings,
    io: Held,
    peer: SocketAddr,
    service: S,
    deadline: Option<Instant>,
    prepared: Option<Response<B>>,
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
        prepared: Mutex::new(prepared),
    };
    let connection = settings
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let first_request = requested.notified();
    tokio::pin!(first_request);
    let mut waiting = deadline.is_some();
    let deadline = sleep_until(deadline);
    tokio::pin!(deadline);
    let cancelled = settings.shutdown.cancelled();
    tokio::pin!(cancelled);
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

/// The service of one connection served by hyper: the client's address goes into each
/// request, the first request stops the first-request deadline, and a response already
/// made for the first request is its answer.
struct PerConnection<S, B> {
    inner: TowerToHyperService<S>,
    peer: SocketAddr,
    requested: Arc<Notify>,
    prepared: Mutex<Option<Response<B>>>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for PerConnection<S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = PerConnectionFuture<S, B>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(response) = prepared {
            return PerConnectionFuture::Prepared {
                response: Some(response),
            };
        }
        request.extensions_mut().insert(self.peer);
        self.requested.notify_one();
        PerConnectionFuture::Inner {
            future: hyper::service::Service::call(&self.inner, request),
        }
    }
}

pin_project! {
    #[project = PerConnectionProj]
    enum PerConnectionFuture<S, B>
    where
        S: Service<Request<Incoming>>,
    {
        Prepared { response: Option<Response<B>> },
        Inner {
            #[pin]
            future: TowerToHyperServiceFuture<S, Request<Incoming>>,
        },
    }
}

impl<S, B> Future for PerConnectionFuture<S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Output = Result<Response<B>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PerConnectionProj::Prepared { response } => Poll::Ready(Ok(response
                .take()
                .expect("PerConnectionFuture polled after completion"))),
            PerConnectionProj::Inner { future } => future.poll(cx),
        }
    }
}

/// An accepted connection with its place under the cap, which is given back when the
/// socket is closed (also after an upgrade, which moves the connection elsewhere).
pub(super) struct Held {
    pub(super) io: WriteTimeout<TcpStream>,
    pub(super) _permit: OwnedSemaphorePermit,
    /// Bytes read already, that hyper reads first.
    pub(super) rewind: Bytes,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.rewind.is_empty() {
            let n = self.rewind.len().min(buf.remaining());
            buf.put_slice(&self.rewind[..n]);
            self.rewind.advance(n);
            if self.rewind.is_empty() {
                // The buffer the bytes came in goes.
                self.rewind = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hub, SseLayer};
    use tower_layer::Layer;

    fn task_size<S, B>(_: &S) -> usize
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
    {
        std::mem::size_of::<StreamTask<S, B>>()
    }

    /// What the task of an idle stream holds is the socket, the body and what is left to
    /// write: for an `SseLayer` over a `Hub`, about half a KiB (printed), far below the
    /// connection's own task (which ends once the stream's task is spawned).
    #[tokio::test]
    async fn the_task_of_a_stream_holds_little() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, peer) = listener.accept().await.unwrap();
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        let io = Held {
            io: WriteTimeout::new(socket, Duration::from_secs(1)),
            _permit: permit,
            rewind: Bytes::new(),
        };
        let service = SseLayer::new().layer(Hub::new());
        let settings = Arc::new(Settings {
            builder: auto::Builder::new(TokioExecutor::new()),
            first_request_timeout: None,
            header_read_timeout: None,
            shutdown: CancellationToken::new(),
        });
        let connection =
            std::mem::size_of_val(&serve_connection(settings, io, peer, service.clone()));
        let stream = task_size(&service);
        println!(
            "SIZE connection_task={connection} stream_task={stream} held={}",
            std::mem::size_of::<Held>()
        );
        assert!(stream <= 640, "a stream's task holds {stream} bytes");
        assert!(stream < connection);
    }
}
