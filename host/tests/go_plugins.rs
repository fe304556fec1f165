//! Go plugins built from source with the Go SDK (`sdk/go`): the example UDF
//! plugin `plugins/ctr-udf-go` and the heap-growth test plugin
//! `tests/plugins/go-heap`, run by the real plugin runtime.
//!
//! The per-row cost of the Go UDF is measured by
//! `cargo bench -p streamhost-tests --bench plugin_calls -- --only go`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use streamhost::config::{PluginGrants, PluginLimits, WorldName};
use streamhost::event::{Event, Header};
use streamhost::plugin::{
    FailureKind, LoadedPlugin, Outcome, PluginStatsSnapshot, Scalar, ScalarType,
};

use common::build;

fn ctr_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build("plugins/ctr-udf-go", WorldName::Udf))
}

fn heap_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build("tests/plugins/go-heap", WorldName::Transform))
}

use common::shared_runtime as runtime;

fn load_ctr(config: serde_json::Value) -> Arc<LoadedPlugin> {
    runtime()
        .load("ctr-udf-go", ctr_wasm(), Some(WorldName::Udf), &PluginLimits::default(), &PluginGrants::default(), &config)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The plugin's computation, redone on the host: (clicks + 1) / (impressions + 100).
fn expected_ctr(clicks: i64, impressions: i64) -> f64 {
    (clicks as f64 + 1.0) / (impressions as f64 + 100.0)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Held by the tests that measure time or use hundreds of MiB, so they do
/// not run at the same time as each other.
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn assert_clean(stats: PluginStatsSnapshot) {
    assert_eq!(stats.traps, 0, "no input may trap: {stats:?}");
    assert_eq!(stats.retried_batches, 0, "no batch may be retried row by row: {stats:?}");
    assert_eq!(stats.rebuilds, 0, "the instance must never be rebuilt: {stats:?}");
}

#[test]
fn go_udf_declares_its_functions() {
    let plugin = load_ctr(serde_json::Value::Null);
    let runner = plugin.udf().unwrap();
    let sigs: Vec<(String, Vec<ScalarType>, ScalarType)> =
        runner.functions().iter().map(|f| (f.name.clone(), f.params.clone(), f.result)).collect();
    assert_eq!(
        sigs,
        vec![
            ("ctr_bucket".into(), vec![ScalarType::Int, ScalarType::Int], ScalarType::Float),
            ("hash_bucket".into(), vec![ScalarType::Str, ScalarType::Int], ScalarType::Int),
            ("normalize_device".into(), vec![ScalarType::Str], ScalarType::Str),
        ]
    );
}

#[test]
fn go_udf_results_are_right_over_many_rows() {
    let plugin = load_ctr(serde_json::json!({"prior_clicks": 1, "prior_impressions": 100}));
    let mut runner = plugin.udf().unwrap();

    // 20 batches of 1024 rows: each batch reuses the plugin's argument arena.
    for batch in 0..20i64 {
        let rows: Vec<Vec<Scalar>> = (0..1024i64)
            .map(|i| {
                let impressions = batch * 1000 + i * 7;
                vec![Scalar::Int(impressions / 13), Scalar::Int(impressions)]
            })
            .collect();
        for (row, result) in rows.iter().zip(runner.call("ctr_bucket", &rows)) {
            let (Scalar::Int(c), Scalar::Int(n)) = (&row[0], &row[1]) else { unreachable!() };
            assert_eq!(result, Ok(Scalar::Float(expected_ctr(*c, *n))), "ctr_bucket({c}, {n})");
        }

        let ids: Vec<String> = (0..1024).map(|i| format!("user-{batch}-{i}-é")).collect();
        let rows: Vec<Vec<Scalar>> =
            ids.iter().map(|id| vec![Scalar::Str(id.clone()), Scalar::Int(1 + batch % 7)]).collect();
        for (id, result) in ids.iter().zip(runner.call("hash_bucket", &rows)) {
            let want = (fnv1a64(id.as_bytes()) % (1 + batch as u64 % 7)) as i64;
            assert_eq!(result, Ok(Scalar::Int(want)), "hash_bucket({id:?})");
        }
    }

    let devices = [(" iPhone 15 ", "mobile"), ("iPad Pro", "tablet"), ("Googlebot/2.1", "bot"), ("Roku TV", "tv")];
    let rows: Vec<Vec<Scalar>> = devices.iter().map(|(d, _)| vec![Scalar::Str(d.to_string())]).collect();
    let results = runner.call("normalize_device", &rows);
    for ((input, want), got) in devices.iter().zip(results) {
        assert_eq!(got, Ok(Scalar::Str(want.to_string())), "normalize_device({input:?})");
    }
    assert_clean(plugin.stats().snapshot());
}

#[test]
fn go_udf_invalid_arguments_fail_per_row() {
    let plugin = load_ctr(serde_json::Value::Null);
    let mut runner = plugin.udf().unwrap();
    let rows = vec![
        vec![Scalar::Int(1), Scalar::Int(10)],                       // ok
        vec![Scalar::Str("1".into()), Scalar::Int(10)],              // wrong type
        vec![Scalar::Int(1)],                                        // wrong arity
        vec![Scalar::Int(11), Scalar::Int(10)],                      // the function's own error
        vec![Scalar::Null, Scalar::Int(10)],                         // null in, null out
        vec![Scalar::Int(-1), Scalar::Int(10)],                      // the function's own error
        vec![Scalar::Int(2), Scalar::Int(10), Scalar::Bytes(vec![])], // wrong arity
        vec![Scalar::Int(3), Scalar::Int(30)],                       // ok
    ];
    let results = runner.call("ctr_bucket", &rows);
    assert_eq!(results.len(), rows.len());
    assert_eq!(results[0], Ok(Scalar::Float(expected_ctr(1, 10))));
    let error = |i: usize| match &results[i] {
        Err(f) => {
            assert_eq!(f.kind, FailureKind::Error, "row {i}: {f}");
            f.message.clone()
        }
        Ok(v) => panic!("row {i}: expected an error, got {v:?}"),
    };
    assert_eq!(error(1), "ctr_bucket: argument 1: expected int, got str");
    assert_eq!(error(2), "ctr_bucket: expected 2 argument(s), got 1");
    assert_eq!(error(3), "ctr_bucket: more clicks (11) than impressions (10)");
    assert_eq!(results[4], Ok(Scalar::Null));
    assert!(error(5).contains("negative count"), "{}", error(5));
    assert_eq!(error(6), "ctr_bucket: expected 2 argument(s), got 3");
    assert_eq!(results[7], Ok(Scalar::Float(expected_ctr(3, 30))));

    let rows = vec![vec![Scalar::Str("u".into()), Scalar::Int(0)], vec![Scalar::Str("  ".into())]];
    assert_eq!(
        runner.call("hash_bucket", &rows[..1]),
        vec![Err(streamhost::plugin::Failure {
            kind: FailureKind::Error,
            message: "hash_bucket: bucket count must be positive, got 0".into()
        })]
    );
    assert!(matches!(&runner.call("normalize_device", &rows[1..])[0], Err(f) if f.message.contains("empty device")));
    assert_clean(plugin.stats().snapshot());
}

#[test]
fn go_udf_bad_config_refuses_the_plugin() {
    let err = runtime()
        .load(
            "ctr-udf-go",
            ctr_wasm(),
            Some(WorldName::Udf),
            &PluginLimits::default(),
            &PluginGrants::default(),
            &serde_json::json!({"prior_clicks": 5, "prior_impressions": 1}),
        )
        .err()
        .expect("an invalid config must refuse the plugin");
    assert!(err.to_string().contains("prior_clicks <= prior_impressions"), "{err}");
}

fn heap_limits() -> PluginLimits {
    PluginLimits { memory_mb: 1024, batch_timeout_ms: 120_000, ..PluginLimits::default() }
}

fn command(json: serde_json::Value) -> Event {
    Event::from_value(json.to_string().into_bytes(), 1)
}

fn data_event(i: usize, size: usize) -> Event {
    let value: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7) as u8).collect();
    Event {
        key: Some(format!("k{i}").into_bytes()),
        value,
        timestamp: i as i64,
        headers: vec![Header { name: "n".into(), value: i.to_string().into_bytes() }],
    }
}

