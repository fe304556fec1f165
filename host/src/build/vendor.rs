//! The SDKs and the contract, embedded in the binary and written into a
//! plugin folder's `.streamhost/` so the folder builds and tests anywhere:
//! no checkout of this repository, nothing but the `streamhost` binary and
//! each language's own toolchain.
//!
//! Layout (paths relative to the plugin folder):
//! - `.streamhost/wit/plugin.wit` — the contract;
//! - `.streamhost/sdk/rust/` — the Rust SDK crate with a standalone
//!   Cargo.toml (its bindings read `../../wit`, i.e. the file above);
//! - `.streamhost/sdk/go/` — the Go SDK module `streamhost.dev/sdk`
//!   (the plugin's go.mod has `replace streamhost.dev/sdk => ./.streamhost/sdk/go`);
//! - `.streamhost/sdk/python/streamhost/` — the Python SDK package (native
//!   tests put `.streamhost/sdk/python` on `sys.path`; builds use the copy
//!   embedded here anyway).
//!
//! `streamhost plugin new` writes it; `streamhost plugin build` refreshes it
//! whenever it exists, so a folder always builds against the SDK of the
//! binary that builds it. Only files whose content differs are written
//! (cargo and go rebuild on modification times), and files of the managed
//! folders that the embedded SDK no longer has are removed.

use std::path::{Path, PathBuf};

use super::{python, BuildError, Language, WIT_SOURCE};

/// The folder, inside a plugin folder, that holds the vendored SDK.
pub const VENDOR_DIR: &str = ".streamhost";

/// The Rust SDK's sources (`sdk/rust/src`), file by file.
const RUST_SDK_SOURCES: &[(&str, &str)] = &[
    ("aggregator.rs", include_str!("../../../sdk/rust/src/aggregator.rs")),
    ("bindings.rs", include_str!("../../../sdk/rust/src/bindings.rs")),
    ("columns.rs", include_str!("../../../sdk/rust/src/columns.rs")),
    ("error.rs", include_str!("../../../sdk/rust/src/error.rs")),
    ("event.rs", include_str!("../../../sdk/rust/src/event.rs")),
    ("joiner.rs", include_str!("../../../sdk/rust/src/joiner.rs")),
    ("lib.rs", include_str!("../../../sdk/rust/src/lib.rs")),
    ("log.rs", include_str!("../../../sdk/rust/src/log.rs")),
    ("transform.rs", include_str!("../../../sdk/rust/src/transform.rs")),
    ("udf.rs", include_str!("../../../sdk/rust/src/udf.rs")),
];

/// The Rust SDK's dependencies, as in `sdk/rust/Cargo.toml` with the
/// workspace's versions and features spelled out (checked by a test).
const RUST_SDK_DEPENDENCIES: &str = r#"wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc"] }
serde_json = { version = "1", features = ["raw_value"] }
serde = { version = "1", features = ["derive"] }
"#;

/// The Go SDK module (`sdk/go`, without its tests and README), file by file.
const GO_SDK_FILES: &[(&str, &str)] = &[
    ("abi_decode.go", include_str!("../../../sdk/go/abi_decode.go")),
    ("abi_encode.go", include_str!("../../../sdk/go/abi_encode.go")),
    ("abi_layout.go", include_str!("../../../sdk/go/abi_layout.go")),
    ("arena_wasip1.go", include_str!("../../../sdk/go/arena_wasip1.go")),
    ("doc.go", include_str!("../../../sdk/go/doc.go")),
    ("exports_wasip1.go", include_str!("../../../sdk/go/exports_wasip1.go")),
    ("go.mod", include_str!("../../../sdk/go/go.mod")),
    ("joiner.go", include_str!("../../../sdk/go/joiner.go")),
    ("log.go", include_str!("../../../sdk/go/log.go")),
    ("log_native.go", include_str!("../../../sdk/go/log_native.go")),
    ("log_wasip1.go", include_str!("../../../sdk/go/log_wasip1.go")),
    ("memory_wasm.s", include_str!("../../../sdk/go/memory_wasm.s")),
    ("registry.go", include_str!("../../../sdk/go/registry.go")),
    ("types.go", include_str!("../../../sdk/go/types.go")),
];

const VENDOR_README: &str = "\
This folder is written by `streamhost plugin new` and refreshed by every
`streamhost plugin build` with the SDK and contract (wit/plugin.wit) of the
streamhost binary that runs it. Do not edit it: changes are overwritten.
Keep it in version control if you want `cargo test` / `go test` /
`python3 -m unittest` to work in a fresh clone before the first build.
";

