//! Key groups: how keyed state and the events it needs are spread over
//! workers.
//!
//! A key hashes into one of `max_parallelism` key groups (fixed for the life of a
//! state); worker `i` of `n` owns a contiguous range of them. State is written by
//! key group, so a checkpoint taken at one parallelism restores at another: each
//! new worker takes the key groups of its range from every old worker's state.

use std::ops::Range;

use crate::event::{Batch, Origin};
use crate::step::{Operator, RoutedKey};

/// The most key groups a pipeline may have: key groups are tagged in 16 bits.
pub const MAX_KEY_GROUPS: usize = 1 << 15;

/// The key group of `key` among `key_groups`. The hash is fixed (it decides
/// where state lives, so it must not change between versions).
pub fn key_group(key: &[u8], key_groups: usize) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(key) % key_groups.max(1) as u64) as u16
}

/// What decides an event's key group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyGrouping {
    /// The hash of its key ([`key_group`]).
    #[default]
    KeyHash,
    /// The Kafka partition it was read from (scale-out over a consumer
    /// group: the topics are partitioned by the key, and a process owns the
    /// state of exactly the partitions the group gave it). An event without
    /// a partition falls back to the hash of its key.
    InputPartition,
}

impl KeyGrouping {
    /// The key group of an event with `key`, read at `origin`.
    pub fn group(self, key: &[u8], origin: &Origin, key_groups: usize) -> u16 {
        match (self, &origin.partition) {
            (KeyGrouping::InputPartition, Some(p)) => p.partition as u16,
            _ => key_group(key, key_groups),
        }
    }

    /// Sets the key groups of `keys` (read by key hash) of the events at
    /// `origins`, one to one.
    fn regroup(self, keys: &mut [RoutedKey], origins: &[Origin]) {
        if self == KeyGrouping::InputPartition {
            for (k, o) in keys.iter_mut().zip(origins) {
                if let Some(p) = &o.partition {
                    k.group = p.partition as u16;
                }
            }
        }
    }
}

/// The worker of `n` that owns key group `kg` of `key_groups`.
pub fn worker_of(kg: u16, n: usize, key_groups: usize) -> usize {
    usize::from(kg) * n / key_groups.max(1)
}

/// The key groups worker `i` of `n` owns (those `worker_of` maps to it).
pub fn key_groups_of(i: usize, n: usize, key_groups: usize) -> Range<u16> {
    let start = (i * key_groups).div_ceil(n);
    let end = ((i + 1) * key_groups).div_ceil(n);
    start as u16..end as u16
}

/// Splits `batch` over the `n` workers of a keyed step's stage by the key
/// group of each event, as `router` (a copy of the step) reads it for input
/// `port`; each part keeps the keys read, so the worker need not read them
/// again. `None` when the step is not keyed.
pub fn by_key(router: &mut dyn Operator, port: usize, batch: Batch, n: usize, key_groups: usize, grouping: KeyGrouping) -> Option<Vec<Option<(Batch, Vec<RoutedKey>)>>> {
    let keys = router.route_keys(port, &batch.events)?;
    Some(by_read_keys(batch, keys, n, key_groups, grouping))
}

/// [`by_key`] for keys read already (`keys[i]` of `batch.events[i]`, by a
/// source's [`crate::step::KeyCapture`]).
pub fn by_read_keys(batch: Batch, mut keys: Vec<RoutedKey>, n: usize, key_groups: usize, grouping: KeyGrouping) -> Vec<Option<(Batch, Vec<RoutedKey>)>> {
    grouping.regroup(&mut keys, &batch.origins);
    let targets: Vec<usize> = keys.iter().map(|k| worker_of(k.group, n, key_groups)).collect();
    split(batch, keys, &targets, n)
}

