//! Session windows: per key, events less than `gap` apart form one session,
//! the window [first event, last event + gap). An event opens [t, t + gap)
//! and merges every session of its key that window overlaps (their rows
//! merged: accumulators are mergeable), so arrival order does not matter.
//!
//! A session fires once the watermark passes its end − 1. With allowed
//! lateness it is kept until end − 1 + lateness: a late event merging into
//! it (or merging fired sessions) makes it due, and it is emitted again,
//! whole, as an update. Past that, it is dropped (Flink's rule: a later
//! event then starts a new session even if it is within the gap of the
//! dropped one).
//!
//! State: every open session is in memory (its pre-aggregated row, never
//! raw events) and written to `{step}/sessions` at checkpoints:
//! `kg2 ++ t8(start) ++ key` → `t8(end) ++ u32 emitted ++ u8 due ++ row`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::aggregates::Row;
use super::layout::{t8, time_of};
use crate::state::{StateBackend, StateError, TableId};

/// One session of a key.
#[derive(Clone, Debug)]
struct Session {
    end: i64,
    row: Row,
    /// Times emitted (0: not yet; 1: its final result; more: updates).
    emitted: u32,
    /// Changed since it was last emitted, after its first emission.
    due: bool,
    /// Written to the backend (so its removal must be written too).
    stored: bool,
}

/// What a firing emits: (key, key group, start, end, row, update number (0: final)).
pub type Fired = (Vec<u8>, u16, i64, i64, Row, u32);

pub struct Sessions {
    gap: i64,
    lateness: i64,
    empty: Row,
    /// Per key: its key group and sessions by start.
    keys: HashMap<Vec<u8>, (u16, BTreeMap<i64, Session>)>,
    /// (end, key, start) of every session, for firing in order of end.
    by_end: BTreeSet<(i64, Vec<u8>, i64)>,
    /// Sessions changed since the last checkpoint, and those gone.
    dirty: BTreeSet<(Vec<u8>, i64)>,
    gone: Vec<Vec<u8>>,
    table: Option<TableId>,
}

fn row_key(kg: u16, start: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + key.len());
    k.extend_from_slice(&kg.to_be_bytes());
    k.extend_from_slice(&t8(start));
    k.extend_from_slice(key);
    k
}

/// The key group of a stored session's key.
pub fn key_group_of(k: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(k.get(..2)?.try_into().ok()?))
}

fn corrupt(why: String) -> StateError {
    StateError::Incompatible { owner: "window-aggregate sessions".into(), reason: why }
}

impl Sessions {
    pub fn new(gap: i64, lateness: i64, empty: Row) -> Sessions {
        Sessions { gap, lateness, empty, keys: HashMap::new(), by_end: BTreeSet::new(), dirty: BTreeSet::new(), gone: Vec::new(), table: None }
    }

    /// Whether an event at `t` is late at watermark `w`: the session it
    /// would open alone closed, lateness included.
    pub fn is_late(&self, t: i64, w: i64) -> bool {
        t.saturating_add(self.gap - 1).saturating_add(self.lateness) <= w
    }

