//! A shared [`Storage`] on Redis Streams: several server instances, one feed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use bytes::Bytes;
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::PublishError;
use super::storage::{Feed, GapReason, History, HistoryFuture, Published, Storage};
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
/// `p` of its first entry), and the entries in the range asked for: read together, so
/// they agree.
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
return {newest, trimmed, redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[2])}
";

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the reader blocks in one `XREAD`.
const BLOCK: Duration = Duration::from_millis(1000);
/// Most entries read from one stream per `XREAD`, and most events per write batch.
const BATCH: usize = 512;

/// A [`Hub`](crate::Hub) storage on Redis Streams, for several server instances that
/// serve one feed.
///
/// Each topic is a stream (`XADD ... MAXLEN ~ max_len`); a Lua script numbers every event
/// from one shared counter as it appends it, so ids order events across topics and
/// instances, and a browser can resume from its `Last-Event-ID` on any instance. Each
/// instance reads (`XREAD`) only the topics it has subscribers for, and fetches the
/// history a resuming subscriber missed with `XRANGE`; when Redis no longer holds all of
/// it, the subscriber receives the same reset event as with the in-memory hub.
///
/// While Redis is unreachable, open streams stay up (heartbeats go on),
/// [`Hub::publish`](crate::Hub::publish) returns an error at once, and both the writer
/// and the reader reconnect with backoff. Events already accepted are written once Redis
/// is back, and every instance then delivers what it missed from the streams, so no
/// acknowledged event is lost. Writes are at least once: if the connection drops after
/// Redis applied a write but before it answered, the retry appends the event again.
/// Run Redis with persistence (`appendonly yes`) so a restart keeps the counter and the
/// streams.
///
/// Build the hub inside a tokio runtime: the storage's tasks start with it.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_sse::Hub;
/// use tower_sse::hub::RedisStorage;
///
/// let storage = RedisStorage::new("redis://127.0.0.1:6379/")?.prefix("flights").max_len(10_000);
/// let hub = Hub::builder().storage(storage).build();
/// hub.publish("positions", tower_sse::Event::data("{}"))?.acknowledged().await?;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisStorage {
    inner: Arc<Inner>,
    writes: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    controls: Mutex<Option<mpsc::UnboundedReceiver<Control>>>,
}

struct Inner {
    client: Client,
    seq_key: String,
    stream_prefix: String,
    max_len: usize,
    writes: mpsc::Sender<Outgoing>,
    controls: mpsc::UnboundedSender<Control>,
    /// False while the writer cannot reach Redis: publishing fails at once.
    healthy: AtomicBool,
    /// For history reads.
    reads: OnceCell<MultiplexedConnection>,
}

struct Outgoing {
    topic: Arc<str>,
    frame: Bytes,
    ack: oneshot::Sender<Result<u64, PublishError>>,
}

