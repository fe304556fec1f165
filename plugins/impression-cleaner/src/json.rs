//! A small single-pass JSON scanner and writer, specialised for flat log
//! records: strings are borrowed from the input unless they hold escapes,
//! nested values are validated and kept as raw slices, and nothing is
//! allocated on the common path. It is what makes the cleaner fast (several
//! times faster than deserialising through serde here), which matters most
//! inside the WebAssembly sandbox.
//!
//! It accepts exactly RFC 8259 JSON (UTF-8), with a nesting limit.

use std::borrow::Cow;
use std::fmt;

/// Nested values deeper than this are refused (the scanner recurses).
const MAX_DEPTH: usize = 64;

/// Where and why the input is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub what: Cow<'static, str>,
    /// Byte offset in the input.
    pub at: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte of `b[from..]` that ends a plain run of
/// string text (a quote, a backslash or a control character), or `b.len()`.
/// Eight bytes at a time (SWAR): the lowest flagged byte of each word is
/// exact, which is the only one used.
#[inline]
fn find_special(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i + 8 <= b.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i..i + 8]);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let mask = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGHS;
        if mask != 0 {
            return i + (mask.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

/// A scalar or raw value read from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// An integer literal that fits i64.
    Int(i64),
    /// Any other number.
    Float(f64),
    Str(Cow<'a, str>),
    /// An object or array, validated, as it appears in the input.
    Raw(&'a str),
}

/// A cursor over one JSON text.
pub struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// Checks UTF-8 once for the whole input; every slice the scanner cuts
    /// ends at an ASCII delimiter, so it is valid UTF-8 too.
    pub fn new(input: &'a [u8]) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(input)
            .map_err(|e| JsonError { what: "invalid UTF-8".into(), at: e.valid_up_to() })?;
        Ok(Scanner { text, bytes: input, pos: 0 })
    }

    /// The byte offset of the cursor.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next value as it appears in the input (validated).
    pub fn raw_value(&mut self) -> Result<&'a str, JsonError> {
        self.skip_ws();
        let start = self.pos;
        self.skip_value(0)?;
        Ok(&self.text[start..self.pos])
    }

    /// Skips the next value (validated).
    pub fn skip(&mut self) -> Result<(), JsonError> {
        self.skip_value(0)
    }

    pub fn error(&self, what: impl Into<Cow<'static, str>>) -> JsonError {
        JsonError { what: what.into(), at: self.pos }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected '{}'", c as char)))
        }
    }

    /// Consumes the end of the input (only whitespace may remain).
    pub fn finish(mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// Starts an object: consumes `{`.
    pub fn begin_object(&mut self) -> Result<(), JsonError> {
        self.expect(b'{').map_err(|_| self.error("expected a JSON object"))
    }

    /// Moves to the next member of the current object: true when the cursor
    /// is then on the member's key (its opening quote), false at the end of
    /// the object. `first` tells whether no member was read yet (otherwise a
    /// comma is required).
    pub fn next_member(&mut self, first: bool) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(false);
            }
            Some(b',') if !first => self.pos += 1,
            _ if first => {}
            _ => return Err(self.error("expected ',' or '}'")),
        }
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string key"));
        }
        Ok(true)
    }

    /// The input after the current key's opening quote, for matching known
    /// keys without decoding them.
    pub fn key_bytes(&self) -> &'a [u8] {
        self.bytes.get(self.pos + 1..).unwrap_or_default()
    }

    /// Consumes a key whose text after the opening quote (closing quote
    /// included) is `len` bytes long, as matched in [`Self::key_bytes`], and
    /// the colon after it.
    pub fn consume_key(&mut self, len: usize) -> Result<(), JsonError> {
        self.pos += 1 + len;
        self.expect(b':')
    }

    /// Reads the current key (decoding escapes) and the colon after it.
    pub fn key(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let key = self.string()?;
        self.expect(b':')?;
        Ok(key)
    }

    /// The next key of the current object, or None at its end.
    #[cfg(test)]
    pub fn next_key(&mut self, first: bool) -> Result<Option<Cow<'a, str>>, JsonError> {
        if self.next_member(first)? { self.key().map(Some) } else { Ok(None) }
    }

    /// Reads the next value: scalars decoded, objects and arrays raw.
    pub fn value(&mut self) -> Result<Value<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'{' | b'[') => {
                let start = self.pos;
                self.skip_value(0)?;
                Ok(Value::Raw(&self.text[start..self.pos]))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &'static str, v: Value<'a>) -> Result<Value<'a>, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn number(&mut self) -> Result<Value<'a>, JsonError> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        // The magnitude, accumulated while scanning (None once past u64).
        let mut magnitude = Some(0u64);
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    // A compare instead of `checked_mul`, which is a 128-bit
                    // multiplication call in WebAssembly.
                    magnitude = match magnitude {
                        Some(m) if m < u64::MAX / 10 => Some(m * 10 + u64::from(d - b'0')),
                        _ => None,
                    };
                    i += 1;
                }
            }
            _ => return Err(JsonError { what: "invalid number".into(), at: i }),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err(JsonError { what: "invalid number".into(), at: i });
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            integer = false;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err(JsonError { what: "invalid number".into(), at: i });
            }
        }
        self.pos = i;
        if let (true, Some(m)) = (integer, magnitude) {
            let v = if negative { 0i64.checked_sub_unsigned(m) } else { i64::try_from(m).ok() };
            if let Some(v) = v {
                return Ok(Value::Int(v));
            }
        }
        let text = &self.text[start..i];
        // Valid JSON numbers always parse as f64 (possibly to infinity).
        text.parse::<f64>().map(Value::Float).map_err(|_| JsonError { what: "invalid number".into(), at: start })
    }

    /// Reads a string at the cursor (which is on its opening quote).
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos + 1;
        let b = self.bytes;
        let mut i = find_special(b, start);
        match b.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                return Ok(Cow::Borrowed(&self.text[start..i]));
            }
            Some(b'\\') => {}
            Some(_) => return Err(JsonError { what: "control character in string".into(), at: i }),
            None => return Err(JsonError { what: "unterminated string".into(), at: i }),
        }
        // Escapes: decode into an owned string.
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(&self.text[start..i]);
        loop {
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    let c = match b.get(i + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let (c, len) = self.unicode_escape(i)?;
                            out.push(c);
                            i += len;
                            continue;
                        }
                        _ => return Err(JsonError { what: "invalid escape".into(), at: i }),
                    };
                    out.push(c);
                    i += 2;
                }
                Some(0..=0x1f) => return Err(JsonError { what: "control character in string".into(), at: i }),
                Some(_) => {
                    // Copy the run up to the next quote or backslash at once.
                    let run = i;
                    i = find_special(b, i);
                    out.push_str(&self.text[run..i]);
                }
                None => return Err(JsonError { what: "unterminated string".into(), at: i }),
            }
        }
    }

    /// Decodes `\uXXXX` (and a following low surrogate) at byte `i`;
    /// returns the char and the bytes consumed.
    fn unicode_escape(&self, i: usize) -> Result<(char, usize), JsonError> {
        let bad = || JsonError { what: "invalid unicode escape".into(), at: i };
        let hex4 = |at: usize| -> Option<u32> {
            let s = self.text.get(at..at + 4)?;
            if s.bytes().all(|c| c.is_ascii_hexdigit()) { u32::from_str_radix(s, 16).ok() } else { None }
        };
        let hi = hex4(i + 2).ok_or_else(bad)?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.bytes.get(i + 6) != Some(&b'\\') || self.bytes.get(i + 7) != Some(&b'u') {
                return Err(bad());
            }
            let lo = hex4(i + 8).ok_or_else(bad)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(bad());
            }
            let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).ok_or_else(bad)?;
            return Ok((c, 12));
        }
        char::from_u32(hi).map(|c| (c, 6)).ok_or_else(bad)
    }

    /// Skips one value, validating it without decoding anything.
    fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut first = true;
                while self.next_member(first)? {
                    self.skip_string()?;
                    self.expect(b':')?;
                    self.skip_value(depth + 1)?;
                    first = false;
                }
                Ok(())
            }
            Some(b'[') => {
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.error("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => self.skip_string(),
            _ => self.value().map(|_| ()),
        }
    }

    /// Skips a string at the cursor, checking its escapes (any `\uXXXX` is
    /// valid JSON text, so lone surrogates pass here: they are never decoded).
    fn skip_string(&mut self) -> Result<(), JsonError> {
        let b = self.bytes;
        let mut i = self.pos + 1;
        loop {
            i = find_special(b, i);
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(());
                }
                Some(b'\\') => match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => i += self.unicode_escape(i)?.1,
                    _ => return Err(JsonError { what: "invalid escape".into(), at: i }),
                },
                Some(_) => return Err(JsonError { what: "control character in string".into(), at: i }),
                None => return Err(JsonError { what: "unterminated string".into(), at: i }),
            }
        }
    }
}

