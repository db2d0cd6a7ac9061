//! What [`ResponseBody`](crate::layer::ResponseBody) does around an event stream: the
//! `retry:` prelude, coalescing, batching, heartbeats, shutdown, stall detection and the
//! end report.
//!
//! The inner body may split events anywhere (a proxied upstream stream does): the
//! layer's own frames go out only where an event ended ([`Boundary`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};

use super::batch::Slot;
use super::boundary::Boundary;
use super::coalesce::Chunk;
use super::encoder::Encoder;
use super::ending::end_for_shutdown;
use super::heartbeat::Heartbeat;
use super::permit::StreamPermit;
use super::shared::Shared;
use super::shutdown::{SHUTDOWN_GRACE, ShutdownWatch};
use super::stall::Watched;
use super::tracker::Tracker;
use crate::EndReason;
use crate::error::BoxError;

/// Where an event stream stands.
#[derive(Debug)]
pub(super) enum Phase {
    Streaming,
    /// The inner body is over; what is left goes out, then the body ends.
    Ending(EndReason, Option<BoxError>),
    Done,
}

/// Everything an event stream carries besides its inner body.
#[derive(Debug)]
pub(crate) struct StreamState {
    pub(super) shared: Arc<Shared>,
    pub(super) phase: Phase,
    /// Bytes to write before anything else: the `retry:` prelude.
    pub(super) prelude: Option<Bytes>,
    /// A frame taken from the inner body and not written yet.
    pub(super) carry: Option<Bytes>,
    /// With batching: the stream's place at the service's clock, and the tick at which
    /// `carry` started to wait.
    slot: Option<Arc<Slot>>,
    held_since: Option<u64>,
    /// The last frame was cut at the size bound: `carry` goes out without waiting.
    flush_now: bool,
    /// The last frame, after the inner body: the shutdown event.
    pub(super) tail: Option<Bytes>,
    /// Whether the bytes taken from the inner body so far end where an event ended.
    boundary: Boundary,
    heartbeat: Option<Heartbeat>,
    pub(super) shutdown: Option<ShutdownWatch>,
    pub(super) tracker: Arc<Tracker>,
    /// The stream's place under the layer's limit: freed when the stream's resources
    /// are (the body ends, or the connection drops it), never earlier.
    pub(super) permit: Option<StreamPermit>,
    /// The stream's place in the layer's stall watch, if streams are watched.
    pub(super) stall: Option<Watched>,
    /// The stream's compressor, when the client accepts one: every frame goes out
    /// through it, flushed.
    pub(super) encoder: Option<Encoder>,
    /// Where several ready frames are coalesced. Kept while the stream keeps producing,
    /// so that a burst reuses one allocation (reclaimed once the connection has written
    /// the previous frame); released when the stream idles.
    scratch: BytesMut,
    meter: crate::metrics::StreamMeter,
}

impl StreamState {
    pub(crate) fn new(
        shared: Arc<Shared>,
        permit: Option<StreamPermit>,
        encoder: Option<Encoder>,
        start: crate::metrics::StreamStart,
    ) -> Self {
        let settings = &shared.settings;
        let (observed, meter) = start.into_parts();
        let tracker = Arc::new(Tracker::new(settings.on_end.clone(), observed));
        let stall = shared
            .stall
            .as_ref()
            .and_then(|watch| watch.watch(&tracker));
        StreamState {
            phase: Phase::Streaming,
            prelude: settings.retry.clone(),
            carry: None,
            slot: shared
                .ticker
                .as_ref()
                .map(|ticker| Slot::new(ticker.clone())),
            held_since: None,
            flush_now: false,
            tail: None,
            boundary: Boundary::new(),
            heartbeat: shared.heartbeat_clock.map(Heartbeat::new),
            shutdown: settings.shutdown.as_ref().map(ShutdownWatch::new),
            tracker,
            permit,
            stall,
            encoder,
            scratch: BytesMut::new(),
            meter,
            shared,
        }
    }

