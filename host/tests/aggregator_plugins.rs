//! Aggregator (UDAF) plugins built from source, driven through
//! `AggregatorRunner` as a window-aggregate step drives it: the Rust and
//! Python smoothed-CTR examples (`plugins/ctr-udaf-*`) against a reference
//! computed here from the raw events, over random batches split into random
//! panes (add per pane, merge the panes, finish); and a plugin that panics,
//! loops or grows its state on one event (`tests/plugins/hostile-aggregator`)
//! losing only that event.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use streamhost::config::{PluginGrants, PluginLimits, WorldName};
use streamhost::event::Event;
use streamhost::plugin::{AggregatorRunner, Failure, FailureKind, LoadedPlugin, PluginError};

use common::{build, shared_runtime};

fn load(name: &str, rel: &str, limits: &PluginLimits, config: &Value) -> Result<Arc<LoadedPlugin>, PluginError> {
    let wasm = build(rel, WorldName::Aggregator);
    shared_runtime().load(name, &wasm, Some(WorldName::Aggregator), limits, &PluginGrants::default(), config)
}

/// splitmix64: a deterministic generator, so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A random stream: keyed click / impression events, 2 % of them not JSON
/// objects (which the plugins refuse).
fn stream(rng: &mut Rng, n: usize, keys: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let key = format!("u{}", rng.range(0, keys - 1));
            let value = if rng.chance(2) {
                json!([i])
            } else {
                let kind = if rng.chance(30) { "click" } else if rng.chance(50) { "impression" } else { "view" };
                json!({"type": kind, "user": key, "i": i})
            };
            let mut e = Event::from_value(value.to_string().into_bytes(), i as i64);
            e.key = Some(key.into_bytes());
            e
        })
        .collect()
}

/// Clicks and impressions per key, from the raw events (non-objects skipped).
fn reference(events: &[Event]) -> BTreeMap<Vec<u8>, (u64, u64)> {
    let mut counts = BTreeMap::new();
    for e in events {
        let v: Value = serde_json::from_slice(&e.value).unwrap();
        let Some(record) = v.as_object() else { continue };
        let entry: &mut (u64, u64) = counts.entry(e.key.clone().unwrap()).or_default();
        if record.get("type") == Some(&json!("click")) {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    counts
}

/// One pane's accumulators, by key (in first-seen order).
#[derive(Default)]
struct Pane {
    keys: Vec<Vec<u8>>,
    states: Vec<Vec<u8>>,
}

/// Folds `events` into panes as a window-aggregate step would: each pane's
/// events in random batches, one `add` call per batch over the pane's
/// touched accumulators. Returns the panes and the failed events' indices
/// in `events` (with their failures).
fn fold_into_panes(runner: &mut AggregatorRunner, rng: &mut Rng, events: &[Event], panes: usize) -> (Vec<Pane>, Vec<(usize, Failure)>) {
    let empty = runner.create().expect("create");
    let mut out: Vec<Pane> = (0..panes).map(|_| Pane::default()).collect();
    let mut failed = Vec::new();
    // Each event goes to a random pane; a pane sees its events in arrival order.
    let mut by_pane: Vec<Vec<usize>> = vec![Vec::new(); panes];
    for i in 0..events.len() {
        by_pane[rng.range(0, panes - 1)].push(i);
    }
    for (pane, indices) in out.iter_mut().zip(&by_pane) {
        let mut rest = &indices[..];
        while !rest.is_empty() {
            let take = rng.range(1, 64).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            let batch: Vec<Event> = chunk.iter().map(|&i| events[i].clone()).collect();
            // Only the accumulators this batch touches go in, as the step does.
            let mut touched: Vec<usize> = Vec::new();
            let groups: Vec<u32> = batch
                .iter()
                .map(|e| {
                    let key = e.key.clone().unwrap();
                    let k = pane.keys.iter().position(|x| *x == key).unwrap_or_else(|| {
                        pane.keys.push(key);
                        pane.states.push(empty.clone());
                        pane.keys.len() - 1
                    });
                    let g = touched.iter().position(|&t| t == k).unwrap_or_else(|| {
                        touched.push(k);
                        touched.len() - 1
                    });
                    g as u32
                })
                .collect();
            let states: Vec<Vec<u8>> = touched.iter().map(|&k| pane.states[k].clone()).collect();
            let result = runner.add(states, &batch, &groups);
            assert_eq!(result.states.len(), touched.len());
            for (k, state) in touched.iter().zip(result.states) {
                pane.states[*k] = state;
            }
            failed.extend(result.failed.into_iter().map(|(i, f)| (chunk[i], f)));
        }
    }
    (out, failed)
}

/// Merges every pane's accumulator of each key, then finishes them: the
/// value of each key.
fn merge_and_finish(runner: &mut AggregatorRunner, panes: Vec<Pane>) -> BTreeMap<Vec<u8>, Value> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let (mut states, mut into) = (Vec::new(), Vec::new());
    for pane in panes {
        for (key, state) in pane.keys.into_iter().zip(pane.states) {
            let k = keys.iter().position(|x| *x == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            });
            states.push(state);
            into.push(k as u32);
        }
    }
    let merged = runner.merge(states, &into, keys.len() as u32).expect("merge");
    assert_eq!(merged.len(), keys.len());
    let values = runner.finish(merged, false);
    keys.into_iter().zip(values).map(|(k, v)| (k, v.expect("finish"))).collect()
}

