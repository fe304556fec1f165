//! The plugin runtime: the only module that names wasmtime.
//!
//! One [`PluginRuntime`] per process owns the wasmtime `Engine`, the epoch
//! ticker that enforces time budgets, and the cache of precompiled
//! artifacts. [`PluginRuntime::load`] turns a component file into a
//! [`LoadedPlugin`]; each worker then takes its own [`TransformRunner`],
//! [`UdfRunner`], [`JoinerRunner`] or [`AggregatorRunner`] (one `Store` and
//! instance each) from it.
//! A pipeline takes its runners from the [`PluginRegistry`] instead: those
//! follow their plugin's hot swaps, switching version between batches.
//!
//! Sandbox: a plugin sees only the `host` interface of `wit/plugin.wit` and,
//! if it imports WASI (Python, Go), a WASI context with nothing in it unless
//! granted in pipeline.json (see `sandbox`). Memory, time and output sizes are
//! limited per plugin; a trap fails only the records that cause it.

mod aggregator;
mod artifact_cache;
mod columns;
mod engine;
mod instance;
mod isolation;
mod joiner;
mod loaded;
mod outcome;
pub mod registry;
mod runner;
mod sandbox;
mod timers;
mod transform;
mod udf;
pub mod wit;

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Engine;

use crate::config::{PluginGrants, PluginLimits, WorldName};
use instance::{start, WorldBindings};
use loaded::WorldPre;
use sandbox::StoreState;

pub use aggregator::{AddResult, AggregatorRunner};
pub use isolation::failed_budgets;
pub use joiner::{JoinCase, JoinerRunner};
pub use loaded::{ArtifactSource, LoadTimings, LoadedPlugin};
pub use outcome::{unix_micros, Failure, FailureKind, Outcome, PluginStats, PluginStatsSnapshot};
pub use registry::{PluginRegistry, SampleBatch, SampleSettings, Slot, SwapAction, SwapRecord, Version};
pub use transform::TransformRunner;
pub use udf::UdfRunner;
pub use crate::event::Event;
pub use wit::{FunctionSignature, Scalar, ScalarType};

/// Errors of loading a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: not a WebAssembly component (a core module? build plugins with `streamhost plugin build`)")]
    NotAComponent(PathBuf),
    #[error("plugin {plugin}: cannot compile {path}: {message}")]
    Compile { plugin: String, path: PathBuf, message: String },
    #[error("plugin {plugin}: exports no world of wit/plugin.wit (transform: `process`; udf: `functions` and `call`; joiner: `join`; aggregator: `create`, `add`, `merge` and `finish`); it exports: {exports}")]
    NotAPlugin { plugin: String, exports: String },
    #[error("plugin {plugin}: pipeline.json declares world {}, but the component implements {}", expected.as_str(), found.as_str())]
    WrongWorld { plugin: String, expected: WorldName, found: WorldName },
    #[error("plugin {plugin}: {message}")]
    Link { plugin: String, message: String },
    #[error("{0}")]
    Init(String),
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}

/// The content hash of the component file `wasm`, or why it is not one.
/// Hashed in chunks: the whole content is read into memory only when it has
/// to be compiled (Python components are ~18 MiB).
fn component_hash(wasm: &Path) -> Result<String, PluginError> {
    let io = |e| PluginError::Io { path: wasm.to_path_buf(), source: e };
    let mut file = std::fs::File::open(wasm).map_err(io)?;
    let mut preamble = [0u8; 8];
    if file.read_exact(&mut preamble).is_err() || !is_component(&preamble) {
        return Err(PluginError::NotAComponent(wasm.to_path_buf()));
    }
    file.rewind().map_err(io)?;
    artifact_cache::sha256_of(&mut file).map_err(io)
}

/// Settings of a [`PluginRuntime`].
#[derive(Clone, Debug, Default)]
pub struct RuntimeOptions {
    /// Directory for precompiled artifacts; `None` means
    /// `$XDG_CACHE_HOME/streamhost/artifacts` (else `~/.cache/...`).
    pub artifact_cache: Option<PathBuf>,
}

/// Counters of how components were obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArtifactCounters {
    pub compiled: u64,
    pub disk_hits: u64,
    pub memory_hits: u64,
}

/// The process-wide plugin runtime.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: artifact_cache::ArtifactCache,
    /// Compiled components by content hash, while a loaded plugin uses them
    /// (one compilation per content). Each `LoadedPlugin` holds the `Arc`:
    /// once the last version using a component is dropped (a hot swap keeps
    /// only a slot's current and previous versions), so is its code.
    components: Mutex<HashMap<String, Weak<Component>>>,
    compiled: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
    /// Whether calls are metered in fuel (see [`PluginRuntime::metering_fuel`]).
    fuel: bool,
}

impl PluginRuntime {
    pub fn new(opts: RuntimeOptions) -> Result<Self, PluginError> {
        Self::with_engine(opts, false)
    }

