//! The client's bookkeeping against a table kept in memory (the Redis and
//! PostgreSQL paths are tested against real servers in host/tests/).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::lookup::backend::{Answer as Pending, Backend, LookupError};
use crate::lookup::failover::BreakerConfig;
use crate::lookup::service::{RetryPolicy, Unavailable};

/// A table in memory: keys starting with `slow` answer after 100 ms; while
/// `down` is set, every request fails.
#[derive(Default)]
struct Memory {
    rows: HashMap<Vec<u8>, Vec<u8>>,
    requests: AtomicU64,
    sizes: Mutex<Vec<usize>>,
    down: std::sync::atomic::AtomicBool,
}

impl Backend for Memory {
    fn name(&self) -> &str {
        "memory"
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> Pending<'a> {
        Box::pin(async move {
            self.requests.fetch_add(1, Relaxed);
            self.sizes.lock().unwrap().push(keys.len());
            if self.down.load(Relaxed) {
                return Err(LookupError::Request { backend: "memory".into(), error: "down".into() });
            }
            if keys.iter().any(|k| k.starts_with(b"slow")) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(keys.iter().map(|k| self.rows.get(k).cloned()).collect())
        })
    }
}

const BREAKER: BreakerConfig = BreakerConfig { failures: 3, open_for: Duration::from_secs(1), open_max: Duration::from_secs(1) };

fn setup(rows: &[(&str, &str)], unavailable: Unavailable) -> (Arc<Memory>, TableClient) {
    let memory = Arc::new(Memory { rows: rows.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect(), ..Default::default() });
    let policy = RetryPolicy { timeout: Duration::from_secs(2), retries: 1, backoff: Duration::from_millis(5), unavailable };
    let table = Arc::new(Table::new(vec![memory.clone() as Arc<dyn Backend>], policy, BREAKER));
    let service = Arc::new(LookupService::start().unwrap());
    let cache = LookupCache::new(1 << 20, Duration::from_secs(60), Duration::from_secs(60));
    (memory, TableClient::new(table, service, cache, 1000))
}

fn keys(ks: &[&str]) -> Vec<Option<Vec<u8>>> {
    ks.iter().map(|k| (!k.is_empty()).then(|| k.as_bytes().to_vec())).collect()
}

fn found(s: &str) -> Answer {
    Answer::Found(s.as_bytes().into())
}

/// Waits for every request out to be answered.
fn settle(c: &mut TableClient) {
    let until = Instant::now() + Duration::from_secs(10);
    while c.requests_out() > 0 {
        assert!(Instant::now() < until, "no answer");
        if let Ok(r) = c.replies().recv_timeout(Duration::from_millis(50)) {
            c.tx.send(r).unwrap();
            c.drain(Instant::now());
        }
    }
}

#[test]
fn a_hot_key_waited_for_by_thousands_of_events_is_asked_for_once() {
    let (memory, mut c) = setup(&[("hot", "H")], Unavailable::Wait);
    let slot = 0;
    c.add_slot(slot, true, Arc::default());
    let now = Instant::now();
    let first = c.admit(slot, keys(&["hot", "cold"]), 1, None, now);
    c.flush();
    let mut later = Vec::new();
    for _ in 0..50 {
        later.push(c.admit(slot, vec![Some(b"hot".to_vec()); 100], 1, None, now));
        c.flush();
    }
    assert_eq!(c.keys_in_flight(), 2, "5,000 events wait for `hot`, asked once");
    settle(&mut c);
    assert_eq!(memory.requests.load(Relaxed), 1, "one request in all");
    let ready = c.ready(slot);
    assert_eq!(ready.len(), 51);
    assert_eq!(ready[0], Ready { batch: first, events: vec![0, 1], cells: vec![found("H"), Answer::Missing] });
    for (r, id) in ready[1..].iter().zip(later) {
        assert_eq!((r.batch, r.cells.len()), (id, 100));
        assert!(r.cells.iter().all(|a| *a == found("H")));
    }
    let again = c.admit(slot, keys(&["hot", "cold", ""]), 1, None, now);
    c.flush();
    assert_eq!(memory.requests.load(Relaxed), 1, "both answers cached, the miss too");
    assert_eq!(c.ready(slot), vec![Ready { batch: again, events: vec![0, 1, 2], cells: vec![found("H"), Answer::Missing, Answer::Missing] }]);
}

