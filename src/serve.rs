//! Accepting and serving connections, with the guards an SSE server needs before a
//! connection becomes a stream.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::WriteTimeout;
use crate::sse::BoxError;

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// hyper's own default.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 200;
/// The cap where the open-file limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
/// The first pause after an accept error; each further error in a row doubles it.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// While the cap stays reached, it is logged at most this often.
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// An HTTP/2 connection is pinged when it has been quiet this long, and closed when the
/// ping is not answered within hyper's keep-alive timeout (20 seconds).
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Serves `service` on every connection `listener` accepts, over HTTP/1.1 and HTTP/2
/// (h2c, by prior knowledge) on the same port, with the guards that a server which
/// holds connections open for hours needs against clients that never send a request.
///
/// Await the returned [`Serve`] to run the server; its methods change the settings
/// below before that. Without [`graceful_shutdown`](Serve::graceful_shutdown) it runs
/// until the runtime stops. The listener is a `TcpListener` or an `Arc` of one: a
/// caller that keeps a clone of the `Arc` keeps the port open after a graceful
/// shutdown, and can serve on it again (connections made meanwhile wait in its
/// backlog).
///
/// | guard | default |
/// |---|---|
/// | [`first_request_timeout`](Serve::first_request_timeout): a connection that has not sent a complete request head by then is closed | 10 s |
/// | [`header_read_timeout`](Serve::header_read_timeout): each HTTP/1.1 request head, and the wait for the next one on a kept-alive connection | 10 s |
/// | [`max_connections`](Serve::max_connections): connections open at once; above it, new ones wait in the listen backlog, not in memory | 7/8 of the open-file limit (Linux), else 10,000 |
/// | [`write_timeout`](Serve::write_timeout): [`WriteTimeout::tcp`] on every connection, for clients that stop reading or vanish | 30 s |
/// | [`max_concurrent_streams`](Serve::max_concurrent_streams): HTTP/2 streams on one connection | 200 |
///
/// An accept error that is not about one connection (running out of file descriptors,
/// `EMFILE`, `ENFILE`, `ENOBUFS`) pauses accepting, 10 ms at first and twice as long
/// after each further error in a row up to 1 s, with one log line per pause: the server
/// never spins on it. HTTP/2 connections also keep hyper's guards against reset floods
/// (`max_pending_accept_reset_streams` 20, `max_local_error_reset_streams` 1,024), and
/// are pinged when quiet for 30 s and closed when the ping goes unanswered.
///
/// Each request carries the client's address as a `std::net::SocketAddr` in its
/// extensions, which [`StreamLimit::per_client`](crate::StreamLimit::per_client) reads
/// (and an axum handler with `Extension<SocketAddr>`). Upgrades
/// (WebSocket) are served, and an upgraded connection still counts toward the cap until
/// it closes.
///
/// Logs go to `tracing`: the cap being reached and each pause after an accept error as
/// warnings (at most one line every 10 seconds while the cap stays reached), each
/// connection closed by a guard at `debug`.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use tower::ServiceBuilder;
/// use tower_sse::{Hub, SseLayer};
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let service = ServiceBuilder::new().layer(SseLayer::new()).service(Hub::new());
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     tower_sse::serve(listener, service)
///         .max_connections(50_000)
///         .first_request_timeout(Duration::from_secs(5))
///         .await;
///     Ok(())
/// }
/// ```
///
/// An axum `Router` and a warp filter are served the same way:
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use axum::{Router, routing::get};
///
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// tower_sse::serve(listener, app).await;
/// # Ok(())
/// # }
/// ```
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use warp::Filter;
///
/// let routes = warp::path("hello").map(|| "hello");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// tower_sse::serve(listener, warp::service(routes)).await;
/// # Ok(())
/// # }
/// ```
pub fn serve<S, B>(listener: impl Into<Arc<TcpListener>>, service: S) -> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Serve {
        listener: listener.into(),
        service,
        header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
        first_request_timeout: Some(DEFAULT_FIRST_REQUEST_TIMEOUT),
        max_connections: None,
        write_timeout: DEFAULT_WRITE_TIMEOUT,
        max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        shutdown: CancellationToken::new(),
    }
}

