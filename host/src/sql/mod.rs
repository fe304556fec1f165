//! `streamhost sql`: a SQL job file compiled to a pipeline.json (docs/sql.md),
//! and `expr`, the expression language the `select` step runs.
//!
//! The job is tokenized and parsed by sqlparser; the few constructs that are
//! not SQL (the delayed join, `WATERMARK FOR`, `FOR SYSTEM_TIME AS OF
//! PROCTIME()`, `CREATE FUNCTION|TRANSFORM`, `SET 'key' = value`) are recognised and rewritten by
//! a pass over the token stream first ([`tokens`]), keeping every span, so
//! every error points to line:column in the .sql file.

pub mod catalog;
pub mod compile;
pub mod error;
pub mod expr;
pub mod settings;
pub mod tokens;

pub use compile::{compile, compile_file, load_sql, UdfFunctions};
pub use error::{SqlError, SqlErrors};
