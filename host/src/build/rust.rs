//! Builds a Rust plugin crate (a `cdylib` using wit-bindgen) into a component.
//!
//! The crate is compiled to a core module for `wasm32-unknown-unknown` (no WASI
//! imports: the plugin only sees the `host` interface), then wrapped into a
//! component in-process; wit-bindgen already embedded the component-type
//! section, so no world needs to be embedded here.
//!
//! Two toolchains are supported, detected in this order:
//! - a `rustc` whose sysroot has the `wasm32-unknown-unknown` std (rustup with
//!   `rustup target add wasm32-unknown-unknown`);
//! - Debian's `rustc-web` packages, which ship the std *sources*: std is then
//!   built by cargo (`-Zbuild-std`, allowed on a stable rustc by
//!   `RUSTC_BOOTSTRAP=1`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{componentize_core_module, run_tool, BuildError, PluginManifest};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_STD_SOURCES: &str = "/usr/lib/rustlib/src/rust/library";

/// Release settings for plugin builds, passed with `--config` so they apply
/// whether or not the crate belongs to a workspace with its own profile.
const RELEASE_PROFILE: &[&str] = &[
    // Speed over size: plugins sit on the hot path and stay small anyway.
    "profile.release.opt-level=3",
    "profile.release.lto=true",
    "profile.release.panic=\"abort\"",
    "profile.release.codegen-units=1",
    // Keep the name section: trap backtraces and profilers name functions.
    "profile.release.strip=\"debuginfo\"",
    "profile.release.debug=false",
    "profile.release.incremental=false",
];

/// How the wasm std is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Toolchain {
    /// The active rustc has the prebuilt wasm32 std.
    Prebuilt,
    /// Debian's rustc with std built from its sources.
    DebianBuildStd,
}

pub fn build(dir: &Path, manifest: &PluginManifest, output: &Path) -> Result<(), BuildError> {
    let cargo = cargo_command();
    let crate_info = read_crate_metadata(&cargo, dir)?;
    let toolchain = detect_toolchain(dir)?;
    let target_dir = crate_info.target_directory.join("wasm");

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(dir)
        .arg("build")
        .arg("--release")
        .arg("--lib")
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .args(["-p", &crate_info.package])
        .arg("--target-dir")
        .arg(&target_dir);
    for setting in RELEASE_PROFILE {
        cmd.args(["--config", setting]);
    }
    if toolchain == Toolchain::DebianBuildStd {
        cmd.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1").arg("-Zbuild-std=std,panic_abort");
    }
    tracing::info!(plugin = %manifest.name, ?toolchain, "building rust plugin");
    run_tool(&mut cmd, "cargo build")?;

    let core_path = target_dir.join(WASM_TARGET).join("release").join(format!("{}.wasm", crate_info.artifact));
    let core = std::fs::read(&core_path).map_err(|e| BuildError::Io { path: core_path.clone(), source: e })?;
    let component = componentize_core_module(&core, None, false)?;
    write_atomically(output, &component)
}

/// The cargo to run: the one running us (tests, `cargo run`) or PATH's.
fn cargo_command() -> PathBuf {
    std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo"))
}

/// What `cargo metadata` tells about the plugin crate.
#[derive(Debug)]
struct CrateInfo {
    /// Package name (for `-p`).
    package: String,
    /// File stem of the cdylib (`my_plugin` for package `my-plugin`).
    artifact: String,
    /// The workspace's target directory; plugin builds go to its `wasm/`.
    target_directory: PathBuf,
}

