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
}
