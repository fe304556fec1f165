//! Hot swap: replacing a plugin of a running pipeline without a restart.
//!
//! A swap request is handled on the thread that received it (the admin
//! API's), never on the pipeline thread: the uploaded component is stored
//! under its content hash, compiled (or found in the artifact cache),
//! linked against the slot's world, checked for compatibility, optionally
//! tried on a sample of recent input (the canary), and given one started
//! instance per runner. Only then is it published in the plugin's registry
//! slot (`plugin::registry`); each runner picks it up before its next batch
//! with one atomic load. A monitor thread judges the new version over its
//! first inputs and puts the previous one back if it fails too often.
//! Semantics and API: docs/hot-swap.md.

mod admin;
pub mod api;
mod canary;
pub mod client;
mod compat;
mod rollback;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crossbeam_channel::Sender;
use sha2::{Digest, Sha256};

use crate::config::{HotSwapSettings, WorldName};
use crate::plugin::{unix_micros, PluginError, PluginRegistry, PluginRuntime, Slot, SwapAction, Version};
pub use admin::{remove_addr_file, AdminError, AdminServer, AdminViews};
pub use api::{PluginList, PluginView, RollbackResponse, SwapResponse};
pub use canary::CanaryReport;
pub use client::{AdminClient, ClientError};

/// Why a swap or rollback did not happen. The current version keeps running.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("no plugin named `{name}` in this pipeline (it has: {known})")]
    UnknownPlugin { name: String, known: String },
    /// The new component is not a compatible replacement (or not a
    /// component, or it failed to load or its canary).
    #[error("plugin `{plugin}`: swap refused: {reason}")]
    Refused { plugin: String, reason: String },
    #[error("plugin `{0}` has no previous version to roll back to")]
    NoPrevious(String),
    /// The host failed (I/O on the upload directory, the engine).
    #[error("plugin `{plugin}`: {message}")]
    Host { plugin: String, message: String },
}

impl SwapError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            SwapError::UnknownPlugin { .. } => 404,
            SwapError::Refused { .. } => 400,
            SwapError::NoPrevious(_) => 409,
            SwapError::Host { .. } => 500,
        }
    }
}

/// Options of one swap.
#[derive(Clone, Debug, Default)]
pub struct SwapOptions {
    /// The new version's `init` config (default: the current version's).
    pub config: Option<serde_json::Value>,
    /// Try the new version on the recent-input sample first.
    pub canary: bool,
}

/// Swaps and rolls back the plugins of one running pipeline.
pub struct Swapper {
    runtime: Arc<PluginRuntime>,
    registry: Arc<PluginRegistry>,
    settings: HotSwapSettings,
    /// Uploaded components, by content hash.
    upload_dir: PathBuf,
    /// Wakes the rollback monitor (started by the first swap).
    monitor: Mutex<Option<Sender<()>>>,
}

impl std::fmt::Debug for Swapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swapper").field("upload_dir", &self.upload_dir).finish_non_exhaustive()
    }
}

impl Swapper {
    /// Uploaded components go to `uploads/` in the artifact cache directory.
    pub fn new(runtime: Arc<PluginRuntime>, registry: Arc<PluginRegistry>, settings: HotSwapSettings) -> Self {
        let upload_dir = runtime.artifact_cache_dir().join("uploads");
        Swapper { runtime, registry, settings, upload_dir, monitor: Mutex::new(None) }
    }

    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// Every plugin slot, for `GET /plugins`.
    pub fn list(&self) -> PluginList {
        PluginList { plugins: self.registry.slots().map(|s| PluginView::of(s)).collect() }
    }

    /// One plugin slot.
    pub fn view(&self, name: &str) -> Result<PluginView, SwapError> {
        Ok(PluginView::of(self.slot(name)?))
    }

