//! Runs batches of window-join cases (a main event and its matches) through
//! a `joiner` plugin instance.

use std::sync::Arc;

use super::columns::{empty_batch, pack_iter, unpack, RawOutcomes};
use super::instance::Supervisor;
use super::loaded::LoadedPlugin;
use super::outcome::{Failure, Outcome};
use super::registry::{SampleBatch, Watch};
use super::runner::Runner;
use super::transform::{contract, output_limits};
use super::wit::{EventBatch, Joiner};
use crate::event::Event;

/// One main event and its matches, grouped by other input (in the order of
/// the `inputs` handed to [`JoinerRunner::join`]), each group in time order.
#[derive(Clone, Debug)]
pub struct JoinCase<'a> {
    pub main: &'a Event,
    pub matches: Vec<Vec<&'a Event>>,
}

/// One instance of a joiner plugin (one `Store`). Not shared.
pub struct JoinerRunner {
    runner: Runner<Joiner>,
    /// The columns every call is packed into (buffers reused).
    columns: JoinColumns,
}

/// The WIT's columns of a join call.
struct JoinColumns {
    mains: EventBatch,
    matches: EventBatch,
    match_mains: Vec<u32>,
    match_inputs: Vec<u32>,
}

impl JoinColumns {
    /// Lays `cases` out as the WIT's columns.
    fn pack(&mut self, cases: &[JoinCase<'_>]) {
        pack_iter(&mut self.mains, cases.iter().map(|c| c.main));
        self.match_mains.clear();
        self.match_inputs.clear();
        for (i, case) in cases.iter().enumerate() {
            for (k, group) in case.matches.iter().enumerate() {
                self.match_mains.extend(std::iter::repeat_n(i as u32, group.len()));
                self.match_inputs.extend(std::iter::repeat_n(k as u32, group.len()));
            }
        }
        pack_iter(&mut self.matches, cases.iter().flat_map(|c| c.matches.iter().flatten().copied()));
    }

    /// One join call on `cases`: their raw outcomes, or the call's failure.
    fn call(&mut self, supervisor: &mut Supervisor<Joiner>, inputs: &[String], cases: &[JoinCase<'_>]) -> Result<RawOutcomes, Failure> {
        self.pack(cases);
        let (mains, matches, match_mains, match_inputs) = (&self.mains, &self.matches, &self.match_mains, &self.match_inputs);
        let output = supervisor
            .call(|plugin, store| plugin.call_join(store, inputs, mains, matches, match_mains, match_inputs))?;
        contract(unpack(output, cases.len()))
    }
}

impl JoinerRunner {
    pub(crate) fn new(supervisor: Supervisor<Joiner>) -> Self {
        JoinerRunner {
            runner: Runner::new(supervisor),
            columns: JoinColumns {
                mains: empty_batch(),
                matches: empty_batch(),
                match_mains: Vec::new(),
                match_inputs: Vec::new(),
            },
        }
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

    /// Exactly one outcome per case, in order: the main event's output
    /// events, or its failure. One call for the whole slice; if it traps,
    /// times out or breaks the contract, the instance is rebuilt and the
    /// cases isolated by bisection within a budget (`isolation`), so only
    /// the culprits fail. Output limits (per main event, per call) are
    /// checked here, on the host. A swap between calls keeps the join's
    /// state: it is the host's.
    pub fn join(&mut self, inputs: &[String], cases: &[JoinCase<'_>]) -> Vec<Outcome> {
        if cases.is_empty() {
            return Vec::new();
        }
        self.runner.follow_slot(|max| SampleBatch::cases(inputs, cases, max));
        let columns = &mut self.columns;
        let call = |supervisor: &mut Supervisor<Joiner>, range: std::ops::Range<usize>| columns.call(supervisor, inputs, &cases[range]);
        let results = self.runner.run(cases.len(), call, output_limits, |events: &Vec<Event>| events.len() as u64);
        results.into_iter().map(Outcome::from).collect()
    }
}
