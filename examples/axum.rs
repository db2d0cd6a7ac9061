//! axum 0.8 (feature `axum`): a hub as router state, handlers that answer with event
//! streams under `Router::layer(SseLayer)`, a plain tower service under the same layer
//! with `route_service`, a cap per client address, and axum's graceful shutdown ending
//! every stream.
//!
//! ```text
//! cargo run --example axum --features axum
//! open http://127.0.0.1:3000/                       # a page with an EventSource
//! curl -N 'http://127.0.0.1:3000/events?topic=chat'
//! curl -d 'hello' http://127.0.0.1:3000/publish/chat
//! curl -N http://127.0.0.1:3000/countdown
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use futures_util::{StreamExt, stream};
use tokio_util::sync::CancellationToken;
use tower::service_fn;
use tower_sse::{Event, Hub, LastEventId, Sse, SseLayer, StreamEnd, StreamLimit, Subscription};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>tower-sse + axum</title>
<form id="say"><input id="text" autofocus placeholder="say something"> <button>send</button></form>
<ul id="log"></ul>
<script>
  const log = document.getElementById('log');
  const source = new EventSource('/events?topic=chat');
  source.onmessage = (event) => {
    const item = document.createElement('li');
    item.textContent = `#${event.lastEventId}: ${event.data}`;
    log.append(item);
  };
  document.getElementById('say').onsubmit = (event) => {
    event.preventDefault();
    const text = document.getElementById('text');
    fetch('/publish/chat', { method: 'POST', body: text.value });
    text.value = '';
  };
</script>
"#;

/// The hub's topics: the `Subscription` extractor reads the topics and the
/// Last-Event-ID (400 or 403 when it cannot); the stream gets the router layer's
/// settings.
async fn events(subscription: Subscription) -> Sse<Subscription> {
    Sse::new(subscription)
}

async fn publish(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    body: String,
) -> impl IntoResponse {
    match hub.publish(&topic, Event::data(&body)) {
        Ok(published) => (StatusCode::OK, format!("{:?}\n", published.id())),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let shutdown = CancellationToken::new();
    // The per-client cap reads the address from axum's `ConnectInfo`.
    let limit = StreamLimit::new(10_000)
        .per_client(32)
        .client_key(|parts| Some(parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip()));
    let settings = SseLayer::new()
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
            eprintln!("stream ended: {} after {} events", end.reason, end.events)
        });

    // A plain tower service under the same layer, with `route_service`: it counts
    // down from 10, or from where the client left off.
    let countdown = service_fn(|request: http::Request<axum::body::Body>| async move {
        let from = request
            .extensions()
            .get::<LastEventId>()
            .and_then(|id| id.parse::<u32>().ok())
            .unwrap_or(11);
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
            Duration::from_secs(1),
        ));
        let events = stream::iter((0..from).rev()).zip(ticks).map(|(n, _)| {
            Event::builder()
                .id(&n.to_string())
                .data(&n.to_string())
                .build()
        });
        Ok::<_, Infallible>(Sse::new(events).into_response())
    });

    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route("/publish/{topic}", post(publish))
        .route_service("/countdown", countdown)
        .with_state(Hub::new())
        .layer(settings);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("listening on http://{}/", listener.local_addr()?);
    // `ConnectInfo` gives the per-client cap its address; Ctrl-C cancels the SSE
    // shutdown token, so that axum's graceful shutdown completes.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        tokio::signal::ctrl_c().await.ok();
        shutdown.cancel();
    })
    .await?;
    eprintln!("all connections closed");
    Ok(())
}
