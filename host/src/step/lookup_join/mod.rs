//! `lookup-join`: adds to each event what a dimension table holds for its
//! key. The step reads each event's key, admits the batch into its worker's
//! client of the table (`lookup::client`: cache, single flight, one request
//! for the misses) and goes on; the worker wakes it when answers come, and
//! it lets events go, in input order (or, `unordered`, as soon as answered),
//! with the value added, or as its miss policy says. While events wait, the
//! step holds its output watermark at the input watermark they came under, so
//! nothing downstream takes them for late.
//!
//! Steps reading the same table in one worker share its client: what they
//! ask for while the worker handles one message goes out as one request. In
//! a chain of such steps (each the only consumer of the one before), the
//! first asks for the later steps' keys too (those it can read, on fields the
//! chain does not write) and hands their answers on with its output.

mod config;
mod enrich;

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub use config::{BreakerSettings, LookupCacheConfig, LookupJoinConfig, LookupMode, MissPolicy, OnUnavailable};
pub use enrich::{Names, Shape};

use super::key::{key_from_raw, KeySpec, RawKey};
use super::{Operator, StepContext};
use crate::dead_letter::DeadKind;
use crate::event::{Batch, Event, Origin};
use crate::lookup::{Answer, LookupStats, Reply, TableClient};
use crate::plugin::UdfRunner;

/// How reasons name the key.
const WHAT: &str = "lookup key";

/// An event's key as the table knows it: `template` with the key in place
/// of each `{}` (the key's bytes as they are).
#[derive(Clone, Debug)]
pub struct KeyTemplate(Vec<Vec<u8>>);

impl KeyTemplate {
    pub fn new(template: Option<&str>) -> Self {
        KeyTemplate(template.unwrap_or("{}").split("{}").map(|p| p.as_bytes().to_vec()).collect())
    }

    pub fn apply(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.iter().map(Vec::len).sum::<usize>() + key.len() * (self.0.len() - 1));
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(key);
            }
            out.extend_from_slice(part);
        }
        out
    }
}

/// A key made the table's by the template.
struct Templated(Vec<u8>);

/// The keys of a batch (its events' cells, `None`: no key), why an event has
/// none (empty: all have), and the digests of their names (empty: not read).
type Keys = (Vec<Option<Vec<u8>>>, Vec<Option<(DeadKind, String)>>, Vec<Option<Names>>);

/// A later step of the chain whose key this one reads and asks for.
pub struct ChainKey {
    pub key: KeySpec,
    pub template: KeyTemplate,
}

/// A batch whose answers are not all in.
struct Waiting {
    id: u64,
    events: Vec<Option<(Event, Origin)>>,
    /// Why an event has no key (`None` for those with one); empty when all have.
    no_key: Vec<Option<(DeadKind, String)>>,
    /// The digest of each event's names, read with its key (empty: not read).
    names: Vec<Option<Names>>,
    left: usize,
    arrived: Instant,
    /// The step's input watermark when it came: the output watermark is held there.
    watermark: i64,
}

pub struct LookupJoin {
    name: String,
    key: KeySpec,
    template: KeyTemplate,
    /// The later steps of the chain this step asks for (their columns follow its own).
    chain: Vec<ChainKey>,
    client: Arc<Mutex<TableClient>>,
    replies: crossbeam_channel::Receiver<Reply>,
    slot: u16,
    /// The next step of the chain: its slot, to hand its answers to.
    next: Option<u16>,
    /// Whether the step before in the chain hands this one its answers.
    fed_by_chain: bool,
    shape: Shape,
    policy: MissPolicy,
    waiting: VecDeque<Waiting>,
    /// Events in `waiting`.
    held: usize,
    max_in_flight: usize,
    stats: Arc<LookupStats>,
    filtered: u64,
    /// Where `streamhost sample` records the answers (key, value) from.
    answer_tap: Option<Arc<crate::replay::TapPoint>>,
}

impl LookupJoin {
    /// Step `name` on `client` (its worker's client of the step's table), as its slot `slot`.
    pub fn new(name: &str, cfg: &LookupJoinConfig, client: Arc<Mutex<TableClient>>, slot: u16, stats: Arc<LookupStats>) -> Self {
        let replies = {
            let mut c = client.lock().unwrap_or_else(|e| e.into_inner());
            c.add_slot(slot, !cfg.unordered, stats.step.clone());
            c.replies().clone()
        };
        let shape = match &cfg.as_field {
            Some(name) => Shape::Whole(name.clone()),
            None => Shape::Members { prefix: cfg.prefix.clone().unwrap_or_default(), fields: cfg.fields.clone() },
        };
        LookupJoin {
            name: name.to_string(),
            key: KeySpec::of(Some(&cfg.key)),
            template: KeyTemplate::new(cfg.key_template.as_deref()),
            chain: Vec::new(),
            client,
            replies,
            slot,
            next: None,
            fed_by_chain: false,
            shape,
            policy: cfg.miss_policy(),
            waiting: VecDeque::new(),
            held: 0,
            max_in_flight: cfg.max_in_flight.max(1),
            stats,
            filtered: 0,
            answer_tap: None,
        }
    }

