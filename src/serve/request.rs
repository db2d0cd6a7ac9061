//! The request hyper would give the service, for a head that `serve` read itself: made
//! by hyper's own HTTP/1 server from the head's bytes alone, so that the service gets
//! the very `Request<Incoming>` it gets from hyper (hyper has no public constructor for
//! `Incoming`, hyperium/hyper#3843).
//!
//! It holds because a request without a body gets `Incoming::empty()`, which owes
//! nothing to its connection (hyper's `proto/h1/dispatch.rs`, `poll_read_head`): the
//! connection that parsed it can be dropped at once.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The request of `head` (a complete head, without a body), as hyper parses it; `None`
/// if hyper would not take it (it then answers it on the real connection).
pub(super) async fn parse(head: Bytes) -> Option<Request<Incoming>> {
    let slot: Arc<Mutex<Option<Request<Incoming>>>> = Arc::default();
    let service = hyper::service::service_fn({
        let slot = slot.clone();
        move |request| {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(request);
            std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>()
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The head is all there: no timer needed.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(TokioIo::new(Replay { head }), service);
    let mut connection = std::pin::pin!(connection);
    // Every byte is there at once: one poll parses the head and calls the service.
    poll_fn(|cx| {
        let polled = connection.as_mut().poll(cx);
        let request = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        if request.is_none() && polled.is_ready() {
            tracing::debug!("hyper refused a request head that httparse took");
        }
        Poll::Ready(request)
    })
    .await
}

/// A connection that reads `head`, then waits forever; what is written to it is
/// dropped.
struct Replay {
    head: Bytes,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.head.is_empty() {
            return Poll::Pending;
        }
        let n = self.head.len().min(buf.remaining());
        buf.put_slice(&self.head[..n]);
        self.head.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body;

    use super::*;

    #[tokio::test]
    async fn the_request_is_hypers_own_with_an_empty_body() {
        let head = Bytes::from_static(
            b"GET /events?topic=a HTTP/1.1\r\nHost: x\r\naccept: text/event-stream\r\n\
              Last-Event-ID: 42\r\nx-two: 1\r\nx-two: 2\r\n\r\n",
        );
        let request = parse(head).await.expect("a request");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.uri(), "/events?topic=a");
        assert_eq!(request.version(), http::Version::HTTP_11);
        assert_eq!(request.headers()["last-event-id"], "42");
        assert_eq!(request.headers().get_all("x-two").iter().count(), 2);
        assert!(request.body().is_end_stream());
        assert_eq!(request.body().size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn a_head_hyper_refuses_gives_none() {
        let head = Bytes::from_static(b"GET /\x01 HTTP/1.1\r\n\r\n");
        assert!(parse(head).await.is_none());
    }
}
