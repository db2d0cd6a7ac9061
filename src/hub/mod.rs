//! Fan-out to many subscribers: topics, history and `Last-Event-ID` replay.
//!
//! A [`Hub`] gives every published event its id and encodes it once; every subscriber
//! receives the same `Bytes`. Each topic keeps a bounded history, which is also the
//! queue its subscribers read from, each at its own position: a subscriber that comes
//! back with a `Last-Event-ID` simply starts reading further back, so the events it
//! missed and the live ones that follow form one sequence, with no gap and no duplicate,
//! however many publishers run meanwhile.
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

#[cfg(feature = "redis")]
mod redis;
mod request;
mod signal;
mod storage;
mod subscription;
mod topic;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;

pub use request::SubscribeError;
pub use storage::{Feed, GapReason, History, HistoryFuture, MemoryStorage, Published, Storage};
pub use subscription::{Subscription, SubscriptionError};

#[cfg(feature = "redis")]
pub use self::redis::RedisStorage;

use crate::{Event, LastEventId};
use subscription::{Member, Pending};
use topic::Topic;

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
    inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// Taken by every publish: ids are handed out and appended in one order.
    publish: Mutex<u64>,
    /// The newest id appended; every smaller id is already in its topic.
    pub(crate) watermark: AtomicU64,
    /// Ids of this hub start above this value; an older id comes from another run.
    first: u64,
    pub(crate) storage: Arc<dyn Storage>,
}

impl fmt::Debug for HubInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Settings of a hub; see [`HubBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct HubConfig {
    pub(crate) history_events: usize,
    pub(crate) history_bytes: Option<usize>,
    pub(crate) history_age: Option<Duration>,
    pub(crate) queue_events: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) lag_policy: LagPolicy,
    pub(crate) reset_event_type: Arc<str>,
    pub(crate) topic_param: Arc<str>,
    pub(crate) max_topics: usize,
    pub(crate) authorize: Option<Authorize>,
}

pub(crate) use request::Authorize;

/// What happens to a subscriber whose queue is full.
///
/// ```
/// use tower_sse::{Hub, hub::LagPolicy};
/// let hub = Hub::builder().lag_policy(LagPolicy::SkipAhead).build();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LagPolicy {
    /// Its stream ends; the browser reconnects with its `Last-Event-ID` and catches up
    /// from history, so nothing is lost while history covers it.
    #[default]
    Disconnect,
    /// It skips to the newest event and first receives the reset event, so the page
    /// knows to reload its state.
    SkipAhead,
}

/// Builds a [`Hub`].
///
/// ```
/// use std::time::Duration;
/// use tower_sse::Hub;
///
/// let hub = Hub::builder()
///     .history_events(10_000)
///     .history_bytes(8 << 20)
///     .history_age(Duration::from_secs(300))
///     .queue_events(1000)
///     .reset_event_type("resync")
///     .build();
/// ```
#[derive(Debug)]
#[must_use = "a HubBuilder does nothing until `build` is called"]
pub struct HubBuilder {
    config: HubConfig,
    storage: Option<Arc<dyn Storage>>,
}

impl fmt::Debug for dyn Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Storage")
    }
}

impl HubBuilder {
    /// Events each topic keeps for replay (default 4096).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_events(100).build();
    /// ```
    pub fn history_events(mut self, events: usize) -> Self {
        self.config.history_events = events;
        self
    }

