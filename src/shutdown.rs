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
///
/// # With axum's `with_graceful_shutdown`
///
/// [`trigger_on`](Shutdown::trigger_on) turns the signal you already wait for into the
/// future axum wants: when it fires, the streams end and axum's connections can close.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// use std::time::Duration;
/// use tower_sse::{Event, Shutdown, SseLayer};
///
/// let shutdown = Shutdown::new();
/// let layer = SseLayer::new()
///     .graceful_shutdown(shutdown.clone())
///     // A final frame that makes browsers come back after half a second.
///     .shutdown_event(Event::builder().retry(Duration::from_millis(500)).build().unwrap());
/// // ... the layer goes into `app` ...
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(shutdown.trigger_on(async {
///         tokio::signal::ctrl_c().await.ok();
///     }))
///     .await
/// # }
/// ```
///
/// # With [`serve`](crate::serve())
///
/// Trigger it from the token that shuts the server down, and the server's future
/// completes once the streams have ended and every connection is closed:
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener, shutdown: tower_sse::Shutdown) {
/// use tokio_util::sync::CancellationToken;
/// # let service = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// # });
///
/// let stop = CancellationToken::new();
/// tokio::spawn(shutdown.trigger_on(stop.clone().cancelled_owned()));
/// tokio::spawn({
///     let stop = stop.clone();
///     async move {
///         tokio::signal::ctrl_c().await.ok();
///         stop.cancel(); // every SSE stream ends ...
///     }
/// });
/// tower_sse::serve(listener, service)
///     .graceful_shutdown(stop)
///     .await; // ... so this completes
/// # }
/// ```
///
/// hyper-util's `GracefulShutdown` is used the same way: trigger the signal, then wait
/// for `graceful.shutdown()` (`tests/shutdown.rs`).
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

    /// Waits for `signal`, triggers the shutdown, and completes: the future to hand to
    /// a server's graceful shutdown (axum's `with_graceful_shutdown`, warp's
    /// `graceful`), so that the streams end when the server starts to drain.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let shutdown = tower_sse::Shutdown::new();
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let drained = tokio::spawn(shutdown.trigger_on(async { rx.await.ok(); }));
    /// tx.send(()).unwrap();
    /// drained.await.unwrap();
    /// assert!(shutdown.is_triggered());
    /// # });
    /// ```
    pub fn trigger_on<F>(&self, signal: F) -> impl Future<Output = ()> + use<F>
    where
        F: Future,
    {
        let shutdown = self.clone();
        async move {
            signal.await;
            shutdown.trigger();
        }
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
