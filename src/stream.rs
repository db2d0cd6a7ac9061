//! What [`SseBody`](crate::SseBody) does around an event stream: the `retry:` prelude,
//! coalescing, batching, heartbeats, shutdown, stall detection and the end report.
//!
//! The inner body may split events anywhere (a proxied upstream stream does): the
//! layer's own frames go out only where an event ended ([`Boundary`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::EndReason;
use crate::batch::Slot;
use crate::boundary::Boundary;
use crate::compress::Encoder;
use crate::config::Config;
use crate::heartbeat::Heartbeat;
use crate::limit::StreamPermit;
use crate::report::Tracker;
use crate::shutdown::ShutdownWatch;
use crate::sse::BoxError;
use crate::stall::StallWatch;

/// How long a stream that is shut down in the middle of an event waits for the rest of
/// it before it ends without it (and without the shutdown event).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where an event stream stands.
#[derive(Debug)]
enum Phase {
    Streaming,
    /// The inner body is over; what is left goes out, then the body ends.
    Ending(EndReason, Option<BoxError>),
    Done,
}

/// Everything an event stream carries besides its inner body.
#[derive(Debug)]
pub(crate) struct StreamState {
    config: Arc<Config>,
    phase: Phase,
    /// Bytes to write before anything else: the `retry:` prelude.
    prelude: Option<Bytes>,
    /// A frame taken from the inner body and not written yet.
    carry: Option<Bytes>,
    /// With batching: the stream's place at the layer's clock, and the tick at which
    /// `carry` started to wait.
    slot: Option<Arc<Slot>>,
    held_since: Option<u64>,
    /// The last frame was cut at the size bound: `carry` goes out without waiting.
    flush_now: bool,
    /// The last frame, after the inner body: the shutdown event.
    tail: Option<Bytes>,
    /// Whether the bytes taken from the inner body so far end where an event ended.
    boundary: Boundary,
    heartbeat: Option<Heartbeat>,
    shutdown: Option<ShutdownWatch>,
    /// Once shutdown found the stream inside an event: when it stops waiting for the
    /// rest of it.
    shutdown_deadline: Option<Pin<Box<Sleep>>>,
    tracker: Arc<Tracker>,
    /// The stream's place under the layer's limit: freed when the stream's resources
    /// are (the body ends, or the connection drops it), never earlier.
    permit: Option<StreamPermit>,
    stall: Option<(Arc<StallWatch>, usize)>,
    /// The waker the stall watch has of the task that polls this body.
    polled_by: Option<Waker>,
    /// The stream's compressor, when the client accepts one: every frame goes out
    /// through it, flushed.
    encoder: Option<Encoder>,
    /// Where several ready frames are coalesced. Kept while the stream keeps producing,
    /// so that a burst reuses one allocation (reclaimed once the connection has written
    /// the previous frame); released when the stream idles.
    scratch: BytesMut,
}

