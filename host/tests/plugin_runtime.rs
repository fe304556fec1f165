//! The plugin runtime against a real, hostile plugin built from source
//! (`tests/plugins/hostile`): isolation of bad records, limits, rebuilds,
//! world checks and the artifact cache.
//!
//! The figures of plugin calls (throughput, call and instance costs) are
//! measured by `cargo bench -p streamhost-tests --bench plugin_calls`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use streamhost::config::{PluginGrants, PluginLimits, WorldName};
use streamhost::event::{Event, Header};
use streamhost::plugin::{
    ArtifactSource, FailureKind, LoadedPlugin, Outcome, PluginError, PluginRuntime, RuntimeOptions,
};

/// Builds the hostile plugin once per test process.
fn hostile_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| common::build("tests/plugins/hostile", WorldName::Transform))
}

use common::{repo_root, shared_runtime};

fn fast_limits() -> PluginLimits {
    PluginLimits { batch_timeout_ms: 100, ..PluginLimits::default() }
}

fn load(limits: &PluginLimits, config: serde_json::Value) -> Result<Arc<LoadedPlugin>, PluginError> {
    shared_runtime().load(
        "hostile",
        hostile_wasm(),
        Some(WorldName::Transform),
        limits,
        &PluginGrants::default(),
        &config,
    )
}

fn request(what: serde_json::Value) -> Event {
    Event::from_value(what.to_string().into_bytes(), 1_700_000_000_000)
}

fn ok_event(i: usize) -> Event {
    let mut e = request(serde_json::json!({"do": "ok", "i": i}));
    // Every third event has no key, every other one headers, to check
    // both cross the columnar boundary intact.
    if i % 3 != 0 {
        e.key = Some(format!("k{i}").into_bytes());
    }
    if i % 2 == 0 {
        e.headers = vec![
            Header { name: "n".into(), value: i.to_string().into_bytes() },
            Header { name: "empty".into(), value: Vec::new() },
        ];
    }
    e.timestamp -= i as i64;
    e
}

fn kind(outcome: &Outcome) -> Option<FailureKind> {
    match outcome {
        Outcome::Ok(_) => None,
        Outcome::Failed(f) => Some(f.kind),
    }
}

