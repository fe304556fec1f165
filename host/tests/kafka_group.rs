//! Scale-out over a consumer group (`settings.scale_out`) against a real
//! broker (Tansu on 127.0.0.1, started and stopped by each test): several
//! `streamhost run` processes share the partitions, and a partition's join
//! state follows it through the shared checkpoint directory, or through
//! Redis alone (a redis-server the test starts, each process in a folder of
//! its own).

mod common;

#[path = "common/kafka.rs"]
#[allow(dead_code)]
mod kafka;

#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{streamhost, write_pipeline};

const PARTITIONS: i32 = 4;

/// The training-data join between the topics `feed` and `click` into
/// `samples`, scaled out, its checkpoints in `shared/`; its sink exactly
/// once (each process with a transactional id of its own) or at least once.
fn group_pipeline(brokers: &str, exactly_once: bool) -> serde_json::Value {
    let source = |topic: &str| {
        json!({ "type": "kafka", "brokers": brokers, "topics": [topic], "group_id": "sjoin", "timestamp_field": "ts",
                "max_out_of_orderness_ms": 1000,
                "properties": { "session.timeout.ms": "6000", "heartbeat.interval.ms": "500" } })
    };
    let mut p = common::file_join_pipeline();
    p["sources"] = json!({ "impressions": source("feed"), "clicks": source("click") });
    p["sinks"] = json!({ "samples": { "type": "kafka", "inputs": ["samples"], "brokers": brokers, "topic": "samples", "key": "$.request_id" } });
    p["settings"]["parallelism"] = json!(2);
    p["settings"]["batch_linger_ms"] = json!(20);
    p["settings"]["checkpoint"] = json!({ "interval_ms": 300, "dir": "shared" });
    p["settings"]["scale_out"] = json!({});
    if exactly_once {
        p["sinks"]["samples"]["delivery"] = json!("exactly-once");
        p["sinks"]["samples"]["transactional_id"] = json!("sjoin-samples");
    }
    p
}

/// How the processes of a test share a partition's state.
enum Shared {
    /// RocksDB state, checkpoints in one folder every process reaches
    /// (`run/shared`); the sink exactly once or at least once.
    Folder { exactly_once: bool },
    /// Redis state: each process runs in an empty folder of its own
    /// (`run/NAME/`), and only the server carries state between them.
    Redis(redis_server::Redis),
}

impl Shared {
    /// The folder instance `instance` runs in (its pipeline.json, its outputs).
    fn dir(&self, run: &Path, instance: &str) -> PathBuf {
        match self {
            Shared::Folder { .. } => run.to_path_buf(),
            Shared::Redis(_) => run.join(instance),
        }
    }

    /// The pipeline of instance `instance`, written into its folder.
    fn pipeline(&self, run: &Path, instance: &str, brokers: &str) -> PathBuf {
        let mut p = group_pipeline(brokers, matches!(self, Shared::Folder { exactly_once: true }));
        if let Shared::Redis(server) = self {
            p["settings"]["state"] = json!({ "backend": "redis", "redis": { "url": server.url, "prefix": "sjoin" } });
            p["settings"]["checkpoint"] = json!({ "interval_ms": 300 });
        }
        let dir = self.dir(run, instance);
        std::fs::create_dir_all(&dir).unwrap();
        write_pipeline(&dir, &p)
    }

    /// The checkpoints `instance` has completed.
    fn checkpoints_of(&self, run: &Path, instance: &str) -> usize {
        let folder = match self {
            Shared::Folder { .. } => run.join("shared/instances").join(instance),
            Shared::Redis(_) => run.join(instance).join("checkpoints/instances").join(instance),
        };
        std::fs::read_dir(folder).map(|d| d.flatten().filter(|e| e.path().join("meta.json").is_file()).count()).unwrap_or(0)
    }
}

fn start(pipeline: &Path, instance: &str, log: &Path) -> Child {
    streamhost()
        .args(["run", "--no-progress", "--instance", instance])
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, limit: Duration, dir: &Path, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}\n{}", logs(dir));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every sample in the topic once per request_id, and how many came twice
/// or more. A sample replayed after a crash is the same sample.
fn dedupe(records: Vec<kafka::Record>) -> (BTreeMap<String, String>, usize) {
    let mut by_id = BTreeMap::new();
    let mut duplicates = 0;
    for r in records {
        let line = String::from_utf8(r.value).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = v["request_id"].as_str().unwrap().to_string();
        if let Some(first) = by_id.insert(id.clone(), line.clone()) {
            assert_eq!(first, line, "sample {id} emitted twice, differently");
            duplicates += 1;
        }
    }
    (by_id, duplicates)
}

