//! (Part of the `streamhost` binary, not the library.) `streamhost plugin
//! list|swap|rollback`: clients of a running pipeline's admin API, and the
//! watch mode that swaps whenever a plugin file or folder changes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use notify::{EventKind, RecursiveMode, Watcher};
use streamhost::swap::{AdminClient, ClientError, PluginView};

/// Quiet time after the last change before a watch-mode swap (editors and
/// builds write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Where the admin API is.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The admin API's address, HOST:PORT (default: read from the address
    /// file of `--pipeline`).
    #[arg(long, env = "STREAMHOST_ADMIN")]
    admin: Option<String>,
    /// The running pipeline's pipeline.json: its admin address file (and
    /// token) are used.
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// The admin API's token (default: `settings.admin.token` of `--pipeline`).
    #[arg(long, env = "STREAMHOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AdminArgs {
    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        if let Some(addr) = &self.admin {
            return Ok(AdminClient::new(addr, self.token.clone()));
        }
        let Some(pipeline) = &self.pipeline else {
            bail!("which pipeline? give --admin HOST:PORT (or STREAMHOST_ADMIN) or --pipeline pipeline.json");
        };
        let p = streamhost::config::load_pipeline(pipeline).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(admin) = &p.config.settings.admin else {
            bail!("{} has no `settings.admin`: its admin API is off", pipeline.display());
        };
        let file = admin.addr_file.as_ref().map_or_else(|| p.base_dir.join("admin.addr"), |f| p.resolve(f));
        let addr = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the admin address from {} (is the pipeline running?)", file.display()))?;
        Ok(AdminClient::new(addr.trim(), self.token.clone().or_else(|| admin.token.clone())))
    }
}

