//! `streamhost sql`: golden folders (sql_cases/NAME: job.sql, its inputs,
//! `stdin.jsonl` when it reads standard input, the expected pipeline.json,
//! and expected/ outputs), and errors located at line:column.
//!
//! `STREAMHOST_UPDATE_SQL=1` rewrites the expected pipeline.json files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

fn streamhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamhost"))
}

fn cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_cases")
}

/// A copy of the case's folder (outputs land in it, not in the repository),
/// with the repository's `plugins/` linked in (a job names `plugins/x`).
fn copy_case(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::repo_root().join("plugins"), dir.path().join("plugins")).unwrap();
    for e in std::fs::read_dir(cases().join(name)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

fn sorted_lines(p: &Path) -> Vec<String> {
    let mut l: Vec<String> = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).lines().map(String::from).collect();
    l.sort();
    l
}

/// The explain output equals the case's pipeline.json; where expected/
/// exists, `sql` and `run` of the explained pipeline both write it.
fn golden(name: &str) {
    let dir = copy_case(name);
    let job = dir.path().join("job.sql");
    let out = streamhost().args(["sql", "--explain"]).arg(&job).output().unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    let explained = String::from_utf8(out.stdout).unwrap();
    let expected_file = cases().join(name).join("pipeline.json");
    if std::env::var_os("STREAMHOST_UPDATE_SQL").is_some() {
        std::fs::write(&expected_file, &explained).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_file).unwrap_or_else(|e| panic!("{name}: {e} (STREAMHOST_UPDATE_SQL=1 writes it)"));
    assert_eq!(explained, expected, "{name}: the compiled pipeline differs");
    // `streamhost run` takes the explained pipeline as it is.
    std::fs::write(dir.path().join("pipeline.json"), &explained).unwrap();
    let v = streamhost().args(["validate", "--no-plugins"]).arg(dir.path().join("pipeline.json")).output().unwrap();
    assert!(v.status.success(), "{name}: {}", String::from_utf8_lossy(&v.stderr));
    let v = streamhost().args(["validate", "--no-plugins"]).arg(&job).output().unwrap();
    assert!(v.status.success(), "{name}: {}", String::from_utf8_lossy(&v.stderr));
    let expected_dir = cases().join(name).join("expected");
    if !expected_dir.exists() {
        return;
    }
    let stdin = dir.path().join("stdin.jsonl");
    for args in [vec!["sql".to_string(), job.display().to_string()], vec!["run".into(), dir.path().join("pipeline.json").display().to_string()]] {
        let input = if stdin.exists() { Stdio::from(std::fs::File::open(&stdin).unwrap()) } else { Stdio::null() };
        let out = streamhost().args(&args).arg("--no-progress").current_dir(dir.path()).stdin(input).output().unwrap();
        assert!(out.status.success(), "{name}: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        for e in std::fs::read_dir(&expected_dir).unwrap() {
            let e = e.unwrap();
            assert_eq!(sorted_lines(&dir.path().join(e.file_name())), sorted_lines(&e.path()), "{name}: {args:?}: {:?}", e.file_name());
            std::fs::remove_file(dir.path().join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn passthrough_keeps_valid_records_and_dead_letters_the_others() {
    golden("passthrough");
    // The dead letters of a run: the record without `id`, the one whose `n` is a string.
    let dir = copy_case("passthrough");
    let out = streamhost().arg("sql").arg(dir.path().join("job.sql")).arg("--no-progress").output().unwrap();
    assert!(out.status.success());
    let dead = std::fs::read_to_string(dir.path().join("dead-letter.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 2, "{dead}");
    assert!(dead.contains("\\\"three\\\"") || dead.contains("three"), "{dead}");
}

#[test]
fn fan_out_reads_its_source_once_for_two_inserts() {
    golden("fan_out");
    let p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases().join("fan_out/pipeline.json")).unwrap()).unwrap();
    assert_eq!(p["sources"].as_object().unwrap().len(), 1);
    assert!(p.get("steps").is_none(), "SELECT * needs no step: {p}");
}

#[test]
fn delayed_join_star_runs_as_a_window_join() {
    golden("delayed_join_star");
}

#[test]
fn lookup_join_star_runs_against_a_file_table() {
    golden("lookup_join_star");
}

#[test]
fn projection_where_runs_as_a_select_step() {
    golden("projection_where");
}

#[test]
fn delayed_join_with_a_projection_runs() {
    golden("delayed_join");
}

/// A transform as a table function, then a UDF: both plugins built from source.
#[test]
fn transform_and_udf_run_from_source() {
    common::build("plugins/impression-cleaner", streamhost::config::WorldName::Transform);
    common::build("plugins/url-udf", streamhost::config::WorldName::Udf);
    golden("transform_udf");
    // r2 is a bot (dropped by the cleaner); r3 has no `extra.url`: SQL's
    // NULL in, NULL out (`null_input: null`), no dead letter...
    let dir = copy_case("transform_udf");
    let run = |args: &[&std::ffi::OsStr]| {
        let stdin = std::fs::File::open(dir.path().join("stdin.jsonl")).unwrap();
        let out = streamhost().args(args).arg("--no-progress").current_dir(dir.path()).stdin(stdin).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dead = std::fs::read_to_string(dir.path().join("dead-letter.jsonl")).unwrap_or_default();
        std::fs::remove_file(dir.path().join("dead-letter.jsonl")).ok();
        dead
    };
    let dead = run(&["sql".as_ref(), dir.path().join("job.sql").as_os_str()]);
    assert_eq!(dead, "", "{dead}");
    // ...while the udf step's default (`call`) passes the NULL to the
    // function, whose `str` parameter refuses it: r3 is dead-lettered.
    let mut p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases().join("transform_udf/pipeline.json")).unwrap()).unwrap();
    let udf = p["steps"].as_object_mut().unwrap().values_mut().find(|s| s["type"] == "udf").unwrap();
    assert_eq!(udf.as_object_mut().unwrap().remove("null_input"), Some(serde_json::json!("null")));
    std::fs::write(dir.path().join("pipeline.json"), p.to_string()).unwrap();
    let dead = run(&["run".as_ref(), dir.path().join("pipeline.json").as_os_str()]);
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("r3") && dead.contains("argument 1: expected str, got null"), "{dead}");
}

/// The error of `job` (exit 2): its message names `line:column` and shows
/// the offending text under a caret.
fn error_of(job: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("job.sql");
    std::fs::write(&p, job).unwrap();
    let out = streamhost().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err.replace(&p.display().to_string(), "job.sql")
}

/// `err` points at `line:col` and carets exactly `text` there.
fn assert_at(err: &str, line: usize, col: usize, text: &str) {
    assert!(err.contains(&format!("--> job.sql:{line}:{col}\n")), "expected {line}:{col}:\n{err}");
    let shown: Vec<&str> = err.lines().collect();
    let i = shown.iter().position(|l| l.starts_with(&format!("{line} | "))).unwrap_or_else(|| panic!("no line {line}:\n{err}"));
    let source = &shown[i][format!("{line} | ").len()..];
    let carets = &shown[i + 1][format!("{line} | ").len()..];
    let start = carets.find('^').unwrap();
    let width = carets.matches('^').count();
    assert_eq!(start + 1, col, "{err}");
    assert_eq!(&source[start..start + width], text, "{err}");
}

const TABLES: &str = "CREATE TABLE clicks (uid STRING, ts BIGINT) WITH ('connector' = 'file', 'path' = 'c.jsonl');\nCREATE TABLE out WITH ('connector' = 'stdout');\n";

#[test]
fn unknown_column_is_located() {
    let err = error_of(&format!("{TABLES}INSERT INTO out SELECT uid, dwell FROM clicks;"));
    assert!(err.contains("unknown column `dwell`") && err.contains("uid, ts"), "{err}");
    assert_at(&err, 3, 29, "dwell");
    let err = error_of(&format!("{TABLES}INSERT INTO out\nSELECT * FROM clicks AS c WHERE c.nope > 1;"));
    assert_at(&err, 4, 35, "nope");
}

#[test]
fn unknown_connector_option_is_located() {
    let err = error_of("CREATE TABLE clicks (uid STRING)\n  WITH ('connector' = 'file', 'pathh' = 'c.jsonl');\nCREATE TABLE out WITH ('connector' = 'stdout');\nINSERT INTO out SELECT * FROM clicks;");
    assert!(err.contains("unknown option `pathh`") && err.contains("known: path"), "{err}");
    assert_at(&err, 2, 31, "'pathh'");
}

#[test]
fn delay_join_without_window_is_located() {
    let err = error_of(&format!(
        "{TABLES}CREATE TABLE views (uid STRING) WITH ('connector' = 'file', 'path' = 'v.jsonl');\nINSERT INTO out SELECT * FROM views AS v\n  LEFT INTERVAL '5' MINUTE DELAY JOIN clicks AS c ON v.uid = c.uid;"
    ));
    assert!(err.contains("needs a window"), "{err}");
    assert_at(&err, 5, 8, "INTERVAL '5' MINUTE DELAY");
}

#[test]
fn syntax_error_is_located() {
    let err = error_of(&format!("{TABLES}INSERT INTO out SELECT uid FROM clicks WHERE uid = = 'x';"));
    assert!(err.contains("Expected"), "{err}");
    assert_at(&err, 3, 52, "=");
}

#[test]
fn relative_paths_resolve_against_the_sql_folder() {
    // Run from another directory: the source and the sink are beside job.sql.
    let dir = copy_case("fan_out");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = streamhost().arg("sql").arg(dir.path().join("job.sql")).arg("--no-progress").current_dir(elsewhere.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sorted_lines(&dir.path().join("a.jsonl")).len(), 2);
}

#[test]
fn type_mismatches_are_located() {
    let err = error_of(&format!("{TABLES}INSERT INTO out SELECT uid FROM clicks WHERE uid > 3;"));
    assert!(err.contains("cannot compare STRING with BIGINT"), "{err}");
    assert_at(&err, 3, 52, "3");
    let err = error_of(&format!("{TABLES}INSERT INTO out\nSELECT UPPER(ts) AS x FROM clicks;"));
    assert!(err.contains("argument 1 of UPPER needs STRING, not BIGINT"), "{err}");
    assert_at(&err, 4, 14, "ts");
    let err = error_of(&format!("{TABLES}INSERT INTO out\nSELECT UPPER(uid) AS x FROM clicks WHERE ts + 1;"));
    assert!(err.contains("WHERE needs a BOOLEAN condition, not BIGINT"), "{err}");
    assert_at(&err, 4, 42, "ts + 1");
    // A joined table's columns are typed under their alias.
    let err = error_of(&format!(
        "{TABLES}CREATE TABLE views (uid STRING, ts BIGINT, WATERMARK FOR ts AS ts) WITH ('connector' = 'file', 'path' = 'v.jsonl');\nINSERT INTO out SELECT v.uid, c.uid * 2 AS x FROM views AS v\n  LEFT INTERVAL '5' MINUTE WINDOW JOIN clicks AS c ON v.uid = c.uid;"
    ));
    assert!(err.contains("`*` needs a number, not STRING"), "{err}");
    assert_at(&err, 4, 31, "c.uid");
}

/// `validate` (and `sql`) load the UDF plugins first: a call is checked
/// against the plugin's declared signatures. `--explain` does not load them.
#[test]
fn udf_calls_are_checked_against_the_plugin() {
    common::build("plugins/url-udf", streamhost::config::WorldName::Udf);
    let dir = copy_case("passthrough");
    let job = dir.path().join("job.sql");
    let write = |select: &str| {
        std::fs::write(&job, format!("CREATE FUNCTION domain AS 'plugins/url-udf';\nCREATE FUNCTION bucket AS 'plugins/url-udf';\n{TABLES}{select}")).unwrap();
    };
    write("INSERT INTO out SELECT uid, domain(ts) AS d FROM clicks;");
    let out = streamhost().arg("validate").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8(out.stderr).unwrap().replace(&job.display().to_string(), "job.sql");
    assert!(err.contains("no signature of `domain` takes (BIGINT); it has domain(STRING)"), "{err}");
    assert_at(&err, 5, 29, "domain(ts"); // sqlparser's span of a call ends before its `)`
    let explained = streamhost().args(["sql", "--explain"]).arg(&job).output().unwrap();
    assert!(explained.status.success(), "--explain does not load plugins: {}", String::from_utf8_lossy(&explained.stderr));
    // The result's type is the plugin's: bucket returns an int.
    write("INSERT INTO out SELECT UPPER(bucket(uid, 4)) AS b FROM clicks;");
    let err = String::from_utf8(streamhost().arg("validate").arg(&job).output().unwrap().stderr).unwrap();
    assert!(err.contains("argument 1 of UPPER needs STRING, not BIGINT"), "{err}");
    write("INSERT INTO out SELECT bucket(uid, 4) + 1 AS b FROM clicks WHERE domain(uid) = 'x';");
    let ok = streamhost().arg("validate").arg(&job).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

fn json_objects(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// examples/training-join/job.sql, the SQL form of its pipeline.json, run on
/// a copy of the example: the same samples as the JSON form (as multisets of
/// JSON objects, `click_*` fields included), each checked against the raw
/// data, and the same dead letter (the impression without a user).
#[test]
fn training_join_in_sql_makes_the_samples_of_the_json_form() {
    let root = common::repo_root();
    let (dir, ex) = common::example_copy("training-join", &["job.sql", "pipeline.json", "data/impressions.jsonl", "data/clicks.jsonl"], &["plugins"]);
    let mut forms = Vec::new();
    for args in [["run", "pipeline.json"], ["sql", "job.sql"]] {
        let out = streamhost().args(args).arg("--no-progress").current_dir(&ex).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let canonical = |p: &Path| {
            let mut v: Vec<String> = json_objects(p).iter().map(|o| o.to_string()).collect();
            v.sort();
            v
        };
        let (samples, dead) = (json_objects(&ex.join("out/samples.jsonl")), json_objects(&ex.join("out/dead-letter.jsonl")));
        assert_eq!(dead.len(), 1, "{args:?}: {dead:?}");
        assert_eq!(dead[0]["reason"], "missing or empty user_id", "{args:?}");
        let data = root.join("examples/training-join/data");
        common::training_join::check_samples(&json_objects(&data.join("impressions.jsonl")), &json_objects(&data.join("clicks.jsonl")), &samples);
        forms.push(canonical(&ex.join("out/samples.jsonl")));
        std::fs::remove_dir_all(ex.join("out")).unwrap();
    }
    assert_eq!(forms[0], forms[1], "the SQL job's samples differ from the JSON pipeline's");
    assert!(forms[1].iter().any(|s| s.contains("\"click_dwell_ms\"")), "positives carry the click's fields");
    drop(dir);
}

/// Flink's inner interval join (BETWEEN, and strict bounds written the other
/// way round): a row per pair, the bounds' edges as written.
#[test]
fn interval_join_emits_each_pair_within_its_bounds() {
    golden("interval_join");
    let p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases().join("interval_join/pipeline.json")).unwrap()).unwrap();
    assert_eq!(p["steps"]["pairs_join"]["window"], serde_json::json!({"start_ms": -1000, "end_ms": 5000}));
    assert_eq!(p["steps"]["strict_join"]["window"], serde_json::json!({"start_ms": 0, "end_ms": 4999}));
}

/// A 3-way LEFT delayed join is one window-join over three inputs; an INNER
/// delayed join keeps only the matched rows.
#[test]
fn delayed_join_chain_and_inner_window_join() {
    golden("delayed_join_chain");
    let p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases().join("delayed_join_chain/pipeline.json")).unwrap()).unwrap();
    assert_eq!(p["steps"]["chain_join"]["inputs"].as_array().unwrap().len(), 3);
    assert_eq!(p["steps"]["matched_join"]["mode"], "inner");
}

