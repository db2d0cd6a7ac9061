//! axum 0.8 integration (feature `axum`).
//!
//! Three ways in, from the least to the most axum-flavoured:
//!
//! - **A tower service behind [`SseLayer`], with `Router::route_service`.** The inner
//!   service answers with a stream (or an [`Answer`](crate::Answer)); everything else is
//!   the layer's. Nothing here is needed for it.
//! - **Handlers that return [`Sse`].** [`Sse`] is an `IntoResponse`, [`LastEventId`] and
//!   `Option<LastEventId>` are extractors, and so is a hub [`Subscription`] when the
//!   router's state is (or contains) a [`Hub`].
//! - **`Router::layer(SseRouterLayer)` with [`SseRequest`] handlers.** [`SseLayer`] itself
//!   cannot be a `Router::layer`: the services it wraps answer with a stream of events,
//!   and a router's routes answer with `Response<Body>`. (A second implementation for
//!   responses would overlap the one for streams, which Rust forbids.) So
//!   [`SseRouterLayer`] carries an [`SseLayer`]'s settings (heartbeat, `retry`,
//!   [`StreamLimit`](crate::StreamLimit), [`Shutdown`](crate::Shutdown), `on_end`, the
//!   last-event-id query parameter) to the handlers of every route below it, through the
//!   request's extensions, and the [`SseRequest`] extractor hands them to the handler's
//!   response. The cap is checked by the extractor, before the handler runs; a request
//!   over it gets the limit's 503. The layer also puts the [`LastEventId`] in the
//!   extensions and completes the headers of every `text/event-stream` response below
//!   it, axum's own `Sse` included (`Cache-Control: no-cache, no-transform`,
//!   `X-Accel-Buffering: no`, `Content-Encoding: identity`, and `Connection: keep-alive`
//!   on HTTP/1.x), leaving headers a handler set alone.
//!
//! ```
//! use axum::{Router, extract::State, routing::get};
//! use tower_sse::axum::{SseRequest, SseRouterLayer};
//! use tower_sse::{Hub, Shutdown, SseLayer, StreamLimit, Subscription};
//!
//! async fn events(sse: SseRequest, subscription: Subscription) -> impl axum::response::IntoResponse {
//!     sse.respond(subscription)
//! }
//!
//! async fn publish(State(hub): State<Hub>, body: String) -> &'static str {
//!     let _ = hub.publish("news", tower_sse::Event::data(&body));
//!     "ok"
//! }
//!
//! let shutdown = Shutdown::new();
//! let app: Router = Router::new()
//!     .route("/events", get(events))
//!     .route("/publish", axum::routing::post(publish))
//!     .with_state(Hub::new())
//!     .layer(SseRouterLayer::new(
//!         SseLayer::new()
//!             .graceful_shutdown(shutdown.clone())
//!             .limit(StreamLimit::new(10_000)),
//!     ));
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ::axum::body::Body;
use ::axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use ::axum::response::{IntoResponse, Response};
use futures_core::Stream;
use http::header::{ALLOW, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, StatusCode, Version};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::response::insert_sse_headers;
use crate::{
    Hub, IntoEvent, LastEventId, LimitReached, Refusal, Sse, SseLayer, StreamPermit, Subscription,
};

impl<S> IntoResponse for Sse<S>
where
    S: Stream + Send + 'static,
    S::Item: IntoEvent,
{
    fn into_response(self) -> Response {
        Sse::into_response(self).map(Body::new)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, headers, body) = self.into_parts();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

impl IntoResponse for LimitReached {
    fn into_response(self) -> Response {
        IntoResponse::into_response(Refusal::from(self))
    }
}

/// The settings an [`SseRouterLayer`] hands to the handlers below it.
#[derive(Clone)]
struct RouterSettings(Arc<SseLayer>);

/// The last event id of a request: the one a layer already put in the extensions, else
/// read as [`SseLayer`] reads it, with the query parameter of the router layer (or the
/// default `lastEventId`). A malformed value counts as absent and is traced.
fn last_event_id(parts: &Parts) -> Option<LastEventId> {
    if let Some(id) = parts.extensions.get::<LastEventId>() {
        return Some(id.clone());
    }
    let query = match parts.extensions.get::<RouterSettings>() {
        Some(settings) => settings.0.query.clone(),
        None => Some(Arc::from("lastEventId")),
    };
    match LastEventId::from_headers(&parts.headers) {
        Ok(Some(id)) => return Some(id),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "ignoring malformed Last-Event-ID header"),
    }
    let query = query?;
    match LastEventId::from_query(&parts.uri, &query) {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%error, parameter = &*query, "ignoring malformed last event id in query");
            None
        }
    }
}

