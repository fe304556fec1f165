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
}

/// A complete checkpoint on disk.
pub(crate) struct Found {
    pub dir: PathBuf,
    pub meta: CheckpointMeta,
}

impl Checkpoints {
    pub(crate) fn new(dir: PathBuf, keep: usize) -> Self {
        Checkpoints { dir, keep: keep.max(1) }
    }

    /// The newest complete checkpoint, if any.
    pub(crate) fn latest(&self) -> Result<Option<Found>, String> {
        let mut best: Option<Found> = None;
        for (id, dir) in self.list()? {
            let meta_path = dir.join("meta.json");
            let Ok(text) = std::fs::read_to_string(&meta_path) else { continue };
            let meta: CheckpointMeta =
                serde_json::from_str(&text).map_err(|e| format!("{}: not a checkpoint record: {e}", meta_path.display()))?;
            if meta.id == id && best.as_ref().is_none_or(|b| b.meta.id < id) {
                best = Some(Found { dir, meta });
            }
        }
        Ok(best)
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
    /// by writing its record, then drops all but the newest `keep`.
    pub(crate) fn complete(&self, meta: &CheckpointMeta) -> Result<(), String> {
        let folder = self.folder(meta.id);
        let tmp = folder.join("meta.json.tmp");
        let text = serde_json::to_string_pretty(meta).map_err(|e| e.to_string())?;
        write_synced(&tmp, text.as_bytes()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, folder.join("meta.json")).map_err(|e| format!("{}: {e}", folder.display()))?;
        sync_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let mut all = self.list()?;
        all.sort();
        let excess = all.len().saturating_sub(self.keep);
        for (id, dir) in all.into_iter().take(excess) {
            if id < meta.id {
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

/// When and where a running pipeline checkpoints.
pub(crate) struct Schedule {
    pub(crate) store: Checkpoints,
    interval: std::time::Duration,
    last: std::time::Instant,
    pub(crate) next_id: u64,
}

impl Schedule {
    pub(crate) fn new(store: Checkpoints, interval: std::time::Duration, next_id: u64) -> Self {
        Schedule { store, interval, last: std::time::Instant::now(), next_id }
    }

    /// Whether a checkpoint is due now.
    pub(crate) fn due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    /// The id of the checkpoint being taken, and restart the interval.
    pub(crate) fn start(&mut self) -> u64 {
        self.last = std::time::Instant::now();
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
}
