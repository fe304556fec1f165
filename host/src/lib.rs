//! streamhost: a stream processor whose per-business logic (ETL cleaning,
//! UDFs, joiners) runs as sandboxed WebAssembly components.
//!
//! See ARCHITECTURE.md at the repository root for the bird's-eye view.

pub mod build;
pub mod config;
pub mod dead_letter;
pub mod event;
pub mod plugin;
pub mod record_schema;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
pub mod step;
pub mod swap;
