//! From a checked pipeline.json to running parts: plugins built and loaded,
//! sources, steps and sinks constructed, the DAG wired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::stats::{NodeKind, NodeStats};
use super::RunError;
use crate::config::{ConfigError, ConfigErrors, DeadLetterConfig, LoadedPipeline, StepConfig};
use crate::config::locate::JsonPath;
use crate::dead_letter::DeadLetterWriter;
use crate::plugin::{LoadedPlugin, PluginRegistry, PluginRuntime, RuntimeOptions, SampleSettings};
use crate::swap::{AdminServer, Swapper};
use crate::sink::{build_sink, Sink};
use crate::source::{build_source, Source, SourceFactory};
use super::checkpoint::{Checkpoints, Found};
use super::fingerprint::Fingerprints;
use crate::state::StateBackend;
use crate::step::{FilterStep, NativeRegistry, NativeStep, Operator, ProjectStep, TransformStep, UdfArg, UdfStep, WindowJoin};

/// Library-level knobs of a build.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// Native transforms a `native` step may name.
    pub natives: NativeRegistry,
    /// Show the live progress line on stderr.
    pub progress: bool,
    /// Ignore (and delete) existing checkpoints and state: start over.
    pub fresh: bool,
}

/// Where a node's output goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Consumer {
    /// Input `port` (position in the step's `inputs`) of step `step`.
    Step { step: usize, port: usize },
    Sink(usize),
}

/// Where a step's input comes from (for watermarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Producer {
    Source(usize),
    Step(usize),
}

pub(crate) struct StepNode {
    pub name: String,
    pub op: Box<dyn Operator>,
    pub stats: Arc<NodeStats>,
    pub consumers: Vec<Consumer>,
    pub producers: Vec<Producer>,
}

pub(crate) struct SinkNode {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub stats: Arc<NodeStats>,
}

pub(crate) struct SourceNode {
    pub name: String,
    pub source: Option<Box<dyn Source>>,
    pub stats: Arc<NodeStats>,
    pub consumers: Vec<Consumer>,
    pub out_of_orderness_ms: u64,
    pub idle_timeout: Option<std::time::Duration>,
    /// Where it resumes, after a restore.
    pub resume: Option<super::SourceMark>,
    /// Makes it again at a position (`on_error: "retry"`).
    pub factory: SourceFactory,
    pub retry: Option<crate::config::RetrySettings>,
}

/// A pipeline ready to run.
pub struct Pipeline {
    pub(crate) name: Option<String>,
    pub(crate) sources: Vec<SourceNode>,
    /// Steps in topological order (every step after its inputs).
    pub(crate) steps: Vec<StepNode>,
    pub(crate) sinks: Vec<SinkNode>,
    pub(crate) dead: DeadLetterWriter,
    pub(crate) batch_size: usize,
    pub(crate) linger_ms: u64,
    pub(crate) channel_batches: usize,
    /// The byte bound of the source channel.
    pub(crate) channel_bytes: usize,
    pub(crate) progress: bool,
    /// Asks the run to stop gracefully.
    pub(crate) stop: super::StopHandle,
    /// Watermarks of sources and steps while running.
    pub(crate) clock: super::watermarks::Watermarks,
    /// The state of stateful steps.
    pub(crate) state: Box<dyn StateBackend>,
    /// Periodic checkpoints, when configured: where, how often, the next id.
    pub(crate) checkpoints: Option<super::checkpoint::Schedule>,
    /// What its state and source positions mean (recorded in checkpoints).
    pub(crate) fingerprint: Fingerprints,
    /// The plugins as loaded at the start, by name (the versions running
    /// now are in the swapper's registry).
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Hot swap of the plugins (the admin API's back end).
    pub(crate) swapper: Arc<Swapper>,
    /// The admin API, when configured; stops when the pipeline is dropped.
    pub(crate) admin: Option<AdminServer>,
    /// The checkpoint the run resumes from, if any.
    pub(crate) resumed_from: Option<u64>,
}

impl Pipeline {
    /// Swaps and rollbacks of this pipeline's plugins, from any thread.
    pub fn swapper(&self) -> &Arc<Swapper> {
        &self.swapper
    }

    /// The address the admin API listens on, when it is configured.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(AdminServer::addr)
    }

