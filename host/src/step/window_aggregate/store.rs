//! The step's pane rows: a write-back cache in front of the state backend.
//!
//! An event costs a hash-map fold, not a backend read-modify-write (reads
//! see committed data only, so that would need a commit per event). The
//! cache is key-major: per key, its rows by pane, so firing a window walks
//! the keys once and merges each key's few panes, with no map built per
//! window. A pane is *resident* while the cache holds every row of it, and
//! *spilled* once its rows went to the backend to bound memory (or came from
//! a checkpoint): then the cache holds only what arrived since, merged into
//! the stored row at the next flush. Memory: the cache's bound plus the
//! backend's own buffers, however large the state grows on disk.

use std::collections::{BTreeMap, HashMap};

use super::aggregates::Row;
use super::layout::{row_key, split_row_key, t8};
use crate::state::{StateBackend, StateError, TableId};

/// Keys are hashed on every event: foldhash, not SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A key's row in a pane, in the cache.
struct Slot {
    pane: i64,
    row: Row,
    /// Changed since it was last written.
    dirty: bool,
}

/// A key's rows, by pane (few: a window's worth), sorted.
struct KeyRows {
    kg: u16,
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Pane {
    /// Rows of it in the cache.
    rows: usize,
    /// The backend holds rows of this pane the cache may not.
    spilled: bool,
    /// The backend holds rows of this pane (a restore finds them there).
    stored: bool,
}

pub struct PaneStore {
    empty: Row,
    keys: Map<Vec<u8>, KeyRows>,
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
        // A row grows as it takes values (sketches up to their bound): count
        // it at four times its empty size, and at least 64 bytes.
        let row_cost = (empty.encode().len() * 4).max(64) + 96;
        PaneStore { empty, keys: Map::default(), panes: BTreeMap::new(), bytes: 0, limit: limit_bytes, row_cost, table: None, meta: None, spilled_rows: 0 }
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
        if !self.keys.contains_key(key) {
            self.keys.insert(key.to_vec(), KeyRows { kg, slots: Vec::with_capacity(4) });
        }
        let rows = self.keys.get_mut(key).expect("inserted above");
        // Events mostly come in time order: the pane is usually the last.
        let at = match rows.slots.iter().rposition(|s| s.pane <= pane) {
            Some(i) if rows.slots[i].pane == pane => i,
            Some(i) => i + 1,
            None => 0,
        };
        if rows.slots.get(at).is_none_or(|s| s.pane != pane) {
            rows.slots.insert(at, Slot { pane, row: self.empty.clone(), dirty: true });
            self.panes.entry(pane).or_default().rows += 1;
            self.bytes += self.row_cost + key.len();
        }
        let slot = &mut rows.slots[at];
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
        let mut evict = Vec::new();
        let mut left = self.bytes;
        for (start, p) in self.panes.iter().filter(|(_, p)| p.rows > 0) {
            if left <= self.limit / 4 * 3 {
                break;
            }
            evict.push(*start);
            left = left.saturating_sub(p.rows * self.row_cost);
        }
        self.spilled_rows += self.write(state, |pane| evict.binary_search(&pane).is_ok())? as u64;
        for pane in &evict {
            if let Some(p) = self.panes.get_mut(pane) {
                (p.spilled, p.stored) = (true, true);
            }
        }
        self.save_spilled(state)?;
        state.commit()
    }

    /// Writes every changed row (before a checkpoint): resident rows stay
    /// cached, clean. The caller commits.
    pub fn flush(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        self.write(state, |_| false)?;
        self.save_spilled(state)
    }

