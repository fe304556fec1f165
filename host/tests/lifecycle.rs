//! A run's life through the real `streamhost` binary: a graceful stop on
//! SIGTERM (then a restart), a second signal, a failed source (then a
//! restart once it is fixed), a retried source, and a fatal error while a
//! source is blocked reading stdin.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{lines, signal, streamhost, write_pipeline};

/// Spawns `streamhost run` and forwards its stderr, line by line, to a channel.
fn spawn_run(pipeline: &Path, stdin: Stdio) -> (Child, mpsc::Receiver<String>) {
    let mut child = streamhost().arg("run").arg("--no-progress").arg(pipeline).stdin(stdin).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Waits for a stderr line containing `text` (all lines seen are kept).
fn wait_for_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, text: &str, limit: Duration) {
    let until = Instant::now() + limit;
    while !seen.iter().any(|l| l.contains(text)) {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with `{text}` within {limit:?}; stderr so far:\n{}", seen.join("\n")),
        }
    }
}

/// Waits for the child's end, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rest(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> String {
    seen.extend(rx.iter());
    seen.join("\n")
}

/// The newest complete checkpoint's record.
fn latest_checkpoint(dir: &Path) -> Value {
    let mut best: Option<(u64, Value)> = None;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let Some(id) = e.file_name().to_str().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse::<u64>().ok()) else { continue };
        let Ok(text) = std::fs::read_to_string(e.path().join("meta.json")) else { continue };
        if best.as_ref().is_none_or(|(b, _)| *b < id) {
            best = Some((id, serde_json::from_str(&text).unwrap()));
        }
    }
    best.expect("a complete checkpoint").1
}

/// The generated training join, on one worker (these tests compare outputs
/// line for line), with the admin API.
fn generated_join(rate: u64) -> Value {
    let mut p = common::generated_join_pipeline(rate, 1);
    p["settings"]["admin"] = json!({});
    p
}

fn run_to_end(pipeline: &Path) -> String {
    let out = streamhost().arg("run").arg("--no-progress").arg(pipeline).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn sigterm_mid_join_stops_gracefully_and_a_restart_matches_an_uninterrupted_run() {
    let (reference, stopped) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_to_end(&write_pipeline(reference.path(), &generated_join(0)));
    let want = lines(&reference.path().join("out/samples.jsonl"));
    assert_eq!(want.len(), 20_000, "every impression once");

    // About 2.5 s at this rate: stop it once windows have started to close.
    let pipeline = write_pipeline(stopped.path(), &generated_join(8_000));
    let (mut child, rx) = spawn_run(&pipeline, Stdio::null());
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "admin API on", Duration::from_secs(60));
    let (addr_file, out) = (stopped.path().join("admin.addr"), stopped.path().join("out/samples.jsonl"));
    let until = Instant::now() + Duration::from_secs(60);
    while lines(&out).is_empty() {
        assert!(Instant::now() < until, "no output yet");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(addr_file.is_file(), "admin.addr while it runs");
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let err = rest(&rx, &mut seen);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("stopped after") && err.contains("final checkpoint"), "the summary: {err}");
    assert!(!addr_file.exists(), "admin.addr removed");

    // Stopped, not ended: some windows are still open, nothing was fired
    // by the stop, and the checkpoint keeps the sources' real watermarks.
    let partial = lines(&out);
    assert!(partial.len() < want.len(), "the run was stopped before its end ({} lines): make it slower", partial.len());
    assert_eq!(partial[..], want[..partial.len()], "what it wrote before the stop is the start of the reference");
    let meta = latest_checkpoint(&stopped.path().join("out/checkpoints"));
    for source in ["impressions", "clicks"] {
        let mark = &meta["sources"][source];
        assert_eq!(mark["ended"], false, "{source}: {meta}");
        assert!(mark["watermark"].as_i64().unwrap() < 1_700_000_000_000 + 20_000 * 400, "{source}: a real watermark: {meta}");
    }

    // The restart goes on from the final checkpoint to the same output.
    let err = run_to_end(&pipeline);
    assert!(err.contains("finished in"), "{err}");
    let got = lines(&out);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the output differs from the uninterrupted run's, line for line");
    assert_eq!(lines(&stopped.path().join("out/dead-letter.jsonl")), lines(&reference.path().join("out/dead-letter.jsonl")));
}

