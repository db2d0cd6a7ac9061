//! The heartbeat timer of one stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How finely heartbeat deadlines are placed: at most this fraction of the interval
/// late.
const SLOTS_PER_INTERVAL: u32 = 16;

/// The heartbeat clock of one layer's streams: their interval, and the times at which
/// their heartbeats may fire, every `interval / 16` from the moment the layer wrapped
/// its service.
///
/// A heartbeat is a keep-alive, not a clock: it does not matter whether it is written
/// 15 or 15.9 seconds after a stream's last write. Rounding every stream's deadline up
/// to the next slot makes the streams due in the same slot fire on one wake of the
/// runtime and write their heartbeats one after the other, instead of each waking the
/// runtime (and the client's) on its own millisecond; with 19,000 idle streams this
/// took about a sixth off the heartbeats' CPU.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeartbeatClock {
    interval: Duration,
    origin: Instant,
}

impl HeartbeatClock {
    pub(crate) fn new(interval: Duration) -> Self {
        HeartbeatClock {
            interval,
            origin: Instant::now(),
        }
    }

    /// The first slot at or after `due`.
    fn round_up(&self, due: Instant) -> Instant {
        let Some(since) = due.checked_duration_since(self.origin) else {
            return due;
        };
        // In nanoseconds, u64 holds 584 years: a width or a time beyond that (a
        // heartbeat of centuries) is not rounded.
        let width = (self.interval / SLOTS_PER_INTERVAL).max(Duration::from_millis(1));
        let (Ok(width), Ok(since)) = (
            u64::try_from(width.as_nanos()),
            u64::try_from(since.as_nanos()),
        ) else {
            return due;
        };
        let late = Duration::from_nanos((width - since % width) % width);
        due.checked_add(late).unwrap_or(due)
    }
}

/// `interval` from now, or as far as the clock goes.
fn after(interval: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(interval)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// When the next heartbeat of a stream is due: `interval` after its last write of any
/// kind, rounded up to the next slot of the layer's [`HeartbeatClock`].
///
/// A write only records when the next heartbeat is due; the timer itself is moved only
/// when it fires early, so a busy stream does not touch the timer wheel on every event,
/// and a heartbeat missed while the task was busy is written once, never as a burst of
/// catch-up frames.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    clock: HeartbeatClock,
    due: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Heartbeat {
    pub(crate) fn new(clock: HeartbeatClock) -> Self {
        Heartbeat {
            clock,
            due: after(clock.interval),
            sleep: None,
        }
    }

    /// Records a write: the next heartbeat is due one interval from now.
    pub(crate) fn wrote(&mut self) {
        self.due = after(self.clock.interval);
    }

    /// Whether a heartbeat is due now; if not, the task is woken when it is.
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> bool {
        let due = self.clock.round_up(self.due);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if sleep.deadline() != due {
            sleep.as_mut().reset(due);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Pending => false,
            Poll::Ready(()) => {
                self.wrote();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};
    use std::time::Duration;

    use tokio::time::advance;

    use super::{Heartbeat, HeartbeatClock};

    const INTERVAL: Duration = Duration::from_secs(10);
    /// A sixteenth of the interval.
    const SLOT: Duration = Duration::from_millis(625);
    const MS: Duration = Duration::from_millis(1);

    fn due(heartbeat: &mut Heartbeat) -> bool {
        heartbeat.poll_due(&mut Context::from_waker(Waker::noop()))
    }

    /// Due one interval after the start, then one interval after each write of any
    /// kind (a heartbeat too); a beat missed for many intervals is written once, not as
    /// a burst. (Writes here fall on slot times, so nothing is rounded.)
    #[tokio::test(start_paused = true)]
    async fn due_an_interval_after_the_last_write_and_once_however_late() {
        let mut heartbeat = Heartbeat::new(HeartbeatClock::new(INTERVAL));
        advance(INTERVAL - SLOT).await;
        assert!(!due(&mut heartbeat));
        heartbeat.wrote();
        advance(INTERVAL - MS).await;
        assert!(!due(&mut heartbeat), "a write moved it");
        advance(MS).await;
        assert!(due(&mut heartbeat));

        advance(10 * INTERVAL).await;
        assert!(due(&mut heartbeat));
        assert!(!due(&mut heartbeat), "no catch-up beat");
        advance(INTERVAL - MS).await;
        assert!(!due(&mut heartbeat));
        advance(MS).await;
        assert!(due(&mut heartbeat));
    }

    /// Streams whose last writes fall in one slot are due together, at the first slot
    /// time at least one interval after their writes: never early, at most a slot late.
    #[tokio::test(start_paused = true)]
    async fn deadlines_within_one_slot_fire_together_at_its_end() {
        let clock = HeartbeatClock::new(INTERVAL);
        let mut first = Heartbeat::new(clock);
        let mut second = Heartbeat::new(clock);
        advance(SLOT + MS).await;
        first.wrote();
        advance(SLOT - 2 * MS).await;
        second.wrote();
        // One interval after the second write (and more after the first), both still
        // wait for the slot time at 2 slots + one interval from the start.
        advance(INTERVAL).await;
        assert!(!due(&mut first), "rounded up to the slot");
        assert!(!due(&mut second));
        advance(MS).await;
        assert!(due(&mut first));
        assert!(due(&mut second));
    }
}
