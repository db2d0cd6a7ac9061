//! What a shared log reads back, applied to the hub in order: events from every
//! instance, the confirmation that a topic is watched, where the log stands.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::Poll;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::engine::HubInner;
use super::log::{Delivery, GapReason};
use crate::Event;

/// Connects a hub's shared log to the hub, if it has one. The log starts its tasks (and
/// one that applies what it reads, from [`Applier::spawn`]) on its first use inside a
/// runtime, and again when the runtime that ran them is gone.
/// The log's tasks stop when the log is dropped with the hub.
pub(super) fn start(inner: &Arc<HubInner>) {
    if let Some(log) = &inner.log {
        log.attach(Applier {
            hub: Arc::downgrade(inner),
        });
    }
}

/// Batches of deliveries a shared log may have in flight to the hub.
const DELIVERIES: usize = 64;

/// How a shared log reaches its hub without keeping it alive.
#[derive(Clone, Debug)]
pub(crate) struct Applier {
    hub: Weak<HubInner>,
}

impl Applier {
    /// Spawns, on the current runtime, the task that applies what the log reads, in
    /// order, until `stop` is cancelled, the hub is gone, or every sender is dropped.
    /// Call it inside a runtime.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn spawn(
        &self,
        stop: CancellationToken,
    ) -> (mpsc::Sender<Delivery>, JoinHandle<()>) {
        let (deliveries, received) = mpsc::channel(DELIVERIES);
        let task = tokio::spawn(apply_deliveries(self.hub.clone(), received, stop));
        (deliveries, task)
    }

    /// The newest id the hub has applied (0 once the hub is gone): a log whose tasks
    /// start again reads on from there, so nothing it had read but the hub had not
    /// applied is lost.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn applied(&self) -> u64 {
        self.hub
            .upgrade()
            .map_or(0, |hub| hub.watermark.load(Ordering::Acquire))
    }
}

/// Applies what the shared log reads back, in order, until the log stops (`stop`), the
/// hub is dropped, or the log's reader is gone.
async fn apply_deliveries(
    hub: Weak<HubInner>,
    mut deliveries: mpsc::Receiver<Delivery>,
    stop: CancellationToken,
) {
    let mut stopped = std::pin::pin!(stop.cancelled());
    loop {
        let delivery = std::future::poll_fn(|cx| {
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            deliveries.poll_recv(cx)
        })
        .await;
        let (Some(delivery), Some(hub)) = (delivery, hub.upgrade()) else {
            return;
        };
        match delivery {
            Delivery::Events(events) => {
                for (id, topic, key, event) in events {
                    hub.deliver(&topic, id, key.as_deref(), event);
                }
            }
            Delivery::Covered {
                topic,
                generation,
                after,
            } => hub.covered(&topic, generation, after),
            Delivery::Advance(id) => hub.advance(id),
            Delivery::Reset { id } => hub.reset_all(id),
        }
    }
}

impl HubInner {
    /// Appends an event the shared log numbered (with its conflation key); ignores an id
    /// that is not newer than every id already delivered.
    pub(super) fn deliver(&self, name: &str, id: u64, key: Option<&str>, event: Event) {
        let key = self.key(key);
        let last = self.watermark.load(Ordering::Acquire);
        if id <= last {
            tracing::warn!(
                topic = name,
                id,
                last,
                "hub dropped an event delivered out of order"
            );
            return;
        }
        let mut waiters = None;
        // A topic nobody here reads is not kept.
        if let Some(topic) = self.find(name) {
            let mut state = topic.lock();
            if !state.removed {
                let event = event.with_trusted_id(itoa::Buffer::new().format(id));
                state.push(id, event, key, &self.config, Instant::now());
                waiters = Some(topic.take_waiters(&mut state, &self.flagging));
                drop(state);
                topic.published.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.next.store(id, Ordering::Relaxed);
        self.watermark.store(id, Ordering::Release);
        if let Some(waiters) = waiters {
            waiters.wake();
        }
        // The budget and the age of history, as a local publish tends them.
        self.tend(Instant::now(), false, id.is_multiple_of(64));
    }

    /// The shared log stands at `id`: subscribers without a `Last-Event-ID` start there.
    pub(super) fn advance(&self, id: u64) {
        if id > self.watermark.load(Ordering::Acquire) {
            self.next.store(id, Ordering::Relaxed);
            self.watermark.store(id, Ordering::Release);
        }
    }

    /// The shared log lost events and began again above `id`: every topic gets the reset
    /// event under `id` (data `lost`), so its live subscribers learn that they may have
    /// missed events, and go on with those that follow.
    pub(super) fn reset_all(&self, id: u64) {
        let last = self.watermark.load(Ordering::Acquire);
        if id <= last {
            tracing::warn!(
                id,
                last,
                "hub ignored a reset of its shared log below its newest id"
            );
            return;
        }
        let event = self.reset_event(GapReason::Lost { from: id }, Some(id));
        let topics: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let now = Instant::now();
        let mut woken = Vec::with_capacity(topics.len());
        for topic in &topics {
            let mut state = topic.lock();
            if !state.removed {
                state.push(id, event.clone(), None, &self.config, now);
                woken.push(topic.take_waiters(&mut state, &self.flagging));
            }
        }
        self.next.store(id, Ordering::Relaxed);
        self.watermark.store(id, Ordering::Release);
        woken.into_iter().for_each(super::waiters::Waiters::wake);
        self.tend(now, false, true);
        tracing::debug!(id, topics = topics.len(), "hub topics got the reset event");
    }

    /// The shared log delivers every event of `topic` after `after`, for the watch of
    /// `generation`.
    pub(super) fn covered(&self, name: &str, generation: u64, after: u64) {
        let Some(topic) = self.find(name) else { return };
        let waiters = {
            let mut state = topic.lock();
            if state.generation != generation {
                return;
            }
            state.covered_after = Some(after);
            topic.take_waiters(&mut state, &self.flagging)
        };
        tracing::debug!(topic = name, after, "hub topic covered by its shared log");
        waiters.wake();
    }
}
