//! Where a hub's events are numbered and kept: the seam for a distributed backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use super::{HubInner, PublishError};
use crate::Event;

/// Where a [`Hub`](crate::Hub)'s events are numbered and stored, and how events
/// published on other instances reach it.
///
/// The hub always fans out from its in-memory topics; a storage decides what happens
/// between `publish` and that fan-out.
///
/// - [`MemoryStorage`] (the default) hands each event straight to the hub, which numbers
///   it; the hub's own history is the whole history.
/// - A *shared* storage ([`is_shared`](Storage::is_shared) returns `true`) numbers events
///   in a log that several instances share. The hub tells it which topics have local
///   subscribers ([`watch`](Storage::watch), [`unwatch`](Storage::unwatch)); it delivers
///   their events, from every instance, in id order with [`Feed::deliver`], after saying
///   from which id on it does so with [`Feed::covered`]; and it answers
///   [`history`](Storage::history) for subscribers that resume from further back.
///
/// Subscribers see the same API with either.
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

    /// Whether events are numbered and kept outside the hub (see the trait's docs).
    fn is_shared(&self) -> bool {
        false
    }

    /// `topic` has local subscribers: deliver its events, then confirm with
    /// [`Feed::covered`] carrying the same `generation`. Must not block.
    fn watch(&self, topic: &str, generation: u64) {
        let _ = (topic, generation);
    }

    /// `topic` has no local subscriber any more. Must not block.
    fn unwatch(&self, topic: &str, generation: u64) {
        let _ = (topic, generation);
    }

    /// The events of `topic` with ids in `after + 1 ..= upto`, oldest first, without
    /// their `id:` line (the hub adds it); [`History::Gap`] when some of them are no
    /// longer kept, or when `after` is newer than any id issued.
    fn history(&self, topic: &str, after: u64, upto: u64) -> HistoryFuture {
        let _ = (topic, after, upto);
        Box::pin(std::future::ready(Ok(History::Gap(GapReason::Evicted))))
    }
}

/// What [`Storage::history`] returns.
pub type HistoryFuture = Pin<Box<dyn Future<Output = Result<History, PublishError>> + Send>>;

/// The answer of [`Storage::history`].
///
/// ```
/// use tower_sse::hub::{GapReason, History};
/// let history = History::Gap(GapReason::Unknown);
/// ```
#[derive(Debug)]
pub enum History {
    /// Every event asked for: `(id, event without id)`, oldest first.
    Events(Vec<(u64, Event)>),
    /// Some of the events asked for cannot be replayed.
    Gap(GapReason),
}

/// Why a subscriber receives the reset event instead of the events it missed; the reset
/// event's data is this reason's name.
///
/// ```
/// assert_eq!(tower_sse::hub::GapReason::Evicted.as_str(), "evicted");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapReason {
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
    /// The reason's name, the data of the reset event.
    ///
    /// ```
    /// assert_eq!(tower_sse::hub::GapReason::Lagged.as_str(), "lagged");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::Unknown => "unknown",
            GapReason::Malformed => "malformed",
            GapReason::Lagged => "lagged",
        }
    }
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
    /// Gives `event` the hub's next id and fans it out to the topic's subscribers (for
    /// storages that let the hub number events). Does nothing once the hub is gone.
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
        Published { id, ack: None }
    }

    /// Fans out an event a shared storage numbered `id` (`event` has no `id:` line yet).
    ///
    /// Ids must grow across every call: an id not greater than the last one delivered is
    /// dropped (and traced), since subscribers may already have moved past it.
    ///
    /// ```
    /// # fn deliver(feed: &tower_sse::hub::Feed) {
    /// feed.deliver("weather", 42, tower_sse::Event::data("rain"));
    /// # }
    /// ```
    pub fn deliver(&self, topic: &str, id: u64, event: Event) -> bool {
        self.hub
            .upgrade()
            .is_some_and(|hub| hub.deliver(topic, id, event))
    }

    /// Tells the hub that every event of `topic` with an id greater than `after` will
    /// be delivered, for the watch of that `generation`.
    ///
    /// ```
    /// # fn covered(feed: &tower_sse::hub::Feed) {
    /// feed.covered("weather", 1, 41);
    /// # }
    /// ```
    pub fn covered(&self, topic: &str, generation: u64, after: u64) {
        if let Some(hub) = self.hub.upgrade() {
            hub.covered(topic, generation, after);
        }
    }

    /// Raises the hub's newest id to `id` (if it is lower) without delivering an event:
    /// a shared storage calls it once connected, so that subscribers without a
    /// `Last-Event-ID` start where the shared log stands, not at its beginning.
    ///
    /// ```
    /// # fn start(feed: &tower_sse::hub::Feed) {
    /// feed.advance(1_000);
    /// # }
    /// ```
    pub fn advance(&self, id: u64) {
        if let Some(hub) = self.hub.upgrade() {
            hub.advance(id);
        }
    }

    /// The id of the newest event delivered to the hub.
    ///
    /// ```
    /// # fn last(feed: &tower_sse::hub::Feed) -> u64 {
    /// feed.last_id()
    /// # }
    /// ```
    pub fn last_id(&self) -> u64 {
        self.hub.upgrade().map_or(0, |hub| {
            hub.watermark.load(std::sync::atomic::Ordering::Acquire)
        })
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
/// The in-memory storage numbers and stores an event before `publish` returns. A shared
/// storage may take the event and store it a moment later: then [`id`](Published::id)
/// is `None` and [`acknowledged`](Published::acknowledged) tells when (and whether) it
/// was stored.
///
/// ```
/// let published = tower_sse::Hub::new().publish("t", tower_sse::Event::data("x"))?;
/// assert!(published.id().is_some());
/// # Ok::<(), tower_sse::hub::PublishError>(())
/// ```
#[derive(Debug)]
pub struct Published {
    id: Option<u64>,
    ack: Option<oneshot::Receiver<Result<u64, PublishError>>>,
}

impl Published {
    /// An event already stored under `id`.
    ///
    /// ```
    /// assert_eq!(tower_sse::hub::Published::stored(7).id(), Some(7));
    /// ```
    pub fn stored(id: u64) -> Self {
        Published {
            id: Some(id),
            ack: None,
        }
    }

    /// An event that will be stored later; the sender's value answers
    /// [`acknowledged`](Published::acknowledged).
    ///
    /// ```
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let published = tower_sse::hub::Published::pending(rx);
    /// let _ = tx.send(Ok(9));
    /// ```
    pub fn pending(ack: oneshot::Receiver<Result<u64, PublishError>>) -> Self {
        Published {
            id: None,
            ack: Some(ack),
        }
    }

    /// The id the event was given, when the storage knew it at once (the in-memory
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

    /// Waits until the event is stored, and gives its id.
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
            (None, Some(ack)) => ack.await.unwrap_or_else(|_| {
                Err(PublishError::Unavailable(
                    "the storage dropped the event".into(),
                ))
            }),
            (None, None) => Err(PublishError::Unavailable("the hub is gone".into())),
        }
    }
}
