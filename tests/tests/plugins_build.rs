//! The example plugins, built from source with `streamhost::build` and run
//! through the plugin runtime: the Rust impression cleaner (checked against
//! the same function compiled natively), the Rust url-udf, the Python click
//! cleaner and a Python UDF written by the test.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rand::SeedableRng;
use serde_json::{json, Value};
use streamhost::config::{GeneratorShape, PluginGrants, PluginLimits, WorldName};
use streamhost::event::Event;
use streamhost::plugin::{FailureKind, LoadedPlugin, Outcome, PluginRuntime, RuntimeOptions, Scalar, ScalarType};

fn runtime() -> &'static PluginRuntime {
    static RT: OnceLock<PluginRuntime> = OnceLock::new();
    RT.get_or_init(|| PluginRuntime::new(RuntimeOptions::default()).expect("runtime"))
}

fn build(dir: PathBuf) -> PathBuf {
    streamhost::build::build_plugin(&dir, None, false).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).output
}

fn load(name: &str, wasm: &PathBuf, world: WorldName, config: Value) -> Arc<LoadedPlugin> {
    runtime()
        .load(name, wasm, Some(world), &PluginLimits::default(), &PluginGrants::default(), &config)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn event(value: &str) -> Event {
    Event::from_value(value.as_bytes().to_vec(), 42)
}

fn generated(shape: GeneratorShape, n: usize) -> Vec<Event> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    (0..n)
        .map(|i| {
            let mut raw = Vec::new();
            streamhost::source::write_record(&mut raw, shape, &mut rng, i as u64, 0.2);
            Event::from_value(raw, streamhost::source::BASE_TIME_MS + i as i64)
        })
        .collect()
}

/// The single output event of an outcome, parsed.
fn one_output(outcome: &Outcome) -> (Value, i64) {
    match outcome {
        Outcome::Ok(events) if events.len() == 1 => {
            (serde_json::from_slice(&events[0].value).expect("JSON output"), events[0].timestamp)
        }
        other => panic!("expected one output event, got {other:?}"),
    }
}

fn error_message(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed(f) if f.kind == FailureKind::Error => &f.message,
        other => panic!("expected an error outcome, got {other:?}"),
    }
}

const IMPRESSION: &str = r#"{"event":"impression","ts":1700000000123,"request_id":"r-000001a4","user_id":"u-12345","item_id":"i-9876","device":" Android ","os":"android 14","app_version":"8.2.1","position":3,"page":"feed","ab":"exp_42:B","user_agent":"Mozilla/5.0 (Linux; Android 14)","duration_ms":1234,"extra":{"net":"wifi","lang":"en-US"}}"#;

