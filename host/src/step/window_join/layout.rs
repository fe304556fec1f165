//! How join state is laid out in ordered byte-keyed tables.
//!
//! - `main`: `fire_time ++ seq` → the main event. Everything whose window has
//!   ended by watermark W is the prefix of the table up to W: firing is one
//!   ordered scan, and cleaning up one range delete.
//! - one table per other input: `bucket ++ hash(key) ++ time ++ seq` →
//!   the event (32 bytes). A main event's matches are found with one range
//!   scan per bucket its window covers (two, with the default bucket =
//!   window length); a bucket whose events can no longer match any window
//!   is dropped with one range delete. `bucket ++ hash(key)` is a fixed
//!   16-byte prefix that every scan stays within, so RocksDB's prefix bloom
//!   filters answer most lookups of keys without matches (most
//!   impressions get no click) without reading a block. The key itself is
//!   in the value: a match is checked against it, so a hash collision
//!   costs a read, never a wrong match.
//!
//! Times are big-endian with the sign bit flipped, so byte order is time
//! order; `seq` (per join, increasing) keeps equal times apart and in
//! arrival order. Writing an event is one put: no read-modify-write.

use std::sync::Arc;

use crate::event::{Event, Header, Origin, Partition};

/// Order-preserving encoding of an event time.
pub(crate) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn time_from(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Key of a main event: its firing time, then its sequence number.
pub(crate) fn main_key(fire_time: i64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&time_bytes(fire_time));
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The exclusive end of every main key firing at or before `t`.
pub(crate) fn main_end(t: i64) -> Vec<u8> {
    let mut k = time_bytes(t).to_vec();
    k.extend_from_slice(&[0xFF; 9]);
    k
}

/// Length of the prefix shared by an other input's keys of one join key
/// and bucket: `bucket ++ hash(key)`.
pub(crate) const OTHER_PREFIX_LEN: usize = 16;

/// The stable hash of a join key that other-input keys are ordered by.
#[cfg(not(test))]
fn key_hash(key: &[u8]) -> [u8; 8] {
    xxhash_rust::xxh3::xxh3_64(key).to_be_bytes()
}

/// Unit tests hash by length alone: keys collide all the time, so the
/// join's tests (against a nested-loop reference) prove collisions are
/// resolved. (The end-to-end tests and the bench use the real hash.)
#[cfg(test)]
fn key_hash(key: &[u8]) -> [u8; 8] {
    (key.len() as u64).to_be_bytes()
}

/// The 32 bits of a key's hash an in-memory filter keeps (see `key_filter.rs`).
pub(crate) fn key_hash32(key: &[u8]) -> u32 {
    let h = key_hash(key);
    u32::from_be_bytes([h[4], h[5], h[6], h[7]])
}

/// The bucket and [`key_hash32`] of an other input's state key.
pub(crate) fn filter_entry(other_key: &[u8]) -> Option<(i64, u32)> {
    let prefix = other_key.get(..OTHER_PREFIX_LEN)?;
    Some((time_from(&prefix[..8]), u32::from_be_bytes(prefix[12..16].try_into().ok()?)))
}

/// `bucket ++ hash(key)`: where one key's events of one bucket start.
fn bucket_prefix(bucket: i64, key: &[u8]) -> [u8; OTHER_PREFIX_LEN] {
    let mut k = [0u8; OTHER_PREFIX_LEN];
    k[..8].copy_from_slice(&time_bytes(bucket));
    k[8..].copy_from_slice(&key_hash(key));
    k
}

/// Key of an event of an other input.
pub(crate) fn other_key(bucket: i64, key: &[u8], time: i64, seq: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(&bucket_prefix(bucket, key));
    k[16..24].copy_from_slice(&time_bytes(time));
    k[24..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The range of one key's events at times `lo..=hi` within a bucket (and
/// of the keys whose hash collides with its; see the module docs).
pub(crate) fn other_range(bucket: i64, key: &[u8], lo: i64, hi: i64) -> (Vec<u8>, Vec<u8>) {
    let prefix = bucket_prefix(bucket, key);
    let mut start = prefix.to_vec();
    start.extend_from_slice(&time_bytes(lo));
    let mut end = prefix.to_vec();
    end.extend_from_slice(&time_bytes(hi));
    end.extend_from_slice(&[0xFF; 9]);
    (start, end)
}

/// The exclusive end of every bucket before `bucket`.
pub(crate) fn buckets_before(bucket: i64) -> [u8; 8] {
    time_bytes(bucket)
}

/// The bucket of time `t` for buckets `width` ms wide.
pub(crate) fn bucket_of(t: i64, width: i64) -> i64 {
    t.div_euclid(width)
}

/// An event in state, with what the join needs again when it fires.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    pub event: Event,
    pub origin: Origin,
    pub join_key: Vec<u8>,
    /// Set on arrival when the value is a JSON object whose member names
    /// are unique and none starts with an output prefix of the merge
    /// joiner: its names cannot collide, so firing need not parse it.
    pub plain_names: bool,
}

#[cfg(test)]
pub(crate) fn encode(s: &Stored) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(s, &mut out);
    out
}

/// A compact binary encoding, into `out` (cleared first, its allocation
/// reused). State is written once per event and read once when it fires:
/// no need for a self-describing format.
pub(crate) fn encode_into(s: &Stored, out: &mut Vec<u8>) {
    let e = &s.event;
    out.clear();
    out.reserve(40 + e.value.len() + s.join_key.len() + s.origin.source.len());
    out.push(3); // format version
    out.push(u8::from(s.plain_names));
    out.extend_from_slice(&e.timestamp.to_le_bytes());
    out.extend_from_slice(&s.origin.position.to_le_bytes());
    put_bytes(out, s.origin.source.as_bytes());
    match &s.origin.partition {
        Some(p) => {
            out.push(1);
            put_bytes(out, p.topic.as_bytes());
            out.extend_from_slice(&p.partition.to_le_bytes());
        }
        None => out.push(0),
    }
    put_bytes(out, &s.join_key);
    match &e.key {
        Some(k) => {
            out.push(1);
            put_bytes(out, k);
        }
        None => out.push(0),
    }
    put_bytes(out, &e.value);
    out.extend_from_slice(&(e.headers.len() as u32).to_le_bytes());
    for h in &e.headers {
        put_bytes(out, h.name.as_bytes());
        put_bytes(out, &h.value);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Decodes what [`encode_into`] wrote; `None` if the bytes are not such a record
/// (state written by another version, or damaged).
pub(crate) fn decode(bytes: &[u8]) -> Option<Stored> {
    decode_in(bytes, &mut SourceNames::default())
}

/// Source names and Kafka partitions already decoded, shared: a fired chunk
/// holds thousands of events from a handful of sources and partitions.
#[derive(Default)]
pub(crate) struct SourceNames(Vec<Arc<str>>, Vec<Arc<Partition>>);

impl SourceNames {
    fn get(&mut self, name: &[u8]) -> Option<Arc<str>> {
        if let Some(known) = self.0.iter().find(|n| n.as_bytes() == name) {
            return Some(known.clone());
        }
        let name: Arc<str> = std::str::from_utf8(name).ok()?.into();
        self.0.push(name.clone());
        Some(name)
    }

    fn partition(&mut self, topic: &[u8], partition: i32) -> Option<Arc<Partition>> {
        if let Some(known) = self.1.iter().find(|p| p.partition == partition && p.topic.as_bytes() == topic) {
            return Some(known.clone());
        }
        let p = Arc::new(Partition { topic: std::str::from_utf8(topic).ok()?.to_string(), partition });
        self.1.push(p.clone());
        Some(p)
    }
}

/// The flags byte (format 2 on), then whether a partition follows the
/// source name (format 3 on): what the version byte `v` says is there.
fn version_fields(v: u8) -> Option<(bool, bool)> {
    match v {
        1 => Some((false, false)), // before the flags byte
        2 => Some((true, false)),
        3 => Some((true, true)),
        _ => None,
    }
}

/// [`decode`], sharing source names through `names`.
pub(crate) fn decode_in(bytes: &[u8], names: &mut SourceNames) -> Option<Stored> {
    let mut r = Reader(bytes);
    let (flags, has_partition) = version_fields(r.take(1)?[0])?;
    let plain_names = flags && r.take(1)?[0] == 1;
    let timestamp = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let position = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let source = names.get(r.bytes()?)?;
    let partition = match has_partition && r.take(1)?[0] == 1 {
        true => {
            let topic = r.bytes()?;
            let p = i32::from_le_bytes(r.take(4)?.try_into().ok()?);
            Some(names.partition(topic, p)?)
        }
        false => None,
    };
    let join_key = r.bytes()?.to_vec();
    let key = match r.take(1)?[0] {
        0 => None,
        _ => Some(r.bytes()?.to_vec()),
    };
    let value = r.bytes()?.to_vec();
    let n = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
    let mut headers = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let name = std::str::from_utf8(r.bytes()?).ok()?.to_string();
        headers.push(Header { name, value: r.bytes()?.to_vec() });
    }
    Some(Stored { event: Event { key, value, timestamp, headers }, origin: Origin { source, position, partition }, join_key, plain_names })
}

/// The join key of a record [`encode_into`] wrote, read in place (no copy):
/// matching a scanned record costs no decoding until it is kept.
pub(crate) fn join_key_of(bytes: &[u8]) -> Option<&[u8]> {
    let mut r = Reader(bytes);
    let (flags, has_partition) = version_fields(r.take(1)?[0])?;
    if flags {
        r.take(1)?;
    }
    r.take(16)?; // timestamp, position
    r.bytes()?; // source
    if has_partition && r.take(1)?[0] == 1 {
        r.bytes()?; // topic
        r.take(4)?; // partition
    }
    r.bytes()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_bytes_keep_time_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), time_bytes(a).cmp(&time_bytes(b)));
            prop_assert_eq!(time_from(&time_bytes(a)), a);
        }

        #[test]
        fn an_others_range_holds_exactly_its_key_and_times(
            bucket in -3i64..3, key in proptest::collection::vec(any::<u8>(), 0..6),
            other in proptest::collection::vec(any::<u8>(), 0..6),
            lo in -5i64..5, len in 0i64..5, t in -8i64..12, seq in any::<u64>(),
        ) {
            let hi = lo + len;
            let (start, end) = other_range(bucket, &key, lo, hi);
            let (start, end) = (start.as_slice(), end.as_slice());
            let mine = &other_key(bucket, &key, t, seq)[..];
            prop_assert_eq!(start <= mine && mine < end, lo <= t && t <= hi);
            if key_hash(&other) != key_hash(&key) {
                let theirs = &other_key(bucket, &other, t, seq)[..];
                prop_assert!(!(start <= theirs && theirs < end), "another key (another hash) never falls in the range");
            }
            prop_assert_eq!(&mine[..OTHER_PREFIX_LEN], &start[..OTHER_PREFIX_LEN], "one prefix per key and bucket");
            prop_assert_eq!(&end[..OTHER_PREFIX_LEN], &start[..OTHER_PREFIX_LEN], "a range stays within its prefix");
            let later = &other_key(bucket + 1, &key, t, seq)[..];
            prop_assert!(later >= end, "the next bucket comes after");
        }

        #[test]
        fn main_keys_up_to_t_are_before_main_end(fire in any::<i64>(), seq in any::<u64>(), t in any::<i64>()) {
            prop_assert_eq!(main_key(fire, seq).as_slice() < main_end(t).as_slice(), fire <= t);
        }

        #[test]
        fn stored_events_round_trip(
            value in proptest::collection::vec(any::<u8>(), 0..50), key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..5)),
            ts in any::<i64>(), pos in any::<u64>(), jk in proptest::collection::vec(any::<u8>(), 0..5), hname in ".{0,5}",
            plain_names in any::<bool>(), partition in proptest::option::of((".{0,5}", any::<i32>())),
        ) {
            let mut origin = Origin::new("src", pos);
            origin.partition = partition.map(|(topic, partition)| Arc::new(Partition { topic, partition }));
            let s = Stored {
                event: Event { key, value, timestamp: ts, headers: vec![Header { name: hname, value: vec![1, 2] }] },
                origin,
                join_key: jk,
                plain_names,
            };
            prop_assert_eq!(decode(&encode(&s)), Some(s.clone()));
            let bytes = encode(&s);
            prop_assert_eq!(join_key_of(&bytes), Some(s.join_key.as_slice()));
            prop_assert_eq!(decode(&bytes[..bytes.len() - 1]), None, "truncated is refused");
        }
    }

    #[test]
    fn records_of_format_2_still_decode() {
        // Written before origins carried a Kafka partition.
        let mut v2 = vec![2, 1];
        v2.extend_from_slice(&5i64.to_le_bytes());
        v2.extend_from_slice(&7u64.to_le_bytes());
        for field in [&b"src"[..], b"jk"] {
            v2.extend_from_slice(&(field.len() as u32).to_le_bytes());
            v2.extend_from_slice(field);
        }
        v2.push(0); // no key
        v2.extend_from_slice(&2u32.to_le_bytes());
        v2.extend_from_slice(b"{}");
        v2.extend_from_slice(&0u32.to_le_bytes());
        let s = decode(&v2).expect("a format-2 record");
        assert_eq!((s.origin, s.join_key.as_slice(), s.plain_names, s.event.timestamp), (Origin::new("src", 7), &b"jk"[..], true, 5));
        assert_eq!(join_key_of(&v2), Some(&b"jk"[..]));
    }

    #[test]
    fn buckets_floor_towards_minus_infinity() {
        assert_eq!(bucket_of(0, 10), 0);
        assert_eq!(bucket_of(9, 10), 0);
        assert_eq!(bucket_of(-1, 10), -1);
        assert!(buckets_before(1).as_slice() > other_key(0, b"k", 9, u64::MAX).as_slice());
    }
}
