//! `on-match`: one output per (main, match) pair as soon as both have arrived,
//! and in `left` mode the main events that never matched when their window
//! closes. Main events wait in the `main` table (fire time ++ seq), indexed by
//! key in `main-by-key`; `matched` marks those that paired.

use super::layout::{self, bucket_of, decode, main_end, main_key, other_key, other_range, Stored};
use super::{JoinMode, WindowJoin, FIRE_CHUNK};
use crate::event::Batch;
use crate::state::StateError;
use crate::step::StepContext;

impl WindowJoin {
    /// Stores an arriving main event and pairs it with the waiting events of
    /// the other inputs in its window.
    pub(super) fn arrive_main_on_match(&mut self, stored: Stored, done: i64, seq: u64, bytes: &[u8], ctx: &mut StepContext<'_>) -> Result<(), StateError> {
        let tables = self.tables();
        let (main_table, main_by_key, matched) = (tables.main, tables.main_by_key, tables.matched);
        let t = stored.event.timestamp;
        let key = main_key(done, seq);
        ctx.state.put(main_table, &key, bytes)?;
        self.earliest_fire = Some(self.earliest_fire.map_or(done, |f| f.min(done)));
        let index = other_key(bucket_of(t, self.bucket), &stored.join_key, t, seq);
        ctx.state.put(main_by_key, &index, &key)?;
        let matches = self.matches_of(&*ctx.state, &stored)?;
        let groups = &matches.groups;
        if groups.iter().any(|g| !g.is_empty()) {
            let main = self.pending.add_main(stored.clone(), matches.truncated());
            for (k, group) in groups.iter().enumerate() {
                for m in group {
                    self.pending.cases.push((main, single(groups.len(), k, m)));
                }
            }
            ctx.state.put(matched, &key, b"")?;
        }
        Ok(())
    }

    /// Pairs an arriving event of other input `port` (already stored) with the
    /// waiting main events whose window it falls in.
    pub(super) fn arrive_other_on_match(&mut self, port: usize, stored: &Stored, ctx: &mut StepContext<'_>) -> Result<(), StateError> {
        let tables = self.tables();
        let (main_table, main_by_key, matched) = (tables.main, tables.main_by_key, tables.matched);
        let t = stored.event.timestamp;
        // Main times in [t - end, t - start].
        let (lo, hi) = (t.saturating_sub(self.end), t.saturating_sub(self.start));
        let ranges: Vec<_> = (bucket_of(lo, self.bucket)..=bucket_of(hi, self.bucket)).map(|b| other_range(b, &stored.join_key, lo, hi)).collect();
        let mut mains = Vec::new();
        ctx.state.scan_ranges(main_by_key, &ranges, &mut |_, _, main_key| mains.push(main_key.to_vec()))?;
        let n = self.tables().others.len();
        // Pairs with the earliest `max_matches` of them; the rest are
        // counted (and marked matched: they did match).
        let (first, mut left_out) = (self.pending.mains.len(), 0u64);
        for key in mains {
            let Some(bytes) = ctx.state.get(main_table, &key)? else { continue };
            // (The index is by key hash: skip another key's main event.)
            if layout::join_key_of(&bytes) != Some(stored.join_key.as_slice()) {
                continue;
            }
            if self.pending.mains.len() - first >= self.max_matches {
                left_out += 1;
            } else if let Some(main) = decode(&bytes) {
                let main = self.pending.add_main(main, Vec::new());
                self.pending.cases.push((main, single(n, port - 1, stored)));
            }
            ctx.state.put(matched, &key, b"")?;
        }
        if left_out > 0 {
            self.count_truncated(left_out);
            for t in &mut self.pending.truncated[first..] {
                *t = vec![(0, left_out)];
            }
        }
        Ok(())
    }

    /// Closes the windows of up to [`FIRE_CHUNK`] main events due at
    /// `watermark`: their index entries go, and in `left` mode those that
    /// never matched are emitted. Returns the outputs and whether more may wait.
    pub(super) fn fire_on_match(&mut self, watermark: i64, ctx: &mut StepContext<'_>) -> Result<(Batch, bool), StateError> {
        let tables = self.tables();
        let (main_table, main_by_key, matched) = (tables.main, tables.main_by_key, tables.matched);
        // (main key, the event; `None` if its bytes do not decode).
        let mut due: Vec<([u8; 16], Option<Stored>)> = Vec::with_capacity(FIRE_CHUNK);
        let mut names = layout::SourceNames::default();
        // Start past what earlier firings deleted: a scan from the table's
        // start would step over all their tombstones.
        ctx.state.scan(main_table, &self.fired_below, Some(&main_end(watermark)), &mut |k, v| {
            let mut key = [0u8; 16];
            if k.len() == 16 {
                key.copy_from_slice(k);
            }
            due.push((key, layout::decode_in(v, &mut names)));
            due.len() < FIRE_CHUNK
        })?;
        let mut out = Batch::with_capacity(due.len());
        let more = due.len() == FIRE_CHUNK;
        self.count_fired(due.iter().filter(|(_, main)| main.is_some()).count());
        for (key, main) in &due {
            let Some(main) = main else { continue };
            let was_matched = ctx.state.get(matched, key)?.is_some();
            let t = main.event.timestamp;
            let seq = u64::from_be_bytes(key[8..16].try_into().expect("main keys are 16 bytes"));
            ctx.state.delete(main_by_key, &other_key(bucket_of(t, self.bucket), &main.join_key, t, seq))?;
            ctx.state.delete(matched, key)?;
            if self.mode == JoinMode::Left && !was_matched {
                let empty = vec![Vec::new(); self.tables().others.len()];
                let main = self.pending.add_main(main.clone(), Vec::new());
                self.pending.cases.push((main, empty));
            }
        }
        self.flush(&mut out, ctx);
        // Point deletes: range tombstones would pile up in RocksDB's
        // memtable, and every new iterator re-sorts them all.
        for (key, _) in &due {
            ctx.state.delete(main_table, key)?;
        }
        if let Some((last, _)) = due.last() {
            self.fired_below = last.to_vec();
            self.fired_below.push(0);
        }
        if !more {
            self.expire_others(watermark, ctx.state)?;
        }
        ctx.state.commit()?;
        if !more {
            // Every main event firing at or before the watermark is gone,
            // and none can arrive (it would be late).
            self.fired_below = self.fired_below.clone().max(main_end(watermark));
            self.earliest_fire = None;
            let from = self.fired_below.clone();
            ctx.state.scan(main_table, &from, None, &mut |k, _| {
                self.earliest_fire = Some(layout::time_from(k));
                false
            })?;
        }
        Ok((out, more))
    }
}

/// Match groups with one event, `m`, in group `k` of `n`.
pub(super) fn single(n: usize, k: usize, m: &Stored) -> Vec<Vec<Stored>> {
    let mut groups = vec![Vec::new(); n];
    groups[k].push(m.clone());
    groups
}

