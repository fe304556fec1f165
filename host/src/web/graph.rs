//! `GET /api/graph`: the DAG as the page draws it, computed once at build.

use serde::Serialize;

use crate::config::LoadedPipeline;
use crate::runtime::{Consumer, Graph, Producer};

/// The pipeline's DAG: nodes by kind, the edges between them, and how the
/// steps are spread over workers.
#[derive(Clone, Debug, Serialize)]
pub struct GraphView {
    /// The pipeline's `name`, if it has one.
    pub pipeline: Option<String>,
    /// Workers per stage (`settings.parallelism`, at most the key groups).
    pub parallelism: usize,
    /// Key groups (`settings.max_parallelism`; in a group, its partitions).
    pub key_groups: usize,
    pub stages: usize,
    pub sources: Vec<NodeView>,
    /// In topological order.
    pub steps: Vec<NodeView>,
    pub sinks: Vec<NodeView>,
    pub edges: Vec<EdgeView>,
    /// Where dead letters are written: a file, or `stderr`.
    pub dead_letter: String,
}

/// One node. `id` is unique across kinds (`source:NAME`, `step:NAME`,
/// `sink:NAME`: a sink may be named as a step is).
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub name: String,
    /// `source`, `step` or `sink`.
    pub kind: &'static str,
    /// Its `type` in pipeline.json (`generator`, `transform`, `window-join`, `file`, ...).
    #[serde(rename = "type")]
    pub node_type: String,
    /// Plugins it calls (a transform's or UDF's plugin, a join's joiner, key UDFs).
    pub plugins: Vec<String>,
    /// Threads that run it: a source has its own, a sink is written by the
    /// coordinator, a step runs in every worker of its stage.
    pub parallelism: usize,
    /// The stage of its workers (steps only).
    pub stage: Option<usize>,
    /// It keeps keyed state (a window join).
    pub keyed: bool,
}

/// One edge, from producer to consumer.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeView {
    pub from: String,
    pub to: String,
    /// How events cross it: `forward` (stays in the worker, or to the worker
    /// of the same index), `exchange` (every worker to the key's worker of a
    /// later stage), `by-key` (the coordinator routes a source's events by
    /// key), `balance` (the coordinator hands a source's batches to the least
    /// busy worker, or by event key), `sink` (to the coordinator's sink).
    pub kind: &'static str,
    /// Input port of the consuming step (position in its `inputs`).
    pub port: Option<usize>,
}

/// The `type` tag of a config enum (all of them are tagged by `type`).
fn type_of(config: &impl Serialize) -> String {
    serde_json::to_value(config).ok().and_then(|v| v.get("type")?.as_str().map(String::from)).unwrap_or_default()
}

