//! Streams the connection stopped taking frames from: found by one sweep per service
//! the layer wraps, since nothing inside a body runs while the connection does not poll
//! it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::tracker::Tracker;
use crate::EndReason;

/// The streams of a service whose connection might stop polling them, and the sweep that
/// ends those it has not polled for `timeout`.
///
/// A healthy stream is polled at least once per heartbeat interval: its heartbeat timer
/// wakes it, and the connection polls it as soon as it can write. When the connection
/// cannot write (a client that stopped reading, or an HTTP/2 stream whose window the
/// client never opens), it stops polling the body, and the body cannot act on its own:
/// only something outside it can report its end and wake its task, so that the body
/// ends (with an error, which resets the stream) if the connection polls it again. Its
/// place under the limit stays taken until the connection drops it: until then the
/// connection, its socket and buffers are still held.
///
/// The sweep runs on the runtime of a stream that needs it. When that runtime goes
/// away (a layer shared between runtimes), the sweep's [`Sweeping`] guard says so, and
/// the next stream watched or polled starts a new one on its own runtime.
pub(crate) struct StallWatch {
    timeout: Duration,
    start: Instant,
    state: Mutex<State>,
    /// A sweep task is alive: read on every poll of a watched stream, without the lock.
    sweeping: AtomicBool,
}

#[derive(Default)]
struct State {
    streams: Slab<Arc<Polls>>,
    /// The sweep that runs, by number, if one does.
    sweep: Option<u64>,
    started: u64,
}

