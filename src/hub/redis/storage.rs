//! `RedisStorage`: its settings, and the shared-log seam the hub calls.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::redis::{Client, RedisError, Value};
use tokio::sync::{mpsc, oneshot};

use super::reader::ReaderState;
use super::reply::parse_history;
use super::script::HISTORY;
use super::shared::{MAX_BACKOFF, MIN_BACKOFF, Outgoing, Shared, lock};
use super::tasks::Tasks;
use super::writer::WriterState;
use crate::Event;
use crate::hub::PublishError;
use crate::hub::Published;
use crate::hub::deliveries::Applier;
use crate::hub::log::{GapReason, Page, PageFuture, SharedLog};

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
/// **Writes.** Each event's write has its own outcome. Redis refusing an event (its
/// topic's key holds another type, the user lacks a permission, Redis is out of memory,
/// a script error) fails that event's
/// [`acknowledged`](crate::hub::Published::acknowledged) with
/// [`PublishError::Rejected`], carrying Redis's message; other events are not held back.
/// Only connection errors and states that pass (`LOADING`, `BUSY`, `READONLY`,
/// `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`) are retried, with backoff; meanwhile
/// [`Hub::publish`](crate::Hub::publish) fails at once with
/// [`PublishError::Unreachable`], and events already taken are written once Redis is
/// back. A retried write is never stored twice: the script records each event it stores
/// under the writer's number for it, and after an attempt whose replies were lost the
/// writer reads that record and writes again only what Redis did not store.
///
/// **Connections.** Every connection reconnects by itself. While Redis is unreachable,
/// open streams stay up (heartbeats go on) and new subscribers wait (heartbeats go on)
/// until Redis is back, then receive what they asked for. A failed connection is logged,
/// with Redis's address, at most once every ten seconds.
///
/// **Lost data.** Run Redis with persistence (`appendonly yes`) so a restart keeps the
/// counter and the streams. If Redis loses them anyway (a restart without persistence,
/// `FLUSHALL`, a failover to a replica that lagged), the hub notices: Redis keeps an
/// epoch beside the counter, and no event is written while the epoch is not the one the
/// writer knows or the counter is below an id this instance has seen. A new epoch then
/// begins above every id given before (above the counter, a million above the highest
/// id this instance has seen, and at Redis's clock in microseconds), a warning is
/// logged, live subscribers get the reset event (data `lost`), and a subscriber resuming
/// from an older id gets it too, then what Redis holds since. Ids never repeat one a
/// client may hold. The first epoch also begins at the clock: ids are large numbers
/// (about 1.8 × 10¹⁵), like those of the in-memory hub, and well below 2⁵³.
///
/// **Expiry.** A topic's stream expires [`ttl`](RedisStorage::ttl) after its last
/// publish (default a day); the counter and the epoch never do. A subscriber resuming
/// on a topic whose events expired gets the reset event: Redis keeps a few marks of the
/// counter over time (about 33: one per `ttl / 16`, each kept for `2 × ttl`), so a
/// stream that is gone tells that every event it had is below the mark of `ttl` ago. A
/// subscriber resuming from older than that on a topic that had no event since gets the
/// reset event too: rare, and never a silent gap. Keys with an expiry are what a
/// `volatile-*` eviction policy evicts first: run Redis with `maxmemory-policy
/// noeviction`.
///
/// **Runtimes.** The storage's tasks start on the first publish or subscribe made inside
/// a tokio runtime (at once if the hub is built inside one), and start again there if
/// the runtime that ran them went away; nothing taken is lost meanwhile. Outside any
/// runtime, with no task running, publishing fails with [`PublishError::NoRuntime`].
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
    ttl: Duration,
    attached: OnceLock<Attached>,
}

/// What the storage is once its hub is built.
struct Attached {
    shared: Arc<Shared>,
    writes: mpsc::Sender<Outgoing>,
    tasks: Tasks,
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
            .field("ttl", &self.ttl)
            .field(
                "healthy",
                &self
                    .attached
                    .get()
                    .map(|a| a.shared.healthy.load(Ordering::Relaxed)),
            )
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    /// A storage on the Redis server at `url` (`redis://host:port/db`), with key prefix
    /// `tower-sse`, streams trimmed to about 10,000 entries and expiring a day after
    /// their last publish, and room for 10,000 events waiting to be written. Connects
    /// once the hub is used inside a runtime.
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
            ttl: Duration::from_secs(24 * 60 * 60),
            attached: OnceLock::new(),
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

