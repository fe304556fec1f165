//! One aggregate of a `window-aggregate` step: its settings (pipeline.json)
//! and its accumulator, whatever the kind, behind one shape: add a value,
//! merge another pane's, bytes in and out, finish to the output's JSON.
//! A key's pane holds a [`Row`]: the accumulators of all the step's
//! aggregates, encoded together.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::acc::{Acc, AggKind};
use super::approx::{ApproxDistinct, DEFAULT_LG_K};
use super::arg::{ArgBest, DEFAULT_MAX_TIES};
use super::distinct::Distinct;
use super::percentile::{Percentile, DEFAULT_ALPHA};
use super::top_k::{TopK, DEFAULT_MAP_SIZE};

/// What an aggregate computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    /// The number of events.
    Count,
    /// The sum of a numeric field (exact over integers).
    Sum,
    /// The least value of a field (numbers as numbers, strings as bytes).
    Min,
    /// The greatest value of a field.
    Max,
    /// The mean of a numeric field.
    Avg,
    /// The field's value in the earliest event (event time, then arrival).
    First,
    /// The field's value in the latest event.
    Last,
    /// The number of distinct values, exactly (the values are kept).
    DistinctCount,
    /// The number of distinct values, approximately (HyperLogLog, `lg_k`).
    ApproxDistinct,
    /// The `k` most frequent values, approximately (frequent items, `map_size`).
    TopK,
    /// Quantiles `q` of a numeric field, each within a relative `alpha`.
    Percentile,
    /// The records with the greatest value of a numeric field (ties all,
    /// up to `max_ties`), as a list.
    ArgMax,
    /// The records with the least value of a numeric field.
    ArgMin,
    /// A user-defined aggregate: an `aggregator` plugin (`plugin`) folds
    /// each whole event (docs/aggregator-plugins.md).
    Plugin,
}

/// One aggregate: a name in the output, a kind, the field it reads.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The output field.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AggregateType,
    /// A top-level field `$.name` (every kind but `count` needs one).
    #[serde(default)]
    pub field: Option<String>,
    /// Only events of this input count (default: all inputs).
    #[serde(default)]
    pub input: Option<String>,
    /// Only events meeting this condition count (SQL's `FILTER (WHERE ..)`),
    /// written as a `filter` step's `where`.
    #[serde(default, rename = "where")]
    pub condition: Option<crate::step::Condition>,
    /// `approx_distinct`: log2 of the register count, 4 to 21 (default 12: 1.6 % standard error).
    #[serde(default)]
    pub lg_k: Option<u8>,
    /// `top_k`: how many values to list (default 10).
    #[serde(default)]
    pub k: Option<usize>,
    /// `top_k`: the sketch's map size, a power of two (default 1024: counts within 0.34 % of the total).
    #[serde(default)]
    pub map_size: Option<usize>,
    /// `percentile`: the quantiles, each in [0, 1] (default [0.5, 0.9, 0.99]).
    #[serde(default)]
    pub q: Option<Vec<f64>>,
    /// `percentile`: the relative accuracy (default 0.01).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// `arg_max`, `arg_min`: the most records with the best value kept (default 100).
    #[serde(default)]
    pub max_ties: Option<usize>,
    /// `plugin`: the name of an `aggregator` plugin in `plugins`.
    #[serde(default)]
    pub plugin: Option<String>,
}

