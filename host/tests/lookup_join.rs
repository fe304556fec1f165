//! The `lookup-join` step through pipeline.json, against real servers
//! started by the tests on 127.0.0.1 (redis-server, a Redis Cluster,
//! PostgreSQL): what it adds and what it does on a miss, the cache and its
//! TTLs, one request for a hot key, requests shared by steps on one table,
//! order, and the failures: a copy killed or slowed, both down.

mod common;
#[path = "common/postgres.rs"]
mod postgres_server;
#[path = "common/redis.rs"]
mod redis_server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streamhost::config::load_pipeline;
use streamhost::lookup::LookupSnapshot;
use streamhost::runtime::{build_pipeline, BuildOptions, NodeStats, RunSummary};

use redis_server::Redis;

/// `user:u0` .. `user:u99`: `{"age": i, "city": "c{i % 3}"}`.
fn users(r: &Redis) {
    r.set_all((0..100).map(|i| (format!("user:u{i}"), format!(r#"{{"age":{i},"city":"c{}"}}"#, i % 3))));
}

/// `n` events `{"uid": "u{i % keys}", "n": i, "ts": ...}`; every 50th has no uid.
fn write_events(dir: &Path, n: usize, keys: usize) {
    let mut text = String::new();
    for i in 0..n {
        let ts = 1_700_000_000_000u64 + i as u64;
        if i % 50 == 49 {
            text.push_str(&format!("{{\"n\":{i},\"ts\":{ts}}}\n"));
        } else {
            text.push_str(&format!("{{\"uid\":\"u{}\",\"n\":{i},\"ts\":{ts}}}\n", i % keys));
        }
    }
    std::fs::write(dir.join("events.jsonl"), text).unwrap();
}

/// A pipeline: `events.jsonl` → the steps → `out.jsonl` (the last step's output).
fn pipeline(steps: Value, last: &str, settings: Value) -> Value {
    json!({
        "sources": { "events": { "type": "file", "path": "events.jsonl", "timestamp_field": "ts" } },
        "steps": steps,
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": [last] } },
        "dead_letter": { "type": "file", "path": "dead.jsonl" },
        "settings": settings
    })
}

fn redis_backend(r: &Redis) -> Value {
    json!({ "type": "redis", "url": r.url })
}

struct Run {
    summary: RunSummary,
    out: Vec<Value>,
    dead: Vec<Value>,
}

impl Run {
    fn lookup(&self, step: &str) -> &LookupSnapshot {
        self.summary.node(step).and_then(|n| n.lookup.as_ref()).unwrap_or_else(|| panic!("no lookup figures for {step}"))
    }
}

fn json_lines(path: &Path) -> Vec<Value> {
    common::lines(path).iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// Runs `p` in `dir`; `during` is called with the steps' live counters
/// while it runs.
fn run_with(dir: &Path, p: &Value, during: impl FnOnce(&dyn Fn(&str) -> Arc<NodeStats>)) -> Run {
    let path = common::write_pipeline(dir, p);
    let loaded = load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"));
    let built = build_pipeline(&loaded, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = ["sources", "steps", "sinks"].iter().flat_map(|k| p[k].as_object().unwrap().keys().cloned()).collect();
    let stats: Vec<(String, Arc<NodeStats>)> = names.iter().map(|n| (n.clone(), built.node_stats(n).unwrap())).collect();
    let running = std::thread::spawn(move || built.run());
    during(&|name: &str| stats.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone()).unwrap());
    let summary = running.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    Run { summary, out: json_lines(&dir.join("out.jsonl")), dead: json_lines(&dir.join("dead.jsonl")) }
}

fn run(dir: &Path, p: &Value) -> Run {
    run_with(dir, p, |_| {})
}

fn by_n(out: &[Value]) -> std::collections::BTreeMap<u64, Value> {
    out.iter().map(|v| (v["n"].as_u64().unwrap(), v.clone())).collect()
}

#[test]
fn left_join_adds_the_values_members_under_the_prefix_and_emits_the_misses_unchanged() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    users(&redis);
    write_events(dir.path(), 3000, 150);
    let steps = json!({ "users": { "type": "lookup-join", "inputs": ["events"], "key": "$.uid", "key_template": "user:{}",
        "backends": [redis_backend(&redis)], "prefix": "user_" } });
    let r = run(dir.path(), &pipeline(steps, "users", json!({})));
    assert_eq!(r.out.len(), 3000, "left: every event goes on");
    for (n, v) in by_n(&r.out) {
        let uid = n % 150;
        if n % 50 == 49 || uid >= 100 {
            assert!(v.get("user_age").is_none(), "a miss goes on unchanged: {v}");
        } else {
            assert_eq!((v["user_age"].as_u64(), v["user_city"].as_str()), (Some(uid), Some(format!("c{}", uid % 3).as_str())), "{v}");
            assert_eq!(v["uid"], json!(format!("u{uid}")), "the event's own fields stay");
        }
    }
    let l = r.lookup("users");
    let misses = (0..3000).filter(|n| n % 50 == 49 || n % 150 >= 100).count() as u64;
    assert_eq!((l.found, l.missing, l.no_key, l.unavailable), (3000 - misses, misses, 60, 0));
    assert!(l.requests >= 1 && l.asked <= 300, "each worker asks for each key once: {l:?}");
    assert!(r.dead.is_empty());
}

#[test]
fn inner_mode_drops_the_misses_and_dead_letter_says_why_each_one_missed() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    users(&redis);
    write_events(dir.path(), 1000, 150);
    let step = |extra: Value| {
        let mut s = json!({ "type": "lookup-join", "inputs": ["events"], "key": "$.uid", "key_template": "user:{}", "backends": [redis_backend(&redis)] });
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    };
    let hits = (0..1000u64).filter(|n| n % 50 != 49 && n % 150 < 100).count();
    let r = run(dir.path(), &pipeline(json!({ "users": step(json!({ "mode": "inner" })) }), "users", json!({})));
    assert_eq!(r.out.len(), hits);
    assert!(r.out.iter().all(|v| v["age"].is_u64()), "no prefix: the members as they are");
    assert_eq!(r.summary.node("users").unwrap().filtered, 1000 - hits as u64, "the dropped events are counted");

    let r = run(dir.path(), &pipeline(json!({ "users": step(json!({ "on_miss": "dead-letter", "fields": ["age"], "prefix": "u." })) }), "users", json!({})));
    assert_eq!(r.out.len(), hits);
    assert!(r.out.iter().all(|v| v["u.age"].is_u64() && v.get("u.city").is_none()), "only the fields chosen");
    assert_eq!(r.dead.len(), 1000 - hits);
    for d in &r.dead {
        let value: Value = serde_json::from_str(d["value"].as_str().unwrap()).unwrap();
        let (kind, reason) = (d["kind"].as_str().unwrap(), d["reason"].as_str().unwrap());
        assert_eq!((d["step"].as_str(), d["source"].as_str()), (Some("users"), Some("events")));
        assert_eq!(d["position"].as_u64(), Some(value["n"].as_u64().unwrap() + 1), "the line it came from");
        match value.get("uid") {
            None => assert_eq!((kind, reason), ("step-error", "no lookup key: field `$.uid` is missing")),
            Some(uid) => assert_eq!((kind, reason), ("lookup-miss", format!("no value for key `user:{}` in {}", uid.as_str().unwrap(), redis.url).as_str())),
        }
    }
}

#[test]
fn redis_hashes_are_read_whole_or_by_the_fields_chosen_and_as_adds_the_whole_value() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    let hsets: Vec<Vec<String>> = (0..100).map(|i| ["HSET", &format!("item:u{i}"), "cat", &format!("k{}", i % 4), "price", &i.to_string(), "junk", "x"].map(String::from).to_vec()).collect();
    redis.pipeline(&hsets);
    write_events(dir.path(), 500, 120);
    let hashes = json!({ "type": "redis", "url": redis.url, "values": "hashes" });
    let steps = json!({
        "picked": { "type": "lookup-join", "inputs": ["events"], "key": "$.uid", "key_template": "item:{}", "backends": [hashes], "fields": ["cat", "price", "gone"], "prefix": "i_" },
        "whole": { "type": "lookup-join", "inputs": ["picked"], "key": "$.uid", "key_template": "item:{}", "backends": [{ "type": "redis", "url": redis.url, "values": "hashes" }], "as": "item" }
    });
    let r = run(dir.path(), &pipeline(steps, "whole", json!({ "parallelism": 1 })));
    for (n, v) in by_n(&r.out) {
        let uid = n % 120;
        if n % 50 == 49 || uid >= 100 {
            assert_eq!((&v["i_cat"], &v["i_gone"], &v["item"]), (&Value::Null, &Value::Null, &Value::Null), "chosen fields and `as` are null on a miss: {v}");
        } else {
            assert_eq!((v["i_cat"].as_str(), v["i_price"].as_str()), (Some(format!("k{}", uid % 4).as_str()), Some(uid.to_string().as_str())), "{v}");
            assert_eq!(v["i_gone"], Value::Null, "a field the hash lacks is null");
            assert!(v.get("i_junk").is_none());
            assert_eq!(v["item"], json!({ "cat": format!("k{}", uid % 4), "price": uid.to_string(), "junk": "x" }), "HGETALL: the whole hash");
        }
    }
}

#[test]
fn a_hot_key_waited_for_by_thousands_of_events_is_one_request() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    users(&redis);
    let text: String = (0..5000).map(|i| format!("{{\"uid\":\"u7\",\"n\":{i},\"ts\":{}}}\n", 1_700_000_000_000u64 + i)).collect();
    std::fs::write(dir.path().join("events.jsonl"), text).unwrap();
    let steps = json!({ "users": { "type": "lookup-join", "inputs": ["events"], "key": "$.uid", "key_template": "user:{}",
        "backends": [redis_backend(&redis)], "prefix": "user_" } });
    let r = run(dir.path(), &pipeline(steps, "users", json!({ "parallelism": 1, "batch_size": 256 })));
    assert_eq!(r.out.len(), 5000);
    assert!(r.out.iter().all(|v| v["user_age"] == json!(7)));
    let l = r.lookup("users");
    assert_eq!((l.requests, l.asked, l.found), (1, 1, 5000), "{l:?}");
    assert_eq!(l.cache_hits + l.joined, 4999, "the others waited for that request or found its answer cached");
}

#[test]
fn cached_values_and_misses_expire_after_their_ttls() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    redis.set_all([("device:android", r#"{"v":1}"#)]);
    // About 300 events a second for 2.5 s, whose `device` takes four values.
    let generator = json!({ "type": "generator", "shape": "join-impression", "seed": 3, "count": 750, "rate": 300, "timestamp_field": "ts" });
    let step = |ttl: u64| {
        json!({ "users": { "type": "lookup-join", "inputs": ["gen"], "key": "$.device", "key_template": "device:{}", "backends": [redis_backend(&redis)],
            "as": "dev", "cache": { "ttl_ms": ttl, "miss_ttl_ms": ttl } } })
    };
    let mut p = pipeline(step(150), "users", json!({ "parallelism": 1, "batch_linger_ms": 10 }));
    p["sources"] = json!({ "gen": generator });
    let redis_port = redis.port;
    let change = || {
        std::thread::sleep(Duration::from_millis(1200));
        Redis::command_on(redis_port, &["SET", "device:android", r#"{"v":2}"#]);
        Redis::command_on(redis_port, &["SET", "device:ios", r#"{"v":3}"#]);
    };
    let r = run_with(dir.path(), &p, |_| change());
    let seen = |device: &str| -> Vec<Value> { r.out.iter().filter(|v| v["device"] == json!(device)).map(|v| v["dev"].clone()).collect() };
    let android = seen("android");
    let first_new = android.iter().position(|d| *d == json!({"v": 2})).expect("the new value was read once the old one expired");
    assert!(first_new > 0 && android[..first_new].iter().all(|d| *d == json!({"v": 1})) && android[first_new..].iter().all(|d| *d == json!({"v": 2})), "{android:?}");
    let ios = seen("ios");
    let found = ios.iter().position(|d| *d == json!({"v": 3})).expect("a cached miss expired too: the key was asked again and found");
    assert!(found > 0 && ios[..found].iter().all(Value::is_null), "{ios:?}");
    let requests_short_ttl = r.lookup("users").requests;

    // The same run with a long TTL: the first answers are kept to the end.
    redis.set_all([("device:android", r#"{"v":1}"#)]);
    Redis::command_on(redis_port, &["DEL", "device:ios"]);
    p["steps"] = step(60_000);
    let r = run_with(dir.path(), &p, |_| change());
    assert!(r.out.iter().filter(|v| v["device"] == json!("android")).all(|v| v["dev"] == json!({"v": 1})));
    assert!(r.out.iter().filter(|v| v["device"] == json!("ios")).all(|v| v["dev"].is_null()));
    assert!(r.lookup("users").requests < requests_short_ttl / 2, "{} vs {requests_short_ttl}", r.lookup("users").requests);
}

#[test]
fn steps_on_one_table_share_requests_whether_chained_or_side_by_side() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    users(&redis);
    let text: String = (0..4000).map(|i| format!("{{\"uid\":\"u{}\",\"author\":\"u{}\",\"n\":{i},\"ts\":{}}}\n", i % 100, (i * 7) % 100, 1_700_000_000_000u64 + i)).collect();
    std::fs::write(dir.path().join("events.jsonl"), text).unwrap();
    let step = |input: &str, key: &str, prefix: &str| {
        json!({ "type": "lookup-join", "inputs": [input], "key": key, "key_template": "user:{}", "backends": [redis_backend(&redis)], "prefix": prefix,
            "cache": { "max_bytes": 0 } })
    };
    // A chain: the first step asks for the second's keys in its requests.
    let steps = json!({ "viewer": step("events", "$.uid", "viewer_"), "author": step("viewer", "$.author", "author_") });
    let r = run(dir.path(), &pipeline(steps, "author", json!({ "parallelism": 1, "batch_size": 500 })));
    assert_eq!(r.out.len(), 4000);
    for (n, v) in by_n(&r.out) {
        assert_eq!((v["viewer_age"].as_u64(), v["author_age"].as_u64()), (Some(n % 100), Some((n * 7) % 100)), "{v}");
    }
    let (viewer, author) = (r.lookup("viewer"), r.lookup("author"));
    assert_eq!((author.prefetched, author.asked), (4000, 0), "the second step asked for nothing itself: {author:?}");
    assert!(viewer.requests <= 8, "one request per batch for both steps (8 batches, no cache): {viewer:?}");
    assert_eq!(viewer.request_keys, viewer.asked, "the requests are the first step's");

    // Side by side: two steps fed the same batches merge their misses.
    let steps = json!({ "viewer": step("events", "$.uid", "viewer_"), "author": step("events", "$.author", "author_") });
    let mut p = pipeline(steps, "viewer", json!({ "parallelism": 1, "batch_size": 500 }));
    p["sinks"]["authors"] = json!({ "type": "file", "path": "authors.jsonl", "inputs": ["author"] });
    let r = run(dir.path(), &p);
    let authors = json_lines(&dir.path().join("authors.jsonl"));
    assert_eq!((r.out.len(), authors.len()), (4000, 4000));
    assert!(authors.iter().all(|v| v["author_age"].as_u64() == Some((v["n"].as_u64().unwrap() * 7) % 100)));
    let (viewer, author) = (r.lookup("viewer"), r.lookup("author"));
    assert!(viewer.requests <= 8, "one request per batch for both steps: {viewer:?}");
    assert!(author.joined > 0 && viewer.asked + author.asked == viewer.request_keys, "{viewer:?} {author:?}");
}

#[test]
fn ordered_output_keeps_input_order_and_unordered_keeps_each_keys_order() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    users(&redis);
    write_events(dir.path(), 6000, 400);
    let step = |unordered: bool| {
        json!({ "users": { "type": "lookup-join", "inputs": ["events"], "key": "$.uid", "key_template": "user:{}", "backends": [redis_backend(&redis)],
            "unordered": unordered, "cache": { "ttl_ms": 5, "miss_ttl_ms": 5 } } })
    };
    let settings = json!({ "parallelism": 1, "batch_size": 100 });
    let r = run(dir.path(), &pipeline(step(false), "users", settings.clone()));
    let order: Vec<u64> = r.out.iter().map(|v| v["n"].as_u64().unwrap()).collect();
    assert_eq!(order, (0..6000).collect::<Vec<_>>(), "ordered: input order");
    let r = run(dir.path(), &pipeline(step(true), "users", settings));
    assert_eq!(r.out.len(), 6000);
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    for v in &r.out {
        let (uid, n) = (v["uid"].as_str().unwrap_or("-").to_string(), v["n"].as_u64().unwrap());
        if let Some(before) = last.insert(uid.clone(), n) {
            assert!(before < n, "key {uid}: {before} came after {n}");
        }
    }
}

/// `count` events at 2,000 a second, keyed over the first 50 users.
fn steady_events(redis_urls: &[String], count: u64, extra: Value) -> Value {
    let mut step = json!({ "type": "lookup-join", "inputs": ["gen"], "key": "$.position", "key_template": "user:u{}",
        "backends": redis_urls.iter().map(|u| json!({ "type": "redis", "url": u })).collect::<Vec<_>>(),
        "prefix": "user_", "cache": { "max_bytes": 0 }, "timeout_ms": 100, "breaker": { "failures": 2, "open_ms": 300, "open_max_ms": 1000 } });
    step.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let mut p = pipeline(json!({ "users": step }), "users", json!({ "parallelism": 2, "batch_linger_ms": 10 }));
    p["sources"] = json!({ "gen": { "type": "generator", "shape": "join-impression", "seed": 5, "count": count, "rate": 2000, "timestamp_field": "ts" } });
    p
}

/// Every event of a [`steady_events`] run of `count` came out with its user (positions are 0-49).
fn all_found(r: &Run, count: usize) {
    assert_eq!(r.out.len(), count, "no event lost");
    for v in &r.out {
        assert_eq!(v["user_age"], v["position"], "{v}");
    }
    assert!(r.dead.is_empty(), "{:?}", &r.dead[..r.dead.len().min(3)]);
}

#[test]
fn copy_a_killed_mid_run_its_traffic_moves_to_b_and_no_event_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Redis::start(), Redis::start());
    users(&a);
    users(&b);
    let p = steady_events(&[a.url.clone(), b.url.clone()], 6000, json!({}));
    let mut a = Some(a);
    let r = run_with(dir.path(), &p, |_| {
        std::thread::sleep(Duration::from_millis(1200));
        a.take().unwrap().kill();
    });
    all_found(&r, 6000);
    let l = r.lookup("users");
    let (ca, cb) = (&l.copies[0], &l.copies[1]);
    assert!(ca.requests > 0 && cb.requests > 0, "both copies took traffic: {l:?}");
    assert!(ca.opened >= 1, "A's breaker opened: {l:?}");
    assert!(l.failovers >= 1, "{l:?}");
    assert!(l.latency_p99.unwrap() < Duration::from_millis(500), "{l:?}");
}

#[test]
fn copy_a_slowed_opens_its_breaker_latency_stays_bounded_and_it_closes_once_a_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Redis::start(), Redis::start());
    users(&a);
    users(&b);
    let p = steady_events(&[a.url.clone(), b.url.clone()], 10_000, json!({}));
    let port = a.port;
    // 5 s: A sleeps from 0.6 s to 1.8 s, and its breaker's trials (after 0.3,
    // 0.6, 1 s open) find it awake well before the end.
    let r = run_with(dir.path(), &p, |_| {
        std::thread::sleep(Duration::from_millis(600));
        Redis::command_on(port, &["DEBUG", "SLEEP", "1.2"]);
    });
    all_found(&r, 10_000);
    let l = r.lookup("users");
    let ca = &l.copies[0];
    assert!(ca.opened >= 1 && ca.closed >= 1, "A's breaker opened, and closed again once A answered: {l:?}");
    // An event waits at most an attempt on A (100 ms) and one on B.
    assert!(l.latency_p99.unwrap() < Duration::from_millis(400), "{l:?}");
}

#[test]
fn both_copies_down_events_wait_with_backpressure_and_the_run_completes_when_one_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Redis::start(), Redis::start());
    users(&a);
    users(&b);
    let p = steady_events(&[a.url.clone(), b.url.clone()], 6000, json!({ "max_in_flight": 300 }));
    let (port, mut copies) = (a.port, Some((a, b)));
    let started = Instant::now();
    let r = run_with(dir.path(), &p, |stats| {
        std::thread::sleep(Duration::from_millis(800));
        let (a, b) = copies.take().unwrap();
        a.kill();
        b.kill();
        let step = stats("users");
        // While both are down the step holds at most its bound per worker,
        // and the source stops: its events wait in bounded channels.
        let mut held = 0;
        let mut read = Vec::new();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            held = held.max(step.events_in() - step.events_out());
            read.push(stats("gen").events_out());
        }
        assert!(held <= 2 * (300 + 1024), "the step held {held} events, more than its bound and a batch");
        assert!(read[19] - read[10] < 500, "the source went on reading: {read:?}");
        let back = Redis::start_on(port, &[]);
        users(&back);
        std::mem::forget(back);
    });
    all_found(&r, 6000);
    assert!(started.elapsed() > Duration::from_secs(3));
    let l = r.lookup("users");
    assert!(l.retries > 0 && l.failed_requests == 0, "{l:?}");
    // The restarted copy is left to the end of the process: stop it.
    Redis::command_on(port, &["SHUTDOWN", "NOSAVE"]);
}

#[test]
fn with_miss_after_the_events_of_an_unavailable_table_follow_the_miss_policy() {
    let dir = tempfile::tempdir().unwrap();
    let a = Redis::start();
    let url = a.url.clone();
    a.kill();
    write_events(dir.path(), 300, 100);
    let steps = json!({ "users": { "type": "lookup-join", "inputs": ["events"], "key": "$.uid", "key_template": "user:{}",
        "backends": [{ "type": "redis", "url": url }], "timeout_ms": 50, "on_unavailable": { "miss_after_ms": 300 }, "on_miss": "dead-letter" } });
    let started = Instant::now();
    let r = run(dir.path(), &pipeline(steps, "users", json!({})));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(r.out.is_empty());
    assert_eq!(r.dead.len(), 300, "nothing lost: every event is a dead letter");
    let unavailable: Vec<&Value> = r.dead.iter().filter(|d| d["kind"] == json!("lookup-unavailable")).collect();
    assert_eq!(unavailable.len(), 294);
    assert!(unavailable[0]["reason"].as_str().unwrap().contains(&url), "{}", unavailable[0]);
    assert_eq!(r.lookup("users").unavailable, 294);
}

#[test]
fn a_postgres_table_through_pipeline_json() {
    let (pg, dir) = (postgres_server::Postgres::start(), tempfile::tempdir().unwrap());
    pg.sql("CREATE TABLE users (id text PRIMARY KEY, age int, city text); INSERT INTO users SELECT 'u' || i, i, 'c' || (i % 3) FROM generate_series(0, 99) i;");
    write_events(dir.path(), 2000, 150);
    let steps = json!({ "users": { "type": "lookup-join", "inputs": ["events"], "key": "$.uid",
        "backends": [{ "type": "postgres", "url": pg.url, "query": "SELECT id, json_build_object('age', age, 'city', city)::text FROM users WHERE id = ANY($1)" }],
        "mode": "inner", "fields": ["age"], "prefix": "user_" } });
    let r = run(dir.path(), &pipeline(steps, "users", json!({})));
    let hits = (0..2000u64).filter(|n| n % 50 != 49 && n % 150 < 100).count();
    assert_eq!(r.out.len(), hits);
    assert!(r.out.iter().all(|v| v["user_age"].as_u64().map(|a| format!("u{a}")) == v["uid"].as_str().map(String::from)));
    assert!(r.lookup("users").requests <= 8, "{:?}", r.lookup("users"));
}

#[test]
fn a_redis_cluster_through_pipeline_json() {
    let (cluster, dir) = (redis_server::RedisCluster::start(3), tempfile::tempdir().unwrap());
    let pairs: Vec<(String, String)> = (0..100).map(|i| (format!("user:u{i}"), format!(r#"{{"age":{i}}}"#))).collect();
    cluster.set_all(&pairs);
    write_events(dir.path(), 2000, 150);
    let steps = json!({ "users": { "type": "lookup-join", "inputs": ["events"], "key": "$.uid", "key_template": "user:{}",
        "backends": [{ "type": "redis", "nodes": cluster.urls() }], "prefix": "user_", "cache": { "max_bytes": 0 } } });
    let r = run(dir.path(), &pipeline(steps, "users", json!({})));
    assert_eq!(r.out.len(), 2000);
    for (n, v) in by_n(&r.out) {
        let expected = (n % 50 != 49 && n % 150 < 100).then(|| json!(n % 150));
        assert_eq!(v.get("user_age").cloned(), expected, "{v}");
    }
}

#[test]
fn invalid_lookup_settings_are_refused_with_their_json_path_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let steps = json!({
        "a": { "type": "lookup-join", "inputs": ["events"], "key": "uid", "key_template": "user",
               "backends": [{ "type": "redis", "url": "http://x" }, { "type": "redis", "url": "redis://127.0.0.1:1", "values": "hashes" }],
               "as": "u", "prefix": "p", "mode": "inner", "on_miss": "emit" },
        "b": { "type": "lookup-join", "inputs": ["a"], "key": "$.uid", "backends": [{ "type": "postgres", "url": "postgres://x@127.0.0.1/db", "query": "SELECT 1" }], "fields": [] },
        "c": { "type": "lookup-join", "inputs": ["b"], "key": "$.uid", "backends": [{ "type": "postgres", "url": "postgres://x@127.0.0.1/db", "query": "SELECT 1" }], "timeout_ms": 5 }
    });
    let path = common::write_pipeline(dir.path(), &pipeline(steps, "c", json!({})));
    let errors = load_pipeline(&path).err().expect("refused").to_string();
    for want in [
        "$.steps.a.key",
        "is not a field path",
        "$.steps.a.key_template",
        "$.steps.a.backends[0].url",
        "is not a Redis url",
        "$.steps.a.backends[1]",
        "the same way",
        "$.steps.a.prefix",
        "$.steps.a.on_miss",
        "$.steps.b.backends[0].query",
        "$1",
        "$.steps.b.fields",
        "$.steps.c.timeout_ms",
        "reads the same table with another `timeout_ms`",
    ] {
        assert!(errors.contains(want), "missing {want:?} in:\n{errors}");
    }
    assert!(errors.lines().any(|l| l.contains("$.steps.a.key_template") && l.contains("pipeline.json:")), "located by line:column:\n{errors}");
}

/// The training join of the restart tests with a lookup of each
/// impression's user (`user:u0` .. `user:u89`; u90-u96 missing) before it,
/// at 2 workers, checkpoints every 40 ms.
fn lookup_then_join(redis: &Redis) -> Value {
    let mut p = common::file_join_pipeline();
    p["steps"]["users"] = json!({ "type": "lookup-join", "inputs": ["impressions"], "key": "$.user_id", "key_template": "user:{}",
        "backends": [redis_backend(redis)], "prefix": "user_" });
    p["steps"]["samples"]["inputs"] = json!(["users", "clicks"]);
    p["steps"]["samples"]["keys"] = json!({ "users": "$.request_id", "clicks": "$.request_id" });
    p["settings"]["parallelism"] = json!(2);
    p
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines = common::lines(path);
    lines.sort();
    lines
}

#[test]
fn a_lookup_before_a_join_holds_its_watermark_so_a_slow_table_makes_nothing_late() {
    let (redis, dir) = (Redis::start(), tempfile::tempdir().unwrap());
    redis.set_all((0..90).map(|i| (format!("user:u{i}"), format!(r#"{{"age":{i}}}"#))));
    common::write_join_inputs(dir.path(), 40_000);
    let mut p = lookup_then_join(&redis);
    p["steps"]["users"]["cache"] = json!({ "ttl_ms": 1, "miss_ttl_ms": 1 });
    let port = redis.port;
    let path = common::write_pipeline(dir.path(), &p);
    // The table stalls as the run starts, while the impressions' watermark
    // could run hours ahead of the events waiting for it.
    let stall = std::thread::spawn(move || Redis::command_on(port, &["DEBUG", "SLEEP", "0.5"]));
    std::thread::sleep(Duration::from_millis(50));
    let child = common::streamhost().arg("run").arg("--no-progress").arg(&path).stderr(std::process::Stdio::piped()).spawn().unwrap();
    stall.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let samples = json_lines(&dir.path().join("out/samples.jsonl"));
    assert_eq!(samples.len(), 40_000, "every impression once");
    let dead = common::lines(&dir.path().join("out/dead-letter.jsonl"));
    assert!(!dead.iter().any(|l| l.contains("\"kind\":\"late\"")), "late events: {:?}", &dead[..dead.len().min(3)]);
    for s in &samples {
        let user: u64 = s["user_id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(s.get("user_age").and_then(Value::as_u64), (user < 90).then_some(user), "{s}");
    }
}

#[test]
fn lookups_before_a_join_killed_at_random_moments_and_restarted_lose_and_duplicate_nothing() {
    use rand::{Rng, SeedableRng};
    let redis = Redis::start();
    redis.set_all((0..90).map(|i| (format!("user:u{i}"), format!(r#"{{"age":{i}}}"#))));
    let (reference, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [reference.path(), crashed.path()] {
        common::write_join_inputs(dir, 100_000);
    }
    let mut p = lookup_then_join(&redis);
    // A small cache: lookups go to the table all along.
    p["steps"]["users"]["cache"] = json!({ "ttl_ms": 2, "miss_ttl_ms": 2 });
    let run = |dir: &Path| common::streamhost().arg("run").arg("--no-progress").arg(common::write_pipeline(dir, &p)).stderr(std::process::Stdio::null()).spawn().unwrap();
    assert!(run(reference.path()).wait().unwrap().success());
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let (mut kills, mut runs) = (0, 0);
    loop {
        runs += 1;
        assert!(runs < 100, "no end in sight");
        let mut child = run(crashed.path());
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(20..500) + 20 * runs);
        match common::wait_or_kill(&mut child, deadline) {
            None => kills += 1,
            Some(status) => {
                assert!(status.success());
                break;
            }
        }
    }
    assert!(kills >= 3, "only {kills} kills: make the input larger");
    eprintln!("{kills} kills over {runs} runs");
    for file in ["out/samples.jsonl", "out/dead-letter.jsonl"] {
        let (want, got) = (sorted_lines(&reference.path().join(file)), sorted_lines(&crashed.path().join(file)));
        assert!(got == want, "{file}: {} lines after {kills} kills, {} without", got.len(), want.len());
    }
    let samples = json_lines(&reference.path().join("out/samples.jsonl"));
    assert_eq!(samples.len(), 100_000);
    assert!(samples.iter().filter(|s| s.get("user_age").is_some()).count() > 90_000);
}

/// The training-pipeline example (`examples/training-pipeline/run.sh`) runs to
/// its end on a redis-server of its own, on a copy of the example (its `out/`
/// in a temporary folder; the repository's plugins, scripts and the
/// training-join data linked in): every sample of the join comes out once,
/// with the features of its user, item and author exactly when the example's
/// dimension data has them, and the counts it prints are those.
#[test]
fn the_training_pipeline_example_runs() {
    let root = common::repo_root();
    let files = ["run.sh", "pipeline.json", "data/users.jsonl", "data/items.jsonl"];
    let (dir, ex) = common::example_copy("training-pipeline", &files, &["plugins", "scripts", "examples/training-join"]);
    // Plugin builds (a cold Python one takes minutes on a loaded machine) and the run.
    let (ok, stdout, stderr) = common::run_example_script(dir.path(), &ex.join("run.sh"), &[], Duration::from_secs(900));
    assert!(ok, "run.sh failed or hung:\n{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with("training-pipeline: ok (samples in examples/training-pipeline/out/samples.jsonl)"), "{stdout}");

    let data = root.join("examples/training-join/data");
    let (imps, clicks) = (json_lines(&data.join("impressions.jsonl")), json_lines(&data.join("clicks.jsonl")));
    let samples = json_lines(&ex.join("out/samples.jsonl"));
    let positives = common::training_join::check_samples(&imps, &clicks, &samples);
    let table = |file: &str, field: &str| -> std::collections::HashMap<String, Value> {
        json_lines(&ex.join("data").join(file)).into_iter().map(|r| (r["id"].as_str().unwrap().to_string(), r[field].clone())).collect()
    };
    let (users, items) = (table("users.jsonl", "features"), table("items.jsonl", "fields"));
    let (mut with_user, mut with_item, mut with_author) = (0, 0, 0);
    for s in &samples {
        match users.get(s["user_id"].as_str().unwrap_or("")) {
            Some(f) => {
                with_user += 1;
                for (k, v) in f.as_object().unwrap() {
                    assert_eq!(&s[format!("user_{k}")], v, "{s}");
                }
            }
            None => assert!(s.get("user_age").is_none(), "{s}"),
        }
        let item = items.get(s["item_id"].as_str().unwrap_or(""));
        with_item += usize::from(item.is_some());
        for field in ["category", "price", "ctr_7d", "author"] {
            assert_eq!(s[format!("item_{field}")], item.map_or(Value::Null, |i| i[field].clone()), "{s}");
        }
        let author = item.and_then(|i| users.get(i["author"].as_str().unwrap()));
        with_author += usize::from(author.is_some());
        assert_eq!(s["author_tier"], author.map_or(Value::Null, |a| a["tier"].clone()), "{s}");
    }
    for line in [
        format!("samples out:     {} ({positives} positives, {} negatives)", samples.len(), samples.len() - positives),
        format!("with features:   user {with_user}, item {with_item}, item author {with_author}"),
    ] {
        assert!(stdout.contains(&line), "the counts it prints ({line}):\n{stdout}");
    }
    // Its server is gone with it.
    let port: u16 = stdout.split("starting redis-server on 127.0.0.1:").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|p| p.parse().ok()).expect(&stdout);
    assert!(Redis::command_on(port, &["PING"]).is_none(), "redis-server still answers on {port}");
}
