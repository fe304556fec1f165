//! The lookup layer's Redis backend and cache against a real redis-server
//! (started by the test on 127.0.0.1).

#[path = "common/redis.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use streamhost::lookup::{Backend, LookupCache, RedisBackend, RedisValues};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn mget_answers_every_key_in_order_with_none_for_the_missing() {
    let server = redis_server::Redis::start();
    for i in 0..100 {
        assert_eq!(server.command(&["SET", &format!("user:{i}"), &format!("{{\"age\":{i}}}")]).as_deref(), Some("+OK"));
    }
    let rt = runtime();
    let backend = rt.block_on(RedisBackend::connect(&server.url, RedisValues::Strings)).unwrap();
    // Asked out of order, with absent keys among them, and a key twice.
    let keys: Vec<Vec<u8>> = ["user:7", "nobody", "user:99", "user:0", "user:7", "user:100"].iter().map(|k| k.as_bytes().to_vec()).collect();
    let got = rt.block_on(backend.get_many(&keys)).unwrap();
    let text: Vec<Option<String>> = got.into_iter().map(|v| v.map(|b| String::from_utf8(b).unwrap())).collect();
    let want = [Some("{\"age\":7}"), None, Some("{\"age\":99}"), Some("{\"age\":0}"), Some("{\"age\":7}"), None];
    assert_eq!(text, want.map(|w| w.map(String::from)));
    assert!(rt.block_on(backend.get_many(&[])).unwrap().is_empty(), "no keys: no request");

    // A thousand keys in one request.
    let many: Vec<Vec<u8>> = (0..1000).map(|i| format!("user:{}", i % 150).into_bytes()).collect();
    let got = rt.block_on(backend.get_many(&many)).unwrap();
    assert_eq!(got.iter().filter(|v| v.is_some()).count(), (0..1000).filter(|i| i % 150 < 100).count());

    // What the table answered, cached: hits and misses alike.
    let mut cache = LookupCache::new(1 << 20, Duration::from_secs(60), Duration::from_secs(5));
    let now = Instant::now();
    for (k, v) in keys.iter().zip(rt.block_on(backend.get_many(&keys)).unwrap()) {
        cache.insert(k.clone(), v.map(Into::into), now);
    }
    assert_eq!(cache.get(b"user:99", now), Some(Some(b"{\"age\":99}"[..].into())));
    assert_eq!(cache.get(b"nobody", now), Some(None));
    assert_eq!(cache.get(b"nobody", now + Duration::from_secs(5)), None, "the miss expired: ask again");
}

#[test]
fn a_server_that_is_gone_is_an_error_naming_it() {
    let server = redis_server::Redis::start();
    let rt = runtime();
    let backend = rt.block_on(RedisBackend::connect(&server.url, RedisValues::Strings)).unwrap();
    let url = server.url.clone();
    drop(server);
    let err = rt.block_on(backend.get_many(&[b"k".to_vec()])).unwrap_err().to_string();
    assert!(err.contains(&url), "{err}");
    let err = rt.block_on(RedisBackend::connect(&url, RedisValues::Strings)).err().expect("no server: no connection").to_string();
    assert!(err.contains(&url) && err.contains("connecting"), "{err}");
}

use std::sync::Arc;

use streamhost::lookup::{BackendConfig, BreakerConfig, LookupService, RedisConfig, Request, RetryPolicy, Table, Unavailable};

const POLICY: RetryPolicy = RetryPolicy { timeout: Duration::from_millis(300), retries: 2, backoff: Duration::from_millis(20), unavailable: Unavailable::GiveUpAfter(Duration::ZERO) };
const BREAKER: BreakerConfig = BreakerConfig { failures: 3, open_for: Duration::from_secs(1), open_max: Duration::from_secs(1) };

/// A table on the server at `url`, connected on first use on `service`'s runtime.
fn table(service: &LookupService, url: &str, policy: RetryPolicy) -> Arc<Table> {
    let _inside = service.enter();
    let config = BackendConfig::Redis(RedisConfig { url: Some(url.into()), nodes: None, values: RedisValues::Strings });
    Arc::new(Table::new(vec![config.open(None).unwrap()], policy, BREAKER))
}

