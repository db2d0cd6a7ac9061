//! The service the layer builds, and its response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::ALLOW;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::config::Config;
use crate::response::sse_response;
use crate::{IntoEventStream, LastEventId, Refusal, SseBody, SseLayer, StreamPermit};

/// The service built by [`SseLayer`]: see there.
///
/// ```
/// use std::convert::Infallible;
/// use tower::service_fn;
/// use tower_sse::{Event, SseService};
///
/// let service = SseService::new(service_fn(|_request: http::Request<()>| async {
///     Ok::<_, Infallible>(futures_util::stream::iter([Event::data("hello")]))
/// }));
/// ```
#[derive(Clone, Debug)]
pub struct SseService<S> {
    inner: S,
    layer: SseLayer,
}

impl<S> SseService<S> {
    /// Wraps `inner` with the default settings.
    ///
    /// ```
    /// # let inner = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(futures_util::stream::empty::<tower_sse::Event>())
    /// # });
    /// let service = tower_sse::SseService::new(inner);
    /// ```
    pub fn new(inner: S) -> Self {
        Self::from_layer(inner, SseLayer::new())
    }

    /// The layer with the default settings, for a `ServiceBuilder`.
    ///
    /// ```
    /// let layer = tower_sse::SseService::<()>::layer();
    /// ```
    pub fn layer() -> SseLayer {
        SseLayer::new()
    }

    pub(crate) fn from_layer(inner: S, layer: SseLayer) -> Self {
        SseService { inner, layer }
    }

    /// The inner service.
    ///
    /// ```
    /// # let inner = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(futures_util::stream::empty::<tower_sse::Event>())
    /// # });
    /// let service = tower_sse::SseService::new(inner);
    /// let _inner = service.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # let inner = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(futures_util::stream::empty::<tower_sse::Event>())
    /// # });
    /// let mut service = tower_sse::SseService::new(inner);
    /// let _inner = service.get_mut();
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the inner service out.
    ///
    /// ```
    /// # let inner = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(futures_util::stream::empty::<tower_sse::Event>())
    /// # });
    /// let inner = tower_sse::SseService::new(inner).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, R> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>, Response = R>,
    R: IntoEventStream,
{
    type Response = Response<SseBody<R::Stream>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if request.method() != Method::GET {
            return ResponseFuture::refused(method_not_allowed());
        }
        let mut permit = None;
        if let Some(limit) = &self.layer.limit {
            let (parts, body) = request.into_parts();
            match limit.acquire(&parts) {
                Ok(taken) => permit = Some(taken),
                Err(reached) => return ResponseFuture::refused(reached.into()),
            }
            request = Request::from_parts(parts, body);
        }
        if let Some(id) = LastEventId::from_request(&request, self.layer.query.as_deref()) {
            request.extensions_mut().insert(id);
        }
        let version = request.version();
        ResponseFuture {
            state: State::Inner {
                inner: self.inner.call(request),
                config: Some(self.layer.config.clone()),
                version,
                permit,
            },
        }
    }
}

/// 405 for anything but GET: an event stream is only ever fetched.
fn method_not_allowed() -> Refusal {
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "an event stream is read with GET",
    )
    .header(ALLOW, HeaderValue::from_static("GET"))
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
            config: Option<Arc<Config>>,
            version: Version,
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

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    R: IntoEventStream,
{
    type Output = Result<Response<SseBody<R::Stream>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().state.project() {
            StateProj::Inner {
                inner,
                config,
                version,
                permit,
            } => {
                let answer = ready!(inner.poll(cx))?;
                let config = config
                    .take()
                    .expect("ResponseFuture polled after completion");
                match answer.into_event_stream() {
                    Ok(stream) => sse_response(
                        SseBody::new(stream, config).with_permit(permit.take()),
                        Some(*version),
                    ),
                    // A refusal is not a stream: its place under the limit is freed here.
                    Err(refusal) => {
                        drop(permit.take());
                        refusal.into_response()
                    }
                }
            }
            StateProj::Refused { refusal } => refusal
                .take()
                .expect("ResponseFuture polled after completion")
                .into_response(),
        };
        Poll::Ready(Ok(response))
    }
}
