//! The on-disk cache of precompiled components.
//!
//! Compiling a component with Cranelift takes from milliseconds (Rust) to
//! ~40 s (Python: the whole CPython interpreter); loading a precompiled
//! artifact takes milliseconds. The file name binds an artifact to both the
//! component's content and the engine's compilation settings:
//! `<sha256 of component>-<hash of Engine::precompile_compatibility_hash>.cwasm`.
//!
//! Next to each artifact, `<name>.cwasm.sha256` holds the SHA-256 (hex) of
//! the artifact; an artifact is used only if it matches (see
//! [`ArtifactCache::load`]). Both files are written to a temporary name and
//! renamed, so a reader never sees a partial file.
//!
//! The cache is bounded (`settings.artifact_cache_max_mb`, default
//! [`DEFAULT_MAX_BYTES`]): after each new artifact, the least recently used
//! ones (by modification time, refreshed on every hit) are removed until the
//! artifacts fit, never one whose component is in use in this process. A
//! process that mapped a removed artifact keeps its mapping (Linux unlinks the
//! name, not the inode); it would only recompile on its next load.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The artifact cache's default bound: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    /// Bound on the artifacts' total size.
    max_bytes: u64,
    /// Hex hash of the engine's compatibility settings (wasmtime version,
    /// target, compiler flags).
    engine_key: String,
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache { dir, max_bytes: DEFAULT_MAX_BYTES, engine_key: format!("{:016x}", hasher.finish()) }
    }

    pub(crate) fn set_max_bytes(&mut self, bytes: u64) {
        self.max_bytes = bytes;
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
        let mut file = File::open(&path).ok()?;
        let expected = std::fs::read_to_string(checksum_path(&path)).unwrap_or_default();
        if sha256_of(&mut file).ok().as_deref() != Some(expected.trim()) {
            tracing::warn!(path = %path.display(), "damaged precompiled artifact, recompiling");
            self.remove(&path);
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be an artifact of
        // `Component::serialize` from a compatible engine (it maps it and
        // runs the machine code inside). This one is: we wrote it (`store`
        // below) under a name that includes the engine's compatibility hash,
        // and the bytes of the very file we opened match the checksum we
        // wrote with it, so it is exactly what wasmtime produced, not a
        // truncated or damaged file (on Linux wasmtime maps that open file
        // through /proc/self/fd, so a concurrent rename cannot swap it). We
        // never write a cache file in place, so it does not change while
        // mapped. wasmtime also re-checks the version and settings recorded
        // in the artifact. The directory is the user's own: whoever can write
        // there can already change the plugins themselves.
        match unsafe { Component::deserialize_file(engine, mappable_path(&file, &path)) } {
            Ok(component) => {
                // Recently used: the last to be pruned.
                let _ = file.set_modified(std::time::SystemTime::now());
                Some(component)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable precompiled artifact, recompiling");
                self.remove(&path);
                None
            }
        }
    }

    /// Saves a precompiled artifact. Failures (read-only cache, full disk)
    /// only cost a recompilation next time, so they are logged, not returned.
    pub(crate) fn store(&self, content_hash: &str, artifact: &[u8]) {
        let path = self.path_for(content_hash);
        let checksum = hex::encode(Sha256::digest(artifact));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| write_atomically(&self.dir, &path, artifact))
            .and_then(|()| write_atomically(&self.dir, &checksum_path(&path), checksum.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the precompiled plugin");
        }
    }

    /// Removes the least recently used artifacts until the cache fits its
    /// bound, sparing those of `in_use` (content hashes). Other files of the
    /// directory (`uploads/`, temporary files) are not counted or touched.
    pub(crate) fn prune(&self, in_use: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut artifacts: Vec<(std::time::SystemTime, u64, PathBuf, bool)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let path = e.path();
                let name = path.file_name()?.to_str()?;
                let hash = name.strip_suffix(".cwasm")?.split('-').next()?.to_string();
                let meta = e.metadata().ok().filter(|m| m.is_file())?;
                let checksum = std::fs::metadata(checksum_path(&path)).map_or(0, |m| m.len());
                Some((meta.modified().ok()?, meta.len() + checksum, path, in_use.contains(&hash)))
            })
            .collect();
        let mut total: u64 = artifacts.iter().map(|a| a.1).sum();
        if total <= self.max_bytes {
            return;
        }
        artifacts.sort_by_key(|a| a.0);
        for (_, size, path, used) in artifacts {
            if total <= self.max_bytes {
                break;
            }
            if used {
                continue;
            }
            tracing::info!(path = %path.display(), bytes = size, "artifact cache over its bound: removing the least recently used");
            self.remove(&path);
            total -= size;
        }
    }

    fn remove(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(checksum_path(path));
    }
}

fn checksum_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// SHA-256 (hex) of a file's content, read in chunks (artifacts are tens of
/// MiB for Python plugins).
pub(crate) fn sha256_of(file: &mut File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 18];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hex::encode(hasher.finalize())),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// A path that opens the same file as `file`: on Linux its /proc/self/fd
/// entry (the checked inode even if the name was replaced meanwhile).
fn mappable_path(file: &File, path: &Path) -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if fd_path.exists() {
            return fd_path;
        }
    }
    let _ = file;
    path.to_path_buf()
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

    fn cache(dir: &Path, max_bytes: u64) -> ArtifactCache {
        ArtifactCache { dir: dir.to_path_buf(), max_bytes, engine_key: "e".into() }
    }

    /// An artifact of `size` bytes used `age` seconds ago.
    fn artifact(cache: &ArtifactCache, hash: &str, size: usize, age: u64) -> PathBuf {
        cache.store(hash, &vec![0u8; size]);
        let path = cache.path_for(hash);
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
        path
    }

    #[test]
    fn prune_removes_the_least_recently_used_but_never_what_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        // 4 artifacts of 1000 bytes (+ 64-byte checksums); room for 2.
        let cache = cache(dir.path(), 2200);
        let oldest_in_use = artifact(&cache, "a", 1000, 400);
        let old = artifact(&cache, "b", 1000, 300);
        let recent = artifact(&cache, "c", 1000, 200);
        let newest = artifact(&cache, "d", 1000, 100);
        std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
        std::fs::write(dir.path().join("uploads/x.wasm"), vec![0u8; 5000]).unwrap();

        cache.prune(&["a".to_string()].into_iter().collect());
        assert!(oldest_in_use.exists(), "in use: kept although the oldest");
        assert!(!old.exists() && !checksum_path(&old).exists(), "the least recently used goes first");
        assert!(!recent.exists(), "then the next one, until the cache fits");
        assert!(newest.exists());
        assert!(dir.path().join("uploads/x.wasm").exists(), "uploads are not the cache's");

        // Under its bound, nothing is removed.
        let roomy = super::tests::cache(dir.path(), 1 << 20);
        roomy.prune(&Default::default());
        assert!(oldest_in_use.exists() && newest.exists());
    }

    #[test]
    fn checksum_is_of_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        write_atomically(dir.path(), &path, b"pretend machine code").unwrap();
        let digest = sha256_of(&mut File::open(&path).unwrap()).unwrap();
        assert_eq!(digest, hex::encode(Sha256::digest(b"pretend machine code")));
        assert_eq!(checksum_path(&path), dir.path().join("a.cwasm.sha256"));
    }
}
