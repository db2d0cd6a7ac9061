//! A subscriber's stream over one or several topics.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::time::Instant;

use super::log::{GapReason, Page, PageFuture};
use super::signal::Signal;
use super::topic::{Backlog, Topic, WaiterKey};
use super::{HubInner, LagPolicy};
use crate::{Event, LastEventId};

/// Most entries taken from one source at a time.
const BATCH: usize = 256;
/// Most events read from the shared log per topic and request while replaying.
pub(crate) const PAGE: usize = 128;

/// One topic of a subscription.
#[derive(Debug)]
struct Member {
    topic: Arc<Topic>,
    /// Position of the next entry to take.
    cursor: u64,
    /// Position of the first entry published after it subscribed (or skipped ahead):
    /// entries before it, replayed, do not count against its queue.
    live_from: u64,
    /// Its registration among the topic's waiters, when it parked there.
    waiting: Option<WaiterKey>,
}

/// Where a subscription stands.
enum Phase {
    /// Waiting until every topic's local history is complete from some id on (at once
    /// in memory; on a shared log, once the log confirms the watch).
    Covering,
    /// Asking the shared log whether the client's id, newer than anything here, exists.
    Checking(Mutex<PageFuture>),
    /// Replaying from the shared log what local history does not hold.
    Replaying(Replay),
    /// Reading the topics' histories.
    Live,
}

impl fmt::Debug for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Covering => "Covering",
            Phase::Checking(_) => "Checking",
            Phase::Replaying(_) => "Replaying",
            Phase::Live => "Live",
        })
    }
}

/// What the client asked to resume from.
#[derive(Clone, Copy, Debug)]
enum Resume {
    /// After the id it sent.
    After(u64),
    /// Nothing usable: after the newest event, without (`Fresh`) or with a reset.
    Fresh,
    Malformed,
}

/// Why a subscription stream ended early.
///
/// ```
/// use tower_sse::hub::SubscriptionError;
/// let lagged = SubscriptionError::Lagged { skipped: 12 };
/// assert_eq!(lagged.to_string(), "hub subscriber fell too far behind (12 events unread)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The subscriber fell too far behind (under
    /// [`LagPolicy::Disconnect`](crate::hub::LagPolicy::Disconnect)): `skipped` events of
    /// its topics were published that it had not read. The client reconnects with its
    /// `Last-Event-ID` and catches up from history.
    Lagged {
        /// Events it had not read when its stream ended.
        skipped: u64,
    },
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionError::Lagged { skipped } => write!(
                f,
                "hub subscriber fell too far behind ({skipped} events unread)"
            ),
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
/// the subscriber finds, as it reads, that it fell too far behind, the stream yields
/// [`SubscriptionError::Lagged`] and ends (the client reconnects with its
/// `Last-Event-ID` and catches up from history), or, under
/// [`LagPolicy::SkipAhead`](crate::hub::LagPolicy::SkipAhead), it sends the reset event
/// and goes on live.
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
    hub: Arc<HubInner>,
    members: Vec<Member>,
    /// Events ready to be yielded.
    ready: VecDeque<Event>,
    /// Events with an id up to this one are never yielded: the subscriber has them.
    after: u64,
    /// The newest id when it subscribed: where it starts without a usable id.
    start: u64,
    resume: Resume,
    phase: Phase,
    /// Which topics have something new (set by publishers), and the waker.
    signal: Arc<Signal>,
    /// Topics to read again though not flagged: they held more than one read took.
    revisit: Vec<bool>,
    /// Set when the stream must end with this error once `ready` is drained.
    ended: Option<SubscriptionError>,
    finished: bool,
}

