//! The compiled form of an expression, built once per step: columns
//! resolved to an index among the top-level members read (one borrowed pass
//! over the record finds them all), constant subtrees folded, constant LIKE
//! patterns and IN lists kept ready. Evaluation borrows from the record and
//! from the compiled tree; nothing is re-serialised.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::ast::{BinOp, Expr, ExprKind, Func, Literal};
use super::types::SqlType;
use super::value::{self, EvalError, Value, R};
use super::ExprError;

/// The top-level members an expression (or several) read, in the order
/// their indexes refer to: what to pass to `record_schema::members_named`.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    pub names: Vec<String>,
}

impl Fields {
    fn index(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        }
    }
}

/// An expression ready to evaluate on records.
#[derive(Debug)]
pub struct Compiled {
    root: Node,
}

#[derive(Debug)]
enum Node {
    Const(Value<'static>),
    Column { field: usize, nested: Box<[String]> },
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith(BinOp, Box<Node>, Box<Node>),
    Cmp(BinOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Concat(Box<Node>, Box<Node>),
    IsNull(Box<Node>, bool),
    In { expr: Box<Node>, list: Vec<Node>, negated: bool },
    Between { expr: Box<Node>, low: Box<Node>, high: Box<Node>, negated: bool },
    Like { expr: Box<Node>, pattern: Box<Node>, negated: bool },
    Case { operand: Option<Box<Node>>, whens: Vec<(Node, Node)>, otherwise: Option<Box<Node>> },
    Cast(Box<Node>, SqlType),
    Call(Func, Vec<Node>),
}

impl Compiled {
    /// Compiles `e`, adding the top-level members it reads to `fields`.
    /// UDF calls cannot be compiled here (they run in plugins).
    pub fn new(e: &Expr, fields: &mut Fields) -> Result<Compiled, ExprError> {
        Ok(Compiled { root: compile(e, fields)? })
    }

    /// The value of the expression on a record whose members named in
    /// [`Fields::names`] are `found` (`None`: missing).
    pub fn eval<'a>(&'a self, found: &[Option<&'a RawValue>]) -> Result<Value<'a>, EvalError> {
        eval(&self.root, found)
    }

    /// The column this expression is, if it is nothing but a column: its
    /// top-level member's index and the path below it (its value can be
    /// copied from the record's text as it is).
    pub fn as_column(&self) -> Option<(usize, &[String])> {
        match &self.root {
            Node::Column { field, nested } => Some((*field, nested)),
            _ => None,
        }
    }
}

fn has_column(n: &Node) -> bool {
    match n {
        Node::Const(_) => false,
        Node::Column { .. } => true,
        Node::Neg(x) | Node::Not(x) | Node::IsNull(x, _) | Node::Cast(x, _) => has_column(x),
        Node::Arith(_, a, b) | Node::Cmp(_, a, b) | Node::And(a, b) | Node::Or(a, b) | Node::Concat(a, b) => has_column(a) || has_column(b),
        Node::In { expr, list, .. } => has_column(expr) || list.iter().any(has_column),
        Node::Between { expr, low, high, .. } => has_column(expr) || has_column(low) || has_column(high),
        Node::Like { expr, pattern, .. } => has_column(expr) || has_column(pattern),
        Node::Case { operand, whens, otherwise } => {
            operand.as_deref().is_some_and(has_column)
                || whens.iter().any(|(w, t)| has_column(w) || has_column(t))
                || otherwise.as_deref().is_some_and(has_column)
        }
        Node::Call(_, args) => args.iter().any(has_column),
    }
}

fn compile(e: &Expr, fields: &mut Fields) -> Result<Node, ExprError> {
    let mut c = |x: &Expr| compile(x, fields).map(Box::new);
    let node = match &e.kind {
        ExprKind::Column(path) if path.is_empty() => return Err(ExprError::new("a column needs a name".into(), e.span)),
        ExprKind::Column(path) => {
            let field = fields.index(&path[0]);
            return Ok(Node::Column { field, nested: path[1..].into() });
        }
        ExprKind::Literal(l) => {
            return Ok(Node::Const(match l {
                Literal::Null => Value::Null,
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Int(i) => Value::Int(*i),
                Literal::Float(f) => Value::Float(*f),
                Literal::Str(s) => Value::Str(Cow::Owned(s.clone())),
            }))
        }
        ExprKind::Neg(x) => Node::Neg(c(x)?),
        ExprKind::Not(x) => Node::Not(c(x)?),
        ExprKind::Binary { op, left, right } => {
            let (l, r) = (c(left)?, c(right)?);
            match op {
                BinOp::And => Node::And(l, r),
                BinOp::Or => Node::Or(l, r),
                BinOp::Concat => Node::Concat(l, r),
                op if op.is_arithmetic() => Node::Arith(*op, l, r),
                op => Node::Cmp(*op, l, r),
            }
        }
        ExprKind::IsNull { expr, negated } => Node::IsNull(c(expr)?, *negated),
        ExprKind::InList { expr, list, negated } => {
            Node::In { expr: c(expr)?, list: list.iter().map(|x| compile(x, fields)).collect::<Result<_, _>>()?, negated: *negated }
        }
        ExprKind::Between { expr, low, high, negated } => Node::Between { expr: c(expr)?, low: c(low)?, high: c(high)?, negated: *negated },
        ExprKind::Like { expr, pattern, negated } => Node::Like { expr: c(expr)?, pattern: c(pattern)?, negated: *negated },
        ExprKind::Case { operand, whens, otherwise } => Node::Case {
            operand: operand.as_deref().map(&mut c).transpose()?,
            whens: whens.iter().map(|(w, t)| Ok((compile(w, fields)?, compile(t, fields)?))).collect::<Result<_, ExprError>>()?,
            otherwise: otherwise.as_deref().map(|x| compile(x, fields).map(Box::new)).transpose()?,
        },
        ExprKind::Cast { expr, to } => Node::Cast(c(expr)?, *to),
        ExprKind::Call { func, args } if !arity_ok(*func, args.len()) => {
            return Err(ExprError::new(format!("{} cannot take {} argument(s)", func.name(), args.len()), e.span))
        }
        ExprKind::Call { func, args } => Node::Call(*func, args.iter().map(|x| compile(x, fields)).collect::<Result<_, _>>()?),
        ExprKind::Udf { name, .. } => {
            return Err(ExprError::new(format!("unknown function `{name}` (a UDF runs in a plugin: call it from a SQL job, not in a select step)"), e.span))
        }
    };
    // A subtree that reads no column is evaluated once, here (unless it
    // fails: then every row fails with its error, as written).
    if !has_column(&node) {
        if let Ok(v) = eval(&node, &[]) {
            return Ok(Node::Const(v.into_owned()));
        }
    }
    Ok(node)
}

/// Trees built by hand (not parsed) may call a function wrongly: refused
/// here rather than indexing past the arguments at run time.
pub(crate) fn arity_ok(func: Func, n: usize) -> bool {
    func.check_arity(n).is_ok()
}

fn borrow<'a>(v: &'a Value<'static>) -> Value<'a> {
    match v {
        Value::Str(s) => Value::Str(Cow::Borrowed(s)),
        Value::Json(s) => Value::Json(Cow::Borrowed(s)),
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Int(*i),
        Value::Float(f) => Value::Float(*f),
    }
}

fn eval<'a>(n: &'a Node, found: &[Option<&'a RawValue>]) -> R<'a> {
    match n {
        Node::Const(v) => Ok(borrow(v)),
        Node::Column { field, nested } => {
            let mut raw = found.get(*field).copied().flatten();
            for seg in nested.iter() {
                raw = raw.and_then(|r| value::member(r, seg));
            }
            match raw {
                Some(r) => Value::from_json(r.get()),
                None => Ok(Value::Null),
            }
        }
        Node::Neg(x) => value::negate(eval(x, found)?),
        Node::Not(x) => Ok(match eval(x, found)?.truth("NOT")? {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        }),
        Node::Arith(op, l, r) => value::arithmetic(*op, eval(l, found)?, eval(r, found)?),
        Node::Cmp(op, l, r) => value::comparison(*op, &eval(l, found)?, &eval(r, found)?),
        Node::And(l, r) => {
            // FALSE wins over NULL; the right side is not evaluated after FALSE.
            let a = eval(l, found)?.truth("AND")?;
            if a == Some(false) {
                return Ok(Value::Bool(false));
            }
            Ok(match (a, eval(r, found)?.truth("AND")?) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            })
        }
        Node::Or(l, r) => {
            let a = eval(l, found)?.truth("OR")?;
            if a == Some(true) {
                return Ok(Value::Bool(true));
            }
            Ok(match (a, eval(r, found)?.truth("OR")?) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            })
        }
        Node::Concat(l, r) => value::concat(&[eval(l, found)?, eval(r, found)?]),
        Node::IsNull(x, negated) => Ok(Value::Bool(eval(x, found)?.is_null() != *negated)),
        Node::In { expr, list, negated } => {
            // Every item is evaluated up to the first match (an error in
            // one fails the row even when `x` is NULL), as `x = a OR x = b`.
            let x = eval(expr, found)?;
            let mut saw_null = x.is_null();
            for item in list {
                let v = eval(item, found)?;
                if v.is_null() || x.is_null() {
                    saw_null = true;
                } else if value::compare(&x, &v)?.is_eq() {
                    return Ok(Value::Bool(!negated));
                }
            }
            Ok(if saw_null { Value::Null } else { Value::Bool(*negated) })
        }
        Node::Between { expr, low, high, negated } => {
            let x = eval(expr, found)?;
            let ge = value::comparison(BinOp::Ge, &x, &eval(low, found)?)?.truth("BETWEEN")?;
            let le = value::comparison(BinOp::Le, &x, &eval(high, found)?)?.truth("BETWEEN")?;
            let both = match (ge, le) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            Ok(match both {
                Some(b) => Value::Bool(b != *negated),
                None => Value::Null,
            })
        }
        Node::Like { expr, pattern, negated } => {
            let x = eval(expr, found)?;
            let p = eval(pattern, found)?;
            match (value::string(&x, "LIKE")?, value::string(&p, "LIKE")?) {
                (Some(x), Some(p)) => Ok(Value::Bool(value::like(x, p) != *negated)),
                _ => Ok(Value::Null),
            }
        }
        Node::Case { operand, whens, otherwise } => {
            let subject = match operand {
                Some(x) => Some(eval(x, found)?),
                None => None,
            };
            for (w, t) in whens {
                let hit = match &subject {
                    Some(s) => value::comparison(BinOp::Eq, s, &eval(w, found)?)?.truth("CASE")?,
                    None => eval(w, found)?.truth("WHEN")?,
                };
                if hit == Some(true) {
                    return eval(t, found);
                }
            }
            match otherwise {
                Some(x) => eval(x, found),
                None => Ok(Value::Null),
            }
        }
        Node::Cast(x, to) => value::cast(eval(x, found)?, *to),
        Node::Call(func, args) => call(*func, args, found),
    }
}

fn call<'a>(func: Func, args: &'a [Node], found: &[Option<&'a RawValue>]) -> R<'a> {
    let arg = |i: usize| eval(&args[i], found);
    let name = func.name();
    match func {
        Func::Coalesce => {
            for a in args {
                let v = eval(a, found)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            Ok(Value::Null)
        }
        Func::If => match arg(0)?.truth("IF")? {
            Some(true) => arg(1),
            _ => arg(2),
        },
        Func::Nullif => {
            let a = arg(0)?;
            let b = arg(1)?;
            if !a.is_null() && !b.is_null() && value::compare(&a, &b)?.is_eq() {
                Ok(Value::Null)
            } else {
                Ok(a)
            }
        }
        Func::Concat => {
            let vals = args.iter().map(|a| eval(a, found)).collect::<Result<Vec<_>, _>>()?;
            value::concat(&vals)
        }
        Func::Abs => value::abs(arg(0)?),
        Func::Floor => value::rounding(arg(0)?, false),
        Func::Ceil => value::rounding(arg(0)?, true),
        Func::Round => {
            let digits = match args.get(1) {
                Some(d) => match value::int(&eval(d, found)?, name)? {
                    Some(d) => d,
                    None => return Ok(Value::Null),
                },
                None => 0,
            };
            value::round(arg(0)?, digits)
        }
        _ => {
            // The string functions: NULL if any argument is.
            let vals = args.iter().map(|a| eval(a, found)).collect::<Result<Vec<_>, _>>()?;
            string_call(func, &vals)
        }
    }
}

/// The string functions on evaluated arguments (shared with the reference
/// evaluator).
pub(crate) fn string_call<'a>(func: Func, vals: &[Value<'a>]) -> R<'a> {
    let name = func.name();
    if vals.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let s = |i: usize| value::string(&vals[i], name).map(|s| s.unwrap_or_default());
    let owned = |s: String| Ok(Value::Str(Cow::Owned(s)));
    match func {
        Func::Lower => owned(s(0)?.to_lowercase()),
        Func::Upper => owned(s(0)?.to_uppercase()),
        Func::CharLength => Ok(Value::Int(s(0)?.chars().count() as i64)),
        Func::Replace => owned(s(0)?.replace(s(1)?, s(2)?)),
        Func::Position => Ok(Value::Int(value::position(s(0)?, s(1)?))),
        Func::Substring => {
            let start = value::int(&vals[1], name)?.unwrap_or(1);
            let len = match vals.get(2) {
                Some(v) => value::int(v, name)?,
                None => None,
            };
            owned(value::substring(s(0)?, start, len)?)
        }
        Func::Trim | Func::Ltrim | Func::Rtrim => {
            let chars = if vals.len() > 1 { Some(s(1)?) } else { None };
            let t = value::trim(s(0)?, chars, func != Func::Rtrim, func != Func::Ltrim);
            owned(t.to_string())
        }
        other => Err(EvalError(format!("{} is not a string function", other.name()))),
    }
}
