//! The pass over sqlparser's token stream that handles what is not SQL,
//! before the parser sees the job:
//!
//! - `A LEFT [GLOBAL] <interval> WINDOW [AND <interval> DELAY] JOIN B` (and
//!   `INNER <interval> WINDOW ...`): the intervals and GLOBAL are recorded,
//!   keyed by the location of B's first token, and the tokens between LEFT
//!   and JOIN removed, leaving a plain `LEFT JOIN` for the parser;
//! - `FOR SYSTEM_TIME AS OF PROCTIME()` after a table: recorded (a lookup
//!   join) and removed;
//! - `WATERMARK FOR ts AS ts - INTERVAL '5' SECOND` in a CREATE TABLE's
//!   column list: recorded and removed;
//! - `'key' = value` in a CREATE TABLE's WITH list: the key becomes a quoted
//!   identifier (sqlparser takes only identifiers there);
//! - `CREATE FUNCTION name AS 'path'` and `CREATE TRANSFORM name AS 'path'`:
//!   recorded and removed.
//!
//! Every token keeps its span, so the parser's errors and the AST's spans
//! are positions in the .sql file.

use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer, Word};

use super::error::{join, SqlError};

/// A `CREATE FUNCTION` or `CREATE TRANSFORM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginDecl {
    pub kind: PluginKind,
    pub name: String,
    pub name_span: Span,
    pub path: String,
    pub path_span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    Function,
    Transform,
}

/// A delayed (or interval) join's settings, from the tokens between LEFT
/// (or INNER) and JOIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelayedJoin {
    /// The first token of the joined relation (the key of this record).
    pub at: Location,
    /// `LEFT` (true) or `INNER`.
    pub left: bool,
    pub global: Option<Span>,
    pub window_ms: u64,
    pub window_span: Span,
    pub delay_ms: u64,
    pub delay_span: Option<Span>,
    /// From LEFT to JOIN.
    pub span: Span,
}

/// A table read `FOR SYSTEM_TIME AS OF PROCTIME()`: a lookup join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupMark {
    /// The table name's (last) token.
    pub at: Location,
    pub span: Span,
}

/// `WATERMARK FOR column AS column - INTERVAL ...` of a CREATE TABLE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkDecl {
    /// The table name's (last) token.
    pub table_at: Location,
    pub column: String,
    pub column_span: Span,
    pub out_of_orderness_ms: u64,
    pub span: Span,
}

/// `SET 'key' = value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDecl {
    pub key: String,
    pub key_span: Span,
    pub value: SetValue,
    pub value_span: Span,
}

/// A SET's value as written: `'text'`, a number, TRUE or FALSE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetValue {
    Text(String),
    Number(String),
    Bool(bool),
}

/// The job's tokens ready for the parser, and what the pass took out.
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    pub tokens: Vec<TokenWithSpan>,
    pub plugins: Vec<PluginDecl>,
    pub delayed: Vec<DelayedJoin>,
    pub lookups: Vec<LookupMark>,
    pub watermarks: Vec<WatermarkDecl>,
    pub settings: Vec<SetDecl>,
}

/// Tokenizes `text` and runs the pass.
pub fn prepare(text: &str) -> Result<Prepared, SqlError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text).tokenize_with_location().map_err(|e| {
        let at = e.location;
        SqlError::new(Span::new(at, Location::new(at.line, at.column + 1)), e.message)
    })?;
    Pass::new(tokens).run()
}

struct Pass {
    tokens: Vec<TokenWithSpan>,
    /// Indexes of the tokens that are not whitespace or comments.
    sig: Vec<usize>,
    keep: Vec<bool>,
    out: Prepared,
}

fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// A duration unit's milliseconds.
pub(super) fn unit_ms(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_uppercase().trim_end_matches('S') {
        "MILLISECOND" | "M" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    })
}

impl Pass {
    fn new(tokens: Vec<TokenWithSpan>) -> Self {
        let sig = tokens.iter().enumerate().filter(|(_, t)| !matches!(t.token, Token::Whitespace(_) | Token::EOF)).map(|(i, _)| i).collect();
        let keep = vec![true; tokens.len()];
        Pass { tokens, sig, keep, out: Prepared::default() }
    }

