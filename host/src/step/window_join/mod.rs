//! `window-join`: joins a main input with other inputs on a key, within a
//! window of event time relative to each main event; emits when the
//! watermark closes a window (or on each match). Semantics: docs/window-join.md.
//!
//! Timers are not per record: main events wait by the time they fire, so a
//! watermark fires a prefix of them. `on_window_end.rs` and `on_match.rs`
//! hold what differs between the emit policies; this module what they share
//! (keys, arrival, lookups of matches, the joiner, expiry); `layout.rs` the
//! state's keys and record codec.

mod key_filter;
mod layout;
mod main_log;
mod merge;
mod on_match;
mod on_window_end;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde_json::Value;


use super::key::{key_from_raw, missing_key, KeySpec};
use super::{dead_kind, Operator, ReadKey, RoutedKey, StepContext};
use crate::config::{EmitPolicy, JoinMode, JoinerConfig, WindowJoinConfig};
use crate::dead_letter::DeadKind;
use crate::event::{Batch, Event, Origin};
use crate::plugin::{JoinCase, JoinerRunner, Outcome, UdfRunner};
use crate::state::{StateBackend, StateError, TableId, TableOptions};
use key_filter::KeyFilter;
use layout::{bucket_of, decode, decode_in, other_key, other_range, SourceNames, Stored};
use main_log::MainLog;
use merge::MergeJoiner;


/// How reasons name the key.
const WHAT: &str = "join key";

/// Main events fired per call of `on_watermark` (bounds the output batch),
/// and the most cases handed to a joiner plugin in one call.
const FIRE_CHUNK: usize = 1024;

/// Bytes of matches one firing loads (per other input) before it stops
/// taking more main events: with `max_matches` per main event, this bounds
/// the memory (and the output batch) of a chunk of hot keys.
#[cfg(not(test))]
const FIRE_MATCH_BYTES: usize = 32 << 20;

/// Unit tests cut firings after a few matches, so the comparisons with the
/// reference model prove that a cut changes nothing.
#[cfg(test)]
const FIRE_MATCH_BYTES: usize = 256;

/// The header naming, as a JSON object, how many events of each input were
/// left out of an output's join by `max_matches`.
pub const TRUNCATED_HEADER: &str = "streamhost-truncated";

/// What makes a main event and its matches into output events.
enum Joiner {
    /// The built-in JSON merge (`JoinerConfig::Merge`).
    Merge(MergeJoiner),
    /// A `joiner` plugin, with the plugin's name (for dead letters).
    Plugin(Box<JoinerRunner>, String),
    /// A `joiner` plugin held elsewhere: a router's copy of the step reads
    /// keys as the step does, and never joins.
    Elsewhere,
}

/// Joined cases waiting for the joiner: the joiner is called once per
/// batch of them (a fired chunk, or one input batch's on-match pairs), not
/// once per case.
#[derive(Default)]
struct Pending {
    mains: Vec<Stored>,
    /// Per main event: events left out by `max_matches`, as (input index
    /// in `inputs`, count); empty when none were.
    truncated: Vec<Vec<(usize, u64)>>,
    /// (index in `mains`, matches grouped by other input).
    cases: Vec<(usize, Vec<Vec<Stored>>)>,
}

impl Pending {
    fn add_main(&mut self, main: Stored, truncated: Vec<(usize, u64)>) -> usize {
        self.mains.push(main);
        self.truncated.push(truncated);
        self.mains.len() - 1
    }
}

/// A main event's matches, grouped by other input and capped at
/// `max_matches` each, with the counts left out (per other input).
#[derive(Clone, Default)]
struct Matches {
    groups: Vec<Vec<Stored>>,
    left_out: Vec<u64>,
}

impl Matches {
    fn new(others: usize) -> Self {
        Matches { groups: vec![Vec::new(); others], left_out: vec![0; others] }
    }

    /// (input index in `inputs`, count) of the inputs with events left out.
    fn truncated(&self) -> Vec<(usize, u64)> {
        self.left_out.iter().enumerate().filter(|(_, n)| **n > 0).map(|(k, n)| (k + 1, *n)).collect()
    }
}

/// The join's tables (opened on the pipeline's state backend).
struct Tables {
    /// fire time ++ seq → main event.
    main: TableId,
    /// Per other input: bucket ++ key ++ time ++ seq → event.
    others: Vec<TableId>,
    /// `on-match` only: bucket ++ key ++ time ++ seq → main key, to find
    /// the waiting main events an arriving other event matches.
    main_by_key: TableId,
    /// `on-match` + `left`: main key → "" once the main event has matched.
    matched: TableId,
    /// Counters that must survive a restart (`seq`).
    meta: TableId,
    /// `on-window-end`: the main events, by fire bucket (`main` stays empty).
    main_log: Option<MainLog>,
}

