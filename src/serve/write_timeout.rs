//! A write timeout for connections, so that a client that stops reading is closed.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// A connection whose writes fail with [`io::ErrorKind::TimedOut`] once one of them
    /// has waited longer than a timeout: wrap each accepted socket in it, and a client
    /// that stops reading is closed, with its stream reported as
    /// [`EndReason::ClientGone`](crate::EndReason::ClientGone).
    ///
    /// # Why the body cannot do it
    ///
    /// When a client stops reading, its socket's buffers fill up, the server's write
    /// waits, and hyper stops polling the response body: nothing in the body runs any
    /// more, not even the heartbeat. A [`Hub`](crate::Hub) still cuts such a subscriber
    /// off once it falls too far behind (so the hub's memory stays bounded), but the
    /// connection itself stays open, holding hyper's buffers, until TCP gives up, which
    /// takes many minutes or, if the peer's kernel keeps acknowledging, forever. The
    /// timeout has to sit below hyper, on the connection: a write (or flush) that stays
    /// pending longer than the timeout fails, hyper closes the connection, and the
    /// response body and its subscription are dropped.
    ///
    /// The timer starts when a write first has to wait, and stops as soon as any write
    /// makes progress, so a slow client that keeps reading is never cut by it (the
    /// hub's lag policy deals with those that read too slowly to keep up). Reads are
    /// untouched.
    ///
    /// # Half-open connections
    ///
    /// A client that vanished without closing (a laptop lid shut, a mobile network
    /// gone) acknowledges nothing. Writes still succeed for a while, into the kernel's
    /// send buffer, so on a quiet stream the timer above would start only once the
    /// heartbeats filled that buffer. [`WriteTimeout::tcp`] therefore also sets the
    /// socket's `TCP_USER_TIMEOUT` (on Linux) to the same value: the kernel aborts the
    /// connection once data it sent stays unacknowledged that long, and the next write
    /// fails. The heartbeat guarantees there is such data at least once per interval.
    ///
    /// # Choosing the timeout
    ///
    /// Use about **twice the heartbeat interval** (30 seconds with the default 15-second
    /// heartbeat of [`SseLayer`](crate::SseLayer)). A live client on a poor network drains a full
    /// buffer well within that; a stalled or vanished one is then closed within about
    /// three heartbeat intervals of its last read (one interval until the heartbeat
    /// writes, then the timeout). Much shorter risks closing a live client during a
    /// burst; much longer only keeps dead connections' buffers around. A stream
    /// without heartbeats gets no such guarantee for half-open peers: keep them on.
    ///
    /// [`serve`](crate::serve()) wraps every connection it accepts
    /// ([`write_timeout`](crate::Serve::write_timeout), 30 seconds by default); a server
    /// with an accept loop of its own wraps each socket with [`WriteTimeout::tcp`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use tower::ServiceBuilder;
    /// use tower_sse::{Hub, SseLayer};
    ///
    /// #[tokio::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let heartbeat = Duration::from_secs(15);
    ///     let hub = Hub::new();
    ///     let service = ServiceBuilder::new()
    ///         .layer(SseLayer::new().heartbeat(heartbeat))
    ///         .service(hub);
    ///
    ///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    ///     // A client that reads nothing for two heartbeats is closed.
    ///     tower_sse::serve(listener, service)
    ///         .write_timeout(2 * heartbeat)
    ///         .await;
    ///     Ok(())
    /// }
    /// ```
    #[derive(Debug)]
    pub struct WriteTimeout<IO> {
        #[pin]
        io: IO,
        timeout: Duration,
        // Boxed so that the wrapper stays `Unpin` when the connection is.
        timer: Option<Pin<Box<Sleep>>>,
        // Whether a write is waiting and `timer` runs for it.
        armed: bool,
        timed_out: bool,
    }
}

impl<IO> WriteTimeout<IO> {
    /// Wraps `io`: a write or flush that waits longer than `timeout` fails. (A zero
    /// timeout is raised to one millisecond.)
    ///
    /// For a `TcpStream`, prefer [`WriteTimeout::tcp`], which also covers peers that
    /// vanished without closing.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let (server, _client) = tokio::io::duplex(64);
    /// let server = tower_sse::WriteTimeout::new(server, Duration::from_secs(30));
    /// assert_eq!(server.timeout(), Duration::from_secs(30));
    /// # });
    /// ```
    pub fn new(io: IO, timeout: Duration) -> Self {
        WriteTimeout {
            io,
            timeout: timeout.max(Duration::from_millis(1)),
            timer: None,
            armed: false,
            timed_out: false,
        }
    }

