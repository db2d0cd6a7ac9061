//! axum 0.8 (feature `axum`): a hub as router state, handlers that answer with event
//! streams under `Router::layer(SseLayer)`, a plain tower service under the same layer
//! with `route_service` that ends with the crate's 204 "stop", a cap on open streams,
//! and a graceful shutdown that ends every stream. The router is served by
//! `tower_sse::serve`, whose guards `axum::serve` lacks.
//!
//! ```text
//! cargo run -p tower-sse-examples --example axum --features axum
//! open http://127.0.0.1:3000/                       # a page with an EventSource
//! curl -N 'http://127.0.0.1:3000/events?topic=chat'
//! curl -d 'hello' http://127.0.0.1:3000/publish/chat   # {"id":<the event's id>}
//! curl -N http://127.0.0.1:3000/countdown
//! curl -i -H 'Last-Event-ID: 0' http://127.0.0.1:3000/countdown   # 204: stop
//! curl http://127.0.0.1:3000/metrics                # Prometheus text (feature `metrics`)
//! ```
//!
//! `/countdown` counts down from 10, one event a second, each with its number as its
//! id, and ends after 0; the browser reconnects with `Last-Event-ID: 0` and is answered
//! 204 No Content, which closes an `EventSource` for good. (A stream that only ended
//! would have it reconnect every `retry` forever.) A browser that reconnects in the
//! middle resumes the count where it left it.
//!
//! `/publish/<topic>` answers `{"id":<id>}` (JSON), the id subscribers receive the
//! event with, or 503 with the reason.
//!
//! `/metrics` is the process's metrics in Prometheus text, from
//! `metrics-exporter-prometheus` installed as the recorder first thing in `main`; built
//! with the `metrics` feature (`--features axum,metrics`), the library's own are there:
//! open streams, ends, refusals, bytes, the hub's publishes and subscribers.
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
#[path = "common/prometheus.rs"]
mod prometheus;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures_util::{StreamExt, stream};
use tokio_util::sync::CancellationToken;
use tower::service_fn;
use tower_sse::{Event, Hub, LastEventId, Refusal, Sse, SseLayer, StreamEnd, Subscription};

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

/// Where `/countdown` starts.
const COUNT_FROM: u32 = 10;

/// The hub's topics: the `Subscription` extractor reads the topics and the
/// Last-Event-ID (400 or 403 when it cannot); the stream gets the router layer's
/// settings.
async fn events(subscription: Subscription) -> Sse<Subscription> {
    Sse::new(subscription)
}

/// Publishes the body on `topic`: `{"id":<id>}`, or 503 with the reason.
async fn publish(State(hub): State<Hub>, Path(topic): Path<String>, body: String) -> Response {
    match hub.publish(&topic, Event::data(&body)) {
        Ok(published) => Json(serde_json::json!({ "id": published.id() })).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not published: {error}\n"),
        )
            .into_response(),
    }
}

/// `/countdown` as a plain tower service: from 10 (or from where the client's
/// Last-Event-ID left it) down to 0, one event a second; once the client has seen 0, 204.
async fn countdown(request: http::Request<axum::body::Body>) -> Result<Response, Infallible> {
    let next = match request.extensions().get::<LastEventId>() {
        // A number it received: the count goes on below it.
        Some(id) => match id.parse::<u32>() {
            Ok(0) => return Ok(IntoResponse::into_response(Refusal::stop())),
            Ok(n) => n.min(COUNT_FROM + 1) - 1,
            Err(_) => COUNT_FROM,
        },
        None => COUNT_FROM,
    };
    let ticks =
        tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(1)));
    let events = stream::iter((0..=next).rev()).zip(ticks).map(|(n, _)| {
        Event::builder()
            .id(&n.to_string())
            .data(&n.to_string())
            .build()
    });
    Ok(IntoResponse::into_response(Sse::new(events)))
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    prometheus::install();
    let addr = common::or_exit(common::addr());
    let limits = common::or_exit(common::limits());

    let shutdown = CancellationToken::new();
    let settings = SseLayer::new()
        .retry(Duration::from_secs(2))
        .limit(limits.stream_limit(Duration::from_secs(5)))
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(
            Event::builder()
                .retry(Duration::from_millis(500))
                .build()
                .expect("a retry-only event"),
        )
        .on_end(|end: &StreamEnd| {
            tracing::info!("stream ended: {} after {} events", end.reason, end.events)
        });

    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route("/publish/{topic}", post(publish))
        .route_service("/countdown", service_fn(countdown))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(http::header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
                    prometheus::render(),
                )
            }),
        )
        .with_state(Hub::new())
        .layer(settings);

    let listener = common::bind(&addr).await;
    let local = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!("listening on http://{local}/");
    tracing::info!("{}", limits.describe());
    // `tower_sse::serve` puts the peer's address in each request (the per-client cap
    // reads it); Ctrl-C cancels the token, which ends the streams and the server.
    common::serve_until_ctrl_c(listener, app, shutdown, |server| server).await;
}
