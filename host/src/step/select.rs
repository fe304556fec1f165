//! `select`: a SQL WHERE and projection on JSON events, natively (what a
//! `streamhost sql` job's `SELECT ... WHERE ...` compiles to).
//!
//! Expressions are parsed and compiled once (`sql::expr`); each event is
//! read in one borrowed pass over its top level (only the members the
//! expressions name, or all of them for `*`), and the output is written
//! from the input's raw text for columns that are plain copies of a field.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Operator, StepContext};
use crate::config::locate::JsonPath;
use crate::dead_letter::DeadKind;
use crate::event::Batch;
use crate::record_schema::{members_named, object_members};
use crate::sql::expr::{parse_expr, typecheck, Compiled, Expr, ExprError, ExprKind, Fields, Schema, SqlType};

/// The settings of a `select` step: keeps the events for which `where`
/// is TRUE and writes each as a JSON object of `columns`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// Sources or steps this step reads.
    pub inputs: Vec<String>,
    /// A SQL boolean expression on the event's fields, e.g.
    /// `status = 'ok' AND CAST(dur AS BIGINT) > 10`. Events for which it is
    /// FALSE or NULL are filtered out (counted); an event it cannot be
    /// evaluated on (e.g. `CAST('x' AS BIGINT)`) is dead-lettered. Absent:
    /// every event is kept.
    #[serde(default, rename = "where")]
    pub condition: Option<String>,
    /// The output's fields, in order. Absent: the event is kept unchanged.
    #[serde(default)]
    pub columns: Option<Vec<SelectColumn>>,
}

/// One field of a `select` step's output.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectColumn {
    /// The output field's name; `*` (without `expr`) stands for every
    /// top-level field of the input, in order, except those another column
    /// names.
    pub name: String,
    /// A SQL expression on the event's fields (`user.id`, `dur / 1000.0`,
    /// `"odd-name"`, `UPPER(country)`). Absent: the input field `name`.
    #[serde(default)]
    pub expr: Option<String>,
    /// With `*` only: input fields it leaves out too (a SQL job's UDF
    /// results, `__domain_0`, which the projection reads but does not show).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

impl SelectConfig {
    /// Problems of the expressions, reported at `at` (the step) + their
    /// path, with the place inside the expression's text.
    pub fn check(&self, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
        let mut fields = Fields::default();
        if let Some(w) = &self.condition {
            match build(w, &mut fields) {
                Ok((_, SqlType::Boolean | SqlType::Any | SqlType::Null)) => {}
                Ok((_, t)) => err(at.key("where"), format!("`where` must be a boolean expression, not {t}")),
                Err(e) => err(at.key("where"), located(w, &e)),
            }
        }
        let mut names = HashSet::new();
        for (i, c) in self.columns.iter().flatten().enumerate() {
            let at = at.key("columns").index(i);
            if c.name.is_empty() {
                err(at.key("name"), "a column name must not be empty".into());
            } else if !names.insert(c.name.as_str()) {
                err(at.key("name"), format!("another column is named `{}` too", c.name));
            }
            match (&*c.name, &c.expr) {
                ("*", Some(_)) => err(at.key("expr"), "`*` stands for the input's fields: it takes no `expr`".into()),
                ("*", None) => {}
                (_, Some(text)) => {
                    if let Err(e) = build(text, &mut fields) {
                        err(at.key("expr"), located(text, &e));
                    }
                }
                (_, None) => {}
            }
            if c.name != "*" && !c.except.is_empty() {
                err(at.key("except"), "only `*` takes `except`".into());
            }
        }
    }
}

/// A message with where in the expression text the problem is.
fn located(text: &str, e: &ExprError) -> String {
    let place = match (text.contains('\n'), e.span.start.line) {
        (_, 0) => String::new(),
        (false, _) => format!(" (column {} of the expression)", e.span.start.column),
        (true, line) => format!(" (line {line}, column {} of the expression)", e.span.start.column),
    };
    format!("{}{place}: `{}`", e.message, text.trim())
}