#[test]
fn each_hostile_record_fails_alone_and_the_rest_of_its_batch_comes_out_right() {
    let plugin = load(&fast_limits(), serde_json::Value::Null).unwrap();
    let mut runner = plugin.transform().unwrap();
    let hostile = [
        ("error", FailureKind::Error),
        ("panic", FailureKind::Trap),
        ("loop", FailureKind::Timeout),
        ("oom", FailureKind::OutOfMemory),
        ("huge", FailureKind::Limit),
        // 300 MiB does not fit in the default 256 MiB memory.
        ("big", FailureKind::OutOfMemory),
        // A broken layout (an origin past the batch) is refused by the host.
        ("contract", FailureKind::Trap),
    ];
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for (i, (what, failure)) in hostile.iter().enumerate() {
        batch.push(ok_event(i));
        expected.push(None);
        batch.push(request(serde_json::json!({ "do": what })));
        expected.push(Some(*failure));
    }
    batch.push(ok_event(99));
    expected.push(None);

    let outcomes = runner.process(&batch);
    assert_eq!(outcomes.len(), batch.len());
    for (i, (outcome, want)) in outcomes.iter().zip(&expected).enumerate() {
        assert_eq!(kind(outcome), *want, "record {i}: {outcome:?}");
        if let Outcome::Ok(out) = outcome {
            assert_eq!(out, &vec![batch[i].clone()], "record {i} must be echoed unchanged");
        }
    }

    let contract = batch.iter().position(|e| e.value.starts_with(br#"{"do":"contract"#)).unwrap();
    match &outcomes[contract] {
        Outcome::Failed(f) => assert!(f.message.contains("broke the contract: origin 1"), "{}", f.message),
        other => panic!("{other:?}"),
    }

    // The runner keeps working afterwards, on a clean batch in one call.
    let calls_before = plugin.stats().snapshot().calls;
    let clean: Vec<Event> = (0..100).map(ok_event).collect();
    let outcomes = runner.process(&clean);
    assert!(outcomes.iter().zip(&clean).all(|(o, e)| *o == Outcome::Ok(vec![e.clone()])));
    assert_eq!(plugin.stats().snapshot().calls, calls_before + 1, "a clean batch is one call");

    let stats = plugin.stats().snapshot();
    assert_eq!(stats.events_in, (batch.len() + clean.len()) as u64);
    assert_eq!(stats.events_out, (hostile.len() + 1 + clean.len()) as u64);
    assert_eq!(stats.errors, 1);
    assert_eq!(stats.traps, 5, "panic, loop, oom, big and contract");
    assert_eq!(stats.limit_violations, 1);
    assert_eq!(stats.retried_batches, 1);
    // Bisection (plugin/isolation.rs): 12 calls trapped (the batch, the probe
    // of the memory bomb, 10 calls on ranges or records holding the panic, the
    // loop or `big`), each followed by a rebuild; the 2 calls that only broke
    // the contract keep their instance.
    assert_eq!(stats.rebuilds, 12);
}

#[test]
fn a_trap_rebuilds_the_instance_from_scratch() {
    let plugin = load(&fast_limits(), serde_json::Value::Null).unwrap();
    let mut runner = plugin.transform().unwrap();
    let state = || request(serde_json::json!({"do": "state"}));
    let values = |outcomes: Vec<Outcome>| -> Vec<String> {
        outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Ok(events) => String::from_utf8(events[0].value.clone()).unwrap(),
                Outcome::Failed(f) => format!("failed: {}", f.kind.as_str()),
            })
            .collect()
    };
    assert_eq!(values(runner.process(&[state(), state()])), ["1", "2"]);
    assert_eq!(values(runner.process(&[state()])), ["3"]);
    // The panic sinks the batch call; the retry runs each record on a fresh
    // instance (so `state` restarts from 1), and again after the panic.
    let mixed = [state(), request(serde_json::json!({"do": "panic"})), state()];
    assert_eq!(values(runner.process(&mixed)), ["1", "failed: trap", "1"]);
    assert_eq!(values(runner.process(&[state()])), ["2"]);
}

#[test]
fn the_default_limits_contain_the_memory_bomb_and_the_flood() {
    let plugin = load(&PluginLimits::default(), serde_json::Value::Null).unwrap();
    let mut runner = plugin.transform().unwrap();
    let started = Instant::now();
    let outcomes = runner.process(&[
        request(serde_json::json!({"do": "oom"})),
        request(serde_json::json!({"do": "huge"})),
        ok_event(1),
    ]);
    assert_eq!(kind(&outcomes[0]), Some(FailureKind::OutOfMemory), "{:?}", outcomes[0]);
    assert_eq!(kind(&outcomes[1]), Some(FailureKind::Limit), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2], Outcome::Ok(vec![ok_event(1)]));
    if let Outcome::Failed(f) = &outcomes[0] {
        assert!(f.message.contains("256 MiB"), "{}", f.message);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn output_bytes_are_limited_per_batch() {
    let limits = PluginLimits { max_output_bytes_per_batch: 1 << 20, ..fast_limits() };
    let plugin = load(&limits, serde_json::Value::Null).unwrap();
    let mut runner = plugin.transform().unwrap();
    let big = |bytes: u64| request(serde_json::json!({"do": "big", "bytes": bytes}));
    let outcomes = runner.process(&[big(400_000), big(400_000), big(400_000), big(100)]);
    let kinds: Vec<_> = outcomes.iter().map(kind).collect();
    assert_eq!(kinds, [None, None, Some(FailureKind::Limit), None]);
    if let Outcome::Ok(out) = &outcomes[0] {
        assert_eq!(out[0].value.len(), 400_000);
    }
    // The budget is per batch.
    let outcomes = runner.process(&[big(400_000), big(400_000)]);
    assert!(outcomes.iter().all(|o| kind(o).is_none()));
    assert_eq!(plugin.stats().snapshot().limit_violations, 1);
    assert_eq!(plugin.stats().snapshot().traps, 0);
}

#[test]
fn outputs_per_event_are_limited() {
    let limits = PluginLimits { max_outputs_per_event: 10, ..fast_limits() };
    let plugin = load(&limits, serde_json::Value::Null).unwrap();
    let mut runner = plugin.transform().unwrap();
    let huge = |count: u64| request(serde_json::json!({"do": "huge", "count": count}));
    let outcomes = runner.process(&[huge(10), huge(11), huge(0)]);
    assert!(matches!(&outcomes[0], Outcome::Ok(out) if out.len() == 10));
    assert_eq!(kind(&outcomes[1]), Some(FailureKind::Limit));
    assert_eq!(outcomes[2], Outcome::Ok(vec![]));
}

#[test]
fn the_host_log_carries_plugin_lines() {
    captured_log_line("");
    let plugin = load(&fast_limits(), serde_json::Value::Null).unwrap();
    let mut runner = plugin.transform().unwrap();
    let event = request(serde_json::json!({"do": "log"}));
    assert_eq!(runner.process(std::slice::from_ref(&event)), [Outcome::Ok(vec![event])]);
    let line = captured_log_line("hostile plugin logs").expect("the plugin's log line");
    assert!(line.contains("INFO") && line.contains("plugin=\"hostile\"") && line.contains("seen=1"), "{line}");
}

/// Captures this test process's log (the `tracing` output) in memory.
fn captured_log_line(needle: &str) -> Option<String> {
    use std::sync::Mutex;
    static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    static INSTALL: OnceLock<()> = OnceLock::new();
    struct Capture;
    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            LOG.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    INSTALL.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
    });
    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    log.lines().find(|l| l.contains(needle)).map(str::to_string)
}

