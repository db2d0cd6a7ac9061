//! warp 0.4 (feature `warp`): `Sse` as a `warp::Reply`, the `last_event_id` filter, a
//! hub, and `warp::service(filter)` under `SseLayer`, served by `tower_sse::serve`: a cap
//! on open streams, and a graceful shutdown that ends every stream.
//!
//! ```text
//! cargo run -p tower-sse-examples --example warp --features warp
//! curl -N http://127.0.0.1:3000/events
//! curl -d 'hello' http://127.0.0.1:3000/publish      # {"id":<the event's id>}
//! curl -N -H 'Last-Event-ID: <an id you got>' http://127.0.0.1:3000/events
//! ```
//!
//! `/publish` answers `{"id":<id>}` (JSON), the id subscribers receive the event with,
//! or 503 with the reason; a body over 64 KiB is refused (413).
//!
//! Environment (a value that cannot be used ends the example with one line saying why,
//! and status 2):
//!
//! - `ADDR`: where to listen, `host:port` (default `127.0.0.1:3000`; `localhost:3000`
//!   works, port 0 picks a free port).
//! - `MAX_STREAMS`: event streams open at once (default 10,000); over it, 503 with
//!   `Retry-After: 5`.
//! - `TRUST_PROXY`: your reverse proxies' IP addresses, comma-separated. Streams that
//!   come through them count per client under the address they forward
//!   (`X-Forwarded-For`'s last entry, else `X-Real-IP`). Unset: no header is trusted.
//! - `PER_CLIENT`: event streams one client may hold open (default 32 with
//!   `TRUST_PROXY`; without it none, since every browser behind one proxy or NAT has the
//!   same address).
//! - `RUST_LOG`: what to log on stderr (default `info`).

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_sse::{Event, Hub, LastEventId, Sse, SseLayer};
use warp::Filter;
use warp::http::StatusCode;

#[tokio::main]
async fn main() {
    common::init_tracing();
    let addr = common::or_exit(common::addr());
    let limits = common::or_exit(common::limits());

    let hub = Hub::new();
    let shutdown = CancellationToken::new();
    let goodbye = Event::builder()
        .retry(Duration::from_millis(500))
        .build()
        .expect("a retry-only event");

    let events = warp::path("events")
        .and(warp::get())
        .and(tower_sse::warp::last_event_id())
        .map({
            let hub = hub.clone();
            move |last: Option<LastEventId>| Sse::new(hub.subscribe(["chat"], last.as_ref()))
        });

    let publish = warp::path("publish")
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map({
            let hub = hub.clone();
            move |body: Bytes| -> Box<dyn warp::Reply> {
                let text = String::from_utf8_lossy(&body);
                match hub.publish("chat", Event::data(&text)) {
                    Ok(published) => Box::new(warp::reply::json(
                        &serde_json::json!({ "id": published.id() }),
                    )),
                    Err(error) => Box::new(warp::reply::with_status(
                        format!("not published: {error}\n"),
                        StatusCode::SERVICE_UNAVAILABLE,
                    )),
                }
            }
        });

    // warp has no layers of its own, but `warp::service` is a tower service: the SSE
    // layer applies its settings to the event streams and leaves `/publish` alone.
    let sse = SseLayer::new()
        .retry(Duration::from_secs(2))
        .limit(limits.stream_limit(Duration::from_secs(5)))
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(goodbye);
    let service = ServiceBuilder::new()
        .layer(sse)
        .service(warp::service(events.or(publish)));

    let listener = common::bind(&addr).await;
    let local = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!("listening on http://{local}/events");
    tracing::info!("{}", limits.describe());
    // `tower_sse::serve` puts the peer's address in each request (the per-client cap
    // reads it); Ctrl-C cancels the token, which ends the streams and the server.
    common::serve_until_ctrl_c(listener, service, shutdown, |server| server).await;
}
