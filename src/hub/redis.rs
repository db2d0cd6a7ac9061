//! The shared log on Redis Streams: several server instances, one feed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};

use super::PublishError;
use super::log::{Delivery, GapReason, Page, PageFuture, Published, SharedLog};
use crate::Event;

/// Numbers an event with the shared counter and appends it to its topic's stream,
/// atomically, so that ids grow in the order events enter the log, across every topic
/// and every instance. Each entry also records the id of the topic's previous entry
/// (`p`): once `MAXLEN ~` has trimmed the oldest entries, the first one left tells the
/// id of the last one trimmed.
const PUBLISH: &str = r"
local id = redis.call('INCR', KEYS[1])
local previous = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local p = '0'
if #previous > 0 then p = string.match(previous[1][1], '^(%d+)') end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 'e', ARGV[1], 'p', p)
return id
";

/// The newest id issued, the id of the last entry trimmed from the topic's stream (the
/// `p` of its first entry), and at most `ARGV[3]` entries of the range asked for: read
/// together, so they agree.
const HISTORY: &str = r"
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
local trimmed = '0'
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then
  local fields = first[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'p' then trimmed = fields[i + 1] end
  end
end
return {newest, trimmed, redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[2], 'COUNT', ARGV[3])}
";

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A failed connection is logged at most once per this period, per kind of work.
const LOG_PERIOD: Duration = Duration::from_secs(10);
/// How long the reader blocks in one `XREAD`.
const BLOCK: Duration = Duration::from_millis(1000);
/// Most entries read from one stream per `XREAD`, and most events per write batch.
const BATCH: usize = 512;

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
struct Running {
    shared: Arc<Shared>,
    writes: mpsc::Sender<Outgoing>,
}

struct Shared {
    client: Client,
    /// Where Redis is, for the logs.
    address: String,
    seq_key: String,
    stream_prefix: String,
    max_len: usize,
    /// False while the writer cannot reach Redis: publishing fails at once.
    healthy: AtomicBool,
    /// The error of the writer's last failed attempt.
    last_error: Mutex<Option<Arc<RedisError>>>,
    /// History reads, and `CLIENT UNBLOCK` for the reader.
    reads: ConnectionManager,
    /// Topics with local subscribers, and the generation of their watch: bounded by
    /// the topics, however often they are watched and unwatched while Redis is down.
    wanted: Mutex<HashMap<Arc<str>, u64>>,
    /// Set with `wanted_changed` when `wanted` changes.
    wanted_dirty: AtomicBool,
    wanted_changed: Notify,
    write_log: Throttle,
    read_log: Throttle,
    history_log: Throttle,
}

struct Outgoing {
    topic: Arc<str>,
    frame: Bytes,
    ack: oneshot::Sender<u64>,
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
fn manager(client: &Client, response_timeout: Duration) -> Result<ConnectionManager, RedisError> {
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

impl Shared {
    fn stream_key(&self, topic: &str) -> String {
        format!("{}{}", self.stream_prefix, topic)
    }

    fn want(&self, change: impl FnOnce(&mut HashMap<Arc<str>, u64>)) {
        change(&mut self.wanted.lock().unwrap_or_else(PoisonError::into_inner));
        self.wanted_dirty.store(true, Ordering::Release);
        self.wanted_changed.notify_one();
    }

    /// One page of history: `None` if the reply is not what the script returns.
    async fn page_once(
        &self,
        key: &str,
        after: u64,
        upto: u64,
        count: usize,
    ) -> Result<Option<Page>, RedisError> {
        let reply: Value = ::redis::cmd("EVAL")
            .arg(HISTORY)
            .arg(2)
            .arg(&self.seq_key)
            .arg(key)
            .arg(format!("{}-0", after.saturating_add(1)))
            .arg(format!("{upto}-0"))
            .arg(count)
            .query_async(&mut self.reads.clone())
            .await?;
        Ok(parse_history(reply, after, count))
    }
}

/// Logs at most once per [`LOG_PERIOD`].
#[derive(Default)]
struct Throttle(Mutex<Option<std::time::Instant>>);

impl Throttle {
    fn due(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::time::Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < LOG_PERIOD) {
            return false;
        }
        *last = Some(now);
        true
    }
}

fn parse_history(reply: Value, after: u64, count: usize) -> Option<Page> {
    let Value::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 3 {
        return None;
    }
    let entries = parts.pop()?;
    let trimmed = integer(&parts.pop()?)?;
    let newest = integer(&parts.pop()?)?;
    if after > newest {
        return Some(Page::Gap(GapReason::Unknown));
    }
    if trimmed > after {
        return Some(Page::Gap(GapReason::Evicted));
    }
    let Value::Array(entries) = entries else {
        return None;
    };
    let full = entries.len() >= count;
    let mut events = Vec::with_capacity(entries.len());
    let mut last = None;
    for entry in entries {
        last = match &entry {
            Value::Array(parts) => parts.first().and_then(entry_id),
            _ => None,
        }
        .or(last);
        // A frame this crate did not write is skipped (and traced).
        events.extend(parse_entry(entry));
    }
    Some(Page::Events {
        events,
        next: if full { last } else { None },
    })
}

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(text) => text.parse().ok(),
        _ => None,
    }
}

