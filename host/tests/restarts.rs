//! Restarts that are right: a checkpoint is resumed only by the pipeline
//! whose state and positions it holds. A changed join or source is refused
//! with a located error (exit 2) naming what changed; safe changes resume;
//! `--fresh` starts over. And `max_matches`: a hot key's matches are capped,
//! the overflow counted and marked, on every state backend.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn streamhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamhost"))
}

fn run(pipeline: &Path, fresh: bool) -> Output {
    let mut cmd = streamhost();
    cmd.arg("run").arg("--no-progress");
    if fresh {
        cmd.arg("--fresh");
    }
    cmd.arg(pipeline).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Impressions (one every 400 ms) and a click for every seventh, in order.
fn write_inputs(dir: &Path, impressions: usize) {
    let base = 1_700_000_000_000i64;
    let mut imp = std::io::BufWriter::new(std::fs::File::create(dir.join("impressions.jsonl")).unwrap());
    let mut clicks = std::io::BufWriter::new(std::fs::File::create(dir.join("clicks.jsonl")).unwrap());
    for i in 0..impressions {
        let t = base + i as i64 * 400;
        writeln!(imp, r#"{{"ts":{t},"request_id":"r{i}"}}"#).unwrap();
        if i % 7 == 0 {
            writeln!(clicks, r#"{{"ts":{},"request_id":"r{i}","dwell_ms":{i}}}"#, t + 1000).unwrap();
        }
    }
}

fn pipeline_json() -> Value {
    common::file_join_pipeline()
}

fn write_pipeline(dir: &Path, p: &Value) -> PathBuf {
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(p).unwrap()).unwrap();
    path
}

/// The 1-based line of the first line of `path` containing `needle`.
fn line_of(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path).unwrap().lines().position(|l| l.contains(needle)).expect(needle) + 1
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn a_changed_join_or_source_is_refused_with_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), 2_000);
    std::fs::copy(dir.path().join("impressions.jsonl"), dir.path().join("impressions-2.jsonl")).unwrap();
    let pipeline = write_pipeline(dir.path(), &pipeline_json());
    let first = run(&pipeline, false);
    assert!(first.status.success(), "{}", stderr(&first));
    let output = sorted_lines(&dir.path().join("out/samples.jsonl"));
    assert_eq!(output.len(), 2_000);

    // (what to change, the JSON path reported, the line it is on, what the message says)
    type Change = (&'static str, fn(&mut Value), &'static str, &'static str, &'static str);
    let changes: [Change; 5] = [
        (
            "window.end_ms 1 h -> 30 min",
            |p| p["steps"]["samples"]["window"]["end_ms"] = json!(1_800_000),
            "$.steps.samples.window.end_ms",
            "\"end_ms\"",
            "step `samples`: window.end_ms was 3600000 in checkpoint chk-",
        ),
        (
            "bucket_ms",
            |p| p["steps"]["samples"]["bucket_ms"] = json!(600_000),
            "$.steps.samples.bucket_ms",
            "\"bucket_ms\"",
            "step `samples`: bucket_ms was 3600000 in checkpoint chk-",
        ),
        (
            "step renamed",
            |p| {
                let step = p["steps"]["samples"].take();
                p["steps"] = json!({ "training": step });
                p["sinks"]["samples"]["inputs"] = json!(["training"]);
            },
            "$.steps.training",
            "\"training\": {",
            "step `training` has no state in checkpoint chk-",
        ),
        (
            "source path",
            |p| p["sources"]["impressions"]["path"] = json!("impressions-2.jsonl"),
            "$.sources.impressions.path",
            "impressions-2.jsonl",
            "source `impressions`: path was \"impressions.jsonl\" in checkpoint chk-",
        ),
        (
            "source renamed",
            |p| {
                let source = p["sources"]["clicks"].take();
                p["sources"].as_object_mut().unwrap().remove("clicks");
                p["sources"]["taps"] = source;
                p["steps"]["samples"]["inputs"] = json!(["impressions", "taps"]);
                p["steps"]["samples"]["keys"] = json!({ "impressions": "$.request_id", "taps": "$.request_id" });
            },
            "$.sources.taps",
            "\"taps\": {",
            "source `taps` has no position in checkpoint chk-",
        ),
    ];
    for (what, change, path, line_needle, says) in changes {
        let mut p = pipeline_json();
        change(&mut p);
        let changed = write_pipeline(dir.path(), &p);
        let out = run(&changed, false);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        let located = format!("pipeline.json:{}:", line_of(&changed, line_needle));
        let line = err.lines().find(|l| l.contains(path)).unwrap_or_else(|| panic!("{what}: no error at {path}: {err}"));
        assert!(line.contains(&located), "{what}: not at {located}: {line}");
        assert!(line.contains(says), "{what}: {line}");
        assert!(line.contains("run with --fresh to start over, discarding state and checkpoints"), "{what}: {line}");
        assert_eq!(sorted_lines(&dir.path().join("out/samples.jsonl")), output, "{what}: a refused restart touches nothing");
    }
    // The message says what it is now, too.
    let mut p = pipeline_json();
    p["steps"]["samples"]["window"]["end_ms"] = json!(1_800_000);
    let err = stderr(&run(&write_pipeline(dir.path(), &p), false));
    assert!(err.contains("is 1800000 now"), "{err}");

    // The unchanged pipeline still resumes (to nothing: its input is done).
    let same = run(&write_pipeline(dir.path(), &pipeline_json()), false);
    assert!(same.status.success(), "{}", stderr(&same));
    assert_eq!(sorted_lines(&dir.path().join("out/samples.jsonl")), output);

    // --fresh starts the changed pipeline over.
    let fresh = run(&write_pipeline(dir.path(), &p), true);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert_eq!(sorted_lines(&dir.path().join("out/samples.jsonl")).len(), 2_000);
    let again = run(&write_pipeline(dir.path(), &p), false);
    assert!(again.status.success(), "the new checkpoints are the changed pipeline's: {}", stderr(&again));
}

