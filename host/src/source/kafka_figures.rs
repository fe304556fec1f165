//! Per partition of a Kafka source, for the metrics: the records it read
//! (counted by the source), and where it reads against the broker's end
//! (from librdkafka's statistics, every [`STATISTICS_INTERVAL_MS`]): the
//! consumer lag a Kafka operator watches, by `topic` and `partition`.
//! Exists only with `settings.metrics.enabled`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// How often librdkafka hands its statistics over (unless the source's
/// `properties` set `statistics.interval.ms`).
pub const STATISTICS_INTERVAL_MS: &str = "1000";

/// The figures of one Kafka source, by (topic, partition).
#[derive(Debug, Default)]
pub struct KafkaFigures {
    partitions: Mutex<BTreeMap<(String, i32), Partition>>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Records read (the source adds to it each turn).
    read: Arc<AtomicU64>,
    /// From the last statistics: the next offset handed to the source and
    /// the broker's high watermark (-1: not known yet).
    position: Option<(i64, i64)>,
}

/// One partition's figures as a scrape reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionFigures {
    pub topic: String,
    pub partition: i32,
    pub records: u64,
    /// The next offset the source reads and the broker's high watermark,
    /// once librdkafka's statistics gave both.
    pub next_offset: Option<i64>,
    pub high_watermark: Option<i64>,
}

impl PartitionFigures {
    /// Records on the broker the source has not read yet.
    pub fn lag(&self) -> Option<i64> {
        Some((self.high_watermark? - self.next_offset?).max(0))
    }
}

impl KafkaFigures {
    /// The counter of records read from `topic`/`partition`.
    pub fn records_of(&self, topic: &str, partition: i32) -> Arc<AtomicU64> {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((topic.to_string(), partition)).or_default().read.clone()
    }

    /// Every partition the source has read or been told of.
    pub fn snapshot(&self) -> Vec<PartitionFigures> {
        let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|((topic, partition), p)| {
                let known = |v: i64| (v >= 0).then_some(v);
                PartitionFigures {
                    topic: topic.clone(),
                    partition: *partition,
                    records: p.read.load(Relaxed),
                    next_offset: p.position.and_then(|(next, _)| known(next)),
                    high_watermark: p.position.and_then(|(_, high)| known(high)),
                }
            })
            .collect()
    }

    /// Takes librdkafka's statistics JSON (`stats_raw`): only the partitions'
    /// positions are read; a malformed document changes nothing.
    pub fn take_statistics(&self, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<Statistics>(json) else {
            tracing::debug!("unreadable librdkafka statistics");
            return;
        };
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in stats.topics {
            // librdkafka's internal partition -1 holds what is not assigned yet.
            for p in t.partitions.into_values().filter(|p| p.partition >= 0 && p.desired) {
                map.entry((topic.clone(), p.partition)).or_default().position = Some((p.app_offset, p.hi_offset));
            }
        }
    }
}

/// What is read of librdkafka's statistics (STATISTICS.md in librdkafka).
#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: BTreeMap<String, Topic>,
}

#[derive(Deserialize)]
struct Topic {
    #[serde(default)]
    partitions: BTreeMap<String, PartitionStatistics>,
}

#[derive(Deserialize)]
struct PartitionStatistics {
    partition: i32,
    /// Assigned to this consumer.
    #[serde(default)]
    desired: bool,
    /// The offset after the last record handed to the application.
    #[serde(default = "unknown")]
    app_offset: i64,
    #[serde(default = "unknown")]
    hi_offset: i64,
}

fn unknown() -> i64 {
    -1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_give_positions_and_the_source_counts_records() {
        let figures = KafkaFigures::default();
        figures.records_of("clicks", 1).fetch_add(7, Relaxed);
        let json = br#"{"name":"c","topics":{"clicks":{"topic":"clicks","partitions":{
            "0":{"partition":0,"desired":true,"app_offset":5,"hi_offset":12},
            "1":{"partition":1,"desired":true,"app_offset":7,"hi_offset":7},
            "2":{"partition":2,"desired":false,"app_offset":-1001,"hi_offset":3},
            "-1":{"partition":-1,"desired":false,"app_offset":-1001,"hi_offset":-1001}}}}}"#;
        figures.take_statistics(json);
        let snap = figures.snapshot();
        assert_eq!(snap.len(), 2, "{snap:?}");
        assert_eq!((snap[0].records, snap[0].next_offset, snap[0].high_watermark, snap[0].lag()), (0, Some(5), Some(12), Some(7)));
        assert_eq!((snap[1].records, snap[1].lag()), (7, Some(0)));
        // Before it has read anything, librdkafka reports -1001 (an invalid offset).
        figures.take_statistics(br#"{"topics":{"clicks":{"partitions":{"0":{"partition":0,"desired":true,"app_offset":-1001,"hi_offset":12}}}}}"#);
        assert_eq!(figures.snapshot()[0].lag(), None);
        figures.take_statistics(b"not json");
        assert_eq!(figures.snapshot()[0].high_watermark, Some(12));
    }
}