#[test]
fn rust_impression_cleaner_cleans_a_batch_in_wasm_as_natively() {
    let wasm = build(streamhost_tests::repo().join("plugins/impression-cleaner"));
    let plugin = load("impression-cleaner", &wasm, WorldName::Transform, Value::Null);
    let mut runner = plugin.transform().expect("instance");

    let batch = vec![
        event(IMPRESSION),
        event(&IMPRESSION.replace("1700000000123", r#""1700000000999""#).replace(r#""position":3"#, r#""position":-2"#)),
        event(&IMPRESSION.replace("Mozilla/5.0", "Googlebot/2.1")),
        event(&IMPRESSION.replace(r#""user_id":"u-12345","#, "")),
        event("{not json"),
        event(IMPRESSION),
    ];
    let out = runner.process(&batch);
    assert_eq!(out.len(), batch.len());
    let (first, ts) = one_output(&out[0]);
    assert_eq!(ts, 1_700_000_000_123, "the event time is the record's ts");
    assert_eq!(first["device"], "android");
    assert_eq!(first["os_version"], "14");
    assert!(first.get("user_agent").is_none());
    let (dirty, ts) = one_output(&out[1]);
    assert_eq!((dirty["position"].as_i64(), ts), (Some(0), 1_700_000_000_999));
    assert_eq!(out[2], Outcome::Ok(vec![]), "bots are dropped");
    assert_eq!(error_message(&out[3]), "missing or empty user_id");
    assert!(error_message(&out[4]).starts_with("invalid JSON"));
    assert_eq!(one_output(&out[5]).0, first, "an error does not disturb the rest of the batch");

    // Generated traffic, dirty records included: byte for byte what the
    // same function compiled natively makes of it.
    let input = generated(GeneratorShape::Impression, 2048);
    for chunk in input.chunks(1024) {
        let outcomes = runner.process(chunk);
        assert_eq!(outcomes.len(), chunk.len());
        for (e, o) in chunk.iter().zip(&outcomes) {
            match (impression_cleaner::clean_impression(&e.value), o) {
                (Ok(Some(native)), Outcome::Ok(events)) => {
                    assert_eq!(events.len(), 1);
                    assert_eq!(events[0].value, native);
                }
                (Ok(None), Outcome::Ok(events)) => assert!(events.is_empty()),
                (Err(native), Outcome::Failed(f)) => assert_eq!(f.message, native.to_string()),
                (native, wasm) => panic!("native {native:?} but wasm {wasm:?}"),
            }
        }
    }
}

#[test]
fn rust_url_udf_declares_typed_functions_and_fails_rows_alone() {
    let wasm = build(streamhost_tests::repo().join("plugins/url-udf"));
    let plugin = load("url-udf", &wasm, WorldName::Udf, Value::Null);
    let mut udf = plugin.udf().expect("instance");

    let bucket = udf.function("bucket").expect("bucket exported").clone();
    assert_eq!((bucket.params.as_slice(), bucket.result), (&[ScalarType::Str, ScalarType::Int][..], ScalarType::Int));
    let domain = udf.function("domain").expect("domain exported").clone();
    assert_eq!((domain.params.as_slice(), domain.result), (&[ScalarType::Str][..], ScalarType::Str));
    assert!(udf.function("query_param").is_some());

    let out = udf.call(
        "domain",
        &[vec![Scalar::Str("https://WWW.Example.com:8080/a?b=c".into())], vec![Scalar::Str("".into())], vec![Scalar::Int(3)]],
    );
    assert_eq!(out[0], Ok(Scalar::Str("www.example.com".into())));
    assert_eq!(out[1], Ok(Scalar::Null));
    assert_eq!(out[2].as_ref().unwrap_err().message, "argument 1: expected str, got int");

    let rows: Vec<Vec<Scalar>> = (0..100).map(|i| vec![Scalar::Str(format!("u-{i}")), Scalar::Int(10)]).collect();
    let first = udf.call("bucket", &rows);
    assert_eq!(first, udf.call("bucket", &rows), "buckets are stable");
    assert!(first.iter().all(|r| matches!(r, Ok(Scalar::Int(b)) if (0..10).contains(b))));
    let zero = udf.call("bucket", &[vec![Scalar::Str("u".into()), Scalar::Int(0)]]);
    assert_eq!(zero[0].as_ref().unwrap_err().message, "bucket count must be positive, got 0");
}

const CLICK: &str = r#"{"event":"click","ts":1700000000123,"request_id":"r-1","user_id":"u-1","item_id":"i-2","click_type":" TAP","dwell_ms":5300,"device":" iOS ","user_agent":"Mozilla/5.0"}"#;

#[test]
fn python_click_cleaner_cleans_a_batch() {
    let wasm = build(streamhost_tests::repo().join("plugins/click-cleaner"));
    let plugin = load("click-cleaner", &wasm, WorldName::Transform, json!({"max_dwell_ms": 60000}));
    let mut runner = plugin.transform().expect("instance");

    let batch = vec![
        event(CLICK),
        event(&CLICK.replace("1700000000123", r#""2023-11-14T22:13:20.5Z""#).replace("5300", "999999")),
        event(&CLICK.replace("Mozilla/5.0", "AhrefsBot/7.0")),
        event(&CLICK.replace("5300", "-5")),
        event(&CLICK.replace(r#""item_id":"i-2","#, "")),
        event("[1, 2"),
        event(CLICK),
    ];
    let out = runner.process(&batch);
    assert_eq!(out.len(), batch.len());
    let (first, ts) = one_output(&out[0]);
    assert_eq!(
        first,
        json!({"event":"click","ts":1700000000123i64,"request_id":"r-1","user_id":"u-1","item_id":"i-2","device":"ios","click_type":"tap","dwell_ms":5300})
    );
    assert_eq!(ts, 1_700_000_000_123);
    let (iso, ts) = one_output(&out[1]);
    assert_eq!((iso["dwell_ms"].as_i64(), ts), (Some(60_000), 1_700_000_000_500), "config caps dwell");
    assert_eq!(out[2], Outcome::Ok(vec![]));
    assert_eq!(out[3], Outcome::Ok(vec![]));
    assert_eq!(error_message(&out[4]), "missing or empty item_id");
    assert!(error_message(&out[5]).starts_with("JSONDecodeError: "), "{:?}", out[5]);
    assert_eq!(one_output(&out[6]).0, first);

    let input = generated(GeneratorShape::Click, 1024);
    let outcomes = runner.process(&input);
    let kept = outcomes.iter().filter(|o| matches!(o, Outcome::Ok(v) if v.len() == 1)).count();
    let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed(_))).count();
    assert_eq!(outcomes.len(), 1024);
    assert!(kept > 800 && failed > 0, "kept {kept}, failed {failed}");
    for o in &outcomes {
        if let Outcome::Failed(f) = o {
            assert_eq!(f.message, "missing or empty user_id");
        }
    }
}

const PY_UDF: &str = r#"
from typing import Optional
import streamhost

class Plugin(streamhost.Udf):
    def init(self, config):
        self.sep = (config or {}).get("sep", ":")

    @streamhost.function
    def split_ab(self, ab: str, part: int) -> Optional[str]:
        parts = ab.split(self.sep)
        return parts[part] if 0 <= part < len(parts) else None

    @streamhost.function
    def ratio(self, a: float, b: float) -> float:
        return a / b
"#;

#[test]
fn python_udf_written_with_the_sdk() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), PY_UDF).unwrap();
    std::fs::write(dir.path().join("plugin.toml"), "name = \"py-udf\"\nworld = \"udf\"\n").unwrap();
    let wasm = build(dir.path().to_path_buf());
    let plugin = load("py-udf", &wasm, WorldName::Udf, json!({"sep": "_"}));
    let mut udf = plugin.udf().expect("instance");
    let sig = udf.function("split_ab").expect("split_ab").clone();
    assert_eq!((sig.params.as_slice(), sig.result), (&[ScalarType::Str, ScalarType::Int][..], ScalarType::Str));
    let out = udf.call(
        "split_ab",
        &[
            vec![Scalar::Str("exp_42".into()), Scalar::Int(1)],
            vec![Scalar::Str("exp_42".into()), Scalar::Int(5)],
            vec![Scalar::Int(1), Scalar::Int(1)],
        ],
    );
    assert_eq!(out[0], Ok(Scalar::Str("42".into())));
    assert_eq!(out[1], Ok(Scalar::Null));
    assert_eq!(out[2].as_ref().unwrap_err().message, "argument 1: expected str, got int");
    let out = udf.call("ratio", &[vec![Scalar::Int(1), Scalar::Float(4.0)], vec![Scalar::Float(1.0), Scalar::Int(0)]]);
    assert_eq!(out[0], Ok(Scalar::Float(0.25)));
    let message = &out[1].as_ref().unwrap_err().message;
    assert!(message.starts_with("ZeroDivisionError: ") && message.contains("(app.py:16)"), "{message}");
}
