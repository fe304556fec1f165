//! `GET /metrics` and `streamhost top` against a `streamhost run` process:
//! a stdin source the test feeds with known records (known event times), a
//! file source, a plugin step built from source that traps and errs on
//! request, a window join and checkpoints. Counts are asserted exactly, lags
//! against the known event times and the moments around the scrape.

mod common;
#[path = "common/kafka.rs"]
#[allow(dead_code)]
mod kafka;
#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{build, streamhost};
use serde_json::json;
use streamhost::config::WorldName;
use streamhost::swap::AdminClient;

/// One scrape, parsed here (independently of the host's own parser), with
/// the wall clock just before and just after it.
struct Scrape {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
    before_ms: i64,
    after_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

impl Scrape {
    fn take(client: &AdminClient) -> Scrape {
        let before_ms = now_ms();
        let text = client.metrics().expect("GET /metrics");
        let after_ms = now_ms();
        let mut series = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            let (name, labels) = match head.split_once('{') {
                None => (head.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("labels of {line}"));
                    // The test's label values hold no quotes or commas.
                    let labels = body
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap();
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            series.push((name, labels, value.parse::<f64>().unwrap_or_else(|_| panic!("value of {line}"))));
        }
        Scrape { series, before_ms, after_ms }
    }

    /// The one series `name` with `labels` among its labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .series
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {} series", found.len());
        found.first().copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no series {name} {labels:?}"))
    }

    /// Every series carries the pipeline's name.
    fn check_pipeline_label(&self, pipeline: &str) {
        for (n, l, _) in &self.series {
            assert_eq!(l.get("pipeline").map(String::as_str), Some(pipeline), "{n} {l:?}");
        }
    }
}

