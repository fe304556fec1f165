//! `project`: keeps or drops top-level fields of JSON events and renames
//! them. The output is written from the input's raw member texts (one
//! borrowed pass, values copied as they are, never re-serialised).

use std::collections::{BTreeMap, HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Operator, StepContext};
use crate::config::locate::JsonPath;
use crate::dead_letter::DeadKind;
use crate::event::Batch;
use crate::record_schema::object_members;

/// The settings of a `project` step: `fields` (or `drop`) choose the
/// top-level fields kept, then `rename` renames some of them. Fields keep
/// their order.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Sources or steps this step reads.
    pub inputs: Vec<String>,
    /// The top-level fields kept; the others are removed (default: all are
    /// kept). A field listed but missing in an event is simply absent.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Top-level fields removed (instead of listing those kept in `fields`).
    #[serde(default)]
    pub drop: Vec<String>,
    /// Fields renamed, old name to new name. A renamed field replaces a field
    /// of the event that already has its new name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

impl ProjectConfig {
    /// Problems of the settings, reported at `at` (the step) + their path.
    pub fn check(&self, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
        if self.fields.is_none() && self.drop.is_empty() && self.rename.is_empty() {
            err(at.clone(), "a project step needs `fields`, `drop` or `rename`".into());
        }
        if self.fields.is_some() && !self.drop.is_empty() {
            err(at.key("drop"), "give the fields kept (`fields`) or those removed (`drop`), not both".into());
        }
        let names = self.fields.iter().flatten().map(|f| ("fields", f)).chain(self.drop.iter().map(|f| ("drop", f)));
        for (i, (list, name)) in names.enumerate() {
            if name.is_empty() {
                let i = if list == "fields" { i } else { i - self.fields.as_ref().map_or(0, Vec::len) };
                err(at.key(list).index(i), "a field name must not be empty".into());
            }
        }
        let mut targets = HashSet::new();
        for (old, new) in &self.rename {
            let at = at.key("rename").key(old);
            if new.is_empty() {
                err(at.clone(), "a field name must not be empty".into());
            }
            if !targets.insert(new) {
                err(at.clone(), format!("another field is renamed to `{new}` too"));
            }
            if self.fields.as_ref().is_some_and(|f| !f.contains(old)) {
                err(at.clone(), format!("`{old}` is not one of the `fields` kept"));
            }
            if self.drop.contains(old) {
                err(at, format!("`{old}` is dropped"));
            }
        }
    }
}

/// The `project` step.
pub struct ProjectStep {
    name: String,
    keep: Option<HashSet<String>>,
    drop: HashSet<String>,
    rename: HashMap<String, String>,
    /// New names, to drop an event's own field a renamed one replaces.
    targets: HashSet<String>,
}

impl ProjectStep {
    pub fn new(name: &str, c: &ProjectConfig) -> Self {
        ProjectStep {
            name: name.into(),
            keep: c.fields.as_ref().map(|f| f.iter().cloned().collect()),
            drop: c.drop.iter().cloned().collect(),
            rename: c.rename.iter().map(|(o, n)| (o.clone(), n.clone())).collect(),
            targets: c.rename.values().cloned().collect(),
        }
    }

    fn kept(&self, name: &str) -> bool {
        self.keep.as_ref().is_none_or(|k| k.contains(name)) && !self.drop.contains(name)
    }

    /// The projected object, or why `value` is not one.
    pub fn project(&self, value: &[u8]) -> Result<Vec<u8>, String> {
        let m = object_members(value, "a project step")?;
        // New names taken by a field of this event that is renamed.
        let taken: Vec<&str> = if self.targets.is_empty() {
            Vec::new()
        } else {
            m.0.iter().filter(|(k, _)| self.kept(k)).filter_map(|(k, _)| self.rename.get(&**k).map(String::as_str)).collect()
        };
        let mut out = Vec::with_capacity(value.len());
        out.push(b'{');
        for (k, v) in &m.0 {
            if !self.kept(k) {
                continue;
            }
            let name: &str = match self.rename.get(&**k) {
                Some(new) => new.as_str(),
                None if taken.contains(&&**k) => continue,
                None => &**k,
            };
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, name).map_err(|e| e.to_string())?;
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        Ok(out)
    }
}

