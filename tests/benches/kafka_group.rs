//! The SJoin scaled out over a consumer group (`settings.scale_out`, issue
//! 11 part 5): the same join from two Kafka topics run by one process and by
//! two processes of one group, alternating, on a Tansu broker this bench
//! starts on 127.0.0.1 and stops. On 2 cores this measures the mechanism
//! (group join, partition split, per-process state), not a speed-up.
//!
//! ```text
//! cargo bench -p streamhost-tests --bench kafka_group
//! cargo bench -p streamhost-tests --bench kafka_group -- --events 600000 --rounds 3
//! ```
//!
//! Inputs: the SJoin bench's (tests/support/sjoin.rs): `--events` (300,000)
//! impressions over 4 h of event time and 20/150 as many clicks, keyed by
//! request_id into `--partitions` (4) partitions of `feed` and `click`, then
//! one record far ahead per partition so every window closes. Each run: a
//! fresh group, checkpoint directory and output topic; the processes (this
//! binary re-run with `--member`, each calling `run_in_group`, parallelism
//! 1 each) run until the output topic holds a sample for every impression;
//! the time is from starting the processes to that point (the group's first
//! rounds included), events/s = (impressions + clicks) / time.

#[global_allocator]
static ALLOCATOR: streamhost::Allocator = streamhost::Allocator;

#[allow(dead_code)]
#[path = "../../host/tests/common/kafka.rs"]
mod broker;

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect("a number"))
}

/// A group member: runs the pipeline until its stdin closes.
fn member(pipeline: &Path, instance: &str) {
    let p = streamhost::config::load_pipeline(pipeline).unwrap_or_else(|e| panic!("{e}"));
    let stop = streamhost::runtime::StopHandle::new();
    let on_close = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        on_close.stop();
    });
    streamhost::runtime::run_in_group(&p, Default::default(), instance, stop).expect("the group run");
}

fn pipeline(brokers: &str, group: &str, out: &str) -> serde_json::Value {
    let source = |topic: &str| {
        json!({ "type": "kafka", "brokers": brokers, "topics": [topic], "group_id": group, "timestamp_field": "ts",
                "max_out_of_orderness_ms": streamhost_tests::sjoin::OUT_OF_ORDERNESS_MS, "properties": { "session.timeout.ms": "6000", "heartbeat.interval.ms": "500" } })
    };
    json!({
        "sources": { "impressions": source("feed"), "clicks": source("click") },
        "steps": { "samples": { "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": 3_600_000 }, "mode": "left" } },
        "sinks": { "samples": { "type": "kafka", "inputs": ["samples"], "brokers": brokers, "topic": out, "key": "$.request_id" } },
        "dead_letter": { "type": "file", "path": "dead-letter.jsonl" },
        "settings": { "parallelism": 1, "checkpoint": { "interval_ms": 10_000, "dir": "shared" }, "scale_out": {} }
    })
}

/// Waits until `topic` holds a sample for each of `want` impressions.
fn wait_for_samples(brokers: &str, topic: &str, partitions: i32, want: usize, limit: Duration) -> usize {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "bench-reader").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut ids = HashSet::new();
    let until = Instant::now() + limit;
    while ids.len() < want && Instant::now() < until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(k) = m.key() {
                ids.insert(k.to_vec());
            }
        }
    }
    ids.len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--member") {
        return member(Path::new(&args[i + 1]), &args[i + 2]);
    }
    let (events, partitions, rounds) = (arg(&args, "--events", 300_000), arg(&args, "--partitions", 4) as i32, arg(&args, "--rounds", 3));
    let dir = tempfile::tempdir().unwrap();
    streamhost_tests::sjoin::write_inputs(events as u64, 4.0, dir.path());
    let lines = events + streamhost_tests::sjoin::clicks_of(events as u64) as usize;
    let broker = broker::Broker::start();
    for t in ["feed", "click"] {
        broker.create_topic(t, partitions);
    }
    broker.produce("feed", &broker::keyed_records(&dir.path().join("impressions.jsonl")));
    broker.produce("click", &broker::keyed_records(&dir.path().join("clicks.jsonl")));
    let end = streamhost::source::BASE_TIME_MS + 1000 * 3_600_000;
    for p in 0..partitions {
        let marker = |id: String| broker::Record { key: Some(id.clone().into_bytes()), timestamp: Some(end), value: json!({"ts": end, "request_id": id}).to_string().into_bytes(), headers: vec![] };
        broker.produce_to("feed", p, &[marker(format!("end-{p}"))]);
        broker.produce_to("click", p, &[marker(format!("end-{p}"))]);
    }
    println!("{events} impressions, {} input records in all, {partitions} partitions a topic; load {}", lines, std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    let exe = std::env::current_exe().unwrap();
    let mut per: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order: [usize; 2] = if round % 2 == 0 { [1, 2] } else { [2, 1] };
        for processes in order {
            let name = format!("r{round}-p{processes}");
            let out = format!("samples-{name}");
            broker.create_topic(&out, partitions);
            let run = dir.path().join(&name);
            std::fs::create_dir_all(&run).unwrap();
            let path = run.join("pipeline.json");
            std::fs::write(&path, pipeline(&broker.brokers, &format!("g-{name}"), &out).to_string()).unwrap();
            let started = Instant::now();
            let mut children: Vec<_> = (0..processes)
                .map(|i| {
                    Command::new(&exe)
                        .args(["--member", path.to_str().unwrap(), &format!("m{i}")])
                        .env("STREAMHOST_LOG", "warn")
                        .stdin(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let got = wait_for_samples(&broker.brokers, &out, partitions, events, Duration::from_secs(600));
            let took = started.elapsed().as_secs_f64();
            for c in &mut children {
                drop(c.stdin.take());
            }
            for c in &mut children {
                c.wait().unwrap();
            }
            assert_eq!(got, events, "{name}: every impression's sample");
            let rate = lines as f64 / took;
            println!("round {round}: {processes} process(es): {took:.1} s, {rate:.0} events/s");
            per[processes - 1].push(rate);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, two) = (median(per[0].clone()), median(per[1].clone()));
    println!("median: 1 process {one:.0} events/s, 2 processes {two:.0} events/s: 2/1 = {:.2}x", two / one);
}