#[test]
fn a_second_signal_exits_at_once() {
    // A source blocked in a read that never returns (a FIFO nobody writes
    // to) makes the graceful stop wait for it; the second signal does not.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Held open for writing (read-write never blocks on a FIFO), silent.
    let _writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "sources": { "in": { "type": "file", "path": "in.fifo" } },
            "sinks": { "out": { "type": "file", "path": "out/out.jsonl", "inputs": ["in"] } },
            "settings": { "checkpoint": { "interval_ms": 100, "dir": "out/checkpoints" }, "admin": {} }
        }),
    );
    let (mut child, rx) = spawn_run(&pipeline, Stdio::null());
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "admin API on", Duration::from_secs(60));
    signal(&child, "TERM");
    wait_for_line(&rx, &mut seen, "stopping", Duration::from_secs(10));
    let second = Instant::now();
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let took = second.elapsed();
    let err = rest(&rx, &mut seen);
    assert_eq!(status.code(), Some(128 + 15), "{err}");
    assert!(err.contains("exiting at once"), "{err}");
    // The graceful stop would have waited 10 s for the blocked source.
    assert!(took < Duration::from_secs(5), "exited {took:?} after the second signal");
    assert!(!dir.path().join("admin.addr").exists(), "admin.addr removed");
}

/// Impressions (2,000, 400 ms apart) and the clicks on 15 % of them, each
/// file in event-time order: the texts of `impressions.jsonl` and
/// `clicks.jsonl`.
fn join_files() -> (String, String) {
    let base = 1_700_000_000_000i64;
    let mut imp = String::new();
    let mut clicks = Vec::new();
    for i in 0..2_000i64 {
        imp += &format!("{{\"ts\":{},\"request_id\":\"r{i}\",\"item_id\":\"i{}\"}}\n", base + i * 400, i % 101);
        if i % 7 == 0 {
            let t = base + i * 400 + (i * 7919) % 1_800_000;
            clicks.push((t, format!("{{\"ts\":{t},\"request_id\":\"r{i}\",\"dwell_ms\":{}}}\n", i % 500)));
        }
    }
    clicks.sort();
    (imp, clicks.into_iter().map(|c| c.1).collect())
}

