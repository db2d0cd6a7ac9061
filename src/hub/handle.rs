//! The hub's public face: publish, subscribe, stats.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tokio::time::Instant;

use super::builder::HubBuilder;
use super::engine::HubInner;
use super::topic::Topic;
use super::{MAX_KEY_LEN, PublishError, Published, Subscription, TopicStats};
use crate::{Event, LastEventId};

/// A publish-subscribe hub for server-sent events. Cheap to clone; share it freely.
///
/// ```
/// use tower_sse::{Event, Hub};
///
/// let hub = Hub::builder().history_events(100).build();
/// let published = hub.publish("weather", Event::data("sunny"))?;
/// assert!(published.id().is_some());
/// assert_eq!(hub.stats("weather").unwrap().published, 1);
/// # Ok::<(), tower_sse::hub::PublishError>(())
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An in-memory hub with the default settings.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a hub.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_events(64).build();
    /// ```
    pub fn builder() -> HubBuilder {
        HubBuilder::new()
    }

    /// Publishes `event` on `topic`, giving it the hub's next id (which replaces any id
    /// the event had).
    ///
    /// Never waits on subscribers: the event is appended to the topic's history
    /// (constant work under a lock, however many read it), and the subscribers parked on
    /// the topic are woken after every lock is released. A subscriber that
    /// fell too far behind finds out itself when it reads, so a client that stops
    /// reading never holds anyone up.
    ///
    /// On a shared log (`HubBuilder::redis`) the event is queued to be written, and
    /// publishing fails at once with [`PublishError::Unreachable`] while the log cannot
    /// be reached.
    ///
    /// An empty topic name is not a topic: publishing on it fails with
    /// [`PublishError::EmptyTopic`].
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let first = hub.publish("t", tower_sse::Event::data("1"))?.id().unwrap();
    /// let second = hub.publish("t", tower_sse::Event::data("2"))?.id().unwrap();
    /// assert!(second > first);
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn publish(&self, topic: &str, event: Event) -> Result<Published, PublishError> {
        self.publish_with(topic, None, event)
    }

    /// Publishes `event` on `topic` as the newest state of `key` (a conflation key: an
    /// aircraft, a stock symbol, a sensor), as [`publish`](Hub::publish) does
    /// otherwise. The key is never sent to clients: the event's frame is the same as
    /// without it.
    ///
    /// A subscriber that keeps up receives every event, keyed or not. One that falls
    /// behind under [`LagPolicy::Conflate`](super::LagPolicy::Conflate), and one that
    /// resumes with [`conflate_replay`](super::HubBuilder::conflate_replay), catches up
    /// with the newest event of each key it missed (and every keyless event), in id
    /// order. On Redis the key is stored with the event, so every instance conflates
    /// alike.
    ///
    /// A key is 1 to [`MAX_KEY_LEN`](super::MAX_KEY_LEN) (256) bytes; any other fails
    /// with [`PublishError::InvalidKey`], before anything is published.
    ///
    /// ```
    /// use tower_sse::{Event, Hub, hub::LagPolicy};
    ///
    /// let hub = Hub::builder().lag_policy(LagPolicy::Conflate).conflate_replay(true).build();
    /// let position = Event::builder().event("position").data(r#"{"lat":13.69,"lon":100.75}"#).build()?;
    /// let published = hub.publish_keyed("positions", "THA123", position)?;
    /// assert!(published.id().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_keyed(
        &self,
        topic: &str,
        key: &str,
        event: Event,
    ) -> Result<Published, PublishError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            let refused = Err(PublishError::InvalidKey { len: key.len() });
            self.inner.metrics.published(topic, &refused);
            return refused;
        }
        self.publish_with(topic, Some(key), event)
    }

    fn publish_with(
        &self,
        topic: &str,
        key: Option<&str>,
        event: Event,
    ) -> Result<Published, PublishError> {
        let published = match &self.inner.log {
            _ if topic.is_empty() => Err(PublishError::EmptyTopic),
            None => Ok(Published::stored(
                self.inner.publish_local(topic, key, event),
            )),
            Some(log) => log.publish(topic, key, event),
        };
        self.inner.metrics.published(topic, &published);
        published
    }

    /// Subscribes to `topics`, resuming after `last_event_id` when given.
    ///
    /// With an id that history still covers, the subscriber first receives every event
    /// of these topics it missed. With an id that is older than history, unknown, or not
    /// an id of this hub, it first receives the reset event, then live events.
    ///
    /// Repeated names count once. An empty name is not a topic and is ignored; with no
    /// topic left, the subscription reads nothing: it yields no event and stays open
    /// until dropped. No input makes it panic.
    ///
    /// ```
    /// use tower_sse::{Hub, LastEventId};
    ///
    /// let hub = Hub::new();
    /// let id = hub.publish("a", tower_sse::Event::data("x"))?.id().unwrap();
    /// let resumed = hub.subscribe(["a", "b"], Some(&LastEventId::new(id.to_string())));
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn subscribe<I, T>(&self, topics: I, last_event_id: Option<&LastEventId>) -> Subscription
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut names: Vec<Arc<str>> = Vec::new();
        for topic in topics {
            let topic = topic.as_ref();
            if !topic.is_empty() && !names.iter().any(|n| &**n == topic) {
                names.push(Arc::from(topic));
            }
        }
        self.inner.subscribe(names, last_event_id)
    }

    /// The counters of `topic`, if it exists.
    ///
    /// ```
    /// assert!(tower_sse::Hub::new().stats("nothing").is_none());
    /// ```
    pub fn stats(&self, topic: &str) -> Option<TopicStats> {
        self.inner.tend(Instant::now(), false, true);
        self.inner.find(topic).map(|t| t.stats())
    }

    /// The counters of every topic.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// hub.publish("a", tower_sse::Event::data("x"))?;
    /// assert_eq!(hub.all_stats().len(), 1);
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn all_stats(&self) -> Vec<TopicStats> {
        self.inner.sweep(Instant::now());
        let topics: Vec<Arc<Topic>> = {
            let map = self
                .inner
                .topics
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            map.values().cloned().collect()
        };
        let mut stats: Vec<TopicStats> = topics.iter().map(|t| t.stats()).collect();
        stats.sort_by(|a, b| a.topic.cmp(&b.topic));
        stats
    }

    /// The id of the newest event published, the id a new subscriber starts after.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let id = hub.publish("t", tower_sse::Event::data("x"))?.id().unwrap();
    /// assert_eq!(hub.last_id(), id);
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn last_id(&self) -> u64 {
        self.inner.watermark.load(Ordering::Acquire)
    }

    /// Events the hub evicted from history to stay within its
    /// [`budget`](HubBuilder::budget), so far: those of the topics nobody read that it
    /// dropped, and those it took from the history of read topics. (Events that left
    /// history by its own bounds, `history_events`, `history_bytes` and `history_age`,
    /// do not count.) A subscriber that resumes from before an evicted event receives
    /// the reset event.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().budget(0, 0).build();
    /// hub.publish("nobody-reads-this", tower_sse::Event::data("x"))?;
    /// assert_eq!(hub.evicted(), 1);
    /// assert!(hub.stats("nobody-reads-this").is_none());
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn evicted(&self) -> u64 {
        self.inner.budget.evicted()
    }
}
