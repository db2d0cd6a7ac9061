//! [`SseLayer`]: the tower layer, and its settings.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

use super::settings::{Settings, Stall};
use super::stream::{MAX_BATCH_DELAY, Shared};
use crate::event::write_retry;
use crate::{Event, SseService, StreamCompression, StreamEnd, StreamLimit};

/// A tower [`Layer`] that makes every event stream below it correct and boring to run.
///
/// It works as tower-http's middleware do: it wraps any service that answers with an
/// `http::Response`, and it touches only the responses that are event streams (status
/// 200, `Content-Type: text/event-stream`), whoever built them: [`Sse`](crate::Sse),
/// axum's own `Sse`, warp's, or any other body, such as a proxied upstream stream whose
/// frames split events anywhere: the layer follows where the stream's events end and
/// writes its own frames (heartbeats, the shutdown event) only there, never inside one.
/// Other responses pass through untouched, so the layer can sit on a whole axum
/// `Router` (`Router::layer`), a warp service (`warp::service`) or a single tower
/// service alike.
///
/// To every event stream it adds:
///
/// - the headers (`Cache-Control: no-cache, no-transform`, `X-Accel-Buffering: no`,
///   `Content-Encoding: identity`, those a handler did not set, and `Connection:
///   keep-alive` on HTTP/1.x only);
/// - a heartbeat comment after every 15 idle seconds ([`heartbeat`](SseLayer::heartbeat));
/// - an optional `retry:` first ([`retry`](SseLayer::retry));
/// - coalescing: frames the stream already has ready go out as one write, up to
///   64 KiB ([`max_frame_size`](SseLayer::max_frame_size));
/// - graceful shutdown at an event boundary ([`graceful_shutdown`](SseLayer::graceful_shutdown));
/// - a cap on open streams ([`limit`](SseLayer::limit));
/// - a report of how each stream ended ([`on_end`](SseLayer::on_end)); a stream error
///   ends the response cleanly after the last complete event.
///
/// On the way in, it puts the client's [`LastEventId`](crate::LastEventId) (header, or
/// `lastEventId` query parameter) in the request's extensions. A request that is not a
/// GET but is answered with an event stream gets 405 instead.
///
/// ```
/// use std::convert::Infallible;
/// use futures_util::{StreamExt, stream};
/// use tower::{ServiceBuilder, service_fn};
/// use tower_sse::{Event, LastEventId, Sse, SseLayer};
///
/// let service = ServiceBuilder::new()
///     .layer(SseLayer::new())
///     .service(service_fn(|request: http::Request<()>| async move {
///         let resume = request.extensions().get::<LastEventId>();
///         let first = resume.map_or(0, |id| id.parse::<u64>().unwrap_or(0) + 1);
///         let events = stream::iter(first..first + 3)
///             .map(|n| Event::builder().id(&n.to_string()).data("tick").build());
///         Ok::<_, Infallible>(Sse::new(events).into_response())
///     }));
/// ```
#[derive(Clone, Debug, Default)]
pub struct SseLayer {
    settings: Settings,
}

impl SseLayer {
    /// A layer with the defaults: a heartbeat comment after every 15 idle seconds,
    /// frames of up to 64 KiB, the last event id also read from the `lastEventId` query
    /// parameter.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes a heartbeat after `interval` without any write (default 15 seconds), so
    /// proxies keep the connection open and a vanished client is noticed. Every event
    /// pushes it back; a heartbeat missed while the task was busy is written once, never
    /// as a burst. A heartbeat that falls due while the stream stands inside an event (a
    /// body that sent part of one) is skipped. A zero interval is raised to one
    /// millisecond.
    ///
    /// A heartbeat may come up to a sixteenth of the interval late (15.9 seconds
    /// after the last write with the default): the layer's streams fire theirs at
    /// common times, every sixteenth of the interval, so that streams that fall due
    /// together cost one wake of the server instead of one each.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().heartbeat(std::time::Duration::from_secs(10));
    /// ```
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.settings.heartbeat = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Writes `event` as the heartbeat (default: an empty comment, `:` and a blank
    /// line). A comment is invisible to pages; an event with a type (`event: ping`)
    /// reaches the page's listener for that type.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().heartbeat_event(tower_sse::Event::comment("ping"));
    /// ```
    pub fn heartbeat_event(mut self, event: Event) -> Self {
        self.settings.heartbeat_frame = event.into_bytes();
        self
    }

    /// Turns heartbeats off.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().no_heartbeat();
    /// ```
    pub fn no_heartbeat(mut self) -> Self {
        self.settings.heartbeat = None;
        self
    }

    /// Writes `retry: <ms>` first on every stream, setting how long clients wait before
    /// they reconnect.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().retry(std::time::Duration::from_secs(3));
    /// ```
    pub fn retry(mut self, retry: Duration) -> Self {
        let mut line = Vec::with_capacity(32);
        write_retry(&mut line, retry);
        line.push(b'\n');
        self.settings.retry = Some(Bytes::from(line));
        self
    }

    /// Sets the largest data frame made by coalescing ready events (default 64 KiB). A
    /// single event larger than this goes out alone, whole.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_frame_size(16 * 1024);
    /// ```
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.settings.max_frame = bytes.max(1);
        self
    }

