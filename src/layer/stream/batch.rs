//! One cadence for every stream of a service that batches its writes.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Wake, Waker};
use std::time::Duration;

use crate::sync::{self, AtomicBool, AtomicU64, Handle, Mutex, MutexGuard};

/// Longest write delay a layer accepts.
pub(crate) const MAX_BATCH_DELAY: Duration = Duration::from_secs(1);

/// `Slot::since` when no event has woken the stream since it last wrote.
const NONE: u64 = u64::MAX;

/// A clock that ticks every `delay` while some stream waits for it, and wakes the
/// streams that wait at each tick.
///
/// A stream that has a frame ready notes the current tick and waits for the next one,
/// so no frame waits longer than `delay`. The cost is one timer for the whole layer,
/// running only while some stream holds a frame, and one wake-up per holding stream per
/// tick: idle streams cost nothing, and a stream that receives many events between two
/// ticks is woken once, not once per event (see [`Slot`]).
///
/// The clock runs on the runtime of a stream that waits for it. When that runtime goes
/// away (a layer shared between runtimes), the clock's [`Running`] guard says so and
/// wakes the streams that waited: each queues again, and the first starts a new clock
/// on its own runtime.
pub(crate) struct Ticker {
    delay: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tick: u64,
    waiting: Vec<Arc<Slot>>,
    /// The clock task that runs, by number, if one does.
    clock: Option<u64>,
    started: u64,
}

impl Ticker {
    pub(crate) fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Ticker {
            delay,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ticks so far, clocks started so far, whether one runs, and the streams waiting.
    #[cfg(test)]
    pub(crate) fn observe(&self) -> (u64, u64, bool, usize) {
        let state = self.lock();
        (
            state.tick,
            state.started,
            state.clock.is_some(),
            state.waiting.len(),
        )
    }
}

/// One batching stream's place at its layer's [`Ticker`].
///
/// The stream polls its inner body with [`Slot::waker`]: an event that arrives then
/// does not wake the stream's task, it puts the stream on the ticker's list, and the
/// task runs at the next tick to write everything that arrived meanwhile. So a stream
/// costs one wake-up per write, not one per event plus one per write.
pub(crate) struct Slot {
    ticker: Arc<Ticker>,
    /// The runtime that runs the ticker; none outside tokio, where nothing is deferred.
    runtime: Option<Handle>,
    /// The task of the stream, to wake at the tick.
    task: Mutex<Option<Waker>>,
    /// On the ticker's list already.
    queued: AtomicBool,
    /// The tick at which an event first woke the stream since it last wrote.
    since: AtomicU64,
}

impl Slot {
    pub(crate) fn new(ticker: Arc<Ticker>) -> Arc<Self> {
        Arc::new(Slot {
            ticker,
            runtime: Handle::try_current().ok(),
            task: Mutex::new(None),
            queued: AtomicBool::new(false),
            since: AtomicU64::new(NONE),
        })
    }

    /// The waker to poll the inner body with; `task` is the waker woken at the tick.
    pub(crate) fn waker(self: &Arc<Self>, task: &Waker) -> Waker {
        let mut slot_task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot_task.as_ref().is_some_and(|t| t.will_wake(task)) {
            *slot_task = Some(task.clone());
        }
        Waker::from(self.clone())
    }

    /// The tick a frame taken now has waited since: the one at which an event woke the
    /// stream, or the current one.
    pub(crate) fn held_since(&self) -> u64 {
        match self.since.swap(NONE, Ordering::AcqRel) {
            NONE => self.ticker.lock().tick,
            tick => tick,
        }
    }

    /// The stream writes what it has: events that wake it from now on wait anew.
    pub(crate) fn writing(&self) {
        self.since.store(NONE, Ordering::Release);
    }

    /// Whether the clock has ticked since `held`; if not, the task is woken when it does.
    /// Outside a tokio runtime there is no clock, and the answer is always yes.
    /// (The slot already knows the task from [`Slot::waker`].)
    pub(crate) fn poll_ticked(self: &Arc<Self>, held: u64) -> bool {
        if self.runtime.is_none() {
            return true;
        }
        let start = {
            let mut state = self.ticker.lock();
            if state.tick != held {
                return true;
            }
            self.queue(&mut state)
        };
        self.start_clock(start);
        false
    }

    /// Puts the stream on the ticker's list (once); gives the number of a clock to
    /// start, if none runs.
    fn queue(self: &Arc<Self>, state: &mut State) -> Option<u64> {
        if !self.queued.swap(true, Ordering::AcqRel) {
            state.waiting.push(self.clone());
        }
        if state.clock.is_some() || self.runtime.is_none() {
            return None;
        }
        state.started += 1;
        state.clock = Some(state.started);
        Some(state.started)
    }

    /// Spawns the clock `start` on the stream's runtime, with no lock held: on a runtime
    /// that is shutting down the task is dropped at once, and its guard takes the lock.
    fn start_clock(&self, start: Option<u64>) {
        if let (Some(number), Some(runtime)) = (start, &self.runtime) {
            let guard = Running {
                ticker: Arc::downgrade(&self.ticker),
                number,
            };
            runtime.spawn(run(guard, self.ticker.delay));
        }
    }

