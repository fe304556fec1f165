//! `streamhost plugin list|swap|rollback` (and `swap --watch`) against a
//! `streamhost run` process, as an operator uses them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::build;
use serde_json::json;
use streamhost::config::WorldName;
use streamhost::swap::AdminClient;

fn streamhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamhost"))
}

fn plugin(args: &[&str], pipeline: &Path) -> Output {
    streamhost().arg("plugin").args(args).arg("--pipeline").arg(pipeline).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for `what` (60 s at most).
fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_operator_lists_swaps_rolls_back_and_watches_a_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = build("tests/plugins/hostile", WorldName::Transform);
    let watched = dir.path().join("h.wasm");
    std::fs::copy(&wasm, &watched).unwrap();
    let pipeline = dir.path().join("pipeline.json");
    let p = json!({
        "plugins": { "h": { "path": watched, "config": {"tag": "v1"} } },
        "sources": { "in": { "type": "stdin" } },
        "steps": { "t": { "type": "transform", "plugin": "h", "inputs": ["in"] } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["t"] } },
        "settings": { "batch_linger_ms": 5, "admin": { "token": "tok" } }
    });
    std::fs::write(&pipeline, p.to_string()).unwrap();
    let mut run: Child = streamhost()
        .args(["run", "--no-progress"])
        .arg(&pipeline)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr_file = dir.path().join("admin.addr");
    wait("admin.addr", || addr_file.exists());
    let client = AdminClient::new(std::fs::read_to_string(&addr_file).unwrap().trim(), Some("tok".into()));
    let mut stdin = run.stdin.take().unwrap();
    let mut send = |n: usize| {
        for i in 0..n {
            writeln!(stdin, "{{\"i\":{i}}}").unwrap();
        }
        stdin.flush().unwrap();
    };
    send(10);

    let out = plugin(&["list"], &pipeline);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.lines().any(|l| l.starts_with("h ") && l.contains("transform")), "{listed}");

    let out = plugin(&["swap", "h"], &pipeline); // missing FILE: clap's usage error
    assert_eq!(out.status.code(), Some(2));
    let out = plugin(&["swap", "nope", wasm.to_str().unwrap()], &pipeline);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no plugin named `nope`"), "{}", text(&out.stderr));
    let out = streamhost().args(["plugin", "list", "--admin"]).arg(client_addr(&addr_file)).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no token: refused");
    assert!(text(&out.stderr).contains("HTTP 401"), "{}", text(&out.stderr));

    let out = plugin(&["swap", "h", wasm.to_str().unwrap(), "--config", r#"{"tag":"v2"}"#], &pipeline);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("swapped `h`"), "{}", text(&out.stdout));
    send(10);
    let out = plugin(&["rollback", "h"], &pipeline);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("rolled `h` back"), "{}", text(&out.stdout));

    // Watch mode: a new file over the watched one is swapped in.
    let mut watch = streamhost()
        .args(["plugin", "swap", "h"])
        .arg(&watched)
        .args(["--watch", "--config", r#"{"tag":"w"}"#, "--pipeline"])
        .arg(&pipeline)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch_err = BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    watch_err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching "), "{line}");
    let tmp = dir.path().join("h.wasm.new");
    std::fs::copy(&wasm, &tmp).unwrap();
    std::fs::rename(&tmp, &watched).unwrap();
    wait("the watch-mode swap", || client.list().unwrap().plugins[0].swaps == 2);
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(client.list().unwrap().plugins[0].current.config, json!({"tag": "w"}));
    send(10);

    drop(stdin);
    let status = run.wait().unwrap();
    let mut summary = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut summary).unwrap();
    assert!(status.success(), "{summary}");
    assert!(summary.contains("admin API on http://127.0.0.1:"), "{summary}");
    assert!(summary.contains("plugin `h`: 2 swaps, 1 rollbacks, 0 automatic rollbacks, 0 refused"), "{summary}");
    let tags: Vec<String> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["tag"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tags.len(), 30);
    assert_eq!(tags.last().map(String::as_str), Some("w"));
}

fn client_addr(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap().trim().to_string()
}

/// The README's hot-swap demo (`examples/hot-swap/demo.sh`) runs to its end:
/// list, swap to a tagged version, rollback, a clean end, nothing written
/// twice. It runs on a copy of the example (its `out/` in a temporary
/// folder), with the repository's plugins and scripts linked in.
#[test]
fn the_hot_swap_demo_runs() {
    let (dir, ex) = common::example_copy("hot-swap", &["demo.sh", "pipeline.json"], &["plugins", "tests", "scripts"]);
    let (ok, stdout, stderr) = common::run_example_script(dir.path(), &ex.join("demo.sh"), &[("DEMO_TIMEOUT", "120")], std::time::Duration::from_secs(600));
    assert!(ok, "demo.sh failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("swapped `cleaner` to"), "{stdout}");
    assert!(stdout.contains("rolled `cleaner` back to"), "{stdout}");
    assert!(stdout.contains("plugin `cleaner`: 1 swaps, 1 rollbacks, 0 automatic rollbacks, 0 refused"), "{stdout}");
    // Three runs of lines: cleaner, tagged v2, cleaner again.
    let runs: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("v1 (") || l.trim_start().starts_with("v2 (")).collect();
    assert_eq!(runs.len(), 3, "{stdout}");
    assert!(runs[0].contains("v1") && runs[1].contains("v2") && runs[2].contains("v1"), "{runs:?}");
    assert!(stdout.contains("(duplicates: 0)") && stdout.trim_end().ends_with("demo: ok (output in examples/hot-swap/out/clean.jsonl)"), "{stdout}");
    let lines = std::fs::read_to_string(ex.join("out/clean.jsonl")).unwrap();
    assert!(lines.lines().any(|l| l.starts_with("{\"tag\":\"v2\"")), "the new version's lines are in the output");
}
