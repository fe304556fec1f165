//! The state API: the only way operators reach storage.
//!
//! A [`StateBackend`] holds named **tables**, each an ordered map from byte keys to byte
//! values (lexicographic byte order). Three backends implement it: [`open_memory`] (a
//! `BTreeMap` per table, for tests and small state), [`open_rocksdb`] (one RocksDB
//! column family per table, for state larger than memory) and the Redis backend
//! (`redis/`: state in a Redis server, which holds checkpointed state only; a pipeline
//! opens it through [`RemoteState`]). Nothing outside this module names RocksDB or Redis
//! as a state store.
//!
//! # What the API guarantees
//!
//! - **Batched writes.** `put`, `delete` and `delete_range` are buffered in one write batch
//!   until [`StateBackend::commit`], which applies them atomically and in the order they
//!   were made (a `put` after a `delete_range` covering its key survives; a `put` before it
//!   does not). Either the whole batch is applied or, if `commit` fails, none of it.
//! - **Reads see committed data only.** `get` and `scan` never see the pending batch. An
//!   operator that needs read-your-writes within a batch keeps those writes itself.
//! - `open_table` is not part of the batch: it creates the table at once. A [`TableId`] is
//!   valid only on the backend that returned it; after a restore, open the tables again by
//!   name.
//!
//! # Durability comes from checkpoints, not from a log
//!
//! The RocksDB backend writes with its write-ahead log **disabled**. A committed batch lives
//! in a memtable until RocksDB flushes it, so a process crash loses the batches committed
//! since the last flush; a clean drop of the backend flushes them. This is deliberate: after
//! a crash a pipeline restores its last [checkpoint](StateBackend::checkpoint) and replays
//! its sources from the positions recorded with it, so state written after that checkpoint
//! is recomputed anyway and a log of it would be dead weight (one more write of every byte).
//! A checkpoint is the unit of durability: it flushes the memtables and is complete on disk
//! when `checkpoint` returns.
//!
//! # Checkpoints are incremental on disk
//!
//! RocksDB keeps data in immutable SST files. A checkpoint of the RocksDB backend (RocksDB's
//! `Checkpoint`) hard-links the live SST files into the checkpoint folder and copies only
//! the small metadata files, so a checkpoint costs a flush plus the metadata, and successive
//! checkpoints share every SST file that did not change between them: only files written by
//! flushes and compactions since the previous checkpoint take new space. Hard links need
//! the checkpoint folder on the same file system as the database; elsewhere RocksDB copies
//! the files (correct, not incremental). [`restore_rocksdb`] hard-links the SST files back
//! the same way. The memory backend writes its maps to one file ([`restore_memory`] reads it
//! back): a full copy each time, which suits the small state it is meant for.
//!
//! # Memory
//!
//! The RocksDB backend's memory is bounded by [`RocksOptions`]: a shared LRU block cache
//! (which also holds index and filter blocks), bounded write buffers and a bounded number of
//! open files, so state many times larger than RAM works. [`StateBackend::stats`] reports
//! what is on disk and in memory.

mod logs;
mod memory;
mod options;
mod redis;
mod rocks;

use std::fmt;
use std::path::{Path, PathBuf};

pub use logs::LogId;
use logs::Logs;
pub use memory::{open_memory, restore_memory};
pub use options::{Compression, RedisOptions, RocksOptions};
pub use redis::{check_redis_url, open_redis, restore_redis, DeferredWrites, PartitionEntry, RemoteRecord, RemoteState};
pub use rocks::{open_rocksdb, restore_rocksdb};

/// The bucket-log methods of [`StateBackend`] for a backend keeping its logs in a
/// `logs: Logs` field (memory and RocksDB).
macro_rules! delegate_logs {
    () => {
        fn open_log(&mut self, name: &str) -> Result<super::LogId, StateError> {
            super::check_table_name(name, || super::Backend::Memory)?;
            Ok(self.logs.open(name))
        }

        fn append(&mut self, log: super::LogId, bucket: i64, bytes: &[u8]) -> Result<u64, StateError> {
            self.logs.append(log, bucket, bytes)
        }

        fn drop_bucket(&mut self, log: super::LogId, bucket: i64) -> Result<(), StateError> {
            self.logs.drop_bucket(log, bucket)
        }

        fn read_bucket(&self, log: super::LogId, bucket: i64, out: &mut Vec<u8>) -> Result<(), StateError> {
            self.logs.read(log, bucket, out)
        }

        fn read_bucket_at(&self, log: super::LogId, bucket: i64, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), StateError> {
            self.logs.read_at(log, bucket, offset, len, out)
        }

        fn log_buckets(&self, log: super::LogId) -> Vec<i64> {
            self.logs.buckets(log)
        }

        fn log_len(&self, log: super::LogId, bucket: i64) -> u64 {
            self.logs.len(log, bucket)
        }
    };
}
use delegate_logs;

