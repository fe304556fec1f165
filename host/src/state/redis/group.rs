//! The Redis state of a pipeline scaled out over a consumer group
//! (`settings.scale_out`): the processes share one prefix, and a partition's
//! state and offsets move with the partition through Redis alone.
//!
//! # Keys (prefix `P`)
//!
//! - `P:epoch` — a counter: each build of a process (each assignment the group
//!   gives it) draws its *epoch* from it. Never expires (a counter that started
//!   over would let old claims win).
//! - `P:e{epoch}:s{stage}w{index}:…` — that build's workers' state (a
//!   *generation*), filled at its start with the key groups of its partitions
//!   taken from the generations the index names, then written by its
//!   checkpoints; `P:e{epoch}:checkpoint` the id of the checkpoint it is at.
//! - `P:i:{instance}:checkpoint` — the instance's own checkpoint record (its
//!   dead letters' length, its checkpoint ids, its partitions' positions).
//! - `P:kg:{p}` — the index entry of partition `p`: a hash of `generation` (the
//!   generation holding its key group) and `record` (the checkpoint record of
//!   that state, restricted to `p`: its offsets, watermarks, workers).
//! - `P:i:{instance}:owner`, `P:kg:{p}:owner` — the epoch of the build that
//!   claimed the instance, the partition, last.
//!
//! # One transaction per checkpoint
//!
//! A checkpoint applies in one `MULTI`/`EXEC` the workers' writes, the
//! instance's record, the entry of every partition the build owns and its
//! generation's marker: an entry never names a state that is not there, nor
//! one ahead of its offsets (a new owner checks the marker against the entry).
//!
//! # Fencing
//!
//! A build claims the instance and each partition it was given with its epoch
//! (one script: refused if any of them holds a higher epoch, a newer build's),
//! before it reads the entries. Every write of the build (a checkpoint, an
//! overlay written out before the first) `WATCH`es those claims and goes
//! through only while they all still hold its epoch. So once a new owner has
//! claimed a partition, its old owner (a process the group replaced, paused or
//! slow to stop) cannot write its entry, its state or its instance's record any
//! more, and the new owner reads a state no one changes under it.
//!
//! # Garbage
//!
//! After each checkpoint, the generations this build took partitions from are
//! unlinked once no entry names them (the last of their new owners to
//! checkpoint does it). A generation no entry ever named (a build killed before
//! its first checkpoint), or one left by a crash between a checkpoint and its
//! sweep, expires with its keys' time-to-live (the joins' retention plus
//! `ttl_slack_ms`), which only its own checkpoints renewed.

use std::collections::BTreeSet;

use super::codec::{self, Resp};
use super::store::{Fence, RemoteRecord, RemoteState};
use crate::state::{RedisOptions, StateError};

/// Claims every key of `KEYS` with epoch `ARGV[1]` (time-to-live `ARGV[2]` ms,
/// or none if empty), unless one holds a higher epoch: then that key.
const CLAIM: &str = r"
local epoch = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  if (tonumber(redis.call('GET', key) or '0') or 0) > epoch then return key end
end
for _, key in ipairs(KEYS) do
  if ARGV[2] == '' then redis.call('SET', key, ARGV[1]) else redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
end
return false
";

/// A build's share of the group.
pub(super) struct Group {
    instance: String,
    epoch: u64,
    /// The partitions (key groups) it owns.
    partitions: Vec<u16>,
    /// Every partition of the group (the topics' partition count).
    key_groups: usize,
    /// The generations it took partitions' state from, to unlink once no entry
    /// names them.
    superseded: BTreeSet<String>,
}

/// A partition's index entry, as a new owner reads it.
pub struct PartitionEntry {
    /// The generation whose state holds the partition's key group (`e{epoch}`).
    pub generation: String,
    /// The checkpoint record of that state, restricted to the partition.
    pub record: Vec<u8>,
    /// The checkpoint that generation's state is at (`None`: its marker is
    /// gone, and so may be its state).
    pub state_at: Option<u64>,
}