/// `Option<LastEventId>` extracts the id a reconnecting client sent, or `None`; it never
/// rejects (a malformed value counts as absent).
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_sse::LastEventId;
///
/// async fn events(last: Option<LastEventId>) -> String {
///     last.map_or("fresh".into(), |id| format!("resuming after {id}"))
/// }
/// let app: Router = Router::new().route("/events", get(events));
/// ```
impl<S> OptionalFromRequestParts<S> for LastEventId
where
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(last_event_id(parts))
    }
}

/// `LastEventId` as an extractor requires one, and answers 400 without it; most
/// handlers want `Option<LastEventId>`.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_sse::LastEventId;
///
/// async fn resume(last: LastEventId) -> String {
///     format!("resuming after {last}")
/// }
/// let app: Router = Router::new().route("/resume", get(resume));
/// ```
impl<S> FromRequestParts<S> for LastEventId
where
    S: Send + Sync,
{
    type Rejection = MissingLastEventId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        last_event_id(parts).ok_or(MissingLastEventId)
    }
}

/// The rejection of the [`LastEventId`] extractor: the request has none (or a malformed
/// one). Answers 400.
///
/// ```
/// use axum::response::IntoResponse;
/// let response = tower_sse::axum::MissingLastEventId.into_response();
/// assert_eq!(response.status(), 400);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingLastEventId;

impl fmt::Display for MissingLastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request has no valid Last-Event-ID")
    }
}

impl std::error::Error for MissingLastEventId {}

impl IntoResponse for MissingLastEventId {
    fn into_response(self) -> Response {
        IntoResponse::into_response(Refusal::new(StatusCode::BAD_REQUEST, &self.to_string()))
    }
}

/// A [`Hub`] subscription as an extractor, when the router's state is a `Hub` (or
/// `Hub: FromRef<YourState>`): the topics come from the query (`?topic=a&topic=b`), the
/// resume point from the request's [`LastEventId`], as
/// [`Hub::subscribe_parts`] reads them. A request it cannot make sense of (no topic,
/// a topic that is not UTF-8, too many topics) is answered 400 with the reason, one the
/// hub's authorize hook refuses 403.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_sse::{Hub, Sse, Subscription};
///
/// async fn events(subscription: Subscription) -> Sse<Subscription> {
///     Sse::new(subscription)
/// }
/// let app: Router = Router::new().route("/events", get(events)).with_state(Hub::new());
/// ```
impl<S> FromRequestParts<S> for Subscription
where
    Hub: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let hub = Hub::from_ref(state);
        if parts.extensions.get::<LastEventId>().is_none()
            && let Some(id) = last_event_id(parts)
        {
            parts.extensions.insert(id);
        }
        // The whole request head, so that the hub's authorize hook sees headers and
        // extensions; a forbidden topic is answered 403, anything else 400.
        hub.subscribe_parts(parts).map_err(Refusal::from)
    }
}

/// An extractor for a handler that answers with an event stream, under an
/// [`SseRouterLayer`]: it carries the layer's settings, the request's HTTP version, its
/// [`LastEventId`], and the stream's place under the layer's
/// [`StreamLimit`](crate::StreamLimit).
///
/// It rejects a method other than GET with 405, and a request over the limit with the
/// limit's answer (503 and `Retry-After` by default), before the handler runs. Without
/// an [`SseRouterLayer`] above the route it uses the default settings.
///
/// ```
/// use axum::{Router, response::IntoResponse, routing::get};
/// use futures_util::stream;
/// use tower_sse::axum::{SseRequest, SseRouterLayer};
/// use tower_sse::{Event, SseLayer};
///
/// async fn countdown(sse: SseRequest) -> impl IntoResponse {
///     let from = sse.last_event_id().and_then(|id| id.parse::<u32>().ok()).unwrap_or(10);
///     let events = stream::iter((0..from).rev()).map(|n| {
///         Event::builder().id(&n.to_string()).data(&n.to_string()).build()
///     });
///     sse.respond(events)
/// }
/// let app: Router = Router::new()
///     .route("/countdown", get(countdown))
///     .layer(SseRouterLayer::new(SseLayer::new().retry(std::time::Duration::from_secs(1))));
/// # use futures_util::StreamExt;
/// ```
#[derive(Debug)]
pub struct SseRequest {
    settings: Option<Arc<SseLayer>>,
    version: Version,
    last_event_id: Option<LastEventId>,
    permit: Option<StreamPermit>,
}

impl SseRequest {
    /// The id of the last event the client received, if it sent one.
    ///
    /// ```
    /// fn resume_point(sse: &tower_sse::axum::SseRequest) -> u64 {
    ///     sse.last_event_id().and_then(|id| id.parse().ok()).unwrap_or(0)
    /// }
    /// ```
    pub fn last_event_id(&self) -> Option<&LastEventId> {
        self.last_event_id.as_ref()
    }

    /// The HTTP version of the request.
    ///
    /// ```
    /// fn is_http2(sse: &tower_sse::axum::SseRequest) -> bool {
    ///     sse.version() == http::Version::HTTP_2
    /// }
    /// ```
    pub fn version(&self) -> http::Version {
        self.version
    }

