//! An SSE response built from one stream, and the headers every SSE response carries.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, Version};

use crate::config::Config;
use crate::{Event, KeepAlive, Shutdown, SseBody, StreamEnd, StreamPermit};

const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// An SSE response for code that is not a whole service: a handler that returns one
/// stream. It has the same settings as [`SseLayer`](crate::SseLayer).
///
/// ```
/// use futures_util::stream;
/// use tower_sse::{Event, KeepAlive, Sse};
///
/// let events = stream::iter([Event::data("one"), Event::data("two")]);
/// let response = Sse::new(events)
///     .keep_alive(KeepAlive::new())
///     .http_version(http::Version::HTTP_11)
///     .into_response();
/// assert_eq!(response.headers()["content-type"], "text/event-stream");
/// assert_eq!(response.headers()["connection"], "keep-alive");
/// ```
#[derive(Debug)]
#[must_use = "an Sse does nothing until it is turned into a response"]
pub struct Sse<S> {
    stream: S,
    config: Arc<Config>,
    version: Option<Version>,
    permit: Option<StreamPermit>,
}

impl<S> Sse<S> {
    /// A response that writes the events of `stream`, with a heartbeat every 15 idle
    /// seconds.
    ///
    /// ```
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>());
    /// ```
    pub fn new(stream: S) -> Self {
        Sse {
            stream,
            config: Arc::new(Config::default()),
            version: None,
            permit: None,
        }
    }

    /// A response with the settings of a layer, for the framework integrations.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn configured(
        stream: S,
        config: Arc<Config>,
        version: Option<Version>,
        permit: Option<StreamPermit>,
    ) -> Self {
        Sse {
            stream,
            config,
            version,
            permit,
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Sets the heartbeat.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .keep_alive(tower_sse::KeepAlive::new().interval(Duration::from_secs(5)));
    /// ```
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.config_mut().keep_alive = Some(keep_alive);
        self
    }

    /// Turns heartbeats off.
    ///
    /// ```
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>()).no_keep_alive();
    /// ```
    pub fn no_keep_alive(mut self) -> Self {
        self.config_mut().keep_alive = None;
        self
    }

    /// Writes `retry: <ms>` first, setting how long the client waits before it reconnects.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .retry(Duration::from_secs(2));
    /// ```
    pub fn retry(mut self, retry: Duration) -> Self {
        self.config_mut().set_retry(retry);
        self
    }

    /// Sets the largest data frame made by coalescing ready events (default 64 KiB).
    ///
    /// ```
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .max_frame_size(16 * 1024);
    /// ```
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config_mut().set_max_frame(bytes);
        self
    }

    /// Calls `on_end` once when the stream ends, with why and what was sent.
    ///
    /// ```
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .on_end(|end| println!("{} after {} events", end.reason, end.events));
    /// ```
    pub fn on_end<F>(mut self, on_end: F) -> Self
    where
        F: Fn(&StreamEnd) + Send + Sync + 'static,
    {
        self.config_mut().set_on_end(on_end);
        self
    }

    /// Ends the stream cleanly when `shutdown` is triggered.
    ///
    /// ```
    /// let shutdown = tower_sse::Shutdown::new();
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .graceful_shutdown(shutdown.clone());
    /// ```
    pub fn graceful_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.config_mut().shutdown = Some(shutdown);
        self
    }

    /// The event written last when the stream ends on shutdown, for instance one with a
    /// short `retry` so that browsers reconnect quickly to another instance.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sse::Event;
    /// let bye = Event::builder().retry(Duration::from_millis(500)).event("bye").data("").build()?;
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<Event>()).shutdown_event(bye);
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn shutdown_event(mut self, event: Event) -> Self {
        self.config_mut().set_shutdown_event(event);
        self
    }

    /// The HTTP version of the request this answers: `Connection: keep-alive` is added
    /// for HTTP/1.x only. Without it no connection header is written.
    ///
    /// ```
    /// let sse = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .http_version(http::Version::HTTP_2);
    /// ```
    pub fn http_version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }

    /// Holds `permit` until the stream ends, so that the stream counts toward its
    /// [`StreamLimit`](crate::StreamLimit) for as long as it is open.
    ///
    /// ```
    /// use tower_sse::{Event, Refusal, Sse, StreamLimit};
    ///
    /// let limit = StreamLimit::new(1);
    /// let permit = limit.try_acquire(None).map_err(Refusal::from).unwrap();
    /// let response = Sse::new(futures_util::stream::pending::<Event>())
    ///     .permit(permit)
    ///     .into_response();
    /// assert_eq!(limit.open_streams(), 1);
    /// drop(response);
    /// assert_eq!(limit.open_streams(), 0);
    /// ```
    pub fn permit(mut self, permit: StreamPermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// The response: status 200, the SSE headers, and an [`SseBody`] over the stream.
    ///
    /// ```
    /// let response = tower_sse::Sse::new(futures_util::stream::empty::<tower_sse::Event>())
    ///     .into_response();
    /// assert_eq!(response.status(), 200);
    /// ```
    pub fn into_response(self) -> Response<SseBody<S>> {
        let body = SseBody::new(self.stream, self.config).with_permit(self.permit);
        sse_response(body, self.version)
    }
}

/// Wraps `body` in a 200 response with the headers of an event stream.
pub(crate) fn sse_response<B>(body: B, version: Option<Version>) -> Response<B> {
    let mut response = Response::new(body);
    insert_sse_headers(response.headers_mut(), version, false);
    response
}

/// Writes the headers of an event stream (all of them, or with `only_missing` those not
/// there yet).
///
/// `Content-Encoding: identity` keeps compression layers (tower-http's among them, even
/// with a compress-everything predicate) from compressing the stream, which older
/// versions also buffered; `Cache-Control: no-transform` asks proxies the same;
/// `X-Accel-Buffering: no` turns off nginx's response buffering. `Connection:
/// keep-alive` is for HTTP/1.x only: HTTP/2 and HTTP/3 forbid connection headers.
pub(crate) fn insert_sse_headers(
    headers: &mut HeaderMap,
    version: Option<Version>,
    only_missing: bool,
) {
    let mut put = |name: HeaderName, value: &'static str| {
        if !only_missing || !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    put(CONTENT_TYPE, "text/event-stream");
    put(CACHE_CONTROL, "no-cache, no-transform");
    put(X_ACCEL_BUFFERING, "no");
    put(CONTENT_ENCODING, "identity");
    if matches!(version, Some(Version::HTTP_10 | Version::HTTP_11)) {
        put(CONNECTION, "keep-alive");
    }
}