impl Group {
    pub(super) fn generation(&self) -> String {
        format!("e{}", self.epoch)
    }

    pub(super) fn instance_key(&self, prefix: &str, what: &str) -> String {
        format!("{prefix}:i:{}:{what}", self.instance)
    }

    pub(super) fn marker_key(&self, prefix: &str) -> Vec<u8> {
        marker_key(prefix, &self.generation())
    }

    /// Appends to `tail` what a checkpoint writes for the group: the entry of
    /// every partition owned, the generation's marker. Every partition owned
    /// has an entry, and no other.
    pub(super) fn entries(&self, prefix: &str, record: &RemoteRecord<'_>, ttl: Option<&[u8]>, tail: &mut Resp) -> Result<(), String> {
        let given: BTreeSet<u16> = record.partitions.iter().map(|(p, _)| *p).collect();
        if given.len() != record.partitions.len() || !given.iter().copied().eq(self.partitions.iter().copied()) {
            return Err(format!("the entries are for partitions {given:?}, this process owns {:?}", self.partitions));
        }
        let generation = self.generation();
        for (p, entry) in &record.partitions {
            let key = partition_key(prefix, *p);
            tail.cmd(&[b"HSET", key.as_bytes(), b"generation", generation.as_bytes(), b"record", entry]);
            if let Some(ttl) = ttl {
                tail.cmd(&[b"PEXPIRE", key.as_bytes(), ttl]);
            }
        }
        let marker = self.marker_key(prefix);
        tail.cmd(&[b"SET", &marker, itoa::Buffer::new().format(record.id).as_bytes()]);
        if let Some(ttl) = ttl {
            tail.cmd(&[b"PEXPIRE", &marker, ttl]);
        }
        Ok(())
    }
}

fn partition_key(prefix: &str, p: u16) -> String {
    format!("{prefix}:kg:{p}")
}

fn marker_key(prefix: &str, generation: &str) -> Vec<u8> {
    format!("{prefix}:{generation}:checkpoint").into_bytes()
}

impl RemoteState {
    /// Connects as instance `instance` of a group whose topics have
    /// `key_groups` partitions, for a build given `partitions`: draws the
    /// build's epoch and claims the instance and each partition with it.
    /// Refused ([`StateError::TakenOver`]) if a newer build holds one of them.
    pub fn join_group(options: &RedisOptions, pipeline: Option<&str>, retention_ms: u64, instance: &str, partitions: &[u16], key_groups: usize) -> Result<Self, StateError> {
        let mut state = Self::open(options, pipeline, retention_ms)?;
        let epoch: u64 = redis::cmd("INCR").arg(format!("{}:epoch", state.prefix)).query(&mut state.con).map_err(|e| state.error("draw an epoch", e))?;
        let group = Group { instance: instance.into(), epoch, partitions: partitions.to_vec(), key_groups, superseded: BTreeSet::new() };
        let mut keys = vec![group.instance_key(&state.prefix, "owner")];
        keys.extend(partitions.iter().map(|&p| format!("{}:owner", partition_key(&state.prefix, p))));
        let ttl = state.ttl_ms.map_or_else(String::new, |t| t.to_string());
        let newer: Option<String> =
            redis::cmd("EVAL").arg(CLAIM).arg(keys.len()).arg(&keys).arg(epoch).arg(ttl).query(&mut state.con).map_err(|e| state.error("claim the partitions", e))?;
        if let Some(key) = newer {
            return Err(StateError::TakenOver {
                op: "claim the partitions".into(),
                server: state.server.clone(),
                namespace: state.prefix.clone(),
                message: format!("{key} holds the claim of a newer build (the group has given these partitions to another process since)"),
            });
        }
        let token = epoch.to_string().into_bytes();
        state.fence = Fence { guards: keys.into_iter().map(|k| (k.into_bytes(), token.clone())).collect() };
        tracing::info!(prefix = %state.prefix, instance, epoch, ?partitions, "claimed the partitions' state in redis");
        state.group = Some(group);
        Ok(state)
    }

