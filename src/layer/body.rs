//! [`ResponseBody`]: the body of every response under the layer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use super::stream::{Encoder, Shared, StreamPermit, StreamState};
use crate::error::BoxError;

pin_project! {
    /// The body of every response that passes through [`SseLayer`](crate::SseLayer).
    ///
    /// An event stream's body is wrapped: frames the inner body already has ready are
    /// coalesced into one, up to a bound (64 KiB by default), so a burst costs one write,
    /// while a frame that arrives alone goes out alone, at once, as the very `Bytes` it
    /// was made of; a heartbeat is written while it idles; it ends at an event boundary on
    /// shutdown (the layer's own frames go only where an event ended, whatever the inner
    /// body's chunking); an error of the inner body ends it after the last frame;
    /// and its end is reported, as [`EndReason::ClientGone`](crate::EndReason::ClientGone) if the connection drops it
    /// first, or as [`EndReason::Stalled`](crate::EndReason::Stalled) if the connection
    /// stops taking its frames. Any other response's body passes through untouched, and
    /// the layer's own answers (405, 503) are short plain bodies.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower::{Service, ServiceExt, service_fn};
    /// use tower_sse::layer::ResponseBody;
    /// use tower_sse::{Event, Sse, SseLayer};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut service = tower::ServiceBuilder::new()
    ///     .layer(SseLayer::new())
    ///     .service(service_fn(|_: http::Request<()>| async {
    ///         let events = futures_util::stream::iter([Event::data("hi")]);
    ///         Ok::<_, Infallible>(Sse::new(events).into_response())
    ///     }));
    /// let response = service.ready().await?.call(http::Request::new(())).await?;
    /// let _body: &ResponseBody<_> = response.body();
    /// # Ok::<(), Infallible>(())
    /// # }).unwrap();
    /// ```
    pub struct ResponseBody<B> {
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

impl<B> ResponseBody<B> {
    pub(super) fn passthrough(inner: B) -> Self {
        ResponseBody {
            kind: Kind::Passthrough { inner },
        }
    }

    pub(super) fn full(body: Full<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Full { body },
        }
    }

    pub(super) fn stream(
        inner: B,
        shared: Arc<Shared>,
        permit: Option<StreamPermit>,
        encoder: Option<Encoder>,
        start: crate::metrics::StreamStart,
    ) -> Self {
        ResponseBody {
            kind: Kind::Stream {
                inner: Some(inner),
                state: Box::new(StreamState::new(shared, permit, encoder, start)),
            },
        }
    }
}

/// An empty body. tower-http's `CorsLayer` needs it, to answer preflight requests
/// itself with the body type of the service it wraps.
///
/// ```
/// use http_body::Body;
/// use tower_sse::layer::ResponseBody;
/// let body = ResponseBody::<tower_sse::Sse<futures_util::stream::Empty<tower_sse::Event>>>::default();
/// assert!(body.is_end_stream());
/// ```
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        ResponseBody::full(Full::default())
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("ResponseBody");
        match &self.kind {
            Kind::Passthrough { .. } => debug.field("kind", &"passthrough"),
            Kind::Full { .. } => debug.field("kind", &"full"),
            Kind::Stream { state, .. } => debug.field("stream", state),
        };
        debug.finish_non_exhaustive()
    }
}

impl<B> Body for ResponseBody<B>
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
            KindProj::Stream { inner, state } => state.poll_frame(inner, cx),
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