/// Sends data events and checks each answer: the FNV hash of the value
/// computed by Go, key and headers kept, a header added.
fn process_data(runner: &mut streamhost::plugin::TransformRunner, count: usize, size: usize) {
    let batch: Vec<Event> = (0..count).map(|i| data_event(i, size)).collect();
    let outcomes = runner.process(&batch);
    assert_eq!(outcomes.len(), count);
    for (input, outcome) in batch.iter().zip(outcomes) {
        let Outcome::Ok(outs) = outcome else { panic!("data event failed: {outcome:?}") };
        assert_eq!(outs.len(), 1);
        let out = &outs[0];
        let want = format!(r#"{{"len":{},"fnv":"{:016x}"}}"#, input.value.len(), fnv1a64(&input.value));
        assert_eq!(String::from_utf8_lossy(&out.value), want);
        assert_eq!(out.key, input.key);
        assert_eq!(out.timestamp, input.timestamp);
        assert_eq!(out.headers[0], input.headers[0]);
        assert_eq!(out.headers[1], Header { name: "go-heap".into(), value: b"1".to_vec() });
    }
}

/// Runs one command event and returns the answer's JSON.
fn run_command(runner: &mut streamhost::plugin::TransformRunner, cmd: serde_json::Value) -> serde_json::Value {
    let outcomes = runner.process(&[command(cmd.clone())]);
    match &outcomes[0] {
        Outcome::Ok(outs) => serde_json::from_slice(&outs[0].value).unwrap(),
        Outcome::Failed(f) => panic!("{cmd}: {f}"),
    }
}

#[test]
fn go_plugin_survives_a_300_mb_heap_and_keeps_working() {
    let _heavy = heavy();
    let plugin = runtime()
        .load("go-heap", heap_wasm(), Some(WorldName::Transform), &heap_limits(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut runner = plugin.transform().unwrap();

    for cycle in 0..3 {
        let started = Instant::now();
        process_data(&mut runner, 256, 100);

        // 300 MiB of live heap (and as much garbage), then fmt.Println.
        let grown = run_command(&mut runner, serde_json::json!({"grow_mb": 300}));
        assert_eq!(grown["retained_mb"], 300, "cycle {cycle}: {grown}");

        // Many batches after the growth, then arguments far larger than the
        // argument arena so far (it must grow above the 300 MiB heap), then
        // more heap growth above that.
        for _ in 0..50 {
            process_data(&mut runner, 256, 200);
        }
        process_data(&mut runner, 64, 128 * 1024);
        let grown = run_command(&mut runner, serde_json::json!({"grow_mb": 40}));
        assert_eq!(grown["retained_mb"], 340, "cycle {cycle}: {grown}");
        process_data(&mut runner, 32, 256 * 1024);
        process_data(&mut runner, 256, 100);

        // Nothing the heap holds was overwritten.
        let checked = run_command(&mut runner, serde_json::json!({"check": true}));
        assert_eq!(checked["checksum"], grown["checksum"], "cycle {cycle}");
        let released = run_command(&mut runner, serde_json::json!({"release": true}));
        assert_eq!(released["retained_mb"], 0);
        println!("go-heap cycle {cycle}: {:.1} s", started.elapsed().as_secs_f64());
    }
    assert_clean(plugin.stats().snapshot());
}

#[test]
fn go_heap_growth_past_the_memory_limit_fails_only_that_event() {
    let limits = PluginLimits { memory_mb: 128, batch_timeout_ms: 120_000, ..PluginLimits::default() };
    let plugin = runtime()
        .load("go-heap", heap_wasm(), Some(WorldName::Transform), &limits, &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut runner = plugin.transform().unwrap();
    let batch = vec![data_event(0, 10), command(serde_json::json!({"grow_mb": 300})), data_event(2, 10)];
    let outcomes = runner.process(&batch);
    assert!(matches!(&outcomes[0], Outcome::Ok(o) if o.len() == 1), "{:?}", outcomes[0]);
    assert!(matches!(&outcomes[1], Outcome::Failed(f) if f.kind == FailureKind::OutOfMemory), "{:?}", outcomes[1]);
    assert!(matches!(&outcomes[2], Outcome::Ok(o) if o.len() == 1), "{:?}", outcomes[2]);
    // The rebuilt instance works.
    process_data(&mut runner, 16, 1000);
}


/// Every log line of this test process. A process-wide subscriber, since a
/// thread-local one races with tracing's callsite cache while other tests
/// log from other threads; tests look for lines only they can produce.
fn logs() -> String {
    #[derive(Clone)]
    struct Buffer(&'static std::sync::Mutex<Vec<u8>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static LOGS: OnceLock<&'static std::sync::Mutex<Vec<u8>>> = OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let logs: &'static std::sync::Mutex<Vec<u8>> = Box::leak(Box::default());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Buffer(logs))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this test binary");
        logs
    });
    String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

#[test]
fn go_plugin_output_reaches_the_host_log() {
    logs(); // install the capturing subscriber first

    // sdk.Info from the plugin's init, with fields (the host.log import);
    // prior_impressions 57 appears in no other test.
    load_ctr(serde_json::json!({"prior_clicks": 2, "prior_impressions": 57}));
    let all = logs();
    let line = all
        .lines()
        .find(|l| l.contains("ctr prior") && l.contains("57"))
        .unwrap_or_else(|| panic!("no log line from sdk.Info in:\n{all}"));
    assert!(line.contains("INFO") && line.contains("prior_clicks") && line.contains("ctr-udf-go"), "{line}");

    // fmt.Println after heap growth: WASI fd_write through the adapter
    // (no other test grows by 64 MiB).
    let plugin = runtime()
        .load("go-heap", heap_wasm(), Some(WorldName::Transform), &heap_limits(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut runner = plugin.transform().unwrap();
    run_command(&mut runner, serde_json::json!({"grow_mb": 64}));
    let all = logs();
    assert!(all.contains("go-heap: retained 64 MiB"), "no fmt.Println output in:\n{all}");
}

#[test]
fn go_fatal_panic_traps_only_its_event_and_the_instance_is_rebuilt() {
    let plugin = runtime()
        .load("go-heap", heap_wasm(), Some(WorldName::Transform), &heap_limits(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut runner = plugin.transform().unwrap();
    let batch = vec![data_event(0, 10), command(serde_json::json!({"fatal": true})), data_event(2, 10)];
    let outcomes = runner.process(&batch);
    assert!(matches!(&outcomes[0], Outcome::Ok(o) if o.len() == 1), "{:?}", outcomes[0]);
    assert!(matches!(&outcomes[1], Outcome::Failed(f) if f.kind == FailureKind::Trap), "{:?}", outcomes[1]);
    assert!(matches!(&outcomes[2], Outcome::Ok(o) if o.len() == 1), "{:?}", outcomes[2]);
    process_data(&mut runner, 16, 1000);
    assert!(plugin.stats().snapshot().rebuilds >= 1);
}
