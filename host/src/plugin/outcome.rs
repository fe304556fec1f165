//! What a plugin made of each input, and the counters of a plugin.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::Event;

/// The result of a transform for one input event.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Zero or more output events.
    Ok(Vec<Event>),
    /// The input event failed alone (dead-letter it with the reason).
    Failed(Failure),
}

impl From<Result<Vec<Event>, Failure>> for Outcome {
    fn from(r: Result<Vec<Event>, Failure>) -> Self {
        r.map_or_else(Outcome::Failed, Outcome::Ok)
    }
}

/// Why one input failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure { kind, message: message.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// Kinds of per-input failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The plugin returned an error for this input.
    Error,
    /// The plugin trapped (a panic, an invalid memory access...).
    Trap,
    /// The call ran past `batch_timeout_ms`.
    Timeout,
    /// The plugin tried to grow its memory past `memory_mb`.
    OutOfMemory,
    /// The outputs broke `max_outputs_per_event` or `max_output_bytes_per_batch`.
    Limit,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfMemory => "out-of-memory",
            FailureKind::Limit => "limit",
        }
    }
}

/// Counters of one loaded plugin (one version), by the step whose runners
/// count into them: each runner holds its step's [`PluginCounters`] and adds
/// to them per call, and the version's figures are their sum.
#[derive(Debug, Default)]
pub struct PluginStats {
    steps: std::sync::Mutex<Vec<(std::sync::Arc<str>, std::sync::Arc<PluginCounters>)>>,
}

/// What the runners of one plugin version in one step did (`""`: runners
/// made for no step, such as a swap's spare instances before a runner takes them).
#[derive(Debug, Default)]
pub struct PluginCounters {
    /// Calls into the plugin (batches, plus the calls isolating failed ones).
    pub calls: AtomicU64,
    /// Inputs handed to the plugin (events or UDF rows), retries not counted.
    pub events_in: AtomicU64,
    /// Outputs produced (events or UDF results).
    pub events_out: AtomicU64,
    /// Inputs the plugin returned an error for.
    pub errors: AtomicU64,
    /// Inputs that trapped, timed out or ran out of memory.
    pub traps: AtomicU64,
    /// Of `traps`, the inputs that timed out.
    pub timeouts: AtomicU64,
    /// Inputs whose outputs broke a limit.
    pub limit_violations: AtomicU64,
    /// Batches that failed as a whole and were isolated (see `isolation`).
    pub retried_batches: AtomicU64,
    /// Inputs failed without being isolated: the isolation of their batch
    /// gave up (the plugin failed everything tried, or the budget ran out).
    pub not_isolated: AtomicU64,
    /// Instances rebuilt after a trap.
    pub rebuilds: AtomicU64,
    /// Time spent inside plugin calls, in nanoseconds.
    pub busy_nanos: AtomicU64,
    /// When the first call into the plugin returned, in microseconds since
    /// the Unix epoch (0: none yet). After a hot swap this is when the new
    /// version processed its first batch.
    pub first_call_unix_us: AtomicU64,
    /// Linear memory of the live instances, in bytes.
    pub memory_bytes: AtomicU64,
    /// The largest linear memory (all memories of an instance) any instance
    /// had after a call, in bytes.
    pub peak_memory_bytes: AtomicU64,
    /// Fuel the calls used (about one unit per wasm instruction); 0 unless
    /// the runtime meters fuel (`PluginRuntime::metering_fuel`).
    pub fuel_consumed: AtomicU64,
}

/// A plain copy of [`PluginStats`] (or of one step's [`PluginCounters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginStatsSnapshot {
    pub calls: u64,
    pub events_in: u64,
    pub events_out: u64,
    pub errors: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub limit_violations: u64,
    pub retried_batches: u64,
    pub not_isolated: u64,
    pub rebuilds: u64,
    pub busy_nanos: u64,
    pub first_call_unix_us: u64,
    pub memory_bytes: u64,
    pub peak_memory_bytes: u64,
    pub fuel_consumed: u64,
}

