//! (Part of the `streamhost` binary, not the library.) `streamhost test`:
//! replays samples through a pipeline and compares its outputs with expected
//! files; `streamhost sample`: takes those samples from a running pipeline.
//! See docs/replay-tests.md.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use streamhost::config::{load_pipeline, StepConfig};
use streamhost::replay::{Replay, ReplayError, SampleForm, SampleRequest, SampleResponse, SampledEvent, TraceSpec, Tracer, LOOKUPS_DIR};
use streamhost::runtime::RunError;

use crate::plugin_cli::AdminArgs;

/// Exit code for input the user must fix.
const INVALID: u8 = 2;
/// Lines of an output shown when there is nothing to compare it with.
const SHOWN: usize = 20;

/// `streamhost test`'s arguments.
pub struct TestArgs {
    pub pipeline: PathBuf,
    pub sample: Option<PathBuf>,
    pub expect: Option<PathBuf>,
    pub update: bool,
    pub trace: Option<String>,
    pub out: Option<PathBuf>,
    pub record_lookups: bool,
}

fn invalid(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(INVALID))
}

pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let p = match load_pipeline(&args.pipeline) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(INVALID));
        }
    };
    let spec = match args.trace.as_deref().map(str::parse::<TraceSpec>).transpose() {
        Ok(s) => s,
        Err(e) => return invalid(format!("--trace {e}")),
    };
    if let Some(dir) = args.sample.as_ref().filter(|d| !d.is_dir()) {
        return invalid(format!("--sample {}: not a folder", dir.display()));
    }
    let temp;
    let out = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    if args.record_lookups && args.sample.is_none() {
        return invalid("--record-lookups writes into the sample folder: give --sample DIR");
    }
    let replay = match Replay::prepare_with(&p, args.sample.as_deref(), &out, args.record_lookups) {
        Ok(r) => r,
        Err(ReplayError::Run(RunError::Config(e))) => {
            eprint!("{e}");
            return Ok(ExitCode::from(INVALID));
        }
        Err(e) => return invalid(e),
    };
    let read: Vec<String> = replay.samples().map(|s| format!("{} ({} from {})", s.name, s.len(), s.path.display())).collect();
    println!("replaying {}: {}", args.pipeline.display(), read.join(", "));
    for note in &replay.notes {
        println!("  note: {note}");
    }
    let tracer = spec.map(|s| {
        let inputs = p.config.steps.iter().map(|(n, s): (&String, &StepConfig)| (n.clone(), s.inputs().to_vec())).collect();
        Arc::new(Tracer::new(s, inputs))
    });
    let ran = match replay.run(tracer.clone()) {
        Ok(r) => r,
        Err(RunError::Config(e)) => {
            eprint!("{e}");
            return Ok(ExitCode::from(INVALID));
        }
        Err(e) => return Err(e.into()),
    };
    let summary = ran.summary;
    eprint!("{summary}");
    if let (Some((answers, dropped)), Some(dir)) = (&ran.answers, &args.sample) {
        write_answers(dir, answers)?;
        println!("recorded {} lookup answers into {}", answers.len(), dir.join(LOOKUPS_DIR).display());
        if *dropped > 0 {
            println!("warning: {dropped} lookup answers were dropped (the recorder's buffer was full): record again");
        }
    }
    if let Some(t) = &tracer {
        print!("{}", t.report());
    }
    if !summary.errors.is_empty() {
        println!("test FAILED: the run failed: {}", summary.errors.join("; "));
        return Ok(ExitCode::FAILURE);
    }
    let Some(expect) = &args.expect else {
        show_outputs(&replay)?;
        return Ok(ExitCode::SUCCESS);
    };
    let outputs = replay.expected(&p, expect);
    if args.update {
        for o in &outputs {
            o.update()?;
            println!("wrote {} ({})", o.expected.display(), o.label);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    for o in &outputs {
        let diff = o.compare()?;
        let file = o.expected.display();
        if diff.matches() {
            println!("ok    {} ({file}): {}", o.label, count(diff.got_lines));
        } else {
            failed += 1;
            let absent = if o.expected.exists() { "" } else { "; the expected file does not exist" };
            println!("FAIL  {} ({file}): {} ({} expected, {} got{absent})", o.label, diff.counts(), diff.expected_lines, diff.got_lines);
            print!("{}", diff.render());
        }
    }
    if failed == 0 {
        println!("test passed: {} outputs as expected", outputs.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("test FAILED: {failed} of {} outputs differ (`--update` makes this run's outputs the expected ones)", outputs.len());
        Ok(ExitCode::FAILURE)
    }
}

/// "1 line", "3 lines".
fn count(n: usize) -> String {
    format!("{n} line{}", if n == 1 { "" } else { "s" })
}

/// Without expected files: each output's first lines.
fn show_outputs(replay: &Replay) -> anyhow::Result<()> {
    let mut all: Vec<(String, &Path)> = replay.outputs.iter().map(|(n, p)| (format!("sink `{n}`"), p.as_path())).collect();
    all.push(("dead letters".into(), &replay.dead_letters));
    for (label, path) in all {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("{label}: {}", count(lines.len()));
        for l in lines.iter().take(SHOWN) {
            println!("  {l}");
        }
        if lines.len() > SHOWN {
            println!("  ... ({} more)", lines.len() - SHOWN);
        }
    }
    Ok(())
}

/// `streamhost sample`'s arguments.
pub struct SampleArgs {
    pub node: Option<String>,
    pub events: usize,
    pub output: PathBuf,
    pub timeout_s: u64,
    pub settle_ms: u64,
}

pub fn sample(admin: &AdminArgs, args: SampleArgs) -> anyhow::Result<ExitCode> {
    let client = admin.client()?;
    let req = SampleRequest { node: args.node.clone(), events: args.events, timeout_ms: args.timeout_s.saturating_mul(1000), settle_ms: args.settle_ms };
    let what = args.node.as_deref().map_or_else(|| "every source".to_string(), |n| format!("`{n}`"));
    eprintln!("streamhost: sampling the next {} events of {what} (at most {} s)", args.events, args.timeout_s);
    let got = match client.sample(&req) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    write_sample(&args.output, &got)?;
    let nodes: Vec<String> = got.nodes.iter().map(|n| format!("{} {} ({} as {})", n.kind, n.name, n.events, n.form)).collect();
    let mut steps: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &got.lookups {
        *steps.entry(&a.step).or_default() += 1;
    }
    let lookups: Vec<String> = steps.iter().map(|(s, n)| format!("{s} ({n})")).collect();
    println!("sampled {} events into {}: {}", got.events.len(), args.output.display(), nodes.join(", "));
    if !lookups.is_empty() {
        println!("recorded lookup answers: {}", lookups.join(", "));
    }
    if got.dropped > 0 || got.lookups_dropped > 0 {
        println!(
            "warning: {} events and {} lookup answers were dropped (the tap's buffer was full): the sample has holes",
            got.dropped, got.lookups_dropped
        );
    }
    if !got.complete {
        println!("warning: stopped after {} s (or at the sample's size bound) with {} of {} events", args.timeout_s, got.events.len(), args.events);
    }
    Ok(ExitCode::SUCCESS)
}

/// JSON text on one line: as it is when it already is, else re-written.
fn one_line_json(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(if text.contains('\n') { v.to_string() } else { text.trim().to_string() })
}

/// An event as an envelope line (the `envelope` format of a file sink).
fn envelope(e: &SampledEvent) -> String {
    let mut m = serde_json::Map::new();
    if let Some(k) = &e.key {
        m.insert("key".into(), k.clone().into());
    }
    m.insert("timestamp".into(), e.timestamp.into());
    match (&e.value, &e.value_base64) {
        (Some(v), _) => match one_line_json(v) {
            Some(json) => m.insert("value".into(), serde_json::from_str(&json).unwrap_or_default()),
            None => m.insert("value_text".into(), v.clone().into()),
        },
        (None, b64) => m.insert("value_base64".into(), b64.clone().unwrap_or_default().into()),
    };
    if !e.headers.is_empty() {
        m.insert("headers".into(), serde_json::json!(e.headers));
    }
    serde_json::Value::Object(m).to_string()
}

/// Writes a sample in the layout `streamhost test --sample` reads.
fn write_sample(dir: &Path, got: &SampleResponse) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for node in &got.nodes {
        let form = if node.form == "records" { SampleForm::Records } else { SampleForm::Events };
        let path = form.path(dir, &node.name);
        let other = if form == SampleForm::Records { SampleForm::Events } else { SampleForm::Records }.path(dir, &node.name);
        if other.exists() {
            std::fs::remove_file(&other).with_context(|| format!("removing {}", other.display()))?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        for e in got.events.iter().filter(|e| e.node == node.name) {
            let line = match form {
                SampleForm::Records => match &e.value {
                    Some(v) => one_line_json(v).unwrap_or_else(|| v.replace(['\n', '\r'], " ")),
                    None => envelope(e),
                },
                SampleForm::Events => envelope(e),
            };
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    write_answers(dir, &got.lookups)
}

/// Writes lookup answers as `lookups/STEP.jsonl`: each key once (its last
/// answer), added to what was recorded before.
fn write_answers(dir: &Path, got: &[streamhost::replay::SampledAnswer]) -> anyhow::Result<()> {
    let mut by_step: BTreeMap<&str, Vec<(String, Option<String>)>> = BTreeMap::new();
    for a in got {
        by_step.entry(&a.step).or_default().push((a.key.clone(), a.value.clone()));
    }
    for (step, answers) in by_step {
        let path = dir.join(LOOKUPS_DIR).join(format!("{step}.jsonl"));
        std::fs::create_dir_all(path.parent().expect("under dir"))?;
        let mut lines: Vec<(String, String)> = Vec::new();
        if path.exists() {
            for l in std::fs::read_to_string(&path)?.lines() {
                if let Some(k) = serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v.get("key")?.as_str().map(str::to_string)) {
                    lines.push((k, l.to_string()));
                }
            }
        }
        for (key, value) in answers {
            let mut m = serde_json::Map::new();
            m.insert("key".into(), key.clone().into());
            match value {
                None => m.insert("value".into(), serde_json::Value::Null),
                Some(v) => match one_line_json(&v).filter(|j| j != "null") {
                    Some(json) => m.insert("value".into(), serde_json::from_str(&json).unwrap_or_default()),
                    None => m.insert("value_text".into(), v.into()),
                },
            };
            let line = serde_json::Value::Object(m).to_string();
            match lines.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = line,
                None => lines.push((key, line)),
            }
        }
        let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
