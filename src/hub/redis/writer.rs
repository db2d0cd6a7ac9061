//! The writer: publishes go to Redis in pipelined batches, and each event gets its own
//! outcome.
//!
//! A batch is one pipeline of `EVALSHA PUBLISH` calls, read back reply by reply:
//! - an id: the event is stored, its `acknowledged()` gives the id;
//! - an error Redis gives for this event (a key of another type, no permission, out of
//!   memory, a script error): its `acknowledged()` fails with
//!   [`PublishError::Rejected`], and nothing else is held back, rewritten or reordered;
//! - a state that passes (`LOADING`, `BUSY`, `READONLY`, ...) or a connection error: the
//!   events not yet stored are written again after a backoff, and publishing fails fast
//!   ([`PublishError::Unreachable`]) meanwhile;
//! - the epoch changed (the log went back): the epoch is established again, then the
//!   events are written again.
//!
//! A retried write is never stored twice: the script records each event's number with
//! its id, and after an attempt whose replies were lost the writer reads that record and
//! acknowledges what was stored before writing the rest again (see `script::PUBLISH`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{RedisError, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::epoch::establish;
use super::reply::{Outcome, malformed, publish_outcome};
use super::script::PUBLISH;
use super::shared::{BATCH, Held, MAX_BACKOFF, MIN_BACKOFF, Outgoing, Shared, manager};
use crate::hub::PublishError;

/// How long the writer waits for Redis's replies to a batch.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the writer keeps between runs (a runtime that goes away drops the task, not
/// this): the queue of published events, and the batch being written.
pub(super) struct WriterState {
    pub(super) queue: mpsc::Receiver<Outgoing>,
    /// In the order taken: those retried stay first.
    batch: Vec<Outgoing>,
    /// The batch was sent at least once.
    sent: bool,
    /// The replies of the last attempt were lost: some of the batch may be stored.
    uncertain: bool,
    /// The last number given to an event.
    numbered: u64,
}

impl WriterState {
    pub(super) fn new(queue: mpsc::Receiver<Outgoing>) -> Self {
        WriterState {
            queue,
            batch: Vec::new(),
            sent: false,
            uncertain: false,
            numbered: 0,
        }
    }
}