impl AggregateConfig {
    /// The field's top-level name, without `$.`.
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref().map(|f| f.strip_prefix("$.").unwrap_or(f))
    }

    /// What is wrong with these settings, if anything (said with the
    /// setting's name; the loader adds its JSON path).
    pub fn check(&self) -> Result<(), String> {
        let needs_field = !matches!(self.kind, AggregateType::Count | AggregateType::Plugin);
        match (needs_field, self.field_name()) {
            (true, None) => return Err(format!("`{}` needs a `field`", self.name)),
            (_, Some(f)) if f.is_empty() || f.contains('.') => {
                return Err(format!("`{}`: field must be a top-level `$.name`, not {:?}", self.name, self.field.as_deref().unwrap_or("")))
            }
            _ => {}
        }
        let only = |what: &str, kinds: &[AggregateType], set: bool| -> Result<(), String> {
            if set && !kinds.contains(&self.kind) {
                return Err(format!("`{}`: `{what}` is not a setting of {:?}", self.name, self.kind));
            }
            Ok(())
        };
        only("lg_k", &[AggregateType::ApproxDistinct], self.lg_k.is_some())?;
        only("k", &[AggregateType::TopK], self.k.is_some())?;
        only("map_size", &[AggregateType::TopK], self.map_size.is_some())?;
        only("q", &[AggregateType::Percentile], self.q.is_some())?;
        only("alpha", &[AggregateType::Percentile], self.alpha.is_some())?;
        only("max_ties", &[AggregateType::ArgMax, AggregateType::ArgMin], self.max_ties.is_some())?;
        only("plugin", &[AggregateType::Plugin], self.plugin.is_some())?;
        if self.kind == AggregateType::Plugin && self.plugin.is_none() {
            return Err(format!("`{}` needs a `plugin`: an aggregator plugin's name", self.name));
        }
        if self.max_ties == Some(0) {
            return Err(format!("`{}`: max_ties must be at least 1", self.name));
        }
        if let Some(q) = self.q.as_ref().and_then(|q| q.iter().find(|q| !(0.0..=1.0).contains(*q))) {
            return Err(format!("`{}`: each q must be in [0, 1], not {q}", self.name));
        }
        if self.k == Some(0) {
            return Err(format!("`{}`: k must be at least 1", self.name));
        }
        Accumulator::new(self).map(|_| ())
    }

    fn quantiles(&self) -> Vec<f64> {
        self.q.clone().unwrap_or_else(|| vec![0.5, 0.9, 0.99])
    }
}

/// The running value of one aggregate over a key and a pane.
#[derive(Clone, Debug)]
pub enum Accumulator {
    Exact(Acc),
    Distinct(Distinct),
    // Sketches are boxed: a row of counts stays small to clone and merge.
    ApproxDistinct(Box<ApproxDistinct>),
    TopK(Box<TopK>),
    Percentile(Box<Percentile>),
    Arg(ArgBest),
    /// A plugin's accumulators, not yet merged (the host merges them with
    /// one plugin call when a window fires).
    Plugin(Vec<Vec<u8>>),
    /// A value made by a plugin's `finish`, on its way to the output.
    Finished(serde_json::Value),
}

impl Accumulator {
    /// The empty accumulator of `cfg`, or why its settings are refused.
    pub fn new(cfg: &AggregateConfig) -> Result<Accumulator, String> {
        let exact = |k: AggKind| Ok(Accumulator::Exact(k.empty()));
        match cfg.kind {
            AggregateType::Count => exact(AggKind::Count),
            AggregateType::Sum => exact(AggKind::Sum),
            AggregateType::Min => exact(AggKind::Min),
            AggregateType::Max => exact(AggKind::Max),
            AggregateType::Avg => exact(AggKind::Avg),
            AggregateType::First => exact(AggKind::First),
            AggregateType::Last => exact(AggKind::Last),
            AggregateType::DistinctCount => Ok(Accumulator::Distinct(Distinct::default())),
            AggregateType::Plugin => Ok(Accumulator::Plugin(Vec::new())),
            AggregateType::ArgMax | AggregateType::ArgMin => {
                Ok(Accumulator::Arg(ArgBest::new(cfg.kind == AggregateType::ArgMin, cfg.max_ties.unwrap_or(DEFAULT_MAX_TIES))))
            }
            AggregateType::ApproxDistinct => ApproxDistinct::new(cfg.lg_k.unwrap_or(DEFAULT_LG_K)).map(|a| Accumulator::ApproxDistinct(Box::new(a))).map_err(|e| e.to_string()),
            AggregateType::TopK => TopK::new(cfg.map_size.unwrap_or(DEFAULT_MAP_SIZE)).map(|t| Accumulator::TopK(Box::new(t))).map_err(|e| e.to_string()),
            AggregateType::Percentile => Percentile::new(cfg.alpha.unwrap_or(DEFAULT_ALPHA)).map(|p| Accumulator::Percentile(Box::new(p))).map_err(|e| e.to_string()),
        }
    }

    /// Adds one event's value: the raw JSON text of the field (`None`:
    /// missing), at event time `time`, arrival `seq`; a refusal says why (the
    /// event is dead-lettered).
    /// [`Accumulator::add`] for an aggregate that keeps records (`arg_max`):
    /// `record` is the event's value.
    pub fn add_record(&mut self, raw: Option<&str>, time: i64, seq: u64, record: &[u8]) -> Result<(), String> {
        match self {
            Accumulator::Arg(a) => {
                if let Some(v) = ArgBest::value(raw)? {
                    a.add(v, record);
                }
                Ok(())
            }
            _ => self.add(raw, time, seq),
        }
    }