    /// Bytes each topic keeps for replay, at most (default: no bound but the count).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_bytes(1 << 20).build();
    /// ```
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.config.history_bytes = Some(bytes);
        self
    }

    /// How long an event stays in history, at most (default: no bound but the count).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_age(std::time::Duration::from_secs(60)).build();
    /// ```
    pub fn history_age(mut self, age: Duration) -> Self {
        self.config.history_age = Some(age);
        self
    }

    /// Events a subscriber may fall behind the newest before the [`LagPolicy`] applies
    /// (default 1024). Events replayed when it subscribed do not count.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().queue_events(256).build();
    /// ```
    pub fn queue_events(mut self, events: usize) -> Self {
        self.config.queue_events = events;
        self
    }

    /// Bytes a subscriber may fall behind before the [`LagPolicy`] applies (default 4 MiB).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().queue_bytes(1 << 20).build();
    /// ```
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.config.queue_bytes = bytes;
        self
    }

    /// What happens to a subscriber that falls too far behind.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().lag_policy(tower_sse::hub::LagPolicy::SkipAhead).build();
    /// ```
    pub fn lag_policy(mut self, policy: LagPolicy) -> Self {
        self.config.lag_policy = policy;
        self
    }

    /// The type of the event that tells a subscriber it missed events that can no longer
    /// be replayed (default `stream-reset`). Its data says why: `evicted`, `unknown`,
    /// `malformed` or `lagged`.
    ///
    /// A type with a line break is ignored (the default stays).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().reset_event_type("resync").build();
    /// ```
    pub fn reset_event_type(mut self, event_type: &str) -> Self {
        if !event_type.contains(['\r', '\n']) {
            self.config.reset_event_type = Arc::from(event_type);
        }
        self
    }

    /// The query parameter [`Hub::subscribe_request`] reads topics from (default `topic`).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().topic_param("channel").build();
    /// ```
    pub fn topic_param(mut self, name: &str) -> Self {
        self.config.topic_param = Arc::from(name);
        self
    }

    /// Most topics one request may name (default 64); [`Hub::subscribe_request`]
    /// refuses more with [`SubscribeError::TooManyTopics`] (400 once turned into a
    /// [`Refusal`](crate::Refusal)).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().max_topics(8).build();
    /// ```
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.config.max_topics = topics.max(1);
        self
    }

    /// Decides which topics a request may read: [`Hub::subscribe_request`] and
    /// [`Hub::subscribe_parts`] call `allowed(topic, request)` for every topic a request
    /// names, and refuse the whole request with [`SubscribeError::Forbidden`] (403
    /// once turned into a [`Refusal`](crate::Refusal)) at the first topic it refuses,
    /// before anything is subscribed. Mercure and django-eventstream authorize topics
    /// the same way.
    ///
    /// The hook sees the request's head: its headers (a cookie, a bearer token), its
    /// URI, and its extensions (what an authentication layer in front put there). It
    /// runs on the request task: keep it quick, and do slow look-ups (a session store)
    /// before subscribing, into an extension it then reads. [`Hub::subscribe`], which
    /// has no request, does not call it. Without a hook every topic is allowed.
    ///
    /// ```
    /// use tower_sse::Hub;
    /// use tower_sse::hub::SubscribeError;
    ///
    /// // Anyone may read `public/...`; `user/<name>` only with `x-user: <name>`.
    /// let hub = Hub::builder()
    ///     .authorize(|topic, request| {
    ///         if topic.starts_with("public/") {
    ///             return true;
    ///         }
    ///         let user = request.headers.get("x-user").and_then(|v| v.to_str().ok());
    ///         topic.strip_prefix("user/").is_some_and(|name| Some(name) == user)
    ///     })
    ///     .build();
    ///
    /// let request = http::Request::get("/events?topic=public/news&topic=user/ann")
    ///     .header("x-user", "ann")
    ///     .body(())?;
    /// assert!(hub.subscribe_request(&request).is_ok());
    ///
    /// let request = http::Request::get("/events?topic=user/bob").header("x-user", "ann").body(())?;
    /// let refused = hub.subscribe_request(&request).unwrap_err();
    /// assert!(matches!(refused, SubscribeError::Forbidden { .. }));
    /// assert_eq!(tower_sse::Refusal::from(refused).status(), 403);
    /// # Ok::<(), http::Error>(())
    /// ```
    pub fn authorize<F>(mut self, allowed: F) -> Self
    where
        F: Fn(&str, &Parts) -> bool + Send + Sync + 'static,
    {
        self.config.authorize = Some(Authorize::new(allowed));
        self
    }

    /// Where events are stored and numbered (default [`MemoryStorage`]).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().storage(tower_sse::hub::MemoryStorage).build();
    /// ```
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// The hub.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().build();
    /// ```
    pub fn build(self) -> Hub {
        let config = self.config;
        let storage = self.storage.unwrap_or_else(|| Arc::new(MemoryStorage));
        // Ids of an in-memory hub start at the current time in microseconds, so that an
        // id from an earlier run is recognised as unknown. A shared storage numbers
        // events itself, and the hub starts below all of its ids.
        let first = if storage.is_shared() {
            0
        } else {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        };
        let inner = Arc::new(HubInner {
            config,
            topics: RwLock::new(HashMap::new()),
            publish: Mutex::new(first),
            watermark: AtomicU64::new(first),
            first,
            storage,
        });
        let hub = Hub { inner };
        hub.inner.storage.attach(Feed {
            hub: Arc::downgrade(&hub.inner),
        });
        hub
    }
}

/// Counters of one topic, read from [`Hub::stats`].
///
/// ```
/// let hub = tower_sse::Hub::new();
/// let _subscription = hub.subscribe(["t"], None);
/// let stats = hub.stats("t").unwrap();
/// assert_eq!((stats.subscribers, stats.published), (1, 0));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// The topic.
    pub topic: String,
    /// Subscribers reading it now.
    pub subscribers: usize,
    /// Events published on it.
    pub published: u64,
    /// Events taken by its subscribers (one per subscriber per event).
    pub delivered: u64,
    /// Events subscribers did not receive because they fell behind.
    pub dropped: u64,
    /// Subscribers cut off or skipped ahead for falling behind.
    pub lagged: u64,
    /// Events in its history now.
    pub history: usize,
}

