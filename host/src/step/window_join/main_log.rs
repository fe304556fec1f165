//! Where an `on-window-end` join keeps its main events: written once, fired once,
//! a bucket of fire time at a time, with no LSM tree on their path.
//!
//! A main event is appended to the bucket log of its fire time ([`bucket_width`]
//! wide), framed as `fire ++ seq ++ len ++ record`. When the watermark first reaches
//! a fire time in a bucket, the bucket's index (fire time, seq, offset: 24 bytes an
//! event, not the records) is read and sorted in memory; the records are read as the
//! watermark passes each event's fire time, a chunk at a time (arrival order is
//! nearly fire order, so a chunk is mostly one sequential read); events
//! arriving for the bucket being fired (fire times still ahead of the watermark) join
//! the sorted list too. Once the watermark has passed the bucket's end and every event
//! in it has fired, the bucket is deleted whole.
//!
//! What a restart needs is in the join's meta table: the last fired (fire, seq), so a
//! reloaded bucket skips what was emitted, and per bucket with events still to fire
//! the earliest fire time among them (the join's output watermark).

use std::collections::{BTreeMap, BTreeSet};

use super::layout::{main_key, time_bytes, time_from};
use crate::state::{LogId, StateBackend, StateError, TableId};

/// Width of a main bucket in ms of fire time for a window of `window_ms`: a 64th
/// of the window, within 1 s..60 s (a one-hour window: 56 s, 65 files). Files are
/// few (creating and deleting thousands a second costs ext4 more than the writes),
/// and the index of the bucket being fired stays small (24 bytes an event: at 150k
/// events/s, 56 s is 200 MB; a restore of the width is fixed by the fingerprint's
/// window).
#[cfg(not(test))]
pub(super) fn bucket_width(window_ms: i64) -> i64 {
    (window_ms / 64).clamp(1000, 60_000)
}

/// Unit tests use narrow buckets: scenarios of tens of ms cross many of them.
#[cfg(test)]
pub(super) fn bucket_width(_window_ms: i64) -> i64 {
    4
}

/// Bytes of the log read at once while building a bucket's index.
const INDEX_READ: usize = 4 << 20;

/// Frame header: fire time, seq, record length.
const HEADER: usize = 20;

/// Meta-table keys: the last fired (fire, seq), and per bucket its earliest waiting fire time.
const FIRED_KEY: &[u8] = b"main-fired";
const WAITING_PREFIX: &[u8] = b"main-waiting/";

#[derive(Clone, Copy)]
struct Entry {
    fire: i64,
    seq: u64,
    /// Where the record (after its frame header) lies in the bucket.
    offset: u64,
    len: u32,
}

/// The bucket being fired.
struct Loaded {
    bucket: i64,
    /// Sorted by (fire, seq); entries before `next` have fired.
    entries: Vec<Entry>,
    next: usize,
}

pub(super) struct MainLog {
    log: LogId,
    meta: TableId,
    /// Buckets with events still to fire → the earliest fire time among them.
    waiting: BTreeMap<i64, i64>,
    /// Every bucket with a log (some fully fired, kept until the watermark passes them).
    live: BTreeSet<i64>,
    loaded: Option<Loaded>,
    /// The last (fire, seq) handed out.
    fired_through: (i64, u64),
    frame: Vec<u8>,
    /// The records of the last peek.
    chunk: Vec<u8>,
    width: i64,
}

fn waiting_key(bucket: i64) -> Vec<u8> {
    let mut k = WAITING_PREFIX.to_vec();
    k.extend_from_slice(&time_bytes(bucket));
    k
}

impl MainLog {
    fn bucket_of(&self, fire: i64) -> i64 {
        fire.div_euclid(self.width)
    }

    /// The last fire time a bucket holds.
    fn bucket_end(&self, bucket: i64) -> i64 {
        bucket.saturating_mul(self.width).saturating_add(self.width - 1)
    }

    /// Opens the log `name` and what the meta table says of it; buckets are `width`
    /// ms of fire time.
    pub fn open(state: &mut dyn StateBackend, name: &str, meta: TableId, width: i64) -> Result<Self, StateError> {
        let log = state.open_log(name)?;
        let mut waiting = BTreeMap::new();
        let mut end = WAITING_PREFIX.to_vec();
        end.push(0xFF);
        state.scan(meta, WAITING_PREFIX, Some(&end), &mut |k, v| {
            if let (Some(b), Ok(f)) = (k.get(WAITING_PREFIX.len()..), <[u8; 8]>::try_from(v)) {
                if b.len() == 8 {
                    waiting.insert(time_from(b), i64::from_le_bytes(f));
                }
            }
            true
        })?;
        let fired_through = match state.get(meta, FIRED_KEY)? {
            Some(v) if v.len() == 16 => (time_from(&v[..8]), u64::from_be_bytes(v[8..].try_into().expect("8 bytes"))),
            _ => (i64::MIN, 0),
        };
        let live = state.log_buckets(log).into_iter().collect();
        Ok(MainLog { log, meta, waiting, live, loaded: None, fired_through, frame: Vec::new(), chunk: Vec::new(), width: width.max(1) })
    }

