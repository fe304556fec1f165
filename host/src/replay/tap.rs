//! Taps: copies of a running pipeline's events for `streamhost sample`
//! (through the admin API's `POST /sample`). A tap point sits where a
//! source's records reach the coordinator, where a step's output leaves its
//! worker, and where a lookup step lets events go with their answers.
//!
//! Not tapping costs one relaxed atomic load per batch. While tapping, the
//! hot path never waits: copies go into bounded channels with `try_send`,
//! and a copy that does not fit (or finds the session being swapped) is
//! dropped and counted, so the response says the sample has holes instead
//! of the pipeline slowing down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::config::{LoadedPipeline, StepConfig};
use crate::dead_letter::DeadLetter;
use crate::event::{Batch, Event};

/// The most events one sample may ask for.
pub const MAX_EVENTS: usize = 1_000_000;
/// The most bytes of event values one sample holds.
const MAX_BYTES: usize = 256 << 20;
/// Copies waiting between the pipeline and the admin thread, at most.
const CHANNEL: usize = 16_384;
/// Lookup answers one sample keeps, at most.
const MAX_ANSWERS: usize = 1_000_000;

/// What a sample asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    /// A step (its output) or a source (its records); `None`: every source.
    #[serde(default)]
    pub node: Option<String>,
    /// Events to take (in all).
    pub events: usize,
    /// Give up waiting after this long (what was taken is returned).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Keep recording lookup answers this long after the last event (the
    /// sampled events reach the lookup steps after they were taken).
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
}

fn default_timeout_ms() -> u64 {
    60_000
}
fn default_settle_ms() -> u64 {
    1_000
}

/// A sampled node and how its sample file holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SampledNode {
    pub name: String,
    /// `source` or `step`.
    pub kind: String,
    /// `records` (the records as read: their time and key are in them) or
    /// `events` (envelopes with key, timestamp and headers).
    pub form: String,
    pub events: usize,
}

/// One sampled event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SampledEvent {
    pub node: String,
    /// Refused by its source (it is sampled as read).
    #[serde(default)]
    pub rejected: bool,
    #[serde(default)]
    pub key: Option<String>,
    pub timestamp: i64,
    /// The value as UTF-8 text, else `value_base64`.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_base64: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// A lookup step's answer for one key (`value: None`: no such key).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SampledAnswer {
    pub step: String,
    pub key: String,
    pub value: Option<String>,
}

/// What `POST /sample` answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SampleResponse {
    pub nodes: Vec<SampledNode>,
    pub events: Vec<SampledEvent>,
    pub lookups: Vec<SampledAnswer>,
    /// Copies dropped (the buffer was full): the sample is not contiguous.
    pub dropped: u64,
    pub lookups_dropped: u64,
    /// Whether all the events asked for were taken (else it timed out, or
    /// ran out of room); `dropped` of them may be missing.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("no source or step `{0}` (known: {1})")]
    Unknown(String, String),
    #[error("a sample is already being taken")]
    Busy,
    #[error("`events` must be within 1..={MAX_EVENTS}")]
    Count,
}

impl TapError {
    pub fn http_status(&self) -> u16 {
        match self {
            TapError::Unknown(..) => 404,
            TapError::Busy => 409,
            TapError::Count => 400,
        }
    }
}

/// A copy of an event, as tapped.
struct Copy {
    node: Arc<str>,
    event: Event,
    rejected: bool,
}

/// A lookup step's answer: the step, the key, the value (`None`: no such key).
type Answered = (Arc<str>, Vec<u8>, Option<Vec<u8>>);

/// The receiving end's counters and channels, shared by the points tapped.
struct Session {
    events: Sender<Copy>,
    answers: Sender<Answered>,
    /// Events still wanted; bytes still allowed.
    left: AtomicUsize,
    bytes_left: AtomicUsize,
    dropped: AtomicU64,
    answers_dropped: AtomicU64,
    /// The bytes bound ended the sample before its count.
    out_of_room: AtomicBool,
}

impl Session {
    /// Takes one event's place, if one is left.
    fn take(&self, bytes: usize) -> bool {
        if self.left.fetch_update(Relaxed, Relaxed, |l| l.checked_sub(1)).is_err() {
            return false;
        }
        if self.bytes_left.fetch_update(Relaxed, Relaxed, |b| b.checked_sub(bytes)).is_err() {
            // Out of room: this sample is over.
            self.out_of_room.store(true, Relaxed);
            self.left.store(0, Relaxed);
            return false;
        }
        true
    }
}