    pub fn add(&mut self, raw: Option<&str>, time: i64, seq: u64) -> Result<(), String> {
        match self {
            Accumulator::Arg(_) => Err("arg_max and arg_min take the record: add_record".into()),
            // Its plugin folds events, a batch at a time (the step calls it).
            Accumulator::Plugin(_) | Accumulator::Finished(_) => Ok(()),
            Accumulator::Exact(a) => a.add(raw, time, seq).map_err(|e| e.to_string()),
            Accumulator::Distinct(d) => {
                d.add(raw);
                Ok(())
            }
            Accumulator::ApproxDistinct(a) => {
                a.add(raw);
                Ok(())
            }
            Accumulator::TopK(a) => {
                a.add(raw);
                Ok(())
            }
            Accumulator::Percentile(p) => match raw.map(str::trim) {
                None | Some("null") => Ok(()),
                Some(text) => match text.parse::<f64>() {
                    Ok(v) => {
                        p.add(v);
                        Ok(())
                    }
                    Err(_) => Err(format!("percentile takes numbers: `{}` is not one", text.chars().take(40).collect::<String>())),
                },
            },
        }
    }

    /// Whether [`Accumulator::add`] would take `raw`, changing nothing.
    pub fn check(&self, raw: Option<&str>) -> Result<(), String> {
        match self {
            Accumulator::Exact(a) => a.check(raw).map_err(|e| e.to_string()),
            Accumulator::Percentile(_) => match raw.map(str::trim) {
                None | Some("null") => Ok(()),
                Some(text) if text.parse::<f64>().is_ok() => Ok(()),
                Some(text) => Err(format!("percentile takes numbers: `{}` is not one", text.chars().take(40).collect::<String>())),
            },
            Accumulator::Arg(_) => ArgBest::value(raw).map(|_| ()),
            Accumulator::Plugin(_) | Accumulator::Finished(_) => Ok(()),
            Accumulator::Distinct(_) | Accumulator::ApproxDistinct(_) | Accumulator::TopK(_) => Ok(()),
        }
    }

    pub fn merge(&mut self, other: &Accumulator) -> Result<(), String> {
        match (self, other) {
            (Accumulator::Exact(a), Accumulator::Exact(b)) => a.merge(b).map_err(|e| e.to_string()),
            (Accumulator::Plugin(a), Accumulator::Plugin(b)) => {
                a.extend(b.iter().cloned());
                Ok(())
            }
            (Accumulator::Arg(a), Accumulator::Arg(b)) => {
                a.merge(b);
                Ok(())
            }
            (Accumulator::Distinct(a), Accumulator::Distinct(b)) => {
                a.merge(b);
                Ok(())
            }
            (Accumulator::ApproxDistinct(a), Accumulator::ApproxDistinct(b)) => {
                a.merge(b);
                Ok(())
            }
            (Accumulator::TopK(a), Accumulator::TopK(b)) => {
                a.merge(b);
                Ok(())
            }
            (Accumulator::Percentile(a), Accumulator::Percentile(b)) => a.merge(b).map_err(|e| e.to_string()),
            _ => Err("merge of two accumulators of different kinds".into()),
        }
    }

