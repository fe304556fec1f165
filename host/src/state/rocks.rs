//! The RocksDB backend: one column family per table, one `WriteBatch` per commit written
//! without the WAL, RocksDB's `Checkpoint` for checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, ReadOptions, SliceTransform,
    WriteBatch, WriteOptions, DB,
};

use super::{
    check_table_name, prepare_checkpoint_dir, sync_parent, Backend, Compression, RocksOptions, StateBackend,
    StateError, StateStats, TableId, TableOptions,
};

/// Opens the RocksDB state in `dir` with every table it holds, or creates an empty one
/// (and `dir`). The folder must not be open elsewhere (RocksDB locks it).
pub fn open_rocksdb(dir: &Path, options: &RocksOptions) -> Result<Box<dyn StateBackend>, StateError> {
    Ok(Box::new(RocksBackend::open(dir, options)?))
}

/// Restores: replaces `dir` with a copy of the checkpoint at `checkpoint_dir` (SST files
/// hard-linked where the file system allows, the small metadata files copied), then opens
/// it. Drop any backend open on `dir` first. The checkpoint itself is left untouched and
/// can be restored again.
pub fn restore_rocksdb(
    checkpoint_dir: &Path,
    dir: &Path,
    options: &RocksOptions,
) -> Result<Box<dyn StateBackend>, StateError> {
    if !checkpoint_dir.join("CURRENT").is_file() {
        return Err(StateError::NotACheckpoint {
            path: checkpoint_dir.to_path_buf(),
            reason: "no CURRENT file: not a RocksDB checkpoint".into(),
        });
    }
    // Without a trailing slash, so the staging folder is a sibling, not a child.
    let dir: PathBuf = dir.components().collect();
    // Replacing `dir` must not delete the checkpoint being restored.
    if let (Ok(checkpoint), Ok(current)) = (checkpoint_dir.canonicalize(), dir.canonicalize()) {
        if checkpoint.starts_with(&current) {
            return Err(StateError::NotACheckpoint {
                path: checkpoint_dir.to_path_buf(),
                reason: format!("it lies inside {}, the folder a restore replaces", dir.display()),
            });
        }
    }
    let mut staging = dir.clone().into_os_string();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    remove_dir_if_exists(&staging, "restore: clear staging folder")?;
    std::fs::create_dir_all(&staging).map_err(|e| StateError::io("restore: create staging folder", &staging, e))?;

    let entries =
        std::fs::read_dir(checkpoint_dir).map_err(|e| StateError::io("restore: list checkpoint", checkpoint_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StateError::io("restore: list checkpoint", checkpoint_dir, e))?;
        let from = entry.path();
        let to = staging.join(entry.file_name());
        let file_type = entry.file_type().map_err(|e| StateError::io("restore: inspect", &from, e))?;
        // The bucket logs are restored below.
        if entry.file_name() == super::logs::SEGMENTS && file_type.is_dir() {
            continue;
        }
        if !file_type.is_file() {
            return Err(StateError::NotACheckpoint {
                path: checkpoint_dir.to_path_buf(),
                reason: format!("unexpected entry {}", from.display()),
            });
        }
        // SST and blob files are immutable: share them. Every other file (MANIFEST, OPTIONS,
        // CURRENT, logs) may be written by the restored database, so it gets its own copy.
        let immutable = from.extension().is_some_and(|ext| ext == "sst" || ext == "blob");
        if !(immutable && std::fs::hard_link(&from, &to).is_ok()) {
            std::fs::copy(&from, &to)
                .map_err(|e| StateError::io(format!("restore: copy {} to", from.display()), &to, e))?;
            std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(|e| StateError::io("restore: sync", &to, e))?;
        }
    }
    super::Logs::restore(checkpoint_dir, Some(&staging))?;
    sync_parent(&staging.join("CURRENT"))?;
    remove_dir_if_exists(&dir, "restore: remove the current state")?;
    std::fs::rename(&staging, &dir)
        .map_err(|e| StateError::io(format!("restore: rename {} to", staging.display()), &dir, e))?;
    sync_parent(&dir)?;
    open_rocksdb(&dir, options)
}

