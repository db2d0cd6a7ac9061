//! hyper 1, served by `tower_sse::serve`: HTTP/1.1 and HTTP/2 (h2c) on one port, with
//! the deadlines and caps a server of long-lived connections needs; a hub that publishes
//! the time every second; CORS, a cap on open streams, and a graceful shutdown that does
//! not wait forever.
//!
//! ```text
//! cargo run -p tower-sse-examples --example hyper
//! curl -N 'http://127.0.0.1:3000/events?topic=clock'                  # HTTP/1.1
//! curl -N --http2-prior-knowledge 'http://127.0.0.1:3000/events?topic=clock'
//! # Resuming: the hub's ids start at the time it started, in microseconds, and go up by
//! # one per event. Copy an `id:` line the first command printed, for instance
//! # `id: 1795965935513408`, and ask for what followed it:
//! curl -N -H 'Last-Event-ID: 1795965935513408' 'http://127.0.0.1:3000/events?topic=clock'
//! ```
//!
//! The resumed stream replays the events after that id from the hub's history (the last
//! 1,000) and goes on live; an id the hub does not know (a made-up one, or one from
//! before a restart) gets a `stream-reset` event first.
//!
//! Browsers open one HTTP/1.1 connection per `EventSource` and at most six per origin;
//! over HTTP/2 (which browsers speak only over TLS: put a TLS terminator or
//! `tokio-rustls` in front) every stream shares one connection, up to the server's
//! `max_concurrent_streams`, raised here from hyper's 200.
//!
//! Ctrl-C: the listener closes, every stream gets a final frame that makes browsers
//! reconnect after half a second (to another instance, or to this one once it is back),
//! and the process exits once every connection is closed.
//!
//! Environment (a value that cannot be used ends the example with one line saying why,
//! and status 2):
//!
//! - `ADDR`: where to listen, `host:port` (default `127.0.0.1:3000`; `localhost:3000`
//!   works, port 0 picks a free port).
//! - `MAX_STREAMS`: event streams open at once (default 10,000); over it, 503 with
//!   `Retry-After: 10`.
//! - `TRUST_PROXY`: your reverse proxies' IP addresses, comma-separated. Streams that
//!   come through them count per client under the address they forward
//!   (`X-Forwarded-For`'s last entry, else `X-Real-IP`). Unset: no header is trusted.
//! - `PER_CLIENT`: event streams one client may hold open (default 32 with
//!   `TRUST_PROXY`; without it none, since every browser behind one proxy or NAT has the
//!   same address).
//! - `RUST_LOG`: what to log on stderr (default `info`; `tower_sse=debug` shows every
//!   refusal).

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use http::Method;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::cors::{Any, CorsLayer};
use tower_sse::{Event, Hub, LastEventId, SseLayer, StreamEnd};

#[tokio::main]
async fn main() {
    common::init_tracing();
    let addr = common::or_exit(common::addr());
    let limits = common::or_exit(common::limits());

    let hub = Hub::builder().history_events(1000).build();
    tokio::spawn(publish_the_time(hub.clone()));

    let shutdown = CancellationToken::new();
    let limit = limits.stream_limit(Duration::from_secs(10));
    let sse = SseLayer::new()
        .retry(Duration::from_secs(2))
        .limit(limit)
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(
            Event::builder()
                .retry(Duration::from_millis(500))
                .build()
                .expect("a retry-only event"),
        )
        .on_end(|end: &StreamEnd| {
            tracing::info!(
                "stream ended: {} after {} events, {} bytes, {:?}",
                end.reason,
                end.events,
                end.bytes,
                end.duration
            );
        });

    // The hub is the service: topics from `?topic=`, resumed from the Last-Event-ID the
    // layer extracted; a request without a topic is told what is wrong (400, or 403 for
    // a topic the hub does not allow), and an EventSource stops there.
    //
    // CORS outside the SSE layer, so that it answers preflights itself. `Last-Event-ID`
    // must be allowed for clients that set it themselves (fetch-based ones); a long or
    // non-ASCII value needs a preflight.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET])
        .allow_headers([LastEventId::HEADER])
        .max_age(Duration::from_secs(3600));
    let service = ServiceBuilder::new().layer(cors).layer(sse).service(hub);

    let listener = common::bind(&addr).await;
    let local = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!("listening on http://{local}/events?topic=clock");
    tracing::info!("{}", limits.describe());

    // Deadlines for a connection's first request and for each request head, a cap on
    // open connections, a pause after accept errors, a write timeout for clients that
    // stop reading, and the peer address in each request (the per-client cap reads it).
    // One token ends both: the streams (the layer's) and the server (its connections).
    common::serve_until_ctrl_c(listener, service, shutdown, |server| {
        server.max_concurrent_streams(1000)
    })
    .await;
}

async fn publish_the_time(hub: Hub) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let event = Event::builder()
            .event("time")
            .data(&now.as_secs().to_string())
            .build()
            .expect("a valid event");
        if let Err(error) = hub.publish("clock", event) {
            tracing::warn!("publish failed: {error}");
        }
    }
}
