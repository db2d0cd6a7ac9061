//! The heartbeat timer of one stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// When the next heartbeat of a stream is due: `interval` after its last write of any
/// kind.
///
/// A write only records when the next heartbeat is due; the timer itself is moved only
/// when it fires early, so a busy stream does not touch the timer wheel on every event,
/// and a heartbeat missed while the task was busy is written once, never as a burst of
/// catch-up frames.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Duration,
    due: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Heartbeat {
    pub(crate) fn new(interval: Duration) -> Self {
        Heartbeat {
            interval,
            due: Instant::now() + interval,
            sleep: None,
        }
    }

    /// Records a write: the next heartbeat is due one interval from now.
    pub(crate) fn wrote(&mut self) {
        self.due = Instant::now() + self.interval;
    }

    /// Whether a heartbeat is due now; if not, the task is woken when it is.
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> bool {
        let due = self.due;
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

    use super::Heartbeat;

    const INTERVAL: Duration = Duration::from_secs(10);
    const MS: Duration = Duration::from_millis(1);

    fn due(heartbeat: &mut Heartbeat) -> bool {
        heartbeat.poll_due(&mut Context::from_waker(Waker::noop()))
    }

    /// Due one interval after the start, then one interval after each write of any
    /// kind (a heartbeat too); a beat missed for many intervals is written once, not as
    /// a burst.
    #[tokio::test(start_paused = true)]
    async fn due_an_interval_after_the_last_write_and_once_however_late() {
        let mut heartbeat = Heartbeat::new(INTERVAL);
        advance(INTERVAL - MS).await;
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
}
