//! The SDK's behaviour on the native target, where plugin functions are
//! unit-tested: event helpers, the batch loop, init configs, UDF typing.

use serde::Deserialize;
use streamhost_sdk::udf::{call_rows, signature, Scalar, ScalarType};
use streamhost_sdk::{process_batch, transform, Error, Event, Header};

#[derive(Deserialize, Debug, PartialEq)]
struct Click<'a> {
    user: &'a str,
    dwell_ms: i64,
}

#[test]
fn events_parse_borrowed_json_and_keep_metadata_on_rewrite() {
    let e = Event::new(r#"{"user":"u-1","dwell_ms":5}"#).with_key("k").with_timestamp(7);
    assert_eq!(e.json::<Click>().unwrap(), Click { user: "u-1", dwell_ms: 5 });
    assert!(e.json::<Vec<i32>>().is_err());
    let e = e.with_json(&serde_json::json!({"n": 1})).unwrap();
    assert_eq!((e.value.as_slice(), e.key.as_deref(), e.timestamp), (&br#"{"n":1}"#[..], Some(&b"k"[..]), 7));
    assert_eq!(Event::from_json(&[1, 2]).unwrap().value_str().unwrap(), "[1,2]");
    assert!(Event::new(vec![0xff]).value_str().is_err());
}

#[test]
fn headers_are_set_once_by_name() {
    let mut e = Event::new("x");
    assert_eq!(e.header("h"), None);
    e.set_header("h", "1");
    e.set_header("h", "2");
    assert_eq!(e.headers, vec![Header { name: "h".into(), value: b"2".to_vec() }]);
    assert_eq!(e.header("h"), Some(&b"2"[..]));
}

#[test]
fn a_batch_gets_one_outcome_per_event_and_errors_stay_alone() {
    fn split(e: Event) -> Result<Vec<Event>, Error> {
        let n: usize = e.value_str()?.parse()?;
        Ok((0..n).map(|i| Event::new(i.to_string())).collect())
    }
    let batch = vec![Event::new("2"), Event::new("x"), Event::new("0"), Event::new("1")];
    let out = process_batch(batch, split);
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].as_ref().unwrap().len(), 2);
    assert_eq!(out[1], Err("invalid digit found in string".to_string()));
    assert_eq!(out[2], Ok(vec![]));
    assert_eq!(out[3].as_ref().unwrap()[0].value, b"0");
    let kept = process_batch(vec![Event::new("a")], |e| Ok::<_, Error>(Some(e)));
    assert_eq!(kept[0].as_ref().unwrap()[0].value, b"a");
    let dropped = process_batch(vec![Event::new("a")], |_| Ok::<Option<Event>, Error>(None));
    assert_eq!(dropped, vec![Ok(vec![])]);
}

#[test]
fn the_columnar_export_cuts_events_out_and_packs_outputs_with_their_origin() {
    use streamhost_sdk::bindings::types::{BatchHeader, ByteColumn, EventBatch};
    use streamhost_sdk::columns::process_columns;
    // Three inputs: "2" keyed "k" with a header, "x" keyless, "1" with an empty key.
    let batch = EventBatch {
        values: ByteColumn { data: b"2x1".to_vec(), ends: vec![1, 2, 3] },
        keys: ByteColumn { data: b"k".to_vec(), ends: vec![1, 1, 1] },
        keyless: vec![1],
        timestamps: vec![10, 20, 30],
        headers: vec![BatchHeader { event: 0, name: "h".into(), value: b"v".to_vec() }],
    };
    let mut seen = Vec::new();
    let out = process_columns(batch, |e: Event| {
        seen.push((e.key.clone(), e.timestamp, e.headers.len()));
        let n: usize = e.value_str()?.parse()?;
        Ok::<_, Error>((0..n).map(|i| e.clone().with_value(format!("{i}")).with_timestamp(e.timestamp + i as i64)).collect::<Vec<_>>())
    });
    assert_eq!(seen, vec![(Some(b"k".to_vec()), 10, 1), (None, 20, 0), (Some(vec![]), 30, 0)]);
    assert_eq!(out.origins, vec![0, 0, 2]);
    assert_eq!(out.events.values.data, b"010");
    assert_eq!(out.events.values.ends, vec![1, 2, 3]);
    assert_eq!(out.events.keys.data, b"kk");
    assert_eq!(out.events.keys.ends, vec![1, 2, 2]);
    assert!(out.events.keyless.is_empty(), "an empty key is still a key");
    assert_eq!(out.events.timestamps, vec![10, 11, 30]);
    assert_eq!(out.events.headers.iter().map(|h| h.event).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(out.errors.len(), 1);
    assert_eq!((out.errors[0].event, out.errors[0].message.as_str()), (1, "invalid digit found in string"));
}

#[test]
fn zero_copy_functions_write_in_place_and_a_failure_takes_its_outputs_back() {
    use streamhost_sdk::{Emitter, EventRef};
    // "n:text": emit n copies of text, then fail if text is "boom";
    // "skip": write something, then decide to emit nothing.
    fn f(e: EventRef<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let text = e.value_str()?;
        if text == "skip" {
            assert!(!out.emit_with(e.key, |buf| {
                buf.extend_from_slice(b"garbage");
                Ok::<_, Error>(None)
            })?);
            return Ok(());
        }
        let (n, body) = text.split_once(':').ok_or_else(|| Error::new("no colon"))?;
        for i in 0..n.parse::<i64>()? {
            out.emit_with(e.key, |buf| {
                buf.extend_from_slice(body.as_bytes());
                Ok::<_, Error>(Some(e.timestamp + i))
            })?;
            out.header("copy", i.to_string().as_bytes());
        }
        if body == "boom" {
            out.emit_with(None, |buf| {
                buf.extend_from_slice(b"half-written");
                Err(Error::new("exploded mid-write"))
            })?;
        }
        Ok(())
    }
    let batch = vec![
        Event::new("2:a").with_key("k").with_timestamp(100),
        Event::new("3:boom"),
        Event::new("skip"),
        Event::new("1:b").with_timestamp(7),
    ];
    let out = process_batch(batch, f);
    let a = out[0].as_ref().unwrap();
    assert_eq!(a.iter().map(|e| (e.value.as_slice(), e.timestamp)).collect::<Vec<_>>(), vec![(&b"a"[..], 100), (&b"a"[..], 101)]);
    assert!(a.iter().all(|e| e.key.as_deref() == Some(&b"k"[..])));
    assert_eq!(a[1].headers, vec![Header { name: "copy".into(), value: b"1".to_vec() }]);
    assert_eq!(out[1], Err("exploded mid-write".to_string()), "three copies were emitted, then taken back");
    assert_eq!(out[2], Ok(vec![]));
    let b = &out[3].as_ref().unwrap()[0];
    assert_eq!((b.value.as_slice(), b.timestamp, b.key.as_ref()), (&b"b"[..], 7, None));
    // The owned view used in native tests sees the same fields.
    let owned = Event::new("x").with_key("k");
    let mut owned = owned;
    owned.set_header("h", "v");
    let view = EventRef::of(&owned);
    assert_eq!((view.key, view.value, view.header("h")), (Some(&b"k"[..]), &b"x"[..], Some(&b"v"[..])));
    assert_eq!(view.to_event(), owned);
}

#[derive(Deserialize)]
struct Config {
    threshold: u32,
}

fn typed(c: Config) -> Result<(), Error> {
    if c.threshold == 0 {
        streamhost_sdk::bail!("threshold must be positive");
    }
    Ok(())
}

#[test]
fn init_hands_over_the_parsed_config() {
    use streamhost_sdk::transform::{no_init, run_init};
    assert_eq!(run_init(r#"{"threshold": 3}"#, typed), Ok(()));
    assert_eq!(run_init(r#"{"threshold": 0}"#, typed), Err("threshold must be positive".into()));
    assert!(run_init("null", typed).unwrap_err().starts_with("invalid plugin config"));
    assert!(run_init("{", no_init).unwrap_err().starts_with("invalid plugin config"));
    assert_eq!(run_init("", no_init), Ok(()));
    assert_eq!(run_init("null", |v: serde_json::Value| if v.is_null() { Ok(()) } else { Err(Error::new("?")) }), Ok(()));
}

fn clamp(x: f64, lo: Option<f64>) -> Result<f64, Error> {
    if x.is_nan() {
        return Err(Error::new("NaN"));
    }
    Ok(lo.map_or(x, |lo| x.max(lo)))
}

fn kind(v: Scalar) -> &'static str {
    streamhost_sdk::udf::type_name(&v)
}

fn nothing() -> Option<String> {
    None
}

#[test]
fn udf_signatures_and_conversions_follow_the_rust_types() {
    let sig = signature("clamp", &clamp);
    assert_eq!((sig.params, sig.result), (vec![ScalarType::Float, ScalarType::Float], ScalarType::Float));
    assert_eq!(signature("kind", &kind).params, vec![ScalarType::Any]);
    assert_eq!(signature("nothing", &nothing).params, vec![]);
    let out = call_rows(
        &clamp,
        vec![
            vec![Scalar::Int(-3), Scalar::Float(0.0)],
            vec![Scalar::Float(2.5), Scalar::Null],
            vec![Scalar::Float(f64::NAN), Scalar::Null],
            vec![Scalar::Str("1".into()), Scalar::Null],
        ],
    );
    assert_eq!(out[0], Ok(Scalar::Float(0.0)));
    assert_eq!(out[1], Ok(Scalar::Float(2.5)));
    assert_eq!(out[2], Err("NaN".into()));
    assert_eq!(out[3], Err("argument 1: expected float, got str".into()));
    assert_eq!(call_rows(&kind, vec![vec![Scalar::Bytes(vec![1])]]), vec![Ok(Scalar::Str("bytes".into()))]);
    assert_eq!(call_rows(&nothing, vec![vec![]]), vec![Ok(Scalar::Null)]);
}

fn identity(e: Event) -> Result<Event, Error> {
    Ok(e)
}

// The macros expand natively too (the component exports only on wasm32).
transform!(identity);
mod udfs {
    use super::{clamp, kind};
    streamhost_sdk::udf!(clamp, kind; init = streamhost_sdk::transform::no_init);
}
