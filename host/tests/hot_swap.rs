//! Hot swap through the admin API of a running pipeline, with real plugins
//! built from source: a generator at a high rate feeds a transform whose
//! plugin is swapped mid-run; every input must come out exactly once (as
//! output or dead letter), and the output after the swap must show the new
//! version's logic.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::build;
use serde_json::{json, Value};
use streamhost::config::{load_pipeline, WorldName};
use streamhost::runtime::{build_pipeline, BuildOptions, NodeStats, RunSummary};
use streamhost::swap::{AdminClient, ClientError, PluginView, SwapOptions, SwapError, Swapper};

/// A pipeline: a `join-impression` generator (unique `request_id` per
/// event) → transform `t` with plugin `h` → file sink, dead letters to a
/// file, admin API on an ephemeral port. One worker, so the tests can check
/// the order of versions in the output (`settings` may say otherwise).
fn pipeline(dir: &Path, plugin: &Path, config: Value, count: u64, rate: u64, settings: Value) -> PathBuf {
    let mut all_settings = json!({
        "batch_size": 256,
        "batch_linger_ms": 5,
        "parallelism": 1,
        "admin": { "bind": "127.0.0.1:0" },
    });
    for (k, v) in settings.as_object().cloned().unwrap_or_default() {
        all_settings[k] = v;
    }
    let p = json!({
        "plugins": { "h": { "path": plugin, "config": config, "limits": { "batch_timeout_ms": 500 } } },
        "sources": { "gen": { "type": "generator", "shape": "join-impression", "count": count, "rate": rate } },
        "steps": { "t": { "type": "transform", "plugin": "h", "inputs": ["gen"] } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["t"] } },
        "dead_letter": { "type": "file", "path": "dead.jsonl" },
        "settings": all_settings,
    });
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&p).unwrap()).unwrap();
    path
}

/// A pipeline running on its own thread, with a client of its admin API.
struct Running {
    client: AdminClient,
    run: std::thread::JoinHandle<RunSummary>,
    addr_file: PathBuf,
}

fn start(path: &Path, token: Option<&str>) -> Running {
    start_watching(path, token, &[]).0
}

