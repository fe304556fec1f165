//! The on-disk cache of precompiled components.
//!
//! Compiling a component with Cranelift takes from milliseconds (Rust) to
//! ~40 s (Python: the whole CPython interpreter); loading a precompiled
//! artifact takes milliseconds. The file name binds an artifact to both the
//! component's content and the engine's compilation settings:
//! `<sha256 of component>-<hash of Engine::precompile_compatibility_hash>.cwasm`.
//!
//! File format: `MAGIC` (8 bytes), the SHA-256 of the artifact (32 bytes), the
//! artifact from `Engine::precompile_component`. Files are written to a
//! temporary name and renamed, so a reader never sees a partial file.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"SHCWASM1";
const HEADER_LEN: usize = MAGIC.len() + 32;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    /// Hex hash of the engine's compatibility settings (wasmtime version,
    /// target, compiler flags).
    engine_key: String,
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache { dir, engine_key: format!("{:016x}", hasher.finish()) }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, content_hash: &str) -> PathBuf {
        self.dir.join(format!("{content_hash}-{}.cwasm", self.engine_key))
    }

    /// The cached component for `content_hash`, if a sound artifact is there.
    /// A damaged or incompatible file is removed (it will be rewritten).
    pub(crate) fn load(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let path = self.path_for(content_hash);
        let bytes = std::fs::read(&path).ok()?;
        let Some(artifact) = verified_artifact(&bytes) else {
            tracing::warn!(path = %path.display(), "damaged precompiled artifact, recompiling");
            let _ = std::fs::remove_file(&path);
            return None;
        };
        // SAFETY: `Component::deserialize` trusts its input to be an artifact
        // produced by `precompile_component` of a compatible engine (it runs
        // the machine code inside). This one is: we wrote it (`store` below)
        // under a name that includes the engine's compatibility hash, and its
        // checksum matches, so it is byte for byte what wasmtime produced,
        // not a truncated or damaged file. wasmtime also re-checks the
        // version and settings recorded in the artifact. The cache directory
        // is the user's own; anyone able to write there can already change
        // the plugins themselves.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable precompiled artifact, recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves a precompiled artifact. Failures (read-only cache, full disk)
    /// only cost a recompilation next time, so they are logged, not returned.
    pub(crate) fn store(&self, content_hash: &str, artifact: &[u8]) {
        let path = self.path_for(content_hash);
        if let Err(e) = self.write(&path, artifact) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the precompiled plugin");
        }
    }

    fn write(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&Sha256::digest(artifact))?;
        tmp.write_all(artifact)?;
        tmp.as_file().sync_data()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The artifact inside a cache file, if the header and checksum are right.
fn verified_artifact(file: &[u8]) -> Option<&[u8]> {
    if file.len() < HEADER_LEN || &file[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (checksum, artifact) = file[MAGIC.len()..].split_at(32);
    (Sha256::digest(artifact).as_slice() == checksum).then_some(artifact)
}

/// The default cache directory: `$XDG_CACHE_HOME/streamhost/artifacts`, else
/// `~/.cache/streamhost/artifacts`, else one under the temporary directory.
pub(crate) fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("streamhost").join("artifacts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_guards_the_artifact() {
        let artifact = b"pretend machine code";
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(artifact));
        file.extend_from_slice(artifact);
        assert_eq!(verified_artifact(&file), Some(&artifact[..]));

        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verified_artifact(&flipped), None);
        assert_eq!(verified_artifact(&file[..file.len() - 1]), None);
        assert_eq!(verified_artifact(b"SHCWASM1"), None);
    }
}
