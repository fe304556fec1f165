//! `window-aggregate`: per grouping key and window of event time, the
//! step's aggregates, emitted when the watermark completes the window (and,
//! optionally, early as partial results, and again when late events update
//! it). Semantics: docs/aggregations.md.
//!
//! State is pre-aggregated, never raw events: an event is folded into its
//! key's row in one *pane* (width: the gcd of size, slide and early-firing
//! interval), and a window is the merge of its panes when it fires (Flink's
//! slicing). [`store`] keeps the rows in a bounded write-back cache in front
//! of the state backend; nothing per event touches the backend. No timers:
//! the watermark walks window ends in order.
//!
//! Modules: [`acc`] the exact accumulators (count, sum, min, max, avg,
//! first, last), [`distinct`] exact distinct counts, [`approx`]
//! approx_distinct (HyperLogLog), [`top_k`] (frequent items),
//! [`percentile`] (DDSketch), each with a stable binary form;
//! [`aggregates`] one shape over them and a key's pane [`aggregates::Row`];
//! [`window`] window arithmetic; [`config`] the settings; [`layout`] the
//! state's keys; [`store`] the pane cache.

pub mod acc;
pub mod aggregates;
pub mod approx;
mod arg;
pub mod config;
pub mod distinct;
mod layout;
mod partial;
pub mod percentile;
mod sessions;
mod store;
#[cfg(test)]
mod tests;
pub mod top_k;
pub mod window;

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Keys are hashed per event: foldhash, not SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use serde_json::Value;

use super::key::KeySpec;
use super::{Operator, Predicate, ReadKey, RoutedKey, StepContext};
use crate::dead_letter::DeadKind;
use crate::event::{Batch, Event, Origin};
use crate::plugin::{AggregatorRunner, UdfRunner};
use crate::state::{StateBackend, StateError, TableId, TableOptions};
use aggregates::{AggregateConfig, Row};
use config::Phase;
pub use config::{GroupKey, WindowAggregateConfig, WindowConfig};
use layout::{bytes_part, canonical_part, key_parts, row_key, split_row_key, t8, KeyBuilder, STATE_LAYOUT};
use sessions::Sessions;
use store::PaneStore;
use window::Sliding;

/// Outputs returned per call of `on_watermark` (bounds the output batch).
const FIRE_CHUNK: usize = 1024;

/// How reasons name the key.
const WHAT: &str = "grouping key";

/// Watermarks are clamped here so window arithmetic never overflows (the
/// end of input is `i64::MAX`).
const FAR_FUTURE: i64 = i64::MAX / 4;

/// What the step reads of an input's events.
struct InputReads {
    /// The key's parts, in order.
    keys: Vec<KeySpec>,
    /// The top-level fields its aggregates read.
    fields: Vec<String>,
    /// Per aggregate: `None` if it does not count this input's events, else
    /// the index in `fields` of the field it reads (`None` inside: none).
    aggs: Vec<Option<Option<usize>>>,
}

/// How far the step has fired (kept in its meta table).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Progress {
    /// Every window ending at or before this has fired.
    fired_to: i64,
    /// Early firings are done for every boundary at or before this.
    early_to: i64,
    /// The highest input watermark seen.
    watermark: i64,
}

impl Progress {
    const NONE: Progress = Progress { fired_to: i64::MIN, early_to: i64::MIN, watermark: i64::MIN };

