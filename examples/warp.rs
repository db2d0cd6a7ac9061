//! warp 0.4 (feature `warp`): `Sse` as a `warp::Reply`, the `last_event_id` filter, a
//! hub, a cap per client address from `warp::addr::remote()`, and warp's graceful
//! shutdown ending every stream.
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
use tower_sse::{Event, Hub, KeepAlive, LastEventId, Refusal, Shutdown, Sse, StreamLimit};
use warp::Filter;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let hub = Hub::new();
    let shutdown = Shutdown::new();
    let limit = StreamLimit::new(10_000).per_client(32);
    let goodbye = Event::builder()
        .retry(Duration::from_millis(500))
        .build()
        .expect("a retry-only event");

    let events = warp::path("events")
        .and(warp::get())
        .and(tower_sse::warp::last_event_id())
        .and(warp::addr::remote())
        .map({
            let (hub, shutdown) = (hub.clone(), shutdown.clone());
            move |last: Option<LastEventId>, addr: Option<SocketAddr>| {
                let permit = match limit.try_acquire(addr.map(|a| a.ip())) {
                    Ok(permit) => permit,
                    Err(reached) => return warp::Reply::into_response(Refusal::from(reached)),
                };
                let subscription = hub.subscribe(["chat"], last.as_ref());
                let sse = Sse::new(subscription)
                    .retry(Duration::from_secs(2))
                    .keep_alive(KeepAlive::new())
                    .graceful_shutdown(shutdown.clone())
                    .shutdown_event(goodbye.clone())
                    .permit(permit);
                warp::Reply::into_response(sse)
            }
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

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    eprintln!(
        "listening on http://{}/events",
        listener.local_addr().unwrap()
    );
    warp::serve(events.or(publish))
        .incoming(listener)
        .graceful(shutdown.trigger_on(async {
            tokio::signal::ctrl_c().await.ok();
        }))
        .run()
        .await;
    eprintln!("all connections closed");
}