impl StreamState {
    pub(crate) fn new(
        config: Arc<Config>,
        permit: Option<StreamPermit>,
        encoder: Option<Encoder>,
    ) -> Self {
        let tracker = Arc::new(Tracker::new(config.on_end().cloned()));
        let stall = config.stall_watch().and_then(|watch| {
            let key = watch.watch(tracker.clone())?;
            Some((watch.clone(), key))
        });
        StreamState {
            phase: Phase::Streaming,
            prelude: config.retry().cloned(),
            carry: None,
            slot: config.batch().map(|ticker| Slot::new(ticker.clone())),
            held_since: None,
            flush_now: false,
            tail: None,
            boundary: Boundary::new(),
            heartbeat: config.heartbeat().map(Heartbeat::new),
            shutdown: config.shutdown().map(ShutdownWatch::new),
            shutdown_deadline: None,
            tracker,
            permit,
            stall,
            polled_by: None,
            encoder,
            scratch: BytesMut::new(),
            config,
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
        if let Some((watch, _)) = &self.stall {
            if !self
                .polled_by
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                self.tracker.polled_by(cx.waker());
                self.polled_by = Some(cx.waker().clone());
            }
            if self.tracker.is_done() && matches!(self.phase, Phase::Streaming) {
                // The stall watch gave up on this stream: reset it (an HTTP/2 stream
                // alone, an HTTP/1.1 connection whole). Its resources go with it.
                let stalled = Stalled(watch.timeout());
                self.phase = Phase::Done;
                inner.set(None);
                drop(self.permit.take());
                return Poll::Ready(Some(Err(Box::new(stalled))));
            }
            self.tracker.touch(watch.now_ms());
            watch.keep_sweeping();
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
                    &self.config,
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

        let max = self.config.max_frame();
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
                    &self.config,
                    inner.as_mut(),
                );
            } else if deadline_passed(&mut self.shutdown_deadline, cx) {
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
                let frame = self.config.heartbeat_frame().clone();
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
        let bytes = match &mut self.encoder {
            None => bytes,
            Some(encoder) => match encoder.compress(&bytes) {
                Ok(compressed) => compressed,
                Err(error) => return self.fail(Box::new(error), inner),
            },
        };
        self.tracker.wrote(events, bytes.len());
        Ok(Frame::data(bytes))
    }

    /// Ends the stream on a failure of its own (a compressor's): reported as an error,
    /// and the connection resets the stream, whose encoded bytes can no longer be
    /// trusted to continue.
    fn fail<T, B>(
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
    fn end(&mut self, reason: EndReason, error: Option<BoxError>) {
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

/// Whether a shutdown that found the stream inside an event has waited long enough for
/// the rest of it (the wait starts now if it has not); if not, the task is woken when it
/// has.
fn deadline_passed(deadline: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    deadline
        .get_or_insert_with(|| Box::pin(tokio::time::sleep(SHUTDOWN_GRACE)))
        .as_mut()
        .poll(cx)
        .is_ready()
}

/// Ends the stream for a graceful shutdown: the inner body goes, and the shutdown event
/// is the last frame.
fn end_for_shutdown<B>(
    phase: &mut Phase,
    tail: &mut Option<Bytes>,
    config: &Config,
    mut inner: Pin<&mut Option<B>>,
) {
    inner.set(None);
    *phase = Phase::Ending(EndReason::Shutdown, None);
    *tail = config.shutdown_event().cloned();
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

impl Drop for StreamState {
    fn drop(&mut self) {
        if let Some((watch, key)) = &self.stall {
            watch.forget(*key);
        }
        // The connection let go of the stream, and of what it holds: its place goes too
        // (also when the stall watch reported it earlier).
        drop(self.permit.take());
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

/// The error a stalled stream ends with, so that the connection resets it.
#[derive(Debug)]
struct Stalled(std::time::Duration);

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the connection took nothing from this event stream for {:?}",
            self.0
        )
    }
}

impl std::error::Error for Stalled {}

/// The bytes of one outgoing frame: a single `Bytes` passed through untouched, or
/// several copied into the body's scratch buffer.
struct Chunk<'a> {
    scratch: &'a mut BytesMut,
    single: Option<Bytes>,
    len: usize,
}

impl<'a> Chunk<'a> {
    fn new(scratch: &'a mut BytesMut) -> Self {
        debug_assert!(scratch.is_empty());
        Chunk {
            scratch,
            single: None,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, bytes: Bytes) {
        if self.len == 0 {
            self.single = Some(bytes);
        } else {
            if let Some(first) = self.single.take() {
                self.scratch.reserve(first.len() + bytes.len());
                self.scratch.extend_from_slice(&first);
            }
            self.scratch.extend_from_slice(&bytes);
        }
        self.len = self.single.as_ref().map_or(self.scratch.len(), Bytes::len);
    }

    fn into_bytes(self) -> Option<Bytes> {
        match self.single {
            Some(bytes) => Some(bytes),
            None if self.scratch.is_empty() => None,
            None => Some(self.scratch.split().freeze()),
        }
    }
}