/// Identifies a table opened on a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableId(u32);

impl TableId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a table is read: hints a backend may index by. Results never depend on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// Every range given to `scan_ranges` lies within keys sharing their first
    /// `range_prefix_len` bytes (and every key is at least that long). RocksDB keeps a
    /// bloom filter of these prefixes, so a range holding no key costs no block read.
    pub range_prefix_len: Option<usize>,
}

/// Keyed storage for operators. See the [module documentation](self) for the guarantees.
pub trait StateBackend: Send {
    /// Opens (creating if needed) a named table: an ordered map from byte keys to byte values
    /// (lexicographic order). Opening the same name again returns the same id.
    fn open_table(&mut self, name: &str) -> Result<TableId, StateError> {
        self.open_table_with(name, TableOptions::default())
    }

    /// [`StateBackend::open_table`] with hints on how the table is read. A table's options
    /// are fixed when it is created (a later open with other options gets the first ones).
    fn open_table_with(&mut self, name: &str, options: TableOptions) -> Result<TableId, StateError>;

    /// Writes are buffered (one write batch) until `commit`; reads (`get`, `scan`) see
    /// committed data only.
    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), StateError>;

    /// Deletes `key` (buffered until `commit`).
    fn delete(&mut self, table: TableId, key: &[u8]) -> Result<(), StateError>;

    /// Deletes every key in [start, end) (buffered until `commit`). An empty range
    /// (`start >= end`) deletes nothing.
    fn delete_range(&mut self, table: TableId, start: &[u8], end: &[u8]) -> Result<(), StateError>;

    /// Applies the buffered writes atomically, in the order they were made.
    fn commit(&mut self) -> Result<(), StateError>;

    /// The committed value of `key`, if any.
    fn get(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Visits keys in [start, end) in ascending order (end = None: to the end of the table)
    /// until `visit` returns false. Sees committed data only.
    fn scan(
        &self,
        table: TableId,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError>;

    /// Visits the keys of each range `[start, end)` of `ranges`, in order,
    /// calling `visit(range index, key, value)`. Like one `scan` per range,
    /// but a backend may serve them all with one cursor (RocksDB: one
    /// iterator, a seek per range, instead of an iterator per range).
    fn scan_ranges(
        &self,
        table: TableId,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut dyn FnMut(usize, &[u8], &[u8]),
    ) -> Result<(), StateError> {
        for (i, (start, end)) in ranges.iter().enumerate() {
            self.scan(table, start, Some(end), &mut |k, v| {
                visit(i, k, v);
                true
            })?;
        }
        Ok(())
    }

    /// Opens (creating if needed) a named bucket log: append-only bytes per bucket, read
    /// and deleted a bucket at a time, with no LSM tree on their path (see `logs.rs`).
    fn open_log(&mut self, name: &str) -> Result<LogId, StateError>;

    /// Appends `bytes` to `bucket` of `log` (buffered until `commit`); returns the
    /// offset in the bucket where they will lie.
    fn append(&mut self, log: LogId, bucket: i64, bytes: &[u8]) -> Result<u64, StateError>;

    /// Deletes `bucket` of `log` whole (buffered until `commit`; an append to it
    /// buffered before is dropped too, one buffered after survives).
    fn drop_bucket(&mut self, log: LogId, bucket: i64) -> Result<(), StateError>;

    /// Appends the committed bytes of `bucket` of `log` to `out`.
    fn read_bucket(&self, log: LogId, bucket: i64, out: &mut Vec<u8>) -> Result<(), StateError>;

    /// Appends `len` committed bytes of `bucket` of `log`, from `offset` on, to `out`.
    fn read_bucket_at(&self, log: LogId, bucket: i64, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), StateError>;

    /// The buckets of `log` holding committed bytes, ascending.
    fn log_buckets(&self, log: LogId) -> Vec<i64>;

    /// Committed bytes of `bucket` of `log` (0 if it has none).
    fn log_len(&self, log: LogId, bucket: i64) -> u64;

    /// Writes a consistent snapshot of the committed state into `dir`, which must not exist
    /// yet (its parent is created if needed). The pending batch is neither included nor
    /// discarded. RocksDB: hard-linked SST files, so repeated checkpoints are incremental
    /// on disk.
    fn checkpoint(&mut self, dir: &Path) -> Result<(), StateError>;

    /// A checkpoint as a pipeline's worker takes it at a barrier: into `dir`, like
    /// [`StateBackend::checkpoint`] (`None`), or, for a backend whose checkpoints live
    /// in its store (Redis), the writes since the last one, which the coordinator
    /// applies together with every other worker's and the checkpoint's record in one
    /// transaction ([`RemoteState::commit`]). Reads see the writes as applied from
    /// then on: the caller applies them before this backend is read again.
    fn checkpoint_or_defer(&mut self, dir: &Path) -> Result<Option<DeferredWrites>, StateError> {
        self.checkpoint(dir).map(|()| None)
    }

    /// Sizes for benchmarks and metrics.
    fn stats(&self) -> StateStats;
}

/// Sizes of a backend's state, approximate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Bytes of the backend's files (RocksDB: its folder; files hard-linked into
    /// checkpoints count in full). 0 for the memory backend.
    pub bytes_on_disk: u64,
    /// Bytes held in memory: RocksDB's memtables, table readers and block cache usage; the
    /// maps' size (keys, values and a per-entry overhead) for the memory backend.
    pub bytes_in_memory: u64,
    /// Estimated number of keys over all tables (RocksDB's estimate counts a key rewritten
    /// but not yet compacted more than once).
    pub keys_estimate: u64,
}

