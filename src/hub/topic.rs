//! One topic: its history ring, which is also the live queue every subscriber reads
//! from at its own cursor, and the slots of its subscribers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use super::signal::Signal;
use super::{HubConfig, LagPolicy, TopicStats};
use crate::Event;

/// A published event as the topic keeps it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) event: Event,
    at: Instant,
    /// Bytes appended to the topic before this entry: the byte backlog of a cursor is
    /// `appended_bytes - entry.bytes_before`.
    bytes_before: u64,
}

/// Why a subscriber was cut from the live feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Its stream must end (the client reconnects and catches up from history).
    Ended,
    /// It must skip to the newest entry, send the gap signal, then go on live.
    Skipped,
}

#[derive(Debug)]
pub(crate) struct Slot {
    /// Position of the next entry this subscriber will read.
    pub(crate) cursor: u64,
    /// Position of the first entry published after it subscribed (or skipped ahead):
    /// replayed entries before it do not count against its queue.
    pub(crate) live_from: u64,
    /// The subscription's flags and waker, and this topic's index among its topics.
    pub(crate) signal: Arc<Signal>,
    pub(crate) member: usize,
    pub(crate) cut: Option<Cut>,
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
    pub(crate) slots: Slab<Slot>,
    /// The local history holds every event of this topic with an id greater than this;
    /// `None` while a shared storage has not confirmed its watch.
    pub(crate) covered_after: Option<u64>,
    /// Counts watches and unwatches, so a late confirmation of an old watch is ignored.
    pub(crate) generation: u64,
}

impl TopicState {
    fn new(covered_after: Option<u64>) -> Self {
        TopicState {
            entries: VecDeque::new(),
            base: 0,
            history_bytes: 0,
            appended_bytes: 0,
            max_evicted_id: 0,
            slots: Slab::new(),
            covered_after,
            generation: 0,
        }
    }

    /// Flags this topic for every subscriber and takes their wakers.
    pub(crate) fn take_wakers(&mut self, wake: &mut Vec<Waker>) {
        for (_, slot) in self.slots.iter() {
            slot.signal.mark(slot.member);
            wake.extend(slot.signal.take_waker());
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

    pub(crate) fn add_slot(&mut self, cursor: u64, signal: Arc<Signal>, member: usize) -> usize {
        let live_from = self.head();
        self.slots.insert(Slot {
            cursor,
            live_from,
            signal,
            member,
            cut: None,
        })
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
}

/// A topic of a hub.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: Arc<str>,
    state: Mutex<TopicState>,
    pub(crate) subscribers: AtomicUsize,
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) lagged: AtomicU64,
}

impl Topic {
    pub(crate) fn new(name: Arc<str>, covered_after: Option<u64>) -> Self {
        Topic {
            name,
            state: Mutex::new(TopicState::new(covered_after)),
            subscribers: AtomicUsize::new(0),
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

    /// Appends an event that already carries its id, evicts what history no longer
    /// holds, cuts subscribers whose queue overflowed, and collects the wakers of those
    /// that wait. `publish_id` is stored (under this topic's lock) into `watermark`.
    pub(crate) fn append(
        &self,
        id: u64,
        event: Event,
        config: &HubConfig,
        watermark: &AtomicU64,
        wake: &mut Vec<Waker>,
    ) {
        let now = Instant::now();
        let len = event.as_bytes().len();
        let mut state = self.lock();
        let bytes_before = state.appended_bytes;
        state.entries.push_back(Entry {
            id,
            event,
            at: now,
            bytes_before,
        });
        state.appended_bytes += len as u64;
        state.history_bytes += len;
        while state.entries.len() > config.history_events
            || config
                .history_bytes
                .is_some_and(|max| state.history_bytes > max && state.entries.len() > 1)
        {
            state.evict_front();
        }
        state.evict_expired(config.history_age, now);
        self.published.fetch_add(1, Ordering::Relaxed);

        let state = &mut *state;
        let head = state.head();
        for (_, slot) in state.slots.iter_mut() {
            if slot.cut.is_some() {
                continue;
            }
            let from = slot.cursor.max(slot.live_from);
            let backlog = head.saturating_sub(from);
            let evicted = slot.cursor < state.base;
            let backlog_bytes = if evicted {
                u64::MAX
            } else {
                let before = state
                    .entries
                    .get((from - state.base) as usize)
                    .map_or(state.appended_bytes, |e| e.bytes_before);
                state.appended_bytes - before
            };
            if evicted
                || backlog > config.queue_events as u64
                || backlog_bytes > config.queue_bytes as u64
            {
                self.lagged.fetch_add(1, Ordering::Relaxed);
                match config.lag_policy {
                    LagPolicy::Disconnect => {
                        self.dropped
                            .fetch_add(head - slot.cursor, Ordering::Relaxed);
                        slot.cut = Some(Cut::Ended);
                        self.subscribers.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(topic = %self.name, backlog, "hub subscriber lagged: its stream ends");
                    }
                    LagPolicy::SkipAhead => {
                        slot.cut = Some(Cut::Skipped);
                        tracing::warn!(topic = %self.name, backlog, "hub subscriber lagged: it skips ahead");
                    }
                }
            }
            slot.signal.mark(slot.member);
            wake.extend(slot.signal.take_waker());
        }
        // Only now: a subscriber that sees this id also sees the flags set above.
        watermark.store(id, Ordering::SeqCst);
    }

    pub(crate) fn stats(&self) -> TopicStats {
        let history = self.lock().entries.len();
        TopicStats {
            topic: self.name.to_string(),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lagged: self.lagged.load(Ordering::Relaxed),
            history,
        }
    }
}
