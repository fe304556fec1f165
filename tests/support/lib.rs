//! Helpers shared by the end-to-end tests: paths, running pipelines through
//! the library exactly as `streamhost run` does, reading outputs.

use std::path::{Path, PathBuf};

pub mod sjoin;

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

/// What runs leave in a case or example folder: never copied.
const LEFT_BY_RUNS: [&str; 7] = ["out", "expected", "state", "checkpoints", "target", "dead-letter.jsonl", "admin.addr"];

/// Copies the folder `src` (a test case or an example) into a new temporary
/// folder, without what runs leave behind (`out/`, `state/`, ...), and makes
/// the relative plugin paths of its pipeline.json absolute (they point into
/// the repository): a test runs the copy and writes nothing into the
/// repository. Returns the temporary folder and the copy's pipeline.json.
pub fn copy_to_temp(src: &Path) -> (tempfile::TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).flatten() {
            let name = e.file_name();
            if LEFT_BY_RUNS.iter().any(|n| name == *n) {
                continue;
            }
            if e.path().is_dir() {
                copy(&e.path(), &to.join(&name));
            } else {
                std::fs::copy(e.path(), to.join(&name)).unwrap();
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    copy(src, tmp.path());
    let path = tmp.path().join("pipeline.json");
    let mut pipeline: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    if let Some(plugins) = pipeline.get_mut("plugins").and_then(|p| p.as_object_mut()) {
        for plugin in plugins.values_mut() {
            let Some(rel) = plugin["path"].as_str().filter(|p| Path::new(p).is_relative()) else { continue };
            let abs = src.join(rel).canonicalize().unwrap_or_else(|e| panic!("{rel}: {e}"));
            plugin["path"] = abs.display().to_string().into();
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&pipeline).unwrap()).unwrap();
    (tmp, path)
}
