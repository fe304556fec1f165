//! pipeline.json: the declarative description of a job.
//!
//! Every struct denies unknown fields, and its doc comments become the JSON
//! Schema that `streamhost schema` prints. Relative paths are resolved against
//! the directory holding pipeline.json. Loading and checking live in
//! [`load`]; the structs here only describe the shape.

mod load;
pub mod locate;
#[cfg(test)]
mod fuzz_tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use load::{load_pipeline, parse_pipeline, ConfigError, ConfigErrors, LoadedPipeline};
pub use locate::locate;

/// A streamhost pipeline: sources feed a DAG of steps whose outputs go to sinks.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Optional name shown in logs and summaries.
    #[serde(default)]
    pub name: Option<String>,
    /// WebAssembly plugins available to steps, by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Where events come from, by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Processing steps, by name. A step reads from sources or other steps.
    #[serde(default)]
    pub steps: BTreeMap<String, StepConfig>,
    /// Where results go, by name.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Where rejected events go, with the reason (default: a file
    /// `dead-letter.jsonl` next to pipeline.json).
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Engine settings.
    #[serde(default)]
    pub settings: Settings,
}

/// Engine-wide settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Maximum events per batch handed between steps and to plugins.
    pub batch_size: usize,
    /// A partial batch is flushed after this many milliseconds (latency bound
    /// for slow sources such as stdin or a rate-limited generator).
    pub batch_linger_ms: u64,
    /// Batches buffered between a source and the pipeline (backpressure bound).
    pub channel_batches: usize,
    /// Worker threads running the steps (default: the number of cores). Each
    /// runs the steps for its share of the key groups with its own plugin
    /// instances and its own share of the state; 1 runs every step on one
    /// thread. A checkpoint taken at one parallelism restores at another.
    pub parallelism: Option<usize>,
    /// Key groups events are hashed into (default 128): the unit of state a
    /// worker owns, and the most workers a keyed step can use. Fixed for the
    /// life of a state: a checkpoint restores only with the same number.
    pub max_parallelism: usize,
    /// Bytes of events (values and keys) buffered between all sources and
    /// the pipeline, at most (default 64 MiB): a source waits before sending
    /// a batch that would exceed it. A single batch larger than the bound is
    /// sent alone once nothing else is in flight.
    pub channel_bytes: usize,
    /// Directory for precompiled plugin artifacts (default: the user's cache
    /// directory, `~/.cache/streamhost/artifacts`).
    pub artifact_cache: Option<PathBuf>,
    /// Bound on the artifact cache's size, in MiB (default 1024): past it the
    /// least recently used artifacts are removed, never one in use.
    pub artifact_cache_max_mb: u64,
    /// Where stateful steps (joins) keep their state.
    pub state: StateSettings,
    /// Periodic checkpoints (off when absent). With them a run resumes from
    /// its last checkpoint automatically (`streamhost run --fresh` starts
    /// over), and file sinks are exactly once across a crash.
    pub checkpoint: Option<CheckpointSettings>,
    /// Hot swap of plugins in a running pipeline: the automatic rollback
    /// rule and the canary (see docs/hot-swap.md).
    pub hot_swap: HotSwapSettings,
    /// The admin HTTP API (list, swap and roll back plugins of the running
    /// pipeline; its metrics). Off when absent.
    pub admin: Option<AdminSettings>,
    /// Prometheus metrics, served as `GET /metrics` by the admin API
    /// (docs/metrics.md). On by default.
    pub metrics: crate::metrics::MetricsSettings,
    /// Scale-out over a Kafka consumer group (off when absent): several
    /// processes running this pipeline share its Kafka partitions and keep
    /// their checkpoints in one directory all of them reach (docs/kafka.md).
    pub scale_out: Option<ScaleOutSettings>,
    /// Alert rules on the pipeline's own metrics (delay, broken stream,
    /// fluctuation, dead-letter and plugin failure rates, checkpoint
    /// failures), to the log, the admin API and a webhook (docs/alerts.md).
    /// Off when absent.
    pub alerts: Option<crate::alerts::AlertSettings>,
}

