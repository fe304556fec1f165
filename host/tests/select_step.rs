//! The `select` step as a user runs it: `streamhost run` on a file source
//! -> select -> file sink (exact output, the filtered count in the summary,
//! dead letters with reasons), and `streamhost validate` locating a bad
//! expression by JSON path, line:column and the column inside the text.

mod common;

use common::streamhost;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn run_filters_projects_and_dead_letters_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        concat!(
            r#"{"status": "ok", "dur": 1500, "user": {"id": "u1", "country": "fr"}, "tags": [1, 2], "price": 1.50}"#,
            "\n",
            r#"{"status": "error", "dur": 20, "user": {"id": "u2"}}"#,
            "\n",
            r#"{"status": "ok", "dur": "12", "user": {"id": "u3", "country": "de"}, "price": 3}"#,
            "\n",
            r#"{"status": "ok", "dur": "slow", "user": {"id": "u4"}}"#,
            "\n",
            r#"[1, 2, 3]"#,
            "\n",
            r#"{"status": "ok", "dur": 5}"#,
            "\n",
            r#"{"status": "ok", "dur": 100, "user": {"id": "u7"}, "price": 0, "qty": 0}"#,
            "\n",
            r#"{"dur": 100}"#,
            "\n",
        ),
    );
    let pipeline = write(
        dir.path(),
        "pipeline.json",
        r#"{
  "sources": {"in": {"type": "file", "path": "in.jsonl"}},
  "steps": {
    "pick": {"type": "select", "inputs": ["in"],
             "where": "status = 'ok' AND CAST(dur AS BIGINT) > 10",
             "columns": [{"name": "uid", "expr": "user.id"},
                         {"name": "dur_s", "expr": "CAST(dur AS BIGINT) / 1000.0"},
                         {"name": "country", "expr": "COALESCE(UPPER(user.country), '??')"},
                         {"name": "unit", "expr": "CASE WHEN qty IS NULL THEN price ELSE price / qty END"},
                         {"name": "tags"}]}
  },
  "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["pick"]}},
  "dead_letter": {"type": "file", "path": "dead.jsonl"}
}"#,
    );
    let out = streamhost().current_dir(dir.path()).args(["run", "--no-progress"]).arg(&pipeline).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(
        got,
        concat!(
            r#"{"uid":"u1","dur_s":1.5,"country":"FR","unit":1.5,"tags":[1, 2]}"#,
            "\n",
            r#"{"uid":"u3","dur_s":0.012,"country":"DE","unit":3,"tags":null}"#,
            "\n",
        )
    );
    // `error`, dur 5 and the one without a status (NULL) are filtered.
    assert!(stderr.contains("filtered out by step `pick`: 3"), "{stderr}");
    let dead: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(u64, &str, &str)> =
        dead.iter().map(|d| (d["position"].as_u64().unwrap(), d["kind"].as_str().unwrap(), d["reason"].as_str().unwrap())).collect();
    assert_eq!(
        got,
        [
            (4, "step-error", "where: cannot cast 'slow' to BIGINT"),
            (5, "step-error", "a select step needs each event's value to be a JSON object"),
            (7, "step-error", "column `unit`: division by zero"),
        ],
        "{dead:?}"
    );
    assert!(dead.iter().all(|d| d["step"] == "pick"), "{dead:?}");
}

#[test]
fn validate_locates_a_bad_expression() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(
        dir.path(),
        "pipeline.json",
        r#"{
  "sources": {"in": {"type": "stdin"}},
  "steps": {
    "pick": {"type": "select", "inputs": ["in"],
             "where": "status = 'ok' AND",
             "columns": [{"name": "a", "expr": "a"},
                         {"name": "b", "expr": "url_host(a)"},
                         {"name": "c", "expr": "a IN (SELECT 1)"}]}
  },
  "sinks": {"out": {"type": "stdout", "inputs": ["pick"]}}
}"#,
    );
    let out = streamhost().arg("validate").arg(&pipeline).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let file = pipeline.display().to_string();
    assert!(
        err.contains(&format!("{file}:5:23: $.steps.pick.where: Expected: an expression, found: EOF (column 18 of the expression): `status = 'ok' AND`")),
        "{err}"
    );
    assert!(err.contains(&format!("{file}:7:48: $.steps.pick.columns[1].expr: unknown function `url_host` (column 1 of the expression)")), "{err}");
    assert!(err.contains(&format!("{file}:8:48: $.steps.pick.columns[2].expr: IN with a subquery or a table is not supported in an expression (column 1")), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Fixed, it validates.
    let fixed = std::fs::read_to_string(&pipeline).unwrap().replace("AND\"", "AND a > 1\"").replace("url_host(a)", "LOWER(a)").replace("(SELECT 1)", "(1, 2)");
    std::fs::write(&pipeline, fixed).unwrap();
    let out = streamhost().arg("validate").arg(&pipeline).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
