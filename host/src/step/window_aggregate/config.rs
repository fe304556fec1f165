//! The settings of a `window-aggregate` step (pipeline.json) and their
//! checks, each located by its JSON path. Semantics: docs/aggregations.md.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::aggregates::AggregateConfig;
use super::window::Sliding;
use crate::config::locate::JsonPath;
use crate::config::JoinKey;

/// The settings of a `window-aggregate` step.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowAggregateConfig {
    /// Sources or steps this step reads (all are aggregated together; an
    /// aggregate's `input` counts only one of them).
    pub inputs: Vec<String>,
    /// What the events are grouped by: each entry a field path such as
    /// `$.item_id` (its output field is the path's last name), or
    /// `{"name": .., "key": ..}` with `key` a field path or a UDF, and
    /// `inputs` giving another path or UDF per input. Several entries group
    /// by all of them; none: one group over everything.
    #[serde(default)]
    pub keys: Vec<GroupKey>,
    /// The windows, in event time.
    pub window: WindowConfig,
    /// The aggregates each output carries.
    pub aggregates: Vec<AggregateConfig>,
    /// How long (in watermark terms) after a window fired it still takes late
    /// events: each one updates the window, which is emitted again, whole,
    /// with `"update": n`. Events later than that go to the dead letters as
    /// `late`. Default 0: a window fires once.
    #[serde(default)]
    pub allowed_lateness_ms: u64,
    /// Emit each open window's partial result every so many ms of event time
    /// (watermark), marked `"partial": true`, before its final result. Must
    /// divide the window's size and slide. Not for session windows.
    #[serde(default)]
    pub early_fire_ms: Option<u64>,
    /// The per-worker cache of accumulators in front of the state backend,
    /// in MiB (default 64): past it, the oldest panes are written to the
    /// backend and dropped from memory.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// Splits each key's events over `buckets` (a hot key's load then
    /// spreads over the workers): a step `NAME/partial` aggregates per key
    /// and bucket, and this step merges the buckets' results per key and
    /// window. The output is the same as without it. For tumbling and
    /// sliding windows without lateness or early firing.
    #[serde(default)]
    pub skew: Option<SkewConfig>,
    /// Which phase of a split aggregation this step is (set by the loader).
    #[serde(skip)]
    #[schemars(skip)]
    pub phase: Phase,
}

/// How a hot key is split (see `skew`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkewConfig {
    /// Buckets per key, 2 to 1024: best a multiple of the parallelism (each
    /// worker then takes the same share of every key).
    pub buckets: u16,
    /// What picks an event's bucket: `$.field` (a hash of that top-level
    /// field: one value always lands in one bucket, so exact distinct counts
    /// of it stay small per bucket), or `round_robin` (events dealt in turn:
    /// the most even).
    pub salt: String,
}

/// The phase of a split (`skew`) aggregation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Not split.
    #[default]
    Whole,
    /// Per key and bucket; emits accumulators, not results.
    Partial,
    /// Merges the partial step's accumulators per key and window.
    Final,
}

fn default_cache_mb() -> u64 {
    64
}

/// One part of the grouping key.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GroupKey {
    /// A field path such as `$.item_id`, read from every input.
    Path(String),
    /// A named key: a field path or a UDF, the same for every input unless
    /// `inputs` says otherwise.
    Named(NamedKey),
}

/// A named part of the grouping key.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedKey {
    /// The output field.
    pub name: String,
    /// How the key is read (from inputs not in `inputs`).
    #[serde(default)]
    pub key: Option<JoinKey>,
    /// How the key is read from each input, by input name.
    #[serde(default)]
    pub inputs: BTreeMap<String, JoinKey>,
}

impl GroupKey {
    /// The output field this key is written to.
    pub fn name(&self) -> &str {
        match self {
            GroupKey::Path(p) => p.rsplit('.').next().unwrap_or(p),
            GroupKey::Named(n) => &n.name,
        }
    }

    /// How the key is read from input `input`.
    pub fn of_input(&self, input: &str) -> Option<JoinKey> {
        match self {
            GroupKey::Path(p) => Some(JoinKey::Field(p.clone())),
            GroupKey::Named(n) => n.inputs.get(input).or(n.key.as_ref()).cloned(),
        }
    }
}

/// A window kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// Back-to-back windows of `size_ms`: [k·size, (k+1)·size) (+ `offset_ms`).
    Tumbling {
        /// The window's length in ms.
        size_ms: u64,
        /// Shifts the windows' alignment from the epoch.
        #[serde(default)]
        offset_ms: i64,
    },
    /// Windows of `size_ms` starting every `slide_ms` (an event is in
    /// size/slide of them).
    Sliding {
        /// The window's length in ms.
        size_ms: u64,
        /// The distance between window starts in ms (at most `size_ms`).
        slide_ms: u64,
        /// Shifts the windows' alignment from the epoch.
        #[serde(default)]
        offset_ms: i64,
    },
    /// Per key, events less than `gap_ms` apart form one session, the
    /// window [first event, last event + gap).
    Session {
        /// The gap that ends a session, in ms.
        gap_ms: u64,
    },
}

