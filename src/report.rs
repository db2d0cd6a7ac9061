//! How and why each stream ended.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::sse::BoxError;

/// Why a stream ended.
///
/// ```
/// use tower_sse::EndReason;
/// assert_eq!(EndReason::ClientGone.to_string(), "client gone");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The event stream ended; so did the response, cleanly.
    Finished,
    /// The connection dropped the response before the stream ended: the client closed
    /// it, reset it, or a write to it failed.
    ClientGone,
    /// The event stream yielded an error; the response ended cleanly after the last
    /// complete event.
    Error,
    /// The layer's shutdown token was cancelled
    /// ([`SseLayer::graceful_shutdown`](crate::SseLayer::graceful_shutdown)).
    Shutdown,
    /// The connection took nothing from the stream for the layer's
    /// [`stall_timeout`](crate::SseLayer::stall_timeout): a client that stopped reading,
    /// or an HTTP/2 stream it grants no flow-control window. The stream is reset the
    /// next time the connection polls it; its place under the limit is held until the
    /// connection lets go of it (that reset, the client leaving, or a
    /// [`WriteTimeout`](crate::WriteTimeout) closing the connection), since until then
    /// it still holds its connection and memory.
    Stalled,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::Finished => "finished",
            EndReason::ClientGone => "client gone",
            EndReason::Error => "stream error",
            EndReason::Shutdown => "shutdown",
            EndReason::Stalled => "stalled",
        })
    }
}

/// What one stream sent, and why it ended; given to the
/// [`on_end`](crate::SseLayer::on_end) callback once per stream.
///
/// ```
/// use tower_sse::{EndReason, SseLayer};
///
/// let layer = SseLayer::new().on_end(|end| {
///     if end.reason == EndReason::Error {
///         eprintln!("stream failed after {} events: {:?}", end.events, end.error);
///     }
/// });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamEnd {
    /// Why the stream ended.
    pub reason: EndReason,
    /// The error the event stream yielded, when `reason` is [`EndReason::Error`].
    pub error: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Events handed to the connection: the data frames of the stream's body, one per
    /// event for [`Sse`](crate::Sse) and axum's `Sse` (heartbeats, the `retry:` prelude
    /// and the shutdown event not counted).
    pub events: u64,
    /// Bytes handed to the connection, heartbeats included.
    pub bytes: u64,
    /// Time from the start of the response to its end.
    pub duration: Duration,
}

/// The callback that receives each [`StreamEnd`].
pub(crate) type OnEnd = Arc<dyn Fn(&StreamEnd) + Send + Sync>;

/// What one stream has sent; reports the stream's end exactly once, whoever ends it: the
/// body, or the layer's stall watch.
pub(crate) struct Tracker {
    started: Instant,
    events: AtomicU64,
    bytes: AtomicU64,
    /// When the connection last polled the body, in milliseconds since the stall
    /// watch's start (used only when one watches this stream).
    last_poll: AtomicU64,
    done: AtomicBool,
    on_end: Option<OnEnd>,
    /// The task that last polled the body, woken when the stall watch ends the stream.
    task: Mutex<Option<Waker>>,
}

impl Tracker {
    pub(crate) fn new(on_end: Option<OnEnd>) -> Self {
        Tracker {
            started: Instant::now(),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_poll: AtomicU64::new(0),
            done: AtomicBool::new(false),
            on_end,
            task: Mutex::new(None),
        }
    }

    /// Records a frame handed to the connection.
    pub(crate) fn wrote(&self, events: u64, bytes: usize) {
        if events > 0 {
            self.events.fetch_add(events, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn touch(&self, at_ms: u64) {
        self.last_poll.store(at_ms, Ordering::Relaxed);
    }

    pub(crate) fn last_poll(&self) -> u64 {
        self.last_poll.load(Ordering::Relaxed)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Records the task that polls the body (when it changes).
    pub(crate) fn polled_by(&self, task: &Waker) {
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.clone());
    }

    /// Wakes the task that last polled the body, so that the body, if the connection
    /// polls it, sees that it was ended.
    pub(crate) fn wake(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.wake();
        }
    }

    /// Reports the stream's end, unless it was reported already.
    pub(crate) fn finish(&self, reason: EndReason, error: Option<BoxError>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let end = StreamEnd {
            reason,
            error,
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            duration: self.started.elapsed(),
        };
        tracing::debug!(
            reason = %end.reason,
            error = end.error.as_ref().map(tracing::field::display),
            events = end.events,
            bytes = end.bytes,
            duration_ms = end.duration.as_millis() as u64,
            "sse stream ended"
        );
        if let Some(on_end) = &self.on_end {
            on_end(&end);
        }
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("events", &self.events)
            .field("bytes", &self.bytes)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