fn read_crate_metadata(cargo: &Path, dir: &Path) -> Result<CrateInfo, BuildError> {
    let manifest_path = dir.join("Cargo.toml");
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(&manifest_path)
        .output()
        .map_err(|e| BuildError::MissingTool {
            tool: "cargo".into(),
            hint: format!("{e}; install Rust (rustup.rs)"),
        })?;
    if !out.status.success() {
        return Err(BuildError::ToolFailed {
            tool: "cargo metadata".into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let bad = |message: String| BuildError::BadManifest { path: manifest_path.clone(), message };
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| bad(format!("unreadable cargo metadata: {e}")))?;
    parse_crate_metadata(&meta, &manifest_path).map_err(bad)
}

fn parse_crate_metadata(meta: &serde_json::Value, manifest_path: &Path) -> Result<CrateInfo, String> {
    let wanted = manifest_path.canonicalize().unwrap_or_else(|_| manifest_path.to_path_buf());
    let target_directory =
        meta["target_directory"].as_str().map(PathBuf::from).ok_or("cargo metadata has no target_directory")?;
    let packages = meta["packages"].as_array().ok_or("cargo metadata has no packages")?;
    let package = packages
        .iter()
        .find(|p| {
            p["manifest_path"].as_str().is_some_and(|m| {
                let m = Path::new(m);
                m.canonicalize().map(|c| c == wanted).unwrap_or(m == wanted)
            })
        })
        .ok_or("this crate is not among cargo metadata's packages")?;
    let name = package["name"].as_str().ok_or("package without a name")?.to_string();
    let cdylib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["crate_types"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
        .ok_or_else(|| format!("package {name} has no cdylib target: add `[lib] crate-type = [\"cdylib\"]`"))?;
    let artifact = cdylib["name"].as_str().ok_or("cdylib target without a name")?.replace('-', "_");
    Ok(CrateInfo { package: name, artifact, target_directory })
}

/// Prefers a rustc that has the prebuilt wasm std (checked by asking that
/// rustc for the target's library dir), else Debian's std sources.
fn detect_toolchain(dir: &Path) -> Result<Toolchain, BuildError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .current_dir(dir)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| has_core_library(&d)) {
        return Ok(Toolchain::Prebuilt);
    }
    if Path::new(DEBIAN_RUSTC).is_file() && Path::new(DEBIAN_STD_SOURCES).is_dir() {
        return Ok(Toolchain::DebianBuildStd);
    }
    Err(BuildError::MissingTool {
        tool: format!("the Rust standard library for {WASM_TARGET}"),
        hint: format!(
            "run `rustup target add {WASM_TARGET}`, or on Debian 12 without that: \
             `apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22` \
             (provides {DEBIAN_RUSTC} and {DEBIAN_STD_SOURCES}); scripts/setup.sh does it"
        ),
    })
}

fn has_core_library(libdir: &Path) -> bool {
    std::fs::read_dir(libdir)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
        .unwrap_or(false)
}

/// Writes `bytes` to a temporary file next to `path` and renames it, so a
/// reader never sees a half-written component.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let io = |source| BuildError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io)?;
    // Temporary files are created private (0600); a component is not secret.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cdylib_artifact_name() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").unwrap();
        let meta = serde_json::json!({
            "target_directory": "/ws/target",
            "packages": [
                {"name": "other", "manifest_path": "/elsewhere/Cargo.toml", "targets": []},
                {"name": "my-plugin", "manifest_path": manifest.to_str().unwrap(), "targets": [
                    {"name": "my-plugin", "crate_types": ["cdylib", "rlib"]}
                ]}
            ]
        });
        let info = parse_crate_metadata(&meta, &manifest).unwrap();
        assert_eq!(info.package, "my-plugin");
        assert_eq!(info.artifact, "my_plugin");
        assert_eq!(info.target_directory, PathBuf::from("/ws/target"));
    }

    #[test]
    fn refuses_a_crate_without_cdylib() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").unwrap();
        let meta = serde_json::json!({
            "target_directory": "/t",
            "packages": [{"name": "p", "manifest_path": manifest.to_str().unwrap(), "targets": [
                {"name": "p", "crate_types": ["lib"]}
            ]}]
        });
        assert!(parse_crate_metadata(&meta, &manifest).unwrap_err().contains("cdylib"));
    }
}
