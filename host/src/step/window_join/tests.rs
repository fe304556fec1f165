//! The join against a nested-loop reference over random, out-of-order
//! inputs: both modes, both emit policies, two and three inputs, late
//! events, on both state backends.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::WindowJoin;
use crate::config::{EmitPolicy, JoinMode, JoinWindow, JoinerConfig, WindowJoinConfig};
use crate::dead_letter::{DeadKind, DeadLetter};
use crate::event::{Batch, Event, Origin};
use crate::state::StateBackend;
use crate::step::{Operator, StepContext};

/// One step of a scenario: an event arriving on an input, or the watermark
/// advancing.
#[derive(Clone, Debug)]
enum Op {
    Event { port: usize, key: u8, time: i64 },
    Watermark(i64),
}

#[derive(Clone, Debug)]
struct Scenario {
    inputs: usize,
    start: i64,
    end: i64,
    lateness: i64,
    bucket: Option<u64>,
    mode: JoinMode,
    emit: EmitPolicy,
    ops: Vec<Op>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let ops = proptest::collection::vec(
        prop_oneof![
            4 => (0usize..3, 0u8..3, 0i64..60).prop_map(|(port, key, time)| Op::Event { port, key, time }),
            1 => (0i64..70).prop_map(Op::Watermark),
        ],
        0..60,
    );
    (
        2usize..=3,
        -5i64..5,
        0i64..15,
        0i64..4,
        proptest::option::of(1u64..12),
        prop_oneof![Just(JoinMode::Inner), Just(JoinMode::Left)],
        prop_oneof![Just(EmitPolicy::OnWindowEnd), Just(EmitPolicy::OnMatch)],
        ops,
    )
        .prop_map(|(inputs, start, len, lateness, bucket, mode, emit, ops)| {
            let ops = ops
                .into_iter()
                .map(|op| match op {
                    Op::Event { port, key, time } => Op::Event { port: port % inputs, key, time },
                    w => w,
                })
                .collect();
            Scenario { inputs, start, end: start + len, lateness, bucket, mode, emit, ops }
        })
}

fn names(n: usize) -> Vec<String> {
    ["imp", "click", "like"][..n].iter().map(|s| s.to_string()).collect()
}

fn config(s: &Scenario) -> WindowJoinConfig {
    let inputs = names(s.inputs);
    WindowJoinConfig {
        keys: inputs.iter().map(|i| (i.clone(), crate::config::JoinKey::Field("$.k".to_string()))).collect(),
        inputs,
        window: JoinWindow { start_ms: s.start, end_ms: s.end },
        mode: s.mode,
        emit: s.emit,
        allowed_lateness_ms: s.lateness as u64,
        bucket_ms: s.bucket,
        joiner: JoinerConfig::Merge { prefixes: BTreeMap::new() },
        max_matches: 1000,
    }
}

/// The value of the `n`th event of a scenario.
fn value(n: usize, port: usize, key: u8) -> Vec<u8> {
    json!({"k": format!("k{key}"), "n": n, "from": port}).to_string().into_bytes()
}

/// What the join did: outputs (value, time) after each op, and the numbers
/// of the events dead-lettered as late.
#[derive(Debug, PartialEq)]
struct Trace {
    outputs: Vec<Vec<(Value, i64)>>,
    late: Vec<usize>,
}

fn run_join(s: &Scenario, state: &mut dyn StateBackend) -> Trace {
    run_join_with(&mut WindowJoin::new("j", &config(s)), s, state)
}

fn run_join_with(join: &mut WindowJoin, s: &Scenario, state: &mut dyn StateBackend) -> Trace {
    run_join_restarting(join, s, state, None)
}

/// A restart before op `at`: the state is checkpointed into `dir` and
/// restored (on the same kind of backend), the join built anew.
struct Restart<'a> {
    at: usize,
    dir: &'a std::path::Path,
    rocks: bool,
}

