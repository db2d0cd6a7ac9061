//! One topic: its ring of entries, which holds both the topic's history (for replay)
//! and, while it has subscribers, its live window (what they may still have to read),
//! and the subscribers parked until its next event (`waiters.rs` wakes them).
//!
//! The ring keeps an entry while history needs it (`history_events`, `history_bytes`,
//! `history_age`) or while the topic has subscribers and the entry is within the live
//! window (`queue_events`, `queue_bytes`). The two bounds are apart: history decides
//! what a resumer can replay, the live window alone decides when a subscriber lags, as
//! the capacity of tokio's `broadcast` does. A subscriber that keeps up therefore
//! receives every event whatever the history settings are.
//!
//! A publisher holds the topic's lock only to append one entry (dropping what neither
//! bound keeps, amortised constant), to record it in the key index when the hub
//! conflates (`conflate.rs`, constant too), and to take the list of parked subscribers:
//! constant work, whatever the number of subscribers. It wakes them after releasing
//! every lock. A subscriber judges its own lag from its position when it reads.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use super::TopicStats;
use super::budget::Held;
use super::builder::{HubConfig, IndexWhen};
use super::conflate::{Item, Key, KeyIndex};
use super::signal::Signal;
use super::waiters::{Waiter, WaiterKey, Waiters};
use crate::Event;
use crate::sync::{AtomicU64, Mutex, MutexGuard};

/// What the hub's budget counts for one entry beside its frame: the entry in the ring
/// (64 bytes, and the ring's spare capacity) and the allocator's rounding of the frame.
pub(crate) const ENTRY_COST: usize = 96;

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

impl Entry {
    fn cost(&self) -> usize {
        self.event.as_bytes().len() + ENTRY_COST
    }
}

/// Where a subscriber stands in a topic, and whether it fell too far behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backlog {
    Fine,
    /// It has this many entries to read, more than its queue allows (or some of them
    /// were dropped before it read them).
    Lagged(u64),
}

#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) entries: VecDeque<Entry>,
    /// Position of `entries[0]`; positions count every entry ever appended.
    pub(crate) base: u64,
    /// Position of the oldest entry history keeps (`base` or later): the entries before
    /// it are held only for the live window.
    history_from: u64,
    /// Bytes of the entries history keeps.
    history_bytes: usize,
    appended_bytes: u64,
    /// Largest id that left history (0 when none did, or what the hub remembers of a
    /// topic of this name it dropped): a resumer from before it cannot be replayed.
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
    /// Published to or subscribed since the budget's clock last passed it.
    pub(crate) referenced: bool,
    /// The newest event of each key and the recent keyless events, while the hub
    /// conflates and this topic needs it.
    keys: Option<Box<KeyIndex>>,
    /// The key index holds the newest event of every key, and every keyless event,
    /// with an id above this one: it can serve readers from here on.
    keys_from: u64,
    /// What the hub's budget counts for the entries held (and the key index), and the
    /// hub-wide sum it is part of.
    charged: usize,
    held: Arc<Held>,
}

impl TopicState {
    fn new(covered_after: u64, max_evicted_id: u64, held: Arc<Held>) -> Self {
        TopicState {
            // Most topics hold one event or few: start small.
            entries: VecDeque::with_capacity(1),
            base: 0,
            history_from: 0,
            history_bytes: 0,
            appended_bytes: 0,
            max_evicted_id,
            waiters: Slab::new(),
            round: 0,
            subscribers: 0,
            covered_after: Some(covered_after),
            generation: 0,
            removed: false,
            referenced: true,
            keys: None,
            keys_from: max_evicted_id,
            charged: 0,
            held,
        }
    }

    /// Appends an entry that carries its id (and records it in the key index, under
    /// `key`, when the hub conflates), and drops what neither history nor the live
    /// window keeps.
    pub(crate) fn push(
        &mut self,
        id: u64,
        event: Event,
        key: Option<Key<'_>>,
        config: &HubConfig,
        now: Instant,
    ) {
        let charged = self.charged;
        if config.index_when != IndexWhen::Never {
            self.index(id, &event, key, config);
        }
        let len = event.as_bytes().len();
        let entry = Entry {
            id,
            event,
            at: now,
            bytes_before: self.appended_bytes,
        };
        self.charged += entry.cost();
        self.entries.push_back(entry);
        self.appended_bytes += len as u64;
        self.history_bytes += len;
        self.referenced = true;
        while self.history_len() > config.history_events as u64
            || config
                .history_bytes
                .is_some_and(|max| self.history_bytes > max)
        {
            self.leave_history();
        }
        self.expire(config.history_age, now);
        self.trim(config);
        self.settle(charged);
    }

