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
use crate::plugin::{LoadedPlugin, PluginRegistry, PluginRuntime, RuntimeOptions, SampleSettings, UdfRunner};
use crate::swap::{AdminServer, Swapper};
use crate::sink::{build_sink, Sink, SinkContext};
use crate::source::{build_source, Source, SourceFactory};
use super::checkpoint::{Checkpoints, Found};
use super::fingerprint::Fingerprints;
use crate::state::StateBackend;
use crate::step::{FilterStep, NativeRegistry, NativeStep, Operator, ProjectStep, SelectStep, TransformStep, UdfArg, UdfStep, WindowJoin};

/// Library-level knobs of a build.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// Native transforms a `native` step may name.
    pub natives: NativeRegistry,
    /// Show the live progress line on stderr.
    pub progress: bool,
    /// Ignore (and delete) existing checkpoints and state: start over.
    pub fresh: bool,
    /// Scale-out: this process's share of a consumer group (`group.rs`).
    pub group: Option<super::group::GroupPlan>,
    /// `streamhost test`: the sources read these samples, in their fixed
    /// order, and the coordinator runs in lockstep (`replay/`).
    pub replay: Option<Arc<crate::replay::Feed>>,
    /// `streamhost test --trace`: follows matching events through the steps.
    pub trace: Option<Arc<crate::replay::Tracer>>,
}

use super::graph::Producer;
use super::graph::Graph;

/// A step as a worker runs it.
pub(crate) struct StepNode {
    pub op: Box<dyn Operator>,
    pub stats: Arc<NodeStats>,
    /// Its counters in this worker (the step's events are their sum).
    pub metrics: Arc<crate::metrics::StepMetrics>,
}

/// What one worker thread runs: the steps of its stage (by their index in
/// the graph's order; `None` for other stages' steps), its share of the
/// state, and copies of the keyed steps of later stages it routes to.
pub(crate) struct WorkerParts {
    pub stage: usize,
    pub index: usize,
    pub steps: Vec<Option<StepNode>>,
    pub routers: BTreeMap<usize, Box<dyn Operator>>,
    /// `None` for a stage without keyed steps.
    pub state: Option<Box<dyn StateBackend>>,
    pub metrics: crate::metrics::WorkerMetrics,
    /// Whether the figures only metrics need are collected.
    pub metrics_on: bool,
    /// Per step (by index): where `streamhost sample` copies its output from.
    pub taps: Vec<Option<Arc<crate::replay::TapPoint>>>,
    pub trace: Option<Arc<crate::replay::Tracer>>,
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
    pub out_of_orderness_ms: u64,
    pub idle_timeout: Option<std::time::Duration>,
    /// Where it resumes, after a restore.
    pub resume: Option<super::SourceMark>,
    /// Makes it again at a position (`on_error: "retry"`).
    pub factory: SourceFactory,
    pub retry: Option<crate::config::RetrySettings>,
    /// Told where each completed checkpoint stands (a Kafka group).
    pub committer: Option<Box<dyn crate::source::PositionCommitter>>,
}

/// A pipeline ready to run.
pub struct Pipeline {
    pub(crate) name: Option<String>,
    pub(crate) sources: Vec<SourceNode>,
    /// Who feeds whom, and the stages of the workers.
    pub(crate) graph: Arc<Graph>,
    /// The workers, stage by stage (`stage * per_stage + index`).
    pub(crate) workers: Vec<WorkerParts>,
    /// Workers per stage (`settings.parallelism`).
    pub(crate) per_stage: usize,
    /// `settings.max_parallelism`, or in a group its partition count.
    pub(crate) key_groups: usize,
    /// What decides an event's key group.
    pub(crate) grouping: super::KeyGrouping,
    /// Copies of the keyed steps fed by sources: the coordinator routes
    /// their input by key.
    pub(crate) routers: BTreeMap<usize, Box<dyn Operator>>,
    /// Each step's counters, shared by its copies in every worker.
    pub(crate) step_stats: Vec<Arc<NodeStats>>,
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
    /// Periodic checkpoints, when configured: where, how often, the next id.
    pub(crate) checkpoints: Option<super::checkpoint::Schedule>,
    /// What its state and source positions mean (recorded in checkpoints).
    pub(crate) fingerprint: Fingerprints,
    /// The run of checkpoints its own belong to (`CheckpointMeta::lineage`).
    pub(crate) lineage: String,
    /// The plugins as loaded at the start, by name (the versions running
    /// now are in the swapper's registry).
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Hot swap of the plugins (the admin API's back end).
    pub(crate) swapper: Arc<Swapper>,
    /// The admin API, when configured; stops when the pipeline is dropped.
    pub(crate) admin: Option<AdminServer>,
    /// What the web page shows besides metrics: the DAG, the last dead
    /// letters and checkpoints (fed by the coordinator).
    pub(crate) live: Arc<crate::web::LiveView>,
    /// The checkpoint the run resumes from, if any.
    pub(crate) resumed_from: Option<u64>,
    /// The state in Redis: each checkpoint's writes and record go there in
    /// one transaction.
    pub(crate) remote: Option<crate::state::RemoteState>,
    /// Its metrics (`GET /metrics`).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Its alert rules' evaluation, when `settings.alerts` has some; stopped
    /// (one last evaluation, the webhook's queue drained) when the pipeline
    /// is dropped, after its threads ended.
    pub(crate) alerts: Option<crate::alerts::AlertsHandle>,
    /// Per source (by index): where `streamhost sample` copies its records from.
    pub(crate) source_taps: Vec<Option<Arc<crate::replay::TapPoint>>>,
    /// Every tap point (the admin API's `POST /sample`).
    pub(crate) taps: Arc<crate::replay::Taps>,
    /// A replay: every source message goes through the whole DAG before the next.
    pub(crate) lockstep: bool,
    pub(crate) trace: Option<Arc<crate::replay::Tracer>>,
}

impl Pipeline {
    /// Swaps and rollbacks of this pipeline's plugins, from any thread.
    pub fn swapper(&self) -> &Arc<Swapper> {
        &self.swapper
    }

