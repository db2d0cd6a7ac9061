//! The subscription stream: where it starts, and its phases.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::time::Instant;

use super::SubscriptionError;
use super::replay::{Bounds, Replay};
use crate::hub::conflate::Item;
use crate::hub::engine::HubInner;
use crate::hub::log::{GapReason, Page, PageFuture};
use crate::hub::member_set::MemberSet;
use crate::hub::signal::Signal;
use crate::hub::topic::Topic;
use crate::hub::waiters::WaiterKey;
use crate::{Event, LastEventId};

/// Most entries taken from one source at a time.
pub(super) const BATCH: usize = 256;

/// One topic of a subscription.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) topic: Arc<Topic>,
    /// Position of the next entry to take.
    pub(super) cursor: u64,
    /// Position of the first entry published after it subscribed (or skipped ahead):
    /// entries before it, replayed, do not count against its queue.
    pub(super) live_from: u64,
    /// Its registration among the topic's waiters, when it parked there.
    pub(super) waiting: Option<WaiterKey>,
    /// It has every event of this topic up to this id, once it took its `catchup`:
    /// the id of the last entry it took, the id it went live after, or the newest id
    /// its catch-up reaches. Entries from `cursor` on are above it; what it misses
    /// in short starts above it.
    pub(super) read: u64,
    /// What it missed in short (it fell behind under `LagPolicy::Conflate`, or resumed
    /// with `conflate_replay`), in id order, all up to `read`: to take before the
    /// entries from `cursor` on. Empty, and unallocated, otherwise.
    pub(super) catchup: VecDeque<Item>,
}

