//! Window state several times larger than the memory RocksDB is allowed:
//! the join keeps every impression of a long window on disk while the
//! process's resident memory stays bounded.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bytes of the files under `dir` (0 while it does not exist).
fn size_on_disk(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size_on_disk(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The peak resident set of a running process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[test]
fn join_state_several_times_the_memory_cap_stays_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300_000;
    let pad = "x".repeat(900);
    let mut imp = std::io::BufWriter::new(std::fs::File::create(dir.path().join("impressions.jsonl")).unwrap());
    for i in 0..n {
        // 5 ms apart: the whole input is inside one 1-hour window, so every
        // impression waits in state until the end of input.
        writeln!(imp, r#"{{"ts":{},"request_id":"r{i}","pad":"{pad}{i}"}}"#, 1_700_000_000_000i64 + i as i64 * 5).unwrap();
    }
    drop(imp);
    std::fs::write(dir.path().join("clicks.jsonl"), "{\"ts\":1700000000100,\"request_id\":\"r20\"}\n").unwrap();
    // RocksDB may use 8 MiB of block cache and 16 MiB of write buffers.
    let cap_mb = 24u64;
    let pipeline = serde_json::json!({
        "sources": {
            "impressions": { "type": "file", "path": "impressions.jsonl", "timestamp_field": "ts" },
            "clicks": { "type": "file", "path": "clicks.jsonl", "timestamp_field": "ts" }
        },
        "steps": { "j": { "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": 3_600_000 }, "mode": "left" } },
        "sinks": { "out": { "type": "null", "inputs": ["j"] } },
        "dead_letter": { "type": "file", "path": "dead.jsonl" },
        "settings": { "state": { "dir": "state", "rocksdb": {
            "block_cache_mb": 8, "write_buffer_mb": 4, "max_write_buffers": 2, "max_total_write_buffer_mb": 16, "compression": "none"
        } } }
    });
    std::fs::write(dir.path().join("pipeline.json"), pipeline.to_string()).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_streamhost"))
        .args(["run", "--no-progress"])
        .arg(dir.path().join("pipeline.json"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut rss, mut disk) = (0u64, 0u64);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        rss = rss.max(peak_rss(child.id()).unwrap_or(0));
        disk = disk.max(size_on_disk(&dir.path().join("state")));
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains(&format!("{n}")), "every impression came out: {err}");
    let mb = |b: u64| b >> 20;
    eprintln!("state on disk: peak {} MiB; process peak RSS {} MiB; RocksDB cap {cap_mb} MiB", mb(disk), mb(rss));
    assert!(mb(disk) >= 6 * cap_mb, "the state ({} MiB) is several times the cap ({cap_mb} MiB)", mb(disk));
    assert!(mb(rss) < mb(disk) / 2, "resident memory ({} MiB) stays well below the state ({} MiB)", mb(rss), mb(disk));
    assert!(mb(rss) < 200, "resident memory is bounded ({} MiB)", mb(rss));
}
