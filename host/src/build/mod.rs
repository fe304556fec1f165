//! `streamhost plugin build DIR`: turns a plugin source folder (Rust, Python
//! or Go) into a component. Each language has its own module; the
//! componentize step runs in-process (wit-component), so a user needs only
//! their language's toolchain.
//!
//! A plugin folder holds a `plugin.toml`:
//! ```toml
//! name = "impression-cleaner"   # optional, default: folder name
//! world = "transform"           # or "udf"
//! ```
//! and the language is recognised by `Cargo.toml`, `go.mod` or `app.py`.

mod componentize;
mod go;
mod python;
mod rust;

use std::path::{Path, PathBuf};

use crate::config::WorldName;

pub use componentize::{componentize_core_module, WIT_SOURCE};

/// Errors of building a plugin.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}: no plugin.toml (a plugin folder needs one with `world = \"transform\"` or `\"udf\"`)")]
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
                    other => return Err(bad(format!("line {}: unknown world {other:?} (transform, udf)", i + 1))),
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

/// Builds the plugin in `dir` into `output` (default: [`default_output`]),
/// unless the output is newer than every source file.
pub fn build_plugin(dir: &Path, output: Option<&Path>, force: bool) -> Result<Built, BuildError> {
    let manifest = read_manifest(dir)?;
    let language = detect_language(dir)?;
    let output = output.map(Path::to_path_buf).unwrap_or_else(|| default_output(dir, &manifest));
    // One build at a time per process: parallel toolchain runs gain nothing
    // on a couple of cores, and two builds must not write one output.
    static BUILD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !force && is_up_to_date(dir, &output) {
        return Ok(Built { manifest, language, output, rebuilt: false });
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
    Ok(Built { manifest, language, output, rebuilt: true })
}

/// True when `output` exists and is newer than every file under `dir`
/// (outside `target/`, `build/` and caches) and than the SDKs it embeds.
fn is_up_to_date(dir: &Path, output: &Path) -> bool {
    let Ok(out_time) = std::fs::metadata(output).and_then(|m| m.modified()) else { return false };
    fn newest(dir: &Path, newest_seen: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" || name == "__pycache__" || name == "build" {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                newest(&path, newest_seen);
            } else if let Ok(t) = entry.metadata().and_then(|m| m.modified()) {
                if t > *newest_seen {
                    *newest_seen = t;
                }
            }
        }
    }
    let mut newest_src = std::time::SystemTime::UNIX_EPOCH;
    newest(dir, &mut newest_src);
    newest_src <= out_time
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
