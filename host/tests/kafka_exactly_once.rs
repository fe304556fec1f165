//! The `exactly-once` Kafka sink against a real broker (Tansu on 127.0.0.1,
//! started by the test): the training-data join over files into a topic,
//! crashed (`STREAMHOST_FAILPOINT`, an abort as abrupt as SIGKILL) on either
//! side of a transaction's commit, then restarted.
//!
//! Tansu commits and aborts transactions and their offsets, and fences, but
//! hands aborted records to `read_committed` consumers too. So the tests read
//! everything and find the aborted transaction's records themselves: with one
//! output partition they are the last records written before the crash whose
//! samples the restart writes again. What a `read_committed` consumer of a
//! broker that hides aborted records would see is everything else, and that
//! must hold every sample exactly once.

mod common;

#[allow(dead_code)]
#[path = "common/kafka.rs"]
mod kafka;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{streamhost, write_pipeline};

const IMPRESSIONS: usize = 60_000;

/// `common::clean_join_pipeline` with checkpoints every 50 ms, over the
/// files `impressions.jsonl` and `clicks.jsonl`, into `out/samples.jsonl`
/// or, with `brokers`, into the one-partition topic `samples` exactly once.
fn join_pipeline(brokers: Option<&str>, transactional_id: &str) -> serde_json::Value {
    let mut pipeline = common::clean_join_pipeline();
    pipeline["settings"]["checkpoint"]["interval_ms"] = json!(50);
    if let Some(brokers) = brokers {
        pipeline["sinks"]["samples"] = json!({ "type": "kafka", "inputs": ["samples"], "brokers": brokers, "topic": "samples",
            "key": "$.request_id", "delivery": "exactly-once", "transactional_id": transactional_id });
    }
    pipeline
}