    fn encode(&self) -> Vec<u8> {
        [self.fired_to, self.early_to, self.watermark].iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn decode(b: &[u8]) -> Option<Progress> {
        let v: Vec<i64> = b.chunks_exact(8).map(|c| i64::from_be_bytes(c.try_into().expect("8 bytes"))).collect();
        (v.len() == 3).then(|| Progress { fired_to: v[0], early_to: v[1], watermark: v[2] })
    }
}

/// A fired window's late updates.
#[derive(Clone, Copy, Debug)]
struct Updates {
    kg: u16,
    /// Updates emitted so far.
    count: u32,
    /// A late event changed the window since it was last emitted.
    due: bool,
    /// Changed since last written.
    dirty: bool,
}

/// How a partial phase picks an event's bucket.
enum Salt {
    None,
    /// A hash of a top-level field's raw text.
    Field(String),
    /// In turn (a counter).
    RoundRobin(u64),
}

/// An aggregate written as a plugin (world `aggregator`).
struct Udaf {
    agg: usize,
    plugin: String,
    runner: Box<AggregatorRunner>,
    empty: Option<Vec<u8>>,
}

impl Udaf {
    fn empty(&mut self) -> Result<Vec<u8>, crate::plugin::Failure> {
        if self.empty.is_none() {
            self.empty = Some(self.runner.create()?);
        }
        Ok(self.empty.clone().expect("set above"))
    }
}

/// An output on its way: key, window start and end, row, mark (`partial`, or `update` n).
type Output = (Vec<u8>, i64, i64, Row, Option<(&'static str, u32)>);

/// An event accepted by the arrival checks, waiting to be folded.
struct Accepted<'e> {
    index: usize,
    t: i64,
    kg: u16,
    key: Vec<u8>,
    /// Per aggregate: `None` if it does not count the event, else its field's raw text.
    counted: Vec<Option<Option<&'e str>>>,
}

/// What the plugins made of a batch: per plugin, each group's new
/// accumulator and each accepted event's group; per accepted event, whether
/// a plugin refused it.
type PluginAdds = (Vec<Vec<Option<Vec<u8>>>>, Vec<Vec<Option<u32>>>, Vec<bool>);

/// Makes output records and holds them until handed out.
struct Emitter {
    origin: Arc<str>,
    key_names: Vec<String>,
    aggs: Vec<AggregateConfig>,
    phase: Phase,
    /// Outputs made, handed out `FIRE_CHUNK` at a time.
    pending: VecDeque<(Event, Origin)>,
    outputs: u64,
    /// Reused for each record's text.
    text: String,
}

impl Emitter {
    /// One output record of `key`'s window `[start, end)`.
    fn output(&mut self, key: &[u8], start: i64, end: i64, row: &Row, mark: Option<(&str, u32)>) {
        use std::fmt::Write;
        self.outputs += 1;
        let origin = Origin::new(self.origin.clone(), self.outputs);
        if self.phase == Phase::Partial {
            // The key without its bucket, the window, the accumulators.
            let (base, _) = layout::split_last_part(key);
            self.pending.push_back((Event::from_value(partial::encode(base, start, end, row), end - 1), origin));
            return;
        }
        let parts = key_parts(key);
        let text = &mut self.text;
        text.clear();
        text.push('{');
        for (name, part) in self.key_names.iter().zip(&parts) {
            write_name(text, name);
            text.push_str(&String::from_utf8_lossy(part));
            text.push(',');
        }
        let _ = write!(text, "\"window_start\":{start},\"window_end\":{end}");
        for (acc, cfg) in row.0.iter().zip(&self.aggs) {
            text.push(',');
            write_name(text, &cfg.name);
            acc.write_json(cfg, text);
        }
        match mark {
            Some(("partial", _)) => text.push_str(",\"partial\":true"),
            Some((name, n)) => {
                let _ = write!(text, ",\"{name}\":{n}");
            }
            None => {}
        }
        text.push('}');
        let mut event = Event::from_value(text.as_bytes().to_vec(), end - 1);
        event.key = Some(match parts.as_slice() {
            [one] if one.first() == Some(&b'"') && !one.contains(&b'\\') => one[1..one.len() - 1].to_vec(),
            [one] => serde_json::from_slice::<String>(one).map_or_else(|_| one.to_vec(), String::into_bytes),
            _ => format!("[{}]", parts.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>().join(",")).into_bytes(),
        });
        self.pending.push_back((event, origin));
    }
}

/// `"name":` (escaped as JSON).
fn write_name(text: &mut String, name: &str) {
    if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        text.push('"');
        text.push_str(name);
        text.push_str("\":");
    } else {
        text.push_str(&Value::from(name).to_string());
        text.push(':');
    }
}

struct Tables {
    panes: TableId,
    sessions: TableId,
    updates: TableId,
    meta: TableId,
}

pub struct WindowAggregate {
    name: String,
    inputs: Vec<String>,
    reads: Vec<InputReads>,
    aggs: Vec<AggregateConfig>,
    /// The aggregates' distinct `where` conditions, and which one each aggregate has.
    conditions: Vec<Predicate>,
    condition_of: Vec<Option<usize>>,
    /// Empty accumulators, which check an event's values before any changes.
    checkers: Row,
    /// Tumbling and sliding windows: their shape and pane rows (for
    /// session windows, `shape` is unused and the store empty).
    shape: Sliding,
    lateness: i64,
    early: Option<i64>,
    store: PaneStore,
    /// Session windows.
    sessions: Option<Sessions>,
    /// The window size outputs report (a final phase's shape is 1 ms wide).
    report_size: i64,
    /// A split aggregation's phase, and how a partial one picks buckets.
    phase: Phase,
    salt: Salt,
    buckets: u16,
    tables: Option<Tables>,
    progress: Progress,
    /// After a restore at another parallelism: how far each key group with
    /// state had fired in the worker it came from (its windows up to there
    /// are not emitted again).
    floors: HashMap<u16, i64>,
    updates: BTreeMap<(i64, Vec<u8>), Updates>,
    /// The aggregates written as plugins: (index in `aggs`, plugin name,
    /// its runner, its empty accumulator once asked).
    udafs: Vec<Udaf>,
    emit: Emitter,
    seq: u64,
    key_groups: usize,
    grouping: crate::runtime::KeyGrouping,
    fingerprint: Value,
}

impl WindowAggregate {
    /// The step (checked settings: `config::check` ran at load).
    pub fn new(name: &str, cfg: &WindowAggregateConfig) -> Result<Self, String> {
        let empty = Row::new(&cfg.aggregates)?;
        let lateness = cfg.allowed_lateness_ms.min(FAR_FUTURE as u64) as i64;
        let (shape, sessions) = match (cfg.sliding()?, cfg.window) {
            // The final phase of a split aggregation takes each window's
            // partial results at time end − 1: windows of 1 ms.
            (Some(_), _) if cfg.phase == Phase::Final => (Sliding::tumbling(1, 0, None).map_err(|e| e.to_string())?, None),
            (Some(shape), _) => (shape, None),
            (None, WindowConfig::Session { gap_ms }) => {
                let gap = gap_ms.clamp(1, FAR_FUTURE as u64) as i64;
                (Sliding::tumbling(gap, 0, None).map_err(|e| e.to_string())?, Some(Sessions::new(gap, lateness, empty.clone())))
            }
            (None, _) => return Err("a fixed-size window without a shape".into()),
        };
        let reads = cfg
            .inputs
            .iter()
            .map(|input| {
                let keys = cfg.keys.iter().map(|k| KeySpec::of(k.of_input(input).as_ref())).collect();
                let mut fields: Vec<String> = Vec::new();
                let aggs = cfg
                    .aggregates
                    .iter()
                    .map(|a| {
                        a.input.as_ref().is_none_or(|i| i == input).then(|| {
                            a.field_name().map(|f| match fields.iter().position(|x| x == f) {
                                Some(i) => i,
                                None => {
                                    fields.push(f.to_string());
                                    fields.len() - 1
                                }
                            })
                        })
                    })
                    .collect();
                InputReads { keys, fields, aggs }
            })
            .collect();
        let report_size = cfg.sliding()?.map_or(1, |s| s.size_ms);
        // One evaluation per event of each distinct condition (Nexmark q15
        // has 11 `where`s over 3 conditions).
        let mut conditions: Vec<(String, crate::step::Condition)> = Vec::new();
        let condition_of = cfg
            .aggregates
            .iter()
            .map(|a| {
                let c = a.condition.as_ref()?;
                let text = serde_json::to_string(c).unwrap_or_default();
                Some(conditions.iter().position(|(t, _)| *t == text).unwrap_or_else(|| {
                    conditions.push((text, c.clone()));
                    conditions.len() - 1
                }))
            })
            .collect();
        let salt = match (&cfg.skew, cfg.phase) {
            (Some(skew), Phase::Partial) if skew.salt == "round_robin" => Salt::RoundRobin(0),
            (Some(skew), Phase::Partial) => Salt::Field(skew.salt.trim_start_matches("$.").to_string()),
            _ => Salt::None,
        };
        let mut fingerprint = serde_json::json!({
            "type": "window-aggregate",
            "inputs": cfg.inputs,
            "keys": cfg.keys,
            "window": cfg.window,
            "aggregates": cfg.aggregates,
            "allowed_lateness_ms": cfg.allowed_lateness_ms,
            "early_fire_ms": cfg.early_fire_ms,
            "skew": cfg.skew,
            "phase": format!("{:?}", cfg.phase),
            "state_layout": String::from_utf8_lossy(STATE_LAYOUT),
        });
        if let Value::Object(f) = &mut fingerprint {
            f.insert("max_parallelism".into(), Value::from(1));
        }
        Ok(WindowAggregate {
            name: name.to_string(),
            inputs: cfg.inputs.clone(),
            emit: Emitter {
                origin: Arc::from(name),
                key_names: cfg.keys.iter().map(|k| k.name().to_string()).collect(),
                aggs: cfg.aggregates.clone(),
                phase: cfg.phase,
                pending: VecDeque::new(),
                outputs: 0,
                text: String::new(),
            },
            reads,
            conditions: conditions.iter().map(|(_, c)| Predicate::new(c)).collect(),
            condition_of,
            aggs: cfg.aggregates.clone(),
            checkers: empty.clone(),
            shape,
            lateness,
            early: cfg.early_fire_ms.map(|e| e as i64),
            store: PaneStore::new(empty, (cfg.cache_mb.max(1) as usize).saturating_mul(1 << 20)),
            sessions,
            report_size,
            phase: cfg.phase,
            salt,
            buckets: cfg.skew.as_ref().map_or(1, |s| s.buckets.max(1)),
            tables: None,
            progress: Progress::NONE,
            floors: HashMap::new(),
            updates: BTreeMap::new(),
            udafs: Vec::new(),
            seq: 0,
            key_groups: 1,
            grouping: Default::default(),
            fingerprint,
        })
    }

