//! The tower layer.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::config::Config;
use crate::{Event, KeepAlive, Shutdown, SseService, StreamEnd, StreamLimit};

/// A tower [`Layer`] that turns a service answering with a stream of events into an SSE
/// endpoint.
///
/// The inner service receives the request, with the client's
/// [`LastEventId`](crate::LastEventId) in its extensions when there is one, and answers
/// with any `Stream` whose items are [`Event`] or `Result<Event, E>`. The layer answers
/// with status 200, the event-stream headers and an [`SseBody`](crate::SseBody) that
/// writes the events, heartbeats while idle, and reports how the stream ended.
///
/// The inner service may instead answer with an [`Answer`](crate::Answer), to refuse
/// some requests with a [`Refusal`](crate::Refusal) (204 tells a browser to stop for
/// good). The layer itself answers 405 to anything but GET, and, with a
/// [`limit`](SseLayer::limit), 503 to a request over the cap, without calling the inner
/// service. For axum's `Router::layer`, see `tower_sse::axum::SseRouterLayer` (feature
/// `axum`).
///
/// ```
/// use std::convert::Infallible;
/// use futures_util::stream;
/// use tower::{ServiceBuilder, service_fn};
/// use tower_sse::{Event, LastEventId, SseLayer};
///
/// let service = ServiceBuilder::new()
///     .layer(SseLayer::new())
///     .service(service_fn(|request: http::Request<()>| async move {
///         let resume = request.extensions().get::<LastEventId>().cloned();
///         let first = resume.map_or(0, |id| id.parse::<u64>().unwrap_or(0) + 1);
///         let events = stream::iter(first..first + 3).map(|n| {
///             Event::builder().id(&n.to_string()).data("tick").build()
///         });
///         Ok::<_, Infallible>(events)
///     }));
/// # use futures_util::StreamExt;
/// ```
#[derive(Clone, Debug)]
pub struct SseLayer {
    pub(crate) config: Arc<Config>,
    pub(crate) query: Option<Arc<str>>,
    pub(crate) limit: Option<StreamLimit>,
}

impl SseLayer {
    /// A layer with the defaults: a heartbeat every 15 idle seconds, frames of up to
    /// 64 KiB, the last event id also read from the `lastEventId` query parameter.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new();
    /// ```
    pub fn new() -> Self {
        SseLayer {
            config: Arc::new(Config::default()),
            query: Some(Arc::from("lastEventId")),
            limit: None,
        }
    }

    /// Sets the heartbeat.
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = tower_sse::SseLayer::new()
    ///     .keep_alive(tower_sse::KeepAlive::new().interval(Duration::from_secs(20)));
    /// ```
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.config_mut().keep_alive = Some(keep_alive);
        self
    }

    /// Turns heartbeats off.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().no_keep_alive();
    /// ```
    pub fn no_keep_alive(mut self) -> Self {
        self.config_mut().keep_alive = None;
        self
    }

    /// Writes `retry: <ms>` first on every stream, setting how long clients wait before
    /// they reconnect.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().retry(std::time::Duration::from_secs(3));
    /// ```
    pub fn retry(mut self, retry: Duration) -> Self {
        self.config_mut().set_retry(retry);
        self
    }

    /// Sets the largest data frame made by coalescing ready events (default 64 KiB).
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_frame_size(16 * 1024);
    /// ```
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config_mut().set_max_frame(bytes);
        self
    }

    /// Calls `on_end` once per stream when it ends, with why and what was sent.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new()
    ///     .on_end(|end| println!("{}: {} events, {} bytes", end.reason, end.events, end.bytes));
    /// ```
    pub fn on_end<F>(mut self, on_end: F) -> Self
    where
        F: Fn(&StreamEnd) + Send + Sync + 'static,
    {
        self.config_mut().set_on_end(on_end);
        self
    }

    /// Ends every stream cleanly when `shutdown` is triggered, so that the server's own
    /// graceful shutdown can complete: an SSE response never ends by itself, so without
    /// this hyper-util's `GracefulShutdown` and axum's `with_graceful_shutdown` wait
    /// forever. Each stream writes the [`shutdown_event`](SseLayer::shutdown_event), if
    /// any, and ends; its end is reported as
    /// [`EndReason::Shutdown`](crate::EndReason::Shutdown). See [`Shutdown`] for the
    /// recipes.
    ///
    /// ```
    /// let shutdown = tower_sse::Shutdown::new();
    /// let layer = tower_sse::SseLayer::new().graceful_shutdown(shutdown.clone());
    /// ```
    pub fn graceful_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.config_mut().shutdown = Some(shutdown);
        self
    }

    /// The event written last on every stream that ends on shutdown.
    ///
    /// Give it a `retry` so that browsers reconnect soon, to another instance or to
    /// this one once it is back; the reconnection carries their `Last-Event-ID`. An
    /// event with only a `retry` fires nothing in the page.
    ///
    /// ```
    /// use std::time::Duration;
    /// let bye = tower_sse::Event::builder().retry(Duration::from_millis(250)).build()?;
    /// let layer = tower_sse::SseLayer::new().shutdown_event(bye);
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn shutdown_event(mut self, event: Event) -> Self {
        self.config_mut().set_shutdown_event(event);
        self
    }

    /// Caps the streams open at once (per server, optionally per client address).
    ///
    /// A request over the cap is answered at once, 503 with `Retry-After` by default,
    /// and never reaches the inner service; a stream takes its place when the request
    /// arrives and frees it when its body is dropped. See [`StreamLimit`] for why
    /// tower's `ConcurrencyLimit` cannot do this.
    ///
    /// ```
    /// use tower_sse::{SseLayer, StreamLimit};
    /// let layer = SseLayer::new().limit(StreamLimit::new(10_000).per_client(16));
    /// ```
    pub fn limit(mut self, limit: StreamLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets the query parameter read as the last event id when the header is absent, for
    /// clients that cannot set headers (default `lastEventId`).
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().last_event_id_query("since");
    /// ```
    pub fn last_event_id_query(mut self, name: &str) -> Self {
        self.query = Some(Arc::from(name));
        self
    }

    /// Reads the last event id from the header only.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().no_last_event_id_query();
    /// ```
    pub fn no_last_event_id_query(mut self) -> Self {
        self.query = None;
        self
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = SseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseService::from_layer(inner, self.clone())
    }
}
