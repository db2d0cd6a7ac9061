//! Recording what the hub's Redis storage does: its write queue, write time,
//! reconnects and read lag.
//!
//! Without the `metrics` feature every helper is empty (and every type a zero-sized
//! one), so the calls compile to nothing.

#![cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]

use std::time::Duration;

#[cfg(feature = "metrics")]
use ::metrics::{counter, gauge, histogram};
// The std clock, not tokio's: a metric wants real time.
#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(feature = "metrics")]
use super::*;

/// A failed Redis command of `task` (`writer`, `reader`, `history`), retried after a
/// backoff.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn redis_reconnect(task: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(REDIS_RECONNECTS, "task" => task).increment(1);
}

/// One write to Redis took `time`.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn redis_write_time(time: Duration) {
    #[cfg(feature = "metrics")]
    histogram!(REDIS_WRITE_SECONDS).record(time);
}

/// What one writer added to the queue gauge, so that several writers in a process add
/// up, and a writer that stops takes its share back.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct QueueDepth {
    #[cfg(feature = "metrics")]
    reported: usize,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl QueueDepth {
    /// `waiting` events wait to be written now.
    #[inline]
    pub(crate) fn set(&mut self, waiting: usize) {
        #[cfg(feature = "metrics")]
        if waiting != self.reported {
            gauge!(REDIS_WRITE_QUEUE).increment(waiting as f64 - self.reported as f64);
            self.reported = waiting;
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for QueueDepth {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// How long one reader has been behind: since the last read that reached the end of
/// every stream it reads.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct ReadLag {
    #[cfg(feature = "metrics")]
    caught_up: Instant,
    #[cfg(feature = "metrics")]
    reported: f64,
}

impl Default for ReadLag {
    fn default() -> Self {
        ReadLag {
            #[cfg(feature = "metrics")]
            caught_up: Instant::now(),
            #[cfg(feature = "metrics")]
            reported: 0.0,
        }
    }
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl ReadLag {
    /// A read returned; `complete`: it reached the newest entry of every stream.
    #[inline]
    pub(crate) fn read(&mut self, complete: bool) {
        #[cfg(feature = "metrics")]
        {
            let lag = if complete {
                self.caught_up = Instant::now();
                0.0
            } else {
                self.caught_up.elapsed().as_secs_f64()
            };
            if lag != self.reported {
                gauge!(REDIS_READ_LAG).increment(lag - self.reported);
                self.reported = lag;
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for ReadLag {
    fn drop(&mut self) {
        if self.reported != 0.0 {
            gauge!(REDIS_READ_LAG).decrement(self.reported);
        }
    }
}
