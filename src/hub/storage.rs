//! Where a hub's events are numbered and kept: the seam for a distributed backend.

use std::sync::{Arc, Weak};

use super::{HubInner, PublishError};
use crate::Event;

/// Where a [`Hub`](crate::Hub)'s events are numbered and stored, and how events
/// published on other instances reach it.
///
/// The hub always fans out from its in-memory topics; a storage decides what happens
/// between `publish` and that fan-out. [`MemoryStorage`] hands the event straight to
/// the hub's feed. A distributed storage appends the event to a shared log, which gives
/// it an id that every instance agrees on, and feeds every instance's hub from that log.
/// Subscribers see the same API either way.
///
/// ```
/// use tower_sse::hub::{Feed, Published, PublishError, Storage};
/// use tower_sse::Event;
///
/// /// A storage that logs every event, then keeps it in memory.
/// struct Logged;
///
/// impl Storage for Logged {
///     fn publish(&self, topic: &str, event: Event, feed: &Feed) -> Result<Published, PublishError> {
///         println!("{topic}: {:?}", event);
///         Ok(feed.append_next(topic, event))
///     }
/// }
/// let hub = tower_sse::Hub::builder().storage(Logged).build();
/// ```
pub trait Storage: Send + Sync + 'static {
    /// Called once when the hub is built, with the feed this storage delivers into.
    fn attach(&self, feed: Feed) {
        let _ = feed;
    }

    /// Publishes `event` on `topic`. Must not block.
    fn publish(&self, topic: &str, event: Event, feed: &Feed) -> Result<Published, PublishError>;
}

/// The default storage: events are numbered and kept by the hub itself, in memory.
///
/// ```
/// let hub = tower_sse::Hub::builder().storage(tower_sse::hub::MemoryStorage).build();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn publish(&self, topic: &str, event: Event, feed: &Feed) -> Result<Published, PublishError> {
        Ok(feed.append_next(topic, event))
    }
}

/// A storage's way into its hub's in-memory topics.
///
/// ```
/// # use tower_sse::hub::{Feed, MemoryStorage, Storage};
/// // Storages receive a `Feed` in `Storage::attach` and `Storage::publish`.
/// ```
#[derive(Clone, Debug)]
pub struct Feed {
    pub(crate) hub: Weak<HubInner>,
}

impl Feed {
    /// Gives `event` the hub's next id and fans it out to the topic's subscribers.
    ///
    /// Does nothing once the hub is gone.
    ///
    /// ```
    /// # use tower_sse::hub::{Feed, Published, PublishError, Storage};
    /// # struct S;
    /// # impl Storage for S {
    /// #     fn publish(&self, topic: &str, event: tower_sse::Event, feed: &Feed) -> Result<Published, PublishError> {
    /// Ok(feed.append_next(topic, event))
    /// #     }
    /// # }
    /// ```
    pub fn append_next(&self, topic: &str, event: Event) -> Published {
        let id = self.hub.upgrade().map(|hub| hub.append_next(topic, event));
        Published { id }
    }

    /// Whether the hub still exists.
    ///
    /// ```
    /// # fn check(feed: &tower_sse::hub::Feed) -> bool {
    /// feed.is_alive()
    /// # }
    /// ```
    pub fn is_alive(&self) -> bool {
        self.hub.strong_count() > 0
    }

    #[allow(dead_code)]
    pub(crate) fn hub(&self) -> Option<Arc<HubInner>> {
        self.hub.upgrade()
    }
}

/// The outcome of [`Hub::publish`](crate::Hub::publish).
///
/// ```
/// let published = tower_sse::Hub::new().publish("t", tower_sse::Event::data("x"))?;
/// assert!(published.id().is_some());
/// # Ok::<(), tower_sse::hub::PublishError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    id: Option<u64>,
}

impl Published {
    /// The id the event was given, when the storage knows it at once (the in-memory
    /// storage always does).
    ///
    /// ```
    /// let published = tower_sse::Hub::new().publish("t", tower_sse::Event::data("x"))?;
    /// println!("sent as {}", published.id().unwrap());
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn id(&self) -> Option<u64> {
        self.id
    }
}
