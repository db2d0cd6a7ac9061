//! What the storage's tasks share: the connection for reads, the watched topics, the
//! health of writes, and throttled logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Client, RedisError, Value};
use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use super::script::{HISTORY, parse_history};
use crate::hub::log::Page;

pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A failed connection is logged at most once per this period, per kind of work.
pub(super) const LOG_PERIOD: Duration = Duration::from_secs(10);
/// Most entries read from one stream per `XREAD`, and most events per write batch.
pub(super) const BATCH: usize = 512;

pub(super) struct Shared {
    pub(super) client: Client,
    /// Where Redis is, for the logs.
    pub(super) address: String,
    pub(super) seq_key: String,
    pub(super) stream_prefix: String,
    pub(super) max_len: usize,
    /// False while the writer cannot reach Redis: publishing fails at once.
    pub(super) healthy: AtomicBool,
    /// The error of the writer's last failed attempt.
    pub(super) last_error: Mutex<Option<Arc<RedisError>>>,
    /// History reads, and `CLIENT UNBLOCK` for the reader.
    pub(super) reads: ConnectionManager,
    /// Topics with local subscribers, and the generation of their watch: bounded by
    /// the topics, however often they are watched and unwatched while Redis is down.
    pub(super) wanted: Mutex<HashMap<Arc<str>, u64>>,
    /// Set with `wanted_changed` when `wanted` changes.
    pub(super) wanted_dirty: AtomicBool,
    pub(super) wanted_changed: Notify,
    pub(super) write_log: Throttle,
    pub(super) read_log: Throttle,
    pub(super) history_log: Throttle,
}

pub(super) struct Outgoing {
    pub(super) topic: Arc<str>,
    pub(super) frame: Bytes,
    pub(super) ack: oneshot::Sender<u64>,
}

impl Shared {
    pub(super) fn stream_key(&self, topic: &str) -> String {
        format!("{}{}", self.stream_prefix, topic)
    }

    pub(super) fn want(&self, change: impl FnOnce(&mut HashMap<Arc<str>, u64>)) {
        change(&mut self.wanted.lock().unwrap_or_else(PoisonError::into_inner));
        self.wanted_dirty.store(true, Ordering::Release);
        self.wanted_changed.notify_one();
    }

    /// One page of history: `None` if the reply is not what the script returns.
    pub(super) async fn page_once(
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
pub(super) struct Throttle(Mutex<Option<std::time::Instant>>);

impl Throttle {
    pub(super) fn due(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::time::Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < LOG_PERIOD) {
            return false;
        }
        *last = Some(now);
        true
    }
}
