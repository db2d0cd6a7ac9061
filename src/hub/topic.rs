//! One topic: its history ring, which is also the live queue every subscriber reads
//! from at its own position, and the subscribers parked until its next event.
//!
//! A publisher holds the topic's lock only to append one entry (evicting what history no
//! longer keeps) and to take the list of parked subscribers: constant work, whatever the
//! number of subscribers. It wakes them after releasing every lock. A subscriber judges
//! its own lag from its position when it reads, as a receiver of tokio's `broadcast`
//! does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use super::TopicStats;
use super::builder::HubConfig;
use super::signal::Signal;
use crate::Event;

/// A published event as the topic keeps it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) event: Event,
    at: Instant,
    /// Bytes appended to the topic before this entry: the byte backlog of a position is
    /// `appended_bytes - entry.bytes_before`.
    bytes_before: u64,
}

/// A subscription parked on this topic until its next event.
#[derive(Debug)]
pub(crate) struct Waiter {
    signal: Arc<Signal>,
    member: usize,
}

/// Where a subscriber stands in a topic, and whether it fell too far behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backlog {
    Fine,
    /// It has this many entries to read, more than its queue allows (or some of them
    /// were evicted before it read them).
    Lagged(u64),
}

#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) entries: VecDeque<Entry>,
    /// Position of `entries[0]`; positions count every entry ever appended.
    pub(crate) base: u64,
    history_bytes: usize,
    appended_bytes: u64,
    /// Largest id evicted from history; 0 when nothing was evicted.
    pub(crate) max_evicted_id: u64,
    /// Subscriptions waiting for the next entry (or for coverage).
    waiters: Slab<Waiter>,
    /// Counts how often `waiters` was taken: a waiter key of an older round is gone.
    round: u64,
    /// Subscriptions reading this topic now.
    pub(crate) subscribers: usize,
    /// The local history holds every event of this topic with an id greater than this;
    /// `None` while a shared log has not confirmed its watch.
    pub(crate) covered_after: Option<u64>,
    /// Counts watches and unwatches, so a late confirmation of an old watch is ignored.
    pub(crate) generation: u64,
    /// Set when the topic left the hub's map: whoever holds it looks it up again.
    pub(crate) removed: bool,
}

/// A registration in a topic's waiters: the round it was made in and its key.
pub(crate) type WaiterKey = (u64, usize);

impl TopicState {
    fn new(covered_after: u64) -> Self {
        TopicState {
            entries: VecDeque::new(),
            base: 0,
            history_bytes: 0,
            appended_bytes: 0,
            max_evicted_id: 0,
            waiters: Slab::new(),
            round: 0,
            subscribers: 0,
            covered_after: Some(covered_after),
            generation: 0,
            removed: false,
        }
    }

    /// Appends an entry that carries its id, and evicts what history no longer holds.
    pub(crate) fn push(&mut self, id: u64, event: Event, config: &HubConfig, now: Instant) {
        let len = event.as_bytes().len();
        let bytes_before = self.appended_bytes;
        self.entries.push_back(Entry {
            id,
            event,
            at: now,
            bytes_before,
        });
        self.appended_bytes += len as u64;
        self.history_bytes += len;
        while self.entries.len() > config.history_events
            || config
                .history_bytes
                .is_some_and(|max| self.history_bytes > max && self.entries.len() > 1)
        {
            self.evict_front();
        }
        self.evict_expired(config.history_age, now);
    }

    /// Takes the parked subscriptions, to be woken once every lock is released. Call it
    /// through [`Topic::take_waiters`].
    fn take_waiters(&mut self) -> Waiters {
        if self.waiters.is_empty() {
            return Waiters(None);
        }
        self.round += 1;
        Waiters(Some(std::mem::take(&mut self.waiters)))
    }

    /// Whether the registration `key` is still parked here.
    pub(crate) fn is_waiting(&self, key: Option<WaiterKey>) -> bool {
        key.is_some_and(|(round, _)| round == self.round)
    }

    /// Parks a subscription until the next entry (or coverage).
    pub(crate) fn park(&mut self, signal: &Arc<Signal>, member: usize) -> WaiterKey {
        let key = self.waiters.insert(Waiter {
            signal: signal.clone(),
            member,
        });
        (self.round, key)
    }

    /// Removes a registration that is still parked.
    pub(crate) fn unpark(&mut self, key: Option<WaiterKey>) {
        if let Some((round, key)) = key
            && round == self.round
        {
            self.waiters.try_remove(key);
        }
    }

