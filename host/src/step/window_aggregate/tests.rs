//! The step against a reference that computes every output from the raw
//! events: tumbling and sliding windows, out-of-order and late events,
//! allowed lateness with updates, early firing, a cache so small every batch
//! spills, and checkpoints restored into a new step mid-stream.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// (key, time, value)
type Ev = (u8, i64, i64);

/// What identifies an output: (key, window end, early boundary or update number, kind).
type OutId = (u8, i64, i64, &'static str);

fn config(size: i64, slide: i64, lateness: u64, early: Option<i64>) -> WindowAggregateConfig {
    let window = if slide == 0 {
        serde_json::json!({"type": "session", "gap_ms": size})
    } else if size == slide {
        serde_json::json!({"type": "tumbling", "size_ms": size})
    } else {
        serde_json::json!({"type": "sliding", "size_ms": size, "slide_ms": slide})
    };
    serde_json::from_value(serde_json::json!({
        "inputs": ["in"],
        "keys": ["$.k"],
        "window": window,
        "aggregates": [
            {"name": "n", "type": "count"},
            {"name": "sum", "type": "sum", "field": "$.v"},
            {"name": "max", "type": "max", "field": "$.v"},
            {"name": "odd", "type": "count", "where": {"path": "$.odd", "op": "eq", "value": true}}
        ],
        "allowed_lateness_ms": lateness,
        "early_fire_ms": early,
    }))
    .unwrap()
}

fn batch(events: &[Ev]) -> Batch {
    let mut b = Batch::default();
    for (i, (k, t, v)) in events.iter().enumerate() {
        let value = format!("{{\"k\":{k},\"v\":{v},\"odd\":{}}}", v % 2 != 0);
        b.push(Event::from_value(value.into_bytes(), *t), Origin::new("in", i as u64));
    }
    b
}

/// The outputs a run gives: id → (n, sum, max, odd).
fn collect(out: &Batch, into: &mut BTreeMap<OutId, (i64, i64, i64, i64)>) {
    for e in &out.events {
        let v: serde_json::Value = serde_json::from_slice(&e.value).unwrap();
        let (k, end) = (v["k"].as_u64().unwrap() as u8, v["window_end"].as_i64().unwrap());
        assert_eq!(e.timestamp, end - 1);
        let id = if v.get("partial").is_some() {
            // A partial's boundary is not in the record: it is its place among the partials of (key, window).
            let n = into.keys().filter(|(k2, e2, _, kind)| *k2 == k && *e2 == end && *kind == "partial").count() as i64;
            (k, end, n, "partial")
        } else if let Some(n) = v.get("update") {
            (k, end, n.as_i64().unwrap(), "update")
        } else {
            (k, end, 0, "final")
        };
        let vals = (v["n"].as_i64().unwrap(), v["sum"].as_i64().unwrap(), v["max"].as_i64().unwrap(), v["odd"].as_i64().unwrap());
        assert!(into.insert(id, vals).is_none(), "{id:?} emitted twice");
    }
}

/// The reference: the same arrivals and watermarks, every output computed
/// from the accepted raw events.
struct Reference {
    shape: Sliding,
    lateness: i64,
    early: Option<i64>,
    /// Accepted events.
    kept: Vec<Ev>,
    watermark: i64,
    /// (key, end) of fired windows → updates emitted; and those due.
    fired: BTreeMap<(u8, i64), i64>,
    due: std::collections::BTreeSet<(u8, i64)>,
    early_to: i64,
    out: BTreeMap<OutId, (i64, i64, i64, i64)>,
    late: usize,
}

impl Reference {
    fn agg(&self, k: u8, start: i64, upto: i64) -> Option<(i64, i64, i64, i64)> {
        let vs: Vec<i64> = self.kept.iter().filter(|(k2, t, _)| *k2 == k && *t >= start && *t < upto).map(|e| e.2).collect();
        (!vs.is_empty()).then(|| (vs.len() as i64, vs.iter().sum(), *vs.iter().max().unwrap(), vs.iter().filter(|v| *v % 2 != 0).count() as i64))
    }

    fn arrive(&mut self, events: &[Ev]) {
        let w = self.watermark;
        for &(k, t, v) in events {
            let ends: Vec<i64> = self.shape.window_ends(t).collect();
            if ends.iter().all(|e| e - 1 + self.lateness <= w) {
                self.late += 1;
                continue;
            }
            self.kept.push((k, t, v));
            for e in ends {
                // A fired window still open for late events is updated.
                if e - 1 <= w && e - 1 + self.lateness > w {
                    self.due.insert((k, e));
                }
            }
        }
    }

    fn advance(&mut self, w: i64) {
        let w = w.max(self.watermark);
        let size = self.shape.size_ms;
        for (k, e) in std::mem::take(&mut self.due) {
            let n = self.fired.entry((k, e)).or_insert(0);
            *n += 1;
            let n = *n;
            let vals = self.agg(k, e - size, e).unwrap();
            self.out.insert((k, e, n, "update"), vals);
        }
        let keys: std::collections::BTreeSet<u8> = self.kept.iter().map(|e| e.0).collect();
        let ends: std::collections::BTreeSet<i64> = self.kept.iter().flat_map(|e| self.shape.window_ends(e.1)).collect();
        for &e in ends.iter().filter(|e| **e - 1 > self.watermark && **e - 1 <= w) {
            for &k in &keys {
                if let Some(vals) = self.agg(k, e - size, e) {
                    self.out.insert((k, e, 0, "final"), vals);
                    self.fired.entry((k, e)).or_insert(0);
                }
            }
        }
        if let Some(every) = self.early {
            let last = self.shape.last_complete_end(w);
            let first = (self.early_to.max(last - size)).div_euclid(every) * every + every;
            let mut c = first;
            while c <= w + 1 {
                for &e in ends.iter().filter(|e| **e > last && **e - size < c && c < **e) {
                    for &k in &keys {
                        if let Some(vals) = self.agg(k, e - size, c) {
                            let n = self.out.keys().filter(|(k2, e2, _, kind)| *k2 == k && *e2 == e && *kind == "partial").count() as i64;
                            self.out.insert((k, e, n, "partial"), vals);
                        }
                    }
                }
                self.early_to = c;
                c += every;
            }
        }
        self.watermark = w;
    }
}

struct Harness {
    cfg: WindowAggregateConfig,
    cache: usize,
    step: WindowAggregate,
    state: Box<dyn StateBackend>,
    out: BTreeMap<OutId, (i64, i64, i64, i64)>,
    late: usize,
}

impl Harness {
    fn new(cfg: WindowAggregateConfig, cache: usize) -> Harness {
        let mut state = crate::state::open_memory();
        let mut step = WindowAggregate::new("agg", &cfg).unwrap().with_cache_bytes(cache, &cfg);
        step.open_state(&mut *state).unwrap();
        Harness { cfg, cache, step, state, out: BTreeMap::new(), late: 0 }
    }

    fn ctx<'a>(state: &'a mut dyn StateBackend, dead: &'a mut Vec<crate::dead_letter::DeadLetter>, watermark: i64) -> StepContext<'a> {
        StepContext { dead, input: 0, watermark, state, failed: None }
    }

    fn arrive(&mut self, events: &[Ev], watermark: i64) {
        let mut dead = Vec::new();
        let mut ctx = Self::ctx(&mut *self.state, &mut dead, watermark);
        let out = self.step.process_batch(batch(events), &mut ctx);
        assert!(ctx.failed.is_none(), "{:?}", ctx.failed);
        assert!(out.is_empty());
        for d in &dead {
            assert_eq!(d.kind, DeadKind::Late, "{}", d.reason);
        }
        self.late += dead.len();
    }

    fn advance(&mut self, watermark: i64) {
        loop {
            let mut dead = Vec::new();
            let mut ctx = Self::ctx(&mut *self.state, &mut dead, watermark);
            let out = self.step.on_watermark(watermark, &mut ctx);
            assert!(ctx.failed.is_none(), "{:?}", ctx.failed);
            if out.is_empty() {
                break;
            }
            collect(&out, &mut self.out);
        }
    }

    /// A checkpoint, then a new step restored from it.
    fn restore(&mut self) {
        self.step.prepare_checkpoint(&mut *self.state).unwrap();
        self.state.commit().unwrap();
        let mut step = WindowAggregate::new("agg", &self.cfg).unwrap().with_cache_bytes(self.cache, &self.cfg);
        step.open_state(&mut *self.state).unwrap();
        self.step = step;
    }
}

fn shapes() -> impl Strategy<Value = (i64, i64, u64, Option<i64>)> {
    (1i64..6, 1i64..4, prop_oneof![Just(0u64), 1u64..30], proptest::option::of(1i64..4)).prop_map(|(panes, per_slide, lateness, early)| {
        // size = panes · slide-unit so early firing (a divisor of both) exists.
        let unit = 2;
        let slide = unit * per_slide;
        let size = slide * panes;
        (size, slide, lateness, early.map(|e| unit * e).filter(|e| slide % e == 0 && size % e == 0))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn outputs_equal_the_reference(
        (size, slide, lateness, early) in shapes(),
        events in proptest::collection::vec((0u8..3, 0i64..120, -20i64..20), 0..80),
        bound in 0i64..25, batch_len in 1usize..8, tiny_cache in any::<bool>(),
        restores in proptest::collection::vec(any::<bool>(), 16),
    ) {
        let cfg = config(size, slide, lateness, early);
        let shape = cfg.sliding().unwrap().unwrap();
        let mut h = Harness::new(cfg, if tiny_cache { 1 } else { 64 << 20 });
        let mut r = Reference { shape, lateness: lateness as i64, early, kept: Vec::new(), watermark: i64::MIN, fired: BTreeMap::new(), due: Default::default(), early_to: i64::MIN, out: BTreeMap::new(), late: 0 };
        let (mut max_t, mut w) = (i64::MIN, i64::MIN);
        for (i, chunk) in events.chunks(batch_len).enumerate() {
            h.arrive(chunk, w);
            r.arrive(chunk);
            max_t = chunk.iter().map(|e| e.1).fold(max_t, i64::max);
            w = w.max(max_t.saturating_sub(bound));
            h.advance(w);
            r.advance(w);
            if restores[i % restores.len()] {
                h.restore();
            }
        }
        h.advance(crate::source::END_OF_TIME);
        r.advance(FAR_FUTURE);
        prop_assert_eq!(h.late, r.late);
        prop_assert_eq!(&h.out, &r.out);
        prop_assert_eq!(h.step.store.panes(), 0, "every pane expired at the end");
    }
}

#[test]
fn bad_values_and_keys_are_dead_lettered_and_change_nothing() {
    let cfg = config(10, 10, 0, None);
    let mut h = Harness::new(cfg, 1 << 20);
    let mut b = batch(&[(1, 3, 4)]);
    for (value, why) in [
        ("{\"k\":1,\"v\":\"x\"}", "aggregate `sum`: sum takes numbers"),
        ("{\"v\":2}", "no grouping key: field `$.k` is missing"),
        ("{\"k\":null,\"v\":2}", "is null"),
        ("[1]", "not a JSON object"),
    ] {
        b.push(Event::from_value(value.as_bytes().to_vec(), 5), Origin::new("in", 9));
        let mut dead = Vec::new();
        let mut ctx = Harness::ctx(&mut *h.state, &mut dead, i64::MIN);
        h.step.process_batch(std::mem::take(&mut b), &mut ctx);
        assert!(dead.iter().any(|d| d.reason.contains(why)), "{why}: {:?}", dead.iter().map(|d| &d.reason).collect::<Vec<_>>());
    }
    h.advance(crate::source::END_OF_TIME);
    assert_eq!(h.out.len(), 1);
    assert_eq!(h.out.values().next(), Some(&(1, 4, 4, 0)), "the refused events changed nothing");
}

#[test]
fn several_keys_and_every_aggregate_kind_reach_the_output() {
    let cfg: WindowAggregateConfig = serde_json::from_value(serde_json::json!({
        "inputs": ["views", "clicks"],
        "keys": ["$.item", {"name": "country", "key": "$.geo.country", "inputs": {"clicks": "$.c"}}],
        "window": {"type": "tumbling", "size_ms": 60000},
        "aggregates": [
            {"name": "views", "type": "count", "input": "views"},
            {"name": "clicks", "type": "count", "input": "clicks"},
            {"name": "users", "type": "distinct_count", "field": "$.user"},
            {"name": "approx_users", "type": "approx_distinct", "field": "$.user"},
            {"name": "top", "type": "top_k", "field": "$.user", "k": 1},
            {"name": "dwell", "type": "percentile", "field": "$.dwell", "q": [0.5]},
            {"name": "first_user", "type": "first", "field": "$.user"},
            {"name": "avg_dwell", "type": "avg", "field": "$.dwell", "input": "views"}
        ]
    }))
    .unwrap();
    let mut problems = Vec::new();
    cfg.check(&crate::config::locate::JsonPath::root(), &mut |at, m| problems.push(format!("{at}: {m}")));
    assert!(problems.is_empty(), "{problems:?}");
    let mut state = crate::state::open_memory();
    let mut step = WindowAggregate::new("agg", &cfg).unwrap();
    step.open_state(&mut *state).unwrap();
    let views = [r#"{"item":"a","geo":{"country":"fr"},"user":"u1","dwell":10}"#, r#"{"item":"a","geo":{"country":"fr"},"user":"u2","dwell":30}"#, r#"{"item":"a","geo":{"country":"de"},"user":"u1","dwell":5}"#];
    let clicks = [r#"{"item":"a","c":"fr","user":"u1"}"#];
    let mut dead = Vec::new();
    for (port, records) in [(0, &views[..]), (1, &clicks[..])] {
        let mut b = Batch::default();
        for (i, r) in records.iter().enumerate() {
            b.push(Event::from_value(r.as_bytes().to_vec(), 1000 + i as i64), Origin::new("x", i as u64));
        }
        let mut ctx = StepContext { dead: &mut dead, input: port, watermark: i64::MIN, state: &mut *state, failed: None };
        step.process_batch(b, &mut ctx);
    }
    assert!(dead.is_empty());
    let mut ctx = StepContext { dead: &mut dead, input: 0, watermark: i64::MAX, state: &mut *state, failed: None };
    let out = step.on_watermark(crate::source::END_OF_TIME, &mut ctx);
    let rows: Vec<serde_json::Value> = out.events.iter().map(|e| serde_json::from_slice(&e.value).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let fr = rows.iter().find(|r| r["country"] == "fr").unwrap();
    assert_eq!(fr["item"], "a");
    assert_eq!((fr["window_start"].as_i64(), fr["window_end"].as_i64()), (Some(0), Some(60000)));
    assert_eq!((fr["views"].as_i64(), fr["clicks"].as_i64(), fr["users"].as_i64(), fr["approx_users"].as_i64()), (Some(2), Some(1), Some(2), Some(2)));
    assert_eq!(fr["top"][0]["value"], "u1");
    assert_eq!(fr["first_user"], "u1");
    assert_eq!(fr["avg_dwell"], 20.0);
    let p50 = fr["dwell"]["0.5"].as_f64().unwrap();
    assert!((p50 - 10.0).abs() <= 0.2 || (p50 - 30.0).abs() <= 0.6, "{p50}");
    let de = rows.iter().find(|r| r["country"] == "de").unwrap();
    assert_eq!((de["views"].as_i64(), de["clicks"].as_i64()), (Some(1), Some(0)));
    assert_eq!(out.events.iter().map(|e| e.key.clone().unwrap()).collect::<Vec<_>>().len(), 2);
}

/// A session: (start, end, values, times emitted, update due).
type RefSession = (i64, i64, Vec<i64>, u32, bool);

/// Session outputs: (key, start, end, update) → (n, sum, max, odd).
type SessionOuts = BTreeMap<(u8, i64, i64, u32), (i64, i64, i64, i64)>;

/// Session windows simulated over raw events: per key, sessions as lists of
/// events, merged by the gap, fired and dropped by the watermark.
struct SessionReference {
    gap: i64,
    lateness: i64,
    watermark: i64,
    /// key → sessions (start, end, events, emitted, due)
    sessions: BTreeMap<u8, Vec<RefSession>>,
    out: SessionOuts,
    late: usize,
}

impl SessionReference {
    fn arrive(&mut self, events: &[Ev]) {
        for &(k, t, v) in events {
            if t + self.gap - 1 + self.lateness <= self.watermark {
                self.late += 1;
                continue;
            }
            let list = self.sessions.entry(k).or_default();
            let (mut start, mut end, mut vals, mut emitted) = (t, t + self.gap, vec![v], 0);
            let mut keep = Vec::new();
            for s in list.drain(..) {
                if s.0 < t + self.gap && s.1 > t {
                    start = start.min(s.0);
                    end = end.max(s.1);
                    vals.extend(s.2);
                    emitted = emitted.max(s.3);
                } else {
                    keep.push(s);
                }
            }
            keep.push((start, end, vals, emitted, emitted > 0));
            *list = keep;
        }
    }

    fn advance(&mut self, w: i64) {
        let w = w.max(self.watermark);
        for (k, list) in &mut self.sessions {
            for s in list.iter_mut().filter(|s| s.1 - 1 <= w) {
                if s.3 == 0 || s.4 {
                    let vals = &s.2;
                    let agg = (vals.len() as i64, vals.iter().sum(), *vals.iter().max().unwrap(), vals.iter().filter(|v| *v % 2 != 0).count() as i64);
                    self.out.insert((*k, s.0, s.1, s.3), agg);
                    s.3 += 1;
                    s.4 = false;
                }
            }
            list.retain(|s| s.1 - 1 + self.lateness > w);
        }
        self.watermark = w;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn sessions_equal_the_reference(
        gap in 1i64..20, lateness in prop_oneof![Just(0u64), 1u64..30],
        events in proptest::collection::vec((0u8..3, 0i64..150, -20i64..20), 0..80),
        bound in 0i64..25, batch_len in 1usize..8,
        restores in proptest::collection::vec(any::<bool>(), 16),
    ) {
        let cfg = config(gap, 0, lateness, None);
        let mut h = Harness::new(cfg, 64 << 20);
        let mut r = SessionReference { gap, lateness: lateness as i64, watermark: i64::MIN, sessions: BTreeMap::new(), out: BTreeMap::new(), late: 0 };
        let (mut max_t, mut w) = (i64::MIN, i64::MIN);
        let mut got = BTreeMap::new();
        for (i, chunk) in events.chunks(batch_len).enumerate() {
            h.arrive(chunk, w);
            r.arrive(chunk);
            max_t = chunk.iter().map(|e| e.1).fold(max_t, i64::max);
            w = w.max(max_t.saturating_sub(bound));
            collect_sessions(&mut h, w, &mut got);
            r.advance(w);
            if restores[i % restores.len()] {
                h.restore();
            }
        }
        collect_sessions(&mut h, crate::source::END_OF_TIME, &mut got);
        r.advance(FAR_FUTURE);
        prop_assert_eq!(h.late, r.late);
        prop_assert_eq!(got, r.out);
        prop_assert_eq!(h.step.sessions.as_ref().unwrap().len(), 0, "every session dropped at the end");
    }
}

/// Fires `h` at `w`, collecting its outputs as (key, start, end, update) → values.
fn collect_sessions(h: &mut Harness, w: i64, into: &mut SessionOuts) {
    loop {
        let mut dead = Vec::new();
        let mut ctx = Harness::ctx(&mut *h.state, &mut dead, w);
        let out = h.step.on_watermark(w, &mut ctx);
        if out.is_empty() {
            return;
        }
        for e in &out.events {
            let v: serde_json::Value = serde_json::from_slice(&e.value).unwrap();
            let id = (v["k"].as_u64().unwrap() as u8, v["window_start"].as_i64().unwrap(), v["window_end"].as_i64().unwrap(), v.get("update").map_or(0, |n| n.as_u64().unwrap() as u32));
            assert_eq!(e.timestamp, id.2 - 1);
            let vals = (v["n"].as_i64().unwrap(), v["sum"].as_i64().unwrap(), v["max"].as_i64().unwrap(), v["odd"].as_i64().unwrap());
            assert!(into.insert(id, vals).is_none(), "{id:?} emitted twice");
        }
    }
}
