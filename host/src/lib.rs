//! streamhost: a stream processor whose per-business logic (ETL cleaning,
//! UDFs, joiners) runs as sandboxed WebAssembly components.
//!
//! See ARCHITECTURE.md at the repository root for the bird's-eye view.

pub mod alerts;
pub mod build;
pub mod config;
pub mod dead_letter;
pub mod event;
pub mod failpoint;
pub mod lookup;
pub mod metrics;
pub mod plugin;
pub mod record_schema;
pub mod replay;
pub mod runtime;
pub mod sql;
pub mod sink;
pub mod source;
pub mod state;
pub mod step;
pub mod swap;
pub mod web;
pub mod trial;

/// The allocator the `streamhost` binary runs with (`#[global_allocator]` in
/// `main.rs`; the benchmarks use it too, so they measure what users run).
/// Events are allocated by one thread and freed by another (sources,
/// workers, sinks): mimalloc frees across threads without glibc's arena locks.
pub use mimalloc::MiMalloc as Allocator;