fn run_join_restarting(join: &mut WindowJoin, s: &Scenario, state: &mut dyn StateBackend, restart: Option<Restart<'_>>) -> Trace {
    join.open_state(state).unwrap();
    let mut restored: Option<Box<dyn StateBackend>> = None;
    let mut restored_join = None;
    let mut watermark = i64::MIN;
    let mut trace = Trace { outputs: Vec::new(), late: Vec::new() };
    let ops = s.ops.iter().cloned().chain([Op::Watermark(i64::MAX)]);
    for (n, op) in ops.enumerate() {
        if let Some(r) = restart.as_ref().filter(|r| r.at == n) {
            let chk = r.dir.join("chk");
            let current: &mut dyn StateBackend = match restored.as_mut() {
                Some(b) => &mut **b,
                None => &mut *state,
            };
            current.checkpoint(&chk).unwrap();
            restored = Some(match r.rocks {
                true => crate::state::restore_rocksdb(&chk, &r.dir.join("restored"), &Default::default()).unwrap(),
                false => crate::state::restore_memory(&chk).unwrap(),
            });
            let mut fresh = WindowJoin::new("j", &config(s));
            fresh.open_state(&mut **restored.as_mut().unwrap()).unwrap();
            restored_join = Some(fresh);
        }
        let state: &mut dyn StateBackend = match restored.as_mut() {
            Some(b) => &mut **b,
            None => &mut *state,
        };
        let join: &mut WindowJoin = match restored_join.as_mut() {
            Some(j) => j,
            None => &mut *join,
        };
        let mut dead: Vec<DeadLetter> = Vec::new();
        let mut out = Vec::new();
        match op {
            Op::Event { port, key, time } => {
                let mut batch = Batch::default();
                let event = Event { key: None, value: value(n, port, key), timestamp: time, headers: vec![] };
                batch.push(event, Origin::new("s", n as u64));
                let mut ctx = StepContext { dead: &mut dead, input: port, watermark, state: &mut *state, failed: None };
                out.push(join.process_batch(batch, &mut ctx));
                assert_eq!(ctx.failed, None);
            }
            Op::Watermark(w) if w > watermark => {
                watermark = w;
                fire_all(join, w, &mut *state, &mut dead, &mut out);
            }
            Op::Watermark(_) => {}
        }
        record(&mut trace, dead, out);
    }
    trace
}

/// Lets `join` emit all that watermark `w` completes.
fn fire_all(join: &mut WindowJoin, w: i64, state: &mut dyn StateBackend, dead: &mut Vec<DeadLetter>, out: &mut Vec<Batch>) {
    for round in 0.. {
        assert!(round < 1000, "on_watermark({w}) never runs dry");
        let mut ctx = StepContext { dead: &mut *dead, input: 0, watermark: w, state: &mut *state, failed: None };
        let batch = join.on_watermark(w, &mut ctx);
        assert_eq!(ctx.failed, None);
        if batch.is_empty() {
            break;
        }
        out.push(batch);
    }
}

/// Adds one op's late events and outputs to `trace`.
fn record(trace: &mut Trace, dead: Vec<DeadLetter>, out: Vec<Batch>) {
    for d in dead {
        assert_eq!(d.kind, DeadKind::Late, "{}", d.reason);
        trace.late.push(d.origin.position as usize);
    }
    trace.outputs.push(out.into_iter().flat_map(|b| b.events).map(|e| (serde_json::from_slice(&e.value).unwrap(), e.timestamp)).collect());
}

