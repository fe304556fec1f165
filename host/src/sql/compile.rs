//! A job → pipeline.json: tables become sources, sinks and lookup backends;
//! each INSERT a chain of steps from its FROM to its sink (a transform for a
//! table function, a window-join for delayed joins, lookup-joins, udf steps
//! for UDF calls, and a `select` for WHERE and the projection).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Join, JoinConstraint, JoinOperator, ObjectName, Query,
    SelectItem, SetExpr, Spanned, Statement, TableFactor, TableObject,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan};

use super::catalog::Table;
use super::error::{locate_parser_error, SqlError, SqlErrors};
use super::expr::{self, ExprError, ExprKind, Literal, Schema, SqlType, UdfSignature};
use super::tokens::{prepare, DelayedJoin, PluginKind, Prepared};
use crate::config::{parse_pipeline, LoadedPipeline};
use crate::plugin::{FunctionSignature, ScalarType};

/// The functions of each UDF plugin (by its pipeline name), when loaded:
/// calls to them are type-checked against these signatures.
pub type UdfFunctions = BTreeMap<String, Vec<FunctionSignature>>;

/// Compiles a job file to pipeline.json text (`sql --explain`).
pub fn compile_file(path: &Path, udfs: &UdfFunctions) -> Result<String, SqlErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| SqlErrors {
        file: Some(path.to_path_buf()),
        text: String::new(),
        errors: vec![SqlError::new(Span::empty(), format!("cannot read: {e}"))],
    })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let pipeline = compile(&text, name.as_deref(), udfs).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })?;
    Ok(serde_json::to_string_pretty(&pipeline).expect("JSON values serialise"))
}

