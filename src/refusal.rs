//! Answers other than an event stream: 204 "stop for good", 503 "come back later", and
//! the way an inner service chooses one.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_core::Stream;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::event::write_retry;
use crate::response::insert_sse_headers;
use crate::{IntoEvent, SseBody};

/// A plain response that refuses to open an event stream.
///
/// What a browser's `EventSource` does with it is fixed by the HTML standard: any status
/// other than 200, or a 200 that is not `text/event-stream`, closes the source for good
/// (`readyState` becomes `CLOSED`, and the page's `error` handler runs once). So:
///
/// - [`Refusal::stop`] (204 No Content) is the documented way to tell a client to stop
///   reconnecting: the job is done, the topic is gone, the user logged out.
/// - [`Refusal::unavailable`] (503 with `Retry-After`) is what proxies, load balancers
///   and non-browser clients understand as "overloaded, come back later". A browser
///   does not retry it by itself; the page's code must.
/// - [`Refusal::reconnect_after`] is the answer that a browser *does* retry: a 200
///   event stream carrying only `retry: <ms>` that ends at once, so the `EventSource`
///   reconnects after that delay, sending its `Last-Event-ID`.
/// - [`Refusal::new`] is any other status with a short text, such as 400 for a request
///   the service cannot make sense of.
///
/// An inner service of [`SseLayer`](crate::SseLayer) refuses by answering
/// [`Answer::Refuse`]; a handler that builds [`Sse`](crate::Sse) responses returns
/// [`Refusal::into_response`] (or, with the `axum` and `warp` features, the refusal
/// itself, which is an `IntoResponse` and a `warp::Reply`).
///
/// ```
/// use http::StatusCode;
/// use tower_sse::Refusal;
///
/// let stop = Refusal::stop();
/// assert_eq!(stop.status(), StatusCode::NO_CONTENT);
///
/// let busy = Refusal::unavailable(std::time::Duration::from_secs(30));
/// let response = busy.into_response::<futures_util::stream::Empty<tower_sse::Event>>();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(response.headers()["retry-after"], "30");
/// ```
#[derive(Clone, Debug)]
pub struct Refusal {
    // Boxed: a refusal is the rare path, and a `Result` carrying it stays small.
    inner: Box<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// A 200 `text/event-stream` whose whole body is `body`.
    event_stream: bool,
}

impl Refusal {
    /// A response with `status` and `message` as its `text/plain` body (a line break is
    /// added). Statuses that have no body (1xx, 204, 304) drop the message.
    ///
    /// ```
    /// use http::StatusCode;
    /// let refusal = tower_sse::Refusal::new(StatusCode::BAD_REQUEST, "unknown topic");
    /// assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
    /// ```
    pub fn new(status: StatusCode, message: &str) -> Self {
        let mut refusal = Inner {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            event_stream: false,
        };
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if !bodiless && !message.is_empty() {
            let mut body = BytesMut::with_capacity(message.len() + 1);
            body.put_slice(message.as_bytes());
            body.put_u8(b'\n');
            refusal.body = body.freeze();
            refusal.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        Refusal {
            inner: Box::new(refusal),
        }
    }

    /// 204 No Content: the client must stop. A browser's `EventSource` closes and never
    /// reconnects on its own.
    ///
    /// ```
    /// assert_eq!(tower_sse::Refusal::stop().status(), http::StatusCode::NO_CONTENT);
    /// ```
    pub fn stop() -> Self {
        Refusal::new(StatusCode::NO_CONTENT, "")
    }

    /// 503 Service Unavailable with `Retry-After` (whole seconds, rounded up).
    ///
    /// ```
    /// use std::time::Duration;
    /// let refusal = tower_sse::Refusal::unavailable(Duration::from_millis(1500));
    /// assert_eq!(refusal.headers()["retry-after"], "2");
    /// ```
    pub fn unavailable(retry_after: Duration) -> Self {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many event streams are open; retry later",
        )
        .header(RETRY_AFTER, HeaderValue::from(ceil_secs(retry_after)))
    }

    /// A 200 event stream that only sets the client's reconnection time to `after` and
    /// ends: a browser's `EventSource` reconnects by itself after that delay (a 503
    /// would close it for good).
    ///
    /// ```
    /// use std::time::Duration;
    /// let refusal = tower_sse::Refusal::reconnect_after(Duration::from_secs(5));
    /// assert_eq!(refusal.status(), http::StatusCode::OK);
    /// assert_eq!(refusal.headers()["content-type"], "text/event-stream");
    /// ```
    pub fn reconnect_after(after: Duration) -> Self {
        let mut body = Vec::with_capacity(40);
        body.extend_from_slice(b": come back later\n");
        write_retry(&mut body, after);
        body.push(b'\n');
        let mut headers = HeaderMap::new();
        insert_sse_headers(&mut headers, None, false);
        Refusal {
            inner: Box::new(Inner {
                status: StatusCode::OK,
                headers,
                body: Bytes::from(body),
                event_stream: true,
            }),
        }
    }

