//! The subscriptions parked on a topic until its next event, and how a publish wakes
//! them: taken under the topic's lock, then, once every lock is released, each one's
//! flag set for the topic and its task woken.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use slab::Slab;

use super::signal::Signal;
use crate::sync::AtomicU64;

/// A subscription parked on a topic until its next event: its signal, and the topic's
/// index among the subscription's topics.
#[derive(Debug)]
pub(crate) struct Waiter {
    signal: Arc<Signal>,
    member: usize,
}

impl Waiter {
    /// Member `member` of the subscription that `signal` wakes.
    pub(crate) fn new(signal: Arc<Signal>, member: usize) -> Self {
        Waiter { signal, member }
    }
}

/// A registration in a topic's waiters: the round it was made in and its key.
pub(crate) type WaiterKey = (u64, usize);

/// Subscriptions taken from a topic's waiters; [`wake`](Waiters::wake) them outside
/// every lock.
///
/// While it holds any, it counts in the hub's `flagging`: a subscription that reads
/// that count as zero after the watermark finds every topic with an entry up to the
/// watermark flagged, and reads only the flagged ones.
#[derive(Debug)]
#[must_use = "waiters must be woken"]
pub(crate) struct Waiters<'a> {
    taken: Option<Slab<Waiter>>,
    flagging: &'a AtomicU64,
}

impl<'a> Waiters<'a> {
    /// The subscriptions `taken` from a topic's waiters (if any), counted in the hub's
    /// `flagging` until [`wake`](Waiters::wake) has flagged them all.
    pub(crate) fn new(taken: Option<Slab<Waiter>>, flagging: &'a AtomicU64) -> Self {
        if taken.is_some() {
            flagging.fetch_add(1, Ordering::SeqCst);
        }
        Waiters { taken, flagging }
    }

    /// Flags the topic for each subscription and wakes it, then leaves the hub's
    /// `flagging` count.
    pub(crate) fn wake(mut self) {
        self.flag_and_wake();
    }

    fn flag_and_wake(&mut self) {
        let Some(taken) = self.taken.take() else {
            return;
        };
        for (_, waiter) in taken {
            waiter.signal.mark(waiter.member);
            if let Some(waker) = waiter.signal.take_waker() {
                waker.wake();
            }
        }
        self.flagging.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Waiters<'_> {
    /// Waiters dropped unwoken (a panic on the way) are woken all the same: nobody stays
    /// parked, and the `flagging` count goes back down.
    fn drop(&mut self) {
        self.flag_and_wake();
    }
}
