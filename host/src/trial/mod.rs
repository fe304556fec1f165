//! `streamhost plugin test`: a plugin's trial run on sample input, in the
//! same sandbox as `streamhost run` (the plugin runtime, its limits and
//! grants: nothing granted), with what it costs.
//!
//! The sample (`sample.rs`) is fed in batches, as a pipeline would, through
//! the world's runner, so a trap is isolated exactly as in a pipeline: the
//! record that causes it fails alone, with the trap's message. `report.rs`
//! prints the outcome of every input and the cost per event.

mod report;
mod sample;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{PluginGrants, PluginLimits, WorldName};
use crate::event::Event;
use crate::plugin::{Failure, FailureKind, FunctionSignature, JoinCase, LoadedPlugin, Outcome, PluginError, PluginRuntime, Scalar};

pub use report::{render_json, render_text, Summary};
pub use sample::{parse as parse_sample, Case, RecordOptions, Sample};

/// Errors of a trial run (not of the plugin's inputs: those are results).
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error("sample line {line}: {message}")]
    Sample { line: usize, message: String },
    #[error("the sample has no input (every line is blank)")]
    EmptySample,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{0}")]
    Function(String),
}

/// Settings of a trial run.
#[derive(Clone, Debug)]
pub struct TrialOptions {
    /// Inputs per call (a pipeline's `settings.batch_size`).
    pub batch_size: usize,
    /// The plugin's `init` config.
    pub config: serde_json::Value,
    pub limits: PluginLimits,
    pub records: RecordOptions,
    /// UDF: the function to call (default: the only one).
    pub function: Option<String>,
    /// Joiner: the step's other inputs, in order (default: from the sample).
    pub inputs: Option<Vec<String>>,
}

impl Default for TrialOptions {
    fn default() -> Self {
        TrialOptions {
            batch_size: 256,
            config: serde_json::Value::Null,
            limits: PluginLimits::default(),
            records: RecordOptions::default(),
            function: None,
            inputs: None,
        }
    }
}

/// What the plugin made of one input.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Transform and joiner: the output events (none: dropped).
    Events(Vec<Event>),
    /// UDF: the function's result.
    Scalar(Scalar),
}

/// One input's line and outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct InputResult {
    pub line: usize,
    pub outcome: Result<Output, Failure>,
}

/// A finished trial run.
#[derive(Debug)]
pub struct Trial {
    pub plugin: Arc<LoadedPlugin>,
    /// UDF: the function called.
    pub function: Option<FunctionSignature>,
    pub results: Vec<InputResult>,
    pub batches: usize,
    /// Wall time of feeding the sample (load excluded).
    pub wall: Duration,
}

impl Trial {
    /// Whether an input trapped, timed out, ran out of memory or broke an
    /// output limit: what `plugin test` exits non-zero for.
    pub fn has_traps(&self) -> bool {
        self.results.iter().any(|r| matches!(&r.outcome, Err(f) if f.kind != FailureKind::Error))
    }
}

/// Loads `wasm` and feeds it `sample`.
pub fn run(runtime: &PluginRuntime, name: &str, wasm: &Path, sample: &str, expected: Option<WorldName>, opts: &TrialOptions) -> Result<Trial, TrialError> {
    let plugin = runtime.load(name, wasm, expected, &opts.limits, &PluginGrants::default(), &opts.config)?;
    let now_ms = crate::plugin::unix_micros(std::time::SystemTime::now()) as i64 / 1000;
    let records = RecordOptions { default_timestamp: now_ms, ..opts.records.clone() };
    let parsed = sample::parse(sample, plugin.world(), &records, opts.inputs.as_deref())?;
    let size = opts.batch_size.max(1);
    let started = Instant::now();
    let mut batches = 0;
    let mut results = Vec::with_capacity(parsed.len());
    let mut function = None;
    match parsed {
        Sample::Events(events) if plugin.world() == WorldName::Aggregator => {
            let (b, r) = aggregate(&plugin, &events, size)?;
            batches = b;
            results = r;
        }
        Sample::Events(events) => {
            let mut runner = plugin.transform()?;
            for chunk in events.chunks(size) {
                let batch: Vec<Event> = chunk.iter().map(|(_, e)| e.clone()).collect();
                let outcomes = runner.process(&batch);
                batches += 1;
                results.extend(chunk.iter().zip(outcomes).map(|((line, _), o)| InputResult { line: *line, outcome: events_of(o) }));
            }
        }
        Sample::Rows(rows) => {
            let mut runner = plugin.udf()?;
            let name = pick_function(runner.functions(), opts.function.as_deref())?;
            function = runner.function(&name).cloned();
            for chunk in rows.chunks(size) {
                let batch: Vec<Vec<Scalar>> = chunk.iter().map(|(_, r)| r.clone()).collect();
                let out = runner.call(&name, &batch);
                batches += 1;
                results.extend(chunk.iter().zip(out).map(|((line, _), r)| InputResult { line: *line, outcome: r.map(Output::Scalar) }));
            }
        }
        Sample::Cases { inputs, cases } => {
            let mut runner = plugin.joiner()?;
            for chunk in cases.chunks(size) {
                let batch: Vec<JoinCase<'_>> = chunk
                    .iter()
                    .map(|(_, c)| JoinCase { main: &c.main, matches: c.matches.iter().map(|g| g.iter().collect()).collect() })
                    .collect();
                let outcomes = runner.join(&inputs, &batch);
                batches += 1;
                results.extend(chunk.iter().zip(outcomes).map(|((line, _), o)| InputResult { line: *line, outcome: events_of(o) }));
            }
        }
    }
    Ok(Trial { plugin, function, results, batches, wall: started.elapsed() })
}

