//! The collector of the figures the runtime keeps anyway (the run's summary,
//! the admin API's plugin list): read when `/metrics` is scraped, so they
//! cost the hot path nothing more. Lags are worked out here, from the
//! scrape's "now".

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::dead_letter::{DeadCounts, DeadKind};
use crate::plugin::PluginRegistry;
use crate::runtime::{NodeKind, NodeStats};
use crate::source::END_OF_TIME;

/// What the collector reads.
pub struct Sources {
    /// Every source, step and sink.
    pub nodes: Vec<Arc<NodeStats>>,
    pub plugins: Arc<PluginRegistry>,
    pub dead: Arc<DeadCounts>,
    /// When the pipeline started.
    pub started: SystemTime,
}

pub(super) struct Collector {
    sources: Sources,
    /// The step handles' owner (weak: the registry holds the collector).
    metrics: Weak<super::Metrics>,
}

impl Collector {
    pub(super) fn new(sources: Sources, metrics: Weak<super::Metrics>) -> Self {
        Collector { sources, metrics }
    }
}

/// Families being filled, by name.
#[derive(Default)]
struct Families(BTreeMap<&'static str, MetricFamily>);

impl Families {
    fn add(&mut self, name: &'static str, help: &str, kind: MetricType, labels: &[(&str, &str)], value: f64) {
        let family = self.0.entry(name).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name.into());
            f.set_help(help.into());
            f.set_field_type(kind);
            f
        });
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).into());
                    l.set_value((*v).into());
                    l
                })
                .collect(),
        );
        match kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        family.mut_metric().push(m);
    }

    fn counter(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.add(name, help, MetricType::COUNTER, labels, value as f64);
    }

    fn gauge(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, MetricType::GAUGE, labels, value);
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Now minus an event-time watermark, in seconds; `None` before the first
/// watermark. The end of time (an exhausted input) lags by nothing.
fn lag(now_ms: i64, watermark: i64) -> Option<f64> {
    match watermark {
        i64::MIN => None,
        END_OF_TIME => Some(0.0),
        w => Some((now_ms as f64 - w as f64) / 1e3),
    }
}

impl prometheus::core::Collector for Collector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        // Unchecked: its families change with the pipeline's shape.
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut f = Families::default();
        let now_ms = crate::source::now_ms();
        f.gauge("streamhost_up", "1 while the pipeline runs.", &[], 1.0);
        f.gauge("streamhost_start_time_seconds", "Unix time the pipeline started.", &[], unix_secs(self.sources.started));
        for n in &self.sources.nodes {
            match n.kind {
                NodeKind::Source => source(&mut f, n, now_ms),
                NodeKind::Step => step(&mut f, n),
                NodeKind::Sink => {
                    let l = [("sink", n.name.as_str())];
                    f.counter("streamhost_sink_events_total", "Events written to a sink.", &l, n.events_out());
                    f.counter("streamhost_sink_bytes_total", "Bytes (values and keys) of the events written to a sink.", &l, n.bytes.load(Relaxed));
                }
            }
        }
        if let Some(metrics) = self.metrics.upgrade() {
            for s in metrics.steps() {
                if let Some(lag) = lag(now_ms, s.watermark.load(Relaxed)) {
                    let l = [("step", s.step.as_str()), ("worker", s.worker.as_str())];
                    f.gauge("streamhost_step_watermark_lag_seconds", "Now minus a step's output watermark in a worker (Flink's watermarkLag).", &l, lag);
                }
            }
        }
        for kind in DeadKind::ALL {
            f.counter("streamhost_dead_letters_total", "Events dead-lettered, by kind.", &[("kind", kind.as_str())], self.sources.dead.get(kind));
        }
        plugins(&mut f, &self.sources.plugins);
        lookups(&mut f, &self.sources.nodes);
        f.0.into_values().collect()
    }
}

