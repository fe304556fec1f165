//! The firing logic of tumbling and sliding windows over pre-aggregated
//! panes, in memory: events fold into their key's pane row; a watermark
//! fires every window it completes, in order of end, merging the window's
//! panes per key; panes no open window needs are dropped.
//!
//! This is the semantics the step keeps in its state backend (the operator,
//! to come, keeps these panes as rows and this map as its cache). Allowed
//! lateness with updates is not here yet: lateness 0, late events refused.

use std::collections::{BTreeMap, HashMap};

use super::aggregates::{AggregateConfig, Row};
use super::window::Sliding;

/// One fired window of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    pub key: Vec<u8>,
    pub window_start: i64,
    pub window_end: i64,
    /// The aggregates' outputs, in the step's order.
    pub values: Vec<serde_json::Value>,
}

/// What became of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Added {
    Folded,
    /// Every window it falls in has fired: the dead letters' reason.
    Late(String),
    /// A value the aggregate refuses: the dead letters' reason.
    Refused(String),
}

pub struct Panes {
    shape: Sliding,
    aggs: Vec<AggregateConfig>,
    panes: BTreeMap<i64, HashMap<Vec<u8>, Row>>,
    /// The end of the last window fired (every window ending at or before
    /// it has fired).
    fired_to: Option<i64>,
    seq: u64,
}

impl Panes {
    pub fn new(shape: Sliding, aggs: Vec<AggregateConfig>) -> Result<Panes, String> {
        for a in &aggs {
            a.check()?;
        }
        Ok(Panes { shape, aggs, panes: BTreeMap::new(), fired_to: None, seq: 0 })
    }

    /// Folds an event at `t` with key `key` into its pane; `values[i]` is the
    /// raw JSON of aggregate i's field (`None`: missing). `watermark` is the
    /// step's input watermark on arrival.
    pub fn add(&mut self, key: &[u8], t: i64, values: &[Option<&str>], watermark: i64) -> Added {
        if self.shape.is_late(t, watermark, 0) || self.fired_to.is_some_and(|f| self.shape.window_ends(t).last().is_some_and(|e| e <= f)) {
            return Added::Late(format!("every window of event time {t} closed (watermark {watermark})"));
        }
        let pane = self.shape.pane_of(t);
        let rows = self.panes.entry(pane).or_default();
        let row = match rows.get_mut(key) {
            Some(r) => r,
            None => rows.entry(key.to_vec()).or_insert(Row::new(&self.aggs).expect("settings checked at new")),
        };
        // Fold into a copy first: a refused value leaves the row as it was.
        let mut next = row.clone();
        for (acc, raw) in next.0.iter_mut().zip(values) {
            if let Err(why) = acc.add(*raw, t, self.seq) {
                return Added::Refused(why);
            }
        }
        *row = next;
        self.seq += 1;
        Added::Folded
    }

    /// Fires every window the watermark completes (end − 1 ≤ watermark), in
    /// order of end, one output per key with events in the window; drops
    /// the panes no later window needs.
    pub fn fire(&mut self, watermark: i64) -> Vec<Fired> {
        let mut out = Vec::new();
        let last = self.shape.last_complete_end(watermark);
        let Some(&first_pane) = self.panes.keys().next() else {
            self.fired_to = Some(self.fired_to.map_or(last, |f| f.max(last)));
            return out;
        };
        // The first window to fire: after the last fired, and the first
        // holding the earliest pane.
        let mut end = self.shape.window_ends(first_pane).next().unwrap_or(last + 1);
        if let Some(f) = self.fired_to {
            end = end.max(f + self.shape.slide_ms);
        }
        while end <= last {
            // Skip windows without a pane: to the first window of the next pane.
            let Some(&next) = self.panes.range(end - self.shape.size_ms..).next().map(|(p, _)| p) else { break };
            if next >= end {
                end = self.shape.window_ends(next).next().unwrap_or(end).max(end);
                continue;
            }
            let start = end - self.shape.size_ms;
            let mut merged: HashMap<&[u8], Row> = HashMap::new();
            for (_, rows) in self.panes.range(start..end) {
                for (key, row) in rows {
                    match merged.get_mut(key.as_slice()) {
                        Some(m) => {
                            let _ = m.merge(row);
                        }
                        None => {
                            merged.insert(key, row.clone());
                        }
                    }
                }
            }
            let mut keys: Vec<(&[u8], Row)> = merged.into_iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            for (key, row) in keys {
                let values = row.0.iter().zip(&self.aggs).map(|(a, c)| a.finish(c)).collect();
                out.push(Fired { key: key.to_vec(), window_start: start, window_end: end, values });
            }
            self.fired_to = Some(end);
            end += self.shape.slide_ms;
        }
        if self.fired_to.is_none_or(|f| f < last) {
            self.fired_to = Some(last);
        }
        // Panes before the next window's start are done.
        let keep_from = self.fired_to.map_or(i64::MIN, |f| f + self.shape.slide_ms - self.shape.size_ms);
        self.panes = self.panes.split_off(&keep_from);
        out
    }