    fn tok(&self, s: usize) -> Option<&Token> {
        self.sig.get(s).map(|&i| &self.tokens[i].token)
    }

    fn span(&self, s: usize) -> Span {
        match self.sig.get(s) {
            Some(&i) => self.tokens[i].span,
            None => self.sig.last().map(|&i| self.tokens[i].span).unwrap_or(Span::empty()),
        }
    }

    fn is_word(&self, s: usize, w: &str) -> bool {
        self.tok(s).and_then(word).is_some_and(|v| v == w)
    }

    /// Removes sig tokens `from..to` (and the whitespace between them).
    fn remove(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        let (a, b) = (self.sig[from], self.sig.get(to).copied().unwrap_or(self.tokens.len()));
        for k in a..b {
            self.keep[k] = false;
        }
    }

    fn run(mut self) -> Result<Prepared, SqlError> {
        let mut start = 0;
        while start < self.sig.len() {
            let mut end = start;
            while end < self.sig.len() && !matches!(self.tok(end), Some(Token::SemiColon)) {
                end += 1;
            }
            self.statement(start, end)?;
            start = end + 1;
        }
        let Pass { tokens, keep, mut out, .. } = self;
        out.tokens = tokens.into_iter().zip(keep).filter(|(_, k)| *k).map(|(t, _)| t).collect();
        Ok(out)
    }

    /// One statement: sig tokens `start..end` (`end` the `;` or the end).
    fn statement(&mut self, start: usize, end: usize) -> Result<(), SqlError> {
        if self.is_word(start, "CREATE") && (self.is_word(start + 1, "FUNCTION") || self.is_word(start + 1, "TRANSFORM")) {
            return self.plugin(start, end);
        }
        if self.is_word(start, "CREATE") && self.is_word(start + 1, "TABLE") {
            return self.create_table(start, end);
        }
        if self.is_word(start, "SET") {
            return self.set(start, end);
        }
        let mut s = start;
        while s < end {
            if self.is_word(s, "FOR") && self.is_word(s + 1, "SYSTEM_TIME") {
                s = self.system_time(s, end)?;
            } else if self.is_word(s, "LEFT") || self.is_word(s, "INNER") {
                s = self.delayed_join(s, end)?;
            } else {
                s += 1;
            }
        }
        Ok(())
    }

    /// `CREATE FUNCTION|TRANSFORM name AS 'path'`.
    fn plugin(&mut self, start: usize, end: usize) -> Result<(), SqlError> {
        let kind = if self.is_word(start + 1, "FUNCTION") { PluginKind::Function } else { PluginKind::Transform };
        let what = if kind == PluginKind::Function { "FUNCTION" } else { "TRANSFORM" };
        let usage = format!("expected `CREATE {what} name AS 'path/to/plugin'`");
        let name = match self.tok(start + 2) {
            Some(Token::Word(w)) if start + 2 < end => w.value.clone(),
            _ => return Err(SqlError::new(self.span(start + 2), usage)),
        };
        if !self.is_word(start + 3, "AS") || start + 3 >= end {
            return Err(SqlError::new(self.span(start + 3), usage));
        }
        let path = match self.tok(start + 4) {
            Some(Token::SingleQuotedString(p)) if start + 4 < end => p.clone(),
            _ => return Err(SqlError::new(self.span(start + 4), usage)),
        };
        if start + 5 < end {
            return Err(SqlError::new(self.span(start + 5), format!("unexpected text after `CREATE {what} {name} AS '{path}'`")));
        }
        self.out.plugins.push(PluginDecl { kind, name, name_span: self.span(start + 2), path, path_span: self.span(start + 4) });
        self.take_statement(start, end);
        Ok(())
    }

    /// Takes the statement at sig tokens `start..end` and its `;` (and, when
    /// it is the last, whatever follows) out of what the parser sees.
    fn take_statement(&mut self, start: usize, end: usize) {
        self.remove(start, (end + 1).min(self.sig.len()));
        if end >= self.sig.len() {
            let from = self.sig[start];
            for k in from..self.tokens.len() {
                self.keep[k] = false;
            }
        }
    }

