//! The built-in joiner: merges JSON objects, with a prefix per input.

use serde_json::{Map, Value};

use super::layout::Stored;
use crate::event::Event;

/// Merges a main event's object with its matches' (see `JoinerConfig::Merge`).
pub(crate) struct MergeJoiner {
    /// Field-name prefix of each other input, in input order.
    prefixes: Vec<String>,
}

impl MergeJoiner {
    pub(crate) fn new(prefixes: Vec<String>) -> Self {
        MergeJoiner { prefixes }
    }

    /// The output for `main` and its matches, grouped by other input (in
    /// input order) and ordered by time within an input.
    pub(crate) fn join(&self, main: &Stored, matches: &[Vec<Stored>]) -> Result<Event, String> {
        if let Some(value) = self.splice(main, matches) {
            return Ok(Event { value, ..main.event.clone() });
        }
        self.join_parsed(main, matches)
    }

    /// The fast path: the main event's bytes with the matches' members
    /// appended, values copied as they are (no parse tree, no reformatting).
    /// `None` when a name would repeat (a later match overwriting an
    /// earlier one's field, or a main field): [`Self::join_parsed`] resolves
    /// those.
    fn splice(&self, main: &Stored, matches: &[Vec<Stored>]) -> Option<Vec<u8>> {
        let bytes = &main.event.value;
        let top = crate::record_schema::members(bytes).ok()?;
        let close = bytes.iter().rposition(|&b| b == b'}')?;
        let mut names: std::collections::HashSet<String> = top.0.iter().map(|(k, _)| k.to_string()).collect();
        if names.len() != top.0.len() {
            return None; // a repeated name in the main object: let the parser decide
        }
        let mut out = Vec::with_capacity(bytes.len() + 64);
        out.extend_from_slice(&bytes[..close]);
        let mut first = top.0.is_empty();
        let mut member = |out: &mut Vec<u8>, name: String, raw: &[u8]| -> Option<()> {
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *out, &name).ok()?;
            out.push(b':');
            out.extend_from_slice(raw);
            names.insert(name).then_some(())
        };
        for (prefix, group) in self.prefixes.iter().zip(matches) {
            for m in group {
                let fields = crate::record_schema::members(&m.event.value).ok()?;
                for (k, v) in fields.0 {
                    member(&mut out, format!("{prefix}{k}"), v.get().as_bytes())?;
                }
            }
            member(&mut out, format!("{prefix}count"), group.len().to_string().as_bytes())?;
        }
        out.push(b'}');
        Some(out)
    }

    /// The general path: parse, merge (later wins), serialise.
    fn join_parsed(&self, main: &Stored, matches: &[Vec<Stored>]) -> Result<Event, String> {
        let mut out = object(&main.event.value).ok_or("the main event is not a JSON object")?;
        for (prefix, group) in self.prefixes.iter().zip(matches) {
            for m in group {
                // Checked on arrival; a value that is no longer an object
                // (state from elsewhere) contributes nothing.
                if let Some(fields) = object(&m.event.value) {
                    for (k, v) in fields {
                        out.insert(format!("{prefix}{k}"), v);
                    }
                }
            }
            out.insert(format!("{prefix}count"), Value::from(group.len()));
        }
        let value = serde_json::to_vec(&Value::Object(out)).map_err(|e| e.to_string())?;
        Ok(Event { value, ..main.event.clone() })
    }
}

fn object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;

    fn stored(value: &str, t: i64) -> Stored {
        Stored {
            event: Event { key: Some(b"k".to_vec()), value: value.as_bytes().to_vec(), timestamp: t, headers: vec![] },
            origin: Origin { source: "s".into(), position: 1 },
            join_key: b"r1".to_vec(),
        }
    }

    #[test]
    fn merges_with_prefixes_and_counts_later_matches_winning() {
        let j = MergeJoiner::new(vec!["click.".into(), "like.".into()]);
        let main = stored(r#"{"id":"r1","user":"u"}"#, 5);
        let clicks = vec![stored(r#"{"dwell":1,"x":true}"#, 6), stored(r#"{"dwell":2}"#, 7)];
        let out = j.join(&main, &[clicks, vec![]]).unwrap();
        let v: Value = serde_json::from_slice(&out.value).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"r1","user":"u","click.dwell":2,"click.x":true,"click.count":2,"like.count":0})
        );
        assert_eq!((out.timestamp, out.key.as_deref()), (5, Some(&b"k"[..])), "time and key are the main event's");
        assert!(j.join(&stored("[1]", 1), &[vec![], vec![]]).is_err());
    }

    #[test]
    fn the_spliced_output_equals_the_parsed_one() {
        let j = MergeJoiner::new(vec!["c_".into()]);
        let cases: [(&str, Vec<&str>); 5] = [
            (r#"{"id":"r1","n":1.50,"o":{"a":[1,2]}}"#, vec![]),
            (r#" { "id" : "r1" } "#, vec![r#"{"dwell":3,"s":"a\"b"}"#]),
            ("{}", vec![r#"{"x":null}"#]),
            (r#"{"c_x":1}"#, vec![r#"{"x":2}"#]),                 // collides with a main field
            (r#"{"id":1}"#, vec![r#"{"x":1}"#, r#"{"x":2}"#]),    // a later match wins
        ];
        for (main, clicks) in cases {
            let m = stored(main, 1);
            let groups = vec![clicks.iter().map(|c| stored(c, 2)).collect::<Vec<_>>()];
            let fast: Value = serde_json::from_slice(&j.join(&m, &groups).unwrap().value).unwrap();
            let slow: Value = serde_json::from_slice(&j.join_parsed(&m, &groups).unwrap().value).unwrap();
            assert_eq!(fast, slow, "{main} + {clicks:?}");
        }
        let groups = vec![vec![stored(r#"{"x":1}"#, 2), stored(r#"{"x":2}"#, 3)]];
        assert!(j.splice(&stored("{}", 1), &groups).is_none(), "repeated names take the general path");
    }
}
