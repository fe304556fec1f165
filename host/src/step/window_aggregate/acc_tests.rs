use super::*;
use proptest::prelude::*;

/// What each aggregate gives over `values` (raw JSON, time, seq), computed
/// directly on parsed values.
fn reference(kind: AggKind, values: &[(Option<String>, i64, u64)]) -> serde_json::Value {
    let present: Vec<(serde_json::Value, i64, u64)> = values
        .iter()
        .filter_map(|(raw, t, s)| raw.as_ref().map(|r| (serde_json::from_str::<serde_json::Value>(r).unwrap(), *t, *s)))
        .filter(|(v, _, _)| !v.is_null())
        .collect();
    let nums: Vec<f64> = present.iter().filter_map(|(v, _, _)| v.as_f64()).collect();
    match kind {
        AggKind::Count => values.len().into(),
        AggKind::Sum if nums.is_empty() => serde_json::Value::Null,
        AggKind::Sum => {
            if present.iter().all(|(v, _, _)| v.is_i64()) {
                present.iter().map(|(v, _, _)| v.as_i64().unwrap()).sum::<i64>().into()
            } else {
                serde_json::json!(nums.iter().sum::<f64>())
            }
        }
        AggKind::Avg if nums.is_empty() => serde_json::Value::Null,
        AggKind::Avg => serde_json::json!(nums.iter().sum::<f64>() / nums.len() as f64),
        AggKind::Min | AggKind::Max => {
            let best = nums.iter().copied().reduce(|a, b| if (kind == AggKind::Min) == (b < a) { b } else { a });
            best.map_or(serde_json::Value::Null, |b| {
                present.iter().find(|(v, _, _)| v.as_f64() == Some(b)).map(|(v, _, _)| v.clone()).unwrap()
            })
        }
        AggKind::First | AggKind::Last => {
            let pick = if kind == AggKind::First {
                present.iter().min_by_key(|(_, t, s)| (*t, *s))
            } else {
                present.iter().max_by_key(|(_, t, s)| (*t, *s))
            };
            pick.map_or(serde_json::Value::Null, |(v, _, _)| v.clone())
        }
    }
}

fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

const KINDS: [AggKind; 7] = [AggKind::Count, AggKind::Sum, AggKind::Min, AggKind::Max, AggKind::Avg, AggKind::First, AggKind::Last];

fn value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => (-1_000_000i64..1_000_000).prop_map(|i| Some(i.to_string())),
        1 => (-1000.0f64..1000.0).prop_map(|f| Some(format!("{f:.3}"))),
        1 => Just(Some("null".to_string())),
        1 => Just(None),
    ]
}

proptest! {
    /// Values split over panes at random, each pane's accumulator encoded and
    /// decoded, then merged: the same as adding them all to one, and as the
    /// reference on parsed values.
    #[test]
    fn panes_merged_equal_one_pass_and_the_reference(
        values in proptest::collection::vec((value(), 0i64..50), 0..40),
        cuts in proptest::collection::vec(0usize..40, 0..4),
    ) {
        let values: Vec<(Option<String>, i64, u64)> = values.into_iter().enumerate().map(|(i, (v, t))| (v, t, i as u64)).collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(values.len())).collect();
        cuts.sort();
        for kind in KINDS {
            let mut whole = kind.empty();
            for (v, t, s) in &values {
                whole.add(v.as_deref(), *t, *s).unwrap();
            }
            let mut merged = kind.empty();
            let mut from = 0;
            for to in cuts.iter().copied().chain([values.len()]) {
                let mut pane = kind.empty();
                for (v, t, s) in &values[from..to] {
                    pane.add(v.as_deref(), *t, *s).unwrap();
                }
                let mut bytes = Vec::new();
                pane.encode(&mut bytes);
                bytes.push(0xAB);
                let (back, rest) = Acc::decode(&bytes).unwrap();
                prop_assert_eq!(rest, &[0xAB][..]);
                prop_assert_eq!(&back, &pane);
                merged.merge(&back).unwrap();
                from = to;
            }
            let want = reference(kind, &values);
            prop_assert!(close(&whole.finish(), &want), "{} one pass: {} vs {}", kind, whole.finish(), want);
            prop_assert!(close(&merged.finish(), &want), "{} merged: {} vs {}", kind, merged.finish(), want);
        }
    }

    /// Damaged bytes are refused, never a panic.
    #[test]
    fn damaged_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = Acc::decode(&bytes);
    }
}

#[test]
fn wrong_types_are_refused_with_a_reason() {
    let mut sum = AggKind::Sum.empty();
    assert_eq!(sum.add(Some("\"x\""), 0, 0).unwrap_err().to_string(), "sum takes numbers: `\"x\"` is not one");
    let mut max = AggKind::Max.empty();
    max.add(Some("\"b\""), 0, 0).unwrap();
    max.add(Some("\"a\""), 0, 1).unwrap();
    assert_eq!(max.finish(), "b");
    // Numbers come before strings: a mixed field still has a min and a max.
    max.add(Some("3"), 0, 2).unwrap();
    assert_eq!(max.finish(), "b");
    let mut min = AggKind::Min.empty();
    min.add(Some("\"a\""), 0, 0).unwrap();
    min.add(Some("3"), 0, 1).unwrap();
    assert_eq!(min.finish(), 3);
    assert!(max.check(Some("true")).is_err() && max.check(Some("null")).is_ok() && sum.check(Some("\"x\"")).is_err());
    let mut count = AggKind::Count.empty();
    count.add(None, 0, 0).unwrap();
    count.add(Some("{\"a\":1}"), 0, 1).unwrap();
    assert_eq!(count.finish(), 2);
}

#[test]
fn integer_sums_stay_exact_past_f64() {
    let mut sum = AggKind::Sum.empty();
    for (i, v) in ["9007199254740993", "1"].iter().enumerate() {
        sum.add(Some(v), 0, i as u64).unwrap();
    }
    assert_eq!(sum.finish(), serde_json::json!(9007199254740994i64));
    let mut huge = AggKind::Sum.empty();
    for i in 0..3 {
        huge.add(Some(&i64::MAX.to_string()), 0, i).unwrap();
    }
    assert_eq!(huge.finish(), serde_json::json!(3.0 * i64::MAX as f64), "past u64: a float");
}