    /// `SET 'key' = 'value'` (Flink SQL's form): a setting of the pipeline.
    fn set(&mut self, start: usize, end: usize) -> Result<(), SqlError> {
        let usage = "expected `SET 'key' = 'value'` (keys: name, parallelism, dead_letter.*, settings.*)";
        let key = match self.tok(start + 1) {
            Some(Token::SingleQuotedString(k)) if start + 1 < end => k.clone(),
            _ => return Err(SqlError::new(self.span(start + 1), usage)),
        };
        if !matches!(self.tok(start + 2), Some(Token::Eq)) || start + 3 >= end {
            return Err(SqlError::new(self.span(start + 2), usage));
        }
        let value = match self.tok(start + 3) {
            Some(Token::SingleQuotedString(v)) => SetValue::Text(v.clone()),
            Some(Token::Number(n, _)) => SetValue::Number(n.clone()),
            Some(Token::Word(w)) if w.quote_style.is_none() && (w.value.eq_ignore_ascii_case("true") || w.value.eq_ignore_ascii_case("false")) => {
                SetValue::Bool(w.value.eq_ignore_ascii_case("true"))
            }
            _ => return Err(SqlError::new(self.span(start + 3), usage)),
        };
        if start + 4 < end {
            return Err(SqlError::new(self.span(start + 4), "unexpected text after `SET 'key' = value`"));
        }
        self.out.settings.push(SetDecl { key, key_span: self.span(start + 1), value, value_span: self.span(start + 3) });
        self.take_statement(start, end);
        Ok(())
    }

    /// CREATE TABLE: takes WATERMARK out of the column list and turns the
    /// WITH list's string keys into identifiers.
    fn create_table(&mut self, start: usize, end: usize) -> Result<(), SqlError> {
        let Some(open) = (start..end).find(|&s| matches!(self.tok(s), Some(Token::LParen))) else { return Ok(()) };
        let table_at = self.span(open - 1).start;
        let mut depth = 0;
        let mut item_start = open + 1;
        let mut close = end;
        let mut s = open;
        while s < end {
            match self.tok(s) {
                Some(Token::LParen) => depth += 1,
                Some(Token::RParen) => {
                    depth -= 1;
                    if depth == 0 {
                        close = s;
                        if self.is_word(item_start, "WATERMARK") {
                            self.watermark(table_at, open, item_start, s)?;
                        }
                        break;
                    }
                }
                Some(Token::Comma) if depth == 1 => {
                    if self.is_word(item_start, "WATERMARK") {
                        self.watermark(table_at, open, item_start, s)?;
                    }
                    item_start = s + 1;
                }
                _ => {}
            }
            s += 1;
        }
        // WITH ( 'key' = value, ... )
        if self.is_word(close + 1, "WITH") && matches!(self.tok(close + 2), Some(Token::LParen)) {
            let mut s = close + 3;
            while s < end && !matches!(self.tok(s), Some(Token::RParen)) {
                if let (Some(Token::SingleQuotedString(key)), Some(Token::Eq)) = (self.tok(s), self.tok(s + 1)) {
                    let i = self.sig[s];
                    self.tokens[i].token = Token::Word(Word { value: key.clone(), quote_style: Some('"'), keyword: Keyword::NoKeyword });
                }
                s += 1;
            }
        }
        Ok(())
    }

    /// `WATERMARK FOR col AS col [- <interval>]` at sig `from..to` (`to` the
    /// `,` or `)` after it); removed with the comma before it.
    fn watermark(&mut self, table_at: Location, open: usize, from: usize, to: usize) -> Result<(), SqlError> {
        let usage = "expected `WATERMARK FOR column AS column - INTERVAL 'n' UNIT`";
        let span = join(self.span(from), self.span(to - 1));
        if !self.is_word(from + 1, "FOR") {
            return Err(SqlError::new(self.span(from + 1), usage));
        }
        let Some(Token::Word(col)) = self.tok(from + 2).cloned() else { return Err(SqlError::new(self.span(from + 2), usage)) };
        if !self.is_word(from + 3, "AS") {
            return Err(SqlError::new(self.span(from + 3), usage));
        }
        match self.tok(from + 4) {
            Some(Token::Word(w)) if w.value == col.value => {}
            _ => {
                return Err(SqlError::new(self.span(from + 4), format!("the watermark must be `{0}` or `{0} - INTERVAL ...` (the column it is for)", col.value)))
            }
        }
        let mut ms = 0;
        if from + 5 < to {
            if !matches!(self.tok(from + 5), Some(Token::Minus)) {
                return Err(SqlError::new(self.span(from + 5), usage));
            }
            let (v, _, next) = self.interval(from + 6)?;
            if next != to {
                return Err(SqlError::new(self.span(next), usage));
            }
            ms = v;
        }
        self.out.watermarks.push(WatermarkDecl {
            table_at,
            column: col.value.clone(),
            column_span: self.span(from + 2),
            out_of_orderness_ms: ms,
            span,
        });
        // With the comma before it (or after it, when it comes first).
        if from > open + 1 {
            self.remove(from - 1, to);
        } else if matches!(self.tok(to), Some(Token::Comma)) {
            self.remove(from, to + 1);
        } else {
            return Err(SqlError::new(span, "a table needs columns besides its WATERMARK"));
        }
        Ok(())
    }

