//! The middleware: [`SseLayer`] over any service that answers with `http::Response`s,
//! laid out as tower-http lays out its middleware.
//!
//! - [`SseLayer`] holds the settings, plain data; wrapping a service
//!   ([`Layer::layer`](tower_layer::Layer::layer)) builds the state its streams share: the
//!   batching clock and the sweep that finds stalled streams.
//! - [`SseService`] is the request side: it puts the client's
//!   [`LastEventId`](crate::LastEventId) in the request's extensions and, with a
//!   [`StreamLimit`], takes a stream's place before the inner service runs.
//! - [`ResponseFuture`] is the response side: an event-stream answer gets its headers
//!   and a [`ResponseBody`] that runs it (heartbeats, the `retry:` prelude, coalescing or
//!   batching, graceful shutdown at an event boundary, compression with
//!   [`StreamCompression`], the limit's place, and a [`StreamEnd`] report); a request
//!   that is not a GET gets 405; any other answer passes through untouched.
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, service_fn};
//! use tower_sse::layer::{ResponseBody, SseLayer};
//! use tower_sse::{Event, Sse};
//!
//! let service = ServiceBuilder::new()
//!     .layer(SseLayer::new())
//!     .service(service_fn(|_request: http::Request<()>| async {
//!         let events = futures_util::stream::iter([Event::data("hello")]);
//!         Ok::<_, Infallible>(Sse::new(events).into_response())
//!     }));
//! # fn body_is<S, B>(_: &S) where S: tower::Service<http::Request<()>, Response = http::Response<ResponseBody<B>>> {}
//! # body_is(&service);
//! ```

mod body;
mod compression;
mod end;
mod future;
// Named as tower-http names the layer of each of its middleware.
#[allow(clippy::module_inception)]
mod layer;
mod limit;
mod service;
mod settings;
mod stream;

pub use body::ResponseBody;
pub use compression::StreamCompression;
pub use end::{EndReason, StreamEnd};
pub use future::ResponseFuture;
pub use layer::SseLayer;
pub use limit::StreamLimit;
pub use service::SseService;