    /// Loads the sessions a checkpoint holds.
    pub fn open(&mut self, state: &mut dyn StateBackend, table: TableId) -> Result<(), StateError> {
        self.table = Some(table);
        let n = self.empty.0.len();
        let mut failed = None;
        state.scan(table, &[], None, &mut |k, v| {
            let parsed = (|| {
                let kg = key_group_of(k)?;
                let start = time_of(k.get(2..)?)?;
                let key = k.get(10..)?.to_vec();
                let end = time_of(v)?;
                let emitted = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
                let due = *v.get(12)? == 1;
                Some((kg, start, key, end, emitted, due, v.get(13..)?))
            })();
            let Some((kg, start, key, end, emitted, due, row)) = parsed else {
                failed = Some(corrupt("a session row of another shape".into()));
                return false;
            };
            match Row::decode(row, n) {
                Ok(row) => {
                    self.by_end.insert((end, key.clone(), start));
                    self.keys.entry(key).or_insert_with(|| (kg, BTreeMap::new())).1.insert(start, Session { end, row, emitted, due, stored: true });
                    true
                }
                Err(e) => {
                    failed = Some(corrupt(e));
                    false
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Adds an event at `t` of `key` (in key group `kg`), folded into its
    /// session's row by `fold`: the session [t, t + gap) merged with every
    /// session of the key it overlaps.
    pub fn add(&mut self, key: &[u8], kg: u16, t: i64, fold: impl FnOnce(&mut Row)) -> Result<(), String> {
        let end = t.saturating_add(self.gap);
        let (_, sessions) = self.keys.entry(key.to_vec()).or_insert_with(|| (kg, BTreeMap::new()));
        // Sessions overlapping [t, end): start < end and their end > t. A
        // key's sessions are disjoint, so of those starting before t only
        // the last may reach past t.
        let before = sessions.range(..t).next_back().filter(|(_, s)| s.end > t).map(|(s, _)| *s);
        let overlapping: Vec<i64> = before.into_iter().chain(sessions.range(t..end).map(|(s, _)| *s)).collect();
        let mut merged = Session { end, row: self.empty.clone(), emitted: 0, due: false, stored: false };
        let mut start = t;
        for s in overlapping {
            let old = sessions.remove(&s).expect("listed above");
            self.by_end.remove(&(old.end, key.to_vec(), s));
            // A stored one is deleted at the next checkpoint (one that never
            // reached the backend needs nothing: most merges are of those).
            self.dirty.remove(&(key.to_vec(), s));
            if old.stored {
                self.gone.push(row_key(kg, s, key));
            }
            merged.row.merge(&old.row)?;
            merged.end = merged.end.max(old.end);
            merged.emitted = merged.emitted.max(old.emitted);
            start = start.min(s);
        }
        fold(&mut merged.row);
        // A session that was emitted changes: its update is due.
        merged.due = merged.emitted > 0;
        self.by_end.insert((merged.end, key.to_vec(), start));
        self.dirty.insert((key.to_vec(), start));
        sessions.insert(start, merged);
        Ok(())
    }

    /// The sessions watermark `w` completes (not yet emitted, or due an
    /// update), in order of end; drops those past their lateness.
    pub fn fire(&mut self, w: i64) -> Vec<Fired> {
        let mut out = Vec::new();
        let complete: Vec<(i64, Vec<u8>, i64)> = self.by_end.range(..(w.saturating_add(2), Vec::new(), i64::MIN)).filter(|(end, _, _)| end - 1 <= w).cloned().collect();
        for (end, key, start) in complete {
            let Some((kg, sessions)) = self.keys.get_mut(&key) else { continue };
            let kg = *kg;
            let Some(s) = sessions.get_mut(&start) else { continue };
            if s.emitted == 0 || s.due {
                out.push((key.clone(), kg, start, end, s.row.clone(), s.emitted));
                s.emitted += 1;
                s.due = false;
                self.dirty.insert((key.clone(), start));
            }
            if end - 1 + self.lateness <= w {
                let stored = sessions.remove(&start).is_some_and(|s| s.stored);
                if sessions.is_empty() {
                    self.keys.remove(&key);
                }
                self.by_end.remove(&(end, key.clone(), start));
                self.dirty.remove(&(key.clone(), start));
                if stored {
                    self.gone.push(row_key(kg, start, &key));
                }
            }
        }
        out
    }

    /// Writes what changed since the last checkpoint (the caller commits).
    pub fn save(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let table = self.table.expect("open before use");
        for k in self.gone.drain(..) {
            state.delete(table, &k)?;
        }
        for (key, start) in std::mem::take(&mut self.dirty) {
            let Some((kg, sessions)) = self.keys.get_mut(&key) else { continue };
            let Some(s) = sessions.get_mut(&start) else { continue };
            s.stored = true;
            let mut v = t8(s.end).to_vec();
            v.extend_from_slice(&s.emitted.to_be_bytes());
            v.push(u8::from(s.due));
            v.extend_from_slice(&s.row.encode());
            state.put(table, &row_key(*kg, start, &key), &v)?;
        }
        Ok(())
    }

    /// Sessions held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_end.len()
    }
}
