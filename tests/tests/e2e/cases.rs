//! Data-driven pipeline tests: each folder of `tests/cases/` holds a
//! pipeline.json, its input, and `expected/` mirroring the files the run must
//! produce (compared line by line). `UPDATE_EXPECTED=1` rewrites them; review
//! the diff before committing.

use std::path::Path;

use streamhost_tests::{lines, repo, run_pipeline};

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

fn run_case(name: &str) {
    let dir = repo().join("tests/cases").join(name);
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let summary = run_pipeline(&dir.join("pipeline.json"));
    assert!(summary.errors.is_empty(), "{summary}");
    let expected_dir = dir.join("expected");
    let mut expected = Vec::new();
    files_under(&expected_dir, &mut expected);
    assert!(!expected.is_empty(), "case {name} has no expected files");
    for exp in expected {
        let rel = exp.strip_prefix(&expected_dir).unwrap();
        let got_path = dir.join(rel);
        if std::env::var_os("UPDATE_EXPECTED").is_some() {
            std::fs::copy(&got_path, &exp).unwrap();
            continue;
        }
        let (want, got) = (lines(&exp), lines(&got_path));
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(g, w, "case {name}: {} line {} differs", rel.display(), i + 1);
        }
        assert_eq!(got.len(), want.len(), "case {name}: {} has {} lines, expected {}", rel.display(), got.len(), want.len());
    }
}

#[test]
fn schema_violations() {
    run_case("schema-violations");
}

#[test]
fn clean_impressions_rust() {
    run_case("clean-impressions-rust");
}

#[test]
fn clean_clicks_python() {
    run_case("clean-clicks-python");
}

#[test]
fn udf_chain_branch() {
    run_case("udf-chain-branch");
}

#[test]
fn window_join_left() {
    // Impressions LEFT JOIN clicks within [0, 1 h] on request_id, on
    // RocksDB: matched and unmatched impressions once each, the window's end
    // inclusive, a click 1 ms late for its window ignored, a click without a
    // key dead-lettered.
    run_case("window-join-left");
}

#[test]
fn training_join_example() {
    // examples/training-join: cleaned impressions LEFT JOIN cleaned clicks
    // within an hour. Each impression the cleaner keeps comes out once,
    // with the number of its (non-bot) clicks in the window, counted here
    // from the raw data by a nested loop.
    let dir = repo().join("examples/training-join");
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let summary = run_pipeline(&dir.join("pipeline.json"));
    assert!(summary.errors.is_empty(), "{summary}");
    let read = |p: &str| -> Vec<serde_json::Value> { lines(&dir.join(p)).iter().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let (imps, clicks, samples) = (read("data/impressions.jsonl"), read("data/clicks.jsonl"), read("out/samples.jsonl"));
    let kept: Vec<&serde_json::Value> = imps.iter().filter(|i| i.get("user_id").is_some()).collect();
    assert_eq!(samples.len(), kept.len(), "one sample per clean impression");
    let mut positives = 0;
    for imp in kept {
        let (rid, t) = (&imp["request_id"], imp["ts"].as_i64().unwrap());
        let want = clicks
            .iter()
            .filter(|c| &c["request_id"] == rid && !c["user_agent"].as_str().unwrap_or("").contains("bot"))
            .filter(|c| (t..=t + 3_600_000).contains(&c["ts"].as_i64().unwrap()))
            .count();
        let got: Vec<&serde_json::Value> = samples.iter().filter(|s| &s["request_id"] == rid).collect();
        assert_eq!(got.len(), 1, "{rid} comes out exactly once");
        assert_eq!(got[0]["click_count"], want, "{rid}");
        positives += usize::from(want > 0);
    }
    assert!(positives > 20, "the example has positives and negatives ({positives} positives)");
}
