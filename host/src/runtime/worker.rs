//! A worker thread: runs the steps of one stage for its share of the key
//! groups, with its own plugin instances and its own share of the state.
//!
//! Its inputs are channels, one per producer thread: the coordinator (source
//! batches routed to it, source watermarks, barriers, the end) and every worker
//! of an earlier stage that feeds it. Each channel is FIFO, so data always
//! arrives before the watermark that covers it. Outputs for sinks and dead
//! letters go to the coordinator; outputs for a later stage go to its workers,
//! by key for a keyed step, else to the worker of the same index.
//!
//! A barrier is counted per input; when every input has delivered it (the
//! coordinator stops routing until the checkpoint completes, so nothing after
//! the barrier is in flight), the worker commits and snapshots its state,
//! passes the barrier on and acknowledges it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Select, Sender};

use super::build::{StepNode, WorkerParts};
use super::graph::{Consumer, Graph, Producer};
use super::partition::{by_key, KeyGrouping};
use super::watermarks::Watermarks;
use super::RunError;
use crate::dead_letter::DeadLetter;
use crate::event::Batch;
use crate::state::StateBackend;
use crate::step::{Operator, RoutedKey, StepContext};

/// Messages a worker handles, at most, before it sends what its steps
/// gathered to ask for (it sends it sooner whenever it has nothing to do).
const FLUSH_EVERY: usize = 8;

/// What a worker receives.
pub(crate) enum ToWorker {
    /// Input `port` of step `step`, with the keys its router read (for a keyed step).
    Batch { step: usize, port: usize, batch: Batch, keys: Option<Vec<RoutedKey>> },
    /// A source's watermark and idleness (from the coordinator).
    SourceClock { source: usize, watermark: i64, idle: bool },
    /// The output watermark of step `step` in worker `from` of its stage.
    StepClock { step: usize, from: usize, watermark: i64, idle: bool },
    /// Once every input delivered it: commit the state and, with a folder,
    /// snapshot it into `folder/state` (without one it only drains the DAG).
    Barrier { id: u64, folder: Option<PathBuf> },
    /// Every input is exhausted: close the steps once every input says so.
    Close,
}

/// What a worker tells the coordinator.
pub(crate) enum FromWorker {
    Sink { sink: usize, batch: Batch },
    Dead(Vec<DeadLetter>),
    /// The barrier passed; with the writes the coordinator applies together
    /// with the checkpoint's record, for a state kept in Redis.
    Checkpointed(Option<crate::state::DeferredWrites>),
    Closed,
    Failed(RunError),
}

pub(crate) struct Worker {
    stage: usize,
    index: usize,
    per_stage: usize,
    key_groups: usize,
    grouping: KeyGrouping,
    graph: Arc<Graph>,
    steps: Vec<Option<StepNode>>,
    routers: BTreeMap<usize, Box<dyn Operator>>,
    state: Box<dyn StateBackend>,
    stateful: bool,
    clock: Watermarks,
    /// Per step: its producers as this worker's clock sees them (sources and
    /// remote steps are the clock's external inputs).
    producers: Vec<Vec<Producer>>,
    /// (remote step, worker of its stage) → the clock's external input.
    remote: BTreeMap<(usize, usize), usize>,
    inputs: Vec<Receiver<ToWorker>>,
    /// Per later stage: a sender to each of its workers.
    downstream: BTreeMap<usize, Vec<Sender<ToWorker>>>,
    out: Sender<FromWorker>,
    /// Per step: the output clock last sent downstream.
    sent: Vec<Option<(i64, bool)>>,
    metrics: crate::metrics::WorkerMetrics,
    /// Whether to collect what only metrics need (clock reads, byte sums).
    metrics_on: bool,
    /// When the state's size was last sampled.
    state_sampled: Option<std::time::Instant>,
    /// Per step: where `streamhost sample` copies its output from.
    taps: Vec<Option<Arc<crate::replay::TapPoint>>>,
    /// A replay's `--trace`.
    trace: Option<Arc<crate::replay::Tracer>>,
}