pub fn list(args: &AdminArgs, json: bool) -> anyhow::Result<ExitCode> {
    let list = match args.client()?.list() {
        Ok(l) => l,
        Err(e) => return api_error(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<10} {:<14} {:>5} {:>10} {:>10} {:>8} {:>8} {:<14} history", "name", "world", "version", "gen", "loaded", "calls", "errors", "traps", "previous");
    for p in &list.plugins {
        println!("{}", line(p));
    }
    Ok(ExitCode::SUCCESS)
}

fn line(p: &PluginView) -> String {
    let s = &p.current.stats;
    let loaded = format!("{:.0} ms", p.current.load_ms);
    let previous = p.previous.as_ref().map_or("-".to_string(), |v| short(&v.hash).to_string());
    let history = match p.history.last() {
        None => "-".to_string(),
        Some(h) => format!("{} swaps, {} rollbacks ({} automatic), {} refused; last: {}", p.swaps, p.rollbacks, p.auto_rollbacks, p.refused, h.action),
    };
    let probation = if p.on_probation { " (on probation)" } else { "" };
    format!(
        "{:<20} {:<10} {:<14} {:>5} {:>10} {:>10} {:>8} {:>8} {:<14} {history}{probation}",
        p.name,
        p.world,
        short(&p.current.hash),
        p.generation,
        loaded,
        s.calls,
        s.errors,
        s.traps,
        previous
    )
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub fn swap(args: &AdminArgs, name: &str, file: &Path, config: Option<&str>, canary: bool, watch: bool) -> anyhow::Result<ExitCode> {
    let config = config
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .context("--config is not JSON")?;
    let client = args.client()?;
    if watch {
        return watch_and_swap(&client, name, file, config.as_ref(), canary);
    }
    match swap_once(&client, name, file, config.as_ref(), canary) {
        Ok(report) => {
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match e.downcast::<ClientError>() {
            Ok(api) => api_error(api),
            Err(other) => Err(other),
        },
    }
}

/// Compiles the component into the artifact cache this machine's pipelines
/// share, so the running pipeline finds it there: the compilation (hundreds
/// of ms) happens here, before the upload, and the swap itself takes
/// milliseconds. Best effort: on failure the pipeline compiles it.
fn precompile(wasm: &Path) {
    let runtime = streamhost::plugin::PluginRuntime::new(streamhost::plugin::RuntimeOptions::default());
    match runtime.and_then(|r| r.precompile(wasm)) {
        Ok(artifact) => tracing::debug!(?artifact, "precompiled {}", wasm.display()),
        Err(e) => tracing::debug!("not precompiled ({e}); the pipeline compiles it"),
    }
}

/// Builds FILE if it is a plugin folder, uploads the component.
fn swap_once(client: &AdminClient, name: &str, file: &Path, config: Option<&serde_json::Value>, canary: bool) -> anyhow::Result<String> {
    let wasm = if file.is_dir() {
        streamhost::build::build_plugin(file, None, false).with_context(|| format!("building {}", file.display()))?.output
    } else {
        file.to_path_buf()
    };
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    if client.is_local() {
        precompile(&wasm);
    }
    let r = client.swap(name, &bytes, config, canary)?;
    let t = &r.timings;
    let canary = r.canary.map_or(String::new(), |c| format!(", canary {} of {} failed", c.failures, c.events));
    Ok(format!(
        "swapped `{}` to {} (generation {}, was {}): {:.0} ms ({} {:.0} ms, link {:.0} ms, instances {:.0} ms{canary})",
        r.plugin,
        short(&r.version),
        r.generation,
        short(&r.previous),
        t.total_ms,
        t.artifact,
        t.compile_ms,
        t.link_ms,
        t.first_instance_ms + t.prestart_ms,
    ))
}

pub fn rollback(args: &AdminArgs, name: &str) -> anyhow::Result<ExitCode> {
    match args.client()?.rollback(name) {
        Ok(r) => {
            println!("rolled `{}` back to {} (generation {}; a second rollback returns to {})", r.plugin, short(&r.version), r.generation, short(&r.previous));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => api_error(e),
    }
}

/// An answer of the API is the user's to fix (exit 2); not reaching it is a failure.
fn api_error(e: ClientError) -> anyhow::Result<ExitCode> {
    eprintln!("error: {e}");
    Ok(match e {
        ClientError::Api { status, .. } if (400..500).contains(&status) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    })
}

/// Swaps every time `file` changes (after [`DEBOUNCE`] of quiet), until
/// interrupted. A failed build or a refused swap is reported and the watch
/// goes on.
fn watch_and_swap(client: &AdminClient, name: &str, file: &Path, config: Option<&serde_json::Value>, canary: bool) -> anyhow::Result<ExitCode> {
    let file = file.canonicalize().with_context(|| format!("{} does not exist", file.display()))?;
    let folder = file.is_dir();
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .context("starting the file watcher")?;
    // A file is watched through its folder: tools replace files by renaming
    // a new one over them, which a watch on the old inode would miss.
    let watched = if folder { file.clone() } else { file.parent().map(Path::to_path_buf).unwrap_or_else(|| file.clone()) };
    let mode = if folder { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
    watcher.watch(&watched, mode).with_context(|| format!("watching {}", watched.display()))?;
    eprintln!("watching {} for changes; swapping plugin `{name}` on each (Ctrl-C to stop)", file.display());
    let relevant = |event: &notify::Event| {
        !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| if folder { !build_output(&file, p) } else { p == &file })
    };
    loop {
        match rx.recv() {
            Ok(Ok(event)) if relevant(&event) => {}
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                eprintln!("warning: file watcher: {e}");
                continue;
            }
            Err(_) => bail!("the file watcher stopped"),
        }
        // Debounce: wait for a quiet moment.
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the file watcher stopped"),
            }
        }
        if !file.exists() {
            continue; // removed, or in the middle of a rename: wait for the next change
        }
        match swap_once(client, name, &file, config, canary) {
            Ok(report) => println!("{report}"),
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
}

/// Paths a build writes inside a plugin folder (changes there are ours).
fn build_output(folder: &Path, path: &Path) -> bool {
    path.strip_prefix(folder).is_ok_and(|rel| {
        rel.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c.starts_with('.') || matches!(c.as_ref(), "target" | "__pycache__" | "build")
        })
    })
}
