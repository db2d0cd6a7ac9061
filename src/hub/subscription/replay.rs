//! What a resuming subscriber missed, replayed from the shared log: every event, or, with
//! `conflate_replay`, the newest of each key and every keyless event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use super::stream::BATCH;
use crate::Event;
use crate::hub::conflate::Item;
use crate::hub::log::{GapReason, Page, PageFuture, SharedLog};
use crate::hub::topic::Topic;

/// Most events read from the shared log per topic and request while replaying.
pub(crate) const PAGE: usize = 128;

/// What a resuming subscriber missed, read from the shared log a page per topic at a
/// time and merged in id order: at most one and a half [`PAGE`]s per topic are held at
/// once (and, in short, the newest event of at most `keys` keys and at most
/// `keyless_events` keyless events per topic).
pub(super) struct Replay {
    pub(super) upto: u64,
    /// Where it began.
    after: u64,
    sources: Vec<Source>,
    /// Keeping only the newest event of each key, within these bounds; `None` once it
    /// replays every event.
    conflate: Option<Bounds>,
}

/// The bounds of a replay in short, per topic.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) keys: usize,
    pub(super) keyless_events: usize,
    pub(super) keyless_bytes: usize,
}

struct Source {
    topic: Arc<Topic>,
    /// The last id fetched.
    after: u64,
    buffer: VecDeque<Item>,
    /// The log has nothing more up to `upto`.
    done: bool,
    // In a mutex only to keep the subscription `Sync`; reached through `&mut`.
    fetch: Mutex<Option<PageFuture>>,
    /// In short: the newest event of each key, and the keyless events, so far.
    newest: HashMap<Arc<str>, (u64, Event)>,
    keyless: Vec<(u64, Event)>,
    keyless_bytes: usize,
}

impl Replay {
    /// A replay of every event of `topics` in `after + 1 ..= upto`; in short within
    /// `conflate`, if given.
    pub(super) fn new(
        topics: impl Iterator<Item = Arc<Topic>>,
        after: u64,
        upto: u64,
        conflate: Option<Bounds>,
    ) -> Self {
        Replay {
            upto,
            after,
            sources: topics
                .map(|topic| Source {
                    topic,
                    after,
                    buffer: VecDeque::new(),
                    done: false,
                    fetch: Mutex::new(None),
                    newest: HashMap::new(),
                    keyless: Vec::new(),
                    keyless_bytes: 0,
                })
                .collect(),
            conflate,
        }
    }

    /// Moves up to [`BATCH`] replayed events into `ready`, numbered. `Ready(Ok(upto))`
    /// once everything is replayed (in short: once everything is read, see
    /// [`take_conflated`](Replay::take_conflated)); `Ready(Err(reason))` on a gap;
    /// `Pending` otherwise (with events in `ready`, or waiting for a page).
    pub(super) fn poll(
        &mut self,
        log: &dyn SharedLog,
        cx: &mut Context<'_>,
        ready: &mut VecDeque<Event>,
    ) -> Poll<Result<u64, GapReason>> {
        if let Some(bounds) = self.conflate {
            match self.poll_conflated(log, cx, bounds) {
                // Past its bounds: every event, from the start.
                None => self.replay_every_event(),
                Some(poll) => return poll,
            }
        }
        if let Some(reason) = self.read_ahead(log, cx) {
            return Poll::Ready(Err(reason));
        }
        let before = ready.len();
        // Merge while every topic that may hold more has some in hand.
        let mut moved = 0;
        while moved < BATCH {
            let mut next: Option<usize> = None;
            for (index, source) in self.sources.iter().enumerate() {
                match source.buffer.front() {
                    // Its next page may hold smaller ids: wait for it.
                    None if !source.done => {
                        next = None;
                        moved = BATCH;
                        break;
                    }
                    None => {}
                    Some(&(id, ..)) if next.is_none_or(|n| id < self.sources[n].buffer[0].0) => {
                        next = Some(index);
                    }
                    Some(_) => {}
                }
            }
            let Some(index) = next else {
                if moved == BATCH {
                    break;
                }
                crate::metrics::hub_replayed((ready.len() - before) as u64, true);
                return Poll::Ready(Ok(self.upto));
            };
            let (id, _, event) = self.sources[index].buffer.pop_front().expect("a front");
            ready.push_back(event.with_trusted_id(itoa::Buffer::new().format(id)));
            moved += 1;
        }
        crate::metrics::hub_replayed((ready.len() - before) as u64, true);
        // Ask for the pages the merge made due before yielding what it took.
        match self.read_ahead(log, cx) {
            Some(reason) => Poll::Ready(Err(reason)),
            None => Poll::Pending,
        }
    }

