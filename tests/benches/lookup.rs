//! Lookup joins on Redis, measured as a user runs them (a pipeline.json
//! through the runtime), against `redis-benchmark` on the same redis-server
//! (started here on 127.0.0.1) in the same run.
//!
//! ```text
//! cargo bench -p streamhost-tests --bench lookup                   # 2M events, 3 rounds
//! cargo bench -p streamhost-tests --bench lookup -- --events 4000000 --rounds 5 --parallelism 2
//! cargo bench -p streamhost-tests --bench lookup -- --only latency   # or throughput, failover
//! ```
//!
//! 1. **Throughput**, alternating in each round: `redis-benchmark -t get -P 16`
//!    (GETs of 100-byte values, 16 pipelined per connection, its 50
//!    connections); the `join-impression` generator → `lookup-join` → `null`
//!    with a **cold** cache (`max_bytes` 0: every event's user, of 1M, is asked
//!    of Redis; only the keys repeated within a request are not); and with a
//!    **warm** cache (the item, of 200k, which each worker's cache keeps once
//!    read). Events per second over the run against GETs per second; ratio
//!    of medians.
//! 2. **Latency** at a steady `--rate` (100k events/s) for 6 s, cold cache:
//!    the latency each event gained at the step (arrival to leaving),
//!    p50/p99/max after the first second (and over the whole run).
//! 3. **Failover**: a table on copies A and B at 50k events/s; A killed
//!    (SIGKILL) or frozen (SIGSTOP, a hung server) 1 s into the run: no event
//!    lost, and the longest an event waited (the time its lookups took to
//!    move to B).
//! 4. **Flink** (`--only flink`, not part of the default run: it installs
//!    PyFlink, tests/benches/flink/setup.sh): the same impressions written to
//!    a file, then in turns the cold lookup from a `file` source, and PyFlink
//!    looking each user up with a pandas UDF that sends one MGET per Arrow
//!    batch (tests/benches/flink/lookup_flink.py), on the same server.

#[allow(dead_code)]
#[path = "../../host/tests/common/redis.rs"]
mod redis_server;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streamhost::config::load_pipeline;
use streamhost::lookup::LookupSnapshot;
use streamhost::runtime::{build_pipeline, BuildOptions, NodeStats, RunSummary};

/// The `streamhost` binary's allocator, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: streamhost::Allocator = streamhost::Allocator;

const USERS: u64 = 1_000_000;
const ITEMS: u64 = 200_000;

struct Args {
    events: u64,
    rounds: usize,
    rate: u64,
    parallelism: usize,
    only: Option<String>,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let get = |flag: &str| argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1)).cloned();
    let value = |flag: &str, default: u64| get(flag).and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default);
    Args {
        events: value("--events", 2_000_000),
        rounds: value("--rounds", 3) as usize,
        rate: value("--rate", 100_000),
        parallelism: value("--parallelism", 2) as usize,
        only: get("--only"),
    }
}

/// Sets keys on the server at `port` over one connection, pipelined.
fn fill(port: u16, pairs: impl Iterator<Item = (String, String)>) -> usize {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let reader = stream.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    // Replies read as they come, so neither side's buffer fills.
    let replies = std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut line = String::new();
        let mut read = 0;
        let mut total = None;
        loop {
            if total.is_none() {
                total = rx.try_recv().ok();
            }
            if total == Some(read) {
                return read;
            }
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with('+'), "redis said {line}");
            read += 1;
        }
    });
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stream);
    let mut n = 0;
    for (k, v) in pairs {
        write!(w, "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).unwrap();
        n += 1;
    }
    w.flush().unwrap();
    tx.send(n).unwrap();
    replies.join().unwrap()
}

