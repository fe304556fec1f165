//! `"type": "kafka"`: records of one or more topics, every partition read by
//! this source (one consumer per topic, so the end of a partition is known
//! per topic). The value is the record; the Kafka key becomes the event key
//! (unless `key_field` names one), the headers the event's headers, and the
//! record timestamp the event time (unless `timestamp_field` names one).
//! Where each partition stands is in the checkpoints: a restore goes on at
//! the next offset of each; after each checkpoint the same offsets are
//! committed to the group ([`KafkaCommitter`]), for the lag tools.
//!
//! The watermark is kept per partition: the slowest partition still reading
//! holds it back; one that has caught up with its end (and stays silent) does
//! not, until it reads again. Partitions added to a topic while it runs are
//! found by a metadata check every `partition_discovery_ms` and read from
//! their start.
//!
//! In a scaled-out pipeline (`kafka_group.rs`) it reads only the partitions
//! the group gave its process (`assigned`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::kafka_figures::{KafkaFigures, STATISTICS_INTERVAL_MS};
use super::{admit_record, now_ms, Emitter, PositionCommitter, Source, SourceError};
use crate::config::SourceCommon;
use crate::event::{Header, Partition};
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
    /// The consumer group (`group.id`); the offsets of each checkpoint are
    /// committed to it.
    pub group_id: String,
    /// Where a partition starts when no checkpoint says where it stands:
    /// `"earliest"`, `"latest"`, or `{"timestamp_ms": T}` (the first record
    /// at or after T, ms since the Unix epoch).
    #[serde(default)]
    pub start: KafkaStart,
    /// Read each partition up to its end and then finish (bounded runs:
    /// backfills, tests); otherwise wait for new records forever.
    #[serde(default)]
    pub stop_at_end: bool,
    /// How often (ms) the topics are checked for partitions added while the
    /// source runs (or for a topic not created yet); 0: never. A partition
    /// found is read from its start. Not with `stop_at_end`.
    #[serde(default = "default_discovery_ms")]
    pub partition_discovery_ms: u64,
    /// Read each record's headers into its event (for plugins and a Kafka
    /// sink); `false` when nothing uses them: librdkafka parses a record's
    /// header section (even an empty one) with an allocation each, about
    /// 15 % of the source thread's time in a pass-through.
    #[serde(default = "yes")]
    pub headers: bool,
    /// librdkafka consumer settings passed through as they are (security,
    /// fetch sizes), e.g. `{"fetch.max.bytes": "10485760"}`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(flatten)]
    pub common: SourceCommon,
    /// Scale-out: the partitions (of each topic) the group gave this process;
    /// set by the runtime, never in pipeline.json. `None`: every partition.
    #[serde(skip)]
    #[schemars(skip)]
    pub assigned: Option<Vec<i32>>,
    /// Where the per-partition figures go, with metrics on; set by the
    /// runtime, never in pipeline.json.
    #[serde(skip)]
    #[schemars(skip)]
    pub figures: Option<Arc<KafkaFigures>>,
}

fn yes() -> bool {
    true
}

fn default_discovery_ms() -> u64 {
    10_000
}

/// Where a partition without a checkpointed offset starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStart {
    /// Its first record still kept by the broker.
    #[default]
    Earliest,
    /// After its last record: only what is produced from now on.
    Latest,
    /// Its first record with a timestamp at or after this one (ms since the
    /// Unix epoch); after its last record if there is none.
    TimestampMs(i64),
}

/// The sources' consumers: the end of a partition is an event the source
/// reads from its queue, not an error to log (librdkafka reports it on the
/// error callback too); librdkafka's statistics (only asked for with
/// metrics on) go to the source's figures.
pub(super) struct SourceContext {
    figures: Option<Arc<KafkaFigures>>,
}

impl rdkafka::ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) => tracing::trace!(reason, "end of a partition"),
            e => tracing::warn!(error = %e, reason, "librdkafka"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(f) = &self.figures {
            f.take_statistics(statistics);
        }
    }
}

impl ConsumerContext for SourceContext {}

/// How long metadata and assignment calls wait for the broker.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// The key of a partition in a checkpoint's `partitions`.
fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The topic and partition of a [`partition_key`] (topic names have no `/`).
fn parse_partition_key(key: &str) -> Option<(&str, i32)> {
    let (topic, p) = key.rsplit_once('/')?;
    Some((topic, p.parse().ok()?))
}