/// How often a worker samples its state's size for the metrics (also at
/// every checkpoint): RocksDB lists its folder, Redis takes a round trip.
const STATE_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// At checkpoints (which may come every few ms), at most this often.
const STATE_SAMPLE_AT_CHECKPOINTS: std::time::Duration = std::time::Duration::from_secs(1);

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        parts: WorkerParts,
        graph: Arc<Graph>,
        per_stage: usize,
        (key_groups, grouping): (usize, KeyGrouping),
        inputs: Vec<Receiver<ToWorker>>,
        downstream: BTreeMap<usize, Vec<Sender<ToWorker>>>,
        out: Sender<FromWorker>,
    ) -> Worker {
        let (stage, index) = (parts.stage, parts.index);
        let sources = graph.source_names.len();
        let mut remote = BTreeMap::new();
        let mut producers = vec![Vec::new(); graph.order.len()];
        for j in graph.steps_of(stage) {
            for p in &graph.step_producers[j] {
                match *p {
                    Producer::Step(k) if graph.stage[k] < stage => {
                        // A keyed step hears from every worker of the stage before; any
                        // other step from the one of its own index.
                        let from: Vec<usize> = if graph.keyed[j] { (0..per_stage).collect() } else { vec![index] };
                        for w in from {
                            let next = sources + remote.len();
                            let slot = *remote.entry((k, w)).or_insert(next);
                            producers[j].push(Producer::Source(slot));
                        }
                    }
                    other => producers[j].push(other),
                }
            }
        }
        let clock = Watermarks::new(vec![None; sources + remote.len()], graph.order.len());
        Worker {
            stage,
            index,
            per_stage,
            key_groups,
            grouping,
            steps: parts.steps,
            routers: parts.routers,
            stateful: parts.state.is_some(),
            state: parts.state.unwrap_or_else(crate::state::open_memory),
            clock,
            producers,
            remote,
            inputs,
            downstream,
            out,
            sent: vec![None; graph.order.len()],
            taps: parts.taps,
            trace: parts.trace,
            graph,
            metrics: parts.metrics,
            metrics_on: parts.metrics_on,
            state_sampled: None,
        }
    }

    /// Runs until every input has disconnected, or the first error (sent to the
    /// coordinator).
    pub fn run(mut self) {
        if let Err(e) = self.serve() {
            let _ = self.out.send(FromWorker::Failed(e));
        }
    }

    fn serve(&mut self) -> Result<(), RunError> {
        let inputs = std::mem::take(&mut self.inputs);
        let n = inputs.len();
        let mut live: Vec<usize> = (0..n).collect();
        let mut barriers: BTreeMap<u64, usize> = BTreeMap::new();
        let mut closes = 0usize;
        let io = self.io_channels();
        let mut unflushed = 0;
        while !live.is_empty() {
            // A step holding all the events it may: answers first, no input.
            let full = self.steps.iter().flatten().any(|s| s.op.io_full());
            let mut sel = Select::new();
            if !full {
                for &i in &live {
                    sel.recv(&inputs[i]);
                }
            }
            for (rx, _) in &io {
                sel.recv(rx);
            }
            // What the steps gathered to ask for goes out when the worker
            // has nothing else to do, or every few messages: what it took
            // in meanwhile (a batch for each of several steps on one table)
            // shares requests.
            let ready = match sel.try_ready() {
                Ok(ready) if unflushed < FLUSH_EVERY => ready,
                _ => {
                    self.flush_io();
                    unflushed = 0;
                    sel.ready()
                }
            };
            unflushed += 1;
            if full || ready >= live.len() {
                let (_, steps) = &io[ready - if full { 0 } else { live.len() }];
                self.wake(steps)?;
                continue;
            }
            let msg = match inputs[live[ready]].try_recv() {
                Ok(msg) => msg,
                Err(crossbeam_channel::TryRecvError::Empty) => continue,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    live.remove(ready);
                    continue;
                }
            };
            self.sample_state(false);
            match msg {
                ToWorker::Batch { step, port, batch, keys: None } => self.deliver(Consumer::Step { step, port }, batch)?,
                ToWorker::Batch { step, port, batch, keys: Some(keys) } => self.process(step, port, batch, Some(keys))?,
                ToWorker::SourceClock { source, watermark, idle } => {
                    self.clock.advance_source(source, watermark);
                    self.clock.set_source_idle(source, idle);
                    self.advance_watermarks()?;
                }
                ToWorker::StepClock { step, from, watermark, idle } => {
                    if let Some(&slot) = self.remote.get(&(step, from)) {
                        self.clock.advance_source(slot, watermark);
                        self.clock.set_source_idle(slot, idle);
                        self.advance_watermarks()?;
                    }
                }
                ToWorker::Barrier { id, folder } => {
                    let seen = barriers.entry(id).or_insert(0);
                    *seen += 1;
                    if *seen == n {
                        barriers.remove(&id);
                        // Events waiting for answers are in no state: the
                        // checkpoint covers them once they have gone on.
                        self.settle_io(&io, None)?;
                        let deferred = self.checkpoint(folder.as_deref())?;
                        self.pass_on(|| ToWorker::Barrier { id, folder: folder.clone() })?;
                        self.tell(FromWorker::Checkpointed(deferred))?;
                    }
                }
                ToWorker::Close => {
                    closes += 1;
                    if closes == n {
                        self.close(&io)?;
                        self.pass_on(|| ToWorker::Close)?;
                        self.tell(FromWorker::Closed)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The channels the steps waiting on I/O are answered on, each with the
    /// steps it answers (steps sharing a table share one).
    fn io_channels(&self) -> Vec<(Receiver<crate::lookup::Reply>, Vec<usize>)> {
        let mut io: Vec<(Receiver<crate::lookup::Reply>, Vec<usize>)> = Vec::new();
        for (j, node) in self.steps.iter().enumerate() {
            let Some(rx) = node.as_ref().and_then(|n| n.op.io_channel()) else { continue };
            match io.iter_mut().find(|(r, _)| r.same_channel(&rx)) {
                Some((_, steps)) => steps.push(j),
                None => io.push((rx, vec![j])),
            }
        }
        io
    }

    /// Answers came for `steps`: each takes them in (in topological order)
    /// and what they complete goes on; then the watermarks they held move.
    fn wake(&mut self, steps: &[usize]) -> Result<(), RunError> {
        for &j in steps {
            self.run_step(j, 0, self.clock.step_input(j), false, |op, ctx| op.on_io(ctx))?;
        }
        self.advance_watermarks()
    }

    /// Sends what the steps waiting on I/O gathered to ask for.
    fn flush_io(&mut self) {
        for node in self.steps.iter_mut().flatten() {
            node.op.flush_io();
        }
    }

    /// Waits for answers until no step (or, given `upto`, no step up to that
    /// one in topological order) holds events waiting for them.
    fn settle_io(&mut self, io: &[(Receiver<crate::lookup::Reply>, Vec<usize>)], upto: Option<usize>) -> Result<(), RunError> {
        let waiting = |w: &Self| w.steps.iter().enumerate().take(upto.map_or(usize::MAX, |u| u + 1)).flat_map(|(_, s)| s).any(|s| s.op.io_waiting() > 0);
        loop {
            self.flush_io();
            if !waiting(self) {
                return Ok(());
            }
            let mut sel = Select::new();
            for (rx, _) in io {
                sel.recv(rx);
            }
            let ready = sel.ready();
            self.wake(&io[ready].1)?;
        }
    }

    fn tell(&self, msg: FromWorker) -> Result<(), RunError> {
        crate::metrics::send_counting(&self.out, msg, &self.metrics.blocked).map_err(|_| RunError::Thread("the coordinator stopped".into()))
    }

    /// Sends a message to every worker downstream.
    fn pass_on(&self, msg: impl Fn() -> ToWorker) -> Result<(), RunError> {
        for senders in self.downstream.values() {
            for tx in senders {
                self.send(tx, msg())?;
            }
        }
        Ok(())
    }

    /// Sends `msg` to a worker downstream, counting the time it waits for room.
    fn send(&self, tx: &Sender<ToWorker>, msg: ToWorker) -> Result<(), RunError> {
        crate::metrics::send_counting(tx, msg, &self.metrics.blocked).map_err(|_| RunError::Thread("a worker downstream stopped".into()))
    }

    /// Samples the state's size for the metrics: every few seconds, or at a
    /// checkpoint (`checkpoint`) a second after the last sample at most.
    fn sample_state(&mut self, checkpoint: bool) {
        let Some(gauges) = self.metrics.state.as_ref().filter(|_| self.metrics_on && self.stateful) else { return };
        let every = if checkpoint { STATE_SAMPLE_AT_CHECKPOINTS } else { STATE_SAMPLE_EVERY };
        if self.state_sampled.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        gauges.set(&self.state.stats());
        self.state_sampled = Some(std::time::Instant::now());
    }

    fn checkpoint(&mut self, folder: Option<&std::path::Path>) -> Result<Option<crate::state::DeferredWrites>, RunError> {
        if !self.stateful {
            return Ok(None);
        }
        for node in self.steps.iter_mut().flatten() {
            node.op.prepare_checkpoint(&mut *self.state)?;
        }
        self.state.commit()?;
        self.sample_state(true);
        let Some(folder) = folder else { return Ok(None) };
        let dir = folder.join("state").join(super::worker_state::worker_dir(self.stage, self.index));
        Ok(self.state.checkpoint_or_defer(&dir)?)
    }

    fn close(&mut self, io: &[(Receiver<crate::lookup::Reply>, Vec<usize>)]) -> Result<(), RunError> {
        for j in 0..self.steps.len() {
            // What step `j` waits for comes before it closes (later steps may
            // take more from it: they close after).
            self.settle_io(io, Some(j))?;
            if self.steps[j].is_some() {
                self.run_step(j, 0, self.clock.step_input(j), false, |op, ctx| op.close(ctx))?;
            }
        }
        Ok(())
    }

    fn deliver(&mut self, c: Consumer, batch: Batch) -> Result<(), RunError> {
        match c {
            Consumer::Sink(sink) => self.tell(FromWorker::Sink { sink, batch }),
            Consumer::Step { step, port } if self.steps[step].is_some() => self.process(step, port, batch, None),
            Consumer::Step { step, port } => self.send_downstream(step, port, batch),
        }
    }

    fn process(&mut self, step: usize, port: usize, batch: Batch, keys: Option<Vec<RoutedKey>>) -> Result<(), RunError> {
        let node = self.steps[step].as_mut().ok_or_else(|| RunError::Thread(format!("step {step} is not in this worker")))?;
        node.metrics.events_in.inc_by(batch.len() as u64);
        if self.metrics_on {
            node.metrics.bytes_in.inc_by(crate::metrics::batch_bytes(&batch));
        }
        if let Some(t) = &self.trace {
            t.step_in(&self.graph.order[step], port, &batch);
        }
        self.run_step(step, port, self.clock.step_input(step), true, |op, ctx| match keys {
            Some(keys) => op.process_routed(batch, keys, ctx),
            None => op.process_batch(batch, ctx),
        })?;
        Ok(())
    }

    /// Calls `hook` of local step `j` with its context (input `port`, input
    /// watermark `watermark`), then hands on what it emitted and refused.
    /// Returns whether it emitted nothing. With metrics on, its time counts
    /// as busy, and `batch` (a `process_batch`) also in the step's histogram.
    fn run_step(
        &mut self,
        j: usize,
        port: usize,
        watermark: i64,
        batch: bool,
        hook: impl FnOnce(&mut dyn Operator, &mut StepContext<'_>) -> Batch,
    ) -> Result<bool, RunError> {
        let node = self.steps[j].as_mut().expect("a local step");
        let mut dead = Vec::new();
        let mut ctx = StepContext { dead: &mut dead, input: port, watermark, state: &mut *self.state, failed: None };
        let started = self.metrics_on.then(std::time::Instant::now);
        let out = hook(node.op.as_mut(), &mut ctx);
        if let Some(started) = started {
            let secs = started.elapsed().as_secs_f64();
            self.metrics.busy.inc_by(secs);
            if batch {
                node.metrics.batch.observe(secs);
            }
        }
        check(ctx.failed)?;
        let empty = out.is_empty();
        self.after_step(j, out, dead)?;
        Ok(empty)
    }

    /// Hands `batch` to step `step` of a later stage: by key to a keyed step,
    /// else to the worker of this index.
    fn send_downstream(&mut self, step: usize, port: usize, batch: Batch) -> Result<(), RunError> {
        let stage = self.graph.stage[step];
        let gone = |_| RunError::Thread("a worker downstream stopped".into());
        let senders = &self.downstream[&stage];
        let (n, kgs) = (self.per_stage, self.key_groups);
        let blocked = &self.metrics.blocked;
        let Some(router) = self.routers.get_mut(&step) else {
            return crate::metrics::send_counting(&senders[self.index], ToWorker::Batch { step, port, batch, keys: None }, blocked).map_err(gone);
        };
        let parts = by_key(router.as_mut(), port, batch, n, kgs, self.grouping).ok_or_else(|| RunError::Step(format!("step {step} routes by key but keeps no keys")))?;
        for (w, part) in parts.into_iter().enumerate() {
            if let Some((batch, keys)) = part {
                crate::metrics::send_counting(&senders[w], ToWorker::Batch { step, port, batch, keys: Some(keys) }, blocked).map_err(gone)?;
            }
        }
        Ok(())
    }

    fn after_step(&mut self, j: usize, out: Batch, dead: Vec<DeadLetter>) -> Result<(), RunError> {
        let node = self.steps[j].as_mut().expect("a local step");
        let filtered = node.op.take_filtered();
        let st = &node.stats;
        st.dead.fetch_add(dead.len() as u64, Relaxed);
        node.metrics.events_out.inc_by(out.len() as u64);
        if self.metrics_on && !out.is_empty() {
            node.metrics.bytes_out.inc_by(crate::metrics::batch_bytes(&out));
        }
        st.filtered.fetch_add(filtered, Relaxed);
        if !dead.is_empty() {
            self.tell(FromWorker::Dead(dead))?;
        }
        if out.is_empty() {
            return Ok(());
        }
        if let Some(tap) = &self.taps[j] {
            tap.offer(&out);
        }
        if let Some(t) = &self.trace {
            t.step_out(&self.graph.order[j], &out);
        }
        let graph = self.graph.clone();
        let consumers = &graph.step_consumers[j];
        let Some((last, rest)) = consumers.split_last() else { return Ok(()) };
        for c in rest {
            self.deliver(*c, out.clone())?;
        }
        self.deliver(*last, out)
    }

    /// Brings the local steps' watermarks up to date in topological order (a
    /// step emits what its new input watermark completes before its output
    /// watermark moves), then tells later stages what changed.
    fn advance_watermarks(&mut self) -> Result<(), RunError> {
        for j in 0..self.steps.len() {
            if self.steps[j].is_none() {
                continue;
            }
            let (input, idle) = self.clock.input_of(j, &self.producers[j]);
            if input > self.clock.step_input(j) {
                // The furthest any worker got (workers hear the same source clocks).
                self.steps[j].as_ref().expect("local").stats.watermark.fetch_max(input, Relaxed);
                while !self.run_step(j, 0, input, false, |op, ctx| op.on_watermark(input, ctx))? {}
            }
            // Also when the input did not move: a step that held events back
            // may have let them go. A step holding events is not idle, or the
            // steps after it would move past them.
            let node = self.steps[j].as_ref().expect("local");
            let (output, idle) = (node.op.output_watermark(input), idle && node.op.io_waiting() == 0);
            node.metrics.set_watermark(output);
            self.clock.set_step(j, input, output, idle);
        }
        self.send_clocks()
    }

    fn send_clocks(&mut self) -> Result<(), RunError> {
        let graph = self.graph.clone();
        for j in graph.steps_of(self.stage) {
            let mut remote: Vec<usize> = graph.step_consumers[j]
                .iter()
                .filter_map(|c| match *c {
                    Consumer::Step { step, .. } if graph.stage[step] != self.stage => Some(graph.stage[step]),
                    _ => None,
                })
                .collect();
            remote.sort_unstable();
            remote.dedup();
            if remote.is_empty() {
                continue;
            }
            let now = self.clock.step_output(j);
            if self.sent[j] == Some(now) {
                continue;
            }
            self.sent[j] = Some(now);
            for stage in remote {
                for tx in &self.downstream[&stage] {
                    self.send(tx, ToWorker::StepClock { step: j, from: self.index, watermark: now.0, idle: now.1 })?;
                }
            }
        }
        Ok(())
    }
}

/// A step's fatal error, as the run's.
fn check(failed: Option<String>) -> Result<(), RunError> {
    failed.map_or(Ok(()), |e| Err(RunError::Step(e)))
}