    /// Records an event in the key index, if this topic keeps one now.
    fn index(&mut self, id: u64, event: &Event, key: Option<Key<'_>>, config: &HubConfig) {
        if !self.wants_index(config) {
            self.drop_index(id);
            return;
        }
        let index = self.keys.get_or_insert_with(Box::default);
        let before = index.charged;
        let gone = match key {
            Some(key) => index.keyed(key, id, event, config.conflate_keys),
            None => index.keyless(id, event, config.queue_events, config.queue_bytes),
        };
        self.charged = self.charged + index.charged - before;
        if let Some(gone) = gone {
            self.keys_from = self.keys_from.max(gone);
        }
    }

    /// Whether this topic keeps a key index now: always with `conflate_replay` in
    /// memory, otherwise while it has subscribers.
    fn wants_index(&self, config: &HubConfig) -> bool {
        match config.index_when {
            IndexWhen::Never => false,
            IndexWhen::WhileRead => self.subscribers > 0,
            IndexWhen::Always => true,
        }
    }

    /// Drops the key index: it can serve readers from `newest` on only.
    fn drop_index(&mut self, newest: u64) {
        if let Some(index) = self.keys.take() {
            self.charged -= index.charged;
        }
        self.keys_from = self.keys_from.max(newest);
    }

    /// The id of the newest event this topic held.
    pub(crate) fn newest_id(&self) -> u64 {
        self.entries.back().map_or(self.max_evicted_id, |e| e.id)
    }

    /// What a reader that has every event up to `after` missed, in short: the newest
    /// event of each key and every keyless event above `after`, in id order. `None` if
    /// the key index cannot tell (it dropped something the reader needs, or the topic
    /// is not covered from there).
    pub(crate) fn conflated_after(&self, after: u64) -> Option<Vec<Item>> {
        let covered = self.covered_after?;
        if after < covered.max(self.keys_from) {
            return None;
        }
        Some(
            self.keys
                .as_ref()
                .map_or_else(Vec::new, |index| index.since(after)),
        )
    }

    /// Keys in the key index now.
    pub(crate) fn keys(&self) -> usize {
        self.keys.as_ref().map_or(0, |index| index.keys())
    }

    /// Entries history keeps.
    fn history_len(&self) -> u64 {
        self.head() - self.history_from
    }

    /// The oldest entry of history leaves it (it may stay for the live window).
    fn leave_history(&mut self) {
        let entry = self
            .entry(self.history_from)
            .expect("history within the ring");
        let (id, len) = (entry.id, entry.event.as_bytes().len());
        self.max_evicted_id = id;
        self.history_bytes -= len;
        self.history_from += 1;
    }

    /// History drops entries older than `max_age` (they may stay for the live window).
    fn expire(&mut self, max_age: Option<Duration>, now: Instant) {
        let Some(max_age) = max_age else { return };
        while self
            .entry(self.history_from)
            .is_some_and(|e| now.duration_since(e.at) > max_age)
        {
            self.leave_history();
        }
    }

    /// Whether the entry at `position` is within the live window: a subscriber there is
    /// not lagging. The newest entry always is, however large.
    fn in_window(&self, position: u64, config: &HubConfig) -> bool {
        let Some(entry) = self.entry(position) else {
            return false;
        };
        let events = self.head() - position;
        events == 1
            || (events <= config.queue_events as u64
                && self.appended_bytes - entry.bytes_before <= config.queue_bytes as u64)
    }

    /// Drops the oldest entries that neither history nor (while the topic has
    /// subscribers) the live window keeps.
    fn trim(&mut self, config: &HubConfig) {
        while self.base < self.history_from
            && !(self.subscribers > 0 && self.in_window(self.base, config))
        {
            let entry = self.entries.pop_front().expect("an entry before history");
            self.charged -= entry.cost();
            self.base += 1;
        }
    }

    /// Passes the change of `charged` since it was `before` on to the hub-wide sum.
    fn settle(&mut self, before: usize) {
        if self.charged > before {
            self.held
                .0
                .fetch_add(self.charged - before, Ordering::Relaxed);
        } else if self.charged < before {
            self.held
                .0
                .fetch_sub(before - self.charged, Ordering::Relaxed);
        }
    }

    /// Ages history out by `max_age` and drops what nothing keeps any more (after the
    /// last subscriber left, the live window no longer keeps anything, nor does the key
    /// index unless resumers may need it).
    pub(crate) fn tidy(&mut self, config: &HubConfig, now: Instant) {
        let charged = self.charged;
        self.expire(config.history_age, now);
        self.trim(config);
        if self.keys.is_some() && !self.wants_index(config) {
            self.drop_index(self.newest_id());
        }
        self.settle(charged);
    }

    /// The hub's budget takes history down to the live window; returns how many events
    /// left history.
    pub(crate) fn trim_to_window(&mut self, config: &HubConfig) -> u64 {
        let charged = self.charged;
        let before = self.history_from;
        while self.history_from < self.head()
            && !(self.subscribers > 0 && self.in_window(self.history_from, config))
        {
            self.leave_history();
        }
        // The key index reaches beyond the live window: it goes too.
        if self.keys.is_some() {
            self.drop_index(self.newest_id());
        }
        self.trim(config);
        self.settle(charged);
        self.history_from - before
    }

