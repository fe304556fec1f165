//! The memory backend: one `BTreeMap` per table, a vector of pending writes, and
//! checkpoints as one checksummed file.
//!
//! Checkpoint file (`state.bin` in the checkpoint folder), little-endian:
//! `MAGIC`, u32 table count, then per table u32 name length, name, u64 entry count, and per
//! entry u32 key length, key, u32 value length, value; then the SHA-256 of all of that.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{
    check_table_name, prepare_checkpoint_dir, sync_parent, Backend, StateBackend, StateError, StateStats, TableId, TableOptions,
};

const MAGIC: &[u8; 8] = b"SHSTATE1";
const FILE_NAME: &str = "state.bin";
/// Approximate bytes a map entry costs beyond its key and value (two `Vec` headers and the
/// B-tree node's share).
const ENTRY_OVERHEAD: u64 = 64;

/// An empty in-memory backend.
pub fn open_memory() -> Box<dyn StateBackend> {
    Box::new(MemoryBackend::default())
}

/// Loads a checkpoint written by the memory backend's [`StateBackend::checkpoint`]. Tables
/// keep their names; open them again for their ids.
pub fn restore_memory(checkpoint_dir: &Path) -> Result<Box<dyn StateBackend>, StateError> {
    let path = checkpoint_dir.join(FILE_NAME);
    let file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StateError::NotACheckpoint {
            path: checkpoint_dir.to_path_buf(),
            reason: format!("no {FILE_NAME}: not written by the memory backend, or incomplete"),
        },
        _ => StateError::io("restore: open", &path, e),
    })?;
    let mut reader = HashingReader { inner: BufReader::new(file), hasher: Sha256::new() };
    let corrupt = |reason: String| StateError::CorruptCheckpoint { path: path.clone(), reason };
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            StateError::CorruptCheckpoint { path: path.clone(), reason: "truncated".into() }
        }
        _ => StateError::io("restore: read", &path, e),
    };
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err(corrupt("not a memory-backend checkpoint (bad magic)".into()));
    }
    let mut backend = MemoryBackend::default();
    let tables = reader.u32().map_err(io)?;
    for _ in 0..tables {
        let name =
            String::from_utf8(reader.chunk().map_err(io)?).map_err(|_| corrupt("table name is not UTF-8".into()))?;
        let entries = reader.u64().map_err(io)?;
        let mut map = BTreeMap::new();
        let mut bytes = 0;
        for _ in 0..entries {
            let key = reader.chunk().map_err(io)?;
            let value = reader.chunk().map_err(io)?;
            bytes += entry_size(&key, &value);
            map.insert(key, value);
        }
        if backend.names.contains_key(&name) {
            return Err(corrupt(format!("table {name:?} appears twice")));
        }
        backend.names.insert(name.clone(), backend.tables.len() as u32);
        backend.tables.push(Table { name, map, bytes });
    }
    let digest = reader.hasher.finalize_reset();
    let mut stored = [0u8; 32];
    reader.inner.read_exact(&mut stored).map_err(io)?;
    if digest.as_slice() != stored {
        return Err(corrupt("checksum mismatch".into()));
    }
    if reader.inner.read(&mut [0u8; 1]).map_err(io)? != 0 {
        return Err(corrupt("trailing bytes after the checksum".into()));
    }
    backend.logs = super::Logs::restore(checkpoint_dir, None)?;
    Ok(Box::new(backend))
}

#[derive(Default)]
struct MemoryBackend {
    tables: Vec<Table>,
    names: HashMap<String, u32>,
    pending: Vec<Op>,
    pending_bytes: u64,
    logs: super::Logs,
}

struct Table {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Keys + values + `ENTRY_OVERHEAD` per entry.
    bytes: u64,
}

enum Op {
    Put { table: TableId, key: Vec<u8>, value: Vec<u8> },
    Delete { table: TableId, key: Vec<u8> },
    DeleteRange { table: TableId, start: Vec<u8>, end: Vec<u8> },
}

fn entry_size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD
}

impl MemoryBackend {
    fn table(&self, op: &'static str, table: TableId) -> Result<&Table, StateError> {
        self.tables.get(table.index()).ok_or(StateError::UnknownTable { op, backend: Backend::Memory, table })
    }

    fn push(&mut self, op: &'static str, table: TableId, write: Op, size: usize) -> Result<(), StateError> {
        self.table(op, table)?;
        self.pending.push(write);
        self.pending_bytes += size as u64 + ENTRY_OVERHEAD;
        Ok(())
    }

    fn write_checkpoint(&self, file: File) -> std::io::Result<File> {
        let mut w = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new() };
        w.write_all(MAGIC)?;
        w.write_all(&(self.tables.len() as u32).to_le_bytes())?;
        for table in &self.tables {
            w.chunk(table.name.as_bytes())?;
            w.write_all(&(table.map.len() as u64).to_le_bytes())?;
            for (key, value) in &table.map {
                w.chunk(key)?;
                w.chunk(value)?;
            }
        }
        let digest = w.hasher.finalize_reset();
        w.inner.write_all(&digest)?;
        let file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file)
    }
}