    pub(crate) fn poll_frame<B>(
        &mut self,
        mut inner: Pin<&mut Option<B>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if matches!(self.phase, Phase::Done) {
            return Poll::Ready(None);
        }
        if let Some(watched) = &mut self.stall {
            watched.polled_by(cx);
            if self.tracker.is_done() && matches!(self.phase, Phase::Streaming) {
                // The stall watch gave up on this stream: reset it (an HTTP/2 stream
                // alone, an HTTP/1.1 connection whole). Its resources go with it.
                let stalled = watched.stalled();
                self.phase = Phase::Done;
                inner.set(None);
                drop(self.permit.take());
                return Poll::Ready(Some(Err(Box::new(stalled))));
            }
            watched.touch();
        }

        // Shutdown ends the stream where an event ended: at once if the stream stands
        // there, else once the event in progress is over (or at the deadline). A
        // batching stream first takes what is ready in its inner body (up to a frame):
        // events wait there, not in the stream, until the tick.
        let shutting_down = matches!(self.phase, Phase::Streaming)
            && self.shutdown.as_mut().is_some_and(|s| s.poll_cancelled(cx));
        if shutting_down {
            if self.slot.is_some() {
                self.flush_now = true;
            } else if self.boundary.at_boundary() {
                end_for_shutdown(
                    &mut self.phase,
                    &mut self.tail,
                    &self.shared,
                    inner.as_mut(),
                );
            }
        }

        // With batching, the inner body is polled with the slot's waker: an event that
        // arrives wakes this task at the layer's next tick, not at once.
        let slot = self.slot.as_ref();
        let slot_waker = slot.as_ref().map(|slot| slot.waker(cx.waker()));
        let mut inner_cx = Context::from_waker(slot_waker.as_ref().unwrap_or(cx.waker()));
        if let Some(slot) = slot
            && matches!(self.phase, Phase::Streaming)
            && self.prelude.is_none()
            && !self.flush_now
        {
            if self.carry.is_none() {
                match next_frame(
                    &mut self.phase,
                    &mut self.boundary,
                    inner.as_mut(),
                    &mut inner_cx,
                ) {
                    Poll::Ready(Some(data)) => {
                        self.carry = Some(data);
                        self.held_since = Some(slot.held_since());
                    }
                    Poll::Ready(None) | Poll::Pending => {}
                }
            }
            if let (Some(_), Some(held), Phase::Streaming) =
                (&self.carry, self.held_since, &self.phase)
                && !slot.poll_ticked(held)
            {
                // Wait for the tick with the frame in hand; events that arrive
                // meanwhile only mark the slot.
                return Poll::Pending;
            }
        }
        if let Some(slot) = slot {
            slot.writing();
        }

        let max = self.shared.settings.max_frame;
        let mut events = 0;
        let mut out = Chunk::new(&mut self.scratch);
        if let Some(prelude) = self.prelude.take() {
            // First of all, where the stream stands at a boundary.
            out.push(prelude);
            self.boundary.wrote_own();
        }
        if let Some(frame) = self.carry.take() {
            out.push(frame);
            events += 1;
        }
        self.held_since = None;
        self.flush_now = false;
        if matches!(self.phase, Phase::Streaming) {
            while out.len() < max {
                // Shutting down, a stream that does not batch takes no event beyond the
                // one in progress.
                if shutting_down && slot.is_none() && self.boundary.at_boundary() {
                    break;
                }
                let Poll::Ready(Some(data)) = next_frame(
                    &mut self.phase,
                    &mut self.boundary,
                    inner.as_mut(),
                    &mut inner_cx,
                ) else {
                    break;
                };
                if out.len() > 0 && out.len() + data.len() > max {
                    self.carry = Some(data);
                    self.flush_now = true;
                    break;
                }
                out.push(data);
                events += 1;
            }
        }
        if shutting_down && matches!(self.phase, Phase::Streaming) {
            if self.boundary.at_boundary() {
                end_for_shutdown(
                    &mut self.phase,
                    &mut self.tail,
                    &self.shared,
                    inner.as_mut(),
                );
            } else if self.shutdown.as_mut().is_some_and(|s| s.grace_over(cx)) {
                // The rest of the event did not come in time: the stream ends without
                // it, and without the shutdown event, which would only be read as part
                // of it. The client drops the half event, as at any cut.
                tracing::debug!(
                    grace = ?SHUTDOWN_GRACE,
                    "an sse stream shut down in the middle of an event"
                );
                inner.set(None);
                self.phase = Phase::Ending(EndReason::Shutdown, None);
            }
        }
        // The shutdown event goes out after everything taken before it.
        if self.carry.is_none()
            && let Some(tail) = self.tail.take()
        {
            out.push(tail);
        }

        if let Some(bytes) = out.into_bytes() {
            if let Some(heartbeat) = &mut self.heartbeat {
                heartbeat.wrote();
            }
            return Poll::Ready(Some(self.send(bytes, events, inner)));
        }

        if let Phase::Ending(..) = self.phase {
            if let Some(encoder) = self.encoder.take() {
                // The compressed stream's own end (gzip's trailer, say) goes out last.
                match encoder.finish() {
                    Ok(end) if end.is_empty() => {}
                    Ok(end) => {
                        self.tracker.wrote(0, end.len());
                        self.meter.wrote(0, 0, end.len());
                        return Poll::Ready(Some(Ok(Frame::data(end))));
                    }
                    Err(error) => return Poll::Ready(Some(self.fail(Box::new(error), inner))),
                }
            }
            if let Phase::Ending(reason, error) = std::mem::replace(&mut self.phase, Phase::Done) {
                self.end(reason, error);
            }
            return Poll::Ready(None);
        }

        if self.scratch.capacity() > 0 {
            self.scratch = BytesMut::new();
        }
        if let Some(heartbeat) = &mut self.heartbeat
            && heartbeat.poll_due(cx)
        {
            if self.boundary.at_boundary() {
                self.boundary.wrote_own();
                let frame = self.shared.settings.heartbeat_frame.clone();
                self.meter.heartbeat();
                return Poll::Ready(Some(self.send(frame, 0, inner)));
            }
            // Inside an event a comment would become part of it: this beat is skipped.
            // The timer, set one interval on, still wakes the task, so that a stream
            // whose inner body pauses mid-event is seen polled by the stall watch.
            let _ = heartbeat.poll_due(cx);
        }
        Poll::Pending
    }

