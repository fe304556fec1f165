//! `streamhost test --trace '$.request_id=abc'`: the event as it enters and
//! leaves each step. An event is traced when its value has the field at the
//! given path equal to the given value, or when it descends from a traced
//! source record (outputs keep their input's origin: a join's output keeps
//! its main event's), so a step that drops or renames the field still shows.
//!
//! Only a replay has a tracer; the runtime's hooks cost one `Option` check
//! per batch otherwise.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::dead_letter::DeadLetter;
use crate::event::{Batch, Event, Origin};

/// The most lines a trace keeps (the rest is counted).
const MAX_LINES: usize = 2_000;

/// Which events to trace: a field path and the value it must have.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSpec {
    path: Vec<String>,
    value: serde_json::Value,
    /// The value's JSON text (an unquoted number also matches it as a string).
    text_value: String,
    text: String,
}

impl std::str::FromStr for TraceSpec {
    type Err = String;

    /// `$.a.b=VALUE`: VALUE is JSON (`42`, `true`, `"x"`) or else a string.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected PATH=VALUE, such as `$.request_id=abc` or `$.user.id=42`");
        let (path, value) = s.split_once('=').ok_or_else(bad)?;
        let path = path.trim();
        let fields = path.strip_prefix("$.").ok_or_else(bad)?;
        if fields.split('.').any(str::is_empty) {
            return Err(bad());
        }
        let value = serde_json::from_str(value.trim()).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        Ok(TraceSpec { path: fields.split('.').map(String::from).collect(), text_value: value.to_string(), value, text: s.to_string() })
    }
}

impl TraceSpec {
    /// Whether `value` (an event's bytes) holds the traced value at the path.
    pub fn matches(&self, value: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) else { return false };
        let mut at = &v;
        for f in &self.path {
            match at.get(f) {
                Some(next) => at = next,
                None => return false,
            }
        }
        // An unquoted number or boolean also matches a string of the same text
        // (ids are often strings); a quoted value matches strings only.
        at == &self.value || matches!((&self.value, at), (given, serde_json::Value::String(s)) if !given.is_string() && self.text_value == *s)
    }
}

/// Collects the trace of a replay's run (from the coordinator and workers).
pub struct Tracer {
    spec: TraceSpec,
    /// Step name → its input names (by port).
    inputs: BTreeMap<String, Vec<String>>,
    state: Mutex<TraceState>,
}

#[derive(Default)]
struct TraceState {
    origins: HashSet<(String, u64)>,
    lines: Vec<String>,
    dropped: usize,
}

fn key(o: &Origin) -> (String, u64) {
    (o.source.to_string(), o.position)
}

fn show(e: &Event) -> String {
    let value = String::from_utf8_lossy(&e.value);
    match &e.key {
        Some(k) => format!("{value}  (key {}, time {})", String::from_utf8_lossy(k), e.timestamp),
        None => format!("{value}  (time {})", e.timestamp),
    }
}

impl Tracer {
    pub fn new(spec: TraceSpec, inputs: BTreeMap<String, Vec<String>>) -> Self {
        Tracer { spec, inputs, state: Mutex::new(TraceState::default()) }
    }

    fn push(&self, s: &mut TraceState, line: String) {
        if s.lines.len() < MAX_LINES {
            s.lines.push(line);
        } else {
            s.dropped += 1;
        }
    }

    fn traced(&self, s: &TraceState, e: &Event, o: &Origin) -> bool {
        s.origins.contains(&key(o)) || self.spec.matches(&e.value)
    }