#[test]
fn a_wrong_world_is_refused() {
    let err = load_as(Some(WorldName::Udf)).unwrap_err();
    assert!(
        matches!(err, PluginError::WrongWorld { expected: WorldName::Udf, found: WorldName::Transform, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("declares world udf"), "{err}");

    let plugin = load_as(None).unwrap();
    assert_eq!(plugin.world(), WorldName::Transform);
    assert!(matches!(plugin.udf(), Err(PluginError::WrongWorld { .. })));
}

fn load_as(world: Option<WorldName>) -> Result<Arc<LoadedPlugin>, PluginError> {
    shared_runtime().load(
        "hostile",
        hostile_wasm(),
        world,
        &fast_limits(),
        &PluginGrants::default(),
        &serde_json::Value::Null,
    )
}

#[test]
fn a_failing_init_refuses_the_plugin() {
    for (how, needle) in [("error", "init refused on request"), ("panic", "trapped"), ("loop", "time budget")] {
        let err = load(&fast_limits(), serde_json::json!({ "init": how })).unwrap_err();
        assert!(matches!(err, PluginError::Init(_)), "{how}: {err}");
        assert!(err.to_string().contains(needle), "{how}: {err}");
    }
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = shared_runtime()
        .load("core", &path, None, &fast_limits(), &PluginGrants::default(), &serde_json::Value::Null)
        .unwrap_err();
    assert!(matches!(err, PluginError::NotAComponent(_)), "{err}");
}

#[test]
fn the_artifact_cache_spares_the_second_compilation() {
    let cache = tempfile::tempdir().unwrap();
    let new_runtime = || PluginRuntime::new(RuntimeOptions { artifact_cache: Some(cache.path().into()) }).unwrap();
    let load_with = |runtime: &PluginRuntime| {
        runtime
            .load("hostile", hostile_wasm(), None, &fast_limits(), &PluginGrants::default(), &serde_json::Value::Null)
            .unwrap()
    };

    let first = new_runtime();
    let cold = load_with(&first);
    assert_eq!(cold.timings().artifact, ArtifactSource::Compiled);
    assert_eq!(first.artifact_counters().compiled, 1);
    let again = load_with(&first);
    assert_eq!(again.timings().artifact, ArtifactSource::Memory);
    assert_eq!(first.artifact_counters().compiled, 1);

    // A new process (runtime) finds the artifact on disk and compiles nothing.
    let second = new_runtime();
    let cached = load_with(&second);
    assert_eq!(cached.timings().artifact, ArtifactSource::DiskCache);
    assert_eq!(second.artifact_counters().compiled, 0);
    assert_eq!(second.artifact_counters().disk_hits, 1);
    assert_eq!(cached.hash(), cold.hash());
    assert!(
        cached.timings().compile < cold.timings().compile,
        "cached {:?} vs cold {:?}",
        cached.timings().compile,
        cold.timings().compile
    );
    eprintln!(
        "hostile plugin: cold compile {:?}, cached load {:?}, first instance + init {:?}",
        cold.timings().compile,
        cached.timings().compile,
        cached.timings().first_instance
    );
    let mut runner = cached.transform().unwrap();
    assert_eq!(runner.process(&[ok_event(7)]), [Outcome::Ok(vec![ok_event(7)])]);

    // A damaged artifact is recompiled, not fatal.
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let mut bytes = std::fs::read(&artifacts[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifacts[0], &bytes).unwrap();
    let third = new_runtime();
    let recompiled = load_with(&third);
    assert_eq!(recompiled.timings().artifact, ArtifactSource::Compiled);
    assert_eq!(third.artifact_counters().compiled, 1);
    let mut runner = recompiled.transform().unwrap();
    assert_eq!(runner.process(&[ok_event(8)]), [Outcome::Ok(vec![ok_event(8)])]);
}

/// Large batches (1024 ~300-byte events with keys) come back intact from
/// the guest, call after call, as do one-event calls and fresh instances.
/// (The figures of these calls are in `tests/benches/plugin_calls.rs`.)
#[test]
fn large_batches_and_many_calls_echo_intact() {
    let plugin = load(&PluginLimits::default(), serde_json::Value::Null).unwrap();
    let mut runner = plugin.transform().unwrap();
    let before = plugin.stats().snapshot();
    let padding = "x".repeat(270);
    let batch: Vec<Event> = (0..1024)
        .map(|i| {
            let mut e = request(serde_json::json!({"do": "ok", "user": i, "pad": padding}));
            e.key = Some(format!("user-{i}").into_bytes());
            e
        })
        .collect();
    // Values the guest cannot parse cross the boundary unchanged too.
    let raw: Vec<Event> = batch.iter().map(|e| Event { value: vec![b'x'; e.value.len()], ..e.clone() }).collect();
    for input in [&batch, &raw].into_iter().cycle().take(20) {
        let outcomes = runner.process(input);
        assert_eq!(outcomes.len(), input.len());
        assert!(outcomes.iter().zip(input.iter()).all(|(o, e)| *o == Outcome::Ok(vec![e.clone()])), "an event changed");
    }
    let one = [ok_event(1)];
    for _ in 0..1000 {
        assert_eq!(runner.process(&one), [Outcome::Ok(vec![ok_event(1)])]);
    }
    for i in 0..5 {
        let mut fresh = plugin.transform().unwrap();
        assert_eq!(fresh.process(&[ok_event(i)]), [Outcome::Ok(vec![ok_event(i)])]);
    }
    let stats = plugin.stats().snapshot();
    assert_eq!((stats.traps, stats.retried_batches), (before.traps, before.retried_batches), "nothing trapped");
    assert_eq!(stats.calls - before.calls, 20 + 1000 + 5, "one call per batch");
}

/// The Python `sandbox-probe` plugin (a WASI guest) tries to reach files,
/// sockets, the environment and clocks: nothing works unless granted.
/// Uses the default artifact cache: compiling CPython takes ~40 s once.
#[test]
fn a_wasi_guest_gets_nothing_unless_granted() {
    use std::io::Read;
    use streamhost::config::DirGrant;

    let dir = repo_root().join("tests/plugins/sandbox-probe");
    let built = streamhost::build::build_plugin(&dir, None, false).unwrap_or_else(|e| panic!("{e}"));
    let runtime = PluginRuntime::new(RuntimeOptions { artifact_cache: None }).unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("secret.txt"), "granted content").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let probe = |grants: &PluginGrants, what: serde_json::Value| -> serde_json::Value {
        let plugin = runtime
            .load(
                "sandbox-probe",
                &built.output,
                Some(WorldName::Transform),
                &PluginLimits::default(),
                grants,
                &serde_json::Value::Null,
            )
            .unwrap();
        let mut runner = plugin.transform().unwrap();
        match &runner.process(&[request(what)])[0] {
            Outcome::Ok(out) => serde_json::from_slice(&out[0].value).unwrap(),
            Outcome::Failed(f) => panic!("probe failed: {f}"),
        }
    };
    let denied = |grants: &PluginGrants, what: serde_json::Value| {
        let seen = probe(grants, what.clone());
        assert_eq!(seen["ok"], false, "{what} must fail: {seen}");
        eprintln!("denied as expected: {seen}");
    };

    let nothing = PluginGrants::default();
    let secret = data.path().join("secret.txt");
    denied(&nothing, serde_json::json!({"do": "open-file", "path": secret}));
    denied(&nothing, serde_json::json!({"do": "open-file", "path": "/etc/passwd"}));
    denied(&nothing, serde_json::json!({"do": "list-dir", "path": "/"}));
    denied(&nothing, serde_json::json!({"do": "socket", "port": port}));
    denied(&nothing, serde_json::json!({"do": "resolve", "name": "localhost"}));
    assert_eq!(probe(&nothing, serde_json::json!({"do": "env"}))["observed"], serde_json::json!({}));
    // Without the grant the clock is logical: it starts at 2000-01-01 and
    // moves a microsecond per read, whatever the real time.
    let t = probe(&nothing, serde_json::json!({"do": "clock"}))["observed"].as_f64().unwrap();
    assert!((946_684_800.0..946_684_801.0).contains(&t), "logical clock read {t}");

    let read_only = PluginGrants {
        dirs: vec![DirGrant { host: data.path().into(), guest: "/data".into(), writable: false }],
        env: vec!["HOME".into(), "STREAMHOST_SURELY_UNSET_VARIABLE".into()],
        ..PluginGrants::default()
    };
    let read = probe(&read_only, serde_json::json!({"do": "open-file", "path": "/data/secret.txt"}));
    assert_eq!(read["observed"], "granted content", "{read}");
    denied(&read_only, serde_json::json!({"do": "write-file", "path": "/data/new.txt"}));
    denied(&read_only, serde_json::json!({"do": "open-file", "path": "/data/../etc/passwd"}));
    let env = probe(&read_only, serde_json::json!({"do": "env"}));
    assert_eq!(env["observed"], serde_json::json!({"HOME": std::env::var("HOME").unwrap()}), "{env}");

    let writable = PluginGrants {
        dirs: vec![DirGrant { host: data.path().into(), guest: "/data".into(), writable: true }],
        ..PluginGrants::default()
    };
    assert_eq!(probe(&writable, serde_json::json!({"do": "write-file", "path": "/data/new.txt"}))["ok"], true);
    assert!(data.path().join("new.txt").is_file());

    let clock = PluginGrants { clock: true, ..PluginGrants::default() };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let seen = probe(&clock, serde_json::json!({"do": "clock"}))["observed"].as_f64().unwrap();
    assert!((seen - now).abs() < 60.0, "granted clock reads {seen}, host {now}");

    let network = PluginGrants { network: true, ..PluginGrants::default() };
    listener.set_nonblocking(false).unwrap();
    let accepted = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = String::new();
        conn.read_to_string(&mut line).unwrap();
        line
    });
    let connected = probe(&network, serde_json::json!({"do": "socket", "port": port}));
    eprintln!("granted: {connected}");
    assert_eq!(connected["ok"], true, "{connected}");
    assert_eq!(accepted.join().unwrap(), "hello from sandbox-probe\n");
}

