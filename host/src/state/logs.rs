//! Bucket logs: append-only byte logs, one per (log, bucket), for state that is
//! written once and read once, a bucket at a time (a window join's main events, by the
//! time they fire). No LSM tree is on their path: an append is a write to the end of a
//! file, a read is one sequential read of a file, and a bucket is deleted whole (one
//! unlink), so there is no compaction to stall the stream whatever the state's size.
//!
//! Both backends keep their logs here: on disk (`<state dir>/segments/<log>/<bucket>`)
//! for RocksDB, in memory for the memory backend. Appends and drops are buffered until
//! `commit`, like table writes; reads see committed bytes only.
//!
//! A checkpoint records each live file's committed length and hard-links it into the
//! checkpoint (`segments/` and its `INDEX`): a file only grows, so the bytes up to the
//! recorded length never change, and a restore links the file back and cuts it to that
//! length. A dropped bucket is unlinked from the live folder; checkpoints keep their link.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{sync_parent, StateError};

/// Identifies a log opened on a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogId(pub(super) u32);

/// The folder of a state's (and a checkpoint's) bucket logs.
pub(super) const SEGMENTS: &str = "segments";
/// A checkpoint's list of log files and their lengths (`log-hex bucket-hex length`).
const INDEX: &str = "INDEX";

#[derive(Default)]
pub struct Logs {
    /// Where the files live; `None`: in memory.
    dir: Option<PathBuf>,
    names: Vec<String>,
    ids: HashMap<String, u32>,
    /// Committed length of every live bucket.
    lengths: BTreeMap<(u32, i64), u64>,
    /// In memory only: the committed bytes.
    memory: BTreeMap<(u32, i64), Vec<u8>>,
    /// Appends waiting for `commit`, by bucket.
    appends: BTreeMap<(u32, i64), Vec<u8>>,
    /// Drops waiting for `commit` (applied before the appends).
    drops: Vec<(u32, i64)>,
    /// The files appended to last, kept open (most recent last): a stream appends
    /// to a handful of buckets at a time, and opening a file per commit costs more
    /// than the write.
    open_files: Vec<((u32, i64), File)>,
}

/// Files kept open for appending.
const OPEN_FILES: usize = 8;

fn bucket_hex(bucket: i64) -> String {
    // Sign bit flipped: names sort in bucket order.
    format!("{:016x}", (bucket as u64) ^ (1 << 63))
}

fn bucket_from_hex(name: &str) -> Option<i64> {
    u64::from_str_radix(name, 16).ok().filter(|_| name.len() == 16).map(|b| (b ^ (1 << 63)) as i64)
}