    /// A runtime whose plugins count the fuel (about one unit per wasm
    /// instruction) every call uses, in `PluginStats::fuel_consumed`: a cost
    /// measure independent of the machine. Metering slows the code down;
    /// `streamhost plugin test --fuel` uses it, pipelines do not.
    pub fn metering_fuel(opts: RuntimeOptions) -> Result<Self, PluginError> {
        Self::with_engine(opts, true)
    }

    fn with_engine(opts: RuntimeOptions, fuel: bool) -> Result<Self, PluginError> {
        let engine_err = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let engine = engine::new_engine(fuel).map_err(engine_err)?;
        engine::start_epoch_ticker(&engine).map_err(|e| PluginError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wit::Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state).map_err(engine_err)?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        timers::bound_guest_timers(&mut linker).map_err(engine_err)?;
        let dir = opts.artifact_cache.unwrap_or_else(artifact_cache::default_dir);
        let cache = artifact_cache::ArtifactCache::new(dir, &engine);
        Ok(PluginRuntime {
            engine,
            linker,
            cache,
            components: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
            fuel,
        })
    }

    pub fn artifact_cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    /// Bounds the on-disk artifact cache to `bytes` (least recently used
    /// artifacts are removed first, never one a plugin of this runtime uses).
    pub fn with_artifact_cache_max_bytes(mut self, bytes: u64) -> Self {
        self.cache.set_max_bytes(bytes);
        self
    }

    /// Compiled components alive in this runtime: those some loaded plugin
    /// (a running version, the previous one kept for rollback, a canary)
    /// still holds.
    pub fn live_components(&self) -> usize {
        self.in_use().len()
    }

    /// Prunes the artifact cache to its bound, sparing the components in use
    /// (after a hot swap dropped a version, for instance).
    pub fn prune_artifact_cache(&self) {
        self.cache.prune(&self.in_use());
    }

    /// Content hashes of the compiled components alive (pruning the dead).
    fn in_use(&self) -> std::collections::HashSet<String> {
        let mut map = self.components.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        map.keys().cloned().collect()
    }

    pub fn artifact_counters(&self) -> ArtifactCounters {
        ArtifactCounters {
            compiled: self.compiled.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// Compiles `wasm` into the artifact cache unless it is there already,
    /// so that a later `load` of the same content, by this process or by
    /// another one sharing the cache (a running pipeline receiving it in a
    /// hot swap), deserializes it instead of compiling it.
    pub fn precompile(&self, wasm: &Path) -> Result<ArtifactSource, PluginError> {
        let hash = component_hash(wasm)?;
        let name = wasm.file_stem().map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
        self.component(&name, wasm, &hash).map(|(_, artifact)| artifact)
    }

    /// Compiles (or loads the cached precompiled artifact), detects the
    /// world, links, builds the `InstancePre`, and instantiates once calling
    /// `init(config)` to prove the plugin loads. `expected` is the world
    /// declared in pipeline.json.
    pub fn load(
        &self,
        name: &str,
        wasm: &Path,
        expected: Option<WorldName>,
        limits: &PluginLimits,
        grants: &PluginGrants,
        config: &serde_json::Value,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let started = Instant::now();
        let hash = component_hash(wasm)?;
        let (component, artifact) = self.component(name, wasm, &hash)?;
        let compile = started.elapsed();

        let linked = Instant::now();
        let world = detect_world(&self.engine, &component, name)?;
        if let Some(expected) = expected.filter(|e| *e != world) {
            return Err(PluginError::WrongWorld { plugin: name.into(), expected, found: world });
        }
        let pre = self.link(name, world, &component)?;
        let link = linked.elapsed();

        let config_json = serde_json::to_string(config).unwrap_or_else(|_| "null".into());
        let mut plugin = LoadedPlugin {
            name: name.into(),
            world,
            hash,
            path: wasm.to_path_buf(),
            timings: LoadTimings { artifact, compile, link, first_instance: Default::default() },
            stats: PluginStats::default(),
            limits: limits.clone(),
            grants: grants.clone(),
            config_json,
            deadline_ticks: engine::deadline_ticks(limits.batch_timeout_ms),
            engine: self.engine.clone(),
            pre,
            component,
            spare: Mutex::new(Vec::new()),
            functions: Vec::new(),
            fuel: self.fuel,
        };
        let instantiated = Instant::now();
        let spare = match world {
            WorldName::Transform => first_instance::<wit::Transform>(&plugin)?,
            WorldName::Udf => {
                let mut live = start::<wit::Udf>(&plugin).map_err(|f| plugin.init_error(&f))?;
                plugin.functions = instance::udf_functions(&plugin, &mut live)
                    .map_err(|f| PluginError::Init(format!("plugin {name}: `functions` failed: {}", f.message)))?;
                instance::Spare::Udf(live)
            }
            WorldName::Joiner => first_instance::<wit::Joiner>(&plugin)?,
            WorldName::Aggregator => first_instance::<wit::Aggregator>(&plugin)?,
        };
        plugin.timings.first_instance = instantiated.elapsed();
        plugin.spare = Mutex::new(vec![spare]);
        tracing::info!(
            plugin = name,
            world = world.as_str(),
            artifact = ?artifact,
            load_ms = plugin.load_time().as_secs_f64() * 1e3,
            "plugin loaded"
        );
        Ok(Arc::new(plugin))
    }

    /// The compiled component for this content: from memory, from the disk
    /// cache, or compiled now (and cached).
    fn component(&self, name: &str, path: &Path, hash: &str) -> Result<(Arc<Component>, ArtifactSource), PluginError> {
        if let Some(component) = self.components.lock().ok().and_then(|m| m.get(hash).and_then(Weak::upgrade)) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((component, ArtifactSource::Memory));
        }
        let (component, source) = match self.cache.load(&self.engine, hash) {
            Some(component) => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                (component, ArtifactSource::DiskCache)
            }
            None => {
                tracing::info!(plugin = name, path = %path.display(), "compiling plugin (cached for next time)");
                let compile_err = |e: wasmtime::Error| PluginError::Compile {
                    plugin: name.into(),
                    path: path.into(),
                    message: format!("{e:#}"),
                };
                let bytes = std::fs::read(path).map_err(|e| PluginError::Io { path: path.into(), source: e })?;
                if hex::encode(Sha256::digest(&bytes)) != hash {
                    return Err(PluginError::Io {
                        path: path.into(),
                        source: std::io::Error::other("the file changed while it was being loaded"),
                    });
                }
                let component = Component::new(&self.engine, &bytes).map_err(compile_err)?;
                match component.serialize() {
                    Ok(artifact) => {
                        self.cache.store(hash, &artifact);
                        let mut keep = self.in_use();
                        keep.insert(hash.to_string());
                        self.cache.prune(&keep);
                    }
                    Err(e) => tracing::warn!(plugin = name, error = %e, "cannot serialize the compiled plugin"),
                }
                self.compiled.fetch_add(1, Ordering::Relaxed);
                (component, ArtifactSource::Compiled)
            }
        };
        let component = Arc::new(component);
        if let Ok(mut map) = self.components.lock() {
            map.retain(|_, weak| weak.strong_count() > 0);
            map.insert(hash.to_string(), Arc::downgrade(&component));
        }
        Ok((component, source))
    }

