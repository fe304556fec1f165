//! The step's pane rows: a write-back cache in front of the state backend.
//!
//! An event costs a hash-map fold, not a backend read-modify-write (reads
//! see committed data only, so that would need a commit per event). A pane
//! is *resident* while the cache holds every row of it, and *spilled* once
//! its rows went to the backend to bound memory (or came from a checkpoint):
//! then the cache holds only what arrived since, merged into the stored row
//! at the next flush. Memory: the cache's bound plus the backend's own
//! buffers, however large the state grows on disk.

use std::collections::{BTreeMap, HashMap};

use super::aggregates::Row;
use super::layout::{row_key, split_row_key, t8};
use crate::state::{StateBackend, StateError, TableId};

/// A key's row in a pane, in the cache.
struct Slot {
    row: Row,
    kg: u16,
    /// Changed since it was last written.
    dirty: bool,
}

#[derive(Default)]
struct Pane {
    rows: HashMap<Vec<u8>, Slot>,
    /// The backend holds rows of this pane the cache may not.
    spilled: bool,
    /// The backend holds rows of this pane (a restore finds them there).
    stored: bool,
}

pub struct PaneStore {
    empty: Row,
    /// Rows of each known pane, by pane start.
    panes: BTreeMap<i64, Pane>,
    /// Estimated bytes the cache holds, and its bound.
    bytes: usize,
    limit: usize,
    /// Estimated bytes of one row besides its key.
    row_cost: usize,
    table: Option<TableId>,
    meta: Option<TableId>,
    /// Rows written to the backend by spills, for the run's figures.
    pub spilled_rows: u64,
}

/// Meta entry listing the panes the backend holds rows of.
const SPILLED: &[u8] = b"spilled";

fn corrupt(why: String) -> StateError {
    StateError::Incompatible { owner: "window-aggregate".into(), reason: why }
}

impl PaneStore {
    pub fn new(empty: Row, limit_bytes: usize) -> PaneStore {
        let mut bytes = Vec::new();
        bytes.extend(empty.encode());
        // A row grows as it takes values (sketches up to their bound): count
        // it at four times its empty size, and at least 64 bytes.
        let row_cost = (bytes.len() * 4).max(64) + 96;
        PaneStore { empty, panes: BTreeMap::new(), bytes: 0, limit: limit_bytes, row_cost, table: None, meta: None, spilled_rows: 0 }
    }

    /// Opens the tables; the panes a checkpoint holds are spilled panes.
    pub fn open(&mut self, state: &mut dyn StateBackend, table: TableId, meta: TableId) -> Result<(), StateError> {
        self.table = Some(table);
        self.meta = Some(meta);
        if let Some(list) = state.get(meta, SPILLED)? {
            for chunk in list.chunks_exact(8) {
                let pane = i64::from_be_bytes(chunk.try_into().expect("8 bytes"));
                let p = self.panes.entry(pane).or_default();
                (p.spilled, p.stored) = (true, true);
            }
        }
        Ok(())
    }

    /// The row of `key` (in key group `kg`) in `pane`, created empty, marked changed.
    pub fn row_mut(&mut self, pane: i64, kg: u16, key: &[u8]) -> &mut Row {
        let p = self.panes.entry(pane).or_default();
        if !p.rows.contains_key(key) {
            self.bytes += self.row_cost + key.len();
            p.rows.insert(key.to_vec(), Slot { row: self.empty.clone(), kg, dirty: true });
        }
        let slot = p.rows.get_mut(key).expect("inserted above");
        slot.dirty = true;
        &mut slot.row
    }

    /// Whether the cache is past its bound.
    pub fn full(&self) -> bool {
        self.bytes > self.limit
    }

    /// Writes the oldest panes to the backend and drops them from memory
    /// until the cache is under 3/4 of its bound; commits.
    pub fn spill(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let starts: Vec<i64> = self.panes.iter().filter(|(_, p)| !p.rows.is_empty()).map(|(s, _)| *s).collect();
        for start in starts {
            if self.bytes <= self.limit / 4 * 3 {
                break;
            }
            self.write_pane(state, start, true)?;
        }
        self.save_spilled(state)?;
        state.commit()
    }

    /// Writes every changed row (before a checkpoint): resident rows stay
    /// cached, clean. The caller commits.
    pub fn flush(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let starts: Vec<i64> = self.panes.keys().copied().collect();
        for start in starts {
            self.write_pane(state, start, false)?;
        }
        self.save_spilled(state)
    }

