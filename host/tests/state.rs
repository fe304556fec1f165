//! The state API on its three backends, against real RocksDB in temporary folders
//! and a real redis-server the tests start: a model-based property test (tables and
//! bucket logs, checkpoint and restore), the same semantic tests over every
//! backend, and state larger than the block cache.

#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use streamhost::state::{
    open_memory, open_redis, open_rocksdb, restore_memory, restore_redis, restore_rocksdb, Compression, LogId, RedisOptions,
    RocksOptions, StateBackend, StateError, TableId, TableOptions,
};

const TABLES: [&str; 3] = ["a", "users", "t-2"];
const LOG: &str = "main/log";

fn small_rocks() -> RocksOptions {
    RocksOptions { block_cache_mb: 1, write_buffer_mb: 1, ..RocksOptions::default() }
}

fn redis_options(url: &str) -> RedisOptions {
    RedisOptions { url: url.to_string(), ..RedisOptions::default() }
}

/// A namespace no other subject of this process uses.
fn namespace() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("state-test:{}:{}", std::process::id(), N.fetch_add(1, Relaxed))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Memory,
    Rocks,
    Redis,
}

/// Opens an empty backend of `kind` (`url`: the redis-server's, for Redis).
fn open(kind: Kind, root: &Path, url: Option<&str>) -> Box<dyn StateBackend> {
    match kind {
        Kind::Memory => open_memory(),
        Kind::Rocks => open_rocksdb(&root.join("db"), &small_rocks()).unwrap(),
        Kind::Redis => open_redis(&redis_options(url.expect("a redis-server")), &namespace()).unwrap(),
    }
}

/// Restores a backend of `kind` from `checkpoint`.
fn restore(kind: Kind, checkpoint: &Path, root: &Path, url: Option<&str>) -> Result<Box<dyn StateBackend>, StateError> {
    match kind {
        Kind::Memory => restore_memory(checkpoint),
        Kind::Rocks => restore_rocksdb(checkpoint, &root.join("db"), &small_rocks()),
        Kind::Redis => restore_redis(checkpoint, &redis_options(url.expect("a redis-server"))),
    }
}

/// One backend under test, with what it takes to restore it.
struct Subject {
    kind: Kind,
    backend: Option<Box<dyn StateBackend>>,
    root: PathBuf,
    url: Option<String>,
    ids: BTreeMap<usize, TableId>,
    log: LogId,
}

impl Subject {
    fn new(kind: Kind, root: &Path, url: Option<&str>) -> Self {
        let mut backend = open(kind, root, url);
        let log = backend.open_log(LOG).unwrap();
        Subject { kind, backend: Some(backend), root: root.to_path_buf(), url: url.map(String::from), ids: BTreeMap::new(), log }
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
        self.backend = Some(restore(self.kind, checkpoint, &self.root, self.url.as_deref()).unwrap());
        self.log = self.b().open_log(LOG).unwrap();
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

    fn scan_ranges(&mut self, table: usize, ranges: &[(Vec<u8>, Vec<u8>)]) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
        let id = self.id(table);
        let mut out = Vec::new();
        self.b().scan_ranges(id, ranges, &mut |i, k, v| out.push((i, k.to_vec(), v.to_vec()))).unwrap();
        out
    }

    /// Every bucket of the log with its bytes.
    fn log_contents(&mut self) -> BTreeMap<i64, Vec<u8>> {
        let log = self.log;
        let b = self.b();
        b.log_buckets(log)
            .into_iter()
            .map(|bucket| {
                let mut out = Vec::new();
                b.read_bucket(log, bucket, &mut out).unwrap();
                assert_eq!(out.len() as u64, b.log_len(log, bucket));
                (bucket, out)
            })
            .collect()
    }
}

type Table = BTreeMap<Vec<u8>, Vec<u8>>;
type Log = BTreeMap<i64, Vec<u8>>;

