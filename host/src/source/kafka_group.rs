//! Scale-out over a consumer group: the one group member of a process.
//!
//! The member subscribes to every topic of the pipeline's Kafka sources with
//! the range assignor, so with equal partition counts a process is given the
//! same partition numbers of each topic (partition p of the impressions and
//! of the clicks together). It reads no records itself (its partitions are
//! paused): the sources read with consumers of their own, assigned what the
//! member was given, and the offsets of each checkpoint are committed through
//! the member, with its generation ([`GroupMember::committer`]).
//!
//! A revocation is handled inside the member's poll, as Kafka requires: the
//! hook given at creation stops the running pipeline (drain, final
//! checkpoint, commit) before the callback returns, so the next owner of a
//! partition starts from that checkpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use super::kafka::{client_config, KafkaCommitter, KafkaSourceConfig};
use super::{PositionCommitter, SourceError};

/// What the member was given: partition numbers per topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Called inside the member's poll when partitions are taken away (before
/// the group moves them): stops whatever reads them.
pub type RevokeHook = Box<dyn Fn() + Send + Sync>;

pub struct MemberContext {
    on_revoke: RevokeHook,
    /// An assignment received and not taken yet.
    assigned: Mutex<Option<Assignment>>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "the group takes this process's partitions back: stopping the pipeline");
                *self.assigned.lock().unwrap_or_else(|e| e.into_inner()) = None;
                (self.on_revoke)();
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // The member only holds the assignment; the sources' own consumers read.
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(error = %e, "pausing the group member's partitions");
            }
            let mut given = Assignment::new();
            for e in tpl.elements() {
                given.entry(e.topic().to_string()).or_default().push(e.partition());
            }
            tracing::info!(assignment = ?given, "the group gave this process partitions");
            *self.assigned.lock().unwrap_or_else(|e| e.into_inner()) = Some(given);
        }
    }
}

pub struct GroupMember {
    consumer: Arc<BaseConsumer<MemberContext>>,
    topics: Vec<String>,
    name: String,
}

impl GroupMember {
    /// Joins `config`'s group (its brokers and settings) for `topics`.
    pub fn join(name: &str, config: &KafkaSourceConfig, topics: Vec<String>, on_revoke: RevokeHook) -> Result<Self, SourceError> {
        let err = |e: String| SourceError::Kafka { source_name: name.into(), error: e };
        let mut c = client_config(config);
        // Equal partition numbers of every topic to each member (co-partitioning).
        c.set("partition.assignment.strategy", "range");
        // It reads nothing: no end-of-partition events to report.
        c.set("enable.partition.eof", "false");
        let context = MemberContext { on_revoke, assigned: Mutex::new(None) };
        let consumer: BaseConsumer<MemberContext> = c.create_with_context(context).map_err(|e| err(format!("creating the group member: {e}")))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| err(format!("subscribing to {}: {e}", topics.join(", "))))?;
        Ok(GroupMember { consumer: Arc::new(consumer), topics, name: name.into() })
    }

    /// Serves the group protocol for up to `wait` (rebalance callbacks run
    /// here); records fetched before the pause are dropped, unread.
    pub fn poll(&self, wait: Duration) {
        match self.consumer.poll(wait) {
            Some(Err(e)) => tracing::debug!(error = %e, "group member"),
            Some(Ok(_)) | None => {}
        }
    }

    /// The assignment received since the last call, if any.
    pub fn take_assignment(&self) -> Option<Assignment> {
        self.consumer.context().assigned.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The partition count of each topic.
    pub fn partition_counts(&self) -> Result<BTreeMap<String, usize>, SourceError> {
        let mut counts = BTreeMap::new();
        for topic in &self.topics {
            let meta = self
                .consumer
                .fetch_metadata(Some(topic), Duration::from_secs(30))
                .map_err(|e| SourceError::Kafka { source_name: self.name.clone(), error: format!("topic `{topic}`: {e}") })?;
            counts.insert(topic.clone(), meta.topics().iter().map(|t| t.partitions().len()).sum());
        }
        Ok(counts)
    }

    /// Commits a source's checkpointed offsets through the member.
    pub fn committer(&self, source: &str, topics: &[String]) -> Box<dyn PositionCommitter> {
        Box::new(KafkaCommitter::through(source, topics, self.consumer.clone()))
    }

    /// Leaves the group (its partitions go to the others at once).
    pub fn leave(&self) {
        self.consumer.unsubscribe();
        // Serves the revocation the unsubscribe causes.
        self.poll(Duration::from_millis(200));
    }
}
