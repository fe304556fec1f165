//! The skeleton the transform, UDF, joiner and aggregator runners share: one instance (one
//! `Store`) that follows its registry slot between batches, makes one call for a
//! whole batch, isolates a failed call (`isolation.rs`), checks each result
//! against the output limits, and counts what it did. Each runner adds only how
//! its world packs a call and reads its results.

use std::ops::Range;
use std::sync::Arc;

use super::instance::{Supervisor, WorldBindings};
use super::isolation::isolate;
use super::loaded::LoadedPlugin;
use super::outcome::{Failure, PluginStats};
use super::registry::{SampleBatch, Watch};

pub(crate) struct Runner<W: WorldBindings> {
    pub(crate) supervisor: Supervisor<W>,
    /// The registry slot it follows (hot swap), if any.
    watch: Option<Watch>,
}

impl<W: WorldBindings> Runner<W> {
    pub(crate) fn new(supervisor: Supervisor<W>) -> Self {
        Runner { supervisor, watch: None }
    }

    pub(crate) fn watching(mut self, watch: Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    pub(crate) fn plugin(&self) -> &Arc<LoadedPlugin> {
        self.supervisor.plugin()
    }

    /// Between batches: switches to the slot's new version if it was swapped
    /// (state the host owns stays as it is), and offers the batch to the slot's
    /// sample (`sample` copies at most the count it is given).
    pub(crate) fn follow_slot(&mut self, sample: impl FnOnce(usize) -> SampleBatch) {
        let Some(watch) = &mut self.watch else { return };
        if let Some(plugin) = watch.changed() {
            self.supervisor.switch_to(plugin);
        }
        watch.sample(sample);
    }

    /// Between calls of a runner that offers no sample (an aggregator's
    /// inputs are not replayable alone): switches to the slot's new version
    /// if it was swapped. True when it switched.
    pub(crate) fn follow_swaps(&mut self) -> bool {
        let Some(plugin) = self.watch.as_mut().and_then(Watch::changed) else { return false };
        self.supervisor.switch_to(plugin);
        true
    }

    /// One batch of `n` inputs, already past [`Runner::follow_slot`]: exactly
    /// one result per input, in order. `call` makes one call on a range of the
    /// inputs (all of them first); if it fails (trap, timeout, out of memory,
    /// broken contract) the instance is rebuilt and the inputs isolated by
    /// bisection within a budget, so only the culprits fail. `limits` makes,
    /// for the version that ran, the check of each raw result (output limits);
    /// `outputs` says how many outputs a result counts for.
    pub(crate) fn run<R, O, C>(
        &mut self,
        n: usize,
        mut call: impl FnMut(&mut Supervisor<W>, Range<usize>) -> Result<Vec<R>, Failure>,
        limits: impl FnOnce(&LoadedPlugin) -> C,
        outputs: impl Fn(&O) -> u64,
    ) -> Vec<Result<O, Failure>>
    where
        C: FnMut(R) -> Result<O, Failure>,
    {
        if n == 0 {
            return Vec::new();
        }
        self.supervisor.begin_batch();
        PluginStats::add(&self.supervisor.stats().events_in, n as u64);
        let raw: Vec<Result<R, Failure>> = match call(&mut self.supervisor, 0..n) {
            Ok(raw) => raw.into_iter().map(Ok).collect(),
            Err(failure) => {
                tracing::debug!(plugin = self.plugin().name(), inputs = n, %failure, "batch call failed; isolating");
                PluginStats::add(&self.supervisor.stats().retried_batches, 1);
                isolate(&mut self.supervisor, n, failure, &mut call)
            }
        };
        let mut check = limits(self.plugin());
        let results: Vec<Result<O, Failure>> = raw.into_iter().map(|r| r.and_then(&mut check)).collect();
        self.count(&results, outputs);
        results
    }

    /// Every one of `n` inputs fails with `failure`, uncalled (counted as if called).
    pub(crate) fn refuse_all<O>(&self, n: usize, failure: Failure) -> Vec<Result<O, Failure>> {
        PluginStats::add(&self.supervisor.stats().events_in, n as u64);
        let results: Vec<Result<O, Failure>> = (0..n).map(|_| Err(failure.clone())).collect();
        self.count(&results, |_| 0);
        results
    }

    fn count<O>(&self, results: &[Result<O, Failure>], outputs: impl Fn(&O) -> u64) {
        let stats = self.supervisor.stats();
        let mut out = 0u64;
        for r in results {
            match r {
                Ok(o) => out += outputs(o),
                Err(f) => stats.count_failure(f.kind),
            }
        }
        PluginStats::add(&stats.events_out, out);
    }
}
