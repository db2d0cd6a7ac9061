//! The response body that writes an event stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::config::Config;
use crate::keep_alive::Heartbeat;
use crate::report::Tracker;
use crate::shutdown::ShutdownWatch;
use crate::{BoxError, EndReason, Event, StreamPermit};

/// An item of an event stream: an [`Event`], or a `Result` whose error ends the stream.
///
/// When a stream of `Result<Event, E>` yields an error, the response ends cleanly after
/// the last complete event (no torn frame) and the error is reported through
/// [`on_end`](crate::SseLayer::on_end) with [`EndReason::Error`].
///
/// ```
/// use tower_sse::{Event, IntoEvent};
///
/// let item: Result<Event, std::io::Error> = Ok(Event::data("x"));
/// assert!(item.into_event().is_ok());
/// ```
pub trait IntoEvent {
    /// The error that ends the stream.
    type Error: Into<BoxError>;

    /// The event to write, or the error that ends the stream.
    fn into_event(self) -> Result<Event, Self::Error>;
}

impl IntoEvent for Event {
    type Error = Infallible;

    fn into_event(self) -> Result<Event, Infallible> {
        Ok(self)
    }
}

impl<E: Into<BoxError>> IntoEvent for Result<Event, E> {
    type Error = E;

    fn into_event(self) -> Result<Event, E> {
        self
    }
}

pin_project! {
    /// The body of an SSE response: the events of a stream, heartbeats between them.
    ///
    /// Events the stream already has ready are coalesced into one data frame, up to a
    /// bound (64 KiB by default), so a burst costs one write; an event that arrives alone
    /// goes out alone, at once, as the very `Bytes` it was encoded into. The body ends
    /// when the stream ends, when it yields an error, or when the
    /// [`Shutdown`](crate::Shutdown) signal fires; if the connection drops it first,
    /// the end is reported as [`EndReason::ClientGone`].
    ///
    /// Build one through [`SseLayer`](crate::SseLayer) or [`Sse`](crate::Sse).
    ///
    /// ```
    /// use futures_util::stream;
    /// use tower_sse::{Event, Sse, SseBody};
    ///
    /// let response = Sse::new(stream::iter([Event::data("hi")])).into_response();
    /// let body: &SseBody<_> = response.body();
    /// ```
    pub struct SseBody<S> {
        #[pin]
        stream: Option<S>,
        config: Arc<Config>,
        state: State,
        // Bytes to write before anything else: the `retry:` prelude, or a plain body.
        prelude: Option<Bytes>,
        // An event taken from the stream that did not fit in the last frame.
        carry: Option<Bytes>,
        heartbeat: Option<Heartbeat>,
        shutdown: Option<ShutdownWatch>,
        tracker: Tracker,
        // The place this stream takes under a `StreamLimit`, freed when the body drops.
        permit: Option<StreamPermit>,
        // Where several ready events are coalesced. Kept while the stream keeps
        // producing, so that a burst reuses one allocation (reclaimed once the
        // connection has written the previous frame); released when the stream idles.
        scratch: BytesMut,
    }

    impl<S> PinnedDrop for SseBody<S> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Free the place before reporting, so that whoever learns of the end can open
            // the next stream at once.
            drop(this.permit.take());
            if this.tracker.is_done() {
                return;
            }
            // Ending with nothing left: the connection took the last frame and, told by
            // `is_end_stream`, did not ask for the end. Otherwise the stream was cut short.
            let ending = std::mem::replace(this.state, State::Done);
            match ending {
                State::Ending(reason, error) if this.prelude.is_none() && this.carry.is_none() => {
                    this.tracker.finish(reason, error);
                }
                _ => {
                    let shut_down = this.config.shutdown.as_ref().is_some_and(|s| s.is_triggered());
                    let reason = if shut_down { EndReason::Shutdown } else { EndReason::ClientGone };
                    this.tracker.finish(reason, None);
                }
            }
        }
    }
}

#[derive(Debug)]
enum State {
    Streaming,
    /// The stream is over; what is left in `prelude`/`carry` goes out, then the body ends.
    Ending(EndReason, Option<BoxError>),
    Done,
}

impl<S> SseBody<S> {
    pub(crate) fn new(stream: S, config: Arc<Config>) -> Self {
        SseBody {
            stream: Some(stream),
            state: State::Streaming,
            prelude: config.retry.clone(),
            carry: None,
            heartbeat: config
                .keep_alive
                .as_ref()
                .map(|k| Heartbeat::new(k.get_interval())),
            shutdown: config.shutdown.as_ref().map(|s| s.watch()),
            tracker: Tracker::new(config.on_end.clone()),
            config,
            permit: None,
            scratch: BytesMut::new(),
        }
    }

