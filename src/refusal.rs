//! Answers other than an event stream: 204 "stop for good", 503 "come back later", 400
//! and 403, and the stream that only says when to come back.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::event::write_retry;
use crate::event_stream::{insert_headers, mark_served};

/// A plain response that refuses to open an event stream, and the error that says why.
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
///   the service cannot make sense of. A hub's
///   [`RequestError`](crate::hub::RequestError) turns into 400 or 403.
///
/// [`into_response`](Refusal::into_response) makes it an ordinary `http::Response`,
/// which a service that sometimes streams answers through `http_body_util::Either` (or
/// a boxed body); with the `axum` and `warp` features a `Refusal` is an `IntoResponse`
/// and a `warp::Reply`, so an axum handler can return `Result<Sse<S>, Refusal>`.
/// [`SseLayer`](crate::SseLayer) passes refusals through untouched.
///
/// ```
/// use std::convert::Infallible;
/// use futures_util::stream;
/// use http_body_util::Either;
/// use tower::{ServiceBuilder, service_fn};
/// use tower_sse::{Event, Refusal, Sse, SseLayer};
///
/// let service = ServiceBuilder::new()
///     .layer(SseLayer::new())
///     .service(service_fn(|request: http::Request<()>| async move {
///         if request.uri().path() == "/jobs/finished" {
///             // The browser stops reconnecting.
///             return Ok::<_, Infallible>(Refusal::stop().into_response().map(Either::Right));
///         }
///         let events = stream::iter([Event::data("running")]);
///         Ok(Sse::new(events).into_response().map(Either::Left))
///     }));
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
        let mut inner = Inner {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if !bodiless && !message.is_empty() {
            let mut body = BytesMut::with_capacity(message.len() + 1);
            body.put_slice(message.as_bytes());
            body.put_u8(b'\n');
            inner.body = body.freeze();
            inner.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        Refusal {
            inner: Box::new(inner),
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
        insert_headers(&mut headers, false);
        Refusal {
            inner: Box::new(Inner {
                status: StatusCode::OK,
                headers,
                body: Bytes::from(body),
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

    /// The response.
    ///
    /// ```
    /// let response = tower_sse::Refusal::stop().into_response();
    /// assert_eq!(response.status(), 204);
    /// ```
    pub fn into_response(self) -> Response<Full<Bytes>> {
        self.into_response_with(Full::new)
    }

    /// The response, with its body made from the text by `body`: for the framework
    /// integrations, whose bodies are their own types.
    pub(crate) fn into_response_with<B>(self, body: impl FnOnce(Bytes) -> B) -> Response<B> {
        let Inner {
            status,
            headers,
            body: text,
        } = *self.inner;
        let mut response = Response::new(body(text));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        // An `SseLayer` passes it through as it is.
        mark_served(response.extensions_mut());
        response
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.status;
        match std::str::from_utf8(&self.inner.body) {
            Ok(text) if !text.trim().is_empty() => write!(f, "{status}: {}", text.trim_end()),
            _ => write!(f, "{status}"),
        }
    }
}

impl std::error::Error for Refusal {}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
