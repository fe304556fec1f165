//! A plain tree-walking evaluator over a fully parsed `serde_json::Value`,
//! written from the AST directly (no field indexes, no folding, no
//! borrowing, no short-circuit tricks beyond SQL's): the compiled evaluator
//! must agree with it (the proptest in `tests.rs`). The leaf operations on
//! two values (arithmetic, casts, string functions) are shared.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::ast::{BinOp, Expr, ExprKind, Func, Literal};
use super::compile::string_call;
use super::value::{self, EvalError, Value};

fn of_json(j: &Json) -> Value<'static> {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap()),
        },
        Json::String(s) => Value::Str(Cow::Owned(s.clone())),
        other => Value::Json(Cow::Owned(other.to_string())),
    }
}

/// 3-valued AND / OR / NOT on Option<bool>.
fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    and(a.map(|x| !x), b.map(|x| !x)).map(|x| !x)
}

fn b(v: Option<bool>) -> Value<'static> {
    v.map_or(Value::Null, Value::Bool)
}

pub fn eval(e: &Expr, record: &Json) -> Result<Value<'static>, EvalError> {
    let ev = |x: &Expr| eval(x, record);
    Ok(match &e.kind {
        ExprKind::Column(path) => {
            let mut at = Some(record);
            for seg in path {
                at = at.and_then(|j| j.as_object()).and_then(|o| o.get(seg));
            }
            at.map_or(Value::Null, of_json)
        }
        ExprKind::Literal(l) => match l {
            Literal::Null => Value::Null,
            Literal::Bool(x) => Value::Bool(*x),
            Literal::Int(i) => Value::Int(*i),
            Literal::Float(f) => Value::Float(*f),
            Literal::Str(s) => Value::Str(Cow::Owned(s.clone())),
        },
        ExprKind::Neg(x) => value::negate(ev(x)?)?.into_owned(),
        ExprKind::Not(x) => b(ev(x)?.truth("NOT")?.map(|x| !x)),
        ExprKind::Binary { op: BinOp::And, left, right } => {
            let l = ev(left)?.truth("AND")?;
            if l == Some(false) {
                return Ok(Value::Bool(false));
            }
            b(and(l, ev(right)?.truth("AND")?))
        }
        ExprKind::Binary { op: BinOp::Or, left, right } => {
            let l = ev(left)?.truth("OR")?;
            if l == Some(true) {
                return Ok(Value::Bool(true));
            }
            b(or(l, ev(right)?.truth("OR")?))
        }
        ExprKind::Binary { op: BinOp::Concat, left, right } => value::concat(&[ev(left)?, ev(right)?])?.into_owned(),
        ExprKind::Binary { op, left, right } if op.is_arithmetic() => value::arithmetic(*op, ev(left)?, ev(right)?)?.into_owned(),
        ExprKind::Binary { op, left, right } => value::comparison(*op, &ev(left)?, &ev(right)?)?.into_owned(),
        ExprKind::IsNull { expr, negated } => Value::Bool(ev(expr)?.is_null() != *negated),
        ExprKind::InList { expr, list, negated } => {
            // x IN (a, b) is x = a OR x = b.
            let x = ev(expr)?;
            let mut acc = Some(false);
            for item in list {
                let eq = value::comparison(BinOp::Eq, &x, &ev(item)?)?.truth("IN")?;
                acc = or(acc, eq);
                if acc == Some(true) {
                    break;
                }
            }
            b(acc.map(|a| a != *negated))
        }
        ExprKind::Between { expr, low, high, negated } => {
            let x = ev(expr)?;
            let ge = value::comparison(BinOp::Ge, &x, &ev(low)?)?.truth("BETWEEN")?;
            let le = value::comparison(BinOp::Le, &x, &ev(high)?)?.truth("BETWEEN")?;
            b(and(ge, le).map(|v| v != *negated))
        }
        ExprKind::Like { expr, pattern, negated } => {
            let (x, p) = (ev(expr)?, ev(pattern)?);
            match (value::string(&x, "LIKE")?, value::string(&p, "LIKE")?) {
                (Some(x), Some(p)) => Value::Bool(value::like(x, p) != *negated),
                _ => Value::Null,
            }
        }
        ExprKind::Case { operand, whens, otherwise } => {
            let subject = operand.as_deref().map(ev).transpose()?;
            for (w, t) in whens {
                let hit = match &subject {
                    Some(s) => value::comparison(BinOp::Eq, s, &ev(w)?)?.truth("CASE")?,
                    None => ev(w)?.truth("WHEN")?,
                };
                if hit == Some(true) {
                    return ev(t);
                }
            }
            match otherwise {
                Some(x) => ev(x)?,
                None => Value::Null,
            }
        }
        ExprKind::Cast { expr, to } => value::cast(ev(expr)?, *to)?.into_owned(),
        ExprKind::Call { func, args } => match func {
            Func::Coalesce => {
                for a in args {
                    let v = ev(a)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Value::Null
            }
            Func::If => {
                if ev(&args[0])?.truth("IF")? == Some(true) {
                    ev(&args[1])?
                } else {
                    ev(&args[2])?
                }
            }
            Func::Nullif => {
                let (x, y) = (ev(&args[0])?, ev(&args[1])?);
                if value::comparison(BinOp::Eq, &x, &y)?.truth("NULLIF")? == Some(true) {
                    Value::Null
                } else {
                    x
                }
            }
            Func::Abs => value::abs(ev(&args[0])?)?.into_owned(),
            Func::Floor => value::rounding(ev(&args[0])?, false)?.into_owned(),
            Func::Ceil => value::rounding(ev(&args[0])?, true)?.into_owned(),
            Func::Round => {
                let digits = match args.get(1).map(ev).transpose()? {
                    None => 0,
                    Some(d) => match value::int(&d, "ROUND")? {
                        Some(d) => d,
                        None => return Ok(Value::Null),
                    },
                };
                value::round(ev(&args[0])?, digits)?.into_owned()
            }
            Func::Concat => {
                let vals = args.iter().map(ev).collect::<Result<Vec<_>, _>>()?;
                value::concat(&vals)?.into_owned()
            }
            f => {
                let vals = args.iter().map(ev).collect::<Result<Vec<_>, _>>()?;
                string_call(*f, &vals)?.into_owned()
            }
        },
        ExprKind::Udf { name, .. } => return Err(EvalError(format!("no UDF `{name}` here"))),
    })
}
