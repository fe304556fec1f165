//! The web page of a running pipeline, in a real browser: a `streamhost run`
//! process (a generator of impressions cleaned by a plugin built from source,
//! joined with clicks in a second stage, a file of which some lines are
//! broken), its plugin swapped for another build through the admin API, then
//! Debian's Chromium driven by playwright-core (`web/page_test.js`, installed
//! by scripts/setup.sh) loads the page: the DAG's nodes and parallelism, the
//! plugin's versions, dead letters and checkpoints show, the rollback button
//! puts the first build back (and the admin API agrees); in a second run the
//! page's per-node figures, read from `/metrics`, change. Screenshots go to
//! `target/test-artifacts/web/` (printed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::build;
use serde_json::{json, Value};
use streamhost::config::WorldName;
use streamhost::swap::AdminClient;

/// One pipeline and one browser at a time: the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const TOKEN: &str = "web-test-token";

/// Where screenshots are kept: `target/test-artifacts/web/` (or under
/// `CARGO_TARGET_DIR`), never in the source tree.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| common::repo_root().join("target"));
    let dir = target.join("test-artifacts").join("web");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// playwright-core as scripts/setup.sh installs it.
fn node_modules() -> PathBuf {
    let tools = std::env::var_os("STREAMHOST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/streamhost/tools"));
    let modules = tools.join("web").join("node_modules");
    assert!(
        modules.join("playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/setup.sh (it also installs Chromium)",
        modules.display()
    );
    modules
}

/// The pipeline: impressions (2000/s, some dirty: the cleaner refuses them)
/// through `clean` (plugin `cleaner`), joined by `request_id` with clicks in
/// `joined` (a keyed step after a step: a second stage, fed by an exchange),
/// at 2 workers; `raw`, a file with two broken lines, also feeds `clean`.
/// Event time follows the wall clock, so lags are seconds.
fn write_pipeline(dir: &Path, plugin: &Path, token: Option<&str>) -> PathBuf {
    let raw = "{\"event\":\"impression\",\"ts\":1,\"request_id\":\"x-1\",\"user_id\":\"u-1\",\"item_id\":\"i-1\"}\n{not json\n\u{1}\u{2} broken\n";
    std::fs::write(dir.join("raw.jsonl"), raw).unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut admin = json!({ "bind": "127.0.0.1:0" });
    if let Some(t) = token {
        admin["token"] = json!(t);
    }
    let p = json!({
        "name": "web-demo",
        "plugins": { "cleaner": { "path": plugin } },
        "sources": {
            "impressions": { "type": "generator", "shape": "impression", "rate": 2000, "dirty_ratio": 0.005, "seed": 3,
                "event_time": { "start_ms": now_ms, "step_ms": 0.5 } },
            "clicks": { "type": "generator", "shape": "click", "rate": 200, "seed": 3,
                "event_time": { "start_ms": now_ms, "step_ms": 5.0 } },
            "raw": { "type": "file", "path": "raw.jsonl" }
        },
        "steps": {
            "clean": { "type": "transform", "plugin": "cleaner", "inputs": ["impressions", "raw"] },
            "joined": { "type": "window-join", "inputs": ["clean", "clicks"],
                "keys": { "clean": "$.request_id", "clicks": "$.request_id" },
                "window": { "start_ms": 0, "end_ms": 2000 }, "mode": "left" }
        },
        "sinks": {
            "samples": { "type": "file", "path": "out/samples.jsonl", "inputs": ["joined"] },
            "cleaned": { "type": "null", "inputs": ["clean"] }
        },
        "dead_letter": { "type": "file", "path": "out/dead.jsonl" },
        "settings": {
            "parallelism": 2, "batch_linger_ms": 20, "admin": admin,
            "state": { "dir": "out/state" },
            "checkpoint": { "interval_ms": 700, "dir": "out/checkpoints" }
        }
    });
    common::write_pipeline(dir, &p)
}

