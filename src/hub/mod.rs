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
//!
//! A publish holds its locks for constant work only, and wakes the subscribers parked
//! on the topic after releasing them; each subscriber finds out from its own
//! position whether it fell too far behind ([`LagPolicy`]). Several instances serve one
//! feed on Redis Streams with `HubBuilder::redis` (feature `redis`).

mod log;
#[cfg(feature = "redis")]
mod redis;
mod request;
mod signal;
mod subscription;
mod topic;

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use log::Published;
pub use request::SubscribeError;
pub use subscription::{Subscription, SubscriptionError};

#[cfg(feature = "redis")]
pub use self::redis::RedisStorage;

use crate::{Event, LastEventId};
use log::{Delivery, GapReason, SharedLog};
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
    pub(crate) inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// The last id handed out by a local publish.
    next: AtomicU64,
    /// Every id up to this one is appended to its topic.
    pub(crate) watermark: AtomicU64,
    /// Held by a local publish while it takes the next id, appends the event and moves
    /// the watermark: constant work, so ids are appended in order.
    order: Mutex<()>,
    /// Ids of this hub start above this value; an older id comes from another run.
    pub(crate) first: u64,
    /// The shared log events are numbered and kept in, if any.
    pub(crate) log: Option<Arc<dyn SharedLog>>,
    /// Dropped with the hub: stops the task that applies the shared log's deliveries.
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// When the next sweep of idle topics is due, in milliseconds since `epoch`.
    next_sweep: AtomicU64,
    epoch: Instant,
}

impl fmt::Debug for HubInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .field("watermark", &self.watermark)
            .field("log", &self.log)
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
    log: Option<Arc<dyn SharedLog>>,
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
    /// A topic nobody reads whose history has aged out is then dropped (checked at most
    /// once per `age`, on the hub's next publish, subscribe or stats).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_age(std::time::Duration::from_secs(60)).build();
    /// ```
    pub fn history_age(mut self, age: Duration) -> Self {
        self.config.history_age = Some(age);
        self
    }

    /// Events a subscriber may fall behind the newest before the [`LagPolicy`] applies
    /// (default 1024). Events replayed when it subscribed do not count. The subscriber
    /// checks this itself each time it reads a topic, so publishing never waits on it.
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

    /// Numbers and keeps events in Redis Streams, so that several instances serve one
    /// feed and a browser resumes on any of them (feature `redis`; see
    /// [`RedisStorage`]). Build the hub inside a tokio runtime: the storage's tasks start
    /// with it.
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_sse::hub::RedisStorage;
    ///
    /// let storage = RedisStorage::new("redis://127.0.0.1:6379/")?.prefix("flights");
    /// let hub = tower_sse::Hub::builder().redis(storage).build();
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, storage: RedisStorage) -> Self {
        self.log = Some(Arc::new(storage));
        self
    }

    /// The hub.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().build();
    /// ```
    pub fn build(self) -> Hub {
        // Ids of an in-memory hub start at the current time in microseconds, so that an
        // id from an earlier run is recognised as unknown. A shared log numbers events
        // itself, and the hub starts below all of its ids.
        let first = match self.log {
            Some(_) => 0,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        };
        let runtime = match (&self.log, tokio::runtime::Handle::try_current()) {
            (Some(_), Err(_)) => {
                tracing::error!("a hub on a shared log needs a tokio runtime: build it inside one");
                None
            }
            (Some(_), Ok(runtime)) => Some(runtime),
            (None, _) => None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let inner = Arc::new(HubInner {
            config: self.config,
            topics: RwLock::new(HashMap::new()),
            next: AtomicU64::new(first),
            watermark: AtomicU64::new(first),
            order: Mutex::new(()),
            first,
            log: self.log,
            _stop: Some(stop),
            next_sweep: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        if let (Some(log), Some(runtime)) = (&inner.log, runtime) {
            let (deliveries, received) = mpsc::channel(DELIVERIES);
            runtime.spawn(apply_deliveries(Arc::downgrade(&inner), received, stopped));
            log.start(deliveries);
        }
        Hub { inner }
    }
}

/// Batches of deliveries a shared log may have in flight to the hub.
const DELIVERIES: usize = 64;

/// Applies what the shared log reads back, in order, until the hub is dropped (which
/// closes the channel, and so stops the log's reader).
async fn apply_deliveries(
    hub: Weak<HubInner>,
    mut deliveries: mpsc::Receiver<Delivery>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let delivery = std::future::poll_fn(|cx| {
            if std::pin::Pin::new(&mut stopped).poll(cx).is_ready() {
                return std::task::Poll::Ready(None);
            }
            deliveries.poll_recv(cx)
        })
        .await;
        let (Some(delivery), Some(hub)) = (delivery, hub.upgrade()) else {
            return;
        };
        match delivery {
            Delivery::Events(events) => {
                for (id, topic, event) in events {
                    hub.deliver(&topic, id, event);
                }
            }
            Delivery::Covered {
                topic,
                generation,
                after,
            } => hub.covered(&topic, generation, after),
            Delivery::Advance(id) => hub.advance(id),
        }
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
/// let err = tower_sse::hub::PublishError::QueueFull;
/// assert!(err.to_string().contains("full"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PublishError {
    /// The shared log cannot be reached now; the error of the last attempt is the
    /// [`source`](Error::source).
    Unreachable(Arc<dyn Error + Send + Sync>),
    /// Too many published events wait to be written to the shared log.
    QueueFull,
    /// The hub stopped before the event was stored.
    Stopped,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Unreachable(_) => f.write_str("the hub's shared log is unreachable"),
            PublishError::QueueFull => f.write_str("the hub's queue of events to write is full"),
            PublishError::Stopped => f.write_str("the hub stopped before the event was stored"),
        }
    }
}