/// A join of two streams without a window, an interval join missing a bound
/// or comparing a column that is not the event time, and a bad SET: each
/// refused at its text.
#[test]
fn stream_joins_without_a_window_and_bad_settings_are_located() {
    const STREAMS: &str = "CREATE TABLE v (uid STRING, ts BIGINT, at BIGINT, WATERMARK FOR ts AS ts) WITH ('connector' = 'file', 'path' = 'v.jsonl');\nCREATE TABLE c (uid STRING, ts BIGINT, WATERMARK FOR ts AS ts) WITH ('connector' = 'file', 'path' = 'c.jsonl');\nCREATE TABLE out WITH ('connector' = 'stdout');\n";
    let err = error_of(&format!("{STREAMS}INSERT INTO out SELECT * FROM v\n  LEFT JOIN c ON v.uid = c.uid;"));
    assert!(err.contains("a LEFT join of two streams is the delayed join"), "{err}");
    assert_at(&err, 5, 13, "c");
    let err = error_of(&format!("{STREAMS}INSERT INTO out SELECT * FROM v\n  JOIN c ON v.uid = c.uid AND c.ts >= v.ts;"));
    assert!(err.contains("needs both bounds"), "{err}");
    assert_at(&err, 5, 13, "v.uid = c.uid AND c.ts >= v.ts");
    let err = error_of(&format!("{STREAMS}INSERT INTO out SELECT * FROM v\n  JOIN c ON v.uid = c.uid AND c.ts BETWEEN v.at AND v.at + INTERVAL '1' MINUTE;"));
    assert!(err.contains("compares event times: `v`'s is `ts`"), "{err}");
    assert_at(&err, 5, 44, "v.at");
    let err = error_of(&format!("SET 'settings.paralelism' = '2';\nSET 'state.dir' = 'x';\n{STREAMS}INSERT INTO out SELECT * FROM v;"));
    assert_at(&err, 2, 5, "'state.dir'");
    assert!(err.contains("unknown setting `state.dir`"), "{err}");
}

/// A delayed join keyed on a nested field (`i.req.id`), then a lookup keyed
/// on the joined click's field (`c.uid`, the record's `c_uid`).
#[test]
fn a_lookup_keys_on_a_joined_tables_field() {
    golden("join_then_lookup");
    let p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases().join("join_then_lookup/pipeline.json")).unwrap()).unwrap();
    assert_eq!(p["steps"]["out_join"]["keys"]["impressions"], "$.req.id");
    assert_eq!(p["steps"]["out_lookup_u"]["key"], "$.c_uid");
}

/// Two INSERTs with the same delayed join share one window-join step.
#[test]
fn identical_steps_of_two_inserts_are_one() {
    golden("shared_join");
    let p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases().join("shared_join/pipeline.json")).unwrap()).unwrap();
    let joins: Vec<&String> = p["steps"].as_object().unwrap().iter().filter(|(_, s)| s["type"] == "window-join").map(|(n, _)| n).collect();
    assert_eq!(joins, ["positives_join"], "{p}");
    assert_eq!(p["steps"]["labels_select"]["inputs"], serde_json::json!(["positives_join"]));
}
