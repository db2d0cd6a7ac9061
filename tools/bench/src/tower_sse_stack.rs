//! The tower-sse side of the benchmarks: the only code of the tools that names
//! tower-sse: [`serve`] (fan-out, `SseLayer` over services answering `Sse::new(..)`),
//! [`serve_burst`] (burst) and [`hub_frames`] (the bytes a subscriber's stream carries,
//! for the offline compression figures).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
pub use tower_sse::Hub;

use crate::codec::{Codec, Setting};
use crate::server::{Http, accept_loop};

/// Whether [`serve`] applies its `write_delay` (`SseLayer::batch_delay`): the suite runs
/// its write-delay rows only when it does.
pub const WRITE_DELAY_SUPPORTED: bool = true;

/// A hub with default settings; with a Redis URL (feature `redis`) on Redis Streams.
pub fn hub(redis: Option<&str>) -> Result<Hub, String> {
    match redis {
        None => Ok(Hub::new()),
        #[cfg(feature = "redis")]
        Some(url) => {
            let storage = tower_sse::hub::RedisStorage::new(url)
                .map_err(|e| format!("redis: {e}"))?
                .prefix("bench");
            Ok(Hub::builder().redis(storage).build())
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err("--redis needs the `redis` feature".into()),
    }
}

/// The event of `payload`, with `event_type` if any.
fn event(event_type: Option<&str>, payload: &str) -> tower_sse::Event {
    match event_type {
        None => tower_sse::Event::data(payload),
        Some(event_type) => tower_sse::Event::builder()
            .event(event_type)
            .data(payload)
            .build()
            .expect("the feeds' event types are valid"),
    }
}

/// Publishes `payload` as one event's data (of type `event_type`, if any): encoded once,
/// every subscriber writes the same bytes. With Redis the store's acknowledgement is not
/// awaited.
pub fn publish(hub: &Hub, topic: &str, event_type: Option<&str>, payload: &str) {
    if let Err(err) = hub.publish(topic, event(event_type, payload)) {
        eprintln!("publish: {err}");
    }
}

/// The frames a subscriber of every topic receives when `events` (topic, payload) are
/// published on a hub with default settings, in order: each as tower-sse encodes it,
/// with the hub's `id:` line.
pub fn hub_frames(
    topics: &[String],
    event_type: Option<&str>,
    events: impl IntoIterator<Item = (usize, String)>,
) -> Vec<bytes::Bytes> {
    use futures_util::FutureExt;
    let hub = Hub::new();
    let mut subscription = hub.subscribe(topics.iter(), None);
    let mut frames = Vec::new();
    for (topic, payload) in events {
        publish(&hub, &topics[topic], event_type, &payload);
        // In memory the event is there at once; taken one by one, it never lags.
        if let Some(Some(Ok(event))) = subscription.next().now_or_never() {
            frames.push(event.into_bytes());
        }
    }
    frames
}

/// Subscribers of `topic` now.
pub fn subscribers(hub: &Hub, topic: &str) -> usize {
    hub.stats(topic).map_or(0, |s| s.subscribers)
}

/// The layer's settings of a fan-out server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// `SseLayer::batch_delay` (zero: off).
    pub write_delay: Duration,
    /// `SseLayer::compression` with this codec alone, at this level and window.
    pub compression: Option<(Codec, Setting)>,
}

/// `StreamCompression` with `codec` alone, at `setting`.
fn compression(codec: Codec, setting: Setting) -> tower_sse::StreamCompression {
    let only = tower_sse::StreamCompression::new()
        .gzip(codec == Codec::Gzip)
        .deflate(codec == Codec::Deflate)
        .br(codec == Codec::Br)
        .zstd(codec == Codec::Zstd);
    only.level(setting.level).window(setting.window)
}

/// The topic of `GET /idle`, on which nothing is ever published.
pub const IDLE_TOPIC: &str = "idle";

/// The fan-out route: every request subscribes to all of `topics` (resumed from its
/// `Last-Event-ID`; `GET /idle`: to [`IDLE_TOPIC`] alone), answered through
/// `SseLayer::new()` (heartbeat every 15 idle seconds) with
/// `batch_delay(settings.write_delay)` (zero: off) and, if set, `compression(..)` with
/// that one codec; `subscribed` is called once per subscription.
pub fn serve(
    listener: TcpListener,
    http: Http,
    hub: Hub,
    topics: Arc<[String]>,
    settings: Settings,
    subscribed: impl Fn() + Clone + Send + 'static,
) {
    let mut layer = tower_sse::SseLayer::new().batch_delay(settings.write_delay);
    if let Some((codec, setting)) = settings.compression {
        layer = layer.compression(compression(codec, setting));
    }
    let idle: Arc<[String]> = Arc::new([IDLE_TOPIC.to_string()]);
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(move |request: Request<Incoming>| {
            let last_event_id = request.extensions().get::<tower_sse::LastEventId>();
            let topics = if request.uri().path() == "/idle" {
                &idle
            } else {
                &topics
            };
            let subscription = hub.subscribe(topics.iter(), last_event_id);
            subscribed();
            let response = tower_sse::Sse::new(subscription).into_response();
            async move { Ok::<_, Infallible>(response) }
        }));
    tokio::spawn(accept_loop(listener, http, service));
}

/// Burst: serves one connection a stream of `events` ready events, `id: <n>` and
/// `data: <payload>`, through `SseLayer::new()` (ready events coalesced into frames of
/// up to 64 KiB).
pub async fn serve_burst(
    socket: TcpStream,
    events: u64,
    payload: &'static str,
) -> Result<(), hyper::Error> {
    let service = tower::ServiceBuilder::new()
        .layer(tower_sse::SseLayer::new())
        .service(tower::service_fn(move |_request: Request<Incoming>| {
            let events = stream::iter(1..=events).map(move |n| {
                tower_sse::Event::builder()
                    .id(itoa::Buffer::new().format(n))
                    .data(payload)
                    .build()
            });
            let response = tower_sse::Sse::new(events).into_response();
            async move { Ok::<_, Infallible>(response) }
        }));
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), TowerToHyperService::new(service))
        .await
}
