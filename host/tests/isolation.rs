//! Isolation of failed batches within a budget, and the bounds on compiled
//! components, the artifact cache and the hot-swap uploads, with the hostile
//! plugin built from source (`tests/plugins/hostile`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::json;
use streamhost::config::{HotSwapSettings, PluginGrants, PluginLimits, WorldName};
use streamhost::event::Event;
use streamhost::plugin::{
    failed_budgets, FailureKind, LoadedPlugin, Outcome, PluginRegistry, PluginRuntime, RuntimeOptions, SampleSettings,
};
use streamhost::swap::{SwapOptions, Swapper};

fn hostile_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| common::build("tests/plugins/hostile", WorldName::Transform))
}

fn load(limits: &PluginLimits, config: serde_json::Value) -> Arc<LoadedPlugin> {
    common::shared_runtime()
        .load("hostile", hostile_wasm(), Some(WorldName::Transform), limits, &PluginGrants::default(), &config)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn event(what: &str, i: usize) -> Event {
    Event::from_value(json!({"do": what, "i": i}).to_string().into_bytes(), 1_700_000_000_000 + i as i64)
}

/// 10,000 events through a plugin that loops past its budget on every
/// record: each batch costs its own call and 3 probes, then the rest is
/// failed as not isolated (instead of 1,000 timeouts per batch).
#[test]
fn a_plugin_timing_out_on_every_record_costs_four_calls_per_batch() {
    let limits = PluginLimits { batch_timeout_ms: 50, ..PluginLimits::default() };
    let plugin = load(&limits, json!({"always": "loop"}));
    let mut runner = plugin.transform().unwrap();
    let started = std::time::Instant::now();
    for b in 0..10 {
        let batch: Vec<Event> = (0..1000).map(|i| event("ok", b * 1000 + i)).collect();
        let outcomes = runner.process(&batch);
        assert_eq!(outcomes.len(), 1000);
        for (i, outcome) in outcomes.iter().enumerate() {
            let Outcome::Failed(f) = outcome else { panic!("record {i} came out: {outcome:?}") };
            assert_eq!(f.kind, FailureKind::Timeout, "record {i}: {f}");
            if [0, 500, 999].contains(&i) {
                assert_eq!(f.message, "the call ran past its time budget of 50 ms", "probe {i}");
            } else {
                assert!(
                    f.message.starts_with("not isolated: the plugin failed every input tried (3 of 3) and the whole batch"),
                    "record {i}: {f}"
                );
            }
        }
    }
    let stats = plugin.stats().snapshot();
    assert_eq!(stats.calls, 40, "per batch: the batch call and 3 probes");
    assert_eq!(stats.retried_batches, 10);
    assert_eq!(stats.not_isolated, 9970);
    assert_eq!((stats.events_in, stats.events_out, stats.timeouts, stats.traps), (10_000, 0, 10_000, 10_000));
    eprintln!("10 batches of 1000 records timing out: {:?}", started.elapsed());
    // A guard against a hang, far above the 40 budgets (2 s) spent.
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
}

/// A few culprits among good records: bisection fails exactly them, in
/// O(k log n) calls, and the good ones come out unchanged.
#[test]
fn bisection_fails_exactly_the_culprits_in_few_calls() {
    let limits = PluginLimits { batch_timeout_ms: 100, ..PluginLimits::default() };
    let plugin = load(&limits, serde_json::Value::Null);
    let mut runner = plugin.transform().unwrap();
    let culprits = [(17, "panic"), (250, "loop"), (400, "panic"), (401, "error"), (733, "panic"), (998, "panic")];
    let n = 1000;
    let batch: Vec<Event> = (0..n)
        .map(|i| event(culprits.iter().find(|c| c.0 == i).map_or("ok", |c| c.1), i))
        .collect();
    let outcomes = runner.process(&batch);
    for (i, outcome) in outcomes.iter().enumerate() {
        let want = match culprits.iter().find(|c| c.0 == i).map(|c| c.1) {
            Some("panic") => Some(FailureKind::Trap),
            Some("loop") => Some(FailureKind::Timeout),
            Some(_) => Some(FailureKind::Error),
            None => None,
        };
        match outcome {
            Outcome::Ok(out) => {
                assert_eq!(want, None, "record {i} came out");
                assert_eq!(out, &vec![batch[i].clone()], "record {i} echoed");
            }
            Outcome::Failed(f) => assert_eq!(Some(f.kind), want, "record {i}: {f}"),
        }
    }
    let stats = plugin.stats().snapshot();
    // The error is an answer, not a failed call: 5 culprits fail calls.
    let k = 5;
    let depth = (n as u64).next_power_of_two().trailing_zeros() as u64;
    eprintln!("{} calls to isolate {k} culprits among {n} records", stats.calls);
    assert!(stats.calls <= 1 + 3 + 2 * k * depth, "{} calls", stats.calls);
    assert_eq!(stats.not_isolated, 0);
    assert_eq!(stats.retried_batches, 1);
    assert_eq!((stats.events_out, stats.traps, stats.timeouts, stats.errors), (n as u64 - 6, 5, 1, 1));
    assert_eq!(failed_budgets(n), 24);
}

/// `bytes` with a custom section appended: the same plugin, another content
/// hash (a new version for the runtime and the swapper).
fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"streamhost-test-variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128, "one-byte LEB128 sizes");
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0, size as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(suffix)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Swapping version after version: the compiled code of versions older than
/// the previous one is dropped, the artifact cache is pruned to its bound
/// (sparing what is in use) and `uploads/` keeps at most `max_uploads`.
#[test]
fn old_versions_are_dropped_and_the_caches_stay_bounded() {
    let cache = tempfile::tempdir().unwrap();
    // A bound below one artifact: only those in use may stay.
    let runtime = Arc::new(
        PluginRuntime::new(RuntimeOptions { artifact_cache: Some(cache.path().into()) })
            .unwrap()
            .with_artifact_cache_max_bytes(1),
    );
    let original = std::fs::read(hostile_wasm()).unwrap();
    let first = cache.path().join("first.wasm");
    std::fs::write(&first, variant(&original, 0)).unwrap();
    let limits = PluginLimits::default();
    let v1 = runtime
        .load("hostile", &first, Some(WorldName::Transform), &limits, &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap();
    let mut weak = vec![Arc::downgrade(&v1)];
    let registry = Arc::new(PluginRegistry::new([(v1, serde_json::Value::Null)], SampleSettings::default()));
    let mut settings = HotSwapSettings { max_uploads: 2, ..HotSwapSettings::default() };
    settings.rollback.enabled = false;
    let swapper = Swapper::new(runtime.clone(), registry.clone(), settings);
    assert_eq!(runtime.live_components(), 1);

    let mut runner = registry.transform("hostile").unwrap();
    for n in 1..=5u32 {
        let response = swapper.swap("hostile", &variant(&original, n), SwapOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        // The runner moves to the new version at its next batch.
        assert_eq!(runner.process(&[event("ok", 0)]).len(), 1);
        assert_eq!(runner.plugin().hash(), response.version);
        weak.push(Arc::downgrade(runner.plugin()));

        let alive: Vec<bool> = weak.iter().map(|w| w.strong_count() > 0).collect();
        let want: Vec<bool> = (0..weak.len()).map(|v| v + 2 >= weak.len()).collect();
        assert_eq!(alive, want, "after swap {n}: only the current and the previous version live");
        assert_eq!(runtime.live_components(), 2, "after swap {n}");

        let slot = registry.slot("hostile").unwrap();
        let (current, previous) = (slot.current().hash().to_string(), slot.previous().unwrap().hash().to_string());
        let artifacts = files(cache.path(), ".cwasm");
        assert_eq!(artifacts.len(), 2, "after swap {n}: {artifacts:?}");
        assert!(artifacts.iter().any(|a| a.starts_with(&current)) && artifacts.iter().any(|a| a.starts_with(&previous)));
        let uploads = files(&cache.path().join("uploads"), ".wasm");
        let mut want_uploads = vec![format!("{current}.wasm")];
        if n > 1 {
            want_uploads.push(format!("{previous}.wasm"));
        }
        want_uploads.sort();
        assert_eq!(uploads, want_uploads, "after swap {n}");
    }
}