/// The samples of the join over files, uninterrupted, by request id.
fn reference(dir: &Path) -> BTreeMap<String, String> {
    common::write_join_inputs(dir, IMPRESSIONS);
    let ref_dir = dir.join("reference");
    std::fs::create_dir_all(&ref_dir).unwrap();
    for f in ["impressions.jsonl", "clicks.jsonl"] {
        std::fs::copy(dir.join(f), ref_dir.join(f)).unwrap();
    }
    let out = streamhost().arg("run").arg("--no-progress").arg(write_pipeline(&ref_dir, &join_pipeline(None, ""))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: BTreeMap<String, String> = common::lines(&ref_dir.join("out/samples.jsonl")).into_iter().map(|l| (id_of(&l), l)).collect();
    assert_eq!(want.len(), IMPRESSIONS);
    want
}

fn id_of(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["request_id"].as_str().unwrap().to_string()
}

/// Runs the pipeline to its end or its failpoint: (success, stderr).
fn run(pipeline: &Path, failpoint: Option<&str>) -> (bool, String) {
    let mut cmd = streamhost();
    cmd.arg("run").arg("--no-progress").arg(pipeline).env("STREAMHOST_LOG", "info").stderr(Stdio::piped()).stdout(Stdio::null());
    if let Some(f) = failpoint {
        cmd.env("STREAMHOST_FAILPOINT", f);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The checkpoint a run's log says it resumes from.
fn resumed_from(stderr: &str) -> Option<u64> {
    let rest = &stderr[stderr.find("resuming from checkpoint ")? + "resuming from checkpoint ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The values of the topic `samples`, in offset order.
fn samples(broker: &kafka::Broker) -> Vec<String> {
    broker.read_all("samples", usize::MAX).into_iter().map(|r| String::from_utf8(r.value).unwrap()).collect()
}

/// Crashes the join at the `at`-th transaction with samples
/// (`failpoint@at`), restarts it, and returns the samples written before
/// the crash, all of them at the end, and the restart's log.
fn crash_and_resume(failpoint: &str, at: u64) -> (BTreeMap<String, String>, Vec<String>, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let want = reference(dir.path());
    let broker = kafka::Broker::start();
    broker.create_topic("samples", 1);
    let pipeline = write_pipeline(dir.path(), &join_pipeline(Some(&broker.brokers), "sjoin-samples"));

    let (ok, err) = run(&pipeline, Some(&format!("{failpoint}@{at}")));
    assert!(!ok && err.contains(&format!("failpoint {failpoint}@{at}")), "the run stopped at its failpoint: {err}");
    let before = samples(&broker);
    let (ok, err) = run(&pipeline, None);
    assert!(ok, "the restart finished: {err}");
    (want, before, samples(&broker), err)
}

/// The checkpoint the restart's commit record names.
fn commit_record_of(stderr: &str) -> Option<u64> {
    let rest = &stderr[stderr.find("Committed { id: ")? + "Committed { id: ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A crash after checkpoint N's record, before its transaction commits: the
/// restart fences the transactional id (the broker aborts that transaction),
/// finds the commit record naming an earlier checkpoint, resumes from it and
/// writes the aborted samples again. Without the aborted records, every
/// sample once.
#[test]
fn a_crash_before_the_transaction_commits_resumes_from_the_checkpoint_before_it() {
    let (want, before, all, err) = crash_and_resume("sink-transaction-before-commit", 2);
    let from = resumed_from(&err).unwrap_or_else(|| panic!("the restart resumes from a checkpoint: {err}"));
    // The checkpoint the commit record names, or a later one confirmed
    // without a transaction of its own (no samples since: nothing to commit).
    let named = commit_record_of(&err).unwrap_or_else(|| panic!("a commit record: {err}"));
    assert!(named <= from, "from the checkpoint the commit record names ({named}) or a confirmed later one: {err}");
    assert!(err.contains(&format!("checkpoints after {from} are not resumed from")), "the aborted one is dropped: {err}");

    // The aborted transaction: the samples written before the crash that
    // the restart wrote again, which must be the last ones before it.
    let rewritten: BTreeSet<String> = all[before.len()..].iter().map(|l| id_of(l)).collect();
    let aborted = before.iter().rev().take_while(|l| rewritten.contains(&id_of(l))).count();
    let elsewhere = before[..before.len() - aborted].iter().filter(|l| rewritten.contains(&id_of(l))).count();
    assert_eq!(elsewhere, 0, "only the open transaction's samples are written again");
    assert!(aborted > 0 && aborted < before.len(), "samples committed ({}) and then some in the open transaction ({aborted})", before.len() - aborted);
    assert_eq!(&all[..before.len()], &before[..], "the topic is only appended to");

    let committed: Vec<&String> = before[..before.len() - aborted].iter().chain(&all[before.len()..]).collect();
    check_once(&want, &committed);
    eprintln!(
        "crash before a commit: resumed from chk-{from}; {} samples before it, the last {aborted} of them in the aborted transaction; \
         {} in the topic; {} committed, each once",
        before.len(),
        all.len(),
        committed.len()
    );
}

/// A crash after checkpoint N's transaction committed, before the
/// checkpoint is confirmed: the commit record names N, so the restart
/// resumes from N and nothing is written twice, not even for a reader that
/// sees aborted records.
#[test]
fn a_crash_after_the_transaction_commits_resumes_from_that_checkpoint_and_writes_nothing_twice() {
    let (want, before, all, err) = crash_and_resume("sink-transaction-committed", 2);
    let from = resumed_from(&err).unwrap_or_else(|| panic!("the restart resumes from a checkpoint: {err}"));
    assert_eq!(commit_record_of(&err), Some(from), "from the checkpoint the commit record names: {err}");
    assert!(!err.contains("are not resumed from"), "the newest checkpoint committed: {err}");
    assert!(!before.is_empty(), "samples were committed before the crash");
    check_once(&want, &all.iter().collect::<Vec<_>>());
    eprintln!("crash after a commit: resumed from chk-{from}; {} samples before it, {} in the topic, each once", before.len(), all.len());
}

/// Every sample of the reference, each once and as over files.
fn check_once(want: &BTreeMap<String, String>, got: &[&String]) {
    let mut seen = BTreeMap::new();
    for line in got {
        let id = id_of(line);
        assert_eq!(Some(*line), want.get(&id), "{id}: not the sample the join over files gives");
        *seen.entry(id).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).take(5).collect();
    assert!(twice.is_empty(), "committed more than once: {twice:?}");
    let missing: Vec<_> = want.keys().filter(|id| !seen.contains_key(*id)).take(5).collect();
    assert!(missing.is_empty(), "{} of {} samples missing (first: {missing:?})", want.len() - seen.len(), want.len());
}

/// A second run with the same transactional id fences the first: the first
/// fails at its next commit with an error that says why, instead of writing
/// beside it.
#[test]
fn a_second_run_with_the_same_transactional_id_fences_the_first() {
    let broker = kafka::Broker::start();
    broker.create_topic("events", 1);
    let pipeline = |dir: &Path, count: u64, rate: u64| {
        write_pipeline(
            dir,
            &json!({
                "sources": { "gen": { "type": "generator", "shape": "impression", "seed": 1, "count": count, "rate": rate } },
                "sinks": { "out": { "type": "kafka", "inputs": ["gen"], "brokers": broker.brokers, "topic": "events",
                    "delivery": "exactly-once", "transactional_id": "shared-id" } },
                "settings": { "checkpoint": { "interval_ms": 100, "dir": "checkpoints" } }
            }),
        )
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = streamhost().arg("run").arg("--no-progress").arg(pipeline(a_dir.path(), 1_000_000, 2_000)).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = first.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
        err
    });
    // The first one is writing when the second starts.
    let started = Instant::now();
    let mut reader = broker.reader("events");
    while reader.poll(Duration::from_millis(100)).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the first run wrote nothing");
    }
    let (ok, err) = run(&pipeline(b_dir.path(), 1_000, 0), None);
    assert!(ok, "the second run finished: {err}");
    let status = common::wait_or_kill(&mut first, Instant::now() + Duration::from_secs(30));
    let first_err = log.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("the fenced run did not end by itself: {first_err}"));
    assert!(!status.success(), "the fenced run failed: {first_err}");
    let error = first_err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("an error line: {first_err}"));
    assert!(error.contains("`shared-id`") && error.contains("(fenced: a newer run took this transactional id over"), "it names the id and says why: {error}");
}