/// Appends `s` as a JSON string, escaped as serde_json does (quote,
/// backslash and control characters; everything else verbatim).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    loop {
        let i = find_special(bytes, run);
        out.extend_from_slice(&bytes[run..i]);
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            }
        }
        run = i + 1;
    }
    out.push(b'"');
}

/// Appends a decimal integer.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &str) -> Result<Vec<(String, Value<'_>)>, JsonError> {
        let mut s = Scanner::new(input.as_bytes())?;
        s.begin_object()?;
        let mut out = Vec::new();
        let mut first = true;
        while let Some(k) = s.next_key(first)? {
            first = false;
            out.push((k.into_owned(), s.value()?));
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn scalars_strings_and_raw_values() {
        let v = scan_all(r#" { "a" : 1, "b":-2.5e1 ,"c":"x\"y\u00e9\ud83d\ude00","d":[1,{"e":null}],"f":true,"g":null,"h":{} } "#)
            .unwrap();
        assert_eq!(v[0], ("a".into(), Value::Int(1)));
        assert_eq!(v[1], ("b".into(), Value::Float(-25.0)));
        assert_eq!(v[2], ("c".into(), Value::Str("x\"yé😀".into())));
        assert_eq!(v[3], ("d".into(), Value::Raw(r#"[1,{"e":null}]"#)));
        assert_eq!(v[4], ("f".into(), Value::Bool(true)));
        assert_eq!(v[5], ("g".into(), Value::Null));
        assert_eq!(v[6], ("h".into(), Value::Raw("{}")));
        assert!(matches!(scan_all(r#"{"plain":"abc"}"#).unwrap()[0].1, Value::Str(Cow::Borrowed("abc"))));
        assert_eq!(scan_all(r#"{"big":99999999999999999999}"#).unwrap()[0].1, Value::Float(1e20));
        assert_eq!(scan_all("{}").unwrap(), vec![]);
    }

    #[test]
    fn everything_serde_json_refuses_is_refused() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        for bad in [
            "", "[]", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}", "{\"a\":01}", "{\"a\":1.}",
            "{\"a\":.5}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":\"\\x\"}", "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\u12\"}", "{\"a\":\"tab\there\"}", "{\"a\":\"open}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{} x",
            "{\"a\":{\"b\"}}", "{a:1}", &deep,
        ] {
            assert!(serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(bad).is_err() || bad == deep, "{bad}");
            assert!(scan_all(bad).is_err(), "accepted {bad:?}");
        }
        assert!(Scanner::new(b"{\"a\":\"\xff\"}").is_err());
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in ["plain", "quote\" back\\slash", "ctl\u{1}\u{1f}\n\r\t\u{8}\u{c}", "ünï/😀", ""] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        for v in [0i64, 7, -7, 1_700_000_000_123, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_i64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }
}