    /// Adds a header, replacing one of the same name.
    ///
    /// ```
    /// use http::{HeaderValue, StatusCode, header::WWW_AUTHENTICATE};
    /// let refusal = tower_sse::Refusal::new(StatusCode::UNAUTHORIZED, "log in first")
    ///     .header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    /// assert_eq!(refusal.headers()["www-authenticate"], "Bearer");
    /// ```
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.inner.headers.insert(name, value);
        self
    }

    /// The status of the response.
    ///
    /// ```
    /// assert_eq!(tower_sse::Refusal::stop().status(), 204);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    /// The headers of the response.
    ///
    /// ```
    /// assert!(tower_sse::Refusal::stop().headers().is_empty());
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    /// Whether this is the 200 event stream of [`Refusal::reconnect_after`].
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(tower_sse::Refusal::reconnect_after(Duration::from_secs(1)).is_event_stream());
    /// assert!(!tower_sse::Refusal::stop().is_event_stream());
    /// ```
    pub fn is_event_stream(&self) -> bool {
        self.inner.event_stream
    }

    /// The response, with the body type of an event stream so that a handler can return
    /// either.
    ///
    /// ```
    /// use futures_util::stream::{self, Iter};
    /// use tower_sse::{Event, Refusal, Sse, SseBody};
    ///
    /// type Events = Iter<std::vec::IntoIter<Event>>;
    /// fn answer(authorized: bool) -> http::Response<SseBody<Events>> {
    ///     if !authorized {
    ///         return Refusal::stop().into_response();
    ///     }
    ///     Sse::new(stream::iter(vec![Event::data("hi")])).into_response()
    /// }
    /// assert_eq!(answer(false).status(), 204);
    /// ```
    pub fn into_response<S>(self) -> Response<SseBody<S>> {
        let (status, headers, body) = self.into_parts();
        let mut response = Response::new(SseBody::plain(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// The parts of the response, for the framework integrations.
    pub(crate) fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        let inner = *self.inner;
        (inner.status, inner.headers, inner.body)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused with {}", self.inner.status)
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// What the inner service of [`SseLayer`](crate::SseLayer) answers with: a stream of
/// events, or an [`Answer`] that may refuse.
///
/// Every `Stream` whose items are [`IntoEvent`] is one, so an inner service that always
/// streams simply returns its stream. One that sometimes refuses returns an [`Answer`].
/// (The answer cannot be a `Result<S, Refusal>`: another crate could make `Result` a
/// `Stream`, so the two implementations would overlap.)
///
/// ```
/// use tower_sse::{Answer, Event, IntoEventStream};
///
/// let answer: Answer<futures_util::stream::Empty<Event>> = Answer::Refuse(tower_sse::Refusal::stop());
/// assert!(answer.into_event_stream().is_err());
/// ```
pub trait IntoEventStream {
    /// The stream of events that is served.
    type Stream: Stream<Item: IntoEvent>;

    /// The stream to serve, or the refusal to answer with instead.
    ///
    /// ```
    /// use tower_sse::{Event, IntoEventStream};
    /// let events = futures_util::stream::iter([Event::data("x")]);
    /// assert!(events.into_event_stream().is_ok());
    /// ```
    fn into_event_stream(self) -> Result<Self::Stream, Refusal>;
}

impl<S> IntoEventStream for S
where
    S: Stream,
    S::Item: IntoEvent,
{
    type Stream = S;

    fn into_event_stream(self) -> Result<S, Refusal> {
        Ok(self)
    }
}

/// The answer of an inner service that streams events or refuses to.
///
/// ```
/// use std::convert::Infallible;
/// use futures_util::stream;
/// use tower::{ServiceBuilder, service_fn};
/// use tower_sse::{Answer, Event, Refusal, SseLayer};
///
/// let service = ServiceBuilder::new()
///     .layer(SseLayer::new())
///     .service(service_fn(|request: http::Request<()>| async move {
///         if request.uri().path() == "/jobs/finished" {
///             // The browser stops reconnecting.
///             return Ok::<_, Infallible>(Answer::Refuse(Refusal::stop()));
///         }
///         Ok(Answer::Stream(stream::iter([Event::data("running")])))
///     }));
/// ```
#[derive(Debug)]
pub enum Answer<S> {
    /// Serve this stream of events.
    Stream(S),
    /// Answer with this plain response instead.
    Refuse(Refusal),
}

impl<S> IntoEventStream for Answer<S>
where
    S: Stream,
    S::Item: IntoEvent,
{
    type Stream = S;

    fn into_event_stream(self) -> Result<S, Refusal> {
        match self {
            Answer::Stream(stream) => Ok(stream),
            Answer::Refuse(refusal) => Err(refusal),
        }
    }
}
