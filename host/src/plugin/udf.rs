//! Calls the scalar functions of a `udf` plugin instance.

use std::sync::Arc;

use super::instance::Supervisor;
use super::loaded::LoadedPlugin;
use super::outcome::{Failure, FailureKind};
use super::registry::{SampleBatch, Watch};
use super::runner::Runner;
use super::wit::{FunctionSignature, Scalar, Udf};

/// One instance of a UDF plugin (one `Store`).
pub struct UdfRunner {
    runner: Runner<Udf>,
}

impl UdfRunner {
    pub(crate) fn new(supervisor: Supervisor<Udf>) -> Self {
        UdfRunner { runner: Runner::new(supervisor) }
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

    /// The functions the plugin exports, as it declared them (asked once,
    /// when the plugin was loaded).
    pub fn functions(&self) -> &[FunctionSignature] {
        self.runner.plugin().functions()
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
        self.runner.follow_slot(|max| SampleBatch::Rows { function: function.to_string(), rows: rows[..rows.len().min(max)].to_vec() });
        if self.function(function).is_none() {
            let message = format!("plugin {} has no function named {function:?}", self.plugin().name());
            return self.runner.refuse_all(rows.len(), Failure::new(FailureKind::Error, message));
        }
        let call = |supervisor: &mut Supervisor<Udf>, range: std::ops::Range<usize>| call_rows(supervisor, function, &rows[range]);
        self.runner.run(rows.len(), call, result_limits, |_| 1)
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

/// The check of each result against `plugin`'s output-bytes budget, for one batch.
fn result_limits(plugin: &LoadedPlugin) -> impl FnMut(Result<Scalar, String>) -> Result<Scalar, Failure> {
    let max = plugin.limits().max_output_bytes_per_batch;
    let mut budget = max;
    move |raw| check(raw, &mut budget, max)
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
