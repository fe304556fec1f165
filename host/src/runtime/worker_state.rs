//! Each worker's share of the state: opened empty, restored from a checkpoint
//! taken at the same parallelism, or rebuilt by key group from every worker of
//! a checkpoint taken at another.
//!
//! On disk (RocksDB) a worker's state is `<state dir>/stage-S-worker-I`; in a
//! checkpoint it is `chk-N/state/stage-S-worker-I`. In Redis it is a
//! namespace of the pipeline's keys, which the checkpoint record names (it
//! holds only the newest checkpoint's state: nothing is restored, the worker
//! opens it); in a group, each build writes a generation of its own, filled
//! from the generations the partitions' index entries name. A stage without
//! keyed steps has no state.

use std::path::{Path, PathBuf};

use super::build::RestorePart;
use super::graph::Graph;
use super::partition::key_groups_of;
use super::RunError;
use crate::config::{LoadedPipeline, StateBackendKind};
use crate::state::{RemoteState, RocksOptions, StateBackend, StateError};
use crate::step::Operator;

/// Marks a directory as streamhost's state root, so a fresh start may clear it.
const MARKER: &str = "STREAMHOST_STATE";

pub(crate) struct StateRoot<'a> {
    store: Store<'a>,
    options: RocksOptions,
    /// The checkpoints to restore from.
    resume: Vec<Restored>,
    per_stage: usize,
    /// `settings.max_parallelism` (in a group, its partition count).
    key_groups: usize,
}

/// Where the workers' state lives.
enum Store<'a> {
    Memory,
    /// RocksDB, a folder per worker in this one.
    Rocks(PathBuf),
    Redis(&'a RemoteState),
}

/// A checkpoint's state to restore.
struct Restored {
    /// Its `state/` folder.
    dir: PathBuf,
    /// Its workers per stage.
    workers: usize,
    /// Only these key groups of it (`None`: all).
    groups: Option<Vec<u16>>,
    /// In a group, the Redis generation holding its state.
    generation: Option<String>,
}

/// A worker's folder name, on disk and in a checkpoint.
pub(crate) fn worker_dir(stage: usize, index: usize) -> String {
    format!("stage-{stage}-worker-{index}")
}

fn state_err(e: StateError) -> RunError {
    e.into()
}

impl<'a> StateRoot<'a> {
    /// Where the workers' state goes (in a group, a folder per `instance`);
    /// clears it: the state comes from the checkpoints in `resume`. `remote`:
    /// the pipeline's Redis state, with the Redis backend.
    pub fn prepare(
        p: &LoadedPipeline,
        resume: &[RestorePart],
        graph: &Graph,
        (per_stage, key_groups): (usize, usize),
        instance: Option<&str>,
        remote: Option<&'a RemoteState>,
    ) -> Result<StateRoot<'a>, RunError> {
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
            let generation = part.found.meta.redis_generation.clone();
            restored.push(Restored { dir: part.found.dir.join("state"), workers, groups: part.groups.clone(), generation });
        }
        let store = match (settings.backend, remote) {
            (StateBackendKind::Redis, Some(remote)) => Store::Redis(remote),
            (StateBackendKind::Rocksdb, _) if stateful => {
                let dir = settings.dir.as_ref().map_or_else(|| p.base_dir.join("state"), |d| p.resolve(d));
                let dir = instance.map_or_else(|| dir.clone(), |i| dir.join(i));
                clear(&dir)?;
                std::fs::create_dir_all(&dir).map_err(|e| RunError::State(format!("cannot create {}: {e}", dir.display())))?;
                std::fs::write(dir.join(MARKER), b"").map_err(|e| RunError::State(format!("cannot write in {}: {e}", dir.display())))?;
                Store::Rocks(dir)
            }
            _ => Store::Memory,
        };
        Ok(StateRoot { store, options: settings.rocksdb.clone(), resume: restored, per_stage, key_groups })
    }

    /// Worker `index`'s state of `stage`, for the steps `ops` (opened on it).
    pub fn open(&self, stage: usize, index: usize, ops: &mut [&mut Box<dyn Operator>]) -> Result<Box<dyn StateBackend>, RunError> {
        let name = worker_dir(stage, index);
        let mut state = match &self.resume[..] {
            [] => self.empty(stage, index)?,
            [one] if one.workers == self.per_stage && one.groups.is_none() => self.restore(one, stage, index, &name)?,
            parts => {
                // Another parallelism, or parts of several checkpoints: take
                // this worker's key groups from each old worker.
                let mut state = self.empty(stage, index)?;
                let mine = key_groups_of(index, self.per_stage, self.key_groups);
                for (i, part) in parts.iter().enumerate() {
                    let owned = |kg: u16| mine.contains(&kg) && part.groups.as_ref().is_none_or(|g| g.contains(&kg));
                    if !(mine.start..mine.end).any(owned) {
                        continue;
                    }
                    for old in 0..part.workers {
                        let scratch = format!("rescale-{name}-from-{i}-{old}");
                        let mut from = self.restore(part, stage, old, &scratch)?;
                        for op in ops.iter_mut() {
                            op.rescale(&mut *from, &mut *state, &owned).map_err(state_err)?;
                        }
                        drop(from);
                        if let Store::Rocks(dir) = &self.store {
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

    /// Worker `index`'s empty state (in Redis: its namespace of this
    /// parallelism, which no checkpoint record names yet).
    fn empty(&self, stage: usize, index: usize) -> Result<Box<dyn StateBackend>, RunError> {
        match &self.store {
            Store::Memory => Ok(crate::state::open_memory()),
            Store::Rocks(dir) => crate::state::open_rocksdb(&dir.join(worker_dir(stage, index)), &self.options).map_err(state_err),
            Store::Redis(remote) => remote.open_worker(self.per_stage, stage, index, false).map_err(state_err),
        }
    }

    /// Old worker `index`'s state in `part` (RocksDB: restored into folder `name`).
    fn restore(&self, part: &Restored, stage: usize, index: usize, name: &str) -> Result<Box<dyn StateBackend>, RunError> {
        let checkpoint: &Path = &part.dir.join(worker_dir(stage, index));
        match &self.store {
            Store::Memory => crate::state::restore_memory(checkpoint).map_err(state_err),
            Store::Rocks(dir) => crate::state::restore_rocksdb(checkpoint, &dir.join(name), &self.options).map_err(state_err),
            Store::Redis(remote) => match &part.generation {
                Some(generation) => remote.open_generation(generation, stage, index),
                None => remote.open_worker(part.workers, stage, index, true),
            }
            .map_err(state_err),
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