/// An error of the state layer. Every message names the operation and, where there is
/// one, the path.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state: {op} {}: {source}", path.display())]
    Io { op: String, path: PathBuf, source: std::io::Error },
    #[error("state: rocksdb {op} in {}: {message}", path.display())]
    Rocks { op: String, path: PathBuf, message: String },
    #[error("state: checkpoint {}: already exists (a checkpoint never overwrites one)", path.display())]
    CheckpointExists { path: PathBuf },
    #[error("state: restore from {}: not a checkpoint ({reason})", path.display())]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("state: restore from {}: corrupt checkpoint: {reason}", path.display())]
    CorruptCheckpoint { path: PathBuf, reason: String },
    #[error("state: {op} on {backend}: table {table:?} was not opened on this backend")]
    UnknownTable { op: &'static str, backend: Backend, table: TableId },
    #[error("state: {op}: log {log} was not opened on this backend")]
    UnknownLog { op: &'static str, log: u32 },
    #[error("state: open table {name:?} on {backend}: {reason}")]
    InvalidTableName { name: String, backend: Backend, reason: &'static str },
    /// State written by a version of an operator whose layout this one cannot read.
    #[error("state of {owner}: {reason}; start over with `streamhost run --fresh`")]
    Incompatible { owner: String, reason: String },
    /// A request to the Redis server failed (or its answer was not what the layout
    /// says): the run stops, and a restart resumes from the last checkpoint.
    #[error("state: redis {op} on {server} ({namespace}): {message}")]
    Redis { op: String, server: String, namespace: String, message: String },
    /// Another process took this Redis state (or, in a group, one of its
    /// partitions) over since this one claimed it: nothing was written, and
    /// this one stops writing.
    #[error("state: redis {op} on {server} ({namespace}): {message}")]
    TakenOver { op: String, server: String, namespace: String, message: String },
    /// The writes since the last checkpoint outgrew their bound: an early checkpoint
    /// was asked for and did not come.
    #[error("state: redis {namespace}: {held_mib} MiB of writes since the last checkpoint, over twice `settings.state.redis.max_overlay_mb` ({max_mib}); the early checkpoint asked for did not come (lower `settings.checkpoint.interval_ms` or raise `max_overlay_mb`)")]
    OverlayFull { namespace: String, held_mib: u64, max_mib: u64 },
}

/// Which backend an error comes from (for messages).
#[derive(Clone, Debug)]
pub enum Backend {
    Memory,
    Rocks(PathBuf),
    /// A Redis namespace (the prefix of its keys).
    Redis(String),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Memory => f.write_str("the memory backend"),
            Backend::Rocks(path) => write!(f, "rocksdb {}", path.display()),
            Backend::Redis(namespace) => write!(f, "redis {namespace}"),
        }
    }
}

impl StateError {
    fn io(op: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        StateError::Io { op: op.into(), path: path.to_path_buf(), source }
    }
}

/// Names that cannot be a table: the empty name.
fn check_table_name(name: &str, backend: impl FnOnce() -> Backend) -> Result<(), StateError> {
    if name.is_empty() {
        return Err(StateError::InvalidTableName { name: name.into(), backend: backend(), reason: "empty name" });
    }
    Ok(())
}

/// Refuses an existing checkpoint folder and creates its parent.
fn prepare_checkpoint_dir(dir: &Path) -> Result<(), StateError> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => return Err(StateError::CheckpointExists { path: dir.to_path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StateError::io("checkpoint: inspect", dir, e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StateError::io("checkpoint: create parent folder", parent, e))?;
    }
    Ok(())
}

/// Makes `path`'s creation or rename durable by syncing its parent folder.
fn sync_parent(path: &Path) -> Result<(), StateError> {
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p,
        None => Path::new("."),
    };
    std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(|e| StateError::io("sync folder", parent, e))
}