/// The files of `language`'s vendored SDK (and the contract), as paths
/// relative to the plugin folder with their contents.
pub fn vendored_files(language: Language) -> Vec<(PathBuf, String)> {
    let root = Path::new(VENDOR_DIR);
    let mut files = vec![
        (root.join("README.md"), VENDOR_README.to_string()),
        (root.join("VERSION"), format!("streamhost {}\n", env!("CARGO_PKG_VERSION"))),
        (root.join("wit").join("plugin.wit"), WIT_SOURCE.to_string()),
    ];
    let sdk = root.join("sdk");
    match language {
        Language::Rust => {
            files.push((sdk.join("rust").join("Cargo.toml"), rust_sdk_manifest()));
            for (name, text) in RUST_SDK_SOURCES {
                files.push((sdk.join("rust").join("src").join(name), text.to_string()));
            }
        }
        Language::Go => {
            for (name, text) in GO_SDK_FILES {
                files.push((sdk.join("go").join(name), text.to_string()));
            }
        }
        Language::Python => {
            for (name, text) in python::SDK_FILES {
                files.push((sdk.join("python").join("streamhost").join(name), text.to_string()));
            }
        }
    }
    files
}

/// The vendored Rust SDK's Cargo.toml: standalone (no workspace), so it
/// builds wherever the plugin folder is.
fn rust_sdk_manifest() -> String {
    format!(
        "# Written by streamhost {version}; see ../../README.md.\n\
         [package]\n\
         name = \"streamhost-sdk\"\n\
         version = \"{version}\"\n\
         edition = \"2021\"\n\
         description = \"The streamhost Rust SDK, vendored by `streamhost plugin new|build`\"\n\
         publish = false\n\
         \n\
         [dependencies]\n\
         {RUST_SDK_DEPENDENCIES}",
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Writes or refreshes `dir/.streamhost` for `language`: files whose content
/// differs are (re)written, files of the managed folders that are not part
/// of the embedded SDK are removed. Returns how many files changed.
pub fn vendor_sdk(dir: &Path, language: Language) -> Result<usize, BuildError> {
    let files = vendored_files(language);
    let mut changed = 0;
    for (rel, text) in &files {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        let io = |source| BuildError::Io { path: path.clone(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        changed += 1;
    }
    // Remove what an older SDK had and this one does not, in the folders
    // this module owns (the language's SDK and the contract) only.
    let keep: std::collections::HashSet<PathBuf> = files.iter().map(|(rel, _)| dir.join(rel)).collect();
    let root = dir.join(VENDOR_DIR);
    let mut managed = vec![root.join("wit")];
    managed.push(root.join("sdk").join(match language {
        Language::Rust => "rust",
        Language::Go => "go",
        Language::Python => "python",
    }));
    for folder in managed {
        changed += remove_stale(&folder, &keep)?;
    }
    Ok(changed)
}

/// Whether `dir` has a vendored SDK (written by `plugin new`), which builds
/// then keep current. Folders without one (such as this repository's
/// `plugins/`, which use `sdk/` by path) are left alone.
pub fn has_vendored_sdk(dir: &Path) -> bool {
    dir.join(VENDOR_DIR).join("VERSION").is_file()
}

/// Removes the files under `folder` that are not in `keep` (build outputs
/// such as `target/` or `__pycache__/` included: they are caches).
fn remove_stale(folder: &Path, keep: &std::collections::HashSet<PathBuf>) -> Result<usize, BuildError> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let io = |source| BuildError::Io { path: path.clone(), source };
        let file_type = entry.file_type().map_err(io)?;
        if file_type.is_dir() {
            removed += remove_stale(&path, keep)?;
            // Empty now (or holding only what was removed): drop it too.
            if std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                std::fs::remove_dir(&path).map_err(io)?;
            }
        } else if !keep.contains(&path) {
            std::fs::remove_file(&path).map_err(io)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    /// File names in `dir` passing `keep`, sorted.
    fn listing(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| keep(n))
            .collect();
        names.sort();
        names
    }

    /// Every source of the Rust SDK is embedded, byte for byte: a file added
    /// to sdk/rust/src must be added to `RUST_SDK_SOURCES` too.
    #[test]
    fn embedded_rust_sdk_matches_the_sdk_folder() {
        let src = repo("sdk/rust/src");
        let embedded: Vec<&str> = RUST_SDK_SOURCES.iter().map(|(n, _)| *n).collect();
        assert_eq!(listing(&src, |n| n.ends_with(".rs")), embedded);
        for (name, text) in RUST_SDK_SOURCES {
            assert_eq!(std::fs::read_to_string(src.join(name)).unwrap(), *text, "{name}");
        }
    }

    /// The same for the Go SDK (everything but its tests and README).
    #[test]
    fn embedded_go_sdk_matches_the_sdk_folder() {
        let src = repo("sdk/go");
        let embedded: Vec<&str> = GO_SDK_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(listing(&src, |n| !n.ends_with("_test.go") && n != "README.md"), embedded);
        for (name, text) in GO_SDK_FILES {
            assert_eq!(std::fs::read_to_string(src.join(name)).unwrap(), *text, "{name}");
        }
    }

    /// The standalone manifest names the same dependencies as
    /// sdk/rust/Cargo.toml, with the workspace's versions and features.
    #[test]
    fn rust_manifest_has_the_sdk_dependencies() {
        let manifest = std::fs::read_to_string(repo("sdk/rust/Cargo.toml")).unwrap();
        let workspace = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
        let deps = manifest.split("[dependencies]").nth(1).unwrap();
        let mut names = Vec::new();
        for line in deps.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (name, spec) = line.split_once('=').unwrap();
            let (name, spec) = (name.trim(), spec.trim());
            let name = name.strip_suffix(".workspace").unwrap_or(name);
            names.push(name.to_string());
            let expected = if spec == "true" {
                // `dep.workspace = true`: the workspace's line.
                let line = workspace.lines().find(|l| l.starts_with(&format!("{name} ="))).unwrap();
                format!("{name} ={}", line.split_once('=').unwrap().1)
            } else {
                line.to_string()
            };
            assert!(RUST_SDK_DEPENDENCIES.lines().any(|l| l == expected), "{expected} missing from {RUST_SDK_DEPENDENCIES}");
        }
        assert_eq!(names.len(), RUST_SDK_DEPENDENCIES.lines().count(), "{names:?}");
        // The bindings find the contract where the vendored layout puts it.
        let bindings = RUST_SDK_SOURCES.iter().find(|(n, _)| *n == "bindings.rs").unwrap().1;
        assert!(bindings.contains("path: \"../../wit\""));
    }

    #[test]
    fn vendoring_writes_refreshes_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let n = vendor_sdk(dir.path(), Language::Rust).unwrap();
        assert_eq!(n, vendored_files(Language::Rust).len());
        assert!(has_vendored_sdk(dir.path()));
        let lib = dir.path().join(".streamhost/sdk/rust/src/lib.rs");
        let wit = dir.path().join(".streamhost/wit/plugin.wit");
        assert_eq!(std::fs::read_to_string(&wit).unwrap(), WIT_SOURCE);
        // Nothing changed: nothing written (modification times kept).
        let mtime = std::fs::metadata(&lib).unwrap().modified().unwrap();
        assert_eq!(vendor_sdk(dir.path(), Language::Rust).unwrap(), 0);
        assert_eq!(std::fs::metadata(&lib).unwrap().modified().unwrap(), mtime);
        // An edited file is restored, a file the SDK does not have is removed
        // (and its folder), a target/ inside the SDK is a cache and goes too.
        std::fs::write(&lib, "// edited").unwrap();
        let stale = dir.path().join(".streamhost/sdk/rust/src/old/gone.rs");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, "").unwrap();
        assert_eq!(vendor_sdk(dir.path(), Language::Rust).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&lib).unwrap(), RUST_SDK_SOURCES.iter().find(|(n, _)| *n == "lib.rs").unwrap().1);
        assert!(!stale.exists() && !stale.parent().unwrap().exists());
        // Files outside the managed folders are the user's.
        let mine = dir.path().join(".streamhost/notes.txt");
        std::fs::write(&mine, "mine").unwrap();
        vendor_sdk(dir.path(), Language::Rust).unwrap();
        assert!(mine.exists());
    }

    #[test]
    fn each_language_gets_its_own_sdk() {
        let has = |language, needle: &str| vendored_files(language).iter().any(|(p, _)| p.to_string_lossy().contains(needle));
        assert!(has(Language::Go, "sdk/go/go.mod") && !has(Language::Go, "sdk/rust"));
        assert!(has(Language::Python, "sdk/python/streamhost/_entry.py") && !has(Language::Python, "sdk/go"));
        assert!(has(Language::Rust, "sdk/rust/Cargo.toml") && has(Language::Rust, "wit/plugin.wit"));
    }
}
