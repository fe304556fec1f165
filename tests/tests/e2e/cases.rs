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