    /// Hashes keys into `n` key groups (`settings.max_parallelism`).
    pub fn with_key_groups(mut self, n: usize) -> Self {
        self.key_groups = n.max(1);
        if let Value::Object(f) = &mut self.fingerprint {
            f.insert("max_parallelism".into(), Value::from(self.key_groups));
        }
        self
    }

    /// Key groups by input partition instead of key hash (scale-out).
    pub fn with_grouping(mut self, grouping: crate::runtime::KeyGrouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// Gives the keys computed by UDFs their runners: `runners[(input, part)]`.
    pub fn with_key_udfs(mut self, mut runners: BTreeMap<(String, usize), UdfRunner>) -> Self {
        for (input, reads) in self.inputs.iter().zip(&mut self.reads) {
            for (part, spec) in reads.keys.iter_mut().enumerate() {
                spec.set_runner(runners.remove(&(input.clone(), part)));
            }
        }
        self
    }

    /// Gives the aggregates of type `plugin` their runners, by aggregate index.
    pub fn with_udafs(mut self, mut runners: BTreeMap<usize, AggregatorRunner>) -> Self {
        for (a, cfg) in self.aggs.iter().enumerate() {
            if let (Some(runner), Some(plugin)) = (runners.remove(&a), &cfg.plugin) {
                self.udafs.push(Udaf { agg: a, plugin: plugin.clone(), runner: Box::new(runner), empty: None });
            }
        }
        self
    }

    /// A bound on the cache (tests force spills with a tiny one).
    #[cfg(test)]
    fn with_cache_bytes(mut self, bytes: usize, cfg: &WindowAggregateConfig) -> Self {
        self.store = PaneStore::new(Row::new(&cfg.aggregates).expect("checked"), bytes);
        self
    }

    fn tables(&self) -> &Tables {
        self.tables.as_ref().expect("open_state runs before any batch")
    }

    /// The grouping key of each of `events` from input `port`, or why it has none.
    fn read_keys(&mut self, port: usize, events: &[Event]) -> Vec<Result<Vec<u8>, (DeadKind, String)>> {
        if self.phase == Phase::Final {
            return events.iter().map(|e| partial::decode(&e.value).map(|p| p.key.to_vec()).map_err(|why| (DeadKind::StepError, why.to_string()))).collect();
        }
        let mut keys = self.read_group_keys(port, events);
        if self.phase == Phase::Partial {
            for (key, event) in keys.iter_mut().zip(events) {
                let Ok(k) = key else { continue };
                let bucket = match &mut self.salt {
                    Salt::RoundRobin(n) => {
                        *n += 1;
                        (*n % u64::from(self.buckets)) as u16
                    }
                    Salt::Field(field) => {
                        let raw = crate::record_schema::member_and_names(&event.value, field, None).ok().flatten().map_or("null", |r| r.get());
                        (xxhash_rust::xxh3::xxh3_64(raw.as_bytes()) % u64::from(self.buckets)) as u16
                    }
                    Salt::None => 0,
                };
                let mut with = KeyBuilder::from(std::mem::take(k));
                with.push(bucket.to_string().as_bytes());
                *k = with.finish();
            }
        }
        keys
    }

    /// The grouping key of each event (a partial phase adds the bucket).
    fn read_group_keys(&mut self, port: usize, events: &[Event]) -> Vec<Result<Vec<u8>, (DeadKind, String)>> {
        let input = &self.inputs[port];
        let reads = &mut self.reads[port];
        // A UDF part: one call for the batch.
        let udf: Vec<Option<Vec<_>>> = reads.keys.iter_mut().map(|k| k.udf_keys(events, WHAT)).collect();
        events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let mut key = KeyBuilder::default();
                for (part, spec) in reads.keys.iter().enumerate() {
                    let bytes = match &udf[part] {
                        Some(column) => match &column[i] {
                            Ok(b) => bytes_part(b),
                            Err((kind, why)) => return Err((*kind, format!("input `{input}`: {why}"))),
                        },
                        None => match spec.read_raw(event, None, WHAT) {
                            Ok(super::key::RawKey::Json(text)) => {
                                let path = spec.field().unwrap_or_default().join(".");
                                canonical_part(text, || format!("field `$.{path}`")).map_err(|why| (DeadKind::StepError, format!("input `{input}`: {why}")))?
                            }
                            Ok(super::key::RawKey::Bytes(b)) => bytes_part(b),
                            Err(why) => return Err((DeadKind::StepError, format!("input `{input}`: {why}"))),
                        },
                    };
                    key.push(&bytes);
                }
                Ok(key.finish())
            })
            .collect()
    }

