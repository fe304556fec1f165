//! Replay tests (docs/replay-tests.md): `streamhost test` runs a pipeline on
//! sample files, deterministically, and compares every sink and the dead
//! letters with expected files; `streamhost sample` takes those samples from
//! a running pipeline through its admin API.
//!
//! - `plan.rs`: the pipeline rewritten for a replay (samples in, capture
//!   files out, recorded lookups, one worker, no checkpoints, no clock).
//! - `feed.rs`: the replay's sources, taking turns in an order fixed by the
//!   samples' event times, and the sample file formats.
//! - `compare.rs`: canonical JSON comparison and the readable difference.
//! - `trace.rs`: `--trace`, an event followed through every step.
//! - `tap.rs`: the tap points `streamhost sample` copies events from.
//!
//! Determinism: the coordinator runs a replay in *lockstep* (every source
//! message is carried through the whole DAG, lookups answered, before the
//! next is read: `runtime/driver.rs`), with the feed's fixed order of
//! messages, one worker per stage, and no idle timeouts, so a sample gives
//! the same outputs on every run and machine.

pub mod compare;
pub mod feed;
mod plan;
pub mod tap;
pub mod trace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use compare::{compare, FileDiff};
pub use feed::{Feed, SampleFile, SampleForm, VIRTUAL_EPOCH_MS};
pub use plan::{DEAD_LETTERS, LOOKUPS_DIR};
pub use tap::{AnswerRecorder, SampleRequest, SampleResponse, SampledAnswer, SampledEvent, SampledNode, TapError, TapPoint, Taps};
pub use trace::{TraceSpec, Tracer};

use crate::config::{DeadLetterConfig, LoadedPipeline, SinkConfig};
use crate::runtime::{build_pipeline, BuildOptions, RunError, RunSummary};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A sample, a recording or an expected file that is missing or wrong.
    #[error("{0}")]
    Sample(String),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// A pipeline ready to replay its samples.
pub struct Replay {
    /// The rewritten pipeline.
    pub pipeline: LoadedPipeline,
    feed: Arc<Feed>,
    /// Sink name → the file its output is captured in.
    pub outputs: BTreeMap<String, PathBuf>,
    pub dead_letters: PathBuf,
    /// What the rewrite did that a user may not expect (sources left out...).
    pub notes: Vec<String>,
    record_lookups: bool,
}

/// What a replay's run gives.
pub struct Ran {
    pub summary: RunSummary,
    /// With `record_lookups`: the lookup joins' answers, and how many were
    /// dropped (the recorder's buffer was full).
    pub answers: Option<(Vec<SampledAnswer>, u64)>,
}

impl Replay {
    /// Prepares `p` to replay the samples in `sample` (without it, its file
    /// sources' own files), its outputs written under `out`.
    pub fn prepare(p: &LoadedPipeline, sample: Option<&Path>, out: &Path) -> Result<Replay, ReplayError> {
        Replay::prepare_with(p, sample, out, false)
    }

    /// [`Replay::prepare`]; with `record_lookups`, the lookup joins ask
    /// their real tables and [`Replay::run`] returns the answers.
    pub fn prepare_with(p: &LoadedPipeline, sample: Option<&Path>, out: &Path, record_lookups: bool) -> Result<Replay, ReplayError> {
        let r = plan::rewrite(p, sample, out, record_lookups)?;
        let feed = Feed::new(r.samples, r.pipeline.config.settings.batch_size);
        Ok(Replay { pipeline: r.pipeline, feed, outputs: r.outputs, dead_letters: r.dead_letters, notes: r.notes, record_lookups })
    }

    /// The samples read, by source.
    pub fn samples(&self) -> impl Iterator<Item = &SampleFile> {
        self.feed.files()
    }

    /// Runs the replay to the end of its samples.
    pub fn run(&self, trace: Option<Arc<Tracer>>) -> Result<Ran, RunError> {
        let opts = BuildOptions { replay: Some(self.feed.clone()), trace, ..Default::default() };
        let built = build_pipeline(&self.pipeline, opts)?;
        let recorder = match self.record_lookups {
            true => Some(built.taps().record_answers().map_err(|e| RunError::Step(e.to_string()))?),
            false => None,
        };
        let summary = built.run()?;
        Ok(Ran { summary, answers: recorder.map(tap::AnswerRecorder::finish) })
    }

    /// Each output (sink `name`, or the dead letters) with its capture file
    /// and its expected file in `expect`.
    pub fn expected(&self, original: &LoadedPipeline, expect: &Path) -> Vec<Expected> {
        let mut all: Vec<Expected> = self
            .outputs
            .iter()
            .map(|(name, got)| {
                let mirrored = match &original.config.sinks[name] {
                    SinkConfig::File(f) if f.path.is_relative() => Some(f.path.clone()),
                    _ => None,
                };
                Expected { label: format!("sink `{name}`"), got: got.clone(), expected: expected_file(expect, name, mirrored), dead_letters: false }
            })
            .collect();
        let mirrored = match &original.config.dead_letter {
            Some(DeadLetterConfig::File { path }) if path.is_relative() => Some(path.clone()),
            Some(_) => None,
            None => Some(PathBuf::from("dead-letter.jsonl")),
        };
        all.push(Expected { label: "dead letters".into(), got: self.dead_letters.clone(), expected: expected_file(expect, DEAD_LETTERS, mirrored), dead_letters: true });
        all
    }
}

/// The expected file of output `name` in `expect`: `NAME.jsonl`, or (the
/// layout of `tests/cases/`) the file at the output's own relative path
/// when only that exists.
fn expected_file(expect: &Path, name: &str, mirrored: Option<PathBuf>) -> PathBuf {
    let own = expect.join(format!("{name}.jsonl"));
    match mirrored.map(|m| expect.join(m)) {
        Some(m) if !own.exists() && m.is_file() => m,
        _ => own,
    }
}

/// One output of a replay and the file it is expected to equal.
#[derive(Clone, Debug)]
pub struct Expected {
    pub label: String,
    pub got: PathBuf,
    pub expected: PathBuf,
    pub dead_letters: bool,
}

impl Expected {
    /// How the output compares (an absent expected file is an empty one).
    pub fn compare(&self) -> Result<FileDiff, ReplayError> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| ReplayError::Sample(format!("{}: {e}", p.display())));
        let want = if self.expected.exists() { read(&self.expected)? } else { String::new() };
        let got = if self.got.exists() { read(&self.got)? } else { String::new() };
        Ok(compare(&want, &got, self.dead_letters))
    }

    /// Makes the expected file what the replay wrote.
    pub fn update(&self) -> Result<(), ReplayError> {
        let io = |e: std::io::Error| ReplayError::Sample(format!("{}: {e}", self.expected.display()));
        if let Some(dir) = self.expected.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let got = if self.got.exists() { std::fs::read(&self.got).map_err(io)? } else { Vec::new() };
        std::fs::write(&self.expected, got).map_err(io)
    }
}
