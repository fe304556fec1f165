//! Calls the scalar functions of a `udf` plugin instance.

use std::sync::Arc;

use super::instance::Supervisor;
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

    /// One result per row, in order. As for transforms, a trap fails only
    /// the rows that cause it (the batch is retried row by row).
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
            match self.supervisor.call(|plugin, store| plugin.call_call(store, function, rows)) {
                Ok(raw) if raw.len() == rows.len() => self.check_limits(raw),
                Ok(_) | Err(_) => self.isolate(function, rows),
            }
        };
        self.count(&results);
        results
    }

    fn isolate(&mut self, function: &str, rows: &[Vec<Scalar>]) -> Vec<Result<Scalar, Failure>> {
        PluginStats::add(&self.supervisor.stats().retried_batches, 1);
        let mut budget = self.plugin().limits().max_output_bytes_per_batch;
        rows.iter()
            .map(|row| {
                let one = std::slice::from_ref(row);
                match self.supervisor.call(|plugin, store| plugin.call_call(store, function, one)) {
                    Ok(raw) if raw.len() == 1 => match raw.into_iter().next() {
                        Some(r) => check(r, &mut budget, self.plugin().limits().max_output_bytes_per_batch),
                        None => Err(Failure::new(FailureKind::Trap, "no result")),
                    },
                    Ok(raw) => Err(Failure::new(
                        FailureKind::Trap,
                        format!("the plugin returned {} results for 1 row (expected exactly one)", raw.len()),
                    )),
                    Err(failure) => Err(failure),
                }
            })
            .collect()
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
