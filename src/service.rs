//! The service the layer builds, and its response future.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONNECTION, CONTENT_ENCODING, VARY};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::compress::Codec;
use crate::config::Config;
use crate::limit::StreamPermit;
use crate::refusal::is_refusal;
use crate::sse::{BoxError, insert_headers, is_event_stream, is_event_stream_type};
use crate::{LastEventId, Refusal, SseBody, SseLayer};

/// The service built by [`SseLayer`]: see there.
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
    config: Arc<Config>,
}

impl<S> SseService<S> {
    /// Wraps `inner` with the default settings of [`SseLayer::new`].
    ///
    /// ```
    /// # let inner = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// let service = tower_sse::SseService::new(inner);
    /// ```
    pub fn new(inner: S) -> Self {
        Self::with_config(inner, Arc::default())
    }

    /// The layer with the default settings, for a `ServiceBuilder`.
    ///
    /// ```
    /// let layer = tower_sse::SseService::<()>::layer();
    /// ```
    pub fn layer() -> SseLayer {
        SseLayer::new()
    }

    pub(crate) fn with_config(inner: S, config: Arc<Config>) -> Self {
        SseService { inner, config }
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
    type Response = Response<SseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        if request.extensions().get::<LastEventId>().is_none()
            && let Some(id) = LastEventId::read(
                request.headers().get(LastEventId::HEADER),
                request.uri().query(),
                config.query(),
            )
        {
            request.extensions_mut().insert(id);
        }
        let is_get = request.method() == Method::GET;
        let mut client = None;
        let mut permit = None;
        if let Some(limit) = config.limit() {
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
        let codec = config
            .compression()
            .and_then(|compression| compression.negotiate(request.headers()));
        let version = request.version();
        ResponseFuture {
            state: State::Inner {
                inner: self.inner.call(request),
                request: Pending {
                    config: config.clone(),
                    version,
                    is_get,
                    client,
                    permit,
                    codec,
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`SseService`].
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
            request: Pending,
        },
        Refused {
            refusal: Option<Refusal>,
        },
    }
}

impl<F> ResponseFuture<F> {
    fn refused(refusal: Refusal) -> Self {
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
    type Output = Result<Response<SseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { refusal } => {
                let refusal = refusal
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(refused(refusal)))
            }
            StateProj::Inner { inner, request } => {
                let response = ready!(inner.poll(cx))?;
                Poll::Ready(Ok(request.answer(response)))
            }
        }
    }
}

/// What the response future keeps of the request, to serve the answer with.
struct Pending {
    config: Arc<Config>,
    version: Version,
    is_get: bool,
    client: Option<IpAddr>,
    /// The place taken before the inner service ran, if any.
    permit: Option<StreamPermit>,
    /// The codec the client accepts, when the layer compresses.
    codec: Option<Codec>,
}

impl Pending {
    /// The response to send for the inner service's: an event stream is served, any
    /// other answer passes through.
    fn answer<B>(&mut self, mut response: Response<B>) -> Response<SseBody<B>> {
        let wrapped = response.extensions().get::<Wrapped>().is_some();
        if !is_event_stream(&response) || is_refusal(&response) || wrapped {
            // Not a stream (or one an inner `SseLayer` already serves): a place taken
            // for it is freed at once.
            drop(self.permit.take());
            return response.map(SseBody::passthrough);
        }
        if !self.is_get {
            drop(self.permit.take());
            return refused(method_not_allowed());
        }
        let permit = match (self.permit.take(), self.config.limit()) {
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
            .and_then(|codec| compress(response.headers_mut(), &self.config, codec));
        response.extensions_mut().insert(Wrapped);
        let config = self.config.clone();
        response.map(|body| SseBody::stream(body, config, permit, encoder))
    }
}

/// The encoder of a stream the client accepts compressed, with the headers that say
/// so; `None` when the stream already has an encoding of its own.
fn compress(
    headers: &mut http::HeaderMap,
    config: &Config,
    codec: Codec,
) -> Option<crate::compress::Encoder> {
    let already = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if already {
        return None;
    }
    let encoder = match config.compression()?.encoder(codec) {
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

/// Marks an event stream an `SseLayer` serves, so that an outer one (a router's, say,
/// around a route that has its own) passes it through: the innermost layer's settings
/// win.
#[derive(Clone, Copy, Debug)]
struct Wrapped;

fn refused<B>(refusal: Refusal) -> Response<SseBody<B>> {
    refusal.into_response().map(SseBody::full)
}

/// 405 for anything but GET: an event stream is only ever fetched.
fn method_not_allowed() -> Refusal {
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "an event stream is read with GET",
    )
    .header(ALLOW, HeaderValue::from_static("GET"))
}