#[test]
fn rust_and_python_smoothed_ctr_match_the_reference_over_random_panes() {
    let (a, b) = (2.0, 7.0);
    let config = json!({"a": a, "b": b});
    let limits = PluginLimits::default();
    let rust = load("ctr-udaf-rust", "plugins/ctr-udaf-rust", &limits, &config).unwrap();
    let python = load("ctr-udaf-python", "plugins/ctr-udaf-python", &limits, &config).unwrap();
    for plugin in [&rust, &python] {
        let mut runner = plugin.aggregator().expect("aggregator runner");
        for seed in 0..8u64 {
            let mut rng = Rng(seed * 7919 + 1);
            let n = rng.range(1, 700);
            let keys = rng.range(1, 9);
            let events = stream(&mut rng, n, keys);
            let panes = rng.range(1, 6);
            let (folded, failed) = fold_into_panes(&mut runner, &mut rng, &events, panes);
            let values = merge_and_finish(&mut runner, folded);

            let name = plugin.name();
            let refused: Vec<usize> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| !serde_json::from_slice::<Value>(&e.value).unwrap().is_object())
                .map(|(i, _)| i)
                .collect();
            let mut failed_at: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
            failed_at.sort();
            assert_eq!(failed_at, refused, "{name} seed {seed}: exactly the non-objects fail");
            for (_, f) in &failed {
                assert_eq!(f.kind, FailureKind::Error, "{name} seed {seed}: {f}");
                assert!(f.message.contains("expected a JSON object"), "{name}: {f}");
            }

            let want = reference(&events);
            // A key whose every event failed still has an (empty) accumulator.
            let counted: BTreeMap<Vec<u8>, (u64, u64)> = values
                .iter()
                .map(|(k, v)| (k.clone(), (v["clicks"].as_u64().unwrap(), v["impressions"].as_u64().unwrap())))
                .filter(|(_, c)| *c != (0, 0))
                .collect();
            assert_eq!(counted, want, "{name} seed {seed}: counts per key");
            for (key, v) in &values {
                let (clicks, impressions) = want.get(key).copied().unwrap_or((0, 0));
                let ctr = (clicks as f64 + a) / (impressions as f64 + a + b);
                let got = v["ctr"].as_f64().unwrap();
                assert!((got - ctr).abs() <= 1e-9, "{name} seed {seed}: ctr {got} vs {ctr}");
            }
        }
        let stats = plugin.stats().snapshot();
        assert_eq!(stats.retried_batches, 0, "{}: an error is not a failed call", plugin.name());
        assert_eq!(stats.traps, 0);
    }
}