enum Control {
    Watch(Arc<str>, u64),
    Unwatch(Arc<str>),
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("seq_key", &self.inner.seq_key)
            .field("max_len", &self.inner.max_len)
            .field("healthy", &self.inner.healthy)
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
        let client = Client::open(url)?;
        Ok(Self::with_settings(client, "tower-sse", 10_000, 10_000))
    }

    fn with_settings(client: Client, prefix: &str, max_len: usize, queue: usize) -> Self {
        let (writes, write_rx) = mpsc::channel(queue.max(1));
        let (controls, control_rx) = mpsc::unbounded_channel();
        RedisStorage {
            inner: Arc::new(Inner {
                client,
                // The braces keep every key of a prefix in one Redis Cluster slot, as
                // the scripts require.
                seq_key: format!("{{{prefix}}}:seq"),
                stream_prefix: format!("{{{prefix}}}:topic:"),
                max_len,
                writes,
                controls,
                healthy: AtomicBool::new(true),
                reads: OnceCell::new(),
            }),
            writes: Mutex::new(Some(write_rx)),
            controls: Mutex::new(Some(control_rx)),
        }
    }

    /// Sets the prefix of every key (default `tower-sse`): instances that share a prefix
    /// share a feed.
    ///
    /// ```
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?.prefix("flights");
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn prefix(self, prefix: &str) -> Self {
        let queue = self.inner.writes.max_capacity();
        Self::with_settings(self.inner.client.clone(), prefix, self.inner.max_len, queue)
    }

    /// Sets about how many events each topic's stream keeps (`MAXLEN ~`, default 10,000).
    ///
    /// ```
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?.max_len(1000);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn max_len(self, max_len: usize) -> Self {
        let queue = self.inner.writes.max_capacity();
        let prefix = self.prefix_name();
        Self::with_settings(self.inner.client.clone(), &prefix, max_len.max(1), queue)
    }

    /// Sets how many published events may wait to be written (default 10,000); beyond
    /// that, publishing fails.
    ///
    /// ```
    /// let storage = tower_sse::hub::RedisStorage::new("redis://127.0.0.1/")?.queue(1000);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn queue(self, events: usize) -> Self {
        let prefix = self.prefix_name();
        Self::with_settings(
            self.inner.client.clone(),
            &prefix,
            self.inner.max_len,
            events,
        )
    }

    fn prefix_name(&self) -> String {
        let key = &self.inner.seq_key;
        key[1..key.len() - "}:seq".len()].to_owned()
    }
}

impl Inner {
    fn stream_key(&self, topic: &str) -> String {
        format!("{}{}", self.stream_prefix, topic)
    }

