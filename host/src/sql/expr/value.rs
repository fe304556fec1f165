//! Run-time values and the scalar operations on them, shared by the
//! compiled evaluator and the reference one. Semantics (docs/select-step.md):
//! NULL in, NULL out; integer overflow, division by zero, a failed CAST and
//! an operation on the wrong kind of value are errors (the row is
//! dead-lettered), never a silent wrong value.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::value::RawValue;

use super::ast::BinOp;
use super::types::SqlType;

/// A value during evaluation: borrowed from the record where it can be.
#[derive(Clone, Debug)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// Always finite.
    Float(f64),
    Str(Cow<'a, str>),
    /// A JSON object or array, as its raw text.
    Json(Cow<'a, str>),
}

impl PartialEq for Value<'_> {
    /// Identity (used by tests): floats by their bits.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) | (Value::Json(a), Value::Json(b)) => a == b,
            _ => false,
        }
    }
}

/// Why a row could not be evaluated (it is dead-lettered with this reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type R<'a> = Result<Value<'a>, EvalError>;

fn fail<T>(m: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(m.into()))
}

impl<'a> Value<'a> {
    /// The value of a JSON text (a member of the record).
    pub fn from_json(raw: &'a str) -> Result<Value<'a>, EvalError> {
        let raw = raw.trim();
        match raw.as_bytes().first() {
            None => Ok(Value::Null),
            Some(b'n') => Ok(Value::Null),
            Some(b't') => Ok(Value::Bool(true)),
            Some(b'f') => Ok(Value::Bool(false)),
            Some(b'"') => serde_json::from_str::<Cow<'a, str>>(raw).map(Value::Str).map_err(|e| EvalError(format!("malformed JSON string: {e}"))),
            Some(b'{' | b'[') => Ok(Value::Json(Cow::Borrowed(raw))),
            Some(_) => {
                if raw.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
                    if let Ok(i) = raw.parse::<i64>() {
                        return Ok(Value::Int(i));
                    }
                }
                match raw.parse::<f64>() {
                    Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                    _ => fail(format!("the number {raw} is out of range")),
                }
            }
        }
    }

    /// Owned, for values that outlive the record (constants).
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Json(s) => Value::Json(Cow::Owned(s.into_owned())),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a double",
            Value::Str(_) => "a string",
            Value::Json(s) if s.starts_with('[') => "an array",
            Value::Json(_) => "an object",
        }
    }

    /// The value as a SQL boolean (None: NULL).
    pub fn truth(&self, what: &str) -> Result<Option<bool>, EvalError> {
        match self {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            other => fail(format!("{what} needs a boolean, not {}", other.kind())),
        }
    }

    /// Appends the value as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Value::Float(f) => {
                let _ = serde_json::to_writer(&mut *out, f);
            }
            Value::Str(s) => {
                let _ = serde_json::to_writer(&mut *out, &**s);
            }
            Value::Json(s) => out.extend_from_slice(s.as_bytes()),
        }
    }

    /// The text of a value in a string context (CAST to STRING, `||`).
    pub fn text(&self) -> Option<Cow<'a, str>> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Float(f) => Cow::Owned(serde_json::to_string(f).unwrap_or_default()),
            Value::Str(s) | Value::Json(s) => s.clone(),
        })
    }
}

/// A nested member `seg` of a JSON object's raw text; None when missing or
/// when the text is not an object.
pub(crate) fn member<'a>(raw: &'a RawValue, seg: &str) -> Option<&'a RawValue> {
    crate::record_schema::member_and_names(raw.get().as_bytes(), seg, None).ok().flatten()
}

fn finite(f: f64, op: &str) -> R<'static> {
    if f.is_finite() {
        Ok(Value::Float(f))
    } else {
        fail(format!("`{op}` overflows a DOUBLE"))
    }
}