#[test]
fn create_is_asked_once_and_a_bad_config_refuses_the_plugin() {
    let plugin = load("ctr-udaf-rust-once", "plugins/ctr-udaf-rust", &PluginLimits::default(), &Value::Null).unwrap();
    let mut runner = plugin.aggregator().unwrap();
    let calls = plugin.stats().snapshot().calls;
    let empty = runner.create().unwrap();
    assert_eq!(runner.create().unwrap(), empty);
    assert_eq!(plugin.stats().snapshot().calls, calls + 1, "the empty accumulator is cached");
    // Default prior (1, 10) on an empty accumulator (serde_json reads floats
    // back within a few ulps, not always to the nearest double).
    let v = runner.finish(vec![empty], false).remove(0).unwrap();
    assert_eq!((v["clicks"].as_u64(), v["impressions"].as_u64()), (Some(0), Some(0)));
    assert!((v["ctr"].as_f64().unwrap() - 1.0 / 11.0).abs() < 1e-15, "{v}");

    let err = load("ctr-bad", "plugins/ctr-udaf-rust", &PluginLimits::default(), &json!({"a": -1})).unwrap_err().to_string();
    assert!(err.contains("non-negative"), "{err}");
    let err = load("ctr-bad-py", "plugins/ctr-udaf-python", &PluginLimits::default(), &json!({"c": 1})).unwrap_err().to_string();
    assert!(err.contains("unknown config fields"), "{err}");
}

#[test]
fn an_aggregator_is_refused_where_another_world_is_expected() {
    let wasm = build("plugins/ctr-udaf-rust", WorldName::Aggregator);
    let err = shared_runtime()
        .load("agg", &wasm, Some(WorldName::Transform), &PluginLimits::default(), &PluginGrants::default(), &Value::Null)
        .unwrap_err();
    assert!(matches!(err, PluginError::WrongWorld { found: WorldName::Aggregator, .. }), "{err}");
    let plugin = shared_runtime()
        .load("agg", &wasm, None, &PluginLimits::default(), &PluginGrants::default(), &Value::Null)
        .unwrap();
    assert_eq!(plugin.world(), WorldName::Aggregator);
    assert!(matches!(plugin.transform(), Err(PluginError::WrongWorld { .. })));
}

fn hostile(limits: &PluginLimits) -> Arc<LoadedPlugin> {
    load("hostile-aggregator", "tests/plugins/hostile-aggregator", limits, &Value::Null).unwrap()
}

fn act(what: &str, n: i64) -> Event {
    Event::from_value(json!({"do": what, "n": n}).to_string().into_bytes(), n)
}

/// The `ns` each accumulator holds, through `finish`.
fn ns(runner: &mut AggregatorRunner, states: &[Vec<u8>]) -> Vec<Vec<i64>> {
    runner
        .finish(states.to_vec(), false)
        .into_iter()
        .map(|v| v.unwrap()["ns"].as_array().unwrap().iter().map(|n| n.as_i64().unwrap()).collect())
        .collect()
}

#[test]
fn a_udaf_that_panics_or_loops_on_one_event_loses_only_that_event() {
    let limits = PluginLimits { batch_timeout_ms: 200, ..PluginLimits::default() };
    let plugin = hostile(&limits);
    let mut runner = plugin.aggregator().unwrap();
    let empty = runner.create().unwrap();
    // 40 events over 3 groups, already holding [-1], [] and [-3].
    let start = vec![runner.add(vec![empty.clone()], &[act("ok", -1)], &[0]).states.remove(0), empty.clone(), runner.add(vec![empty], &[act("ok", -3)], &[0]).states.remove(0)];
    let what = |i: i64| match i {
        5 => "error",
        17 => "panic",
        30 => "loop",
        _ => "ok",
    };
    let events: Vec<Event> = (0..40).map(|i| act(what(i), i)).collect();
    let groups: Vec<u32> = (0..40).map(|i| (i * 7 % 3) as u32).collect();
    let before = plugin.stats().snapshot();
    let result = runner.add(start.clone(), &events, &groups);

    let failed: Vec<(usize, FailureKind)> = result.failed.iter().map(|(i, f)| (*i, f.kind)).collect();
    assert_eq!(failed, vec![(5, FailureKind::Error), (17, FailureKind::Trap), (30, FailureKind::Timeout)]);
    assert!(result.failed[1].1.message.contains("panics on request"), "{}", result.failed[1].1);
    // Every other event folded once, in arrival order, after the old contents.
    let mut want: Vec<Vec<i64>> = vec![vec![-1], vec![], vec![-3]];
    for i in 0..40 {
        if ![5, 17, 30].contains(&i) {
            want[groups[i as usize] as usize].push(i);
        }
    }
    assert_eq!(ns(&mut runner, &result.states), want);
    let after = plugin.stats().snapshot();
    assert_eq!(after.retried_batches - before.retried_batches, 1);
    assert_eq!(after.events_in - before.events_in, 40);
    assert_eq!(after.errors - before.errors, 1);
    assert_eq!(after.traps - before.traps, 2, "a timeout counts as a trap too");
    assert_eq!(after.timeouts - before.timeouts, 1);

    // The rebuilt instance folds a clean batch in one call.
    let calls = plugin.stats().snapshot().calls;
    let again = runner.add(result.states, &[act("ok", 100)], &[1]);
    assert!(again.failed.is_empty());
    assert_eq!(plugin.stats().snapshot().calls, calls + 1);
    assert_eq!(ns(&mut runner, &again.states)[1].last(), Some(&100));
}