/// Scale-out over the consumer group of the pipeline's Kafka sources.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleOutSettings {
    /// This process's name in the group, unique among the processes running
    /// the pipeline: its checkpoints, state and dead letters are kept apart
    /// under it. `streamhost run --instance` and `STREAMHOST_INSTANCE` set it
    /// too; default: the host name and the process id.
    pub instance: Option<String>,
}

/// Hot swap: what makes a new plugin version be rolled back, and how it can
/// be tried first on recent input.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HotSwapSettings {
    /// Automatic rollback of a new version that fails too often.
    pub rollback: RollbackSettings,
    /// Trying a new version on a sample of recent input before the swap.
    pub canary: CanarySettings,
    /// Uploaded components kept in `uploads/` of the artifact cache directory
    /// (default 16): past it the least recently uploaded are removed, never
    /// the current or previous version of a plugin of this pipeline.
    pub max_uploads: usize,
}

impl Default for HotSwapSettings {
    fn default() -> Self {
        HotSwapSettings { rollback: RollbackSettings::default(), canary: CanarySettings::default(), max_uploads: 16 }
    }
}

/// After a swap the new version is on probation for its first
/// `window_events` inputs: once it has seen `min_events`, if the share of
/// its inputs that failed (errors, traps, timeouts, out of memory, output
/// limits) exceeds `max_failure_rate`, the previous version is put back.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackSettings {
    /// Roll back automatically at all.
    pub enabled: bool,
    /// Inputs the new version stays on probation for.
    pub window_events: u64,
    /// Inputs seen before the failure rate is judged.
    pub min_events: u64,
    /// Failed inputs / inputs (0..1) above which the swap is rolled back.
    pub max_failure_rate: f64,
}

impl Default for RollbackSettings {
    fn default() -> Self {
        RollbackSettings { enabled: true, window_events: 1000, min_events: 100, max_failure_rate: 0.5 }
    }
}

/// The canary: before a swap the new version runs, in a store of its own and
/// off the worker threads, on a sample of the plugin's recent input; the
/// swap is refused if too much of it fails. Outputs are discarded.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CanarySettings {
    /// Run the canary on every swap (otherwise only when a swap asks for it).
    pub always: bool,
    /// Recent inputs kept per plugin (the sample).
    pub sample_events: usize,
    /// The sample is refreshed with (part of) one batch at most this often,
    /// in milliseconds.
    pub sample_every_ms: u64,
    /// Failed inputs / sampled inputs (0..1) above which the swap is refused.
    pub max_failure_rate: f64,
}

impl Default for CanarySettings {
    fn default() -> Self {
        CanarySettings { always: false, sample_events: 256, sample_every_ms: 500, max_failure_rate: 0.5 }
    }
}

/// The admin HTTP API. Bound to the loopback address by default; binding to
/// any other address requires a `token`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// `IP:PORT` to listen on; port 0 picks a free port (the address actually
    /// bound is printed to stderr and written to `addr_file`).
    pub bind: String,
    /// When set, every request needs `Authorization: Bearer <token>`.
    /// Required when `bind` is not a loopback address.
    pub token: Option<String>,
    /// File the bound address is written to while the pipeline runs
    /// (default: `admin.addr` next to pipeline.json).
    pub addr_file: Option<PathBuf>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings { bind: "127.0.0.1:0".into(), token: None, addr_file: None }
    }
}

/// Periodic consistent snapshots of state, source positions and sink commits.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSettings {
    /// Milliseconds between two checkpoints.
    pub interval_ms: u64,
    /// Directory of the checkpoints (default: `checkpoints` next to
    /// pipeline.json).
    pub dir: Option<PathBuf>,
    /// How many complete checkpoints are kept.
    pub keep: usize,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings { interval_ms: 10_000, dir: None, keep: 2 }
    }
}

impl Settings {
    /// The worker threads to run: `parallelism`, or the number of cores.
    pub fn workers(&self) -> usize {
        self.parallelism
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .clamp(1, self.max_parallelism.max(1))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_size: 1024,
            batch_linger_ms: 100,
            channel_batches: 4,
            parallelism: None,
            max_parallelism: 128,
            channel_bytes: 64 << 20,
            artifact_cache: None,
            artifact_cache_max_mb: 1024,
            state: StateSettings::default(),
            checkpoint: None,
            hot_swap: HotSwapSettings::default(),
            admin: None,
            metrics: crate::metrics::MetricsSettings::default(),
            scale_out: None,
            alerts: None,
        }
    }
}