/// The UDF runner with the example `url-udf` plugin (Rust, SDK-built).
#[test]
fn udf_functions_are_listed_and_called_row_by_row() {
    use streamhost::plugin::{Scalar, ScalarType};

    let dir = repo_root().join("plugins/url-udf");
    let built = streamhost::build::build_plugin(&dir, None, false).unwrap_or_else(|e| panic!("{e}"));
    let load = |world| {
        shared_runtime().load(
            "url-udf",
            &built.output,
            world,
            &fast_limits(),
            &PluginGrants::default(),
            &serde_json::Value::Null,
        )
    };
    assert!(matches!(
        load(Some(WorldName::Transform)),
        Err(PluginError::WrongWorld { expected: WorldName::Transform, found: WorldName::Udf, .. })
    ));
    let plugin = load(Some(WorldName::Udf)).unwrap();
    assert!(matches!(plugin.transform(), Err(PluginError::WrongWorld { .. })));
    let mut udf = plugin.udf().unwrap();

    let bucket = udf.function("bucket").expect("bucket is exported");
    assert_eq!(bucket.params, [ScalarType::Str, ScalarType::Int]);
    assert_eq!(bucket.result, ScalarType::Int);
    assert!(udf.functions().iter().any(|f| f.name == "domain"));

    let url = |u: &str| vec![Scalar::Str(u.into())];
    let results = udf.call("domain", &[url("https://WWW.Example.com/a"), url(""), url("http://b.org:80")]);
    assert_eq!(results[0], Ok(Scalar::Str("www.example.com".into())));
    assert_eq!(results[1], Ok(Scalar::Null));
    assert_eq!(results[2], Ok(Scalar::Str("b.org".into())));

    let results = udf.call(
        "bucket",
        &[vec![Scalar::Str("u1".into()), Scalar::Int(10)], vec![Scalar::Str("u1".into()), Scalar::Int(0)]],
    );
    assert!(matches!(results[0], Ok(Scalar::Int(n)) if (0..10).contains(&n)), "{results:?}");
    assert!(
        matches!(&results[1], Err(f) if f.kind == FailureKind::Error && f.message.contains("positive")),
        "{results:?}"
    );

    let results = udf.call("no_such_function", &[url("x"), url("y")]);
    assert!(results.iter().all(|r| matches!(r, Err(f) if f.kind == FailureKind::Error)), "{results:?}");

    let stats = plugin.stats().snapshot();
    assert_eq!((stats.events_in, stats.events_out, stats.errors, stats.traps), (7, 4, 3, 0));
}

