//! Errors of a SQL job, each with its span in the .sql file, shown like
//! rustc's: the line, and a caret under the offending text.

use std::fmt;
use std::path::PathBuf;

use sqlparser::tokenizer::{Location, Span};

/// One problem in a job file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// Where it is: 1-based lines and columns (end exclusive).
    pub span: Span,
    pub message: String,
}

impl SqlError {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        SqlError { span, message: message.into() }
    }

    pub fn line(&self) -> u64 {
        self.span.start.line
    }

    pub fn column(&self) -> u64 {
        self.span.start.column
    }
}

/// Every problem found in one job file, with its text (to show the lines).
#[derive(Clone, Debug, thiserror::Error)]
pub struct SqlErrors {
    pub file: Option<PathBuf>,
    pub text: String,
    pub errors: Vec<SqlError>,
}

impl SqlErrors {
    /// The offending text of an error (what its span covers on its first line).
    pub fn snippet(&self, e: &SqlError) -> String {
        let Some(line) = self.text.lines().nth(e.line().saturating_sub(1) as usize) else { return String::new() };
        let chars: Vec<char> = line.chars().collect();
        let start = (e.column().max(1) - 1) as usize;
        let end = if e.span.end.line == e.span.start.line && e.span.end.column > e.span.start.column {
            (e.span.end.column - 1) as usize
        } else {
            chars.len()
        };
        chars.get(start.min(chars.len())..end.min(chars.len())).map(|c| c.iter().collect()).unwrap_or_default()
    }
}

impl fmt::Display for SqlErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "job.sql".into());
        for e in &self.errors {
            writeln!(f, "error: {}", e.message)?;
            if e.line() == 0 {
                continue;
            }
            writeln!(f, "  --> {file}:{}:{}", e.line(), e.column())?;
            if let Some(line) = self.text.lines().nth(e.line().saturating_sub(1) as usize) {
                let num = e.line().to_string();
                let pad = " ".repeat(num.len());
                let width = self.snippet(e).chars().count().max(1);
                let lead: String = line.chars().take((e.column().max(1) - 1) as usize).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                writeln!(f, "{pad} |")?;
                writeln!(f, "{num} | {line}")?;
                writeln!(f, "{pad} | {lead}{}", "^".repeat(width))?;
            }
        }
        let n = self.errors.len();
        writeln!(f, "{}: {n} error{}", file, if n == 1 { "" } else { "s" })
    }
}

/// A span covering `a` to `b`.
pub fn join(a: Span, b: Span) -> Span {
    Span::new(a.start, b.end)
}

/// The span of a parser error: sqlparser puts "at Line: L, Column: C" in its
/// message; the token found there gives the width.
pub fn locate_parser_error(message: &str, tokens: &[sqlparser::tokenizer::TokenWithSpan]) -> (Span, String) {
    let find = |key: &str| -> Option<u64> {
        let i = message.rfind(key)? + key.len();
        message[i..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
    };
    let text = match message.rfind(" at Line: ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    };
    let text = text.trim_start_matches("sql parser error: ").to_string();
    match (find("Line: "), find("Column: ")) {
        (Some(line), Some(column)) => {
            let at = Location::new(line, column);
            let span = tokens.iter().find(|t| t.span.start == at).map(|t| t.span).unwrap_or(Span::new(at, Location::new(line, column + 1)));
            (span, text)
        }
        _ => {
            // No position (e.g. an unexpected end): the last token.
            let span = tokens.iter().rev().find(|t| !matches!(t.token, sqlparser::tokenizer::Token::Whitespace(_) | sqlparser::tokenizer::Token::EOF)).map(|t| t.span).unwrap_or(Span::empty());
            (span, text)
        }
    }
}