/// Whether a consumer error is one librdkafka recovers from by itself: the
/// connection to a broker dropped (a broker restarting), no broker reachable
/// for now, a request timed out, a partition's leader or the group's
/// coordinator moving. librdkafka reconnects and fetches again from the
/// consumer's position, so nothing is skipped or read twice: the source logs
/// the error and polls on. Failing on it would end a job at every broker
/// restart. Anything else (authorization, a fatal client error, ...) still
/// fails the source.
fn is_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e,
        KafkaError::MessageConsumption(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::OperationTimedOut
                | C::TimedOutQueue
                | C::RequestTimedOut
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
        )
    )
}

/// The librdkafka settings the source sets for its consumers (a
/// `properties` entry overrides any of them).
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // Where it stands is in the checkpoints; the group is told after each.
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "true"),
    // When a partition's local queue is over its thresholds (queued.min.messages,
    // queued.max.messages.kbytes), librdkafka waits this long before fetching it
    // again; at its default (1 s) a source that drains the queue in 0.2 s idles
    // the rest (the kafka bench read 150k records/s instead of 650k).
    ("fetch.queue.backoff.ms", "10"),
    // A fetch whose partitions have nothing new is held this long by the broker
    // (default 500 ms), and librdkafka sends the next only after it: one holding
    // only partitions caught up (the others over their local queue's threshold,
    // left out) stalled the pass-through bench 0.25-0.3 s at a time against Tansu;
    // at 100 it read 950k records/s instead of 520k. An idle source sends 10
    // fetches a second instead of 2.
    ("fetch.wait.max.ms", "100"),
];

/// The consumer settings every consumer of the source shares.
pub(super) fn client_config(config: &KafkaSourceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers).set("group.id", &config.group_id);
    if config.figures.is_some() {
        // The partitions' positions for the metrics (a `properties` entry overrides it).
        c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    for (k, v) in CONSUMER_DEFAULTS.iter().copied().chain(config.properties.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        c.set(k, v);
    }
    c
}

/// How often partitions are looked for, if at all (never in a bounded run:
/// it reads what there is at its start; nor in a group, whose assignment
/// says what this process reads).
fn discovery_of(config: &KafkaSourceConfig) -> Option<Duration> {
    (!config.stop_at_end && config.partition_discovery_ms > 0 && config.assigned.is_none())
        .then(|| Duration::from_millis(config.partition_discovery_ms))
}

pub struct KafkaSource {
    name: String,
    config: KafkaSourceConfig,
    check: RecordCheck,
    max_bytes: usize,
    resume: ResumePoint,
}

/// One partition being read.
struct Assigned {
    /// Its lane of the emitter's watermark.
    lane: usize,
    /// `topic/partition`, its key in the checkpoints.
    key: String,
    /// Caught up with its end (the broker said so), and not read since.
    at_end: bool,
    /// Records read since the last [`Assigned::publish`], and where they are
    /// counted for the metrics (with metrics on).
    unpublished: u64,
    read: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Assigned {
    /// Adds the records read since the last call to the metrics' count (once
    /// a turn, not once a record).
    fn publish(&mut self) {
        if let Some(read) = self.read.as_ref().filter(|_| self.unpublished > 0) {
            read.fetch_add(self.unpublished, std::sync::atomic::Ordering::Relaxed);
        }
        self.unpublished = 0;
    }
}

/// The consumer of one topic and the partitions it reads.
struct TopicReader {
    topic: String,
    consumer: Arc<BaseConsumer<SourceContext>>,
    partitions: BTreeMap<i32, Assigned>,
    /// A queue of its own per partition, read in turn (at most
    /// [`PER_PARTITION_TURN`] records each, and none while the partition is
    /// [`ALIGNMENT_MS`] ahead of the slowest), so that partitions advance
    /// together in event time: from one shared queue librdkafka hands over a
    /// backlog one partition after the other (and fetches them unevenly), and
    /// the watermark (held back by the slowest partition) would not move until
    /// the last one started, keeping nearly the whole backlog in a join's
    /// state, which every checkpoint then writes.
    queues: Vec<(i32, PartitionQueue<SourceContext>)>,
}

/// Records read from one partition's queue before the next partition's turn.
const PER_PARTITION_TURN: usize = 128;

/// How far (event time, ms) a partition may read ahead of the slowest
/// partition still reading before it waits for it (a partition that has read
/// nothing yet holds every other back; one caught up with its end does not).
const ALIGNMENT_MS: i64 = 10_000;

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

