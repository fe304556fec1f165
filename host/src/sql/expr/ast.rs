//! Our own small expression tree: only what the engine evaluates, each node
//! with the span of its text (for errors), printable back to SQL.

use std::fmt::Write as _;

use super::types::SqlType;

/// A 1-based position in the expression text (or in the .sql file when the
/// expression came from a whole job); `0:0` when unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// Where an expression's text is: its first and last character.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl From<sqlparser::tokenizer::Span> for Span {
    fn from(s: sqlparser::tokenizer::Span) -> Self {
        let pos = |l: sqlparser::tokenizer::Location| Pos { line: l.line, column: l.column };
        Span { start: pos(s.start), end: pos(s.end) }
    }
}

/// A scalar SQL expression. Equality ignores spans (`parse(to_sql(e)) == e`).
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A field of the event: `a` top-level, `a.b.c` nested.
    Column(Vec<String>),
    Literal(Literal),
    /// `-x`
    Neg(Box<Expr>),
    /// `NOT x`
    Not(Box<Expr>),
    Binary { op: BinOp, left: Box<Expr>, right: Box<Expr> },
    /// `x IS [NOT] NULL`
    IsNull { expr: Box<Expr>, negated: bool },
    /// `x [NOT] IN (a, b, ...)`
    InList { expr: Box<Expr>, list: Vec<Expr>, negated: bool },
    /// `x [NOT] BETWEEN low AND high`
    Between { expr: Box<Expr>, low: Box<Expr>, high: Box<Expr>, negated: bool },
    /// `x [NOT] LIKE pattern` (`%` any run, `_` one character)
    Like { expr: Box<Expr>, pattern: Box<Expr>, negated: bool },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`
    Case { operand: Option<Box<Expr>>, whens: Vec<(Expr, Expr)>, otherwise: Option<Box<Expr>> },
    /// `CAST(x AS type)`
    Cast { expr: Box<Expr>, to: SqlType },
    /// A built-in function.
    Call { func: Func, args: Vec<Expr> },
    /// A user-defined function (a UDF plugin's), by its name as written.
    Udf { name: String, args: Vec<Expr> },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    /// Always finite.
    Float(f64),
    Str(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// `||`
    Concat,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
            BinOp::Concat => "||",
        }
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(self, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod)
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

/// The built-in functions, by their canonical name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    /// CONCAT(a, b, ...): NULL if any argument is.
    Concat,
    /// SUBSTRING(s, from [, for]) (also SUBSTR).
    Substring,
    /// TRIM(s [, characters]) both sides; LTRIM / RTRIM one side.
    Trim,
    Ltrim,
    Rtrim,
    /// CHAR_LENGTH (also CHARACTER_LENGTH, LENGTH).
    CharLength,
    Replace,
    /// POSITION(needle IN s) (also LOCATE(needle, s)): 1-based, 0 if absent.
    Position,
    Coalesce,
    /// IF(cond, then, else)
    If,
    Nullif,
    Abs,
    Floor,
    /// CEIL (also CEILING)
    Ceil,
    /// ROUND(x [, digits]), half away from zero.
    Round,
}

impl Func {
    /// The function a (case-insensitive) name denotes, if built in.
    pub fn by_name(name: &str) -> Option<Func> {
        Some(match name.to_ascii_uppercase().as_str() {
            "LOWER" => Func::Lower,
            "UPPER" => Func::Upper,
            "CONCAT" => Func::Concat,
            "SUBSTRING" | "SUBSTR" => Func::Substring,
            "TRIM" | "BTRIM" => Func::Trim,
            "LTRIM" => Func::Ltrim,
            "RTRIM" => Func::Rtrim,
            "CHAR_LENGTH" | "CHARACTER_LENGTH" | "LENGTH" => Func::CharLength,
            "REPLACE" => Func::Replace,
            "POSITION" | "LOCATE" => Func::Position,
            "COALESCE" => Func::Coalesce,
            "IF" => Func::If,
            "NULLIF" => Func::Nullif,
            "ABS" => Func::Abs,
            "FLOOR" => Func::Floor,
            "CEIL" | "CEILING" => Func::Ceil,
            "ROUND" => Func::Round,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Func::Lower => "LOWER",
            Func::Upper => "UPPER",
            Func::Concat => "CONCAT",
            Func::Substring => "SUBSTRING",
            Func::Trim => "TRIM",
            Func::Ltrim => "LTRIM",
            Func::Rtrim => "RTRIM",
            Func::CharLength => "CHAR_LENGTH",
            Func::Replace => "REPLACE",
            Func::Position => "POSITION",
            Func::Coalesce => "COALESCE",
            Func::If => "IF",
            Func::Nullif => "NULLIF",
            Func::Abs => "ABS",
            Func::Floor => "FLOOR",
            Func::Ceil => "CEIL",
            Func::Round => "ROUND",
        }
    }

    /// Why `n` arguments are wrong for it, if they are.
    pub fn check_arity(self, n: usize) -> Result<(), String> {
        let (min, max) = self.arity();
        if n >= min && max.is_none_or(|m| n <= m) {
            return Ok(());
        }
        let want = match max {
            Some(m) if m == min => format!("{min}"),
            Some(m) => format!("{min} to {m}"),
            None => format!("at least {min}"),
        };
        Err(format!("{} takes {want} argument(s), not {n}", self.name()))
    }

    /// How many arguments it takes: (min, max), max None = any number.
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::Lower | Func::Upper | Func::CharLength | Func::Abs | Func::Floor | Func::Ceil => (1, Some(1)),
            Func::Concat | Func::Coalesce => (1, None),
            Func::Substring => (2, Some(3)),
            Func::Trim | Func::Ltrim | Func::Rtrim | Func::Round => (1, Some(2)),
            Func::Replace | Func::If => (3, Some(3)),
            Func::Position | Func::Nullif => (2, Some(2)),
        }
    }

    pub const ALL: [Func; 17] = [
        Func::Lower,
        Func::Upper,
        Func::Concat,
        Func::Substring,
        Func::Trim,
        Func::Ltrim,
        Func::Rtrim,
        Func::CharLength,
        Func::Replace,
        Func::Position,
        Func::Coalesce,
        Func::If,
        Func::Nullif,
        Func::Abs,
        Func::Floor,
        Func::Ceil,
        Func::Round,
    ];
}

impl Expr {
    pub fn new(kind: ExprKind) -> Self {
        Expr { kind, span: Span::default() }
    }

    /// The direct subexpressions, to rewrite a tree in place (the SQL
    /// compiler replaces UDF calls by the fields their steps write).
    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match &mut self.kind {
            ExprKind::Column(_) | ExprKind::Literal(_) => vec![],
            ExprKind::Neg(x) | ExprKind::Not(x) | ExprKind::IsNull { expr: x, .. } | ExprKind::Cast { expr: x, .. } => vec![x],
            ExprKind::Binary { left, right, .. } => vec![left, right],
            ExprKind::InList { expr, list, .. } => std::iter::once(&mut **expr).chain(list.iter_mut()).collect(),
            ExprKind::Between { expr, low, high, .. } => vec![expr, low, high],
            ExprKind::Like { expr, pattern, .. } => vec![expr, pattern],
            ExprKind::Case { operand, whens, otherwise } => operand
                .iter_mut()
                .map(|b| &mut **b)
                .chain(whens.iter_mut().flat_map(|(w, t)| [w, t]))
                .chain(otherwise.iter_mut().map(|b| &mut **b))
                .collect(),
            ExprKind::Call { args, .. } | ExprKind::Udf { args, .. } => args.iter_mut().collect(),
        }
    }

    /// The expression as SQL text that parses back to an equal expression
    /// (fully parenthesised, identifiers quoted when they must be).
    pub fn to_sql(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, o: &mut String) {
        let list = |o: &mut String, args: &[Expr]| {
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    o.push_str(", ");
                }
                a.write(o);
            }
        };
        match &self.kind {
            ExprKind::Column(path) => {
                for (i, seg) in path.iter().enumerate() {
                    if i > 0 {
                        o.push('.');
                    }
                    write_ident(o, seg);
                }
            }
            ExprKind::Literal(l) => write_literal(o, l),
            // Wrapped whole: `NOT x = y` would read as `NOT (x = y)`.
            ExprKind::Neg(e) => {
                o.push_str("(-(");
                e.write(o);
                o.push_str("))");
            }
            ExprKind::Not(e) => {
                o.push_str("(NOT (");
                e.write(o);
                o.push_str("))");
            }
            ExprKind::Binary { op, left, right } => {
                o.push('(');
                left.write(o);
                let _ = write!(o, " {} ", op.symbol());
                right.write(o);
                o.push(')');
            }
            ExprKind::IsNull { expr, negated } => {
                o.push('(');
                expr.write(o);
                o.push_str(if *negated { " IS NOT NULL)" } else { " IS NULL)" });
            }
            ExprKind::InList { expr, list: l, negated } => {
                o.push('(');
                expr.write(o);
                o.push_str(if *negated { " NOT IN (" } else { " IN (" });
                list(o, l);
                o.push_str("))");
            }
            ExprKind::Between { expr, low, high, negated } => {
                o.push('(');
                expr.write(o);
                o.push_str(if *negated { " NOT BETWEEN " } else { " BETWEEN " });
                low.write(o);
                o.push_str(" AND ");
                high.write(o);
                o.push(')');
            }
            ExprKind::Like { expr, pattern, negated } => {
                o.push('(');
                expr.write(o);
                o.push_str(if *negated { " NOT LIKE " } else { " LIKE " });
                pattern.write(o);
                o.push(')');
            }
            ExprKind::Case { operand, whens, otherwise } => {
                o.push_str("CASE");
                if let Some(x) = operand {
                    o.push(' ');
                    x.write(o);
                }
                for (w, t) in whens {
                    o.push_str(" WHEN ");
                    w.write(o);
                    o.push_str(" THEN ");
                    t.write(o);
                }
                if let Some(e) = otherwise {
                    o.push_str(" ELSE ");
                    e.write(o);
                }
                o.push_str(" END");
            }
            ExprKind::Cast { expr, to } => {
                o.push_str("CAST(");
                expr.write(o);
                let _ = write!(o, " AS {})", to.sql_name());
            }
            ExprKind::Call { func, args } => match func {
                // A hand-built call with the wrong arguments: written plainly
                // (the parser refuses it back with a message, no panic here).
                _ if !super::compile::arity_ok(*func, args.len()) => {
                    o.push_str(func.name());
                    o.push('(');
                    list(o, args);
                    o.push(')');
                }
                // Written in the standard forms sqlparser reads back.
                Func::Substring => {
                    o.push_str("SUBSTRING(");
                    args[0].write(o);
                    o.push_str(" FROM ");
                    args[1].write(o);
                    if let Some(n) = args.get(2) {
                        o.push_str(" FOR ");
                        n.write(o);
                    }
                    o.push(')');
                }
                Func::Trim | Func::Ltrim | Func::Rtrim => {
                    o.push_str(match func {
                        Func::Trim => "TRIM(BOTH ",
                        Func::Ltrim => "TRIM(LEADING ",
                        _ => "TRIM(TRAILING ",
                    });
                    if let Some(chars) = args.get(1) {
                        chars.write(o);
                        o.push(' ');
                    }
                    o.push_str("FROM ");
                    args[0].write(o);
                    o.push(')');
                }
                Func::Position => {
                    o.push_str("POSITION(");
                    args[0].write(o);
                    o.push_str(" IN ");
                    args[1].write(o);
                    o.push(')');
                }
                _ => {
                    o.push_str(func.name());
                    o.push('(');
                    list(o, args);
                    o.push(')');
                }
            },
            ExprKind::Udf { name, args } => {
                write_ident(o, name);
                o.push('(');
                list(o, args);
                o.push(')');
            }
        }
    }
}

fn write_literal(o: &mut String, l: &Literal) {
    match l {
        Literal::Null => o.push_str("NULL"),
        Literal::Bool(b) => o.push_str(if *b { "TRUE" } else { "FALSE" }),
        Literal::Int(i) => {
            let _ = write!(o, "{i}");
        }
        Literal::Float(f) => {
            // `{:?}` is the shortest text that reads back as the same f64,
            // with a `.0` or an exponent so it stays a DOUBLE.
            let text = format!("{f:?}");
            o.push_str(&text);
        }
        Literal::Str(s) => {
            o.push('\'');
            o.push_str(&s.replace('\'', "''"));
            o.push('\'');
        }
    }
}

/// Words that must be quoted to be read as a column name.
fn needs_quotes(name: &str) -> bool {
    let mut chars = name.chars();
    // Identifiers keep their case as written, so only the characters matter.
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    !plain || sqlparser::keywords::ALL_KEYWORDS.binary_search(&name.to_ascii_uppercase().as_str()).is_ok()
}

pub(crate) fn write_ident(o: &mut String, name: &str) {
    if needs_quotes(name) {
        o.push('"');
        o.push_str(&name.replace('"', "\"\""));
        o.push('"');
    } else {
        o.push_str(name);
    }
}
