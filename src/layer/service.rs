//! [`SseService`]: the request side of the layer.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::ACCEPT;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::ResponseBody;
use super::future::{ResponseFuture, StreamRequest};
use super::stream::Shared;
use crate::LastEventId;
use crate::error::BoxError;
use crate::event_stream::is_event_stream_type;

/// The service built by [`SseLayer`](crate::SseLayer): see there.
///
/// On the way in, it puts the request's [`LastEventId`] in its extensions and, with a
/// [`limit`](crate::SseLayer::limit), takes the place of a request that asks for an
/// event stream (or refuses it at once). Its [`ResponseFuture`] then serves the answer.
///
/// ```
/// use std::convert::Infallible;
/// use tower::service_fn;
/// use tower_sse::{Event, Sse, SseService};
///
/// let service = SseService::new(service_fn(|_request: http::Request<()>| async {
///     let events = futures_util::stream::iter([Event::data("hello")]);
///     Ok::<_, Infallible>(Sse::new(events).into_response())
/// }));
/// ```
#[derive(Clone, Debug)]
pub struct SseService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SseService<S> {
    /// Wraps `inner` with the default settings of [`SseLayer::new`](crate::SseLayer::new).
    ///
    /// ```
    /// # let inner = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// let service = tower_sse::SseService::new(inner);
    /// ```
    pub fn new(inner: S) -> Self {
        Self::with_shared(inner, Shared::new(Default::default()))
    }

    pub(super) fn with_shared(inner: S, shared: Arc<Shared>) -> Self {
        SseService { inner, shared }
    }

    /// The inner service.
    ///
    /// ```
    /// let service = tower_sse::SseService::new(tower::service_fn(|_: ()| async { Ok::<_, ()>(()) }));
    /// let _inner = service.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// let mut service = tower_sse::SseService::new(tower::service_fn(|_: ()| async { Ok::<_, ()>(()) }));
    /// let _inner = service.get_mut();
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the inner service out.
    ///
    /// ```
    /// let service = tower_sse::SseService::new(tower::service_fn(|_: ()| async { Ok::<_, ()>(()) }));
    /// let _inner = service.into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &self.shared.settings;
        if request.extensions().get::<LastEventId>().is_none()
            && let Some(id) = LastEventId::from_request(&request, settings.query.as_deref())
        {
            request.extensions_mut().insert(id);
        }
        let start = crate::metrics::StreamStart::new(&request);
        let _span = start.entered();
        let is_get = request.method() == Method::GET;
        let mut client = None;
        let mut permit = None;
        if let Some(limit) = &settings.limit {
            let (parts, body) = request.into_parts();
            client = limit.client_of(&parts);
            request = Request::from_parts(parts, body);
            // An EventSource says what it wants: its place is taken before the inner
            // service runs, so a request over the cap costs the service nothing.
            let wants_stream = request
                .headers()
                .get_all(ACCEPT)
                .iter()
                .any(|value| is_event_stream_type(value.as_bytes()));
            if is_get && wants_stream {
                match limit.try_acquire(client) {
                    Ok(taken) => permit = Some(taken),
                    Err(reached) => return ResponseFuture::refused(reached.into()),
                }
            }
        }
        let codec = settings
            .compression
            .as_ref()
            .and_then(|compression| compression.negotiate(request.headers()));
        let version = request.version();
        let asked = StreamRequest {
            shared: self.shared.clone(),
            version,
            is_get,
            client,
            permit,
            codec,
            start,
        };
        ResponseFuture::new(self.inner.call(request), asked)
    }
}
