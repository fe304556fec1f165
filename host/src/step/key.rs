//! How a step finds the key of an event: a window join's join key, a
//! lookup's key. One place for reading it (the event key, a field path read
//! in one borrowed pass per level, or a UDF called once per batch) and for
//! the reasons an event has none.

use std::borrow::Cow;

use serde_json::Value;

use super::dead_kind;
use super::udf::{scalar_to_json, UdfArg};
use crate::config::JoinKey;
use crate::dead_letter::DeadKind;
use crate::event::Event;
use crate::plugin::{Scalar, UdfRunner};

/// An event's key, or why it has none (the dead letter's kind and reason).
pub type KeyResult = Result<Vec<u8>, (DeadKind, String)>;

/// How a key is found.
pub enum KeySpec {
    /// The event key.
    EventKey,
    /// A field path, split (`$.user.id` → `["user", "id"]`).
    Field(Vec<String>),
    /// A UDF function of the event's fields (its runner is given at build).
    Udf { function: String, args: Vec<UdfArg>, runner: Option<Box<UdfRunner>> },
}

/// `$.a.b` (or `a.b`) as its segments.
pub fn split_path(path: &str) -> Vec<String> {
    path.trim_start_matches("$.").split('.').map(String::from).collect()
}

impl KeySpec {
    /// The spec of a configured key; `None`: the event key.
    pub fn of(config: Option<&JoinKey>) -> Self {
        match config {
            None => KeySpec::EventKey,
            Some(JoinKey::Field(p)) => KeySpec::Field(split_path(p)),
            Some(JoinKey::Udf(u)) => KeySpec::Udf { function: u.function.clone(), args: u.args.iter().map(UdfArg::parse).collect(), runner: None },
        }
    }

    /// Gives a UDF key its runner (nothing for other keys).
    pub fn set_runner(&mut self, given: Option<UdfRunner>) {
        if let KeySpec::Udf { runner, .. } = self {
            *runner = given.map(Box::new);
        }
    }

    /// The path of a field key.
    pub fn field(&self) -> Option<&[String]> {
        match self {
            KeySpec::Field(path) => Some(path),
            _ => None,
        }
    }

    /// The keys of `events` computed by the UDF: one call for the batch.
    /// `None` when the key is not a UDF's. `what` names the key in reasons
    /// ("join key", "lookup key").
    pub fn udf_keys(&mut self, events: &[Event], what: &str) -> Option<Vec<KeyResult>> {
        let KeySpec::Udf { function, args, runner } = self else { return None };
        let mut keys: Vec<KeyResult> = Vec::with_capacity(events.len());
        let mut rows = Vec::with_capacity(events.len());
        let mut called = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            match serde_json::from_slice::<Value>(&e.value) {
                Ok(Value::Object(obj)) => {
                    rows.push(args.iter().map(|a| a.eval(&obj)).collect::<Vec<_>>());
                    called.push(i);
                    keys.push(Err((DeadKind::StepError, String::new())));
                }
                _ => keys.push(Err((DeadKind::StepError, format!("a UDF {what} needs a JSON object")))),
            }
        }
        let Some(runner) = runner else {
            return Some(events.iter().map(|_| Err((DeadKind::StepError, format!("the {what}'s UDF plugin is not loaded")))).collect());
        };
        for (i, result) in called.into_iter().zip(runner.call(function, &rows)) {
            keys[i] = match result {
                Ok(Scalar::Null) => Err((DeadKind::StepError, format!("no {what}: `{function}` returned null"))),
                Ok(Scalar::Str(s)) => Ok(s.into_bytes()),
                Ok(Scalar::Bytes(b)) => Ok(b),
                Ok(other) => Ok(scalar_to_json(other).to_string().into_bytes()),
                Err(f) => Err((dead_kind(f.kind), format!("{what}: {}", f.message))),
            };
        }
        Some(keys)
    }

    /// The key of `event` (a field or the event key), or why there is none.
    /// Reading the top level for a field key also appends its member names
    /// to `names`, when given.
    pub fn read<'e>(&self, event: &'e Event, names: Option<&mut Vec<Cow<'e, str>>>, what: &str) -> Result<Vec<u8>, String> {
        match self.read_raw(event, names, what)? {
            RawKey::Json(text) => key_from_raw(text, self.field().unwrap_or_default(), what),
            RawKey::Bytes(b) => Ok(b.to_vec()),
        }
    }

    /// What [`KeySpec::read`] reads, before it is made a key: a field's raw
    /// JSON text, or the event key.
    pub fn read_raw<'e>(&self, event: &'e Event, mut names: Option<&mut Vec<Cow<'e, str>>>, what: &str) -> Result<RawKey<'e>, String> {
        let path = match self {
            KeySpec::Field(path) => path,
            KeySpec::EventKey => return event.key.as_deref().map(RawKey::Bytes).ok_or_else(|| format!("no {what}: the event has no key")),
            KeySpec::Udf { .. } => return Err(format!("the {what}'s UDF was not called")),
        };
        // One borrowed pass per level on the path: other members are
        // checked but not kept.
        let mut bytes: &[u8] = &event.value;
        let mut raw = None;
        for (depth, seg) in path.iter().enumerate() {
            let found = crate::record_schema::member_and_names(bytes, seg, names.take()).map_err(|e| match depth {
                0 => format!("not a JSON object: {e}"),
                _ => format!("no {what}: `$.{}` is not inside an object", path.join(".")),
            })?;
            let found = found.ok_or_else(|| missing_key(path, what))?;
            bytes = found.get().as_bytes();
            raw = Some(found);
        }
        raw.map(|r| RawKey::Json(r.get())).ok_or_else(|| format!("an empty {what} path"))
    }

    /// The key of each of `events`: one UDF call for the batch, or a read per event.
    pub fn read_all(&mut self, events: &[Event], what: &str) -> Vec<KeyResult> {
        if let Some(keys) = self.udf_keys(events, what) {
            return keys;
        }
        events.iter().map(|e| self.read(e, None, what).map_err(|reason| (DeadKind::StepError, reason))).collect()
    }
}