/// Why an event could not be published.
///
/// ```
/// let err = tower_sse::hub::PublishError::Unavailable("redis is down".into());
/// assert!(err.to_string().contains("redis is down"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishError {
    /// The storage cannot take events now.
    Unavailable(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Unavailable(why) => write!(f, "hub storage unavailable: {why}"),
        }
    }
}

impl std::error::Error for PublishError {}

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
        HubBuilder {
            config: HubConfig {
                history_events: 4096,
                history_bytes: None,
                history_age: None,
                queue_events: 1024,
                queue_bytes: 4 << 20,
                lag_policy: LagPolicy::Disconnect,
                reset_event_type: Arc::from("stream-reset"),
                topic_param: Arc::from("topic"),
                max_topics: 64,
                authorize: None,
            },
            storage: None,
        }
    }

    /// Publishes `event` on `topic`, giving it the hub's next id (which replaces any id
    /// the event had).
    ///
    /// Never waits on subscribers: the event is appended to the topic's history and the
    /// subscribers waiting for it are woken. Subscribers that have fallen too far behind
    /// are cut off here, so a client that stops reading never holds anyone up.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let first = hub.publish("t", tower_sse::Event::data("1"))?.id().unwrap();
    /// let second = hub.publish("t", tower_sse::Event::data("2"))?.id().unwrap();
    /// assert!(second > first);
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn publish(&self, topic: &str, event: Event) -> Result<Published, PublishError> {
        let storage = self.inner.storage.clone();
        storage.publish(
            topic,
            event,
            &Feed {
                hub: Arc::downgrade(&self.inner),
            },
        )
    }

    /// Subscribes to `topics`, resuming after `last_event_id` when given.
    ///
    /// With an id that history still covers, the subscriber first receives every event
    /// of these topics it missed. With an id that is older than history, unknown, or not
    /// an id of this hub, it first receives the reset event, then live events.
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
            if !names.iter().any(|n| &**n == topic) {
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
        let topics = self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        topics.get(topic).map(|t| t.stats())
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
}

