//! Fan-out to many subscribers: topics, history and `Last-Event-ID` replay.
//!
//! A [`Hub`] gives every published event its id and encodes it once; every subscriber
//! receives the same `Bytes`. Each topic keeps its events in one ring that its
//! subscribers read from, each at its own position. The ring holds the topic's bounded
//! history, for replay, and, while it has subscribers, its live window, the events a
//! subscriber may still have to read: a subscriber that keeps up receives every event,
//! whatever history keeps. A subscriber that comes back with a `Last-Event-ID` simply
//! starts reading further back, so the events it missed and the live ones that follow
//! form one sequence, with no gap and no duplicate, however many publishers run
//! meanwhile.
//!
//! The hub is bounded as a whole ([`HubBuilder::budget`]): when it holds too much, the
//! topics nobody reads go first, least recently used first, and a subscriber that
//! resumes from before what was evicted is told so by the reset event.
//!
//! The hub is itself a tower service: `GET /events?topic=positions` subscribes to the
//! topics the query names, resumed from the client's `Last-Event-ID`, and a request it
//! cannot serve is answered 400 or 403. Put [`SseLayer`](crate::SseLayer) around it:
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_sse::{Event, Hub, SseLayer};
//!
//! let hub = Hub::new();
//! let events = ServiceBuilder::new().layer(SseLayer::new()).service(hub.clone());
//! hub.publish("positions", Event::builder().event("position").data("{}").build()?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Handlers that choose the topics themselves call [`Hub::subscribe`] and answer with
//! `Sse::new(subscription)`.
//!
//! A publish holds its locks for constant work only, and wakes the subscribers parked
//! on the topic after releasing them; each subscriber finds out from its own
//! position whether it fell too far behind ([`LagPolicy`]). Several instances serve one
//! feed on Redis Streams with `HubBuilder::redis` (feature `redis`).
//!
//! For a feed of states (positions, prices, readings), events published with a
//! conflation key ([`Hub::publish_keyed`]) let a subscriber that fell behind
//! ([`LagPolicy::Conflate`]), or a resumer ([`HubBuilder::conflate_replay`]), catch up
//! with the newest event of each key instead of every event.

mod budget;
mod builder;
mod conflate;
mod deliveries;
mod engine;
mod error;
mod handle;
mod log;
#[cfg(all(test, tower_sse_loom))]
mod loom;
mod member_set;
mod published;
#[cfg(feature = "redis")]
mod redis;
mod request;
mod signal;
mod stats;
mod subscription;
mod topic;
mod waiters;

pub use builder::{HubBuilder, LagPolicy};
pub use conflate::MAX_KEY_LEN;
pub use error::PublishError;
pub use handle::Hub;
pub use published::Published;
pub use request::RequestError;
pub use stats::TopicStats;
pub use subscription::{Subscription, SubscriptionError};

#[cfg(feature = "redis")]
pub use self::redis::RedisStorage;
