//! Helpers shared by the host's integration tests (each test file is its own
//! crate and includes this module; not every file uses every helper).
#![allow(dead_code)]

pub mod training_join;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use streamhost::config::WorldName;
use streamhost::plugin::{PluginRuntime, RuntimeOptions};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// Builds a plugin folder of the repository (the toolchains' caches, or the
/// Python stamp, make repeated builds cheap) and checks its world.
pub fn build(rel: &str, world: WorldName) -> PathBuf {
    let built = streamhost::build::build_plugin(&repo_root().join(rel), None, false)
        .unwrap_or_else(|e| panic!("building {rel}: {e}"));
    assert_eq!(built.manifest.world, world, "{rel}");
    built.output
}

/// A runtime shared by a test process, on the user's artifact cache (it is
/// content-addressed, checksummed and written atomically, so test processes
/// share it safely and a Python component compiles once, not once per test
/// binary). Tests that look at the cache make their own runtime.
pub fn shared_runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| PluginRuntime::new(RuntimeOptions::default()).expect("plugin runtime"))
}

/// A finished child process and its peak resident memory.
pub struct ChildRun {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Peak resident set in bytes, from wait4(2)'s `ru_maxrss` of the child.
    /// Linux counts in it the resident set of the test process at spawn
    /// (exec keeps the high-water mark of the memory it replaces), so it is
    /// an upper bound of the child's own peak: exact whenever the child grew
    /// past the test process, and never too low, which is what a bound needs.
    pub peak_rss: u64,
}

