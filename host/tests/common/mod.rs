//! Helpers shared by the host's integration tests (each test file is its own
//! crate and includes this module; not every file uses every helper).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use streamhost::config::WorldName;
use streamhost::plugin::{PluginRuntime, RuntimeOptions};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// Builds a plugin folder of the repository (the toolchains' caches, or the
/// Python stamp, make repeated builds cheap) and checks its world.
pub fn build(rel: &str, world: WorldName) -> PathBuf {
    let built = streamhost::build::build_plugin(&repo_root().join(rel), None, false)
        .unwrap_or_else(|e| panic!("building {rel}: {e}"));
    assert_eq!(built.manifest.world, world, "{rel}");
    built.output
}

/// A runtime shared by a test process, on the user's artifact cache (it is
/// content-addressed, checksummed and written atomically, so test processes
/// share it safely and a Python component compiles once, not once per test
/// binary). Tests that look at the cache make their own runtime.
pub fn shared_runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| PluginRuntime::new(RuntimeOptions::default()).expect("plugin runtime"))
}
