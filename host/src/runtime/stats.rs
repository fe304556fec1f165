//! Counters every node keeps, the live progress line and the final summary.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Source,
    Step,
    Sink,
}

/// Counters of one source, step or sink, shared with the progress thread.
#[derive(Debug)]
pub struct NodeStats {
    pub name: String,
    pub kind: NodeKind,
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    pub dead: AtomicU64,
    /// Steps: events deliberately dropped (a filter's misses).
    pub filtered: AtomicU64,
    /// Steps: the input watermark the step was last advanced to, set before
    /// the step fires what it completes (`i64::MIN` before any).
    pub watermark: AtomicI64,
}

impl NodeStats {
    pub fn new(name: &str, kind: NodeKind) -> Arc<Self> {
        Arc::new(NodeStats {
            name: name.into(),
            kind,
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
        })
    }
}

impl super::Pipeline {
    /// The live counters of the source, step or sink `name` (for benchmarks
    /// and probes that watch a run from another thread or a native step).
    pub fn node_stats(&self, name: &str) -> Option<Arc<NodeStats>> {
        let sources = self.sources.iter().map(|s| &s.stats);
        let steps = self.steps.iter().map(|s| &s.stats);
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
    /// Source failures (e.g. a missing file); the run still completed the others.
    pub errors: Vec<String>,
    /// Each plugin's version at the end and its swaps (hot swap).
    pub plugins: Vec<PluginSummary>,
    /// The checkpoint this run resumed from, if it did.
    pub resumed_from: Option<u64>,
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
    pub filtered: u64,
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
            events_in: n.events_in.load(Relaxed),
            events_out: n.events_out.load(Relaxed),
            dead: n.dead.load(Relaxed),
            filtered: n.filtered.load(Relaxed),
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
        writeln!(f, "streamhost: {} finished in {secs:.2}s", self.name.as_deref().unwrap_or("pipeline"))?;
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
        Ok(())
    }
}

/// Prints a one-line live view to stderr every second until stopped.
pub(crate) fn spawn_progress(nodes: Vec<Arc<NodeStats>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last = snapshot(&nodes);
        let mut last_t = Instant::now();
        while !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
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
