//! Tuning of the RocksDB backend: the part of pipeline.json that bounds its memory.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// RocksDB state backend settings. Memory is bounded by `block_cache_mb` plus
/// `max_total_write_buffer_mb` (plus a little per open file), whatever the size of the
/// state on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RocksOptions {
    /// Size of the LRU block cache shared by every table, in MiB. Index and filter blocks
    /// live in it too, so it bounds read-side memory.
    pub block_cache_mb: u64,
    /// Size of one write buffer (memtable) of a table, in MiB. A full buffer is flushed to
    /// disk in the background.
    pub write_buffer_mb: u64,
    /// Write buffers per table (one being filled, the others being flushed); at least 2.
    pub max_write_buffers: u32,
    /// Bound on the write buffers of all tables together, in MiB: past it the largest is
    /// flushed. 0: no bound beyond `write_buffer_mb × max_write_buffers` per table.
    pub max_total_write_buffer_mb: u64,
    /// Files RocksDB keeps open at once (each open file holds a little memory); at least 16.
    pub max_open_files: u32,
    /// Block compression. Falls back to `none`, with a warning, if the linked RocksDB
    /// library lacks the codec.
    pub compression: Compression,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            block_cache_mb: 64,
            write_buffer_mb: 32,
            max_write_buffers: 2,
            max_total_write_buffer_mb: 256,
            max_open_files: 256,
            compression: Compression::Lz4,
        }
    }
}

/// A block compression codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// LZ4: fast, moderate ratio (the default).
    Lz4,
    /// Zstandard: better ratio, more CPU.
    Zstd,
    /// No compression.
    None,
}

impl RocksOptions {
    /// The values RocksDB is given: sizes in bytes, counts clamped to workable minimums.
    pub(crate) fn block_cache_bytes(&self) -> usize {
        mib(self.block_cache_mb.max(1))
    }

    pub(crate) fn write_buffer_bytes(&self) -> usize {
        mib(self.write_buffer_mb.max(1))
    }

    pub(crate) fn max_write_buffers(&self) -> i32 {
        self.max_write_buffers.clamp(2, 64) as i32
    }

    pub(crate) fn total_write_buffer_bytes(&self) -> usize {
        mib(self.max_total_write_buffer_mb)
    }

    pub(crate) fn max_open_files(&self) -> i32 {
        self.max_open_files.clamp(16, 1 << 20) as i32
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// Redis state backend settings (`settings.state.redis`): where the state lives,
/// under which key prefix, and how much a worker may hold before it is written
/// there. See docs/checkpoints.md, "State in Redis".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOptions {
    /// The server, `redis://host:port[/db]` (`rediss://` is not supported).
    /// One server or primary: a checkpoint is one MULTI/EXEC over keys of many
    /// hash slots, which Redis Cluster refuses.
    pub url: String,
    /// Prefix of every key the pipeline writes (default: `streamhost:` and the
    /// pipeline's `name`, or `streamhost` without one). Pipelines sharing a
    /// server need prefixes of their own: `--fresh`, and a run without
    /// checkpoints, delete every key under it.
    pub prefix: Option<String>,
    /// Added to the joins' retention (window, bucket and allowed lateness) to make
    /// the time-to-live of every key, in ms of wall-clock time (default one day).
    /// Each checkpoint renews it, so it only removes the state of a pipeline
    /// stopped for longer; its checkpoint record expires with it and a restart is
    /// then refused until `--fresh`. `null`: keys never expire.
    pub ttl_slack_ms: Option<u64>,
    /// Bound on a worker's writes since the last checkpoint, in MiB (default
    /// 256): they are held in memory until the checkpoint writes them to Redis
    /// with the positions they cover. Past it the worker asks for a checkpoint at
    /// once, and at twice it the run fails. Without `settings.checkpoint` (or
    /// before the first checkpoint) they are written as soon as they pass it or
    /// 16 MiB, whichever is less.
    pub max_overlay_mb: u64,
    /// Bound on one request to Redis, in ms (default 30000; a checkpoint's
    /// transaction gets ten times as long). A request that fails or times out
    /// stops the run; a restart resumes from the last checkpoint.
    pub timeout_ms: u64,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379".into(),
            prefix: None,
            ttl_slack_ms: Some(86_400_000),
            max_overlay_mb: 256,
            timeout_ms: 30_000,
        }
    }
}

impl RedisOptions {
    pub(crate) fn max_overlay_bytes(&self) -> u64 {
        self.max_overlay_mb.max(1).saturating_mul(1 << 20)
    }

    pub(crate) fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.max(1))
    }
}
