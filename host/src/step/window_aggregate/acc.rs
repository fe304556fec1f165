//! Accumulators of the built-in aggregates: `count`, `sum`, `min`, `max`,
//! `avg`, `first`, `last`. Each takes the raw JSON text of its field (as the
//! one pass over a record's top level finds it), merges with another of its
//! kind, encodes to bytes and finishes to the JSON the output carries.
//!
//! Values: `null` or a missing field is skipped (SQL's aggregates ignore
//! NULL); a value of the wrong type is refused with a reason (the event goes
//! to the dead letters). Integers are summed exactly in `i128` until a float
//! is seen; min/max compare numbers as numbers and strings as bytes.

use std::cmp::Ordering;
use std::fmt;

/// Which built-in aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
}

/// Why a value or an encoded accumulator is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccError {
    #[error("{kind} takes numbers: `{value}` is not one")]
    NotANumber { kind: &'static str, value: String },
    #[error("an accumulator's bytes are damaged: {0}")]
    Corrupt(&'static str),
}

/// A sum: exact over integers, a float once a float was added.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sum {
    Int(i128),
    Float(f64),
}

impl Sum {
    fn add(self, other: Sum) -> Sum {
        match (self, other) {
            (Sum::Int(a), Sum::Int(b)) => a.checked_add(b).map_or(Sum::Float(a as f64 + b as f64), Sum::Int),
            (a, b) => Sum::Float(a.as_f64() + b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Sum::Int(i) => i as f64,
            Sum::Float(f) => f,
        }
    }

    fn to_json(self) -> serde_json::Value {
        match self {
            Sum::Int(i) => i64::try_from(i)
                .map(serde_json::Value::from)
                .or_else(|_| u64::try_from(i).map(serde_json::Value::from))
                .unwrap_or_else(|_| float_json(i as f64)),
            Sum::Float(f) => float_json(f),
        }
    }
}

/// A value min/max compare: numbers as numbers, strings as bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Ordered {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Ordered {
    /// A total order: numbers as numbers, strings as bytes, every number
    /// before every string (so a field of mixed types still has a min and a
    /// max, whichever pane saw which).
    fn cmp_to(&self, other: &Ordered) -> Ordering {
        match (self, other) {
            (Ordered::Int(a), Ordered::Int(b)) => a.cmp(b),
            (Ordered::Str(a), Ordered::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Ordered::Str(_), _) => Ordering::Greater,
            (_, Ordered::Str(_)) => Ordering::Less,
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Ordering::Equal),
        }
    }

    fn as_f64(&self) -> f64 {
        match self {
            Ordered::Int(i) => *i as f64,
            Ordered::Float(f) => *f,
            Ordered::Str(_) => f64::NAN,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Ordered::Int(i) => (*i).into(),
            Ordered::Float(f) => float_json(*f),
            Ordered::Str(s) => s.clone().into(),
        }
    }
}

/// A value with its event time and arrival number (first/last).
#[derive(Clone, Debug, PartialEq)]
pub struct Stamped {
    pub time: i64,
    pub seq: u64,
    /// The value's JSON text, as it was in the record.
    pub raw: String,
}

/// One aggregate's running value over a key and a pane.
#[derive(Clone, Debug, PartialEq)]
pub enum Acc {
    Count(u64),
    Sum(Option<Sum>),
    Min(Option<Ordered>),
    Max(Option<Ordered>),
    Avg { sum: Sum, count: u64 },
    First(Option<Stamped>),
    Last(Option<Stamped>),
}

impl fmt::Display for AggKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl AggKind {
    pub fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::Sum => "sum",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Avg => "avg",
            AggKind::First => "first",
            AggKind::Last => "last",
        }
    }

    /// The accumulator of no values.
    pub fn empty(self) -> Acc {
        match self {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum(None),
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
            AggKind::Avg => Acc::Avg { sum: Sum::Int(0), count: 0 },
            AggKind::First => Acc::First(None),
            AggKind::Last => Acc::Last(None),
        }
    }
}

/// Whether a JSON value's text is `null`.
fn is_null(raw: &str) -> bool {
    raw.trim_start().starts_with('n')
}

fn number(kind: AggKind, raw: &str) -> Result<Sum, AccError> {
    let t = raw.trim();
    let bad = || AccError::NotANumber { kind: kind.name(), value: t.chars().take(40).collect() };
    match t.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => {}
        _ => return Err(bad()),
    }
    if t.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        t.parse::<f64>().map(Sum::Float).map_err(|_| bad())
    } else {
        t.parse::<i128>().map(Sum::Int).map_err(|_| bad())
    }
}

