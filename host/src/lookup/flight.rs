//! The bookkeeping of one worker's lookups: batches wait in input order for
//! the answers to their events' keys, a key is asked for once however many
//! events wait for it (single flight), a batch's misses go out as one request
//! (micro-batching), and answers are cached as they come back.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::cache::LookupCache;

/// A table's answer for one key: its value, or `None` (no such key).
pub type Value = Option<Vec<u8>>;

/// Where an answer goes: a batch (by its number) and an event in it.
type Waiter = (u64, usize);

/// A batch waiting for its answers.
struct Waiting {
    id: u64,
    /// Per event: its answer; `None` while it is out (an event without a
    /// key is answered at once, with no value).
    answers: Vec<Option<Value>>,
    /// Events still without an answer.
    open: usize,
}

/// The batches of a step on one worker whose lookups are out.
pub struct Lookups {
    cache: LookupCache,
    waiting: VecDeque<Waiting>,
    /// Per key asked for and not answered yet: the events waiting for it.
    in_flight: HashMap<Vec<u8>, Vec<Waiter>>,
    next_id: u64,
}

/// What [`Lookups::admit`] decided for a batch.
pub struct Admitted {
    /// The batch's number, as [`Lookups::ready`] gives it back.
    pub id: u64,
    /// The keys to ask the table for now (each once; none cached or already
    /// out): one request. Empty when the cache and earlier requests cover it.
    pub request: Vec<Vec<u8>>,
}

impl Lookups {
    pub fn new(cache: LookupCache) -> Self {
        Lookups { cache, waiting: VecDeque::new(), in_flight: HashMap::new(), next_id: 0 }
    }

    /// Takes a batch whose events have `keys` (`None`: an event without a
    /// key): answers what the cache holds and says which keys to ask for.
    pub fn admit(&mut self, keys: &[Option<Vec<u8>>], now: Instant) -> Admitted {
        let id = self.next_id;
        self.next_id += 1;
        let mut answers = Vec::with_capacity(keys.len());
        let mut request = Vec::new();
        let mut open = 0;
        for (i, key) in keys.iter().enumerate() {
            let Some(key) = key else {
                answers.push(Some(None));
                continue;
            };
            if let Some(waiters) = self.in_flight.get_mut(key) {
                waiters.push((id, i));
            } else if let Some(cached) = self.cache.get(key, now) {
                answers.push(Some(cached.map(<[u8]>::to_vec)));
                continue;
            } else {
                self.in_flight.insert(key.clone(), vec![(id, i)]);
                request.push(key.clone());
            }
            answers.push(None);
            open += 1;
        }
        self.waiting.push_back(Waiting { id, answers, open });
        Admitted { id, request }
    }

    /// The table answered `values` for `keys` (one request's, in order):
    /// every event waiting for one of them gets it, and the cache keeps it.
    pub fn answered(&mut self, keys: Vec<Vec<u8>>, values: Vec<Value>, now: Instant) {
        let first = self.waiting.front().map_or(0, |w| w.id);
        for (key, value) in keys.into_iter().zip(values) {
            for (id, i) in self.in_flight.remove(&key).unwrap_or_default() {
                // Batch numbers are consecutive from the front of the queue.
                let Some(w) = self.waiting.get_mut((id - first) as usize) else { continue };
                if w.answers[i].is_none() {
                    w.answers[i] = Some(value.clone());
                    w.open -= 1;
                }
            }
            self.cache.insert(key, value, now);
        }
    }

    /// The oldest batch, once every one of its events is answered: its
    /// number and answers, in event order. Batches leave in the order they
    /// were admitted.
    pub fn ready(&mut self) -> Option<(u64, Vec<Value>)> {
        if self.waiting.front()?.open > 0 {
            return None;
        }
        let w = self.waiting.pop_front()?;
        Some((w.id, w.answers.into_iter().map(|a| a.unwrap_or_default()).collect()))
    }

    /// Batches admitted and not yet out of [`Lookups::ready`].
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// Keys asked for and not answered yet.
    pub fn keys_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn cache(&self) -> &LookupCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lookups() -> Lookups {
        Lookups::new(LookupCache::new(1 << 20, Duration::from_secs(60), Duration::from_secs(60)))
    }

    fn keys(ks: &[&str]) -> Vec<Option<Vec<u8>>> {
        ks.iter().map(|k| (!k.is_empty()).then(|| k.as_bytes().to_vec())).collect()
    }

    fn v(s: &str) -> Value {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn a_hot_key_waited_for_by_thousands_of_events_is_asked_for_once() {
        let (mut l, now) = (lookups(), Instant::now());
        let first = l.admit(&keys(&["hot", "cold"]), now);
        assert_eq!(first.request, vec![b"hot".to_vec(), b"cold".to_vec()]);
        let mut later = Vec::new();
        for _ in 0..50 {
            let a = l.admit(&vec![Some(b"hot".to_vec()); 100], now);
            assert!(a.request.is_empty(), "already out: not asked again");
            later.push(a.id);
        }
        assert_eq!(l.keys_in_flight(), 2);
        l.answered(vec![b"hot".to_vec()], vec![v("H")], now);
        assert!(l.ready().is_none(), "the first batch still waits for `cold`, and the others wait behind it");
        l.answered(vec![b"cold".to_vec()], vec![None], now);
        assert_eq!(l.ready(), Some((first.id, vec![v("H"), None])));
        for id in later {
            assert_eq!(l.ready(), Some((id, vec![v("H"); 100])));
        }
        assert_eq!((l.pending(), l.keys_in_flight()), (0, 0));
        let again = l.admit(&keys(&["hot", "cold", ""]), now);
        assert!(again.request.is_empty(), "both answers cached, the miss too");
        assert_eq!(l.ready(), Some((again.id, vec![v("H"), None, None])));
    }

    #[test]
    fn batches_leave_in_input_order_whatever_order_their_answers_come_in() {
        let (mut l, now) = (lookups(), Instant::now());
        let a = l.admit(&keys(&["a1", "a2"]), now);
        let b = l.admit(&keys(&["b1", "a2", ""]), now);
        assert_eq!(b.request, vec![b"b1".to_vec()], "a2 is out for the first batch already");
        l.answered(b.request, vec![v("B1")], now);
        assert!(l.ready().is_none(), "b waits behind a");
        l.answered(vec![b"a2".to_vec(), b"a1".to_vec()], vec![v("A2"), v("A1")], now);
        assert_eq!(l.ready(), Some((a.id, vec![v("A1"), v("A2")])));
        assert_eq!(l.ready(), Some((b.id, vec![v("B1"), v("A2"), None])));
        assert!(l.ready().is_none());
    }

    #[test]
    fn the_same_key_twice_in_a_batch_is_one_request_and_two_answers() {
        let (mut l, now) = (lookups(), Instant::now());
        let a = l.admit(&keys(&["k", "k", "j", "k"]), now);
        assert_eq!(a.request, vec![b"k".to_vec(), b"j".to_vec()]);
        l.answered(a.request, vec![v("K"), v("J")], now);
        assert_eq!(l.ready(), Some((a.id, vec![v("K"), v("K"), v("J"), v("K")])));
        assert_eq!(l.cache().stats().hits, 0, "nothing was cached when the batch came");
    }
}
