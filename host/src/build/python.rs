//! Builds a Python plugin folder (`app.py` + `plugin.toml`) into a component
//! with componentize-py.
//!
//! The contract and the Python SDK are embedded in the binary and written to
//! a temporary folder per build, so a `streamhost` binary builds Python
//! plugins anywhere, without a checkout of this repository. componentize-py
//! builds the SDK's entry module (`streamhost._entry`), which imports the
//! author's `app` module and adapts its plugin class to the generated
//! bindings.

use std::path::Path;
use std::process::Command;

use super::{find_tool, run_tool, BuildError, PluginManifest, WIT_SOURCE};

/// The module componentize-py is asked to build.
const ENTRY_MODULE: &str = "streamhost._entry";

const INSTALL_HINT: &str = "run scripts/setup.sh (it installs componentize-py into \
     ~/.cache/streamhost/tools/venv, or $STREAMHOST_TOOLS/venv), or `pip install componentize-py==0.25.1` \
     and put it on PATH";

/// The Python SDK package `streamhost`, file by file.
pub(super) const SDK_FILES: &[(&str, &str)] = &[
    ("__init__.py", include_str!("../../../sdk/python/streamhost/__init__.py")),
    ("_adapter.py", include_str!("../../../sdk/python/streamhost/_adapter.py")),
    ("_entry.py", include_str!("../../../sdk/python/streamhost/_entry.py")),
    ("event.py", include_str!("../../../sdk/python/streamhost/event.py")),
    ("log.py", include_str!("../../../sdk/python/streamhost/log.py")),
    ("plugin.py", include_str!("../../../sdk/python/streamhost/plugin.py")),
];

pub fn build(dir: &Path, manifest: &PluginManifest, output: &Path) -> Result<(), BuildError> {
    if dir.join("streamhost").exists() || dir.join("streamhost.py").exists() {
        return Err(BuildError::BadManifest {
            path: dir.to_path_buf(),
            message: "a plugin folder must not contain its own `streamhost` module (it would hide the SDK)".into(),
        });
    }
    let tool = find_tool("componentize-py")
        .ok_or_else(|| BuildError::MissingTool { tool: "componentize-py".into(), hint: INSTALL_HINT.into() })?;
    let work = tempfile::Builder::new()
        .prefix("streamhost-pybuild-")
        .tempdir()
        .map_err(|e| BuildError::Io { path: std::env::temp_dir(), source: e })?;
    let wit_dir = work.path().join("wit");
    write_file(&wit_dir.join("plugin.wit"), WIT_SOURCE)?;
    let sdk_dir = work.path().join("sdk");
    for (name, text) in SDK_FILES {
        write_file(&sdk_dir.join("streamhost").join(name), text)?;
    }

    let mut cmd = Command::new(&tool);
    cmd.arg("-d")
        .arg(&wit_dir)
        .args(["-w", manifest.world.as_str()])
        .arg("componentize")
        .arg(ENTRY_MODULE)
        .arg("-p")
        .arg(dir)
        .arg("-p")
        .arg(&sdk_dir)
        .arg("-o")
        .arg(output)
        // Keep the plugin folder free of __pycache__ litter.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    tracing::info!(plugin = %manifest.name, tool = %tool.display(), "building python plugin");
    run_tool(&mut cmd, "componentize-py")
}

fn write_file(path: &Path, text: &str) -> Result<(), BuildError> {
    let io = |e| BuildError::Io { path: path.to_path_buf(), source: e };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module of the SDK folder is embedded, byte for byte: a module
    /// added to sdk/python/streamhost must be added to `SDK_FILES` too.
    #[test]
    fn embedded_sdk_matches_the_sdk_folder() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/python/streamhost");
        let mut on_disk: Vec<String> = std::fs::read_dir(&sdk)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = SDK_FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, embedded);
        for (name, text) in SDK_FILES {
            assert_eq!(std::fs::read_to_string(sdk.join(name)).unwrap(), *text, "{name}");
        }
    }

    #[test]
    fn a_plugin_shadowing_the_sdk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        std::fs::write(dir.path().join("streamhost.py"), "").unwrap();
        let manifest = PluginManifest { name: "x".into(), world: crate::config::WorldName::Transform };
        match build(dir.path(), &manifest, &dir.path().join("x.wasm")) {
            Err(BuildError::BadManifest { message, .. }) => assert!(message.contains("streamhost"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