    /// The key group of a (grouping) key. A partial phase's key ends with its
    /// bucket: the buckets of one key go to key groups spread evenly over
    /// the range, so each worker (owning a contiguous range) gets its share
    /// of a hot key.
    fn group_of(&self, key: &[u8]) -> u16 {
        if self.phase != Phase::Partial {
            return crate::runtime::key_group(key, self.key_groups);
        }
        let (base, bucket) = layout::split_last_part(key);
        let bucket: usize = std::str::from_utf8(bucket).ok().and_then(|b| b.parse().ok()).unwrap_or(0);
        let g = self.key_groups;
        ((usize::from(crate::runtime::key_group(base, g)) + bucket * g.div_ceil(usize::from(self.buckets))) % g) as u16
    }

    /// How far key group `kg`'s windows have fired.
    fn fired_to(&self, kg: u16) -> i64 {
        self.floors.get(&kg).copied().unwrap_or(self.progress.fired_to).max(self.progress.fired_to)
    }

    fn arrive_all(&mut self, input: Batch, keys: Vec<Result<Vec<u8>, (DeadKind, String)>>, ctx: &mut StepContext<'_>) -> Batch {
        let port = ctx.input;
        let watermark = ctx.watermark.max(self.progress.watermark).clamp(-FAR_FUTURE, FAR_FUTURE);
        let mut found = Vec::new();
        let mut met: Vec<Option<bool>> = Vec::new();
        let mut accepted: Vec<Accepted<'_>> = Vec::with_capacity(input.events.len());
        // Events are read in place; only a refused one is copied.
        for (index, ((event, origin), key)) in input.events.iter().zip(&input.origins).zip(keys).enumerate() {
            let key = match key {
                Ok(k) => k,
                Err((kind, why)) => {
                    ctx.refuse(&self.name, None, kind, why, origin.clone(), event.clone());
                    continue;
                }
            };
            let t = event.timestamp.clamp(-FAR_FUTURE, FAR_FUTURE);
            if self.phase == Phase::Final {
                if let Err(why) = self.arrive_partial(&key, event, watermark) {
                    ctx.refuse(&self.name, None, DeadKind::StepError, why, origin.clone(), event.clone());
                }
                continue;
            }
            let late = match &self.sessions {
                Some(s) => s.is_late(t, watermark),
                None => self.shape.is_late(t, watermark, self.lateness),
            };
            if late {
                let why = match &self.sessions {
                    Some(_) => format!("late: a session of event time {t} would have closed (watermark {watermark})"),
                    None => {
                        let last = self.shape.window_ends(t).last().unwrap_or(t);
                        format!("late: every window of event time {t} closed (the last ends at {last}; watermark {watermark})")
                    }
                };
                ctx.refuse(&self.name, None, DeadKind::Late, why, origin.clone(), event.clone());
                continue;
            }
            // The fields the aggregates read, in one pass over the record.
            let reads = &self.reads[port];
            found.clear();
            found.resize(reads.fields.len(), None);
            if !reads.fields.is_empty() {
                if let Err(e) = crate::record_schema::members_named(&event.value, &reads.fields, &mut found) {
                    ctx.refuse(&self.name, None, DeadKind::StepError, format!("input `{}`: not a JSON object: {e}", self.inputs[port]), origin.clone(), event.clone());
                    continue;
                }
            }
            let mut counted = Vec::with_capacity(self.aggs.len());
            let mut refused = None;
            met.clear();
            met.resize(self.conditions.len(), None);
            for (a, read) in reads.aggs.iter().enumerate() {
                let Some(field) = read else {
                    counted.push(None);
                    continue;
                };
                let raw = field.and_then(|f| found[f]).map(|r| r.get());
                let meets = match self.condition_of[a] {
                    None => Ok(true),
                    Some(c) => match met[c] {
                        Some(m) => Ok(m),
                        None => self.conditions[c].eval(&event.value).map_err(|e| e.0).inspect(|m| met[c] = Some(*m)),
                    },
                };
                match meets.and_then(|m| if m { self.store_check(a, raw).map(|()| true) } else { Ok(false) }) {
                    Ok(true) => counted.push(Some(raw)),
                    Ok(false) => counted.push(None),
                    Err(why) => {
                        refused = Some(format!("aggregate `{}`: {why}", self.aggs[a].name));
                        break;
                    }
                }
            }
            if let Some(why) = refused {
                ctx.refuse(&self.name, None, DeadKind::StepError, why, origin.clone(), event.clone());
                continue;
            }
            let kg = match (self.phase, self.grouping) {
                (Phase::Partial, _) | (_, crate::runtime::KeyGrouping::KeyHash) => self.group_of(&key),
                _ => self.grouping.group(&key, origin, self.key_groups),
            };
            accepted.push(Accepted { index, t, kg, key, counted });
        }
        // The plugins' aggregates: one `add` call per plugin for the batch,
        // before anything is folded (an event a plugin refuses counts nowhere).
        let (mut parts, groups, refused) = if self.udafs.is_empty() { Default::default() } else { self.add_to_plugins(&input, &accepted, ctx) };
        for (i, acc) in accepted.into_iter().enumerate() {
            if refused.get(i).copied().unwrap_or(false) {
                continue;
            }
            let Accepted { index, t, kg, key, counted } = acc;
            // Each plugin group's accumulator joins its row once, with the group's first event.
            let mut joining: Vec<(usize, Vec<u8>)> = Vec::new();
            for ((u, of_event), list) in self.udafs.iter().zip(&groups).zip(parts.iter_mut()) {
                if let Some(part) = of_event[i].and_then(|g| list.get_mut(g as usize)).and_then(Option::take) {
                    joining.push((u.agg, part));
                }
            }
            self.seq += 1;
            let seq = self.seq;
            let record = &input.events[index].value;
            let fold = |row: &mut Row| {
                for (acc, raw) in row.0.iter_mut().zip(&counted) {
                    if let Some(raw) = raw {
                        // Checked above: cannot fail.
                        let _ = acc.add_record(*raw, t, seq, record);
                    }
                }
                for (a, part) in joining {
                    if let aggregates::Accumulator::Plugin(row_parts) = &mut row.0[a] {
                        row_parts.push(part);
                    }
                }
            };
            if let Some(sessions) = &mut self.sessions {
                if let Err(e) = sessions.add(&key, kg, t, fold) {
                    ctx.fail(format!("step `{}`: state: {e}", self.name));
                    return Batch::default();
                }
                continue;
            }
            fold(self.store.row_mut(self.shape.pane_of(t), kg, &key));
            if self.lateness > 0 {
                let fired = self.fired_to(kg);
                for end in self.shape.window_ends(t).filter(|e| *e <= fired && self.shape.is_open(*e, watermark, self.lateness)) {
                    let u = self.updates.entry((end, key.clone())).or_insert(Updates { kg, count: 0, due: false, dirty: true });
                    u.due = true;
                    u.dirty = true;
                }
            }
        }
        if self.store.full() {
            if let Err(e) = self.store.spill(ctx.state) {
                ctx.fail(format!("step `{}`: state: {e}", self.name));
            }
        }
        Batch::default()
    }