    /// The partitions `topic` has now.
    fn partitions_of(&self, consumer: &BaseConsumer<SourceContext>, topic: &str) -> Result<Vec<i32>, SourceError> {
        let meta = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT).map_err(|e| self.error(format!("topic `{topic}`: {e}")))?;
        Ok(meta.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect())
    }

    /// A consumer of `topic`, reading every partition it has at its
    /// checkpointed offset or at `start`.
    fn reader(&self, topic: &str, out: &mut Emitter) -> Result<TopicReader, SourceError> {
        let consumer: Arc<BaseConsumer<SourceContext>> = Arc::new(
            client_config(&self.config).create_with_context(SourceContext { figures: self.config.figures.clone() }).map_err(|e| self.error(format!("creating the consumer: {e}")))?,
        );
        let partitions = match &self.config.assigned {
            Some(assigned) => assigned.clone(),
            None => self.partitions_of(&consumer, topic)?,
        };
        if partitions.is_empty() && self.config.assigned.is_none() {
            if self.config.stop_at_end || discovery_of(&self.config).is_none() {
                return Err(self.error(format!("topic `{topic}` has no partitions (does it exist?)")));
            }
            // Read once it is created (the partition discovery finds it).
            tracing::warn!(source = %self.name, topic, "the topic has no partitions yet (does it exist?); waiting for them");
        }
        let mut reader = TopicReader { topic: topic.to_string(), consumer, partitions: BTreeMap::new(), queues: Vec::new() };
        self.add_partitions(&mut reader, &partitions, self.config.start, out)?;
        Ok(reader)
    }

    /// Starts reading `partitions` of `reader`'s topic: each at its
    /// checkpointed offset, or else at `start`.
    fn add_partitions(&self, reader: &mut TopicReader, partitions: &[i32], start: KafkaStart, out: &mut Emitter) -> Result<(), SourceError> {
        let topic = reader.topic.clone();
        let mut tpl = TopicPartitionList::new();
        let mut by_time = TopicPartitionList::new();
        for &p in partitions {
            let key = partition_key(&topic, p);
            let offset = match (self.resume.partitions.get(&key), start) {
                (Some(next), _) => Offset::Offset(*next),
                (None, KafkaStart::Earliest) => Offset::Beginning,
                (None, KafkaStart::Latest) => Offset::End,
                (None, KafkaStart::TimestampMs(t)) => {
                    by_time.add_partition_offset(&topic, p, Offset::Offset(t)).map_err(|e| self.error(format!("{key}: {e}")))?;
                    continue;
                }
            };
            tpl.add_partition_offset(&topic, p, offset).map_err(|e| self.error(format!("{key}: {e}")))?;
        }
        if by_time.count() > 0 {
            let found = reader
                .consumer
                .offsets_for_times(by_time, BROKER_TIMEOUT)
                .map_err(|e| self.error(format!("topic `{topic}`: offsets for the start time: {e}")))?;
            for e in found.elements() {
                // No record at or after the time: from the end.
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                    _ => Offset::End,
                };
                tpl.add_partition_offset(&topic, e.partition(), offset).map_err(|e| self.error(format!("{topic}: {e}")))?;
            }
        }
        reader.consumer.incremental_assign(&tpl).map_err(|e| self.error(format!("assigning topic `{topic}`: {e}")))?;
        for &p in partitions {
            let lane = out.add_lane(Arc::new(Partition { topic: topic.clone(), partition: p }));
            let read = self.config.figures.as_ref().map(|f| f.records_of(&topic, p));
            reader.partitions.insert(p, Assigned { lane, key: partition_key(&topic, p), at_end: false, unpublished: 0, read });
            // Records fetched before the split stay in the consumer's queue,
            // which the loop drains before any partition queue: each
            // partition's records are still taken in offset order.
            if let Some(q) = reader.consumer.split_partition_queue(&topic, p) {
                reader.queues.push((p, q));
            }
        }
        Ok(())
    }

    /// Starts reading the partitions added to the topics since the last look.
    fn discover(&self, readers: &mut [TopicReader], out: &mut Emitter) -> Result<(), SourceError> {
        for r in readers {
            let now = self.partitions_of(&r.consumer, &r.topic)?;
            let new: Vec<i32> = now.into_iter().filter(|p| !r.partitions.contains_key(p)).collect();
            if !new.is_empty() {
                tracing::info!(source = %self.name, topic = %r.topic, partitions = ?new, "new partitions: reading them from their start");
                // Everything in a new partition was written after the source started.
                self.add_partitions(r, &new, KafkaStart::Earliest, out)?;
            }
        }
        Ok(())
    }

    /// Hands one polled result over: a record to the emitter (true), or the
    /// end of a partition noted, or a transient error logged
    /// ([`is_transient`]); any other error fails the source.
    fn take(
        &self,
        result: KafkaResult<BorrowedMessage<'_>>,
        consumer: &BaseConsumer<SourceContext>,
        topic: &str,
        partitions: &mut BTreeMap<i32, Assigned>,
        line: &mut u64,
        out: &mut Emitter,
    ) -> Result<bool, SourceError> {
        match result {
            Ok(m) => {
                let Some(a) = partitions.get_mut(&m.partition()) else { return Ok(false) };
                a.at_end = false;
                a.unpublished += 1;
                out.set_lane(a.lane);
                *line += 1;
                out.consumed_partition(&a.key, m.offset() + 1, *line);
                // Not even asked for unless wanted: asking parses them.
                let headers = match self.config.headers.then(|| m.headers()).flatten() {
                    Some(hs) => hs.iter().map(|h| Header { name: h.key.to_string(), value: h.value.unwrap_or_default().to_vec() }).collect(),
                    None => Vec::new(),
                };
                let ts = m.timestamp().to_millis().unwrap_or_else(now_ms);
                let value = m.payload().unwrap_or_default().to_vec();
                admit_record(out, &self.check, self.max_bytes, value, m.offset() as u64, ts, m.key().map(<[u8]>::to_vec), headers);
                Ok(true)
            }
            Err(KafkaError::PartitionEOF(p)) => {
                if let Some(a) = partitions.get_mut(&p) {
                    a.at_end = true;
                    out.lane_caught_up(a.lane);
                    if self.config.stop_at_end {
                        // Done: no more fetches for it. A fetch holding only partitions
                        // with nothing new waits out `fetch.wait.max.ms` at the broker
                        // while the others' local queues run dry.
                        let mut done = TopicPartitionList::new();
                        done.add_partition(topic, p);
                        if let Err(e) = consumer.pause(&done) {
                            tracing::debug!(source = %self.name, topic, partition = p, error = %e, "pausing a partition read to its end");
                        }
                    }
                }
                Ok(false)
            }
            Err(e) if is_transient(&e) => {
                tracing::warn!(source = %self.name, topic, error = %e, "the broker is unreachable for now; librdkafka reconnects, reading goes on");
                Ok(false)
            }
            Err(e) => Err(self.error(format!("reading topic `{topic}`: {e}"))),
        }
    }
}

