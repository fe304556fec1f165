//! `percentile`: a DDSketch (DataDog's, its Java binary format) of a numeric
//! field, mergeable across panes and partial aggregates.
//!
//! Error: each quantile returned is within a relative `alpha` (default 1 %)
//! of the field's value at that rank (rank ⌊q·(n − 1)⌋ of the sorted
//! values), as long as the sketch has not collapsed bins: `max_bins` (2048)
//! covers values from 10⁻⁹ to 10⁹ at 1 % without collapsing.

use sketches_ddsketch::{Config, DDSketch};

pub const DEFAULT_ALPHA: f64 = 0.01;
const MAX_BINS: u32 = 2048;
const MIN_VALUE: f64 = 1e-9;

/// Why a `percentile` is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PercentileError {
    #[error("percentile: alpha must be in (0, 0.5), not {0}")]
    Alpha(f64),
    #[error("percentile: q must be in [0, 1], not {0}")]
    Quantile(f64),
    #[error("percentile: the sketch's bytes are damaged: {0}")]
    Corrupt(String),
}

/// The sketch of one key and pane.
#[derive(Clone)]
pub struct Percentile {
    sketch: DDSketch,
}

impl std::fmt::Debug for Percentile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Percentile({} values)", self.sketch.count())
    }
}

impl Percentile {
    pub fn new(alpha: f64) -> Result<Percentile, PercentileError> {
        if !(alpha > 0.0 && alpha < 0.5) {
            return Err(PercentileError::Alpha(alpha));
        }
        Ok(Percentile { sketch: DDSketch::new(Config::new(alpha, MAX_BINS, MIN_VALUE)) })
    }

    /// Adds a numeric value (the caller parsed the field; null and missing
    /// values are not added).
    pub fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.sketch.add(v);
        }
    }

    pub fn merge(&mut self, other: &Percentile) -> Result<(), PercentileError> {
        self.sketch.merge(&other.sketch).map_err(|e| PercentileError::Corrupt(e.to_string()))
    }

    pub fn count(&self) -> usize {
        self.sketch.count()
    }

    /// The value at quantile `q`; None without values.
    pub fn quantile(&self, q: f64) -> Result<Option<f64>, PercentileError> {
        self.sketch.quantile(q).map_err(|_| PercentileError::Quantile(q))
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let bytes = self.sketch.to_java_bytes();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }

    /// One sketch from the front of `bytes`, and the bytes after it.
    pub fn decode(bytes: &[u8]) -> Result<(Percentile, &[u8]), PercentileError> {
        let corrupt = |why: String| PercentileError::Corrupt(why);
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| corrupt("truncated".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt("truncated".into()));
        }
        let (body, rest) = rest.split_at(len);
        let sketch = DDSketch::from_java_bytes(body).map_err(|e| corrupt(format!("{e:?}")))?;
        Ok((Percentile { sketch }, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Values (negative, zero, spread over orders of magnitude) split over
        /// panes, each through its bytes, merged: every quantile within alpha
        /// of the exact value at its rank.
        #[test]
        fn merged_panes_answer_within_alpha(
            values in proptest::collection::vec(prop_oneof![
                4 => 0.001f64..1e6,
                1 => -1e4f64..-0.001,
                1 => Just(0.0),
            ], 1..300),
            panes in 1usize..5,
        ) {
            let mut parts: Vec<Percentile> = (0..panes).map(|_| Percentile::new(DEFAULT_ALPHA).unwrap()).collect();
            for (i, v) in values.iter().enumerate() {
                parts[i % panes].add(*v);
            }
            let mut total = Percentile::new(DEFAULT_ALPHA).unwrap();
            for p in &parts {
                let mut bytes = Vec::new();
                p.encode(&mut bytes);
                let (back, rest) = Percentile::decode(&bytes).unwrap();
                prop_assert!(rest.is_empty());
                total.merge(&back).unwrap();
            }
            prop_assert_eq!(total.count(), values.len());
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
                let exact = sorted[(q * (sorted.len() as f64 - 1.0)) as usize];
                let got = total.quantile(q).unwrap().unwrap();
                prop_assert!((got - exact).abs() <= DEFAULT_ALPHA * exact.abs() + 1e-12, "q {}: {} vs {}", q, got, exact);
            }
        }
    }

    #[test]
    fn bad_settings_and_bytes_are_refused() {
        assert_eq!(Percentile::new(0.0).unwrap_err(), PercentileError::Alpha(0.0));
        let p = Percentile::new(DEFAULT_ALPHA).unwrap();
        assert_eq!(p.quantile(0.5).unwrap(), None);
        assert!(p.quantile(1.5).is_err());
        assert!(Percentile::decode(&[0, 0, 0, 3, 9, 9, 9]).is_err());
        assert!(Percentile::decode(&[0, 0]).is_err());
    }
}
