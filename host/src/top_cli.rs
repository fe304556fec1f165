//! (Part of the `streamhost` binary, not the library.) `streamhost top`: a
//! running pipeline's `/metrics`, scraped every interval and shown as tables
//! (sources, steps, workers, sinks, plugins, joins, lookups, state,
//! checkpoints) with rates over the interval. `--once`, or a stdout that is
//! not a terminal, prints one snapshot and exits.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use streamhost::metrics::text::{parse, Sample};
use streamhost::swap::AdminClient;

/// One scrape and when it was taken.
struct Scrape {
    samples: Vec<Sample>,
    at: Instant,
}

impl Scrape {
    fn take(client: &AdminClient) -> anyhow::Result<Scrape> {
        let text = client.metrics().map_err(|e| anyhow::anyhow!("{e}"))?;
        let samples = parse(&text).map_err(|e| anyhow::anyhow!("the answer of /metrics: {e}"))?;
        Ok(Scrape { samples, at: Instant::now() })
    }

    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
    }

    /// The sum of the series `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The largest of them (`None`: no such series).
    fn max(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).map(|s| s.value).reduce(f64::max)
    }

    /// The values of label `label` over the series `name`, sorted.
    fn values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples.iter().filter(|s| s.name == name).map(|s| s.label(label).to_string()).collect()
    }
}

/// Rates between two scrapes.
struct Delta<'a> {
    before: &'a Scrape,
    now: &'a Scrape,
}

impl Delta<'_> {
    fn secs(&self) -> f64 {
        self.now.at.duration_since(self.before.at).as_secs_f64().max(1e-3)
    }

    /// Per second over the interval (a counter reset counts as 0).
    fn rate(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        (self.now.sum(name, labels) - self.before.sum(name, labels)).max(0.0) / self.secs()
    }
}

pub fn run(client: &AdminClient, once: bool, interval: Duration) -> anyhow::Result<ExitCode> {
    let interval = interval.max(Duration::from_millis(50));
    let live = !once && std::io::stdout().is_terminal();
    let mut before = Scrape::take(client)?;
    loop {
        std::thread::sleep(interval);
        let now = match Scrape::take(client) {
            Ok(s) => s,
            Err(e) if live => {
                println!("\n{e:#}");
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e),
        };
        let table = render(&Delta { before: &before, now: &now });
        let mut out = std::io::stdout().lock();
        if live {
            // Home and clear: the table refreshes in place.
            write!(out, "\x1b[H\x1b[2J{table}")?;
            out.flush()?;
        } else {
            write!(out, "{table}")?;
            return Ok(ExitCode::SUCCESS);
        }
        before = now;
    }
}

