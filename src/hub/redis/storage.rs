//! `RedisStorage`: its settings, and the shared-log seam the hub calls.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError};
use tokio::sync::{Notify, mpsc, oneshot};

use super::reader::read_loop;
use super::shared::{MAX_BACKOFF, MIN_BACKOFF, Outgoing, Shared, Throttle};
use super::writer::write_loop;
use crate::Event;
use crate::hub::PublishError;
use crate::hub::Published;
use crate::hub::log::{Delivery, GapReason, Page, PageFuture, SharedLog};

/// The [`Hub`](crate::Hub) on Redis Streams, for several server instances that serve one
/// feed: give it to [`HubBuilder::redis`](crate::hub::HubBuilder::redis).
///
/// Each topic is a stream (`XADD ... MAXLEN ~ max_len`); a Lua script numbers every event
/// from one shared counter as it appends it, so ids order events across topics and
/// instances, and a browser can resume from its `Last-Event-ID` on any instance. Each
/// instance reads (`XREAD`) only the topics it has subscribers for, and replays what a
/// resuming subscriber missed with `XRANGE ... COUNT`, a page of each of its topics at a
/// time; when Redis no longer holds all of it, the subscriber receives the same reset
/// event as with the in-memory hub.
///
/// Every connection reconnects by itself: writes and history reads go through the
/// `redis` crate's `ConnectionManager`, and the blocking reader reconnects with backoff.
/// While Redis is unreachable, open streams stay up (heartbeats go on),
/// [`Hub::publish`](crate::Hub::publish) fails at once with
/// [`PublishError::Unreachable`], and new subscribers wait (heartbeats go on) until
/// Redis is back, then receive what they asked for. A failed connection is logged, with
/// Redis's address, at most once every ten seconds. Events already accepted are
/// written once Redis is back, and every instance then delivers what it missed from the
/// streams, so no acknowledged event is lost. Writes are at least once: if the
/// connection drops after Redis applied a write but before it answered, the retry
/// appends the event again. Run Redis with persistence (`appendonly yes`) so a restart
/// keeps the counter and the streams.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_sse::Hub;
/// use tower_sse::hub::RedisStorage;
///
/// let storage = RedisStorage::new("redis://127.0.0.1:6379/")?.prefix("flights").max_len(10_000);
/// let hub = Hub::builder().redis(storage).build();
/// hub.publish("positions", tower_sse::Event::data("{}"))?.acknowledged().await?;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisStorage {
    client: Client,
    prefix: String,
    max_len: usize,
    queue: usize,
    running: OnceLock<Running>,
}

/// What runs once the hub is built.
pub(super) struct Running {
    pub(super) shared: Arc<Shared>,
    pub(super) writes: mpsc::Sender<Outgoing>,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field(
                "address",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("prefix", &self.prefix)
            .field("max_len", &self.max_len)
            .field("queue", &self.queue)
            .field(
                "healthy",
                &self
                    .running
                    .get()
                    .map(|r| r.shared.healthy.load(Ordering::Relaxed)),
            )
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    /// A storage on the Redis server at `url` (`redis://host:port/db`), with key prefix
    /// `tower-sse`, streams trimmed to about 10,000 entries, and room for 10,000 events
    /// waiting to be written. Connects when the hub is built.
    ///
    /// ```
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?;
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Ok(RedisStorage {
            client: Client::open(url)?,
            prefix: "tower-sse".to_owned(),
            max_len: 10_000,
            queue: 10_000,
            running: OnceLock::new(),
        })
    }

    /// Sets the prefix of every key (default `tower-sse`): instances that share a prefix
    /// share a feed.
    ///
    /// ```
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?.prefix("flights");
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// Sets about how many events each topic's stream keeps (`MAXLEN ~`, default 10,000).
    ///
    /// ```
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?.max_len(1000);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// Sets how many published events may wait to be written (default 10,000); beyond
    /// that, publishing fails with [`PublishError::QueueFull`].
    ///
    /// ```
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?.queue(1000);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn queue(mut self, events: usize) -> Self {
        self.queue = events.max(1);
        self
    }
}

