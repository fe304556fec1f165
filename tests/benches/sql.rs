//! SQL jobs against the same work written as a pipeline.json, and against
//! Flink SQL, on the same files in the same run (issue 14, item 7).
//!
//! Every contender is a whole process, timed from its start to its exit
//! (`streamhost sql job.sql`, `streamhost run pipeline.json`, the PyFlink
//! script): what a user waits for, start-up included. Each part runs R rounds,
//! the contenders alternating (each round starts with the next one), and
//! prints every run, the medians and the ratios of the medians.
//!
//! 1. **ETL filter/projection** (`etl`): N `impression` generator records
//!    (5 % dirty: padded upper-case devices, missing users, negative
//!    positions...) in one JSON-lines file, then
//!    `SELECT request_id, user_id, item_id, LOWER(TRIM(device)) AS device,
//!    position + 1 AS pos FROM imps WHERE position <= 20 AND page = 'feed'`
//!    - a. as a SQL job (`streamhost sql job.sql`: file table → file table);
//!    - b. as pipeline.json: file → transform plugin
//!      `tests/plugins/etl-projection` (Rust, built from source first) → file;
//!    - c. in Flink SQL (`tests/benches/flink/etl_flink.py`, PyFlink).
//!
//!    The three outputs must be equal as multisets of JSON objects (keys in any
//!    order, numbers compared as numbers). Rate: input events / wall time.
//! 2. **SJoin** (`sjoin`): M impressions LEFT JOIN their clicks (M × 20 / 150)
//!    on `request_id` within 1 h, emitted at the window's end, from the files
//!    the sjoin bench writes (tests/support/sjoin.rs; 4 h of event time,
//!    5 s out-of-orderness)
//!    - a. as a SQL job (`LEFT INTERVAL '1' HOUR WINDOW JOIN`, `SELECT *` into
//!      a file; state on RocksDB in the run's folder, the default);
//!    - b. as pipeline.json: two file sources, the window-join step of the
//!      sjoin bench (`join_steps_and_sink`, its merge prefix `c_` as the SQL
//!      job's), a file sink, RocksDB state;
//!    - c. Flink's interval join (`tests/benches/flink/sjoin_flink.py`,
//!      `--payload full`, its default hashmap state).
//!
//!    Every impression must come out exactly once, with the same number of
//!    matched clicks from all three (streamhost's `c_count`, Flink's rows with
//!    a click). Rate: input events (impressions + clicks) / wall time.
//!
//! Run (builds target/release/streamhost first with `cargo build --release
//! -p streamhost`, unless `--no-build` or `STREAMHOST_BIN` names a binary):
//!
//! ```text
//! cargo test --release -p streamhost-tests --bench sql -- [--only etl|sjoin] [--no-flink]
//!     [--events N] [--impressions M] [--rounds R] [--parallelism P] [--keep]
//! ```
//!
//! Defaults: N = 2,000,000, M = 1,000,000, R = 3, P = 2 (streamhost's
//! `settings.parallelism` — in the SQL jobs `SET 'parallelism.default' = P` —
//! and Flink's parallelism). `--keep` keeps the working folder (inputs,
//! outputs, jobs).
//!
//! Flink's figure is its script's `seconds_total`: from the script's start
//! (Python, JVM and mini-cluster start included, as streamhost's process
//! start is) to its job's end, not the reading back of sjoin_flink.py's output
//! after it; the job's own time (submission to end) is printed beside it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use streamhost_tests::sjoin::{clicks_of, OUT_OF_ORDERNESS_MS, WINDOW_MS};

/// Event time the SJoin inputs cover (the sjoin bench's default).
const SJOIN_HOURS: f64 = 4.0;

struct Args {
    only: Option<String>,
    flink: bool,
    events: u64,
    impressions: u64,
    rounds: usize,
    parallelism: usize,
    build: bool,
    keep: bool,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let num = |name: &str, default: u64| -> u64 {
        get(name).map_or(default, |v| v.replace('_', "").parse::<f64>().unwrap_or_else(|_| panic!("{name} {v}: not a number")) as u64)
    };
    let only = get("--only");
    if let Some(o) = &only {
        assert!(o == "etl" || o == "sjoin", "--only etl|sjoin, not {o}");
    }
    Args {
        only,
        flink: !argv.iter().any(|a| a == "--no-flink"),
        events: num("--events", 2_000_000),
        impressions: num("--impressions", 1_000_000),
        rounds: num("--rounds", 3).max(1) as usize,
        parallelism: num("--parallelism", 2).max(1) as usize,
        build: !argv.iter().any(|a| a == "--no-build"),
        keep: argv.iter().any(|a| a == "--keep"),
    }
}

