//! CREATE TABLE → a table of the catalog, and a table → the pipeline.json
//! entry of the role it plays (source, sink, lookup table).
//!
//! Options are `'key' = value` with the pipeline.json field names of the
//! connector; a dotted key nests (`'cache.ttl_ms'`), `'properties.X'` is a
//! librdkafka property. Each connector accepts a fixed list per role, so an
//! unknown option is an error at its key.

use serde_json::{json, Map, Value};
use sqlparser::ast::{ColumnOption, CreateTable, CreateTableOptions, DataType, Expr, SqlOption, Value as SqlValue};
use sqlparser::tokenizer::Span;

use super::error::SqlError;
use super::expr::SqlType;
use super::tokens::WatermarkDecl;

/// A declared column.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub span: Span,
    /// Its JSON type in the record schema (`string`, `int`, ...).
    pub json_type: &'static str,
    /// Its type in expressions (what the query's type check sees).
    pub sql_type: SqlType,
    pub not_null: bool,
}

/// One `'key' = value` of WITH.
#[derive(Clone, Debug)]
pub struct TableOption {
    pub key: String,
    pub key_span: Span,
    pub value: String,
    /// Whether the value was a number literal rather than a string.
    pub number: bool,
    pub value_span: Span,
}

/// A table of the catalog.
#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    pub span: Span,
    pub columns: Vec<Column>,
    pub watermark: Option<WatermarkDecl>,
    pub connector: String,
    pub connector_span: Span,
    pub options: Vec<TableOption>,
}

/// What a table is used as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Sink,
    Lookup,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Source => "a source (read in FROM)",
            Role::Sink => "a sink (INSERT INTO)",
            Role::Lookup => "a lookup table (FOR SYSTEM_TIME AS OF PROCTIME())",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// Comma-separated.
    List,
    /// `'properties.X'`: a map of strings.
    Map,
    /// Kafka's start: earliest, latest or a timestamp in ms.
    Start,
}
use Kind::*;

const SOURCE_COMMON: &[(&str, Kind)] =
    &[("key_field", Str), ("max_record_bytes", Int), ("idle_timeout_ms", Int), ("on_error", Str), ("retry.initial_ms", Int), ("retry.max_ms", Int), ("retry.max_attempts", Int)];
const LOOKUP_STEP: &[(&str, Kind)] = &[
    ("key_template", Str),
    ("on_miss", Str),
    ("timeout_ms", Int),
    ("retries", Int),
    ("backoff_ms", Int),
    ("cache.max_bytes", Int),
    ("cache.ttl_ms", Int),
    ("max_in_flight", Int),
    ("max_keys_per_request", Int),
    ("unordered", Bool),
];

/// The options of a connector in a role (`None`: it cannot play it), the
/// step's own options apart for lookups.
fn options(connector: &str, role: Role) -> Option<Vec<(&'static str, Kind)>> {
    let own: &[(&str, Kind)] = match (connector, role) {
        ("file", Role::Source) => &[("path", Str)],
        ("file", Role::Sink) => &[("path", Str), ("format", Str)],
        ("file", Role::Lookup) => &[("path", Str)],
        ("stdin", Role::Source) => &[],
        ("stdout", Role::Sink) => &[("format", Str)],
        ("null", Role::Sink) => &[],
        ("generator", Role::Source) => &[
            ("shape", Str),
            ("seed", Int),
            ("rate", Int),
            ("count", Int),
            ("dirty_ratio", Float),
            ("event_time.start_ms", Int),
            ("event_time.step_ms", Float),
            ("impressions.start_ms", Int),
            ("impressions.step_ms", Float),
            ("impressions.count", Int),
            ("impressions.max_delay_ms", Int),
        ],
        ("kafka", Role::Source) => &[
            ("brokers", Str),
            ("topic", List),
            ("topics", List),
            ("group_id", Str),
            ("start", Start),
            ("stop_at_end", Bool),
            ("partition_discovery_ms", Int),
            ("headers", Bool),
            ("properties", Map),
        ],
        ("kafka", Role::Sink) => &[("brokers", Str), ("topic", Str), ("key", Str), ("delivery", Str), ("transactional_id", Str), ("properties", Map)],
        ("redis", Role::Lookup) => &[("url", Str), ("nodes", List), ("values", Str)],
        ("postgres", Role::Lookup) => &[("url", Str), ("query", Str)],
        _ => return None,
    };
    let mut all = own.to_vec();
    match role {
        Role::Source => all.extend_from_slice(SOURCE_COMMON),
        Role::Lookup => all.extend_from_slice(LOOKUP_STEP),
        Role::Sink => {}
    }
    Some(all)
}

const CONNECTORS: &[&str] = &["file", "kafka", "stdin", "stdout", "null", "generator", "redis", "postgres"];

