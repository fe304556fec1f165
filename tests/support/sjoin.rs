//! The SJoin benches' inputs (tests/benches/sjoin.rs, tests/benches/kafka.rs):
//! impressions 150 : clicks 20, each click 0-30 min after the impression it
//! refers to, from two seeded generators.

use std::path::Path;

use serde_json::json;
use streamhost::runtime::{build_pipeline, BuildOptions};
use streamhost::source::BASE_TIME_MS;

/// The join's window: 1 h after each impression.
pub const WINDOW_MS: i64 = 3_600_000;
pub const OUT_OF_ORDERNESS_MS: u64 = 5_000;
pub const IMP_SEED: u64 = 1;
pub const CLK_SEED: u64 = 2;

/// The clicks of `n` impressions.
pub fn clicks_of(n: u64) -> u64 {
    n * 20 / 150
}

/// The impressions' event-time step: `n` impressions cover `hours`.
pub fn imp_step_ms(n: u64, hours: f64) -> f64 {
    hours * 3_600_000.0 / n.max(1) as f64
}

/// The two generator sources `imp` and `clk` (`ts`: their `timestamp_field`).
pub fn generator_sources(n: u64, hours: f64, ts: serde_json::Value) -> serde_json::Value {
    let step = imp_step_ms(n, hours);
    json!({
        "imp": {
            "type": "generator", "shape": "join-impression", "seed": IMP_SEED, "count": n,
            "event_time": {"start_ms": BASE_TIME_MS, "step_ms": step},
            "timestamp_field": ts, "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS
        },
        "clk": {
            "type": "generator", "shape": "join-click", "seed": CLK_SEED, "count": clicks_of(n),
            "event_time": {"start_ms": BASE_TIME_MS, "step_ms": step * 7.5},
            "impressions": {"start_ms": BASE_TIME_MS, "step_ms": step, "count": n},
            "timestamp_field": ts, "max_out_of_orderness_ms": OUT_OF_ORDERNESS_MS
        }
    })
}

/// Writes the inputs as JSON-lines files `impressions.jsonl` and `clicks.jsonl` into `dir`.
pub fn write_inputs(n: u64, hours: f64, dir: &Path) {
    let config = json!({
        "name": "sjoin-inputs",
        "sources": generator_sources(n, hours, serde_json::Value::Null),
        "sinks": {
            "impressions": {"type": "file", "inputs": ["imp"], "path": dir.join("impressions.jsonl")},
            "clicks": {"type": "file", "inputs": ["clk"], "path": dir.join("clicks.jsonl")}
        }
    });
    let path = crate::write_pipeline(dir, &config);
    let loaded = streamhost::config::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"));
    build_pipeline(&loaded, BuildOptions::default()).and_then(|p| p.run()).unwrap_or_else(|e| panic!("{e}"));
}

/// The SJoin's steps (impressions `imp` LEFT JOIN clicks `clk` on
/// `request_id` within [`WINDOW_MS`], emitted when the window ends, then the
/// native step `probe` counting what comes out) and its `null` sink.
pub fn join_steps_and_sink(probe: &str) -> (serde_json::Value, serde_json::Value) {
    let steps = json!({
        "join": {
            "type": "window-join", "inputs": ["imp", "clk"],
            "keys": {"imp": "$.request_id", "clk": "$.request_id"},
            "window": {"start_ms": 0, "end_ms": WINDOW_MS},
            "mode": "left", "emit": "on-window-end",
            "joiner": {"type": "merge", "prefixes": {"clk": "click."}}
        },
        "probe": {"type": "native", "inputs": ["join"], "name": probe}
    });
    (steps, json!({"null": {"type": "null", "inputs": ["probe"]}}))
}