    /// Replaces plugin `name` with the component `bytes`. Blocks while it
    /// compiles: call it off the pipeline thread.
    pub fn swap(&self, name: &str, bytes: &[u8], opts: SwapOptions) -> Result<SwapResponse, SwapError> {
        let started = Instant::now();
        let slot = self.slot(name)?;
        let _changing = slot.lock_changes();
        let hash = hex::encode(Sha256::digest(bytes));
        let refuse = |reason: String| {
            tracing::warn!(plugin = name, version = %hash, %reason, "plugin swap refused");
            slot.refused(Some(hash.clone()), reason.clone());
            SwapError::Refused { plugin: name.into(), reason }
        };
        let path = self.store_upload(&hash, bytes).map_err(|e| {
            let message = format!("cannot store the uploaded component in {}: {e}", self.upload_dir.display());
            slot.refused(Some(hash.clone()), message.clone());
            SwapError::Host { plugin: name.into(), message }
        })?;
        let current = slot.current();
        let config = opts.config.unwrap_or_else(|| current.config.clone());
        let load = || {
            let old = &current.plugin;
            self.runtime.load(name, &path, Some(slot.world()), old.limits(), old.grants(), &config)
        };
        let candidate = load().map_err(|e| load_error(e, &refuse, name))?;
        if slot.world() == WorldName::Udf {
            compat::check_functions(&slot.functions_used(), current.plugin.functions(), candidate.functions()).map_err(&refuse)?;
        }

        let canary_started = Instant::now();
        let mut canary = None;
        if opts.canary || self.settings.canary.always {
            let sample = slot.sample();
            if sample.is_empty() {
                if opts.canary {
                    return Err(refuse("canary: no recent input to try the new version on yet (swap without the canary, or retry once data flows)".into()));
                }
            } else {
                // A load of its own: the canary's calls must not count in
                // the version's stats (the rollback rule reads them).
                let probe = load().map_err(|e| load_error(e, &refuse, name))?;
                let report = canary::run(&probe, &sample).map_err(|e| refuse(format!("canary: {e}")))?;
                let max = self.settings.canary.max_failure_rate;
                if report.failure_rate() > max {
                    return Err(refuse(format!(
                        "canary: {} of {} recent inputs failed (rate {:.2} > max_failure_rate {max}); first failure: {}",
                        report.failures,
                        report.events,
                        report.failure_rate(),
                        report.first_failure.as_deref().unwrap_or("-")
                    )));
                }
                canary = Some(report);
            }
        }
        let canary_time = canary_started.elapsed();

        let prestart_started = Instant::now();
        candidate.prestart(slot.users()).map_err(|e| refuse(e.to_string()))?;
        let prestart = prestart_started.elapsed();

        let timings = candidate.timings();
        let timings = api::SwapTimingsView {
            artifact: api::artifact_name(timings.artifact).into(),
            compile_ms: ms(timings.compile),
            link_ms: ms(timings.link),
            first_instance_ms: ms(timings.first_instance),
            canary_ms: ms(canary_time),
            prestart_ms: ms(prestart),
            total_ms: 0.0,
        };
        let previous = current.hash().to_string();
        // Taken before the publish: no runner can use the version earlier.
        let published = SystemTime::now();
        let generation = slot.publish(Version::new(candidate, config), self.settings.rollback.enabled, None);
        // The version before the previous one is no longer kept: its upload
        // and its artifact may go.
        self.prune_uploads(&hash);
        self.runtime.prune_artifact_cache();
        if self.settings.rollback.enabled {
            self.wake_monitor();
        }
        tracing::info!(plugin = name, version = %hash, generation, total_ms = ms(started.elapsed()), "plugin swapped");
        Ok(SwapResponse {
            plugin: name.into(),
            generation,
            version: hash,
            previous,
            published_unix_us: unix_micros(published),
            timings: api::SwapTimingsView { total_ms: ms(started.elapsed()), ..timings },
            canary: canary.as_ref().map(Into::into),
        })
    }

    /// [`Swapper::swap`] with the component read from a file.
    pub fn swap_file(&self, name: &str, path: &Path, opts: SwapOptions) -> Result<SwapResponse, SwapError> {
        let bytes = std::fs::read(path)
            .map_err(|e| SwapError::Refused { plugin: name.into(), reason: format!("{}: {e}", path.display()) })?;
        self.swap(name, &bytes, opts)
    }

