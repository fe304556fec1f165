//! `distinct_count`, exact: the set of distinct values of a field, unioned
//! across panes. Each value is kept as the 128-bit xxh3 of its canonical
//! JSON text (`1.50` and `1.5` are one value): 16 bytes whatever its length,
//! no allocation per value; two distinct values collide with probability
//! about n²/2^129 (below 10^-20 for 10^9 values), so the count is exact in
//! practice. The only aggregate whose state grows with its input (one entry
//! per distinct value per key and pane), as the issue allows.

use std::collections::HashSet;

/// The distinct values seen, by hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distinct(HashSet<u128, foldhash::fast::FixedState>);

impl Distinct {
    /// Adds a value (its raw JSON text); null or missing is skipped.
    pub fn add(&mut self, raw: Option<&str>) {
        let Some(text) = raw.map(str::trim).filter(|t| *t != "null") else { return };
        let hash = match text.as_bytes().first() {
            // An integer or a string without escapes is its own canonical text.
            Some(b'"') if !text.contains('\\') => xxhash_rust::xxh3::xxh3_128(text.as_bytes()),
            Some(b'-' | b'0'..=b'9') if text.bytes().skip(1).all(|b| b.is_ascii_digit()) && text != "-0" => xxhash_rust::xxh3::xxh3_128(text.as_bytes()),
            _ => {
                let canonical = serde_json::from_str::<serde_json::Value>(text).map_or_else(|_| text.to_string(), |v| v.to_string());
                xxhash_rust::xxh3::xxh3_128(canonical.as_bytes())
            }
        };
        self.0.insert(hash);
    }

    pub fn merge(&mut self, other: &Distinct) {
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
        } else {
            self.0.extend(other.0.iter().copied());
        }
    }

    pub fn count(&self) -> u64 {
        self.0.len() as u64
    }

    /// `u32 n` then each value's 16-byte hash (big-endian).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for v in &self.0 {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<(Distinct, &[u8]), &'static str> {
        let (n, rest) = bytes.split_first_chunk::<4>().ok_or("a distinct set cut short")?;
        let n = u32::from_be_bytes(*n) as usize;
        let len = n.checked_mul(16).filter(|l| *l <= rest.len()).ok_or("a distinct set cut short")?;
        let mut set = HashSet::with_capacity_and_hasher(n, foldhash::fast::FixedState::default());
        set.extend(rest[..len].chunks_exact(16).map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes"))));
        Ok((Distinct(set), &rest[len..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_counted_once_across_panes_and_bytes() {
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        for v in ["1", "1.50", "\"x\"", "null", "2"] {
            a.add(Some(v));
        }
        for v in ["1.5", "\"x\"", "\"y\"", "true"] {
            b.add(Some(v));
        }
        b.add(None);
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        bytes.push(7);
        let (b2, rest) = Distinct::decode(&bytes).unwrap();
        assert_eq!(rest, &[7]);
        a.merge(&b2);
        // 1, 1.5, 2, "x", "y", true
        assert_eq!(a.count(), 6);
        assert!(Distinct::decode(&bytes[..3]).is_err());
    }
}
