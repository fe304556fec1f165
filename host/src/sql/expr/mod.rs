//! SQL scalar expressions: parsed with sqlparser into our own small tree
//! (`ast`), type-checked against a schema (`types`), compiled once into a
//! closure tree evaluated on each record's borrowed JSON members
//! (`compile`). See docs/select-step.md for the language and its semantics.
//!
//! The public API the SQL front end calls: [`parse_expr`], [`from_sql`],
//! [`Expr::to_sql`], [`typecheck`] with a [`Schema`].

mod ast;
mod compile;
mod convert;
mod types;
mod value;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::fmt;

use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

pub use ast::{BinOp, Expr, ExprKind, Func, Literal, Pos, Span};
pub use compile::{Compiled, Fields};
pub use convert::from_sql;
pub use types::{typecheck, Schema, SqlType, UdfSignature};
pub use value::{EvalError, Value};

/// Why an expression was refused, with where in its text (line and column
/// 1-based, relative to the text parsed; `0:0` when unknown).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ExprError {
    pub message: String,
    pub span: Span,
}

impl ExprError {
    pub fn new(message: String, span: Span) -> Self {
        ExprError { message, span }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.span.start.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "{} (at {}:{})", self.message, self.span.start.line, self.span.start.column)
        }
    }
}

/// Parses one SQL scalar expression (the whole text; GenericDialect).
pub fn parse_expr(text: &str) -> Result<Expr, ExprError> {
    let dialect = GenericDialect {};
    let at_end = |mut e: ExprError| {
        // An error at the end of the text (`a +`) comes without a place.
        if e.span.start.line == 0 {
            let (line, column) = crate::config::locate::line_col(text, text.len());
            let at = Pos { line: line as u64, column: column as u64 };
            e.span = Span { start: at, end: at };
        }
        e
    };
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(parser_error).map_err(at_end)?;
    let e = parser.parse_expr().map_err(parser_error).map_err(at_end)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ExprError::new(format!("unexpected `{}` after the expression", next.token), next.span.into()));
    }
    from_sql(&e)
}

/// sqlparser's errors carry their place in the text of the message
/// (" at Line: L, Column: C"): moved into the span.
fn parser_error(e: ParserError) -> ExprError {
    let text = match &e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "the expression is nested too deeply".into(),
    };
    match text.rfind(" at Line: ") {
        Some(i) => {
            let place = &text[i + " at Line: ".len()..];
            let mut parts = place.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
            let column = parts.next().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
            let at = Pos { line, column };
            ExprError::new(text[..i].to_string(), Span { start: at, end: at })
        }
        None => ExprError::new(text, Span::default()),
    }
}