/// The streamhost binary: `$STREAMHOST_BIN`, else target/release/streamhost,
/// built first (incrementally) unless `--no-build`.
fn streamhost_bin(a: &Args) -> PathBuf {
    if let Some(bin) = std::env::var_os("STREAMHOST_BIN") {
        return PathBuf::from(bin);
    }
    let repo = streamhost_tests::repo();
    if a.build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let t = Instant::now();
        let status = Command::new(cargo).current_dir(&repo).args(["build", "--release", "-p", "streamhost"]).status().expect("run cargo build");
        assert!(status.success(), "cargo build --release -p streamhost failed");
        println!("streamhost built in {:.0} s", t.elapsed().as_secs_f64());
    }
    // The bench runs from target/release/deps (or target/release).
    let exe = std::env::current_exe().unwrap();
    let near = exe.ancestors().skip(1).take(2).map(|d| d.join("streamhost")).find(|p| p.is_file());
    let bin = near.unwrap_or_else(|| repo.join("target/release/streamhost"));
    assert!(bin.is_file(), "no streamhost binary at {}: build it or set STREAMHOST_BIN", bin.display());
    bin
}

/// PyFlink's python (tests/benches/flink/setup.sh installs it once).
fn flink_python() -> String {
    let setup = Command::new("bash").arg(flink_dir().join("setup.sh")).stderr(Stdio::inherit()).output().expect("run flink/setup.sh");
    assert!(setup.status.success(), "tests/benches/flink/setup.sh failed");
    String::from_utf8_lossy(&setup.stdout).lines().last().expect("setup.sh prints the venv's python").trim().to_string()
}

fn flink_dir() -> PathBuf {
    streamhost_tests::repo().join("tests/benches/flink")
}

/// Runs `cmd` (stdout and stderr into files of `dir`) and returns its wall
/// seconds and stdout; panics with its output if it fails.
fn timed(mut cmd: Command, dir: &Path, what: &str) -> (f64, String) {
    let (out, err) = (dir.join(format!("{what}.stdout")), dir.join(format!("{what}.stderr")));
    cmd.stdin(Stdio::null()).stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(&err).unwrap());
    let t = Instant::now();
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    let secs = t.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(status.success(), "{what} failed ({status}):\n{stdout}\n{}", std::fs::read_to_string(&err).unwrap_or_default());
    (secs, stdout)
}

/// The `RESULT {json}` line a Flink script prints.
fn flink_result(stdout: &str) -> Value {
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("no RESULT line:\n{stdout}"));
    serde_json::from_str(line).unwrap()
}

/// A Flink script's run time: from its start (Python, JVM and mini-cluster
/// start included) to its job's end (`seconds_total`); what the scripts do
/// after (reading the output back, the JVM's exit) is not counted.
fn flink_seconds(r: &Value) -> f64 {
    r["seconds_total"].as_f64().unwrap_or_else(|| panic!("no seconds_total in {r}"))
}

/// A streamhost run left no dead letters (the file is absent or empty).
fn assert_no_dead_letters(path: &Path) {
    let n = std::fs::metadata(path).map_or(0, |m| m.len());
    assert_eq!(n, 0, "dead letters in {}", path.display());
}

/// `streamhost sql job.sql` in `run_dir` (the job sets its parallelism).
fn sql_command(bin: &Path, run_dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(run_dir).args(["sql", "--no-progress", "job.sql"]);
    cmd
}