    /// The timeout.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let (io, _peer) = tokio::io::duplex(64);
    /// assert_eq!(tower_sse::WriteTimeout::new(io, Duration::ZERO).timeout(), Duration::from_millis(1));
    /// # });
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a write has timed out (every later write fails too).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (io, _peer) = tokio::io::duplex(64);
    /// let io = tower_sse::WriteTimeout::new(io, std::time::Duration::from_secs(1));
    /// assert!(!io.is_timed_out());
    /// # });
    /// ```
    pub fn is_timed_out(&self) -> bool {
        self.timed_out
    }

    /// The wrapped connection.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (io, _peer) = tokio::io::duplex(64);
    /// let io = tower_sse::WriteTimeout::new(io, std::time::Duration::from_secs(1));
    /// let _inner: &tokio::io::DuplexStream = io.get_ref();
    /// # });
    /// ```
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The wrapped connection, mutably.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (io, _peer) = tokio::io::duplex(64);
    /// let mut io = tower_sse::WriteTimeout::new(io, std::time::Duration::from_secs(1));
    /// let _inner: &mut tokio::io::DuplexStream = io.get_mut();
    /// # });
    /// ```
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// Takes the wrapped connection out.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (io, _peer) = tokio::io::duplex(64);
    /// let io = tower_sse::WriteTimeout::new(io, std::time::Duration::from_secs(1)).into_inner();
    /// # });
    /// ```
    pub fn into_inner(self) -> IO {
        self.io
    }
}

impl WriteTimeout<tokio::net::TcpStream> {
    /// Wraps an accepted TCP connection, and on Linux also sets its `TCP_USER_TIMEOUT` to
    /// `timeout`, so that a peer that vanished without closing is dropped by the kernel
    /// once the data sent to it (a heartbeat at least) stays unacknowledged that long.
    ///
    /// Fails only if the socket option cannot be set.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let _client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (socket, _) = listener.accept().await?;
    /// let socket = tower_sse::WriteTimeout::tcp(socket, Duration::from_secs(30))?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn tcp(stream: tokio::net::TcpStream, timeout: Duration) -> io::Result<Self> {
        let wrapped = Self::new(stream, timeout);
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
        socket2::SockRef::from(&wrapped.io).set_tcp_user_timeout(Some(wrapped.timeout))?;
        Ok(wrapped)
    }
}

impl<IO> WriteTimeout<IO> {
    /// Called when a write or flush has to wait: starts the timer if it is not running,
    /// and fails once it has run out.
    fn stalled<T>(
        timeout: Duration,
        timer: &mut Option<Pin<Box<Sleep>>>,
        armed: &mut bool,
        timed_out: &mut bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if !*armed {
            let deadline = Instant::now() + timeout;
            match timer {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            *armed = true;
        }
        let sleep = timer.as_mut().expect("the timer was just set");
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                *timed_out = true;
                crate::metrics::connection_timed_out("write");
                tracing::debug!(?timeout, "write timed out: closing the connection");
                Poll::Ready(Err(timed_out_error(timeout)))
            }
        }
    }
}

fn timed_out_error(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("write timed out: the peer read nothing for {timeout:?}"),
    )
}

/// Runs one write-side operation under the timer.
macro_rules! timed {
    ($self:ident, $cx:ident, $op:expr) => {{
        let this = $self.project();
        if *this.timed_out {
            return Poll::Ready(Err(timed_out_error(*this.timeout)));
        }
        let polled = ($op)(this.io);
        match polled {
            Poll::Ready(result) => {
                *this.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                Self::stalled(*this.timeout, this.timer, this.armed, this.timed_out, $cx)
            }
        }
    }};
}

impl<IO: AsyncRead> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        timed!(self, cx, |io: Pin<&mut IO>| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        timed!(self, cx, |io: Pin<&mut IO>| io
            .poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        timed!(self, cx, |io: Pin<&mut IO>| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        timed!(self, cx, |io: Pin<&mut IO>| io.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_longer_than_the_timeout_fails_and_stays_failed() {
        let (server, mut client) = tokio::io::duplex(16);
        let mut server = WriteTimeout::new(server, Duration::from_secs(30));
        server.write_all(&[1; 16]).await.unwrap();
        let start = Instant::now();
        let err = server.write_all(&[2; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert!(server.is_timed_out());
        // Even once the peer reads, the connection stays failed.
        let mut buf = [0; 16];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(
            server.write(&[3]).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn progress_stops_the_timer_so_a_slow_reader_is_never_cut() {
        let (server, mut client) = tokio::io::duplex(4);
        let mut server = WriteTimeout::new(server, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0; 1];
            while total < 100 {
                // One byte every 9 seconds: each wait is shorter than the timeout.
                tokio::time::sleep(Duration::from_secs(9)).await;
                total += client.read(&mut buf).await.unwrap();
            }
        });
        server.write_all(&[7; 100]).await.unwrap();
        server.flush().await.unwrap();
        reader.await.unwrap();
        assert!(!server.is_timed_out());
    }
}