    /// Batches writes: a stream that has an event ready waits up to `delay` for more,
    /// then writes everything ready as one frame (up to the
    /// [`max_frame_size`](SseLayer::max_frame_size)). Off by default (a zero delay):
    /// each event is written the moment it is ready.
    ///
    /// Under fan-out the kernel's socket writes are most of the cost of each delivered
    /// event; at 200 events/s a 20 ms delay turns four writes into one. No event waits
    /// longer than `delay`: every batching stream of a service the layer wraps (and of
    /// that service's clones, one per connection) shares one clock, which ticks every
    /// `delay` while some stream holds an event and wakes those that hold one, so idle
    /// streams cost nothing and a stream is woken once per tick, not once per event. Heartbeats, shutdown and end reports work as without batching; a
    /// stream that ends writes what it holds first.
    ///
    /// # Panics
    ///
    /// If `delay` is longer than one second: events that wait that long are no longer
    /// live.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().batch_delay(std::time::Duration::from_millis(20));
    /// ```
    pub fn batch_delay(mut self, delay: Duration) -> Self {
        assert!(
            delay <= MAX_BATCH_DELAY,
            "SseLayer::batch_delay: {delay:?} is longer than the most a frame may wait ({MAX_BATCH_DELAY:?})"
        );
        self.settings.batch_delay = (!delay.is_zero()).then_some(delay);
        self
    }

    /// Compresses event streams for clients that accept it, flushing every frame so
    /// that each event can be decoded the moment it arrives: see [`StreamCompression`] for the
    /// codecs (cargo features), the negotiation and the memory each stream costs. Off
    /// by default.
    ///
    /// The stream is answered with its `Content-Encoding` and `Vary: Accept-Encoding`;
    /// an outer compression layer (tower-http's) then leaves it alone, as it leaves any
    /// response that already has an encoding.
    ///
    /// ```
    /// use tower_sse::{SseLayer, StreamCompression};
    /// let layer = SseLayer::new().compression(StreamCompression::new());
    /// ```
    pub fn compression(mut self, compression: StreamCompression) -> Self {
        self.settings.compression = Some(compression);
        self
    }

