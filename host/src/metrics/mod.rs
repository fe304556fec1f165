//! Prometheus metrics of a running pipeline (docs/metrics.md), served as
//! `GET /metrics` by the admin API and read by `streamhost top`.
//!
//! One [`Metrics`] per built pipeline: a `prometheus::Registry` whose every
//! series carries the label `pipeline`. Figures come from two places, each
//! counted once:
//! - handles the hot path holds, resolved once per worker and step when the
//!   pipeline is built ([`StepMetrics`], [`WorkerMetrics`], [`JoinMetrics`],
//!   [`CheckpointMetrics`]): a few atomic adds per batch, never a label lookup;
//! - the counters the runtime already keeps for its summary (sources, sinks,
//!   dead letters, plugins, lookups), read when scraped by the collector in
//!   `scrape.rs`, which also works out the lags from "now" then.
//!
//! `settings.metrics.enabled: false` keeps the counts (the run's summary needs
//! them) but skips what only metrics need: the clock reads around every batch
//! (batch durations, busy time), byte sums, state-size samples and checkpoint
//! sizes; `/metrics` then answers 404.

mod scrape;
pub mod text;

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{Counter, CounterVec, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use scrape::Sources;

/// Metrics of the running pipeline (`GET /metrics` on the admin API; see
/// docs/metrics.md).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Collect the figures only metrics need: each batch's duration and the
    /// workers' busy time (two clock reads per batch and step), bytes per step
    /// and sink, state sizes (sampled every few seconds) and checkpoint sizes.
    /// Off, `/metrics` answers 404; the counts of the run's summary are kept
    /// either way.
    pub enabled: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { enabled: true }
    }
}

/// Batch durations: 50 µs to about 13 s.
fn batch_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(50e-6, 2.0, 19).expect("valid buckets")
}

/// Checkpoint durations: 1 ms to about 65 s.
fn checkpoint_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1e-3, 2.0, 17).expect("valid buckets")
}

/// The metrics of one pipeline run.
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    step_events_in: IntCounterVec,
    step_events_out: IntCounterVec,
    step_bytes_in: IntCounterVec,
    step_bytes_out: IntCounterVec,
    step_batch: HistogramVec,
    worker_blocked: CounterVec,
    worker_busy: CounterVec,
    join_held: IntGaugeVec,
    join_fired: IntCounterVec,
    join_matched: IntCounterVec,
    join_late: IntCounterVec,
    state_bytes: IntGaugeVec,
    state_memory: IntGaugeVec,
    state_keys: IntGaugeVec,
    checkpoints: CheckpointMetrics,
    /// Every (step, worker)'s handles, for the output watermarks the
    /// collector turns into lags.
    steps: Mutex<Vec<Arc<StepMetrics>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

/// A step's handles in one worker.
pub struct StepMetrics {
    pub step: String,
    pub worker: String,
    pub events_in: IntCounter,
    pub events_out: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    /// Wall time of each `process_batch`.
    pub batch: Histogram,
    /// The step's output watermark in this worker (`i64::MIN` before any).
    pub watermark: AtomicI64,
}

/// A worker thread's handles.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Time blocked sending on a full channel.
    pub blocked: Counter,
    /// Time in the steps' hooks (batches, watermarks, answers, close).
    pub busy: Counter,
    /// Its state's size, when its stage has state.
    pub state: Option<StateGauges>,
}

/// A worker's state size, sampled by the worker.
#[derive(Clone)]
pub struct StateGauges {
    pub bytes: IntGauge,
    pub memory: IntGauge,
    pub keys: IntGauge,
}

impl StateGauges {
    pub fn set(&self, s: &crate::state::StateStats) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.bytes.set(clamp(s.bytes_on_disk.saturating_add(s.bytes_in_memory)));
        self.memory.set(clamp(s.bytes_in_memory));
        self.keys.set(clamp(s.keys_estimate));
    }
}

/// A window join's handles in one worker.
#[derive(Clone)]
pub struct JoinMetrics {
    /// Main events stored and not fired yet (counted from this run's start).
    pub held: IntGauge,
    /// Main events fired (their window closed).
    pub fired: IntCounter,
    /// Outputs joined with matches (on-window-end: main events with at least
    /// one match; on-match: pairs).
    pub matched: IntCounter,
    /// Events refused as late.
    pub late: IntCounter,
}