/// The tables of one interval.
fn render(d: &Delta<'_>) -> String {
    let now = d.now;
    let mut o = String::new();
    let pipeline = now.samples.iter().find_map(|s| s.labels.get("pipeline").cloned()).unwrap_or_default();
    let started = now.sum("streamhost_start_time_seconds", &[]);
    let up = (unix_now() - started).max(0.0);
    let _ = writeln!(o, "pipeline {pipeline}   up {}   interval {:.1}s", duration(up), d.secs());

    let sources = now.values("streamhost_source_events_total", "source");
    if !sources.is_empty() {
        let _ = writeln!(o, "\n{:<24} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8} {:>10}", "SOURCE", "events/s", "MB/s", "events", "wm lag", "time lag", "blocked", "kafka lag");
        for s in &sources {
            let l = [("source", s.as_str())];
            let _ = writeln!(
                o,
                "{:<24} {:>10} {:>10.2} {:>12} {:>10} {:>10} {:>7.0}% {:>10}",
                s,
                count(d.rate("streamhost_source_events_total", &l)),
                d.rate("streamhost_source_bytes_total", &l) / 1e6,
                now.sum("streamhost_source_events_total", &l),
                now.max("streamhost_source_watermark_lag_seconds", &l).map_or("-".into(), duration),
                now.max("streamhost_source_event_time_lag_seconds", &l).map_or("-".into(), duration),
                d.rate("streamhost_source_blocked_seconds_total", &l) * 100.0,
                // Records not read yet, over the source's partitions (Kafka only).
                now.max("streamhost_kafka_partition_lag_records", &l).map_or("-".into(), |_| count(now.sum("streamhost_kafka_partition_lag_records", &l))),
            );
        }
    }

    let steps = now.values("streamhost_step_events_in_total", "step");
    if !steps.is_empty() {
        let _ = writeln!(o, "\n{:<24} {:>7} {:>10} {:>10} {:>12} {:>12} {:>10} {:>10} {:>8}", "STEP", "workers", "in/s", "out/s", "in", "out", "batch ms", "wm lag", "dead");
        for s in &steps {
            let l = [("step", s.as_str())];
            let workers = now.matching("streamhost_step_events_in_total", &l).count();
            let batches = d.rate("streamhost_step_batch_duration_seconds_count", &l);
            let batch_ms = if batches > 0.0 { format!("{:.2}", d.rate("streamhost_step_batch_duration_seconds_sum", &l) / batches * 1e3) } else { "-".into() };
            let _ = writeln!(
                o,
                "{:<24} {:>7} {:>10} {:>10} {:>12} {:>12} {:>10} {:>10} {:>8}",
                s,
                workers,
                count(d.rate("streamhost_step_events_in_total", &l)),
                count(d.rate("streamhost_step_events_out_total", &l)),
                now.sum("streamhost_step_events_in_total", &l),
                now.sum("streamhost_step_events_out_total", &l),
                batch_ms,
                now.max("streamhost_step_watermark_lag_seconds", &l).map_or("-".into(), duration),
                now.sum("streamhost_step_dead_letters_total", &l),
            );
        }
    }

    let workers = now.values("streamhost_worker_busy_seconds_total", "worker");
    if !workers.is_empty() {
        let _ = writeln!(o, "\n{:<24} {:>8} {:>8}", "WORKER", "busy", "blocked");
        for w in &workers {
            let l = [("worker", w.as_str())];
            let busy = d.rate("streamhost_worker_busy_seconds_total", &l) * 100.0;
            let blocked = d.rate("streamhost_worker_blocked_seconds_total", &l) * 100.0;
            let _ = writeln!(o, "{w:<24} {busy:>7.0}% {blocked:>7.0}%");
        }
    }

    let sinks = now.values("streamhost_sink_events_total", "sink");
    if !sinks.is_empty() {
        let _ = writeln!(o, "\n{:<24} {:>10} {:>10} {:>12}", "SINK", "events/s", "MB/s", "events");
        for s in &sinks {
            let l = [("sink", s.as_str())];
            let _ = writeln!(
                o,
                "{:<24} {:>10} {:>10.2} {:>12}",
                s,
                count(d.rate("streamhost_sink_events_total", &l)),
                d.rate("streamhost_sink_bytes_total", &l) / 1e6,
                now.sum("streamhost_sink_events_total", &l)
            );
        }
    }

    let dead: Vec<String> = now
        .samples
        .iter()
        .filter(|s| s.name == "streamhost_dead_letters_total" && s.value > 0.0)
        .map(|s| format!("{} {}", s.label("kind"), s.value))
        .collect();
    let _ = writeln!(o, "\ndead letters: {}", if dead.is_empty() { "none".to_string() } else { dead.join(", ") });

    plugins(&mut o, d);
    joins(&mut o, now);
    lookups(&mut o, d);
    state(&mut o, now);
    checkpoints(&mut o, now);
    o
}

fn plugins(o: &mut String, d: &Delta<'_>) {
    let now = d.now;
    // (plugin, version, step) of every plugin series.
    let keys: BTreeSet<(String, String, String)> = now
        .samples
        .iter()
        .filter(|s| s.name == "streamhost_plugin_calls_total")
        .map(|s| (s.label("plugin").into(), s.label("version").into(), s.label("step").into()))
        .collect();
    if keys.is_empty() {
        return;
    }
    let current: BTreeMap<String, String> = now
        .samples
        .iter()
        .filter(|s| s.name == "streamhost_plugin_version_info" && s.label("role") == "current")
        .map(|s| (s.label("plugin").into(), s.label("version").into()))
        .collect();
    let _ = writeln!(o, "\n{:<16} {:<13} {:<18} {:>9} {:>9} {:>7} {:>8} {:>8} {:>9}", "PLUGIN", "VERSION", "STEP", "calls/s", "ms/call", "traps", "timeouts", "rebuilds", "memory");
    for (plugin, version, step) in keys {
        let l = [("plugin", plugin.as_str()), ("version", version.as_str()), ("step", step.as_str())];
        let calls = d.rate("streamhost_plugin_calls_total", &l);
        let ms = if calls > 0.0 { format!("{:.3}", d.rate("streamhost_plugin_call_seconds_total", &l) / calls * 1e3) } else { "-".into() };
        let marker = if current.get(&plugin) == Some(&version) { "" } else { " (old)" };
        let _ = writeln!(
            o,
            "{:<16} {:<13} {:<18} {:>9} {:>9} {:>7} {:>8} {:>8} {:>9}",
            plugin,
            format!("{version}{marker}"),
            step,
            count(calls),
            ms,
            now.sum("streamhost_plugin_traps_total", &l),
            now.sum("streamhost_plugin_timeouts_total", &l),
            now.sum("streamhost_plugin_rebuilds_total", &l),
            bytes(now.sum("streamhost_plugin_memory_bytes", &l)),
        );
    }
}

