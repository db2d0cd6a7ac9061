//! Server-Sent Events for hyper and tower that are correct on the wire, fast under
//! fan-out, and boring to run.
//!
//! `tower-sse` turns any `Stream` of [`Event`]s into a `text/event-stream` response:
//!
//! - [`Event`] encodes an event once into `Bytes`; every frame reads back, with a parser
//!   that follows the HTML standard, as exactly the event that was built. An event type
//!   or id that would inject a field is refused with [`EventError`], never written and
//!   never a panic.
//! - [`SseLayer`] wraps any tower service that answers with a stream of events, and
//!   [`Sse`] is the same response for a handler that returns one stream. Both write the
//!   event-stream headers (with `Connection: keep-alive` on HTTP/1.x only), heartbeats
//!   while idle ([`KeepAlive`]), an optional `retry:` first, coalesce ready events into
//!   one frame, keep compression layers from buffering the stream, and report how each
//!   stream ended ([`StreamEnd`]).
//! - [`LastEventId`] is read from the `Last-Event-ID` header, or a query parameter, and
//!   handed to the inner service; a malformed value counts as absent.
//! - [`Shutdown`] ends every open stream cleanly, so a server's graceful shutdown can
//!   complete.
//!
//! # Example
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use futures_util::StreamExt;
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//! use hyper_util::service::TowerToHyperService;
//! use tokio_stream::wrappers::IntervalStream;
//! use tower::{ServiceBuilder, service_fn};
//! use tower_sse::{Event, SseLayer};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let service = ServiceBuilder::new()
//!         .layer(SseLayer::new().retry(Duration::from_secs(2)))
//!         .service(service_fn(|_request| async {
//!             let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)));
//!             let events = ticks.map(|_| Event::builder().event("tick").data("tock").build());
//!             Ok::<_, Infallible>(events)
//!         }));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     loop {
//!         let (socket, _) = listener.accept().await?;
//!         let service = TowerToHyperService::new(service.clone());
//!         tokio::spawn(async move {
//!             auto::Builder::new(TokioExecutor::new())
//!                 .serve_connection(TokioIo::new(socket), service)
//!                 .await
//!         });
//!     }
//! }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod body;
mod config;
mod event;
pub mod hub;
mod keep_alive;
mod last_event_id;
mod layer;
pub mod limit;
mod refusal;
mod report;
mod response;
mod service;
mod shutdown;
#[cfg(feature = "warp")]
#[cfg_attr(docsrs, doc(cfg(feature = "warp")))]
pub mod warp;

pub use body::{IntoEvent, SseBody};
pub use event::{Event, EventBuilder, EventError};
pub use hub::{Hub, Subscription};
pub use keep_alive::KeepAlive;
pub use last_event_id::{LAST_EVENT_ID, LastEventId, LastEventIdError, MAX_LAST_EVENT_ID_LEN};
pub use layer::SseLayer;
pub use limit::{LimitReached, StreamLimit, StreamPermit};
pub use refusal::{Answer, IntoEventStream, Refusal};
pub use report::{EndReason, StreamEnd};
pub use response::Sse;
pub use service::{ResponseFuture, SseService};
pub use shutdown::Shutdown;

/// A boxed error, as stream errors are reported.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