impl Logs {
    /// Logs in memory.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        Logs::default()
    }

    /// Logs under `state_dir/segments`, with the files already there.
    pub fn on_disk(state_dir: &Path) -> Result<Self, StateError> {
        let dir = state_dir.join(SEGMENTS);
        let mut logs = Logs { dir: Some(dir.clone()), ..Default::default() };
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(logs) };
        for entry in entries {
            let entry = entry.map_err(|e| StateError::io("open: list logs", &dir, e))?;
            let Some(name) = entry.file_name().to_str().and_then(|n| hex::decode(n).ok()).and_then(|n| String::from_utf8(n).ok()) else {
                continue;
            };
            let id = logs.id(&name);
            let files = std::fs::read_dir(entry.path()).map_err(|e| StateError::io("open: list log", &entry.path(), e))?;
            for file in files {
                let file = file.map_err(|e| StateError::io("open: list log", &entry.path(), e))?;
                if let Some(bucket) = file.file_name().to_str().and_then(bucket_from_hex) {
                    let len = file.metadata().map_err(|e| StateError::io("open: inspect", &file.path(), e))?.len();
                    logs.lengths.insert((id, bucket), len);
                }
            }
        }
        Ok(logs)
    }

    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub fn open(&mut self, name: &str) -> LogId {
        LogId(self.id(name))
    }

    fn file(&self, log: u32, bucket: i64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(hex::encode(&self.names[log as usize])).join(bucket_hex(bucket)))
    }

    fn check(&self, op: &'static str, log: LogId) -> Result<(), StateError> {
        match self.names.get(log.0 as usize) {
            Some(_) => Ok(()),
            None => Err(StateError::UnknownLog { op, log: log.0 }),
        }
    }

    /// Returns the offset in the bucket where `bytes` will lie once committed.
    pub fn append(&mut self, log: LogId, bucket: i64, bytes: &[u8]) -> Result<u64, StateError> {
        self.check("append", log)?;
        let committed = self.lengths.get(&(log.0, bucket)).copied().unwrap_or(0);
        // A drop buffered before this append empties the bucket first.
        let committed = if self.drops.contains(&(log.0, bucket)) { 0 } else { committed };
        let pending = self.appends.entry((log.0, bucket)).or_default();
        let offset = committed + pending.len() as u64;
        pending.extend_from_slice(bytes);
        Ok(offset)
    }

    pub fn drop_bucket(&mut self, log: LogId, bucket: i64) -> Result<(), StateError> {
        self.check("drop_bucket", log)?;
        self.appends.remove(&(log.0, bucket));
        self.drops.push((log.0, bucket));
        Ok(())
    }

    /// Bytes waiting for `commit`.
    pub fn pending_bytes(&self) -> u64 {
        self.appends.values().map(|v| v.len() as u64).sum()
    }

    pub fn commit(&mut self) -> Result<(), StateError> {
        for (log, bucket) in std::mem::take(&mut self.drops) {
            if self.lengths.remove(&(log, bucket)).is_none() {
                continue;
            }
            self.memory.remove(&(log, bucket));
            self.open_files.retain(|(b, _)| *b != (log, bucket));
            if let Some(path) = self.file(log, bucket) {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(StateError::io("drop bucket", &path, e)),
                    _ => {}
                }
            }
        }
        for ((log, bucket), bytes) in std::mem::take(&mut self.appends) {
            match self.file(log, bucket) {
                Some(path) => {
                    let file = self.append_file(log, bucket, &path)?;
                    file.write_all(&bytes).map_err(|e| StateError::io("append", &path, e))?;
                }
                None => self.memory.entry((log, bucket)).or_default().extend_from_slice(&bytes),
            }
            *self.lengths.entry((log, bucket)).or_default() += bytes.len() as u64;
        }
        Ok(())
    }

    /// The open file of a bucket for appending (created with its folder if needed).
    fn append_file(&mut self, log: u32, bucket: i64, path: &Path) -> Result<&mut File, StateError> {
        match self.open_files.iter().position(|(b, _)| *b == (log, bucket)) {
            Some(i) => {
                let entry = self.open_files.remove(i);
                self.open_files.push(entry);
            }
            None => {
                let open = || OpenOptions::new().create(true).append(true).open(path);
                let file = match open() {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let parent = path.parent().expect("a log file has a folder");
                        std::fs::create_dir_all(parent).map_err(|e| StateError::io("create log folder", parent, e))?;
                        open()
                    }
                    other => other,
                }
                .map_err(|e| StateError::io("append: open", path, e))?;
                if self.open_files.len() >= OPEN_FILES {
                    self.open_files.remove(0);
                }
                self.open_files.push(((log, bucket), file));
            }
        }
        Ok(&mut self.open_files.last_mut().expect("just pushed").1)
    }

    /// The committed buckets of `log`, ascending.
    pub fn buckets(&self, log: LogId) -> Vec<i64> {
        self.lengths.range((log.0, i64::MIN)..=(log.0, i64::MAX)).map(|((_, b), _)| *b).collect()
    }

    /// Appends the committed bytes of a bucket to `out` (nothing if it has none).
    pub fn read(&self, log: LogId, bucket: i64, out: &mut Vec<u8>) -> Result<(), StateError> {
        self.check("read_bucket", log)?;
        let Some(&len) = self.lengths.get(&(log.0, bucket)) else { return Ok(()) };
        match self.file(log.0, bucket) {
            Some(path) => {
                let file = File::open(&path).map_err(|e| StateError::io("read bucket", &path, e))?;
                let start = out.len();
                file.take(len).read_to_end(out).map_err(|e| StateError::io("read bucket", &path, e))?;
                if (out.len() - start) as u64 != len {
                    return Err(StateError::io("read bucket", &path, std::io::Error::other(format!("shorter than its committed {len} bytes"))));
                }
            }
            None => out.extend_from_slice(&self.memory[&(log.0, bucket)]),
        }
        Ok(())
    }

    /// Appends `len` committed bytes of a bucket from `offset` on to `out`.
    pub fn read_at(&self, log: LogId, bucket: i64, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), StateError> {
        self.check("read_at", log)?;
        let have = self.lengths.get(&(log.0, bucket)).copied().unwrap_or(0);
        let short = || StateError::io("read bucket", Path::new(&self.names[log.0 as usize]), std::io::Error::other(format!("bytes {offset}..+{len} are past its committed {have}")));
        if offset.checked_add(len as u64).is_none_or(|end| end > have) {
            return Err(short());
        }
        if len == 0 {
            // Nothing to read, from a bucket that may not exist.
            return Ok(());
        }
        match self.file(log.0, bucket) {
            Some(path) => {
                use std::os::unix::fs::FileExt;
                let file = File::open(&path).map_err(|e| StateError::io("read bucket", &path, e))?;
                let start = out.len();
                out.resize(start + len, 0);
                file.read_exact_at(&mut out[start..], offset).map_err(|e| StateError::io("read bucket", &path, e))?;
            }
            None => out.extend_from_slice(&self.memory[&(log.0, bucket)][offset as usize..offset as usize + len]),
        }
        Ok(())
    }

    /// Committed bytes of a bucket.
    pub fn len(&self, log: LogId, bucket: i64) -> u64 {
        self.lengths.get(&(log.0, bucket)).copied().unwrap_or(0)
    }

    /// Bytes of committed log data.
    pub fn bytes(&self) -> u64 {
        self.lengths.values().sum()
    }

    /// Writes the committed logs into `checkpoint/segments`: files hard-linked (copied
    /// where links fail, or from memory) and an `INDEX` of their lengths, written last.
    pub fn checkpoint(&self, checkpoint: &Path) -> Result<(), StateError> {
        let root = checkpoint.join(SEGMENTS);
        std::fs::create_dir_all(&root).map_err(|e| StateError::io("checkpoint: create folder", &root, e))?;
        let mut index = String::new();
        for (&(log, bucket), &len) in &self.lengths {
            let name = hex::encode(&self.names[log as usize]);
            let folder = root.join(&name);
            std::fs::create_dir_all(&folder).map_err(|e| StateError::io("checkpoint: create folder", &folder, e))?;
            let to = folder.join(bucket_hex(bucket));
            match self.file(log, bucket) {
                Some(from) => {
                    // The live file is synced first: the link shares its blocks.
                    File::open(&from).and_then(|f| f.sync_data()).map_err(|e| StateError::io("checkpoint: sync", &from, e))?;
                    if std::fs::hard_link(&from, &to).is_err() {
                        copy_prefix(&from, &to, len)?;
                    }
                }
                None => {
                    let mut f = File::create(&to).map_err(|e| StateError::io("checkpoint: create", &to, e))?;
                    f.write_all(&self.memory[&(log, bucket)]).and_then(|()| f.sync_all()).map_err(|e| StateError::io("checkpoint: write", &to, e))?;
                }
            }
            index.push_str(&format!("{name} {} {len}\n", bucket_hex(bucket)));
        }
        let path = root.join(INDEX);
        let tmp = root.join("INDEX.tmp");
        let mut f = File::create(&tmp).map_err(|e| StateError::io("checkpoint: create", &tmp, e))?;
        f.write_all(index.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| StateError::io("checkpoint: write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StateError::io("checkpoint: rename into place", &path, e))?;
        sync_parent(&path)
    }

    /// The logs of the checkpoint at `checkpoint` (none if it has no `segments`), into
    /// `state_dir/segments` (hard-linked, cut to their recorded lengths) or into memory
    /// (`state_dir` = `None`).
    pub fn restore(checkpoint: &Path, state_dir: Option<&Path>) -> Result<Self, StateError> {
        let root = checkpoint.join(SEGMENTS);
        let mut logs = Logs { dir: state_dir.map(|d| d.join(SEGMENTS)), ..Default::default() };
        let index = match std::fs::read_to_string(root.join(INDEX)) {
            Ok(index) => index,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !root.exists() => return Ok(logs),
            Err(e) => return Err(StateError::io("restore: read", &root.join(INDEX), e)),
        };
        let corrupt = |reason: String| StateError::CorruptCheckpoint { path: root.join(INDEX), reason };
        for line in index.lines() {
            let mut parts = line.split(' ');
            let (Some(name), Some(bucket), Some(len), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
                return Err(corrupt(format!("bad line {line:?}")));
            };
            let log_name = hex::decode(name).ok().and_then(|n| String::from_utf8(n).ok()).ok_or_else(|| corrupt(format!("bad log name {name:?}")))?;
            let b = bucket_from_hex(bucket).ok_or_else(|| corrupt(format!("bad bucket {bucket:?}")))?;
            let len: u64 = len.parse().map_err(|_| corrupt(format!("bad length {len:?}")))?;
            let id = logs.id(&log_name);
            let from = root.join(name).join(bucket);
            match logs.file(id, b) {
                Some(to) => {
                    let parent = to.parent().expect("a log file has a folder");
                    std::fs::create_dir_all(parent).map_err(|e| StateError::io("restore: create folder", parent, e))?;
                    if std::fs::hard_link(&from, &to).is_ok() {
                        // Bytes past the length were appended after the checkpoint.
                        let f = OpenOptions::new().write(true).open(&to).map_err(|e| StateError::io("restore: open", &to, e))?;
                        let have = f.metadata().map_err(|e| StateError::io("restore: inspect", &to, e))?.len();
                        if have < len {
                            return Err(corrupt(format!("{} holds {have} bytes, the checkpoint recorded {len}", from.display())));
                        }
                        f.set_len(len).map_err(|e| StateError::io("restore: cut to its checkpointed length", &to, e))?;
                    } else {
                        copy_prefix(&from, &to, len)?;
                    }
                }
                None => {
                    let mut bytes = Vec::new();
                    File::open(&from).and_then(|f| f.take(len).read_to_end(&mut bytes)).map_err(|e| StateError::io("restore: read", &from, e))?;
                    if bytes.len() as u64 != len {
                        return Err(corrupt(format!("{} is shorter than its recorded {len} bytes", from.display())));
                    }
                    logs.memory.insert((id, b), bytes);
                }
            }
            logs.lengths.insert((id, b), len);
        }
        Ok(logs)
    }
}

/// Copies the first `len` bytes of `from` to a new file `to`, synced.
fn copy_prefix(from: &Path, to: &Path, len: u64) -> Result<(), StateError> {
    let src = File::open(from).map_err(|e| StateError::io("copy: open", from, e))?;
    let mut dst = File::create(to).map_err(|e| StateError::io("copy: create", to, e))?;
    let copied = std::io::copy(&mut src.take(len), &mut dst).map_err(|e| StateError::io("copy", to, e))?;
    if copied != len {
        return Err(StateError::CorruptCheckpoint { path: from.to_path_buf(), reason: format!("holds {copied} bytes, {len} were recorded") });
    }
    dst.sync_all().map_err(|e| StateError::io("copy: sync", to, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(logs: &Logs, log: LogId, bucket: i64) -> Vec<u8> {
        let mut out = Vec::new();
        logs.read(log, bucket, &mut out).unwrap();
        out
    }

    fn exercise(mut logs: Logs, checkpoint: &Path, restore_into: Option<&Path>) {
        let a = logs.open("j/main");
        logs.append(a, 3, b"one").unwrap();
        assert_eq!(content(&logs, a, 3), b"", "reads see committed bytes only");
        logs.commit().unwrap();
        logs.append(a, 3, b"two").unwrap();
        logs.append(a, -2, b"neg").unwrap();
        logs.commit().unwrap();
        assert_eq!(content(&logs, a, 3), b"onetwo");
        assert_eq!(logs.buckets(a), vec![-2, 3]);
        let mut part = Vec::new();
        logs.read_at(a, 3, 2, 3, &mut part).unwrap();
        assert_eq!(part, b"etw");
        assert!(logs.read_at(a, 3, 4, 3, &mut part).is_err(), "past the committed bytes");
        logs.checkpoint(checkpoint).unwrap();
        // After the checkpoint: more bytes, a dropped bucket, an append-then-drop.
        assert_eq!(logs.append(a, 3, b"three").unwrap(), 6, "lands after the committed bytes");
        logs.drop_bucket(a, -2).unwrap();
        logs.append(a, 9, b"x").unwrap();
        logs.drop_bucket(a, 9).unwrap();
        logs.commit().unwrap();
        assert_eq!(logs.buckets(a), vec![3]);
        assert_eq!(content(&logs, a, 3), b"onetwothree");
        drop(logs);
        let mut back = Logs::restore(checkpoint, restore_into).unwrap();
        let a = back.open("j/main");
        assert_eq!(back.buckets(a), vec![-2, 3]);
        assert_eq!(content(&back, a, 3), b"onetwo", "cut back to the checkpointed length");
        assert_eq!(content(&back, a, -2), b"neg", "a bucket dropped after the checkpoint is back");
        back.append(a, 3, b"!").unwrap();
        back.commit().unwrap();
        assert_eq!(content(&back, a, 3), b"onetwo!");
        // The checkpoint is intact and can be restored again.
        let again = Logs::restore(checkpoint, None).unwrap();
        let a2 = LogId(again.ids["j/main"]);
        assert_eq!(content(&again, a2, 3), b"onetwo");
    }

    #[test]
    fn logs_on_disk_append_drop_checkpoint_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("state");
        exercise(Logs::on_disk(&live).unwrap(), &dir.path().join("chk-1"), Some(&dir.path().join("restored")));
        // Reopened from its files, the live state keeps what was committed.
        let logs = Logs::on_disk(&live).unwrap();
        assert_eq!(logs.buckets(LogId(logs.ids["j/main"])), vec![3]);
    }

    #[test]
    fn logs_in_memory_append_drop_checkpoint_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        exercise(Logs::in_memory(), &dir.path().join("chk-1"), None);
    }

    #[test]
    fn a_damaged_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut logs = Logs::in_memory();
        let a = logs.open("m");
        logs.append(a, 1, b"abc").unwrap();
        logs.commit().unwrap();
        logs.checkpoint(dir.path()).unwrap();
        std::fs::write(dir.path().join(SEGMENTS).join(INDEX), "6d 8000000000000001 99\n").unwrap();
        let err = Logs::restore(dir.path(), None).err().expect("refused");
        assert!(err.to_string().contains("shorter than its recorded 99 bytes"), "{err}");
    }
}