/// Parses, type-checks (events are schemaless: every field is ANY, no
/// UDF) and compiles one expression.
fn build(text: &str, fields: &mut Fields) -> Result<(Compiled, SqlType), ExprError> {
    let e: Expr = parse_expr(text)?;
    let t = typecheck(&e, &Schema::open())?;
    Ok((Compiled::new(&e, fields)?, t))
}

enum Column {
    /// Every input field not named by another column.
    Star,
    /// `"name":` (escaped) and the value.
    Value { name: String, key: Vec<u8>, value: Compiled },
}

/// The `select` step.
pub struct SelectStep {
    name: String,
    condition: Option<Compiled>,
    /// None: the event is kept unchanged.
    columns: Option<Vec<Column>>,
    /// Column names `*` leaves out.
    named: HashSet<String>,
    star: bool,
    fields: Fields,
    filtered: u64,
}

/// What became of one event.
enum Outcome {
    Keep(Option<Vec<u8>>),
    Filtered,
    Dead(String),
}

impl SelectStep {
    /// Builds a checked config (an expression that does not build here
    /// was reported by [`SelectConfig::check`]; it is an error again).
    pub fn new(name: &str, c: &SelectConfig) -> Result<Self, String> {
        let mut fields = Fields::default();
        let condition = match &c.condition {
            Some(w) => Some(build(w, &mut fields).map_err(|e| format!("`where`: {}", located(w, &e)))?.0),
            None => None,
        };
        let columns = match &c.columns {
            None => None,
            Some(cols) => Some(
                cols.iter()
                    .map(|col| match (&*col.name, &col.expr) {
                        ("*", None) => Ok(Column::Star),
                        (name, expr) => {
                            let fallback;
                            let text = match expr {
                                Some(t) => t.as_str(),
                                None => {
                                    fallback = Expr::new(ExprKind::Column(vec![name.to_string()])).to_sql();
                                    fallback.as_str()
                                }
                            };
                            let value = build(text, &mut fields).map_err(|e| format!("column `{name}`: {}", located(text, &e)))?.0;
                            let mut key = serde_json::to_vec(name).map_err(|e| e.to_string())?;
                            key.push(b':');
                            Ok(Column::Value { name: name.to_string(), key, value })
                        }
                    })
                    .collect::<Result<Vec<_>, String>>()?,
            ),
        };
        let star = columns.iter().flatten().any(|c| matches!(c, Column::Star));
        let named = c.columns.iter().flatten().flat_map(|c| if c.name == "*" { c.except.clone() } else { vec![c.name.clone()] }).collect();
        Ok(SelectStep { name: name.into(), condition, columns, named, star, fields, filtered: 0 })
    }

    /// The output of one event's value: its new value (None: unchanged),
    /// filtered, or why it cannot be evaluated.
    fn select<'a>(&self, value: &'a [u8], found: &mut Vec<Option<&'a RawValue>>) -> Outcome {
        found.clear();
        found.resize(self.fields.names.len(), None);
        // With `*` every member is needed: one pass gives them all.
        let members = if self.star {
            match object_members(value, "a select step") {
                Ok(m) => {
                    for (k, v) in &m.0 {
                        if let Some(i) = self.fields.names.iter().position(|n| n == k) {
                            found[i] = Some(*v);
                        }
                    }
                    Some(m)
                }
                Err(reason) => return Outcome::Dead(reason),
            }
        } else {
            if let Err(e) = members_named(value, &self.fields.names, found) {
                let object = value.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
                return Outcome::Dead(if object || !e.is_data() {
                    format!("malformed JSON: {e}")
                } else {
                    "a select step needs each event's value to be a JSON object".into()
                });
            }
            None
        };
        if let Some(c) = &self.condition {
            match c.eval(found).and_then(|v| v.truth("where")) {
                Ok(Some(true)) => {}
                Ok(_) => return Outcome::Filtered,
                Err(e) => return Outcome::Dead(format!("where: {e}")),
            }
        }
        let Some(columns) = &self.columns else { return Outcome::Keep(None) };
        let mut out = Vec::with_capacity(value.len() + 16);
        out.push(b'{');
        for col in columns {
            match col {
                Column::Star => {
                    for (k, v) in members.iter().flat_map(|m| &m.0) {
                        if self.named.contains(&**k) {
                            continue;
                        }
                        if out.len() > 1 {
                            out.push(b',');
                        }
                        let _ = serde_json::to_writer(&mut out, &**k);
                        out.push(b':');
                        out.extend_from_slice(v.get().as_bytes());
                    }
                }
                Column::Value { name, key, value } => {
                    if out.len() > 1 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    if let Some((field, nested)) = value.as_column() {
                        // A plain copy: the input's text as it is.
                        let mut raw = found[field];
                        for seg in nested {
                            raw = raw.and_then(|r| crate::record_schema::member_and_names(r.get().as_bytes(), seg, None).ok().flatten());
                        }
                        match raw {
                            Some(r) => out.extend_from_slice(r.get().as_bytes()),
                            None => out.extend_from_slice(b"null"),
                        }
                        continue;
                    }
                    match value.eval(found) {
                        Ok(v) => v.write_json(&mut out),
                        Err(e) => return Outcome::Dead(format!("column `{name}`: {e}")),
                    }
                }
            }
        }
        out.push(b'}');
        Outcome::Keep(Some(out))
    }
}