    /// The response that streams `stream`, with the layer's settings; it keeps the
    /// stream's place under the limit until the stream ends. Its settings can still be
    /// changed, for this response only.
    ///
    /// ```
    /// use tower_sse::{Event, Sse, axum::SseRequest};
    ///
    /// fn respond(sse: SseRequest) -> Sse<futures_util::stream::Pending<Event>> {
    ///     sse.respond(futures_util::stream::pending())
    ///         .retry(std::time::Duration::from_secs(3))
    /// }
    /// ```
    pub fn respond<S>(self, stream: S) -> Sse<S> {
        let config = self
            .settings
            .map_or_else(Default::default, |settings| settings.config.clone());
        Sse::configured(stream, config, Some(self.version), self.permit)
    }
}

impl<S> FromRequestParts<S> for SseRequest
where
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "an event stream is read with GET",
            )
            .header(ALLOW, HeaderValue::from_static("GET")));
        }
        let settings = parts
            .extensions
            .get::<RouterSettings>()
            .map(|settings| settings.0.clone());
        let permit = match settings.as_ref().and_then(|s| s.limit.as_ref()) {
            Some(limit) => Some(limit.acquire(parts)?),
            None => None,
        };
        Ok(SseRequest {
            last_event_id: last_event_id(parts),
            version: parts.version,
            settings,
            permit,
        })
    }
}

/// A layer for `Router::layer` that gives the [`SseRequest`] handlers below it the
/// settings of an [`SseLayer`], puts the [`LastEventId`] in every request's
/// extensions, and completes the headers of every `text/event-stream` response. See
/// the [module documentation](self) for why [`SseLayer`] itself cannot be a router
/// layer.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_sse::{SseLayer, StreamLimit, axum::SseRouterLayer};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(SseRouterLayer::new(SseLayer::new().limit(StreamLimit::new(1000))));
/// ```
#[derive(Clone, Debug)]
pub struct SseRouterLayer {
    settings: Arc<SseLayer>,
}

impl SseRouterLayer {
    /// A router layer with the settings of `layer`.
    ///
    /// ```
    /// let layer = tower_sse::axum::SseRouterLayer::new(tower_sse::SseLayer::new());
    /// ```
    pub fn new(layer: SseLayer) -> Self {
        SseRouterLayer {
            settings: Arc::new(layer),
        }
    }
}

impl From<SseLayer> for SseRouterLayer {
    fn from(layer: SseLayer) -> Self {
        SseRouterLayer::new(layer)
    }
}

impl<S> Layer<S> for SseRouterLayer {
    type Service = SseRouterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseRouterService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service of an [`SseRouterLayer`].
///
/// ```
/// use tower::Layer;
/// use tower_sse::{SseLayer, axum::SseRouterLayer};
///
/// let router: axum::Router = axum::Router::new();
/// let service = SseRouterLayer::new(SseLayer::new()).layer(router);
/// let _router = service.into_inner();
/// ```
#[derive(Clone, Debug)]
pub struct SseRouterService<S> {
    inner: S,
    settings: Arc<SseLayer>,
}

impl<S> SseRouterService<S> {
    /// The inner service.
    ///
    /// ```
    /// # use tower::Layer;
    /// # let service = tower_sse::axum::SseRouterLayer::new(tower_sse::SseLayer::new())
    /// #     .layer(axum::Router::<()>::new());
    /// let _router = service.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # use tower::Layer;
    /// # let mut service = tower_sse::axum::SseRouterLayer::new(tower_sse::SseLayer::new())
    /// #     .layer(axum::Router::<()>::new());
    /// let _router = service.get_mut();
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the inner service out.
    ///
    /// ```
    /// # use tower::Layer;
    /// # let service = tower_sse::axum::SseRouterLayer::new(tower_sse::SseLayer::new())
    /// #     .layer(axum::Router::<()>::new());
    /// let _router: axum::Router = service.into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseRouterService<S>
where
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = RouterFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if request.extensions().get::<LastEventId>().is_none()
            && let Some(id) = LastEventId::from_request(&request, self.settings.query.as_deref())
        {
            request.extensions_mut().insert(id);
        }
        request
            .extensions_mut()
            .insert(RouterSettings(self.settings.clone()));
        RouterFuture {
            version: request.version(),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The response future of [`SseRouterService`].
    pub struct RouterFuture<F> {
        #[pin]
        inner: F,
        version: Version,
    }
}

impl<F> fmt::Debug for RouterFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterFuture")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for RouterFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let is_event_stream = response.status() == StatusCode::OK
            && response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        if is_event_stream {
            insert_sse_headers(response.headers_mut(), Some(*this.version), true);
        }
        Poll::Ready(Ok(response))
    }
}
