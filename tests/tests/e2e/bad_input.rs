//! Bad input never stops a pipeline and is never lost: malformed JSON, wrong
//! types, missing fields, a 10 MB line (its beginning), invalid UTF-8 all
//! reach the dead letters with their line number and reason.

use serde_json::json;
use streamhost_tests::{jsonl, run_pipeline, write_pipeline};

#[test]
fn every_bad_record_is_dead_lettered_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let huge = format!("{{\"id\":\"big\",\"n\":1,\"pad\":\"{}\"}}", "x".repeat(10 << 20));
    let mut input: Vec<Vec<u8>> = vec![
        br#"{"id":"a","n":1}"#.to_vec(),                  // 1 ok
        br#"{"id":"b","n":"one"}"#.to_vec(),              // 2 wrong type
        br#"{"n":3}"#.to_vec(),                           // 3 missing required
        br#"{"id":"d","n":4"#.to_vec(),                   // 4 malformed
        huge.into_bytes(),                                // 5 10 MB
        b"{\"id\":\"\xff\xfe\",\"n\":6}".to_vec(),        // 6 invalid UTF-8
        b"".to_vec(),                                     // 7 blank: skipped
        b"{\"id\":\"g\",\"n\":7}\r".to_vec(),             // 8 ok (CRLF)
        b"\xc3\x28 not json".to_vec(),                    // 9 invalid UTF-8 and malformed
    ];
    let mut raw = Vec::new();
    for l in input.iter_mut() {
        raw.extend_from_slice(l);
        raw.push(b'\n');
    }
    std::fs::write(dir.path().join("in.jsonl"), &raw).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "sources": {"in": {"type": "file", "path": "in.jsonl",
                "schema": {"fields": {"id": {"type": "string", "required": true}, "n": {"type": "int"}}}}},
            "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["in"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"}
        }),
    );
    let summary = run_pipeline(&pipeline);
    let out = jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(out, vec![json!({"id": "a", "n": 1}), json!({"id": "g", "n": 7})]);

    let dead = jsonl(&dir.path().join("dead.jsonl"));
    let got: Vec<(u64, &str)> = dead.iter().map(|d| (d["position"].as_u64().unwrap(), d["kind"].as_str().unwrap())).collect();
    assert_eq!(got, vec![(2, "schema"), (3, "schema"), (4, "malformed"), (5, "too-large"), (6, "malformed"), (9, "malformed")]);
    assert!(dead.iter().all(|d| d["source"] == "in"));
    assert_eq!(dead[0]["reason"], "field `n` should be an integer but is a string");
    assert_eq!(dead[1]["reason"], "missing required field `id`");
    // The 10 MB line is refused while it is read: its dead letter says how
    // long it was and keeps only its first 1,024 bytes (a bounded record).
    // Invalid UTF-8 is kept byte for byte as base64.
    let big = dead[3]["value"].as_str().unwrap();
    assert_eq!(big.len(), 1024);
    assert!(big.starts_with("{\"id\":\"big\""), "{big:.40}");
    let reason = dead[3]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("line of {} bytes", (10 << 20) + 27)), "{reason}");
    use base64::Engine as _;
    let b64 = |d: &serde_json::Value| base64::engine::general_purpose::STANDARD.decode(d["value_base64"].as_str().unwrap()).unwrap();
    assert_eq!(b64(&dead[4]), input[5]);
    assert_eq!(b64(&dead[5]), input[8]);

    let src = summary.node("in").unwrap();
    assert_eq!((src.events_in, src.events_out, src.dead), (8, 2, 6));
    assert_eq!(summary.dead_lettered, 6);
}

#[test]
fn a_missing_input_file_fails_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.jsonl"), "{\"a\":1}\n{\"a\":2}\n").unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &json!({
            "sources": {"ok": {"type": "file", "path": "ok.jsonl"}, "gone": {"type": "file", "path": "nope.jsonl"}},
            "sinks": {"out": {"type": "file", "path": "out.jsonl", "inputs": ["ok", "gone"]}}
        }),
    );
    let summary = run_pipeline(&pipeline);
    // A failed source is not the end of its data: the run fails (the other
    // source is stopped, what it handed over is written).
    assert_eq!(summary.end, streamhost::runtime::RunEnd::Failed, "{summary}");
    assert!(jsonl(&dir.path().join("out.jsonl")).len() <= 2);
    assert_eq!(summary.errors.len(), 1, "{summary}");
    assert!(summary.errors[0].contains("nope.jsonl"), "{summary}");
}
