//! The reader: delivers the events of every watched topic, from every instance, in id
//! order, and tells the hub when the log went back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, RedisError, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::epoch::establish;
use super::reply::{Epoch, integer, parse_entry, xread_streams};
use super::shared::{BATCH, Held, MAX_BACKOFF, MIN_BACKOFF, Shared, lock};
use crate::Event;
use crate::hub::deliveries::Applier;
use crate::hub::log::Delivery;

/// How long the reader blocks in one `XREAD`.
const BLOCK: Duration = Duration::from_millis(1000);

/// What the reader keeps between runs (a runtime that goes away drops the task, not
/// this).
#[derive(Default)]
pub(super) struct ReaderState {
    watched: HashMap<Arc<str>, Watched>,
    /// The newest id delivered to the hub (or that the hub was moved up to).
    position: u64,
    /// The start of the epoch the hub reads in (0 before the first).
    announced: u64,
    /// The id of the last reset delivered.
    reset: u64,
}

/// A watched topic: the last id read from its stream, the generation of its watch, and
/// the id it is delivered after.
struct Watched {
    position: u64,
    generation: u64,
    from: u64,
}

/// Why a reader session stopped.
enum Stop {
    /// Redis failed: reconnect.
    Redis(RedisError),
    /// The hub or the storage is gone.
    Closed,
}

impl From<RedisError> for Stop {
    fn from(err: RedisError) -> Self {
        Stop::Redis(err)
    }
}

struct Reader<'a> {
    shared: &'a Shared,
    deliveries: mpsc::Sender<Delivery>,
    stop: CancellationToken,
    state: Held<'a, ReaderState>,
}

