//! Lookups through streamhost's lookup runtime against `redis-benchmark`
//! on the same redis-server (started here on 127.0.0.1), alternating, as a
//! first figure for issue 12 (the `lookup-join` step does not exist yet:
//! this measures the runtime and the Redis backend it will use).
//!
//! ```text
//! cargo bench -p streamhost-tests --bench lookup                      # 1M keys, 3 rounds
//! cargo bench -p streamhost-tests --bench lookup -- --keys 2000000 --batch 200 --out 32 --rounds 5
//! ```
//!
//! (a) `redis-benchmark -t get -P 16 -r K -n N`: GETs of random keys, 16
//! pipelined per connection (its default 50 connections). (b) one thread
//! submits MGETs of `--batch` (100) random keys of the same key space, at
//! most `--out` (16) requests out at once, replies on a channel, until N
//! keys are answered. Reported: keys answered per second on each side and
//! the ratio.

#[allow(dead_code)]
#[path = "../../host/tests/common/redis.rs"]
mod redis_server;

use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use std::sync::Arc;

use streamhost::lookup::{BackendConfig, BreakerConfig, LookupService, RedisConfig, RedisValues, Request, RetryPolicy, Table, Unavailable};

struct Args {
    keys: u64,
    space: u64,
    batch: usize,
    out: usize,
    rounds: usize,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default);
    Args {
        keys: value("--keys", 1_000_000),
        space: value("--space", 100_000),
        batch: value("--batch", 100) as usize,
        out: value("--out", 16) as usize,
        rounds: value("--rounds", 3) as usize,
    }
}

/// redis-benchmark's GETs per second.
fn redis_benchmark(port: u16, a: &Args) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-t", "get", "-P", "16", "-q", "-r", &a.space.to_string(), "-n", &a.keys.to_string()])
        .output()
        .expect("redis-benchmark (scripts/setup.sh installs redis-server, which has it)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "GET: 330033.00 requests per second, p50=..." (after carriage-return progress lines)
    let line = text.rsplit('\r').next().unwrap_or(&text).lines().find(|l| l.contains("GET:")).unwrap_or_else(|| panic!("redis-benchmark said: {text}"));
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("redis-benchmark said: {line}"))
}

/// Keys per second answered through the lookup runtime; checks every answer.
fn streamhost_lookups(url: &str, a: &Args, seed: u64) -> f64 {
    let service = LookupService::start().unwrap();
    let policy = RetryPolicy { timeout: Duration::from_secs(5), retries: 0, backoff: Duration::from_millis(10), unavailable: Unavailable::Wait };
    let table = {
        let _inside = service.enter();
        let config = BackendConfig::Redis(RedisConfig { url: Some(url.into()), nodes: None, values: RedisValues::Strings });
        let breaker = BreakerConfig { failures: 3, open_for: Duration::from_secs(1), open_max: Duration::from_secs(1) };
        Arc::new(Table::new(vec![config.open(None).unwrap()], policy, breaker))
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let (mut sent, mut answered, mut tag, mut out) = (0u64, 0u64, 0u64, 0usize);
    let started = Instant::now();
    while answered < a.keys {
        // Submit up to `out` requests, then take a reply.
        while sent < a.keys && out < a.out {
            tag += 1;
            let request = Request { tag, keys: (0..a.batch).map(|_| format!("key:{:012}", rng.random_range(0..a.space)).into_bytes()).collect() };
            sent += request.keys.len() as u64;
            service.submit(&table, request, tx.clone());
            out += 1;
        }
        let reply = rx.recv_timeout(Duration::from_secs(30)).expect("a reply");
        out -= 1;
        let values = reply.result.unwrap_or_else(|e| panic!("{e}"));
        assert!(values.iter().all(Option::is_some), "every key of the space is set");
        answered += values.len() as u64;
    }
    answered as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = args();
    if std::env::args().any(|x| x == "--list") {
        return;
    }
    let server = redis_server::Redis::start();
    // The key space redis-benchmark's `-r` draws from: key:000000000000 ..
    let fill = Command::new("redis-benchmark")
        .args(["-p", &server.port.to_string(), "-t", "set", "-P", "16", "-q", "-d", "100", "-n", &(a.space * 20).to_string(), "-r", &a.space.to_string()])
        .output()
        .unwrap();
    assert!(fill.status.success());
    let dbsize = server.command(&["DBSIZE"]).unwrap_or_default();
    println!("redis-server on {}; {} keys of 100 B ({dbsize})", server.port, a.space);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let mut run = |side: usize| {
            if side == 0 {
                ours.push(streamhost_lookups(&server.url, &a, round as u64));
            } else {
                theirs.push(redis_benchmark(server.port, &a));
            }
        };
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        run(order[0]);
        run(order[1]);
        println!("  round {}: lookup runtime {:.0} keys/s (MGET of {}, {} out), redis-benchmark -P 16 {:.0} GET/s", round + 1, ours[round], a.batch, a.out, theirs[round]);
    }
    let (o, t) = (median(ours), median(theirs));
    println!("median: lookup runtime {o:.0} keys/s, redis-benchmark {t:.0} GET/s, ratio {:.2}", o / t);
}
