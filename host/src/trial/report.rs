//! What `streamhost plugin test` prints: every input's outcome (by sample
//! line), a summary, and the cost per event. As text for people, or as JSON
//! lines (`--json`) for scripts: one object per input, then `{"summary": ...}`.

use std::fmt::Write;

use serde_json::{json, Value};

use super::{Output, Trial};
use crate::event::Event;
use crate::plugin::{ArtifactSource, FailureKind, FunctionSignature, ScalarType};

/// Counts and costs of a trial run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub inputs: usize,
    /// Output events (transform, joiner) or results (UDF).
    pub outputs: usize,
    /// Inputs with no output and no error (transform, joiner).
    pub dropped: usize,
    /// Inputs the plugin returned an error for.
    pub errors: usize,
    /// Inputs that trapped, timed out or ran out of memory.
    pub traps: usize,
    /// Inputs whose outputs broke an output limit.
    pub limit_violations: usize,
    pub batches: usize,
    /// Calls into the plugin (one per batch, more while isolating a trap).
    pub calls: u64,
    /// Time spent inside the plugin's calls.
    pub busy_ns: u64,
    /// Wall time of the whole feeding (packing, host checks included).
    pub wall_ns: u64,
    /// Linear memory of the largest instance after a call.
    pub peak_memory_bytes: u64,
    pub rebuilds: u64,
    /// Fuel the calls used, when the runtime meters it (`--fuel`).
    pub fuel: Option<u64>,
    pub load_ms: f64,
    pub artifact: &'static str,
}

impl Summary {
    pub fn of(trial: &Trial) -> Summary {
        let mut s = Summary {
            inputs: trial.results.len(),
            outputs: 0,
            dropped: 0,
            errors: 0,
            traps: 0,
            limit_violations: 0,
            batches: trial.batches,
            calls: 0,
            busy_ns: 0,
            wall_ns: trial.wall.as_nanos() as u64,
            peak_memory_bytes: 0,
            rebuilds: 0,
            fuel: None,
            load_ms: trial.plugin.load_time().as_secs_f64() * 1e3,
            artifact: match trial.plugin.timings().artifact {
                ArtifactSource::Compiled => "compiled",
                ArtifactSource::DiskCache => "from the artifact cache",
                ArtifactSource::Memory => "already in memory",
            },
        };
        for r in &trial.results {
            match &r.outcome {
                Ok(Output::Events(events)) if events.is_empty() => s.dropped += 1,
                Ok(Output::Events(events)) => s.outputs += events.len(),
                Ok(Output::Scalar(_)) => s.outputs += 1,
                Err(f) if f.kind == FailureKind::Error => s.errors += 1,
                Err(f) if f.kind == FailureKind::Limit => s.limit_violations += 1,
                Err(_) => s.traps += 1,
            }
        }
        let stats = trial.plugin.stats().snapshot();
        s.calls = stats.calls;
        s.busy_ns = stats.busy_nanos;
        s.peak_memory_bytes = stats.peak_memory_bytes;
        s.rebuilds = stats.rebuilds;
        s.fuel = trial.plugin.meters_fuel().then_some(stats.fuel_consumed);
        s
    }

    /// Time inside the plugin per input, in nanoseconds.
    pub fn busy_ns_per_event(&self) -> u64 {
        self.busy_ns / self.inputs.max(1) as u64
    }

    pub fn wall_ns_per_event(&self) -> u64 {
        self.wall_ns / self.inputs.max(1) as u64
    }
}