impl Error for PublishError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PublishError::Unreachable(source) => Some(&**source as &(dyn Error + 'static)),
            PublishError::QueueFull | PublishError::Stopped => None,
        }
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
            log: None,
        }
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
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let first = hub.publish("t", tower_sse::Event::data("1"))?.id().unwrap();
    /// let second = hub.publish("t", tower_sse::Event::data("2"))?.id().unwrap();
    /// assert!(second > first);
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn publish(&self, topic: &str, event: Event) -> Result<Published, PublishError> {
        match &self.inner.log {
            None => Ok(Published::stored(self.inner.publish_local(topic, event))),
            Some(log) => log.publish(topic, event),
        }
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
        self.inner.sweep_if_due();
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
        self.inner.sweep_if_due();
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
    fn find(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        if let Some(topic) = self.find(name) {
            return topic;
        }
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        topics
            .entry(Arc::from(name))
            .or_insert_with_key(|name| Arc::new(Topic::new(name.clone(), self.first)))
            .clone()
    }

    /// Numbers `event` with the hub's next id, appends it, and wakes the subscribers
    /// parked on its topic.
    ///
    /// Ids form one order across topics: under the hub's `order` lock the publish takes
    /// the next id, appends the event under its topic's lock and moves the watermark to
    /// the id. That is constant work, whatever the number of subscribers or topics, so
    /// publishers on other topics wait at most for one append; waking the subscribers
    /// happens after every lock is released. A subscription on several topics reads only
    /// up to the watermark, so it never sees id N + 1 before id N is appended. (A
    /// lock-free alternative, ids taken under the topic's lock and the watermark moved
    /// over a ring of completion marks, made 4 publishers on 4 topics about three times
    /// slower on 2 cores: `benches/publish.rs`.)
    fn publish_local(&self, name: &str, event: Event) -> u64 {
        self.sweep_if_due();
        let now = Instant::now();
        loop {
            let topic = self.topic(name);
            let order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
            let mut state = topic.lock();
            if state.removed {
                continue;
            }
            let id = self.next.load(Ordering::Relaxed) + 1;
            self.next.store(id, Ordering::Relaxed);
            let event = event.with_trusted_id(itoa::Buffer::new().format(id));
            state.push(id, event, &self.config, now);
            let waiters = topic.take_waiters(&mut state);
            drop(state);
            self.watermark.store(id, Ordering::Release);
            drop(order);
            topic.published.fetch_add(1, Ordering::Relaxed);
            waiters.wake();
            return id;
        }
    }

    /// Appends an event the shared log numbered; ignores an id that is not newer than
    /// every id already delivered.
    fn deliver(&self, name: &str, id: u64, event: Event) {
        let last = self.watermark.load(Ordering::Acquire);
        if id <= last {
            tracing::warn!(
                topic = name,
                id,
                last,
                "hub dropped an event delivered out of order"
            );
            return;
        }
        let mut waiters = None;
        // A topic nobody here reads is not kept.
        if let Some(topic) = self.find(name) {
            let mut state = topic.lock();
            if !state.removed {
                let event = event.with_trusted_id(itoa::Buffer::new().format(id));
                state.push(id, event, &self.config, Instant::now());
                waiters = Some(topic.take_waiters(&mut state));
                drop(state);
                topic.published.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.next.store(id, Ordering::Relaxed);
        self.watermark.store(id, Ordering::Release);
        if let Some(waiters) = waiters {
            waiters.wake();
        }
    }

    /// The shared log stands at `id`: subscribers without a `Last-Event-ID` start there.
    fn advance(&self, id: u64) {
        if id > self.watermark.load(Ordering::Acquire) {
            self.next.store(id, Ordering::Relaxed);
            self.watermark.store(id, Ordering::Release);
        }
    }

    /// The shared log delivers every event of `topic` after `after`, for the watch of
    /// `generation`.
    fn covered(&self, name: &str, generation: u64, after: u64) {
        let Some(topic) = self.find(name) else { return };
        let waiters = {
            let mut state = topic.lock();
            if state.generation != generation {
                return;
            }
            state.covered_after = Some(after);
            topic.take_waiters(&mut state)
        };
        tracing::debug!(topic = name, after, "hub topic covered by its shared log");
        waiters.wake();
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
        self.sweep_if_due();
        // Where a subscriber without a usable id starts: after the newest event.
        let start = self.watermark.load(Ordering::Acquire);
        let mut topics = Vec::with_capacity(names.len());
        for name in &names {
            let (topic, head, watch) = loop {
                let topic = self.topic(name);
                let mut state = topic.lock();
                if state.removed {
                    continue;
                }
                state.subscribers += 1;
                let mut watch = None;
                if self.log.is_some() && state.subscribers == 1 {
                    state.generation += 1;
                    state.covered_after = None;
                    watch = Some(state.generation);
                }
                let head = state.head();
                drop(state);
                break (topic, head, watch);
            };
            if let (Some(log), Some(generation)) = (&self.log, watch) {
                log.watch(&topic.name, generation);
            }
            topics.push((topic, head));
        }
        tracing::debug!(topics = ?names, "hub subscriber joined");
        Subscription::new(self.clone(), topics, start, last_event_id)
    }

    /// A subscription leaves `topic`: unwatches it when it was the last one here, and
    /// drops it when its history can serve nobody.
    pub(crate) fn leave(&self, topic: &Arc<Topic>, waiting: Option<topic::WaiterKey>) {
        let (unwatch, idle) = {
            let mut state = topic.lock();
            state.unpark(waiting);
            state.subscribers -= 1;
            let unwatch = self.log.is_some() && state.subscribers == 0;
            if unwatch {
                state.generation += 1;
                state.covered_after = None;
            }
            (unwatch, state.is_idle())
        };
        if let (Some(log), true) = (&self.log, unwatch) {
            log.unwatch(&topic.name);
        }
        if idle {
            self.remove_if_idle(topic);
        }
    }

    fn remove_if_idle(&self, topic: &Arc<Topic>) {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let mut state = topic.lock();
        if state.is_idle() && !state.removed {
            state.removed = true;
            if topics
                .get(&topic.name)
                .is_some_and(|t| Arc::ptr_eq(t, topic))
            {
                topics.remove(&topic.name);
            }
        }
    }

    /// With a `history_age`, drops topics nobody reads whose history has aged out; runs
    /// at most once per `history_age`, from the hub's publishes, subscribes and stats.
    fn sweep_if_due(&self) {
        let Some(age) = self.config.history_age else {
            return;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(self.epoch).as_millis() as u64;
        let due = self.next_sweep.load(Ordering::Relaxed);
        let next = elapsed.saturating_add((age.as_millis() as u64).max(1));
        if elapsed < due
            || self
                .next_sweep
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let idle: Vec<Arc<Topic>> = {
            let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
            topics
                .values()
                .filter(|topic| {
                    let mut state = topic.lock();
                    state.evict_expired(Some(age), now);
                    state.is_idle()
                })
                .cloned()
                .collect()
        };
        for topic in &idle {
            self.remove_if_idle(topic);
        }
        if !idle.is_empty() {
            tracing::debug!(topics = idle.len(), "hub dropped idle topics");
        }
    }
}
