//! `distinct_count`, exact: the set of distinct values of a field (each as
//! its canonical JSON text, so `1.50` and `1.5` are one value), unioned
//! across panes. The only aggregate whose state grows with its input (one
//! entry per distinct value per key and pane), as the issue allows.

use std::collections::BTreeSet;

/// The distinct values seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distinct(BTreeSet<Vec<u8>>);

impl Distinct {
    /// Adds a value (its raw JSON text); null or missing is skipped.
    pub fn add(&mut self, raw: Option<&str>) {
        let Some(text) = raw.map(str::trim).filter(|t| *t != "null") else { return };
        let canonical = match text.as_bytes().first() {
            // A number's canonical text; a string as written unless escaped.
            Some(b'-' | b'0'..=b'9') => serde_json::from_str::<serde_json::Value>(text).map_or_else(|_| text.to_string(), |v| v.to_string()),
            Some(b'"') if !text.contains('\\') => text.to_string(),
            _ => serde_json::from_str::<serde_json::Value>(text).map_or_else(|_| text.to_string(), |v| v.to_string()),
        };
        self.0.insert(canonical.into_bytes());
    }

    pub fn merge(&mut self, other: &Distinct) {
        if self.0.is_empty() {
            self.0 = other.0.clone();
        } else {
            self.0.extend(other.0.iter().cloned());
        }
    }

    pub fn count(&self) -> u64 {
        self.0.len() as u64
    }

    /// `u32 n` then each value as `u32 len ++ bytes` (big-endian).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for v in &self.0 {
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<(Distinct, &[u8]), &'static str> {
        fn u32_at(b: &[u8]) -> Result<(usize, &[u8]), &'static str> {
            let (n, rest) = b.split_first_chunk::<4>().ok_or("a distinct set cut short")?;
            Ok((u32::from_be_bytes(*n) as usize, rest))
        }
        let (n, mut rest) = u32_at(bytes)?;
        let mut set = BTreeSet::new();
        for _ in 0..n {
            let (len, r) = u32_at(rest)?;
            if r.len() < len {
                return Err("a distinct value cut short");
            }
            set.insert(r[..len].to_vec());
            rest = &r[len..];
        }
        Ok((Distinct(set), rest))
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