/// [`start`], also returning the live counters of the nodes `watch` and
/// the pipeline's swapper (to read each version's stats after the run).
fn start_watching(path: &Path, token: Option<&str>, watch: &[&str]) -> (Running, Vec<Arc<NodeStats>>, Arc<Swapper>) {
    let p = load_pipeline(path).unwrap_or_else(|e| panic!("{e}"));
    let built = build_pipeline(&p, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let addr = built.admin_addr().expect("the admin API is configured");
    let addr_file = path.parent().unwrap().join("admin.addr");
    assert_eq!(std::fs::read_to_string(&addr_file).unwrap().trim(), addr.to_string(), "the bound address is in admin.addr");
    let nodes = watch.iter().map(|n| built.node_stats(n).unwrap_or_else(|| panic!("no node {n}"))).collect();
    let swapper = built.swapper().clone();
    let run = std::thread::spawn(move || built.run().unwrap());
    (Running { client: AdminClient::new(&addr.to_string(), token.map(String::from)), run, addr_file }, nodes, swapper)
}

impl Running {
    fn plugin(&self, name: &str) -> PluginView {
        let list = self.client.list().unwrap();
        list.plugins.into_iter().find(|p| p.name == name).unwrap()
    }

    /// Waits until `check` holds for plugin `name` (or fails after 60 s).
    fn wait_for(&self, name: &str, what: &str, check: impl Fn(&PluginView) -> bool) -> PluginView {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.plugin(name);
            if check(&view) {
                return view;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}: {view:#?}");
            assert!(!self.run.is_finished(), "the pipeline ended before {what}: {view:#?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> RunSummary {
        let summary = self.run.join().unwrap();
        assert!(!self.addr_file.exists(), "admin.addr is removed when the pipeline ends");
        summary
    }
}

/// Every generated index `0..count` exactly once in the output or the dead
/// letters; returns the outputs' `tag` (or "-") in output order and the
/// dead letters' kinds.
fn account(dir: &Path, count: u64) -> (Vec<String>, Vec<String>) {
    let read = |name: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let index = |v: &Value| -> u64 {
        let id = v["request_id"].as_str().unwrap_or_else(|| panic!("no request_id in {v}"));
        id.trim_start_matches('q').parse().unwrap()
    };
    let mut seen = BTreeMap::new();
    let mut tags = Vec::new();
    for v in read("out.jsonl") {
        *seen.entry(index(&v)).or_insert(0) += 1;
        tags.push(v["tag"].as_str().unwrap_or("-").to_string());
    }
    let mut kinds = Vec::new();
    for d in read("dead.jsonl") {
        let value: Value = serde_json::from_str(d["value"].as_str().unwrap()).unwrap();
        *seen.entry(index(&value)).or_insert(0) += 1;
        kinds.push(d["kind"].as_str().unwrap().to_string());
    }
    let dup: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(dup.is_empty(), "events seen more than once: {dup:?}");
    let missing: Vec<u64> = (0..count).filter(|i| !seen.contains_key(i)).take(5).collect();
    assert!(missing.is_empty(), "events lost: {missing:?} (of {count}; {} accounted for)", seen.len());
    assert_eq!(seen.len() as u64, count);
    (tags, kinds)
}

/// Runs of equal tags: `["v1", "v2", "v1"]` for v1…v1 v2…v2 v1…v1.
fn runs(tags: &[String]) -> Vec<&str> {
    let mut runs: Vec<&str> = Vec::new();
    for t in tags {
        if runs.last() != Some(&t.as_str()) {
            runs.push(t);
        }
    }
    runs
}

fn hostile() -> PathBuf {
    build("tests/plugins/hostile", WorldName::Transform)
}

#[test]
fn a_swap_under_load_loses_and_duplicates_nothing_and_a_rollback_puts_the_old_logic_back() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = hostile();
    let count = 120_000;
    let path = pipeline(dir.path(), &wasm, json!({"tag": "v1"}), count, 60_000, json!({}));
    let running = start(&path, None);

    let before = running.wait_for("h", "v1 to process events", |p| p.current.stats.events_in >= 10_000);
    assert_eq!((before.world.as_str(), before.generation, before.previous.is_none()), ("transform", 0, true));
    assert_eq!(before.current.config, json!({"tag": "v1"}));
    assert!(before.current.stats.first_call_unix_us.is_some());

    // Same component, new config: a new version (own stats, own instance).
    let bytes = std::fs::read(&wasm).unwrap();
    let swapped = running.client.swap("h", &bytes, Some(&json!({"tag": "v2"})), false).unwrap();
    assert_eq!(swapped.generation, 1);
    assert_eq!(swapped.previous, before.current.hash);
    let after = running.wait_for("h", "v2 to process events", |p| p.current.stats.events_in >= 10_000);
    assert_eq!(after.current.config, json!({"tag": "v2"}));
    let first_call = after.current.stats.first_call_unix_us.unwrap();
    assert!(first_call >= swapped.published_unix_us, "v2's first call comes after its publication");
    assert_eq!(after.previous.as_ref().unwrap().config, json!({"tag": "v1"}));
    // Past `window_events` (1000 by default) within the failure rate: promoted.
    let actions: Vec<&str> = after.history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(actions, ["swap", "promoted"]);
    assert!(!after.on_probation);

    let rolled = running.client.rollback("h").unwrap();
    assert_eq!(rolled.generation, 2);
    let back = running.plugin("h");
    assert_eq!(back.current.config, json!({"tag": "v1"}), "the rollback put v1 back");
    assert_eq!(back.previous.as_ref().unwrap().config, json!({"tag": "v2"}), "a second rollback would return to v2");

    let summary = running.finish();
    let (tags, dead) = account(dir.path(), count);
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(runs(&tags), ["v1", "v2", "v1"], "switches happen between batches, in order");
    let p = summary.plugin("h").unwrap();
    assert_eq!((p.swaps, p.rollbacks, p.auto_rollbacks), (1, 1, 0));
}

#[test]
fn a_swap_and_a_rollback_reach_every_worker() {
    // Two workers, each with its own instance: once a swap is published, the
    // old version stops getting input in both (each switches between its
    // own batches); the output order across workers is theirs, so only what
    // each version saw is checked, and that nothing is lost.
    let dir = tempfile::tempdir().unwrap();
    let wasm = hostile();
    let count = 90_000;
    let path = pipeline(dir.path(), &wasm, json!({"tag": "v1"}), count, 45_000, json!({"parallelism": 2}));
    let running = start(&path, None);
    running.wait_for("h", "v1 to process events", |p| p.current.stats.events_in >= 5_000);
    let bytes = std::fs::read(&wasm).unwrap();
    running.client.swap("h", &bytes, Some(&json!({"tag": "v2"})), false).unwrap();
    let after = running.wait_for("h", "v2 to process events", |p| p.current.stats.events_in >= 5_000);
    let v1_then = after.previous.as_ref().unwrap().stats.events_in;
    std::thread::sleep(Duration::from_millis(300));
    let later = running.plugin("h");
    assert_eq!(later.previous.as_ref().unwrap().stats.events_in, v1_then, "no worker still runs v1");
    assert!(later.current.stats.events_in > after.current.stats.events_in, "v2 goes on in the workers");
    running.client.rollback("h").unwrap();
    let back = running.wait_for("h", "v1 to process events again", |p| p.current.stats.events_in >= 1_000);
    let v2_then = back.previous.as_ref().unwrap().stats.events_in;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(running.plugin("h").previous.as_ref().unwrap().stats.events_in, v2_then, "no worker still runs v2");
    running.finish();
    let (tags, dead) = account(dir.path(), count);
    assert!(dead.is_empty(), "{dead:?}");
    let v2 = tags.iter().filter(|t| *t == "v2").count() as u64;
    assert_eq!(v2, v2_then, "every event v2 took is in the output, tagged by it");
}

#[test]
fn a_crashing_version_is_rolled_back_automatically_and_its_failures_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = hostile();
    let count = 60_000;
    // Two workers: the failures that trigger the rollback are counted over both.
    let rule = json!({"parallelism": 2, "hot_swap": {"rollback": {"window_events": 2000, "min_events": 100, "max_failure_rate": 0.5}}});
    let path = pipeline(dir.path(), &wasm, json!({"tag": "v1"}), count, 30_000, rule);
    let running = start(&path, None);
    running.wait_for("h", "v1 to process events", |p| p.current.stats.events_in >= 5_000);

    let bytes = std::fs::read(&wasm).unwrap();
    running.client.swap("h", &bytes, Some(&json!({"always": "panic", "tag": "bad"})), false).unwrap();
    let view = running.wait_for("h", "the automatic rollback", |p| p.auto_rollbacks == 1);
    assert_eq!(view.current.config, json!({"tag": "v1"}));
    assert!(!view.on_probation);
    let bad = view.previous.as_ref().unwrap();
    assert!(bad.stats.traps >= 100, "{:?}", bad.stats);
    let entry = view.history.iter().find(|h| h.action == "auto-rollback").unwrap();
    assert!(entry.reason.as_deref().unwrap().contains("failure rate"), "{entry:?}");
    // v1 goes on after the rollback.
    let resumed = view.current.stats.events_in;
    running.wait_for("h", "v1 to resume", |p| p.current.stats.events_in > resumed + 1_000);

    let summary = running.finish();
    let (tags, dead) = account(dir.path(), count);
    assert!(!dead.is_empty() && dead.iter().all(|k| k == "plugin-trap"), "{:?}", &dead[..dead.len().min(5)]);
    assert_eq!(runs(&tags), ["v1"], "the crashing version produced nothing");
    assert_eq!(summary.plugin("h").unwrap().auto_rollbacks, 1);
}

#[test]
fn incompatible_or_failing_versions_are_refused_and_the_old_one_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = hostile();
    let count = 40_000;
    let settings = json!({"admin": {"bind": "127.0.0.1:0", "token": "s3cret"}, "hot_swap": {"canary": {"sample_every_ms": 20}}});
    let path = pipeline(dir.path(), &wasm, json!({"tag": "v1"}), count, 10_000, settings);
    let running = start(&path, Some("s3cret"));
    running.wait_for("h", "v1 to process events", |p| p.current.stats.events_in >= 2_000);
    let status = |r: Result<_, ClientError>| match r {
        Err(ClientError::Api { status, message }) => (status, message),
        Ok(_) => panic!("accepted"),
        Err(e) => panic!("{e}"),
    };

    let anonymous = AdminClient::new(&std::fs::read_to_string(&running.addr_file).unwrap(), None);
    let (code, message) = status(anonymous.list().map(|_| ()));
    assert_eq!(code, 401, "{message}");

    let udf = build("plugins/url-udf", WorldName::Udf);
    let (code, message) = status(running.client.swap("h", &std::fs::read(&udf).unwrap(), None, false).map(|_| ()));
    assert_eq!(code, 400);
    assert!(message.contains("world transform") && message.contains("implements udf"), "{message}");

    let (code, message) = status(running.client.swap("h", b"not wasm", None, false).map(|_| ()));
    assert_eq!(code, 400);
    assert!(message.contains("not a WebAssembly component"), "{message}");

    let bytes = std::fs::read(&wasm).unwrap();
    let (code, message) = status(running.client.swap("nope", &bytes, None, false).map(|_| ()));
    assert_eq!(code, 404, "{message}");
    let (code, message) = status(running.client.rollback("h").map(|_| ()));
    assert_eq!(code, 409, "{message}");

    // An init that refuses its config fails at load: refused.
    let (code, message) = status(running.client.swap("h", &bytes, Some(&json!({"init": "error"})), false).map(|_| ()));
    assert_eq!(code, 400);
    assert!(message.contains("init refused on request"), "{message}");

    // The canary runs the candidate on recent input: one that errors on
    // everything is refused; a sound one passes.
    let (code, message) = status(running.client.swap("h", &bytes, Some(&json!({"always": "error"})), true).map(|_| ()));
    assert_eq!(code, 400);
    assert!(message.contains("canary") && message.contains("error on request"), "{message}");
    let view = running.plugin("h");
    assert_eq!((view.generation, view.refused), (0, 4), "{:#?}", view.history);
    assert!(view.current.stats.events_in > 0);

    let passed = running.client.swap("h", &bytes, Some(&json!({"tag": "v2"})), true).unwrap();
    let canary = passed.canary.unwrap();
    assert!(canary.events > 0 && canary.failures == 0, "{canary:?}");

    let summary = running.finish();
    let (tags, dead) = account(dir.path(), count);
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(runs(&tags), ["v1", "v2"]);
    assert_eq!(summary.plugin("h").unwrap().refused, 4);
}

