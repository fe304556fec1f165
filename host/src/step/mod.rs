//! Steps: the operators of the DAG. Every step looks the same to the
//! pipeline: a batch in, a batch out, refused events to the dead letters.

mod filter;
pub mod key;
pub mod lookup_join;
mod native;
mod project;
mod select;
mod transform;
mod udf;
pub mod window_aggregate;
mod window_join;

use crate::dead_letter::{DeadKind, DeadLetter};
use crate::event::{Batch, Event, Origin};
use crate::plugin::FailureKind;

pub use filter::{CompareOp, Comparison, Condition, FilterConfig, FilterStep, Predicate};
pub use lookup_join::{LookupJoin, LookupJoinConfig};
pub use native::{NativeFn, NativeRegistry, NativeStep};
pub use project::{ProjectConfig, ProjectStep};
pub use select::{SelectColumn, SelectConfig, SelectStep};
pub use transform::TransformStep;
pub use udf::{UdfArg, UdfStep};
pub(crate) use udf::{json_to_scalar, scalar_to_json};
pub use window_aggregate::{WindowAggregate, WindowAggregateConfig, WindowConfig};
pub use window_join::WindowJoin;

use crate::state::{StateBackend, StateError};

/// What a step can reach besides its input.
pub struct StepContext<'a> {
    /// Events this step refuses, with their reasons.
    pub dead: &'a mut Vec<DeadLetter>,
    /// Which of the step's `inputs` (by position) the batch came from.
    pub input: usize,
    /// The step's input watermark: the minimum over its (non-idle) inputs.
    /// An event at or before it is late.
    pub watermark: i64,
    /// The pipeline's state: the only storage a step may use.
    pub state: &'a mut dyn StateBackend,
    /// Set by a step that cannot go on (its state failed): the run stops
    /// with this error.
    pub failed: Option<String>,
}

impl StepContext<'_> {
    /// Stops the run with `error` (after this call returns).
    pub fn fail(&mut self, error: String) {
        self.failed.get_or_insert(error);
    }

    /// Dead-letters `event` (from `origin`), refused by `step` (through `plugin`).
    pub fn refuse(&mut self, step: &str, plugin: Option<&str>, kind: DeadKind, reason: String, origin: Origin, event: Event) {
        self.dead.push(DeadLetter { kind, reason, origin, step: Some(step.to_string()), plugin: plugin.map(String::from), event });
    }
}

/// What a keyed step reads of an event to store it: its key (or why it has
/// none) and, for a join's main event, whether its names are plain.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadKey {
    pub key: Result<Vec<u8>, (DeadKind, String)>,
    pub plain_names: bool,
}

/// A [`ReadKey`] and the key group its key hashes into.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutedKey {
    pub group: u16,
    pub read: ReadKey,
}