/// Writes published events in batches until `stop`, or until every publisher is gone.
pub(super) async fn write_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let Some(mut state) = Held::take(&shared.writer) else {
        return;
    };
    let mut conn = match manager(&shared.client, RESPONSE_TIMEOUT) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::error!(address = %shared.address, %err, "redis writer cannot start");
            return;
        }
    };
    let mut script: Option<String> = None;
    let mut backoff = MIN_BACKOFF;
    let mut depth = crate::metrics::QueueDepth::default();
    loop {
        if state.batch.is_empty() {
            let first = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                first = state.queue.recv() => first,
            };
            let Some(first) = first else { return };
            state.sent = false;
            state.take(first);
            while state.batch.len() < BATCH {
                match state.queue.try_recv() {
                    Ok(next) => state.take(next),
                    Err(_) => break,
                }
            }
        }
        depth.set(state.batch.len() + state.queue.len());
        let round = write_round(&shared, &mut conn, &mut script, &mut state).await;
        depth.set(state.batch.len() + state.queue.len());
        match round {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(err) => {
                if shared.write_log.due() {
                    tracing::warn!(address = %shared.address, %err, waiting = state.batch.len(), "redis write failed; retrying");
                }
                shared.unreachable(err);
                crate::metrics::redis_reconnect("writer");
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl WriterState {
    /// Numbers an event and adds it to the batch.
    fn take(&mut self, mut outgoing: Outgoing) {
        self.numbered += 1;
        outgoing.seq = self.numbered;
        self.batch.push(outgoing);
    }
}

/// Writes the batch once: acknowledges what Redis stored, fails what it refused, and
/// keeps in the batch what must be written again. An error means "retry after a
/// backoff": the connection failed, or Redis is in a state that passes.
async fn write_round(
    shared: &Shared,
    conn: &mut ConnectionManager,
    script: &mut Option<String>,
    state: &mut WriterState,
) -> Result<(), RedisError> {
    let epoch = match shared.epoch.current() {
        Some(epoch) => epoch,
        None => establish(shared, conn).await?,
    };
    if state.uncertain {
        settle(shared, conn, state).await?;
        if state.batch.is_empty() {
            return Ok(());
        }
    }
    let sha = match script {
        Some(sha) => sha,
        None => script.insert(
            ::redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(PUBLISH)
                .query_async::<String>(conn)
                .await?,
        ),
    };
    // The first event of a new batch tells the script to forget the numbers of those
    // before: each has its outcome.
    let first = if std::mem::replace(&mut state.sent, true) {
        1
    } else {
        2
    };
    let seen = shared.epoch.seen();
    let (ttl, mark_every) = (shared.ttl_ms(), (shared.ttl_ms() / 16).max(1));
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    for (n, outgoing) in state.batch.iter().enumerate() {
        pipe.cmd("EVALSHA")
            .arg(&**sha)
            .arg(5)
            .arg(&shared.keys.seq)
            .arg(&shared.keys.epoch)
            .arg(shared.stream_key(&outgoing.topic))
            .arg(&shared.keys.done)
            .arg(&shared.keys.marks)
            .arg(outgoing.frame.as_ref())
            .arg(shared.max_len)
            .arg(&*epoch.name)
            .arg(outgoing.seq)
            .arg(if n == 0 { first } else { 0 })
            .arg(seen)
            .arg(ttl)
            .arg(mark_every)
            .arg(epoch.start)
            .arg(outgoing.key.as_deref().unwrap_or(""));
    }
    // Until the replies are in, any of the batch may be stored.
    state.uncertain = true;
    let sent = std::time::Instant::now();
    let replies: Vec<Value> = pipe.query_async(conn).await?;
    crate::metrics::redis_write_time(sent.elapsed());
    if replies.len() != state.batch.len() {
        return Err(malformed("a batch of writes", &Value::Array(replies)));
    }
    state.uncertain = false;
    let (mut again, mut passing, mut new_epoch) = (Vec::new(), None, false);
    for (outgoing, reply) in state.batch.drain(..).zip(replies) {
        match publish_outcome(reply) {
            Outcome::Stored(id) => {
                shared.epoch.saw(id);
                let _ = outgoing.ack.send(Ok(id));
            }
            Outcome::Rejected(err) => {
                crate::metrics::publish_rejected();
                if shared.reject_log.due() {
                    tracing::warn!(address = %shared.address, topic = %outgoing.topic, %err, "redis refused an event; its publisher is told");
                }
                let _ = outgoing
                    .ack
                    .send(Err(PublishError::Rejected(Arc::new(err))));
            }
            Outcome::Epoch => {
                new_epoch = true;
                again.push(outgoing);
            }
            Outcome::NoScript => {
                *script = None;
                again.push(outgoing);
            }
            Outcome::Retry(err) => {
                passing.get_or_insert(err);
                again.push(outgoing);
            }
        }
    }
    state.batch = again;
    if let Some(err) = passing {
        return Err(err);
    }
    shared.reachable();
    if new_epoch && establish(shared, conn).await?.name == epoch.name {
        // Redis says the epoch is the same after all (it moved on meanwhile): try again,
        // not at once.
        tokio::time::sleep(MIN_BACKOFF).await;
    }
    Ok(())
}

/// After an attempt whose replies were lost: acknowledges the events of the batch that
/// Redis stored (the writer's list says which, and under which id), and keeps the rest
/// to be written again.
async fn settle(
    shared: &Shared,
    conn: &mut ConnectionManager,
    state: &mut WriterState,
) -> Result<(), RedisError> {
    let done: Vec<String> = ::redis::cmd("LRANGE")
        .arg(&shared.keys.done)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let stored: HashMap<u64, u64> = done
        .iter()
        .filter_map(|entry| {
            let (seq, id) = entry.split_once(':')?;
            Some((seq.parse().ok()?, id.parse().ok()?))
        })
        .collect();
    state.uncertain = false;
    let (written, rest): (Vec<Outgoing>, Vec<Outgoing>) = std::mem::take(&mut state.batch)
        .into_iter()
        .partition(|outgoing| stored.contains_key(&outgoing.seq));
    state.batch = rest;
    for outgoing in written {
        let id = stored[&outgoing.seq];
        shared.epoch.saw(id);
        let _ = outgoing.ack.send(Ok(id));
    }
    Ok(())
}