/// A `streamhost run` process, stopped (SIGTERM) when dropped.
struct Running {
    child: Child,
    addr: String,
    stderr: PathBuf,
}

impl Running {
    fn start(pipeline: &Path) -> Running {
        let dir = pipeline.parent().unwrap();
        let stderr = dir.join("streamhost.stderr");
        let child = common::streamhost()
            .args(["run", "--no-progress"])
            .arg(pipeline)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut running = Running { child, addr: String::new(), stderr };
        let addr_file = dir.join("admin.addr");
        let until = Instant::now() + Duration::from_secs(120);
        while !addr_file.exists() {
            assert!(running.child.try_wait().unwrap().is_none(), "streamhost exited: {}", running.log());
            assert!(Instant::now() < until, "no admin.addr after 120 s: {}", running.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        running.addr = std::fs::read_to_string(&addr_file).unwrap().trim().to_string();
        running
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// GET `path` on the admin API: status and body.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.get(format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let mut response = request.call().unwrap();
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
    }

    fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let (status, body) = self.get(path, token);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            common::signal(&self.child, "TERM");
            if common::wait_or_kill(&mut self.child, Instant::now() + Duration::from_secs(30)).is_none() {
                eprintln!("streamhost did not stop in 30 s after SIGTERM: killed");
            }
        }
    }
}