#[test]
fn a_rust_plugin_is_replaced_by_a_python_one_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let rust = hostile();
    let python = build("tests/plugins/hostile/python", WorldName::Transform);
    // Compile it into the (shared, on-disk) artifact cache first, as a
    // previous swap or run would have: the swap itself then loads the
    // precompiled artifact instead of compiling CPython for a minute while
    // the short test pipeline runs out.
    let limits = streamhost::config::PluginLimits::default();
    common::shared_runtime().load("warm-up", &python, None, &limits, &Default::default(), &Value::Null).unwrap();
    let count = 40_000;
    let path = pipeline(dir.path(), &rust, json!({"tag": "rust"}), count, 20_000, json!({}));
    let running = start(&path, None);
    running.wait_for("h", "the Rust version to process events", |p| p.current.stats.events_in >= 2_000);

    let swapped = running.client.swap("h", &std::fs::read(&python).unwrap(), None, false).unwrap();
    assert_ne!(swapped.version, swapped.previous);
    let view = running.wait_for("h", "the Python version to process events", |p| p.current.stats.events_in >= 1_000);
    assert_eq!(view.current.stats.traps + view.current.stats.errors, 0);

    running.finish();
    let (tags, dead) = account(dir.path(), count);
    assert!(dead.is_empty(), "{dead:?}");
    // The Python hostile echoes without a tag.
    assert_eq!(runs(&tags), ["rust", "-"]);
}

