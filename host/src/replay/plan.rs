//! A pipeline made ready for a replay: its sources read the samples, each
//! sink writes a capture file, its lookup joins read recorded answers, and
//! nothing depends on the machine or the clock (one worker, no checkpoints,
//! no admin API, state in memory, no idle timeouts).
//!
//! A sample file may also be named after a step: the step's output is then
//! read from it (a source takes the step's place) and what only fed that
//! step is left out, so a change downstream of a sampled step replays alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::feed::{SampleFile, SampleForm};
use super::ReplayError;
use crate::config::{DeadLetterConfig, LoadedPipeline, SinkConfig, SourceCommon, SourceConfig, StateBackendKind, StepConfig};
use crate::lookup::{BackendConfig, FileTableConfig};
use crate::sink::{FileSinkConfig, SinkFormat};
use crate::source::FileSourceConfig;

/// The folder of a sample holding the recorded lookup answers.
pub const LOOKUPS_DIR: &str = "lookups";
/// The expected file of the dead letters.
pub const DEAD_LETTERS: &str = "dead-letters";

/// What the rewrite made.
pub(super) struct Rewritten {
    pub pipeline: LoadedPipeline,
    /// The samples, each with the settings of the source reading it.
    pub samples: Vec<(SampleFile, SourceCommon)>,
    /// Sink → its capture file.
    pub outputs: BTreeMap<String, PathBuf>,
    pub dead_letters: PathBuf,
    /// What the rewrite did that a user may not expect.
    pub notes: Vec<String>,
}

/// The name a sample file stands for (`NAME.jsonl`, `NAME.events.jsonl`).
fn sample_name(file: &str) -> Option<&str> {
    file.strip_suffix(".events.jsonl").or_else(|| file.strip_suffix(".jsonl"))
}