    /// Folds the accepted events into the plugins' accumulators: per plugin,
    /// one `add` call with a fresh accumulator per group (key and pane; for
    /// sessions, per event, since a key's events may land in different
    /// sessions). Returns, per plugin, each group's new accumulator, and per
    /// accepted event whether a plugin refused it (dead-lettered here).
    fn add_to_plugins(&mut self, input: &Batch, accepted: &[Accepted<'_>], ctx: &mut StepContext<'_>) -> PluginAdds {
        let mut refused = vec![false; accepted.len()];
        let mut all_parts = Vec::with_capacity(self.udafs.len());
        let mut all_groups = Vec::with_capacity(self.udafs.len());
        let sessions = self.sessions.is_some();
        for u in 0..self.udafs.len() {
            let agg = self.udafs[u].agg;
            let mut group_of: Map<(i64, &[u8]), u32> = Map::default();
            let (mut events, mut groups, mut members) = (Vec::new(), Vec::new(), Vec::new());
            let mut of_event = vec![None; accepted.len()];
            for (i, acc) in accepted.iter().enumerate() {
                if acc.counted[agg].is_none() || refused[i] {
                    continue;
                }
                let slot = if sessions { (i as i64, acc.key.as_slice()) } else { (self.shape.pane_of(acc.t), acc.key.as_slice()) };
                let n = group_of.len() as u32;
                let g = *group_of.entry(slot).or_insert(n);
                of_event[i] = Some(g);
                events.push(input.events[acc.index].clone());
                groups.push(g);
                members.push(i);
            }
            let udaf = &mut self.udafs[u];
            let empty = match udaf.empty() {
                Ok(e) => e,
                Err(f) => {
                    ctx.fail(format!("step `{}`: plugin `{}` has no empty accumulator: {}", self.name, udaf.plugin, f.message));
                    return (Vec::new(), Vec::new(), vec![true; accepted.len()]);
                }
            };
            let result = udaf.runner.add(vec![empty; group_of.len()], &events, &groups);
            for (e, failure) in result.failed {
                let i = members[e];
                refused[i] = true;
                let origin = input.origins[accepted[i].index].clone();
                ctx.refuse(&self.name, Some(&udaf.plugin), super::dead_kind(failure.kind), failure.message, origin, input.events[accepted[i].index].clone());
            }
            all_parts.push(result.states.into_iter().map(Some).collect());
            all_groups.push(of_event);
        }
        (all_parts, all_groups, refused)
    }

    /// Makes the plugins' values of `rows` (one `merge` and one `finish` call
    /// per plugin for all of them); a failure leaves that value null.
    fn finish_plugins(&mut self, rows: &mut [&mut Row], partial: bool) {
        for udaf in &mut self.udafs {
            let (mut states, mut into) = (Vec::new(), Vec::new());
            for (r, row) in rows.iter_mut().enumerate() {
                if let aggregates::Accumulator::Plugin(parts) = &mut row.0[udaf.agg] {
                    for part in parts.drain(..) {
                        states.push(part);
                        into.push(r as u32);
                    }
                }
            }
            let merged = udaf.runner.merge(states, &into, rows.len() as u32);
            let values = match merged {
                Ok(merged) => udaf.runner.finish(merged, partial),
                Err(f) => {
                    tracing::warn!(step = %self.name, plugin = %udaf.plugin, "merge failed: {}", f.message);
                    vec![Err(f.message); rows.len()]
                }
            };
            for (row, value) in rows.iter_mut().zip(values) {
                row.0[udaf.agg] = aggregates::Accumulator::Finished(value.unwrap_or(Value::Null));
            }
        }
    }

    /// A final phase takes a bucket's accumulators of a window.
    fn arrive_partial(&mut self, key: &[u8], event: &Event, watermark: i64) -> Result<(), String> {
        let p = partial::decode(&event.value)?;
        let row = Row::decode(p.row, self.aggs.len())?;
        // Its window closes at end − 1: the partial step sent it before its
        // watermark passed that, so it is never late here.
        if p.end - 1 <= watermark {
            return Err(format!("a partial result of window [{}, {}) came after the watermark {watermark}", p.start, p.end));
        }
        let kg = self.group_of(key);
        self.store.row_mut(self.shape.pane_of(p.end - 1), kg, key).merge(&row)
    }

    /// Whether aggregate `a` takes `raw` (checked before any changes).
    fn store_check(&self, a: usize, raw: Option<&str>) -> Result<(), String> {
        // An empty accumulator checks types as a full one would.
        self.checkers.0[a].check(raw)
    }

    /// Emits every key's window `[start, end)` over the panes before `upto`
    /// (`end` for the final result), sorted by key; `partial` for an early
    /// firing. Keys whose group fired this window already are skipped.
    fn fire_window(&mut self, state: &dyn StateBackend, end: i64, upto: i64, partial: bool) -> Result<(), StateError> {
        let start = end - self.report_size;
        let mark = partial.then_some(("partial", 0));
        let with_plugins = !self.udafs.is_empty() && self.phase != Phase::Partial;
        let mut held: Vec<(Vec<u8>, Row)> = Vec::new();
        let (floors, fired_to, emit) = (&self.floors, self.progress.fired_to, &mut self.emit);
        self.store.each_merged(state, end - self.shape.size_ms, upto, &mut |key, kg, row| {
            // After a restore at another parallelism: skip what this key's group fired before.
            if !partial && floors.get(&kg).is_some_and(|f| (*f).max(fired_to) >= end) {
                return;
            }
            if with_plugins {
                held.push((key.to_vec(), row.clone()));
            } else {
                emit.output(key, start, end, row, mark);
            }
        })?;
        // Plugins' values: one merge and one finish call for the window.
        if with_plugins {
            self.emit_with_plugins(held.into_iter().map(|(k, r)| (k, start, end, r, mark)).collect(), partial);
        }
        Ok(())
    }

    /// Outputs `rows` (key, start, end, row, mark) after their plugins' values are made.
    fn emit_with_plugins(&mut self, mut rows: Vec<Output>, partial: bool) {
        if self.phase != Phase::Partial && !self.udafs.is_empty() {
            let mut refs: Vec<&mut Row> = rows.iter_mut().map(|r| &mut r.3).collect();
            self.finish_plugins(&mut refs, partial);
        }
        for (key, start, end, row, mark) in rows {
            self.emit.output(&key, start, end, &row, mark);
        }
    }

    /// Everything watermark `w` makes due, into `pending`.
    fn fire(&mut self, w: i64, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let w = w.max(self.progress.watermark).clamp(-FAR_FUTURE, FAR_FUTURE);
        self.progress.watermark = w;
        if let Some(sessions) = &mut self.sessions {
            let fired = sessions.fire(w).into_iter().map(|(key, _, start, end, row, n)| (key, start, end, row, (n > 0).then_some(("update", n)))).collect();
            self.emit_with_plugins(fired, false);
            return Ok(());
        }
        let (size, slide) = (self.shape.size_ms, self.shape.slide_ms);
        // Updates of fired windows by late events.
        let due: Vec<(i64, Vec<u8>)> = self.updates.iter().filter(|(_, u)| u.due).map(|(k, _)| k.clone()).collect();
        for (end, key) in due {
            let kg = self.updates[&(end, key.clone())].kg;
            if let Some(row) = self.store.gather_key(state, self.shape.panes_of_window(end), kg, &key)? {
                let u = self.updates.get_mut(&(end, key.clone())).expect("listed above");
                u.count += 1;
                u.due = false;
                u.dirty = true;
                let n = u.count;
                self.emit_with_plugins(vec![(key, end - size, end, row, Some(("update", n)))], false);
            }
        }
        // Final results, window by window.
        let last = self.shape.last_complete_end(w);
        let mut end = match self.progress.fired_to {
            i64::MIN => self.store.next_pane(i64::MIN).and_then(|p| self.shape.window_ends(p).next()).unwrap_or(last.saturating_add(slide)),
            f => f + slide,
        };
        while end <= last {
            // Skip to the first window that has a pane.
            let Some(pane) = self.store.next_pane(end - size) else { break };
            if pane >= end {
                end = self.shape.window_ends(pane).next().unwrap_or(end + slide).max(end + slide);
                continue;
            }
            self.fire_window(state, end, end, false)?;
            self.progress.fired_to = end;
            end += slide;
        }
        self.progress.fired_to = self.progress.fired_to.max(last);
        if self.floors.values().all(|f| *f <= self.progress.fired_to) {
            self.floors.clear();
        }
        // Early firings of the windows still open.
        if let Some(every) = self.early {
            let off = self.shape.offset_ms.rem_euclid(every);
            let align = |c: i64| (c - off).div_euclid(every) * every + off;
            let mut c = align(self.progress.early_to.max(last - size)) + every;
            while c <= w + 1 {
                // The open windows c falls strictly inside: ends in (c, c + size).
                let first_end = self.shape.window_ends(c).next().unwrap_or(c + slide);
                let mut end = first_end.max(last + slide);
                while end < c + size {
                    if end != c && self.store.next_pane(end - size).is_some_and(|p| p < c) {
                        self.fire_window(state, end, c, true)?;
                    }
                    end += slide;
                }
                self.progress.early_to = c;
                c += every;
            }
        }
        // What no window needs any more: panes before the first window that
        // may still change, and its updates.
        let first_open = self.shape.last_complete_end(w - self.lateness) + slide;
        self.store.expire_before(state, first_open - size)?;
        let closed: Vec<(i64, Vec<u8>)> = self.updates.range(..(first_open, Vec::new())).map(|(k, _)| k.clone()).collect();
        if !closed.is_empty() {
            for k in closed {
                self.updates.remove(&k);
            }
            state.delete_range(self.tables().updates, &[], &t8(first_open))?;
        }
        Ok(())
    }

    fn save(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        self.store.flush(state)?;
        if let Some(sessions) = &mut self.sessions {
            sessions.save(state)?;
        }
        let (updates, meta) = (self.tables().updates, self.tables().meta);
        for ((end, key), u) in self.updates.iter_mut().filter(|(_, u)| u.dirty) {
            let mut v = u.count.to_be_bytes().to_vec();
            v.push(u8::from(u.due));
            state.put(updates, &row_key(*end, u.kg, key), &v)?;
            u.dirty = false;
        }
        state.put(meta, b"progress", &self.progress.encode())?;
        state.put(meta, b"seq", &self.seq.to_be_bytes())?;
        let floors: Vec<u8> = self.floors.iter().flat_map(|(kg, f)| kg.to_be_bytes().into_iter().chain(f.to_be_bytes())).collect();
        state.put(meta, b"floors", &floors)
    }

    fn open_tables(&self, state: &mut dyn StateBackend) -> Result<Tables, StateError> {
        let by_prefix = TableOptions { range_prefix_len: Some(layout::PREFIX_LEN) };
        Ok(Tables {
            panes: state.open_table_with(&format!("{}/panes", self.name), by_prefix)?,
            sessions: state.open_table(&format!("{}/sessions", self.name))?,
            updates: state.open_table(&format!("{}/updates", self.name))?,
            meta: state.open_table(&format!("{}/meta", self.name))?,
        })
    }

    fn check_layout(&self, state: &mut dyn StateBackend, meta: TableId) -> Result<bool, StateError> {
        match state.get(meta, b"layout")? {
            Some(v) if v == STATE_LAYOUT => Ok(true),
            Some(v) => Err(StateError::Incompatible {
                owner: format!("window-aggregate step `{}`", self.name),
                reason: format!("written with state layout {}, this version reads layout {}", String::from_utf8_lossy(&v), String::from_utf8_lossy(STATE_LAYOUT)),
            }),
            None => Ok(false),
        }
    }
}

fn fail_on(ctx: &mut StepContext<'_>, name: &str, e: StateError) {
    ctx.fail(format!("step `{name}`: state: {e}"));
}

/// Reads a one-part key of a top-level field in a source's pass.
struct FieldCapture {
    field: String,
    key_groups: usize,
}

impl super::KeyCapture for FieldCapture {
    fn field(&self) -> &str {
        &self.field
    }

