//! The samples of examples/training-join checked against its raw data (also
//! used by the e2e tests of streamhost-tests, through a `#[path]` module).

/// Each impression the cleaner keeps (it has a `user_id`) is in `samples`
/// once, with the number of its non-bot clicks within the hour after it,
/// counted here from the raw data by a nested loop. Returns the positives.
pub fn check_samples(imps: &[serde_json::Value], clicks: &[serde_json::Value], samples: &[serde_json::Value]) -> usize {
    let kept: Vec<&serde_json::Value> = imps.iter().filter(|i| i.get("user_id").is_some()).collect();
    assert_eq!(samples.len(), kept.len(), "one sample per clean impression");
    let mut positives = 0;
    for imp in kept {
        let (rid, t) = (&imp["request_id"], imp["ts"].as_i64().unwrap());
        let want = clicks
            .iter()
            .filter(|c| &c["request_id"] == rid && !c["user_agent"].as_str().unwrap_or("").contains("bot"))
            .filter(|c| (t..=t + 3_600_000).contains(&c["ts"].as_i64().unwrap()))
            .count();
        let got: Vec<&serde_json::Value> = samples.iter().filter(|s| &s["request_id"] == rid).collect();
        assert_eq!(got.len(), 1, "{rid} comes out exactly once");
        assert_eq!(got[0]["click_count"], want, "{rid}");
        positives += usize::from(want > 0);
    }
    assert!(positives > 20, "the example has positives and negatives ({positives} positives)");
    positives
}
