//! The state API on both backends, against real RocksDB in temporary folders: a model-based
//! property test, checkpoint and restore, and state larger than the block cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use streamhost::state::{
    open_memory, open_rocksdb, restore_memory, restore_rocksdb, Compression, RocksOptions, StateBackend, StateError,
    TableId, TableOptions,
};

const TABLES: [&str; 3] = ["a", "users", "t-2"];

fn small_rocks() -> RocksOptions {
    RocksOptions { block_cache_mb: 1, write_buffer_mb: 1, ..RocksOptions::default() }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Memory,
    Rocks,
}

/// One backend under test, with what it takes to restore it.
struct Subject {
    kind: Kind,
    backend: Option<Box<dyn StateBackend>>,
    db_dir: PathBuf,
    ids: BTreeMap<usize, TableId>,
}

impl Subject {
    fn new(kind: Kind, root: &Path) -> Self {
        let db_dir = root.join("db");
        let backend = match kind {
            Kind::Memory => open_memory(),
            Kind::Rocks => open_rocksdb(&db_dir, &small_rocks()).unwrap(),
        };
        Subject { kind, backend: Some(backend), db_dir, ids: BTreeMap::new() }
    }

    fn b(&mut self) -> &mut dyn StateBackend {
        self.backend.as_deref_mut().unwrap()
    }

    fn id(&mut self, table: usize) -> TableId {
        match self.ids.get(&table) {
            Some(&id) => id,
            None => {
                let id = self.b().open_table(TABLES[table]).unwrap();
                self.ids.insert(table, id);
                id
            }
        }
    }

    fn restore(&mut self, checkpoint: &Path) {
        // The old backend is closed before its folder is replaced.
        self.backend = None;
        self.ids.clear();
        self.backend = Some(match self.kind {
            Kind::Memory => restore_memory(checkpoint).unwrap(),
            Kind::Rocks => restore_rocksdb(checkpoint, &self.db_dir, &small_rocks()).unwrap(),
        });
    }

    fn scan(&mut self, table: usize, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let id = self.id(table);
        let mut out = Vec::new();
        self.b()
            .scan(id, start, end, &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                out.len() < limit
            })
            .unwrap();
        out
    }
}

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Debug)]
enum Action {
    Open(usize),
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
    DeleteRange(usize, Vec<u8>, Vec<u8>),
    Commit,
    Get(usize, Vec<u8>),
    Scan(usize, Vec<u8>, Option<Vec<u8>>, usize),
    Checkpoint,
    Restore(usize),
}

/// The reference: committed tables, and the pending batch in order.
#[derive(Default)]
struct Model {
    committed: BTreeMap<usize, Table>,
    pending: Vec<Action>,
}

impl Model {
    fn commit(&mut self) {
        for action in std::mem::take(&mut self.pending) {
            match action {
                Action::Put(t, k, v) => {
                    self.committed.get_mut(&t).unwrap().insert(k, v);
                }
                Action::Delete(t, k) => {
                    self.committed.get_mut(&t).unwrap().remove(&k);
                }
                Action::DeleteRange(t, s, e) => self.committed.get_mut(&t).unwrap().retain(|k, _| !(s <= *k && *k < e)),
                _ => unreachable!(),
            }
        }
    }