/// The state of stateful steps (joins). Opened only if a step has state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// Which backend holds it.
    pub backend: StateBackendKind,
    /// Directory of the on-disk state (default: `state` next to
    /// pipeline.json).
    pub dir: Option<PathBuf>,
    /// Tuning of the RocksDB backend (memory bounds).
    pub rocksdb: crate::state::RocksOptions,
    /// The Redis backend's server, key prefix, time-to-live and memory bound
    /// (only with `"backend": "redis"`; default: a server on 127.0.0.1:6379).
    pub redis: Option<crate::state::RedisOptions>,
}

/// The state backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackendKind {
    /// RocksDB in a local directory: state larger than memory, bounded RAM.
    #[default]
    Rocksdb,
    /// Ordered maps in memory: fast, bounded by RAM.
    Memory,
    /// A Redis server (`redis`): no local state, so a restarted process, here
    /// or on another machine, resumes from the checkpoint Redis holds. Each
    /// checkpoint writes every worker's state with the source positions it
    /// covers in one transaction (docs/checkpoints.md).
    Redis,
}

/// A plugin: a WebAssembly component, or a plugin source folder built on demand.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Path to a component (`.wasm`), or to a plugin source folder (Rust,
    /// Python or Go, with a `plugin.toml`) that is built when stale.
    pub path: PathBuf,
    /// The world the plugin must export; checked at load time.
    #[serde(default)]
    pub world: Option<WorldName>,
    /// Free-form configuration handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Capabilities granted to the plugin. Nothing is granted by default.
    #[serde(default)]
    pub grants: PluginGrants,
}

/// The plugin worlds defined in `wit/plugin.wit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorldName {
    /// ETL: batches of events in, zero or more events per input out.
    Transform,
    /// Scalar functions called by name.
    Udf,
    /// Turns a main event and its window-join matches into output events
    /// (a `window-join` step's `joiner`).
    Joiner,
    /// A user-defined aggregate function: accumulators the host stores,
    /// folded and merged by the plugin (a `window-aggregate` step's UDAF).
    Aggregator,
}

impl WorldName {
    pub fn as_str(self) -> &'static str {
        match self {
            WorldName::Transform => "transform",
            WorldName::Udf => "udf",
            WorldName::Joiner => "joiner",
            WorldName::Aggregator => "aggregator",
        }
    }
}

/// Resource limits of one plugin instance.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Maximum linear memory of an instance, in MiB; growing past it traps.
    pub memory_mb: u64,
    /// Time budget of one batch call, in milliseconds (epoch interruption).
    pub batch_timeout_ms: u64,
    /// Maximum output events a transform may return for one input event.
    pub max_outputs_per_event: usize,
    /// Maximum total bytes of output values a transform may return for one
    /// batch (guards the host against a plugin that floods it).
    pub max_output_bytes_per_batch: usize,
    /// Maximum size of one accumulator an aggregator plugin returns, in
    /// bytes; the events that would grow it past this fail (kind `limit`).
    pub max_state_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mb: 256,
            batch_timeout_ms: 2_000,
            max_outputs_per_event: 1_000,
            max_output_bytes_per_batch: 256 << 20,
            max_state_bytes: 64 << 10,
        }
    }
}

/// Capabilities a plugin may use. Everything is denied unless granted here;
/// guests that import WASI get a context with nothing else in it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginGrants {
    /// Real wall and monotonic clocks (otherwise a logical clock: fixed start,
    /// one microsecond per read, no real time).
    pub clock: bool,
    /// Environment variables passed through from the host, by name.
    pub env: Vec<String>,
    /// Host directories made visible to the plugin.
    pub dirs: Vec<DirGrant>,
    /// Outbound TCP/UDP and name lookups.
    pub network: bool,
}

/// One host directory visible to a plugin.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Directory on the host.
    pub host: PathBuf,
    /// Path the plugin sees it under.
    pub guest: String,
    /// Allow writes (default: read-only).
    #[serde(default)]
    pub writable: bool,
}

