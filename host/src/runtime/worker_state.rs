//! Each worker's share of the state: opened empty, restored from a checkpoint
//! taken at the same parallelism, or rebuilt by key group from every worker of
//! a checkpoint taken at another.
//!
//! On disk (RocksDB) a worker's state is `<state dir>/stage-S-worker-I`; in a
//! checkpoint it is `chk-N/state/stage-S-worker-I`. A stage without keyed steps
//! has no state.

use std::path::{Path, PathBuf};

use super::checkpoint::Found;
use super::graph::Graph;
use super::partition::key_groups_of;
use super::RunError;
use crate::config::{LoadedPipeline, StateBackendKind};
use crate::state::{RocksOptions, StateBackend, StateError};
use crate::step::Operator;

/// Marks a directory as streamhost's state root, so a fresh start may clear it.
const MARKER: &str = "STREAMHOST_STATE";

pub(crate) struct StateRoot {
    /// `None`: the memory backend.
    dir: Option<PathBuf>,
    options: RocksOptions,
    /// The checkpoint to restore, with its workers per stage.
    resume: Option<(PathBuf, usize)>,
    per_stage: usize,
    /// `settings.max_parallelism`.
    key_groups: usize,
}

/// A worker's folder name, on disk and in a checkpoint.
pub(crate) fn worker_dir(stage: usize, index: usize) -> String {
    format!("stage-{stage}-worker-{index}")
}

fn state_err(e: StateError) -> RunError {
    RunError::State(e.to_string())
}

impl StateRoot {
    /// Where the workers' state goes; clears it unless it is restored.
    pub fn prepare(p: &LoadedPipeline, resume: Option<&Found>, graph: &Graph, per_stage: usize) -> Result<StateRoot, RunError> {
        let settings = &p.config.settings.state;
        let stateful = (0..graph.stages).any(|s| graph.stateful(s));
        let resume = match resume {
            Some(found) if stateful => match found.meta.workers {
                Some(n) => Some((found.dir.join("state"), n)),
                None => {
                    return Err(RunError::State(format!(
                        "{} was taken before parallel workers and its state cannot be read; start over with --fresh",
                        found.dir.display()
                    )))
                }
            },
            _ => None,
        };
        let dir = (stateful && settings.backend == StateBackendKind::Rocksdb)
            .then(|| settings.dir.as_ref().map_or_else(|| p.base_dir.join("state"), |d| p.resolve(d)));
        if let Some(dir) = &dir {
            clear(dir)?;
            std::fs::create_dir_all(dir).map_err(|e| RunError::State(format!("cannot create {}: {e}", dir.display())))?;
            std::fs::write(dir.join(MARKER), b"").map_err(|e| RunError::State(format!("cannot write in {}: {e}", dir.display())))?;
        }
        Ok(StateRoot { dir, options: settings.rocksdb.clone(), resume, per_stage, key_groups: p.config.settings.max_parallelism })
    }

    /// Worker `index`'s state of `stage`, for the steps `ops` (opened on it).
    pub fn open(&self, stage: usize, index: usize, ops: &mut [&mut Box<dyn Operator>]) -> Result<Box<dyn StateBackend>, RunError> {
        let name = worker_dir(stage, index);
        let mut state = match &self.resume {
            Some((chk, n)) if *n == self.per_stage => self.restore(&chk.join(&name), &name)?,
            Some((chk, n)) => {
                // Another parallelism: take this worker's key groups from each old worker.
                let mut state = self.empty(&name)?;
                for old in 0..*n {
                    let scratch = format!("rescale-{name}-from-{old}");
                    let mut from = self.restore(&chk.join(worker_dir(stage, old)), &scratch)?;
                    for op in ops.iter_mut() {
                        let owned = key_groups_of(index, self.per_stage, self.key_groups);
                        op.rescale(&mut *from, &mut *state, owned).map_err(state_err)?;
                    }
                    drop(from);
                    if let Some(dir) = &self.dir {
                        let _ = std::fs::remove_dir_all(dir.join(&scratch));
                    }
                }
                tracing::info!(stage, worker = index, from_workers = n, "state rebuilt by key group from a checkpoint at another parallelism");
                state
            }
            None => self.empty(&name)?,
        };
        for op in ops.iter_mut() {
            op.open_state(&mut *state).map_err(state_err)?;
        }
        Ok(state)
    }

    fn empty(&self, name: &str) -> Result<Box<dyn StateBackend>, RunError> {
        match &self.dir {
            None => Ok(crate::state::open_memory()),
            Some(dir) => crate::state::open_rocksdb(&dir.join(name), &self.options).map_err(state_err),
        }
    }

    fn restore(&self, checkpoint: &Path, name: &str) -> Result<Box<dyn StateBackend>, RunError> {
        match &self.dir {
            None => crate::state::restore_memory(checkpoint).map_err(state_err),
            Some(dir) => crate::state::restore_rocksdb(checkpoint, &dir.join(name), &self.options).map_err(state_err),
        }
    }
}

/// Clears a state directory from an earlier run. Only ever one streamhost
/// made (its marker, or an older single RocksDB's CURRENT file) or an empty
/// one: `dir` may be mistyped.
fn clear(dir: &Path) -> Result<(), RunError> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !empty && !dir.join(MARKER).is_file() && !dir.join("CURRENT").is_file() {
        return Err(RunError::State(format!("{} exists and is not a state directory; refusing to clear it", dir.display())));
    }
    std::fs::remove_dir_all(dir).map_err(|e| RunError::State(format!("cannot clear {}: {e}", dir.display())))
}
