//! The settings of a hub and the builder that takes them.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use super::Hub;
use super::engine::HubInner;
use super::log::SharedLog;
#[cfg(feature = "redis")]
use super::redis::RedisStorage;

/// Settings of a hub; see [`HubBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct HubConfig {
    pub(crate) history_events: usize,
    pub(crate) history_bytes: Option<usize>,
    pub(crate) history_age: Option<Duration>,
    pub(crate) queue_events: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) budget_bytes: usize,
    pub(crate) budget_topics: usize,
    pub(crate) lag_policy: LagPolicy,
    pub(crate) conflate_keys: usize,
    pub(crate) conflate_replay: bool,
    /// When topics keep a key index: set by `build` from the policy, `conflate_replay`
    /// and the storage.
    pub(crate) index_when: IndexWhen,
    pub(crate) reset_event_type: Arc<str>,
    pub(crate) topic_param: Arc<str>,
    pub(crate) max_topics: usize,
    pub(crate) authorize: Option<Authorize>,
    pub(crate) metric_topics: crate::metrics::TopicLabels,
}

pub(crate) use super::request::Authorize;

/// When a topic keeps its key index (see `conflate.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexWhen {
    /// The hub does not conflate.
    Never,
    /// While the topic has subscribers: for `LagPolicy::Conflate`, and on a shared log
    /// (where a resumer from before the topic's subscribers replays from the log).
    WhileRead,
    /// Always: in memory with `conflate_replay`, for resumers.
    Always,
}

/// What happens to a subscriber whose queue is full.
///
/// Which to choose, for a subscriber that fell behind its live window:
/// - a feed where every event matters (chat, orders, a log): `Disconnect`; the client
///   reconnects and replays what it missed from history;
/// - a feed of notifications a page can reload (it fetches its state anew):
///   `SkipAhead`;
/// - a feed of states, where a newer event of a key replaces the older ones
///   (positions, prices, sensor readings, presence): `Conflate`, with the events
///   published by [`Hub::publish_keyed`](crate::Hub::publish_keyed); the page gets the
///   state of every key at once, and nothing else it missed is lost.
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
    /// It receives, in id order, the newest event it missed of each conflation key
    /// ([`Hub::publish_keyed`](crate::Hub::publish_keyed)) and every keyless event it
    /// missed, then goes on live: the latest state, with nothing jumping back and no
    /// reset.
    ///
    /// Each topic keeps, while it has subscribers, an index of the newest event of each
    /// key (at most [`conflate_keys`](HubBuilder::conflate_keys) keys) and of the
    /// keyless events of the live window. A subscriber that keeps up costs nothing more;
    /// one that falls behind holds, until it has read them, handles to at most that
    /// many events per topic (the frames are shared, never copied). If the index had to
    /// let go of what the subscriber needs (more distinct keys than `conflate_keys`
    /// since it last read, or more keyless events than the live window holds), it gets
    /// the reset event instead, as with `SkipAhead`, and
    /// [`TopicStats::conflate_fallbacks`](super::TopicStats::conflate_fallbacks)
    /// counts it.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use futures_util::StreamExt;
    /// use tower_sse::{Event, Hub, hub::LagPolicy};
    ///
    /// let hub = Hub::builder().queue_events(4).lag_policy(LagPolicy::Conflate).build();
    /// let mut slow = hub.subscribe(["positions"], None);
    /// for second in 0..10 {
    ///     for plane in ["THA1", "THA2"] {
    ///         let data = format!("{plane} at {second}");
    ///         hub.publish_keyed("positions", plane, Event::data(&data))?;
    ///     }
    /// }
    /// // 20 events behind, more than its window of 4: the newest of each plane.
    /// for plane in ["THA1", "THA2"] {
    ///     let event = slow.next().await.unwrap()?;
    ///     let text = std::str::from_utf8(event.as_bytes())?;
    ///     assert!(text.starts_with(&format!("data: {plane} at 9\n")), "{text}");
    /// }
    /// assert_eq!(hub.stats("positions").unwrap().conflated, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    Conflate,
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
///     .budget(256 << 20, 1_000_000)
///     .reset_event_type("resync")
///     .build();
/// ```
///
/// # History and the live window
///
/// Each topic keeps two things apart. Its **history** (`history_events`,
/// `history_bytes`, `history_age`) is what a subscriber that comes back with a
/// `Last-Event-ID` can replay; 0 means no replay. Its **live window** (`queue_events`,
/// `queue_bytes`) is how far a subscriber may fall behind before the [`LagPolicy`]
/// applies, and alone decides it, as the capacity of tokio's `broadcast` does: while a
/// topic has subscribers it keeps its newest events within the window for them,
/// whatever history keeps. A subscriber that keeps up receives every event whatever the
/// history settings are.
///
/// Replay is served from history only: events kept only for the live window are not
/// replayed, so what a resumer gets does not depend on who else is reading. A
/// resumer from before the oldest event history keeps receives the reset event
/// (`evicted`), never a silent gap.
///
/// # The budget
///
/// The hub as a whole holds at most [`budget`](HubBuilder::budget) bytes and topics;
/// when over, it evicts what nobody reads first. See there.
#[derive(Debug)]
#[must_use = "a HubBuilder does nothing until `build` is called"]
pub struct HubBuilder {
    config: HubConfig,
    log: Option<Arc<dyn SharedLog>>,
}

