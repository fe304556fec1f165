//! Throughput of the ETL path, plugin against native (issue: plugin host v0).
//!
//! Run: `cargo bench -p streamhost-tests --bench throughput` (add
//! `-- --events N` to change the event count, `-- --only rust` to run one
//! step view alone, for a profiler). Pin to one core for the
//! one-core figures: `taskset -c 0 cargo bench ...`.
//!
//! Two views, each the best of three runs:
//! - step: one thread pushes pre-generated batches of 1024 events (~300 B
//!   each) through the step; this is the cost of the cleaning logic plus the
//!   boundary crossing, per core.
//! - pipeline: `generator -> step -> null` through the real runtime (the
//!   generator runs on its own thread), events/s end to end.


/// The `streamhost` binary's allocator, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: streamhost::Allocator = streamhost::Allocator;

use std::path::Path;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde_json::json;
use streamhost::config::{GeneratorShape, PluginGrants, PluginLimits, WorldName};
use streamhost::event::Event;
use streamhost::plugin::{Outcome, PluginRuntime, RuntimeOptions};
use streamhost::runtime::{build_pipeline, BuildOptions};
use streamhost::step::{NativeFn, NativeRegistry};

const BATCH: usize = 1024;

fn events(shape: GeneratorShape, n: usize) -> Vec<Event> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(42);
    (0..n)
        .map(|i| {
            let mut raw = Vec::with_capacity(384);
            streamhost::source::write_record(&mut raw, shape, &mut rng, i as u64, 0.05);
            Event::from_value(raw, streamhost::source::BASE_TIME_MS + i as i64)
        })
        .collect()
}

fn best_of_3(mut f: impl FnMut() -> (Duration, usize)) -> (f64, usize) {
    let mut best = 0f64;
    let mut out = 0;
    for _ in 0..3 {
        let (d, n) = f();
        best = best.max(n as f64 / d.as_secs_f64());
        out = n;
    }
    (best, out)
}

/// The plugin's cleaning logic, compiled natively, doing what the plugin
/// export does with each event.
fn native_clean(e: &Event) -> Result<Vec<Event>, String> {
    let mut value = Vec::with_capacity(e.value.len());
    match impression_cleaner::clean_impression_into(&e.value, &mut value).map_err(|e| e.to_string())? {
        Some(timestamp) => Ok(vec![Event { value, timestamp, key: e.key.clone(), headers: e.headers.clone() }]),
        None => Ok(Vec::new()),
    }
}

fn step_native(input: &[Event]) -> (f64, usize) {
    best_of_3(|| {
        let start = Instant::now();
        let mut out = 0;
        for batch in input.chunks(BATCH) {
            for e in batch {
                if let Ok(v) = native_clean(e) {
                    out += v.len();
                }
            }
        }
        (start.elapsed(), out)
    })
}