/// A WASI guest blocked in a host call (a long `time.sleep`) still times out
/// at its budget: epoch interruption only stops wasm code, so guest timers
/// are bounded by the call's deadline. Short sleeps work as asked.
#[test]
fn a_sleeping_wasi_guest_times_out_at_its_budget() {
    captured_log_line("");
    let dir = repo_root().join("tests/plugins/hostile/python");
    let built = streamhost::build::build_plugin(&dir, None, false).unwrap_or_else(|e| panic!("{e}"));
    let runtime = PluginRuntime::new(RuntimeOptions { artifact_cache: None }).unwrap();
    for clock in [false, true] {
        let limits = PluginLimits { batch_timeout_ms: 300, ..PluginLimits::default() };
        let grants = PluginGrants { clock, ..PluginGrants::default() };
        let plugin =
            runtime.load("hostile-python", &built.output, None, &limits, &grants, &serde_json::Value::Null).unwrap();
        let mut runner = plugin.transform().unwrap();
        let sleep = |seconds: f64| request(serde_json::json!({"do": "sleep", "seconds": seconds}));
        let started = Instant::now();
        let outcomes = runner.process(&[sleep(0.05), sleep(30.0), request(serde_json::json!({"do": "print"}))]);
        let took = started.elapsed();
        assert_eq!(kind(&outcomes[0]), None, "clock {clock}: {:?}", outcomes[0]);
        assert_eq!(kind(&outcomes[1]), Some(FailureKind::Timeout), "clock {clock}: {:?}", outcomes[1]);
        assert_eq!(kind(&outcomes[2]), None, "clock {clock}: {:?}", outcomes[2]);
        // The guest's stdout and stderr go to the host log, not to stdout.
        let stdout = captured_log_line("hostile-python says hello on stdout").expect("stdout line");
        assert!(stdout.contains("INFO") && stdout.contains("stream=\"stdout\""), "{stdout}");
        let stderr = captured_log_line("hostile-python says hello on stderr").expect("stderr line");
        assert!(stderr.contains("WARN") && stderr.contains("stream=\"stderr\""), "{stderr}");
        // The batch call and the retry of the sleeper each take one budget.
        assert!(took < Duration::from_secs(3), "clock {clock}: took {took:?}");
        if clock {
            // A granted clock is real time: the short sleep really slept.
            let started = Instant::now();
            assert_eq!(kind(&runner.process(&[sleep(0.1)])[0]), None);
            assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
        }
    }
}
