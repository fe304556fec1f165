//! End-to-end tests: real plugins built from source, real pipelines, real
//! files. One test binary (linking wasmtime once) with a module per theme.

mod bad_input;
mod cases;
mod hostile;
mod joiner;
