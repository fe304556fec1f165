//! Helpers shared by the end-to-end tests: paths, running pipelines through
//! the library exactly as `streamhost run` does, reading outputs.

use std::path::{Path, PathBuf};

use streamhost::config::load_pipeline;
use streamhost::runtime::{build_pipeline, BuildOptions, RunSummary};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// Loads, builds and runs a pipeline file; panics with the located errors if
/// it is invalid (a test bug, not a product behaviour under test).
pub fn run_pipeline(path: &Path) -> RunSummary {
    run_pipeline_with(path, BuildOptions::default())
}

pub fn run_pipeline_with(path: &Path, opts: BuildOptions) -> RunSummary {
    let p = load_pipeline(path).unwrap_or_else(|e| panic!("{e}"));
    let pipeline = build_pipeline(&p, opts).unwrap_or_else(|e| panic!("building {}: {e}", path.display()));
    pipeline.run().unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
}

/// Lines of a text file (without newlines).
pub fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8_lossy(&text).lines().map(String::from).collect()
}

/// A JSON-lines file, parsed.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l:.200}", path.display())))
        .collect()
}

/// Writes `pipeline` (JSON) into `dir/pipeline.json`, returning its path.
pub fn write_pipeline(dir: &Path, pipeline: &serde_json::Value) -> PathBuf {
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(pipeline).unwrap()).unwrap();
    path
}

/// A plugin folder of this repository, as an absolute path string for pipeline.json.
pub fn plugin_dir(rel: &str) -> String {
    repo().join(rel).display().to_string()
}