    fn link(&self, name: &str, world: WorldName, component: &Component) -> Result<WorldPre, PluginError> {
        let link_err = |message: String| PluginError::Link { plugin: name.into(), message };
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            link_err(format!(
                "imports something the host does not provide (only the `host` interface and WASI 0.2 are): {e:#}"
            ))
        })?;
        let mismatch = |e: wasmtime::Error| {
            link_err(format!(
                "its exports do not match the {} world of wit/plugin.wit (built against another version?): {e:#}",
                world.as_str()
            ))
        };
        Ok(match world {
            WorldName::Transform => WorldPre::Transform(wit::TransformPre::new(instance_pre).map_err(mismatch)?),
            WorldName::Udf => WorldPre::Udf(wit::UdfPre::new(instance_pre).map_err(mismatch)?),
            WorldName::Joiner => WorldPre::Joiner(wit::JoinerPre::new(instance_pre).map_err(mismatch)?),
            WorldName::Aggregator => WorldPre::Aggregator(wit::AggregatorPre::new(instance_pre).map_err(mismatch)?),
        })
    }
}

/// Runners move to worker threads; loaded plugins are shared between them.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<LoadedPlugin>();
    send_sync::<PluginRuntime>();
    send::<TransformRunner>();
    send::<UdfRunner>();
    send::<JoinerRunner>();
    send::<AggregatorRunner>();
};

fn first_instance<B: WorldBindings>(plugin: &LoadedPlugin) -> Result<instance::Spare, PluginError> {
    start::<B>(plugin).map(B::into_spare).map_err(|f| plugin.init_error(&f))
}

/// A component's preamble: magic, then version 0x0d and layer 1 (a core
/// module has version 1, layer 0).
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

/// Tells the world by the component's exports.
fn detect_world(engine: &Engine, component: &Component, name: &str) -> Result<WorldName, PluginError> {
    let ty = component.component_type();
    let exports = |n: &str| ty.get_export(engine, n).is_some();
    let aggregator = exports("create") && exports("add") && exports("merge") && exports("finish");
    match (exports("process"), exports("functions") && exports("call"), exports("join"), aggregator) {
        (true, false, false, false) => Ok(WorldName::Transform),
        (false, true, false, false) => Ok(WorldName::Udf),
        (false, false, true, false) => Ok(WorldName::Joiner),
        (false, false, false, true) => Ok(WorldName::Aggregator),
        _ => {
            let names: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
            Err(PluginError::NotAPlugin { plugin: name.into(), exports: names.join(", ") })
        }
    }
}