pub struct WindowJoin {
    name: String,
    inputs: Vec<String>,
    /// Field path of each input's key; `None`: the event key.
    keys: Vec<KeySpec>,
    start: i64,
    end: i64,
    lateness: i64,
    bucket: i64,
    mode: JoinMode,
    emit: EmitPolicy,
    joiner: Joiner,
    pending: Pending,
    tables: Option<Tables>,
    /// Events stored so far (the low 48 bits of each seq; the high 16 are the
    /// key group, so seqs of different workers never collide after a rescale).
    seq: u64,
    /// Key groups keys hash into (`settings.max_parallelism`).
    key_groups: usize,
    /// What decides an event's key group (its key's hash, or its partition).
    grouping: crate::runtime::KeyGrouping,
    /// Other-input buckets below this one are deleted.
    expired_below: i64,
    /// Fire time of the earliest waiting main event (for the output watermark).
    earliest_fire: Option<i64>,
    /// Main keys below this have fired and been deleted.
    fired_below: Vec<u8>,
    /// Reused for encoding each arriving event.
    scratch: Vec<u8>,
    /// Per other input: the key hashes each of its buckets holds.
    filters: Vec<KeyFilter>,
    /// What the state means (see [`Operator::state_fingerprint`]).
    fingerprint: Value,
    /// The most matches per other input joined to one main event.
    max_matches: usize,
    /// The step's counters (shared with the run's summary once built).
    stats: std::sync::Arc<crate::runtime::NodeStats>,
    /// Its figures in its worker (held, fired, matched, late), once built.
    metrics: Option<crate::metrics::JoinMetrics>,
}

/// The merge joiner's prefix of each other input (default `INPUT.`).
fn merge_prefixes(cfg: &WindowJoinConfig) -> Vec<String> {
    let empty = Default::default();
    let prefixes = match &cfg.joiner {
        JoinerConfig::Merge { prefixes } => prefixes,
        JoinerConfig::Plugin { .. } => &empty,
    };
    cfg.inputs[1..].iter().map(|i| prefixes.get(i).cloned().unwrap_or_else(|| format!("{i}."))).collect()
}

/// The parameters the join's state is written under, shaped like its config
/// (so a difference names the field): which events are kept (inputs, keys),
/// where (bucket, layout), until when (window, lateness, mode, emit), and
/// what was recorded for the joiner on arrival (merge: whether a main
/// event's names can collide with the prefixes). Not the joiner plugin, its
/// version or `max_matches`: those act when firing and may change.
fn fingerprint(cfg: &WindowJoinConfig, bucket: i64) -> Value {
    let keys: serde_json::Map<String, Value> = cfg
        .inputs
        .iter()
        .map(|i| {
            let key = cfg.keys.get(i).map_or_else(|| Value::from("(the event key)"), |k| serde_json::to_value(k).unwrap_or(Value::Null));
            (i.clone(), key)
        })
        .collect();
    let joiner = match &cfg.joiner {
        JoinerConfig::Merge { .. } => {
            let prefixes: serde_json::Map<String, Value> =
                cfg.inputs[1..].iter().cloned().zip(merge_prefixes(cfg).into_iter().map(Value::from)).collect();
            serde_json::json!({ "type": "merge", "prefixes": prefixes })
        }
        JoinerConfig::Plugin { .. } => serde_json::json!({ "type": "plugin" }),
    };
    serde_json::json!({
        "type": "window-join",
        "inputs": cfg.inputs,
        "keys": keys,
        "window": { "start_ms": cfg.window.start_ms, "end_ms": cfg.window.end_ms },
        "bucket_ms": bucket,
        "allowed_lateness_ms": cfg.allowed_lateness_ms,
        "mode": cfg.mode,
        "emit": cfg.emit,
        "joiner": joiner,
        "state_layout": String::from_utf8_lossy(STATE_LAYOUT),
    })
}

impl WindowJoin {
    /// A join with the built-in merge joiner (`JoinerConfig::Merge`; a
    /// plugin joiner needs its runner: [`WindowJoin::with_plugin`]).
    pub fn new(name: &str, cfg: &WindowJoinConfig) -> Self {
        debug_assert!(matches!(cfg.joiner, JoinerConfig::Merge { .. }), "a plugin joiner is built with WindowJoin::with_plugin");
        Self::with_joiner(name, cfg, Joiner::Merge(MergeJoiner::new(merge_prefixes(cfg))))
    }

    /// A copy of the join that only reads keys (the thread routing its
    /// inputs): it reads them as the join does, whichever its joiner.
    pub fn router(name: &str, cfg: &WindowJoinConfig) -> Self {
        match cfg.joiner {
            JoinerConfig::Merge { .. } => Self::new(name, cfg),
            JoinerConfig::Plugin { .. } => Self::with_joiner(name, cfg, Joiner::Elsewhere),
        }
    }

