//! SJoin: the recommender's training-data join, end to end through the
//! runtime: impressions LEFT JOIN clicks on `request_id` within 1 h of each
//! impression, emitted when the window ends.
//!
//! ```text
//! generator join-impression ─┐
//!                            ├─ window-join (left, on-window-end) ─ probe (native) ─ null
//! generator join-click ──────┘
//! ```
//!
//! Event time is synthetic and compressed (`event_time.step_ms` of the
//! generators), so a few million impressions cover several hours: by default
//! the run covers `--hours 4` of event time whatever `--events` is, so a
//! larger run keeps more events per window in state. Clicks: 20 per 150
//! impressions, each 0-30 min after the impression it refers to.
//!
//! Run (both backends, each in its own child process so their peak RSS is
//! their own):
//!
//! ```text
//! cargo bench -p streamhost-tests --bench sjoin -- --events 2000000
//! cargo test --release -p streamhost-tests --bench sjoin -- --events 200000 --backend memory
//! cargo bench -p streamhost-tests --bench sjoin -- --events 25000000 --backend rocksdb --hours 2.5 --block-cache-mb 32
//! cargo bench -p streamhost-tests --bench sjoin -- --events 2000000 --backend rocksdb,redis --parallelism 1 --rounds 5
//! ```
//!
//! Options: `--events N` impressions (default 2,000,000; clicks are
//! N × 20 / 150), `--backend memory|rocksdb|redis|both|all` or a list
//! (`rocksdb,redis`; `both`: memory and RocksDB; `redis` starts its own
//! redis-server on 127.0.0.1 in the child, without persistence), `--rounds R`
//! (run the list R times, alternating, and print each backend's median and its
//! ratio to RocksDB's), `--checkpoint-ms N` (checkpoints every N ms, as a
//! recoverable run takes them; default none), `--max-overlay-mb M` (the Redis
//! backend's bound on unwritten state), `--hours H` event time
//! covered (default 4), `--block-cache-mb M` (default 32),
//! `--flink` (write the inputs to files, read them with `file` sources, run
//! the PyFlink interval join of `tests/benches/flink` on the same files and
//! fail unless every impression gets the same number of clicks from both;
//! `--flink-parallelism N`, default 2), `--write-buffer-mb M` (default 32), `--state-dir DIR` (default a
//! temporary folder), `--no-ts-field` (event time set by the generator
//! directly instead of parsed back from `ts` by the source's
//! `timestamp_field`), `--write-inputs DIR` (only write the input files, for
//! later runs with `--inputs DIR --backend rocksdb --parallelism 2`, e.g. under
//! a profiler), `--metrics on,off` (each run also with metrics on, the admin
//! API on and `/metrics` scraped every second, and off,
//! `settings.metrics.enabled: false`; with `--rounds` the medians say the
//! ratio on / off: the cost of the metrics, docs/metrics.md).
//!
//! Reported per backend: input and output events/s, the output checked
//! (every impression exactly once, the matches exactly those the
//! generators' indices imply), peak RSS (VmHWM), state on disk (the state
//! folder's allocated blocks, sampled every 250 ms; its peak), and the
//! emission lag: for each output, in event time, how far the join's input
//! watermark was past the impression's window end when it was emitted (read
//! from the join step's `NodeStats::watermark`, which the driver sets before
//! it fires), and in wall-clock time, how long after the first output of the
//! same firing round the output reached the probe.


/// The `streamhost` binary's allocator, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: streamhost::Allocator = streamhost::Allocator;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use streamhost::config::GeneratorEventTime;
use streamhost::event::Event;
use streamhost::runtime::{build_pipeline, BuildOptions, NodeStats};
use streamhost::source::{event_time_at, ClickTargets, BASE_TIME_MS, END_OF_TIME};
use streamhost::step::{NativeFn, NativeRegistry};

use streamhost_tests::sjoin::{clicks_of, CLK_SEED, OUT_OF_ORDERNESS_MS, WINDOW_MS};

#[path = "../../host/tests/common/redis.rs"]
mod redis_server;

