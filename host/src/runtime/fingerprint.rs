//! What a checkpoint's state and positions mean, so that a restart with a
//! changed pipeline is refused instead of silently misreading them.
//!
//! A checkpoint records a fingerprint of every stateful step (the parameters
//! its state was written under, from [`Operator::state_fingerprint`]) and
//! the identity of every source (what it reads: a position means nothing in
//! another file or another generator's sequence). On a restore each is
//! compared with the pipeline being started; every difference is a located
//! config error saying what changed and how to proceed (`--fresh`).
//!
//! Anything else may change across a restart: limits, batch sizes, channel
//! bounds, the checkpoint interval, plugins (versions, paths, config,
//! limits; a joiner plugin's name), stateless steps, sinks, the admin API, a
//! source's schema, `max_record_bytes`, `max_out_of_orderness_ms`,
//! `idle_timeout_ms` and a generator's `rate`, a join's `max_matches`.
//!
//! [`Operator::state_fingerprint`]: crate::step::Operator::state_fingerprint

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::locate::JsonPath;
use crate::config::{ConfigError, LoadedPipeline, SourceConfig};

/// How to get past a refusal.
const PROCEED: &str = "run with --fresh to start over, discarding state and checkpoints";

/// The fingerprints a checkpoint records (`meta.json`, `fingerprint`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// Per stateful step, by name: what its state means.
    #[serde(default)]
    pub steps: BTreeMap<String, Value>,
    /// Per source, by name: what it reads.
    #[serde(default)]
    pub sources: BTreeMap<String, Value>,
}

/// A source's identity: its type and what decides the records it produces
/// and their event time and key (a file's path as written in pipeline.json,
/// a generator's parameters except its pace).
pub(crate) fn source_identity(source: &SourceConfig) -> Value {
    let common = source.common();
    let mut id = match source {
        SourceConfig::File(f) => json!({ "type": "file", "path": f.path }),
        SourceConfig::Stdin(_) => json!({ "type": "stdin" }),
        SourceConfig::Generator(g) => json!({
            "type": "generator", "shape": g.shape, "seed": g.seed, "count": g.count, "dirty_ratio": g.dirty_ratio,
            "event_time": g.event_time, "impressions": g.impressions,
        }),
        // Offsets are per topic: the brokers may move (the same cluster behind another address).
        SourceConfig::Kafka(k) => json!({ "type": "kafka", "topics": k.topics }),
    };
    // The checkpoint's watermark is in the timestamp field's time, and a
    // join may key on the event key.
    id["timestamp_field"] = json!(common.timestamp_field);
    id["key_field"] = json!(common.key_field);
    id
}

/// The sources' identities of a pipeline.
pub(crate) fn sources_of(p: &LoadedPipeline) -> BTreeMap<String, Value> {
    p.config.sources.iter().map(|(name, s)| (name.clone(), source_identity(s))).collect()
}

/// Every difference between the fingerprints of checkpoint `chk` (`then`)
/// and those of the pipeline being started (`now`), located in `p`.
pub(crate) fn changes(p: &LoadedPipeline, chk: &str, then: &Fingerprints, now: &Fingerprints) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let sections = [("sources", "source", &then.sources, &now.sources), ("steps", "step", &then.steps, &now.steps)];
    for (section, what, then, now) in sections {
        let at = JsonPath::root().key(section);
        let gone: Vec<&str> = then.keys().filter(|n| !now.contains_key(*n)).map(String::as_str).collect();
        let listed = |names: &[&str]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let (missing, held) = if section == "sources" { ("position", "the position") } else { ("state", "the state") };
        for (name, fp) in now {
            let Some(old) = then.get(name) else {
                let message = match gone.as_slice() {
                    [] => format!("{what} `{name}` has no {missing} in checkpoint {chk}: it was added since"),
                    [old] => format!("{what} `{name}` has no {missing} in checkpoint {chk}, which holds {held} of {what} `{old}` (renamed?)"),
                    olds => format!("{what} `{name}` has no {missing} in checkpoint {chk}, which holds {held} of {what}s {}", listed(olds)),
                };
                errors.push(p.error_at(&at.key(name), format!("{message}; {PROCEED}")));
                continue;
            };
            let mut diffs = Vec::new();
            diff(old, fp, &mut Vec::new(), &mut diffs);
            for (path, was, is) in diffs {
                let field = path.join(".");
                let located = path.iter().fold(at.key(name), |at, seg| at.key(seg));
                let message = format!("{what} `{name}`: {field} was {was} in checkpoint {chk}, is {is} now; {PROCEED}");
                errors.push(p.error_at(&located, message));
            }
        }
        // Gone, with no newcomer whose error names them.
        if now.keys().all(|n| then.contains_key(n)) {
            for name in &gone {
                let still_a_step = section == "steps" && p.config.steps.contains_key(*name);
                let (located, now_is) = match still_a_step {
                    true => (at.key(name), "which keeps no state now"),
                    false => (at.clone(), "which is no longer in the pipeline"),
                };
                errors.push(p.error_at(&located, format!("checkpoint {chk} holds {held} of {what} `{name}`, {now_is}; {PROCEED}")));
            }
        }
    }
    errors
}

/// The differences between two fingerprints: (path, was, is), recursing
/// into objects (arrays and scalars compare whole).
fn diff(then: &Value, now: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String, String)>) {
    if let (Value::Object(a), Value::Object(b)) = (then, now) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            path.push(k.clone());
            diff(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), path, out);
            path.pop();
        }
    } else if then != now {
        let show = |v: &Value| if v.is_null() { "none".to_string() } else { v.to_string() };
        out.push((path.clone(), show(then), show(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_listed_by_field_path() {
        let then = json!({"window": {"start_ms": 0, "end_ms": 3_600_000}, "inputs": ["a", "b"], "mode": "left"});
        let now = json!({"window": {"start_ms": 0, "end_ms": 1_800_000}, "inputs": ["a", "c"], "mode": "left", "new": 1});
        let mut out = Vec::new();
        diff(&then, &now, &mut Vec::new(), &mut out);
        let shown: Vec<String> = out.iter().map(|(p, a, b)| format!("{} {a} {b}", p.join("."))).collect();
        assert_eq!(shown, [r#"inputs ["a","b"] ["a","c"]"#, "new none 1", "window.end_ms 3600000 1800000"]);
    }
}