impl ChildRun {
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `cmd` (stdout and stderr captured), calling `while_running` with its
/// pid every 20 ms until it exits; panics when its peak RSS cannot be read.
pub fn run_child(cmd: &mut std::process::Command, mut while_running: impl FnMut(u32)) -> ChildRun {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn the child");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).expect("read the child's output");
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: plain syscall on our own child with valid out-pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4 on the child failed: {}", std::io::Error::last_os_error());
        if reaped == pid as libc::pid_t {
            break (status, usage);
        }
        while_running(pid);
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Reaped here: `child` must not be waited for again (dropping it does not).
    drop(child);
    let peak_kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    assert!(peak_kib > 0, "the child's peak RSS could not be read (ru_maxrss = {})", usage.ru_maxrss);
    ChildRun {
        status: std::process::ExitStatus::from_raw(status),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        peak_rss: peak_kib * 1024,
    }
}

/// The test process's own peak RSS in bytes (what a child's `ru_maxrss`
/// may include); panics when /proc cannot tell.
pub fn own_peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

/// The file-to-file training join the restart tests share: `impressions.jsonl`
/// LEFT JOIN `clicks.jsonl` on `request_id` within 1 h, out-of-order inputs
/// within 1 s, output, dead letters, state and checkpoints (every 40 ms) under
/// `out/`.
pub fn file_join_pipeline() -> serde_json::Value {
    serde_json::json!({
        "sources": {
            "impressions": { "type": "file", "path": "impressions.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 1000 },
            "clicks": { "type": "file", "path": "clicks.jsonl", "timestamp_field": "ts", "max_out_of_orderness_ms": 1000 }
        },
        "steps": {
            "samples": {
                "type": "window-join", "inputs": ["impressions", "clicks"],
                "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
                "window": { "start_ms": 0, "end_ms": 3_600_000 }, "mode": "left"
            }
        },
        "sinks": { "samples": { "type": "file", "path": "out/samples.jsonl", "inputs": ["samples"] } },
        "dead_letter": { "type": "file", "path": "out/dead-letter.jsonl" },
        "settings": {
            "batch_size": 256,
            "state": { "dir": "out/state" },
            "checkpoint": { "interval_ms": 40, "dir": "out/checkpoints" }
        }
    })
}

/// [`file_join_pipeline`] with a cleaning step on each side before the join
/// (`project`: the impressions drop `pos`, the clicks' `dwell_ms` becomes
/// `dwell`), at 2 workers (so the join's stage is fed through an exchange).
pub fn clean_join_pipeline() -> serde_json::Value {
    let mut pipeline = file_join_pipeline();
    pipeline["steps"]["clean-impressions"] = serde_json::json!({ "type": "project", "inputs": ["impressions"], "drop": ["pos"] });
    pipeline["steps"]["clean-clicks"] = serde_json::json!({ "type": "project", "inputs": ["clicks"], "rename": { "dwell_ms": "dwell" } });
    pipeline["steps"]["samples"]["inputs"] = serde_json::json!(["clean-impressions", "clean-clicks"]);
    pipeline["steps"]["samples"]["keys"] = serde_json::json!({ "clean-impressions": "$.request_id", "clean-clicks": "$.request_id" });
    pipeline["settings"]["parallelism"] = serde_json::json!(2);
    pipeline
}

/// Impressions and clicks, each file out of event-time order by less than
/// the sources' `max_out_of_orderness_ms` (1 s), so no event is late
/// whatever the interleaving of the two sources or the restarts, with some
/// clicks without a request_id (dead-lettered). Returns the number of lines.
pub fn write_join_inputs(dir: &Path, impressions: usize) -> usize {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let base = 1_700_000_000_000i64;
    let step = 400; // ms between impressions: 9000 per hour
    let mut imp = std::io::BufWriter::new(std::fs::File::create(dir.join("impressions.jsonl")).unwrap());
    for i in 0..impressions {
        // Up to 900 ms late on its slot: often before its predecessor.
        let t = base + i as i64 * step + rng.random_range(0..900);
        writeln!(imp, r#"{{"ts":{t},"request_id":"r{i}","user_id":"u{}","item_id":"i{}","pos":{}}}"#, i % 97, i % 1013, i % 30).unwrap();
    }
    let mut clicks: Vec<(i64, String)> = Vec::new();
    for i in 0..impressions {
        if rng.random_range(0..100) < 14 {
            let t = base + i as i64 * step + rng.random_range(0..1_800_000);
            clicks.push((t, format!(r#"{{"ts":{t},"request_id":"r{i}","dwell_ms":{}}}"#, rng.random_range(1..60_000))));
        }
        if rng.random_range(0..1000) == 0 {
            let t = base + i as i64 * step;
            clicks.push((t, format!(r#"{{"ts":{t},"dwell_ms":1}}"#)));
        }
    }
    // Written in the order of time + up to 800 ms: a click follows clicks
    // up to 800 ms later than itself.
    let mut keyed: Vec<(i64, String)> = clicks.into_iter().map(|(t, line)| (t + rng.random_range(0..800), line)).collect();
    keyed.sort_by_key(|c| c.0);
    let lines = impressions + keyed.len();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("clicks.jsonl")).unwrap());
    for (_, line) in keyed {
        writeln!(out, "{line}").unwrap();
    }
    lines
}

/// The training-data join over two generators: 20,000 impressions 400 ms apart
/// (2.2 h of event time, so windows of 1 h close during the run) and the clicks
/// on them, at `parallelism` workers; `rate` throttles both (0: as fast as
/// possible) so that they cover event time at the same pace. Output, dead
/// letters, state and checkpoints (every 300 ms) under `out/`.
pub fn generated_join_pipeline(rate: u64, parallelism: usize) -> serde_json::Value {
    let generator = |shape: &str, count: u64, step: f64, rate: u64| {
        serde_json::json!({ "type": "generator", "shape": shape, "seed": 9, "count": count, "rate": rate,
            "event_time": { "start_ms": 1_700_000_000_000i64, "step_ms": step },
            "impressions": { "step_ms": 400.0, "count": 20_000 },
            "timestamp_field": "ts", "max_out_of_orderness_ms": 5000 })
    };
    serde_json::json!({
        "sources": {
            "impressions": generator("join-impression", 20_000, 400.0, rate),
            "clicks": generator("join-click", 2_666, 3000.0, rate * 2_666 / 20_000)
        },
        "steps": { "samples": { "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": 3_600_000 }, "mode": "left" } },
        "sinks": { "samples": { "type": "file", "path": "out/samples.jsonl", "inputs": ["samples"] } },
        "dead_letter": { "type": "file", "path": "out/dead-letter.jsonl" },
        "settings": { "batch_size": 256, "batch_linger_ms": 20, "parallelism": parallelism, "state": { "dir": "out/state" },
            "checkpoint": { "interval_ms": 300, "dir": "out/checkpoints" } }
    })
}

/// The `streamhost` binary of this build.
pub fn streamhost() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_streamhost"))
}

/// Writes `pipeline` as `dir/pipeline.json`.
pub fn write_pipeline(dir: &Path, pipeline: &serde_json::Value) -> PathBuf {
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(pipeline).unwrap()).unwrap();
    path
}

/// Sends signal `sig` (`TERM`, `INT`, `KILL`) to `child`.
pub fn signal(child: &std::process::Child, sig: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success(), "kill -{sig}");
}

/// The lines of a file (none if it is missing).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(String::from).collect()).unwrap_or_default()
}

/// Waits for `child` until `deadline`: its exit status, or `None` after
/// killing it (SIGKILL) at the deadline (the crash tests).
pub fn wait_or_kill(child: &mut std::process::Child, deadline: std::time::Instant) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A copy of `examples/NAME` (its `files`) in a temporary folder, laid out as
/// in the repository, with the repository's folders `linked` in (plugins,
/// scripts, data): the example's script runs there and writes its `out/`
/// there. Returns the folder and the example's path in it.
pub fn example_copy(name: &str, files: &[&str], linked: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("examples").join(name);
    for f in files {
        let to = ex.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join("examples").join(name).join(f), to).unwrap();
    }
    for l in linked {
        let to = dir.path().join(l);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(root.join(l), to).unwrap();
    }
    (dir, ex)
}

/// Runs `script` (an example's) with this build's binary, its output in
/// files under `dir`, killed past `limit`: its success, stdout and stderr.
pub fn run_example_script(dir: &Path, script: &Path, env: &[(&str, &str)], limit: std::time::Duration) -> (bool, String, String) {
    let (stdout_path, stderr_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(script).env("STREAMHOST", env!("CARGO_BIN_EXE_streamhost"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_or_kill(&mut child, std::time::Instant::now() + limit);
    let (stdout, stderr) = (std::fs::read_to_string(&stdout_path).unwrap(), std::fs::read_to_string(&stderr_path).unwrap());
    (status.is_some_and(|s| s.success()), stdout, stderr)
}
