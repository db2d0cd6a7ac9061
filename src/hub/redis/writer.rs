//! The writer: publishes go to Redis in pipelined batches.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use ::redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::script::PUBLISH;
use super::shared::{BATCH, MAX_BACKOFF, MIN_BACKOFF, Outgoing, Shared};

/// Writes published events in batches, retrying with backoff until Redis takes them.
pub(super) async fn write_loop(
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