/// Reads a keyed step's [`RoutedKey`] of each record from a source, inside
/// the source's own pass over the record's top level (with its event time):
/// the key is parsed once per event, at the source, and the router does not
/// read the record again. Made by the step for an input whose key is one
/// top-level member ([`Operator::key_capture`]).
pub trait KeyCapture: Send + Sync {
    /// The top-level member that holds the key.
    fn field(&self) -> &str;
    /// Whether [`KeyCapture::capture`] needs the record's member names.
    fn wants_names(&self) -> bool;
    /// The key of a record (a JSON object) from the raw text of its member
    /// [`KeyCapture::field`] (`None`: missing) and, if wanted, its names.
    fn capture(&self, raw: Option<&str>, names: &[std::borrow::Cow<'_, str>]) -> RoutedKey;
}

/// A processing step. Only `process_batch` is required; the hooks exist so
/// stateful operators (windows, joins) can be added without touching the
/// pipeline driver.
pub trait Operator: Send {
    /// Opens the step's tables, once, before any batch.
    fn open_state(&mut self, _state: &mut dyn StateBackend) -> Result<(), StateError> {
        Ok(())
    }

    /// Processes one batch from input `ctx.input`. Every input event must end
    /// up in the output, in `ctx.dead`, in the operator's state, or be
    /// deliberately filtered out.
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch;

    /// The input watermark advanced to `watermark` (also in
    /// `ctx.watermark`): emit what it completes. The end of input is the
    /// watermark `source::END_OF_TIME`. The driver calls again with the same
    /// watermark until the batch returned is empty, so an operator may emit
    /// a large backlog a bounded batch at a time.
    fn on_watermark(&mut self, _watermark: i64, _ctx: &mut StepContext<'_>) -> Batch {
        Batch::default()
    }

    /// The watermark this step promises downstream given its input
    /// watermark. A step that holds events back (a delayed join) holds its
    /// output watermark back to before the oldest event it may still emit.
    fn output_watermark(&self, input: i64) -> i64 {
        input
    }

    /// What this step's state means, for a stateful step: the parameters its
    /// state was written under (as JSON mirroring the step's config, so a
    /// difference names the config field). A checkpoint records it, and a
    /// restart whose step says otherwise is refused (`runtime/fingerprint.rs`).
    fn state_fingerprint(&self) -> Option<serde_json::Value> {
        None
    }

    /// A checkpoint barrier reached the step's worker: write what the step
    /// holds outside the backend (a write-back cache) before the worker
    /// commits and snapshots the state.
    fn prepare_checkpoint(&mut self, _state: &mut dyn StateBackend) -> Result<(), StateError> {
        Ok(())
    }

    /// Events this step deliberately dropped since the last call (a filter's
    /// misses), for the run's counters: every input is then accounted for
    /// as output, dead letter, state or filtered.
    fn take_filtered(&mut self) -> u64 {
        0
    }

    /// A keyed step: the key of each of `events` (arriving at input `port`)
    /// and its key group, so each reaches the worker that owns its state. The
    /// thread routing the batch calls this on a copy of the step; the worker
    /// gets the keys with the batch ([`Operator::process_routed`]) and need not
    /// read them again. `None`: the step keeps no keyed state and runs wherever
    /// its input is.
    fn route_keys(&mut self, _port: usize, _events: &[Event]) -> Option<Vec<RoutedKey>> {
        None
    }

    /// A keyed step whose input `port` is keyed by a top-level member: what
    /// reads that key inside a source's pass (the same [`RoutedKey`] as
    /// [`Operator::route_keys`] gives). `None`: the router reads the keys.
    fn key_capture(&self, _port: usize) -> Option<std::sync::Arc<dyn KeyCapture>> {
        None
    }

    /// [`Operator::process_batch`] for a batch whose keys the router read.
    fn process_routed(&mut self, input: Batch, _keys: Vec<RoutedKey>, ctx: &mut StepContext<'_>) -> Batch {
        self.process_batch(input, ctx)
    }

    /// A restore at another parallelism: copies into `to` what `from` (the
    /// state of one worker of the checkpoint) holds of the key groups
    /// `owned` says it owns. Called once per old worker, before `open_state`.
    fn rescale(&mut self, _from: &mut dyn StateBackend, _to: &mut dyn StateBackend, _owned: &dyn Fn(u16) -> bool) -> Result<(), StateError> {
        Ok(())
    }

    /// A window join: the handles of its figures in its worker (held, fired,
    /// matched, late), given once when its worker is built.
    fn attach_join_metrics(&mut self, _metrics: crate::metrics::JoinMetrics) {}

    /// Called once when all inputs are exhausted (and, for a step waiting
    /// on I/O, every answer is in); may emit what it held.
    fn close(&mut self, _ctx: &mut StepContext<'_>) -> Batch {
        Batch::default()
    }

    /// A step that waits on I/O (a lookup join): the channel its answers
    /// come on, which its worker watches besides its inputs. `None`: the
    /// step never waits. Steps may share one channel.
    fn io_channel(&self) -> Option<crossbeam_channel::Receiver<crate::lookup::Reply>> {
        None
    }

    /// Something came on the [`Operator::io_channel`]: take it in and
    /// return the events it completes (possibly none).
    fn on_io(&mut self, _ctx: &mut StepContext<'_>) -> Batch {
        Batch::default()
    }

    /// Sends what the step gathered to ask for. The worker calls it once it
    /// has handled a message, so what every step asked meanwhile goes out
    /// together.
    fn flush_io(&mut self) {}

    /// Events the step holds waiting for I/O. A checkpoint barrier waits
    /// until none are (they are not in any state), and so does `close`.
    fn io_waiting(&self) -> usize {
        0
    }

    /// Whether the step holds as many waiting events as it may: its worker
    /// reads no input until answers come (backpressure).
    fn io_full(&self) -> bool {
        false
    }
}

pub(crate) fn dead_kind(kind: FailureKind) -> DeadKind {
    match kind {
        FailureKind::Error => DeadKind::PluginError,
        FailureKind::Trap => DeadKind::PluginTrap,
        FailureKind::Timeout => DeadKind::PluginTimeout,
        FailureKind::OutOfMemory => DeadKind::PluginOutOfMemory,
        FailureKind::Limit => DeadKind::PluginLimit,
    }
}