fn source(f: &mut Families, n: &NodeStats, now_ms: i64) {
    let l = [("source", n.name.as_str())];
    f.counter("streamhost_source_events_total", "Records a source read (refused ones included).", &l, n.events_in());
    f.counter("streamhost_source_bytes_total", "Bytes (values and keys) of the records a source read.", &l, n.bytes.load(Relaxed));
    f.add(
        "streamhost_source_blocked_seconds_total",
        "Time a source spent blocked on the full channel to the pipeline (rate() is its backpressure share).",
        MetricType::COUNTER,
        &l,
        n.blocked_nanos.load(Relaxed) as f64 / 1e9,
    );
    if let Some(lag) = lag(now_ms, n.watermark.load(Relaxed)) {
        f.gauge("streamhost_source_watermark_lag_seconds", "Now minus a source's watermark (Flink's watermarkLag).", &l, lag);
    }
    let emitted = n.last_emit_ms.load(Relaxed);
    if emitted != i64::MIN {
        let event_time = n.last_event_time_ms.load(Relaxed);
        f.gauge(
            "streamhost_source_event_time_lag_seconds",
            "When a source last handed a batch over, minus the event time of its last event (Flink's currentEmitEventTimeLag).",
            &l,
            (emitted as f64 - event_time as f64) / 1e3,
        );
    }
    let last = if emitted == i64::MIN { 0.0 } else { emitted as f64 / 1e3 };
    f.gauge("streamhost_source_last_event_timestamp_seconds", "Unix time a source last handed events over (0: none yet).", &l, last);
    for p in n.kafka.get().map(|k| k.snapshot()).unwrap_or_default() {
        let partition = p.partition.to_string();
        let l = [("source", n.name.as_str()), ("topic", p.topic.as_str()), ("partition", partition.as_str())];
        f.counter("streamhost_kafka_partition_records_total", "Records a Kafka source read from a partition.", &l, p.records);
        if let Some(next) = p.next_offset {
            f.gauge("streamhost_kafka_partition_next_offset", "The next offset a Kafka source reads of a partition (librdkafka's app_offset).", &l, next as f64);
        }
        if let Some(high) = p.high_watermark {
            f.gauge("streamhost_kafka_partition_high_watermark", "The broker's high watermark of a partition (the offset after its last record).", &l, high as f64);
        }
        if let Some(lag) = p.lag() {
            f.gauge("streamhost_kafka_partition_lag_records", "Records of a partition on the broker a Kafka source has not read yet.", &l, lag as f64);
        }
    }
}

fn step(f: &mut Families, n: &NodeStats) {
    let l = [("step", n.name.as_str())];
    f.counter("streamhost_step_dead_letters_total", "Events a step dead-lettered.", &l, n.dead.load(Relaxed));
    f.counter("streamhost_step_filtered_total", "Events a step deliberately dropped (a filter's misses).", &l, n.filtered.load(Relaxed));
    let over = n.over_max_matches.load(Relaxed);
    if over > 0 {
        f.counter("streamhost_window_join_over_max_matches_total", "Main events joined with only max_matches of their matches.", &l, over);
    }
}

