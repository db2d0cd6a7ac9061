//! How and why each stream ended: what [`on_end`](crate::SseLayer::on_end) receives.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