    /// Records this step's answers while a sample is taken.
    pub fn with_answer_tap(mut self, tap: Option<Arc<crate::replay::TapPoint>>) -> Self {
        self.answer_tap = tap;
        self
    }

    /// Gives a UDF key its runner.
    pub fn with_key_udf(mut self, runner: Option<UdfRunner>) -> Self {
        self.key.set_runner(runner);
        self
    }

    /// Makes this step the head (or a link) of a chain: it asks for `later`
    /// keys too and hands their answers to `next`.
    pub fn asking_for(mut self, later: Vec<ChainKey>, next: u16) -> Self {
        self.chain = later;
        self.next = Some(next);
        self
    }

    /// The step before in the chain hands this one its answers.
    pub fn fed_by_chain(mut self) -> Self {
        self.fed_by_chain = true;
        self
    }

    fn client(&self) -> MutexGuard<'_, TableClient> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The table's keys of `events`: this step's, then the chain's, per
    /// event; why an event has none; and the digests of their names.
    fn keys(&mut self, events: &[Event]) -> Keys {
        let mut digests = Vec::new();
        let own: Vec<Result<Templated, (DeadKind, String)>> = match self.key.field() {
            // A field key is read in one pass over the top level, which
            // also gives the names the value is added beside.
            Some(path) => {
                let mut names = Vec::new();
                digests.reserve(events.len());
                let (key, template) = (&self.key, &self.template);
                events
                    .iter()
                    .map(|e| {
                        names.clear();
                        // A plain string goes into the template as it is: one copy.
                        let key = key.read_raw(e, Some(&mut names), WHAT).and_then(|raw| match (raw.plain(), raw) {
                            (Some(plain), _) => Ok(Templated(template.apply(plain))),
                            (None, RawKey::Json(text)) => key_from_raw(text, path, WHAT).map(|k| Templated(template.apply(&k))),
                            (None, RawKey::Bytes(b)) => Ok(Templated(template.apply(b))),
                        });
                        digests.push(key.is_ok().then(|| Names::of(names.iter().map(|n| &**n))));
                        key.map_err(|why| (DeadKind::StepError, why))
                    })
                    .collect()
            }
            None => self.key.read_all(events, WHAT).into_iter().map(|k| k.map(|k| Templated(self.template.apply(&k)))).collect(),
        };
        let chain: Vec<Vec<Option<Vec<u8>>>> =
            self.chain.iter_mut().map(|c| c.key.read_all(events, WHAT).into_iter().map(|k| k.ok().map(|k| c.template.apply(&k))).collect()).collect();
        let columns = 1 + self.chain.len();
        let mut keys = Vec::with_capacity(events.len() * columns);
        let mut no_key = Vec::new();
        for (i, k) in own.into_iter().enumerate() {
            match k {
                Ok(Templated(k)) => keys.push(Some(k)),
                Err(why) => {
                    no_key.resize(events.len(), None);
                    no_key[i] = Some(why);
                    keys.push(None);
                }
            }
            keys.extend(chain.iter().map(|c| c[i].clone()));
        }
        (keys, no_key, digests)
    }