/// Splits `batch` (and `extra`, one item per event) over `n` workers by each
/// event's worker in `targets`, keeping the order within each part. Parts with
/// no event are `None`.
pub fn split<T>(batch: Batch, extra: Vec<T>, targets: &[usize], n: usize) -> Vec<Option<(Batch, Vec<T>)>> {
    let mut parts: Vec<Option<(Batch, Vec<T>)>> = (0..n).map(|_| None).collect();
    if batch.is_empty() {
        return parts;
    }
    let first = targets.first().copied().unwrap_or(0).min(n - 1);
    if targets.iter().all(|&t| t.min(n - 1) == first) {
        parts[first] = Some((batch, extra));
        return parts;
    }
    let per = batch.len() / n + 1;
    let mut extra = extra.into_iter();
    for (&t, (e, o)) in targets.iter().zip(batch.events.into_iter().zip(batch.origins)) {
        let (b, x) = parts[t.min(n - 1)].get_or_insert_with(|| (Batch::with_capacity(per), Vec::with_capacity(per)));
        b.push(e, o);
        x.extend(extra.next());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn ranges_cover_every_key_group_once_and_agree_with_worker_of() {
        for key_groups in [1usize, 2, 7, 128, 1000] {
            for n in 1..=key_groups.min(9) {
                let mut next = 0u16;
                for i in 0..n {
                    let r = key_groups_of(i, n, key_groups);
                    assert_eq!(r.start, next, "contiguous at {i} of {n} over {key_groups}");
                    assert!(!r.is_empty(), "worker {i} of {n} over {key_groups} owns nothing");
                    for kg in r.clone() {
                        assert_eq!(worker_of(kg, n, key_groups), i);
                    }
                    next = r.end;
                }
                assert_eq!(usize::from(next), key_groups);
            }
        }
    }

    #[test]
    fn key_groups_are_stable_and_spread() {
        assert_eq!(key_group(b"r-1", 128), key_group(b"r-1", 128));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..10_000 {
            seen.insert(key_group(format!("r-{i}").as_bytes(), 128));
        }
        assert_eq!(seen.len(), 128);
    }

    #[test]
    fn in_a_group_the_key_group_is_the_input_partition() {
        use crate::event::{Event, Origin, Partition};
        let mut b = Batch::default();
        let in_part = |p: i32| Origin { partition: Some(std::sync::Arc::new(Partition { topic: "feed".into(), partition: p })), ..Origin::new("s", 0) };
        b.push(Event::from_value(b"{}".to_vec(), 0), in_part(3));
        b.push(Event::from_value(b"{}".to_vec(), 0), Origin::new("s", 1));
        b.push(Event::from_value(b"{}".to_vec(), 0), in_part(0));
        let key = |k: &str| RoutedKey { group: key_group(k.as_bytes(), 4), read: crate::step::ReadKey { key: Ok(k.as_bytes().to_vec()), plain_names: true } };
        let keys = vec![key("x"), key("y"), key("z")];
        assert_eq!(KeyGrouping::InputPartition.group(b"x", &b.origins[0], 4), 3);
        assert_eq!(KeyGrouping::InputPartition.group(b"y", &b.origins[1], 4), key_group(b"y", 4), "no partition: the key's hash");
        assert_eq!(KeyGrouping::KeyHash.group(b"x", &b.origins[0], 4), key_group(b"x", 4));
        let parts = by_read_keys(b, keys, 4, 4, KeyGrouping::InputPartition);
        assert_eq!(parts[3].as_ref().unwrap().1[0].group, 3, "routed to the worker of partition 3");
        assert_eq!(parts[0].as_ref().unwrap().1.last().unwrap().group, 0);
    }

    #[test]
    fn split_keeps_order_within_each_part() {
        let mut b = Batch::default();
        for i in 0..10 {
            b.push(Event::from_value(vec![i], i64::from(i)), crate::event::Origin::new("s", u64::from(i)));
        }
        let targets: Vec<usize> = b.events.iter().map(|e| usize::from(e.value[0] % 3 == 0)).collect();
        let extra: Vec<i64> = b.events.iter().map(|e| e.timestamp * 10).collect();
        let parts = split(b, extra, &targets, 2);
        let times = |p: &Option<(Batch, Vec<i64>)>| {
            let (b, x) = p.as_ref().unwrap();
            assert_eq!(x, &b.events.iter().map(|e| e.timestamp * 10).collect::<Vec<_>>(), "extra follows its event");
            b.events.iter().map(|e| e.timestamp).collect::<Vec<_>>()
        };
        assert_eq!(times(&parts[1]), vec![0, 3, 6, 9]);
        assert_eq!(times(&parts[0]), vec![1, 2, 4, 5, 7, 8]);
    }
}
