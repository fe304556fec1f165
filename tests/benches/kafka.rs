//! Kafka sources against the alternatives (issue 11, part 5), on a Tansu broker
//! this bench starts on 127.0.0.1 (memory storage; `$STREAMHOST_TANSU`, else
//! where scripts/setup.sh puts it) and stops at its end.
//!
//! ```text
//! cargo bench -p streamhost-tests --bench kafka                                  # defaults below, a few minutes
//! cargo bench -p streamhost-tests --bench kafka -- --events 2000000 --rounds 7
//! cargo bench -p streamhost-tests --bench kafka -- --only pass                   # or --only sjoin
//! cargo bench -p streamhost-tests --bench kafka -- --only sjoin --side kafka --rounds 1   # one side (profilers)
//! cargo test --release -p streamhost-tests --bench kafka -- --events 100000 --join-events 100000 --rounds 2   # quick, reuses the test build
//! ```
//!
//! (Like the other benches, `cargo test --workspace` neither builds nor runs it.)
//!
//! 1. **pass**: Kafka -> null. A topic of `--partitions` (4) partitions is
//!    filled once with `--events` (1,000,000) small JSON records (~90 B),
//!    then, alternating (which side goes first alternates too), `--rounds`
//!    (5) times: (a) a streamhost pipeline, `kafka` source (`stop_at_end`, a
//!    fresh group id each round) -> `null` sink, at `--pass-parallelism` (1)
//!    workers; (b) a plain rdkafka `BaseConsumer` with the settings the source
//!    sets (`enable.partition.eof`, no auto commit, a fresh group), every
//!    partition assigned from its beginning, polled until each reports its
//!    end, each payload read (a byte sum). Both must read every record.
//!    Wall time of each side: from creating the pipeline (or the consumer) to
//!    the end of the run.
//! 2. **sjoin**: the SJoin of tests/benches/sjoin.rs (impressions LEFT JOIN
//!    clicks on `request_id` within 1 h, emitted on window end, RocksDB state,
//!    parallelism 2, a counting probe -> null) on `--join-events` (1,000,000)
//!    impressions and 20/150 as many clicks over `--hours` (4) of event
//!    time, (a) from the two files the generators write, (b) from two topics
//!    of `--join-partitions` (2) partitions each (keyed by `request_id`,
//!    filled once from the same files), alternating. Every run must give each
//!    impression once, and the Kafka runs the same samples as the file runs
//!    (outputs, positives, clicks, and a sum over the samples' request ids
//!    and click counts).
//!
//! Other options: `--partitions N`, `--join-partitions N`, `--pass-parallelism N`,
//! `--hours H`, `--property key=value` (repeatable: a librdkafka consumer
//! setting for the `kafka` sources and the plain consumer alike), `--side
//! streamhost|plain|kafka|files` (one side only, for a profiler),
//! `--unkeyed` (SJoin topics filled round robin without keys, so its events
//! carry no event key, as from files), `--headers` (the `kafka` sources
//! read the records' headers, their default; without it `"headers": false`,
//! as the plain consumer reads only payloads), `--timeline` (pass: records read every
//! 50 ms by each side; how the 1 s stalls of librdkafka's
//! `fetch.queue.backoff.ms` default were found).
//!
//! Reported per round and as medians: input events/s of each side, the
//! ratio streamhost/plain (pass) and kafka/files (sjoin), the CPU seconds
//! of this process and of the broker per run, and the load average.

/// The `streamhost` binary's allocator, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: streamhost::Allocator = streamhost::Allocator;

#[allow(dead_code)]
#[path = "../../host/tests/common/kafka.rs"]
mod broker;

use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use streamhost::event::Event;
use streamhost::runtime::{build_pipeline, BuildOptions};
use streamhost::step::{NativeFn, NativeRegistry};
use streamhost_tests::sjoin::{clicks_of, write_inputs, OUT_OF_ORDERNESS_MS};

use broker::{Broker, Record};

