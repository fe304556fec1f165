//! Parallel workers: a keyed join's state is spread by key group, so a
//! checkpoint taken at one parallelism restores at another with the output of
//! an uninterrupted run; stateless steps spread over workers keep every event
//! and the order of each key; a join after a transform (an exchange between
//! stages) equals the run on one worker.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{lines, streamhost, write_pipeline};

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn run_to_end(pipeline: &Path) -> String {
    let out = streamhost().arg("run").arg("--no-progress").arg(pipeline).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

fn generated_join(rate: u64, parallelism: usize) -> Value {
    common::generated_join_pipeline(rate, parallelism)
}

fn spawn_run(pipeline: &Path) -> Child {
    streamhost().arg("run").arg("--no-progress").arg(pipeline).stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn wait_exit(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(err).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, reader.join().unwrap());
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("no exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops a run at 2 workers once windows have started to close, then resumes
/// it at `resume_at` workers: the output equals the uninterrupted run's.
fn stop_at_two_and_resume_at(resume_at: usize, reference: &[String], reference_dead: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(dir.path(), &generated_join(8_000, 2));
    let out = dir.path().join("out/samples.jsonl");
    let child = spawn_run(&pipeline);
    let until = Instant::now() + Duration::from_secs(60);
    while lines(&out).len() < 100 {
        assert!(Instant::now() < until, "no output yet");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let (status, err) = wait_exit(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("final checkpoint"), "{err}");
    let partial = lines(&out).len();
    assert!(partial < reference.len(), "stopped before the end ({partial} lines): make it slower");

    // Resume at another parallelism: each new worker takes its key groups
    // from both old workers' state.
    let pipeline = write_pipeline(dir.path(), &generated_join(0, resume_at));
    let err = run_to_end(&pipeline);
    assert!(err.contains("resumed from checkpoint"), "{err}");
    assert!(err.contains("rebuilt by key group"), "restored at another parallelism: {err}");
    let got = sorted(lines(&out));
    assert_eq!(got.len(), reference.len(), "every impression once (stopped after {partial})");
    assert!(got == reference, "the output differs from the uninterrupted run's");
    assert_eq!(sorted(lines(&dir.path().join("out/dead-letter.jsonl"))), reference_dead);
}

#[test]
fn a_checkpoint_taken_at_two_workers_restores_at_one_and_at_four() {
    let reference = tempfile::tempdir().unwrap();
    run_to_end(&write_pipeline(reference.path(), &generated_join(0, 1)));
    let want = sorted(lines(&reference.path().join("out/samples.jsonl")));
    assert_eq!(want.len(), 20_000, "every impression once");
    let dead = sorted(lines(&reference.path().join("out/dead-letter.jsonl")));
    stop_at_two_and_resume_at(1, &want, &dead);
    stop_at_two_and_resume_at(4, &want, &dead);
}

#[test]
fn a_join_after_a_filter_at_two_workers_equals_one_worker() {
    // The filter runs in every worker of stage 0; the join's input crosses
    // to the worker owning each key (an exchange), with the watermark the
    // minimum over the workers feeding it.
    let dir = tempfile::tempdir().unwrap();
    let base = 1_700_000_000_000i64;
    let mut imp = std::io::BufWriter::new(std::fs::File::create(dir.path().join("impressions.jsonl")).unwrap());
    let mut clicks = std::io::BufWriter::new(std::fs::File::create(dir.path().join("clicks.jsonl")).unwrap());
    for i in 0..30_000i64 {
        // Out of order within 900 ms; every tenth impression is filtered out.
        let t = base + i * 300 + (i * 7919 % 900);
        writeln!(imp, r#"{{"ts":{t},"request_id":"r{i}","keep":{}}}"#, i % 10 != 3).unwrap();
        if i % 5 == 0 {
            writeln!(clicks, r#"{{"ts":{},"request_id":"r{i}","n":{i}}}"#, t + 500).unwrap();
        }
    }
    drop((imp, clicks));
    let pipeline = |parallelism: usize, out: &str| {
        json!({
            "sources": {
                "impressions": { "type": "file", "path": "impressions.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 1000 },
                "clicks": { "type": "file", "path": "clicks.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 1000 }
            },
            "steps": {
                "kept": { "type": "filter", "inputs": ["impressions"], "where": { "path": "$.keep", "op": "eq", "value": true } },
                "samples": { "type": "window-join", "inputs": ["kept", "clicks"],
                    "keys": { "kept": "$.request_id", "clicks": "$.request_id" },
                    "window": { "start_ms": 0, "end_ms": 600_000 }, "mode": "left" }
            },
            "sinks": { "samples": { "type": "file", "path": format!("{out}/samples.jsonl"), "inputs": ["samples"] } },
            "dead_letter": { "type": "file", "path": format!("{out}/dead-letter.jsonl") },
            "settings": { "batch_size": 512, "parallelism": parallelism, "state": { "dir": format!("{out}/state") } }
        })
    };
    run_to_end(&write_pipeline(dir.path(), &pipeline(1, "one")));
    run_to_end(&write_pipeline(dir.path(), &pipeline(2, "two")));
    let one = sorted(lines(&dir.path().join("one/samples.jsonl")));
    assert_eq!(one.len(), 27_000, "every kept impression once");
    assert_eq!(one.iter().filter(|l| l.contains("\"clicks.n\"")).count(), 6_000, "each clicked impression with its click");
    assert!(sorted(lines(&dir.path().join("two/samples.jsonl"))) == one, "two workers give the output of one");
    assert_eq!(sorted(lines(&dir.path().join("two/dead-letter.jsonl"))), sorted(lines(&dir.path().join("one/dead-letter.jsonl"))));
}

#[test]
fn stateless_steps_over_two_workers_keep_every_event_and_each_keys_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = std::io::BufWriter::new(std::fs::File::create(dir.path().join("in.jsonl")).unwrap());
    for i in 0..50_000u64 {
        writeln!(input, r#"{{"user":"u{}","seq":{i},"drop_me":1,"ts":{}}}"#, i % 37, 1_700_000_000_000u64 + i).unwrap();
    }
    drop(input);
    let pipeline = json!({
        "sources": { "in": { "type": "file", "path": "in.jsonl", "key_field": "user", "timestamp_field": "ts" } },
        "steps": {
            "odd": { "type": "filter", "inputs": ["in"], "where": { "path": "$.seq", "op": "ne", "value": 7 } },
            "slim": { "type": "project", "inputs": ["odd"], "drop": ["drop_me"] }
        },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["slim"] } },
        "settings": { "batch_size": 100, "parallelism": 2 }
    });
    let err = run_to_end(&write_pipeline(dir.path(), &pipeline));
    let out = lines(&dir.path().join("out.jsonl"));
    assert_eq!(out.len(), 49_999, "{err}");
    // Per key, the order of the input.
    let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for l in &out {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v.get("drop_me").is_none());
        let (user, seq) = (v["user"].as_str().unwrap().to_string(), v["seq"].as_u64().unwrap());
        if let Some(prev) = last.insert(user.clone(), seq) {
            assert!(prev < seq, "{user}: {seq} after {prev}");
        }
    }
}

#[test]
fn parallelism_is_checked_against_max_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{}\n").unwrap();
    let pipeline = json!({
        "sources": { "in": { "type": "file", "path": "in.jsonl" } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["in"] } },
        "settings": { "parallelism": 9, "max_parallelism": 8 }
    });
    let out = streamhost().arg("run").arg(write_pipeline(dir.path(), &pipeline)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("$.settings.parallelism") && err.contains("key groups"), "{err}");
}