/// A `ConnectionManager` that connects on first use and reconnects after every failure.
pub(super) fn manager(
    client: &Client,
    response_timeout: Duration,
) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_min_delay(MIN_BACKOFF)
        .set_max_delay(MAX_BACKOFF);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

impl SharedLog for RedisStorage {
    fn start(&self, deliveries: mpsc::Sender<Delivery>) {
        let address = self.client.get_connection_info().addr().to_string();
        let (writes_conn, reads) = match (
            manager(&self.client, Duration::from_secs(5)),
            manager(&self.client, Duration::from_secs(5)),
        ) {
            (Ok(writes), Ok(reads)) => (writes, reads),
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!(%address, %err, "redis storage cannot start");
                return;
            }
        };
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            address,
            // The braces keep every key of a prefix in one Redis Cluster slot, as the
            // scripts require.
            seq_key: format!("{{{}}}:seq", self.prefix),
            stream_prefix: format!("{{{}}}:topic:", self.prefix),
            max_len: self.max_len,
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            reads,
            wanted: Mutex::new(HashMap::new()),
            wanted_dirty: AtomicBool::new(false),
            wanted_changed: Notify::new(),
            write_log: Throttle::default(),
            read_log: Throttle::default(),
            history_log: Throttle::default(),
        });
        let (writes, write_rx) = mpsc::channel(self.queue);
        tokio::spawn(write_loop(shared.clone(), writes_conn, write_rx));
        tokio::spawn(read_loop(shared.clone(), deliveries));
        let _ = self.running.set(Running { shared, writes });
    }

    fn publish(&self, topic: &str, event: Event) -> Result<Published, PublishError> {
        let Some(running) = self.running.get() else {
            return Err(PublishError::Stopped);
        };
        if !running.shared.healthy.load(Ordering::Acquire) {
            let source: Arc<dyn std::error::Error + Send + Sync> = match &*running
                .shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
            {
                Some(err) => err.clone(),
                None => Arc::new(std::io::Error::from(std::io::ErrorKind::NotConnected)),
            };
            return Err(PublishError::Unreachable(source));
        }
        let (ack, acked) = oneshot::channel();
        let outgoing = Outgoing {
            topic: Arc::from(topic),
            frame: event.into_bytes(),
            ack,
        };
        match running.writes.try_send(outgoing) {
            Ok(()) => Ok(Published::pending(acked)),
            Err(mpsc::error::TrySendError::Full(_)) => Err(PublishError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PublishError::Stopped),
        }
    }

    fn watch(&self, topic: &Arc<str>, generation: u64) {
        if let Some(running) = self.running.get() {
            running.shared.want(|wanted| {
                wanted.insert(topic.clone(), generation);
            });
        }
    }

    fn unwatch(&self, topic: &Arc<str>) {
        if let Some(running) = self.running.get() {
            running.shared.want(|wanted| {
                wanted.remove(topic);
            });
        }
    }

    fn page(&self, topic: &Arc<str>, after: u64, upto: u64, count: usize) -> PageFuture {
        let Some(running) = self.running.get() else {
            return Box::pin(std::future::ready(Page::Gap(GapReason::Unknown)));
        };
        let shared = running.shared.clone();
        let key = shared.stream_key(topic);
        Box::pin(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                match shared.page_once(&key, after, upto, count).await {
                    Ok(Some(page)) => return page,
                    Ok(None) => {
                        tracing::error!(key, "unexpected reply to the history script");
                        return Page::Gap(GapReason::Evicted);
                    }
                    Err(err) => {
                        if shared.history_log.due() {
                            tracing::warn!(address = %shared.address, %err, "redis history read failed; retrying");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        })
    }
}
