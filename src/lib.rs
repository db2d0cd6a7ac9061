//! Server-Sent Events for hyper and tower that are correct on the wire, fast, and
//! boring to run.
//!
//! Two pieces, in the manner of tower-http's middleware:
//!
//! - [`Sse`] turns any `Stream` of [`Event`]s (or of `Result<Event, E>`) into a
//!   `text/event-stream` response. [`Event`] encodes an event once into `Bytes`; every
//!   frame reads back, with a parser that follows the HTML standard, as exactly the event
//!   that was built. An event type or id that would inject a field is refused with
//!   [`EventError`], never written and never a panic.
//! - [`SseLayer`] is a tower layer over any service that answers with `http::Response`s
//!   (a tower service, an axum `Router`, `warp::service(filter)`). To every event-stream
//!   response below it, [`Sse`] and axum's own `Sse` alike, it adds the headers
//!   (`Connection: keep-alive` on HTTP/1.x only), heartbeats while idle, an optional
//!   `retry:` first, coalescing of ready events into one write, graceful shutdown at an
//!   event boundary, a cap on open streams ([`StreamLimit`]), and a report of how each
//!   stream ended ([`StreamEnd`]); it hands the client's [`LastEventId`] to the service
//!   in the request's extensions. Other responses pass through untouched.
//!
//! Beside them: [`Refusal`] for the answers that are not a stream (204 "stop for good",
//! 503 with `Retry-After`, 400, 403, a stream that only says when to come back),
//! [`Hub`] for fan-out to many subscribers with topics, history and `Last-Event-ID`
//! replay (itself a tower service), and [`WriteTimeout`] for connections whose client
//! stopped reading.
//!
//! The modules follow that layout: [`layer`] holds the middleware as tower-http lays
//! one out (the layer and its settings, the service, the response future, the response
//! body), [`hub`] the fan-out, [`axum`][axum-mod] and [`warp`][warp-mod] the integrations; the
//! event types, [`Sse`], [`Refusal`], [`WriteTimeout`] and [`serve`][serve-fn] are at the root,
//! where the layer's types are re-exported too (all but its response future and body).
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `json` | [`Event::json`][event-json] and [`EventBuilder::json_data`][builder-json] (serde) |
//! | `axum` | [`axum`][axum-mod]: `IntoResponse` for [`Sse`] and [`Refusal`], extractors (axum 0.8) |
//! | `warp` | [`warp`][warp-mod]: `warp::Reply` for [`Sse`] and [`Refusal`], a `Last-Event-ID` filter (warp 0.4) |
//! | `serve` (default) | [`serve`][serve-fn]: the accept loop, guarded, for HTTP/1.1 and h2c (hyper, hyper-util) |
//! | `redis` | `hub::RedisStorage`: the [`Hub`] on Redis Streams, several instances on one feed |
//! | `compression-gzip`, `-deflate`, `-br`, `-zstd`, `-full` | the codecs of [`StreamCompression`]: event streams compressed and flushed at every frame |
//! | `metrics` | [`metrics`]: open streams, ends, refusals, bytes, the hub, Redis and [`serve`], through the `metrics` facade |
//!
//! Examples: `examples/hyper.rs` (hyper 1 with [`serve`][serve-fn], HTTP/1.1 and HTTP/2 on one
//! port), `examples/axum.rs`, `examples/warp.rs`, `examples/aircraft`,
//! `examples/sensors`.
//!
//! # Serving in production
//!
//! **Connections that never become streams.** [`serve`][serve-fn] accepts and serves connections
//! with a deadline for the first request, hyper's header read timeout, a cap on open
//! connections taken before accepting, a growing pause after accept errors (`EMFILE`),
//! and [`WriteTimeout`] on every connection; an axum `Router` or `warp::service(filter)`
//! is served the same way. A hand-written accept loop, like `axum::serve`, holds a
//! connection that sends nothing forever (`tests/serve.rs`).
//!
//! **Graceful shutdown.** An SSE response never ends by itself, so a server's graceful
//! shutdown waits for it forever. Give a `tokio_util::sync::CancellationToken` to
//! [`SseLayer::graceful_shutdown`], cancel it when the server starts to drain, and set a
//! [`shutdown_event`](SseLayer::shutdown_event) with a `retry` so that browsers come
//! back soon, with their `Last-Event-ID`, to another instance. Each stream's end is
//! reported as [`EndReason::Shutdown`]. With 1,000 streams open, hyper-util's
//! `GracefulShutdown` and axum's `with_graceful_shutdown` complete within a fraction of
//! a second (`tests/shutdown.rs`).
//!
//! **HTTP/2.** Browsers allow six HTTP/1.1 connections per origin, and each
//! `EventSource` holds one. Over HTTP/2 every stream shares one connection; [`serve`][serve-fn]
//! serves both (with hyper-util's `auto::Builder`); raise
//! [`max_concurrent_streams`][serve-streams] above hyper's default of 200
//! if a page opens more (`tests/http2.rs` runs 200 streams over
//! one connection). Browsers speak HTTP/2 only over TLS.
//!
//! **Stalled and vanished clients.** A client that stops reading fills its connection's
//! buffers; hyper then stops polling the response, so nothing in the stream can act.
//! [`serve`][serve-fn] wraps each accepted connection in [`WriteTimeout`] (twice the heartbeat
//! interval is a good timeout, 30 s by default): a write that cannot make progress for
//! that long fails, hyper closes the connection, and the stream's end is reported as
//! [`EndReason::ClientGone`]. On Linux,
//! [`WriteTimeout::tcp`] also sets `TCP_USER_TIMEOUT`, which closes a client that
//! vanished without closing even on a quiet stream (`tests/reliability_stalled.rs`).
//! Under a server without a write timeout (`axum::serve`), the layer's
//! [`stall_timeout`](SseLayer::stall_timeout) reports such a stream as
//! [`EndReason::Stalled`], and the stream keeps its place under a [`StreamLimit`] until
//! the connection lets go of it: the limit bounds the connections stalled clients hold.
//!
//! **Limits.** [`SseLayer::limit`] with a [`StreamLimit`]: see there for why tower's
//! `ConcurrencyLimit` cannot count event streams, and which of tower's layers do fit. A
//! request that is not a GET but is answered with an event stream gets 405.
//!
//! **CORS.** Put tower-http's `CorsLayer` outside [`SseLayer`], allow GET and the
//! `Last-Event-ID` header:
//!
//! ```
//! use std::time::Duration;
//! use http::Method;
//! use tower::ServiceBuilder;
//! use tower_http::cors::{AllowOrigin, CorsLayer};
//! use tower_sse::{LastEventId, SseLayer};
//!
//! let cors = CorsLayer::new()
//!     .allow_origin(AllowOrigin::exact("https://app.example".parse().unwrap()))
//!     .allow_methods([Method::GET])
//!     .allow_headers([LastEventId::HEADER])
//!     .max_age(Duration::from_secs(3600));
//! let service = ServiceBuilder::new()
//!     .layer(cors)
//!     .layer(SseLayer::new())
//!     .service(tower_sse::Hub::new());
//! # fn is_a_service<S: tower::Service<http::Request<()>>>(_: &S) {}
//! # is_a_service(&service);
//! ```
//!
//! Chromium sends the `Last-Event-ID` of an `EventSource` reconnection without a
//! preflight, even a long non-ASCII one; a fetch-based client that sets the header
//! itself gets a preflight when the value is long, which fails unless the header is
//! allowed (`tests/cors.rs` checks both in Chromium).
//!
//! # Example
//!
//! With the dependencies of README's Quick start (`tower-sse`, `futures-util`, `http`,
//! `hyper`, `tokio` with `macros`, `net`, `rt-multi-thread` and `time`, `tower` with
//! `util`):
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use futures_util::{StreamExt, stream};
//! use tower::{ServiceBuilder, service_fn};
//! use tower_sse::{Event, Sse, SseLayer};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let service = ServiceBuilder::new()
//!         .layer(SseLayer::new().retry(Duration::from_secs(2)))
//!         .service(service_fn(|_request: http::Request<hyper::body::Incoming>| async {
//!             let events = stream::repeat(()).then(|()| async {
//!                 tokio::time::sleep(Duration::from_secs(1)).await;
//!                 Event::builder().event("tick").data("tock").build()
//!             });
//!             Ok::<_, Infallible>(Sse::new(events).into_response())
//!         }));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     tower_sse::serve(listener, service).await;
//!     Ok(())
//! }
//! ```
// Links to items of features that may be off: to the item when it is built, else to
// its page on docs.rs (which builds every feature).
#![doc = ""]
#![cfg_attr(feature = "axum", doc = "[axum-mod]: mod@crate::axum")]
#![cfg_attr(
    not(feature = "axum"),
    doc = "[axum-mod]: https://docs.rs/tower-sse/latest/tower_sse/axum/index.html"
)]
#![cfg_attr(feature = "warp", doc = "[warp-mod]: mod@crate::warp")]
#![cfg_attr(
    not(feature = "warp"),
    doc = "[warp-mod]: https://docs.rs/tower-sse/latest/tower_sse/warp/index.html"
)]
#![cfg_attr(feature = "json", doc = "[event-json]: Event::json")]
#![cfg_attr(
    not(feature = "json"),
    doc = "[event-json]: https://docs.rs/tower-sse/latest/tower_sse/struct.Event.html#method.json"
)]
#![cfg_attr(feature = "json", doc = "[builder-json]: EventBuilder::json_data")]
#![cfg_attr(
    not(feature = "json"),
    doc = "[builder-json]: https://docs.rs/tower-sse/latest/tower_sse/struct.EventBuilder.html#method.json_data"
)]
#![cfg_attr(feature = "serve", doc = "[serve-fn]: serve()")]
#![cfg_attr(
    not(feature = "serve"),
    doc = "[serve-fn]: https://docs.rs/tower-sse/latest/tower_sse/fn.serve.html"
)]
#![cfg_attr(
    feature = "serve",
    doc = "[serve-streams]: Serve::max_concurrent_streams"
)]
#![cfg_attr(
    not(feature = "serve"),
    doc = "[serve-streams]: https://docs.rs/tower-sse/latest/tower_sse/struct.Serve.html#method.max_concurrent_streams"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod error;
mod event;
mod event_stream;
pub mod hub;
pub mod layer;
#[cfg_attr(not(feature = "metrics"), doc(hidden))]
pub mod metrics;
mod query;
mod refusal;
mod serve;
mod sse;
mod sync;
#[cfg(feature = "warp")]
#[cfg_attr(docsrs, doc(cfg(feature = "warp")))]
pub mod warp;

pub use event::{Event, EventBuilder, EventError, LastEventId};
pub use hub::{Hub, Subscription};
pub use layer::{EndReason, SseLayer, SseService, StreamCompression, StreamEnd, StreamLimit};
pub use refusal::Refusal;
pub use serve::WriteTimeout;
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub use serve::{Serve, serve};
pub use sse::{IntoEvent, Sse};

/// The code in README.md, compiled and run as doctests so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
