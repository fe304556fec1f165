//! The running pipeline's plugins by name, for hot swap.
//!
//! Each plugin has a [`Slot`]: the version runners use now, the previous
//! one (for rollback), a short history of swaps and rollbacks, and a small
//! sample of recent inputs (for canaries). A publish bumps the slot's
//! generation; every runner created through the registry compares it with
//! the generation it runs (one atomic load per batch) and, when it moved,
//! switches to the slot's current version before the batch. A batch already
//! in a plugin call finishes on the version it started with.
//!
//! The registry only moves `Arc`s: loading, checking and starting a new
//! version happen elsewhere (`crate::swap`), off the pipeline thread.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::joiner::{JoinCase, JoinerRunner};
use super::aggregator::AggregatorRunner;
use super::loaded::LoadedPlugin;
use super::transform::TransformRunner;
use super::udf::UdfRunner;
use super::wit::Scalar;
use super::PluginError;
use crate::config::WorldName;
use crate::event::Event;

/// Swaps and rollbacks kept per slot.
pub const HISTORY_LEN: usize = 32;

/// One version of a plugin: the loaded component, the config it was
/// started with, and (in the plugin) its own stats.
#[derive(Debug)]
pub struct Version {
    pub plugin: Arc<LoadedPlugin>,
    pub config: serde_json::Value,
    /// When it finished loading.
    pub loaded_at: SystemTime,
}

impl Version {
    pub fn new(plugin: Arc<LoadedPlugin>, config: serde_json::Value) -> Arc<Self> {
        Arc::new(Version { plugin, config, loaded_at: SystemTime::now() })
    }

    /// SHA-256 (hex) of the component.
    pub fn hash(&self) -> &str {
        self.plugin.hash()
    }
}

/// What happened to a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapAction {
    /// A new version replaced the current one.
    Swap,
    /// An operator put the previous version back.
    Rollback,
    /// The new version failed too often on probation; the previous one was
    /// put back.
    AutoRollback,
    /// A swap was refused (incompatible, failed to load, failed its canary).
    Refused,
    /// The new version passed its probation.
    Promoted,
}

impl SwapAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SwapAction::Swap => "swap",
            SwapAction::Rollback => "rollback",
            SwapAction::AutoRollback => "auto-rollback",
            SwapAction::Refused => "refused",
            SwapAction::Promoted => "promoted",
        }
    }
}

/// One entry of a slot's history.
#[derive(Clone, Debug)]
pub struct SwapRecord {
    pub at: SystemTime,
    pub action: SwapAction,
    /// Hash of the version current before.
    pub from: Option<String>,
    /// Hash of the version current after (or refused).
    pub to: Option<String>,
    /// The slot's generation after it.
    pub generation: u64,
    pub reason: Option<String>,
}

/// Counts of a slot's history since the start (the history itself is cut).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapCounts {
    pub swaps: u64,
    pub rollbacks: u64,
    pub auto_rollbacks: u64,
    pub refused: u64,
}

/// The mutable part of a slot, behind its lock.
#[derive(Debug)]
pub struct SlotState {
    pub current: Arc<Version>,
    pub previous: Option<Arc<Version>>,
    /// When the current version was published.
    pub current_since: SystemTime,
    pub history: VecDeque<SwapRecord>,
    pub counts: SwapCounts,
}

/// A plugin name's place in the running pipeline.
pub struct Slot {
    name: String,
    world: WorldName,
    generation: AtomicU64,
    state: Mutex<SlotState>,
    /// Set while the current version is on probation (read by the rollback
    /// monitor without taking the lock).
    probation: AtomicBool,
    /// Runners created for this slot: how many spare instances a new
    /// version starts before it is published.
    users: AtomicUsize,
    /// UDF functions the pipeline calls: a new version must keep them.
    functions_used: Mutex<BTreeSet<String>>,
    /// Serialises swaps and rollbacks of this slot (held while loading).
    changing: Mutex<()>,
    sampler: Sampler,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("name", &self.name).field("generation", &self.generation()).finish_non_exhaustive()
    }
}