/// The number before the dash of a stream entry id (`"42-0"` is 42).
fn entry_id(value: &Value) -> Option<u64> {
    let text = match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?,
        Value::SimpleString(text) => text.as_str(),
        _ => return None,
    };
    text.split('-').next()?.parse().ok()
}

/// `[id, [field, value, ...]]` into the id and the stored event. An entry that is not
/// a frame this crate wrote is skipped and traced.
fn parse_entry(entry: Value) -> Option<(u64, Event)> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = entry_id(&parts.pop()?)?;
    let fields = match fields {
        Value::Array(fields) => fields,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return None,
    };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if matches!(&name, Value::BulkString(n) if n == b"e")
            && let Value::BulkString(frame) = value
        {
            let event = Event::from_stored_frame(Bytes::from(frame));
            if event.is_none() {
                tracing::warn!(
                    id,
                    "skipping a stream entry that is not a valid event frame"
                );
            }
            return event.map(|event| (id, event));
        }
    }
    None
}

/// Writes published events in batches, retrying with backoff until Redis takes them.
async fn write_loop(
    shared: Arc<Shared>,
    mut conn: ConnectionManager,
    mut writes: mpsc::Receiver<Outgoing>,
) {
    let mut backoff = MIN_BACKOFF;
    while let Some(first) = writes.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match writes.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        loop {
            let mut pipe = ::redis::pipe();
            for outgoing in &batch {
                pipe.cmd("EVAL")
                    .arg(PUBLISH)
                    .arg(2)
                    .arg(&shared.seq_key)
                    .arg(shared.stream_key(&outgoing.topic))
                    .arg(outgoing.frame.as_ref())
                    .arg(shared.max_len);
            }
            match pipe.query_async::<Vec<u64>>(&mut conn).await {
                Ok(ids) => {
                    if !shared.healthy.swap(true, Ordering::AcqRel) {
                        tracing::info!(address = %shared.address, "redis writes work again");
                    }
                    backoff = MIN_BACKOFF;
                    for (outgoing, id) in batch.drain(..).zip(ids) {
                        let _ = outgoing.ack.send(id);
                    }
                    break;
                }
                Err(err) => {
                    if shared.write_log.due() {
                        tracing::warn!(address = %shared.address, %err, waiting = batch.len(), "redis write failed; retrying");
                    }
                    *shared
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(err));
                    shared.healthy.store(false, Ordering::Release);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A watched topic: the last id read from its stream, and the generation of its watch.
struct Watched {
    position: u64,
    generation: u64,
}

/// Why a reader session stopped.
enum Stop {
    /// Redis failed: reconnect.
    Redis(RedisError),
    /// The hub is gone.
    Closed,
}

impl From<RedisError> for Stop {
    fn from(err: RedisError) -> Self {
        Stop::Redis(err)
    }
}

/// The reader's state, kept across reconnections.
struct Reader {
    shared: Arc<Shared>,
    deliveries: mpsc::Sender<Delivery>,
    watched: HashMap<Arc<str>, Watched>,
    /// The newest id delivered to the hub (or that the hub was moved up to).
    position: u64,
}

/// Delivers the events of every watched topic, from every instance, in id order.
///
/// The hub's newest id follows the shared counter: a sync reads the counter and what the
/// watched streams hold up to it in one transaction, delivers that, and moves the hub up
/// to the counter; it runs after every (re)connection, before a topic is watched, and
/// after every idle second. A topic is watched from the counter right after a sync. A
/// subscriber starts after the hub's newest id when it subscribed, and replays from the
/// streams what lies between that and where its topics are watched from: it misses
/// nothing published after it subscribed.
async fn read_loop(shared: Arc<Shared>, deliveries: mpsc::Sender<Delivery>) {
    let mut reader = Reader {
        shared,
        deliveries,
        watched: HashMap::new(),
        position: 0,
    };
    let mut backoff = MIN_BACKOFF;
    while !reader.deliveries.is_closed() {
        let err = match reader.connect().await {
            Ok((mut conn, client_id)) => {
                backoff = MIN_BACKOFF;
                tracing::debug!(address = %reader.shared.address, "redis reader connected");
                match reader.session(&mut conn, client_id).await {
                    Stop::Closed => return,
                    Stop::Redis(err) => err,
                }
            }
            Err(err) => err,
        };
        if reader.shared.read_log.due() {
            tracing::warn!(address = %reader.shared.address, %err, "redis reader failed; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Reader {
    /// The reader's own connection (a blocking `XREAD` holds it) and its client id.
    async fn connect(&self) -> Result<(MultiplexedConnection, u64), RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
        let mut conn = self
            .shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let client_id: u64 = ::redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await?;
        Ok((conn, client_id))
    }

    async fn session(&mut self, conn: &mut MultiplexedConnection, client_id: u64) -> Stop {
        match self.run(conn, client_id).await {
            Ok(never) => match never {},
            Err(stop) => stop,
        }
    }

    async fn run(
        &mut self,
        conn: &mut MultiplexedConnection,
        client_id: u64,
    ) -> Result<std::convert::Infallible, Stop> {
        let mut synced = false;
        loop {
            if self.deliveries.is_closed() {
                return Err(Stop::Closed);
            }
            let added = self.update_watches();
            if !synced || !added.is_empty() {
                self.sync(conn).await?;
                synced = true;
            }
            for (topic, generation) in added {
                let after = self.position;
                self.watched.insert(
                    topic.clone(),
                    Watched {
                        position: after,
                        generation,
                    },
                );
                self.send(Delivery::Covered {
                    topic,
                    generation,
                    after,
                })
                .await?;
            }
            if self.watched.is_empty() {
                // Idle: sync now and then, so the hub's newest id stays near the counter
                // and a new subscriber starts close to where the log stands.
                tokio::select! {
                    () = self.shared.wanted_changed.notified() => {}
                    () = tokio::time::sleep(BLOCK) => synced = false,
                }
                continue;
            }
            let command = self.xread(Some(BLOCK));
            let read = command.query_async::<Value>(conn);
            tokio::pin!(read);
            let result = tokio::select! {
                result = &mut read => result,
                () = self.shared.wanted_changed.notified() => {
                    // Wake the blocked read and finish it; the next round watches.
                    let _: Result<Value, _> = ::redis::cmd("CLIENT")
                        .arg("UNBLOCK")
                        .arg(client_id)
                        .query_async(&mut self.shared.reads.clone())
                        .await;
                    (&mut read).await
                }
            };
            match result? {
                // Nothing new for a whole block: sync, as when idle.
                Value::Nil => synced = false,
                reply => {
                    self.deliver(reply).await?;
                }
            }
        }
    }

    async fn send(&self, delivery: Delivery) -> Result<(), Stop> {
        self.deliveries
            .send(delivery)
            .await
            .map_err(|_| Stop::Closed)
    }

    /// Applies changes to the wanted topics: forgets those unwatched, and returns those
    /// to watch (new, or watched again under a new generation).
    fn update_watches(&mut self) -> Vec<(Arc<str>, u64)> {
        if !self.shared.wanted_dirty.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let wanted = self
            .shared
            .wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.watched.retain(|topic, _| wanted.contains_key(topic));
        wanted
            .iter()
            .filter(|(topic, generation)| {
                self.watched
                    .get(*topic)
                    .is_none_or(|w| w.generation != **generation)
            })
            .map(|(topic, generation)| (topic.clone(), *generation))
            .collect()
    }

    /// Reads the counter and the watched streams up to it in one transaction and
    /// delivers them, until nothing is left below the counter; then moves the hub up to
    /// it.
    async fn sync(&mut self, conn: &mut MultiplexedConnection) -> Result<(), Stop> {
        loop {
            let mut pipe = ::redis::pipe();
            pipe.atomic().cmd("GET").arg(&self.shared.seq_key);
            if !self.watched.is_empty() {
                pipe.add_command(self.xread(None));
            }
            let mut replies: Vec<Value> = pipe.query_async(conn).await?;
            let newest = replies.first().and_then(integer).unwrap_or(0);
            let complete = if replies.len() > 1 {
                self.deliver(replies.pop().expect("two replies")).await?
            } else {
                true
            };
            if complete {
                if newest > self.position {
                    self.position = newest;
                    self.send(Delivery::Advance(newest)).await?;
                }
                return Ok(());
            }
        }
    }

    /// `XREAD` over every watched topic from its position, waiting up to `block` for
    /// something new.
    fn xread(&self, block: Option<Duration>) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT").arg(BATCH);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        let topics: Vec<_> = self.watched.iter().collect();
        for (topic, _) in &topics {
            cmd.arg(self.shared.stream_key(topic));
        }
        for (_, watched) in &topics {
            cmd.arg(format!("{}-0", watched.position));
        }
        cmd
    }

    /// Delivers what one `XREAD` returned, in id order. A stream that returned a full
    /// batch may hold more: nothing above its last id is delivered this round, since
    /// another stream's later entries may have smaller ids than its unread ones.
    ///
    /// Returns whether the reply was complete (no stream hit the batch limit).
    async fn deliver(&mut self, reply: Value) -> Result<bool, Stop> {
        let streams: Vec<(Value, Value)> = match reply {
            Value::Nil => return Ok(true),
            Value::Array(streams) => streams
                .into_iter()
                .filter_map(|stream| match stream {
                    Value::Array(mut pair) if pair.len() == 2 => {
                        let entries = pair.pop()?;
                        Some((pair.pop()?, entries))
                    }
                    _ => None,
                })
                .collect(),
            Value::Map(pairs) => pairs,
            _ => return Ok(true),
        };
        let mut entries: Vec<(u64, Arc<str>, Option<Event>)> = Vec::new();
        let mut bound = u64::MAX;
        for (key, stream_entries) in streams {
            let Value::BulkString(key) = key else {
                continue;
            };
            let Some(topic) = std::str::from_utf8(&key)
                .ok()
                .and_then(|k| k.strip_prefix(self.shared.stream_prefix.as_str()))
                .and_then(|t| self.watched.get_key_value(t).map(|(t, _)| t.clone()))
            else {
                continue;
            };
            let Value::Array(stream_entries) = stream_entries else {
                continue;
            };
            let full = stream_entries.len() >= BATCH;
            let mut last = 0;
            for entry in stream_entries {
                let id = match &entry {
                    Value::Array(parts) => parts.first().and_then(entry_id),
                    _ => None,
                };
                let Some(id) = id else { continue };
                last = id;
                entries.push((id, topic.clone(), parse_entry(entry).map(|(_, e)| e)));
            }
            if full {
                bound = bound.min(last);
            }
        }
        entries.sort_by_key(|(id, ..)| *id);
        let mut batch = Vec::with_capacity(entries.len());
        for (id, topic, event) in entries {
            if id > bound {
                break;
            }
            if let Some(watched) = self.watched.get_mut(&topic) {
                watched.position = id;
            }
            self.position = self.position.max(id);
            if let Some(event) = event {
                batch.push((id, topic, event));
            }
        }
        if !batch.is_empty() {
            self.send(Delivery::Events(batch)).await?;
        }
        Ok(bound == u64::MAX)
    }
}
