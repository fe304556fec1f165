//! The JSON bodies of the admin API (served by `admin.rs`, read by
//! `client.rs`). Times are microseconds since the Unix epoch (`*_unix_us`)
//! or durations in milliseconds (`*_ms`).

use serde::{Deserialize, Serialize};

use super::canary::CanaryReport;
use crate::plugin::{unix_micros, PluginStatsSnapshot, Slot, SwapRecord, Version};

/// `GET /plugins`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PluginList {
    pub plugins: Vec<PluginView>,
}

/// One plugin slot of the running pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PluginView {
    pub name: String,
    pub world: String,
    /// Bumped by every swap and rollback.
    pub generation: u64,
    /// Runners (plugin instances) of the pipeline that use it.
    pub instances: usize,
    pub current: VersionView,
    /// When the current version was published.
    pub current_since_unix_us: u64,
    /// The version a rollback would put back.
    pub previous: Option<VersionView>,
    /// Whether the current version is still judged for automatic rollback.
    pub on_probation: bool,
    pub swaps: u64,
    pub rollbacks: u64,
    pub auto_rollbacks: u64,
    pub refused: u64,
    /// The last swaps, rollbacks, refusals and promotions, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// One version of a plugin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionView {
    /// SHA-256 (hex) of the component.
    pub hash: String,
    pub loaded_at_unix_us: u64,
    /// Compiling (or reading the cached artifact), linking, first instance.
    pub load_ms: f64,
    /// `compiled`, `disk-cache` or `memory`.
    pub artifact: String,
    /// The config its `init` was given.
    pub config: serde_json::Value,
    pub stats: StatsView,
}

/// A version's counters (all earned by that version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    pub calls: u64,
    pub events_in: u64,
    pub events_out: u64,
    pub errors: u64,
    /// Traps, timeouts and out-of-memory, per input.
    pub traps: u64,
    pub timeouts: u64,
    pub limit_violations: u64,
    pub retried_batches: u64,
    /// Inputs failed without isolation (their batch's isolation gave up).
    #[serde(default)]
    pub not_isolated: u64,
    pub rebuilds: u64,
    pub busy_ms: f64,
    /// When its first call returned (absent before any).
    pub first_call_unix_us: Option<u64>,
}

/// One entry of a slot's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_unix_us: u64,
    /// `swap`, `rollback`, `auto-rollback`, `refused` or `promoted`.
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub generation: u64,
    pub reason: Option<String>,
}

/// `POST /plugins/{name}/swap`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SwapResponse {
    pub plugin: String,
    pub generation: u64,
    /// Hash of the version now current.
    pub version: String,
    /// Hash of the version a rollback would put back.
    pub previous: String,
    pub published_unix_us: u64,
    pub timings: SwapTimingsView,
    pub canary: Option<CanaryView>,
}

/// Where a swap's time went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SwapTimingsView {
    /// `compiled`, `disk-cache` or `memory`.
    pub artifact: String,
    pub compile_ms: f64,
    pub link_ms: f64,
    pub first_instance_ms: f64,
    pub canary_ms: f64,
    /// Starting one spare instance per runner.
    pub prestart_ms: f64,
    /// From the request to the publish.
    pub total_ms: f64,
}

/// What the canary saw.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CanaryView {
    pub events: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
}

/// `POST /plugins/{name}/rollback`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RollbackResponse {
    pub plugin: String,
    pub generation: u64,
    /// Hash of the version now current.
    pub version: String,
    /// Hash of the version rolled back from (a second rollback returns to it).
    pub previous: String,
}

/// Every error: `{"error": "..."}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl PluginView {
    pub fn of(slot: &Slot) -> Self {
        let st = slot.state();
        PluginView {
            name: slot.name().to_string(),
            world: slot.world().as_str().to_string(),
            generation: slot.generation(),
            instances: slot.users(),
            current: VersionView::of(&st.current),
            current_since_unix_us: unix_micros(st.current_since),
            previous: st.previous.as_deref().map(VersionView::of),
            on_probation: slot.on_probation(),
            swaps: st.counts.swaps,
            rollbacks: st.counts.rollbacks,
            auto_rollbacks: st.counts.auto_rollbacks,
            refused: st.counts.refused,
            history: st.history.iter().map(HistoryEntry::of).collect(),
        }
    }
}

impl VersionView {
    pub fn of(v: &Version) -> Self {
        VersionView {
            hash: v.hash().to_string(),
            loaded_at_unix_us: unix_micros(v.loaded_at),
            load_ms: v.plugin.load_time().as_secs_f64() * 1e3,
            artifact: artifact_name(v.plugin.timings().artifact).into(),
            config: v.config.clone(),
            stats: StatsView::of(&v.plugin.stats().snapshot()),
        }
    }
}

impl StatsView {
    pub fn of(s: &PluginStatsSnapshot) -> Self {
        StatsView {
            calls: s.calls,
            events_in: s.events_in,
            events_out: s.events_out,
            errors: s.errors,
            traps: s.traps,
            timeouts: s.timeouts,
            limit_violations: s.limit_violations,
            retried_batches: s.retried_batches,
            not_isolated: s.not_isolated,
            rebuilds: s.rebuilds,
            busy_ms: s.busy_nanos as f64 / 1e6,
            first_call_unix_us: (s.first_call_unix_us != 0).then_some(s.first_call_unix_us),
        }
    }
}

impl HistoryEntry {
    fn of(r: &SwapRecord) -> Self {
        HistoryEntry {
            at_unix_us: unix_micros(r.at),
            action: r.action.as_str().into(),
            from: r.from.clone(),
            to: r.to.clone(),
            generation: r.generation,
            reason: r.reason.clone(),
        }
    }
}

impl From<&CanaryReport> for CanaryView {
    fn from(c: &CanaryReport) -> Self {
        CanaryView { events: c.events, failures: c.failures, first_failure: c.first_failure.clone() }
    }
}

pub(crate) fn artifact_name(a: crate::plugin::ArtifactSource) -> &'static str {
    match a {
        crate::plugin::ArtifactSource::Compiled => "compiled",
        crate::plugin::ArtifactSource::DiskCache => "disk-cache",
        crate::plugin::ArtifactSource::Memory => "memory",
    }
}
