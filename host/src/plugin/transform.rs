//! Runs batches of events through a `transform` plugin instance.

use std::sync::Arc;

use super::columns::{empty_batch, pack_into, unpack, RawOutcomes};
use super::instance::Supervisor;
use super::isolation::isolate;
use super::loaded::LoadedPlugin;
use super::outcome::{Failure, FailureKind, Outcome, PluginStats};
use super::registry::{SampleBatch, Watch};
use super::wit::{EventBatch, Transform};
use crate::event::Event;

/// One instance of a transform plugin (one `Store`). Not shared: give each
/// worker thread its own runner.
pub struct TransformRunner {
    supervisor: Supervisor<Transform>,
    /// The columns every batch is packed into (buffers reused).
    columns: EventBatch,
    /// The registry slot it follows (hot swap), if any.
    watch: Option<Watch>,
}

impl TransformRunner {
    pub(crate) fn new(supervisor: Supervisor<Transform>) -> Self {
        TransformRunner { supervisor, columns: empty_batch(), watch: None }
    }

    pub(crate) fn watching(mut self, watch: Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Between batches: switches to the slot's new version if it was
    /// swapped, and offers the batch to the slot's sample.
    fn follow_slot(&mut self, batch: &[Event]) {
        let Some(watch) = &mut self.watch else { return };
        if let Some(plugin) = watch.changed() {
            self.supervisor.switch_to(plugin);
        }
        watch.sample(|max| SampleBatch::Events(batch[..batch.len().min(max)].to_vec()));
    }

    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        self.supervisor.plugin()
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
        self.follow_slot(batch);
        self.supervisor.begin_batch();
        PluginStats::add(&self.supervisor.stats().events_in, batch.len() as u64);
        let outcomes = match self.call_range(batch) {
            Ok(raw) => self.check_limits(raw),
            Err(failure) => {
                tracing::debug!(plugin = self.plugin().name(), inputs = batch.len(), %failure, "batch failed; isolating");
                self.isolate(batch, failure)
            }
        };
        self.count(&outcomes);
        outcomes
    }

    /// One call on `events`: their raw outcomes, or the call's failure (a
    /// broken layout is a contract violation, failed like a trap).
    fn call_range(&mut self, events: &[Event]) -> Result<RawOutcomes, Failure> {
        call_events(&mut self.supervisor, &mut self.columns, events)
    }

    /// Finds the culprits of a failed batch (see `isolation`).
    fn isolate(&mut self, batch: &[Event], failure: Failure) -> Vec<Outcome> {
        PluginStats::add(&self.supervisor.stats().retried_batches, 1);
        let columns = &mut self.columns;
        let results = isolate(&mut self.supervisor, batch.len(), failure, |supervisor, range| {
            call_events(supervisor, columns, &batch[range])
        });
        let mut budget = OutputBudget::new(self.plugin());
        results.into_iter().map(|r| r.map_or_else(Outcome::Failed, |raw| budget.check(raw))).collect()
    }

    fn check_limits(&self, raw: RawOutcomes) -> Vec<Outcome> {
        let mut budget = OutputBudget::new(self.plugin());
        raw.into_iter().map(|r| budget.check(r)).collect()
    }

    fn count(&self, outcomes: &[Outcome]) {
        count_outcomes(self.supervisor.stats(), outcomes);
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

/// Counts outputs and failures of a batch's outcomes in the plugin's stats.
pub(super) fn count_outcomes(stats: &PluginStats, outcomes: &[Outcome]) {
    let mut out = 0u64;
    for outcome in outcomes {
        match outcome {
            Outcome::Ok(events) => out += events.len() as u64,
            Outcome::Failed(f) => stats.count_failure(f.kind),
        }
    }
    PluginStats::add(&stats.events_out, out);
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

    /// Turns one raw outcome into an [`Outcome`], failing it when its outputs
    /// break a limit. Outputs of a failed input do not use up the budget.
    pub(super) fn check(&mut self, raw: Result<Vec<Event>, String>) -> Outcome {
        let events = match raw {
            Ok(events) => events,
            Err(message) => return Outcome::Failed(Failure::new(FailureKind::Error, message)),
        };
        if events.len() > self.max_outputs {
            return Outcome::Failed(Failure::new(
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
            return Outcome::Failed(Failure::new(
                FailureKind::Limit,
                format!(
                    "{bytes} output bytes for one input overflow the batch's budget (limit: max_output_bytes_per_batch = {})",
                    self.max_bytes
                ),
            ));
        }
        self.bytes_left -= bytes;
        Outcome::Ok(events)
    }
}

/// Payload bytes of an event: value, key and headers.
fn event_bytes(event: &Event) -> usize {
    event.value.len()
        + event.key.as_ref().map_or(0, Vec::len)
        + event.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
}