/// Compiles a job file and loads the result as `streamhost run` would load
/// a pipeline.json beside it (relative paths against the .sql's folder).
pub fn load_sql(path: &Path, udfs: &UdfFunctions) -> Result<LoadedPipeline, SqlErrors> {
    let json = compile_file(path, udfs)?;
    let config = parse_pipeline(&json).map_err(|e| SqlErrors {
        file: Some(path.to_path_buf()),
        text: String::new(),
        errors: vec![SqlError::new(Span::empty(), format!("the compiled pipeline (see `streamhost sql --explain`) is invalid:\n{e}"))],
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut file = path.as_os_str().to_owned();
    file.push(" (compiled)");
    Ok(LoadedPipeline { config, base_dir, file: Some(PathBuf::from(file)), text: json })
}

/// Compiles job text to pipeline.json (as a JSON value).
pub fn compile(text: &str, name: Option<&str>, udfs: &UdfFunctions) -> Result<Value, SqlErrors> {
    let wrap = |errors: Vec<SqlError>| SqlErrors { file: None, text: text.to_string(), errors };
    let prepared = prepare(text).map_err(|e| wrap(vec![e]))?;
    let mut tokens = prepared.tokens.clone();
    let end = tokens.last().map(|t| t.span.end).unwrap_or(Location::new(1, 1));
    tokens.push(TokenWithSpan::new(Token::EOF, Span::new(end, end)));
    let statements = Parser::new(&GenericDialect {})
        .with_tokens_with_locations(tokens.clone())
        .parse_statements()
        .map_err(|e| {
            let (span, message) = locate_parser_error(&e.to_string(), &tokens);
            wrap(vec![SqlError::new(span, message)])
        })?;
    Compiler::new(&prepared).run(&statements, name, udfs).map_err(wrap)
}

struct Compiler<'a> {
    prepared: &'a Prepared,
    tables: BTreeMap<String, Table>,
    /// Plugins by pipeline name, and SQL function / transform names to them.
    plugins: Map<String, Value>,
    functions: BTreeMap<String, String>,
    /// Known signatures of the declared functions (lowercase SQL names).
    signatures: BTreeMap<String, Vec<UdfSignature>>,
    transforms: BTreeMap<String, String>,
    sources: Map<String, Value>,
    steps: Map<String, Value>,
    /// Sink name → its inputs.
    sinks: BTreeMap<String, Vec<String>>,
    errors: Vec<SqlError>,
}

/// A relation in scope: a table (or a table function's output) under its
/// qualifier, its fields in the current record under `prefix`.
#[derive(Clone, Debug)]
struct Rel {
    qualifier: String,
    table: String,
    /// Declared columns; None: unknown (anything goes).
    columns: Option<Vec<String>>,
    prefix: String,
    /// Columns that stand for another field (a lookup key: the main side's).
    aliases: BTreeMap<String, String>,
}

fn name_of(n: &ObjectName) -> (String, Span) {
    let parts: Vec<&Ident> = n.0.iter().filter_map(|p| p.as_ident()).collect();
    let text = parts.iter().map(|i| i.value.clone()).collect::<Vec<_>>().join(".");
    (text, n.span())
}

impl<'a> Compiler<'a> {
    fn new(prepared: &'a Prepared) -> Self {
        Compiler {
            prepared,
            tables: BTreeMap::new(),
            plugins: Map::new(),
            functions: BTreeMap::new(),
            signatures: BTreeMap::new(),
            transforms: BTreeMap::new(),
            sources: Map::new(),
            steps: Map::new(),
            sinks: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    fn run(mut self, statements: &[Statement], name: Option<&str>, udfs: &UdfFunctions) -> Result<Value, Vec<SqlError>> {
        for p in &self.prepared.plugins {
            let plugin = Path::new(&p.path).file_name().map(|f| f.to_string_lossy().replace(['-', '.'], "_")).unwrap_or_else(|| p.name.clone());
            let world = if p.kind == PluginKind::Function { "udf" } else { "transform" };
            if let Some(old) = self.plugins.get(&plugin) {
                if old["path"] != json!(p.path) || old["world"] != json!(world) {
                    self.errors.push(SqlError::new(p.path_span, format!("another plugin is named `{plugin}` (after its folder)")));
                }
            }
            self.plugins.insert(plugin.clone(), json!({ "path": p.path, "world": world }));
            let names = if p.kind == PluginKind::Function { &mut self.functions } else { &mut self.transforms };
            if names.insert(p.name.to_ascii_lowercase(), plugin.clone()).is_some() {
                self.errors.push(SqlError::new(p.name_span, format!("`{}` is declared twice", p.name)));
            }
            // The plugin's own signature of the function, when it was loaded.
            if let (PluginKind::Function, Some(functions)) = (p.kind, udfs.get(&plugin)) {
                match functions.iter().find(|f| f.name == p.name) {
                    Some(f) => {
                        let sig = UdfSignature { params: f.params.iter().map(|t| sql_type(*t)).collect(), returns: sql_type(f.result) };
                        self.signatures.insert(p.name.to_ascii_lowercase(), vec![sig]);
                    }
                    None => {
                        let has: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
                        self.errors.push(SqlError::new(p.name_span, format!("plugin `{plugin}` has no function `{}` (it has: {})", p.name, has.join(", "))));
                    }
                }
            }
        }
        for s in statements {
            match s {
                Statement::CreateTable(ct) => match Table::from_ddl(ct, &self.prepared.watermarks) {
                    Ok(t) => {
                        if self.tables.contains_key(&t.name) {
                            self.errors.push(SqlError::new(t.span, format!("table `{}` is declared twice", t.name)));
                        }
                        self.tables.insert(t.name.clone(), t);
                    }
                    Err(e) => self.errors.extend(e),
                },
                Statement::Insert(ins) => {
                    let TableObject::TableName(target) = &ins.table else {
                        self.errors.push(SqlError::new(s.span(), "INSERT INTO needs a table name"));
                        continue;
                    };
                    let Some(query) = &ins.source else {
                        self.errors.push(SqlError::new(s.span(), "expected INSERT INTO sink SELECT ..."));
                        continue;
                    };
                    let cols: Vec<Ident> = ins.columns.iter().filter_map(|c| c.0.last().and_then(|p| p.as_ident()).cloned()).collect();
                    if let Err(e) = self.insert(target, &cols, query) {
                        self.errors.extend(e);
                    }
                }
                other => self.errors.push(SqlError::new(
                    other.span(),
                    "only CREATE TABLE, CREATE FUNCTION, CREATE TRANSFORM and INSERT INTO ... SELECT are supported",
                )),
            }
        }
        if self.sinks.is_empty() && self.errors.is_empty() {
            self.errors.push(SqlError::new(Span::empty(), "the job has no INSERT INTO: nothing would be written"));
        }
        let mut sinks = Map::new();
        for (name, inputs) in &self.sinks {
            match self.tables[name].sink_json(inputs) {
                Ok(v) => {
                    sinks.insert(name.clone(), v);
                }
                Err(e) => self.errors.extend(e),
            }
        }
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let mut out = Map::new();
        if let Some(n) = name {
            out.insert("name".into(), json!(n));
        }
        if !self.plugins.is_empty() {
            out.insert("plugins".into(), Value::Object(self.plugins));
        }
        out.insert("sources".into(), Value::Object(self.sources));
        if !self.steps.is_empty() {
            out.insert("steps".into(), Value::Object(self.steps));
        }
        out.insert("sinks".into(), Value::Object(sinks));
        super::settings::apply(&mut out, &self.prepared.settings)?;
        Ok(Value::Object(out))
    }

    fn table(&self, name: &str, span: Span) -> Result<&Table, Vec<SqlError>> {
        self.tables.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            vec![SqlError::new(span, format!("unknown table `{name}` (declared: {})", known.join(", ")))]
        })
    }

    /// The pipeline source of table `name` (added once, shared).
    fn source(&mut self, name: &str, span: Span) -> Result<String, Vec<SqlError>> {
        let t = self.table(name, span)?;
        if self.sinks.contains_key(name) {
            return Err(vec![SqlError::new(span, format!("table `{name}` is written by an INSERT: reading it back is not supported"))]);
        }
        if !self.sources.contains_key(name) {
            let v = t.source_json()?;
            self.sources.insert(name.to_string(), v);
        }
        Ok(name.to_string())
    }

    /// Adds `step` under `name` (numbered if taken), or returns the name of
    /// an identical step: the same work on the same input, done once for
    /// every INSERT that needs it (a join's state kept once).
    fn add_step(&mut self, name: &str, step: Value) -> String {
        if let Some((existing, _)) = self.steps.iter().find(|(_, s)| **s == step) {
            return existing.clone();
        }
        let mut n = name.to_string();
        let mut i = 2;
        while self.steps.contains_key(&n) || self.sources.contains_key(&n) || self.tables.contains_key(&n) {
            n = format!("{name}_{i}");
            i += 1;
        }
        self.steps.insert(n.clone(), step);
        n
    }

    /// One INSERT INTO target SELECT ...
    fn insert(&mut self, target: &ObjectName, cols: &[Ident], query: &Query) -> Result<(), Vec<SqlError>> {
        let (sink, sink_span) = name_of(target);
        let t = self.table(&sink, sink_span)?;
        if self.sources.contains_key(&sink) {
            return Err(vec![SqlError::new(sink_span, format!("table `{sink}` is read as a source: writing it is not supported"))]);
        }
        let sink_columns: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        let SetExpr::Select(select) = query.body.as_ref() else {
            return Err(vec![SqlError::new(query.span(), "only a plain SELECT is supported here (no UNION, VALUES, ORDER BY)")]);
        };
        if query.order_by.is_some() || query.limit_clause.is_some() || select.group_by != sqlparser::ast::GroupByExpr::Expressions(vec![], vec![]) || select.having.is_some() || select.distinct.is_some() {
            return Err(vec![SqlError::new(query.span(), "GROUP BY, HAVING, DISTINCT, ORDER BY and LIMIT are not supported yet")]);
        }
        let [from] = &select.from[..] else {
            let span = select.from.get(1).map(|f| f.relation.span()).unwrap_or(select.span());
            return Err(vec![SqlError::new(span, "expected one table in FROM (join others with JOIN)")]);
        };
        let (mut node, main) = self.relation(&from.relation)?;
        let mut rels = vec![main];
        // Delayed joins first: one window-join over the main input and all of them.
        let mut joins = from.joins.iter().peekable();
        let mut delayed: Vec<(&Join, &DelayedJoin)> = Vec::new();
        // A join is delayed when the pass marked the token after its JOIN: at or
        // before the relation's start (`TABLE(f(t))` starts at `f`), after the
        // previous relation's.
        let mut previous = from.relation.span().start;
        while let Some(j) = joins.peek() {
            let start = j.relation.span().start;
            match self.prepared.delayed.iter().find(|d| previous < d.at && d.at <= start) {
                Some(d) => {
                    delayed.push((j, d));
                    previous = start;
                    joins.next();
                }
                None => break,
            }
        }
        if !delayed.is_empty() {
            node = self.window_join(&sink, node, &mut rels, &delayed)?;
        }
        for j in joins {
            let at = match &j.relation {
                TableFactor::Table { name, .. } => name.0.last().and_then(|p| p.as_ident()).map(|i| i.span.start),
                _ => None,
            };
            if self.prepared.lookups.iter().any(|l| Some(l.at) == at) {
                node = self.lookup_join(&sink, node, &mut rels, j)?;
            } else {
                node = self.interval_join(&sink, node, &mut rels, j)?;
            }
        }
        // UDF calls become udf steps before the select; then the select.
        let schema = self.schema(&rels);
        let mut udfs = Vec::new();
        let mut columns = Vec::new();
        let mut star_only = true;
        let mut errors = Vec::new();
        for (i, item) in select.projection.iter().enumerate() {
            let (expr, alias) = match item {
                SelectItem::Wildcard(_) => {
                    columns.push(json!({ "name": "*" }));
                    continue;
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let text = kind.to_string().trim_end_matches(".*").to_string();
                    match rels.iter().find(|r| r.qualifier == text) {
                        Some(r) if r.prefix.is_empty() && r.columns.is_none() && rels.len() == 1 => columns.push(json!({ "name": "*" })),
                        Some(r) if r.columns.is_some() => {
                            for c in r.columns.clone().unwrap_or_default() {
                                columns.push(json!({ "name": c, "expr": field_ref(&r.prefix, &c) }));
                            }
                            star_only = false;
                        }
                        _ => errors.push(SqlError::new(item.span(), format!("cannot expand `{text}.*` here: its columns are not known"))),
                    }
                    continue;
                }
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                SelectItem::ExprWithAliases { .. } => {
                    errors.push(SqlError::new(item.span(), "one alias per column"));
                    continue;
                }
            };
            star_only = false;
            let name = alias.unwrap_or_else(|| match expr {
                Expr::Identifier(i) => i.value.clone(),
                Expr::CompoundIdentifier(p) => p.last().map(|i| i.value.clone()).unwrap_or_default(),
                _ => format!("EXPR${i}"),
            });
            match self.expression(expr, &rels, &schema, &mut udfs) {
                Ok((e, _)) => columns.push(json!({ "name": name, "expr": e })),
                Err(e) => errors.extend(e),
            }
        }
        let where_ = match &select.selection {
            Some(w) => match self.expression(w, &rels, &schema, &mut udfs) {
                Ok((e, SqlType::Boolean | SqlType::Any | SqlType::Null)) => Some(e),
                Ok((_, t)) => {
                    errors.push(SqlError::new(w.span(), format!("WHERE needs a BOOLEAN condition, not {t}")));
                    None
                }
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        // INSERT INTO sink (a, b): the columns' names.
        if !cols.is_empty() {
            if star_only || cols.len() != columns.len() {
                return Err(vec![SqlError::new(cols[0].span, format!("{} columns named for {} selected", cols.len(), if star_only { "*".to_string() } else { columns.len().to_string() }))]);
            }
            for (c, name) in columns.iter_mut().zip(cols) {
                c["name"] = json!(name.value);
            }
        }
        // The sink's declared columns: what it is given must be among them.
        if !sink_columns.is_empty() && !star_only {
            for (c, item) in columns.iter().zip(&select.projection) {
                let n = c["name"].as_str().unwrap_or_default();
                if n != "*" && !sink_columns.iter().any(|s| s == n) {
                    errors.push(SqlError::new(item.span(), format!("table `{sink}` has no column `{n}` (columns: {})", sink_columns.join(", "))));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let udfs_written: Vec<String> = udfs.iter().map(|u| u.2.clone()).collect();
        for (k, (function, args, output)) in udfs.into_iter().enumerate() {
            let plugin = self.functions[&function].clone();
            let step = json!({ "type": "udf", "inputs": [node], "plugin": plugin, "function": function, "args": args, "output": output, "null_input": "null" });
            node = self.add_step(&format!("{sink}_udf{k}"), step);
        }
        if !(star_only && where_.is_none()) {
            let mut step = Map::new();
            step.insert("type".into(), json!("select"));
            step.insert("inputs".into(), json!([node]));
            if let Some(w) = where_ {
                step.insert("where".into(), json!(w));
            }
            if !star_only {
                // `*` shows the input's fields, not the UDF results added for the projection.
                let outputs: Vec<&String> = udfs_written.iter().collect();
                for c in &mut columns {
                    if c["name"] == "*" && !outputs.is_empty() {
                        c["except"] = json!(outputs);
                    }
                }
                step.insert("columns".into(), Value::Array(columns));
            }
            node = self.add_step(&format!("{sink}_select"), Value::Object(step));
        }
        self.sinks.entry(sink).or_default().push(node);
        Ok(())
    }

    /// A FROM relation: a table (its source) or TABLE(transform(table)).
    fn relation(&mut self, f: &TableFactor) -> Result<(String, Rel), Vec<SqlError>> {
        match f {
            TableFactor::Table { name, alias, args: None, .. } => {
                let (table, span) = name_of(name);
                let node = self.source(&table, span)?;
                let columns = self.tables[&table].columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
                let qualifier = alias.as_ref().map(|a| a.name.value.clone()).unwrap_or(table.clone());
                Ok((node, Rel { qualifier, table, columns: (!columns.is_empty()).then_some(columns), prefix: String::new(), aliases: BTreeMap::new() }))
            }
            TableFactor::TableFunction { expr: Expr::Function(func), alias } => {
                let (fname, fspan) = name_of(&func.name);
                let Some(plugin) = self.transforms.get(&fname.to_ascii_lowercase()).cloned() else {
                    return Err(vec![SqlError::new(fspan, format!("unknown transform `{fname}`: declare it with CREATE TRANSFORM {fname} AS 'path'"))]);
                };
                let arg = match &func.args {
                    FunctionArguments::List(l) => match &l.args[..] {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i)))] => i.clone(),
                        _ => return Err(vec![SqlError::new(func.span(), format!("expected TABLE({fname}(table))"))]),
                    },
                    _ => return Err(vec![SqlError::new(func.span(), format!("expected TABLE({fname}(table))"))]),
                };
                let input = self.source(&arg.value, arg.span)?;
                let node = self.add_step(&format!("{fname}_{input}"), json!({ "type": "transform", "inputs": [input], "plugin": plugin }));
                let qualifier = alias.as_ref().map(|a| a.name.value.clone()).unwrap_or(fname.clone());
                Ok((node, Rel { qualifier, table: fname, columns: None, prefix: String::new(), aliases: BTreeMap::new() }))
            }
            other => Err(vec![SqlError::new(other.span(), "expected a table or TABLE(transform(table))")]),
        }
    }

    /// `a.k = b.k`: (a's field, b's field) as paths in their records (`k`,
    /// `user.id` for a nested field, `c_uid` for a joined table's), a being of
    /// `left` and b `right`. With `main_only`, a must be the first table (a
    /// window-join keys its inputs; a lookup may key on any field in scope).
    fn equi_key(&self, on: &JoinConstraint, span: Span, left: &[Rel], right: &Rel, main_only: bool) -> Result<(String, String), Vec<SqlError>> {
        let usage = || vec![SqlError::new(span, format!("expected ON x.key = {}.key (one equality of fields)", right.qualifier))];
        let JoinConstraint::On(Expr::BinaryOp { left: l, op: BinaryOperator::Eq, right: r }) = on else { return Err(usage()) };
        let side = |e: &Expr| -> Option<(String, Vec<String>)> {
            match e {
                Expr::CompoundIdentifier(p) if p.len() >= 2 => Some((p[0].value.clone(), p[1..].iter().map(|i| i.value.clone()).collect())),
                _ => None,
            }
        };
        let (Some(a), Some(b)) = (side(l), side(r)) else { return Err(usage()) };
        let mine_left = a.0 == right.qualifier;
        let (mine, theirs) = if mine_left { (a, b) } else { (b, a) };
        if mine.0 != right.qualifier {
            return Err(usage());
        }
        let Some(other) = left.iter().find(|r| r.qualifier == theirs.0) else {
            return Err(vec![SqlError::new(span, format!("`{}` is not a table of this FROM", theirs.0))]);
        };
        for (rel, path, e) in [(right, &mine.1, if mine_left { l } else { r }), (other, &theirs.1, if mine_left { r } else { l })] {
            if let Some(cols) = &rel.columns {
                if !cols.contains(&path[0]) && !rel.aliases.contains_key(&path[0]) {
                    return Err(vec![SqlError::new(e.span(), format!("unknown column `{}` of `{}` (columns: {})", path[0], rel.qualifier, cols.join(", ")))]);
                }
            }
        }
        if main_only && !other.prefix.is_empty() {
            return Err(vec![SqlError::new(span, "a stream join keys on the first table's fields: joining on a field of a joined table is not supported yet")]);
        }
        // The other side's field as the record holds it.
        let mut theirs_path = theirs.1.clone();
        match other.aliases.get(&theirs_path[0]) {
            Some(main) => theirs_path[0] = main.clone(),
            None => theirs_path[0] = format!("{}{}", other.prefix, theirs_path[0]),
        }
        Ok((theirs_path.join("."), mine.1.join(".")))
    }

    fn window_join(&mut self, sink: &str, node: String, rels: &mut Vec<Rel>, delayed: &[(&Join, &DelayedJoin)]) -> Result<String, Vec<SqlError>> {
        let first = delayed[0].1;
        let mut inputs = vec![node.clone()];
        let mut keys = Map::new();
        let mut prefixes = Map::new();
        let mut main_key: Option<String> = None;
        for (j, d) in delayed {
            if (d.window_ms, d.delay_ms, d.left, d.global.is_some()) != (first.window_ms, first.delay_ms, first.left, first.global.is_some()) {
                return Err(vec![SqlError::new(d.span, "the joins of one chain must have the same window, delay, LEFT/INNER and GLOBAL (one window-join step)")]);
            }
            let constraint = match &j.join_operator {
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) | JoinOperator::Inner(c) | JoinOperator::Join(c) => c,
                _ => return Err(vec![SqlError::new(d.span, "expected LEFT or INNER")]),
            };
            // A table or TABLE(transform(table)); its columns come under `<alias>_`.
            let (input, mut rel) = self.relation(&j.relation)?;
            rel.prefix = format!("{}_", rel.qualifier);
            let span = j.relation.span();
            let (main_field, field) = self.equi_key(constraint, j.relation.span(), rels, &rel, true)?;
            if main_key.as_ref().is_some_and(|k| *k != main_field) {
                return Err(vec![SqlError::new(j.relation.span(), "the joins of one chain must join on the same field of the first table")]);
            }
            main_key = Some(main_field.clone());
            if inputs.contains(&input) {
                return Err(vec![SqlError::new(span, format!("`{input}` is joined twice"))]);
            }
            keys.insert(input.clone(), json!(format!("$.{field}")));
            prefixes.insert(input.clone(), json!(rel.prefix));
            inputs.push(input);
            rels.push(rel);
        }
        keys.insert(node, json!(format!("$.{}", main_key.unwrap_or_default())));
        let w = first.window_ms as i64;
        let step = json!({
            "type": "window-join",
            "inputs": inputs,
            "keys": keys,
            "window": { "start_ms": if first.global.is_some() { -w } else { 0 }, "end_ms": w },
            "mode": if first.left { "left" } else { "inner" },
            "allowed_lateness_ms": first.delay_ms,
            "joiner": { "type": "merge", "prefixes": prefixes },
        });
        // The number of matches of each joined table: `<qualifier>.count` (field `<qualifier>_count`).
        for r in rels.iter_mut().skip(1) {
            if let Some(c) = &mut r.columns {
                if !c.iter().any(|x| x == "count") {
                    c.push("count".into());
                }
            }
        }
        Ok(self.add_step(&format!("{sink}_join"), step))
    }

    /// `JOIN b ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL .. AND a.ts +
    /// INTERVAL ..` (or the bounds as `>=`/`<=`/`>`/`<`): Flink's inner
    /// interval join, a window-join that emits each pair when it matches.
    fn interval_join(&mut self, sink: &str, node: String, rels: &mut Vec<Rel>, j: &Join) -> Result<String, Vec<SqlError>> {
        let span = j.relation.span();
        let usage = |at: Span| {
            SqlError::new(
                at,
                "expected a stream join ON a.key = b.key AND b.ts BETWEEN a.ts - INTERVAL .. AND a.ts + INTERVAL .. (an interval join), a delayed join (`LEFT <interval> WINDOW JOIN`) or a lookup join (`FOR SYSTEM_TIME AS OF PROCTIME()`)",
            )
        };
        let on = match &j.join_operator {
            JoinOperator::Inner(JoinConstraint::On(on)) | JoinOperator::Join(JoinConstraint::On(on)) => on,
            JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => {
                return Err(vec![SqlError::new(
                    span,
                    "a LEFT join of two streams is the delayed join: `LEFT <interval> WINDOW JOIN` (each row once, when its window has passed); a LEFT lookup join reads its table `FOR SYSTEM_TIME AS OF PROCTIME()`",
                )])
            }
            _ => return Err(vec![usage(span)]),
        };
        if rels.len() != 1 {
            return Err(vec![SqlError::new(span, "an interval join must be the first join of its FROM")]);
        }
        let (input, mut rel) = self.relation(&j.relation)?;
        if input == node {
            return Err(vec![SqlError::new(span, format!("`{input}` is joined with itself: not supported"))]);
        }
        rel.prefix = format!("{}_", rel.qualifier);
        let mut conjuncts = Vec::new();
        and_terms(on, &mut conjuncts);
        let mut key = None;
        let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
        for c in conjuncts {
            let bounds: Vec<(&Expr, BinaryOperator, &Expr)> = match c {
                Expr::BinaryOp { op: BinaryOperator::Eq, .. } if key.is_none() => {
                    key = Some(self.equi_key(&JoinConstraint::On(c.clone()), c.span(), rels, &rel, true)?);
                    continue;
                }
                Expr::Between { expr, negated: false, low, high } => vec![(expr, BinaryOperator::GtEq, low), (expr, BinaryOperator::LtEq, high)],
                Expr::BinaryOp { left, op: op @ (BinaryOperator::Gt | BinaryOperator::GtEq | BinaryOperator::Lt | BinaryOperator::LtEq), right } => vec![(left, op.clone(), right)],
                other => return Err(vec![usage(other.span())]),
            };
            for (x, op, y) in bounds {
                let (lower, ms) = self.time_bound(x, op, y, &rels[0], &rel).map_err(|e| vec![e])?;
                if lower {
                    lo = Some(lo.map_or(ms, |l| l.max(ms)));
                } else {
                    hi = Some(hi.map_or(ms, |h| h.min(ms)));
                }
            }
        }
        let Some((main_field, field)) = key else { return Err(vec![SqlError::new(on.span(), "an interval join needs an equality of keys: a.key = b.key")]) };
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Err(vec![SqlError::new(on.span(), "an interval join needs both bounds of its time: b.ts BETWEEN a.ts - INTERVAL .. AND a.ts + INTERVAL ..")]);
        };
        if lo > hi {
            return Err(vec![SqlError::new(on.span(), format!("the time bounds leave no window ({lo} ms to {hi} ms)"))]);
        }
        let mut keys = Map::new();
        keys.insert(node.clone(), json!(format!("$.{main_field}")));
        keys.insert(input.clone(), json!(format!("$.{field}")));
        let step = json!({
            "type": "window-join",
            "inputs": [node, input],
            "keys": keys,
            "window": { "start_ms": lo, "end_ms": hi },
            "mode": "inner",
            "emit": "on-match",
            "joiner": { "type": "merge", "prefixes": { input.clone(): rel.prefix } },
        });
        if let Some(c) = &mut rel.columns {
            if !c.iter().any(|x| x == "count") {
                c.push("count".into());
            }
        }
        rels.push(rel);
        Ok(self.add_step(&format!("{sink}_join"), step))
    }

    /// One bound of an interval join, `x op y`, as `b.ts >= a.ts + lo` (true,
    /// lo) or `b.ts <= a.ts + hi` (false, hi); the times are each table's
    /// event time (its WATERMARK column; a transform's output time is its own).
    fn time_bound(&self, x: &Expr, op: BinaryOperator, y: &Expr, main: &Rel, other: &Rel) -> Result<(bool, i64), SqlError> {
        let bad = |e: &Expr, why: &str| SqlError::new(e.span(), why.to_string());
        let term = |e: &Expr| -> Result<(bool, i64), SqlError> {
            let (col, off) = match e {
                Expr::BinaryOp { left, op: op @ (BinaryOperator::Plus | BinaryOperator::Minus), right } => {
                    let ms = interval_ms(right).ok_or_else(|| bad(right, "expected an interval such as INTERVAL '1' HOUR"))?;
                    (left.as_ref(), if *op == BinaryOperator::Minus { -ms } else { ms })
                }
                Expr::Nested(inner) => return Err(bad(inner, "write the bound without parentheses: a.ts + INTERVAL '1' HOUR")),
                other => (other, 0),
            };
            let Expr::CompoundIdentifier(p) = col else { return Err(bad(col, "expected a table's time column, e.g. c.ts")) };
            let [q, c] = &p[..] else { return Err(bad(col, "expected a table's time column, e.g. c.ts")) };
            let rel = if q.value == other.qualifier {
                other
            } else if q.value == main.qualifier {
                main
            } else {
                return Err(bad(col, &format!("`{}` is not a table of this join", q.value)));
            };
            if let Some(t) = self.tables.get(&rel.table) {
                match &t.watermark {
                    Some(w) if w.column == c.value => {}
                    Some(w) => return Err(bad(col, &format!("an interval join compares event times: `{}`'s is `{}` (its WATERMARK)", rel.qualifier, w.column))),
                    None => return Err(bad(col, &format!("table `{}` has no WATERMARK: an interval join needs its event time", rel.table))),
                }
            }
            Ok((std::ptr::eq(rel, other), off))
        };
        let ((x_other, ox), (y_other, oy)) = (term(x)?, term(y)?);
        if x_other == y_other {
            return Err(bad(x, "a bound compares the two tables' times: b.ts >= a.ts - INTERVAL .."));
        }
        // b.ts + ob op a.ts + oa  →  b.ts op' a.ts + d
        let (op, d) = if x_other { (op, oy - ox) } else { (flip(op), ox - oy) };
        Ok(match op {
            BinaryOperator::GtEq => (true, d),
            BinaryOperator::Gt => (true, d + 1),
            BinaryOperator::LtEq => (false, d),
            _ => (false, d - 1),
        })
    }

    fn lookup_join(&mut self, sink: &str, node: String, rels: &mut Vec<Rel>, j: &Join) -> Result<String, Vec<SqlError>> {
        let (mode, constraint) = match &j.join_operator {
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => ("left", c),
            JoinOperator::Inner(c) | JoinOperator::Join(c) => ("inner", c),
            _ => return Err(vec![SqlError::new(j.relation.span(), "a lookup join is JOIN (inner) or LEFT JOIN")]),
        };
        let TableFactor::Table { name, alias, .. } = &j.relation else { unreachable!("lookups are marked on table names") };
        let (table, span) = name_of(name);
        let t = self.table(&table, span)?.clone();
        let qualifier = alias.as_ref().map(|a| a.name.value.clone()).unwrap_or(table.clone());
        let mut rel = Rel {
            qualifier: qualifier.clone(),
            table: table.clone(),
            columns: (!t.columns.is_empty()).then(|| t.columns.iter().map(|c| c.name.clone()).collect()),
            prefix: format!("{qualifier}_"),
            aliases: BTreeMap::new(),
        };
        let (main_field, dim_key) = self.equi_key(constraint, j.relation.span(), rels, &rel, false)?;
        if dim_key.contains('.') {
            return Err(vec![SqlError::new(j.relation.span(), format!("a lookup table is keyed by a column: ON x.key = {qualifier}.column"))]);
        }
        let (backend, options) = t.lookup_json()?;
        let mut step = options;
        step.insert("type".into(), json!("lookup-join"));
        step.insert("inputs".into(), json!([node]));
        step.insert("key".into(), json!(format!("$.{main_field}")));
        step.insert("mode".into(), json!(mode));
        step.insert("backends".into(), json!([backend]));
        step.insert("prefix".into(), json!(rel.prefix));
        if let Some(cols) = &rel.columns {
            let fields: Vec<&String> = cols.iter().filter(|c| **c != dim_key).collect();
            if !fields.is_empty() {
                step.insert("fields".into(), json!(fields));
            }
        }
        rel.aliases.insert(dim_key, main_field);
        rels.push(rel);
        Ok(self.add_step(&format!("{sink}_lookup_{qualifier}"), Value::Object(step)))
    }

    /// What the query's expressions may read: the columns of the tables in
    /// scope, by the fields they are in the current record, with their
    /// declared types (a relation whose columns are not known opens it).
    fn schema(&self, rels: &[Rel]) -> Schema {
        let open = rels.iter().any(|r| r.columns.is_none());
        let mut schema = if open { Schema::open() } else { Schema::strict() };
        for r in rels {
            for c in r.columns.iter().flatten() {
                let declared = self.tables.get(&r.table).and_then(|t| t.column(c)).map(|c| c.sql_type);
                let ty = declared.unwrap_or(if c == "count" && !r.prefix.is_empty() { SqlType::BigInt } else { SqlType::Any });
                schema = schema.column(&[&format!("{}{c}", r.prefix)], ty);
            }
        }
        for (name, sigs) in &self.signatures {
            for s in sigs {
                schema = schema.udf(name, s.params.clone(), s.returns);
            }
        }
        schema
    }

    /// A WHERE or projection expression → its text for the `select` step
    /// and its type: identifiers resolved, the whole type-checked, and UDF
    /// calls replaced by the fields their udf steps (pushed on `udfs`) write.
    fn expression(&self, e: &Expr, rels: &[Rel], schema: &Schema, udfs: &mut Vec<(String, Vec<Value>, String)>) -> Result<(String, SqlType), Vec<SqlError>> {
        let located = |x: ExprError| {
            let at = |p: expr::Pos| Location::new(p.line, p.column);
            let span = if x.span.start.line == 0 { e.span() } else { Span::new(at(x.span.start), at(x.span.end)) };
            vec![SqlError::new(span, x.message)]
        };
        let mut tree = expr::from_sql(&self.rewrite(e, rels)?).map_err(located)?;
        // A declared function whose plugin was not loaded: any arguments, any result.
        let mut schema = schema.clone();
        let mut calls = Vec::new();
        udf_calls(&mut tree, &mut |name, args| calls.push((name.to_ascii_lowercase(), args.len())));
        for (name, n) in calls {
            if self.functions.contains_key(&name) && schema.udf_signatures(&name).is_none() {
                schema = schema.udf(&name, vec![SqlType::Any; n], SqlType::Any);
            }
        }
        let ty = expr::typecheck(&tree, &schema).map_err(located)?;
        replace_udfs(&mut tree, udfs).map_err(located)?;
        Ok((tree.to_sql(), ty))
    }

    /// An identifier of the query → the field of the current record.
    fn resolve(&self, parts: &[Ident], rels: &[Rel], span: Span) -> Result<Expr, Vec<SqlError>> {
        let (rel, rest): (&Rel, &[Ident]) = match rels.iter().find(|r| parts.len() > 1 && r.qualifier == parts[0].value) {
            Some(r) => (r, &parts[1..]),
            None => {
                let col = &parts[0].value;
                let known: Vec<&Rel> = rels.iter().filter(|r| r.columns.as_ref().is_some_and(|c| c.contains(col))).collect();
                match known[..] {
                    [r] => (r, parts),
                    [_, _, ..] => return Err(vec![SqlError::new(span, format!("column `{col}` is ambiguous: qualify it"))]),
                    [] => match rels.iter().find(|r| r.columns.is_none() && r.prefix.is_empty()) {
                        Some(r) => (r, parts),
                        None => {
                            let all: Vec<String> = rels.iter().flat_map(|r| r.columns.iter().flatten().map(move |c| if rels.len() > 1 { format!("{}.{c}", r.qualifier) } else { c.clone() })).collect();
                            return Err(vec![SqlError::new(parts[0].span, format!("unknown column `{col}` (columns: {})", all.join(", ")))]);
                        }
                    },
                }
            }
        };
        let col = &rest[0];
        if let Some(cols) = &rel.columns {
            if !cols.contains(&col.value) && !rel.aliases.contains_key(&col.value) {
                return Err(vec![SqlError::new(col.span, format!("unknown column `{}` of `{}` (columns: {})", col.value, rel.table, cols.join(", ")))]);
            }
        }
        let mut out: Vec<Ident> = Vec::new();
        // The field's text in the .sql, qualifier included (`c.uid`), for errors.
        let at = Span::new(parts[0].span.start, col.span.end);
        match rel.aliases.get(&col.value) {
            Some(main) => out.extend(main.split('.').map(|p| Ident { value: p.to_string(), quote_style: None, span: at })),
            None if rel.prefix.is_empty() => out.push(Ident { span: at, ..col.clone() }),
            None => out.push(Ident { value: format!("{}{}", rel.prefix, col.value), quote_style: Some('"'), span: at }),
        }
        out.extend(rest[1..].iter().cloned());
        Ok(if out.len() == 1 { Expr::Identifier(out.remove(0)) } else { Expr::CompoundIdentifier(out) })
    }

    /// The expression with its identifiers made fields of the current
    /// record, checked against the tables' columns.
    fn rewrite(&self, e: &Expr, rels: &[Rel]) -> Result<Expr, Vec<SqlError>> {
        let mut r = |x: &Expr| self.rewrite(x, rels);
        let b = |x: Expr| Box::new(x);
        Ok(match e {
            Expr::Identifier(i) => self.resolve(std::slice::from_ref(i), rels, i.span)?,
            Expr::CompoundIdentifier(p) => self.resolve(p, rels, e.span())?,
            Expr::Value(_) | Expr::TypedString(_) | Expr::Interval(_) => e.clone(),
            Expr::Nested(x) => Expr::Nested(b(r(x)?)),
            Expr::BinaryOp { left, op, right } => Expr::BinaryOp { left: b(r(left)?), op: op.clone(), right: b(r(right)?) },
            Expr::UnaryOp { op, expr } => Expr::UnaryOp { op: *op, expr: b(r(expr)?) },
            Expr::IsNull(x) => Expr::IsNull(b(r(x)?)),
            Expr::IsNotNull(x) => Expr::IsNotNull(b(r(x)?)),
            Expr::IsTrue(x) => Expr::IsTrue(b(r(x)?)),
            Expr::IsFalse(x) => Expr::IsFalse(b(r(x)?)),
            Expr::IsNotTrue(x) => Expr::IsNotTrue(b(r(x)?)),
            Expr::IsNotFalse(x) => Expr::IsNotFalse(b(r(x)?)),
            Expr::Between { expr, negated, low, high } => Expr::Between { expr: b(r(expr)?), negated: *negated, low: b(r(low)?), high: b(r(high)?) },
            Expr::Like { negated, any, expr, pattern, escape_char } => {
                Expr::Like { negated: *negated, any: *any, expr: b(r(expr)?), pattern: b(r(pattern)?), escape_char: escape_char.clone() }
            }
            Expr::ILike { negated, any, expr, pattern, escape_char } => {
                Expr::ILike { negated: *negated, any: *any, expr: b(r(expr)?), pattern: b(r(pattern)?), escape_char: escape_char.clone() }
            }
            Expr::In { expr, target: sqlparser::ast::InTarget::List(list), negated, global } => Expr::In {
                expr: b(r(expr)?),
                target: sqlparser::ast::InTarget::List(list.iter().map(&mut r).collect::<Result<_, _>>()?),
                negated: *negated,
                global: *global,
            },
            Expr::Cast { kind, expr, data_type, format } => Expr::Cast { kind: kind.clone(), expr: b(r(expr)?), data_type: data_type.clone(), format: format.clone() },
            Expr::Case { case_token, end_token, operand, conditions, else_result } => Expr::Case {
                case_token: case_token.clone(),
                end_token: end_token.clone(),
                operand: operand.as_ref().map(|o| r(o).map(b)).transpose()?,
                conditions: conditions
                    .iter()
                    .map(|c| Ok(sqlparser::ast::CaseWhen { condition: r(&c.condition)?, result: r(&c.result)? }))
                    .collect::<Result<_, Vec<SqlError>>>()?,
                else_result: else_result.as_ref().map(|o| r(o).map(b)).transpose()?,
            },
            Expr::Substring { expr, substring_from, substring_for, special, shorthand } => Expr::Substring {
                expr: b(r(expr)?),
                substring_from: substring_from.as_ref().map(|o| r(o).map(b)).transpose()?,
                substring_for: substring_for.as_ref().map(|o| r(o).map(b)).transpose()?,
                special: *special,
                shorthand: *shorthand,
            },
            Expr::Trim { trim_where, trim_what, expr, trim_characters } => Expr::Trim {
                trim_where: *trim_where,
                trim_what: trim_what.as_ref().map(|o| r(o).map(b)).transpose()?,
                expr: b(r(expr)?),
                trim_characters: trim_characters.clone(),
            },
            Expr::Function(f) => {
                let FunctionArguments::List(_) = &f.args else {
                    return match &f.args {
                        FunctionArguments::None => Ok(e.clone()),
                        _ => Err(vec![SqlError::new(e.span(), "a subquery as argument is not supported")]),
                    };
                };
                let mut f2 = f.clone();
                if let FunctionArguments::List(l2) = &mut f2.args {
                    for a in &mut l2.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                            *x = r(x)?;
                        }
                    }
                }
                Expr::Function(f2)
            }
            other => return Err(vec![SqlError::new(other.span(), format!("`{other}` is not supported in a query yet"))]),
        })
    }
}