    fn wants_names(&self) -> bool {
        false
    }

    fn capture(&self, raw: Option<&str>, _names: &[std::borrow::Cow<'_, str>]) -> RoutedKey {
        let key = match raw {
            Some(text) => canonical_part(text, || format!("field `$.{}`", self.field)).map(|part| {
                let mut k = KeyBuilder::default();
                k.push(&part);
                k.finish()
            }),
            None => Err(super::key::missing_key(std::slice::from_ref(&self.field), WHAT)),
        };
        routed(key.map_err(|why| (DeadKind::StepError, why)), self.key_groups)
    }
}

fn routed(key: Result<Vec<u8>, (DeadKind, String)>, key_groups: usize) -> RoutedKey {
    RoutedKey { group: key.as_ref().map_or(0, |k| crate::runtime::key_group(k, key_groups)), read: ReadKey { key, plain_names: false } }
}

impl Operator for WindowAggregate {
    fn state_fingerprint(&self) -> Option<Value> {
        Some(self.fingerprint.clone())
    }

    fn open_state(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let tables = self.open_tables(state)?;
        if !self.check_layout(state, tables.meta)? {
            state.put(tables.meta, b"layout", STATE_LAYOUT)?;
            state.commit()?;
        }
        if let Some(p) = state.get(tables.meta, b"progress")?.as_deref().and_then(Progress::decode) {
            self.progress = p;
        }
        if let Some(s) = state.get(tables.meta, b"seq")? {
            self.seq = s.as_slice().try_into().map_or(0, u64::from_be_bytes);
        }
        if let Some(f) = state.get(tables.meta, b"floors")? {
            self.floors = f.chunks_exact(10).map(|c| (u16::from_be_bytes([c[0], c[1]]), i64::from_be_bytes(c[2..].try_into().expect("8 bytes")))).collect();
        }
        let mut updates = BTreeMap::new();
        state.scan(tables.updates, &[], None, &mut |k, v| {
            if let (Some((end, kg, key)), Some(count)) = (split_row_key(k), v.get(..4)) {
                let count = u32::from_be_bytes(count.try_into().expect("4 bytes"));
                updates.insert((end, key.to_vec()), Updates { kg, count, due: v.get(4) == Some(&1), dirty: false });
            }
            true
        })?;
        self.updates = updates;
        self.store.open(state, tables.panes, tables.meta)?;
        if let Some(sessions) = &mut self.sessions {
            sessions.open(state, tables.sessions)?;
        }
        self.tables = Some(tables);
        Ok(())
    }

    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        let keys = self.read_keys(ctx.input, &input.events);
        self.arrive_all(input, keys, ctx)
    }

