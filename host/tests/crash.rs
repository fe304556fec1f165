//! Crash consistency: a window join on RocksDB (and on Redis) with
//! checkpoints, killed with SIGKILL at random moments and restarted until its
//! input is consumed, must produce exactly what an uninterrupted run produces:
//! nothing lost, nothing duplicated, in its sink and in its dead letters.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

fn streamhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamhost"))
}

fn write_pipeline(dir: &Path) -> PathBuf {
    write_pipeline_at(dir, None, None)
}

/// The join at `parallelism` workers (`None`: the default, one per core),
/// with `state` as its `settings.state` (`None`: RocksDB in `out/state`).
fn write_pipeline_at(dir: &Path, parallelism: Option<usize>, state: Option<&serde_json::Value>) -> PathBuf {
    write_pipeline_of(dir, common::file_join_pipeline, parallelism, state)
}

/// [`write_pipeline_at`] for the pipeline `make` gives.
fn write_pipeline_of(dir: &Path, make: fn() -> serde_json::Value, parallelism: Option<usize>, state: Option<&serde_json::Value>) -> PathBuf {
    let mut pipeline = make();
    if let Some(n) = parallelism {
        pipeline["settings"]["parallelism"] = n.into();
    }
    if let Some(state) = state {
        pipeline["settings"]["state"] = state.clone();
    }
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&pipeline).unwrap()).unwrap();
    path
}

/// What `crash_until_done` saw.
struct Crashes {
    kills: u32,
    runs: u32,
    took: Duration,
    /// Per run, the checkpoint it said it resumed from (a run killed
    /// before it could say so: None).
    resumed: Vec<Option<u64>>,
    /// The stderr of the run that finished by itself (its summary).
    last_stderr: String,
}

impl Crashes {
    /// Restarts really resumed from checkpoints, later ones from later
    /// checkpoints, and the run that finished did not read the whole input
    /// again: it read fewer than `input_records` (summed over its sources).
    fn assert_resumed(&self, input_records: u64) {
        let ids: Vec<u64> = self.resumed.iter().flatten().copied().collect();
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "checkpoint ids went back: {:?}", self.resumed);
        let mut distinct = ids.clone();
        distinct.dedup();
        assert!(distinct.len() >= 2, "restarts resumed from fewer than 2 checkpoints: {:?}", self.resumed);
        let last = self.resumed.last().copied().flatten().expect("the finishing run resumed from a checkpoint");
        assert!(self.last_stderr.contains(&format!("resumed from checkpoint {last}")), "{}", self.last_stderr);
        let rows: Vec<u64> = self
            .last_stderr
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("source "))
            .map(|row| row.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).expect("a source row: kind name in out ..."))
            .collect();
        assert_eq!(rows.len(), 2, "the summary has a row per source: {}", self.last_stderr);
        let read: u64 = rows.iter().sum();
        assert!(read < input_records, "the last run read {read} records of {input_records}: it did not resume\n{}", self.last_stderr);
    }
}

