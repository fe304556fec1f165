//! The lookup joins of a pipeline as its workers run them. Steps of one
//! stage that read the same table (the same copies, read the same way) share
//! one client per worker, a slot each, so their requests merge. A chain of
//! them (each the only consumer of the one before, in input order) is asked
//! for by its first step: it reads the later steps' keys too, when the chain
//! does not write the fields they are read from, and hands their answers on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::graph::{Consumer, Graph, Producer};
use super::stats::NodeStats;
use super::RunError;
use crate::config::{JoinKey, LoadedPipeline, StepConfig};
use crate::lookup::{BreakerConfig, LookupCache, LookupStats, RetryPolicy, Table, TableClient, Tables, Unavailable};
use crate::step::key::{split_path, KeySpec};
use crate::step::lookup_join::{ChainKey, KeyTemplate, LookupJoin, LookupJoinConfig, OnUnavailable};

/// One lookup step's place.
struct Planned {
    /// Its table and stage: the steps sharing a client.
    group: String,
    slot: u16,
    /// The later steps of its chain whose keys it asks for.
    chain: Vec<usize>,
    /// The next step of the chain, if this step asks for it.
    next: Option<usize>,
    fed_by_chain: bool,
    table: Arc<Table>,
    stats: Arc<LookupStats>,
}

/// A worker's client of a table, shared by its steps on the table.
type SharedClient = Arc<Mutex<TableClient>>;

pub(crate) struct LookupPlan {
    tables: Tables,
    steps: BTreeMap<usize, Planned>,
    /// (group, worker) → the worker's client of the group's table.
    clients: Mutex<HashMap<(String, usize), SharedClient>>,
}

fn lookup<'p>(p: &'p LoadedPipeline, name: &str) -> Option<&'p LookupJoinConfig> {
    match &p.config.steps[name] {
        StepConfig::LookupJoin(l) => Some(l),
        _ => None,
    }
}

/// Whether step `cfg` may write the top-level field `field` (what it adds).
fn writes(cfg: &LookupJoinConfig, field: &str) -> bool {
    match (&cfg.as_field, &cfg.fields) {
        (Some(name), _) => name == field,
        (None, Some(fields)) => fields.iter().any(|f| format!("{}{f}", cfg.prefix.as_deref().unwrap_or("")) == field),
        (None, None) => field.starts_with(cfg.prefix.as_deref().unwrap_or("")),
    }
}

pub(crate) fn policy(cfg: &LookupJoinConfig) -> (RetryPolicy, BreakerConfig) {
    let unavailable = match cfg.on_unavailable {
        OnUnavailable::Wait => Unavailable::Wait,
        OnUnavailable::MissAfterMs(ms) => Unavailable::GiveUpAfter(Duration::from_millis(ms)),
    };
    let policy = RetryPolicy { timeout: Duration::from_millis(cfg.timeout_ms), retries: cfg.retries, backoff: Duration::from_millis(cfg.backoff_ms), unavailable };
    let b = cfg.breaker;
    (policy, BreakerConfig { failures: b.failures, open_for: Duration::from_millis(b.open_ms), open_max: Duration::from_millis(b.open_max_ms.max(b.open_ms)) })
}

