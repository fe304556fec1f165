//! `"type": "kafka"`: writes each event as a record of one topic, through an
//! idempotent producer. At least once across a crash: a checkpoint completes
//! only once every record written before it is acknowledged by the broker, and
//! a delivery error is surfaced (the run fails), never dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// librdkafka producer settings passed through as they are (security,
    /// batching, compression), e.g. `{"compression.type": "lz4"}`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How long a checkpoint or the end of a run waits for acknowledgements
/// before it fails.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The first delivery error seen (the producer's callback runs on librdkafka's thread).
#[derive(Clone, Default)]
struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.to_string());
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
}

impl KafkaSink {
    pub fn open(name: &str, c: &KafkaSinkConfig) -> Result<Self, SinkError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &c.brokers)
            // No duplicates from the producer's own retries, order kept per partition.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Retried until the flush timeout, then surfaced.
            .set("message.timeout.ms", FLUSH_TIMEOUT.as_millis().to_string())
            .set("linger.ms", "5");
        for (k, v) in &c.properties {
            config.set(k, v);
        }
        let deliveries = Deliveries::default();
        let producer = config
            .create_with_context(deliveries.clone())
            .map_err(|e| SinkError::Kafka { sink: name.into(), topic: c.topic.clone(), error: format!("creating the producer: {e}") })?;
        Ok(KafkaSink {
            name: name.into(),
            target: format!("kafka topic `{}` at {}", c.topic, c.brokers),
            topic: c.topic.clone(),
            key: c.key.as_ref().map(|k| k.trim_start_matches("$.").to_string()),
            producer,
            deliveries,
        })
    }

    fn error(&self, error: String) -> SinkError {
        SinkError::Kafka { sink: self.name.clone(), topic: self.topic.clone(), error }
    }

    fn check_deliveries(&self) -> Result<(), SinkError> {
        let failed = self.deliveries.failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        failed.map_or(Ok(()), |e| Err(self.error(format!("delivery failed: {e}"))))
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
                    Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) if Instant::now() < until => {
                        pending = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(self.error(format!("producing a record: {e}"))),
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.check_deliveries()
    }

    /// Waits until the broker acknowledged every record written so far.
    fn commit(&mut self) -> Result<Option<u64>, SinkError> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| self.error(format!("flushing: {e}")))?;
        self.check_deliveries()?;
        Ok(None)
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}
