//! A window join whose output is made by a `joiner` plugin: impressions
//! LEFT JOIN clicks into training samples, with the Rust and the Python
//! sample joiner, on both state backends; and a joiner that panics on one
//! impression dead-letters that impression alone, naming the plugin.

use serde_json::{json, Value};
use streamhost_tests::{jsonl, plugin_dir, run_pipeline, write_pipeline};

const IMPRESSIONS: &str = r#"{"ts":1000,"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios"}
{"ts":2000,"request_id":"r2","user_id":"u2","item_id":"i2","device":"android"}
{"ts":3000,"request_id":"r3","user_id":"u3","item_id":"i3","device":"web"}
{"ts":4000,"request_id":"r4","user_id":"u4","device":"web"}
"#;

// Two clicks for r1, one for r3 in its window, one for a request never
// shown, one for r3 after its window (in time order: none is late).
const CLICKS: &str = r#"{"ts":1500,"request_id":"r1","dwell_ms":100}
{"ts":1900,"request_id":"r1","dwell_ms":50}
{"ts":3100,"request_id":"r3","dwell_ms":7}
{"ts":3500,"request_id":"r9","dwell_ms":1}
{"ts":9000,"request_id":"r3","dwell_ms":1000}
"#;

fn pipeline(plugin: &str, plugin_path: &str, backend: &str, emit: &str) -> Value {
    json!({
        "plugins": {plugin: {"path": plugin_dir(plugin_path), "world": "joiner"}},
        "sources": {
            "impressions": {"type": "file", "path": "impressions.jsonl", "timestamp_field": "ts"},
            "clicks": {"type": "file", "path": "clicks.jsonl", "timestamp_field": "ts"}
        },
        "steps": {
            "samples": {
                "type": "window-join",
                "inputs": ["impressions", "clicks"],
                "keys": {"impressions": "$.request_id", "clicks": "$.request_id"},
                "window": {"start_ms": 0, "end_ms": 5000},
                "mode": "left",
                "emit": emit,
                "joiner": {"type": "plugin", "plugin": plugin}
            }
        },
        "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["samples"]}},
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
        "settings": {"parallelism": 1, "state": {"backend": backend}}
    })
}

/// Runs the pipeline in a fresh folder; returns (outputs, dead letters).
fn run(pipeline: Value) -> (Vec<Value>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("impressions.jsonl"), IMPRESSIONS).unwrap();
    std::fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let summary = run_pipeline(&write_pipeline(dir.path(), &pipeline));
    assert!(summary.errors.is_empty(), "{summary}");
    let dead = dir.path().join("dead.jsonl");
    let dead = if dead.exists() { jsonl(&dead) } else { Vec::new() };
    (jsonl(&dir.path().join("out.jsonl")), dead)
}

fn want_samples() -> Vec<Value> {
    vec![
        json!({"ts":1000,"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios","label":1,"clicks":2,"dwell_ms":150}),
        json!({"ts":2000,"request_id":"r2","user_id":"u2","item_id":"i2","device":"android","label":0,"clicks":0,"dwell_ms":0}),
        json!({"ts":3000,"request_id":"r3","user_id":"u3","item_id":"i3","device":"web","label":1,"clicks":1,"dwell_ms":7}),
    ]
}

