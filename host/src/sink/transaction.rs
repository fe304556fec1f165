//! Kafka transactions tied to checkpoints: the `exactly-once` Kafka sink.
//!
//! The records written between checkpoints N-1 and N are one transaction.
//! At checkpoint N the driver calls, in this order:
//!
//! 1. `prepare`: the producer flushed, every record of the transaction is on
//!    the broker (invisible to `read_committed` consumers until the commit);
//! 2. the checkpoint's record (`meta.json`): the state and positions of N
//!    are durable;
//! 3. `checkpoint_done`: the *commit record* (the offset N of the consumer
//!    group `<transactional id>.<lineage of the checkpoints>`, on partition 0
//!    of the topic) is added to the transaction, and the transaction
//!    committed: the records and the commit record become visible together;
//! 4. the checkpoint confirmed (`chk-N/committed`, `checkpoint.rs`).
//!
//! A crash between 2 and 3 leaves the transaction open: the restart's
//! `init_transactions` aborts it, the commit record still names N-1, so the
//! run resumes from N-1 and writes those records again in a new
//! transaction. A crash between 3 and 4: the commit record names N and the
//! run resumes from N. A group offset is the commit record because it is
//! what Kafka commits atomically with a transaction's records (Kafka
//! Streams commits its input offsets that way); the lineage in the group's
//! name tells the record of these checkpoints from one left by an earlier
//! life of the pipeline (not the offset's metadata: Tansu drops it).
//!
//! Architecture Invariant: a checkpoint whose record is written but not
//! confirmed is resumed from only if the commit record names it.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::{Deliveries, KafkaSinkConfig};
use crate::runtime::Committed;

/// How long the transaction calls (init, commit) may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a failed run waits to abort its transaction (the restart's
/// fencing aborts it anyway).
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The open transaction of an `exactly-once` sink.
pub(super) struct Transaction {
    id: String,
    topic: String,
    /// A consumer of the commit record's group: its group metadata goes with
    /// each commit. It joins no group and reads nothing.
    marker: BaseConsumer,
    /// Records written in the open transaction.
    pub(super) records: u64,
}

/// The broker's default `transaction.timeout.ms`: an open transaction
/// older than this is aborted by the broker (checkpoints must come sooner).
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 60_000;

impl Transaction {
    /// Makes `config` a transactional producer's.
    pub(super) fn configure(config: &mut ClientConfig, id: &str) {
        config.set("transactional.id", id);
    }

    /// Fences earlier producers of `id` (aborting a transaction they left
    /// open) and begins the first transaction.
    pub(super) fn begin(producer: &ThreadedProducer<Deliveries>, c: &KafkaSinkConfig, id: String, lineage: String) -> Result<Transaction, String> {
        producer.init_transactions(TXN_TIMEOUT).map_err(|e| format!("transactional id `{id}`: initialising transactions: {e}"))?;
        let marker = marker_consumer(c, &id, &lineage)?;
        producer.begin_transaction().map_err(|e| format!("transactional id `{id}`: beginning a transaction: {e}"))?;
        Ok(Transaction { id, topic: c.topic.clone(), marker, records: 0 })
    }

