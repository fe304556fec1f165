//! SQL types and the type checker: what an expression yields given the
//! types of the columns it reads and the signatures of the UDFs it calls.

use std::collections::BTreeMap;
use std::fmt;

use super::ast::{BinOp, Expr, ExprKind, Func, Literal};
use super::ExprError;

/// The type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SqlType {
    Boolean,
    /// 64-bit integer (INT, INTEGER and BIGINT are all this).
    BigInt,
    Double,
    /// Text (VARCHAR, STRING).
    String,
    /// Milliseconds since the Unix epoch (a BIGINT at run time).
    Timestamp,
    /// Unknown until run time: a JSON value of any kind (a field with no
    /// declared type, an object or an array). Checked when evaluated.
    Any,
    /// The type of the NULL literal: fits wherever any type does.
    Null,
}

impl SqlType {
    /// The name written in a CAST.
    pub fn sql_name(self) -> &'static str {
        match self {
            SqlType::Boolean => "BOOLEAN",
            SqlType::BigInt => "BIGINT",
            SqlType::Double => "DOUBLE",
            SqlType::String => "STRING",
            SqlType::Timestamp => "TIMESTAMP",
            SqlType::Any => "JSON",
            SqlType::Null => "NULL",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, SqlType::BigInt | SqlType::Double | SqlType::Timestamp | SqlType::Any | SqlType::Null)
    }

    fn fits(self, want: SqlType) -> bool {
        self == want
            || matches!(self, SqlType::Any | SqlType::Null)
            || want == SqlType::Any
            || (want == SqlType::Double && self == SqlType::BigInt)
            || (matches!(want, SqlType::Timestamp | SqlType::BigInt) && matches!(self, SqlType::Timestamp | SqlType::BigInt))
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// One signature of a UDF: its parameter types and its result type.
#[derive(Clone, Debug, PartialEq)]
pub struct UdfSignature {
    pub params: Vec<SqlType>,
    pub returns: SqlType,
}

/// What an expression may read: the types of columns (by path) and the
/// UDFs it may call. Column names and UDF names are case-sensitive as
/// written (UDF names are matched case-insensitively).
#[derive(Clone, Debug, Default)]
pub struct Schema {
    columns: BTreeMap<Vec<String>, SqlType>,
    /// Whether a column not listed is an error (false: it is [`SqlType::Any`]).
    strict: bool,
    udfs: BTreeMap<String, Vec<UdfSignature>>,
}

impl Schema {
    /// A schema where every column exists and is of type ANY (the `select`
    /// step's: events are schemaless JSON).
    pub fn open() -> Self {
        Schema::default()
    }

    /// A schema where only the columns added exist.
    pub fn strict() -> Self {
        Schema { strict: true, ..Schema::default() }
    }

    /// Declares the column at `path` (`["user", "id"]`). A column of type
    /// ANY has nested columns of type ANY.
    pub fn column(mut self, path: &[&str], ty: SqlType) -> Self {
        self.columns.insert(path.iter().map(|s| s.to_string()).collect(), ty);
        self
    }

    /// Adds a signature of the UDF `name` (several make overloads).
    pub fn udf(mut self, name: &str, params: Vec<SqlType>, returns: SqlType) -> Self {
        self.udfs.entry(name.to_ascii_lowercase()).or_default().push(UdfSignature { params, returns });
        self
    }

    /// The type of the column at `path`, None if it does not exist.
    pub fn column_type(&self, path: &[String]) -> Option<SqlType> {
        if let Some(t) = self.columns.get(path) {
            return Some(*t);
        }
        // Inside a JSON (ANY) column everything is ANY.
        for n in (1..path.len()).rev() {
            if let Some(t) = self.columns.get(&path[..n]) {
                return (*t == SqlType::Any).then_some(SqlType::Any);
            }
        }
        (!self.strict).then_some(SqlType::Any)
    }

    pub fn udf_signatures(&self, name: &str) -> Option<&[UdfSignature]> {
        self.udfs.get(&name.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

/// The type `e` yields over `schema`, or the first problem (with its span).
pub fn typecheck(e: &Expr, schema: &Schema) -> Result<SqlType, ExprError> {
    let err = |m: String| Err(ExprError::new(m, e.span));
    let expect = |x: &Expr, want: SqlType, what: &str| -> Result<SqlType, ExprError> {
        let t = typecheck(x, schema)?;
        if t.fits(want) {
            Ok(t)
        } else {
            Err(ExprError::new(format!("{what} needs {want}, not {t}"), x.span))
        }
    };
    let numeric = |x: &Expr, what: &str| -> Result<SqlType, ExprError> {
        let t = typecheck(x, schema)?;
        if t.numeric() {
            Ok(t)
        } else {
            Err(ExprError::new(format!("{what} needs a number, not {t}"), x.span))
        }
    };
    Ok(match &e.kind {
        ExprKind::Column(path) => match schema.column_type(path) {
            Some(t) => t,
            None => return err(format!("unknown column `{}`", path.join("."))),
        },
        ExprKind::Literal(l) => match l {
            Literal::Null => SqlType::Null,
            Literal::Bool(_) => SqlType::Boolean,
            Literal::Int(_) => SqlType::BigInt,
            Literal::Float(_) => SqlType::Double,
            Literal::Str(_) => SqlType::String,
        },
        ExprKind::Neg(x) => numeric(x, "`-`")?,
        ExprKind::Not(x) => {
            expect(x, SqlType::Boolean, "NOT")?;
            SqlType::Boolean
        }
        ExprKind::Binary { op, left, right } => match op {
            BinOp::And | BinOp::Or => {
                expect(left, SqlType::Boolean, op.symbol())?;
                expect(right, SqlType::Boolean, op.symbol())?;
                SqlType::Boolean
            }
            BinOp::Concat => {
                scalar(left, schema)?;
                scalar(right, schema)?;
                SqlType::String
            }
            op if op.is_arithmetic() => {
                let what = format!("`{}`", op.symbol());
                let l = numeric(left, &what)?;
                let r = numeric(right, &what)?;
                arithmetic_type(l, r)
            }
            _ => {
                comparable(left, right, schema)?;
                SqlType::Boolean
            }
        },
        ExprKind::IsNull { expr, .. } => {
            typecheck(expr, schema)?;
            SqlType::Boolean
        }
        ExprKind::InList { expr, list, .. } => {
            for x in list {
                comparable(expr, x, schema)?;
            }
            SqlType::Boolean
        }
        ExprKind::Between { expr, low, high, .. } => {
            comparable(expr, low, schema)?;
            comparable(expr, high, schema)?;
            SqlType::Boolean
        }
        ExprKind::Like { expr, pattern, .. } => {
            expect(expr, SqlType::String, "LIKE")?;
            expect(pattern, SqlType::String, "LIKE")?;
            SqlType::Boolean
        }
        ExprKind::Case { operand, whens, otherwise } => {
            let mut result = SqlType::Null;
            for (w, t) in whens {
                match operand {
                    Some(x) => comparable(x, w, schema)?,
                    None => {
                        expect(w, SqlType::Boolean, "WHEN")?;
                    }
                }
                result = unify(result, typecheck(t, schema)?, t)?;
            }
            if let Some(x) = otherwise {
                result = unify(result, typecheck(x, schema)?, x)?;
            }
            result
        }
        ExprKind::Cast { expr, to } => {
            let from = typecheck(expr, schema)?;
            let ok = match to {
                SqlType::String | SqlType::Any => true,
                SqlType::Boolean | SqlType::BigInt | SqlType::Double => {
                    !matches!(from, SqlType::Timestamp) || *to != SqlType::Boolean
                }
                SqlType::Timestamp => matches!(from, SqlType::BigInt | SqlType::Timestamp | SqlType::Any | SqlType::Null),
                SqlType::Null => false,
            };
            if !ok {
                return err(format!("cannot cast {from} to {to}"));
            }
            *to
        }
        ExprKind::Call { func, args } => call_type(*func, args, schema, e)?,
        ExprKind::Udf { name, args } => {
            let Some(sigs) = schema.udf_signatures(name) else {
                return err(format!("unknown function `{name}`"));
            };
            let types = args.iter().map(|a| typecheck(a, schema)).collect::<Result<Vec<_>, _>>()?;
            match sigs.iter().find(|s| s.params.len() == types.len() && types.iter().zip(&s.params).all(|(t, p)| t.fits(*p))) {
                Some(s) => s.returns,
                None => {
                    let given: Vec<String> = types.iter().map(ToString::to_string).collect();
                    let known: Vec<String> = sigs
                        .iter()
                        .map(|s| format!("{name}({})", s.params.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")))
                        .collect();
                    return err(format!("no signature of `{name}` takes ({}); it has {}", given.join(", "), known.join(", ")));
                }
            }
        }
    })
}

fn arithmetic_type(l: SqlType, r: SqlType) -> SqlType {
    match (l, r) {
        (SqlType::Double, _) | (_, SqlType::Double) => SqlType::Double,
        (SqlType::Any, _) | (_, SqlType::Any) => SqlType::Any,
        _ => SqlType::BigInt,
    }
}

/// A value that is not a JSON object or array (which have no SQL text).
fn scalar(x: &Expr, schema: &Schema) -> Result<SqlType, ExprError> {
    typecheck(x, schema)
}

fn comparable(a: &Expr, b: &Expr, schema: &Schema) -> Result<(), ExprError> {
    let (l, r) = (typecheck(a, schema)?, typecheck(b, schema)?);
    if l.fits(r) || r.fits(l) || (l.numeric() && r.numeric()) {
        Ok(())
    } else {
        Err(ExprError::new(format!("cannot compare {l} with {r}"), b.span))
    }
}

/// The type of branches of a CASE / COALESCE / IF together.
fn unify(acc: SqlType, t: SqlType, at: &Expr) -> Result<SqlType, ExprError> {
    Ok(match (acc, t) {
        (SqlType::Null, t) | (t, SqlType::Null) => t,
        (a, b) if a == b => a,
        (SqlType::Any, _) | (_, SqlType::Any) => SqlType::Any,
        (SqlType::BigInt, SqlType::Double) | (SqlType::Double, SqlType::BigInt) => SqlType::Double,
        (a, b) => return Err(ExprError::new(format!("this is {b} where {a} is expected (all branches must have one type)"), at.span)),
    })
}

fn call_type(func: Func, args: &[Expr], schema: &Schema, e: &Expr) -> Result<SqlType, ExprError> {
    func.check_arity(args.len()).map_err(|m| ExprError::new(m, e.span))?;
    let arg = |i: usize, want: SqlType| -> Result<SqlType, ExprError> {
        let t = typecheck(&args[i], schema)?;
        if t.fits(want) || (want == SqlType::Double && t.numeric()) {
            Ok(t)
        } else {
            Err(ExprError::new(format!("argument {} of {} needs {want}, not {t}", i + 1, func.name()), args[i].span))
        }
    };
    Ok(match func {
        Func::Lower | Func::Upper => {
            arg(0, SqlType::String)?;
            SqlType::String
        }
        Func::Concat => {
            for a in args {
                typecheck(a, schema)?;
            }
            SqlType::String
        }
        Func::Substring => {
            arg(0, SqlType::String)?;
            for i in 1..args.len() {
                arg(i, SqlType::BigInt)?;
            }
            SqlType::String
        }
        Func::Trim | Func::Ltrim | Func::Rtrim => {
            for i in 0..args.len() {
                arg(i, SqlType::String)?;
            }
            SqlType::String
        }
        Func::CharLength => {
            arg(0, SqlType::String)?;
            SqlType::BigInt
        }
        Func::Replace => {
            for i in 0..3 {
                arg(i, SqlType::String)?;
            }
            SqlType::String
        }
        Func::Position => {
            arg(0, SqlType::String)?;
            arg(1, SqlType::String)?;
            SqlType::BigInt
        }
        Func::Coalesce => {
            let mut t = SqlType::Null;
            for a in args {
                t = unify(t, typecheck(a, schema)?, a)?;
            }
            t
        }
        Func::If => {
            arg(0, SqlType::Boolean)?;
            let t = unify(SqlType::Null, typecheck(&args[1], schema)?, &args[1])?;
            unify(t, typecheck(&args[2], schema)?, &args[2])?
        }
        Func::Nullif => {
            comparable(&args[0], &args[1], schema)?;
            typecheck(&args[0], schema)?
        }
        Func::Abs | Func::Floor | Func::Ceil => match arg(0, SqlType::Double)? {
            SqlType::Null => SqlType::Null,
            t => t,
        },
        Func::Round => {
            let t = arg(0, SqlType::Double)?;
            if args.len() > 1 {
                arg(1, SqlType::BigInt)?;
            }
            t
        }
    })
}