impl Member {
    /// Joins `newer` (what it missed in short above `read`) to what it still has to
    /// take: an older event of a key that `newer` holds goes.
    pub(super) fn join_catchup(&mut self, newer: Vec<Item>) {
        if !self.catchup.is_empty() {
            let keys: HashSet<&str> = newer.iter().filter_map(|item| item.1.as_deref()).collect();
            self.catchup
                .retain(|item| item.1.as_deref().is_none_or(|key| !keys.contains(key)));
        }
        self.catchup.extend(newer);
    }
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
/// and goes on live, or, under [`LagPolicy::Conflate`](crate::hub::LagPolicy::Conflate),
/// it sends the newest event of each key it missed and every keyless one, and goes on
/// live.
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
    pub(super) hub: Arc<HubInner>,
    pub(super) members: Vec<Member>,
    /// Events ready to be yielded.
    pub(super) ready: VecDeque<Event>,
    /// Events with an id up to this one are never yielded: the subscriber has them.
    pub(super) after: u64,
    /// The newest id when it subscribed: where it starts without a usable id.
    pub(super) start: u64,
    resume: Resume,
    phase: Phase,
    /// Which topics have something new (set by publishers), and the waker.
    pub(super) signal: Arc<Signal>,
    /// Topics to read again though not flagged: they held more than one read took.
    pub(super) revisit: MemberSet,
    /// Set when the stream must end with this error once `ready` is drained.
    pub(super) ended: Option<SubscriptionError>,
    pub(super) finished: bool,
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
                    read: 0,
                    catchup: VecDeque::new(),
                })
                .collect(),
            ready: VecDeque::new(),
            after: start,
            start,
            resume,
            phase: Phase::Covering,
            signal: Arc::new(Signal::new(count)),
            revisit: MemberSet::all(count),
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
        if self.members.is_empty() {
            // No topic: nothing to miss, nothing to read.
            let start = self.start;
            self.go_live(start);
            return true;
        }
        let now = Instant::now();
        // Every topic's local history holds all of its events after `complete`.
        let mut complete = 0;
        for (index, member) in self.members.iter_mut().enumerate() {
            let mut state = member.topic.lock();
            state.tidy(&self.hub.config, now);
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
        let known = id >= self.hub.first && id < newest;
        if self.hub.config.conflate_replay
            && matches!(self.resume, Resume::After(_))
            && known
            && self.go_conflated(id)
        {
            return true;
        }
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
                self.phase = Phase::Replaying(self.replay(id, complete));
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
    pub(super) fn reset(&mut self, reason: GapReason, complete: u64) -> bool {
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
            member.read = after;
            let replayed = member.live_from.saturating_sub(member.cursor);
            crate::metrics::hub_replayed(if after < self.start { replayed } else { 0 }, false);
        }
        self.revisit.fill();
        self.phase = Phase::Live;
    }

    /// Goes live after `after` with what it missed in short, from every topic's key
    /// index; `false` (and nothing changed) if one of them cannot serve it.
    fn go_conflated(&mut self, after: u64) -> bool {
        let mut parts = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let state = member.topic.lock();
            match state.conflated_after(after) {
                Some(items) => parts.push((items, state.head(), state.newest_id())),
                None => {
                    // The index let go of what it needs (a topic watched only since, on
                    // a shared log, is read from the log instead).
                    if state.covered_after.is_some_and(|covered| covered <= after) {
                        member
                            .topic
                            .conflate_fallbacks
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    return false;
                }
            }
        }
        self.after = after;
        for (member, (items, head, newest)) in self.members.iter_mut().zip(parts) {
            crate::metrics::hub_replayed(items.len() as u64, false);
            member.catchup = items.into();
            member.cursor = head;
            member.read = after.max(newest);
            member.topic.conflated.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(after, "hub subscriber resumes in short");
        self.revisit.fill();
        self.phase = Phase::Live;
        true
    }

    /// Goes live after `upto` once a replay in short from the shared log read, for each
    /// topic, `logged`: what the topic's key index holds above `upto` joins it, and
    /// replaces what the log gave of the same keys.
    fn go_live_conflated(&mut self, upto: u64, logged: Vec<Vec<Item>>) {
        for (member, logged) in self.members.iter_mut().zip(logged) {
            let state = member.topic.lock();
            // Every id the log gave is at most `upto`, below those of the index.
            member.catchup = logged.into();
            member.read = upto;
            match state.conflated_after(upto) {
                Some(local) => {
                    member.cursor = state.head();
                    member.read = upto.max(state.newest_id());
                    drop(state);
                    member.join_catchup(local);
                }
                None => member.cursor = state.position_after(upto),
            }
            member.topic.conflated.fetch_add(1, Ordering::Relaxed);
        }
        self.revisit.fill();
        self.phase = Phase::Live;
    }

    /// A replay from the shared log of what its topics hold in `after + 1 ..= upto`: in
    /// short with `conflate_replay`.
    fn replay(&self, after: u64, upto: u64) -> Replay {
        let config = &self.hub.config;
        let bounds = config.conflate_replay.then_some(Bounds {
            keys: config.conflate_keys,
            keyless_events: config.queue_events,
            keyless_bytes: config.queue_bytes,
        });
        let topics = self.members.iter().map(|m| m.topic.clone());
        Replay::new(topics, after, upto, bounds)
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
                            match replay.take_conflated() {
                                Some(logged) => self.go_live_conflated(upto, logged),
                                None => self.go_live(upto),
                            }
                            if ready || !self.ready.is_empty() {
                                return true;
                            }
                        }
                        Poll::Ready(Err(reason)) => {
                            let upto = replay.upto;
                            if let GapReason::Lost { from } = reason {
                                // The log lost events and began again after `from`: the
                                // reset event (not for one that held nothing, subscribed
                                // before the hub knew where the log stood), then what the
                                // log holds since.
                                if self.after != self.hub.first {
                                    let reset = self.hub.reset_event(reason, Some(from));
                                    self.ready.push_back(reset);
                                }
                                self.after = from;
                                if from < upto {
                                    self.phase = Phase::Replaying(self.replay(from, upto));
                                } else {
                                    self.go_live(from);
                                }
                                continue;
                            }
                            return self.reset(reason, upto);
                        }
                    }
                }
                Phase::Live => return self.read_live(cx),
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
        self.hub.metrics.unsubscribed(self.topics());
        for member in &self.members {
            self.hub.leave(&member.topic, member.waiting);
        }
        tracing::debug!(
            topics = ?self.members.iter().map(|m| &*m.topic.name).collect::<Vec<_>>(),
            "hub subscriber left"
        );
    }
}
