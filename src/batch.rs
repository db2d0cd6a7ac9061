//! One cadence for every stream of a layer that batches its writes.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

/// Longest write delay a layer accepts.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(1);

/// A clock that ticks every `delay` while some stream waits for it, and wakes the
/// streams that wait at each tick.
///
/// A stream that has a frame ready notes the current tick and waits for the next one,
/// so no frame waits longer than `delay`. The cost is one timer for the whole layer,
/// running only while some stream holds a frame, and one waker per holding stream per
/// tick: idle streams cost nothing, and a stream that receives many events between two
/// ticks is woken once, not once per event.
pub(crate) struct Ticker {
    delay: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tick: u64,
    waiting: Vec<Waker>,
    running: bool,
}

impl Ticker {
    pub(crate) fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Ticker {
            delay,
            state: Mutex::new(State::default()),
        })
    }

    pub(crate) fn delay(&self) -> Duration {
        self.delay
    }

    /// The current tick: a frame held now goes out once the tick has moved past it.
    pub(crate) fn now(&self) -> u64 {
        self.lock().tick
    }

    /// Whether the clock has ticked since `held`; if not, the task is woken when it does.
    /// Outside a tokio runtime there is no clock, and the answer is always yes.
    pub(crate) fn poll_ticked(self: &Arc<Self>, held: u64, cx: &mut Context<'_>) -> bool {
        let mut state = self.lock();
        if state.tick != held {
            return true;
        }
        if !state.running {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return true;
            };
            state.running = true;
            runtime.spawn(run(Arc::downgrade(self), self.delay));
        }
        if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            state.waiting.push(cx.waker().clone());
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ticks while some stream waits; stops at the first tick nobody waited for.
async fn run(ticker: Weak<Ticker>, delay: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + delay, delay);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(ticker) = ticker.upgrade() else {
            return;
        };
        let waiting = {
            let mut state = ticker.lock();
            state.tick += 1;
            if state.waiting.is_empty() {
                state.running = false;
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }
}

impl fmt::Debug for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticker")
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}