fn remove_dir_if_exists(dir: &Path, op: &str) -> Result<(), StateError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::io(op, dir, e)),
        _ => Ok(()),
    }
}

struct RocksBackend {
    // Declared first: dropped (closed, memtables flushed) before the rest.
    db: DB,
    cache: Cache,
    /// What column families are built from, for tables created later.
    cf_recipe: CfRecipe,
    path: PathBuf,
    /// Every column family in the database, opened as a table or not (for stats).
    families: Vec<String>,
    /// Tables by id (their column family's name), and ids by table name.
    tables: Vec<String>,
    /// Each table's `TableOptions::range_prefix_len`, by id.
    prefixes: Vec<Option<usize>>,
    ids: HashMap<String, u32>,
    batch: WriteBatch,
    write_options: WriteOptions,
    logs: super::Logs,
}

impl RocksBackend {
    fn open(dir: &Path, options: &RocksOptions) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::io("open: create folder", dir, e))?;
        let cache = Cache::new_lru_cache(options.block_cache_bytes())
            .map_err(|e| rocks_error("open: create block cache", dir, e))?;
        let exists = dir.join("CURRENT").is_file();
        let families = if exists {
            DB::list_cf(&Options::default(), dir).map_err(|e| rocks_error("open: list column families", dir, e))?
        } else {
            vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_string()]
        };
        let (db, cf_recipe) = match try_open(dir, options, options.compression, &cache, &families) {
            Err(e) if options.compression != Compression::None && e.contains("not linked with the binary") => {
                tracing::warn!(
                    "state: the RocksDB library lacks {:?} compression ({e}); {} uses no compression",
                    options.compression,
                    dir.display()
                );
                try_open(dir, options, Compression::None, &cache, &families)
            }
            other => other,
        }
        .map_err(|message| StateError::Rocks { op: "open".into(), path: dir.to_path_buf(), message })?;
        let mut write_options = WriteOptions::default();
        // Durability comes from checkpoints (see the module docs).
        write_options.disable_wal(true);
        Ok(RocksBackend {
            db,
            cache,
            cf_recipe,
            path: dir.to_path_buf(),
            families,
            tables: Vec::new(),
            prefixes: Vec::new(),
            ids: HashMap::new(),
            batch: WriteBatch::default(),
            write_options,
            logs: super::Logs::on_disk(dir)?,
        })
    }

    fn backend(&self) -> Backend {
        Backend::Rocks(self.path.clone())
    }

    fn cf(&self, op: &'static str, table: TableId) -> Result<&ColumnFamily, StateError> {
        lookup(&self.db, &self.tables, table).ok_or_else(|| self.unknown(op, table))
    }

    fn unknown(&self, op: &'static str, table: TableId) -> StateError {
        StateError::UnknownTable { op, backend: self.backend(), table }
    }

    fn error(&self, op: impl Into<String>, e: rocksdb::Error) -> StateError {
        rocks_error(op, &self.path, e)
    }
}

/// The column family of `table` (a function of the fields, so the batch can be borrowed
/// mutably beside it).
fn lookup<'a>(db: &'a DB, tables: &[String], table: TableId) -> Option<&'a ColumnFamily> {
    tables.get(table.index()).and_then(|name| db.cf_handle(name))
}

fn rocks_error(op: impl Into<String>, path: &Path, e: rocksdb::Error) -> StateError {
    StateError::Rocks { op: op.into(), path: path.to_path_buf(), message: e.into_string() }
}

/// Opens with the given compression; the error is RocksDB's message.
fn try_open(
    dir: &Path,
    options: &RocksOptions,
    compression: Compression,
    cache: &Cache,
    families: &[String],
) -> Result<(DB, CfRecipe), String> {
    let recipe = CfRecipe { options: options.clone(), compression, cache: cache.clone() };
    let descriptors = families.iter().map(|name| ColumnFamilyDescriptor::new(name, recipe.build(prefix_of_family(name))));
    let db = DB::open_cf_descriptors(&recipe.db_options(), dir, descriptors).map_err(rocksdb::Error::into_string)?;
    Ok((db, recipe))
}

