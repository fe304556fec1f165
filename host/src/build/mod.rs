//! `streamhost plugin build DIR`: turns a plugin source folder (Rust, Python
//! or Go) into a component. Each language has its own module; the
//! componentize step runs in-process (wit-component), so a user needs only
//! their language's toolchain.
//!
//! A plugin folder holds a `plugin.toml`:
//! ```toml
//! name = "impression-cleaner"   # optional, default: folder name
//! world = "transform"           # or "udf", "joiner"
//! ```
//! and the language is recognised by `Cargo.toml`, `go.mod` or `app.py`.
//! A folder made by `streamhost plugin new` (`scaffold`) also holds the SDK
//! and contract in `.streamhost/` (`vendor`), refreshed by every build.

mod componentize;
mod go;
mod python;
mod rust;
pub mod scaffold;
pub mod vendor;

use std::path::{Path, PathBuf};

use crate::config::WorldName;

pub use componentize::{componentize_core_module, WIT_SOURCE};

/// Errors of building a plugin.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}: no plugin.toml (a plugin folder needs one with `world = \"transform\"`, `\"udf\"` or `\"joiner\"`)")]
    NoManifest(PathBuf),
    #[error("{path}: invalid plugin.toml: {message}")]
    BadManifest { path: PathBuf, message: String },
    #[error("{0}: cannot tell the plugin's language (expected Cargo.toml, go.mod or app.py)")]
    UnknownLanguage(PathBuf),
    #[error("{tool} is not available: {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("{tool} failed (exit {status}):\n{output}")]
    ToolFailed { tool: String, status: String, output: String },
    #[error("componentize failed: {0}")]
    Componentize(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The parsed `plugin.toml` of a plugin folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginManifest {
    pub name: String,
    pub world: WorldName,
}

/// Languages a plugin folder can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    Go,
}

/// What `build_plugin` produced.
#[derive(Clone, Debug)]
pub struct Built {
    pub manifest: PluginManifest,
    pub language: Language,
    /// The component file.
    pub output: PathBuf,
    /// False when the output was already up to date.
    pub rebuilt: bool,
}

/// Reads `DIR/plugin.toml`. Only two keys exist, so a tiny line parser is
/// enough (no TOML dependency for two strings).
pub fn read_manifest(dir: &Path) -> Result<PluginManifest, BuildError> {
    let path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path).map_err(|_| BuildError::NoManifest(dir.to_path_buf()))?;
    let bad = |message: String| BuildError::BadManifest { path: path.clone(), message };
    let mut name = None;
    let mut world = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| bad(format!("line {}: expected key = \"value\"", i + 1)))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| bad(format!("line {}: value must be a quoted string", i + 1)))?;
        match k.trim() {
            "name" => name = Some(v.to_string()),
            "world" => {
                world = Some(match v {
                    "transform" => WorldName::Transform,
                    "udf" => WorldName::Udf,
                    "joiner" => WorldName::Joiner,
                    "aggregator" => WorldName::Aggregator,
                    other => return Err(bad(format!("line {}: unknown world {other:?} (transform, udf, joiner, aggregator)", i + 1))),
                })
            }
            other => return Err(bad(format!("line {}: unknown key {other:?} (name, world)", i + 1))),
        }
    }
    let world = world.ok_or_else(|| bad("missing `world`".into()))?;
    let name = match name {
        Some(n) => n,
        None => dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "plugin".into()),
    };
    Ok(PluginManifest { name, world })
}

pub fn detect_language(dir: &Path) -> Result<Language, BuildError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Language::Rust)
    } else if dir.join("go.mod").is_file() {
        Ok(Language::Go)
    } else if dir.join("app.py").is_file() {
        Ok(Language::Python)
    } else {
        Err(BuildError::UnknownLanguage(dir.to_path_buf()))
    }
}

/// Where `build_plugin` writes a folder's component by default.
pub fn default_output(dir: &Path, manifest: &PluginManifest) -> PathBuf {
    dir.join("target").join("streamhost").join(format!("{}.wasm", manifest.name))
}

/// Bump when the build recipe changes (flags, SDK embedding), so outputs
/// of older recipes are rebuilt.
const RECIPE_VERSION: &str = "streamhost-build-2";