    /// Whether any event is stored (fired or not): for refusing state of another layout.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The earliest fire time of an event still to fire.
    pub fn earliest(&self) -> Option<i64> {
        self.waiting.first_key_value().map(|(_, f)| *f)
    }

    /// Stores a main event firing at `fire` (one append; buffered until commit).
    pub fn add(&mut self, state: &mut dyn StateBackend, fire: i64, seq: u64, record: &[u8]) -> Result<(), StateError> {
        let bucket = self.bucket_of(fire);
        let len = u32::try_from(record.len()).map_err(|_| StateError::Incompatible {
            owner: "a window join's main events".into(),
            reason: format!("a main event of {} bytes is over the 4 GiB a record may hold", record.len()),
        })?;
        self.frame.clear();
        self.frame.extend_from_slice(&fire.to_le_bytes());
        self.frame.extend_from_slice(&seq.to_le_bytes());
        self.frame.extend_from_slice(&len.to_le_bytes());
        self.frame.extend_from_slice(record);
        let at = state.append(self.log, bucket, &self.frame)?;
        self.live.insert(bucket);
        let earliest = self.waiting.entry(bucket).or_insert(i64::MAX);
        if fire < *earliest {
            *earliest = fire;
            state.put(self.meta, &waiting_key(bucket), &fire.to_le_bytes())?;
        }
        if let Some(loaded) = self.loaded.as_mut().filter(|l| l.bucket == bucket) {
            // Its fire time is ahead of the watermark, so of every fired entry.
            let offset = at + HEADER as u64;
            let at = loaded.next + loaded.entries[loaded.next..].partition_point(|e| (e.fire, e.seq) < (fire, seq));
            loaded.entries.insert(at, Entry { fire, seq, offset, len });
        }
        Ok(())
    }

    /// Up to `limit` events due at `watermark` (fire time at or before it), in
    /// (fire, seq) order, from one bucket, without taking them: [`MainLog::advance`]
    /// takes the first `n`. Each is (its 16-byte main key, its record).
    pub fn peek(&mut self, state: &dyn StateBackend, watermark: i64, limit: usize) -> Result<Vec<([u8; 16], &[u8])>, StateError> {
        let Some((&bucket, &earliest)) = self.waiting.first_key_value() else { return Ok(Vec::new()) };
        if earliest > watermark {
            return Ok(Vec::new());
        }
        if self.loaded.as_ref().is_none_or(|l| l.bucket != bucket) {
            self.loaded = Some(self.load(state, bucket)?);
        }
        let loaded = self.loaded.as_ref().expect("just loaded");
        let due: Vec<Entry> = loaded.entries[loaded.next..].iter().take_while(|e| e.fire <= watermark).take(limit).copied().collect();
        // Where each record lies in `chunk`.
        let mut at = Vec::with_capacity(due.len());
        self.chunk.clear();
        let lo = due.iter().map(|e| e.offset).min().unwrap_or(0);
        let hi = due.iter().map(|e| e.offset + u64::from(e.len)).max().unwrap_or(0);
        let wanted: u64 = due.iter().map(|e| u64::from(e.len) + HEADER as u64).sum();
        if hi - lo <= 2 * wanted + (1 << 20) {
            // One read of the span (records arrive nearly in fire order).
            state.read_bucket_at(self.log, bucket, lo, (hi - lo) as usize, &mut self.chunk)?;
            at.extend(due.iter().map(|e| (e.offset - lo) as usize));
        } else {
            for e in &due {
                at.push(self.chunk.len());
                state.read_bucket_at(self.log, bucket, e.offset, e.len as usize, &mut self.chunk)?;
            }
        }
        Ok(due.iter().zip(at).map(|(e, a)| (main_key(e.fire, e.seq), &self.chunk[a..a + e.len as usize])).collect())
    }

