//! The last dead letters and checkpoints, in bounded rings the coordinator
//! feeds and the admin API reads. Dead letters are rare and checkpoints
//! seconds apart: one short lock per batch of dead letters or per checkpoint,
//! never per event of the hot path.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::dead_letter::{DeadKind, DeadLetter};

/// Dead letters kept for the page.
pub const DEAD_LETTERS_KEPT: usize = 100;
/// Checkpoints kept for the page.
pub const CHECKPOINTS_KEPT: usize = 50;
/// Bytes of a dead letter's value (and key) kept: enough to recognise it;
/// the whole record is in the dead-letter file.
const PREVIEW_BYTES: usize = 512;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The first `PREVIEW_BYTES` of `bytes` as text (invalid UTF-8 replaced),
/// and whether it was cut.
fn preview(bytes: &[u8]) -> (String, bool) {
    let cut = bytes.len() > PREVIEW_BYTES;
    let mut end = bytes.len().min(PREVIEW_BYTES);
    // Do not split a UTF-8 sequence at the cut.
    while cut && end > 0 && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), cut)
}

/// One dead letter as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetterView {
    /// When the coordinator wrote it.
    pub at_unix_ms: u64,
    pub kind: DeadKind,
    pub reason: String,
    pub source: String,
    /// Line, sequence number or Kafka offset in its source.
    pub position: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The step that refused it (none: its source did).
    pub step: Option<String>,
    pub plugin: Option<String>,
    pub key: Option<String>,
    /// The start of its value.
    pub value: String,
    /// `value` is only the start.
    pub value_truncated: bool,
}

impl DeadLetterView {
    fn of(d: &DeadLetter, at_unix_ms: u64) -> Self {
        let (value, value_truncated) = preview(&d.event.value);
        DeadLetterView {
            at_unix_ms,
            kind: d.kind,
            reason: d.reason.clone(),
            source: d.origin.source.to_string(),
            position: d.origin.position,
            topic: d.origin.partition.as_ref().map(|p| p.topic.clone()),
            partition: d.origin.partition.as_ref().map(|p| p.partition),
            step: d.step.clone(),
            plugin: d.plugin.clone(),
            key: d.event.key.as_deref().map(|k| preview(k).0),
            value,
            value_truncated,
        }
    }
}

/// The last [`DEAD_LETTERS_KEPT`] dead letters, and how many there were.
#[derive(Debug, Default)]
pub struct DeadLetterRing {
    recent: Mutex<VecDeque<DeadLetterView>>,
    total: AtomicU64,
}

impl DeadLetterRing {
    /// Keeps the last of `dead` (called where they are written).
    pub fn record(&self, dead: &[DeadLetter]) {
        if dead.is_empty() {
            return;
        }
        self.total.fetch_add(dead.len() as u64, Relaxed);
        let now = unix_ms(SystemTime::now());
        // Copied before the lock: the reader never waits on the copies.
        let kept = &dead[dead.len().saturating_sub(DEAD_LETTERS_KEPT)..];
        let views: Vec<DeadLetterView> = kept.iter().map(|d| DeadLetterView::of(d, now)).collect();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for v in views {
            if recent.len() == DEAD_LETTERS_KEPT {
                recent.pop_front();
            }
            recent.push_back(v);
        }
    }

    /// The newest `limit` (at most [`DEAD_LETTERS_KEPT`]), newest first.
    pub fn newest(&self, limit: usize) -> Vec<DeadLetterView> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().take(limit).cloned().collect()
    }

    /// Dead letters written since the pipeline started.
    pub fn total(&self) -> u64 {
        self.total.load(Relaxed)
    }
}

/// One checkpoint as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointView {
    pub id: u64,
    pub started_unix_ms: u64,
    /// From the barrier's start to the checkpoint's confirmation.
    pub duration_ms: f64,
    /// `ok` or `failed` (a failed checkpoint stops the run).
    pub outcome: &'static str,
    pub error: Option<String>,
    /// The run's last checkpoint (a stop or the end of the input).
    #[serde(rename = "final")]
    pub last: bool,
    /// Bytes of its folder (state snapshots and record; hard-linked files
    /// counted in full); `None` for a failed one, or a folder that was not
    /// there.
    pub size_bytes: Option<u64>,
}

