//! How and why each stream ended.

use std::fmt;
use std::sync::Arc;
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
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::Finished => "finished",
            EndReason::ClientGone => "client gone",
            EndReason::Error => "stream error",
            EndReason::Shutdown => "shutdown",
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

/// Counts what a stream sends and reports its end exactly once.
pub(crate) struct Tracker {
    started: Instant,
    pub(crate) events: u64,
    pub(crate) bytes: u64,
    on_end: Option<OnEnd>,
    done: bool,
}

impl Tracker {
    pub(crate) fn new(on_end: Option<OnEnd>) -> Self {
        Tracker {
            started: Instant::now(),
            events: 0,
            bytes: 0,
            on_end,
            done: false,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    pub(crate) fn finish(&mut self, reason: EndReason, error: Option<BoxError>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let end = StreamEnd {
            reason,
            error,
            events: self.events,
            bytes: self.bytes,
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
