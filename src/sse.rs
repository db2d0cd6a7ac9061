//! [`Sse`]: a stream of events as a `text/event-stream` response.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http::Response;
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

use crate::Event;
use crate::event_stream::insert_headers;

/// An item of an event stream: an [`Event`], or a `Result` whose error ends the stream.
///
/// When a stream of `Result<Event, E>` yields an error, [`Sse`] yields it as a body
/// error after every event before it. Under [`SseLayer`](crate::SseLayer) the response
/// then ends cleanly, after the last complete event, and the error is reported through
/// [`on_end`](crate::SseLayer::on_end) with [`EndReason::Error`](crate::EndReason::Error).
///
/// ```
/// use tower_sse::{Event, IntoEvent};
///
/// let item: Result<Event, std::io::Error> = Ok(Event::data("x"));
/// assert!(item.into_event().is_ok());
/// ```
pub trait IntoEvent {
    /// The error that ends the stream.
    type Error: Into<Box<dyn StdError + Send + Sync>>;

    /// The event to write, or the error that ends the stream.
    ///
    /// ```
    /// use tower_sse::IntoEvent;
    /// assert!(tower_sse::Event::data("x").into_event().is_ok());
    /// ```
    fn into_event(self) -> Result<Event, Self::Error>;
}

impl IntoEvent for Event {
    type Error = Infallible;

    fn into_event(self) -> Result<Event, Infallible> {
        Ok(self)
    }
}

impl<E: Into<Box<dyn StdError + Send + Sync>>> IntoEvent for Result<Event, E> {
    type Error = E;

    fn into_event(self) -> Result<Event, E> {
        self
    }
}

pin_project! {
    /// A `Stream` of [`Event`]s as the body of a `text/event-stream` response: the one
    /// way to turn events into a response, the same in a tower service, an axum handler
    /// (it is an `IntoResponse`) and a warp filter (a `warp::Reply`).
    ///
    /// Each event goes out as one data frame, the very `Bytes` it was encoded into. Put
    /// [`SseLayer`](crate::SseLayer) around the service (or the router) to get
    /// heartbeats, the `retry:` prelude, coalescing of ready events into one write,
    /// graceful shutdown, limits and end reports: the layer applies them to every
    /// event-stream response, whoever built it.
    ///
    /// ```
    /// use futures_util::stream;
    /// use tower_sse::{Event, Sse};
    ///
    /// let events = stream::iter([Event::data("one"), Event::data("two")]);
    /// let response = Sse::new(events).into_response();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "text/event-stream");
    /// ```
    #[must_use = "an Sse does nothing until it is turned into a response and served"]
    pub struct Sse<S> {
        #[pin]
        stream: S,
        done: bool,
    }
}

impl<S> Sse<S> {
    /// The events of `stream`, as a response body.
    ///
    /// ```
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>());
    /// ```
    pub fn new(stream: S) -> Self {
        Sse {
            stream,
            done: false,
        }
    }

    /// The response: status 200, the headers of an event stream, and this body.
    ///
    /// The headers are `Content-Type: text/event-stream`, `Cache-Control: no-cache,
    /// no-transform`, `X-Accel-Buffering: no` (nginx passes each write on at once) and
    /// `Content-Encoding: identity` (compression layers leave the stream alone, so it is
    /// never held back in a compressor's buffer).
    ///
    /// ```
    /// let response = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .into_response();
    /// assert_eq!(response.headers()["cache-control"], "no-cache, no-transform");
    /// ```
    pub fn into_response(self) -> Response<Self> {
        let mut response = Response::new(self);
        insert_headers(response.headers_mut(), false);
        response
    }
}

impl<S> std::fmt::Debug for Sse<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S> Body for Sse<S>
where
    S: Stream,
    S::Item: IntoEvent,
{
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.stream.poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(item)) => match item.into_event() {
                Ok(event) => Poll::Ready(Some(Ok(Frame::data(event.into_bytes())))),
                Err(error) => {
                    *this.done = true;
                    Poll::Ready(Some(Err(error.into())))
                }
            },
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