#[derive(Clone, Debug)]
struct Args {
    events: u64,
    backend: String,
    hours: f64,
    block_cache_mb: u64,
    write_buffer_mb: u64,
    state_dir: Option<PathBuf>,
    ts_field: bool,
    child: bool,
    /// Read the inputs from these files (`impressions.jsonl`, `clicks.jsonl`)
    /// instead of generating them in the run.
    inputs: Option<PathBuf>,
    /// Also run Flink on the same files and compare its output.
    flink: bool,
    /// Write the canonical output (`request_id<TAB>clicks`, by request id) here.
    canonical: Option<PathBuf>,
    flink_parallelism: u32,
    /// Worker counts to run streamhost at (`--parallelism 1,2`; a child gets one).
    parallelism: Vec<usize>,
    /// Times to run every backend and parallelism, alternating.
    rounds: usize,
    checkpoint_ms: Option<u64>,
    max_overlay_mb: Option<u64>,
    /// Metrics modes to run (`on`, `off`; empty: the default settings, not scraped).
    metrics: Vec<String>,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let num = |name: &str, default: f64| get(name).map_or(default, |v| v.replace('_', "").parse().unwrap_or_else(|_| panic!("{name} {v}: not a number")));
    Args {
        events: num("--events", 2_000_000.0) as u64,
        backend: get("--backend").unwrap_or_else(|| "both".into()),
        hours: num("--hours", 4.0),
        block_cache_mb: num("--block-cache-mb", 32.0) as u64,
        write_buffer_mb: num("--write-buffer-mb", 32.0) as u64,
        state_dir: get("--state-dir").map(PathBuf::from),
        ts_field: !argv.iter().any(|a| a == "--no-ts-field"),
        child: argv.iter().any(|a| a == "--child"),
        inputs: get("--inputs").map(PathBuf::from),
        flink: argv.iter().any(|a| a == "--flink"),
        canonical: get("--canonical").map(PathBuf::from),
        flink_parallelism: num("--flink-parallelism", 2.0) as u32,
        parallelism: get("--parallelism")
            .unwrap_or_else(|| "1,2".into())
            .split(',')
            .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("--parallelism {v}: not a number")))
            .collect(),
        rounds: num("--rounds", 1.0).max(1.0) as usize,
        checkpoint_ms: get("--checkpoint-ms").map(|_| num("--checkpoint-ms", 0.0) as u64),
        max_overlay_mb: get("--max-overlay-mb").map(|_| num("--max-overlay-mb", 0.0) as u64),
        metrics: get("--metrics").map_or_else(Vec::new, |v| v.split(',').map(|m| m.trim().to_string()).collect()),
    }
}

/// The two generator sources of the bench (in the run, or writing the files).
fn generator_sources(a: &Args, ts: serde_json::Value) -> serde_json::Value {
    streamhost_tests::sjoin::generator_sources(a.events, a.hours, ts)
}

/// Writes the bench's inputs as JSON-lines files into `dir` (what Flink reads).
fn write_inputs(a: &Args, dir: &Path) {
    streamhost_tests::sjoin::write_inputs(a.events, a.hours, dir)
}