impl WindowAggregateConfig {
    /// The fixed-size window shape (`None` for sessions), or why it is refused.
    pub fn sliding(&self) -> Result<Option<Sliding>, String> {
        let early = self.early_fire_ms.map(|e| e.min(i64::MAX as u64) as i64);
        let int = |v: u64| v.min(i64::MAX as u64) as i64;
        let shape = match self.window {
            WindowConfig::Tumbling { size_ms, offset_ms } => Sliding::tumbling(int(size_ms), offset_ms, early),
            WindowConfig::Sliding { size_ms, slide_ms, offset_ms } => Sliding::new(int(size_ms), int(slide_ms), offset_ms, early),
            WindowConfig::Session { .. } => return Ok(None),
        };
        shape.map(Some).map_err(|e| e.to_string())
    }

    /// Every problem of the settings, located under `at`.
    pub fn check(&self, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
        if self.inputs.is_empty() {
            err(at.key("inputs"), "needs at least one input".into());
        }
        match self.sliding() {
            Err(why) => err(at.key("window"), why),
            Ok(Some(shape)) => {
                if let Some(e) = self.early_fire_ms.map(|e| e as i64) {
                    if shape.size_ms % e != 0 || shape.slide_ms % e != 0 {
                        err(at.key("early_fire_ms"), format!("must divide the window's size ({}) and slide ({})", shape.size_ms, shape.slide_ms));
                    }
                }
            }
            Ok(None) => {
                if let WindowConfig::Session { gap_ms: 0 } = self.window {
                    err(at.key("window").key("gap_ms"), "must be at least 1".into());
                }
                if self.early_fire_ms.is_some() {
                    err(at.key("early_fire_ms"), "early firing is for tumbling and sliding windows".into());
                }
            }
        }
        let mut names = BTreeMap::new();
        for (i, key) in self.keys.iter().enumerate() {
            let at = at.key("keys").index(i);
            if let Some(other) = names.insert(key.name().to_string(), i) {
                err(at.clone(), format!("key `{}` is named like key {other}: give it another `name`", key.name()));
            }
            for input in &self.inputs {
                if key.of_input(input).is_none() {
                    err(at.clone(), format!("says nothing of input `{input}`: give a `key` or `inputs.{input}`"));
                }
            }
            if let GroupKey::Named(n) = key {
                for input in n.inputs.keys().filter(|i| !self.inputs.contains(i)) {
                    err(at.key("inputs").key(input), format!("`{input}` is not one of this step's inputs"));
                }
            }
        }
        if self.aggregates.is_empty() {
            err(at.key("aggregates"), "needs at least one aggregate".into());
        }
        for (i, a) in self.aggregates.iter().enumerate() {
            let at = at.key("aggregates").index(i);
            if let Some(k) = names.get(&a.name) {
                err(at.key("name"), format!("`{}` is also the name of key {k}", a.name));
            }
            if ["window_start", "window_end", "partial", "update"].contains(&a.name.as_str()) {
                err(at.key("name"), format!("`{}` is a field every output has", a.name));
            }
            if self.aggregates[..i].iter().any(|b| b.name == a.name) {
                err(at.key("name"), format!("two aggregates are named `{}`", a.name));
            }
            if let Some(input) = a.input.as_ref().filter(|i| !self.inputs.contains(i)) {
                err(at.key("input"), format!("`{input}` is not one of this step's inputs"));
            }
            if let Some(c) = &a.condition {
                c.check(&at.key("where"), err);
            }
            if let Err(why) = a.check() {
                err(at, why);
            }
        }
        if self.cache_mb == 0 {
            err(at.key("cache_mb"), "must be at least 1".into());
        }
        if let Some(skew) = &self.skew {
            let at = at.key("skew");
            if !(2..=1024).contains(&skew.buckets) {
                err(at.key("buckets"), format!("must be from 2 to 1024, not {}", skew.buckets));
            }
            if skew.salt != "round_robin" && !(skew.salt.starts_with("$.") && skew.salt.len() > 2 && !skew.salt[2..].contains('.')) {
                err(at.key("salt"), format!("`{}` is neither `round_robin` nor a top-level field such as `$.user_id`", skew.salt));
            }
            if matches!(self.window, WindowConfig::Session { .. }) {
                err(at.clone(), "is for tumbling and sliding windows (session windows are not split yet)".into());
            }
            if self.allowed_lateness_ms > 0 || self.early_fire_ms.is_some() {
                err(at, "cannot be combined with allowed_lateness_ms or early_fire_ms (a bucket's update would count twice)".into());
            }
        }
    }

    /// A split (`skew`) aggregation as its two steps: (`NAME/partial`, its
    /// settings), and this step's settings as the final phase.
    pub fn split(&self, name: &str) -> Option<(String, WindowAggregateConfig, WindowAggregateConfig)> {
        self.skew.as_ref()?;
        let partial_name = format!("{name}/partial");
        let partial = WindowAggregateConfig { phase: Phase::Partial, ..self.clone() };
        let last = WindowAggregateConfig { phase: Phase::Final, inputs: vec![partial_name.clone()], ..self.clone() };
        Some((partial_name, partial, last))
    }

    /// The keys of the step computed by UDFs, each with where it is in the
    /// step's settings.
    pub fn udf_keys(&self) -> Vec<(Vec<String>, &crate::config::UdfKeyConfig)> {
        let mut out = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let GroupKey::Named(n) = key else { continue };
            if let Some(JoinKey::Udf(u)) = &n.key {
                out.push((vec!["keys".into(), i.to_string(), "key".into()], u));
            }
            for (input, k) in &n.inputs {
                if let JoinKey::Udf(u) = k {
                    out.push((vec!["keys".into(), i.to_string(), "inputs".into(), input.clone()], u));
                }
            }
        }
        out
    }
}
