//! Counters every node keeps, the live progress line and the final summary.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Source,
    Step,
    Sink,
}

/// Counters of one source, step or sink, shared with the progress thread
/// and the metrics' collector.
#[derive(Debug)]
pub struct NodeStats {
    pub name: String,
    pub kind: NodeKind,
    /// Sources and sinks: events in and out (a step's are its workers').
    events_in: AtomicU64,
    events_out: AtomicU64,
    /// Steps: each worker's counters, whose events in and out are the step's.
    workers: Mutex<Vec<Arc<crate::metrics::StepMetrics>>>,
    pub dead: AtomicU64,
    /// Steps: events deliberately dropped (a filter's misses).
    pub filtered: AtomicU64,
    /// Steps: the input watermark the step was last advanced to, set before
    /// the step fires what it completes; sources: the source's watermark
    /// (`i64::MIN` before any).
    pub watermark: AtomicI64,
    /// Window joins: events joined with only `max_matches` of their matches
    /// (of some input), the rest left out.
    pub over_max_matches: AtomicU64,
    /// Window joins: matches left out by `max_matches`, over all events.
    pub matches_not_joined: AtomicU64,
    /// Lookup joins: their lookups' figures and their table's.
    pub lookup: std::sync::OnceLock<Arc<crate::lookup::LookupStats>>,
    /// Kafka sources, with metrics on: their figures by partition.
    pub kafka: std::sync::OnceLock<Arc<crate::source::KafkaFigures>>,
    /// Sources: bytes read (values and keys); sinks: bytes written.
    pub bytes: AtomicU64,
    /// Sources: time blocked on the full channel to the coordinator, in ns.
    pub blocked_nanos: AtomicU64,
    /// Sources: when the coordinator last took a batch of it (Unix ms;
    /// `i64::MIN`: none yet), and the event time of that batch's last event.
    pub last_emit_ms: AtomicI64,
    pub last_event_time_ms: AtomicI64,
}

impl NodeStats {
    pub fn new(name: &str, kind: NodeKind) -> Arc<Self> {
        Arc::new(NodeStats {
            name: name.into(),
            kind,
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            workers: Mutex::new(Vec::new()),
            dead: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            over_max_matches: AtomicU64::new(0),
            matches_not_joined: AtomicU64::new(0),
            lookup: std::sync::OnceLock::new(),
            kafka: std::sync::OnceLock::new(),
            bytes: AtomicU64::new(0),
            blocked_nanos: AtomicU64::new(0),
            last_emit_ms: AtomicI64::new(i64::MIN),
            last_event_time_ms: AtomicI64::new(i64::MIN),
        })
    }

    /// Events in: a source's records read, a step's inputs over its workers,
    /// a sink's events received.
    pub fn events_in(&self) -> u64 {
        match self.kind {
            NodeKind::Step => self.each_worker(|w| w.events_in.get()),
            _ => self.events_in.load(Relaxed),
        }
    }

    /// Events out: a source's events handed on, a step's outputs over its
    /// workers, a sink's events written.
    pub fn events_out(&self) -> u64 {
        match self.kind {
            NodeKind::Step => self.each_worker(|w| w.events_out.get()),
            _ => self.events_out.load(Relaxed),
        }
    }

    fn each_worker(&self, f: impl Fn(&crate::metrics::StepMetrics) -> u64) -> u64 {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|w| f(w)).sum()
    }

    /// Sources and sinks: `n` events in.
    pub(crate) fn add_in(&self, n: u64) {
        self.events_in.fetch_add(n, Relaxed);
    }

    /// Sources and sinks: `n` events out.
    pub(crate) fn add_out(&self, n: u64) {
        self.events_out.fetch_add(n, Relaxed);
    }

    /// Steps: the counters of one more worker running the step.
    pub(crate) fn add_worker(&self, m: Arc<crate::metrics::StepMetrics>) {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).push(m);
    }
}

impl super::Pipeline {
    /// The live counters of the source, step or sink `name` (for benchmarks
    /// and probes that watch a run from another thread or a native step).
    pub fn node_stats(&self, name: &str) -> Option<Arc<NodeStats>> {
        let sources = self.sources.iter().map(|s| &s.stats);
        let steps = self.step_stats.iter();
        let sinks = self.sinks.iter().map(|s| &s.stats);
        sources.chain(steps).chain(sinks).find(|s| s.name == name).cloned()
    }
}