    fn process_routed(&mut self, input: Batch, routed: Vec<RoutedKey>, ctx: &mut StepContext<'_>) -> Batch {
        let keys = routed.into_iter().map(|r| r.read.key).collect();
        self.arrive_all(input, keys, ctx)
    }

    fn route_keys(&mut self, port: usize, events: &[Event]) -> Option<Vec<RoutedKey>> {
        let keys = self.read_keys(port, events);
        Some(keys.into_iter().map(|key| RoutedKey { group: key.as_ref().map_or(0, |k| self.group_of(k)), read: ReadKey { key, plain_names: false } }).collect())
    }

    fn key_capture(&self, port: usize) -> Option<Arc<dyn super::KeyCapture>> {
        if self.phase != Phase::Whole {
            return None;
        }
        match self.reads.get(port)?.keys.as_slice() {
            [one] => match one.field()? {
                [field] => Some(Arc::new(FieldCapture { field: field.clone(), key_groups: self.key_groups })),
                _ => None,
            },
            _ => None,
        }
    }

    fn on_watermark(&mut self, watermark: i64, ctx: &mut StepContext<'_>) -> Batch {
        if self.emit.pending.is_empty() {
            if let Err(e) = self.fire(watermark, ctx.state) {
                fail_on(ctx, &self.name, e);
                return Batch::default();
            }
        }
        let n = self.emit.pending.len().min(FIRE_CHUNK);
        let mut out = Batch::with_capacity(n);
        for (event, origin) in self.emit.pending.drain(..n) {
            out.push(event, origin);
        }
        out
    }

