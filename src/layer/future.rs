//! [`ResponseFuture`]: the response side of the layer. An event-stream answer gets its
//! headers and a wrapped body; any other passes through untouched.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_ENCODING, VARY};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use http_body::Body;
use pin_project_lite::pin_project;

use super::ResponseBody;
use super::compression::Codec;
use super::stream::{Encoder, Shared, StreamPermit};
use crate::Refusal;
use crate::error::BoxError;
use crate::event_stream::{insert_headers, is_event_stream, is_served, mark_served};

pin_project! {
    /// The response future of [`SseService`](crate::SseService): the inner service's
    /// future, whose answer it serves. An event stream gets the headers of one and a
    /// [`ResponseBody`] that runs it (or 405 for a request that is not a GET, or the
    /// limit's refusal); any other answer passes through untouched, and so does an
    /// event stream an inner [`SseLayer`](crate::SseLayer) already serves.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower::{Service, service_fn};
    /// use tower_sse::layer::ResponseFuture;
    /// use tower_sse::{Event, Sse, SseService};
    ///
    /// let mut service = SseService::new(service_fn(|_: http::Request<()>| async {
    ///     let events = futures_util::stream::iter([Event::data("hi")]);
    ///     Ok::<_, Infallible>(Sse::new(events).into_response())
    /// }));
    /// let future: ResponseFuture<_> = service.call(http::Request::new(()));
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            inner: F,
            request: StreamRequest,
        },
        Refused {
            refusal: Option<Refusal>,
        },
    }
}

impl<F> ResponseFuture<F> {
    /// Serves what `inner` answers to `request`.
    pub(super) fn new(inner: F, request: StreamRequest) -> Self {
        ResponseFuture {
            state: State::Inner { inner, request },
        }
    }

    /// Answers with `refusal`: the inner service was not called.
    pub(super) fn refused(refusal: Refusal) -> Self {
        ResponseFuture {
            state: State::Refused {
                refusal: Some(refusal),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { refusal } => {
                let refusal = refusal
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(refused(refusal)))
            }
            StateProj::Inner { inner, request } => {
                let _span = request.start.entered();
                let response = ready!(inner.poll(cx))?;
                Poll::Ready(Ok(request.answer(response)))
            }
        }
    }
}

/// A request whose answer may turn out to be an event stream: what the response future
/// keeps of it to serve one.
pub(super) struct StreamRequest {
    pub(super) shared: Arc<Shared>,
    pub(super) version: Version,
    pub(super) is_get: bool,
    pub(super) client: Option<IpAddr>,
    /// The place taken before the inner service ran, if any.
    pub(super) permit: Option<StreamPermit>,
    /// The codec the client accepts, when the layer compresses.
    pub(super) codec: Option<Codec>,
    /// Its span, and what the metrics keep of it.
    pub(super) start: crate::metrics::StreamStart,
}

impl StreamRequest {
    /// The response to send for the inner service's: an event stream is served, any
    /// other answer passes through.
    fn answer<B>(&mut self, mut response: Response<B>) -> Response<ResponseBody<B>> {
        if !is_event_stream(&response) || is_served(&response) {
            // Not a stream, a refusal, or a stream an inner `SseLayer` already serves:
            // a place taken for it is freed at once.
            crate::metrics::passed_through(&response);
            drop(self.permit.take());
            return response.map(ResponseBody::passthrough);
        }
        if !self.is_get {
            crate::metrics::refused("method");
            tracing::debug!("refusing an event stream: the request is not a GET (405)");
            drop(self.permit.take());
            return refused(method_not_allowed());
        }
        let permit = match (self.permit.take(), &self.shared.settings.limit) {
            (Some(taken), _) => Some(taken),
            (None, Some(limit)) => match limit.try_acquire(self.client) {
                Ok(taken) => Some(taken),
                // The stream was made for nothing: dropped unread.
                Err(reached) => return refused(reached.into()),
            },
            (None, None) => None,
        };
        let headers = response.headers_mut();
        insert_headers(headers, true);
        if self.version <= Version::HTTP_11 {
            headers
                .entry(CONNECTION)
                .or_insert(HeaderValue::from_static("keep-alive"));
        } else {
            headers.remove(CONNECTION);
        }
        let encoder = self
            .codec
            .and_then(|codec| compress(response.headers_mut(), &self.shared, codec));
        mark_served(response.extensions_mut());
        let shared = self.shared.clone();
        let codec = self.codec.filter(|_| encoder.is_some()).map(Codec::token);
        let start = std::mem::take(&mut self.start).serving(codec);
        response.map(|body| ResponseBody::stream(body, shared, permit, encoder, start))
    }
}

/// The encoder of a stream the client accepts compressed, with the headers that say
/// so; `None` when the stream already has an encoding of its own.
fn compress(headers: &mut HeaderMap, shared: &Shared, codec: Codec) -> Option<Encoder> {
    let already = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if already {
        return None;
    }
    let encoder = match shared.settings.compression.as_ref()?.encoder(codec) {
        Ok(encoder) => encoder,
        Err(error) => {
            tracing::warn!(%error, codec = codec.token(), "cannot compress an event stream");
            return None;
        }
    };
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(codec.token()));
    headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    Some(encoder)
}

fn refused<B>(refusal: Refusal) -> Response<ResponseBody<B>> {
    refusal.into_response().map(ResponseBody::full)
}

/// 405 for anything but GET: an event stream is only ever fetched.
fn method_not_allowed() -> Refusal {
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "an event stream is read with GET",
    )
    .header(ALLOW, HeaderValue::from_static("GET"))
}
