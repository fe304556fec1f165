//! Crash consistency from Kafka to Kafka: the training-data join reading
//! both inputs from Kafka topics and writing its samples to one, killed with
//! SIGKILL at random moments and restarted from its checkpoints until it
//! finishes (a real broker: Tansu on 127.0.0.1, started by the test).

mod common;

#[allow(dead_code)]
#[path = "common/kafka.rs"]
mod kafka;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::json;

use common::{streamhost, write_pipeline};

/// The join of `kafka_to_clean_to_join_to_kafka_gives_what_the_same_pipeline_gives_over_files`:
/// impressions and clicks, each through a cleaning step (a `project`), LEFT
/// JOIN on `request_id` within 1 h, at 2 workers (so the cleaned events cross
/// an exchange into the join's stage), checkpoints every 50 ms. Over the
/// files `impressions.jsonl` and `clicks.jsonl` into `out/samples.jsonl`, or,
/// with `brokers`, over the topics `feed` and `click` into the topic `samples`.
fn join_pipeline(brokers: Option<&str>) -> serde_json::Value {
    let mut pipeline = common::clean_join_pipeline();
    pipeline["settings"]["checkpoint"]["interval_ms"] = json!(50);
    if let Some(brokers) = brokers {
        for (name, topic) in [("impressions", "feed"), ("clicks", "click")] {
            pipeline["sources"][name] = json!({ "type": "kafka", "brokers": brokers, "topics": [topic], "group_id": "sjoin",
                "start": "earliest", "stop_at_end": true, "timestamp_field": "ts", "max_out_of_orderness_ms": 1000 });
        }
        pipeline["sinks"]["samples"] = json!({ "type": "kafka", "inputs": ["samples"], "brokers": brokers, "topic": "samples", "key": "$.request_id" });
    }
    pipeline
}

/// The checkpoint a run's log says it resumes from.
fn resumed_from(stderr: &str) -> Option<u64> {
    let rest = &stderr[stderr.find("resuming from checkpoint ")? + "resuming from checkpoint ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Every impression is in the output topic with the clicks it has over
/// files, however often the run was killed; an impression written more
/// than once (the sink is at least once: what was written after the last
/// checkpoint is written again by the replay) is written identically.
#[test]
fn a_kafka_to_kafka_join_killed_at_random_moments_loses_no_impression() {
    let impressions = 60_000;
    // The reference: the same pipeline over files, uninterrupted.
    let files = tempfile::tempdir().unwrap();
    common::write_join_inputs(files.path(), impressions);
    let out = streamhost().arg("run").arg("--no-progress").arg(write_pipeline(files.path(), &join_pipeline(None))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: BTreeMap<String, String> = common::lines(&files.path().join("out/samples.jsonl"))
        .into_iter()
        .map(|l| (serde_json::from_str::<serde_json::Value>(&l).unwrap()["request_id"].as_str().unwrap().to_string(), l))
        .collect();
    assert_eq!(want.len(), impressions, "every impression once over files");
    assert!(want.values().filter(|l| l.contains("dwell\":")).count() > 5_000, "with clicks joined");
    let want_dead = common::lines(&files.path().join("out/dead-letter.jsonl")).len();

    let broker = kafka::with_join_topics(files.path(), 3);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(dir.path(), &join_pipeline(Some(&broker.brokers)));

    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(23);
    let (mut kills, mut runs, started) = (0u64, 0u64, Instant::now());
    let mut resumed = Vec::new();
    let last_stderr = loop {
        runs += 1;
        assert!(runs < 300 && started.elapsed() < Duration::from_secs(400), "no end after {runs} runs, {kills} kills");
        let mut child = streamhost().arg("run").arg("--no-progress").arg(&pipeline).stderr(Stdio::piped()).spawn().unwrap();
        // Its log read while it runs (a full pipe would block it).
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
            err
        });
        // Killed after a random while: some early (opening state, connecting,
        // the first fetches), some late; each kill lengthens the next runs, so
        // a slow machine still reaches the end.
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(30..900) + 60 * kills);
        let finished = common::wait_or_kill(&mut child, deadline);
        let err = log.join().unwrap();
        resumed.push(resumed_from(&err));
        match finished {
            Some(status) => {
                assert!(status.success(), "run {runs} failed: {err}");
                break err;
            }
            None => kills += 1,
        }
    };
    let took = started.elapsed();
    assert!(kills >= 2, "the run finished after only {kills} kills: make the input larger");
    assert!(last_stderr.contains("resumed from checkpoint"), "the finishing run resumed from a checkpoint: {last_stderr}");

    // Everything in the topic (read until it is quiet for 3 s).
    let got = broker.read_all("samples", usize::MAX);
    let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &got {
        let line = String::from_utf8(r.value.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = v["request_id"].as_str().unwrap().to_string();
        assert_eq!(r.key.as_deref(), Some(id.as_bytes()), "keyed by request_id");
        copies.entry(id).or_default().push(line);
    }
    let missing: Vec<&String> = want.keys().filter(|id| !copies.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} of {impressions} impressions missing after {kills} kills (first: {:?})", missing.len(), &missing[..missing.len().min(5)]);
    let unknown: Vec<&String> = copies.keys().filter(|id| !want.contains_key(*id)).collect();
    assert!(unknown.is_empty(), "samples of no impression: {unknown:?}");
    let mut duplicates = 0;
    let mut emitted_again = 0;
    for (id, lines) in &copies {
        for line in lines {
            assert_eq!(line, &want[id], "{id}: a sample with other clicks than over files (after {kills} kills)");
        }
        duplicates += lines.len() - 1;
        emitted_again += usize::from(lines.len() > 1);
    }
    // The dead letters (clicks without a request_id) go to a file, exactly once.
    let dead = common::lines(&dir.path().join("out/dead-letter.jsonl"));
    assert_eq!(dead.len(), want_dead, "the dead letters, once each");
    eprintln!(
        "{kills} kills over {runs} runs in {took:?}: {impressions} impressions, {} records in the topic, {duplicates} duplicates \
         ({emitted_again} impressions written more than once, each identically); resumed from checkpoints {resumed:?}",
        got.len()
    );
}