    /// An interval at sig `s`: `INTERVAL 'n' UNIT`, `INTERVAL 'n UNIT'` or
    /// `n UNIT`. Returns its ms, its span and the sig index after it.
    fn interval(&self, s: usize) -> Result<(u64, Span, usize), SqlError> {
        let bad = |span| SqlError::new(span, "expected an interval such as `INTERVAL '5' SECOND` (units: MILLISECOND, SECOND, MINUTE, HOUR, DAY)");
        let number = |text: &str, span| text.trim().parse::<u64>().map_err(|_| bad(span));
        let (amount, unit, last) = if self.is_word(s, "INTERVAL") {
            match self.tok(s + 1) {
                Some(Token::SingleQuotedString(q)) => match q.split_whitespace().collect::<Vec<_>>()[..] {
                    [n, u] => (number(n, self.span(s + 1))?, u.to_string(), s + 1),
                    [n] => match self.tok(s + 2).and_then(word) {
                        Some(u) if unit_ms(&u).is_some() => (number(n, self.span(s + 1))?, u, s + 2),
                        _ => return Err(bad(self.span(s + 2))),
                    },
                    _ => return Err(bad(self.span(s + 1))),
                },
                Some(Token::Number(n, _)) => match self.tok(s + 2).and_then(word) {
                    Some(u) => (number(n, self.span(s + 1))?, u, s + 2),
                    None => return Err(bad(self.span(s + 2))),
                },
                _ => return Err(bad(self.span(s + 1))),
            }
        } else if let Some(Token::Number(n, _)) = self.tok(s) {
            match self.tok(s + 1).and_then(word) {
                Some(u) => (number(n, self.span(s))?, u, s + 1),
                None => return Err(bad(self.span(s + 1))),
            }
        } else {
            return Err(bad(self.span(s)));
        };
        let span = join(self.span(s), self.span(last));
        let per = unit_ms(&unit).ok_or_else(|| bad(self.span(last)))?;
        let ms = amount.checked_mul(per).ok_or_else(|| SqlError::new(span, "interval too long"))?;
        Ok((ms, span, last + 1))
    }

    /// `FOR SYSTEM_TIME AS OF PROCTIME()` at sig `s`.
    fn system_time(&mut self, s: usize, end: usize) -> Result<usize, SqlError> {
        let ok = self.is_word(s + 2, "AS")
            && self.is_word(s + 3, "OF")
            && self.is_word(s + 4, "PROCTIME")
            && matches!(self.tok(s + 5), Some(Token::LParen))
            && matches!(self.tok(s + 6), Some(Token::RParen))
            && s + 6 < end;
        let span = join(self.span(s), self.span((s + 6).min(end.saturating_sub(1))));
        if !ok {
            return Err(SqlError::new(span, "only `FOR SYSTEM_TIME AS OF PROCTIME()` is supported (a lookup join: the table's current value)"));
        }
        if s == 0 {
            return Err(SqlError::new(span, "`FOR SYSTEM_TIME` must follow a table name"));
        }
        self.out.lookups.push(LookupMark { at: self.span(s - 1).start, span });
        self.remove(s, s + 7);
        Ok(s + 7)
    }