    /// Position one past the newest entry.
    pub(crate) fn head(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Position of the first entry whose id is greater than `id`.
    pub(crate) fn position_after(&self, id: u64) -> u64 {
        self.base + self.entries.partition_point(|e| e.id <= id) as u64
    }

    pub(crate) fn entry(&self, position: u64) -> Option<&Entry> {
        let index = position.checked_sub(self.base)?;
        self.entries.get(usize::try_from(index).ok()?)
    }

    /// The local history holds every event of this topic with an id greater than this
    /// (`None` while not covered).
    pub(crate) fn complete_after(&self) -> Option<u64> {
        self.covered_after.map(|c| c.max(self.max_evicted_id))
    }

    /// How far behind a subscriber at `cursor` is, counting only entries from
    /// `live_from` on (replayed ones do not count against its queue).
    pub(crate) fn backlog(&self, cursor: u64, live_from: u64, config: &HubConfig) -> Backlog {
        let head = self.head();
        if cursor < self.base {
            return Backlog::Lagged(head - cursor);
        }
        let from = cursor.max(live_from);
        if from >= head {
            return Backlog::Fine;
        }
        let events = head - from;
        let bytes = self.appended_bytes - self.entries[(from - self.base) as usize].bytes_before;
        if events > config.queue_events as u64 || bytes > config.queue_bytes as u64 {
            Backlog::Lagged(head - cursor)
        } else {
            Backlog::Fine
        }
    }

    fn evict_front(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.base += 1;
            self.history_bytes -= entry.event.as_bytes().len();
            self.max_evicted_id = entry.id;
        }
    }

    /// Drops entries older than the age bound.
    pub(crate) fn evict_expired(&mut self, max_age: Option<Duration>, now: Instant) {
        if let Some(max_age) = max_age {
            while self
                .entries
                .front()
                .is_some_and(|e| now.duration_since(e.at) > max_age)
            {
                self.evict_front();
            }
        }
    }

    /// Nobody reads the topic and its history can serve nobody: it may be dropped.
    pub(crate) fn is_idle(&self) -> bool {
        self.subscribers == 0 && (self.entries.is_empty() || self.covered_after.is_none())
    }
}

/// Subscriptions taken from a topic's waiters; [`wake`](Waiters::wake) them outside
/// every lock.
#[derive(Debug)]
#[must_use = "waiters must be woken"]
pub(crate) struct Waiters(Option<Slab<Waiter>>);

impl Waiters {
    /// Flags the topic for each subscription and wakes it.
    pub(crate) fn wake(self) {
        for (_, waiter) in self.0.into_iter().flatten() {
            waiter.signal.mark(waiter.member);
            if let Some(waker) = waiter.signal.take_waker() {
                waker.wake();
            }
        }
    }
}

/// A topic of a hub.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: Arc<str>,
    state: Mutex<TopicState>,
    /// The round of the waiters (`TopicState::round`), readable without the lock: it
    /// moves, under the lock, before the watermark moves past the entry that took them.
    round: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) lagged: AtomicU64,
}

impl Topic {
    pub(crate) fn new(name: Arc<str>, covered_after: u64) -> Self {
        Topic {
            name,
            state: Mutex::new(TopicState::new(covered_after)),
            round: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TopicState> {
        // A panic elsewhere never leaves the state half-written: keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the parked subscriptions (see [`TopicState::take_waiters`]), and publishes
    /// the new round for [`was_taken`](Topic::was_taken).
    pub(crate) fn take_waiters(&self, state: &mut TopicState) -> Waiters {
        let waiters = state.take_waiters();
        self.round.store(state.round, Ordering::Release);
        waiters
    }

    /// Whether the registration `key` was taken by a publish: the subscription parked
    /// there has something new to read even before its flag is set. Read after the
    /// watermark, it covers every entry up to it.
    pub(crate) fn was_taken(&self, key: Option<WaiterKey>) -> bool {
        key.is_some_and(|(round, _)| self.round.load(Ordering::Acquire) != round)
    }

    pub(crate) fn stats(&self) -> TopicStats {
        let (history, subscribers) = {
            let state = self.lock();
            (state.entries.len(), state.subscribers)
        };
        TopicStats {
            topic: self.name.to_string(),
            subscribers,
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lagged: self.lagged.load(Ordering::Relaxed),
            history,
        }
    }
}