/// Runs the PyFlink interval join (tests/benches/flink) on the files in `dir`;
/// returns its RESULT and the path of its canonical output.
fn run_flink(a: &Args, dir: &Path) -> (serde_json::Value, PathBuf) {
    let flink = streamhost_tests::repo().join("tests/benches/flink");
    let setup = Command::new("bash").arg(flink.join("setup.sh")).stderr(Stdio::inherit()).output().expect("run flink/setup.sh");
    assert!(setup.status.success(), "tests/benches/flink/setup.sh failed");
    let python = String::from_utf8_lossy(&setup.stdout).lines().last().expect("setup.sh prints the venv's python").trim().to_string();
    let out = dir.join("flink.tsv");
    let run = Command::new(python)
        .arg(flink.join("sjoin_flink.py"))
        .args(["--impressions", &dir.join("impressions.jsonl").display().to_string()])
        .args(["--clicks", &dir.join("clicks.jsonl").display().to_string()])
        .args(["--out", &out.display().to_string()])
        .args(["--parallelism", &a.flink_parallelism.to_string()])
        .args(["--window-ms", &WINDOW_MS.to_string(), "--out-of-orderness-ms", &OUT_OF_ORDERNESS_MS.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("run sjoin_flink.py");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the Flink run failed: {stdout}");
    let result = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("sjoin_flink.py prints RESULT");
    (serde_json::from_str(result).unwrap(), out)
}

fn main() {
    let a = parse_args();
    if let Some(dir) = std::env::args().skip_while(|x| x != "--write-inputs").nth(1) {
        // Only the files (for runs with `--inputs DIR`, e.g. under a profiler).
        std::fs::create_dir_all(&dir).unwrap();
        write_inputs(&a, Path::new(&dir));
        println!("inputs written to {dir}");
        return;
    }
    let single = !a.backend.contains(',') && !matches!(a.backend.as_str(), "both" | "all");
    if a.child || (single && !a.flink && a.parallelism.len() == 1 && a.rounds == 1 && a.metrics.len() <= 1) {
        let r = run_backend(&a);
        println!("RESULT {}", serde_json::to_string(&r).unwrap());
        return;
    }
    // With --flink, both engines read the same files.
    let files = a.flink.then(|| tempfile::tempdir().unwrap());
    if let Some(dir) = &files {
        let t = Instant::now();
        write_inputs(&a, dir.path());
        println!("inputs written to {} in {:.1} s", dir.path().display(), t.elapsed().as_secs_f64());
    }
    // One child per backend: each peak RSS is its own.
    let exe = std::env::current_exe().unwrap();
    let mut results = Vec::new();
    let backends: Vec<&str> = match a.backend.as_str() {
        "both" => vec!["memory", "rocksdb"],
        "all" => vec!["memory", "rocksdb", "redis"],
        list => list.split(',').map(str::trim).collect(),
    };
    let modes: Vec<Option<&str>> = if a.metrics.is_empty() { vec![None] } else { a.metrics.iter().map(|m| Some(m.as_str())).collect() };
    // Rounds alternate the runs, so a noisy neighbour slows every backend alike;
    // the metrics modes swap places every round (a run's disk writes slow the next).
    let mut runs: Vec<(&str, usize, Option<&str>)> = Vec::new();
    for round in 0..a.rounds {
        for b in &backends {
            for p in &a.parallelism {
                let mut modes = modes.clone();
                if round % 2 == 1 {
                    modes.reverse();
                }
                runs.extend(modes.into_iter().map(|m| (*b, *p, m)));
            }
        }
    }
    for (backend, parallelism, metrics) in runs {
        let mut argv: Vec<String> = std::env::args().skip(1).collect();
        for flag in ["--backend", "--parallelism", "--rounds", "--metrics"] {
            if let Some(i) = argv.iter().position(|x| x == flag) {
                argv.drain(i..(i + 2).min(argv.len()));
            }
        }
        argv.retain(|x| x != "--flink");
        argv.extend(["--child".into(), "--backend".into(), backend.into(), "--parallelism".into(), parallelism.to_string()]);
        if let Some(m) = metrics {
            argv.extend(["--metrics".into(), m.into()]);
        }
        if let Some(dir) = &files {
            let canonical = dir.path().join(format!("streamhost-{backend}-p{parallelism}.tsv"));
            argv.extend(["--inputs".into(), dir.path().display().to_string(), "--canonical".into(), canonical.display().to_string()]);
        }
        let mut child = Command::new(&exe).args(&argv).stdout(Stdio::piped()).spawn().expect("re-run the bench binary");
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            match line.strip_prefix("RESULT ") {
                Some(json) => results.push(serde_json::from_str::<serde_json::Value>(json).unwrap()),
                None => println!("{line}"),
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "the {backend} run failed: {status}");
    }
    let flink = files.as_ref().map(|dir| {
        let (r, out) = run_flink(&a, dir.path());
        let flink_out = std::fs::read(&out).unwrap();
        for r in &results {
            let file = dir.path().join(format!("streamhost-{}-p{}.tsv", r["backend"].as_str().unwrap(), r["parallelism"]));
            let ours = std::fs::read(&file).unwrap();
            assert!(ours == flink_out, "streamhost and Flink disagree: compare {} with {}", file.display(), out.display());
        }
        println!("Flink {} (parallelism {}): {:.1} s wall ({:.1} s for the job), output equal to streamhost's", r["flink_version"], r["parallelism"], r["seconds_total"].as_f64().unwrap_or(0.0), r["seconds_job"].as_f64().unwrap_or(0.0));
        r
    });
    println!();
    println!("{:<12} {:>12} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10}", "backend", "input ev/s", "output ev/s", "CPU us/ev", "peak RSS", "state disk", "lag p50", "lag p99", "10s min");
    for r in &results {
        println!(
            "{:<12} {:>12.0} {:>12.0} {:>10.2} {:>8.0}Mi {:>10.0}Mi {:>8}ms {:>8}ms {:>10}",
            format!("{} p{}{}", r["backend"].as_str().unwrap(), r["parallelism"], r["metrics"].as_str().map_or(String::new(), |m| format!(" m-{m}"))),
            r["input_per_s"].as_f64().unwrap(),
            r["output_per_s"].as_f64().unwrap(),
            r["cpu_us_per_input_event"].as_f64().unwrap(),
            r["peak_rss_mib"].as_f64().unwrap(),
            r["state_disk_peak_mib"].as_f64().unwrap(),
            r["lag_event_ms_p50"],
            r["lag_event_ms_p99"],
            r["input_10s_min_over_median"].as_f64().map_or("-".into(), |v| format!("{v:.2}")),
        );
    }
    if a.rounds > 1 {
        print_medians(&results);
    }
    if let Some(f) = &flink {
        // Flink's whole wall time (its JVM start included, as a user waits for it)
        // against streamhost's whole run on the same files.
        let flink_s = f["seconds_total"].as_f64().unwrap_or(f64::NAN);
        for r in &results {
            println!(
                "{:<12} vs Flink: {:.1}x faster ({:.1} s vs {flink_s:.1} s wall; {:.1}x against Flink's job time alone)",
                format!("{} p{}", r["backend"].as_str().unwrap(), r["parallelism"]),
                flink_s / r["seconds"].as_f64().unwrap(),
                r["seconds"].as_f64().unwrap(),
                f["seconds_job"].as_f64().unwrap_or(f64::NAN) / r["seconds"].as_f64().unwrap(),
            );
        }
        println!("FLINK {}", serde_json::to_string(f).unwrap());
    }
}

/// What the probe after the join sees.
#[derive(Default)]
struct Probe {
    outputs: u64,
    /// Outputs with at least one click, and the clicks they carry.
    matched: u64,
    clicks: u64,
    /// Impressions seen (by index from the request id), to find duplicates.
    seen: Vec<u64>,
    duplicates: u64,
    unparsed: u64,
    /// Outputs emitted at the end of input (watermark = end of time): no lag
    /// to measure.
    at_end: u64,
    /// Event-time lag histogram: W - window end, in ms, by power of two
    /// (bucket 0: 0 ms; bucket k: [2^(k-1), 2^k), the last one open); negative
    /// lags counted apart.
    lag_hist: [u64; 32],
    lag_negative: u64,
    lag_max: i64,
    lag_sum: i128,
    /// Wall-clock delay from the first output of the firing round, in µs.
    wall_hist: [u64; 32],
    wall_max_us: u64,
    round_watermark: i64,
    round_start: Option<Instant>,
    /// Clicks per impression (by index), kept when a canonical output is asked for.
    counts: Option<Vec<u32>>,
}

/// The lowest and the median input rate over the 10 s windows (one per
/// second sampled) of a run's progress while its inputs were read, if that
/// lasted 20 s or more.
fn ten_second_rates(progress: &[(f64, u64)]) -> (Option<f64>, Option<f64>) {
    // While the inputs are read: what follows is the flush at their end.
    let total = progress.last().map_or(0, |(_, n)| *n);
    let progress = &progress[..progress.iter().position(|(_, n)| *n == total).map_or(progress.len(), |i| i + 1)];
    let mut rates: Vec<f64> = progress
        .iter()
        .enumerate()
        .filter_map(|(i, (t, n))| {
            let (t2, n2) = progress[i..].iter().find(|(t2, _)| t2 - t >= 10.0)?;
            Some((n2 - n) as f64 / (t2 - t))
        })
        .collect();
    if progress.last().is_none_or(|(t, _)| *t < 20.0) || rates.is_empty() {
        return (None, None);
    }
    rates.sort_by(f64::total_cmp);
    (Some(rates[0]), Some(rates[rates.len() / 2]))
}

fn log2_bucket(v: u64) -> usize {
    if v == 0 { 0 } else { (64 - v.leading_zeros() as usize).min(31) }
}

/// The value at quantile `q` of a log2 histogram (the bucket's upper bound).
fn quantile(hist: &[u64; 32], q: f64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (k, n) in hist.iter().enumerate() {
        acc += n;
        if acc >= want {
            return if k == 0 { 0 } else { (1u64 << k) - 1 };
        }
    }
    u64::MAX
}

/// The probe's searchers, built once (building one per output cost the
/// workers about 6 % of their time, which is the bench's, not the join's).
static REQUEST_ID: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"request_id\":\"q"));
static CLICK_COUNT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"click.count\":"));