/// `l op r` for the arithmetic operators.
pub(crate) fn arithmetic<'a>(op: BinOp, l: Value<'a>, r: Value<'a>) -> R<'a> {
    let sym = op.symbol();
    match (&l, &r) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Int(a), Value::Int(b)) => {
            let (a, b) = (*a, *b);
            let v = match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::Div | BinOp::Mod if b == 0 => return fail("division by zero"),
                BinOp::Div => a.checked_div(b),
                _ => a.checked_rem(b),
            };
            match v {
                Some(v) => Ok(Value::Int(v)),
                None => fail(format!("`{a} {sym} {b}` overflows a BIGINT")),
            }
        }
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (a, b) = (as_f64(&l), as_f64(&r));
            if matches!(op, BinOp::Div | BinOp::Mod) && b == 0.0 {
                return fail("division by zero");
            }
            let v = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
                _ => a % b,
            };
            finite(v, sym)
        }
        _ => fail(format!("`{sym}` needs numbers, not {} and {}", l.kind(), r.kind())),
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    }
}

pub(crate) fn negate(v: Value) -> R {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => i.checked_neg().map(Value::Int).ok_or_else(|| EvalError(format!("`-({i})` overflows a BIGINT"))),
        Value::Float(f) => Ok(Value::Float(-f)),
        other => fail(format!("`-` needs a number, not {}", other.kind())),
    }
}

/// How two non-NULL values order: numbers by value, strings by their bytes,
/// booleans false < true; anything else is an error.
pub(crate) fn compare(l: &Value, r: &Value) -> Result<Ordering, EvalError> {
    Ok(match (l, r) {
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            as_f64(l).partial_cmp(&as_f64(r)).unwrap_or(Ordering::Equal)
        }
        (Value::Str(a), Value::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => return fail(format!("cannot compare {} with {}", l.kind(), r.kind())),
    })
}

/// `l op r` for the comparison operators (NULL if either is).
pub(crate) fn comparison<'a>(op: BinOp, l: &Value, r: &Value) -> R<'a> {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    let o = compare(l, r)?;
    Ok(Value::Bool(match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::Ne => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::Le => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    }))
}

/// `l || r`: NULL if either is; numbers and booleans by their text.
pub(crate) fn concat<'a>(parts: &[Value<'a>]) -> R<'a> {
    let mut out = String::new();
    for p in parts {
        match p.text() {
            Some(t) => out.push_str(&t),
            None => return Ok(Value::Null),
        }
    }
    Ok(Value::Str(Cow::Owned(out)))
}

/// SQL LIKE: `%` any run of characters, `_` exactly one (no escape).
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Greedy match with backtracking to the last `%` (linear in practice).
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] == t[ti])) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// CAST(v AS to).
pub(crate) fn cast<'a>(v: Value<'a>, to: SqlType) -> R<'a> {
    let bad = |v: &Value| fail(format!("cannot cast {} to {to}", describe(v)));
    Ok(match (to, &v) {
        (_, Value::Null) => Value::Null,
        (SqlType::Any, _) => v,
        (SqlType::Boolean, Value::Bool(_)) => v,
        (SqlType::Boolean, Value::Int(i)) => Value::Bool(*i != 0),
        (SqlType::Boolean, Value::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return bad(&v),
        },
        (SqlType::BigInt | SqlType::Timestamp, Value::Int(_)) => v,
        (SqlType::BigInt | SqlType::Timestamp, Value::Bool(b)) => Value::Int(i64::from(*b)),
        (SqlType::BigInt | SqlType::Timestamp, Value::Float(f)) => {
            // Toward zero, like most SQL engines; out of range is an error.
            let t = f.trunc();
            if t >= -9.223_372_036_854_776e18 && t < 9.223_372_036_854_776e18 {
                Value::Int(t as i64)
            } else {
                return bad(&v);
            }
        }
        (SqlType::BigInt | SqlType::Timestamp, Value::Str(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => return bad(&v),
        },
        (SqlType::Double, Value::Float(_)) => v,
        (SqlType::Double, Value::Int(i)) => Value::Float(*i as f64),
        (SqlType::Double, Value::Bool(b)) => Value::Float(if *b { 1.0 } else { 0.0 }),
        (SqlType::Double, Value::Str(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Float(f),
            _ => return bad(&v),
        },
        (SqlType::String, _) => Value::Str(v.text().unwrap_or_default()),
        _ => return bad(&v),
    })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) if s.chars().count() <= 40 => format!("'{s}'"),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        other => other.kind().to_string(),
    }
}