#[test]
fn a_udf_version_must_keep_the_functions_the_pipeline_calls() {
    let dir = tempfile::tempdir().unwrap();
    let url = build("plugins/url-udf", WorldName::Udf);
    let p = json!({
        "plugins": { "u": { "path": url } },
        "sources": { "gen": { "type": "generator", "shape": "join-impression", "count": 10 } },
        "steps": { "d": { "type": "udf", "plugin": "u", "function": "bucket", "args": ["$.user_id", 10], "output": "b", "inputs": ["gen"] } },
        "sinks": { "out": { "type": "null", "inputs": ["d"] } }
    });
    let path = dir.path().join("pipeline.json");
    std::fs::write(&path, p.to_string()).unwrap();
    let built = build_pipeline(&load_pipeline(&path).unwrap(), BuildOptions::default()).unwrap();
    let swapper = built.swapper().clone();

    // The same UDF again: compatible.
    swapper.swap_file("u", &url, SwapOptions::default()).unwrap();
    // A transform is not a UDF.
    let err = swapper.swap_file("u", &hostile(), SwapOptions::default()).unwrap_err();
    assert!(matches!(&err, SwapError::Refused { reason, .. } if reason.contains("implements transform")), "{err}");
    assert_eq!(err.http_status(), 400);
    // The Go UDF has no `bucket`.
    let go = build("plugins/ctr-udf-go", WorldName::Udf);
    let err = swapper.swap_file("u", &go, SwapOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("function `bucket` is used by the pipeline but the new version does not export it"), "{message}");
    assert!(message.contains("hash_bucket"), "the message lists what it exports: {message}");
    let slot = swapper.registry().slot("u").unwrap();
    assert_eq!(slot.generation(), 1);
    assert_eq!(slot.state().counts.refused, 2);

    // The run uses the version swapped in (the runner follows the slot).
    let summary = built.run().unwrap();
    assert_eq!(summary.node("d").unwrap().events_out, 10);
}

