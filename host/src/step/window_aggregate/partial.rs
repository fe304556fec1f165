//! What the partial phase of a split (`skew`) aggregation sends the final
//! one: per key, bucket and window, the window's accumulators as bytes.
//! `u32 key len ++ key ++ t8(start) ++ t8(end) ++ row`. An internal edge: no
//! JSON, nothing to parse but lengths.

use super::layout::{t8, time_of};

pub struct Partial<'a> {
    pub key: &'a [u8],
    pub start: i64,
    pub end: i64,
    pub row: &'a [u8],
}

pub fn encode(key: &[u8], start: i64, end: i64, row: &super::aggregates::Row) -> Vec<u8> {
    let row = row.encode();
    let mut out = Vec::with_capacity(20 + key.len() + row.len());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&t8(start));
    out.extend_from_slice(&t8(end));
    out.extend_from_slice(&row);
    out
}

pub fn decode(b: &[u8]) -> Result<Partial<'_>, &'static str> {
    let bad = "not a partial result of a split aggregation";
    let (len, rest) = b.split_first_chunk::<4>().ok_or(bad)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len + 16 {
        return Err(bad);
    }
    let (key, rest) = rest.split_at(len);
    Ok(Partial { key, start: time_of(rest).ok_or(bad)?, end: time_of(&rest[8..]).ok_or(bad)?, row: &rest[16..] })
}
