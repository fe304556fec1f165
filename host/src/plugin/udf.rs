//! Calls the scalar functions of a `udf` plugin instance.

use std::sync::Arc;

use super::instance::Supervisor;
use super::isolation::isolate;
use super::loaded::LoadedPlugin;
use super::outcome::{Failure, FailureKind, PluginStats};
use super::registry::{SampleBatch, Watch};
use super::wit::{FunctionSignature, Scalar, Udf};

/// One instance of a UDF plugin (one `Store`).
pub struct UdfRunner {
    supervisor: Supervisor<Udf>,
    /// The registry slot it follows (hot swap), if any.
    watch: Option<Watch>,
}

impl UdfRunner {
    pub(crate) fn new(supervisor: Supervisor<Udf>) -> Self {
        UdfRunner { supervisor, watch: None }
    }

    pub(crate) fn watching(mut self, watch: Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Between batches: switches to the slot's new version if it was
    /// swapped, and offers the rows to the slot's sample.
    fn follow_slot(&mut self, function: &str, rows: &[Vec<Scalar>]) {
        let Some(watch) = &mut self.watch else { return };
        if let Some(plugin) = watch.changed() {
            self.supervisor.switch_to(plugin);
        }
        watch.sample(|max| SampleBatch::Rows { function: function.to_string(), rows: rows[..rows.len().min(max)].to_vec() });
    }

    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        self.supervisor.plugin()
    }

    /// The functions the plugin exports, as it declared them (asked once,
    /// when the plugin was loaded).
    pub fn functions(&self) -> &[FunctionSignature] {
        self.supervisor.plugin().functions()
    }

    pub fn function(&self, name: &str) -> Option<&FunctionSignature> {
        self.functions().iter().find(|f| f.name == name)
    }

    /// One result per row, in order. As for transforms, a failed call is
    /// isolated by bisection within a budget (`isolation`), so only the rows
    /// that cause it fail.
    pub fn call(&mut self, function: &str, rows: &[Vec<Scalar>]) -> Vec<Result<Scalar, Failure>> {
        if rows.is_empty() {
            return Vec::new();
        }
        self.follow_slot(function, rows);
        let stats = self.supervisor.stats();
        PluginStats::add(&stats.events_in, rows.len() as u64);
        let results = if self.function(function).is_none() {
            let message = format!("plugin {} has no function named {function:?}", self.plugin().name());
            rows.iter().map(|_| Err(Failure::new(FailureKind::Error, message.clone()))).collect()
        } else {
            self.supervisor.begin_batch();
            match call_rows(&mut self.supervisor, function, rows) {
                Ok(raw) => self.check_limits(raw),
                Err(failure) => {
                    PluginStats::add(&self.supervisor.stats().retried_batches, 1);
                    let raw = isolate(&mut self.supervisor, rows.len(), failure, |supervisor, range| {
                        call_rows(supervisor, function, &rows[range])
                    });
                    let max = self.plugin().limits().max_output_bytes_per_batch;
                    let mut budget = max;
                    raw.into_iter().map(|r| r.and_then(|r| check(r, &mut budget, max))).collect()
                }
            }
        };
        self.count(&results);
        results
    }

    fn check_limits(&self, raw: Vec<Result<Scalar, String>>) -> Vec<Result<Scalar, Failure>> {
        let max = self.plugin().limits().max_output_bytes_per_batch;
        let mut budget = max;
        raw.into_iter().map(|r| check(r, &mut budget, max)).collect()
    }

    fn count(&self, results: &[Result<Scalar, Failure>]) {
        let stats = self.supervisor.stats();
        let mut ok = 0u64;
        for r in results {
            match r {
                Ok(_) => ok += 1,
                Err(f) => stats.count_failure(f.kind),
            }
        }
        PluginStats::add(&stats.events_out, ok);
    }
}

/// One call of `function` on `rows`: exactly one result per row, or the
/// call's failure (a wrong count of results breaks the contract).
fn call_rows(supervisor: &mut Supervisor<Udf>, function: &str, rows: &[Vec<Scalar>]) -> Result<Vec<Result<Scalar, String>>, Failure> {
    let raw = supervisor.call(|plugin, store| plugin.call_call(store, function, rows))?;
    if raw.len() != rows.len() {
        return Err(Failure::new(
            FailureKind::Trap,
            format!("the plugin broke the contract: {} results for {} rows", raw.len(), rows.len()),
        ));
    }
    Ok(raw)
}

/// Applies the output-bytes budget to one result.
fn check(raw: Result<Scalar, String>, budget: &mut usize, max: usize) -> Result<Scalar, Failure> {
    let scalar = raw.map_err(|message| Failure::new(FailureKind::Error, message))?;
    let bytes = match &scalar {
        Scalar::Str(s) => s.len(),
        Scalar::Bytes(b) => b.len(),
        _ => 0,
    };
    if bytes > *budget {
        return Err(Failure::new(
            FailureKind::Limit,
            format!("a {bytes}-byte result overflows the batch's budget (limit: max_output_bytes_per_batch = {max})"),
        ));
    }
    *budget -= bytes;
    Ok(scalar)
}