    /// A join whose output is made by the `joiner` plugin `plugin`.
    pub fn with_plugin(name: &str, cfg: &WindowJoinConfig, plugin: &str, runner: JoinerRunner) -> Self {
        Self::with_joiner(name, cfg, Joiner::Plugin(Box::new(runner), plugin.to_string()))
    }

    fn with_joiner(name: &str, cfg: &WindowJoinConfig, joiner: Joiner) -> Self {
        let keys = cfg
            .inputs
            .iter()
            .map(|i| KeySpec::of(cfg.keys.get(i)))
            .collect();
        let length = cfg.window.end_ms.saturating_sub(cfg.window.start_ms).max(1);
        let bucket = cfg.bucket_ms.map_or(length, |b| b.clamp(1, i64::MAX as u64) as i64);
        WindowJoin {
            fingerprint: fingerprint(cfg, bucket),
            max_matches: cfg.max_matches.max(1),
            stats: crate::runtime::NodeStats::new(name, crate::runtime::NodeKind::Step),
            name: name.to_string(),
            inputs: cfg.inputs.clone(),
            keys,
            start: cfg.window.start_ms,
            end: cfg.window.end_ms,
            lateness: cfg.allowed_lateness_ms.min(i64::MAX as u64) as i64,
            bucket,
            mode: cfg.mode,
            emit: cfg.emit,
            joiner,
            pending: Pending::default(),
            tables: None,
            seq: 0,
            key_groups: 1,
            grouping: Default::default(),
            expired_below: i64::MIN,
            earliest_fire: None,
            fired_below: Vec::new(),
            scratch: Vec::new(),
            filters: (1..cfg.inputs.len()).map(|_| KeyFilter::default()).collect(),
            metrics: None,
        }
    }