/// Delivers the events of every watched topic, from every instance, in id order, until
/// `stop` or until the hub is gone.
///
/// The hub's newest id follows the shared counter: a sync reads the counter, the epoch
/// and what the watched streams hold up to it in one transaction, delivers that, and
/// moves the hub up to the counter; it runs after every (re)connection, before a topic
/// is watched, and after every idle second. A topic is watched from the counter right
/// after a sync. A subscriber starts after the hub's newest id when it subscribed, and
/// replays from the streams what lies between that and where its topics are watched
/// from: it misses nothing published after it subscribed.
///
/// When the log went back (the epoch changed, or the counter is below what was
/// delivered), the reader establishes the epoch, delivers the reset under its start,
/// and reads on from there.
pub(super) async fn read_loop(
    shared: Arc<Shared>,
    deliveries: mpsc::Sender<Delivery>,
    applier: Applier,
    stop: CancellationToken,
) {
    let Some(state) = Held::take(&shared.reader) else {
        return;
    };
    let mut reader = Reader {
        shared: &shared,
        deliveries,
        stop,
        state,
    };
    if let Err(Stop::Closed) = reader.resume(&applier).await {
        return;
    }
    let mut backoff = MIN_BACKOFF;
    while !reader.closed() {
        let err = match reader.connect().await {
            Ok((mut conn, client_id)) => {
                backoff = MIN_BACKOFF;
                tracing::debug!(address = %shared.address, "redis reader connected");
                match reader.run(&mut conn, client_id).await {
                    Ok(never) => match never {},
                    Err(Stop::Closed) => return,
                    Err(Stop::Redis(err)) => err,
                }
            }
            Err(err) => err,
        };
        crate::metrics::redis_reconnect("reader");
        if shared.read_log.due() {
            tracing::warn!(address = %shared.address, %err, "redis reader failed; reconnecting");
        }
        tokio::select! {
            () = reader.stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Reader<'_> {
    fn closed(&self) -> bool {
        self.stop.is_cancelled() || self.deliveries.is_closed()
    }

    /// Goes on from where an earlier run stopped: reads again what the hub had not
    /// applied, and confirms the watches again (deliveries in flight were lost).
    async fn resume(&mut self, applier: &Applier) -> Result<(), Stop> {
        let applied = applier.applied();
        let state = &mut *self.state;
        state.position = state.position.min(applied);
        for watched in state.watched.values_mut() {
            // Never before where its watch began: the hub needs nothing older of it.
            watched.position = watched.position.min(applied).max(watched.from);
        }
        let reset = (state.reset > applied).then_some(state.reset);
        let covered: Vec<Delivery> = state
            .watched
            .iter()
            .map(|(topic, w)| Delivery::Covered {
                topic: topic.clone(),
                generation: w.generation,
                after: w.from,
            })
            .collect();
        self.shared.wanted_dirty.store(true, Ordering::Release);
        if let Some(id) = reset {
            self.send(Delivery::Reset { id }).await?;
        }
        for delivery in covered {
            self.send(delivery).await?;
        }
        Ok(())
    }

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

    async fn run(
        &mut self,
        conn: &mut MultiplexedConnection,
        client_id: u64,
    ) -> Result<std::convert::Infallible, Stop> {
        let mut synced = false;
        let mut lag = crate::metrics::ReadLag::default();
        loop {
            if self.closed() {
                return Err(Stop::Closed);
            }
            // The writer may have found a new epoch: the hub hears of it first.
            let start = self.shared.epoch.start();
            if self.state.announced != 0 && start > self.state.announced {
                self.take_epoch(start).await?;
            }
            let added = self.update_watches();
            if !synced || !added.is_empty() {
                self.sync(conn).await?;
                synced = true;
            }
            for (topic, generation) in added {
                let after = self.state.position;
                self.state.watched.insert(
                    topic.clone(),
                    Watched {
                        position: after,
                        generation,
                        from: after,
                    },
                );
                self.send(Delivery::Covered {
                    topic,
                    generation,
                    after,
                })
                .await?;
            }
            if self.state.watched.is_empty() {
                // Idle: sync now and then, so the hub's newest id stays near the counter
                // and a new subscriber starts close to where the log stands.
                tokio::select! {
                    () = self.stop.cancelled() => return Err(Stop::Closed),
                    () = self.shared.wanted_changed.notified() => {}
                    () = tokio::time::sleep(BLOCK) => synced = false,
                }
                continue;
            }
            let command = self.xread(Some(BLOCK));
            let result = {
                let read = command.query_async::<Value>(conn);
                tokio::pin!(read);
                tokio::select! {
                    result = &mut read => result,
                    () = self.stop.cancelled() => return Err(Stop::Closed),
                    () = self.shared.wanted_changed.notified() => {
                        // Wake the blocked read and finish it; the next round watches.
                        if let Some(mut reads) = self.shared.reads() {
                            let _: Result<Value, _> = ::redis::cmd("CLIENT")
                                .arg("UNBLOCK")
                                .arg(client_id)
                                .query_async(&mut reads)
                                .await;
                        }
                        (&mut read).await
                    }
                }
            };
            match result? {
                // Nothing new for a whole block: sync, as when idle.
                Value::Nil => {
                    lag.read(true);
                    synced = false;
                }
                reply => {
                    let complete = self.deliver(conn, reply).await?;
                    lag.read(complete);
                    if !complete {
                        synced = false;
                    }
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

    /// The hub reads in the epoch that began at `start` from now on: if it read in an
    /// earlier one, the log went back, and the hub gets the reset under `start`; every
    /// topic is read on from there.
    async fn take_epoch(&mut self, start: u64) -> Result<(), Stop> {
        let state = &mut *self.state;
        if start <= state.announced {
            return Ok(());
        }
        let earlier = state.announced != 0;
        state.announced = start;
        if earlier {
            for watched in state.watched.values_mut() {
                watched.position = watched.position.max(start);
            }
            state.position = state.position.max(start);
            state.reset = start;
            self.send(Delivery::Reset { id: start }).await?;
        }
        Ok(())
    }

    /// Applies changes to the wanted topics: forgets those unwatched, and returns those
    /// to watch (new, or watched again under a new generation).
    fn update_watches(&mut self) -> Vec<(Arc<str>, u64)> {
        if !self.shared.wanted_dirty.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let wanted = lock(&self.shared.wanted);
        self.state
            .watched
            .retain(|topic, _| wanted.contains_key(topic));
        wanted
            .iter()
            .filter(|(topic, generation)| {
                self.state
                    .watched
                    .get(*topic)
                    .is_none_or(|w| w.generation != **generation)
            })
            .map(|(topic, generation)| (topic.clone(), *generation))
            .collect()
    }

    /// Reads the counter, the epoch and the watched streams up to the counter in one
    /// transaction and delivers them, until nothing is left below the counter; then
    /// moves the hub up to it. Takes up a new epoch first if the log went back.
    async fn sync(&mut self, conn: &mut MultiplexedConnection) -> Result<(), Stop> {
        loop {
            let mut pipe = ::redis::pipe();
            pipe.atomic()
                .cmd("GET")
                .arg(&self.shared.keys.seq)
                .cmd("GET")
                .arg(&self.shared.keys.epoch);
            if !self.state.watched.is_empty() {
                pipe.add_command(self.xread(None));
            }
            let mut replies: Vec<Value> = pipe.query_async(conn).await?;
            let newest = replies.first().and_then(integer).unwrap_or(0);
            let epoch = replies.get(1).and_then(Epoch::parse);
            let known = self.shared.epoch.current();
            if epoch.is_none() || epoch != known || newest < self.state.position {
                let epoch = establish(self.shared, conn).await?;
                self.take_epoch(epoch.start).await?;
                continue;
            }
            if let Some(known) = known {
                self.take_epoch(known.start).await?;
            }
            self.shared.epoch.saw(newest);
            let complete = match replies.len() {
                3 => {
                    self.deliver(conn, replies.pop().expect("three replies"))
                        .await?
                }
                _ => true,
            };
            if complete {
                if newest > self.state.position {
                    self.state.position = newest;
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
        let topics: Vec<_> = self.state.watched.iter().collect();
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
    /// Returns whether the reply was complete (no stream hit the batch limit, and no
    /// entry was written in an epoch newer than the hub's: then the epoch is taken up,
    /// and nothing of this reply delivered).
    async fn deliver(
        &mut self,
        conn: &mut MultiplexedConnection,
        reply: Value,
    ) -> Result<bool, Stop> {
        let Some(streams) = xread_streams(reply) else {
            return Ok(true);
        };
        // `(id, topic, key, event)`: an entry without a valid frame moves the position.
        type Read = (u64, Arc<str>, Option<Arc<str>>, Option<Event>);
        let mut entries: Vec<Read> = Vec::new();
        let mut bound = u64::MAX;
        let mut newer_epoch = false;
        let announced = self.state.announced;
        for (key, stream_entries) in streams {
            let Some((topic, watched)) = self
                .shared
                .topic_of(&key)
                .and_then(|t| self.state.watched.get_key_value(t))
            else {
                continue;
            };
            let full = stream_entries.len() >= BATCH;
            let mut last = 0;
            for entry in stream_entries {
                let Some(entry) = parse_entry(entry) else {
                    continue;
                };
                last = entry.id;
                newer_epoch |= announced != 0 && entry.epoch > announced;
                if entry.id > watched.position {
                    entries.push((entry.id, topic.clone(), entry.key, entry.event));
                }
            }
            if full {
                bound = bound.min(last);
            }
        }
        if newer_epoch {
            let epoch = establish(self.shared, conn).await?;
            self.take_epoch(epoch.start).await?;
            return Ok(false);
        }
        entries.sort_by_key(|(id, ..)| *id);
        let mut batch = Vec::with_capacity(entries.len());
        for (id, topic, key, event) in entries {
            if id > bound {
                break;
            }
            if let Some(watched) = self.state.watched.get_mut(&topic) {
                watched.position = id;
            }
            self.state.position = self.state.position.max(id);
            if let Some(event) = event {
                batch.push((id, topic, key, event));
            }
        }
        self.shared.epoch.saw(self.state.position);
        if !batch.is_empty() {
            self.send(Delivery::Events(batch)).await?;
        }
        Ok(bound == u64::MAX)
    }
}
