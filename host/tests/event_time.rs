//! Event time through a running pipeline: an idle input does not freeze a
//! join (the Kafka Streams failure), and without an idle timeout it does.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn pipeline(dir: &Path, idle_timeout_ms: Option<u64>) -> std::path::PathBuf {
    let mut clicks = serde_json::json!({ "type": "stdin", "timestamp_field": "ts" });
    if let Some(ms) = idle_timeout_ms {
        clicks["idle_timeout_ms"] = ms.into();
    }
    let p = serde_json::json!({
        "sources": {
            "impressions": { "type": "file", "path": "impressions.jsonl", "timestamp_field": "ts" },
            "clicks": clicks
        },
        "steps": { "j": { "type": "window-join", "inputs": ["impressions", "clicks"],
            "keys": { "impressions": "$.request_id", "clicks": "$.request_id" },
            "window": { "start_ms": 0, "end_ms": 1000 }, "mode": "left" } },
        "sinks": { "out": { "type": "file", "path": "out.jsonl", "inputs": ["j"] } },
        "dead_letter": { "type": "file", "path": "dead.jsonl" },
        "settings": { "state": { "backend": "memory" }, "batch_linger_ms": 10 }
    });
    let path = dir.join(format!("pipeline-{}.json", idle_timeout_ms.unwrap_or(0)));
    std::fs::write(&path, p.to_string()).unwrap();
    path
}

fn start(path: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_streamhost"))
        .args(["run", "--no-progress"])
        .arg(path)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Lines of `path` once it has `n` of them, or what it has after `wait`.
fn lines_within(path: &Path, n: usize, wait: Duration) -> usize {
    let until = Instant::now() + wait;
    loop {
        let count = std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0);
        if count >= n || Instant::now() >= until {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idle_input_stops_holding_the_join_back_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Ten impressions, 10 s apart: windows of 1 s close as the impressions
    // file's watermark passes them, if the silent click stream lets them.
    let imps: String = (0..10).map(|i| format!("{{\"ts\":{},\"request_id\":\"r{i}\"}}\n", 1_000_000 + i * 10_000)).collect();
    std::fs::write(dir.path().join("impressions.jsonl"), imps).unwrap();

    // Without an idle timeout the silent stdin holds the watermark at its
    // start: nothing comes out while it stays open (the file source has
    // ended, but the join's watermark is the minimum of both).
    let mut frozen = start(&pipeline(dir.path(), None));
    assert_eq!(lines_within(&dir.path().join("out.jsonl"), 1, Duration::from_millis(1500)), 0, "the join waits for its silent input");
    // Closing stdin ends that source: everything comes out.
    drop(frozen.stdin.take());
    assert!(frozen.wait().unwrap().success());
    assert_eq!(lines_within(&dir.path().join("out.jsonl"), 10, Duration::from_secs(5)), 10);

    // With a 200 ms idle timeout the same join emits every window while
    // stdin is still open.
    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();
    let mut live = start(&pipeline(dir.path(), Some(200)));
    assert_eq!(lines_within(&dir.path().join("out.jsonl"), 10, Duration::from_secs(10)), 10, "the idle input no longer freezes the join");
    // A click that now arrives for a closed window is late, not lost.
    let mut stdin = live.stdin.take().unwrap();
    writeln!(stdin, r#"{{"ts":1000500,"request_id":"r0"}}"#).unwrap();
    drop(stdin);
    assert!(live.wait().unwrap().success());
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    assert!(dead.contains(r#""kind":"late""#) && dead.contains("1000500"), "{dead}");
}
