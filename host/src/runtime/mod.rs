//! Turns a checked pipeline.json into running parts and drives them.
//!
//! Threads: one per source (reading, parsing the top level, schema checks),
//! the coordinator (`driver.rs`: routing by key group, source watermarks,
//! sinks, checkpoint barriers) and `settings.parallelism` workers per stage
//! (`worker.rs`), each pushing batches through its copy of its stage's steps:
//! plugin calls are synchronous on a worker, so a wasm call never blocks an
//! async executor, and a hot swap can happen between two batches.

mod build;
mod checkpoint;
mod driver;
mod fingerprint;
mod graph;
mod group;
mod lookup_plan;
mod partition;
mod worker;
mod worker_state;
mod stats;
mod stop;
mod watermarks;

pub use build::{build_pipeline, prepare_plugins, BuildOptions, Pipeline};
pub use checkpoint::{CheckpointMeta, Committed, ResumePoint, SourceMark};
pub use fingerprint::Fingerprints;
pub use group::{run_in_group, valid_instance, GroupPlan};
pub use partition::{key_group, key_groups_of, worker_of, KeyGrouping, MAX_KEY_GROUPS};
pub use stats::{NodeKind, NodeStats, PluginSummary, RunEnd, RunSummary};
pub use stop::StopHandle;
pub(crate) use graph::{Consumer, Graph, Producer};

use crate::config::ConfigErrors;

impl From<crate::state::StateError> for RunError {
    fn from(e: crate::state::StateError) -> Self {
        match e {
            crate::state::StateError::TakenOver { .. } => RunError::TakenOver(e.to_string()),
            e => RunError::State(e.to_string()),
        }
    }
}

impl From<crate::plugin::PluginError> for RunError {
    fn from(e: crate::plugin::PluginError) -> Self {
        RunError::Plugin(e)
    }
}

/// Errors that stop a run. A wrapped error is transparent or in the message,
/// never both: `{:#}` prints the chain, so a message that repeats its source
/// would say everything twice.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The plugin error is in the message, not a source: printed with `{}` or
    /// `{:#}`, it reads once.
    #[error("plugin runtime: {0}")]
    Plugin(crate::plugin::PluginError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("dead-letter sink {path}: {error}")]
    DeadLetter { path: String, error: std::io::Error },
    #[error("source thread: {0}")]
    Thread(String),
    #[error("state: {0}")]
    State(String),
    /// Another process took this state (in a group: one of its partitions)
    /// over: nothing was written. In a group the process waits for the group's
    /// next assignment instead of failing.
    #[error("state: {0}")]
    TakenOver(String),
    #[error("{0}")]
    Step(String),
    #[error(transparent)]
    Admin(#[from] crate::swap::AdminError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
}