/// One place events can be copied from.
pub struct TapPoint {
    name: Arc<str>,
    active: AtomicBool,
    session: RwLock<Option<Arc<Session>>>,
}

impl TapPoint {
    fn new(name: &str) -> Arc<TapPoint> {
        Arc::new(TapPoint { name: name.into(), active: AtomicBool::new(false), session: RwLock::new(None) })
    }

    /// Whether a sample is being taken here (one relaxed load).
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Relaxed)
    }

    fn with_session(&self, f: impl FnOnce(&Session)) {
        // Never waits: the admin thread holds the lock only to swap sessions.
        if let Ok(guard) = self.session.try_read() {
            if let Some(s) = guard.as_ref() {
                f(s);
            }
        }
    }

    /// Copies `batch`'s events (as long as the sample wants more).
    pub fn offer(&self, batch: &Batch) {
        if self.active() {
            self.offer_events(batch.events.iter().map(|e| (e, false)));
        }
    }

    /// Copies records a source refused.
    pub fn offer_rejected(&self, dead: &[DeadLetter]) {
        if self.active() {
            self.offer_events(dead.iter().map(|d| (&d.event, true)));
        }
    }

    fn offer_events<'a>(&self, events: impl Iterator<Item = (&'a Event, bool)>) {
        self.with_session(|s| {
            for (e, rejected) in events {
                if !s.take(e.value.len()) {
                    return;
                }
                if s.events.try_send(Copy { node: self.name.clone(), event: e.clone(), rejected }).is_err() {
                    s.dropped.fetch_add(1, Relaxed);
                }
            }
        });
    }

    /// A lookup step's answer for `key` (`None`: no such key).
    pub fn offer_answer(&self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.with_session(|s| {
            if s.answers.try_send((self.name.clone(), key, value)).is_err() {
                s.answers_dropped.fetch_add(1, Relaxed);
            }
        });
    }
}

/// What a node is, for its sample file.
#[derive(Clone, Debug)]
enum NodeKind {
    /// A source: its records carry their own time (`timestamp_field`) and
    /// key (`key_field`)?
    Source { time_in_record: bool, key_in_record: bool },
    Step,
}

/// Every tap point of a pipeline.
pub struct Taps {
    points: BTreeMap<String, (Arc<TapPoint>, NodeKind)>,
    lookups: BTreeMap<String, Arc<TapPoint>>,
    busy: Mutex<()>,
}

impl Taps {
    /// The tap points of `p`: one per source, per step, and per lookup step's answers.
    pub fn of(p: &LoadedPipeline) -> Arc<Taps> {
        let mut points = BTreeMap::new();
        for (name, s) in &p.config.sources {
            let c = s.common();
            let kind = NodeKind::Source { time_in_record: c.timestamp_field.is_some(), key_in_record: c.key_field.is_some() };
            points.insert(name.clone(), (TapPoint::new(name), kind));
        }
        let mut lookups = BTreeMap::new();
        for (name, s) in &p.config.steps {
            points.insert(name.clone(), (TapPoint::new(name), NodeKind::Step));
            if matches!(s, StepConfig::LookupJoin(_)) {
                lookups.insert(name.clone(), TapPoint::new(name));
            }
        }
        Arc::new(Taps { points, lookups, busy: Mutex::new(()) })
    }

    /// The point of source or step `name`.
    pub fn point(&self, name: &str) -> Option<Arc<TapPoint>> {
        self.points.get(name).map(|(p, _)| p.clone())
    }

    /// The point of lookup step `name`'s answers.
    pub fn answers(&self, name: &str) -> Option<Arc<TapPoint>> {
        self.lookups.get(name).cloned()
    }

