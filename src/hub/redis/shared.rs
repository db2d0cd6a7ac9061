//! What the storage's tasks share: the keys, the connection for reads, the watched
//! topics, the health of writes, each task's state between runs, and throttled logs.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError};
use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use super::epoch::EpochState;
use super::reader::ReaderState;
use super::writer::WriterState;
use crate::hub::PublishError;

pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A failed connection is logged at most once per this period, per kind of work.
pub(super) const LOG_PERIOD: Duration = Duration::from_secs(10);
/// Most entries read from one stream per `XREAD`, and most events per write batch.
pub(super) const BATCH: usize = 512;

/// The keys of one prefix `P` (see `script.rs`).
pub(super) struct Keys {
    pub(super) seq: String,
    pub(super) epoch: String,
    pub(super) marks: String,
    /// This instance's writer's recent writes.
    pub(super) done: String,
    pub(super) stream_prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, instance: u64) -> Self {
        // The braces keep every key of a prefix in one Redis Cluster slot, as the
        // scripts require.
        Keys {
            seq: format!("{{{prefix}}}:seq"),
            epoch: format!("{{{prefix}}}:epoch"),
            marks: format!("{{{prefix}}}:marks"),
            done: format!("{{{prefix}}}:writer:{instance:016x}"),
            stream_prefix: format!("{{{prefix}}}:topic:"),
        }
    }
}

pub(super) struct Shared {
    pub(super) client: Client,
    /// Where Redis is, for the logs.
    pub(super) address: String,
    pub(super) keys: Keys,
    /// Names this instance's epochs and writer apart from every other's.
    pub(super) instance: u64,
    pub(super) max_len: usize,
    pub(super) ttl: Duration,
    /// False while the writer cannot reach Redis: publishing fails at once.
    pub(super) healthy: AtomicBool,
    /// The error of the writer's last failed attempt.
    pub(super) last_error: Mutex<Option<Arc<RedisError>>>,
    /// History reads, and `CLIENT UNBLOCK` for the reader; made anew with the reader.
    reads: Mutex<Option<ConnectionManager>>,
    /// Topics with local subscribers, and the generation of their watch: bounded by
    /// the topics, however often they are watched and unwatched while Redis is down.
    pub(super) wanted: Mutex<HashMap<Arc<str>, u64>>,
    /// Set with `wanted_changed` when `wanted` changes.
    pub(super) wanted_dirty: AtomicBool,
    pub(super) wanted_changed: Notify,
    pub(super) epoch: EpochState,
    /// The writer's and the reader's state while no task runs them.
    pub(super) writer: Mutex<Option<WriterState>>,
    pub(super) reader: Mutex<Option<ReaderState>>,
    pub(super) write_log: Throttle,
    pub(super) reject_log: Throttle,
    pub(super) read_log: Throttle,
    pub(super) history_log: Throttle,
}

/// A published event on its way to Redis.
pub(super) struct Outgoing {
    pub(super) topic: Arc<str>,
    /// Its conflation key, stored with it.
    pub(super) key: Option<Box<str>>,
    pub(super) frame: Bytes,
    /// The writer's number for it (given when the writer takes it): retries of a write
    /// carry the same number, so Redis stores it once.
    pub(super) seq: u64,
    pub(super) ack: oneshot::Sender<Result<u64, PublishError>>,
}

impl Shared {
    pub(super) fn new(client: Client, prefix: &str, max_len: usize, ttl: Duration) -> Self {
        let address = client.get_connection_info().addr().to_string();
        // Random enough to tell instances apart: the keys of std's hasher are random, and
        // differ for each `RandomState`.
        let instance =
            RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
        Shared {
            client,
            address,
            keys: Keys::new(prefix, instance),
            instance,
            max_len,
            ttl,
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            reads: Mutex::new(None),
            wanted: Mutex::new(HashMap::new()),
            wanted_dirty: AtomicBool::new(false),
            wanted_changed: Notify::new(),
            epoch: EpochState::default(),
            writer: Mutex::new(None),
            reader: Mutex::new(None),
            write_log: Throttle::default(),
            reject_log: Throttle::default(),
            read_log: Throttle::default(),
            history_log: Throttle::default(),
        }
    }

    pub(super) fn stream_key(&self, topic: &str) -> String {
        format!("{}{}", self.keys.stream_prefix, topic)
    }

    /// The topic of a stream key of this prefix.
    pub(super) fn topic_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.keys.stream_prefix.as_str())
    }

    /// `ttl` in milliseconds, as the scripts take it.
    pub(super) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(super) fn want(&self, change: impl FnOnce(&mut HashMap<Arc<str>, u64>)) {
        change(&mut lock(&self.wanted));
        self.wanted_dirty.store(true, Ordering::Release);
        self.wanted_changed.notify_one();
    }

    /// The connection for reads, once the tasks started.
    pub(super) fn reads(&self) -> Option<ConnectionManager> {
        lock(&self.reads).clone()
    }

    /// A new connection for reads, made on the current runtime (its connection lives
    /// there).
    pub(super) fn renew_reads(&self) -> Result<(), RedisError> {
        *lock(&self.reads) = Some(manager(&self.client, Duration::from_secs(5))?);
        Ok(())
    }

    /// The writer could not reach Redis: publishing fails at once until it can.
    pub(super) fn unreachable(&self, err: RedisError) {
        *lock(&self.last_error) = Some(Arc::new(err));
        self.healthy.store(false, Ordering::Release);
    }

    /// The writer reached Redis.
    pub(super) fn reachable(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(address = %self.address, "redis writes work again");
        }
    }

    /// Why publishing fails now, if it does.
    pub(super) fn unhealthy(&self) -> Option<PublishError> {
        if self.healthy.load(Ordering::Acquire) {
            return None;
        }
        let source: Arc<dyn std::error::Error + Send + Sync> = match &*lock(&self.last_error) {
            Some(err) => err.clone(),
            None => Arc::new(std::io::Error::from(std::io::ErrorKind::NotConnected)),
        };
        Some(PublishError::Unreachable(source))
    }
}

/// A `ConnectionManager` that connects on first use and reconnects after every failure.
/// It lives on the runtime current when it is made.
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

/// A lock that keeps serving after a panic elsewhere: the data behind these is never
/// left half-written.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A task's state, taken from its slot while the task runs, and put back when the task
/// ends or is dropped (with its runtime), for the next task to go on from.
pub(super) struct Held<'a, T> {
    slot: &'a Mutex<Option<T>>,
    value: Option<T>,
}

impl<'a, T> Held<'a, T> {
    /// The state in `slot`; `None` if another task holds it.
    pub(super) fn take(slot: &'a Mutex<Option<T>>) -> Option<Self> {
        let value = lock(slot).take()?;
        Some(Held {
            slot,
            value: Some(value),
        })
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("held until dropped")
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("held until dropped")
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        *lock(self.slot) = self.value.take();
    }
}

/// Logs at most once per [`LOG_PERIOD`].
#[derive(Default)]
pub(super) struct Throttle(Mutex<Option<std::time::Instant>>);

impl Throttle {
    pub(super) fn due(&self) -> bool {
        let mut last = lock(&self.0);
        let now = std::time::Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < LOG_PERIOD) {
            return false;
        }
        *last = Some(now);
        true
    }
}
