//! The `window-aggregate` step through `streamhost run`: a hot key split
//! over buckets (`skew`) gives the same output as without, with the
//! workers' loads within 1.3x of each other (without: not); located errors
//! for bad settings.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use rand::{Rng, SeedableRng};

/// 200,000 events over 10 minutes: key `hot` has 30 %, the rest is Zipf
/// (s = 1.1) over 10,000 keys; up to 500 ms out of order.
fn write_input(dir: &Path) {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let weights: Vec<f64> = (1..=10_000).map(|r| 1.0 / (r as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let cumulative: Vec<f64> = weights.iter().scan(0.0, |acc, w| {
        *acc += w / total;
        Some(*acc)
    }).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("events.jsonl")).unwrap());
    for i in 0..200_000i64 {
        let key = if rng.random_range(0..100) < 30 {
            "hot".to_string()
        } else {
            let u: f64 = rng.random();
            format!("k{}", cumulative.partition_point(|c| *c < u))
        };
        let t = 1_700_000_000_000 + i * 3 + rng.random_range(0..500);
        writeln!(out, r#"{{"ts":{t},"key":"{key}","user":"u{}","v":{}}}"#, rng.random_range(0..5000), rng.random_range(0..1000)).unwrap();
    }
}

fn pipeline(skew: Option<serde_json::Value>) -> serde_json::Value {
    let mut step = serde_json::json!({
        "type": "window-aggregate", "inputs": ["events"], "keys": ["$.key"],
        "window": { "type": "sliding", "size_ms": 60_000, "slide_ms": 20_000 },
        "aggregates": [
            { "name": "n", "type": "count" },
            { "name": "total", "type": "sum", "field": "$.v" },
            { "name": "top", "type": "max", "field": "$.v" },
            { "name": "users", "type": "distinct_count", "field": "$.user" }
        ]
    });
    if let Some(s) = skew {
        step["skew"] = s;
    }
    serde_json::json!({
        "sources": { "events": { "type": "file", "path": "events.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 500 } },
        "steps": { "agg": step },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["agg"] } },
        "dead_letter": { "type": "file", "path": "dead.jsonl" },
        "settings": { "parallelism": 2, "state": { "backend": "memory" } }
    })
}

/// Runs `p` in `dir`: the sorted output lines and the summary.
fn run(dir: &Path, name: &str, p: &serde_json::Value) -> (Vec<String>, String) {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, p.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamhost")).args(["run", "--no-progress"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let mut lines: Vec<String> = std::fs::read_to_string(dir.join("out.jsonl")).unwrap().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(std::fs::read_to_string(dir.join("dead.jsonl")).unwrap_or_default(), "", "nothing dead-lettered");
    (lines, stderr)
}

/// The max/min ratio of `step`'s events in per worker, from the summary.
fn load_ratio(summary: &str, step: &str) -> f64 {
    let line = summary.lines().find(|l| l.trim_start().starts_with(&format!("step `{step}` in per worker"))).unwrap_or_else(|| panic!("no per-worker line for {step}:\n{summary}"));
    let counts: Vec<f64> = line.split(':').nth(1).unwrap().split('(').next().unwrap().split(',').map(|n| n.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), 2, "{line}");
    counts[0].max(counts[1]) / counts[0].min(counts[1])
}