/// The JSON type of a SQL column type.
fn json_type(t: &DataType) -> &'static str {
    let text = t.to_string().to_ascii_uppercase();
    let base = text.split(['(', '<', ' ']).next().unwrap_or("");
    match base {
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" | "CHARACTER" => "string",
        "INT" | "INTEGER" | "BIGINT" | "SMALLINT" | "TINYINT" | "TIMESTAMP" | "INT64" | "INT32" => "int",
        "DOUBLE" | "FLOAT" | "REAL" | "DECIMAL" | "NUMERIC" | "FLOAT64" => "number",
        "BOOLEAN" | "BOOL" => "bool",
        "JSON" | "MAP" | "ROW" | "STRUCT" | "OBJECT" => "object",
        "ARRAY" => "array",
        _ if text.ends_with("[]") => "array",
        _ => "any",
    }
}

/// The expression type of a SQL column type (TIMESTAMP: milliseconds).
fn sql_type(t: &DataType) -> SqlType {
    match json_type(t) {
        "string" => SqlType::String,
        "int" if t.to_string().to_ascii_uppercase().starts_with("TIMESTAMP") => SqlType::Timestamp,
        "int" => SqlType::BigInt,
        "number" => SqlType::Double,
        "bool" => SqlType::Boolean,
        _ => SqlType::Any,
    }
}