/// Builds the plugin in `dir` into `output` (default: [`default_output`]).
///
/// Rust and Go plugins always go through cargo / go, whose own caches know
/// every input, path dependencies such as the SDKs included (a no-op build
/// takes a second). A Python build (componentize-py, ~30 s) is skipped when
/// a stamp beside the output matches the fingerprint of the plugin's files,
/// the contract and the embedded SDK.
pub fn build_plugin(dir: &Path, output: Option<&Path>, force: bool) -> Result<Built, BuildError> {
    // Toolchains run in other directories: hand them absolute paths.
    let dir = &dir.canonicalize().map_err(|e| BuildError::Io { path: dir.to_path_buf(), source: e })?;
    let manifest = read_manifest(dir)?;
    let language = detect_language(dir)?;
    let output = output.map(Path::to_path_buf).unwrap_or_else(|| default_output(dir, &manifest));
    // One build at a time per process: parallel toolchain runs gain nothing
    // on a couple of cores, and two builds must not write one output.
    static BUILD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // A folder made by `plugin new` builds against this binary's SDK.
    if vendor::has_vendored_sdk(dir) {
        let changed = vendor::vendor_sdk(dir, language)?;
        if changed > 0 {
            tracing::info!(plugin = %manifest.name, files = changed, "refreshed the vendored SDK in {}", vendor::VENDOR_DIR);
        }
    }
    let stamp_path = output.with_extension("stamp");
    let fingerprint = (language == Language::Python).then(|| fingerprint(dir, &manifest, language));
    if !force && output.is_file() {
        if let Some(fp) = &fingerprint {
            if std::fs::read_to_string(&stamp_path).is_ok_and(|s| &s == fp) {
                return Ok(Built { manifest, language, output, rebuilt: false });
            }
        }
    }
    let parent = output.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| BuildError::Io { path: parent.to_path_buf(), source: e })?;
    // Build beside the output and rename, so a reader never sees half a component.
    let partial = output.with_extension(format!("partial-{}.wasm", std::process::id()));
    let result = match language {
        Language::Rust => rust::build(dir, &manifest, &partial),
        Language::Python => python::build(dir, &manifest, &partial),
        Language::Go => go::build(dir, &manifest, &partial),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &output).map_err(|e| BuildError::Io { path: output.clone(), source: e })?;
    if let Some(fp) = fingerprint {
        std::fs::write(&stamp_path, fp).map_err(|e| BuildError::Io { path: stamp_path.clone(), source: e })?;
    }
    Ok(Built { manifest, language, output, rebuilt: true })
}

/// A hash of everything a build reads: the plugin's files (outside build
/// outputs and caches), the contract, the recipe, and the embedded SDK.
fn fingerprint(dir: &Path, manifest: &PluginManifest, language: Language) -> String {
    use sha2::{Digest, Sha256};
    fn walk(root: &Path, dir: &Path, h: &mut Sha256) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || matches!(name.as_ref(), "target" | "__pycache__" | "build") {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, h);
            } else if is_sample_or_doc(&name) {
                // Samples for `plugin test` and docs: componentize-py bundles
                // what the app imports, so editing them must not cost a
                // rebuild (and a recompile) of the component.
                continue;
            } else if let Ok(bytes) = std::fs::read(&path) {
                h.update(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().as_bytes());
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
    }
    let mut h = Sha256::new();
    h.update(RECIPE_VERSION);
    h.update(WIT_SOURCE);
    h.update(manifest.world.as_str());
    h.update(&manifest.name);
    if language == Language::Python {
        for (name, text) in python::SDK_FILES {
            h.update(name);
            h.update(text);
        }
    }
    walk(dir, dir, &mut h);
    hex::encode(h.finalize())
}

/// Files of a plugin folder no build reads: JSON-lines samples and Markdown.
fn is_sample_or_doc(name: &str) -> bool {
    name.ends_with(".jsonl") || name.ends_with(".md")
}

/// Runs a command, capturing its output into a `ToolFailed` error on failure.
pub(crate) fn run_tool(cmd: &mut std::process::Command, tool: &str) -> Result<(), BuildError> {
    let out = cmd.output().map_err(|e| BuildError::MissingTool { tool: tool.into(), hint: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(BuildError::ToolFailed { tool: tool.into(), status: out.status.to_string(), output })
}

/// Looks a tool up in `$STREAMHOST_TOOLS/venv/bin` (where scripts/setup.sh
/// installs componentize-py and Go) and then on PATH.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let tools = std::env::var_os("STREAMHOST_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/streamhost/tools")));
    if let Some(t) = tools {
        let p = t.join("venv/bin").join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Python component is rebuilt when a module changes, not when a
    /// sample or a doc does.
    #[test]
    fn samples_and_docs_do_not_change_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = PluginManifest { name: "p".into(), world: WorldName::Transform };
        std::fs::write(dir.path().join("app.py"), "x = 1\n").unwrap();
        std::fs::write(dir.path().join("sample.jsonl"), "{}\n").unwrap();
        let before = fingerprint(dir.path(), &manifest, Language::Python);
        std::fs::write(dir.path().join("sample.jsonl"), "{\"a\":1}\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "# p\n").unwrap();
        assert_eq!(fingerprint(dir.path(), &manifest, Language::Python), before);
        std::fs::write(dir.path().join("app.py"), "x = 2\n").unwrap();
        assert_ne!(fingerprint(dir.path(), &manifest, Language::Python), before);
    }
}
