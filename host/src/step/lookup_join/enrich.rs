//! What a lookup join adds to an event: the value's members (all, or the
//! chosen `fields`) under a `prefix`, or the whole value `as` one field,
//! written after the event's members (an added name replaces the event's
//! member of that name), the value's member texts copied as they are.
//!
//! The step read the event's top-level names when it read its key, and kept
//! a digest of them ([`Names`]): when no added name can be among them (the
//! usual case) the added members are written before the event's closing
//! brace, and the event is not parsed again.

use crate::record_schema::{members, object_members};

/// How the value is added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The value's members, each name prefixed; only `fields` when given
    /// (missing ones, and all of them on a miss, added as null).
    Members { prefix: String, fields: Option<Vec<String>> },
    /// The whole value as one field (null on a miss).
    Whole(String),
}

/// A digest of an event's top-level member names: a Bloom filter (a name
/// not among them is known absent, mostly) and whether there are any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Names {
    bloom: u128,
    any: bool,
}

impl Names {
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Names {
        let mut n = Names::default();
        for name in names {
            n.bloom |= Names::bits(name);
            n.any = true;
        }
        n
    }

    /// The filter's bits of the name `prefix` ++ `name` (FNV-1a: it hashes
    /// the two parts as one without joining them).
    fn bits_of(prefix: &str, name: &str) -> u128 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in prefix.bytes().chain(name.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h ^= h >> 29;
        (1u128 << (h & 127)) | (1u128 << ((h >> 7) & 127))
    }

    fn bits(name: &str) -> u128 {
        Names::bits_of("", name)
    }

    /// Whether `prefix` ++ `name` may be one of them (false: it is not).
    fn may_hold(&self, prefix: &str, name: &str) -> bool {
        let b = Names::bits_of(prefix, name);
        self.bloom & b == b
    }
}

/// A member to add: its name (`prefix` ++ `name`) and its raw JSON text.
struct Added<'a> {
    prefix: &'a str,
    name: &'a str,
    raw: &'a str,
}

impl Added<'_> {
    fn is(&self, name: &str) -> bool {
        name.len() == self.prefix.len() + self.name.len() && name.starts_with(self.prefix) && name.ends_with(self.name)
    }
}

impl Shape {
    /// `event` (a JSON object) with `value` added (`None`: the table had
    /// none); `names`: the digest of the event's names, if the step has it.
    pub fn add(&self, event: &[u8], value: Option<&[u8]>, names: Option<&Names>) -> Result<Vec<u8>, String> {
        match self {
            Shape::Whole(name) => {
                let text;
                let raw = match value {
                    None => "null",
                    Some(v) => match serde_json::from_slice::<&serde_json::value::RawValue>(v) {
                        Ok(raw) => raw.get(),
                        Err(_) => {
                            // Not JSON: the text as a string.
                            text = serde_json::to_string(&String::from_utf8_lossy(v)).unwrap_or_default();
                            &text
                        }
                    },
                };
                write(event, &[Added { prefix: "", name, raw }], names)
            }
            Shape::Members { prefix, fields } => {
                let found = match value {
                    None => Vec::new(),
                    Some(v) => members(v)
                        .map_err(|_| {
                            format!(
                                "the table's value is not a JSON object ({}): `prefix`/`fields` add an object's members; use `as` to add any value as one field",
                                short(v)
                            )
                        })?
                        .0,
                };
                let added: Vec<Added<'_>> = match fields {
                    None => found.iter().map(|(k, raw)| Added { prefix, name: k, raw: raw.get() }).collect(),
                    Some(fields) => fields
                        .iter()
                        .map(|f| Added { prefix, name: f, raw: found.iter().rev().find(|(k, _)| k == f).map_or("null", |(_, raw)| raw.get()) })
                        .collect(),
                };
                write(event, &added, names)
            }
        }
    }
}