impl Table {
    /// The table of a CREATE TABLE (its WATERMARK from the token pass).
    pub fn from_ddl(ct: &CreateTable, watermarks: &[WatermarkDecl]) -> Result<Table, Vec<SqlError>> {
        let mut errors = Vec::new();
        let last = ct.name.0.last().and_then(|p| p.as_ident()).cloned();
        let Some(name_ident) = last else { return Err(vec![SqlError::new(Span::empty(), "a table needs a name")]) };
        let span = name_ident.span;
        let columns: Vec<Column> = ct
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.value.clone(),
                span: c.name.span,
                json_type: json_type(&c.data_type),
                sql_type: sql_type(&c.data_type),
                not_null: c.options.iter().any(|o| matches!(o.option, ColumnOption::NotNull)),
            })
            .collect();
        let watermark = watermarks.iter().find(|w| w.table_at == span.start).cloned();
        if let Some(w) = &watermark {
            match columns.iter().find(|c| c.name == w.column) {
                None => errors.push(SqlError::new(w.column_span, format!("no column `{}` in table `{}` for the watermark", w.column, name_ident.value))),
                Some(c) if !matches!(c.json_type, "int" | "number" | "any") => errors.push(SqlError::new(
                    w.column_span,
                    format!("the watermark's column `{}` must hold milliseconds since the epoch (BIGINT or TIMESTAMP)", w.column),
                )),
                _ => {}
            }
        }
        let list = match &ct.table_options {
            CreateTableOptions::With(l) | CreateTableOptions::Options(l) | CreateTableOptions::Plain(l) | CreateTableOptions::TableProperties(l) => l.clone(),
            CreateTableOptions::None => Vec::new(),
        };
        let mut options = Vec::new();
        for o in &list {
            let SqlOption::KeyValue { key, value } = o else {
                errors.push(SqlError::new(span, format!("table `{}`: options must be `'key' = 'value'`", name_ident.value)));
                continue;
            };
            let key_span = key.0.first().and_then(|p| p.as_ident()).map(|i| i.span).unwrap_or(span);
            let key = key.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.clone()).collect::<Vec<_>>().join(".");
            let (value, number, value_span) = match value {
                Expr::Value(v) => match &v.value {
                    SqlValue::SingleQuotedString(s) => (s.clone(), false, v.span),
                    SqlValue::Number(n, _) => (n.to_string(), true, v.span),
                    SqlValue::Boolean(b) => (b.to_string(), true, v.span),
                    _ => {
                        errors.push(SqlError::new(v.span, format!("option `{key}`: expected a string or a number")));
                        continue;
                    }
                },
                other => {
                    use sqlparser::ast::Spanned;
                    errors.push(SqlError::new(other.span(), format!("option `{key}`: expected a string or a number")));
                    continue;
                }
            };
            if options.iter().any(|o: &TableOption| o.key == key) {
                errors.push(SqlError::new(key_span, format!("option `{key}` given twice")));
            }
            options.push(TableOption { key, key_span, value, number, value_span });
        }
        let (connector, connector_span) = match options.iter().position(|o| o.key == "connector") {
            Some(i) => {
                let o = options.remove(i);
                if !CONNECTORS.contains(&o.value.as_str()) {
                    errors.push(SqlError::new(o.value_span, format!("unknown connector `{}` (known: {})", o.value, CONNECTORS.join(", "))));
                }
                (o.value, o.value_span)
            }
            None => {
                errors.push(SqlError::new(span, format!("table `{}` needs WITH ('connector' = '...')", name_ident.value)));
                (String::new(), span)
            }
        };
        if errors.is_empty() {
            Ok(Table { name: name_ident.value, span, columns, watermark, connector, connector_span, options })
        } else {
            Err(errors)
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The WITH options as the JSON fields of `role`; unknown options and
    /// bad values are errors at their key or value.
    fn option_fields(&self, role: Role) -> Result<Map<String, Value>, Vec<SqlError>> {
        let Some(allowed) = options(&self.connector, role) else {
            return Err(vec![SqlError::new(self.connector_span, format!("a `{}` table cannot be {}", self.connector, role.as_str()))]);
        };
        let mut errors = Vec::new();
        let mut out = Map::new();
        for o in &self.options {
            let (head, rest) = o.key.split_once('.').unwrap_or((&o.key, ""));
            let kind = allowed.iter().find(|(k, kind)| *k == o.key || (*kind == Map && *k == head && !rest.is_empty())).map(|(_, k)| *k);
            let Some(kind) = kind else {
                let names: Vec<&str> = allowed.iter().map(|(k, kind)| if *kind == Map { "properties.*" } else { *k }).collect();
                errors.push(SqlError::new(
                    o.key_span,
                    format!("unknown option `{}` for a `{}` table used as {} (known: {})", o.key, self.connector, role.as_str(), names.join(", ")),
                ));
                continue;
            };
            let bad = |what: &str| SqlError::new(o.value_span, format!("option `{}`: expected {what}, found `{}`", o.key, o.value));
            let value = match kind {
                Str => Value::String(o.value.clone()),
                Int => match o.value.trim().parse::<u64>() {
                    Ok(n) => json!(n),
                    Err(_) => match o.value.trim().parse::<i64>() {
                        Ok(n) => json!(n),
                        Err(_) => {
                            errors.push(bad("a whole number"));
                            continue;
                        }
                    },
                },
                Float => match o.value.trim().parse::<f64>() {
                    Ok(n) => json!(n),
                    Err(_) => {
                        errors.push(bad("a number"));
                        continue;
                    }
                },
                Bool => match o.value.trim().to_ascii_lowercase().as_str() {
                    "true" => json!(true),
                    "false" => json!(false),
                    _ => {
                        errors.push(bad("true or false"));
                        continue;
                    }
                },
                List => Value::Array(o.value.split(',').map(|s| Value::String(s.trim().to_string())).collect()),
                Start => match o.value.trim().parse::<i64>() {
                    Ok(ms) => json!({ "timestamp_ms": ms }),
                    Err(_) => Value::String(o.value.clone()),
                },
                Map => {
                    let map = out.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
                    map.as_object_mut().map(|m| m.insert(rest.to_string(), Value::String(o.value.clone())));
                    continue;
                }
            };
            // `topic` of a Kafka source is `topics`.
            let key = if role == Role::Source && o.key == "topic" { "topics" } else { o.key.as_str() };
            let mut at = &mut out;
            let parts: Vec<&str> = key.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                at = at.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new())).as_object_mut().expect("an object");
            }
            at.insert(parts[parts.len() - 1].to_string(), value);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The pipeline.json source: the columns are its record schema, the
    /// WATERMARK its event time.
    pub fn source_json(&self) -> Result<Value, Vec<SqlError>> {
        let mut m = self.option_fields(Role::Source)?;
        m.insert("type".into(), json!(self.connector));
        if !self.columns.is_empty() {
            let fields: Map<String, Value> =
                self.columns.iter().map(|c| (c.name.clone(), json!({ "type": c.json_type, "required": c.not_null }))).collect();
            m.insert("schema".into(), json!({ "fields": fields }));
        }
        if let Some(w) = &self.watermark {
            m.insert("timestamp_field".into(), json!(w.column));
            m.insert("max_out_of_orderness_ms".into(), json!(w.out_of_orderness_ms));
        }
        Ok(Value::Object(m))
    }

    /// The pipeline.json sink reading `inputs`.
    pub fn sink_json(&self, inputs: &[String]) -> Result<Value, Vec<SqlError>> {
        let mut m = self.option_fields(Role::Sink)?;
        m.insert("type".into(), json!(self.connector));
        m.insert("inputs".into(), json!(inputs));
        Ok(Value::Object(m))
    }

    /// A lookup table: its backend, and the lookup-join step's own options.
    pub fn lookup_json(&self) -> Result<(Value, Map<String, Value>), Vec<SqlError>> {
        let all = self.option_fields(Role::Lookup)?;
        // A Redis hash's fields are strings: a column declared otherwise would
        // type-check here and fail on every row at run time.
        if self.connector == "redis" && self.options.iter().any(|o| o.key == "values" && o.value == "hashes") {
            let wrong: Vec<SqlError> = self
                .columns
                .iter()
                .filter(|c| !matches!(c.sql_type, SqlType::String | SqlType::Any))
                .map(|c| SqlError::new(c.span, format!("column `{}`: a Redis hash's fields are strings: declare it STRING (and CAST it in the query)", c.name)))
                .collect();
            if !wrong.is_empty() {
                return Err(wrong);
            }
        }
        let (mut backend, mut step) = (Map::new(), Map::new());
        for (k, v) in all {
            if LOOKUP_STEP.iter().any(|(s, _)| s.split('.').next() == Some(k.as_str())) {
                step.insert(k, v);
            } else {
                backend.insert(k, v);
            }
        }
        backend.insert("type".into(), json!(self.connector));
        Ok((Value::Object(backend), step))
    }
}