impl Operator for SelectStep {
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        // One pass borrowing the batch, then one moving its events.
        let outcomes: Vec<Outcome> = {
            let mut found = Vec::with_capacity(self.fields.names.len());
            input.events.iter().map(|e| self.select(&e.value, &mut found)).collect()
        };
        let mut out = Batch::with_capacity(input.len());
        for ((mut event, origin), outcome) in input.events.into_iter().zip(input.origins).zip(outcomes) {
            match outcome {
                Outcome::Keep(value) => {
                    if let Some(v) = value {
                        event.value = v;
                    }
                    out.push(event, origin);
                }
                Outcome::Filtered => self.filtered += 1,
                Outcome::Dead(reason) => ctx.refuse(&self.name, None, DeadKind::StepError, reason, origin, event),
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

    fn config(v: serde_json::Value) -> SelectConfig {
        let mut v = v;
        v["inputs"] = json!(["in"]);
        serde_json::from_value(v).unwrap()
    }

    fn select(c: serde_json::Value, event: &str) -> Result<Option<String>, String> {
        let step = SelectStep::new("s", &config(c)).unwrap();
        match step.select(event.as_bytes(), &mut Vec::new()) {
            Outcome::Keep(v) => Ok(Some(v.map_or_else(|| event.to_string(), |v| String::from_utf8(v).unwrap()))),
            Outcome::Filtered => Ok(None),
            Outcome::Dead(reason) => Err(reason),
        }
    }

    fn problems(c: serde_json::Value) -> Vec<String> {
        let mut out = Vec::new();
        config(c).check(&JsonPath::root(), &mut |at, m| out.push(format!("{at}: {m}")));
        out
    }

    #[test]
    fn filters_and_projects() {
        let c = json!({
            "where": "status = 'ok' AND CAST(dur AS BIGINT) > 10",
            "columns": [{"name": "uid", "expr": "user.id"}, {"name": "dur_s", "expr": "dur / 1000.0"}, {"name": "status"}, {"name": "big", "expr": "dur > 100"}]
        });
        let e = r#"{"status": "ok", "dur": "1500", "user": {"id": 1.50, "x": [1]}}"#;
        assert_eq!(select(c.clone(), e).unwrap_err(), "column `dur_s`: `/` needs numbers, not a string and a double");
        let e = r#"{"status": "ok", "dur": 1500, "user": {"id": 1.50, "x": [1]}}"#;
        assert_eq!(select(c.clone(), e).unwrap().unwrap(), r#"{"uid":1.50,"dur_s":1.5,"status":"ok","big":true}"#, "copies keep their text");
        assert_eq!(select(c.clone(), r#"{"status": "bad", "dur": 1500}"#).unwrap(), None);
        assert_eq!(select(c.clone(), r#"{"status": "ok"}"#).unwrap(), None, "NULL is not TRUE");
        assert_eq!(select(c.clone(), r#"{"status": "ok", "dur": "x"}"#).unwrap_err(), "where: cannot cast 'x' to BIGINT");
        assert_eq!(select(c.clone(), r#"[1]"#).unwrap_err(), "a select step needs each event's value to be a JSON object");
        assert!(select(c, r#"{"status": "ok""#).unwrap_err().starts_with("malformed JSON"));
    }

    #[test]
    fn star_and_unchanged() {
        let e = r#"{"a": 1, "b": "x", "c": {"d": 2}}"#;
        assert_eq!(select(json!({"columns": [{"name": "*"}, {"name": "e", "expr": "c.d * 2"}]}), e).unwrap().unwrap(), r#"{"a":1,"b":"x","c":{"d": 2},"e":4}"#);
        assert_eq!(select(json!({"columns": [{"name": "b", "expr": "UPPER(b)"}, {"name": "*"}]}), e).unwrap().unwrap(), r#"{"b":"X","a":1,"c":{"d": 2}}"#, "a named column replaces the input's");
        assert_eq!(select(json!({"columns": [{"name": "*", "except": ["a", "zz"]}, {"name": "e", "expr": "a + 1"}]}), e).unwrap().unwrap(), r#"{"b":"x","c":{"d": 2},"e":2}"#, "`except` leaves input fields out of `*`");
        assert_eq!(select(json!({"where": "a = 1"}), e).unwrap().unwrap(), e, "no columns: unchanged");
        assert_eq!(select(json!({"columns": [{"name": "z", "expr": "missing"}]}), e).unwrap().unwrap(), r#"{"z":null}"#);
        assert_eq!(select(json!({"columns": [{"name": "*"}]}), "[]").unwrap_err(), "a select step needs each event's value to be a JSON object");
    }

    #[test]
    fn settings_are_checked_with_places() {
        assert_eq!(problems(json!({"where": "a = 1 AND", "columns": [{"name": "x", "expr": "nope(a)"}, {"name": "x", "expr": "a"}, {"name": "*", "expr": "a"}]})), [
            "$.where: Expected: an expression, found: EOF (column 10 of the expression): `a = 1 AND`",
            "$.columns[0].expr: unknown function `nope` (column 1 of the expression): `nope(a)`",
            "$.columns[1].name: another column is named `x` too",
            "$.columns[2].expr: `*` stands for the input's fields: it takes no `expr`",
        ]);
        assert!(problems(json!({"where": "a + 1"})).is_empty(), "ANY may be a boolean at run time");
        assert_eq!(problems(json!({"where": "1 + 1"})), ["$.where: `where` must be a boolean expression, not BIGINT"]);
        assert_eq!(problems(json!({"columns": [{"name": ""}]})), ["$.columns[0].name: a column name must not be empty"]);
    }

    use proptest::prelude::*;

    proptest::proptest! {
        /// Whatever the record and the columns, the output is one JSON
        /// object holding each column's value (copies equal to the input's
        /// field, `*` the fields no column names).
        #[test]
        fn output_is_the_columns_of_the_record(
            record in proptest::collection::btree_map("[a-c]|x y|\"q", proptest::prop_oneof![
                proptest::strategy::Just(json!(null)), proptest::num::i64::ANY.prop_map(|i| json!(i)),
                "[a-z\"\\\n é]{0,6}".prop_map(|s| json!(s)), proptest::strategy::Just(json!({"n": [1, {"m": "\u{0}"}]})),
                proptest::num::f64::NORMAL.prop_map(|f| json!(f)),
            ], 0..5),
            names in proptest::collection::vec("[a-c]|x y|\"q", 0..4),
            star in proptest::bool::ANY,
        ) {
            let mut cols: Vec<serde_json::Value> = Vec::new();
            let mut seen = HashSet::new();
            for n in names.iter().filter(|n| seen.insert(n.to_string())) {
                cols.push(json!({"name": n}));
            }
            cols.push(json!({"name": "len", "expr": "CHAR_LENGTH(CAST(a AS STRING))"}));
            if star {
                cols.push(json!({"name": "*"}));
            }
            let text = serde_json::to_string(&record).unwrap();
            let got = select(json!({"columns": cols}), &text).unwrap().unwrap();
            let got: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&got).unwrap();
            // Copies compared as serde_json reads them (it reads some doubles
            // a last digit off: both sides go through it).
            let copied: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
            let mut want = serde_json::Map::new();
            for n in seen.iter() {
                want.insert(n.clone(), copied.get(n).cloned().unwrap_or(json!(null)));
            }
            let len = record.get("a").filter(|v| !v.is_null()).map(|v| match v {
                serde_json::Value::String(s) => s.chars().count(),
                other => other.to_string().chars().count(),
            });
            want.insert("len".into(), json!(len));
            if star {
                for (k, v) in &copied {
                    if !seen.contains(k) && k != "len" {
                        want.insert(k.clone(), v.clone());
                    }
                }
            }
            prop_assert_eq!(got, want);
        }
    }

    /// `select` (a WHERE + a 4-column projection, then with 2 computed
    /// columns) keeps exactly the records the `filter` + `project` steps keep,
    /// and prints each one's events/s on one thread (a figure, not asserted).
    /// More records for a steadier figure: `STREAMHOST_SELECT_RECORDS=100000
    /// cargo test --release -p streamhost --lib select_vs_filter_project -- --nocapture`
    #[test]
    fn select_vs_filter_project() {
        let n: i64 = std::env::var("STREAMHOST_SELECT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
        use super::super::filter::Predicate;
        use super::super::{Condition, ProjectConfig, ProjectStep};
        let records: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"ts":{},"status":"{}","user":{{"id":"u{}","country":"fr"}},"dur":{},"url":"https://example.com/p/{}","ua":"Mozilla/5.0 (X11; Linux x86_64)","ip":"10.0.{}.{}","bytes":{},"tags":["a","b"],"ref":null}}"#,
                    1_700_000_000_000i64 + i,
                    if i % 10 == 0 { "error" } else { "ok" },
                    i % 1000,
                    i % 5000,
                    i,
                    i % 256,
                    i % 199,
                    i * 7
                )
                .into_bytes()
            })
            .collect();
        let bytes: usize = records.iter().map(Vec::len).sum();
        let time = |label: &str, f: &mut dyn FnMut(&[Vec<u8>]) -> usize| {
            let mut best = f64::MAX;
            let mut kept = 0;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                kept = f(&records);
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("{label:<42} {:>6.2} M events/s  ({kept} kept of {}, {:.0} B/event)", records.len() as f64 / best / 1e6, records.len(), bytes as f64 / records.len() as f64);
            kept
        };
        let cond: Condition = serde_json::from_value(json!({"path": "$.status", "op": "eq", "value": "ok"})).unwrap();
        let predicate = Predicate::new(&cond);
        let project = ProjectStep::new("p", &serde_json::from_value::<ProjectConfig>(json!({"inputs": ["f"], "fields": ["ts", "user", "dur", "url"]})).unwrap());
        let a = time("filter + project (4 fields)", &mut |rs| rs.iter().filter(|r| predicate.eval(r).unwrap() && !project.project(r).unwrap().is_empty()).count());
        let select = SelectStep::new("s", &config(json!({"where": "status = 'ok'", "columns": [{"name": "ts"}, {"name": "user"}, {"name": "dur"}, {"name": "url"}]}))).unwrap();
        // `found` is reused across a batch, as `process_batch` does.
        let b = time("select (WHERE + 4 copied columns)", &mut |rs| {
            let mut found = Vec::new();
            rs.iter().filter(|r| matches!(select.select(r, &mut found), Outcome::Keep(Some(_)))).count()
        });
        assert_eq!(a, b);
        assert_eq!(a as i64, n - (n + 9) / 10, "every 10th record is an error");
        let computed = SelectStep::new(
            "s",
            &config(json!({"where": "status = 'ok' AND dur >= 0", "columns": [{"name": "ts"}, {"name": "uid", "expr": "user.id"}, {"name": "dur_s", "expr": "dur / 1000.0"}, {"name": "country", "expr": "UPPER(user.country)"}]})),
        )
        .unwrap();
        let c = time("select (WHERE + 4 columns, 2 computed)", &mut |rs| {
            let mut found = Vec::new();
            rs.iter().filter(|r| matches!(computed.select(r, &mut found), Outcome::Keep(Some(_)))).count()
        });
        assert_eq!(a, c);
    }
}
