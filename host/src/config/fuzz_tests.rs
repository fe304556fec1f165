//! Property tests: no input, however mangled, panics the loader; every
//! error it reports points inside the text.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::locate::{locate, JsonPath};
use super::parse_pipeline;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        "[a-z$._ -]{0,8}".prop_map(Value::String),
        prop_oneof![Just("file"), Just("stdin"), Just("generator"), Just("transform"), Just("udf"), Just("native"), Just("null"), Just("stdout")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof!["[a-z_]{1,8}", Just("type".to_string()), Just("inputs".to_string()), Just("path".to_string())],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid() -> Value {
    json!({
        "plugins": {"p": {"path": "p.wasm", "world": "udf", "limits": {"memory_mb": 64}}},
        "sources": {"s": {"type": "generator", "seed": 1, "count": 10, "schema": {"fields": {"a": {"type": "int"}}}}},
        "steps": {
            "a": {"type": "udf", "plugin": "p", "function": "f", "args": ["$.a"], "output": "b", "inputs": ["s"]},
            "b": {"type": "native", "name": "n", "inputs": ["a", "s"]}
        },
        "sinks": {"o": {"type": "file", "path": "o.jsonl", "inputs": ["b"]}},
        "settings": {"batch_size": 8}
    })
}

/// Every path to a value in `v`.
fn paths(v: &Value, at: JsonPath, out: &mut Vec<JsonPath>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| paths(c, at.key(k), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| paths(c, at.index(i), out)),
        _ => {}
    }
}

fn set(v: &mut Value, path: &JsonPath, new: Value) {
    let mut cur = v;
    for seg in &path.0 {
        cur = match seg {
            super::locate::PathSeg::Key(k) => &mut cur[k.as_str()],
            super::locate::PathSeg::Index(i) => &mut cur[*i],
        };
    }
    *cur = new;
}

fn check_no_panic(text: &str) {
    let lines = text.lines().count().max(1);
    if let Err(e) = parse_pipeline(text) {
        assert!(!e.errors.is_empty());
        for err in &e.errors {
            assert!(err.line >= 1 && err.line <= lines + 1, "{err:?} outside {lines} lines");
            assert!(err.column >= 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_no_panic(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        check_no_panic(&serde_json::to_string_pretty(&v).unwrap());
    }

    #[test]
    fn mutated_valid_pipelines_never_panic(picks in prop::collection::vec((any::<prop::sample::Index>(), arb_json()), 1..4), cut in any::<prop::sample::Index>()) {
        let mut v = valid();
        for (pick, new) in picks {
            let mut all = Vec::new();
            paths(&v, JsonPath::root(), &mut all);
            let p = pick.get(&all).clone();
            set(&mut v, &p, new);
        }
        let text = serde_json::to_string_pretty(&v).unwrap();
        check_no_panic(&text);
        // Truncated documents too.
        let cut = cut.index(text.len() + 1);
        if text.is_char_boundary(cut) {
            check_no_panic(&text[..cut]);
        }
    }

    #[test]
    fn locate_never_panics(v in arb_json(), path in prop::collection::vec(prop_oneof!["[a-z]{1,3}".prop_map(super::locate::PathSeg::Key), (0usize..4).prop_map(super::locate::PathSeg::Index)], 0..5)) {
        let text = serde_json::to_string(&v).unwrap();
        let (line, col) = locate(&text, &JsonPath(path));
        prop_assert!(line >= 1 && col >= 1);
    }
}

#[test]
fn the_valid_base_document_is_valid() {
    parse_pipeline(&serde_json::to_string_pretty(&valid()).unwrap()).unwrap();
}
