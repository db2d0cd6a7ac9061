//! A subscriber's stream over one or several topics.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::signal::Signal;
use super::storage::{GapReason, History, HistoryFuture};
use super::topic::{Cut, Topic};
use super::{HubInner, PublishError};
use crate::Event;

/// Most entries taken from one source under one lock.
const BATCH: usize = 256;

/// One topic of a subscription.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) topic: Arc<Topic>,
    pub(crate) slot: usize,
    /// Position of the next entry to take.
    pub(crate) cursor: u64,
    /// Where the topic's local history starts to be complete, once known.
    pub(crate) covered: Option<u64>,
}

/// What a subscription waits for before it reads its topics.
pub(crate) enum Pending {
    Nothing,
    /// A shared storage has not yet confirmed it delivers every topic.
    Coverage,
    /// The storage is fetching what the subscriber missed.
    History(JoinHistory),
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pending::Nothing => "Nothing",
            Pending::Coverage => "Coverage",
            Pending::History(_) => "History",
        })
    }
}

/// Why a subscription stream ended early.
///
/// ```
/// use tower_sse::hub::SubscriptionError;
/// assert_eq!(SubscriptionError::Lagged.to_string(), "hub subscriber fell too far behind");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The subscriber fell too far behind (under
    /// [`LagPolicy::Disconnect`](crate::hub::LagPolicy::Disconnect)).
    Lagged,
    /// The storage could not replay what the subscriber missed.
    Storage(PublishError),
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionError::Lagged => f.write_str("hub subscriber fell too far behind"),
            SubscriptionError::Storage(err) => write!(f, "hub replay failed: {err}"),
        }
    }
}

impl std::error::Error for SubscriptionError {}

/// The events of one or several topics, in id order: first those the subscriber missed
/// (when it came back with a `Last-Event-ID` history still covers), then live ones, with
/// no gap and no duplicate.
///
/// Serve it with [`SseLayer`](crate::SseLayer) or [`Sse`](crate::Sse): every live event
/// is the very `Bytes` the hub encoded at publish time, shared by all subscribers. When
/// the subscriber falls too far behind, the stream yields [`SubscriptionError::Lagged`]
/// and ends (the client reconnects with its `Last-Event-ID` and catches up from
/// history), or, under [`LagPolicy::SkipAhead`](crate::hub::LagPolicy::SkipAhead), it
/// sends the reset event and goes on live.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use futures_util::StreamExt;
/// use tower_sse::{Event, Hub};
///
/// let hub = Hub::new();
/// let mut subscription = hub.subscribe(["news"], None);
/// hub.publish("news", Event::data("extra!"))?;
/// let event = subscription.next().await.unwrap()?;
/// assert!(event.as_bytes().starts_with(b"data: extra!\nid: "));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Subscription {
    pub(crate) hub: Arc<HubInner>,
    pub(crate) members: Vec<Member>,
    /// Events ready to be yielded.
    pub(crate) ready: VecDeque<Event>,
    /// Events with an id up to this one are never yielded: the subscriber has them.
    pub(crate) after: u64,
    /// Events fetched from the storage, with their ids, merged into the live reads.
    pub(crate) replay: VecDeque<(u64, Event)>,
    pub(crate) pending: Pending,
    /// Which topics have something new (set by publishers), and the waker.
    pub(crate) signal: Arc<Signal>,
    /// Topics to read again though not flagged: they held more than one read took.
    pub(crate) revisit: Vec<bool>,
    /// Set when the stream must end with this error once `ready` is drained.
    pub(crate) ended: Option<SubscriptionError>,
    pub(crate) finished: bool,
}

