//! The locks, atomics and runtime that the hub's wake-ups and the batching clock use:
//! std's and tokio's, or, when the crate is built with
//! `RUSTFLAGS="--cfg tower_sse_loom"`, loom's models of them, so that the model-checking
//! tests (`hub/loom.rs`, `layer/stream/loom.rs`) explore the interleavings of the real
//! code.
//!
//! Only what those protocols share between threads goes through here: the hub's order
//! lock, id, watermark and flagging count, each topic's state and waiter round, a
//! subscription's flags and waker, and the batching ticker and slots.

#[cfg(not(tower_sse_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(not(tower_sse_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock};
#[cfg(not(tower_sse_loom))]
pub(crate) use tokio::runtime::Handle;

#[cfg(tower_sse_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(tower_sse_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock};
#[cfg(tower_sse_loom)]
pub(crate) use model::Handle;

/// The timer of a batching clock: ticks every `delay`, the first a `delay` from now; a
/// tick that came late moves the next ones.
#[cfg(not(tower_sse_loom))]
pub(crate) fn interval(delay: std::time::Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + delay, delay);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

#[cfg(tower_sse_loom)]
pub(crate) use model::interval;

/// What stands for tokio's runtime and timer in the models.
#[cfg(tower_sse_loom)]
mod model {
    use std::cell::Cell;
    use std::future::Future;
    use std::time::Duration;

    use loom::sync::Mutex;
    use loom::thread::JoinHandle;

    loom::thread_local! {
        /// Whether the runtime of this model thread is shutting down.
        static SHUT_DOWN: Cell<bool> = Cell::new(false);
    }

    loom::lazy_static! {
        /// The threads the tasks spawned in this execution run on.
        static ref TASKS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());
    }

    /// The model's runtime: a task spawned on it runs on a loom thread of its own; on a
    /// runtime that is shutting down it is dropped at once, in the spawning thread, as
    /// tokio drops it.
    #[derive(Clone, Debug)]
    pub(crate) struct Handle {
        shut_down: bool,
    }

    impl Handle {
        /// The runtime of this model thread (there always is one).
        pub(crate) fn try_current() -> Result<Handle, std::convert::Infallible> {
            Ok(Handle {
                shut_down: SHUT_DOWN.with(Cell::get),
            })
        }

        /// From now on this model thread's runtime is shutting down.
        #[cfg(test)]
        pub(crate) fn shut_down() {
            SHUT_DOWN.with(|s| s.set(true));
        }

        /// Waits for every task spawned so far to end.
        #[cfg(test)]
        pub(crate) fn join_all() {
            loop {
                let Some(task) = TASKS.lock().unwrap().pop() else {
                    return;
                };
                task.join().unwrap();
            }
        }

        pub(crate) fn spawn<F>(&self, future: F)
        where
            F: Future<Output = ()> + Send + 'static,
        {
            if self.shut_down {
                drop(future);
                return;
            }
            let task = loom::thread::spawn(move || loom::future::block_on(future));
            TASKS.lock().unwrap().push(task);
        }
    }

    /// The model's timer: every tick is due at once, so the clock ticks whenever the
    /// model schedules it, before, between or after anything the streams do.
    pub(crate) fn interval(_: Duration) -> Interval {
        Interval
    }

    #[derive(Debug)]
    pub(crate) struct Interval;

    impl Interval {
        pub(crate) async fn tick(&mut self) {}
    }
}

/// What the models share: how they are run, and a task that parks its model thread.
#[cfg(all(test, tower_sse_loom))]
pub(crate) mod check {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::task::{Wake, Waker};

    use loom::sync::Notify;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};

    /// Preemptions per execution unless `LOOM_MAX_PREEMPTIONS` says otherwise: the bugs
    /// loom finds in practice need two or three, and each one more multiplies the run.
    const PREEMPTIONS: usize = 3;

    /// Explores `model` with loom; says how many executions it took (shown with
    /// `--nocapture`).
    pub(crate) fn model<F>(model: F)
    where
        F: Fn() + Sync + Send + 'static,
    {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(PREEMPTIONS);
        }
        let executions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = executions.clone();
        builder.check(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            model();
        });
        println!(
            "{}: {} executions, at most {} preemptions each",
            std::thread::current().name().unwrap_or("model"),
            executions.load(Ordering::Relaxed),
            builder.preemption_bound.unwrap_or(usize::MAX),
        );
    }

    /// A task's waker for a model thread that polls by hand: [`wait`](Task::wait) parks
    /// the thread until the waker is woken, so a wake-up that never comes is a deadlock,
    /// which loom reports. Counts its wake-ups.
    #[derive(Debug)]
    pub(crate) struct Task {
        notify: Notify,
        woken: AtomicBool,
        wakes: AtomicUsize,
    }

    impl Task {
        pub(crate) fn new() -> Arc<Self> {
            Arc::new(Task {
                notify: Notify::new(),
                woken: AtomicBool::new(false),
                wakes: AtomicUsize::new(0),
            })
        }

        pub(crate) fn waker(self: &Arc<Self>) -> Waker {
            Waker::from(self.clone())
        }

        /// Waits for a wake-up after a poll answered `Pending`. A task woken already
        /// (by its own poll, to be polled again at once) yields first, so that a poll
        /// waiting for another thread to move on lets it.
        pub(crate) fn wait(&self) {
            if self.woken.swap(false, Ordering::SeqCst) {
                loom::thread::yield_now();
            } else {
                self.notify.wait();
            }
        }

        /// How often the task was woken.
        pub(crate) fn wakes(&self) -> usize {
            self.wakes.load(Ordering::SeqCst)
        }
    }

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.woken.store(true, Ordering::SeqCst);
            self.notify.notify();
        }
    }
}
