//! The pipeline thread's loop: receive batches from the sources, push them
//! through the DAG, write sinks and dead letters; stop gracefully on a
//! request or a failed source.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::build::{Consumer, Pipeline};
use super::checkpoint::{CheckpointMeta, SourceMark};
use super::watermarks::Watermarks;
use super::stats::{snapshot, spawn_progress, RunEnd, RunSummary};
use super::RunError;
use crate::dead_letter::DeadLetter;
use crate::event::Batch;
use crate::source::{drive, message_bytes, ByteBudget, Emitter, SourceEnd, SourceMessage, END_OF_TIME};
use crate::step::StepContext;

impl Pipeline {
    /// Runs until every source is exhausted, a source fails, or a stop is
    /// asked for (`stop_handle`), then flushes everything. Stopped or
    /// failed, the sources are halted, what they handed over is drained
    /// through the DAG and a final checkpoint records them as not finished,
    /// at their real watermarks: nothing is fired as if their input ended.
    pub fn run(mut self) -> Result<RunSummary, RunError> {
        let start = Instant::now();
        let n_sources = self.sources.len();
        let (tx, rx) = crossbeam_channel::bounded(self.channel_batches * n_sources);
        let budget = Arc::new(ByteBudget::new(self.channel_bytes));
        // Tells every source to stop: on a stop request or a failed source.
        let halt = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, s) in self.sources.iter_mut().enumerate() {
            let source = s.source.take().expect("a pipeline runs once");
            let (factory, retry) = (s.factory.clone(), s.retry.clone());
            let mut emitter = Emitter::new(i, &s.name, tx.clone(), self.batch_size, Duration::from_millis(self.linger_ms))
                .with_out_of_orderness(s.out_of_orderness_ms)
                .with_halt(halt.clone())
                .with_budget(budget.clone());
            if let Some(mark) = s.resume {
                emitter = emitter.resume_at(mark.resume, mark.watermark);
            }
            threads.push(Some(
                std::thread::Builder::new()
                    .name(format!("source-{}", s.name))
                    .spawn(move || {
                        let end = drive(source, &factory, retry.as_ref(), &mut emitter);
                        emitter.finish(end);
                    })
                    .map_err(|e| RunError::Thread(e.to_string()))?,
            ));
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
        let progress_line = self.progress.then(|| spawn_progress(all_stats.clone(), stop.clone()));

        let mut errors = Vec::new();
        let mut live = n_sources;
        // How each source ended (None: still running).
        let mut ends: Vec<Option<SourceEnd>> = vec![None; n_sources];
        let mut halted_at: Option<Instant> = None;
        let mut final_checkpoint = None;
        self.clock = Watermarks::new(self.sources.iter().map(|s| s.idle_timeout).collect(), self.steps.len());
        // Sources whose last data message is not yet covered by a progress report.
        let mut unreported = vec![false; n_sources];
        // After a restore: where each source stands.
        let mut progress: Vec<SourceMark> = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            let mark = match s.resume {
                Some(mark) => {
                    self.clock.advance_source(i, mark.watermark);
                    SourceMark { ended: false, ..mark }
                }
                None => SourceMark { watermark: i64::MIN, ..Default::default() },
            };
            progress.push(mark);
        }
        // Without idle timeouts there is nothing to check between messages.
        let tick = self.clock.shortest_idle_timeout().map(|t| (t / 4).max(Duration::from_millis(1)));
        let stop_requests = self.stop.clone();
        let mut woken = stop_requests.woken().clone();
        let result: Result<(), RunError> = (|| {
            self.advance_watermarks()?;
            while live > 0 {
                if halted_at.is_none() && (stop_requests.is_requested() || !errors.is_empty()) {
                    let why = if errors.is_empty() { "a stop was asked for" } else { "a source failed" };
                    tracing::info!("stopping the sources ({why}); draining what they hand over");
                    halt.store(true, Relaxed);
                    halted_at = Some(Instant::now());
                    woken = crossbeam_channel::never();
                }
                if halted_at.is_some_and(|t| t.elapsed() >= STOP_GRACE) {
                    let silent: Vec<&str> = (0..n_sources).filter(|i| ends[*i].is_none()).map(|i| self.sources[i].name.as_str()).collect();
                    tracing::warn!(sources = %silent.join(", "), "sources did not stop in {STOP_GRACE:?}; leaving them");
                    break;
                }
                let wait = match (tick, halted_at) {
                    (_, Some(_)) => Duration::from_millis(100),
                    (Some(tick), None) => tick,
                    (None, None) => Duration::from_secs(3600),
                };
                let received = crossbeam_channel::select! {
                    recv(rx) -> m => match m {
                        Ok(m) => Some(m),
                        Err(_) => break,
                    },
                    recv(woken) -> _ => continue,
                    default(wait) => None,
                };
                let now = Instant::now();
                let Some((i, msg)) = received else {
                    if tick.is_some() && self.clock.check_idle(now) {
                        self.advance_watermarks()?;
                        self.flush_outputs()?;
                    }
                    continue;
                };
                budget.release(message_bytes(&msg));
                if self.clock.heard_from(i, now) {
                    self.advance_watermarks()?;
                }
                let msg_kind = match &msg {
                    SourceMessage::Batch(_) | SourceMessage::Rejected(_) => Kind::Data,
                    _ => Kind::Control,
                };
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
                    SourceMessage::Watermark(wm) => {
                        self.clock.advance_source(i, wm);
                        self.advance_watermarks()?;
                    }
                    SourceMessage::Progress(point) => {
                        progress[i].resume = point;
                        unreported[i] = false;
                    }
                    // Logged by the source; its data is still to come.
                    SourceMessage::Retrying { .. } => self.clock.hold(i),
                    SourceMessage::End(end) => {
                        unreported[i] = false;
                        live -= 1;
                        match &end {
                            // Only an exhausted input ends event time.
                            SourceEnd::Exhausted => {
                                self.clock.advance_source(i, END_OF_TIME);
                                progress[i].ended = true;
                                self.advance_watermarks()?;
                            }
                            SourceEnd::Stopped => {}
                            SourceEnd::Failed(e) => {
                                tracing::error!(source = %self.sources[i].name, error = %e, "source failed");
                                errors.push(e.clone());
                            }
                        }
                        ends[i] = Some(end);
                    }
                }
                if matches!(msg_kind, Kind::Data) {
                    unreported[i] = true;
                }
                // A source's flush (dead letters, batch, watermark, progress)
                // is one unit: between its data and its progress report the
                // state is ahead of the position a checkpoint would record.
                if !unreported.iter().any(|u| *u) && self.checkpoints.as_ref().is_some_and(|c| c.due()) {
                    self.checkpoint(&mut progress)?;
                }
                if tick.is_some() && self.clock.check_idle(now) {
                    self.advance_watermarks()?;
                }
                // Nothing more waiting: hand buffered output over now, so a
                // slow or live stream's results do not sit in a buffer.
                if rx.is_empty() {
                    self.flush_outputs()?;
                }
            }
            // Only when every input is exhausted may stateful steps emit
            // what they hold; a stopped run keeps it for the restart.
            if ends.iter().all(|e| *e == Some(SourceEnd::Exhausted)) {
                for i in 0..self.steps.len() {
                    let mut dead = Vec::new();
                    let watermark = self.clock.step_input(i);
                    let mut ctx = StepContext { dead: &mut dead, input: 0, watermark, state: &mut *self.state, failed: None };
                    let out = self.steps[i].op.close(&mut ctx);
                    check(ctx.failed)?;
                    self.after_step(i, out, dead)?;
                }
            }
            if self.checkpoints.is_none() {
                self.commit_outputs()?;
            } else if unreported.iter().any(|u| *u) {
                // A source left mid-flush: its position does not cover the
                // data already processed; the last checkpoint stands.
                self.commit_outputs()?;
                tracing::warn!("no final checkpoint: a source did not finish handing over its data");
            } else {
                // The last checkpoint covers the whole run (a completed run
                // leaves nothing to do; a stopped one goes on from here).
                final_checkpoint = Some(self.checkpoint(&mut progress)?);
            }
            Ok(())
        })();
        stop.store(true, Relaxed);
        if let Some(p) = progress_line {
            let _ = p.join();
        }
        // Sources still running (a fatal error, or one that did not stop)
        // may be blocked in a read: tell them to stop and never wait for
        // them; the process may exit under them.
        halt.store(true, Relaxed);
        budget.close();
        drop(rx);
        for (i, t) in threads.iter_mut().enumerate() {
            if ends[i].is_some() {
                // It sent its last message and is returning.
                if let Some(t) = t.take() {
                    let _ = t.join();
                }
            }
        }
        result?;
        let end = if !errors.is_empty() {
            RunEnd::Failed
        } else if ends.iter().all(|e| *e == Some(SourceEnd::Exhausted)) {
            RunEnd::Completed
        } else {
            RunEnd::Stopped
        };
        Ok(RunSummary {
            name: self.name.clone(),
            elapsed: start.elapsed(),
            nodes: snapshot(&all_stats),
            dead_lettered: self.dead.count(),
            dead_letter_target: self.dead.path().map(Into::into),
            sink_targets: self.sinks.iter().map(|s| (s.name.clone(), s.sink.target())).collect(),
            end,
            final_checkpoint,
            errors,
            plugins: self.swapper.registry().slots().map(|s| super::stats::PluginSummary::of(s)).collect(),
            resumed_from: self.resumed_from,
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
            Consumer::Step { step: i, port } => {
                self.steps[i].stats.events_in.fetch_add(batch.len() as u64, Relaxed);
                let mut dead = Vec::new();
                let watermark = self.clock.step_input(i);
                let mut ctx = StepContext { dead: &mut dead, input: port, watermark, state: &mut *self.state, failed: None };
                let out = self.steps[i].op.process_batch(batch, &mut ctx);
                check(ctx.failed)?;
                self.after_step(i, out, dead)
            }
        }
    }

    /// Flushes and syncs sinks and dead letters (the end of a run).
    fn commit_outputs(&mut self) -> Result<(), RunError> {
        for s in &mut self.sinks {
            s.sink.commit()?;
        }
        let path = self.dead.path().map(|p| p.display().to_string()).unwrap_or_default();
        self.dead.commit().map(drop).map_err(|error| RunError::DeadLetter { path, error })
    }

    /// Flushes sinks and dead letters (not a commit: no fsync).
    fn flush_outputs(&mut self) -> Result<(), RunError> {
        for s in &mut self.sinks {
            s.sink.flush()?;
        }
        let path = self.dead.path().map(|p| p.display().to_string()).unwrap_or_default();
        self.dead.flush().map_err(|error| RunError::DeadLetter { path, error })
    }

    /// Takes a checkpoint: sinks and dead letters committed, then the state's
    /// snapshot, then the record that completes it (see `checkpoint.rs`).
    /// Returns its id.
    fn checkpoint(&mut self, progress: &mut [SourceMark]) -> Result<u64, RunError> {
        let Some(schedule) = self.checkpoints.as_mut() else { return Ok(0) };
        let id = schedule.start();
        let folder = schedule.store.folder(id);
        let mut meta = CheckpointMeta { id, ..Default::default() };
        meta.fingerprint = Some(self.fingerprint.clone());
        for s in &mut self.sinks {
            if let Some(len) = s.sink.commit()? {
                meta.sinks.insert(s.name.clone(), len);
            }
        }
        let path = self.dead.path().map(|p| p.display().to_string()).unwrap_or_default();
        meta.dead_letter = self.dead.commit().map_err(|error| RunError::DeadLetter { path, error })?;
        meta.dead_count = self.dead.count();
        let state_err = |e: crate::state::StateError| RunError::State(e.to_string());
        self.state.commit().map_err(state_err)?;
        self.state.checkpoint(&folder.join("state")).map_err(state_err)?;
        for (i, s) in self.sources.iter().enumerate() {
            progress[i].watermark = self.clock.source_watermark(i);
            meta.sources.insert(s.name.clone(), progress[i]);
        }
        let schedule = self.checkpoints.as_ref().expect("checked above");
        schedule.store.complete(&meta).map_err(|e| RunError::State(format!("checkpoint {id}: {e}")))?;
        tracing::debug!(id, dir = %folder.display(), "checkpoint complete");
        Ok(id)
    }

    /// Brings every step's watermark up to date, in topological order: a
    /// step whose input watermark advanced emits what that completes (its
    /// output goes downstream before the downstream watermark moves).
    fn advance_watermarks(&mut self) -> Result<(), RunError> {
        for j in 0..self.steps.len() {
            let (input, idle) = self.clock.input_of(j, &self.steps[j].producers);
            if input > self.clock.step_input(j) {
                self.steps[j].stats.watermark.store(input, Relaxed);
                // Emit what the new watermark completes, a batch at a time,
                // before the step's own watermark moves.
                loop {
                    let mut dead = Vec::new();
                    let mut ctx = StepContext { dead: &mut dead, input: 0, watermark: input, state: &mut *self.state, failed: None };
                    let out = self.steps[j].op.on_watermark(input, &mut ctx);
                    check(ctx.failed)?;
                    let done = out.is_empty();
                    self.after_step(j, out, dead)?;
                    if done {
                        break;
                    }
                }
                let output = self.steps[j].op.output_watermark(input);
                self.clock.set_step(j, input, output, idle);
            } else {
                self.clock.set_step_idle(j, idle);
            }
        }
        Ok(())
    }

    fn after_step(&mut self, i: usize, out: Batch, dead: Vec<DeadLetter>) -> Result<(), RunError> {
        let filtered = self.steps[i].op.take_filtered();
        let st = &self.steps[i].stats;
        st.dead.fetch_add(dead.len() as u64, Relaxed);
        st.events_out.fetch_add(out.len() as u64, Relaxed);
        st.filtered.fetch_add(filtered, Relaxed);
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

/// A step's fatal error, as the run's.
fn check(failed: Option<String>) -> Result<(), RunError> {
    failed.map_or(Ok(()), |e| Err(RunError::Step(e)))
}

/// How long a stop waits for the sources to hand over what they hold.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a source message is, for checkpoint timing.
enum Kind {
    Data,
    Control,
}