/// `event`'s members but those `added` names, then `added`.
fn write(event: &[u8], added: &[Added<'_>], names: Option<&Names>) -> Result<Vec<u8>, String> {
    let size = |extra: usize| extra + added.iter().map(|a| a.prefix.len() + a.name.len() + a.raw.len() + 4).sum::<usize>();
    if let Some(names) = names.filter(|n| !added.iter().any(|a| n.may_hold(a.prefix, a.name))) {
        // None of the event's names is added: the members go before its closing brace.
        let end = event.iter().rposition(|b| !b.is_ascii_whitespace()).filter(|&i| event[i] == b'}');
        if let Some(end) = end {
            let mut out = Vec::with_capacity(size(end + 1));
            out.extend_from_slice(&event[..end]);
            for (i, a) in added.iter().enumerate() {
                if names.any || i > 0 {
                    out.push(b',');
                }
                write_member(&mut out, a.prefix, a.name, a.raw);
            }
            out.push(b'}');
            return Ok(out);
        }
    }
    let m = object_members(event, "a lookup join")?;
    let mut out = Vec::with_capacity(size(event.len()));
    out.push(b'{');
    for (k, v) in m.0.iter().filter(|(k, _)| !added.iter().any(|a| a.is(k))) {
        if out.len() > 1 {
            out.push(b',');
        }
        write_member(&mut out, "", k, v.get());
    }
    for a in added {
        if out.len() > 1 {
            out.push(b',');
        }
        write_member(&mut out, a.prefix, a.name, a.raw);
    }
    out.push(b'}');
    Ok(out)
}

/// `"prefix++name":raw` (the name escaped; the value copied as it is).
fn write_member(out: &mut Vec<u8>, prefix: &str, name: &str, raw: &str) {
    let plain = |s: &str| s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain(prefix) && plain(name) {
        out.push(b'"');
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(serde_json::to_string(&format!("{prefix}{name}")).unwrap_or_default().as_bytes());
    }
    out.push(b':');
    out.extend_from_slice(raw.as_bytes());
}

/// The start of a value, for a reason.
fn short(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn add(shape: &Shape, event: &str, value: Option<&str>) -> Result<Value, String> {
        let slow = shape.add(event.as_bytes(), value.map(str::as_bytes), None);
        // With the digest of the event's names, the same output.
        if let Ok(m) = crate::record_schema::members(event.as_bytes()) {
            let names = Names::of(m.0.iter().map(|(k, _)| &**k));
            let fast = shape.add(event.as_bytes(), value.map(str::as_bytes), Some(&names));
            let parsed = |r: &Result<Vec<u8>, String>| r.as_ref().map(|v| serde_json::from_slice::<Value>(v).expect("valid JSON")).map_err(Clone::clone);
            assert_eq!(parsed(&fast), parsed(&slow), "{event}");
        }
        slow.map(|v| serde_json::from_slice(&v).expect("valid JSON"))
    }

    fn members(prefix: &str, fields: Option<&[&str]>) -> Shape {
        Shape::Members { prefix: prefix.into(), fields: fields.map(|f| f.iter().map(|s| s.to_string()).collect()) }
    }

    #[test]
    fn members_are_added_under_the_prefix_replacing_the_events_own() {
        let s = members("user_", None);
        let got = add(&s, r#"{"uid":"7","user_age":1,"n":[1,2]}"#, Some(r#"{"age":30,"tags":["a"]}"#)).unwrap();
        assert_eq!(got, json!({"uid": "7", "n": [1, 2], "user_age": 30, "user_tags": ["a"]}));
        assert_eq!(add(&s, r#"{"uid":"7"}"#, None).unwrap(), json!({"uid": "7"}), "a miss adds nothing");
        let err = add(&s, r#"{"uid":"7"}"#, Some("[1]")).unwrap_err();
        assert!(err.contains("not a JSON object") && err.contains("`as`"), "{err}");
        assert!(add(&s, "[1]", Some("{}")).unwrap_err().contains("needs each event's value to be a JSON object"));
        assert!(add(&s, r#"{"a":"#, Some("{}")).unwrap_err().contains("malformed JSON"));
    }

    #[test]
    fn chosen_fields_are_always_there_null_when_missing() {
        let s = members("u.", Some(&["age", "city"]));
        assert_eq!(add(&s, r#"{"id":1}"#, Some(r#"{"age":30,"x":1}"#)).unwrap(), json!({"id": 1, "u.age": 30, "u.city": null}));
        assert_eq!(add(&s, r#"{"id":1}"#, None).unwrap(), json!({"id": 1, "u.age": null, "u.city": null}));
    }

    #[test]
    fn the_whole_value_goes_as_one_field_json_or_text() {
        let s = Shape::Whole("user".into());
        assert_eq!(add(&s, r#"{"id":1}"#, Some(r#"{"age":30}"#)).unwrap(), json!({"id": 1, "user": {"age": 30}}));
        assert_eq!(add(&s, r#"{"id":1}"#, Some("gold tier")).unwrap(), json!({"id": 1, "user": "gold tier"}));
        assert_eq!(add(&s, r#"{"id":1}"#, None).unwrap(), json!({"id": 1, "user": null}));
        assert_eq!(add(&s, r#"{"id":1,"user":"old"}"#, Some("3")).unwrap(), json!({"id": 1, "user": 3}));
        assert_eq!(add(&s, "{ }", Some("3")).unwrap(), json!({"user": 3}));
        assert_eq!(add(&s, "{\"a\":1}\n", Some("3")).unwrap(), json!({"a": 1, "user": 3}));
    }

    #[test]
    fn the_digest_knows_which_names_are_absent() {
        let names = Names::of(["uid", "n", "ts", "user_age"]);
        assert!(names.may_hold("", "uid") && names.may_hold("", "ts") && names.may_hold("user_", "age") && names.may_hold("us", "er_age"));
        let absent = (0..1000).filter(|i| !names.may_hold("user_", &format!("x{i}"))).count();
        assert!(absent > 950, "{absent} of 1000 known absent");
        assert!(!Names::of([]).may_hold("", "x"));
    }
}
