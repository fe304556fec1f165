//! The shape of a pipeline's DAG: the one topological order of its steps, who
//! feeds whom, and how the steps are cut into stages for parallel workers.
//!
//! A keyed step (a window join) must see each key on the worker owning its key
//! group, so the edge into it from a step is an **exchange**: the step starts a
//! new stage, whose workers receive from every worker of the stage before. A
//! keyed step fed straight by sources needs no stage of its own: the
//! coordinator routes those events by key. Every other edge stays within a
//! worker (or goes forward to the worker of the same index in a later stage).

use crate::config::{ConfigError, LoadedPipeline, PipelineConfig, StepConfig};
use crate::config::locate::JsonPath;

/// Where a node's output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The DAG of a checked pipeline, by index: sources and sinks in config order,
/// steps in topological order.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    /// Step names, every step after its inputs.
    pub order: Vec<String>,
    pub source_names: Vec<String>,
    pub source_consumers: Vec<Vec<Consumer>>,
    pub step_consumers: Vec<Vec<Consumer>>,
    /// Per step, per input port.
    pub step_producers: Vec<Vec<Producer>>,
    /// Per step: it keeps keyed state.
    pub keyed: Vec<bool>,
    /// Per step: its stage (0 first).
    pub stage: Vec<usize>,
    pub stages: usize,
}

impl Graph {
    /// The graph of `p` (checked acyclic by the loader; a cycle left is refused).
    pub fn of(p: &LoadedPipeline) -> Result<Graph, ConfigError> {
        let c: &PipelineConfig = &p.config;
        let mut order: Vec<String> = Vec::new();
        while order.len() < c.steps.len() {
            let before = order.len();
            for (name, s) in &c.steps {
                if !order.contains(name) && s.inputs().iter().all(|i| c.sources.contains_key(i) || order.contains(i)) {
                    order.push(name.clone());
                }
            }
            if order.len() == before {
                let stuck: Vec<&str> = c.steps.keys().map(String::as_str).filter(|n| !order.iter().any(|o| o == n)).collect();
                let at = JsonPath::root().key("steps").key(stuck[0]).key("inputs");
                return Err(p.error_at(&at, format!("steps with unresolvable inputs: {}", stuck.join(", "))));
            }
        }
        let source_names: Vec<String> = c.sources.keys().cloned().collect();
        let mut g = Graph {
            source_consumers: vec![Vec::new(); source_names.len()],
            step_consumers: vec![Vec::new(); order.len()],
            step_producers: vec![Vec::new(); order.len()],
            keyed: order.iter().map(|n| matches!(c.steps[n], StepConfig::WindowJoin(_) | StepConfig::WindowAggregate(_))).collect(),
            stage: vec![0; order.len()],
            stages: 1,
            order,
            source_names,
        };
        for j in 0..g.order.len() {
            for (port, input) in c.steps[&g.order[j]].inputs().iter().enumerate() {
                let consumer = Consumer::Step { step: j, port };
                let producer = g.producer(input).expect("inputs were checked");
                g.push_consumer(producer, consumer);
                g.step_producers[j].push(producer);
                if let Producer::Step(k) = producer {
                    let stage = g.stage[k] + usize::from(g.keyed[j]);
                    g.stage[j] = g.stage[j].max(stage);
                }
            }
            g.stages = g.stages.max(g.stage[j] + 1);
        }
        for (i, (_, sc)) in c.sinks.iter().enumerate() {
            for input in sc.inputs() {
                let producer = g.producer(input).expect("inputs were checked");
                g.push_consumer(producer, Consumer::Sink(i));
            }
        }
        Ok(g)
    }

    fn producer(&self, name: &str) -> Option<Producer> {
        if let Some(i) = self.source_names.iter().position(|s| s == name) {
            Some(Producer::Source(i))
        } else {
            self.order.iter().position(|s| s == name).map(Producer::Step)
        }
    }

    fn push_consumer(&mut self, producer: Producer, consumer: Consumer) {
        match producer {
            Producer::Source(i) => self.source_consumers[i].push(consumer),
            Producer::Step(k) => self.step_consumers[k].push(consumer),
        }
    }

    /// Steps of `stage`, in topological order.
    pub fn steps_of(&self, stage: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.order.len()).filter(move |&j| self.stage[j] == stage)
    }

    /// Whether any step of `stage` keeps state.
    pub fn stateful(&self, stage: usize) -> bool {
        self.steps_of(stage).any(|j| self.keyed[j])
    }

    /// Earlier stages with an edge into `stage`.
    pub fn upstream_of(&self, stage: usize) -> Vec<usize> {
        let mut ups: Vec<usize> = self
            .steps_of(stage)
            .flat_map(|j| self.step_producers[j].iter())
            .filter_map(|p| match *p {
                Producer::Step(k) if self.stage[k] < stage => Some(self.stage[k]),
                _ => None,
            })
            .collect();
        ups.sort_unstable();
        ups.dedup();
        ups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(json: &str) -> Graph {
        let config = crate::config::parse_pipeline(json).expect("valid");
        let p = LoadedPipeline { config, base_dir: ".".into(), file: None, text: json.to_string() };
        Graph::of(&p).unwrap()
    }

    #[test]
    fn a_join_after_steps_starts_a_stage_and_one_fed_by_sources_does_not() {
        let join = |a: &str, b: &str| {
            format!(r#"{{"type": "window-join", "inputs": ["{a}", "{b}"], "keys": {{"{a}": "$.id", "{b}": "$.id"}}, "window": {{"start_ms": 0, "end_ms": 10}}}}"#)
        };
        let src = r#"{"type": "file", "path": "x"}"#;
        let g = graph(&format!(
            r#"{{"sources": {{"a": {src}, "b": {src}}},
                "steps": {{"fa": {{"type": "filter", "inputs": ["a"], "where": {{"path": "$.id", "op": "exists"}}}},
                          "j": {j},
                          "after": {{"type": "project", "inputs": ["j"], "drop": ["x"]}},
                          "direct": {d}}},
                "sinks": {{"out": {{"type": "stdout", "inputs": ["after", "direct"]}}}}}}"#,
            j = join("fa", "b"),
            d = join("a", "b")
        ));
        let stage = |name: &str| g.stage[g.order.iter().position(|n| n == name).unwrap()];
        assert_eq!((stage("fa"), stage("j"), stage("after"), stage("direct")), (0, 1, 1, 0));
        assert_eq!(g.stages, 2);
        assert_eq!(g.upstream_of(1), vec![0]);
        assert!(g.stateful(1) && g.stateful(0));
    }
}
