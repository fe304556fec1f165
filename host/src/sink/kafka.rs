//! `"type": "kafka"`: writes each event as a record of one topic, through an
//! idempotent producer, in one of two modes (`delivery`):
//!
//! - **at least once** (the default): a checkpoint completes only once every
//!   record written before it is acknowledged by the broker, and a delivery
//!   error is surfaced (the run fails), never dropped. A crash replays what was
//!   written after the last checkpoint, so those records appear again.
//! - **exactly once**: the records between two checkpoints are one Kafka
//!   transaction (`transaction.rs`), committed once the checkpoint's record is
//!   durable, together with a commit record naming the checkpoint. A restart
//!   first fences the transactional id (the broker aborts a transaction a
//!   crash left open), then reads the commit record and resumes from the
//!   checkpoint whose transaction committed last, so consumers reading
//!   committed records see every output once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::transaction::Transaction;
use super::{Sink, SinkError};
use crate::event::{Batch, Event};

/// `"type": "kafka"`: one record per event in `topic`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Sources or steps this sink reads.
    pub inputs: Vec<String>,
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic written to.
    pub topic: String,
    /// The record key: a top-level field path (`$.id`; a string is its text,
    /// anything else its JSON text). Without it, the event key (if any).
    #[serde(default)]
    pub key: Option<String>,
    /// What a crash can do to the output: `at-least-once` (records written
    /// after the last checkpoint are written again) or `exactly-once`
    /// (Kafka transactions tied to the checkpoints; needs
    /// `transactional_id` and `settings.checkpoint`).
    #[serde(default)]
    pub delivery: Delivery,
    /// `exactly-once`: the producer's transactional id, unique to this
    /// pipeline on the cluster and stable across its restarts (a restart
    /// fences the run before it with it, and its commit record is kept under
    /// it). With `settings.scale_out`, each process appends `.<instance>`.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// librdkafka producer settings passed through as they are (security,
    /// batching, compression), e.g. `{"compression.type": "lz4"}`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// The guarantee of a Kafka sink across a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Every record is written, some again after a crash.
    #[default]
    AtLeastOnce,
    /// Every record is committed once (for consumers with
    /// `isolation.level=read_committed`).
    ExactlyOnce,
}

impl KafkaSinkConfig {
    /// The transactional id of this process (`exactly-once` only).
    pub(crate) fn transactional_id_of(&self, instance: Option<&str>) -> Option<String> {
        let id = self.transactional_id.as_ref().filter(|_| self.delivery == Delivery::ExactlyOnce)?;
        Some(match instance {
            Some(i) => format!("{id}.{i}"),
            None => id.clone(),
        })
    }

    /// The producer's settings: ours, then the user's.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            // No duplicates from the producer's own retries, order kept per partition.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Retried until the flush timeout, then surfaced.
            .set("message.timeout.ms", FLUSH_TIMEOUT.as_millis().to_string())
            .set("linger.ms", "5");
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}

/// How long a checkpoint or the end of a run waits for acknowledgements
/// before it fails.
pub(super) const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The first delivery error seen (the producer's callback runs on librdkafka's thread).
#[derive(Clone, Default)]
pub(super) struct Deliveries {
    failed: Arc<Mutex<Option<KafkaError>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.clone());
        }
    }
}

pub(super) struct KafkaSink {
    name: String,
    target: String,
    topic: String,
    key: Option<String>,
    producer: ThreadedProducer<Deliveries>,
    deliveries: Deliveries,
    /// `exactly-once`: the open transaction.
    transaction: Option<Transaction>,
}

