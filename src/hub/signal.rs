//! How publishers tell a subscription which of its topics have something new.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::task::Waker;

use crate::sync::{AtomicBool, Mutex};

/// One subscription's flags, one per topic it reads, and its waker.
///
/// A subscription that has read everything of a topic parks on it; the next publish on
/// that topic takes the parked subscriptions, and, once it has released every lock, sets
/// the topic's flag for each and wakes it. The subscription then visits only the flagged
/// topics (and those it left unfinished), however many it subscribed to.
#[derive(Debug)]
pub(crate) struct Signal {
    dirty: Box<[AtomicBool]>,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Every topic starts flagged: the first read looks at all of them.
    pub(crate) fn new(topics: usize) -> Self {
        Signal {
            dirty: (0..topics).map(|_| AtomicBool::new(true)).collect(),
            waker: Mutex::new(None),
        }
    }

    pub(crate) fn mark(&self, topic: usize) {
        self.dirty[topic].store(true, Ordering::SeqCst);
    }

    /// Whether `topic` was flagged; clears the flag.
    pub(crate) fn take(&self, topic: usize) -> bool {
        self.dirty[topic].load(Ordering::Relaxed) && self.dirty[topic].swap(false, Ordering::SeqCst)
    }

    pub(crate) fn any(&self) -> bool {
        self.dirty.iter().any(|flag| flag.load(Ordering::SeqCst))
    }

    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    pub(crate) fn take_waker(&self) -> Option<Waker> {
        self.waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
