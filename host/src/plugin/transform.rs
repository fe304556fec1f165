//! Runs batches of events through a `transform` plugin instance.

use std::sync::Arc;

use super::columns::{empty_batch, pack_into, unpack, RawOutcomes};
use super::instance::Supervisor;
use super::loaded::LoadedPlugin;
use super::outcome::{Failure, FailureKind, Outcome};
use super::registry::{SampleBatch, Watch};
use super::runner::Runner;
use super::wit::{EventBatch, Transform};
use crate::event::Event;

/// One instance of a transform plugin (one `Store`). Not shared: give each
/// worker thread its own runner.
pub struct TransformRunner {
    runner: Runner<Transform>,
    /// The columns every batch is packed into (buffers reused).
    columns: EventBatch,
}

impl TransformRunner {
    pub(crate) fn new(supervisor: Supervisor<Transform>) -> Self {
        TransformRunner { runner: Runner::new(supervisor), columns: empty_batch() }
    }

    pub(crate) fn watching(mut self, watch: Watch) -> Self {
        self.runner = self.runner.watching(watch);
        self
    }

    /// Counts its calls under step `step` (the metrics' `step` label).
    pub fn for_step(mut self, step: &str) -> Self {
        self.runner.supervisor.set_step(step);
        self
    }

    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        self.runner.plugin()
    }

    /// Exactly one outcome per input event, in order. Never fails as a whole:
    /// if the batch call traps (panic, timeout, out of memory) or breaks the
    /// contract, the instance is rebuilt and the batch isolated by bisection
    /// within a budget (`isolation`), so only the culprits fail. Output limits
    /// are checked here, on the host.
    pub fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        if batch.is_empty() {
            return Vec::new();
        }
        self.runner.follow_slot(|max| SampleBatch::Events(batch[..batch.len().min(max)].to_vec()));
        let columns = &mut self.columns;
        let call = |supervisor: &mut Supervisor<Transform>, range: std::ops::Range<usize>| call_events(supervisor, columns, &batch[range]);
        let results = self.runner.run(batch.len(), call, output_limits, |events: &Vec<Event>| events.len() as u64);
        results.into_iter().map(Outcome::from).collect()
    }
}

/// One `process` call on `events`, checked against the contract.
fn call_events(supervisor: &mut Supervisor<Transform>, columns: &mut EventBatch, events: &[Event]) -> Result<RawOutcomes, Failure> {
    pack_into(columns, events);
    let columns = &*columns;
    let output = supervisor.call(|plugin, store| plugin.call_process(store, columns))?;
    contract(unpack(output, events.len()))
}

/// A broken output layout as the failure of its call.
pub(super) fn contract(raw: Result<RawOutcomes, impl std::fmt::Display>) -> Result<RawOutcomes, Failure> {
    raw.map_err(|violation| Failure::new(FailureKind::Trap, format!("the plugin broke the contract: {violation}")))
}

/// The check of each raw outcome against `plugin`'s output limits, for one batch.
pub(super) fn output_limits(plugin: &LoadedPlugin) -> impl FnMut(Result<Vec<Event>, String>) -> Result<Vec<Event>, Failure> {
    let mut budget = OutputBudget::new(plugin);
    move |raw| budget.check(raw)
}

/// The output limits of one batch: events per input, bytes per batch.
pub(super) struct OutputBudget {
    max_outputs: usize,
    bytes_left: usize,
    max_bytes: usize,
}

impl OutputBudget {
    pub(super) fn new(plugin: &LoadedPlugin) -> Self {
        let limits = plugin.limits();
        OutputBudget {
            max_outputs: limits.max_outputs_per_event,
            bytes_left: limits.max_output_bytes_per_batch,
            max_bytes: limits.max_output_bytes_per_batch,
        }
    }

    /// Checks one raw outcome, failing it when its outputs break a limit.
    /// Outputs of a failed input do not use up the budget.
    pub(super) fn check(&mut self, raw: Result<Vec<Event>, String>) -> Result<Vec<Event>, Failure> {
        let events = raw.map_err(|message| Failure::new(FailureKind::Error, message))?;
        if events.len() > self.max_outputs {
            return Err(Failure::new(
                FailureKind::Limit,
                format!(
                    "{} output events for one input (limit: max_outputs_per_event = {})",
                    events.len(),
                    self.max_outputs
                ),
            ));
        }
        let bytes: usize = events.iter().map(event_bytes).sum();
        if bytes > self.bytes_left {
            return Err(Failure::new(
                FailureKind::Limit,
                format!(
                    "{bytes} output bytes for one input overflow the batch's budget (limit: max_output_bytes_per_batch = {})",
                    self.max_bytes
                ),
            ));
        }
        self.bytes_left -= bytes;
        Ok(events)
    }
}

/// Payload bytes of an event: value, key and headers.
fn event_bytes(event: &Event) -> usize {
    event.value.len()
        + event.key.as_ref().map_or(0, Vec::len)
        + event.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
}