/// One timed run.
struct Run {
    contender: &'static str,
    round: usize,
    secs: f64,
    rate: f64,
    /// Flink: its job's own seconds (submission to end).
    job_secs: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(part: &str, runs: &[Run], contenders: &[&'static str]) -> Value {
    println!();
    println!("{part}: medians over {} rounds", runs.iter().map(|r| r.round).max().unwrap_or(0) + 1);
    let mut medians = HashMap::new();
    for c in contenders {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.contender == *c).collect();
        let rate = median(mine.iter().map(|r| r.rate).collect());
        let secs = median(mine.iter().map(|r| r.secs).collect());
        let job = mine.iter().filter_map(|r| r.job_secs).collect::<Vec<_>>();
        let job = if job.is_empty() { String::new() } else { format!("  (job alone {:.2} s)", median(job)) };
        println!("  {c:<14} {rate:>12.0} events/s  {secs:>8.2} s{job}");
        medians.insert(*c, rate);
    }
    let sql = medians[contenders[0]];
    let mut ratios = serde_json::Map::new();
    for c in &contenders[1..] {
        let r = sql / medians[c];
        println!("  ratio {} / {c}: {r:.2}", contenders[0]);
        ratios.insert(format!("{}/{c}", contenders[0]), r.into());
        // Flink: also against its job alone (its start-up left out).
        let job: Vec<f64> = runs.iter().filter(|r| r.contender == *c).filter_map(|r| Some(r.rate * r.secs / r.job_secs?)).collect();
        if !job.is_empty() {
            let r = sql / median(job);
            println!("  ratio {} / {c} (job alone): {r:.2}", contenders[0]);
            ratios.insert(format!("{}/{c}-job-alone", contenders[0]), r.into());
        }
    }
    json!({"medians_events_per_s": medians, "ratios": ratios})
}

fn print_run(part: &str, r: &Run) {
    let job = r.job_secs.map_or(String::new(), |j| format!(" (job alone {j:.2} s)"));
    println!("{part} round {} {:<14} {:>8.2} s {:>12.0} events/s{job}", r.round + 1, r.contender, r.secs, r.rate);
}

/// Rounds of `contenders`, each round starting with the next one.
fn schedule(rounds: usize, contenders: &[&'static str]) -> Vec<(usize, &'static str)> {
    let k = contenders.len();
    (0..rounds).flat_map(|round| (0..k).map(move |i| (round, contenders[(round + i) % k]))).collect()
}

// ---------------------------------------------------------------- ETL

/// A JSON value written canonically: object keys sorted, numbers by value
/// (`2` and `2.0` alike), so that outputs compare as multisets of objects.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => out.push_str(&(f as i64).to_string()),
            (None, Some(f)) => out.push_str(&format!("{f:?}")),
            (None, None) => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// The JSON-lines files' objects, canonical and sorted.
fn canonical_rows(files: &[PathBuf]) -> Vec<String> {
    let mut rows = Vec::new();
    for f in files {
        let text = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for line in text.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
            let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let mut s = String::with_capacity(line.len());
            canonical(&v, &mut s);
            rows.push(s);
        }
    }
    rows.sort_unstable();
    rows
}

/// Flink's committed part files in `dir` (not `.`/`_` in-progress ones).
fn part_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if !e.file_name().to_string_lossy().starts_with(['.', '_']) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// Writes `n` impression records (seed 7, 5 % dirty) to `path`.
fn write_impressions(n: u64, dir: &Path) -> PathBuf {
    let file = dir.join("imps.jsonl");
    let gen_dir = dir.join("gen");
    std::fs::create_dir_all(&gen_dir).unwrap();
    let p = streamhost_tests::write_pipeline(
        &gen_dir,
        &json!({
            "name": "sql-bench-impressions",
            "sources": {"gen": {"type": "generator", "shape": "impression", "seed": 7, "count": n, "dirty_ratio": 0.05}},
            "sinks": {"file": {"type": "file", "inputs": ["gen"], "path": file}}
        }),
    );
    streamhost_tests::run_pipeline(&p);
    file
}

fn etl_sql(input: &Path, parallelism: usize) -> String {
    format!(
        "SET 'parallelism.default' = {parallelism};\n\
         CREATE TABLE imps (request_id STRING NOT NULL, user_id STRING, item_id STRING, device STRING, position INT, page STRING)\n  \
         WITH ('connector' = 'file', 'path' = '{}');\n\
         CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out.jsonl');\n\
         INSERT INTO out\n\
         SELECT request_id, user_id, item_id, LOWER(TRIM(device)) AS device, position + 1 AS pos\n\
         FROM imps WHERE position <= 20 AND page = 'feed';\n",
        input.display()
    )
}

fn etl_pipeline(input: &Path, plugin: &Path, parallelism: usize) -> Value {
    json!({
        "name": "etl-plugin",
        "plugins": {"etl": {"path": plugin}},
        "sources": {"imps": {"type": "file", "path": input}},
        "steps": {"project": {"type": "transform", "plugin": "etl", "inputs": ["imps"]}},
        "sinks": {"out": {"type": "file", "inputs": ["project"], "path": "out.jsonl"}},
        "dead_letter": {"type": "file", "path": "dead-letter.jsonl"},
        "settings": {"parallelism": parallelism}
    })
}

fn etl(a: &Args, bin: &Path, python: Option<&str>, work: &Path) -> Value {
    let dir = work.join("etl");
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    let input = write_impressions(a.events, &dir);
    println!("etl: {} impressions written to {} in {:.1} s", a.events, input.display(), t.elapsed().as_secs_f64());

    let plugin = streamhost_tests::repo().join("tests/plugins/etl-projection");
    let t = Instant::now();
    streamhost::build::build_plugin(&plugin, None, false).unwrap_or_else(|e| panic!("building {}: {e}", plugin.display()));
    println!("etl: plugin {} built in {:.1} s", plugin.display(), t.elapsed().as_secs_f64());
    {
        // Untimed: the first load compiles the component into the artifact cache.
        let warm = dir.join("warm-up");
        std::fs::create_dir_all(&warm).unwrap();
        let head = warm.join("head.jsonl");
        let lines = BufReader::new(std::fs::File::open(&input).unwrap()).lines().take(1000);
        std::fs::write(&head, lines.map(|l| l.unwrap() + "\n").collect::<String>()).unwrap();
        streamhost_tests::write_pipeline(&warm, &etl_pipeline(&head, &plugin, a.parallelism));
        let mut cmd = Command::new(bin);
        cmd.current_dir(&warm).args(["run", "--no-progress", "pipeline.json"]);
        timed(cmd, &warm, "run");
    }

    let mut contenders = vec!["sql", "json+plugin"];
    if python.is_some() {
        contenders.push("flink-sql");
    }
    let mut expected: Option<(Vec<String>, &str)> = None;
    let mut runs = Vec::new();
    for (i, (round, contender)) in schedule(a.rounds, &contenders).into_iter().enumerate() {
        let run_dir = dir.join(format!("run-{i:02}-{contender}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let (secs, outputs, job_secs) = match contender {
            "sql" => {
                std::fs::write(run_dir.join("job.sql"), etl_sql(&input, a.parallelism)).unwrap();
                let (secs, _) = timed(sql_command(bin, &run_dir), &run_dir, "sql");
                assert_no_dead_letters(&run_dir.join("dead-letter.jsonl"));
                (secs, vec![run_dir.join("out.jsonl")], None)
            }
            "json+plugin" => {
                streamhost_tests::write_pipeline(&run_dir, &etl_pipeline(&input, &plugin, a.parallelism));
                let mut cmd = Command::new(bin);
                cmd.current_dir(&run_dir).args(["run", "--no-progress", "pipeline.json"]);
                let (secs, _) = timed(cmd, &run_dir, "run");
                assert_no_dead_letters(&run_dir.join("dead-letter.jsonl"));
                (secs, vec![run_dir.join("out.jsonl")], None)
            }
            _ => {
                let out = run_dir.join("flink-out");
                let mut cmd = Command::new(python.unwrap());
                cmd.arg(flink_dir().join("etl_flink.py"))
                    .args(["--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()])
                    .args(["--parallelism", &a.parallelism.to_string()]);
                let (_, stdout) = timed(cmd, &run_dir, "flink");
                let r = flink_result(&stdout);
                (flink_seconds(&r), part_files(&out), r["seconds_job"].as_f64())
            }
        };
        let run = Run { contender, round, secs, rate: a.events as f64 / secs, job_secs };
        print_run("etl", &run);
        runs.push(run);
        // A fast wrong answer is no result: every output equals the first.
        let rows = canonical_rows(&outputs);
        match &expected {
            None => {
                assert!(!rows.is_empty(), "{contender}: no output rows");
                println!("etl: {contender} wrote {} rows (of {} impressions)", rows.len(), a.events);
                expected = Some((rows, contender));
            }
            Some((want, first)) => {
                if rows != *want {
                    let missing = want.iter().filter(|r| rows.binary_search(r).is_err()).take(3).collect::<Vec<_>>();
                    let extra = rows.iter().filter(|r| want.binary_search(r).is_err()).take(3).collect::<Vec<_>>();
                    panic!(
                        "etl: {contender}'s output ({} rows, {}) differs from {first}'s ({} rows): missing e.g. {missing:?}, extra e.g. {extra:?}",
                        rows.len(),
                        run_dir.display(),
                        want.len()
                    );
                }
            }
        }
        if !a.keep {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
    }
    println!("etl: every output equal ({} rows)", expected.as_ref().map_or(0, |e| e.0.len()));
    let mut r = report("etl", &runs, &contenders);
    r["events"] = a.events.into();
    r["output_rows"] = expected.map_or(0, |e| e.0.len()).into();
    r
}

// ---------------------------------------------------------------- SJoin

fn sjoin_sql(dir: &Path, parallelism: usize) -> String {
    assert_eq!(WINDOW_MS, 3_600_000, "the job's window is 1 h");
    let table = |name: &str, file: &str| {
        format!(
            "CREATE TABLE {name} (request_id STRING NOT NULL, ts BIGINT NOT NULL, \
             WATERMARK FOR ts AS ts - INTERVAL '{OUT_OF_ORDERNESS_MS}' MILLISECOND)\n  \
             WITH ('connector' = 'file', 'path' = '{}');\n",
            dir.join(file).display()
        )
    };
    format!(
        "SET 'parallelism.default' = {parallelism};\n{}{}CREATE TABLE joined WITH ('connector' = 'file', 'path' = 'out.jsonl');\n\
         INSERT INTO joined\n\
         SELECT * FROM imps AS i LEFT INTERVAL '1' HOUR WINDOW JOIN clicks AS c ON i.request_id = c.request_id;\n",
        table("imps", "impressions.jsonl"),
        table("clicks", "clicks.jsonl")
    )
}

/// The sjoin bench's pipeline on the files: its window-join step (merge
/// prefix `c_`, as the SQL job's alias gives) into a file sink.
fn sjoin_pipeline(dir: &Path, parallelism: usize) -> Value {
    let (steps, _) = streamhost_tests::sjoin::join_steps_and_sink("unused");
    let mut join = steps["join"].clone();
    join["joiner"]["prefixes"] = json!({"clk": "c_"});
    let source = |file: &str| json!({"type": "file", "path": dir.join(file), "timestamp_field": "ts", "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS});
    json!({
        "name": "sjoin-json",
        "sources": {"imp": source("impressions.jsonl"), "clk": source("clicks.jsonl")},
        "steps": {"join": join},
        "sinks": {"out": {"type": "file", "inputs": ["join"], "path": "out.jsonl"}},
        "dead_letter": {"type": "file", "path": "dead-letter.jsonl"},
        "settings": {"parallelism": parallelism, "state": {"backend": "rocksdb", "dir": "state"}}
    })
}

/// `request_id<TAB>matched clicks` per impression, sorted by request id (as
/// sjoin_flink.py writes it), from a streamhost output; panics on an
/// impression that came out twice.
fn sjoin_canonical(out: &Path) -> Vec<u8> {
    let text = std::fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let mut rows: Vec<(String, u64)> = Vec::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let rid = v["request_id"].as_str().unwrap_or_else(|| panic!("{}: a row without request_id", out.display()));
        let n = v["c_count"].as_u64().unwrap_or_else(|| panic!("{}: a row without c_count: {v}", out.display()));
        rows.push((rid.to_string(), n));
    }
    rows.sort_unstable();
    if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
        panic!("{}: impression {} came out twice", out.display(), w[0].0);
    }
    rows.into_iter().flat_map(|(rid, n)| format!("{rid}\t{n}\n").into_bytes()).collect()
}

fn sjoin(a: &Args, bin: &Path, python: Option<&str>, work: &Path) -> Value {
    let dir = work.join("sjoin");
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    streamhost_tests::sjoin::write_inputs(a.impressions, SJOIN_HOURS, &dir);
    let input = a.impressions + clicks_of(a.impressions);
    println!("sjoin: {} impressions + {} clicks written to {} in {:.1} s", a.impressions, clicks_of(a.impressions), dir.display(), t.elapsed().as_secs_f64());

    let mut contenders = vec!["sql", "json"];
    if python.is_some() {
        contenders.push("flink-sql");
    }
    let mut expected: Option<(Vec<u8>, &str)> = None;
    let mut runs = Vec::new();
    for (i, (round, contender)) in schedule(a.rounds, &contenders).into_iter().enumerate() {
        let run_dir = dir.join(format!("run-{i:02}-{contender}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let (secs, canonical, job_secs) = match contender {
            "sql" => {
                std::fs::write(run_dir.join("job.sql"), sjoin_sql(&dir, a.parallelism)).unwrap();
                let (secs, _) = timed(sql_command(bin, &run_dir), &run_dir, "sql");
                assert_no_dead_letters(&run_dir.join("dead-letter.jsonl"));
                (secs, sjoin_canonical(&run_dir.join("out.jsonl")), None)
            }
            "json" => {
                streamhost_tests::write_pipeline(&run_dir, &sjoin_pipeline(&dir, a.parallelism));
                let mut cmd = Command::new(bin);
                cmd.current_dir(&run_dir).args(["run", "--no-progress", "pipeline.json"]);
                let (secs, _) = timed(cmd, &run_dir, "run");
                assert_no_dead_letters(&run_dir.join("dead-letter.jsonl"));
                (secs, sjoin_canonical(&run_dir.join("out.jsonl")), None)
            }
            _ => {
                let tsv = run_dir.join("flink.tsv");
                let mut cmd = Command::new(python.unwrap());
                cmd.arg(flink_dir().join("sjoin_flink.py"))
                    .args(["--impressions", dir.join("impressions.jsonl").to_str().unwrap()])
                    .args(["--clicks", dir.join("clicks.jsonl").to_str().unwrap()])
                    .args(["--out", tsv.to_str().unwrap(), "--parallelism", &a.parallelism.to_string()])
                    .args(["--window-ms", &WINDOW_MS.to_string(), "--out-of-orderness-ms", &OUT_OF_ORDERNESS_MS.to_string()]);
                let (_, stdout) = timed(cmd, &run_dir, "flink");
                let r = flink_result(&stdout);
                assert_eq!(r["impressions_with_null_and_matches"], 0, "Flink: {r}");
                assert_eq!(r["impressions_with_repeated_null_row"], 0, "Flink: {r}");
                (flink_seconds(&r), std::fs::read(&tsv).unwrap(), r["seconds_job"].as_f64())
            }
        };
        let lines = canonical.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(lines, a.impressions, "sjoin: {contender}: every impression comes out exactly once ({})", run_dir.display());
        let run = Run { contender, round, secs, rate: input as f64 / secs, job_secs };
        print_run("sjoin", &run);
        runs.push(run);
        match &expected {
            None => {
                let pairs: u64 = canonical.split(|b| *b == b'\n').filter_map(|l| std::str::from_utf8(l).ok()?.split('\t').nth(1)?.parse::<u64>().ok()).sum();
                println!("sjoin: {contender}: {lines} impressions out, {pairs} clicks matched (of {})", clicks_of(a.impressions));
                expected = Some((canonical, contender));
            }
            Some((want, first)) => assert!(
                canonical == *want,
                "sjoin: {contender} ({}) and {first} disagree on the matched clicks per impression",
                run_dir.display()
            ),
        }
        if !a.keep {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
    }
    println!("sjoin: every impression once, the same matches from every contender");
    let mut r = report("sjoin", &runs, &contenders);
    r["impressions"] = a.impressions.into();
    r["input_events"] = input.into();
    r
}

fn main() {
    let a = parse_args();
    let bin = streamhost_bin(&a);
    let python = a.flink.then(flink_python);
    let work = tempfile::Builder::new().prefix("sql-bench-").tempdir().unwrap();
    println!(
        "sql bench: {} rounds, parallelism {}, {} cores, binary {}, working in {}",
        a.rounds,
        a.parallelism,
        std::thread::available_parallelism().map_or(1, usize::from),
        bin.display(),
        work.path().display()
    );
    let mut results = serde_json::Map::new();
    if a.only.as_deref() != Some("sjoin") {
        results.insert("etl".into(), etl(&a, &bin, python.as_deref(), work.path()));
    }
    if a.only.as_deref() != Some("etl") {
        results.insert("sjoin".into(), sjoin(&a, &bin, python.as_deref(), work.path()));
    }
    results.insert("parallelism".into(), a.parallelism.into());
    results.insert("rounds".into(), a.rounds.into());
    println!();
    println!("RESULT {}", Value::Object(results));
    if a.keep {
        println!("kept {}", work.keep().display());
    }
}
