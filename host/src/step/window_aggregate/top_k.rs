//! `top_k`: the heaviest values of a field, by Apache DataSketches' frequent
//! items sketch (Misra-Gries with reverse purging, its binary format),
//! mergeable across panes and partial aggregates.
//!
//! Guarantee: with map size M (default 1024) over a total of N values, every
//! count is known within ε·N (ε = 3.5 / M) and every value seen more than
//! ε·N times is among the candidates; the output lists the k candidates with
//! the largest estimates, each with its lower and upper bound.

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};

pub const DEFAULT_MAP_SIZE: usize = 1024;

/// Why a `top_k` is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopKError {
    #[error("top_k: map_size must be a power of two from 8 to 2^26, not {0}")]
    MapSize(usize),
    #[error("top_k: the sketch's bytes are damaged: {0}")]
    Corrupt(String),
}

/// The sketch of one key and pane.
#[derive(Clone)]
pub struct TopK {
    sketch: FrequentItemsSketch<String>,
}

impl std::fmt::Debug for TopK {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopK({} candidates of {})", self.sketch.num_active_items(), self.sketch.total_weight())
    }
}

/// One listed value: its JSON text and estimated count with bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heavy {
    pub value: String,
    pub estimate: u64,
    pub lower: u64,
    pub upper: u64,
}

impl TopK {
    pub fn new(map_size: usize) -> Result<TopK, TopKError> {
        if !map_size.is_power_of_two() || !(8..=1 << 26).contains(&map_size) {
            return Err(TopKError::MapSize(map_size));
        }
        let sketch = FrequentItemsSketch::new(map_size).map_err(|_| TopKError::MapSize(map_size))?;
        Ok(TopK { sketch })
    }

    /// Adds a value by its JSON text (null and missing values are not counted).
    pub fn add(&mut self, raw: Option<&str>) {
        match raw.map(str::trim) {
            None | Some("null") => {}
            Some(text) => self.sketch.update(text.to_string()),
        }
    }

    pub fn merge(&mut self, other: &TopK) {
        self.sketch.merge(&other.sketch);
    }

    /// The most any count is off by.
    pub fn maximum_error(&self) -> u64 {
        self.sketch.maximum_error()
    }

    /// The k candidates with the largest estimates (ties by value), heaviest first.
    pub fn top(&self, k: usize) -> Vec<Heavy> {
        let mut rows: Vec<Heavy> = self
            .sketch
            .frequent_items(ErrorType::NoFalseNegatives)
            .into_iter()
            .map(|r| Heavy { value: r.item().clone(), estimate: r.estimate(), lower: r.lower_bound(), upper: r.upper_bound() })
            .collect();
        rows.sort_by(|a, b| b.estimate.cmp(&a.estimate).then_with(|| a.value.cmp(&b.value)));
        rows.truncate(k);
        rows
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let bytes = self.sketch.serialize();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }

    /// One sketch from the front of `bytes`, and the bytes after it.
    pub fn decode(bytes: &[u8]) -> Result<(TopK, &[u8]), TopKError> {
        let corrupt = |why: String| TopKError::Corrupt(why);
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| corrupt("truncated".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt("truncated".into()));
        }
        let (body, rest) = rest.split_at(len);
        let sketch = FrequentItemsSketch::<String>::deserialize(body).map_err(|e| corrupt(e.to_string()))?;
        Ok((TopK { sketch }, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A skewed stream (value i about 1/i as often, 20,000 values, 200,000
    /// events) over 4 panes, merged after their bytes with a small map: the
    /// true top 5 listed in order, every true count within the bounds given,
    /// and every value above the error bound a candidate.
    #[test]
    fn heavy_values_are_found_within_the_bound() {
        let mut panes: Vec<TopK> = (0..4).map(|_| TopK::new(64).unwrap()).collect();
        let mut truth: HashMap<String, u64> = HashMap::new();
        let mut n = 0u64;
        for i in 1..=20_000u64 {
            let times = (20_000 / i / 10).max(1) * if i <= 5 { 10 } else { 1 };
            for j in 0..times {
                let text = format!("\"v{i}\"");
                panes[((i + j) % 4) as usize].add(Some(&text));
                *truth.entry(text).or_default() += 1;
                n += 1;
            }
        }
        let mut total = TopK::new(64).unwrap();
        for p in &panes {
            let mut bytes = Vec::new();
            p.encode(&mut bytes);
            let (back, rest) = TopK::decode(&bytes).unwrap();
            assert!(rest.is_empty());
            total.merge(&back);
        }
        let err = total.maximum_error();
        assert!(err <= (3.5 / 64.0 * n as f64).ceil() as u64, "error {err} over the stated bound of {n}");
        let top = total.top(5);
        let mut want: Vec<(&String, &u64)> = truth.iter().collect();
        want.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        assert_eq!(top.iter().map(|h| h.value.as_str()).collect::<Vec<_>>(), want[..5].iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>());
        for h in total.top(usize::MAX) {
            let t = truth[&h.value];
            assert!(h.lower <= t && t <= h.upper, "{h:?}: true {t}");
        }
        let listed: Vec<String> = total.top(usize::MAX).into_iter().map(|h| h.value).collect();
        for (v, c) in &truth {
            assert!(*c <= err || listed.contains(v), "{v} seen {c} times (> {err}) is not a candidate");
        }
    }

    #[test]
    fn bad_settings_and_bytes_are_refused() {
        assert_eq!(TopK::new(100).unwrap_err(), TopKError::MapSize(100));
        assert!(TopK::decode(&[0, 0, 0, 4, 1, 2, 3, 4]).is_err());
        let mut t = TopK::new(8).unwrap();
        t.add(None);
        t.add(Some("null"));
        assert!(t.top(3).is_empty());
    }
}
