//! What one stream has sent, and the report of its end.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::Instant;

use crate::error::BoxError;
use crate::layer::end::OnEnd;
use crate::{EndReason, StreamEnd};

/// What one stream has sent; reports the stream's end exactly once, whoever ends it: the
/// body, or the layer's stall watch.
pub(crate) struct Tracker {
    started: Instant,
    events: AtomicU64,
    bytes: AtomicU64,
    done: AtomicBool,
    on_end: Option<OnEnd>,
    observed: crate::metrics::Observed,
}

impl Tracker {
    pub(crate) fn new(on_end: Option<OnEnd>, observed: crate::metrics::Observed) -> Self {
        Tracker {
            started: Instant::now(),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicBool::new(false),
            on_end,
            observed,
        }
    }

    /// Records a frame handed to the connection.
    pub(crate) fn wrote(&self, events: u64, bytes: usize) {
        if events > 0 {
            self.events.fetch_add(events, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The stream's span, entered, for a line about it logged elsewhere.
    pub(crate) fn span(&self) -> Option<tracing::span::Entered<'_>> {
        self.observed.enter()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The connection let go of the stream (its body was dropped).
    pub(crate) fn released(&self) {
        self.observed.released();
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
        let _span = self.observed.ended(end.reason);
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
