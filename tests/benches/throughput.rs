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
//!
//! `-- --metrics-ab [--rounds R] [--events N]` runs instead the cost of the
//! metrics (docs/metrics.md): the Rust plugin pipeline at parallelism 1 and 2
//! with metrics on (the admin API on, `/metrics` scraped every second) and off
//! (`settings.metrics.enabled: false`), alternating, R rounds (default 5) of N
//! events (default 2,000,000); it prints each run, the medians and the ratio
//! on / off. Faster, without a cold bench-profile build:
//! `cargo test --release -p streamhost-tests --bench throughput --no-run`, then
//! run the binary it names with `--metrics-ab`.


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

/// This process's CPU seconds (user + system), from /proc.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// One run of `generator -> impression-cleaner -> null` at `parallelism`,
/// metrics on (scraped every second) or off: its events/s, CPU µs per event
/// (the whole process: the scraper's and the admin API's work included) and scrapes.
fn metrics_run(dir: &Path, n: usize, parallelism: usize, on: bool) -> (f64, f64, usize) {
    let path = streamhost_tests::plugin_dir("plugins/impression-cleaner");
    let mut settings = json!({"parallelism": parallelism, "metrics": {"enabled": on}});
    if on {
        settings["admin"] = json!({"addr_file": dir.join("admin.addr")});
    }
    let config = json!({
        "plugins": {"impression-cleaner": {"path": path}},
        "sources": {"gen": {"type": "generator", "shape": "impression", "seed": 7, "count": n, "dirty_ratio": 0.05}},
        "steps": {"clean": {"type": "transform", "plugin": "impression-cleaner", "inputs": ["gen"]}},
        "sinks": {"null": {"type": "null", "inputs": ["clean"]}},
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
        "settings": settings
    });
    let loaded = streamhost::config::load_pipeline(&streamhost_tests::write_pipeline(dir, &config)).unwrap_or_else(|e| panic!("{e}"));
    let p = build_pipeline(&loaded, BuildOptions::default()).unwrap();
    let scraper = p.admin_addr().map(|addr| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        let thread = std::thread::spawn(move || {
            let client = streamhost::swap::AdminClient::new(&addr.to_string(), None);
            let mut scrapes = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = client.metrics().expect("GET /metrics");
                assert!(text.contains("streamhost_step_events_in_total"), "{text}");
                scrapes += 1;
                // One wake-up a second, as a Prometheus scraping every second costs.
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        });
        (stop, thread)
    });
    let cpu = process_cpu_seconds();
    let s = p.run().unwrap();
    let cpu = process_cpu_seconds() - cpu;
    let scrapes = scraper.map_or(0, |(stop, thread)| {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        thread.join().unwrap()
    });
    assert_eq!(s.node("gen").unwrap().events_in, n as u64);
    (n as f64 / s.elapsed.as_secs_f64(), cpu * 1e6 / n as f64, scrapes)
}

/// What metrics on add per batch of the ETL path, alone, on one thread: the
/// coordinator's byte sum and clock read for a source batch, a worker's two
/// clock reads, histogram and busy time around the step, its byte sums in and
/// out, the sink's byte sum. Returns ns per event (over batches of 1024).
fn metrics_work_per_event(events: &[Event]) -> f64 {
    let m = streamhost::metrics::Metrics::new("bench", true);
    let (step, worker) = (m.step("clean", "0.0"), m.worker("0.0", None));
    let batches: Vec<streamhost::event::Batch> = events
        .chunks(BATCH)
        .map(|c| {
            let mut b = streamhost::event::Batch::with_capacity(c.len());
            for e in c {
                b.push(e.clone(), streamhost::event::Origin::new("gen", 0));
            }
            b
        })
        .collect();
    let (mut sum, mut last) = (0u64, 0i64);
    let start = Instant::now();
    for b in &batches {
        sum += streamhost::metrics::batch_bytes(b);
        last = last.max(streamhost::source::now_ms());
        let t = Instant::now();
        step.bytes_in.inc_by(streamhost::metrics::batch_bytes(b));
        let secs = t.elapsed().as_secs_f64();
        worker.busy.inc_by(secs);
        step.batch.observe(secs);
        step.bytes_out.inc_by(streamhost::metrics::batch_bytes(b));
        sum += streamhost::metrics::batch_bytes(b);
    }
    let ns = start.elapsed().as_nanos() as f64 / events.len() as f64;
    assert!(sum > 0 && last > 0 && step.bytes_in.get() > 0);
    ns
}

/// `--metrics-ab`: metrics on against off, alternating (see the module doc).
fn metrics_ab(args: &[String], n: usize) {
    let sample = events(GeneratorShape::Impression, 300_000);
    let per_event = (0..5).map(|_| metrics_work_per_event(&sample)).fold(f64::MAX, f64::min);
    println!("the work metrics on add per batch, alone on one thread: {per_event:.2} ns per event (best of 5 over 300,000 impressions)");
    let rounds = args.iter().position(|a| a == "--rounds").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(5usize);
    let dir = tempfile::tempdir().unwrap();
    println!("metrics on (scraped every second) against off: generator -> rust plugin cleaner -> null, {n} events, {rounds} rounds, alternating");
    let mut rates: std::collections::BTreeMap<(usize, bool), Vec<f64>> = Default::default();
    let mut cpus: std::collections::BTreeMap<(usize, bool), Vec<f64>> = Default::default();
    for round in 0..rounds {
        for parallelism in [1, 2] {
            // Alternate which goes first, so a warming machine favours neither.
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for on in order {
                let (rate, cpu, scrapes) = metrics_run(dir.path(), n, parallelism, on);
                println!("  round {round} p{parallelism} metrics {:<3} {rate:>12.0} events/s {cpu:>7.3} us CPU/event ({scrapes} scrapes)", if on { "on" } else { "off" });
                rates.entry((parallelism, on)).or_default().push(rate);
                cpus.entry((parallelism, on)).or_default().push(cpu);
            }
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("medians:");
    for parallelism in [1, 2] {
        let (on, off) = (median(&rates[&(parallelism, true)]), median(&rates[&(parallelism, false)]));
        let (cpu_on, cpu_off) = (median(&cpus[&(parallelism, true)]), median(&cpus[&(parallelism, false)]));
        println!(
            "  p{parallelism}: on {on:.0} events/s, off {off:.0} events/s, on / off {:.3}; CPU per event on {cpu_on:.3} us, off {cpu_off:.3} us, on / off {:.3}",
            on / off,
            cpu_on / cpu_off
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let given = args.iter().position(|a| a == "--events").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok());
    if args.iter().any(|a| a == "--metrics-ab") {
        return metrics_ab(&args, given.unwrap_or(2_000_000));
    }
    let n = given.unwrap_or(300_000usize);
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