impl Slot {
    fn new(plugin: Arc<LoadedPlugin>, config: serde_json::Value, sample: SampleSettings) -> Self {
        Slot {
            name: plugin.name().to_string(),
            world: plugin.world(),
            generation: AtomicU64::new(0),
            state: Mutex::new(SlotState {
                current: Version::new(plugin, config),
                previous: None,
                current_since: SystemTime::now(),
                history: VecDeque::new(),
                counts: SwapCounts::default(),
            }),
            probation: AtomicBool::new(false),
            users: AtomicUsize::new(0),
            functions_used: Mutex::new(BTreeSet::new()),
            changing: Mutex::new(()),
            sampler: Sampler::new(sample),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn world(&self) -> WorldName {
        self.world
    }

    /// Bumped by every publish (swap or rollback).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The slot's state (current and previous versions, history). A poisoned
    /// lock only means a panic elsewhere while it was held: the data is
    /// still consistent (every update is a few assignments).
    pub fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current(&self) -> Arc<Version> {
        self.state().current.clone()
    }

    pub fn previous(&self) -> Option<Arc<Version>> {
        self.state().previous.clone()
    }

    pub fn on_probation(&self) -> bool {
        self.probation.load(Ordering::Acquire)
    }

    /// Runners that use this slot.
    pub fn users(&self) -> usize {
        self.users.load(Ordering::Relaxed)
    }

    /// Declares that the pipeline calls UDF `function` of this plugin.
    pub fn require_function(&self, function: &str) {
        self.functions_used.lock().unwrap_or_else(|p| p.into_inner()).insert(function.to_string());
    }

    pub fn functions_used(&self) -> BTreeSet<String> {
        self.functions_used.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Held for the whole of a swap or rollback (loading included), so two
    /// never interleave on one slot.
    pub fn lock_changes(&self) -> MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Like [`Slot::lock_changes`], but `None` if a change is under way.
    pub fn try_lock_changes(&self) -> Option<MutexGuard<'_, ()>> {
        match self.changing.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Makes `version` current (the current one becomes the previous) and
    /// tells the runners; a swap puts it on probation. Returns the new
    /// generation.
    pub fn publish(&self, version: Arc<Version>, probation: bool, reason: Option<String>) -> u64 {
        let mut st = self.state();
        let from = st.current.hash().to_string();
        let to = version.hash().to_string();
        st.previous = Some(std::mem::replace(&mut st.current, version));
        st.current_since = SystemTime::now();
        st.counts.swaps += 1;
        self.probation.store(probation, Ordering::Release);
        // Under the lock: a runner reading the generation then the current
        // version (under the lock) sees a matching pair.
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        push(&mut st.history, SwapRecord { at: SystemTime::now(), action: SwapAction::Swap, from: Some(from), to: Some(to), generation, reason });
        generation
    }

    /// Puts the previous version back: current and previous trade places
    /// (so rolling back twice returns to where one started). `None` if
    /// there is no previous version.
    pub fn rollback(&self, action: SwapAction, reason: Option<String>) -> Option<u64> {
        let mut st = self.state();
        let previous = st.previous.take()?;
        let from = st.current.hash().to_string();
        let to = previous.hash().to_string();
        let current = std::mem::replace(&mut st.current, previous);
        st.previous = Some(current);
        st.current_since = SystemTime::now();
        match action {
            SwapAction::AutoRollback => st.counts.auto_rollbacks += 1,
            _ => st.counts.rollbacks += 1,
        }
        self.probation.store(false, Ordering::Release);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        push(&mut st.history, SwapRecord { at: SystemTime::now(), action, from: Some(from), to: Some(to), generation, reason });
        Some(generation)
    }

    /// Ends the current version's probation (it passed).
    pub fn promote(&self, reason: String) {
        let mut st = self.state();
        if self.probation.swap(false, Ordering::AcqRel) {
            let hash = st.current.hash().to_string();
            let generation = self.generation();
            push(&mut st.history, SwapRecord { at: SystemTime::now(), action: SwapAction::Promoted, from: None, to: Some(hash), generation, reason: Some(reason) });
        }
    }

    /// Records a refused swap (the current version keeps running).
    pub fn refused(&self, to: Option<String>, reason: String) {
        let mut st = self.state();
        st.counts.refused += 1;
        let from = Some(st.current.hash().to_string());
        let generation = self.generation();
        push(&mut st.history, SwapRecord { at: SystemTime::now(), action: SwapAction::Refused, from, to, generation, reason: Some(reason) });
    }

    /// The recent inputs kept for canaries, oldest first.
    pub fn sample(&self) -> Vec<SampleBatch> {
        self.sampler.ring.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    fn watch(self: &Arc<Self>) -> (Watch, Arc<LoadedPlugin>) {
        self.users.fetch_add(1, Ordering::Relaxed);
        let st = self.state();
        let watch = Watch { slot: self.clone(), seen: self.generation.load(Ordering::Acquire) };
        (watch, st.current.plugin.clone())
    }
}

fn push(history: &mut VecDeque<SwapRecord>, record: SwapRecord) {
    match &record.reason {
        Some(reason) => tracing::info!(action = record.action.as_str(), generation = record.generation, %reason, "plugin slot changed"),
        None => tracing::info!(action = record.action.as_str(), generation = record.generation, "plugin slot changed"),
    }
    if history.len() == HISTORY_LEN {
        history.pop_front();
    }
    history.push_back(record);
}

/// A runner's link to its slot.
pub(crate) struct Watch {
    slot: Arc<Slot>,
    /// The generation the runner's instance belongs to.
    seen: u64,
}

impl Watch {
    /// The version to switch to, if the slot was changed since the last
    /// look. The cost when nothing changed: one atomic load.
    pub(crate) fn changed(&mut self) -> Option<Arc<LoadedPlugin>> {
        if self.slot.generation.load(Ordering::Acquire) == self.seen {
            return None;
        }
        let st = self.slot.state();
        self.seen = self.slot.generation.load(Ordering::Acquire);
        Some(st.current.plugin.clone())
    }

    /// Offers a copy of (part of) this batch to the slot's sample, which
    /// takes one at most every `sample_every_ms`: `copy` runs only then,
    /// with the most items to keep.
    pub(crate) fn sample(&self, copy: impl FnOnce(usize) -> SampleBatch) {
        let sampler = &self.slot.sampler;
        if sampler.due() {
            sampler.push(copy(sampler.settings.sample_events));
        }
    }
}

/// How the sample of recent inputs is kept.
#[derive(Clone, Copy, Debug)]
pub struct SampleSettings {
    /// Inputs kept (0: no sample).
    pub sample_events: usize,
    /// At most one batch copied per this many milliseconds.
    pub sample_every_ms: u64,
}

impl Default for SampleSettings {
    fn default() -> Self {
        SampleSettings { sample_events: 256, sample_every_ms: 500 }
    }
}

/// Recent inputs of a plugin, as the runners handed them.
#[derive(Clone, Debug)]
pub enum SampleBatch {
    /// Transform inputs.
    Events(Vec<Event>),
    /// UDF rows of one function.
    Rows { function: String, rows: Vec<Vec<Scalar>> },
    /// Joiner cases: main event and its matches by other input, with the
    /// names of those inputs.
    Cases { inputs: Vec<String>, cases: Vec<(Event, Vec<Vec<Event>>)> },
}

impl SampleBatch {
    pub fn len(&self) -> usize {
        match self {
            SampleBatch::Events(e) => e.len(),
            SampleBatch::Rows { rows, .. } => rows.len(),
            SampleBatch::Cases { cases, .. } => cases.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Owned copies of at most `max` of a joiner call's cases.
    pub(crate) fn cases(inputs: &[String], cases: &[JoinCase<'_>], max: usize) -> Self {
        let cases = cases
            .iter()
            .take(max)
            .map(|c| (c.main.clone(), c.matches.iter().map(|g| g.iter().map(|e| (*e).clone()).collect()).collect()))
            .collect();
        SampleBatch::Cases { inputs: inputs.to_vec(), cases }
    }
}

/// A ring of recent input batches, refreshed at most every
/// `sample_every_ms` (never per event: the runner's cost per batch is one
/// clock read and one atomic load).
struct Sampler {
    settings: SampleSettings,
    epoch: Instant,
    /// Milliseconds since `epoch` before which no batch is taken.
    next_at_ms: AtomicU64,
    ring: Mutex<VecDeque<SampleBatch>>,
}

impl Sampler {
    fn new(settings: SampleSettings) -> Self {
        Sampler { settings, epoch: Instant::now(), next_at_ms: AtomicU64::new(0), ring: Mutex::new(VecDeque::new()) }
    }

    fn due(&self) -> bool {
        if self.settings.sample_events == 0 {
            return false;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let next = self.next_at_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_at_ms
                .compare_exchange(next, now + self.settings.sample_every_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Adds a batch, dropping the oldest ones past `sample_events` inputs.
    fn push(&self, batch: SampleBatch) {
        if batch.is_empty() {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.push_back(batch);
        let mut total: usize = ring.iter().map(SampleBatch::len).sum();
        while total > self.settings.sample_events && ring.len() > 1 {
            total -= ring.pop_front().map_or(0, |b| b.len());
        }
    }
}

/// The slots of a running pipeline's plugins.
#[derive(Debug, Default)]
pub struct PluginRegistry {
    slots: BTreeMap<String, Arc<Slot>>,
}

impl PluginRegistry {
    /// One slot per loaded plugin, with the config it was started with.
    pub fn new(
        plugins: impl IntoIterator<Item = (Arc<LoadedPlugin>, serde_json::Value)>,
        sample: SampleSettings,
    ) -> Self {
        let slots = plugins
            .into_iter()
            .map(|(plugin, config)| (plugin.name().to_string(), Arc::new(Slot::new(plugin, config, sample))))
            .collect();
        PluginRegistry { slots }
    }

    pub fn slot(&self, name: &str) -> Option<&Arc<Slot>> {
        self.slots.get(name)
    }

    pub fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.values()
    }

    /// A transform runner that follows the slot's swaps.
    pub fn transform(&self, name: &str) -> Result<TransformRunner, PluginError> {
        let (watch, plugin) = self.watch(name)?;
        Ok(plugin.transform()?.watching(watch))
    }

    /// A UDF runner that follows the slot's swaps.
    pub fn udf(&self, name: &str) -> Result<UdfRunner, PluginError> {
        let (watch, plugin) = self.watch(name)?;
        Ok(plugin.udf()?.watching(watch))
    }

    /// A joiner runner that follows the slot's swaps.
    pub fn joiner(&self, name: &str) -> Result<JoinerRunner, PluginError> {
        let (watch, plugin) = self.watch(name)?;
        Ok(plugin.joiner()?.watching(watch))
    }

    /// An aggregator runner that follows the slot's swaps (it offers no
    /// sample: a canary cannot replay an aggregator's inputs alone).
    pub fn aggregator(&self, name: &str) -> Result<AggregatorRunner, PluginError> {
        let (watch, plugin) = self.watch(name)?;
        Ok(plugin.aggregator()?.watching(watch))
    }

    fn watch(&self, name: &str) -> Result<(Watch, Arc<LoadedPlugin>), PluginError> {
        let slot = self.slots.get(name).ok_or_else(|| PluginError::Init(format!("no plugin named `{name}` is loaded")))?;
        Ok(slot.watch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(events: usize, every_ms: u64) -> Sampler {
        Sampler::new(SampleSettings { sample_events: events, sample_every_ms: every_ms })
    }

    fn events(n: usize) -> SampleBatch {
        SampleBatch::Events((0..n).map(|i| Event::from_value(format!("{i}").into_bytes(), i as i64)).collect())
    }

    #[test]
    fn swap_sampler_takes_one_batch_per_period_and_keeps_the_newest() {
        let s = sampler(10, 60_000);
        assert!(s.due(), "the first batch is taken at once");
        assert!(!s.due(), "then not again within the period");
        let s = sampler(10, 0);
        for n in [4, 4, 4] {
            assert!(s.due());
            s.push(events(n));
        }
        let ring = s.ring.lock().unwrap();
        assert_eq!(ring.iter().map(SampleBatch::len).collect::<Vec<_>>(), vec![4, 4], "oldest dropped past 10 inputs");
        drop(ring);
        assert!(!sampler(0, 0).due(), "sample_events 0 turns sampling off");
    }

    #[test]
    fn swap_history_is_bounded() {
        let mut h = VecDeque::new();
        for generation in 0..(HISTORY_LEN as u64 + 5) {
            push(&mut h, SwapRecord { at: SystemTime::now(), action: SwapAction::Refused, from: None, to: None, generation, reason: None });
        }
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h.front().map(|r| r.generation), Some(5));
    }
}