    /// The frame to hand to the connection, compressed if the stream is, and counted.
    fn send<B>(
        &mut self,
        bytes: Bytes,
        events: u64,
        inner: Pin<&mut Option<B>>,
    ) -> Result<Frame<Bytes>, BoxError> {
        let raw = bytes.len();
        let bytes = match &mut self.encoder {
            None => bytes,
            Some(encoder) => match encoder.compress(&bytes) {
                Ok(compressed) => compressed,
                Err(error) => return self.fail(Box::new(error), inner),
            },
        };
        self.tracker.wrote(events, bytes.len());
        self.meter.wrote(events, raw, bytes.len());
        Ok(Frame::data(bytes))
    }
}

/// The next data frame of the inner body, followed by `boundary`; at its end, or at its
/// error, the stream moves to its ending and the inner body is dropped.
fn next_frame<B>(
    phase: &mut Phase,
    boundary: &mut Boundary,
    mut inner: Pin<&mut Option<B>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    loop {
        let Some(body) = inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // An event stream has no trailers; empty frames carry nothing.
                match frame.into_data() {
                    Ok(data) if !data.is_empty() => match boundary.pass(data) {
                        Some(data) => return Poll::Ready(Some(data)),
                        // Held back: the first bytes of a BOM.
                        None => continue,
                    },
                    _ => continue,
                }
            }
            Poll::Ready(Some(Err(error))) => {
                inner.set(None);
                *phase = Phase::Ending(EndReason::Error, Some(error.into()));
                return Poll::Ready(None);
            }
            Poll::Ready(None) => {
                inner.set(None);
                *phase = Phase::Ending(EndReason::Finished, None);
                return Poll::Ready(None);
            }
            Poll::Pending => return Poll::Pending,
        }
    }
}
