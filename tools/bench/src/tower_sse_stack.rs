//! The tower-sse side of the benchmarks: the only code of the tools that names
//! tower-sse: [`serve`] (fan-out, `SseLayer` over services answering `Sse::new(..)`)
//! and [`serve_burst`] (burst).

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
            Ok(Hub::builder().storage(storage).build())
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err("--redis needs the `redis` feature".into()),
    }
}

/// Publishes `payload` as one event's data: encoded once, every subscriber writes the
/// same bytes. With Redis the store's acknowledgement is not awaited.
pub fn publish(hub: &Hub, topic: &str, payload: &str) {
    if let Err(err) = hub.publish(topic, tower_sse::Event::data(payload)) {
        eprintln!("publish: {err}");
    }
}

/// Subscribers of `topic` now.
pub fn subscribers(hub: &Hub, topic: &str) -> usize {
    hub.stats(topic).map_or(0, |s| s.subscribers)
}

/// The fan-out route: every request subscribes to all of `topics` (resumed from its
/// `Last-Event-ID`), answered through `SseLayer::new()` (heartbeat every 15 idle
/// seconds) with `batch_delay(write_delay)` (zero: off); `subscribed` is called once
/// per subscription.
pub fn serve(
    listener: TcpListener,
    http: Http,
    hub: Hub,
    topics: Arc<[String]>,
    write_delay: Duration,
    subscribed: impl Fn() + Clone + Send + 'static,
) {
    let service = tower::ServiceBuilder::new()
        .layer(tower_sse::SseLayer::new().batch_delay(write_delay))
        .service(tower::service_fn(move |request: Request<Incoming>| {
            let last_event_id = request.extensions().get::<tower_sse::LastEventId>();
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
