//! Heartbeat comments that keep an idle stream open through proxies.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use crate::Event;

/// How often an idle stream writes a heartbeat comment, and what it writes.
///
/// The heartbeat is due `interval` after the last write of any kind: every event pushes
/// it back, and a heartbeat that was missed while the task was busy is written once, never
/// as a burst of catch-up frames. The default is a bare `:` comment every 15 seconds, the
/// interval the HTML standard suggests.
///
/// ```
/// use std::time::Duration;
/// use tower_sse::{KeepAlive, SseLayer};
///
/// let layer = SseLayer::new().keep_alive(
///     KeepAlive::new().interval(Duration::from_secs(10)).text("ping"),
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    interval: Duration,
    frame: Bytes,
}

impl KeepAlive {
    /// The default heartbeat: `:` and a blank line after 15 idle seconds.
    ///
    /// ```
    /// let keep_alive = tower_sse::KeepAlive::new();
    /// assert_eq!(keep_alive.frame().as_ref(), b":\n\n");
    /// ```
    pub fn new() -> Self {
        KeepAlive {
            interval: Duration::from_secs(15),
            frame: Bytes::from_static(b":\n\n"),
        }
    }

    /// Sets the idle time after which a heartbeat is written.
    ///
    /// A zero interval is raised to one millisecond.
    ///
    /// ```
    /// let keep_alive = tower_sse::KeepAlive::new().interval(std::time::Duration::from_secs(5));
    /// ```
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets the comment text of the heartbeat; line breaks make several comment lines.
    ///
    /// ```
    /// let keep_alive = tower_sse::KeepAlive::new().text("ping");
    /// assert_eq!(keep_alive.frame().as_ref(), b": ping\n\n");
    /// ```
    pub fn text(mut self, text: &str) -> Self {
        self.frame = Event::comment(text).into_bytes();
        self
    }

    /// The idle time after which a heartbeat is written.
    ///
    /// ```
    /// assert_eq!(tower_sse::KeepAlive::new().get_interval().as_secs(), 15);
    /// ```
    pub fn get_interval(&self) -> Duration {
        self.interval
    }

    /// The bytes of one heartbeat frame.
    ///
    /// ```
    /// assert!(tower_sse::KeepAlive::new().frame().ends_with(b"\n\n"));
    /// ```
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self::new()
    }
}

/// The heartbeat timer of one stream.
///
/// A write only records when the next heartbeat is due; the timer itself is moved only
/// when it fires early, so a busy stream does not touch the timer wheel on every event.
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