#[test]
fn a_window_join_takes_its_joiner_from_the_swapped_version() {
    // (The swap of a joiner in a running join, with its state, is
    // `a_joiner_swap_in_a_running_window_join_keeps_the_join_state`; this
    // checks the joiner runner follows its slot.)
    let dir = tempfile::tempdir().unwrap();
    let joiner = build("plugins/sample-joiner-rust", WorldName::Joiner);
    std::fs::write(dir.path().join("imps.jsonl"), "{\"ts\":1000,\"request_id\":\"r1\",\"user_id\":\"u1\",\"item_id\":\"i1\"}\n").unwrap();
    std::fs::write(dir.path().join("clicks.jsonl"), "{\"ts\":1500,\"request_id\":\"r1\",\"dwell_ms\":100}\n").unwrap();
    let p = json!({
        "plugins": { "j": { "path": joiner } },
        "sources": {
            "imps": { "type": "file", "path": "imps.jsonl", "timestamp_field": "ts" },
            "clicks": { "type": "file", "path": "clicks.jsonl", "timestamp_field": "ts" }
        },
        "steps": { "s": { "type": "window-join", "inputs": ["imps", "clicks"],
            "keys": { "imps": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": 5000 }, "mode": "left",
            "joiner": { "type": "plugin", "plugin": "j" } } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["s"] } },
        "settings": { "state": { "backend": "memory" } }
    });
    let path = dir.path().join("pipeline.json");
    std::fs::write(&path, p.to_string()).unwrap();
    let built = build_pipeline(&load_pipeline(&path).unwrap(), BuildOptions::default()).unwrap();
    let swapper = built.swapper().clone();
    let first = swapper.registry().slot("j").unwrap().current();
    swapper.swap_file("j", &joiner, SwapOptions::default()).unwrap();
    let summary = built.run().unwrap();
    assert_eq!(summary.node("s").unwrap().events_out, 1);
    let slot = swapper.registry().slot("j").unwrap();
    assert_eq!(slot.current().plugin.stats().snapshot().events_in, 1, "the new version joined");
    assert_eq!(first.plugin.stats().snapshot().events_in, 0, "the first version was never called");
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert!(out.contains("\"label\":1"), "{out}");
}

/// Impressions of the join test, 10 ms of event time apart.
const JOIN_IMPRESSIONS: u64 = 3_000;
const JOIN_IMP_STEP_MS: f64 = 10.0;
/// Clicks: 20 per 150 impressions over the same event time, each 0-4 s
/// after the impression it refers to, so always inside its 5 s window.
const JOIN_CLICKS: u64 = JOIN_IMPRESSIONS * 20 / 150;
const JOIN_CLK_STEP_MS: f64 = JOIN_IMP_STEP_MS * 7.5;
const JOIN_WINDOW_MS: i64 = 5_000;
const JOIN_MAX_DELAY_MS: u64 = 4_000;
const CLK_SEED: u64 = 2;

