//! One stream's view of the layer's shutdown token.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Watches a [`CancellationToken`] from a response body, cheaply enough to ask on every
/// frame: the cancellation future, where the task's wake-up is registered, is polled only
/// when the task's waker changes; otherwise asking is one look at the token.
#[derive(Debug)]
pub(crate) struct ShutdownWatch {
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    waker: Option<Waker>,
}

impl ShutdownWatch {
    pub(crate) fn new(token: &CancellationToken) -> Self {
        ShutdownWatch {
            token: token.clone(),
            cancelled: Box::pin(token.clone().cancelled_owned()),
            waker: None,
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
}