fn ordered(kind: AggKind, raw: &str) -> Result<Ordered, AccError> {
    let t = raw.trim();
    if t.starts_with('"') {
        return serde_json::from_str::<String>(t).map(Ordered::Str).map_err(|_| AccError::NotANumber { kind: kind.name(), value: t.chars().take(40).collect() });
    }
    Ok(match number(kind, t)? {
        Sum::Int(i) => i64::try_from(i).map(Ordered::Int).unwrap_or(Ordered::Float(i as f64)),
        Sum::Float(f) => Ordered::Float(f),
    })
}

fn float_json(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// The extreme of `a` and `b` that `keep` prefers (`Less`: min), or why they
/// cannot be compared.
fn extreme(a: Option<Ordered>, b: Ordered, keep: Ordering) -> Option<Ordered> {
    match a {
        Some(a) if b.cmp_to(&a) != keep => Some(a),
        _ => Some(b),
    }
}

/// Of two stamped values, the earlier (`first`) or the later one.
fn pick(a: Option<Stamped>, b: Option<Stamped>, first: bool) -> Option<Stamped> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => {
            let a_before = (a.time, a.seq) <= (b.time, b.seq);
            Some(if a_before == first { a } else { b })
        }
    }
}

impl Acc {
    pub fn kind(&self) -> AggKind {
        match self {
            Acc::Count(_) => AggKind::Count,
            Acc::Sum(_) => AggKind::Sum,
            Acc::Min(_) => AggKind::Min,
            Acc::Max(_) => AggKind::Max,
            Acc::Avg { .. } => AggKind::Avg,
            Acc::First(_) => AggKind::First,
            Acc::Last(_) => AggKind::Last,
        }
    }

    /// Adds one record's value: its field's raw JSON text (`None`: missing),
    /// at event time `time`, arrival number `seq`. `count` counts records
    /// (whatever the field); the others skip a null or missing value.
    pub fn add(&mut self, raw: Option<&str>, time: i64, seq: u64) -> Result<(), AccError> {
        if let Acc::Count(n) = self {
            *n += 1;
            return Ok(());
        }
        let Some(raw) = raw.filter(|r| !is_null(r)) else { return Ok(()) };
        let kind = self.kind();
        match self {
            Acc::Count(_) => unreachable!("counted above"),
            Acc::Sum(s) => {
                let v = number(kind, raw)?;
                *s = Some(s.map_or(v, |s| s.add(v)));
            }
            Acc::Min(m) => *m = extreme(m.take(), ordered(kind, raw)?, Ordering::Less),
            Acc::Max(m) => *m = extreme(m.take(), ordered(kind, raw)?, Ordering::Greater),
            Acc::Avg { sum, count } => {
                *sum = sum.add(number(kind, raw)?);
                *count += 1;
            }
            Acc::First(f) => *f = pick(f.take(), Some(Stamped { time, seq, raw: raw.trim().to_string() }), true),
            Acc::Last(l) => *l = pick(l.take(), Some(Stamped { time, seq, raw: raw.trim().to_string() }), false),
        }
        Ok(())
    }

    /// Whether [`Acc::add`] would take `raw`, without adding it: an event is
    /// checked against every aggregate before any of them changes.
    pub fn check(&self, raw: Option<&str>) -> Result<(), AccError> {
        let Some(raw) = raw.filter(|r| !is_null(r)) else { return Ok(()) };
        match self {
            Acc::Sum(_) | Acc::Avg { .. } => number(self.kind(), raw).map(|_| ()),
            Acc::Min(_) | Acc::Max(_) => ordered(self.kind(), raw).map(|_| ()),
            Acc::Count(_) | Acc::First(_) | Acc::Last(_) => Ok(()),
        }
    }

