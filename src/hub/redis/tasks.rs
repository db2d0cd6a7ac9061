//! The storage's tasks on a runtime: started on first use inside one, and again there
//! when the runtime that ran them went away.
//!
//! A hub may be built outside any runtime, or outlive the runtime it was built in (a
//! test's runtime, one runtime per thread). The tasks' state lives outside them (see
//! `shared::Held`): the queue of events to write, the batch being written, the watched
//! topics and where they stand. A task dropped with its runtime leaves it behind, and the
//! next use of the hub inside a runtime starts new tasks that go on from there; events
//! published meanwhile wait in the queue.

use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::reader::read_loop;
use super::shared::{Shared, lock};
use super::writer::write_loop;
use crate::hub::PublishError;
use crate::hub::deliveries::Applier;

pub(super) struct Tasks {
    shared: Arc<Shared>,
    applier: Applier,
    /// Cancelled when the storage is dropped (with its hub): every task stops.
    stop: CancellationToken,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    writer: Option<JoinHandle<()>>,
    /// The reader and the task that applies what it reads: they end together.
    reader: Option<(JoinHandle<()>, JoinHandle<()>)>,
    /// Started at least once: a start after that is a restart.
    started: bool,
}

impl Tasks {
    pub(super) fn new(shared: Arc<Shared>, applier: Applier) -> Self {
        Tasks {
            shared,
            applier,
            stop: CancellationToken::new(),
            running: Mutex::new(Running::default()),
        }
    }

    /// Makes sure the tasks run, starting those that do not on the current runtime.
    /// Constant work when they run. Fails only if the writer does not run and there is
    /// no runtime to start it on.
    pub(super) fn ensure(&self) -> Result<(), PublishError> {
        let mut running = lock(&self.running);
        let writer = running.writer.as_ref().is_some_and(|t| !t.is_finished());
        // Either task of the pair ends soon after the other: start them again only once
        // both have.
        let reader = running
            .reader
            .as_ref()
            .is_some_and(|(r, a)| !r.is_finished() || !a.is_finished());
        if writer && reader {
            return Ok(());
        }
        let Ok(runtime) = Handle::try_current() else {
            return if writer {
                Ok(())
            } else {
                Err(PublishError::NoRuntime)
            };
        };
        let _entered = runtime.enter();
        if running.started {
            tracing::info!(address = %self.shared.address, writer = !writer, reader = !reader, "redis storage tasks start again on the current runtime");
        }
        running.started = true;
        if !writer {
            running.writer =
                Some(runtime.spawn(write_loop(self.shared.clone(), self.stop.clone())));
        }
        if !reader {
            if let Err(err) = self.shared.renew_reads() {
                tracing::error!(address = %self.shared.address, %err, "redis reader cannot start");
                return Ok(());
            }
            let (deliveries, applying) = self.applier.spawn(self.stop.clone());
            let reading = runtime.spawn(read_loop(
                self.shared.clone(),
                deliveries,
                self.applier.clone(),
                self.stop.clone(),
            ));
            running.reader = Some((reading, applying));
        }
        Ok(())
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
