//! `SET 'key' = value` statements → the pipeline's top-level fields:
//! `name`, `dead_letter.*`, `settings.*` (dotted keys nest), and Flink's
//! `parallelism.default` for `settings.parallelism`.

use serde_json::{json, Map, Value};

use super::error::SqlError;
use super::tokens::{SetDecl, SetValue};

/// Writes each SET into `pipeline` (the compiled pipeline.json's object).
pub fn apply(pipeline: &mut Map<String, Value>, sets: &[SetDecl]) -> Result<(), Vec<SqlError>> {
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in sets {
        let key = if s.key == "parallelism.default" { "settings.parallelism" } else { s.key.as_str() };
        if seen.contains(&key) {
            errors.push(SqlError::new(s.key_span, format!("`{}` is set twice", s.key)));
            continue;
        }
        seen.push(key);
        let path: Vec<&str> = key.split('.').collect();
        let allowed = match path[..] {
            ["name"] => true,
            ["dead_letter" | "settings", _, ..] => path.iter().all(|p| !p.is_empty()),
            _ => false,
        };
        if !allowed {
            errors.push(SqlError::new(
                s.key_span,
                format!("unknown setting `{}`: SET takes `name`, `parallelism.default`, `dead_letter.<field>` and `settings.<field>` (pipeline.json's names, dotted)", s.key),
            ));
            continue;
        }
        if let Err(why) = put(pipeline, &path, value(&s.value)) {
            errors.push(SqlError::new(s.key_span, why));
        }
    }
    // A dead-letter file named without its type.
    if let Some(Value::Object(d)) = pipeline.get_mut("dead_letter") {
        d.entry("type").or_insert_with(|| json!("file"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The JSON value of a SET: numbers and TRUE/FALSE as such, and a quoted
/// whole number or `'true'`/`'false'` too (Flink's SET quotes every value).
fn value(v: &SetValue) -> Value {
    match v {
        SetValue::Bool(b) => json!(b),
        SetValue::Number(n) => n.parse::<i64>().map(Value::from).ok().or_else(|| n.parse::<f64>().ok().map(Value::from)).unwrap_or_else(|| json!(n)),
        SetValue::Text(t) => match t.as_str() {
            "true" => json!(true),
            "false" => json!(false),
            _ => t.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(t)),
        },
    }
}

fn put(map: &mut Map<String, Value>, path: &[&str], v: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("a key has a name");
    let mut at = map;
    for p in parents {
        let next = at.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        at = next.as_object_mut().ok_or_else(|| format!("`{p}` is already set to a value, not an object"))?;
    }
    if at.get(*last).is_some_and(Value::is_object) {
        return Err(format!("`{last}` already holds settings: set its fields instead"));
    }
    at.insert(last.to_string(), v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::tokenizer::Span;

    fn set(key: &str, value: SetValue) -> SetDecl {
        SetDecl { key: key.into(), key_span: Span::empty(), value, value_span: Span::empty() }
    }

    #[test]
    fn keys_nest_and_values_take_their_types() {
        let mut p = Map::new();
        apply(
            &mut p,
            &[
                set("parallelism.default", SetValue::Text("2".into())),
                set("settings.state.dir", SetValue::Text("out/state".into())),
                set("settings.checkpoint.interval_ms", SetValue::Number("5000".into())),
                set("dead_letter.path", SetValue::Text("out/dead.jsonl".into())),
                set("name", SetValue::Text("samples".into())),
            ],
        )
        .unwrap();
        assert_eq!(
            Value::Object(p),
            json!({"name": "samples", "settings": {"parallelism": 2, "state": {"dir": "out/state"}, "checkpoint": {"interval_ms": 5000}},
                   "dead_letter": {"type": "file", "path": "out/dead.jsonl"}})
        );
    }

    #[test]
    fn unknown_twice_and_conflicting_keys_are_refused() {
        let mut p = Map::new();
        let e = apply(
            &mut p,
            &[
                set("sources.x", SetValue::Bool(true)),
                set("settings.parallelism", SetValue::Number("1".into())),
                set("parallelism.default", SetValue::Number("2".into())),
                set("settings.parallelism.x", SetValue::Number("2".into())),
            ],
        )
        .unwrap_err();
        let messages: Vec<String> = e.iter().map(|e| e.message.clone()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("unknown setting `sources.x`"));
        assert!(messages[1].contains("set twice"));
        assert!(messages[2].contains("not an object"));
    }
}
