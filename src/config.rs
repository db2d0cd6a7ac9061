//! The settings of an [`SseLayer`](crate::SseLayer), shared by its services and the
//! bodies they wrap.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::Compression;
use crate::batch::{MAX_DELAY, Ticker};
use crate::event::write_retry;
use crate::report::OnEnd;
use crate::stall::StallWatch;
use crate::{Event, StreamEnd, StreamLimit};

/// Largest frame the body hands to the connection when events are coalesced.
const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// The heartbeat every 15 idle seconds, as the HTML standard suggests: a bare comment.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// Query parameter read as the last event id when the header is absent.
const DEFAULT_QUERY: &str = "lastEventId";

#[derive(Clone)]
pub(crate) struct Config {
    heartbeat: Option<Duration>,
    heartbeat_frame: Bytes,
    retry: Option<Bytes>,
    max_frame: usize,
    on_end: Option<OnEnd>,
    shutdown: Option<CancellationToken>,
    shutdown_event: Option<Bytes>,
    limit: Option<StreamLimit>,
    query: Option<Arc<str>>,
    batch: Option<Arc<Ticker>>,
    compression: Option<Compression>,
    stall: Stall,
    /// The watch of `stall`, made on first use.
    stall_watch: OnceLock<Option<Arc<StallWatch>>>,
}

/// When a stream whose connection takes nothing from it is ended.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// After three heartbeat intervals; never without heartbeats.
    Auto,
    After(Duration),
    Never,
}

/// How many heartbeat intervals a stream may go unpolled by default.
const STALL_HEARTBEATS: u32 = 3;

/// The least default stall timeout: with a very short heartbeat, a busy server may
/// leave a healthy stream unpolled for longer than three intervals.
const MIN_STALL: Duration = Duration::from_secs(5);

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Some(DEFAULT_HEARTBEAT),
            heartbeat_frame: Bytes::from_static(b":\n\n"),
            retry: None,
            max_frame: DEFAULT_MAX_FRAME,
            on_end: None,
            shutdown: None,
            shutdown_event: None,
            limit: None,
            query: Some(Arc::from(DEFAULT_QUERY)),
            batch: None,
            compression: None,
            stall: Stall::Auto,
            stall_watch: OnceLock::new(),
        }
    }
}

impl Config {
    pub(crate) fn set_heartbeat(&mut self, interval: Option<Duration>) {
        self.heartbeat = interval.map(|i| i.max(Duration::from_millis(1)));
        self.stall_watch = OnceLock::new();
    }

    /// # Panics
    ///
    /// If `delay` is longer than [`MAX_DELAY`].
    pub(crate) fn set_batch_delay(&mut self, delay: Duration) {
        assert!(
            delay <= MAX_DELAY,
            "SseLayer::batch_delay: {delay:?} is longer than the most a frame may wait ({MAX_DELAY:?})"
        );
        self.batch = (!delay.is_zero()).then(|| Ticker::new(delay));
    }

    pub(crate) fn set_compression(&mut self, compression: Option<Compression>) {
        self.compression = compression;
    }

    pub(crate) fn set_stall_timeout(&mut self, timeout: Option<Duration>) {
        self.stall = match timeout {
            Some(timeout) => Stall::After(timeout.max(Duration::from_millis(1))),
            None => Stall::Never,
        };
        self.stall_watch = OnceLock::new();
    }

    pub(crate) fn set_heartbeat_event(&mut self, event: Event) {
        self.heartbeat_frame = event.into_bytes();
    }

    pub(crate) fn set_retry(&mut self, retry: Duration) {
        let mut buf = Vec::with_capacity(32);
        write_retry(&mut buf, retry);
        buf.push(b'\n');
        self.retry = Some(Bytes::from(buf));
    }

    pub(crate) fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max.max(1);
    }

    pub(crate) fn set_on_end<F>(&mut self, on_end: F)
    where
        F: Fn(&StreamEnd) + Send + Sync + 'static,
    {
        self.on_end = Some(Arc::new(on_end));
    }

    pub(crate) fn set_shutdown(&mut self, token: CancellationToken) {
        self.shutdown = Some(token);
    }

    pub(crate) fn set_shutdown_event(&mut self, event: Event) {
        self.shutdown_event = Some(event.into_bytes());
    }

    pub(crate) fn set_limit(&mut self, limit: StreamLimit) {
        self.limit = Some(limit);
    }

    pub(crate) fn set_query(&mut self, name: Option<&str>) {
        self.query = name.map(Arc::from);
    }

    /// The idle time after which a heartbeat is written, if heartbeats are on.
    pub(crate) fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat
    }

    pub(crate) fn heartbeat_frame(&self) -> &Bytes {
        &self.heartbeat_frame
    }

    pub(crate) fn retry(&self) -> Option<&Bytes> {
        self.retry.as_ref()
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    pub(crate) fn on_end(&self) -> Option<&OnEnd> {
        self.on_end.as_ref()
    }

    pub(crate) fn shutdown(&self) -> Option<&CancellationToken> {
        self.shutdown.as_ref()
    }

    pub(crate) fn shutdown_event(&self) -> Option<&Bytes> {
        self.shutdown_event.as_ref()
    }

    pub(crate) fn limit(&self) -> Option<&StreamLimit> {
        self.limit.as_ref()
    }

    pub(crate) fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The cadence that batches writes, when they are batched.
    pub(crate) fn batch(&self) -> Option<&Arc<Ticker>> {
        self.batch.as_ref()
    }

    pub(crate) fn compression(&self) -> Option<&Compression> {
        self.compression.as_ref()
    }

    /// The watch that ends streams their connection stopped polling, if any.
    pub(crate) fn stall_watch(&self) -> Option<&Arc<StallWatch>> {
        self.stall_watch
            .get_or_init(|| {
                let timeout = match (self.stall, self.heartbeat) {
                    (Stall::Never, _) | (Stall::Auto, None) => return None,
                    (Stall::After(timeout), _) => timeout,
                    (Stall::Auto, Some(interval)) => (interval * STALL_HEARTBEATS).max(MIN_STALL),
                };
                Some(StallWatch::new(timeout))
            })
            .as_ref()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("heartbeat", &self.heartbeat)
            .field("heartbeat_frame", &self.heartbeat_frame)
            .field("retry", &self.retry)
            .field("max_frame", &self.max_frame)
            .field("on_end", &self.on_end.as_ref().map(|_| ".."))
            .field("shutdown", &self.shutdown)
            .field("shutdown_event", &self.shutdown_event)
            .field("limit", &self.limit)
            .field("query", &self.query)
            .field("batch", &self.batch.as_ref().map(|t| t.delay()))
            .field("compression", &self.compression)
            .field("stall", &self.stall)
            .finish()
    }
}
