//! The reader: delivers the events of every watched topic, from every instance, in id
//! order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, RedisError, Value};
use tokio::sync::mpsc;

use super::script::{entry_id, integer, parse_entry};
use super::shared::{BATCH, MAX_BACKOFF, MIN_BACKOFF, Shared};
use crate::Event;
use crate::hub::log::Delivery;

/// How long the reader blocks in one `XREAD`.
const BLOCK: Duration = Duration::from_millis(1000);

/// A watched topic: the last id read from its stream, and the generation of its watch.
pub(super) struct Watched {
    position: u64,
    generation: u64,
}

/// Why a reader session stopped.
pub(super) enum Stop {
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
pub(super) struct Reader {
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
pub(super) async fn read_loop(shared: Arc<Shared>, deliveries: mpsc::Sender<Delivery>) {
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