    /// Writes the changed rows; those of a pane `evict` names leave memory,
    /// and so do those of spilled panes (what arrived since the spill,
    /// merged into the stored row). Returns the rows that left.
    fn write(&mut self, state: &mut dyn StateBackend, evict: impl Fn(i64) -> bool) -> Result<usize, StateError> {
        let table = self.table.expect("open before use");
        let n = self.empty.0.len();
        let mut dropped = 0usize;
        let mut written: Vec<i64> = Vec::new();
        for (key, rows) in self.keys.iter_mut() {
            let kg = rows.kg;
            let mut failed = None;
            rows.slots.retain_mut(|slot| {
                if failed.is_some() {
                    return true;
                }
                let spilled = self.panes.get(&slot.pane).is_some_and(|p| p.spilled);
                let leave = spilled || evict(slot.pane);
                if slot.dirty {
                    let k = row_key(slot.pane, kg, key);
                    let stored = if spilled { state.get(table, &k) } else { Ok(None) };
                    let merged = stored.and_then(|stored| match stored {
                        Some(bytes) => {
                            let mut row = Row::decode(&bytes, n).map_err(corrupt)?;
                            row.merge(&slot.row).map_err(corrupt)?;
                            Ok(row)
                        }
                        None => Ok(std::mem::replace(&mut slot.row, Row(Vec::new()))),
                    });
                    match merged.and_then(|row| state.put(table, &k, &row.encode()).map(|()| row)) {
                        Ok(row) => {
                            slot.row = row;
                            slot.dirty = false;
                            written.push(slot.pane);
                        }
                        Err(e) => {
                            failed = Some(e);
                            return true;
                        }
                    }
                }
                if leave {
                    dropped += 1;
                    if let Some(p) = self.panes.get_mut(&slot.pane) {
                        p.rows = p.rows.saturating_sub(1);
                    }
                }
                !leave
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        self.keys.retain(|_, rows| !rows.slots.is_empty());
        for pane in written {
            if let Some(p) = self.panes.get_mut(&pane) {
                p.stored = true;
            }
        }
        self.bytes = self.bytes.saturating_sub(dropped * self.row_cost);
        Ok(dropped)
    }

    fn save_spilled(&mut self, state: &mut dyn StateBackend) -> Result<(), StateError> {
        let list: Vec<u8> = self.panes.iter().filter(|(_, p)| p.spilled || p.stored).flat_map(|(s, _)| s.to_be_bytes()).collect();
        state.put(self.meta.expect("open before use"), SPILLED, &list)
    }

    /// The first pane at or after `from` that holds rows.
    pub fn next_pane(&self, from: i64) -> Option<i64> {
        self.panes.range(from..).find(|(_, p)| p.spilled || p.rows > 0).map(|(s, _)| *s)
    }

    /// Calls `visit` once per key with a row in the panes `[from, upto)`,
    /// with its key group and the merge of those rows.
    pub fn each_merged(&self, state: &dyn StateBackend, from: i64, upto: i64, visit: &mut dyn FnMut(&[u8], u16, &Row)) -> Result<(), StateError> {
        let spilled: Vec<i64> = self.panes.range(from..upto).filter(|(_, p)| p.spilled).map(|(s, _)| *s).collect();
        let merge_cached = |rows: &KeyRows, into: &mut Option<Row>| -> Result<(), StateError> {
            for slot in rows.slots.iter().filter(|s| s.pane >= from && s.pane < upto) {
                match into {
                    Some(m) => m.merge(&slot.row).map_err(corrupt)?,
                    None => *into = Some(slot.row.clone()),
                }
            }
            Ok(())
        };
        if spilled.is_empty() {
            // Everything is in memory: one walk over the keys.
            for (key, rows) in &self.keys {
                let mut merged = None;
                merge_cached(rows, &mut merged)?;
                if let Some(row) = merged {
                    visit(key, rows.kg, &row);
                }
            }
            return Ok(());
        }
        // Some panes are on disk: gather by key.
        let table = self.table.expect("open before use");
        let n = self.empty.0.len();
        let mut all: Map<Vec<u8>, (u16, Option<Row>)> = Map::default();
        for pane in spilled {
            let mut failed = None;
            state.scan(table, &t8(pane), Some(&t8(pane.saturating_add(1))), &mut |k, v| {
                let merged = split_row_key(k).ok_or_else(|| corrupt("a pane row with a short key".into())).and_then(|(_, kg, key)| {
                    let row = Row::decode(v, n).map_err(corrupt)?;
                    match all.get_mut(key) {
                        Some((_, Some(m))) => m.merge(&row).map_err(corrupt),
                        _ => {
                            all.insert(key.to_vec(), (kg, Some(row)));
                            Ok(())
                        }
                    }
                });
                failed = merged.err();
                failed.is_none()
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        for (key, rows) in &self.keys {
            match all.get_mut(key.as_slice()) {
                Some((_, merged)) => merge_cached(rows, merged)?,
                None => {
                    let mut merged = None;
                    merge_cached(rows, &mut merged)?;
                    if merged.is_some() {
                        all.insert(key.clone(), (rows.kg, merged));
                    }
                }
            }
        }
        for (key, (kg, row)) in &all {
            if let Some(row) = row {
                visit(key, *kg, row);
            }
        }
        Ok(())
    }

    /// `key`'s row merged over `panes` (`None`: no row in any).
    pub fn gather_key(&self, state: &dyn StateBackend, panes: impl Iterator<Item = i64>, kg: u16, key: &[u8]) -> Result<Option<Row>, StateError> {
        let table = self.table.expect("open before use");
        let n = self.empty.0.len();
        let cached = self.keys.get(key);
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
            if let Some(slot) = cached.and_then(|r| r.slots.iter().find(|s| s.pane == start)) {
                add(&slot.row)?;
            }
            if self.panes.get(&start).is_some_and(|p| p.spilled) {
                if let Some(stored) = state.get(table, &row_key(start, kg, key))? {
                    add(&Row::decode(&stored, n).map_err(corrupt)?)?;
                }
            }
        }
        Ok(out)
    }

    /// Drops every pane before `start`, in memory and in the backend.
    pub fn expire_before(&mut self, state: &mut dyn StateBackend, start: i64) -> Result<(), StateError> {
        if self.panes.first_key_value().is_none_or(|(p, _)| *p >= start) {
            return Ok(());
        }
        let kept = self.panes.split_off(&start);
        let dropped = std::mem::replace(&mut self.panes, kept);
        if dropped.values().any(|p| p.spilled || p.stored) {
            state.delete_range(self.table.expect("open before use"), &[], &t8(start))?;
            self.save_spilled(state)?;
        }
        let rows: usize = dropped.values().map(|p| p.rows).sum();
        if rows > 0 {
            for r in self.keys.values_mut() {
                r.slots.retain(|s| s.pane >= start);
            }
            self.keys.retain(|_, r| !r.slots.is_empty());
        }
        self.bytes = self.bytes.saturating_sub(rows * self.row_cost);
        Ok(())
    }

    /// Panes known (resident or spilled).
    #[cfg(test)]
    pub fn panes(&self) -> usize {
        self.panes.len()
    }
}
