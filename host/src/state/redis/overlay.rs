//! What a worker has committed since its last flush to Redis: per table the rows
//! written or deleted and the ranges deleted, per log bucket the bytes appended
//! and whether the bytes in Redis were dropped. Reads merge it over Redis;
//! a flush turns it into commands and empties it.

use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included, Unbounded};

/// Bytes an overlay row costs beyond its key and value (as the memory backend counts).
const ENTRY_OVERHEAD: u64 = 64;

/// A table's changes since the last flush.
#[derive(Default)]
pub(super) struct TableOverlay {
    /// Rows written (`Some`) or deleted (`None`), last write wins.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Ranges `[start, end)` deleted: disjoint, not touching, by start. The rows
    /// of Redis in them are gone; `writes` after the deletion are not.
    pub cleared: BTreeMap<Vec<u8>, Vec<u8>>,
    pub bytes: u64,
}

/// What the overlay says of a key.
pub(super) enum Lookup<'a> {
    /// Written or deleted since the flush.
    Written(Option<&'a [u8]>),
    /// In a range deleted since the flush.
    Cleared,
    /// As Redis holds it.
    Redis,
}

impl TableOverlay {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += (key.len() + value.len()) as u64 + ENTRY_OVERHEAD;
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.bytes += key.len() as u64 + ENTRY_OVERHEAD;
        self.writes.insert(key, None);
    }

    /// Deletes `[start, end)`: the writes in it go, the range joins `cleared`.
    pub fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        if start >= end {
            return;
        }
        let inside: Vec<Vec<u8>> = self.writes.range::<[u8], _>((Included(start.as_slice()), Excluded(end.as_slice()))).map(|(k, _)| k.clone()).collect();
        for k in inside {
            self.writes.remove(&k);
        }
        // Merge with every range it overlaps or touches.
        let (mut lo, mut hi) = (start, end);
        let touching: Vec<Vec<u8>> = self
            .cleared
            .range::<[u8], _>((Unbounded, Included(hi.as_slice())))
            .rev()
            .take_while(|(_, e)| e.as_slice() >= lo.as_slice())
            .map(|(s, _)| s.clone())
            .collect();
        for s in touching {
            let e = self.cleared.remove(&s).expect("listed");
            if s < lo {
                lo = s;
            }
            if e > hi {
                hi = e;
            }
        }
        self.bytes += (lo.len() + hi.len()) as u64 + ENTRY_OVERHEAD;
        self.cleared.insert(lo, hi);
    }

    pub fn lookup(&self, key: &[u8]) -> Lookup<'_> {
        if let Some(w) = self.writes.get(key) {
            return Lookup::Written(w.as_deref());
        }
        let cleared = self.cleared.range::<[u8], _>((Unbounded, Included(key))).next_back().is_some_and(|(_, e)| key < e.as_slice());
        if cleared {
            Lookup::Cleared
        } else {
            Lookup::Redis
        }
    }

    /// The parts of `[start, end)` (`end` None: to the end) not deleted since the
    /// flush, in order: where Redis still answers.
    pub fn uncovered(&self, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut at = start.to_vec();
        // The range containing `start`, if any, and every range starting inside.
        let first = self.cleared.range::<[u8], _>((Unbounded, Included(start))).next_back();
        let upper: Bound<&[u8]> = end.map_or(Unbounded, Excluded);
        let later = self.cleared.range::<[u8], _>((Excluded(start), upper));
        for (s, e) in first.into_iter().chain(later) {
            if e.as_slice() <= at.as_slice() {
                continue;
            }
            if s.as_slice() > at.as_slice() {
                out.push((at.clone(), Some(s.clone())));
            }
            at = e.clone();
            if end.is_some_and(|end| at.as_slice() >= end) {
                return out;
            }
        }
        if end.is_none_or(|end| at.as_slice() < end) {
            out.push((at, end.map(<[u8]>::to_vec)));
        }
        out
    }

    /// The writes in `[start, end)`.
    pub fn writes_in<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> std::collections::btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>> {
        let upper: Bound<&[u8]> = end.map_or(Unbounded, Excluded);
        if end.is_some_and(|end| end <= start) {
            return self.writes.range::<[u8], _>((Included(start), Excluded(start)));
        }
        self.writes.range::<[u8], _>((Included(start), upper))
    }
}