/// The terms of `a AND b AND ...`.
fn and_terms<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            and_terms(left, out);
            and_terms(right, out);
        }
        Expr::Nested(inner) => and_terms(inner, out),
        other => out.push(other),
    }
}

/// `a < b` as `b > a`.
fn flip(op: BinaryOperator) -> BinaryOperator {
    match op {
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        other => other,
    }
}

/// `INTERVAL '5' SECOND` (or `INTERVAL '5 seconds'`) in milliseconds.
fn interval_ms(e: &Expr) -> Option<i64> {
    let Expr::Interval(i) = e else { return None };
    let text = match i.value.as_ref() {
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
            sqlparser::ast::Value::Number(n, _) => n.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    let mut words = text.split_whitespace();
    let amount: i64 = words.next()?.parse().ok()?;
    let unit = match (words.next(), &i.leading_field) {
        (Some(u), None) => u.to_string(),
        (None, Some(f)) => f.to_string(),
        _ => return None,
    };
    if words.next().is_some() || i.last_field.is_some() {
        return None;
    }
    amount.checked_mul(super::tokens::unit_ms(&unit)? as i64)
}

/// A UDF parameter's or result's type in expressions.
fn sql_type(t: ScalarType) -> SqlType {
    match t {
        ScalarType::Null => SqlType::Null,
        ScalarType::Boolean => SqlType::Boolean,
        ScalarType::Int => SqlType::BigInt,
        ScalarType::Float => SqlType::Double,
        ScalarType::Str => SqlType::String,
        ScalarType::Bytes | ScalarType::Any => SqlType::Any,
    }
}

/// Calls `f` on each UDF call of `e`.
fn udf_calls(e: &mut expr::Expr, f: &mut dyn FnMut(&str, &[expr::Expr])) {
    if let ExprKind::Udf { name, args } = &e.kind {
        f(name, args);
    }
    for c in e.children_mut() {
        udf_calls(c, f);
    }
}

/// Replaces each UDF call of `e` (innermost first) by the field its udf
/// step writes, `__<function>_<n>`; its arguments must be fields of the
/// first table (or results of inner calls) or literals: a udf step's args.
fn replace_udfs(e: &mut expr::Expr, udfs: &mut Vec<(String, Vec<Value>, String)>) -> Result<(), ExprError> {
    for c in e.children_mut() {
        replace_udfs(c, udfs)?;
    }
    let ExprKind::Udf { name, args } = &e.kind else { return Ok(()) };
    let mut values = Vec::new();
    for a in args {
        values.push(match &a.kind {
            ExprKind::Column(path) if path.iter().all(|p| !p.contains('.')) => json!(format!("$.{}", path.join("."))),
            ExprKind::Literal(Literal::Str(s)) => json!(s),
            ExprKind::Literal(Literal::Int(i)) => json!(i),
            ExprKind::Literal(Literal::Float(f)) => json!(f),
            ExprKind::Literal(Literal::Bool(b)) => json!(b),
            ExprKind::Literal(Literal::Null) => Value::Null,
            _ => return Err(ExprError::new("a UDF's argument must be a column or a literal (for now)".into(), a.span)),
        });
    }
    let function = name.to_ascii_lowercase();
    let output = format!("__{function}_{}", udfs.len());
    udfs.push((function, values, output.clone()));
    e.kind = ExprKind::Column(vec![output]);
    Ok(())
}

/// A field of the current record as SQL text: plain, or quoted when it
/// carries a join prefix.
fn field_ref(prefix: &str, col: &str) -> String {
    if prefix.is_empty() {
        col.to_string()
    } else {
        format!("\"{prefix}{col}\"")
    }
}
