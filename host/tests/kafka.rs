//! Kafka sinks against a real broker (Tansu on 127.0.0.1, started and
//! stopped by each test).

mod common;

#[path = "common/kafka.rs"]
mod kafka;

use serde_json::json;

use common::{streamhost, write_pipeline};

/// A file of `n` JSON records with an `id`, a time and a payload.
fn write_records(dir: &std::path::Path, n: usize) -> Vec<String> {
    let lines: Vec<String> = (0..n).map(|i| json!({"id": format!("e{i}"), "ts": 1_700_000_000_000i64 + i as i64, "n": i}).to_string()).collect();
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    lines
}

#[test]
fn a_kafka_sink_writes_every_event_once_with_its_key_and_time() {
    let broker = kafka::Broker::start();
    broker.create_topic("out", 3);
    let dir = tempfile::tempdir().unwrap();
    let lines = write_records(dir.path(), 3000);
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "sources": { "in": { "type": "file", "path": "in.jsonl", "timestamp_field": "ts" } },
            "sinks": { "k": { "type": "kafka", "inputs": ["in"], "brokers": broker.brokers, "topic": "out", "key": "$.id" } },
            "settings": { "batch_size": 256 }
        }),
    );
    let out = streamhost().arg("run").arg("--no-progress").arg(&pipeline).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("kafka topic `out`"), "the summary names the target: {err}");

    let mut got = broker.read_all("out", lines.len());
    assert_eq!(got.len(), lines.len(), "every event is a record");
    got.sort_by(|a, b| a.value.cmp(&b.value));
    let mut want: Vec<(Vec<u8>, Vec<u8>, i64)> = (0..lines.len())
        .map(|i| (format!("e{i}").into_bytes(), lines[i].clone().into_bytes(), 1_700_000_000_000i64 + i as i64))
        .collect();
    want.sort_by(|a, b| a.1.cmp(&b.1));
    for (r, (key, value, ts)) in got.iter().zip(&want) {
        assert_eq!((&r.value, r.key.as_ref(), r.timestamp), (value, Some(key), Some(*ts)), "record and its key and event time");
    }
}

#[test]
fn a_kafka_sink_that_cannot_deliver_fails_the_run_instead_of_dropping() {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 10);
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "sources": { "in": { "type": "file", "path": "in.jsonl" } },
            "sinks": { "k": { "type": "kafka", "inputs": ["in"], "brokers": format!("127.0.0.1:{port}"), "topic": "out",
                "properties": { "message.timeout.ms": "1500" } } }
        }),
    );
    let out = streamhost().arg("run").arg("--no-progress").arg(&pipeline).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "undelivered records fail the run: {err}");
    assert!(err.contains("error: sink `k`: kafka topic `out`: delivery failed"), "{err}");
}

/// SIGKILLed at random moments and restarted from its checkpoints until the
/// input is consumed: every event is in the topic (at least once), and the
/// duplicates are only the records written after a checkpoint and replayed.
#[test]
fn a_kafka_sink_killed_and_restarted_loses_nothing() {
    use rand::{Rng, SeedableRng};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let broker = kafka::Broker::start();
    broker.create_topic("out", 2);
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            // About 1 s of input at this rate, whatever the machine: killed mid-run.
            "sources": { "in": { "type": "generator", "shape": "impression", "seed": 1, "count": n, "rate": 20_000, "dirty_ratio": 0.0 } },
            "sinks": { "k": { "type": "kafka", "inputs": ["in"], "brokers": broker.brokers, "topic": "out", "key": "$.request_id" } },
            "settings": { "batch_size": 100, "batch_linger_ms": 10, "checkpoint": { "interval_ms": 50, "dir": "out/checkpoints" } }
        }),
    );
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
    let (mut kills, started) = (0, Instant::now());
    loop {
        assert!(started.elapsed() < Duration::from_secs(120), "no end after {kills} kills");
        let mut child = streamhost().arg("run").arg("--no-progress").arg(&pipeline).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(30..400) + 100 * kills);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match finished {
            Some(status) => {
                assert!(status.success(), "the last run failed");
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    assert!(kills >= 2, "killed only {kills} times: make the input larger");
    // Everything in the topic (until it is quiet for 3 s).
    let got = broker.read_all("out", usize::MAX);
    let mut seen = vec![0u32; n];
    for r in &got {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let id = v["request_id"].as_str().unwrap();
        assert_eq!(r.key.as_deref(), Some(id.as_bytes()), "keyed by request_id");
        seen[usize::from_str_radix(id.trim_start_matches("r-"), 16).unwrap()] += 1;
    }
    let missing: Vec<usize> = (0..n).filter(|i| seen[*i] == 0).collect();
    assert!(missing.is_empty(), "{} of {n} events never reached the topic after {kills} kills (first: {:?})", missing.len(), &missing[..missing.len().min(5)]);
    let duplicates = seen.iter().map(|c| c.saturating_sub(1) as usize).sum::<usize>();
    eprintln!("{kills} kills: {n} events, {} records in the topic, {duplicates} duplicates", got.len());
}