/// Runs `web/page_test.js` in `mode`: its JSON report (panics with its
/// stderr if it failed).
fn browse(mode: &str, url: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/page_test.js");
    let out = std::process::Command::new("node")
        .arg(&script)
        .args([mode, url, artifacts().to_str().unwrap()])
        .args(args)
        .env("NODE_PATH", node_modules())
        .output()
        .expect("node (scripts/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("page_test.js {mode} printed no report: {stdout}\n{stderr}"));
    assert!(out.status.success(), "page_test.js {mode} failed: {stderr}\nits report: {report:#}\nscreenshot: {}", artifacts().join(format!("failure-{mode}.png")).display());
    report
}

fn wait(what: &str, running: &Running, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}: {}", running.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_page_shows_the_dag_plugins_dead_letters_and_checkpoints_and_its_button_rolls_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let v1 = build("plugins/impression-cleaner", WorldName::Transform);
    let v2 = build("tests/plugins/hostile", WorldName::Transform);
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(&write_pipeline(dir.path(), &v1, Some(TOKEN)));
    let client = AdminClient::new(&running.addr, Some(TOKEN.into()));

    // The API the page reads: the token guards the data, not the page.
    assert_eq!(running.get("/api/graph", None).0, 401);
    let (status, html) = running.get("/", None);
    assert_eq!(status, 200);
    assert!(html.contains("<script src=\"/ui/app.js\">"), "{html}");
    assert_eq!(running.get("/ui/app.js", None).0, 200);
    let graph = running.get_json("/api/graph", Some(TOKEN));
    assert_eq!(graph["stages"], 2);
    assert_eq!(running.get("/api/dead-letters?limit=x", Some(TOKEN)).0, 400);

    // The pipeline runs with v1, whose refusals are dead letters; then v2 (another build) is swapped in.
    wait("v1 to clean events", &running, || client.list().unwrap().plugins[0].current.stats.events_in > 2000);
    wait("dead letters of both kinds", &running, || {
        let d = running.get_json("/api/dead-letters?limit=100", Some(TOKEN));
        let kinds: Vec<&str> = d["dead_letters"].as_array().unwrap().iter().filter_map(|d| d["kind"].as_str()).collect();
        kinds.contains(&"malformed") && kinds.contains(&"plugin-error")
    });
    let v1_hash = client.list().unwrap().plugins[0].current.hash.clone();
    let swapped = client.swap("cleaner", &std::fs::read(&v2).unwrap(), Some(&json!({"tag": "v2"})), false).unwrap();
    assert_ne!(swapped.version, v1_hash, "two builds, two versions");
    wait("v2 to run", &running, || client.list().unwrap().plugins[0].current.stats.events_in > 500);

    let report = browse("page", &running.url(), &["cleaner", TOKEN]);
    println!("screenshots: {}", artifacts().display());
    assert_eq!(report["httpStatus"], 200);
    assert_eq!(report["pageErrors"], json!([]), "{report:#}");
    assert_eq!(report["tokenAsked"], true, "the page asked for the token the API needs");

    // The DAG: every node, by name, with its type, plugin and parallelism.
    let nodes: Vec<(String, String, String)> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().into(), n["name"].as_str().unwrap().into(), n["subtitle"].as_str().unwrap().into()))
        .collect();
    let subtitle = |id: &str| nodes.iter().find(|n| n.0 == id).unwrap_or_else(|| panic!("no node {id} in {nodes:?}")).2.clone();
    assert_eq!(nodes.len(), 7, "{nodes:?}");
    for (id, name, _) in &nodes {
        assert_eq!(id.split_once(':').unwrap().1, name);
    }
    assert_eq!(subtitle("source:impressions"), "generator · ×1");
    assert_eq!(subtitle("source:raw"), "file · ×1");
    assert_eq!(subtitle("step:clean"), "transform · cleaner · ×2 · stage 0");
    assert_eq!(subtitle("step:joined"), "window-join · ×2 · stage 1");
    assert_eq!(subtitle("sink:samples"), "file · ×1");
    assert_eq!(subtitle("sink:cleaned"), "null · ×1");
    let edges: Vec<String> = report["edges"].as_array().unwrap().iter().map(|e| format!("{} -> {} {}", e["from"].as_str().unwrap(), e["to"].as_str().unwrap(), e["kind"].as_str().unwrap())).collect();
    for e in [
        "source:impressions -> step:clean balance",
        "source:raw -> step:clean balance",
        "source:clicks -> step:joined by-key",
        "step:clean -> step:joined exchange",
        "step:clean -> sink:cleaned sink",
        "step:joined -> sink:samples sink",
    ] {
        assert!(edges.contains(&e.to_string()), "no edge {e} in {edges:?}");
    }
    assert_eq!(edges.len(), 6, "{edges:?}");
    assert_eq!(report["table"]["step:joined"]["parallelism"], "2 (stage 1)");
    assert!(report["summary"].as_str().unwrap().contains("2 stages × 2 workers"), "{}", report["summary"]);

    // Dead letters with their kinds and reasons, and checkpoints.
    let dead = report["deadLetters"].as_array().unwrap();
    let malformed = dead.iter().find(|d| d["kind"] == "malformed").unwrap_or_else(|| panic!("{dead:#?}"));
    assert!(malformed["origin"].as_str().unwrap().starts_with("raw:"), "{malformed}");
    assert_eq!(malformed["step"], "(source)");
    let refused = dead.iter().find(|d| d["kind"] == "plugin-error").unwrap_or_else(|| panic!("{dead:#?}"));
    assert_eq!(refused["step"], "clean (cleaner)");
    assert!(!refused["reason"].as_str().unwrap().is_empty());
    assert!(refused["value"].as_str().unwrap().starts_with("{\"event\":\"impression\""), "{refused}");
    let checkpoints = report["checkpoints"].as_array().unwrap();
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    assert!(checkpoints.iter().all(|c| c["outcome"] == "ok"), "{checkpoints:?}");
    assert!(checkpoints[0]["id"].as_u64() > checkpoints[1]["id"].as_u64(), "newest first: {checkpoints:?}");
    assert!(checkpoints[0]["size"].as_str().unwrap().ends_with("B"), "{checkpoints:?}");
    // No alert rules on this branch: the empty state.
    assert!(report["alerts"].as_str().unwrap().starts_with("No alert"), "{}", report["alerts"]);

    // The plugin: v2 current, v1 previous, the swap in its history; the button puts v1 back.
    assert_eq!(report["before"]["current"], swapped.version.as_str());
    assert_eq!(report["before"]["previous"], v1_hash.as_str());
    let history: Vec<&str> = report["before"]["history"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(history.contains(&"swap"), "{history:?}");
    assert_eq!(report["before"]["rollbackEnabled"], true);
    assert!(report["dialog"].as_str().unwrap().contains("cleaner"), "the button asks first");
    assert_eq!(report["after"]["current"], v1_hash.as_str(), "{report:#}");
    assert_eq!(report["after"]["previous"], swapped.version.as_str());
    assert_eq!(report["after"]["history"][0], "rollback", "newest first: {}", report["after"]);
    assert!(report["result"].as_str().unwrap().starts_with("Rolled back"), "{}", report["result"]);
    let now = client.list().unwrap();
    let cleaner = &now.plugins[0];
    assert_eq!(cleaner.current.hash, v1_hash, "the admin API agrees");
    assert_eq!((cleaner.swaps, cleaner.rollbacks), (1, 1));
    for shot in ["page.png", "after-rollback.png", "page-after-rollback.png"] {
        assert!(std::fs::metadata(artifacts().join(shot)).unwrap().len() > 10_000, "{shot}");
    }
    drop(running);
}