impl HubInner {
    fn topic(&self, name: &str) -> Arc<Topic> {
        if let Some(topic) = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return topic.clone();
        }
        let covered = (!self.storage.is_shared()).then_some(self.first);
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        topics
            .entry(Arc::from(name))
            .or_insert_with_key(|name| Arc::new(Topic::new(name.clone(), covered)))
            .clone()
    }

    /// Appends an event under the hub's next id and wakes its subscribers.
    pub(crate) fn append_next(&self, topic: &str, event: Event) -> u64 {
        let mut wake = Vec::new();
        let id = {
            let mut last = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
            let id = *last + 1;
            *last = id;
            self.append(topic, id, event, &mut wake);
            id
        };
        for waker in wake {
            waker.wake();
        }
        id
    }

    /// Appends an event a shared storage numbered; refuses an id that is not newer
    /// than every id already delivered.
    pub(crate) fn deliver(&self, topic: &str, id: u64, event: Event) -> bool {
        let mut wake = Vec::new();
        {
            let mut last = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
            if id <= *last {
                tracing::warn!(
                    topic,
                    id,
                    last = *last,
                    "hub dropped an event delivered out of order"
                );
                return false;
            }
            *last = id;
            self.append(topic, id, event, &mut wake);
        }
        for waker in wake {
            waker.wake();
        }
        true
    }

    /// Moves the hub's newest id up to `id` without an event: a shared storage tells a
    /// new hub where the shared log stands, so that its first subscribers start there.
    pub(crate) fn advance(&self, id: u64) {
        let mut last = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
        if id > *last {
            *last = id;
            self.watermark.store(id, Ordering::Release);
        }
    }

    fn append(&self, topic: &str, id: u64, event: Event, wake: &mut Vec<std::task::Waker>) {
        let topic = self.topic(topic);
        let event = event.with_trusted_id(itoa::Buffer::new().format(id));
        topic.append(id, event, &self.config, &self.watermark, wake);
    }

    /// A shared storage confirms it delivers every event of `topic` after `after`.
    pub(crate) fn covered(&self, topic: &str, generation: u64, after: u64) {
        let Some(topic) = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned()
        else {
            return;
        };
        let mut wake = Vec::new();
        {
            let mut state = topic.lock();
            if state.generation != generation {
                return;
            }
            state.covered_after = Some(after);
            state.take_wakers(&mut wake);
        }
        tracing::debug!(topic = %topic.name, after, "hub topic covered by its storage");
        for waker in wake {
            waker.wake();
        }
    }

    /// The reset event: the reason as data, and `id` (the point the subscriber resumes
    /// from) when there is one.
    pub(crate) fn reset_event(&self, reason: GapReason, id: Option<u64>) -> Event {
        let mut builder = Event::builder()
            .event(&self.config.reset_event_type)
            .data(reason.as_str());
        if let Some(id) = id {
            builder = builder.id(itoa::Buffer::new().format(id));
        }
        builder.build().expect("the reset event type was checked")
    }

    fn subscribe(
        self: &Arc<Self>,
        names: Vec<Arc<str>>,
        last_event_id: Option<&LastEventId>,
    ) -> Subscription {
        let shared = self.storage.is_shared();
        // Hold the publish lock: no id is appended while the start point is chosen.
        let last = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = *last;
        let topics: Vec<Arc<Topic>> = names.iter().map(|name| self.topic(name)).collect();
        let mut reset = None;
        let after = match last_event_id.map(|id| id.parse::<u64>()) {
            None => newest,
            Some(Err(_)) => {
                reset = Some(GapReason::Malformed);
                newest
            }
            Some(Ok(id)) if shared => id,
            Some(Ok(id)) if id > newest || id < self.first => {
                reset = Some(GapReason::Unknown);
                newest
            }
            Some(Ok(id)) => {
                let now = tokio::time::Instant::now();
                let evicted = topics.iter().any(|topic| {
                    let mut state = topic.lock();
                    state.evict_expired(self.config.history_age, now);
                    state.max_evicted_id > id
                });
                if evicted {
                    reset = Some(GapReason::Evicted);
                    newest
                } else {
                    id
                }
            }
        };
        let mut watch = Vec::new();
        let signal = Arc::new(signal::Signal::new(topics.len()));
        let members = topics
            .into_iter()
            .enumerate()
            .map(|(index, topic)| {
                let (slot, cursor, covered) = {
                    let mut state = topic.lock();
                    if shared && state.slots.is_empty() {
                        state.generation += 1;
                        state.covered_after = None;
                        watch.push((topic.name.clone(), state.generation));
                    }
                    let covered = if shared { None } else { state.covered_after };
                    let cursor = state.position_after(after);
                    (
                        state.add_slot(cursor, signal.clone(), index),
                        cursor,
                        covered,
                    )
                };
                topic.subscribers.fetch_add(1, Ordering::Relaxed);
                Member {
                    topic,
                    slot,
                    cursor,
                    covered,
                }
            })
            .collect::<Vec<_>>();
        drop(last);
        for (name, generation) in watch {
            self.storage.watch(&name, generation);
        }

        let mut ready = std::collections::VecDeque::new();
        if let Some(reason) = reset {
            tracing::debug!(
                reason = reason.as_str(),
                ?last_event_id,
                "hub subscriber gets the reset event"
            );
            ready.push_back(self.reset_event(reason, Some(newest)));
        } else if after < newest {
            tracing::debug!(after, newest, "hub subscriber replays history");
        }
        tracing::debug!(topics = ?names, "hub subscriber joined");
        Subscription {
            hub: self.clone(),
            members,
            ready,
            after,
            replay: std::collections::VecDeque::new(),
            pending: if shared {
                Pending::Coverage
            } else {
                Pending::Nothing
            },
            revisit: vec![false; names.len()],
            signal,
            ended: None,
            finished: false,
        }
    }

    /// Removes a subscription's slots; unwatches topics left without subscribers and
    /// forgets those that have no history either.
    pub(crate) fn leave(&self, members: &[Member]) {
        let shared = self.storage.is_shared();
        let mut unwatch = Vec::new();
        let mut idle = false;
        for member in members {
            let mut state = member.topic.lock();
            let removed = state.slots.try_remove(member.slot);
            if removed.is_some_and(|slot| slot.cut != Some(topic::Cut::Ended)) {
                member.topic.subscribers.fetch_sub(1, Ordering::Relaxed);
            }
            if state.slots.is_empty() {
                if shared {
                    state.generation += 1;
                    state.covered_after = None;
                    unwatch.push((member.topic.name.clone(), state.generation));
                }
                idle |= state.entries.is_empty();
            }
        }
        for (name, generation) in unwatch {
            self.storage.unwatch(&name, generation);
        }
        tracing::debug!(topics = members.len(), "hub subscriber left");
        if idle {
            let _publishing = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
            let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
            for member in members {
                let state = member.topic.lock();
                if state.slots.is_empty() && state.entries.is_empty() {
                    topics.remove(&member.topic.name);
                }
            }
        }
    }
}