fn joins(o: &mut String, now: &Scrape) {
    let steps = now.values("streamhost_window_join_fired_total", "step");
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n{:<24} {:>12} {:>12} {:>12} {:>10}", "WINDOW JOIN", "held", "fired", "matched", "late");
    for s in &steps {
        let l = [("step", s.as_str())];
        let _ = writeln!(
            o,
            "{:<24} {:>12} {:>12} {:>12} {:>10}",
            s,
            now.sum("streamhost_window_join_held_events", &l),
            now.sum("streamhost_window_join_fired_total", &l),
            now.sum("streamhost_window_join_matched_total", &l),
            now.sum("streamhost_window_join_late_total", &l)
        );
    }
}

fn lookups(o: &mut String, d: &Delta<'_>) {
    let now = d.now;
    let steps = now.values("streamhost_lookup_cache_hits_total", "step");
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n{:<24} {:>9} {:>10} {:>10} {:>10}", "LOOKUP", "hit rate", "found", "missing", "unavail.");
    for s in &steps {
        let l = [("step", s.as_str())];
        let (hits, misses) = (now.sum("streamhost_lookup_cache_hits_total", &l), now.sum("streamhost_lookup_cache_misses_total", &l));
        let rate = if hits + misses > 0.0 { format!("{:.1}%", hits / (hits + misses) * 100.0) } else { "-".into() };
        let result = |r: &str| now.sum("streamhost_lookup_events_total", &[("step", s.as_str()), ("result", r)]);
        let _ = writeln!(o, "{:<24} {:>9} {:>10} {:>10} {:>10}", s, rate, result("found"), result("missing"), result("unavailable"));
    }
    for table in now.values("streamhost_lookup_requests_total", "table") {
        let l = [("table", table.as_str())];
        let _ = write!(o, "  table {table}: {} requests/s", count(d.rate("streamhost_lookup_requests_total", &l)));
        for backend in now.values("streamhost_lookup_breaker_open", "backend") {
            let b = [("table", table.as_str()), ("backend", backend.as_str())];
            if now.matching("streamhost_lookup_breaker_open", &b).next().is_some() {
                let open = now.sum("streamhost_lookup_breaker_open", &b) > 0.0;
                let _ = write!(o, "; {backend} breaker {} ({} openings)", if open { "OPEN" } else { "closed" }, now.sum("streamhost_lookup_breaker_openings_total", &b));
            }
        }
        let _ = writeln!(o);
    }
}

fn state(o: &mut String, now: &Scrape) {
    let workers = now.values("streamhost_state_size_bytes", "worker");
    if workers.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n{:<24} {:<24} {:>10} {:>10} {:>12}", "STATE", "steps", "size", "memory", "keys");
    for w in &workers {
        let l = [("worker", w.as_str())];
        let steps = now.matching("streamhost_state_size_bytes", &l).next().map(|s| s.label("step").to_string()).unwrap_or_default();
        let _ = writeln!(
            o,
            "{:<24} {:<24} {:>10} {:>10} {:>12}",
            w,
            steps,
            bytes(now.sum("streamhost_state_size_bytes", &l)),
            bytes(now.sum("streamhost_state_memory_bytes", &l)),
            now.sum("streamhost_state_keys", &l)
        );
    }
}

fn checkpoints(o: &mut String, now: &Scrape) {
    let ok = now.sum("streamhost_checkpoints_total", &[("outcome", "ok")]);
    let failed = now.sum("streamhost_checkpoints_total", &[("outcome", "failed")]);
    if ok + failed == 0.0 {
        let _ = writeln!(o, "\ncheckpoints: none yet");
        return;
    }
    let (sum, n) = (now.sum("streamhost_checkpoint_duration_seconds_sum", &[]), now.sum("streamhost_checkpoint_duration_seconds_count", &[]));
    let last = now.sum("streamhost_checkpoint_last_success_timestamp_seconds", &[]);
    let age = if last > 0.0 { duration(unix_now() - last) } else { "-".into() };
    let _ = writeln!(
        o,
        "\ncheckpoints: {ok} ok, {failed} failed; mean duration {:.1} ms; last size {}; last taken {age} ago",
        if n > 0.0 { sum / n * 1e3 } else { 0.0 },
        bytes(now.sum("streamhost_checkpoint_size_bytes", &[]))
    );
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A rate or count, short: 950, 12.3k, 4.56M.
fn count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Seconds, short: 12 ms, 3.4 s, 5.0 m, 2.1 h, 3.0 d, 1.2 y.
fn duration(secs: f64) -> String {
    let a = secs.abs();
    if a < 1.0 {
        format!("{:.0}ms", secs * 1e3)
    } else if a < 120.0 {
        format!("{secs:.1}s")
    } else if a < 7200.0 {
        format!("{:.1}m", secs / 60.0)
    } else if a < 172_800.0 {
        format!("{:.1}h", secs / 3600.0)
    } else if a < 2.0 * 31_557_600.0 {
        format!("{:.1}d", secs / 86_400.0)
    } else {
        format!("{:.1}y", secs / 31_557_600.0)
    }
}

fn bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2}GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1}MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1}kB", b / 1e3)
    } else {
        format!("{b:.0}B")
    }
}