/// The only dead letter: the impression without `item_id`, failed by the
/// plugin (clicks outside every window simply never match).
fn check_dead(dead: &[Value], plugin: &str) {
    let refused: Vec<(&str, &str, &str)> = dead
        .iter()
        .map(|d| (d["kind"].as_str().unwrap(), d["step"].as_str().unwrap(), d["plugin"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(refused, vec![("plugin-error", "samples", plugin)], "{dead:#?}");
    assert!(dead[0]["reason"].as_str().unwrap().contains("item_id"), "{dead:#?}");
    assert_eq!(dead[0]["source"], "impressions");
    assert_eq!(dead[0]["position"], 4);
}

#[test]
fn rust_joiner_on_memory_and_rocksdb() {
    for backend in ["memory", "rocksdb"] {
        let (out, dead) = run(pipeline("sample-joiner-rust", "plugins/sample-joiner-rust", backend, "on-window-end"));
        assert_eq!(out, want_samples(), "{backend}");
        check_dead(&dead, "sample-joiner-rust");
    }
}

#[test]
fn python_joiner_gives_the_same_samples() {
    for backend in ["memory", "rocksdb"] {
        let (out, dead) = run(pipeline("sample-joiner-python", "plugins/sample-joiner-python", backend, "on-window-end"));
        assert_eq!(out, want_samples(), "{backend}");
        check_dead(&dead, "sample-joiner-python");
    }
}

#[test]
fn on_match_calls_the_joiner_per_pair() {
    // on-match: one sample per (impression, click) pair as it arrives, and
    // the unmatched impressions (left) when their window ends.
    let (out, _) = run(pipeline("sample-joiner-rust", "plugins/sample-joiner-rust", "memory", "on-match"));
    let mut got: Vec<(String, i64, i64)> = out
        .iter()
        .map(|s| (s["request_id"].as_str().unwrap().to_string(), s["clicks"].as_i64().unwrap(), s["dwell_ms"].as_i64().unwrap()))
        .collect();
    got.sort();
    let want: Vec<(String, i64, i64)> =
        vec![("r1".into(), 1, 50), ("r1".into(), 1, 100), ("r2".into(), 0, 0), ("r3".into(), 1, 7)];
    assert_eq!(got, want);
}

#[test]
fn a_panicking_joiner_dead_letters_only_its_impression() {
    let impressions = "{\"ts\":1000,\"request_id\":\"r1\",\"do\":\"ok\"}\n\
                       {\"ts\":2000,\"request_id\":\"r2\",\"do\":\"panic\"}\n\
                       {\"ts\":3000,\"request_id\":\"r3\",\"do\":\"ok\"}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("impressions.jsonl"), impressions).unwrap();
    std::fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let mut p = pipeline("hostile-joiner", "tests/plugins/hostile-joiner", "rocksdb", "on-window-end");
    p["plugins"]["hostile-joiner"]["limits"] = json!({"batch_timeout_ms": 1000});
    let summary = run_pipeline(&write_pipeline(dir.path(), &p));
    assert!(summary.errors.is_empty(), "{summary}");
    let out = jsonl(&dir.path().join("out.jsonl"));
    let got: Vec<(&str, i64)> = out.iter().map(|o| (o["request_id"].as_str().unwrap(), o["matches"].as_i64().unwrap())).collect();
    assert_eq!(got, vec![("r1", 2), ("r3", 1)]);
    let dead = jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!((dead[0]["kind"].as_str(), dead[0]["plugin"].as_str(), dead[0]["position"].as_u64()), (Some("plugin-trap"), Some("hostile-joiner"), Some(2)));
}

#[test]
fn a_join_key_can_be_computed_by_a_udf_plugin() {
    // Impressions carry the request id inside a URL; a UDF pulls it out as
    // the key. One impression has no such parameter: the UDF returns null
    // and the impression is dead-lettered, not joined on nothing.
    let dir = tempfile::tempdir().unwrap();
    let impressions = r#"{"ts":1000,"url":"https://feed.example/item?rid=r1&x=1"}
{"ts":2000,"url":"https://feed.example/item?rid=r2"}
{"ts":3000,"url":"https://feed.example/item"}
"#;
    std::fs::write(dir.path().join("impressions.jsonl"), impressions).unwrap();
    std::fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let p = json!({
        "plugins": {"url": {"path": plugin_dir("plugins/url-udf"), "world": "udf"}},
        "sources": {
            "impressions": {"type": "file", "path": "impressions.jsonl", "timestamp_field": "ts"},
            "clicks": {"type": "file", "path": "clicks.jsonl", "timestamp_field": "ts"}
        },
        "steps": {"j": {
            "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": {
                "impressions": {"plugin": "url", "function": "query_param", "args": ["$.url", "rid"]},
                "clicks": "$.request_id"
            },
            "window": {"start_ms": 0, "end_ms": 5000}, "mode": "left",
            "joiner": {"type": "merge", "prefixes": {"clicks": "c_"}}
        }},
        "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["j"]}},
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
        "settings": {"state": {"backend": "memory"}}
    });
    let summary = run_pipeline(&write_pipeline(dir.path(), &p));
    assert!(summary.errors.is_empty(), "{summary}");
    let out = jsonl(&dir.path().join("out.jsonl"));
    // Keys computed by a UDF route events to the workers too (the order across
    // keys is then the workers' interleaving).
    let mut counts: Vec<(i64, i64)> = out.iter().map(|o| (o["ts"].as_i64().unwrap(), o["c_count"].as_i64().unwrap())).collect();
    counts.sort();
    assert_eq!(counts, vec![(1000, 2), (2000, 0)], "r1 has two clicks, r2 none: {out:?}");
    let dead = jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0]["reason"].as_str().unwrap().contains("returned null"), "{dead:?}");
    assert_eq!(dead[0]["position"], 3);
}

/// `max_matches` applies before the joiner plugin is called: a hot
/// impression with five clicks and a cap of three gets a sample of three
/// clicks (the earliest), the header saying two were left out, and the
/// summary counts them.
#[test]
fn a_plugin_joiner_gets_at_most_max_matches() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("impressions.jsonl"), IMPRESSIONS).unwrap();
    let clicks: String = (0..5).map(|i| format!("{{\"ts\":{},\"request_id\":\"r1\",\"dwell_ms\":{}}}\n", 1100 + i, 10 + i)).collect();
    std::fs::write(dir.path().join("clicks.jsonl"), clicks).unwrap();
    let mut p = pipeline("sample-joiner-rust", "plugins/sample-joiner-rust", "memory", "on-window-end");
    p["steps"]["samples"]["max_matches"] = json!(3);
    p["sinks"]["out"]["format"] = json!("envelope");
    let summary = run_pipeline(&write_pipeline(dir.path(), &p));
    assert!(summary.errors.is_empty(), "{summary}");
    let step = summary.node("samples").unwrap();
    assert_eq!((step.over_max_matches, step.matches_not_joined), (1, 2), "{summary}");
    assert!(summary.to_string().contains("samples: 1 events over max_matches (2 matches not joined"), "{summary}");
    let out = jsonl(&dir.path().join("out.jsonl"));
    let r1 = out.iter().find(|e| e["value"]["request_id"] == "r1").expect("r1's sample");
    assert_eq!((&r1["value"]["clicks"], &r1["value"]["dwell_ms"]), (&json!(3), &json!(10 + 11 + 12)), "{r1}");
    assert_eq!(r1["headers"], json!([["streamhost-truncated", "{\"clicks\":2}"]]), "{r1}");
    let r2 = out.iter().find(|e| e["value"]["request_id"] == "r2").expect("r2's sample");
    assert!(r2.get("headers").is_none(), "{r2}");
}