/// A source of events. Each source's settings are beside its implementation.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SourceConfig {
    /// A file of JSON lines, read once from the start.
    File(crate::source::FileSourceConfig),
    /// JSON lines from standard input, until end of input.
    Stdin(crate::source::StdinSourceConfig),
    /// Synthetic events for tests and load: deterministic for a seed.
    Generator(crate::source::GeneratorSourceConfig),
    /// Records of Kafka topics (offsets in the checkpoints).
    Kafka(crate::source::KafkaSourceConfig),
}

pub use crate::source::{GeneratorEventTime, JoinImpressions};

impl SourceConfig {
    /// The settings every source has.
    pub fn common(&self) -> &SourceCommon {
        match self {
            SourceConfig::File(c) => &c.common,
            SourceConfig::Stdin(c) => &c.common,
            SourceConfig::Generator(c) => &c.common,
            SourceConfig::Kafka(c) => &c.common,
        }
    }
}

/// Settings every source has.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceCommon {
    /// The fields each record must have; a record that violates it goes to the
    /// dead-letter sink before any step sees it.
    #[serde(default)]
    pub schema: Option<RecordSchema>,
    /// Top-level field holding the event time: milliseconds since the Unix
    /// epoch (default: the time the record was read, which makes event time
    /// processing time).
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Top-level field whose value becomes the event key.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Records larger than this many bytes are dead-lettered whole, unparsed
    /// (default 1 MiB).
    #[serde(default)]
    pub max_record_bytes: Option<usize>,
    /// How far out of order event times may arrive, in milliseconds. The
    /// source's watermark trails the largest event time it has read by this
    /// much: it promises that no event at or before the watermark follows.
    /// Events that break the promise are late (see `window_join`).
    #[serde(default)]
    pub max_out_of_orderness_ms: u64,
    /// A source that sends nothing for this many milliseconds is idle: it no
    /// longer holds back the watermark of the steps it feeds, so one quiet
    /// stream cannot freeze a join. It takes part again with its next event.
    /// Default: never idle.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// What a read error of this source (a missing or unreadable file) does.
    /// An error is never taken for the end of the input.
    #[serde(default)]
    pub on_error: OnSourceError,
    /// The backoff of `on_error: "retry"` (these defaults when absent).
    #[serde(default)]
    pub retry: Option<RetrySettings>,
}

impl SourceCommon {
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.unwrap_or(1 << 20)
    }

    /// The retry policy, when the source retries on errors.
    pub fn retry_policy(&self) -> Option<RetrySettings> {
        (self.on_error == OnSourceError::Retry).then(|| self.retry.clone().unwrap_or_default())
    }
}

/// What a source's read error does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnSourceError {
    /// The pipeline fails: the other sources are stopped, what is in flight
    /// is drained, a final checkpoint (with checkpoints on) records this
    /// source as not finished at its position, and `run` exits non-zero
    /// naming the error. A restart resumes the source where it stood.
    #[default]
    Fail,
    /// The source is opened again at its position after a backoff (see
    /// `retry`) while the pipeline waits; it holds back the watermarks it
    /// feeds meanwhile, idle timeout or not. When the attempts run out, the
    /// pipeline fails as with `fail`.
    Retry,
}

/// Exponential backoff between attempts of a source that failed: the first
/// wait is `initial_ms`, each next one twice the last, at most `max_ms`.
/// Reading anything resets the backoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// The first wait, in milliseconds (at least 1).
    pub initial_ms: u64,
    /// The longest wait, in milliseconds (at least `initial_ms`).
    pub max_ms: u64,
    /// Attempts after the first failure before the pipeline fails; 0
    /// retries forever.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings { initial_ms: 500, max_ms: 30_000, max_attempts: 10 }
    }
}

/// Shapes of generated events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorShape {
    /// A raw impression log line of about 300 bytes.
    #[default]
    Impression,
    /// A raw click log line.
    Click,
    /// For the training-data join: an impression of about 300 bytes with a
    /// unique `request_id` (`q` and the impression's index in 12 digits),
    /// `ts`, `user_id`, `item_id` and a `features` object. User and item
    /// derive from the index, so the matching clicks carry the same ones.
    JoinImpression,
    /// For the training-data join: a click of about 300 bytes with `ts`,
    /// `dwell_ms` and the `request_id` (and user and item) of an impression
    /// 0 to `impressions.max_delay_ms` before it (see `impressions`).
    JoinClick,
}