fn logs(dir: &Path) -> String {
    ["a", "b", "c"].iter().map(|i| format!("--- {i}:\n{}", std::fs::read_to_string(dir.join(format!("{i}.log"))).unwrap_or_default())).collect()
}

/// Three processes in one group: a and b share the four partitions, a is
/// killed mid-run (SIGKILL: no final checkpoint), c joins later; b and c
/// take a's partitions over from its last checkpoint. Every impression is
/// then in the output topic, once after deduplication by request_id, with
/// the clicks the same join gives over files.
#[test]
fn three_processes_in_a_group_one_killed_one_added_every_impression_once_after_dedupe() {
    three_processes_one_killed_one_added(Shared::Folder { exactly_once: false });
}

/// The same with the exactly-once sink: each generation's transactions
/// commit at its checkpoints (Tansu shows aborted records too, so the
/// output is still deduplicated here).
#[test]
fn three_processes_in_a_group_with_an_exactly_once_sink_every_impression_once_after_dedupe() {
    three_processes_one_killed_one_added(Shared::Folder { exactly_once: true });
}

/// The same with the join's state in Redis: no folder is shared (each
/// process runs in an empty one of its own, keeps no local state, and a's is
/// never read again), so the state of a's partitions reaches b and c through
/// Redis alone, and every sample is still the one the files give. Afterwards
/// Redis holds an index entry for every partition and only the generations
/// they name: the killed a's and the ones rebalances left were removed.
#[test]
fn three_processes_in_a_group_with_redis_state_and_no_shared_folder_every_impression_once_after_dedupe() {
    three_processes_one_killed_one_added(Shared::Redis(redis_server::Redis::start()));
}