#[test]
fn a_hot_key_split_over_buckets_gives_the_same_output_with_the_workers_in_balance() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let (plain, plain_summary) = run(dir.path(), "plain", &pipeline(None));
    let (by_turn, turn_summary) = run(dir.path(), "round-robin", &pipeline(Some(serde_json::json!({ "buckets": 8, "salt": "round_robin" }))));
    let (by_user, user_summary) = run(dir.path(), "by-user", &pipeline(Some(serde_json::json!({ "buckets": 8, "salt": "$.user" }))));
    // Every (key, window) once: 3 windows per event's time, the hot key in each.
    assert!(plain.len() > 10_000, "{}", plain.len());
    assert!(plain.iter().any(|l| l.contains(r#""key":"hot""#)));
    assert!(by_turn == plain, "round-robin buckets changed the output");
    assert!(by_user == plain, "buckets by user changed the output");
    let counted: u64 = plain.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap()).sum();
    assert_eq!(counted, 3 * 200_000, "each event in its 3 sliding windows");

    let unsplit = load_ratio(&plain_summary, "agg");
    let split_turn = load_ratio(&turn_summary, "agg/partial");
    let split_user = load_ratio(&user_summary, "agg/partial");
    eprintln!("load max/min: unsplit {unsplit:.2}, round-robin buckets {split_turn:.2}, buckets by user {split_user:.2}");
    assert!(unsplit > 1.3, "without skew handling one worker takes the hot key: {unsplit:.2}");
    assert!(split_turn <= 1.3, "{split_turn:.2}\n{turn_summary}");
    assert!(split_user <= 1.3, "{split_user:.2}\n{user_summary}");
}

#[test]
fn bad_settings_are_refused_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
    let mut p = pipeline(Some(serde_json::json!({ "buckets": 1, "salt": "user" })));
    p["steps"]["agg"]["aggregates"][1]["type"] = "median".into();
    p["steps"]["agg"]["early_fire_ms"] = 7.into();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, serde_json::to_string_pretty(&p).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamhost")).arg("validate").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // serde names the step (its tag decides the variant) and the unknown kind.
    assert!(err.contains("$.steps.agg") && err.contains("unknown variant `median`"), "{err}");
    let mut p = pipeline(Some(serde_json::json!({ "buckets": 1, "salt": "user" })));
    p["steps"]["agg"]["early_fire_ms"] = 7.into();
    std::fs::write(&path, serde_json::to_string_pretty(&p).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamhost")).arg("validate").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["steps.agg.skew.buckets", "must be from 2 to 1024", "steps.agg.skew.salt", "steps.agg.early_fire_ms", "must divide", "cannot be combined"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(err.contains(":"), "line:column given: {err}");
}

/// `examples/realtime-features` runs as shipped and its features equal
/// counts made here from the raw data: per item, impressions and clicks in
/// every 10-minute window ending on a minute (CTR their ratio); per page and
/// hour, the distinct users (exact and within HyperLogLog's error).
#[test]
fn the_realtime_features_example_computes_what_its_data_says() {
    let (dir, ex) = common::example_copy("realtime-features", &["pipeline.json"], &["examples/training-join"]);
    let out = Command::new(env!("CARGO_BIN_EXE_streamhost")).args(["run", "--no-progress"]).arg(ex.join("pipeline.json")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |file: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(ex.join("out").join(file)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let data = dir.path().join("examples/training-join/data");
    let events = |file: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(data.join(file)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (impressions, clicks) = (events("impressions.jsonl"), events("clicks.jsonl"));

    // Per (item, window end): (impressions, clicks).
    let mut want: std::collections::BTreeMap<(String, i64), (u64, u64)> = Default::default();
    for (list, click) in [(&impressions, false), (&clicks, true)] {
        for e in list.iter() {
            let (Some(item), Some(ts)) = (e["item_id"].as_str(), e["ts"].as_i64()) else { continue };
            let first_end = ts.div_euclid(60_000) * 60_000 + 60_000;
            for end in (first_end..=ts + 600_000).step_by(60_000) {
                let w = want.entry((item.to_string(), end)).or_default();
                if click { w.1 += 1 } else { w.0 += 1 }
            }
        }
    }
    let ctr = read("item-ctr.jsonl");
    let got: std::collections::BTreeMap<(String, i64), (u64, u64)> = ctr
        .iter()
        .map(|r| ((r["item_id"].as_str().unwrap().to_string(), r["window_end"].as_i64().unwrap()), (r["impressions"].as_u64().unwrap(), r["clicks"].as_u64().unwrap())))
        .collect();
    assert_eq!(got.len(), ctr.len(), "each item and window once");
    assert_eq!(got, want);
    for r in &ctr {
        let (i, c) = (r["impressions"].as_f64().unwrap(), r["clicks"].as_f64().unwrap());
        assert_eq!(r["window_end"].as_i64().unwrap() - r["window_start"].as_i64().unwrap(), 600_000);
        if i > 0.0 {
            assert!((r["ctr"].as_f64().unwrap() - c / i).abs() < 1e-12, "{r}");
        } else {
            assert!(r["ctr"].is_null(), "{r}");
        }
    }
    assert!(ctr.iter().any(|r| r["clicks"].as_u64() > Some(0)), "some windows have clicks");

    let mut users: std::collections::BTreeMap<(String, i64), std::collections::BTreeSet<String>> = Default::default();
    for e in &impressions {
        let (Some(page), Some(ts), Some(user)) = (e["page"].as_str(), e["ts"].as_i64(), e["user_id"].as_str()) else { continue };
        users.entry((page.to_string(), ts.div_euclid(3_600_000) * 3_600_000)).or_default().insert(user.to_string());
    }
    let pages = read("page-users.jsonl");
    assert_eq!(pages.len(), users.len());
    for p in &pages {
        let exact = users[&(p["page"].as_str().unwrap().to_string(), p["window_start"].as_i64().unwrap())].len() as f64;
        assert_eq!(p["users"].as_f64(), Some(exact), "{p}");
        // lg_k 10: 3.25 % standard error; 3 of them.
        assert!((p["users_approx"].as_f64().unwrap() - exact).abs() <= (0.0975 * exact).max(1.0), "{p}");
        assert_eq!(p["top_items"].as_array().map(Vec::len), Some(3), "{p}");
    }
    let dead = std::fs::read_to_string(ex.join("out/dead-letter.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1, "the impression without a page: {dead}");
    assert!(dead.contains("no grouping key: field `$.page` is missing"));
}

/// Aggregates written as plugins (world `aggregator`, built from source in
/// Rust and Python) in a window aggregation beside built-in counts, also
/// split over buckets: each window's smoothed CTR equals the formula on the
/// built-in counts of the same window.
#[test]
fn plugin_aggregates_agree_with_the_built_in_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
    let mut input = String::new();
    for i in 0..20_000i64 {
        let kind = if rng.random_range(0..10) == 0 { "click" } else { "impression" };
        let t = 1_700_000_000_000 + i * 5 + rng.random_range(0..300);
        input.push_str(&format!("{{\"ts\":{t},\"item\":\"i{}\",\"type\":\"{kind}\"}}\n", rng.random_range(0..50)));
    }
    std::fs::write(dir.path().join("events.jsonl"), input).unwrap();
    let root = common::repo_root();
    for skew in [None, Some(serde_json::json!({ "buckets": 4, "salt": "round_robin" }))] {
        let mut step = serde_json::json!({
            "type": "window-aggregate", "inputs": ["events"], "keys": ["$.item"],
            "window": { "type": "sliding", "size_ms": 20_000, "slide_ms": 10_000 },
            "aggregates": [
                { "name": "clicks", "type": "count", "where": { "path": "$.type", "op": "eq", "value": "click" } },
                { "name": "all", "type": "count" },
                { "name": "rust", "type": "plugin", "plugin": "ctr-rust" },
                { "name": "python", "type": "plugin", "plugin": "ctr-python" }
            ]
        });
        if let Some(s) = &skew {
            step["skew"] = s.clone();
        }
        let p = serde_json::json!({
            "plugins": {
                "ctr-rust": { "path": root.join("plugins/ctr-udaf-rust"), "config": { "a": 1, "b": 10 } },
                "ctr-python": { "path": root.join("plugins/ctr-udaf-python"), "config": { "a": 2, "b": 5 } }
            },
            "sources": { "events": { "type": "file", "path": "events.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 300 } },
            "steps": { "agg": step },
            "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["agg"] } },
            "dead_letter": { "type": "file", "path": "dead.jsonl" },
            "settings": { "parallelism": 2, "state": { "backend": "memory" } }
        });
        let path = dir.path().join("udaf.json");
        std::fs::write(&path, p.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_streamhost")).args(["run", "--no-progress"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(rows.len() > 100, "{}", rows.len());
        for r in &rows {
            let (clicks, all) = (r["clicks"].as_f64().unwrap(), r["all"].as_f64().unwrap());
            for (name, a, b) in [("rust", 1.0, 10.0), ("python", 2.0, 5.0)] {
                let v = &r[name];
                assert_eq!(v["clicks"].as_f64(), Some(clicks), "{name}: {r}");
                assert_eq!(v["impressions"].as_f64(), Some(all - clicks), "{name}: {r}");
                let want = (clicks + a) / (all - clicks + a + b);
                assert!((v["ctr"].as_f64().unwrap() - want).abs() < 1e-9, "{name}: {r}");
            }
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default(), "", "skew {skew:?}");
    }
}