/// The expected fields of a JSON object record.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSchema {
    /// Expected top-level fields by name.
    pub fields: BTreeMap<String, FieldSchema>,
    /// Whether fields not listed are allowed (default true).
    #[serde(default = "yes")]
    pub allow_extra_fields: bool,
}

fn yes() -> bool {
    true
}

/// One expected field.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSchema {
    /// JSON type of the field.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether the field must be present (and not null).
    #[serde(default)]
    pub required: bool,
}

/// JSON types a field may be declared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FieldType {
    String,
    /// A whole number.
    Int,
    /// Any number.
    Number,
    Bool,
    Object,
    Array,
    /// Any JSON value.
    Any,
}

/// A processing step. `inputs` name sources or other steps.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StepConfig {
    /// Runs a `transform` plugin over batches of events.
    Transform {
        /// Sources or steps this step reads.
        inputs: Vec<String>,
        /// Name of a plugin in `plugins`.
        plugin: String,
    },
    /// Computes a field of each JSON event with a UDF plugin function.
    Udf {
        /// Sources or steps this step reads.
        inputs: Vec<String>,
        /// Name of a plugin in `plugins`.
        plugin: String,
        /// Function to call.
        function: String,
        /// Arguments: a string starting with `$.` is a field path of the
        /// event (`$.user.id`), anything else is a literal.
        #[serde(default)]
        args: Vec<serde_json::Value>,
        /// Top-level field the result is written to.
        output: String,
        /// A row with a null argument for a parameter the function declares
        /// typed (not `any` or `null`): `call` (default) passes the null to the
        /// function, which may refuse it (the row is dead-lettered); `null`
        /// does not call it and writes null (SQL's RETURNS NULL ON NULL INPUT).
        #[serde(default)]
        null_input: UdfNullInput,
    },
    /// Keeps the events whose JSON value meets a condition on its fields
    /// (`where`); the others are filtered out and counted.
    Filter(crate::step::FilterConfig),
    /// Keeps (`fields`) or removes (`drop`) top-level fields of JSON events
    /// and renames them (`rename`).
    Project(crate::step::ProjectConfig),
    /// A SQL WHERE and projection on JSON events, evaluated natively
    /// (`where`, `columns`; see docs/select-step.md).
    Select(crate::step::SelectConfig),
    /// A transform compiled into a program that embeds streamhost as a
    /// library and registers it by name (`BuildOptions::natives`; the
    /// benchmarks use it). `streamhost run` registers none: use `filter` or
    /// `project`, or a plugin.
    Native {
        /// Sources or steps this step reads.
        inputs: Vec<String>,
        /// Registered name of the native transform.
        name: String,
    },
    /// Joins a main input with one or more other inputs on a key, within a
    /// window of event time relative to each main event (see
    /// docs/window-join.md for the exact semantics).
    WindowJoin(WindowJoinConfig),
    /// Adds to each event what a dimension table (Redis, PostgreSQL) holds
    /// for its key, through a per-worker cache, without blocking the worker
    /// (see docs/lookup-join.md).
    LookupJoin(crate::step::LookupJoinConfig),
    /// Per grouping key and window of event time (tumbling, sliding), the
    /// aggregates of its events, emitted when the watermark closes the window
    /// (see docs/aggregations.md).
    WindowAggregate(crate::step::WindowAggregateConfig),
}

