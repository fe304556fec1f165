//! Steps: the operators of the DAG. Every step looks the same to the
//! pipeline: a batch in, a batch out, refused events to the dead letters.

mod native;
mod transform;
mod udf;

use crate::dead_letter::{DeadKind, DeadLetter};
use crate::event::{Batch, Event, Origin};
use crate::plugin::FailureKind;

pub use native::{NativeFn, NativeRegistry, NativeStep};
pub use transform::TransformStep;
pub use udf::{UdfArg, UdfStep};

/// What a step can reach besides its input.
pub struct StepContext<'a> {
    /// Events this step refuses, with their reasons.
    pub dead: &'a mut Vec<DeadLetter>,
}

impl StepContext<'_> {
    /// Dead-letters `event` (from `origin`), refused by `step` (through `plugin`).
    pub fn refuse(&mut self, step: &str, plugin: Option<&str>, kind: DeadKind, reason: String, origin: Origin, event: Event) {
        self.dead.push(DeadLetter { kind, reason, origin, step: Some(step.to_string()), plugin: plugin.map(String::from), event });
    }
}

/// A processing step. Only `process_batch` is required; the hooks exist so
/// stateful operators (windows, joins) can be added without touching the
/// pipeline driver.
pub trait Operator: Send {
    /// Processes one batch. Every input event must end up in the output, in
    /// `ctx.dead`, or be deliberately filtered out.
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch;

    /// Called once when all inputs are exhausted; may emit what it held.
    fn close(&mut self, _ctx: &mut StepContext<'_>) -> Batch {
        Batch::default()
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
