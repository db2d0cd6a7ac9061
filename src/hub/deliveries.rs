//! What a shared log reads back, applied to the hub in order: events from every
//! instance, the confirmation that a topic is watched, where the log stands.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::engine::HubInner;
use super::log::Delivery;
use crate::Event;

/// Starts the task that applies the shared log's deliveries to `inner`, and the log's
/// own tasks; nothing without a shared log.
pub(super) fn start(inner: &Arc<HubInner>, stopped: oneshot::Receiver<()>) {
    let log = &inner.log;
    let runtime = match (log, tokio::runtime::Handle::try_current()) {
        (Some(_), Err(_)) => {
            tracing::error!("a hub on a shared log needs a tokio runtime: build it inside one");
            None
        }
        (Some(_), Ok(runtime)) => Some(runtime),
        (None, _) => None,
    };
    if let (Some(log), Some(runtime)) = (log, runtime) {
        let (deliveries, received) = mpsc::channel(DELIVERIES);
        runtime.spawn(apply_deliveries(Arc::downgrade(inner), received, stopped));
        log.start(deliveries);
    }
}

/// Batches of deliveries a shared log may have in flight to the hub.
const DELIVERIES: usize = 64;

/// Applies what the shared log reads back, in order, until the hub is dropped (which
/// closes the channel, and so stops the log's reader).
async fn apply_deliveries(
    hub: Weak<HubInner>,
    mut deliveries: mpsc::Receiver<Delivery>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let delivery = std::future::poll_fn(|cx| {
            if std::pin::Pin::new(&mut stopped).poll(cx).is_ready() {
                return std::task::Poll::Ready(None);
            }
            deliveries.poll_recv(cx)
        })
        .await;
        let (Some(delivery), Some(hub)) = (delivery, hub.upgrade()) else {
            return;
        };
        match delivery {
            Delivery::Events(events) => {
                for (id, topic, event) in events {
                    hub.deliver(&topic, id, event);
                }
            }
            Delivery::Covered {
                topic,
                generation,
                after,
            } => hub.covered(&topic, generation, after),
            Delivery::Advance(id) => hub.advance(id),
        }
    }
}

impl HubInner {
    /// Appends an event the shared log numbered; ignores an id that is not newer than
    /// every id already delivered.
    pub(super) fn deliver(&self, name: &str, id: u64, event: Event) {
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
                state.push(id, event, &self.config, Instant::now());
                waiters = Some(topic.take_waiters(&mut state));
                drop(state);
                topic.published.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.next.store(id, Ordering::Relaxed);
        self.watermark.store(id, Ordering::Release);
        if let Some(waiters) = waiters {
            waiters.wake();
        }
    }

    /// The shared log stands at `id`: subscribers without a `Last-Event-ID` start there.
    pub(super) fn advance(&self, id: u64) {
        if id > self.watermark.load(Ordering::Acquire) {
            self.next.store(id, Ordering::Relaxed);
            self.watermark.store(id, Ordering::Release);
        }
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
            topic.take_waiters(&mut state)
        };
        tracing::debug!(topic = name, after, "hub topic covered by its shared log");
        waiters.wake();
    }
}