    /// Panes held (for the memory bound and the tests).
    pub fn panes_held(&self) -> usize {
        self.panes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn aggs() -> Vec<AggregateConfig> {
        serde_json::from_value(serde_json::json!([
            {"name": "n", "type": "count"},
            {"name": "sum", "type": "sum", "field": "$.v"},
            {"name": "max", "type": "max", "field": "$.v"}
        ]))
        .unwrap()
    }

    proptest! {
        /// Events out of order within a bound (and some later than that),
        /// the watermark trailing the largest time by the bound, firing after
        /// each batch and at the end: the outputs are exactly the windows a
        /// brute force computes from the events that were not late, each in
        /// the windows that had not fired when it arrived; the late ones are
        /// exactly those whose every window had closed.
        #[test]
        fn fired_windows_equal_brute_force(
            size in 1i64..30, slide_frac in 1i64..30, offset in -20i64..20,
            events in proptest::collection::vec((0u8..3, 0i64..300, -50i64..50), 0..120),
            bound in 0i64..40, batch in 1usize..10,
        ) {
            let slide = 1 + (slide_frac - 1) % size;
            let shape = Sliding::new(size, slide, offset, None).unwrap();
            let mut panes = Panes::new(shape, aggs()).unwrap();
            let (mut max_t, mut out, mut kept) = (i64::MIN, Vec::new(), Vec::new());
            for chunk in events.chunks(batch) {
                let watermark = max_t.saturating_sub(bound);
                for (k, t, v) in chunk {
                    let value = v.to_string();
                    // Windows that fired before it arrived do not see it.
                    let fired = panes.fired_to.unwrap_or(i64::MIN);
                    match panes.add(&[*k], *t, &[None, Some(&value), Some(&value)], watermark) {
                        Added::Folded => {
                            prop_assert!(shape.window_ends(*t).any(|e| e > fired && e - 1 > watermark), "kept with every window closed: {}", t);
                            kept.push((*k, *t, *v, fired));
                        }
                        Added::Late(_) => {
                            // Late exactly when every window of t had closed at that watermark.
                            prop_assert!(shape.window_ends(*t).all(|e| e - 1 <= watermark.max(panes.fired_to.unwrap_or(i64::MIN))));
                        }
                        Added::Refused(why) => prop_assert!(false, "{}", why),
                    }
                    max_t = max_t.max(*t);
                }
                out.extend(panes.fire(max_t.saturating_sub(bound)));
            }
            out.extend(panes.fire(i64::MAX - 1));
            prop_assert_eq!(panes.panes_held(), 0);
            // Brute force: every window holding a kept event, per key.
            let mut want: BTreeMap<(Vec<u8>, i64), (i64, i64, i64)> = BTreeMap::new();
            for (k, t, v, fired) in &kept {
                for e in shape.window_ends(*t).filter(|e| e > fired) {
                    let w = want.entry((vec![*k], e)).or_insert((0, 0, i64::MIN));
                    w.0 += 1;
                    w.1 += v;
                    w.2 = w.2.max(*v);
                }
            }
            let got: BTreeMap<(Vec<u8>, i64), (i64, i64, i64)> = out
                .iter()
                .map(|f| ((f.key.clone(), f.window_end), (f.values[0].as_i64().unwrap(), f.values[1].as_i64().unwrap(), f.values[2].as_i64().unwrap())))
                .collect();
            prop_assert_eq!(got.len(), out.len(), "each key and window fired once");
            prop_assert!(out.iter().all(|f| f.window_end - f.window_start == size));
            prop_assert_eq!(got, want);
        }
    }
}
