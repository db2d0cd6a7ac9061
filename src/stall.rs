//! Streams the connection stopped taking frames from: found by one sweep per layer,
//! since nothing inside a body runs while the connection does not poll it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use crate::EndReason;
use crate::report::Tracker;

/// The streams of a layer whose connection might stop polling them, and the sweep that
/// ends those it has not polled for `timeout`.
///
/// A healthy stream is polled at least once per heartbeat interval: its heartbeat timer
/// wakes it, and the connection polls it as soon as it can write. When the connection
/// cannot write (a client that stopped reading, or an HTTP/2 stream whose window the
/// client never opens), it stops polling the body, and the body cannot act on its own:
/// only something outside it can free its place under the limit and report its end.
pub(crate) struct StallWatch {
    timeout: Duration,
    start: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: Slab<Arc<Tracker>>,
    running: bool,
}

impl StallWatch {
    pub(crate) fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(StallWatch {
            timeout,
            start: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Milliseconds since the watch started: what a body records when it is polled.
    pub(crate) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Watches a stream until [`forget`](StallWatch::forget); starts the sweep if it is
    /// not running (outside a tokio runtime nothing is watched).
    pub(crate) fn watch(self: &Arc<Self>, tracker: Arc<Tracker>) -> Option<usize> {
        tracker.touch(self.now_ms());
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut state = self.lock();
        let key = state.streams.insert(tracker);
        if !state.running {
            state.running = true;
            runtime.spawn(sweep(Arc::downgrade(self), self.timeout));
        }
        Some(key)
    }

    pub(crate) fn forget(&self, key: usize) {
        self.lock().streams.try_remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every quarter of the timeout, ends the streams not polled for the timeout; stops when
/// no stream is left to watch.
async fn sweep(watch: Weak<StallWatch>, timeout: Duration) {
    let period = (timeout / 4).max(Duration::from_millis(10));
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = timeout.as_millis() as u64;
    loop {
        interval.tick().await;
        let Some(watch) = watch.upgrade() else {
            return;
        };
        let now = watch.now_ms();
        let stalled: Vec<Arc<Tracker>> = {
            let mut state = watch.lock();
            if state.streams.is_empty() {
                state.running = false;
                return;
            }
            state
                .streams
                .iter()
                .filter(|(_, t)| !t.is_done() && now.saturating_sub(t.last_poll()) > limit)
                .map(|(_, t)| t.clone())
                .collect()
        };
        for tracker in stalled {
            tracing::debug!(
                ?timeout,
                "the connection stopped taking frames from an sse stream"
            );
            tracker.finish(EndReason::Stalled, None);
        }
    }
}

impl fmt::Debug for StallWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StallWatch")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