    /// The index of a bucket: its events not fired yet, sorted.
    fn load(&self, state: &dyn StateBackend, bucket: i64) -> Result<Loaded, StateError> {
        let mut entries = Vec::new();
        let total = state.log_len(self.log, bucket);
        let mut buf = Vec::new();
        // Offset in the bucket of the frame at the start of `buf`.
        let mut at = 0u64;
        while at < total {
            buf.clear();
            let take = (total - at).min(INDEX_READ as u64) as usize;
            state.read_bucket_at(self.log, bucket, at, take, &mut buf)?;
            let mut i = 0usize;
            while i + HEADER <= buf.len() {
                let fire = i64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
                let seq = u64::from_le_bytes(buf[i + 8..i + 16].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(buf[i + 16..i + 20].try_into().expect("4 bytes"));
                if (fire, seq) > self.fired_through {
                    entries.push(Entry { fire, seq, offset: at + (i + HEADER) as u64, len });
                }
                i += HEADER + len as usize;
            }
            if i == 0 {
                break;
            }
            // The next read starts at the first frame not wholly read (records may
            // be longer than a read: then it starts past them).
            at += i as u64;
        }
        if at != total {
            return Err(StateError::Incompatible {
                owner: "a window join's main events".into(),
                reason: format!("bucket {bucket} of the main log ends in a partial record ({at} of {total} bytes read)"),
            });
        }
        entries.sort_unstable_by_key(|e| (e.fire, e.seq));
        Ok(Loaded { bucket, entries, next: 0 })
    }

    /// Takes the first `n` events the last [`MainLog::peek`] returned.
    pub fn advance(&mut self, state: &mut dyn StateBackend, n: usize) -> Result<(), StateError> {
        let Some(loaded) = self.loaded.as_mut() else { return Ok(()) };
        if n == 0 {
            return Ok(());
        }
        loaded.next += n;
        let last = loaded.entries[loaded.next - 1];
        self.fired_through = (last.fire, last.seq);
        state.put(self.meta, FIRED_KEY, &main_key(last.fire, last.seq))?;
        let key = waiting_key(loaded.bucket);
        match loaded.entries.get(loaded.next) {
            Some(e) => {
                self.waiting.insert(loaded.bucket, e.fire);
                state.put(self.meta, &key, &e.fire.to_le_bytes())?;
            }
            None => {
                self.waiting.remove(&loaded.bucket);
                state.delete(self.meta, &key)?;
                // Its memory goes now; arrivals for it (if any) load it again.
                self.loaded = None;
            }
        }
        Ok(())
    }

    /// Whether an event is due at `watermark`.
    pub fn any_due(&self, watermark: i64) -> bool {
        self.earliest().is_some_and(|f| f <= watermark)
    }

    /// Deletes the buckets whose events have all fired and that no event can join
    /// any more (the watermark is past their end).
    pub fn drop_passed(&mut self, state: &mut dyn StateBackend, watermark: i64) -> Result<(), StateError> {
        let passed: Vec<i64> = self.live.iter().copied().take_while(|b| self.bucket_end(*b) <= watermark).filter(|b| !self.waiting.contains_key(b)).collect();
        for b in passed {
            state.drop_bucket(self.log, b)?;
            self.live.remove(&b);
            if self.loaded.as_ref().is_some_and(|l| l.bucket == b) {
                self.loaded = None;
            }
        }
        Ok(())
    }
}

/// Calls `f` with each frame (fire, seq, record) of `bucket`, read a chunk at a time.
fn each_frame(
    state: &dyn StateBackend,
    log: LogId,
    bucket: i64,
    mut f: impl FnMut(i64, u64, &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let total = state.log_len(log, bucket);
    let partial = |at: u64| StateError::Incompatible {
        owner: "a window join's main events".into(),
        reason: format!("bucket {bucket} of the main log ends in a partial record ({at} of {total} bytes read)"),
    };
    let mut buf = Vec::new();
    let mut at = 0u64;
    while at < total {
        buf.clear();
        let take = (total - at).min(INDEX_READ as u64) as usize;
        if take < HEADER {
            return Err(partial(at));
        }
        state.read_bucket_at(log, bucket, at, take, &mut buf)?;
        let first = HEADER as u64 + u64::from(u32::from_le_bytes(buf[16..20].try_into().expect("4 bytes")));
        if first > buf.len() as u64 {
            // A record longer than a chunk: read it whole.
            if at + first > total {
                return Err(partial(at));
            }
            buf.clear();
            state.read_bucket_at(log, bucket, at, first as usize, &mut buf)?;
        }
        let mut i = 0usize;
        while i + HEADER <= buf.len() {
            let fire = i64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
            let seq = u64::from_le_bytes(buf[i + 8..i + 16].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(buf[i + 16..i + 20].try_into().expect("4 bytes")) as usize;
            if i + HEADER + len > buf.len() {
                break;
            }
            f(fire, seq, &buf[i + HEADER..i + HEADER + len])?;
            i += HEADER + len;
        }
        at += i as u64;
    }
    Ok(())
}

impl MainLog {
    /// Adds to this log the events of `from` (the same log in an old worker's
    /// state) that have not fired and whose seq says `owned`: a restore at
    /// another parallelism. Their (fire, seq) are kept: seqs carry their key group,
    /// so events of different old workers never collide.
    pub fn take_owned(
        &mut self,
        to: &mut dyn StateBackend,
        from: &mut dyn StateBackend,
        name: &str,
        from_meta: TableId,
        owned: &dyn Fn(u64) -> bool,
    ) -> Result<u64, StateError> {
        let log = from.open_log(name)?;
        let from: &dyn StateBackend = from;
        let fired = match from.get(from_meta, FIRED_KEY)? {
            Some(v) if v.len() == 16 => (time_from(&v[..8]), u64::from_be_bytes(v[8..].try_into().expect("8 bytes"))),
            _ => (i64::MIN, 0),
        };
        let mut taken = 0u64;
        for bucket in from.log_buckets(log) {
            each_frame(from, log, bucket, |fire, seq, record| {
                if (fire, seq) > fired && owned(seq) {
                    taken += 1;
                    self.add(to, fire, seq, record)?;
                    if taken % 4096 == 0 {
                        to.commit()?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(taken)
    }
}
