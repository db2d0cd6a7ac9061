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
    pub(crate) reset_event_type: Arc<str>,
    pub(crate) topic_param: Arc<str>,
    pub(crate) max_topics: usize,
    pub(crate) authorize: Option<Authorize>,
    pub(crate) metric_topics: crate::metrics::TopicLabels,
}

pub(crate) use super::request::Authorize;

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
    /// refuses more with [`SubscribeError::TooManyTopics`](super::SubscribeError::TooManyTopics) (400 once turned into a
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
    /// names, and refuse the whole request with [`SubscribeError::Forbidden`](super::SubscribeError::Forbidden) (403
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
    pub fn build(self) -> Hub {
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
