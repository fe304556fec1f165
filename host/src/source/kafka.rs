//! `"type": "kafka"`: records of one or more topics, every partition read by
//! this source (one consumer per topic, so the end of a partition is known
//! per topic). The value is the record; the Kafka key becomes the event key
//! (unless `key_field` names one), the headers the event's headers, and the
//! record timestamp the event time (unless `timestamp_field` names one).
//! Where each partition stands is in the checkpoints: a restore goes on at
//! the next offset of each.
//!
//! The watermark is kept per partition: the slowest partition still reading
//! holds it back; one that has caught up with its end (and stays silent) does
//! not, until it reads again.
//!
//! Not yet (issue 11): offsets committed to the group, partitions added while
//! running, and sharing partitions with other processes of the group.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{admit_record, now_ms, Emitter, Source, SourceError};
use crate::config::SourceCommon;
use crate::event::Header;
use crate::record_schema::RecordCheck;
use crate::runtime::ResumePoint;

/// `"type": "kafka"`: records of Kafka topics.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topics read (every partition of each).
    pub topics: Vec<String>,
    /// The consumer group (`group.id`).
    pub group_id: String,
    /// Where a partition starts when no checkpoint says where it stands.
    #[serde(default)]
    pub start: KafkaStart,
    /// Read each partition up to its end and then finish (bounded runs:
    /// backfills, tests); otherwise wait for new records forever.
    #[serde(default)]
    pub stop_at_end: bool,
    /// librdkafka consumer settings passed through as they are (security,
    /// fetch sizes), e.g. `{"fetch.max.bytes": "10485760"}`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(flatten)]
    pub common: SourceCommon,
}

/// Where a partition without a checkpointed offset starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaStart {
    /// Its first record still kept by the broker.
    #[default]
    Earliest,
    /// After its last record: only what is produced from now on.
    Latest,
}

/// How long metadata and assignment calls wait for the broker.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// The key of a partition in a checkpoint's `partitions`.
fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

pub struct KafkaSource {
    name: String,
    config: KafkaSourceConfig,
    check: RecordCheck,
    max_bytes: usize,
    resume: ResumePoint,
}

impl KafkaSource {
    pub fn new(name: &str, config: &KafkaSourceConfig, resume: ResumePoint) -> Self {
        KafkaSource {
            name: name.into(),
            check: RecordCheck::new(&config.common),
            max_bytes: config.common.max_record_bytes(),
            config: config.clone(),
            resume,
        }
    }

    fn error(&self, what: String) -> SourceError {
        SourceError::Kafka { source_name: self.name.clone(), error: what }
    }

    /// A consumer of every partition of `topic`, each at its checkpointed
    /// offset or at `start`; and the partitions.
    fn consumer(&self, topic: &str) -> Result<(BaseConsumer, Vec<i32>), SourceError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", &self.config.group_id)
            // Where it stands is in the checkpoints, not in the group (yet).
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        for (k, v) in &self.config.properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config.create().map_err(|e| self.error(format!("creating the consumer: {e}")))?;
        let meta = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT).map_err(|e| self.error(format!("topic `{topic}`: {e}")))?;
        let partitions: Vec<i32> = meta.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        if partitions.is_empty() {
            return Err(self.error(format!("topic `{topic}` has no partitions (does it exist?)")));
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let key = partition_key(topic, p);
            let offset = match (self.resume.partitions.get(&key), self.config.start) {
                (Some(next), _) => Offset::Offset(*next),
                (None, KafkaStart::Earliest) => Offset::Beginning,
                (None, KafkaStart::Latest) => Offset::End,
            };
            tpl.add_partition_offset(topic, p, offset).map_err(|e| self.error(format!("{key}: {e}")))?;
        }
        consumer.assign(&tpl).map_err(|e| self.error(format!("assigning topic `{topic}`: {e}")))?;
        Ok((consumer, partitions))
    }
}

impl Source for KafkaSource {
    fn run(self: Box<Self>, out: &mut Emitter) -> Result<(), SourceError> {
        let mut consumers = Vec::new();
        for topic in &self.config.topics {
            consumers.push(self.consumer(topic)?);
        }
        // Per consumer, per partition: its lane of the watermark, and whether it is at its end.
        let mut lanes: Vec<BTreeMap<i32, (usize, bool)>> = Vec::new();
        let mut n = 0;
        for (_, partitions) in &consumers {
            let mut of_topic = BTreeMap::new();
            for &partition in partitions {
                of_topic.insert(partition, (n, false));
                n += 1;
            }
            lanes.push(of_topic);
        }
        out.with_lanes(n);
        let mut line = self.resume.line;
        loop {
            if out.closed || out.stopping() {
                return Ok(());
            }
            let mut got_any = false;
            for (i, (consumer, _)) in consumers.iter().enumerate() {
                // Drain what is there, without blocking on one topic.
                while let Some(result) = consumer.poll(Duration::ZERO) {
                    match result {
                        Ok(m) => {
                            got_any = true;
                            if let Some((lane, at_end)) = lanes[i].get_mut(&m.partition()) {
                                *at_end = false;
                                out.set_lane(*lane);
                            }
                            line += 1;
                            let key = partition_key(m.topic(), m.partition());
                            out.consumed_partition(&key, m.offset() + 1, line);
                            let headers = m
                                .headers()
                                .map(|hs| hs.iter().map(|h| Header { name: h.key.to_string(), value: h.value.unwrap_or_default().to_vec() }).collect())
                                .unwrap_or_default();
                            let ts = m.timestamp().to_millis().unwrap_or_else(now_ms);
                            let value = m.payload().unwrap_or_default().to_vec();
                            admit_record(out, &self.check, self.max_bytes, value, m.offset() as u64, ts, m.key().map(<[u8]>::to_vec), headers);
                        }
                        Err(KafkaError::PartitionEOF(p)) => {
                            if let Some((lane, at_end)) = lanes[i].get_mut(&p) {
                                *at_end = true;
                                out.lane_caught_up(*lane);
                            }
                        }
                        Err(e) => return Err(self.error(format!("reading topic `{}`: {e}", self.config.topics[i]))),
                    }
                    if out.closed {
                        return Ok(());
                    }
                }
            }
            if self.config.stop_at_end && lanes.iter().all(|t| t.values().all(|(_, at_end)| *at_end)) {
                return Ok(());
            }
            out.maybe_flush();
            if !got_any {
                // Nothing waiting: librdkafka fetches on its own threads meanwhile.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
