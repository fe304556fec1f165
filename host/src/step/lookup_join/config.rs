//! The settings of a `lookup-join` step, and their checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::locate::JsonPath;
use crate::config::JoinKey;
use crate::lookup::{BackendConfig, RedisValues};

/// Adds to each event what a dimension table holds for its key (a user's
/// features, an item's category): the table on Redis or PostgreSQL, behind a
/// per-worker cache, asked without blocking the worker (see
/// docs/lookup-join.md).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupJoinConfig {
    /// Sources or steps this step reads.
    pub inputs: Vec<String>,
    /// Each event's lookup key: a field path such as `$.uid` (a string is its
    /// text, a number or boolean its JSON text), or a UDF computing it. An
    /// event without one follows `on_miss`.
    pub key: JoinKey,
    /// How the table's key is made from the event's: `{}` stands for it
    /// (e.g. `user:{}`; default `{}`).
    #[serde(default)]
    pub key_template: Option<String>,
    /// `left` (default): every event goes on, with the table's value when
    /// there is one; `inner`: only events the table has a value for.
    #[serde(default)]
    pub mode: LookupMode,
    /// What becomes of an event the table has no value for (or no key):
    /// `emit` it without the value (with `fields` or `as`, those fields are
    /// null), `drop` it (counted as filtered), or `dead-letter` it (kind
    /// `lookup-miss`). Default: `emit` in `left` mode, `drop` in `inner`.
    #[serde(default)]
    pub on_miss: Option<MissPolicy>,
    /// The table's copies: one, or several (A, B, ...) holding the same
    /// data. Each request goes to one copy, chosen by observed latency and
    /// error rate, and to the next when it fails or is slow; a circuit
    /// breaker per copy (`breaker`) stops asking one that keeps failing.
    pub backends: Vec<BackendConfig>,
    /// The value (a JSON object) is added member by member, each name with
    /// this prefix (default: none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Only these members of the value are added (with `prefix`); on a
    /// Redis hash only these fields are read (HMGET).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// The whole value is added as this one field (instead of its members;
    /// a value that is not JSON is added as a string).
    #[serde(default, rename = "as")]
    pub as_field: Option<String>,
    /// The per-worker cache of the table's answers.
    #[serde(default)]
    pub cache: LookupCacheConfig,
    /// The longest one copy may take to answer a request, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Quick retries of a failed request (a timeout, an error, every copy
    /// failing), after `backoff_ms`, doubled each time.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The wait before the first retry, in ms.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// When the retries are spent (the table is unavailable): `wait` (the
    /// request is tried again every second at most until the table answers;
    /// the events wait and, once `max_in_flight` wait, the pipeline waits
    /// too: nothing is lost), or `{"miss_after_ms": N}`: tried on for N ms
    /// from the first attempt, then its events follow `on_miss`.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// The circuit breaker of each copy (with several `backends`).
    #[serde(default)]
    pub breaker: BreakerSettings,
    /// Events waiting for answers per worker, at most; past it the worker
    /// reads no input until answers come (backpressure).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Keys per request, at most (a batch's misses beyond it go in several).
    #[serde(default = "default_max_keys_per_request")]
    pub max_keys_per_request: usize,
    /// Events leave as soon as their answers are in, not in input order
    /// (events of one key still keep their order).
    #[serde(default)]
    pub unordered: bool,
}

fn default_timeout_ms() -> u64 {
    200
}
fn default_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    10
}
fn default_max_in_flight() -> usize {
    16_384
}
fn default_max_keys_per_request() -> usize {
    1_000
}

/// Which events a lookup join emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LookupMode {
    /// Every event, with the value when the table has one.
    #[default]
    Left,
    /// Only events the table has a value for.
    Inner,
}

/// What becomes of an event without a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MissPolicy {
    /// Emitted without the value.
    Emit,
    /// Dropped, and counted as filtered.
    Drop,
    /// Dead-lettered (kind `lookup-miss`, or `lookup-unavailable`).
    DeadLetter,
}

/// What a request does once its retries are spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Tried again every second at most until the table answers.
    #[default]
    Wait,
    /// Tried on for this many ms from its first attempt, then its events
    /// follow `on_miss`.
    MissAfterMs(u64),
}

/// The cache of a table's answers, one per worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LookupCacheConfig {
    /// Bytes of keys and values (plus 64 per entry) kept, least recently
    /// used out first; 0 caches nothing.
    pub max_bytes: usize,
    /// How long a value is kept after it was read, in ms.
    pub ttl_ms: u64,
    /// How long "no such key" is kept, in ms (0: not kept).
    pub miss_ttl_ms: u64,
}