/// Per plugin, its current and previous versions' figures by step.
fn plugins(f: &mut Families, registry: &PluginRegistry) {
    for slot in registry.slots() {
        let (current, previous) = {
            let st = slot.state();
            (st.current.clone(), st.previous.clone())
        };
        for (role, v) in std::iter::once(("current", current)).chain(previous.map(|p| ("previous", p))) {
            let version = short(v.hash());
            let name = slot.name();
            f.gauge("streamhost_plugin_version_info", "1 for a plugin's current and previous versions (role).", &[("plugin", name), ("version", version), ("role", role)], 1.0);
            for (step, s) in v.plugin.stats().by_step() {
                if step.is_empty() && s.calls == 0 && s.memory_bytes == 0 {
                    continue;
                }
                let l = [("plugin", name), ("version", version), ("step", &*step)];
                f.counter("streamhost_plugin_calls_total", "Calls into a plugin (a batch each, plus the calls isolating a failed one).", &l, s.calls);
                f.add("streamhost_plugin_call_seconds_total", "Time spent inside plugin calls.", MetricType::COUNTER, &l, s.busy_nanos as f64 / 1e9);
                f.counter("streamhost_plugin_events_in_total", "Inputs handed to a plugin (events, UDF rows or join cases).", &l, s.events_in);
                f.counter("streamhost_plugin_events_out_total", "Outputs a plugin produced.", &l, s.events_out);
                f.counter("streamhost_plugin_errors_total", "Inputs a plugin returned an error for.", &l, s.errors);
                f.counter("streamhost_plugin_traps_total", "Inputs that trapped, timed out or ran out of memory.", &l, s.traps);
                f.counter("streamhost_plugin_timeouts_total", "Inputs that ran past the plugin's time budget (also in traps).", &l, s.timeouts);
                f.counter("streamhost_plugin_limit_violations_total", "Inputs whose outputs broke a limit.", &l, s.limit_violations);
                f.counter("streamhost_plugin_rebuilds_total", "Plugin instances rebuilt after a trap.", &l, s.rebuilds);
                f.gauge("streamhost_plugin_memory_bytes", "Linear memory of a plugin's live instances.", &l, s.memory_bytes as f64);
            }
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Per lookup step its keys and results; per table (once, whatever steps
/// share it) its requests, and per copy its breaker.
fn lookups(f: &mut Families, nodes: &[Arc<NodeStats>]) {
    let mut tables_seen = Vec::new();
    for n in nodes {
        let Some(l) = n.lookup.get() else { continue };
        let s = l.snapshot();
        let labels = [("step", n.name.as_str()), ("table", s.table.as_str())];
        f.counter("streamhost_lookup_cache_hits_total", "Keys a lookup step found in its worker's cache (cached misses included).", &labels, s.cache_hits);
        f.counter(
            "streamhost_lookup_cache_misses_total",
            "Keys a lookup step did not find in its cache: asked for, joined to a request out, or answered by the step before.",
            &labels,
            s.asked + s.joined + s.prefetched,
        );
        f.counter("streamhost_lookup_keys_asked_total", "Keys a lookup step put into requests.", &labels, s.asked);
        // The step counts events without a key among its misses: here they are apart.
        let missing = s.missing.saturating_sub(s.no_key);
        for (result, v) in [("found", s.found), ("missing", missing), ("unavailable", s.unavailable), ("no-key", s.no_key)] {
            let l = [labels[0], labels[1], ("result", result)];
            f.counter("streamhost_lookup_events_total", "Events of a lookup step by result (found, missing, unavailable, no-key: each event in one).", &l, v);
        }
        if tables_seen.contains(&s.table) {
            continue;
        }
        let t = [("table", s.table.as_str())];
        f.counter("streamhost_lookup_requests_total", "Requests sent to a table.", &t, s.requests);
        f.counter("streamhost_lookup_keys_requested_total", "Keys in the requests sent to a table.", &t, s.request_keys);
        f.counter("streamhost_lookup_retries_total", "Attempts after a request's first.", &t, s.retries);
        f.counter("streamhost_lookup_failed_requests_total", "Requests given up (miss_after_ms).", &t, s.failed_requests);
        if !s.copies.is_empty() {
            f.counter("streamhost_lookup_failovers_total", "Requests answered by another copy than the first asked.", &t, s.failovers);
        }
        for c in &s.copies {
            let l = [("table", s.table.as_str()), ("backend", c.name.as_str())];
            f.counter("streamhost_lookup_backend_requests_total", "Requests sent to one copy of a table.", &l, c.requests);
            f.counter("streamhost_lookup_backend_failures_total", "Requests one copy of a table failed.", &l, c.failures);
            f.gauge("streamhost_lookup_breaker_open", "1 while a copy's circuit breaker is open.", &l, if c.open { 1.0 } else { 0.0 });
            f.counter("streamhost_lookup_breaker_openings_total", "Times a copy's circuit breaker opened.", &l, c.opened);
        }
        tables_seen.push(s.table.clone());
    }
}
