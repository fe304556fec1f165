//! What one plugin instance's `Store` holds: the memory limiter, the WASI
//! context built from the plugin's grants (nothing by default), and the
//! `host` interface implementation (logging).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::wit::{host_api, Level};
use crate::config::{PluginGrants, PluginLimits};

/// Largest table a plugin may grow (elements); bounds host memory, since a
/// table element costs the host a pointer.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Guest output (stdout, stderr, log lines) is cut at this many bytes per line.
const MAX_LOG_LINE: usize = 4096;

/// The data of one plugin `Store`.
pub(crate) struct StoreState {
    plugin: Arc<str>,
    pub(crate) limiter: MemoryLimiter,
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    /// The monotonic clock the guest reads (the one in `wasi`), for timers.
    pub(crate) monotonic: Box<dyn HostMonotonicClock + Send>,
    /// When the current call's time budget ends; guest timers end by then
    /// (see `timers`).
    pub(crate) call_deadline: Instant,
    /// Set by a guest timer that fired at `call_deadline` (see `timers`).
    pub(crate) budget_exceeded: Arc<AtomicBool>,
    /// The last error-level line the guest logged during the current call
    /// (cleared when a call starts): the Rust SDK logs a panic's message
    /// there before aborting, and a trap's failure quotes it.
    pub(crate) last_error_log: Option<String>,
}

impl StoreState {
    pub(crate) fn new(plugin: Arc<str>, limits: &PluginLimits, grants: &PluginGrants) -> Result<Self, String> {
        let (wasi, monotonic) = wasi_context(&plugin, grants)?;
        let max_bytes = usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        Ok(StoreState {
            limiter: MemoryLimiter::new(max_bytes),
            wasi,
            table: ResourceTable::new(),
            monotonic,
            call_deadline: Instant::now(),
            budget_exceeded: Arc::new(AtomicBool::new(false)),
            last_error_log: None,
            plugin,
        })
    }
}

impl StoreState {
    /// Whether a guest timer ran into the call's deadline since the last call.
    pub(crate) fn take_budget_exceeded(&mut self) -> bool {
        self.budget_exceeded.swap(false, Ordering::Relaxed)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Refuses memory growth past the plugin's limit and remembers that it did,
/// so the resulting trap is reported as out-of-memory rather than a panic.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    /// Set when a growth was refused; cleared by [`MemoryLimiter::take_hit`].
    hit: bool,
    /// Bytes of linear memory this store has grown to (all its memories;
    /// they only grow), counted into the counters of the plugin version and
    /// step running it (the metrics) and what `PluginStats::peak_memory_bytes`
    /// reports.
    pub(crate) bytes: u64,
    counted: Option<std::sync::Arc<super::outcome::PluginCounters>>,
}

impl MemoryLimiter {
    fn new(max_bytes: usize) -> Self {
        MemoryLimiter { max_bytes, hit: false, bytes: 0, counted: None }
    }

    /// Counts this store's memory into `counters` from now on (moved from
    /// those it was counted into).
    pub(crate) fn count_into(&mut self, counters: std::sync::Arc<super::outcome::PluginCounters>) {
        if let Some(old) = self.counted.take() {
            old.memory_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        }
        counters.memory_bytes.fetch_add(self.bytes, Ordering::Relaxed);
        self.counted = Some(counters);
    }

    /// Whether the limit was hit since the last call.
    pub(crate) fn take_hit(&mut self) -> bool {
        std::mem::take(&mut self.hit)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            // An error (not `Ok(false)`) traps at once: a guest allocator that
            // would handle a failed grow gracefully still cannot go past it.
            wasmtime::bail!("memory limit of {} MiB exceeded (wanted {} MiB)", self.max_bytes >> 20, desired >> 20);
        }
        let allowed = maximum.is_none_or(|max| desired <= max);
        if allowed {
            // Called with `current` 0 when a memory is made, too.
            let grown = desired.saturating_sub(current) as u64;
            self.bytes += grown;
            if let Some(c) = &self.counted {
                c.memory_bytes.fetch_add(grown, Ordering::Relaxed);
            }
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        Err(error.context("growing the plugin's memory failed"))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements exceeded");
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(c) = &self.counted {
            c.memory_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// The `host` interface of `wit/plugin.wit`.
impl host_api::Host for StoreState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let message = truncate(&message, MAX_LOG_LINE);
        let fields = format_fields(&fields);
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, fields, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, fields, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, fields, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, fields, "{message}"),
        }
        if matches!(level, Level::Error) {
            self.last_error_log = Some(message.replace('\n', " "));
        }
    }
}

