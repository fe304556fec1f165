//! Each worker's share of the state: opened empty, restored from a checkpoint
//! taken at the same parallelism, or rebuilt by key group from every worker of
//! a checkpoint taken at another.
//!
//! On disk (RocksDB) a worker's state is `<state dir>/stage-S-worker-I`; in a
//! checkpoint it is `chk-N/state/stage-S-worker-I`. A stage without keyed steps
//! has no state.

use std::path::{Path, PathBuf};

use super::build::RestorePart;
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
    /// The checkpoints to restore from.
    resume: Vec<Restored>,
    per_stage: usize,
    /// `settings.max_parallelism` (in a group, its partition count).
    key_groups: usize,
}

/// A checkpoint's state to restore.
struct Restored {
    /// Its `state/` folder.
    dir: PathBuf,
    /// Its workers per stage.
    workers: usize,
    /// Only these key groups of it (`None`: all).
    groups: Option<Vec<u16>>,
}

/// A worker's folder name, on disk and in a checkpoint.
pub(crate) fn worker_dir(stage: usize, index: usize) -> String {
    format!("stage-{stage}-worker-{index}")
}

fn state_err(e: StateError) -> RunError {
    RunError::State(e.to_string())
}

impl StateRoot {
    /// Where the workers' state goes (in a group, a folder per `instance`);
    /// clears it: the state comes from the checkpoints in `resume`.
    pub fn prepare(
        p: &LoadedPipeline,
        resume: &[RestorePart],
        graph: &Graph,
        per_stage: usize,
        key_groups: usize,
        instance: Option<&str>,
    ) -> Result<StateRoot, RunError> {
        let settings = &p.config.settings.state;
        let stateful = (0..graph.stages).any(|s| graph.stateful(s));
        let mut restored = Vec::new();
        for part in resume.iter().filter(|_| stateful) {
            let Some(workers) = part.found.meta.workers else {
                return Err(RunError::State(format!(
                    "{} was taken before parallel workers and its state cannot be read; start over with --fresh",
                    part.found.dir.display()
                )));
            };
            restored.push(Restored { dir: part.found.dir.join("state"), workers, groups: part.groups.clone() });
        }
        let dir = (stateful && settings.backend == StateBackendKind::Rocksdb).then(|| {
            let dir = settings.dir.as_ref().map_or_else(|| p.base_dir.join("state"), |d| p.resolve(d));
            instance.map_or_else(|| dir.clone(), |i| dir.join(i))
        });
        if let Some(dir) = &dir {
            clear(dir)?;
            std::fs::create_dir_all(dir).map_err(|e| RunError::State(format!("cannot create {}: {e}", dir.display())))?;
            std::fs::write(dir.join(MARKER), b"").map_err(|e| RunError::State(format!("cannot write in {}: {e}", dir.display())))?;
        }
        Ok(StateRoot { dir, options: settings.rocksdb.clone(), resume: restored, per_stage, key_groups })
    }

    /// Worker `index`'s state of `stage`, for the steps `ops` (opened on it).
    pub fn open(&self, stage: usize, index: usize, ops: &mut [&mut Box<dyn Operator>]) -> Result<Box<dyn StateBackend>, RunError> {
        let name = worker_dir(stage, index);
        let mut state = match &self.resume[..] {
            [] => self.empty(&name)?,
            [one] if one.workers == self.per_stage && one.groups.is_none() => self.restore(&one.dir.join(&name), &name)?,
            parts => {
                // Another parallelism, or parts of several checkpoints: take
                // this worker's key groups from each old worker.
                let mut state = self.empty(&name)?;
                let mine = key_groups_of(index, self.per_stage, self.key_groups);
                for (i, part) in parts.iter().enumerate() {
                    let owned = |kg: u16| mine.contains(&kg) && part.groups.as_ref().is_none_or(|g| g.contains(&kg));
                    if !(mine.start..mine.end).any(owned) {
                        continue;
                    }
                    for old in 0..part.workers {
                        let scratch = format!("rescale-{name}-from-{i}-{old}");
                        let mut from = self.restore(&part.dir.join(worker_dir(stage, old)), &scratch)?;
                        for op in ops.iter_mut() {
                            op.rescale(&mut *from, &mut *state, &owned).map_err(state_err)?;
                        }
                        drop(from);
                        if let Some(dir) = &self.dir {
                            let _ = std::fs::remove_dir_all(dir.join(&scratch));
                        }
                    }
                }
                tracing::info!(stage, worker = index, checkpoints = parts.len(), "state rebuilt by key group");
                state
            }
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