/// The settings of a `window-join` step.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowJoinConfig {
    /// The first input is the main one (e.g. impressions); the others are
    /// joined to it (e.g. clicks, likes).
    pub inputs: Vec<String>,
    /// The join key of each input, by input name: a field path such as
    /// `$.request_id` (a string is its text, a number or boolean its JSON
    /// text), or a UDF computing it. An input not listed joins on its event
    /// key.
    #[serde(default)]
    pub keys: BTreeMap<String, JoinKey>,
    /// The window, relative to each main event's time.
    pub window: JoinWindow,
    /// `inner`: main events without a match are not emitted; `left`: they
    /// are, marked unmatched.
    #[serde(default)]
    pub mode: JoinMode,
    /// When joined events are emitted.
    #[serde(default)]
    pub emit: EmitPolicy,
    /// How long after a window's end (in watermark terms) it stays open for
    /// late events; firing waits as long.
    #[serde(default)]
    pub allowed_lateness_ms: u64,
    /// Width of the time buckets the other inputs' state is laid out in
    /// (default: the window's length). Expiry deletes whole buckets. A main
    /// event scans one range per bucket its window covers, and an other event
    /// is kept up to one bucket longer than its windows need it, so it must
    /// be between window / 64 and 64 × window (a window shorter than 1 s
    /// counting as 1 s for the upper bound).
    #[serde(default)]
    pub bucket_ms: Option<u64>,
    /// How a main event and its matches become output events.
    #[serde(default)]
    pub joiner: JoinerConfig,
    /// The most matches of each other input joined to one main event
    /// (default 1000): the earliest ones, in event-time then arrival order.
    /// Matches past it are counted, not joined: the output says how many
    /// (merge joiner: `PREFIXtruncated`; every joiner: the header
    /// `streamhost-truncated`), and so do the step's stats and the run's
    /// summary. Bounds the memory a hot key takes when its window fires.
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
}

fn default_max_matches() -> usize {
    1000
}

/// The most buckets a join window may span (`bucket_ms` at least window / this):
/// a main event scans one range per bucket, and `bucket_ms` at most this many
/// windows (other events are kept up to a bucket past their last window).
pub const MAX_BUCKETS_PER_WINDOW: u64 = 64;

/// How an input's join key is found.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum JoinKey {
    /// A field path such as `$.request_id`.
    Field(String),
    /// A function of a `udf` plugin, called once per batch with a row of
    /// arguments per event; its result is the key (a string its text, bytes
    /// as they are, other scalars their JSON text; null: no key).
    Udf(UdfKeyConfig),
}

/// A join key computed by a UDF.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UdfKeyConfig {
    /// Name of a `udf` plugin in `plugins`.
    pub plugin: String,
    /// Function to call.
    pub function: String,
    /// Arguments: a string starting with `$.` is a field path of the event,
    /// anything else a literal.
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
}

/// What a `udf` step does with a null argument of a typed parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UdfNullInput {
    /// Pass it to the function.
    #[default]
    Call,
    /// Skip the call; the result is null.
    Null,
}

/// A window of event time relative to a main event at time `t`: other events
/// at times `t + start_ms ..= t + end_ms` (both bounds inclusive) match.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWindow {
    /// Start of the window relative to the main event, in ms (may be negative).
    pub start_ms: i64,
    /// End of the window relative to the main event, in ms (at least `start_ms`).
    pub end_ms: i64,
}

/// Which main events a join emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JoinMode {
    /// Only main events with at least one match.
    #[default]
    Inner,
    /// Every main event; those without a match are emitted unmatched.
    Left,
}

/// When a join emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EmitPolicy {
    /// Each main event once, when the watermark passes its window's end, with
    /// all its matches.
    #[default]
    OnWindowEnd,
    /// One output per (main, match) pair as soon as both have arrived; in
    /// `left` mode an unmatched main event is emitted at its window's end.
    OnMatch,
}

/// How a main event and its matches become output events.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum JoinerConfig {
    /// Merges the JSON objects into one: the main event's fields as they are,
    /// each other input's fields under a prefix (default `INPUT.`), a later
    /// match overwriting an earlier one's fields, plus `PREFIXcount`, the
    /// number of matches of that input.
    Merge {
        /// Field-name prefix per other input, by input name.
        #[serde(default)]
        prefixes: BTreeMap<String, String>,
    },
    /// A `joiner` plugin (world `joiner` of wit/plugin.wit) makes the
    /// output: it is called with batches of main events and all their
    /// matches, and returns zero or more events per main event (e.g. one
    /// training sample, labelled by whether a click matched). An error or a
    /// trap dead-letters that main event alone.
    Plugin {
        /// Name of the plugin, from `plugins`; its world must be `joiner`.
        plugin: String,
    },
}

impl Default for JoinerConfig {
    fn default() -> Self {
        JoinerConfig::Merge { prefixes: BTreeMap::new() }
    }
}

