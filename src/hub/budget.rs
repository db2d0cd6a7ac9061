//! The hub-wide budget: bytes and topics held, what goes first when the hub holds too
//! much, when history ages out, and what the hub remembers of the topics it dropped.
//!
//! Every topic is on a clock (CLOCK, a second-chance approximation of least recently
//! used): a ring of topics with a hand that visits one at a time. A visit ages the
//! topic's history out (`history_age`), drops the topic if it is idle (nobody reads
//! it and it holds nothing), and while the hub is over its budget, evicts it if nobody
//! reads it and it was not published to or subscribed since the hand last passed.
//! After two turns of the hand without a topic to evict, the history of read topics is
//! taken down to their live window, never below. The hand moves after a publish or
//! subscribe has released its locks, a bounded number of steps each time: a couple per
//! new topic (which also clears topics dropped elsewhere from the ring), a few dozen
//! while over budget or while a sweep for aged history is due. So the publish path
//! stays O(1) amortised, and a visit holds one topic's lock at a time (with the topic
//! map's lock only to drop it).
//!
//! A dropped topic's newest id goes into a fixed table of hashed topic names (the
//! highest dropped id per slot): a topic of that name created later knows that events
//! before it are gone, so a resumer from before gets the reset event instead of
//! silently missing them. Two names sharing a slot can only cause a reset that was
//! not needed, never a silent loss; the table's memory is constant.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};

use tokio::time::Instant;

use super::engine::HubInner;
use super::topic::Topic;

/// What the budget counts for a topic beside its name and its entries: the topic and
/// its state (about 250 bytes), its slot in the hub's map and on the clock, and the
/// allocator's rounding.
pub(crate) const TOPIC_COST: usize = 448;

/// Steps of the hand per publish or subscribe while over budget or sweeping.
const STEPS: usize = 32;
/// Steps of the hand per topic created: the ring stays at most about twice the topics.
const AGING: usize = 2;
/// Slots of the table of dropped topics (8 bytes each, allocated at the first drop).
const TOMBSTONES: usize = 16_384;

/// Whether a topic is dropped because it is idle, or evicted for the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    Idle,
    Evict,
}

/// On cache lines of its own: read by every publish, written by few.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Budget {
    max_bytes: usize,
    max_topics: usize,
    /// What the budget counts now: every topic's cost and its entries'. Shared with
    /// every topic, which counts its own entries in.
    pub(crate) held: Arc<Held>,
    /// Topics in the hub's map.
    topics: AtomicUsize,
    /// Events evicted from history for the budget.
    evicted: AtomicU64,
    clock: Mutex<Clock>,
    /// New topics, put on the clock by the next one to move the hand: a publish never
    /// waits for the hand.
    arrivals: Mutex<Vec<Arc<Topic>>>,
    /// Visits left in the current sweep for aged history; read without the lock.
    sweep: AtomicUsize,
    /// When the next sweep is due, in milliseconds since `epoch`.
    next_sweep: AtomicU64,
    epoch: Instant,
    tombstones: Tombstones,
}

/// What the budget counts now, shared with every topic (which counts its own entries
/// in), on a cache line of its own.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Held(pub(crate) AtomicUsize);

#[derive(Debug, Default)]
struct Clock {
    ring: VecDeque<Arc<Topic>>,
    /// Visits while over budget since a topic was last evicted.
    fruitless: usize,
}

impl Budget {
    pub(crate) fn new(max_bytes: usize, max_topics: usize) -> Self {
        Budget {
            max_bytes,
            max_topics,
            held: Arc::new(Held(AtomicUsize::new(0))),
            topics: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            clock: Mutex::new(Clock::default()),
            arrivals: Mutex::new(Vec::new()),
            sweep: AtomicUsize::new(0),
            next_sweep: AtomicU64::new(0),
            epoch: Instant::now(),
            tombstones: Tombstones::default(),
        }
    }

    fn bytes_over(&self) -> bool {
        self.held.0.load(Ordering::Relaxed) > self.max_bytes
    }

    fn over(&self) -> bool {
        self.bytes_over() || self.topics.load(Ordering::Relaxed) > self.max_topics
    }

    /// Events evicted from history for the budget so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The newest id of a dropped topic named `name` (or of one sharing its slot).
    pub(crate) fn dropped_upto(&self, name: &str) -> u64 {
        self.tombstones.get(name)
    }

