//! The tower-sse side of the benchmarks: the only code of the tools that names
//! tower-sse. Its serving API (`SseLayer` over a service answering with a hub
//! `Subscription` or a stream of events) is being redesigned (issue 11): port
//! [`serve`] (fan-out) and [`serve_burst`] (burst), nothing else depends on it.

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

/// Whether [`serve`] applies its `write_delay` yet: the fan-out server refuses a write
/// delay, and the suite its write-delay rows, until this is `true`, so that no figure is
/// ever labelled with a delay that was not applied.
pub const WRITE_DELAY_SUPPORTED: bool = false;

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
/// seconds); `subscribed` is called once per subscription.
///
/// `write_delay` is a placeholder: it is for the crate's write batching setting
/// (wait up to this long to put more events into one socket write), which does not
/// exist yet, and is ignored until then (see [`WRITE_DELAY_SUPPORTED`]).
pub fn serve(
    listener: TcpListener,
    http: Http,
    hub: Hub,
    topics: Arc<[String]>,
    write_delay: Duration,
    subscribed: impl Fn() + Clone + Send + 'static,
) {
    // Not applied yet: no such setting in the crate (WRITE_DELAY_SUPPORTED is false).
    let _ = write_delay;
    let service = tower::ServiceBuilder::new()
        .layer(tower_sse::SseLayer::new())
        .service(tower::service_fn(move |request: Request<Incoming>| {
            let last_event_id = request.extensions().get::<tower_sse::LastEventId>();
            let subscription = hub.subscribe(topics.iter(), last_event_id);
            subscribed();
            async move { Ok::<_, Infallible>(subscription) }
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
            async move { Ok::<_, Infallible>(events) }
        }));
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), TowerToHyperService::new(service))
        .await
}