#[derive(Clone, Debug)]
enum Action {
    Open(usize),
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
    DeleteRange(usize, Vec<u8>, Vec<u8>),
    Commit,
    Get(usize, Vec<u8>),
    Scan(usize, Vec<u8>, Option<Vec<u8>>, usize),
    ScanRanges(usize, Vec<(Vec<u8>, Vec<u8>)>),
    Append(i64, Vec<u8>),
    DropBucket(i64),
    ReadLog(i64, u64, usize),
    Checkpoint,
    Restore(usize),
}

/// The reference: committed tables and log, and the pending writes in order.
#[derive(Default, Clone)]
struct Model {
    committed: BTreeMap<usize, Table>,
    pending: Vec<Action>,
    log: Log,
    appends: BTreeMap<i64, Vec<u8>>,
    drops: Vec<i64>,
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
        // A log's drops apply before its appends.
        for b in std::mem::take(&mut self.drops) {
            self.log.remove(&b);
        }
        for (b, bytes) in std::mem::take(&mut self.appends) {
            self.log.entry(b).or_default().extend(bytes);
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

    /// What a checkpoint holds: the committed state only.
    fn committed_only(&self) -> Model {
        Model { committed: self.committed.clone(), log: self.log.clone(), ..Model::default() }
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
        2 => (t.clone(), prop::collection::vec((key(), key()), 0..4)).prop_map(|(t, r)| Action::ScanRanges(t, r)),
        3 => (-2i64..3, prop::collection::vec(any::<u8>(), 0..5)).prop_map(|(b, v)| Action::Append(b, v)),
        1 => (-2i64..3).prop_map(Action::DropBucket),
        2 => (-2i64..3, 0u64..8, 0usize..8).prop_map(|(b, o, n)| Action::ReadLog(b, o, n)),
        1 => Just(Action::Checkpoint),
        1 => any::<usize>().prop_map(Action::Restore),
    ]
}

/// Runs `actions` on a backend of each of `kinds` and on the model, comparing
/// every read. With `newest_only` a restore takes the newest checkpoint (Redis
/// holds only that one; an older one is refused).
fn run_model(actions: &[Action], kinds: &[Kind], url: Option<&str>, newest_only: bool) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let mut subjects: Vec<Subject> = kinds.iter().map(|&k| Subject::new(k, &root.path().join(format!("{k:?}")), url)).collect();
    let mut model = Model::default();
    let mut checkpoints: Vec<(usize, Model)> = Vec::new();
    for action in actions {
        // Every table an action names is opened first, on the model and the subjects alike.
        let table = match action {
            Action::Open(t) | Action::Put(t, ..) | Action::Delete(t, _) | Action::DeleteRange(t, ..) => Some(*t),
            Action::Get(t, _) | Action::Scan(t, ..) | Action::ScanRanges(t, _) => Some(*t),
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
            Action::ScanRanges(t, ranges) => {
                let expected: Vec<(usize, Vec<u8>, Vec<u8>)> = ranges
                    .iter()
                    .enumerate()
                    .flat_map(|(i, (s, e))| model.scan(*t, s, Some(e), usize::MAX).into_iter().map(move |(k, v)| (i, k, v)))
                    .collect();
                for s in &mut subjects {
                    prop_assert_eq!(s.scan_ranges(*t, ranges), expected.clone(), "{:?} scan_ranges", s.kind);
                }
            }
            Action::Append(bucket, bytes) => {
                // A drop buffered before empties the bucket first.
                let committed = if model.drops.contains(bucket) { 0 } else { model.log.get(bucket).map_or(0, Vec::len) };
                let pending = model.appends.entry(*bucket).or_default();
                let offset = committed + pending.len();
                pending.extend(bytes);
                for s in &mut subjects {
                    let log = s.log;
                    prop_assert_eq!(s.b().append(log, *bucket, bytes).unwrap(), offset as u64, "{:?} append", s.kind);
                }
            }
            Action::DropBucket(bucket) => {
                model.appends.remove(bucket);
                model.drops.push(*bucket);
                for s in &mut subjects {
                    let log = s.log;
                    s.b().drop_bucket(log, *bucket).unwrap();
                }
            }
            Action::ReadLog(bucket, offset, len) => {
                let have = model.log.get(bucket).cloned().unwrap_or_default();
                let expected = (*offset as usize + len <= have.len()).then(|| have[*offset as usize..*offset as usize + len].to_vec());
                for s in &mut subjects {
                    let log = s.log;
                    let mut out = b"kept".to_vec();
                    let got = s.b().read_bucket_at(log, *bucket, *offset, *len, &mut out).ok().map(|()| out[4..].to_vec());
                    prop_assert_eq!(got, expected.clone(), "{:?} read_bucket_at", s.kind);
                    prop_assert_eq!(s.b().log_len(log, *bucket), have.len() as u64, "{:?} log_len", s.kind);
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
                checkpoints.push((n, model.committed_only()));
            }
            Action::Restore(i) => {
                if checkpoints.is_empty() {
                    continue;
                }
                let i = if newest_only { checkpoints.len() - 1 } else { i % checkpoints.len() };
                let (n, snapshot) = &checkpoints[i];
                for s in &mut subjects {
                    let dir = root.path().join(format!("checkpoint-{n}-{:?}", s.kind));
                    if s.kind == Kind::Redis && *n > 0 {
                        // Redis holds the newest checkpoint only.
                        let older = root.path().join(format!("checkpoint-{}-{:?}", n - 1, s.kind));
                        let err = restore(s.kind, &older, &s.root, s.url.as_deref()).err().expect("an older checkpoint is refused");
                        prop_assert!(err.to_string().contains("only the newest"), "{}", err);
                    }
                    s.restore(&dir);
                }
                model = snapshot.clone();
            }
        }
    }
    // Finally every table and the log, whole.
    let tables: Vec<usize> = model.committed.keys().copied().collect();
    for t in tables {
        let expected = model.scan(t, b"", None, usize::MAX);
        for s in &mut subjects {
            prop_assert_eq!(s.scan(t, b"", None, usize::MAX), expected.clone(), "{:?} final scan of {}", s.kind, TABLES[t]);
        }
    }
    for s in &mut subjects {
        prop_assert_eq!(s.log_contents(), model.log.clone(), "{:?} final log", s.kind);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_rocksdb_match_a_btreemap_model(actions in prop::collection::vec(action(), 1..80)) {
        run_model(&actions, &[Kind::Memory, Kind::Rocks], None, false)?;
    }
}

/// The same model and test body on Redis (beside the memory backend), one
/// redis-server for every case; restores take the newest checkpoint, the only
/// one Redis holds.
#[test]
fn redis_matches_the_model_like_memory_and_rocksdb() {
    let server = redis_server::Redis::start();
    let mut runner = TestRunner::new(ProptestConfig { cases: 64, ..ProptestConfig::default() });
    let strategy = prop::collection::vec(action(), 1..80);
    let kinds = [Kind::Memory, Kind::Redis];
    runner.run(&strategy, |actions| run_model(&actions, &kinds, Some(&server.url), true)).unwrap();
}

#[test]
fn writes_in_one_batch_apply_in_order() {
    let root = tempfile::tempdir().unwrap();
    let server = redis_server::Redis::start();
    for kind in [Kind::Memory, Kind::Rocks, Kind::Redis] {
        let mut b = open(kind, root.path(), Some(&server.url));
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
    let server = (kind == Kind::Redis).then(redis_server::Redis::start);
    let url = server.as_ref().map(|s| s.url.as_str());
    let mut b = open(kind, root.path(), url);
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
    let mut b = restore(kind, &checkpoint, root.path(), url).unwrap();
    let tables = [b.open_table("left").unwrap(), b.open_table("right").unwrap()];
    assert_eq!(dump(b.as_ref(), &tables), at_checkpoint);
    let extra = b.open_table("extra").unwrap();
    assert_eq!(b.get(extra, b"x").unwrap(), None, "a table created after the checkpoint is empty");
    assert!(b.stats().keys_estimate > 0);

    // The checkpoint outlives the restored state's writes and restores again.
    fill(b.as_mut(), &tables, 0, 10, "v3");
    drop(b);
    let mut b = restore(kind, &checkpoint, root.path(), url).unwrap();
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

#[test]
fn redis_checkpoint_then_writes_then_restore() {
    checkpoint_roundtrip(Kind::Redis);
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

/// The same range lookups on Redis, with the rows split between the server and
/// the overlay (a checkpoint in the middle), a range delete over both, and
/// ranges holding more rows than one read of the server.
#[test]
fn redis_answers_range_lookups_from_the_server_and_the_overlay() {
    let server = redis_server::Redis::start();
    let key = |p: u32, i: u32| [p.to_be_bytes(), i.to_be_bytes()].concat();
    let write = |b: &mut dyn StateBackend, t: TableId, from: u32, to: u32| {
        for i in from..to {
            b.put(t, &key(i % 50 * 3, i), format!("v{i}").as_bytes()).unwrap();
        }
        b.commit().unwrap();
    };
    let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = (0..160u32).map(|p| (key(p, p * 7 % 1000), key(p, 2000 + p % 900))).collect();
    // Every row in one range, and an empty range.
    ranges.push((key(0, 0), key(u32::MAX, 0)));
    ranges.push((key(9, 9), key(9, 9)));
    let lookup = |b: &dyn StateBackend, t: TableId| {
        let mut got = Vec::new();
        b.scan_ranges(t, &ranges, &mut |r, k, v| got.push((r, k.to_vec(), v.to_vec()))).unwrap();
        got
    };
    let all = |b: &dyn StateBackend, t: TableId| dump(b, &[t]).remove(0);
    let mut memory = open_memory();
    let mt = memory.open_table("t").unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut redis = open(Kind::Redis, root.path(), Some(&server.url));
    let rt = redis.open_table_with("t", TableOptions { range_prefix_len: Some(4) }).unwrap();
    for (b, t) in [(&mut memory, mt), (&mut redis, rt)] {
        write(b.as_mut(), t, 0, 1500);
    }
    redis.checkpoint(&root.path().join("c1")).unwrap();
    for (b, t) in [(&mut memory, mt), (&mut redis, rt)] {
        write(b.as_mut(), t, 1500, 3000);
        // Over rows in Redis and in the overlay alike.
        b.delete_range(t, &key(30, 0), &key(33, 0)).unwrap();
        b.put(t, &key(30, 5), b"after the range delete").unwrap();
        b.delete(t, &key(3, 1)).unwrap();
        b.commit().unwrap();
    }
    let expected = lookup(memory.as_ref(), mt);
    assert!(expected.iter().filter(|(r, ..)| *r == 160).count() > 2000, "one range holds more rows than a read");
    assert_eq!(lookup(redis.as_ref(), rt), expected, "from the server and the overlay");
    assert_eq!(all(redis.as_ref(), rt), all(memory.as_ref(), mt));
    // A scan stopped early, from the middle.
    let first = |b: &dyn StateBackend, t: TableId| {
        let mut got = Vec::new();
        b.scan(t, &key(29, 7), Some(&key(40, 0)), &mut |k, _| {
            got.push(k.to_vec());
            got.len() < 30
        })
        .unwrap();
        got
    };
    assert_eq!(first(redis.as_ref(), rt), first(memory.as_ref(), mt));
    redis.checkpoint(&root.path().join("c2")).unwrap();
    assert_eq!(lookup(redis.as_ref(), rt), expected, "all of it from the server");
    drop(redis);
    let mut again = restore(Kind::Redis, &root.path().join("c2"), root.path(), Some(&server.url)).unwrap();
    let t = again.open_table("t").unwrap();
    assert_eq!(lookup(again.as_ref(), t), expected, "after a restore");
}

/// A Redis backend writes to the server at a checkpoint, or, while no checkpoint
/// names it, once its overlay passes `max_overlay_mb`; named, it refuses to hold
/// more than twice that.
#[test]
fn redis_writes_reach_the_server_at_checkpoints_or_past_the_bound() {
    let server = redis_server::Redis::start();
    let root = tempfile::tempdir().unwrap();
    let ns = namespace();
    let options = RedisOptions { max_overlay_mb: 1, ..redis_options(&server.url) };
    let mut b = open_redis(&options, &ns).unwrap();
    let t = b.open_table("t").unwrap();
    let rows = |server: &redis_server::Redis| server.command(&["ZCARD", &format!("{ns}:t:t")]).unwrap();
    let value = vec![7u8; 1000];
    let fill = |b: &mut dyn StateBackend, from: u32, n: u32| {
        for i in from..from + n {
            b.put(t, &i.to_be_bytes(), &value).unwrap();
        }
        b.commit()
    };
    fill(b.as_mut(), 0, 100).unwrap();
    assert_eq!(rows(&server), ":0", "committed writes wait in the overlay");
    assert_eq!(b.get(t, &5u32.to_be_bytes()).unwrap().as_deref(), Some(value.as_slice()));
    fill(b.as_mut(), 100, 1000).unwrap();
    assert_eq!(rows(&server), ":1100", "past the bound, before any checkpoint: written out");
    b.checkpoint(&root.path().join("c1")).unwrap();
    fill(b.as_mut(), 2000, 1100).unwrap();
    assert_eq!(rows(&server), ":1100", "named by a checkpoint: past the bound it waits for the next");
    let err = fill(b.as_mut(), 4000, 1200).unwrap_err();
    assert!(matches!(err, StateError::OverlayFull { .. }), "{err}");
    assert!(err.to_string().contains("max_overlay_mb"), "{err}");
    let mut restored = restore_redis(&root.path().join("c1"), &options).unwrap();
    let t = restored.open_table("t").unwrap();
    assert_eq!(dump(restored.as_ref(), &[t])[0].len(), 1100, "the checkpoint's rows only");
}

/// A bucket log longer than one Redis string (1 MiB) reads back across the
/// strings, from the overlay and from the server.
#[test]
fn a_redis_bucket_log_spans_several_strings() {
    let server = redis_server::Redis::start();
    let root = tempfile::tempdir().unwrap();
    let mut b = open(Kind::Redis, root.path(), Some(&server.url));
    let log = b.open_log("big").unwrap();
    let mut expected = Vec::new();
    for part in 0..5u8 {
        let bytes: Vec<u8> = (0..(700 << 10)).map(|i: u32| (i as u8).wrapping_mul(31).wrapping_add(part)).collect();
        assert_eq!(b.append(log, -3, &bytes).unwrap(), expected.len() as u64);
        expected.extend_from_slice(&bytes);
        if part == 2 {
            b.commit().unwrap();
            b.checkpoint(&root.path().join("c1")).unwrap();
        }
    }
    b.commit().unwrap();
    let read = |b: &dyn StateBackend, offset: u64, len: usize| {
        let mut out = Vec::new();
        b.read_bucket_at(log, -3, offset, len, &mut out).unwrap();
        out
    };
    let edge = 1 << 20;
    // Across the first string's end; across the third's and the server/overlay boundary (at 2100 KiB).
    for (offset, len) in [(edge - 10, 20), (2_000_000, 300_000), (0, expected.len())] {
        assert!(read(b.as_ref(), offset as u64, len) == expected[offset..offset + len], "{offset}+{len} before the checkpoint");
    }
    b.checkpoint(&root.path().join("c2")).unwrap();
    for (offset, len) in [(edge - 1, 2), (3 * edge - 5, 10), (0, expected.len())] {
        assert!(read(b.as_ref(), offset as u64, len) == expected[offset..offset + len], "{offset}+{len} from the server");
    }
    assert!(b.read_bucket_at(log, -3, expected.len() as u64 - 1, 2, &mut Vec::new()).is_err(), "past its end");
    b.drop_bucket(log, -3).unwrap();
    b.commit().unwrap();
    assert!(b.log_buckets(log).is_empty());
    b.checkpoint(&root.path().join("c3")).unwrap();
    assert_eq!(server.command(&["DBSIZE"]).unwrap(), ":1", "only the checkpoint marker is left");
}

/// The coordinator's side: a record and every worker's writes in one
/// transaction, keys with a time-to-live, another parallelism's state removed
/// once a record names the new one, a prefix cleared whole; and a server that
/// may evict keys refused.
#[test]
fn redis_remote_state_commits_checkpoints_and_keeps_one_generation() {
    use streamhost::state::RemoteState;
    let server = redis_server::Redis::start();
    let root = tempfile::tempdir().unwrap();
    let options = RedisOptions { prefix: Some("job".into()), ttl_slack_ms: Some(60_000), ..redis_options(&server.url) };
    let record = |id: u64, bytes: &'static [u8], workers: usize| streamhost::state::RemoteRecord { id, bytes, workers, partitions: Vec::new() };
    let mut remote = RemoteState::connect(&options, Some("ignored"), 5_000).unwrap();
    assert_eq!(remote.prefix(), "job");
    assert_eq!(remote.record().unwrap(), None);
    let write = |remote: &RemoteState, workers: usize, index: usize, value: &[u8]| {
        let mut b = remote.open_worker(workers, 0, index, false).unwrap();
        let t = b.open_table("t").unwrap();
        b.put(t, b"k", value).unwrap();
        let log = b.open_log("l").unwrap();
        b.append(log, 1, value).unwrap();
        b.commit().unwrap();
        b.checkpoint_or_defer(&root.path().join("unused")).unwrap().expect("deferred to the coordinator")
    };
    let writes = vec![write(&remote, 2, 0, b"a"), write(&remote, 2, 1, b"b")];
    assert!(!root.path().join("unused").exists(), "no local snapshot");
    assert_eq!(server.command(&["EXISTS", "job:p2:s0w0:t:t"]).unwrap(), ":0", "nothing before the coordinator commits");
    remote.commit(writes, &record(1, b"{\"id\":1}", 2)).unwrap();
    assert_eq!(remote.record().unwrap().as_deref(), Some(&b"{\"id\":1}"[..]));
    for key in ["job:checkpoint", "job:p2:s0w0:t:t", "job:p2:s0w1:t:t", "job:p2:s0w1:logs", "job:p2:s0w1:l:1:0:l"] {
        let ttl: i64 = server.command(&["PTTL", key]).unwrap().trim_start_matches(':').parse().unwrap();
        assert!(ttl > 60_000 && ttl <= 65_000, "{key}: ttl {ttl}");
    }
    let mut back = remote.open_worker(2, 0, 1, true).unwrap();
    let t = back.open_table("t").unwrap();
    assert_eq!(back.get(t, b"k").unwrap().as_deref(), Some(&b"b"[..]));
    let log = back.open_log("l").unwrap();
    assert_eq!(back.log_buckets(log), vec![1]);
    // A rescale to 3 workers: the old generation goes once a record names the new one.
    let writes = vec![write(&remote, 3, 0, b"c")];
    assert_eq!(server.command(&["EXISTS", "job:p2:s0w1:t:t"]).unwrap(), ":1", "still named by the record");
    remote.commit(writes, &record(2, b"{\"id\":2}", 3)).unwrap();
    assert_eq!(server.command(&["EXISTS", "job:p2:s0w1:t:t"]).unwrap(), ":0", "another parallelism's state is removed");
    assert_eq!(server.command(&["EXISTS", "job:p3:s0w0:t:t"]).unwrap(), ":1");
    // A process started later on the prefix takes the state over: the first one
    // can no longer write, neither a checkpoint nor a namespace no record names.
    let mut newer = RemoteState::connect(&options, None, 5_000).unwrap();
    let writes = vec![write(&remote, 3, 0, b"stale")];
    let err = remote.commit(writes, &record(3, b"{\"id\":3}", 3)).unwrap_err();
    assert!(err.to_string().contains("taken this state over"), "{err}");
    assert_eq!(remote.record().unwrap().as_deref(), Some(&b"{\"id\":2}"[..]), "nothing of the stale checkpoint was written");
    let small = RedisOptions { max_overlay_mb: 1, ..options.clone() };
    let stale = RemoteState::connect(&small, None, 5_000).unwrap();
    let mut old = stale.open_worker(5, 0, 0, false).unwrap();
    let _newest = RemoteState::connect(&small, None, 5_000).unwrap();
    let t = old.open_table("t").unwrap();
    for i in 0..1500u32 {
        old.put(t, &i.to_be_bytes(), &[0; 1000]).unwrap();
    }
    let err = old.commit().unwrap_err();
    assert!(err.to_string().contains("taken this state over"), "{err}");
    assert_eq!(server.command(&["EXISTS", "job:p5:s0w0:t:t"]).unwrap(), ":0");
    newer.clear().unwrap();
    assert_eq!(server.command(&["DBSIZE"]).unwrap(), ":1", "only the owner key is left");
    server.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]).unwrap();
    let err = RemoteState::connect(&options, None, 0).err().expect("a server that evicts keys is refused");
    assert!(err.to_string().contains("noeviction"), "{err}");
}

/// In a consumer group the processes share a prefix: each build claims its
/// partitions with a new epoch; a checkpoint writes its generation's state,
/// the instance's record, the entries of its partitions and its marker in
/// one transaction; a build that lost a partition to a newer one writes
/// nothing any more; a generation no entry names is removed by the last
/// build that took a partition from it.
#[test]
fn redis_group_state_moves_with_its_partitions_fenced_per_partition() {
    use streamhost::state::{RemoteRecord, RemoteState};
    let server = redis_server::Redis::start();
    let root = tempfile::tempdir().unwrap();
    let options = RedisOptions { prefix: Some("g".into()), ttl_slack_ms: Some(60_000), ..redis_options(&server.url) };
    let join = |instance: &str, partitions: &[u16]| RemoteState::join_group(&options, None, 5_000, instance, partitions, 4);
    let write = |remote: &RemoteState, value: &[u8]| {
        let mut b = remote.open_worker(1, 0, 0, false).unwrap();
        let t = b.open_table("t").unwrap();
        b.put(t, b"k", value).unwrap();
        b.commit().unwrap();
        vec![b.checkpoint_or_defer(&root.path().join("unused")).unwrap().expect("deferred")]
    };
    let commit = |remote: &mut RemoteState, id: u64, value: &[u8]| {
        let writes = write(remote, value);
        let partitions = remote.partitions().iter().map(|&p| (p, format!("{{\"p\":{p},\"id\":{id}}}").into_bytes())).collect();
        remote.commit(writes, &RemoteRecord { id, bytes: format!("{{\"id\":{id}}}").as_bytes(), workers: 1, partitions })
    };
    let get = |key: &str| server.command(&["GET", key]).unwrap();
    let exists = |key: &str| server.command(&["EXISTS", key]).unwrap() == ":1";

    // a owns partitions 0 and 1 (epoch 1): nothing in the index yet.
    let mut a = join("a", &[0, 1]).unwrap();
    assert_eq!(a.group_generation().as_deref(), Some("e1"));
    assert!(a.partition_entries().unwrap().is_empty());
    assert_eq!(a.record().unwrap(), None);
    commit(&mut a, 7, b"a7").unwrap();
    assert_eq!(a.record().unwrap().as_deref(), Some(&b"{\"id\":7}"[..]), "the instance's record");
    assert!(exists("g:e1:s0w0:t:t") && get("g:e1:checkpoint") == "$1", "the generation's state and marker");
    for key in ["g:kg:0", "g:kg:1", "g:kg:0:owner", "g:i:a:owner", "g:i:a:checkpoint", "g:e1:checkpoint", "g:e1:s0w0:t:t"] {
        let ttl: i64 = server.command(&["PTTL", key]).unwrap().trim_start_matches(':').parse().unwrap();
        assert!(ttl > 60_000 && ttl <= 65_000, "{key}: ttl {ttl}");
    }

    // b is given partition 1 (epoch 2): it reads the entry a's checkpoint wrote.
    let mut b = join("b", &[1]).unwrap();
    let entries = b.partition_entries().unwrap();
    assert_eq!(entries.len(), 1);
    let (p, entry) = &entries[0];
    assert_eq!((*p, entry.generation.as_str(), entry.record.as_slice(), entry.state_at), (1, "e1", &b"{\"p\":1,\"id\":7}"[..], Some(7)));
    let mut from = b.open_generation("e1", 0, 0).unwrap();
    let t = from.open_table("t").unwrap();
    assert_eq!(from.get(t, b"k").unwrap().as_deref(), Some(&b"a7"[..]), "a's state, as its checkpoint left it");
    // a, replaced for partition 1, can write nothing: not its checkpoint,
    // not partition 0's entry, not its state.
    let err = commit(&mut a, 10, b"a10").unwrap_err();
    assert!(matches!(err, streamhost::state::StateError::TakenOver { .. }) && err.to_string().contains("taken this state over"), "{err}");
    assert_eq!(a.record().unwrap().as_deref(), Some(&b"{\"id\":7}"[..]));
    assert_eq!(get("g:e1:checkpoint"), "$1");
    assert_eq!(server.command(&["HGET", "g:kg:0", "record"]).unwrap(), "$14", "partition 0's entry is still checkpoint 7's (14 bytes; checkpoint 10's would be 15)");
    // Nor write out an overlay no checkpoint names.
    let small = RedisOptions { max_overlay_mb: 1, ..options.clone() };
    let zombie = RemoteState::join_group(&small, None, 5_000, "z", &[3], 4).unwrap();
    let mut stale = zombie.open_worker(1, 0, 0, false).unwrap();
    let _newer = join("y", &[3]).unwrap();
    let t = stale.open_table("t").unwrap();
    for i in 0..1500u32 {
        stale.put(t, &i.to_be_bytes(), &[0; 1000]).unwrap();
    }
    let err = stale.commit().unwrap_err();
    assert!(matches!(err, streamhost::state::StateError::TakenOver { .. }), "{err}");
    assert!(!exists(&format!("g:{}:s0w0:t:t", zombie.group_generation().unwrap())));
    // A build older than the partition's claim is refused.
    server.command(&["SET", "g:kg:2:owner", "1000"]).unwrap();
    let err = join("old", &[2]).err().expect("a newer claim holds partition 2");
    assert!(err.to_string().contains("g:kg:2:owner holds the claim of a newer build"), "{err}");

    // b checkpoints: partition 1 now names b's generation; a's stays, named by 0.
    commit(&mut b, 1, b"b1").unwrap();
    assert_eq!(server.command(&["HGET", "g:kg:1", "generation"]).unwrap(), "$2");
    assert!(exists("g:e1:s0w0:t:t"), "still named for partition 0");
    // c takes partition 0: its first checkpoint leaves e1 unnamed, and removes it.
    let mut c = join("c", &[0]).unwrap();
    assert_eq!(c.partition_entries().unwrap()[0].1.generation, "e1");
    commit(&mut c, 1, b"c1").unwrap();
    assert!(!exists("g:e1:s0w0:t:t") && !exists("g:e1:checkpoint"), "a generation no entry names is removed");
    assert!(exists(&format!("g:{}:s0w0:t:t", b.group_generation().unwrap())) && exists(&format!("g:{}:checkpoint", c.group_generation().unwrap())));
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