    /// At LEFT or INNER (sig `s`): a delayed join when an interval follows.
    fn delayed_join(&mut self, s: usize, end: usize) -> Result<usize, SqlError> {
        let left = self.is_word(s, "LEFT");
        let mut k = s + 1;
        let global = if left && self.is_word(k, "GLOBAL") {
            k += 1;
            Some(self.span(k - 1))
        } else {
            None
        };
        if self.is_word(k, "JOIN") || self.is_word(k, "OUTER") {
            return match global {
                Some(g) => Err(SqlError::new(g, "GLOBAL needs a window: `LEFT GLOBAL <interval> WINDOW AND <interval> DELAY JOIN`")),
                None => Ok(k),
            };
        }
        // Not an interval: not ours (the parser judges it).
        let starts_interval = self.is_word(k, "INTERVAL") || matches!(self.tok(k), Some(Token::Number(..)));
        if !starts_interval {
            return Ok(k);
        }
        let (window_ms, window_span, mut k) = self.interval(k)?;
        if self.is_word(k, "DELAY") {
            return Err(SqlError::new(
                join(window_span, self.span(k)),
                "a DELAY JOIN needs a window: write `LEFT <interval> WINDOW AND <interval> DELAY JOIN`",
            ));
        }
        if !self.is_word(k, "WINDOW") {
            return Err(SqlError::new(self.span(k), "expected `WINDOW` after the join's interval"));
        }
        k += 1;
        let (mut delay_ms, mut delay_span) = (0, None);
        if self.is_word(k, "AND") {
            let (ms, span, next) = self.interval(k + 1)?;
            if !self.is_word(next, "DELAY") {
                return Err(SqlError::new(self.span(next), "expected `DELAY` after the join's delay interval"));
            }
            (delay_ms, delay_span, k) = (ms, Some(span), next + 1);
        }
        if !self.is_word(k, "JOIN") || k + 1 >= end {
            return Err(SqlError::new(self.span(k), "expected `JOIN` and the joined table"));
        }
        if window_ms == 0 {
            return Err(SqlError::new(window_span, "the join's window must be longer than 0"));
        }
        self.out.delayed.push(DelayedJoin {
            at: self.span(k + 1).start,
            left,
            global,
            window_ms,
            window_span,
            delay_ms,
            delay_span,
            span: join(self.span(s), self.span(k)),
        });
        self.remove(s + 1, k);
        Ok(k + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: &Prepared) -> String {
        p.tokens.iter().map(|t| t.token.to_string()).collect::<String>()
    }

    #[test]
    fn delayed_join_becomes_a_left_join() {
        let p = prepare("SELECT * FROM a LEFT GLOBAL INTERVAL '1' HOUR WINDOW AND 10 MINUTE DELAY JOIN b ON a.k = b.k").unwrap();
        assert_eq!(text(&p), "SELECT * FROM a LEFT JOIN b ON a.k = b.k");
        let d = &p.delayed[0];
        assert_eq!((d.window_ms, d.delay_ms, d.left, d.global.is_some()), (3_600_000, 600_000, true, true));
        assert_eq!((d.at.line, d.at.column), (1, 79));
        assert_eq!((d.window_span.start.column, d.window_span.end.column), (29, 46));
    }

    #[test]
    fn delay_without_window_is_refused_where_it_is() {
        let e = prepare("SELECT *\nFROM a LEFT INTERVAL '5' SECOND DELAY JOIN b ON a.k = b.k").unwrap_err();
        assert_eq!((e.span.start.line, e.span.start.column), (2, 13));
        assert!(e.message.contains("needs a window"), "{}", e.message);
    }

    #[test]
    fn watermark_options_plugins_and_lookups() {
        let p = prepare(
            "CREATE FUNCTION domain AS 'plugins/url-udf';\nCREATE TABLE t (ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ('connector' = 'file');\nSELECT * FROM e JOIN d FOR SYSTEM_TIME AS OF PROCTIME() AS x ON e.a = x.a",
        )
        .unwrap();
        assert_eq!(p.plugins[0].name, "domain");
        assert_eq!(p.watermarks[0].out_of_orderness_ms, 5000);
        assert_eq!(p.lookups[0].at, Location::new(3, 22));
        let t = text(&p);
        assert!(t.starts_with("CREATE TABLE t (ts BIGINT) WITH (\"connector\" = 'file');"), "{t}");
        assert!(t.ends_with("SELECT * FROM e JOIN d AS x ON e.a = x.a"), "{t}");
    }
}
