//! A step that runs a `transform` plugin over each batch.

use super::{dead_kind, Operator, StepContext};
use crate::event::Batch;
use crate::plugin::{Outcome, TransformRunner};

pub struct TransformStep {
    name: String,
    plugin: String,
    runner: TransformRunner,
}

impl TransformStep {
    pub fn new(name: &str, plugin: &str, runner: TransformRunner) -> Self {
        TransformStep { name: name.into(), plugin: plugin.into(), runner }
    }
}

impl Operator for TransformStep {
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        let outcomes = self.runner.process(&input.events);
        let mut out = Batch::with_capacity(input.len());
        for ((event, origin), outcome) in input.events.into_iter().zip(input.origins).zip(outcomes) {
            match outcome {
                Outcome::Ok(events) => {
                    for e in events {
                        out.push(e, origin.clone());
                    }
                }
                Outcome::Failed(f) => ctx.refuse(&self.name, Some(&self.plugin), dead_kind(f.kind), f.message, origin, event),
            }
        }
        out
    }
}
