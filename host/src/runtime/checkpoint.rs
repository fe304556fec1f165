//! Checkpoints: consistent snapshots a pipeline resumes from after a crash.
//!
//! The coordinator pauses routing and sends a barrier through every worker
//! (`driver.rs`, `worker.rs`); each snapshots its state once the barrier has
//! come in on all its inputs, so all snapshots, sink lengths and source
//! positions describe one instant. Records read by a source but
//! not yet processed sit in the source channel; they are not covered, and
//! are read again after a restore because each source's position in a
//! checkpoint is the one after its last *processed* record.
//!
//! A checkpoint `chk-N/` holds `state/` (each worker's snapshot) and
//! `meta.json` (source positions and watermarks, committed sink and
//! dead-letter lengths). `meta.json` is written last, through a rename: a
//! folder without it is an interrupted checkpoint and is ignored.
//!
//! With a transactional sink a checkpoint completes in two steps: its record,
//! then, once the sink's transaction committed, its confirmation
//! (`chk-N/committed`). A restart resumes from the newest checkpoint that is
//! confirmed, or that the sink's commit record names (a crash between the two
//! steps), never from one whose transaction was aborted
//! (`sink/transaction.rs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a source resumes: the byte offset after its last processed record
/// and that record's line (or sequence) number; for a Kafka source, the next
/// offset of each partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// Bytes of input consumed (a file offset; for a generator, records).
    pub offset: u64,
    /// Line (or sequence) number of the last record consumed.
    pub line: u64,
    /// `topic/partition` -> the offset to read next (Kafka sources).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub partitions: std::collections::BTreeMap<String, i64>,
}

/// What a checkpoint records besides the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Checkpoint number, increasing.
    pub id: u64,
    /// Per source (by name): where to resume and its watermark.
    pub sources: std::collections::BTreeMap<String, SourceMark>,
    /// Per file sink (by name): bytes committed.
    pub sinks: std::collections::BTreeMap<String, u64>,
    /// Bytes of the dead-letter file committed.
    pub dead_letter: Option<u64>,
    /// Dead letters written before the checkpoint (for the summary).
    pub dead_count: u64,
    /// What the state and the positions mean (`fingerprint.rs`): a restart
    /// with a pipeline that says otherwise is refused. `None` in records
    /// written before fingerprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<super::fingerprint::Fingerprints>,
    /// Workers per stage when it was taken (`None`: before parallel workers,
    /// whose state cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Key groups the state is spread by (`settings.max_parallelism`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_groups: Option<usize>,
    /// The run of checkpoints this one belongs to: drawn at a fresh start,
    /// carried by every restore. A transactional sink's commit record names
    /// it beside the checkpoint's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
    /// Taken with a transactional sink: complete only once confirmed (or
    /// named by the sink's commit record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transactional: bool,
    /// In a group with Redis state: the generation holding the state it
    /// covers (`e{epoch}`; `None`: the parallelism's, `p{workers}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_generation: Option<String>,
}

impl CheckpointMeta {
    /// The record as it concerns partition `p` only: the sources' positions in
    /// it, none of the outputs (a group's index entry).
    pub(crate) fn for_partition(&self, p: u16) -> CheckpointMeta {
        let mut meta = CheckpointMeta { sinks: Default::default(), dead_letter: None, dead_count: 0, ..self.clone() };
        for mark in meta.sources.values_mut() {
            mark.resume.partitions.retain(|key, _| partition_of(key) == Some(p));
        }
        meta
    }
}

/// The partition of a `topic/partition` position key.
pub(crate) fn partition_of(key: &str) -> Option<u16> {
    key.rsplit_once('/').and_then(|(_, p)| p.parse().ok())
}

/// A transactional sink's commit record: the last checkpoint whose outputs
/// it committed, and that checkpoint's lineage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub id: u64,
    pub lineage: String,
}

/// A lineage for checkpoints that start from nothing.
pub(crate) fn new_lineage() -> String {
    use std::hash::BuildHasher;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:016x}", std::collections::hash_map::RandomState::new().hash_one((seed, std::process::id())))
}

/// A source's progress at a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMark {
    pub resume: ResumePoint,
    /// Its watermark (ms), so late events stay late after a restore.
    pub watermark: i64,
    /// It had reached its end.
    pub ended: bool,
}

/// The checkpoints of one pipeline, in one folder.
pub(crate) struct Checkpoints {
    dir: PathBuf,
    keep: usize,
    /// Scale-out: the shared index this process's checkpoints are named in.
    shared: Option<SharedIndex>,
}

