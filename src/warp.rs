//! warp 0.4 integration (feature `warp`): replies and a `Last-Event-ID` filter.
//!
//! [`Sse`] and [`Refusal`] are `warp::Reply`s, and [`last_event_id`] is a filter that
//! yields the [`LastEventId`] a reconnecting client sent. warp has no layers of its own,
//! but `warp::service(filter)` is a tower service: put [`SseLayer`](crate::SseLayer)
//! around it, as around any other, and serve it with hyper.
//!
//! ```
//! use tower::ServiceBuilder;
//! use warp::Filter;
//! use tower_sse::{Hub, LastEventId, Sse, SseLayer, StreamLimit};
//!
//! let hub = Hub::new();
//! let events = warp::path("events")
//!     .and(warp::get())
//!     .and(tower_sse::warp::last_event_id())
//!     .map(move |last: Option<LastEventId>| Sse::new(hub.subscribe(["news"], last.as_ref())));
//! let service = ServiceBuilder::new()
//!     .layer(SseLayer::new().limit(StreamLimit::new(10_000)))
//!     .service(warp::service(events));
//! ```
//!
//! The body of a `warp::Reply` must be `Sync`; a stream that is not (a `BoxStream`, say)
//! is wrapped so that it need not be, since the body is only ever polled through
//! `&mut`.

use std::convert::Infallible;

use futures_core::Stream;
use http::HeaderValue;
use http_body_util::BodyDataStream;
use sync_wrapper::SyncStream;
use warp::Filter;

use crate::{IntoEvent, LastEventId, Refusal, Sse};

impl<S> warp::Reply for Sse<S>
where
    S: Stream + Send + 'static,
    S::Item: IntoEvent,
{
    fn into_response(self) -> warp::reply::Response {
        let (parts, body) = Sse::into_response(self).into_parts();
        let frames = SyncStream::new(BodyDataStream::new(body));
        let mut response = warp::reply::stream(frames).into_response();
        *response.status_mut() = parts.status;
        *response.headers_mut() = parts.headers;
        response
    }
}

impl warp::Reply for Refusal {
    fn into_response(self) -> warp::reply::Response {
        self.into_response_with(Into::into)
    }
}

/// A filter that yields the [`LastEventId`] of the request: the one
/// [`SseLayer`](crate::SseLayer) put in the extensions, else read as the layer reads it
/// (the `Last-Event-ID` header, decoded as UTF-8 so non-ASCII ids survive, else the
/// `lastEventId` query parameter). It never rejects: a malformed value counts as absent
/// and is traced.
///
/// ```
/// use warp::Filter;
/// use tower_sse::LastEventId;
///
/// let route = warp::path("events")
///     .and(tower_sse::warp::last_event_id())
///     .map(|last: Option<LastEventId>| format!("{last:?}"));
/// ```
pub fn last_event_id()
-> impl Filter<Extract = (Option<LastEventId>,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let header = warp::header::value("last-event-id")
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let query = warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    warp::ext::optional::<LastEventId>()
        .and(header)
        .and(query)
        .map(
            |layer: Option<LastEventId>, header: Option<HeaderValue>, query: Option<String>| {
                LastEventId::read(
                    layer.as_ref(),
                    header.as_ref(),
                    query.as_deref(),
                    Some(LastEventId::QUERY_PARAM),
                )
            },
        )
}
