//! The seam to a shared log (Redis Streams), for several instances on one feed.
//!
//! The hub is the whole engine: topics, history, fan-out, replay. A shared log only
//! numbers and keeps events that several instances share. The seam runs one way: the
//! hub calls the log ([`SharedLog`]); what the log reads back (events from every
//! instance, the confirmation that a topic is watched, where the log stands) comes to
//! the hub as [`Delivery`] values on a channel the hub hands it and drains itself.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::PublishError;
use crate::Event;

/// A log shared by several hubs. Implemented by `RedisStorage` only.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait SharedLog: Send + Sync + fmt::Debug + 'static {
    /// Starts the log's tasks; what it reads goes to `deliveries`, in id order.
    fn start(&self, deliveries: mpsc::Sender<Delivery>);

    /// Takes `event` to be numbered and appended on `topic`. Must not block.
    fn publish(&self, topic: &str, event: Event) -> Result<Published, PublishError>;

    /// `topic` has local subscribers now: deliver its events and confirm with
    /// [`Delivery::Covered`] carrying `generation`. Must not block.
    fn watch(&self, topic: &Arc<str>, generation: u64);

    /// `topic` has no local subscriber any more. Must not block.
    fn unwatch(&self, topic: &Arc<str>);

    /// At most `count` events of `topic` with ids in `after + 1 ..= upto`, oldest first,
    /// without their `id:` line. Retries while the log is unreachable.
    fn page(&self, topic: &Arc<str>, after: u64, upto: u64, count: usize) -> PageFuture;
}

/// What a shared log reads back, in the order the hub must apply it.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Events of watched topics, in id order: `(id, topic, event without id)`.
    Events(Vec<(u64, Arc<str>, Event)>),
    /// Every event of `topic` with an id greater than `after` is delivered from now on,
    /// for the watch of `generation`.
    Covered {
        topic: Arc<str>,
        generation: u64,
        after: u64,
    },
    /// The log's newest id: subscribers without a `Last-Event-ID` start there.
    Advance(u64),
}

/// The answer of [`SharedLog::page`].
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum Page {
    /// Events asked for, oldest first, and the id to read the next page after (`None`
    /// when the range is exhausted).
    Events {
        events: Vec<(u64, Event)>,
        next: Option<u64>,
    },
    /// Some of the events asked for are no longer kept, or `after` was never issued.
    Gap(GapReason),
}

pub(crate) type PageFuture = Pin<Box<dyn Future<Output = Page> + Send>>;

/// Why a subscriber receives the reset event instead of the events it missed; the reset
/// event's data is this reason's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GapReason {
    /// History no longer holds all of them.
    Evicted,
    /// The id is newer than any event, or from another run of the hub.
    Unknown,
    /// The id is not an id of this hub.
    Malformed,
    /// The subscriber fell behind and skipped ahead.
    Lagged,
}

impl GapReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::Unknown => "unknown",
            GapReason::Malformed => "malformed",
            GapReason::Lagged => "lagged",
        }
    }
}

/// The outcome of [`Hub::publish`](crate::Hub::publish).
///
/// The in-memory hub numbers and stores an event before `publish` returns. On a shared
/// log (`HubBuilder::redis`) the event is written a moment later: then
/// [`id`](Published::id) is `None` and [`acknowledged`](Published::acknowledged) tells
/// when it was stored, and under which id.
///
/// ```
/// let published = tower_sse::Hub::new().publish("t", tower_sse::Event::data("x"))?;
/// assert!(published.id().is_some());
/// # Ok::<(), tower_sse::hub::PublishError>(())
/// ```
#[derive(Debug)]
pub struct Published {
    id: Option<u64>,
    ack: Option<oneshot::Receiver<u64>>,
}

impl Published {
    pub(crate) fn stored(id: u64) -> Self {
        Published {
            id: Some(id),
            ack: None,
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn pending(ack: oneshot::Receiver<u64>) -> Self {
        Published {
            id: None,
            ack: Some(ack),
        }
    }

    /// The id the event was given, when it is known at once (in memory it always is).
    ///
    /// ```
    /// let published = tower_sse::Hub::new().publish("t", tower_sse::Event::data("x"))?;
    /// println!("sent as {}", published.id().unwrap());
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Waits until the event is stored, and gives its id. On Redis, a write waits (and
    /// is retried) while Redis is unreachable; it fails only if the hub stops first.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = tower_sse::Hub::new();
    /// let id = hub.publish("t", tower_sse::Event::data("x"))?.acknowledged().await?;
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// # }).unwrap();
    /// ```
    pub async fn acknowledged(self) -> Result<u64, PublishError> {
        match (self.id, self.ack) {
            (Some(id), _) => Ok(id),
            (None, Some(ack)) => ack.await.map_err(|_| PublishError::Stopped),
            (None, None) => Err(PublishError::Stopped),
        }
    }
}