/// The coordinator's handles for checkpoints.
#[derive(Clone)]
pub struct CheckpointMetrics {
    pub ok: IntCounter,
    pub failed: IntCounter,
    pub duration: Histogram,
    pub size: IntGauge,
    pub last_success: Gauge,
}

impl Metrics {
    /// A registry for the pipeline `pipeline`, with the families the hot
    /// path takes handles of.
    pub fn new(pipeline: &str, enabled: bool) -> Arc<Metrics> {
        let labels = std::iter::once(("pipeline".to_string(), pipeline.to_string())).collect();
        let registry = Registry::new_custom(None, Some(labels)).expect("a valid pipeline label");
        let counter = |name: &str, help: &str, labels: &[&str]| -> IntCounterVec {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let seconds = |name: &str, help: &str, labels: &[&str]| -> CounterVec {
            let c = CounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| -> IntGaugeVec {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let sw = &["step", "worker"];
        let step_batch = HistogramVec::new(
            HistogramOpts::new("streamhost_step_batch_duration_seconds", "Wall time of each batch a step processed (process_batch).").buckets(batch_buckets()),
            sw,
        )
        .expect("a valid metric");
        registry.register(Box::new(step_batch.clone())).expect("registered once");
        let checkpoint_counts = counter("streamhost_checkpoints_total", "Checkpoints taken, by outcome (ok, failed).", &["outcome"]);
        let duration = Histogram::with_opts(
            HistogramOpts::new("streamhost_checkpoint_duration_seconds", "From a checkpoint's barrier to its record written and confirmed.").buckets(checkpoint_buckets()),
        )
        .expect("a valid metric");
        registry.register(Box::new(duration.clone())).expect("registered once");
        let size = IntGauge::new("streamhost_checkpoint_size_bytes", "Bytes of the last complete checkpoint's folder (hard-linked state files counted in full).").expect("a valid metric");
        registry.register(Box::new(size.clone())).expect("registered once");
        let last_success = Gauge::new("streamhost_checkpoint_last_success_timestamp_seconds", "Unix time of the last complete checkpoint (0: none yet); its age is time() minus it.").expect("a valid metric");
        registry.register(Box::new(last_success.clone())).expect("registered once");
        let checkpoints = CheckpointMetrics {
            ok: checkpoint_counts.with_label_values(&["ok"]),
            failed: checkpoint_counts.with_label_values(&["failed"]),
            duration,
            size,
            last_success,
        };
        Arc::new(Metrics {
            enabled,
            step_events_in: counter("streamhost_step_events_in_total", "Events a step took in.", sw),
            step_events_out: counter("streamhost_step_events_out_total", "Events a step emitted.", sw),
            step_bytes_in: counter("streamhost_step_bytes_in_total", "Bytes (values and keys) of the events a step took in.", sw),
            step_bytes_out: counter("streamhost_step_bytes_out_total", "Bytes (values and keys) of the events a step emitted.", sw),
            step_batch,
            worker_blocked: seconds("streamhost_worker_blocked_seconds_total", "Time a worker spent blocked sending on a full channel (rate() is its backpressure share).", &["worker"]),
            worker_busy: seconds("streamhost_worker_busy_seconds_total", "Time a worker spent in its steps (rate() is its busy share).", &["worker"]),
            join_held: gauge("streamhost_window_join_held_events", "Main events a window join holds until their window closes (counted from this run's start).", sw),
            join_fired: counter("streamhost_window_join_fired_total", "Main events whose window closed.", sw),
            join_matched: counter("streamhost_window_join_matched_total", "Outputs joined with matches (on-window-end: main events with a match; on-match: pairs).", sw),
            join_late: counter("streamhost_window_join_late_total", "Events a window join refused as late.", sw),
            state_bytes: gauge("streamhost_state_size_bytes", "A worker's state: bytes on disk plus bytes in memory (sampled every few seconds and at checkpoints).", sw),
            state_memory: gauge("streamhost_state_memory_bytes", "A worker's state: bytes in memory (memtables, caches, maps, Redis overlay).", sw),
            state_keys: gauge("streamhost_state_keys", "A worker's state: estimated number of keys.", sw),
            checkpoints,
            steps: Mutex::new(Vec::new()),
            registry,
        })
    }

    /// Metrics on (`settings.metrics.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The label of worker `index` of stage `stage`.
    pub fn worker_label(stage: usize, index: usize) -> String {
        format!("{stage}.{index}")
    }

    /// The handles of step `step` in worker `worker`.
    pub fn step(&self, step: &str, worker: &str) -> Arc<StepMetrics> {
        let l = [step, worker];
        let m = Arc::new(StepMetrics {
            step: step.into(),
            worker: worker.into(),
            events_in: self.step_events_in.with_label_values(&l),
            events_out: self.step_events_out.with_label_values(&l),
            bytes_in: self.step_bytes_in.with_label_values(&l),
            bytes_out: self.step_bytes_out.with_label_values(&l),
            batch: self.step_batch.with_label_values(&l),
            watermark: AtomicI64::new(i64::MIN),
        });
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).push(m.clone());
        m
    }

    /// The handles of worker `worker`; `stateful`: the steps sharing its state.
    pub fn worker(&self, worker: &str, stateful: Option<&str>) -> WorkerMetrics {
        let state = stateful.map(|steps| {
            let l = [steps, worker];
            StateGauges { bytes: self.state_bytes.with_label_values(&l), memory: self.state_memory.with_label_values(&l), keys: self.state_keys.with_label_values(&l) }
        });
        WorkerMetrics { blocked: self.worker_blocked.with_label_values(&[worker]), busy: self.worker_busy.with_label_values(&[worker]), state }
    }

    /// The handles of window join `step` in worker `worker`.
    pub fn join(&self, step: &str, worker: &str) -> JoinMetrics {
        let l = [step, worker];
        JoinMetrics {
            held: self.join_held.with_label_values(&l),
            fired: self.join_fired.with_label_values(&l),
            matched: self.join_matched.with_label_values(&l),
            late: self.join_late.with_label_values(&l),
        }
    }

    pub fn checkpoints(&self) -> &CheckpointMetrics {
        &self.checkpoints
    }

    /// Every (step, worker)'s handles so far.
    pub fn steps(&self) -> Vec<Arc<StepMetrics>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds the collector of the figures the runtime keeps (read when scraped).
    pub fn watch(self: &Arc<Self>, sources: Sources) {
        let collector = scrape::Collector::new(sources, Arc::downgrade(self));
        if let Err(e) = self.registry.register(Box::new(collector)) {
            tracing::warn!(error = %e, "metrics: cannot register the pipeline's collector");
        }
    }

    /// The registry (what alert rules gather).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every series in Prometheus's text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics: cannot encode");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl std::fmt::Debug for StepMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepMetrics").field("step", &self.step).field("worker", &self.worker).finish_non_exhaustive()
    }
}

impl StepMetrics {
    /// The output watermark moved (read by the collector as a lag).
    pub fn set_watermark(&self, watermark: i64) {
        self.watermark.store(watermark, Relaxed);
    }
}

impl WorkerMetrics {
    /// Adds `d` to the time blocked.
    pub fn add_blocked(&self, d: Duration) {
        self.blocked.inc_by(d.as_secs_f64());
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Bytes of a batch's events: values and keys (what a source's byte budget
/// counts too).
pub fn batch_bytes(batch: &crate::event::Batch) -> u64 {
    batch.events.iter().map(|e| (e.value.len() + e.key.as_ref().map_or(0, Vec::len)) as u64).sum()
}

/// Sends `msg` on `tx`, counting the time it waits for room into `blocked`:
/// the clock is read only when the channel is full.
pub fn send_counting<T>(tx: &crossbeam_channel::Sender<T>, msg: T, blocked: &Counter) -> Result<(), crossbeam_channel::SendError<T>> {
    match tx.try_send(msg) {
        Ok(()) => Ok(()),
        Err(crossbeam_channel::TrySendError::Disconnected(m)) => Err(crossbeam_channel::SendError(m)),
        Err(crossbeam_channel::TrySendError::Full(m)) => {
            let start = std::time::Instant::now();
            let sent = tx.send(m);
            blocked.inc_by(start.elapsed().as_secs_f64());
            sent
        }
    }
}