#[test]
fn ordered_batches_leave_in_input_order_whatever_order_their_answers_come_in() {
    let (_, mut c) = setup(&[("slow1", "S"), ("b1", "B")], Unavailable::Wait);
    let slot = 0;
    c.add_slot(slot, true, Arc::default());
    let now = Instant::now();
    let a = c.admit(slot, keys(&["slow1"]), 1, None, now);
    c.flush();
    let b = c.admit(slot, keys(&["b1", "slow1"]), 1, None, now);
    c.flush();
    // b1's answer comes first; b still waits for a's key, and behind a.
    let r = c.replies().recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(r.keys, vec![b"b1".to_vec()]);
    c.tx.send(r).unwrap();
    c.drain(now);
    assert!(c.ready(slot).is_empty(), "b waits behind a");
    settle(&mut c);
    let ready = c.ready(slot);
    assert_eq!(ready.iter().map(|r| r.batch).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(ready[1].cells, vec![found("B"), found("S")]);
}

#[test]
fn unordered_events_leave_once_answered_and_one_keys_events_keep_their_order() {
    let (_, mut c) = setup(&[("slow1", "S"), ("k", "K")], Unavailable::Wait);
    let slot = 0;
    c.add_slot(slot, false, Arc::default());
    let now = Instant::now();
    let a = c.admit(slot, keys(&["slow1"]), 1, None, now);
    c.flush();
    let b = c.admit(slot, keys(&["k", "slow1"]), 1, None, now);
    c.flush();
    let d = c.admit(slot, keys(&["k"]), 1, None, now);
    c.flush();
    let r = c.replies().recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(r.keys, vec![b"k".to_vec()], "the fast request answers first");
    c.tx.send(r).unwrap();
    c.drain(now);
    // `k` is answered: its events of both batches leave, in input order,
    // ahead of the first batch, which waits.
    assert_eq!(c.ready(slot), vec![Ready { batch: b, events: vec![0], cells: vec![found("K")] }, Ready { batch: d, events: vec![0], cells: vec![found("K")] }]);
    settle(&mut c);
    assert_eq!(c.ready(slot), vec![Ready { batch: a, events: vec![0], cells: vec![found("S")] }, Ready { batch: b, events: vec![1], cells: vec![found("S")] }]);
    assert!(c.ready(slot).is_empty());
    let hit = c.admit(slot, keys(&["k"]), 1, None, now);
    assert_eq!(c.ready(slot), vec![Ready { batch: hit, events: vec![0], cells: vec![found("K")] }], "a cache hit leaves at once");
}

#[test]
fn two_steps_on_one_table_share_one_request_per_flush_and_a_chain_passes_its_answers_on() {
    let (memory, mut c) = setup(&[("u:1", "U1"), ("u:2", "U2"), ("u:3", "U3")], Unavailable::Wait);
    let stats = Arc::new(StepStats::default());
    let (first, second) = (0, 1);
    c.add_slot(first, true, Arc::default());
    c.add_slot(second, true, stats.clone());
    let now = Instant::now();
    // Two steps fed the same batch: their misses go out together.
    c.admit(first, keys(&["u:1", "u:2"]), 1, None, now);
    c.admit(second, keys(&["u:2", "u:3"]), 1, None, now);
    c.flush();
    settle(&mut c);
    assert_eq!((memory.requests.load(Relaxed), memory.sizes.lock().unwrap().clone()), (1, vec![3]));
    assert_eq!(c.ready(first)[0].cells, vec![found("U1"), found("U2")]);
    assert_eq!(c.ready(second)[0].cells, vec![found("U2"), found("U3")]);
    assert_eq!(stats.joined.load(Relaxed), 1, "u:2 was out already for the first step");

    // A chain: the first step asks for its own key and the second's (two
    // columns) and hands the second's answers on with its output.
    let (memory, mut c) = setup(&[("u:1", "U1"), ("u:9", "U9")], Unavailable::Wait);
    let stats = Arc::new(StepStats::default());
    let (first, second) = (0, 1);
    c.add_slot(first, true, Arc::default());
    c.add_slot(second, true, stats.clone());
    c.admit(first, keys(&["u:1", "u:9", "u:2", "u:1"]), 2, None, now);
    c.flush();
    settle(&mut c);
    let r = c.ready(first).remove(0);
    assert_eq!(r.cells, vec![found("U1"), found("U9"), Answer::Missing, found("U1")]);
    // Only the first event goes on: the second's cells for it.
    c.stash(second, vec![r.cells[1].clone()]);
    assert!(c.take_stash(second, 2).is_none(), "a stash for another batch size is dropped");
    c.stash(second, vec![r.cells[1].clone()]);
    let stash = c.take_stash(second, 1);
    let id = c.admit(second, keys(&["u:9"]), 1, stash, now);
    c.flush();
    assert_eq!(c.ready(second), vec![Ready { batch: id, events: vec![0], cells: vec![found("U9")] }]);
    assert_eq!((memory.requests.load(Relaxed), stats.prefetched.load(Relaxed)), (1, 1), "both steps' keys in one request");
}

#[test]
fn a_table_down_past_miss_after_answers_unavailable_and_caches_nothing() {
    let (memory, mut c) = setup(&[("k", "K")], Unavailable::GiveUpAfter(Duration::from_millis(200)));
    memory.down.store(true, Relaxed);
    let slot = 0;
    c.add_slot(slot, true, Arc::default());
    let started = Instant::now();
    c.admit(slot, keys(&["k"]), 1, None, started);
    c.flush();
    settle(&mut c);
    assert!(started.elapsed() >= Duration::from_millis(200), "tried on until miss_after_ms");
    let ready = c.ready(slot);
    assert!(matches!(&ready[0].cells[0], Answer::Unavailable(why) if why.contains("down")), "{ready:?}");
    assert!(c.table().stats.failed.load(Relaxed) == 1 && c.table().stats.retries.load(Relaxed) >= 2);
    memory.down.store(false, Relaxed);
    c.admit(slot, keys(&["k"]), 1, None, Instant::now());
    c.flush();
    settle(&mut c);
    assert_eq!(c.ready(slot)[0].cells, vec![found("K")], "asked again, not answered from the cache");
}