/// A table's column family: its name, with the range prefix length when it has one, so
/// the database opens it again with the same prefix extractor.
fn family_name(table: &str, options: TableOptions) -> String {
    match options.range_prefix_len {
        Some(n) => format!("{table}{PREFIX_MARK}{n}"),
        None => table.to_string(),
    }
}

const PREFIX_MARK: &str = "#range-prefix=";

fn table_of_family(family: &str) -> &str {
    family.rsplit_once(PREFIX_MARK).map_or(family, |(table, _)| table)
}

fn prefix_of_family(family: &str) -> Option<usize> {
    family.rsplit_once(PREFIX_MARK).and_then(|(_, n)| n.parse().ok())
}

/// What every column family's options are made of.
struct CfRecipe {
    options: RocksOptions,
    compression: Compression,
    cache: Cache,
}

impl CfRecipe {
    /// A column family's options; with a range prefix, RocksDB filters seeks by a bloom
    /// filter of key prefixes (in SST files and in the memtable).
    fn build(&self, range_prefix: Option<usize>) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Index and filter blocks in the cache, so they are bounded by it instead of growing
        // with the number of SST files; level 0's stay pinned (they are read on every lookup).
        // Partitioned: a lookup loads one small partition, not a file's whole filter and index
        // (with state many times the cache, whole ones evict each other on every seek: measured
        // at 1k lookups/s with 3 GB of state and a 32 MiB cache). The top levels stay pinned.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_bloom_filter(10.0, false);
        table.set_block_size(16 << 10);
        table.set_format_version(5);

        let mut cf = Options::default();
        cf.set_write_buffer_size(self.options.write_buffer_bytes());
        cf.set_max_write_buffer_number(self.options.max_write_buffers());
        cf.set_level_compaction_dynamic_level_bytes(true);
        cf.set_compression_type(match self.compression {
            Compression::Lz4 => DBCompressionType::Lz4,
            Compression::Zstd => DBCompressionType::Zstd,
            Compression::None => DBCompressionType::None,
        });
        if let Some(n) = range_prefix {
            // Such tables are read by range within a prefix, never by whole key.
            table.set_whole_key_filtering(false);
            cf.set_prefix_extractor(SliceTransform::create_fixed_prefix(n));
            cf.set_memtable_prefix_bloom_ratio(0.05);
        }
        cf.set_block_based_table_factory(&table);
        cf
    }

    /// The database's options.
    fn db_options(&self) -> Options {
        let mut db = self.build(None);
        db.create_if_missing(true);
        db.create_missing_column_families(true);
        db.set_max_open_files(self.options.max_open_files());
        db.set_db_write_buffer_size(self.options.total_write_buffer_bytes());
        db.set_max_background_jobs(2);
        db.set_bytes_per_sync(1 << 20);
        // Without a WAL, flushing all column families together keeps what is on disk a
        // consistent prefix of the commits, even across tables.
        db.set_atomic_flush(true);
        db
    }
}