    /// The clock took the slot off its list: an event or a poll queues it again.
    ///
    /// A swap where a store would do: the flag's other writes are swaps, and loom lets
    /// a swap read past a plain store that raced an earlier one, which the memory model
    /// forbids (tokio-rs/loom#254), so the model check of this clock would report a
    /// lost wake-up that cannot happen.
    fn dequeued(&self) {
        self.queued.swap(false, Ordering::Release);
    }

    fn wake_task(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Wake for Slot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// An event arrived: the stream's task runs at the next tick.
    fn wake_by_ref(self: &Arc<Self>) {
        if self.runtime.is_none() {
            self.wake_task();
            return;
        }
        let start = {
            let mut state = self.ticker.lock();
            let _ =
                self.since
                    .compare_exchange(NONE, state.tick, Ordering::AcqRel, Ordering::Acquire);
            self.queue(&mut state)
        };
        self.start_clock(start);
    }
}

/// Owned by a clock task: however the task ends (nobody waiting, or its runtime dropped
/// with it), the ticker learns that no clock runs, and streams left waiting are woken
/// to queue again (and start a new clock on their own runtime).
struct Running {
    ticker: Weak<Ticker>,
    number: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(ticker) = self.ticker.upgrade() else {
            return;
        };
        let waiting = {
            let mut state = ticker.lock();
            if state.clock != Some(self.number) {
                return;
            }
            state.clock = None;
            std::mem::take(&mut state.waiting)
        };
        for slot in waiting {
            slot.dequeued();
            slot.wake_task();
        }
    }
}

/// Ticks while some stream waits; stops at the first tick nobody waited for.
async fn run(guard: Running, delay: Duration) {
    let mut interval = sync::interval(delay);
    loop {
        interval.tick().await;
        let Some(ticker) = guard.ticker.upgrade() else {
            return;
        };
        let waiting = {
            let mut state = ticker.lock();
            state.tick += 1;
            if state.waiting.is_empty() {
                state.clock = None;
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        for slot in waiting {
            slot.dequeued();
            slot.wake_task();
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

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(tower_sse_loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};
    use std::time::Duration;

    use super::{Slot, Ticker};

    const DELAY: Duration = Duration::from_millis(20);

    /// A task's waker that counts its wake-ups.
    #[derive(Default)]
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Task {
        fn wakes(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A frame held at a tick waits for the next one; events that arrive meanwhile only
    /// mark the slot; the tick wakes the task once; the clock stops at the first tick
    /// nobody waits for. (Between ticks, never on one: the test and the clock would
    /// wake at the same instant, in either order.)
    #[tokio::test(start_paused = true)]
    async fn a_held_frame_waits_for_the_next_tick_which_wakes_the_task_once() {
        let ticker = Ticker::new(DELAY);
        let slot = Slot::new(ticker.clone());
        let task = Arc::new(Task::default());
        let inner = slot.waker(&Waker::from(task.clone()));

        let held = slot.held_since();
        assert!(!slot.poll_ticked(held), "no tick since the frame was taken");
        inner.wake_by_ref();
        inner.wake_by_ref();
        assert!(!slot.poll_ticked(held));
        assert_eq!(task.wakes(), 0, "events wait for the tick");
        assert_eq!(
            ticker.observe(),
            (0, 1, true, 1),
            "one clock, the slot listed once"
        );

        tokio::time::sleep(DELAY + DELAY / 2).await;
        assert_eq!(task.wakes(), 1);
        assert!(slot.poll_ticked(held));
        slot.writing();
        assert_eq!(ticker.observe(), (1, 1, true, 0));

        tokio::time::sleep(DELAY).await;
        assert_eq!(ticker.observe(), (2, 1, false, 0), "the clock stopped");
        assert_eq!(task.wakes(), 1);
    }

    /// An event that wakes an idle stream waits from the tick it arrived at: the frame
    /// the stream then takes is written at the next tick, not one later.
    #[tokio::test(start_paused = true)]
    async fn a_frame_waits_from_the_tick_its_event_arrived_at() {
        let ticker = Ticker::new(DELAY);
        let slot = Slot::new(ticker.clone());
        let task = Arc::new(Task::default());
        let inner = slot.waker(&Waker::from(task.clone()));

        inner.wake_by_ref();
        tokio::time::sleep(DELAY + DELAY / 2).await;
        assert_eq!(task.wakes(), 1, "woken at the tick");
        // Taken after the tick, the frame counts from the tick its event came at.
        let held = slot.held_since();
        assert_eq!(held, 0);
        assert!(slot.poll_ticked(held));
    }

    /// Outside a tokio runtime there is no clock: nothing waits, every event wakes the
    /// task at once.
    #[test]
    fn outside_a_runtime_nothing_waits() {
        let ticker = Ticker::new(DELAY);
        let slot = Slot::new(ticker.clone());
        let task = Arc::new(Task::default());
        let inner = slot.waker(&Waker::from(task.clone()));
        assert!(slot.poll_ticked(slot.held_since()));
        inner.wake_by_ref();
        assert_eq!(task.wakes(), 1);
        assert_eq!(ticker.observe(), (0, 0, false, 0));
    }
}