impl GraphView {
    pub(crate) fn of(p: &LoadedPipeline, g: &Graph, parallelism: usize, key_groups: usize, dead_letter: String) -> GraphView {
        let c = &p.config;
        let source_id = |i: usize| format!("source:{}", g.source_names[i]);
        let step_id = |j: usize| format!("step:{}", g.order[j]);
        let sink_names: Vec<&String> = c.sinks.keys().collect();
        let sources = g
            .source_names
            .iter()
            .map(|name| NodeView {
                id: format!("source:{name}"),
                name: name.clone(),
                kind: "source",
                node_type: type_of(&c.sources[name]),
                plugins: Vec::new(),
                parallelism: 1,
                stage: None,
                keyed: false,
            })
            .collect();
        let steps = g
            .order
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let sc = &c.steps[name];
                let mut plugins: Vec<String> = sc.plugin().into_iter().map(String::from).collect();
                for (_, u) in sc.udf_keys() {
                    if !plugins.contains(&u.plugin) {
                        plugins.push(u.plugin.clone());
                    }
                }
                NodeView {
                    id: step_id(j),
                    name: name.clone(),
                    kind: "step",
                    node_type: type_of(sc),
                    plugins,
                    parallelism,
                    stage: Some(g.stage[j]),
                    keyed: g.keyed[j],
                }
            })
            .collect();
        let sinks = sink_names
            .iter()
            .map(|name| NodeView {
                id: format!("sink:{name}"),
                name: (*name).clone(),
                kind: "sink",
                node_type: type_of(&c.sinks[*name]),
                plugins: Vec::new(),
                parallelism: 1,
                stage: None,
                keyed: false,
            })
            .collect();
        let consumer = |from: Producer, to: &Consumer| -> EdgeView {
            match *to {
                Consumer::Sink(s) => EdgeView {
                    from: match from {
                        Producer::Source(i) => source_id(i),
                        Producer::Step(k) => step_id(k),
                    },
                    to: format!("sink:{}", sink_names[s]),
                    kind: "sink",
                    port: None,
                },
                Consumer::Step { step, port } => {
                    let (from_id, kind) = match from {
                        Producer::Source(i) => (source_id(i), if g.keyed[step] { "by-key" } else { "balance" }),
                        Producer::Step(k) => (step_id(k), if g.keyed[step] && g.stage[step] > g.stage[k] { "exchange" } else { "forward" }),
                    };
                    EdgeView { from: from_id, to: step_id(step), kind, port: Some(port) }
                }
            }
        };
        let mut edges = Vec::new();
        for (i, consumers) in g.source_consumers.iter().enumerate() {
            edges.extend(consumers.iter().map(|to| consumer(Producer::Source(i), to)));
        }
        for (k, consumers) in g.step_consumers.iter().enumerate() {
            edges.extend(consumers.iter().map(|to| consumer(Producer::Step(k), to)));
        }
        GraphView { pipeline: c.name.clone(), parallelism, key_groups, stages: g.stages, sources, steps, sinks, edges, dead_letter }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_edges_and_their_kinds() {
        let json = r#"{
            "plugins": {"p": {"path": "p.wasm"}},
            "sources": {"a": {"type": "file", "path": "a"}, "b": {"type": "generator", "count": 1}},
            "steps": {
                "clean": {"type": "transform", "plugin": "p", "inputs": ["a"]},
                "j": {"type": "window-join", "inputs": ["clean", "b"], "keys": {"clean": "$.id", "b": "$.id"}, "window": {"start_ms": 0, "end_ms": 10}}
            },
            "sinks": {"j": {"type": "file", "path": "out", "inputs": ["j"]}, "raw": {"type": "null", "inputs": ["b"]}}
        }"#;
        let config = crate::config::parse_pipeline(json).expect("valid");
        let p = LoadedPipeline { config, base_dir: ".".into(), file: None, text: json.to_string() };
        let g = Graph::of(&p).unwrap();
        let v = GraphView::of(&p, &g, 3, 128, "dead.jsonl".into());
        assert_eq!(v.stages, 2);
        let types: Vec<(&str, &str)> = v.sources.iter().chain(&v.steps).chain(&v.sinks).map(|n| (n.id.as_str(), n.node_type.as_str())).collect();
        assert_eq!(
            types,
            [
                ("source:a", "file"),
                ("source:b", "generator"),
                ("step:clean", "transform"),
                ("step:j", "window-join"),
                ("sink:j", "file"),
                ("sink:raw", "null")
            ]
        );
        assert_eq!(v.steps[0].plugins, ["p"]);
        assert_eq!((v.steps[1].stage, v.steps[1].parallelism, v.steps[1].keyed), (Some(1), 3, true));
        let edges: Vec<(&str, &str, &str)> = v.edges.iter().map(|e| (e.from.as_str(), e.to.as_str(), e.kind)).collect();
        assert_eq!(
            edges,
            [
                ("source:a", "step:clean", "balance"),
                ("source:b", "step:j", "by-key"),
                ("source:b", "sink:raw", "sink"),
                ("step:clean", "step:j", "exchange"),
                ("step:j", "sink:j", "sink"),
            ]
        );
    }
}
