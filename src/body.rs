//! The response body of [`SseService`](crate::SseService).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::EndReason;
use crate::config::Config;
use crate::heartbeat::Heartbeat;
use crate::limit::StreamPermit;
use crate::report::Tracker;
use crate::shutdown::ShutdownWatch;
use crate::sse::BoxError;

pin_project! {
    /// The body of every response that passes through [`SseLayer`](crate::SseLayer).
    ///
    /// An event stream's body is wrapped: frames the inner body already has ready are
    /// coalesced into one, up to a bound (64 KiB by default), so a burst costs one write,
    /// while a frame that arrives alone goes out alone, at once, as the very `Bytes` it
    /// was made of; a heartbeat is written while it idles; it ends at a frame boundary on
    /// shutdown; an error of the inner body ends it cleanly after the last complete frame;
    /// and its end is reported, as [`EndReason::ClientGone`] if the connection drops it
    /// first. Any other response's body passes through untouched, and the layer's own
    /// answers (405, 503) are short plain bodies.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower::{Service, ServiceExt, service_fn};
    /// use tower_sse::{Event, Sse, SseBody, SseLayer};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut service = tower::ServiceBuilder::new()
    ///     .layer(SseLayer::new())
    ///     .service(service_fn(|_: http::Request<()>| async {
    ///         let events = futures_util::stream::iter([Event::data("hi")]);
    ///         Ok::<_, Infallible>(Sse::new(events).into_response())
    ///     }));
    /// let response = service.ready().await?.call(http::Request::new(())).await?;
    /// let _body: &SseBody<_> = response.body();
    /// # Ok::<(), Infallible>(())
    /// # }).unwrap();
    /// ```
    pub struct SseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Passthrough {
            #[pin]
            inner: B,
        },
        Full {
            #[pin]
            body: Full<Bytes>,
        },
        Stream {
            // Dropped as soon as the stream is over, so that what it holds (a hub
            // subscription, a channel) is released before the response ends.
            #[pin]
            inner: Option<B>,
            state: Box<StreamState>,
        },
    }
}

impl<B> SseBody<B> {
    pub(crate) fn passthrough(inner: B) -> Self {
        SseBody {
            kind: Kind::Passthrough { inner },
        }
    }

    pub(crate) fn full(body: Full<Bytes>) -> Self {
        SseBody {
            kind: Kind::Full { body },
        }
    }

    pub(crate) fn stream(inner: B, config: Arc<Config>, permit: Option<StreamPermit>) -> Self {
        SseBody {
            kind: Kind::Stream {
                inner: Some(inner),
                state: Box::new(StreamState::new(config, permit)),
            },
        }
    }
}

impl<B> std::fmt::Debug for SseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("SseBody");
        match &self.kind {
            Kind::Passthrough { .. } => debug.field("kind", &"passthrough"),
            Kind::Full { .. } => debug.field("kind", &"full"),
            Kind::Stream { state, .. } => debug.field("stream", state),
        };
        debug.finish_non_exhaustive()
    }
}

impl<B> Body for SseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { inner } => inner.poll_frame(cx).map_err(Into::into),
            KindProj::Full { body } => body.poll_frame(cx).map_err(|never| match never {}),
            KindProj::Stream { inner, state } => state.poll_frame(inner, cx).map(|f| f.map(Ok)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { inner } => inner.is_end_stream(),
            Kind::Full { body } => body.is_end_stream(),
            Kind::Stream { state, .. } => state.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { inner } => inner.size_hint(),
            Kind::Full { body } => body.size_hint(),
            Kind::Stream { state, .. } => state.size_hint(),
        }
    }
}

/// Where an event stream stands.
#[derive(Debug)]
enum Phase {
    Streaming,
    /// The inner body is over; what is left in `prelude`/`carry` goes out, then the
    /// body ends.
    Ending(EndReason, Option<BoxError>),
    Done,
}

/// Everything an event stream carries besides its inner body.
#[derive(Debug)]
struct StreamState {
    config: Arc<Config>,
    phase: Phase,
    /// Bytes to write before anything else: the `retry:` prelude.
    prelude: Option<Bytes>,
    /// A frame taken from the inner body that did not fit in the last one.
    carry: Option<Bytes>,
    heartbeat: Option<Heartbeat>,
    shutdown: Option<ShutdownWatch>,
    tracker: Tracker,
    /// The place this stream takes under a `StreamLimit`, freed when it ends.
    permit: Option<StreamPermit>,
    /// Where several ready frames are coalesced. Kept while the stream keeps producing,
    /// so that a burst reuses one allocation (reclaimed once the connection has written
    /// the previous frame); released when the stream idles.
    scratch: BytesMut,
}

