//! One live plugin instance and its supervision: time budget per call,
//! classification of traps, and rebuilding from the `InstancePre` after one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use super::isolation::Metered;
use super::loaded::{LoadedPlugin, WorldPre};
use super::outcome::{Failure, FailureKind, PluginCounters, PluginStats};
use super::sandbox::StoreState;
use super::wit::{Aggregator, FunctionSignature, Joiner, Transform, Udf};
use crate::config::WorldName;

/// The generated bindings of a world, as the supervisor needs them.
pub(crate) trait WorldBindings: Sized + Send + 'static {
    fn instantiate(pre: &WorldPre, store: &mut Store<StoreState>) -> Result<Self, String>;
    fn init(&self, store: &mut Store<StoreState>, config: &str) -> wasmtime::Result<Result<(), String>>;
    /// Moves a live instance into / out of the plugin's spare slot.
    fn into_spare(live: Live<Self>) -> Spare;
    fn from_spare(spare: Spare) -> Option<Live<Self>>;
}

/// An instance with its store. Dropped as a whole after any trap.
pub(crate) struct Live<B> {
    pub(crate) store: Store<StoreState>,
    pub(crate) bindings: B,
}

/// The instance `load` started to prove the plugin works, kept for the first
/// runner so it does not instantiate and init a second time.
pub(crate) enum Spare {
    Transform(Live<Transform>),
    Udf(Live<Udf>),
    Joiner(Live<Joiner>),
    Aggregator(Live<Aggregator>),
}

/// Implements [`WorldBindings`] for the bindings of one world.
macro_rules! world_bindings {
    ($bindings:ident, $variant:ident, $name:literal) => {
        impl WorldBindings for $bindings {
            fn instantiate(pre: &WorldPre, store: &mut Store<StoreState>) -> Result<Self, String> {
                match pre {
                    WorldPre::$variant(pre) => pre.instantiate(store).map_err(|e| format!("{e:#}")),
                    other => Err(format!("the plugin is a {}, not a {}", other.world().as_str(), $name)),
                }
            }
            fn init(&self, store: &mut Store<StoreState>, config: &str) -> wasmtime::Result<Result<(), String>> {
                self.call_init(store, config)
            }
            fn into_spare(live: Live<Self>) -> Spare {
                Spare::$variant(live)
            }
            fn from_spare(spare: Spare) -> Option<Live<Self>> {
                match spare {
                    Spare::$variant(live) => Some(live),
                    _ => None,
                }
            }
        }
    };
}

world_bindings!(Transform, Transform, "transform");
world_bindings!(Udf, Udf, "udf");
world_bindings!(Joiner, Joiner, "joiner");
world_bindings!(Aggregator, Aggregator, "aggregator");

/// Creates a store, instantiates the plugin and calls `init(config)` under
/// the plugin's time budget.
pub(crate) fn start<B: WorldBindings>(plugin: &LoadedPlugin) -> Result<Live<B>, Failure> {
    let state = StoreState::new(plugin.name_arc(), plugin.limits(), plugin.grants())
        .map_err(|e| Failure::new(FailureKind::Error, e))?;
    let mut store = Store::new(plugin.engine(), state);
    // Counted as no step's until a runner takes the instance.
    store.data_mut().limiter.count_into(plugin.stats().counters(""));
    store.limiter(|state| &mut state.limiter);
    arm(plugin, &mut store);
    let bindings = B::instantiate(plugin.pre(), &mut store).map_err(|e| {
        let oom = store.data_mut().limiter.take_hit();
        Failure::new(
            if oom { FailureKind::OutOfMemory } else { FailureKind::Trap },
            format!("instantiation failed: {e}"),
        )
    })?;
    arm(plugin, &mut store);
    let result = bindings.init(&mut store, plugin.config_json());
    match settle(plugin, &mut store, result) {
        Ok(Ok(())) => Ok(Live { store, bindings }),
        Ok(Err(message)) => Err(Failure::new(FailureKind::Error, format!("init returned an error: {message}"))),
        Err(failure) => Err(Failure::new(failure.kind, format!("init failed: {}", failure.message))),
    }
}

/// Starts a spare instance of `plugin`'s world (for the runner that will
/// next switch to it).
pub(crate) fn start_spare(plugin: &LoadedPlugin) -> Result<Spare, Failure> {
    match plugin.world() {
        WorldName::Transform => start::<Transform>(plugin).map(Spare::Transform),
        WorldName::Udf => start::<Udf>(plugin).map(Spare::Udf),
        WorldName::Joiner => start::<Joiner>(plugin).map(Spare::Joiner),
        WorldName::Aggregator => start::<Aggregator>(plugin).map(Spare::Aggregator),
    }
}