impl Subscription {
    /// The topics this subscription reads.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let subscription = hub.subscribe(["a", "b", "a"], None);
    /// assert_eq!(subscription.topics().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| &*m.topic.name)
    }

    /// Places every topic's cursor once a shared storage covers it, and starts fetching
    /// what lies between the subscriber's position and that coverage. Returns `false`
    /// while some topic is not covered yet.
    fn position(&mut self) -> bool {
        let mut all = true;
        for member in self.members.iter_mut().filter(|m| m.covered.is_none()) {
            let mut state = member.topic.lock();
            match state.covered_after {
                Some(covered) => {
                    let cursor = state.position_after(self.after.max(covered));
                    state.slots[member.slot].cursor = cursor;
                    member.cursor = cursor;
                    member.covered = Some(covered);
                }
                None => all = false,
            }
        }
        if !all {
            return false;
        }
        let storage = self.hub.storage.clone();
        let mut fetches: Vec<HistoryFuture> = Vec::new();
        for member in &self.members {
            let covered = member.covered.expect("every topic is covered");
            if self.after < covered || fetches.is_empty() && self.after > covered {
                // What the subscriber missed, or (once) a check that its id exists.
                fetches.push(storage.history(&member.topic.name, self.after, covered));
            }
        }
        self.pending = if fetches.is_empty() {
            Pending::Nothing
        } else {
            Pending::History(JoinHistory::new(fetches))
        };
        true
    }

    /// Takes what the topics hold for this subscriber into `ready`, in id order.
    /// Returns `true` if there is something to yield (or the stream must end).
    fn fill(&mut self, cx: &mut Context<'_>) -> bool {
        self.signal.register(cx.waker());
        if matches!(self.pending, Pending::Coverage) && !self.position() {
            return false;
        }
        if let Pending::History(join) = &mut self.pending {
            let Poll::Ready(result) = Pin::new(&mut *join).poll(cx) else {
                return false;
            };
            let mut events = std::mem::take(&mut join.events);
            self.pending = Pending::Nothing;
            match result {
                Ok(None) => {
                    events.sort_by_key(|(id, _)| *id);
                    events.dedup_by_key(|(id, _)| *id);
                    let after = self.after;
                    let numbered =
                        events
                            .into_iter()
                            .filter(|(id, _)| *id > after)
                            .map(|(id, event)| {
                                (id, event.with_trusted_id(itoa::Buffer::new().format(id)))
                            });
                    self.replay.extend(numbered);
                }
                Ok(Some(reason)) => {
                    let resume = self.members.iter().filter_map(|m| m.covered).min();
                    self.replay.clear();
                    self.ready.push_back(self.hub.reset_event(reason, resume));
                    return true;
                }
                Err(err) => {
                    self.ended = Some(SubscriptionError::Storage(err));
                    return true;
                }
            }
        }
        loop {
            // The newest id first, then the flags: every topic holding an event up to
            // this id has its flag set by now (publishers set flags before moving it).
            let watermark = self.hub.watermark.load(Ordering::SeqCst);
            let mut taken: Vec<(u64, Option<usize>, Event)> = Vec::new();
            // One topic and nothing replayed: no merge, entries go straight to `ready`.
            let direct = self.members.len() == 1 && self.replay.is_empty();
            // Entries above `bound` stay for the next round: a source that hit the
            // batch limit may hold ids below those of another source's later entries.
            let mut bound = u64::MAX;
            for index in 0..self.members.len() {
                let flagged = self.signal.take(index);
                if !(std::mem::take(&mut self.revisit[index]) || flagged) {
                    continue;
                }
                let member = &mut self.members[index];
                let mut state = member.topic.lock();
                let base = state.base;
                let head = state.head();
                let slot = &mut state.slots[member.slot];
                match slot.cut {
                    Some(Cut::Ended) => {
                        self.ended = Some(SubscriptionError::Lagged);
                        return true;
                    }
                    Some(Cut::Skipped) => {
                        let missed = head.saturating_sub(member.cursor);
                        slot.cut = None;
                        slot.cursor = head;
                        slot.live_from = head;
                        member.cursor = head;
                        drop(state);
                        member.topic.dropped.fetch_add(missed, Ordering::Relaxed);
                        // What this round took from other topics is read again later.
                        self.revisit.iter_mut().for_each(|r| *r = true);
                        self.ready
                            .push_back(self.hub.reset_event(GapReason::Lagged, None));
                        tracing::debug!(topic = %member.topic.name, missed, "hub subscriber skipped ahead");
                        return true;
                    }
                    None => {}
                }
                slot.cursor = member.cursor;
                if member.cursor < base {
                    // History evicted entries this subscriber had not taken.
                    slot.cut = Some(Cut::Ended);
                    drop(state);
                    member.topic.lagged.fetch_add(1, Ordering::Relaxed);
                    member
                        .topic
                        .dropped
                        .fetch_add(base - member.cursor, Ordering::Relaxed);
                    member.topic.subscribers.fetch_sub(1, Ordering::Relaxed);
                    self.ended = Some(SubscriptionError::Lagged);
                    return true;
                }
                let mut position = member.cursor;
                let mut count = 0;
                let mut delivered = 0;
                while position < head && count < BATCH {
                    let entry = state.entry(position).expect("position within history");
                    if entry.id > watermark {
                        break;
                    }
                    if !direct {
                        taken.push((entry.id, Some(index), entry.event.clone()));
                    } else if entry.id > self.after {
                        self.ready.push_back(entry.event.clone());
                        delivered += 1;
                    }
                    position += 1;
                    count += 1;
                }
                if direct {
                    member.cursor = position;
                    if delivered > 0 {
                        member
                            .topic
                            .delivered
                            .fetch_add(delivered, Ordering::Relaxed);
                    }
                }
                if count == BATCH {
                    bound = bound.min(taken.last().map_or(u64::MAX, |t| t.0));
                }
                // Entries left (past the batch, or newer than the id read above, whose
                // flag this visit consumed): read this topic again.
                if position < head {
                    self.revisit[index] = true;
                }
            }
            let replayed = self.replay.len().min(BATCH);
            taken.extend(self.replay.drain(..replayed).map(|(id, e)| (id, None, e)));
            if replayed == BATCH {
                bound = bound.min(taken.last().map_or(u64::MAX, |t| t.0));
            }
            if self.members.len() > 1 || replayed > 0 {
                taken.sort_by_key(|t| t.0);
            }
            let mut delivered = if taken.is_empty() {
                Vec::new()
            } else {
                vec![0u64; self.members.len()]
            };
            let mut unread = Vec::new();
            for (id, source, event) in taken {
                if id > bound {
                    match source {
                        Some(index) => self.revisit[index] = true,
                        None => unread.push((id, event)),
                    }
                    continue;
                }
                if let Some(index) = source {
                    self.members[index].cursor += 1;
                }
                if id > self.after {
                    if let Some(index) = source {
                        delivered[index] += 1;
                    }
                    self.ready.push_back(event);
                }
            }
            for entry in unread.into_iter().rev() {
                self.replay.push_front(entry);
            }
            for (member, count) in self.members.iter().zip(delivered) {
                if count > 0 {
                    member.topic.delivered.fetch_add(count, Ordering::Relaxed);
                }
            }
            if !self.ready.is_empty() {
                return true;
            }
            // Nothing to yield: read again if something is left or newly flagged (the
            // entries seen may all have been known already); otherwise sleep.
            if !(self.revisit.iter().any(|r| *r) || !self.replay.is_empty() || self.signal.any()) {
                return false;
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Event, SubscriptionError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if this.ready.is_empty() && this.ended.is_none() && !this.fill(cx) {
            return Poll::Pending;
        }
        if let Some(event) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        this.finished = true;
        Poll::Ready(this.ended.take().map(Err))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(&self.members);
    }
}

/// The history fetches of one subscription, run together; the events land, in id
/// order, in the subscription's `replay`.
pub(crate) struct JoinHistory {
    // In a mutex only to make the subscription `Sync` (its body may be shared by
    // reference): it is reached through `&mut` and never locked.
    fetches: std::sync::Mutex<Vec<Option<HistoryFuture>>>,
    events: Vec<(u64, Event)>,
    gap: Option<GapReason>,
}

impl JoinHistory {
    fn new(fetches: Vec<HistoryFuture>) -> Self {
        JoinHistory {
            fetches: std::sync::Mutex::new(fetches.into_iter().map(Some).collect()),
            events: Vec::new(),
            gap: None,
        }
    }
}

impl Future for JoinHistory {
    /// `Ok(None)`: every event fetched; `Ok(Some(reason))`: a gap.
    type Output = Result<Option<GapReason>, PublishError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut done = true;
        let fetches = this
            .fetches
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for slot in fetches {
            let Some(fetch) = slot else { continue };
            match fetch.as_mut().poll(cx) {
                Poll::Pending => done = false,
                Poll::Ready(result) => {
                    *slot = None;
                    match result? {
                        History::Events(events) => this.events.extend(events),
                        History::Gap(reason) => this.gap = Some(reason),
                    }
                }
            }
        }
        if !done {
            return Poll::Pending;
        }
        Poll::Ready(Ok(this.gap))
    }
}
