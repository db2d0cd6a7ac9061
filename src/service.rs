//! The service the layer builds, and its response future.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONNECTION};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

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
        let version = request.version();
        ResponseFuture {
            state: State::Inner {
                inner: self.inner.call(request),
                config: config.clone(),
                version,
                is_get,
                client,
                permit,
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
            config: Arc<Config>,
            version: Version,
            is_get: bool,
            client: Option<IpAddr>,
            permit: Option<StreamPermit>,
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
        let (inner, config, version, is_get, client, permit) = match self.project().state.project()
        {
            StateProj::Refused { refusal } => {
                let refusal = refusal
                    .take()
                    .expect("ResponseFuture polled after completion");
                return Poll::Ready(Ok(refused(refusal)));
            }
            StateProj::Inner {
                inner,
                config,
                version,
                is_get,
                client,
                permit,
            } => (inner, config, *version, *is_get, client, permit),
        };
        let mut response = ready!(inner.poll(cx))?;
        let wrapped = response.extensions().get::<Wrapped>().is_some();
        if !is_event_stream(&response) || is_refusal(&response) || wrapped {
            // Not a stream (or one an inner `SseLayer` already serves): a place taken
            // for it is freed at once.
            drop(permit.take());
            return Poll::Ready(Ok(response.map(SseBody::passthrough)));
        }
        if !is_get {
            drop(permit.take());
            return Poll::Ready(Ok(refused(method_not_allowed())));
        }
        let permit = match (permit.take(), config.limit()) {
            (Some(taken), _) => Some(taken),
            (None, Some(limit)) => match limit.try_acquire(*client) {
                Ok(taken) => Some(taken),
                // The stream was made for nothing: dropped unread.
                Err(reached) => return Poll::Ready(Ok(refused(reached.into()))),
            },
            (None, None) => None,
        };
        insert_headers(response.headers_mut(), true);
        if version <= Version::HTTP_11 {
            response
                .headers_mut()
                .entry(CONNECTION)
                .or_insert(HeaderValue::from_static("keep-alive"));
        } else {
            response.headers_mut().remove(CONNECTION);
        }
        response.extensions_mut().insert(Wrapped);
        let config = config.clone();
        Poll::Ready(Ok(
            response.map(|body| SseBody::stream(body, config, permit))
        ))
    }
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
