//! Plain hyper 1 + hyper-util: HTTP/1.1 and HTTP/2 (h2c) on one port, with hyper-util's
//! auto builder; a hub that publishes the time every second; CORS, a cap on open
//! streams, and a graceful shutdown that does not wait forever.
//!
//! ```text
//! cargo run --example hyper
//! curl -N 'http://127.0.0.1:3000/events?topic=clock'                  # HTTP/1.1
//! curl -N --http2-prior-knowledge 'http://127.0.0.1:3000/events?topic=clock'
//! curl -N -H 'Last-Event-ID: 3' 'http://127.0.0.1:3000/events?topic=clock'
//! ```
//!
//! Browsers open one HTTP/1.1 connection per `EventSource` and at most six per origin;
//! over HTTP/2 (which browsers speak only over TLS: put a TLS terminator or
//! `tokio-rustls` in front) every stream shares one connection, up to the server's
//! `max_concurrent_streams`, raised here from hyper's 200.
//!
//! Ctrl-C: the listener closes, every stream gets a final frame that makes browsers
//! reconnect after half a second (to another instance, or to this one once it is back),
//! and the process exits once every connection is closed.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::cors::{Any, CorsLayer};
use tower_sse::{Event, Hub, LastEventId, SseLayer, StreamEnd, StreamLimit};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let hub = Hub::builder().history_events(1000).build();
    tokio::spawn(publish_the_time(hub.clone()));

    let shutdown = CancellationToken::new();
    let limit = StreamLimit::new(10_000)
        .per_client(64)
        .retry_after(Duration::from_secs(10));
    let sse = SseLayer::new()
        .retry(Duration::from_secs(2))
        .limit(limit.clone())
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(
            Event::builder()
                .retry(Duration::from_millis(500))
                .build()
                .expect("a retry-only event"),
        )
        .on_end(|end: &StreamEnd| {
            eprintln!(
                "stream ended: {} after {} events, {} bytes, {:?}",
                end.reason, end.events, end.bytes, end.duration
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

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!(
        "listening on http://{}/events?topic=clock",
        listener.local_addr()?
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(1000);

    let graceful = GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        eprintln!("accept failed: {error}");
                        continue;
                    }
                };
                // The peer address, which the per-client cap reads from the extensions.
                let service = ServiceBuilder::new()
                    .map_request(move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert::<SocketAddr>(peer);
                        request
                    })
                    .service(service.clone());
                let connection = builder
                    .serve_connection(TokioIo::new(socket), TowerToHyperService::new(service))
                    .into_owned();
                tokio::spawn(graceful.watch(connection));
            }
            _ = &mut ctrl_c => break,
        }
    }

    drop(listener);
    eprintln!("shutting down {} open streams", limit.open_streams());
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await {
        Ok(()) => eprintln!("all connections closed"),
        Err(_) => eprintln!("gave up waiting for connections"),
    }
    Ok(())
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
            eprintln!("publish failed: {error}");
        }
    }
}