/// The checkpoint a run's log says it resumes from.
fn resumed_from(stderr: &str) -> Option<u64> {
    let rest = &stderr[stderr.find("resuming from checkpoint ")? + "resuming from checkpoint ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Runs `pipeline`, killing it (SIGKILL) at random moments and restarting
/// it until one run finishes by itself.
fn crash_until_done(pipeline: &Path) -> Crashes {
    crash_until_done_at(pipeline, &[], None)
}

/// [`crash_until_done`], run `k` at `parallelisms[k % len]` workers (each
/// restart then restores the checkpoint at another parallelism), the
/// pipeline written with `state` (see [`write_pipeline_at`]).
fn crash_until_done_at(pipeline: &Path, parallelisms: &[usize], state: Option<&serde_json::Value>) -> Crashes {
    crash_until_done_of(pipeline, common::file_join_pipeline, parallelisms, state)
}

/// [`crash_until_done_at`] for the pipeline `make` gives.
fn crash_until_done_of(pipeline: &Path, make: fn() -> serde_json::Value, parallelisms: &[usize], state: Option<&serde_json::Value>) -> Crashes {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let (mut kills, mut runs) = (0u32, 0u32);
    let mut resumed = Vec::new();
    let started = Instant::now();
    loop {
        if !parallelisms.is_empty() {
            write_pipeline_of(pipeline.parent().unwrap(), make, Some(parallelisms[runs as usize % parallelisms.len()]), state);
        }
        runs += 1;
        assert!(runs < 200 && started.elapsed() < Duration::from_secs(300), "no end in sight after {runs} runs");
        let mut child = streamhost().arg("run").arg("--no-progress").arg(pipeline).stderr(Stdio::piped()).spawn().unwrap();
        // Read its log while it runs (a full pipe would block it).
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
            err
        });
        // Let it run a random while, some kills early (opening state, the
        // first reads), some late; later runs get longer, so a slow machine
        // still reaches the end.
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(20..700) + 25 * u64::from(runs));
        let finished = common::wait_or_kill(&mut child, deadline);
        if finished.is_none() {
            kills += 1;
        }
        let err = log.join().unwrap();
        resumed.push(resumed_from(&err));
        if let Some(status) = finished {
            assert!(status.success(), "run {runs} failed: {err}");
            return Crashes { kills, runs, took: started.elapsed(), resumed, last_stderr: err };
        }
    }
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    lines.sort();
    lines
}

/// Kills the join at random moments and restarts it (run `k` at
/// `parallelisms[k % len]` workers; empty: the default) until it finishes:
/// its outputs and dead letters equal an uninterrupted run's.
fn killed_and_restarted_loses_and_duplicates_nothing(parallelisms: &[usize]) {
    killed_and_restarted_with_state(parallelisms, None, 120_000);
}

/// [`killed_and_restarted_loses_and_duplicates_nothing`] over `impressions`,
/// with `state` as the crashed runs' `settings.state`; the uninterrupted run
/// is then on RocksDB without checkpoints.
fn killed_and_restarted_with_state(parallelisms: &[usize], state: Option<&serde_json::Value>, impressions: usize) {
    let reference = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let mut records = 0;
    for dir in [reference.path(), crashed.path()] {
        records = common::write_join_inputs(dir, impressions);
    }

    let uninterrupted = write_pipeline(reference.path());
    if state.is_some() {
        let mut p: serde_json::Value = serde_json::from_slice(&std::fs::read(&uninterrupted).unwrap()).unwrap();
        p["settings"].as_object_mut().unwrap().remove("checkpoint");
        std::fs::write(&uninterrupted, p.to_string()).unwrap();
    }
    let status = streamhost().arg("run").arg("--no-progress").arg(&uninterrupted).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());

    let pipeline = write_pipeline_at(crashed.path(), None, state);
    let crashes = crash_until_done_at(&pipeline, parallelisms, state);
    let (kills, runs, took) = (crashes.kills, crashes.runs, crashes.took);
    assert!(kills >= 3, "the run finished before it could be killed often enough ({kills} kills): make the input larger");
    crashes.assert_resumed(records as u64);

    for file in ["out/samples.jsonl", "out/dead-letter.jsonl"] {
        let (want, got) = (sorted_lines(&reference.path().join(file)), sorted_lines(&crashed.path().join(file)));
        assert_eq!(got.len(), want.len(), "{file}: {} lines after {kills} kills, {} without", got.len(), want.len());
        assert!(got == want, "{file} differs from the uninterrupted run's after {kills} kills at {parallelisms:?}");
    }
    let samples = sorted_lines(&reference.path().join("out/samples.jsonl"));
    assert_eq!(samples.len(), impressions, "every impression once");
    let late = sorted_lines(&reference.path().join("out/dead-letter.jsonl")).iter().filter(|l| l.contains("\"kind\":\"late\"")).count();
    assert_eq!(late, 0, "out of order within max_out_of_orderness_ms is never late");
    eprintln!("{parallelisms:?}: {kills} kills over {runs} runs in {took:?}; resumed from checkpoints {:?}", crashes.resumed);
}