/// `(clicks, dwell_ms)` each impression must come out with: the
/// `join-click` generator's records regenerated from its seed and indices
/// (the same function the source calls), each click given to the impression
/// its `request_id` names. Also returns the impression each click refers to.
fn expected_matches() -> (Vec<(u64, i64)>, Vec<Option<usize>>) {
    use rand::SeedableRng;
    use streamhost::config::{GeneratorEventTime, GeneratorShape, JoinImpressions};
    use streamhost::source::{event_time_at, write_join_record, ClickTargets, BASE_TIME_MS};
    let grid = GeneratorEventTime { start_ms: BASE_TIME_MS, step_ms: JOIN_CLK_STEP_MS };
    let imps = JoinImpressions {
        start_ms: BASE_TIME_MS,
        step_ms: JOIN_IMP_STEP_MS,
        count: Some(JOIN_IMPRESSIONS),
        max_delay_ms: JOIN_MAX_DELAY_MS,
    };
    let targets = ClickTargets::new(Some(&grid), Some(&imps));
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(CLK_SEED);
    let mut want = vec![(0u64, 0i64); JOIN_IMPRESSIONS as usize];
    let mut refers = Vec::new();
    for i in 0..JOIN_CLICKS {
        let mut raw = Vec::new();
        let tc = event_time_at(Some(&grid), i);
        write_join_record(&mut raw, GeneratorShape::JoinClick, &mut rng, CLK_SEED, i, tc, &targets);
        let click: Value = serde_json::from_slice(&raw).unwrap();
        let j = click["request_id"].as_str().unwrap().strip_prefix('q').map(|d| d.parse::<usize>().unwrap());
        if let Some(j) = j {
            assert!(event_time_at(Some(&GeneratorEventTime { start_ms: BASE_TIME_MS, step_ms: JOIN_IMP_STEP_MS }), j as u64) + JOIN_WINDOW_MS >= tc);
            want[j].0 += 1;
            want[j].1 += click["dwell_ms"].as_i64().unwrap();
        }
        refers.push(j);
    }
    (want, refers)
}