struct Args {
    events: u64,
    partitions: i32,
    rounds: usize,
    pass_parallelism: usize,
    join_events: u64,
    join_partitions: i32,
    hours: f64,
    only: Option<String>,
    /// Extra librdkafka consumer settings, for the source and the plain consumer alike.
    properties: Vec<(String, String)>,
    /// Print how many records each side had read every 50 ms (diagnosis).
    timeline: bool,
    /// Run one side only, `streamhost` or `plain` (pass), `kafka` or `files` (sjoin): for a profiler.
    side: Option<String>,
    /// SJoin topics filled without keys (records spread round robin), so the events carry no key.
    unkeyed: bool,
    /// The sources read the records' headers (their default; the plain
    /// consumer reads only payloads, and nothing here uses headers).
    headers: bool,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let num = |name: &str, default: f64| get(name).map_or(default, |v| v.replace('_', "").parse().unwrap_or_else(|_| panic!("{name} {v}: not a number")));
    let properties = argv
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--property")
        .filter_map(|(i, _)| argv.get(i + 1))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("--property {kv}: not key=value"));
            (k.to_string(), v.to_string())
        })
        .collect();
    Args {
        events: num("--events", 1_000_000.0) as u64,
        partitions: num("--partitions", 4.0) as i32,
        rounds: num("--rounds", 5.0) as usize,
        pass_parallelism: num("--pass-parallelism", 1.0) as usize,
        join_events: num("--join-events", 1_000_000.0) as u64,
        join_partitions: num("--join-partitions", 2.0) as i32,
        hours: num("--hours", 4.0),
        only: get("--only"),
        properties,
        timeline: argv.iter().any(|a| a == "--timeline"),
        side: get("--side"),
        unkeyed: argv.iter().any(|a| a == "--unkeyed"),
        headers: argv.iter().any(|a| a == "--headers"),
    }
}

/// utime + stime of a /proc stat file, in seconds.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One timed run: events read, wall seconds, CPU seconds of this process and of the broker.
#[derive(Clone, Copy, Debug)]
struct Run {
    events: u64,
    secs: f64,
    cpu: f64,
    broker_cpu: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
}

fn timed(broker: &Broker, f: impl FnOnce() -> u64) -> Run {
    let broker_stat = format!("/proc/{}/stat", broker.pid());
    let (cpu0, bcpu0) = (cpu_seconds("/proc/self/stat"), cpu_seconds(&broker_stat));
    let t = Instant::now();
    let events = f();
    let secs = t.elapsed().as_secs_f64();
    Run { events, secs, cpu: cpu_seconds("/proc/self/stat") - cpu0, broker_cpu: cpu_seconds(&broker_stat) - bcpu0 }
}

/// Produces `lines` to `topic`, keyed by `key` of each (or spread over the partitions).
fn fill(broker: &Broker, topic: &str, partitions: i32, lines: impl Iterator<Item = Vec<u8>>, key: impl Fn(&[u8]) -> Option<Vec<u8>>) -> u64 {
    let mut n = 0u64;
    let mut chunk: Vec<Vec<Record>> = vec![Vec::new(); partitions as usize];
    let flush = |chunk: &mut Vec<Vec<Record>>, keyed: bool| {
        if keyed {
            let all: Vec<Record> = chunk.iter_mut().flat_map(std::mem::take).collect();
            broker.produce(topic, &all);
        } else {
            for (p, records) in chunk.iter_mut().enumerate() {
                broker.produce_to(topic, p as i32, &std::mem::take(records));
            }
        }
    };
    let mut keyed = false;
    for value in lines {
        let k = key(&value);
        keyed = k.is_some();
        let p = if keyed { 0 } else { (n % partitions as u64) as usize };
        chunk[p].push(Record { key: k, value, timestamp: None, headers: Vec::new() });
        n += 1;
        if n % 200_000 == 0 {
            flush(&mut chunk, keyed);
        }
    }
    flush(&mut chunk, keyed);
    n
}