fn step_plugin(rt: &PluginRuntime, name: &str, wasm: &Path, input: &[Event]) -> (f64, usize) {
    let plugin = rt
        .load(name, wasm, Some(WorldName::Transform), &PluginLimits::default(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut runner = plugin.transform().unwrap();
    best_of_3(|| {
        let start = Instant::now();
        let mut out = 0;
        for batch in input.chunks(BATCH) {
            for o in runner.process(batch) {
                if let Outcome::Ok(v) = o {
                    out += v.len();
                }
            }
        }
        (start.elapsed(), out)
    })
}

fn pipeline(dir: &Path, step: serde_json::Value, shape: &str, n: usize, natives: NativeRegistry, parallelism: usize) -> f64 {
    let mut plugins = serde_json::Map::new();
    if let Some(p) = step.get("plugin").and_then(|p| p.as_str()) {
        let path = streamhost_tests::plugin_dir(&format!("plugins/{p}"));
        plugins.insert(p.into(), json!({"path": path}));
    }
    let mut step = step;
    step["inputs"] = json!(["gen"]);
    let path = streamhost_tests::write_pipeline(
        dir,
        &json!({
            "plugins": plugins,
            "sources": {"gen": {"type": "generator", "shape": shape, "seed": 7, "count": n, "dirty_ratio": 0.05}},
            "steps": {"clean": step},
            "sinks": {"null": {"type": "null", "inputs": ["clean"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"},
            "settings": {"parallelism": parallelism}
        }),
    );
    let loaded = streamhost::config::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut best = 0f64;
    for _ in 0..3 {
        let p = build_pipeline(&loaded, BuildOptions { natives: natives.clone(), ..Default::default() }).unwrap();
        let s = p.run().unwrap();
        best = best.max(n as f64 / s.elapsed.as_secs_f64());
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args.iter().position(|a| a == "--events").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(300_000usize);
    let build = |rel: &str| {
        streamhost::build::build_plugin(&streamhost_tests::repo().join(rel), None, false)
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .output
    };
    let rust_wasm = build("plugins/impression-cleaner");
    let py_wasm = build("plugins/click-cleaner");
    let rt = PluginRuntime::new(RuntimeOptions { artifact_cache: None }).unwrap();
    let impressions = events(GeneratorShape::Impression, n);
    let clicks = events(GeneratorShape::Click, n.min(100_000));
    let avg = impressions.iter().map(|e| e.value.len()).sum::<usize>() / impressions.len();
    println!("events: {n} impressions (avg {avg} B), batches of {BATCH}; best of 3");

    // `--only native|rust|python` runs one step view alone (for profiling).
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(String::as_str);
    let wanted = |what: &str| only.is_none_or(|o| o == what);
    let (native, native_out) = if wanted("native") { step_native(&impressions) } else { (f64::NAN, 0) };
    let (rust, rust_out) = if wanted("rust") { step_plugin(&rt, "impression-cleaner", &rust_wasm, &impressions) } else { (f64::NAN, 0) };
    let (python, python_out) = if wanted("python") { step_plugin(&rt, "click-cleaner", &py_wasm, &clicks) } else { (f64::NAN, 0) };
    // A fast wrong answer is no result: the plugin must clean exactly what
    // the native code cleans, and the Python cleaner must keep most clicks
    // (the generator makes about 5% of records bad, and drops bots).
    if wanted("native") && wanted("rust") {
        assert_eq!(rust_out, native_out, "the rust plugin and the native cleaner disagree");
    }
    if wanted("python") {
        assert!(python_out * 10 >= clicks.len() * 8, "the python cleaner kept only {python_out} of {} clicks", clicks.len());
    }
    println!("outputs: native {native_out}, rust plugin {rust_out}, python plugin {python_out} of {}", clicks.len());
    println!("step (one thread):");
    println!("  native cleaner         {:>12.0} events/s", native);
    println!("  rust plugin cleaner    {:>12.0} events/s   ({:.2} of native)", rust, rust / native);
    println!("  python plugin cleaner  {:>12.0} events/s   (clicks)", python);

    if only.is_some() || args.iter().any(|a| a == "--step-only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut natives = NativeRegistry::default();
    natives.register("impression-cleaner", || -> NativeFn { Box::new(native_clean) });
    let run = |step: serde_json::Value, shape: &str, n: usize, natives: &NativeRegistry| {
        [1, 2].map(|p| pipeline(dir.path(), step.clone(), shape, n, natives.clone(), p))
    };
    let p_native = run(json!({"type": "native", "name": "impression-cleaner"}), "impression", n, &natives);
    let p_rust = run(json!({"type": "transform", "plugin": "impression-cleaner"}), "impression", n, &NativeRegistry::default());
    let p_py = run(json!({"type": "transform", "plugin": "click-cleaner"}), "click", n.min(100_000), &NativeRegistry::default());
    println!("pipeline (generator thread -> coordinator -> workers -> null), events/s:");
    println!("  {:<22} {:>12} {:>12} {:>8}", "", "parallelism 1", "parallelism 2", "2 / 1");
    for (name, [p1, p2]) in [("native cleaner", p_native), ("rust plugin cleaner", p_rust), ("python plugin cleaner", p_py)] {
        println!("  {name:<22} {p1:>12.0} {p2:>12.0} {:>8.2}", p2 / p1);
    }
    println!("  rust plugin against native: {:.2} (parallelism 1), {:.2} (parallelism 2)", p_rust[0] / p_native[0], p_rust[1] / p_native[1]);
}
