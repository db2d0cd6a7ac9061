//! [`serve`] and [`Serve`]: the server and its settings; awaiting it runs the accept loop.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::accept;
use crate::error::BoxError;

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// hyper's own default.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 200;

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
/// | [`write_timeout`](Serve::write_timeout): [`WriteTimeout::tcp`](crate::WriteTimeout::tcp) on every connection, for clients that stop reading or vanish | 30 s |
/// | [`max_concurrent_streams`](Serve::max_concurrent_streams): HTTP/2 streams on one connection | 200 |
///
/// An accept error that is not about one connection (running out of file descriptors,
/// `EMFILE`, `ENFILE`, `ENOBUFS`) pauses accepting, 10 ms at first and twice as long
/// after each further error in a row up to 1 s, with one log line per pause: the server
/// never spins on it. HTTP/2 connections also keep hyper's guards against reset floods
/// (`max_pending_accept_reset_streams` 20, `max_local_error_reset_streams` 1,024), and
/// are pinged when quiet for 30 s and closed when the ping goes unanswered.
///
/// # What an open event stream costs
///
/// `serve` reads the first request head of each connection itself, into a buffer of
/// 1 KiB (8 KiB at most). When it is a plain HTTP/1.1 request for an event stream
/// (`GET`, `Accept: text/event-stream`, no body, nothing after the head) and the
/// service answers with an event stream (status 200, `Content-Type:
/// text/event-stream`, no length), `serve` writes the response itself, from a small task
/// that holds only the socket and the body: the head as hyper writes it, then each
/// frame of the body as one chunk, with no buffer kept between frames. An idle stream
/// then costs about 2 KiB of memory in all (a `Hub` subscription under
/// [`SseLayer`](crate::SseLayer)), against about 19 KiB for the same stream kept in
/// hyper's HTTP/1 connection, whose buffers (16 KiB read, 8 KiB header write) last as
/// long as the connection. The service gets the very request hyper would give it (hyper
/// parses it, from the same bytes), client address included, and every guard below
/// holds. A client that closes the connection is noticed at once, as hyper notices it.
///
/// Anything else goes to hyper with every byte already read, as it came: HTTP/2, other
/// methods, a body, `Transfer-Encoding`, `Expect`, an upgrade, `Connection: close`,
/// HTTP/1.0, pipelined requests, heads that are malformed or longer than 8 KiB, any
/// answer that is not an event stream (hyper writes it, as always), and the requests
/// that follow on a kept-alive connection.
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
    pub(super) listener: Arc<TcpListener>,
    pub(super) service: S,
    pub(super) header_read_timeout: Option<Duration>,
    pub(super) first_request_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
    pub(super) write_timeout: Duration,
    pub(super) max_concurrent_streams: u32,
    pub(super) shutdown: CancellationToken,
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

    /// The timeout of the [`WriteTimeout::tcp`](crate::WriteTimeout::tcp) every connection is wrapped in: a write
    /// that waits this long for a client that stopped reading fails and closes the
    /// connection, and on Linux a client that vanished is dropped once data sent to it
    /// stays unacknowledged this long. Default: 30 seconds, twice the default heartbeat
    /// interval; see [`WriteTimeout`](crate::WriteTimeout) for how to choose it.
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
        Box::pin(accept::run(self))
    }
}
