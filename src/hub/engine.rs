//! The engine: ids, topics, appends, wake-ups, and what a shared log delivers.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::Subscription;
use super::budget::{Budget, Why};
use super::builder::{HubConfig, IndexWhen};
use super::conflate::Key;
use super::deliveries;
use super::log::{GapReason, SharedLog};
use super::topic::Topic;
use super::waiters::WaiterKey;
use crate::sync::{AtomicU64, Mutex, RwLock};
use crate::{Event, LastEventId};

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    pub(super) topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// The last id handed out by a local publish.
    pub(super) next: AtomicU64,
    /// Every id up to this one is appended to its topic.
    pub(crate) watermark: AtomicU64,
    /// Publishes that took parked subscriptions and have not flagged them all yet (see
    /// `waiters::Waiters`): while it is zero, a subscription reads only its flagged
    /// topics; otherwise it also looks for registrations taken but not yet flagged.
    pub(crate) flagging: AtomicU64,
    /// Held by a local publish while it takes the next id, appends the event and moves
    /// the watermark: constant work, so ids are appended in order.
    order: Mutex<()>,
    /// Ids of this hub start above this value; an older id comes from another run.
    pub(crate) first: u64,
    /// The shared log events are numbered and kept in, if any.
    pub(crate) log: Option<Arc<dyn SharedLog>>,
    /// Bytes and topics held, and what goes when they are too many.
    pub(super) budget: Budget,
    /// Hashes conflation keys (random, so that keys cannot be chosen to collide).
    keys: RandomState,
    pub(crate) metrics: crate::metrics::HubMetrics,
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

impl HubInner {
    /// A hub's engine with `config`, on `log` if given: starts the task that applies the
    /// log's deliveries.
    pub(crate) fn start(config: HubConfig, log: Option<Arc<dyn SharedLog>>) -> Arc<Self> {
        // Ids of an in-memory hub start at the current time in microseconds, so that an
        // id from an earlier run is recognised as unknown. A shared log numbers events
        // itself, and the hub starts below all of its ids.
        let first = match log {
            Some(_) => 0,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        };
        let budget = Budget::new(config.budget_bytes, config.budget_topics);
        let metrics = crate::metrics::HubMetrics::new(&config.metric_topics);
        let inner = Arc::new(HubInner {
            config,
            topics: RwLock::new(HashMap::new()),
            next: AtomicU64::new(first),
            watermark: AtomicU64::new(first),
            flagging: AtomicU64::new(0),
            order: Mutex::new(()),
            first,
            log,
            budget,
            keys: RandomState::new(),
            metrics,
        });
        deliveries::start(&inner);
        inner
    }
}

impl HubInner {
    pub(super) fn find(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The topic `name`, made if it does not exist (then `true`).
    pub(super) fn topic(&self, name: &str) -> (Arc<Topic>, bool) {
        if let Some(topic) = self.find(name) {
            return (topic, false);
        }
        let topic = {
            let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(topic) = topics.get(name) {
                return (topic.clone(), false);
            }
            let name: Arc<str> = Arc::from(name);
            // A topic of this name dropped before: its events up to there are gone.
            let gone = self.budget.dropped_upto(&name);
            let held = self.budget.held.clone();
            let topic = Arc::new(Topic::new(name.clone(), self.first, gone, held));
            topics.insert(name, topic.clone());
            self.budget.count_in(&topic);
            self.metrics.topic_added();
            topic
        };
        self.budget.enter(topic.clone());
        (topic, true)
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
    ///
    /// A conflation key is hashed here, before any lock is taken; the key index does
    /// constant work under the topic's lock (`conflate.rs`).
    pub(super) fn publish_local(&self, name: &str, key: Option<&str>, event: Event) -> u64 {
        let key = self.key(key);
        let now = Instant::now();
        let mut created = false;
        loop {
            let (topic, new) = self.topic(name);
            created |= new;
            let order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
            let mut state = topic.lock();
            if state.removed {
                continue;
            }
            let id = self.next.load(Ordering::Relaxed) + 1;
            self.next.store(id, Ordering::Relaxed);
            let event = event.with_trusted_id(itoa::Buffer::new().format(id));
            state.push(id, event, key, &self.config, now);
            let waiters = topic.take_waiters(&mut state, &self.flagging);
            drop(state);
            self.watermark.store(id, Ordering::Release);
            drop(order);
            topic.published.fetch_add(1, Ordering::Relaxed);
            waiters.wake();
            // Whether a sweep of aged history is due: looked at every 64th id only.
            self.tend(now, created, id.is_multiple_of(64));
            return id;
        }
    }

    /// A conflation key with its hash, if the hub keeps key indexes.
    pub(super) fn key<'k>(&self, key: Option<&'k str>) -> Option<Key<'k>> {
        if self.config.index_when == IndexWhen::Never {
            return None;
        }
        key.map(|name| Key {
            name,
            hash: self.keys.hash_one(name),
        })
    }

    /// The reset event: the reason as data, and `id` (the point the subscriber resumes
    /// from) when there is one.
    pub(crate) fn reset_event(&self, reason: GapReason, id: Option<u64>) -> Event {
        crate::metrics::hub_reset(reason.as_str());
        let mut builder = Event::builder()
            .event(&self.config.reset_event_type)
            .data(reason.as_str());
        if let Some(id) = id {
            builder = builder.id(itoa::Buffer::new().format(id));
        }
        builder.build().expect("the reset event type was checked")
    }

    pub(super) fn subscribe(
        self: &Arc<Self>,
        names: Vec<Arc<str>>,
        last_event_id: Option<&LastEventId>,
    ) -> Subscription {
        // Where a subscriber without a usable id starts: after the newest event.
        let start = self.watermark.load(Ordering::Acquire);
        let mut topics = Vec::with_capacity(names.len());
        let mut created = false;
        for name in &names {
            let (topic, head, watch) = loop {
                let (topic, new) = self.topic(name);
                created |= new;
                let mut state = topic.lock();
                if state.removed {
                    continue;
                }
                state.subscribers += 1;
                state.referenced = true;
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
        crate::metrics::record_topics(&names);
        tracing::debug!(topics = ?names, "hub subscriber joined");
        self.metrics.subscribed(&names);
        self.tend(Instant::now(), created, true);
        Subscription::new(self.clone(), topics, start, last_event_id)
    }

    /// A subscription leaves `topic`: unwatches it when it was the last one here, and
    /// drops it when its history can serve nobody.
    pub(crate) fn leave(&self, topic: &Arc<Topic>, waiting: Option<WaiterKey>) {
        let (unwatch, idle) = {
            let mut state = topic.lock();
            state.unpark(waiting);
            state.subscribers -= 1;
            let last = state.subscribers == 0;
            let unwatch = self.log.is_some() && last;
            if unwatch {
                state.generation += 1;
                state.covered_after = None;
            }
            if last {
                // What only the live window kept goes now.
                state.tidy(&self.config, Instant::now());
            }
            (unwatch, state.is_idle())
        };
        if let (Some(log), true) = (&self.log, unwatch) {
            log.unwatch(&topic.name);
        }
        if idle {
            self.drop_topic(topic, Why::Idle);
        }
    }
}
