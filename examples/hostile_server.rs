//! The server that `tests/serve.rs` runs in its own process and attacks: `tower_sse::serve`
//! with its guards set short, a hub that publishes a numbered event on `ticks` every
//! 10 ms, a plain `/hello`, and `/open`: how many streams hold a place under the limit.
//!
//! ```text
//! FIRST_REQUEST_TIMEOUT_MS=1000 HEADER_READ_TIMEOUT_MS=1000 cargo run -p tower-sse-examples --example hostile_server
//! curl -N 'http://127.0.0.1:<port>/events?topic=ticks'
//! ```
//!
//! Settings from the environment (unset means the crate's default):
//! `FIRST_REQUEST_TIMEOUT_MS`, `HEADER_READ_TIMEOUT_MS`, `MAX_CONNECTIONS`,
//! `STREAM_LIMIT`, `HEARTBEAT_MS` and `STALL_TIMEOUT_MS`. It prints `LISTENING <address>`
//! on stdout, logs `tower_sse` at debug level on stderr (each connection a guard closes
//! is one line, each stream's end is a `stream ended: <reason>` line), and serves until
//! it is killed.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::{Event, Hub, SseLayer, StreamLimit};

fn setting(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("tower_sse", tracing::Level::DEBUG)
        .with_default(tracing::Level::WARN);
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(filter)
        .init();

    let hub = Hub::builder().history_events(1000).build();
    tokio::spawn({
        let hub = hub.clone();
        async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            for n in 0u64.. {
                ticks.tick().await;
                hub.publish("ticks", Event::data(&n.to_string()))
                    .expect("a topic the hub takes");
            }
        }
    });

    // The layer over one service: `/hello` answers a page, `/open` the streams open, any
    // other path is the hub's (`?topic=ticks`); the layer leaves the pages alone. Each stream's end is one line
    // on stderr.
    let mut layer = SseLayer::new().on_end(|end| eprintln!("stream ended: {}", end.reason));
    let limit = setting("STREAM_LIMIT").map(|max| StreamLimit::new(max as usize));
    if let Some(limit) = &limit {
        layer = layer.limit(limit.clone());
    }
    if let Some(ms) = setting("HEARTBEAT_MS") {
        layer = layer.heartbeat(Duration::from_millis(ms));
    }
    if let Some(ms) = setting("STALL_TIMEOUT_MS") {
        layer = layer.stall_timeout(Duration::from_millis(ms));
    }
    let app = ServiceBuilder::new().layer(layer).service(service_fn(
        move |request: Request<Incoming>| {
            let hub = hub.clone();
            let limit = limit.clone();
            async move {
                if request.uri().path() == "/hello" {
                    let hello = Full::new(Bytes::from_static(b"hello"));
                    return Ok::<_, Infallible>(Response::new(hello).map(Either::Right));
                }
                if request.uri().path() == "/open" {
                    let open = limit.as_ref().map_or(0, StreamLimit::open_streams);
                    let open = Full::new(Bytes::from(open.to_string()));
                    return Ok(Response::new(open).map(Either::Right));
                }
                let response = hub.oneshot(request).await?;
                Ok(response.map(Either::Left))
            }
        },
    ));

    // A listen backlog above the attack's burst of connections, so that the kernel
    // queues the connections over the cap instead of dropping them.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    let listener = socket.listen(4096)?;
    println!("LISTENING {}", listener.local_addr()?);
    let mut server = tower_sse::serve(listener, app);
    if let Some(ms) = setting("FIRST_REQUEST_TIMEOUT_MS") {
        server = server.first_request_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = setting("HEADER_READ_TIMEOUT_MS") {
        server = server.header_read_timeout(Duration::from_millis(ms));
    }
    if let Some(max) = setting("MAX_CONNECTIONS") {
        server = server.max_connections(max as usize);
    }
    server.await;
    Ok(())
}
