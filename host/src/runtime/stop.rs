//! Stopping a running pipeline from outside: a signal handler, a test, an
//! embedder. The coordinator learns of it between two messages; it then
//! stops the sources, drains, checkpoints and ends (see `driver.rs`).

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

/// Asks a running pipeline to stop gracefully; cheap to clone, usable from
/// any thread, before or during `Pipeline::run`.
#[derive(Clone, Debug)]
pub struct StopHandle {
    requested: Arc<AtomicBool>,
    wake: Sender<()>,
    woken: Receiver<()>,
}

impl Default for StopHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl StopHandle {
    /// A handle no pipeline listens to yet (the group runner hands stops on).
    pub fn new() -> Self {
        let (wake, woken) = crossbeam_channel::bounded(1);
        StopHandle { requested: Arc::new(AtomicBool::new(false)), wake, woken }
    }

    /// Asks the pipeline to stop: its sources stop reading and hand over
    /// what they hold, the DAG drains, a final checkpoint is taken (with
    /// checkpoints on), sinks are flushed and synced, and `run` returns its
    /// summary. Returns at once; a second call does nothing more.
    pub fn stop(&self) {
        self.requested.store(true, SeqCst);
        let _ = self.wake.try_send(());
    }

    /// Whether a stop has been asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.load(SeqCst)
    }

    /// Readable once a stop is asked for (wakes the coordinator).
    pub(crate) fn woken(&self) -> &Receiver<()> {
        &self.woken
    }
}
