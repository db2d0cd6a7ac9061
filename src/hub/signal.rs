//! How publishers tell a subscription which of its topics have something new.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::task::Waker;

use super::member_set::MemberSet;
use crate::sync::{AtomicU64, Mutex};

/// One subscription's flags, a bit per topic it reads, and its waker.
///
/// A subscription that has read everything of a topic parks on it; the next publish on
/// that topic takes the parked subscriptions, and, once it has released every lock, sets
/// the topic's flag for each and wakes it. The subscription then visits only the flagged
/// topics (and those it left unfinished), however many it subscribed to: it finds them
/// a word of 64 flags at a time.
#[derive(Debug)]
pub(crate) struct Signal {
    flags: Box<[AtomicU64]>,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Every topic starts flagged: the first read looks at all of them.
    pub(crate) fn new(topics: usize) -> Self {
        let all = MemberSet::all(topics);
        Signal {
            flags: all.words().iter().map(|w| AtomicU64::new(*w)).collect(),
            waker: Mutex::new(None),
        }
    }

    pub(crate) fn mark(&self, topic: usize) {
        let (word, bit) = MemberSet::place(topic);
        self.flags[word].fetch_or(bit, Ordering::SeqCst);
    }

    /// The flags of word `word` (topics `64 * word ..`); clears them.
    pub(crate) fn take(&self, word: usize) -> u64 {
        let flags = &self.flags[word];
        if flags.load(Ordering::Relaxed) == 0 {
            0
        } else {
            flags.swap(0, Ordering::SeqCst)
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.flags
            .iter()
            .any(|flags| flags.load(Ordering::SeqCst) != 0)
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