#[test]
fn an_accumulator_over_max_state_bytes_fails_its_groups_events() {
    let plugin = hostile(&PluginLimits::default());
    let mut runner = plugin.aggregator().unwrap();
    let empty = runner.create().unwrap();
    let events = vec![act("ok", 1), act("ok", 2), act("grow", 3), act("ok", 4), act("error", 5)];
    let groups = [0, 1, 1, 0, 1];
    let result = runner.add(vec![empty.clone(), empty.clone()], &events, &groups);
    let failed: Vec<(usize, FailureKind)> = result.failed.iter().map(|(i, f)| (*i, f.kind)).collect();
    assert_eq!(failed, vec![(1, FailureKind::Limit), (2, FailureKind::Limit), (4, FailureKind::Error)]);
    assert!(result.failed[0].1.message.contains("over limits.max_state_bytes = 65536"), "{}", result.failed[0].1);
    assert_eq!(result.states[1], empty, "the group over the limit keeps its old bytes");
    assert_eq!(ns(&mut runner, &result.states), vec![vec![1, 4], vec![]]);
    assert_eq!(plugin.stats().snapshot().limit_violations, 2);

    // A merge whose output outgrows the limit fails as a whole.
    let roomy = load("hostile-roomy", "tests/plugins/hostile-aggregator", &PluginLimits { max_state_bytes: 1 << 20, ..PluginLimits::default() }, &Value::Null).unwrap();
    let mut big = roomy.aggregator().unwrap();
    let grown = big.add(vec![empty.clone()], &[act("grow", 1)], &[0]);
    assert!(grown.failed.is_empty(), "{:?}", grown.failed);
    assert!(grown.states[0].len() > 100 << 10);
    let err = runner.merge(vec![grown.states[0].clone(), empty.clone()], &[0, 0], 1).unwrap_err();
    assert_eq!(err.kind, FailureKind::Limit, "{err}");
    // Within the limit the same merge works.
    assert_eq!(big.merge(vec![grown.states[0].clone(), empty], &[0, 0], 1).unwrap().len(), 1);
}

#[test]
fn partial_reaches_the_plugin_and_a_finish_trap_fails_only_its_window() {
    let plugin = hostile(&PluginLimits::default());
    let mut runner = plugin.aggregator().unwrap();
    let empty = runner.create().unwrap();
    let folded = runner.add(vec![empty.clone(), empty.clone(), empty], &[act("ok", 1), act("ok", 666), act("ok", 3)], &[0, 1, 2]);
    assert!(folded.failed.is_empty());
    let partial = runner.finish(folded.states.clone(), true);
    assert_eq!(partial[0], Ok(json!({"ns": [1], "partial": true})));
    assert!(partial[1].as_ref().unwrap_err().contains("finish panics on 666"), "{:?}", partial[1]);
    assert_eq!(partial[2], Ok(json!({"ns": [3], "partial": true})));
    let done = runner.finish(folded.states, false);
    assert_eq!((&done[0], &done[2]), (&Ok(json!({"ns": [1], "partial": false})), &Ok(json!({"ns": [3], "partial": false}))));
}