impl Source for KafkaSource {
    fn run(self: Box<Self>, out: &mut Emitter) -> Result<(), SourceError> {
        let mut readers = Vec::new();
        for topic in &self.config.topics {
            readers.push(self.reader(topic, out)?);
        }
        let discovery = discovery_of(&self.config);
        let mut looked = Instant::now();
        let mut line = self.resume.line;
        loop {
            if out.closed || out.stopping() {
                return Ok(());
            }
            if discovery.is_some_and(|every| looked.elapsed() >= every) {
                if let Err(e) = self.discover(&mut readers, out) {
                    // The broker away for now: reading goes on, the next look tries again.
                    tracing::warn!(source = %self.name, error = %e, "looking for new partitions failed; trying again later");
                }
                looked = Instant::now();
            }
            let mut got_any = false;
            for r in &mut readers {
                // Drain the consumer's own queue (events, and records fetched
                // before a partition's queue was split off) without blocking on
                // one topic, then each partition's queue in turn.
                while let Some(result) = r.consumer.poll(Duration::ZERO) {
                    got_any |= self.take(result, &r.consumer, &r.topic, &mut r.partitions, &mut line, out)?;
                    if out.closed {
                        return Ok(());
                    }
                }
                for (p, queue) in &r.queues {
                    let Some(lane) = r.partitions.get(p).map(|a| a.lane) else { continue };
                    for _ in 0..PER_PARTITION_TURN {
                        if out.lane_ahead(lane, ALIGNMENT_MS) {
                            break;
                        }
                        let Some(result) = queue.poll(Duration::ZERO) else { break };
                        got_any |= self.take(result, &r.consumer, &r.topic, &mut r.partitions, &mut line, out)?;
                        if out.closed {
                            return Ok(());
                        }
                    }
                }
            }
            for a in readers.iter_mut().flat_map(|r| r.partitions.values_mut()) {
                a.publish();
            }
            if self.config.stop_at_end && readers.iter().all(|r| r.partitions.values().all(|a| a.at_end)) {
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

/// Commits the offsets of each completed checkpoint to the source's group
/// (the next offset to read: offset + 1 of the last record covered), so
/// `kafka-consumer-groups --describe` and other lag tools show the job's
/// lag. The checkpoint stays what a restart goes by; a failed commit is
/// only logged.
/// In a scale-out group the commits go through the process's group member
/// (with its generation), else through a consumer of its own.
pub struct KafkaCommitter<C: ConsumerContext + 'static = DefaultConsumerContext> {
    name: String,
    topics: Vec<String>,
    consumer: Arc<BaseConsumer<C>>,
}

impl KafkaCommitter {
    pub fn new(name: &str, config: &KafkaSourceConfig) -> Result<Self, SourceError> {
        let consumer = client_config(config)
            .create()
            .map_err(|e| SourceError::Kafka { source_name: name.into(), error: format!("creating the offset committer: {e}") })?;
        Ok(KafkaCommitter { name: name.into(), topics: config.topics.clone(), consumer: Arc::new(consumer) })
    }
}

impl<C: ConsumerContext + 'static> KafkaCommitter<C> {
    /// Commits through `consumer` (a group member).
    pub fn through(name: &str, topics: &[String], consumer: Arc<BaseConsumer<C>>) -> Self {
        KafkaCommitter { name: name.into(), topics: topics.to_vec(), consumer }
    }
}

impl<C: ConsumerContext + 'static> PositionCommitter for KafkaCommitter<C> {
    fn commit(&mut self, point: &ResumePoint, last: bool) {
        let mut tpl = TopicPartitionList::new();
        for (key, next) in &point.partitions {
            match parse_partition_key(key) {
                Some((topic, p)) if self.topics.iter().any(|t| t == topic) => {
                    // Only fails for an invalid offset, which a checkpoint never holds.
                    let _ = tpl.add_partition_offset(topic, p, Offset::Offset(*next));
                }
                _ => {}
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // The last commit of a run is waited for, so the lag is right once it exits.
        let mode = if last { CommitMode::Sync } else { CommitMode::Async };
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::warn!(source = %self.name, error = %e, "committing the checkpoint's offsets to the group failed");
        }
        // Serves the async commit's result (logged by librdkafka).
        let _ = self.consumer.poll(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_a_word_or_a_timestamp() {
        let start = |v: serde_json::Value| serde_json::from_value::<KafkaStart>(v).map_err(|e| e.to_string());
        assert_eq!(start(serde_json::json!("earliest")), Ok(KafkaStart::Earliest));
        assert_eq!(start(serde_json::json!("latest")), Ok(KafkaStart::Latest));
        assert_eq!(start(serde_json::json!({"timestamp_ms": 1_700_000_000_000i64})), Ok(KafkaStart::TimestampMs(1_700_000_000_000)));
        assert!(start(serde_json::json!("newest")).is_err());
        assert!(start(serde_json::json!({"timestamp_ms": "soon"})).is_err());
    }

    #[test]
    fn a_lost_broker_connection_is_transient_and_a_fatal_error_is_not() {
        use RDKafkaErrorCode as C;
        assert!(is_transient(&KafkaError::MessageConsumption(C::BrokerTransportFailure)));
        assert!(is_transient(&KafkaError::MessageConsumption(C::AllBrokersDown)));
        assert!(!is_transient(&KafkaError::MessageConsumptionFatal(C::BrokerTransportFailure)), "a fatal client error is never retried");
        assert!(!is_transient(&KafkaError::MessageConsumption(C::TopicAuthorizationFailed)));
        assert!(!is_transient(&KafkaError::MessageConsumption(C::Fatal)));
    }
}