/// Generated impressions and clicks, paced so that a run lasts a few seconds.
fn generated(rate: u64) -> Value {
    let generator = |shape: &str, count: u64, step: f64, rate: u64| {
        json!({ "type": "generator", "shape": shape, "seed": 5, "count": count, "rate": rate,
            "event_time": { "start_ms": 1_700_000_000_000i64, "step_ms": step },
            "timestamp_field": "ts", "max_out_of_orderness_ms": 5000 })
    };
    json!({
        "sources": {
            "impressions": generator("join-impression", 12_000, 200.0, rate),
            "clicks": generator("join-click", 1_600, 1500.0, rate / 8)
        },
        "steps": { "samples": { "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": 3_600_000 }, "mode": "left" } },
        "sinks": { "samples": { "type": "file", "path": "out/samples.jsonl", "inputs": ["samples"] } },
        "dead_letter": { "type": "file", "path": "out/dead-letter.jsonl" },
        "settings": { "batch_size": 256, "state": { "dir": "out/state" },
            "checkpoint": { "interval_ms": 50, "dir": "out/checkpoints" } }
    })
}

#[test]
fn safe_changes_resume_from_the_checkpoint() {
    let (reference, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let done = run(&write_pipeline(reference.path(), &generated(0)), false);
    assert!(done.status.success(), "{}", stderr(&done));
    let want = sorted_lines(&reference.path().join("out/samples.jsonl"));
    assert_eq!(want.len(), 12_000);

    // Killed (SIGKILL) once a checkpoint exists, well before its end.
    let pipeline = write_pipeline(dir.path(), &generated(4_000));
    let mut child = streamhost().arg("run").arg("--no-progress").arg(&pipeline).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let checkpoints = dir.path().join("out/checkpoints");
    let has_checkpoint = || std::fs::read_dir(&checkpoints).is_ok_and(|d| d.flatten().any(|e| e.path().join("meta.json").is_file()));
    while !has_checkpoint() || started.elapsed() < Duration::from_millis(500) {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint after a minute");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = std::fs::read_to_string(dir.path().join("out/samples.jsonl")).unwrap_or_default().lines().count();
    assert!(partial < 12_000, "killed after its end");

    // Limits, batch sizes, channel bounds, the checkpoint interval, the
    // generator's pace, max_matches, a source's record limit may change.
    let mut p = generated(0);
    p["settings"]["batch_size"] = json!(100);
    p["settings"]["channel_batches"] = json!(2);
    p["settings"]["batch_linger_ms"] = json!(5);
    p["settings"]["checkpoint"]["interval_ms"] = json!(1000);
    p["settings"]["checkpoint"]["keep"] = json!(3);
    p["steps"]["samples"]["max_matches"] = json!(50);
    p["sources"]["clicks"]["max_record_bytes"] = json!(4096);
    let resumed = run(&write_pipeline(dir.path(), &p), false);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let got = sorted_lines(&dir.path().join("out/samples.jsonl"));
    assert!(got == want, "{} lines after a resume with safe changes, {} without a crash", got.len(), want.len());
}

/// One hot key: `hot` main events and 2,500 clicks on the same request id
/// within their windows, plus a cold impression with one click.
fn write_hot(dir: &Path, hot: usize, backend: &str, emit: &str) -> PathBuf {
    let base = 1_700_000_000_000i64;
    let mut imp = std::fs::File::create(dir.join("impressions.jsonl")).unwrap();
    for i in 0..hot {
        writeln!(imp, r#"{{"ts":{},"request_id":"hot","i":{i}}}"#, base + i as i64).unwrap();
    }
    writeln!(imp, r#"{{"ts":{},"request_id":"cold","i":-1}}"#, base + 10).unwrap();
    let mut clicks = std::fs::File::create(dir.join("clicks.jsonl")).unwrap();
    for n in 0..2_500 {
        writeln!(clicks, r#"{{"ts":{},"request_id":"hot","n":{n}}}"#, base + 100 + n).unwrap();
    }
    writeln!(clicks, r#"{{"ts":{},"request_id":"cold","n":-1}}"#, base + 3000).unwrap();
    let mut p = pipeline_json();
    p["steps"]["samples"]["max_matches"] = json!(1000);
    p["steps"]["samples"]["emit"] = json!(emit);
    p["steps"]["samples"]["joiner"] = json!({ "type": "merge", "prefixes": { "clicks": "click_" } });
    p["sinks"]["samples"]["format"] = json!("envelope");
    p["settings"]["state"]["backend"] = json!(backend);
    p["settings"].as_object_mut().unwrap().remove("checkpoint");
    write_pipeline(dir, &p)
}

#[test]
fn a_hot_keys_matches_are_capped_counted_and_marked() {
    let server = redis_server::Redis::start();
    for backend in ["memory", "rocksdb", "redis"] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_hot(dir.path(), 3, backend, "on-window-end");
        if backend == "redis" {
            // A small bound: the overlay is written out to the server as it fills.
            let mut p: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            p["settings"]["state"]["redis"] = json!({ "url": server.url, "max_overlay_mb": 1 });
            write_pipeline(dir.path(), &p);
        }
        let out = run(&path, false);
        let err = stderr(&out);
        assert!(out.status.success(), "{backend}: {err}");
        assert!(err.contains("samples: 3 events over max_matches (4500 matches not joined"), "{backend}: {err}");
        let lines: Vec<Value> = std::fs::read_to_string(dir.path().join("out/samples.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{backend}: every impression once");
        for env in &lines {
            let v = &env["value"];
            let truncated = env["headers"].as_array().and_then(|hs| hs.iter().find(|h| h[0] == "streamhost-truncated")).map(|h| h[1].clone());
            if v["request_id"] == "hot" {
                assert_eq!(v["click_count"], 1000, "{backend}: exactly max_matches joined: {v}");
                assert_eq!(v["click_truncated"], 1500, "{backend}: {v}");
                // The earliest 1000, in time order (the merge keeps the last one's fields).
                assert_eq!(v["click_n"], 999, "{backend}: {v}");
                assert_eq!(truncated, Some(json!(r#"{"clicks":1500}"#)), "{backend}: {env}");
            } else {
                assert_eq!((&v["click_count"], v.get("click_truncated")), (&json!(1), None), "{backend}: {v}");
                assert_eq!(truncated, None, "{backend}: {env}");
            }
        }
    }
}
