//! A table on two Redis copies, A and B (two redis-server processes started
//! by the test on 127.0.0.1), behind `FailoverBackend`: A killed mid-run, A
//! slowed by `DEBUG SLEEP`.

#[path = "common/redis.rs"]
mod redis_server;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamhost::lookup::{Backend, BreakerConfig, FailoverBackend, RedisBackend, RedisValues};

const BREAKER: BreakerConfig = BreakerConfig { failures: 2, open_for: Duration::from_millis(300), open_max: Duration::from_secs(2) };
const ATTEMPT: Duration = Duration::from_millis(150);

fn copy_with_users() -> redis_server::Redis {
    let r = redis_server::Redis::start();
    for i in 0..50 {
        assert_eq!(r.command(&["SET", &format!("user:{i}"), &format!("u{i}")]).as_deref(), Some("+OK"));
    }
    r
}

fn request(n: usize) -> (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) {
    let keys: Vec<Vec<u8>> = (0..10).map(|k| format!("user:{}", (n * 7 + k) % 60).into_bytes()).collect();
    let want = (0..10).map(|k| ((n * 7 + k) % 60 < 50).then(|| format!("u{}", (n * 7 + k) % 60).into_bytes())).collect();
    (keys, want)
}

fn setup() -> (redis_server::Redis, redis_server::Redis, tokio::runtime::Runtime, Arc<FailoverBackend>) {
    let (a, b) = (copy_with_users(), copy_with_users());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let copies: Vec<Arc<dyn Backend>> =
        vec![Arc::new(rt.block_on(RedisBackend::connect(&a.url, RedisValues::Strings)).unwrap()), Arc::new(rt.block_on(RedisBackend::connect(&b.url, RedisValues::Strings)).unwrap())];
    let table = Arc::new(FailoverBackend::new(copies, ATTEMPT, BREAKER));
    (a, b, rt, table)
}

#[test]
fn copy_a_killed_mid_run_traffic_moves_to_b_and_no_lookup_is_lost() {
    let (a, _b, rt, table) = setup();
    let mut a = Some(a);
    let mut slowest_after_kill = Duration::ZERO;
    for n in 0..300 {
        if n == 100 {
            drop(a.take());
        }
        let (keys, want) = request(n);
        let started = Instant::now();
        let got = rt.block_on(table.get_many(&keys)).unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(got, want, "request {n}");
        if n >= 100 {
            slowest_after_kill = slowest_after_kill.max(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (sa, sb) = (table.stats(0), table.stats(1));
    assert!(sa.requests.load(Relaxed) > 0 && sb.requests.load(Relaxed) > 0, "both copies took traffic before the kill");
    assert!(sa.opened.load(Relaxed) >= 1, "A's breaker opened");
    assert!(sa.rejected.load(Relaxed) > 0, "and A was skipped while it was open");
    assert!(table.failovers.load(Relaxed) >= 1, "requests that failed on A were answered by B");
    assert!(slowest_after_kill < Duration::from_secs(1), "failover within 1 s: the slowest request after the kill took {slowest_after_kill:?}");
    eprintln!(
        "A killed: slowest request after it {slowest_after_kill:?}, failovers {}, A failures {}, A rejected {}",
        table.failovers.load(Relaxed),
        sa.failures.load(Relaxed),
        sa.rejected.load(Relaxed)
    );
}

#[test]
fn copy_a_slowed_its_breaker_opens_latency_stays_bounded_and_it_closes_when_a_recovers() {
    let (a, _b, rt, table) = setup();
    let port = a.port;
    let sleeper = std::thread::spawn(move || redis_server::Redis::command_on(port, &["DEBUG", "SLEEP", "3"]));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    while table.stats(0).closed.load(Relaxed) == 0 {
        assert!(started.elapsed() < Duration::from_secs(15), "A's breaker never closed again");
        let (keys, want) = request(n);
        let t = Instant::now();
        assert_eq!(rt.block_on(table.get_many(&keys)).unwrap_or_else(|e| panic!("request {n}: {e}")), want);
        slowest = slowest.max(t.elapsed());
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let reopened_after = started.elapsed();
    sleeper.join().unwrap();
    let sa = table.stats(0);
    assert!(sa.opened.load(Relaxed) >= 1, "A's breaker opened while it slept: {sa:?}, after {reopened_after:?}, {n} requests");
    assert!(reopened_after >= Duration::from_secs(2), "closed only once A was awake ({reopened_after:?})");
    // One attempt on the slow copy (150 ms) and then B.
    assert!(slowest < Duration::from_millis(600), "latency stays bounded: slowest {slowest:?}");
    eprintln!("A slowed 3 s: {n} requests, slowest {slowest:?}, A opened {} times, closed again after {reopened_after:?}", sa.opened.load(Relaxed));
}
