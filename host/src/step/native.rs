//! Transforms compiled into the host, registered by name through the
//! library API (used to measure plugins against native code).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Operator, StepContext};
use crate::dead_letter::DeadKind;
use crate::event::{Batch, Event};

/// One event in, zero or more out, or an error for that event.
pub type NativeFn = Box<dyn FnMut(&Event) -> Result<Vec<Event>, String> + Send>;

/// Named factories of native transforms, one instance per step.
#[derive(Clone, Default)]
pub struct NativeRegistry {
    factories: HashMap<String, Arc<dyn Fn() -> NativeFn + Send + Sync>>,
}

impl NativeRegistry {
    pub fn register(&mut self, name: &str, factory: impl Fn() -> NativeFn + Send + Sync + 'static) {
        self.factories.insert(name.into(), Arc::new(factory));
    }

    pub fn create(&self, name: &str) -> Option<NativeFn> {
        self.factories.get(name).map(|f| f())
    }

    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }
}

pub struct NativeStep {
    name: String,
    f: NativeFn,
    /// Inputs the function returned no output for.
    filtered: u64,
}

impl NativeStep {
    pub fn new(name: &str, f: NativeFn) -> Self {
        NativeStep { name: name.into(), f, filtered: 0 }
    }
}

impl Operator for NativeStep {
    fn process_batch(&mut self, input: Batch, ctx: &mut StepContext<'_>) -> Batch {
        let mut out = Batch::with_capacity(input.len());
        for (event, origin) in input.events.into_iter().zip(input.origins) {
            match (self.f)(&event) {
                Ok(events) => {
                    self.filtered += u64::from(events.is_empty());
                    for e in events {
                        out.push(e, origin.clone());
                    }
                }
                Err(reason) => ctx.refuse(&self.name, None, DeadKind::StepError, reason, origin, event),
            }
        }
        out
    }

    fn take_filtered(&mut self) -> u64 {
        std::mem::take(&mut self.filtered)
    }
}