#[test]
fn a_join_killed_at_random_moments_and_restarted_loses_and_duplicates_nothing() {
    killed_and_restarted_loses_and_duplicates_nothing(&[]);
}

#[test]
fn the_same_at_one_worker() {
    killed_and_restarted_loses_and_duplicates_nothing(&[1]);
}

#[test]
fn the_same_at_two_workers() {
    killed_and_restarted_loses_and_duplicates_nothing(&[2]);
}

#[test]
fn the_same_at_four_workers() {
    killed_and_restarted_loses_and_duplicates_nothing(&[4]);
}

/// Every restart restores the last checkpoint at another parallelism.
#[test]
fn the_same_restarting_at_one_two_and_four_workers_in_turn() {
    killed_and_restarted_loses_and_duplicates_nothing(&[2, 1, 4]);
}

/// `settings.state` for the Redis backend on `server`, under `prefix`.
/// A windowed aggregation of the join's inputs per request: impressions and
/// clicks counted, dwell summed, in tumbling windows of 30 min, with a cache
/// so small that rows spill to RocksDB between checkpoints.
fn aggregate_pipeline() -> serde_json::Value {
    let mut p = common::file_join_pipeline();
    p["steps"] = serde_json::json!({
        "per-request": {
            "type": "window-aggregate", "inputs": ["impressions", "clicks"],
            "keys": ["$.request_id"],
            "window": { "type": "tumbling", "size_ms": 1_800_000 },
            "aggregates": [
                { "name": "impressions", "type": "count", "input": "impressions" },
                { "name": "clicks", "type": "count", "input": "clicks" },
                { "name": "dwell", "type": "sum", "field": "$.dwell_ms" },
                { "name": "users", "type": "distinct_count", "field": "$.user_id" }
            ],
            "cache_mb": 1
        }
    });
    p["sinks"]["samples"]["inputs"] = serde_json::json!(["per-request"]);
    p
}

