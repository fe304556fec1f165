//! `streamhost sql` against real servers: a job's tables on a Kafka broker
//! (Tansu), lookup tables in redis-server and PostgreSQL, and the generator.
//! Each test writes its job.sql into a temporary folder, runs the binary on
//! it and checks the exact output: records read back from the broker, the
//! file sinks, the dead letters (beside job.sql) and the run's summary.

mod common;
#[path = "common/kafka.rs"]
#[allow(dead_code)]
mod kafka;
#[path = "common/postgres.rs"]
mod postgres_server;
#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

/// A finished `streamhost sql` run.
struct SqlRun {
    stderr: String,
}

impl SqlRun {
    /// The summary's figures of lookup step `step`: (asked by the step, joined
    /// a request out, asked by the step before) and its table's (requests,
    /// keys requested). The summary prints them as
    /// "... (H hits, J joined a request out, P asked by the step before, A asked) ..."
    /// and on the next line "table: R requests of K keys on average".
    fn lookup(&self, step: &str) -> LookupFigures {
        let head = format!("lookup `{step}` on ");
        let mut lines = self.stderr.lines();
        let line = lines.find(|l| l.trim_start().starts_with(&head)).unwrap_or_else(|| panic!("no summary of {step}:\n{}", self.stderr));
        let table = lines.next().unwrap().trim();
        let counts = line.split_once("cache hit rate").unwrap().1;
        let inner = &counts[counts.find('(').unwrap() + 1..counts.find(')').unwrap()];
        let figure = |label: &str| -> u64 {
            inner.split(", ").find_map(|p| p.strip_suffix(label)).unwrap_or_else(|| panic!("{label} in {line}")).trim().parse().unwrap()
        };
        let requests: u64 = table.strip_prefix("table: ").unwrap().split(' ').next().unwrap().parse().unwrap();
        let per_request: f64 = table.split(" requests of ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        LookupFigures {
            asked: figure(" asked"),
            joined: figure(" joined a request out"),
            prefetched: figure(" asked by the step before"),
            requests,
            keys_requested: (requests as f64 * per_request).round() as u64,
        }
    }
}

#[derive(Debug, PartialEq)]
struct LookupFigures {
    asked: u64,
    joined: u64,
    prefetched: u64,
    requests: u64,
    keys_requested: u64,
}

