//! The sample input of `streamhost plugin test`: JSON lines, one input per
//! line, shaped by the plugin's world.
//!
//! - transform: a record per line, the event's payload as a `file` source
//!   reads it (the line's text, unchanged);
//! - udf: a JSON array of arguments per line (`[3, "x", null]`), converted
//!   as a `udf` step converts JSON (integers to int, other numbers to float,
//!   objects and arrays to their JSON text);
//! - joiner: `{"main": RECORD, "matches": {"INPUT": [RECORD, ...], ...}}` per
//!   line, the main event and the events of each other input that matched it
//!   (in time order); `matches` may be left out (no matches).
//!
//! - aggregator: a record per line, as for a transform; the events are
//!   folded per key (`--key-field`; one group without it).
//!
//! Blank lines are skipped; line numbers count every line. Event time and
//! key come from `--timestamp-field` / `--key-field` with the meaning a
//! source gives them; without a timestamp field every event gets the time of
//! the run (as a `file` source stamps the time it reads a record).

use serde::de::{MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::TrialError;
use crate::config::{SourceCommon, WorldName};
use crate::event::Event;
use crate::plugin::Scalar;
use crate::record_schema::RecordCheck;

/// How records become events.
#[derive(Clone, Debug, Default)]
pub struct RecordOptions {
    /// Top-level field holding the event time in milliseconds.
    pub timestamp_field: Option<String>,
    /// Top-level field whose value becomes the event key.
    pub key_field: Option<String>,
    /// The event time when there is no timestamp field.
    pub default_timestamp: i64,
}

/// One joiner input: a main event and its matches, grouped by other input
/// (in the order of [`Sample::Cases`]'s `inputs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub main: Event,
    pub matches: Vec<Vec<Event>>,
}

/// A parsed sample: each input with its 1-based line number.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    Events(Vec<(usize, Event)>),
    Rows(Vec<(usize, Vec<Scalar>)>),
    Cases { inputs: Vec<String>, cases: Vec<(usize, Case)> },
}