    /// Reads pages, keeping the newest event of each key and every keyless one.
    /// `None` when a topic goes past `bounds`.
    fn poll_conflated(
        &mut self,
        log: &dyn SharedLog,
        cx: &mut Context<'_>,
        bounds: Bounds,
    ) -> Option<Poll<Result<u64, GapReason>>> {
        let mut read = 0;
        loop {
            if let Some(reason) = self.read_ahead(log, cx) {
                return Some(Poll::Ready(Err(reason)));
            }
            let mut moved = false;
            for source in &mut self.sources {
                moved |= !source.buffer.is_empty();
                read += source.buffer.len();
                for (id, key, event) in source.buffer.drain(..) {
                    match key {
                        Some(key) => {
                            source.newest.insert(key, (id, event));
                        }
                        None => {
                            source.keyless_bytes += event.as_bytes().len();
                            source.keyless.push((id, event));
                        }
                    }
                }
                if source.newest.len() > bounds.keys
                    || source.keyless.len() > bounds.keyless_events
                    || (source.keyless.len() > 1 && source.keyless_bytes > bounds.keyless_bytes)
                {
                    source
                        .topic
                        .conflate_fallbacks
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(topic = %source.topic.name, "hub resumer missed more than its replay in short holds: it replays every event");
                    return None;
                }
            }
            if self.sources.iter().all(|s| s.done && s.buffer.is_empty()) {
                return Some(Poll::Ready(Ok(self.upto)));
            }
            if !moved {
                return Some(Poll::Pending);
            }
            if read >= 16 * PAGE {
                // Enough for one poll: let the runtime run others.
                cx.waker().wake_by_ref();
                return Some(Poll::Pending);
            }
        }
    }

    /// Goes back to where it began and replays every event.
    fn replay_every_event(&mut self) {
        self.conflate = None;
        for source in &mut self.sources {
            source.after = self.after;
            source.buffer = VecDeque::new();
            source.done = false;
            *source
                .fetch
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner) = None;
            source.newest = HashMap::new();
            source.keyless = Vec::new();
            source.keyless_bytes = 0;
        }
    }

    /// What a replay in short kept, per topic in id order, numbered; `None` if it
    /// replayed every event.
    pub(super) fn take_conflated(&mut self) -> Option<Vec<Vec<Item>>> {
        self.conflate?;
        let parts = self
            .sources
            .iter_mut()
            .map(|source| {
                let mut items: Vec<Item> = std::mem::take(&mut source.newest)
                    .into_iter()
                    .map(|(key, (id, event))| (id, Some(key), event))
                    .chain(
                        std::mem::take(&mut source.keyless)
                            .into_iter()
                            .map(|(id, event)| (id, None, event)),
                    )
                    .collect();
                items.sort_unstable_by_key(|item| item.0);
                for item in &mut items {
                    item.2 = item.2.with_trusted_id(itoa::Buffer::new().format(item.0));
                }
                items
            })
            .collect();
        Some(parts)
    }

    /// Asks for a topic's next page once fewer than half a page of it is left, so that
    /// the pages of all topics are read ahead together (a topic holds at most one and a
    /// half pages at once), and takes in the pages that arrived. Returns a gap.
    fn read_ahead(&mut self, log: &dyn SharedLog, cx: &mut Context<'_>) -> Option<GapReason> {
        for source in &mut self.sources {
            let fetch = source
                .fetch
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            loop {
                if fetch.is_none() && !source.done && source.buffer.len() < PAGE / 2 {
                    *fetch = Some(log.page(&source.topic.name, source.after, self.upto, PAGE));
                }
                let Some(future) = fetch else { break };
                let Poll::Ready(page) = future.as_mut().poll(cx) else {
                    break;
                };
                *fetch = None;
                match page {
                    Page::Gap(reason) => return Some(reason),
                    Page::Events { events, next } => {
                        match next {
                            Some(next) => source.after = next,
                            None => source.done = true,
                        }
                        source.buffer.extend(events);
                    }
                }
            }
        }
        None
    }
}
