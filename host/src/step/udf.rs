//! A step that computes one field of each JSON event with a UDF function.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{dead_kind, Operator, StepContext};
use crate::dead_letter::DeadKind;
use crate::event::Batch;
use crate::config::UdfNullInput;
use crate::plugin::{Scalar, ScalarType, UdfRunner};

/// One argument of the call: a field of the event or a literal.
#[derive(Clone, Debug, PartialEq)]
pub enum UdfArg {
    /// `$.a.b`: the field at that path (null when missing).
    Field(Vec<String>),
    Literal(Scalar),
}

impl UdfArg {
    /// Reads an argument from pipeline.json: strings starting with `$.` are
    /// field paths, everything else a literal.
    pub fn parse(v: &Value) -> UdfArg {
        match v {
            Value::String(s) if s.starts_with("$.") => UdfArg::Field(s[2..].split('.').map(String::from).collect()),
            other => UdfArg::Literal(json_to_scalar(other)),
        }
    }

    pub(crate) fn eval(&self, obj: &Map<String, Value>) -> Scalar {
        match self {
            UdfArg::Literal(s) => s.clone(),
            UdfArg::Field(path) => {
                let mut cur = obj.get(&path[0]);
                for seg in &path[1..] {
                    cur = cur.and_then(|v| v.get(seg));
                }
                cur.map(json_to_scalar).unwrap_or(Scalar::Null)
            }
        }
    }
}

pub fn json_to_scalar(v: &Value) -> Scalar {
    match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Scalar::Str(s.clone()),
        // Composite values reach a UDF as their JSON text.
        other => Scalar::Str(other.to_string()),
    }
}

pub fn scalar_to_json(s: Scalar) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Float(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        Scalar::Str(s) => Value::String(s),
        Scalar::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

pub struct UdfStep {
    name: String,
    plugin: String,
    function: String,
    args: Vec<UdfArg>,
    output: String,
    runner: UdfRunner,
    /// With `null_input: null`, the parameters a null skips the call for.
    typed: Vec<bool>,
}

impl UdfStep {
    pub fn new(name: &str, plugin: &str, function: &str, args: Vec<UdfArg>, output: &str, runner: UdfRunner) -> Self {
        UdfStep { name: name.into(), plugin: plugin.into(), function: function.into(), args, output: output.into(), runner, typed: Vec::new() }
    }

    /// What a null argument of a typed parameter does (see [`UdfNullInput`]).
    pub fn null_input(mut self, mode: UdfNullInput) -> Self {
        self.typed = match (mode, self.runner.function(&self.function)) {
            (UdfNullInput::Null, Some(f)) => f.params.iter().map(|t| !matches!(t, ScalarType::Any | ScalarType::Null)).collect(),
            _ => Vec::new(),
        };
        self
    }

    /// Whether the row gives null without a call.
    fn skips(&self, row: &[Scalar]) -> bool {
        row.iter().zip(&self.typed).any(|(a, typed)| *typed && matches!(a, Scalar::Null))
    }
}

impl Operator for UdfStep {
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        // Parse every event; those that are not objects are refused here.
        let mut objects = Vec::with_capacity(input.len());
        let mut rows = Vec::with_capacity(input.len());
        let mut kept = Batch::with_capacity(input.len());
        for (event, origin) in input.events.into_iter().zip(input.origins) {
            match serde_json::from_slice::<Value>(&event.value) {
                Ok(Value::Object(obj)) => {
                    rows.push(self.args.iter().map(|a| a.eval(&obj)).collect::<Vec<_>>());
                    objects.push(obj);
                    kept.push(event, origin);
                }
                _ => ctx.refuse(
                    &self.name,
                    Some(&self.plugin),
                    DeadKind::StepError,
                    "a udf step needs each event's value to be a JSON object".into(),
                    origin,
                    event,
                ),
            }
        }
        let results = if self.typed.is_empty() {
            self.runner.call(&self.function, &rows)
        } else {
            // Rows a null argument skips get null; the others are called.
            let skipped: Vec<bool> = rows.iter().map(|r| self.skips(r)).collect();
            let called: Vec<Vec<Scalar>> = rows.into_iter().zip(&skipped).filter(|(_, s)| !**s).map(|(r, _)| r).collect();
            let mut answers = self.runner.call(&self.function, &called).into_iter();
            skipped.iter().map(|s| if *s { Ok(Scalar::Null) } else { answers.next().expect("one result per called row") }).collect()
        };
        let mut out = Batch::with_capacity(kept.len());
        for (((mut event, origin), mut obj), result) in kept.events.into_iter().zip(kept.origins).zip(objects).zip(results) {
            match result {
                Ok(v) => {
                    obj.insert(self.output.clone(), scalar_to_json(v));
                    event.value = serde_json::to_vec(&obj).unwrap_or_default();
                    out.push(event, origin);
                }
                Err(f) => ctx.refuse(&self.name, Some(&self.plugin), dead_kind(f.kind), f.message, origin, event),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_read_fields_and_literals() {
        let obj = json!({"a": {"b": 3}, "s": "x"});
        let obj = obj.as_object().unwrap();
        assert_eq!(UdfArg::parse(&json!("$.a.b")).eval(obj), Scalar::Int(3));
        assert_eq!(UdfArg::parse(&json!("$.s")).eval(obj), Scalar::Str("x".into()));
        assert_eq!(UdfArg::parse(&json!("$.missing.x")).eval(obj), Scalar::Null);
        assert_eq!(UdfArg::parse(&json!(2.5)).eval(obj), Scalar::Float(2.5));
        assert_eq!(UdfArg::parse(&json!("lit")).eval(obj), Scalar::Str("lit".into()));
        assert_eq!(scalar_to_json(Scalar::Float(f64::NAN)), Value::Null);
    }
}
