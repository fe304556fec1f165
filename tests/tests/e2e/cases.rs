//! Data-driven pipeline tests: each folder of `tests/cases/` holds a
//! pipeline.json, its input, and `expected/` mirroring the files the run must
//! produce (compared line by line). Each case runs on a copy in a temporary
//! folder. `UPDATE_EXPECTED=1` rewrites the expected files; review the diff
//! before committing.

use std::path::Path;

use streamhost_tests::{copy_to_temp, lines, repo, run_pipeline};

#[path = "../../../host/tests/common/training_join.rs"]
mod training_join;

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

fn run_case(name: &str) -> streamhost::runtime::RunSummary {
    let case = repo().join("tests/cases").join(name);
    let (copy, pipeline) = copy_to_temp(&case);
    let summary = run_pipeline(&pipeline);
    assert!(summary.errors.is_empty(), "{summary}");
    let dir = copy.path();
    let expected_dir = case.join("expected");
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
    summary
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
fn filter_where() {
    // Built-in `filter` steps: all/any/not of comparisons, numbers by value,
    // nested paths, missing and null fields. Every event is accounted for:
    // kept, filtered (counted) or dead-lettered (at the source here).
    let s = run_case("filter-where");
    let (keep, errors) = (s.node("keep").unwrap(), s.node("errors").unwrap());
    assert_eq!((keep.events_in, keep.events_out, keep.filtered, keep.dead), (8, 3, 5, 0), "{s}");
    assert_eq!((errors.events_in, errors.events_out, errors.filtered, errors.dead), (8, 7, 1, 0), "{s}");
    assert!(s.to_string().contains("filtered out by step `keep`: 5"), "{s}");
}

#[test]
fn project_rename() {
    // Built-in `project` steps: fields kept or dropped in their order,
    // renamed (a renamed field replaces one of its new name).
    let s = run_case("project-rename");
    let trim = s.node("trim").unwrap();
    assert_eq!((trim.events_in, trim.events_out, trim.filtered, trim.dead), (4, 4, 0, 0), "{s}");
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
    let (copy, pipeline) = copy_to_temp(&repo().join("examples/training-join"));
    let dir = copy.path();
    let summary = run_pipeline(&pipeline);
    assert!(summary.errors.is_empty(), "{summary}");
    let read = |p: &str| -> Vec<serde_json::Value> { lines(&dir.join(p)).iter().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let (imps, clicks, samples) = (read("data/impressions.jsonl"), read("data/clicks.jsonl"), read("out/samples.jsonl"));
    training_join::check_samples(&imps, &clicks, &samples);
}