/// Asks a UDF instance for its function list (once, at load time: it does
/// not count as a call in the plugin's stats).
pub(crate) fn udf_functions(plugin: &LoadedPlugin, live: &mut Live<Udf>) -> Result<Vec<FunctionSignature>, Failure> {
    arm(plugin, &mut live.store);
    let result = live.bindings.call_functions(&mut live.store);
    settle(plugin, &mut live.store, result)
}

/// Starts the time budget of one call: the epoch deadline stops wasm code,
/// the call deadline bounds guest timers (host code, see `timers`).
fn arm(plugin: &LoadedPlugin, store: &mut Store<StoreState>) {
    store.set_epoch_deadline(plugin.deadline_ticks());
    if plugin.fuel {
        // Cannot fail: the engine consumes fuel.
        let _ = store.set_fuel(super::engine::FUEL_PER_CALL);
    }
    let state = store.data_mut();
    state.call_deadline = Instant::now() + Duration::from_millis(plugin.limits().batch_timeout_ms);
    state.take_budget_exceeded();
    state.last_error_log = None;
}

/// The result of one call, as a [`Failure`] if it trapped or if it waited
/// on a timer past its budget (whatever it returned afterwards).
fn settle<R>(plugin: &LoadedPlugin, store: &mut Store<StoreState>, result: wasmtime::Result<R>) -> Result<R, Failure> {
    match result {
        Ok(_) if store.data_mut().take_budget_exceeded() => Err(timeout(plugin)),
        Ok(r) => Ok(r),
        Err(e) => Err(classify(plugin, &e, store)),
    }
}

/// Owns at most one live instance of a plugin and rebuilds it after a trap.
pub(crate) struct Supervisor<B: WorldBindings> {
    plugin: Arc<LoadedPlugin>,
    /// The step it runs for, and its counters in that step (the version's
    /// figures are their sum).
    step: Arc<str>,
    counters: Arc<PluginCounters>,
    live: Option<Live<B>>,
    /// Why the last rebuild failed; set for the rest of the current batch so
    /// a plugin whose init keeps failing is not re-instantiated per record.
    rebuild_failure: Option<Failure>,
    /// Time the failed calls of the current batch spent (a timeout counts as
    /// one whole budget): what the isolation's budget is measured in.
    failed_time: Duration,
}

impl<B: WorldBindings> Supervisor<B> {
    /// Takes the plugin's spare instance, or starts a new one.
    pub(crate) fn new(plugin: Arc<LoadedPlugin>) -> Result<Self, Failure> {
        Self::for_step(plugin, "".into())
    }

    /// [`Supervisor::new`], counting into step `step`'s counters.
    fn for_step(plugin: Arc<LoadedPlugin>, step: Arc<str>) -> Result<Self, Failure> {
        let mut live = match plugin.take_spare().and_then(B::from_spare) {
            Some(live) => live,
            None => start::<B>(&plugin)?,
        };
        let counters = plugin.stats().counters(&step);
        live.store.data_mut().limiter.count_into(counters.clone());
        Ok(Supervisor { plugin, step, counters, live: Some(live), rebuild_failure: None, failed_time: Duration::ZERO })
    }