    /// The DAG, recent dead letters and checkpoints the web page shows.
    pub fn live_view(&self) -> &Arc<crate::web::LiveView> {
        &self.live
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

    /// Its metrics, in Prometheus's text format (what `GET /metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// Its tap points (`streamhost sample`; a replay records lookups through them).
    pub fn taps(&self) -> &Arc<crate::replay::Taps> {
        &self.taps
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
                    for (at_key, u) in sc.udf_keys() {
                        if &u.plugin == name && plugin.world() != crate::config::WorldName::Udf {
                            let at = at_key.iter().fold(JsonPath::root().key("steps").key(step), |at, k| match k.parse::<usize>() {
                                Ok(i) => at.index(i),
                                Err(_) => at.key(k),
                            });
                            let at = at.key("plugin");
                            errors.push(p.error_at(&at, format!("plugin `{name}` exports world `{}` but a key needs `udf`", plugin.world().as_str())));
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
    let graph = Arc::new(Graph::of(p).map_err(|e| p.errors(vec![e]))?);
    // The Redis state: where the checkpoint record to resume from is, too (in a
    // group, with or without state, the partitions' offsets).
    let stateful = (0..graph.stages).any(|s| graph.stateful(s));
    let mut remote = match c.settings.state.backend {
        crate::config::StateBackendKind::Redis if stateful || opts.group.is_some() => {
            let options = c.settings.state.redis.clone().unwrap_or_default();
            let (name, retention) = (c.name.as_deref(), retention_ms(p));
            Some(match &opts.group {
                None => crate::state::RemoteState::connect(&options, name, retention)?,
                Some(plan) => crate::state::RemoteState::join_group(&options, name, retention, &plan.instance, &plan.owned, plan.key_groups)?,
            })
        }
        _ => None,
    };
    let (schedule, resume) = match (&opts.group, remote.as_mut()) {
        (None, remote) => checkpoints(p, opts.fresh, remote)?,
        (Some(plan), None) => plan.checkpoints(p)?,
        (Some(plan), Some(remote)) => plan.redis_checkpoints(p, remote)?,
    };
    if let Some(r) = &resume {
        let at: Vec<String> = r.meta.sources.iter().map(|(name, m)| format!("{name} at {}", m.resume.line)).collect();
        match &r.parts[..] {
            [one] if one.groups.is_none() => tracing::info!("resuming from checkpoint {} ({})", r.meta.id, at.join(", ")),
            parts => {
                let from: Vec<String> = parts.iter().map(|f| format!("{} for partitions {:?}", f.found.dir.display(), f.groups.as_deref().unwrap_or_default())).collect();
                tracing::info!("resuming from {} ({})", from.join(", "), at.join(", "));
            }
        }
    }
    // In a group the key groups are the input partitions (`partition.rs`).
    let (key_groups, grouping) = match &opts.group {
        None => (c.settings.max_parallelism, super::KeyGrouping::KeyHash),
        Some(plan) => (plan.key_groups, super::KeyGrouping::InputPartition),
    };
    let per_stage = c.settings.workers().min(key_groups);
    let step_stats: Vec<Arc<NodeStats>> = graph.order.iter().map(|n| NodeStats::new(n, NodeKind::Step)).collect();
    let metrics = crate::metrics::Metrics::new(&pipeline_label(p), c.settings.metrics.enabled);
    let lookups = super::lookup_plan::LookupPlan::of(p, &graph, &step_stats)?;
    let taps = crate::replay::Taps::of(p);
    let builder = StepBuilder { p, graph: &graph, step_stats: &step_stats, registry: &registry, natives: &opts.natives, key_groups, grouping, lookups: lookups.as_ref(), taps: &taps };

    // Every step once, to check it and take its fingerprint; the copies of
    // the workers are built the same way.
    let mut errors = Vec::new();
    let mut first: Vec<Option<Box<dyn Operator>>> = Vec::new();
    for j in 0..graph.order.len() {
        first.push(builder.step(j, 0, &mut errors)?);
    }
    if !errors.is_empty() {
        return Err(p.errors(errors).into());
    }
    let fingerprint = Fingerprints {
        steps: graph.order.iter().zip(&first).filter_map(|(n, op)| op.as_ref()?.state_fingerprint().map(|f| (n.clone(), f))).collect(),
        sources: super::fingerprint::sources_of(p),
    };
    for part in resume.iter().flat_map(|r| &r.parts) {
        check_restart(p, &part.found, &fingerprint)?;
        check_key_groups(p, &part.found, key_groups)?;
    }

    // The run of checkpoints goes on from the one restored (its own, in a group).
    let lineage = resume.as_ref().and_then(|r| r.meta.lineage.clone()).unwrap_or_else(super::checkpoint::new_lineage);
    let instance = opts.group.as_ref().map(|g| g.instance.as_str());
    let mut sinks = Vec::new();
    for (name, sc) in &c.sinks {
        let cx = SinkContext { resume: resume.as_ref().and_then(|r| r.meta.sinks.get(name).copied()), lineage: &lineage, instance };
        sinks.push(SinkNode { name: name.clone(), sink: build_sink(name, sc, resolve, &cx)?, stats: NodeStats::new(name, NodeKind::Sink) });
    }
    let sources: Vec<SourceNode> = c
        .sources
        .iter()
        .map(|(name, sc)| -> Result<SourceNode, RunError> {
            let mark = resume.as_ref().and_then(|r| r.meta.sources.get(name).cloned());
            let stats = NodeStats::new(name, NodeKind::Source);
            let mut sc = sc.clone();
            if let (crate::config::SourceConfig::Kafka(k), true) = (&mut sc, metrics.enabled()) {
                let figures = Arc::new(crate::source::KafkaFigures::default());
                k.figures = Some(figures.clone());
                let _ = stats.kafka.set(figures);
            }
            let sc = &sc;
            let (source_name, config, base) = (name.clone(), sc.clone(), p.base_dir.clone());
            let factory: SourceFactory = Arc::new(move |point| {
                let resolve = |path: &Path| if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
                build_source(&source_name, &config, resolve, Some(point))
            });
            let committer = match (&opts.group, sc) {
                (Some(plan), crate::config::SourceConfig::Kafka(k)) => Some(plan.member.committer(name, &k.topics)),
                _ => crate::source::build_committer(name, sc)?,
            };
            let source = match &opts.replay {
                Some(feed) => feed.index_of(name).map(|i| feed.source(i)).ok_or_else(|| RunError::Step(format!("source `{name}` has no sample")))?,
                None => build_source(name, sc, resolve, mark.as_ref().map(|m| m.resume.clone())),
            };
            Ok(SourceNode {
                name: name.clone(),
                committer,
                source: Some(source),
                resume: mark,
                factory,
                retry: sc.common().retry_policy(),
                stats,
                out_of_orderness_ms: sc.common().max_out_of_orderness_ms,
                idle_timeout: sc.common().idle_timeout_ms.map(std::time::Duration::from_millis),
            })
        })
        .collect::<Result<_, _>>()?;

    // The workers: stage by stage, each with its own copy of its stage's steps.
    let parts = resume.as_ref().map_or(&[][..], |r| &r.parts[..]);
    let states = super::worker_state::StateRoot::prepare(p, parts, &graph, (per_stage, key_groups), instance, remote.as_ref())?;
    let mut workers = Vec::new();
    for stage in 0..graph.stages {
        for index in 0..per_stage {
            let mut steps: Vec<Option<StepNode>> = Vec::new();
            for j in 0..graph.order.len() {
                // The first copy (built to check the step) goes to worker 0.
                let op = match (graph.stage[j] == stage, index) {
                    (false, _) => None,
                    (true, 0) => first[j].take(),
                    (true, _) => builder.step(j, stage * per_stage + index, &mut errors)?,
                };
                let worker = crate::metrics::Metrics::worker_label(stage, index);
                steps.push(op.map(|mut op| {
                    let m = metrics.step(&graph.order[j], &worker);
                    step_stats[j].add_worker(m.clone());
                    if matches!(c.steps[&graph.order[j]], StepConfig::WindowJoin(_)) {
                        op.attach_join_metrics(metrics.join(&graph.order[j], &worker));
                    }
                    StepNode { op, stats: step_stats[j].clone(), metrics: m }
                }));
            }
            // The steps sharing the stage's state, for the state's gauges.
            let stateful: Vec<&str> = graph.steps_of(stage).filter(|j| graph.keyed[*j]).map(|j| graph.order[j].as_str()).collect();
            let worker_metrics = metrics.worker(&crate::metrics::Metrics::worker_label(stage, index), graph.stateful(stage).then(|| stateful.join(",")).as_deref());
            let mut routers = BTreeMap::new();
            for j in 0..graph.order.len() {
                let fed_here = graph.step_producers[j].iter().any(|p| matches!(*p, Producer::Step(k) if graph.stage[k] == stage));
                if graph.keyed[j] && graph.stage[j] > stage && fed_here {
                    routers.insert(j, builder.router(&graph.order[j])?);
                }
            }
            let state = if graph.stateful(stage) {
                let mut ops: Vec<&mut Box<dyn Operator>> = steps.iter_mut().flatten().map(|s| &mut s.op).collect();
                Some(states.open(stage, index, &mut ops)?)
            } else {
                None
            };
            let step_taps = graph.order.iter().map(|n| taps.point(n)).collect();
            workers.push(WorkerParts { stage, index, steps, routers, state, metrics: worker_metrics, metrics_on: metrics.enabled(), taps: step_taps, trace: opts.trace.clone() });
        }
    }
    let mut routers = BTreeMap::new();
    for (j, name) in graph.order.iter().enumerate() {
        if graph.keyed[j] && graph.step_producers[j].iter().any(|p| matches!(p, Producer::Source(_))) {
            routers.insert(j, builder.router(name)?);
        }
    }

    let dead_resume = resume.as_ref().and_then(|r| r.meta.dead_letter.map(|len| (len, r.meta.dead_count)));
    // The processes of a group each write their own file.
    let own = |path: PathBuf| match instance {
        Some(i) => super::group::instance_path(&path, i),
        None => path,
    };
    let dead = match &c.dead_letter {
        Some(DeadLetterConfig::Stderr) => DeadLetterWriter::stderr(),
        Some(DeadLetterConfig::File { path }) => open_dead(&own(p.resolve(path)), dead_resume)?,
        None => open_dead(&own(p.base_dir.join("dead-letter.jsonl")), dead_resume)?,
    };

    let swapper = Arc::new(Swapper::new(runtime, registry, hot.clone()));
    let alerts = match &c.settings.alerts {
        Some(a) => Some(crate::alerts::start(a, &pipeline_label(p), metrics.registry().clone()).map_err(|e| RunError::Thread(format!("alerts: {e}")))?),
        None => None,
    };
    let dead_target = dead.path().map_or_else(|| "stderr".to_string(), |p| p.display().to_string());
    let live = crate::web::LiveView::new(crate::web::GraphView::of(p, &graph, per_stage, key_groups, dead_target));
    let admin = match &c.settings.admin {
        None => None,
        Some(a) => {
            let bind = a.bind.parse().map_err(|_| crate::swap::AdminError::Start(format!("bad address `{}`", a.bind)))?;
            let addr_file = a.addr_file.as_ref().map_or_else(|| p.base_dir.join("admin.addr"), |f| p.resolve(f));
            let views = crate::swap::AdminViews {
                metrics: metrics.enabled().then(|| metrics.clone()),
                alerts: alerts.as_ref().map(|a| a.board.clone()),
                live: live.clone(),
                taps: taps.clone(),
            };
            Some(AdminServer::start(bind, a.token.clone(), Some(addr_file), swapper.clone(), views)?)
        }
    };
    let nodes = sources.iter().map(|s| s.stats.clone()).chain(step_stats.iter().cloned()).chain(sinks.iter().map(|s| s.stats.clone())).collect();
    metrics.watch(crate::metrics::Sources { nodes, plugins: swapper.registry().clone(), dead: dead.by_kind(), started: std::time::SystemTime::now() });

    Ok(Pipeline {
        name: c.name.clone(),
        sources,
        graph,
        workers,
        per_stage,
        key_groups,
        grouping,
        routers,
        step_stats,
        sinks,
        dead,
        batch_size: c.settings.batch_size,
        linger_ms: c.settings.batch_linger_ms,
        channel_batches: c.settings.channel_batches,
        channel_bytes: c.settings.channel_bytes,
        progress: opts.progress,
        stop: super::StopHandle::new(),
        checkpoints: schedule,
        fingerprint,
        lineage,
        plugins,
        swapper,
        admin,
        live,
        resumed_from: resume.as_ref().filter(|r| r.meta.id > 0).map(|r| r.meta.id),
        remote,
        metrics,
        alerts,
        source_taps: c.sources.keys().map(|n| taps.point(n)).collect(),
        taps,
        lockstep: opts.replay.is_some(),
        trace: opts.trace.clone(),
    })
}

/// The `pipeline` label of the metrics: the pipeline's name, or its file's stem.
fn pipeline_label(p: &LoadedPipeline) -> String {
    p.config.name.clone().or_else(|| p.file.as_ref().and_then(|f| f.file_stem()).map(|s| s.to_string_lossy().into_owned())).unwrap_or_else(|| "pipeline".into())
}

/// Builds steps from their config, as many copies as there are workers.
struct StepBuilder<'a> {
    p: &'a LoadedPipeline,
    graph: &'a Graph,
    step_stats: &'a [Arc<NodeStats>],
    registry: &'a Arc<PluginRegistry>,
    natives: &'a NativeRegistry,
    key_groups: usize,
    grouping: super::KeyGrouping,
    lookups: Option<&'a super::lookup_plan::LookupPlan>,
    taps: &'a crate::replay::Taps,
}

impl StepBuilder<'_> {
    /// Step `j` (in the graph's order) for worker `worker` (numbered across
    /// stages), or `None` with its errors pushed to `errors`.
    fn step(&self, j: usize, worker: usize, errors: &mut Vec<ConfigError>) -> Result<Option<Box<dyn Operator>>, RunError> {
        let (p, registry) = (self.p, self.registry);
        let (name, stats) = (self.graph.order[j].as_str(), &self.step_stats[j]);
        let at = JsonPath::root().key("steps").key(name);
        let op: Box<dyn Operator> = match &p.config.steps[name] {
            StepConfig::Transform { plugin, .. } => Box::new(TransformStep::new(name, plugin, registry.transform(plugin)?.for_step(name))),
            StepConfig::Udf { plugin, function, args, output, null_input, .. } => {
                let runner = registry.udf(plugin)?.for_step(name);
                if !check_function(p, &at, plugin, function, args.len(), runner.functions(), errors) {
                    return Ok(None);
                }
                self.uses_function(plugin, function);
                let args = args.iter().map(UdfArg::parse).collect();
                Box::new(UdfStep::new(name, plugin, function, args, output, runner).null_input(*null_input))
            }
            StepConfig::WindowJoin(j) => {
                let join = match &j.joiner {
                    crate::config::JoinerConfig::Plugin { plugin } => WindowJoin::with_plugin(name, j, plugin, registry.joiner(plugin)?.for_step(name)),
                    crate::config::JoinerConfig::Merge { .. } => WindowJoin::new(name, j),
                };
                match self.key_udfs(name, j, errors)? {
                    Some(runners) => Box::new(join.with_key_udfs(runners).with_key_groups(self.key_groups).with_grouping(self.grouping).with_stats(stats.clone())),
                    None => return Ok(None),
                }
            }
            StepConfig::WindowAggregate(a) => match self.aggregate(name, a, false, errors)? {
                Some(step) => Box::new(step),
                None => return Ok(None),
            },
            StepConfig::LookupJoin(l) => {
                let plan = self.lookups.expect("a pipeline with lookup joins has a lookup plan");
                let runner = match &l.key {
                    crate::config::JoinKey::Udf(u) => {
                        let runner = registry.udf(&u.plugin)?.for_step(name);
                        if !check_function(p, &at.key("key"), &u.plugin, &u.function, u.args.len(), runner.functions(), errors) {
                            return Ok(None);
                        }
                        self.uses_function(&u.plugin, &u.function);
                        Some(runner)
                    }
                    crate::config::JoinKey::Field(_) => None,
                };
                Box::new(plan.step(p, self.graph, j, worker).with_key_udf(runner).with_answer_tap(self.taps.answers(name)))
            }
            StepConfig::Filter(f) => Box::new(FilterStep::new(name, f)),
            StepConfig::Project(pc) => Box::new(ProjectStep::new(name, pc)),
            StepConfig::Select(sc) => match SelectStep::new(name, sc) {
                Ok(step) => Box::new(step),
                Err(e) => {
                    // Checked at load already; kept located if it ever differs.
                    errors.push(p.error_at(&at, e));
                    return Ok(None);
                }
            },
            StepConfig::Native { name: native, .. } => match self.natives.create(native) {
                Some(f) => Box::new(NativeStep::new(name, f)),
                None => {
                    let known = match self.natives.names() {
                        names if names.is_empty() => "none are: `native` steps are for programs embedding streamhost; use `filter`, `project` or a plugin".into(),
                        names => format!("known: {}", names.join(", ")),
                    };
                    errors.push(p.error_at(&at.key("name"), format!("no native transform `{native}` is registered ({known})")));
                    return Ok(None);
                }
            },
        };
        Ok(Some(op))
    }

    /// A copy of keyed step `name` that only tells events' key groups (its
    /// joiner is never called, so it holds no joiner instance).
    fn router(&self, name: &str) -> Result<Box<dyn Operator>, RunError> {
        if let StepConfig::WindowAggregate(a) = &self.p.config.steps[name] {
            let mut errors = Vec::new();
            return match self.aggregate(name, a, true, &mut errors)? {
                Some(step) => Ok(Box::new(step)),
                None => Err(RunError::Config(ConfigErrors { file: None, errors })),
            };
        }
        let StepConfig::WindowJoin(j) = &self.p.config.steps[name] else { unreachable!("only joins and aggregates are keyed") };
        let mut errors = Vec::new();
        let runners = self.key_udfs(name, j, &mut errors)?.unwrap_or_default();
        Ok(Box::new(WindowJoin::router(name, j).with_key_udfs(runners).with_key_groups(self.key_groups).with_grouping(self.grouping)))
    }

    /// A `window-aggregate` step with its key UDFs' runners (`None`: an error, pushed).
    fn aggregate(&self, name: &str, a: &crate::step::WindowAggregateConfig, router: bool, errors: &mut Vec<ConfigError>) -> Result<Option<crate::step::WindowAggregate>, RunError> {
        let at = JsonPath::root().key("steps").key(name);
        let step = match crate::step::WindowAggregate::new(name, a) {
            Ok(step) => step,
            Err(e) => {
                errors.push(self.p.error_at(&at, e));
                return Ok(None);
            }
        };
        let mut runners = BTreeMap::new();
        let mut ok = true;
        for (i, key) in a.keys.iter().enumerate() {
            for input in &a.inputs {
                let Some(crate::config::JoinKey::Udf(u)) = key.of_input(input) else { continue };
                let runner = self.registry.udf(&u.plugin)?.for_step(name);
                let at = at.key("keys").index(i);
                if check_function(self.p, &at, &u.plugin, &u.function, u.args.len(), runner.functions(), errors) {
                    self.uses_function(&u.plugin, &u.function);
                    runners.insert((input.clone(), i), runner);
                } else {
                    ok = false;
                }
            }
        }
        // Its plugin aggregates (a router's copy only reads keys: none).
        let mut udafs = BTreeMap::new();
        for (i, agg) in a.aggregates.iter().enumerate().filter(|_| !router) {
            if let Some(plugin) = &agg.plugin {
                match self.registry.aggregator(plugin) {
                    Ok(runner) => {
                        udafs.insert(i, runner.for_step(name));
                    }
                    Err(e) => {
                        errors.push(self.p.error_at(&at.key("aggregates").index(i).key("plugin"), format!("plugin `{plugin}`: {e}")));
                        ok = false;
                    }
                }
            }
        }
        Ok(ok.then(|| step.with_key_udfs(runners).with_udafs(udafs).with_key_groups(self.key_groups).with_grouping(self.grouping)))
    }

    /// The runners of a join's keys computed by UDFs (`None`: an error, pushed).
    fn key_udfs(&self, name: &str, j: &crate::config::WindowJoinConfig, errors: &mut Vec<ConfigError>) -> Result<Option<BTreeMap<String, UdfRunner>>, RunError> {
        let at = JsonPath::root().key("steps").key(name);
        let mut runners = BTreeMap::new();
        let mut ok = true;
        for (input, key) in &j.keys {
            let crate::config::JoinKey::Udf(u) = key else { continue };
            let runner = self.registry.udf(&u.plugin)?.for_step(name);
            if check_function(self.p, &at.key("keys").key(input), &u.plugin, &u.function, u.args.len(), runner.functions(), errors) {
                self.uses_function(&u.plugin, &u.function);
                runners.insert(input.clone(), runner);
            } else {
                ok = false;
            }
        }
        Ok(ok.then_some(runners))
    }

    /// Runners come from the registry: they follow their plugin's swaps,
    /// which must keep the functions in use.
    fn uses_function(&self, plugin: &str, function: &str) {
        if let Some(slot) = self.registry.slot(plugin) {
            slot.require_function(function);
        }
    }
}

/// Whether `plugin` has `function` taking `args` arguments; if not, why, at `at`.
fn check_function(p: &LoadedPipeline, at: &JsonPath, plugin: &str, function: &str, args: usize, functions: &[crate::plugin::FunctionSignature], errors: &mut Vec<ConfigError>) -> bool {
    match functions.iter().find(|f| f.name == function) {
        None => {
            let known: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
            errors.push(p.error_at(&at.key("function"), format!("plugin `{plugin}` has no function `{function}` (it has: {})", known.join(", "))));
            false
        }
        Some(sig) if sig.params.len() != args => {
            errors.push(p.error_at(&at.key("args"), format!("`{function}` takes {} arguments, {args} given", sig.params.len())));
            false
        }
        Some(_) => true,
    }
}

/// Refuses a checkpoint taken with another number of key groups: its state is
/// spread by them.
fn check_key_groups(p: &LoadedPipeline, found: &Found, key_groups: usize) -> Result<(), RunError> {
    match found.meta.key_groups {
        Some(n) if n != key_groups => Err(p
            .errors(vec![p.error_at(
                &JsonPath::root().key("settings").key("max_parallelism"),
                format!("chk-{} was taken with {n} key groups; a state keeps its number (start over with --fresh to change it)", found.meta.id),
            )])
            .into()),
        _ => Ok(()),
    }
}

/// The checkpoint schedule, and the checkpoint to resume from (none with
/// `fresh`, which deletes them all; with a transactional sink, the newest
/// whose transaction committed).
fn checkpoints(p: &LoadedPipeline, fresh: bool, remote: Option<&mut crate::state::RemoteState>) -> Result<(Option<super::checkpoint::Schedule>, Option<Restore>), RunError> {
    let Some(cs) = &p.config.settings.checkpoint else {
        // Without checkpoints a run starts from empty state.
        if let Some(r) = remote {
            r.clear()?;
        }
        return Ok((None, None));
    };
    let dir = cs.dir.as_ref().map_or_else(|| p.base_dir.join("checkpoints"), |d| p.resolve(d));
    let store = Checkpoints::new(dir, cs.keep);
    let err = |e: String| RunError::State(format!("checkpoints: {e}"));
    if fresh {
        store.clear().map_err(err)?;
    }
    if let Some(r) = remote {
        if fresh {
            r.clear()?;
        }
        return redis_checkpoints(store, std::time::Duration::from_millis(cs.interval_ms), r);
    }
    let latest = store.latest().map_err(err)?;
    let found = match commit_record(p, None, latest.as_ref())? {
        Some(record) => store.resumable(record.as_ref()).map_err(err)?,
        None => latest,
    };
    store.remove_incomplete().map_err(err)?;
    let next_id = found.as_ref().map_or(1, |f| f.meta.id + 1);
    let schedule = super::checkpoint::Schedule::new(store, std::time::Duration::from_millis(cs.interval_ms), next_id);
    Ok((Some(schedule), found.map(Restore::whole)))
}

/// With the state in Redis, the checkpoint to resume from is the record Redis
/// holds (the state it covers is there): it may be newer than the local
/// folders (written after it) or the only one (a new machine).
fn redis_checkpoints(store: Checkpoints, interval: std::time::Duration, r: &mut crate::state::RemoteState) -> Result<(Option<super::checkpoint::Schedule>, Option<Restore>), RunError> {
    let (found, local) = redis_record(&store, r, "start over with --fresh")?;
    match &found {
        Some(f) => {
            if let Some(workers) = f.meta.workers {
                r.keep_generation(workers)?;
            }
        }
        // Anything under the prefix is from a run that never checkpointed.
        None => drop(r.clear()?),
    }
    let next_id = found.iter().chain(&local).map(|f| f.meta.id).max().unwrap_or(0) + 1;
    let schedule = super::checkpoint::Schedule::new(store, interval, next_id).with_early(r.checkpoint_wanted());
    Ok((Some(schedule), found.map(Restore::whole)))
}

/// This process's checkpoint record in Redis (in a group, its instance's) and
/// its newest local checkpoint, once interrupted ones are removed. A record
/// lost while local checkpoints remain (expired, flushed, another server or
/// prefix) is refused: the state is gone (`start_over` says what to do).
pub(crate) fn redis_record(store: &Checkpoints, r: &mut crate::state::RemoteState, start_over: &str) -> Result<(Option<Found>, Option<Found>), RunError> {
    let err = |e: String| RunError::State(format!("checkpoints: {e}"));
    store.remove_incomplete().map_err(err)?;
    let local = store.latest().map_err(err)?;
    let Some(bytes) = r.record()? else {
        return match &local {
            Some(l) => Err(RunError::State(format!(
                "redis holds no checkpoint record under the prefix `{}`, but {} exists: the state is gone (its keys expired after `ttl_slack_ms`, the server lost them, this is another server or prefix, or those checkpoints were taken with another state backend); {start_over}",
                r.prefix(),
                l.dir.display()
            ))),
            None => Ok((None, None)),
        };
    };
    let meta: super::CheckpointMeta = serde_json::from_slice(&bytes)
        .map_err(|e| RunError::State(format!("the checkpoint record in redis (prefix `{}`) is not one: {e}; {start_over}", r.prefix())))?;
    if let Some(l) = local.as_ref().filter(|l| l.meta.id > meta.id) {
        tracing::warn!(redis = meta.id, local = l.meta.id, "redis holds an older checkpoint than the local folders (a server restored from an older snapshot?): resuming from it, where the state is");
    }
    Ok((Some(Found { dir: store.folder(meta.id), meta }), local))
}

/// How long the joins keep events, in ms: the time-to-live of Redis state is
/// this plus `ttl_slack_ms`.
fn retention_ms(p: &LoadedPipeline) -> u64 {
    p.config
        .steps
        .values()
        .filter_map(|s| match s {
            StepConfig::WindowJoin(j) => {
                let window = j.window.end_ms.saturating_sub(j.window.start_ms).max(j.window.end_ms).max(0) as u64;
                Some(window.saturating_add(j.bucket_ms.unwrap_or(window)).saturating_add(j.allowed_lateness_ms))
            }
            StepConfig::WindowAggregate(a) => {
                let size = match a.window {
                    crate::step::WindowConfig::Tumbling { size_ms, .. } | crate::step::WindowConfig::Sliding { size_ms, .. } => size_ms,
                    crate::step::WindowConfig::Session { gap_ms } => gap_ms,
                };
                Some(size.saturating_mul(2).saturating_add(a.allowed_lateness_ms))
            }
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// The pipeline's transactional sink (`delivery: exactly-once`; the config
/// check allows one) and this process's transactional id.
pub(crate) fn transactional_sink<'a>(p: &'a LoadedPipeline, instance: Option<&str>) -> Option<(&'a str, &'a crate::sink::KafkaSinkConfig, String)> {
    p.config.sinks.iter().find_map(|(name, s)| match s {
        crate::config::SinkConfig::Kafka(k) => k.transactional_id_of(instance).map(|id| (name.as_str(), k, id)),
        _ => None,
    })
}

/// With a transactional sink: its commit record for the checkpoints of
/// `latest`, read after fencing every earlier producer of this process's
/// transactional id (which aborts a transaction a crash left open). `None`:
/// no transactional sink.
pub(crate) fn commit_record(p: &LoadedPipeline, instance: Option<&str>, latest: Option<&Found>) -> Result<Option<Option<super::Committed>>, RunError> {
    let Some((name, k, id)) = transactional_sink(p, instance) else { return Ok(None) };
    let lineage = latest.and_then(|f| f.meta.lineage.as_deref());
    let record = crate::sink::last_committed(k, &id, lineage).map_err(|error| crate::sink::SinkError::Kafka { sink: name.into(), topic: k.topic.clone(), error })?;
    tracing::info!(transactional_id = %id, committed = ?record, "fenced earlier runs of the transactional sink `{name}`");
    Ok(Some(record))
}

/// What a build restores: where each source goes on, the outputs' committed
/// lengths (`meta`), and the checkpoints whose state it takes.
pub(crate) struct Restore {
    pub meta: super::CheckpointMeta,
    pub parts: Vec<RestorePart>,
}

/// A checkpoint a build takes state from: all of it, or (in a group) only
/// the key groups in `groups`.
pub(crate) struct RestorePart {
    pub found: Found,
    pub groups: Option<Vec<u16>>,
}

impl Restore {
    /// Everything of one checkpoint.
    fn whole(found: Found) -> Restore {
        Restore { meta: found.meta.clone(), parts: vec![RestorePart { found, groups: None }] }
    }
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
