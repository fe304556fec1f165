//! What a lookup join adds to an event: the value's members (all, or the
//! chosen `fields`) under a `prefix`, or the whole value `as` one field. The
//! event is read once, borrowed, at its top level; its members are copied as
//! they are and the added ones written after them (an added name replaces the
//! event's member of that name), the value's member texts copied as they are.

use crate::record_schema::members;

/// How the value is added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The value's members, each name prefixed; only `fields` when given
    /// (missing ones, and all of them on a miss, added as null).
    Members { prefix: String, fields: Option<Vec<String>> },
    /// The whole value as one field (null on a miss).
    Whole(String),
}

impl Shape {
    /// `event` (a JSON object) with `value` added (`None`: the table had none).
    pub fn add(&self, event: &[u8], value: Option<&[u8]>) -> Result<Vec<u8>, String> {
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
                write(event, &[(name.as_str().into(), raw)])
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
                let named = |k: &str| -> std::borrow::Cow<'_, str> { if prefix.is_empty() { k.to_string().into() } else { format!("{prefix}{k}").into() } };
                let added: Vec<_> = match fields {
                    None => found.iter().map(|(k, raw)| (named(k), raw.get())).collect(),
                    Some(fields) => fields
                        .iter()
                        .map(|f| (named(f), found.iter().rev().find(|(k, _)| k == f).map_or("null", |(_, raw)| raw.get())))
                        .collect(),
                };
                write(event, &added)
            }
        }
    }
}

/// `event`'s members but those `added` names, then `added` (raw JSON texts).
fn write(event: &[u8], added: &[(std::borrow::Cow<'_, str>, &str)]) -> Result<Vec<u8>, String> {
    let m = members(event).map_err(|e| {
        let object = event.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if object || !e.is_data() {
            format!("malformed JSON: {e}")
        } else {
            "a lookup join needs each event's value to be a JSON object".into()
        }
    })?;
    let mut out = Vec::with_capacity(event.len() + added.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>());
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str, raw: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        // Names are written escaped; values are copied as they are.
        write_name(out, name);
        out.push(b':');
        out.extend_from_slice(raw.as_bytes());
    };
    for (k, v) in &m.0 {
        if !added.iter().any(|(a, _)| a == k) {
            member(&mut out, k, v.get());
        }
    }
    for (k, v) in added {
        member(&mut out, k, v);
    }
    out.push(b'}');
    Ok(out)
}

/// A member name as a JSON string.
fn write_name(out: &mut Vec<u8>, name: &str) {
    if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(serde_json::to_string(name).unwrap_or_default().as_bytes());
    }
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
        shape.add(event.as_bytes(), value.map(str::as_bytes)).map(|v| serde_json::from_slice(&v).expect("valid JSON"))
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
    }
}
