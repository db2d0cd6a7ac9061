//! The service the layer builds, and its response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::config::Config;
use crate::response::sse_response;
use crate::{IntoEvent, LastEventId, SseBody, SseLayer};

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

impl<S, ReqBody, St> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>, Response = St>,
    St: Stream,
    St::Item: IntoEvent,
{
    type Response = Response<SseBody<St>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if request.method() != Method::GET {
            return ResponseFuture::refused(method_not_allowed());
        }
        let version = request.version();
        if let Some(id) = LastEventId::from_request(&request, self.layer.query.as_deref()) {
            request.extensions_mut().insert(id);
        }
        ResponseFuture {
            state: State::Inner {
                inner: self.inner.call(request),
                config: Some(self.layer.config.clone()),
                version,
            },
        }
    }
}

/// 405 for anything but GET: an event stream is only ever fetched.
fn method_not_allowed<S>() -> Response<SseBody<S>> {
    let mut response = Response::new(SseBody::plain(Bytes::from_static(
        b"an event stream is read with GET\n",
    )));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let headers = response.headers_mut();
    headers.insert(ALLOW, HeaderValue::from_static("GET"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pin_project! {
    /// The response future of [`SseService`].
    pub struct ResponseFuture<F, S> {
        #[pin]
        state: State<F, S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S> {
        Inner {
            #[pin]
            inner: F,
            config: Option<Arc<Config>>,
            version: Version,
        },
        Refused {
            response: Option<Response<SseBody<S>>>,
        },
    }
}

impl<F, S> ResponseFuture<F, S> {
    fn refused(response: Response<SseBody<S>>) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, S> std::fmt::Debug for ResponseFuture<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, St, E> Future for ResponseFuture<F, St>
where
    F: Future<Output = Result<St, E>>,
    St: Stream,
    St::Item: IntoEvent,
{
    type Output = Result<Response<SseBody<St>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().state.project() {
            StateProj::Inner {
                inner,
                config,
                version,
            } => {
                let stream = ready!(inner.poll(cx))?;
                let config = config
                    .take()
                    .expect("ResponseFuture polled after completion");
                sse_response(SseBody::new(stream, config), Some(*version))
            }
            StateProj::Refused { response } => response
                .take()
                .expect("ResponseFuture polled after completion"),
        };
        Poll::Ready(Ok(response))
    }
}