fn number_after(v: &[u8], field: &memchr::memmem::Finder<'static>) -> Option<u64> {
    let at = field.find(v)? + field.needle().len();
    let digits = v[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&v[at..at + digits]).ok()?.parse().ok()
}

impl Probe {
    fn observe(&mut self, e: &Event, watermark: i64) {
        self.outputs += 1;
        let v = &e.value;
        match (number_after(v, &REQUEST_ID), number_after(v, &CLICK_COUNT)) {
            (Some(j), Some(clicks)) => {
                let (w, bit) = ((j / 64) as usize, 1u64 << (j % 64));
                if w >= self.seen.len() {
                    self.seen.resize(w + 1, 0);
                }
                if self.seen[w] & bit != 0 {
                    self.duplicates += 1;
                }
                self.seen[w] |= bit;
                if let Some(counts) = self.counts.as_mut() {
                    if j as usize >= counts.len() {
                        counts.resize(j as usize + 1, u32::MAX);
                    }
                    counts[j as usize] = clicks as u32;
                }
                if clicks > 0 {
                    self.matched += 1;
                    self.clicks += clicks;
                }
            }
            _ => self.unparsed += 1,
        }
        if watermark == END_OF_TIME {
            // Fired because the inputs ended, not because event time moved.
            self.at_end += 1;
            return;
        }
        let lag = watermark.saturating_sub(e.timestamp.saturating_add(WINDOW_MS));
        if lag < 0 {
            self.lag_negative += 1;
        } else {
            self.lag_hist[log2_bucket(lag as u64)] += 1;
            self.lag_max = self.lag_max.max(lag);
            self.lag_sum += lag as i128;
        }
        let now = Instant::now();
        if self.round_start.is_none() || watermark != self.round_watermark {
            self.round_watermark = watermark;
            self.round_start = Some(now);
        }
        let us = now.duration_since(self.round_start.unwrap()).as_micros() as u64;
        self.wall_hist[log2_bucket(us)] += 1;
        self.wall_max_us = self.wall_max_us.max(us);
    }
}