    /// Source `source` read `batch`: matching records are traced from here on.
    pub fn source(&self, source: &str, batch: &Batch) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (e, o) in batch.events.iter().zip(&batch.origins) {
            if self.spec.matches(&e.value) {
                s.origins.insert(key(o));
                self.push(&mut s, format!("source {source} (line {}): {}", o.position, show(e)));
            }
        }
    }

    /// `batch` enters step `step` on input `port`.
    pub fn step_in(&self, step: &str, port: usize, batch: &Batch) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let input = self.inputs.get(step).and_then(|i| i.get(port)).map_or(String::new(), |i| format!(" from {i}"));
        for (e, o) in batch.events.iter().zip(&batch.origins) {
            if self.traced(&s, e, o) {
                self.push(&mut s, format!("  -> {step}{input}: {}", show(e)));
            }
        }
    }

    /// Step `step` emitted `batch`.
    pub fn step_out(&self, step: &str, batch: &Batch) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (e, o) in batch.events.iter().zip(&batch.origins) {
            if self.traced(&s, e, o) {
                self.push(&mut s, format!("  <- {step}: {}", show(e)));
            }
        }
    }

    /// Sink `sink` wrote `batch`.
    pub fn sink(&self, sink: &str, batch: &Batch) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (e, o) in batch.events.iter().zip(&batch.origins) {
            if self.traced(&s, e, o) {
                self.push(&mut s, format!("  => sink {sink}: {}", show(e)));
            }
        }
    }

    /// Dead letters written.
    pub fn dead(&self, dead: &[DeadLetter]) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for d in dead {
            if self.traced(&s, &d.event, &d.origin) {
                let by = d.step.as_deref().map_or_else(|| format!("source {}", d.origin.source), |s| format!("step {s}"));
                let line = format!("  => dead letter ({:?} by {by}, {} line {}): {}: {}", d.kind, d.origin.source, d.origin.position, d.reason, show(&d.event));
                self.push(&mut s, line);
            }
        }
    }

    /// The trace, one line per sighting, in the order they happened.
    pub fn report(&self) -> String {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let _ = writeln!(out, "trace of {}:", self.spec.text);
        if s.lines.is_empty() {
            let _ = writeln!(out, "  no event matched");
        }
        for l in &s.lines {
            let _ = writeln!(out, "{l}");
        }
        if s.dropped > 0 {
            let _ = writeln!(out, "  ... and {} more lines", s.dropped);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_matches() {
        let s: TraceSpec = "$.request_id=abc".parse().unwrap();
        assert!(s.matches(br#"{"request_id":"abc","x":1}"#));
        assert!(!s.matches(br#"{"request_id":"abd"}"#));
        let n: TraceSpec = "$.user.id=42".parse().unwrap();
        assert!(n.matches(br#"{"user":{"id":42}}"#));
        assert!(n.matches(br#"{"user":{"id":"42"}}"#), "an id kept as a string");
        let quoted: TraceSpec = r#"$.user.id="42""#.parse().unwrap();
        assert!(!quoted.matches(br#"{"user":{"id":42}}"#), "a quoted value is a string");
        assert!(quoted.matches(br#"{"user":{"id":"42"}}"#));
        for bad in ["request_id=abc", "$.=x", "$.a", "$..a=1"] {
            assert!(bad.parse::<TraceSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn descendants_of_a_traced_record_are_traced() {
        let t = Tracer::new("$.id=1".parse().unwrap(), BTreeMap::from([("s".to_string(), vec!["in".to_string()])]));
        let mut b = Batch::default();
        b.push(Event::from_value(br#"{"id":1}"#.to_vec(), 5), Origin::new("in", 3));
        b.push(Event::from_value(br#"{"id":2}"#.to_vec(), 5), Origin::new("in", 4));
        t.source("in", &b);
        let mut out = Batch::default();
        out.push(Event::from_value(br#"{"renamed":1}"#.to_vec(), 5), Origin::new("in", 3));
        out.push(Event::from_value(br#"{"renamed":2}"#.to_vec(), 5), Origin::new("in", 4));
        t.step_in("s", 0, &b);
        t.step_out("s", &out);
        let r = t.report();
        assert!(r.contains("source in (line 3)"), "{r}");
        assert!(r.contains("-> s from in: {\"id\":1}"), "{r}");
        assert!(r.contains("<- s: {\"renamed\":1}"), "{r}");
        assert!(!r.contains("\"id\":2") && !r.contains("\"renamed\":2"), "{r}");
    }
}