/// Rewrites `p` to replay `sample` (or, without one, its file sources' own
/// files), writing its outputs under `out`. `record_lookups`: its lookup
/// joins read their real tables (their answers are recorded), not files.
pub(super) fn rewrite(p: &LoadedPipeline, sample: Option<&Path>, out: &Path, record_lookups: bool) -> Result<Rewritten, ReplayError> {
    let c = &p.config;
    let err = ReplayError::Sample;
    let mut notes = Vec::new();
    let found = |name: &str| -> Result<Option<(PathBuf, SampleForm)>, ReplayError> {
        match sample {
            Some(dir) => SampleForm::find(dir, name).map_err(err),
            None => Ok(None),
        }
    };

    // Every sample file must stand for a source or a step (a typo would
    // otherwise replay the wrong input silently).
    if let Some(dir) = sample {
        let entries = std::fs::read_dir(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = sample_name(&file) else { continue };
            if e.path().is_file() && !c.sources.contains_key(name) && !c.steps.contains_key(name) {
                let known: Vec<&str> = c.sources.keys().chain(c.steps.keys()).map(String::as_str).collect();
                return Err(err(format!("{}: `{name}` is no source or step of the pipeline (known: {})", e.path().display(), known.join(", "))));
            }
        }
    }

    // What the sinks need: walking up from them, a step with a sample of its
    // own is where the walk stops (its sample replaces it).
    let (mut sources, mut steps, mut cut) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut todo: Vec<&str> = c.sinks.values().flat_map(|s| s.inputs()).map(String::as_str).collect();
    while let Some(n) = todo.pop() {
        if c.sources.contains_key(n) {
            sources.insert(n.to_string());
        } else if let Some(step) = c.steps.get(n) {
            if found(n)?.is_some() {
                cut.insert(n.to_string());
            } else if steps.insert(n.to_string()) {
                todo.extend(step.inputs().iter().map(String::as_str));
            }
        }
    }
    for n in c.sources.keys().filter(|n| !sources.contains(*n)) {
        let why = if found(n)?.is_some() { " (its sample is not used)" } else { "" };
        notes.push(format!("source `{n}` feeds only steps whose output is sampled: left out{why}"));
    }
    for n in &cut {
        notes.push(format!("step `{n}`: its output is read from its sample; what fed only it is left out"));
    }

    let mut config = c.clone();
    let mut samples = Vec::new();
    config.sources.clear();
    for name in &sources {
        let original = &c.sources[name];
        let (path, form) = match (found(name)?, original) {
            (Some(f), _) => f,
            (None, SourceConfig::File(f)) => {
                if sample.is_some() {
                    notes.push(format!("source `{name}`: no sample, its own file is read ({})", p.resolve(&f.path).display()));
                }
                (p.resolve(&f.path), SampleForm::Records)
            }
            (None, _) => {
                let dir = sample.map_or_else(|| "--sample DIR".to_string(), |d| d.display().to_string());
                return Err(err(format!("source `{name}` has no sample: put its records in {dir}/{name}.jsonl (or events in {name}.events.jsonl)")));
            }
        };
        let common = SourceCommon { idle_timeout_ms: None, on_error: Default::default(), retry: None, ..original.common().clone() };
        let mut file = SampleFile::read(name, &path, form).map_err(err)?;
        file.lines = form == SampleForm::Records && matches!(original, SourceConfig::File(_) | SourceConfig::Stdin(_));
        samples.push((file, common.clone()));
        config.sources.insert(name.clone(), SourceConfig::File(FileSourceConfig { path, common }));
    }
    for name in &cut {
        let (path, form) = found(name)?.expect("cut steps have samples");
        let file = SampleFile::read(name, &path, form).map_err(err)?;
        // A step's output is as out of order as it is: none of it is late.
        let common = SourceCommon { max_out_of_orderness_ms: file.disorder_ms(&SourceCommon::default()), ..Default::default() };
        if form == SampleForm::Records {
            notes.push(format!("step `{name}`: its sample holds values only, so its events get virtual times (give envelopes in {name}.events.jsonl to keep theirs)"));
        }
        samples.push((file, common.clone()));
        config.sources.insert(name.clone(), SourceConfig::File(FileSourceConfig { path, common }));
    }

    config.steps.retain(|name, _| steps.contains(name));
    let mut missing = Vec::new();
    for (name, step) in config.steps.iter_mut() {
        let StepConfig::LookupJoin(l) = step else { continue };
        if record_lookups {
            notes.push(format!("step `{name}`: its lookups go to its real table ({}), and are recorded", l.backends.iter().map(BackendConfig::name).collect::<Vec<_>>().join(", ")));
            continue;
        }
        let recorded = sample.map(|d| d.join(LOOKUPS_DIR).join(format!("{name}.jsonl")));
        match recorded {
            Some(path) if path.is_file() => {
                l.backends = vec![BackendConfig::File(FileTableConfig { path })];
                // A file answers at once; nothing to retry or time out.
                l.timeout_ms = 60_000;
                l.retries = 0;
            }
            other => missing.push(other.map_or_else(|| format!("step `{name}`: give --sample DIR with {LOOKUPS_DIR}/{name}.jsonl"), |p| p.display().to_string())),
        }
    }
    if !missing.is_empty() {
        return Err(err(format!(
            "lookup joins are answered from recorded files, and these are missing: {} (`streamhost sample` records them; a line is {{\"key\": \"...\", \"value\": ...}}, null for no such key)",
            missing.join(", ")
        )));
    }

    let mut outputs = BTreeMap::new();
    for (name, sink) in config.sinks.iter_mut() {
        let format = match sink {
            SinkConfig::File(f) => f.format,
            SinkConfig::Stdout(s) => s.format,
            _ => SinkFormat::Value,
        };
        let path = out.join("sinks").join(format!("{name}.jsonl"));
        outputs.insert(name.clone(), path.clone());
        *sink = SinkConfig::File(FileSinkConfig { inputs: sink.inputs().to_vec(), path, format });
    }
    let dead_letters = out.join(format!("{DEAD_LETTERS}.jsonl"));
    config.dead_letter = Some(DeadLetterConfig::File { path: dead_letters.clone() });

    let s = &mut config.settings;
    s.parallelism = Some(1);
    s.checkpoint = None;
    s.admin = None;
    s.scale_out = None;
    s.state.backend = StateBackendKind::Memory;
    s.state.dir = Some(out.join("state"));
    s.state.redis = None;

    let pipeline = LoadedPipeline { config, ..p.clone() };
    Ok(Rewritten { pipeline, samples, outputs, dead_letters, notes })
}