impl Default for LookupCacheConfig {
    fn default() -> Self {
        LookupCacheConfig { max_bytes: 64 << 20, ttl_ms: 60_000, miss_ttl_ms: 10_000 }
    }
}

/// When a copy's circuit breaker opens, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive failed requests that open it.
    pub failures: u32,
    /// How long it stays open before one trial request, in ms (doubled after
    /// each failed trial, up to `open_max_ms`).
    pub open_ms: u64,
    /// The longest it stays open between two trials, in ms.
    pub open_max_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings { failures: 3, open_ms: 1_000, open_max_ms: 30_000 }
    }
}

impl LookupJoinConfig {
    /// The table the step reads, as one string: steps with the same one read
    /// the same table (the same copies, read the same way).
    pub fn table_identity(&self) -> String {
        serde_json::json!({ "backends": self.backends, "fields": self.hash_fields() }).to_string()
    }

    /// The settings steps reading one table must agree on (they share its
    /// connections, and per worker its cache), by name.
    pub fn table_settings(&self) -> [(&'static str, serde_json::Value); 7] {
        fn v<T: Serialize>(x: &T) -> serde_json::Value {
            serde_json::to_value(x).unwrap_or_default()
        }
        [
            ("cache", v(&self.cache)),
            ("timeout_ms", v(&self.timeout_ms)),
            ("retries", v(&self.retries)),
            ("backoff_ms", v(&self.backoff_ms)),
            ("on_unavailable", v(&self.on_unavailable)),
            ("breaker", v(&self.breaker)),
            ("max_keys_per_request", v(&self.max_keys_per_request)),
        ]
    }

    /// The fields a Redis hash is read with (HMGET), when the step names them.
    pub fn hash_fields(&self) -> Option<&[String]> {
        let hashes = self.backends.iter().any(|b| matches!(b, BackendConfig::Redis(r) if r.values == RedisValues::Hashes));
        if hashes && self.as_field.is_none() {
            self.fields.as_deref()
        } else {
            None
        }
    }

    /// What becomes of an event without a value.
    pub fn miss_policy(&self) -> MissPolicy {
        self.on_miss.unwrap_or(match self.mode {
            LookupMode::Left => MissPolicy::Emit,
            LookupMode::Inner => MissPolicy::Drop,
        })
    }

    /// Problems of the settings, reported at `at` (the step) + their path.
    pub fn check(&self, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
        if self.backends.is_empty() {
            err(at.key("backends"), "needs at least one backend (a copy of the table)".into());
        }
        let mut hashes = None;
        for (i, b) in self.backends.iter().enumerate() {
            let at = at.key("backends").index(i);
            b.check(&at, err);
            let h = matches!(b, BackendConfig::Redis(r) if r.values == RedisValues::Hashes);
            if *hashes.get_or_insert(h) != h {
                err(at, "every copy of the table must keep its values the same way (`values`)".into());
            }
        }
        if let Some(t) = &self.key_template {
            if !t.contains("{}") {
                err(at.key("key_template"), format!("`{t}` has no `{{}}` where the event's key goes"));
            }
        }
        if self.mode == LookupMode::Inner && self.on_miss == Some(MissPolicy::Emit) {
            err(at.key("on_miss"), "an `inner` lookup join emits no event without a value: use `left` mode, or `drop` / `dead-letter`".into());
        }
        if let Some(name) = &self.as_field {
            if name.is_empty() {
                err(at.key("as"), "must name a field".into());
            }
            if self.prefix.is_some() {
                err(at.key("prefix"), "`as` adds the whole value as one field: give `as`, or `prefix` (and `fields`), not both".into());
            }
            if self.fields.is_some() {
                err(at.key("fields"), "`as` adds the whole value as one field: give `as`, or `fields` (and `prefix`), not both".into());
            }
        }
        if let Some(fields) = &self.fields {
            if fields.is_empty() {
                err(at.key("fields"), "name at least one field (or leave `fields` out to add them all)".into());
            }
            for (i, f) in fields.iter().enumerate() {
                if f.is_empty() {
                    err(at.key("fields").index(i), "a field name must not be empty".into());
                }
            }
        }
        if self.timeout_ms == 0 {
            err(at.key("timeout_ms"), "must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            err(at.key("max_in_flight"), "must be at least 1".into());
        }
        if self.max_keys_per_request == 0 {
            err(at.key("max_keys_per_request"), "must be at least 1".into());
        }
        if self.breaker.failures == 0 {
            err(at.key("breaker").key("failures"), "must be at least 1".into());
        }
    }
}

