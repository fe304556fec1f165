//! The lookup cache of one worker (shared-nothing, like its state): the
//! values of a dimension table by key, least recently used first out once
//! the entries pass `max_bytes`, each good for `ttl` after it was fetched;
//! misses are cached too (negative caching), for `miss_ttl`, so a key the
//! table lacks is not asked for again by every event that carries it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

/// What an entry costs besides its key and value (the map's node, the
/// entry's fields): a cache of many small values is bounded honestly.
pub const ENTRY_OVERHEAD: usize = 64;

/// Counters of a cache, for the step's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered by the cache (a cached miss included).
    pub hits: u64,
    /// Lookups the cache could not answer (absent or expired).
    pub misses: u64,
    /// Entries pushed out to stay within `max_bytes`.
    pub evictions: u64,
    /// Entries found expired.
    pub expirations: u64,
}

/// A value as the cache and the events waiting for it share it.
pub type Shared = Arc<[u8]>;

struct Entry {
    /// `None`: the table has no such key.
    value: Option<Shared>,
    expires: Instant,
}

pub struct LookupCache {
    entries: LruCache<Vec<u8>, Entry>,
    bytes: usize,
    max_bytes: usize,
    ttl: Duration,
    miss_ttl: Duration,
    stats: CacheStats,
}

fn cost(key: &[u8], value: &Option<Shared>) -> usize {
    key.len() + value.as_ref().map_or(0, |v| v.len()) + ENTRY_OVERHEAD
}

impl LookupCache {
    /// A cache of at most `max_bytes` (0: caches nothing); hits kept for
    /// `ttl`, misses for `miss_ttl` (zero: misses are not cached).
    pub fn new(max_bytes: usize, ttl: Duration, miss_ttl: Duration) -> Self {
        LookupCache { entries: LruCache::unbounded(), bytes: 0, max_bytes, ttl, miss_ttl, stats: CacheStats::default() }
    }