/// A server made by [`serve`]: its methods change the settings, and awaiting it runs it.
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
/// use std::time::Duration;
/// use tokio_util::sync::CancellationToken;
///
/// let stop = CancellationToken::new();
/// tokio::spawn({
///     let stop = stop.clone();
///     async move {
///         tokio::signal::ctrl_c().await.ok();
///         stop.cancel();
///     }
/// });
/// tower_sse::serve(listener, app)
///     .header_read_timeout(Duration::from_secs(5))
///     .first_request_timeout(Duration::from_secs(5))
///     .max_connections(20_000)
///     .write_timeout(Duration::from_secs(60))
///     .max_concurrent_streams(500)
///     .graceful_shutdown(stop)
///     .await;
/// # }
/// ```
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S> {
    listener: Arc<TcpListener>,
    service: S,
    header_read_timeout: Option<Duration>,
    first_request_timeout: Option<Duration>,
    max_connections: Option<usize>,
    write_timeout: Duration,
    max_concurrent_streams: u32,
    shutdown: CancellationToken,
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("first_request_timeout", &self.first_request_timeout)
            .field("max_connections", &self.max_connections)
            .field("write_timeout", &self.write_timeout)
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl<S> Serve<S> {
    /// How long an HTTP/1.1 client may take to send a request head, from its first byte,
    /// and how long a kept-alive connection may wait for its next request; then hyper
    /// closes the connection. `None` turns it off. Default: 10 seconds.
    ///
    /// A browser sends a whole request head in one packet, so anything near a second is
    /// plenty on a poor network; a client that drips one byte at a time is cut here.
    ///
    /// ```
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// let server = tower_sse::serve(listener, app)
    ///     .header_read_timeout(std::time::Duration::from_secs(5));
    /// # }
    /// ```
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.header_read_timeout = timeout.into();
        self
    }

    /// How long a new connection, HTTP/1.1 or HTTP/2, may take to send its first complete
    /// request head, counted from the accept; a connection that has not by then is
    /// closed. `None` turns it off. Default: 10 seconds.
    ///
    /// This is the guard against connections that send nothing at all (hyper's header
    /// read timeout starts only with the first byte), and against HTTP/2 connections that
    /// open no stream.
    ///
    /// ```
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// let server = tower_sse::serve(listener, app)
    ///     .first_request_timeout(std::time::Duration::from_secs(5));
    /// # }
    /// ```
    pub fn first_request_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.first_request_timeout = timeout.into();
        self
    }

    /// The most connections open at once (at least 1). At the cap the server stops
    /// accepting, logs it, and takes the next connection from the listen backlog once one
    /// closes; so a flood of connections costs the kernel's backlog, not file descriptors
    /// or memory in the process.
    ///
    /// Default: on Linux, 7/8 of the process's open-file limit (`ulimit -n`), leaving the
    /// rest for everything else the process opens; elsewhere 10,000. Raise the open-file
    /// limit to serve more: every connection is one file descriptor.
    ///
    /// The backlog `TcpListener::bind` asks for is 1,024 connections (and Linux holds at
    /// most `net.core.somaxconn`); the kernel drops what a larger burst brings over the
    /// cap, and those clients wait for TCP's retransmissions, a second or more. A
    /// listener from `tokio::net::TcpSocket::listen` can ask for a longer backlog.
    ///
    /// ```
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// let server = tower_sse::serve(listener, app).max_connections(50_000);
    /// # }
    /// ```
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// The timeout of the [`WriteTimeout::tcp`] every connection is wrapped in: a write
    /// that waits this long for a client that stopped reading fails and closes the
    /// connection, and on Linux a client that vanished is dropped once data sent to it
    /// stays unacknowledged this long. Default: 30 seconds, twice the default heartbeat
    /// interval; see [`WriteTimeout`] for how to choose it.
    ///
    /// ```
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// let server = tower_sse::serve(listener, app)
    ///     .write_timeout(std::time::Duration::from_secs(60));
    /// # }
    /// ```
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The most HTTP/2 streams a client may open at once on one connection. Default: 200,
    /// hyper's. A page that opens more event streams over HTTP/2 needs it raised; a cap
    /// per client is [`StreamLimit::per_client`](crate::StreamLimit::per_client).
    ///
    /// ```
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// let server = tower_sse::serve(listener, app).max_concurrent_streams(1_000);
    /// # }
    /// ```
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max;
        self
    }

    /// Shuts down gracefully once `token` is cancelled: the listener is closed, every
    /// connection is told to finish (idle ones close at once, HTTP/2 ones get a GOAWAY),
    /// and the server's future completes when every connection is closed.
    ///
    /// An event stream never ends by itself: give the same token to
    /// [`SseLayer::graceful_shutdown`](crate::SseLayer::graceful_shutdown), so that the
    /// streams end when the server starts to drain, or the wait lasts as long as the
    /// streams. Bound the wait with `tokio::time::timeout` if it must end.
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// use std::time::Duration;
    ///
    /// use tokio_util::sync::CancellationToken;
    /// use tower::ServiceBuilder;
    /// use tower_sse::{Hub, SseLayer};
    ///
    /// let stop = CancellationToken::new();
    /// let service = ServiceBuilder::new()
    ///     .layer(SseLayer::new().graceful_shutdown(stop.clone()))
    ///     .service(Hub::new());
    /// tokio::spawn({
    ///     let stop = stop.clone();
    ///     async move {
    ///         tokio::signal::ctrl_c().await.ok();
    ///         stop.cancel();
    ///     }
    /// });
    /// let server = tower_sse::serve(listener, service).graceful_shutdown(stop);
    /// if tokio::time::timeout(Duration::from_secs(60), server).await.is_err() {
    ///     eprintln!("some connections were still open after 60 s");
    /// }
    /// # }
    /// ```
    pub fn graceful_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S> Serve<S> {
    async fn run<B>(self)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let Serve {
            listener,
            service,
            header_read_timeout,
            first_request_timeout,
            max_connections,
            write_timeout,
            max_concurrent_streams,
            shutdown,
        } = self;

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(max_concurrent_streams)
            .keep_alive_interval(HTTP2_PING_INTERVAL);
        let builder = Arc::new(builder);

        // `acquire_many` below takes a u32.
        let max_connections = max_connections
            .unwrap_or_else(default_max_connections)
            .clamp(1, u32::MAX as usize);
        let permits = Arc::new(Semaphore::new(max_connections));
        tracing::debug!(
            address = ?listener.local_addr().ok(),
            max_connections,
            "serving"
        );
        let mut pause: Option<Duration> = None;
        let mut cap_logged: Option<Instant> = None;

        loop {
            // The cap is taken before accepting: at the cap, connections wait in the
            // kernel's backlog.
            let permit = match permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(TryAcquireError::NoPermits) => {
                    if cap_logged.is_none_or(|at| at.elapsed() >= CAP_LOG_INTERVAL) {
                        tracing::warn!(
                            max_connections,
                            "connection limit reached: new connections wait in the listen \
                             backlog until one closes"
                        );
                        cap_logged = Some(Instant::now());
                    }
                    tokio::select! {
                        permit = permits.clone().acquire_owned() => {
                            permit.expect("the semaphore is never closed")
                        }
                        () = shutdown.cancelled() => break,
                    }
                }
                Err(TryAcquireError::Closed) => unreachable!("the semaphore is never closed"),
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    pause = None;
                    accepted
                }
                Err(error) if is_connection_error(&error) => {
                    // One connection that failed before it was accepted; the next one is
                    // there or not, no reason to wait.
                    tracing::debug!(%error, "accept failed for one connection");
                    continue;
                }
                Err(error) => {
                    let next = pause.map_or(FIRST_PAUSE, |pause| (pause * 2).min(MAX_PAUSE));
                    pause = Some(next);
                    tracing::warn!(
                        %error,
                        pause_ms = next.as_millis() as u64,
                        "accept failed: pausing before accepting again"
                    );
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(next) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            };
            let stream = match WriteTimeout::tcp(stream, write_timeout) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "could not set up the connection");
                    continue;
                }
            };
            let io = Held {
                io: stream,
                _permit: permit,
            };
            tokio::spawn(serve_connection(
                builder.clone(),
                io,
                peer,
                service.clone(),
                first_request_timeout,
                shutdown.clone(),
            ));
        }

        drop(listener);
        // Every connection holds a permit until its socket is closed.
        let _all_closed = permits.acquire_many(max_connections as u32).await;
    }
}