/// The `kafka` source's consumer settings.
fn consumer_config(brokers: &str, group: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("group.id", group);
    for (k, v) in streamhost::source::KAFKA_CONSUMER_DEFAULTS {
        c.set(*k, *v);
    }
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// A plain consumer reading every partition of `topic` to its end: the records read.
fn plain_consumer(a: &Args, brokers: &str, topic: &str, partitions: i32, group: &str) -> u64 {
    let consumer: BaseConsumer = consumer_config(brokers, group, &a.properties).create().unwrap();
    // As the source does: the topic's partitions from the broker's metadata, then assigned.
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)).unwrap();
    assert_eq!(meta.topics()[0].partitions().len(), partitions as usize, "partitions of {topic}");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.incremental_assign(&tpl).unwrap();
    let mut at_end = vec![false; partitions as usize];
    let (mut n, mut sum) = (0u64, 0u64);
    let t = Instant::now();
    let mut timeline = Vec::new();
    while !at_end.iter().all(|e| *e) {
        while a.timeline && t.elapsed() >= Duration::from_millis(50 * timeline.len() as u64) {
            timeline.push(n.to_string());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                at_end[m.partition() as usize] = false;
                sum = m.payload().unwrap_or_default().iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => panic!("plain consumer: {e}"),
            None => {}
        }
    }
    std::hint::black_box(sum);
    if a.timeline {
        println!("    plain: {:.3} s; records by 50 ms: {}", t.elapsed().as_secs_f64(), timeline.join(" "));
    }
    n
}

fn kafka_source(a: &Args, brokers: &str, topic: &str, group: &str, extra: serde_json::Value) -> serde_json::Value {
    let properties: serde_json::Map<String, serde_json::Value> = a.properties.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut s = json!({"type": "kafka", "brokers": brokers, "topics": [topic], "group_id": group, "start": "earliest",
                       "stop_at_end": true, "headers": a.headers, "properties": properties});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    s
}