impl Sample {
    pub fn len(&self) -> usize {
        match self {
            Sample::Events(v) => v.len(),
            Sample::Rows(v) => v.len(),
            Sample::Cases { cases, .. } => cases.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses `text` for a plugin of `world`. `inputs` (joiner): the step's
/// other inputs, in order; `None` takes them from the sample, in order of
/// first appearance.
pub fn parse(text: &str, world: WorldName, records: &RecordOptions, inputs: Option<&[String]>) -> Result<Sample, TrialError> {
    let check = RecordCheck::new(&SourceCommon {
        timestamp_field: records.timestamp_field.clone(),
        key_field: records.key_field.clone(),
        ..Default::default()
    });
    let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
    let sample = match world {
        WorldName::Transform | WorldName::Aggregator => Sample::Events(
            lines.map(|(n, line)| event(line, &check, records).map(|e| (n, e)).map_err(|m| bad(n, m))).collect::<Result<_, _>>()?,
        ),
        WorldName::Udf => Sample::Rows(lines.map(|(n, line)| row(line).map(|r| (n, r)).map_err(|m| bad(n, m))).collect::<Result<_, _>>()?),
        WorldName::Joiner => {
            let mut names: Vec<String> = inputs.map(<[String]>::to_vec).unwrap_or_default();
            let mut parsed = Vec::new();
            for (n, line) in lines {
                let (main, groups) = case_line(line).map_err(|m| bad(n, m))?;
                for (input, _) in &groups {
                    if !names.contains(input) {
                        if inputs.is_some() {
                            return Err(bad(n, format!("matches of input {input:?}, not among --inputs {names:?}")));
                        }
                        names.push(input.clone());
                    }
                }
                parsed.push((n, main, groups));
            }
            let mut cases = Vec::with_capacity(parsed.len());
            for (n, main, groups) in parsed {
                let main = event(main.get(), &check, records).map_err(|m| bad(n, format!("main: {m}")))?;
                let mut matches = vec![Vec::new(); names.len()];
                for (input, records_of) in groups {
                    let k = names.iter().position(|x| *x == input).unwrap_or(0);
                    for r in records_of {
                        matches[k].push(event(r.get(), &check, records).map_err(|m| bad(n, format!("matches.{input}: {m}")))?);
                    }
                }
                cases.push((n, Case { main, matches }));
            }
            Sample::Cases { inputs: names, cases }
        }
    };
    if sample.is_empty() {
        return Err(TrialError::EmptySample);
    }
    Ok(sample)
}

fn bad(line: usize, message: String) -> TrialError {
    TrialError::Sample { line, message }
}

/// One record as an event, its time and key found as a source finds them.
fn event(raw: &str, check: &RecordCheck, records: &RecordOptions) -> Result<Event, String> {
    serde_json::from_str::<&RawValue>(raw).map_err(|e| format!("not JSON: {e}"))?;
    let found = check.check(raw.as_bytes()).map_err(|r| r.0)?;
    Ok(Event {
        key: found.key,
        value: raw.as_bytes().to_vec(),
        timestamp: found.timestamp.unwrap_or(records.default_timestamp),
        headers: Vec::new(),
    })
}

/// A UDF row: a JSON array of arguments.
fn row(raw: &str) -> Result<Vec<Scalar>, String> {
    match serde_json::from_str::<serde_json::Value>(raw).map_err(|e| format!("not JSON: {e}"))? {
        serde_json::Value::Array(args) => Ok(args.iter().map(crate::step::json_to_scalar).collect()),
        other => Err(format!("expected a JSON array of arguments such as [1, \"x\"], got {}", kind(&other))),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The matches of a case, input by input in the order written.
type Groups<'a> = Vec<(String, Vec<&'a RawValue>)>;

/// A joiner line: the main record (raw) and its matches.
fn case_line(raw: &str) -> Result<(&RawValue, Groups<'_>), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line<'a> {
        #[serde(borrow)]
        main: &'a RawValue,
        #[serde(borrow, default)]
        matches: Option<&'a RawValue>,
    }
    let line: Line<'_> = serde_json::from_str(raw)
        .map_err(|e| format!("expected {{\"main\": RECORD, \"matches\": {{\"INPUT\": [RECORD, ...]}}}}: {e}"))?;
    let groups = match line.matches {
        None => Vec::new(),
        Some(m) => {
            let mut de = serde_json::Deserializer::from_str(m.get());
            serde::Deserializer::deserialize_map(&mut de, OrderedGroups)
                .map_err(|e| format!("matches: expected {{\"INPUT\": [RECORD, ...], ...}}: {e}"))?
        }
    };
    Ok((line.main, groups))
}

/// Reads `{"input": [raw, ...], ...}` keeping the order of the inputs.
struct OrderedGroups;

impl<'de> Visitor<'de> for OrderedGroups {
    type Value = Groups<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of arrays of records")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Groups<'de> = Vec::new();
        while let Some((input, records)) = map.next_entry::<String, Vec<&'de RawValue>>()? {
            match out.iter_mut().find(|(name, _)| *name == input) {
                Some((_, existing)) => existing.extend(records),
                None => out.push((input, records)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RecordOptions {
        RecordOptions { default_timestamp: 42, ..Default::default() }
    }

    #[test]
    fn transform_lines_are_payloads_as_written() {
        let text = "{\"b\":1, \"a\":2}\n\n  [1,2]  \n";
        let Sample::Events(events) = parse(text, WorldName::Transform, &opts(), None).unwrap() else { panic!() };
        assert_eq!(events.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(events[0].1.value, b"{\"b\":1, \"a\":2}");
        assert_eq!((events[0].1.timestamp, events[0].1.key.as_ref()), (42, None));
        assert_eq!(events[1].1.value, b"[1,2]");
    }

    #[test]
    fn time_and_key_fields_as_a_source_reads_them() {
        let o = RecordOptions { timestamp_field: Some("ts".into()), key_field: Some("k".into()), default_timestamp: 0 };
        let Sample::Events(events) = parse("{\"ts\": 1700, \"k\": \"u1\"}", WorldName::Transform, &o, None).unwrap() else {
            panic!()
        };
        assert_eq!((events[0].1.timestamp, events[0].1.key.as_deref()), (1700, Some(&b"u1"[..])));
        let e = parse("{}\n{\"ts\": \"soon\", \"k\": 1}", WorldName::Transform, &o, None).unwrap_err().to_string();
        assert!(e.starts_with("sample line 1: ") && e.contains("missing timestamp field `ts`"), "{e}");
    }

    #[test]
    fn bad_lines_are_located() {
        let e = parse("{}\n{oops", WorldName::Transform, &opts(), None).unwrap_err().to_string();
        assert!(e.starts_with("sample line 2: not JSON"), "{e}");
        let e = parse("[1]\n{\"a\":1}", WorldName::Udf, &opts(), None).unwrap_err().to_string();
        assert!(e.contains("line 2: expected a JSON array") && e.contains("an object"), "{e}");
        assert!(matches!(parse("\n \n", WorldName::Udf, &opts(), None), Err(TrialError::EmptySample)));
        let e = parse("{\"main\": {}, \"extra\": 1}", WorldName::Joiner, &opts(), None).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("extra"), "{e}");
        let e = parse("{\"main\": {}, \"matches\": {\"c\": 3}}", WorldName::Joiner, &opts(), None).unwrap_err().to_string();
        assert!(e.contains("matches: expected"), "{e}");
    }

    #[test]
    fn udf_rows_convert_like_a_udf_step() {
        let Sample::Rows(rows) = parse("[3, 1.5, \"x\", null, true, {\"a\":1}]", WorldName::Udf, &opts(), None).unwrap() else {
            panic!()
        };
        assert_eq!(
            rows[0].1,
            vec![
                Scalar::Int(3),
                Scalar::Float(1.5),
                Scalar::Str("x".into()),
                Scalar::Null,
                Scalar::Boolean(true),
                Scalar::Str("{\"a\":1}".into())
            ]
        );
    }

    #[test]
    fn joiner_inputs_in_order_of_appearance() {
        let text = concat!(
            "{\"main\": {\"id\": 1}, \"matches\": {\"clicks\": [{\"c\": 1}, {\"c\": 2}]}}\n",
            "{\"main\": {\"id\": 2}, \"matches\": {\"views\": [{\"v\": 1}], \"clicks\": []}}\n",
            "{\"main\": {\"id\": 3}}\n",
        );
        let Sample::Cases { inputs, cases } = parse(text, WorldName::Joiner, &opts(), None).unwrap() else { panic!() };
        assert_eq!(inputs, vec!["clicks", "views"]);
        assert_eq!(cases[0].1.main.value, b"{\"id\": 1}");
        assert_eq!(cases[0].1.matches[0].iter().map(|e| e.value.clone()).collect::<Vec<_>>(), vec![b"{\"c\": 1}".to_vec(), b"{\"c\": 2}".to_vec()]);
        assert!(cases[0].1.matches[1].is_empty());
        assert_eq!(cases[1].1.matches[1].len(), 1);
        assert_eq!(cases[2].1.matches, vec![Vec::<Event>::new(), Vec::new()]);
        // Given inputs fix the order and refuse others.
        let given = vec!["views".to_string(), "clicks".to_string()];
        let Sample::Cases { inputs, cases } = parse(text, WorldName::Joiner, &opts(), Some(&given)).unwrap() else { panic!() };
        assert_eq!(inputs, given);
        assert_eq!(cases[0].1.matches[1].len(), 2);
        let e = parse(text, WorldName::Joiner, &opts(), Some(&["clicks".to_string()])).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("views"), "{e}");
    }
}