/// Writes `job` as `dir/job.sql` and runs `streamhost sql` on it, which must
/// succeed. `one_cpu` pins it to one CPU, so its default parallelism is 1.
fn run_sql(dir: &Path, job: &str, one_cpu: bool) -> SqlRun {
    std::fs::write(dir.join("job.sql"), job).unwrap();
    let mut cmd = common::streamhost();
    cmd.args(["sql", "--no-progress"]).arg(dir.join("job.sql")).current_dir(dir).stdin(std::process::Stdio::null());
    if one_cpu {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "streamhost sql failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    SqlRun { stderr }
}

fn json_lines(path: &Path) -> Vec<Value> {
    common::lines(path).iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

// ---------------------------------------------------------------- Kafka

/// Input record `i` of the Kafka test: (its JSON text, why the declared
/// schema refuses it, if it does).
fn kafka_input(i: usize) -> (String, Option<&'static str>) {
    let status = if i % 3 == 0 { "void" } else { "ok" };
    if i % 7 == 3 {
        (format!(r#"{{"id":"e{i}","uid":"u{}","amount":"{}","status":"{status}"}}"#, i % 5, i * 10), Some("field `amount` should be an integer but is a string"))
    } else if i % 11 == 5 {
        (format!(r#"{{"uid":"u{}","amount":{},"status":"{status}"}}"#, i % 5, i * 10), Some("missing required field `id`"))
    } else {
        (format!(r#"{{"id":"e{i}","uid":"u{}","amount":{},"status":"{status}","extra":{{"k":{i}}}}}"#, i % 5, i * 10), None)
    }
}

/// A Kafka source (two partitions, read from the start to their end) through
/// a WHERE and a projection into a Kafka sink keyed by a column: the output
/// topic holds exactly the rows the query selects, keyed and timed as the
/// input; the records the declared schema refuses are dead letters with
/// their reason, topic, partition and offset.
#[test]
fn kafka_source_to_kafka_sink_through_where_and_projection() {
    let broker = kafka::Broker::start();
    broker.create_topic("in", 2);
    broker.create_topic("out", 1);
    const N: usize = 60;
    let base = 1_700_000_000_000i64;
    // Record i to partition i % 2, so its offset there is i / 2.
    for p in 0..2 {
        let records: Vec<kafka::Record> = (0..N)
            .filter(|i| i % 2 == p)
            .map(|i| kafka::Record { key: Some(format!("k{i}").into_bytes()), value: kafka_input(i).0.into_bytes(), timestamp: Some(base + i as i64), headers: vec![] })
            .collect();
        broker.produce_to("in", p as i32, &records);
    }

    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "CREATE TABLE events (
  id STRING NOT NULL,
  uid STRING,
  amount BIGINT,
  status STRING
) WITH ('connector' = 'kafka', 'brokers' = '{b}', 'topic' = 'in', 'group_id' = 'sql-connectors',
        'start' = 'earliest', 'stop_at_end' = 'true');
CREATE TABLE big (id STRING, uid STRING, cents BIGINT, tag STRING)
  WITH ('connector' = 'kafka', 'brokers' = '{b}', 'topic' = 'out', 'key' = '$.id');
INSERT INTO big
SELECT id, UPPER(uid) AS uid, amount * 100 AS cents, CONCAT(status, '-', id) AS tag
FROM events
WHERE status = 'ok' AND amount >= 100;
",
        b = broker.brokers
    );
    run_sql(dir.path(), &job, false);

    // What the query selects, computed from the inputs.
    let mut want = Vec::new();
    let mut want_dead = Vec::new();
    for i in 0..N {
        let (text, refused) = kafka_input(i);
        if let Some(reason) = refused {
            want_dead.push(json!({ "kind": "schema", "reason": reason, "topic": "in", "partition": i % 2, "offset": i / 2, "value": text }));
            continue;
        }
        let amount = i as i64 * 10;
        if i % 3 != 0 && amount >= 100 {
            let value = format!(r#"{{"id":"e{i}","uid":"U{}","cents":{},"tag":"ok-e{i}"}}"#, i % 5, amount * 100);
            want.push((format!("e{i}"), value, base + i as i64));
        }
    }
    want.sort();
    assert!(want.len() > 20 && want_dead.len() >= 10, "the inputs exercise both paths");

    // Read until one more than expected came, or none for 3 s: no extra record.
    let got = broker.read_all("out", want.len() + 1);
    let mut got: Vec<(String, String, i64)> = got
        .iter()
        .map(|r| (String::from_utf8(r.key.clone().expect("keyed by id")).unwrap(), String::from_utf8(r.value.clone()).unwrap(), r.timestamp.unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, want, "the output topic: (key, value, timestamp)");

    let mut dead = json_lines(&dir.path().join("dead-letter.jsonl"));
    for d in &mut dead {
        assert_eq!(d["source"], json!("events"), "{d}");
        assert_eq!(d["position"], d["offset"], "a Kafka source's position is the offset: {d}");
        let d = d.as_object_mut().unwrap();
        d.remove("source");
        d.remove("position");
    }
    let key = |v: &Value| (v["partition"].as_u64(), v["offset"].as_u64());
    dead.sort_by_key(key);
    want_dead.sort_by_key(key);
    assert_eq!(dead, want_dead, "the dead letters");
}

// ---------------------------------------------------------------- lookups

/// The lookup tables: users in redis (JSON strings under `user:<uid>`),
/// preferences in redis hashes (`pref:<uid>`), cities in PostgreSQL.
struct Tables {
    redis: redis_server::Redis,
    pg: postgres_server::Postgres,
}

fn lookup_tables() -> Tables {
    let redis = redis_server::Redis::start();
    redis.set_all([
        ("user:u1", r#"{"name":"Ann","age":31,"junk":true}"#),
        ("user:u2", r#"{"name":"Bob"}"#),
        ("user:u3", r#"{"name":"Cy","age":40}"#),
    ]);
    redis.pipeline(&[
        ["HSET", "pref:u1", "lang", "fr", "theme", "dark", "other", "x"].map(String::from).to_vec(),
        ["HSET", "pref:u4", "lang", "de"].map(String::from).to_vec(),
    ]);
    let pg = postgres_server::Postgres::start();
    pg.sql("CREATE TABLE cities (uid text PRIMARY KEY, city text, zip int); INSERT INTO cities VALUES ('u1', 'Lyon', 69001), ('u3', 'Oslo', 150), ('u4', 'Rome', NULL);");
    Tables { redis, pg }
}

/// Events keyed by `uid`: u1..u5, one without a uid, one whose uid is a
/// number (refused by the declared schema).
const EVENTS: &str = r#"{"id":1,"uid":"u1"}
{"id":2,"uid":"u2"}
{"id":3,"uid":"u3"}
{"id":4,"uid":"u4"}
{"id":5,"uid":"u5"}
{"id":6}
{"id":7,"uid":"u1"}
{"id":8,"uid":9}
"#;

fn lookup_tables_sql(t: &Tables) -> String {
    format!(
        "CREATE TABLE events (id BIGINT NOT NULL, uid STRING) WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE users (uid STRING, name STRING, age BIGINT)
  WITH ('connector' = 'redis', 'url' = '{r}', 'key_template' = 'user:{{}}');
CREATE TABLE prefs (uid STRING, lang STRING, theme STRING)
  WITH ('connector' = 'redis', 'url' = '{r}', 'values' = 'hashes', 'key_template' = 'pref:{{}}');
CREATE TABLE cities (uid STRING, city STRING, zip INT)
  WITH ('connector' = 'postgres', 'url' = '{p}',
        'query' = 'SELECT uid, to_jsonb(c)::text FROM cities c WHERE uid = ANY($1)');
",
        r = t.redis.url,
        p = t.pg.url
    )
}

/// LEFT and inner lookup joins on redis (strings and hashes) and PostgreSQL
/// tables, `SELECT *` and projections with a WHERE on a joined column: the
/// exact joined rows (the table's columns as `<alias>_<col>`, null on a
/// miss), inner joins dropping the misses, the event without a key, and the
/// refused event dead-lettered.
#[test]
fn lookup_joins_on_redis_and_postgres_tables() {
    let t = lookup_tables();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), EVENTS).unwrap();
    let job = lookup_tables_sql(&t)
        + "CREATE TABLE star WITH ('connector' = 'file', 'path' = 'star.jsonl');
CREATE TABLE pref_star WITH ('connector' = 'file', 'path' = 'pref_star.jsonl');
CREATE TABLE located (id BIGINT, name STRING, city STRING, zip INT) WITH ('connector' = 'file', 'path' = 'located.jsonl');
CREATE TABLE adults WITH ('connector' = 'file', 'path' = 'adults.jsonl');
-- LEFT on redis strings, everything.
INSERT INTO star
SELECT * FROM events AS e LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS u ON e.uid = u.uid;
-- LEFT on redis hashes (HMGET of the declared columns), everything.
INSERT INTO pref_star
SELECT * FROM events AS e LEFT JOIN prefs FOR SYSTEM_TIME AS OF PROCTIME() AS p ON e.uid = p.uid;
-- LEFT on redis, then inner on PostgreSQL: only the events with a city.
INSERT INTO located
SELECT e.id, u.name, c.city, c.zip FROM events AS e
  LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS u ON e.uid = u.uid
  JOIN cities FOR SYSTEM_TIME AS OF PROCTIME() AS c ON e.uid = c.uid;
-- Inner on redis with a WHERE on a joined column.
INSERT INTO adults
SELECT e.id, u.name AS who, u.age + 1 AS next_age FROM events AS e
  JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS u ON e.uid = u.uid
WHERE u.age >= 35 OR u.name = 'Ann';
";
    run_sql(dir.path(), &job, false);
    let out = |name: &str| sorted(common::lines(&dir.path().join(name)));

    assert_eq!(
        out("star.jsonl"),
        sorted(
            [
                r#"{"id":1,"uid":"u1","u_name":"Ann","u_age":31}"#,
                r#"{"id":2,"uid":"u2","u_name":"Bob","u_age":null}"#,
                r#"{"id":3,"uid":"u3","u_name":"Cy","u_age":40}"#,
                r#"{"id":4,"uid":"u4","u_name":null,"u_age":null}"#,
                r#"{"id":5,"uid":"u5","u_name":null,"u_age":null}"#,
                r#"{"id":6,"u_name":null,"u_age":null}"#,
                r#"{"id":7,"uid":"u1","u_name":"Ann","u_age":31}"#,
            ]
            .map(String::from)
            .to_vec()
        ),
        "LEFT JOIN users, SELECT *"
    );
    assert_eq!(
        out("pref_star.jsonl"),
        sorted(
            [
                r#"{"id":1,"uid":"u1","p_lang":"fr","p_theme":"dark"}"#,
                r#"{"id":2,"uid":"u2","p_lang":null,"p_theme":null}"#,
                r#"{"id":3,"uid":"u3","p_lang":null,"p_theme":null}"#,
                r#"{"id":4,"uid":"u4","p_lang":"de","p_theme":null}"#,
                r#"{"id":5,"uid":"u5","p_lang":null,"p_theme":null}"#,
                r#"{"id":6,"p_lang":null,"p_theme":null}"#,
                r#"{"id":7,"uid":"u1","p_lang":"fr","p_theme":"dark"}"#,
            ]
            .map(String::from)
            .to_vec()
        ),
        "LEFT JOIN prefs (hashes), SELECT *"
    );
    assert_eq!(
        out("located.jsonl"),
        sorted(
            [
                r#"{"id":1,"name":"Ann","city":"Lyon","zip":69001}"#,
                r#"{"id":3,"name":"Cy","city":"Oslo","zip":150}"#,
                r#"{"id":4,"name":null,"city":"Rome","zip":null}"#,
                r#"{"id":7,"name":"Ann","city":"Lyon","zip":69001}"#,
            ]
            .map(String::from)
            .to_vec()
        ),
        "LEFT JOIN users, JOIN cities (PostgreSQL)"
    );
    assert_eq!(
        out("adults.jsonl"),
        sorted(
            [r#"{"id":1,"who":"Ann","next_age":32}"#, r#"{"id":3,"who":"Cy","next_age":41}"#, r#"{"id":7,"who":"Ann","next_age":32}"#]
                .map(String::from)
                .to_vec()
        ),
        "JOIN users with a WHERE on its columns"
    );
    // The event whose uid is a number: refused once, at the source shared by the four INSERTs.
    let dead = json_lines(&dir.path().join("dead-letter.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((&dead[0]["kind"], &dead[0]["reason"], &dead[0]["value"]), (&json!("schema"), &json!("field `uid` should be a string but is an integer"), &json!(r#"{"id":8,"uid":9}"#)));
}

/// Two lookups of one table in one job, both ways the compiler makes them:
/// two INSERTs reading it side by side, and one query joining it twice (a
/// chain). Pinned to one CPU (a SQL job cannot set `parallelism`; its
/// default is the number of CPUs), the requests are shared as
/// docs/lookup-join.md says, as the run's summary shows: every distinct key
/// is requested once, in one request. (At 2 workers the chain still shares,
/// but the source's batch may reach the side-by-side steps in different
/// workers, each with its own client: 2 requests of 8 keys were seen here.
/// The admin API's /metrics would show the same counters, but a SQL job has
/// no `settings.admin`; the summary is what a SQL run exposes.)
#[test]
fn two_lookups_of_one_table_share_its_requests() {
    let t = lookup_tables();
    let dir = tempfile::tempdir().unwrap();
    // u1..u3 found, u4/u5 missing; `ref` names a second user.
    std::fs::write(
        dir.path().join("events.jsonl"),
        r#"{"id":1,"uid":"u1","ref":"u2"}
{"id":2,"uid":"u2","ref":"u3"}
{"id":3,"uid":"u4","ref":"u1"}
{"id":4,"uid":"u1","ref":"u5"}
"#,
    )
    .unwrap();
    let job = format!(
        "CREATE TABLE events (id BIGINT NOT NULL, uid STRING, ref STRING) WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE users (uid STRING, name STRING, age BIGINT)
  WITH ('connector' = 'redis', 'url' = '{r}', 'key_template' = 'user:{{}}');
CREATE TABLE names WITH ('connector' = 'file', 'path' = 'names.jsonl');
CREATE TABLE ages WITH ('connector' = 'file', 'path' = 'ages.jsonl');
CREATE TABLE pairs WITH ('connector' = 'file', 'path' = 'pairs.jsonl');
INSERT INTO names SELECT e.id, a.name FROM events AS e LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS a ON e.uid = a.uid;
INSERT INTO ages SELECT e.id, b.age FROM events AS e JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS b ON e.uid = b.uid;
INSERT INTO pairs SELECT e.id, v.name AS viewer, w.name AS author FROM events AS e
  LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS v ON e.uid = v.uid
  LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS w ON e.ref = w.uid;
",
        r = t.redis.url
    );
    std::fs::write(dir.path().join("job.sql"), &job).unwrap();
    let explain = common::streamhost().args(["sql", "--explain"]).arg(dir.path().join("job.sql")).output().unwrap();
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    let explained: Value = serde_json::from_slice(&explain.stdout).unwrap();
    let steps = explained["steps"].as_object().unwrap();
    let lookups: BTreeMap<&str, (&Value, &Value)> =
        steps.iter().filter(|(_, s)| s["type"] == "lookup-join").map(|(n, s)| (n.as_str(), (&s["inputs"], &s["key"]))).collect();
    assert_eq!(
        lookups,
        BTreeMap::from([
            ("ages_lookup_b", (&json!(["events"]), &json!("$.uid"))),
            ("names_lookup_a", (&json!(["events"]), &json!("$.uid"))),
            ("pairs_lookup_v", (&json!(["events"]), &json!("$.uid"))),
            ("pairs_lookup_w", (&json!(["pairs_lookup_v"]), &json!("$.ref"))),
        ]),
        "four lookup steps on one table: three side by side on the source, one chained"
    );

    let run = run_sql(dir.path(), &job, true);
    let out = |name: &str| sorted(common::lines(&dir.path().join(name)));
    assert_eq!(
        out("names.jsonl"),
        [r#"{"id":1,"name":"Ann"}"#, r#"{"id":2,"name":"Bob"}"#, r#"{"id":3,"name":null}"#, r#"{"id":4,"name":"Ann"}"#].map(String::from).to_vec()
    );
    assert_eq!(out("ages.jsonl"), [r#"{"id":1,"age":31}"#, r#"{"id":2,"age":null}"#, r#"{"id":4,"age":31}"#].map(String::from).to_vec());
    assert_eq!(
        out("pairs.jsonl"),
        [
            r#"{"id":1,"viewer":"Ann","author":"Bob"}"#,
            r#"{"id":2,"viewer":"Bob","author":"Cy"}"#,
            r#"{"id":3,"viewer":null,"author":"Ann"}"#,
            r#"{"id":4,"viewer":"Ann","author":null}"#,
        ]
        .map(String::from)
        .to_vec()
    );

    // Keys: uid u1, u2, u4 (three steps), ref u2, u3, u1, u5 (the chained one):
    // u1..u5, five distinct keys, asked once all together.
    let figures: BTreeMap<&str, LookupFigures> = lookups.keys().map(|s| (*s, run.lookup(s))).collect();
    let table = &figures["names_lookup_a"];
    assert_eq!((table.requests, table.keys_requested), (1, 5), "one request of the five distinct keys: {figures:?}\n{}", run.stderr);
    assert!(figures.values().all(|f| (f.requests, f.keys_requested) == (1, 5)), "one table, the same figures: {figures:?}");
    assert_eq!(figures.values().map(|f| f.asked).sum::<u64>(), 5, "each distinct key asked by one step: {figures:?}");
    assert_eq!(figures["pairs_lookup_w"].asked, 0, "the chained step asked nothing itself: {figures:?}");
    assert_eq!(figures["pairs_lookup_w"].prefetched, 4, "its four keys were asked by the step before: {figures:?}");
}

// ---------------------------------------------------------------- generator

/// Whether `v` (a raw generator record) passes the declared schema of the
/// `gen` table below: `ts` and `position` whole numbers, `user_id` present
/// and a string, `device` a string.
fn fits_schema(v: &Value) -> bool {
    v["ts"].is_i64() && v["user_id"].is_string() && v["device"].is_string() && (v.get("position").is_none() || v["position"].is_i64())
}

/// The generator through a WHERE into a file sink: the rows are exactly
/// those the same filter selects among the generator's records, which a
/// second table of the same generator (same seed, no columns, so nothing is
/// checked) writes out whole; the records the schema refuses (the dirty
/// ones with a quoted time or no user) are the dead letters.
#[test]
fn generator_through_a_where_gives_what_the_filter_selects_of_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let options = "'connector' = 'generator', 'shape' = 'impression', 'seed' = 11, 'count' = 3000, 'dirty_ratio' = 0.3";
    let job = format!(
        "CREATE TABLE gen (
  ts BIGINT NOT NULL,
  request_id STRING NOT NULL,
  user_id STRING NOT NULL,
  device STRING NOT NULL,
  position BIGINT,
  duration_ms BIGINT
) WITH ({options});
CREATE TABLE raw WITH ({options});
CREATE TABLE everything WITH ('connector' = 'file', 'path' = 'everything.jsonl');
CREATE TABLE kept WITH ('connector' = 'file', 'path' = 'kept.jsonl');
INSERT INTO everything SELECT * FROM raw;
INSERT INTO kept
SELECT request_id, device, position, duration_ms / 1000 AS secs
FROM gen
WHERE (device = 'android' OR device = 'ios') AND position >= 10 AND duration_ms < 30000;
"
    );
    run_sql(dir.path(), &job, false);

    let everything = json_lines(&dir.path().join("everything.jsonl"));
    assert_eq!(everything.len(), 3000, "the raw table: every record");
    let mut want: Vec<Value> = everything
        .iter()
        .filter(|v| fits_schema(v))
        .filter(|v| {
            let dev = v["device"].as_str().unwrap();
            (dev == "android" || dev == "ios") && v["position"].as_i64().unwrap() >= 10 && v["duration_ms"].as_i64().unwrap() < 30000
        })
        .map(|v| json!({ "request_id": v["request_id"], "device": v["device"], "position": v["position"], "secs": v["duration_ms"].as_i64().unwrap() / 1000 }))
        .collect();
    let mut got = json_lines(&dir.path().join("kept.jsonl"));
    let by_id = |v: &Value| v["request_id"].as_str().unwrap().to_string();
    want.sort_by_key(by_id);
    got.sort_by_key(by_id);
    assert!(want.len() > 100 && want.len() < 1500, "the filter keeps some and drops some: {}", want.len());
    assert_eq!(got.len(), want.len(), "the count the filter gives on the generator's records");
    assert_eq!(got, want);
    // The column order of the projection is kept.
    let first = common::lines(&dir.path().join("kept.jsonl")).into_iter().next().unwrap();
    assert!(first.starts_with(r#"{"request_id":"#) && first.contains(r#","device":"#), "{first}");

    let refused: Vec<&Value> = everything.iter().filter(|v| !fits_schema(v)).collect();
    assert!(refused.len() > 100, "dirty records: {}", refused.len());
    let dead = json_lines(&dir.path().join("dead-letter.jsonl"));
    assert_eq!(dead.len(), refused.len(), "the records the schema refuses are the dead letters");
    assert!(dead.iter().all(|d| d["source"] == json!("gen") && d["kind"] == json!("schema")), "{dead:?}");
    let mut dead_values: Vec<Value> = dead.iter().map(|d| serde_json::from_str(d["value"].as_str().unwrap()).unwrap()).collect();
    let mut refused: Vec<Value> = refused.into_iter().cloned().collect();
    dead_values.sort_by_key(by_id);
    refused.sort_by_key(by_id);
    assert_eq!(dead_values, refused);
}

/// A lookup table's options (`on_miss`, `timeout_ms`, `cache.*`) reach its
/// step: with `'on_miss' = 'dead-letter'` an inner join dead-letters a key
/// the table lacks (`lookup-miss`, naming the key) and an event without a
/// key (`step-error`) instead of dropping them.
#[test]
fn a_lookup_tables_on_miss_option_dead_letters_the_misses() {
    let t = lookup_tables();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), EVENTS).unwrap();
    let job = format!(
        "CREATE TABLE events (id BIGINT NOT NULL, uid STRING) WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE users (uid STRING, name STRING)
  WITH ('connector' = 'redis', 'url' = '{r}', 'key_template' = 'user:{{}}', 'on_miss' = 'dead-letter',
        'timeout_ms' = 500, 'cache.ttl_ms' = 1000);
CREATE TABLE named WITH ('connector' = 'file', 'path' = 'named.jsonl');
INSERT INTO named SELECT e.id, u.name FROM events AS e JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS u ON e.uid = u.uid;
",
        r = t.redis.url
    );
    run_sql(dir.path(), &job, false);
    assert_eq!(
        sorted(common::lines(&dir.path().join("named.jsonl"))),
        [r#"{"id":1,"name":"Ann"}"#, r#"{"id":2,"name":"Bob"}"#, r#"{"id":3,"name":"Cy"}"#, r#"{"id":7,"name":"Ann"}"#].map(String::from).to_vec()
    );
    let mut dead: Vec<(String, String, String)> = json_lines(&dir.path().join("dead-letter.jsonl"))
        .iter()
        .map(|d| (d["kind"].as_str().unwrap().into(), d["reason"].as_str().unwrap().into(), d["value"].as_str().unwrap().into()))
        .collect();
    dead.sort();
    let miss = |k: &str| format!("no value for key `user:{k}` in {}", t.redis.url);
    assert_eq!(
        dead,
        vec![
            ("lookup-miss".into(), miss("u4"), r#"{"id":4,"uid":"u4"}"#.into()),
            ("lookup-miss".into(), miss("u5"), r#"{"id":5,"uid":"u5"}"#.into()),
            ("schema".into(), "field `uid` should be a string but is an integer".into(), r#"{"id":8,"uid":9}"#.into()),
            ("step-error".into(), "no lookup key: field `$.uid` is missing".into(), r#"{"id":6}"#.into()),
        ]
    );
}

/// A redis table of hashes hands its fields on as strings
/// (docs/lookup-join.md): a column declared BIGINT is refused at its name
/// (it would type-check `p.age > 30` and fail on every row at run time);
/// declared STRING and CAST in the query, the job runs.
#[test]
fn a_hashes_tables_numeric_column_is_refused_and_a_cast_works() {
    let t = lookup_tables();
    t.redis.pipeline(&[["HSET", "pref:u1", "age", "31"].map(String::from).to_vec(), ["HSET", "pref:u4", "age", "20"].map(String::from).to_vec()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), EVENTS).unwrap();
    let job = |age_type: &str, age: &str| {
        format!(
            "CREATE TABLE events (id BIGINT NOT NULL, uid STRING) WITH ('connector' = 'file', 'path' = 'events.jsonl');
CREATE TABLE prefs (uid STRING, age {age_type}, lang STRING)
  WITH ('connector' = 'redis', 'url' = '{r}', 'values' = 'hashes', 'key_template' = 'pref:{{}}');
CREATE TABLE older WITH ('connector' = 'file', 'path' = 'older.jsonl');
INSERT INTO older
SELECT e.id, {age} + 1 AS next_age, p.lang FROM events AS e
  JOIN prefs FOR SYSTEM_TIME AS OF PROCTIME() AS p ON e.uid = p.uid
WHERE {age} > 30;
",
            r = t.redis.url
        )
    };
    std::fs::write(dir.path().join("job.sql"), job("BIGINT", "p.age")).unwrap();
    let v = common::streamhost().args(["validate", "--no-plugins"]).arg(dir.path().join("job.sql")).output().unwrap();
    let err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(2), "{err}");
    assert!(err.contains("job.sql:2:33") && err.contains("column `age`: a Redis hash's fields are strings"), "{err}");
    run_sql(dir.path(), &job("STRING", "CAST(p.age AS BIGINT)"), false);
    assert_eq!(
        sorted(common::lines(&dir.path().join("older.jsonl"))),
        [r#"{"id":1,"next_age":32,"lang":"fr"}"#, r#"{"id":7,"next_age":32,"lang":"fr"}"#].map(String::from).to_vec()
    );
    let dead = json_lines(&dir.path().join("dead-letter.jsonl"));
    assert!(dead.iter().all(|d| d["kind"] == json!("schema")), "only the refused event: {dead:?}");
}

/// Two generators (impressions, and the clicks that refer to them) in a
/// delayed join: each impression's `c.count` is the number of its clicks
/// within the hour after it, as a join of the generators' own records
/// (written whole by two more tables of the same generators) counts them.
#[test]
fn generated_impressions_and_clicks_in_a_delayed_join_count_their_matches() {
    let dir = tempfile::tempdir().unwrap();
    let imps = "'connector' = 'generator', 'shape' = 'join-impression', 'seed' = 9, 'count' = 3000, 'event_time.step_ms' = 400";
    let clicks = "'connector' = 'generator', 'shape' = 'join-click', 'seed' = 9, 'count' = 400, 'event_time.step_ms' = 3000, \
                  'impressions.step_ms' = 400, 'impressions.count' = 3000";
    let job = format!(
        "CREATE TABLE imps (request_id STRING NOT NULL, ts BIGINT NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ({imps});
CREATE TABLE clicks (request_id STRING NOT NULL, ts BIGINT NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ({clicks});
CREATE TABLE imps_raw WITH ({imps});
CREATE TABLE clicks_raw WITH ({clicks});
CREATE TABLE all_imps WITH ('connector' = 'file', 'path' = 'imps.jsonl');
CREATE TABLE all_clicks WITH ('connector' = 'file', 'path' = 'clicks.jsonl');
CREATE TABLE samples WITH ('connector' = 'file', 'path' = 'samples.jsonl');
INSERT INTO all_imps SELECT * FROM imps_raw;
INSERT INTO all_clicks SELECT * FROM clicks_raw;
INSERT INTO samples
SELECT i.request_id, i.ts, c.count AS clicks
FROM imps AS i LEFT INTERVAL '1' HOUR WINDOW JOIN clicks AS c ON i.request_id = c.request_id;
"
    );
    run_sql(dir.path(), &job, false);
    let all_imps = json_lines(&dir.path().join("imps.jsonl"));
    let all_clicks = json_lines(&dir.path().join("clicks.jsonl"));
    assert_eq!((all_imps.len(), all_clicks.len()), (3000, 400));
    let mut click_times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for c in &all_clicks {
        click_times.entry(c["request_id"].as_str().unwrap()).or_default().push(c["ts"].as_i64().unwrap());
    }
    let mut want: Vec<(String, i64, u64)> = all_imps
        .iter()
        .map(|i| {
            let (id, t) = (i["request_id"].as_str().unwrap(), i["ts"].as_i64().unwrap());
            let n = click_times.get(id).map_or(0, |ts| ts.iter().filter(|&&c| c >= t && c <= t + 3_600_000).count());
            (id.to_string(), t, n as u64)
        })
        .collect();
    let mut got: Vec<(String, i64, u64)> = json_lines(&dir.path().join("samples.jsonl"))
        .iter()
        .map(|v| (v["request_id"].as_str().unwrap().to_string(), v["ts"].as_i64().unwrap(), v["clicks"].as_u64().unwrap()))
        .collect();
    want.sort();
    got.sort();
    assert!(want.iter().filter(|w| w.2 > 0).count() > 200, "many impressions were clicked");
    assert_eq!(got, want, "(request_id, ts, clicks) of every impression");
}
