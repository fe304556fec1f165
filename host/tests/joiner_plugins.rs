//! Joiner plugins built from source: the Rust, Python and Go sample joiners
//! (`plugins/sample-joiner-*`) give the same training samples, and a
//! joiner that panics or loops on one main event fails only that one
//! (`tests/plugins/hostile-joiner`).

mod common;

use std::sync::Arc;

use serde_json::{json, Value};
use streamhost::config::{PluginGrants, PluginLimits, WorldName};
use streamhost::event::Event;
use streamhost::plugin::{FailureKind, JoinCase, LoadedPlugin, Outcome, PluginError};

use common::{build, shared_runtime};

fn load(name: &str, rel: &str, limits: &PluginLimits) -> Result<Arc<LoadedPlugin>, PluginError> {
    let wasm = build(rel, WorldName::Joiner);
    shared_runtime().load(name, &wasm, Some(WorldName::Joiner), limits, &PluginGrants::default(), &Value::Null)
}

fn ev(v: Value, t: i64) -> Event {
    let mut e = Event::from_value(v.to_string().into_bytes(), t);
    e.key = Some(b"k".to_vec());
    e
}

fn impression(n: usize) -> Event {
    ev(json!({"request_id": format!("r{n}"), "user_id": "u1", "item_id": format!("i{n}"), "device": "ios", "position": n}), 1000 + n as i64)
}

/// (main, clicks, likes) of a small batch: several clicks, none, a main
/// without ids (fails), matches of another input only.
fn batch() -> Vec<(Event, Vec<Event>, Vec<Event>)> {
    let click = |d: i64, t: i64| ev(json!({"dwell_ms": d}), t);
    vec![
        (impression(1), vec![click(100, 1001), click(50, 1002)], vec![]),
        (impression(2), vec![], vec![]),
        (ev(json!({"user_id": "u"}), 3), vec![click(1, 4)], vec![]),
        (impression(4), vec![], vec![ev(json!({"like": true}), 1005)]),
        (impression(5), vec![ev(json!({"no_dwell": 1}), 1006)], vec![]),
    ]
}

fn run(plugin: &Arc<LoadedPlugin>, cases: &[(Event, Vec<Event>, Vec<Event>)]) -> Vec<Outcome> {
    let mut runner = plugin.joiner().expect("joiner runner");
    let inputs = vec!["clicks".to_string(), "likes".to_string()];
    let cases: Vec<JoinCase<'_>> = cases
        .iter()
        .map(|(main, clicks, likes)| JoinCase { main, matches: vec![clicks.iter().collect(), likes.iter().collect()] })
        .collect();
    runner.join(&inputs, &cases)
}

fn values(outcomes: &[Outcome]) -> Vec<Result<Vec<(Value, i64)>, FailureKind>> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Ok(events) => Ok(events.iter().map(|e| (serde_json::from_slice(&e.value).unwrap(), e.timestamp)).collect()),
            Outcome::Failed(f) => Err(f.kind),
        })
        .collect()
}

