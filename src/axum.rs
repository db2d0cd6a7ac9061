//! axum 0.8 integration (feature `axum`): responses and extractors.
//!
//! [`SseLayer`](crate::SseLayer) is an ordinary `Router::layer`: it applies its settings
//! to every event-stream response below it (axum's own `Sse` included) and leaves the
//! other routes alone. What this feature adds is what handlers need:
//!
//! - [`Sse`] and [`Refusal`] are `IntoResponse`s, so a handler can return
//!   `Result<Sse<S>, Refusal>`;
//! - [`LastEventId`] and `Option<LastEventId>` are extractors (the one the layer put in
//!   the extensions, or read from the request);
//! - a hub [`Subscription`] is an extractor when the router's state is (or contains) a
//!   [`Hub`]: topics from the query, resumed from the `Last-Event-ID`, 400 or 403 when it
//!   cannot be served.
//!
//! ```
//! use axum::{Router, extract::State, routing::{get, post}};
//! use tokio_util::sync::CancellationToken;
//! use tower_sse::{Event, Hub, Sse, SseLayer, StreamLimit, Subscription};
//!
//! async fn events(subscription: Subscription) -> Sse<Subscription> {
//!     Sse::new(subscription)
//! }
//!
//! async fn publish(State(hub): State<Hub>, body: String) -> String {
//!     match hub.publish("news", Event::data(&body)) {
//!         Ok(published) => format!("{}\n", published.id().unwrap_or_default()),
//!         Err(error) => format!("not published: {error}\n"),
//!     }
//! }
//!
//! let shutdown = CancellationToken::new();
//! let app: Router = Router::new()
//!     .route("/events", get(events))
//!     .route("/publish", post(publish))
//!     .with_state(Hub::new())
//!     .layer(
//!         SseLayer::new()
//!             .graceful_shutdown(shutdown.clone())
//!             .limit(StreamLimit::new(10_000)),
//!     );
//! ```

use std::convert::Infallible;

use ::axum::body::Body;
use ::axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use ::axum::response::{IntoResponse, Response};
use futures_core::Stream;
use http::StatusCode;
use http::request::Parts;

use crate::{Hub, IntoEvent, LastEventId, Refusal, Sse, Subscription};

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
        self.into_response_with(Body::from)
    }
}

/// The last event id of a request: the one the layer put in the extensions, else read
/// as the layer reads it with its default query parameter.
fn last_event_id(parts: &Parts) -> Option<LastEventId> {
    LastEventId::from_parts(parts, Some(LastEventId::QUERY_PARAM))
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
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        last_event_id(parts).ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "the request has no valid Last-Event-ID",
            )
        })
    }
}

/// A [`Hub`] subscription as an extractor, when the router's state is a `Hub` (or
/// `Hub: FromRef<YourState>`): the topics come from the query (`?topic=a&topic=b`), the
/// resume point from the request's [`LastEventId`], as [`Hub::subscribe_parts`] reads
/// them. A request it cannot make sense of (no topic, a topic that is not UTF-8, too
/// many topics) is answered 400 with the reason, one the hub's authorize hook refuses
/// 403.
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
        if parts.extensions.get::<LastEventId>().is_none()
            && let Some(id) = last_event_id(parts)
        {
            parts.extensions.insert(id);
        }
        Hub::from_ref(state)
            .subscribe_parts(parts)
            .map_err(Refusal::from)
    }
}