/// Needs `GET /metrics` (the metrics contract): the page's figures per node
/// come from it.
#[test]
fn the_page_shows_each_nodes_rate_lag_and_backpressure_from_metrics_and_they_change() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let v1 = build("plugins/impression-cleaner", WorldName::Transform);
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(&write_pipeline(dir.path(), &v1, None));
    let (status, _) = running.get("/metrics", None);
    assert_eq!(status, 200, "the admin API serves no /metrics (the metrics work is not merged into this build)");

    let report = browse("numbers", &running.url(), &[]);
    println!("screenshots: {}", artifacts().display());
    assert_eq!(report["pageErrors"], json!([]), "{report:#}");
    let (first, second) = (&report["first"], &report["second"]);
    let value = |f: &Value, node: &str, field: &str| f[node][field]["value"].as_f64();
    for node in ["source:impressions", "source:clicks", "step:clean", "step:joined"] {
        let (a, b) = (value(first, node, "events"), value(second, node, "events"));
        assert!(a.is_some() && b > a, "{node}: the events shown did not grow ({a:?} then {b:?}): {report:#}");
        let rate = value(second, node, "rate").unwrap_or_else(|| panic!("{node}: no rate shown: {report:#}"));
        assert!(rate > 0.0, "{node}: rate {rate}");
        let bp = value(second, node, "backpressure").unwrap_or_else(|| panic!("{node}: no backpressure shown: {report:#}"));
        assert!((0.0..=1.0).contains(&bp), "{node}: backpressure {bp}");
    }
    // 2000 generated per second: the page's rate is near it.
    let rate = value(second, "source:impressions", "rate").unwrap();
    assert!((1000.0..3000.0).contains(&rate), "impressions at {rate}/s");
    // Event time follows the clock: the source's watermark lag is seconds, not years.
    let lag = value(second, "source:impressions", "lag").unwrap_or_else(|| panic!("no lag shown: {report:#}"));
    assert!((0.0..60.0).contains(&lag), "lag {lag} s");
    // What the page shows is what /metrics says (it can only be behind it).
    let (_, text) = running.get("/metrics", None);
    let now: f64 = text
        .lines()
        .filter(|l| l.starts_with("streamhost_source_events_total{") && l.contains("source=\"impressions\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let shown = value(second, "source:impressions", "events").unwrap();
    assert!(shown <= now && shown > 0.0, "shown {shown}, /metrics now {now}");
    let figures = report["secondNodes"].as_array().unwrap().iter().find(|n| n["id"] == "source:impressions").unwrap()["figures"].as_str().unwrap().to_string();
    assert!(figures.contains("/s · lag ") && figures.contains(" · bp ") && !figures.contains("–"), "the DAG's node shows them too: {figures}");
    drop(running);
}
