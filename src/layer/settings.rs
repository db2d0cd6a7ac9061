//! The settings of an [`SseLayer`](crate::SseLayer): plain data, read by the services the
//! layer builds and by the streams they serve. The state those streams share (the
//! batching clock, the stall sweep) is built from them when the layer wraps a service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::end::OnEnd;
use crate::{LastEventId, StreamCompression, StreamLimit};

/// Largest frame the body hands to the connection when events are coalesced.
const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// The heartbeat every 15 idle seconds, as the HTML standard suggests: a bare comment.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// How many heartbeat intervals a stream may go unpolled by default.
const STALL_HEARTBEATS: u32 = 3;

/// The least default stall timeout: with a very short heartbeat, a busy server may
/// leave a healthy stream unpolled for longer than three intervals.
const MIN_STALL: Duration = Duration::from_secs(5);

/// What an [`SseLayer`](crate::SseLayer) was told, each field as its method of the same
/// name sets it.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The idle time after which a heartbeat is written, if heartbeats are on (at least
    /// a millisecond).
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) heartbeat_frame: Bytes,
    /// The `retry:` line written first, if any.
    pub(crate) retry: Option<Bytes>,
    /// Largest frame made by coalescing (at least 1).
    pub(crate) max_frame: usize,
    pub(crate) on_end: Option<OnEnd>,
    pub(crate) shutdown: Option<CancellationToken>,
    pub(crate) shutdown_event: Option<Bytes>,
    pub(crate) limit: Option<StreamLimit>,
    /// The query parameter read as the last event id, if any.
    pub(crate) query: Option<Arc<str>>,
    /// How long a batching stream waits for more events; `None`: no batching.
    pub(crate) batch_delay: Option<Duration>,
    pub(crate) compression: Option<StreamCompression>,
    pub(crate) stall: Stall,
}

/// When a stream whose connection takes nothing from it is ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stall {
    /// After three heartbeat intervals; never without heartbeats.
    Auto,
    /// After this long (at least a millisecond).
    After(Duration),
    Never,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat: Some(DEFAULT_HEARTBEAT),
            heartbeat_frame: Bytes::from_static(b":\n\n"),
            retry: None,
            max_frame: DEFAULT_MAX_FRAME,
            on_end: None,
            shutdown: None,
            shutdown_event: None,
            limit: None,
            query: Some(Arc::from(LastEventId::QUERY_PARAM)),
            batch_delay: None,
            compression: None,
            stall: Stall::Auto,
        }
    }
}

impl Settings {
    /// How long a stream may go unpolled before it is ended as stalled, if streams are
    /// watched at all.
    pub(crate) fn stall_timeout(&self) -> Option<Duration> {
        match (self.stall, self.heartbeat) {
            (Stall::Never, _) | (Stall::Auto, None) => None,
            (Stall::After(timeout), _) => Some(timeout),
            (Stall::Auto, Some(interval)) => {
                Some(interval.saturating_mul(STALL_HEARTBEATS).max(MIN_STALL))
            }
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("heartbeat", &self.heartbeat)
            .field("heartbeat_frame", &self.heartbeat_frame)
            .field("retry", &self.retry)
            .field("max_frame", &self.max_frame)
            .field("on_end", &self.on_end.as_ref().map(|_| ".."))
            .field("shutdown", &self.shutdown)
            .field("shutdown_event", &self.shutdown_event)
            .field("limit", &self.limit)
            .field("query", &self.query)
            .field("batch_delay", &self.batch_delay)
            .field("compression", &self.compression)
            .field("stall", &self.stall)
            .finish()
    }
}