    /// In a group: the partitions this build owns.
    pub fn partitions(&self) -> &[u16] {
        self.group.as_ref().map_or(&[], |g| &g.partitions)
    }

    /// In a group: the generation this build's workers write (`e{epoch}`),
    /// which its checkpoint records name.
    pub fn group_generation(&self) -> Option<String> {
        self.group.as_ref().map(Group::generation)
    }

    /// The index entry of each partition owned that has one; the generations
    /// they name are unlinked once no entry names them any more.
    pub fn partition_entries(&mut self) -> Result<Vec<(u16, PartitionEntry)>, StateError> {
        let partitions = self.partitions().to_vec();
        let mut pipe = redis::pipe();
        for &p in &partitions {
            pipe.cmd("HMGET").arg(partition_key(&self.prefix, p)).arg("generation").arg("record");
        }
        let found: Vec<(Option<String>, Option<Vec<u8>>)> = if partitions.is_empty() { Vec::new() } else { pipe.query(&mut self.con).map_err(|e| self.error("read the partitions' index", e))? };
        let mut entries = Vec::new();
        for (&p, fields) in partitions.iter().zip(found) {
            match fields {
                (None, None) => {}
                (Some(generation), Some(record)) if generation.starts_with('e') => entries.push((p, PartitionEntry { generation, record, state_at: None })),
                _ => return Err(self.error("read the partitions' index", format!("{} is not an index entry (a hash of generation and record)", partition_key(&self.prefix, p)))),
            }
        }
        let generations: BTreeSet<String> = entries.iter().map(|(_, e)| e.generation.clone()).collect();
        let mut pipe = redis::pipe();
        for g in &generations {
            pipe.cmd("GET").arg(marker_key(&self.prefix, g));
        }
        let markers: Vec<Option<u64>> = if generations.is_empty() { Vec::new() } else { pipe.query(&mut self.con).map_err(|e| self.error("read the generations' markers", e))? };
        let at: std::collections::BTreeMap<&String, Option<u64>> = generations.iter().zip(markers).collect();
        for (_, e) in &mut entries {
            e.state_at = at.get(&e.generation).copied().flatten();
        }
        if let Some(g) = self.group.as_mut() {
            g.superseded.extend(generations);
        }
        Ok(entries)
    }

    /// Unlinks the generations this build took state from that no entry names
    /// any more (best effort: what is left expires with its time-to-live).
    pub(super) fn collect_garbage(&mut self) {
        let Some(group) = self.group.as_mut() else { return };
        if group.superseded.is_empty() {
            return;
        }
        let candidates = std::mem::take(&mut group.superseded);
        let key_groups = group.key_groups;
        let mut pipe = redis::pipe();
        for p in 0..key_groups {
            pipe.cmd("HGET").arg(partition_key(&self.prefix, p as u16)).arg("generation");
        }
        let named: Vec<Option<String>> = match pipe.query(&mut self.con) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(prefix = %self.prefix, error = %e, "cannot read the partitions' index to remove superseded state; it expires with its time-to-live");
                return;
            }
        };
        let named: BTreeSet<String> = named.into_iter().flatten().collect();
        for g in candidates.iter().filter(|g| !named.contains(*g)) {
            let pattern = format!("{}:{}:*", codec::glob_escape(&self.prefix), codec::glob_escape(g));
            match self.sweep(&pattern, &|_| false) {
                Ok(keys) => tracing::info!(prefix = %self.prefix, generation = %g, keys, "state no partition's entry names any more removed from redis"),
                Err(e) => tracing::warn!(prefix = %self.prefix, generation = %g, error = %e, "cannot remove superseded state; it expires with its time-to-live"),
            }
        }
    }
}
