//! The `streamhost` command as a user runs it: exit codes, located errors,
//! stdin to stdout, the schema, the final summary.

mod common;

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

/// A line far longer than `max_record_bytes` is refused while it is read:
/// never held whole in memory, dead-lettered with its line number and only
/// its first bytes, and the lines after it go on.
#[test]
fn a_line_longer_than_max_record_bytes_is_skipped_while_reading() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |input: &str| {
        let p = serde_json::json!({
            "sources": {"in": {"type": "file", "path": input, "max_record_bytes": 1 << 20}},
            "sinks": {"out": {"type": "file", "path": format!("{input}.out"), "inputs": ["in"]}},
            "dead_letter": {"type": "file", "path": format!("{input}.dead")}
        });
        write(dir.path(), &format!("{input}.pipeline.json"), &p.to_string())
    };
    let big_len = 50 << 20;
    // Written in pieces: the test process stays small (its resident set
    // would count in the child's ru_maxrss).
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.path().join("big.jsonl")).unwrap());
    writeln!(f, "{{\"i\":1}}\n{{\"i\":2}}").unwrap();
    write!(f, "{{\"big\":\"").unwrap();
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..(big_len / chunk.len()) {
        f.write_all(&chunk).unwrap();
    }
    writeln!(f, "\"}}\n\n{{\"i\":3}}").unwrap();
    // Just past the limit (with \r\n) and just within it.
    let at_limit = format!("{{\"s\":\"{}\"}}", "y".repeat((1 << 20) - 8));
    assert_eq!(at_limit.len(), 1 << 20);
    write!(f, "{at_limit}\r\n{{\"s\":\"{}\"}}\r\n{{\"i\":4}}", "z".repeat(1 << 20)).unwrap();
    drop(f);
    write(dir.path(), "small.jsonl", "{\"i\":1}\n{\"i\":2}\n{\"i\":3}\n");

    let run = |input: &str| {
        let mut cmd = streamhost();
        cmd.args(["run", "--no-progress"]).arg(pipeline(input));
        let before = common::own_peak_rss();
        let run = common::run_child(&mut cmd, |_| {});
        assert!(run.status.success(), "{}", run.stderr_text());
        (run, before)
    };
    let (baseline, test_process) = run("small.jsonl");
    let (big, _) = run("big.jsonl");

    let out = std::fs::read_to_string(dir.path().join("big.jsonl.out")).unwrap();
    assert_eq!(out, format!("{{\"i\":1}}\n{{\"i\":2}}\n{{\"i\":3}}\n{at_limit}\n{{\"i\":4}}\n"), "every other line passes");
    let dead: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("big.jsonl.dead")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!((dead[0]["kind"].as_str(), dead[0]["position"].as_u64()), (Some("too-large"), Some(3)), "{:.300}", dead[0]);
    assert!(dead[0]["reason"].as_str().unwrap().contains(&format!("line of {} bytes", big_len + 10)), "{}", dead[0]["reason"]);
    assert!(dead[0]["value"].as_str().unwrap().starts_with("{\"big\":\"xxx") && dead[0]["value"].as_str().unwrap().len() <= 1024);
    assert_eq!((dead[1]["kind"].as_str(), dead[1]["position"].as_u64()), (Some("too-large"), Some(7)), "{:.300}", dead[1]);

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "streamhost peak RSS: {:.1} MiB with a {} MiB line, {:.1} MiB without (test process {:.1} MiB)",
        mib(big.peak_rss),
        big_len >> 20,
        mib(baseline.peak_rss),
        mib(test_process)
    );
    // The baseline is the child's own only if the test process was smaller.
    assert!(test_process < baseline.peak_rss, "the test process ({:.1} MiB) hides the child's peak", mib(test_process));
    assert!(
        big.peak_rss < baseline.peak_rss + (16 << 20),
        "a {} MiB line took {:.1} MiB more memory",
        big_len >> 20,
        mib(big.peak_rss - baseline.peak_rss.min(big.peak_rss))
    );
}