    /// Takes a sample (blocking: call it off the async runtime). Only one at a time.
    pub fn sample(&self, req: &SampleRequest) -> Result<SampleResponse, TapError> {
        if req.events == 0 || req.events > MAX_EVENTS {
            return Err(TapError::Count);
        }
        let tapped: Vec<&String> = match &req.node {
            Some(n) if self.points.contains_key(n) => vec![n],
            Some(n) => return Err(TapError::Unknown(n.clone(), self.points.keys().cloned().collect::<Vec<_>>().join(", "))),
            None => self.points.iter().filter(|(_, (_, k))| matches!(k, NodeKind::Source { .. })).map(|(n, _)| n).collect(),
        };
        let Ok(_one) = self.busy.try_lock() else { return Err(TapError::Busy) };
        let (events_tx, events_rx) = crossbeam_channel::bounded(CHANNEL.min(req.events));
        let (answers_tx, answers_rx) = crossbeam_channel::bounded(CHANNEL);
        let session = Arc::new(Session {
            events: events_tx,
            answers: answers_tx,
            left: AtomicUsize::new(req.events),
            bytes_left: AtomicUsize::new(MAX_BYTES),
            dropped: AtomicU64::new(0),
            answers_dropped: AtomicU64::new(0),
            out_of_room: AtomicBool::new(false),
        });
        let points: Vec<Arc<TapPoint>> = tapped.iter().map(|n| self.points[*n].0.clone()).collect();
        let answers: Vec<Arc<TapPoint>> = self.lookups.values().cloned().collect();
        // Lookups first: an event tapped upstream finds its answers recorded.
        for p in answers.iter().chain(&points) {
            *p.session.write().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
            p.active.store(true, Relaxed);
        }
        let mut out = SampleResponse::default();
        let mut got_answers = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(req.timeout_ms);
        let mut taken = 0;
        while taken < req.events {
            let wait = deadline.saturating_duration_since(Instant::now());
            match events_rx.recv_timeout(wait.min(Duration::from_millis(50))) {
                Ok(c) => {
                    taken += 1;
                    out.events.push(sampled(c));
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    // The sample ran out of room (bytes), or the channel holds what is left.
                    if session.left.load(Relaxed) == 0 && events_rx.is_empty() {
                        break;
                    }
                }
                Err(_) => break,
            }
            drain_answers(&answers_rx, &mut got_answers);
        }
        // Every place was taken (copies dropped on the way are counted apart).
        out.complete = session.left.load(Relaxed) == 0 && !session.out_of_room.load(Relaxed);
        stop(&points);
        let settle = Instant::now() + Duration::from_millis(req.settle_ms);
        while Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(20).min(settle.saturating_duration_since(Instant::now())));
            drain_answers(&answers_rx, &mut got_answers);
        }
        stop(&answers);
        drain_answers(&answers_rx, &mut got_answers);
        out.events.extend(events_rx.try_iter().map(sampled));
        out.dropped = session.dropped.load(Relaxed);
        out.lookups_dropped = session.answers_dropped.load(Relaxed);
        out.lookups = got_answers;
        for n in tapped {
            let (_, kind) = &self.points[n];
            let events: Vec<&SampledEvent> = out.events.iter().filter(|e| &e.node == n).collect();
            let form = match kind {
                // Records say everything when their time and key come from them.
                NodeKind::Source { time_in_record, key_in_record } => {
                    let faithful = *time_in_record && (*key_in_record || events.iter().all(|e| e.key.is_none())) && events.iter().all(|e| e.headers.is_empty());
                    if faithful { "records" } else { "events" }
                }
                NodeKind::Step => "events",
            };
            let kind = if matches!(kind, NodeKind::Step) { "step" } else { "source" };
            out.nodes.push(SampledNode { name: n.clone(), kind: kind.into(), form: form.into(), events: events.len() });
        }
        Ok(out)
    }
}

/// Lookup answers recorded while a replay runs (`streamhost test --record-lookups`).
pub struct AnswerRecorder {
    points: Vec<Arc<TapPoint>>,
    session: Arc<Session>,
    drain: Option<std::thread::JoinHandle<Vec<SampledAnswer>>>,
}

impl Taps {
    /// Records every lookup step's answers until [`AnswerRecorder::finish`].
    pub fn record_answers(&self) -> Result<AnswerRecorder, TapError> {
        let Ok(_one) = self.busy.try_lock() else { return Err(TapError::Busy) };
        let (events, _) = crossbeam_channel::bounded(1);
        let (answers, rx) = crossbeam_channel::bounded(CHANNEL);
        let session = Arc::new(Session {
            events,
            answers,
            left: AtomicUsize::new(0),
            bytes_left: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            answers_dropped: AtomicU64::new(0),
            out_of_room: AtomicBool::new(false),
        });
        let points: Vec<Arc<TapPoint>> = self.lookups.values().cloned().collect();
        for p in &points {
            *p.session.write().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
            p.active.store(true, Relaxed);
        }
        // Drained as they come: a replay waits for nobody.
        let drain = std::thread::Builder::new()
            .name("record-lookups".into())
            .spawn(move || {
                let mut got = Vec::new();
                while let Ok(a) = rx.recv() {
                    push_answer(a, &mut got);
                }
                got
            })
            .ok();
        Ok(AnswerRecorder { points, session, drain })
    }
}

