//! The pipeline thread's loop: receive batches from the sources, push them
//! through the DAG, write sinks and dead letters.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::build::{Consumer, Pipeline};
use super::stats::{snapshot, spawn_progress, RunSummary};
use super::RunError;
use crate::dead_letter::DeadLetter;
use crate::event::Batch;
use crate::source::{Emitter, SourceMessage};
use crate::step::StepContext;

impl Pipeline {
    /// Runs until every source is exhausted, then flushes everything.
    pub fn run(mut self) -> Result<RunSummary, RunError> {
        let start = Instant::now();
        let n_sources = self.sources.len();
        let (tx, rx) = crossbeam_channel::bounded(self.channel_batches * n_sources);
        let mut threads = Vec::new();
        for (i, s) in self.sources.iter_mut().enumerate() {
            let source = s.source.take().expect("a pipeline runs once");
            let mut emitter = Emitter::new(i, &s.name, tx.clone(), self.batch_size, Duration::from_millis(self.linger_ms));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("source-{}", s.name))
                    .spawn(move || {
                        let result = source.run(&mut emitter).map_err(|e| e.to_string());
                        emitter.finish(result);
                    })
                    .map_err(|e| RunError::Thread(e.to_string()))?,
            );
        }
        drop(tx);

        let all_stats: Vec<_> = self
            .sources
            .iter()
            .map(|s| s.stats.clone())
            .chain(self.steps.iter().map(|s| s.stats.clone()))
            .chain(self.sinks.iter().map(|s| s.stats.clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = self.progress.then(|| spawn_progress(all_stats.clone(), stop.clone()));

        let mut errors = Vec::new();
        let mut live = n_sources;
        let result = (|| {
            while live > 0 {
                let Ok((i, msg)) = rx.recv() else { break };
                match msg {
                    SourceMessage::Batch(batch) => {
                        let src = &self.sources[i];
                        src.stats.events_out.fetch_add(batch.len() as u64, Relaxed);
                        src.stats.events_in.fetch_add(batch.len() as u64, Relaxed);
                        let consumers = src.consumers.clone();
                        self.fan_out(&consumers, batch)?;
                    }
                    SourceMessage::Rejected(dead) => {
                        let src = &self.sources[i];
                        src.stats.events_in.fetch_add(dead.len() as u64, Relaxed);
                        src.stats.dead.fetch_add(dead.len() as u64, Relaxed);
                        self.write_dead(&dead)?;
                    }
                    SourceMessage::End(r) => {
                        live -= 1;
                        if let Err(e) = r {
                            errors.push(e);
                        }
                    }
                }
            }
            // Let stateful steps emit what they hold, upstream first.
            for i in 0..self.steps.len() {
                let mut dead = Vec::new();
                let out = self.steps[i].op.close(&mut StepContext { dead: &mut dead });
                self.after_step(i, out, dead)?;
            }
            for s in &mut self.sinks {
                s.sink.flush()?;
            }
            let path = self.dead.path().map(|p| p.display().to_string()).unwrap_or_default();
            self.dead.flush().map_err(|error| RunError::DeadLetter { path, error })
        })();
        stop.store(true, Relaxed);
        if let Some(p) = progress {
            let _ = p.join();
        }
        drop(rx);
        for t in threads {
            if t.join().is_err() {
                errors.push("a source thread panicked".into());
            }
        }
        result?;
        Ok(RunSummary {
            name: self.name.clone(),
            elapsed: start.elapsed(),
            nodes: snapshot(&all_stats),
            dead_lettered: self.dead.count(),
            dead_letter_target: self.dead.path().map(Into::into),
            sink_targets: self.sinks.iter().map(|s| (s.name.clone(), s.sink.target())).collect(),
            errors,
        })
    }

    /// Hands `batch` to each consumer (cloning for all but the last).
    fn fan_out(&mut self, consumers: &[Consumer], batch: Batch) -> Result<(), RunError> {
        let Some((last, rest)) = consumers.split_last() else { return Ok(()) };
        for c in rest {
            self.deliver(*c, batch.clone())?;
        }
        self.deliver(*last, batch)
    }

    fn deliver(&mut self, c: Consumer, batch: Batch) -> Result<(), RunError> {
        match c {
            Consumer::Sink(i) => {
                let s = &mut self.sinks[i];
                s.stats.events_in.fetch_add(batch.len() as u64, Relaxed);
                s.sink.write_batch(&batch)?;
                s.stats.events_out.fetch_add(batch.len() as u64, Relaxed);
                Ok(())
            }
            Consumer::Step(i) => {
                self.steps[i].stats.events_in.fetch_add(batch.len() as u64, Relaxed);
                let mut dead = Vec::new();
                let out = self.steps[i].op.process_batch(batch, &mut StepContext { dead: &mut dead });
                self.after_step(i, out, dead)
            }
        }
    }

    fn after_step(&mut self, i: usize, out: Batch, dead: Vec<DeadLetter>) -> Result<(), RunError> {
        let st = &self.steps[i].stats;
        st.dead.fetch_add(dead.len() as u64, Relaxed);
        st.events_out.fetch_add(out.len() as u64, Relaxed);
        self.write_dead(&dead)?;
        if out.is_empty() {
            return Ok(());
        }
        let consumers = self.steps[i].consumers.clone();
        self.fan_out(&consumers, out)
    }

    fn write_dead(&mut self, dead: &[DeadLetter]) -> Result<(), RunError> {
        for d in dead {
            if let Err(error) = self.dead.write(d) {
                let path = self.dead.path().map(|p| p.display().to_string()).unwrap_or_default();
                return Err(RunError::DeadLetter { path, error });
            }
        }
        Ok(())
    }
}
