//! A hostile Python plugin (`tests/plugins/sandbox-probe`, built from source
//! with componentize-py, so it links all of WASI) tries files, sockets, name
//! lookups, the environment and the clock. Without grants it must observe
//! nothing of the host; with each grant, exactly that (the positive controls
//! show the probe would notice).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use streamhost::config::{DirGrant, PluginGrants, PluginLimits, WorldName};
use streamhost::event::Event;
use streamhost::plugin::{Outcome, TransformRunner};

fn probe_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| common::build("tests/plugins/sandbox-probe", WorldName::Transform))
}

use common::shared_runtime as runtime;

fn probe(grants: &PluginGrants) -> TransformRunner {
    let plugin = runtime()
        .load("sandbox-probe", probe_wasm(), Some(WorldName::Transform), &PluginLimits::default(), grants, &Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    plugin.transform().expect("instance")
}

/// Runs the probe's requests as one batch; one observation per request.
fn observe(runner: &mut TransformRunner, requests: &[Value]) -> Vec<Value> {
    let batch: Vec<Event> = requests.iter().map(|r| Event::from_value(r.to_string().into_bytes(), 0)).collect();
    let observed: Vec<Value> = runner
        .process(&batch)
        .into_iter()
        .map(|o| match o {
            Outcome::Ok(events) if events.len() == 1 => serde_json::from_slice(&events[0].value).unwrap(),
            other => panic!("the probe answers every request: {other:?}"),
        })
        .collect();
    for o in &observed {
        eprintln!("observed: {o:.300}");
    }
    observed
}

fn denied(observation: &Value) -> bool {
    observation["ok"] == false
}

/// A listener that records whether anything connected.
fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn accepted_line(l: &TcpListener) -> Option<String> {
    let (mut stream, _) = l.accept().ok()?;
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn without_grants_the_plugin_observes_nothing_of_the_host() {
    let host_file = std::env::temp_dir().join(format!("streamhost-probe-{}", std::process::id()));
    let (l, port) = listener();
    let mut runner = probe(&PluginGrants::default());
    let obs = observe(
        &mut runner,
        &[
            json!({"do": "open-file", "path": "/etc/passwd"}),
            json!({"do": "open-file", "path": concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sandbox_python.rs")}),
            json!({"do": "write-file", "path": host_file}),
            json!({"do": "list-dir", "path": "/"}),
            json!({"do": "socket", "port": port}),
            json!({"do": "resolve", "name": "localhost"}),
            json!({"do": "env"}),
            json!({"do": "clock"}),
            json!({"do": "clock"}),
        ],
    );
    for o in &obs[..3] {
        assert!(denied(o), "file access was granted: {o}");
    }
    assert!(!host_file.exists(), "the plugin wrote {}", host_file.display());
    assert!(denied(&obs[3]) || obs[3]["observed"] == json!([]), "the root directory is visible: {}", obs[3]);
    assert!(denied(&obs[4]) && obs[4]["error"].as_str().unwrap().starts_with("PermissionError"), "TCP: {}", obs[4]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(accepted_line(&l), None, "the listener was reached");
    assert!(denied(&obs[5]), "a name was resolved: {}", obs[5]);
    assert_eq!(obs[6], json!({"do": "env", "ok": true, "observed": {}}), "the environment leaked");
    // The ungranted clock is logical: it starts at 2000-01-01 and only moves
    // by a microsecond per read.
    let (t1, t2) = (obs[7]["observed"].as_f64().unwrap(), obs[8]["observed"].as_f64().unwrap());
    assert!((946_684_800.0..946_684_900.0).contains(&t1), "real time leaked: {t1}");
    assert!(t2 >= t1 && t2 - t1 < 1.0, "{t1} then {t2}");
}

#[test]
fn each_grant_gives_exactly_what_it_names() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "hello from the host").unwrap();
    let (l, port) = listener();
    let grants = PluginGrants {
        clock: true,
        env: vec!["PATH".into()],
        dirs: vec![DirGrant { host: data.path().to_path_buf(), guest: "/data".into(), writable: false }],
        network: true,
    };
    let mut runner = probe(&grants);
    let obs = observe(
        &mut runner,
        &[
            json!({"do": "open-file", "path": "/data/hello.txt"}),
            json!({"do": "write-file", "path": "/data/new.txt"}),
            json!({"do": "open-file", "path": "/etc/passwd"}),
            json!({"do": "env"}),
            json!({"do": "clock"}),
            json!({"do": "socket", "port": port}),
            json!({"do": "resolve", "name": "localhost"}),
        ],
    );
    assert_eq!(obs[0]["observed"], "hello from the host", "{}", obs[0]);
    assert!(denied(&obs[1]), "a read-only grant was written: {}", obs[1]);
    assert!(!data.path().join("new.txt").exists());
    assert!(denied(&obs[2]), "outside the granted directory: {}", obs[2]);
    assert_eq!(obs[3]["observed"], json!({"PATH": std::env::var("PATH").unwrap()}));
    let t = obs[4]["observed"].as_f64().unwrap();
    assert!((t - now_secs()).abs() < 600.0, "granted clock is not the real time: {t}");
    assert_eq!(obs[5]["ok"], true, "{}", obs[5]);
    assert_eq!(obs[6]["ok"], true, "{}", obs[6]);
    let mut line = None;
    for _ in 0..50 {
        line = accepted_line(&l);
        if line.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(line.as_deref(), Some("hello from sandbox-probe\n"));
}