    /// Folds `other` (the same kind, e.g. another pane's) into this one.
    pub fn merge(&mut self, other: &Acc) -> Result<(), AccError> {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) => {
                *a = match (*a, *b) {
                    (Some(x), Some(y)) => Some(x.add(y)),
                    (x, y) => x.or(y),
                }
            }
            (Acc::Min(a), Acc::Min(Some(b))) => *a = extreme(a.take(), b.clone(), Ordering::Less),
            (Acc::Max(a), Acc::Max(Some(b))) => *a = extreme(a.take(), b.clone(), Ordering::Greater),
            (Acc::Min(_), Acc::Min(None)) | (Acc::Max(_), Acc::Max(None)) => {}
            (Acc::Avg { sum, count }, Acc::Avg { sum: s2, count: c2 }) => {
                *sum = sum.add(*s2);
                *count += c2;
            }
            (Acc::First(a), Acc::First(b)) => *a = pick(a.take(), b.clone(), true),
            (Acc::Last(a), Acc::Last(b)) => *a = pick(a.take(), b.clone(), false),
            _ => return Err(AccError::Corrupt("merge of two accumulators of different kinds")),
        }
        Ok(())
    }

    /// The output value: `count` a number; `sum`, `min`, `max`, `first`,
    /// `last` null when no value was seen; `avg` a float or null.
    pub fn finish(&self) -> serde_json::Value {
        match self {
            Acc::Count(n) => (*n).into(),
            Acc::Sum(s) => s.map_or(serde_json::Value::Null, Sum::to_json),
            Acc::Min(m) | Acc::Max(m) => m.as_ref().map_or(serde_json::Value::Null, Ordered::to_json),
            Acc::Avg { count: 0, .. } => serde_json::Value::Null,
            Acc::Avg { sum, count } => float_json(sum.as_f64() / *count as f64),
            Acc::First(s) | Acc::Last(s) => s.as_ref().and_then(|s| serde_json::from_str(&s.raw).ok()).unwrap_or(serde_json::Value::Null),
        }
    }

    /// Appends the accumulator's bytes to `out`: a tag, then its fields.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let sum = |out: &mut Vec<u8>, s: &Sum| match s {
            Sum::Int(i) => {
                out.push(0);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Sum::Float(f) => {
                out.push(1);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
        };
        let ordered = |out: &mut Vec<u8>, o: &Option<Ordered>| match o {
            None => out.push(0),
            Some(Ordered::Int(i)) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Some(Ordered::Float(f)) => {
                out.push(2);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Some(Ordered::Str(s)) => {
                out.push(3);
                put_bytes(out, s.as_bytes());
            }
        };
        let stamped = |out: &mut Vec<u8>, s: &Option<Stamped>| match s {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&s.time.to_be_bytes());
                out.extend_from_slice(&s.seq.to_be_bytes());
                put_bytes(out, s.raw.as_bytes());
            }
        };
        match self {
            Acc::Count(n) => {
                out.push(b'c');
                out.extend_from_slice(&n.to_be_bytes());
            }
            Acc::Sum(s) => {
                out.push(b's');
                match s {
                    None => out.push(0),
                    Some(s) => {
                        out.push(1);
                        sum(out, s);
                    }
                }
            }
            Acc::Min(m) => {
                out.push(b'm');
                ordered(out, m);
            }
            Acc::Max(m) => {
                out.push(b'M');
                ordered(out, m);
            }
            Acc::Avg { sum: s, count } => {
                out.push(b'a');
                sum(out, s);
                out.extend_from_slice(&count.to_be_bytes());
            }
            Acc::First(s) => {
                out.push(b'f');
                stamped(out, s);
            }
            Acc::Last(s) => {
                out.push(b'l');
                stamped(out, s);
            }
        }
    }

    /// One accumulator from the front of `bytes`, and the bytes after it.
    pub fn decode(bytes: &[u8]) -> Result<(Acc, &[u8]), AccError> {
        let mut r = Reader(bytes);
        let acc = match r.u8()? {
            b'c' => Acc::Count(r.u64()?),
            b's' => Acc::Sum(if r.u8()? == 0 { None } else { Some(r.sum()?) }),
            b'm' => Acc::Min(r.ordered()?),
            b'M' => Acc::Max(r.ordered()?),
            b'a' => {
                let sum = r.sum()?;
                Acc::Avg { sum, count: r.u64()? }
            }
            b'f' => Acc::First(r.stamped()?),
            b'l' => Acc::Last(r.stamped()?),
            _ => return Err(AccError::Corrupt("unknown accumulator tag")),
        };
        Ok((acc, r.0))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AccError> {
        if self.0.len() < n {
            return Err(AccError::Corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, AccError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, AccError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn i64(&mut self) -> Result<i64, AccError> {
        Ok(self.u64()? as i64)
    }

    fn f64(&mut self) -> Result<f64, AccError> {
        Ok(f64::from_bits(self.u64()?))
    }

    fn string(&mut self) -> Result<String, AccError> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| AccError::Corrupt("a string is not UTF-8"))
    }

    fn sum(&mut self) -> Result<Sum, AccError> {
        match self.u8()? {
            0 => Ok(Sum::Int(i128::from_be_bytes(self.take(16)?.try_into().expect("16 bytes")))),
            1 => Ok(Sum::Float(self.f64()?)),
            _ => Err(AccError::Corrupt("unknown sum tag")),
        }
    }

    fn ordered(&mut self) -> Result<Option<Ordered>, AccError> {
        Ok(match self.u8()? {
            0 => None,
            1 => Some(Ordered::Int(self.i64()?)),
            2 => Some(Ordered::Float(self.f64()?)),
            3 => Some(Ordered::Str(self.string()?)),
            _ => return Err(AccError::Corrupt("unknown value tag")),
        })
    }

    fn stamped(&mut self) -> Result<Option<Stamped>, AccError> {
        Ok(match self.u8()? {
            0 => None,
            1 => Some(Stamped { time: self.i64()?, seq: self.u64()?, raw: self.string()? }),
            _ => return Err(AccError::Corrupt("unknown stamp tag")),
        })
    }
}

#[cfg(test)]
#[path = "acc_tests.rs"]
mod tests;