impl AnswerRecorder {
    /// Stops recording: the answers, and how many were dropped.
    pub fn finish(mut self) -> (Vec<SampledAnswer>, u64) {
        stop(&self.points);
        let dropped = self.session.answers_dropped.load(Relaxed);
        // The last sender goes with the session: the drain ends.
        let got = self.drain.take();
        drop(self);
        (got.and_then(|d| d.join().ok()).unwrap_or_default(), dropped)
    }
}

fn stop(points: &[Arc<TapPoint>]) {
    for p in points {
        p.active.store(false, Relaxed);
        *p.session.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn drain_answers(rx: &Receiver<Answered>, out: &mut Vec<SampledAnswer>) {
    for a in rx.try_iter() {
        push_answer(a, out);
    }
}

fn push_answer((step, key, value): Answered, out: &mut Vec<SampledAnswer>) {
    if out.len() < MAX_ANSWERS {
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        out.push(SampledAnswer { step: step.to_string(), key: text(key), value: value.map(text) });
    }
}

fn sampled(c: Copy) -> SampledEvent {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_string).unwrap_or_else(|_| b64.encode(b));
    let (value, value_base64) = match String::from_utf8(c.event.value) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(b64.encode(e.as_bytes()))),
    };
    SampledEvent {
        node: c.node.to_string(),
        rejected: c.rejected,
        key: c.event.key.as_deref().map(text),
        timestamp: c.event.timestamp,
        value,
        value_base64,
        headers: c.event.headers.iter().map(|h| (h.name.clone(), text(&h.value))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;

    fn taps() -> Arc<Taps> {
        let text = r#"{"sources":{"in":{"type":"stdin","timestamp_field":"t"}},"steps":{"f":{"type":"filter","inputs":["in"],"where":{"path":"$.t","op":"exists"}}},"sinks":{"o":{"type":"null","inputs":["f"]}}}"#;
        let config = crate::config::parse_pipeline(text).unwrap();
        Taps::of(&LoadedPipeline { config, base_dir: ".".into(), file: None, text: text.into() })
    }

    fn batch(n: usize) -> Batch {
        let mut b = Batch::default();
        for i in 0..n {
            b.push(Event::from_value(format!("{{\"t\":{i}}}").into_bytes(), i as i64), Origin::new("in", i as u64 + 1));
        }
        b
    }

    #[test]
    fn a_sample_takes_the_next_events_and_stops_tapping() {
        let taps = taps();
        let point = taps.point("in").unwrap();
        assert!(!point.active());
        point.offer(&batch(3)); // not tapping: nothing
        let feeder = {
            let point = point.clone();
            std::thread::spawn(move || {
                while !point.active() {
                    std::thread::yield_now();
                }
                for _ in 0..4 {
                    point.offer(&batch(2));
                }
            })
        };
        let got = taps.sample(&SampleRequest { node: None, events: 5, timeout_ms: 10_000, settle_ms: 0 }).unwrap();
        feeder.join().unwrap();
        assert!(got.complete);
        assert_eq!(got.events.len(), 5, "exactly what was asked for");
        assert_eq!(got.events[2].value.as_deref(), Some("{\"t\":0}"));
        assert_eq!(got.nodes, [SampledNode { name: "in".into(), kind: "source".into(), form: "records".into(), events: 5 }]);
        assert!(!point.active(), "tapping stops with the sample");
    }

    #[test]
    fn a_sample_that_times_out_returns_what_it_has() {
        let taps = taps();
        let got = taps.sample(&SampleRequest { node: Some("f".into()), events: 5, timeout_ms: 50, settle_ms: 0 }).unwrap();
        assert!(!got.complete);
        assert_eq!(got.nodes[0].form, "events", "a step's output is sampled as envelopes");
        assert!(matches!(taps.sample(&SampleRequest { node: Some("x".into()), events: 1, timeout_ms: 1, settle_ms: 0 }), Err(TapError::Unknown(..))));
    }
}