impl StreamState {
    fn new(config: Arc<Config>, permit: Option<StreamPermit>) -> Self {
        StreamState {
            phase: Phase::Streaming,
            prelude: config.retry().cloned(),
            carry: None,
            heartbeat: config.heartbeat().map(Heartbeat::new),
            shutdown: config.shutdown().map(ShutdownWatch::new),
            tracker: Tracker::new(config.on_end().cloned()),
            permit,
            scratch: BytesMut::new(),
            config,
        }
    }

    fn poll_frame<B>(
        &mut self,
        mut inner: Pin<&mut Option<B>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Frame<Bytes>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if matches!(self.phase, Phase::Done) {
            return Poll::Ready(None);
        }

        let mut out = Chunk::new(&mut self.scratch);
        if let Some(prelude) = self.prelude.take() {
            out.push(prelude);
        }
        if let Some(frame) = self.carry.take() {
            out.push(frame);
            self.tracker.events += 1;
        }

        if matches!(self.phase, Phase::Streaming)
            && self.shutdown.as_mut().is_some_and(|s| s.poll_cancelled(cx))
        {
            inner.set(None);
            self.phase = Phase::Ending(EndReason::Shutdown, None);
            if let Some(last) = self.config.shutdown_event() {
                out.push(last.clone());
            }
        }

        if matches!(self.phase, Phase::Streaming) {
            let max = self.config.max_frame();
            while out.len() < max {
                let Some(body) = inner.as_mut().as_pin_mut() else {
                    break;
                };
                match body.poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        // An event stream has no trailers; empty frames carry nothing.
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if data.is_empty() {
                            continue;
                        }
                        if out.len() > 0 && out.len() + data.len() > max {
                            self.carry = Some(data);
                            break;
                        }
                        out.push(data);
                        self.tracker.events += 1;
                    }
                    Poll::Ready(Some(Err(error))) => {
                        inner.set(None);
                        self.phase = Phase::Ending(EndReason::Error, Some(error.into()));
                    }
                    Poll::Ready(None) => {
                        inner.set(None);
                        self.phase = Phase::Ending(EndReason::Finished, None);
                    }
                    Poll::Pending => break,
                }
            }
        }

        if let Some(bytes) = out.into_bytes() {
            self.tracker.bytes += bytes.len() as u64;
            if let Some(heartbeat) = &mut self.heartbeat {
                heartbeat.wrote();
            }
            return Poll::Ready(Some(Frame::data(bytes)));
        }

        if let Phase::Ending(..) = self.phase {
            if let Phase::Ending(reason, error) = std::mem::replace(&mut self.phase, Phase::Done)
            {
                drop(self.permit.take());
                self.tracker.finish(reason, error);
            }
            return Poll::Ready(None);
        }

        if self.scratch.capacity() > 0 {
            self.scratch = BytesMut::new();
        }
        if let Some(heartbeat) = &mut self.heartbeat
            && heartbeat.poll_due(cx)
        {
            let frame = self.config.heartbeat_frame().clone();
            self.tracker.bytes += frame.len() as u64;
            return Poll::Ready(Some(Frame::data(frame)));
        }
        Poll::Pending
    }

    /// Nothing is left to write: the inner body is over and so are the prelude and the
    /// carried frame.
    fn is_end_stream(&self) -> bool {
        matches!(self.phase, Phase::Done)
            || (matches!(self.phase, Phase::Ending(..))
                && self.prelude.is_none()
                && self.carry.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.phase, &self.prelude, &self.carry) {
            (Phase::Done, ..) => SizeHint::with_exact(0),
            (Phase::Ending(..), prelude, None) => {
                SizeHint::with_exact(prelude.as_ref().map_or(0, |p| p.len() as u64))
            }
            _ => SizeHint::default(),
        }
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        // Free the place before reporting, so that whoever learns of the end can open
        // the next stream at once.
        drop(self.permit.take());
        if self.tracker.is_done() {
            return;
        }
        // Ending with nothing left: the connection took the last frame and, told by
        // `is_end_stream`, did not ask for the end. Otherwise the stream was cut short.
        let ending = std::mem::replace(&mut self.phase, Phase::Done);
        match ending {
            Phase::Ending(reason, error) if self.prelude.is_none() && self.carry.is_none() => {
                self.tracker.finish(reason, error);
            }
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
