//! How an event stream ends: on shutdown, on a failure of its own, or when the
//! connection drops it; what is left to write meanwhile, and the report of its end.

use std::pin::Pin;

use bytes::Bytes;
use http_body::SizeHint;

use super::shared::Shared;
use super::state::{Phase, StreamState};
use crate::EndReason;
use crate::error::BoxError;

impl StreamState {
    /// Ends the stream on a failure of its own (a compressor's): reported as an error,
    /// and the connection resets the stream, whose encoded bytes can no longer be
    /// trusted to continue.
    pub(super) fn fail<T, B>(
        &mut self,
        error: BoxError,
        mut inner: Pin<&mut Option<B>>,
    ) -> Result<T, BoxError> {
        tracing::warn!(%error, "an sse stream failed");
        self.phase = Phase::Done;
        self.encoder = None;
        inner.set(None);
        self.end(EndReason::Error, Some(error.to_string().into()));
        Err(error)
    }

    /// The stream is over and its inner body dropped: its place under the limit is
    /// freed, then its end reported (so that whoever learns of it can open the next
    /// stream at once).
    pub(super) fn end(&mut self, reason: EndReason, error: Option<BoxError>) {
        drop(self.permit.take());
        self.tracker.finish(reason, error);
    }

    /// Nothing is left to write: the inner body is over and so is everything held.
    pub(crate) fn is_end_stream(&self) -> bool {
        matches!(self.phase, Phase::Done)
            || (matches!(self.phase, Phase::Ending(..)) && self.nothing_left())
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.phase {
            Phase::Done => SizeHint::with_exact(0),
            Phase::Ending(..) if self.carry.is_none() => {
                let left = [&self.prelude, &self.tail]
                    .into_iter()
                    .flatten()
                    .map(|b| b.len() as u64)
                    .sum();
                SizeHint::with_exact(left)
            }
            _ => SizeHint::default(),
        }
    }

    fn nothing_left(&self) -> bool {
        self.prelude.is_none()
            && self.carry.is_none()
            && self.tail.is_none()
            && self.encoder.is_none()
    }
}

/// Ends the stream for a graceful shutdown: the inner body goes, and the shutdown event
/// is the last frame.
pub(super) fn end_for_shutdown<B>(
    phase: &mut Phase,
    tail: &mut Option<Bytes>,
    shared: &Shared,
    mut inner: Pin<&mut Option<B>>,
) {
    inner.set(None);
    *phase = Phase::Ending(EndReason::Shutdown, None);
    *tail = shared.settings.shutdown_event.clone();
}

impl Drop for StreamState {
    fn drop(&mut self) {
        // Out of the stall watch first.
        drop(self.stall.take());
        // The connection let go of the stream, and of what it holds: its place goes too
        // (also when the stall watch reported it earlier).
        drop(self.permit.take());
        // No longer held by its connection: off the stalled gauge now, even while the
        // stall watch's sweep still holds the tracker for a moment.
        self.tracker.released();
        if self.tracker.is_done() {
            return;
        }
        // Ending with nothing left: the connection took the last frame and, told by
        // `is_end_stream`, did not ask for the end. Otherwise the stream was cut short.
        let nothing_left = self.nothing_left();
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Ending(reason, error) if nothing_left => self.tracker.finish(reason, error),
            _ => {
                let shut_down = self.shutdown.as_ref().is_some_and(|s| s.is_cancelled());
                let reason = if shut_down {
                    EndReason::Shutdown
                } else {
                    EndReason::ClientGone
                };
                self.tracker.finish(reason, None);
            }
        }
    }
}
