//! `filter`: keeps the events whose JSON value meets a condition on its
//! fields; the others are deliberately dropped and counted as filtered.
//!
//! Only the top-level fields the condition names are looked at, in one
//! borrowed pass over the object (`record_schema::members_named`); a nested
//! path descends into that field's raw text alone.

use std::borrow::Cow;
use std::cmp::Ordering;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Operator, StepContext};
use crate::config::locate::JsonPath;
use crate::dead_letter::DeadKind;
use crate::event::Batch;
use crate::record_schema::{member_and_names, members_named};

/// The settings of a `filter` step.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Sources or steps this step reads.
    pub inputs: Vec<String>,
    /// The condition an event must meet to be kept, e.g.
    /// `{"path": "$.status", "op": "eq", "value": "ok"}`, or `all` / `any` /
    /// `not` of conditions. Events that do not meet it are filtered out
    /// (counted, not dead-lettered); an event whose value is not a JSON
    /// object is dead-lettered.
    #[serde(rename = "where")]
    pub condition: Condition,
}

/// A condition on an event's fields.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a condition: {\"path\": \"$.field\", \"op\": \"eq|ne|lt|le|gt|ge|exists|in\", \"value\": ...}, {\"all\": [...]}, {\"any\": [...]} or {\"not\": {...}}"
)]
pub enum Condition {
    /// Compares one field with a value.
    Compare(Comparison),
    /// Every condition holds.
    All(AllOf),
    /// At least one condition holds.
    Any(AnyOf),
    /// The condition does not hold.
    Not(NotOf),
}

/// `{"all": [...]}`: true when every condition is (an empty list is true).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllOf {
    /// The conditions.
    pub all: Vec<Condition>,
}

/// `{"any": [...]}`: true when at least one condition is (an empty list is false).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnyOf {
    /// The conditions.
    pub any: Vec<Condition>,
}

/// `{"not": ...}`: true when the condition is false.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotOf {
    /// The condition negated.
    pub not: Box<Condition>,
}

/// One field compared with a value. A missing field (or a path through a
/// non-object) meets only `ne`; a field that is null meets `eq null` and
/// `ne` anything else.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// The field: `$.status`, or `$.user.country` for a field of a nested object.
    pub path: String,
    /// How the field is compared with `value`.
    pub op: CompareOp,
    /// What the field is compared with: any JSON value for `eq`/`ne`, a
    /// number or a string for `lt`/`le`/`gt`/`ge`, an array of candidates
    /// for `in`, nothing for `exists`.
    #[serde(default)]
    pub value: Value,
}

/// The comparisons of a `filter` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CompareOp {
    /// Equal (numbers by value: 2 equals 2.0).
    Eq,
    /// Not equal (also true when the field is missing).
    Ne,
    /// Less than: numbers by value, strings by their bytes; other types never match.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// The field is present and not null.
    Exists,
    /// Equal to one of the values of the array `value`.
    In,
}

impl FilterConfig {
    /// Problems of the condition, reported at `at` (the step) + their path.
    pub fn check(&self, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
        self.condition.check(&at.key("where"), err);
    }
}

impl Condition {
    pub(crate) fn check(&self, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
        match self {
            Condition::Compare(c) => {
                if parse_path(&c.path).is_none() {
                    err(at.key("path"), format!("`{}` is not a field path such as `$.status`", c.path));
                }
                let problem = match (c.op, &c.value) {
                    (CompareOp::Exists, Value::Null) => None,
                    (CompareOp::Exists, _) => Some("`exists` takes no value"),
                    (CompareOp::In, Value::Array(_)) => None,
                    (CompareOp::In, _) => Some("`in` needs an array of values"),
                    (CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge, Value::Number(_) | Value::String(_)) => None,
                    (CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge, _) => Some("an ordering needs a number or a string"),
                    (CompareOp::Eq | CompareOp::Ne, _) => None,
                };
                if let Some(problem) = problem {
                    err(at.key("value"), problem.into());
                }
            }
            Condition::All(AllOf { all: list }) => {
                for (i, c) in list.iter().enumerate() {
                    c.check(&at.key("all").index(i), err);
                }
            }
            Condition::Any(AnyOf { any: list }) => {
                for (i, c) in list.iter().enumerate() {
                    c.check(&at.key("any").index(i), err);
                }
            }
            Condition::Not(NotOf { not }) => not.check(&at.key("not"), err),
        }
    }
}

