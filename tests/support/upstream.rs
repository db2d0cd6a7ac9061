//! A body the layer did not build: an "upstream" event stream fed chunk by chunk by the
//! test (as a proxy passes on another server's chunks, which split events anywhere),
//! which tells the test each time the layer polls it.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

/// What the upstream body has seen of the layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// Chunks taken by the layer.
    pub taken: usize,
    /// When the last one was taken.
    pub taken_at: Option<Instant>,
    /// Polls that found no chunk ready, and when the last one was.
    pub pending_polls: usize,
    pub pending_at: Option<Instant>,
    pub dropped: bool,
}

/// The upstream body.
pub struct Upstream {
    chunks: mpsc::UnboundedReceiver<Bytes>,
    seen: watch::Sender<Seen>,
}

impl Body for Upstream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = self.chunks.poll_recv(cx);
        let now = Instant::now();
        match polled {
            Poll::Ready(Some(chunk)) => {
                self.seen.send_modify(|seen| {
                    seen.taken += 1;
                    seen.taken_at = Some(now);
                });
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                self.seen.send_modify(|seen| {
                    seen.pending_polls += 1;
                    seen.pending_at = Some(now);
                });
                Poll::Pending
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.seen.send_modify(|seen| seen.dropped = true);
    }
}

/// The test's end of one upstream body: dropping it ends the body.
pub struct Feed {
    chunks: mpsc::UnboundedSender<Bytes>,
    pub seen: watch::Receiver<Seen>,
}

/// A new upstream body and the test's end of it.
pub fn upstream() -> (Upstream, Feed) {
    let (chunks_tx, chunks) = mpsc::unbounded_channel();
    let (seen_tx, seen) = watch::channel(Seen::default());
    let body = Upstream {
        chunks,
        seen: seen_tx,
    };
    let feed = Feed {
        chunks: chunks_tx,
        seen,
    };
    (body, feed)
}

/// `body` as an event stream response (200, `Content-Type: text/event-stream`).
pub fn event_stream<B>(body: B) -> Response<B> {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

impl Feed {
    pub fn send(&self, chunk: &[u8]) {
        self.chunks
            .send(Bytes::copy_from_slice(chunk))
            .expect("the upstream body is there");
    }

    /// Sends `chunk` if the body is still there (the layer may have dropped it).
    pub fn send_if_there(&self, chunk: &[u8]) {
        let _ = self.chunks.send(Bytes::copy_from_slice(chunk));
    }

    /// Waits until the layer has taken `taken` chunks and then polled the body again at
    /// least `after` later: a heartbeat that fell due by then has been dealt with (it
    /// is checked on every poll that finds the upstream with nothing ready). Or until
    /// the body is dropped: its client is gone.
    pub async fn polled_after(&mut self, taken: usize, after: Duration) {
        let waited = timeout(
            Duration::from_secs(30),
            self.seen.wait_for(|seen| {
                seen.dropped
                    || seen.taken == taken
                        && matches!(
                            (seen.taken_at, seen.pending_at),
                            (Some(taken_at), Some(pending_at)) if pending_at >= taken_at + after
                        )
            }),
        )
        .await
        .is_ok_and(|seen| seen.is_ok());
        let seen = *self.seen.borrow();
        assert!(
            waited,
            "hang guard: the layer did not poll the upstream again after chunk {taken}: {seen:?}"
        );
    }
}
