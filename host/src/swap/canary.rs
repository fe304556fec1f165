//! The canary: a candidate version runs on the slot's sample of recent
//! inputs, in a store of its own, on the thread handling the swap (never
//! the pipeline thread). Outputs are discarded.

use std::sync::Arc;

use crate::plugin::{JoinCase, LoadedPlugin, Outcome, PluginError, SampleBatch};

/// What the canary saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CanaryReport {
    /// Sampled inputs run.
    pub events: u64,
    /// Of which failed (error, trap, timeout, limit).
    pub failures: u64,
    /// The first failure's reason, for the refusal message.
    pub first_failure: Option<String>,
}

impl CanaryReport {
    pub fn failure_rate(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.failures as f64 / self.events as f64
        }
    }

    fn count<'a>(&mut self, failures: impl Iterator<Item = Option<&'a str>>) {
        for failure in failures {
            self.events += 1;
            if let Some(message) = failure {
                self.failures += 1;
                self.first_failure.get_or_insert_with(|| message.to_string());
            }
        }
    }
}

/// Runs `probe` (a separate load of the candidate, so the canary's calls
/// do not count in the version's stats) on `sample`.
pub(crate) fn run(probe: &Arc<LoadedPlugin>, sample: &[SampleBatch]) -> Result<CanaryReport, PluginError> {
    let mut report = CanaryReport::default();
    // One runner (one store) for the whole sample, made on first use.
    let (mut transform, mut udf, mut joiner) = (None, None, None);
    for batch in sample {
        match batch {
            SampleBatch::Events(events) => {
                let runner = match &mut transform {
                    Some(r) => r,
                    None => transform.insert(probe.transform()?),
                };
                let outcomes = runner.process(events);
                report.count(outcomes.iter().map(failure));
            }
            SampleBatch::Rows { function, rows } => {
                let runner = match &mut udf {
                    Some(r) => r,
                    None => udf.insert(probe.udf()?),
                };
                let results = runner.call(function, rows);
                report.count(results.iter().map(|r| r.as_ref().err().map(|f| f.message.as_str())));
            }
            SampleBatch::Cases { inputs, cases } => {
                let cases: Vec<JoinCase<'_>> = cases
                    .iter()
                    .map(|(main, groups)| JoinCase { main, matches: groups.iter().map(|g| g.iter().collect()).collect() })
                    .collect();
                let runner = match &mut joiner {
                    Some(r) => r,
                    None => joiner.insert(probe.joiner()?),
                };
                let outcomes = runner.join(inputs, &cases);
                report.count(outcomes.iter().map(failure));
            }
        }
    }
    Ok(report)
}

fn failure(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Ok(_) => None,
        Outcome::Failed(f) => Some(&f.message),
    }
}
