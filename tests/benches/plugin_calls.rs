//! The fixed costs of plugin calls, moved out of the tests (figures depend
//! on the machine; the tests check behaviour):
//!
//! - the hostile test plugin's echo of 1024 ~300-byte events per batch (the
//!   guest parses each value), the same through the boundary alone (values
//!   the guest does not parse), a one-event call, a new instance;
//! - the Python click cleaner: cached load, link, first and later instances;
//! - the Go UDF `ctr-udf-go`: per-row cost in batches of 1024 rows.
//!
//! Run: `cargo bench -p streamhost-tests --bench plugin_calls`
//! (`-- --only echo|python|go` runs one part).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use streamhost::config::{PluginGrants, PluginLimits, WorldName};
use streamhost::event::Event;
use streamhost::plugin::{Outcome, PluginRuntime, RuntimeOptions, Scalar};

fn build(rel: &str) -> PathBuf {
    streamhost::build::build_plugin(&streamhost_tests::repo().join(rel), None, false)
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .output
}

fn request(what: serde_json::Value) -> Event {
    Event::from_value(what.to_string().into_bytes(), 1_700_000_000_000)
}

/// Events per second of `f` (which handles `per_call` events) run for `secs`.
fn rate(secs: f64, per_call: usize, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut events = 0usize;
    while started.elapsed() < Duration::from_secs_f64(secs) {
        f();
        events += per_call;
    }
    events as f64 / started.elapsed().as_secs_f64()
}

fn echo(rt: &PluginRuntime) {
    let wasm = build("tests/plugins/hostile");
    let plugin = rt
        .load("hostile", &wasm, Some(WorldName::Transform), &PluginLimits::default(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut runner = plugin.transform().unwrap();
    let padding = "x".repeat(270);
    let batch: Vec<Event> = (0..1024)
        .map(|i| {
            let mut e = request(serde_json::json!({"do": "ok", "user": i, "pad": padding}));
            e.key = Some(format!("user-{i}").into_bytes());
            e
        })
        .collect();
    let value_bytes = batch.iter().map(|e| e.value.len()).sum::<usize>() / batch.len();
    // A fast wrong answer is no result.
    let check = |outcomes: Vec<Outcome>, input: &[Event]| {
        assert!(outcomes.iter().zip(input).all(|(o, e)| *o == Outcome::Ok(vec![e.clone()])), "the echo changed an event");
    };
    for _ in 0..20 {
        check(runner.process(&batch), &batch);
    }
    let parsed = rate(1.5, batch.len(), || check(runner.process(&batch), &batch));
    let raw: Vec<Event> = batch.iter().map(|e| Event { value: vec![b'x'; e.value.len()], ..e.clone() }).collect();
    let boundary = rate(1.0, raw.len(), || check(runner.process(&raw), &raw));
    let one = [request(serde_json::json!({"do": "ok"}))];
    let calls = 20_000u32;
    let started = Instant::now();
    for _ in 0..calls {
        runner.process(&one);
    }
    let per_call = started.elapsed() / calls;
    let started = Instant::now();
    for _ in 0..20 {
        plugin.transform().unwrap();
    }
    let per_instance = started.elapsed() / 20;
    assert_eq!(plugin.stats().snapshot().traps, 0);
    println!(
        "echo (hostile plugin): {parsed:.0} events/s ({value_bytes}-byte values, batches of 1024, guest parses each), \
         {boundary:.0} events/s without the parse; one-event call {per_call:?}; new instance + init {per_instance:?}"
    );
}

fn python(rt: &PluginRuntime) {
    let wasm = build("plugins/click-cleaner");
    let plugin = rt
        .load("click-cleaner", &wasm, None, &PluginLimits::default(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    for _ in 0..5 {
        plugin.transform().unwrap();
    }
    let per_instance = started.elapsed() / 5;
    let t = plugin.timings();
    println!(
        "python click-cleaner: artifact {:?} in {:?}, link {:?}, first instance + init {:?}; new instance + init {per_instance:?}",
        t.artifact, t.compile, t.link, t.first_instance
    );
}

fn go(rt: &PluginRuntime) {
    let wasm = build("plugins/ctr-udf-go");
    let plugin = rt
        .load("ctr-udf-go", &wasm, Some(WorldName::Udf), &PluginLimits::default(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut runner = plugin.udf().unwrap();
    let int_rows: Vec<Vec<Scalar>> = (0..1024).map(|i| vec![Scalar::Int(i), Scalar::Int(i * 10)]).collect();
    let str_rows: Vec<Vec<Scalar>> = (0..1024).map(|i| vec![Scalar::Str(format!("user-{i:08}")), Scalar::Int(64)]).collect();
    for (name, rows) in [("ctr_bucket", &int_rows), ("hash_bucket", &str_rows)] {
        for _ in 0..20 {
            runner.call(name, rows);
        }
        // The best of 5 rounds of 100 batches: the machine may be shared.
        let mut per_row_ns = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..100 {
                assert!(runner.call(name, rows).iter().all(|r| r.is_ok()), "{name} failed a row");
            }
            per_row_ns = per_row_ns.min(started.elapsed().as_nanos() as f64 / (100 * rows.len()) as f64);
        }
        println!("go udf {name}: {per_row_ns:.0} ns/row, {:.0} rows/s (batches of {})", 1e9 / per_row_ns, rows.len());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(String::as_str);
    let wanted = |what: &str| only.is_none_or(|o| o == what);
    let rt = PluginRuntime::new(RuntimeOptions::default()).unwrap();
    if wanted("echo") {
        echo(&rt);
    }
    if wanted("python") {
        python(&rt);
    }
    if wanted("go") {
        go(&rt);
    }
}