fn three_processes_one_killed_one_added(shared: Shared) {
    let exactly_once = matches!(shared, Shared::Folder { exactly_once: true });
    let dir = tempfile::tempdir().unwrap();
    common::write_join_inputs(dir.path(), 6_000);
    // The reference: the same join over files, in one process.
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for f in ["impressions.jsonl", "clicks.jsonl"] {
        std::fs::copy(dir.path().join(f), files.join(f)).unwrap();
    }
    let out = streamhost().args(["run", "--no-progress"]).arg(write_pipeline(&files, &common::file_join_pipeline())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: BTreeMap<String, String> = common::lines(&files.join("out/samples.jsonl"))
        .into_iter()
        .map(|l| (serde_json::from_str::<serde_json::Value>(&l).unwrap()["request_id"].as_str().unwrap().to_string(), l))
        .collect();
    assert_eq!(expected.len(), 6_000);
    let dead_expected = common::lines(&files.join("out/dead-letter.jsonl")).len();

    let broker = kafka::Broker::start();
    for topic in ["feed", "click", "samples"] {
        broker.create_topic(topic, PARTITIONS);
    }
    let impressions = kafka::keyed_records(&dir.path().join("impressions.jsonl"));
    let clicks = kafka::keyed_records(&dir.path().join("clicks.jsonl"));
    let (imp_half, click_half) = (impressions.len() / 2, clicks.len() / 2);
    broker.produce("feed", &impressions[..imp_half]);
    broker.produce("click", &clicks[..click_half]);

    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let pipeline = |instance: &str| shared.pipeline(&run, instance, &broker.brokers);
    let mut a = start(&pipeline("a"), "a", &dir.path().join("a.log"));
    let mut b = start(&pipeline("b"), "b", &dir.path().join("b.log"));
    let checkpoints_of = |instance: &str| shared.checkpoints_of(&run, instance);
    wait_for("a and b to checkpoint", Duration::from_secs(60), dir.path(), || checkpoints_of("a") > 0 && checkpoints_of("b") > 0);
    std::thread::sleep(Duration::from_millis(700));
    // On Redis, a dies while it reads the second half (what it read since its
    // last checkpoint is read again by the new owners, into the state its
    // checkpoint left); elsewhere, with the first half checkpointed.
    let mid_run = matches!(shared, Shared::Redis(_));
    let second_half = || {
        broker.produce("feed", &impressions[imp_half..]);
        broker.produce("click", &clicks[click_half..]);
    };
    if mid_run {
        second_half();
        std::thread::sleep(Duration::from_millis(150));
    }
    common::signal(&a, "KILL");
    a.wait().unwrap();
    if !mid_run {
        second_half();
    }
    let c_started = Instant::now();
    let mut c = start(&pipeline("c"), "c", &dir.path().join("c.log"));
    wait_for("c to checkpoint", Duration::from_secs(90), dir.path(), || checkpoints_of("c") > 0);
    let takeover = c_started.elapsed();
    // Past every window: a record far ahead in each partition of both topics.
    let end = 1_700_000_000_000i64 + 10 * 3_600_000;
    for p in 0..PARTITIONS {
        let marker = |id: String| kafka::Record { key: Some(id.clone().into_bytes()), timestamp: Some(end), value: json!({"ts": end, "request_id": id}).to_string().into_bytes(), headers: vec![] };
        broker.produce_to("feed", p, &[marker(format!("end-{p}"))]);
        broker.produce_to("click", p, &[marker(format!("end-{p}"))]);
    }
    let until = Instant::now() + Duration::from_secs(120);
    let (got, duplicates) = loop {
        let (got, duplicates) = dedupe(broker.read_all("samples", usize::MAX));
        if got.len() >= expected.len() || Instant::now() > until {
            break (got, duplicates);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for child in [&b, &c] {
        common::signal(child, "TERM");
    }
    for (name, child) in [("b", &mut b), ("c", &mut c)] {
        let status = common::wait_or_kill(child, Instant::now() + Duration::from_secs(40));
        assert!(status.is_some_and(|s| s.success()), "{name} did not stop cleanly on SIGTERM: {status:?}\n{}", logs(dir.path()));
    }
    let missing: Vec<&String> = expected.keys().filter(|id| !got.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} of {} impressions missing (first {:?})\n{}", missing.len(), expected.len(), &missing[..missing.len().min(5)], logs(dir.path()));
    for (id, line) in &expected {
        let want: serde_json::Value = serde_json::from_str(line).unwrap();
        let have: serde_json::Value = serde_json::from_str(&got[id]).unwrap();
        assert_eq!(have, want, "sample {id}");
    }
    assert_eq!(got.len(), expected.len(), "no sample that the files do not give");
    if mid_run {
        // No window closes before the end markers (6,000 impressions span 40
        // min), so each sample is emitted once, by its partition's last owner:
        // a second copy would be an impression the state held twice, a state
        // ahead of the offsets it was resumed with.
        assert_eq!(duplicates, 0, "{}", logs(dir.path()));
    }
    let generations = ["b", "c"].iter().map(|i| std::fs::read_to_string(dir.path().join(format!("{i}.log"))).unwrap().matches("running the pipeline for these partitions").count()).sum::<usize>();
    assert!(generations >= 3, "b rebalanced when a died and when c came: {generations} generations\n{}", logs(dir.path()));
    // Each process wrote its own dead letters; a's last ones may be written again by their new owner.
    let mut dead = std::collections::BTreeSet::new();
    for i in ["a", "b", "c"] {
        for l in common::lines(&shared.dir(&run, i).join(format!("out/dead-letter-{i}.jsonl"))) {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            dead.insert((v["topic"].as_str().unwrap().to_string(), v["partition"].as_i64().unwrap(), v["offset"].as_i64().unwrap()));
        }
    }
    assert_eq!(dead.len(), dead_expected, "every dead letter, once by topic/partition/offset");
    if let Shared::Redis(server) = &shared {
        redis_holds_only_what_the_index_names(server, &run, dir.path());
    }
    if std::env::var_os("STREAMHOST_TEST_LOGS").is_some() {
        eprintln!("{}", logs(dir.path()));
    }
    eprintln!(
        "3 processes (a killed, c added; exactly once: {exactly_once}; redis state: {}): {} samples, {duplicates} duplicates, {generations} generations of b and c; c's first checkpoint {:.1} s after it started",
        matches!(shared, Shared::Redis(_)),
        got.len(),
        takeover.as_secs_f64()
    );
}

/// After a group on Redis state stopped: every partition has an index entry,
/// every generation in Redis is one an entry names (with its marker), and no
/// process kept state in its folder (its checkpoints are records only).
fn redis_holds_only_what_the_index_names(server: &redis_server::Redis, run: &Path, dir: &Path) {
    let cli = |args: &[&str]| -> Vec<String> {
        let out = std::process::Command::new("redis-cli").args(["-p", &server.port.to_string()]).args(args).output().unwrap();
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
    };
    let named: std::collections::BTreeSet<String> = (0..PARTITIONS).flat_map(|p| cli(&["HGET", &format!("sjoin:kg:{p}"), "generation"])).collect();
    assert!(!named.is_empty() && named.iter().all(|g| g.starts_with('e')), "{named:?}\n{}", logs(dir));
    for p in 0..PARTITIONS {
        assert_eq!(cli(&["HEXISTS", &format!("sjoin:kg:{p}"), "record"]), ["1"], "partition {p} has an entry");
    }
    let present: std::collections::BTreeSet<String> =
        cli(&["--scan", "--pattern", "sjoin:e[0-9]*"]).iter().filter_map(|k| k.strip_prefix("sjoin:")?.split(':').next().map(str::to_string)).collect();
    assert_eq!(present, named, "the generations in redis are the ones the index names\n{}", logs(dir));
    let a_last = cli(&["GET", "sjoin:i:a:owner"]);
    assert!(a_last.len() == 1 && !present.contains(&format!("e{}", a_last[0])), "the killed a's last generation (epoch {a_last:?}) was taken over and removed");
    for i in ["a", "b", "c"] {
        let folder = run.join(i);
        assert!(!folder.join("state").exists() && !folder.join("out/state").exists(), "{i} kept no local state");
        for chk in std::fs::read_dir(folder.join("checkpoints/instances").join(i)).unwrap().flatten() {
            let inside: Vec<_> = std::fs::read_dir(chk.path()).unwrap().flatten().map(|e| e.file_name()).collect();
            assert!(inside.iter().all(|n| n == "meta.json"), "{}: {inside:?}", chk.path().display());
        }
    }
}

/// The inputs of a join partitioned differently cannot share key groups:
/// refused at start, naming the topics and their counts.
#[test]
fn topics_with_different_partition_counts_are_refused_naming_them() {
    let broker = kafka::Broker::start();
    broker.create_topic("feed", 3);
    broker.create_topic("click", 2);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(dir.path(), &group_pipeline(&broker.brokers, false));
    let out = streamhost().args(["run", "--no-progress", "--instance", "x"]).arg(pipeline).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("`click` has 2") && err.contains("`feed` has 3"), "{err}");
}

/// What scale-out cannot share is refused with its JSON path.
#[test]
fn a_scaled_out_pipeline_with_a_file_source_or_sink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = group_pipeline("127.0.0.1:9", false);
    p["sources"]["clicks"] = json!({ "type": "file", "path": "clicks.jsonl" });
    p["sinks"]["samples"] = json!({ "type": "file", "path": "out.jsonl", "inputs": ["samples"] });
    let out = streamhost().args(["validate", "--no-plugins"]).arg(write_pipeline(dir.path(), &p)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("$.sources.clicks.type") && err.contains("$.sinks.samples.type"), "{err}");
    let out = streamhost().args(["run", "--fresh"]).arg(write_pipeline(dir.path(), &group_pipeline("127.0.0.1:9", false))).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--fresh is refused in a group");
}

/// A process stopped while it waits for its first assignment ends cleanly.
#[test]
fn a_process_stopped_before_the_group_gave_it_partitions_exits_cleanly() {
    let broker = kafka::Broker::start();
    for topic in ["feed", "click", "samples"] {
        broker.create_topic(topic, PARTITIONS);
    }
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(dir.path(), &group_pipeline(&broker.brokers, false));
    let log = dir.path().join("a.log");
    let mut a = start(&pipeline, "a", &log);
    wait_for("a to join", Duration::from_secs(30), dir.path(), || std::fs::read_to_string(&log).unwrap_or_default().contains("joined the consumer group"));
    common::signal(&a, "TERM");
    let status = common::wait_or_kill(&mut a, Instant::now() + Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{text}");
}
