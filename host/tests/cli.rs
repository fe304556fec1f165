//! The `streamhost` command as a user runs it: exit codes, located errors,
//! stdin to stdout, the schema, the final summary.

use std::io::Write;
use std::process::{Command, Stdio};

fn streamhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamhost"))
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn validate_reports_every_error_with_path_and_line_column_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "pipeline.json",
        r#"{
  "sources": {"in": {"type": "stdin", "schema": {"fields": {"a": {"type": "integr"}}}}},
  "steps": {"s": {"type": "transform", "plugin": "nope", "inputs": ["in"]}},
  "sinks": {"out": {"type": "stdout", "inputs": ["s", "ghost"]}}
}"#,
    );
    let out = streamhost().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let file = p.display().to_string();
    assert!(err.contains(&format!("{file}:2:")) && err.contains("$.sources.in"), "{err}");
    assert!(err.contains("integr"), "{err}");
    assert!(err.contains(&format!("{file}:3:")) && err.contains("$.steps.s.plugin: unknown plugin `nope`"), "{err}");
    assert!(err.contains(&format!("{file}:4:")) && err.contains("$.sinks.out.inputs[1]: unknown input `ghost`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn validate_refuses_a_missing_plugin_and_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "pipeline.json",
        r#"{"plugins": {"p": {"path": "missing.wasm"}},
 "sources": {"in": {"type": "stdin"}},
 "steps": {"s": {"type": "transform", "plugin": "p", "inputs": ["in"]}},
 "sinks": {"out": {"type": "null", "inputs": ["s"]}}}"#,
    );
    let out = streamhost().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("pipeline.json:1:28: $.plugins.p.path: plugin `p`:") && err.contains("missing.wasm does not exist"), "{err}");

    // A component that is not one: refused with a reason, not a panic.
    write(dir.path(), "missing.wasm", "garbage");
    let out = streamhost().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("$.plugins.p.path") && !err.contains("panicked"), "{err}");

    let bad = write(dir.path(), "bad.json", "{\n  \"sources\": [1,,]\n}");
    let out = streamhost().args(["run"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.json:2:17: $: invalid JSON"), "{err}");
}

#[test]
fn run_reads_stdin_writes_stdout_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "pipeline.json",
        r#"{"sources": {"in": {"type": "stdin", "schema": {"fields": {"a": {"type": "int", "required": true}}}}},
            "sinks": {"out": {"type": "stdout", "inputs": ["in"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"}}"#,
    );
    let mut child = streamhost().arg("run").arg(&p).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"{\"a\":1}\n{\"a\":\"x\"}\n{\"a\":3}\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "{\"a\":1}\n{\"a\":3}\n");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("dead-lettered: 1"), "{err}");
    assert!(err.contains("source") && err.contains("sink"), "{err}");
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    assert!(dead.contains("\"position\":2") && dead.contains("should be an integer"), "{dead}");
}

#[test]
fn schema_describes_every_section() {
    let out = streamhost().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for section in ["plugins", "sources", "steps", "sinks", "dead_letter", "settings"] {
        assert!(schema["properties"][section]["description"].is_string(), "{section} undocumented");
    }
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Time budget of one batch call"), "plugin limits are documented");
}

#[test]
fn plugin_build_refuses_a_folder_without_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = streamhost().args(["plugin", "build"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no plugin.toml"));
}
