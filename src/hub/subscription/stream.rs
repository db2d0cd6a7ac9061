//! The subscription stream: where it starts, and its phases.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::time::Instant;

use super::SubscriptionError;
use super::replay::Replay;
use crate::hub::engine::HubInner;
use crate::hub::log::{GapReason, Page, PageFuture};
use crate::hub::signal::Signal;
use crate::hub::topic::{Topic, WaiterKey};
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
    pub(super) revisit: Vec<bool>,
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
            let replayed = member.live_from.saturating_sub(member.cursor);
            crate::metrics::hub_replayed(if after < self.start { replayed } else { 0 }, false);
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
                                    let topics = self.members.iter().map(|m| m.topic.name.clone());
                                    self.phase = Phase::Replaying(Replay::new(topics, from, upto));
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
        tracing::debug!(topics = self.members.len(), "hub subscriber left");
    }
}
