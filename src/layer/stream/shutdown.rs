//! One stream's view of the layer's shutdown token, and its grace for an event in
//! progress.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a stream that is shut down in the middle of an event waits for the rest of
/// it before it ends without it (and without the shutdown event).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Watches a [`CancellationToken`] from a response body, cheaply enough to ask on every
/// frame: the cancellation future, where the task's wake-up is registered, is polled only
/// when the task's waker changes; otherwise asking is one look at the token.
#[derive(Debug)]
pub(crate) struct ShutdownWatch {
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    waker: Option<Waker>,
    /// Once shutdown found the stream inside an event: when it stops waiting for the
    /// rest of it.
    grace: Option<Pin<Box<Sleep>>>,
}

impl ShutdownWatch {
    pub(crate) fn new(token: &CancellationToken) -> Self {
        ShutdownWatch {
            token: token.clone(),
            cancelled: Box::pin(token.clone().cancelled_owned()),
            waker: None,
            grace: None,
        }
    }

    /// Whether the token is cancelled; if not, the task is woken when it is.
    pub(crate) fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> bool {
        let registered = self
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if !registered {
            if let Poll::Ready(()) = self.cancelled.as_mut().poll(cx) {
                return true;
            }
            self.waker = Some(cx.waker().clone());
            return false;
        }
        self.token.is_cancelled()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Whether a shutdown that found the stream inside an event has waited long enough
    /// for the rest of it ([`SHUTDOWN_GRACE`]; the wait starts now if it has not); if
    /// not, the task is woken when it has.
    pub(crate) fn grace_over(&mut self, cx: &mut Context<'_>) -> bool {
        self.grace
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(SHUTDOWN_GRACE)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }
}