    /// Commits the open transaction with the commit record of `checkpoint`,
    /// then begins the next. A transaction that cannot commit is aborted and
    /// the run fails: its records are written again after the restart. A
    /// transaction without records stays open (nothing to commit: a replay
    /// from an earlier checkpoint writes nothing where it wrote nothing, and
    /// Tansu drops the offsets of a transaction that has no records).
    pub(super) fn commit(&mut self, producer: &ThreadedProducer<Deliveries>, checkpoint: u64) -> Result<(), String> {
        if self.records == 0 {
            return Ok(());
        }
        let id = &self.id;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.topic, 0, Offset::Offset(checkpoint as i64))
            .map_err(|e| format!("transactional id `{id}`: the commit record: {e}"))?;
        let group = self.marker.group_metadata().ok_or_else(|| format!("transactional id `{id}`: no group metadata for the commit record"))?;
        let committed = producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT).and_then(|()| {
            crate::failpoint::hit("sink-transaction-before-commit");
            producer.commit_transaction(TXN_TIMEOUT)
        });
        if let Err(e) = committed {
            let reason = explain(&e);
            // A fenced producer's transaction belongs to the newer one now.
            if requires_abort(&e) && !fenced(&e) {
                let _ = producer.abort_transaction(ABORT_TIMEOUT);
            }
            return Err(format!("transactional id `{id}`: committing the transaction of checkpoint {checkpoint} ({} records): {e}{reason}", self.records));
        }
        crate::failpoint::hit("sink-transaction-committed");
        tracing::debug!(transactional_id = %id, checkpoint, records = self.records, "transaction committed");
        self.records = 0;
        producer.begin_transaction().map_err(|e| format!("transactional id `{id}`: beginning a transaction: {e}"))
    }

    /// Why a record of the transaction failed, when the cause is the
    /// producer's, with a hint: fenced (the record's own error, or the
    /// producer's fatal error, after which queued records fail with
    /// `PurgeQueue`, which says nothing of the cause).
    pub(super) fn delivery_failure(&self, producer: &ThreadedProducer<Deliveries>, code: Option<RDKafkaErrorCode>) -> Option<String> {
        let id = &self.id;
        if let Some(code) = code.filter(|c| is_fencing(*c)) {
            return Some(format!("transactional id `{id}`: delivery failed: {code}{FENCED_HINT}"));
        }
        let (code, reason) = producer.client().fatal_error()?;
        let hint = if is_fencing(code) { FENCED_HINT } else { FATAL_HINT };
        Some(format!("transactional id `{id}`: {reason}{hint}"))
    }

    /// Aborts the open transaction (its records are not covered by a checkpoint).
    pub(super) fn abort(&mut self, producer: &ThreadedProducer<Deliveries>) -> Result<(), String> {
        tracing::info!(transactional_id = %self.id, records = self.records, "aborting the open transaction: the restart writes its records again");
        producer.abort_transaction(ABORT_TIMEOUT).map_err(|e| format!("transactional id `{}`: aborting the transaction: {e}", self.id))?;
        self.records = 0;
        producer.begin_transaction().map_err(|e| format!("transactional id `{}`: beginning a transaction: {e}", self.id))
    }
}

/// What a restart resumes from with an `exactly-once` sink: fences every
/// earlier producer of `id` (the broker aborts a transaction one left open),
/// then reads the commit record of the last committed transaction of the
/// checkpoints of `lineage` (none: there are no checkpoints).
pub fn last_committed(c: &KafkaSinkConfig, id: &str, lineage: Option<&str>) -> Result<Option<Committed>, String> {
    let mut config = c.client_config();
    Transaction::configure(&mut config, id);
    let fencer: ThreadedProducer<Deliveries> = config.create_with_context(Deliveries::default()).map_err(|e| format!("creating the producer: {e}"))?;
    fencer.init_transactions(TXN_TIMEOUT).map_err(|e| format!("transactional id `{id}`: fencing earlier runs: {e}"))?;
    drop(fencer);
    lineage.map_or(Ok(None), |l| read_commit_record(c, id, l))
}

/// The commit record of transactional id `id` for the checkpoints of
/// `lineage`, without fencing anyone.
pub fn read_commit_record(c: &KafkaSinkConfig, id: &str, lineage: &str) -> Result<Option<Committed>, String> {
    let marker = marker_consumer(c, id, lineage)?;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(&c.topic, 0);
    let got = marker.committed_offsets(wanted, TXN_TIMEOUT).map_err(|e| format!("transactional id `{id}`: reading its commit record: {e}"))?;
    let Some(p) = got.find_partition(&c.topic, 0) else { return Ok(None) };
    Ok(match p.offset() {
        Offset::Offset(n) if n >= 0 => Some(Committed { id: n as u64, lineage: lineage.to_string() }),
        _ => None,
    })
}

/// A consumer of the commit record's group, `<id>.<lineage>`.
fn marker_consumer(c: &KafkaSinkConfig, id: &str, lineage: &str) -> Result<BaseConsumer, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &c.brokers).set("group.id", format!("{id}.{lineage}")).set("enable.auto.commit", "false");
    // The user's security settings reach the broker the same way.
    for (k, v) in c.properties.iter().filter(|(k, _)| k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.")) {
        config.set(k, v);
    }
    config.create().map_err(|e| format!("transactional id `{id}`: a consumer for its commit record: {e}"))
}

fn requires_abort(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.txn_requires_abort())
}

fn fenced(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if is_fencing(t.code()))
}

fn is_fencing(code: RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{Fenced, InvalidProducerEpoch, ProducerFenced};
    matches!(code, Fenced | ProducerFenced | InvalidProducerEpoch)
}

const FENCED_HINT: &str = " (fenced: a newer run took this transactional id over; is the pipeline running twice?)";
const FATAL_HINT: &str = " (fatal: the producer cannot go on; the restart resumes from the last committed checkpoint)";

/// A hint for the errors a user can act on.
fn explain(e: &KafkaError) -> &'static str {
    if fenced(e) {
        FENCED_HINT
    } else if matches!(e, KafkaError::Transaction(t) if t.is_fatal()) {
        FATAL_HINT
    } else {
        ""
    }
}