impl StepConfig {
    pub fn inputs(&self) -> &[String] {
        match self {
            StepConfig::Transform { inputs, .. }
            | StepConfig::Udf { inputs, .. }
            | StepConfig::Native { inputs, .. }
            | StepConfig::Filter(crate::step::FilterConfig { inputs, .. })
            | StepConfig::Project(crate::step::ProjectConfig { inputs, .. })
            | StepConfig::Select(crate::step::SelectConfig { inputs, .. })
            | StepConfig::WindowJoin(WindowJoinConfig { inputs, .. })
            | StepConfig::LookupJoin(crate::step::LookupJoinConfig { inputs, .. })
            | StepConfig::WindowAggregate(crate::step::WindowAggregateConfig { inputs, .. }) => inputs,
        }
    }

    /// The world the plugin named by [`StepConfig::plugin`] must export.
    pub fn plugin_world(&self) -> WorldName {
        match self {
            StepConfig::Udf { .. } => WorldName::Udf,
            StepConfig::WindowJoin(_) => WorldName::Joiner,
            StepConfig::Transform { .. }
            | StepConfig::Native { .. }
            | StepConfig::Filter(_)
            | StepConfig::Project(_)
            | StepConfig::Select(_)
            | StepConfig::LookupJoin(_)
            | StepConfig::WindowAggregate(_) => {
                WorldName::Transform
            }
        }
    }

    /// The plugin this step calls, if any (a window join's plugin joiner).
    pub fn plugin(&self) -> Option<&str> {
        match self {
            StepConfig::Transform { plugin, .. } | StepConfig::Udf { plugin, .. } => Some(plugin),
            StepConfig::WindowJoin(WindowJoinConfig { joiner: JoinerConfig::Plugin { plugin }, .. }) => Some(plugin),
            StepConfig::Native { .. }
            | StepConfig::Filter(_)
            | StepConfig::Project(_)
            | StepConfig::Select(_)
            | StepConfig::WindowJoin(_)
            | StepConfig::LookupJoin(_)
            | StepConfig::WindowAggregate(_) => None,
        }
    }

    /// The keys of this step computed by UDFs, each with where it is in the
    /// step's settings (`keys.INPUT` of a join, `key` of a lookup, `keys[i].key`
    /// of an aggregate; a segment of digits is an array index).
    pub fn udf_keys(&self) -> Vec<(Vec<String>, &UdfKeyConfig)> {
        match self {
            StepConfig::WindowJoin(j) => j
                .keys
                .iter()
                .filter_map(|(input, k)| match k {
                    JoinKey::Udf(u) => Some((vec!["keys".to_string(), input.clone()], u)),
                    JoinKey::Field(_) => None,
                })
                .collect(),
            StepConfig::LookupJoin(l) => match &l.key {
                JoinKey::Udf(u) => vec![(vec!["key".to_string()], u)],
                JoinKey::Field(_) => Vec::new(),
            },
            StepConfig::WindowAggregate(a) => a.udf_keys(),
            _ => Vec::new(),
        }
    }
}

/// Where results go. Each sink's settings are beside its implementation.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SinkConfig {
    /// A file of lines (created or truncated at start).
    File(crate::sink::FileSinkConfig),
    /// Standard output.
    Stdout(crate::sink::StdoutSinkConfig),
    /// Discards events (benchmarks).
    Null(crate::sink::NullSinkConfig),
    /// Records of a Kafka topic, through an idempotent producer (at least once).
    Kafka(crate::sink::KafkaSinkConfig),
}

impl SinkConfig {
    pub fn inputs(&self) -> &[String] {
        match self {
            SinkConfig::File(c) => &c.inputs,
            SinkConfig::Stdout(c) => &c.inputs,
            SinkConfig::Null(c) => &c.inputs,
            SinkConfig::Kafka(c) => &c.inputs,
        }
    }
}

pub use crate::sink::SinkFormat;

/// The dead-letter sink: one JSON object per rejected event with its origin,
/// the step that rejected it and the reason.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DeadLetterConfig {
    /// A file of JSON lines.
    File {
        /// Path of the file.
        path: PathBuf,
    },
    /// Standard error.
    Stderr,
}