/// A key as read, before it is made bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKey<'e> {
    /// The raw JSON text of a field (see [`key_from_raw`]).
    Json(&'e str),
    /// The event key.
    Bytes(&'e [u8]),
}

impl<'e> RawKey<'e> {
    /// The key's bytes without a copy, when it has no escapes to undo: a
    /// string's text between its quotes, or the event key.
    pub fn plain(&self) -> Option<&'e [u8]> {
        match *self {
            RawKey::Bytes(b) => Some(b),
            RawKey::Json(t) if t.len() >= 2 && t.starts_with('"') && !t.contains('\\') => Some(&t.as_bytes()[1..t.len() - 1]),
            RawKey::Json(_) => None,
        }
    }
}

/// The key in the raw JSON `text` of the member at `path`, or why it is
/// none: a string is its text, a number or boolean its canonical JSON text
/// (1.50 and 1.5 are one key).
pub fn key_from_raw(text: &str, path: &[String], what: &str) -> Result<Vec<u8>, String> {
    let dotted = || path.join(".");
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).map(String::into_bytes).map_err(|e| e.to_string()),
        Some(b'n') => Err(format!("no {what}: field `$.{}` is null", dotted())),
        Some(b'{' | b'[') => Err(format!("{what} `$.{}` is not a string, number or boolean", dotted())),
        _ => serde_json::from_str::<Value>(text).map(|v| v.to_string().into_bytes()).map_err(|e| e.to_string()),
    }
}

/// Why an event whose member at `path` is absent has no key.
pub fn missing_key(path: &[String], what: &str) -> String {
    format!("no {what}: field `$.{}` is missing", path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: &str) -> Event {
        Event::from_value(v.as_bytes().to_vec(), 0)
    }

    #[test]
    fn a_field_key_is_read_at_any_depth_with_reasons_when_absent() {
        let spec = KeySpec::Field(split_path("$.user.id"));
        assert_eq!(spec.read(&event(r#"{"user":{"id":"u7"}}"#), None, "lookup key"), Ok(b"u7".to_vec()));
        assert_eq!(spec.read(&event(r#"{"user":{"id":1.50}}"#), None, "lookup key"), Ok(b"1.5".to_vec()));
        assert_eq!(spec.read(&event(r#"{"user":{}}"#), None, "lookup key"), Err("no lookup key: field `$.user.id` is missing".into()));
        assert_eq!(spec.read(&event(r#"{"user":{"id":null}}"#), None, "join key"), Err("no join key: field `$.user.id` is null".into()));
        assert_eq!(spec.read(&event(r#"{"user":7}"#), None, "join key"), Err("no join key: `$.user.id` is not inside an object".into()));
        assert!(spec.read(&event("[1]"), None, "join key").unwrap_err().starts_with("not a JSON object"));
        assert_eq!(
            spec.read(&event(r#"{"user":{"id":[1]}}"#), None, "join key"),
            Err("join key `$.user.id` is not a string, number or boolean".into())
        );
    }

    #[test]
    fn the_event_key_is_the_key_when_no_field_is_given() {
        let spec = KeySpec::of(None);
        let mut e = event("{}");
        assert_eq!(spec.read(&e, None, "join key"), Err("no join key: the event has no key".into()));
        e.key = Some(b"k".to_vec());
        assert_eq!(spec.read(&e, None, "join key"), Ok(b"k".to_vec()));
    }
}