fn file_join(on_error: Option<Value>) -> Value {
    let mut clicks = json!({ "type": "file", "path": "clicks.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 1000 });
    if let Some(Value::Object(extra)) = on_error {
        clicks.as_object_mut().unwrap().extend(extra);
    }
    json!({
        "sources": {
            "impressions": { "type": "file", "path": "impressions.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 1000 },
            "clicks": clicks
        },
        "steps": { "samples": { "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": 3_600_000 }, "mode": "left" } },
        "sinks": { "samples": { "type": "file", "path": "out/samples.jsonl", "inputs": ["samples"] } },
        "dead_letter": { "type": "file", "path": "out/dead-letter.jsonl" },
        "settings": { "parallelism": 1, "state": { "dir": "out/state" }, "checkpoint": { "interval_ms": 50, "dir": "out/checkpoints" } }
    })
}

/// The reference: the same join with both files there from the start.
fn reference_join(dir: &Path) -> (Vec<String>, Vec<String>) {
    let (imp, clicks) = join_files();
    std::fs::write(dir.join("impressions.jsonl"), imp).unwrap();
    std::fs::write(dir.join("clicks.jsonl"), clicks).unwrap();
    run_to_end(&write_pipeline(dir, &file_join(None)));
    let samples = lines(&dir.join("out/samples.jsonl"));
    assert_eq!(samples.len(), 2_000);
    assert!(samples.iter().any(|s| s.contains("dwell_ms")), "some impressions have clicks");
    (samples, lines(&dir.join("out/dead-letter.jsonl")))
}

#[test]
fn a_missing_click_file_fails_the_run_and_a_restart_once_it_exists_is_exact() {
    let (reference, failed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (want, want_dead) = reference_join(reference.path());

    let (imp, clicks) = join_files();
    std::fs::write(failed.path().join("impressions.jsonl"), imp).unwrap();
    let pipeline = write_pipeline(failed.path(), &file_join(None));
    let out = streamhost().arg("run").arg("--no-progress").arg(&pipeline).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("clicks.jsonl") && err.contains("failed after"), "the error names the file: {err}");
    assert!(lines(&failed.path().join("out/samples.jsonl")).is_empty(), "no impression fired as a negative sample");
    let meta = latest_checkpoint(&failed.path().join("out/checkpoints"));
    let mark = &meta["sources"]["clicks"];
    assert_eq!((mark["ended"].as_bool(), mark["resume"]["offset"].as_u64()), (Some(false), Some(0)), "{meta}");
    assert_eq!(mark["watermark"].as_i64(), Some(i64::MIN), "not the end of time: {meta}");

    // The cause fixed, the restart resumes the clicks from their start.
    std::fs::write(failed.path().join("clicks.jsonl"), clicks).unwrap();
    run_to_end(&pipeline);
    let dead = lines(&failed.path().join("out/dead-letter.jsonl"));
    assert!(!dead.iter().any(|d| d.contains("\"late\"")), "no click dead-lettered as late: {dead:?}");
    assert_eq!(dead, want_dead);
    let got = lines(&failed.path().join("out/samples.jsonl"));
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the output differs from a run that had the file from the start");
}

#[test]
fn a_source_set_to_retry_waits_for_its_file_and_the_output_is_exact() {
    let (reference, retried) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (want, want_dead) = reference_join(reference.path());

    let (imp, clicks) = join_files();
    std::fs::write(retried.path().join("impressions.jsonl"), imp).unwrap();
    let retry = json!({ "on_error": "retry", "retry": { "initial_ms": 50, "max_ms": 400, "max_attempts": 0 } });
    let pipeline = write_pipeline(retried.path(), &file_join(Some(retry)));
    let (mut child, rx) = spawn_run(&pipeline, Stdio::null());
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "retrying", Duration::from_secs(60));
    // The file appears (whole, by a rename) while the source backs off.
    let tmp = retried.path().join("clicks.jsonl.tmp");
    std::fs::write(&tmp, clicks).unwrap();
    std::fs::rename(&tmp, retried.path().join("clicks.jsonl")).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let err = rest(&rx, &mut seen);
    assert!(status.success(), "{err}");
    assert!(err.contains("finished in"), "{err}");
    assert_eq!(lines(&retried.path().join("out/dead-letter.jsonl")), want_dead);
    let got = lines(&retried.path().join("out/samples.jsonl"));
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the output differs from a run that had the file from the start");
}

#[test]
fn a_fatal_error_while_stdin_waits_for_input_exits_at_once() {
    // The sink writes into /dev/full: every flush fails (ENOSPC), a fatal
    // error, while the stdin source waits for input that never comes.
    let dir = tempfile::tempdir().unwrap();
    assert!(Path::new("/dev/full").exists());
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "sources": { "in": { "type": "stdin" } },
            "sinks": { "out": { "type": "file", "path": "/dev/full", "inputs": ["in"] } },
            "dead_letter": { "type": "file", "path": "dead-letter.jsonl" }
        }),
    );
    let (mut child, rx) = spawn_run(&pipeline, Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"a\":1}\n").unwrap();
    stdin.flush().unwrap();
    // stdin stays open (held here) and silent.
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let mut seen = Vec::new();
    let err = rest(&rx, &mut seen);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("/dev/full") || err.to_lowercase().contains("no space"), "the error is named: {err}");
    drop(stdin);
}

#[test]
fn the_library_stop_handle_stops_an_endless_source() {
    // A generator with no count never ends by itself.
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "sources": { "gen": { "type": "generator", "rate": 2000 } },
            "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["gen"] } },
            "settings": { "batch_linger_ms": 10 }
        }),
    );
    let loaded = streamhost::config::load_pipeline(&pipeline).unwrap();
    let built = streamhost::runtime::build_pipeline(&loaded, Default::default()).unwrap();
    let stop = built.stop_handle();
    let run = std::thread::spawn(move || built.run());
    let out = dir.path().join("out.jsonl");
    while lines(&out).is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.stop();
    let summary = run.join().unwrap().unwrap();
    assert_eq!(summary.end, streamhost::runtime::RunEnd::Stopped, "{summary}");
    let written = lines(&out).len() as u64;
    assert_eq!(summary.node("gen").unwrap().events_out, written, "what the source handed over is all in the sink: {summary}");
}