    /// The admin API's address file and address, to remove the file on a
    /// hard exit (a graceful end removes it itself).
    pub fn admin_addr_file(&self) -> Option<(PathBuf, std::net::SocketAddr)> {
        self.admin.as_ref().and_then(|a| a.addr_file().map(|f| (f.to_path_buf(), a.addr())))
    }

    /// Stops this pipeline gracefully from any thread (see [`super::StopHandle`]).
    pub fn stop_handle(&self) -> super::StopHandle {
        self.stop.clone()
    }
}

/// Builds (if given a source folder) and loads every plugin of the pipeline,
/// reporting failures at `$.plugins.NAME.path`. Used by `run` and `validate`.
pub fn prepare_plugins(p: &LoadedPipeline, runtime: &PluginRuntime) -> Result<BTreeMap<String, Arc<LoadedPlugin>>, ConfigErrors> {
    let mut loaded = BTreeMap::new();
    let mut errors: Vec<ConfigError> = Vec::new();
    for (name, cfg) in &p.config.plugins {
        let at = JsonPath::root().key("plugins").key(name).key("path");
        let path = p.resolve(&cfg.path);
        let wasm: PathBuf = if path.is_dir() {
            match crate::build::build_plugin(&path, None, false) {
                Ok(built) => built.output,
                Err(e) => {
                    errors.push(p.error_at(&at, format!("plugin `{name}`: build of {} failed: {e}", path.display())));
                    continue;
                }
            }
        } else if path.is_file() {
            path
        } else {
            errors.push(p.error_at(&at, format!("plugin `{name}`: {} does not exist", path.display())));
            continue;
        };
        match runtime.load(name, &wasm, cfg.world, &cfg.limits, &cfg.grants, &cfg.config) {
            Ok(plugin) => {
                // A step must use the plugin as the world it really exports.
                for (step, sc) in &p.config.steps {
                    let want = sc.plugin_world();
                    if sc.plugin() == Some(name.as_str()) && plugin.world() != want {
                        let at = JsonPath::root().key("steps").key(step);
                        let at = match sc {
                            StepConfig::WindowJoin(_) => at.key("joiner").key("plugin"),
                            _ => at.key("plugin"),
                        };
                        errors.push(p.error_at(
                            &at,
                            format!("plugin `{name}` exports world `{}` but this step needs `{}`", plugin.world().as_str(), want.as_str()),
                        ));
                    }
                    if let StepConfig::WindowJoin(j) = sc {
                        for (input, key) in &j.keys {
                            if let crate::config::JoinKey::Udf(u) = key {
                                if &u.plugin == name && plugin.world() != crate::config::WorldName::Udf {
                                    errors.push(p.error_at(
                                        &JsonPath::root().key("steps").key(step).key("keys").key(input).key("plugin"),
                                        format!("plugin `{name}` exports world `{}` but a join key needs `udf`", plugin.world().as_str()),
                                    ));
                                }
                            }
                        }
                    }
                }
                loaded.insert(name.clone(), plugin);
            }
            Err(e) => errors.push(p.error_at(&at, format!("plugin `{name}`: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(p.errors(errors))
    }
}

/// Builds every part of a checked pipeline.
pub fn build_pipeline(p: &LoadedPipeline, opts: BuildOptions) -> Result<Pipeline, RunError> {
    let c = &p.config;
    let resolve = |path: &Path| p.resolve(path);
    let runtime = Arc::new(
        PluginRuntime::new(RuntimeOptions { artifact_cache: c.settings.artifact_cache.as_ref().map(|d| p.resolve(d)) })?
            .with_artifact_cache_max_bytes(c.settings.artifact_cache_max_mb.saturating_mul(1 << 20)),
    );
    let plugins = prepare_plugins(p, &runtime)?;
    let hot = &c.settings.hot_swap;
    let sample = SampleSettings { sample_events: hot.canary.sample_events, sample_every_ms: hot.canary.sample_every_ms };
    let configs = plugins.iter().map(|(name, plugin)| (plugin.clone(), c.plugins.get(name).map(|pc| pc.config.clone()).unwrap_or_default()));
    let registry = Arc::new(PluginRegistry::new(configs, sample));
    // Runners come from the registry: they follow their plugin's swaps.
    let uses_function = |plugin: &str, function: &str| {
        if let Some(slot) = registry.slot(plugin) {
            slot.require_function(function);
        }
    };
    let (schedule, resume) = checkpoints(p, opts.fresh)?;
    if let Some(found) = &resume {
        let at: Vec<String> = found.meta.sources.iter().map(|(name, m)| format!("{name} at {}", m.resume.line)).collect();
        tracing::info!("resuming from checkpoint {} ({})", found.meta.id, at.join(", "));
    }

    // Steps in topological order (the graph was checked to be acyclic).
    let mut order: Vec<&str> = Vec::new();
    while order.len() < c.steps.len() {
        let before = order.len();
        for (name, s) in &c.steps {
            if !order.contains(&name.as_str()) && s.inputs().iter().all(|i| c.sources.contains_key(i) || order.contains(&i.as_str())) {
                order.push(name);
            }
        }
        if order.len() == before {
            // Unreachable after the graph checks; refuse rather than spin.
            let stuck: Vec<&str> = c.steps.keys().map(String::as_str).filter(|n| !order.contains(n)).collect();
            let at = JsonPath::root().key("steps").key(stuck[0]).key("inputs");
            return Err(p.errors(vec![p.error_at(&at, format!("steps with unresolvable inputs: {}", stuck.join(", ")))]).into());
        }
    }

    let mut errors = Vec::new();
    let mut steps = Vec::new();
    for name in &order {
        let at = JsonPath::root().key("steps").key(name);
        let stats = NodeStats::new(name, NodeKind::Step);
        let op: Box<dyn Operator> = match &c.steps[*name] {
            StepConfig::Transform { plugin, .. } => Box::new(TransformStep::new(name, plugin, registry.transform(plugin)?)),
            StepConfig::Udf { plugin, function, args, output, .. } => {
                let runner = registry.udf(plugin)?;
                uses_function(plugin, function);
                match runner.functions().iter().find(|f| &f.name == function) {
                    None => {
                        let known: Vec<&str> = runner.functions().iter().map(|f| f.name.as_str()).collect();
                        errors.push(p.error_at(&at.key("function"), format!("plugin `{plugin}` has no function `{function}` (it has: {})", known.join(", "))));
                        continue;
                    }
                    Some(sig) if sig.params.len() != args.len() => {
                        errors.push(p.error_at(&at.key("args"), format!("`{function}` takes {} arguments, {} given", sig.params.len(), args.len())));
                        continue;
                    }
                    Some(_) => {}
                }
                let args = args.iter().map(UdfArg::parse).collect();
                Box::new(UdfStep::new(name, plugin, function, args, output, runner))
            }
            StepConfig::WindowJoin(j) => {
                let join = match &j.joiner {
                    crate::config::JoinerConfig::Plugin { plugin } => WindowJoin::with_plugin(name, j, plugin, registry.joiner(plugin)?),
                    crate::config::JoinerConfig::Merge { .. } => WindowJoin::new(name, j),
                };
                // Join keys computed by UDFs: check the function, give the join a runner.
                let mut runners = BTreeMap::new();
                for (input, key) in &j.keys {
                    let crate::config::JoinKey::Udf(u) = key else { continue };
                    let runner = registry.udf(&u.plugin)?;
                    uses_function(&u.plugin, &u.function);
                    let at = at.key("keys").key(input);
                    match runner.functions().iter().find(|f| f.name == u.function) {
                        None => errors.push(p.error_at(&at.key("function"), format!("plugin `{}` has no function `{}`", u.plugin, u.function))),
                        Some(sig) if sig.params.len() != u.args.len() => errors.push(p.error_at(
                            &at.key("args"),
                            format!("`{}` takes {} arguments, {} given", u.function, sig.params.len(), u.args.len()),
                        )),
                        Some(_) => {
                            runners.insert(input.clone(), runner);
                        }
                    }
                }
                Box::new(join.with_key_udfs(runners).with_stats(stats.clone()))
            }
            StepConfig::Filter(f) => Box::new(FilterStep::new(name, f)),
            StepConfig::Project(pc) => Box::new(ProjectStep::new(name, pc)),
            StepConfig::Native { name: native, .. } => match opts.natives.create(native) {
                Some(f) => Box::new(NativeStep::new(name, f)),
                None => {
                    let known = match opts.natives.names() {
                        names if names.is_empty() => "none are: `native` steps are for programs embedding streamhost; use `filter`, `project` or a plugin".into(),
                        names => format!("known: {}", names.join(", ")),
                    };
                    errors.push(p.error_at(&at.key("name"), format!("no native transform `{native}` is registered ({known})")));
                    continue;
                }
            },
        };
        steps.push(StepNode {
            name: name.to_string(),
            op,
            stats,
            consumers: Vec::new(),
            producers: Vec::new(),
        });
    }
    if !errors.is_empty() {
        return Err(p.errors(errors).into());
    }
    let fingerprint = Fingerprints {
        steps: steps.iter().filter_map(|s| s.op.state_fingerprint().map(|f| (s.name.clone(), f))).collect(),
        sources: super::fingerprint::sources_of(p),
    };
    if let Some(found) = &resume {
        check_restart(p, found, &fingerprint)?;
    }

    let mut sinks = Vec::new();
    for (name, sc) in &c.sinks {
        let committed = resume.as_ref().and_then(|r| r.meta.sinks.get(name).copied());
        sinks.push(SinkNode { name: name.clone(), sink: build_sink(name, sc, resolve, committed)?, stats: NodeStats::new(name, NodeKind::Sink) });
    }
    let mut sources: Vec<SourceNode> = c
        .sources
        .iter()
        .map(|(name, sc)| {
            let mark = resume.as_ref().and_then(|r| r.meta.sources.get(name).copied());
            let (source_name, config, base) = (name.clone(), sc.clone(), p.base_dir.clone());
            let factory: SourceFactory = Arc::new(move |point| {
                let resolve = |path: &Path| if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
                build_source(&source_name, &config, resolve, Some(point))
            });
            SourceNode {
                name: name.clone(),
                source: Some(build_source(name, sc, resolve, mark.map(|m| m.resume))),
                resume: mark,
                factory,
                retry: sc.common().retry_policy(),
                stats: NodeStats::new(name, NodeKind::Source),
                consumers: Vec::new(),
                out_of_orderness_ms: sc.common().max_out_of_orderness_ms,
                idle_timeout: sc.common().idle_timeout_ms.map(std::time::Duration::from_millis),
            }
        })
        .collect();

    // Wire consumers: each input names a source or a step.
    let mut wire = |input: &str, consumer: Consumer| -> Option<Producer> {
        if let Some(i) = sources.iter().position(|s| s.name == input) {
            sources[i].consumers.push(consumer);
            Some(Producer::Source(i))
        } else if let Some(i) = steps.iter().position(|s| s.name == input) {
            steps[i].consumers.push(consumer);
            Some(Producer::Step(i))
        } else {
            None
        }
    };
    let mut producers = vec![Vec::new(); order.len()];
    for (i, name) in order.iter().enumerate() {
        for (port, input) in c.steps[*name].inputs().iter().enumerate() {
            producers[i].extend(wire(input, Consumer::Step { step: i, port }));
        }
    }
    for (i, (_, sc)) in c.sinks.iter().enumerate() {
        for input in sc.inputs() {
            wire(input, Consumer::Sink(i));
        }
    }
    for (step, p) in steps.iter_mut().zip(producers) {
        step.producers = p;
    }

    let mut state = open_state(p, resume.as_ref())?;
    for step in &mut steps {
        step.op.open_state(&mut *state).map_err(|e| RunError::State(format!("step `{}`: {e}", step.name)))?;
    }

    let dead_resume = resume.as_ref().and_then(|r| r.meta.dead_letter.map(|len| (len, r.meta.dead_count)));
    let dead = match &c.dead_letter {
        Some(DeadLetterConfig::Stderr) => DeadLetterWriter::stderr(),
        Some(DeadLetterConfig::File { path }) => open_dead(&p.resolve(path), dead_resume)?,
        None => open_dead(&p.base_dir.join("dead-letter.jsonl"), dead_resume)?,
    };

    let swapper = Arc::new(Swapper::new(runtime, registry, hot.clone()));
    let admin = match &c.settings.admin {
        None => None,
        Some(a) => {
            let bind = a.bind.parse().map_err(|_| crate::swap::AdminError::Start(format!("bad address `{}`", a.bind)))?;
            let addr_file = a.addr_file.as_ref().map_or_else(|| p.base_dir.join("admin.addr"), |f| p.resolve(f));
            Some(AdminServer::start(bind, a.token.clone(), Some(addr_file), swapper.clone())?)
        }
    };

    Ok(Pipeline {
        name: c.name.clone(),
        sources,
        steps,
        sinks,
        dead,
        batch_size: c.settings.batch_size,
        linger_ms: c.settings.batch_linger_ms,
        channel_batches: c.settings.channel_batches,
        channel_bytes: c.settings.channel_bytes,
        progress: opts.progress,
        stop: super::StopHandle::new(),
        clock: super::watermarks::Watermarks::new(Vec::new(), 0),
        state,
        checkpoints: schedule,
        fingerprint,
        plugins,
        swapper,
        admin,
        resumed_from: resume.as_ref().map(|r| r.meta.id),
    })
}

/// The pipeline's state backend: RocksDB (or memory, as configured) when a
/// step keeps state, else an empty in-memory one. Until checkpoints land a
/// run starts from empty state, so an existing state directory is cleared.
fn open_state(p: &LoadedPipeline, resume: Option<&Found>) -> Result<Box<dyn StateBackend>, RunError> {
    let settings = &p.config.settings.state;
    let stateful = p.config.steps.values().any(|s| matches!(s, StepConfig::WindowJoin(_)));
    let state_err = |e: crate::state::StateError| RunError::State(e.to_string());
    if !stateful || settings.backend == crate::config::StateBackendKind::Memory {
        return match resume {
            Some(found) if stateful => crate::state::restore_memory(&found.dir.join("state")).map_err(state_err),
            _ => Ok(crate::state::open_memory()),
        };
    }
    let dir = settings.dir.as_ref().map_or_else(|| p.base_dir.join("state"), |d| p.resolve(d));
    if let Some(found) = resume {
        return crate::state::restore_rocksdb(&found.dir.join("state"), &dir, &settings.rocksdb).map_err(state_err);
    }
    if dir.exists() {
        // Only ever clear a state directory (RocksDB's CURRENT file) or an
        // empty one: `dir` may be mistyped.
        let empty = std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty && !dir.join("CURRENT").is_file() {
            return Err(RunError::State(format!("{} exists and is not a state directory; refusing to clear it", dir.display())));
        }
        std::fs::remove_dir_all(&dir).map_err(|e| RunError::State(format!("cannot clear {}: {e}", dir.display())))?;
    }
    crate::state::open_rocksdb(&dir, &settings.rocksdb).map_err(|e| RunError::State(e.to_string()))
}

/// The checkpoint schedule, and the checkpoint to resume from (none with
/// `fresh`, which deletes them all).
fn checkpoints(p: &LoadedPipeline, fresh: bool) -> Result<(Option<super::checkpoint::Schedule>, Option<Found>), RunError> {
    let Some(cs) = &p.config.settings.checkpoint else { return Ok((None, None)) };
    let dir = cs.dir.as_ref().map_or_else(|| p.base_dir.join("checkpoints"), |d| p.resolve(d));
    let store = Checkpoints::new(dir, cs.keep);
    let err = |e: String| RunError::State(format!("checkpoints: {e}"));
    if fresh {
        store.clear().map_err(err)?;
    }
    let found = store.latest().map_err(err)?;
    store.remove_incomplete().map_err(err)?;
    let next_id = found.as_ref().map_or(1, |f| f.meta.id + 1);
    let schedule = super::checkpoint::Schedule::new(store, std::time::Duration::from_millis(cs.interval_ms), next_id);
    Ok((Some(schedule), found))
}

/// Refuses to resume from `found` with a pipeline whose stateful steps or
/// sources mean something else than when it was taken.
fn check_restart(p: &LoadedPipeline, found: &Found, now: &Fingerprints) -> Result<(), RunError> {
    let chk = format!("chk-{}", found.meta.id);
    let Some(then) = &found.meta.fingerprint else {
        tracing::warn!(checkpoint = %found.dir.display(), "the checkpoint predates fingerprints: changes to the pipeline since it was taken cannot be checked");
        return Ok(());
    };
    let errors = super::fingerprint::changes(p, &chk, then, now);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(p.errors(errors).into())
    }
}

fn open_dead(path: &Path, resume: Option<(u64, u64)>) -> Result<DeadLetterWriter, RunError> {
    DeadLetterWriter::file(path, resume).map_err(|error| RunError::DeadLetter { path: path.display().to_string(), error })
}
