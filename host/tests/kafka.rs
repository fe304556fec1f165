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
