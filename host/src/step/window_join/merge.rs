//! The built-in joiner: merges JSON objects, with a prefix per input.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::layout::Stored;
use crate::event::Event;

/// Merges a main event's object with its matches' (see `JoinerConfig::Merge`).
#[derive(Clone)]
pub(crate) struct MergeJoiner {
    /// Field-name prefix of each other input, in input order.
    prefixes: Vec<String>,
    /// The same, JSON-escaped without the quotes (written as they are).
    escaped: Vec<Vec<u8>>,
}

impl MergeJoiner {
    pub(crate) fn new(prefixes: Vec<String>) -> Self {
        let escaped = prefixes
            .iter()
            .map(|p| {
                let quoted = serde_json::to_vec(p).unwrap_or_else(|_| b"\"\"".to_vec());
                quoted[1..quoted.len() - 1].to_vec()
            })
            .collect();
        MergeJoiner { prefixes, escaped }
    }

    /// Whether an object with member `names` can never collide with a
    /// match's prefixed names: its names are unique and none starts with
    /// a prefix. Decided once on arrival (see `Stored::plain_names`).
    pub(crate) fn plain(&self, names: &[Cow<'_, str>]) -> bool {
        let prefixed = |n: &str| self.prefixes.iter().any(|p| n.len() >= p.len() && n.is_char_boundary(p.len()) && crate::record_schema::short_eq(&n[..p.len()], p));
        if names.iter().any(|n| prefixed(n)) {
            return false;
        }
        // On the stack for the usual object (this runs for every main event).
        let mut small = [0u64; 64];
        let mut large = Vec::new();
        let hashes = if names.len() <= small.len() {
            &mut small[..names.len()]
        } else {
            large.resize(names.len(), 0);
            &mut large[..]
        };
        for (h, n) in hashes.iter_mut().zip(names) {
            *h = name_hash(b"", n.as_bytes());
        }
        hashes.sort_unstable();
        hashes.windows(2).all(|w| w[0] != w[1])
    }

    /// The output for `main` and its matches, grouped by other input (in
    /// input order) and ordered by time within an input; `left_out[k]`
    /// matches of input `k` were left out by `max_matches` (written as
    /// `PREFIXtruncated` when not 0).
    pub(crate) fn join(&self, main: &Stored, matches: &[Vec<Stored>], left_out: &[u64]) -> Result<Event, String> {
        let value = match self.splice(main, matches, left_out) {
            Some(value) => value,
            None => self.join_parsed(main, matches, left_out)?,
        };
        let e = &main.event;
        Ok(Event { key: e.key.clone(), value, timestamp: e.timestamp, headers: e.headers.clone() })
    }

    /// The fast path: the main event's bytes with the matches' members
    /// appended, values copied as they are (no parse tree, no reformatting).
    /// `None` when a name would repeat (a later match overwriting an
    /// earlier one's field, or a main field): [`Self::join_parsed`] resolves
    /// those.
    fn splice(&self, main: &Stored, matches: &[Vec<Stored>], left_out: &[u64]) -> Option<Vec<u8>> {
        let bytes = &main.event.value;
        let close = bytes.iter().rposition(|&b| b == b'}')?;
        // Output names by hash: equal hashes (a repeat, or rarely a
        // collision) send the case to the general path, so no name is
        // ever written twice. A plain main event's names cannot collide
        // with any match's, so they need not be read again.
        let (mut hashes, mut first) = if main.plain_names {
            (Vec::new(), bytes[..close].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
        } else {
            let mut names = Vec::with_capacity(32);
            crate::record_schema::member_names(bytes, &mut names).ok()?;
            (names.iter().map(|n| name_hash(b"", n.as_bytes())).collect::<Vec<u64>>(), names.is_empty())
        };
        let extra: usize = matches.iter().flatten().map(|m| m.event.value.len()).sum();
        let mut out = Vec::with_capacity(bytes.len() + extra + 32 * matches.len());
        out.extend_from_slice(&bytes[..close]);
        let mut count = String::new();
        for (k, ((prefix, escaped), group)) in self.prefixes.iter().zip(&self.escaped).zip(matches).enumerate() {
            for m in group {
                let fields = crate::record_schema::members(&m.event.value).ok()?;
                for (k, v) in &fields.0 {
                    hashes.push(name_hash(prefix.as_bytes(), k.as_bytes()));
                    write_name(&mut out, &mut first, prefix, escaped, k);
                    out.extend_from_slice(v.get().as_bytes());
                }
            }
            hashes.push(name_hash(prefix.as_bytes(), b"count"));
            write_name(&mut out, &mut first, prefix, escaped, &Cow::Borrowed("count"));
            count.clear();
            std::fmt::Write::write_fmt(&mut count, format_args!("{}", group.len())).ok()?;
            out.extend_from_slice(count.as_bytes());
            if let Some(&n) = left_out.get(k).filter(|n| **n > 0) {
                hashes.push(name_hash(prefix.as_bytes(), b"truncated"));
                write_name(&mut out, &mut first, prefix, escaped, &Cow::Borrowed("truncated"));
                count.clear();
                std::fmt::Write::write_fmt(&mut count, format_args!("{n}")).ok()?;
                out.extend_from_slice(count.as_bytes());
            }
        }
        out.push(b'}');
        hashes.sort_unstable();
        if hashes.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        Some(out)
    }

    /// The general path: parse, merge (later wins), serialise.
    fn join_parsed(&self, main: &Stored, matches: &[Vec<Stored>], left_out: &[u64]) -> Result<Vec<u8>, String> {
        let mut out = object(&main.event.value).ok_or("the main event is not a JSON object")?;
        for (k, (prefix, group)) in self.prefixes.iter().zip(matches).enumerate() {
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
            if let Some(&n) = left_out.get(k).filter(|n| **n > 0) {
                out.insert(format!("{prefix}truncated"), Value::from(n));
            }
        }
        serde_json::to_vec(&Value::Object(out)).map_err(|e| e.to_string())
    }
}

/// FNV-1a over `prefix ++ name`: the same for every split of the same
/// output name (a main field `c.x` and a match field `x` with prefix `c.`).
fn name_hash(prefix: &[u8], name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in prefix.iter().chain(name) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Writes `,"<prefix><name>":` (no comma before the first member).
// The `Cow` itself is the information: borrowed means unescaped in the input.
#[allow(clippy::ptr_arg)]
fn write_name(out: &mut Vec<u8>, first: &mut bool, prefix: &str, escaped_prefix: &[u8], name: &Cow<'_, str>) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    match name {
        // Borrowed: the key had no escapes in its JSON text, so it is
        // written back as it was.
        Cow::Borrowed(raw) => {
            out.push(b'"');
            out.extend_from_slice(escaped_prefix);
            out.extend_from_slice(raw.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(name) => {
            let _ = serde_json::to_writer(&mut *out, &format!("{prefix}{name}"));
        }
    }
    out.push(b':');
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
            origin: Origin::new("s", 1),
            join_key: b"r1".to_vec(),
            plain_names: false,
        }
    }

    #[test]
    fn merges_with_prefixes_and_counts_later_matches_winning() {
        let j = MergeJoiner::new(vec!["click.".into(), "like.".into()]);
        let main = stored(r#"{"id":"r1","user":"u"}"#, 5);
        let clicks = vec![stored(r#"{"dwell":1,"x":true}"#, 6), stored(r#"{"dwell":2}"#, 7)];
        let out = j.join(&main, &[clicks, vec![]], &[]).unwrap();
        let v: Value = serde_json::from_slice(&out.value).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"r1","user":"u","click.dwell":2,"click.x":true,"click.count":2,"like.count":0})
        );
        assert_eq!((out.timestamp, out.key.as_deref()), (5, Some(&b"k"[..])), "time and key are the main event's");
        assert!(j.join(&stored("[1]", 1), &[vec![], vec![]], &[]).is_err());
        let capped = j.join(&main, &[vec![stored(r#"{"dwell":1}"#, 6)], vec![]], &[17, 0]).unwrap();
        let v: Value = serde_json::from_slice(&capped.value).unwrap();
        assert_eq!(v, serde_json::json!({"id":"r1","user":"u","click.dwell":1,"click.count":1,"click.truncated":17,"like.count":0}));
    }

    #[test]
    fn the_spliced_output_equals_the_parsed_one() {
        let j = MergeJoiner::new(vec!["c_".into()]);
        let cases: [(&str, Vec<&str>); 7] = [
            (r#"{"id":"r1","n":1.50,"o":{"a":[1,2]}}"#, vec![]),
            (r#" { "id" : "r1" } "#, vec![r#"{"dwell":3,"s":"a\"b"}"#]),
            ("{}", vec![r#"{"x":null}"#]),
            (r#"{"c_x":1}"#, vec![r#"{"x":2}"#]),                 // collides with a main field
            (r#"{"id":1}"#, vec![r#"{"x":1}"#, r#"{"x":2}"#]),    // a later match wins
            (r#"{"c_count":1}"#, vec![]),                           // collides with the count
            (r#"{"a\u0041":1,"q":"\n"}"#, vec![r#"{"b\"":[1,{"c":2}]}"#]), // escaped names
        ];
        for j in [&j, &MergeJoiner::new(vec!["c\"".into()])] {
            for (main, clicks) in &cases {
                let m = stored(main, 1);
                let groups = vec![clicks.iter().map(|c| stored(c, 2)).collect::<Vec<_>>()];
                let fast: Value = serde_json::from_slice(&j.join(&m, &groups, &[2]).unwrap().value).unwrap();
                let slow: Value = serde_json::from_slice(&j.join_parsed(&m, &groups, &[2]).unwrap()).unwrap();
                assert_eq!(fast, slow, "{main} + {clicks:?}");
                let mut names = Vec::new();
                crate::record_schema::member_names(main.as_bytes(), &mut names).unwrap();
                let plain = Stored { plain_names: j.plain(&names), ..m.clone() };
                let known: Value = serde_json::from_slice(&j.join(&plain, &groups, &[2]).unwrap().value).unwrap();
                assert_eq!(known, slow, "{main} + {clicks:?}, names known on arrival");
            }
        }
        let groups = vec![vec![stored(r#"{"x":1}"#, 2), stored(r#"{"x":2}"#, 3)]];
        assert!(j.splice(&stored("{}", 1), &groups, &[]).is_none(), "repeated names take the general path");
        let names = |v: &'static str| {
            let mut n = Vec::new();
            crate::record_schema::member_names(v.as_bytes(), &mut n).unwrap();
            n
        };
        assert!(j.plain(&names(r#"{"a":1,"b":2}"#)));
        assert!(!j.plain(&names(r#"{"a":1,"a":2}"#)), "a repeated name");
        assert!(!j.plain(&names(r#"{"a":1,"c_x":2}"#)), "a name with an output prefix");
    }
}