/// utime + stime of a /proc stat file, in seconds.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes allocated on disk under `dir` (and the files' apparent size).
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut blocks = 0;
    let mut apparent = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                blocks += m.blocks() * 512;
                apparent += m.len();
            }
        }
    }
    (blocks, apparent)
}

/// Per backend and parallelism over the rounds: the median input rate and CPU
/// per event, and the ratio of the medians to RocksDB's at that parallelism.
fn print_medians(results: &[serde_json::Value]) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mode = |r: &serde_json::Value| r["metrics"].as_str().unwrap_or("default").to_string();
    let mut keys: Vec<(String, u64, String)> = results.iter().map(|r| (r["backend"].as_str().unwrap().to_string(), r["parallelism"].as_u64().unwrap(), mode(r))).collect();
    keys.sort();
    keys.dedup();
    let of = |key: &(String, u64, String), field: &str| -> Vec<f64> {
        results.iter().filter(|r| r["backend"] == key.0.as_str() && r["parallelism"] == key.1 && mode(r) == key.2).filter_map(|r| r[field].as_f64()).collect()
    };
    println!();
    println!("medians over the rounds (all runs listed above):");
    for key in &keys {
        let rates = of(key, "input_per_s");
        let (rate, cpu) = (median(rates.clone()), median(of(key, "cpu_us_per_input_event_all")));
        let rocks = (String::from("rocksdb"), key.1, key.2.clone());
        let vs = if keys.contains(&rocks) && key.0 != "rocksdb" {
            format!("; {:.2}x RocksDB's input rate, {:.2}x its CPU per event", rate / median(of(&rocks, "input_per_s")), cpu / median(of(&rocks, "cpu_us_per_input_event_all")))
        } else {
            String::new()
        };
        let spread = format!("{:.0}..{:.0}", rates.iter().copied().fold(f64::MAX, f64::min), rates.iter().copied().fold(0.0, f64::max));
        println!("  {:<8} p{} metrics {}: {rate:.0} input events/s (runs {spread}), {cpu:.2} us CPU per event (streamhost + redis-server){vs}", key.0, key.1, key.2);
    }
    // The cost of the metrics: on against off, per backend and parallelism.
    for key in keys.iter().filter(|k| k.2 == "on") {
        let off = (key.0.clone(), key.1, "off".to_string());
        if keys.contains(&off) {
            println!(
                "  metrics on / off, {} p{}: {:.3} of the input rate, {:.3} of the CPU per event",
                key.0,
                key.1,
                median(of(key, "input_per_s")) / median(of(&off, "input_per_s")),
                median(of(key, "cpu_us_per_input_event_all")) / median(of(&off, "cpu_us_per_input_event_all"))
            );
        }
    }
}

/// A redis-server's CPU seconds and peak RSS, from /proc.
fn process_cpu_and_peak(pid: u32) -> (f64, u64) {
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    (cpu_seconds(&format!("/proc/{pid}/stat")), peak * 1024)
}