    /// Holds `permit` for as long as the body lives.
    pub(crate) fn with_permit(mut self, permit: Option<StreamPermit>) -> Self {
        self.permit = permit;
        self
    }

    /// A body that writes `bytes` and ends: used for responses that refuse a stream.
    pub(crate) fn plain(bytes: Bytes) -> Self {
        SseBody {
            stream: None,
            state: State::Ending(EndReason::Finished, None),
            prelude: (!bytes.is_empty()).then_some(bytes),
            carry: None,
            heartbeat: None,
            shutdown: None,
            tracker: Tracker::silent(),
            config: Arc::new(Config::default()),
            permit: None,
            scratch: BytesMut::new(),
        }
    }
}

/// An empty body that ends at once. tower-http's `CorsLayer` needs it, to answer
/// preflight requests itself with the body type of the service it wraps.
///
/// ```
/// use http_body::Body;
/// let body = tower_sse::SseBody::<futures_util::stream::Empty<tower_sse::Event>>::default();
/// assert!(body.is_end_stream());
/// ```
impl<S> Default for SseBody<S> {
    fn default() -> Self {
        SseBody::plain(Bytes::new())
    }
}

impl<S> std::fmt::Debug for SseBody<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseBody")
            .field("state", &self.state)
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

impl<S> Body for SseBody<S>
where
    S: Stream,
    S::Item: IntoEvent,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut this = self.project();
        if matches!(this.state, State::Done) {
            return Poll::Ready(None);
        }

        let mut out = Chunk::new(this.scratch);
        if let Some(prelude) = this.prelude.take() {
            out.push(prelude);
        }
        if let Some(event) = this.carry.take() {
            out.push(event);
            this.tracker.events += 1;
        }

        if matches!(this.state, State::Streaming)
            && this.shutdown.as_mut().is_some_and(|w| w.poll_triggered(cx))
        {
            this.stream.set(None);
            *this.state = State::Ending(EndReason::Shutdown, None);
            if let Some(last) = &this.config.shutdown_event {
                out.push(last.clone());
            }
        }

        if matches!(this.state, State::Streaming) {
            let max = this.config.max_frame;
            while out.len() < max {
                let Some(stream) = this.stream.as_mut().as_pin_mut() else {
                    break;
                };
                match stream.poll_next(cx) {
                    Poll::Ready(Some(item)) => match item.into_event() {
                        Ok(event) => {
                            let bytes = event.into_bytes();
                            if out.len() > 0 && out.len() + bytes.len() > max {
                                *this.carry = Some(bytes);
                                break;
                            }
                            out.push(bytes);
                            this.tracker.events += 1;
                        }
                        Err(error) => {
                            this.stream.set(None);
                            *this.state = State::Ending(EndReason::Error, Some(error.into()));
                        }
                    },
                    Poll::Ready(None) => {
                        this.stream.set(None);
                        *this.state = State::Ending(EndReason::Finished, None);
                    }
                    Poll::Pending => break,
                }
            }
        }

        if let Some(bytes) = out.into_bytes() {
            this.tracker.bytes += bytes.len() as u64;
            if let Some(heartbeat) = this.heartbeat {
                heartbeat.wrote();
            }
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }

        if let State::Ending(..) = this.state {
            if let State::Ending(reason, error) = std::mem::replace(this.state, State::Done) {
                drop(this.permit.take());
                this.tracker.finish(reason, error);
            }
            return Poll::Ready(None);
        }

        if this.scratch.capacity() > 0 {
            *this.scratch = BytesMut::new();
        }
        if let (Some(heartbeat), Some(keep_alive)) = (this.heartbeat, &this.config.keep_alive)
            && heartbeat.poll_due(cx)
        {
            let frame = keep_alive.frame().clone();
            this.tracker.bytes += frame.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
            || (matches!(self.state, State::Ending(..))
                && self.prelude.is_none()
                && self.carry.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.state, &self.prelude, &self.carry) {
            (State::Done, ..) => SizeHint::with_exact(0),
            (State::Ending(..), prelude, None) => {
                SizeHint::with_exact(prelude.as_ref().map_or(0, |p| p.len() as u64))
            }
            _ => SizeHint::default(),
        }
    }
}

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