/// Merges rows from Redis (ascending, none in a cleared range) with the
/// overlay's writes of the same range: a write hides the row of its key.
pub(super) struct Merge<'a> {
    writes: std::iter::Peekable<std::collections::btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>>,
}

impl<'a> Merge<'a> {
    pub fn new(writes: std::collections::btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>) -> Self {
        Merge { writes: writes.peekable() }
    }

    /// Visits the writes before `key`, then the row `(key, value)` unless a write
    /// replaced it; false once `visit` said stop.
    pub fn row(&mut self, key: &[u8], value: &[u8], visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> bool {
        while let Some((k, v)) = self.writes.peek() {
            if k.as_slice() > key {
                break;
            }
            let replaced = k.as_slice() == key;
            if let Some(v) = v {
                if !visit(k, v) {
                    return false;
                }
            }
            self.writes.next();
            if replaced {
                return true;
            }
        }
        visit(key, value)
    }

    /// Visits the writes left.
    pub fn finish(&mut self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> bool {
        for (k, v) in self.writes.by_ref() {
            if let Some(v) = v {
                if !visit(k, v) {
                    return false;
                }
            }
        }
        true
    }
}

/// A log bucket's changes since the last flush.
#[derive(Default)]
pub(super) struct BucketChange {
    /// The bytes Redis holds for it are gone (the bucket was dropped).
    pub dropped: bool,
    /// Bytes appended after them (after nothing, if dropped); `Some`: the
    /// bucket exists.
    pub appended: Option<Vec<u8>>,
}

/// The bucket logs as Redis holds them and as changed since the flush.
#[derive(Default)]
pub(super) struct LogOverlay {
    pub names: Vec<String>,
    pub ids: std::collections::HashMap<String, u32>,
    /// Length of every bucket in Redis.
    pub stored: BTreeMap<(u32, i64), u64>,
    pub changes: BTreeMap<(u32, i64), BucketChange>,
    /// Appends and drops waiting for `commit` (drops applied first).
    pub appends: BTreeMap<(u32, i64), Vec<u8>>,
    pub drops: Vec<(u32, i64)>,
    /// Bytes allocated for the appends in `changes`.
    pub bytes: u64,
}

impl LogOverlay {
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// Bytes of Redis still part of a bucket, if any.
    pub fn base(&self, b: (u32, i64)) -> Option<u64> {
        match self.changes.get(&b) {
            Some(c) if c.dropped => None,
            _ => self.stored.get(&b).copied(),
        }
    }

    /// The committed length of a bucket, if it exists.
    pub fn len(&self, b: (u32, i64)) -> Option<u64> {
        let appended = self.changes.get(&b).and_then(|c| c.appended.as_ref()).map(|a| a.len() as u64);
        match (self.base(b), appended) {
            (None, None) => None,
            (base, appended) => Some(base.unwrap_or(0) + appended.unwrap_or(0)),
        }
    }

    pub fn append(&mut self, b: (u32, i64), bytes: &[u8]) -> u64 {
        // A drop buffered before this append empties the bucket first.
        let committed = if self.drops.contains(&b) { 0 } else { self.len(b).unwrap_or(0) };
        let pending = self.appends.entry(b).or_default();
        let offset = committed + pending.len() as u64;
        pending.extend_from_slice(bytes);
        offset
    }

    pub fn drop_bucket(&mut self, b: (u32, i64)) {
        self.appends.remove(&b);
        self.drops.push(b);
    }

    pub fn pending_bytes(&self) -> u64 {
        self.appends.values().map(|v| v.len() as u64).sum()
    }

    /// Applies the pending drops, then the pending appends.
    pub fn commit(&mut self) {
        for b in std::mem::take(&mut self.drops) {
            let known = self.stored.contains_key(&b) || self.changes.contains_key(&b);
            if !known {
                continue;
            }
            if let Some(a) = self.changes.get(&b).and_then(|c| c.appended.as_ref()) {
                self.bytes -= a.capacity() as u64;
            }
            let dropped = self.stored.contains_key(&b);
            if dropped {
                self.changes.insert(b, BucketChange { dropped, appended: None });
            } else {
                self.changes.remove(&b);
            }
        }
        for (b, bytes) in std::mem::take(&mut self.appends) {
            let change = self.changes.entry(b).or_default();
            let a = change.appended.get_or_insert_with(Vec::new);
            // Counted as allocated: a growing buffer holds up to twice its bytes.
            let before = a.capacity();
            if a.is_empty() {
                *a = bytes;
            } else {
                a.extend_from_slice(&bytes);
            }
            self.bytes = (self.bytes + a.capacity() as u64).saturating_sub(before as u64);
        }
    }

    /// Buckets of `log` that exist, ascending.
    pub fn buckets(&self, log: u32) -> Vec<i64> {
        let range = (log, i64::MIN)..=(log, i64::MAX);
        let mut all: Vec<i64> = self.stored.range(range.clone()).map(|((_, b), _)| *b).chain(self.changes.range(range).map(|((_, b), _)| *b)).collect();
        all.sort_unstable();
        all.dedup();
        all.retain(|&b| self.len((log, b)).is_some());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleared(t: &TableOverlay) -> Vec<(&[u8], &[u8])> {
        t.cleared.iter().map(|(s, e)| (s.as_slice(), e.as_slice())).collect()
    }

    #[test]
    fn range_deletes_merge_and_hide_earlier_writes_only() {
        let mut t = TableOverlay::default();
        t.put(b"b".to_vec(), b"1".to_vec());
        t.delete_range(b"a".to_vec(), b"c".to_vec());
        t.put(b"bb".to_vec(), b"2".to_vec());
        t.delete_range(b"e".to_vec(), b"g".to_vec());
        t.delete_range(b"c".to_vec(), b"d".to_vec()); // touches [a, c)
        t.delete_range(b"z".to_vec(), b"y".to_vec()); // empty
        assert_eq!(cleared(&t), vec![(&b"a"[..], &b"d"[..]), (b"e", b"g")]);
        assert!(matches!(t.lookup(b"b"), Lookup::Cleared));
        assert!(matches!(t.lookup(b"bb"), Lookup::Written(Some(b"2"))));
        assert!(matches!(t.lookup(b"d"), Lookup::Redis));
        assert!(matches!(t.lookup(b"f"), Lookup::Cleared));
        t.delete_range(b"\x00".to_vec(), b"f".to_vec()); // swallows both
        assert_eq!(cleared(&t), vec![(&b"\x00"[..], &b"g"[..])]);
        assert!(t.writes.is_empty());
    }

    #[test]
    fn uncovered_parts_of_a_range() {
        let mut t = TableOverlay::default();
        t.delete_range(b"b".to_vec(), b"d".to_vec());
        t.delete_range(b"f".to_vec(), b"h".to_vec());
        let parts = |s: &[u8], e: Option<&[u8]>| t.uncovered(s, e);
        let v = |s: &str| s.as_bytes().to_vec();
        assert_eq!(parts(b"a", Some(b"z")), vec![(v("a"), Some(v("b"))), (v("d"), Some(v("f"))), (v("h"), Some(v("z")))]);
        assert_eq!(parts(b"c", Some(b"g")), vec![(v("d"), Some(v("f")))]);
        assert_eq!(parts(b"c", None), vec![(v("d"), Some(v("f"))), (v("h"), None)]);
        assert_eq!(parts(b"b", Some(b"d")), vec![]);
        assert_eq!(parts(b"", Some(b"b")), vec![(v(""), Some(v("b")))]);
    }

    #[test]
    fn log_drops_apply_before_appends_and_hide_the_stored_bytes() {
        let mut l = LogOverlay::default();
        let b = (l.id("m"), 7);
        l.stored.insert(b, 10);
        assert_eq!(l.append(b, b"abc"), 10);
        l.drop_bucket(b);
        assert_eq!(l.append(b, b"xy"), 0, "after the drop buffered before it");
        l.commit();
        assert_eq!((l.base(b), l.len(b)), (None, Some(2)), "dropped, then the later append");
        assert_eq!(l.buckets(0), vec![7]);
        l.drop_bucket(b);
        l.commit();
        assert_eq!(l.len(b), None);
        assert!(l.buckets(0).is_empty());
        let fresh = (0, 9);
        l.append(fresh, b"");
        l.commit();
        assert_eq!(l.len(fresh), Some(0), "an empty append makes an empty bucket");
        l.drop_bucket(fresh);
        l.commit();
        assert!(!l.changes.contains_key(&fresh), "a bucket only in the overlay goes whole");
    }
}