    /// Counts from now on into step `step`'s counters (a runner is made
    /// first, then given to its step).
    pub(crate) fn set_step(&mut self, step: &str) {
        self.step = step.into();
        self.counters = self.plugin.stats().counters(step);
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().limiter.count_into(self.counters.clone());
        }
    }

    pub(crate) fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// Moves to another version of the plugin (a hot swap), between
    /// batches: the old instance is dropped, the new one is the version's
    /// spare (started off the pipeline thread) or, failing that, started
    /// now. If it cannot start, the failure surfaces on the next call, as
    /// for a rebuild, and counts against the new version.
    pub(crate) fn switch_to(&mut self, plugin: Arc<LoadedPlugin>) {
        let step = self.step.clone();
        *self = Supervisor::for_step(plugin.clone(), step.clone()).unwrap_or_else(|f| {
            tracing::warn!(plugin = plugin.name(), error = %f, "cannot start the new plugin version");
            let counters = plugin.stats().counters(&step);
            Supervisor { plugin, step, counters, live: None, rebuild_failure: None, failed_time: Duration::ZERO }
        });
    }

    /// Its counters (its version's, in its step).
    pub(crate) fn stats(&self) -> &PluginCounters {
        &self.counters
    }

    /// Call at the start of each batch: a rebuild may be attempted again.
    pub(crate) fn begin_batch(&mut self) {
        self.rebuild_failure = None;
        self.failed_time = Duration::ZERO;
    }

    /// Runs one call into the plugin under the time budget. On a trap the
    /// instance is dropped (the next call rebuilds it) and the trap is
    /// returned classified.
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(&B, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, Failure> {
        let started = Instant::now();
        let result = self.call_live(f);
        if let Err(failure) = &result {
            self.failed_time += if failure.kind == FailureKind::Timeout { self.budget() } else { started.elapsed() };
        }
        result
    }

    fn budget(&self) -> Duration {
        Duration::from_millis(self.plugin.limits().batch_timeout_ms)
    }

    fn call_live<R>(
        &mut self,
        f: impl FnOnce(&B, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, Failure> {
        self.ensure_live()?;
        let Some(live) = self.live.as_mut() else {
            return Err(Failure::new(FailureKind::Trap, "no plugin instance"));
        };
        let stats = &self.counters;
        PluginStats::add(&stats.calls, 1);
        arm(&self.plugin, &mut live.store);
        let started = Instant::now();
        let result = f(&live.bindings, &mut live.store);
        PluginStats::add(&stats.busy_nanos, started.elapsed().as_nanos() as u64);
        stats.peak_memory_bytes.fetch_max(live.store.data().limiter.bytes, std::sync::atomic::Ordering::Relaxed);
        if self.plugin.fuel {
            let left = live.store.get_fuel().unwrap_or(super::engine::FUEL_PER_CALL);
            PluginStats::add(&stats.fuel_consumed, super::engine::FUEL_PER_CALL.saturating_sub(left));
        }
        stats.mark_first_call();
        let settled = settle(&self.plugin, &mut live.store, result);
        if settled.is_err() {
            self.live = None;
        }
        settled
    }

    fn ensure_live(&mut self) -> Result<(), Failure> {
        if self.live.is_some() {
            return Ok(());
        }
        if let Some(failure) = &self.rebuild_failure {
            return Err(failure.clone());
        }
        PluginStats::add(&self.counters.rebuilds, 1);
        match start::<B>(&self.plugin) {
            Ok(mut live) => {
                live.store.data_mut().limiter.count_into(self.counters.clone());
                self.live = Some(live);
                Ok(())
            }
            Err(f) => {
                tracing::warn!(plugin = self.plugin.name(), error = %f, "cannot rebuild the plugin instance");
                // The record is not at fault: an init that refused is reported as a trap.
                let kind = if f.kind == FailureKind::Error { FailureKind::Trap } else { f.kind };
                let failure = Failure::new(kind, format!("the plugin instance could not be rebuilt: {}", f.message));
                self.rebuild_failure = Some(failure.clone());
                Err(failure)
            }
        }
    }
}

impl<B: WorldBindings> Metered for Supervisor<B> {
    fn failed_time(&self) -> Duration {
        self.failed_time
    }
    fn call_budget(&self) -> Duration {
        self.budget()
    }
    fn broken(&self) -> bool {
        self.rebuild_failure.is_some()
    }
    fn count_not_isolated(&self, n: usize) {
        PluginStats::add(&self.stats().not_isolated, n as u64);
    }
}

/// Tells what made a call fail.
fn classify(plugin: &LoadedPlugin, error: &wasmtime::Error, store: &mut Store<StoreState>) -> Failure {
    tracing::debug!(plugin = plugin.name(), error = format!("{error:?}"), "plugin call failed");
    if store.data_mut().limiter.take_hit() {
        return Failure::new(
            FailureKind::OutOfMemory,
            format!("the plugin's memory limit of {} MiB was exceeded", plugin.limits().memory_mb),
        );
    }
    if store.data_mut().take_budget_exceeded() {
        return timeout(plugin);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => timeout(plugin),
        Some(trap) => {
            // What the plugin said last before dying (a Rust panic's message).
            let logged = store.data_mut().last_error_log.take().map_or(String::new(), |m| format!("; it logged: {m}"));
            Failure::new(FailureKind::Trap, format!("the plugin trapped: {}{logged}", describe_trap(*trap)))
        }
        None => Failure::new(FailureKind::Trap, format!("the plugin call failed: {}", error.root_cause())),
    }
}

fn timeout(plugin: &LoadedPlugin) -> Failure {
    Failure::new(
        FailureKind::Timeout,
        format!("the call ran past its time budget of {} ms", plugin.limits().batch_timeout_ms),
    )
}

fn describe_trap(trap: Trap) -> String {
    match trap {
        Trap::UnreachableCodeReached => format!("{trap} (a panic or abort in the plugin)"),
        Trap::StackOverflow => format!("{trap} (too deep recursion in the plugin)"),
        _ => trap.to_string(),
    }
}