/// The aggregation killed at random moments and restarted (at
/// `parallelisms` in turn): its outputs and dead letters equal an
/// uninterrupted run's, and the outputs equal a count from the raw input.
fn aggregation_killed_and_restarted(parallelisms: &[usize]) {
    let (reference, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let impressions = 600_000;
    let mut records = 0;
    for dir in [reference.path(), crashed.path()] {
        records = common::write_join_inputs(dir, impressions);
    }
    let uninterrupted = write_pipeline_of(reference.path(), aggregate_pipeline, None, None);
    assert!(streamhost().arg("run").arg("--no-progress").arg(&uninterrupted).stderr(Stdio::null()).status().unwrap().success());
    let pipeline = write_pipeline_of(crashed.path(), aggregate_pipeline, None, None);
    let crashes = crash_until_done_of(&pipeline, aggregate_pipeline, parallelisms, None);
    assert!(crashes.kills >= 3, "the run finished before it could be killed often enough ({} kills)", crashes.kills);
    crashes.assert_resumed(records as u64);
    for file in ["out/samples.jsonl", "out/dead-letter.jsonl"] {
        let (want, got) = (sorted_lines(&reference.path().join(file)), sorted_lines(&crashed.path().join(file)));
        assert_eq!(got.len(), want.len(), "{file}: {} lines after {} kills, {} without", got.len(), crashes.kills, want.len());
        assert!(got == want, "{file} differs from the uninterrupted run's after {} kills at {parallelisms:?}", crashes.kills);
    }
    // The outputs against the raw input: every impression counted once, in its request's window.
    let mut want: std::collections::BTreeMap<(String, i64), (u64, u64, i64)> = Default::default();
    for (file, click) in [("impressions.jsonl", false), ("clicks.jsonl", true)] {
        for line in std::fs::read_to_string(reference.path().join(file)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(r) = v["request_id"].as_str() else { continue };
            let start = v["ts"].as_i64().unwrap().div_euclid(1_800_000) * 1_800_000;
            let w = want.entry((r.to_string(), start)).or_default();
            if click {
                w.1 += 1;
                w.2 += v["dwell_ms"].as_i64().unwrap();
            } else {
                w.0 += 1;
            }
        }
    }
    let got: std::collections::BTreeMap<(String, i64), (u64, u64, i64)> = sorted_lines(&reference.path().join("out/samples.jsonl"))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let dwell = v["dwell"].as_i64().unwrap_or(0);
            ((v["request_id"].as_str().unwrap().to_string(), v["window_start"].as_i64().unwrap()), (v["impressions"].as_u64().unwrap(), v["clicks"].as_u64().unwrap(), dwell))
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the aggregates differ from a count of the raw input");
    let dead = sorted_lines(&reference.path().join("out/dead-letter.jsonl"));
    assert!(!dead.is_empty() && dead.iter().all(|l| l.contains("no grouping key")), "only the clicks without a request id are refused");
    eprintln!("aggregation {parallelisms:?}: {} kills over {} runs in {:?}", crashes.kills, crashes.runs, crashes.took);
}

#[test]
fn an_aggregation_killed_at_random_moments_and_restarted_loses_and_duplicates_nothing() {
    aggregation_killed_and_restarted(&[]);
}

#[test]
fn the_aggregation_restarting_at_one_two_and_four_workers_in_turn() {
    aggregation_killed_and_restarted(&[1, 2, 4]);
}

fn redis_state(server: &redis_server::Redis, prefix: &str) -> serde_json::Value {
    serde_json::json!({ "backend": "redis", "redis": { "url": server.url, "prefix": prefix } })
}

/// The join with its state in Redis: every checkpoint writes the workers'
/// state and the positions it covers in one transaction, and a restart resumes
/// from what Redis holds. (A checkpoint costs Redis no fsync, so the join runs
/// some 20 times faster than on RocksDB every 40 ms: a larger input is killed
/// as often.)
#[test]
fn a_join_on_redis_state_killed_at_random_moments_loses_and_duplicates_nothing() {
    let server = redis_server::Redis::start();
    killed_and_restarted_with_state(&[], Some(&redis_state(&server, "crash")), 600_000);
}

/// On Redis, every restart at another parallelism (the state of the new one is
/// rebuilt by key group from the old one's, in Redis).
#[test]
fn the_same_on_redis_restarting_at_one_two_and_four_workers_in_turn() {
    let server = redis_server::Redis::start();
    killed_and_restarted_with_state(&[2, 1, 4], Some(&redis_state(&server, "rescale")), 600_000);
}

/// A process killed on one machine resumes on another with an empty
/// directory: no checkpoint folder, no state folder, only Redis (the inputs
/// and outputs are on storage both reach).
#[test]
fn a_join_on_redis_resumes_exactly_from_a_new_empty_directory() {
    let server = redis_server::Redis::start();
    let (reference, shared) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [reference.path(), shared.path()] {
        common::write_join_inputs(dir, 120_000);
    }
    let status = streamhost().arg("run").arg("--no-progress").arg(write_pipeline(reference.path())).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());
    // A machine's pipeline: inputs and outputs in `shared`, checkpoints beside it.
    let machine = |dir: &Path| {
        let mut p = common::file_join_pipeline();
        for (section, name) in [("sources", "impressions"), ("sources", "clicks"), ("sinks", "samples")] {
            let rel = p[section][name]["path"].as_str().unwrap().to_string();
            p[section][name]["path"] = shared.path().join(rel).display().to_string().into();
        }
        p["dead_letter"]["path"] = shared.path().join("out/dead-letter.jsonl").display().to_string().into();
        p["settings"]["state"] = redis_state(&server, "moving");
        p["settings"]["checkpoint"]["interval_ms"] = 100.into();
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("pipeline.json");
        std::fs::write(&path, p.to_string()).unwrap();
        path
    };
    let first = tempfile::tempdir().unwrap();
    let mut child = streamhost().arg("run").arg("--no-progress").arg(machine(first.path())).stderr(Stdio::null()).spawn().unwrap();
    // Killed once Redis holds a checkpoint or two.
    let until = Instant::now() + Duration::from_secs(60);
    while server.command(&["EXISTS", "moving:checkpoint"]).as_deref() != Some(":1") {
        assert!(Instant::now() < until && child.try_wait().unwrap().is_none(), "no checkpoint in redis");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    assert!(common::wait_or_kill(&mut child, Instant::now()).is_none(), "the first run finished before it was killed");
    drop(first);
    let second = tempfile::tempdir().unwrap();
    let out = streamhost().arg("run").arg("--no-progress").arg(machine(&second.path().join("elsewhere"))).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let resumed = resumed_from(&err).unwrap_or_else(|| panic!("it did not resume: {err}"));
    assert!(resumed >= 1, "{err}");
    for file in ["out/samples.jsonl", "out/dead-letter.jsonl"] {
        let (want, got) = (sorted_lines(&reference.path().join(file)), sorted_lines(&shared.path().join(file)));
        assert_eq!(got.len(), want.len(), "{file}");
        assert!(got == want, "{file} differs from the uninterrupted run's after a move from checkpoint {resumed}");
    }
}

/// On Redis, a worker whose writes since the last checkpoint pass
/// `max_overlay_mb` asks for a checkpoint at once: a run resumed with a
/// 1 MiB bound and a one-minute interval checkpoints many times in seconds,
/// and its output is still exact.
#[test]
fn redis_checkpoints_early_when_the_overlay_passes_its_bound() {
    let server = redis_server::Redis::start();
    let (reference, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [reference.path(), dir.path()] {
        common::write_join_inputs(d, 120_000);
    }
    let status = streamhost().arg("run").arg("--no-progress").arg(write_pipeline(reference.path())).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());
    let state = redis_state(&server, "early");
    let pipeline = write_pipeline_at(dir.path(), Some(1), Some(&state));
    // A first run killed once Redis holds a checkpoint: the restart's state is named.
    let mut child = streamhost().arg("run").arg("--no-progress").arg(&pipeline).stderr(Stdio::null()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while server.command(&["EXISTS", "early:checkpoint"]).as_deref() != Some(":1") {
        assert!(Instant::now() < until && child.try_wait().unwrap().is_none(), "no checkpoint in redis");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(common::wait_or_kill(&mut child, Instant::now()).is_none(), "the first run finished before it was killed");
    let mut p: serde_json::Value = serde_json::from_slice(&std::fs::read(&pipeline).unwrap()).unwrap();
    p["settings"]["checkpoint"]["interval_ms"] = 60_000.into();
    p["settings"]["state"]["redis"]["max_overlay_mb"] = 1.into();
    std::fs::write(&pipeline, p.to_string()).unwrap();
    let out = streamhost().arg("run").arg("--no-progress").arg(&pipeline).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let first = resumed_from(&err).expect("it resumed");
    let last: u64 = std::fs::read_dir(dir.path().join("out/checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .max()
        .unwrap();
    assert!(last >= first + 4, "checkpoints {first}..{last} in a run with a one-minute interval");
    let (want, got) = (sorted_lines(&reference.path().join("out/samples.jsonl")), sorted_lines(&dir.path().join("out/samples.jsonl")));
    assert!(got == want, "{} lines, {} without the restart", got.len(), want.len());
}

/// On Redis: a finished run resumes to nothing, `--fresh` clears the prefix and
/// recomputes the same output, and a state Redis lost while local checkpoints
/// remain is refused, not taken for a fresh start.
#[test]
fn redis_fresh_starts_over_and_a_lost_state_is_refused() {
    let server = redis_server::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    common::write_join_inputs(dir.path(), 2_000);
    let pipeline = write_pipeline_at(dir.path(), None, Some(&redis_state(&server, "fresh")));
    let run = |fresh: bool| {
        let mut cmd = streamhost();
        cmd.arg("run").arg("--no-progress");
        if fresh {
            cmd.arg("--fresh");
        }
        cmd.arg(&pipeline).output().unwrap()
    };
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        sorted_lines(&dir.path().join("out/samples.jsonl"))
    };
    let first = ok(run(false));
    assert_eq!(first.len(), 2_000);
    assert!(!dir.path().join("out/state").exists(), "no local state");
    assert_eq!(ok(run(false)), first, "resuming after the final checkpoint adds nothing");
    server.command(&["SET", "fresh:p9:s0w0:t:stray", "x"]).unwrap();
    assert_eq!(ok(run(true)), first, "--fresh recomputes the same output from scratch");
    assert_eq!(server.command(&["EXISTS", "fresh:p9:s0w0:t:stray"]).as_deref(), Some(":0"), "--fresh cleared the prefix");
    server.command(&["FLUSHALL"]).unwrap();
    let out = run(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a lost state is refused");
    assert!(err.contains("no checkpoint record") && err.contains("--fresh"), "{err}");
}

#[test]
fn fresh_starts_over_and_a_finished_run_resumes_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    common::write_join_inputs(dir.path(), 2_000);
    let pipeline = write_pipeline(dir.path());
    let run = |fresh: bool| {
        let mut cmd = streamhost();
        cmd.arg("run").arg("--no-progress");
        if fresh {
            cmd.arg("--fresh");
        }
        let out = cmd.arg(&pipeline).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        sorted_lines(&dir.path().join("out/samples.jsonl"))
    };
    let first = run(false);
    assert_eq!(first.len(), 2_000);
    assert_eq!(run(false), first, "resuming after the final checkpoint adds nothing");
    assert_eq!(run(true), first, "--fresh recomputes the same output from scratch");
    // A sink file cut behind the pipeline's back is refused, not guessed at.
    std::fs::write(dir.path().join("out/samples.jsonl"), "").unwrap();
    let out = streamhost().arg("run").arg("--no-progress").arg(&pipeline).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fresh"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_generator_resumes_where_its_checkpoint_left_it() {
    // Generated impressions and clicks (the SJoin shapes) instead of files:
    // a resumed generator regenerates and skips what it had handed over.
    let pipeline = |dir: &Path| {
        let generator = |shape: &str, count: u64, step: f64| {
            serde_json::json!({ "type": "generator", "shape": shape, "seed": 5, "count": count,
                "event_time": { "start_ms": 1_700_000_000_000i64, "step_ms": step },
                "timestamp_field": "ts", "max_out_of_orderness_ms": 5000 })
        };
        let p = serde_json::json!({
            "sources": { "impressions": generator("join-impression", 80_000, 200.0), "clicks": generator("join-click", 10_000, 1500.0) },
            "steps": { "samples": { "type": "window-join", "inputs": ["impressions", "clicks"],
                "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
                "window": { "start_ms": 0, "end_ms": 3_600_000 }, "mode": "left" } },
            "sinks": { "samples": { "type": "file", "path": "out/samples.jsonl", "inputs": ["samples"] } },
            "dead_letter": { "type": "file", "path": "out/dead-letter.jsonl" },
            "settings": { "batch_size": 256, "state": { "dir": "out/state" },
                "checkpoint": { "interval_ms": 40, "dir": "out/checkpoints" } }
        });
        let path = dir.join("pipeline.json");
        std::fs::write(&path, p.to_string()).unwrap();
        path
    };
    let (reference, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let status = streamhost().arg("run").arg("--no-progress").arg(pipeline(reference.path())).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());
    let crashes = crash_until_done(&pipeline(crashed.path()));
    let (kills, runs, took) = (crashes.kills, crashes.runs, crashes.took);
    eprintln!("{kills} kills over {runs} runs in {took:?}; resumed from checkpoints {:?}", crashes.resumed);
    assert!(kills >= 2, "too few kills ({kills}) to prove anything");
    crashes.assert_resumed(90_000);
    let file = "out/samples.jsonl";
    let (want, got) = (sorted_lines(&reference.path().join(file)), sorted_lines(&crashed.path().join(file)));
    assert_eq!(want.len(), 80_000);
    assert!(got == want, "{} lines after {kills} kills, {} without", got.len(), want.len());
}