impl KafkaSink {
    /// `transactional`: the transactional id and the lineage of the
    /// checkpoints (`exactly-once`).
    pub fn open(name: &str, c: &KafkaSinkConfig, transactional: Option<(String, String)>) -> Result<Self, SinkError> {
        let error = |error: String| SinkError::Kafka { sink: name.into(), topic: c.topic.clone(), error };
        let mut config = c.client_config();
        if let Some((id, _)) = &transactional {
            Transaction::configure(&mut config, id);
        }
        let deliveries = Deliveries::default();
        let producer: ThreadedProducer<Deliveries> =
            config.create_with_context(deliveries.clone()).map_err(|e| error(format!("creating the producer: {e}")))?;
        let transaction = match transactional {
            Some((id, lineage)) => Some(Transaction::begin(&producer, c, id, lineage).map_err(error)?),
            None => None,
        };
        Ok(KafkaSink {
            name: name.into(),
            target: format!("kafka topic `{}` at {}", c.topic, c.brokers),
            topic: c.topic.clone(),
            key: c.key.as_ref().map(|k| k.trim_start_matches("$.").to_string()),
            producer,
            deliveries,
            transaction,
        })
    }

    fn error(&self, error: String) -> SinkError {
        SinkError::Kafka { sink: self.name.clone(), topic: self.topic.clone(), error }
    }

    fn check_deliveries(&self) -> Result<(), SinkError> {
        let Some(failed) = self.deliveries.failed.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return Ok(()) };
        let cause = self.transaction.as_ref().and_then(|t| t.delivery_failure(&self.producer, failed.rdkafka_error_code()));
        Err(self.error(cause.unwrap_or_else(|| format!("delivery failed: {failed}"))))
    }

    /// Waits until the broker acknowledged every record written so far.
    fn flush_all(&mut self) -> Result<(), SinkError> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| self.error(format!("flushing: {e}")))?;
        self.check_deliveries()
    }

    /// The record key of `e`: its field `key`, else its event key.
    fn key_of(&self, e: &Event) -> Option<Vec<u8>> {
        let Some(field) = &self.key else { return e.key.clone() };
        let raw = crate::record_schema::member_and_names(&e.value, field, None).ok().flatten()?;
        Some(crate::record_schema::key_bytes(raw.get()))
    }
}

impl Sink for KafkaSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.check_deliveries()?;
        for e in &batch.events {
            let key = self.key_of(e);
            let mut headers = OwnedHeaders::new_with_capacity(e.headers.len());
            for h in &e.headers {
                headers = headers.insert(Header { key: &h.name, value: Some(&h.value) });
            }
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).payload(e.value.as_slice()).timestamp(e.timestamp).headers(headers);
            if let Some(k) = &key {
                record = record.key(k.as_slice());
            }
            // A full local queue: wait for the broker (backpressure), never drop.
            let until = Instant::now() + FLUSH_TIMEOUT;
            let mut pending = record;
            loop {
                match self.producer.send(pending) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) if Instant::now() < until => {
                        pending = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(self.error(format!("producing a record: {e}"))),
                }
            }
        }
        if let Some(t) = &mut self.transaction {
            t.records += batch.len() as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.check_deliveries()
    }

    /// At least once: waits for every acknowledgement. Exactly once (the end
    /// of a run that takes no final checkpoint): aborts the open
    /// transaction, whose records the restart writes again.
    fn commit(&mut self) -> Result<Option<u64>, SinkError> {
        match self.transaction.as_mut() {
            None => self.flush_all().map(|()| None),
            Some(t) => t.abort(&self.producer).map(|()| None).map_err(|e| self.error(e)),
        }
    }

    /// Phase one: every record written so far acknowledged (in the open
    /// transaction, if exactly once).
    fn prepare(&mut self) -> Result<Option<u64>, SinkError> {
        self.flush_all().map(|()| None)
    }

    /// Phase two (exactly once): the transaction and its commit record
    /// committed, the next one begun.
    fn checkpoint_done(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        let Some(t) = self.transaction.as_mut() else { return Ok(()) };
        t.commit(&self.producer, checkpoint).map_err(|e| SinkError::Kafka { sink: self.name.clone(), topic: self.topic.clone(), error: e })
    }

    fn transactional(&self) -> bool {
        self.transaction.is_some()
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}
