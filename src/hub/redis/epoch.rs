//! The log's epoch: how an instance finds out that Redis went back (lost events), and
//! takes it up again without ever giving an id twice.
//!
//! Redis keeps the epoch beside the counter (`{P}:epoch`, `<name>:<start>`). The publish
//! script writes only under the epoch the writer knows, and only while the counter is not
//! below an id this instance has seen; otherwise it writes nothing and the writer
//! establishes the epoch (`EPOCH` script) before writing again. The reader checks the
//! same at every sync, and reads the epoch each entry was written in. So no event is
//! acknowledged under an id that may repeat one issued before the loss.
//!
//! A new epoch starts above every id issued before it (see `script::EPOCH`); the reader
//! then delivers [`Delivery::Reset`](crate::hub::log::Delivery::Reset) under the epoch's
//! start, and a resuming subscriber whose id is older than the start gets the reset
//! event, then what the log holds from the start on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redis::RedisError;
use ::redis::Value;
use ::redis::aio::ConnectionLike;

use super::reply::{Epoch, EpochReply, malformed, parse_epoch};
use super::script::EPOCH;
use super::shared::{Shared, lock};

/// How far above the highest id this instance has seen a new epoch starts, at least:
/// room for the ids other instances gave that this one did not see.
const MARGIN: u64 = 1_000_000;

/// What this instance knows of the log's epoch.
#[derive(Default)]
pub(super) struct EpochState {
    current: Mutex<Option<Epoch>>,
    /// The current epoch's start, read without the lock (0 before the first).
    start: AtomicU64,
    /// The highest id this instance has seen: acknowledged, read, or the counter.
    seen: AtomicU64,
    /// Numbers the epochs this instance begins.
    names: AtomicU64,
}

impl EpochState {
    pub(super) fn current(&self) -> Option<Epoch> {
        lock(&self.current).clone()
    }

    pub(super) fn start(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    pub(super) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    pub(super) fn saw(&self, id: u64) {
        self.seen.fetch_max(id, Ordering::AcqRel);
    }
}

/// Takes up the log's epoch, beginning a new one if the log has none or went back below
/// what this instance has seen; returns it. Logs a warning when the epoch this instance
/// knew changed: once per change, whichever task finds it.
pub(super) async fn establish(
    shared: &Shared,
    conn: &mut impl ConnectionLike,
) -> Result<Epoch, RedisError> {
    let name = format!(
        "{:016x}{:x}",
        shared.instance,
        shared.epoch.names.fetch_add(1, Ordering::Relaxed)
    );
    let seen = shared.epoch.seen();
    let reply: Value = ::redis::cmd("EVAL")
        .arg(EPOCH)
        .arg(3)
        .arg(&shared.keys.seq)
        .arg(&shared.keys.epoch)
        .arg(&shared.keys.marks)
        .arg(name)
        .arg(seen)
        .arg(MARGIN)
        .query_async(conn)
        .await?;
    let Some(reply) = parse_epoch(&reply) else {
        return Err(malformed("the epoch script", &reply));
    };
    Ok(adopt(shared, reply, seen))
}

/// Makes `reply`'s epoch this instance's, unless a newer one was taken meanwhile.
fn adopt(shared: &Shared, reply: EpochReply, seen: u64) -> Epoch {
    let state = &shared.epoch;
    let mut current = lock(&state.current);
    match &*current {
        Some(known) if known.start >= reply.epoch.start => return known.clone(),
        Some(known) => tracing::warn!(
            address = %shared.address,
            previous_start = known.start,
            counter_found = reply.counter,
            seen,
            start = reply.epoch.start,
            began_here = reply.began,
            "the shared log on redis went back (restarted without persistence, flushed, or \
             failed over to a replica that lagged): events may be lost; ids go on above \
             every id given before, and subscribers get the reset event"
        ),
        None if reply.began && reply.counter > 0 => tracing::info!(
            address = %shared.address,
            counter_found = reply.counter,
            start = reply.epoch.start,
            "the shared log on redis had no epoch (written by an older version, or its \
             data was lost): began one; resuming subscribers from before get the reset event"
        ),
        None => tracing::debug!(
            address = %shared.address,
            start = reply.epoch.start,
            began = reply.began,
            "redis log epoch taken up"
        ),
    }
    state.saw(reply.epoch.start);
    state.start.store(reply.epoch.start, Ordering::Release);
    *current = Some(reply.epoch.clone());
    reply.epoch
}