/// An aggregator's trial: the events folded per key (one accumulator per
/// key, `create`d once), a batch at a time, then every accumulator merged
/// with an empty one (so `merge` runs too) and finished. An input that
/// folded comes out as one event: its key's final value, `{"key": KEY,
/// "value": VALUE}` (`VALUE` null with `"error"` if `finish` failed).
fn aggregate(plugin: &Arc<LoadedPlugin>, events: &[(usize, Event)], size: usize) -> Result<(usize, Vec<InputResult>), TrialError> {
    let mut runner = plugin.aggregator()?;
    let fail = |f: Failure| TrialError::Function(format!("the plugin's aggregator calls failed: {f}"));
    let empty = runner.create().map_err(fail)?;
    let mut keys: Vec<Option<Vec<u8>>> = Vec::new();
    let mut states: Vec<Vec<u8>> = Vec::new();
    let mut group_of = Vec::with_capacity(events.len());
    let mut outcomes: Vec<Option<Failure>> = vec![None; events.len()];
    let mut batches = 0;
    for (c, chunk) in events.chunks(size).enumerate() {
        let batch: Vec<Event> = chunk.iter().map(|(_, e)| e.clone()).collect();
        let groups: Vec<u32> = batch
            .iter()
            .map(|e| {
                let g = keys.iter().position(|k| *k == e.key).unwrap_or_else(|| {
                    keys.push(e.key.clone());
                    states.push(empty.clone());
                    keys.len() - 1
                });
                group_of.push(g);
                g as u32
            })
            .collect();
        let added = runner.add(std::mem::take(&mut states), &batch, &groups);
        batches += 1;
        states = added.states;
        for (i, f) in added.failed {
            outcomes[c * size + i] = Some(f);
        }
    }
    let with_empty: Vec<Vec<u8>> = states.iter().cloned().chain(std::iter::once(empty)).collect();
    let into: Vec<u32> = (0..states.len() as u32).chain(std::iter::once(0)).collect();
    let merged = runner.merge(with_empty, &into, states.len() as u32).map_err(fail)?;
    let values = runner.finish(merged, false);
    let results = events
        .iter()
        .zip(outcomes)
        .zip(group_of)
        .map(|(((line, event), failed), g)| {
            let outcome = match failed {
                Some(f) => Err(f),
                None => {
                    let key = keys[g].as_deref().map(|k| String::from_utf8_lossy(k).into_owned());
                    let value = match &values[g] {
                        Ok(v) => serde_json::json!({"key": key, "value": v}),
                        Err(e) => serde_json::json!({"key": key, "value": null, "error": e}),
                    };
                    Ok(Output::Events(vec![Event { value: value.to_string().into_bytes(), ..event.clone() }]))
                }
            };
            InputResult { line: *line, outcome }
        })
        .collect();
    Ok((batches, results))
}

fn events_of(o: Outcome) -> Result<Output, Failure> {
    match o {
        Outcome::Ok(events) => Ok(Output::Events(events)),
        Outcome::Failed(f) => Err(f),
    }
}

/// The UDF function to call: the one asked for, or the only one.
fn pick_function(functions: &[FunctionSignature], wanted: Option<&str>) -> Result<String, TrialError> {
    let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
    match wanted {
        Some(w) if names.contains(&w) => Ok(w.to_string()),
        Some(w) => Err(TrialError::Function(format!("the plugin has no function {w:?}; it exports: {}", names.join(", ")))),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(TrialError::Function(format!(
            "the plugin exports {} functions ({}): pick one with --function",
            names.len(),
            names.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::ScalarType;

    fn sig(name: &str) -> FunctionSignature {
        FunctionSignature { name: name.into(), params: vec![ScalarType::Int], result: ScalarType::Int }
    }

    #[test]
    fn the_only_function_or_the_one_named() {
        assert_eq!(pick_function(&[sig("a")], None).unwrap(), "a");
        assert_eq!(pick_function(&[sig("a"), sig("b")], Some("b")).unwrap(), "b");
        let e = pick_function(&[sig("a"), sig("b")], None).unwrap_err().to_string();
        assert!(e.contains("2 functions (a, b)") && e.contains("--function"), "{e}");
        let e = pick_function(&[sig("a")], Some("z")).unwrap_err().to_string();
        assert!(e.contains("no function \"z\"") && e.contains("exports: a"), "{e}");
    }
}
