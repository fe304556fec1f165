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