/// Scale-out over a consumer group: each process (instance) writes its
/// checkpoints to `<dir>/instances/<instance>/`, and after each one names it
/// in `<dir>/key-groups/<kg>.json` for every key group (input partition) it
/// owns: the checkpoint a process that is given that partition next
/// restores the partition's state and offsets from. Only the partition's
/// owner writes its entry (the group gives a partition to one process at a
/// time), and a checkpoint some entry names is never removed.
#[derive(Clone, Debug)]
pub(crate) struct SharedIndex {
    pub(crate) root: PathBuf,
    pub(crate) instance: String,
    /// The key groups this process owns now.
    pub(crate) groups: Vec<u16>,
}

/// An entry of the shared index.
#[derive(Serialize, Deserialize)]
struct IndexEntry {
    /// The checkpoint's folder, relative to the checkpoint directory.
    checkpoint: PathBuf,
}

impl SharedIndex {
    fn entry_path(&self, kg: u16) -> PathBuf {
        self.root.join("key-groups").join(format!("{kg}.json"))
    }

    /// The folder of `instance`'s checkpoints.
    pub(crate) fn instance_dir(root: &Path, instance: &str) -> PathBuf {
        root.join("instances").join(instance)
    }

    /// The checkpoint named for key group `kg`, if any (its folder).
    pub(crate) fn named(&self, kg: u16) -> Result<Option<PathBuf>, String> {
        let path = self.entry_path(kg);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let e: IndexEntry = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(Some(self.root.join(e.checkpoint)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Names `folder` as the checkpoint of every key group owned.
    fn name(&self, folder: &Path) -> Result<(), String> {
        let dir = self.root.join("key-groups");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rel = folder.strip_prefix(&self.root).unwrap_or(folder).to_path_buf();
        let text = serde_json::to_vec(&IndexEntry { checkpoint: rel }).map_err(|e| e.to_string())?;
        for &kg in &self.groups {
            let (path, tmp) = (self.entry_path(kg), dir.join(format!("{kg}.json.{}.tmp", self.instance)));
            write_synced(&tmp, &text).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        sync_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))
    }

    /// Every checkpoint folder some entry names.
    fn referenced(&self) -> Result<std::collections::BTreeSet<PathBuf>, String> {
        let dir = self.root.join("key-groups");
        let mut all = std::collections::BTreeSet::new();
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(all) };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(kg) = name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse().ok()) else { continue };
            all.extend(self.named(kg)?);
        }
        Ok(all)
    }
}

/// A complete checkpoint on disk.
pub(crate) struct Found {
    pub dir: PathBuf,
    pub meta: CheckpointMeta,
}

impl Checkpoints {
    pub(crate) fn new(dir: PathBuf, keep: usize) -> Self {
        Checkpoints { dir, keep: keep.max(1), shared: None }
    }

    /// A process's checkpoints in a shared directory (scale-out), each named
    /// in the shared index for the key groups it owns.
    pub(crate) fn shared(index: SharedIndex, keep: usize) -> Self {
        let dir = SharedIndex::instance_dir(&index.root, &index.instance);
        Checkpoints { dir, keep: keep.max(1), shared: Some(index) }
    }