/// A streamhost pipeline `kafka` -> `null`: the records read.
fn streamhost_pass(a: &Args, brokers: &str, topic: &str, group: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = streamhost_tests::write_pipeline(
        dir.path(),
        &json!({
            "sources": {"k": kafka_source(a, brokers, topic, group, json!({}))},
            "sinks": {"null": {"type": "null", "inputs": ["k"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"},
            "settings": {"parallelism": a.pass_parallelism}
        }),
    );
    let loaded = streamhost::config::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let p = build_pipeline(&loaded, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let built = t.elapsed();
    let stats = p.node_stats("null").unwrap();
    let timeline = a.timeline.then(|| sample_timeline(move || stats.events_in()));
    let s = p.run().unwrap_or_else(|e| panic!("{e}"));
    if let Some((stop, h)) = timeline {
        stop.store(1, Relaxed);
        println!("    streamhost: built in {:.3} s, run {:.3} s, total {:.3} s; sink events by 50 ms: {}", built.as_secs_f64(), s.elapsed.as_secs_f64(), t.elapsed().as_secs_f64(), h.join().unwrap());
    }
    assert_eq!(s.dead_lettered, 0, "dead letters in the pass-through run");
    s.node("null").unwrap().events_in
}

/// The sides (0, 1) of round `round` in the order they run: alternating, or
/// only `--side`.
fn sides(a: &Args, round: usize, names: [&str; 2]) -> Vec<usize> {
    let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
    order.into_iter().filter(|&i| a.side.as_deref().is_none_or(|s| s == names[i])).collect()
}

/// The run of the one side that ran, if only one did.
fn one_side(runs: &[Option<Run>; 2]) -> Option<Run> {
    match runs {
        [Some(r), None] | [None, Some(r)] => Some(*r),
        _ => None,
    }
}

/// Samples `count` every 50 ms until told to stop: the counts, as text.
fn sample_timeline(count: impl Fn() -> u64 + Send + 'static) -> (Arc<AtomicU64>, std::thread::JoinHandle<String>) {
    let stop = Arc::new(AtomicU64::new(0));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut out = Vec::new();
        while s.load(Relaxed) == 0 {
            out.push(count().to_string());
            std::thread::sleep(Duration::from_millis(50));
        }
        out.join(" ")
    });
    (stop, h)
}

fn print_rounds(title: &str, names: [&str; 2], runs: &[(Run, Run)], ratio_name: &str) {
    println!("{title}");
    println!("  {:>5} {:>14} {:>14} {:>8}   {:>22} {:>22}", "round", names[0], names[1], ratio_name, format!("{} CPU s (us/broker)", names[0]), format!("{} CPU s (us/broker)", names[1]));
    for (i, (x, y)) in runs.iter().enumerate() {
        println!(
            "  {:>5} {:>12.0}/s {:>12.0}/s {:>8.3}   {:>10.2} / {:<10.2} {:>10.2} / {:<10.2}",
            i + 1,
            x.rate(),
            y.rate(),
            x.rate() / y.rate(),
            x.cpu,
            x.broker_cpu,
            y.cpu,
            y.broker_cpu
        );
    }
    let (mx, my) = (median(runs.iter().map(|r| r.0.rate()).collect()), median(runs.iter().map(|r| r.1.rate()).collect()));
    let mr = median(runs.iter().map(|r| r.0.rate() / r.1.rate()).collect());
    println!("  median {:>10.0}/s {:>12.0}/s   ratio of medians {:.3}, median of per-round ratios {:.3}", mx, my, mx / my, mr);
    println!(
        "RESULT {}",
        json!({"bench": title, names[0]: mx, names[1]: my, "ratio_of_medians": mx / my, "median_ratio": mr, "rounds": runs.len(),
               "per_round": runs.iter().map(|(x, y)| json!([x.rate(), y.rate()])).collect::<Vec<_>>()})
    );
}

fn pass_through(a: &Args, broker: &Broker) {
    let topic = "pass";
    broker.create_topic(topic, a.partitions);
    let t = Instant::now();
    let pad = "x".repeat(40);
    let lines = (0..a.events).map(|i| format!(r#"{{"id":"e{i}","ts":{},"n":{i},"pad":"{pad}"}}"#, 1_700_000_000_000u64 + i).into_bytes());
    let n = fill(broker, topic, a.partitions, lines, |_| None);
    println!("pass: {n} records (~{} B) produced to `{topic}` ({} partitions) in {:.1} s", 70 + pad.len(), a.partitions, t.elapsed().as_secs_f64());
    let mut runs = Vec::new();
    for round in 0..a.rounds {
        let mut sh = None;
        let mut plain = None;
        for side in sides(a, round, ["streamhost", "plain"]) {
            if side == 0 {
                sh = Some(timed(broker, || streamhost_pass(a, &broker.brokers, topic, &format!("bench-streamhost-{round}"))));
            } else {
                plain = Some(timed(broker, || plain_consumer(a, &broker.brokers, topic, a.partitions, &format!("bench-plain-{round}"))));
            }
        }
        if let Some(only) = one_side(&[sh, plain]) {
            assert_eq!(only.events, n, "every record read");
            println!("  round {}: {} {:.0}/s ({:.2} s, CPU {:.2} s, broker {:.2} s), load {}", round + 1, a.side.as_deref().unwrap(), only.rate(), only.secs, only.cpu, only.broker_cpu, loadavg());
            continue;
        }
        let (sh, plain) = (sh.unwrap(), plain.unwrap());
        assert_eq!(sh.events, n, "streamhost read every record");
        assert_eq!(plain.events, n, "the plain consumer read every record");
        println!("  round {}: streamhost {:.0}/s ({:.2} s), plain {:.0}/s ({:.2} s), load {}", round + 1, sh.rate(), sh.secs, plain.rate(), plain.secs, loadavg());
        runs.push((sh, plain));
    }
    if a.side.is_some() {
        return;
    }
    print_rounds(&format!("pass-through, Kafka -> null, {n} records, {} partitions, parallelism {}", a.partitions, a.pass_parallelism), ["streamhost", "plain"], &runs, "sh/plain");
}

/// What the probe after the join saw: outputs, positives, clicks, and a sum
/// over (request index, clicks) of the samples.
#[derive(Default)]
struct Seen {
    outputs: AtomicU64,
    matched: AtomicU64,
    clicks: AtomicU64,
    sum: AtomicU64,
    unparsed: AtomicU64,
}

static REQUEST_ID: std::sync::LazyLock<memchr::memmem::Finder<'static>> = std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"request_id\":\"q"));
static CLICK_COUNT: std::sync::LazyLock<memchr::memmem::Finder<'static>> = std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"click.count\":"));

fn number_after(v: &[u8], field: &memchr::memmem::Finder<'static>) -> Option<u64> {
    let at = field.find(v)? + field.needle().len();
    let digits = v[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&v[at..at + digits]).ok()?.parse().ok()
}

/// The `request_id` of a JSON line (the Kafka key of its record).
fn request_id(v: &[u8]) -> Option<Vec<u8>> {
    let at = memchr::memmem::find(v, b"\"request_id\":\"")? + 14;
    let len = memchr::memchr(b'"', &v[at..])?;
    Some(v[at..at + len].to_vec())
}

fn sjoin_run(sources: serde_json::Value) -> (u64, [u64; 4]) {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let mut natives = NativeRegistry::default();
    {
        let seen = seen.clone();
        natives.register("probe", move || -> NativeFn {
            let seen = seen.clone();
            Box::new(move |e: &Event| {
                seen.outputs.fetch_add(1, Relaxed);
                match (number_after(&e.value, &REQUEST_ID), number_after(&e.value, &CLICK_COUNT)) {
                    (Some(j), Some(c)) => {
                        if c > 0 {
                            seen.matched.fetch_add(1, Relaxed);
                            seen.clicks.fetch_add(c, Relaxed);
                        }
                        seen.sum.fetch_add(j.wrapping_mul(c + 1), Relaxed);
                    }
                    _ => {
                        seen.unparsed.fetch_add(1, Relaxed);
                    }
                }
                Ok(vec![e.clone()])
            })
        });
    }
    let (steps, sinks) = streamhost_tests::sjoin::join_steps_and_sink("probe");
    let path = streamhost_tests::write_pipeline(
        dir.path(),
        &json!({
            "name": "sjoin-kafka-bench",
            "sources": sources,
            "steps": steps,
            "sinks": sinks,
            "dead_letter": {"type": "file", "path": "dead.jsonl"},
            "settings": {"parallelism": 2, "state": {
                "backend": "rocksdb", "dir": dir.path().join("state"),
                "rocksdb": {"block_cache_mb": 32, "write_buffer_mb": 32}
            }}
        }),
    );
    let loaded = streamhost::config::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"));
    let s = build_pipeline(&loaded, BuildOptions { natives, ..Default::default() }).and_then(|p| p.run()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.dead_lettered, 0, "dead letters (late events?) in the sjoin run");
    assert_eq!(seen.unparsed.load(Relaxed), 0, "outputs without a request id or click count");
    let input = s.node("imp").unwrap().events_out + s.node("clk").unwrap().events_out;
    (input, [seen.outputs.load(Relaxed), seen.matched.load(Relaxed), seen.clicks.load(Relaxed), seen.sum.load(Relaxed)])
}

fn read_lines(path: &Path) -> impl Iterator<Item = Vec<u8>> {
    std::io::BufReader::new(std::fs::File::open(path).unwrap()).split(b'\n').map(Result::unwrap).filter(|l| !l.is_empty())
}

fn sjoin(a: &Args, broker: &Broker) {
    let files = tempfile::tempdir().unwrap();
    let t = Instant::now();
    write_inputs(a.join_events, a.hours, files.path());
    let (imp_file, clk_file) = (files.path().join("impressions.jsonl"), files.path().join("clicks.jsonl"));
    println!("sjoin: {} impressions + {} clicks over {} h written to files in {:.1} s", a.join_events, clicks_of(a.join_events), a.hours, t.elapsed().as_secs_f64());
    let t = Instant::now();
    for (topic, file) in [("impressions", &imp_file), ("clicks", &clk_file)] {
        broker.create_topic(topic, a.join_partitions);
        let n = fill(broker, topic, a.join_partitions, read_lines(file), |v| (!a.unkeyed).then(|| request_id(v).expect("a request_id")));
        println!("  {n} records produced to `{topic}` ({} partitions, {})", a.join_partitions, if a.unkeyed { "unkeyed, round robin" } else { "keyed by request_id" });
    }
    println!("  topics filled in {:.1} s", t.elapsed().as_secs_f64());
    let ts = json!({"timestamp_field": "ts", "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS});
    let file_sources = json!({
        "imp": {"type": "file", "path": imp_file, "timestamp_field": "ts", "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS},
        "clk": {"type": "file", "path": clk_file, "timestamp_field": "ts", "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS}
    });
    let expected_input = a.join_events + clicks_of(a.join_events);
    let mut runs = Vec::new();
    let mut reference: Option<[u64; 4]> = None;
    for round in 0..a.rounds {
        let mut kafka = None;
        let mut file = None;
        for side in sides(a, round, ["kafka", "files"]) {
            let mut out = [0; 4];
            let run = if side == 0 {
                let sources = json!({
                    "imp": kafka_source(a, &broker.brokers, "impressions", &format!("bench-sjoin-imp-{round}"), ts.clone()),
                    "clk": kafka_source(a, &broker.brokers, "clicks", &format!("bench-sjoin-clk-{round}"), ts.clone())
                });
                timed(broker, || {
                    let (n, o) = sjoin_run(sources);
                    out = o;
                    n
                })
            } else {
                timed(broker, || {
                    let (n, o) = sjoin_run(file_sources.clone());
                    out = o;
                    n
                })
            };
            assert_eq!(run.events, expected_input, "every input read");
            assert_eq!(out[0], a.join_events, "every impression comes out once");
            match &reference {
                None => reference = Some(out),
                Some(r) => assert_eq!(&out, r, "the same samples from {} (outputs, positives, clicks, sum)", ["kafka", "files"][side]),
            }
            if side == 0 {
                kafka = Some(run);
            } else {
                file = Some(run);
            }
        }
        if let Some(only) = one_side(&[kafka, file]) {
            println!("  round {}: {} {:.0}/s ({:.2} s, CPU {:.2} s, broker {:.2} s), load {}", round + 1, a.side.as_deref().unwrap(), only.rate(), only.secs, only.cpu, only.broker_cpu, loadavg());
            continue;
        }
        let (kafka, file) = (kafka.unwrap(), file.unwrap());
        println!("  round {}: kafka {:.0}/s ({:.2} s), files {:.0}/s ({:.2} s), load {}", round + 1, kafka.rate(), kafka.secs, file.rate(), file.secs, loadavg());
        runs.push((kafka, file));
    }
    let r = reference.unwrap();
    if a.side.is_some() {
        return;
    }
    println!("  samples (every run): {} outputs, {} positives, {} clicks joined", r[0], r[1], r[2]);
    print_rounds(
        &format!("sjoin, parallelism 2, rocksdb, {} impressions + {} clicks, {} partitions a topic", a.join_events, clicks_of(a.join_events), a.join_partitions),
        ["kafka", "files"],
        &runs,
        "kafka/files",
    );
}

fn main() {
    let a = parse_args();
    println!("load average at start: {}", loadavg());
    let broker = Broker::start();
    println!("Tansu on {}; librdkafka extra properties: {:?}", broker.brokers, a.properties);
    if a.only.as_deref().is_none_or(|o| o == "pass") {
        pass_through(&a, &broker);
    }
    if a.only.as_deref().is_none_or(|o| o == "sjoin") {
        sjoin(&a, &broker);
    }
    println!("load average at end: {}", loadavg());
}
