//! The plugin runtime: the only module that names wasmtime.
pub mod wit;