    /// Ends a stream whose connection takes nothing from it for `timeout` (default:
    /// three heartbeat intervals, 45 seconds, and never less than 5 seconds), and reports
    /// it as [`EndReason::Stalled`](crate::EndReason::Stalled).
    ///
    /// A connection stops taking frames when its client stops reading, or, over HTTP/2,
    /// when the client grants the stream no flow-control window: the stream's writes
    /// never block, so [`WriteTimeout`](crate::WriteTimeout) cannot see it, and without
    /// this it would hold its place for the connection's whole life. A healthy stream is
    /// taken from at least once per heartbeat interval, so keep `timeout` at two
    /// heartbeat intervals or more. The layer wakes the stream's task, and the stream is
    /// reset (HTTP/2: that stream alone) the next time the connection polls it.
    ///
    /// Its place under the [`limit`](SseLayer::limit) is held until the connection
    /// drops the stream, because until then the connection still holds its socket and
    /// buffers: the limit bounds them too. A connection that cannot write polls nothing
    /// (hyper's HTTP/1.1 stops once its write buffer is full; an HTTP/2 stream without
    /// window waits for one), so such a stream goes when its client does, or when a
    /// [`WriteTimeout`](crate::WriteTimeout) closes the connection, as
    /// `tower_sse::serve` does for every connection. Without heartbeats, streams
    /// are not watched unless a timeout is set here.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().stall_timeout(std::time::Duration::from_secs(60));
    /// ```
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.settings.stall = Stall::After(timeout.max(Duration::from_millis(1)));
        self
    }

    /// Never ends a stream for being stalled.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().no_stall_timeout();
    /// ```
    pub fn no_stall_timeout(mut self) -> Self {
        self.settings.stall = Stall::Never;
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
        self.settings.on_end = Some(Arc::new(on_end));
        self
    }

    /// Ends every stream at an event boundary once `token` is cancelled, so that the
    /// server's own graceful shutdown can complete: an SSE response never ends by
    /// itself, so without this hyper-util's `GracefulShutdown` and axum's
    /// `with_graceful_shutdown` wait forever. Each stream writes the
    /// [`shutdown_event`](SseLayer::shutdown_event), if any, and ends; its end is
    /// reported as [`EndReason::Shutdown`](crate::EndReason::Shutdown).
    ///
    /// A stream that stands inside an event (a body that sent part of one) first waits
    /// for the rest of it, for at most 5 seconds; if it does not come, the stream ends
    /// there, without the shutdown event, and the client drops the half event.
    ///
    /// Cancel the token when the server starts to drain, for instance in the future
    /// given to axum's `with_graceful_shutdown`:
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router) -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use tokio_util::sync::CancellationToken;
    /// use tower_sse::{Event, SseLayer};
    ///
    /// let shutdown = CancellationToken::new();
    /// let app = app.layer(
    ///     SseLayer::new()
    ///         .graceful_shutdown(shutdown.clone())
    ///         // Browsers come back after half a second, to this or another instance.
    ///         .shutdown_event(Event::builder().retry(Duration::from_millis(500)).build().unwrap()),
    /// );
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(async move {
    ///         tokio::signal::ctrl_c().await.ok();
    ///         shutdown.cancel(); // every stream ends, so the server can drain
    ///     })
    ///     .await
    /// # }
    /// ```
    pub fn graceful_shutdown(mut self, token: CancellationToken) -> Self {
        self.settings.shutdown = Some(token);
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
        self.settings.shutdown_event = Some(event.into_bytes());
        self
    }

    /// Caps the streams open at once (per server, optionally per client address).
    ///
    /// A stream over the cap is answered 503 with `Retry-After` (or the limit's other
    /// answer). A request that asks for an event stream (`Accept: text/event-stream`,
    /// as every `EventSource` sends) takes its place before the inner service runs, so
    /// one over the cap never reaches it; any other request takes a place only once its
    /// answer turns out to be an event stream. A stream frees its place when its body is
    /// dropped. See [`StreamLimit`] for why tower's `ConcurrencyLimit` cannot do this.
    ///
    /// ```
    /// use tower_sse::{SseLayer, StreamLimit};
    /// let layer = SseLayer::new().limit(StreamLimit::new(10_000).per_client(16));
    /// ```
    pub fn limit(mut self, limit: StreamLimit) -> Self {
        self.settings.limit = Some(limit);
        self
    }

    /// Sets the query parameter read as the last event id when the header is absent, for
    /// clients that cannot set headers (default `lastEventId`).
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().last_event_id_query("since");
    /// ```
    pub fn last_event_id_query(mut self, name: &str) -> Self {
        self.settings.query = Some(Arc::from(name));
        self
    }

    /// Reads the last event id from the header only.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().no_last_event_id_query();
    /// ```
    pub fn no_last_event_id_query(mut self) -> Self {
        self.settings.query = None;
        self
    }
}

/// Builds, once per service, the state its streams share: the batching clock and the
/// stall sweep (the limit's counts are the [`StreamLimit`]'s own, shared by its clones).
impl<S> Layer<S> for SseLayer {
    type Service = SseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseService::with_shared(inner, Shared::new(self.settings.clone()))
    }
}