/// The last [`CHECKPOINTS_KEPT`] checkpoints.
#[derive(Debug, Default)]
pub struct CheckpointLog {
    recent: Mutex<VecDeque<CheckpointView>>,
}

impl CheckpointLog {
    /// Records checkpoint `id`, started at `started` and ended now, of
    /// `size_bytes` ([`folder_bytes`] of its folder); `error` if it failed.
    pub fn record(&self, id: u64, started: SystemTime, took: Duration, size_bytes: Option<u64>, last: bool, error: Option<String>) {
        let view = CheckpointView {
            id,
            started_unix_ms: unix_ms(started),
            duration_ms: took.as_secs_f64() * 1e3,
            outcome: if error.is_none() { "ok" } else { "failed" },
            size_bytes,
            error,
            last,
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == CHECKPOINTS_KEPT {
            recent.pop_front();
        }
        recent.push_back(view);
    }

    /// Every checkpoint kept, newest first.
    pub fn newest(&self) -> Vec<CheckpointView> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().cloned().collect()
    }
}

/// Bytes of the files under `dir` (`None` if it does not exist): a checkpoint's
/// size, measured as it completes (older folders are removed as new ones
/// complete; a walk is a few stat calls per worker, next to a checkpoint of
/// tens of milliseconds).
pub fn folder_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    std::fs::metadata(dir).ok()?;
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Origin};

    fn dead(i: u64, value: &[u8]) -> DeadLetter {
        DeadLetter {
            kind: DeadKind::Malformed,
            reason: format!("bad {i}"),
            origin: Origin::new("src", i),
            step: None,
            plugin: None,
            event: Event { value: value.to_vec(), ..Default::default() },
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_counts_all() {
        let ring = DeadLetterRing::default();
        let batch: Vec<DeadLetter> = (0..(DEAD_LETTERS_KEPT as u64 + 30)).map(|i| dead(i, b"x")).collect();
        ring.record(&batch[..10]);
        ring.record(&batch[10..]);
        assert_eq!(ring.total(), DEAD_LETTERS_KEPT as u64 + 30);
        let newest = ring.newest(1000);
        assert_eq!(newest.len(), DEAD_LETTERS_KEPT);
        assert_eq!(newest[0].position, DEAD_LETTERS_KEPT as u64 + 29);
        assert_eq!(newest.last().unwrap().position, 30);
        assert_eq!(ring.newest(3).iter().map(|d| d.reason.as_str()).collect::<Vec<_>>(), ["bad 129", "bad 128", "bad 127"]);
    }

    #[test]
    fn a_long_value_is_cut_on_a_character_boundary() {
        let ring = DeadLetterRing::default();
        let long = "é".repeat(PREVIEW_BYTES);
        ring.record(&[dead(1, long.as_bytes()), dead(2, b"\xff\xfe")]);
        let views = ring.newest(2);
        assert_eq!((views[0].value.as_str(), views[0].value_truncated), ("\u{fffd}\u{fffd}", false));
        assert!(views[1].value_truncated);
        assert_eq!(views[1].value, "é".repeat(PREVIEW_BYTES / 2));
    }

    #[test]
    fn folders_are_measured_and_the_checkpoints_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let log = CheckpointLog::default();
        let chk = dir.path().join("chk-1");
        std::fs::create_dir_all(chk.join("state/a")).unwrap();
        std::fs::write(chk.join("meta.json"), b"12345").unwrap();
        std::fs::write(chk.join("state/a/x"), vec![0u8; 1000]).unwrap();
        assert_eq!(folder_bytes(&chk), Some(1005));
        assert_eq!(folder_bytes(&dir.path().join("none")), None);
        log.record(1, SystemTime::now(), Duration::from_millis(3), folder_bytes(&chk), false, None);
        log.record(2, SystemTime::now(), Duration::from_millis(4), None, false, Some("disk full".into()));
        let views = log.newest();
        assert_eq!(views.iter().map(|c| (c.id, c.outcome, c.size_bytes)).collect::<Vec<_>>(), [(2, "failed", None), (1, "ok", Some(1005))]);
        for id in 3..(CHECKPOINTS_KEPT as u64 + 10) {
            log.record(id, SystemTime::now(), Duration::ZERO, None, false, None);
        }
        let views = log.newest();
        assert_eq!(views.len(), CHECKPOINTS_KEPT);
        assert_eq!(views[0].id, CHECKPOINTS_KEPT as u64 + 9);
    }
}