impl StateBackend for MemoryBackend {
    fn open_table_with(&mut self, name: &str, _: TableOptions) -> Result<TableId, StateError> {
        check_table_name(name, || Backend::Memory)?;
        if let Some(&id) = self.names.get(name) {
            return Ok(TableId(id));
        }
        let id = self.tables.len() as u32;
        self.tables.push(Table { name: name.to_string(), map: BTreeMap::new(), bytes: 0 });
        self.names.insert(name.to_string(), id);
        Ok(TableId(id))
    }

    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let size = key.len() + value.len();
        self.push("put", table, Op::Put { table, key: key.to_vec(), value: value.to_vec() }, size)
    }

    fn delete(&mut self, table: TableId, key: &[u8]) -> Result<(), StateError> {
        self.push("delete", table, Op::Delete { table, key: key.to_vec() }, key.len())
    }

    fn delete_range(&mut self, table: TableId, start: &[u8], end: &[u8]) -> Result<(), StateError> {
        self.table("delete_range", table)?;
        if start >= end {
            return Ok(());
        }
        let size = start.len() + end.len();
        self.push("delete_range", table, Op::DeleteRange { table, start: start.to_vec(), end: end.to_vec() }, size)
    }

    super::delegate_logs!();

    fn commit(&mut self) -> Result<(), StateError> {
        self.logs.commit()?;
        // Every op was checked when buffered, so applying cannot fail half-way.
        for op in std::mem::take(&mut self.pending) {
            match op {
                Op::Put { table, key, value } => {
                    let t = &mut self.tables[table.index()];
                    t.bytes += entry_size(&key, &value);
                    match t.map.entry(key) {
                        Entry::Occupied(mut e) => {
                            t.bytes -= entry_size(e.key(), e.get());
                            e.insert(value);
                        }
                        Entry::Vacant(e) => {
                            e.insert(value);
                        }
                    }
                }
                Op::Delete { table, key } => {
                    let t = &mut self.tables[table.index()];
                    if let Some(old) = t.map.remove(&key) {
                        t.bytes -= entry_size(&key, &old);
                    }
                }
                Op::DeleteRange { table, start, end } => {
                    let t = &mut self.tables[table.index()];
                    let mut middle = t.map.split_off(start.as_slice());
                    let mut tail = middle.split_off(end.as_slice());
                    t.map.append(&mut tail);
                    t.bytes -= middle.iter().map(|(k, v)| entry_size(k, v)).sum::<u64>();
                }
            }
        }
        self.pending_bytes = 0;
        Ok(())
    }

    fn get(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.table("get", table)?.map.get(key).cloned())
    }

    fn scan(
        &self,
        table: TableId,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let map = &self.table("scan", table)?.map;
        let upper = match end {
            Some(end) if end <= start => return Ok(()),
            Some(end) => Excluded(end),
            None => Unbounded,
        };
        for (key, value) in map.range::<[u8], _>((Included(start), upper)) {
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, dir: &Path) -> Result<(), StateError> {
        prepare_checkpoint_dir(dir)?;
        // create_dir refuses an existing folder: two checkpoints racing for one name cannot
        // both succeed.
        std::fs::create_dir(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StateError::CheckpointExists { path: dir.to_path_buf() },
            _ => StateError::io("checkpoint: create folder", dir, e),
        })?;
        // Written beside and renamed: `state.bin` exists only once complete.
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let file = File::create(&tmp).map_err(|e| StateError::io("checkpoint: create", &tmp, e))?;
        self.write_checkpoint(file).map_err(|e| StateError::io("checkpoint: write", &tmp, e))?;
        self.logs.checkpoint(dir)?;
        let path = dir.join(FILE_NAME);
        std::fs::rename(&tmp, &path).map_err(|e| StateError::io("checkpoint: rename into place", &path, e))?;
        sync_parent(&path)?;
        sync_parent(dir)
    }

    fn stats(&self) -> StateStats {
        StateStats {
            bytes_on_disk: 0,
            bytes_in_memory: self.tables.iter().map(|t| t.bytes).sum::<u64>() + self.pending_bytes + self.logs.bytes() + self.logs.pending_bytes(),
            keys_estimate: self.tables.iter().map(|t| t.map.len() as u64).sum(),
        }
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    /// A length-prefixed byte string.
    fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a key or value of {} bytes (limit 4 GiB)", bytes.len()),
            )
        })?;
        self.write_all(&len.to_le_bytes())?;
        self.write_all(bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A length-prefixed byte string; reads it in steps so a corrupt length cannot make it
    /// allocate gigabytes up front.
    fn chunk(&mut self) -> std::io::Result<Vec<u8>> {
        let len = self.u32()? as u64;
        let mut out = Vec::with_capacity(len.min(1 << 16) as usize);
        let read = self.by_ref().take(len).read_to_end(&mut out)?;
        if (read as u64) < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(out)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