#[test]
fn rust_python_and_go_sample_joiners_make_the_same_samples() {
    let limits = PluginLimits::default();
    let rust = load("sample-joiner-rust", "plugins/sample-joiner-rust", &limits).unwrap();
    let python = load("sample-joiner-python", "plugins/sample-joiner-python", &limits).unwrap();
    let go = load("sample-joiner-go", "plugins/sample-joiner-go", &limits).unwrap();
    assert_eq!((rust.world(), python.world(), go.world()), (WorldName::Joiner, WorldName::Joiner, WorldName::Joiner));
    let cases = batch();
    let (r, p, g) = (run(&rust, &cases), run(&python, &cases), run(&go, &cases));
    let want = vec![
        Ok(vec![(json!({"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios","position":1,"label":1,"clicks":2,"dwell_ms":150}), 1001)]),
        Ok(vec![(json!({"request_id":"r2","user_id":"u1","item_id":"i2","device":"ios","position":2,"label":0,"clicks":0,"dwell_ms":0}), 1002)]),
        Err(FailureKind::Error),
        Ok(vec![(json!({"request_id":"r4","user_id":"u1","item_id":"i4","device":"ios","position":4,"label":0,"clicks":0,"dwell_ms":0}), 1004)]),
        Ok(vec![(json!({"request_id":"r5","user_id":"u1","item_id":"i5","device":"ios","position":5,"label":1,"clicks":1,"dwell_ms":0}), 1005)]),
    ];
    assert_eq!(values(&r), want, "rust");
    assert_eq!(values(&p), want, "python");
    assert_eq!(values(&g), want, "go");
    // Byte for byte too (all write compact JSON with sorted keys), key kept.
    for ((a, b), c) in r.iter().zip(&p).zip(&g) {
        if let (Outcome::Ok(a), Outcome::Ok(b), Outcome::Ok(c)) = (a, b, c) {
            assert_eq!(a, b);
            assert_eq!(a, c);
            assert_eq!(a[0].key.as_deref(), Some(&b"k"[..]));
        }
    }
    for failed in [&r[2], &p[2], &g[2]] {
        match failed {
            Outcome::Failed(f) => assert!(f.message.contains("request_id"), "{f}"),
            other => panic!("{other:?}"),
        }
    }
    let stats = rust.stats().snapshot();
    assert_eq!((stats.events_in, stats.events_out, stats.errors, stats.retried_batches), (5, 4, 1, 0));
    let stats = go.stats().snapshot();
    assert_eq!((stats.events_in, stats.events_out, stats.errors, stats.retried_batches), (5, 4, 1, 0));
}

#[test]
fn a_joiner_that_panics_or_loops_fails_only_that_main_event() {
    let limits = PluginLimits { batch_timeout_ms: 200, ..PluginLimits::default() };
    let plugin = load("hostile-joiner", "tests/plugins/hostile-joiner", &limits).unwrap();
    let main = |what: &str, n: usize| ev(json!({"do": what, "n": n}), n as i64);
    let m = |n: i64| ev(json!({"m": n}), n);
    let cases = vec![
        (main("ok", 0), vec![m(1), m(2)], vec![m(3)]),
        (main("panic", 1), vec![m(4)], vec![]),
        (main("ok", 2), vec![], vec![]),
        (main("error", 3), vec![], vec![]),
        (main("loop", 4), vec![m(5)], vec![]),
        (main("ok", 5), vec![], vec![m(6)]),
    ];
    let out = values(&run(&plugin, &cases));
    let ok = |n: usize, matches: usize| Ok(vec![(json!({"do": "ok", "n": n, "matches": matches}), n as i64)]);
    assert_eq!(
        out,
        vec![ok(0, 3), Err(FailureKind::Trap), ok(2, 0), Err(FailureKind::Error), Err(FailureKind::Timeout), ok(5, 1)]
    );
    let stats = plugin.stats().snapshot();
    assert_eq!(stats.retried_batches, 1);
    assert_eq!(stats.traps, 2);
    // The instance was rebuilt and still works for a clean batch, in one call.
    let calls = stats.calls;
    let out = values(&run(&plugin, &cases[..1]));
    assert_eq!(out, vec![ok(0, 3)]);
    assert_eq!(plugin.stats().snapshot().calls, calls + 1);
}

#[test]
fn a_joiner_is_refused_where_a_transform_is_expected() {
    let wasm = build("tests/plugins/hostile-joiner", WorldName::Joiner);
    let err = shared_runtime()
        .load("hj", &wasm, Some(WorldName::Transform), &PluginLimits::default(), &PluginGrants::default(), &Value::Null)
        .unwrap_err();
    assert!(matches!(err, PluginError::WrongWorld { found: WorldName::Joiner, .. }), "{err}");
    let plugin = load("hj", "tests/plugins/hostile-joiner", &PluginLimits::default()).unwrap();
    assert!(plugin.transform().is_err());
}