    fn scan(&self, t: usize, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.committed[&t]
            .iter()
            .filter(|(k, _)| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small key space, so writes, deletes and ranges overlap; the empty key included.
    prop::collection::vec(0u8..4, 0..3)
}

fn action() -> impl Strategy<Value = Action> {
    let t = 0..TABLES.len();
    prop_oneof![
        1 => t.clone().prop_map(Action::Open),
        8 => (t.clone(), key(), prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(t, k, v)| Action::Put(t, k, v)),
        3 => (t.clone(), key()).prop_map(|(t, k)| Action::Delete(t, k)),
        2 => (t.clone(), key(), key()).prop_map(|(t, s, e)| Action::DeleteRange(t, s, e)),
        3 => Just(Action::Commit),
        4 => (t.clone(), key()).prop_map(|(t, k)| Action::Get(t, k)),
        3 => (t.clone(), key(), prop::option::of(key()), 1usize..6).prop_map(|(t, s, e, n)| Action::Scan(t, s, e, n)),
        1 => Just(Action::Checkpoint),
        1 => any::<usize>().prop_map(Action::Restore),
    ]
}

fn run_model(actions: &[Action]) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let mut subjects =
        [Subject::new(Kind::Memory, &root.path().join("mem")), Subject::new(Kind::Rocks, &root.path().join("rocks"))];
    let mut model = Model::default();
    let mut checkpoints: Vec<(usize, BTreeMap<usize, Table>)> = Vec::new();
    for action in actions {
        // Every table an action names is opened first, on the model and the subjects alike.
        let table = match action {
            Action::Open(t) | Action::Put(t, ..) | Action::Delete(t, _) | Action::DeleteRange(t, ..) => Some(*t),
            Action::Get(t, _) | Action::Scan(t, ..) => Some(*t),
            _ => None,
        };
        if let Some(t) = table {
            model.committed.entry(t).or_default();
            for s in &mut subjects {
                let id = s.id(t);
                // Opening again returns the same id.
                prop_assert_eq!(s.b().open_table(TABLES[t]).unwrap(), id);
            }
        }
        match action {
            Action::Open(_) => {}
            Action::Put(t, k, v) => {
                for s in &mut subjects {
                    let id = s.id(*t);
                    s.b().put(id, k, v).unwrap();
                }
                model.pending.push(action.clone());
            }
            Action::Delete(t, k) => {
                for s in &mut subjects {
                    let id = s.id(*t);
                    s.b().delete(id, k).unwrap();
                }
                model.pending.push(action.clone());
            }
            Action::DeleteRange(t, start, end) => {
                for s in &mut subjects {
                    let id = s.id(*t);
                    s.b().delete_range(id, start, end).unwrap();
                }
                model.pending.push(action.clone());
            }
            Action::Commit => {
                for s in &mut subjects {
                    s.b().commit().unwrap();
                }
                model.commit();
            }
            Action::Get(t, k) => {
                let expected = model.committed[t].get(k).cloned();
                for s in &mut subjects {
                    let id = s.id(*t);
                    prop_assert_eq!(s.b().get(id, k).unwrap(), expected.clone(), "{:?} get", s.kind);
                }
            }
            Action::Scan(t, start, end, limit) => {
                let expected = model.scan(*t, start, end.as_deref(), *limit);
                for s in &mut subjects {
                    prop_assert_eq!(s.scan(*t, start, end.as_deref(), *limit), expected.clone(), "{:?} scan", s.kind);
                }
            }
            Action::Checkpoint => {
                let n = checkpoints.len();
                for s in &mut subjects {
                    let dir = root.path().join(format!("checkpoint-{n}-{:?}", s.kind));
                    s.b().checkpoint(&dir).unwrap();
                    // A second checkpoint into the same folder is refused.
                    let again = s.b().checkpoint(&dir);
                    prop_assert!(matches!(again, Err(StateError::CheckpointExists { .. })), "{:?}", again.err());
                }
                checkpoints.push((n, model.committed.clone()));
            }
            Action::Restore(i) => {
                if checkpoints.is_empty() {
                    continue;
                }
                let (n, snapshot) = &checkpoints[i % checkpoints.len()];
                for s in &mut subjects {
                    let dir = root.path().join(format!("checkpoint-{n}-{:?}", s.kind));
                    s.restore(&dir);
                }
                model.committed = snapshot.clone();
                model.pending.clear();
            }
        }
    }
    // Finally every table, whole.
    let tables: Vec<usize> = model.committed.keys().copied().collect();
    for t in tables {
        let expected = model.scan(t, b"", None, usize::MAX);
        for s in &mut subjects {
            prop_assert_eq!(
                s.scan(t, b"", None, usize::MAX),
                expected.clone(),
                "{:?} final scan of {}",
                s.kind,
                TABLES[t]
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn both_backends_match_a_btreemap_model(actions in prop::collection::vec(action(), 1..80)) {
        run_model(&actions)?;
    }
}

#[test]
fn writes_in_one_batch_apply_in_order() {
    let root = tempfile::tempdir().unwrap();
    for mut b in [open_memory(), open_rocksdb(&root.path().join("db"), &small_rocks()).unwrap()] {
        let t = b.open_table("t").unwrap();
        b.put(t, b"a", b"1").unwrap();
        b.put(t, b"b", b"1").unwrap();
        b.put(t, b"c", b"1").unwrap();
        b.delete_range(t, b"a", b"c").unwrap(); // removes a and b
        b.put(t, b"b", b"2").unwrap(); // after the range: survives
        b.delete(t, b"c").unwrap();
        b.put(t, b"c", b"3").unwrap();
        b.delete_range(t, b"z", b"a").unwrap(); // empty range: nothing
        assert_eq!(b.get(t, b"b").unwrap(), None, "reads see committed data only");
        b.commit().unwrap();
        let mut all = Vec::new();
        b.scan(t, b"", None, &mut |k, v| {
            all.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(all, vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
    }
}

fn fill(b: &mut dyn StateBackend, tables: &[TableId], from: u32, to: u32, tag: &str) {
    for i in from..to {
        for &t in tables {
            b.put(t, format!("k{i:06}").as_bytes(), format!("{tag}-{i}").as_bytes()).unwrap();
        }
    }
    b.commit().unwrap();
}

fn dump(b: &dyn StateBackend, tables: &[TableId]) -> Vec<Table> {
    tables
        .iter()
        .map(|&t| {
            let mut m = Table::new();
            b.scan(t, b"", None, &mut |k, v| {
                m.insert(k.to_vec(), v.to_vec());
                true
            })
            .unwrap();
            m
        })
        .collect()
}

/// Checkpoint, more writes (committed and pending), restore: the state at checkpoint time.
fn checkpoint_roundtrip(kind: Kind) {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    let options = small_rocks();
    let mut b = match kind {
        Kind::Memory => open_memory(),
        Kind::Rocks => open_rocksdb(&db, &options).unwrap(),
    };
    let tables = [b.open_table("left").unwrap(), b.open_table("right").unwrap()];
    fill(b.as_mut(), &tables, 0, 5000, "v1");
    b.put(tables[0], b"pending", b"not committed").unwrap();
    let checkpoint = root.path().join("checkpoints").join("1");
    b.checkpoint(&checkpoint).unwrap();
    let at_checkpoint = dump(b.as_ref(), &tables);
    assert!(!at_checkpoint[0].contains_key(b"pending".as_slice()));

    b.commit().unwrap(); // the pending put survived the checkpoint
    assert!(b.get(tables[0], b"pending").unwrap().is_some());
    fill(b.as_mut(), &tables, 2500, 7500, "v2");
    b.delete_range(tables[1], b"k000100", b"k000200").unwrap();
    b.commit().unwrap();
    let extra = b.open_table("extra").unwrap();
    b.put(extra, b"x", b"y").unwrap();
    b.commit().unwrap();
    b.put(tables[0], b"k000001", b"pending at restore").unwrap();
    assert_ne!(dump(b.as_ref(), &tables), at_checkpoint);

    // An existing checkpoint folder is an error, and is left as it was.
    std::fs::create_dir_all(root.path().join("taken")).unwrap();
    std::fs::write(root.path().join("taken/keep"), b"mine").unwrap();
    let err = b.checkpoint(&root.path().join("taken")).unwrap_err();
    assert!(matches!(err, StateError::CheckpointExists { .. }), "{err}");
    assert!(err.to_string().contains("taken"), "the message names the path: {err}");
    assert_eq!(std::fs::read(root.path().join("taken/keep")).unwrap(), b"mine");
    let err = b.checkpoint(&checkpoint).unwrap_err();
    assert!(matches!(err, StateError::CheckpointExists { .. }), "{err}");

    drop(b);
    let b = match kind {
        Kind::Memory => restore_memory(&checkpoint).unwrap(),
        Kind::Rocks => restore_rocksdb(&checkpoint, &db, &options).unwrap(),
    };
    let mut b = b;
    let tables = [b.open_table("left").unwrap(), b.open_table("right").unwrap()];
    assert_eq!(dump(b.as_ref(), &tables), at_checkpoint);
    let extra = b.open_table("extra").unwrap();
    assert_eq!(b.get(extra, b"x").unwrap(), None, "a table created after the checkpoint is empty");
    assert!(b.stats().keys_estimate > 0);

    // The checkpoint outlives the restored state's writes and restores again.
    fill(b.as_mut(), &tables, 0, 10, "v3");
    drop(b);
    let b = match kind {
        Kind::Memory => restore_memory(&checkpoint).unwrap(),
        Kind::Rocks => restore_rocksdb(&checkpoint, &db, &options).unwrap(),
    };
    let mut b = b;
    let tables = [b.open_table("left").unwrap(), b.open_table("right").unwrap()];
    assert_eq!(dump(b.as_ref(), &tables), at_checkpoint);
}

#[test]
fn memory_checkpoint_then_writes_then_restore() {
    checkpoint_roundtrip(Kind::Memory);
}

#[test]
fn rocksdb_checkpoint_then_writes_then_restore() {
    checkpoint_roundtrip(Kind::Rocks);
}

#[cfg(unix)]
#[test]
fn rocksdb_checkpoints_share_unchanged_sst_files() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let mut b = open_rocksdb(&root.path().join("db"), &small_rocks()).unwrap();
    let t = b.open_table("t").unwrap();
    fill(b.as_mut(), &[t], 0, 20_000, "v");
    b.checkpoint(&root.path().join("c1")).unwrap();
    b.put(t, b"one more", b"key").unwrap();
    b.commit().unwrap();
    b.checkpoint(&root.path().join("c2")).unwrap();
    let ssts = |dir: &str| -> BTreeMap<u64, u64> {
        std::fs::read_dir(root.path().join(dir))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
            .map(|e| {
                let m = e.metadata().unwrap();
                (m.ino(), m.nlink())
            })
            .collect()
    };
    let (c1, c2) = (ssts("c1"), ssts("c2"));
    assert!(!c1.is_empty());
    let shared = c1.keys().filter(|ino| c2.contains_key(ino)).count();
    assert_eq!(shared, c1.len(), "every SST of the first checkpoint is hard-linked into the second");
    assert!(c2.len() > shared, "the second checkpoint adds the newly flushed file");
    assert!(c1.values().all(|&links| links >= 2));

    // A restore hard-links them once more.
    drop(b);
    let b = restore_rocksdb(&root.path().join("c2"), &root.path().join("db"), &small_rocks()).unwrap();
    let restored = ssts("db");
    assert!(c2.keys().all(|ino| restored.contains_key(ino)), "restored SST files are hard links");
    drop(b);
}

#[test]
fn rocksdb_reopens_its_data_after_a_clean_close() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    let mut b = open_rocksdb(&dir, &small_rocks()).unwrap();
    let t = b.open_table("t").unwrap();
    fill(b.as_mut(), &[t], 0, 100, "v");
    b.put(t, b"uncommitted", b"lost").unwrap();
    drop(b);
    let mut b = open_rocksdb(&dir, &small_rocks()).unwrap();
    let t = b.open_table("t").unwrap();
    assert_eq!(b.get(t, b"k000042").unwrap().as_deref(), Some(b"v-42".as_slice()));
    assert_eq!(b.get(t, b"uncommitted").unwrap(), None);
    assert_eq!(dump(b.as_ref(), &[t])[0].len(), 100);
}

/// Range lookups within a prefix on a table with prefix bloom filters give what the
/// memory backend gives, through flushes to SST files, a reopen (the table keeps its
/// prefix options even when reopened without them) and range deletes.
#[test]
fn prefixed_tables_answer_range_lookups_like_plain_ones() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    let opts = TableOptions { range_prefix_len: Some(4) };
    let key = |p: u32, i: u32| [p.to_be_bytes(), i.to_be_bytes()].concat();
    let write = |b: &mut dyn StateBackend, t: TableId| {
        // Prefixes 0, 3, 6, ...: a lookup of prefix 1 finds nothing (a bloom miss).
        for i in 0..3000u32 {
            b.put(t, &key(i % 50 * 3, i), format!("v{i}").as_bytes()).unwrap();
            if i % 500 == 499 {
                b.commit().unwrap();
            }
        }
        b.delete_range(t, &key(30, 0), &key(33, 0)).unwrap();
        b.commit().unwrap();
    };
    let ranges: Vec<(Vec<u8>, Vec<u8>)> =
        (0..160u32).map(|p| (key(p, p * 7 % 1000), key(p, 2000 + p % 900))).collect();
    let lookup = |b: &dyn StateBackend, t: TableId| {
        let mut got = Vec::new();
        b.scan_ranges(t, &ranges, &mut |r, k, v| got.push((r, k.to_vec(), v.to_vec()))).unwrap();
        got
    };
    let mut memory = open_memory();
    let mt = memory.open_table("t").unwrap();
    write(memory.as_mut(), mt);
    let expected = lookup(memory.as_ref(), mt);
    assert!(expected.len() > 100 && expected.iter().all(|(r, ..)| *r % 3 == 0 && *r / 3 != 10));

    // Tiny write buffers: most of it ends up in SST files.
    let mut rocks = open_rocksdb(&dir, &small_rocks()).unwrap();
    let t = rocks.open_table_with("t", opts).unwrap();
    write(rocks.as_mut(), t);
    assert_eq!(lookup(rocks.as_ref(), t), expected);
    let all = |b: &dyn StateBackend, t: TableId| dump(b, &[t]).remove(0);
    assert_eq!(all(rocks.as_ref(), t), all(memory.as_ref(), mt), "a full scan crosses prefixes");
    drop(rocks);
    let mut rocks = open_rocksdb(&dir, &small_rocks()).unwrap();
    let t = rocks.open_table("t").unwrap();
    assert_eq!(lookup(rocks.as_ref(), t), expected, "after a reopen");
    assert!(rocks.open_table("t#range-prefix=4").is_err(), "the suffix is the backend's own");
}

#[test]
fn errors_name_the_operation_and_the_path() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    let rocks = open_rocksdb(&dir, &small_rocks()).unwrap();
    let mut memory = open_memory();
    let foreign = memory.open_table("a").unwrap();
    let other = memory.open_table("b").unwrap();
    let err = rocks.get(other, b"k").unwrap_err();
    assert!(matches!(err, StateError::UnknownTable { .. }), "{err}");
    assert!(err.to_string().contains("get") && err.to_string().contains(dir.to_str().unwrap()), "{err}");
    let _ = foreign;
    let err = memory.open_table("").unwrap_err();
    assert!(err.to_string().contains("empty name"), "{err}");

    let not_a_checkpoint = root.path().join("nothing");
    std::fs::create_dir(&not_a_checkpoint).unwrap();
    drop(rocks);
    let err = restore_rocksdb(&not_a_checkpoint, &dir, &small_rocks()).err().unwrap();
    assert!(matches!(err, StateError::NotACheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("nothing"), "{err}");
    let err = restore_memory(&not_a_checkpoint).err().unwrap();
    assert!(matches!(err, StateError::NotACheckpoint { .. }), "{err}");

    // A checkpoint inside the folder a restore replaces is refused, not deleted.
    let mut rocks = open_rocksdb(&dir, &small_rocks()).unwrap();
    let inside = dir.join("checkpoint");
    rocks.checkpoint(&inside).unwrap();
    drop(rocks);
    let err = restore_rocksdb(&inside, &dir, &small_rocks()).err().unwrap();
    assert!(matches!(err, StateError::NotACheckpoint { .. }), "{err}");
    assert!(inside.join("CURRENT").is_file());
    std::fs::remove_dir_all(&inside).unwrap();

    // RocksDB holds a lock on its folder.
    let _open = open_rocksdb(&dir, &small_rocks()).unwrap();
    let err = open_rocksdb(&dir, &small_rocks()).err().unwrap();
    assert!(matches!(err, StateError::Rocks { .. }), "{err}");
    assert!(err.to_string().contains("open") && err.to_string().contains(dir.to_str().unwrap()), "{err}");
}

#[test]
fn a_corrupt_memory_checkpoint_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut b = open_memory();
    let t = b.open_table("t").unwrap();
    fill(b.as_mut(), &[t], 0, 1000, "v");
    let dir = root.path().join("c");
    b.checkpoint(&dir).unwrap();
    let file = dir.join("state.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = restore_memory(&dir).err().unwrap();
    assert!(matches!(err, StateError::CorruptCheckpoint { .. }), "{err}");
    bytes.truncate(middle);
    std::fs::write(&file, &bytes).unwrap();
    let err = restore_memory(&dir).err().unwrap();
    assert!(err.to_string().contains("truncated") || err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn rocks_options_are_config_with_defaults_and_no_unknown_fields() {
    let o: RocksOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(o, RocksOptions::default());
    assert_eq!((o.block_cache_mb, o.write_buffer_mb, o.max_write_buffers), (64, 32, 2));
    let o: RocksOptions = serde_json::from_str(r#"{"block_cache_mb": 8, "compression": "zstd"}"#).unwrap();
    assert_eq!((o.block_cache_mb, o.compression), (8, Compression::Zstd));
    let err = serde_json::from_str::<RocksOptions>(r#"{"block_cache": 8}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let schema = serde_json::to_string(&schemars::schema_for!(RocksOptions)).unwrap();
    assert!(schema.contains("LRU block cache"), "doc comments are in the schema");
}

#[test]
fn every_compression_opens() {
    for compression in [Compression::Lz4, Compression::Zstd, Compression::None] {
        let root = tempfile::tempdir().unwrap();
        let mut b = open_rocksdb(root.path(), &RocksOptions { compression, ..small_rocks() }).unwrap();
        let t = b.open_table("t").unwrap();
        fill(b.as_mut(), &[t], 0, 1000, "compressible compressible compressible");
        b.checkpoint(&root.path().join("c")).unwrap();
        assert_eq!(
            b.get(t, b"k000999").unwrap().as_deref(),
            Some(b"compressible compressible compressible-999".as_slice())
        );
        // Debian's librocksdb links lz4 and zstd: no silent fallback to none.
        let expected = match compression {
            Compression::Lz4 => "compression=kLZ4Compression",
            Compression::Zstd => "compression=kZSTD",
            Compression::None => "compression=kNoCompression",
        };
        let options_file = std::fs::read_dir(root.path().join("c"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .unwrap();
        let text = std::fs::read_to_string(options_file.path()).unwrap();
        assert!(text.contains(expected), "{expected} in {}", options_file.path().display());
    }
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 300 MB of incompressible values through an 8 MiB block cache and 8 MiB write buffers:
/// the disk grows, memory does not.
#[test]
fn state_larger_than_the_cache_keeps_memory_bounded() {
    const VALUE: usize = 4096;
    const KEYS: u64 = 300_000_000 / VALUE as u64;
    const BATCH: u64 = 1024;
    const MIB: u64 = 1 << 20;
    let root = tempfile::tempdir().unwrap();
    let options = RocksOptions { block_cache_mb: 8, write_buffer_mb: 8, ..RocksOptions::default() };
    let mut b = open_rocksdb(root.path(), &options).unwrap();
    let t = b.open_table("big").unwrap();
    let started = std::time::Instant::now();
    // Keys in a scrambled order, so compactions have overlapping files to merge.
    let key = |i: u64| splitmix(i ^ 0x5eed).to_be_bytes();
    let mut value = vec![0u8; VALUE];
    let (mut max_memory, mut disk_samples) = (0, Vec::new());
    for i in 0..KEYS {
        fill_random(&mut value, i);
        b.put(t, &key(i), &value).unwrap();
        if (i + 1) % BATCH == 0 || i + 1 == KEYS {
            b.commit().unwrap();
            let stats = b.stats();
            max_memory = max_memory.max(stats.bytes_in_memory);
            if (i + 1) % (BATCH * 16) == 0 {
                disk_samples.push(stats.bytes_on_disk);
            }
        }
    }
    let written = started.elapsed();
    let mut checked = 0;
    for i in (0..KEYS).step_by(997) {
        fill_random(&mut value, i);
        assert_eq!(b.get(t, &key(i)).unwrap().as_deref(), Some(value.as_slice()), "key {i}");
        max_memory = max_memory.max(b.stats().bytes_in_memory);
        checked += 1;
    }
    let mut scanned = 0u64;
    b.scan(t, &[0x80], None, &mut |_, v| {
        scanned += v.len() as u64;
        true
    })
    .unwrap();
    let stats = b.stats();
    eprintln!(
        "larger-than-cache: {KEYS} values of {VALUE} B written in {written:?}, {checked} sampled, {} MiB scanned, total {:?}; \
         on disk {} MiB (samples {:?} MiB), in memory max {} MiB, keys ~{}, peak RSS {} MiB",
        scanned / MIB,
        started.elapsed(),
        stats.bytes_on_disk / MIB,
        disk_samples.iter().map(|d| d / MIB).collect::<Vec<_>>(),
        max_memory / MIB,
        stats.keys_estimate,
        peak_rss_bytes() / MIB,
    );
    assert!(stats.bytes_on_disk > 250 * 1_000_000, "the values are on disk: {stats:?}");
    assert!(
        disk_samples.windows(2).filter(|w| w[1] > w[0]).count() >= disk_samples.len() / 2,
        "the disk grows: {disk_samples:?}"
    );
    assert!(disk_samples.first() < disk_samples.last());
    // Block cache (8) + two write buffers (16) + table readers and slack.
    assert!(max_memory < 48 * MIB, "memory stays bounded: max {} MiB", max_memory / MIB);
    assert!(peak_rss_bytes() < 1 << 30, "peak RSS {} MiB", peak_rss_bytes() / MIB);
    assert!(stats.keys_estimate > KEYS / 2, "{stats:?}");
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Incompressible bytes, a function of `seed`.
fn fill_random(buf: &mut [u8], seed: u64) {
    let mut s = splitmix(seed);
    for chunk in buf.chunks_mut(8) {
        s = splitmix(s);
        chunk.copy_from_slice(&s.to_le_bytes()[..chunk.len()]);
    }
}