    /// Lets go what the client says is answered: the events with their
    /// values added, or as the miss policy says.
    fn release(&mut self, ctx: &mut StepContext<'_>) -> Batch {
        let ready = self.client().ready(self.slot);
        let columns = 1 + self.chain.len();
        let mut out = Batch::default();
        let mut handed_on = Vec::new();
        let now = Instant::now();
        let (mut found, mut missing, mut unavailable, mut filtered) = (0, 0, 0, 0);
        let (name, policy, table) = (&self.name, self.policy, &self.stats.table.name);
        let tap = self.answer_tap.as_deref().filter(|t| t.active());
        for r in ready {
            let Some(first) = self.waiting.front().map(|w| w.id) else { break };
            let Some(w) = self.waiting.get_mut((r.batch - first) as usize) else { continue };
            self.stats.step.latency.record_n(now.duration_since(w.arrived), r.events.len() as u64);
            for (n, &e) in r.events.iter().enumerate() {
                let e = e as usize;
                let Some((event, origin)) = w.events[e].take() else { continue };
                w.left -= 1;
                self.held -= 1;
                let cells = &r.cells[n * columns..(n + 1) * columns];
                if let Some(tap) = tap {
                    record_answer(tap, &self.key, &self.template, &event, &cells[0]);
                }
                let (value, why) = match &cells[0] {
                    Answer::Found(v) => {
                        found += 1;
                        (Some(v), None)
                    }
                    Answer::Missing => {
                        missing += 1;
                        let why = match w.no_key.get(e).cloned().flatten() {
                            Some(why) => why,
                            None if policy != MissPolicy::DeadLetter => (DeadKind::LookupMiss, String::new()),
                            // The key read again for the reason (keys are not kept).
                            None => match self.key.read(&event, None, WHAT) {
                                Ok(k) => (DeadKind::LookupMiss, format!("no value for key `{}` in {table}", text(&self.template.apply(&k)))),
                                Err(why) => (DeadKind::StepError, why),
                            },
                        };
                        (None, Some(why))
                    }
                    Answer::Unavailable(error) => {
                        unavailable += 1;
                        let key = self.key.read(&event, None, WHAT).map(|k| text(&self.template.apply(&k))).unwrap_or_default();
                        (None, Some((DeadKind::LookupUnavailable, format!("no answer for key `{key}` within miss_after_ms: {error}"))))
                    }
                };
                match (why, policy) {
                    (None, _) | (Some(_), MissPolicy::Emit) => {}
                    (Some(_), MissPolicy::Drop) => {
                        filtered += 1;
                        continue;
                    }
                    (Some((kind, reason)), MissPolicy::DeadLetter) => {
                        ctx.refuse(name, None, kind, reason, origin, event);
                        continue;
                    }
                }
                match self.shape.add(&event.value, value.map(|v| &v[..]), w.names.get(e).and_then(Option::as_ref)) {
                    Ok(bytes) => {
                        out.push(Event { value: bytes, ..event }, origin);
                        handed_on.extend_from_slice(&cells[1..]);
                    }
                    Err(reason) => ctx.refuse(name, None, DeadKind::StepError, reason, origin, event),
                }
            }
        }
        while self.waiting.front().is_some_and(|w| w.left == 0) {
            self.waiting.pop_front();
        }
        self.filtered += filtered;
        let st = &self.stats.step;
        st.found.fetch_add(found, Relaxed);
        st.missing.fetch_add(missing, Relaxed);
        st.unavailable.fetch_add(unavailable, Relaxed);
        if let Some(next) = self.next {
            self.client().stash(next, if out.is_empty() { Vec::new() } else { handed_on });
        }
        out
    }
}

/// Hands `tap` the table's answer for `event`'s key (its key read again:
/// keys are not kept; only while a sample is taken).
fn record_answer(tap: &crate::replay::TapPoint, key: &KeySpec, template: &KeyTemplate, event: &Event, answer: &Answer) {
    let value = match answer {
        Answer::Found(v) => Some(v.to_vec()),
        Answer::Missing => None,
        Answer::Unavailable(_) => return,
    };
    if let Ok(k) = key.read(event, None, WHAT) {
        tap.offer_answer(template.apply(&k), value);
    }
}

/// A key as text, for a reason.
fn text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl Operator for LookupJoin {
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        let n = input.len();
        if n == 0 {
            return Batch::default();
        }
        self.stats.step.events.fetch_add(n as u64, Relaxed);
        let columns = 1 + self.chain.len();
        let stash = if self.fed_by_chain { self.client().take_stash(self.slot, n * columns) } else { None };
        let (keys, no_key, names) = match stash {
            // Answered already: keys are only read again for reasons.
            Some(_) => (vec![None; n * columns], Vec::new(), Vec::new()),
            None => self.keys(&input.events),
        };
        self.stats.step.no_key.fetch_add(no_key.iter().filter(|k| k.is_some()).count() as u64, Relaxed);
        let id = self.client().admit(self.slot, keys, columns, stash, Instant::now());
        let events = input.events.into_iter().zip(input.origins).map(Some).collect();
        self.waiting.push_back(Waiting { id, events, no_key, names, left: n, arrived: Instant::now(), watermark: ctx.watermark });
        self.held += n;
        self.release(ctx)
    }

    fn io_channel(&self) -> Option<crossbeam_channel::Receiver<Reply>> {
        Some(self.replies.clone())
    }

    fn on_io(&mut self, ctx: &mut StepContext<'_>) -> Batch {
        self.client().drain(Instant::now());
        self.release(ctx)
    }

    fn flush_io(&mut self) {
        self.client().flush();
    }

    fn io_waiting(&self) -> usize {
        self.held
    }

    fn io_full(&self) -> bool {
        self.held >= self.max_in_flight
    }

    fn output_watermark(&self, input: i64) -> i64 {
        self.waiting.front().map_or(input, |w| input.min(w.watermark))
    }

    fn take_filtered(&mut self) -> u64 {
        std::mem::take(&mut self.filtered)
    }
}