/// The shared `types` interface has no functions.
impl super::wit::types_api::Host for StoreState {}

fn format_fields(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(truncate(k, 256));
        out.push('=');
        out.push_str(truncate(v, MAX_LOG_LINE));
    }
    out
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds the WASI context of an instance: nothing is visible unless granted.
/// No args, no preopens, no env, no network, logical clocks; stdin is empty
/// and stdout/stderr go to the host log (target `plugin`), never to the
/// pipeline's stdout.
/// Also returns a handle on the guest's monotonic clock.
fn wasi_context(
    plugin: &Arc<str>,
    grants: &PluginGrants,
) -> Result<(WasiCtx, Box<dyn HostMonotonicClock + Send>), String> {
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(GuestOutput { plugin: plugin.clone(), stream: "stdout" });
    builder.stderr(GuestOutput { plugin: plugin.clone(), stream: "stderr" });
    for name in &grants.env {
        if let Ok(value) = std::env::var(name) {
            builder.env(name, value);
        }
    }
    for dir in &grants.dirs {
        let perms = if dir.writable { wasmtime_wasi::FsPerms::ReadWrite } else { wasmtime_wasi::FsPerms::ReadOnly };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| format!("cannot grant directory {}: {e:#}", dir.host.display()))?;
    }
    if grants.network {
        builder.inherit_network().allow_ip_name_lookup(true).allow_tcp(true).allow_udp(true);
    } else {
        builder
            .socket_addr_check(|_: SocketAddr, _| Box::pin(async { false }))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
    }
    let monotonic: Box<dyn HostMonotonicClock + Send> = if grants.clock {
        let clock = RealMonotonicClock { start: Instant::now() };
        builder.monotonic_clock(clock.clone());
        Box::new(clock)
    } else {
        let clock = LogicalClock::default();
        builder.wall_clock(clock.clone()).monotonic_clock(clock.clone());
        Box::new(clock)
    };
    Ok((builder.build(), monotonic))
}

/// The host's monotonic clock, shared by the WASI context and the host's
/// timers (wasmtime-wasi's own clock type cannot be cloned).
#[derive(Clone)]
struct RealMonotonicClock {
    start: Instant,
}

impl HostMonotonicClock for RealMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        // Starts at 1 s: some runtimes (Go) refuse a monotonic clock at zero.
        1_000_000_000 + u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1_000_000_000)
    }
}

/// The clock a plugin reads without the `clock` grant: it starts at a fixed
/// instant and advances one microsecond per read. It reveals nothing about
/// real time (a plugin's output cannot depend on it, and it is no timer for
/// side channels), yet runtimes that need time to move keep working: Go's
/// refuses to start on a monotonic clock that reads zero or never advances.
#[derive(Clone, Default)]
struct LogicalClock {
    reads: Arc<std::sync::atomic::AtomicU64>,
}

/// The instant the logical wall clock starts at: 2000-01-01T00:00:00Z.
const LOGICAL_WALL_START: Duration = Duration::from_secs(946_684_800);
/// Where the logical monotonic clock starts (non-zero, see above).
const LOGICAL_MONOTONIC_START_NS: u64 = 1_000_000_000;

impl LogicalClock {
    fn tick_ns(&self) -> u64 {
        (self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1) * 1_000
    }
}

impl wasmtime_wasi::HostWallClock for LogicalClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn now(&self) -> Duration {
        LOGICAL_WALL_START + Duration::from_nanos(self.tick_ns())
    }
}

impl HostMonotonicClock for LogicalClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        LOGICAL_MONOTONIC_START_NS + self.tick_ns()
    }
}

/// A guest's stdout or stderr: each line becomes a log record.
struct GuestOutput {
    plugin: Arc<str>,
    stream: &'static str,
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger { plugin: self.plugin.clone(), stream: self.stream, pending: Vec::new() })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 asks for this; the host links WASIp2 alone.
        Box::new(tokio::io::sink())
    }
}

/// Splits guest output into lines and logs them.
struct LineLogger {
    plugin: Arc<str>,
    stream: &'static str,
    pending: Vec<u8>,
}

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        if self.stream == "stderr" {
            tracing::warn!(target: "plugin", plugin = &*self.plugin, stream = self.stream, "{line}");
        } else {
            tracing::info!(target: "plugin", plugin = &*self.plugin, stream = self.stream, "{line}");
        }
    }
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.pending.extend_from_slice(&bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            self.emit(&self.pending[..end]);
            self.pending.drain(..=end);
        }
        if self.pending.len() > MAX_LOG_LINE {
            self.emit(&self.pending);
            self.pending.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit(&self.pending);
        }
    }
}
