//! The lookup layer's Redis backend and cache against a real redis-server
//! (started by the test on 127.0.0.1).

#[path = "common/redis.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use streamhost::lookup::{Backend, LookupCache, RedisBackend};

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
    let backend = rt.block_on(RedisBackend::connect(&server.url)).unwrap();
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
        cache.insert(k.clone(), v, now);
    }
    assert_eq!(cache.get(b"user:99", now), Some(Some(&b"{\"age\":99}"[..])));
    assert_eq!(cache.get(b"nobody", now), Some(None));
    assert_eq!(cache.get(b"nobody", now + Duration::from_secs(5)), None, "the miss expired: ask again");
}

#[test]
fn a_server_that_is_gone_is_an_error_naming_it() {
    let server = redis_server::Redis::start();
    let rt = runtime();
    let backend = rt.block_on(RedisBackend::connect(&server.url)).unwrap();
    let url = server.url.clone();
    drop(server);
    let err = rt.block_on(backend.get_many(&[b"k".to_vec()])).unwrap_err().to_string();
    assert!(err.contains(&url), "{err}");
    let err = rt.block_on(RedisBackend::connect(&url)).err().expect("no server: no connection").to_string();
    assert!(err.contains(&url) && err.contains("connecting"), "{err}");
}
