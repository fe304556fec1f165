//! Which join keys an other input holds, per bucket, in memory: a main event whose
//! key no bucket of its window holds (most impressions get no click) is answered here
//! and never reaches the state store. The lookups then cost in proportion to the other
//! inputs (the small streams), not the main one.
//!
//! Each bucket keeps a set of 32-bit hashes of its keys (about 8 bytes per event of the
//! other input held; the sets are rebuilt from the state on a restore). A hash says
//! "maybe": a collision costs a lookup that finds nothing, never a wrong match.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The hashes are already uniform: spread them over the table's bits with one multiply.
#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v);
    }
}

type HashSet32 = HashSet<u32, BuildHasherDefault<Spread>>;

#[derive(Default)]
pub(super) struct KeyFilter {
    buckets: BTreeMap<i64, HashSet32>,
}

impl KeyFilter {
    pub fn insert(&mut self, bucket: i64, hash: u32) {
        self.buckets.entry(bucket).or_default().insert(hash);
    }

    /// Whether bucket `bucket` may hold a key of this hash.
    pub fn may_hold(&self, bucket: i64, hash: u32) -> bool {
        self.buckets.get(&bucket).is_some_and(|s| s.contains(&hash))
    }

    /// Forgets the buckets before `bucket` (their events were deleted).
    pub fn drop_before(&mut self, bucket: i64) {
        self.buckets = self.buckets.split_off(&bucket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_inserted_per_bucket_until_dropped() {
        let mut f = KeyFilter::default();
        f.insert(1, 7);
        f.insert(2, 7);
        f.insert(2, 9);
        assert!(f.may_hold(1, 7) && f.may_hold(2, 9));
        assert!(!f.may_hold(1, 9) && !f.may_hold(3, 7));
        f.drop_before(2);
        assert!(!f.may_hold(1, 7) && f.may_hold(2, 7));
    }
}