    /// Puts plugin `name`'s previous version back.
    pub fn rollback(&self, name: &str) -> Result<RollbackResponse, SwapError> {
        let slot = self.slot(name)?;
        let _changing = slot.lock_changes();
        let generation = put_back(slot, SwapAction::Rollback, Some("requested".into()))?;
        let st = slot.state();
        Ok(RollbackResponse {
            plugin: name.into(),
            generation,
            version: st.current.hash().into(),
            previous: st.previous.as_ref().map(|p| p.hash().to_string()).unwrap_or_default(),
        })
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, SwapError> {
        self.registry.slot(name).ok_or_else(|| SwapError::UnknownPlugin {
            name: name.into(),
            known: self.registry.slots().map(|s| s.name().to_string()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Writes an upload to `uploads/<hash>.wasm` (once per content; a
    /// repeated upload counts as a recent use), then prunes the folder.
    fn store_upload(&self, hash: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.upload_dir.join(format!("{hash}.wasm"));
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            let _ = std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
        } else {
            std::fs::create_dir_all(&self.upload_dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.upload_dir)?;
            tmp.write_all(bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
        }
        self.prune_uploads(hash);
        Ok(path)
    }

    /// Keeps at most `max_uploads` uploads, removing the least recently
    /// uploaded first but never `keep` nor a current or previous version of
    /// a slot (what a rollback would go back to).
    fn prune_uploads(&self, keep: &str) {
        let Ok(entries) = std::fs::read_dir(&self.upload_dir) else { return };
        let mut in_use: std::collections::HashSet<String> = self
            .registry
            .slots()
            .flat_map(|slot| {
                let st = slot.state();
                std::iter::once(st.current.hash().to_string()).chain(st.previous.as_ref().map(|p| p.hash().to_string())).collect::<Vec<_>>()
            })
            .collect();
        in_use.insert(keep.to_string());
        let mut uploads: Vec<(SystemTime, PathBuf, bool)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let path = e.path();
                let hash = path.file_name()?.to_str()?.strip_suffix(".wasm")?.to_string();
                let modified = e.metadata().ok().filter(|m| m.is_file())?.modified().ok()?;
                Some((modified, path, in_use.contains(&hash)))
            })
            .collect();
        let mut excess = uploads.len().saturating_sub(self.settings.max_uploads);
        uploads.sort_by_key(|u| u.0);
        for (_, path, used) in uploads {
            if excess == 0 {
                break;
            }
            if !used && std::fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), "too many uploads kept: removed the least recently used");
                excess -= 1;
            }
        }
    }

    fn wake_monitor(&self) {
        let mut monitor = self.monitor.lock().unwrap_or_else(|p| p.into_inner());
        if monitor.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (registry, rule) = (self.registry.clone(), self.settings.rollback.clone());
            let spawned = std::thread::Builder::new().name("plugin-rollback".into()).spawn(move || rollback::monitor(registry, rule, rx));
            match spawned {
                Ok(_) => *monitor = Some(tx),
                Err(e) => tracing::error!(error = %e, "cannot start the rollback monitor: no automatic rollback"),
            }
        }
        if let Some(tx) = monitor.as_ref() {
            let _ = tx.send(());
        }
    }
}

/// Puts `slot`'s previous version back: starts its instances (off the
/// pipeline thread), then publishes. The caller holds the slot's change lock.
pub(crate) fn put_back(slot: &Slot, action: SwapAction, reason: Option<String>) -> Result<u64, SwapError> {
    let previous = slot.previous().ok_or_else(|| SwapError::NoPrevious(slot.name().into()))?;
    previous
        .plugin
        .prestart(slot.users())
        .map_err(|e| SwapError::Host { plugin: slot.name().into(), message: format!("cannot restart the previous version: {e}") })?;
    slot.rollback(action, reason).ok_or_else(|| SwapError::NoPrevious(slot.name().into()))
}

/// A failed load: the component's fault (refused) or the host's.
fn load_error(e: PluginError, refuse: &dyn Fn(String) -> SwapError, plugin: &str) -> SwapError {
    match e {
        PluginError::Io { .. } | PluginError::Engine(_) => SwapError::Host { plugin: plugin.into(), message: e.to_string() },
        other => refuse(other.to_string()),
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
