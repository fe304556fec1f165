//! Compares what a replay wrote with the expected files: as multisets of
//! canonical JSON lines (parsed values, so key order and whitespace do not
//! matter; line order does not either, since across keys a pipeline does not
//! define it). A line that is not JSON is compared as text. A dead letter's
//! `value` holds the event's JSON as a string: it is compared parsed too.
//!
//! The difference reads as lines missing, extra, and changed: a missing and
//! an extra line that share most of their fields are shown as one changed
//! line, with the fields that differ.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Differences shown per file, at most.
const SHOWN: usize = 20;

/// One line of an output, parsed.
#[derive(Clone, Debug)]
struct Line {
    /// 1-based, in its file.
    number: usize,
    text: String,
    value: Option<Value>,
    canonical: String,
}

fn parse(text: &str, dead_letters: bool) -> Vec<Line> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let value = serde_json::from_str::<Value>(l).ok().map(|v| if dead_letters { open_dead_letter(v) } else { v });
            // serde_json's maps are ordered by key: its text is canonical.
            let canonical = value.as_ref().map_or_else(|| l.to_string(), |v| v.to_string());
            Line { number: i + 1, text: l.to_string(), value, canonical }
        })
        .collect()
}

/// A dead letter with its `value` (the event's JSON, as text) parsed.
fn open_dead_letter(mut v: Value) -> Value {
    if let Some(Value::String(s)) = v.get("value") {
        if let Ok(inner) = serde_json::from_str::<Value>(s) {
            v["value"] = inner;
        }
    }
    v
}

/// How one output compares with its expected file.
#[derive(Debug, Default)]
pub struct FileDiff {
    pub expected_lines: usize,
    pub got_lines: usize,
    /// (expected, got) pairs that share most of their fields.
    changed: Vec<(Line, Line)>,
    missing: Vec<Line>,
    extra: Vec<Line>,
}

impl FileDiff {
    pub fn matches(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }

    /// "1 changed, 2 missing, 0 extra".
    pub fn counts(&self) -> String {
        format!("{} changed, {} missing, {} extra", self.changed.len(), self.missing.len(), self.extra.len())
    }

    /// The differences, indented, at most [`SHOWN`] of them.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut shown = 0;
        for (want, got) in &self.changed {
            if shown == SHOWN {
                break;
            }
            shown += 1;
            let _ = writeln!(out, "  changed (expected line {}, got line {}):", want.number, got.number);
            let _ = writeln!(out, "    - {}", want.text);
            let _ = writeln!(out, "    + {}", got.text);
            if let (Some(w), Some(g)) = (&want.value, &got.value) {
                let mut fields = Vec::new();
                differences("$", w, g, &mut fields);
                for f in fields {
                    let _ = writeln!(out, "      {f}");
                }
            }
        }
        for (what, sign, lines) in [("missing", '-', &self.missing), ("extra", '+', &self.extra)] {
            for l in lines.iter() {
                if shown == SHOWN {
                    break;
                }
                shown += 1;
                let place = if sign == '-' { "expected" } else { "got" };
                let _ = writeln!(out, "  {what} ({place} line {}):", l.number);
                let _ = writeln!(out, "    {sign} {}", l.text);
            }
        }
        let total = self.changed.len() + self.missing.len() + self.extra.len();
        if total > shown {
            let _ = writeln!(out, "  ... and {} more differences", total - shown);
        }
        out
    }
}

/// Compares `got` with `expected` (file contents; `dead_letters`: the lines
/// are dead letters).
pub fn compare(expected: &str, got: &str, dead_letters: bool) -> FileDiff {
    let (want, have) = (parse(expected, dead_letters), parse(got, dead_letters));
    let mut diff = FileDiff { expected_lines: want.len(), got_lines: have.len(), ..Default::default() };
    // Lines of `got` by canonical text, each matched at most once.
    let mut unmatched: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in have.iter().enumerate().rev() {
        unmatched.entry(l.canonical.as_str()).or_default().push(i);
    }
    let mut missing = Vec::new();
    for w in &want {
        match unmatched.get_mut(w.canonical.as_str()).and_then(Vec::pop) {
            Some(_) => {}
            None => missing.push(w.clone()),
        }
    }
    let mut extra: Vec<usize> = unmatched.into_values().flatten().collect();
    extra.sort_unstable();
    let mut extra: Vec<Option<&Line>> = extra.into_iter().map(|i| Some(&have[i])).collect();
    // A missing line and the extra line most like it (at least half of their
    // fields alike) are one changed line.
    for w in missing {
        let best = extra
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((i, likeness(w.value.as_ref()?, g.as_ref()?.value.as_ref()?))))
            .filter(|(_, score)| *score >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        match best {
            Some((i, _)) => diff.changed.push((w, extra[i].take().expect("filtered on Some").clone())),
            None => diff.missing.push(w),
        }
    }
    diff.extra = extra.into_iter().flatten().cloned().collect();
    diff
}

/// The share of two objects' fields (top level) that are equal: 0..=1.
fn likeness(a: &Value, b: &Value) -> f64 {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let union = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).count();
            let same = a.iter().filter(|(k, v)| b.get(*k) == Some(*v)).count();
            if union == 0 {
                1.0
            } else {
                same as f64 / union as f64
            }
        }
        _ => 0.0,
    }
}

/// The fields where `want` and `got` differ, as `PATH: expected X, got Y`.
fn differences(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let at = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => differences(&at, wv, gv, out),
                    None => out.push(format!("{at}: expected {wv}, missing")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}.{k}: not expected, got {gv}"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                differences(&format!("{path}[{i}]"), wv, gv, out);
            }
        }
        _ if want != got => out.push(format!("{path}: expected {want}, got {got}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_whitespace_and_line_order_do_not_matter() {
        let d = compare("{\"a\":1,\"b\":[1,2]}\n{\"c\":null}\n", "{\"c\": null}\n{ \"b\": [1, 2], \"a\": 1 }\n", false);
        assert!(d.matches(), "{}", d.render());
    }

    #[test]
    fn changed_missing_and_extra_lines_are_told_apart() {
        let want = "{\"id\":1,\"n\":2,\"x\":\"a\"}\n{\"id\":2,\"n\":3,\"x\":\"b\"}\n{\"id\":3}\n";
        let got = "{\"id\":1,\"n\":5,\"x\":\"a\"}\n{\"other\":true}\n{\"id\":2,\"n\":3,\"x\":\"b\"}\n";
        let d = compare(want, got, false);
        assert!(!d.matches());
        assert_eq!(d.counts(), "1 changed, 1 missing, 1 extra");
        let r = d.render();
        assert!(r.contains("changed (expected line 1, got line 1)"), "{r}");
        assert!(r.contains("$.n: expected 2, got 5"), "{r}");
        assert!(r.contains("missing (expected line 3):\n    - {\"id\":3}"), "{r}");
        assert!(r.contains("extra (got line 2):\n    + {\"other\":true}"), "{r}");
    }

    #[test]
    fn duplicates_count() {
        let d = compare("{\"a\":1}\n{\"a\":1}\n", "{\"a\":1}\n", false);
        assert_eq!(d.counts(), "0 changed, 1 missing, 0 extra");
    }

    #[test]
    fn a_dead_letter_value_is_compared_as_json() {
        let want = r#"{"kind":"late","value":"{\"a\":1,\"b\":2}"}"#;
        let got = r#"{"value":"{\"b\":2, \"a\":1}","kind":"late"}"#;
        assert!(compare(want, got, true).matches());
        assert!(!compare(want, got, false).matches(), "as plain strings the values differ");
    }
}
