//! A subscriber's stream over one or several topics.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::topic::{Cut, Topic};
use super::{HubInner, Lagged};
use crate::Event;

/// Most entries taken from one topic under one lock.
const BATCH: usize = 256;

/// One topic of a subscription.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) topic: Arc<Topic>,
    pub(crate) slot: usize,
    /// Position of the next entry to take.
    pub(crate) cursor: u64,
}

/// The events of one or several topics, in id order: first those the subscriber missed
/// (when it came back with a `Last-Event-ID` history still covers), then live ones, with
/// no gap and no duplicate.
///
/// Serve it with [`SseLayer`](crate::SseLayer) or [`Sse`](crate::Sse): every event is the
/// very `Bytes` the hub encoded at publish time, shared by all subscribers. When the
/// subscriber falls too far behind, the stream yields [`Lagged`] and ends (the client
/// reconnects with its `Last-Event-ID` and catches up from history), or, under
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
    pub(crate) hub: Arc<HubInner>,
    pub(crate) members: Vec<Member>,
    /// Events taken from the topics and not yet yielded, with their ids.
    pub(crate) ready: VecDeque<Event>,
    /// Set when the stream must end with `Lagged` once `ready` is drained.
    pub(crate) ended: bool,
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

    /// Takes what the topics hold for this subscriber into `ready`, in id order.
    /// Returns `true` if it took anything (or the stream must end).
    fn fill(&mut self, cx: &mut Context<'_>) -> bool {
        let many = self.members.len() > 1;
        loop {
            let watermark = self.hub.watermark.load(Ordering::Acquire);
            let mut taken: Vec<(u64, usize, Event)> = Vec::new();
            // Entries above `bound` stay for the next round: a topic that hit the batch
            // limit may hold ids below those of another topic's later entries.
            let mut bound = u64::MAX;
            for (index, member) in self.members.iter_mut().enumerate() {
                let mut state = member.topic.lock();
                let base = state.base;
                let head = state.head();
                let slot = &mut state.slots[member.slot];
                match slot.cut {
                    Some(Cut::Ended) => {
                        self.ended = true;
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
                        self.ready.push_back(self.hub.reset_event("lagged", None));
                        tracing::debug!(topic = %member.topic.name, missed, "hub subscriber skipped ahead");
                        return true;
                    }
                    None => {}
                }
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
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
                    self.ended = true;
                    return true;
                }
                let mut position = member.cursor;
                let mut count = 0;
                while position < head && count < BATCH {
                    let entry = state.entry(position).expect("position within history");
                    if entry.id > watermark {
                        break;
                    }
                    taken.push((entry.id, index, entry.event.clone()));
                    position += 1;
                    count += 1;
                }
                if count == BATCH {
                    bound = bound.min(taken.last().map_or(u64::MAX, |t| t.0));
                }
            }
            if many {
                taken.sort_by_key(|t| t.0);
            }
            let mut delivered = vec![0u64; self.members.len()];
            for (id, index, event) in taken {
                if id > bound {
                    break;
                }
                self.members[index].cursor += 1;
                delivered[index] += 1;
                self.ready.push_back(event);
            }
            for (member, count) in self.members.iter().zip(delivered) {
                if count > 0 {
                    member.topic.delivered.fetch_add(count, Ordering::Relaxed);
                }
            }
            if !self.ready.is_empty() {
                return true;
            }
            // Nothing: sleep, unless a publish moved the watermark while we looked (its
            // wake-up may have missed the wakers registered above).
            if self.hub.watermark.load(Ordering::Acquire) == watermark {
                return false;
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Event, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if this.ready.is_empty() && !this.ended && !this.fill(cx) {
            return Poll::Pending;
        }
        if let Some(event) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        this.finished = true;
        Poll::Ready(Some(Err(Lagged)))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for member in &self.members {
            let removed = member.topic.lock().slots.try_remove(member.slot);
            if removed.is_some_and(|slot| slot.cut != Some(Cut::Ended)) {
                member.topic.subscribers.fetch_sub(1, Ordering::Relaxed);
            }
        }
        tracing::debug!(topics = self.members.len(), "hub subscriber left");
        self.hub.forget_idle_topics(&self.members);
    }
}