    /// The output value under `cfg`: a number or value for the exact kinds;
    /// `approx_distinct` its estimate rounded; `top_k` `[{"value", "count",
    /// "lower", "upper"}]`; `percentile` `{"<q>": value}`.
    pub fn finish(&self, cfg: &AggregateConfig) -> serde_json::Value {
        match self {
            Accumulator::Exact(a) => a.finish(),
            Accumulator::Distinct(d) => serde_json::Value::from(d.count()),
            Accumulator::Arg(a) => a.finish(),
            Accumulator::Plugin(_) => serde_json::Value::Null,
            Accumulator::Finished(v) => v.clone(),
            Accumulator::ApproxDistinct(a) => serde_json::Value::from(a.estimate().round() as u64),
            Accumulator::TopK(t) => t
                .top(cfg.k.unwrap_or(10))
                .into_iter()
                .map(|h| {
                    let value: serde_json::Value = serde_json::from_str(&h.value).unwrap_or(serde_json::Value::String(h.value.clone()));
                    serde_json::json!({"value": value, "count": h.estimate, "lower": h.lower, "upper": h.upper})
                })
                .collect(),
            Accumulator::Percentile(p) => cfg
                .quantiles()
                .into_iter()
                .map(|q| (q.to_string(), p.quantile(q).ok().flatten().map_or(serde_json::Value::Null, serde_json::Value::from)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// [`Accumulator::finish`] written as JSON text (counts without a `Value`).
    pub fn write_json(&self, cfg: &AggregateConfig, out: &mut String) {
        match self {
            Accumulator::Exact(super::acc::Acc::Count(n)) => {
                use std::fmt::Write;
                let _ = write!(out, "{n}");
            }
            Accumulator::Distinct(d) => {
                use std::fmt::Write;
                let _ = write!(out, "{}", d.count());
            }
            _ => out.push_str(&self.finish(cfg).to_string()),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Accumulator::Exact(a) => a.encode(out),
            Accumulator::Arg(a) => {
                out.push(b'A');
                a.encode(out);
            }
            Accumulator::Plugin(parts) => {
                out.push(b'U');
                out.extend_from_slice(&(parts.len() as u32).to_be_bytes());
                for p in parts {
                    out.extend_from_slice(&(p.len() as u32).to_be_bytes());
                    out.extend_from_slice(p);
                }
            }
            // Never stored: made when a window fires, for its output.
            Accumulator::Finished(v) => {
                out.push(b'V');
                let text = v.to_string();
                out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Accumulator::Distinct(d) => {
                out.push(b'D');
                d.encode(out);
            }
            Accumulator::ApproxDistinct(a) => {
                out.push(b'H');
                a.encode(out);
            }
            Accumulator::TopK(t) => {
                out.push(b'T');
                t.encode(out);
            }
            Accumulator::Percentile(p) => {
                out.push(b'P');
                p.encode(out);
            }
        }
    }

    /// One accumulator from the front of `bytes`, and the bytes after it.
    pub fn decode(bytes: &[u8]) -> Result<(Accumulator, &[u8]), String> {
        match bytes.first() {
            Some(b'U' | b'V') => decode_plugin(bytes),
            Some(b'A') => ArgBest::decode(&bytes[1..]).map(|(a, r)| (Accumulator::Arg(a), r)).map_err(String::from),
            Some(b'D') => Distinct::decode(&bytes[1..]).map(|(d, r)| (Accumulator::Distinct(d), r)).map_err(String::from),
            Some(b'H') => ApproxDistinct::decode(&bytes[1..]).map(|(a, r)| (Accumulator::ApproxDistinct(Box::new(a)), r)).map_err(|e| e.to_string()),
            Some(b'T') => TopK::decode(&bytes[1..]).map(|(a, r)| (Accumulator::TopK(Box::new(a)), r)).map_err(|e| e.to_string()),
            Some(b'P') => Percentile::decode(&bytes[1..]).map(|(a, r)| (Accumulator::Percentile(Box::new(a)), r)).map_err(|e| e.to_string()),
            _ => Acc::decode(bytes).map(|(a, r)| (Accumulator::Exact(a), r)).map_err(|e| e.to_string()),
        }
    }
}

/// A plugin accumulator's parts (`U`), or a finished value (`V`).
fn decode_plugin(bytes: &[u8]) -> Result<(Accumulator, &[u8]), String> {
    let cut = || "a plugin's accumulator cut short".to_string();
    fn take(b: &[u8]) -> Result<(usize, &[u8]), String> {
        let (n, rest) = b.split_first_chunk::<4>().ok_or_else(|| "a plugin's accumulator cut short".to_string())?;
        Ok((u32::from_be_bytes(*n) as usize, rest))
    }
    let (tag, rest) = (bytes[0], &bytes[1..]);
    let (n, mut rest) = take(rest)?;
    if tag == b'V' {
        let text = rest.get(..n).ok_or_else(cut)?;
        let v = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        return Ok((Accumulator::Finished(v), &rest[n..]));
    }
    let mut parts = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let (len, r) = take(rest)?;
        parts.push(r.get(..len).ok_or_else(cut)?.to_vec());
        rest = &r[len..];
    }
    Ok((Accumulator::Plugin(parts), rest))
}

/// The layout version of a [`Row`]'s bytes.
const ROW_VERSION: u8 = 1;

/// The accumulators of all of a step's aggregates for one key and pane.
#[derive(Clone, Debug)]
pub struct Row(pub Vec<Accumulator>);

impl Row {
    pub fn new(aggs: &[AggregateConfig]) -> Result<Row, String> {
        aggs.iter().map(Accumulator::new).collect::<Result<_, _>>().map(Row)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ROW_VERSION];
        for a in &self.0 {
            a.encode(&mut out);
        }
        out
    }

    /// A row of `n` accumulators; refused when its bytes are damaged or of
    /// another layout (the step's fingerprint guards the aggregates' list).
    pub fn decode(bytes: &[u8], n: usize) -> Result<Row, String> {
        let Some((&ROW_VERSION, mut rest)) = bytes.split_first() else {
            return Err("a row of another layout version".into());
        };
        let mut accs = Vec::with_capacity(n);
        for _ in 0..n {
            let (a, r) = Accumulator::decode(rest)?;
            accs.push(a);
            rest = r;
        }
        if !rest.is_empty() {
            return Err("a row with bytes left over".into());
        }
        Ok(Row(accs))
    }

    pub fn merge(&mut self, other: &Row) -> Result<(), String> {
        if self.0.len() != other.0.len() {
            return Err("merge of rows of different aggregates".into());
        }
        self.0.iter_mut().zip(&other.0).try_for_each(|(a, b)| a.merge(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggs() -> Vec<AggregateConfig> {
        serde_json::from_value(serde_json::json!([
            {"name": "n", "type": "count"},
            {"name": "total", "type": "sum", "field": "$.price"},
            {"name": "users", "type": "approx_distinct", "field": "$.user"},
            {"name": "top", "type": "top_k", "field": "$.user", "k": 2, "map_size": 16},
            {"name": "p", "type": "percentile", "field": "$.price", "q": [0.5, 1.0]},
            {"name": "last_user", "type": "last", "field": "$.user"}
        ]))
        .unwrap()
    }

    /// Two panes of events, each row through its bytes, merged: every
    /// aggregate's output as computed from the events directly.
    #[test]
    fn rows_of_every_kind_merge_and_finish() {
        let cfg = aggs();
        for c in &cfg {
            c.check().unwrap();
        }
        let events = [("u1", 10), ("u2", 20), ("u1", 30), ("u3", 40), ("u1", 50)];
        let mut panes = [Row::new(&cfg).unwrap(), Row::new(&cfg).unwrap()];
        for (i, (user, price)) in events.iter().enumerate() {
            let (user, price) = (format!("\"{user}\""), price.to_string());
            let row = &mut panes[i % 2];
            for (acc, c) in row.0.iter_mut().zip(&cfg) {
                let raw = match c.field_name() {
                    Some("user") => Some(user.as_str()),
                    Some("price") => Some(price.as_str()),
                    _ => None,
                };
                acc.add(raw, i as i64, i as u64).unwrap();
            }
        }
        let mut total = Row::decode(&panes[0].encode(), cfg.len()).unwrap();
        total.merge(&Row::decode(&panes[1].encode(), cfg.len()).unwrap()).unwrap();
        let out: Vec<serde_json::Value> = total.0.iter().zip(&cfg).map(|(a, c)| a.finish(c)).collect();
        assert_eq!(out[0], 5);
        assert_eq!(out[1], 150);
        assert_eq!(out[2], 3);
        assert_eq!(out[3], serde_json::json!([{"value": "u1", "count": 3, "lower": 3, "upper": 3}, {"value": "u2", "count": 1, "lower": 1, "upper": 1}]));
        let p50 = out[4]["0.5"].as_f64().unwrap();
        assert!((p50 - 30.0).abs() <= 0.3, "{}", out[4]);
        assert_eq!(out[4]["1"], 50.0);
        assert_eq!(out[5], "u1");
        assert!(Row::decode(&panes[0].encode(), cfg.len() - 1).is_err(), "bytes left over");
        assert!(Row::decode(&[9], 0).is_err(), "another version");
    }

    #[test]
    fn settings_are_checked() {
        let bad = |v: serde_json::Value| serde_json::from_value::<AggregateConfig>(v).map_err(|e| e.to_string()).and_then(|c| c.check());
        assert!(bad(serde_json::json!({"name": "s", "type": "sum"})).unwrap_err().contains("needs a `field`"));
        assert!(bad(serde_json::json!({"name": "s", "type": "sum", "field": "$.a.b"})).unwrap_err().contains("top-level"));
        assert!(bad(serde_json::json!({"name": "s", "type": "sum", "field": "$.a", "k": 3})).unwrap_err().contains("`k` is not a setting"));
        assert!(bad(serde_json::json!({"name": "p", "type": "percentile", "field": "$.a", "q": [1.5]})).unwrap_err().contains("[0, 1]"));
        assert!(bad(serde_json::json!({"name": "h", "type": "approx_distinct", "field": "$.a", "lg_k": 30})).unwrap_err().contains("lg_k"));
        assert!(bad(serde_json::json!({"name": "t", "type": "top_k", "field": "$.a", "map_size": 100})).unwrap_err().contains("map_size"));
        assert!(bad(serde_json::json!({"name": "c", "type": "count", "bogus": 1})).unwrap_err().contains("unknown field"));
        assert_eq!(bad(serde_json::json!({"name": "c", "type": "count"})), Ok(()));
    }
}