impl Subscription {
    pub(crate) fn new(
        hub: Arc<HubInner>,
        topics: Vec<(Arc<Topic>, u64)>,
        start: u64,
        last_event_id: Option<&LastEventId>,
    ) -> Self {
        let resume = match last_event_id.map(|id| id.parse::<u64>()) {
            None => Resume::Fresh,
            Some(Ok(id)) => Resume::After(id),
            Some(Err(_)) => Resume::Malformed,
        };
        let count = topics.len();
        let mut subscription = Subscription {
            hub,
            members: topics
                .into_iter()
                .map(|(topic, head)| Member {
                    topic,
                    cursor: 0,
                    live_from: head,
                    waiting: None,
                })
                .collect(),
            ready: VecDeque::new(),
            after: start,
            start,
            resume,
            phase: Phase::Covering,
            signal: Arc::new(Signal::new(count)),
            revisit: vec![true; count],
            ended: None,
            finished: false,
        };
        // In memory, and on a shared log whose topics are covered already, the
        // subscriber's place is fixed here: whatever is published from now on reaches it.
        subscription.resolve();
        subscription
    }

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

    /// Once every topic is covered, decides where the subscriber starts: live at once,
    /// after a replay from the shared log, or after the reset event. Returns `false`
    /// while some topic is not covered (it is then parked on that topic).
    fn resolve(&mut self) -> bool {
        let now = Instant::now();
        let max_age = self.hub.config.history_age;
        // Every topic's local history holds all of its events after `complete`.
        let mut complete = 0;
        for (index, member) in self.members.iter_mut().enumerate() {
            let mut state = member.topic.lock();
            state.evict_expired(max_age, now);
            match state.complete_after() {
                Some(after) => complete = complete.max(after),
                None => {
                    if !state.is_waiting(member.waiting) {
                        member.waiting = Some(state.park(&self.signal, index));
                    }
                    return false;
                }
            }
        }
        let newest = self.hub.watermark.load(Ordering::Acquire);
        let id = match self.resume {
            Resume::Malformed => return self.reset(GapReason::Malformed, complete),
            Resume::Fresh => self.start,
            Resume::After(id) => id,
        };
        if id >= complete && id <= newest {
            self.go_live(id);
            return true;
        }
        match &self.hub.log {
            None if id > newest || id < self.hub.first => self.reset(GapReason::Unknown, complete),
            None => self.reset(GapReason::Evicted, complete),
            Some(log) if id > newest => {
                // Maybe an id another instance gave that has not reached this one.
                let name = &self.members[0].topic.name;
                self.after = id;
                self.phase = Phase::Checking(Mutex::new(log.page(name, id, id, 1)));
                true
            }
            Some(_) => {
                self.after = id;
                let topics = self.members.iter().map(|m| m.topic.name.clone());
                self.phase = Phase::Replaying(Replay::new(topics, id, complete));
                tracing::debug!(
                    after = id,
                    upto = complete,
                    "hub subscriber replays from the shared log"
                );
                true
            }
        }
    }

    /// Sends the reset event, then goes live after the newest event this subscriber can
    /// be sure of.
    fn reset(&mut self, reason: GapReason, complete: u64) -> bool {
        let resume = complete.max(self.start);
        tracing::debug!(
            reason = reason.as_str(),
            resume,
            "hub subscriber gets the reset event"
        );
        self.ready
            .push_back(self.hub.reset_event(reason, Some(resume)));
        self.go_live(resume);
        true
    }

    /// Reads the topics' histories from after `after` on.
    fn go_live(&mut self, after: u64) {
        self.after = after;
        for member in &mut self.members {
            let state = member.topic.lock();
            member.cursor = state.position_after(after);
        }
        self.revisit.iter_mut().for_each(|r| *r = true);
        self.phase = Phase::Live;
    }

    /// Takes what there is for this subscriber into `ready`, in id order. Returns
    /// `true` if there is something to yield (or the stream must end).
    fn fill(&mut self, cx: &mut Context<'_>) -> bool {
        self.signal.register(cx.waker());
        loop {
            match &mut self.phase {
                Phase::Covering => {
                    if !self.resolve() {
                        return false;
                    }
                }
                Phase::Checking(check) => {
                    let check = check.get_mut().unwrap_or_else(PoisonError::into_inner);
                    let Poll::Ready(page) = check.as_mut().poll(cx) else {
                        return false;
                    };
                    match page {
                        Page::Gap(reason) => {
                            let start = self.start;
                            return self.reset(reason, start);
                        }
                        Page::Events { .. } => {
                            let after = self.after;
                            self.go_live(after);
                        }
                    }
                }
                Phase::Replaying(replay) => {
                    let log = self.hub.log.as_ref().expect("replaying from a shared log");
                    match replay.poll(&**log, cx, &mut self.ready) {
                        Poll::Pending => return !self.ready.is_empty(),
                        Poll::Ready(Ok(upto)) => {
                            let ready = !self.ready.is_empty();
                            self.go_live(upto);
                            if ready {
                                return true;
                            }
                        }
                        Poll::Ready(Err(reason)) => {
                            let upto = replay.upto;
                            return self.reset(reason, upto);
                        }
                    }
                }
                Phase::Live => return self.read_live(cx),
            }
        }
    }