impl StallWatch {
    pub(crate) fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(StallWatch {
            timeout,
            start: Instant::now(),
            state: Mutex::new(State::default()),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Milliseconds since the watch started: what a body records when it is polled.
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Watches the stream whose end `tracker` reports, until the [`Watched`] returned
    /// is dropped; starts the sweep if it is not running (outside a tokio runtime
    /// nothing is watched).
    pub(crate) fn watch(self: &Arc<Self>, tracker: &Arc<Tracker>) -> Option<Watched> {
        let polls = Arc::new(Polls {
            tracker: tracker.clone(),
            last_poll: AtomicU64::new(self.now_ms()),
            task: Mutex::new(None),
        });
        let runtime = Handle::try_current().ok()?;
        let (key, start) = {
            let mut state = self.lock();
            let key = state.streams.insert(polls.clone());
            (key, self.claim(&mut state))
        };
        if let Some(number) = start {
            self.spawn(&runtime, number);
        }
        Some(Watched {
            watch: self.clone(),
            key,
            polls,
            polled_by: None,
        })
    }

    /// Starts a sweep on the current runtime if none is alive (the runtime of the last
    /// one went away): called on every poll of a watched stream, one atomic load.
    fn keep_sweeping(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let start = {
            let mut state = self.lock();
            if state.streams.is_empty() {
                return;
            }
            self.claim(&mut state)
        };
        if let Some(number) = start {
            self.spawn(&runtime, number);
        }
    }

    /// The number of a new sweep to start, unless one is alive.
    fn claim(&self, state: &mut State) -> Option<u64> {
        if state.sweep.is_some() {
            return None;
        }
        state.started += 1;
        state.sweep = Some(state.started);
        self.sweeping.store(true, Ordering::Release);
        Some(state.started)
    }

    /// Spawns the sweep `number`, with no lock held: on a runtime that is shutting down
    /// the task is dropped at once, and its guard takes the lock.
    fn spawn(self: &Arc<Self>, runtime: &Handle, number: u64) {
        let guard = Sweeping {
            watch: Arc::downgrade(self),
            number,
        };
        runtime.spawn(sweep(guard, self.timeout));
    }

    /// Marks the sweep `number` as gone, if it is the one that runs.
    fn stopped(&self, state: &mut State, number: u64) {
        if state.sweep == Some(number) {
            state.sweep = None;
            self.sweeping.store(false, Ordering::Release);
        }
    }

    fn forget(&self, key: usize) {
        self.lock().streams.try_remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Owned by a sweep task: however the task ends (its last stream gone, or its runtime
/// dropped with it), the watch learns that it no longer sweeps.
struct Sweeping {
    watch: Weak<StallWatch>,
    number: u64,
}

impl Drop for Sweeping {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.upgrade() {
            watch.stopped(&mut watch.lock(), self.number);
        }
    }
}

/// Every quarter of the timeout, ends the streams not polled for the timeout; stops when
/// no stream is left to watch.
async fn sweep(guard: Sweeping, timeout: Duration) {
    let period = (timeout / 4).max(Duration::from_millis(10));
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = timeout.as_millis() as u64;
    loop {
        interval.tick().await;
        let Some(watch) = guard.watch.upgrade() else {
            return;
        };
        let now = watch.now_ms();
        let stalled: Vec<Arc<Polls>> = {
            let mut state = watch.lock();
            if state.streams.is_empty() {
                watch.stopped(&mut state, guard.number);
                return;
            }
            state
                .streams
                .iter()
                .filter(|(_, p)| !p.tracker.is_done() && now.saturating_sub(p.last_poll()) > limit)
                .map(|(_, p)| p.clone())
                .collect()
        };
        for polls in stalled {
            let _span = polls.tracker.span();
            tracing::debug!(
                ?timeout,
                "the connection stopped taking frames from an sse stream"
            );
            polls.tracker.finish(EndReason::Stalled, None);
            polls.wake();
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

/// What the watch knows of one stream: when its connection last polled it, the task
/// that did, and the tracker that reports its end.
struct Polls {
    tracker: Arc<Tracker>,
    /// When the connection last polled the body, in milliseconds since the watch's
    /// start.
    last_poll: AtomicU64,
    /// The task that last polled the body, woken when the sweep ends the stream.
    task: Mutex<Option<Waker>>,
}

impl Polls {
    fn last_poll(&self) -> u64 {
        self.last_poll.load(Ordering::Relaxed)
    }

    /// Wakes the task that last polled the body, so that the body, if the connection
    /// polls it, sees that it was ended.
    fn wake(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// One stream's place in its layer's [`StallWatch`], given up when dropped.
pub(crate) struct Watched {
    watch: Arc<StallWatch>,
    key: usize,
    polls: Arc<Polls>,
    /// The waker the watch has of the task that polls the body.
    polled_by: Option<Waker>,
}

impl Watched {
    /// Records the task that polls the body, when it changes.
    pub(crate) fn polled_by(&mut self, cx: &Context<'_>) {
        if self
            .polled_by
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return;
        }
        *self
            .polls
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        self.polled_by = Some(cx.waker().clone());
    }

    /// Records that the connection polls the body now (and keeps a sweep running).
    pub(crate) fn touch(&self) {
        self.polls
            .last_poll
            .store(self.watch.now_ms(), Ordering::Relaxed);
        self.watch.keep_sweeping();
    }

    /// The error the stream ends with once the sweep found it stalled.
    pub(crate) fn stalled(&self) -> Stalled {
        Stalled(self.watch.timeout)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watch.forget(self.key);
    }
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The error a stalled stream ends with, so that the connection resets it.
#[derive(Debug)]
pub(crate) struct Stalled(Duration);

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the connection took nothing from this event stream for {:?}",
            self.0
        )
    }
}

impl std::error::Error for Stalled {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    use super::super::tracker::Tracker;
    use super::StallWatch;
    use crate::metrics::StreamStart;

    const TIMEOUT: Duration = Duration::from_secs(4);
    const STEP: Duration = Duration::from_millis(500);

    /// A task's waker that counts its wake-ups.
    #[derive(Default)]
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tracker() -> Arc<Tracker> {
        let (observed, _meter) = StreamStart::default().into_parts();
        Arc::new(Tracker::new(None, observed))
    }

    /// A stream its connection keeps polling stays; one it stopped polling is ended as
    /// stalled at the first sweep (every quarter of the timeout) that finds it unpolled
    /// for longer than the timeout, and the task that last polled it is woken, so that
    /// the body sees it if polled again; the sweep stops once no stream is watched.
    /// (The test looks between sweeps, never on one.)
    #[tokio::test(start_paused = true)]
    async fn a_stream_not_polled_for_the_timeout_is_ended_and_its_task_woken() {
        let watch = StallWatch::new(TIMEOUT);
        let (healthy, stuck) = (tracker(), tracker());
        let healthy_watched = watch.watch(&healthy).unwrap();
        let mut stuck_watched = watch.watch(&stuck).unwrap();
        let task = Arc::new(Task::default());
        stuck_watched.polled_by(&Context::from_waker(&Waker::from(task.clone())));
        stuck_watched.touch();

        tokio::time::sleep(STEP / 2).await;
        // Up to 4.25 s: the sweep at 4 s found it unpolled for exactly the timeout.
        for _ in 0..8 {
            tokio::time::sleep(STEP).await;
            healthy_watched.touch();
        }
        assert!(!stuck.is_done(), "not more than the timeout yet");
        // 5.25 s: the sweep at 5 s ended it.
        tokio::time::sleep(2 * STEP).await;
        healthy_watched.touch();
        assert!(stuck.is_done(), "ended as stalled");
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "its task woken once");
        assert!(!healthy.is_done(), "a polled stream stays");

        drop((healthy_watched, stuck_watched));
        tokio::time::sleep(TIMEOUT / 4).await;
        assert_eq!(watch.lock().sweep, None, "the sweep stopped");
    }

    /// Outside a tokio runtime nothing is watched (and nothing could sweep).
    #[test]
    fn outside_a_runtime_nothing_is_watched() {
        let watch = StallWatch::new(TIMEOUT);
        assert!(watch.watch(&tracker()).is_none());
    }
}