/// Scrapes until `done` holds (30 s at most).
fn scrape_until(client: &AdminClient, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let s = Scrape::take(client);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(path: &Path) {
    let until = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < until, "no {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child if the test fails half way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CLICKS: usize = 5;
const IMPRESSIONS: i64 = 20;
/// Out-of-orderness of the impressions' source, and the join's window end.
const OOO_MS: i64 = 1000;
const WINDOW_MS: i64 = 2000;

#[test]
fn a_running_pipeline_reports_exact_counts_lags_dead_letters_plugins_joins_and_checkpoints() {
    let started_ms = now_ms();
    let dir = tempfile::tempdir().unwrap();
    let wasm = build("tests/plugins/hostile", WorldName::Transform);
    // Event times ten minutes ago, one impression a second.
    let base = now_ms() - 600_000;
    let click_lines: Vec<String> = (0..CLICKS).map(|i| format!(r#"{{"ts":{},"request_id":"r{i}","click":true}}"#, base + i as i64 * 1000 + 500)).collect();
    std::fs::write(dir.path().join("clicks.jsonl"), click_lines.join("\n") + "\n").unwrap();
    let pipeline = json!({
        "name": "metrics-test",
        "plugins": { "h": { "path": wasm } },
        "sources": {
            "imps": { "type": "stdin", "timestamp_field": "ts", "max_out_of_orderness_ms": OOO_MS },
            "clicks": { "type": "file", "path": "clicks.jsonl", "timestamp_field": "ts" }
        },
        "steps": {
            "clean": { "type": "transform", "plugin": "h", "inputs": ["imps"] },
            "join": { "type": "window-join", "inputs": ["clean", "clicks"],
                "keys": { "clean": "$.request_id", "clicks": "$.request_id" },
                "window": { "start_ms": 0, "end_ms": WINDOW_MS }, "mode": "left" }
        },
        "sinks": { "out": { "type": "file", "path": "out/samples.jsonl", "inputs": ["join"] } },
        "dead_letter": { "type": "file", "path": "out/dead-letter.jsonl" },
        "settings": { "parallelism": 1, "batch_linger_ms": 100, "state": { "dir": "out/state" },
            "checkpoint": { "interval_ms": 100, "dir": "out/checkpoints" }, "admin": {} }
    });
    let path = common::write_pipeline(dir.path(), &pipeline);
    let child = streamhost().args(["run", "--no-progress"]).arg(&path).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut run = Running(child);
    wait_for_file(&dir.path().join("admin.addr"));
    let client = AdminClient::new(std::fs::read_to_string(dir.path().join("admin.addr")).unwrap().trim(), None);
    let version = client.list().unwrap().plugins[0].current.hash[..12].to_string();

    // The clicks first: then none of them can be late for the impressions' watermark.
    // (Exhausted: its end follows its batch, and then it lags by nothing.)
    let s = scrape_until(&client, "the clicks", |s| {
        s.get("streamhost_step_events_in_total", &[("step", "join")]) == Some(CLICKS as f64)
            && s.get("streamhost_source_watermark_lag_seconds", &[("source", "clicks")]) == Some(0.0)
    });
    s.check_pipeline_label("metrics-test");
    assert_eq!(s.value("streamhost_up", &[]), 1.0);
    let start = s.value("streamhost_start_time_seconds", &[]) * 1e3;
    assert!((started_ms as f64 - 1e3..=s.after_ms as f64).contains(&start), "start time {start}");
    assert_eq!(s.value("streamhost_source_events_total", &[("source", "clicks")]), CLICKS as f64);
    let click_bytes: usize = click_lines.iter().map(String::len).sum();
    assert_eq!(s.value("streamhost_source_bytes_total", &[("source", "clicks")]), click_bytes as f64);
    assert_eq!(s.value("streamhost_source_watermark_lag_seconds", &[("source", "clicks")]), 0.0, "an exhausted source lags by nothing");
    assert_eq!(s.get("streamhost_source_watermark_lag_seconds", &[("source", "imps")]), None, "no watermark yet: no lag");
    assert_eq!(s.value("streamhost_source_last_event_timestamp_seconds", &[("source", "imps")]), 0.0);

    // The impressions: a malformed line, one the plugin traps on, one it
    // refuses, then r0..r19 one second apart.
    let mut lines = vec!["{not json".to_string()];
    lines.push(format!(r#"{{"do":"panic","ts":{},"request_id":"p"}}"#, base + 500));
    lines.push(format!(r#"{{"do":"error","ts":{},"request_id":"e"}}"#, base + 600));
    lines.extend((0..IMPRESSIONS).map(|i| format!(r#"{{"do":"ok","ts":{},"request_id":"r{i}"}}"#, base + i * 1000)));
    let last_ts = base + (IMPRESSIONS - 1) * 1000;
    let watermark = last_ts - OOO_MS - 1;
    let mut stdin = run.0.stdin.take().unwrap();
    let written_ms = now_ms();
    stdin.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    stdin.flush().unwrap();

    // Main events fire once the watermark passes their window's end.
    let fired = (0..IMPRESSIONS).filter(|i| base + i * 1000 + WINDOW_MS <= watermark).count() as f64;
    let samples_path = dir.path().join("out/samples.jsonl");
    let s = scrape_until(&client, "the impressions through the join", |s| {
        s.get("streamhost_sink_events_total", &[("sink", "out")]) == Some(fired) && common::lines(&samples_path).len() == fired as usize
    });
    let imps = [("source", "imps")];
    assert_eq!(s.value("streamhost_source_events_total", &imps), lines.len() as f64, "every line read, the malformed one too");
    let line_bytes: usize = lines.iter().map(String::len).sum();
    assert_eq!(s.value("streamhost_source_bytes_total", &imps), line_bytes as f64);
    let secs = |ms: i64| ms as f64 / 1e3;
    let lag = s.value("streamhost_source_watermark_lag_seconds", &imps);
    assert!((secs(s.before_ms - watermark)..=secs(s.after_ms - watermark)).contains(&lag), "watermark lag {lag}, watermark {watermark}, scraped in [{}, {}]", s.before_ms, s.after_ms);
    let emit_lag = s.value("streamhost_source_event_time_lag_seconds", &imps);
    assert!((secs(written_ms - last_ts)..=secs(s.after_ms - last_ts)).contains(&emit_lag), "event-time lag {emit_lag}");
    let last = s.value("streamhost_source_last_event_timestamp_seconds", &imps) * 1e3;
    assert!((written_ms as f64..=s.after_ms as f64).contains(&last), "last event at {last}");
    assert!(s.value("streamhost_source_blocked_seconds_total", &imps) >= 0.0);

    // Steps, per worker: `clean` is stage 0, the join (keyed, after a step) stage 1.
    let clean = [("step", "clean"), ("worker", "0.0")];
    let join = [("step", "join"), ("worker", "1.0")];
    assert_eq!(s.value("streamhost_step_events_in_total", &clean), (lines.len() - 1) as f64);
    assert_eq!(s.value("streamhost_step_events_out_total", &clean), IMPRESSIONS as f64);
    assert_eq!(s.value("streamhost_step_events_in_total", &join), (IMPRESSIONS as usize + CLICKS) as f64);
    assert_eq!(s.value("streamhost_step_events_out_total", &join), fired);
    assert_eq!(s.value("streamhost_step_dead_letters_total", &[("step", "clean")]), 2.0);
    assert!(s.value("streamhost_step_batch_duration_seconds_count", &clean) >= 1.0);
    assert!(s.value("streamhost_step_batch_duration_seconds_sum", &clean) > 0.0);
    let clean_lag = s.value("streamhost_step_watermark_lag_seconds", &clean);
    assert!((secs(s.before_ms - watermark)..=secs(s.after_ms - watermark)).contains(&clean_lag), "a stateless step passes the watermark on: {clean_lag}");
    let join_lag = s.value("streamhost_step_watermark_lag_seconds", &join);
    assert!(join_lag >= secs(s.before_ms - watermark), "the join holds its watermark before what it holds: {join_lag}");
    let imp_bytes: usize = lines[3..].iter().map(String::len).sum();
    assert_eq!(s.value("streamhost_step_bytes_out_total", &clean), imp_bytes as f64, "the plugin echoes the ok records");
    for w in ["0.0", "1.0"] {
        assert!(s.value("streamhost_worker_busy_seconds_total", &[("worker", w)]) > 0.0, "worker {w} busy");
        assert!(s.value("streamhost_worker_blocked_seconds_total", &[("worker", w)]) >= 0.0);
    }

    // The join: what fired, what it holds, what matched (clicks on r0..r4, all fired).
    assert_eq!(s.value("streamhost_window_join_fired_total", &join), fired);
    assert_eq!(s.value("streamhost_window_join_held_events", &join), IMPRESSIONS as f64 - fired);
    assert_eq!(s.value("streamhost_window_join_matched_total", &join), CLICKS as f64);
    assert_eq!(s.value("streamhost_window_join_late_total", &join), 0.0);

    // The sink: its bytes are its file's, without the newlines (no keys).
    let written = std::fs::read(&samples_path).unwrap();
    assert_eq!(s.value("streamhost_sink_bytes_total", &[("sink", "out")]), (written.len() - fired as usize) as f64);

    // Dead letters by kind, every kind present.
    let dead = |s: &Scrape, kind: &str| s.value("streamhost_dead_letters_total", &[("kind", kind)]);
    assert_eq!((dead(&s, "malformed"), dead(&s, "plugin-trap"), dead(&s, "plugin-error"), dead(&s, "late")), (1.0, 1.0, 1.0, 0.0));
    assert_eq!(dead(&s, "schema") + dead(&s, "plugin-timeout") + dead(&s, "lookup-miss"), 0.0);

    // The plugin, by version and step.
    let h = [("plugin", "h"), ("version", version.as_str()), ("step", "clean")];
    assert_eq!(s.value("streamhost_plugin_traps_total", &h), 1.0);
    assert_eq!(s.value("streamhost_plugin_errors_total", &h), 1.0);
    // The batch's call trapped, then (isolation) the first input alone, the culprit: two rebuilds.
    assert_eq!(s.value("streamhost_plugin_rebuilds_total", &h), 2.0, "an instance rebuilt after each trapped call");
    assert_eq!(s.value("streamhost_plugin_timeouts_total", &h), 0.0);
    assert_eq!(s.value("streamhost_plugin_events_in_total", &h), (lines.len() - 1) as f64);
    assert!(s.value("streamhost_plugin_calls_total", &h) >= 2.0, "the batch, then the calls isolating the trap");
    assert!(s.value("streamhost_plugin_call_seconds_total", &h) > 0.0);
    assert!(s.value("streamhost_plugin_memory_bytes", &h) >= 65536.0, "at least a wasm page");
    assert_eq!(s.value("streamhost_plugin_version_info", &[("plugin", "h"), ("role", "current")]), 1.0);

    // A late impression, once the watermark is known: refused by the join.
    writeln!(stdin, r#"{{"do":"ok","ts":{},"request_id":"late"}}"#, base - 100_000).unwrap();
    stdin.flush().unwrap();
    let s = scrape_until(&client, "the late impression", |s| s.get("streamhost_dead_letters_total", &[("kind", "late")]) == Some(1.0));
    assert_eq!(s.value("streamhost_window_join_late_total", &join), 1.0);
    assert_eq!(s.value("streamhost_step_dead_letters_total", &[("step", "join")]), 1.0);
    assert_eq!(s.value("streamhost_step_events_in_total", &join), (IMPRESSIONS as usize + CLICKS + 1) as f64);
    assert_eq!(s.value("streamhost_window_join_held_events", &join), IMPRESSIONS as f64 - fired, "a late event is not held");

    // Checkpoints every 100 ms: counted, timed, sized, and recent.
    let s = scrape_until(&client, "two checkpoints", |s| s.get("streamhost_checkpoints_total", &[("outcome", "ok")]).is_some_and(|n| n >= 2.0));
    let ok = s.value("streamhost_checkpoints_total", &[("outcome", "ok")]);
    let timed = s.value("streamhost_checkpoint_duration_seconds_count", &[]);
    assert!(timed == ok || timed == ok + 1.0, "{timed} durations for {ok} checkpoints");
    assert_eq!(s.value("streamhost_checkpoints_total", &[("outcome", "failed")]), 0.0);
    assert!(s.value("streamhost_checkpoint_size_bytes", &[]) > 0.0);
    let last = s.value("streamhost_checkpoint_last_success_timestamp_seconds", &[]) * 1e3;
    assert!((started_ms as f64..=s.after_ms as f64).contains(&last), "last checkpoint at {last}");
    let state = [("step", "join"), ("worker", "1.0")];
    assert!(s.value("streamhost_state_size_bytes", &state) > 0.0, "sampled at checkpoints");
    assert!(s.value("streamhost_state_keys", &state) > 0.0);
    assert_eq!(s.get("streamhost_state_size_bytes", &[("worker", "0.0")]), None, "stage 0 has no state");

    // `streamhost top --once`: the same figures as a table.
    let top = streamhost().args(["top", "--once", "--interval-ms", "200", "--pipeline"]).arg(&path).output().unwrap();
    let table = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{table}{}", String::from_utf8_lossy(&top.stderr));
    assert!(table.starts_with("pipeline metrics-test"), "{table}");
    let row = |first: &str| -> Vec<String> {
        let line = table.lines().find(|l| l.split_whitespace().next() == Some(first)).unwrap_or_else(|| panic!("no row {first} in\n{table}"));
        line.split_whitespace().map(String::from).collect()
    };
    // STEP workers in/s out/s in out ...
    let clean_row = row("clean");
    assert_eq!((clean_row[1].as_str(), clean_row[4].as_str(), clean_row[5].as_str()), ("1", "23", "21"), "{table}");
    assert_eq!(row("imps")[3], (lines.len() + 1).to_string(), "{table}");
    let join_row = row("join");
    assert_eq!(join_row[5], fired.to_string(), "{table}");
    // WINDOW JOIN held fired matched late (the second `join` row).
    let join_rows: Vec<&str> = table.lines().filter(|l| l.starts_with("join ")).collect();
    let held: Vec<String> = join_rows.last().unwrap().split_whitespace().skip(1).map(String::from).collect();
    assert_eq!(held, [(IMPRESSIONS - fired as i64).to_string(), fired.to_string(), CLICKS.to_string(), "1".into()], "{table}");
    assert!(table.contains("dead letters: late 1, malformed 1, plugin-error 1, plugin-trap 1\n"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("h ") && l.contains(&version) && l.contains("clean")), "{table}");
    assert!(table.contains("checkpoints: ") && !table.contains("checkpoints: none"), "{table}");

    // Closing stdin ends the run: everything fires.
    drop(stdin);
    let status = run.0.wait().unwrap();
    let mut summary = String::new();
    std::io::Read::read_to_string(&mut run.0.stderr.take().unwrap(), &mut summary).unwrap();
    assert!(status.success(), "{summary}");
    assert_eq!(common::lines(&samples_path).len(), IMPRESSIONS as usize, "{summary}");
}

#[test]
fn metrics_can_be_turned_off_and_the_admin_api_then_answers_404() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = json!({
        "sources": { "in": { "type": "stdin" } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["in"] } },
        "settings": { "batch_linger_ms": 5, "admin": {}, "metrics": { "enabled": false } }
    });
    let path = common::write_pipeline(dir.path(), &pipeline);
    let child = streamhost().args(["run", "--no-progress"]).arg(&path).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut run = Running(child);
    wait_for_file(&dir.path().join("admin.addr"));
    let client = AdminClient::new(std::fs::read_to_string(dir.path().join("admin.addr")).unwrap().trim(), None);
    match client.metrics() {
        Err(streamhost::swap::ClientError::Api { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("settings.metrics.enabled"), "{message}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    let top = streamhost().args(["top", "--once", "--pipeline"]).arg(&path).output().unwrap();
    assert!(!top.status.success());
    assert!(String::from_utf8_lossy(&top.stderr).contains("HTTP 404"), "{}", String::from_utf8_lossy(&top.stderr));
    let mut stdin = run.0.stdin.take().unwrap();
    writeln!(stdin, r#"{{"a":1}}"#).unwrap();
    drop(stdin);
    let status = run.0.wait().unwrap();
    let mut summary = String::new();
    std::io::Read::read_to_string(&mut run.0.stderr.take().unwrap(), &mut summary).unwrap();
    assert!(status.success(), "{summary}");
    assert!(summary.contains("out rate"), "the summary's counts are kept: {summary}");
    assert_eq!(common::lines(&dir.path().join("out.jsonl")).len(), 1);
}

/// A Kafka source's figures by partition: records read counted exactly per
/// partition, and its position against the broker's high watermark (from
/// librdkafka's statistics) caught up, also after more records arrive.
#[test]
fn a_kafka_source_reports_records_offsets_and_lag_by_partition() {
    let broker = kafka::Broker::start();
    broker.create_topic("views", 2);
    let records = |n: usize, from: usize| -> Vec<kafka::Record> {
        (from..from + n).map(|i| kafka::Record { key: None, value: format!(r#"{{"i":{i}}}"#).into_bytes(), timestamp: None, headers: Vec::new() }).collect()
    };
    broker.produce_to("views", 0, &records(30, 0));
    broker.produce_to("views", 1, &records(20, 30));
    let dir = tempfile::tempdir().unwrap();
    let pipeline = json!({
        "name": "views-job",
        "sources": { "views": { "type": "kafka", "brokers": broker.brokers, "topics": ["views"], "group_id": "metrics-test" } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["views"] } },
        "settings": { "batch_linger_ms": 5, "admin": {} }
    });
    let path = common::write_pipeline(dir.path(), &pipeline);
    let child = streamhost().args(["run", "--no-progress"]).arg(&path).stderr(Stdio::piped()).spawn().unwrap();
    let _run = Running(child);
    wait_for_file(&dir.path().join("admin.addr"));
    let client = AdminClient::new(std::fs::read_to_string(dir.path().join("admin.addr")).unwrap().trim(), None);
    let at = |p: &'static str| [("source", "views"), ("topic", "views"), ("partition", p)];
    let caught_up = |s: &Scrape, p: &'static str, n: f64| {
        s.get("streamhost_kafka_partition_records_total", &at(p)) == Some(n)
            && s.get("streamhost_kafka_partition_high_watermark", &at(p)) == Some(n)
            && s.get("streamhost_kafka_partition_next_offset", &at(p)) == Some(n)
    };
    let s = scrape_until(&client, "both partitions read and their positions known", |s| caught_up(s, "0", 30.0) && caught_up(s, "1", 20.0));
    s.check_pipeline_label("views-job");
    assert_eq!(s.value("streamhost_kafka_partition_lag_records", &at("0")), 0.0);
    assert_eq!(s.value("streamhost_kafka_partition_lag_records", &at("1")), 0.0);
    assert_eq!(s.value("streamhost_source_events_total", &[("source", "views")]), 50.0);

    broker.produce_to("views", 1, &records(15, 50));
    let s = scrape_until(&client, "the new records of partition 1", |s| caught_up(s, "1", 35.0));
    assert_eq!(s.value("streamhost_kafka_partition_records_total", &at("0")), 30.0, "partition 0 read nothing more");
    assert_eq!(s.value("streamhost_kafka_partition_lag_records", &at("1")), 0.0);
    assert_eq!(s.value("streamhost_source_events_total", &[("source", "views")]), 65.0);
    let top = streamhost().args(["top", "--once", "--interval-ms", "200", "--pipeline"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    let row = text.lines().find(|l| l.starts_with("views ")).unwrap_or_else(|| panic!("no row of the source:\n{text}"));
    assert!(text.contains("kafka lag") && row.trim_end().ends_with(" 0"), "the sources' table shows the Kafka lag:\n{text}");
}

/// A lookup join on two copies of a table (two redis-servers): keys,
/// results and the cache counted exactly, requests per table, breakers per copy.
#[test]
fn lookups_report_their_cache_results_requests_and_breakers() {
    let (a, b) = (redis_server::Redis::start(), redis_server::Redis::start());
    for r in [&a, &b] {
        r.set_all((1..=3).map(|i| (format!("user:{i}"), format!(r#"{{"age":{i}}}"#))));
    }
    let dir = tempfile::tempdir().unwrap();
    let pipeline = json!({
        "name": "lookups",
        "sources": { "in": { "type": "stdin" } },
        "steps": { "users": { "type": "lookup-join", "inputs": ["in"], "key": "$.uid", "key_template": "user:{}",
            "backends": [{ "type": "redis", "url": a.url }, { "type": "redis", "url": b.url }], "prefix": "user_" } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["users"] } },
        "settings": { "parallelism": 1, "batch_linger_ms": 5, "admin": {} }
    });
    let path = common::write_pipeline(dir.path(), &pipeline);
    let child = streamhost().args(["run", "--no-progress"]).arg(&path).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut run = Running(child);
    wait_for_file(&dir.path().join("admin.addr"));
    let client = AdminClient::new(std::fs::read_to_string(dir.path().join("admin.addr")).unwrap().trim(), None);
    let mut stdin = run.0.stdin.take().unwrap();
    // Keys 1, 2, 3 are in the table, 4 is not; one event has no key.
    for uid in ["1", "2", "1", "3", "4", "1"] {
        writeln!(stdin, r#"{{"uid":"{uid}"}}"#).unwrap();
    }
    writeln!(stdin, r#"{{"other":1}}"#).unwrap();
    stdin.flush().unwrap();
    let step = [("step", "users")];
    let result = |s: &Scrape, r: &str| s.value("streamhost_lookup_events_total", &[("step", "users"), ("result", r)]);
    let s = scrape_until(&client, "the lookups", |s| s.get("streamhost_sink_events_total", &[("sink", "out")]) == Some(7.0));
    assert_eq!((result(&s, "found"), result(&s, "missing"), result(&s, "no-key"), result(&s, "unavailable")), (5.0, 1.0, 1.0, 0.0));
    let (hits, misses) = (s.value("streamhost_lookup_cache_hits_total", &step), s.value("streamhost_lookup_cache_misses_total", &step));
    assert_eq!(hits + misses, 6.0, "every key looked up once: in the cache or not");
    let asked = s.value("streamhost_lookup_keys_asked_total", &step);
    assert!((4.0..=6.0).contains(&asked), "four distinct keys, each asked at least once: {asked}");
    let table = s.series.iter().find(|(n, _, _)| n == "streamhost_lookup_requests_total").map(|(_, l, _)| l["table"].clone()).expect("the table's requests");
    let t = [("table", table.as_str())];
    let requests = s.value("streamhost_lookup_requests_total", &t);
    assert!(requests >= 1.0);
    assert_eq!(s.value("streamhost_lookup_keys_requested_total", &t), asked, "one step on the table: its keys are the table's");
    let per_copy: f64 = s.series.iter().filter(|(n, _, _)| n == "streamhost_lookup_backend_requests_total").map(|(_, _, v)| v).sum();
    assert_eq!(per_copy, requests, "each request went to one copy (none failed)");
    for (_, l, v) in s.series.iter().filter(|(n, _, _)| n == "streamhost_lookup_breaker_open") {
        assert_eq!(*v, 0.0, "{l:?}");
        assert_eq!(s.value("streamhost_lookup_breaker_openings_total", &[("backend", l["backend"].as_str())]), 0.0);
    }
    assert_eq!(s.series.iter().filter(|(n, _, _)| n == "streamhost_lookup_breaker_open").count(), 2, "a breaker per copy");

    // A key answered before: the cache, and no request.
    writeln!(stdin, r#"{{"uid":"2"}}"#).unwrap();
    stdin.flush().unwrap();
    let s2 = scrape_until(&client, "the cached lookup", |s| s.get("streamhost_sink_events_total", &[("sink", "out")]) == Some(8.0));
    assert_eq!(s2.value("streamhost_lookup_cache_hits_total", &step), hits + 1.0);
    assert_eq!(s2.value("streamhost_lookup_cache_misses_total", &step), misses);
    assert_eq!(s2.value("streamhost_lookup_requests_total", &t), requests);
    assert_eq!(result(&s2, "found"), 6.0);
    drop(stdin);
    assert!(run.0.wait().unwrap().success());
}