    /// One round over the flagged topics (and those left unfinished), in id order.
    fn read_live(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            // The watermark first: every entry up to it is appended. Several topics are
            // read only up to it, so no id passes a smaller one still being appended.
            let merge = self.members.len() > 1;
            let watermark = if merge {
                self.hub.watermark.load(Ordering::Acquire)
            } else {
                u64::MAX
            };
            let mut taken: Vec<(u64, usize, Event)> = Vec::new();
            // Entries above `bound` stay for the next round: a topic that hit the batch
            // limit may hold ids below those of another topic's later entries.
            let mut bound = u64::MAX;
            // Entries appended but not yet below the watermark: look again soon.
            let mut ordering = false;
            for index in 0..self.members.len() {
                let flagged = self.signal.take(index);
                // A publish sets the flag only after it released its locks, so the
                // watermark may already cover its entry: a taken registration counts.
                let woken = merge && {
                    let member = &self.members[index];
                    member.topic.was_taken(member.waiting)
                };
                if !(std::mem::take(&mut self.revisit[index]) || flagged || woken) {
                    continue;
                }
                let config = &self.hub.config;
                let member = &mut self.members[index];
                let mut state = member.topic.lock();
                if let Backlog::Lagged(skipped) =
                    state.backlog(member.cursor, member.live_from, config)
                {
                    let head = state.head();
                    drop(state);
                    member.topic.lagged.fetch_add(1, Ordering::Relaxed);
                    member.topic.dropped.fetch_add(skipped, Ordering::Relaxed);
                    match config.lag_policy {
                        LagPolicy::Disconnect => {
                            tracing::warn!(topic = %member.topic.name, skipped, "hub subscriber lagged: its stream ends");
                            self.ended = Some(SubscriptionError::Lagged { skipped });
                            return true;
                        }
                        LagPolicy::SkipAhead => {
                            tracing::warn!(topic = %member.topic.name, skipped, "hub subscriber lagged: it skips ahead");
                            member.cursor = head;
                            member.live_from = head;
                            // What this round took from other topics is read again.
                            self.revisit.iter_mut().for_each(|r| *r = true);
                            self.ready
                                .push_back(self.hub.reset_event(GapReason::Lagged, None));
                            return true;
                        }
                    }
                }
                let head = state.head();
                let mut position = member.cursor;
                let mut count = 0;
                let mut delivered = 0;
                while position < head && count < BATCH {
                    let entry = state.entry(position).expect("position within history");
                    if entry.id > watermark {
                        ordering = true;
                        break;
                    }
                    if merge {
                        taken.push((entry.id, index, entry.event.clone()));
                    } else if entry.id > self.after {
                        self.ready.push_back(entry.event.clone());
                        delivered += 1;
                    }
                    position += 1;
                    count += 1;
                }
                if position == head {
                    if !state.is_waiting(member.waiting) {
                        member.waiting = Some(state.park(&self.signal, index));
                    }
                } else {
                    self.revisit[index] = true;
                }
                drop(state);
                if merge {
                    if count == BATCH {
                        bound = bound.min(taken.last().map_or(u64::MAX, |t| t.0));
                    }
                } else {
                    member.cursor = position;
                    if delivered > 0 {
                        member
                            .topic
                            .delivered
                            .fetch_add(delivered, Ordering::Relaxed);
                    }
                }
            }
            if merge && !taken.is_empty() {
                taken.sort_unstable_by_key(|t| t.0);
                let mut delivered = vec![0u64; self.members.len()];
                for (id, index, event) in taken {
                    if id > bound {
                        self.revisit[index] = true;
                        continue;
                    }
                    self.members[index].cursor += 1;
                    if id > self.after {
                        delivered[index] += 1;
                        self.ready.push_back(event);
                    }
                }
                for (member, count) in self.members.iter().zip(delivered) {
                    if count > 0 {
                        member.topic.delivered.fetch_add(count, Ordering::Relaxed);
                    }
                }
            }
            if !self.ready.is_empty() {
                return true;
            }
            if ordering {
                // An id below the watermark is still being appended elsewhere, for an
                // instant: poll again without holding the thread.
                cx.waker().wake_by_ref();
                return false;
            }
            // Nothing to yield: read again if something is left or newly flagged (the
            // entries seen may all have been known already); otherwise sleep.
            if !(self.revisit.iter().any(|r| *r) || self.signal.any()) {
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
        for member in &self.members {
            self.hub.leave(&member.topic, member.waiting);
        }
        tracing::debug!(topics = self.members.len(), "hub subscriber left");
    }
}

/// What a resuming subscriber missed, read from the shared log a page per topic at a
/// time and merged in id order: at most [`PAGE`] events per topic are held at once.
struct Replay {
    upto: u64,
    sources: Vec<Source>,
}

struct Source {
    topic: Arc<str>,
    /// The last id fetched.
    after: u64,
    buffer: VecDeque<(u64, Event)>,
    /// The log has nothing more up to `upto`.
    done: bool,
    // In a mutex only to keep the subscription `Sync`; reached through `&mut`.
    fetch: Mutex<Option<PageFuture>>,
}

impl Replay {
    fn new(topics: impl Iterator<Item = Arc<str>>, after: u64, upto: u64) -> Self {
        Replay {
            upto,
            sources: topics
                .map(|topic| Source {
                    topic,
                    after,
                    buffer: VecDeque::new(),
                    done: false,
                    fetch: Mutex::new(None),
                })
                .collect(),
        }
    }

