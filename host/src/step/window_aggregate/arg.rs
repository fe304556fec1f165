//! `arg_max` / `arg_min`: the records with the greatest (least) value of a
//! numeric field, ties all kept up to `max_ties` (Nexmark's hot items and
//! highest bid). Mergeable: the better value wins, equal values pool their
//! records.

/// Ties kept by default.
pub const DEFAULT_MAX_TIES: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub struct ArgBest {
    /// `true`: arg_min.
    min: bool,
    max_ties: usize,
    best: Option<(f64, Vec<Vec<u8>>)>,
    /// Records with the best value left out by `max_ties`.
    left_out: u64,
}

impl ArgBest {
    pub fn new(min: bool, max_ties: usize) -> ArgBest {
        ArgBest { min, max_ties: max_ties.max(1), best: None, left_out: 0 }
    }

    /// The field's value as a number (`None`: null or missing, skipped), or why not.
    pub fn value(raw: Option<&str>) -> Result<Option<f64>, String> {
        match raw.map(str::trim) {
            None | Some("null") => Ok(None),
            Some(t) => t.parse::<f64>().map(Some).map_err(|_| format!("arg_max and arg_min take numbers: `{}` is not one", t.chars().take(40).collect::<String>())),
        }
    }

    /// Offers `record` with value `v`.
    pub fn add(&mut self, v: f64, record: &[u8]) {
        self.offer(v, std::slice::from_ref(&record.to_vec()), 0);
    }

    fn offer(&mut self, v: f64, records: &[Vec<u8>], left_out: u64) {
        let min = self.min;
        let better = |a: f64, b: f64| if min { a < b } else { a > b };
        match &mut self.best {
            Some((b, _)) if better(*b, v) => {}
            Some((b, list)) if *b == v => {
                for r in records {
                    if list.len() < self.max_ties {
                        list.push(r.clone());
                    } else {
                        self.left_out += 1;
                    }
                }
                self.left_out += left_out;
            }
            _ => {
                let mut list: Vec<Vec<u8>> = records.iter().take(self.max_ties).cloned().collect();
                list.shrink_to_fit();
                self.left_out = left_out + (records.len() - list.len()) as u64;
                self.best = Some((v, list));
            }
        }
    }

    pub fn merge(&mut self, other: &ArgBest) {
        if let Some((v, records)) = &other.best {
            self.offer(*v, records, other.left_out);
        }
    }

    /// The best records (as JSON, in byte order of their text), or null.
    pub fn finish(&self) -> serde_json::Value {
        let Some((_, records)) = &self.best else { return serde_json::Value::Null };
        let mut sorted: Vec<&Vec<u8>> = records.iter().collect();
        sorted.sort();
        sorted.into_iter().map(|r| serde_json::from_slice::<serde_json::Value>(r).unwrap_or_else(|_| String::from_utf8_lossy(r).into_owned().into())).collect::<Vec<_>>().into()
    }

    /// `u8 min`, `u32 max_ties`, `u8 has` [`f64 value`, `u64 left_out`,
    /// `u32 n`, n × (`u32 len ++ bytes`)].
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.min));
        out.extend_from_slice(&(self.max_ties.min(u32::MAX as usize) as u32).to_be_bytes());
        match &self.best {
            None => out.push(0),
            Some((v, records)) => {
                out.push(1);
                out.extend_from_slice(&v.to_be_bytes());
                out.extend_from_slice(&self.left_out.to_be_bytes());
                out.extend_from_slice(&(records.len() as u32).to_be_bytes());
                for r in records {
                    out.extend_from_slice(&(r.len() as u32).to_be_bytes());
                    out.extend_from_slice(r);
                }
            }
        }
    }

    /// One from the front of `bytes`, and the bytes after it.
    pub fn decode<'a>(bytes: &'a [u8]) -> Result<(ArgBest, &'a [u8]), &'static str> {
        let (head, rest) = bytes.split_first_chunk::<6>().ok_or("an arg_max cut short")?;
        let mut out = ArgBest::new(head[0] == 1, u32::from_be_bytes(head[1..5].try_into().expect("4 bytes")) as usize);
        let mut rest = rest;
        if head[5] == 0 {
            return Ok((out, rest));
        }
        let mut take = |n: usize| -> Result<&'a [u8], &'static str> {
            if rest.len() < n {
                return Err("an arg_max cut short");
            }
            let (a, b) = rest.split_at(n);
            rest = b;
            Ok(a)
        };
        let v = f64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
        let left_out = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
        let n = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let mut records = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            records.push(take(len)?.to_vec());
        }
        out.best = Some((v, records));
        out.left_out = left_out;
        Ok((out, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_records_win_ties_pool_and_bytes_round_trip() {
        let (mut a, mut b) = (ArgBest::new(false, 2), ArgBest::new(false, 2));
        a.add(3.0, br#"{"id":1}"#);
        a.add(5.0, br#"{"id":2}"#);
        b.add(5.0, br#"{"id":3}"#);
        b.add(5.0, br#"{"id":4}"#);
        b.add(1.0, br#"{"id":5}"#);
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        let (b2, rest) = ArgBest::decode(&bytes).unwrap();
        assert!(rest.is_empty() && b2 == b);
        a.merge(&b2);
        assert_eq!(a.finish(), serde_json::json!([{"id": 2}, {"id": 3}]));
        assert_eq!(a.left_out, 1, "the third tie is counted, not kept");
        let mut min = ArgBest::new(true, 10);
        min.add(2.0, b"{}");
        min.add(-1.0, br#"{"m":1}"#);
        assert_eq!(min.finish(), serde_json::json!([{"m": 1}]));
        assert!(ArgBest::value(Some("\"x\"")).is_err() && ArgBest::value(Some("null")) == Ok(None));
        assert!(ArgBest::decode(&bytes[..9]).is_err());
    }
}