    /// Sets how long a topic's stream is kept after its last publish (default a day;
    /// at least a millisecond): a topic no longer published to goes away from Redis.
    /// Instances that share a prefix should share this setting.
    ///
    /// ```
    /// use std::time::Duration;
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?
    ///     .ttl(Duration::from_secs(3600));
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(1));
        self
    }

    fn attached(&self) -> Option<&Attached> {
        self.attached.get()
    }
}

impl SharedLog for RedisStorage {
    fn attach(&self, hub: Applier) {
        let shared = Arc::new(Shared::new(
            self.client.clone(),
            &self.prefix,
            self.max_len,
            self.ttl,
        ));
        let (writes, queue) = mpsc::channel(self.queue);
        *lock(&shared.writer) = Some(WriterState::new(queue));
        *lock(&shared.reader) = Some(ReaderState::default());
        let tasks = Tasks::new(shared.clone(), hub);
        // Built inside a runtime, the tasks start now; otherwise on first use.
        let _ = tasks.ensure();
        let _ = self.attached.set(Attached {
            shared,
            writes,
            tasks,
        });
    }

    fn publish(
        &self,
        topic: &str,
        key: Option<&str>,
        event: Event,
    ) -> Result<Published, PublishError> {
        let Some(attached) = self.attached() else {
            return Err(PublishError::Stopped);
        };
        attached.tasks.ensure()?;
        if let Some(err) = attached.shared.unhealthy() {
            return Err(err);
        }
        let (ack, acked) = oneshot::channel();
        let outgoing = Outgoing {
            topic: Arc::from(topic),
            key: key.map(Box::from),
            frame: event.into_bytes(),
            seq: 0,
            ack,
        };
        match attached.writes.try_send(outgoing) {
            Ok(()) => Ok(Published::pending(acked)),
            Err(mpsc::error::TrySendError::Full(_)) => Err(PublishError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PublishError::Stopped),
        }
    }

    fn watch(&self, topic: &Arc<str>, generation: u64) {
        if let Some(attached) = self.attached() {
            attached.shared.want(|wanted| {
                wanted.insert(topic.clone(), generation);
            });
            // Outside a runtime the watch waits for the tasks to start.
            let _ = attached.tasks.ensure();
        }
    }

    fn unwatch(&self, topic: &Arc<str>) {
        if let Some(attached) = self.attached() {
            attached.shared.want(|wanted| {
                wanted.remove(topic);
            });
        }
    }

    fn page(&self, topic: &Arc<str>, after: u64, upto: u64, count: usize) -> PageFuture {
        let Some(attached) = self.attached() else {
            return Box::pin(std::future::ready(Page::Gap(GapReason::Unknown)));
        };
        let _ = attached.tasks.ensure();
        let shared = attached.shared.clone();
        let key = shared.stream_key(topic);
        Box::pin(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                match page_once(&shared, &key, after, upto, count).await {
                    Ok(Some(page)) => return page,
                    Ok(None) => {
                        tracing::error!(key, "unexpected reply to the history script");
                        return Page::Gap(GapReason::Evicted);
                    }
                    Err(err) => {
                        crate::metrics::redis_reconnect("history");
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

/// One page of history: `None` if the reply is not what the script returns.
async fn page_once(
    shared: &Shared,
    key: &str,
    after: u64,
    upto: u64,
    count: usize,
) -> Result<Option<Page>, RedisError> {
    let Some(mut reads) = shared.reads() else {
        return Err(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::NotConnected,
        )));
    };
    let reply: Value = ::redis::cmd("EVAL")
        .arg(HISTORY)
        .arg(4)
        .arg(&shared.keys.seq)
        .arg(key)
        .arg(&shared.keys.epoch)
        .arg(&shared.keys.marks)
        .arg(format!("{}-0", after.saturating_add(1)))
        .arg(format!("{upto}-0"))
        .arg(count)
        .arg(shared.ttl_ms())
        .query_async(&mut reads)
        .await?;
    Ok(parse_history(reply, after, count))
}