impl LookupPlan {
    /// The plan of `p`'s lookup joins (`None`: it has none). Opens their
    /// tables (connected on first use) and registers their counters.
    pub fn of(p: &LoadedPipeline, graph: &Graph, step_stats: &[Arc<NodeStats>]) -> Result<Option<LookupPlan>, RunError> {
        if !graph.order.iter().any(|n| lookup(p, n).is_some()) {
            return Ok(None);
        }
        let tables = Tables::start().map_err(|e| RunError::Thread(format!("starting the lookup runtime: {e}")))?;
        let mut steps: BTreeMap<usize, Planned> = BTreeMap::new();
        let mut slots: HashMap<String, u16> = HashMap::new();
        for (j, name) in graph.order.iter().enumerate() {
            let Some(cfg) = lookup(p, name) else { continue };
            let group = format!("{}@{}", cfg.table_identity(), graph.stage[j]);
            let slot = slots.entry(group.clone()).or_insert(0);
            let (policy, breaker) = policy(cfg);
            let backends: Vec<_> = cfg.backends.iter().map(|b| b.resolved(|path| p.resolve(path))).collect();
            let table = tables
                .open(&group, &backends, cfg.hash_fields(), policy, breaker)
                .map_err(|e| p.errors(vec![p.error_at(&crate::config::locate::JsonPath::root().key("steps").key(name).key("backends"), e.to_string())]))?;
            let stats = Arc::new(LookupStats { table: table.clone(), step: Arc::default() });
            let _ = step_stats[j].lookup.set(stats.clone());
            steps.insert(j, Planned { group, slot: *slot, chain: Vec::new(), next: None, fed_by_chain: false, table, stats });
            *slot += 1;
            Self::link(p, graph, &mut steps, j);
        }
        Ok(Some(LookupPlan { tables, steps, clients: Mutex::new(HashMap::new()) }))
    }

    /// Links step `j` to the chain of the step before it, when it can be.
    fn link(p: &LoadedPipeline, graph: &Graph, steps: &mut BTreeMap<usize, Planned>, j: usize) {
        let cfg = lookup(p, &graph.order[j]).expect("a lookup step");
        let JoinKey::Field(path) = &cfg.key else { return };
        let field = split_path(path).remove(0);
        let [Producer::Step(before)] = graph.step_producers[j][..] else { return };
        let Some(prev) = lookup(p, &graph.order[before]) else { return };
        let only = graph.step_consumers[before] == [Consumer::Step { step: j, port: 0 }];
        if !only || prev.unordered || steps[&before].group != steps[&j].group {
            return;
        }
        // The head of the chain and every link up to `j` must leave the field alone.
        let mut head = before;
        let mut links = vec![before];
        while steps[&head].fed_by_chain {
            head = *steps.iter().find(|(_, s)| s.next == Some(head)).map(|(k, _)| k).expect("a fed step has a step before");
            links.push(head);
        }
        if links.iter().any(|&l| writes(lookup(p, &graph.order[l]).expect("a lookup step"), &field)) {
            return;
        }
        for &l in &links {
            steps.get_mut(&l).expect("planned").chain.push(j);
        }
        steps.get_mut(&before).expect("planned").next = Some(j);
        steps.get_mut(&j).expect("planned").fed_by_chain = true;
    }

    /// Worker `worker`'s copy of lookup step `j` (named `name`).
    pub fn step(&self, p: &LoadedPipeline, graph: &Graph, j: usize, worker: usize) -> LookupJoin {
        let name = &graph.order[j];
        let cfg = lookup(p, name).expect("a lookup step");
        let planned = &self.steps[&j];
        let client = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((planned.group.clone(), worker))
            .or_insert_with(|| {
                let c = &cfg.cache;
                let cache = LookupCache::new(c.max_bytes, Duration::from_millis(c.ttl_ms), Duration::from_millis(c.miss_ttl_ms));
                Arc::new(Mutex::new(TableClient::new(planned.table.clone(), self.tables.service().clone(), cache, cfg.max_keys_per_request)))
            })
            .clone();
        let mut step = LookupJoin::new(name, cfg, client, planned.slot, planned.stats.clone());
        if let Some(next) = planned.next {
            let later = planned
                .chain
                .iter()
                .map(|&k| {
                    let c = lookup(p, &graph.order[k]).expect("a lookup step");
                    ChainKey { key: KeySpec::of(Some(&c.key)), template: KeyTemplate::new(c.key_template.as_deref()) }
                })
                .collect();
            step = step.asking_for(later, self.steps[&next].slot);
        }
        if planned.fed_by_chain {
            step = step.fed_by_chain();
        }
        step
    }
}
