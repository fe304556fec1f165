//! Plugins authored outside this repository, as a new user would: in an
//! empty temporary folder, `streamhost plugin new`, the language's own native
//! unit test, `streamhost plugin build`, and `streamhost plugin test
//! --sample` with its outputs checked. Nothing here reads the repository:
//! the folders get their SDK from the binary.
//!
//! Builds are slow on small machines, so the Rust plugins share one cargo
//! target directory (kept under cargo's test temp dir between runs: a cache,
//! not an input) and each test builds each plugin once. Run with
//! `--nocapture` to see how long each step took.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::{json, Value};

/// The `streamhost` binary, run from `cwd` (a folder outside the repository).
fn streamhost(cwd: &Path) -> Command {
    let mut cmd = common::streamhost();
    cmd.current_dir(cwd).env("STREAMHOST_LOG", "warn");
    cmd
}

/// Runs `cmd`, printing how long `what` took; returns its output.
fn timed(what: &str, cmd: &mut Command) -> Output {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    eprintln!("[plugin_authoring] {what}: {:.1} s", started.elapsed().as_secs_f64());
    out
}

fn text(out: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(what: &str, cmd: &mut Command) -> Output {
    let out = timed(what, cmd);
    assert!(out.status.success(), "{what} failed ({}):\n{}", out.status, text(&out));
    out
}

/// `streamhost plugin new NAME --lang L --world W` in `root`: the folder.
fn new_plugin(root: &Path, name: &str, lang: &str, world: &str) -> PathBuf {
    let out = ok(
        &format!("plugin new {name} --lang {lang} --world {world}"),
        streamhost(root).args(["plugin", "new", name, "--lang", lang, "--world", world]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("next steps") && stdout.contains("streamhost plugin test"), "{stdout}");
    let dir = root.join(name);
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    assert!(!cargo.contains("../"), "the crate must not point outside its folder:\n{cargo}");
    // Nothing in the folder names this repository: it builds anywhere.
    let repo = common::repo_root().canonicalize().unwrap();
    for file in files_under(&dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(repo.to_str().unwrap()), "{} names the repository", file.display());
    }
    dir
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The shared cargo target dir of the Rust plugins of these tests.
fn rust_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-authoring-target")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.env("CARGO_TARGET_DIR", rust_target_dir());
    cmd
}

/// `streamhost plugin build DIR`, with the Rust target dir shared.
fn build(dir: &Path) {
    let out = ok(
        &format!("plugin build {}", dir.file_name().unwrap().to_string_lossy()),
        streamhost(dir).args(["plugin", "build", "."]).env("CARGO_TARGET_DIR", rust_target_dir()),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("built"), "{}", text(&out));
}

/// `streamhost plugin test DIR --sample SAMPLE --json ...`: the exit status,
/// the per-input JSON lines and the summary.
fn trial(dir: &Path, sample: &str, extra: &[&str]) -> (Output, Vec<Value>, Value) {
    let mut cmd = streamhost(dir);
    cmd.args(["plugin", "test", ".", "--sample", sample, "--json"]).args(extra).env("CARGO_TARGET_DIR", rust_target_dir());
    let out = timed(&format!("plugin test {} --sample {sample}", dir.file_name().unwrap().to_string_lossy()), &mut cmd);
    let mut lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", text(&out))))
        .collect();
    // The last line is the summary (none when the run could not start).
    let summary = if lines.last().is_some_and(|l| l.get("summary").is_some()) { lines.pop().unwrap()["summary"].clone() } else { Value::Null };
    (out, lines, summary)
}

/// The payloads of each input's outputs (`None`: the input failed).
fn outputs(lines: &[Value]) -> Vec<Option<Vec<Value>>> {
    lines.iter().map(|l| l["outputs"].as_array().map(|o| o.iter().map(|e| e["value"].clone()).collect())).collect()
}

/// The checks every trial's cost must pass.
fn assert_costs(summary: &Value, inputs: u64) {
    assert_eq!(summary["inputs"], inputs, "{summary}");
    assert!(summary["calls"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["busy_ns"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["busy_ns_per_event"].as_u64().unwrap() > 0, "{summary}");
    let memory = summary["peak_memory_bytes"].as_u64().unwrap();
    assert!((64 << 10..=256 << 20).contains(&memory), "a wasm instance has at least a page and at most its limit: {summary}");
}

/// The aggregator every language's template implements, on its sample.jsonl.
fn assert_aggregator_sample(lines: &[Value], summary: &Value) {
    let value = json!({"key": null, "value": {"count": 2, "mean": 3.75}});
    assert_eq!(outputs(lines), vec![Some(vec![value.clone()]), Some(vec![value]), None], "{lines:?}");
    assert_eq!(lines[2]["error"], json!({"kind": "error", "message": "amount is not a number"}));
    assert_eq!((summary["errors"].as_u64(), summary["traps"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_costs(summary, 3);
}

/// The transform every language's template implements, on its sample.jsonl.
fn assert_transform_sample(name: &str, lines: &[Value], summary: &Value) {
    assert_eq!(
        outputs(lines),
        vec![Some(vec![json!({"user_id": "u1", "item_id": "i1", "processed_by": name})]), Some(vec![]), None],
        "{lines:?}"
    );
    assert_eq!(lines[2]["error"], json!({"kind": "error", "message": "expected a JSON object"}));
    assert_eq!((lines[0]["line"].as_u64(), lines[2]["line"].as_u64()), (Some(1), Some(3)));
    assert_eq!((summary["outputs"].as_u64(), summary["dropped"].as_u64()), (Some(1), Some(1)), "{summary}");
    assert_eq!((summary["errors"].as_u64(), summary["traps"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_costs(summary, 3);
}

#[test]
fn rust_plugins_from_an_empty_folder() {
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // A transform: native test, build, trial on its sample.
    let tagger = new_plugin(root.path(), "rs-tagger", "rust", "transform");
    ok("cargo test (rs-tagger)", cargo().current_dir(&tagger).args(["test", "--quiet"]));
    build(&tagger);
    let (out, lines, summary) = trial(&tagger, "sample.jsonl", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_transform_sample("rs-tagger", &lines, &summary);
    assert_eq!(summary["fuel"], Value::Null, "no fuel counted unless asked");
    // --fuel: instructions per event, the same on every run (a cost measure
    // free of timing noise).
    let fuel_of = || {
        let (out, lines, summary) = trial(&tagger, "sample.jsonl", &["--fuel"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_transform_sample("rs-tagger", &lines, &summary);
        summary["fuel"].as_u64().unwrap_or_else(|| panic!("{summary}"))
    };
    let fuel = fuel_of();
    assert!(fuel > 1000, "parsing and writing JSON takes thousands of instructions: {fuel}");
    assert_eq!(fuel_of(), fuel);

    // A joiner, sharing the target dir (the std for wasm is built once).
    let joiner = new_plugin(root.path(), "rs-joiner", "rust", "joiner");
    ok("cargo test (rs-joiner)", cargo().current_dir(&joiner).args(["test", "--quiet"]));
    build(&joiner);
    let (out, lines, summary) = trial(&joiner, "sample.jsonl", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        outputs(&lines),
        vec![
            Some(vec![json!({"request_id": "r1", "matches": {"clicks": 2}})]),
            Some(vec![json!({"request_id": "r2", "matches": {"clicks": 0}})]),
        ]
    );
    assert_costs(&summary, 2);
    // The step's inputs may be given, in another order, with one never matched.
    let (out, lines, _) = trial(&joiner, "sample.jsonl", &["--inputs", "views,clicks"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outputs(&lines)[0], Some(vec![json!({"request_id": "r1", "matches": {"views": 0, "clicks": 2}})]));

    // An aggregator: its sample folded in one group, each line showing the
    // group's final value (after a merge); the bad amount fails alone.
    let aggregator = new_plugin(root.path(), "rs-amounts", "rust", "aggregator");
    ok("cargo test (rs-amounts)", cargo().current_dir(&aggregator).args(["test", "--quiet"]));
    build(&aggregator);
    let (out, lines, summary) = trial(&aggregator, "sample.jsonl", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_aggregator_sample(&lines, &summary);

    // A plugin that traps: the transform panics on one record. `plugin test`
    // rebuilds it, isolates the record, names the trap and exits 1.
    let lib = tagger.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let patched = source.replacen(
        "    if record.get(\"is_bot\")",
        "    if record.contains_key(\"boom\") {\n        panic!(\"boom requested\");\n    }\n    if record.get(\"is_bot\")",
        1,
    );
    assert_ne!(patched, source);
    std::fs::write(&lib, patched).unwrap();
    std::fs::write(tagger.join("boom.jsonl"), "{\"n\":1}\n{\"boom\":true}\n{\"n\":3}\n").unwrap();
    let (out, lines, summary) = trial(&tagger, "boom.jsonl", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(outputs(&lines)[0], Some(vec![json!({"n": 1, "processed_by": "rs-tagger"})]));
    assert_eq!(outputs(&lines)[2], Some(vec![json!({"n": 3, "processed_by": "rs-tagger"})]));
    assert_eq!(lines[1]["error"]["kind"], "trap", "{lines:?}");
    let message = lines[1]["error"]["message"].as_str().unwrap();
    assert!(message.contains("unreachable") && message.contains("panic"), "{message}");
    // The SDK logs the panic's message through the host before the abort;
    // the trap quotes it.
    assert!(message.contains("it logged: plugin panicked at src/lib.rs:") && message.contains("boom requested"), "{message}");
    assert_eq!(summary["traps"], 1);
    assert!(summary["instance_rebuilds"].as_u64().unwrap() >= 1, "{summary}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: trap: ") && stderr.contains("unreachable"), "{stderr}");

    eprintln!("[plugin_authoring] rust total: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn python_plugins_from_an_empty_folder() {
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());

    let tagger = new_plugin(root.path(), "py-tagger", "python", "transform");
    let out = ok("python3 -m unittest (py-tagger)", Command::new(&python).current_dir(&tagger).args(["-m", "unittest", "-v"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Ran 2 tests"), "{}", text(&out));
    build(&tagger);
    let (out, lines, summary) = trial(&tagger, "sample.jsonl", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_transform_sample("py-tagger", &lines, &summary);

    // The text report, for people.
    let out = ok("plugin test (text)", streamhost(&tagger).args(["plugin", "test", ".", "--sample", "sample.jsonl"]));
    let report = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "py-tagger: transform, loaded in",
        "line 2: dropped",
        "line 3: error: expected a JSON object",
        "3 inputs in 1 batch: 1 output, 1 dropped, 1 error, 0 trapped",
        "cost per event: ",
        "peak memory ",
    ] {
        assert!(report.contains(expected), "{expected:?} missing from:\n{report}");
    }

    // The other worlds' templates pass their native tests too (their
    // components are built in the Rust and Go tests' languages).
    for world in ["udf", "joiner", "aggregator"] {
        let dir = new_plugin(root.path(), &format!("py-{world}"), "python", world);
        ok(&format!("python3 -m unittest (py-{world})"), Command::new(&python).current_dir(&dir).args(["-m", "unittest"]));
    }
    // The aggregator builds (no other language test builds a Python one)
    // and gives what the Rust template gives.
    let aggregator = root.path().join("py-aggregator");
    build(&aggregator);
    let (out, lines, summary) = trial(&aggregator, "sample.jsonl", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_aggregator_sample(&lines, &summary);

    // A sample that is not JSON is the user's to fix: located, exit 2.
    std::fs::write(tagger.join("bad.jsonl"), "{}\n{oops\n").unwrap();
    let out = timed("plugin test (bad sample)", streamhost(&tagger).args(["plugin", "test", ".", "--sample", "bad.jsonl"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sample line 2: not JSON"), "{}", text(&out));
    eprintln!("[plugin_authoring] python total: {:.1} s", started.elapsed().as_secs_f64());
}

/// `go` as the builder finds it: `$STREAMHOST_TOOLS/venv/bin` (scripts/setup.sh), else PATH.
fn go() -> PathBuf {
    let tools = std::env::var_os("STREAMHOST_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/streamhost/tools")));
    tools.map(|t| t.join("venv/bin/go")).filter(|p| p.is_file()).unwrap_or_else(|| "go".into())
}

#[test]
fn go_plugins_from_an_empty_folder() {
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let go_test = |dir: &Path| {
        let mut cmd = Command::new(go());
        // Offline, and with the user's toolchain: the SDK comes from the folder.
        cmd.current_dir(dir).args(["test", "./..."]).env("GOPROXY", "off").env("GOTOOLCHAIN", "local");
        cmd
    };

    let tagger = new_plugin(root.path(), "go-tagger", "go", "transform");
    ok("go test (go-tagger)", &mut go_test(&tagger));
    build(&tagger);
    let (out, lines, summary) = trial(&tagger, "sample.jsonl", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_transform_sample("go-tagger", &lines, &summary);

    // The folder, as it is, in a pipeline run from elsewhere.
    let pipeline = common::write_pipeline(
        root.path(),
        &json!({
            "plugins": {"go-tagger": {"path": "go-tagger", "world": "transform"}},
            "sources": {"raw": {"type": "file", "path": "go-tagger/sample.jsonl"}},
            "steps": {"tagged": {"type": "transform", "plugin": "go-tagger", "inputs": ["raw"]}},
            "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["tagged"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"}
        }),
    );
    let out = timed("streamhost run (go-tagger)", streamhost(root.path()).arg("run").arg(&pipeline));
    assert!(out.status.success(), "{}", text(&out));
    let got: Vec<Value> = common::lines(&root.path().join("out.jsonl")).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got, vec![json!({"user_id": "u1", "item_id": "i1", "processed_by": "go-tagger"})]);
    let dead = common::lines(&root.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("expected a JSON object"), "{dead:?}");

    let udf = new_plugin(root.path(), "go-ctr", "go", "udf");
    ok("go test (go-ctr)", &mut go_test(&udf));
    build(&udf);
    let (out, lines, summary) = trial(&udf, "sample.jsonl", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines.iter().map(|l| l["result"].clone()).collect::<Vec<_>>(), vec![json!(0.03), Value::Null, Value::Null]);
    assert_eq!(lines[1], json!({"line": 2, "result": null}));
    assert_eq!(lines[2]["error"]["kind"], "error");
    assert!(lines[2]["error"]["message"].as_str().unwrap().contains("negative count: clicks -1, impressions 5"), "{lines:?}");
    assert_eq!((summary["function"].as_str(), summary["errors"].as_u64()), (Some("ctr"), Some(1)), "{summary}");
    assert_costs(&summary, 3);
    let (out, _, _) = trial(&udf, "sample.jsonl", &["--function", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no function \"nope\"; it exports: ctr"), "{}", text(&out));

    let joiner = new_plugin(root.path(), "go-joiner", "go", "joiner");
    ok("go test (go-joiner)", &mut go_test(&joiner));
    build(&joiner);
    let (out, lines, summary) = trial(&joiner, "sample.jsonl", &["--inputs", "views,clicks"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        outputs(&lines),
        vec![
            Some(vec![json!({"request_id": "r1", "matches": {"views": 0, "clicks": 2}})]),
            Some(vec![json!({"request_id": "r2", "matches": {"views": 0, "clicks": 0}})]),
        ]
    );
    assert_costs(&summary, 2);

    // A build refreshes the vendored SDK from the binary (here: undoes an edit).
    let doc = udf.join(".streamhost/sdk/go/doc.go");
    let original = std::fs::read_to_string(&doc).unwrap();
    std::fs::write(&doc, "package sdk // edited\n").unwrap();
    build(&udf);
    assert_eq!(std::fs::read_to_string(&doc).unwrap(), original);
    eprintln!("[plugin_authoring] go total: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn bad_names_and_occupied_folders_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], expected: &str| {
        let out = streamhost(root.path()).args(["plugin", "new"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    refused(&["My Plugin", "--lang", "rust"], "invalid plugin name \"My Plugin\": 'M' is not allowed");
    refused(&["9lives", "--lang", "python"], "must start with a lowercase letter");
    refused(&["streamhost", "--lang", "go"], "reserved");
    refused(&["amounts", "--lang", "go", "--world", "aggregator"], "Go plugins cannot implement the aggregator world yet");
    std::fs::create_dir(root.path().join("taken")).unwrap();
    std::fs::write(root.path().join("taken/notes.txt"), "mine").unwrap();
    refused(&["taken", "--lang", "rust"], "exists and is not empty");
    assert_eq!(std::fs::read_dir(root.path().join("taken")).unwrap().count(), 1, "nothing written into it");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "no folder made for a refused name");
}