pub(crate) fn string<'a, 'v>(v: &'v Value<'a>, what: &str) -> Result<Option<&'v str>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Str(s) => Ok(Some(s)),
        other => fail(format!("{what} needs a string, not {}", other.kind())),
    }
}

pub(crate) fn int(v: &Value, what: &str) -> Result<Option<i64>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Int(i) => Ok(Some(*i)),
        other => fail(format!("{what} needs an integer, not {}", other.kind())),
    }
}

/// SUBSTRING(s FROM start [FOR len]), 1-based in characters; a start
/// before 1 shortens the length as in the SQL standard.
pub(crate) fn substring(s: &str, start: i64, len: Option<i64>) -> Result<String, EvalError> {
    if let Some(n) = len.filter(|n| *n < 0) {
        return fail(format!("SUBSTRING's length is negative ({n})"));
    }
    let end = match len {
        Some(n) => start.saturating_add(n),
        None => i64::MAX,
    };
    let from = start.max(1);
    if end <= from {
        return Ok(String::new());
    }
    let skip = (from - 1) as usize;
    let take = usize::try_from(end - from).unwrap_or(usize::MAX);
    Ok(s.chars().skip(skip).take(take).collect())
}

pub(crate) fn trim<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let set = |c: char| match chars {
        Some(cs) => cs.contains(c),
        None => c == ' ',
    };
    let s = if left { s.trim_start_matches(set) } else { s };
    if right {
        s.trim_end_matches(set)
    } else {
        s
    }
}

/// POSITION(needle IN s): 1-based character position, 0 if absent.
pub(crate) fn position(needle: &str, s: &str) -> i64 {
    match s.find(needle) {
        Some(byte) => s[..byte].chars().count() as i64 + 1,
        None => 0,
    }
}

pub(crate) fn abs(v: Value) -> R {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => i.checked_abs().map(Value::Int).ok_or_else(|| EvalError(format!("ABS({i}) overflows a BIGINT"))),
        Value::Float(f) => Ok(Value::Float(f.abs())),
        other => fail(format!("ABS needs a number, not {}", other.kind())),
    }
}

/// FLOOR / CEIL: integers unchanged.
pub(crate) fn rounding(v: Value, ceil: bool) -> R {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => Ok(Value::Int(i)),
        Value::Float(f) => Ok(Value::Float(if ceil { f.ceil() } else { f.floor() })),
        other => fail(format!("{} needs a number, not {}", if ceil { "CEIL" } else { "FLOOR" }, other.kind())),
    }
}

/// ROUND(x, digits): half away from zero; an integer with digits >= 0 is
/// unchanged, with digits < 0 rounded to tens, hundreds...
pub(crate) fn round(v: Value, digits: i64) -> R {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) if digits >= 0 => Ok(Value::Int(i)),
        Value::Int(i) => {
            if digits < -18 {
                return Ok(Value::Int(0));
            }
            let p = 10i64.pow((-digits) as u32);
            let half = p / 2;
            let r = if i >= 0 { i.checked_add(half) } else { i.checked_sub(half) };
            match r {
                Some(r) => Ok(Value::Int(r / p * p)),
                None => fail(format!("ROUND({i}, {digits}) overflows a BIGINT")),
            }
        }
        Value::Float(f) => {
            let d = digits.clamp(-308, 308) as i32;
            let p = 10f64.powi(d);
            let r = (f * p).round() / p;
            Ok(Value::Float(if r.is_finite() { r } else { f }))
        }
        other => fail(format!("ROUND needs a number, not {}", other.kind())),
    }
}
