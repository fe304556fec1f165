//! Hostile plugins inside a running pipeline: an infinite loop, a memory
//! bomb, a panic, a flood of outputs, an oversized value. Each is contained
//! to its own record, the pipeline completes, and every input record is
//! accounted for in the output or the dead letters.

use std::collections::BTreeMap;

use serde_json::json;
use streamhost_tests::{jsonl, plugin_dir, run_pipeline, write_pipeline};

#[test]
fn every_hostile_record_is_isolated_and_every_record_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    // 400 records in batches of 64; hostile ones scattered, two in one batch.
    let hostile: BTreeMap<u64, (&str, &str)> = [
        (10, ("loop", "plugin-timeout")),
        (70, ("oom", "plugin-out-of-memory")),
        (71, ("panic", "plugin-trap")),
        (150, ("huge", "plugin-limit")),
        (222, ("big", "plugin-out-of-memory")),
        (300, ("error", "plugin-error")),
        (399, ("panic", "plugin-trap")),
    ]
    .into();
    let mut input = String::new();
    for line in 1..=400u64 {
        let act = hostile.get(&line).map(|h| h.0).unwrap_or("ok");
        input += &format!("{{\"do\":\"{act}\",\"n\":{line},\"count\":100000}}\n");
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "plugins": {"hostile": {"path": plugin_dir("tests/plugins/hostile"),
                                    "limits": {"memory_mb": 64, "batch_timeout_ms": 500, "max_outputs_per_event": 1000}}},
            "sources": {"in": {"type": "file", "path": "in.jsonl"}},
            "steps": {"h": {"type": "transform", "plugin": "hostile", "inputs": ["in"]}},
            "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["h"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"},
            "settings": {"batch_size": 64, "parallelism": 1}
        }),
    );
    let summary = run_pipeline(&pipeline);

    let out: Vec<u64> = jsonl(&dir.path().join("out.jsonl")).iter().map(|v| v["n"].as_u64().unwrap()).collect();
    let dead = jsonl(&dir.path().join("dead.jsonl"));
    let dead_kinds: BTreeMap<u64, String> =
        dead.iter().map(|d| (d["position"].as_u64().unwrap(), d["kind"].as_str().unwrap().to_string())).collect();
    let want_kinds: BTreeMap<u64, String> = hostile.iter().map(|(l, (_, k))| (*l, k.to_string())).collect();
    assert_eq!(dead_kinds, want_kinds, "{dead:#?}");
    assert!(dead.iter().all(|d| d["step"] == "h" && d["plugin"] == "hostile" && !d["reason"].as_str().unwrap().is_empty()));

    // Every other record came out once, in order.
    let want_out: Vec<u64> = (1..=400).filter(|l| !hostile.contains_key(l)).collect();
    assert_eq!(out, want_out);
    let step = summary.node("h").unwrap();
    assert_eq!((step.events_in, step.events_out, step.dead), (400, 393, 7), "{summary}");
}

/// 10,000 events through a plugin that loops past its budget on every
/// record: the pipeline finishes after a bounded number of plugin calls (the
/// batch call and 3 probes per batch, see host/src/plugin/isolation.rs), and
/// every event is dead-lettered once, with its reason.
#[test]
fn a_plugin_timing_out_on_every_record_stalls_each_batch_for_four_budgets_only() {
    use std::sync::mpsc;
    use std::time::Duration;

    use streamhost::config::load_pipeline;
    use streamhost::runtime::{build_pipeline, BuildOptions};

    let dir = tempfile::tempdir().unwrap();
    let input: String = (1..=10_000u64).map(|n| format!("{{\"do\":\"ok\",\"n\":{n}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "plugins": {"hostile": {"path": plugin_dir("tests/plugins/hostile"), "config": {"always": "loop"},
                                    "limits": {"batch_timeout_ms": 200}}},
            "sources": {"in": {"type": "file", "path": "in.jsonl"}},
            "steps": {"h": {"type": "transform", "plugin": "hostile", "inputs": ["in"]}},
            "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["h"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"},
            // Full batches only (the linger never fires): 10 batches of 1000.
            "settings": {"batch_size": 1000, "batch_linger_ms": 600000}
        }),
    );
    let p = load_pipeline(&pipeline).unwrap_or_else(|e| panic!("{e}"));
    let built = build_pipeline(&p, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let plugin = built.swapper().registry().slot("hostile").unwrap().current().plugin.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(built.run().map_err(|e| e.to_string()));
    });
    // A guard against a hang only: the run spends 40 budgets (8 s).
    let summary = rx.recv_timeout(Duration::from_secs(300)).expect("the run must finish").unwrap();

    let stats = plugin.stats().snapshot();
    assert_eq!(stats.retried_batches, 10, "10 batches, each failed as a whole");
    assert_eq!(stats.calls, 40, "per batch: the batch call and 3 probes");
    assert_eq!(stats.not_isolated, 10_000 - 30);

    assert!(std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default().is_empty());
    let dead = jsonl(&dir.path().join("dead.jsonl"));
    let mut positions: Vec<u64> = dead.iter().map(|d| d["position"].as_u64().unwrap()).collect();
    positions.sort();
    assert_eq!(positions, (1..=10_000).collect::<Vec<u64>>(), "every event dead-lettered exactly once");
    assert!(dead.iter().all(|d| d["kind"] == "plugin-timeout" && d["step"] == "h" && d["plugin"] == "hostile"));
    let not_isolated = dead
        .iter()
        .filter(|d| {
            d["reason"].as_str().unwrap().starts_with("not isolated: the plugin failed every input tried (3 of 3) and the whole batch")
        })
        .count();
    let probed = dead.iter().filter(|d| d["reason"] == "the call ran past its time budget of 200 ms").count();
    assert_eq!((not_isolated, probed), (9970, 30), "{:#?}", &dead[..3]);
    let step = summary.node("h").unwrap();
    assert_eq!((step.events_in, step.events_out, step.dead), (10_000, 0, 10_000), "{summary}");
}