    /// The cached answer for `key` at `now`: `Some(Some(value))`, `Some(None)`
    /// (the table has no such key), or `None` (ask the table).
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Option<Shared>> {
        if self.entries.is_empty() {
            self.stats.misses += 1;
            return None;
        }
        let expired = match self.entries.peek(key) {
            None => {
                self.stats.misses += 1;
                return None;
            }
            Some(e) => e.expires <= now,
        };
        if expired {
            self.remove(key);
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        self.entries.get(key).map(|e| e.value.clone())
    }

    /// Keeps what the table answered for `key` at `now` (`None`: no such key).
    pub fn insert(&mut self, key: Vec<u8>, value: Option<Shared>, now: Instant) {
        if self.max_bytes == 0 {
            return;
        }
        let ttl = if value.is_some() { self.ttl } else { self.miss_ttl };
        self.remove(&key);
        let size = cost(&key, &value);
        if ttl.is_zero() || size > self.max_bytes {
            return;
        }
        while self.bytes + size > self.max_bytes {
            let Some((k, e)) = self.entries.pop_lru() else { break };
            self.bytes -= cost(&k, &e.value);
            self.stats.evictions += 1;
        }
        self.bytes += size;
        self.entries.put(key, Entry { value, expires: now + ttl });
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.pop(key) {
            self.bytes -= cost(key, &e.value);
        }
    }

    /// The bytes the entries take, by [`ENTRY_OVERHEAD`]'s measure.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);

    fn v(bytes: &[u8]) -> Option<Shared> {
        Some(bytes.into())
    }

    #[test]
    fn hits_expire_after_their_ttl_and_misses_after_theirs() {
        let t0 = Instant::now();
        let mut c = LookupCache::new(10_000, 10 * SEC, 2 * SEC);
        c.insert(b"u1".to_vec(), v(b"{\"age\":3}"), t0);
        c.insert(b"u2".to_vec(), None, t0);
        assert_eq!(c.get(b"u1", t0 + SEC), Some(v(b"{\"age\":3}")));
        assert_eq!(c.get(b"u2", t0 + SEC), Some(None), "a cached miss answers too");
        assert_eq!(c.get(b"u2", t0 + 2 * SEC), None, "the miss expired");
        assert_eq!(c.get(b"u1", t0 + 10 * SEC), None, "the hit expired");
        assert_eq!(c.get(b"u3", t0), None);
        assert!(c.is_empty(), "expired entries are dropped");
        assert_eq!(c.stats(), CacheStats { hits: 2, misses: 3, evictions: 0, expirations: 2 });
    }

    #[test]
    fn the_least_recently_used_goes_first_to_stay_within_max_bytes() {
        let t0 = Instant::now();
        let entry = 2 + 8 + ENTRY_OVERHEAD;
        let mut c = LookupCache::new(3 * entry, 60 * SEC, 60 * SEC);
        for k in ["k1", "k2", "k3"] {
            c.insert(k.as_bytes().to_vec(), v(&[0; 8]), t0);
        }
        assert!(c.get(b"k1", t0).is_some(), "k1 used: k2 is now the oldest");
        c.insert(b"k4".to_vec(), v(&[0; 8]), t0);
        assert_eq!(c.get(b"k2", t0), None);
        assert!(c.get(b"k1", t0).is_some() && c.get(b"k3", t0).is_some() && c.get(b"k4", t0).is_some());
        assert_eq!((c.bytes(), c.stats().evictions), (3 * entry, 1));
        c.insert(b"big".to_vec(), v(&vec![0; 4 * entry]), t0);
        assert_eq!(c.get(b"big", t0), None, "a value larger than the cache is not cached");
        assert_eq!(c.len(), 3, "and evicts nothing");
    }

    #[test]
    fn a_zero_ttl_or_size_caches_nothing() {
        let t0 = Instant::now();
        let mut c = LookupCache::new(10_000, 10 * SEC, Duration::ZERO);
        c.insert(b"gone".to_vec(), None, t0);
        assert_eq!(c.get(b"gone", t0), None, "misses not cached with miss_ttl 0");
        let mut c = LookupCache::new(0, 10 * SEC, 10 * SEC);
        c.insert(b"k".to_vec(), v(b"v"), t0);
        assert_eq!(c.get(b"k", t0), None);
    }

    /// The reference: entries in recency order, most recent last.
    #[derive(Default)]
    struct Model {
        entries: Vec<(Vec<u8>, Option<Shared>, u64)>,
    }

    impl Model {
        fn get(&mut self, key: &[u8], now: u64) -> Option<Option<Shared>> {
            let i = self.entries.iter().position(|e| e.0 == key)?;
            let e = self.entries.remove(i);
            if e.2 <= now {
                return None;
            }
            let v = e.1.clone();
            self.entries.push(e);
            Some(v)
        }

        fn insert(&mut self, key: Vec<u8>, value: Option<Shared>, now: u64, max: usize, ttl: u64, miss_ttl: u64) {
            self.entries.retain(|e| e.0 != key);
            let ttl = if value.is_some() { ttl } else { miss_ttl };
            let size = cost(&key, &value);
            if ttl == 0 || size > max {
                return;
            }
            while self.entries.iter().map(|e| cost(&e.0, &e.1)).sum::<usize>() + size > max {
                self.entries.remove(0);
            }
            self.entries.push((key, value, now + ttl));
        }
    }

    proptest! {
        /// Any sequence of gets and inserts (keys from a small set, values of
        /// any size, time moving on) answers as the reference does and keeps
        /// within its bytes.
        #[test]
        fn agrees_with_a_reference_model(
            ops in prop::collection::vec((any::<bool>(), 0u8..12, prop::option::of(0usize..200), 0u64..3), 1..300),
            max in 0usize..1200,
            ttl in 0u64..8,
            miss_ttl in 0u64..8,
        ) {
            let t0 = Instant::now();
            let mut c = LookupCache::new(max, SEC * ttl as u32, SEC * miss_ttl as u32);
            let mut m = Model::default();
            let mut now = 0u64;
            for (is_get, k, len, step) in ops {
                now += step;
                let key = vec![b'k', k];
                let at = t0 + SEC * now as u32;
                if is_get {
                    prop_assert_eq!(c.get(&key, at), m.get(&key, now));
                } else {
                    let value: Option<Shared> = len.map(|n| vec![k; n].into());
                    c.insert(key.clone(), value.clone(), at);
                    m.insert(key, value, now, max, ttl, miss_ttl);
                }
                prop_assert!(c.bytes() <= max);
                prop_assert_eq!(c.len(), m.entries.len());
            }
        }
    }
}