impl Operator for ProjectStep {
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        let mut out = Batch::with_capacity(input.len());
        for (mut event, origin) in input.events.into_iter().zip(input.origins) {
            match self.project(&event.value) {
                Ok(value) => {
                    event.value = value;
                    out.push(event, origin);
                }
                Err(reason) => ctx.refuse(&self.name, None, DeadKind::StepError, reason, origin, event),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: serde_json::Value) -> ProjectConfig {
        let mut v = v;
        v["inputs"] = json!(["in"]);
        serde_json::from_value(v).unwrap()
    }

    fn project(c: serde_json::Value, event: &str) -> Result<String, String> {
        ProjectStep::new("p", &config(c)).project(event.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn keeps_drops_and_renames_in_order() {
        let e = r#"{"a": 1, "b": {"x": [1, 2]}, "c": "t\"q", "d": null}"#;
        assert_eq!(project(json!({"fields": ["c", "a", "z"]}), e).unwrap(), r#"{"a":1,"c":"t\"q"}"#);
        assert_eq!(project(json!({"drop": ["b", "d"]}), e).unwrap(), r#"{"a":1,"c":"t\"q"}"#);
        assert_eq!(project(json!({"rename": {"a": "A", "b": "new\"name"}}), e).unwrap(), r#"{"A":1,"new\"name":{"x": [1, 2]},"c":"t\"q","d":null}"#);
        assert_eq!(project(json!({"fields": ["a", "b"], "rename": {"b": "a"}}), e).unwrap(), r#"{"a":{"x": [1, 2]}}"#, "the renamed field replaces");
        assert_eq!(project(json!({"rename": {"zz": "a"}}), e).unwrap(), r#"{"a":1,"b":{"x": [1, 2]},"c":"t\"q","d":null}"#, "only when present");
        assert_eq!(project(json!({"fields": []}), e).unwrap(), "{}");
        assert_eq!(project(json!({"rename": {"a\u{0062}": "x"}}), r#"{"a\u0062": 1}"#).unwrap(), r#"{"x":1}"#);
    }

    #[test]
    fn non_objects_are_errors() {
        let c = json!({"fields": ["a"]});
        assert_eq!(project(c.clone(), "[1]").unwrap_err(), "a project step needs each event's value to be a JSON object");
        assert!(project(c.clone(), r#"{"a": }"#).unwrap_err().starts_with("malformed JSON"));
        assert!(project(c, "").unwrap_err().starts_with("malformed JSON"));
    }

    #[test]
    fn settings_are_checked() {
        let problems = |c: serde_json::Value| {
            let mut out = Vec::new();
            config(c).check(&JsonPath::root(), &mut |at, m| out.push(format!("{at}: {m}")));
            out
        };
        assert_eq!(problems(json!({})), ["$: a project step needs `fields`, `drop` or `rename`"]);
        assert_eq!(problems(json!({"fields": ["a"], "drop": ["b"]})), ["$.drop: give the fields kept (`fields`) or those removed (`drop`), not both"]);
        assert_eq!(problems(json!({"fields": ["a", ""]})), ["$.fields[1]: a field name must not be empty"]);
        assert_eq!(
            problems(json!({"fields": ["a"], "rename": {"a": "x", "b": "x"}})),
            ["$.rename.b: another field is renamed to `x` too", "$.rename.b: `b` is not one of the `fields` kept"]
        );
        assert_eq!(problems(json!({"drop": ["a"], "rename": {"a": "b"}})), ["$.rename.a: `a` is dropped"]);
    }
}
