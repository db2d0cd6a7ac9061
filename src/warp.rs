//! warp 0.4 integration (feature `warp`).
//!
//! [`Sse`], [`Refusal`] and [`LimitReached`] are `warp::Reply`s, and [`last_event_id`]
//! is a filter that yields the [`LastEventId`] a reconnecting client sent. warp has no
//! tower layers, so the settings of [`SseLayer`](crate::SseLayer) are set on each
//! [`Sse`], and a [`StreamLimit`](crate::StreamLimit) is applied in the handler, with the
//! client address from `warp::addr::remote()`:
//!
//! ```
//! use std::net::SocketAddr;
//! use warp::Filter;
//! use tower_sse::{Hub, LastEventId, Refusal, Shutdown, Sse, StreamLimit};
//!
//! let hub = Hub::new();
//! let shutdown = Shutdown::new();
//! let limit = StreamLimit::new(10_000).per_client(16);
//!
//! let events = warp::path("events")
//!     .and(warp::get())
//!     .and(tower_sse::warp::last_event_id())
//!     .and(warp::addr::remote())
//!     .map(move |last: Option<LastEventId>, addr: Option<SocketAddr>| {
//!         let permit = match limit.try_acquire(addr.map(|a| a.ip())) {
//!             Ok(permit) => permit,
//!             Err(reached) => return warp::Reply::into_response(Refusal::from(reached)),
//!         };
//!         let subscription = hub.subscribe(["news"], last.as_ref());
//!         warp::Reply::into_response(
//!             Sse::new(subscription).graceful_shutdown(shutdown.clone()).permit(permit),
//!         )
//!     });
//! ```
//!
//! The body of a `warp::Reply` must be `Sync`; a stream that is not (a `BoxStream`, say)
//! is wrapped so that it need not be, since the body is only ever polled through
//! `&mut`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderValue, Uri};
use http_body::Body;
use pin_project_lite::pin_project;
use sync_wrapper::SyncStream;
use warp::Filter;

use crate::{IntoEvent, LAST_EVENT_ID, LastEventId, LimitReached, Refusal, Sse, SseBody};

impl<S> warp::Reply for Sse<S>
where
    S: Stream + Send + 'static,
    S::Item: IntoEvent,
{
    fn into_response(self) -> warp::reply::Response {
        let (parts, body) = Sse::into_response(self).into_parts();
        let stream = SyncStream::new(DataFrames { body });
        let mut response = warp::reply::stream(stream).into_response();
        *response.status_mut() = parts.status;
        *response.headers_mut() = parts.headers;
        response
    }
}

impl warp::Reply for Refusal {
    fn into_response(self) -> warp::reply::Response {
        let (status, headers, body) = self.into_parts();
        let mut response = warp::reply::Response::new(body.into());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

impl warp::Reply for LimitReached {
    fn into_response(self) -> warp::reply::Response {
        warp::Reply::into_response(Refusal::from(self))
    }
}

pin_project! {
    /// The data frames of an event-stream body, as the stream `warp::reply::stream` takes.
    struct DataFrames<S> {
        #[pin]
        body: SseBody<S>,
    }
}

impl<S> Stream for DataFrames<S>
where
    S: Stream,
    S::Item: IntoEvent,
{
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut body = self.project().body;
        loop {
            match std::task::ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Some(Err(never)) => match never {},
            }
        }
    }
}

/// A filter that yields the [`LastEventId`] of the request, read as
/// [`SseLayer`](crate::SseLayer) reads it: the `Last-Event-ID` header (decoded as UTF-8,
/// so non-ASCII ids survive), else the `lastEventId` query parameter. It never rejects:
/// a malformed value counts as absent and is traced.
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
    last_event_id_with_query(Some("lastEventId"))
}

/// [`last_event_id`] with another query parameter, or (with `None`) the header only.
///
/// ```
/// use warp::Filter;
/// let route = tower_sse::warp::last_event_id_with_query(Some("since"))
///     .map(|last: Option<tower_sse::LastEventId>| format!("{last:?}"));
/// ```
pub fn last_event_id_with_query(
    query: Option<&str>,
) -> impl Filter<Extract = (Option<LastEventId>,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let query: Option<Arc<str>> = query.map(Arc::from);
    let header = warp::header::value(LAST_EVENT_ID)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let raw_query = warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    header
        .and(raw_query)
        .map(move |header: Option<HeaderValue>, raw: Option<String>| {
            resolve(header, raw, query.as_deref())
        })
}

fn resolve(
    header: Option<HeaderValue>,
    raw: Option<String>,
    query: Option<&str>,
) -> Option<LastEventId> {
    if let Some(value) = header {
        let mut headers = http::HeaderMap::new();
        headers.insert(LAST_EVENT_ID, value);
        match LastEventId::from_headers(&headers) {
            Ok(Some(id)) => return Some(id),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "ignoring malformed Last-Event-ID header"),
        }
    }
    let (query, raw) = (query?, raw?);
    let uri: Uri = match format!("/?{raw}").parse() {
        Ok(uri) => uri,
        Err(_) => return None,
    };
    match LastEventId::from_query(&uri, query) {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%error, parameter = query, "ignoring malformed last event id in query");
            None
        }
    }
}
