//! The `streamhost` command (the full CLI lands with the pipeline runtime).
fn main() {}