/// `$.a.b` as its segments; None when it is not such a path.
fn parse_path(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("$.")?;
    let segments: Vec<String> = rest.split('.').map(String::from).collect();
    (!segments.iter().any(String::is_empty)).then_some(segments)
}

/// A condition ready to evaluate: fields by their index among the
/// top-level names read, values pre-parsed.
#[derive(Debug)]
enum Compiled {
    Compare { field: usize, nested: Vec<String>, op: CompareOp, target: Target },
    All(Vec<Compiled>),
    Any(Vec<Compiled>),
    Not(Box<Compiled>),
}

#[derive(Debug)]
enum Target {
    None,
    Number(f64),
    Text(String),
    Json(Value),
    OneOf(Vec<Value>),
}

/// A filter's condition, compiled once.
#[derive(Debug)]
pub struct Predicate {
    /// The top-level fields the condition reads.
    fields: Vec<String>,
    root: Compiled,
}

/// Why an event could not be evaluated.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl Predicate {
    /// Compiles a checked condition (paths that are not paths never match).
    pub fn new(c: &Condition) -> Self {
        let mut fields = Vec::new();
        let root = compile(c, &mut fields);
        Predicate { fields, root }
    }

    /// Whether the JSON object `value` meets the condition.
    pub fn eval(&self, value: &[u8]) -> Result<bool, Unreadable> {
        let mut found: Vec<Option<&RawValue>> = vec![None; self.fields.len()];
        if let Err(e) = members_named(value, &self.fields, &mut found) {
            let object = value.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            return Err(Unreadable(if object || !e.is_data() {
                format!("malformed JSON: {e}")
            } else {
                "a filter step needs each event's value to be a JSON object".into()
            }));
        }
        Ok(eval(&self.root, &found))
    }
}

fn compile(c: &Condition, fields: &mut Vec<String>) -> Compiled {
    match c {
        Condition::Compare(cmp) => {
            let mut path = parse_path(&cmp.path).unwrap_or_else(|| vec![String::new()]);
            let top = path.remove(0);
            let field = fields.iter().position(|f| *f == top).unwrap_or_else(|| {
                fields.push(top);
                fields.len() - 1
            });
            let target = match (&cmp.op, &cmp.value) {
                (CompareOp::Exists, _) => Target::None,
                (CompareOp::In, Value::Array(values)) => Target::OneOf(values.clone()),
                (_, Value::Number(n)) => Target::Number(n.as_f64().unwrap_or(f64::NAN)),
                (_, Value::String(s)) => Target::Text(s.clone()),
                (_, other) => Target::Json(other.clone()),
            };
            Compiled::Compare { field, nested: path, op: cmp.op, target }
        }
        Condition::All(AllOf { all }) => Compiled::All(all.iter().map(|c| compile(c, fields)).collect()),
        Condition::Any(AnyOf { any }) => Compiled::Any(any.iter().map(|c| compile(c, fields)).collect()),
        Condition::Not(NotOf { not }) => Compiled::Not(Box::new(compile(not, fields))),
    }
}

fn eval(c: &Compiled, found: &[Option<&RawValue>]) -> bool {
    match c {
        Compiled::All(list) => list.iter().all(|c| eval(c, found)),
        Compiled::Any(list) => list.iter().any(|c| eval(c, found)),
        Compiled::Not(c) => !eval(c, found),
        Compiled::Compare { field, nested, op, target } => {
            let mut raw = found[*field];
            for segment in nested {
                // A path through a non-object (or a malformed one) finds nothing.
                raw = raw.and_then(|r| member_and_names(r.get().as_bytes(), segment, None).ok().flatten());
            }
            compare(raw.map(|r| r.get().trim()), *op, target)
        }
    }
}

/// `raw`: the field's JSON text, None when missing.
fn compare(raw: Option<&str>, op: CompareOp, target: &Target) -> bool {
    let Some(raw) = raw else { return op == CompareOp::Ne };
    match op {
        CompareOp::Exists => raw != "null",
        CompareOp::Eq => equals(raw, target),
        CompareOp::Ne => !equals(raw, target),
        CompareOp::In => match target {
            Target::OneOf(values) => values.iter().any(|v| equals(raw, &single(v))),
            _ => false,
        },
        CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge => {
            let ordering = match target {
                Target::Number(n) => number(raw).and_then(|x| x.partial_cmp(n)),
                Target::Text(t) => text(raw).map(|s| (*s).cmp(t.as_str())),
                _ => None,
            };
            match (op, ordering) {
                (_, None) => false,
                (CompareOp::Lt, Some(o)) => o == Ordering::Less,
                (CompareOp::Le, Some(o)) => o != Ordering::Greater,
                (CompareOp::Gt, Some(o)) => o == Ordering::Greater,
                (_, Some(o)) => o != Ordering::Less,
            }
        }
    }
}