    /// Takes every entry (and the key index) out, as the topic leaves the hub, to be
    /// dropped once the locks are released; returns them with the newest id the topic
    /// ever held.
    pub(crate) fn take_all(&mut self) -> (VecDeque<Entry>, Option<Box<KeyIndex>>, u64) {
        let charged = self.charged;
        let newest = self.entries.back().map_or(0, |e| e.id);
        self.max_evicted_id = self.max_evicted_id.max(newest);
        self.keys_from = self.keys_from.max(self.max_evicted_id);
        self.history_from = self.head();
        self.history_bytes = 0;
        self.base = self.head();
        self.charged = 0;
        self.settle(charged);
        (
            std::mem::take(&mut self.entries),
            self.keys.take(),
            self.max_evicted_id,
        )
    }

    /// Events history keeps now.
    pub(crate) fn history(&self) -> u64 {
        self.history_len()
    }

    /// Takes the parked subscriptions, to be woken once every lock is released. Call it
    /// through [`Topic::take_waiters`].
    fn take_waiters(&mut self) -> Option<Slab<Waiter>> {
        if self.waiters.is_empty() {
            return None;
        }
        self.round += 1;
        Some(std::mem::take(&mut self.waiters))
    }

    /// Registrations parked here now.
    #[cfg(all(test, tower_sse_loom))]
    pub(crate) fn parked(&self) -> usize {
        self.waiters.len()
    }

    /// Whether the registration `key` is still parked here.
    pub(crate) fn is_waiting(&self, key: Option<WaiterKey>) -> bool {
        key.is_some_and(|(round, _)| round == self.round)
    }

    /// Parks a subscription until the next entry (or coverage).
    pub(crate) fn park(&mut self, signal: &Arc<Signal>, member: usize) -> WaiterKey {
        let key = self.waiters.insert(Waiter::new(signal.clone(), member));
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
        if from >= head || self.in_window(from, config) {
            Backlog::Fine
        } else {
            Backlog::Lagged(head - cursor)
        }
    }

    /// Nobody reads the topic and its history can serve nobody: it may be dropped.
    pub(crate) fn is_idle(&self) -> bool {
        self.subscribers == 0 && (self.entries.is_empty() || self.covered_after.is_none())
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
    /// Catch-ups served in short (newest per key), and those the key index could not
    /// serve.
    pub(crate) conflated: AtomicU64,
    pub(crate) conflate_fallbacks: AtomicU64,
}

impl Topic {
    /// A topic whose local history is complete after `covered_after`, that remembers
    /// `max_evicted_id` as gone, and whose entries count in `held`.
    pub(crate) fn new(
        name: Arc<str>,
        covered_after: u64,
        max_evicted_id: u64,
        held: Arc<Held>,
    ) -> Self {
        Topic {
            name,
            state: Mutex::new(TopicState::new(covered_after, max_evicted_id, held)),
            round: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            conflate_fallbacks: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TopicState> {
        // A panic elsewhere never leaves the state half-written: keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the parked subscriptions (see [`TopicState::take_waiters`]), counting them
    /// in the hub's `flagging` until they are flagged, and publishes the new round for
    /// [`was_taken`](Topic::was_taken). Under the topic's lock, before the watermark
    /// moves past the entry that took them.
    pub(crate) fn take_waiters<'a>(
        &self,
        state: &mut TopicState,
        flagging: &'a AtomicU64,
    ) -> Waiters<'a> {
        let taken = state.take_waiters();
        let took = taken.is_some();
        // Counted first: a subscription that sees the new round sees the count too.
        let waiters = Waiters::new(taken, flagging);
        if took {
            self.round.store(state.round, Ordering::Release);
        }
        waiters
    }

    /// Whether the registration `key` was taken by a publish: the subscription parked
    /// there has something new to read even before its flag is set. Read after the
    /// watermark, it covers every entry up to it.
    pub(crate) fn was_taken(&self, key: Option<WaiterKey>) -> bool {
        key.is_some_and(|(round, _)| self.round.load(Ordering::Acquire) != round)
    }

    pub(crate) fn stats(&self) -> TopicStats {
        let (history, subscribers, keys) = {
            let state = self.lock();
            (state.history() as usize, state.subscribers, state.keys())
        };
        TopicStats {
            topic: self.name.to_string(),
            subscribers,
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lagged: self.lagged.load(Ordering::Relaxed),
            history,
            keys,
            conflated: self.conflated.load(Ordering::Relaxed),
            conflate_fallbacks: self.conflate_fallbacks.load(Ordering::Relaxed),
        }
    }
}