impl StateBackend for RocksBackend {
    fn open_table_with(&mut self, name: &str, options: TableOptions) -> Result<TableId, StateError> {
        check_table_name(name, || self.backend())?;
        if let Some(&id) = self.ids.get(name) {
            return Ok(TableId(id));
        }
        // A table keeps the options it was created with.
        if name.contains(PREFIX_MARK) {
            return Err(StateError::InvalidTableName { name: name.into(), backend: self.backend(), reason: "contains `#range-prefix=`" });
        }
        let family = match self.families.iter().find(|f| table_of_family(f) == name).cloned() {
            Some(f) => f,
            None => {
                let family = family_name(name, options);
                self.db
                    .create_cf(&family, &self.cf_recipe.build(options.range_prefix_len))
                    .map_err(|e| rocks_error(format!("open table {name:?}"), &self.path, e))?;
                self.families.push(family.clone());
                family
            }
        };
        let id = self.tables.len() as u32;
        self.prefixes.push(prefix_of_family(&family));
        self.tables.push(family);
        self.ids.insert(name.to_string(), id);
        Ok(TableId(id))
    }

    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let cf = lookup(&self.db, &self.tables, table).ok_or_else(|| self.unknown("put", table))?;
        self.batch.put_cf(cf, key, value);
        Ok(())
    }

    fn delete(&mut self, table: TableId, key: &[u8]) -> Result<(), StateError> {
        let cf = lookup(&self.db, &self.tables, table).ok_or_else(|| self.unknown("delete", table))?;
        self.batch.delete_cf(cf, key);
        Ok(())
    }

    fn delete_range(&mut self, table: TableId, start: &[u8], end: &[u8]) -> Result<(), StateError> {
        let cf = lookup(&self.db, &self.tables, table).ok_or_else(|| self.unknown("delete_range", table))?;
        // RocksDB refuses a whole batch holding a range whose end precedes its start.
        if start < end {
            self.batch.delete_range_cf(cf, start, end);
        }
        Ok(())
    }

    super::delegate_logs!();

    fn commit(&mut self) -> Result<(), StateError> {
        self.logs.commit()?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.db.write_opt(batch, &self.write_options).map_err(|e| self.error("commit", e))
    }

    fn get(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self.cf("get", table)?;
        match self.db.get_pinned_cf(cf, key) {
            Ok(value) => Ok(value.map(|v| v.to_vec())),
            Err(e) => Err(self.error(format!("get from table {:?}", self.tables[table.index()]), e)),
        }
    }

    fn scan(
        &self,
        table: TableId,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let cf = self.cf("scan", table)?;
        let mut read_options = ReadOptions::default();
        // A scan may cross prefixes: not in prefix mode.
        read_options.set_total_order_seek(true);
        if let Some(end) = end {
            if end <= start {
                return Ok(());
            }
            read_options.set_iterate_upper_bound(end);
        }
        let mut iter = self.db.raw_iterator_cf_opt(cf, read_options);
        iter.seek(start);
        while let Some((key, value)) = iter.item() {
            if !visit(key, value) {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(|e| self.error(format!("scan of table {:?}", self.tables[table.index()]), e))
    }

    fn scan_ranges(
        &self,
        table: TableId,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut dyn FnMut(usize, &[u8], &[u8]),
    ) -> Result<(), StateError> {
        let cf = self.cf("scan", table)?;
        let mut read_options = ReadOptions::default();
        match self.prefixes.get(table.index()).copied().flatten() {
            // Each range lies within one prefix: seeks consult the prefix bloom filters.
            Some(_) => read_options.set_prefix_same_as_start(true),
            None => read_options.set_total_order_seek(true),
        }
        let mut iter = self.db.raw_iterator_cf_opt(cf, read_options);
        for (i, (start, end)) in ranges.iter().enumerate() {
            iter.seek(start);
            while let Some((key, value)) = iter.item() {
                if key >= end.as_slice() {
                    break;
                }
                visit(i, key, value);
                iter.next();
            }
        }
        iter.status().map_err(|e| self.error(format!("scan of table {:?}", self.tables[table.index()]), e))
    }

    fn checkpoint(&mut self, dir: &Path) -> Result<(), StateError> {
        prepare_checkpoint_dir(dir)?;
        // Flushes the memtables (the WAL is off, so they hold every commit since the last
        // flush), then hard-links the live SST files into `dir`, staged and renamed by RocksDB.
        let checkpoint = Checkpoint::new(&self.db).map_err(|e| self.error("checkpoint", e))?;
        checkpoint.create_checkpoint(dir).map_err(|e| self.error(format!("checkpoint into {}", dir.display()), e))?;
        self.logs.checkpoint(dir)?;
        sync_parent(dir)
    }

    fn stats(&self) -> StateStats {
        let bytes_on_disk = std::fs::read_dir(&self.path)
            .map(|entries| {
                entries.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
            })
            .unwrap_or(0)
            + self.logs.bytes();
        let bytes_in_memory = match rocksdb::perf::get_memory_usage_stats(Some(&[&self.db]), Some(&[&self.cache])) {
            Ok(m) => m.mem_table_total + m.mem_table_readers_total + m.cache_total,
            Err(_) => self.cache.get_usage() as u64,
        };
        let keys_estimate = self
            .families
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .filter_map(|cf| self.db.property_int_value_cf(cf, rocksdb::properties::ESTIMATE_NUM_KEYS).ok().flatten())
            .sum();
        StateStats { bytes_on_disk, bytes_in_memory, keys_estimate }
    }
}
