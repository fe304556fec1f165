//! The step's state keys and its grouping key's bytes.
//!
//! `{step}/panes`: `t8(pane start) ++ kg2 ++ key` → the key's [`Row`] in that
//! pane; `{step}/updates`: `t8(window end) ++ kg2 ++ key` → how often a fired
//! window was updated by late events (and whether an update is due);
//! `{step}/meta`: `layout`, `seq`, `fired` (per key group, when a restore at
//! another parallelism gathered several workers' progress) and `progress`.
//! `t8` is an i64 with its sign bit flipped, big-endian, so negative times
//! sort first and one `delete_range` drops every pane before a time.
//!
//! [`Row`]: super::aggregates::Row

/// The version of this layout, kept in the meta table: state written with
/// another is refused, not misread.
pub const STATE_LAYOUT: &[u8] = b"1";

/// Bytes of a pane (or window end) and key group before the key.
pub const PREFIX_LEN: usize = 10;

/// `t` as 8 bytes that sort as the numbers do.
pub fn t8(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time a `t8` holds.
pub fn time_of(b: &[u8]) -> Option<i64> {
    let b: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// `t8(time) ++ kg2 ++ key`.
pub fn row_key(time: i64, kg: u16, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX_LEN + key.len());
    k.extend_from_slice(&t8(time));
    k.extend_from_slice(&kg.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// (time, key group, key) of a row key.
pub fn split_row_key(k: &[u8]) -> Option<(i64, u16, &[u8])> {
    let time = time_of(k)?;
    let kg = u16::from_be_bytes(k.get(8..10)?.try_into().ok()?);
    Some((time, kg, &k[PREFIX_LEN..]))
}

/// The grouping key: each part's canonical JSON text, length-prefixed, so
/// `("a", "bc")` and `("ab", "c")` differ and the output can give each part
/// back with its type.
#[derive(Default)]
pub struct KeyBuilder(Vec<u8>);

impl KeyBuilder {
    pub fn push(&mut self, json_text: &[u8]) {
        self.0.extend_from_slice(&(json_text.len() as u32).to_be_bytes());
        self.0.extend_from_slice(json_text);
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for KeyBuilder {
    fn from(key: Vec<u8>) -> Self {
        KeyBuilder(key)
    }
}

/// A key without its last part, and that part.
pub fn split_last_part(key: &[u8]) -> (&[u8], &[u8]) {
    let mut at = 0;
    let mut rest = key;
    while let Some((len, r)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_be_bytes(*len) as usize).min(r.len());
        if len == r.len() {
            return (&key[..at], r);
        }
        at += 4 + len;
        rest = &r[len..];
    }
    (key, &[])
}

/// The parts of a grouping key, as JSON texts.
pub fn key_parts(key: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = key;
    while let Some((len, r)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_be_bytes(*len) as usize).min(r.len());
        parts.push(&r[..len]);
        rest = &r[len..];
    }
    parts
}

/// A key part's canonical JSON text from the raw text of a field: a string
/// without escapes as written, other strings, numbers and booleans
/// re-serialized (`1.50` and `1.5` are one key); `null`, objects and arrays
/// are not keys.
pub fn canonical_part(raw: &str, what: impl Fn() -> String) -> Result<Vec<u8>, String> {
    let raw = raw.trim();
    match raw.as_bytes().first() {
        Some(b'"') if !raw.contains('\\') => Ok(raw.as_bytes().to_vec()),
        Some(b'n') => Err(format!("no grouping key: {} is null", what())),
        Some(b'{' | b'[') => Err(format!("the grouping key {} is not a string, number or boolean", what())),
        _ => serde_json::from_str::<serde_json::Value>(raw).map(|v| v.to_string().into_bytes()).map_err(|e| format!("{}: {e}", what())),
    }
}

/// A key part given as bytes (the event key, a UDF's result): a JSON string.
pub fn bytes_part(b: &[u8]) -> Vec<u8> {
    serde_json::Value::String(String::from_utf8_lossy(b).into_owned()).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sort_as_bytes_and_keys_split_back() {
        let times = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in times.windows(2) {
            assert!(t8(w[0]) < t8(w[1]));
        }
        assert!(times.iter().all(|t| time_of(&t8(*t)) == Some(*t)));
        let (mut a, mut b) = (KeyBuilder::default(), KeyBuilder::default());
        a.push(b"\"a\"");
        a.push(b"\"bc\"");
        b.push(b"\"ab\"");
        b.push(b"\"c\"");
        let (a, b) = (a.finish(), b.finish());
        assert_ne!(a, b);
        assert_eq!(key_parts(&a), vec![&b"\"a\""[..], b"\"bc\""]);
        assert_eq!(split_last_part(&a), (&a[..7], &b"\"bc\""[..]));
        let k = row_key(-3, 513, &a);
        assert_eq!(split_row_key(&k), Some((-3, 513, &a[..])));
        assert_eq!(canonical_part("1.50", String::new).unwrap(), b"1.5");
        assert!(canonical_part("null", || "x".into()).unwrap_err().contains("null"));
        assert_eq!(bytes_part(b"q\""), b"\"q\\\"\"");
    }
}
