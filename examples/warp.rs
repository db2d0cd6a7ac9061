//! warp 0.4 (feature `warp`): `Sse` as a `warp::Reply`, the `last_event_id` filter, a
//! hub, and `warp::service(filter)` under `SseLayer`, served with hyper-util: a cap per
//! client address, and a graceful shutdown that ends every stream.
//!
//! ```text
//! cargo run --example warp --features warp
//! curl -N http://127.0.0.1:3000/events
//! curl -d 'hello' http://127.0.0.1:3000/publish
//! curl -N -H 'Last-Event-ID: <an id you got>' http://127.0.0.1:3000/events
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_sse::{Event, Hub, LastEventId, Sse, SseLayer, StreamLimit};
use warp::Filter;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
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
        .and(warp::body::bytes())
        .map({
            let hub = hub.clone();
            move |body: Bytes| {
                let text = String::from_utf8_lossy(&body);
                match hub.publish("chat", Event::data(&text)) {
                    Ok(published) => format!("{:?}\n", published.id()),
                    Err(error) => format!("not published: {error}\n"),
                }
            }
        });

    // warp has no layers of its own, but `warp::service` is a tower service: the SSE
    // layer applies its settings to the event streams and leaves `/publish` alone.
    let sse = SseLayer::new()
        .retry(Duration::from_secs(2))
        .limit(StreamLimit::new(10_000).per_client(32))
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(goodbye);
    let service = ServiceBuilder::new()
        .layer(sse)
        .service(warp::service(events.or(publish)));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    eprintln!(
        "listening on http://{}/events",
        listener.local_addr().unwrap()
    );
    let builder = auto::Builder::new(TokioExecutor::new());
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

    // Every stream ends at an event boundary, so the connections can close.
    drop(listener);
    shutdown.cancel();
    graceful.shutdown().await;
    eprintln!("all connections closed");
}