fn run_backend(a: &Args) -> serde_json::Value {
    let backend = a.backend.as_str();
    assert!(matches!(backend, "memory" | "rocksdb" | "redis"), "--backend memory|rocksdb|redis|both|all or a list, not {backend}");
    // The Redis backend's server: this child's own, gone with it.
    let redis = (backend == "redis").then(redis_server::Redis::start);
    let n = a.events;
    let n_clicks = clicks_of(n);
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = a.state_dir.clone().unwrap_or_else(|| tmp.path().join("state"));
    let ts = if a.ts_field { json!("ts") } else { serde_json::Value::Null };
    let generators = generator_sources(a, ts);
    let sources = match &a.inputs {
        Some(dir) => json!({
            "imp": {"type": "file", "path": dir.join("impressions.jsonl"), "timestamp_field": "ts", "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS},
            "clk": {"type": "file", "path": dir.join("clicks.jsonl"), "timestamp_field": "ts", "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS}
        }),
        None => generators.clone(),
    };
    let (steps, sinks) = streamhost_tests::sjoin::join_steps_and_sink("sjoin-probe");
    let config = json!({
        "name": format!("sjoin-{backend}"),
        "sources": sources,
        "steps": steps,
        "sinks": sinks,
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
        "settings": {"parallelism": a.parallelism[0], "state": {
            "backend": backend, "dir": state_dir,
            "rocksdb": {"block_cache_mb": a.block_cache_mb, "write_buffer_mb": a.write_buffer_mb}
        }}
    });
    let mut config = config;
    if let Some(server) = &redis {
        let mut options = json!({"url": server.url, "prefix": "sjoin"});
        if let Some(mb) = a.max_overlay_mb {
            options["max_overlay_mb"] = mb.into();
        }
        config["settings"]["state"]["redis"] = options;
    }
    if let Some(ms) = a.checkpoint_ms {
        config["settings"]["checkpoint"] = json!({"interval_ms": ms, "dir": tmp.path().join("checkpoints")});
    }
    // `--metrics on|off`: on, the admin API serves them and a thread scrapes them every second.
    let metrics = a.metrics.first().map(String::as_str);
    match metrics {
        Some("on") => {
            config["settings"]["metrics"] = json!({"enabled": true});
            config["settings"]["admin"] = json!({"addr_file": tmp.path().join("admin.addr")});
        }
        Some("off") => config["settings"]["metrics"] = json!({"enabled": false}),
        Some(other) => panic!("--metrics on|off or a list, not {other}"),
        None => {}
    }
    let path = streamhost_tests::write_pipeline(tmp.path(), &config);
    let loaded = streamhost::config::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"));
    // The generators' grids (also when reading the files they wrote).
    let gen_dir = tempfile::tempdir().unwrap();
    let gen_path = streamhost_tests::write_pipeline(gen_dir.path(), &json!({"name": "grids", "sources": generators, "sinks": {"null": {"type": "null", "inputs": ["imp", "clk"]}}}));
    let generated = streamhost::config::load_pipeline(&gen_path).unwrap_or_else(|e| panic!("{e}"));
    // The grids as the generators got them: parsed back from pipeline.json,
    // which may differ from `step` in the last bit (serde_json's default
    // float parsing is not exactly round-trip), and at tens of millions of
    // events a last bit moves some times by 1 ms.
    let grid = |source: &str| match &generated.config.sources[source] {
        streamhost::config::SourceConfig::Generator(streamhost::source::GeneratorSourceConfig { event_time: Some(g), .. }) => *g,
        _ => unreachable!("{source} is a generator with an event-time grid"),
    };
    let (imp_grid, clk_grid): (GeneratorEventTime, GeneratorEventTime) = (grid("imp"), grid("clk"));
    let imp_impressions = match &generated.config.sources["clk"] {
        streamhost::config::SourceConfig::Generator(streamhost::source::GeneratorSourceConfig { impressions: Some(i), .. }) => *i,
        _ => unreachable!("clk refers to the impression grid"),
    };

    // The probe: counts and checks outputs, measures the emission lag
    // against the join's input watermark, and passes every output on.
    let probe = Arc::new(Mutex::new(Probe { counts: a.canonical.as_ref().map(|_| Vec::new()), ..Probe::default() }));
    let join_stats: Arc<OnceLock<Arc<NodeStats>>> = Arc::new(OnceLock::new());
    let mut natives = NativeRegistry::default();
    {
        let (probe, join_stats) = (probe.clone(), join_stats.clone());
        natives.register("sjoin-probe", move || -> NativeFn {
            let (probe, join_stats) = (probe.clone(), join_stats.clone());
            Box::new(move |e: &Event| {
                let w = join_stats.get().map_or(i64::MIN, |s| s.watermark.load(Relaxed));
                probe.lock().unwrap().observe(e, w);
                Ok(vec![e.clone()])
            })
        });
    }
    let pipeline = build_pipeline(&loaded, BuildOptions { natives, progress: true, ..Default::default() }).unwrap_or_else(|e| panic!("{e}"));
    join_stats.set(pipeline.node_stats("join").expect("the join step")).ok();

    // Sample the state folder's size and the RSS while it runs.
    let stop = Arc::new(AtomicBool::new(false));
    let disk_peak = Arc::new(AtomicU64::new(0));
    let apparent_peak = Arc::new(AtomicU64::new(0));
    let rss_at_disk_peak = Arc::new(AtomicU64::new(0));
    let inputs_taken: Vec<Arc<NodeStats>> = ["imp", "clk"].iter().map(|s| pipeline.node_stats(s).expect("a source")).collect();
    let sampler = {
        let (stop, disk_peak, apparent_peak, rss_at_disk_peak, dir) =
            (stop.clone(), disk_peak.clone(), apparent_peak.clone(), rss_at_disk_peak.clone(), state_dir.clone());
        std::thread::spawn(move || {
            // (seconds since start, input events the pipeline had taken), every second.
            let mut progress: Vec<(f64, u64)> = Vec::new();
            let t0 = Instant::now();
            while !stop.load(Relaxed) {
                let t = t0.elapsed().as_secs_f64();
                if progress.last().is_none_or(|(last, _)| t - last >= 1.0) {
                    progress.push((t, inputs_taken.iter().map(|s| s.events_out()).sum()));
                }
                let (blocks, apparent) = disk_usage(&dir);
                if blocks > disk_peak.load(Relaxed) {
                    disk_peak.store(blocks, Relaxed);
                    rss_at_disk_peak.store(status_kib("VmRSS:") * 1024, Relaxed);
                }
                apparent_peak.fetch_max(apparent, Relaxed);
                std::thread::sleep(Duration::from_millis(250));
            }
            progress
        })
    };
    let scraper = pipeline.admin_addr().map(|addr| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let client = streamhost::swap::AdminClient::new(&addr.to_string(), None);
            let mut scrapes = 0u64;
            while !stop.load(Relaxed) {
                let text = client.metrics().expect("GET /metrics");
                assert!(text.contains("streamhost_window_join_fired_total"), "{text}");
                scrapes += 1;
                // One wake-up a second, as a Prometheus scraping every second costs.
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        })
    });
    let (cpu_before, thread_before) = (cpu_seconds("/proc/self/stat"), cpu_seconds("/proc/thread-self/stat"));
    let summary = pipeline.run().unwrap_or_else(|e| panic!("{e}"));
    // This thread ran the pipeline (every step); CPU time is steadier than
    // wall time on a shared machine.
    let pipeline_cpu = cpu_seconds("/proc/thread-self/stat") - thread_before;
    let process_cpu = cpu_seconds("/proc/self/stat") - cpu_before;
    // The server's work is the backend's too.
    let (redis_cpu, redis_peak) = redis.as_ref().map_or((0.0, 0), |s| process_cpu_and_peak(s.pid()));
    stop.store(true, Relaxed);
    let progress = sampler.join().unwrap();
    let scrapes = scraper.map_or(0, |s| s.join().unwrap());
    let (window_min, window_median) = ten_second_rates(&progress);
    let secs = summary.elapsed.as_secs_f64();
    let peak_rss = status_kib("VmHWM:") * 1024;

    let node = |name: &str| summary.node(name).unwrap_or_else(|| panic!("no node {name}"));
    let input = node("imp").events_out + node("clk").events_out;
    let join = node("join");
    let sink_in = node("null").events_in;
    let p = probe.lock().unwrap();

    // What the generators imply: each click refers to one impression; the
    // matched impressions are the distinct ones referred to.
    let targets = ClickTargets::new(Some(&clk_grid), Some(&imp_impressions));
    let mut referred = vec![0u64; (n as usize).div_ceil(64)];
    let mut with_target = 0u64;
    for i in 0..n_clicks {
        if let Some(j) = targets.target(CLK_SEED, i, event_time_at(Some(&clk_grid), i)) {
            with_target += 1;
            referred[(j / 64) as usize] |= 1 << (j % 64);
        }
    }
    let expected_matched: u64 = referred.iter().map(|w| u64::from(w.count_ones())).sum();
    let last_imp = event_time_at(Some(&imp_grid), n.saturating_sub(1));

    let measured = p.outputs - p.lag_negative - p.at_end;
    let lag_mean = if measured > 0 { (p.lag_sum / i128::from(measured)) as i64 } else { 0 };
    let r = json!({
        "backend": backend,
        "parallelism": a.parallelism[0],
        "impressions": n, "clicks": n_clicks,
        "event_time_hours": (last_imp - BASE_TIME_MS) as f64 / 3_600_000.0,
        "seconds": secs,
        "input_events": input,
        "input_per_s": input as f64 / secs,
        "outputs": p.outputs,
        "output_per_s": p.outputs as f64 / secs,
        "matched": p.matched, "expected_matched": expected_matched,
        "clicks_in_outputs": p.clicks, "clicks_with_an_impression": with_target,
        "duplicates": p.duplicates, "unparsed": p.unparsed,
        "dead_lettered": summary.dead_lettered,
        "peak_rss_mib": peak_rss as f64 / 1048576.0,
        "state_disk_peak_mib": disk_peak.load(Relaxed) as f64 / 1048576.0,
        "state_apparent_peak_mib": apparent_peak.load(Relaxed) as f64 / 1048576.0,
        "rss_at_disk_peak_mib": rss_at_disk_peak.load(Relaxed) as f64 / 1048576.0,
        "lag_event_ms_p50": quantile(&p.lag_hist, 0.5),
        "lag_event_ms_p99": quantile(&p.lag_hist, 0.99),
        "lag_event_ms_max": p.lag_max,
        "lag_event_ms_mean": lag_mean,
        "lag_negative": p.lag_negative,
        "emitted_at_end_of_input": p.at_end,
        "lag_wall_us_p50": quantile(&p.wall_hist, 0.5),
        "lag_wall_us_p99": quantile(&p.wall_hist, 0.99),
        "lag_wall_us_max": p.wall_max_us,
        "event_time_ms_per_wall_s": (last_imp - BASE_TIME_MS) as f64 / secs,
        "pipeline_thread_cpu_s": pipeline_cpu,
        "process_cpu_s": process_cpu,
        "input_per_pipeline_cpu_s": input as f64 / pipeline_cpu.max(0.01),
        "cpu_us_per_input_event": process_cpu * 1e6 / input.max(1) as f64,
        "pipeline_cpu_us_per_input_event": pipeline_cpu * 1e6 / input.max(1) as f64,
        "input_per_s_10s_min": window_min,
        "input_per_s_10s_median": window_median,
        "input_10s_min_over_median": window_min.zip(window_median).map(|(a, b)| a / b.max(1.0)),
    });
    let mut r = r;
    // The server's CPU is the backend's cost too (json! recurses too deep for one literal).
    r["redis_cpu_s"] = redis_cpu.into();
    r["redis_peak_rss_mib"] = (redis_peak as f64 / 1048576.0).into();
    r["cpu_us_per_input_event_all"] = ((process_cpu + redis_cpu) * 1e6 / input.max(1) as f64).into();
    r["checkpoint_ms"] = a.checkpoint_ms.into();
    r["metrics"] = metrics.into();
    r["scrapes"] = scrapes.into();
    println!("--- sjoin, backend {backend}, parallelism {}{}: {n} impressions + {n_clicks} clicks over {:.2} h of event time", a.parallelism[0], metrics.map_or(String::new(), |m| format!(", metrics {m} ({scrapes} scrapes)")), r["event_time_hours"].as_f64().unwrap());
    println!("  elapsed               {secs:.2} s");
    println!("  input                 {:.0} events/s ({input} events)", r["input_per_s"].as_f64().unwrap());
    println!("  output                {:.0} events/s ({} events, sink got {sink_in}, join out {})", r["output_per_s"].as_f64().unwrap(), p.outputs, join.events_out);
    println!("  matched impressions   {} (expected {expected_matched}), clicks joined {} of {with_target}", p.matched, p.clicks);
    println!(
        "  CPU                   pipeline thread {pipeline_cpu:.1} s ({:.0} input events per CPU-second), process {process_cpu:.1} s",
        r["input_per_pipeline_cpu_s"].as_f64().unwrap()
    );
    println!("  CPU per input event   {:.2} us (process), {:.2} us (pipeline thread)", r["cpu_us_per_input_event"].as_f64().unwrap(), r["pipeline_cpu_us_per_input_event"].as_f64().unwrap());
    match (window_min, window_median) {
        (Some(lo), Some(mid)) => println!("  input over 10 s       lowest {lo:.0} events/s, median {mid:.0} ({:.2} of the median)", lo / mid.max(1.0)),
        _ => println!("  input over 10 s       (the run is shorter than 20 s)"),
    }
    println!("  peak RSS (VmHWM)      {:.0} MiB", r["peak_rss_mib"].as_f64().unwrap());
    if redis.is_some() {
        println!("  redis-server          {redis_cpu:.1} s CPU, peak RSS {:.0} MiB", r["redis_peak_rss_mib"].as_f64().unwrap());
    }
    println!(
        "  state on disk, peak   {:.0} MiB allocated ({:.0} MiB apparent; RSS then {:.0} MiB)",
        r["state_disk_peak_mib"].as_f64().unwrap(),
        r["state_apparent_peak_mib"].as_f64().unwrap(),
        r["rss_at_disk_peak_mib"].as_f64().unwrap()
    );
    println!(
        "  emission lag, event time (join input watermark - window end), {measured} outputs: p50 <= {} ms, p99 <= {} ms, max {} ms, mean {lag_mean} ms; {} more fired at the end of input",
        r["lag_event_ms_p50"], r["lag_event_ms_p99"], p.lag_max, p.at_end
    );
    println!(
        "  emission lag, wall clock after the firing round's first output: p50 <= {} us, p99 <= {} us, max {} us",
        r["lag_wall_us_p50"], r["lag_wall_us_p99"], p.wall_max_us
    );
    println!("  event time advanced   {:.0} ms per wall second", r["event_time_ms_per_wall_s"].as_f64().unwrap());

    if let (Some(path), Some(counts)) = (&a.canonical, &p.counts) {
        // As sjoin_flink.py writes it: request id, tab, clicks, by request id.
        let mut out = String::with_capacity(counts.len() * 20);
        for (j, c) in counts.iter().enumerate().filter(|(_, c)| **c != u32::MAX) {
            out.push_str(&format!("q{j:012}\t{c}\n"));
        }
        std::fs::write(path, out).unwrap();
    }
    // A fast wrong answer is no result.
    assert_eq!(summary.dead_lettered, 0, "dead letters (see {})", tmp.path().join("dead.jsonl").display());
    assert_eq!(p.unparsed, 0, "outputs without a request id or click count");
    assert_eq!(p.duplicates, 0, "an impression came out twice");
    assert_eq!(p.outputs, n, "every impression comes out exactly once");
    assert_eq!(sink_in, n, "the sink got every output");
    assert_eq!(p.matched, expected_matched, "matched impressions");
    assert_eq!(p.clicks, with_target, "every click with an impression before it is joined");
    assert_eq!(p.lag_negative, 0, "an output before the watermark passed its window end");
    r
}
