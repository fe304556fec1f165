//! sqlparser's expression tree to ours: what we support is converted with
//! its span, anything else refused with a clear message at its span.

use sqlparser::ast::{self as sql, Spanned};

use super::ast::{BinOp, Expr, ExprKind, Func, Literal, Span};
use super::types::SqlType;
use super::ExprError;

/// Converts an expression sqlparser parsed (spans kept as they are:
/// relative to the text it was parsed from).
pub fn from_sql(e: &sql::Expr) -> Result<Expr, ExprError> {
    let span: Span = e.span().into();
    let unsupported = |what: &str| Err(ExprError::new(format!("{what} is not supported in an expression"), span));
    let b = |x: &sql::Expr| from_sql(x).map(Box::new);
    let kind = match e {
        sql::Expr::Identifier(id) => ExprKind::Column(vec![id.value.clone()]),
        sql::Expr::CompoundIdentifier(ids) => ExprKind::Column(ids.iter().map(|i| i.value.clone()).collect()),
        sql::Expr::Value(v) => ExprKind::Literal(literal(&v.value, false, span)?),
        sql::Expr::Nested(x) => return from_sql(x).map(|x| Expr { span, ..x }),
        sql::Expr::UnaryOp { op, expr } => match op {
            sql::UnaryOperator::Minus => match &**expr {
                // `-5` is one literal (so that i64::MIN can be written).
                sql::Expr::Value(v @ sql::ValueWithSpan { value: sql::Value::Number(..), .. }) => {
                    ExprKind::Literal(literal(&v.value, true, span)?)
                }
                _ => ExprKind::Neg(b(expr)?),
            },
            sql::UnaryOperator::Plus => return from_sql(expr),
            sql::UnaryOperator::Not => ExprKind::Not(b(expr)?),
            other => return unsupported(&format!("the operator `{other}`")),
        },
        sql::Expr::BinaryOp { left, op, right } => {
            let op = match op {
                sql::BinaryOperator::Plus => BinOp::Add,
                sql::BinaryOperator::Minus => BinOp::Sub,
                sql::BinaryOperator::Multiply => BinOp::Mul,
                sql::BinaryOperator::Divide => BinOp::Div,
                sql::BinaryOperator::Modulo => BinOp::Mod,
                sql::BinaryOperator::Eq => BinOp::Eq,
                sql::BinaryOperator::NotEq => BinOp::Ne,
                sql::BinaryOperator::Lt => BinOp::Lt,
                sql::BinaryOperator::LtEq => BinOp::Le,
                sql::BinaryOperator::Gt => BinOp::Gt,
                sql::BinaryOperator::GtEq => BinOp::Ge,
                sql::BinaryOperator::And => BinOp::And,
                sql::BinaryOperator::Or => BinOp::Or,
                sql::BinaryOperator::StringConcat => BinOp::Concat,
                other => return unsupported(&format!("the operator `{other}`")),
            };
            ExprKind::Binary { op, left: b(left)?, right: b(right)? }
        }
        sql::Expr::IsNull(x) => ExprKind::IsNull { expr: b(x)?, negated: false },
        sql::Expr::IsNotNull(x) => ExprKind::IsNull { expr: b(x)?, negated: true },
        sql::Expr::In { expr, target, negated, .. } => {
            let sql::InTarget::List(list) = target else { return unsupported("IN with a subquery or a table") };
            ExprKind::InList { expr: b(expr)?, list: list.iter().map(from_sql).collect::<Result<_, _>>()?, negated: *negated }
        }
        sql::Expr::Between { expr, negated, low, high } => {
            ExprKind::Between { expr: b(expr)?, low: b(low)?, high: b(high)?, negated: *negated }
        }
        sql::Expr::Like { negated, any, expr, pattern, escape_char } => {
            if *any || escape_char.is_some() {
                return unsupported("LIKE ANY / LIKE .. ESCAPE");
            }
            ExprKind::Like { expr: b(expr)?, pattern: b(pattern)?, negated: *negated }
        }
        sql::Expr::Case { operand, conditions, else_result, .. } => ExprKind::Case {
            operand: operand.as_deref().map(from_sql).transpose()?.map(Box::new),
            whens: conditions.iter().map(|w| Ok((from_sql(&w.condition)?, from_sql(&w.result)?))).collect::<Result<_, ExprError>>()?,
            otherwise: else_result.as_deref().map(from_sql).transpose()?.map(Box::new),
        },
        sql::Expr::Cast { kind, expr, data_type, format } => {
            if !matches!(kind, sql::CastKind::Cast | sql::CastKind::DoubleColon) || format.is_some() {
                return unsupported("this form of CAST");
            }
            ExprKind::Cast { expr: b(expr)?, to: cast_type(data_type, span)? }
        }
        sql::Expr::Ceil { expr, field } | sql::Expr::Floor { expr, field } => {
            if !matches!(field, sql::CeilFloorKind::DateTimeField(sql::DateTimeField::NoDateTime)) {
                return unsupported("CEIL / FLOOR with a unit or a scale");
            }
            let func = if matches!(e, sql::Expr::Ceil { .. }) { Func::Ceil } else { Func::Floor };
            ExprKind::Call { func, args: vec![from_sql(expr)?] }
        }
        sql::Expr::Position { expr, r#in } => ExprKind::Call { func: Func::Position, args: vec![from_sql(expr)?, from_sql(r#in)?] },
        sql::Expr::Substring { expr, substring_from, substring_for, .. } => {
            let mut args = vec![from_sql(expr)?];
            match substring_from {
                Some(from) => args.push(from_sql(from)?),
                None => return Err(ExprError::new("SUBSTRING needs a start position".into(), span)),
            }
            if let Some(n) = substring_for {
                args.push(from_sql(n)?);
            }
            ExprKind::Call { func: Func::Substring, args }
        }
        sql::Expr::Trim { trim_where, trim_what, expr, trim_characters } => {
            if trim_characters.is_some() {
                return unsupported("TRIM with a list of characters");
            }
            let func = match trim_where {
                None | Some(sql::TrimWhereField::Both) => Func::Trim,
                Some(sql::TrimWhereField::Leading) => Func::Ltrim,
                Some(sql::TrimWhereField::Trailing) => Func::Rtrim,
            };
            let mut args = vec![from_sql(expr)?];
            if let Some(what) = trim_what {
                args.push(from_sql(what)?);
            }
            ExprKind::Call { func, args }
        }
        sql::Expr::CompoundFieldAccess { root, access_chain } => {
            // `user.id`: sqlparser reads a keyword followed by a field this way.
            let ExprKind::Column(mut path) = from_sql(root)?.kind else { return unsupported(&format!("`{e}`")) };
            for a in access_chain {
                match a {
                    sql::AccessExpr::Dot(sql::Expr::Identifier(id)) => path.push(id.value.clone()),
                    _ => return unsupported(&format!("the access `{a}`")),
                }
            }
            ExprKind::Column(path)
        }
        sql::Expr::Function(f) => return function(f, span),
        sql::Expr::Subquery(_) | sql::Expr::Exists { .. } => return unsupported("a subquery"),
        sql::Expr::Interval(_) => return unsupported("an INTERVAL"),
        _ => return unsupported(&format!("`{e}`")),
    };
    Ok(Expr { kind, span })
}

fn function(f: &sql::Function, span: Span) -> Result<Expr, ExprError> {
    let name = match f.name.0.as_slice() {
        [sql::ObjectNamePart::Identifier(id)] => id.value.clone(),
        _ => return Err(ExprError::new(format!("`{}` is not a function name", f.name), span)),
    };
    let args = match &f.args {
        sql::FunctionArguments::List(list) => {
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return Err(ExprError::new(format!("DISTINCT / ORDER BY inside `{name}(..)` is not supported"), span));
            }
            list.args
                .iter()
                .map(|a| match a {
                    sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(x)) => from_sql(x),
                    _ => Err(ExprError::new(format!("`{a}` is not supported as an argument"), span)),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        // A keyword without parentheses (`user`, `value`) names a field,
        // except the SQL clock functions, which a stream job cannot mean.
        sql::FunctionArguments::None if !name.to_ascii_uppercase().starts_with("CURRENT_") && !name.to_ascii_uppercase().starts_with("LOCALTIME") => {
            return Ok(Expr { kind: ExprKind::Column(vec![name]), span })
        }
        sql::FunctionArguments::None => return Err(ExprError::new(format!("`{name}` is not supported in an expression"), span)),
        sql::FunctionArguments::Subquery(_) => return Err(ExprError::new("a subquery is not supported in an expression".into(), span)),
    };
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() || !matches!(f.parameters, sql::FunctionArguments::None) {
        return Err(ExprError::new(format!("`{name}(..)` with FILTER / OVER / WITHIN GROUP is not supported (aggregates and windows are not expressions)"), span));
    }
    let kind = match Func::by_name(&name) {
        Some(func) => {
            func.check_arity(args.len()).map_err(|m| ExprError::new(m, span))?;
            ExprKind::Call { func, args }
        }
        None => ExprKind::Udf { name, args },
    };
    Ok(Expr { kind, span })
}

fn literal(v: &sql::Value, negative: bool, span: Span) -> Result<Literal, ExprError> {
    Ok(match v {
        sql::Value::Number(text, _) => {
            let text = if negative { format!("-{text}") } else { text.clone() };
            if text.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
                match text.parse::<i64>() {
                    Ok(i) => Literal::Int(i),
                    Err(_) => return Err(ExprError::new(format!("the integer {text} does not fit in a BIGINT"), span)),
                }
            } else {
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => Literal::Float(f),
                    _ => return Err(ExprError::new(format!("`{text}` is not a finite number"), span)),
                }
            }
        }
        sql::Value::SingleQuotedString(s) => Literal::Str(s.clone()),
        sql::Value::Boolean(b) => Literal::Bool(*b),
        sql::Value::Null => Literal::Null,
        sql::Value::DoubleQuotedString(s) => {
            return Err(ExprError::new(format!("\"{s}\" is a double-quoted string: write a string as '...' (a double-quoted name is a column)"), span))
        }
        other => return Err(ExprError::new(format!("the literal `{other}` is not supported"), span)),
    })
}

fn cast_type(t: &sql::DataType, span: Span) -> Result<SqlType, ExprError> {
    use sql::DataType as D;
    Ok(match t {
        D::Boolean | D::Bool => SqlType::Boolean,
        D::BigInt(_) | D::Int(_) | D::Integer(_) | D::Int64 => SqlType::BigInt,
        D::Double(_) | D::DoublePrecision | D::Float64 | D::Float(_) | D::Real => SqlType::Double,
        D::String(_) | D::Varchar(_) | D::Text => SqlType::String,
        D::Timestamp(..) => SqlType::Timestamp,
        D::JSON => SqlType::Any,
        other => return Err(ExprError::new(format!("CAST to {other} is not supported (BOOLEAN, BIGINT, INT, DOUBLE, STRING, VARCHAR, TIMESTAMP)"), span)),
    })
}