#[test]
fn a_joiner_swap_in_a_running_window_join_keeps_the_join_state() {
    // impressions (fast) ─┐
    //                     ├─ window-join (left, on-window-end, joiner plugin `j`) ─ file
    // clicks (slow) ──────┘
    // The clicks' watermark holds the join: impressions wait in its state
    // until the clicks pass their window's end, about 3 s for the last ones.
    // Version 1 of the sample joiner copies `page`, version 2 `device`.
    let dir = tempfile::tempdir().unwrap();
    let joiner = build("plugins/sample-joiner-rust", WorldName::Joiner);
    let v1 = json!({"features": ["ts", "page"]});
    let v2 = json!({"features": ["ts", "device"]});
    let base = streamhost::source::BASE_TIME_MS;
    let p = json!({
        "plugins": { "j": { "path": joiner, "config": v1 } },
        "sources": {
            "impressions": { "type": "generator", "shape": "join-impression", "seed": 1, "count": JOIN_IMPRESSIONS,
                "rate": 10_000, "event_time": { "start_ms": base, "step_ms": JOIN_IMP_STEP_MS }, "timestamp_field": "ts" },
            "clicks": { "type": "generator", "shape": "join-click", "seed": CLK_SEED, "count": JOIN_CLICKS, "rate": 100,
                "event_time": { "start_ms": base, "step_ms": JOIN_CLK_STEP_MS },
                "impressions": { "start_ms": base, "step_ms": JOIN_IMP_STEP_MS, "count": JOIN_IMPRESSIONS, "max_delay_ms": JOIN_MAX_DELAY_MS },
                "timestamp_field": "ts" }
        },
        "steps": { "join": { "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": JOIN_WINDOW_MS }, "mode": "left", "emit": "on-window-end",
            "joiner": { "type": "plugin", "plugin": "j" } } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["join"] } },
        "dead_letter": { "type": "file", "path": "dead.jsonl" },
        "settings": { "batch_size": 256, "batch_linger_ms": 5, "parallelism": 1, "state": { "backend": "memory" }, "admin": {} }
    });
    let path = dir.path().join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&p).unwrap()).unwrap();
    let (running, nodes, swapper) = start_watching(&path, None, &["impressions", "clicks", "out"]);
    let [imps, clicks, out] = [&nodes[0], &nodes[1], &nodes[2]];

    // Swap once every impression is in the join and version 1 has emitted
    // some: the rest are in the join's state, with the clicks so far.
    let until = Instant::now() + Duration::from_secs(60);
    while imps.events_out() < JOIN_IMPRESSIONS || out.events_in() < 50 {
        assert!(Instant::now() < until && !running.run.is_finished(), "the join never got going: {:#?}", running.plugin("j"));
        std::thread::sleep(Duration::from_millis(2));
    }
    // Read before the request: lower bounds of what the join had before
    // the new version was published.
    let out_before = out.events_in() as usize;
    let clicks_before = clicks.events_out() as usize;
    let swapped = running.client.swap("j", &std::fs::read(&joiner).unwrap(), Some(&v2), false).unwrap();
    assert_eq!(swapped.generation, 1);
    let view = running.plugin("j");
    assert_eq!((view.world.as_str(), view.current.config.clone()), ("joiner", v2.clone()));
    let summary = running.finish();

    // Every impression exactly once (no dead letters here: every one has its ids).
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default();
    assert!(dead.is_empty(), "{dead}");
    let outputs: Vec<Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let index = |v: &Value| v["request_id"].as_str().unwrap().trim_start_matches('q').parse::<usize>().unwrap();
    let order: Vec<usize> = outputs.iter().map(index).collect();
    assert_eq!(order, (0..JOIN_IMPRESSIONS as usize).collect::<Vec<_>>(), "each impression once, in order of window end");

    // Which version made each output: v1 copies `page`, v2 `device`.
    let version = |v: &Value| match (v.get("page").is_some(), v.get("device").is_some()) {
        (true, false) => "v1",
        (false, true) => "v2",
        _ => panic!("made by neither version: {v}"),
    };
    let tags: Vec<String> = outputs.iter().map(|v| version(v).to_string()).collect();
    assert_eq!(runs(&tags), ["v1", "v2"], "v1 up to the swap, v2 after it");
    assert!(tags[..out_before].iter().all(|t| t == "v1"), "the {out_before} outputs written before the swap are v1's");
    let first_v2 = tags.iter().position(|t| t == "v2").unwrap();

    // State kept: every impression carries exactly the clicks the generator
    // sent for it, including those fired by v2 from state built before the
    // swap (all impressions had arrived), with clicks that arrived before it.
    let (want, refers) = expected_matches();
    for (j, v) in outputs.iter().enumerate() {
        let got = (v["clicks"].as_u64().unwrap(), v["dwell_ms"].as_i64().unwrap());
        assert_eq!(got, want[j], "impression {j} ({}): (clicks, dwell_ms)", tags[j]);
        assert_eq!(v["label"].as_u64().unwrap(), u64::from(want[j].0 > 0));
    }
    let carried = refers[..clicks_before].iter().flatten().filter(|&&j| j >= first_v2).count();
    let v2_with_clicks = (first_v2..outputs.len()).filter(|&j| want[j].0 > 0).count();
    assert!(
        carried > 0 && v2_with_clicks > 100,
        "the swap came too late to test anything: {first_v2} impressions fired before it, {carried} clicks from \
         before it matched later ones"
    );

    // Each version's own counters add up to the join's.
    let slot = swapper.registry().slot("j").unwrap();
    let (now, before) = (slot.current().plugin.stats().snapshot(), slot.previous().unwrap().plugin.stats().snapshot());
    assert_eq!((before.events_in, before.events_out), (first_v2 as u64, first_v2 as u64));
    assert_eq!(now.events_in, JOIN_IMPRESSIONS - first_v2 as u64);
    assert_eq!(now.errors + now.traps + before.errors + before.traps, 0);
    assert_eq!(summary.node("join").unwrap().events_out, JOIN_IMPRESSIONS);
    assert_eq!(summary.plugin("j").unwrap().swaps, 1);
}