/// The run as text: a header, one line per input (more for fan-out), the summary.
pub fn render_text(trial: &Trial) -> String {
    let s = Summary::of(trial);
    let p = &trial.plugin;
    let mut out = format!("{}: {}, loaded in {:.1} ms ({})", p.name(), p.world().as_str(), s.load_ms, s.artifact);
    if let Some(f) = &trial.function {
        let _ = write!(out, "; calling {}", signature(f));
    }
    out.push('\n');
    for r in &trial.results {
        let line = r.line;
        match &r.outcome {
            Ok(Output::Events(events)) if events.is_empty() => {
                let _ = writeln!(out, "line {line}: dropped");
            }
            Ok(Output::Events(events)) if events.len() == 1 => {
                let _ = writeln!(out, "line {line}: {}", event_text(&events[0]));
            }
            Ok(Output::Events(events)) => {
                for (i, e) in events.iter().enumerate() {
                    let _ = writeln!(out, "line {line} [{}/{}]: {}", i + 1, events.len(), event_text(e));
                }
            }
            Ok(Output::Scalar(v)) => {
                let _ = writeln!(out, "line {line}: {}", crate::step::scalar_to_json(v.clone()));
            }
            Err(f) => {
                let _ = writeln!(out, "line {line}: {}: {}", f.kind.as_str(), f.message);
            }
        }
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let produced = if trial.function.is_some() { plural(s.outputs, "result") } else { plural(s.outputs, "output") };
    let batches = if s.batches == 1 { "1 batch".to_string() } else { format!("{} batches", s.batches) };
    let _ = write!(out, "{} in {batches}: {produced}", plural(s.inputs, "input"));
    if trial.function.is_none() {
        let _ = write!(out, ", {} dropped", s.dropped);
    }
    let _ = write!(out, ", {}, {} trapped", plural(s.errors, "error"), s.traps);
    if s.limit_violations > 0 {
        let _ = write!(out, ", {} over an output limit", s.limit_violations);
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "cost per event: {} in the plugin ({} in {}), {} wall; peak memory {}; {}",
        duration(s.busy_ns_per_event()),
        duration(s.busy_ns),
        plural(s.calls as usize, "call"),
        duration(s.wall_ns_per_event()),
        bytes(s.peak_memory_bytes),
        plural(s.rebuilds as usize, "instance rebuild"),
    );
    if let Some(fuel) = s.fuel {
        let _ = writeln!(
            out,
            "fuel per event: {} ({fuel} in all; about one unit per wasm instruction; metering slows the calls down)",
            fuel / s.inputs.max(1) as u64
        );
    }
    out
}

/// The run as JSON lines: one object per input, then the summary.
pub fn render_json(trial: &Trial) -> String {
    let mut out = String::new();
    for r in &trial.results {
        let v = match &r.outcome {
            Ok(Output::Events(events)) => json!({"line": r.line, "outputs": events.iter().map(event_json).collect::<Vec<_>>()}),
            Ok(Output::Scalar(v)) => json!({"line": r.line, "result": crate::step::scalar_to_json(v.clone())}),
            Err(f) => json!({"line": r.line, "error": {"kind": f.kind.as_str(), "message": f.message}}),
        };
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let s = Summary::of(trial);
    let summary = json!({"summary": {
        "plugin": trial.plugin.name(),
        "world": trial.plugin.world().as_str(),
        "function": trial.function.as_ref().map(|f| f.name.clone()),
        "inputs": s.inputs, "outputs": s.outputs, "dropped": s.dropped, "errors": s.errors, "traps": s.traps,
        "limit_violations": s.limit_violations, "batches": s.batches, "calls": s.calls,
        "busy_ns": s.busy_ns, "busy_ns_per_event": s.busy_ns_per_event(),
        "wall_ns": s.wall_ns, "wall_ns_per_event": s.wall_ns_per_event(),
        "peak_memory_bytes": s.peak_memory_bytes, "instance_rebuilds": s.rebuilds,
        "fuel": s.fuel, "fuel_per_event": s.fuel.map(|f| f / s.inputs.max(1) as u64),
        "load_ms": s.load_ms, "artifact": s.artifact,
    }});
    out.push_str(&summary.to_string());
    out.push('\n');
    out
}

/// The payload as text, with the key when there is one.
fn event_text(e: &Event) -> String {
    let value = String::from_utf8_lossy(&e.value);
    match &e.key {
        Some(k) => format!("{value} (key {:?})", String::from_utf8_lossy(k)),
        None => value.into_owned(),
    }
}

fn event_json(e: &Event) -> Value {
    let value = serde_json::from_slice::<Value>(&e.value).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.value).into_owned()));
    let mut v = json!({"value": value, "timestamp": e.timestamp});
    if let Some(k) = &e.key {
        v["key"] = Value::String(String::from_utf8_lossy(k).into_owned());
    }
    if !e.headers.is_empty() {
        v["headers"] =
            e.headers.iter().map(|h| json!([h.name, String::from_utf8_lossy(&h.value)])).collect::<Vec<_>>().into();
    }
    v
}

fn signature(f: &FunctionSignature) -> String {
    let name = |t: &ScalarType| match t {
        ScalarType::Null => "null",
        ScalarType::Boolean => "boolean",
        ScalarType::Int => "int",
        ScalarType::Float => "float",
        ScalarType::Str => "str",
        ScalarType::Bytes => "bytes",
        ScalarType::Any => "any",
    };
    let params: Vec<&str> = f.params.iter().map(name).collect();
    format!("{}({}) -> {}", f.name, params.join(", "), name(&f.result))
}

fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{} KiB", n >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(duration(999), "999 ns");
        assert_eq!(duration(1_500), "1.5 µs");
        assert_eq!(duration(2_500_000), "2.5 ms");
        assert_eq!(duration(3_000_000_000), "3.00 s");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(3 << 19), "1.5 MiB");
    }

    #[test]
    fn events_as_json() {
        let e = Event { key: Some(b"k".to_vec()), value: b"{\"a\":1}".to_vec(), timestamp: 5, headers: vec![] };
        assert_eq!(event_json(&e), json!({"value": {"a": 1}, "timestamp": 5, "key": "k"}));
        let e = Event { value: b"not json".to_vec(), ..Default::default() };
        assert_eq!(event_json(&e)["value"], json!("not json"));
        assert_eq!(event_text(&Event { key: Some(b"u1".to_vec()), value: b"{}".to_vec(), ..Default::default() }), "{} (key \"u1\")");
    }
}