impl PluginStatsSnapshot {
    /// Inputs that failed for any reason: errors, traps (with timeouts and
    /// out of memory) and output limits.
    pub fn failures(&self) -> u64 {
        self.errors + self.traps + self.limit_violations
    }

    fn add(mut self, o: &PluginStatsSnapshot) -> Self {
        self.calls += o.calls;
        self.events_in += o.events_in;
        self.events_out += o.events_out;
        self.errors += o.errors;
        self.traps += o.traps;
        self.timeouts += o.timeouts;
        self.limit_violations += o.limit_violations;
        self.retried_batches += o.retried_batches;
        self.not_isolated += o.not_isolated;
        self.rebuilds += o.rebuilds;
        self.busy_nanos += o.busy_nanos;
        self.memory_bytes += o.memory_bytes;
        // The largest instance of any step.
        self.peak_memory_bytes = self.peak_memory_bytes.max(o.peak_memory_bytes);
        self.fuel_consumed += o.fuel_consumed;
        self.first_call_unix_us = match (self.first_call_unix_us, o.first_call_unix_us) {
            (0, t) | (t, 0) => t,
            (a, b) => a.min(b),
        };
        self
    }
}

impl PluginStats {
    /// The version's figures: the sum over its steps.
    pub fn snapshot(&self) -> PluginStatsSnapshot {
        self.by_step().iter().fold(PluginStatsSnapshot::default(), |sum, (_, s)| sum.add(s))
    }

    /// The figures of each step using the version (`""`: no step).
    pub fn by_step(&self) -> Vec<(std::sync::Arc<str>, PluginStatsSnapshot)> {
        self.lock().iter().map(|(step, c)| (step.clone(), c.snapshot())).collect()
    }

    /// The counters of step `step` (made on first use; a runner takes them
    /// once, never per call).
    pub fn counters(&self, step: &str) -> std::sync::Arc<PluginCounters> {
        let mut steps = self.lock();
        if let Some((_, c)) = steps.iter().find(|(s, _)| &**s == step) {
            return c.clone();
        }
        let c = std::sync::Arc::new(PluginCounters::default());
        steps.push((step.into(), c.clone()));
        c
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(std::sync::Arc<str>, std::sync::Arc<PluginCounters>)>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl PluginCounters {
    pub fn snapshot(&self) -> PluginStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PluginStatsSnapshot {
            calls: get(&self.calls),
            events_in: get(&self.events_in),
            events_out: get(&self.events_out),
            errors: get(&self.errors),
            traps: get(&self.traps),
            timeouts: get(&self.timeouts),
            limit_violations: get(&self.limit_violations),
            retried_batches: get(&self.retried_batches),
            not_isolated: get(&self.not_isolated),
            rebuilds: get(&self.rebuilds),
            busy_nanos: get(&self.busy_nanos),
            first_call_unix_us: get(&self.first_call_unix_us),
            memory_bytes: get(&self.memory_bytes),
            peak_memory_bytes: get(&self.peak_memory_bytes),
            fuel_consumed: get(&self.fuel_consumed),
        }
    }

    /// Records that a call returned, if it is the first one.
    pub(crate) fn mark_first_call(&self) {
        if self.first_call_unix_us.load(Ordering::Relaxed) == 0 {
            self.first_call_unix_us.store(unix_micros(std::time::SystemTime::now()), Ordering::Relaxed);
        }
    }

    /// Counts one failed input under its kind.
    pub(crate) fn count_failure(&self, kind: FailureKind) {
        if kind == FailureKind::Timeout {
            PluginStats::add(&self.timeouts, 1);
        }
        let counter = match kind {
            FailureKind::Error => &self.errors,
            FailureKind::Limit => &self.limit_violations,
            FailureKind::Trap | FailureKind::Timeout | FailureKind::OutOfMemory => &self.traps,
        };
        PluginStats::add(counter, 1);
    }
}

/// Microseconds since the Unix epoch (0 for a time before it).
pub fn unix_micros(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