    /// Moves up to [`BATCH`] replayed events into `ready`, numbered. `Ready(Ok(upto))`
    /// once everything is replayed; `Ready(Err(reason))` on a gap; `Pending` otherwise
    /// (with events in `ready`, or waiting for a page).
    fn poll(
        &mut self,
        log: &dyn super::log::SharedLog,
        cx: &mut Context<'_>,
        ready: &mut VecDeque<Event>,
    ) -> Poll<Result<u64, GapReason>> {
        if let Some(reason) = self.read_ahead(log, cx) {
            return Poll::Ready(Err(reason));
        }
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
                    Some(&(id, _)) if next.is_none_or(|n| id < self.sources[n].buffer[0].0) => {
                        next = Some(index);
                    }
                    Some(_) => {}
                }
            }
            let Some(index) = next else {
                if moved == BATCH {
                    break;
                }
                return Poll::Ready(Ok(self.upto));
            };
            let (id, event) = self.sources[index].buffer.pop_front().expect("a front");
            ready.push_back(event.with_trusted_id(itoa::Buffer::new().format(id)));
            moved += 1;
        }
        // Ask for the pages the merge made due before yielding what it took.
        match self.read_ahead(log, cx) {
            Some(reason) => Poll::Ready(Err(reason)),
            None => Poll::Pending,
        }
    }

    /// Asks for a topic's next page once fewer than half a page of it is left, so that
    /// the pages of all topics are read ahead together (a topic holds at most one and a
    /// half pages at once), and takes in the pages that arrived. Returns a gap.
    fn read_ahead(
        &mut self,
        log: &dyn super::log::SharedLog,
        cx: &mut Context<'_>,
    ) -> Option<GapReason> {
        for source in &mut self.sources {
            let fetch = source
                .fetch
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            loop {
                if fetch.is_none() && !source.done && source.buffer.len() < PAGE / 2 {
                    *fetch = Some(log.page(&source.topic, source.after, self.upto, PAGE));
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
