//! Alert rules on a running pipeline fed a scripted stream, notifying a real
//! HTTP receiver on 127.0.0.1 (which fails its first request).

mod common;
#[path = "common/http_receiver.rs"]
mod http_receiver;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use http_receiver::Receiver;
use common::streamhost;
use serde_json::{json, Value};

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alerts_of(addr: &str) -> Value {
    let body = ureq::get(&format!("http://{addr}/api/alerts")).call().unwrap().into_body().read_to_string().unwrap();
    serde_json::from_str(&body).unwrap()
}

fn state_of(board: &Value, rule: &str) -> String {
    board["alerts"].as_array().unwrap().iter().find(|a| a["rule"] == rule).map(|a| a["state"].as_str().unwrap().to_string()).unwrap_or_default()
}

#[test]
fn a_broken_stream_and_a_dead_letter_burst_fire_and_resolve_once_each_to_the_log_the_api_and_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start("/hook", 1);
    let pipeline = json!({
        "name": "scripted",
        "sources": {"in": {"type": "stdin", "schema": {"fields": {"n": {"type": "int", "required": true}}}}},
        "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["in"]}},
        "settings": {
            "batch_linger_ms": 5,
            "admin": {},
            "alerts": {
                "interval_ms": 100,
                "webhook": {"url": receiver.url, "backoff_ms": 50},
                "rules": [
                    {"when": {"type": "broken-stream", "source": "in", "silent_ms": 1500}},
                    {"name": "bad-records", "when": {"type": "dead-letter-rate", "kind": "schema", "above_per_s": 5, "over_ms": 1000}}
                ]
            }
        }
    });
    let path = common::write_pipeline(dir.path(), &pipeline);
    let mut run = streamhost().args(["run", "--no-progress"]).arg(&path).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let addr_file = dir.path().join("admin.addr");
    wait_until("admin.addr", Duration::from_secs(60), || addr_file.exists());
    let addr = std::fs::read_to_string(&addr_file).unwrap().trim().to_string();
    let mut stdin = run.stdin.take().unwrap();
    let mut send = |lines: &[String]| {
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
        stdin.flush().unwrap();
    };
    // Before any event, silence is no broken stream.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(state_of(&alerts_of(&addr), "broken-stream:in"), "ok");
    // Traffic for a second, then 1.5 s of silence: it fires.
    for i in 0..10 {
        send(&[json!({"n": i}).to_string()]);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("broken-stream to fire", Duration::from_secs(10), || state_of(&alerts_of(&addr), "broken-stream:in") == "firing");
    // Events again: it resolves. And 30 schema failures in one go: over 5/s.
    send(&(0..30).map(|i| json!({"n": format!("x{i}")}).to_string()).collect::<Vec<_>>());
    wait_until("broken-stream to resolve", Duration::from_secs(10), || state_of(&alerts_of(&addr), "broken-stream:in") == "resolved");
    wait_until("bad-records to fire", Duration::from_secs(10), || state_of(&alerts_of(&addr), "bad-records") == "firing");
    // Good events only for the next 1.5 s: the rate falls back and it resolves.
    for i in 0..15 {
        send(&[json!({"n": i}).to_string()]);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("bad-records to resolve", Duration::from_secs(10), || state_of(&alerts_of(&addr), "bad-records") == "resolved");
    drop(stdin);
    let out = run.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");

    let taken: Vec<(String, String)> = receiver.taken().iter().map(|v| (v["rule"].as_str().unwrap().to_string(), v["state"].as_str().unwrap().to_string())).collect();
    let pair = |r: &str, s: &str| (r.to_string(), s.to_string());
    assert_eq!(
        taken,
        [pair("broken-stream:in", "firing"), pair("broken-stream:in", "resolved"), pair("bad-records", "firing"), pair("bad-records", "resolved")],
        "each transition once, in order\n{log}"
    );
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got[0].0, 500, "the receiver failed the first request");
    assert_eq!(got[1].1, got[0].1, "and it was sent again, the same");
    assert_eq!(got.len(), 5, "four notifications, one of them twice: {got:?}");
    let first: Value = serde_json::from_str(&got[1].1).unwrap();
    assert_eq!(first["pipeline"], "scripted");
    assert_eq!(first["condition"], "broken-stream");
    assert!(first["value"].as_f64().unwrap() >= 1500.0, "{first}");
    assert!(first["message"].as_str().unwrap().contains("read nothing for"), "{first}");
    let burst = &receiver.taken()[2];
    assert!(burst["value"].as_f64().unwrap() > 5.0, "{burst}");
    // The log says it too, once per transition.
    assert_eq!(log.matches("alert firing").count(), 2, "{log}");
    assert_eq!(log.matches("alert resolved").count(), 2, "{log}");
    assert!(log.contains("the alert webhook failed; retrying"), "{log}");
}