impl HubBuilder {
    /// Events each topic keeps for replay (default 4096); 0 means no replay. Live
    /// subscribers are not bound by it (see [`queue_events`](HubBuilder::queue_events)).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_events(100).build();
    /// ```
    pub fn history_events(mut self, events: usize) -> Self {
        self.config.history_events = events;
        self
    }

    /// Bytes of frames each topic keeps for replay, at most (default: no bound but the
    /// count and the hub's [`budget`](HubBuilder::budget)); 0 means no replay. Live
    /// subscribers are not bound by it.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_bytes(1 << 20).build();
    /// ```
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.config.history_bytes = Some(bytes);
        self
    }

    /// How long an event stays in history, at most (default one hour). A topic nobody
    /// reads whose history has aged out is then dropped: checked at most once per
    /// `age` (and at most once a second), on the hub's publishes, subscribes and stats,
    /// so such a topic goes between one and two `age`s after its last event. `Duration::MAX` keeps events (and
    /// topics nobody reads) until the count or the budget drops them. Live subscribers
    /// are not bound by it.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().history_age(std::time::Duration::from_secs(60)).build();
    /// ```
    pub fn history_age(mut self, age: Duration) -> Self {
        self.config.history_age = Some(age);
        self
    }

    /// Events a subscriber may fall behind the newest before the [`LagPolicy`] applies
    /// (default 1024), whatever history keeps: while a topic has subscribers it keeps
    /// this many of its newest events for them. Events replayed when it subscribed do
    /// not count. The subscriber checks this itself each time it reads a topic, so
    /// publishing never waits on it. 0 is taken as 1 (the newest event).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().queue_events(256).build();
    /// ```
    pub fn queue_events(mut self, events: usize) -> Self {
        self.config.queue_events = events.max(1);
        self
    }

    /// Bytes of frames a subscriber may fall behind before the [`LagPolicy`] applies
    /// (default 4 MiB). The newest event is always within it, however large: a
    /// subscriber with one event to read never lags.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().queue_bytes(1 << 20).build();
    /// ```
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.config.queue_bytes = bytes;
        self
    }

    /// The most the hub holds across all its topics: `bytes` of history and `topics`
    /// topics (default 64 MiB and 100,000). Bytes count each event's frame and about
    /// 100 bytes of bookkeeping beside it, and about 450 bytes per topic beside its
    /// name, so that the budget bounds the heap the hub takes.
    ///
    /// When over, the hub first evicts topics nobody reads, least recently published to
    /// or subscribed first (an approximation: a clock with a second chance, moved a few
    /// steps after each publish and subscribe, so publishing stays constant work); then,
    /// if it is still over, it takes the history of read topics down to their live
    /// window. It never drops what a subscriber has yet to read within its live window:
    /// read topics can take the hub over its budget by their live windows, which
    /// [`queue_bytes`](HubBuilder::queue_bytes) bounds.
    ///
    /// Nothing is lost silently: a subscriber that resumes from before an evicted event
    /// (of a topic still held, or evicted and published to again) receives the reset
    /// event with data `evicted`. [`Hub::evicted`] counts the events evicted.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().budget(16 << 20, 10_000).build();
    /// ```
    pub fn budget(mut self, bytes: usize, topics: usize) -> Self {
        self.config.budget_bytes = bytes;
        self.config.budget_topics = topics;
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

    /// Most distinct conflation keys each topic's key index holds (default 4096; 0 is
    /// taken as 1), for [`LagPolicy::Conflate`] and
    /// [`conflate_replay`](HubBuilder::conflate_replay). Past it, the key published
    /// least recently leaves the index, and a reader that needed it gets what the hub
    /// gives without conflation (see
    /// [`TopicStats::conflate_fallbacks`](super::TopicStats::conflate_fallbacks)).
    ///
    /// It bounds memory: a topic's index holds at most this many events (and the
    /// keyless events of its live window), about 160 bytes each beside the key and the
    /// frame, counted in the hub's [`budget`](HubBuilder::budget); a subscriber that
    /// fell behind holds handles to at most as many. A million distinct keys on one
    /// topic cost no more than this many.
    ///
    /// ```
    /// use tower_sse::hub::LagPolicy;
    /// let hub = tower_sse::Hub::builder()
    ///     .lag_policy(LagPolicy::Conflate)
    ///     .conflate_keys(10_000)
    ///     .build();
    /// ```
    pub fn conflate_keys(mut self, keys: usize) -> Self {
        self.config.conflate_keys = keys.max(1);
        self
    }

    /// Whether a subscriber that resumes with a `Last-Event-ID` gets what it missed in
    /// short (default `false`): the newest event since that id of each conflation key
    /// ([`Hub::publish_keyed`](crate::Hub::publish_keyed)), and every keyless event
    /// since, in id order, instead of every event. A page of 320 aircraft reporting
    /// once a second that comes back after a minute receives 320 events, not 19,200.
    ///
    /// In memory, each topic then keeps its key index while the topic is kept (see
    /// [`conflate_keys`](HubBuilder::conflate_keys)), which can reach further back than
    /// history. When the index cannot serve the id (it let go of a key or of a keyless
    /// event since), the resumer gets what it would without this setting: every event
    /// from history, or the reset event. On Redis (feature `redis`) the events missed
    /// are read from the topic's stream a page at a time, keeping only the newest of
    /// each key (at most `conflate_keys` keys, and as many keyless events as the live
    /// window holds; past that, the whole replay).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use futures_util::StreamExt;
    /// use tower_sse::{Event, Hub, LastEventId};
    ///
    /// let hub = Hub::builder().conflate_replay(true).build();
    /// let seen = hub.publish_keyed("prices", "EUR", Event::data("1.08"))?.id().unwrap();
    /// hub.publish_keyed("prices", "EUR", Event::data("1.09"))?;
    /// hub.publish_keyed("prices", "EUR", Event::data("1.10"))?;
    /// let mut resumed = hub.subscribe(["prices"], Some(&LastEventId::new(seen.to_string())));
    /// let event = resumed.next().await.unwrap()?;
    /// assert!(event.as_bytes().starts_with(b"data: 1.10\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn conflate_replay(mut self, enabled: bool) -> Self {
        self.config.conflate_replay = enabled;
        self
    }

    /// Resumers get every event they missed (the default): see
    /// [`conflate_replay`](HubBuilder::conflate_replay).
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().no_conflate_replay().build();
    /// ```
    pub fn no_conflate_replay(self) -> Self {
        self.conflate_replay(false)
    }

    /// The type of the event that tells a subscriber it missed events that can no longer
    /// be replayed (default `stream-reset`). Its data says why: `evicted`, `unknown`,
    /// `malformed`, `lagged`, or `lost` (the shared log lost events: a Redis that came
    /// back empty).
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
    /// refuses more with [`RequestError::TooManyTopics`](super::RequestError::TooManyTopics) (400 once turned into a
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
    /// names, and refuse the whole request with [`RequestError::Forbidden`](super::RequestError::Forbidden) (403
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
    /// use tower_sse::hub::RequestError;
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
    /// assert!(matches!(refused, RequestError::Forbidden { .. }));
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

    /// Topics whose names the hub's metrics (feature `metrics`) carry as a `topic` label:
    /// `tower_sse_hub_published_total`, `tower_sse_hub_lagged_total` and
    /// `tower_sse_hub_topic_subscribers`; every other topic is counted as `other`. Without
    /// it no metric has a topic label, since topic names come from publishers and clients
    /// and would grow the metrics without bound. Name a small, fixed set. Without the
    /// `metrics` feature it does nothing.
    ///
    /// ```
    /// let hub = tower_sse::Hub::builder().metric_topics(["prices", "news"]).build();
    /// ```
    pub fn metric_topics<I, T>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let topics = topics.into_iter().map(|t| Arc::from(t.as_ref())).collect();
        self.config.metric_topics = crate::metrics::TopicLabels::new(topics);
        self
    }

    /// Numbers and keeps events in Redis Streams, so that several instances serve one
    /// feed and a browser resumes on any of them (feature `redis`; see
    /// [`RedisStorage`]). The storage's tasks start on the hub's first use inside a tokio
    /// runtime (at once when it is built inside one), and again on a later runtime if the
    /// one that ran them is gone.
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
    pub fn build(mut self) -> Hub {
        let config = &mut self.config;
        config.index_when = match (config.lag_policy, config.conflate_replay) {
            (_, true) if self.log.is_none() => IndexWhen::Always,
            (LagPolicy::Conflate, _) | (_, true) => IndexWhen::WhileRead,
            _ => IndexWhen::Never,
        };
        Hub {
            inner: HubInner::start(self.config, self.log),
        }
    }
}

impl HubBuilder {
    /// The default settings.
    pub(crate) fn new() -> Self {
        HubBuilder {
            config: HubConfig {
                history_events: 4096,
                history_bytes: None,
                history_age: Some(Duration::from_secs(3600)),
                queue_events: 1024,
                queue_bytes: 4 << 20,
                budget_bytes: 64 << 20,
                budget_topics: 100_000,
                lag_policy: LagPolicy::Disconnect,
                conflate_keys: 4096,
                conflate_replay: false,
                index_when: IndexWhen::Never,
                reset_event_type: Arc::from("stream-reset"),
                topic_param: Arc::from("topic"),
                max_topics: 64,
                authorize: None,
                metric_topics: Default::default(),
            },
            log: None,
        }
    }
}