    /// Writes pane `start`'s changed rows; `evict`: drops all its rows from
    /// memory (it becomes spilled). A spilled pane's cached rows are what
    /// arrived since: merged into the stored row, then dropped.
    fn write_pane(&mut self, state: &mut dyn StateBackend, start: i64, evict: bool) -> Result<(), StateError> {
        let table = self.table.expect("open before use");
        let n = self.empty.0.len();
        let Some(pane) = self.panes.get_mut(&start) else { return Ok(()) };
        let was_spilled = pane.spilled;
        let mut written = 0u64;
        for (key, slot) in pane.rows.iter_mut().filter(|(_, s)| s.dirty) {
            let k = row_key(start, slot.kg, key);
            if was_spilled {
                if let Some(stored) = state.get(table, &k)? {
                    let mut row = Row::decode(&stored, n).map_err(corrupt)?;
                    row.merge(&slot.row).map_err(corrupt)?;
                    slot.row = row;
                }
            }
            state.put(table, &k, &slot.row.encode())?;
            slot.dirty = false;
            written += 1;
        }
        pane.stored |= written > 0;
        if evict || was_spilled {
            let dropped = pane.rows.len();
            pane.rows.clear();
            (pane.spilled, pane.stored) = (true, true);
            self.bytes = self.bytes.saturating_sub(dropped * self.row_cost);
        }
        if evict {
            self.spilled_rows += written;
        }
        Ok(())
    }

    fn save_spilled(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let list: Vec<u8> = self.panes.iter().filter(|(_, p)| p.spilled || p.stored).flat_map(|(s, _)| s.to_be_bytes()).collect();
        state.put(self.meta.expect("open before use"), SPILLED, &list)
    }

    /// The first pane at or after `from` that holds rows.
    pub fn next_pane(&self, from: i64) -> Option<i64> {
        self.panes.range(from..).find(|(_, p)| p.spilled || !p.rows.is_empty()).map(|(s, _)| *s)
    }

    /// Merges every key's rows over `panes` into `into` (key → (kg, row)).
    pub fn gather(&self, state: &dyn StateBackend, panes: impl Iterator<Item = i64>, into: &mut HashMap<Vec<u8>, (u16, Row)>) -> Result<(), StateError> {
        let table = self.table.expect("open before use");
        let n = self.empty.0.len();
        for start in panes {
            let Some(pane) = self.panes.get(&start) else { continue };
            for (key, slot) in &pane.rows {
                merge_into(into, key, slot.kg, &slot.row)?;
            }
            if pane.spilled {
                let mut failed = None;
                state.scan(table, &t8(start), Some(&t8(start.saturating_add(1))), &mut |k, v| {
                    let merged = split_row_key(k)
                        .ok_or_else(|| corrupt("a pane row with a short key".into()))
                        .and_then(|(_, kg, key)| Row::decode(v, n).map_err(corrupt).and_then(|row| merge_into(into, key, kg, &row)));
                    failed = merged.err();
                    failed.is_none()
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `key`'s row merged over `panes` (`None`: no row in any).
    pub fn gather_key(&self, state: &dyn StateBackend, panes: impl Iterator<Item = i64>, kg: u16, key: &[u8]) -> Result<Option<Row>, StateError> {
        let table = self.table.expect("open before use");
        let n = self.empty.0.len();
        let mut out: Option<Row> = None;
        let mut add = |row: &Row| -> Result<(), StateError> {
            match &mut out {
                Some(o) => o.merge(row).map_err(corrupt),
                None => {
                    out = Some(row.clone());
                    Ok(())
                }
            }
        };
        for start in panes {
            let Some(pane) = self.panes.get(&start) else { continue };
            if let Some(slot) = pane.rows.get(key) {
                add(&slot.row)?;
            }
            if pane.spilled {
                if let Some(stored) = state.get(table, &row_key(start, kg, key))? {
                    add(&Row::decode(&stored, n).map_err(corrupt)?)?;
                }
            }
        }
        Ok(out)
    }

    /// Drops every pane before `start`, in memory and in the backend.
    pub fn expire_before(&mut self, state: &mut dyn StateBackend, start: i64) -> Result<(), StateError> {
        let kept = self.panes.split_off(&start);
        let dropped = std::mem::replace(&mut self.panes, kept);
        if dropped.values().any(|p| p.spilled || p.stored) {
            state.delete_range(self.table.expect("open before use"), &[], &t8(start))?;
            self.save_spilled(state)?;
        }
        let rows: usize = dropped.values().map(|p| p.rows.len()).sum();
        self.bytes = self.bytes.saturating_sub(rows * self.row_cost);
        Ok(())
    }

    /// Panes known (resident or spilled).
    #[cfg(test)]
    pub fn panes(&self) -> usize {
        self.panes.len()
    }
}

fn merge_into(into: &mut HashMap<Vec<u8>, (u16, Row)>, key: &[u8], kg: u16, row: &Row) -> Result<(), StateError> {
    match into.get_mut(key) {
        Some((_, r)) => r.merge(row).map_err(corrupt),
        None => {
            into.insert(key.to_vec(), (kg, row.clone()));
            Ok(())
        }
    }
}