#[test]
fn bad_calls_from_the_caller_fail_clearly() {
    let plugin = hostile(&PluginLimits::default());
    let mut runner = plugin.aggregator().unwrap();
    let empty = runner.create().unwrap();
    let r = runner.add(vec![empty.clone()], &[act("ok", 1), act("ok", 2)], &[0, 1]);
    assert_eq!(r.states, vec![empty.clone()]);
    assert_eq!(r.failed.len(), 2);
    assert!(r.failed[0].1.message.contains("group 1 of 1 accumulators"), "{}", r.failed[0].1);
    let e = runner.merge(vec![empty.clone()], &[2], 2).unwrap_err();
    assert!(e.message.contains("target 2 of 2 outputs"), "{e}");
    let e = runner.merge(vec![empty], &[], 1).unwrap_err();
    assert!(e.message.contains("0 targets for 1 accumulators"), "{e}");
    assert!(runner.finish(Vec::new(), false).is_empty());
}

/// What one `add` costs per event, printed (not asserted: the machine is
/// shared): 20,480 events in batches of 1,024 over 64 keys, through the
/// Rust and the Python example.
#[test]
fn add_cost_per_event_is_printed() {
    let limits = PluginLimits::default();
    for (name, rel) in [("ctr-udaf-rust", "plugins/ctr-udaf-rust"), ("ctr-udaf-python", "plugins/ctr-udaf-python")] {
        let plugin = load(name, rel, &limits, &Value::Null).unwrap();
        let mut runner = plugin.aggregator().unwrap();
        let empty = runner.create().unwrap();
        let mut rng = Rng(42);
        let events = stream(&mut rng, 1024, 64);
        let groups: Vec<u32> = events.iter().map(|e| std::str::from_utf8(&e.key.as_ref().unwrap()[1..]).unwrap().parse().unwrap()).collect();
        let mut states = vec![empty; 64];
        let started = std::time::Instant::now();
        for _ in 0..20 {
            states = runner.add(states, &events, &groups).states;
        }
        let per_event = started.elapsed().as_nanos() as f64 / (20.0 * 1024.0);
        let total: u64 = runner.finish(states, false).into_iter().map(|v| v.unwrap()["impressions"].as_u64().unwrap()).sum();
        assert!(total > 0);
        eprintln!("[aggregator_plugins] {name}: add {per_event:.0} ns/event (batches of 1024 over 64 groups)");
    }
}

/// A runner from the registry follows a hot swap between calls: the
/// accumulators stay the caller's and the new version (here the Python
/// example replacing the Rust one, same state layout, another prior) reads
/// them; the empty accumulator is asked of the new version once.
#[test]
fn a_swap_keeps_the_accumulators_and_asks_the_new_version_for_create() {
    use streamhost::plugin::{PluginRegistry, SampleSettings, Version};
    let limits = PluginLimits::default();
    let v1 = load("ctr", "plugins/ctr-udaf-rust", &limits, &Value::Null).unwrap();
    let registry = PluginRegistry::new([(v1.clone(), Value::Null)], SampleSettings::default());
    let mut runner = registry.aggregator("ctr").unwrap();
    let empty = runner.create().unwrap();
    let events: Vec<Event> = ["click", "view", "view"].iter().map(|k| Event::from_value(json!({"type": k}).to_string().into_bytes(), 0)).collect();
    let folded = runner.add(vec![empty], &events, &[0, 0, 0]);
    assert!(folded.failed.is_empty());

    let config = json!({"a": 2, "b": 3});
    let v2 = load("ctr", "plugins/ctr-udaf-python", &limits, &config).unwrap();
    registry.slot("ctr").unwrap().publish(Version::new(v2.clone(), config), false, None);
    let calls = v2.stats().snapshot().calls;
    runner.create().unwrap();
    assert_eq!(v2.stats().snapshot().calls, calls + 1, "the new version's create, not the cached bytes");
    assert_eq!(runner.plugin().hash(), v2.hash());
    let more = runner.add(folded.states, &events[..1], &[0]);
    let v = runner.finish(more.states, false).remove(0).unwrap();
    assert_eq!((v["clicks"].as_u64(), v["impressions"].as_u64()), (Some(2), Some(2)), "{v}");
    assert!((v["ctr"].as_f64().unwrap() - (2.0 + 2.0) / (2.0 + 2.0 + 3.0)).abs() < 1e-12, "{v}");
}
