//! The coordinator: the thread that runs a pipeline. It receives the sources'
//! batches and routes them to the workers (by key to a keyed step, else by event
//! key or to the least busy worker), sends them the sources' watermarks, writes
//! sinks and dead letters from the workers' outputs, and takes checkpoints with
//! a barrier through every worker. It stops gracefully on a request or a
//! failed source.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};

use super::build::Pipeline;
use super::checkpoint::{CheckpointMeta, SourceMark};
use super::graph::Consumer;
use super::partition::{by_key, by_read_keys, key_group, split, worker_of};
use super::stats::{snapshot, spawn_progress, RunEnd, RunSummary};
use super::watermarks::Watermarks;
use super::worker::{FromWorker, ToWorker, Worker};
use super::RunError;
use crate::dead_letter::DeadLetter;
use crate::event::Batch;
use crate::step::RoutedKey;
use crate::source::{drive, message_bytes, ByteBudget, Emitter, SourceEnd, SourceMessage, END_OF_TIME};

/// The coordinator's ends of the channels to and from the workers.
struct Links {
    /// To each worker (stage by stage).
    to: Vec<Sender<ToWorker>>,
    from: Receiver<FromWorker>,
    /// Barriers acknowledged, closes reported.
    acks: usize,
    /// The writes the acknowledgements of a checkpoint's barrier carried (Redis
    /// state), applied with its record.
    deferred: Vec<crate::state::DeferredWrites>,
    closed: usize,
    /// Where the next batch without keys goes first.
    next: usize,
    /// Per source: the clock last sent to the workers.
    sent: Vec<Option<(i64, bool)>>,
}

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
        let mut captures = self.key_captures();
        // Which consumer each source's captured keys are for.
        let captured_for: Vec<Option<Consumer>> = captures.iter().map(|c| c.as_ref().map(|(c, _)| *c)).collect();
        let mut threads = Vec::new();
        for (i, s) in self.sources.iter_mut().enumerate() {
            let source = s.source.take().expect("a pipeline runs once");
            let (factory, retry) = (s.factory.clone(), s.retry.clone());
            let mut emitter = Emitter::new(i, &s.name, tx.clone(), self.batch_size, Duration::from_millis(self.linger_ms))
                .with_out_of_orderness(s.out_of_orderness_ms)
                .with_halt(halt.clone())
                .with_budget(budget.clone())
                .with_blocked_count(s.stats.clone());
            if let Some(mark) = s.resume.clone() {
                emitter = emitter.resume_at(mark.resume, mark.watermark);
            }
            if let Some((_, capture)) = captures[i].take() {
                emitter = emitter.with_capture(capture);
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
        let (mut links, workers) = self.start_workers()?;

        let all_stats: Vec<_> = self
            .sources
            .iter()
            .map(|s| s.stats.clone())
            .chain(self.step_stats.iter().cloned())
            .chain(self.sinks.iter().map(|s| s.stats.clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let progress_line = self.progress.then(|| spawn_progress(all_stats.clone(), stop.clone()));

        let metrics_on = self.metrics.enabled();
        let mut errors = Vec::new();
        let mut live = n_sources;
        // How each source ended (None: still running).
        let mut ends: Vec<Option<SourceEnd>> = vec![None; n_sources];
        let mut halted_at: Option<Instant> = None;
        let mut final_checkpoint = None;
        let mut clock = Watermarks::new(self.sources.iter().map(|s| s.idle_timeout).collect(), 0);
        // Sources whose last data message is not yet covered by a progress report.
        let mut unreported = vec![false; n_sources];
        // After a restore: where each source stands.
        let mut progress: Vec<SourceMark> = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            let mark = match s.resume.clone() {
                Some(mark) => {
                    clock.advance_source(i, mark.watermark);
                    s.stats.watermark.store(mark.watermark, Relaxed);
                    SourceMark { ended: false, ..mark }
                }
                None => SourceMark { watermark: i64::MIN, ..Default::default() },
            };
            progress.push(mark);
        }
        // Without idle timeouts there is nothing to check between messages.
        let tick = clock.shortest_idle_timeout().map(|t| (t / 4).max(Duration::from_millis(1)));
        let stop_requests = self.stop.clone();
        let mut woken = stop_requests.woken().clone();
        let result: Result<(), RunError> = (|| {
            self.send_clocks(&mut links, &clock)?;
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
                // Quiet sources still get their checkpoints (and group commits) on time.
                let wait = self.checkpoints.as_ref().map_or(wait, |c| wait.min(c.until_due().max(Duration::from_millis(1))));
                let from = links.from.clone();
                let received = crossbeam_channel::select! {
                    recv(rx) -> m => match m {
                        Ok(m) => Some(m),
                        Err(_) => break,
                    },
                    recv(from) -> m => {
                        self.on_output(&mut links, m)?;
                        if rx.is_empty() && links.from.is_empty() {
                            self.flush_outputs()?;
                        }
                        continue;
                    },
                    recv(woken) -> _ => continue,
                    default(wait) => None,
                };
                let now = Instant::now();
                let Some((i, msg)) = received else {
                    if tick.is_some() && clock.check_idle(now) {
                        self.send_clocks(&mut links, &clock)?;
                        self.flush_outputs()?;
                    }
                    if halted_at.is_none() && !unreported.iter().any(|u| *u) && self.checkpoints.as_ref().is_some_and(|c| c.due()) {
                        self.checkpoint(&mut links, &clock, &mut progress, false)?;
                    }
                    continue;
                };
                budget.release(message_bytes(&msg));
                if clock.heard_from(i, now) {
                    self.send_clocks(&mut links, &clock)?;
                }
                let msg_kind = match &msg {
                    SourceMessage::Batch(..) | SourceMessage::Rejected(_) => Kind::Data,
                    _ => Kind::Control,
                };
                match msg {
                    SourceMessage::Batch(batch, keys) => {
                        let src = &self.sources[i];
                        src.stats.add_out(batch.len() as u64);
                        src.stats.add_in(batch.len() as u64);
                        if let Some(last) = batch.events.last().filter(|_| metrics_on) {
                            src.stats.bytes.fetch_add(crate::metrics::batch_bytes(&batch), Relaxed);
                            // Flink's currentEmitEventTimeLag: when handed over, minus its event time.
                            src.stats.last_event_time_ms.store(last.timestamp, Relaxed);
                            src.stats.last_emit_ms.store(crate::source::now_ms(), Relaxed);
                        }
                        let keys = keys.and_then(|k| captured_for[i].map(|c| (c, k)));
                        if let Some(tap) = &self.source_taps[i] {
                            tap.offer(&batch);
                        }
                        if let Some(t) = &self.trace {
                            t.source(&src.name, &batch);
                        }
                        self.route_source(&mut links, i, batch, keys)?;
                    }
                    SourceMessage::Rejected(dead) => {
                        let src = &self.sources[i];
                        src.stats.add_in(dead.len() as u64);
                        if metrics_on {
                            let read: usize = dead.iter().map(|d| d.event.value.len() + d.event.key.as_ref().map_or(0, Vec::len)).sum();
                            src.stats.bytes.fetch_add(read as u64, Relaxed);
                        }
                        src.stats.dead.fetch_add(dead.len() as u64, Relaxed);
                        if let Some(tap) = &self.source_taps[i] {
                            tap.offer_rejected(&dead);
                        }
                        self.write_dead(&dead)?;
                    }
                    SourceMessage::Watermark(wm) => {
                        self.sources[i].stats.watermark.store(wm, Relaxed);
                        clock.advance_source(i, wm);
                        self.send_clocks(&mut links, &clock)?;
                    }
                    SourceMessage::Progress(point) => {
                        progress[i].resume = point;
                        unreported[i] = false;
                    }
                    // Logged by the source; its data is still to come.
                    SourceMessage::Retrying { .. } => {
                        clock.hold(i);
                        self.send_clocks(&mut links, &clock)?;
                    }
                    SourceMessage::End(end) => {
                        unreported[i] = false;
                        live -= 1;
                        match &end {
                            // Only an exhausted input ends event time.
                            SourceEnd::Exhausted => {
                                self.sources[i].stats.watermark.store(END_OF_TIME, Relaxed);
                                clock.advance_source(i, END_OF_TIME);
                                progress[i].ended = true;
                                self.send_clocks(&mut links, &clock)?;
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
                // A replay: what this message started is finished before the
                // next is read, so no thread's timing changes the outputs.
                if self.lockstep {
                    self.drain_workers(&mut links)?;
                }
                // A source's flush (dead letters, batch, watermark, progress)
                // is one unit: between its data and its progress report the
                // state is ahead of the position a checkpoint would record.
                if !unreported.iter().any(|u| *u) && self.checkpoints.as_ref().is_some_and(|c| c.due()) {
                    self.checkpoint(&mut links, &clock, &mut progress, false)?;
                }
                if tick.is_some() && clock.check_idle(now) {
                    self.send_clocks(&mut links, &clock)?;
                }
                // Nothing more waiting: hand buffered output over now, so a
                // slow or live stream's results do not sit in a buffer.
                if rx.is_empty() && links.from.is_empty() {
                    self.flush_outputs()?;
                }
            }
            // Only when every input is exhausted may stateful steps emit
            // what they hold; a stopped run keeps it for the restart.
            if ends.iter().all(|e| *e == Some(SourceEnd::Exhausted)) {
                for w in 0..links.to.len() {
                    self.send_to(&mut links, w, ToWorker::Close)?;
                }
                while links.closed < links.to.len() {
                    let m = links.from.recv();
                    self.on_output(&mut links, m)?;
                }
            }
            if self.checkpoints.is_none() {
                self.drain_workers(&mut links)?;
                self.commit_outputs()?;
            } else if unreported.iter().any(|u| *u) {
                // A source left mid-flush: its position does not cover the
                // data already processed; the last checkpoint stands.
                self.drain_workers(&mut links)?;
                self.commit_outputs()?;
                tracing::warn!("no final checkpoint: a source did not finish handing over its data");
            } else {
                // The last checkpoint covers the whole run (a completed run
                // leaves nothing to do; a stopped one goes on from here).
                final_checkpoint = Some(self.checkpoint(&mut links, &clock, &mut progress, true)?);
            }
            Ok(())
        })();
        stop.store(true, Relaxed);
        if let Some(p) = progress_line {
            p.thread().unpark();
            let _ = p.join();
        }
        // Workers end when their inputs close; outputs still coming are
        // drained so none of them blocks on a full channel.
        links.to.clear();
        while links.from.recv().is_ok() {}
        for w in workers {
            let _ = w.join();
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
        // The alert rules see the run's last figures and their webhook
        // delivers what is queued, before the summary is printed.
        drop(self.alerts.take());
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

    /// Wires the channels (coordinator → every worker; every worker → each
    /// worker of the later stages it feeds; every worker → coordinator) and
    /// starts one thread per worker.
    fn start_workers(&mut self) -> Result<(Links, Vec<std::thread::JoinHandle<()>>), RunError> {
        let parts = std::mem::take(&mut self.workers);
        let total = parts.len();
        let n = self.per_stage;
        let capacity = self.channel_batches.max(2);
        let (out_tx, out_rx) = crossbeam_channel::bounded(capacity * total.max(1) * 4);
        let mut inputs: Vec<Vec<Receiver<ToWorker>>> = (0..total).map(|_| Vec::new()).collect();
        let mut downstream: Vec<BTreeMap<usize, Vec<Sender<ToWorker>>>> = (0..total).map(|_| BTreeMap::new()).collect();
        let mut to = Vec::with_capacity(total);
        for input in inputs.iter_mut() {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            to.push(tx);
            input.push(rx);
        }
        for stage in 0..self.graph.stages {
            for up in self.graph.upstream_of(stage) {
                for u in 0..n {
                    for d in 0..n {
                        let (tx, rx) = crossbeam_channel::bounded(capacity);
                        downstream[up * n + u].entry(stage).or_default().push(tx);
                        inputs[stage * n + d].push(rx);
                    }
                }
            }
        }
        let mut handles = Vec::with_capacity(total);
        for ((part, inputs), downstream) in parts.into_iter().zip(inputs).zip(downstream) {
            let name = format!("worker-{}-{}", part.stage, part.index);
            let worker = Worker::new(part, self.graph.clone(), n, (self.key_groups, self.grouping), inputs, downstream, out_tx.clone());
            handles.push(std::thread::Builder::new().name(name).spawn(move || worker.run()).map_err(|e| RunError::Thread(e.to_string()))?);
        }
        let sent = vec![None; self.sources.len()];
        Ok((Links { to, from: out_rx, acks: 0, deferred: Vec::new(), closed: 0, next: 0, sent }, handles))
    }

    /// Sends `msg` to worker `w`, writing the workers' outputs while it waits
    /// (a worker blocked on its output never blocks the coordinator).
    fn send_to(&mut self, links: &mut Links, w: usize, msg: ToWorker) -> Result<(), RunError> {
        let mut msg = msg;
        loop {
            match links.to[w].try_send(msg) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::TrySendError::Full(m)) => msg = m,
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(self.worker_gone(links)),
            }
            let mut sel = Select::new();
            let send = sel.send(&links.to[w]);
            sel.recv(&links.from);
            let op = sel.select();
            if op.index() == send {
                match op.send(&links.to[w], msg) {
                    Ok(()) => return Ok(()),
                    Err(_) => return Err(self.worker_gone(links)),
                }
            }
            let m = op.recv(&links.from);
            self.on_output(links, m)?;
        }
    }

    /// Why a worker stopped taking input: the error it reported.
    fn worker_gone(&mut self, links: &mut Links) -> RunError {
        while let Ok(m) = links.from.recv_timeout(Duration::from_secs(5)) {
            if let FromWorker::Failed(e) = m {
                return e;
            }
        }
        RunError::Thread("a worker stopped".into())
    }

    /// Handles one message of the workers.
    fn on_output(&mut self, links: &mut Links, m: Result<FromWorker, crossbeam_channel::RecvError>) -> Result<(), RunError> {
        match m.map_err(|_| RunError::Thread("every worker stopped".into()))? {
            FromWorker::Sink { sink, batch } => self.write_sink(sink, &batch),
            FromWorker::Dead(dead) => self.write_dead(&dead),
            FromWorker::Checkpointed(deferred) => {
                links.acks += 1;
                links.deferred.extend(deferred);
                Ok(())
            }
            FromWorker::Closed => {
                links.closed += 1;
                Ok(())
            }
            FromWorker::Failed(e) => Err(e),
        }
    }

    /// Waits until every worker has handled everything sent so far (a barrier
    /// without a checkpoint), so the outputs can be committed.
    fn drain_workers(&mut self, links: &mut Links) -> Result<(), RunError> {
        self.barrier(links, 0, None)
    }

    fn barrier(&mut self, links: &mut Links, id: u64, folder: Option<std::path::PathBuf>) -> Result<(), RunError> {
        links.acks = 0;
        links.deferred.clear();
        for w in 0..links.to.len() {
            self.send_to(links, w, ToWorker::Barrier { id, folder: folder.clone() })?;
        }
        while links.acks < links.to.len() {
            let m = links.from.recv();
            self.on_output(links, m)?;
        }
        Ok(())
    }

    /// Sends the workers every source clock that changed.
    fn send_clocks(&mut self, links: &mut Links, clock: &Watermarks) -> Result<(), RunError> {
        for i in 0..self.sources.len() {
            let now = clock.source_clock(i);
            if links.sent[i] == Some(now) {
                continue;
            }
            links.sent[i] = Some(now);
            for w in 0..links.to.len() {
                self.send_to(links, w, ToWorker::SourceClock { source: i, watermark: now.0, idle: now.1 })?;
            }
        }
        Ok(())
    }

    /// Hands a source's batch to each of its consumers.
    /// `keys`: the keys source `i` read for one of its consumers.
    fn route_source(&mut self, links: &mut Links, i: usize, batch: Batch, mut keys: Option<(Consumer, Vec<RoutedKey>)>) -> Result<(), RunError> {
        let graph = self.graph.clone();
        let Some((last, rest)) = graph.source_consumers[i].split_last() else { return Ok(()) };
        let mut keys_for = |c: &Consumer| if keys.as_ref().is_some_and(|(k, _)| k == c) { keys.take().map(|(_, k)| k) } else { None };
        for c in rest {
            let k = keys_for(c);
            self.route(links, *c, batch.clone(), k)?;
        }
        let k = keys_for(last);
        self.route(links, *last, batch, k)
    }

    /// Per source: the first keyed step it feeds whose key its own pass can
    /// read ([`crate::step::KeyCapture`]), and the capture.
    fn key_captures(&self) -> Vec<Option<(Consumer, Arc<dyn crate::step::KeyCapture>)>> {
        self.graph
            .source_consumers
            .iter()
            .map(|consumers| {
                consumers.iter().find_map(|c| match *c {
                    Consumer::Step { step, port } => self.routers.get(&step)?.key_capture(port).map(|k| (*c, k)),
                    Consumer::Sink(_) => None,
                })
            })
            .collect()
    }

    /// A sink is written here; a step's input goes to the workers of its
    /// stage: by key group to a keyed step, else by event key (per key order),
    /// a batch without keys to the least busy worker.
    /// `keys`: the keys the source read of `batch` for `c`, if it did.
    fn route(&mut self, links: &mut Links, c: Consumer, batch: Batch, keys: Option<Vec<RoutedKey>>) -> Result<(), RunError> {
        let (step, port) = match c {
            Consumer::Sink(s) => return self.write_sink(s, &batch),
            Consumer::Step { step, port } => (step, port),
        };
        let (n, kgs) = (self.per_stage, self.key_groups);
        let base = self.graph.stage[step] * n;
        let parts = match self.routers.get_mut(&step) {
            Some(router) => {
                // The source or the router reads each key once; the worker gets them with the batch.
                let parts = match keys {
                    Some(keys) => Some(by_read_keys(batch, keys, n, kgs, self.grouping)),
                    None => by_key(router.as_mut(), port, batch, n, kgs, self.grouping),
                };
                let parts = parts.ok_or_else(|| RunError::Step(format!("step {step} routes by key but keeps no keys")))?;
                parts.into_iter().map(|p| p.map(|(b, k)| (b, Some(k)))).collect::<Vec<_>>()
            }
            None => {
                let first = links.next % n;
                links.next = links.next.wrapping_add(1);
                let idle = (0..n).map(|k| (first + k) % n).min_by_key(|&w| links.to[base + w].len()).unwrap_or(0);
                let targets: Vec<usize> = batch.events.iter().map(|e| e.key.as_deref().map_or(idle, |k| worker_of(key_group(k, kgs), n, kgs))).collect();
                let none = vec![(); batch.len()];
                split(batch, none, &targets, n).into_iter().map(|p| p.map(|(b, _)| (b, None))).collect()
            }
        };
        for (w, part) in parts.into_iter().enumerate() {
            if let Some((batch, keys)) = part {
                self.send_to(links, base + w, ToWorker::Batch { step, port, batch, keys })?;
            }
        }
        Ok(())
    }

    fn write_sink(&mut self, i: usize, batch: &Batch) -> Result<(), RunError> {
        let s = &mut self.sinks[i];
        if let Some(t) = &self.trace {
            t.sink(&s.name, batch);
        }
        s.stats.add_in(batch.len() as u64);
        s.sink.write_batch(batch)?;
        s.stats.add_out(batch.len() as u64);
        if self.metrics.enabled() {
            s.stats.bytes.fetch_add(crate::metrics::batch_bytes(batch), Relaxed);
        }
        Ok(())
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

    /// Takes a checkpoint: a barrier through every worker (each snapshots its
    /// state once everything before the barrier has reached it, and sends its
    /// outputs before acknowledging), then sinks prepared (flushed; a
    /// transaction's records on the broker) and dead letters committed, then
    /// the record of the checkpoint, then the sinks' transactions committed
    /// and the checkpoint confirmed (see `checkpoint.rs`), then the sources'
    /// committers told (`last`: the run's final one). Returns its id. Its
    /// outcome and timing go to the web page's list of checkpoints.
    fn checkpoint(&mut self, links: &mut Links, clock: &Watermarks, progress: &mut [SourceMark], last: bool) -> Result<u64, RunError> {
        let Some(schedule) = self.checkpoints.as_ref() else { return Ok(0) };
        let (id, folder) = (schedule.next_id, schedule.store.folder(schedule.next_id));
        let (started, timer) = (std::time::SystemTime::now(), Instant::now());
        let taken = self.take_checkpoint(links, clock, progress, last);
        let took = timer.elapsed();
        let m = self.metrics.checkpoints();
        let (size, error) = match &taken {
            Ok(_) => {
                // Measured once, as it completes (older folders go soon after).
                let size = crate::web::folder_bytes(&folder);
                m.duration.observe(took.as_secs_f64());
                m.size.set(size.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)));
                m.last_success.set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
                // Last: a scrape that sees it counted sees its duration too.
                m.ok.inc();
                (size, None)
            }
            Err(e) => {
                m.failed.inc();
                (None, Some(e.to_string()))
            }
        };
        self.live.checkpoints.record(id, started, took, size, last, error);
        taken
    }

    /// [`Pipeline::checkpoint`]'s work: its id.
    fn take_checkpoint(&mut self, links: &mut Links, clock: &Watermarks, progress: &mut [SourceMark], last: bool) -> Result<u64, RunError> {
        let Some(schedule) = self.checkpoints.as_mut() else { return Ok(0) };
        let id = schedule.start();
        let folder = schedule.store.folder(id);
        self.barrier(links, id, Some(folder.clone()))?;
        let mut meta = CheckpointMeta {
            id,
            workers: Some(self.per_stage),
            key_groups: Some(self.key_groups),
            lineage: Some(self.lineage.clone()),
            transactional: self.sinks.iter().any(|s| s.sink.transactional()),
            ..Default::default()
        };
        meta.fingerprint = Some(self.fingerprint.clone());
        for s in &mut self.sinks {
            if let Some(len) = s.sink.prepare()? {
                meta.sinks.insert(s.name.clone(), len);
            }
        }
        let path = self.dead.path().map(|p| p.display().to_string()).unwrap_or_default();
        meta.dead_letter = self.dead.commit().map_err(|error| RunError::DeadLetter { path, error })?;
        meta.dead_count = self.dead.count();
        for (i, s) in self.sources.iter().enumerate() {
            progress[i].watermark = clock.source_watermark(i);
            meta.sources.insert(s.name.clone(), progress[i].clone());
        }
        if let Some(remote) = self.remote.as_mut() {
            // The state of every worker and the positions it covers, at once:
            // Redis never holds one without the other. In a group, with the
            // entry of each partition owned: its state and its offsets.
            meta.redis_generation = remote.group_generation();
            let encode = |m: &CheckpointMeta| serde_json::to_vec(m).map_err(|e| RunError::State(format!("checkpoint {id}: {e}")));
            let record = encode(&meta)?;
            let partitions = remote.partitions().iter().map(|&p| Ok((p, encode(&meta.for_partition(p))?))).collect::<Result<_, RunError>>()?;
            let written = crate::state::RemoteRecord { id, bytes: &record, workers: self.per_stage, partitions };
            remote.commit(std::mem::take(&mut links.deferred), &written).map_err(|e| match e {
                e @ crate::state::StateError::TakenOver { .. } => RunError::from(e),
                e => RunError::State(format!("checkpoint {id}: {e}")),
            })?;
        }
        std::fs::create_dir_all(&folder).map_err(|e| RunError::State(format!("checkpoint {id}: {}: {e}", folder.display())))?;
        let store = &self.checkpoints.as_ref().expect("checked above").store;
        store.record(&meta).map_err(|e| RunError::State(format!("checkpoint {id}: {e}")))?;
        for s in &mut self.sinks {
            s.sink.checkpoint_done(id)?;
        }
        store.confirm(&meta).map_err(|e| RunError::State(format!("checkpoint {id}: {e}")))?;
        tracing::debug!(id, dir = %folder.display(), "checkpoint complete");
        for (i, s) in self.sources.iter_mut().enumerate() {
            if let Some(c) = s.committer.as_mut() {
                c.commit(&progress[i].resume, last);
            }
        }
        Ok(id)
    }

    fn write_dead(&mut self, dead: &[DeadLetter]) -> Result<(), RunError> {
        if let Some(t) = &self.trace {
            t.dead(dead);
        }
        for d in dead {
            if let Err(error) = self.dead.write(d) {
                let path = self.dead.path().map(|p| p.display().to_string()).unwrap_or_default();
                return Err(RunError::DeadLetter { path, error });
            }
        }
        self.live.dead_letters.record(dead);
        Ok(())
    }
}

/// How long a stop waits for the sources to hand over what they hold.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a source message is, for checkpoint timing.
enum Kind {
    Data,
    Control,
}