    async fn connect(
        &self,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

fn unavailable(err: impl fmt::Display) -> PublishError {
    PublishError::Unavailable(err.to_string())
}

impl Storage for RedisStorage {
    fn attach(&self, feed: Feed) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("RedisStorage needs a tokio runtime: build the hub inside one");
            self.inner.healthy.store(false, Ordering::Release);
            return;
        };
        let writes = self
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let controls = self
            .controls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(writes), Some(controls)) = (writes, controls) {
            runtime.spawn(write_loop(self.inner.clone(), writes));
            runtime.spawn(read_loop(self.inner.clone(), feed, controls));
        }
    }

    fn publish(&self, topic: &str, event: Event, _feed: &Feed) -> Result<Published, PublishError> {
        if !self.inner.healthy.load(Ordering::Acquire) {
            return Err(unavailable("redis is unreachable"));
        }
        let (ack, acked) = oneshot::channel();
        let outgoing = Outgoing {
            topic: Arc::from(topic),
            frame: event.into_bytes(),
            ack,
        };
        match self.inner.writes.try_send(outgoing) {
            Ok(()) => Ok(Published::pending(acked)),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(unavailable("redis write queue is full"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(unavailable("redis storage stopped")),
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn watch(&self, topic: &str, generation: u64) {
        let _ = self
            .inner
            .controls
            .send(Control::Watch(Arc::from(topic), generation));
    }

    fn unwatch(&self, topic: &str, _generation: u64) {
        let _ = self.inner.controls.send(Control::Unwatch(Arc::from(topic)));
    }

    fn history(&self, topic: &str, after: u64, upto: u64) -> HistoryFuture {
        let inner = self.inner.clone();
        let key = inner.stream_key(topic);
        Box::pin(async move {
            let mut conn = inner
                .reads
                .get_or_try_init(|| inner.connect(Duration::from_secs(5)))
                .await
                .map_err(unavailable)?
                .clone();
            let start = format!("{}-0", after.saturating_add(1));
            let end = format!("{upto}-0");
            let reply: Value = ::redis::cmd("EVAL")
                .arg(HISTORY)
                .arg(2)
                .arg(&inner.seq_key)
                .arg(&key)
                .arg(start)
                .arg(end)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            parse_history(reply, after)
                .ok_or_else(|| unavailable("unexpected reply to the history script"))
        })
    }
}

fn parse_history(reply: Value, after: u64) -> Option<History> {
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
        return Some(History::Gap(GapReason::Unknown));
    }
    if trimmed > after {
        return Some(History::Gap(GapReason::Evicted));
    }
    let Value::Array(entries) = entries else {
        return None;
    };
    let mut events = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some((id, event)) = parse_entry(entry) {
            events.push((id, event));
        }
    }
    Some(History::Events(events))
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
async fn write_loop(inner: Arc<Inner>, mut writes: mpsc::Receiver<Outgoing>) {
    let mut conn: Option<MultiplexedConnection> = None;
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
            match write_batch(&inner, &mut conn, &batch).await {
                Ok(ids) => {
                    inner.healthy.store(true, Ordering::Release);
                    backoff = MIN_BACKOFF;
                    for (outgoing, id) in batch.drain(..).zip(ids) {
                        let _ = outgoing.ack.send(Ok(id));
                    }
                    break;
                }
                Err(err) => {
                    if inner.healthy.swap(false, Ordering::AcqRel) {
                        tracing::warn!(%err, waiting = batch.len(), "redis write failed; retrying");
                    }
                    conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

async fn write_batch(
    inner: &Inner,
    conn: &mut Option<MultiplexedConnection>,
    batch: &[Outgoing],
) -> Result<Vec<u64>, RedisError> {
    if conn.is_none() {
        *conn = Some(inner.connect(Duration::from_secs(5)).await?);
    }
    let conn = conn.as_mut().expect("connected above");
    let mut pipe = ::redis::pipe();
    for outgoing in batch {
        pipe.cmd("EVAL")
            .arg(PUBLISH)
            .arg(2)
            .arg(&inner.seq_key)
            .arg(inner.stream_key(&outgoing.topic))
            .arg(outgoing.frame.as_ref())
            .arg(inner.max_len);
    }
    pipe.query_async(conn).await
}

/// Delivers the events of every watched topic, from every instance, in id order.
///
/// The hub's newest id follows the shared counter: a sync reads the counter and what the
/// watched streams hold up to it in one transaction, delivers that, and moves the hub up
/// to the counter; it runs at start, before a topic is watched, and after every idle
/// second. A topic is watched from the counter right after a sync. A subscriber starts
/// after the hub's newest id when it subscribed, and fetches from history what lies
/// between that and where its topics are watched from: it misses nothing published
/// after it subscribed, and may receive what was published up to about a second before.
async fn read_loop(inner: Arc<Inner>, feed: Feed, mut controls: mpsc::UnboundedReceiver<Control>) {
    // Position (last id read) of every watched topic.
    let mut watched: HashMap<Arc<str>, u64> = HashMap::new();
    let mut held: Vec<Control> = Vec::new();
    let mut backoff = MIN_BACKOFF;
    while feed.is_alive() {
        let connected = async {
            let mut conn = inner.connect(BLOCK + Duration::from_secs(5)).await?;
            let unblocker = inner.connect(Duration::from_secs(2)).await?;
            let client_id: u64 = ::redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await?;
            Ok::<_, RedisError>((conn, client_id, unblocker))
        }
        .await;
        let (mut conn, client_id, mut unblocker) = match connected {
            Ok(parts) => parts,
            Err(err) => {
                tracing::warn!(%err, "redis reader cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        tracing::debug!("redis reader connected");
        let mut synced = false;
        let failed = loop {
            while let Ok(control) = controls.try_recv() {
                held.push(control);
            }
            let watches = held.iter().any(|c| matches!(c, Control::Watch(..)));
            if !synced || watches {
                if let Err(err) = sync(&mut conn, &inner, &mut watched, &feed).await {
                    break err;
                }
                synced = true;
            }
            for control in held.drain(..) {
                match control {
                    Control::Watch(topic, generation) => {
                        let start = feed.last_id();
                        watched.insert(topic.clone(), start);
                        feed.covered(&topic, generation, start);
                    }
                    Control::Unwatch(topic) => {
                        watched.remove(&topic);
                    }
                }
            }
            if watched.is_empty() {
                // Idle: sync now and then, so the hub's newest id stays near the
                // counter and a new subscriber starts close to where the log stands.
                match tokio::time::timeout(BLOCK, controls.recv()).await {
                    Ok(Some(control)) => held.push(control),
                    Ok(None) => return,
                    Err(_) => synced = false,
                }
                continue;
            }
            let command = xread(&inner, &watched, Some(BLOCK));
            let read = command.query_async::<Value>(&mut conn);
            tokio::pin!(read);
            let result = tokio::select! {
                result = &mut read => result,
                Some(control) = controls.recv() => {
                    // Wake the blocked read and finish it; the next round syncs and
                    // watches the new topic.
                    held.push(control);
                    let _: Result<Value, _> = ::redis::cmd("CLIENT")
                        .arg("UNBLOCK")
                        .arg(client_id)
                        .query_async(&mut unblocker)
                        .await;
                    (&mut read).await
                }
            };
            match result {
                // Nothing new for a whole block: sync, as when idle.
                Ok(Value::Nil) => synced = false,
                Ok(reply) => {
                    deliver(reply, &inner, &mut watched, &feed);
                }
                Err(err) => break err,
            }
        };
        tracing::warn!(err = %failed, "redis read failed; reconnecting");
        tokio::time::sleep(backoff).await;
    }
}

/// Reads the counter and the watched streams up to it in one transaction and delivers
/// them, until nothing is left below the counter; then moves the hub up to it.
async fn sync(
    conn: &mut MultiplexedConnection,
    inner: &Inner,
    watched: &mut HashMap<Arc<str>, u64>,
    feed: &Feed,
) -> Result<(), RedisError> {
    loop {
        let mut pipe = ::redis::pipe();
        pipe.atomic().cmd("GET").arg(&inner.seq_key);
        if !watched.is_empty() {
            pipe.add_command(xread(inner, watched, None));
        }
        let mut replies: Vec<Value> = pipe.query_async(conn).await?;
        let newest = replies.first().and_then(integer).unwrap_or(0);
        let complete = if replies.len() > 1 {
            deliver(replies.pop().expect("two replies"), inner, watched, feed)
        } else {
            true
        };
        if complete {
            feed.advance(newest);
            return Ok(());
        }
    }
}

/// `XREAD` over every watched topic from its position, waiting up to `block` for
/// something new.
fn xread(inner: &Inner, watched: &HashMap<Arc<str>, u64>, block: Option<Duration>) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("XREAD");
    cmd.arg("COUNT").arg(BATCH);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis() as u64);
    }
    cmd.arg("STREAMS");
    let topics: Vec<_> = watched.iter().collect();
    for (topic, _) in &topics {
        cmd.arg(inner.stream_key(topic));
    }
    for (_, position) in &topics {
        cmd.arg(format!("{position}-0"));
    }
    cmd
}

/// Delivers what one `XREAD` returned, in id order. A stream that returned a full batch
/// may hold more: nothing above its last id is delivered this round, since another
/// stream's later entries may have smaller ids than its unread ones.
///
/// Returns whether the reply was complete (no stream hit the batch limit).
fn deliver(reply: Value, inner: &Inner, watched: &mut HashMap<Arc<str>, u64>, feed: &Feed) -> bool {
    let streams: Vec<(Value, Value)> = match reply {
        Value::Nil => return true,
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
        _ => return true,
    };
    let mut entries: Vec<(u64, Arc<str>, Option<Event>)> = Vec::new();
    let mut bound = u64::MAX;
    for (key, stream_entries) in streams {
        let Value::BulkString(key) = key else {
            continue;
        };
        let Some(topic) = std::str::from_utf8(&key)
            .ok()
            .and_then(|k| k.strip_prefix(inner.stream_prefix.as_str()))
            .and_then(|t| watched.get_key_value(t).map(|(t, _)| t.clone()))
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
    for (id, topic, event) in entries {
        if id > bound {
            break;
        }
        if let Some(position) = watched.get_mut(&topic) {
            *position = id;
        }
        if let Some(event) = event {
            feed.deliver(&topic, id, event);
        }
    }
    bound == u64::MAX
}