/// A candidate of `in` as a target of `eq`.
fn single(v: &Value) -> Target {
    match v {
        Value::Number(n) => Target::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Target::Text(s.clone()),
        other => Target::Json(other.clone()),
    }
}

fn equals(raw: &str, target: &Target) -> bool {
    match target {
        Target::Number(n) => number(raw) == Some(*n),
        Target::Text(t) => text(raw).is_some_and(|s| s == t.as_str()),
        // null, booleans, arrays and objects: parsed only for these.
        Target::Json(v) => serde_json::from_str::<Value>(raw).is_ok_and(|x| json_equals(&x, v)),
        Target::None | Target::OneOf(_) => false,
    }
}

/// JSON equality with numbers compared by value.
fn json_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equals(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equals(v, w)))
        }
        _ => a == b,
    }
}

fn number(raw: &str) -> Option<f64> {
    matches!(raw.as_bytes().first(), Some(b'-' | b'0'..=b'9')).then(|| raw.parse().ok()).flatten()
}

fn text(raw: &str) -> Option<Cow<'_, str>> {
    raw.starts_with('"').then(|| serde_json::from_str::<Cow<str>>(raw).ok()).flatten()
}

/// The `filter` step.
pub struct FilterStep {
    name: String,
    predicate: Predicate,
    filtered: u64,
}

impl FilterStep {
    pub fn new(name: &str, config: &FilterConfig) -> Self {
        FilterStep { name: name.into(), predicate: Predicate::new(&config.condition), filtered: 0 }
    }
}

