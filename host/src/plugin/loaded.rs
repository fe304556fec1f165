//! A compiled, linked plugin ready to be instantiated by runners.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Engine;

use super::instance::{start_spare, Spare, Supervisor};
use super::outcome::PluginStats;
use super::sandbox::StoreState;
use super::transform::TransformRunner;
use super::udf::UdfRunner;
use super::joiner::JoinerRunner;
use super::aggregator::AggregatorRunner;
use super::wit::{AggregatorPre, FunctionSignature, JoinerPre, TransformPre, UdfPre};
use super::PluginError;
use crate::config::{PluginGrants, PluginLimits, WorldName};

/// The pre-linked instance factory of a plugin's world.
pub(crate) enum WorldPre {
    Transform(TransformPre<StoreState>),
    Udf(UdfPre<StoreState>),
    Joiner(JoinerPre<StoreState>),
    Aggregator(AggregatorPre<StoreState>),
}

impl WorldPre {
    pub(crate) fn world(&self) -> WorldName {
        match self {
            WorldPre::Transform(_) => WorldName::Transform,
            WorldPre::Udf(_) => WorldName::Udf,
            WorldPre::Joiner(_) => WorldName::Joiner,
            WorldPre::Aggregator(_) => WorldName::Aggregator,
        }
    }
}

/// Where `load` got the compiled code from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactSource {
    /// Compiled now (and written to the artifact cache).
    Compiled,
    /// Read from the on-disk artifact cache.
    DiskCache,
    /// Already loaded by this runtime (same content hash).
    Memory,
}

/// How long loading took, by phase.
#[derive(Clone, Copy, Debug)]
pub struct LoadTimings {
    pub artifact: ArtifactSource,
    /// Compiling, or reading and checking the cached artifact.
    pub compile: Duration,
    /// Linking and type-checking against the world.
    pub link: Duration,
    /// Instantiating and calling `init` once.
    pub first_instance: Duration,
}

/// A loaded plugin. Shared (`Arc`) by every runner of it; each runner owns
/// its own instance.
pub struct LoadedPlugin {
    pub(crate) name: Arc<str>,
    pub(crate) world: WorldName,
    pub(crate) hash: String,
    pub(crate) path: PathBuf,
    pub(crate) timings: LoadTimings,
    pub(crate) stats: PluginStats,
    pub(crate) limits: PluginLimits,
    pub(crate) grants: PluginGrants,
    pub(crate) config_json: String,
    pub(crate) deadline_ticks: u64,
    pub(crate) engine: Engine,
    pub(crate) pre: WorldPre,
    /// Keeps the compiled component in the runtime's map while this version
    /// lives (the map holds it weakly). Held, never read.
    #[allow(dead_code)]
    pub(crate) component: Arc<wasmtime::component::Component>,
    /// Started instances waiting for a runner: the one `load` proved the
    /// plugin with, and those [`LoadedPlugin::prestart`] adds before a swap.
    pub(crate) spare: Mutex<Vec<Spare>>,
    /// A UDF's functions, asked once at load time (empty for other worlds).
    pub(crate) functions: Vec<FunctionSignature>,
    /// Whether its calls are metered in fuel (the runtime's engine consumes fuel).
    pub(crate) fuel: bool,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("world", &self.world)
            .field("hash", &self.hash)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn world(&self) -> WorldName {
        self.world
    }

    /// SHA-256 (hex) of the component file.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    pub fn timings(&self) -> &LoadTimings {
        &self.timings
    }

    /// Total load time.
    pub fn load_time(&self) -> Duration {
        self.timings.compile + self.timings.link + self.timings.first_instance
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    pub fn grants(&self) -> &PluginGrants {
        &self.grants
    }

    /// The `init` config, as JSON text.
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// A UDF's functions, as it declared them (empty for other worlds).
    pub fn functions(&self) -> &[FunctionSignature] {
        &self.functions
    }

    /// Whether its calls are metered in fuel (`PluginStats::fuel_consumed`).
    pub fn meters_fuel(&self) -> bool {
        self.fuel
    }

    /// Starts instances until `n` wait for runners, so that runners
    /// switching to this version (a hot swap) find one ready instead of
    /// instantiating on the pipeline thread.
    pub fn prestart(&self, n: usize) -> Result<(), PluginError> {
        while self.spare.lock().map(|s| s.len() < n).unwrap_or(false) {
            let spare = start_spare(self).map_err(|f| self.init_error(&f))?;
            if let Ok(mut spares) = self.spare.lock() {
                spares.push(spare);
            }
        }
        Ok(())
    }

    /// A runner with its own instance (instantiated and initialised).
    pub fn transform(self: &Arc<Self>) -> Result<TransformRunner, PluginError> {
        self.expect_world(WorldName::Transform)?;
        Supervisor::new(self.clone()).map(TransformRunner::new).map_err(|f| self.init_error(&f))
    }

    /// A UDF runner with its own instance (instantiated and initialised).
    pub fn udf(self: &Arc<Self>) -> Result<UdfRunner, PluginError> {
        self.expect_world(WorldName::Udf)?;
        Supervisor::new(self.clone()).map(UdfRunner::new).map_err(|f| self.init_error(&f))
    }

    /// A joiner runner with its own instance (instantiated and initialised).
    pub fn joiner(self: &Arc<Self>) -> Result<JoinerRunner, PluginError> {
        self.expect_world(WorldName::Joiner)?;
        Supervisor::new(self.clone()).map(JoinerRunner::new).map_err(|f| self.init_error(&f))
    }

    /// An aggregator runner with its own instance (instantiated and initialised).
    pub fn aggregator(self: &Arc<Self>) -> Result<AggregatorRunner, PluginError> {
        self.expect_world(WorldName::Aggregator)?;
        Supervisor::new(self.clone()).map(AggregatorRunner::new).map_err(|f| self.init_error(&f))
    }

    fn expect_world(&self, expected: WorldName) -> Result<(), PluginError> {
        if self.world == expected {
            Ok(())
        } else {
            Err(PluginError::WrongWorld { plugin: self.name.to_string(), expected, found: self.world })
        }
    }

    pub(crate) fn init_error(&self, failure: &super::Failure) -> PluginError {
        PluginError::Init(format!("plugin {}: {}", self.name, failure.message))
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn pre(&self) -> &WorldPre {
        &self.pre
    }

    pub(crate) fn deadline_ticks(&self) -> u64 {
        self.deadline_ticks
    }

    pub(crate) fn take_spare(&self) -> Option<Spare> {
        self.spare.lock().ok()?.pop()
    }
}