/// The nested-loop reference: every arrived event in a list, matches found
/// by scanning all of them.
fn reference(s: &Scenario) -> Trace {
    struct Arrived {
        n: usize,
        port: usize,
        key: u8,
        time: i64,
        /// For main events: fired already.
        fired: bool,
        /// For main events: matched already (on-match).
        matched: bool,
    }
    let fire = |t: i64| t + s.end + s.lateness;
    let done = |t: i64| fire(t - s.start);
    let inputs = names(s.inputs);
    let merged = |m: &Arrived, groups: &[Vec<&Arrived>]| -> (Value, i64) {
        let mut obj = serde_json::from_slice::<Value>(&value(m.n, 0, m.key)).unwrap();
        for (k, group) in groups.iter().enumerate() {
            let prefix = format!("{}.", inputs[k + 1]);
            for o in group {
                let v: Value = serde_json::from_slice(&value(o.n, o.port, o.key)).unwrap();
                for (f, x) in v.as_object().unwrap() {
                    obj[format!("{prefix}{f}")] = x.clone();
                }
            }
            obj[format!("{prefix}count")] = json!(group.len());
        }
        (obj, m.time)
    };
    let matches = |m: &Arrived, o: &Arrived| o.port > 0 && o.key == m.key && m.time + s.start <= o.time && o.time <= m.time + s.end;
    // Matches of a main event: by input, then time, then arrival.
    let groups_of = |m: &Arrived, all: &[Arrived]| -> Vec<Vec<usize>> {
        (1..s.inputs)
            .map(|port| {
                let mut g: Vec<usize> = (0..all.len()).filter(|&i| all[i].port == port && matches(m, &all[i])).collect();
                g.sort_by_key(|&i| (all[i].time, all[i].n));
                g
            })
            .collect()
    };

    let mut all: Vec<Arrived> = Vec::new();
    let mut watermark = i64::MIN;
    let mut trace = Trace { outputs: Vec::new(), late: Vec::new() };
    let ops = s.ops.iter().cloned().chain([Op::Watermark(i64::MAX)]);
    for (n, op) in ops.enumerate() {
        let mut out = Vec::new();
        match op {
            Op::Event { port, key, time } => {
                let late = if port == 0 { fire(time) <= watermark } else { done(time) <= watermark };
                if late {
                    trace.late.push(n);
                } else {
                    let me = Arrived { n, port, key, time, fired: false, matched: false };
                    if s.emit == EmitPolicy::OnMatch {
                        if port == 0 {
                            let groups = groups_of(&me, &all);
                            for (k, g) in groups.iter().enumerate() {
                                for &i in g {
                                    let mut single: Vec<Vec<&Arrived>> = vec![Vec::new(); s.inputs - 1];
                                    single[k].push(&all[i]);
                                    out.push(merged(&me, &single));
                                }
                            }
                            let any = groups.iter().any(|g| !g.is_empty());
                            all.push(Arrived { matched: any, ..me });
                        } else {
                            let mut mains: Vec<usize> =
                                (0..all.len()).filter(|&i| all[i].port == 0 && !all[i].fired && matches(&all[i], &me)).collect();
                            mains.sort_by_key(|&i| (all[i].time, all[i].n));
                            for i in mains {
                                let mut single: Vec<Vec<&Arrived>> = vec![Vec::new(); s.inputs - 1];
                                single[port - 1].push(&me);
                                out.push(merged(&all[i], &single));
                                all[i].matched = true;
                            }
                            all.push(me);
                        }
                    } else {
                        all.push(me);
                    }
                }
            }
            Op::Watermark(w) if w > watermark => {
                watermark = w;
                let mut due: Vec<usize> = (0..all.len()).filter(|&i| all[i].port == 0 && !all[i].fired && fire(all[i].time) <= w).collect();
                due.sort_by_key(|&i| (fire(all[i].time), all[i].n));
                for i in due {
                    let m = &all[i];
                    match s.emit {
                        EmitPolicy::OnWindowEnd => {
                            let groups: Vec<Vec<&Arrived>> =
                                groups_of(m, &all).into_iter().map(|g| g.into_iter().map(|j| &all[j]).collect()).collect();
                            if s.mode == JoinMode::Left || groups.iter().any(|g| !g.is_empty()) {
                                out.push(merged(m, &groups));
                            }
                        }
                        EmitPolicy::OnMatch => {
                            if s.mode == JoinMode::Left && !m.matched {
                                out.push(merged(m, &vec![Vec::new(); s.inputs - 1]));
                            }
                        }
                    }
                    all[i].fired = true;
                }
            }
            Op::Watermark(_) => {}
        }
        trace.outputs.push(out);
    }
    trace
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_join_equals_the_nested_loop_reference_in_memory(s in scenario()) {
        let mut state = crate::state::open_memory();
        prop_assert_eq!(run_join(&s, &mut *state), reference(&s));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_join_equals_the_nested_loop_reference_on_rocksdb(s in scenario()) {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::state::open_rocksdb(&dir.path().join("db"), &Default::default()).unwrap();
        prop_assert_eq!(run_join(&s, &mut *state), reference(&s));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    /// A checkpoint and restore at any point changes nothing: what fired
    /// stays fired, what waits (main log, filters, buckets) comes back.
    #[test]
    fn a_restart_anywhere_equals_the_reference(s in scenario(), at in 0usize..64, rocks in proptest::bool::weighted(0.25)) {
        let dir = tempfile::tempdir().unwrap();
        let mut state = match rocks {
            true => crate::state::open_rocksdb(&dir.path().join("db"), &Default::default()).unwrap(),
            false => crate::state::open_memory(),
        };
        let at = at.min(s.ops.len());
        let restart = Restart { at, dir: dir.path(), rocks };
        let trace = run_join_restarting(&mut WindowJoin::new("j", &config(&s)), &s, &mut *state, Some(restart));
        prop_assert_eq!(trace, reference(&s));
    }
}

#[test]
fn a_three_way_join_fires_at_window_end_with_every_match() {
    // Impression at 100 (window [100, 160]); two clicks and a like inside,
    // a click outside, a click for another request.
    let s = Scenario {
        inputs: 3,
        start: 0,
        end: 60,
        lateness: 0,
        bucket: None,
        mode: JoinMode::Left,
        emit: EmitPolicy::OnWindowEnd,
        ops: vec![
            Op::Event { port: 1, key: 1, time: 110 },
            Op::Event { port: 0, key: 1, time: 100 },
            Op::Event { port: 2, key: 1, time: 160 },
            Op::Event { port: 1, key: 1, time: 161 },
            Op::Event { port: 1, key: 2, time: 120 },
            Op::Event { port: 1, key: 1, time: 100 },
            Op::Watermark(159),
            Op::Watermark(160),
            Op::Event { port: 0, key: 1, time: 90 },
        ],
    };
    let mut state = crate::state::open_memory();
    let trace = run_join(&s, &mut *state);
    assert!(trace.outputs[..7].iter().all(Vec::is_empty), "nothing before the window closes: {:?}", trace.outputs);
    let (out, t) = &trace.outputs[7][0];
    assert_eq!(*t, 100);
    assert_eq!(out["click.count"], 2, "110 and 100 (inclusive start), not 161 or another key: {out}");
    assert_eq!(out["click.n"], 0, "the later match (110, arrived first) wins the merge");
    assert_eq!(out["like.count"], 1, "160 is inside (inclusive end)");
    assert_eq!(trace.late, vec![8], "a main event whose window closed is late");
    assert_eq!(trace, reference(&s));
}

#[test]
fn state_of_another_layout_is_refused_not_misread() {
    let s = Scenario {
        inputs: 2,
        start: 0,
        end: 60,
        lateness: 0,
        bucket: None,
        mode: JoinMode::Left,
        emit: EmitPolicy::OnWindowEnd,
        ops: vec![],
    };
    let cfg = config(&s);
    let mut state = crate::state::open_memory();
    WindowJoin::new("j", &cfg).open_state(state.as_mut()).unwrap();
    // Reopening state this version wrote is fine.
    WindowJoin::new("j", &cfg).open_state(state.as_mut()).unwrap();
    // A marker of another layout is refused.
    let meta = state.open_table("j/meta").unwrap();
    state.put(meta, b"layout", b"9").unwrap();
    state.commit().unwrap();
    let err = WindowJoin::new("j", &cfg).open_state(state.as_mut()).unwrap_err().to_string();
    assert!(err.contains("layout 9") && err.contains("--fresh"), "{err}");
    // State without a marker (written before markers existed) is refused too.
    let mut old = crate::state::open_memory();
    let main = old.open_table("j/main").unwrap();
    old.put(main, &[0; 16], b"an event of layout 1").unwrap();
    old.commit().unwrap();
    let err = WindowJoin::new("j", &cfg).open_state(old.as_mut()).unwrap_err().to_string();
    assert!(err.contains("layout 1"), "{err}");
}

/// A hot key with `max_matches` 2: the earliest two matches per main event
/// are joined, the rest counted and marked; in `on-match`, each arrival pairs
/// with at most two events of the other side.
#[test]
fn max_matches_caps_a_hot_key_and_counts_the_rest() {
    use std::sync::atomic::Ordering::Relaxed;
    let ev = |port, time| Op::Event { port, key: 1, time };
    let window_end = Scenario {
        inputs: 2,
        start: 0,
        end: 60,
        lateness: 0,
        bucket: Some(7),
        mode: JoinMode::Left,
        emit: EmitPolicy::OnWindowEnd,
        // Matches of the main event at 5: 14, 10, 11, 13, 12 (before it), 20 (after).
        ops: vec![ev(1, 14), ev(1, 10), ev(1, 11), ev(1, 13), ev(1, 12), ev(0, 5), ev(1, 20), ev(1, 90), Op::Watermark(65)],
    };
    let on_match = Scenario {
        mode: JoinMode::Inner,
        emit: EmitPolicy::OnMatch,
        ops: vec![ev(1, 10), ev(1, 11), ev(1, 12), ev(0, 5), ev(0, 6), ev(0, 7), ev(0, 8), ev(1, 20)],
        ..window_end.clone()
    };
    for rocks in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut state = match rocks {
            true => crate::state::open_rocksdb(&dir.path().join("db"), &Default::default()).unwrap(),
            false => crate::state::open_memory(),
        };
        let cfg = WindowJoinConfig { max_matches: 2, ..config(&window_end) };
        let mut join = WindowJoin::new("j", &cfg);
        let trace = run_join_with(&mut join, &window_end, &mut *state);
        let outputs: Vec<&Value> = trace.outputs.iter().flatten().map(|(v, _)| v).collect();
        assert_eq!(outputs.len(), 1, "{outputs:?}");
        assert_eq!(outputs[0]["click.count"], 2, "rocksdb {rocks}: {}", outputs[0]);
        assert_eq!(outputs[0]["click.truncated"], 4, "rocksdb {rocks}: {}", outputs[0]);
        assert_eq!(outputs[0]["click.n"], 2, "the earliest two (10 and 11, the later one's fields last): {}", outputs[0]);
        assert_eq!((join.stats.over_max_matches.load(Relaxed), join.stats.matches_not_joined.load(Relaxed)), (1, 4));

        let dir = tempfile::tempdir().unwrap();
        let mut state = match rocks {
            true => crate::state::open_rocksdb(&dir.path().join("db"), &Default::default()).unwrap(),
            false => crate::state::open_memory(),
        };
        let mut join = WindowJoin::new("j", &WindowJoinConfig { max_matches: 2, ..config(&on_match) });
        let trace = run_join_with(&mut join, &on_match, &mut *state);
        let pairs: Vec<usize> = trace.outputs.iter().map(Vec::len).collect();
        // Each main event pairs with the clicks at 10 and 11 (12 left out);
        // the click at 20 with the main events at 5 and 6 (7 and 8 left out).
        assert_eq!(pairs, [0, 0, 0, 2, 2, 2, 2, 2, 0], "rocksdb {rocks}");
        let last: Vec<i64> = trace.outputs[7].iter().map(|(_, t)| *t).collect();
        assert_eq!(last, [5, 6], "the earliest main events");
        assert_eq!((join.stats.over_max_matches.load(Relaxed), join.stats.matches_not_joined.load(Relaxed)), (5, 6));
        let main_capped = &trace.outputs[3][0].0;
        assert_eq!(main_capped["click.truncated"], 1, "{main_capped}");
    }
}

#[test]
fn the_fingerprint_names_what_the_state_depends_on_and_not_max_matches() {
    let s = Scenario {
        inputs: 2,
        start: 0,
        end: 60,
        lateness: 0,
        bucket: None,
        mode: JoinMode::Left,
        emit: EmitPolicy::OnWindowEnd,
        ops: vec![],
    };
    let cfg = config(&s);
    let fp = |cfg: &WindowJoinConfig| WindowJoin::new("j", cfg).state_fingerprint().unwrap();
    let base = fp(&cfg);
    assert_eq!(base["bucket_ms"], 60, "the effective bucket: {base}");
    assert_eq!(base["joiner"], json!({"type": "merge", "prefixes": {"click": "click."}}));
    assert_eq!(fp(&WindowJoinConfig { max_matches: 7, ..cfg.clone() }), base, "max_matches may change");
    assert_ne!(fp(&WindowJoinConfig { bucket_ms: Some(30), ..cfg.clone() }), base);
    assert_ne!(fp(&WindowJoinConfig { window: JoinWindow { start_ms: 0, end_ms: 30 }, ..cfg.clone() }), base);
    assert_ne!(fp(&WindowJoinConfig { emit: EmitPolicy::OnMatch, ..cfg.clone() }), base);
}

/// Key groups of the parallel scenarios: few, so workers share them unevenly.
const KEY_GROUPS: usize = 8;

/// Outputs per op and late events, each op's outputs sorted: workers emit one
/// op's outputs in an order of their own.
fn per_op_sorted(t: Trace) -> (Vec<Vec<String>>, Vec<usize>) {
    let outputs = t
        .outputs
        .into_iter()
        .map(|o| {
            let mut o: Vec<String> = o.into_iter().map(|(v, t)| format!("{t} {v}")).collect();
            o.sort();
            o
        })
        .collect();
    let mut late = t.late;
    late.sort_unstable();
    (outputs, late)
}

/// The scenario over `n` workers, each a join with its own memory state, events
/// routed by key group as the coordinator routes them, watermarks to all; at op
/// `rescale_at` the states are checkpointed and rebuilt by key group over `m`
/// workers, which go on.
fn run_parallel(s: &Scenario, n: usize, rescale_at: usize, m: usize, dir: &std::path::Path) -> Trace {
    let join = || WindowJoin::new("j", &config(s)).with_key_groups(KEY_GROUPS);
    let mut router = join();
    let open = |count: usize| -> (Vec<WindowJoin>, Vec<Box<dyn StateBackend>>) {
        let mut states: Vec<Box<dyn StateBackend>> = (0..count).map(|_| crate::state::open_memory()).collect();
        let joins = states.iter_mut().map(|st| {
            let mut j = join();
            j.open_state(&mut **st).unwrap();
            j
        });
        (joins.collect(), states)
    };
    let (mut joins, mut states) = open(n);
    let mut watermark = i64::MIN;
    let mut trace = Trace { outputs: Vec::new(), late: Vec::new() };
    let ops = s.ops.iter().cloned().chain([Op::Watermark(i64::MAX)]);
    for (i, op) in ops.enumerate() {
        if i == rescale_at {
            let mut old = Vec::new();
            for (w, st) in states.iter_mut().enumerate() {
                st.commit().unwrap();
                let chk = dir.join(format!("chk-{i}-{w}"));
                st.checkpoint(&chk).unwrap();
                old.push(crate::state::restore_memory(&chk).unwrap());
            }
            let count = m;
            let mut fresh: Vec<Box<dyn StateBackend>> = (0..count).map(|_| crate::state::open_memory()).collect();
            joins = fresh
                .iter_mut()
                .enumerate()
                .map(|(w, st)| {
                    let mut j = join();
                    for from in old.iter_mut() {
                        let owned = crate::runtime::key_groups_of(w, count, KEY_GROUPS);
                        j.rescale(&mut **from, &mut **st, &|kg| owned.contains(&kg)).unwrap();
                    }
                    j.open_state(&mut **st).unwrap();
                    j
                })
                .collect();
            states = fresh;
        }
        let workers = joins.len();
        let mut dead: Vec<DeadLetter> = Vec::new();
        let mut out = Vec::new();
        match op {
            Op::Event { port, key, time } => {
                let event = Event { key: None, value: value(i, port, key), timestamp: time, headers: vec![] };
                let routed = router.route_keys(port, std::slice::from_ref(&event)).unwrap();
                let w = crate::runtime::worker_of(routed[0].group, workers, KEY_GROUPS);
                let mut batch = Batch::default();
                batch.push(event, Origin::new("s", i as u64));
                let mut ctx = StepContext { dead: &mut dead, input: port, watermark, state: &mut *states[w], failed: None };
                out.push(joins[w].process_routed(batch, routed, &mut ctx));
                assert_eq!(ctx.failed, None);
            }
            Op::Watermark(wm) if wm > watermark => {
                watermark = wm;
                for (j, st) in joins.iter_mut().zip(states.iter_mut()) {
                    fire_all(j, wm, &mut **st, &mut dead, &mut out);
                }
            }
            Op::Watermark(_) => {}
        }
        record(&mut trace, dead, out);
    }
    trace
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// At 1, 2 or 4 workers, and rebuilt by key group at 1, 2 or 4 at any point,
    /// the join's outputs after each op are the reference's.
    #[test]
    fn workers_and_a_rescale_anywhere_equal_the_reference(
        s in scenario(),
        n in prop_oneof![Just(1usize), Just(2), Just(4)],
        m in prop_oneof![Just(1usize), Just(2), Just(4)],
        at in 0usize..64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let at = at.min(s.ops.len());
        prop_assert_eq!(per_op_sorted(run_parallel(&s, n, at, m, dir.path())), per_op_sorted(reference(&s)));
    }
}

/// A source's capture reads the same key, key group and plainness as the
/// router, for every kind of record, with and without a time field in the
/// same pass; records it cannot read (not objects) are left to the router.
#[test]
fn a_source_capture_reads_what_the_router_reads() {
    use crate::record_schema::RecordCheck;
    let cfg = WindowJoinConfig {
        joiner: JoinerConfig::Merge { prefixes: BTreeMap::from([("click".to_string(), "c_".to_string())]) },
        ..config(&Scenario { inputs: 2, start: 0, end: 10, lateness: 0, bucket: None, mode: JoinMode::Left, emit: EmitPolicy::OnWindowEnd, ops: vec![] })
    };
    let mut router = WindowJoin::new("j", &cfg).with_key_groups(128);
    let records: &[&str] = &[
        r#"{"k":"a","ts":1}"#,
        r#"{"ts":2,"k":"a\"b\u00e9"}"#,
        r#"{"k":1.50,"ts":3}"#,
        r#"{"k":true,"ts":3}"#,
        r#"{"k":null,"ts":4}"#,
        r#"{"k":{"x":1},"ts":5}"#,
        r#"{"k":[1],"ts":5}"#,
        r#"{"ts":6}"#,
        r#"{"k":"a","k":"b","ts":7}"#,
        r#"{"k":"a","c_x":1,"ts":8}"#,
        r#"{"k":"a","n":1,"n":2,"ts":9}"#,
        r#"{"k":"a","nested":{"k":"no","ts":0},"ts":10}"#,
    ];
    for port in 0..2 {
        let capture = router.key_capture(port).expect("a top-level field key is captured");
        for with_time in [false, true] {
            let common = crate::config::SourceCommon { timestamp_field: with_time.then(|| "ts".to_string()), ..Default::default() };
            let check = RecordCheck::new(&common);
            for raw in records {
                let got = check.check_capturing(raw.as_bytes(), Some(&*capture)).unwrap();
                let want = router.route_keys(port, &[Event::from_value(raw.as_bytes().to_vec(), 0)]).unwrap();
                assert_eq!(got.routed.as_ref(), Some(&want[0]), "port {port}, {raw}");
                assert_eq!(got.timestamp, check.check(raw.as_bytes()).unwrap().timestamp, "{raw}");
            }
        }
        // Not an object: no time field to refuse it, so the router reads (and refuses) it.
        let plain = RecordCheck::new(&Default::default());
        assert_eq!(plain.check_capturing(b"[1]", Some(&*capture)).unwrap().routed, None);
        assert!(plain.check_capturing(b"{\"k\":", Some(&*capture)).unwrap_err().0.starts_with("malformed JSON"));
    }
    let udf_or_nested = WindowJoinConfig {
        keys: BTreeMap::from([("imp".to_string(), crate::config::JoinKey::Field("$.a.b".to_string()))]),
        ..cfg.clone()
    };
    assert!(WindowJoin::new("j", &udf_or_nested).key_capture(0).is_none(), "a nested key is read by the router");
}