    /// Counts a topic just put in the map (under the map's lock).
    pub(crate) fn count_in(&self, topic: &Topic) {
        self.held
            .0
            .fetch_add(TOPIC_COST + topic.name.len(), Ordering::Relaxed);
        self.topics.fetch_add(1, Ordering::Relaxed);
    }

    fn count_out(&self, topic: &Topic) {
        self.held
            .0
            .fetch_sub(TOPIC_COST + topic.name.len(), Ordering::Relaxed);
        self.topics.fetch_sub(1, Ordering::Relaxed);
    }

    /// Puts a new topic on the clock, behind the hand (once the hand next moves).
    pub(crate) fn enter(&self, topic: Arc<Topic>) {
        self.arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(topic);
    }

    /// The clock, with the topics that arrived since it last moved.
    fn lock_clock(&self, wait: bool) -> Option<MutexGuard<'_, Clock>> {
        let mut clock = match self.clock.try_lock() {
            Ok(clock) => clock,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if wait => {
                self.clock.lock().unwrap_or_else(PoisonError::into_inner)
            }
            Err(TryLockError::WouldBlock) => return None,
        };
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        clock.ring.extend(arrivals.drain(..));
        if arrivals.capacity() > 1024 {
            arrivals.shrink_to_fit();
        }
        drop(arrivals);
        Some(clock)
    }

    /// Milliseconds from the budget's epoch to `now`.
    fn elapsed(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a sweep for aged history may be due (a load; no claim).
    fn sweep_may_be_due(&self, period: Option<std::time::Duration>, now: Instant) -> bool {
        period.is_some() && self.elapsed(now) >= self.next_sweep.load(Ordering::Relaxed)
    }

    /// Claims the sweep for aged history if it is due (true once per `period`): call it
    /// with the clock locked, and start the sweep.
    fn claim_sweep(&self, period: Option<std::time::Duration>, now: Instant) -> bool {
        let Some(period) = period else { return false };
        let elapsed = self.elapsed(now);
        let due = self.next_sweep.load(Ordering::Relaxed);
        // At most once a second, however short the age: aged entries also go as their
        // topic is published to or read, the sweep only finds the topics left alone.
        let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let next = elapsed.saturating_add(period.max(1000));
        elapsed >= due
            && self
                .next_sweep
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl HubInner {
    /// Moves the clock's hand after a publish or subscribe (`created`: it made a
    /// topic), with no lock held: a few steps, and only when there is work. Whether a
    /// sweep is due is looked at when `timed` (publishes look every 64th time). Then,
    /// when timed or when the hand moved, the bytes held go to the metrics: after what
    /// the hand let go, so that the gauge never keeps bytes an eviction freed.
    pub(super) fn tend(&self, now: Instant, created: bool, timed: bool) {
        if self.move_hand(now, created, timed) || timed {
            self.metrics
                .held_bytes(self.budget.held.0.load(Ordering::Relaxed));
        }
    }

    /// [`tend`](Self::tend)'s clock work; whether the hand moved.
    fn move_hand(&self, now: Instant, created: bool, timed: bool) -> bool {
        let budget = &self.budget;
        let age = self.config.history_age;
        let over = budget.over();
        if !(created
            || over
            || budget.sweep.load(Ordering::Relaxed) > 0
            || (timed && budget.sweep_may_be_due(age, now)))
        {
            return false;
        }
        let Some(mut clock) = budget.lock_clock(false) else {
            // Another thread moves the hand now.
            return false;
        };
        if budget.claim_sweep(age, now) {
            budget.sweep.store(clock.ring.len(), Ordering::Relaxed);
        }
        let steps = if over || budget.sweep.load(Ordering::Relaxed) > 0 {
            STEPS
        } else {
            AGING
        };
        for step in 1..=steps {
            self.step(&mut clock, now);
            if step >= AGING && !budget.over() && budget.sweep.load(Ordering::Relaxed) == 0 {
                break;
            }
        }
        true
    }

    /// Finishes the sweep in progress (or one that is due): for callers that walk
    /// every topic anyway.
    pub(super) fn sweep(&self, now: Instant) {
        let budget = &self.budget;
        let age = self.config.history_age;
        if budget.sweep.load(Ordering::Relaxed) == 0 && !budget.sweep_may_be_due(age, now) {
            return;
        }
        let Some(mut clock) = budget.lock_clock(true) else {
            return;
        };
        if budget.claim_sweep(age, now) {
            budget.sweep.store(clock.ring.len(), Ordering::Relaxed);
        }
        while budget.sweep.load(Ordering::Relaxed) > 0 {
            self.step(&mut clock, now);
        }
    }

    /// One visit of the hand.
    fn step(&self, clock: &mut Clock, now: Instant) {
        let budget = &self.budget;
        if let Ok(left) = budget
            .sweep
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            && left == 1
        {
            self.shrink(clock);
        }
        let Some(topic) = clock.ring.pop_front() else {
            return;
        };
        let over = budget.over();
        let verdict = {
            let mut state = topic.lock();
            if state.removed {
                // Dropped elsewhere: off the clock.
                return;
            }
            state.tidy(&self.config, now);
            let referenced = std::mem::replace(&mut state.referenced, false);
            if state.is_idle() {
                Some(Why::Idle)
            } else if !over || referenced {
                None
            } else if state.subscribers == 0 {
                Some(Why::Evict)
            } else {
                if clock.fruitless > 2 * clock.ring.len() && budget.bytes_over() {
                    let trimmed = state.trim_to_window(&self.config);
                    budget.evicted.fetch_add(trimmed, Ordering::Relaxed);
                }
                None
            }
        };
        if over {
            clock.fruitless += 1;
        }
        if let Some(why) = verdict
            && self.drop_topic(&topic, why)
        {
            if why == Why::Evict {
                clock.fruitless = 0;
            }
            return;
        }
        clock.ring.push_back(topic);
    }

    /// Gives back the memory of a map and a ring much larger than what they hold, at
    /// the end of a sweep (when aged topics leave in numbers).
    fn shrink(&self, clock: &mut Clock) {
        if clock.ring.capacity() > 4 * clock.ring.len() + 64 {
            clock.ring.shrink_to_fit();
        }
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if topics.capacity() > 4 * topics.len() + 64 {
            topics.shrink_to_fit();
        }
    }

    /// Drops `topic` from the hub if `why` still holds: idle, or (to evict it) nobody
    /// reads it. Remembers its newest id. Returns whether it was dropped.
    pub(super) fn drop_topic(&self, topic: &Arc<Topic>, why: Why) -> bool {
        let entries = {
            let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
            let mut state = topic.lock();
            let allowed = match why {
                Why::Idle => state.is_idle(),
                Why::Evict => state.subscribers == 0,
            };
            if state.removed || !allowed {
                return false;
            }
            state.removed = true;
            if topics
                .get(&topic.name)
                .is_some_and(|t| Arc::ptr_eq(t, topic))
            {
                topics.remove(&topic.name);
            }
            if why == Why::Evict {
                self.budget
                    .evicted
                    .fetch_add(state.history(), Ordering::Relaxed);
            }
            let (entries, keys, gone) = state.take_all();
            if gone > 0 {
                // Under the map's lock: a topic of this name made later sees it.
                self.budget.tombstones.record(&topic.name, gone);
            }
            self.budget.count_out(topic);
            self.metrics.topic_dropped(why == Why::Evict);
            (entries, keys)
        };
        if why == Why::Evict {
            tracing::debug!(topic = %topic.name, events = entries.0.len(), "hub evicted a topic nobody reads");
        }
        // The events are freed here, outside every lock.
        drop(entries);
        true
    }
}

/// The newest dropped id per slot of hashed topic names.
#[derive(Debug, Default)]
struct Tombstones {
    slots: OnceLock<Box<[AtomicU64]>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Tombstones {
    fn slot(&self, name: &str) -> usize {
        (self.hasher.hash_one(name) as usize) % TOMBSTONES
    }

    fn record(&self, name: &str, id: u64) {
        let slots = self
            .slots
            .get_or_init(|| (0..TOMBSTONES).map(|_| AtomicU64::new(0)).collect());
        slots[self.slot(name)].fetch_max(id, Ordering::Relaxed);
    }

    fn get(&self, name: &str) -> u64 {
        self.slots
            .get()
            .map_or(0, |slots| slots[self.slot(name)].load(Ordering::Relaxed))
    }
}