    fn prepare_checkpoint(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        self.save(state)
    }

    fn output_watermark(&self, input: i64) -> i64 {
        // A window's outputs carry time end − 1 and leave when the input
        // passes end − 1, before this watermark goes on; late updates of a
        // fired window come up to `allowed_lateness_ms` after it.
        match input {
            crate::source::END_OF_TIME => input,
            _ => input.saturating_sub(self.lateness),
        }
    }

    fn rescale(&mut self, from: &mut dyn StateBackend, to: &mut dyn StateBackend, owned: &dyn Fn(u16) -> bool) -> Result<(), StateError> {
        let old = self.open_tables(from)?;
        if !self.check_layout(from, old.meta)? {
            return Ok(());
        }
        let new = self.open_tables(to)?;
        let progress = from.get(old.meta, b"progress")?.as_deref().and_then(Progress::decode).unwrap_or(Progress::NONE);
        let old_floors: HashMap<u16, i64> = from
            .get(old.meta, b"floors")?
            .unwrap_or_default()
            .chunks_exact(10)
            .map(|c| (u16::from_be_bytes([c[0], c[1]]), i64::from_be_bytes(c[2..].try_into().expect("8 bytes"))))
            .collect();
        // The key groups this worker takes rows of, with how far they fired.
        let mut taken: HashMap<u16, i64> = HashMap::new();
        for (table, to_table) in [(old.panes, new.panes), (old.updates, new.updates), (old.sessions, new.sessions)] {
            let mut failed = None;
            let mut n = 0u64;
            let sessions = table == old.sessions;
            from.scan(table, &[], None, &mut |k, v| {
                let kg = if sessions { sessions::key_group_of(k) } else { split_row_key(k).map(|(_, kg, _)| kg) };
                let Some(kg) = kg else { return true };
                if !owned(kg) {
                    return true;
                }
                taken.entry(kg).or_insert_with(|| old_floors.get(&kg).copied().unwrap_or(progress.fired_to).max(progress.fired_to));
                n += 1;
                let done = to.put(to_table, k, v).and_then(|()| if n.is_multiple_of(4096) { to.commit() } else { Ok(()) });
                failed = done.err();
                failed.is_none()
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        // Merge with what earlier old workers gave this one.
        let mut mine = to.get(new.meta, b"progress")?.as_deref().and_then(Progress::decode);
        let mut floors: HashMap<u16, i64> = to
            .get(new.meta, b"floors")?
            .unwrap_or_default()
            .chunks_exact(10)
            .map(|c| (u16::from_be_bytes([c[0], c[1]]), i64::from_be_bytes(c[2..].try_into().expect("8 bytes"))))
            .collect();
        floors.extend(taken);
        let merged = match mine.take() {
            None => progress,
            Some(m) => Progress { fired_to: m.fired_to.min(progress.fired_to), early_to: m.early_to.max(progress.early_to), watermark: m.watermark.max(progress.watermark) },
        };
        let seq = |s: Option<Vec<u8>>| s.and_then(|s| <[u8; 8]>::try_from(s.as_slice()).ok()).map_or(0, u64::from_be_bytes);
        let next_seq = seq(from.get(old.meta, b"seq")?).max(seq(to.get(new.meta, b"seq")?));
        let spilled = {
            // Every pane this worker now holds rows of is spilled.
            let mut panes = std::collections::BTreeSet::new();
            to.commit()?;
            to.scan(new.panes, &[], None, &mut |k, _| {
                if let Some((p, _, _)) = split_row_key(k) {
                    panes.insert(p);
                }
                true
            })?;
            panes.into_iter().flat_map(i64::to_be_bytes).collect::<Vec<u8>>()
        };
        to.put(new.meta, b"spilled", &spilled)?;
        to.put(new.meta, b"progress", &merged.encode())?;
        to.put(new.meta, b"seq", &next_seq.to_be_bytes())?;
        let floors: Vec<u8> = floors.iter().flat_map(|(kg, f)| kg.to_be_bytes().into_iter().chain(f.to_be_bytes())).collect();
        to.put(new.meta, b"floors", &floors)?;
        to.put(new.meta, b"layout", STATE_LAYOUT)?;
        to.commit()
    }
}