impl Operator for FilterStep {
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        let mut out = Batch::with_capacity(input.len());
        for (event, origin) in input.events.into_iter().zip(input.origins) {
            match self.predicate.eval(&event.value) {
                Ok(true) => out.push(event, origin),
                Ok(false) => self.filtered += 1,
                Err(Unreadable(reason)) => ctx.refuse(&self.name, None, DeadKind::StepError, reason, origin, event),
            }
        }
        out
    }

    fn take_filtered(&mut self) -> u64 {
        std::mem::take(&mut self.filtered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(v: Value) -> Condition {
        serde_json::from_value(v).unwrap()
    }

    fn holds(c: Value, event: &str) -> Result<bool, Unreadable> {
        Predicate::new(&cond(c)).eval(event.as_bytes())
    }

    fn check(c: Value) -> Vec<String> {
        let mut problems = Vec::new();
        FilterConfig { inputs: vec![], condition: cond(c) }.check(&JsonPath::root(), &mut |at, m| problems.push(format!("{at}: {m}")));
        problems
    }

    #[test]
    fn comparisons() {
        let e = r#"{"status": "ok", "code": 200, "ratio": 0.5, "flag": true, "none": null, "tags": ["a", 1], "user": {"country": "FR", "age": 41}}"#;
        let t = |c: Value| holds(c, e).unwrap();
        assert!(t(json!({"path": "$.status", "op": "eq", "value": "ok"})));
        assert!(!t(json!({"path": "$.status", "op": "eq", "value": "OK"})));
        assert!(t(json!({"path": "$.code", "op": "eq", "value": 200.0})), "numbers compare by value");
        assert!(!t(json!({"path": "$.code", "op": "eq", "value": "200"})), "a string is not a number");
        assert!(t(json!({"path": "$.status", "op": "ne", "value": "error"})));
        assert!(t(json!({"path": "$.missing", "op": "ne", "value": 1})), "a missing field is not equal");
        assert!(!t(json!({"path": "$.missing", "op": "eq", "value": null})), "missing is not null");
        assert!(t(json!({"path": "$.none", "op": "eq", "value": null})));
        assert!(t(json!({"path": "$.flag", "op": "eq", "value": true})));
        assert!(t(json!({"path": "$.tags", "op": "eq", "value": ["a", 1.0]})));
        assert!(t(json!({"path": "$.code", "op": "ge", "value": 200})) && !t(json!({"path": "$.code", "op": "gt", "value": 200})));
        assert!(t(json!({"path": "$.ratio", "op": "lt", "value": 1})) && t(json!({"path": "$.ratio", "op": "le", "value": 0.5})));
        assert!(t(json!({"path": "$.status", "op": "gt", "value": "apple"})), "strings by their bytes");
        assert!(!t(json!({"path": "$.status", "op": "lt", "value": 5})), "mismatched types never order");
        assert!(!t(json!({"path": "$.missing", "op": "lt", "value": 5})));
        assert!(t(json!({"path": "$.status", "op": "exists"})));
        assert!(!t(json!({"path": "$.none", "op": "exists"})) && !t(json!({"path": "$.missing", "op": "exists"})));
        assert!(t(json!({"path": "$.code", "op": "in", "value": [404, 200]})));
        assert!(!t(json!({"path": "$.status", "op": "in", "value": ["error", 1]})));
        assert!(t(json!({"path": "$.user.country", "op": "eq", "value": "FR"})), "nested fields");
        assert!(t(json!({"path": "$.user.age", "op": "gt", "value": 40})));
        assert!(!t(json!({"path": "$.status.x", "op": "exists"})), "a path through a non-object finds nothing");
        assert!(t(json!({"path": "$.code.x", "op": "ne", "value": 1})));
    }

    #[test]
    fn combinations() {
        let e = r#"{"a": 1, "b": "x"}"#;
        let t = |c: Value| holds(c, e).unwrap();
        let a1 = json!({"path": "$.a", "op": "eq", "value": 1});
        let b_y = json!({"path": "$.b", "op": "eq", "value": "y"});
        assert!(!t(json!({"all": [a1, b_y]})));
        assert!(t(json!({"any": [a1, b_y]})));
        assert!(t(json!({"all": [a1, {"not": b_y}]})));
        assert!(t(json!({"all": []})) && !t(json!({"any": []})));
        // Two comparisons of one field read it once.
        let p = Predicate::new(&cond(json!({"all": [a1, {"path": "$.a", "op": "lt", "value": 2}, b_y]})));
        assert_eq!(p.fields, ["a", "b"]);
    }

    #[test]
    fn unreadable_events_are_errors_not_panics() {
        let c = json!({"path": "$.a", "op": "exists"});
        assert_eq!(holds(c.clone(), "[1, 2]").unwrap_err().0, "a filter step needs each event's value to be a JSON object");
        assert_eq!(holds(c.clone(), "\"text\"").unwrap_err().0, "a filter step needs each event's value to be a JSON object");
        assert!(holds(c.clone(), r#"{"a": 1, "b": }"#).unwrap_err().0.starts_with("malformed JSON"), "the whole object is checked");
        assert!(holds(c.clone(), r#"{"a": 1} trailing"#).unwrap_err().0.starts_with("malformed JSON"));
        assert!(holds(c.clone(), "").unwrap_err().0.starts_with("malformed JSON"));
        assert!(holds(c, "\u{0}\u{1}").is_err());
        // Escaped keys are compared unescaped; the last of a repeated name wins.
        assert!(holds(json!({"path": "$.ab", "op": "eq", "value": 2}), r#"{"a\u0062": 1, "ab": 2}"#).unwrap());
    }

    #[test]
    fn conditions_are_checked_with_their_paths() {
        assert!(check(json!({"path": "$.a", "op": "eq", "value": {"x": 1}})).is_empty());
        assert_eq!(check(json!({"path": "a", "op": "exists"})), ["$.where.path: `a` is not a field path such as `$.status`"]);
        assert_eq!(check(json!({"path": "$.a", "op": "exists", "value": 1})), ["$.where.value: `exists` takes no value"]);
        assert_eq!(
            check(json!({"all": [{"path": "$.a", "op": "eq", "value": 1}, {"not": {"path": "$.a..b", "op": "in", "value": 3}}]})),
            ["$.where.all[1].not.path: `$.a..b` is not a field path such as `$.status`", "$.where.all[1].not.value: `in` needs an array of values"]
        );
        assert_eq!(check(json!({"path": "$.a", "op": "lt", "value": null})), ["$.where.value: an ordering needs a number or a string"]);
        assert!(serde_json::from_value::<Condition>(json!({"path": "$.a", "op": "eq", "value": 1, "typo": 1})).is_err());
        assert!(serde_json::from_value::<Condition>(json!({"path": "$.a", "op": "like"})).is_err());
    }
}