/// Serves one connection until it ends, is closed by the first-request deadline, or
/// finishes after a graceful shutdown.
async fn serve_connection<S, B>(
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
                tracing::debug!(%peer, "connection closed: no request before the deadline");
                return;
            }
            result = connection.as_mut() => {
                if let Err(error) = result {
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
struct Held {
    io: WriteTimeout<TcpStream>,
    _permit: OwnedSemaphorePermit,
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

/// Errors about one connection that failed before it was accepted, as opposed to the
/// listener or the process running out of something.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn default_max_connections() -> usize {
    open_file_limit().map_or(FALLBACK_MAX_CONNECTIONS, |limit| (limit - limit / 8).max(1))
}

/// The soft limit on open files, where `/proc` tells it.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127720               127720               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit(""), None);
    }

    #[test]
    fn the_default_cap_leaves_an_eighth_of_the_open_files() {
        let cap = default_max_connections();
        match open_file_limit() {
            Some(limit) => assert_eq!(cap, limit - limit / 8),
            None => assert_eq!(cap, FALLBACK_MAX_CONNECTIONS),
        }
    }

    #[test]
    fn only_errors_about_one_connection_skip_the_pause() {
        assert!(is_connection_error(
            &io::ErrorKind::ConnectionAborted.into()
        ));
        // EMFILE
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
    }
}