    /// `n` main events fired (their window closed): no longer held.
    pub(super) fn count_fired(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.fired.inc_by(n as u64);
            // Events restored from a checkpoint were never counted as held.
            m.held.sub((n as i64).min(m.held.get()));
        }
    }

    /// When a main event at `t` fires: its window's end plus the lateness.
    fn fire_time(&self, t: i64) -> i64 {
        t.saturating_add(self.end).saturating_add(self.lateness)
    }

    /// When an other event at `t` can no longer match any window: the fire
    /// time of the latest main event it could match (`t - start`).
    fn other_done_time(&self, t: i64) -> i64 {
        self.fire_time(t.saturating_sub(self.start))
    }

    /// Gives the inputs whose keys a UDF computes their runners (by input name).
    pub fn with_key_udfs(mut self, mut runners: std::collections::BTreeMap<String, UdfRunner>) -> Self {
        for (input, key) in self.inputs.iter().zip(&mut self.keys) {
            key.set_runner(runners.remove(input));
        }
        self
    }

    /// The join key of `event` from input `port` (a field or the event key),
    /// or why there is none; also appends its member names to `names`, when given.
    fn join_key<'e>(&self, port: usize, event: &'e Event, names: Option<&mut Vec<Cow<'e, str>>>) -> Result<Vec<u8>, String> {
        self.keys[port].read(event, names, WHAT)
    }

    /// Hashes keys into `n` key groups (`settings.max_parallelism`).
    pub fn with_key_groups(mut self, n: usize) -> Self {
        self.key_groups = n.max(1);
        if let Value::Object(f) = &mut self.fingerprint {
            f.insert("max_parallelism".into(), Value::from(self.key_groups));
        }
        self
    }

    /// Key groups by input partition instead of key hash (scale-out over a
    /// consumer group), as the router groups them.
    pub fn with_grouping(mut self, grouping: crate::runtime::KeyGrouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// The seq of the next event stored under `join_key`, read at `origin`:
    /// its key group, then a counter (per key, seqs rise in arrival order).
    fn next_seq(&mut self, join_key: &[u8], origin: &Origin) -> u64 {
        self.seq += 1;
        let kg = self.grouping.group(join_key, origin, self.key_groups);
        (u64::from(kg) << SEQ_COUNTER_BITS) | (self.seq & ((1 << SEQ_COUNTER_BITS) - 1))
    }

    fn tables(&self) -> &Tables {
        self.tables.as_ref().expect("open_state runs before any batch")
    }

    /// The matches of each of `mains` (like [`Self::matches_of`]), looked up
    /// with one cursor per other input for the whole chunk. Stops taking
    /// main events once [`FIRE_MATCH_BYTES`] of matches are loaded: the
    /// result may be shorter than `mains` (the rest fire next time).
    fn matches_of_all(&self, state: &dyn StateBackend, mains: &[&Stored]) -> Result<Vec<Matches>, StateError> {
        let others = &self.tables().others;
        let mut all: Vec<Matches> = mains.iter().map(|_| Matches::new(others.len())).collect();
        // Main events past `cut` are not taken this time.
        let mut cut = mains.len();
        let mut names = SourceNames::default();
        let mut ranges = Vec::new();
        let mut owner = Vec::new();
        for (k, &table) in others.iter().enumerate() {
            // Only the buckets whose filter may hold the key are read.
            ranges.clear();
            owner.clear();
            for (i, main) in mains.iter().enumerate() {
                let t = main.event.timestamp;
                let (lo, hi) = (t.saturating_add(self.start), t.saturating_add(self.end));
                let hash = layout::key_hash32(&main.join_key);
                for b in bucket_of(lo, self.bucket)..=bucket_of(hi, self.bucket) {
                    if self.filters[k].may_hold(b, hash) {
                        ranges.push(other_range(b, &main.join_key, lo, hi));
                        owner.push(i);
                    }
                }
            }
            if ranges.is_empty() {
                continue;
            }
            let mut loaded = 0usize;
            state.scan_ranges(table, &ranges, &mut |r, _, v| {
                let i = owner[r];
                if i >= cut {
                    return;
                }
                // The range holds every key with the same hash: keep the main's own.
                if layout::join_key_of(v) != Some(mains[i].join_key.as_slice()) {
                    return;
                }
                let m = &mut all[i];
                if m.groups[k].len() >= self.max_matches {
                    m.left_out[k] += 1;
                } else if let Some(found) = decode_in(v, &mut names) {
                    loaded += v.len();
                    m.groups[k].push(found);
                    if loaded >= FIRE_MATCH_BYTES && i + 1 < cut {
                        cut = i + 1;
                    }
                }
            })?;
        }
        all.truncate(cut);
        for m in &all {
            self.count_truncated(m.left_out.iter().sum());
        }
        Ok(all)
    }

    /// The matches of `main` in every other input, grouped by input, in
    /// time (then arrival) order, at most `max_matches` each.
    fn matches_of(&self, state: &dyn StateBackend, main: &Stored) -> Result<Matches, StateError> {
        let t = main.event.timestamp;
        let (lo, hi) = (t.saturating_add(self.start), t.saturating_add(self.end));
        let ranges: Vec<_> = (bucket_of(lo, self.bucket)..=bucket_of(hi, self.bucket))
            .map(|b| other_range(b, &main.join_key, lo, hi))
            .collect();
        let mut found = Matches::new(self.tables().others.len());
        for (k, &table) in self.tables().others.iter().enumerate() {
            state.scan_ranges(table, &ranges, &mut |_, _, v| {
                if layout::join_key_of(v) != Some(main.join_key.as_slice()) {
                    return;
                }
                if found.groups[k].len() >= self.max_matches {
                    found.left_out[k] += 1;
                } else {
                    found.groups[k].extend(decode(v));
                }
            })?;
        }
        self.count_truncated(found.left_out.iter().sum());
        Ok(found)
    }

    /// Counts one event whose join left `n` events out (if `n > 0`).
    fn count_truncated(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if n > 0 {
            self.stats.over_max_matches.fetch_add(1, Relaxed);
            self.stats.matches_not_joined.fetch_add(n, Relaxed);
        }
    }

    /// Shares the step's counters with the run (its summary and stats).
    pub fn with_stats(mut self, stats: std::sync::Arc<crate::runtime::NodeStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Hands every pending case to the joiner (a plugin: one call per
    /// [`FIRE_CHUNK`] cases) and appends the outputs to `out`, in case
    /// order; a main event whose join fails is dead-lettered.
    fn flush(&mut self, out: &mut Batch, ctx: &mut StepContext<'_>) {
        let mut pending = std::mem::take(&mut self.pending);
        if let Some(m) = &self.metrics {
            m.matched.inc_by(pending.cases.iter().filter(|(_, groups)| groups.iter().any(|g| !g.is_empty())).count() as u64);
        }
        // What `max_matches` left out is said on the main event (a plugin
        // joiner sees it) and on every output made from it.
        let headers: Vec<Option<crate::event::Header>> = pending
            .truncated
            .iter()
            .map(|t| {
                (!t.is_empty()).then(|| {
                    let counts: serde_json::Map<String, Value> = t.iter().map(|(i, n)| (self.inputs[*i].clone(), Value::from(*n))).collect();
                    crate::event::Header { name: TRUNCATED_HEADER.into(), value: Value::Object(counts).to_string().into_bytes() }
                })
            })
            .collect();
        for (main, header) in pending.mains.iter_mut().zip(&headers) {
            main.event.headers.extend(header.clone());
        }
        let marked = |mut event: Event, i: usize| {
            if let Some(h) = &headers[i] {
                if !event.headers.iter().any(|e| e.name == TRUNCATED_HEADER) {
                    event.headers.push(h.clone());
                }
            }
            event
        };
        match &mut self.joiner {
            Joiner::Merge(merge) => {
                let mut left_out = Vec::new();
                for (i, groups) in &pending.cases {
                    let main = &pending.mains[*i];
                    left_out.clear();
                    left_out.resize(groups.len(), 0);
                    for (input, n) in &pending.truncated[*i] {
                        if let Some(slot) = input.checked_sub(1).and_then(|k| left_out.get_mut(k)) {
                            *slot = *n;
                        }
                    }
                    match merge.join(main, groups, &left_out) {
                        Ok(event) => out.push(event, main.origin.clone()),
                        Err(reason) => {
                            ctx.refuse(&self.name, None, DeadKind::StepError, reason, main.origin.clone(), main.event.clone())
                        }
                    }
                }
            }
            Joiner::Plugin(runner, plugin) => {
                for chunk in pending.cases.chunks(FIRE_CHUNK) {
                    let cases: Vec<JoinCase<'_>> = chunk
                        .iter()
                        .map(|(i, groups)| JoinCase {
                            main: &pending.mains[*i].event,
                            matches: groups.iter().map(|g| g.iter().map(|m| &m.event).collect()).collect(),
                        })
                        .collect();
                    let outcomes = runner.join(&self.inputs[1..], &cases);
                    for ((i, _), outcome) in chunk.iter().zip(outcomes) {
                        let main = &pending.mains[*i];
                        match outcome {
                            Outcome::Ok(events) => {
                                for event in events {
                                    out.push(marked(event, *i), main.origin.clone());
                                }
                            }
                            Outcome::Failed(f) => ctx.refuse(
                                &self.name,
                                Some(plugin),
                                dead_kind(f.kind),
                                f.message,
                                main.origin.clone(),
                                main.event.clone(),
                            ),
                        }
                    }
                }
            }
            // A router's copy never holds cases to join.
            Joiner::Elsewhere => debug_assert!(pending.cases.is_empty(), "a router's copy of a join never joins"),
        }
    }

    /// Reads what arrival needs of `event` from input `port`: its join key (given
    /// when a UDF computed it), whether it is an object (the merge joiner merges
    /// objects: anything else is refused now, not when the window fires an hour
    /// later), and for a main event whether its names are plain. One pass over
    /// the top level, done by the thread that routes the event when there is one.
    /// `names` is scratch space (reused across a batch: no allocation per event).
    fn read_key<'e>(
        &self,
        port: usize,
        event: &'e Event,
        udf: Option<Result<Vec<u8>, (DeadKind, String)>>,
        names: &mut Vec<Cow<'e, str>>,
    ) -> ReadKey {
        let merge = match &self.joiner {
            Joiner::Merge(m) => Some(m),
            Joiner::Plugin(..) | Joiner::Elsewhere => None,
        };
        // A main event's names, for the merge joiner: read with the key
        // when the key is a field, so firing need not read them again.
        let want_names = port == 0 && merge.is_some();
        names.clear();
        let key = udf.unwrap_or_else(|| self.join_key(port, event, want_names.then_some(&mut *names)).map_err(|reason| (DeadKind::StepError, reason)));
        if key.is_err() {
            return ReadKey { key, plain_names: false };
        }
        // A plugin joiner takes any value; a field key was read from an object already.
        let key_read_object = matches!(self.keys[port], KeySpec::Field(_));
        let object = if merge.is_none() || key_read_object {
            true
        } else if want_names {
            crate::record_schema::member_names(&event.value, names).is_ok()
        } else {
            crate::record_schema::is_object(&event.value)
        };
        if !object {
            return ReadKey { key: Err((DeadKind::StepError, "the value is not a JSON object".into())), plain_names: false };
        }
        ReadKey { key, plain_names: want_names && merge.is_some_and(|m| m.plain(names)) }
    }

    /// [`Self::read_key`] for each event of a batch from input `port`.
    fn read_keys(&mut self, port: usize, events: &[Event]) -> Vec<ReadKey> {
        let udf = self.keys[port].udf_keys(events, WHAT);
        let mut udf = udf.map(Vec::into_iter);
        let mut names = Vec::new();
        events.iter().map(|e| self.read_key(port, e, udf.as_mut().and_then(Iterator::next), &mut names)).collect()
    }

    /// Stores (or refuses) each event of a batch from input `ctx.input`, whose
    /// keys are read, then hands on the on-match pairs of the batch.
    fn arrive_all(&mut self, input: Batch, keys: Vec<ReadKey>, ctx: &mut StepContext<'_>) -> Batch {
        let port = ctx.input;
        let mut out = Batch::default();
        let stored_before = self.seq;
        for ((event, origin), read) in input.events.into_iter().zip(input.origins).zip(keys) {
            if let Err(e) = self.arrive(port, event, origin, read, ctx) {
                ctx.fail(format!("step `{}`: state: {e}", self.name));
                self.pending = Pending::default();
                return out;
            }
        }
        if let Some(m) = self.metrics.as_ref().filter(|_| port == 0) {
            // Every event stored takes a seq: the main events this batch added.
            m.held.add((self.seq - stored_before) as i64);
        }
        // The on-match pairs of the whole batch: one joiner call.
        self.flush(&mut out, ctx);
        if self.emit == EmitPolicy::OnWindowEnd {
            if let Err(e) = self.save_seq(ctx.state).and_then(|()| ctx.state.commit()) {
                ctx.fail(format!("step `{}`: state: {e}", self.name));
            }
        }
        out
    }

    fn arrive(
        &mut self,
        port: usize,
        event: Event,
        origin: Origin,
        read: ReadKey,
        ctx: &mut StepContext<'_>,
    ) -> Result<(), StateError> {
        let t = event.timestamp;
        let (join_key, plain_names) = match read.key {
            Ok(k) => (k, read.plain_names),
            Err((kind, reason)) => {
                let reason = format!("input `{}`: {reason}", self.inputs[port]);
                ctx.refuse(&self.name, None, kind, reason, origin, event);
                return Ok(());
            }
        };
        let done = if port == 0 { self.fire_time(t) } else { self.other_done_time(t) };
        if done <= ctx.watermark {
            let reason = if port == 0 {
                format!("late: its window [{}, {}] closed (watermark {})", t.saturating_add(self.start), t.saturating_add(self.end), ctx.watermark)
            } else {
                format!("late: every window it could join closed (watermark {})", ctx.watermark)
            };
            ctx.refuse(&self.name, None, DeadKind::Late, reason, origin, event);
            if let Some(m) = &self.metrics {
                m.late.inc();
            }
            return Ok(());
        }
        let seq = self.next_seq(&join_key, &origin);
        let stored = Stored { event, origin, join_key, plain_names };
        let mut bytes = std::mem::take(&mut self.scratch);
        layout::encode_into(&stored, &mut bytes);
        if port == 0 && self.emit == EmitPolicy::OnWindowEnd {
            self.arrive_main_on_window_end(done, seq, &bytes, ctx)?;
        } else if port == 0 {
            self.arrive_main_on_match(stored, done, seq, &bytes, ctx)?;
        } else {
            let table = self.tables().others[port - 1];
            let bucket = bucket_of(t, self.bucket);
            ctx.state.put(table, &other_key(bucket, &stored.join_key, t, seq), &bytes)?;
            self.filters[port - 1].insert(bucket, layout::key_hash32(&stored.join_key));
            if self.emit == EmitPolicy::OnMatch {
                self.arrive_other_on_match(port, &stored, ctx)?;
            }
        }
        self.scratch = bytes;
        if self.emit == EmitPolicy::OnMatch {
            // Matching reads committed state: make this event visible to the
            // next one of the batch.
            self.save_seq(ctx.state)?;
            ctx.state.commit()?;
        }
        Ok(())
    }

    fn save_seq(&self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        state.put(self.tables().meta, b"seq", &self.seq.to_le_bytes())
    }

    /// Fires up to [`FIRE_CHUNK`] main events whose fire time is at or
    /// before `watermark`; returns their outputs and whether more may wait.
    fn fire(&mut self, watermark: i64, ctx: &mut StepContext<'_>) -> Result<(Batch, bool), StateError> {
        if self.emit == EmitPolicy::OnWindowEnd {
            return self.fire_window_end(watermark, ctx);
        }
        self.fire_on_match(watermark, ctx)
    }

    /// Deletes the other-input buckets no window can reach any more: bucket
    /// `b` holds times up to `(b + 1) * width - 1`, done at
    /// `other_done_time` of that.
    fn expire_others(&mut self, watermark: i64, state: &mut dyn StateBackend) -> Result<(), StateError> {
        // Largest b with other_done_time((b + 1) * width - 1) <= watermark.
        let slack = i128::from(self.end) - i128::from(self.start) + i128::from(self.lateness);
        let last_time = i128::from(watermark) - slack; // latest other time that is done
        let below = (last_time + 1).div_euclid(i128::from(self.bucket)); // buckets < below are done
        let below = below.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        if below > self.expired_below {
            for &table in &self.tables().others {
                state.delete_range(table, &[], &layout::buckets_before(below))?;
            }
            for filter in &mut self.filters {
                filter.drop_before(below);
            }
            self.expired_below = below;
        }
        Ok(())
    }
}

/// A read key with the key group it hashes into (no key: group 0, refused
/// wherever it goes).
fn routed(read: ReadKey, key_groups: usize) -> RoutedKey {
    RoutedKey { group: read.key.as_ref().map_or(0, |k| crate::runtime::key_group(k, key_groups)), read }
}

/// Reads a top-level join key in a source's pass ([`super::KeyCapture`]):
/// what [`WindowJoin::read_key`] reads, for a record already known to be an
/// object.
struct FieldCapture {
    path: Vec<String>,
    /// For a main event with the merge joiner: whether its names are plain.
    merge: Option<MergeJoiner>,
    key_groups: usize,
}

impl super::KeyCapture for FieldCapture {
    fn field(&self) -> &str {
        &self.path[0]
    }

    fn wants_names(&self) -> bool {
        self.merge.is_some()
    }

    fn capture(&self, raw: Option<&str>, names: &[Cow<'_, str>]) -> RoutedKey {
        let key = match raw {
            Some(text) => key_from_raw(text, &self.path, WHAT),
            None => Err(missing_key(&self.path, WHAT)),
        };
        let key = key.map_err(|reason| (DeadKind::StepError, reason));
        let plain_names = key.is_ok() && self.merge.as_ref().is_some_and(|m| m.plain(names));
        routed(ReadKey { key, plain_names }, self.key_groups)
    }
}

/// Copies the rows of table `name` that `keep` says from `from` to `to`,
/// committing every few thousand (a restore at another parallelism).
fn copy_rows(
    from: &mut dyn StateBackend,
    to: &mut dyn StateBackend,
    name: &str,
    options: TableOptions,
    keep: &dyn Fn(&[u8], &[u8]) -> bool,
) -> Result<(), StateError> {
    let (src, dst) = (from.open_table_with(name, options)?, to.open_table_with(name, options)?);
    let mut failed = None;
    let mut n = 0u64;
    from.scan(src, &[], None, &mut |k, v| {
        if !keep(k, v) {
            return true;
        }
        n += 1;
        let done = to.put(dst, k, v).and_then(|()| if n % 4096 == 0 { to.commit() } else { Ok(()) });
        failed = done.err();
        failed.is_none()
    })?;
    failed.map_or(Ok(()), Err)
}

/// Bits of a seq that count events; the bits above are the key group.
const SEQ_COUNTER_BITS: u32 = 48;

/// The key group a seq was stored under.
fn key_group_of_seq(seq: u64) -> u16 {
    (seq >> SEQ_COUNTER_BITS) as u16
}

/// The version of the state layout (`layout.rs`), kept in the join's meta
/// table: state written with another layout would be misread (its keys
/// are not where this version looks), so it is refused instead.
const STATE_LAYOUT: &[u8] = b"4";

impl WindowJoin {
    fn check_layout(&self, state: &mut dyn StateBackend, tables: &Tables) -> Result<(), StateError> {
        let incompatible = |found: String| StateError::Incompatible {
            owner: format!("window-join step `{}`", self.name),
            reason: format!("written with state layout {found}, this version reads layout {}", String::from_utf8_lossy(STATE_LAYOUT)),
        };
        match state.get(tables.meta, b"layout")? {
            Some(v) if v == STATE_LAYOUT => Ok(()),
            Some(v) => Err(incompatible(String::from_utf8_lossy(&v).into_owned())),
            None => {
                // No marker: new state, or state from before markers (layout 1).
                let mut any = false;
                for &table in std::iter::once(&tables.main).chain(&tables.others) {
                    state.scan(table, &[], None, &mut |_, _| {
                        any = true;
                        false
                    })?;
                }
                if any || tables.main_log.as_ref().is_some_and(|l| !l.is_empty()) {
                    return Err(incompatible("1".into()));
                }
                state.put(tables.meta, b"layout", STATE_LAYOUT)?;
                state.commit()
            }
        }
    }
}

impl Operator for WindowJoin {
    fn state_fingerprint(&self) -> Option<Value> {
        Some(self.fingerprint.clone())
    }

    fn open_state(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let name = &self.name;
        let by_prefix = TableOptions { range_prefix_len: Some(layout::OTHER_PREFIX_LEN) };
        let others = self.inputs[1..]
            .iter()
            .map(|i| state.open_table_with(&format!("{name}/other/{i}"), by_prefix))
            .collect::<Result<Vec<_>, _>>()?;
        let meta = state.open_table(&format!("{name}/meta"))?;
        let main_log = match self.emit {
            EmitPolicy::OnWindowEnd => Some(MainLog::open(state, &format!("{name}/main"), meta, main_log::bucket_width(self.end.saturating_sub(self.start)))?),
            EmitPolicy::OnMatch => None,
        };
        let tables = Tables {
            main: state.open_table(&format!("{name}/main"))?,
            others,
            main_by_key: state.open_table_with(&format!("{name}/main-by-key"), by_prefix)?,
            matched: state.open_table(&format!("{name}/matched"))?,
            meta,
            main_log,
        };
        // The filters of what the other inputs hold, from their keys.
        for (k, &table) in tables.others.iter().enumerate() {
            let filter = &mut self.filters[k];
            state.scan(table, &[], None, &mut |key, _| {
                if let Some((bucket, hash)) = layout::filter_entry(key) {
                    filter.insert(bucket, hash);
                }
                true
            })?;
        }
        self.check_layout(state, &tables)?;
        if let Some(seq) = state.get(tables.meta, b"seq")? {
            self.seq = u64::from_le_bytes(seq.as_slice().try_into().unwrap_or([0; 8]));
        }
        state.scan(tables.main, &[], None, &mut |k, _| {
            self.earliest_fire = Some(layout::time_from(k));
            false
        })?;
        self.tables = Some(tables);
        Ok(())
    }

    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        let keys = self.read_keys(ctx.input, &input.events);
        self.arrive_all(input, keys, ctx)
    }

    fn process_routed(&mut self, input: Batch, routed: Vec<RoutedKey>, ctx: &mut StepContext<'_>) -> Batch {
        let keys = routed.into_iter().map(|r| r.read).collect();
        self.arrive_all(input, keys, ctx)
    }

    fn route_keys(&mut self, port: usize, events: &[Event]) -> Option<Vec<RoutedKey>> {
        let keys = self.read_keys(port, events);
        Some(keys.into_iter().map(|read| routed(read, self.key_groups)).collect())
    }

    fn key_capture(&self, port: usize) -> Option<std::sync::Arc<dyn super::KeyCapture>> {
        let path = self.keys.get(port)?.field()?;
        if path.len() != 1 {
            return None;
        }
        let merge = match &self.joiner {
            Joiner::Merge(m) if port == 0 => Some(m.clone()),
            _ => None,
        };
        Some(std::sync::Arc::new(FieldCapture { path: path.to_vec(), merge, key_groups: self.key_groups }))
    }

    fn attach_join_metrics(&mut self, metrics: crate::metrics::JoinMetrics) {
        self.metrics = Some(metrics);
    }

    fn on_watermark(&mut self, watermark: i64, ctx: &mut StepContext<'_>) -> Batch {
        loop {
            match self.fire(watermark, ctx) {
                // A chunk of inner-join misses outputs nothing: go on, since
                // an empty batch tells the driver that nothing more is due.
                Ok((out, more)) if out.is_empty() && more => continue,
                Ok((out, _)) => return out,
                Err(e) => {
                    ctx.fail(format!("step `{}`: state: {e}", self.name));
                    self.pending = Pending::default();
                    return Batch::default();
                }
            }
        }
    }

    fn rescale(&mut self, from: &mut dyn StateBackend, to: &mut dyn StateBackend, owned: &dyn Fn(u16) -> bool) -> Result<(), StateError> {
        let name = self.name.clone();
        let owns = |seq: u64| owned(key_group_of_seq(seq));
        let seq_at = |b: &[u8], at: usize| b.get(at..at + 8).map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")));
        let from_meta = from.open_table(&format!("{name}/meta"))?;
        match from.get(from_meta, b"layout")? {
            Some(v) if v == STATE_LAYOUT => {}
            Some(v) => {
                return Err(StateError::Incompatible {
                    owner: format!("window-join step `{name}`"),
                    reason: format!("written with state layout {}, this version reads layout {}", String::from_utf8_lossy(&v), String::from_utf8_lossy(STATE_LAYOUT)),
                })
            }
            None => return Ok(()),
        }
        let to_meta = to.open_table(&format!("{name}/meta"))?;
        let counter = |v: Option<Vec<u8>>| v.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map_or(0, u64::from_le_bytes);
        let seq = counter(from.get(from_meta, b"seq")?).max(counter(to.get(to_meta, b"seq")?));
        to.put(to_meta, b"seq", &seq.to_le_bytes())?;
        to.put(to_meta, b"layout", STATE_LAYOUT)?;
        let by_prefix = TableOptions { range_prefix_len: Some(layout::OTHER_PREFIX_LEN) };
        for input in &self.inputs[1..] {
            copy_rows(from, to, &format!("{name}/other/{input}"), by_prefix, &|k, _| k.len() == 32 && seq_at(k, 24).is_some_and(owns))?;
        }
        let plain = TableOptions::default();
        let main_owned = |k: &[u8]| k.len() == 16 && seq_at(k, 8).is_some_and(owns);
        copy_rows(from, to, &format!("{name}/main"), plain, &|k, _| main_owned(k))?;
        copy_rows(from, to, &format!("{name}/main-by-key"), by_prefix, &|_, v| main_owned(v))?;
        copy_rows(from, to, &format!("{name}/matched"), plain, &|k, _| main_owned(k))?;
        if self.emit == EmitPolicy::OnWindowEnd {
            let log_name = format!("{name}/main");
            let mut log = MainLog::open(to, &log_name, to_meta, main_log::bucket_width(self.end.saturating_sub(self.start)))?;
            log.take_owned(to, from, &log_name, from_meta, &owns)?;
        }
        to.commit()
    }

    fn output_watermark(&self, input: i64) -> i64 {
        // Outputs carry their main event's time: hold the watermark before
        // the earliest main event still waiting.
        let earliest = match self.tables.as_ref().and_then(|t| t.main_log.as_ref()) {
            Some(log) => log.earliest(),
            None => self.earliest_fire,
        };
        match earliest {
            Some(fire) => input.min(fire.saturating_sub(self.end).saturating_sub(self.lateness).saturating_sub(1)),
            None => input,
        }
    }
}
