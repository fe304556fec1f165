//! Maps a JSON path (`$.steps.clean.inputs[0]`) to a line and column of the
//! source text, so every configuration error points at the place to fix.
//!
//! serde reports where a *syntax* error is, but not where a semantically
//! wrong value is (and loses positions inside tagged enums), so the loader
//! remembers paths and this scanner finds them again in the text.

use std::fmt;

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// A JSON path from the document root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonPath(pub Vec<PathSeg>);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath(Vec::new())
    }

    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }

    /// Appends a serde_path_to_error path (`a.b[0].c`).
    pub fn extend_serde(&self, path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut p = self.clone();
        for seg in path.iter() {
            match seg {
                Segment::Seq { index } => p.0.push(PathSeg::Index(*index)),
                Segment::Map { key } => p.0.push(PathSeg::Key(key.clone())),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        p
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.0 {
            match seg {
                PathSeg::Key(k) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
                    write!(f, ".{k}")?
                }
                PathSeg::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// Line and column (1-based) of the value at `path`, or of the deepest
/// enclosing value that exists when the path goes further than the text.
pub fn locate(text: &str, path: &JsonPath) -> (usize, usize) {
    let mut s = Scanner { b: text.as_bytes(), i: 0 };
    s.ws();
    let mut pos = s.i;
    for seg in &path.0 {
        let found = match seg {
            PathSeg::Key(k) => s.enter_key(k),
            PathSeg::Index(n) => s.enter_index(*n),
        };
        if found.is_none() {
            break;
        }
        pos = s.i;
    }
    line_col(text, pos)
}

/// 1-based line and column (in characters) of byte offset `pos`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text.as_bytes()[..pos];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&c| c == b'\n').map(|i| i + 1).unwrap_or(0);
    let col = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, col)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Positions on the value of member `key` of the object at the cursor.
    fn enter_key(&mut self, key: &str) -> Option<()> {
        self.eat(b'{')?;
        loop {
            self.ws();
            if self.peek()? == b'}' {
                return None;
            }
            let k = self.string()?;
            self.eat(b':')?;
            self.ws();
            if k == key {
                return Some(());
            }
            self.skip_value()?;
            self.ws();
            if self.peek()? == b',' {
                self.i += 1;
            }
        }
    }

    /// Positions on element `n` of the array at the cursor.
    fn enter_index(&mut self, n: usize) -> Option<()> {
        self.eat(b'[')?;
        for idx in 0.. {
            self.ws();
            if self.peek()? == b']' {
                return None;
            }
            if idx == n {
                return Some(());
            }
            self.skip_value()?;
            self.ws();
            if self.peek()? == b',' {
                self.i += 1;
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let start = self.i;
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return serde_json::from_slice(&self.b[start..self.i]).ok();
                }
                _ => self.i += 1,
            }
        }
        None
    }

    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek()? {
                        c if c == close => {
                            self.i += 1;
                            return Some(());
                        }
                        b',' | b':' => self.i += 1,
                        _ => self.skip_value()?,
                    }
                }
            }
            _ => {
                while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']') && !self.b[self.i].is_ascii_whitespace() {
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "{\n  \"a\": 1,\n  \"steps\": {\n    \"x\": {\"inputs\": [\"s\", \"t\"]}\n  }\n}";

    #[test]
    fn finds_nested_values() {
        let p = JsonPath::root().key("steps").key("x").key("inputs").index(1);
        assert_eq!(p.to_string(), "$.steps.x.inputs[1]");
        assert_eq!(locate(DOC, &p), (4, 27));
        assert_eq!(locate(DOC, &JsonPath::root().key("a")), (2, 8));
    }

    #[test]
    fn missing_path_points_at_deepest_existing_value() {
        let p = JsonPath::root().key("steps").key("x").key("plugin");
        assert_eq!(locate(DOC, &p), (4, 10));
        assert_eq!(locate("not json", &p), (1, 1));
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(JsonPath::root().key("a b").index(0).to_string(), "$[\"a b\"][0]");
    }
}