fn load_tables(port: u16) {
    let t = Instant::now();
    let users = fill(port, (0..USERS).map(|u| (format!("user:u-{u}"), format!(r#"{{"age":{},"city":"c{}","active_days":{},"tier":"t{}"}}"#, 16 + u % 60, u % 300, u % 31, u % 4))));
    let items = fill(port, (0..ITEMS).map(|i| (format!("item:i-{i}"), format!(r#"{{"category":"k{}","price":{}.{:02},"ctr_7d":0.{:04}}}"#, i % 40, i % 1000, i % 100, i % 10_000))));
    // redis-benchmark's key space: key:000000000000 ..
    let bench = fill(port, (0..USERS).map(|k| (format!("key:{k:012}"), "x".repeat(100))));
    println!("redis-server on {port}: {users} users, {items} items, {bench} redis-benchmark keys of 100 B loaded in {:.1} s", t.elapsed().as_secs_f64());
}

/// redis-benchmark's GETs per second.
fn redis_benchmark(port: u16, n: u64) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-t", "get", "-P", "16", "-q", "-r", &USERS.to_string(), "-n", &n.to_string()])
        .output()
        .expect("redis-benchmark (scripts/setup.sh installs redis-server, which has it)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "GET: 330033.00 requests per second, p50=..." (after carriage-return progress lines)
    let line = text.rsplit('\r').next().unwrap_or(&text).lines().find(|l| l.contains("GET:")).unwrap_or_else(|| panic!("redis-benchmark said: {text}"));
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("redis-benchmark said: {line}"))
}

/// generator → lookup-join (`step`'s settings added) → null.
fn pipeline(a: &Args, events: u64, rate: u64, step: Value) -> Value {
    let mut lookup = json!({ "type": "lookup-join", "inputs": ["impressions"], "prefix": "d_" });
    lookup.as_object_mut().unwrap().extend(step.as_object().unwrap().clone());
    json!({
        "sources": { "impressions": { "type": "generator", "shape": "join-impression", "seed": 1, "count": events, "rate": rate } },
        "steps": { "lookup": lookup },
        "sinks": { "out": { "type": "null", "inputs": ["lookup"] } },
        "settings": { "parallelism": a.parallelism }
    })
}

fn cold(urls: &[&str]) -> Value {
    json!({ "key": "$.user_id", "key_template": "user:{}", "backends": urls.iter().map(|u| json!({ "type": "redis", "url": u })).collect::<Vec<_>>(),
        "cache": { "max_bytes": 0 } })
}

fn warm(url: &str) -> Value {
    json!({ "key": "$.item_id", "key_template": "item:{}", "backends": [{ "type": "redis", "url": url }], "cache": { "max_bytes": 256 << 20 } })
}

struct Run {
    summary: RunSummary,
    lookup: LookupSnapshot,
}

impl Run {
    fn rate(&self) -> f64 {
        self.lookup.events as f64 / self.summary.elapsed.as_secs_f64()
    }
}

/// Runs `p`; `during` gets the step's live counters while it runs.
fn run(p: &Value, during: impl FnOnce(&Arc<NodeStats>)) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.json");
    std::fs::write(&path, p.to_string()).unwrap();
    let built = build_pipeline(&load_pipeline(&path).unwrap_or_else(|e| panic!("{e}")), BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let stats = built.node_stats("lookup").unwrap();
    let running = std::thread::spawn(move || built.run());
    during(&stats);
    let summary = running.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    let lookup = summary.node("lookup").and_then(|n| n.lookup.clone()).expect("lookup figures");
    assert_eq!(lookup.found + lookup.missing, lookup.events, "every event answered");
    assert_eq!(lookup.missing, 0, "every user and item is in the table");
    Run { summary, lookup }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
}

fn throughput(a: &Args, server: &redis_server::Redis) {
    let (mut bench, mut cold_rates, mut warm_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.rounds {
        for side in (0..3).map(|k| (k + round) % 3) {
            match side {
                0 => bench.push(redis_benchmark(server.port, a.events)),
                1 => {
                    let r = run(&pipeline(a, a.events, 0, cold(&[&server.url])), |_| {});
                    let l = &r.lookup;
                    println!(
                        "    cold: {:.0} events/s, {} requests of {:.0} keys on average, hit rate {:.1} %",
                        r.rate(),
                        l.requests,
                        l.request_keys as f64 / l.requests.max(1) as f64,
                        l.cache_hit_rate() * 100.0
                    );
                    cold_rates.push(r.rate());
                }
                _ => {
                    let r = run(&pipeline(a, a.events, 0, warm(&server.url)), |_| {});
                    println!("    warm: {:.0} events/s, hit rate {:.1} % ({} keys asked)", r.rate(), r.lookup.cache_hit_rate() * 100.0, r.lookup.asked);
                    warm_rates.push(r.rate());
                }
            }
        }
        println!(
            "  round {}: redis-benchmark -P 16 {:.0} GET/s; lookup-join cold {:.0} events/s ({:.2}x), warm {:.0} events/s ({:.2}x)",
            round + 1,
            bench[round],
            cold_rates[round],
            cold_rates[round] / bench[round],
            warm_rates[round],
            warm_rates[round] / bench[round]
        );
    }
    let (b, c, w) = (median(bench), median(cold_rates), median(warm_rates));
    println!("throughput (medians of {} rounds, parallelism {}): redis-benchmark {b:.0} GET/s; cold {c:.0} events/s = {:.2}x; warm {w:.0} events/s = {:.2}x", a.rounds, a.parallelism, c / b, w / b);
}

fn latency(a: &Args, server: &redis_server::Redis) {
    // Six seconds at the rate; the steady state is the last five (the first
    // second connects, grows the maps, and fills the channels).
    let events = a.rate * 6;
    let mut first = Vec::new();
    let mut steady = None;
    let r = run(&pipeline(a, events, a.rate, cold(&[&server.url])), |stats| {
        let lookup = stats.lookup.get().expect("a lookup step").clone();
        std::thread::sleep(Duration::from_secs(1));
        first = lookup.step.latency.counts();
        steady = Some(lookup);
    });
    let l = &r.lookup;
    let h = &steady.expect("sampled").step.latency;
    println!(
        "latency at {} events/s (cold cache, {events} events, ran at {:.0}/s): added p50 {}, p99 {}, max {} after the first second \
         (whole run: p99 {}, max {}); requests p99 {}, {:.0} keys each",
        a.rate,
        r.rate(),
        ms(h.quantile_between(&first, 0.5)),
        ms(h.quantile_between(&first, 0.99)),
        ms(h.quantile_between(&first, 1.0)),
        ms(l.latency_p99),
        ms(l.latency_max),
        ms(l.request_p99),
        l.request_keys as f64 / l.requests.max(1) as f64
    );
}

/// The impressions as a JSON-lines file (what both engines read).
fn write_impressions(a: &Args, dir: &std::path::Path) -> std::path::PathBuf {
    let p = json!({
        "sources": { "impressions": { "type": "generator", "shape": "join-impression", "seed": 1, "count": a.events } },
        "sinks": { "out": { "type": "file", "path": "impressions.jsonl", "inputs": ["impressions"] } }
    });
    let path = dir.join("write.json");
    std::fs::write(&path, p.to_string()).unwrap();
    build_pipeline(&load_pipeline(&path).unwrap(), BuildOptions::default()).unwrap().run().unwrap();
    dir.join("impressions.jsonl")
}

fn flink(a: &Args, server: &redis_server::Redis) {
    let flink_dir = streamhost_tests::repo().join("tests/benches/flink");
    let setup = Command::new("bash").arg(flink_dir.join("setup.sh")).stderr(std::process::Stdio::inherit()).output().expect("run flink/setup.sh");
    assert!(setup.status.success(), "tests/benches/flink/setup.sh failed");
    let python = String::from_utf8_lossy(&setup.stdout).lines().last().expect("setup.sh prints the venv's python").trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = write_impressions(a, dir.path());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let mut p = pipeline(a, a.events, 0, cold(&[&server.url]));
        p["sources"] = json!({ "impressions": { "type": "file", "path": file } });
        let r = run(&p, |_| {});
        ours.push(r.rate());
        let out = Command::new(&python)
            .arg(flink_dir.join("lookup_flink.py"))
            .args(["--impressions", file.to_str().unwrap(), "--redis-port", &server.port.to_string(), "--parallelism", &a.parallelism.to_string()])
            .env("JAVA_HOME", std::env::var("JAVA_HOME").unwrap_or_else(|_| "/usr/lib/jvm/java-17-openjdk-amd64".into()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let result: Value = text
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .map(|r| serde_json::from_str(r).unwrap())
            .unwrap_or_else(|| panic!("lookup_flink.py said:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!((result["rows"].as_u64(), result["found"].as_u64()), (Some(a.events), Some(a.events)), "Flink found every user: {result}");
        theirs.push(result["rows_per_s"].as_f64().unwrap());
        println!(
            "  round {}: lookup-join from a file (cold) {:.0} events/s; PyFlink pandas UDF, MGET per batch {:.0} rows/s ({:.1}x); Flink's whole run {:.1} s",
            round + 1,
            ours[round],
            theirs[round],
            ours[round] / theirs[round],
            result["wall_seconds"].as_f64().unwrap_or_default()
        );
    }
    let (o, t) = (median(ours), median(theirs));
    println!("flink (medians of {} rounds, parallelism {}): streamhost {o:.0} events/s, PyFlink {t:.0} rows/s, {:.1}x", a.rounds, a.parallelism, o / t);
}

fn failover(a: &Args) {
    for how in ["KILL", "STOP"] {
        let (a_copy, b_copy) = (redis_server::Redis::start(), redis_server::Redis::start());
        load_tables(a_copy.port);
        load_tables(b_copy.port);
        let pid = a_copy.pid();
        let p = pipeline(a, 200_000, 50_000, cold(&[&a_copy.url, &b_copy.url]));
        let mut at = None;
        let r = run(&p, |stats| {
            std::thread::sleep(Duration::from_secs(1));
            at = Some(stats.events_out());
            assert!(Command::new("kill").arg(format!("-{how}")).arg(pid.to_string()).status().unwrap().success());
        });
        let l = &r.lookup;
        assert_eq!(l.events, 200_000, "no event lost");
        println!(
            "failover, A {} after {} events: every event answered; longest wait {}, p99 {}; {} failovers; A's breaker opened {} times; requests A {} / B {}",
            if how == "KILL" { "killed" } else { "frozen" },
            at.unwrap_or_default(),
            ms(l.latency_max),
            ms(l.latency_p99),
            l.failovers,
            l.copies[0].opened,
            l.copies[0].requests,
            l.copies[1].requests
        );
        if how == "STOP" {
            let _ = Command::new("kill").arg("-CONT").arg(pid.to_string()).status();
        }
    }
}

fn main() {
    let a = args();
    if std::env::args().any(|x| x == "--list") {
        return;
    }
    let wants = |part: &str| a.only.as_deref().is_none_or(|o| o == part);
    if wants("throughput") || wants("latency") || a.only.as_deref() == Some("flink") {
        let server = redis_server::Redis::start();
        load_tables(server.port);
        if wants("throughput") {
            throughput(&a, &server);
        }
        if wants("latency") {
            latency(&a, &server);
        }
        if a.only.as_deref() == Some("flink") {
            flink(&a, &server);
        }
    }
    if wants("failover") {
        failover(&a);
    }
}