    /// The complete checkpoint in `dir`, if it is one.
    pub(crate) fn read(dir: &Path) -> Result<Option<Found>, String> {
        let meta_path = dir.join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta_path) else { return Ok(None) };
        let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| format!("{}: not a checkpoint record: {e}", meta_path.display()))?;
        Ok(Some(Found { dir: dir.to_path_buf(), meta }))
    }

    /// The newest complete checkpoint, if any.
    pub(crate) fn latest(&self) -> Result<Option<Found>, String> {
        self.newest(|_| true)
    }

    /// The newest checkpoint with a record for which `ok` holds.
    fn newest(&self, ok: impl Fn(&Found) -> bool) -> Result<Option<Found>, String> {
        let mut best: Option<Found> = None;
        for (id, dir) in self.list()? {
            let Some(found) = Self::read(&dir)? else { continue };
            if found.meta.id == id && best.as_ref().is_none_or(|b| b.meta.id < id) && ok(&found) {
                best = Some(found);
            }
        }
        Ok(best)
    }

    /// The newest checkpoint a run resumes from when a transactional sink's
    /// commit record is `committed`: one that is confirmed, taken without a
    /// transactional sink, or named by the commit record. The checkpoints
    /// after it are removed: their transactions were aborted.
    pub(crate) fn resumable(&self, committed: Option<&Committed>) -> Result<Option<Found>, String> {
        let chosen = self.newest(|f| is_resumable(f, committed))?;
        if let Some(latest) = self.latest()? {
            let upto = chosen.as_ref().map_or(0, |c| c.meta.id);
            if latest.meta.id > upto {
                tracing::info!(
                    checkpoint = latest.meta.id,
                    resumes_from = upto,
                    "checkpoints after {upto} are not resumed from: their sink transactions did not commit"
                );
            }
            for (id, dir) in self.list()? {
                if id > upto {
                    std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
            }
        }
        Ok(chosen)
    }

    /// `chk-N` folders, complete or not.
    fn list(&self) -> Result<Vec<(u64, PathBuf)>, String> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", self.dir.display())),
        };
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_prefix("chk-")?.parse().ok()?;
                Some((id, e.path()))
            })
            .collect())
    }

    /// The folder checkpoint `id` is written to (its state goes in `state/`).
    pub(crate) fn folder(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id}"))
    }

    /// Completes checkpoint `meta.id` (whose state is already in its folder)
    /// in one step: its record, then its confirmation.
    #[cfg(test)]
    pub(crate) fn complete(&self, meta: &CheckpointMeta) -> Result<(), String> {
        self.record(meta)?;
        self.confirm(meta)
    }

    /// Writes the record of checkpoint `meta.id` (whose state is already in
    /// its folder): without a transactional sink, it is complete.
    pub(crate) fn record(&self, meta: &CheckpointMeta) -> Result<(), String> {
        let folder = self.folder(meta.id);
        let tmp = folder.join("meta.json.tmp");
        let text = serde_json::to_string_pretty(meta).map_err(|e| e.to_string())?;
        write_synced(&tmp, text.as_bytes()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, folder.join("meta.json")).map_err(|e| format!("{}: {e}", folder.display()))?;
        sync_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))
    }

    /// After its record (and its sinks' transactions): marks a transactional
    /// checkpoint confirmed, names it in the shared index, then drops all but
    /// the newest `keep`.
    pub(crate) fn confirm(&self, meta: &CheckpointMeta) -> Result<(), String> {
        let folder = self.folder(meta.id);
        if meta.transactional {
            let path = folder.join(CONFIRMED);
            write_synced(&path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
            sync_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        }
        let referenced = match &self.shared {
            Some(index) => {
                index.name(&folder)?;
                index.referenced()?
            }
            None => Default::default(),
        };
        let mut all = self.list()?;
        all.sort();
        let excess = all.len().saturating_sub(self.keep);
        for (id, dir) in all.into_iter().take(excess) {
            if id < meta.id && !referenced.contains(&dir) {
                std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// Removes the folders of interrupted checkpoints (no record): a crash
    /// during a checkpoint leaves one behind.
    pub(crate) fn remove_incomplete(&self) -> Result<(), String> {
        for (_, dir) in self.list()? {
            if !dir.join("meta.json").is_file() {
                std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// Removes every checkpoint (a fresh start).
    pub(crate) fn clear(&self) -> Result<(), String> {
        for (_, dir) in self.list()? {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(())
    }
}

/// The file that confirms a transactional checkpoint.
const CONFIRMED: &str = "committed";

/// Whether a run may resume from `f`, given the commit record.
fn is_resumable(f: &Found, committed: Option<&Committed>) -> bool {
    !f.meta.transactional
        || f.dir.join(CONFIRMED).is_file()
        || committed.is_some_and(|c| c.id == f.meta.id && Some(&c.lineage) == f.meta.lineage.as_ref())
}

/// When and where a running pipeline checkpoints.
pub(crate) struct Schedule {
    pub(crate) store: Checkpoints,
    interval: std::time::Duration,
    last: std::time::Instant,
    pub(crate) next_id: u64,
    /// Set by a worker whose state must be checkpointed before the interval
    /// ends (Redis: its writes since the last checkpoint passed their bound).
    early: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Schedule {
    pub(crate) fn new(store: Checkpoints, interval: std::time::Duration, next_id: u64) -> Self {
        Schedule { store, interval, last: std::time::Instant::now(), next_id, early: None }
    }

    /// A checkpoint is also due whenever `early` is set.
    pub(crate) fn with_early(self, early: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        Schedule { early: Some(early), ..self }
    }

    fn asked_early(&self) -> bool {
        self.early.as_ref().is_some_and(|e| e.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether a checkpoint is due now.
    pub(crate) fn due(&self) -> bool {
        self.last.elapsed() >= self.interval || self.asked_early()
    }

    /// How long until the next checkpoint is due (zero: now).
    pub(crate) fn until_due(&self) -> std::time::Duration {
        if self.asked_early() {
            return std::time::Duration::ZERO;
        }
        self.interval.saturating_sub(self.last.elapsed())
    }

    /// The id of the checkpoint being taken, and restart the interval.
    pub(crate) fn start(&mut self) -> u64 {
        self.last = std::time::Instant::now();
        if let Some(e) = &self.early {
            e.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        self.next_id += 1;
        self.next_id - 1
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_complete_checkpoint_wins_and_old_ones_go() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(tmp.path().join("cp"), 2);
        assert!(c.latest().unwrap().is_none());
        for id in 1..=3 {
            std::fs::create_dir_all(c.folder(id)).unwrap();
            c.complete(&CheckpointMeta { id, dead_count: id, ..Default::default() }).unwrap();
        }
        // An interrupted checkpoint (no meta.json) is ignored, then removed.
        std::fs::create_dir_all(c.folder(4).join("state")).unwrap();
        let latest = c.latest().unwrap().unwrap();
        assert_eq!(latest.meta.dead_count, 3);
        c.remove_incomplete().unwrap();
        assert!(!c.folder(4).exists() && c.folder(3).exists());
        assert!(!c.folder(1).exists(), "only the newest two are kept");
        assert!(c.folder(2).exists());
        c.clear().unwrap();
        assert!(c.latest().unwrap().is_none());
    }

    #[test]
    fn a_transactional_checkpoint_is_resumed_from_once_confirmed_or_named_by_the_commit_record() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(tmp.path().join("cp"), 5);
        let meta = |id| CheckpointMeta { id, lineage: Some("L".into()), transactional: true, ..Default::default() };
        for id in 1..=2 {
            std::fs::create_dir_all(c.folder(id)).unwrap();
            c.complete(&meta(id)).unwrap();
        }
        // chk-3 recorded; the process died before its transaction committed.
        std::fs::create_dir_all(c.folder(3)).unwrap();
        c.record(&meta(3)).unwrap();
        let record = |id: u64, lineage: &str| Committed { id, lineage: lineage.into() };
        assert_eq!(c.latest().unwrap().unwrap().meta.id, 3);
        // The commit record of the same lineage names chk-3: it committed.
        assert_eq!(c.resumable(Some(&record(3, "L"))).unwrap().unwrap().meta.id, 3);
        // Another lineage's record (an earlier life) says nothing about chk-3.
        assert_eq!(c.resumable(Some(&record(3, "other"))).unwrap().unwrap().meta.id, 2);
        assert!(!c.folder(3).exists(), "an aborted checkpoint is removed");
        // A checkpoint without a transactional sink stands by its record.
        std::fs::create_dir_all(c.folder(3)).unwrap();
        c.record(&CheckpointMeta { id: 3, ..Default::default() }).unwrap();
        assert_eq!(c.resumable(None).unwrap().unwrap().meta.id, 3);
        // Nothing confirmed at all: from the start.
        let d = Checkpoints::new(tmp.path().join("cp2"), 5);
        std::fs::create_dir_all(d.folder(1)).unwrap();
        d.record(&meta(1)).unwrap();
        assert!(d.resumable(None).unwrap().is_none());
        assert!(d.latest().unwrap().is_none(), "removed");
    }

    #[test]
    fn a_shared_checkpoint_names_itself_for_its_key_groups_and_stays_while_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let index = |instance: &str, groups: Vec<u16>| SharedIndex { root: root.clone(), instance: instance.into(), groups };
        let a = Checkpoints::shared(index("a", vec![0, 1]), 1);
        let complete = |c: &Checkpoints, id: u64| {
            std::fs::create_dir_all(c.folder(id)).unwrap();
            c.complete(&CheckpointMeta { id, ..Default::default() }).unwrap();
        };
        complete(&a, 1);
        assert_eq!(index("x", vec![]).named(0).unwrap(), Some(a.folder(1)));
        assert_eq!(index("x", vec![]).named(1).unwrap(), Some(a.folder(1)));
        assert_eq!(index("x", vec![]).named(2).unwrap(), None);
        // b takes key group 1 over: a's chk-1 stays while key group 0 names it.
        let b = Checkpoints::shared(index("b", vec![1]), 1);
        complete(&b, 1);
        let a_now = Checkpoints::shared(index("a", vec![0]), 1);
        assert_eq!(index("x", vec![]).named(1).unwrap(), Some(b.folder(1)));
        complete(&a_now, 2);
        assert!(!a.folder(1).exists(), "no longer named, past keep: removed");
        assert_eq!(index("x", vec![]).named(0).unwrap(), Some(a.folder(2)));
        // A checkpoint still named is kept past `keep`.
        let a_only_1 = Checkpoints::shared(index("a", vec![]), 1);
        complete(&a_only_1, 3);
        assert!(a.folder(2).exists(), "key group 0 still names chk-2");
        assert_eq!(Checkpoints::read(&a.folder(2)).unwrap().unwrap().meta.id, 2);
    }
}