/// What a run did, printed at its end.
#[derive(Debug)]
pub struct RunSummary {
    pub name: Option<String>,
    pub elapsed: Duration,
    pub nodes: Vec<NodeSnapshot>,
    pub dead_lettered: u64,
    pub dead_letter_target: Option<PathBuf>,
    /// Sink name to target (path or stdout).
    pub sink_targets: Vec<(String, String)>,
    /// How the run ended.
    pub end: RunEnd,
    /// The id of the checkpoint taken at the end (with checkpoints on).
    pub final_checkpoint: Option<u64>,
    /// Source failures (e.g. a missing file): each failed the run.
    pub errors: Vec<String>,
    /// Each plugin's version at the end and its swaps (hot swap).
    pub plugins: Vec<PluginSummary>,
    /// The checkpoint this run resumed from, if it did.
    pub resumed_from: Option<u64>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every source was exhausted and everything was emitted.
    Completed,
    /// Stopped (a signal or a `StopHandle`): the sources have more; a
    /// restart resumes from the final checkpoint.
    Stopped,
    /// A source failed (see `errors`); a restart resumes from the final
    /// checkpoint once the cause is fixed.
    Failed,
}

/// A plugin at the end of a run.
#[derive(Clone, Debug)]
pub struct PluginSummary {
    pub name: String,
    /// Hash of the version running at the end.
    pub version: String,
    pub swaps: u64,
    pub rollbacks: u64,
    pub auto_rollbacks: u64,
    pub refused: u64,
}

impl PluginSummary {
    pub(crate) fn of(slot: &crate::plugin::Slot) -> Self {
        let st = slot.state();
        PluginSummary {
            name: slot.name().into(),
            version: st.current.hash().into(),
            swaps: st.counts.swaps,
            rollbacks: st.counts.rollbacks,
            auto_rollbacks: st.counts.auto_rollbacks,
            refused: st.counts.refused,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeSnapshot {
    pub name: String,
    pub kind: NodeKind,
    pub events_in: u64,
    pub events_out: u64,
    pub dead: u64,
    /// Window joins: events over `max_matches` (see [`NodeStats`]).
    pub over_max_matches: u64,
    /// Window joins: matches left out by `max_matches`.
    pub matches_not_joined: u64,
    pub filtered: u64,
    /// Lookup joins: their figures.
    pub lookup: Option<crate::lookup::LookupSnapshot>,
    /// Steps: events in per worker running the step (its load balance).
    pub workers_in: Vec<u64>,
}

impl RunSummary {
    pub fn node(&self, name: &str) -> Option<&NodeSnapshot> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn plugin(&self, name: &str) -> Option<&PluginSummary> {
        self.plugins.iter().find(|p| p.name == name)
    }
}

pub(crate) fn snapshot(nodes: &[Arc<NodeStats>]) -> Vec<NodeSnapshot> {
    nodes
        .iter()
        .map(|n| NodeSnapshot {
            name: n.name.clone(),
            kind: n.kind,
            events_in: n.events_in(),
            events_out: n.events_out(),
            dead: n.dead.load(Relaxed),
            over_max_matches: n.over_max_matches.load(Relaxed),
            matches_not_joined: n.matches_not_joined.load(Relaxed),
            filtered: n.filtered.load(Relaxed),
            lookup: n.lookup.get().map(|l| l.snapshot()),
            workers_in: n.workers.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|w| w.events_in.get()).collect(),
        })
        .collect()
}

fn rate(n: u64, secs: f64) -> String {
    let r = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let name = self.name.as_deref().unwrap_or("pipeline");
        match self.end {
            RunEnd::Completed => writeln!(f, "streamhost: {name} finished in {secs:.2}s")?,
            RunEnd::Stopped => writeln!(f, "streamhost: {name} stopped after {secs:.2}s")?,
            RunEnd::Failed => writeln!(f, "streamhost: {name} failed after {secs:.2}s")?,
        }
        if let Some(id) = self.resumed_from {
            writeln!(f, "  resumed from checkpoint {id}")?;
        }
        writeln!(f, "  {:<8} {:<24} {:>12} {:>12} {:>10} {:>12}", "kind", "name", "in", "out", "dead", "out rate")?;
        for n in &self.nodes {
            let kind = match n.kind {
                NodeKind::Source => "source",
                NodeKind::Step => "step",
                NodeKind::Sink => "sink",
            };
            writeln!(f, "  {kind:<8} {:<24} {:>12} {:>12} {:>10} {:>12}", n.name, n.events_in, n.events_out, n.dead, rate(n.events_out, secs))?;
        }
        for n in self.nodes.iter().filter(|n| n.over_max_matches > 0) {
            writeln!(
                f,
                "  {}: {} events over max_matches ({} matches not joined; marked in the output)",
                n.name, n.over_max_matches, n.matches_not_joined
            )?;
        }
        for (n, l) in self.nodes.iter().filter_map(|n| Some((n, n.lookup.as_ref()?))) {
            write_lookup(f, &n.name, l)?;
        }
        // A keyed step's load per worker, when it ran on several (skew shows here).
        for n in self.nodes.iter().filter(|n| n.workers_in.len() > 1 && n.events_in > 0) {
            let (max, min) = (n.workers_in.iter().max().copied().unwrap_or(0), n.workers_in.iter().min().copied().unwrap_or(0));
            let ratio = if min > 0 { format!("{:.2}", max as f64 / min as f64) } else { "inf".into() };
            let each: Vec<String> = n.workers_in.iter().map(u64::to_string).collect();
            writeln!(f, "  step `{}` in per worker: {} (max/min {ratio})", n.name, each.join(", "))?;
        }
        for n in self.nodes.iter().filter(|n| n.filtered > 0) {
            writeln!(f, "  filtered out by step `{}`: {}", n.name, n.filtered)?;
        }
        for (sink, target) in &self.sink_targets {
            writeln!(f, "  output of sink `{sink}`: {target}")?;
        }
        match &self.dead_letter_target {
            Some(p) => writeln!(f, "  dead-lettered: {} (in {})", self.dead_lettered, p.display())?,
            None => writeln!(f, "  dead-lettered: {} (to stderr)", self.dead_lettered)?,
        }
        for p in self.plugins.iter().filter(|p| p.swaps + p.rollbacks + p.auto_rollbacks + p.refused > 0) {
            writeln!(
                f,
                "  plugin `{}`: {} swaps, {} rollbacks, {} automatic rollbacks, {} refused; running {}",
                p.name,
                p.swaps,
                p.rollbacks,
                p.auto_rollbacks,
                p.refused,
                &p.version[..p.version.len().min(12)]
            )?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        match (self.end, self.final_checkpoint) {
            (RunEnd::Completed, _) => {}
            (_, Some(id)) => writeln!(f, "  final checkpoint: {id}; running it again resumes from there")?,
            (_, None) => writeln!(f, "  no checkpoint taken (checkpoints are off or a source did not answer); running it again starts over")?,
        }
        Ok(())
    }
}

fn write_lookup(f: &mut fmt::Formatter<'_>, step: &str, l: &crate::lookup::LookupSnapshot) -> fmt::Result {
    let ms = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3));
    writeln!(
        f,
        "  lookup `{step}` on {}: {} found, {} missing ({} without a key), {} unavailable; cache hit rate {:.1} % \
         ({} hits, {} joined a request out, {} asked by the step before, {} asked); added latency p50 {}, p99 {}",
        l.table,
        l.found,
        l.missing,
        l.no_key,
        l.unavailable,
        l.cache_hit_rate() * 100.0,
        l.cache_hits,
        l.joined,
        l.prefetched,
        l.asked,
        ms(l.latency_p50),
        ms(l.latency_p99),
    )?;
    let avg = if l.requests > 0 { l.request_keys as f64 / l.requests as f64 } else { 0.0 };
    writeln!(
        f,
        "    table: {} requests of {avg:.1} keys on average (at most {}), request p99 {}, {} retries, {} given up",
        l.requests,
        l.max_request_keys,
        ms(l.request_p99),
        l.retries,
        l.failed_requests
    )?;
    for c in &l.copies {
        writeln!(f, "    copy {}: {} requests, {} failed; breaker opened {}, closed {}", c.name, c.requests, c.failures, c.opened, c.closed)?;
    }
    if !l.copies.is_empty() {
        writeln!(f, "    failovers: {}", l.failovers)?;
    }
    Ok(())
}

