//! A signal that ends every open stream cleanly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// A shutdown signal shared by every stream of a server.
///
/// An SSE response never ends on its own, so a server's graceful shutdown would wait for
/// it forever. Give the same `Shutdown` to the layer (or to each [`Sse`](crate::Sse)
/// response) and [`trigger`](Shutdown::trigger) it when the server starts to shut down:
/// every open stream writes its shutdown event, if one is set, and ends, and its end is
/// reported with [`EndReason::Shutdown`](crate::EndReason::Shutdown).
///
/// ```
/// use tower_sse::{Shutdown, SseLayer};
///
/// let shutdown = Shutdown::new();
/// let layer = SseLayer::new().graceful_shutdown(shutdown.clone());
/// // ... later, when the server is asked to stop:
/// shutdown.trigger();
/// assert!(shutdown.is_triggered());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    notify: Arc<Notify>,
}

impl Shutdown {
    /// A signal that has not been triggered.
    ///
    /// ```
    /// assert!(!tower_sse::Shutdown::new().is_triggered());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Triggers the signal: every stream watching it ends. Triggering twice does nothing.
    ///
    /// ```
    /// let shutdown = tower_sse::Shutdown::new();
    /// shutdown.trigger();
    /// shutdown.trigger();
    /// assert!(shutdown.is_triggered());
    /// ```
    pub fn trigger(&self) {
        if !self.inner.triggered.swap(true, Ordering::AcqRel) {
            self.inner.notify.notify_waiters();
        }
    }

    /// Whether the signal has been triggered.
    ///
    /// ```
    /// assert!(!tower_sse::Shutdown::new().is_triggered());
    /// ```
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Waits until the signal is triggered.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let shutdown = tower_sse::Shutdown::new();
    /// let waiter = tokio::spawn({
    ///     let shutdown = shutdown.clone();
    ///     async move { shutdown.triggered().await }
    /// });
    /// shutdown.trigger();
    /// waiter.await.unwrap();
    /// # });
    /// ```
    pub async fn triggered(&self) {
        let notified = self.inner.notify.clone().notified_owned();
        if self.is_triggered() {
            return;
        }
        notified.await;
    }

    pub(crate) fn watch(&self) -> ShutdownWatch {
        ShutdownWatch {
            notified: Box::pin(self.inner.notify.clone().notified_owned()),
            shutdown: self.clone(),
            waker: None,
        }
    }
}

/// One stream's view of a [`Shutdown`]: cheap to poll on every frame.
///
/// The notification future is polled only when the task's waker changes (that is where
/// its wake-up is registered); otherwise a single atomic load answers.
#[derive(Debug)]
pub(crate) struct ShutdownWatch {
    shutdown: Shutdown,
    notified: Pin<Box<OwnedNotified>>,
    waker: Option<Waker>,
}

impl ShutdownWatch {
    pub(crate) fn poll_triggered(&mut self, cx: &mut Context<'_>) -> bool {
        let registered = self
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if !registered {
            if let Poll::Ready(()) = self.notified.as_mut().poll(cx) {
                return true;
            }
            self.waker = Some(cx.waker().clone());
        }
        self.shutdown.is_triggered()
    }
}