#[test]
fn the_lookup_runtime_answers_on_the_workers_channel_without_blocking_it() {
    let server = redis_server::Redis::start();
    server.command(&["SET", "item:1", "{\"cat\":\"news\"}"]);
    let service = LookupService::start().unwrap();
    let table = table(&service, &server.url, POLICY);
    let (tx, rx) = crossbeam_channel::unbounded();
    let submitted = Instant::now();
    for tag in 0..3 {
        service.submit(&table, Request { tag, keys: vec![b"item:1".to_vec(), b"item:2".to_vec()] }, tx.clone());
    }
    assert!(submitted.elapsed() < Duration::from_millis(50), "submit does not wait for the answer");
    let mut tags = Vec::new();
    for _ in 0..3 {
        let reply = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.result.unwrap(), vec![Some(b"{\"cat\":\"news\"}".to_vec()), None]);
        assert_eq!((reply.attempts, reply.keys.len()), (1, 2));
        tags.push(reply.tag);
    }
    tags.sort();
    assert_eq!(tags, vec![0, 1, 2]);
}

#[test]
fn a_slow_server_times_out_each_attempt_then_the_request_gives_up_or_waits_as_told() {
    let server = redis_server::Redis::start();
    let service = LookupService::start().unwrap();
    let give_up = table(&service, &server.url, POLICY);
    let wait = table(&service, &server.url, RetryPolicy { unavailable: Unavailable::Wait, ..POLICY });
    // The server is busy for 3 s: every attempt of the requests times out.
    let sleeper = {
        let port = server.port;
        std::thread::spawn(move || redis_server::Redis::command_on(port, &["DEBUG", "SLEEP", "3"]))
    };
    std::thread::sleep(Duration::from_millis(100));
    let (tx, rx) = crossbeam_channel::unbounded();
    let started = Instant::now();
    service.submit(&give_up, Request { tag: 1, keys: vec![b"k".to_vec()] }, tx.clone());
    service.submit(&wait, Request { tag: 2, keys: vec![b"k".to_vec()] }, tx.clone());
    let reply = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let took = started.elapsed();
    assert_eq!(reply.tag, 1, "the request that gives up answers first");
    let err = reply.result.unwrap_err().to_string();
    assert!(err.contains("no answer within 300ms") && err.contains(&server.url), "{err}");
    assert_eq!(reply.attempts, 3, "the first attempt and two retries");
    // 3 timeouts of 300 ms and backoffs of 20 + 40 ms, well before the server wakes.
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(give_up.stats.retries.load(std::sync::atomic::Ordering::Relaxed), 2);
    // The other one tries on while the table is unavailable, and is answered once it wakes.
    assert!(wait.stats.waiting() == 1 || rx.is_empty(), "it waits");
    let reply = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((reply.tag, reply.result.unwrap()), (2, vec![None]));
    assert!(reply.attempts > 3 && started.elapsed() >= Duration::from_millis(2800), "answered after the server woke: {:?}", started.elapsed());
    assert_eq!(wait.stats.waiting(), 0);
    sleeper.join().unwrap();
}

#[test]
fn hashes_come_back_as_json_objects_of_their_fields() {
    let server = redis_server::Redis::start();
    server.command(&["HSET", "item:1", "cat", "news", "len", "30"]);
    server.command(&["SET", "item:2", "a string, not a hash"]);
    let rt = runtime();
    let backend = rt.block_on(RedisBackend::connect(&server.url, RedisValues::Hashes)).unwrap();
    let got = rt.block_on(backend.get_many(&[b"item:1".to_vec(), b"item:9".to_vec()])).unwrap();
    assert_eq!(got, vec![Some(br#"{"cat":"news","len":"30"}"#.to_vec()), None], "an absent hash is a miss");
    let err = rt.block_on(backend.get_many(&[b"item:2".to_vec()])).unwrap_err().to_string();
    assert!(err.contains("WRONGTYPE") && err.contains(&server.url), "a key of another type is an error naming the server: {err}");
}