/// Prints a one-line live view to stderr every second until stopped (the
/// caller unparks the thread after setting `stop`, so joining it does not
/// wait out a sleep).
pub(crate) fn spawn_progress(nodes: Vec<Arc<NodeStats>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last = snapshot(&nodes);
        let mut last_t = Instant::now();
        while !stop.load(Relaxed) {
            std::thread::park_timeout(Duration::from_millis(200));
            if stop.load(Relaxed) {
                break;
            }
            if last_t.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let now = snapshot(&nodes);
            let dt = last_t.elapsed().as_secs_f64();
            let mut line = format!("[{:>6.1}s]", start.elapsed().as_secs_f64());
            let mut dead = 0;
            for (n, p) in now.iter().zip(&last) {
                dead += n.dead;
                match n.kind {
                    NodeKind::Source => line += &format!(" {} {}", n.name, rate(n.events_out - p.events_out, dt)),
                    NodeKind::Step => line += &format!(" | {} {}→{}", n.name, rate(n.events_in - p.events_in, dt), rate(n.events_out - p.events_out, dt)),
                    NodeKind::Sink => line += &format!(" | {} {}", n.name, rate(n.events_in - p.events_in, dt)),
                }
            }
            line += &format!(" | dead {dead}");
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
            last = now;
            last_t = Instant::now();
        }
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    })
}
